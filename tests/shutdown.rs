//! Bounded shutdown: `stop()` and `remove` never keep a node alive longer than its linger
//! (`NetworkController::set_linger`), whatever its peers do, and what could not be handed over
//! in time is dropped with a warning naming the endpoint and the bytes; a peer that reads loses
//! nothing. Real sockets on 127.0.0.1; the simulator's linger runs in virtual time.
//!
//! Unresponsive peers are raw sockets with a small receive buffer that never read (and, for
//! `Ws`, never answer the Close): the node fills its send queue towards each until `send`
//! answers `QueueFull`, so its queue is not empty when it stops.

mod util;

use portnet::adapters::framed_tcp::FramedTcpListenConfig;
use portnet::adapters::tcp::TcpListenConfig;
use portnet::adapters::ws::WsListenConfig;
use portnet::network::{
    DEFAULT_LINGER, Endpoint, NetEvent, SendStatus, Transport, TransportConnect, TransportListen,
};
use portnet::node::{self, NodeEvent, NodeHandler, NodeListener};
use portnet::sim::{Link, World};
use socket2::{Domain, Socket, Type};
use std::io::Read;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use util::ws::{capture_logs, logged};

/// Unresponsive peers per node.
const PEERS: usize = 100;
/// What `for_each` may take beyond the linger to return after `stop()`.
const MARGIN: Duration = Duration::from_millis(500);
/// A node that has not finished by then hangs: the test fails instead of waiting on.
const WATCHDOG: Duration = Duration::from_secs(10);
/// The send queue each connection may hold: small, so it fills quickly.
const QUEUE_LIMIT: usize = 256 * 1024;
const CHUNK: usize = 64 * 1024;
/// Sends per connection before giving up on filling its queue (the test then fails).
const MAX_SENDS: usize = 4096;

fn listen_config(transport: Transport) -> TransportListen {
    match transport {
        Transport::Tcp => {
            TransportListen::Tcp(TcpListenConfig::default().with_send_queue_limit(QUEUE_LIMIT))
        }
        Transport::FramedTcp => TransportListen::FramedTcp(
            FramedTcpListenConfig::default().with_send_queue_limit(QUEUE_LIMIT),
        ),
        Transport::Ws => {
            TransportListen::WsWith(WsListenConfig::default().with_send_queue_limit(QUEUE_LIMIT))
        }
        Transport::Udp => TransportListen::Udp(Default::default()),
        #[cfg(feature = "adapter")]
        custom @ Transport::Custom(_) => TransportListen::Custom(
            custom,
            TcpListenConfig::default().with_send_queue_limit(QUEUE_LIMIT),
        ),
    }
}

/// A TCP connection to `addr` whose receive buffer is as small as the kernel allows, so that
/// a peer that does not read closes its window after a few kilobytes.
fn small_window_connect(addr: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    socket.into()
}

/// A peer that never reads: after connecting (and, for `Ws`, the handshake) it holds the
/// socket and does nothing, so it never answers a Close either.
enum Unresponsive {
    Stream(TcpStream),
    Ws(Box<tungstenite::WebSocket<TcpStream>>),
}

impl Unresponsive {
    fn connect(transport: Transport, addr: SocketAddr) -> Self {
        let stream = small_window_connect(addr);
        match transport {
            Transport::Ws => {
                let (ws, _) = tungstenite::client(format!("ws://{addr}/"), stream)
                    .unwrap_or_else(|e| panic!("Ws handshake with {addr}: {e}"));
                Unresponsive::Ws(Box::new(ws))
            }
            _ => Unresponsive::Stream(stream),
        }
    }

    fn local_addr(&self) -> SocketAddr {
        match self {
            Unresponsive::Stream(s) => s.local_addr().unwrap(),
            Unresponsive::Ws(ws) => ws.get_ref().local_addr().unwrap(),
        }
    }
}

/// Sends `CHUNK`s to `endpoint` until its queue is full; returns the bytes accepted, or `None`
/// if the queue never filled.
fn fill(handler: &NodeHandler<()>, endpoint: Endpoint) -> Option<usize> {
    let chunk = vec![0x5a; CHUNK];
    let mut accepted = 0;
    for _ in 0..MAX_SENDS {
        match handler.network().send(endpoint, &chunk) {
            SendStatus::Sent => accepted += CHUNK,
            SendStatus::QueueFull => return Some(accepted),
            other => panic!("send to {endpoint}: {other:?}"),
        }
    }
    None
}

/// What a node reports when its `for_each` returned.
struct Finished {
    /// From `stop()` in the callback to the return of `for_each`.
    shutdown: Duration,
    /// When `for_each` returned.
    returned_at: Instant,
    /// Bytes accepted per endpoint.
    accepted: Vec<(Endpoint, usize)>,
}

/// Runs `for_each` on a thread; it calls `on_event` and stops the node when `on_event` says
/// so. The node reports when `for_each` returned.
fn run_node(
    handler: NodeHandler<()>,
    listener: NodeListener<()>,
    mut on_event: impl FnMut(&NodeHandler<()>, NetEvent<'_>, &mut Vec<(Endpoint, usize)>) -> bool
    + Send
    + 'static,
) -> mpsc::Receiver<Finished> {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let mut accepted = Vec::new();
        let mut stopped_at = None;
        listener.for_each(|event| {
            if let NodeEvent::Network(event) = event {
                if stopped_at.is_none() && on_event(&handler, event, &mut accepted) {
                    stopped_at = Some(Instant::now());
                    handler.stop();
                }
            }
        });
        let returned_at = Instant::now();
        let shutdown = stopped_at.map_or(Duration::MAX, |at| returned_at - at);
        let _ = done.send(Finished { shutdown, returned_at, accepted });
    });
    finished
}

/// Waits for the node's report, failing the test when it hangs.
fn wait_finished(finished: &mpsc::Receiver<Finished>, what: &str) -> Finished {
    finished.recv_timeout(WATCHDOG).unwrap_or_else(|_| {
        panic!("{what}: the node did not finish within {WATCHDOG:?} after stop()")
    })
}

/// A node serving `PEERS` peers that never read finishes `for_each` within its linger (the
/// default) plus `MARGIN` after `stop()`, and warns about each connection whose queue it
/// dropped, with its address, resource id and bytes.
fn unresponsive_peers_do_not_hold_stop(transport: Transport) {
    capture_logs();
    let (handler, listener) = node::split::<()>();
    assert_eq!(handler.network().linger(), DEFAULT_LINGER);
    let (_, addr) = handler.network().listen_with(listen_config(transport), "127.0.0.1:0").unwrap();
    let finished = run_node(handler, listener, |handler, event, accepted| {
        if let NetEvent::Accepted(endpoint, _) = event {
            let bytes = fill(handler, endpoint)
                .unwrap_or_else(|| panic!("{endpoint}: the queue never filled"));
            accepted.push((endpoint, bytes));
        }
        accepted.len() == PEERS
    });
    let peers: Vec<Unresponsive> =
        (0..PEERS).map(|_| Unresponsive::connect(transport, addr)).collect();
    let finished = wait_finished(&finished, &format!("{transport}, {PEERS} unresponsive peers"));
    let bound = DEFAULT_LINGER + MARGIN;
    eprintln!("{transport}: {PEERS} unresponsive peers, for_each returned {:?} after stop()", {
        finished.shutdown
    });
    assert!(
        finished.shutdown <= bound,
        "{transport}: for_each returned {:?} after stop(), more than the linger + margin {bound:?}",
        finished.shutdown
    );
    // The queues could not empty: the node did wait for them, as long as the linger.
    assert!(
        finished.shutdown >= DEFAULT_LINGER - Duration::from_millis(50),
        "{transport}: for_each returned after {:?}: it did not wait for the peers",
        finished.shutdown
    );
    for peer in &peers {
        let addr = peer.local_addr().to_string();
        let (endpoint, _) = finished
            .accepted
            .iter()
            .find(|(e, _)| e.addr().to_string() == addr)
            .unwrap_or_else(|| panic!("no connection from {addr}"));
        let id = endpoint.resource_id().to_string();
        let lines = logged(&[&addr, &id, "unsent bytes on stop"]);
        assert_eq!(lines.len(), 1, "one warning about {endpoint}: {lines:#?}");
    }
}

#[test]
fn tcp_stop_with_unresponsive_peers_is_bounded_by_the_linger() {
    unresponsive_peers_do_not_hold_stop(Transport::Tcp);
}

#[test]
fn framed_tcp_stop_with_unresponsive_peers_is_bounded_by_the_linger() {
    unresponsive_peers_do_not_hold_stop(Transport::FramedTcp);
}

#[test]
fn ws_stop_with_unresponsive_peers_is_bounded_by_the_linger() {
    unresponsive_peers_do_not_hold_stop(Transport::Ws);
}

/// `Udp` sends never wait for a peer: a node with `PEERS` peers that never read stops at once
/// (well within the margin, whatever the linger).
#[test]
fn udp_stop_with_unresponsive_peers_is_prompt() {
    let peers: Vec<UdpSocket> =
        (0..PEERS).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    let (handler, listener) = node::split::<()>();
    for peer in &peers {
        handler.network().connect(Transport::Udp, peer.local_addr().unwrap()).unwrap();
    }
    let finished = run_node(handler, listener, |handler, event, accepted| {
        if let NetEvent::Connected(endpoint, true) = event {
            for _ in 0..16 {
                assert_eq!(handler.network().send(endpoint, &[7; 1200]), SendStatus::Sent);
            }
            accepted.push((endpoint, 16 * 1200));
        }
        accepted.len() == PEERS
    });
    let finished = wait_finished(&finished, "Udp, unresponsive peers");
    eprintln!("Udp: {PEERS} unresponsive peers, for_each returned {:?} after stop()", {
        finished.shutdown
    });
    assert!(finished.shutdown <= MARGIN, "Udp: stop() took {:?}", finished.shutdown);
}

/// The warning's byte count is what was really lost: the bytes the peer finally reads plus
/// the bytes the warning names are exactly the bytes `send` accepted (plain `Tcp`, no framing).
#[test]
fn the_warning_names_the_endpoint_and_the_bytes_dropped() {
    capture_logs();
    let linger = Duration::from_millis(100);
    let (handler, listener) = node::split::<()>();
    handler.network().set_linger(linger);
    let config = listen_config(Transport::Tcp);
    let (_, addr) = handler.network().listen_with(config, "127.0.0.1:0").unwrap();
    // The handler goes with the node's thread: when it ends, the socket closes and the peer
    // reads to the end.
    let finished = run_node(handler, listener, |handler, event, accepted| {
        if let NetEvent::Accepted(endpoint, _) = event {
            accepted.push((endpoint, fill(handler, endpoint).expect("the queue fills")));
        }
        !accepted.is_empty()
    });
    let mut peer = small_window_connect(addr);
    let finished = wait_finished(&finished, "one unresponsive Tcp peer");
    let (endpoint, accepted) = finished.accepted[0];
    let lines = logged(&[&endpoint.to_string(), "unsent bytes on stop"]);
    assert_eq!(lines.len(), 1, "one warning about {endpoint}: {lines:#?}");
    assert!(lines[0].contains("Tcp"), "the transport is named: {}", lines[0]);
    let dropped: usize = lines[0]
        .split(" dropped ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {:?}", lines[0]));
    assert!(dropped > 0);
    peer.set_read_timeout(Some(WATCHDOG)).unwrap();
    let mut received = Vec::new();
    peer.read_to_end(&mut received).expect("the peer reads to the end of the stream");
    assert_eq!(
        received.len() + dropped,
        accepted,
        "received {} + dropped {dropped} == accepted {accepted}",
        received.len()
    );
}

/// `remove` on a connection whose peer never reads gives up at the linger: the warning comes
/// then (not after the old 10 s), and the peer sees the connection end.
#[test]
fn remove_gives_up_at_the_linger() {
    capture_logs();
    let linger = Duration::from_millis(200);
    let (handler, listener) = node::split::<()>();
    handler.network().set_linger(linger);
    let config = listen_config(Transport::FramedTcp);
    let (_, addr) = handler.network().listen_with(config, "127.0.0.1:0").unwrap();
    let (removed, removed_at) = mpsc::channel();
    let node = handler.clone();
    let finished = run_node(handler, listener, move |handler, event, accepted| {
        if let NetEvent::Accepted(endpoint, _) = event {
            accepted.push((endpoint, fill(handler, endpoint).expect("the queue fills")));
            assert!(handler.network().remove(endpoint.resource_id()));
            let _ = removed.send((endpoint, Instant::now()));
        }
        false
    });
    let _peer = small_window_connect(addr);
    let (endpoint, at) = removed_at.recv_timeout(WATCHDOG).expect("the node removes the peer");
    let needles = [endpoint.to_string(), "unsent bytes on remove".to_string()];
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    let deadline = at + WATCHDOG;
    // Polled: the line is written on the node's thread, which has nothing to tell us by.
    while logged(&needles).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let waited = at.elapsed();
    assert_eq!(logged(&needles).len(), 1, "one warning about the removed {endpoint}");
    eprintln!("remove with an unresponsive peer gave up after {waited:?} (linger {linger:?})");
    assert!(
        waited >= linger && waited <= linger + MARGIN,
        "the removed connection gave up after {waited:?}, linger {linger:?}"
    );
    let stop = Instant::now();
    node.stop();
    let finished = wait_finished(&finished, "after remove");
    let shutdown = finished.returned_at - stop;
    assert!(shutdown <= MARGIN, "nothing left to flush: stop took {shutdown:?}");
}

/// A peer that reads gets every byte sent before `stop()`, though it starts reading only after
/// the node stopped: `stop()` flushes within the linger.
fn cooperative_peer_gets_everything(transport: Transport) {
    capture_logs();
    const MESSAGES: usize = 16; // 1 MiB
    let (handler, listener) = node::split::<()>();
    let config = match transport {
        Transport::Ws => TransportListen::Ws,
        _ => TransportListen::FramedTcp(Default::default()),
    };
    let (_, addr) = handler.network().listen_with(config, "127.0.0.1:0").unwrap();
    let finished = run_node(handler, listener, |handler, event, accepted| {
        if let NetEvent::Accepted(endpoint, _) = event {
            for index in 0..MESSAGES {
                let message = vec![index as u8; CHUNK];
                assert_eq!(handler.network().send(endpoint, &message), SendStatus::Sent);
            }
            accepted.push((endpoint, MESSAGES * CHUNK));
        }
        !accepted.is_empty()
    });
    let stream = small_window_connect(addr);
    stream.set_read_timeout(Some(WATCHDOG)).unwrap();
    let mut received: Vec<Vec<u8>> = Vec::new();
    match transport {
        Transport::Ws => {
            let (mut ws, _) = tungstenite::client(format!("ws://{addr}/"), stream).unwrap();
            while received.len() < MESSAGES {
                match ws.read().expect("the peer reads every message") {
                    tungstenite::Message::Binary(data) => received.push(data.to_vec()),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        _ => {
            let mut stream = stream;
            // Each frame: a 3-byte LEB128 length (65 536), then the payload.
            for _ in 0..MESSAGES {
                let mut header = [0; 3];
                stream.read_exact(&mut header).expect("a frame header");
                assert_eq!(header, [0x80, 0x80, 0x04], "a 65 536-byte frame");
                let mut payload = vec![0; CHUNK];
                stream.read_exact(&mut payload).expect("the frame's payload");
                received.push(payload);
            }
        }
    }
    // Read while the node flushes on its way out of `for_each`.
    let finished = wait_finished(&finished, &format!("{transport}, a cooperative peer"));
    assert!(finished.shutdown <= DEFAULT_LINGER + MARGIN, "stop took {:?}", finished.shutdown);
    for (index, message) in received.iter().enumerate() {
        assert!(message.iter().all(|&b| b == index as u8), "message {index} intact, in order");
    }
    assert_eq!(received.len(), MESSAGES);
    let (endpoint, _) = finished.accepted[0];
    let warnings = logged(&[&endpoint.to_string(), "unsent bytes"]);
    assert!(warnings.is_empty(), "nothing was dropped: {warnings:#?}");
}

#[test]
fn framed_tcp_cooperative_peer_gets_everything_sent_before_stop() {
    cooperative_peer_gets_everything(Transport::FramedTcp);
}

#[test]
fn ws_cooperative_peer_gets_everything_sent_before_stop() {
    cooperative_peer_gets_everything(Transport::Ws);
}

// ----- the simulator: the linger in virtual time -----

/// What the simulated receiver saw: bytes of messages, and whether the connection ended.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<(usize, bool)>>);

fn sim_receiver(received: Received) -> impl Fn(NodeHandler<()>, NodeListener<()>) + Send + Sync {
    move |handler, listener| {
        handler.network().listen(Transport::FramedTcp, ("0.0.0.0", 3000)).unwrap();
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Message(_, data)) => {
                received.0.lock().unwrap().0 += data.len()
            }
            NodeEvent::Network(NetEvent::Disconnected(_)) => received.0.lock().unwrap().1 = true,
            _ => (),
        });
    }
}

/// When the simulated sender stopped (virtual time), and its connection.
type Stopped = Arc<Mutex<Option<(Duration, Endpoint)>>>;

/// A simulated sender that sends 16 chunks (1 MiB) 100 ms after it connected, then stops; it records the
/// virtual time of its `stop()`.
fn sim_sender(stopped_at: Stopped) -> impl Fn(NodeHandler<()>, NodeListener<()>) + Send + Sync {
    move |handler, listener| {
        let config = portnet::adapters::framed_tcp::FramedTcpConnectConfig::default()
            .with_send_queue_limit(4 << 20);
        let config = TransportConnect::FramedTcp(config);
        let (peer, _) = handler.network().connect_with(config, "receiver:3000").unwrap();
        listener.for_each(|event| match event {
            // A moment later, so that a hold of the connected path (at 50 ms) is in place.
            NodeEvent::Network(NetEvent::Connected(_, true)) => {
                handler.signals().send_with_timer((), Duration::from_millis(100));
            }
            NodeEvent::Network(_) => (),
            NodeEvent::Signal(()) => {
                for index in 0..16u8 {
                    assert_eq!(handler.network().send(peer, &[index; CHUNK]), SendStatus::Sent);
                }
                *stopped_at.lock().unwrap() = Some((handler.now(), peer));
                handler.stop();
            }
        });
    }
}

/// Runs a world with a receiver and a sender of 1 MiB over `link`; returns how long (virtual
/// time) the sender took to finish after `stop()`, and what the receiver got.
fn sim_stop(link: Link, hold: bool) -> (Duration, Endpoint, Received, World) {
    capture_logs();
    let mut world = World::with_seed(14);
    world.set_default_link(link);
    let received = Received::default();
    world.node("receiver", sim_receiver(received.clone()));
    let stopped_at = Arc::new(Mutex::new(None));
    world.node("sender", sim_sender(stopped_at.clone()));
    if hold {
        world.at(Duration::from_millis(50), |world| world.hold("sender", "receiver"));
    }
    let done = world.run_until(|world| world.is_finished("sender"));
    assert!(done, "the simulated sender finished");
    let (stopped_at, peer) = stopped_at.lock().unwrap().expect("the sender stopped");
    (world.now() - stopped_at, peer, received, world)
}

/// A link that carries 100 kB/s would take 10 s for the 1 MiB: the sender's stop gives up at
/// the linger (virtual time), warns with the bytes left, and the receiver sees the reset after
/// what had arrived.
#[test]
fn sim_stop_gives_up_at_the_linger_in_virtual_time() {
    let slow = Link { bandwidth: Some(100_000), ..Link::default() };
    let (shutdown, peer, received, mut world) = sim_stop(slow, false);
    assert_eq!(shutdown, DEFAULT_LINGER, "the stop waited exactly the linger of virtual time");
    world.run_until_idle();
    let (bytes, disconnected) = *received.0.lock().unwrap();
    assert!(bytes < 16 * CHUNK / 2, "most of the 1 MiB was dropped: {bytes} arrived");
    assert!(disconnected, "the receiver saw the connection end");
    let lines = logged(&[&peer.to_string(), "unsent bytes on stop", "linger of 1s"]);
    assert_eq!(lines.len(), 1, "the simulated node warned about the dropped bytes: {lines:?}");
}

/// A peer whose packets are held (it takes nothing, as one that never reads): the sender has
/// nothing waiting for the link, so it stops at once; what it sent stays in flight, not lost.
#[test]
fn sim_stop_with_a_held_peer_is_prompt_and_loses_nothing() {
    let (shutdown, _, received, mut world) = sim_stop(Link::default(), true);
    assert!(shutdown <= DEFAULT_LINGER, "stop took {shutdown:?} of virtual time");
    assert_eq!(received.0.lock().unwrap().0, 0, "held: nothing arrived yet");
    world.release("sender", "receiver");
    world.run_until_idle();
    assert_eq!(received.0.lock().unwrap().0, 16 * CHUNK, "released: all of it arrived");
}

/// A link fast enough to carry the 1 MiB within the linger: the stop waits for it, and all of
/// it arrives.
#[test]
fn sim_stop_flushes_a_cooperative_link_within_the_linger() {
    let fast = Link { bandwidth: Some(10_000_000), ..Link::default() };
    let (shutdown, _, received, mut world) = sim_stop(fast, false);
    assert!(
        shutdown > Duration::ZERO && shutdown < DEFAULT_LINGER,
        "the stop waited for the link, {shutdown:?} of virtual time"
    );
    world.run_until_idle();
    assert_eq!(received.0.lock().unwrap().0, 16 * CHUNK, "all of it arrived");
}
