#!/usr/bin/env bash
# The chat demo in one command: builds the wasm client and the page, starts the native
# chat server, and prints the URL to open (two tabs make a conversation). Ctrl-C stops it.
#
#   web/run.sh                 # http://127.0.0.1:8080/
#   web/run.sh 127.0.0.1:9000  # another address
set -euo pipefail
cd "$(dirname "$0")/.."
source web/setup.sh
if [ -f web/e2e/package-lock.json ] && command -v npm >/dev/null; then
    ensure_npm_packages # for wasm-opt; the demo works without it
fi
bash web/build.sh
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
exec cargo run --locked --example chat-server -- --site "$target_dir/web-demo/site" \
    --http "${1:-127.0.0.1:8080}"
