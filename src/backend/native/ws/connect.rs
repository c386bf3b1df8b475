//! A client connect: the URL's target, the name lookup off the caller's thread, and the blocking
//! handshake of `connect_sync`. The same for a mounted transport carried over WebSocket.

use super::super::stream::lock;
use super::super::{Deadline, Resource, Shared, State, resolve, socket};
use super::{ClientStart, Connection, Phase, WsStream, client_handshake, ws_config};
use crate::adapter::{Protocol, Side};
use crate::adapters::StreamOptions;
use crate::adapters::ws::{DEFAULT_PATH, WsConnectConfig, WsHandshake};
use crate::core::{Endpoint, RemoteAddr, ResourceId};
use mio::net::TcpStream;
use mio::{Interest, Token};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::{Request, Response};
use tungstenite::http::HeaderValue;
use tungstenite::{HandshakeError, WebSocket};

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
    carried: Option<Protocol>,
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
            .map(|host| super::super::tls::client(&config.tls, host))
            .transpose()
            .map_err(context)?,
        config: ws_config(&config.ws, options.send_queue_limit, target.tls_host.is_none()),
    };
    let endpoint = Endpoint::new(id, target.peer.endpoint_addr());
    let new = |state, phase| {
        Connection::new(endpoint, None, state, phase, &config.ws, options.send_queue_limit)
            .carrying(carried.as_ref(), Side::Client)
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
    shared.add(id, Resource::Ws(Box::new(connection)))?;
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
        if let Some(Resource::Ws(c)) = shared.get(id).as_deref() {
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
