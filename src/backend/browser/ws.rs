//! `Ws` connections on the browser's `WebSocket`.
//!
//! One JS closure per connection receives all of its socket's events (`open`, `message`,
//! `close`, `error`) and its connect timeout. The closure is owned by the [`Connection`]: when
//! the connection goes, the socket's handlers are detached and the closure is released with
//! it (nothing is leaked with `Closure::forget`).

use super::js::{self, Timeout};
use crate::adapter::{Carried, Decoder, Io, Protocol, Side, Sink};
use crate::adapters::ws::{MessageKind, WsClose, WsConnectConfig, WsHandshake};
use crate::core::{Endpoint, RemoteAddr, SendStatus, StoredNetEvent};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{BinaryType, CloseEvent, Event, MessageEvent, WebSocket};

/// What a connection's socket reported, as the network should handle it.
pub(super) enum Report {
    /// Nothing for the application (an `error` event: its `close` follows).
    Nothing,
    /// An event for the application; the connection goes on.
    Event(StoredNetEvent, Detail),
    /// An event for the application, after which the connection is gone.
    Last(StoredNetEvent, Detail),
    /// What a carried transport's decoder made of one WebSocket message: the messages it
    /// completed, and the reason it failed, after which the connection is gone.
    Decoded(Vec<Vec<u8>>, Option<String>),
}

/// What the application may ask about an event while it handles it.
#[derive(Clone, Debug)]
pub(super) enum Detail {
    None,
    /// A message's frame type, for `message_kind`.
    Kind(MessageKind),
    /// The peer's Close frame, for `ws_close`.
    Close(WsClose),
}

/// A `Ws` client connection.
pub(super) struct Connection {
    pub endpoint: Endpoint,
    socket: WebSocket,
    /// The socket's events and the connect timeout come here. Released with the connection.
    _handler: Closure<dyn FnMut(JsValue)>,
    /// Until `open`: ends the attempt with `Connected(_, false)` (the config's connect
    /// timeout, `DEFAULT_CONNECT_TIMEOUT` by default).
    connect_timeout: Option<Timeout>,
    open: bool,
    send_queue_limit: usize,
    max_message_size: usize,
    /// A send was refused with `QueueFull`: `waiters` hear when the queue drains.
    blocked: bool,
    waiters: Vec<Box<dyn FnOnce() + Send>>,
    /// A mounted transport this connection carries (`Carrier::WebSocket`).
    carried: Option<Carried<Box<dyn Decoder>>>,
}

/// What a carried transport's decoder delivers to: the messages of one WebSocket message.
#[derive(Default)]
struct Collect(Vec<Vec<u8>>);

impl Sink for Collect {
    fn deliver(&mut self, message: &[u8]) {
        self.0.push(message.to_vec());
    }

    fn is_open(&self) -> bool {
        true
    }
}

impl Connection {
    /// Opens a socket to `url`. `handler` gets each of its events, and `undefined` when the
    /// connect timeout expires.
    pub fn open(
        endpoint: Endpoint,
        url: &str,
        config: &WsConnectConfig,
        handler: Closure<dyn FnMut(JsValue)>,
    ) -> io::Result<Self> {
        let socket = if config.ws.subprotocols.is_empty() {
            WebSocket::new(url)
        } else {
            let protocols: js_sys::Array =
                config.ws.subprotocols.iter().map(|p| JsValue::from_str(p)).collect();
            WebSocket::new_with_str_sequence(url, &protocols)
        };
        let socket = socket.map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("Ws connect to {url}: {}", js::error_message(&e)),
            )
        })?;
        socket.set_binary_type(BinaryType::Arraybuffer);
        let function = handler.as_ref().unchecked_ref();
        socket.set_onopen(Some(function));
        socket.set_onmessage(Some(function));
        socket.set_onclose(Some(function));
        socket.set_onerror(Some(function));
        let connect_timeout = Some(Timeout::new(handler.as_ref(), config.options.connect_timeout));
        Ok(Self {
            endpoint,
            socket,
            _handler: handler,
            connect_timeout,
            open: false,
            send_queue_limit: config.options.send_queue_limit,
            max_message_size: config.ws.max_message_size,
            blocked: false,
            waiters: Vec::new(),
            carried: None,
        })
    }

    /// Makes the connection carry a mounted transport's messages, if `protocol` is given.
    pub fn carrying(mut self, protocol: Option<Protocol>) -> Self {
        self.carried = protocol.map(|p| Carried::new(p, Side::Client, |decoder| decoder));
        self
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    /// What the browser tells of the handshake: the path requested and the subprotocol (a
    /// page sees no headers).
    pub fn handshake(&self) -> Option<WsHandshake> {
        if !self.open {
            return None;
        }
        let protocol = self.socket.protocol();
        let path = web_sys::Url::new(&self.socket.url())
            .map(|url| url.pathname() + &url.search())
            .unwrap_or_default();
        Some(WsHandshake {
            path,
            headers: Vec::new(),
            subprotocol: (!protocol.is_empty()).then_some(protocol),
        })
    }

    /// Handles what the socket reported (`value` is an `Event`, or `undefined` for the connect
    /// timeout).
    pub fn on_js_event(&mut self, value: JsValue) -> Report {
        let endpoint = self.endpoint;
        let Some(event) = value.dyn_ref::<Event>() else {
            // The connect timeout.
            if self.open {
                return Report::Nothing;
            }
            log::debug!("{endpoint}: connect timed out");
            return Report::Last(StoredNetEvent::Connected(endpoint, false), Detail::None);
        };
        match event.type_().as_str() {
            "open" => {
                self.connect_timeout = None;
                self.open = true;
                Report::Event(StoredNetEvent::Connected(endpoint, true), Detail::None)
            }
            "message" => {
                let Some(event) = event.dyn_ref::<MessageEvent>() else { return Report::Nothing };
                let data = event.data();
                let (bytes, kind) = if let Some(buffer) = data.dyn_ref::<js_sys::ArrayBuffer>() {
                    let len = buffer.byte_length() as usize;
                    if len > self.max_message_size {
                        return self.too_large(len);
                    }
                    (js_sys::Uint8Array::new(buffer).to_vec(), MessageKind::Binary)
                } else if let Some(text) = data.as_string() {
                    // A text frame: its UTF-8 bytes, as natively.
                    if text.len() > self.max_message_size {
                        return self.too_large(text.len());
                    }
                    (text.into_bytes(), MessageKind::Text)
                } else {
                    log::debug!("{endpoint}: ignored a message that is neither binary nor text");
                    return Report::Nothing;
                };
                if let Some(carried) = &mut self.carried {
                    let mut delivered = Collect::default();
                    let decoded = carried.decoder.decode(&bytes, &mut Io::new(&mut delivered));
                    let failed = decoded.err().map(|e| {
                        log::warn!("{endpoint} disconnected: {e}");
                        e.to_string()
                    });
                    return Report::Decoded(delivered.0, failed);
                }
                Report::Event(StoredNetEvent::Message(endpoint, bytes), Detail::Kind(kind))
            }
            "close" => {
                if self.open {
                    // 1005: a Close frame without a code; 1006: no Close frame at all.
                    let close = event
                        .dyn_ref::<CloseEvent>()
                        .filter(|close| !matches!(close.code(), 1005 | 1006))
                        .map(|close| WsClose { code: close.code(), reason: close.reason() });
                    log::debug!("{endpoint} disconnected: {close:?}");
                    let detail = close.map_or(Detail::None, Detail::Close);
                    Report::Last(StoredNetEvent::Disconnected(endpoint), detail)
                } else {
                    // Refused, unreachable, or the handshake failed: the browser tells no more.
                    log::debug!("{endpoint}: connect failed");
                    Report::Last(StoredNetEvent::Connected(endpoint, false), Detail::None)
                }
            }
            // The browser's `error` event carries no reason; the `close` event follows it.
            _ => Report::Nothing,
        }
    }

    /// A message above the maximum closes the connection, as natively.
    fn too_large(&mut self, len: usize) -> Report {
        log::warn!(
            "{}: closed: a message of {len} bytes exceeds the maximum of {}",
            self.endpoint,
            self.max_message_size
        );
        Report::Last(StoredNetEvent::Disconnected(self.endpoint), Detail::None)
    }

    /// Sends one binary message, refusing it as the native backend would.
    pub fn send(&mut self, data: &[u8]) -> SendStatus {
        if let Some(carried) = &self.carried {
            return match carried.encode(data) {
                Ok(payload) => {
                    self.send_frame(payload.len(), |socket| socket.send_with_u8_array(&payload))
                }
                Err(e) => {
                    log::debug!("{}: message of {} bytes refused: {e}", self.endpoint, data.len());
                    SendStatus::MaxPacketSizeExceeded
                }
            };
        }
        self.send_frame(data.len(), |socket| socket.send_with_u8_array(data))
    }

    /// Sends one text message (a carried transport's messages are always binary).
    pub fn send_text(&mut self, text: &str) -> SendStatus {
        if self.carried.is_some() {
            return self.send(text.as_bytes());
        }
        self.send_frame(text.len(), |socket| socket.send_with_str(text))
    }

    fn send_frame(
        &mut self,
        len: usize,
        send: impl FnOnce(&WebSocket) -> Result<(), JsValue>,
    ) -> SendStatus {
        if !self.open {
            return SendStatus::ResourceNotAvailable;
        }
        if self.socket.ready_state() != WebSocket::OPEN {
            // Closing: the `close` event is on its way.
            return SendStatus::ResourceNotFound;
        }
        if len > self.max_message_size {
            return SendStatus::MaxPacketSizeExceeded;
        }
        // The native rule: refuse once the queue holds the limit (so a single message larger
        // than the limit still goes out when the queue is nearly empty).
        if self.buffered() >= self.send_queue_limit {
            self.blocked = true;
            return SendStatus::QueueFull;
        }
        match send(&self.socket) {
            Ok(()) => SendStatus::Sent,
            Err(e) => {
                log::debug!("{}: send failed: {}", self.endpoint, js::error_message(&e));
                SendStatus::ResourceNotFound
            }
        }
    }

    /// Bytes the browser accepted and has not written yet.
    fn buffered(&self) -> usize {
        self.socket.buffered_amount() as usize
    }

    /// Queues `notify` until the send queue drains, or returns it to be called now.
    pub fn when_writable(
        &mut self,
        notify: Box<dyn FnOnce() + Send>,
    ) -> Option<Box<dyn FnOnce() + Send>> {
        if self.blocked {
            self.waiters.push(notify);
            None
        } else {
            Some(notify)
        }
    }

    pub fn has_waiters(&self) -> bool {
        !self.waiters.is_empty()
    }

    /// The waiters to notify if the queue drained to half the limit (the low-water mark of
    /// the native queues). The browser has no event for it: the network polls.
    pub fn take_drained(&mut self) -> Vec<Box<dyn FnOnce() + Send>> {
        if self.blocked && self.buffered() <= self.send_queue_limit / 2 {
            self.blocked = false;
            std::mem::take(&mut self.waiters)
        } else {
            Vec::new()
        }
    }

    /// The waiters, to notify when the connection goes.
    pub fn take_waiters(&mut self) -> Vec<Box<dyn FnOnce() + Send>> {
        self.blocked = false;
        std::mem::take(&mut self.waiters)
    }
}

impl Drop for Connection {
    /// Detaches the handler (released with `self`) and closes the socket; the browser still
    /// writes what `send` accepted before the close frame.
    fn drop(&mut self) {
        self.connect_timeout = None;
        self.socket.set_onopen(None);
        self.socket.set_onmessage(None);
        self.socket.set_onclose(None);
        self.socket.set_onerror(None);
        if self.socket.ready_state() < WebSocket::CLOSING {
            // 1000, a normal closure, as the native backend sends.
            let _ = self.socket.close_with_code(1000);
        }
    }
}

/// Where a `Ws` connect goes: the URL to open and the address its endpoint reports.
///
/// As natively: a socket address or `"host:port"` requests `ws://{addr}/message-io-default`;
/// a `ws://` or `wss://` URL is used as it is. The browser resolves host names itself and
/// does not say to what, so a host name's endpoint reports the unspecified address with the
/// URL's port.
pub(super) fn target(addr: &RemoteAddr, path: &str) -> io::Result<(String, SocketAddr)> {
    let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
    let url = match addr {
        RemoteAddr::Socket(addr) => return Ok((format!("ws://{addr}{path}"), *addr)),
        RemoteAddr::Str(s) => {
            let lower = s.to_ascii_lowercase();
            if lower.starts_with("ws://") || lower.starts_with("wss://") {
                s.clone()
            } else if let Some((scheme, _)) = s.split_once("://") {
                return Err(invalid(format!(
                    "{s}: Ws connects to ws:// and wss:// URLs, not {scheme}://"
                )));
            } else {
                format!("ws://{s}{path}")
            }
        }
    };
    let parsed = web_sys::Url::new(&url)
        .map_err(|e| invalid(format!("{addr}: not a usable address: {}", js::error_message(&e))))?;
    let port = match parsed.port().as_str() {
        "" if parsed.protocol() == "wss:" => 443,
        "" => 80,
        port => port.parse().map_err(|_| invalid(format!("{addr}: bad port {port}")))?,
    };
    let hostname = parsed.hostname();
    let ip = hostname
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    Ok((url, SocketAddr::new(ip, port)))
}
