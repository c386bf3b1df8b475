//! What the criterion benchmarks share (`benches/transports.rs`, `benches/wss.rs`): the run's
//! sizes and times, the watchdog, and how a group's members are run.
#![allow(dead_code)] // each bench uses its own part

pub mod library;

use criterion::{BenchmarkGroup, SamplingMode, measurement::WallTime};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Anything that blocks longer than this is a bug (a lost message, a dead peer).
pub const STALL: Duration = Duration::from_secs(20);

pub const LOCALHOST: &str = "127.0.0.1:0";

/// Sizes and times of one run.
#[derive(Clone, Copy)]
pub struct Plan {
    pub quick: bool,
    /// Messages per throughput round (one criterion iteration).
    pub round_messages: usize,
}

impl Plan {
    /// Quick with `--quick` or `PORTNET_BENCH_QUICK=1` (CI's smoke run).
    pub fn from_env() -> Self {
        let quick = std::env::args().any(|arg| arg == "--quick")
            || std::env::var_os("PORTNET_BENCH_QUICK").is_some_and(|v| v != "0" && !v.is_empty());
        Plan { quick, round_messages: if quick { 16 } else { 256 } }
    }

    pub fn configure(self, group: &mut BenchmarkGroup<'_, WallTime>, throughput: bool) {
        if self.quick {
            // With `--quick` criterion stops at `measurement_time` at the latest.
            group.sample_size(10);
            group.warm_up_time(Duration::from_millis(50));
            group.measurement_time(Duration::from_millis(300));
        } else if throughput {
            group.sampling_mode(SamplingMode::Flat);
            group.sample_size(20);
            group.warm_up_time(Duration::from_secs(1));
            group.measurement_time(Duration::from_secs(4));
        } else {
            group.sample_size(100);
            group.warm_up_time(Duration::from_secs(1));
            group.measurement_time(Duration::from_secs(3));
        }
    }
}

/// Ends the process when a waiting client stops making progress for [`STALL`]: a round trip's
/// wait then blocks without a timeout, as the plain socket's blocking `recv` does. A timed wait
/// arms a kernel timer each time, which costs the side that does it about 0.15 µs a wait.
pub struct Watchdog {
    progress: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    pub fn start(what: &'static str) -> Self {
        let progress = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let (seen, finished) = (progress.clone(), done.clone());
        let thread = thread::spawn(move || {
            let mut last = (seen.load(Ordering::Relaxed), Instant::now());
            while !finished.load(Ordering::Acquire) {
                thread::park_timeout(Duration::from_secs(1));
                let now = seen.load(Ordering::Relaxed);
                if now != last.0 {
                    last = (now, Instant::now());
                } else if last.1.elapsed() > STALL && !finished.load(Ordering::Acquire) {
                    eprintln!("{what}: no progress for {STALL:?}; a message was lost");
                    std::process::abort();
                }
            }
        });
        Watchdog { progress, done, thread: Some(thread) }
    }

    /// Reports progress: `count` only grows.
    pub fn progress(&self, count: u64) {
        self.progress.store(count, Ordering::Relaxed);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// One side of a throughput measurement: sends one round and waits until it is received.
pub trait Blaster {
    /// Sends round `round` (rounds are numbered so that late datagrams of an earlier one can
    /// be told apart).
    fn round(&mut self, round: u64);
}

/// Runs `iters` rounds; `next_round` numbers rounds across calls.
pub fn measure_rounds(blaster: &mut dyn Blaster, next_round: &mut u64, iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        blaster.round(*next_round);
        *next_round += 1;
    }
    start.elapsed()
}

/// One side of a latency measurement: sends one byte and waits for it to come back.
pub trait Pinger {
    fn round_trip(&mut self);
}

pub fn measure_latency(pinger: &mut dyn Pinger, iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        pinger.round_trip();
    }
    start.elapsed()
}

pub fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

/// Runs one member of a group on a connection made once, on first use (not at all when a
/// filter skips it), and closed before the next member starts.
pub fn member<T: ?Sized>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    make: impl Fn() -> Box<T>,
    measure: impl Fn(&mut T, u64) -> Duration,
) {
    let mut subject: Option<Box<T>> = None;
    group.bench_function(name, |b| {
        let subject = subject.get_or_insert_with(&make);
        b.iter_custom(|iters| measure(subject, iters));
    });
}
