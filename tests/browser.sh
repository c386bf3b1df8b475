#!/usr/bin/env bash
# The browser pipeline, from a fresh Debian 12 machine: installs Chromium + ChromeDriver
# (apt), the wasm32 target, wasm-bindgen-cli at Cargo.lock's version and the npm tooling
# (web/e2e), then
#   1. runs tests/browser.rs (wasm-bindgen-test) in headless Chromium against a native portnet
#      server (examples/browser-test-server.rs) on ephemeral 127.0.0.1 ports;
#   2. builds the chat demo and runs its end-to-end test: two Chromium pages chat through the
#      native chat-server; the screenshot goes to $CARGO_TARGET_DIR/browser/chat.png.
# Fails loudly when something is missing; never skips. tests/run.sh calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
source web/setup.sh

step() { printf '\n== browser: %s\n' "$*"; }
started=$SECONDS
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
artifacts=$target_dir/browser
mkdir -p "$artifacts"
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# Waits for a server started in the background to write its port file.
wait_for_file() {
    local file=$1 pid=$2 what=$3
    for _ in $(seq 600); do
        [ -s "$file" ] && return 0
        kill -0 "$pid" 2>/dev/null || web_fail "$what exited before listening (log: $(cat "$work"/*.log))"
        sleep 0.1
    done
    web_fail "$what did not listen within 60 s"
}

step "Chromium and ChromeDriver"
ensure_chromium
step "wasm32 target and wasm-bindgen-cli $(wasm_bindgen_version)"
ensure_wasm_target
ensure_wasm_bindgen
step "npm tooling (playwright-core, binaryen) in web/e2e"
ensure_npm_packages

step "native servers"
cargo build --locked --features adapter --example browser-test-server --example chat-server
"$target_dir/debug/examples/browser-test-server" "$work/ports" >"$work/test-server.log" 2>&1 &
pids+=($!)
wait_for_file "$work/ports" "${pids[-1]}" "browser-test-server"

# Chromium trusts the wss server's self-signed certificate by its public key, and nothing else.
command -v openssl >/dev/null || web_fail "openssl is missing (Debian package openssl)"
spki=$(openssl x509 -pubkey -noout -in "$work/ports.cert.pem" | openssl pkey -pubin -outform der |
    openssl dgst -sha256 -binary | base64)
cat >"$work/webdriver.json" <<JSON
{ "goog:chromeOptions": { "args": [
    "--ignore-certificate-errors-spki-list=$spki", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-quic" ] } }
JSON

step "wasm-bindgen-test in headless Chromium (ports $(cat "$work/ports"))"
WASM_BINDGEN_TEST_WEBDRIVER_JSON=$work/webdriver.json \
PORTNET_BROWSER_TEST_PORTS=$(cat "$work/ports") \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
    CHROMEDRIVER=$(command -v chromedriver) \
    WASM_BINDGEN_TEST_TIMEOUT=120 WASM_BINDGEN_TEST_DRIVER_TIMEOUT=30 \
    cargo test --locked --target wasm32-unknown-unknown --features adapter --test browser \
        --no-fail-fast ||
    web_fail "the wasm-bindgen tests failed (server log: $work/test-server.log)"

step "chat demo: build"
bash web/build.sh | tee "$artifacts/demo-size.txt"
step "chat demo: two pages chat through the native server"
"$target_dir/debug/examples/chat-server" --site "$target_dir/web-demo/site" \
    --http 127.0.0.1:0 --port-file "$work/chat-port" >"$work/chat-server.log" 2>&1 &
pids+=($!)
wait_for_file "$work/chat-port" "${pids[-1]}" "chat-server"
node web/e2e/chat.test.mjs "http://127.0.0.1:$(cat "$work/chat-port")/" "$artifacts/chat.png" ||
    web_fail "the chat demo test failed (server log: $(cat "$work/chat-server.log"))"

step "passed in $((SECONDS - started)) s; artifacts in $artifacts"
