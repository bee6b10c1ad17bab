#!/usr/bin/env bash
# Installs loraserve's build and test dependencies from Debian 12 packages.
# Runs as root (CI, containers) or through sudo. Safe to re-run.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
PKGS=(
  build-essential cmake pkg-config git
  libopenblas-dev nlohmann-json3-dev libcli11-dev libspdlog-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libyaml-cpp-dev libssl-dev openssl
  libpcre2-dev libutf8proc-dev libxxhash-dev
  clang-14 libclang-rt-14-dev libboost-context-dev
  libboost-dev prometheus
  python3 python3-numpy python3-torch python3-sentencepiece python3-jinja2
  nginx libnginx-mod-http-js
)
# kubectl renders the Kubernetes overlays in CI; Debian's kubernetes-client
# unless the machine already has a kubectl of its own (they conflict).
if ! command -v kubectl >/dev/null 2>&1; then PKGS+=(kubernetes-client); fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
# Node and npm for the OpenAI-client e2e tests (any Node >= 18). Only when
# missing: a machine may carry its own Node build, whose npm Debian's would
# conflict with.
if ! command -v npm >/dev/null 2>&1; then
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends nodejs npm
fi
