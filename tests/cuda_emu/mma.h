// <mma.h> for the CPU emulator. This directory is lsemu's PUBLIC include
// directory (-I), and the CUDA toolkit's is added as a SYSTEM one (-isystem);
// g++ searches every -I directory before any -isystem one, so under the
// emulated build a kernel's `#include <mma.h>` finds this file, and under nvcc
// (where tests/cuda_emu is not on the include path) the toolkit's. The
// toolkit's own <mma.h> would define nothing under g++ (it needs __CUDACC__).
// The self-test checks that this file wins (LSEMU_WMMA_ACTIVE).
#pragma once

#if !defined(LORASERVE_CUDA_EMU) || !defined(LSEMU_ACTIVE)
#error "tests/cuda_emu/mma.h is the emulator's; it needs the lsemu prelude (link lsemu)"
#endif

#include "lsemu_wmma.h"
