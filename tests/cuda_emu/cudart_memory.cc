// Emulated CUDA runtime: device and pinned host memory, copies and memsets.
//
// "Device" memory is host memory the emulator tracks: each cudaMalloc is
// recorded with its exact requested size, so copies and memsets are checked
// strictly against the direction they claim (a HostToDevice copy must land
// inside ONE device allocation and read from non-device memory, ...). A
// violation returns cudaErrorInvalidValue and copies nothing: that is how
// direction and size bugs in the backend show up in CI. New device memory is
// filled with 0xA5 bytes so reads of never-written memory are visible.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "lsemu_internal.h"

namespace lsemu::detail {
namespace {

constexpr size_t kAlign = 256;  // cudaMalloc's documented minimum alignment

using AllocMap = std::map<uintptr_t, size_t>;  // base -> requested size

struct MemState {
  std::mutex mu;
  AllocMap dev;
  AllocMap pinned;
  size_t used = 0;   // device bytes in use (rounded to kAlign)
  size_t total = 0;  // device memory size
};

MemState& mem() {
  // Never destroyed: frees from static destructors must still find it.
  static MemState* s = [] {
    auto* m = new MemState;
    m->total = size_t{16} << 30;
    if (const char* env = std::getenv("LSEMU_DEVICE_MEM_MB")) {
      const long long mb = std::atoll(env);
      if (mb > 0) m->total = static_cast<size_t>(mb) << 20;
    }
    return m;
  }();
  return *s;
}

size_t rounded(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// The allocation containing address p, or m.end().
AllocMap::const_iterator containing(const AllocMap& m, uintptr_t p) {
  auto it = m.upper_bound(p);
  if (it == m.begin()) return m.end();
  --it;
  return p < it->first + it->second ? it : m.end();
}

// [p, p+n) lies inside one allocation (an empty range: p inside one).
bool inside(const AllocMap& m, const void* ptr, size_t n) {
  const uintptr_t p = reinterpret_cast<uintptr_t>(ptr);
  if (n == 0) n = 1;
  if (p + n < p) return false;
  auto it = containing(m, p);
  return it != m.end() && p + n <= it->first + it->second;
}

// [p, p+n) touches some allocation.
bool overlaps(const AllocMap& m, const void* ptr, size_t n) {
  const uintptr_t p = reinterpret_cast<uintptr_t>(ptr);
  const uintptr_t end = p + n < p ? UINTPTR_MAX : p + n;
  auto it = m.lower_bound(end);  // first allocation starting at or after end
  if (it == m.begin()) return false;
  --it;
  return it->first + it->second > p;
}

// A pointer used with cudaMemcpyDefault: inside device memory, or clear of it.
bool default_ok(const AllocMap& dev, const void* p, size_t n) {
  if (containing(dev, reinterpret_cast<uintptr_t>(p)) != dev.end()) return inside(dev, p, n);
  return !overlaps(dev, p, n);
}

// May `kind` write dn bytes at dst and read sn bytes at src (both > 0)?
// Caller holds the lock.
cudaError_t check_copy(const MemState& m, void* dst, size_t dn, const void* src, size_t sn,
                       cudaMemcpyKind kind) {
  bool ok = false;
  switch (kind) {
    case cudaMemcpyHostToHost: ok = !overlaps(m.dev, dst, dn) && !overlaps(m.dev, src, sn); break;
    case cudaMemcpyHostToDevice: ok = inside(m.dev, dst, dn) && !overlaps(m.dev, src, sn); break;
    case cudaMemcpyDeviceToHost: ok = !overlaps(m.dev, dst, dn) && inside(m.dev, src, sn); break;
    case cudaMemcpyDeviceToDevice: ok = inside(m.dev, dst, dn) && inside(m.dev, src, sn); break;
    case cudaMemcpyDefault: ok = default_ok(m.dev, dst, dn) && default_ok(m.dev, src, sn); break;
    default: return cudaErrorInvalidMemcpyDirection;
  }
  return ok ? cudaSuccess : cudaErrorInvalidValue;
}

bool valid_kind(cudaMemcpyKind kind) {
  return kind == cudaMemcpyHostToHost || kind == cudaMemcpyHostToDevice ||
         kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice ||
         kind == cudaMemcpyDefault;
}

cudaError_t copy(void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
  if (!valid_kind(kind)) return record_error(cudaErrorInvalidMemcpyDirection);
  if (n == 0) return cudaSuccess;
  if (!dst || !src) return record_error(cudaErrorInvalidValue);
  MemState& m = mem();
  std::lock_guard<std::mutex> lock(m.mu);
  const cudaError_t err = check_copy(m, dst, n, src, n, kind);
  if (err != cudaSuccess) return record_error(err);
  std::memmove(dst, src, n);
  return cudaSuccess;
}

cudaError_t copy_2d(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width,
                    size_t height, cudaMemcpyKind kind) {
  if (!valid_kind(kind)) return record_error(cudaErrorInvalidMemcpyDirection);
  if (width > dpitch || width > spitch) return record_error(cudaErrorInvalidPitchValue);
  if (width == 0 || height == 0) return cudaSuccess;
  if (!dst || !src) return record_error(cudaErrorInvalidValue);
  // Both extents, checked as one range each (the rows lie inside them).
  size_t dext = 0, sext = 0;
  if (__builtin_mul_overflow(height - 1, dpitch, &dext) || __builtin_add_overflow(dext, width, &dext) ||
      __builtin_mul_overflow(height - 1, spitch, &sext) || __builtin_add_overflow(sext, width, &sext)) {
    return record_error(cudaErrorInvalidValue);
  }
  MemState& m = mem();
  std::lock_guard<std::mutex> lock(m.mu);
  const cudaError_t err = check_copy(m, dst, dext, src, sext, kind);
  if (err != cudaSuccess) return record_error(err);
  for (size_t r = 0; r < height; ++r) {
    std::memmove(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch,
                 width);
  }
  return cudaSuccess;
}

cudaError_t set(void* p, int value, size_t n) {
  if (n == 0) return cudaSuccess;
  MemState& m = mem();
  std::lock_guard<std::mutex> lock(m.mu);
  if (!p || !inside(m.dev, p, n)) return record_error(cudaErrorInvalidValue);
  std::memset(p, value & 0xff, n);
  return cudaSuccess;
}

}  // namespace

bool in_device_alloc(const void* p, size_t bytes) {
  MemState& m = mem();
  std::lock_guard<std::mutex> lock(m.mu);
  return p && inside(m.dev, p, bytes);
}

bool in_device_accessible_alloc(const void* p, size_t bytes) {
  MemState& m = mem();
  std::lock_guard<std::mutex> lock(m.mu);
  return p && (inside(m.dev, p, bytes) || inside(m.pinned, p, bytes));
}

}  // namespace lsemu::detail

using lsemu::detail::record_error;

cudaError_t cudaMalloc(void** devPtr, size_t size) {
  using namespace lsemu::detail;
  if (!devPtr) return record_error(cudaErrorInvalidValue);
  if (size == 0) {
    *devPtr = nullptr;
    return cudaSuccess;
  }
  MemState& m = mem();
  const size_t bytes = rounded(size);
  {
    std::lock_guard<std::mutex> lock(m.mu);
    if (bytes < size || bytes > m.total - m.used) return record_error(cudaErrorMemoryAllocation);
    m.used += bytes;  // reserve before the (slow) allocation and fill
  }
  void* p = std::aligned_alloc(kAlign, bytes);
  if (p) std::memset(p, 0xA5, bytes);
  std::lock_guard<std::mutex> lock(m.mu);
  if (!p) {
    m.used -= bytes;
    return record_error(cudaErrorMemoryAllocation);
  }
  m.dev[reinterpret_cast<uintptr_t>(p)] = size;
  *devPtr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* devPtr) {
  using namespace lsemu::detail;
  if (!devPtr) return cudaSuccess;
  MemState& m = mem();
  std::lock_guard<std::mutex> lock(m.mu);
  auto it = m.dev.find(reinterpret_cast<uintptr_t>(devPtr));
  if (it == m.dev.end()) return record_error(cudaErrorInvalidValue);
  m.used -= rounded(it->second);
  m.dev.erase(it);
  std::free(devPtr);
  return cudaSuccess;
}

cudaError_t cudaHostAlloc(void** pHost, size_t size, unsigned int flags) {
  using namespace lsemu::detail;
  constexpr unsigned kKnown = cudaHostAllocPortable | cudaHostAllocMapped | cudaHostAllocWriteCombined;
  if (!pHost || (flags & ~kKnown) != 0) return record_error(cudaErrorInvalidValue);
  if (size == 0) {
    *pHost = nullptr;
    return cudaSuccess;
  }
  void* p = std::aligned_alloc(kAlign, rounded(size));
  if (!p) return record_error(cudaErrorMemoryAllocation);
  std::memset(p, 0xA5, rounded(size));
  MemState& m = mem();
  std::lock_guard<std::mutex> lock(m.mu);
  m.pinned[reinterpret_cast<uintptr_t>(p)] = size;
  *pHost = p;
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void** ptr, size_t size) { return cudaHostAlloc(ptr, size, cudaHostAllocDefault); }

cudaError_t cudaFreeHost(void* ptr) {
  using namespace lsemu::detail;
  if (!ptr) return cudaSuccess;
  MemState& m = mem();
  std::lock_guard<std::mutex> lock(m.mu);
  auto it = m.pinned.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == m.pinned.end()) return record_error(cudaErrorInvalidValue);
  m.pinned.erase(it);
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
  using namespace lsemu::detail;
  if (!free || !total) return record_error(cudaErrorInvalidValue);
  MemState& m = mem();
  std::lock_guard<std::mutex> lock(m.mu);
  *free = m.total - m.used;
  *total = m.total;
  return cudaSuccess;
}

cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attributes, const void* ptr) {
  using namespace lsemu::detail;
  if (!attributes) return record_error(cudaErrorInvalidValue);
  std::memset(attributes, 0, sizeof(*attributes));
  attributes->type = cudaMemoryTypeUnregistered;
  attributes->device = 0;
  MemState& m = mem();
  std::lock_guard<std::mutex> lock(m.mu);
  const uintptr_t p = reinterpret_cast<uintptr_t>(ptr);
  if (containing(m.dev, p) != m.dev.end()) {
    attributes->type = cudaMemoryTypeDevice;
    attributes->devicePointer = const_cast<void*>(ptr);
  } else if (containing(m.pinned, p) != m.pinned.end()) {
    attributes->type = cudaMemoryTypeHost;
    attributes->devicePointer = const_cast<void*>(ptr);
    attributes->hostPointer = const_cast<void*>(ptr);
  }
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  return lsemu::detail::copy(dst, src, count, kind);
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  if (!lsemu::detail::stream_valid(stream)) return record_error(cudaErrorInvalidResourceHandle);
  return lsemu::detail::copy(dst, src, count, kind);
}

cudaError_t cudaMemcpy2D(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width,
                         size_t height, cudaMemcpyKind kind) {
  return lsemu::detail::copy_2d(dst, dpitch, src, spitch, width, height, kind);
}

cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width,
                              size_t height, cudaMemcpyKind kind, cudaStream_t stream) {
  if (!lsemu::detail::stream_valid(stream)) return record_error(cudaErrorInvalidResourceHandle);
  return lsemu::detail::copy_2d(dst, dpitch, src, spitch, width, height, kind);
}

cudaError_t cudaMemset(void* devPtr, int value, size_t count) {
  return lsemu::detail::set(devPtr, value, count);
}

cudaError_t cudaMemsetAsync(void* devPtr, int value, size_t count, cudaStream_t stream) {
  if (!lsemu::detail::stream_valid(stream)) return record_error(cudaErrorInvalidResourceHandle);
  return lsemu::detail::set(devPtr, value, count);
}
