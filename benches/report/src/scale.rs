//! Connection scale: a server and a client process (`scale-server`, `scale-client`), timed
//! phase by phase, the server's memory read from `/proc`.

use crate::{Plan, say, subject};
use portnet_perf_report::{Kind, Lib};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Scale {
    pub connect: Option<f64>,
    pub echo: Option<f64>,
    pub close: Option<f64>,
    /// Resident bytes of the server before any connection, with all of them idle, and its peak.
    pub rss_base: Option<u64>,
    pub rss_idle: Option<u64>,
    pub hwm: Option<u64>,
    /// Connects that stalled (SYN retransmitted: the accept queue was full), if any.
    pub stalls: Option<String>,
    /// What went wrong, if anything.
    pub failure: Option<String>,
}

impl Scale {
    pub fn idle_per_connection(&self, connections: u64) -> Option<f64> {
        Some((self.rss_idle? as f64 - self.rss_base? as f64) / connections as f64)
    }
}

pub fn connection_scale(plan: &Plan) -> HashMap<(Lib, Kind), Scale> {
    let mut results = HashMap::new();
    for kind in Kind::CONNECTED {
        for lib in Lib::ALL {
            say(format!("scale: {} connections, {} {}", plan.connections, lib.name(), kind.name()));
            let result = scale_case(plan, lib, kind);
            eprintln!("   {result:?}");
            results.insert((lib, kind), result);
        }
    }
    results
}

/// A child process whose stdout lines arrive on a channel.
pub struct Process {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub lines: mpsc::Receiver<String>,
}

impl Process {
    pub fn start(args: &[String]) -> std::io::Result<Process> {
        let mut child = Command::new(subject())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Process { child, stdin, lines })
    }

    /// Waits for a line starting with `word`; returns the rest.
    pub fn expect(&self, word: &str, deadline: Instant) -> Result<String, String> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(word) {
                        return Ok(rest.trim().to_owned());
                    }
                    if let Some(error) = line.strip_prefix("error") {
                        return Err(error.trim().to_owned());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!("no '{word}' within the time allowed"));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(format!("exited before '{word}'"));
                }
            }
        }
    }

    pub fn say(&mut self, line: &str) {
        if let Some(stdin) = &mut self.stdin {
            let _ = writeln!(stdin, "{line}");
        }
    }

    /// `VmRSS` or `VmHWM` of the process, in bytes.
    pub fn memory(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|line| line.starts_with(field))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn scale_case(plan: &Plan, lib: Lib, kind: Kind) -> Scale {
    let mut scale = Scale::default();
    if let Err(e) = scale_phases(plan, lib, kind, &mut scale) {
        scale.failure = Some(e);
    }
    scale
}

pub fn scale_phases(plan: &Plan, lib: Lib, kind: Kind, scale: &mut Scale) -> Result<(), String> {
    let n = plan.connections.to_string();
    let start_process = |args: Vec<String>| Process::start(&args).map_err(|e| e.to_string());
    let mut server = start_process(vec![
        "scale-server".into(),
        lib.name().into(),
        kind.name().into(),
        n.clone(),
    ])?;
    let addr = server.expect("listening", Instant::now() + Duration::from_secs(10))?;
    scale.rss_base = server.memory("VmRSS:");
    let started = Instant::now();
    let mut client = start_process(vec!["scale-client".into(), kind.name().into(), addr, n])?;
    let phase = |what: &str, result: Result<String, String>| {
        result.map_err(|e| format!("{what}: {e} (after {:.1} s)", started.elapsed().as_secs_f64()))
    };
    let deadline = Instant::now() + plan.scale_phase;
    let connected = phase("connect (client)", client.expect("connected", deadline))?;
    let mut words = connected.split_whitespace().skip(1);
    if let (Some(slow), Some(slowest)) = (words.next(), words.next())
        && slow != "0"
    {
        scale.stalls = Some(format!("{slow} connects took ≥ 0.5 s (longest {slowest} s)"));
    }
    phase("connect (server)", server.expect("accepted", deadline))?;
    scale.connect = Some(started.elapsed().as_secs_f64());
    // Idle: every connection open, nothing sent yet.
    std::thread::sleep(Duration::from_millis(200));
    scale.rss_idle = server.memory("VmRSS:");

    let started = Instant::now();
    client.say("echo");
    phase("echo", client.expect("echoed", Instant::now() + plan.scale_phase))?;
    scale.echo = Some(started.elapsed().as_secs_f64());

    let started = Instant::now();
    client.say("close");
    let deadline = Instant::now() + plan.scale_phase;
    phase("close (client)", client.expect("closed", deadline))?;
    phase("close (server)", server.expect("disconnected", deadline))?;
    scale.close = Some(started.elapsed().as_secs_f64());
    scale.hwm = server.memory("VmHWM:");
    server.say("quit");
    Ok(())
}
