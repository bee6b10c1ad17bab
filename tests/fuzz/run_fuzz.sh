#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang-14 (ASan/UBSan) and
# runs each for SECONDS on its seed corpus (tests/fuzz/seeds/<target>/),
# JOBS (2) targets at a time.
#   tests/fuzz/run_fuzz.sh [SECONDS] [BUILD_DIR] [TARGET...]   (default: all)
# Fails after the first batch in which a target finds a crash, leak, UB or
# timeout; the reproducer is left in BUILD_DIR/fuzz-artifacts/<target>/
# (rerun it with BUILD_DIR/bin/<target> FILE). The corpus grows in
# BUILD_DIR/<target>_corpus across runs. Needs: apt-get install clang-14 libclang-rt-14-dev
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SECS="${1:-60}"
BUILD="${2:-$ROOT/build-fuzz}"
shift $(( $# < 2 ? $# : 2 ))
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(tokenizer_fuzz chat_template_fuzz safetensors_fuzz model_config_fuzz lora_adapter_fuzz
           tenant_config_fuzz grpc_request_fuzz openai_request_fuzz)
fi
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLORASERVE_ENABLE_CUDA=OFF \
  -DLORASERVE_FUZZ=ON -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 >/dev/null
cmake --build "$BUILD" -j "${JOBS:-2}" --target "${TARGETS[@]}"
# One fuzzer is one process on one core: run JOBS of them at a time. Each
# target's reproducers go to $ART/<target>/, its output to $ART/<target>.log.
ART="$BUILD/fuzz-artifacts"
run_one() {  # target
  local t=$1 corpus="$BUILD/$1_corpus"
  mkdir -p "$corpus" "$ART/$t"
  cp -n "$ROOT/tests/fuzz/seeds/$t"/* "$corpus"/ 2>/dev/null || true
  # -max_len: room for adapters' safetensors; -malloc_limit_mb: a single
  # allocation beyond it is reported (a size taken from the input unchecked).
  "$BUILD/bin/$t" "$corpus" -max_total_time="$SECS" -max_len=16384 -timeout=10 \
    -rss_limit_mb=2048 -malloc_limit_mb=1024 -artifact_prefix="$ART/$t/" \
    -print_final_stats=1 >"$ART/$t.log" 2>&1
}
report() {  # target rc
  local t=$1 log="$ART/$1.log"
  echo "== $t: ${SECS}s"
  if [ "$2" != 0 ]; then
    tail -n 60 "$log"
    echo "$t failed; reproducer(s) in $ART/$t/, log $log" >&2
    return 1
  fi
  grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)" "$log" || tail -n 5 "$log"
}
failed=0
for ((i = 0; i < ${#TARGETS[@]}; i += ${JOBS:-2})); do
  batch=("${TARGETS[@]:i:${JOBS:-2}}")
  pids=()
  for t in "${batch[@]}"; do run_one "$t" & pids+=($!); done
  for j in "${!batch[@]}"; do
    rc=0; wait "${pids[$j]}" || rc=$?
    report "${batch[$j]}" "$rc" || failed=1
  done
  [ $failed = 0 ] || exit 1
done
