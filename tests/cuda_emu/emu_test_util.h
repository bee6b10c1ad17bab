// Test helper: a cudaMalloc'd array moved through the (checked) emulated
// cudaMemcpy, so the self-tests also exercise the runtime's copy paths.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <vector>

namespace lsemu_test {

template <class T>
class DevBuf {
 public:
  explicit DevBuf(size_t n) : n_(n) {
    EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&p_), bytes()), cudaSuccess);
  }
  explicit DevBuf(const std::vector<T>& host) : DevBuf(host.size()) {
    EXPECT_EQ(cudaMemcpy(p_, host.data(), bytes(), cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~DevBuf() { cudaFree(p_); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;

  T* get() const { return p_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }
  std::vector<T> to_host() const {
    std::vector<T> h(n_);
    EXPECT_EQ(cudaMemcpy(h.data(), p_, bytes(), cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }

 private:
  size_t n_;
  T* p_ = nullptr;
};

}  // namespace lsemu_test
