// Weights repacked for the VDPBF16PS kernel (--cpu-weights packed).
//
// A checkpoint stores W as [n, k] rows. Row-layout kernels form dot products
// along k and reduce each output's 16 lanes at the end, reading NR separate
// row streams per tile. In panels, 16 consecutive rows (output columns) are
// interleaved by k pairs:
//   panel[c / 16][k / 2][c % 16][k % 2]  ([ceil(n/16), k/2, 16, 2] bf16)
// so one 64-byte load holds 16 outputs' next two k values: x's pair is
// broadcast, every accumulator lane is a final output (no reductions, so k
// can be blocked freely), and each panel is one sequential stream that is
// easy to prefetch. Rows past n (the last panel's padding) are zero.
// Costs: a pass over the weights at load, and the checkpoint's mapping can
// no longer be used in place.
#pragma once

#include <cstdint>

#include "common/status.h"

namespace loraserve::kernels {

constexpr int64_t kBf16PanelCols = 16;
// The layout's name and version where packed weights are kept on disk
// (engine/packed_weights_cache.h): change it with the layout.
constexpr const char* kBf16PanelsLayout = "bf16-panels-16x2-v1";

inline int64_t bf16_panel_count(int64_t n) { return (n + kBf16PanelCols - 1) / kBf16PanelCols; }
// Elements (uint16_t) of a packed [n, k] matrix, padding included.
inline int64_t bf16_panels_size(int64_t n, int64_t k) {
  return bf16_panel_count(n) * kBf16PanelCols * k;
}

// Packs panels [panel_begin, panel_end) of the row-major bf16 w [n, k] into
// `out` (bf16_panels_size(n, k) elements). k must be even.
Status pack_bf16_panels(const uint16_t* w, int64_t n, int64_t k, uint16_t* out,
                        int64_t panel_begin, int64_t panel_end);

// Row `row` (< n) of a packed [n, k] matrix, widened to f32 (an embedding
// lookup on a tied, packed table).
void bf16_panels_row_f32(const uint16_t* packed, int64_t k, int64_t row, float* out);

}  // namespace loraserve::kernels
