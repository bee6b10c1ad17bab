#!/usr/bin/env bash
# Renders nginx.conf.template. Usage:
#   render.sh OUT_CONF JS_FILE TEMP_DIR PID_FILE ERROR_LOG HTTP_LISTEN GRPC_LISTEN \
#             REPLICA_HTTP,REPLICA_GRPC [...]
# NGINX_JS_MODULE: the njs module (default: Debian's path).
# e.g. render.sh /tmp/n.conf /x/lora_affinity.js /tmp/n /tmp/n.pid stderr \
#        127.0.0.1:8080 127.0.0.1:9090 127.0.0.1:8001,127.0.0.1:50052 ...
set -euo pipefail
[ $# -ge 8 ] || { sed -n 2,7p "$0"; exit 2; }
OUT=$1 JS=$2 TMP=$3 PID=$4 LOG=$5 HTTP=$6 GRPC=$7
shift 7
http_servers="" grpc_servers=""
for r in "$@"; do
  http_servers+="    server ${r%%,*} max_fails=1 fail_timeout=10s;"$'\n'
  grpc_servers+="    server ${r##*,} max_fails=1 fail_timeout=10s;"$'\n'
done
HERE="$(cd "$(dirname "$0")" && pwd)"
python3 - "$HERE/nginx.conf.template" "$OUT" <<PY
import sys
t = open(sys.argv[1]).read()
for k, v in {"@JS_MODULE@": "${NGINX_JS_MODULE:-/usr/lib/nginx/modules/ngx_http_js_module.so}",
             "@JS_FILE@": "$JS", "@TEMP_DIR@": "$TMP", "@PID_FILE@": "$PID",
             "@ERROR_LOG@": "$LOG", "@HTTP_LISTEN@": "$HTTP", "@GRPC_LISTEN@": "$GRPC",
             "@HTTP_SERVERS@": """${http_servers%$'\n'}""",
             "@GRPC_SERVERS@": """${grpc_servers%$'\n'}"""}.items():
    t = t.replace(k, v)
open(sys.argv[2], "w").write(t)
PY
