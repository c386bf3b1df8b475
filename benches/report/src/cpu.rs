//! Instructions per message: callgrind on `portnet-perf-report cpu <lib> <transport> <n>`.

use crate::{Plan, say, subject, target_dir};
use portnet_perf_report::{Kind, Lib, stall_reason};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;

/// The median of the repeats, the lowest and the highest.
pub type Spread = (f64, f64, f64);

#[derive(Default)]
pub struct Cpu {
    /// Instructions per message, or why there is none.
    pub per_message: HashMap<(Lib, Kind), Result<Spread, String>>,
    pub note: Option<String>,
}

pub fn cpu_per_message(plan: &Plan) -> Cpu {
    let valgrind = Command::new("valgrind").arg("--version").output();
    if !valgrind.is_ok_and(|o| o.status.success()) {
        return Cpu {
            note: Some("valgrind is not installed: not measured".into()),
            ..Cpu::default()
        };
    }
    let dir = target_dir().join("perf-report").join("callgrind");
    std::fs::create_dir_all(&dir).expect("create the callgrind directory");
    let exe = subject();
    let cases: Vec<(Lib, Kind)> = Kind::ALL
        .into_iter()
        .flat_map(|kind| Lib::ALL.map(|lib| (lib, kind)))
        .filter(|&(lib, kind)| stall_reason(lib, kind).is_none())
        .collect();
    say(format!("callgrind: {} cases × 2 runs, {:?} messages", cases.len(), plan.cpu_runs));
    // Two at a time: instruction counts do not depend on what else runs.
    let (tx, rx) = mpsc::channel();
    let queue = std::sync::Mutex::new(cases.clone().into_iter());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let (tx, queue, dir, exe) = (tx.clone(), &queue, &dir, &exe);
            scope.spawn(move || {
                loop {
                    let next = queue.lock().unwrap().next();
                    let Some((lib, kind)) = next else { break };
                    let count = |n: u64| callgrind(exe, dir, lib, kind, n);
                    let messages = round_up(plan.cpu_runs.1, kind.ack_step())
                        - round_up(plan.cpu_runs.0, kind.ack_step());
                    let result = (0..plan.cpu_repeats)
                        .map(|_| {
                            let base = count(plan.cpu_runs.0)?;
                            let total = count(plan.cpu_runs.1)?;
                            Ok((total as f64 - base as f64) / messages as f64)
                        })
                        .collect::<Result<Vec<f64>, String>>()
                        .map(|mut runs| {
                            runs.sort_by(f64::total_cmp);
                            (runs[runs.len() / 2], runs[0], runs[runs.len() - 1])
                        });
                    eprintln!(
                        "   {} {}: {result:.0?} instructions per message (median, min, max)",
                        lib.name(),
                        kind.name()
                    );
                    let _ = tx.send(((lib, kind), result));
                }
            });
        }
    });
    drop(tx);
    Cpu { per_message: rx.into_iter().collect(), note: None }
}

pub fn round_up(n: u64, step: u64) -> u64 {
    n.div_ceil(step) * step
}

/// Total instructions of one run of `cpu lib kind messages` under callgrind.
pub fn callgrind(
    exe: &Path,
    dir: &Path,
    lib: Lib,
    kind: Kind,
    messages: u64,
) -> Result<u64, String> {
    let out = dir.join(format!("callgrind.{}.{}.{messages}.out", lib.name(), kind.name()));
    let output = Command::new("valgrind")
        .arg("--tool=callgrind")
        // Valgrind runs one thread at a time. Its default hand-over lets the sender run ahead
        // by varying amounts, so a read takes a varying number of messages and totals varied
        // by ±10 % between runs here; fair scheduling alternates threads in a fixed order:
        // the same total to 0.1 % (Ws: a few %, each read there zero-fills tungstenite's
        // buffer, 4 KiB at most, up to its varying free capacity).
        .arg("--fair-sched=yes")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(exe)
        .args(["cpu", lib.name(), kind.name(), &messages.to_string()])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("valgrind: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(format!("exit {}: {}", output.status, tail.join(" / ")));
    }
    stderr
        .lines()
        .find_map(|line| line.split("Collected :").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| "no 'Collected' line from callgrind".into())
}
