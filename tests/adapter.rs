//! A transport of our own, natively: the line protocol of `examples/line-protocol` (written with
//! the public adapter API only), mounted on real networks over loopback.

#[path = "../examples/line-protocol/lines.rs"]
mod lines;
mod util;

use lines::Lines;
use portnet::adapter::Carrier;
use portnet::adapters::tcp::{TcpConnectConfig, TcpListenConfig};
use portnet::network::{
    self, Endpoint, NetworkController, NetworkProcessor, SendStatus, StoredNetEvent, Transport,
    TransportConnect, TransportListen,
};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use util::ws::{capture_logs, logged};

/// How long a test waits for what it expects before failing.
const WATCHDOG: Duration = Duration::from_secs(20);

/// A network driven by the test's own thread, with the line protocol mounted.
struct Net {
    controller: NetworkController,
    processor: NetworkProcessor,
    lines: Transport,
    /// Events seen and not taken yet.
    seen: Vec<StoredNetEvent>,
}

impl Net {
    fn new(protocol: Lines) -> Self {
        Net::over(protocol, Carrier::Tcp)
    }

    fn over(protocol: Lines, carrier: Carrier) -> Self {
        let (controller, processor) = network::split();
        let lines = controller.mount_with(protocol, carrier).expect("mount");
        Net { controller, processor, lines, seen: Vec::new() }
    }

    /// A listener on a free loopback port.
    fn listen(&self) -> SocketAddr {
        self.controller.listen(self.lines, "127.0.0.1:0").expect("listen").1
    }

    /// Processes events until one matches `want` (then takes it out), failing after
    /// [`WATCHDOG`]. Earlier events stay in `seen`.
    fn wait(
        &mut self,
        what: &str,
        mut want: impl FnMut(&StoredNetEvent) -> bool,
    ) -> StoredNetEvent {
        let deadline = Instant::now() + WATCHDOG;
        loop {
            if let Some(at) = self.seen.iter().position(&mut want) {
                return self.seen.remove(at);
            }
            let now = Instant::now();
            assert!(now < deadline, "watchdog: no {what} after {WATCHDOG:?}; saw {:?}", self.seen);
            let seen = &mut self.seen;
            self.processor.process_poll_event(Some(deadline - now), |e| seen.push(e.into()));
        }
    }

    /// Processes whatever comes within `quiet` (for checking that nothing more arrives).
    fn settle(&mut self, quiet: Duration) {
        let seen = &mut self.seen;
        self.processor.process_poll_events_until_timeout(quiet, |e| seen.push(e.into()));
    }

    fn accepted(&mut self) -> Endpoint {
        match self.wait("Accepted", |e| matches!(e, StoredNetEvent::Accepted(..))) {
            StoredNetEvent::Accepted(endpoint, _) => endpoint,
            _ => unreachable!(),
        }
    }

    fn connected(&mut self, endpoint: Endpoint) {
        let event = self.wait(
            "Connected",
            |e| matches!(e, StoredNetEvent::Connected(ep, _) if *ep == endpoint),
        );
        assert!(matches!(event, StoredNetEvent::Connected(_, true)), "{event:?}");
    }

    fn message(&mut self, from: Endpoint) -> Vec<u8> {
        match self.wait("Message", |e| matches!(e, StoredNetEvent::Message(ep, _) if *ep == from)) {
            StoredNetEvent::Message(_, data) => data,
            _ => unreachable!(),
        }
    }

    fn disconnected(&mut self, endpoint: Endpoint) {
        self.wait(
            "Disconnected",
            |e| matches!(e, StoredNetEvent::Disconnected(ep) if *ep == endpoint),
        );
    }

    fn messages_of(&self, from: Endpoint) -> Vec<Vec<u8>> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                StoredNetEvent::Message(ep, data) if *ep == from => Some(data.clone()),
                _ => None,
            })
            .collect()
    }
}

/// A raw TCP client, reading with a timeout so a missing answer fails the test.
fn raw_client(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("raw connect");
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(WATCHDOG)).unwrap();
    stream
}

/// Reads from a raw client until `expected` bytes came (or fails).
fn read_exactly(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut got = vec![0; len];
    stream.read_exact(&mut got).expect("the echo");
    got
}

#[test]
fn echo_between_two_portnet_networks() {
    let mut server = Net::new(Lines::default());
    let addr = server.listen();
    let mut client = Net::new(Lines::default());
    assert_eq!(client.lines, server.lines, "the first mount of each network gets the same id");
    let (to_server, _) = client.controller.connect(client.lines, addr).expect("connect");
    assert_eq!(to_server.transport(), client.lines);
    client.connected(to_server);
    let at_server = server.accepted();
    assert_eq!(at_server.transport(), server.lines);

    assert_eq!(client.controller.send(to_server, "héllo".as_bytes()), SendStatus::Sent);
    assert_eq!(server.message(at_server), "héllo".as_bytes());
    assert_eq!(server.controller.send(at_server, b""), SendStatus::Sent, "an empty line");
    assert_eq!(server.controller.send(at_server, b"back"), SendStatus::Sent);
    assert_eq!(client.message(to_server), b"");
    assert_eq!(client.message(to_server), b"back");

    // remove ends the connection for the peer, as with a built-in.
    assert!(client.controller.remove(to_server.resource_id()));
    // The client's event thread (this one) carries out the close: its first turn sends the end.
    client.settle(Duration::from_millis(50));
    server.disconnected(at_server);
}

#[test]
fn connect_sync_and_options_work_as_for_a_builtin() {
    let mut server = Net::new(Lines::default());
    let config = TcpListenConfig::default().with_reuse_address();
    let (_, addr) = server
        .controller
        .listen_with(TransportListen::Custom(server.lines, config), "127.0.0.1:0")
        .expect("listen_with");
    let mut client = Net::new(Lines::default());
    let config = TcpConnectConfig::default().with_connect_timeout(Duration::from_secs(5));
    let (to_server, _) = client
        .controller
        .connect_sync_with(TransportConnect::Custom(client.lines, config), addr)
        .expect("connect_sync_with");
    assert_eq!(client.controller.is_ready(to_server.resource_id()), Some(true));
    assert_eq!(client.controller.send(to_server, b"sync"), SendStatus::Sent);
    client.connected(to_server);
    let at_server = server.accepted();
    assert_eq!(server.message(at_server), b"sync");
}

#[test]
fn many_messages_arrive_whole_and_in_order() {
    const COUNT: usize = 20_000;
    let mut server = Net::new(Lines::default());
    let addr = server.listen();
    let mut client = Net::new(Lines::default());
    let (to_server, _) = client.controller.connect(client.lines, addr).unwrap();
    client.connected(to_server);
    let at_server = server.accepted();
    // Lines of varying length, so reads split them at every kind of place.
    let line = |i: usize| format!("{i}:{}", "x".repeat(i % 300));
    for i in 0..COUNT {
        assert_eq!(client.controller.send(to_server, line(i).as_bytes()), SendStatus::Sent, "{i}");
    }
    for i in 0..COUNT {
        let got = server.message(at_server);
        assert_eq!(got, line(i).as_bytes(), "message {i}");
    }
}

#[test]
fn a_line_sent_byte_by_byte_arrives_once_whole() {
    let mut server = Net::new(Lines::default());
    let addr = server.listen();
    let mut raw = raw_client(addr);
    let at_server = server.accepted();
    for &byte in b"split in pieces" {
        raw.write_all(&[byte]).unwrap();
        // Let the server read each byte on its own (no event comes of it: no line yet).
        server.settle(Duration::from_millis(2));
    }
    assert!(server.messages_of(at_server).is_empty(), "no line before its newline");
    raw.write_all(b"\nand two\nmore lines\npart").unwrap();
    assert_eq!(server.message(at_server), b"split in pieces");
    assert_eq!(server.message(at_server), b"and two");
    assert_eq!(server.message(at_server), b"more lines");
    server.settle(Duration::from_millis(20));
    assert!(server.messages_of(at_server).is_empty(), "'part' has no newline yet");
    raw.write_all(b"ial\n").unwrap();
    assert_eq!(server.message(at_server), b"partial");

    // The encoder's trailer goes out after the message.
    assert_eq!(server.controller.send(at_server, b"echo"), SendStatus::Sent);
    assert_eq!(read_exactly(&mut raw, 5), b"echo\n");
}

#[test]
fn a_bad_line_ends_only_its_connection_with_a_reason() {
    capture_logs();
    let mut server = Net::new(Lines::default().with_max_line(100));
    let addr = server.listen();
    let mut good = raw_client(addr);
    let at_good = server.accepted();
    let mut bad = raw_client(addr);
    let at_bad = server.accepted();
    let mut long = raw_client(addr);
    let at_long = server.accepted();

    bad.write_all(b"fine\n\xff\xfe not text\nnever read\n").unwrap();
    assert_eq!(server.message(at_bad), b"fine");
    server.disconnected(at_bad);
    assert!(server.messages_of(at_bad).is_empty(), "nothing after the bad line: {:?}", server.seen);
    let reason = logged(&[&at_bad.addr().to_string(), "disconnected", "line 2 is not UTF-8"]);
    assert_eq!(reason.len(), 1, "the reason is logged once with the endpoint");
    // The server closed that socket: the raw peer reads its end.
    let mut rest = Vec::new();
    match bad.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty()),
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
    }

    // Over the maximum without a newline: refused before it is buffered whole.
    long.write_all(&[b'a'; 101]).unwrap();
    server.disconnected(at_long);
    assert_eq!(logged(&[&at_long.addr().to_string(), "longer than the maximum of 100"]).len(), 1);

    // The other connection goes on.
    good.write_all(b"still here\n").unwrap();
    assert_eq!(server.message(at_good), b"still here");
    assert_eq!(server.controller.send(at_good, b"yes"), SendStatus::Sent);
    assert_eq!(read_exactly(&mut good, 4), b"yes\n");
    // The send side refuses what the protocol cannot frame.
    assert_eq!(server.controller.send(at_good, b"two\nlines"), SendStatus::MaxPacketSizeExceeded);
    assert_eq!(server.controller.send(at_good, &[b'a'; 101]), SendStatus::MaxPacketSizeExceeded);
    assert_eq!(server.controller.send(at_good, b"\xff"), SendStatus::MaxPacketSizeExceeded);
    assert_eq!(server.controller.send(at_good, b"ok"), SendStatus::Sent);
    assert_eq!(read_exactly(&mut good, 3), b"ok\n", "nothing of the refused messages went out");
}

/// Carried over WebSocket: the same protocol between two networks, and on the wire one binary
/// WebSocket message per frame, whose payloads a decoder reads as a stream.
#[test]
fn a_transport_carried_over_websocket() {
    capture_logs();
    let mut server = Net::over(Lines::default().with_max_line(100), Carrier::WebSocket);
    let addr = server.listen();
    let mut client = Net::over(Lines::default(), Carrier::WebSocket);
    let (to_server, _) = client.controller.connect(client.lines, addr).expect("connect");
    // The handshake needs both ends running: drive them in turn until the client connects.
    let deadline = Instant::now() + WATCHDOG;
    while !client.seen.iter().any(|e| matches!(e, StoredNetEvent::Connected(..))) {
        assert!(Instant::now() < deadline, "watchdog: no Connected; saw {:?}", client.seen);
        server.settle(Duration::from_millis(5));
        client.settle(Duration::from_millis(5));
    }
    client.connected(to_server);
    let at_server = server.accepted();
    assert_eq!(at_server.transport(), server.lines);
    assert_eq!(client.controller.send(to_server, "héllo".as_bytes()), SendStatus::Sent);
    assert_eq!(server.message(at_server), "héllo".as_bytes());
    assert_eq!(server.controller.send(at_server, b"back"), SendStatus::Sent);
    assert_eq!(client.message(to_server), b"back");
    assert_eq!(client.controller.send(to_server, b"two\nlines"), SendStatus::MaxPacketSizeExceeded);

    // A plain WebSocket client (tungstenite) on its own thread: two lines in one message, and
    // a line split over two; it reads the server's one message back.
    let peer = std::thread::spawn(move || {
        let (mut ws, _) = tungstenite::connect(format!("ws://{addr}/")).expect("ws connect");
        ws.send(tungstenite::Message::binary(&b"one\ntwo\nthr"[..])).unwrap();
        ws.send(tungstenite::Message::binary(&b"ee\n"[..])).unwrap();
        let echo = ws.read().expect("the server's message");
        ws.send(tungstenite::Message::binary(vec![b'a'; 101])).unwrap();
        // The server ends the connection: reads end with an error or a close.
        let end = loop {
            match ws.read() {
                Ok(tungstenite::Message::Close(_)) => continue,
                Ok(other) => panic!("after the bad line: {other:?}"),
                Err(e) => break e.to_string(),
            }
        };
        (echo, end)
    });
    let at_peer = server.accepted();
    assert_eq!(server.message(at_peer), b"one");
    assert_eq!(server.message(at_peer), b"two");
    assert_eq!(server.message(at_peer), b"three");
    assert_eq!(server.controller.send(at_peer, b"ack"), SendStatus::Sent);
    server.disconnected(at_peer);
    assert_eq!(logged(&[&at_peer.addr().to_string(), "longer than the maximum of 100"]).len(), 1);
    let (echo, end) = peer.join().expect("the WebSocket peer");
    assert_eq!(echo, tungstenite::Message::binary(&b"ack\n"[..]), "one binary message per frame");
    assert!(!end.is_empty());
    // The other connection goes on.
    assert_eq!(client.controller.send(to_server, b"still"), SendStatus::Sent);
    assert_eq!(server.message(at_server), b"still");

    // An echo that sends from inside the delivery of a message (while its decoder runs), on a
    // thread of its own: not joined if the echo never comes, so a deadlock fails, not hangs.
    let (controller, mut processor) = network::split();
    let lines = controller.mount_with(Lines::default(), Carrier::WebSocket).expect("mount");
    let (_, echo_addr) = controller.listen(lines, "127.0.0.1:0").expect("listen");
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let echoing = running.clone();
    let echo = std::thread::spawn(move || {
        while echoing.load(std::sync::atomic::Ordering::Acquire) {
            processor.process_poll_event(Some(Duration::from_millis(10)), |event| {
                if let network::NetEvent::Message(endpoint, data) = event {
                    assert_eq!(controller.send(endpoint, data), SendStatus::Sent);
                }
            });
        }
    });
    let (to_echo, _) = client.controller.connect(client.lines, echo_addr).expect("connect");
    client.connected(to_echo);
    assert_eq!(client.controller.send(to_echo, b"ping"), SendStatus::Sent);
    assert_eq!(client.message(to_echo), b"ping");
    running.store(false, std::sync::atomic::Ordering::Release);
    echo.join().expect("the echo thread");
}

#[test]
fn mount_errors_say_what_is_wrong() {
    let (controller, _processor) = network::split();
    // A built-in inside `Custom`.
    let err = controller
        .connect_with(
            TransportConnect::Custom(Transport::FramedTcp, Default::default()),
            "127.0.0.1:1",
        )
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    // A transport another network mounted.
    let other = Net::new(Lines::default());
    let err = controller.connect(other.lines, "127.0.0.1:1").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("not mounted"), "{err}");
    let err = controller.listen(other.lines, "127.0.0.1:0").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    // Every id a resource id can carry, then no more.
    let mut mounted = Vec::new();
    for _ in 0..124 {
        mounted.push(controller.mount(Lines::default()).expect("a mount within the ids"));
    }
    let ids: Vec<u8> = mounted.iter().map(|t| t.id()).collect();
    assert_eq!(ids, (4..=127).collect::<Vec<u8>>());
    let err = controller.mount(Lines::default()).unwrap_err();
    assert!(err.to_string().contains("124 mounted"), "{err}");
    // The last one works.
    let (_, addr) = controller.listen(mounted[123], "127.0.0.1:0").expect("the 124th listens");
    let (endpoint, _) = controller.connect(mounted[123], addr).expect("the 124th connects");
    assert_eq!(endpoint.resource_id().adapter_id(), 127);
    assert_eq!(endpoint.transport(), mounted[123]);
}

#[test]
fn a_simulated_node_mounts_as_a_native_network_does() {
    use portnet::node::{NodeHandler, NodeListener};
    use std::sync::{Arc, Mutex};
    type Seen = (Vec<u8>, io::ErrorKind, io::ErrorKind, Option<bool>);
    let result: Arc<Mutex<Option<Seen>>> = Arc::default();
    let mut world = portnet::sim::World::with_seed(1);
    let seen = result.clone();
    world.node("node", move |handler: NodeHandler<()>, _listener: NodeListener<()>| {
        let network = handler.network();
        // Ids from the first a mount can have, per network, as natively.
        let ids = (0..3).map(|_| network.mount(Lines::default()).expect("mount").id()).collect();
        // A transport of the world's node that it did not mount (the native network mounted
        // one more), and a built-in inside `Custom`.
        let native = Net::new(Lines::default());
        let mut unmounted = native.lines;
        for _ in 0..3 {
            unmounted = native.controller.mount(Lines::default()).unwrap();
        }
        let not_mounted = network.connect(unmounted, "node:1").map(|_| ()).unwrap_err().kind();
        let builtin = TransportConnect::Custom(Transport::FramedTcp, Default::default());
        let builtin = network.connect_with(builtin, "node:1").map(|_| ()).unwrap_err().kind();
        // A mounted one listens and connects.
        let lines = Transport::Custom(portnet::adapter::AdapterId::new(4).unwrap());
        let (id, _) = network.listen(lines, "0.0.0.0:7").expect("listen");
        let (endpoint, _) = network.connect(lines, "node:7").expect("connect");
        assert_eq!(id.adapter_id(), 4);
        *seen.lock().unwrap() =
            Some((ids, not_mounted, builtin, network.is_ready(endpoint.resource_id())));
    });
    world.run_until_idle();
    let result = result.lock().unwrap().take().expect("the node ran");
    let ids = vec![4, 5, 6];
    let expected = (ids, io::ErrorKind::NotFound, io::ErrorKind::InvalidInput, Some(false));
    assert_eq!(result, expected);
}
