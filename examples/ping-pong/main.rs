//! A server that answers pings and clients that ping it on a timer, over any transport.
//!
//! ```text
//! cargo run --example ping-pong                                  # a short local run, every transport
//! cargo run --example ping-pong server tcp 3042
//! cargo run --example ping-pong client tcp 127.0.0.1:3042
//! cargo run --example ping-pong client ws ws://127.0.0.1:3042/any/path 5   # stop after 5 pings
//! ```

mod client;
mod common;
mod server;

use portnet::network::{RemoteAddr, ToRemoteAddr, Transport};
use portnet::node;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

fn usage() -> ExitCode {
    eprintln!(
        "Usage: ping-pong                                  (a short local run)\n       \
         ping-pong server <transport> <port>\n       \
         ping-pong client <transport> (<ip>:<port> | <ws-url>) [<pings>]\n\
         transports: {}",
        common::TRANSPORT_NAMES
    );
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    env_logger::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args[..] {
        [] => local_run(),
        ["server", transport, port] => {
            let (Some(transport), Ok(port)) = (common::parse_transport(transport), port.parse())
            else {
                return usage();
            };
            server::run(transport, SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)));
            ExitCode::SUCCESS
        }
        ["client", transport, remote, ref rest @ ..] if rest.len() <= 1 => {
            let Some(transport) = common::parse_transport(transport) else { return usage() };
            let limit = match rest.first().map(|n| n.parse::<u64>()) {
                None => None,
                Some(Ok(n)) => Some(n),
                Some(Err(_)) => return usage(),
            };
            let remote = match remote.to_remote_addr() {
                Ok(remote) => remote,
                Err(e) => {
                    eprintln!("Bad address {remote}: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let all_answered = client::run(transport, remote, limit, Duration::from_secs(1));
            if all_answered { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        _ => usage(),
    }
}

/// Server and client in one process: three pings over each transport.
fn local_run() -> ExitCode {
    let mut all_answered = true;
    for transport in Transport::ALL {
        println!("--- {transport} ---");
        let (handler, listener) = node::split();
        let addr = match handler.network().listen(transport, "127.0.0.1:0") {
            Ok((_, addr)) => addr,
            Err(e) => {
                eprintln!("Cannot listen with {transport}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let server = {
            let handler = handler.clone();
            thread::spawn(move || server::serve(handler, listener))
        };
        let remote = RemoteAddr::Socket(addr);
        all_answered &= client::run(transport, remote, Some(3), Duration::from_millis(100));
        handler.stop();
        let _ = server.join();
    }
    if all_answered { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
