// Kernel launches under the CPU emulator (included by cuda_emu.h):
//
//   LS_EMU_LAUNCH(kernel, grid, block, smem_bytes, stream)(args...);
//
// is the emulated `kernel<<<grid, block, smem_bytes, stream>>>(args...)`.
// The arguments are converted to the kernel's parameter types and copied
// (as CUDA copies kernel parameters); each emulated thread then calls the
// kernel with its own copy, so a kernel that modifies a parameter only
// changes its own thread's value. The whole grid runs before the call
// returns. A template kernel whose name contains commas is written in
// parentheses: LS_EMU_LAUNCH((k<64, 2>), grid, block, 0, stream)(...).
#pragma once

#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>

namespace lsemu {

// Counters of this process's emulated work (all host threads).
struct Stats {
  unsigned long long launches = 0;   // launches that ran
  unsigned long long blocks = 0;     // blocks run
  unsigned long long threads = 0;    // fibers started
  unsigned long long switches = 0;   // fiber context switches
};
Stats stats();

namespace detail {

struct LaunchSpec {
  const char* name;        // the kernel expression, for messages
  const void* func;        // identifies the kernel (cudaFuncSetAttribute)
  dim3 grid;
  dim3 block;
  size_t smem_bytes;
  cudaStream_t stream;
  void (*run_thread)(void* ctx);  // runs the kernel body for the current fiber
  void* ctx;
};

// Validates like cudaLaunchKernel, records the error (cudaGetLastError)
// and runs nothing on failure; otherwise runs the whole grid.
cudaError_t launch(const LaunchSpec& spec);

inline dim3 to_dim3(const dim3& d) { return d; }
inline dim3 to_dim3(const uint3& d) { return dim3(d.x, d.y, d.z); }
template <class I, std::enable_if_t<std::is_integral<I>::value, int> = 0>
inline dim3 to_dim3(I v) {
  return dim3(static_cast<unsigned int>(v));  // as dim3's constructor would
}

template <class... P>
class Launcher {
 public:
  using Kernel = void (*)(P...);
  Launcher(Kernel k, const char* name, dim3 grid, dim3 block, size_t smem, cudaStream_t stream)
      : k_(k), name_(name), grid_(grid), block_(block), smem_(smem), stream_(stream) {}

  // By value: the caller's arguments are converted and copied here.
  void operator()(P... args) const {
    Call call{k_, std::tuple<std::decay_t<P>...>(std::move(args)...)};
    LaunchSpec spec{name_, reinterpret_cast<const void*>(k_), grid_, block_, smem_, stream_,
                    &Launcher::run_thread, &call};
    launch(spec);
  }

 private:
  struct Call {
    Kernel k;
    std::tuple<std::decay_t<P>...> params;
  };
  static void run_thread(void* ctx) {
    Call* c = static_cast<Call*>(ctx);
    std::apply(c->k, c->params);  // by-value parameters: a copy per thread
  }

  Kernel k_;
  const char* name_;
  dim3 grid_, block_;
  size_t smem_;
  cudaStream_t stream_;
};

template <class... P>
Launcher<P...> make_launcher(void (*k)(P...), const char* name, dim3 grid, dim3 block,
                             size_t smem, cudaStream_t stream) {
  return Launcher<P...>(k, name, grid, block, smem, stream);
}

}  // namespace detail
}  // namespace lsemu

// nvcc's cuda_runtime.h adds C++ overloads that take a kernel itself; g++
// does not see them (they sit under __CUDACC__).
template <class... P>
inline cudaError_t cudaFuncSetAttribute(void (*entry)(P...), cudaFuncAttribute attr, int value) {
  return ::cudaFuncSetAttribute(reinterpret_cast<const void*>(entry), attr, value);
}

#define LS_EMU_LAUNCH(kernel, grid, block, smem_bytes, stream)                                  \
  ::lsemu::detail::make_launcher(kernel, #kernel, ::lsemu::detail::to_dim3(grid),             \
                                 ::lsemu::detail::to_dim3(block),                             \
                                 static_cast<size_t>(smem_bytes), (stream))
