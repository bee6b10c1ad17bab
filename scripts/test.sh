#!/usr/bin/env bash
# Sets up, builds and runs every test (unit, reference vs PyTorch, GPU cases
# that skip themselves without a device; ctest prints the summary), then
# fuzzes the tokenizer briefly (libFuzzer, ASan/UBSan; FUZZ_SECONDS=0 skips).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
(cd "${BUILD_DIR:-build}" && ctest --output-on-failure -j "${JOBS:-2}" --timeout 600)
if [ "${FUZZ_SECONDS:-20}" != 0 ]; then
  bash tests/fuzz/run_tokenizer_fuzz.sh "${FUZZ_SECONDS:-20}" "${BUILD_DIR:-build}-fuzz"
fi
