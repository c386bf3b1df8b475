//! The native backend: a mio poll driven by the thread that runs the node's event loop.
//!
//! Sends happen on the caller's thread: a message is written straight to the socket when
//! nothing is queued before it, and queued in order otherwise; the event thread flushes queues
//! when sockets become writable. Reads, accepts, connect completion, handshakes and timeouts all
//! happen on the event thread, which calls the application's callback.

// A transport that is off loses its variants of `Transport`, `TransportConnect` and
// `TransportListen`, and so every way in to its code here; the code itself (it needs no
// dependency, unlike `ws`) stays compiled, unused.
#![cfg_attr(not(all(feature = "tcp", feature = "udp")), allow(dead_code))]

mod controller;
mod linger;
mod processor;
#[cfg(feature = "websocket")]
mod read_ahead;
mod socket;
mod stream;
#[cfg(feature = "tls")]
mod tls;
mod udp;
#[cfg(feature = "websocket")]
mod ws;

use crate::adapters::StreamOptions;
use crate::adapters::ws::WsClose;
#[cfg(feature = "websocket")]
use crate::adapters::ws::WsListenConfig;
use crate::core::clock::{Clock, Time};
use crate::core::resource_id::ResourceIdGenerator;
use crate::core::{
    Endpoint, LingerSetting, NetEvent, RemoteAddr, ResourceId, SendStatus, Transport,
};
use crate::protocols::Framing;
use mio::event::Event;
use mio::{Interest, Poll, Registry, Token, Waker};
use rustc_hash::FxHashMap;
use socket::context;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use stream::lock;

pub(crate) use controller::Controller;
pub(crate) use processor::Processor;

const WAKER: Token = Token(usize::MAX);

/// Bytes read per `read` call; also the largest `Tcp` message event. Holds any datagram.
const INPUT_BUFFER_SIZE: usize = crate::adapters::tcp::INPUT_BUFFER_SIZE;

/// Creates the two halves of a native network.
pub(crate) fn split() -> io::Result<(Controller, Processor)> {
    let poll = Poll::new()?;
    let registry = poll.registry().try_clone()?;
    let waker = Waker::new(poll.registry(), WAKER)?;
    let shared = Arc::new(Shared {
        registry,
        waker,
        ids: ResourceIdGenerator::default(),
        resources: RwLock::new(FxHashMap::default()),
        closing: Mutex::new(FxHashMap::default()),
        new_deadlines: Mutex::new(Vec::new()),
        removed: Mutex::new(Vec::new()),
        news: AtomicBool::new(false),
        peer_close: Mutex::new(None),
        clock: Clock::system(),
        linger: LingerSetting::default(),
        #[cfg(feature = "adapter")]
        mounted: Default::default(),
    });
    let processor = Processor::new(poll, shared.clone());
    Ok((Controller { shared }, processor))
}

/// What a listener gives the connections it accepts.
#[derive(Clone)]
pub(crate) struct AcceptConfig {
    pub transport: Transport,
    pub options: StreamOptions,
    /// For `Tcp`, `FramedTcp` and mounted transports: what frames accepted connections.
    pub protocol: Option<Framing>,
    /// For `Ws` listeners: the WebSocket options (and TLS) of accepted connections.
    #[cfg(feature = "websocket")]
    pub ws: Option<Arc<ws::Accept>>,
}

/// A `Ws` listener's accept settings; a TLS identity that does not load is an error here.
#[cfg(feature = "websocket")]
fn ws_accept(transport: Transport, config: WsListenConfig) -> io::Result<AcceptConfig> {
    #[cfg(feature = "tls")]
    let tls = config.tls.as_ref().map(tls::server_config).transpose()?;
    let accept = ws::Accept {
        options: config.ws,
        send_queue_limit: config.options.send_queue_limit,
        max_pending: config.max_pending_handshakes,
        pending: Default::default(),
        #[cfg(feature = "tls")]
        tls,
    };
    Ok(AcceptConfig {
        transport,
        options: config.options,
        protocol: None,
        ws: Some(Arc::new(accept)),
    })
}

/// The lifecycle of a connection: pending → ready → closed.
pub(crate) struct State(AtomicU8);

impl State {
    const CONNECTING: u8 = 0;
    /// Connected by `connect_sync`: ready, but `Connected` not reported yet.
    const ANNOUNCE: u8 = 1;
    const READY: u8 = 2;
    const CLOSED: u8 = 3;

    pub fn connecting() -> Self {
        State(AtomicU8::new(Self::CONNECTING))
    }

    pub fn announce_pending() -> Self {
        State(AtomicU8::new(Self::ANNOUNCE))
    }

    pub fn ready() -> Self {
        State(AtomicU8::new(Self::READY))
    }

    pub fn is_ready(&self) -> bool {
        matches!(self.0.load(Ordering::Acquire), Self::ANNOUNCE | Self::READY)
    }

    pub fn is_closed(&self) -> bool {
        self.0.load(Ordering::Acquire) == Self::CLOSED
    }

    pub fn is_connecting(&self) -> bool {
        self.0.load(Ordering::Acquire) == Self::CONNECTING
    }

    /// Moves a `connect_sync` connection to ready; returns whether `Connected` is still owed.
    pub fn take_announce(&self) -> bool {
        self.0
            .compare_exchange(Self::ANNOUNCE, Self::READY, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Marks ready. Returns false if the connection closed meanwhile.
    pub fn set_ready(&self) -> bool {
        self.0
            .compare_exchange(Self::CONNECTING, Self::READY, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Marks closed. Returns whether it was open (so exactly one caller reports the close).
    pub fn close(&self) -> bool {
        self.0.swap(Self::CLOSED, Ordering::AcqRel) != Self::CLOSED
    }

    /// Why a send cannot go out now, if it cannot.
    pub fn send_refusal(&self) -> Option<SendStatus> {
        match self.0.load(Ordering::Acquire) {
            Self::CONNECTING => Some(SendStatus::ResourceNotAvailable),
            Self::CLOSED => Some(SendStatus::ResourceNotFound),
            _ => None,
        }
    }

    /// Reports `Connected` once the stream's connect completes. Returns whether the connection
    /// is ready for reading and writing.
    pub fn announce(
        &self,
        stream: &mio::net::TcpStream,
        event: &Event,
        endpoint: Endpoint,
        cx: &mut Cx<'_>,
    ) -> bool {
        match self.0.load(Ordering::Acquire) {
            Self::READY => true,
            Self::ANNOUNCE => {
                if !self.take_announce() {
                    return false;
                }
                (cx.callback)(NetEvent::Connected(endpoint, true));
                !self.is_closed()
            }
            Self::CONNECTING => match connect_result(stream, event) {
                None => false,
                Some(Err(e)) => {
                    cx.fail_connect(self, endpoint, &e.to_string());
                    false
                }
                Some(Ok(())) => {
                    cx.settle(endpoint.resource_id());
                    if !self.set_ready() {
                        return false;
                    }
                    (cx.callback)(NetEvent::Connected(endpoint, true));
                    !self.is_closed()
                }
            },
            _ => false,
        }
    }
}

/// The outcome of a non-blocking connect, if it is known yet.
pub(crate) fn connect_result(
    stream: &mio::net::TcpStream,
    event: &Event,
) -> Option<io::Result<()>> {
    match stream.take_error() {
        Ok(Some(e)) | Err(e) => return Some(Err(e)),
        Ok(None) => (),
    }
    match stream.peer_addr() {
        Ok(_) => Some(Ok(())),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => {
            if event.is_error() || event.is_write_closed() {
                Some(Err(io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused")))
            } else {
                None
            }
        }
        Err(e) => Some(Err(e)),
    }
}

/// A listener or connection.
pub(crate) enum Resource {
    Listener(stream::Listener),
    Stream(stream::Connection),
    UdpLocal(udp::Local),
    UdpRemote(udp::Remote),
    // Boxed: tungstenite's state makes it several times larger than the others.
    #[cfg(feature = "websocket")]
    Ws(Box<ws::Connection>),
}

impl Resource {
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match self {
            Resource::Listener(l) => registry.register(&mut l.listener, token, Interest::READABLE),
            Resource::Stream(c) => registry.register(&mut c.stream, token, stream_interest()),
            Resource::UdpLocal(u) => registry.register(&mut u.socket, token, Interest::READABLE),
            // Readable only: writability of a datagram socket is news to no one, and each
            // such event cost an empty receive. `Connected` comes from a zero deadline.
            Resource::UdpRemote(u) => registry.register(&mut u.socket, token, Interest::READABLE),
            #[cfg(feature = "websocket")]
            Resource::Ws(c) => c.register(registry, token),
        }
    }

    fn on_event(&self, event: &Event, cx: &mut Cx<'_>) {
        match self {
            Resource::Listener(l) => l.on_event(cx),
            Resource::Stream(c) => c.on_event(event, cx),
            Resource::UdpLocal(u) => u.on_event(cx),
            Resource::UdpRemote(u) => u.on_event(cx),
            #[cfg(feature = "websocket")]
            Resource::Ws(c) => c.on_event(event, cx),
        }
    }

    fn on_deadline(&self, id: ResourceId, kind: Deadline, cx: &mut Cx<'_>) {
        match (kind, self) {
            (Deadline::Linger, _) => linger::expire(self, id, cx.shared),
            (Deadline::Close, Resource::Stream(c)) => c.on_closing(cx),
            #[cfg(feature = "websocket")]
            (Deadline::Close, Resource::Ws(c)) => c.on_closing(cx),
            (Deadline::Connect, Resource::Stream(c)) if c.state.is_connecting() => {
                cx.fail_connect(&c.state, c.endpoint, "connect timed out")
            }
            #[cfg(feature = "websocket")]
            (Deadline::Connect, Resource::Ws(c)) => c.on_connect_deadline(cx),
            #[cfg(feature = "websocket")]
            (Deadline::Resolved, Resource::Ws(c)) => c.on_resolved(cx),
            (Deadline::AcceptRetry, Resource::Listener(l)) => l.on_event(cx),
            (Deadline::Connect, Resource::UdpRemote(u)) => u.announce(cx),
            _ => (),
        }
    }

    /// Reads on, for a resource that stopped reading to let others have their turn.
    fn on_readable_again(&self, cx: &mut Cx<'_>) {
        match self {
            Resource::Stream(c) if c.state.is_closed() => c.on_closing(cx),
            #[cfg(feature = "websocket")]
            Resource::Ws(c) if c.state.is_closed() => c.on_closing(cx),
            Resource::Stream(c) => c.read_all(cx, false),
            #[cfg(feature = "websocket")]
            Resource::Ws(c) => c.read_all(cx),
            Resource::UdpLocal(u) => u.on_event(cx),
            Resource::UdpRemote(u) => u.on_event(cx),
            Resource::Listener(l) => l.on_event(cx),
        }
    }

    /// Whether bytes accepted by `send` still wait to be written.
    fn has_queued(&self) -> bool {
        match self {
            Resource::Stream(c) => c.has_queued(),
            #[cfg(feature = "websocket")]
            Resource::Ws(c) => c.has_queued(),
            _ => false,
        }
    }

    /// Writes what can be written now, without blocking.
    fn flush_now(&self) {
        match self {
            Resource::Stream(c) => {
                c.flush();
            }
            #[cfg(feature = "websocket")]
            Resource::Ws(c) => c.flush_now(),
            _ => (),
        }
    }

    /// Shuts the socket down (a removed resource, once flushed or out of time).
    fn shutdown(&self) {
        match self {
            Resource::Stream(c) => c.shutdown(),
            #[cfg(feature = "websocket")]
            Resource::Ws(c) => c.shutdown(),
            Resource::Listener(l) => l.close(),
            Resource::UdpLocal(u) => u.close(),
            Resource::UdpRemote(u) => u.close(),
        }
    }

    fn is_ready(&self) -> bool {
        match self {
            Resource::Stream(c) => c.state.is_ready(),
            #[cfg(feature = "websocket")]
            Resource::Ws(c) => c.state.is_ready(),
            _ => true,
        }
    }
}

/// Why the event thread must look at a resource at some time.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) enum Deadline {
    /// A connect or handshake must have finished.
    Connect,
    /// A removed resource must have flushed what it had queued.
    Linger,
    /// A listener that hit an error (out of descriptors) tries accepting again.
    AcceptRetry,
    /// A host name lookup finished (on its own thread) for a connect.
    #[cfg(feature = "websocket")]
    Resolved,
    /// The application removed a connection: the event thread takes its close from here.
    Close,
}

/// Reads one resource does per readiness event before letting the others have a turn.
pub(crate) const READ_BUDGET: usize = 64;

/// Streams: readable and writable; on Linux also priority, so an event tells when TCP urgent
/// data is pending and a short read may have stopped at its mark (see `Connection::read_all`).
fn stream_interest() -> Interest {
    let interest = Interest::READABLE | Interest::WRITABLE;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let interest = interest | Interest::PRIORITY;
    interest
}

/// What the event thread's handlers work with.
pub(crate) struct Cx<'a> {
    pub shared: &'a Shared,
    pub input: &'a mut [u8],
    pub callback: &'a mut dyn FnMut(NetEvent<'_>),
    /// Resources that used their read budget and must be read again next turn.
    pub again: &'a mut Vec<ResourceId>,
    /// Resources whose connect (or handshake) ended: their `Connect` deadline is moot.
    pub settled: &'a mut Vec<ResourceId>,
}

impl Cx<'_> {
    /// The connect (or handshake) of `id` ended, one way or the other.
    pub fn settle(&mut self, id: ResourceId) {
        self.settled.push(id);
    }

    /// Ends a connect that failed: the endpoint is removed, then reported `Connected(_, false)`.
    pub fn fail_connect(&mut self, state: &State, endpoint: Endpoint, reason: &str) {
        self.settle(endpoint.resource_id());
        if state.close() {
            log::debug!("connect to {} failed: {reason}", endpoint.addr());
            self.shared.forget(endpoint.resource_id());
            (self.callback)(NetEvent::Connected(endpoint, false));
        }
    }
}

/// State shared by the controller (any thread) and the processor (the event thread).
pub(crate) struct Shared {
    registry: Registry,
    waker: Waker,
    pub ids: ResourceIdGenerator,
    resources: RwLock<FxHashMap<ResourceId, Arc<Resource>>>,
    /// Removed by the application, still flushing what it had queued.
    closing: Mutex<FxHashMap<ResourceId, Arc<Resource>>>,
    /// Deadlines set since the processor last looked.
    new_deadlines: Mutex<Vec<(Time, ResourceId, Deadline)>>,
    /// Resources the application removed since the processor last polled: events already
    /// gathered for them must not be handed out.
    removed: Mutex<Vec<ResourceId>>,
    /// Something was added to `new_deadlines` or `removed`: most turns find neither, and skip
    /// their locks.
    news: AtomicBool,
    /// The Close frame of the `Ws` connection being reported `Disconnected`, during that
    /// callback.
    peer_close: Mutex<Option<(ResourceId, WsClose)>>,
    clock: Clock,
    /// How long closing connections may take to flush (`NetworkController::set_linger`).
    linger: LingerSetting,
    /// The transports mounted on this network, by id from `AdapterId::FIRST` on.
    #[cfg(feature = "adapter")]
    mounted: crate::adapter::Mounted,
}

impl Shared {
    /// Registers and publishes a resource. The map stays locked while registering, so the
    /// event thread cannot see an event for a resource it cannot find.
    fn add(&self, id: ResourceId, mut resource: Resource) -> io::Result<Arc<Resource>> {
        let mut resources = self.resources.write().unwrap_or_else(|e| e.into_inner());
        resource.register(&self.registry, Token(id.raw()))?;
        let resource = Arc::new(resource);
        resources.insert(id, resource.clone());
        Ok(resource)
    }

    fn get(&self, id: ResourceId) -> Option<Arc<Resource>> {
        self.resources.read().unwrap_or_else(|e| e.into_inner()).get(&id).cloned()
    }

    fn get_or_closing(&self, id: ResourceId) -> Option<Arc<Resource>> {
        self.get(id).or_else(|| lock(&self.closing).get(&id).cloned())
    }

    /// Drops a resource from the registry. Its socket closes with the last reference, which
    /// also takes it out of the poll.
    pub fn forget(&self, id: ResourceId) -> Option<Arc<Resource>> {
        self.resources.write().unwrap_or_else(|e| e.into_inner()).remove(&id)
    }

    /// Asks the event thread to call `on_deadline` for `id` after `delay`.
    pub fn set_deadline(&self, id: ResourceId, delay: Duration, kind: Deadline) {
        let deadline = self.clock.now().after(delay);
        lock(&self.new_deadlines).push((deadline, id, kind));
        self.news.store(true, Ordering::Release);
        self.wake();
    }

    /// A lingering resource finished flushing (or ran out of time). Idempotent.
    pub fn finish_close(&self, id: ResourceId) {
        if let Some(resource) = lock(&self.closing).remove(&id) {
            resource.shutdown();
        }
    }

    fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            log::error!("could not wake the event thread: {e}");
        }
    }
}

fn resolve(addr: &RemoteAddr) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()
        .map_err(|e| context(e, format_args!("cannot resolve {addr}")))?
        .next()
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{addr} resolved to no address"))
        })
}
