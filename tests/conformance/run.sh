#!/usr/bin/env bash
# message-io conformance: message-io 0.19.0's own tests, benches and examples, copied unmodified
# from its published crate, built and run against portnet renamed to `message-io`, and — the
# control, so that the harness cannot fail on its own — against message-io 0.19.0 itself.
#
#   tests/conformance/run.sh                 # both copies, every feature set
#   CONFORMANCE_COPIES=portnet CONFORMANCE_FEATURE_SETS=default tests/conformance/run.sh
#   CONFORMANCE_PORTNET=/path/to/checkout tests/conformance/run.sh   # another portnet tree
#
# For each copy (target/conformance/<copy>: message-io's tests/, benches/, examples/, checked
# byte-identical with `diff -r`, beside a Cargo.toml that tests/conformance/manifest.py
# generates) and each feature set (`default`, then `tcp`, `udp`, `websocket` alone), it builds
# every test, bench and example target. With the default features it also runs message-io's
# integration tests and each example end to end (tests/conformance/examples.sh), inside a
# network namespace of their own so that multicast stays on its loopback. The summary table goes
# to stdout and target/conformance/summary.md; the exit status is non-zero on any failure.
#
# A target that message-io itself does not build with a feature set (its throughput example
# uses tungstenite whatever the features) is "n/a" for both copies: portnet must build what
# message-io builds.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
portnet="${CONFORMANCE_PORTNET:-$repo}"
out="$repo/target/conformance"
copies="${CONFORMANCE_COPIES:-control portnet}"
feature_sets="${CONFORMANCE_FEATURE_SETS:-default tcp udp websocket}"
# One target directory for both copies: the dependencies they share (criterion, serde,
# tungstenite, ...) compile once. Copies run one after the other, so the example binaries that
# target/debug/examples holds are always the current copy's.
export CARGO_TARGET_DIR="$out/build"
mkdir -p "$out"
results="$out/results.tsv"
: >"$results"

say() { printf '\n-- %s\n' "$*"; }
# record COPY FEATURE_SET CHECK STATUS [DETAIL]; STATUS is pass, FAIL, SKIPPED or n/a.
record() {
    local detail
    detail="$(printf '%s' "${5:-}" | tr '\t\n\r' '   ')"
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$detail" >>"$results"
    printf '   %-8s %-10s %-34s %s %s\n' "$1" "$2" "$3" "$4" "$detail"
}

# message-io 0.19.0's published source: portnet's dev-dependency, so cargo has it already.
say "locating message-io 0.19.0's published source"
manifest_path="$(cd "$repo" && cargo metadata --format-version 1 --locked 2>/dev/null | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "message-io" and p["version"] == "0.19.0" and p["source"]:
        print(p["manifest_path"])
')"
if [ -z "$manifest_path" ]; then
    echo "message-io 0.19.0 is not in portnet's dependency graph (cargo metadata)" >&2
    exit 1
fi
source_dir="$(dirname "$manifest_path")"
echo "   $source_dir"

# Network namespaces: the integration tests' multicast test and the multicast example send to
# 239.255.0.1, which would otherwise follow the default route off this machine.
if unshare --net -- true 2>/dev/null; then
    netns=yes
else
    netns=no
    echo "SKIPPED: network namespaces (unshare --net) are not permitted here: the multicast" \
        "test and example are skipped, the other examples run on this machine's loopback" >&2
fi
# in_netns CMD...: runs CMD in a new network namespace with loopback up and multicast routed on
# it; without namespaces, runs it here.
in_netns() {
    if [ "$netns" = yes ]; then
        unshare --net -- bash -c 'ip link set lo up && ip route add 224.0.0.0/4 dev lo && exec "$@"' \
            in_netns "$@"
    else
        "$@"
    fi
}

# The targets of message-io's manifest, as cargo selection flags.
targets="$(python3 -c '
import sys, tomllib
m = tomllib.load(open(sys.argv[1], "rb"))
for kind in ("test", "bench", "example"):
    for t in m.get(kind, []):
        print("--" + kind, t["name"])
' "$source_dir/Cargo.toml")"
[ -n "$targets" ] || { echo "no targets in $source_dir/Cargo.toml" >&2; exit 1; }

features_flags() {
    if [ "$1" = default ]; then echo ""; else echo "--no-default-features --features $1"; fi
}

# prepare COPY: the copied files, the manifest and the lock seed; records the "unmodified" check.
prepare() {
    local copy=$1 dir="$out/$1" lib
    rm -rf "$dir"
    mkdir -p "$dir"
    cp -R "$source_dir/tests" "$source_dir/benches" "$source_dir/examples" "$dir/"
    local identical=pass
    for sub in tests benches examples; do
        diff -r "$source_dir/$sub" "$dir/$sub" >/dev/null || identical=FAIL
    done
    record "$copy" all "files identical to message-io's (diff -r)" "$identical"
    if [ "$copy" = portnet ]; then lib=portnet; else lib=message-io; fi
    python3 "$here/manifest.py" manifest --source "$source_dir" --lib "$lib" --repo "$portnet" \
        >"$dir/Cargo.toml" || return 1
    local seeds=("$source_dir/Cargo.lock")
    [ "$copy" = portnet ] && seeds+=("$portnet/Cargo.lock")
    python3 "$here/manifest.py" lock "${seeds[@]}" >"$dir/Cargo.lock" || return 1
    # The one step that may use the network (crates.io); every build after it is --frozen.
    (cd "$dir" && cargo fetch --quiet)
}

# build COPY SET: every target, one cargo call each, so that one target message-io cannot
# build with this feature set does not hide the others.
build() {
    local copy=$1 set=$2 dir="$out/$1" flags target
    flags="$(features_flags "$set")"
    while read -r target; do
        [ -n "$target" ] || continue
        local log="$out/logs/$copy-$set-build-${target##* }.log"
        # shellcheck disable=SC2086 # flags are words
        if (cd "$dir" && nice -n 10 cargo build --frozen $flags $target) >"$log" 2>&1; then
            record "$copy" "$set" "build ${target#--}" pass
        else
            record "$copy" "$set" "build ${target#--}" FAIL "$(grep -m1 '^error' "$log")"
        fi
    done <<<"$targets"
}

integration_tests() {
    local copy=$1 dir="$out/$1" log="$out/logs/$1-default-integration.log" skip=()
    if [ "$netns" = no ]; then
        skip=(--skip multicast_reuse_addr)
        echo "SKIPPED: $copy: integration test multicast_reuse_addr (no network namespaces)" >&2
    fi
    # `timeout` bounds a hang; the build is done already, so --frozen needs no network.
    if (cd "$dir" && in_netns timeout 600 cargo test --frozen --test integration -- "${skip[@]}") \
        >"$log" 2>&1 && grep -q "^test result: ok" "$log"; then
        record "$copy" default "integration tests" pass "$(grep -m1 -o '[0-9]* passed.*filtered out' "$log")"
    else
        record "$copy" default "integration tests" FAIL "$(grep -m1 '^test result' "$log") (see $log)"
    fi
}

examples() {
    local copy=$1 log="$out/logs/$1-default-examples.log"
    local work="$out/run-$copy"
    rm -rf "$work"
    mkdir -p "$work"
    in_netns env NETNS="$netns" bash "$here/examples.sh" "$CARGO_TARGET_DIR/debug/examples" \
        "$work" >"$log" 2>&1
    # examples.sh writes "CHECK<TAB>STATUS<TAB>DETAIL" lines.
    while IFS=$'\t' read -r check status detail; do
        record "$copy" default "$check" "$status" "$detail"
    done <"$work/results.tsv"
    [ -s "$work/results.tsv" ] || record "$copy" default "examples" FAIL "no result (see $log)"
}

mkdir -p "$out/logs"
for copy in $copies; do
    say "$copy: message-io's tests, benches and examples against $([ "$copy" = portnet ] && echo "portnet ($portnet)" || echo "message-io 0.19.0")"
    if ! prepare "$copy"; then
        record "$copy" all "manifest and dependencies" FAIL "cargo fetch failed"
        continue
    fi
    for set in $feature_sets; do
        build "$copy" "$set"
        if [ "$set" = default ]; then
            integration_tests "$copy"
            examples "$copy"
        fi
    done
done

# A target message-io cannot build with a single feature is n/a for both copies, not a
# failure; with the default features the control must build everything.
python3 - "$results" "$out/summary.md" <<'EOF'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
status = {(c, s, k): (st, d) for c, s, k, st, d in rows}
checks = []
for c, s, k, st, d in rows:
    if (s, k) not in checks:
        checks.append((s, k))
failed = passed = skipped = 0
lines = [
    "| feature set | check | portnet | message-io 0.19.0 (control) |",
    "|---|---|---|---|",
]
for s, k in checks:
    cells = []
    control = status.get(("control", s, k))
    for copy in ("portnet", "control"):
        st, d = status.get((copy, s, k), ("not run", ""))
        if k.startswith("build ") and s != "default" and control and control[0] == "FAIL":
            st = "n/a" if st == "FAIL" or copy == "control" else st + " (message-io: does not build)"
            d = "message-io itself does not build it: " + control[1] if copy == "control" else d
        failed += st == "FAIL"
        passed += st.startswith("pass")
        skipped += st == "SKIPPED"
        cells.append(st + (f": {d}" if d and st != "pass" else ""))
    lines.append(f"| {s} | {k} | {cells[0]} | {cells[1]} |")
table = "\n".join(lines)
with open(sys.argv[2], "w") as f:
    f.write("# message-io conformance (tests/conformance/run.sh)\n\n" + table + "\n")
print("\n" + table)
print(f"\nconformance: {passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed else 0)
EOF
