//! A `Ws` test node and log capture, shared by tests/ws_tls.rs and tests/ws_options.rs.

use portnet::adapters::ws::{WsConnectConfig, WsListenConfig};
use portnet::network::{Endpoint, MessageKind, NetEvent, SendStatus, WsClose, WsHandshake};
use portnet::node::{self, NodeEvent, NodeHandler, NodeTask};
use std::net::SocketAddr;
use std::sync::{Mutex, Once, mpsc};
use std::time::Duration;

/// How long a test waits for any one thing it expects.
pub const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Logs: the refusals must be logged with their reason.

pub static LOGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub struct Capture;

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Debug && metadata.target().starts_with("portnet")
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            LOGS.lock().unwrap().push(record.args().to_string());
        }
    }

    fn flush(&self) {}
}

pub fn capture_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        log::set_logger(&Capture).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Debug);
    });
}

/// The captured lines that contain every one of `needles`.
pub fn logged(needles: &[&str]) -> Vec<String> {
    LOGS.lock().unwrap().iter().filter(|l| needles.iter().all(|n| l.contains(n))).cloned().collect()
}

/// Asserts a line mentioning `addr` was logged and contains one of `reasons`.
pub fn assert_logged(addr: &str, reasons: &[&str]) {
    let lines = logged(&[addr]);
    assert!(
        lines.iter().any(|l| reasons.iter().any(|r| l.to_lowercase().contains(r))),
        "no log line about {addr} gives one of {reasons:?}; lines about it: {lines:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// A node on its own thread reporting what it saw, with what only its callback can ask.

#[derive(Debug)]
#[allow(dead_code)] // `EchoFailed` is read through Debug, in failure messages
pub enum Seen {
    Connected(Endpoint, bool),
    Accepted(Endpoint, Option<WsHandshake>),
    Message(Endpoint, MessageKind, Vec<u8>),
    Disconnected(Endpoint, Option<WsClose>),
    EchoFailed(Endpoint, SendStatus),
}

pub struct Node {
    pub handler: NodeHandler<()>,
    pub events: mpsc::Receiver<Seen>,
    _task: NodeTask,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.handler.stop(); // then `_task` waits for the thread
    }
}

impl Node {
    /// A node; with `echo`, it answers text with text and binary with binary.
    pub fn start(echo: bool) -> Self {
        capture_logs();
        let (handler, listener) = node::split::<()>();
        let (sender, events) = mpsc::channel();
        let node = handler.clone();
        let task = listener.for_each_async(move |event| {
            let NodeEvent::Network(event) = event else { return };
            let network = node.network();
            let seen = match event {
                NetEvent::Connected(ep, ok) => Seen::Connected(ep, ok),
                NetEvent::Accepted(ep, _) => Seen::Accepted(ep, network.ws_handshake(ep)),
                NetEvent::Message(ep, data) => {
                    let kind = network.message_kind(ep);
                    if echo {
                        let status = match (kind, std::str::from_utf8(data)) {
                            (MessageKind::Text, Ok(text)) => network.send_text(ep, text),
                            _ => network.send(ep, data),
                        };
                        if status != SendStatus::Sent {
                            let _ = sender.send(Seen::EchoFailed(ep, status));
                        }
                    }
                    Seen::Message(ep, kind, data.to_vec())
                }
                NetEvent::Disconnected(ep) => Seen::Disconnected(ep, network.ws_close(ep)),
            };
            let _ = sender.send(seen);
        });
        Node { handler, events, _task: task }
    }

    /// An echo server listening with `config` on loopback.
    pub fn server(config: WsListenConfig) -> (Self, SocketAddr) {
        let node = Self::start(true);
        let (_, addr) = node.handler.network().listen_with(config.into(), "127.0.0.1:0").unwrap();
        (node, addr)
    }

    pub fn next(&self, what: &str) -> Seen {
        self.events
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("nothing within {WAIT:?} while waiting for {what}"))
    }

    pub fn connected(&self, endpoint: Endpoint) -> bool {
        match self.next("Connected") {
            Seen::Connected(ep, ok) if ep == endpoint => ok,
            other => panic!("expected Connected({endpoint}, _), got {other:?}"),
        }
    }

    pub fn accepted(&self) -> (Endpoint, Option<WsHandshake>) {
        match self.next("Accepted") {
            Seen::Accepted(ep, handshake) => (ep, handshake),
            other => panic!("expected Accepted, got {other:?}"),
        }
    }

    pub fn message(&self, endpoint: Endpoint) -> (MessageKind, Vec<u8>) {
        match self.next("a message") {
            Seen::Message(ep, kind, data) if ep == endpoint => (kind, data),
            other => panic!("expected a message from {endpoint}, got {other:?}"),
        }
    }

    pub fn disconnected(&self, endpoint: Endpoint) -> Option<WsClose> {
        match self.next("Disconnected") {
            Seen::Disconnected(ep, close) if ep == endpoint => close,
            other => panic!("expected Disconnected({endpoint}), got {other:?}"),
        }
    }

    /// Asserts nothing more was reported (what a refusal must not cause).
    pub fn quiet(&self) {
        if let Ok(seen) = self.events.try_recv() {
            panic!("unexpected event: {seen:?}");
        }
    }

    pub fn connect(&self, config: WsConnectConfig, url: &str) -> Endpoint {
        self.handler.network().connect_with(config.into(), url).unwrap().0
    }
}

/// `client` sends `data` on `ep` (text or binary); the echo server sees it on `server_ep` and
/// the same kind comes back.
pub fn round_trip(
    client: &Node,
    ep: Endpoint,
    server: &Node,
    server_ep: Endpoint,
    kind: MessageKind,
    data: &[u8],
) {
    let network = client.handler.network();
    let status = match kind {
        MessageKind::Text => network.send_text(ep, std::str::from_utf8(data).unwrap()),
        MessageKind::Binary => network.send(ep, data),
    };
    assert_eq!(status, SendStatus::Sent, "send of {} bytes", data.len());
    let (got_kind, got) = server.message(server_ep);
    assert_eq!(got_kind, kind, "server: kind of a {}-byte message", data.len());
    assert!(got == data, "server got {} bytes, not the {} sent", got.len(), data.len());
    let (got_kind, got) = client.message(ep);
    assert_eq!(got_kind, kind, "client: kind of the {}-byte echo", data.len());
    assert!(got == data, "client got {} bytes back, not the {} sent", got.len(), data.len());
}

/// A client connects with `config` to `url`, is accepted and round-trips a small message:
/// the server still serves.
pub fn good_client(
    server: &Node,
    config: WsConnectConfig,
    url: &str,
) -> (Node, Endpoint, Endpoint) {
    let client = Node::start(false);
    let ep = client.connect(config, url);
    assert!(client.connected(ep), "good client to {url} refused");
    let (server_ep, _) = server.accepted();
    round_trip(&client, ep, server, server_ep, MessageKind::Binary, b"still serving");
    (client, ep, server_ep)
}

/// [`good_client`], then the client goes and the server sees it go.
pub fn still_serves(server: &Node, config: WsConnectConfig, url: &str) {
    let (client, _, server_ep) = good_client(server, config, url);
    drop(client);
    server.disconnected(server_ep);
}
