// RMSNorm as in Hugging Face Llama: y = x / sqrt(mean(x^2) + eps) * weight,
// computed in fp32. The fused variant first adds a delta into the residual
// stream, which is how every transformer block uses it.
#pragma once

#include <cstdint>

#include "common/status.h"

namespace loraserve::kernels {

struct RmsNormParams {
  const float* x = nullptr;       // [num_tokens, hidden]
  const float* weight = nullptr;  // [hidden]
  float* out = nullptr;           // [num_tokens, hidden]; may alias x
  int64_t num_tokens = 0;
  int64_t hidden = 0;
  float eps = 1e-5f;
};

Status rmsnorm_ref(const RmsNormParams& p);

struct AddRmsNormParams {
  float* residual = nullptr;      // [num_tokens, hidden]; residual += delta, in place
  const float* delta = nullptr;   // [num_tokens, hidden]
  const float* weight = nullptr;  // [hidden]
  float* out = nullptr;           // [num_tokens, hidden] = rmsnorm(residual after the add)
  int64_t num_tokens = 0;
  int64_t hidden = 0;
  float eps = 1e-5f;
};

Status add_rmsnorm_ref(const AddRmsNormParams& p);

// The checks the _ref functions make, for kernels that run row slices.
Status validate_rmsnorm(const RmsNormParams& p);
Status validate_add_rmsnorm(const AddRmsNormParams& p);

// The cpu-bf16 backend's forms: the same math for the token rows
// [t_begin, t_end) only (threads take disjoint rows), the sum of squares
// and the residual add on SIMD (`isa` a CpuIsa of kernels/gemm/gemm_bf16.h
// as an int); the sum is f32 in vector lanes, not the reference's double,
// so rows differ from _ref by a few f32 ulps. The caller validates (the
// _ref functions' checks, run once for all rows).
void rmsnorm_rows_cpu(const RmsNormParams& p, int isa, int64_t t_begin, int64_t t_end);
void add_rmsnorm_rows_cpu(const AddRmsNormParams& p, int isa, int64_t t_begin, int64_t t_end);

}  // namespace loraserve::kernels

#ifdef LORASERVE_WITH_CUDA
#include <cuda_runtime.h>
namespace loraserve::kernels {
// Device pointers; asynchronous on `stream`. bf16 I/O (uint16_t bit patterns), fp32 math. add_rmsnorm stores the sum
// residual + delta rounded to bf16 and normalises that rounded value (as a
// bf16 PyTorch model does); out = bf16(weight * bf16(x * inv_rms)) like HF.
struct RmsNormBf16Params {
  const uint16_t* x = nullptr;       // [num_tokens, hidden]
  const uint16_t* weight = nullptr;  // [hidden]
  uint16_t* out = nullptr;           // [num_tokens, hidden]; may alias x
  int64_t num_tokens = 0;
  int64_t hidden = 0;
  float eps = 1e-5f;
};
Status launch_rmsnorm_bf16(const RmsNormBf16Params& p, cudaStream_t stream);

struct AddRmsNormBf16Params {
  uint16_t* residual = nullptr;      // [num_tokens, hidden]; += delta in place
  const uint16_t* delta = nullptr;   // [num_tokens, hidden]
  const uint16_t* weight = nullptr;  // [hidden]
  uint16_t* out = nullptr;           // [num_tokens, hidden]
  int64_t num_tokens = 0;
  int64_t hidden = 0;
  float eps = 1e-5f;
};
Status launch_add_rmsnorm_bf16(const AddRmsNormBf16Params& p, cudaStream_t stream);
}  // namespace loraserve::kernels
#endif
