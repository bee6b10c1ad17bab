// Small device helpers shared by the bf16 kernels (include from .cu only).
// bf16 tensors cross the host/device border as uint16_t bit patterns so
// that headers included by host code need no CUDA types; these helpers
// convert at the load/store.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

// Dynamic shared memory (the launch's smem bytes) as an array of T.
#ifdef LORASERVE_CUDA_EMU
#define LS_DYNAMIC_SHARED(T, name) T* name = static_cast<T*>(::lsemu::dynamic_smem())
#else
#define LS_DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#endif

namespace loraserve::kernels::cuda {

__device__ __forceinline__ float ld_bf16(const uint16_t* p) {
  return __bfloat162float(*reinterpret_cast<const __nv_bfloat16*>(p));
}

__device__ __forceinline__ void st_bf16(uint16_t* p, float v) {
  *reinterpret_cast<__nv_bfloat16*>(p) = __float2bfloat16_rn(v);
}

__device__ __forceinline__ float round_bf16(float v) {
  return __bfloat162float(__float2bfloat16_rn(v));
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Block-wide sum for blocks of kThreads threads (a multiple of 32, <= 1024).
// Every thread gets the total. Contains __syncthreads: call from all threads.
template <int kThreads>
__device__ float block_sum(float v) {
  __shared__ float warp_sums[32];
  v = warp_sum(v);
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  v = threadIdx.x < kThreads / 32 ? warp_sums[threadIdx.x] : 0.0f;
  if (warp == 0) {
    v = warp_sum(v);
    if (lane == 0) warp_sums[0] = v;
  }
  __syncthreads();
  const float total = warp_sums[0];
  __syncthreads();
  return total;
}

}  // namespace loraserve::kernels::cuda
