//! Criterion's benches, run by the report (`cargo bench`, pinned or not), and their results.

use crate::{cargo, say, workspace};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::SystemTime;

/// `cargo bench -p package --bench bench`; `pinned`: only the latency and small-message
/// groups, with cargo and the bench under `taskset -c 0`.
pub fn run_criterion(package: &str, bench: &str, quick: bool, pinned: bool) {
    let mode = match (quick, pinned) {
        (true, true) => " (quick, pinned to core 0)",
        (false, true) => " (pinned to core 0)",
        (true, false) => " (quick)",
        (false, false) => "",
    };
    say(format!("cargo bench -p {package} --bench {bench}{mode}"));
    let mut command = if pinned {
        let mut command = Command::new("taskset");
        command.args(["-c", "0"]).arg(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        command.current_dir(workspace());
        command
    } else {
        cargo()
    };
    // `cargo run` gave this process the package's variables (CARGO_MANIFEST_DIR,
    // CARGO_PKG_NAME, …). Build scripts such as ring's ask to rerun when those change, so
    // passing them on would rebuild ring, rustls and portnet (about a minute here) every time
    // the report and a plain `cargo bench` alternate.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let from_cargo_run = key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || matches!(
                key.as_ref(),
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE" | "OUT_DIR"
            );
        if from_cargo_run {
            command.env_remove(key.as_ref());
        }
    }
    command.args(["bench", "-p", package, "--bench", bench, "--"]);
    if pinned {
        command.arg(if bench == "load" { "small/" } else { "latency/" });
    }
    if quick {
        // Criterion's analysis bootstraps 100 000 resamples per case, about a second each
        // here: most of the short mode's time. 2 000 give the median's interval well enough
        // for a smoke run.
        command.args(["--nresamples", "2000"]);
    }
    if quick {
        command.env("PORTNET_BENCH_QUICK", "1");
    } else {
        command.env_remove("PORTNET_BENCH_QUICK");
    }
    // Criterion's console output goes to stderr with ours: stdout stays clean.
    let status = command.stdout(Stdio::from(std::io::stderr())).status();
    match status {
        Ok(status) if status.success() => (),
        other => panic!("cargo bench -p {package} --bench {bench} failed: {other:?}"),
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Amount {
    Bytes(f64),
    Elements(f64),
}

/// One member's time per iteration: the median and its 95 % confidence interval, in ns.
#[derive(Clone, Copy, Debug)]
pub struct Estimate {
    pub median: f64,
    pub low: f64,
    pub high: f64,
    pub amount: Option<Amount>,
}

impl Estimate {
    /// (value, low, high) of a rate: `amount / time`, in `unit`s per second.
    pub fn rate(&self, unit: f64) -> Option<(f64, f64, f64)> {
        let amount = match self.amount? {
            Amount::Bytes(n) | Amount::Elements(n) => n,
        };
        let per_second = |ns: f64| amount / (ns * 1e-9) / unit;
        Some((per_second(self.median), per_second(self.high), per_second(self.low)))
    }
}

pub type Estimates = HashMap<(String, String), Estimate>;

pub fn read_criterion(dir: &Path, since: Option<SystemTime>) -> Estimates {
    let mut estimates = HashMap::new();
    let Ok(groups) = std::fs::read_dir(dir) else { return estimates };
    for group in groups.flatten() {
        let Ok(members) = std::fs::read_dir(group.path()) else { continue };
        for member in members.flatten() {
            let new = member.path().join("new");
            let (Some(benchmark), Some(values)) =
                (read_json(&new.join("benchmark.json")), read_json(&new.join("estimates.json")))
            else {
                continue;
            };
            let modified = std::fs::metadata(new.join("estimates.json")).and_then(|m| m.modified());
            if let (Some(since), Ok(modified)) = (since, modified)
                && modified < since
            {
                continue;
            }
            let text = |key: &str| benchmark[key].as_str().unwrap_or_default().to_owned();
            let median = &values["median"];
            let number = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
            let amount = match &benchmark["throughput"] {
                serde_json::Value::Object(map) => match map.iter().next() {
                    Some((unit, n)) if unit.starts_with("Bytes") => Some(Amount::Bytes(number(n))),
                    Some((_, n)) => Some(Amount::Elements(number(n))),
                    None => None,
                },
                _ => None,
            };
            estimates.insert(
                (text("group_id"), text("function_id")),
                Estimate {
                    median: number(&median["point_estimate"]),
                    low: number(&median["confidence_interval"]["lower_bound"]),
                    high: number(&median["confidence_interval"]["upper_bound"]),
                    amount,
                },
            );
        }
    }
    estimates
}

pub fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}
