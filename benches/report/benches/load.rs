//! Small messages and fan-in: raw std sockets beside portnet beside message-io 0.19, in the
//! same run, on loopback. The workloads are in `benches/report/src/lib.rs`.
//!
//! ```text
//! cargo bench -p portnet-perf-report --bench load                  # full run
//! PORTNET_BENCH_QUICK=1 cargo bench -p portnet-perf-report --bench load   # smoke run
//! cargo bench -p portnet-perf-report --bench load -- small/FramedTcp      # one group
//! ```
//!
//! - `small/<transport>`: per iteration, a round of 64-byte messages sent one way (see
//!   `one_way`): criterion's throughput is in messages (elements) per second.
//! - `fanin/<transport>` (Tcp, FramedTcp, Ws): 1 000 raw clients connected to one server, each
//!   sending a burst of 64-byte messages per iteration.
//!
//! Within a group, `raw`, `portnet` and `message-io` run one after the other. Criterion keeps
//! each median in `target/criterion/<group>/<member>/new/estimates.json`, where the report
//! (`cargo run --release -p portnet-perf-report`) reads it.

use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput, measurement::WallTime};
use portnet_perf_report::{FanIn, Kind, Lib, OneWay, fan_in, one_way, stall_reason};
use std::time::{Duration, Instant};

const SIZE: usize = 64;
const CLIENTS: usize = 1000;

fn quick() -> bool {
    std::env::args().any(|arg| arg == "--quick")
        || std::env::var_os("PORTNET_BENCH_QUICK").is_some_and(|v| v != "0" && !v.is_empty())
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group.sampling_mode(SamplingMode::Flat);
    if quick() {
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(50));
        group.measurement_time(Duration::from_millis(300));
    } else {
        group.sample_size(20);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(4));
    }
}

/// Runs one member on a subject made on first use (not at all when a filter skips it) and
/// dropped before the next member starts.
fn member<T: ?Sized>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    lib: Lib,
    make: impl Fn() -> Box<T>,
    iteration: impl Fn(&mut T),
) {
    let mut subject: Option<Box<T>> = None;
    group.bench_function(lib.name(), |b| {
        let subject = subject.get_or_insert_with(&make);
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                iteration(subject);
            }
            start.elapsed()
        });
    });
}

fn small(c: &mut Criterion) {
    let round: u64 = if quick() { 4096 } else { 65536 };
    for kind in Kind::ALL {
        let mut group = c.benchmark_group(format!("small/{}", kind.name()));
        configure(&mut group);
        let round = round.div_ceil(kind.ack_step()) * kind.ack_step();
        group.throughput(Throughput::Elements(round));
        // Skipped members are named in the report (`stall_reason`).
        for lib in Lib::ALL.into_iter().filter(|&lib| stall_reason(lib, kind).is_none()) {
            member(
                &mut group,
                lib,
                || one_way(lib, kind, SIZE),
                |s: &mut (dyn OneWay + 'static)| s.run(round),
            );
        }
        group.finish();
    }
}

fn fanin(c: &mut Criterion) {
    let burst: u64 = if quick() { 16 } else { 100 };
    for kind in Kind::CONNECTED {
        let mut group = c.benchmark_group(format!("fanin/{}", kind.name()));
        configure(&mut group);
        if quick() {
            group.measurement_time(Duration::from_millis(500));
        }
        group.throughput(Throughput::Elements(CLIENTS as u64 * burst));
        for lib in Lib::ALL.into_iter().filter(|&lib| stall_reason(lib, kind).is_none()) {
            member(
                &mut group,
                lib,
                || fan_in(lib, kind, CLIENTS, burst, SIZE),
                |s: &mut (dyn FanIn + 'static)| s.burst(),
            );
        }
        group.finish();
    }
}

criterion::criterion_group!(benches, small, fanin);
criterion::criterion_main!(benches);
