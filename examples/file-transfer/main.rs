//! Sends a file over `FramedTcp`, as fast as the receiver takes it and no faster.
//!
//! ```text
//! cargo run --example file-transfer                          # send a generated file locally
//! cargo run --example file-transfer recv [<ip>:<port> [<dir>]]   # default 127.0.0.1:3005, .
//! cargo run --example file-transfer send <file> [<ip>:<port>]
//! ```
//!
//! The sender sends chunks until `send` answers `SendStatus::QueueFull`, then asks for a
//! signal when the queue has room (`NodeHandler::signal_when_writable`) and carries on from
//! there: its pace is the receiver's, with no timers and bounded memory.

mod protocol;
mod receiver;
mod sender;

use portnet::node;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

const DEFAULT_ADDR: &str = "127.0.0.1:3005";

fn usage() -> ExitCode {
    eprintln!(
        "Usage: file-transfer                                  (a local run)\n       \
         file-transfer recv [<ip>:<port> [<dir>]]\n       \
         file-transfer send <file> [<ip>:<port>]"
    );
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    env_logger::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let parse_addr = |addr: Option<&&str>| addr.copied().unwrap_or(DEFAULT_ADDR).parse();
    match args[..] {
        [] => local_run(),
        ["recv", ref rest @ ..] if rest.len() <= 2 => {
            let Ok(listen_addr) = parse_addr(rest.first()) else { return usage() };
            let dir = PathBuf::from(rest.get(1).copied().unwrap_or("."));
            let config =
                receiver::Config { listen_addr, dir, files_to_receive: None, slow_disk: None };
            let (handler, listener) = node::split();
            match receiver::receive_files(handler, listener, config, |_| ()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("Cannot receive on {listen_addr}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        ["send", file, ref rest @ ..] if rest.len() <= 1 => {
            let Ok(receiver_addr) = parse_addr(rest.first()) else { return usage() };
            let (handler, listener) = node::split();
            match sender::send_file(handler, listener, Path::new(file), receiver_addr) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("Transfer failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => usage(),
    }
}

/// Generates a file, sends it to a receiver in this process and compares the copy.
fn local_run() -> ExitCode {
    let dir = std::env::temp_dir().join(format!("portnet-file-transfer-{}", std::process::id()));
    let result = send_generated_file(&dir);
    let _ = fs::remove_dir_all(&dir);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn send_generated_file(dir: &Path) -> Result<(), String> {
    let source = dir.join("sample.bin");
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // Not a multiple of the chunk size, so the last chunk is a short one.
    let content = pseudo_random_bytes(32 * 1024 * 1024 + 12345);
    fs::write(&source, &content).map_err(|e| format!("cannot write {}: {e}", source.display()))?;

    let (addr_sender, addr_receiver) = mpsc::channel::<SocketAddr>();
    let receiver = {
        let config = receiver::Config {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir: dir.to_path_buf(),
            files_to_receive: Some(1),
            // Slower than the network, so the sender's queue fills and it waits.
            slow_disk: Some(Duration::from_millis(1)),
        };
        let (handler, listener) = node::split();
        // The receiver stops once the sender leaves; the watchdog covers the case it never does.
        handler.signals().send_with_timer((), Duration::from_secs(30));
        let stopper = handler.clone();
        let thread = thread::spawn(move || {
            receiver::receive_files(handler, listener, config, |addr| {
                let _ = addr_sender.send(addr);
            })
        });
        (thread, stopper)
    };
    let receiver_addr = addr_receiver.recv().map_err(|_| "the receiver did not start")?;

    let (handler, listener) = node::split();
    handler.signals().send_with_timer(sender::Signal::GiveUp, Duration::from_secs(30));
    let sent = sender::send_file(handler, listener, &source, receiver_addr);
    let (receiver_thread, receiver_handler) = receiver;
    if sent.is_err() {
        receiver_handler.stop();
    }
    let _ = receiver_thread.join();
    sent?;

    let copy = dir.join("sample.bin.recv");
    let received = fs::read(&copy).map_err(|e| format!("cannot read {}: {e}", copy.display()))?;
    if received != content {
        return Err(format!("{} differs from what was sent", copy.display()));
    }
    println!("The copy is identical to the original ({} bytes).", content.len());
    Ok(())
}

/// Deterministic noise (xorshift64), so corruption or reordering would show in the comparison.
fn pseudo_random_bytes(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
