#!/usr/bin/env bash
# WebSocket conformance: the Autobahn|Testsuite cases 1–7 (framing, pings, reserved bits, opcodes,
# fragmentation, UTF-8, close handshake), run by kosoku (the suite's cases on Python 3), against
# two echo servers: the portnet one (examples/ws-echo.rs) and plain tungstenite
# (examples/tungstenite-echo.rs), the baseline. The compression cases (12, 13) and the others
# beyond 7 are not run.
#
# Fails if portnet fails any case, or does worse than tungstenite on any case (e.g. tungstenite
# OK, portnet NON-STRICT). Reports (JSON and HTML per case, index.json) and server logs stay in
# target/autobahn/. Needs python3 (with venv) and PyPI; installs python3-venv on Debian if missing.
#
#   bash tests/autobahn.sh
set -euo pipefail
cd "$(dirname "$0")/.."

KOSOKU_VERSION=0.1.0
CASES=(1 2 3 4 5 6 7)
OUT=target/autobahn
VENV=$OUT/venv

die() {
    printf 'autobahn: FAILED: %s\n' "$*" >&2
    exit 1
}
note() { printf 'autobahn: %s\n' "$*"; }

mkdir -p "$OUT"

# --- kosoku, in a venv of its own ---------------------------------------------------------------
command -v python3 >/dev/null || {
    note "installing python3"
    if [ "$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3 python3-venv >/dev/null
} || die "python3 is missing and could not be installed"

have_kosoku() {
    "$VENV/bin/python" -c "import importlib.metadata as m, sys; \
sys.exit(m.version('kosoku') != '$KOSOKU_VERSION')" 2>/dev/null
}

if ! have_kosoku; then
    rm -rf "$VENV"
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        # Debian's python3 comes without venv/ensurepip.
        note "installing python3-venv"
        rm -rf "$VENV"
        if [ "$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi
        { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3-venv >/dev/null; } ||
            die "python3 -m venv does not work and python3-venv could not be installed"
        python3 -m venv "$VENV" || die "python3 -m venv failed even with python3-venv"
    fi
    note "installing kosoku==$KOSOKU_VERSION into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "kosoku==$KOSOKU_VERSION" || die "pip could not install kosoku==$KOSOKU_VERSION"
    have_kosoku || die "kosoku==$KOSOKU_VERSION is not importable after installing it"
fi
PYTHON=$VENV/bin/python
KOSOKU=$VENV/bin/kosoku
[ -x "$KOSOKU" ] || die "$KOSOKU (kosoku's console script) is missing"

# --- the two echo servers -----------------------------------------------------------------------
note "building examples ws-echo and tungstenite-echo"
cargo build --locked --quiet --example ws-echo --example tungstenite-echo ||
    die "cargo could not build the echo servers"
TARGET_DIR=$(cargo metadata --locked --format-version 1 --no-deps |
    "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
EXAMPLES=$TARGET_DIR/debug/examples

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

include=()
for c in "${CASES[@]}"; do include+=(-i "$c.*"); done

# run NAME: starts examples/NAME on port 0, runs the cases against it into $OUT/NAME/.
run() {
    local name=$1 bin=$EXAMPLES/$1 log=$OUT/$1.log err=$OUT/$1.stderr.log
    [ -x "$bin" ] || die "$bin was not built"
    rm -rf "${OUT:?}/$name"
    "$bin" >"$log" 2>"$err" &
    local pid=$!
    PIDS+=("$pid")
    local line="" i
    for i in $(seq 100); do
        line=$(head -n1 "$log")
        [ -n "$line" ] && break
        kill -0 "$pid" 2>/dev/null || die "$name exited before listening; see $err"
        sleep 0.1
    done
    [[ $line =~ ^listening\ on\ 127\.0\.0\.1:([0-9]+)$ ]] ||
        die "$name did not print 'listening on 127.0.0.1:PORT' within 10 s (got: '$line')"
    local port=${BASH_REMATCH[1]}
    note "running cases ${CASES[*]} against $name (ws://127.0.0.1:$port)"
    local start=$SECONDS status=0
    # kosoku exits non-zero when a case fails; the comparison below judges that. Four cases at a
    # time: a case the server gets wrong can wait up to 10 s for a close that never comes.
    timeout 600 "$KOSOKU" -m fuzzingclient "ws://127.0.0.1:$port" "${include[@]}" \
        -x '12.*' -x '13.*' -p 4 -o "$OUT/$name" >"$OUT/$name.kosoku.log" 2>&1 || status=$?
    note "$name: kosoku exited with $status after $((SECONDS - start)) s (log: $OUT/$name.kosoku.log)"
    [ "$status" -eq 124 ] && die "kosoku did not finish against $name within 600 s"
    [ -s "$OUT/$name/index.json" ] ||
        die "kosoku wrote no report for $name; see $OUT/$name.kosoku.log"
    kill -0 "$pid" 2>/dev/null || die "$name died during the run; see $err"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

run tungstenite-echo
run ws-echo

# --- compare ------------------------------------------------------------------------------------
"$PYTHON" - "$OUT" "${CASES[@]}" <<'EOF'
import json, os, sys

out, majors = sys.argv[1], set(sys.argv[2:])
SERVERS = ("tungstenite-echo", "ws-echo")
# Lower is better. INFORMATIONAL cases have no right answer; UNIMPLEMENTED, FAILED and ERROR do
# not pass (kosoku's own rule: both verdicts must be OK, NON-STRICT or INFORMATIONAL).
RANK = {"OK": 0, "INFORMATIONAL": 0, "NON-STRICT": 1, "UNIMPLEMENTED": 2, "FAILED": 3, "ERROR": 3}
RANK_CLOSE = {"OK": 0, "INFORMATIONAL": 0}  # anything else (UNCLEAN, WRONG CODE, ...) fails
PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}

def load(server):
    index = json.load(open(os.path.join(out, server, "index.json")))
    if len(index) != 1:
        sys.exit(f"autobahn: FAILED: {server}: expected one agent in index.json, got {list(index)}")
    (cases,) = index.values()
    return cases

def key(case_id):
    return [int(p) for p in case_id.split(".")]

results = {s: load(s) for s in SERVERS}
ids = sorted(set().union(*results.values()), key=key)
problems = []
if not ids:
    problems.append("no cases ran")
stray = [c for c in ids if c.split(".")[0] not in majors]
if stray:
    problems.append(f"cases outside {sorted(majors, key=int)} ran: {stray}")
for s in SERVERS:
    missing = [c for c in ids if c not in results[s]]
    if missing:
        problems.append(f"{s}: no result for {missing}")

def verdict(server, case_id):
    r = results[server].get(case_id)
    return ("MISSING", "MISSING") if r is None else (r["behavior"], r["behaviorClose"])

def rank(v):
    return (RANK.get(v[0], 3), RANK_CLOSE.get(v[1], 3))

labels = sorted({v for s in SERVERS for c in ids for v in verdict(s, c)},
                key=lambda v: (RANK.get(v, 3), v))
print(f"\nAutobahn cases {', '.join(sorted(majors, key=int))}: {len(ids)} cases")
print(f"{'verdict':<24}" + "".join(f"{s:>18}" for s in SERVERS))
for what, col in (("behavior", 0), ("close", 1)):
    for label in labels:
        counts = [sum(verdict(s, c)[col] == label for c in ids) for s in SERVERS]
        if any(counts):
            print(f"{what + ' ' + label:<24}" + "".join(f"{n:>18}" for n in counts))

differ = [c for c in ids if verdict(SERVERS[0], c) != verdict(SERVERS[1], c)]
if differ:
    print(f"\ncases that differ ({len(differ)}):")
    print(f"{'case':<10}" + "".join(f"{s:>30}" for s in SERVERS))
    for c in differ[:40]:
        print(f"{c:<10}" + "".join(f"{'/'.join(verdict(s, c)):>30}" for s in SERVERS))
    if len(differ) > 40:
        print(f"... and {len(differ) - 40} more")
else:
    print("\nno case differs between the two servers")

codes = [c for c in ids if len({results[s].get(c, {}).get("remoteCloseCode") for s in SERVERS}) > 1]
if codes:
    print(f"close codes sent differ (not judged) on {len(codes)} cases: {codes[:20]}")

base, ours = SERVERS
for c in ids:
    b, p = verdict(base, c), verdict(ours, c)
    detail = results[ours].get(c, {}).get("reportfile", "")
    if p[0] not in PASSING or p[1] not in PASSING:
        problems.append(f"{ours} fails case {c}: {'/'.join(p)} ({os.path.join(out, ours, detail)})")
    elif any(x > y for x, y in zip(rank(p), rank(b))):
        problems.append(f"{ours} does worse than {base} on case {c}: {'/'.join(p)} vs "
                        f"{'/'.join(b)} ({os.path.join(out, ours, detail)})")
bad_base = [c for c in ids if not set(verdict(base, c)) <= PASSING]
if bad_base:
    print(f"\nnote: the baseline {base} itself does not pass {bad_base}")
print(f"\nreports: {out}/{{{','.join(SERVERS)}}}/index.html")
if problems:
    shown = problems[:25] + ([f"... and {len(problems) - 25} more"] if len(problems) > 25 else [])
    print(f"\nautobahn: FAILED ({len(problems)} problems):", *shown, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print(f"autobahn: ok: {ours} passes every case and does no worse than {base}")
EOF
