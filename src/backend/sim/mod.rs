//! The simulated backend: a node's driver inside a [`crate::sim::World`].
//!
//! Each simulated node runs its application as a coroutine (a stackful generator) on the
//! world's thread: waiting for events (`process_poll_event`) yields back to the world, which
//! advances virtual time to the next event and resumes the node it concerns. So application
//! code blocks and borrows exactly as natively, only one node runs at a time, in an order fixed
//! by the seed, and handing the thread over costs tens of nanoseconds, not an OS thread switch.

mod linger;
pub(crate) mod world;

use crate::adapter::Protocol;
#[cfg(feature = "websocket")]
use crate::adapters::ws::{DEFAULT_PATH, WsConnectConfig};
use crate::adapters::ws::{MessageKind, WsClose, WsHandshake};
use crate::core::{
    Endpoint, EventDetail, LingerSetting, NetEvent, RemoteAddr, ResourceId, SendStatus,
    StoredNetEvent, TransportConnect, TransportListen,
};
use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
#[cfg(feature = "websocket")]
use world::WsRequest;
use world::{Core, NodeId, Status};

/// What a node's coroutine gives the world when it stops running.
pub(crate) enum Yielded {
    /// It waits for events.
    Waiting,
    /// Its application function returned.
    Finished,
    /// Its application panicked, with this message.
    Panicked(String),
}

thread_local! {
    /// The world and node running on this thread right now, if any.
    pub(crate) static CURRENT: Cell<Option<(u64, NodeId)>> = const { Cell::new(None) };
}

/// What the world and its nodes share.
pub(crate) struct Shared {
    pub id: u64,
    pub core: Mutex<Core>,
    /// The thread that owns the world (and runs its nodes).
    pub world_thread: std::thread::ThreadId,
    /// The world's seed (each node's random source is derived from it).
    pub seed: u64,
    /// When recording: per node name, a line per event its application was handed.
    pub app_events: Mutex<Option<std::collections::BTreeMap<String, Vec<String>>>>,
}

impl Shared {
    pub fn core(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Panics unless the current thread is the world's: the one that owns it and runs its nodes.
fn check_thread(shared: &Shared, node: NodeId) {
    let here = CURRENT.get();
    if matches!(here, Some((world, _)) if world == shared.id)
        || std::thread::current().id() == shared.world_thread
    {
        return;
    }
    let name = shared.core().nodes[node].name.clone();
    panic!(
        "portnet sim: the handler of simulated node {name:?} was used from a thread outside \
         its world; only the world's node threads and the thread that owns the World may \
         use it (spawned threads would run outside the seeded schedule)"
    );
}

/// Makes a waiting node run at the current time (a signal or `stop` reached it).
fn wake_node(shared: &Shared, node: NodeId) {
    if CURRENT.get() == Some((shared.id, node)) {
        return; // the node itself: its loop sees the signal
    }
    check_thread(shared, node);
    let mut core = shared.core();
    if core.nodes[node].status == Status::Waiting {
        let now = core.now;
        core.wake_at(node, now);
    }
}

/// A simulated node's network controller.
#[derive(Clone)]
pub(crate) struct Controller {
    shared: Arc<Shared>,
    node: NodeId,
    /// The node's linger, in virtual time (see [`linger`]).
    linger: Arc<LingerSetting>,
    /// The transports this node's network mounted (a restarted node mounts anew).
    #[cfg(feature = "adapter")]
    mounted: Arc<crate::adapter::Mounted>,
}

/// A simulated node's event source.
pub(crate) struct Processor {
    controller: Controller,
}

pub(crate) fn split(shared: Arc<Shared>, node: NodeId) -> (Controller, Processor) {
    let controller = Controller {
        shared,
        node,
        linger: Arc::default(),
        #[cfg(feature = "adapter")]
        mounted: Arc::default(),
    };
    (controller.clone(), Processor { controller })
}

impl Controller {
    /// Simulated nodes are driven by their world: a handler used from a thread the world does
    /// not know would run outside its schedule and break determinism. Fail loudly instead.
    fn check_thread(&self) {
        check_thread(&self.shared, self.node);
    }

    fn core(&self) -> MutexGuard<'_, Core> {
        self.check_thread();
        self.shared.core()
    }

    pub fn connect_with(
        &self,
        config: TransportConnect,
        addr: RemoteAddr,
        sync: bool,
    ) -> io::Result<(Endpoint, SocketAddr)> {
        let transport = config.transport();
        #[cfg_attr(not(feature = "adapter"), allow(unused_mut))]
        let mut protocol: Option<Protocol> = None;
        let (timeout, max_frame, limit) = match config {
            #[cfg(feature = "tcp")]
            TransportConnect::Tcp(ref c) => {
                (c.options.connect_timeout, usize::MAX, c.options.send_queue_limit)
            }
            #[cfg(feature = "tcp")]
            TransportConnect::FramedTcp(ref c) => {
                (c.options.connect_timeout, c.max_frame_size, c.options.send_queue_limit)
            }
            #[cfg(feature = "udp")]
            TransportConnect::Udp(_) => {
                (crate::adapters::DEFAULT_CONNECT_TIMEOUT, usize::MAX, usize::MAX)
            }
            #[cfg(feature = "websocket")]
            TransportConnect::Ws => (
                crate::adapters::DEFAULT_CONNECT_TIMEOUT,
                crate::adapters::ws::MAX_PAYLOAD_LEN,
                crate::adapters::DEFAULT_SEND_QUEUE_LIMIT,
            ),
            // The simulated network carries no TLS and no handshake headers: only the limits
            // matter here.
            #[cfg(feature = "websocket")]
            TransportConnect::WsWith(ref c) => {
                (c.options.connect_timeout, c.ws.max_message_size, c.options.send_queue_limit)
            }
            #[cfg(feature = "adapter")]
            TransportConnect::Custom(transport, ref c) => {
                protocol = Some(self.mounted.get(transport)?.protocol);
                (c.options.connect_timeout, usize::MAX, c.options.send_queue_limit)
            }
        };
        if sync && CURRENT.get().is_none() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "portnet sim: connect_sync from the thread that owns the World would block the world; \
                 use connect and run the world",
            ));
        }
        let ws = match &config {
            #[cfg(feature = "websocket")]
            TransportConnect::Ws => Some(ws_request(&addr, &WsConnectConfig::default())),
            #[cfg(feature = "websocket")]
            TransportConnect::WsWith(c) => Some(ws_request(&addr, c)),
            _ => None,
        };
        let stream = world::StreamConfig { timeout, max_frame, queue_limit: limit, ws, protocol };
        let result = self.core().connect(self.node, transport, &addr, stream)?;
        if sync {
            // Let the world run until the connect is decided, in virtual time.
            let id = result.0.resource_id();
            loop {
                match self.is_ready(id) {
                    Some(true) => break,
                    None => {
                        return Err(io::Error::new(
                            io::ErrorKind::ConnectionRefused,
                            format!("{transport} connect to {addr}: refused or timed out"),
                        ));
                    }
                    Some(false) => self.wait(None),
                }
            }
        }
        Ok(result)
    }

    pub fn listen_with(
        &self,
        config: TransportListen,
        addr: SocketAddr,
    ) -> io::Result<(ResourceId, SocketAddr)> {
        #[cfg_attr(not(feature = "adapter"), allow(unused_mut))]
        let mut protocol: Option<Protocol> = None;
        let limit = match config {
            #[cfg(feature = "tcp")]
            TransportListen::Tcp(ref c) => c.options.send_queue_limit,
            #[cfg(feature = "tcp")]
            TransportListen::FramedTcp(ref c) => c.options.send_queue_limit,
            #[cfg(feature = "websocket")]
            TransportListen::WsWith(ref c) => c.options.send_queue_limit,
            #[cfg(feature = "udp")]
            TransportListen::Udp(_) => crate::adapters::DEFAULT_SEND_QUEUE_LIMIT,
            #[cfg(feature = "websocket")]
            TransportListen::Ws => crate::adapters::DEFAULT_SEND_QUEUE_LIMIT,
            #[cfg(feature = "adapter")]
            TransportListen::Custom(transport, ref c) => {
                protocol = Some(self.mounted.get(transport)?.protocol);
                c.options.send_queue_limit
            }
        };
        let subprotocols = match &config {
            #[cfg(feature = "websocket")]
            TransportListen::WsWith(c) => c.ws.subprotocols.clone(),
            _ => Vec::new(),
        };
        self.core().listen(self.node, config.transport(), addr, limit, subprotocols, protocol)
    }

    #[cfg(feature = "adapter")]
    /// Mounts a transport of the application's on this node's network, as natively. The
    /// world carries its bytes on its stream connections, whatever the carrier.
    pub fn mount(&self, mount: crate::adapter::Mount) -> io::Result<crate::core::Transport> {
        self.mounted.mount(mount.supported()?)
    }

    pub fn send(&self, endpoint: Endpoint, data: &[u8]) -> SendStatus {
        self.core().send(self.node, endpoint, data, MessageKind::Binary)
    }

    /// A text frame on `Ws` (read as text by the peer); bytes on the other transports.
    pub fn send_text(&self, endpoint: Endpoint, text: &str) -> SendStatus {
        self.core().send(self.node, endpoint, text.as_bytes(), MessageKind::Text)
    }

    pub fn ws_handshake(&self, endpoint: Endpoint) -> Option<WsHandshake> {
        self.core().ws_handshake(self.node, endpoint.resource_id())
    }

    /// What `message_kind` and `ws_close` answer for `endpoint` now: the detail of the event
    /// being handled, if it is `endpoint`'s.
    fn in_hand(&self, endpoint: Endpoint) -> EventDetail {
        match &self.core().nodes[self.node].in_hand {
            Some((e, detail)) if *e == endpoint => detail.clone(),
            _ => EventDetail::default(),
        }
    }

    /// Whether the message being handled now on `endpoint` came as a text frame.
    pub fn message_kind(&self, endpoint: Endpoint) -> MessageKind {
        self.in_hand(endpoint).kind
    }

    /// The Close frame of the `Ws` disconnection being handled now on `endpoint`, if any.
    pub fn ws_close(&self, endpoint: Endpoint) -> Option<WsClose> {
        self.in_hand(endpoint).close
    }

    pub fn remove(&self, id: ResourceId) -> bool {
        let (removed, drained) = {
            let mut core = self.core();
            let removed = core.remove(self.node, id);
            (removed, std::mem::take(&mut core.drained))
        };
        // Outside the lock: they send signals.
        for notify in drained {
            notify();
        }
        removed
    }

    pub fn linger(&self) -> &LingerSetting {
        &self.linger
    }

    pub fn is_ready(&self, id: ResourceId) -> Option<bool> {
        self.core().is_ready(self.node, id)
    }

    pub fn when_writable(&self, endpoint: Endpoint, notify: Box<dyn FnOnce() + Send>) {
        let now = self.core().when_writable(self.node, endpoint, notify);
        if let Some(notify) = now {
            notify(); // outside the world's lock: it sends a signal
        }
    }

    pub fn was_removed(&self, id: ResourceId) -> bool {
        self.core().nodes[self.node].removed.contains(&id)
    }

    pub fn weak_waker(&self) -> Arc<dyn Fn() + Send + Sync> {
        let shared = Arc::downgrade(&self.shared);
        let node = self.node;
        Arc::new(move || {
            if let Some(shared) = shared.upgrade() {
                wake_node(&shared, node);
            }
        })
    }

    pub fn wake(&self) {
        wake_node(&self.shared, self.node);
    }

    /// Gives the baton back to the world until it runs this node again: when an event arrives
    /// or `timeout` of virtual time passes.
    fn wait(&self, timeout: Option<Duration>) {
        self.core().nodes[self.node].removed.clear();
        self.park(timeout);
    }

    /// Gives the baton back to the world as [`wait`](Self::wait) does, without taking the
    /// node's events: an async node's executor waits so while nothing polls its stream.
    pub fn park(&self, timeout: Option<Duration>) {
        {
            let mut core = self.core();
            match timeout {
                Some(timeout) => {
                    let at = core.now + timeout;
                    core.wake_at(self.node, at);
                }
                None => core.nodes[self.node].wake = None,
            }
            core.nodes[self.node].status = Status::Waiting;
        }
        if !generator::is_generator() {
            let name = self.shared.core().nodes[self.node].name.clone();
            panic!(
                "portnet sim: the listener of simulated node {name:?} waited outside its node's \
                 application; only the node's own code may wait for its events"
            );
        }
        // Back to the world until it resumes this node. A crash resumes it with generator's
        // `Cancel` unwinding instead, which ends the application where it waits.
        //
        // The free `yield_with` is deprecated in favour of a scope handle, which would have to
        // be threaded from the node's start through the application's own call stack down to
        // here; the free function finds the running coroutine itself.
        #[allow(deprecated)]
        generator::yield_with(Yielded::Waiting);
    }
}

/// The handshake request a native `Ws` connect to `addr` makes: its path (a URL's own, else the
/// configured one), its headers (names lowercase; no `sec-websocket-key`, nothing is hashed
/// here) and its subprotocol offer.
#[cfg(feature = "websocket")]
fn ws_request(addr: &RemoteAddr, config: &WsConnectConfig) -> WsRequest {
    let configured = config.path.as_deref().unwrap_or(DEFAULT_PATH);
    let configured =
        if configured.starts_with('/') { configured.to_owned() } else { format!("/{configured}") };
    let (path, host) = match addr {
        RemoteAddr::Socket(peer) => (configured, peer.to_string()),
        RemoteAddr::Str(text) => match url::Url::parse(text) {
            Ok(url) if matches!(url.scheme(), "ws" | "wss") => {
                let mut path = url.path().to_owned();
                if let Some(query) = url.query() {
                    path.push('?');
                    path.push_str(query);
                }
                let host = url.host_str().unwrap_or_default();
                let host = match url.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host.to_owned(),
                };
                (path, host)
            }
            _ => (configured, text.clone()),
        },
    };
    let mut headers: Vec<(String, String)> = [
        ("host", host.as_str()),
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
    ]
    .iter()
    .map(|(name, value)| (name.to_string(), value.to_string()))
    .collect();
    if !config.ws.subprotocols.is_empty() {
        let offer = config.ws.subprotocols.join(", ");
        headers.push(("sec-websocket-protocol".to_owned(), offer));
    }
    let own = config.headers.iter().map(|(name, value)| (name.to_lowercase(), value.clone()));
    headers.extend(own);
    WsRequest { path, headers, subprotocols: config.ws.subprotocols.clone() }
}

impl Processor {
    fn set_in_hand(&self, event: Option<(Endpoint, EventDetail)>) {
        self.controller.core().nodes[self.controller.node].in_hand = event;
    }

    pub fn process_poll_event(
        &mut self,
        timeout: Option<Duration>,
        callback: &mut dyn FnMut(NetEvent<'_>),
    ) {
        self.controller.wait(timeout);
        let events = std::mem::take(&mut self.controller.core().nodes[self.controller.node].inbox);
        for (event, detail) in events {
            // Nothing for a resource the application removed while handling this batch.
            let endpoint = match &event {
                StoredNetEvent::Connected(e, _)
                | StoredNetEvent::Accepted(e, _)
                | StoredNetEvent::Message(e, _)
                | StoredNetEvent::Disconnected(e) => *e,
            };
            if self.controller.was_removed(endpoint.resource_id()) {
                continue;
            }
            if detail != EventDetail::default() {
                self.set_in_hand(Some((endpoint, detail)));
                callback(event.borrow());
                self.set_in_hand(None);
            } else {
                callback(event.borrow());
            }
        }
    }
}
