#!/usr/bin/env bash
# Sets up, builds and runs every test (unit, reference vs PyTorch, GPU cases
# that skip themselves without a device; ctest prints the summary), then
# the GPU tests again on the CPU emulator of CUDA (tests/cuda_emu, a build of
# its own; EMU=0 skips), then runs every libFuzzer target briefly
# (tests/fuzz/run_fuzz.sh: FUZZ_SECONDS each, 15 by default, ~2 minutes for
# the eight; ASan/UBSan; FUZZ_SECONDS=0 skips), then the unit and e2e
# suites under ASan+UBSan and the concurrency tests under TSan
# (scripts/sanitize.sh, builds of their own; SANITIZE=0 skips). Times per
# step: docs/testing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
T0=$SECONDS
# Each step's wall time, so CI's log says where the time goes.
step_done() { echo "[test] $1 done at $((SECONDS - T0)) s"; }
# Servers the tests start keep packed weights (--cpu-weights-cache) in the
# build tree, not in ~/.cache.
export LORASERVE_CACHE_DIR="${LORASERVE_CACHE_DIR:-$PWD/${BUILD_DIR:-build}/weights-cache}"
bash scripts/setup.sh
step_done setup
bash scripts/build.sh
step_done build
(cd "${BUILD_DIR:-build}" && ctest --output-on-failure -j "${JOBS:-2}" --timeout 600)
step_done ctest
if [ "${EMU:-1}" != 0 ]; then
  EMU_DIR="${BUILD_DIR:-build}-emu"
  cmake -S . -B "$EMU_DIR" -DCMAKE_BUILD_TYPE=Release -DLORASERVE_ENABLE_CUDA=OFF \
    -DLORASERVE_CUDA_EMU=ON >/dev/null
  cmake --build "$EMU_DIR" -j "${JOBS:-2}" --target gpu_kernel_tests lsemu_selftest engine_bench
  (cd "$EMU_DIR" && ctest --output-on-failure -j "${JOBS:-2}" -L 'gpu|emu' --timeout 900)
  step_done emulator
fi
if [ "${FUZZ_SECONDS:-15}" != 0 ]; then
  bash tests/fuzz/run_fuzz.sh "${FUZZ_SECONDS:-15}" "${BUILD_DIR:-build}-fuzz"
  step_done fuzz
fi
if [ "${SANITIZE:-1}" != 0 ]; then
  bash scripts/sanitize.sh
  step_done sanitizers
fi
