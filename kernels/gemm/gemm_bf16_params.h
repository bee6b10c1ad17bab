// GemmBf16Params alone, so that the per-ISA kernel files (built with
// -mavx512* / -mavx2) include nothing with inline library code: an inline
// function emitted there could be picked by the linker for every caller and
// run AVX-512 instructions on a CPU without them.
#pragma once

#include <cstdint>

namespace loraserve::kernels {

struct GemmBf16Params {
  const float* x = nullptr;      // [m, k] f32, row stride ldx (kAvx512 / kAvx2 / kScalar)
  const uint16_t* xb = nullptr;  // [m, k] bf16 copy of x, row stride k (kAvx512Bf16)
  const uint16_t* w = nullptr;   // [n, k] bf16 bit patterns, contiguous rows (or panels, below)
  float* y = nullptr;            // [m, n], row stride ldy
  int64_t m = 0, n = 0, k = 0;
  int64_t ldx = 0;  // 0 means k
  int64_t ldy = 0;  // 0 means n
  int64_t n_begin = 0, n_end = -1;  // output columns computed; n_end -1 means n
  bool accumulate = false;          // y += instead of y =
  // w in 16-column panels (gemm_bf16_panels.h, pack_bf16_panels): kAvx512Bf16
  // only; k even; n_begin (and n_end unless it is n) multiples of 16.
  bool w_panels = false;
};

}  // namespace loraserve::kernels
