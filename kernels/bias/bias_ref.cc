#include "kernels/bias/bias.h"

namespace loraserve::kernels {

Status bias_add_ref(const BiasAddParams& p) {
  if (p.rows < 0) return invalid_argument("bias_add: rows < 0");
  if (p.cols <= 0) return invalid_argument("bias_add: cols must be > 0");
  if (p.rows == 0) return ok_status();
  if (!p.y || !p.bias) return invalid_argument("bias_add: null y or bias");
  for (int64_t r = 0; r < p.rows; ++r) {
    float* row = p.y + r * p.cols;
    for (int64_t c = 0; c < p.cols; ++c) row[c] += p.bias[c];
  }
  return ok_status();
}

}  // namespace loraserve::kernels
