//! Replay end to end: the runner finds a failing seed, writes its trace to a file, and
//! `replay` reruns that file's seed and gets the same trace and the same failure; a trace that
//! does not match its seed is caught at the first differing line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the runner with its trace files under `dir` (its temporary directory).
fn runner(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sim-runner"))
        .args(args)
        .env("TMPDIR", dir)
        .output()
        .expect("the runner starts")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A directory of this test's own, empty.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portnet-replay-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The runner's `seeds` over a scenario that fails on some seeds: the first failing seed, its
/// failure's first line, and the trace file written for it.
fn first_failure(dir: &Path) -> (u64, String, PathBuf) {
    let output = runner(dir, &["seeds", "distributed-udp-loss", "--from", "1", "--count", "10"]);
    let text = stdout(&output);
    assert!(!output.status.success(), "no seed of 10 failed:\n{text}");
    let (seed, message) = text
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix("seed ")?;
            let (seed, rest) = rest.split_once(" FAILED ")?;
            Some((seed.parse::<u64>().ok()?, rest.split_once("): ")?.1.to_string()))
        })
        .unwrap_or_else(|| panic!("no failing seed listed:\n{text}"));
    let path = text
        .lines()
        .find_map(|line| line.strip_prefix(&format!("trace of seed {seed}: ")))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no trace file named:\n{text}"));
    assert!(path.starts_with(dir), "trace written outside the temporary directory: {path:?}");
    (seed, message, path)
}

#[test]
fn a_failing_runs_trace_file_replays_to_the_same_failure() {
    let dir = scratch("same");
    let (seed, message, path) = first_failure(&dir);
    let recorded = std::fs::read_to_string(&path).unwrap();
    assert!(recorded.lines().count() > 10, "a trace of {} lines", recorded.lines().count());
    let output = runner(&dir, &["replay", path.to_str().unwrap()]);
    let text = stdout(&output);
    assert!(output.status.success(), "replay did not match:\n{text}");
    assert!(text.contains(&format!("replayed seed {seed} of distributed-udp-loss: identical")));
    assert!(
        text.contains(&format!("the run failed: {message}")),
        "replay did not fail as the run did ({message}):\n{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_trace_file_that_does_not_match_its_seed_is_reported_where_it_differs() {
    let dir = scratch("differs");
    let (_, _, path) = first_failure(&dir);
    let mut lines: Vec<String> =
        std::fs::read_to_string(&path).unwrap().lines().map(String::from).collect();
    lines[5] = format!("{} (edited)", lines[5]);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let output = runner(&dir, &["replay", path.to_str().unwrap()]);
    let text = stdout(&output);
    assert!(!output.status.success(), "an edited trace replayed as identical:\n{text}");
    assert!(text.contains("differs at line 6"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
