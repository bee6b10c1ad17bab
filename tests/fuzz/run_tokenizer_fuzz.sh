#!/usr/bin/env bash
# Builds tests/fuzz/tokenizer_fuzz with clang-14 (libFuzzer + ASan/UBSan)
# and runs it for SECONDS (default 60) on the seed corpus.
#   tests/fuzz/run_tokenizer_fuzz.sh [SECONDS] [BUILD_DIR]
# Needs: apt-get install clang-14 libclang-rt-14-dev
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SECS="${1:-60}"
BUILD="${2:-$ROOT/build-fuzz}"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLORASERVE_ENABLE_CUDA=OFF \
  -DLORASERVE_FUZZ=ON -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 >/dev/null
cmake --build "$BUILD" -j2 --target tokenizer_fuzz
CORPUS="$BUILD/tokenizer_fuzz_corpus"
mkdir -p "$CORPUS"
cp -n "$ROOT"/tests/fuzz/seeds/* "$CORPUS"/ 2>/dev/null || true
"$BUILD/bin/tokenizer_fuzz" "$CORPUS" -max_total_time="$SECS" -max_len=8192 -timeout=10 \
  -rss_limit_mb=2048 -print_final_stats=1
# Then the chat-template renderer (template + JSON context), as long again.
cmake --build "$BUILD" -j2 --target chat_template_fuzz
CT_CORPUS="$BUILD/chat_template_fuzz_corpus"
mkdir -p "$CT_CORPUS"
cp -n "$ROOT"/tests/fuzz/seeds/chat_template_fuzz/* "$CT_CORPUS"/ 2>/dev/null || true
"$BUILD/bin/chat_template_fuzz" "$CT_CORPUS" -max_total_time="$SECS" -max_len=16384 -timeout=10 \
  -rss_limit_mb=2048 -print_final_stats=1
