#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "kernels/embedding/embedding.h"

namespace loraserve::kernels {
namespace {

TEST(EmbeddingRef, CopiesRowsById) {
  const std::vector<float> table = {1, 2,   // id 0
                                    3, 4,   // id 1
                                    5, 6};  // id 2
  const std::vector<int32_t> ids = {2, 0, 2};
  std::vector<float> out(6, -1.0f);
  EmbeddingParams p{table.data(), ids.data(), out.data(), 3, 2, 3};
  ASSERT_TRUE(embedding_ref(p).ok());
  EXPECT_EQ(out, (std::vector<float>{5, 6, 1, 2, 5, 6}));
}

TEST(EmbeddingRef, RejectsIdOutsideVocabWithoutWriting) {
  const std::vector<float> table = {1, 2, 3, 4};
  for (int32_t bad : {-1, 2, 1000}) {
    const std::vector<int32_t> ids = {0, bad};
    std::vector<float> out(4, -7.0f);
    EmbeddingParams p{table.data(), ids.data(), out.data(), 2, 2, 2};
    const Status s = embedding_ref(p);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(out, std::vector<float>(4, -7.0f)) << "row 0 must not be written either";
  }
}

TEST(EmbeddingRef, RejectsNullPointersAndBadSizes) {
  const std::vector<float> table = {1, 2};
  const std::vector<int32_t> ids = {0};
  std::vector<float> out(2);
  EmbeddingParams p{nullptr, ids.data(), out.data(), 1, 2, 1};
  EXPECT_EQ(embedding_ref(p).code(), StatusCode::kInvalidArgument);
  p = EmbeddingParams{table.data(), ids.data(), out.data(), 1, 0, 1};
  EXPECT_EQ(embedding_ref(p).code(), StatusCode::kInvalidArgument);
  p = EmbeddingParams{table.data(), ids.data(), out.data(), -1, 2, 1};
  EXPECT_EQ(embedding_ref(p).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace loraserve::kernels
