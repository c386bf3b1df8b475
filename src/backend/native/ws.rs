//! `Ws` connections on tungstenite: client and server handshakes driven by readiness, over
//! plain TCP or TLS (rustls), then binary and text messages.

mod connect;
mod handshake;
mod stream;

pub(crate) use connect::connect;
use handshake::client_handshake;
pub(crate) use handshake::{Accept, ClientStart, Negotiate, PendingHandshake};
pub(crate) use stream::WsStream;

use super::read_ahead::WS_READ_BUFFER;
use super::stream::{Waiters, lock};
use super::{Cx, READ_BUDGET, Shared, State, connect_result, socket};
use crate::adapter::{Carried, Decoder, Io, Protocol, Side, Sink};
use crate::adapters::ws::{MessageKind, WsClose, WsHandshake, WsOptions};
use crate::core::{Endpoint, NetEvent, ResourceId, SendStatus};
use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tungstenite::handshake::MidHandshake;
use tungstenite::handshake::client::Response;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{
    Bytes, ClientHandshake, Error as WsError, HandshakeError, Message, ServerHandshake, WebSocket,
};

/// `plain`: not TLS. tungstenite zero-fills its read buffer before each read and keeps it for
/// good: 128 KiB by default made that most of the cost of a small message, and 16 KiB most of
/// an idle connection's memory. Plain connections read large through `ReadAhead` instead; TLS
/// ones read from rustls' buffer (no system call to save) and keep 16 KiB slices.
fn ws_config(options: &WsOptions, send_queue_limit: usize, plain: bool) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(if plain { WS_READ_BUFFER } else { 16 * 1024 })
        .max_message_size(Some(options.max_message_size))
        .max_frame_size(Some(options.max_frame_size))
        // Refuse a message once the queue holds the limit, as the other transports do.
        .max_write_buffer_size(
            send_queue_limit.saturating_add(options.max_message_size).saturating_add(14),
        )
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
    /// A mounted transport this connection carries (`Carrier::WebSocket`): its messages are
    /// framed into, and decoded from, the WebSocket messages. Only the event thread decodes.
    carried: Option<Carried<Mutex<Box<dyn Decoder>>>>,
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
            carried: None,
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
        carried: Option<&Protocol>,
    ) -> io::Result<Self> {
        let stream = accept.stream(stream)?;
        let phase = Phase::Accepting(stream, accept.clone());
        let (options, limit) = (&accept.options, accept.send_queue_limit);
        let connection =
            Self::new(endpoint, Some(listener), State::connecting(), phase, options, limit)
                .carrying(carried, Side::Server);
        *lock(&connection.pending) = Some(pending);
        Ok(connection)
    }

    /// Makes the connection carry a mounted transport's messages, if `protocol` is given.
    fn carrying(mut self, protocol: Option<&Protocol>, side: Side) -> Self {
        self.carried = protocol.map(|p| Carried::new(p.clone(), side, Mutex::new));
        self
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
        if let Some(carried) = &self.carried {
            return match carried.encode(data) {
                Ok(payload) => self.send_message(payload.len(), || Message::Binary(payload.into())),
                Err(e) => {
                    log::debug!("{}: message of {} bytes refused: {e}", self.endpoint, data.len());
                    SendStatus::MaxPacketSizeExceeded
                }
            };
        }
        self.send_message(data.len(), || Message::Binary(Bytes::copy_from_slice(data)))
    }

    /// A text frame; a carried transport's messages are always binary frames.
    pub fn send_text(&self, text: &str) -> SendStatus {
        if self.carried.is_some() {
            return self.send(text.as_bytes());
        }
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
                let plain = matches!(stream, WsStream::Plain(..));
                let config = ws_config(&accept.options, accept.send_queue_limit, plain);
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
                Ok(Message::Binary(data)) if self.carried.is_some() => {
                    if let Err(reason) = self.decode(&data, cx) {
                        return self.disconnect(cx, &reason);
                    }
                }
                Ok(Message::Text(text)) if self.carried.is_some() => {
                    if let Err(reason) = self.decode(text.as_bytes(), cx) {
                        return self.disconnect(cx, &reason);
                    }
                }
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

    /// Hands a WebSocket message's payload to the carried transport's decoder; an error is
    /// the reason to end the connection.
    fn decode(&self, payload: &[u8], cx: &mut Cx<'_>) -> Result<(), String> {
        let Some(carried) = &self.carried else { return Ok(()) };
        let mut sink = Deliver { connection: self, callback: &mut *cx.callback };
        let result = lock(&carried.decoder).decode(payload, &mut Io::new(&mut sink));
        result.map_err(|e| e.to_string())
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

/// What a carried transport's decoder delivers to: the application's callback, while the
/// connection is open.
struct Deliver<'c> {
    connection: &'c Connection,
    callback: &'c mut dyn FnMut(NetEvent<'_>),
}

impl Sink for Deliver<'_> {
    fn deliver(&mut self, message: &[u8]) {
        if !self.connection.state.is_closed() {
            (self.callback)(NetEvent::Message(self.connection.endpoint, message))
        }
    }

    fn is_open(&self) -> bool {
        !self.connection.state.is_closed()
    }
}
