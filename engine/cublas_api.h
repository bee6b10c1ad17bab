#pragma once
// The cuBLAS entry points the cuda backend calls, resolved when that backend
// starts instead of linked: libcublas pulls in libcublasLt (0.5 GB), and
// loading it cost every process that links the engine about 0.3 s of CPU and
// 200 MB of RSS at start, on machines without a GPU too (every CPU server,
// every test process, every CLI call).
//
// Under the CUDA emulator (tests/cuda_emu) the table points at its cuBLAS.

#include <cublas_v2.h>

#include "common/status.h"

namespace loraserve {

struct CublasApi {
  decltype(&cublasCreate) create = nullptr;
  decltype(&cublasDestroy) destroy = nullptr;
  decltype(&cublasSetStream) set_stream = nullptr;
  decltype(&cublasSetWorkspace) set_workspace = nullptr;
  // (cublasGemmEx is overloaded in C++: the cublasComputeType_t one.)
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                            const void*, const void*, cudaDataType, int, const void*, cudaDataType,
                            int, const void*, void*, cudaDataType, int, cublasComputeType_t,
                            cublasGemmAlgo_t) = nullptr;
  decltype(&cublasGetStatusString) status_string = nullptr;
};

// Loads libcublas.so.<major> (the toolkit we built against) once per process;
// the error says which library could not be loaded or which symbol is missing.
StatusOr<const CublasApi*> cublas_api();

}  // namespace loraserve
