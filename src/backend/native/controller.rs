//! The acting half: connect, listen, send and remove, from any thread.

use super::socket::{self, context};
use super::stream::{self, lock};
#[cfg(feature = "udp")]
use super::udp;
use super::{AcceptConfig, Deadline, Resource, Shared, State, resolve};
#[cfg(feature = "websocket")]
use super::{ws, ws_accept};
use crate::adapter::Side;
#[cfg(feature = "adapter")]
use crate::adapter::{Carrier, Mount};
use crate::adapters::StreamOptions;
use crate::adapters::ws::{MessageKind, WsClose, WsHandshake};
#[cfg(all(feature = "adapter", feature = "websocket"))]
use crate::adapters::ws::{WsConnectConfig, WsListenConfig};
use crate::core::{
    Endpoint, LingerSetting, RemoteAddr, ResourceId, ResourceType, SendStatus, Transport,
    TransportConnect, TransportListen,
};
#[cfg(feature = "tcp")]
use crate::protocols::FramedTcp;
use crate::protocols::Framing;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How a `Tcp`, `FramedTcp` or mounted listener accepts.
fn stream_accept(transport: Transport, options: StreamOptions, protocol: Framing) -> AcceptConfig {
    AcceptConfig {
        transport,
        options,
        protocol: Some(protocol),
        #[cfg(feature = "websocket")]
        ws: None,
    }
}

/// The native half that acts: connect, listen, send, remove. Usable from any thread.
#[derive(Clone)]
pub(crate) struct Controller {
    pub(super) shared: Arc<Shared>,
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
            TransportConnect::Ws => {
                ws::connect(&self.shared, id, addr, Default::default(), sync, None)
            }
            #[cfg(feature = "websocket")]
            TransportConnect::WsWith(config) => {
                ws::connect(&self.shared, id, addr, config, sync, None)
            }
            #[cfg(feature = "tcp")]
            TransportConnect::Tcp(config) => {
                self.connect_stream(id, transport, addr, config.options, Framing::Tcp, sync)
            }
            #[cfg(feature = "tcp")]
            TransportConnect::FramedTcp(config) => {
                let protocol =
                    Framing::FramedTcp(FramedTcp { max_frame_size: config.max_frame_size });
                self.connect_stream(id, transport, addr, config.options, protocol, sync)
            }
            #[cfg(feature = "adapter")]
            TransportConnect::Custom(transport, config) => {
                let Mount { protocol, carrier } = self.shared.mounted.get(transport)?;
                match carrier {
                    Carrier::Tcp => {
                        let framing = Framing::Mounted(protocol);
                        self.connect_stream(id, transport, addr, config.options, framing, sync)
                    }
                    #[cfg(feature = "websocket")]
                    Carrier::WebSocket => {
                        let config = WsConnectConfig::from_options(config.options);
                        ws::connect(&self.shared, id, addr, config, sync, Some(protocol))
                    }
                    #[cfg(not(feature = "websocket"))]
                    Carrier::WebSocket => Err(crate::adapter::no_websocket()),
                }
            }
        }
    }

    #[cfg(feature = "adapter")]
    /// Mounts a transport of the application's: the next free id names it.
    pub fn mount(&self, mount: Mount) -> io::Result<Transport> {
        self.shared.mounted.mount(mount.supported()?)
    }

    fn connect_stream(
        &self,
        id: ResourceId,
        transport: Transport,
        addr: RemoteAddr,
        options: StreamOptions,
        protocol: Framing,
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
            protocol,
            Side::Client,
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
            TransportListen::Tcp(c) => {
                self.listen_stream(id, addr, stream_accept(transport, c.options, Framing::Tcp))
            }
            #[cfg(feature = "tcp")]
            TransportListen::FramedTcp(c) => {
                let protocol = Framing::FramedTcp(FramedTcp { max_frame_size: c.max_frame_size });
                self.listen_stream(id, addr, stream_accept(transport, c.options, protocol))
            }
            #[cfg(feature = "adapter")]
            TransportListen::Custom(transport, c) => {
                let Mount { protocol, carrier } =
                    self.shared.mounted.get(transport).map_err(|e| {
                        io::Error::new(e.kind(), format!("{transport} listen on {addr}: {e}"))
                    })?;
                let accept = match carrier {
                    Carrier::Tcp => stream_accept(transport, c.options, Framing::Mounted(protocol)),
                    #[cfg(feature = "websocket")]
                    Carrier::WebSocket => {
                        let config = WsListenConfig::from_options(c.options);
                        let accept = ws_accept(transport, config).map_err(context)?;
                        AcceptConfig { protocol: Some(Framing::Mounted(protocol)), ..accept }
                    }
                    #[cfg(not(feature = "websocket"))]
                    Carrier::WebSocket => return Err(crate::adapter::no_websocket()),
                };
                self.listen_stream(id, addr, accept)
            }
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
