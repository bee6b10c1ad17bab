#!/usr/bin/env bash
# The main job: set up, build, write a tiny synthetic Llama model with eight
# LoRA adapters of ranks 8-64, serve it (on the GPU when the cuda backend
# has one, else on the CPU), and run a short load test with lora-bench:
# Poisson arrivals, power-law adapter popularity, every adapter hot-loaded
# through the API first; then the OpenAI-compatible HTTP API with curl
# (a completion, a streamed one, /v1/models, a slice of /metrics).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
BIN=${BUILD_DIR:-build}/bin
OUT=${DEMO_DIR:-build/demo}
rm -rf "$OUT"
mkdir -p "$OUT"
"$BIN/loraserve" synth --preset tiny --out "$OUT" --adapters 8 --ranks 8,16,32,64 \
    --targets q_proj,k_proj,v_proj,o_proj --seed 1

"$BIN/loraserve" serve --model "$OUT/model" --adapter-root "$OUT/adapters" \
    --listen 127.0.0.1:0 --port-file "$OUT/port" --backend auto --pool-mb 256 \
    --http-listen 127.0.0.1:0 --http-port-file "$OUT/http-port" \
    > "$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$OUT/port" ] && break; sleep 0.1; done
[ -s "$OUT/port" ] || { cat "$OUT/server.log"; exit 1; }
ADDR=127.0.0.1:$(cat "$OUT/port")
echo "server on $ADDR"
"$BIN/lora-cli" --addr "$ADDR" health

"$BIN/lora-bench" --addr "$ADDR" --setup "$OUT" --num-adapters 8 --popularity powerlaw \
    --alpha 1 --rate 20 --num-requests 200 --prompt-len 16:64 --output-len 16:64 --seed 1 \
    --json "$OUT/bench.json"
"$BIN/lora-cli" --addr "$ADDR" list
"$BIN/lora-cli" --addr "$ADDR" stats

HTTP=http://127.0.0.1:$(cat "$OUT/http-port")
echo "OpenAI-compatible API on $HTTP (base model name: model; adapters by id)"
(set -x; curl -sS "$HTTP/v1/completions" -H 'Content-Type: application/json' \
  -d '{"model": "adapter-001", "prompt": "Once upon a time", "max_tokens": 12, "temperature": 0}')
echo
(set -x; curl -sSN "$HTTP/v1/completions" -H 'Content-Type: application/json' \
  -d '{"model": "model", "prompt": [1, 15, 92, 7], "max_tokens": 4, "stream": true,
       "stream_options": {"include_usage": true}}')
(set -x; curl -sS "$HTTP/v1/models")
echo
curl -sS "$HTTP/metrics" | grep -E '^loraserve_(generation_tokens_total|num_requests|lora_requests_info|time_to_first_token_seconds_count)'

kill -TERM $SERVER
wait $SERVER
trap - EXIT
echo "report: $OUT/bench.json; server log: $OUT/server.log"
