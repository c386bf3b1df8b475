//! The native peer of the browser tests (`tests/browser.rs`, run by `tests/browser.sh`).
//!
//! Listens on ephemeral 127.0.0.1 ports and writes them to the file named by the first
//! argument as `echo,refused,text,silent,proto,wss,lines`:
//! - `echo`: a portnet `Ws` server that echoes every message, except `close`, on which it
//!   closes the connection (a server-side close), and `peers`, which it answers with
//!   `peers: N`, the number of clients connected;
//! - `refused`: a port that was just listened on and closed again: connects there are refused;
//! - `text`: a plain tungstenite server that greets each client with a text frame, then echoes
//!   text as text and binary as binary, and answers the text `close` with a Close frame (code
//!   4000, reason `bye`);
//! - `silent`: accepts TCP connections and never answers, so a handshake there times out;
//! - `proto`: the echo server again, agreeing on the subprotocol `chat.v1` when offered;
//! - `wss`: the echo server again, over TLS (`wss://`), with a certificate for `localhost` and
//!   `127.0.0.1` made at start and written, as PEM, to `<ports file>.cert.pem` (the test
//!   script tells Chromium to trust it).
//!
//! - `lines`: the echo server again, speaking the line protocol of `examples/line-protocol`
//!   (lines of at most 100 bytes) carried over WebSocket (`Carrier::WebSocket`): a transport
//!   defined outside portnet, for the page to speak too.
//!
//! Runs until killed. Needs the `adapter` feature.

#[path = "line-protocol/lines.rs"]
mod lines;

use portnet::adapter::Carrier;
use portnet::adapters::ws::WsListenConfig;
use portnet::network::{Endpoint, NetEvent, SendStatus, Transport};
use portnet::node::{self, NodeEvent, NodeHandler};
use std::collections::{HashMap, VecDeque};
use std::net::TcpListener;
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

/// The text frame the `text` server sends first.
const GREETING: &str = "héllo, browser ✓";

fn main() {
    let Some(ports_file) = std::env::args().nth(1) else {
        eprintln!("usage: browser-test-server <file to write the ports to>");
        std::process::exit(2);
    };
    let (handler, listener) = node::split::<Endpoint>();
    let network = handler.network();
    let (_, echo) = network.listen(Transport::Ws, "127.0.0.1:0").expect("listen (echo)");
    let (closed, refused) = network.listen(Transport::Ws, "127.0.0.1:0").expect("listen (refused)");
    network.remove(closed);
    let chat = WsListenConfig::default().with_subprotocols(["chat.v1"]);
    let (_, proto) = network.listen_with(chat.into(), "127.0.0.1:0").expect("listen (proto)");
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let certified = rcgen::generate_simple_self_signed(names).expect("a test certificate");
    let cert = certified.cert.pem();
    std::fs::write(format!("{ports_file}.cert.pem"), &cert).expect("write the certificate");
    let tls = WsListenConfig::default().with_tls(cert, certified.signing_key.serialize_pem());
    let (_, wss) = network.listen_with(tls.into(), "127.0.0.1:0").expect("listen (wss)");
    let short_lines = lines::Lines::default().with_max_line(100);
    let lines = network.mount_with(short_lines, Carrier::WebSocket).expect("mount the lines");
    let (_, lines) = network.listen(lines, "127.0.0.1:0").expect("listen (lines)");

    let text = TcpListener::bind("127.0.0.1:0").expect("bind (text)");
    let text_port = text.local_addr().expect("text address").port();
    std::thread::spawn(move || {
        for stream in text.incoming().flatten() {
            std::thread::spawn(move || {
                let Ok(mut ws) = tungstenite::accept(stream) else { return };
                if ws.send(Message::text(GREETING)).is_err() {
                    return;
                }
                // Echoes text as text and binary as binary; `close` gets a Close frame.
                while let Ok(message) = ws.read() {
                    let sent = match message {
                        Message::Text(text) if text.as_str() == "close" => {
                            ws.close(Some(CloseFrame {
                                code: CloseCode::from(4000),
                                reason: "bye".into(),
                            }))
                        }
                        message @ (Message::Text(_) | Message::Binary(_)) => ws.send(message),
                        _ => Ok(()),
                    };
                    if sent.is_err() {
                        break;
                    }
                }
                // Lets the Close handshake finish before the socket goes.
                while ws.flush().is_ok() && ws.read().is_ok() {}
            });
        }
    });

    // Accepts TCP connections and never answers: a WebSocket handshake there times out.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind (silent)");
    let silent_port = silent.local_addr().expect("silent address").port();
    std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().collect();
        drop(held);
    });

    let ports = format!(
        "{},{},{},{silent_port},{},{},{}",
        echo.port(),
        refused.port(),
        text_port,
        proto.port(),
        wss.port(),
        lines.port()
    );
    // Written whole, then renamed: a reader never sees half a line.
    let partial = format!("{ports_file}.partial");
    std::fs::write(&partial, &ports).expect("write the ports");
    std::fs::rename(&partial, &ports_file).expect("publish the ports");
    println!("browser test server: ports {ports} (echo, refused, text, silent, proto, wss, lines)");

    // Per connected client, the echoes waiting while it is slow to read, in order.
    let mut backlog: HashMap<Endpoint, VecDeque<Vec<u8>>> = HashMap::new();
    listener.for_each(move |event| match event {
        NodeEvent::Network(NetEvent::Accepted(endpoint, _)) => {
            backlog.insert(endpoint, VecDeque::new());
        }
        NodeEvent::Network(NetEvent::Message(endpoint, b"close")) => {
            backlog.remove(&endpoint);
            handler.network().remove(endpoint.resource_id());
        }
        NodeEvent::Network(NetEvent::Message(endpoint, b"peers")) => {
            let peers = format!("peers: {}", backlog.len());
            handler.network().send(endpoint, peers.as_bytes());
        }
        NodeEvent::Network(NetEvent::Message(endpoint, data)) => {
            let Some(queue) = backlog.get_mut(&endpoint) else { return };
            queue.push_back(data.to_vec());
            if queue.len() == 1 {
                flush(&handler, endpoint, queue);
            }
        }
        NodeEvent::Signal(endpoint) => {
            if let Some(queue) = backlog.get_mut(&endpoint) {
                flush(&handler, endpoint, queue);
            }
        }
        NodeEvent::Network(NetEvent::Disconnected(endpoint)) => {
            backlog.remove(&endpoint);
        }
        NodeEvent::Network(_) => (),
    });
}

/// Sends what waits for `endpoint` until its queue is full; then waits until it is writable.
fn flush(handler: &NodeHandler<Endpoint>, endpoint: Endpoint, queue: &mut VecDeque<Vec<u8>>) {
    while let Some(message) = queue.front() {
        match handler.network().send(endpoint, message) {
            SendStatus::QueueFull => return handler.signal_when_writable(endpoint, endpoint),
            SendStatus::Sent => (),
            status => eprintln!("browser test server: echo to {endpoint} failed: {status:?}"),
        }
        queue.pop_front();
    }
}
