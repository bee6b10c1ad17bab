// Helpers for the GPU tests: device detection (cases skip without a GPU),
// bf16 host conversion, device buffers poisoned before use, and a
// comparison that reports the worst element and the relative L2 error.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "common/dtype.h"

namespace loraserve::gputest {

inline bool have_gpu() {
  int n = 0;
  const bool ok = cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
  if (!ok) cudaGetLastError();
  return ok;
}

// True under the CPU emulator of CUDA (tests/cuda_emu): the same checks
// run there, with the few largest shapes left out for time.
constexpr bool emulated() {
#ifdef LORASERVE_CUDA_EMU
  return true;
#else
  return false;
#endif
}

#define SKIP_WITHOUT_GPU() \
  if (!::loraserve::gputest::have_gpu()) GTEST_SKIP() << "no CUDA device"

inline std::vector<float> random_vec(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Rounds every value to bf16 (the inputs both sides see).
inline std::vector<float> rounded(std::vector<float> v) {
  for (auto& x : v) x = bf16_to_f32(f32_to_bf16(x));
  return v;
}

inline std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = f32_to_bf16(v[i]);
  return out;
}

inline std::vector<float> from_bf16(const std::vector<uint16_t>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = bf16_to_f32(v[i]);
  return out;
}

// A device array; `poison` fills it with 0xff bytes (NaN for bf16 and f32).
template <typename T>
struct DevBuf {
  T* p = nullptr;
  size_t n = 0;
  explicit DevBuf(size_t count, bool poison = true) : n(count) {
    EXPECT_EQ(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)), cudaSuccess);
    if (poison) {
      EXPECT_EQ(cudaMemset(p, 0xff, std::max<size_t>(n, 1) * sizeof(T)), cudaSuccess);
    }
  }
  explicit DevBuf(const std::vector<T>& h) : DevBuf(h.size(), false) { upload(h); }
  ~DevBuf() { cudaFree(p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  void upload(const std::vector<T>& h) {
    ASSERT_EQ(h.size(), n);
    if (n) {
      ASSERT_EQ(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
    }
  }
  std::vector<T> host() const {
    std::vector<T> h(n);
    if (n) {
      EXPECT_EQ(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    }
    return h;
  }
};

// Every element within atol + rtol*|want| (NaN never passes), and the
// relative L2 error ||got - want|| / ||want|| under `max_rel_l2`.
inline void expect_close(const std::vector<float>& got, const std::vector<float>& want, float atol,
                         float rtol, double max_rel_l2, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double num = 0.0, den = 0.0, worst = 0.0;
  size_t worst_i = 0, bad = 0, first_bad = SIZE_MAX;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - want[i]);
    num += d * d;
    den += static_cast<double>(want[i]) * want[i];
    const bool ok = !std::isnan(got[i]) && d <= atol + rtol * std::fabs(want[i]);
    if (!ok) {
      ++bad;
      if (first_bad == SIZE_MAX) first_bad = i;
    }
    if (std::isnan(got[i]) || d > worst) {
      worst = std::isnan(got[i]) ? INFINITY : d;
      worst_i = i;
    }
  }
  const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  std::printf("  [%s] n=%zu max_abs_err=%.3g at %zu (got %g want %g) rel_l2=%.3g bad=%zu\n", what,
              got.size(), worst, worst_i, got.empty() ? 0.0 : got[worst_i],
              want.empty() ? 0.0 : want[worst_i], rel, bad);
  EXPECT_EQ(bad, 0u) << what << ": first bad element " << first_bad << " got "
                     << (first_bad < got.size() ? got[first_bad] : 0.0f) << " want "
                     << (first_bad < got.size() ? want[first_bad] : 0.0f);
  EXPECT_LE(rel, max_rel_l2) << what;
}

}  // namespace loraserve::gputest
