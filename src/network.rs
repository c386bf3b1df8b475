//! Connections, listeners and the events they produce.
//!
//! [`NetworkController`] acts (connect, listen, send, remove) from any thread;
//! [`NetworkProcessor`] waits for and reports what happened. A node
//! ([`crate::node::split`]) bundles both with signals; use [`split`] to drive the network
//! yourself.

// The types are defined in the core, below the backends that speak them; this facade, above the
// backends, is where users name them.
pub use crate::core::endpoint::Endpoint;
pub(crate) use crate::core::event::EventDetail;
pub use crate::core::event::{NetEvent, SendStatus, StoredNetEvent};
pub use crate::core::linger::DEFAULT_LINGER;
pub use crate::core::readiness::Readiness;
pub use crate::core::remote_addr::{RemoteAddr, ToRemoteAddr};
pub use crate::core::resource_id::{ResourceId, ResourceType};
pub use crate::core::transport::{Transport, TransportConnect, TransportListen};

pub use crate::adapters::ws::{MessageKind, WsClose, WsHandshake};

use crate::backend;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Creates a network on this target's backend: the controller to act, the processor to
/// receive events.
///
/// Panics only if the operating system refuses to create a poll instance (out of file
/// descriptors), as message-io did.
pub fn split() -> (NetworkController, NetworkProcessor) {
    let (controller, processor) =
        backend::split().unwrap_or_else(|e| panic!("portnet: cannot create the network poll: {e}"));
    (NetworkController::new(controller), NetworkProcessor { backend: processor })
}

/// A network on the given driver (the simulator makes its nodes' networks this way).
#[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
pub(crate) fn split_on(
    controller: backend::Controller,
    processor: backend::Processor,
) -> (NetworkController, NetworkProcessor) {
    (NetworkController::new(controller), NetworkProcessor { backend: processor })
}

/// Connects, listens, sends and removes. Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct NetworkController {
    backend: backend::Controller,
    /// The details of the event `NodeListener::try_next` handed out last, which its turn
    /// gathered earlier: `message_kind` and `ws_close` answer from here for its endpoint.
    handed_out: Arc<HandedOut>,
}

/// See [`NetworkController::handed_out`].
#[derive(Default)]
struct HandedOut {
    set: AtomicBool,
    event: Mutex<Option<(Endpoint, EventDetail)>>,
}

impl NetworkController {
    fn new(backend: backend::Controller) -> Self {
        NetworkController { backend, handed_out: Arc::default() }
    }

    /// The details of `event`, asked while it is being delivered; `None` if there are none
    /// beyond the defaults (a binary message, no close frame).
    pub(crate) fn detail(&self, event: &NetEvent<'_>) -> Option<EventDetail> {
        let detail = match *event {
            NetEvent::Message(endpoint, _) if endpoint.transport().is_ws() => {
                EventDetail { kind: self.backend.message_kind(endpoint), close: None }
            }
            NetEvent::Disconnected(endpoint) if endpoint.transport().is_ws() => {
                EventDetail { kind: MessageKind::Binary, close: self.backend.ws_close(endpoint) }
            }
            _ => return None,
        };
        (detail != EventDetail::default()).then_some(detail)
    }

    /// Makes `message_kind`/`ws_close` describe this stored event of `endpoint` (or forget
    /// the last one, with `None`).
    pub(crate) fn hand_out(&self, endpoint: Option<Endpoint>, detail: Option<EventDetail>) {
        let handed_out = &self.handed_out;
        if endpoint.is_none() && !handed_out.set.load(Ordering::Acquire) {
            return; // the common case: nothing was handed out
        }
        let mut event = handed_out.event.lock().unwrap_or_else(|e| e.into_inner());
        *event = endpoint.map(|e| (e, detail.unwrap_or_default()));
        handed_out.set.store(event.is_some(), Ordering::Release);
    }

    fn handed_out(&self, endpoint: Endpoint) -> Option<EventDetail> {
        if !self.handed_out.set.load(Ordering::Acquire) {
            return None;
        }
        let event = self.handed_out.event.lock().unwrap_or_else(|e| e.into_inner());
        event.as_ref().filter(|(e, _)| *e == endpoint).map(|(_, detail)| detail.clone())
    }
    /// Starts connecting to `addr`. Returns at once with the endpoint and the local address;
    /// `NetEvent::Connected(endpoint, ok)` reports the outcome later (`false` on refusal, on
    /// timeout, or when a `Ws` handshake fails). Until then `send` answers
    /// `SendStatus::ResourceNotAvailable`.
    ///
    /// `addr` may be a socket address, a `"host:port"` string (resolved here, blocking on DNS)
    /// or, for `Ws`, a `ws://` URL. Errors (an unresolvable name, an unusable address) say
    /// what failed; nothing panics.
    pub fn connect(
        &self,
        transport: Transport,
        addr: impl ToRemoteAddr,
    ) -> io::Result<(Endpoint, SocketAddr)> {
        self.connect_with(transport.into(), addr)
    }

    /// [`connect`](Self::connect) with transport options.
    pub fn connect_with(
        &self,
        transport_connect: TransportConnect,
        addr: impl ToRemoteAddr,
    ) -> io::Result<(Endpoint, SocketAddr)> {
        let addr = addr.to_remote_addr()?;
        let result = self.backend.connect_with(transport_connect, addr, false);
        if let Ok((endpoint, _)) = &result {
            log::trace!("connecting {endpoint}");
        }
        result
    }

    /// Connects and waits until the connection is ready (or refused, or timed out: then an
    /// error). `NetEvent::Connected(endpoint, true)` is still reported, first among the
    /// endpoint's events. Blocks the calling thread; from inside an event callback prefer
    /// [`connect`](Self::connect).
    pub fn connect_sync(
        &self,
        transport: Transport,
        addr: impl ToRemoteAddr,
    ) -> io::Result<(Endpoint, SocketAddr)> {
        self.connect_sync_with(transport.into(), addr)
    }

    /// [`connect_sync`](Self::connect_sync) with transport options.
    pub fn connect_sync_with(
        &self,
        transport_connect: TransportConnect,
        addr: impl ToRemoteAddr,
    ) -> io::Result<(Endpoint, SocketAddr)> {
        let addr = addr.to_remote_addr()?;
        self.backend.connect_with(transport_connect, addr, true)
    }

    /// Listens on `addr` (port 0 picks a free port). Returns the listener's id and the
    /// address it is bound to. For `Udp`, a multicast address joins that group.
    pub fn listen(
        &self,
        transport: Transport,
        addr: impl ToSocketAddrs,
    ) -> io::Result<(ResourceId, SocketAddr)> {
        self.listen_with(transport.into(), addr)
    }

    /// [`listen`](Self::listen) with transport options.
    pub fn listen_with(
        &self,
        transport_listen: TransportListen,
        addr: impl ToSocketAddrs,
    ) -> io::Result<(ResourceId, SocketAddr)> {
        let transport = transport_listen.transport();
        let addr = addr
            .to_socket_addrs()
            .map_err(|e| io::Error::new(e.kind(), format!("{transport} listen: bad address: {e}")))?
            .next()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{transport} listen: the address resolved to nothing"),
                )
            })?;
        let result = self.backend.listen_with(transport_listen, addr);
        if let Ok((id, addr)) = &result {
            log::trace!("listening on {addr} as {id}");
        }
        result
    }

    #[cfg(feature = "adapter")]
    /// Mounts a transport of your own on this network (see [`crate::adapter`]), carried over
    /// TCP: the [`Transport`] returned (a `Transport::Custom`) connects, listens and sends like
    /// a built-in one, on this network. Each mount gets a new id, from
    /// [`AdapterId::FIRST`](crate::adapter::AdapterId::FIRST) on; a network tells apart
    /// [`ResourceId::MAX_ADAPTERS`] transports in all, so at most 124 mounts succeed.
    ///
    /// Natively and in a simulated world (whose connections then carry the protocol's bytes,
    /// cut into seeded segments); in the browser, which has no TCP, it answers an
    /// `io::ErrorKind::Unsupported` error: mount on [`Carrier::WebSocket`] there (see
    /// [`mount_with`](Self::mount_with)).
    ///
    /// [`Carrier::WebSocket`]: crate::adapter::Carrier::WebSocket
    pub fn mount<P: crate::adapter::StreamProtocol>(&self, protocol: P) -> io::Result<Transport> {
        self.mount_with(protocol, crate::adapter::Carrier::Tcp)
    }

    #[cfg(feature = "adapter")]
    /// Mounts a transport of your own carried by `carrier` (see
    /// [`Carrier`](crate::adapter::Carrier)): [`mount`](Self::mount) is `Carrier::Tcp`. A
    /// carrier the backend does not have (TCP in the browser; WebSocket without the
    /// `websocket` feature) answers an `io::ErrorKind::Unsupported` error.
    ///
    /// A browser page and a native server speak a protocol of their own over WebSocket:
    ///
    /// ```no_run
    /// # use portnet::adapter::{Carrier, StreamProtocol};
    /// # use portnet::network::{NetworkController, Transport};
    /// # fn f(network: &NetworkController, lines: impl StreamProtocol) -> std::io::Result<()> {
    /// let lines: Transport = network.mount_with(lines, Carrier::WebSocket)?;
    /// network.connect(lines, "ws://127.0.0.1:8000/lines")?;
    /// # Ok(()) }
    /// ```
    pub fn mount_with<P: crate::adapter::StreamProtocol>(
        &self,
        protocol: P,
        carrier: crate::adapter::Carrier,
    ) -> io::Result<Transport> {
        let mount = crate::adapter::Mount { protocol: std::sync::Arc::new(protocol), carrier };
        let transport = self.backend.mount(mount)?;
        log::trace!("mounted {} over {carrier:?} as {transport}", std::any::type_name::<P>());
        Ok(transport)
    }

    /// Sends one message. Never blocks: when the socket cannot take it now, the message is
    /// queued behind earlier ones and written as the peer reads; a full queue answers
    /// [`SendStatus::QueueFull`]. Messages from several threads to one endpoint never
    /// interleave.
    pub fn send(&self, endpoint: Endpoint, data: &[u8]) -> SendStatus {
        self.backend.send(endpoint, data)
    }

    /// Sends one text message: a WebSocket text frame on `Ws` (browsers' JSON clients expect
    /// them); the same bytes as [`send`](Self::send) on the other transports. Statuses as for
    /// `send`.
    pub fn send_text(&self, endpoint: Endpoint, text: &str) -> SendStatus {
        self.backend.send_text(endpoint, text)
    }

    /// Whether the message being delivered for `endpoint` came as a text or a binary frame.
    /// Ask while handling its `NetEvent::Message` (in a `for_each`/`poll_events` callback, or
    /// right after `try_next` returned it); messages of other transports are
    /// [`MessageKind::Binary`]. Events read from `enqueue`'s receiver carry no kind: the
    /// answer then follows the connection's latest message.
    ///
    /// ```no_run
    /// use portnet::network::{MessageKind, NetEvent, Transport};
    /// use portnet::node::{self, NodeEvent};
    ///
    /// let (handler, listener) = node::split::<()>();
    /// handler.network().listen(Transport::Ws, "127.0.0.1:0").unwrap();
    /// listener.for_each(move |event| {
    ///     if let NodeEvent::Network(NetEvent::Message(endpoint, data)) = event {
    ///         // An echo that answers text with text and binary with binary.
    ///         let network = handler.network();
    ///         match (network.message_kind(endpoint), std::str::from_utf8(data)) {
    ///             (MessageKind::Text, Ok(text)) => network.send_text(endpoint, text),
    ///             _ => network.send(endpoint, data),
    ///         };
    ///     }
    /// });
    /// ```
    pub fn message_kind(&self, endpoint: Endpoint) -> MessageKind {
        match self.handed_out(endpoint) {
            Some(detail) => detail.kind,
            None => self.backend.message_kind(endpoint),
        }
    }

    /// The handshake of an open `Ws` connection: the request's path and headers (server
    /// side), the response's headers (client side), and the agreed subprotocol. `None` for
    /// other transports and before the handshake completes. The same in a simulated world,
    /// where the handshake is agreed as natively (path, the client's headers, subprotocol):
    ///
    /// ```
    /// # #[cfg(feature = "websocket")] {
    /// use portnet::network::{NetEvent, Transport};
    /// use portnet::node::NodeEvent;
    /// use portnet::sim::World;
    /// use std::sync::{Arc, Mutex};
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let mut world = World::with_seed(1);
    /// let server_seen = seen.clone();
    /// world.node::<(), _>("server", move |handler, listener| {
    ///     handler.network().listen(Transport::Ws, "0.0.0.0:80").unwrap();
    ///     listener.for_each(|event| {
    ///         if let NodeEvent::Network(NetEvent::Accepted(endpoint, _)) = event {
    ///             let handshake = handler.network().ws_handshake(endpoint).unwrap();
    ///             server_seen.lock().unwrap().push(handshake.path);
    ///         }
    ///     });
    /// });
    /// let client_seen = seen.clone();
    /// world.node::<(), _>("client", move |handler, listener| {
    ///     let (server, _) = handler.network().connect(Transport::Ws, "ws://server/chat").unwrap();
    ///     // Not yet: the handshake has not completed.
    ///     assert!(handler.network().ws_handshake(server).is_none());
    ///     listener.for_each(|event| {
    ///         if let NodeEvent::Network(NetEvent::Connected(endpoint, true)) = event {
    ///             let handshake = handler.network().ws_handshake(endpoint).unwrap();
    ///             client_seen.lock().unwrap().push(handshake.path);
    ///             handler.stop();
    ///         }
    ///     });
    /// });
    /// world.run_until_idle();
    /// let mut seen = seen.lock().unwrap().clone();
    /// seen.sort();
    /// assert_eq!(seen, ["/chat", "/chat"]);
    /// # }
    /// ```
    pub fn ws_handshake(&self, endpoint: Endpoint) -> Option<WsHandshake> {
        self.backend.ws_handshake(endpoint)
    }

    /// The code and reason of the Close frame a `Ws` peer sent, while its
    /// `NetEvent::Disconnected` is being handled (in the callback, or right after `try_next`
    /// returned it); `None` otherwise (no Close frame, another transport, or later).
    pub fn ws_close(&self, endpoint: Endpoint) -> Option<WsClose> {
        match self.handed_out(endpoint) {
            Some(detail) => detail.close,
            None => self.backend.ws_close(endpoint),
        }
    }

    /// Closes a connection or listener. Messages already queued for the connection are still
    /// written; no event is reported for it afterwards, not even `Disconnected`. Returns
    /// whether the resource existed.
    ///
    /// Natively the close is graceful: after the queue (and, for `Ws`, a Close frame with code
    /// 1000) the connection sends its end of stream and reads, dropping it, whatever the peer
    /// still sends until the peer's own end (or `Ws` Close), so the kernel never resets it with
    /// data in flight. That takes at most the [linger](Self::set_linger); the socket is closed
    /// then in any case, and what was still queued is dropped with a warning in the log.
    pub fn remove(&self, resource_id: ResourceId) -> bool {
        self.backend.remove(resource_id)
    }

    /// Bounds how long a closing connection may take to hand over what it had queued: after
    /// [`remove`](Self::remove), and in all for the node's connections when the node stops
    /// ([`NodeHandler::stop`](crate::node::NodeHandler::stop): `for_each` returns at most this
    /// long after the last turn). Default [`DEFAULT_LINGER`] (1 s); `Duration::ZERO` drops
    /// whatever the sockets cannot take at once.
    ///
    /// A peer that reads loses nothing in that time; bytes still queued when it runs out (a
    /// peer that stopped reading, a `Ws` peer that never answers the Close) are dropped, and a
    /// warning is logged per connection with its address, resource id and the bytes dropped.
    /// In a simulated world the linger is virtual time; in the browser see `docs/browser.md`.
    ///
    /// ```
    /// use portnet::node;
    /// use std::time::Duration;
    ///
    /// let (handler, _listener) = node::split::<()>();
    /// handler.network().set_linger(Duration::from_millis(200));
    /// assert_eq!(handler.network().linger(), Duration::from_millis(200));
    /// ```
    pub fn set_linger(&self, linger: Duration) {
        self.backend.linger().set(linger)
    }

    /// The linger set by [`set_linger`](Self::set_linger) ([`DEFAULT_LINGER`] until then).
    pub fn linger(&self) -> Duration {
        self.backend.linger().get()
    }

    /// `Some(true)` once the resource can send, `Some(false)` while it connects, `None` if it
    /// does not exist.
    pub fn is_ready(&self, resource_id: ResourceId) -> Option<bool> {
        self.backend.is_ready(resource_id)
    }

    pub(crate) fn when_writable(&self, endpoint: Endpoint, notify: Box<dyn FnOnce() + Send>) {
        self.backend.when_writable(endpoint, notify)
    }

    pub(crate) fn was_removed(&self, id: ResourceId) -> bool {
        self.backend.was_removed(id)
    }

    pub(crate) fn weak_waker(&self) -> std::sync::Arc<dyn Fn() + Send + Sync> {
        self.backend.weak_waker()
    }

    /// Whether this network is a simulated world's.
    pub(crate) fn is_simulated(&self) -> bool {
        self.backend.is_simulated()
    }

    pub(crate) fn wake(&self) {
        self.backend.wake()
    }

    /// In a simulated world, yields the node to the world until it is woken or `timeout`
    /// passes, without taking its events (see `node::stream::sim`).
    #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
    pub(crate) fn park_simulated(&self, timeout: Option<Duration>) {
        self.backend.park_simulated(timeout)
    }

    /// Installs a node's loop on the JS event loop (the browser's `for_each`).
    #[cfg(all(target_family = "wasm", target_os = "unknown"))]
    pub(crate) fn install_loop(&self, turn: crate::backend::browser::Turn) {
        self.backend.install_loop(turn)
    }

    /// Takes the installed loop off the JS event loop, leaving the sockets open.
    #[cfg(all(target_family = "wasm", target_os = "unknown"))]
    pub(crate) fn uninstall_loop(&self) {
        self.backend.uninstall_loop()
    }
}

/// Waits for network activity and reports it. Lives on one thread at a time.
pub struct NetworkProcessor {
    backend: backend::Processor,
}

impl NetworkProcessor {
    /// Waits up to `timeout` (forever with `None`) for activity, then reports every event it
    /// found. May return with no event (a wake-up or the timeout). In the browser it never
    /// waits: it reports the events ready now.
    ///
    /// A latency-critical loop waits with `None`: natively, a wait with a timeout arms a kernel
    /// timer each time (about 0.1 µs per wait, see `docs/performance.md`).
    pub fn process_poll_event(
        &mut self,
        timeout: Option<Duration>,
        mut event_callback: impl FnMut(NetEvent<'_>),
    ) {
        self.backend.process_poll_event(timeout, &mut event_callback)
    }

    /// Reports events until `timeout` passes with none (wake-ups and handshake steps do not
    /// end the wait early). In the browser it cannot wait: it reports the events ready now.
    pub fn process_poll_events_until_timeout(
        &mut self,
        timeout: Duration,
        mut event_callback: impl FnMut(NetEvent<'_>),
    ) {
        if cfg!(all(target_family = "wasm", target_os = "unknown")) {
            return self.backend.process_poll_event(None, &mut event_callback);
        }
        let clock = crate::core::clock::Clock::system();
        let mut quiet_until = clock.now().after(timeout);
        loop {
            let now = clock.now();
            if now >= quiet_until {
                break;
            }
            let mut any = false;
            self.backend.process_poll_event(Some(now.until(quiet_until)), &mut |event| {
                any = true;
                event_callback(event)
            });
            if any {
                quiet_until = clock.now().after(timeout);
            }
        }
    }

    pub(crate) fn process(
        &mut self,
        timeout: Option<Duration>,
        callback: &mut dyn FnMut(NetEvent<'_>),
    ) {
        self.backend.process_poll_event(timeout, callback)
    }
}
