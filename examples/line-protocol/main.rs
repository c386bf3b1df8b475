//! A transport of your own: a newline-delimited text protocol ([`lines::Lines`]), mounted on a
//! node's network and used exactly like a built-in transport.
//!
//! ```sh
//! cargo run --features adapter --example line-protocol server 127.0.0.1:3042
//! printf 'hello\nworld\n' | nc 127.0.0.1 3042        # any line tool talks to it
//! cargo run --features adapter --example line-protocol client 127.0.0.1:3042 "hello there"
//! ```
//!
//! Without arguments it runs both ends in one process and exits.

mod lines;

use lines::Lines;
use portnet::network::{NetEvent, Transport};
use portnet::node::{self, NodeEvent};
use std::net::SocketAddr;

/// Echoes every line, upper-cased, until stopped.
fn server(addr: &str) {
    let (handler, listener) = node::split::<()>();
    // A peer sending a longer line is disconnected, with the reason in the log.
    let lines = handler.network().mount(Lines::default().with_max_line(4096)).expect("mount");
    let (_, local) = handler.network().listen(lines, addr).expect("listen");
    println!("echoing lines on {local} ({lines})");
    listener.for_each(move |event| match event {
        NodeEvent::Network(NetEvent::Accepted(endpoint, _)) => println!("{endpoint} connected"),
        NodeEvent::Network(NetEvent::Message(endpoint, line)) => {
            let text = String::from_utf8_lossy(line).to_uppercase();
            handler.network().send(endpoint, text.as_bytes());
        }
        NodeEvent::Network(NetEvent::Disconnected(endpoint)) => println!("{endpoint} left"),
        _ => (),
    });
}

/// Sends one line and prints the answer.
fn client(addr: SocketAddr, text: String, lines: Option<Transport>) {
    let (handler, listener) = node::split::<()>();
    let lines = match lines {
        // The server's network gave the id; this one mounts the protocol again, and in the same
        // order gets the same id.
        Some(expected) => {
            let lines = handler.network().mount(Lines::default()).expect("mount");
            assert_eq!(lines, expected);
            lines
        }
        None => handler.network().mount(Lines::default()).expect("mount"),
    };
    let (server, _) = handler.network().connect(lines, addr).expect("connect");
    listener.for_each(move |event| match event {
        NodeEvent::Network(NetEvent::Connected(_, true)) => {
            handler.network().send(server, text.as_bytes());
        }
        NodeEvent::Network(NetEvent::Connected(_, false)) => {
            eprintln!("could not connect to {addr}");
            handler.stop();
        }
        NodeEvent::Network(NetEvent::Message(_, line)) => {
            println!("{}", String::from_utf8_lossy(line));
            handler.stop();
        }
        NodeEvent::Network(NetEvent::Disconnected(_)) => handler.stop(),
        _ => (),
    });
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("server") => server(args.get(1).map_or("127.0.0.1:3042", String::as_str)),
        Some("client") => {
            let addr = args.get(1).and_then(|a| a.parse().ok()).unwrap_or_else(|| {
                eprintln!("usage: line-protocol client <addr> [text]");
                std::process::exit(2)
            });
            client(addr, args.get(2).cloned().unwrap_or_else(|| "hello".into()), None)
        }
        _ => {
            // Both ends here: a server node on its own thread, a client that stops it.
            let (handler, listener) = node::split::<()>();
            let lines = handler.network().mount(Lines::default()).expect("mount");
            let (_, addr) = handler.network().listen(lines, "127.0.0.1:0").expect("listen");
            let stopper = handler.clone();
            let thread = std::thread::spawn(move || {
                listener.for_each(move |event| {
                    if let NodeEvent::Network(NetEvent::Message(endpoint, line)) = event {
                        let text = String::from_utf8_lossy(line).to_uppercase();
                        handler.network().send(endpoint, text.as_bytes());
                    }
                })
            });
            client(addr, "hello from a transport of my own".into(), Some(lines));
            stopper.stop();
            thread.join().expect("the server thread");
        }
    }
}
