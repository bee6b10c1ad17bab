#!/usr/bin/env bash
# A loraserve cluster on loopback: N replicas sharing one --adapter-store
# behind the adapter-affine nginx front (deploy/nginx), for trying the
# scale-out setup and for its end-to-end test.
#
#   cluster.sh up DIR --replicas N --model M --adapter-root R --adapter-store S
#                     [--bin BIN_DIR] [-- EXTRA SERVE FLAGS...]
#   cluster.sh down DIR
#
# `up` writes DIR/front.grpc and DIR/front.http (host:port of the front) and
# DIR/replicas.txt (one line per replica: pid, gRPC host:port, HTTP
# host:port); replica logs are DIR/replica-I.log, nginx's DIR/nginx/error.log.
# `down` stops the front and the replicas (SIGTERM, then SIGKILL after 15 s).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

usage() { sed -n 6,9p "$0" >&2; exit 2; }
[ $# -ge 2 ] || usage
CMD=$1 DIR=$2
shift 2

stop_pid() {  # pid: SIGTERM, wait up to 15 s, then SIGKILL
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 150); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

down() {
  [ -d "$DIR" ] || return 0
  if [ -f "$DIR/nginx/nginx.pid" ]; then stop_pid "$(cat "$DIR/nginx/nginx.pid")"; fi
  if [ -f "$DIR/replicas.txt" ]; then
    while read -r pid _; do stop_pid "$pid" & done < "$DIR/replicas.txt"
    wait
  fi
  rm -f "$DIR/front.grpc" "$DIR/front.http" "$DIR/replicas.txt" "$DIR/nginx/nginx.pid"
}

if [ "$CMD" = down ]; then down; exit 0; fi
[ "$CMD" = up ] || usage

REPLICAS=1 MODEL="" ADAPTER_ROOT="" STORE="" BIN="$ROOT/build/bin"
EXTRA=()
while [ $# -gt 0 ]; do
  case $1 in
    --replicas) REPLICAS=$2; shift 2 ;;
    --model) MODEL=$2; shift 2 ;;
    --adapter-root) ADAPTER_ROOT=$2; shift 2 ;;
    --adapter-store) STORE=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "cluster.sh: unknown flag $1" >&2; usage ;;
  esac
done
[ -n "$MODEL" ] && [ -n "$STORE" ] || { echo "cluster.sh: --model and --adapter-store are required" >&2; exit 2; }
[ -x "$BIN/loraserve" ] || { echo "cluster.sh: no $BIN/loraserve (build first, or --bin)" >&2; exit 2; }
command -v nginx >/dev/null || { echo "cluster.sh: nginx is not installed (apt-get install nginx libnginx-mod-http-js)" >&2; exit 2; }

mkdir -p "$DIR" "$STORE"
DIR="$(cd "$DIR" && pwd)"
[ ! -s "$DIR/replicas.txt" ] || { echo "cluster.sh: $DIR already runs a cluster (cluster.sh down $DIR)" >&2; exit 1; }
trap 'echo "cluster.sh: start failed; stopping what started" >&2; down' ERR

: > "$DIR/replicas.txt.new"
pids=()
for i in $(seq "$REPLICAS"); do
  rm -f "$DIR/replica-$i.grpc-port" "$DIR/replica-$i.http-port"
  args=(serve --model "$MODEL" --adapter-store "$STORE"
        --listen 127.0.0.1:0 --port-file "$DIR/replica-$i.grpc-port"
        --http-listen 127.0.0.1:0 --http-port-file "$DIR/replica-$i.http-port")
  [ -z "$ADAPTER_ROOT" ] || args+=(--adapter-root "$ADAPTER_ROOT")
  setsid "$BIN/loraserve" "${args[@]}" "${EXTRA[@]}" > "$DIR/replica-$i.log" 2>&1 < /dev/null &
  pids+=($!)
  echo "$! pending" >> "$DIR/replicas.txt.new"
done
# The pids first, so `down` can stop replicas that never came up.
mv "$DIR/replicas.txt.new" "$DIR/replicas.txt"

: > "$DIR/replicas.txt.new"
upstreams=()
for i in $(seq "$REPLICAS"); do
  pid=${pids[$((i - 1))]}
  for _ in $(seq 600); do
    [ -s "$DIR/replica-$i.grpc-port" ] && [ -s "$DIR/replica-$i.http-port" ] && break
    kill -0 "$pid" 2>/dev/null || { echo "cluster.sh: replica $i exited:" >&2; tail -n 20 "$DIR/replica-$i.log" >&2; false; }
    sleep 0.1
  done
  [ -s "$DIR/replica-$i.http-port" ] || { echo "cluster.sh: replica $i did not come up in 60 s" >&2; false; }
  g=127.0.0.1:$(tr -d '\n' < "$DIR/replica-$i.grpc-port")
  h=127.0.0.1:$(tr -d '\n' < "$DIR/replica-$i.http-port")
  echo "$pid $g $h" >> "$DIR/replicas.txt.new"
  upstreams+=("$h,$g")
done
mv "$DIR/replicas.txt.new" "$DIR/replicas.txt"

# Two free loopback ports for the front.
read -r FRONT_HTTP FRONT_GRPC < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*["127.0.0.1:%d" % x.getsockname()[1] for x in s])')
mkdir -p "$DIR/nginx"
# nginx's workers run as nobody when started as root: they write buffers here.
chmod 777 "$DIR/nginx"
bash "$ROOT/deploy/nginx/render.sh" "$DIR/nginx/nginx.conf" "$ROOT/deploy/nginx/lora_affinity.js" \
  "$DIR/nginx" "$DIR/nginx/nginx.pid" "$DIR/nginx/error.log" "$FRONT_HTTP" "$FRONT_GRPC" \
  "${upstreams[@]}"
nginx -q -e "$DIR/nginx/error.log" -p "$DIR/nginx" -c "$DIR/nginx/nginx.conf"
for _ in $(seq 100); do [ -s "$DIR/nginx/nginx.pid" ] && break; sleep 0.05; done
[ -s "$DIR/nginx/nginx.pid" ] || { echo "cluster.sh: nginx did not start:" >&2; cat "$DIR/nginx/error.log" >&2; false; }
echo "$FRONT_GRPC" > "$DIR/front.grpc"
echo "$FRONT_HTTP" > "$DIR/front.http"
trap - ERR
echo "cluster up: $REPLICAS replica(s); front gRPC $FRONT_GRPC, HTTP $FRONT_HTTP; replicas in $DIR/replicas.txt"
