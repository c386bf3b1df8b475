//! `Ws` connections on tungstenite: client and server handshakes driven by readiness, then
//! binary (and text) messages.

use super::stream::{Waiters, lock};
use super::{Cx, Deadline, READ_BUDGET, Shared, State, connect_result, resolve, socket};
use crate::adapters::ws::{DEFAULT_PATH, MAX_PAYLOAD_LEN};
use crate::adapters::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_SEND_QUEUE_LIMIT, StreamOptions};
use crate::network::{Endpoint, NetEvent, RemoteAddr, ResourceId, SendStatus};
use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::MidHandshake;
use tungstenite::handshake::client::Request;
use tungstenite::handshake::server::NoCallback;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{
    Bytes, ClientHandshake, Error as WsError, HandshakeError, Message, ServerHandshake, WebSocket,
};

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        // tungstenite zero-fills its whole read buffer before each read: 128 KiB by default
        // made that most of the cost of a small message.
        .read_buffer_size(16 * 1024)
        .max_message_size(Some(MAX_PAYLOAD_LEN))
        .max_frame_size(Some(MAX_PAYLOAD_LEN))
        // Refuse a message once the queue holds the limit, as the other transports do.
        .max_write_buffer_size(DEFAULT_SEND_QUEUE_LIMIT + MAX_PAYLOAD_LEN + 14)
}

enum Phase {
    /// Client: TCP connect in progress.
    Connecting(TcpStream, Box<Request>),
    /// Client: handshake in progress.
    Client(MidHandshake<ClientHandshake<TcpStream>>),
    /// Server: accepted, request not read yet.
    Accepting(TcpStream),
    /// Server: handshake in progress.
    Server(MidHandshake<ServerHandshake<TcpStream, NoCallback>>),
    Open(WebSocket<TcpStream>),
    Done,
}

/// A WebSocket connection, client or server side.
pub(crate) struct Connection {
    endpoint: Endpoint,
    /// The listener that accepted it, for server-side connections.
    listener: Option<ResourceId>,
    pub state: State,
    phase: Mutex<Phase>,
    /// Bytes handed to tungstenite since its buffer was last flushed completely.
    queued: AtomicUsize,
    /// A flush could not finish: bytes wait in tungstenite's buffer.
    unflushed: AtomicBool,
    /// A send was refused with `QueueFull`.
    blocked: AtomicBool,
    on_drained: Waiters,
}

impl Connection {
    fn new(endpoint: Endpoint, listener: Option<ResourceId>, state: State, phase: Phase) -> Self {
        Self {
            endpoint,
            listener,
            state,
            phase: Mutex::new(phase),
            queued: AtomicUsize::new(0),
            unflushed: AtomicBool::new(false),
            blocked: AtomicBool::new(false),
            on_drained: Waiters::default(),
        }
    }

    /// A connection accepted by `listener`; reported `Accepted` once its handshake completes.
    pub fn accepting(endpoint: Endpoint, listener: ResourceId, stream: TcpStream) -> Self {
        Self::new(endpoint, Some(listener), State::connecting(), Phase::Accepting(stream))
    }

    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let interest = Interest::READABLE | Interest::WRITABLE;
        match self.phase.get_mut().unwrap_or_else(|e| e.into_inner()) {
            Phase::Connecting(stream, _) | Phase::Accepting(stream) => {
                registry.register(stream, token, interest)
            }
            Phase::Open(ws) => registry.register(ws.get_mut(), token, interest),
            Phase::Client(mid) => registry.register(mid.get_mut().get_mut(), token, interest),
            Phase::Server(mid) => registry.register(mid.get_mut().get_mut(), token, interest),
            Phase::Done => Ok(()),
        }
    }

    pub fn send(&self, data: &[u8]) -> SendStatus {
        if let Some(status) = self.state.send_refusal() {
            return status;
        }
        if data.len() > MAX_PAYLOAD_LEN {
            return SendStatus::MaxPacketSizeExceeded;
        }
        let mut phase = lock(&self.phase);
        let Phase::Open(ws) = &mut *phase else { return SendStatus::ResourceNotFound };
        if self.queued.load(Ordering::Acquire) >= DEFAULT_SEND_QUEUE_LIMIT {
            self.blocked.store(true, Ordering::Release);
            return SendStatus::QueueFull;
        }
        self.queued.fetch_add(data.len(), Ordering::AcqRel);
        match ws.write(Message::Binary(Bytes::copy_from_slice(data))) {
            Ok(()) => (),
            Err(WsError::WriteBufferFull(_)) => {
                self.blocked.store(true, Ordering::Release);
                return SendStatus::QueueFull;
            }
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => (),
            Err(e) => {
                log::debug!("{}: send failed: {e}", self.endpoint);
                return SendStatus::ResourceNotFound;
            }
        }
        // A flush that would block finishes when the socket is writable again.
        self.flush(ws);
        SendStatus::Sent
    }

    pub fn when_writable(&self, notify: Box<dyn FnOnce() + Send>) {
        // Under the phase lock, which flushes hold, so a drain cannot slip in between.
        let phase = lock(&self.phase);
        if self.blocked.load(Ordering::Acquire) && !self.state.is_closed() {
            self.on_drained.push(notify);
        } else {
            drop(phase);
            notify();
        }
    }

    /// Writes what tungstenite buffered. Returns whether everything went out.
    fn flush(&self, ws: &mut WebSocket<TcpStream>) -> bool {
        match ws.flush() {
            Ok(()) => {
                self.queued.store(0, Ordering::Release);
                self.unflushed.store(false, Ordering::Release);
                if self.blocked.swap(false, Ordering::AcqRel) {
                    self.on_drained.notify_all();
                }
                true
            }
            Err(_) => {
                // WouldBlock: the rest goes on writability. Other errors: reading reports them.
                self.unflushed.store(true, Ordering::Release);
                false
            }
        }
    }

    /// Writes what can be written now, without blocking.
    pub fn flush_now(&self) {
        if let Phase::Open(ws) = &mut *lock(&self.phase) {
            self.flush(ws);
        }
    }

    /// Whether bytes accepted by `send` (or a Close frame) still wait to be written.
    pub fn has_queued(&self) -> bool {
        self.unflushed.load(Ordering::Acquire)
    }

    pub fn on_event(&self, event: &Event, cx: &mut Cx<'_>) {
        let mut phase = lock(&self.phase);
        match std::mem::replace(&mut *phase, Phase::Done) {
            Phase::Connecting(stream, request) => match connect_result(&stream, event) {
                None => *phase = Phase::Connecting(stream, request),
                Some(Err(e)) => {
                    drop(phase);
                    cx.fail_connect(&self.state, self.endpoint, &e.to_string());
                }
                Some(Ok(())) => {
                    let result =
                        tungstenite::client::client_with_config(*request, stream, Some(config()));
                    self.client_progress(result.map(|(ws, _)| ws), phase, cx);
                }
            },
            Phase::Client(mid) => {
                self.client_progress(mid.handshake().map(|(ws, _)| ws), phase, cx)
            }
            Phase::Accepting(stream) => {
                let result = tungstenite::accept_with_config(stream, Some(config()));
                self.server_progress(result, phase, cx);
            }
            Phase::Server(mid) => self.server_progress(mid.handshake(), phase, cx),
            Phase::Open(mut ws) => {
                if self.state.is_closed() {
                    // Removed by the application: finish sending the close frame.
                    let flushed = self.flush(&mut ws);
                    *phase = Phase::Open(ws);
                    drop(phase);
                    if flushed {
                        cx.shared.finish_close(self.endpoint.resource_id());
                    }
                    return;
                }
                if event.is_writable() {
                    self.flush(&mut ws);
                }
                *phase = Phase::Open(ws);
                drop(phase);
                if self.state.is_ready() && !self.announce_sync(cx) {
                    return;
                }
                self.read_all(cx);
            }
            Phase::Done => (),
        }
    }

    /// Reports `Connected` for a connection `connect_sync` opened. Returns whether it is open.
    fn announce_sync(&self, cx: &mut Cx<'_>) -> bool {
        if self.listener.is_none() && self.state.take_announce() {
            (cx.callback)(NetEvent::Connected(self.endpoint, true));
        }
        !self.state.is_closed()
    }

    fn client_progress(
        &self,
        result: Result<WebSocket<TcpStream>, HandshakeError<ClientHandshake<TcpStream>>>,
        mut phase: std::sync::MutexGuard<'_, Phase>,
        cx: &mut Cx<'_>,
    ) {
        match result {
            Ok(ws) => {
                *phase = Phase::Open(ws);
                drop(phase);
                if self.state.set_ready() {
                    (cx.callback)(NetEvent::Connected(self.endpoint, true));
                    // Frames that came with the handshake response are already buffered.
                    self.read_all(cx);
                }
            }
            Err(HandshakeError::Interrupted(mid)) => *phase = Phase::Client(mid),
            Err(HandshakeError::Failure(e)) => {
                drop(phase);
                cx.fail_connect(&self.state, self.endpoint, &format!("WebSocket handshake: {e}"));
            }
        }
    }

    fn server_progress(
        &self,
        result: Result<
            WebSocket<TcpStream>,
            HandshakeError<ServerHandshake<TcpStream, NoCallback>>,
        >,
        mut phase: std::sync::MutexGuard<'_, Phase>,
        cx: &mut Cx<'_>,
    ) {
        match result {
            Ok(ws) => {
                *phase = Phase::Open(ws);
                drop(phase);
                let listener = self.listener.unwrap_or(self.endpoint.resource_id());
                if cx.shared.get(listener).is_none() {
                    // The listener was removed during the handshake.
                    return self.abandon(cx.shared, "listener removed during the handshake");
                }
                if self.state.set_ready() {
                    (cx.callback)(NetEvent::Accepted(self.endpoint, listener));
                    // Frames sent right behind the request are already buffered.
                    self.read_all(cx);
                }
            }
            Err(HandshakeError::Interrupted(mid)) => *phase = Phase::Server(mid),
            Err(HandshakeError::Failure(e)) => {
                drop(phase);
                self.abandon(
                    cx.shared,
                    &format!("WebSocket handshake from {}: {e}", self.endpoint.addr()),
                );
            }
        }
    }

    /// Drops a server-side connection that never got accepted: nothing was reported for it.
    fn abandon(&self, shared: &Shared, reason: &str) {
        if self.state.close() {
            log::debug!("{reason}");
            shared.forget(self.endpoint.resource_id());
            *lock(&self.phase) = Phase::Done;
        }
    }

    /// Reads until the socket is drained or the read budget is spent (then it is read again
    /// next turn).
    pub fn read_all(&self, cx: &mut Cx<'_>) {
        for _ in 0..READ_BUDGET {
            if self.state.is_closed() {
                return;
            }
            let message = {
                let mut phase = lock(&self.phase);
                let Phase::Open(ws) = &mut *phase else { return };
                let message = ws.read();
                if matches!(&message, Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock)
                {
                    // Pongs and close replies tungstenite queued while reading.
                    self.flush(ws);
                    return;
                }
                message
            };
            match message {
                Ok(Message::Binary(data)) => (cx.callback)(NetEvent::Message(self.endpoint, &data)),
                Ok(Message::Text(text)) => {
                    (cx.callback)(NetEvent::Message(self.endpoint, text.as_bytes()))
                }
                Ok(_) => (), // ping, pong, close: tungstenite answers them
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => (),
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                    return self.disconnect(cx, "closed by the peer");
                }
                Err(e) => return self.disconnect(cx, &e.to_string()),
            }
        }
        cx.again.push(self.endpoint.resource_id());
    }

    fn disconnect(&self, cx: &mut Cx<'_>, reason: &str) {
        if self.state.close() {
            log::debug!("{} disconnected: {reason}", self.endpoint);
            cx.shared.forget(self.endpoint.resource_id());
            self.shutdown();
            self.on_drained.notify_all();
            (cx.callback)(NetEvent::Disconnected(self.endpoint));
        }
    }

    /// Closes the socket now.
    pub fn shutdown(&self) {
        let mut phase = lock(&self.phase);
        if let Phase::Open(ws) = &*phase {
            let _ = ws.get_ref().shutdown(Shutdown::Both);
        }
        *phase = Phase::Done;
    }

    /// Closes on the application's request, with a Close frame. Returns whether the frame still
    /// needs flushing.
    pub fn close_by_app(&self) -> bool {
        self.state.close();
        self.on_drained.notify_all();
        let mut phase = lock(&self.phase);
        if let Phase::Open(ws) = &mut *phase {
            let _ = ws.close(None);
            if !self.flush(ws) && self.has_queued() {
                return true;
            }
            let _ = ws.get_ref().shutdown(Shutdown::Both);
        }
        *phase = Phase::Done;
        false
    }

    /// The connect (client) or handshake (server) took too long.
    pub fn on_connect_deadline(&self, cx: &mut Cx<'_>) {
        if self.state.is_connecting() {
            match self.listener {
                Some(_) => self.abandon(
                    cx.shared,
                    &format!("WebSocket handshake from {} timed out", self.endpoint.addr()),
                ),
                None => cx.fail_connect(&self.state, self.endpoint, "connect timed out"),
            }
        }
    }
}

/// Where a `Ws` connect goes: the address to reach and the URL to request.
fn target(addr: RemoteAddr) -> io::Result<(SocketAddr, String)> {
    let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
    match addr {
        RemoteAddr::Socket(peer) => Ok((peer, format!("ws://{peer}{DEFAULT_PATH}"))),
        RemoteAddr::Str(s) => match url::Url::parse(&s) {
            Ok(url) if url.scheme() == "wss" => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{s}: wss:// (TLS) is not supported by this build yet"),
            )),
            Ok(url) if url.scheme() == "ws" => {
                let host = url.host_str().ok_or_else(|| invalid(format!("{s}: no host")))?;
                let port = url.port_or_known_default().unwrap_or(80);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let peer = resolve(&RemoteAddr::Str(format!("{host}:{port}")))
                    .or_else(|_| resolve(&RemoteAddr::Str(format!("[{host}]:{port}"))))?;
                Ok((peer, s))
            }
            Ok(url) if url.has_host() => {
                Err(invalid(format!("{s}: Ws connects to ws:// URLs, not {}://", url.scheme())))
            }
            // "host:port" without a scheme.
            _ => {
                let peer = resolve(&RemoteAddr::Str(s.clone()))?;
                Ok((peer, format!("ws://{s}{DEFAULT_PATH}")))
            }
        },
    }
}

/// Starts a `Ws` connect (or, with `sync`, completes it before returning).
pub(crate) fn connect(
    shared: &Shared,
    id: ResourceId,
    addr: RemoteAddr,
    sync: bool,
) -> io::Result<(Endpoint, SocketAddr)> {
    let (peer, url) = target(addr)?;
    let request = url
        .as_str()
        .into_client_request()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{url}: {e}")))?;
    let options = StreamOptions::default();
    let context = |e| socket::context(e, format_args!("Ws connect to {url}"));
    let endpoint = Endpoint::new(id, peer);
    let (connection, local) = if sync {
        let stream = socket::tcp_connect_blocking(peer, &options, DEFAULT_CONNECT_TIMEOUT)
            .map_err(context)?;
        stream.set_nonblocking(true)?;
        let stream = TcpStream::from_std(stream);
        socket::configure_stream(&stream, &options)?;
        let local = stream.local_addr()?;
        let ws = handshake_blocking(stream, request).map_err(context)?;
        (Connection::new(endpoint, None, State::announce_pending(), Phase::Open(ws)), local)
    } else {
        let stream = socket::tcp_connect(peer, &options).map_err(context)?;
        let local = stream.local_addr()?;
        let phase = Phase::Connecting(stream, Box::new(request));
        (Connection::new(endpoint, None, State::connecting(), phase), local)
    };
    shared.add(id, super::Resource::Ws(connection))?;
    if !sync {
        shared.set_deadline(id, DEFAULT_CONNECT_TIMEOUT, Deadline::Connect);
    }
    Ok((endpoint, local))
}

/// Runs a client handshake to completion on the caller's thread, with its own small poll.
fn handshake_blocking(mut stream: TcpStream, request: Request) -> io::Result<WebSocket<TcpStream>> {
    let clock = crate::core::clock::Clock::system();
    let deadline = clock.now().after(DEFAULT_CONNECT_TIMEOUT);
    let mut poll = mio::Poll::new()?;
    let mut events = mio::Events::with_capacity(4);
    poll.registry().register(&mut stream, Token(0), Interest::READABLE | Interest::WRITABLE)?;
    let mut result = tungstenite::client::client_with_config(request, stream, Some(config()));
    loop {
        match result {
            Ok((mut ws, _)) => {
                poll.registry().deregister(ws.get_mut())?;
                return Ok(ws);
            }
            Err(HandshakeError::Failure(e)) => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("handshake: {e}"),
                ));
            }
            Err(HandshakeError::Interrupted(mid)) => {
                let left = clock.now().until(deadline);
                if left.is_zero() {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "handshake timed out"));
                }
                match poll.poll(&mut events, Some(left)) {
                    Err(e) if e.kind() != io::ErrorKind::Interrupted => return Err(e),
                    _ => (),
                }
                result = mid.handshake();
            }
        }
    }
}
