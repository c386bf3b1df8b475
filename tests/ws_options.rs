//! `Ws` options on native loopback (issue 5): text frames, subprotocols, request path and
//! headers, close codes, size limits; against portnet clients and a plain tungstenite one.

mod util;

use portnet::adapters::framed_tcp::FramedTcpListenConfig;
use portnet::adapters::ws::{DEFAULT_PATH, WsConnectConfig, WsListenConfig};
use portnet::network::{MessageKind, NetEvent, SendStatus, Transport, TransportListen, WsClose};
use portnet::node::{self, NodeEvent, NodeHandler, StoredNetEvent, StoredNodeEvent};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::Duration;
use tungstenite::Message;
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use util::ws::*;
use util::{AbortAfter, payload};

fn ws(addr: SocketAddr, path: &str) -> String {
    format!("ws://127.0.0.1:{}{path}", addr.port())
}

// ---------------------------------------------------------------------------------------------
// A plain tungstenite client (blocking, bounded by socket timeouts).

type PlainWebSocket = tungstenite::WebSocket<TcpStream>;

fn tungstenite_client(addr: SocketAddr, request: impl IntoClientRequest) -> PlainWebSocket {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    tcp.set_write_timeout(Some(WAIT)).unwrap();
    let (socket, response) = tungstenite::client(request, tcp)
        .unwrap_or_else(|e| panic!("tungstenite handshake with portnet: {e}"));
    assert_eq!(response.status(), 101);
    socket
}

/// Reads until the connection ends; returns whether it ended (not a timeout).
fn read_until_closed(socket: &mut PlainWebSocket) -> bool {
    for _ in 0..1000 {
        match socket.read() {
            Ok(_) => (),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
    false
}

// ---------------------------------------------------------------------------------------------
// Text and binary frames.

#[test]
fn text_frames_from_a_tungstenite_client() {
    let _abort = AbortAfter::start("text_frames_from_a_tungstenite_client", WAIT * 2);
    let (server, addr) = Node::server(WsListenConfig::default());
    let mut socket = tungstenite_client(addr, ws(addr, "/text"));
    let (server_ep, _) = server.accepted();

    let not_utf8 = vec![0xff, 0x00, 0xc3, 0x28];
    let sequence: Vec<(MessageKind, Vec<u8>)> = vec![
        (MessageKind::Text, "héllo ✓ 😀".as_bytes().to_vec()),
        (MessageKind::Binary, not_utf8),
        (MessageKind::Text, b"{\"json\": true}".to_vec()),
        (MessageKind::Text, Vec::new()),
        (MessageKind::Binary, b"ascii but binary".to_vec()),
        (MessageKind::Text, "big ✓ ".repeat(50_000).into_bytes()),
    ];
    for (kind, data) in &sequence {
        let message = match kind {
            MessageKind::Text => Message::text(String::from_utf8(data.clone()).unwrap()),
            MessageKind::Binary => Message::binary(data.clone()),
        };
        socket.send(message).unwrap();
        let (got_kind, got) = server.message(server_ep);
        assert_eq!(got_kind, *kind, "server: kind of {} bytes", data.len());
        assert!(got == *data, "server: bytes of a {kind:?} message differ");
        match (kind, socket.read().unwrap()) {
            (MessageKind::Text, Message::Text(text)) => assert!(text.as_bytes() == data),
            (MessageKind::Binary, Message::Binary(bytes)) => assert!(bytes == *data),
            (kind, other) => panic!("sent {kind:?}, the echo came back as {other:?}"),
        }
    }
    // Outside the message callback the kind is still the latest one's (documented).
    assert_eq!(server.handler.network().message_kind(server_ep), MessageKind::Text);
    drop(socket);
    assert_eq!(server.disconnected(server_ep), None, "no Close frame was sent");
}

#[test]
fn text_between_portnet_client_and_server() {
    let (server, addr) = Node::server(WsListenConfig::default());
    let (client, ep, server_ep) = good_client(&server, WsConnectConfig::default(), &ws(addr, "/"));
    round_trip(&client, ep, &server, server_ep, MessageKind::Text, "texte ✓".as_bytes());
    round_trip(&client, ep, &server, server_ep, MessageKind::Binary, "texte ✓".as_bytes());
    round_trip(&client, ep, &server, server_ep, MessageKind::Text, b"");
    round_trip(&client, ep, &server, server_ep, MessageKind::Text, &vec![b'a'; 1 << 20]);
    // The server starts a text message itself.
    assert_eq!(server.handler.network().send_text(server_ep, "from server"), SendStatus::Sent);
    assert_eq!(client.message(ep), (MessageKind::Text, b"from server".to_vec()));
}

/// On the other transports `send_text` sends the same bytes, and every message is binary;
/// the Ws-only queries answer None.
#[test]
fn send_text_on_framed_tcp() {
    let (handler, listener) = node::split::<()>();
    let config = FramedTcpListenConfig::default();
    let (_, addr) =
        handler.network().listen_with(TransportListen::FramedTcp(config), "127.0.0.1:0").unwrap();
    let (sender, received) = mpsc::channel();
    let node = handler.clone();
    let _task = listener.for_each_async(move |event| {
        if let NodeEvent::Network(NetEvent::Message(ep, data)) = event {
            let _ = sender.send((node.network().message_kind(ep), data.to_vec()));
        }
    });
    let stop = StopOnDrop(handler.clone());
    let (ep, _) = handler.network().connect_sync(Transport::FramedTcp, addr).unwrap();
    assert_eq!(handler.network().send_text(ep, "plain ✓"), SendStatus::Sent);
    let got = received.recv_timeout(WAIT).expect("the FramedTcp message");
    assert_eq!(got, (MessageKind::Binary, "plain ✓".as_bytes().to_vec()));
    assert_eq!(handler.network().ws_handshake(ep), None);
    assert_eq!(handler.network().ws_close(ep), None);
    drop(stop);
}

struct StopOnDrop(NodeHandler<()>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// Subprotocols.

#[test]
fn subprotocol_negotiation() {
    let (server, addr) = Node::server(WsListenConfig::default().with_subprotocols(["a", "b"]));
    let cases: [(&[&str], Option<&str>); 4] = [
        (&["b", "a"], Some("b")), // the client's first that the server supports
        (&["a", "b"], Some("a")),
        (&["x", "b"], Some("b")),
        (&[], None), // offering none is fine
    ];
    for (offer, expected) in cases {
        let config = WsConnectConfig::default().with_subprotocols(offer.iter().copied());
        let (client, ep, server_ep) = good_client(&server, config, &ws(addr, "/"));
        let client_side = client.handler.network().ws_handshake(ep).expect("client handshake");
        let server_side = server.handler.network().ws_handshake(server_ep).expect("server's");
        assert_eq!(client_side.subprotocol.as_deref(), expected, "client, offering {offer:?}");
        assert_eq!(server_side.subprotocol.as_deref(), expected, "server, offered {offer:?}");
        drop(client);
        server.disconnected(server_ep);
    }
}

/// The handshake the server reports in its Accepted callback already has the subprotocol.
#[test]
fn subprotocol_visible_in_accepted() {
    let (server, addr) = Node::server(WsListenConfig::default().with_subprotocols(["a", "b"]));
    let client = Node::start(false);
    let ep =
        client.connect(WsConnectConfig::default().with_subprotocols(["b", "a"]), &ws(addr, "/"));
    assert!(client.connected(ep));
    let (_, handshake) = server.accepted();
    assert_eq!(handshake.expect("handshake in Accepted").subprotocol.as_deref(), Some("b"));
}

#[test]
fn subprotocol_mismatch_is_refused_and_the_server_keeps_serving() {
    let (server, addr) = Node::server(WsListenConfig::default().with_subprotocols(["a", "b"]));
    let client = Node::start(false);
    let config = WsConnectConfig::default().with_subprotocols(["x", "y"]);
    let ep = client.connect(config, &ws(addr, "/"));
    assert!(!client.connected(ep), "no common subprotocol, yet connected");
    assert_logged(&addr.to_string(), &["subprotocol"]);
    // The server answered without a subprotocol (RFC 6455 lets it), so from its side the
    // handshake completed: it reports the connection, which the client then drops.
    let (refused_ep, handshake) = server.accepted();
    assert_eq!(handshake.unwrap().subprotocol, None);
    server.disconnected(refused_ep);
    let config = WsConnectConfig::default().with_subprotocols(["a"]);
    still_serves(&server, config, &ws(addr, "/"));
    server.quiet();

    // A server that speaks no subprotocol: a client that insists on one is refused.
    let (plain, plain_addr) = Node::server(WsListenConfig::default());
    let config = WsConnectConfig::default().with_subprotocols(["a"]);
    let ep = client.connect(config, &ws(plain_addr, "/"));
    assert!(!client.connected(ep), "server chose none, yet connected");
    let (refused_ep, _) = plain.accepted();
    plain.disconnected(refused_ep);
    still_serves(&plain, WsConnectConfig::default(), &ws(plain_addr, "/"));
    client.quiet();
}

#[test]
fn subprotocol_offer_from_a_tungstenite_client() {
    let _abort = AbortAfter::start("subprotocol_offer_from_a_tungstenite_client", WAIT * 2);
    let (server, addr) = Node::server(WsListenConfig::default().with_subprotocols(["a", "b"]));
    let mut request = ws(addr, "/").into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "x, b, a".parse().unwrap());
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let (_socket, response) = tungstenite::client(request, tcp).unwrap();
    let chosen = response.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap());
    assert_eq!(chosen, Some("b"));
    let (_, handshake) = server.accepted();
    assert_eq!(handshake.unwrap().subprotocol.as_deref(), Some("b"));
}

// ---------------------------------------------------------------------------------------------
// Request path and headers.

#[test]
fn request_path_seen_by_the_server() {
    let (server, addr) = Node::server(WsListenConfig::default());
    let port = addr.port();
    let client = Node::start(false);
    let network = client.handler.network();
    let config = WsConnectConfig::default;
    let cases: Vec<(&str, portnet::network::TransportConnect, String)> = vec![
        ("URL path and query", config().into(), format!("ws://127.0.0.1:{port}/chat?room=1")),
        ("URL without a path", config().into(), format!("ws://127.0.0.1:{port}")),
        ("URL path wins over with_path", config().with_path("/ignored").into(), ws(addr, "/url")),
        ("host:port string", config().into(), format!("127.0.0.1:{port}")),
        ("host:port with_path", config().with_path("/str?q=2").into(), format!("127.0.0.1:{port}")),
    ];
    let expected = ["/chat?room=1", "/", "/url", DEFAULT_PATH, "/str?q=2"];
    for ((what, transport, addr_text), expected) in cases.into_iter().zip(expected) {
        let (ep, _) = network.connect_with(transport, addr_text.as_str()).unwrap();
        assert!(client.connected(ep), "{what}: refused");
        let (server_ep, handshake) = server.accepted();
        let handshake = handshake.unwrap_or_else(|| panic!("{what}: no handshake in Accepted"));
        assert_eq!(handshake.path, expected, "{what}");
        let later = server.handler.network().ws_handshake(server_ep).unwrap();
        assert_eq!(later.path, expected, "{what}: after Accepted");
    }
    // A bare socket address: the default path, or the configured one.
    for (config, expected) in
        [(config(), DEFAULT_PATH), (config().with_path("/custom?x=1"), "/custom?x=1")]
    {
        let (ep, _) = network.connect_with(config.into(), addr).unwrap();
        assert!(client.connected(ep), "socket address, {expected}: refused");
        let (_, handshake) = server.accepted();
        assert_eq!(handshake.unwrap().path, expected);
    }
    // A path without its leading slash is an error or is requested as given, never a
    // different address.
    match network.connect_with(config().with_path("chat").into(), addr) {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}"),
        Ok((ep, _)) => {
            if client.connected(ep) {
                let (_, handshake) = server.accepted();
                let handshake = handshake.unwrap();
                assert_eq!(handshake.path, "/chat", "with_path(\"chat\"): {handshake:?}");
            }
        }
    }
    client.quiet();
}

#[test]
fn request_headers_seen_by_the_server() {
    let (server, addr) = Node::server(WsListenConfig::default());
    let client = Node::start(false);
    let config = WsConnectConfig::default()
        .with_header("Authorization", "Bearer abc")
        .with_header("X-Trace", "1")
        .with_header("X-Trace", "2");
    let ep = client.connect(config, &ws(addr, "/h"));
    assert!(client.connected(ep));
    let (server_ep, handshake) = server.accepted();
    let headers = handshake.expect("server handshake").headers;
    let has = |name: &str, value: &str| headers.iter().any(|(n, v)| n == name && v == value);
    assert!(has("authorization", "Bearer abc"), "{headers:?}");
    assert!(has("x-trace", "1") && has("x-trace", "2"), "both X-Trace values: {headers:?}");
    assert!(has("host", &format!("127.0.0.1:{}", addr.port())), "{headers:?}");
    assert!(headers.iter().all(|(n, _)| *n == n.to_lowercase()), "names lowercase: {headers:?}");

    // The client sees the response's headers.
    let response = client.handler.network().ws_handshake(ep).expect("client handshake");
    assert!(response.headers.iter().any(|(n, _)| n == "sec-websocket-accept"), "{response:?}");
    assert_eq!(response.subprotocol, None);
    round_trip(&client, ep, &server, server_ep, MessageKind::Binary, b"with headers");

    // Headers that are no headers: errors, not panics, and nothing reported.
    let network = client.handler.network();
    for (name, value) in [("bad name", "v"), ("X-Ok", "line\nbreak"), ("", "v")] {
        let config = WsConnectConfig::default().with_header(name, value);
        let err = network.connect_with(config.into(), ws(addr, "/")).expect_err(name);
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{name:?}: {err}");
    }
    client.quiet();
    server.quiet();
}

// ---------------------------------------------------------------------------------------------
// Close codes.

#[test]
fn close_code_and_reason_seen_on_disconnection() {
    let _abort = AbortAfter::start("close_code_and_reason_seen_on_disconnection", WAIT * 3);
    let (server, addr) = Node::server(WsListenConfig::default());
    let close = |code, reason: &str| Some(WsClose { code, reason: reason.into() });
    let cases = [
        (Some((4000, "bye")), close(4000, "bye")),
        (Some((1000, "")), close(1000, "")),
        (None, None), // a Close frame without a code
    ];
    let mut previous = None;
    for (frame, expected) in cases {
        let mut socket = tungstenite_client(addr, ws(addr, "/close"));
        let (server_ep, _) = server.accepted();
        // Once the node has moved on to later events, the last code is gone (it is readable
        // only inside the Disconnected callback).
        if let Some(previous) = previous {
            assert_eq!(server.handler.network().ws_close(previous), None);
        }
        socket.send(Message::text("before closing")).unwrap();
        assert_eq!(server.message(server_ep).1, b"before closing");
        let frame = frame.map(|(code, reason)| CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        });
        let sent = format!("{frame:?}");
        socket.close(frame).unwrap();
        assert_eq!(server.disconnected(server_ep), expected, "closed with {sent}");
        assert!(read_until_closed(&mut socket), "the server left the connection open");
        previous = Some(server_ep);
    }
    // A peer that just goes: no Close frame, no code.
    let socket = tungstenite_client(addr, ws(addr, "/"));
    let (server_ep, _) = server.accepted();
    drop(socket);
    assert_eq!(server.disconnected(server_ep), None);
    // A portnet client closing: the server sees Disconnected (the code, if any, is normal).
    let (client, ep, server_ep) = good_client(&server, WsConnectConfig::default(), &ws(addr, "/"));
    client.handler.network().remove(ep.resource_id());
    if let Some(close) = server.disconnected(server_ep) {
        assert_eq!(close.code, 1000, "{close:?}");
    }
}

/// A portnet client sees the code a (tungstenite) server closed with.
#[test]
fn client_sees_the_servers_close_code() {
    let _abort = AbortAfter::start("client_sees_the_servers_close_code", WAIT * 2);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        let mut socket = tungstenite::accept(tcp).unwrap();
        socket.send(Message::text("hello")).unwrap();
        let frame = CloseFrame { code: CloseCode::from(4002), reason: "server bye".into() };
        socket.close(Some(frame)).unwrap();
        read_until_closed(&mut socket)
    });
    let client = Node::start(false);
    let ep = client.connect(WsConnectConfig::default(), &ws(addr, "/"));
    assert!(client.connected(ep));
    assert_eq!(client.message(ep), (MessageKind::Text, b"hello".to_vec()));
    let close = client.disconnected(ep);
    assert_eq!(close, Some(WsClose { code: 4002, reason: "server bye".into() }));
    assert!(server.join().unwrap(), "the client did not end the connection");
}

/// A Close frame from the server (on `remove`) reaches a tungstenite client.
#[test]
fn server_remove_sends_a_close_frame() {
    let _abort = AbortAfter::start("server_remove_sends_a_close_frame", WAIT * 2);
    let (server, addr) = Node::server(WsListenConfig::default());
    let mut socket = tungstenite_client(addr, ws(addr, "/"));
    let (server_ep, _) = server.accepted();
    assert!(server.handler.network().remove(server_ep.resource_id()));
    match socket.read() {
        Ok(Message::Close(Some(frame))) => {
            assert_eq!(u16::from(frame.code), 1000, "a normal closure: {frame:?}");
        }
        Ok(other) => panic!("expected a Close frame with code 1000, got {other:?}"),
        Err(e) => panic!("no Close frame before the end: {e}"),
    }
    server.quiet();
}

// ---------------------------------------------------------------------------------------------
// Size limits.

#[test]
fn server_max_message_size_disconnects_the_offender_only() {
    let _abort =
        AbortAfter::start("server_max_message_size_disconnects_the_offender_only", WAIT * 3);
    let (server, addr) = Node::server(WsListenConfig::default().with_max_message_size(1024));
    let (good, good_ep, good_server_ep) =
        good_client(&server, WsConnectConfig::default(), &ws(addr, "/"));
    round_trip(&good, good_ep, &server, good_server_ep, MessageKind::Binary, &payload(0, 1024));

    // A portnet client sending 2 KiB.
    let (bad, bad_ep, bad_server_ep) =
        good_client(&server, WsConnectConfig::default(), &ws(addr, "/"));
    assert_eq!(bad.handler.network().send(bad_ep, &payload(1, 2048)), SendStatus::Sent);
    server.disconnected(bad_server_ep);
    bad.disconnected(bad_ep);
    assert_logged(&bad_server_ep.to_string(), &["too long", "too big", "size", "limit"]);

    // A tungstenite client sending 2 KiB of text.
    let mut socket = tungstenite_client(addr, ws(addr, "/"));
    let (socket_server_ep, _) = server.accepted();
    socket.send(Message::text("x".repeat(2048))).unwrap();
    server.disconnected(socket_server_ep);
    assert!(read_until_closed(&mut socket));

    // The other connection was not touched.
    round_trip(&good, good_ep, &server, good_server_ep, MessageKind::Text, &[b'y'; 1024]);
    good.quiet();
    server.quiet();
}

#[test]
fn client_max_message_size() {
    let (server, addr) = Node::server(WsListenConfig::default());
    let config = WsConnectConfig::default().with_max_message_size(1024);
    let (client, ep, server_ep) = good_client(&server, config, &ws(addr, "/"));
    let network = client.handler.network();
    assert_eq!(network.send(ep, &payload(0, 1025)), SendStatus::MaxPacketSizeExceeded);
    assert_eq!(network.send(ep, &payload(0, 2048)), SendStatus::MaxPacketSizeExceeded);
    assert_eq!(network.send_text(ep, &"z".repeat(1025)), SendStatus::MaxPacketSizeExceeded);
    // Nothing of those went out; the limit itself does.
    round_trip(&client, ep, &server, server_ep, MessageKind::Binary, &payload(1, 1024));
    server.quiet();
    // A message over the client's limit from the server ends the connection.
    assert_eq!(server.handler.network().send(server_ep, &payload(2, 2048)), SendStatus::Sent);
    client.disconnected(ep);
    server.disconnected(server_ep);
}

#[test]
fn server_max_frame_size() {
    let _abort = AbortAfter::start("server_max_frame_size", WAIT * 2);
    let (server, addr) = Node::server(WsListenConfig::default().with_max_frame_size(512));
    let mut socket = tungstenite_client(addr, ws(addr, "/"));
    let (server_ep, _) = server.accepted();
    socket.send(Message::binary(vec![1; 512])).unwrap();
    assert_eq!(server.message(server_ep).1.len(), 512);
    socket.send(Message::binary(vec![1; 1024])).unwrap();
    // The echo of the first message, then the end.
    assert!(read_until_closed(&mut socket));
    server.disconnected(server_ep);
}

/// A `Host` header given by the application replaces the one made from the URL (connecting
/// by IP to a name-based virtual host); a request with two Host headers is one servers must
/// refuse (RFC 9112 section 3.2).
#[test]
fn host_header_replaces_the_default() {
    let (server, addr) = Node::server(WsListenConfig::default());
    let client = Node::start(false);
    let config = WsConnectConfig::default().with_header("Host", "chat.example:443");
    let ep = client.connect(config, &ws(addr, "/"));
    assert!(client.connected(ep));
    let (_, handshake) = server.accepted();
    let headers = handshake.unwrap().headers;
    let hosts: Vec<&str> =
        headers.iter().filter(|(n, _)| n == "host").map(|(_, v)| v.as_str()).collect();
    assert_eq!(hosts, ["chat.example:443"], "Host headers sent: {headers:?}");
}

/// Nodes pumped with `try_next` get owned events after the turn that gathered them: the
/// kind of each message and the close code of a Disconnected must still be right then.
#[test]
fn message_kind_and_close_code_through_try_next() {
    let _abort = AbortAfter::start("message_kind_and_close_code_through_try_next", WAIT * 2);
    let (handler, mut listener) = node::split::<()>();
    let (_, addr) = handler.network().listen(Transport::Ws, "127.0.0.1:0").unwrap();
    // The peer on a thread of its own, as this one pumps the node.
    let peer = std::thread::spawn(move || {
        let mut socket = tungstenite_client(addr, ws(addr, "/"));
        // Text, binary and a Close frame in one write: they arrive together.
        socket.write(Message::text("text first")).unwrap();
        socket.write(Message::binary(b"binary second".to_vec())).unwrap();
        let frame = CloseFrame { code: CloseCode::from(4000), reason: "bye".into() };
        socket.close(Some(frame)).unwrap();
        read_until_closed(&mut socket);
    });
    let deadline = std::time::Instant::now() + WAIT;
    // Each event, with what the application learns when it asks while handling it.
    let mut seen = Vec::new();
    loop {
        assert!(std::time::Instant::now() < deadline, "within {WAIT:?} only {seen:?}");
        let Some(StoredNodeEvent::Network(event)) = listener.try_next() else {
            std::thread::yield_now();
            continue;
        };
        let network = handler.network();
        match event {
            StoredNetEvent::Accepted(..) => seen.push("accepted".to_string()),
            StoredNetEvent::Message(ep, data) => seen.push(format!(
                "{:?} {}",
                network.message_kind(ep),
                String::from_utf8_lossy(&data)
            )),
            StoredNetEvent::Disconnected(ep) => {
                seen.push(format!("closed {:?}", network.ws_close(ep)));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    peer.join().unwrap();
    assert_eq!(
        seen,
        [
            "accepted",
            "Text text first",
            "Binary binary second",
            "closed Some(WsClose { code: 4000, reason: \"bye\" })"
        ]
    );
}

/// A listener holds at most `with_max_pending_handshakes` connections in their handshake, and
/// closes each that does not finish within `with_handshake_timeout`: silent clients cannot
/// lock out good ones for long.
#[test]
fn pending_handshakes_are_capped_and_time_out() {
    use std::io::Read;
    capture_logs();
    let config = WsListenConfig::default()
        .with_max_pending_handshakes(2)
        .with_handshake_timeout(Duration::from_millis(300));
    let (server, addr) = Node::server(config);
    // Two silent clients take both places.
    let mut silent: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    // The third is closed at once, never reported. (Accepts happen in order: once it is
    // closed, the two before it hold their places.)
    let mut third = TcpStream::connect(addr).unwrap();
    third.set_read_timeout(Some(WAIT)).unwrap();
    let mut byte = [0; 1];
    let outcome = third.read(&mut byte);
    assert!(matches!(outcome, Ok(0) | Err(_)), "the third was not closed: {outcome:?}");
    // Logged before the socket closed.
    assert!(!logged(&["handshakes already pending"]).is_empty(), "the reason is logged");
    // The silent ones are closed after the timeout, which frees their places.
    for stream in &mut silent {
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let outcome = stream.read(&mut byte);
        assert!(matches!(outcome, Ok(0) | Err(_)), "a silent client stayed: {outcome:?}");
    }
    still_serves(&server, WsConnectConfig::default(), &ws(addr, "/"));
    server.quiet();
}
