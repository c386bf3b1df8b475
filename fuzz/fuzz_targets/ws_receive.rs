//! The WebSocket receive path of a native portnet server, fed arbitrary bytes after a valid
//! handshake, over a real loopback socket (the receive path is not reachable from outside the
//! crate any other way).
//!
//! One echo server node (`Transport::Ws`, `node::split`) and one well-behaved tungstenite
//! client live across iterations. Per input: a raw TCP client connects, completes a valid
//! handshake, sends the input's bytes (mode 0: as they are; mode 1: as WebSocket frames built
//! from the input, masked or not, with any opcode, flags and length encoding), closes its
//! write half and reads until the server closes the connection. Then:
//! - the server closed the bad connection (it did not keep it open after the peer left);
//! - the server still echoes the well-behaved client's next message, intact;
//! - the server saw, per endpoint, `Accepted` first, then `Message`s, then at most one
//!   `Disconnected`; the raw connection is no longer open on the server (no leak).
//!
//! A panic anywhere (the server's thread included) aborts the process: libFuzzer reports it.

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use portnet::network::{NetEvent, ResourceId, Transport};
use portnet::node::{self, NodeEvent};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

/// How long the raw connection may stay open after the client closed its half.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Seen {
    /// Endpoints accepted and not yet disconnected.
    open: BTreeSet<ResourceId>,
    /// Endpoints that disconnected.
    closed: BTreeSet<ResourceId>,
    messages: u64,
}

struct Fixture {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    client: Mutex<(WebSocket<TcpStream>, u64)>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let (handler, listener) = node::split::<()>();
        let (_, addr) = handler.network().listen(Transport::Ws, "127.0.0.1:0").unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let server_seen = seen.clone();
        std::thread::spawn(move || {
            listener.for_each(move |event| {
                let NodeEvent::Network(event) = event else { return };
                let mut seen = server_seen.lock().unwrap();
                match event {
                    NetEvent::Accepted(endpoint, _) => {
                        let id = endpoint.resource_id();
                        assert!(!seen.closed.contains(&id), "Accepted after Disconnected");
                        assert!(seen.open.insert(id), "Accepted twice for {endpoint}");
                    }
                    NetEvent::Message(endpoint, data) => {
                        let id = endpoint.resource_id();
                        assert!(seen.open.contains(&id), "Message outside Accepted..Disconnected");
                        seen.messages += 1;
                        handler.network().send(endpoint, data);
                    }
                    NetEvent::Disconnected(endpoint) => {
                        let id = endpoint.resource_id();
                        assert!(seen.open.remove(&id), "Disconnected without Accepted: {endpoint}");
                        seen.closed.insert(id);
                    }
                    NetEvent::Connected(..) => panic!("the server connects to no one"),
                }
            });
        });
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.set_nodelay(true).unwrap();
        let url = format!("ws://{addr}/message-io-default");
        let (client, _) = tungstenite::client(url, stream).expect("the well-behaved handshake");
        Fixture { addr, seen, client: Mutex::new((client, 0)) }
    })
}

/// Builds WebSocket frames from the input: any opcode and flags, masked or not, any length
/// encoding (also non-minimal ones), payloads from the input.
fn frames(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    while !u.is_empty() && out.len() < 8192 {
        let head: u8 = u.arbitrary()?;
        let shape: u8 = u.arbitrary()?;
        let len = usize::from(u.arbitrary::<u8>()?);
        let payload = u.bytes(len.min(u.len()))?;
        out.push(head);
        let mask_bit = if shape & 1 == 0 { 0x80 } else { 0 }; // mostly masked, as clients must
        match (shape >> 1) & 3 {
            0 | 1 if payload.len() < 126 => out.push(mask_bit | payload.len() as u8),
            2 => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            }
            _ => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
            }
        }
        let key = [shape, len as u8, 0x5a, 0xa5];
        if mask_bit != 0 {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            out.extend_from_slice(payload);
        }
    }
    Ok(out)
}

fn handshake(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect to the server");
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(CLOSE_WITHIN)).unwrap();
    let request = format!(
        "GET /message-io-default HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    // Read the response up to its blank line, one byte at a time (frames may follow it).
    let mut response = Vec::new();
    let mut byte = [0];
    while !response.ends_with(b"\r\n\r\n") {
        // libFuzzer's timer signal can interrupt a blocking read: read again.
        let n = match stream.read(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            read => read.expect("the handshake response"),
        };
        assert_eq!(n, 1, "the server closed during the handshake: {response:?}");
        response.push(byte[0]);
        assert!(response.len() < 4096, "an endless handshake response");
    }
    assert!(
        response.starts_with(b"HTTP/1.1 101"),
        "handshake refused: {}",
        String::from_utf8_lossy(&response)
    );
    stream
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let bytes = match data.split_first() {
        Some((mode, rest)) if mode % 2 == 1 => {
            frames(&mut Unstructured::new(rest)).unwrap_or_default()
        }
        Some((_, rest)) => rest.to_vec(),
        None => Vec::new(),
    };

    // The hostile connection: valid handshake, then the input.
    let mut raw = handshake(fixture.addr);
    let _ = raw.write_all(&bytes); // the server may close it half-way: that is fine
    let _ = raw.shutdown(Shutdown::Write);
    let started = Instant::now();
    let mut sink = [0; 4096];
    loop {
        match raw.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => (),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => (),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                ) =>
            {
                break;
            }
            Err(e) => panic!("the server kept a closed peer's connection open: {e}"),
        }
        assert!(
            started.elapsed() < CLOSE_WITHIN,
            "the server kept a closed peer's connection open"
        );
    }
    drop(raw);

    // The well-behaved client is still served.
    let mut guard = fixture.client.lock().unwrap();
    let (client, counter) = &mut *guard;
    *counter += 1;
    let payload = format!("well-behaved #{counter}").into_bytes();
    let interrupted = |e: &tungstenite::Error| matches!(e, tungstenite::Error::Io(e) if e.kind() == std::io::ErrorKind::Interrupted);
    match client.send(Message::binary(payload.clone())) {
        // Queued in tungstenite: the flush is what the signal interrupted.
        Err(e) if interrupted(&e) => loop {
            match client.flush() {
                Err(e) if interrupted(&e) => continue,
                flushed => break flushed.expect("the well-behaved client sends"),
            }
        },
        sent => sent.expect("the well-behaved client sends"),
    }
    loop {
        let message = match client.read() {
            Err(e) if interrupted(&e) => continue,
            read => read.expect("the server still serves the well-behaved client"),
        };
        match message {
            Message::Binary(echo) => {
                assert_eq!(&echo[..], &payload[..], "the echo is intact");
                break;
            }
            Message::Ping(_) | Message::Pong(_) => (),
            other => panic!("unexpected message to the well-behaved client: {other:?}"),
        }
    }
    // By now the server handled the raw connection's end (it closed the socket and reported
    // Disconnected in the same turn, before reading the echo request): only the well-behaved
    // client is open.
    let seen = fixture.seen.lock().unwrap();
    assert_eq!(seen.open.len(), 1, "connections left open on the server: {:?}", seen.open);
});
