//! The browser backend (`wasm32-unknown-unknown` in a web page or worker).
//!
//! `Transport::Ws` connects map onto the browser's `WebSocket` ([`ws`]); every other operation
//! answers with a clear `Unsupported` error. Nothing blocks: the node's loop is installed by
//! `for_each` and runs from the JS event loop, woken by socket events, by signals (through a
//! `MessageChannel`, a task that is not throttled like a zero `setTimeout`) and by a
//! `setTimeout` at the next timer's deadline.
//!
//! JS objects cannot cross threads, so they live in a thread-local table, keyed by network;
//! the [`Controller`] and [`Processor`] hold only the key. That keeps the public types `Send`
//! and `Sync` on every target. (This target has one thread.)

mod js;
mod ws;

use crate::adapters::ws::{DEFAULT_PATH, MessageKind, WsClose, WsConnectConfig, WsHandshake};
use crate::core::resource_id::ResourceIdGenerator;
use crate::core::{
    Endpoint, LingerSetting, NetEvent, RemoteAddr, ResourceId, ResourceType, SendStatus,
    StoredNetEvent, TransportConnect, TransportListen,
};
use js::Timeout;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::MessageChannel;

/// How often a blocked sender's queue is checked while someone waits for it to drain: the
/// browser reports no event when `bufferedAmount` falls.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// One step of a node's loop, installed by `for_each`: delivers what is ready, then says when
/// to run again (`Some(None)`: when woken; `Some(Some(d))`: after `d` at the latest) or that
/// the node stopped (`None`).
pub(crate) type Turn = Box<dyn FnMut() -> Option<Option<Duration>>>;

thread_local! {
    static NETWORKS: RefCell<HashMap<u32, Network>> = RefCell::new(HashMap::new());
}

static NEXT_NETWORK: AtomicU32 = AtomicU32::new(0);

/// Runs `f` on network `id`'s state. Never call out to the application (or drop anything
/// that may own a [`Handle`]) inside `f`: the table is borrowed.
fn with_network<R>(id: u32, f: impl FnOnce(&mut Network) -> R) -> Option<R> {
    NETWORKS.with(|networks| networks.borrow_mut().get_mut(&id).map(f))
}

fn unsupported(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, what)
}

/// A network's JS-side state.
#[derive(Default)]
struct Network {
    ids: ResourceIdGenerator,
    connections: HashMap<ResourceId, ws::Connection>,
    /// Events reported by sockets and not delivered yet.
    events: VecDeque<(StoredNetEvent, ws::Detail)>,
    /// The event being delivered: what `message_kind` and `ws_close` answer from.
    delivering: Option<(ResourceId, ws::Detail)>,
    /// Removed by the application since the processor last ran.
    removed: Vec<ResourceId>,
    /// Connections that ended inside their own JS handler: released on the next turn, once
    /// that handler has returned.
    retired: Vec<ws::Connection>,
    event_loop: Option<EventLoop>,
    /// The transports mounted on this network (carried over WebSocket).
    #[cfg(feature = "adapter")]
    mounted: crate::adapter::Mounted,
}

/// A node's loop, installed on the JS event loop by `for_each`.
struct EventLoop {
    /// Taken out while it runs.
    turn: Option<Turn>,
    /// Runs the loop; the handler of `channel` and of `timer`.
    run: Closure<dyn FnMut()>,
    /// Posting to it runs the loop soon (`None` where `MessageChannel` is missing: then a
    /// zero `setTimeout`).
    channel: Option<MessageChannel>,
    scheduled: bool,
    /// The wake-up at the next timer's deadline (or the next drain check).
    timer: Option<Timeout>,
}

impl EventLoop {
    fn schedule(&mut self) {
        if self.scheduled {
            return;
        }
        self.scheduled = true;
        match &self.channel {
            Some(channel) => {
                if channel.port2().post_message(&JsValue::NULL).is_err() {
                    self.timer = Some(Timeout::new(self.run.as_ref(), Duration::ZERO));
                }
            }
            None => self.timer = Some(Timeout::new(self.run.as_ref(), Duration::ZERO)),
        }
    }
}

impl Drop for EventLoop {
    fn drop(&mut self) {
        self.timer = None;
        if let Some(channel) = &self.channel {
            channel.port1().set_onmessage(None);
            channel.port1().close();
            channel.port2().close();
        }
    }
}

/// Releases a network's JS state when its last controller or processor goes.
struct Handle(u32);

impl Drop for Handle {
    fn drop(&mut self) {
        // Dropped outside the borrow: the state may own the loop, which may own handles.
        let network = NETWORKS.try_with(|networks| networks.borrow_mut().remove(&self.0));
        drop(network);
    }
}

pub(crate) fn split() -> io::Result<(Controller, Processor)> {
    let id = NEXT_NETWORK.fetch_add(1, Ordering::Relaxed);
    NETWORKS.with(|networks| networks.borrow_mut().insert(id, Network::default()));
    let handle = Arc::new(Handle(id));
    let linger = Arc::default();
    Ok((Controller { handle: handle.clone(), linger }, Processor { handle }))
}

/// Runs the loop of network `id` soon, if one is installed.
fn schedule(id: u32) {
    with_network(id, |network| {
        if let Some(event_loop) = &mut network.event_loop {
            event_loop.schedule();
        }
    });
}

/// One run of a node's loop, from the JS event loop.
fn run(id: u32) {
    let turn = with_network(id, |network| {
        let event_loop = network.event_loop.as_mut()?;
        event_loop.scheduled = false;
        event_loop.timer = None;
        event_loop.turn.take()
    });
    let Some(Some(mut turn)) = turn else { return };
    let Some(wait) = turn() else {
        // Stopped: close the sockets, clear the timers, release the closures, then the loop
        // (and with it the application's callback). The loop's `run` closure is the one
        // running now: wasm-bindgen defers freeing a closure dropped during its own call.
        let released = with_network(id, |network| {
            let connections = std::mem::take(&mut network.connections);
            let retired = std::mem::take(&mut network.retired);
            network.events.clear();
            (connections, retired, network.event_loop.take())
        });
        drop(released);
        drop(turn);
        return;
    };
    // The loop owns a processor, so the network is still there to take the turn back.
    let leftover = with_network(id, move |network| {
        let draining = network.connections.values().any(ws::Connection::has_waiters);
        let Some(event_loop) = &mut network.event_loop else { return Some(turn) };
        event_loop.turn = Some(turn);
        let mut wait = if network.events.is_empty() { wait } else { Some(Duration::ZERO) };
        if draining {
            wait = Some(wait.map_or(DRAIN_POLL, |wait| wait.min(DRAIN_POLL)));
        }
        match wait {
            Some(Duration::ZERO) => event_loop.schedule(),
            Some(delay) if !event_loop.scheduled => {
                event_loop.timer = Some(Timeout::new(event_loop.run.as_ref(), delay))
            }
            _ => (),
        }
        None
    });
    drop(leftover);
}

/// A socket of network `net` reported something.
fn on_socket_event(net: u32, id: ResourceId, value: JsValue) {
    let reported = with_network(net, |network| {
        let connection = network.connections.get_mut(&id)?;
        match connection.on_js_event(value) {
            ws::Report::Nothing => None,
            ws::Report::Event(event, detail) => {
                network.events.push_back((event, detail));
                Some(Vec::new())
            }
            ws::Report::Last(event, detail) => {
                network.events.push_back((event, detail));
                Some(retire(network, id))
            }
            ws::Report::Decoded(messages, failed) => {
                let endpoint = connection.endpoint;
                let kind = ws::Detail::Kind(MessageKind::Binary);
                for message in messages {
                    let event = StoredNetEvent::Message(endpoint, message);
                    network.events.push_back((event, kind.clone()));
                }
                if failed.is_none() {
                    return Some(Vec::new());
                }
                network
                    .events
                    .push_back((StoredNetEvent::Disconnected(endpoint), ws::Detail::None));
                Some(retire(network, id))
            }
        }
    });
    if let Some(Some(waiters)) = reported {
        waiters.into_iter().for_each(|notify| notify());
        schedule(net);
    }
}

/// Takes a connection whose last event was reported out of the table, and its waiters.
fn retire(network: &mut Network, id: ResourceId) -> Vec<Box<dyn FnOnce() + Send>> {
    let Some(mut connection) = network.connections.remove(&id) else { return Vec::new() };
    let waiters = connection.take_waiters();
    // This handler belongs to the connection: release it after it returns.
    network.retired.push(connection);
    waiters
}

fn endpoint_of(event: &StoredNetEvent) -> Endpoint {
    match event {
        StoredNetEvent::Connected(endpoint, _)
        | StoredNetEvent::Accepted(endpoint, _)
        | StoredNetEvent::Message(endpoint, _)
        | StoredNetEvent::Disconnected(endpoint) => *endpoint,
    }
}

/// The acting half: connect, send, remove.
#[derive(Clone)]
pub(crate) struct Controller {
    handle: Arc<Handle>,
    /// Kept for the API: a browser's `WebSocket` cannot be made to give up on what it buffered
    /// (`docs/browser.md`, "Closing"), so nothing here waits for it.
    linger: Arc<LingerSetting>,
}

impl Controller {
    fn id(&self) -> u32 {
        self.handle.0
    }

    pub fn connect_with(
        &self,
        config: TransportConnect,
        addr: RemoteAddr,
        sync: bool,
    ) -> io::Result<(Endpoint, SocketAddr)> {
        let transport = config.transport();
        let net = self.id();
        let (config, carried) = match config {
            #[cfg(feature = "websocket")]
            TransportConnect::WsWith(config) => (config, None),
            #[cfg(feature = "adapter")]
            TransportConnect::Custom(transport, config) => {
                let mounted = with_network(net, |network| network.mounted.get(transport));
                let mount = mounted.ok_or_else(|| io::Error::other("the network is gone"))??;
                (WsConnectConfig::from_options(config.options), Some(mount.protocol))
            }
            _ if transport.is_ws() => (WsConnectConfig::default(), None),
            _ => {
                return Err(unsupported(format!(
                    "connect over {transport} is not available in the browser: a web page has \
                     no raw sockets, only Ws"
                )));
            }
        };
        if sync {
            return Err(unsupported(
                "connect_sync cannot wait in the browser: use connect and wait for \
                 NetEvent::Connected"
                    .into(),
            ));
        }
        let (url, peer) = ws::target(&addr, config.path.as_deref().unwrap_or(DEFAULT_PATH))?;
        let opened = with_network(net, |network| {
            let id = network.ids.generate(transport.id(), ResourceType::Remote);
            let endpoint = Endpoint::new(id, peer);
            let handler = Closure::<dyn FnMut(JsValue)>::new(move |value| {
                on_socket_event(net, id, value);
            });
            let connection =
                ws::Connection::open(endpoint, &url, &config, handler)?.carrying(carried);
            network.connections.insert(id, connection);
            Ok(endpoint)
        });
        let endpoint = opened.unwrap_or_else(|| Err(io::Error::other("the network is gone")))?;
        // The browser does not tell the local address.
        Ok((endpoint, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))))
    }

    #[cfg(feature = "adapter")]
    /// Mounts a transport carried over WebSocket: the one carrier a page has.
    pub fn mount(&self, mount: crate::adapter::Mount) -> io::Result<crate::core::Transport> {
        if mount.carrier != crate::adapter::Carrier::WebSocket {
            return Err(unsupported(format!(
                "mount over {:?}: a web page has no raw sockets; mount with Carrier::WebSocket",
                mount.carrier
            )));
        }
        let mount = mount.supported()?;
        with_network(self.id(), |network| network.mounted.mount(mount))
            .unwrap_or_else(|| Err(io::Error::other("the network is gone")))
    }

    pub fn listen_with(
        &self,
        config: TransportListen,
        _addr: SocketAddr,
    ) -> io::Result<(ResourceId, SocketAddr)> {
        Err(unsupported(format!(
            "listen over {} is not available in the browser: a web page cannot accept \
             connections (run the server as a native node)",
            config.transport()
        )))
    }

    pub fn send(&self, endpoint: Endpoint, data: &[u8]) -> SendStatus {
        let id = endpoint.resource_id();
        with_network(self.id(), |network| {
            network.connections.get_mut(&id).map(|connection| connection.send(data))
        })
        .flatten()
        .unwrap_or(SendStatus::ResourceNotFound)
    }

    pub fn send_text(&self, endpoint: Endpoint, text: &str) -> SendStatus {
        let id = endpoint.resource_id();
        with_network(self.id(), |network| {
            network.connections.get_mut(&id).map(|connection| connection.send_text(text))
        })
        .flatten()
        .unwrap_or(SendStatus::ResourceNotFound)
    }

    pub fn message_kind(&self, endpoint: Endpoint) -> MessageKind {
        match self.delivering(endpoint) {
            Some(ws::Detail::Kind(kind)) => kind,
            _ => MessageKind::Binary,
        }
    }

    pub fn ws_handshake(&self, endpoint: Endpoint) -> Option<WsHandshake> {
        let id = endpoint.resource_id();
        with_network(self.id(), |network| network.connections.get(&id)?.handshake()).flatten()
    }

    pub fn ws_close(&self, endpoint: Endpoint) -> Option<WsClose> {
        match self.delivering(endpoint) {
            Some(ws::Detail::Close(close)) => Some(close),
            _ => None,
        }
    }

    /// The detail of the event being delivered for `endpoint`, if one is.
    fn delivering(&self, endpoint: Endpoint) -> Option<ws::Detail> {
        with_network(self.id(), |network| match &network.delivering {
            Some((id, detail)) if *id == endpoint.resource_id() => Some(detail.clone()),
            _ => None,
        })
        .flatten()
    }

    pub fn remove(&self, id: ResourceId) -> bool {
        let removed = with_network(self.id(), |network| {
            let mut connection = network.connections.remove(&id)?;
            network.events.retain(|(event, _)| endpoint_of(event).resource_id() != id);
            network.removed.push(id);
            let waiters = connection.take_waiters();
            Some((connection, waiters))
        })
        .flatten();
        match removed {
            Some((connection, waiters)) => {
                drop(connection);
                waiters.into_iter().for_each(|notify| notify());
                true
            }
            None => false,
        }
    }

    pub fn linger(&self) -> &LingerSetting {
        &self.linger
    }

    pub fn is_ready(&self, id: ResourceId) -> Option<bool> {
        with_network(self.id(), |network| network.connections.get(&id).map(|c| c.is_open()))
            .flatten()
    }

    pub fn when_writable(&self, endpoint: Endpoint, notify: Box<dyn FnOnce() + Send>) {
        let id = endpoint.resource_id();
        let now = with_network(self.id(), |network| match network.connections.get_mut(&id) {
            Some(connection) => connection.when_writable(notify),
            None => Some(notify),
        })
        .flatten();
        match now {
            Some(notify) => notify(),
            // The loop polls the queue while someone waits.
            None => schedule(self.id()),
        }
    }

    pub fn was_removed(&self, id: ResourceId) -> bool {
        with_network(self.id(), |network| network.removed.contains(&id)).unwrap_or(false)
    }

    pub fn weak_waker(&self) -> Arc<dyn Fn() + Send + Sync> {
        let id = self.id();
        Arc::new(move || schedule(id))
    }

    pub fn wake(&self) {
        schedule(self.id())
    }

    /// Installs a node's loop on the JS event loop and returns; `turn` runs whenever
    /// something may be ready, until it reports that the node stopped.
    pub fn install_loop(&self, turn: Turn) {
        let id = self.id();
        let run = Closure::<dyn FnMut()>::new(move || self::run(id));
        let channel = match MessageChannel::new() {
            Ok(channel) => {
                channel.port1().set_onmessage(Some(run.as_ref().unchecked_ref()));
                Some(channel)
            }
            Err(_) => None,
        };
        let event_loop =
            EventLoop { turn: Some(turn), run, channel, scheduled: false, timer: None };
        let previous = with_network(id, |network| network.event_loop.replace(event_loop));
        drop(previous);
        schedule(id);
    }

    /// Takes the installed loop off the JS event loop, if one is installed, leaving the sockets
    /// open (a `NodeStream` giving its listener back). Not from inside the loop's own turn.
    pub fn uninstall_loop(&self) {
        let removed = with_network(self.id(), |network| network.event_loop.take());
        // Dropped outside the borrow: the loop owns the turn, which may own anything.
        drop(removed);
    }
}

/// The event-reporting half. It cannot wait in a browser: it reports what the sockets
/// reported since it last ran.
pub(crate) struct Processor {
    handle: Arc<Handle>,
}

impl Processor {
    /// Reports every event ready now. `timeout` is not waited for: nothing blocks here.
    pub fn process_poll_event(
        &mut self,
        _timeout: Option<Duration>,
        callback: &mut dyn FnMut(NetEvent<'_>),
    ) {
        let id = self.handle.0;
        let housekeeping = with_network(id, |network| {
            network.removed.clear();
            let drained: Vec<_> =
                network.connections.values_mut().flat_map(|c| c.take_drained()).collect();
            (std::mem::take(&mut network.retired), drained)
        });
        if let Some((retired, drained)) = housekeeping {
            drop(retired);
            drained.into_iter().for_each(|notify| notify());
        }
        while let Some(Some(event)) = with_network(id, |network| {
            let (event, detail) = network.events.pop_front()?;
            network.delivering = Some((endpoint_of(&event).resource_id(), detail));
            Some(event)
        }) {
            callback(event.borrow());
        }
        with_network(id, |network| network.delivering = None);
    }
}
