// The warp matrix API `nvcuda::wmma` (CUDA's <mma.h>) for the CPU emulator.
// Kernels get it with the usual `#include <mma.h>`: under the emulated build
// tests/cuda_emu/mma.h (a -I directory, searched before the toolkit's -isystem
// one) includes this file. See README.md, "Tensor cores (wmma)".
//
// Shapes m16n16k16, m32n8k16 and m8n32k16; matrix_a/matrix_b of __half or
// __nv_bfloat16 (row_major or col_major); accumulators of float, or __half for
// __half inputs; fill_fragment, load_matrix_sync, store_matrix_sync, mma_sync
// (no satfinite, tf32, integer or sub-byte types).
//
// Design. Every lane's fragment holds the WHOLE tile, x[] in logical row-major
// order (A: m x k, B: k x n, accumulator: m x n), so num_elements is the tile
// size instead of the hardware's per-lane share. Kernels must treat the
// element -> lane mapping as unknown (CUDA does not specify it) and only apply
// the same element-wise operation to all of x[]: that stays correct here.
//
// Checks (each aborts with a message naming the block, thread and call):
// - The *_sync functions are warp-collective: all 32 lanes of the warp must be
//   alive (no early exit, no partial warp) and reach the same call together.
//   Each one is a warp exchange, so a call that some lanes never reach is an
//   emulator DEADLOCK, and lanes that meet at different warp operations (a
//   divergent branch: another wmma call, a shuffle, a __syncwarp) are named.
// - ptr, ldm, layout and the template arguments must be the same on all lanes
//   (as CUDA requires); so must the fragment contents at mma_sync and
//   store_matrix_sync (a lane-dependent write to x[] is a bug on hardware,
//   where the mapping is unknown).
// - ptr 32-byte (256-bit) aligned; ldm a multiple of 16 bytes (8 elements of
//   __half/__nv_bfloat16, 4 of float); layout_t one of the two values.
// - load_matrix_sync reads the tile BEFORE the warp meets, and every lane's
//   copy must match: a tile written by other lanes of the warp without a
//   __syncwarp()/__syncthreads() in between is caught (lanes read different
//   data). store_matrix_sync writes each lane's share only (element e of the
//   row-major tile by lane e % 32), after the warp meets, so reading the stored
//   tile from another lane without a __syncwarp() sees stale data, as on a GPU.
//
// Arithmetic: A/B values are converted to float exactly; each output element
// is c + sum_k a*b accumulated in float in ascending k order (products of
// bf16/fp16 values are exact in float), then rounded (to nearest even) to the
// accumulator type once per mma_sync. Hardware's order is unspecified: compare
// with a tolerance. The lanes' inputs are checked to be identical, so the first
// lane to leave the call computes the result and the others copy it.
//
// Mechanics: a call is two warp exchanges. The first (kWarpUniform, simt.cc)
// checks that all lanes are at the same call; lane 0 has published a pointer to
// its arguments (on its stack) in a per-warp slot, which the others compare
// with theirs byte for byte; the second keeps lane 0 inside the call until all
// have compared.
#pragma once

#if !defined(LORASERVE_CUDA_EMU)
#error "lsemu_wmma.h is the CPU emulator's <mma.h>; nvcc builds use the toolkit's"
#endif

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>

#define LSEMU_WMMA_ACTIVE 1

namespace nvcuda {
namespace wmma {

// ---- Tags and layouts ----------------------------------------------------------
struct row_major;
struct col_major;
struct matrix_a;
struct matrix_b;
struct accumulator;

enum layout_t { mem_row_major, mem_col_major };

template <typename T>
struct helper_traits {
  typedef T element_type;
  typedef T storage_element_type;
  typedef T fill_argument_type;
};

// The fragment base: public num_elements and x[], as in CUDA (whose base is
// the implementation-private __frag_base).
template <typename T, int size>
struct alignas(8) lsemu_frag_base {
  enum { num_elements = size };
  enum { num_storage_elements = size };
  typedef T element_type;
  typedef typename helper_traits<T>::storage_element_type storage_element_type;
  storage_element_type x[num_storage_elements];
};

namespace lsemu_detail {
template <int m, int n, int k>
constexpr bool kShapeOk = (m == 16 && n == 16 && k == 16) || (m == 32 && n == 8 && k == 16) ||
                          (m == 8 && n == 32 && k == 16);
template <typename T>
constexpr bool kInputTypeOk = std::is_same<T, __half>::value || std::is_same<T, __nv_bfloat16>::value;
template <typename T>
constexpr bool kAccTypeOk = std::is_same<T, float>::value || std::is_same<T, __half>::value;
template <typename L>
constexpr bool kLayoutOk = std::is_same<L, row_major>::value || std::is_same<L, col_major>::value;
template <typename T>
struct identity {
  typedef T type;
};
}  // namespace lsemu_detail

// ---- Fragments -------------------------------------------------------------------
template <typename Use, int m, int n, int k, typename T, typename Layout = void>
class fragment;  // other uses (and accumulators with a layout) do not exist

template <int m, int n, int k, typename T, typename Layout>
class fragment<matrix_a, m, n, k, T, Layout> : public lsemu_frag_base<T, m * k> {
  static_assert(lsemu_detail::kShapeOk<m, n, k>,
                "lsemu wmma: shapes are m16n16k16, m32n8k16 and m8n32k16");
  static_assert(lsemu_detail::kInputTypeOk<T>, "lsemu wmma: matrix_a is __half or __nv_bfloat16");
  static_assert(lsemu_detail::kLayoutOk<Layout>, "lsemu wmma: matrix_a needs row_major or col_major");
};

template <int m, int n, int k, typename T, typename Layout>
class fragment<matrix_b, m, n, k, T, Layout> : public lsemu_frag_base<T, k * n> {
  static_assert(lsemu_detail::kShapeOk<m, n, k>,
                "lsemu wmma: shapes are m16n16k16, m32n8k16 and m8n32k16");
  static_assert(lsemu_detail::kInputTypeOk<T>, "lsemu wmma: matrix_b is __half or __nv_bfloat16");
  static_assert(lsemu_detail::kLayoutOk<Layout>, "lsemu wmma: matrix_b needs row_major or col_major");
};

template <int m, int n, int k, typename T>
class fragment<accumulator, m, n, k, T, void> : public lsemu_frag_base<T, m * n> {
  static_assert(lsemu_detail::kShapeOk<m, n, k>,
                "lsemu wmma: shapes are m16n16k16, m32n8k16 and m8n32k16");
  static_assert(lsemu_detail::kAccTypeOk<T>, "lsemu wmma: accumulators are float or __half");
};

}  // namespace wmma
}  // namespace nvcuda

// ---- Emulator internals ------------------------------------------------------------
namespace lsemu::wmma_detail {

enum Op : uint64_t { kLoadA = 1, kLoadB, kLoadAcc, kStoreAcc, kMma };

inline const char* op_name(uint64_t op) {
  switch (op) {
    case kLoadA: return "load_matrix_sync(matrix_a)";
    case kLoadB: return "load_matrix_sync(matrix_b)";
    case kLoadAcc: return "load_matrix_sync(accumulator)";
    case kStoreAcc: return "store_matrix_sync";
    case kMma: return "mma_sync";
    default: return "(not a wmma call)";
  }
}

template <typename T>
constexpr uint64_t type_id() {
  return std::is_same<T, __nv_bfloat16>::value ? 1 : std::is_same<T, __half>::value ? 2
                                                 : std::is_same<T, float>::value    ? 3
                                                                                    : 0;
}
template <typename L>
constexpr uint64_t layout_id() {
  return std::is_same<L, nvcuda::wmma::row_major>::value   ? 1
         : std::is_same<L, nvcuda::wmma::col_major>::value ? 2
                                                           : 0;
}
constexpr uint64_t shape_id(int m, int n) { return m == 16 ? 1 : (n == 8 ? 2 : 3); }

// Everything the lanes must agree on besides ptr and contents, packed exactly:
// op 8 bits | operand types 12 | layouts 8 | shape 4 | ldm 32.
inline uint64_t make_key(uint64_t op, uint64_t types, uint64_t layouts, uint64_t shape,
                         unsigned ldm) {
  return (op << 56) | ((types & 0xfff) << 44) | ((layouts & 0xff) << 36) | ((shape & 0xf) << 32) |
         ldm;
}

inline unsigned linear_tid() {
  return threadIdx.x + threadIdx.y * blockDim.x + threadIdx.z * blockDim.x * blockDim.y;
}

[[noreturn]] inline void fail(const char* fn, const char* what) {
  const unsigned t = linear_tid();
  std::fprintf(stderr,
               "lsemu wmma: %s at block (%u,%u,%u) thread (%u,%u,%u) (warp %u lane %u): %s\n", fn,
               blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z, t / 32,
               t % 32, what);
  std::abort();
}

template <typename T>
inline void check_ptr_ldm(const char* fn, const void* p, unsigned ldm) {
  char msg[200];
  if ((reinterpret_cast<uintptr_t>(p) & 31u) != 0) {
    std::snprintf(msg, sizeof msg,
                  "pointer %p is not 32-byte (256-bit) aligned, as the WMMA API requires", p);
    fail(fn, msg);
  }
  constexpr unsigned kMul = 16 / sizeof(T);
  if (ldm % kMul != 0) {
    std::snprintf(msg, sizeof msg,
                  "ldm %u is not a multiple of %u elements (16 bytes of %u-byte elements), as the "
                  "WMMA API requires",
                  ldm, kMul, static_cast<unsigned>(sizeof(T)));
    fail(fn, msg);
  }
}

inline void check_layout(const char* fn, nvcuda::wmma::layout_t layout) {
  if (layout != nvcuda::wmma::mem_row_major && layout != nvcuda::wmma::mem_col_major) {
    fail(fn, "layout_t is neither mem_row_major nor mem_col_major");
  }
}

// What a lane brings to a collective call; lane 0 publishes its own (a pointer
// to its stack, valid while it waits inside the call) so the others can
// compare their pointer and fragments with it.
struct CallInfo {
  uint64_t key = 0;
  const void* ptr = nullptr;
  const void* frag[3] = {nullptr, nullptr, nullptr};
  size_t bytes[3] = {0, 0, 0};
  uint64_t token = 0;  // lane 0's: unique per call (per OS thread)
};
// Block-shared (one OS thread runs the block): one slot per warp.
inline const CallInfo*& warp_slot(unsigned warp) {
  static thread_local const CallInfo* slots[32];
  return slots[warp & 31];
}
inline uint64_t next_token() {
  static thread_local uint64_t token = 0;
  return ++token;
}

inline void check_all_live(const char* fn, const char* why) {
  const unsigned live = __activemask();
  if (live != 0xffffffffu) {
    char msg[300];
    std::snprintf(msg, sizeof msg,
                  "called with live lanes 0x%08x: all 32 lanes of the warp must call it (%s)",
                  live, why);
    fail(fn, msg);
  }
}

// The warp meets here. Checks that all 32 lanes are alive and at this same
// call (same key: operation, types, layouts, ldm), then that each lane's
// pointer and fragments equal lane 0's (content_what says what a mismatch
// means), then meets again so that no lane changes its fragments before all
// have compared. Returns lane 0's token for this call.
inline uint64_t collective(CallInfo& me, const char* content_what) {
  namespace ld = ::lsemu::detail;
  const char* fn = op_name(me.key >> 56);
  char msg[500];
  check_all_live(fn, "lanes exited early, or a partial warp because the block size is not a "
                     "multiple of 32");
  const unsigned t = linear_tid(), warp = t / 32, lane = t % 32;
  if (lane == 0) {
    me.token = next_token();
    warp_slot(warp) = &me;
  }
  const uint64_t r = ld::warp_op(0xffffffffu, ld::kWarpUniform, me.key, 0, 32);
  if (r != 0) {
    const unsigned q = r & 0xff, q_op = (r >> 8) & 0xff, q_wmma = (r >> 16) & 0xff;
    if (q_op != ld::kWarpUniform) {
      std::snprintf(msg, sizeof msg,
                    "lane %u is at a shuffle, vote or __syncwarp instead: wmma calls must be "
                    "reached by the whole warp, converged (divergent code?)",
                    q);
    } else if (q_wmma != (me.key >> 56)) {
      std::snprintf(msg, sizeof msg,
                    "lane %u is at %s instead: wmma calls must be reached by the whole warp, "
                    "converged (divergent code?)",
                    q, op_name(q_wmma));
    } else {
      std::snprintf(msg, sizeof msg,
                    "lane %u passed a different ldm or layout (they must be the same on all "
                    "lanes), or is at another call of the same kind (divergent code?)",
                    q);
    }
    fail(fn, msg);
  }
  check_all_live(fn, "the others exited before reaching it");
  const CallInfo& l0 = *warp_slot(warp);
  if (l0.ptr != me.ptr) {
    std::snprintf(msg, sizeof msg,
                  "pointer %p differs from lane 0's %p: it must be the same on all lanes of the "
                  "warp",
                  me.ptr, l0.ptr);
    fail(fn, msg);
  }
  for (int i = 0; i < 3; ++i) {
    if (me.bytes[i] != 0 && std::memcmp(me.frag[i], l0.frag[i], me.bytes[i]) != 0) {
      std::snprintf(msg, sizeof msg, "%s (lane %u's differs from lane 0's)", content_what, lane);
      fail(fn, msg);
    }
  }
  const uint64_t token = l0.token;
  ld::warp_op(0xffffffffu, ld::kWarpSync, 0, 0, 32);
  return token;
}

template <typename To, typename From>
inline To convert(From v) {
  if constexpr (std::is_same<To, From>::value) {
    return v;
  } else if constexpr (std::is_same<From, float>::value) {
    if constexpr (std::is_same<To, __half>::value) return __float2half_rn(v);
    else return __float2bfloat16_rn(v);
  } else if constexpr (std::is_same<From, __half>::value) {
    return convert<To>(__half2float(v));
  } else {
    return convert<To>(__bfloat162float(v));
  }
}

// Reads the rows x cols matrix at p (element (r, c) at p[r*ldm + c] when
// row-major, p[c*ldm + r] when column-major) into x[r*cols + c].
template <typename T>
inline void read_tile(T* x, const T* p, unsigned ldm, bool row, int rows, int cols) {
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      x[r * cols + c] = row ? p[static_cast<size_t>(r) * ldm + c] : p[static_cast<size_t>(c) * ldm + r];
    }
  }
}

// The result of each warp's last mma_sync: the first lane to leave the call
// computes it, the others (whose inputs are identical) copy it.
struct MmaResult {
  uint64_t token = 0;
  unsigned char d[1024];
};
inline MmaResult& mma_result(unsigned warp) {
  static thread_local std::unique_ptr<MmaResult[]> results;
  if (!results) results.reset(new MmaResult[32]);
  return results[warp & 31];
}

}  // namespace lsemu::wmma_detail

namespace nvcuda {
namespace wmma {

// ---- fill_fragment ------------------------------------------------------------------
// Not a collective in CUDA (a per-thread loop); a value that differs between
// lanes, or a fill in divergent code, shows up as differing fragments at the
// next mma_sync/store_matrix_sync.
template <typename Use, int m, int n, int k, typename T, typename Layout>
inline void fill_fragment(fragment<Use, m, n, k, T, Layout>& f,
                          const typename helper_traits<T>::fill_argument_type& v) {
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = v;
}

// ---- load_matrix_sync -----------------------------------------------------------------
namespace lsemu_detail {
constexpr const char* kLoadMismatch =
    "lanes read different data from the same tile: it was written (by other lanes) without a "
    "__syncwarp()/__syncthreads() before this load";
constexpr const char* kFragMismatch =
    "the fragment differs between lanes of the warp (an element-wise operation on x[] that "
    "depends on the lane, a non-uniform fill_fragment value, or an uninitialised fragment): "
    "CUDA leaves the element-to-lane mapping unspecified";
}  // namespace lsemu_detail

template <typename Use, int m, int n, int k, typename T, typename Layout,
          std::enable_if_t<std::is_same<Use, matrix_a>::value || std::is_same<Use, matrix_b>::value,
                           int> = 0>
inline void load_matrix_sync(fragment<Use, m, n, k, T, Layout>& f,
                             const typename lsemu_detail::identity<T>::type* p, unsigned ldm) {
  namespace d = ::lsemu::wmma_detail;
  constexpr bool kIsA = std::is_same<Use, matrix_a>::value;
  constexpr uint64_t kOp = kIsA ? d::kLoadA : d::kLoadB;
  d::check_ptr_ldm<T>(d::op_name(kOp), p, ldm);
  const bool row = std::is_same<Layout, row_major>::value;
  d::read_tile(f.x, p, ldm, row, kIsA ? m : k, kIsA ? k : n);
  d::CallInfo me;
  me.key = d::make_key(kOp, d::type_id<T>(), d::layout_id<Layout>(), d::shape_id(m, n), ldm);
  me.ptr = p;
  me.frag[0] = f.x;
  me.bytes[0] = sizeof f.x;
  d::collective(me, lsemu_detail::kLoadMismatch);
}

template <int m, int n, int k, typename T>
inline void load_matrix_sync(fragment<accumulator, m, n, k, T>& f,
                             const typename lsemu_detail::identity<T>::type* p, unsigned ldm,
                             layout_t layout) {
  namespace d = ::lsemu::wmma_detail;
  const char* fn = d::op_name(d::kLoadAcc);
  d::check_ptr_ldm<T>(fn, p, ldm);
  d::check_layout(fn, layout);
  d::read_tile(f.x, p, ldm, layout == mem_row_major, m, n);
  d::CallInfo me;
  me.key = d::make_key(d::kLoadAcc, d::type_id<T>(), static_cast<uint64_t>(layout) + 1,
                       d::shape_id(m, n), ldm);
  me.ptr = p;
  me.frag[0] = f.x;
  me.bytes[0] = sizeof f.x;
  d::collective(me, lsemu_detail::kLoadMismatch);
}

// ---- store_matrix_sync ----------------------------------------------------------------
template <int m, int n, int k, typename T>
inline void store_matrix_sync(typename lsemu_detail::identity<T>::type* p,
                              const fragment<accumulator, m, n, k, T>& f, unsigned ldm,
                              layout_t layout) {
  namespace d = ::lsemu::wmma_detail;
  const char* fn = d::op_name(d::kStoreAcc);
  d::check_ptr_ldm<T>(fn, p, ldm);
  d::check_layout(fn, layout);
  d::CallInfo me;
  me.key = d::make_key(d::kStoreAcc, d::type_id<T>(), static_cast<uint64_t>(layout) + 1,
                       d::shape_id(m, n), ldm);
  me.ptr = p;
  me.frag[0] = f.x;
  me.bytes[0] = sizeof f.x;
  d::collective(me, lsemu_detail::kFragMismatch);
  // Each lane writes its share, as the hardware's lanes do.
  const unsigned lane = d::linear_tid() % 32;
  const bool row = layout == mem_row_major;
  for (int e = static_cast<int>(lane); e < m * n; e += 32) {
    const int r = e / n, c = e % n;
    p[row ? static_cast<size_t>(r) * ldm + c : static_cast<size_t>(c) * ldm + r] = f.x[e];
  }
}

// ---- mma_sync -----------------------------------------------------------------------
// d = a * b + c. d may be c.
template <int m, int n, int k, typename Tin, typename La, typename Lb, typename Td, typename Tc>
inline void mma_sync(fragment<accumulator, m, n, k, Td>& d,
                     const fragment<matrix_a, m, n, k, Tin, La>& a,
                     const fragment<matrix_b, m, n, k, Tin, Lb>& b,
                     const fragment<accumulator, m, n, k, Tc>& c) {
  static_assert(!std::is_same<Tin, __nv_bfloat16>::value ||
                    (std::is_same<Td, float>::value && std::is_same<Tc, float>::value),
                "lsemu wmma: __nv_bfloat16 inputs take float accumulators only (as in CUDA)");
  static_assert(sizeof d.x <= sizeof(::lsemu::wmma_detail::MmaResult::d), "");
  namespace w = ::lsemu::wmma_detail;
  w::CallInfo me;
  me.key = w::make_key(w::kMma,
                       w::type_id<Tin>() | (w::type_id<Td>() << 4) | (w::type_id<Tc>() << 8),
                       w::layout_id<La>() | (w::layout_id<Lb>() << 4), w::shape_id(m, n), 0);
  me.frag[0] = a.x;
  me.bytes[0] = sizeof a.x;
  me.frag[1] = b.x;
  me.bytes[1] = sizeof b.x;
  me.frag[2] = c.x;
  me.bytes[2] = sizeof c.x;
  const uint64_t token = w::collective(me, lsemu_detail::kFragMismatch);

  // All lanes hold the same inputs: the first lane here computes, the others copy.
  w::MmaResult& res = w::mma_result(w::linear_tid() / 32);
  if (res.token == token) {
    std::memcpy(d.x, res.d, sizeof d.x);
    return;
  }
  float af[m * k], bf[k * n], acc[n];
  for (int i = 0; i < m * k; ++i) af[i] = w::convert<float>(a.x[i]);
  for (int i = 0; i < k * n; ++i) bf[i] = w::convert<float>(b.x[i]);
  Td out[m * n];
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) acc[j] = w::convert<float>(c.x[i * n + j]);
    for (int kk = 0; kk < k; ++kk) {
      const float aik = af[i * k + kk];
      const float* brow = bf + kk * n;
      for (int j = 0; j < n; ++j) acc[j] += aik * brow[j];
    }
    for (int j = 0; j < n; ++j) out[i * n + j] = w::convert<Td>(acc[j]);
  }
  std::memcpy(res.d, out, sizeof out);
  res.token = token;
  std::memcpy(d.x, out, sizeof out);
}

}  // namespace wmma
}  // namespace nvcuda
