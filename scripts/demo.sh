#!/usr/bin/env bash
# The main job: set up, build, write a tiny synthetic Llama model with four
# LoRA adapters of different ranks, and generate with the base model and
# each adapter on the best backend present.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
BIN=${BUILD_DIR:-build}/bin
OUT=${DEMO_DIR:-build/demo}
rm -rf "$OUT"
"$BIN/loraserve" synth --preset tiny --out "$OUT" --adapters 4 --ranks 8,16,32,64 \
    --targets q_proj,k_proj,v_proj,o_proj --seed 1
PROMPT=1,15,92,7,301,44,5,600
echo "base model:"
"$BIN/loraserve" generate --model "$OUT/model" --prompt-ids $PROMPT --max-new-tokens 16 --json
for a in "$OUT"/adapters/*; do
  echo "adapter $(basename "$a"):"
  "$BIN/loraserve" generate --model "$OUT/model" --adapter "$a" --prompt-ids $PROMPT \
      --max-new-tokens 16 --json
done
