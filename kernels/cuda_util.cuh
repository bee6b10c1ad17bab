// Small device helpers shared by the bf16 kernels (include from .cu only).
// bf16 tensors cross the host/device border as uint16_t bit patterns so
// that headers included by host code need no CUDA types; these helpers
// convert at the load/store.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#ifdef LORASERVE_CUDA_EMU
#include <cstdio>
#include <cstdlib>
#endif

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

// ---- 16-byte vectors of 8 bf16 ----------------------------------------------
// A real GPU faults on a misaligned vector access; the emulator would accept
// one silently, so under it every vector access checks its alignment and
// aborts with a message.

__host__ __device__ __forceinline__ bool is_aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

#ifdef LORASERVE_CUDA_EMU
inline void check_aligned16(const void* p, const char* what) {
  if (!is_aligned16(p)) {
    std::fprintf(stderr, "%s: address %p is not 16-byte aligned (a GPU would fault)\n", what, p);
    std::abort();
  }
}
#define LS_CHECK_ALIGNED16(p, what) ::loraserve::kernels::cuda::check_aligned16((p), (what))
#else
#define LS_CHECK_ALIGNED16(p, what) ((void)0)
#endif

// Loads 8 bf16 at a 16-byte aligned address.
__device__ __forceinline__ uint4 ld_bf16x8(const uint16_t* p) {
  LS_CHECK_ALIGNED16(p, "ld_bf16x8");
  return *reinterpret_cast<const uint4*>(p);
}

// The same through the read-only data path: for data no thread of the
// kernel writes (weights, inputs).
__device__ __forceinline__ uint4 ldg_bf16x8(const uint16_t* p) {
  LS_CHECK_ALIGNED16(p, "ldg_bf16x8");
  return __ldg(reinterpret_cast<const uint4*>(p));
}

__device__ __forceinline__ void st_bf16x8(uint16_t* p, uint4 v) {
  LS_CHECK_ALIGNED16(p, "st_bf16x8");
  *reinterpret_cast<uint4*>(p) = v;
}

// bf16 -> fp32 is exact: the bf16 bits are the high half of the float.
__device__ __forceinline__ void unpack_bf16x8(uint4 v, float (&f)[8]) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}

// fp32 -> bf16 with round-to-nearest-even, element i in the low half first.
__device__ __forceinline__ uint4 pack_bf16x8(const float (&f)[8]) {
  uint32_t w[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint32_t lo = __bfloat16_as_ushort(__float2bfloat16_rn(f[2 * i]));
    const uint32_t hi = __bfloat16_as_ushort(__float2bfloat16_rn(f[2 * i + 1]));
    w[i] = lo | (hi << 16);
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}

}  // namespace loraserve::kernels::cuda
