//! A discovery server and participants that find each other through it, then talk directly.
//!
//! ```text
//! cargo run --example distributed                               # server + 3 participants, local
//! cargo run --example distributed discovery-server              # at 127.0.0.1:5000
//! cargo run --example distributed participant alice             # in other terminals
//! cargo run --example distributed participant bob 127.0.0.1:5000
//! ```
//!
//! Participants register over `FramedTcp` and greet each other over `Udp`. The roles are
//! plain functions of a `NodeHandler` and `NodeListener` ([`discovery::discovery_server`],
//! [`participant::participant`]), so the same code can run on any portnet backend.

mod discovery;
mod participant;
mod protocol;

use portnet::node;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

const DEFAULT_DISCOVERY_ADDR: &str = "127.0.0.1:5000";

fn usage() -> ExitCode {
    eprintln!(
        "Usage: distributed                                (a local run)\n       \
         distributed discovery-server [<ip>:<port>]\n       \
         distributed participant <name> [<discovery ip>:<port>]"
    );
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    env_logger::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let parse_addr = |addr: Option<&&str>| addr.copied().unwrap_or(DEFAULT_DISCOVERY_ADDR).parse();
    match args[..] {
        [] => local_run(),
        ["discovery-server", ref rest @ ..] if rest.len() <= 1 => {
            let Ok(addr) = parse_addr(rest.first()) else { return usage() };
            let (handler, listener) = node::split();
            match discovery::discovery_server(handler, listener, addr, |_| ()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("cannot run the discovery server: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        ["participant", name, ref rest @ ..] if rest.len() <= 1 => {
            let Ok(discovery_addr) = parse_addr(rest.first()) else { return usage() };
            if !protocol::is_valid_name(name) {
                eprintln!("a name is one word of at most 32 characters, without '='");
                return ExitCode::FAILURE;
            }
            let config = participant::Config {
                name: name.to_string(),
                discovery_addr,
                udp_addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
                leave_after: None,
            };
            let (handler, listener) = node::split();
            match participant::participant(handler, listener, config) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("cannot run the participant: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => usage(),
    }
}

/// A discovery server and three participants in this process; each participant must be
/// greeted by the other two before it leaves.
fn local_run() -> ExitCode {
    let (server_handler, server_listener) = node::split();
    let (addr_sender, addr_receiver) = mpsc::channel();
    let server = {
        let handler = server_handler.clone();
        let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        thread::spawn(move || {
            discovery::discovery_server(handler, server_listener, local, |addr| {
                let _ = addr_sender.send(addr);
            })
        })
    };
    let Ok(discovery_addr) = addr_receiver.recv() else {
        if let Ok(Err(e)) = server.join() {
            eprintln!("cannot run the discovery server: {e}");
        }
        return ExitCode::FAILURE;
    };

    let names = ["alice", "bob", "carol"];
    let participants: Vec<_> = names
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let config = participant::Config {
                name: name.to_string(),
                discovery_addr,
                udp_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                // Staggered, so the others see each departure.
                leave_after: Some(Duration::from_millis(300 + 100 * i as u64)),
            };
            thread::spawn(move || {
                let (handler, listener) = node::split();
                participant::participant(handler, listener, config)
            })
        })
        .collect();

    let mut everyone_greeted = true;
    for (name, participant) in names.into_iter().zip(participants) {
        let greeted_by = match participant.join() {
            Ok(Ok(greeted_by)) => greeted_by,
            Ok(Err(e)) => {
                println!("{name} could not run: {e}");
                Default::default()
            }
            Err(_) => Default::default(),
        };
        for other in names.into_iter().filter(|other| *other != name) {
            if !greeted_by.contains(other) {
                println!("{name} was never greeted by {other}");
                everyone_greeted = false;
            }
        }
    }
    server_handler.stop();
    let _ = server.join();
    if everyone_greeted {
        println!("Every participant was greeted by every other one.");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
