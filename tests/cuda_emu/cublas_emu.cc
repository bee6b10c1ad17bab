// Emulated cuBLAS: handles and the GEMM entry points, implemented from the
// cuBLAS documentation of cublasGemmEx (column-major,
// C = alpha * op(A) * op(B) + beta * C; op(A) m x k, op(B) k x n, C m x n),
// independently of how loraserve calls it.
//
// Beyond the documented argument checks, the emulator verifies that every
// matrix the call would touch lies inside one cudaMalloc (or cudaHostAlloc)
// allocation: on a GPU a stray range is an illegal address (or silent
// garbage); here it is CUBLAS_STATUS_EXECUTION_FAILED with a message and
// cudaErrorIllegalAddress as the runtime's last error.
#include <cublas_v2.h>

#include <algorithm>
#include <cstdio>
#include <mutex>
#include <unordered_set>

#include "cublas_gemm.h"
#include "lsemu_internal.h"

// The cuBLAS headers only declare the handle type.
struct cublasContext {
  cudaStream_t stream = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
  cublasPointerMode_t pointer_mode = CUBLAS_POINTER_MODE_HOST;
};

namespace lsemu::detail {
namespace {

struct BlasHandles {
  std::mutex mu;
  std::unordered_set<const void*> live;
};

BlasHandles& blas_handles() {
  static BlasHandles* h = new BlasHandles;
  return *h;
}

bool handle_valid(cublasHandle_t h) {
  BlasHandles& b = blas_handles();
  std::lock_guard<std::mutex> lock(b.mu);
  return h && b.live.count(h) != 0;
}

bool valid_op(cublasOperation_t op) { return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C; }

size_t type_size(cudaDataType t) { return t == CUDA_R_32F ? 4 : 2; }

bool supported_compute(cublasComputeType_t c) {
  return c == CUBLAS_COMPUTE_32F || c == CUBLAS_COMPUTE_32F_PEDANTIC || c == CUBLAS_COMPUTE_32F_FAST_16F ||
         c == CUBLAS_COMPUTE_32F_FAST_16BF || c == CUBLAS_COMPUTE_32F_FAST_TF32;
}

// The cublasGemmEx type table rows for a float compute/scale type:
// A and B of one type (16BF, 16F or 32F); C of that type or 32F.
bool supported_types(cudaDataType a, cudaDataType b, cudaDataType c) {
  if (a != b) return false;
  if (a != CUDA_R_16BF && a != CUDA_R_16F && a != CUDA_R_32F) return false;
  return c == a || c == CUDA_R_32F;
}

bool supported_algo(cublasGemmAlgo_t algo) {
  const int v = static_cast<int>(algo);
  return v == CUBLAS_GEMM_DEFAULT || v == CUBLAS_GEMM_DEFAULT_TENSOR_OP ||
         (v >= CUBLAS_GEMM_ALGO0 && v <= CUBLAS_GEMM_ALGO23) ||
         (v >= CUBLAS_GEMM_ALGO0_TENSOR_OP && v <= CUBLAS_GEMM_ALGO15_TENSOR_OP);
}

// Bytes spanned by a stored rows x cols column-major matrix with leading
// dimension ld (rows, cols > 0).
size_t span_bytes(int64_t rows, int64_t cols, int64_t ld, cudaDataType t) {
  return static_cast<size_t>((cols - 1) * ld + rows) * type_size(t);
}

bool check_range(const char* what, const void* p, size_t bytes) {
  if (in_device_accessible_alloc(p, bytes)) return true;
  std::fprintf(stderr,
               "lsemu cuBLAS: matrix %s [%p, +%zu bytes) is not inside one device allocation "
               "(illegal address on a GPU)\n",
               what, p, bytes);
  record_error(cudaErrorIllegalAddress);
  return false;
}

struct GemmArgs {
  cublasHandle_t handle;
  cublasOperation_t transa, transb;
  int m, n, k;
  const void* alpha;
  const void* A;
  cudaDataType Atype;
  int lda;
  long long strideA;
  const void* B;
  cudaDataType Btype;
  int ldb;
  long long strideB;
  const void* beta;
  void* C;
  cudaDataType Ctype;
  int ldc;
  long long strideC;
  int batch;
  cublasComputeType_t compute;
  cublasGemmAlgo_t algo;
};

// The documented checks of cublasGemmEx / cublasGemmStridedBatchedEx, then
// the computation batch by batch.
cublasStatus_t gemm_ex(const GemmArgs& g) {
  if (!handle_valid(g.handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (g.m < 0 || g.n < 0 || g.k < 0 || g.batch < 0 || !valid_op(g.transa) || !valid_op(g.transb)) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  const bool ta = g.transa != CUBLAS_OP_N, tb = g.transb != CUBLAS_OP_N;
  const int a_rows = ta ? g.k : g.m, a_cols = ta ? g.m : g.k;
  const int b_rows = tb ? g.n : g.k, b_cols = tb ? g.k : g.n;
  if (g.lda < std::max(1, a_rows) || g.ldb < std::max(1, b_rows) || g.ldc < std::max(1, g.m)) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (!g.alpha || !g.beta) return CUBLAS_STATUS_INVALID_VALUE;
  if (!supported_types(g.Atype, g.Btype, g.Ctype) || !supported_compute(g.compute) ||
      !supported_algo(g.algo)) {
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  if (g.m == 0 || g.n == 0 || g.batch == 0) return CUBLAS_STATUS_SUCCESS;
  // Both pointer modes read the scalars directly: emulated device memory is
  // host memory.
  const float alpha = *static_cast<const float*>(g.alpha);
  const float beta = *static_cast<const float*>(g.beta);
  const bool reads_ab = g.k > 0 && alpha != 0.0f;
  for (int i = 0; i < g.batch; ++i) {
    const char* a = static_cast<const char*>(g.A) + i * g.strideA * static_cast<long long>(type_size(g.Atype));
    const char* b = static_cast<const char*>(g.B) + i * g.strideB * static_cast<long long>(type_size(g.Btype));
    char* c = static_cast<char*>(g.C) + i * g.strideC * static_cast<long long>(type_size(g.Ctype));
    if (reads_ab && (!check_range("A", a, span_bytes(a_rows, a_cols, g.lda, g.Atype)) ||
                     !check_range("B", b, span_bytes(b_rows, b_cols, g.ldb, g.Btype)))) {
      return CUBLAS_STATUS_EXECUTION_FAILED;
    }
    if (!check_range("C", c, span_bytes(g.m, g.n, g.ldc, g.Ctype))) return CUBLAS_STATUS_EXECUTION_FAILED;
    gemm(g.m, g.n, g.k, alpha, GemmOperand{a, g.Atype, g.lda, ta}, GemmOperand{b, g.Btype, g.ldb, tb},
         beta, c, g.Ctype, g.ldc);
  }
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace
}  // namespace lsemu::detail

using lsemu::detail::handle_valid;

cublasStatus_t cublasCreate_v2(cublasHandle_t* handle) {
  if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
  auto* h = new cublasContext;
  lsemu::detail::BlasHandles& b = lsemu::detail::blas_handles();
  std::lock_guard<std::mutex> lock(b.mu);
  b.live.insert(h);
  *handle = h;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
  lsemu::detail::BlasHandles& b = lsemu::detail::blas_handles();
  std::lock_guard<std::mutex> lock(b.mu);
  if (!handle || b.live.erase(handle) == 0) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t streamId) {
  if (!handle_valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!lsemu::detail::stream_valid(streamId)) return CUBLAS_STATUS_INVALID_VALUE;
  handle->stream = streamId;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream_v2(cublasHandle_t handle, cudaStream_t* streamId) {
  if (!handle_valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!streamId) return CUBLAS_STATUS_INVALID_VALUE;
  *streamId = handle->stream;
  return CUBLAS_STATUS_SUCCESS;
}

// As documented: the workspace must be device memory aligned to 256 bytes.
cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t handle, void* workspace, size_t workspaceSizeInBytes) {
  if (!handle_valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (workspace && workspaceSizeInBytes > 0) {
    if (reinterpret_cast<uintptr_t>(workspace) % 256 != 0 ||
        !lsemu::detail::in_device_alloc(workspace, workspaceSizeInBytes)) {
      return CUBLAS_STATUS_INVALID_VALUE;
    }
  }
  handle->workspace = workspace;
  handle->workspace_bytes = workspace ? workspaceSizeInBytes : 0;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (!handle_valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->math = mode;  // all modes compute the same here
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t* mode) {
  if (!handle_valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!mode) return CUBLAS_STATUS_INVALID_VALUE;
  *mode = handle->math;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetPointerMode_v2(cublasHandle_t handle, cublasPointerMode_t mode) {
  if (!handle_valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (mode != CUBLAS_POINTER_MODE_HOST && mode != CUBLAS_POINTER_MODE_DEVICE) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  handle->pointer_mode = mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetPointerMode_v2(cublasHandle_t handle, cublasPointerMode_t* mode) {
  if (!handle_valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!mode) return CUBLAS_STATUS_INVALID_VALUE;
  *mode = handle->pointer_mode;
  return CUBLAS_STATUS_SUCCESS;
}

const char* cublasGetStatusName(cublasStatus_t status) {
  switch (status) {
#define LSEMU_NAME(s) \
  case s: return #s;
    LSEMU_NAME(CUBLAS_STATUS_SUCCESS)
    LSEMU_NAME(CUBLAS_STATUS_NOT_INITIALIZED)
    LSEMU_NAME(CUBLAS_STATUS_ALLOC_FAILED)
    LSEMU_NAME(CUBLAS_STATUS_INVALID_VALUE)
    LSEMU_NAME(CUBLAS_STATUS_ARCH_MISMATCH)
    LSEMU_NAME(CUBLAS_STATUS_MAPPING_ERROR)
    LSEMU_NAME(CUBLAS_STATUS_EXECUTION_FAILED)
    LSEMU_NAME(CUBLAS_STATUS_INTERNAL_ERROR)
    LSEMU_NAME(CUBLAS_STATUS_NOT_SUPPORTED)
    LSEMU_NAME(CUBLAS_STATUS_LICENSE_ERROR)
#undef LSEMU_NAME
    default: return "CUBLAS_STATUS_UNKNOWN";
  }
}

const char* cublasGetStatusString(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "an absent device architectural feature is required";
    case CUBLAS_STATUS_MAPPING_ERROR: return "an access to GPU memory space failed";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal operation failed";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    case CUBLAS_STATUS_LICENSE_ERROR: return "error detected trying to check the license";
    default: return "unknown error";
  }
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m,
                            int n, int k, const void* alpha, const void* A, cudaDataType Atype, int lda,
                            const void* B, cudaDataType Btype, int ldb, const void* beta, void* C,
                            cudaDataType Ctype, int ldc, cublasComputeType_t computeType,
                            cublasGemmAlgo_t algo) {
  return lsemu::detail::gemm_ex({handle, transa, transb, m, n, k, alpha, A, Atype, lda, 0, B, Btype, ldb, 0,
                                 beta, C, Ctype, ldc, 0, 1, computeType, algo});
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa,
                                          cublasOperation_t transb, int m, int n, int k, const void* alpha,
                                          const void* A, cudaDataType Atype, int lda, long long int strideA,
                                          const void* B, cudaDataType Btype, int ldb, long long int strideB,
                                          const void* beta, void* C, cudaDataType Ctype, int ldc,
                                          long long int strideC, int batchCount,
                                          cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
  return lsemu::detail::gemm_ex({handle, transa, transb, m, n, k, alpha, A, Atype, lda, strideA, B, Btype,
                                 ldb, strideB, beta, C, Ctype, ldc, strideC, batchCount, computeType,
                                 algo});
}

cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m,
                              int n, int k, const float* alpha, const float* A, int lda, const float* B,
                              int ldb, const float* beta, float* C, int ldc) {
  return lsemu::detail::gemm_ex({handle, transa, transb, m, n, k, alpha, A, CUDA_R_32F, lda, 0, B,
                                 CUDA_R_32F, ldb, 0, beta, C, CUDA_R_32F, ldc, 0, 1, CUBLAS_COMPUTE_32F,
                                 CUBLAS_GEMM_DEFAULT});
}
