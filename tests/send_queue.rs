//! The per-connection send queue: bounded, ordered, flushed after `remove` and after the node
//! stops, so what `send` accepted reaches a peer that reads late.

mod util;

use portnet::adapters::framed_tcp::FramedTcpConnectConfig;
use portnet::network::{SendStatus, TransportConnect};
use portnet::node::{self, NodeEvent};
use portnet::util::encoding::Decoder;
use std::io::Read;
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;
use util::{Watchdog, check_payload, payload};

const MESSAGE: usize = 100 * 1024;

/// A peer that reads nothing until told, then counts the intact frames until the connection
/// closes.
fn late_reader() -> (std::net::SocketAddr, mpsc::Sender<()>, std::thread::JoinHandle<u32>) {
    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = peer.local_addr().unwrap();
    let (start, started) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let (mut socket, _) = peer.accept().unwrap();
        socket.set_read_timeout(Some(util::WATCHDOG)).unwrap();
        let _ = started.recv_timeout(util::WATCHDOG);
        let mut decoder = Decoder::default();
        let (mut next, mut buf) = (0, vec![0; 1 << 16]);
        loop {
            let n = socket.read(&mut buf).expect("read (watchdog timeout?)");
            if n == 0 {
                return next;
            }
            decoder
                .decode(&buf[..n], |frame| {
                    assert_eq!(check_payload(frame), next, "frames out of order");
                    next += 1;
                })
                .expect("a malformed frame: a message was cut");
        }
    });
    (addr, start, reader)
}

/// Longer than any flush here could take (the reader takes everything it is sent).
const FLUSH_LINGER: Duration = Duration::from_secs(120);

/// Sends `count` messages, returns how many `Sent`.
fn send_burst(
    handler: &node::NodeHandler<()>,
    endpoint: portnet::network::Endpoint,
    count: u32,
) -> u32 {
    let mut sent = 0;
    for index in 0..count {
        match handler.network().send(endpoint, &payload(sent, MESSAGE)) {
            SendStatus::Sent => sent += 1,
            SendStatus::QueueFull => (),
            status => panic!("message {index}: {status:?}"),
        }
    }
    sent
}

/// A connect timeout shorter than the linger must not cut the flush of a removed connection.
#[test]
fn removed_connection_flushes_to_a_late_reader() {
    let (addr, start_reading, reader) = late_reader();
    let (handler, listener) = node::split::<()>();
    // These tests are about what is flushed, not about when the linger gives up (tests/shutdown.rs
    // is): give tens of megabytes all the time a loaded machine needs.
    handler.network().set_linger(FLUSH_LINGER);
    let watchdog = Watchdog::new(&handler);
    let config = FramedTcpConnectConfig::default()
        .with_send_queue_limit(usize::MAX)
        .with_connect_timeout(Duration::from_millis(20));
    let (endpoint, _) =
        handler.network().connect_sync_with(TransportConnect::FramedTcp(config), addr).unwrap();
    let sent = send_burst(&handler, endpoint, 200); // 20 MB: far more than socket buffers
    assert_eq!(sent, 200);
    assert!(handler.network().remove(endpoint.resource_id()));
    // Start reading well after the connect timeout would have fired.
    handler.signals().send_with_timer((), Duration::from_millis(200));
    let stopper = handler.clone();
    let waiter = std::thread::spawn(move || {
        let received = reader.join().unwrap();
        stopper.stop();
        received
    });
    listener.for_each(|event| match event {
        NodeEvent::Signal(()) => start_reading.send(()).unwrap(),
        NodeEvent::Network(event) => panic!("event after remove: {event:?}"),
    });
    watchdog.check("flushing a removed connection");
    assert_eq!(waiter.join().unwrap(), sent);
}

/// The node stops with bytes still queued: they are written before its listener is gone.
#[test]
fn stopping_the_node_flushes_what_send_accepted() {
    let (addr, start_reading, reader) = late_reader();
    let (handler, listener) = node::split::<()>();
    // These tests are about what is flushed, not about when the linger gives up (tests/shutdown.rs
    // is): give tens of megabytes all the time a loaded machine needs.
    handler.network().set_linger(FLUSH_LINGER);
    let config = FramedTcpConnectConfig::default().with_send_queue_limit(usize::MAX);
    let (endpoint, _) =
        handler.network().connect_sync_with(TransportConnect::FramedTcp(config), addr).unwrap();
    let sent = send_burst(&handler, endpoint, 100);
    handler.network().remove(endpoint.resource_id());
    handler.stop();
    start_reading.send(()).unwrap();
    listener.for_each(|_| ()); // returns at once; dropping the listener flushes
    assert_eq!(reader.join().unwrap(), sent);
}

/// A queue limit of zero is "one message at a time", never a cut message.
#[test]
fn zero_queue_limit_refuses_instead_of_cutting() {
    let (addr, start_reading, reader) = late_reader();
    let (handler, listener) = node::split::<()>();
    // These tests are about what is flushed, not about when the linger gives up (tests/shutdown.rs
    // is): give tens of megabytes all the time a loaded machine needs.
    handler.network().set_linger(FLUSH_LINGER);
    let config = FramedTcpConnectConfig::default().with_send_queue_limit(0);
    let (endpoint, _) =
        handler.network().connect_sync_with(TransportConnect::FramedTcp(config), addr).unwrap();
    let sent = send_burst(&handler, endpoint, 300);
    assert!(sent < 300, "a peer that reads nothing must fill the queue");
    handler.network().remove(endpoint.resource_id());
    handler.stop();
    start_reading.send(()).unwrap();
    listener.for_each(|_| ());
    assert_eq!(reader.join().unwrap(), sent);
}
