// Packing into and reading out of the 16-column panel layout.
#include "kernels/gemm/gemm_bf16_panels.h"

#include <cstring>
#include <string>

#include "common/dtype.h"

namespace loraserve::kernels {

Status pack_bf16_panels(const uint16_t* w, int64_t n, int64_t k, uint16_t* out,
                        int64_t panel_begin, int64_t panel_end) {
  if (w == nullptr || out == nullptr || n <= 0 || k <= 0 || k % 2 != 0 || panel_begin < 0 ||
      panel_begin > panel_end || panel_end > bf16_panel_count(n)) {
    return invalid_argument("pack_bf16_panels: bad shape, panel range or null pointer (k must be "
                            "even, got " + std::to_string(k) + ")");
  }
  const int64_t pairs = k / 2;
  // 16 x 16 blocks of k pairs: each block reads one 64-byte line of each of
  // the panel's 16 rows and writes 16 whole lines, both inside L1 (a plain
  // row-by-row copy writes every line 16 times, 4 bytes apart).
  constexpr int64_t kBlock = 16;
  for (int64_t panel = panel_begin; panel < panel_end; ++panel) {
    uint32_t* dst = reinterpret_cast<uint32_t*>(out) + panel * pairs * kBf16PanelCols;
    for (int64_t kp0 = 0; kp0 < pairs; kp0 += kBlock) {
      const int64_t kp_end = pairs - kp0 < kBlock ? pairs : kp0 + kBlock;
      for (int64_t c = 0; c < kBf16PanelCols; ++c) {
        const int64_t row = panel * kBf16PanelCols + c;
        const uint16_t* src = w + row * k;
        for (int64_t kp = kp0; kp < kp_end; ++kp) {
          uint32_t pair = 0;  // rows past n: zero
          // Little-endian: the even k lands in the low half, as VDPBF16PS pairs them.
          if (row < n) std::memcpy(&pair, src + 2 * kp, sizeof(pair));
          dst[kp * kBf16PanelCols + c] = pair;
        }
      }
    }
  }
  return ok_status();
}

void bf16_panels_row_f32(const uint16_t* packed, int64_t k, int64_t row, float* out) {
  const int64_t pairs = k / 2;
  const uint16_t* base =
      packed + ((row / kBf16PanelCols) * pairs * kBf16PanelCols + row % kBf16PanelCols) * 2;
  for (int64_t kp = 0; kp < pairs; ++kp) {
    out[2 * kp] = bf16_to_f32(base[kp * kBf16PanelCols * 2]);
    out[2 * kp + 1] = bf16_to_f32(base[kp * kBf16PanelCols * 2 + 1]);
  }
}

}  // namespace loraserve::kernels
