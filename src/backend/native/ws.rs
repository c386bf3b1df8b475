//! `Ws` connections on tungstenite: client and server handshakes driven by readiness, over
//! plain TCP or TLS (rustls), then binary and text messages.

use super::stream::{Waiters, lock};
use super::{Cx, Deadline, READ_BUDGET, Shared, State, connect_result, resolve, socket};
use crate::adapters::StreamOptions;
use crate::adapters::ws::{
    DEFAULT_PATH, MessageKind, WsClose, WsConnectConfig, WsHandshake, WsOptions,
};
use crate::core::{Endpoint, NetEvent, RemoteAddr, ResourceId, SendStatus};
use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::MidHandshake;
use tungstenite::handshake::client::{Request, Response};
use tungstenite::handshake::server::{self, Callback, ErrorResponse};
use tungstenite::http::HeaderValue;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{
    Bytes, ClientHandshake, Error as WsError, HandshakeError, Message, ServerHandshake, WebSocket,
};

/// The bytes under a WebSocket: plain TCP, or TLS over it.
pub(crate) enum WsStream {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    TlsClient(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    #[cfg(feature = "tls")]
    TlsServer(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl WsStream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            #[cfg(feature = "tls")]
            Self::TlsClient(s) => s.get_ref(),
            #[cfg(feature = "tls")]
            Self::TlsServer(s) => s.get_ref(),
        }
    }

    /// Ends a TLS session with close_notify (best effort: the socket is closed next).
    fn close_notify(&mut self) {
        match self {
            Self::Plain(_) => (),
            #[cfg(feature = "tls")]
            Self::TlsClient(s) => {
                s.conn.send_close_notify();
                let _ = s.conn.write_tls(&mut s.sock);
            }
            #[cfg(feature = "tls")]
            Self::TlsServer(s) => {
                s.conn.send_close_notify();
                let _ = s.conn.write_tls(&mut s.sock);
            }
        }
    }

    fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            Self::Plain(s) => s,
            #[cfg(feature = "tls")]
            Self::TlsClient(s) => s.get_mut(),
            #[cfg(feature = "tls")]
            Self::TlsServer(s) => s.get_mut(),
        }
    }
}

impl Read for WsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Self::TlsClient(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Self::TlsServer(s) => s.read(buf),
        }
    }
}

impl Write for WsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Self::TlsClient(s) => tls_write(s.write(buf), buf),
            #[cfg(feature = "tls")]
            Self::TlsServer(s) => tls_write(s.write(buf), buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.flush(),
            #[cfg(feature = "tls")]
            Self::TlsClient(s) => s.flush(),
            #[cfg(feature = "tls")]
            Self::TlsServer(s) => s.flush(),
        }
    }
}

/// rustls answers Ok(0) when its TLS buffer is full and the socket would block; tungstenite
/// takes Ok(0) for a reset connection.
#[cfg(feature = "tls")]
fn tls_write(result: io::Result<usize>, buf: &[u8]) -> io::Result<usize> {
    match result {
        Ok(0) if !buf.is_empty() => Err(io::ErrorKind::WouldBlock.into()),
        other => other,
    }
}

fn ws_config(options: &WsOptions, send_queue_limit: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        // tungstenite zero-fills its whole read buffer before each read: 128 KiB by default
        // made that most of the cost of a small message.
        .read_buffer_size(16 * 1024)
        .max_message_size(Some(options.max_message_size))
        .max_frame_size(Some(options.max_frame_size))
        // Refuse a message once the queue holds the limit, as the other transports do.
        .max_write_buffer_size(
            send_queue_limit.saturating_add(options.max_message_size).saturating_add(14),
        )
}

/// What a listener applies to the `Ws` connections it accepts.
#[derive(Debug)]
pub(crate) struct Accept {
    pub options: WsOptions,
    pub send_queue_limit: usize,
    /// Connections of this listener in their handshake now, and how many may be.
    pub pending: AtomicUsize,
    pub max_pending: usize,
    #[cfg(feature = "tls")]
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// A connection's place among its listener's pending handshakes, given back when dropped.
pub(crate) struct PendingHandshake(Arc<Accept>);

impl Drop for PendingHandshake {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Accept {
    /// Takes a place for a new connection's handshake, if one is free.
    pub fn admit(self: &Arc<Self>) -> Option<PendingHandshake> {
        let taken = self.pending.fetch_add(1, Ordering::AcqRel);
        let admitted = PendingHandshake(self.clone());
        (taken < self.max_pending).then_some(admitted)
    }

    /// The stream of an accepted socket: TLS when the listener serves `wss://`.
    fn stream(&self, stream: TcpStream) -> io::Result<WsStream> {
        #[cfg(feature = "tls")]
        if let Some(config) = &self.tls {
            let connection = super::tls::server(config)?;
            return Ok(WsStream::TlsServer(Box::new(rustls::StreamOwned::new(connection, stream))));
        }
        Ok(WsStream::Plain(stream))
    }
}

/// The server side of the handshake: picks a subprotocol and keeps what the request said.
pub(crate) struct Negotiate {
    supported: Vec<String>,
    seen: Arc<Mutex<Option<WsHandshake>>>,
}

impl Callback for Negotiate {
    fn on_request(
        self,
        request: &server::Request,
        mut response: server::Response,
    ) -> Result<server::Response, ErrorResponse> {
        let offered = request
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',').map(str::trim));
        let mut subprotocol = None;
        for offer in offered {
            if self.supported.iter().any(|s| s == offer) {
                subprotocol = Some(offer.to_owned());
                break;
            }
        }
        if let Some(chosen) = &subprotocol {
            // Checked against `supported`: plain header text.
            if let Ok(value) = HeaderValue::from_str(chosen) {
                response.headers_mut().insert("sec-websocket-protocol", value);
            }
        }
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
        *lock(&self.seen) =
            Some(WsHandshake { path, headers: headers(request.headers()), subprotocol });
        Ok(response)
    }
}

fn headers(map: &tungstenite::http::HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(name, value)| {
            (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned())
        })
        .collect()
}

/// A client connect waiting for its TCP connection: what to send once it is up.
pub(crate) struct ClientStart {
    request: Request,
    options: StreamOptions,
    #[cfg(feature = "tls")]
    tls: Option<rustls::ClientConnection>,
    config: WebSocketConfig,
}

impl ClientStart {
    fn stream(&mut self, stream: TcpStream) -> WsStream {
        #[cfg(feature = "tls")]
        if let Some(connection) = self.tls.take() {
            return WsStream::TlsClient(Box::new(rustls::StreamOwned::new(connection, stream)));
        }
        WsStream::Plain(stream)
    }

    /// Starts the handshake on a connected socket.
    #[allow(clippy::result_large_err)] // tungstenite's own result type
    fn handshake(
        mut self,
        stream: TcpStream,
    ) -> Result<(WebSocket<WsStream>, Response), HandshakeError<ClientHandshake<WsStream>>> {
        let stream = self.stream(stream);
        tungstenite::client::client_with_config(self.request, stream, Some(self.config))
    }
}

enum Phase {
    /// Client: the host name is being looked up on its own thread; the result lands in
    /// `resolved`.
    Resolving(Box<ClientStart>),
    /// Client: TCP connect in progress.
    Connecting(TcpStream, Box<ClientStart>),
    /// Client: handshake in progress.
    Client(MidHandshake<ClientHandshake<WsStream>>),
    /// Server: accepted, request not read yet.
    Accepting(WsStream, Arc<Accept>),
    /// Server: handshake in progress.
    Server(MidHandshake<ServerHandshake<WsStream, Negotiate>>),
    Open(WebSocket<WsStream>),
    Done,
}

/// A WebSocket connection, client or server side.
pub(crate) struct Connection {
    pub endpoint: Endpoint,
    /// The listener that accepted it, for server-side connections.
    listener: Option<ResourceId>,
    pub state: State,
    phase: Mutex<Phase>,
    /// Bytes handed to tungstenite since its buffer was last flushed completely.
    pub queued: AtomicUsize,
    send_queue_limit: usize,
    max_message_size: usize,
    /// A flush could not finish: bytes wait in tungstenite's buffer.
    unflushed: AtomicBool,
    /// A send was refused with `QueueFull`.
    blocked: AtomicBool,
    on_drained: Waiters,
    /// The message being delivered came as a text frame.
    text: AtomicBool,
    /// The handshake, once done (the server side fills it in during the handshake).
    handshake: Arc<Mutex<Option<WsHandshake>>>,
    /// The peer's Close frame, if it sent one.
    close: Mutex<Option<WsClose>>,
    /// Server side, until the handshake ends: its place among the listener's pending ones.
    pending: Mutex<Option<PendingHandshake>>,
    /// A close the application asked for sent our end of stream.
    write_shut: AtomicBool,
    /// The outcome of the host name lookup, for the event thread to pick up.
    resolved: Mutex<Option<io::Result<SocketAddr>>>,
}

impl Connection {
    fn new(
        endpoint: Endpoint,
        listener: Option<ResourceId>,
        state: State,
        phase: Phase,
        options: &WsOptions,
        send_queue_limit: usize,
    ) -> Self {
        Self {
            endpoint,
            listener,
            state,
            phase: Mutex::new(phase),
            queued: AtomicUsize::new(0),
            send_queue_limit,
            max_message_size: options.max_message_size,
            unflushed: AtomicBool::new(false),
            blocked: AtomicBool::new(false),
            on_drained: Waiters::default(),
            text: AtomicBool::new(false),
            handshake: Arc::default(),
            close: Mutex::new(None),
            pending: Mutex::new(None),
            write_shut: AtomicBool::new(false),
            resolved: Mutex::new(None),
        }
    }

    /// A connection accepted by `listener`; reported `Accepted` once its handshake completes.
    pub fn accepting(
        endpoint: Endpoint,
        listener: ResourceId,
        stream: TcpStream,
        accept: &Arc<Accept>,
        pending: PendingHandshake,
    ) -> io::Result<Self> {
        let stream = accept.stream(stream)?;
        let phase = Phase::Accepting(stream, accept.clone());
        let (options, limit) = (&accept.options, accept.send_queue_limit);
        let connection =
            Self::new(endpoint, Some(listener), State::connecting(), phase, options, limit);
        *lock(&connection.pending) = Some(pending);
        Ok(connection)
    }

    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let interest = Interest::READABLE | Interest::WRITABLE;
        match self.phase.get_mut().unwrap_or_else(|e| e.into_inner()) {
            Phase::Connecting(stream, _) => registry.register(stream, token, interest),
            Phase::Accepting(stream, _) => registry.register(stream.tcp_mut(), token, interest),
            Phase::Open(ws) => registry.register(ws.get_mut().tcp_mut(), token, interest),
            Phase::Client(mid) => {
                registry.register(mid.get_mut().get_mut().tcp_mut(), token, interest)
            }
            Phase::Server(mid) => {
                registry.register(mid.get_mut().get_mut().tcp_mut(), token, interest)
            }
            // Registered once the name is resolved and the socket exists.
            Phase::Resolving(_) | Phase::Done => Ok(()),
        }
    }

    /// The host name lookup ended: start the TCP connect, or report the failure.
    pub fn on_resolved(&self, cx: &mut Cx<'_>) {
        let Some(resolved) = lock(&self.resolved).take() else { return };
        let mut phase = lock(&self.phase);
        let Phase::Resolving(start) = std::mem::replace(&mut *phase, Phase::Done) else { return };
        let id = self.endpoint.resource_id();
        let connected = resolved.and_then(|peer| {
            let mut stream = socket::tcp_connect(peer, &start.options)?;
            let interest = Interest::READABLE | Interest::WRITABLE;
            cx.shared.registry.register(&mut stream, Token(id.raw()), interest)?;
            Ok(stream)
        });
        match connected {
            Ok(stream) => *phase = Phase::Connecting(stream, start),
            Err(e) => {
                drop(phase);
                cx.fail_connect(&self.state, self.endpoint, &e.to_string());
            }
        }
    }

    /// Whether the message being delivered came as a text frame.
    pub fn message_kind(&self) -> MessageKind {
        if self.text.load(Ordering::Acquire) { MessageKind::Text } else { MessageKind::Binary }
    }

    /// The handshake, once it is done.
    pub fn handshake(&self) -> Option<WsHandshake> {
        if self.state.is_ready() { lock(&self.handshake).clone() } else { None }
    }

    pub fn send(&self, data: &[u8]) -> SendStatus {
        self.send_message(data.len(), || Message::Binary(Bytes::copy_from_slice(data)))
    }

    pub fn send_text(&self, text: &str) -> SendStatus {
        self.send_message(text.len(), || Message::text(text))
    }

    fn send_message(&self, len: usize, message: impl FnOnce() -> Message) -> SendStatus {
        if let Some(status) = self.state.send_refusal() {
            return status;
        }
        if len > self.max_message_size {
            return SendStatus::MaxPacketSizeExceeded;
        }
        let mut phase = lock(&self.phase);
        let Phase::Open(ws) = &mut *phase else { return SendStatus::ResourceNotFound };
        if self.queued.load(Ordering::Acquire) >= self.send_queue_limit {
            self.blocked.store(true, Ordering::Release);
            return SendStatus::QueueFull;
        }
        self.queued.fetch_add(len, Ordering::AcqRel);
        match ws.write(message()) {
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
    fn flush(&self, ws: &mut WebSocket<WsStream>) -> bool {
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
            Phase::Resolving(start) => *phase = Phase::Resolving(start),
            Phase::Connecting(stream, start) => match connect_result(&stream, event) {
                None => *phase = Phase::Connecting(stream, start),
                Some(Err(e)) => {
                    drop(phase);
                    cx.fail_connect(&self.state, self.endpoint, &e.to_string());
                }
                Some(Ok(())) => self.client_progress(start.handshake(stream), phase, cx),
            },
            Phase::Client(mid) => self.client_progress(mid.handshake(), phase, cx),
            Phase::Accepting(stream, accept) => {
                let negotiate = Negotiate {
                    supported: accept.options.subprotocols.clone(),
                    seen: self.handshake.clone(),
                };
                let config = ws_config(&accept.options, accept.send_queue_limit);
                let result = tungstenite::accept_hdr_with_config(stream, negotiate, Some(config));
                self.server_progress(result, phase, cx);
            }
            Phase::Server(mid) => self.server_progress(mid.handshake(), phase, cx),
            Phase::Open(mut ws) => {
                if self.state.is_closed() {
                    // Removed by the application: the close handshake goes on.
                    *phase = Phase::Open(ws);
                    drop(phase);
                    return self.on_closing(cx);
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
        result: Result<(WebSocket<WsStream>, Response), HandshakeError<ClientHandshake<WsStream>>>,
        mut phase: std::sync::MutexGuard<'_, Phase>,
        cx: &mut Cx<'_>,
    ) {
        match result {
            Ok((ws, response)) => {
                cx.settle(self.endpoint.resource_id());
                {
                    let mut handshake = lock(&self.handshake);
                    // Filled at connect with the path requested; the response adds the rest.
                    let path = handshake.take().map(|h| h.path).unwrap_or_default();
                    *handshake = Some(client_handshake(&response, path));
                }
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
        result: Result<WebSocket<WsStream>, HandshakeError<ServerHandshake<WsStream, Negotiate>>>,
        mut phase: std::sync::MutexGuard<'_, Phase>,
        cx: &mut Cx<'_>,
    ) {
        match result {
            Ok(ws) => {
                cx.settle(self.endpoint.resource_id());
                lock(&self.pending).take();
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
        lock(&self.pending).take();
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
                Ok(Message::Binary(data)) => {
                    self.text.store(false, Ordering::Release);
                    (cx.callback)(NetEvent::Message(self.endpoint, &data))
                }
                Ok(Message::Text(text)) => {
                    self.text.store(true, Ordering::Release);
                    (cx.callback)(NetEvent::Message(self.endpoint, text.as_bytes()))
                }
                Ok(Message::Close(Some(frame))) => {
                    let close =
                        WsClose { code: frame.code.into(), reason: frame.reason.to_string() };
                    *lock(&self.close) = Some(close);
                }
                Ok(_) => (), // ping, pong: tungstenite answers them
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
            let close = lock(&self.close).take();
            match &close {
                Some(c) => log::debug!(
                    "{} disconnected: the peer closed with code {} {:?}",
                    self.endpoint,
                    c.code,
                    c.reason
                ),
                None => log::debug!("{} disconnected: {reason}", self.endpoint),
            }
            cx.shared.forget(self.endpoint.resource_id());
            self.shutdown();
            self.on_drained.notify_all();
            // Readable through `ws_close` while the application handles the event.
            let id = self.endpoint.resource_id();
            *lock(&cx.shared.peer_close) = close.map(|c| (id, c));
            (cx.callback)(NetEvent::Disconnected(self.endpoint));
            lock(&cx.shared.peer_close).take();
        }
    }

    /// Closes the socket now.
    pub fn shutdown(&self) {
        let mut phase = lock(&self.phase);
        if let Phase::Open(ws) = &mut *phase {
            ws.get_mut().close_notify();
            let _ = ws.get_ref().tcp().shutdown(Shutdown::Both);
        }
        *phase = Phase::Done;
    }

    /// Closes on the application's request, with a Close frame (code 1000). Returns whether
    /// the close handshake goes on ([`on_closing`](Self::on_closing)), or the socket is closed
    /// already (it was not open yet).
    pub fn close_by_app(&self) -> bool {
        self.state.close();
        self.on_drained.notify_all();
        let mut phase = lock(&self.phase);
        if let Phase::Open(ws) = &mut *phase {
            // 1000, a normal closure: what peers (browsers above all) expect of a goodbye.
            let normal = CloseFrame { code: CloseCode::Normal, reason: Default::default() };
            let _ = ws.close(Some(normal));
            self.flush(ws);
            return true;
        }
        *phase = Phase::Done;
        false
    }

    /// The close handshake of a connection the application removed, as far as it goes now:
    /// write what is queued and our Close frame, then read (and drop) what the peer still sends
    /// until its Close answers ours, as RFC 6455 asks. Closing the socket with unread input
    /// would make the kernel reset it and lose the last messages.
    pub fn on_closing(&self, cx: &mut Cx<'_>) {
        let id = self.endpoint.resource_id();
        let mut phase = lock(&self.phase);
        let Phase::Open(ws) = &mut *phase else {
            drop(phase);
            return cx.shared.finish_close(id);
        };
        if !self.flush(ws) {
            return; // the rest on writability
        }
        if !self.write_shut.swap(true, Ordering::AcqRel) {
            // Our Close frame is out: end our side of the stream too, so a peer that does not
            // answer Close frames (message-io) still sees the end and lets go.
            ws.get_mut().close_notify();
            let _ = ws.get_ref().tcp().shutdown(Shutdown::Write);
        }
        for _ in 0..READ_BUDGET {
            match ws.read() {
                Ok(_) => (),
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.flush(ws); // tungstenite may have queued a reply
                    return;
                }
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => (),
                // The peer's Close came (ConnectionClosed), or the connection broke.
                Err(_) => {
                    drop(phase);
                    return cx.shared.finish_close(id);
                }
            }
        }
        cx.again.push(id);
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

/// A client's handshake as the application sees it: the path it requested and the response.
fn client_handshake(response: &Response, path: String) -> WsHandshake {
    let subprotocol = response
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    WsHandshake { path, headers: headers(response.headers()), subprotocol }
}

/// Where a `Ws` connect goes: the address to reach (or the name to look up), the URL to
/// request, and the host name to verify when it is `wss://`.
struct Target {
    peer: Peer,
    url: String,
    #[cfg_attr(not(feature = "tls"), allow(dead_code))] // wss:// is refused without TLS
    tls_host: Option<String>,
}

enum Peer {
    Addr(SocketAddr),
    /// A host name and port: looked up off the caller's thread.
    Name(String, u16),
}

impl Peer {
    fn new(host: &str, port: u16) -> Self {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) => Peer::Addr(SocketAddr::new(ip, port)),
            Err(_) => Peer::Name(host.to_owned(), port),
        }
    }

    /// The address the endpoint carries: the unspecified address while a name is unresolved
    /// (the endpoint must not change once handed out).
    fn endpoint_addr(&self) -> SocketAddr {
        match self {
            Peer::Addr(addr) => *addr,
            Peer::Name(_, port) => SocketAddr::from(([0, 0, 0, 0], *port)),
        }
    }

    /// Resolves on this thread (for `connect_sync`, which blocks anyway).
    fn resolve(&self) -> io::Result<SocketAddr> {
        match self {
            Peer::Addr(addr) => Ok(*addr),
            Peer::Name(host, port) => resolve(&RemoteAddr::Str(format!("{host}:{port}")))
                .or_else(|_| resolve(&RemoteAddr::Str(format!("[{host}]:{port}")))),
        }
    }
}

fn target(addr: RemoteAddr, path: &str) -> io::Result<Target> {
    let slashed;
    let path = if path.starts_with('/') {
        path
    } else {
        slashed = format!("/{path}");
        &slashed
    };
    let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
    match addr {
        RemoteAddr::Socket(peer) => {
            Ok(Target { peer: Peer::Addr(peer), url: format!("ws://{peer}{path}"), tls_host: None })
        }
        RemoteAddr::Str(s) => match url::Url::parse(&s) {
            Ok(url) if url.scheme() == "ws" || url.scheme() == "wss" => {
                let host = url.host_str().ok_or_else(|| invalid(format!("{s}: no host")))?;
                let secure = url.scheme() == "wss";
                if secure && !cfg!(feature = "tls") {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!("{s}: wss:// needs portnet's `tls` feature"),
                    ));
                }
                let port = url.port_or_known_default().unwrap_or(if secure { 443 } else { 80 });
                let tls_host = secure.then(|| host.trim_start_matches('[').trim_end_matches(']'));
                Ok(Target {
                    peer: Peer::new(host, port),
                    url: s.clone(),
                    tls_host: tls_host.map(str::to_owned),
                })
            }
            Ok(url) if url.has_host() => Err(invalid(format!(
                "{s}: Ws connects to ws:// and wss:// URLs, not {}://",
                url.scheme()
            ))),
            // "host:port" without a scheme.
            _ => {
                let (host, port) = s
                    .rsplit_once(':')
                    .and_then(|(host, port)| Some((host, port.parse().ok()?)))
                    .ok_or_else(|| invalid(format!("{s}: expected host:port or a ws:// URL")))?;
                Ok(Target {
                    peer: Peer::new(host, port),
                    url: format!("ws://{s}{path}"),
                    tls_host: None,
                })
            }
        },
    }
}

/// The handshake request: the URL plus the application's headers and subprotocols.
fn request(url: &str, config: &WsConnectConfig) -> io::Result<Request> {
    let invalid = |e: &dyn std::fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("Ws connect to {url}: {e}"))
    };
    let mut request = url.into_client_request().map_err(|e| invalid(&e))?;
    let headers = request.headers_mut();
    let mut seen = std::collections::HashSet::new();
    for (name, value) in &config.headers {
        let name = tungstenite::http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| invalid(&format!("header {name:?}: {e}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|e| invalid(&format!("header {name}: value {value:?}: {e}")))?;
        // The first value of a name replaces the default one (Host); later ones add.
        if seen.insert(name.clone()) {
            headers.insert(name, value);
        } else {
            headers.append(name, value);
        }
    }
    if !config.ws.subprotocols.is_empty() {
        let offer = config.ws.subprotocols.join(", ");
        let value = HeaderValue::from_str(&offer)
            .map_err(|e| invalid(&format!("subprotocols {offer:?}: {e}")))?;
        headers.insert("sec-websocket-protocol", value);
    }
    Ok(request)
}

/// Starts a `Ws` connect (or, with `sync`, completes it before returning).
pub(crate) fn connect(
    shared: &Arc<Shared>,
    id: ResourceId,
    addr: RemoteAddr,
    config: WsConnectConfig,
    sync: bool,
) -> io::Result<(Endpoint, SocketAddr)> {
    let path = config.path.as_deref().unwrap_or(DEFAULT_PATH);
    let target = target(addr, path)?;
    let url = &target.url;
    let context = |e| socket::context(e, format_args!("Ws connect to {url}"));
    let options: &StreamOptions = &config.options;
    let request = request(url, &config)?;
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let start = ClientStart {
        request,
        options: options.clone(),
        // The client side of TLS, for wss:// (`target` refuses wss:// without the feature).
        #[cfg(feature = "tls")]
        tls: (target.tls_host.as_deref())
            .map(|host| super::tls::client(&config.tls, host))
            .transpose()
            .map_err(context)?,
        config: ws_config(&config.ws, options.send_queue_limit),
    };
    let endpoint = Endpoint::new(id, target.peer.endpoint_addr());
    let new = |state, phase| {
        Connection::new(endpoint, None, state, phase, &config.ws, options.send_queue_limit)
    };
    let (connection, local) = if sync {
        let peer = target.peer.resolve()?;
        let stream = socket::tcp_connect_blocking(peer, options, options.connect_timeout)
            .map_err(context)?;
        stream.set_nonblocking(true)?;
        let stream = TcpStream::from_std(stream);
        socket::configure_stream(&stream, options)?;
        let local = stream.local_addr()?;
        let (ws, response) =
            handshake_blocking(stream, start, options.connect_timeout).map_err(context)?;
        let connection = new(State::announce_pending(), Phase::Open(ws));
        *lock(&connection.handshake) = Some(client_handshake(&response, path.clone()));
        (connection, local)
    } else if let Peer::Addr(peer) = target.peer {
        let stream = socket::tcp_connect(peer, options).map_err(context)?;
        let local = stream.local_addr()?;
        (new(State::connecting(), Phase::Connecting(stream, Box::new(start))), local)
    } else {
        // No socket yet: the local address is not known either.
        let local = SocketAddr::from(([0, 0, 0, 0], 0));
        (new(State::connecting(), Phase::Resolving(Box::new(start))), local)
    };
    if !sync {
        // Reported once the handshake completes (`handshake` answers only when ready).
        *lock(&connection.handshake) = Some(WsHandshake { path, ..WsHandshake::default() });
    }
    shared.add(id, super::Resource::Ws(Box::new(connection)))?;
    if !sync {
        shared.set_deadline(id, options.connect_timeout, Deadline::Connect);
    }
    if let (false, Peer::Name(..)) = (sync, &target.peer) {
        resolve_in_background(shared, id, target.peer);
    }
    Ok((endpoint, local))
}

/// Looks `peer` up on a thread of its own (the system resolver blocks), then hands the result
/// to the event thread. The thread holds no strong reference: a network dropped meanwhile is
/// simply not told.
fn resolve_in_background(shared: &Arc<Shared>, id: ResourceId, peer: Peer) {
    fn deliver(shared: &Shared, id: ResourceId, result: io::Result<SocketAddr>) {
        if let Some(super::Resource::Ws(c)) = shared.get(id).as_deref() {
            *lock(&c.resolved) = Some(result);
            shared.set_deadline(id, std::time::Duration::ZERO, Deadline::Resolved);
        }
    }
    let weak = Arc::downgrade(shared);
    let spawned = std::thread::Builder::new().name("portnet-resolve".into()).spawn(move || {
        let result = peer.resolve();
        if let Some(shared) = weak.upgrade() {
            deliver(&shared, id, result);
        }
    });
    if let Err(e) = spawned {
        deliver(shared, id, Err(socket::context(e, format_args!("name lookup thread"))));
    }
}

/// Runs a client handshake to completion on the caller's thread, with its own small poll.
fn handshake_blocking(
    mut stream: TcpStream,
    start: ClientStart,
    timeout: std::time::Duration,
) -> io::Result<(WebSocket<WsStream>, Response)> {
    let clock = crate::core::clock::Clock::system();
    let deadline = clock.now().after(timeout);
    let mut poll = mio::Poll::new()?;
    let mut events = mio::Events::with_capacity(4);
    poll.registry().register(&mut stream, Token(0), Interest::READABLE | Interest::WRITABLE)?;
    let mut result = start.handshake(stream);
    loop {
        match result {
            Ok((mut ws, response)) => {
                poll.registry().deregister(ws.get_mut().tcp_mut())?;
                return Ok((ws, response));
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
