// CPU emulation of CUDA for tests: force-included FIRST into every C++
// translation unit of the emulated build (-include tests/cuda_emu/cuda_emu.h)
// so that kernels (.cu compiled as C++ by g++), the CUDA backend and the
// tests see the real toolkit types and declarations, plus definitions for the
// device-side builtins that only nvcc provides.
//
// The real headers are used for every type and host API declaration; the
// emulator (lsemu library) defines the host API symbols. Without __CUDACC__,
// crt/host_defines.h defines __global__/__device__/__host__/__shared__/
// __constant__/__managed__/__grid_constant__ as nothing and leaves
// __launch_bounds__ undefined; we fix that up below.
#pragma once

#if !defined(__cplusplus)
#error "cuda_emu.h is C++ only (add it with $<COMPILE_LANGUAGE:CXX>)"
#endif
#if defined(__CUDACC__)
#error "cuda_emu.h is for g++ builds of CUDA sources, not for nvcc"
#endif

#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cublas_v2.h>

#define LSEMU_ACTIVE 1

// Blocks run one at a time per OS thread and all threads of a block are
// fibers of that one OS thread, so a variable with thread storage duration is
// exactly block-shared memory. thread_local (rather than static) keeps two
// host threads that launch kernels at the same time apart, and makes a
// function-local declaration implicitly static, so `static __shared__` also
// compiles. `extern __shared__ T x[];` (dynamic shared memory) cannot be
// emulated this way: use lsemu::dynamic_smem() under LSEMU_ACTIVE.
#undef __shared__
#define __shared__ thread_local

#undef __launch_bounds__
#define __launch_bounds__(...)

// host_defines.h already gives g++ `__forceinline__` (inline +
// always_inline); __restrict__ is a g++ keyword. Nothing to do for those.

#include "lsemu_device.h"
#include "lsemu_launch.h"
