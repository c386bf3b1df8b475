#!/usr/bin/env bash
# Builds the chat demo's site: the client crate (web/demo) for wasm32 in the small
# `web-release` profile, wasm-bindgen's JS glue, wasm-opt when web/e2e has it (see
# web/setup.sh), and the page. Prints the sizes. Output: $CARGO_TARGET_DIR/web-demo/site.
set -euo pipefail
cd "$(dirname "$0")/.."
source web/setup.sh

ensure_wasm_target
ensure_wasm_bindgen

target_dir=${CARGO_TARGET_DIR:-$PWD/target}
out=$target_dir/web-demo
site=$out/site
cargo build --locked -p portnet-web-demo --lib --target wasm32-unknown-unknown --profile web-release
rm -rf "$site" && mkdir -p "$site"
wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section \
    --out-dir "$site" "$target_dir/wasm32-unknown-unknown/web-release/portnet_web_demo.wasm"
wasm=$site/portnet_web_demo_bg.wasm
cp "$wasm" "$out/client-bindgen.wasm"
wasm_opt=${WASM_OPT:-web/e2e/node_modules/.bin/wasm-opt}
if [ -x "$wasm_opt" ]; then
    # The features rustc enables by default for wasm32-unknown-unknown.
    "$wasm_opt" -Oz --enable-bulk-memory --enable-bulk-memory-opt --enable-sign-ext \
        --enable-mutable-globals --enable-nontrapping-float-to-int --enable-reference-types \
        --enable-multivalue "$out/client-bindgen.wasm" -o "$wasm"
else
    echo "web: no wasm-opt (run: (cd web/e2e && npm ci)); the client is larger but works"
fi
cp web/demo/www/* "$site/"

size() { wc -c <"$1" | tr -d ' '; }
gz() { gzip -9 -c "$1" | wc -c | tr -d ' '; }
echo "web: client .wasm after wasm-bindgen: $(size "$out/client-bindgen.wasm") B ($(gz "$out/client-bindgen.wasm") B gzipped)"
if [ -x "$wasm_opt" ]; then
    echo "web: client .wasm after wasm-opt -Oz: $(size "$wasm") B ($(gz "$wasm") B gzipped)"
fi
echo "web: JS glue: $(size "$site/portnet_web_demo.js") B ($(gz "$site/portnet_web_demo.js") B gzipped)"
echo "web: site built in $site"
