//! Where the instructions of a round trip go: callgrind on `portnet-perf-report rtt <lib>
//! <transport> <n>` (one 1-byte message to an echo server and back at a time, raw and
//! portnet), summarised per function from `callgrind_annotate`, set-up cancelled out by
//! subtracting a shorter run.

use crate::markdown::fmt;
use crate::{say, subject, target_dir};
use portnet_perf_report::{Kind, Lib};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;

/// Bytes per round-trip message: the latency figures' size.
pub const SIZE: usize = 1;

/// Round trips of the two runs whose difference is reported.
pub const RUNS: (u64, u64) = (200, 1200);

/// Rows per list.
const TOP: usize = 10;

/// One function's instructions per round trip.
#[derive(Clone, Debug)]
pub struct Function {
    pub name: String,
    /// In the function itself (callgrind's exclusive cost).
    pub own: f64,
    /// In it and everything it called.
    pub inclusive: f64,
}

/// One case's instructions per round trip: the whole process, and per function.
#[derive(Debug)]
pub struct Breakdown {
    pub total: f64,
    pub functions: Vec<Function>,
}

#[derive(Default)]
pub struct Profiles {
    pub cases: HashMap<(Lib, Kind), Result<Breakdown, String>>,
    /// Why nothing was measured, if nothing was.
    pub note: Option<String>,
}

pub fn profile() -> Profiles {
    // callgrind_annotate answers `--version` with exit code 255: that it runs is enough.
    let valgrind = Command::new("valgrind").arg("--version").output();
    let annotate = Command::new("callgrind_annotate").arg("--version").output();
    if !valgrind.is_ok_and(|o| o.status.success()) || annotate.is_err() {
        return Profiles {
            note: Some("valgrind (callgrind_annotate) is not installed: not measured".into()),
            ..Profiles::default()
        };
    }
    let dir = target_dir().join("perf-report").join("callgrind");
    std::fs::create_dir_all(&dir).expect("create the callgrind directory");
    let cases: Vec<(Lib, Kind)> = Kind::ALL
        .into_iter()
        .flat_map(|kind| [Lib::Raw, Lib::Portnet].map(|lib| (lib, kind)))
        .collect();
    say(format!(
        "callgrind per function: {} round-trip cases × 2 runs, {RUNS:?} round trips",
        cases.len()
    ));
    let (tx, rx) = mpsc::channel();
    let queue = std::sync::Mutex::new(cases.into_iter());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let (tx, queue, dir) = (tx.clone(), &queue, &dir);
            scope.spawn(move || {
                loop {
                    let next = queue.lock().unwrap().next();
                    let Some((lib, kind)) = next else { break };
                    let result = breakdown(dir, lib, kind);
                    match &result {
                        Ok(b) => eprintln!(
                            "   {} {}: {:.0} instructions per round trip",
                            lib.name(),
                            kind.name(),
                            b.total
                        ),
                        Err(e) => eprintln!("   {} {}: {e}", lib.name(), kind.name()),
                    }
                    let _ = tx.send(((lib, kind), result));
                }
            });
        }
    });
    drop(tx);
    Profiles { cases: rx.into_iter().collect(), note: None }
}

fn breakdown(dir: &Path, lib: Lib, kind: Kind) -> Result<Breakdown, String> {
    let run = |n: u64| -> Result<Costs, String> {
        let out = dir.join(format!("rtt.{}.{}.{n}.out", lib.name(), kind.name()));
        let output = Command::new("valgrind")
            .arg("--tool=callgrind")
            // The same fixed hand-over between threads as the instructions-per-message runs.
            .arg("--fair-sched=yes")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(subject())
            .args(["rtt", lib.name(), kind.name(), &n.to_string()])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("valgrind: {e}"))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            return Err(format!("exit {}: {}", output.status, tail.join(" / ")));
        }
        let own = annotate(&out, false)?;
        let inclusive = annotate(&out, true)?;
        Ok(Costs { own, inclusive })
    };
    let (short, long) = (run(RUNS.0)?, run(RUNS.1)?);
    let per = |a: Option<&u64>, b: Option<&u64>| {
        (*b.unwrap_or(&0) as f64 - *a.unwrap_or(&0) as f64) / (RUNS.1 - RUNS.0) as f64
    };
    let total = per(short.own.get(TOTAL), long.own.get(TOTAL));
    let functions = long
        .own
        .keys()
        .chain(long.inclusive.keys())
        .filter(|name| name.as_str() != TOTAL)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|name| Function {
            name: name.clone(),
            own: per(short.own.get(name), long.own.get(name)),
            inclusive: per(short.inclusive.get(name), long.inclusive.get(name)),
        })
        .collect();
    Ok(Breakdown { total, functions })
}

/// Instructions per function name, and the program's total under [`TOTAL`].
type Table = HashMap<String, u64>;

const TOTAL: &str = "PROGRAM TOTALS";

struct Costs {
    own: Table,
    inclusive: Table,
}

fn annotate(file: &Path, inclusive: bool) -> Result<Table, String> {
    let output = Command::new("callgrind_annotate")
        .args(["--threshold=100", "--auto=no", "--show-percs=no"])
        .arg(format!("--inclusive={}", if inclusive { "yes" } else { "no" }))
        .arg(file)
        .output()
        .map_err(|e| format!("callgrind_annotate: {e}"))?;
    if !output.status.success() {
        return Err(format!("callgrind_annotate exit {}", output.status));
    }
    let table = parse(&String::from_utf8_lossy(&output.stdout), inclusive);
    if table.contains_key(TOTAL) {
        Ok(table)
    } else {
        Err("no totals from callgrind_annotate".into())
    }
}

/// `callgrind_annotate`'s lines `  1,234  file:function [object]` (and `PROGRAM TOTALS`).
/// A function whose code was inlined from other files comes as one line per file: own counts
/// add up; inclusive ones overlap (the line of the function's own file, which names the
/// object, holds what the others call too), so the largest is kept.
fn parse(text: &str, inclusive: bool) -> Table {
    let mut table = Table::new();
    for line in text.lines() {
        let line = line.trim_start();
        let Some((count, rest)) = line.split_once(char::is_whitespace) else { continue };
        let Ok(count) = count.replace(',', "").parse::<u64>() else { continue };
        let rest = rest.trim();
        let name = if rest == TOTAL {
            TOTAL.to_owned()
        } else {
            // Drop the object (shown when it is not the program) and the source file.
            let rest = match rest.rfind(" [") {
                Some(at) if rest.ends_with(']') => &rest[..at],
                _ => rest,
            };
            match rest.split_once(':') {
                Some((_, function)) if !function.is_empty() => function.to_owned(),
                _ => continue,
            }
        };
        let entry = table.entry(name).or_default();
        *entry = if inclusive { (*entry).max(count) } else { *entry + count };
    }
    table
}

/// Frames every thread or program runs through: their inclusive count is a whole thread's.
fn is_wrapper(name: &str) -> bool {
    const WRAPPERS: [&str; 14] = [
        "(below main)",
        "__libc_start",
        "start_thread",
        "clone",
        "clone3",
        "lang_start",
        "thread_start",
        "__rust_begin_short_backtrace",
        "call_once",
        "catch_unwind",
        "panicking::try",
        "do_call",
        "portnet_perf_report::",
        "{{closure}}",
    ];
    // `0x…`: a frame without a symbol (the program's entry).
    name == "main" || name.starts_with("0x") || WRAPPERS.iter().any(|w| name.contains(w))
}

/// A function name short enough for a table cell: paths keep their crate and last three parts.
fn short(name: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let parts: Vec<&str> = word.split("::").collect();
        if parts.len() > 4 {
            let _ = write!(out, "{}::…::{}", parts[0], parts[parts.len() - 3..].join("::"));
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in name.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out.replace('|', "/")
}

impl Profiles {
    /// The section of `docs/performance.md`: a table per transport.
    pub fn markdown(&self, s: &mut String) {
        if self.cases.is_empty() && self.note.is_none() {
            return; // not asked for (`--skip-cpu`)
        }
        let title = "Where the instructions of a round trip go (callgrind, per function)";
        let _ = writeln!(s, "### {title}\n");
        let _ = writeln!(
            s,
            "`valgrind --tool=callgrind --fair-sched=yes` on `portnet-perf-report rtt <raw|portnet> \
             <transport> <n>`: one {SIZE}-byte message to an echo server and back at a time (the \
             latency figures' case: the server on its own thread, the client on the main thread; \
             portnet's client is driven with `network::split()` and `process_poll_event`), both \
             ends in one process. Per round trip = (count of a run of {b} round trips − count of \
             a run of {a}) / {d}, per function as `callgrind_annotate` reports them: \
             *own* is the function's exclusive count, *incl.* adds everything it called. \
             User space only (system calls count as the few instructions of their wrapper). \
             memset and memcpy above 2 KiB run as `rep stosb`/`rep movsb`, which callgrind \
             counts once per byte: their counts overstate their time. The inclusive lists leave \
             out the frames that run a whole thread (`main`, `thread_start`, closures, the \
             report's own harness). The raw files: \
             `target/perf-report/callgrind/rtt.<lib>.<transport>.<n>.out` \
             (`callgrind_annotate --inclusive=yes --tree=caller FILE` shows who calls what).\n",
            a = RUNS.0,
            b = RUNS.1,
            d = RUNS.1 - RUNS.0,
        );
        if let Some(note) = &self.note {
            let _ = writeln!(s, "{note}.\n");
            return;
        }
        for kind in Kind::ALL {
            let total = |lib| match self.cases.get(&(lib, kind)) {
                Some(Ok(b)) => format!("{} instructions", fmt(b.total, 0)),
                Some(Err(e)) => format!("failed: {}", e.replace('|', "/")),
                None => "not run".into(),
            };
            let _ = writeln!(
                s,
                "**{}**: portnet {} per round trip, raw {}.\n",
                kind.name(),
                total(Lib::Portnet),
                total(Lib::Raw)
            );
            let ranked = |lib, inclusive: bool| -> Vec<Function> {
                let Some(Ok(b)) = self.cases.get(&(lib, kind)) else { return Vec::new() };
                let mut functions: Vec<Function> = b
                    .functions
                    .iter()
                    .filter(|f| !inclusive || !is_wrapper(&f.name))
                    .cloned()
                    .collect();
                let key = |f: &Function| if inclusive { f.inclusive } else { f.own };
                functions.sort_by(|a, b| key(b).total_cmp(&key(a)));
                functions.truncate(TOP);
                functions
            };
            let own = ranked(Lib::Portnet, false);
            let inclusive = ranked(Lib::Portnet, true);
            let raw = ranked(Lib::Raw, false);
            s.push_str(
                "| # | portnet, by own count | own | incl. | portnet, by inclusive count | incl. | raw, by own count | own |\n\
                 |---|---|---|---|---|---|---|---|\n",
            );
            let cell = |f: Option<&Function>, inclusive: bool| match f {
                Some(f) => (
                    format!("`{}`", short(&f.name)),
                    fmt(if inclusive { f.inclusive } else { f.own }, 0),
                ),
                None => (String::new(), String::new()),
            };
            for i in 0..TOP {
                let (a, a_own) = cell(own.get(i), false);
                let a_incl = own.get(i).map_or(String::new(), |f| fmt(f.inclusive, 0));
                let (b, b_incl) = cell(inclusive.get(i), true);
                let (c, c_own) = cell(raw.get(i), false);
                let _ = writeln!(
                    s,
                    "| {} | {a} | {a_own} | {a_incl} | {b} | {b_incl} | {c} | {c_own} |",
                    i + 1
                );
            }
            s.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_callgrind_annotate_lines() {
        let text = "\
--------------------------------------------------------------------------------
Ir
--------------------------------------------------------------------------------
351,300,565  PROGRAM TOTALS

--------------------------------------------------------------------------------
Ir           file:function
--------------------------------------------------------------------------------
188,249,976  ./string/memmove-vec-unaligned-erms.S:__memcpy_avx_unaligned_erms [/usr/lib/libc.so.6]
 18,361,600  /root/tungstenite/src/protocol/frame/mask.rs:tungstenite::protocol::frame::frame::Frame::format_into_buf
  5,300,480  /rustc/library/core/src/slice/iter/macros.rs:tungstenite::protocol::frame::frame::Frame::format_into_buf
    236,041  src/mod.rs:<portnet::X as std::io::Read>::read [/work/subject]
";
        let table = parse(text, false);
        assert_eq!(table[TOTAL], 351_300_565);
        assert_eq!(table["__memcpy_avx_unaligned_erms"], 188_249_976);
        assert_eq!(
            table["tungstenite::protocol::frame::frame::Frame::format_into_buf"],
            23_662_080
        );
        assert_eq!(table["<portnet::X as std::io::Read>::read"], 236_041);
        assert_eq!(table.len(), 4);
        let inclusive = parse(text, true);
        assert_eq!(
            inclusive["tungstenite::protocol::frame::frame::Frame::format_into_buf"],
            18_361_600
        );
    }

    #[test]
    fn shortens_long_paths() {
        assert_eq!(
            short("portnet::backend::native::Processor::process_poll_event"),
            "portnet::…::native::Processor::process_poll_event"
        );
        assert_eq!(
            short("<portnet::backend::native::ws::WsStream as std::io::Read>::read"),
            "<portnet::…::native::ws::WsStream as std::io::Read>::read"
        );
        assert_eq!(
            short("portnet::node::NodeListener<S>::turn"),
            "portnet::node::NodeListener<S>::turn"
        );
        assert_eq!(short("__memcpy_avx_unaligned_erms"), "__memcpy_avx_unaligned_erms");
    }
}
