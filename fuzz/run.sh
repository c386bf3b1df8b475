#!/usr/bin/env bash
# Runs every fuzz target for a short time (CI) or longer (on demand):
#
#   bash fuzz/run.sh               # 20 s per target
#   bash fuzz/run.sh 600 sim_ops   # 10 minutes of one target
#
# Installs nightly and cargo-fuzz if they are missing. Each target starts from its committed
# seed corpus (fuzz/corpus/<target>, kept small) and writes what it finds to a working corpus
# under fuzz/target/corpus/<target> (not committed). A crash stops the run with libFuzzer's
# report and leaves the input in fuzz/artifacts/<target>/; replay it with
# `cargo +nightly fuzz run -O -a <target> <file>`, minimize it with `cargo +nightly fuzz tmin`,
# and turn it into a regression test in tests/fuzz_regressions.rs.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-20}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(framed_decoder sim_ops ws_receive)
fi

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# Release code with debug assertions on (-O -a), AddressSanitizer (cargo-fuzz's default).
cargo +nightly fuzz build -O -a

status=0
for target in "${targets[@]}"; do
    printf '\n-- fuzzing %s for %s s\n' "$target" "$seconds"
    mkdir -p "target/corpus/$target" "corpus/$target"
    log="target/fuzz-$target.log"
    # -timeout: one input running longer than this is a hang, reported as a crash.
    if cargo +nightly fuzz run -O -a "$target" "target/corpus/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=30 -print_final_stats=1 >"$log" 2>&1; then
        grep -aE '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true
        grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' "$log" || true
    else
        status=1
        tail -n 60 "$log"
        echo "fuzz target $target FAILED (full log: fuzz/$log; input in fuzz/artifacts/$target/)"
    fi
done
exit $status
