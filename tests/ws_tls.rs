//! `wss://` on native loopback (issue 5): portnet client and server with a certificate made
//! here, the refusals users hit, bad identities and roots, and interop with a plain
//! tungstenite + rustls client.
#![cfg(feature = "tls")]

mod util;

use portnet::adapters::ws::{WsConnectConfig, WsListenConfig};
use portnet::network::{Endpoint, MessageKind, NetEvent, SendStatus, Transport, WsClose};
use portnet::node::{self, NodeEvent, NodeHandler};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};
use util::ws::*;
use util::{AbortAfter, payload};

const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Certificates.

struct Identity {
    cert_pem: String,
    key_pem: String,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

fn identity(names: &[&str]) -> Identity {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let certified = rcgen::generate_simple_self_signed(names).unwrap();
    Identity {
        cert_pem: certified.cert.pem(),
        key_pem: certified.signing_key.serialize_pem(),
        cert_der: certified.cert.der().to_vec(),
        key_der: certified.signing_key.serialize_der(),
    }
}

impl Identity {
    fn listen(&self) -> WsListenConfig {
        WsListenConfig::default().with_tls(self.cert_pem.clone(), self.key_pem.clone())
    }

    fn trust(&self) -> WsConnectConfig {
        WsConnectConfig::default().with_root_certificate(self.cert_pem.clone())
    }
}

fn wss(addr: SocketAddr, path: &str) -> String {
    format!("wss://127.0.0.1:{}{path}", addr.port())
}

fn ws(addr: SocketAddr, path: &str) -> String {
    format!("ws://127.0.0.1:{}{path}", addr.port())
}

// ---------------------------------------------------------------------------------------------
// Round trips.

/// Small and 8 MiB messages, text and binary, both ways, reached by IP (an IP SAN).
#[test]
fn wss_round_trips_by_ip_address() {
    let id = identity(&["localhost", "127.0.0.1"]);
    let (server, addr) = Node::server(id.listen());
    let client = Node::start(false);
    let ep = client.connect(id.trust(), &wss(addr, "/echo?x=1"));
    assert!(client.connected(ep), "wss connect by IP refused");
    let (server_ep, handshake) = server.accepted();
    assert_eq!(handshake.expect("server handshake").path, "/echo?x=1");
    assert!(client.handler.network().ws_handshake(ep).is_some(), "client handshake");

    round_trip(&client, ep, &server, server_ep, MessageKind::Binary, b"small");
    round_trip(&client, ep, &server, server_ep, MessageKind::Text, "petit ✓".as_bytes());
    round_trip(&client, ep, &server, server_ep, MessageKind::Binary, &payload(1, 8 * MIB));
    round_trip(&client, ep, &server, server_ep, MessageKind::Binary, &[7]);
    let big_text = "wss text ".repeat(8 * MIB / 9);
    round_trip(&client, ep, &server, server_ep, MessageKind::Text, big_text.as_bytes());

    // Server to client first, then back: the other direction on its own.
    let big = payload(2, 8 * MIB);
    assert_eq!(server.handler.network().send(server_ep, &big), SendStatus::Sent);
    let (kind, got) = client.message(ep);
    assert!(kind == MessageKind::Binary && got == big, "8 MiB from the server");

    // Closing the client: the server sees the connection end.
    assert!(client.handler.network().remove(ep.resource_id()));
    server.disconnected(server_ep);
    client.quiet();
}

/// 8 MiB and 1 MiB messages queued at once, both ways, on two connections: sends and echoes
/// meet a full socket and a full TLS buffer.
#[test]
fn wss_burst_under_back_pressure() {
    let id = identity(&["127.0.0.1"]);
    let (server, addr) = Node::server(id.listen().with_send_queue_limit(usize::MAX));
    let client = Node::start(false);
    let eps: Vec<Endpoint> = (0..2)
        .map(|_| {
            client
                .handler
                .network()
                .connect_with(id.trust().with_send_queue_limit(usize::MAX).into(), wss(addr, "/"))
                .unwrap()
                .0
        })
        .collect();
    let mut ready = 0;
    while ready < 2 {
        match client.next("Connected") {
            Seen::Connected(ep, true) if eps.contains(&ep) => ready += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    // Sends while earlier messages are still being written, both ways: back-pressure.
    let mut messages = vec![payload(0, 8 * MIB), payload(1, 3)];
    messages.extend((2..98).map(|i| payload(i, 128 * 1024)));
    for &ep in &eps {
        for (i, message) in messages.iter().enumerate() {
            let status = client.handler.network().send(ep, message);
            let why = logged(&["send failed"]);
            assert_eq!(status, SendStatus::Sent, "message {i} to {ep}: {why:?}");
        }
    }
    let mut next = std::collections::HashMap::new();
    let mut done = 0;
    while done < eps.len() {
        match client.next("echoes") {
            Seen::Message(ep, MessageKind::Binary, data) => {
                let index = next.entry(ep).or_insert(0usize);
                assert!(data == messages[*index], "echo {index} to {ep} differs");
                *index += 1;
                if *index == messages.len() {
                    done += 1;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    drop(server);
}

/// A certificate for "localhost" only, reached by IP: the IP fails verification, and
/// `with_server_name("localhost")` makes it pass.
#[test]
fn wss_with_server_name() {
    let id = identity(&["localhost"]);
    let (server, addr) = Node::server(id.listen());

    let client = Node::start(false);
    let ep = client.connect(id.trust(), &wss(addr, "/"));
    assert!(!client.connected(ep), "127.0.0.1 is not in the certificate, yet it connected");
    assert_logged(&addr.to_string(), &["certificate", "name"]);

    let config = id.trust().with_server_name("localhost");
    let (client, ep, server_ep) = good_client(&server, config, &wss(addr, "/"));
    round_trip(&client, ep, &server, server_ep, MessageKind::Binary, &payload(3, 8 * MIB));
    round_trip(&client, ep, &server, server_ep, MessageKind::Text, b"named");
    server.quiet();
}

/// A CA's certificate for the name `ca`.
fn ca_params(name: &str) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params
}

/// A chain: leaf for 127.0.0.1, signed by an intermediate, signed by a root the client
/// trusts. Served with the intermediate it verifies; without it, it does not.
#[test]
fn wss_certificate_chain() {
    let root = rcgen::CertifiedIssuer::self_signed(
        ca_params("portnet test root"),
        rcgen::KeyPair::generate().unwrap(),
    )
    .unwrap();
    let intermediate = rcgen::CertifiedIssuer::signed_by(
        ca_params("portnet test intermediate"),
        rcgen::KeyPair::generate().unwrap(),
        &root,
    )
    .unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &intermediate)
        .unwrap();
    let trust = || WsConnectConfig::default().with_root_certificate(root.pem());

    let chain = format!("{}{}", leaf.pem(), intermediate.pem());
    let config = WsListenConfig::default().with_tls(chain, leaf_key.serialize_pem());
    let (server, addr) = Node::server(config);
    let (client, ep, server_ep) = good_client(&server, trust(), &wss(addr, "/chain"));
    round_trip(&client, ep, &server, server_ep, MessageKind::Text, b"chained");

    // The leaf alone: the client cannot reach its root.
    let config = WsListenConfig::default().with_tls(leaf.pem(), leaf_key.serialize_pem());
    let (leaf_only, leaf_addr) = Node::server(config);
    refused(&client, trust(), &wss(leaf_addr, "/"));
    leaf_only.quiet();
}

/// The identity and the root given as DER instead of PEM.
#[test]
fn wss_der_identity_and_root() {
    let id = identity(&["127.0.0.1"]);
    let config = WsListenConfig::default().with_tls(id.cert_der.clone(), id.key_der.clone());
    let (server, addr) = Node::server(config);
    let trust = WsConnectConfig::default().with_root_certificate(id.cert_der.clone());
    let (client, ep, server_ep) = good_client(&server, trust, &wss(addr, "/der"));
    round_trip(&client, ep, &server, server_ep, MessageKind::Text, b"der");
}

/// A message the server sends in its Accepted callback arrives (it travels with the end of
/// the handshake, already decrypted and buffered when the client learns it is connected).
#[test]
fn wss_server_speaks_first() {
    let id = identity(&["127.0.0.1"]);
    let (server, listener) = node::split::<()>();
    let (_, addr) = server.network().listen_with(id.listen().into(), "127.0.0.1:0").unwrap();
    let greeter = server.clone();
    let _server_task = listener.for_each_async(move |event| {
        if let NodeEvent::Network(NetEvent::Accepted(ep, _)) = event {
            greeter.network().send_text(ep, "hello");
            greeter.network().send(ep, &[1, 2, 3]);
        }
    });
    let stop = StopOnDrop(server);

    for sync in [false, true] {
        let client = Node::start(false);
        let ep = if sync {
            let config = id.trust().into();
            client.handler.network().connect_sync_with(config, wss(addr, "/")).unwrap().0
        } else {
            client.connect(id.trust(), &wss(addr, "/"))
        };
        assert!(client.connected(ep), "sync: {sync}");
        assert_eq!(client.message(ep), (MessageKind::Text, b"hello".to_vec()), "sync: {sync}");
        assert_eq!(client.message(ep), (MessageKind::Binary, vec![1, 2, 3]), "sync: {sync}");
    }
    drop(stop);
}

struct StopOnDrop(NodeHandler<()>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// `connect_sync_with` over wss: ready on return, `Connected(ep, true)` reported first; an
/// untrusted server is an error, not a hang or a panic.
#[test]
fn wss_connect_sync_with() {
    let id = identity(&["127.0.0.1"]);
    let (server, addr) = Node::server(id.listen());
    let client = Node::start(false);
    let network = client.handler.network();
    let (ep, local) = network.connect_sync_with(id.trust().into(), wss(addr, "/sync")).unwrap();
    assert_eq!(network.is_ready(ep.resource_id()), Some(true));
    assert_ne!(local.port(), 0);
    assert!(network.ws_handshake(ep).is_some(), "handshake after connect_sync_with");
    // Sending at once, before the node reported anything.
    assert_eq!(network.send(ep, b"right away"), SendStatus::Sent);
    assert!(client.connected(ep));
    let (server_ep, handshake) = server.accepted();
    assert_eq!(handshake.unwrap().path, "/sync");
    assert_eq!(server.message(server_ep), (MessageKind::Binary, b"right away".to_vec()));
    assert_eq!(client.message(ep), (MessageKind::Binary, b"right away".to_vec()));
    round_trip(&client, ep, &server, server_ep, MessageKind::Binary, &payload(4, 8 * MIB));

    let start = Instant::now();
    let err = network
        .connect_sync_with(WsConnectConfig::default().into(), wss(addr, "/untrusted"))
        .expect_err("untrusted certificate accepted by connect_sync_with");
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    assert!(err.to_string().to_lowercase().contains("certificate"), "unclear error: {err}");
    client.quiet();
    // The server dropped the refused handshake without reporting it, and still serves.
    still_serves(&server, id.trust(), &wss(addr, "/"));
}

// ---------------------------------------------------------------------------------------------
// Refusals: each ends in Connected(ep, false), is logged, and the server keeps serving.

fn refused(client: &Node, config: WsConnectConfig, url: &str) -> Endpoint {
    let ep = client.connect(config, url);
    // Not yet ready, or (when the refusal beat this line) gone: never sent.
    let early = client.handler.network().send(ep, b"early");
    assert!(
        matches!(early, SendStatus::ResourceNotAvailable | SendStatus::ResourceNotFound),
        "{url}: send while connecting: {early:?}"
    );
    assert!(!client.connected(ep), "{url}: connected, but should have been refused");
    assert_eq!(client.handler.network().is_ready(ep.resource_id()), None, "refused ep kept");
    assert_eq!(client.handler.network().send(ep, b"late"), SendStatus::ResourceNotFound);
    ep
}

#[test]
fn refused_wrong_server_name() {
    let id = identity(&["localhost", "127.0.0.1"]);
    let (server, addr) = Node::server(id.listen());
    let client = Node::start(false);
    refused(&client, id.trust().with_server_name("example.com"), &wss(addr, "/"));
    assert_logged(&addr.to_string(), &["certificate", "name"]);
    server.quiet();
    still_serves(&server, id.trust(), &wss(addr, "/"));
    // The same client node connects fine afterwards.
    let ep = client.connect(id.trust(), &wss(addr, "/"));
    assert!(client.connected(ep));
}

#[test]
fn refused_untrusted_certificate() {
    let id = identity(&["127.0.0.1"]);
    let other = identity(&["127.0.0.1"]);
    let (server, addr) = Node::server(id.listen());
    let client = Node::start(false);
    // No root added: the webpki roots do not know a self-signed certificate.
    refused(&client, WsConnectConfig::default(), &wss(addr, "/"));
    // Another self-signed root for the same name.
    refused(&client, other.trust(), &wss(addr, "/"));
    assert_logged(&addr.to_string(), &["certificate", "issuer"]);
    server.quiet();
    still_serves(&server, id.trust(), &wss(addr, "/"));
}

#[test]
fn refused_plain_client_to_tls_server() {
    let id = identity(&["127.0.0.1"]);
    let (server, addr) = Node::server(id.listen());
    let client = Node::start(false);
    refused(&client, WsConnectConfig::default(), &ws(addr, "/"));
    // A bare socket address is plain ws:// too.
    let ep = client.handler.network().connect(Transport::Ws, addr).unwrap().0;
    assert!(!client.connected(ep));
    assert_logged(&addr.to_string(), &["connect to", "handshake"]);
    server.quiet();
    still_serves(&server, id.trust(), &wss(addr, "/"));
}

#[test]
fn refused_tls_client_to_plain_server() {
    let id = identity(&["127.0.0.1"]);
    let (server, addr) = Node::server(WsListenConfig::default());
    let client = Node::start(false);
    refused(&client, id.trust(), &wss(addr, "/"));
    assert_logged(&addr.to_string(), &["connect to"]);
    server.quiet();
    still_serves(&server, WsConnectConfig::default(), &ws(addr, "/"));
}

/// A peer that accepts TCP and never answers: the TLS (or WebSocket) handshake times out.
#[test]
fn refused_handshake_timeout() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap(); // the backlog accepts; nobody reads
    let addr = silent.local_addr().unwrap();
    let client = Node::start(false);
    let timeout = Duration::from_millis(300);
    for url in [wss(addr, "/"), ws(addr, "/")] {
        let start = Instant::now();
        let config = WsConnectConfig::default().with_connect_timeout(timeout);
        refused(&client, config, &url);
        let took = start.elapsed();
        assert!(took >= timeout - Duration::from_millis(20), "{url}: gave up after {took:?}");
        assert!(took < Duration::from_secs(3), "{url}: gave up only after {took:?}");
    }
    assert_logged(&addr.to_string(), &["timed out"]);

    // connect_sync_with: an error after the timeout.
    let start = Instant::now();
    let config = WsConnectConfig::default().with_connect_timeout(timeout).into();
    let err = client.handler.network().connect_sync_with(config, wss(addr, "/")).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    client.quiet();

    // The client node still connects elsewhere.
    let id = identity(&["127.0.0.1"]);
    let (server, good) = Node::server(id.listen());
    still_serves(&server, id.trust(), &wss(good, "/"));
    drop(silent);
}

/// Clients that open TCP to the TLS server and stall (nothing sent, or half a ClientHello)
/// do not hold up the others.
#[test]
fn stalled_handshakes_do_not_block_the_server() {
    let _abort = AbortAfter::start("stalled_handshakes_do_not_block_the_server", WAIT * 2);
    let id = identity(&["127.0.0.1"]);
    let (server, addr) = Node::server(id.listen());
    let silent = TcpStream::connect(addr).unwrap();
    let mut half = TcpStream::connect(addr).unwrap();
    // The first bytes of a TLS record header announcing a handshake record of 512 bytes.
    std::io::Write::write_all(&mut half, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
    for _ in 0..3 {
        still_serves(&server, id.trust(), &wss(addr, "/"));
    }
    drop((silent, half));
    server.quiet();
}

// ---------------------------------------------------------------------------------------------
// Bad identities and roots: errors from listen_with / connect_with, never panics.

#[test]
fn bad_identity_is_a_listen_error() {
    let id = identity(&["127.0.0.1"]);
    let other = identity(&["127.0.0.1"]);
    let (handler, _listener) = node::split::<()>();
    let network = handler.network();
    let garbage_pem = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n";
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("empty chain", vec![], id.key_pem.clone().into()),
        ("empty key", id.cert_pem.clone().into(), vec![]),
        ("garbage PEM chain", garbage_pem.into(), id.key_pem.clone().into()),
        ("garbage DER chain", b"\x30\x03\x01\x01".to_vec(), id.key_der.clone()),
        ("text chain", b"hello".to_vec(), id.key_pem.clone().into()),
        ("key as chain", id.key_pem.clone().into(), id.key_pem.clone().into()),
        ("chain as key", id.cert_pem.clone().into(), id.cert_pem.clone().into()),
        ("garbage DER key", id.cert_der.clone(), b"\x30\x03\x02\x01\x00".to_vec()),
        (
            "garbage PEM key",
            id.cert_pem.clone().into(),
            garbage_pem.replace("CERTIFICATE", "PRIVATE KEY").into(),
        ),
        ("another certificate's key", id.cert_pem.clone().into(), other.key_pem.clone().into()),
    ];
    for (what, chain, key) in cases {
        let config = WsListenConfig::default().with_tls(chain, key);
        let err = network
            .listen_with(config.into(), "127.0.0.1:0")
            .expect_err(&format!("{what}: listen_with accepted it"));
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{what}: {err}");
        assert!(err.to_string().contains("TLS"), "{what}: unclear error: {err}");
    }
    // The node still listens with a good identity.
    network.listen_with(id.listen().into(), "127.0.0.1:0").unwrap();
}

#[test]
fn bad_root_certificate_is_a_connect_error() {
    let id = identity(&["127.0.0.1"]);
    let (server, addr) = Node::server(id.listen());
    let client = Node::start(false);
    let garbage_pem = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("garbage PEM", garbage_pem.into()),
        ("garbage DER", b"\x30\x03\x01\x01\xff".to_vec()),
        ("plain text", b"not a certificate".to_vec()),
        ("a private key", id.key_pem.clone().into()),
    ];
    for (what, root) in cases {
        let config = WsConnectConfig::default().with_root_certificate(root);
        let err = client
            .handler
            .network()
            .connect_with(config.into(), wss(addr, "/"))
            .expect_err(&format!("{what}: connect_with accepted the root"));
        assert!(err.to_string().contains("certificate"), "{what}: unclear error: {err}");
    }
    // A server name that is no name.
    let config = id.trust().with_server_name("not a name!");
    client.handler.network().connect_with(config.into(), wss(addr, "/")).unwrap_err();
    // Nothing was reported for the failed connects, and a good one works.
    client.quiet();
    server.quiet();
    let ep = client.connect(id.trust(), &wss(addr, "/"));
    assert!(client.connected(ep));
    server.accepted();
}

// ---------------------------------------------------------------------------------------------
// Interop: a plain tungstenite client over rustls against the portnet wss server.

fn rustls_client(root: &Identity, addr: SocketAddr, name: &'static str) -> TlsWebSocket {
    rustls_client_with(root, addr, name, rustls::DEFAULT_VERSIONS)
}

fn rustls_client_with(
    root: &Identity,
    addr: SocketAddr,
    name: &'static str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> TlsWebSocket {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from(root.cert_der.clone())).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = rustls::pki_types::ServerName::try_from(name).unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), server_name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    tcp.set_write_timeout(Some(WAIT)).unwrap();
    let stream = rustls::StreamOwned::new(connection, tcp);
    let url = format!("wss://{name}:{}/interop", addr.port());
    let (socket, response) = tungstenite::client(url.as_str(), stream)
        .unwrap_or_else(|e| panic!("tungstenite + rustls handshake with portnet: {e}"));
    assert_eq!(response.status(), 101);
    socket
}

type TlsWebSocket =
    tungstenite::WebSocket<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>;

#[test]
fn interop_tungstenite_rustls_client() {
    let _abort = AbortAfter::start("interop_tungstenite_rustls_client", WAIT * 3);
    let id = identity(&["localhost", "127.0.0.1"]);
    let (server, addr) = Node::server(id.listen());
    let tls12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
    for (name, versions) in [
        ("localhost", rustls::DEFAULT_VERSIONS),
        ("127.0.0.1", rustls::DEFAULT_VERSIONS),
        ("localhost", tls12), // older clients
    ] {
        let mut socket = rustls_client_with(&id, addr, name, versions);
        let (server_ep, handshake) = server.accepted();
        assert_eq!(handshake.unwrap().path, "/interop");

        let binary = payload(5, 100_000);
        socket.send(tungstenite::Message::binary(binary.clone())).unwrap();
        assert_eq!(server.message(server_ep), (MessageKind::Binary, binary.clone()));
        match socket.read().unwrap() {
            tungstenite::Message::Binary(data) => assert!(data == binary, "binary echo differs"),
            other => panic!("expected the binary echo, got {other:?}"),
        }

        socket.send(tungstenite::Message::text("über wss")).unwrap();
        assert_eq!(server.message(server_ep), (MessageKind::Text, "über wss".as_bytes().to_vec()));
        match socket.read().unwrap() {
            tungstenite::Message::Text(text) => assert_eq!(text.as_str(), "über wss"),
            other => panic!("expected the text echo, got {other:?}"),
        }

        // A close code and reason reach the server over TLS too.
        let frame = tungstenite::protocol::CloseFrame {
            code: tungstenite::protocol::frame::coding::CloseCode::from(4001),
            reason: "done".into(),
        };
        socket.close(Some(frame)).unwrap();
        let close = server.disconnected(server_ep);
        assert_eq!(close, Some(WsClose { code: 4001, reason: "done".into() }));
        // The server answered the Close frame before closing.
        let mut answered = false;
        let mut end = None;
        for _ in 0..10 {
            match socket.read() {
                Ok(tungstenite::Message::Close(_)) => answered = true,
                Ok(_) => (),
                Err(e) => {
                    end = Some(e);
                    break;
                }
            }
        }
        assert!(answered, "the server did not answer the Close frame");
        // A clean end: the TLS session closed with close_notify (RFC 8446 section 6.1), not
        // a truncation that a TLS client must treat as a possible attack.
        assert!(
            matches!(end, Some(tungstenite::Error::ConnectionClosed)),
            "the connection did not end cleanly: {end:?}"
        );
    }
    server.quiet();
}

/// `remove` right after sends: the queued messages are still written (documented), over TLS
/// too, where part of them may wait in rustls' buffer rather than in the socket.
#[test]
fn wss_remove_after_send_delivers_the_messages() {
    let id = identity(&["127.0.0.1"]);
    let (server, addr) = Node::server(id.listen().with_send_queue_limit(usize::MAX));
    let client = Node::start(false);
    let mut pairs = Vec::new();
    for _ in 0..3 {
        let ep = client.connect(id.trust(), &wss(addr, "/"));
        assert!(client.connected(ep));
        let (server_ep, _) = server.accepted();
        pairs.push((ep, server_ep));
    }
    let messages: Vec<Vec<u8>> = (0..4).map(|i| payload(i, 2 * MIB)).collect();
    for &(_, server_ep) in &pairs {
        for message in &messages {
            assert_eq!(server.handler.network().send(server_ep, message), SendStatus::Sent);
        }
        assert!(server.handler.network().remove(server_ep.resource_id()));
    }
    let mut received = std::collections::HashMap::new();
    let mut closed = 0;
    while closed < pairs.len() {
        match client.next("the messages sent before remove") {
            Seen::Message(ep, MessageKind::Binary, data) => {
                let index = received.entry(ep).or_insert(0usize);
                assert!(data == messages[*index], "message {index} to {ep} differs");
                *index += 1;
            }
            Seen::Disconnected(ep, close) => {
                let got = received.get(&ep).copied().unwrap_or(0);
                assert_eq!(got, messages.len(), "{ep} disconnected after {got} messages");
                // The server's Close frame says a normal closure.
                assert_eq!(close, Some(WsClose { code: 1000, reason: String::new() }));
                closed += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// An echo server whose client sends a lot before reading: the echoes wait (socket and TLS
/// buffer full) while more messages arrive, and every one must still come back.
#[test]
fn wss_echo_while_the_peer_is_not_reading() {
    let _abort = AbortAfter::start("wss_echo_while_the_peer_is_not_reading", WAIT * 3);
    let id = identity(&["localhost"]);
    let (server, addr) = Node::server(id.listen().with_send_queue_limit(usize::MAX));
    let mut socket = rustls_client(&id, addr, "localhost");
    let (server_ep, _) = server.accepted();
    let messages: Vec<Vec<u8>> = (0..48).map(|i| payload(i, 256 * 1024)).collect();
    for message in &messages {
        socket.send(tungstenite::Message::binary(message.clone())).unwrap();
    }
    for (i, message) in messages.iter().enumerate() {
        match server.next("the client's messages") {
            Seen::Message(ep, MessageKind::Binary, data) if ep == server_ep => {
                assert!(data == *message, "message {i} differs")
            }
            Seen::EchoFailed(_, status) => {
                let why = logged(&[&server_ep.to_string()]);
                panic!("the echo of message {i} failed: {status:?}; {why:?}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    for (i, message) in messages.iter().enumerate() {
        match socket.read() {
            Ok(tungstenite::Message::Binary(data)) => assert!(data == *message, "echo {i} differs"),
            other => panic!("echo {i}: {other:?}"),
        }
    }
    server.quiet();
}
