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

mod linger;
mod socket;
mod stream;
#[cfg(feature = "tls")]
mod tls;
mod udp;
#[cfg(feature = "websocket")]
mod ws;

use crate::adapters::StreamOptions;
#[cfg(feature = "websocket")]
use crate::adapters::ws::WsListenConfig;
use crate::adapters::ws::{MessageKind, WsClose, WsHandshake};
use crate::core::clock::{Clock, Time};
use crate::core::resource_id::ResourceIdGenerator;
use crate::core::{
    Endpoint, LingerSetting, NetEvent, RemoteAddr, ResourceId, ResourceType, SendStatus, Transport,
    TransportConnect, TransportListen,
};
use mio::event::Event;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use rustc_hash::FxHashMap;
use socket::context;
use std::collections::BTreeSet;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use stream::lock;

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
    });
    let processor = Processor {
        poll,
        events: Events::with_capacity(1024),
        shared: shared.clone(),
        input: InputBuffer::new(),
        deadlines: BTreeSet::new(),
        again: Vec::new(),
        settled: Vec::new(),
    };
    Ok((Controller { shared }, processor))
}

/// What a listener gives the connections it accepts.
#[derive(Clone, Debug)]
pub(crate) struct AcceptConfig {
    pub transport: Transport,
    pub options: StreamOptions,
    pub max_frame_size: usize,
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
        max_frame_size: 0,
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

/// The native half that acts: connect, listen, send, remove. Usable from any thread.
#[derive(Clone)]
pub(crate) struct Controller {
    shared: Arc<Shared>,
}

impl Controller {
    // `sync` concerns the stream transports only.
    #[cfg_attr(not(feature = "tcp"), allow(unused_variables))]
    pub fn connect_with(
        &self,
        config: TransportConnect,
        addr: RemoteAddr,
        sync: bool,
    ) -> io::Result<(Endpoint, SocketAddr)> {
        let transport = config.transport();
        let id = self.shared.ids.generate(transport.id(), ResourceType::Remote);
        match config {
            #[cfg(feature = "udp")]
            TransportConnect::Udp(config) => {
                let peer = resolve(&addr)?;
                let socket = socket::udp_connect(peer, &config)
                    .map_err(|e| context(e, format_args!("Udp connect to {peer}")))?;
                let local = socket.local_addr()?;
                let endpoint = Endpoint::new(id, peer);
                self.shared.add(id, Resource::UdpRemote(udp::Remote::new(endpoint, socket)))?;
                // Ready at once: reported on the event thread's next turn.
                self.shared.set_deadline(id, Duration::ZERO, Deadline::Connect);
                Ok((endpoint, local))
            }
            #[cfg(feature = "websocket")]
            TransportConnect::Ws => ws::connect(&self.shared, id, addr, Default::default(), sync),
            #[cfg(feature = "websocket")]
            TransportConnect::WsWith(config) => ws::connect(&self.shared, id, addr, config, sync),
            #[cfg(feature = "tcp")]
            TransportConnect::Tcp(config) => {
                self.connect_stream(id, transport, addr, config.options, None, sync)
            }
            #[cfg(feature = "tcp")]
            TransportConnect::FramedTcp(config) => self.connect_stream(
                id,
                transport,
                addr,
                config.options,
                Some(config.max_frame_size),
                sync,
            ),
        }
    }

    fn connect_stream(
        &self,
        id: ResourceId,
        transport: Transport,
        addr: RemoteAddr,
        options: StreamOptions,
        max_frame_size: Option<usize>,
        sync: bool,
    ) -> io::Result<(Endpoint, SocketAddr)> {
        let peer = resolve(&addr)?;
        let what = format_args!("{transport} connect to {peer}");
        let (stream, state) = if sync {
            let stream = socket::tcp_connect_blocking(peer, &options, options.connect_timeout)
                .map_err(|e| context(e, what))?;
            stream.set_nonblocking(true)?;
            let stream = mio::net::TcpStream::from_std(stream);
            socket::configure_stream(&stream, &options)?;
            (stream, State::announce_pending())
        } else {
            (
                socket::tcp_connect(peer, &options).map_err(|e| context(e, what))?,
                State::connecting(),
            )
        };
        let local = stream.local_addr()?;
        let endpoint = Endpoint::new(id, peer);
        let connection = stream::Connection::new(
            endpoint,
            stream,
            state,
            max_frame_size,
            options.send_queue_limit,
        );
        self.shared.add(id, Resource::Stream(connection))?;
        if !sync {
            self.shared.set_deadline(id, options.connect_timeout, Deadline::Connect);
        }
        Ok((endpoint, local))
    }

    // `context` serves the transports whose config can fail before a socket is listening.
    #[cfg_attr(not(any(feature = "udp", feature = "websocket")), allow(unused_variables))]
    pub fn listen_with(
        &self,
        config: TransportListen,
        addr: SocketAddr,
    ) -> io::Result<(ResourceId, SocketAddr)> {
        let transport = config.transport();
        let id = self.shared.ids.generate(transport.id(), ResourceType::Local);
        let what = format_args!("{transport} listen on {addr}");
        let context = |e| context(e, what);
        match config {
            #[cfg(feature = "udp")]
            TransportListen::Udp(config) => {
                let (socket, group) = socket::udp_listen(addr, &config).map_err(context)?;
                let local = socket.local_addr()?;
                let local = match group {
                    Some(group) => SocketAddr::new(group, local.port()),
                    None => local,
                };
                self.shared.add(id, Resource::UdpLocal(udp::Local::new(id, socket)))?;
                Ok((id, local))
            }
            #[cfg(feature = "tcp")]
            TransportListen::Tcp(c) => self.listen_stream(
                id,
                addr,
                AcceptConfig {
                    transport,
                    options: c.options,
                    max_frame_size: 0,
                    #[cfg(feature = "websocket")]
                    ws: None,
                },
            ),
            #[cfg(feature = "tcp")]
            TransportListen::FramedTcp(c) => self.listen_stream(
                id,
                addr,
                AcceptConfig {
                    transport,
                    options: c.options,
                    max_frame_size: c.max_frame_size,
                    #[cfg(feature = "websocket")]
                    ws: None,
                },
            ),
            #[cfg(feature = "websocket")]
            TransportListen::Ws => {
                let accept = ws_accept(transport, Default::default()).map_err(context)?;
                self.listen_stream(id, addr, accept)
            }
            #[cfg(feature = "websocket")]
            TransportListen::WsWith(config) => {
                let accept = ws_accept(transport, config).map_err(context)?;
                self.listen_stream(id, addr, accept)
            }
        }
    }

    /// A TCP listener (for `Tcp`, `FramedTcp` and `Ws`) that accepts as `accept` says.
    fn listen_stream(
        &self,
        id: ResourceId,
        addr: SocketAddr,
        accept: AcceptConfig,
    ) -> io::Result<(ResourceId, SocketAddr)> {
        let what = format_args!("{} listen on {addr}", accept.transport);
        let listener = socket::tcp_listen(addr, &accept.options).map_err(|e| context(e, what))?;
        let local = listener.local_addr()?;
        let listener = stream::Listener { id, listener, accept, closed: Default::default() };
        self.shared.add(id, Resource::Listener(listener))?;
        Ok((id, local))
    }

    pub fn send(&self, endpoint: Endpoint, data: &[u8]) -> SendStatus {
        let Some(resource) = self.shared.get(endpoint.resource_id()) else {
            return SendStatus::ResourceNotFound;
        };
        match &*resource {
            Resource::Stream(c) => c.send(data),
            #[cfg(feature = "websocket")]
            Resource::Ws(c) => c.send(data),
            Resource::UdpRemote(u) => u.send(data),
            Resource::UdpLocal(u) => u.send_to(endpoint.addr(), data),
            Resource::Listener(_) => SendStatus::ResourceNotFound,
        }
    }

    pub fn send_text(&self, endpoint: Endpoint, text: &str) -> SendStatus {
        match self.shared.get(endpoint.resource_id()).as_deref() {
            #[cfg(feature = "websocket")]
            Some(Resource::Ws(c)) => c.send_text(text),
            _ => self.send(endpoint, text.as_bytes()),
        }
    }

    pub fn message_kind(&self, endpoint: Endpoint) -> MessageKind {
        match self.shared.get(endpoint.resource_id()).as_deref() {
            #[cfg(feature = "websocket")]
            Some(Resource::Ws(c)) => c.message_kind(),
            _ => MessageKind::Binary,
        }
    }

    pub fn ws_handshake(&self, endpoint: Endpoint) -> Option<WsHandshake> {
        match self.shared.get(endpoint.resource_id()).as_deref() {
            #[cfg(feature = "websocket")]
            Some(Resource::Ws(c)) => c.handshake(),
            _ => None,
        }
    }

    pub fn ws_close(&self, endpoint: Endpoint) -> Option<WsClose> {
        match &*lock(&self.shared.peer_close) {
            Some((id, close)) if *id == endpoint.resource_id() => Some(close.clone()),
            _ => None,
        }
    }

    pub fn remove(&self, id: ResourceId) -> bool {
        let Some(resource) = self.shared.get(id) else { return false };
        lock(&self.shared.removed).push(id);
        self.shared.news.store(true, Ordering::Release);
        let linger = match &*resource {
            Resource::Stream(c) => {
                c.close_by_app();
                true
            }
            #[cfg(feature = "websocket")]
            Resource::Ws(c) => c.close_by_app(),
            other => {
                other.shutdown();
                false
            }
        };
        if linger {
            // Findable in `closing` before it leaves `resources`: no event is lost. The event
            // thread flushes, ends the stream and waits for the peer's end (at most the linger).
            lock(&self.shared.closing).insert(id, resource.clone());
            self.shared.set_deadline(id, Duration::ZERO, Deadline::Close);
            self.shared.set_deadline(id, self.shared.linger.get(), Deadline::Linger);
        }
        self.shared.forget(id);
        true
    }

    pub fn linger(&self) -> &LingerSetting {
        &self.shared.linger
    }

    /// Whether the application removed `id` since the processor last polled.
    pub fn was_removed(&self, id: ResourceId) -> bool {
        lock(&self.shared.removed).contains(&id)
    }

    /// A wake-up for the event thread that does not keep the network alive.
    pub fn weak_waker(&self) -> Arc<dyn Fn() + Send + Sync> {
        let shared = Arc::downgrade(&self.shared);
        Arc::new(move || {
            if let Some(shared) = shared.upgrade() {
                shared.wake();
            }
        })
    }

    pub fn is_ready(&self, id: ResourceId) -> Option<bool> {
        self.shared.get(id).map(|r| r.is_ready())
    }

    pub fn when_writable(&self, endpoint: Endpoint, notify: Box<dyn FnOnce() + Send>) {
        match self.shared.get(endpoint.resource_id()).as_deref() {
            Some(Resource::Stream(c)) => c.when_writable(notify),
            #[cfg(feature = "websocket")]
            Some(Resource::Ws(c)) => c.when_writable(notify),
            _ => notify(),
        }
    }

    pub fn wake(&self) {
        self.shared.wake();
    }
}

/// The buffer every read fills. It starts [`InputBuffer::PAST_PAGE`] bytes past a page
/// boundary: the kernel copied 64 KiB datagrams into a page-aligned buffer 8–10 % slower than
/// into one 16 or 32 bytes past it (x86, `docs/performance.md`), and an allocation this large
/// often lands page- or line-aligned.
struct InputBuffer {
    bytes: Box<[u8]>,
    start: usize,
}

impl InputBuffer {
    const PAGE: usize = 4096;
    const PAST_PAGE: usize = 32;

    fn new() -> Self {
        let bytes = vec![0; INPUT_BUFFER_SIZE + Self::PAGE + Self::PAST_PAGE].into_boxed_slice();
        let start = bytes.as_ptr().align_offset(Self::PAGE) + Self::PAST_PAGE;
        InputBuffer { bytes, start }
    }

    fn get(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.start + INPUT_BUFFER_SIZE]
    }
}

/// The native half that waits for and processes events; lives on the event thread.
pub(crate) struct Processor {
    poll: Poll,
    events: Events,
    shared: Arc<Shared>,
    input: InputBuffer,
    deadlines: BTreeSet<(Time, ResourceId, Deadline)>,
    /// Resources to read again this turn (they used their read budget last turn).
    again: Vec<ResourceId>,
    /// Connects that ended this turn, whose deadlines can go.
    settled: Vec<ResourceId>,
}

impl Drop for Processor {
    /// Flushes what the application sent, for at most the linger (see [`linger`]).
    fn drop(&mut self) {
        linger::flush_before_exit(self);
    }
}

impl Processor {
    /// Waits up to `timeout` (forever if `None`) for network activity or a wake-up, and
    /// reports what happened.
    pub fn process_poll_event(
        &mut self,
        timeout: Option<Duration>,
        callback: &mut dyn FnMut(NetEvent<'_>),
    ) {
        if self.shared.news.swap(false, Ordering::AcqRel) {
            self.deadlines.extend(lock(&self.shared.new_deadlines).drain(..));
            lock(&self.shared.removed).clear();
        }
        let mut timeout = match self.deadlines.first() {
            Some((deadline, ..)) => {
                // The clock is read only when a deadline is pending (most turns have none).
                let until = self.shared.clock.now().until(*deadline);
                Some(timeout.map_or(until, |t| t.min(until)))
            }
            None => timeout,
        };
        let read_again = std::mem::take(&mut self.again);
        if !read_again.is_empty() {
            timeout = Some(Duration::ZERO);
        }
        if let Err(e) = self.poll.poll(&mut self.events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                log::error!("poll failed: {e}");
            }
            self.again = read_again;
            return;
        }
        let Processor { events, shared, input, again, settled, .. } = self;
        let input = input.get();
        let mut cx = Cx { shared, input, callback, again, settled };
        for event in events.iter() {
            if event.token() == WAKER {
                continue;
            }
            let id = ResourceId::from(event.token().0);
            if let Some(resource) = cx.shared.get_or_closing(id) {
                resource.on_event(event, &mut cx);
            }
        }
        for id in read_again {
            if let Some(resource) = cx.shared.get_or_closing(id) {
                resource.on_readable_again(&mut cx);
            }
        }
        self.expire_deadlines(callback);
        self.drop_settled_deadlines();
    }

    fn expire_deadlines(&mut self, callback: &mut dyn FnMut(NetEvent<'_>)) {
        if self.deadlines.is_empty() {
            return;
        }
        let now = self.shared.clock.now();
        while let Some(&(deadline, id, kind)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(resource) = self.shared.get_or_closing(id) {
                let mut cx = Cx {
                    shared: &self.shared,
                    input: self.input.get(),
                    callback,
                    again: &mut self.again,
                    settled: &mut self.settled,
                };
                resource.on_deadline(id, kind, &mut cx);
            }
        }
    }

    /// Drops the `Connect` deadlines of connects that ended: a pending deadline makes every
    /// turn read the clock and wait with a timeout, for nothing.
    fn drop_settled_deadlines(&mut self) {
        if self.settled.is_empty() {
            return;
        }
        self.settled.sort_unstable();
        let settled = &self.settled;
        self.deadlines.retain(|(_, id, kind)| {
            *kind != Deadline::Connect || settled.binary_search(id).is_err()
        });
        self.settled.clear();
    }
}
