#!/usr/bin/env bash
# Runs the standard lora-bench matrix against one running server: the base
# model alone, then N adapters (registered with --setup, ranks as synthesised)
# at the same offered load, one JSON per point, then plots them.
#
#   loraserve synth --preset llama2-7b --out /data/synth --adapters 4 --ranks 8 16 32 64
#   loraserve serve --model /data/synth/model --adapter-root /data/synth/adapters ... &
#   clients/bench/run_matrix.sh --addr 127.0.0.1:50051 --synth /data/synth --out results/ \
#       --rate 8 --duration-s 120 -- --setup-files 4 --prompt-len 64:256 --output-len 64:256
#
# Thousands of distinct adapters need not mean thousands of files: with
# `--files 4` adapter i loads SYNTH/adapters/adapter-(i mod 4) (lora-bench
# --setup-files); the server keeps one host copy per file and separate pool
# pages per id.
# The server's --adapter-root must be SYNTH/adapters (LoadAdapter paths are
# relative to it). Adapters stay registered between points (N ascending), so
# later points only register the new ones. Arguments after "--" go to every
# lora-bench run. lora-bench exit code 3 (some requests failed) is recorded,
# not fatal: the errors are in that point's JSON.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bench="${LORA_BENCH:-$repo/build/bin/lora-bench}"
addr=127.0.0.1:50051
synth=""
out=bench-results
ns="0 1 100 1000 2000"
files=""
rate=4
duration=60
num_requests=""
drain=60
plot=1
extra=()

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  cat <<USAGE
Options: --addr H:P  --synth DIR  --out DIR  --ns "0 1 100 1000 2000"  --rate R  --files K
         --duration-s S  --num-requests N  --drain-s S  --bench PATH  --no-plot
USAGE
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --addr) addr=$2; shift 2 ;;
    --synth) synth=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --ns) ns=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --files) files=$2; shift 2 ;;
    --duration-s) duration=$2; shift 2 ;;
    --num-requests) num_requests=$2; shift 2 ;;
    --drain-s) drain=$2; shift 2 ;;
    --bench) bench=$2; shift 2 ;;
    --no-plot) plot=0; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "run_matrix.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

[[ -x "$bench" ]] || { echo "run_matrix.sh: no lora-bench at $bench (set --bench)" >&2; exit 2; }
max_n=0
for n in $ns; do if (( n > max_n )); then max_n=$n; fi; done
if (( max_n > 0 )); then
  [[ -n "$synth" ]] || { echo "run_matrix.sh: --synth DIR is needed for N > 0" >&2; exit 2; }
  need=${files:-$max_n}
  last=$(printf '%s/adapters/adapter-%03d' "$synth" $((need - 1)))
  [[ -d "$last" ]] || { echo "run_matrix.sh: $last missing: synthesise $need adapters" >&2; exit 2; }
fi
mkdir -p "$out"

bound=(--duration-s "$duration")
[[ -n "$num_requests" ]] && bound+=(--num-requests "$num_requests")

status=0
for n in $ns; do
  if (( n == 0 )); then
    name=base
    args=(--base-only)
  else
    name=$(printf 'n%04d' "$n")
    args=(--setup "$synth" --num-adapters "$n")
    [[ -n "$files" ]] && args+=(--setup-files "$files")
  fi
  echo "== $name: rate $rate req/s" >&2
  rc=0
  "$bench" --addr "$addr" --rate "$rate" "${bound[@]}" --drain-s "$drain" "${args[@]}" \
      "${extra[@]}" --json "$out/$name.json" | tee "$out/$name.txt" || rc=$?
  case $rc in
    0) ;;
    3) echo "run_matrix.sh: $name finished with request errors (see $out/$name.json)" >&2
       status=3 ;;
    *) echo "run_matrix.sh: $name failed with exit code $rc" >&2; exit "$rc" ;;
  esac
done

if (( plot )); then
  /usr/bin/python3 "$here/plot.py" --out "$out/matrix.png" "$out"/*.json
fi
exit $status
