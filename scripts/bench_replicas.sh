#!/usr/bin/env bash
# 1 vs 3 replicas behind the adapter-affine nginx front (deploy/local/cluster.sh),
# the same lora-bench workload against each, gRPC and OpenAI HTTP. Prints one
# line per run; the figures go to docs/benchmarks.md. On one machine the
# replicas share its cores, so this measures what the front and the store
# cost and what affinity does, not GPU scale-out.
#   scripts/bench_replicas.sh [OUT_DIR]   (needs build/bin; env: ADAPTERS, RATE, REQUESTS)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
OUT=${1:-$(mktemp -d)}
ADAPTERS=${ADAPTERS:-32} RATE=${RATE:-8} REQUESTS=${REQUESTS:-160}
mkdir -p "$OUT"
[ -d "$OUT/data/model" ] || "$BIN/loraserve" synth --preset tiny --out "$OUT/data" \
  --adapters "$ADAPTERS" --ranks 8 16 32 64 --seed 5 > /dev/null
for n in 1 3; do
  for api in grpc openai; do
    C="$OUT/cluster-$n-$api" S="$OUT/store-$n-$api"
    rm -rf "$C" "$S"
    bash deploy/local/cluster.sh up "$C" --replicas "$n" --model "$OUT/data/model" \
      --adapter-root "$OUT/data/adapters" --adapter-store "$S" --bin "$BIN" -- --pool-mb 64 > /dev/null
    args=(--addr "$(cat "$C/front.grpc")" --setup "$OUT/data" --num-adapters "$ADAPTERS"
          --popularity powerlaw --rate "$RATE" --num-requests "$REQUESTS" --prompt-len 16:64
          --output-len 16:64 --seed 7 --json "$OUT/report-$n-$api.json" --quiet)
    [ "$api" = grpc ] || args+=(--api openai --http-addr "$(cat "$C/front.http")")
    rc=0
    "$BIN/lora-bench" "${args[@]}" || rc=$?
    # Each adapter should be loaded on one replica only.
    loaded=0
    while read -r _ g _; do
      loaded=$((loaded + $("$BIN/lora-cli" --addr "$g" list --json | python3 -c \
        'import json,sys; print(sum(a["loaded"] for a in json.load(sys.stdin)["adapters"]))')))
    done < "$C/replicas.txt"
    bash deploy/local/cluster.sh down "$C"
    python3 - "$OUT/report-$n-$api.json" "$n" "$api" "$rc" "$loaded" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
def g(*ks):
    v = r
    for k in ks:
        v = v.get(k, {}) if isinstance(v, dict) else {}
    return v if v != {} else float("nan")
print(f"replicas={sys.argv[2]} api={sys.argv[3]} rc={sys.argv[4]} "
      f"completed={g('run','completed')} errors={g('run','errors')} "
      f"tok/s={g('run','output_throughput'):.1f} req/s={g('run','request_throughput'):.2f} "
      f"ttft_p50_ms={g('latency_ms','ttft','p50'):.1f} "
      f"ttft_p99_ms={g('latency_ms','ttft','p99'):.1f} "
      f"itl_p50_ms={g('latency_ms','itl','p50'):.2f} "
      f"e2e_p50_ms={g('latency_ms','e2e','p50'):.1f} adapter_loads={sys.argv[5]}")
PY
  done
done
