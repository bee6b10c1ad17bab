#!/usr/bin/env bash
# Renders this overlay's nginx.conf (and copies lora_affinity.js) from
# deploy/nginx for REPLICAS loraserve pods (default 3). --check: exit 1 if
# the committed files differ from a fresh render.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
NGINX_DIR="$HERE/../../../nginx"
CHECK=0
if [ "${1:-}" = --check ]; then CHECK=1; shift; fi
N=${1:-3}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
replicas=()
for i in $(seq 0 $((N - 1))); do
  replicas+=("loraserve-$i.loraserve-pods:8000,loraserve-$i.loraserve-pods:50051")
done
NGINX_JS_MODULE=/etc/nginx/modules/ngx_http_js_module.so \
  bash "$NGINX_DIR/render.sh" "$OUT/nginx.conf" /etc/loraserve-nginx/lora_affinity.js \
  /var/cache/loraserve-nginx /tmp/nginx.pid stderr 8000 50051 "${replicas[@]}"
cp "$NGINX_DIR/lora_affinity.js" "$OUT/lora_affinity.js"
if [ $CHECK = 1 ]; then
  diff -u "$HERE/nginx.conf" "$OUT/nginx.conf" && diff -u "$HERE/lora_affinity.js" "$OUT/lora_affinity.js"
else
  cp "$OUT/nginx.conf" "$OUT/lora_affinity.js" "$HERE/"
fi
