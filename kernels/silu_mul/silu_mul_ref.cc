#include <cmath>

#include "kernels/silu_mul/silu_mul.h"

namespace loraserve::kernels {

Status silu_mul_ref(const SiluMulParams& p) {
  if (p.num_tokens < 0) return invalid_argument("silu_mul: num_tokens < 0");
  if (p.inter <= 0) return invalid_argument("silu_mul: inter must be > 0");
  if (p.num_tokens == 0) return ok_status();
  if (!p.gate || !p.up || !p.out) return invalid_argument("silu_mul: null gate, up or out");
  const int64_t n = p.num_tokens * p.inter;
  for (int64_t i = 0; i < n; ++i) {
    const float g = p.gate[i];
    // Element-wise and read-before-write, so `out` may alias gate or up.
    p.out[i] = g / (1.0f + std::exp(-g)) * p.up[i];
  }
  return ok_status();
}

}  // namespace loraserve::kernels
