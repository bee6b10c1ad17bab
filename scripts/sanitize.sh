#!/usr/bin/env bash
# Sanitizer CI: the test suites again under ASan+UBSan and under TSan, each
# in a build of its own (-O1, CUDA off; only the test binaries and what
# they run are built). ASan builds with clang-14 (which the fuzzers need
# anyway): the same targets compile in about three quarters of gcc's time.
#   asan: build-asan, ctest -L 'unit|e2e' (every unit and end-to-end test;
#         the servers the e2e tests start are ASan builds too).
#   tsan: build-tsan, the concurrency tests: the scheduler, Generation and
#         request-stream unit tests, the tenant directory and adapter cache,
#         and the OpenAI suites that stream, cancel and disconnect against a
#         TSan server (HTTP). Not the gRPC e2e tests: Debian's gRPC is not
#         built for TSan and floods it with false reports (tests/sanitizers/
#         tsan.supp says why they cannot just be suppressed); ASan runs them.
#   scripts/sanitize.sh [asan] [tsan]      (default: both; BUILD_DIR prefix, JOBS)
# Every process writes its reports under <build>/sanitizer-logs (children
# of the tests included, which a test cannot see); any report fails the
# run and is printed. Suppressions (tests/sanitizers/*.supp) are for
# third-party noise only, each entry with its reason.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
JOBS=${JOBS:-2}
PREFIX=${BUILD_DIR:-build}
SUPP=$ROOT/tests/sanitizers
MODES=("$@")
[ ${#MODES[@]} -eq 0 ] && MODES=(asan tsan)
ASAN_TARGETS=(unit_tests e2e_tests loraserve lora-bench lora-cli chat_test_server)
TSAN_TARGETS=(unit_tests loraserve chat_test_server)

# -g1: line tables for the reports' stacks, without the full debug info
# that makes these builds' objects and links several times slower.
configure() {  # dir flags [cmake args...]
  cmake -S . -B "$1" -DCMAKE_BUILD_TYPE=Sanitize -DLORASERVE_ENABLE_CUDA=OFF \
    -DCMAKE_CXX_FLAGS_SANITIZE="-O1 -g1 -fno-omit-frame-pointer $2" \
    -DCMAKE_C_FLAGS_SANITIZE="-O1 -g1 -fno-omit-frame-pointer $2" \
    -DCMAKE_EXE_LINKER_FLAGS_SANITIZE="$2" -DCMAKE_SHARED_LINKER_FLAGS_SANITIZE="$2" "${@:3}" \
    >/dev/null
}

# Prints every report under $1 and fails if there is one.
check_logs() {
  local found=0 f
  for f in "$1"/*; do
    [ -e "$f" ] || continue
    found=1
    echo "=== sanitizer report $f"
    head -n 80 "$f"
  done
  return $found
}

timed() {  # name command...
  local t0=$SECONDS rc=0
  "${@:2}" || rc=$?
  echo "[sanitize] $1: $((SECONDS - t0)) s (exit $rc)"
  return $rc
}

failed=0

for mode in "${MODES[@]}"; do
  B="$ROOT/$PREFIX-$mode"
  LOGS="$B/sanitizer-logs"
  rm -rf "$LOGS"
  mkdir -p "$LOGS"
  case $mode in
    asan)
      configure "$B" "-fsanitize=address,undefined -fno-sanitize-recover=undefined" \
        -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14
      # (gtest discovery runs the test binaries at build time: no leak
      # check there, the tests below have it.)
      ASAN_OPTIONS=detect_leaks=0 timed "asan build" cmake --build "$B" -j "$JOBS" \
        --target "${ASAN_TARGETS[@]}"
      export ASAN_OPTIONS="log_path=$LOGS/asan:detect_leaks=1"
      export LSAN_OPTIONS="suppressions=$SUPP/lsan.supp:print_suppressions=0"
      export UBSAN_OPTIONS="log_path=$LOGS/ubsan:print_stacktrace=1:halt_on_error=1"
      timed "asan tests" bash -c "cd '$B' && ctest --output-on-failure -j '$JOBS' -L 'unit|e2e' \
        --timeout 1200" || failed=1
      ;;
    tsan)
      # Only the unit test files whose tests run below are compiled.
      configure "$B" "-fsanitize=thread" -DLORASERVE_UNIT_TEST_FILES="/(adapter_cache|durable_adapter_store|generation|openai_request|scheduler_reliability|scheduler|tenants|vtc_policy|thread_pool|cpu_bf16_backend)_test\\.cc$"
      timed "tsan build" cmake --build "$B" -j "$JOBS" --target "${TSAN_TARGETS[@]}"
      export TSAN_OPTIONS="log_path=$LOGS/tsan:suppressions=$SUPP/tsan.supp:second_deadlock_stack=1:halt_on_error=0"
      UNIT='^(SchedulerTest|SchedulerEndings|GenerationEndings|RequestStreamListener|TenantDirectory|AdapterCache|DurableAdapterStore|VtcPolicy|ThreadPool|CpuBf16BackendTest)\.'
      # The gRPC e2e tests are not here: see tests/sanitizers/tsan.supp.
      timed "tsan tests" bash -c "cd '$B' && ctest --output-on-failure -j '$JOBS' \
        -R '$UNIT|openai_(chat|completions|hostile)' --timeout 1200" || failed=1
      ;;
    *) echo "unknown mode $mode (asan, tsan)" >&2; exit 2 ;;
  esac
  check_logs "$LOGS" || failed=1
done
exit $failed
