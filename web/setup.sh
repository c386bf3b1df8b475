# Sourced by web/build.sh, web/run.sh and tests/browser.sh: installs what the browser side
# needs when it is missing, and stops with a clear message when it cannot. Never skips.
#
# Expects to run from the repository root. Honours CARGO_TARGET_DIR.

web_fail() {
    printf '\nweb: FAILED: %s\n' "$*" >&2
    exit 1
}

# The wasm-bindgen version in Cargo.lock: the CLI must be exactly this one.
wasm_bindgen_version() {
    awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}

ensure_wasm_target() {
    command -v rustup >/dev/null || web_fail "rustup is needed to add the wasm32-unknown-unknown target"
    rustup target list --installed | grep -qx wasm32-unknown-unknown ||
        rustup target add wasm32-unknown-unknown ||
        web_fail "cannot add the wasm32-unknown-unknown target"
}

ensure_wasm_bindgen() {
    local want have
    want=$(wasm_bindgen_version)
    [ -n "$want" ] || web_fail "no wasm-bindgen in Cargo.lock"
    have=$(wasm-bindgen-test-runner --version 2>/dev/null | awk '{print $2}' || true)
    if [ "$have" != "$want" ] || [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$want" ]; then
        echo "web: installing wasm-bindgen-cli $want (found '${have:-none}'); a few minutes the first time"
        # Not --locked: a locked dependency of the CLI is missing from the registry here.
        cargo install wasm-bindgen-cli --version "$want" --no-default-features ||
            web_fail "cannot install wasm-bindgen-cli $want"
    fi
    have=$(wasm-bindgen-test-runner --version 2>/dev/null | awk '{print $2}' || true)
    [ "$have" = "$want" ] ||
        web_fail "wasm-bindgen-test-runner is '${have:-missing}', Cargo.lock wants $want (is ~/.cargo/bin on PATH?)"
}

ensure_chromium() {
    if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
        echo "web: installing Debian's chromium and chromium-driver"
        local sudo=""
        [ "$(id -u)" = 0 ] || sudo="sudo -n"
        $sudo apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver ||
            web_fail "cannot install chromium and chromium-driver with apt-get (as root)"
    fi
    local browser driver
    browser=$(chromium --version 2>/dev/null | grep -o '[0-9][0-9.]*' | head -1 || true)
    driver=$(chromedriver --version 2>/dev/null | grep -o '[0-9][0-9.]*' | head -1 || true)
    [ -n "$browser" ] || web_fail "chromium does not start: chromium --version failed"
    [ "${browser%%.*}" = "${driver%%.*}" ] ||
        web_fail "chromium $browser and chromedriver ${driver:-missing} differ"
}

# playwright-core (drives Debian's Chromium; no browser download) and binaryen's wasm-opt,
# at the versions of web/e2e/package-lock.json, into web/e2e/node_modules.
ensure_npm_packages() {
    command -v npm >/dev/null || web_fail "npm (Node.js) is needed for the page test and wasm-opt"
    if [ ! -x web/e2e/node_modules/.bin/wasm-opt ] || [ ! -d web/e2e/node_modules/playwright-core ]; then
        (cd web/e2e && npm ci --no-audit --no-fund) || web_fail "npm ci in web/e2e failed"
    fi
}
