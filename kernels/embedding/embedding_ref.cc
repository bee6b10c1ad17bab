#include <cstring>
#include <string>

#include "kernels/embedding/embedding.h"

namespace loraserve::kernels {

namespace {

Status validate(const EmbeddingParams& p) {
  if (p.num_tokens < 0) return invalid_argument("embedding: num_tokens < 0");
  if (p.hidden <= 0 || p.vocab <= 0)
    return invalid_argument("embedding: hidden and vocab must be > 0");
  if (p.num_tokens == 0) return ok_status();
  if (!p.table || !p.ids || !p.out) return invalid_argument("embedding: null table, ids or out");
  // Every id is checked before anything is written, so a bad request leaves `out` as it was.
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    if (p.ids[t] < 0 || p.ids[t] >= p.vocab) {
      return invalid_argument("embedding: token id " + std::to_string(p.ids[t]) + " at row " +
                              std::to_string(t) + " is outside [0, " + std::to_string(p.vocab) +
                              ")");
    }
  }
  return ok_status();
}

}  // namespace

Status embedding_ref(const EmbeddingParams& p) {
  LS_RETURN_IF_ERROR(validate(p));
  const size_t row_bytes = static_cast<size_t>(p.hidden) * sizeof(float);
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    std::memcpy(p.out + t * p.hidden, p.table + static_cast<int64_t>(p.ids[t]) * p.hidden,
                row_bytes);
  }
  return ok_status();
}

}  // namespace loraserve::kernels
