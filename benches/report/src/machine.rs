//! The machine the report ran on.

use crate::workspace;
use std::process::Command;

pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory: String,
    pub kernel: String,
    pub rustc: String,
    pub commit: String,
    pub load_before: String,
    pub date: String,
}

pub fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name")?.split_once(':').map(|(_, v)| v))
            .map_or_else(|| std::env::consts::ARCH.to_owned(), |v| v.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or_else(|| "?".into(), |kib| format!("{:.0} GiB", kib / 1024.0 / 1024.0));
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| format!("{} {}", std::env::consts::OS, s.trim()))
            .unwrap_or_else(|_| std::env::consts::OS.into());
        let root = workspace();
        let root = root.to_string_lossy();
        let commit = command_line("git", &["-C", &root, "rev-parse", "--short", "HEAD"])
            .map(|commit| {
                let dirty = command_line("git", &["-C", &root, "status", "--porcelain", "-uno"])
                    .is_some_and(|s| !s.is_empty());
                if dirty { format!("{commit} + uncommitted changes") } else { commit }
            })
            .unwrap_or_else(|| "?".into());
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory,
            kernel,
            rustc: command_line("rustc", &["-V"]).unwrap_or_else(|| "?".into()),
            commit,
            load_before: load_average(),
            date: command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default(),
        }
    }
}
