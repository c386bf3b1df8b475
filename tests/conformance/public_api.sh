#!/usr/bin/env bash
# The public API of message-io 0.19.0 beside portnet's, by name (tests/conformance/public_api.py
# on rustdoc's JSON, which needs nightly). Fails when the items of message-io that portnet lacks
# are not exactly those listed, with reasons, in tests/conformance/api-missing.txt; writes both
# lists (lacking, added) to target/conformance/api-{missing,added}.txt.
#
#   tests/conformance/public_api.sh
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="$repo/target/conformance"
mkdir -p "$out"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
# A target directory of its own: nightly artifacts would evict stable ones.
export CARGO_TARGET_DIR="$repo/target/public-api"
cd "$repo"
for crate in message-io@0.19.0 portnet; do
    cargo +nightly rustdoc --quiet --locked --lib -p "$crate" -- -Z unstable-options \
        --output-format json
done
python3 "$here/public_api.py" "$CARGO_TARGET_DIR/doc/message_io.json" \
    "$CARGO_TARGET_DIR/doc/portnet.json" --missing-out "$out/api-missing.txt" \
    --added-out "$out/api-added.txt" | tail -1
expected="$(grep -v '^#' "$here/api-missing.txt" | sed 's/  #.*//' | grep -v '^$' | sort)"
measured="$(sed 's/  (.*//' "$out/api-missing.txt" | grep -v '^$' | sort)"
if [ "$expected" != "$measured" ]; then
    echo "public API: message-io's items that portnet lacks differ from tests/conformance/api-missing.txt:" >&2
    diff <(echo "$expected") <(echo "$measured") >&2 || true
    exit 1
fi
echo "public API: message-io items portnet lacks: $(echo "$measured" | wc -l), each listed with its reason in tests/conformance/api-missing.txt; $(grep -c . "$out/api-added.txt") items added (target/conformance/api-added.txt)"
