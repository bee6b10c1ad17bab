// Hooks shared between the emulator's own sources (not for users).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace lsemu::detail {

// Device limits the emulated device reports and enforces (an H100 SXM).
constexpr int kMaxThreadsPerBlock = 1024;
constexpr unsigned kMaxBlockDim[3] = {1024, 1024, 64};
constexpr unsigned kMaxGridDim[3] = {0x7fffffffu, 65535, 65535};
constexpr size_t kDefaultDynSmem = 48 * 1024;        // without opt-in
constexpr size_t kMaxDynSmemOptin = 227 * 1024;      // sharedMemPerBlockOptin

// cudart_emu: the calling host thread's sticky "last error".
cudaError_t record_error(cudaError_t err);  // returns err
bool stream_valid(cudaStream_t s);
// The dynamic shared memory a launch of `func` may use (cudaFuncSetAttribute).
size_t dyn_smem_limit(const void* func);

// cudart_memory: is [p, p+bytes) inside one live cudaMalloc allocation, or
// inside one cudaMalloc or cudaHostAlloc allocation (device-accessible)?
bool in_device_alloc(const void* p, size_t bytes);
bool in_device_accessible_alloc(const void* p, size_t bytes);

}  // namespace lsemu::detail
