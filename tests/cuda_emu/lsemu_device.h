// Device-side builtins for the CPU emulator (included by cuda_emu.h):
// thread/block indices, block and warp synchronisation, warp shuffles and
// votes, atomics, fast-math intrinsics and CUDA's global min/max.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

// ---- Indices ---------------------------------------------------------------
// The current fiber's values live in per-OS-thread variables that the SIMT
// engine rewrites on every fiber switch. __thread (not thread_local) gives a
// plain TLS load with no C++ init wrapper; initial-exec because the emulator
// is linked into executables, never dlopen'ed.
namespace lsemu::detail {
#define LSEMU_TLS __thread __attribute__((tls_model("initial-exec")))
extern LSEMU_TLS uint3 tl_thread_idx;
extern LSEMU_TLS uint3 tl_block_idx;
extern LSEMU_TLS dim3 tl_block_dim;
extern LSEMU_TLS dim3 tl_grid_dim;
extern LSEMU_TLS void* tl_dynamic_smem;
#undef LSEMU_TLS
}  // namespace lsemu::detail

// Read-only, as in CUDA.
#define threadIdx (static_cast<const ::uint3&>(::lsemu::detail::tl_thread_idx))
#define blockIdx (static_cast<const ::uint3&>(::lsemu::detail::tl_block_idx))
#define blockDim (static_cast<const ::dim3&>(::lsemu::detail::tl_block_dim))
#define gridDim (static_cast<const ::dim3&>(::lsemu::detail::tl_grid_dim))
// A variable, not a macro: cudaDeviceProp has a member named warpSize.
constexpr int warpSize = 32;

namespace lsemu {
// The current block's dynamic shared memory (the launch's smem_bytes,
// 16-byte aligned, refilled with 0xFF bytes before each block so that floats
// read before being written are NaN). Stands in for `extern __shared__`.
inline void* dynamic_smem() { return detail::tl_dynamic_smem; }
}  // namespace lsemu

// ---- Synchronisation (implemented by the SIMT engine, simt.cc) -------------
namespace lsemu::detail {
enum WarpOp : int {
  kWarpSync = 0,
  kShflIdx,
  kShflUp,
  kShflDown,
  kShflXor,
  kVoteBallot,
  kVoteAny,
  kVoteAll,
  // Every lane of the group must be here with the same `bits` (lsemu_wmma.h's
  // convergence check). Result: 0 if so; otherwise bit 63 | the first other
  // lane q (bits 0-7) | q's WarpOp (bits 8-15) | the top byte of q's bits
  // (bits 16-23).
  kWarpUniform,
};
enum BarrierOp : int { kBarPlain = 0, kBarCount, kBarAnd, kBarOr };
// Block barrier over the block's non-exited threads; returns the reduction
// of `pred` for the counting variants.
int block_barrier(int op, int pred);
// Warp-level exchange among the non-exited lanes of `mask`; `arg` is the
// shuffle's lane argument. Returns the shuffled bits or the vote result.
uint64_t warp_op(unsigned mask, int op, uint64_t bits, int arg, int width);
unsigned active_mask();

template <class T>
inline uint64_t to_bits(const T& v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value,
                "lsemu: shuffles take types of at most 8 bytes");
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <class T>
inline T from_bits(uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}
}  // namespace lsemu::detail

inline void __syncthreads() { lsemu::detail::block_barrier(lsemu::detail::kBarPlain, 0); }
inline int __syncthreads_count(int pred) {
  return lsemu::detail::block_barrier(lsemu::detail::kBarCount, pred);
}
inline int __syncthreads_and(int pred) {
  return lsemu::detail::block_barrier(lsemu::detail::kBarAnd, pred);
}
inline int __syncthreads_or(int pred) {
  return lsemu::detail::block_barrier(lsemu::detail::kBarOr, pred);
}
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  lsemu::detail::warp_op(mask, lsemu::detail::kWarpSync, 0, 0, 32);
}
inline unsigned __activemask() { return lsemu::detail::active_mask(); }
// One OS thread runs the whole block: memory is always coherent.
inline void __threadfence() {}
inline void __threadfence_block() {}
inline void __threadfence_system() {}

template <class T>
inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize) {
  using namespace lsemu::detail;
  return from_bits<T>(warp_op(mask, kShflIdx, to_bits(var), srcLane, width));
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
  using namespace lsemu::detail;
  return from_bits<T>(warp_op(mask, kShflUp, to_bits(var), static_cast<int>(delta), width));
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
  using namespace lsemu::detail;
  return from_bits<T>(warp_op(mask, kShflDown, to_bits(var), static_cast<int>(delta), width));
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize) {
  using namespace lsemu::detail;
  return from_bits<T>(warp_op(mask, kShflXor, to_bits(var), laneMask, width));
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  using namespace lsemu::detail;
  return static_cast<unsigned>(warp_op(mask, kVoteBallot, pred != 0, 0, 32));
}
inline int __any_sync(unsigned mask, int pred) {
  using namespace lsemu::detail;
  return static_cast<int>(warp_op(mask, kVoteAny, pred != 0, 0, 32));
}
inline int __all_sync(unsigned mask, int pred) {
  using namespace lsemu::detail;
  return static_cast<int>(warp_op(mask, kVoteAll, pred != 0, 0, 32));
}

template <class T>
inline T __ldg(const T* p) {
  return *p;
}

// ---- Atomics ---------------------------------------------------------------
// A plain read-modify-write is atomic here: fibers only switch at
// synchronisation points, and a block's fibers share one OS thread.
#define LSEMU_ATOMIC_RMW(name, T, expr) \
  inline T name(T* address, T val) {    \
    const T old = *address;             \
    *address = (expr);                  \
    return old;                         \
  }
LSEMU_ATOMIC_RMW(atomicAdd, int, old + val)
LSEMU_ATOMIC_RMW(atomicAdd, unsigned int, old + val)
LSEMU_ATOMIC_RMW(atomicAdd, unsigned long long int, old + val)
LSEMU_ATOMIC_RMW(atomicAdd, float, old + val)
LSEMU_ATOMIC_RMW(atomicAdd, double, old + val)
LSEMU_ATOMIC_RMW(atomicSub, int, old - val)
LSEMU_ATOMIC_RMW(atomicSub, unsigned int, old - val)
LSEMU_ATOMIC_RMW(atomicExch, int, val)
LSEMU_ATOMIC_RMW(atomicExch, unsigned int, val)
LSEMU_ATOMIC_RMW(atomicExch, unsigned long long int, val)
LSEMU_ATOMIC_RMW(atomicExch, float, val)
LSEMU_ATOMIC_RMW(atomicMax, int, old < val ? val : old)
LSEMU_ATOMIC_RMW(atomicMax, unsigned int, old < val ? val : old)
LSEMU_ATOMIC_RMW(atomicMax, long long int, old < val ? val : old)
LSEMU_ATOMIC_RMW(atomicMax, unsigned long long int, old < val ? val : old)
LSEMU_ATOMIC_RMW(atomicMin, int, val < old ? val : old)
LSEMU_ATOMIC_RMW(atomicMin, unsigned int, val < old ? val : old)
LSEMU_ATOMIC_RMW(atomicMin, long long int, val < old ? val : old)
LSEMU_ATOMIC_RMW(atomicMin, unsigned long long int, val < old ? val : old)
LSEMU_ATOMIC_RMW(atomicAnd, int, old & val)
LSEMU_ATOMIC_RMW(atomicAnd, unsigned int, old & val)
LSEMU_ATOMIC_RMW(atomicOr, int, old | val)
LSEMU_ATOMIC_RMW(atomicOr, unsigned int, old | val)
LSEMU_ATOMIC_RMW(atomicXor, int, old ^ val)
LSEMU_ATOMIC_RMW(atomicXor, unsigned int, old ^ val)
#undef LSEMU_ATOMIC_RMW
#define LSEMU_ATOMIC_CAS(T)                                  \
  inline T atomicCAS(T* address, T compare, T val) {         \
    const T old = *address;                                  \
    if (old == compare) *address = val;                      \
    return old;                                              \
  }
LSEMU_ATOMIC_CAS(int)
LSEMU_ATOMIC_CAS(unsigned int)
LSEMU_ATOMIC_CAS(unsigned long long int)
#undef LSEMU_ATOMIC_CAS

// ---- Math intrinsics -------------------------------------------------------
// glibc's <math.h> already declares __expf, __logf, __sinf, __cosf, __tanf,
// __powf, __log2f, __log10f, __exp10f and __sincosf (its internal aliases,
// not exported by libm.so); the emulator defines them (math_emu.cc) with
// the accurate results. The rest are not declared anywhere under g++.
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return std::sqrt(x); }
inline float __fadd_rn(float x, float y) { return x + y; }
inline float __fsub_rn(float x, float y) { return x - y; }
inline float __fmul_rn(float x, float y) { return x * y; }
inline float __fmaf_rn(float x, float y, float z) { return std::fma(x, y, z); }
inline float __saturatef(float x) {  // NaN -> 0, like the hardware
  return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f;
}
inline int __float_as_int(float x) { return lsemu::detail::from_bits<int>(lsemu::detail::to_bits(x)); }
inline unsigned __float_as_uint(float x) {
  return lsemu::detail::from_bits<unsigned>(lsemu::detail::to_bits(x));
}
inline float __int_as_float(int x) { return lsemu::detail::from_bits<float>(lsemu::detail::to_bits(x)); }
inline float __uint_as_float(unsigned x) {
  return lsemu::detail::from_bits<float>(lsemu::detail::to_bits(x));
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __clzll(long long x) {
  return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x));
}
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }

// ---- min / max -------------------------------------------------------------
// CUDA device code has global min/max overloads. Same-type overloads are
// plain functions; mixed arithmetic pairs (min(a + 1, some_int64)) go through
// a template that returns the usual common type. std::min/std::max are
// untouched: qualified calls never see these, and for an unqualified call
// with `using std::min` on two equal types std::min is the more specialised
// template and the non-templates below are exact matches anyway.
#define LSEMU_MINMAX_SAME(T)                                   \
  inline constexpr T min(T a, T b) { return b < a ? b : a; } \
  inline constexpr T max(T a, T b) { return a < b ? b : a; }
LSEMU_MINMAX_SAME(int)
LSEMU_MINMAX_SAME(unsigned int)
LSEMU_MINMAX_SAME(long)
LSEMU_MINMAX_SAME(unsigned long)
LSEMU_MINMAX_SAME(long long)
LSEMU_MINMAX_SAME(unsigned long long)
#undef LSEMU_MINMAX_SAME
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }

template <class A, class B,
          std::enable_if_t<std::is_arithmetic<A>::value && std::is_arithmetic<B>::value &&
                               !std::is_same<A, B>::value,
                           int> = 0>
inline constexpr std::common_type_t<A, B> min(A a, B b) {
  using C = std::common_type_t<A, B>;
  return min(static_cast<C>(a), static_cast<C>(b));
}
template <class A, class B,
          std::enable_if_t<std::is_arithmetic<A>::value && std::is_arithmetic<B>::value &&
                               !std::is_same<A, B>::value,
                           int> = 0>
inline constexpr std::common_type_t<A, B> max(A a, B b) {
  using C = std::common_type_t<A, B>;
  return max(static_cast<C>(a), static_cast<C>(b));
}
