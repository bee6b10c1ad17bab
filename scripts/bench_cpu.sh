#!/usr/bin/env bash
# The CPU backends on the Llama-3.2-1B shape (issue #19's targets): the f32
# oracle (`cpu`) and `cpu-bf16` with each kernel it can pick, one after the
# other in one run, then a table against the targets. engine_bench measures
# the host read bandwidth in the same process (the roofline) and peak RSS.
#   scripts/bench_cpu.sh [OUT_DIR]   (needs build/bin; env: THREADS, SKIP_F32=1, REPEAT,
#   KERNELS="avx512bf16 avx512bf16:packed ...": --cpu-isa[:--cpu-weights] per run,
#   WEIGHTS_CACHE=DIR|off: --cpu-weights-cache of packed runs, OUT_DIR/weights-cache
#   by default, emptied first: the first packed run packs and writes it, later ones map it;
#   "background s" is the write after load, which a server serves beside)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
OUT=${1:-/tmp/bench_cpu}
THREADS=${THREADS:-$(nproc)}
REPEAT=${REPEAT:-2}
mkdir -p "$OUT"
WEIGHTS_CACHE=${WEIGHTS_CACHE:-$OUT/weights-cache}
[ "$WEIGHTS_CACHE" = off ] || rm -rf "$WEIGHTS_CACHE"
[ -f "$OUT/l1b/model/model.safetensors" ] || "$BIN/loraserve" synth --preset llama3.2-1b \
  --out "$OUT/l1b" --adapters 1 --ranks 16 --seed 7 > /dev/null
common=(--model "$OUT/l1b/model" --adapter "$OUT/l1b/adapters/adapter-000" --batches 1,8,16
        --context 64 --prefill 128 --pool-mb 512 --threads "$THREADS")
runs=()
if [ "${SKIP_F32:-0}" != 1 ]; then
  "$BIN/engine_bench" "${common[@]}" --backend cpu --decode-steps 4 --prefill-reps 1 \
    --json "$OUT/cpu.json" > "$OUT/cpu.log"
  runs+=(cpu)
fi
# KERNEL[:WEIGHTS]: WEIGHTS is --cpu-weights (mapped unless named).
kernels=${KERNELS:-avx512bf16 avx512bf16:packed avx512 avx2}
for r in $(seq 1 "$REPEAT"); do
  for kw in $kernels; do
    isa=${kw%%:*}
    weights=mapped
    [ "$kw" = "$isa" ] || weights=${kw#*:}
    name="bf16-$isa"
    [ "$weights" = mapped ] || name="$name-$weights"
    cache=()
    [ "$weights" = mapped ] || [ "$WEIGHTS_CACHE" = off ] || cache=(--cpu-weights-cache "$WEIGHTS_CACHE")
    if "$BIN/engine_bench" "${common[@]}" --backend cpu-bf16 --cpu-isa "$isa" \
         --cpu-weights "$weights" "${cache[@]}" --decode-steps 16 --prefill-reps 3 \
         --json "$OUT/$name-$r.json" > "$OUT/$name-$r.log" 2>&1; then
      runs+=("$name-$r")
    fi
  done
done
python3 - "$OUT" "${runs[@]}" <<'PY'
import json, re, sys
out, runs = sys.argv[1], sys.argv[2:]
print("| run | GB/s | load s | background s | matrices from the cache | B=1 ms | B=1 / roofline | B=8 tok/s | B=16 tok/s | B=16 16 adapters tok/s | "
      "lora/base B=16 | prefill 128 tok/s | peak RSS MiB | RSS limit MiB |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in runs:
    j = json.load(open(f"{out}/{r}.json"))
    d = {x["batch"]: x for x in j["decode"]}
    roof = j["weight_bytes"] / (j["copy_gbps"] * 1e9) * 1e3
    limit = 1.3 * j["weight_bytes"] / 2**20 + 600
    pf = j["prefill"]
    m = re.search(r"(\d+) mapped from the cache in .*, (\d+) packed", j.get("backend_describe", ""))
    cached = f"{m.group(1)} of {int(m.group(1)) + int(m.group(2))}" if m else "-"
    print(f"| {r} | {j['copy_gbps']:.1f} | {j['load_s']:.2f} | {j.get('background_s', 0):.2f} | {cached} | {d[1]['base_ms']:.1f} | "
          f"{d[1]['base_ms'] / roof:.2f} | {8000 / d[8]['base_ms']:.0f} | {16000 / d[16]['base_ms']:.0f} | "
          f"{16000 / d[16]['lora_ms']:.0f} | {d[16]['lora_ms'] / d[16]['base_ms']:.2f} | "
          f"{pf['tokens'] * 1000 / pf['base_ms']:.0f} | {j['peak_rss_mb']:.0f} | {limit:.0f} |")
PY
