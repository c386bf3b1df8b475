//! Real interoperability with message-io 0.19: a portnet node and a message-io node in the same
//! process talk to each other over loopback, in both roles, on every transport the two share on
//! the wire (`FramedTcp`, `Ws`, `Udp`).
//!
//! Each test drives both nodes from the test thread through their `enqueue` queues and waits on
//! events, never on sleeps. Every wait has a deadline (a failure with a message), and a watchdog
//! thread aborts the test binary if a test still runs after [`TEST_LIMIT`].

mod util;

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use util::AbortAfter;

/// A test still running after this long aborts the process (a hang is a failure).
const TEST_LIMIT: Duration = Duration::from_secs(20);

/// How long one test may wait, in total, for the events it expects.
const WAIT_LIMIT: Duration = Duration::from_secs(15);

/// Small messages sent in one burst on stream transports.
const SMALL_COUNT: usize = 10_000;

/// The large message sent on stream transports.
const LARGE_LEN: usize = 1 << 20;

/// Request/response rounds on `Udp`.
const UDP_ROUNDS: usize = 200;

/// The transports portnet and message-io both speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    FramedTcp,
    Ws,
    Udp,
}

/// A network event of either library, with its own endpoint type.
enum Ev<E> {
    Connected(E, bool),
    Accepted(E),
    Message(E, Vec<u8>),
    Disconnected(E),
    Signal,
}

impl<E: fmt::Debug> fmt::Debug for Ev<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ev::Connected(ep, ok) => write!(f, "Connected({ep:?}, {ok})"),
            Ev::Accepted(ep) => write!(f, "Accepted({ep:?})"),
            Ev::Message(ep, data) => {
                let head = &data[..data.len().min(16)];
                write!(f, "Message({ep:?}, {} bytes, starting {head:02x?})", data.len())
            }
            Ev::Disconnected(ep) => write!(f, "Disconnected({ep:?})"),
            Ev::Signal => write!(f, "Signal"),
        }
    }
}

/// What the tests need from a node, written once for both libraries.
trait Peer {
    type Ep: Copy + PartialEq + fmt::Debug;
    const NAME: &'static str;

    /// Listens on `127.0.0.1:0`; returns the bound address.
    fn listen(&self, kind: Kind) -> SocketAddr;
    /// Starts connecting; returns the endpoint and the local address.
    fn connect(&self, kind: Kind, addr: SocketAddr) -> (Self::Ep, SocketAddr);
    /// Sends, asserting the library reports the message as sent.
    fn send(&self, ep: Self::Ep, data: &[u8]);
    fn remove(&self, ep: Self::Ep) -> bool;
    fn addr(ep: Self::Ep) -> SocketAddr;
    /// The next event, or `None` once `deadline` passes.
    fn next_before(&mut self, deadline: Instant) -> Option<Ev<Self::Ep>>;
    /// The next event if one is queued now.
    fn try_next(&mut self) -> Option<Ev<Self::Ep>>;

    /// Whether this node can leave received `Ws` frames undelivered until more bytes arrive.
    ///
    /// message-io 0.19 can: after each binary message its `Ws` adapter peeks the socket with a
    /// zero-length buffer and stops reading on `WouldBlock`, although tungstenite may already
    /// hold further complete frames it read earlier (message-io-0.19.0/src/adapters/ws.rs,
    /// `RemoteResource::receive`). Those frames wait until the peer sends again. Bursts to such
    /// a node go one message at a time, each waiting for its delivery.
    fn stalls_on_buffered_ws_frames() -> bool {
        false
    }
}

/// A portnet node running on its own thread, its events queued for the test.
struct Portnet {
    handler: portnet::node::NodeHandler<()>,
    events: portnet::events::EventReceiver<portnet::node::StoredNodeEvent<()>>,
    _task: portnet::node::NodeTask,
}

impl Portnet {
    fn new() -> Self {
        let (handler, listener) = portnet::node::split::<()>();
        let (task, events) = listener.enqueue();
        Portnet { handler, events, _task: task }
    }

    fn transport(kind: Kind) -> portnet::network::Transport {
        match kind {
            Kind::FramedTcp => portnet::network::Transport::FramedTcp,
            Kind::Ws => portnet::network::Transport::Ws,
            Kind::Udp => portnet::network::Transport::Udp,
        }
    }

    fn convert(event: portnet::node::StoredNodeEvent<()>) -> Ev<portnet::network::Endpoint> {
        use portnet::network::StoredNetEvent as E;
        match event {
            portnet::node::StoredNodeEvent::Network(E::Connected(ep, ok)) => Ev::Connected(ep, ok),
            portnet::node::StoredNodeEvent::Network(E::Accepted(ep, _)) => Ev::Accepted(ep),
            portnet::node::StoredNodeEvent::Network(E::Message(ep, data)) => Ev::Message(ep, data),
            portnet::node::StoredNodeEvent::Network(E::Disconnected(ep)) => Ev::Disconnected(ep),
            portnet::node::StoredNodeEvent::Signal(()) => Ev::Signal,
        }
    }
}

impl Drop for Portnet {
    fn drop(&mut self) {
        // The task, dropped right after, waits for the node thread to end.
        self.handler.stop();
    }
}

impl Peer for Portnet {
    type Ep = portnet::network::Endpoint;
    const NAME: &'static str = "portnet";

    fn listen(&self, kind: Kind) -> SocketAddr {
        let transport = Self::transport(kind);
        match self.handler.network().listen(transport, "127.0.0.1:0") {
            Ok((_, addr)) => addr,
            Err(e) => panic!("portnet: {transport} listen: {e}"),
        }
    }

    fn connect(&self, kind: Kind, addr: SocketAddr) -> (Self::Ep, SocketAddr) {
        let transport = Self::transport(kind);
        match self.handler.network().connect(transport, addr) {
            Ok(pair) => pair,
            Err(e) => panic!("portnet: {transport} connect to {addr}: {e}"),
        }
    }

    fn send(&self, ep: Self::Ep, data: &[u8]) {
        let status = self.handler.network().send(ep, data);
        assert_eq!(
            status,
            portnet::network::SendStatus::Sent,
            "portnet: send {} bytes",
            data.len()
        );
    }

    fn remove(&self, ep: Self::Ep) -> bool {
        self.handler.network().remove(ep.resource_id())
    }

    fn addr(ep: Self::Ep) -> SocketAddr {
        ep.addr()
    }

    fn next_before(&mut self, deadline: Instant) -> Option<Ev<Self::Ep>> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.events.receive_timeout(left).map(Self::convert)
    }

    fn try_next(&mut self) -> Option<Ev<Self::Ep>> {
        self.events.try_receive().map(Self::convert)
    }
}

/// A message-io 0.19 node running on its own threads, its events queued for the test.
struct MessageIo {
    handler: message_io::node::NodeHandler<()>,
    events: message_io::events::EventReceiver<message_io::node::StoredNodeEvent<()>>,
    _task: message_io::node::NodeTask,
}

impl MessageIo {
    fn new() -> Self {
        let (handler, listener) = message_io::node::split::<()>();
        let (task, events) = listener.enqueue();
        MessageIo { handler, events, _task: task }
    }

    fn transport(kind: Kind) -> message_io::network::Transport {
        match kind {
            Kind::FramedTcp => message_io::network::Transport::FramedTcp,
            Kind::Ws => message_io::network::Transport::Ws,
            Kind::Udp => message_io::network::Transport::Udp,
        }
    }

    fn convert(event: message_io::node::StoredNodeEvent<()>) -> Ev<message_io::network::Endpoint> {
        use message_io::node::StoredNetEvent as E;
        use message_io::node::StoredNodeEvent as N;
        match event {
            N::Network(E::Connected(ep, ok)) => Ev::Connected(ep, ok),
            N::Network(E::Accepted(ep, _)) => Ev::Accepted(ep),
            N::Network(E::Message(ep, data)) => Ev::Message(ep, data),
            N::Network(E::Disconnected(ep)) => Ev::Disconnected(ep),
            N::Signal(()) => Ev::Signal,
        }
    }
}

impl Drop for MessageIo {
    fn drop(&mut self) {
        self.handler.stop();
    }
}

impl Peer for MessageIo {
    type Ep = message_io::network::Endpoint;
    const NAME: &'static str = "message-io";

    fn listen(&self, kind: Kind) -> SocketAddr {
        let transport = Self::transport(kind);
        match self.handler.network().listen(transport, "127.0.0.1:0") {
            Ok((_, addr)) => addr,
            Err(e) => panic!("message-io: {transport} listen: {e}"),
        }
    }

    fn connect(&self, kind: Kind, addr: SocketAddr) -> (Self::Ep, SocketAddr) {
        let transport = Self::transport(kind);
        match self.handler.network().connect(transport, addr) {
            Ok(pair) => pair,
            Err(e) => panic!("message-io: {transport} connect to {addr}: {e}"),
        }
    }

    fn send(&self, ep: Self::Ep, data: &[u8]) {
        let status = self.handler.network().send(ep, data);
        assert_eq!(
            status,
            message_io::network::SendStatus::Sent,
            "message-io: send {} bytes",
            data.len()
        );
    }

    fn remove(&self, ep: Self::Ep) -> bool {
        self.handler.network().remove(ep.resource_id())
    }

    fn addr(ep: Self::Ep) -> SocketAddr {
        ep.addr()
    }

    fn next_before(&mut self, deadline: Instant) -> Option<Ev<Self::Ep>> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.events.receive_timeout(left).map(Self::convert)
    }

    fn try_next(&mut self) -> Option<Ev<Self::Ep>> {
        self.events.try_receive().map(Self::convert)
    }

    fn stalls_on_buffered_ws_frames() -> bool {
        true
    }
}

/// The next event of `peer`, failing the test if none comes before `deadline`.
fn expect<P: Peer>(peer: &mut P, deadline: Instant, waiting_for: &str) -> Ev<P::Ep> {
    match peer.next_before(deadline) {
        Some(event) => event,
        None => {
            panic!("{}: no event within {WAIT_LIMIT:?} while waiting for {waiting_for}", P::NAME)
        }
    }
}

/// A recognisable payload of `len` bytes.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// Small message `i`: its sequence number, then a few bytes of padding; every 1000th is empty.
fn small(i: usize) -> Vec<u8> {
    if i % 1000 == 0 {
        return Vec::new();
    }
    let mut data = format!("#{i:05}:").into_bytes();
    data.extend(std::iter::repeat_n(i as u8, i % 97));
    data
}

/// Asserts that the next events of `peer` are exactly `expected` messages from `ep`, in order.
fn receive_in_order<P: Peer>(
    peer: &mut P,
    ep: P::Ep,
    expected: &[Vec<u8>],
    deadline: Instant,
    from: &str,
) {
    for (index, want) in expected.iter().enumerate() {
        let what = format!("message {index} of {} from {from}", expected.len());
        match expect(peer, deadline, &what) {
            Ev::Message(got_ep, data) => {
                assert_eq!(got_ep, ep, "{}: {what} came from another endpoint", P::NAME);
                if data != *want {
                    panic!(
                        "{}: {what} differs: got {} bytes {:02x?}.., want {} bytes {:02x?}..",
                        P::NAME,
                        data.len(),
                        &data[..data.len().min(16)],
                        want.len(),
                        &want[..want.len().min(16)]
                    );
                }
            }
            other => panic!("{}: got {other:?} while waiting for {what}", P::NAME),
        }
    }
}

/// Sends `messages` from `sender` to `receiver` and checks they arrive exactly and in order: as
/// one burst, or one at a time to a receiver that stalls on buffered `Ws` frames.
fn transfer<A: Peer, B: Peer>(
    sender: &mut A,
    from: A::Ep,
    receiver: &mut B,
    to: B::Ep,
    messages: &[Vec<u8>],
    kind: Kind,
    deadline: Instant,
) {
    if kind == Kind::Ws && B::stalls_on_buffered_ws_frames() {
        for message in messages {
            sender.send(from, message);
            receive_in_order(receiver, to, std::slice::from_ref(message), deadline, A::NAME);
        }
    } else {
        for message in messages {
            sender.send(from, message);
        }
        receive_in_order(receiver, to, messages, deadline, A::NAME);
    }
}

/// The full conversation on a connection-oriented transport: connect, a large message and a
/// burst of small ones each way, then the client says goodbye and removes its endpoint.
fn stream_exchange<S: Peer, C: Peer>(server: &mut S, client: &mut C, kind: Kind) {
    let deadline = Instant::now() + WAIT_LIMIT;
    let server_addr = server.listen(kind);
    let (cep, client_local) = client.connect(kind, server_addr);
    assert_eq!(C::addr(cep), server_addr);

    match expect(client, deadline, "Connected") {
        Ev::Connected(ep, true) if ep == cep => (),
        other => panic!("{}: expected Connected({cep:?}, true), got {other:?}", C::NAME),
    }
    let sep = match expect(server, deadline, "Accepted") {
        Ev::Accepted(ep) => ep,
        other => panic!("{}: expected Accepted, got {other:?}", S::NAME),
    };
    assert_eq!(S::addr(sep).port(), client_local.port(), "accepted from another port");

    let mut burst = vec![pattern(LARGE_LEN, 0x5a)];
    burst.extend((0..SMALL_COUNT).map(small));

    transfer(client, cep, server, sep, &burst, kind, deadline);
    burst[0] = pattern(LARGE_LEN, 0xa5);
    transfer(server, sep, client, cep, &burst, kind, deadline);

    // The last message is still delivered although the endpoint is removed right after it.
    client.send(cep, b"bye");
    assert!(client.remove(cep), "{}: remove of a live endpoint", C::NAME);
    receive_in_order(server, sep, &[b"bye".to_vec()], deadline, C::NAME);
    match expect(server, deadline, "Disconnected") {
        Ev::Disconnected(ep) if ep == sep => (),
        other => panic!("{}: expected Disconnected({sep:?}), got {other:?}", S::NAME),
    }
    // Nothing is reported for an endpoint its own side removed (checked as far as it can be
    // without waiting: the server already saw the whole close).
    if let Some(event) = client.try_next() {
        panic!("{}: {event:?} after removing {cep:?}", C::NAME);
    }
    assert!(server.try_next().is_none(), "{}: an event after Disconnected", S::NAME);
}

/// Request/response over `Udp`, one datagram in flight at a time so loopback never drops one:
/// small datagrams, an empty one and one of the largest size loopback carries, both ways.
fn udp_exchange<S: Peer, C: Peer>(server: &mut S, client: &mut C) {
    let deadline = Instant::now() + WAIT_LIMIT;
    let server_addr = server.listen(Kind::Udp);
    let (cep, client_local) = client.connect(Kind::Udp, server_addr);

    match expect(client, deadline, "Connected") {
        Ev::Connected(ep, true) if ep == cep => (),
        other => panic!("{}: expected Connected({cep:?}, true), got {other:?}", C::NAME),
    }

    let max = portnet::adapters::udp::MAX_LOCAL_PAYLOAD_LEN;
    assert_eq!(max, message_io::adapters::udp::MAX_LOCAL_PAYLOAD_LEN);
    let mut requests: Vec<Vec<u8>> = (1..UDP_ROUNDS).map(small).collect();
    requests.push(Vec::new());
    requests.push(pattern(max, 0x33));

    for (round, request) in requests.iter().enumerate() {
        client.send(cep, request);
        let what = format!("request {round} ({} bytes)", request.len());
        let sep = match expect(server, deadline, &what) {
            Ev::Message(ep, data) => {
                assert_eq!(data, *request, "{}: {what} differs", S::NAME);
                ep
            }
            other => panic!("{}: got {other:?} while waiting for {what}", S::NAME),
        };
        assert_eq!(S::addr(sep).port(), client_local.port(), "request from another port");

        let mut response = request.clone();
        response.reverse();
        server.send(sep, &response);
        receive_in_order(client, cep, &[response], deadline, S::NAME);
    }
    assert!(client.remove(cep));
}

#[test]
fn framed_tcp_portnet_server_message_io_client() {
    let _watchdog = AbortAfter::start("framed_tcp_portnet_server_message_io_client", TEST_LIMIT);
    stream_exchange(&mut Portnet::new(), &mut MessageIo::new(), Kind::FramedTcp);
}

#[test]
fn framed_tcp_message_io_server_portnet_client() {
    let _watchdog = AbortAfter::start("framed_tcp_message_io_server_portnet_client", TEST_LIMIT);
    stream_exchange(&mut MessageIo::new(), &mut Portnet::new(), Kind::FramedTcp);
}

#[test]
fn ws_portnet_server_message_io_client() {
    let _watchdog = AbortAfter::start("ws_portnet_server_message_io_client", TEST_LIMIT);
    stream_exchange(&mut Portnet::new(), &mut MessageIo::new(), Kind::Ws);
}

#[test]
fn ws_message_io_server_portnet_client() {
    let _watchdog = AbortAfter::start("ws_message_io_server_portnet_client", TEST_LIMIT);
    stream_exchange(&mut MessageIo::new(), &mut Portnet::new(), Kind::Ws);
}

#[test]
fn udp_portnet_server_message_io_client() {
    let _watchdog = AbortAfter::start("udp_portnet_server_message_io_client", TEST_LIMIT);
    udp_exchange(&mut Portnet::new(), &mut MessageIo::new());
}

#[test]
fn udp_message_io_server_portnet_client() {
    let _watchdog = AbortAfter::start("udp_message_io_server_portnet_client", TEST_LIMIT);
    udp_exchange(&mut MessageIo::new(), &mut Portnet::new());
}

/// message-io's own use of the lower-level pair (its `network.rs` tests do exactly this, for
/// `Tcp`, `FramedTcp` and `Ws`): connect, then `process_poll_events_until_timeout` until the
/// network has been idle for the timeout. A program ported by renaming the crate must see the
/// same events.
macro_rules! processor_sees_connect_and_accept {
    ($krate:ident, $transport:ident) => {{
        use $krate::network::{NetEvent, Transport};
        let (controller, mut processor) = $krate::network::split();
        let (listener_id, addr) = controller.listen(Transport::$transport, "127.0.0.1:0").unwrap();
        let (endpoint, _) = controller.connect(Transport::$transport, addr).unwrap();
        let (mut connected, mut accepted) = (0, 0);
        processor.process_poll_events_until_timeout(Duration::from_secs(1), |event| match event {
            NetEvent::Connected(ep, ok) => {
                assert!(ok && ep == endpoint, "{event:?}");
                connected += 1;
            }
            NetEvent::Accepted(_, id) => {
                assert_eq!(id, listener_id);
                accepted += 1;
            }
            other => panic!("unexpected {other:?}"),
        });
        assert_eq!((connected, accepted), (1, 1), "(Connected, Accepted) events seen");
    }};
}

#[test]
fn message_io_processor_until_timeout_sees_framed_tcp_connect() {
    let _watchdog =
        AbortAfter::start("message_io_processor_until_timeout_sees_framed_tcp_connect", TEST_LIMIT);
    processor_sees_connect_and_accept!(message_io, FramedTcp);
}

#[test]
fn portnet_processor_until_timeout_sees_framed_tcp_connect() {
    let _watchdog =
        AbortAfter::start("portnet_processor_until_timeout_sees_framed_tcp_connect", TEST_LIMIT);
    processor_sees_connect_and_accept!(portnet, FramedTcp);
}

#[test]
fn message_io_processor_until_timeout_sees_ws_connect() {
    let _watchdog =
        AbortAfter::start("message_io_processor_until_timeout_sees_ws_connect", TEST_LIMIT);
    processor_sees_connect_and_accept!(message_io, Ws);
}

#[test]
fn portnet_processor_until_timeout_sees_ws_connect() {
    let _watchdog =
        AbortAfter::start("portnet_processor_until_timeout_sees_ws_connect", TEST_LIMIT);
    processor_sees_connect_and_accept!(portnet, Ws);
}
