//! What the handshakes need besides tungstenite: a listener's admission and TLS, the server's
//! subprotocol choice, the client's request waiting for its TCP connection.

use super::super::read_ahead::ReadAhead;
use super::super::stream::lock;
use super::WsStream;
use crate::adapters::StreamOptions;
use crate::adapters::ws::{WsHandshake, WsOptions};
use mio::net::TcpStream;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tungstenite::handshake::client::{Request, Response};
use tungstenite::handshake::server::{self, Callback, ErrorResponse};
use tungstenite::http::HeaderValue;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{ClientHandshake, HandshakeError, WebSocket};

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
    pub(super) fn stream(&self, stream: TcpStream) -> io::Result<WsStream> {
        #[cfg(feature = "tls")]
        if let Some(config) = &self.tls {
            let connection = super::super::tls::server(config)?;
            return Ok(WsStream::TlsServer(Box::new(rustls::StreamOwned::new(connection, stream))));
        }
        Ok(WsStream::Plain(stream, ReadAhead::default()))
    }
}

/// The server side of the handshake: picks a subprotocol and keeps what the request said.
pub(crate) struct Negotiate {
    pub(super) supported: Vec<String>,
    pub(super) seen: Arc<Mutex<Option<WsHandshake>>>,
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
    pub(super) request: Request,
    pub(super) options: StreamOptions,
    #[cfg(feature = "tls")]
    pub(super) tls: Option<rustls::ClientConnection>,
    pub(super) config: WebSocketConfig,
}

impl ClientStart {
    fn stream(&mut self, stream: TcpStream) -> WsStream {
        #[cfg(feature = "tls")]
        if let Some(connection) = self.tls.take() {
            return WsStream::TlsClient(Box::new(rustls::StreamOwned::new(connection, stream)));
        }
        WsStream::Plain(stream, ReadAhead::default())
    }

    /// Starts the handshake on a connected socket.
    #[allow(clippy::result_large_err)] // tungstenite's own result type
    pub(super) fn handshake(
        mut self,
        stream: TcpStream,
    ) -> Result<(WebSocket<WsStream>, Response), HandshakeError<ClientHandshake<WsStream>>> {
        let stream = self.stream(stream);
        tungstenite::client::client_with_config(self.request, stream, Some(self.config))
    }
}

/// A client's handshake as the application sees it: the path it requested and the response.
pub(super) fn client_handshake(response: &Response, path: String) -> WsHandshake {
    let subprotocol = response
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    WsHandshake { path, headers: headers(response.headers()), subprotocol }
}
