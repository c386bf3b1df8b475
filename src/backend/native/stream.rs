//! Stream connections (`Tcp`, `FramedTcp` and mounted transports: the TCP carrier with a
//! protocol plugged in), and the listener shared with `Ws`.

use super::{Cx, Deadline, READ_BUDGET, Resource, Shared, State};
use crate::adapter::{Frame, Side, Sink};
use crate::core::outbox::Outbox;
use crate::core::{Endpoint, NetEvent, ResourceId, SendStatus};
use crate::protocols::{Decoding, Framing};
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How soon a listener that failed to accept tries again.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// A stream connection: the carrier (a TCP socket, its send queue and lifecycle) with the
/// protocol that frames what it carries (`Tcp`, `FramedTcp` or a mounted one).
pub(crate) struct Connection {
    pub endpoint: Endpoint,
    pub stream: TcpStream,
    pub state: State,
    protocol: Framing,
    /// Only the event thread decodes; the lock is never contended.
    decoder: Mutex<Decoding>,
    pub out: Mutex<Outbox>,
    pub on_drained: Waiters,
    /// Why a write failed, if one did: reading may then just see the end of the stream (the
    /// failed write took the socket's error), and this is the real reason.
    write_error: Mutex<Option<String>>,
    /// A close the application asked for sent our end of stream.
    write_shut: AtomicBool,
}

/// What a decoder delivers to: the application's callback, while the connection is open.
struct Deliver<'c> {
    connection: &'c Connection,
    callback: &'c mut dyn FnMut(NetEvent<'_>),
}

impl Sink for Deliver<'_> {
    #[inline]
    fn deliver(&mut self, message: &[u8]) {
        if !self.connection.state.is_closed() {
            (self.callback)(NetEvent::Message(self.connection.endpoint, message))
        }
    }

    fn is_open(&self) -> bool {
        !self.connection.state.is_closed()
    }
}

impl Connection {
    pub fn new(
        endpoint: Endpoint,
        stream: TcpStream,
        state: State,
        protocol: Framing,
        side: Side,
        send_queue_limit: usize,
    ) -> Self {
        let decoder = Mutex::new(protocol.decoder(side));
        Self {
            endpoint,
            stream,
            state,
            protocol,
            decoder,
            out: Mutex::new(Outbox::new(send_queue_limit)),
            on_drained: Waiters::default(),
            write_error: Mutex::new(None),
            write_shut: AtomicBool::new(false),
        }
    }

    /// Sends from any thread: writes directly when nothing is queued, else queues in order.
    pub fn send(&self, data: &[u8]) -> SendStatus {
        if let Some(status) = self.state.send_refusal() {
            return status;
        }
        let mut frame = Frame::new();
        if let Err(e) = self.protocol.encode(data, &mut frame) {
            log::debug!("{}: message of {} bytes refused: {e}", self.endpoint, data.len());
            return SendStatus::MaxPacketSizeExceeded;
        }
        let (header, trailer) = (frame.header(), frame.trailer());
        let mut out = lock(&self.out);
        if !out.is_empty() {
            return match out.push(&[header, data, trailer]) {
                Ok(()) => SendStatus::Sent,
                Err(_) => SendStatus::QueueFull,
            };
        }
        let total = header.len() + data.len() + trailer.len();
        let mut written = 0;
        while written < total {
            // The common cases (no trailer: `Tcp`, `FramedTcp`) take no loop over the parts.
            let result = if trailer.is_empty() && written < header.len() {
                (&self.stream)
                    .write_vectored(&[IoSlice::new(&header[written..]), IoSlice::new(data)])
            } else if trailer.is_empty() {
                (&self.stream).write(&data[written - header.len()..])
            } else {
                let mut slices = [IoSlice::new(&[]); 3];
                let count = unwritten(&[header, data, trailer], written, &mut slices);
                (&self.stream).write_vectored(&slices[..count])
            };
            match result {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // The reading side reports the disconnection, with this reason.
                    log::debug!("{}: write failed: {e}", self.endpoint);
                    *lock(&self.write_error) = Some(format!("write failed: {e}"));
                    return SendStatus::ResourceNotFound;
                }
            }
        }
        if written < total {
            let mut slices = [IoSlice::new(&[]); 3];
            let count = unwritten(&[header, data, trailer], written, &mut slices);
            let rest: [&[u8]; 3] = [&slices[0], &slices[1], &slices[2]];
            out.push_remainder(&rest[..count]);
        }
        SendStatus::Sent
    }

    /// Writes queued bytes; called on writability. Returns whether the queue is empty.
    pub fn flush(&self) -> bool {
        let mut out = lock(&self.out);
        if out.is_empty() {
            // Waiters were told when it emptied: most writable events find nothing to do.
            return true;
        }
        while !out.is_empty() {
            match (&self.stream).write(out.pending()) {
                Ok(0) => break,
                Ok(n) => out.consume(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // The reading side reports the disconnection, with this reason.
                    *lock(&self.write_error) = Some(format!("write failed: {e}"));
                    break;
                }
            }
        }
        let empty = out.is_empty();
        if out.is_below_low_water() {
            drop(out);
            self.on_drained.notify_all();
        }
        empty
    }

    /// Calls `notify` once the send queue has room (now, if it has).
    pub fn when_writable(&self, notify: Box<dyn FnOnce() + Send>) {
        let out = lock(&self.out);
        if !out.is_below_low_water() && !self.state.is_closed() {
            // Registered under the queue's lock, so a flush cannot slip in between.
            self.on_drained.push(notify);
        } else {
            drop(out);
            notify();
        }
    }

    pub fn has_queued(&self) -> bool {
        !lock(&self.out).is_empty()
    }

    /// Handles readiness on the event thread.
    pub fn on_event(&self, event: &Event, cx: &mut Cx<'_>) {
        if self.state.is_closed() {
            // Removed by the application, lingering to flush its last messages.
            return self.on_closing(cx);
        }
        if !self.state.announce(&self.stream, event, self.endpoint, cx) {
            return;
        }
        if event.is_writable() {
            self.flush();
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            // On Linux epoll, bytes that arrive after a read raise a new edge, so a read that
            // does not fill the buffer has emptied the socket, unless urgent data made it stop
            // at its mark (the event says so: priority) or the peer is gone (read to the end).
            let short_read_ends = cfg!(any(target_os = "linux", target_os = "android"))
                && !event.is_priority()
                && !event.is_read_closed()
                && !event.is_error();
            self.read_all(cx, short_read_ends);
        }
    }

    /// Reads until the socket says "would block" or the read budget is spent (then it is read
    /// again next turn, so one busy peer cannot starve the others).
    ///
    /// With `short_read_ends`, a read that does not fill the buffer ends the loop (one system
    /// call less per message). Only the caller can allow it: a short read stops at TCP's
    /// urgent mark with bytes behind it, and elsewhere than Linux epoll (Windows) readiness is
    /// re-armed only by "would block".
    pub fn read_all(&self, cx: &mut Cx<'_>, short_read_ends: bool) {
        let Cx { shared, input, callback, again, .. } = cx;
        for _ in 0..READ_BUDGET {
            if self.state.is_closed() {
                return;
            }
            match (&self.stream).read(input) {
                Ok(0) => {
                    let reason = lock(&self.write_error).take();
                    let reason = reason.as_deref().unwrap_or("closed by the peer");
                    return self.disconnect(shared, callback, reason);
                }
                Ok(n) => {
                    let emptied = short_read_ends && n < input.len();
                    let data = &input[..n];
                    let mut sink = Deliver { connection: self, callback: &mut **callback };
                    let result = lock(&self.decoder).decode(data, &mut sink);
                    if let Err(e) = result {
                        return self.disconnect(shared, callback, &e.to_string());
                    }
                    if emptied {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => return self.disconnect(shared, callback, &e.to_string()),
            }
        }
        again.push(self.endpoint.resource_id());
    }

    fn disconnect(&self, shared: &Shared, callback: &mut dyn FnMut(NetEvent<'_>), reason: &str) {
        if self.state.close() {
            log::debug!("{} disconnected: {reason}", self.endpoint);
            shared.forget(self.endpoint.resource_id());
            let _ = self.stream.shutdown(Shutdown::Both);
            // Waiting senders learn of the end from their next send.
            self.on_drained.notify_all();
            callback(NetEvent::Disconnected(self.endpoint));
        }
    }

    /// Closes on the application's request; the event thread then finishes the close
    /// ([`on_closing`](Self::on_closing)).
    pub fn close_by_app(&self) {
        self.state.close();
        self.on_drained.notify_all();
    }

    /// The steps of a close the application asked for, as far as they go now: write what is
    /// queued, then send our end of stream, then read (and drop) what the peer still sends
    /// until its end of stream. Closing a socket with unread input makes the kernel reset the
    /// connection and discard what it had not sent yet: the last messages would be lost.
    pub fn on_closing(&self, cx: &mut Cx<'_>) {
        if !self.flush() {
            return; // the rest on writability
        }
        if !self.write_shut.swap(true, Ordering::AcqRel) {
            let _ = self.stream.shutdown(Shutdown::Write);
        }
        for _ in 0..READ_BUDGET {
            match (&self.stream).read(cx.input) {
                Ok(0) => return cx.shared.finish_close(self.endpoint.resource_id()),
                Ok(_) => (),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => (),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return cx.shared.finish_close(self.endpoint.resource_id()),
            }
        }
        // A peer that keeps sending: go on next turn.
        cx.again.push(self.endpoint.resource_id());
    }

    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// A listener for `Tcp`, `FramedTcp` or `Ws`.
pub(crate) struct Listener {
    pub id: ResourceId,
    pub listener: TcpListener,
    pub accept: super::AcceptConfig,
    pub closed: AtomicBool,
}

impl Listener {
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub fn on_event(&self, cx: &mut Cx<'_>) {
        for _ in 0..READ_BUDGET {
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            match self.listener.accept() {
                Ok((stream, addr)) => self.accepted(stream, addr, cx),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue;
                }
                Err(e) => {
                    // Typically out of descriptors: the backlog waits, so try again shortly
                    // (no new readiness edge may ever come).
                    log::warn!("listener {} failed to accept: {e}; retrying", self.id);
                    cx.shared.set_deadline(self.id, ACCEPT_RETRY, Deadline::AcceptRetry);
                    return;
                }
            }
        }
        cx.again.push(self.id);
    }

    // Without `websocket`, the match on the transport below keeps only its stream arm.
    #[cfg_attr(not(feature = "websocket"), allow(clippy::match_single_binding))]
    fn accepted(&self, stream: TcpStream, addr: SocketAddr, cx: &mut Cx<'_>) {
        let options = &self.accept.options;
        if let Err(e) = super::socket::configure_stream(&stream, options) {
            log::warn!("listener {}: dropping connection from {addr}: {e}", self.id);
            return;
        }
        let transport = self.accept.transport;
        let id = cx.shared.ids.generate(transport.id(), crate::core::ResourceType::Remote);
        let endpoint = Endpoint::new(id, addr);
        // A `Ws` listener, or one of a mounted transport carried over WebSocket.
        #[cfg(feature = "websocket")]
        let over_ws = self.accept.ws.as_ref();
        #[cfg(not(feature = "websocket"))]
        let over_ws: Option<()> = None;
        let resource = match over_ws {
            #[cfg(feature = "websocket")]
            Some(accept) => {
                let Some(pending) = accept.admit() else {
                    // Logged before the socket closes (when `stream` drops, on return).
                    let max = accept.max_pending;
                    log::warn!(
                        "listener {}: dropping connection from {addr}: {max} handshakes already \
                         pending (WsListenConfig::with_max_pending_handshakes)",
                        self.id
                    );
                    return;
                };
                let carried = self.accept.protocol.as_ref().and_then(Framing::mounted);
                match super::ws::Connection::accepting(
                    endpoint, self.id, stream, accept, pending, carried,
                ) {
                    Ok(connection) => Resource::Ws(Box::new(connection)),
                    Err(e) => {
                        log::warn!("listener {}: dropping connection from {addr}: {e}", self.id);
                        return;
                    }
                }
            }
            _ => {
                let Some(protocol) = &self.accept.protocol else { return };
                Resource::Stream(Connection::new(
                    endpoint,
                    stream,
                    State::ready(),
                    protocol.clone(),
                    Side::Server,
                    options.send_queue_limit,
                ))
            }
        };
        let is_ws = over_ws.is_some();
        if let Err(e) = cx.shared.add(id, resource) {
            log::warn!("listener {}: dropping connection from {addr}: {e}", self.id);
            return;
        }
        if is_ws {
            cx.shared.set_deadline(id, options.connect_timeout, Deadline::Connect);
        } else {
            (cx.callback)(NetEvent::Accepted(endpoint, self.id));
        }
    }
}

/// The parts not yet written once `written` bytes of their concatenation were, into `slices`;
/// returns how many there are (empty parts left out).
fn unwritten<'a>(
    parts: &[&'a [u8]; 3],
    mut written: usize,
    slices: &mut [IoSlice<'a>; 3],
) -> usize {
    let mut count = 0;
    for part in parts {
        if written >= part.len() {
            written -= part.len();
            continue;
        }
        slices[count] = IoSlice::new(&part[written..]);
        written = 0;
        count += 1;
    }
    count
}

/// Callbacks waiting for a send queue to drain.
#[derive(Default)]
pub(crate) struct Waiters(Mutex<Vec<Box<dyn FnOnce() + Send>>>);

impl Waiters {
    pub fn push(&self, notify: Box<dyn FnOnce() + Send>) {
        lock(&self.0).push(notify);
    }

    pub fn notify_all(&self) {
        let waiting = std::mem::take(&mut *lock(&self.0));
        for notify in waiting {
            notify();
        }
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing here leaves the data half-updated on panic; keep serving.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
