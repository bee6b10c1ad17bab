#!/usr/bin/env bash
# Everything the GPU session runs in ONE device call, from the repo root of
# the device machine, with .gpu-bundle carried along (see README.md here).
# Writes logs and results under $OUT and prints a short summary last.
#
# Build and pack on the build machine first: bash tests/gpu/pack_bundle.sh
# (the bundle, ~69 MiB, travels as .gpu-bundle.tgz, ~24 MiB; unpacked here).
#
# Stages (one device call runs at most 600 s, so the session may split it):
#   bash tests/gpu/run_on_device.sh            tests + tiny serve + gpu_bench (1-5)
#   bash tests/gpu/run_on_device.sh tests      1-4 only (kernel/engine tests, tiny
#       generate cuda vs cpu, tiny serve + lora-bench); about 2 minutes
#   bash tests/gpu/run_on_device.sh gpubench   5 only (gpu_bench, up to 400 s)
#   bash tests/gpu/run_on_device.sh engine7b   engine_bench on a synthetic
#       Llama-2-7B (bf16, decode batch 1/32/128 base vs one adapter per
#       sequence, rank 16 q/k/v/o; batch 1 vs roofline; 2048-token prefill).
#       The model (13.5 GB) is synthesized into /tmp/loraserve-7b and reused
#       by later calls while the machine stays warm.
#   bash tests/gpu/run_on_device.sh serve7b    issue 9: loraserve serve on that
#       model (cuda) and the lora-bench matrix N = 0 (base), 1, 100, 1000,
#       2000 adapters (ranks 8/16/32/64 q/k/v/o, four files cycled) at one
#       offered load (RATE, default 8 req/s; DURATION s per point).
#   bash tests/gpu/run_on_device.sh peer7b     issue 9's peer: transformers
#       + PEFT (32 adapters, batch 64, 128-token prompts, 128 new tokens) and
#       the base model under transformers, then loraserve on the same mix.
set -u
STAGE=${1:-all}
OUT=${OUT:-/tmp/loraserve-gpu-out}
mkdir -p "$OUT"
if [ -f .gpu-bundle.tgz ]; then
  rm -rf .gpu-bundle && tar xzf .gpu-bundle.tgz || { echo "cannot unpack .gpu-bundle.tgz"; exit 1; }
fi
[ -x .gpu-bundle/run.sh ] || { echo "no .gpu-bundle/run.sh: run tests/gpu/pack_bundle.sh and carry .gpu-bundle.tgz"; exit 1; }
B=.gpu-bundle/run.sh
W=$(mktemp -d /tmp/loraserve-gpu-XXXXXX)
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }

M7=/tmp/loraserve-7b
synth7b() {  # the model once (engine7b may have made it), four adapters once
  if [ ! -f "$M7/model/model.safetensors" ]; then
    $B loraserve synth --preset llama2-7b --out "$M7" --adapters 1 --ranks 16 > "$OUT/synth7b.log" 2>&1
  fi
  if [ ! -d "$M7/s4/adapters/adapter-003" ]; then
    $B loraserve synth --preset llama2-7b --out "$M7/s4" --adapters 4 --ranks 8,16,32,64 \
      --no-model >> "$OUT/synth7b.log" 2>&1
  fi
}
serve7b_start() {  # $1: log name
  rm -f "$W/port7b"
  $B loraserve serve --model "$M7/model" --adapter-root "$M7/s4/adapters" --listen 127.0.0.1:0 \
    --port-file "$W/port7b" --backend cuda --pool-fraction 0.85 --max-running 256 \
    --max-queue 100000 > "$OUT/$1" 2>&1 &
  SERVE7B_PID=$!
  for _ in $(seq 1 600); do [ -s "$W/port7b" ] && break; sleep 0.2; done
  [ -s "$W/port7b" ] && ADDR7B=127.0.0.1:$(cat "$W/port7b")
}
serve7b_stop() { kill "$SERVE7B_PID" 2>/dev/null; wait "$SERVE7B_PID" 2>/dev/null; }

if [ "$STAGE" = serve7b ]; then
  synth7b
  ADDR7B=""
  serve7b_start serve7b.log
  if [ -n "$ADDR7B" ]; then
    printf '#!/bin/sh\nexec %s/.gpu-bundle/run.sh lora-bench "$@"\n' "$PWD" > "$W/lora-bench"
    chmod +x "$W/lora-bench"
    timeout 560 bash clients/bench/run_matrix.sh --bench "$W/lora-bench" --addr "$ADDR7B" \
      --synth "$M7/s4" --files 4 --out "$OUT/matrix" --rate "${RATE:-8}" \
      --duration-s "${DURATION:-60}" --drain-s 60 --no-plot -- --prompt-len 64:256 \
      --output-len 64:256 --vocab 32000 --quiet > "$OUT/matrix.log" 2>&1
    note "run_matrix rc=$?"
  else
    note "serve did not start (see serve7b.log)"
  fi
  serve7b_stop
  for f in "$OUT"/matrix/*.json; do
    [ -f "$f" ] && python3 -c "import json,sys; d=json.load(open(sys.argv[1])); r=d['run']; \
print(sys.argv[1].split('/')[-1], 'completed', r['completed'], 'out tok/s %.0f' % r['output_throughput'], \
'ttft p99 %.1f ms' % d['latency_ms']['ttft']['p99'], 'itl p99 %.1f ms' % d['latency_ms']['itl']['p99'], \
'errors', d['errors_by_code'])" "$f" | tee -a "$SUMMARY"
  done
  rm -rf "$W"
  cat "$SUMMARY"
  exit 0
fi

if [ "$STAGE" = peer7b ]; then
  synth7b
  A4="$M7/s4/adapters/adapter-000,$M7/s4/adapters/adapter-001,$M7/s4/adapters/adapter-002,$M7/s4/adapters/adapter-003"
  timeout 300 python3 clients/bench/peft_peer.py --model "$M7/model" --adapters "$A4" \
    --num-adapters 32 --batch 64 --prompt-len 128 --new-tokens 128 --json "$OUT/peft.json" \
    > "$OUT/peft.log" 2>&1
  note "peft rc=$?: $(tail -1 "$OUT/peft.log")"
  timeout 120 python3 clients/bench/peft_peer.py --model "$M7/model" --base-only --batch 64 \
    --prompt-len 128 --new-tokens 128 --json "$OUT/hf_base.json" > "$OUT/hf_base.log" 2>&1
  note "transformers base rc=$?: $(tail -1 "$OUT/hf_base.log")"
  ADDR7B=""
  serve7b_start serve7b_peer.log
  if [ -n "$ADDR7B" ]; then
    timeout 200 $B lora-bench --addr "$ADDR7B" --setup "$M7/s4" --num-adapters 32 --setup-files 4 \
      --users 64 --num-requests 128 --prompt-len 128:128 --output-len 128:128 --vocab 32000 \
      --json "$OUT/loraserve_peer_mix.json" > "$OUT/loraserve_peer_mix.txt" 2>&1
    note "lora-bench (32 adapters, 64 users, 128/128) rc=$?"
    grep -iE "output|tok/s|throughput" "$OUT/loraserve_peer_mix.txt" | head -5 >> "$SUMMARY"
  fi
  serve7b_stop
  rm -rf "$W"
  cat "$SUMMARY"
  exit 0
fi

if [ "$STAGE" = engine7b ]; then
  nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv > "$OUT/env.txt" 2>&1
  timeout 560 $B engine_bench --synth llama2-7b --workdir /tmp/loraserve-7b --backend cuda \
    --batches 1,32,128 --context 128 --decode-steps 16 --prefill 2048 --prefill-reps 3 \
    --pool-fraction 0.8 --json "$OUT/engine_bench_7b.json" > "$OUT/engine_bench_7b.txt" 2>&1
  note "engine_bench llama2-7b rc=$?"
  cat "$OUT/engine_bench_7b.txt" >> "$SUMMARY"
  rm -rf "$W"
  echo "==================== summary ===================="
  cat "$SUMMARY"
  exit 0
fi

if [ "$STAGE" != gpubench ]; then
# 1. The machine and the bundle.
{
  nvidia-smi
  nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm,clocks.mem --format=csv
  $B --check gpu_kernel_tests
  $B --check loraserve
  command -v cuobjdump >/dev/null && cuobjdump --list-elf --list-ptx .gpu-bundle/bin/gpu_kernel_tests
} > "$OUT/env.txt" 2>&1
note "env: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"

# 2. Kernel and engine tests (every element vs the CPU references).
timeout 300 $B gpu_kernel_tests --gtest_output=xml:"$OUT/gpu.xml" > "$OUT/gpu_kernel_tests.log" 2>&1
rc=$?
note "gpu_kernel_tests rc=$rc: $(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/gpu_kernel_tests.log" | tr '\n' ' ')"
grep -E '^\[  FAILED  \]|max_abs|cuda vs cpu' "$OUT/gpu_kernel_tests.log" | head -60 >> "$SUMMARY"

# 3. loraserve generate: cuda vs cpu on the tiny synthetic model.
$B loraserve synth --preset tiny --out "$W/tiny" --adapters 4 > "$OUT/synth.log" 2>&1 ||
  note "synth failed (see synth.log)"
for adapter in "" "$W/tiny/adapters/adapter-001"; do
  tag=$([ -z "$adapter" ] && echo base || echo adapter)
  for backend in cpu cuda; do
    args=(generate --model "$W/tiny/model" --prompt-ids 1,17,300,42,9 --max-new-tokens 24
          --json --backend "$backend" --pool-mb 64 --logits-out "$W/logits_${tag}_${backend}.bin")
    [ -n "$adapter" ] && args+=(--adapter "$adapter")
    timeout 120 $B loraserve "${args[@]}" > "$OUT/generate_${tag}_${backend}.json" \
      2> "$OUT/generate_${tag}_${backend}.log"
    note "generate $tag $backend rc=$?: $(head -c 300 "$OUT/generate_${tag}_${backend}.json")"
  done
  python3 - "$W/logits_${tag}_cpu.bin" "$W/logits_${tag}_cuda.bin" 1024 <<'PY' | tee -a "$SUMMARY"
import array, sys
a, b, vocab = array.array('f'), array.array('f'), int(sys.argv[3])
try:
    a.frombytes(open(sys.argv[1], 'rb').read()); b.frombytes(open(sys.argv[2], 'rb').read())
except OSError as e:
    print("  logits compare: missing file", e); sys.exit(0)
n = min(len(a), len(b)) // vocab
first_flip = None
for s in range(n):
    ra, rb = a[s*vocab:(s+1)*vocab], b[s*vocab:(s+1)*vocab]
    ta = max(range(vocab), key=ra.__getitem__); tb = max(range(vocab), key=rb.__getitem__)
    top2 = sorted(ra, reverse=True)[:2]
    d = max(abs(x - y) for x, y in zip(ra, rb))
    print(f"  step {s}: cpu tok {ta} cuda tok {tb} cpu margin {top2[0]-top2[1]:.3f} max|dlogit| {d:.4f}")
    if ta != tb:
        print("  (tokens differ from here on; steps after this one are not comparable)"); break
PY
done

# 4. A short serve + lora-bench run on cuda.
PORT_FILE="$W/port"
$B loraserve serve --model "$W/tiny/model" --adapter-root "$W/tiny/adapters" \
  --listen 127.0.0.1:0 --port-file "$PORT_FILE" --backend "${SERVE_BACKEND:-cuda}" --pool-mb 256 \
  > "$OUT/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 1 100); do [ -s "$PORT_FILE" ] && break; sleep 0.2; done
if [ -s "$PORT_FILE" ]; then
  ADDR=127.0.0.1:$(cat "$PORT_FILE")
  timeout 30 $B lora-cli --addr "$ADDR" generate --prompt-ids 1,2,3 --max-new-tokens 8 --json \
    > "$OUT/cli_generate.json" 2>&1
  note "lora-cli generate rc=$?: $(head -c 300 "$OUT/cli_generate.json")"
  timeout 180 $B lora-bench --addr "$ADDR" --setup "$W/tiny" --num-adapters 4 \
    --num-requests 200 --rate 50 --prompt-len 16:64 --output-len 16:64 --vocab 1000 \
    --json "$OUT/bench.json" > "$OUT/bench.txt" 2>&1
  note "lora-bench rc=$?"
  tail -25 "$OUT/bench.txt" >> "$SUMMARY"
  timeout 30 $B lora-cli --addr "$ADDR" stats --json > "$OUT/stats.json" 2>&1
else
  note "serve did not start (see serve.log)"
fi
kill "$SERVE_PID" 2>/dev/null
wait "$SERVE_PID" 2>/dev/null
tail -5 "$OUT/serve.log" >> "$SUMMARY"
fi  # stages 1-4

if [ "$STAGE" = all ] || [ "$STAGE" = gpubench ]; then
# 5. gpu_bench: copy bandwidth, paged SGMV decode shapes vs copy and vs
#    per-adapter cuBLAS, Llama-2-7B linear-layer decode step and prefill.
timeout 400 $B gpu_bench > "$OUT/gpu_bench.txt" 2>&1
note "gpu_bench rc=$?"
grep -E '^==|^ *[0-9]+ |^ +(batch|variant|base|lora) |ERROR|MISS|not implemented|done' \
  "$OUT/gpu_bench.txt" | head -40 >> "$SUMMARY"
fi

rm -rf "$W"
echo "==================== summary ===================="
cat "$SUMMARY"
