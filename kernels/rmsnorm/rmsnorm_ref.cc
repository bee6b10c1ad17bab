#include <cmath>
#include <string>

#include "kernels/rmsnorm/rmsnorm.h"

namespace loraserve::kernels {

namespace {

Status validate_sizes(const char* op, int64_t num_tokens, int64_t hidden, float eps) {
  if (num_tokens < 0) return invalid_argument(std::string(op) + ": num_tokens < 0");
  if (hidden <= 0) return invalid_argument(std::string(op) + ": hidden must be > 0");
  if (!(eps >= 0.0f)) return invalid_argument(std::string(op) + ": eps must be >= 0");
  return ok_status();
}

// Same operation order as HF LlamaRMSNorm: x * rsqrt(mean(x^2) + eps), then * weight. The
// sum of squares is accumulated in double so the reference does not depend on summation order.
void normalize_row(const float* x, const float* weight, float* out, int64_t hidden, float eps) {
  double sum_sq = 0.0;
  for (int64_t i = 0; i < hidden; ++i) sum_sq += static_cast<double>(x[i]) * x[i];
  const float variance = static_cast<float>(sum_sq / static_cast<double>(hidden));
  const float inv_rms = 1.0f / std::sqrt(variance + eps);
  for (int64_t i = 0; i < hidden; ++i) out[i] = weight[i] * (x[i] * inv_rms);
}

}  // namespace

Status validate_rmsnorm(const RmsNormParams& p) {
  LS_RETURN_IF_ERROR(validate_sizes("rmsnorm", p.num_tokens, p.hidden, p.eps));
  if (p.num_tokens == 0) return ok_status();
  if (!p.x || !p.weight || !p.out) return invalid_argument("rmsnorm: null x, weight or out");
  return ok_status();
}

Status validate_add_rmsnorm(const AddRmsNormParams& p) {
  LS_RETURN_IF_ERROR(validate_sizes("add_rmsnorm", p.num_tokens, p.hidden, p.eps));
  if (p.num_tokens == 0) return ok_status();
  if (!p.residual || !p.delta || !p.weight || !p.out) {
    return invalid_argument("add_rmsnorm: null residual, delta, weight or out");
  }
  return ok_status();
}

Status rmsnorm_ref(const RmsNormParams& p) {
  LS_RETURN_IF_ERROR(validate_rmsnorm(p));
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    normalize_row(p.x + t * p.hidden, p.weight, p.out + t * p.hidden, p.hidden, p.eps);
  }
  return ok_status();
}

Status add_rmsnorm_ref(const AddRmsNormParams& p) {
  LS_RETURN_IF_ERROR(validate_add_rmsnorm(p));
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    float* res = p.residual + t * p.hidden;
    const float* delta = p.delta + t * p.hidden;
    for (int64_t i = 0; i < p.hidden; ++i) res[i] += delta[i];
    normalize_row(res, p.weight, p.out + t * p.hidden, p.hidden, p.eps);
  }
  return ok_status();
}

}  // namespace loraserve::kernels
