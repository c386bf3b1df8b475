//! Writing: the Markdown tables of the report and the region of `performance.md` they replace.

use crate::chart::chart;
use crate::cpu::Cpu;
use crate::criterion::{Estimate, Estimates};
use crate::machine::Machine;
use crate::scale::Scale;
use crate::{Options, Plan, profile};
use portnet_perf_report::{Kind, Lib, stall_reason};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

pub struct Report<'a> {
    pub options: &'a Options,
    pub plan: &'a Plan,
    pub machine: Machine,
    pub estimates: Estimates,
    pub cpu: Cpu,
    pub profile: profile::Profiles,
    pub scale: HashMap<(Lib, Kind), Scale>,
}

/// Per member and transport: a value and, when known, its spread (low, high).
pub type Values = HashMap<(Lib, Kind), (f64, Option<(f64, f64)>)>;

/// One figure: a value (with its spread, when known) per transport and member.
pub struct Figure {
    pub file: &'static str,
    pub title: String,
    pub unit: &'static str,
    pub kinds: Vec<Kind>,
    pub values: Values,
    /// Whether more is better (throughput) or worse (latency, instructions, memory).
    pub higher_is_better: bool,
    pub digits: usize,
    /// Whether the members named by [`stall_reason`] were left out.
    pub skips_stalls: bool,
}

impl Figure {
    pub fn get(&self, lib: Lib, kind: Kind) -> Option<f64> {
        self.values.get(&(lib, kind)).map(|v| v.0)
    }

    pub fn cell(&self, lib: Lib, kind: Kind) -> String {
        match self.values.get(&(lib, kind)) {
            Some((v, Some((low, high)))) => {
                format!(
                    "{} ({}–{})",
                    fmt(*v, self.digits),
                    fmt(*low, self.digits),
                    fmt(*high, self.digits)
                )
            }
            Some((v, None)) => fmt(*v, self.digits),
            None if self.skips_stalls && stall_reason(lib, kind).is_some() => "stalls ¹".into(),
            None => "—".into(),
        }
    }

    /// A table: transport, raw, portnet, message-io, portnet / raw, portnet / message-io.
    pub fn table(&self, out: &mut String) {
        let ratio_title = "portnet / raw";
        let _ = writeln!(
            out,
            "| transport | raw {u} | portnet {u} | message-io {u} | {ratio_title} | portnet / message-io |",
            u = self.unit
        );
        out.push_str("|---|---|---|---|---|---|\n");
        for &kind in &self.kinds {
            let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b != 0.0 && a / b < 0.01 => "< 0.01".into(),
                (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
                _ => "—".into(),
            };
            let portnet = self.get(Lib::Portnet, kind);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                kind.name(),
                self.cell(Lib::Raw, kind),
                self.cell(Lib::Portnet, kind),
                self.cell(Lib::MessageIo, kind),
                ratio(portnet, self.get(Lib::Raw, kind)),
                ratio(portnet, self.get(Lib::MessageIo, kind)),
            );
        }
        if let Some(reason) = self
            .kinds
            .iter()
            .filter(|_| self.skips_stalls)
            .find_map(|&kind| Lib::ALL.into_iter().find_map(|lib| stall_reason(lib, kind)))
        {
            let _ = writeln!(
                out,
                "\n¹ Not run: {reason} (`stall_reason` in `benches/report/src/lib.rs`)."
            );
        }
    }
}

pub fn fmt(v: f64, digits: usize) -> String {
    if v.abs() >= 1000.0 {
        // Thin groups of three: 12 345.
        let s = format!("{v:.0}");
        let bytes = s.as_bytes();
        let mut out = String::new();
        for (i, c) in bytes.iter().enumerate() {
            if i > 0 && (bytes.len() - i) % 3 == 0 && bytes[i - 1] != b'-' {
                out.push(' ');
            }
            out.push(*c as char);
        }
        out
    } else {
        format!("{v:.digits$}")
    }
}

impl Report<'_> {
    pub fn criterion_figure(
        &self,
        group: &str,
        file: &'static str,
        title: String,
        kinds: &[Kind],
        value: impl Fn(&Estimate) -> Option<(f64, f64, f64)>,
    ) -> (Figure, &'static str) {
        let mut values = HashMap::new();
        for &kind in kinds {
            for lib in Lib::ALL {
                let key = (format!("{group}/{}", kind.name()), lib.name().to_owned());
                if let Some((v, low, high)) = self.estimates.get(&key).and_then(&value) {
                    values.insert((lib, kind), (v, Some((low, high))));
                }
            }
        }
        let unit = "";
        let figure = Figure {
            file,
            title,
            unit,
            kinds: kinds.to_vec(),
            values,
            higher_is_better: true,
            digits: 2,
            skips_stalls: matches!(group, "small" | "fanin" | "pinned-small"),
        };
        (figure, unit)
    }

    pub fn figures(&self) -> Vec<Figure> {
        let mut figures = Vec::new();
        let (mut latency, _) = self.criterion_figure(
            "latency",
            "latency.svg",
            "1-byte round trip, median µs (lower is better)".into(),
            &Kind::ALL,
            |e| Some((e.median / 1e3, e.low / 1e3, e.high / 1e3)),
        );
        latency.unit = "µs";
        latency.higher_is_better = false;
        let (mut throughput, _) = self.criterion_figure(
            "throughput",
            "throughput.svg",
            "64 KiB messages one way, GB/s (higher is better)".into(),
            &Kind::ALL,
            |e| e.rate(1e9),
        );
        throughput.unit = "GB/s";
        let (mut small, _) = self.criterion_figure(
            "small",
            "small-messages.svg",
            "64-byte messages one way, million per second (higher is better)".into(),
            &Kind::ALL,
            |e| e.rate(1e6),
        );
        small.unit = "M/s";
        let (mut fan_in, _) = self.criterion_figure(
            "fanin",
            "fan-in.svg",
            "Fan-in: 1 000 clients' bursts of 64-byte messages into one node, million per second"
                .into(),
            &Kind::CONNECTED,
            |e| e.rate(1e6),
        );
        fan_in.unit = "M/s";
        let (mut pinned, _) = self.criterion_figure(
            "pinned",
            "latency-pinned.svg",
            "1-byte round trip, every thread on one core (taskset -c 0), median µs".into(),
            &Kind::ALL,
            |e| Some((e.median / 1e3, e.low / 1e3, e.high / 1e3)),
        );
        pinned.unit = "µs";
        pinned.higher_is_better = false;
        figures.extend([throughput, latency]);
        if !pinned.values.is_empty() {
            figures.push(pinned);
        }
        figures.push(small);
        let (mut pinned_small, _) = self.criterion_figure(
            "pinned-small",
            "small-messages-pinned.svg",
            "64-byte messages one way, every thread on one core (taskset -c 0), million per second"
                .into(),
            &Kind::ALL,
            |e| e.rate(1e6),
        );
        pinned_small.unit = "M/s";
        pinned_small.skips_stalls = true;
        if !pinned_small.values.is_empty() {
            figures.push(pinned_small);
        }
        figures.push(fan_in);

        let mut cpu_values = HashMap::new();
        for (key, value) in &self.cpu.per_message {
            if let Ok((median, low, high)) = value {
                let spread = (self.plan.cpu_repeats > 1).then_some((*low, *high));
                cpu_values.insert(*key, (*median, spread));
            }
        }
        figures.push(Figure {
            file: "cpu-per-message.svg",
            title: "Instructions per 64-byte message, send + receive (callgrind; lower is better)"
                .into(),
            unit: "instr.",
            kinds: Kind::ALL.to_vec(),
            values: cpu_values,
            higher_is_better: false,
            digits: 0,
            skips_stalls: true,
        });

        let n = self.plan.connections;
        let mut time = HashMap::new();
        let mut memory = HashMap::new();
        for (key, scale) in &self.scale {
            if let (Some(a), Some(b), Some(c)) = (scale.connect, scale.echo, scale.close) {
                time.insert(*key, (a + b + c, None));
            }
            if let Some(bytes) = scale.idle_per_connection(n) {
                memory.insert(*key, (bytes / 1024.0, None));
            }
        }
        figures.push(Figure {
            file: "conn-scale-time.svg",
            title: format!(
                "{} connections: open, echo one message on each, close; seconds",
                fmt(n as f64, 0)
            ),
            unit: "s",
            kinds: Kind::CONNECTED.to_vec(),
            values: time,
            higher_is_better: false,
            digits: 2,
            skips_stalls: false,
        });
        figures.push(Figure {
            file: "memory-per-connection.svg",
            title: "Server resident memory per idle connection, KiB (lower is better)".into(),
            unit: "KiB",
            kinds: Kind::CONNECTED.to_vec(),
            values: memory,
            higher_is_better: false,
            digits: 1,
            skips_stalls: false,
        });
        figures
    }

    pub fn write(&self, load_after: String, elapsed: Duration) {
        let out = &self.options.out;
        let charts = out.join("charts");
        std::fs::create_dir_all(&charts).expect("create the charts directory");
        let figures = self.figures();
        for figure in &figures {
            if let Err(e) = chart(&charts.join(figure.file), figure) {
                eprintln!("chart {}: {e}", figure.file);
            }
        }
        let region = self.markdown(&figures, load_after, elapsed);
        let page = out.join("performance.md");
        let text = std::fs::read_to_string(&page).unwrap_or_default();
        std::fs::write(&page, splice(&text, &region)).expect("write performance.md");
    }

    pub fn markdown(&self, figures: &[Figure], load_after: String, elapsed: Duration) -> String {
        let m = &self.machine;
        let mode = if self.options.quick { "--quick" } else { "--full" };
        let mut s = String::new();
        let _ = writeln!(
            s,
            "## Measured side by side (generated)\n\n\
             Written by `cargo run --release -p portnet-perf-report -- {mode}` \
             (`benches/report/`) on {date}, in {secs:.0} s; do not edit between the markers. \
             Each figure is raw blocking std sockets, portnet and message-io =0.19.0 measured in \
             the same run, interleaved per transport, on loopback. Brackets give criterion's 95 % \
             confidence interval of the median. {quick}\n",
            date = m.date,
            secs = elapsed.as_secs_f64(),
            quick = if self.options.quick {
                "**Short mode**: few samples, 1 000 connections instead of 10 000; a smoke \
                 run, not figures to quote."
            } else {
                ""
            },
        );
        let _ = writeln!(
            s,
            "| machine | |\n|---|---|\n| CPU | `{}` |\n| cores | {} (shared with other jobs) |\n\
             | memory | {} |\n| kernel | {} |\n| toolchain | {} |\n| portnet | commit {} |\n\
             | load average (1, 5, 15 min) | {} at the start, {} at the end |\n",
            m.cpu, m.cores, m.memory, m.kernel, m.rustc, m.commit, m.load_before, load_after
        );
        self.goals(&mut s, figures);
        let n = self.plan.connections;
        for figure in figures {
            let _ = writeln!(
                s,
                "### {}\n\n![{}](charts/{})\n",
                figure.title, figure.title, figure.file
            );
            figure.table(&mut s);
            s.push('\n');
            match figure.file {
                "throughput.svg" => s.push_str(
                    "`benches/transports.rs`: rounds of 256 messages (16 in short mode) of 64 KiB \
                     (`Udp`: 65 507 bytes, goodput). GB = 10⁹ bytes.\n\n",
                ),
                "latency.svg" => s.push_str(
                    "`benches/transports.rs`, unpinned: on 2 shared cores round trips are bimodal \
                     (3–4 µs when both threads share a core, 11–14 µs when a wake-up crosses to \
                     an idle one), so compare members within a row; the pinned figure that \
                     follows (when it ran) shows the cost per round trip.\n\n",
                ),
                "latency-pinned.svg" => s.push_str(
                    "The latency groups of `benches/transports.rs` run again under \
                     `taskset -c 0` (cargo, the bench and all its threads on one core): no \
                     cross-core wake-ups, so the difference to raw is the library's own cost \
                     per round trip. message-io's FramedTcp waits for Nagle's delayed \
                     acknowledgement (two writes per frame without `TCP_NODELAY`).\n\n",
                ),
                "small-messages-pinned.svg" => s.push_str(
                    "The same groups under `taskset -c 0`: sender and receiver share one core, \
                     so the rate is the inverse of the CPU time per message, kernel included, \
                     and does not depend on how fast an idle core wakes.\n\n",
                ),
                "small-messages.svg" => s.push_str(
                    "`benches/report/benches/load.rs` `small/<transport>`: 64-byte messages sent \
                     one at a time from the bench thread to a receiver on its own thread, at most \
                     1 024 in flight (`Udp`: 32, so nothing is lost), acknowledged every 128 \
                     (`Udp`: 16) through an in-process channel.\n\n",
                ),
                "fan-in.svg" => s.push_str(
                    "`load.rs` `fanin/<transport>`: 1 000 raw std clients connected to one \
                     server; per iteration each sends a burst of 64-byte messages (100, 16 in \
                     short mode), one client after the other from the bench thread, and the \
                     iteration ends when the server has counted them all. The server is a \
                     portnet or message-io node, or for raw a thread per connection.\n\n",
                ),
                "cpu-per-message.svg" => {
                    let _ = writeln!(
                        s,
                        "`valgrind --tool=callgrind` on `portnet-perf-report cpu <lib> <transport> \
                         <n>`: the one-way case above in one process (sender on the main thread, \
                         receiver on its own), every instruction of the process counted, \
                         user space only (the kernel's work is not counted). Per message = \
                         (instructions of a run of {b} messages − those of a run of {a}) / \
                         ({b} − {a}): set-up cancels out. Valgrind runs one thread at a time; \
                         `--fair-sched=yes` hands over in a fixed order, and the machine's load \
                         does not enter the count, but how many messages one wake-up reads \
                         still depends on timing: repeats mostly agree within a few %, and \
                         `Ws` varies several-fold, since each socket read zero-fills \
                         tungstenite's read buffer (`BytesMut::resize`: most of portnet's \
                         `Ws` count). {repeats}{note}\n",
                        a = self.plan.cpu_runs.0,
                        b = self.plan.cpu_runs.1,
                        repeats = if self.plan.cpu_repeats > 1 {
                            format!(
                                "Median of {} pairs of runs, brackets: lowest and highest.",
                                self.plan.cpu_repeats
                            )
                        } else {
                            "One pair of runs per case.".into()
                        },
                        note =
                            self.cpu.note.as_deref().map(|n| format!(" {n}.")).unwrap_or_default(),
                    );
                    let failures: Vec<String> = self
                        .cpu
                        .per_message
                        .iter()
                        .filter_map(|((lib, kind), r)| {
                            r.as_ref().err().map(|e| format!("{} {}: {e}", lib.name(), kind.name()))
                        })
                        .collect();
                    for failure in failures {
                        let _ = writeln!(s, "- failed: {failure}");
                    }
                    s.push('\n');
                    self.profile.markdown(&mut s);
                }
                "conn-scale-time.svg" => self.scale_table(&mut s, n),
                _ => (),
            }
        }
        s
    }

    pub fn scale_table(&self, s: &mut String, n: u64) {
        let _ = writeln!(
            s,
            "The server (`portnet-perf-report scale-server`: a portnet or message-io echo node, or \
             for raw a thread per connection with 128 KiB stacks) and the client \
             (`scale-client`: raw std sockets, the same for every server) are separate processes: \
             the open-file limit does not fit both ends of {n} connections in one. The client \
             connects one connection after the other (`Ws`: with its handshake), then sends one \
             64-byte message on each and reads every echo, then closes them all. Times are from \
             the report's start of each phase until both processes have seen its end \
             (connections accepted, all disconnected). Memory is the server's `VmRSS` before the \
             first connection and with all {n} idle, and its `VmHWM` (peak) at the end. Listen \
             backlogs: portnet 4 096 (`adapters::tcp::LISTENER_BACKLOG`, not configurable), \
             message-io 1 024 (mio 0.8's `TcpListener::bind`, and its Tcp adapter), raw 4 096 \
             (set with socket2: std's `TcpListener::bind` uses 128, which made 10 000 connects \
             take 70 s here); the kernel caps them at `somaxconn` = {somaxconn}. A connect that \
             finds the accept queue full has its SYN dropped and retried after 1 s: the outcome \
             column counts connects that took 0.5 s or more.\n",
            n = fmt(n as f64, 0),
            somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "?".into()),
        );
        s.push_str(
            "| transport | member | connect s | echo s | close s | RSS before MiB | idle RSS per connection | peak RSS (VmHWM) MiB | outcome |\n\
             |---|---|---|---|---|---|---|---|---|\n",
        );
        for kind in Kind::CONNECTED {
            for lib in Lib::ALL {
                let Some(r) = self.scale.get(&(lib, kind)) else { continue };
                let secs = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.2}"));
                let mib = |v: Option<u64>| {
                    v.map_or("—".into(), |v| format!("{:.1}", v as f64 / 1048576.0))
                };
                let per = r
                    .idle_per_connection(n)
                    .map_or("—".into(), |b| format!("{:.1} KiB", b / 1024.0));
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    kind.name(),
                    lib.name(),
                    secs(r.connect),
                    secs(r.echo),
                    secs(r.close),
                    mib(r.rss_base),
                    per,
                    mib(r.hwm),
                    outcome(r).replace('|', "/"),
                );
            }
        }
        s.push('\n');
    }

    pub fn goals(&self, s: &mut String, figures: &[Figure]) {
        let find = |file: &str| figures.iter().find(|f| f.file == file);
        let verdict = |met: Option<bool>, detail: String| match met {
            Some(true) => format!("**met** ({detail})"),
            Some(false) => format!("**not met** ({detail})"),
            None => "not measured".into(),
        };
        s.push_str("Goals of issues 6 and 18, from this run:\n\n| goal | Tcp | FramedTcp | Udp | Ws |\n|---|---|---|---|---|\n");
        let row = |s: &mut String, goal: &str, cell: &dyn Fn(Kind) -> String| {
            let cells: Vec<String> = Kind::ALL.into_iter().map(cell).collect();
            let _ = writeln!(s, "| {goal} | {} |", cells.join(" | "));
        };
        let values = |file: &str, kind: Kind| {
            let f = find(file)?;
            Some((f.get(Lib::Raw, kind)?, f.get(Lib::Portnet, kind)?, f.get(Lib::MessageIo, kind)?))
        };
        row(
            s,
            "64 KiB throughput ≥ 95 % of raw (Tcp, FramedTcp, Udp), ahead of message-io",
            &|kind| match values("throughput.svg", kind) {
                Some((raw, p, m)) => verdict(
                    Some((kind == Kind::Ws || p >= 0.95 * raw) && p > m),
                    format!("{:.0} % of raw, {:.2}× message-io", 100.0 * p / raw, p / m),
                ),
                None => verdict(None, String::new()),
            },
        );
        let latency = if find("latency-pinned.svg").is_some() {
            ("latency-pinned.svg", "pinned")
        } else {
            ("latency.svg", "unpinned")
        };
        let goal = format!("round trip ≤ raw + 0.5 µs and below message-io ({})", latency.1);
        row(s, &goal, &|kind| match values(latency.0, kind) {
            Some((raw, p, m)) => verdict(
                Some(p <= raw + 0.5 && p < m),
                format!("{:+.2} µs vs raw, {:+.2} µs vs message-io", p - raw, p - m),
            ),
            None => verdict(None, String::new()),
        });
        row(s, "instructions per message ≤ 1.2× raw and below message-io", &|kind| {
            let Some(f) = find("cpu-per-message.svg") else { return verdict(None, String::new()) };
            match (f.get(Lib::Raw, kind), f.get(Lib::Portnet, kind), f.get(Lib::MessageIo, kind)) {
                (Some(raw), Some(p), Some(m)) => verdict(
                    Some(p <= 1.2 * raw && p < m),
                    format!("{:.2}× raw, {:.2}× message-io", p / raw, p / m),
                ),
                (Some(raw), Some(p), None) => {
                    verdict(Some(p <= 1.2 * raw), format!("{:.2}× raw; message-io stalls", p / raw))
                }
                _ => verdict(None, String::new()),
            }
        });
        let n = self.plan.connections;
        let goal = "10 000 connections held and echoed; idle memory < 1 KiB each (Tcp, FramedTcp), \
                    < 8 KiB (Ws)";
        row(s, goal, &|kind| {
            if kind == Kind::Udp {
                return "—".into();
            }
            match self.scale.get(&(Lib::Portnet, kind)) {
                Some(r) => {
                    let per = r.idle_per_connection(n).map(|b| b / 1024.0);
                    let ok = r.failure.is_none() && r.close.is_some();
                    let detail = format!(
                        "{} connections {}, {}",
                        fmt(n as f64, 0),
                        if ok { "ok" } else { "failed" },
                        per.map_or("—".into(), |k| format!("{k:.1} KiB each"))
                    );
                    if n < 10_000 {
                        return format!("not measured at 10 000 (short mode: {detail})");
                    }
                    let limit = if kind == Kind::Ws { 8.0 } else { 1.0 };
                    verdict(Some(ok && per.is_some_and(|k| k < limit)), detail)
                }
                None => verdict(None, String::new()),
            }
        });
        row(s, "≥ 1 million 64-byte FramedTcp messages per second one way", &|kind| {
            if kind != Kind::FramedTcp {
                return "—".into();
            }
            let get = |file| find(file).and_then(|f| f.get(Lib::Portnet, kind));
            // Either way of running counts: unpinned depends on how fast an idle core wakes.
            match (get("small-messages.svg"), get("small-messages-pinned.svg")) {
                (Some(p), pinned) => verdict(
                    Some(p.max(pinned.unwrap_or(0.0)) >= 1.0),
                    match pinned {
                        Some(q) => format!("{p:.2} M/s unpinned, {q:.2} M/s on one core"),
                        None => format!("{p:.2} M/s"),
                    },
                ),
                (None, _) => verdict(None, String::new()),
            }
        });
        s.push('\n');
    }
}

pub fn outcome(r: &Scale) -> String {
    match (&r.failure, &r.stalls) {
        (Some(failure), _) => format!("failed: {failure}"),
        (None, Some(stalls)) => format!("ok; {stalls}"),
        (None, None) => "ok".into(),
    }
}

pub const BEGIN: &str = "<!-- report:begin -->";
pub const END: &str = "<!-- report:end -->";

/// Replaces the marked region of `page` (or adds one after the first paragraph following the
/// title; or makes a page of it alone).
pub fn splice(page: &str, region: &str) -> String {
    let block = format!("{BEGIN}\n{region}{END}");
    if let (Some(begin), Some(end)) = (page.find(BEGIN), page.find(END))
        && begin < end
    {
        return format!("{}{block}{}", &page[..begin], &page[end + END.len()..]);
    }
    if page.trim().is_empty() {
        return format!("# Performance\n\n{block}\n");
    }
    // After the introduction: before the first `## ` heading.
    match page.find("\n## ") {
        Some(at) => format!("{}\n{block}\n{}", &page[..at + 1], &page[at + 1..]),
        None => format!("{page}\n{block}\n"),
    }
}
