#!/usr/bin/env bash
# Builds what the GPU session needs and packs it for ONE device call.
# The plain bundle is ~69 MiB (libopenblas alone is 35 MiB), over the 64 MiB
# that may travel, so it goes as a gzip tarball (~24 MiB) that
# run_on_device.sh unpacks on the device. Run from the repo root:
#   bash tests/gpu/pack_bundle.sh [BUILD_DIR]      (default: build)
# then carry [".gpu-bundle.tgz"] and run `bash tests/gpu/run_on_device.sh`.
set -euo pipefail
BUILD=${1:-build}
ROOT=$(git rev-parse --show-toplevel)
cd "$ROOT"
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release
fi
cmake --build "$BUILD" -j2 --target gpu_kernel_tests loraserve lora-bench lora-cli gpu_bench engine_bench
TOOLS=${GPU_BUNDLE_TOOLS:-$ROOT/../shared/tools}
"$TOOLS/gpu-bundle.sh" --max-mib 90 "$BUILD/bin/gpu_kernel_tests" "$BUILD/bin/loraserve" \
  "$BUILD/bin/lora-bench" "$BUILD/bin/lora-cli" "$BUILD/bin/gpu_bench" "$BUILD/bin/engine_bench"
tar czf .gpu-bundle.tgz .gpu-bundle
mkdir -p .git/info
grep -qx '.gpu-bundle.tgz' .git/info/exclude 2>/dev/null || echo '.gpu-bundle.tgz' >> .git/info/exclude
ls -la .gpu-bundle.tgz
echo "device call: run(command=\"bash tests/gpu/run_on_device.sh\", carry=[\".gpu-bundle.tgz\"], timeout_s=600)"
