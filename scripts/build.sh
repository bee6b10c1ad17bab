#!/usr/bin/env bash
# Configures and builds loraserve into build/ (binaries in build/bin/).
# The CUDA kernels are built whenever nvcc is found (/usr/local/cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-Release}
cmake --build "$BUILD_DIR" -j "${JOBS:-2}"
