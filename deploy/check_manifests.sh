#!/usr/bin/env bash
# CI check of deploy/: every kustomize overlay renders (kubectl kustomize),
# the nginx overlay's files are a current render of deploy/nginx, and the
# nginx template renders to a config `nginx -t` accepts. Prints one line per
# check and "N passed, 0 failed".
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
passed=0 failed=0
check() {  # check NAME COMMAND...
  local name=$1; shift
  if out=$("$@" 2>&1); then
    passed=$((passed + 1)); echo "ok   $name"
  else
    failed=$((failed + 1)); echo "FAIL $name"; echo "$out" | tail -20
  fi
}
render_overlay() {  # the objects must include what the overlay promises
  local dir=$1; shift
  local yaml
  yaml=$(kubectl kustomize "$ROOT/deploy/kubernetes/$dir" 2>/dev/null)
  for kind in "$@"; do grep -q "^kind: $kind\$" <<<"$yaml" || { echo "no $kind in $dir"; return 1; }; done
}
check "kustomize base" render_overlay base StatefulSet Service PersistentVolumeClaim PodDisruptionBudget
check "kustomize overlays/gateway" render_overlay overlays/gateway InferencePool HTTPRoute Gateway Deployment
check "kustomize overlays/nginx" render_overlay overlays/nginx ConfigMap Deployment StatefulSet
check "nginx overlay is a current render" bash "$ROOT/deploy/kubernetes/overlays/nginx/render.sh" --check
nginx_test() {
  local t; t=$(mktemp -d); mkdir -p "$t/tmp"
  bash "$ROOT/deploy/nginx/render.sh" "$t/nginx.conf" "$ROOT/deploy/nginx/lora_affinity.js" "$t/tmp" \
    "$t/nginx.pid" stderr 127.0.0.1:1 127.0.0.1:2 127.0.0.1:3,127.0.0.1:4 127.0.0.1:5,127.0.0.1:6
  nginx -t -q -c "$t/nginx.conf" -p "$t"; local rc=$?; rm -rf "$t"; return $rc
}
check "nginx -t on the rendered template" nginx_test
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
