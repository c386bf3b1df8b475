#!/usr/bin/env bash
# The whole suite, from a fresh machine: installs what it needs, then checks, tests, runs the
# demo and a short benchmark pass. `.ci/run` calls this.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "toolchain: rustfmt, clippy, wasm32 target"
rustup component add rustfmt clippy
rustup target add wasm32-unknown-unknown

step "system tools: nftables (tests/network_faults.rs drops packets with it in its own namespaces)"
command -v nft >/dev/null || { apt-get update -qq && apt-get install -y -qq nftables; }

step "format"
cargo fmt --check

step "clippy, native (the whole workspace, all targets: the sim runner, the perf report, ...)"
# Default features: what a renamed message-io project builds against (tests/transport.rs holds
# an exhaustive match on Transport that must compile there); then with transports of one's own.
cargo clippy --locked --workspace --all-targets -- -D warnings
cargo clippy --locked --workspace --all-targets --features portnet/adapter -- -D warnings

step "clippy, browser build (wasm32-unknown-unknown)"
cargo clippy --locked --lib --target wasm32-unknown-unknown -- -D warnings

step "clippy, each feature alone and none (message-io's features), native and browser"
for features in tcp udp websocket tls serde strum adapter ""; do
    for target in "" wasm32-unknown-unknown; do
        echo "-- features: '${features}'${target:+, $target}"
        cargo clippy --locked --lib --no-default-features ${features:+--features "$features"} \
            ${target:+--target "$target"} -- -D warnings
    done
done

step "a transport that is off takes its dependencies: tcp or udp alone has no tungstenite, no rustls"
for features in tcp udp; do
    deps="$(cargo tree --locked --no-default-features --features "$features" -e normal \
        --prefix none | grep -E '^(tungstenite|rustls|webpki-roots) ' || true)"
    [ -z "$deps" ] || { echo "--features $features still depends on: $deps" >&2; exit 1; }
done

step "docs"
RUSTDOCFLAGS=-Dwarnings cargo doc --locked --no-deps --features adapter

step "tests (the whole workspace)"
# --show-output prints what passing tests wrote, so that their SKIPPED lines are counted below.
mkdir -p target
# A hung test fails the step after 40 minutes (with the log so far), not CI's whole budget.
timeout -k 30s 40m \
    cargo test --locked --workspace --no-fail-fast --features portnet/adapter -- --show-output 2>&1 |
    tee target/test-output.log

step "message-io conformance: its own tests, benches and examples on portnet, and a control run"
bash tests/conformance/run.sh 2>&1 | tee target/conformance-output.log

step "public API beside message-io 0.19's (needs nightly: rustdoc JSON)"
bash tests/conformance/public_api.sh

step "demo"
cargo run --locked --example demo

step "benchmarks, short mode (checks they run; numbers are in docs/performance.md)"
PORTNET_BENCH_QUICK=1 cargo bench --locked --bench transports
PORTNET_BENCH_QUICK=1 cargo bench --locked --bench wss
PORTNET_BENCH_QUICK=1 cargo bench --locked --bench sim
PORTNET_BENCH_QUICK=1 cargo bench --locked --bench async

step "performance report, short mode (checks it runs; writes target/perf-report, not docs/)"
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
cargo run --locked --release -p portnet-perf-report -- --quick --out target/perf-report

step "browser: wasm tests in headless Chromium and the chat demo end to end (tests/browser.sh)"
bash tests/browser.sh

step "WebSocket conformance (Autobahn cases 1–7 via kosoku)"
bash tests/autobahn.sh

step "fuzzing (short)"
bash fuzz/run.sh 20

step "skipped: what could not run on this machine (each test says so with a line SKIPPED...)"
skipped="$(cat target/test-output.log target/conformance-output.log 2>/dev/null |
    grep -E '^SKIPPED' | sort -u || true)"
[ -z "$skipped" ] || echo "$skipped"
echo "SKIPPED: $(printf '%s' "$skipped" | grep -c . || true) tests or checks"
