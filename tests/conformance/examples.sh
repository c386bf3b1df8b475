#!/usr/bin/env bash
# Runs message-io 0.19.0's five examples end to end, as their READMEs tell a user to, and checks
# what they print: tests/conformance/run.sh calls it for each copy, inside a network namespace
# of its own when it can (NETNS=yes; the ports the examples fix, 5000, 3005 and 3010, are then
# this run's own).
#
#   examples.sh BIN_DIR WORK_DIR
#
# Each server and client is a process of its own, under `timeout`; a check waits for the lines
# that prove the example worked (polling its log, bounded), then stops the processes that would
# run forever. Results go to WORK_DIR/results.tsv as "CHECK<TAB>STATUS<TAB>DETAIL".
set -uo pipefail

bin="$1"
work="$2"
results="$work/results.tsv"
: >"$results"
# How long one expected line may take to appear.
WAIT_SECS=${WAIT_SECS:-30}
pids=()

# result CHECK STATUS [DETAIL]: one line each, whatever DETAIL holds (a log's tail).
result() {
    local detail
    detail="$(printf '%s' "${3:-}" | tr '\t\n\r' '   ')"
    printf '%s\t%s\t%s\n' "$1" "$2" "$detail" >>"$results"
    echo "== $1: $2 $detail"
}

# start NAME [DIR] -- CMD...: runs CMD in the background (in DIR), output in $work/NAME.log.
start() {
    local name=$1 dir=$work
    shift
    if [ "$1" != -- ]; then dir=$1; shift; fi
    shift
    (cd "$dir" && exec timeout 300 "$@") >"$work/$name.log" 2>&1 &
    pids+=($!)
    eval "pid_$name=$!"
}

# expect NAME TEXT [COUNT]: waits until NAME's log has COUNT (default 1) lines containing TEXT.
expect() {
    local name=$1 text=$2 count=${3:-1} deadline=$((SECONDS + WAIT_SECS)) pid
    pid=$(eval "echo \${pid_$name}")
    while [ "$(grep -cF -- "$text" "$work/$name.log" 2>/dev/null)" -lt "$count" ]; do
        if ! kill -0 "$pid" 2>/dev/null &&
            [ "$(grep -cF -- "$text" "$work/$name.log" 2>/dev/null)" -lt "$count" ]; then
            failure="$name ended without printing '$text' ($count×): $(tail -c 300 "$work/$name.log")"
            return 1
        fi
        if [ $SECONDS -ge $deadline ]; then
            failure="$name did not print '$text' ($count×) within ${WAIT_SECS}s"
            return 1
        fi
        sleep 0.1
    done
}

# stop NAME: ends NAME's process (it would run forever) and waits for it.
stop() {
    local pid
    pid=$(eval "echo \${pid_$1:-}")
    [ -n "$pid" ] && kill "$pid" 2>/dev/null
    [ -n "$pid" ] && wait "$pid" 2>/dev/null
    return 0
}

# exits NAME: waits (bounded) for NAME to end by itself with status 0.
exits() {
    local pid status
    pid=$(eval "echo \${pid_$1}")
    local deadline=$((SECONDS + WAIT_SECS))
    while kill -0 "$pid" 2>/dev/null; do
        if [ $SECONDS -ge $deadline ]; then
            failure="$1 did not exit within ${WAIT_SECS}s"
            return 1
        fi
        sleep 0.1
    done
    wait "$pid"
    status=$?
    [ $status -eq 0 ] || { failure="$1 exited with status $status"; return 1; }
}

stop_all() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
    pids=()
}
trap stop_all EXIT

# check NAME FUNCTION: runs a scenario; it fails at its first unmet expectation.
check() {
    failure=""
    if "$2"; then result "$1" pass; else result "$1" FAIL "$failure"; fi
    stop_all
    for log in "$work"/*.log; do
        [ -e "$log" ] || continue
        echo "--- $1: $(basename "$log")"
        cat "$log"
        mv "$log" "$log.$1"
    done
}

# ping-pong: a server and a client; the client pings every second, the server counts per client.
ping_pong() {
    local transport=$1 port target
    start server -- "$bin/ping-pong" server "$transport" 0
    expect server "Server running at" || return 1
    # The whole line, port included, before the client starts (bounded like `expect`).
    local deadline=$((SECONDS + WAIT_SECS))
    until port=$(grep -oE 'Server running at [^ ]+:[0-9]+ by' "$work/server.log" |
        grep -oE '[0-9]+ by' | grep -oE '^[0-9]+') && [ -n "$port" ]; do
        [ $SECONDS -lt $deadline ] ||
            { failure="no port in the server's line: $(head -c 300 "$work/server.log")"; return 1; }
        sleep 0.1
    done
    case $transport in
        ws) target="ws://127.0.0.1:$port/" ;;
        *) target="127.0.0.1:$port" ;;
    esac
    start client -- "$bin/ping-pong" client "$transport" "$target"
    expect client "Connected to server at" || return 1
    if [ "$transport" = udp ]; then
        # No connection: the server answers an unknown pong to each ping.
        expect client "Pong from server" 2 && expect server "Ping from 127.0.0.1:" 2 || return 1
    else
        expect server "(total clients: 1)" &&
            expect client "Pong from server: 2 times" &&
            expect server ", 2 times" || return 1
        stop client
        expect server "disconnected (total clients: 0)" || return 1
    fi
}
ping_pong_tcp() { ping_pong tcp; }
ping_pong_udp() { ping_pong udp; }
ping_pong_ws() { ping_pong ws; }

# multicast: each instance announces its name to 239.255.0.1:3010, then listens there.
multicast() {
    start alice -- "$bin/multicast" alice
    expect alice "Notifying on the network" || return 1
    # Each announces before it listens, so it hears those who start after it.
    start bob -- "$bin/multicast" bob
    expect bob "Notifying on the network" && expect alice "bob greets to the network!" || return 1
    start carol -- "$bin/multicast" carol
    expect alice "carol greets to the network!" && expect bob "carol greets to the network!"
}

# distributed: a discovery server; participants register, learn of each other and greet directly.
distributed() {
    start server -- "$bin/distributed" discovery-server
    expect server "Discovery server running at" || return 1
    start alice -- "$bin/distributed" participant alice
    expect server "Added participant 'alice'" &&
        expect alice "Participant list received (0 participants)" || return 1
    start bob -- "$bin/distributed" participant bob
    expect server "Added participant 'bob'" &&
        expect bob "Participant list received (1 participants)" &&
        expect alice "New participant 'bob' in the network" &&
        expect alice "'bob' says: Hi 'alice', I see you in the participant list" &&
        expect bob "'alice' says: Hi 'bob', welcome to the network!" || return 1
    stop bob
    expect server "Removed participant 'bob'" &&
        expect alice "Removed participant 'bob' from the network" || return 1
    stop server
    expect alice "Discovery server disconnected, closing" && exits alice
}

# file-transfer: the sender sends a file in 64 KiB chunks; the receiver writes <name>.recv.
file_transfer() {
    mkdir -p "$work/received"
    head -c $((5 * 1024 * 1024 + 12345)) /dev/urandom >"$work/payload.bin"
    start receiver "$work/received" -- "$bin/file-transfer" recv
    expect receiver "Receiver running by TCP at" || return 1
    start sender -- "$bin/file-transfer" send "$work/payload.bin"
    expect sender "File sent!" && exits sender &&
        expect receiver "File 'payload.bin' received!" || return 1
    cmp -s "$work/payload.bin" "$work/received/payload.bin.recv" ||
        { failure="the received file differs from the sent one"; return 1; }
}

# throughput: 1 GB through each transport, message-io's then the plain sockets'; it ends by
# itself. Only message-io's four lines concern the library under test: once they are printed the
# run has proved it; the native-socket half (the same code on both copies) is cut short.
throughput() {
    start throughput -- "$bin/throughput"
    local n transport
    for n in 1 2 3 4; do
        WAIT_SECS=${THROUGHPUT_WAIT_SECS:-180} expect throughput "Throughput:" "$n" || return 1
    done
    for transport in Udp Tcp FramedTcp Ws; do
        grep -q "message-io $transport:.*Throughput:" "$work/throughput.log" ||
            { failure="no throughput line for $transport"; return 1; }
    done
}

check "example ping-pong tcp" ping_pong_tcp
check "example ping-pong udp" ping_pong_udp
check "example ping-pong ws" ping_pong_ws
if [ "${NETNS:-no}" = yes ]; then
    check "example multicast" multicast
else
    echo "SKIPPED: multicast example (no network namespaces)" >&2
    result "example multicast" SKIPPED "no network namespaces"
fi
check "example distributed" distributed
check "example file-transfer" file_transfer
check "example throughput" throughput
