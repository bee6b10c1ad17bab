// One macro family for CUDA runtime checks: a failing call becomes a
// Status naming the statement, file and line; nothing aborts (a server must
// not die for one tenant). Include only from .cu files or CUDA-enabled code.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "common/status.h"

namespace loraserve {

inline Status cuda_status(cudaError_t err, const char* stmt, const char* file, int line) {
  if (err == cudaSuccess) return ok_status();
  return internal_error(std::string("CUDA error ") + cudaGetErrorName(err) + " (" +
                        cudaGetErrorString(err) + ") in `" + stmt + "` at " + file + ":" +
                        std::to_string(line));
}

}  // namespace loraserve

#define LS_CUDA_CHECK(stmt) \
  LS_RETURN_IF_ERROR(::loraserve::cuda_status((stmt), #stmt, __FILE__, __LINE__))

// After a kernel launch: reports launch-configuration errors at once.
#define LS_CUDA_CHECK_LAUNCH() \
  LS_RETURN_IF_ERROR(::loraserve::cuda_status(cudaGetLastError(), "kernel launch", __FILE__, __LINE__))

// A kernel launch that also compiles under the CPU emulator
// (tests/cuda_emu), where `<<<...>>>` is not C++:
//   LS_LAUNCH(kernel, grid, block, smem_bytes, stream)(args...);
#ifdef LORASERVE_CUDA_EMU
#define LS_LAUNCH(kernel, grid, block, smem, stream) LS_EMU_LAUNCH(kernel, grid, block, smem, stream)
#else
#define LS_LAUNCH(kernel, grid, block, smem, stream) kernel<<<grid, block, smem, stream>>>
#endif
