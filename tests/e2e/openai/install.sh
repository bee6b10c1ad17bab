#!/usr/bin/env bash
# Installs the openai npm client for the e2e tests from the committed
# package-lock.json (npm ci), unless node_modules already matches it.
set -euo pipefail
cd "$(dirname "$0")"
if [ -d node_modules/openai ] && [ node_modules/.package-lock.json -nt package-lock.json ]; then
  exit 0
fi
npm ci --no-audit --no-fund
