#!/usr/bin/env bash
# Sets up, builds and runs every test (unit, reference vs PyTorch, GPU cases
# that skip themselves without a device). ctest prints the summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
cd "${BUILD_DIR:-build}"
ctest --output-on-failure -j "${JOBS:-2}" --timeout 600
