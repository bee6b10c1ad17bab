// cuBLAS is loaded when the cuda backend starts, not linked (engine/cublas_api.h).
// Loading it needs no device, so this runs on every machine with the toolkit:
// the table is complete and its entries call into the real library (under
// the CUDA emulator, into its cuBLAS).
#include <gtest/gtest.h>

#include <cstring>

#include "engine/cublas_api.h"

namespace loraserve {
namespace {

TEST(CublasApi, ResolvesEveryEntryAndCallsIntoTheLibrary) {
  StatusOr<const CublasApi*> api = cublas_api();
  ASSERT_TRUE(api.ok()) << api.status().message();
  const CublasApi& a = **api;
  EXPECT_NE(a.create, nullptr);
  EXPECT_NE(a.destroy, nullptr);
  EXPECT_NE(a.set_stream, nullptr);
  EXPECT_NE(a.set_workspace, nullptr);
  EXPECT_NE(a.gemm_ex, nullptr);
  ASSERT_NE(a.status_string, nullptr);
  // cuBLAS's own wording (the emulator's copies it for these two).
  EXPECT_STREQ(a.status_string(CUBLAS_STATUS_SUCCESS), "success");
  const char* invalid = a.status_string(CUBLAS_STATUS_INVALID_VALUE);
  ASSERT_NE(invalid, nullptr);
  EXPECT_NE(std::strstr(invalid, "value"), nullptr) << invalid;
  // Loaded once: a second call returns the same table.
  StatusOr<const CublasApi*> again = cublas_api();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *api);
}

TEST(CublasApi, NullHandleIsRefusedByTheLibraryNotACrash) {
  StatusOr<const CublasApi*> api = cublas_api();
  ASSERT_TRUE(api.ok()) << api.status().message();
  // cuBLAS checks its handle before anything else; no device is touched.
  EXPECT_NE((*api)->set_stream(nullptr, nullptr), CUBLAS_STATUS_SUCCESS);
}

}  // namespace
}  // namespace loraserve
