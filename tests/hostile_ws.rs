//! Hostile WebSocket peers on loopback: slowloris WebSocket handshakes (hundreds at once), and
//! malformed WebSocket handshakes and frames (the other hostile peers are in
//! tests/hostile_peers.rs).
//!
//! Every test runs one echo server node (Ws, FramedTcp, Tcp and Udp listeners) and a
//! well-behaved client made of plain blocking sockets, which must keep getting its echoes while
//! the attack goes on (both in tests/util/hostile.rs). Each test checks that the bad connection
//! ends (the server's `Disconnected`, or the attacker's socket reaching its end), that the
//! server logged why (the logs are captured by a small `log::Log`), and that memory stays
//! bounded (resident set from `/proc/self/statm`, which is why the tests of this file run one
//! at a time). Figures are printed; run with `--nocapture` to see them (docs/reliability.md
//! lists them).
#![cfg(target_os = "linux")]

mod util;

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};
use util::AbortAfter;
use util::hostile::*;

// ---------------------------------------------------------------------------------------------
// Slowloris

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Loris {
    /// Connects and sends nothing.
    Silent,
    /// Sends most of a request and never the blank line that ends it.
    Partial,
    /// Sends one byte more of a never-ending request after each round of the good client.
    Drip,
    /// Sends a header that goes on past 64 KiB.
    Huge,
}

#[test]
fn ws_slowloris_handshakes_are_dropped() {
    let _serial = serial();
    let _abort = AbortAfter::start("ws_slowloris_handshakes_are_dropped", Duration::from_secs(120));
    let mut server = Server::start();
    let mut good = Good::connect(&server);
    good.round();
    let (rss_before, fds_before) = (rss(), open_fds());
    let started = Instant::now();

    let plan = [(Loris::Silent, 200), (Loris::Partial, 200), (Loris::Drip, 100), (Loris::Huge, 4)];
    let request = ws_request(server.ws);
    let partial = &request[..request.len() - 2];
    let drip = format!("GET {PATH} HTTP/1.1\r\nHost: {}\r\nX-Pad: ", server.ws).into_bytes();
    let mut attackers = Vec::new();
    for (kind, count) in plan {
        for _ in 0..count {
            let mut stream = connect(server.ws);
            match kind {
                Loris::Silent | Loris::Drip => (),
                Loris::Partial => stream.write_all(partial.as_bytes()).unwrap(),
                Loris::Huge => {
                    let mut huge = format!("GET {PATH} HTTP/1.1\r\nX-Long: ").into_bytes();
                    huge.resize(70 * 1024, b'a');
                    // The server may close before taking it all.
                    let _ = stream.write_all(&huge);
                }
            }
            stream.set_nonblocking(true).unwrap();
            let addr = stream.local_addr().unwrap();
            attackers.push((kind, addr, Some(stream), 0usize));
        }
    }
    let total = attackers.len();
    let mut rss_peak = rss();

    // The good client goes on while the attackers are open; between rounds it waits (at most
    // 100 ms) for the oldest open attacker to be closed by the server.
    let limit = Instant::now() + Duration::from_secs(60);
    let mut open = total;
    // Where the new clients came from: once an attacker is closed, the kernel may give its port
    // to one of them, and that client is (rightly) reported.
    let mut fresh_clients = Vec::new();
    while open > 0 {
        assert!(Instant::now() < limit, "{open} of {total} slowloris connections still open");
        good.round();
        rss_peak = rss_peak.max(rss());
        if good.rounds % 10 == 0 {
            // A new client's handshake goes through while the attackers' wait.
            let url = format!("ws://{}{PATH}", server.ws);
            let stream = connect(server.ws);
            fresh_clients.push(stream.local_addr().unwrap());
            let (mut fresh, _) = tungstenite::client(url, stream)
                .expect("a new Ws client is refused during the attack");
            fresh.send(tungstenite::Message::binary(&b"fresh"[..])).unwrap();
            assert_eq!(fresh.read().unwrap(), tungstenite::Message::binary(&b"fresh"[..]));
        }
        let mut buf = [0; 1024];
        for (kind, _, stream, sent) in attackers.iter_mut() {
            let Some(s) = stream else { continue };
            if *kind == Loris::Drip {
                let byte = drip.get(*sent).copied().unwrap_or(b'a');
                if s.write(&[byte]).is_ok() {
                    *sent += 1;
                }
            }
        }
        let oldest = attackers.iter().position(|a| a.2.is_some()).unwrap();
        if let Some(s) = &attackers[oldest].2 {
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        }
        for (i, (_, _, stream, _)) in attackers.iter_mut().enumerate() {
            let Some(s) = stream else { continue };
            let closed = match s.read(&mut buf) {
                Ok(0) => true,
                Ok(_) => false, // an error response, the end follows
                Err(e) => !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ),
            };
            if i == oldest {
                s.set_nonblocking(true).unwrap();
            }
            if closed {
                *stream = None;
                open -= 1;
            }
        }
    }
    let lasted = started.elapsed();
    // Handshake errors close the socket before portnet logs them: one more round and the
    // server is past the logging.
    good.round();
    let fds_after = open_fds();

    // Why each one ended, by kind.
    let mut reasons: BTreeMap<(Loris, String), usize> = BTreeMap::new();
    for (kind, addr, _, _) in &attackers {
        let reused = fresh_clients.iter().filter(|fresh| *fresh == addr).count();
        assert_eq!(
            server.ws_accepted_from(*addr),
            reused,
            "{kind:?} attacker {addr} was reported to the app ({reused} later clients had its port)"
        );
        let line = reason(*addr, "WebSocket handshake from");
        let why = if line.contains("timed out") {
            "timed out".to_owned()
        } else {
            line.rsplit(": ").next().unwrap().to_owned()
        };
        if matches!(kind, Loris::Silent | Loris::Partial) {
            assert_eq!(why, "timed out", "{kind:?} {addr}: {line}");
        }
        if *kind == Loris::Huge {
            assert_ne!(why, "timed out", "a 70 KiB header must be refused at once: {line}");
        }
        *reasons.entry((*kind, why)).or_default() += 1;
    }
    good.round();
    let rss_after = rss();
    println!("slowloris: {total} connections, all closed by the server after {lasted:.1?}");
    println!("  reasons: {reasons:?}");
    println!(
        "  good client: {} echo rounds (FramedTcp + Ws) during the attack; {} new Ws \
         clients handshaked and got their echo meanwhile",
        good.rounds,
        fresh_clients.len()
    );
    println!(
        "  rss: before {:.1} MiB, peak {:.1} MiB (+{:.0} KiB per connection), after {:.1} MiB",
        mib(rss_before),
        mib(rss_peak),
        (rss_peak.saturating_sub(rss_before)) as f64 / 1024.0 / total as f64,
        mib(rss_after)
    );
    println!("  fds: before {fds_before}, after {fds_after} (attackers' own sockets still open)");
    // Each open attacker holds two descriptors here: its own socket and the server's. Once the
    // server has dropped them, only the attackers' own remain.
    assert!(fds_after <= fds_before + total, "the server kept descriptors: {fds_after}");
    drop(attackers);
    assert!(open_fds() <= fds_before, "descriptors leaked: {} > {fds_before}", open_fds());
    assert!(rss_peak - rss_before < 64 << 20, "memory grew by {} MiB", mib(rss_peak - rss_before));
}

// ---------------------------------------------------------------------------------------------
// Malformed WebSocket handshakes and frames

#[test]
fn malformed_ws_handshakes_are_dropped() {
    let _serial = serial();
    let _abort = AbortAfter::start("malformed_ws_handshakes_are_dropped", Duration::from_secs(120));
    let mut server = Server::start();
    let mut good = Good::connect(&server);
    let host = server.ws;
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let many_headers: String = (0..200).map(|i| format!("X-{i}: {i}\r\n")).collect();
    let mut garbage = vec![0u8; 4096];
    for (i, b) in garbage.iter_mut().enumerate() {
        *b = (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0];
    }
    garbage.extend_from_slice(b"\r\n\r\n");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a TLS ClientHello on a plain port", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".repeat(8)),
        ("binary garbage ending in CRLFCRLF", garbage),
        ("plain HTTP GET, no upgrade", format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()),
        ("POST with upgrade headers", format!("POST {PATH} HTTP/1.1\r\nHost: {host}\r\n{upgrade}Sec-WebSocket-Version: 13\r\n\r\n").into_bytes()),
        ("HTTP/1.0", format!("GET {PATH} HTTP/1.0\r\nHost: {host}\r\n{upgrade}Sec-WebSocket-Version: 13\r\n\r\n").into_bytes()),
        ("WebSocket version 8", format!("GET {PATH} HTTP/1.1\r\nHost: {host}\r\n{upgrade}Sec-WebSocket-Version: 8\r\n\r\n").into_bytes()),
        ("no Sec-WebSocket-Key", format!("GET {PATH} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n").into_bytes()),
        ("200 headers", format!("GET {PATH} HTTP/1.1\r\n{many_headers}{upgrade}Sec-WebSocket-Version: 13\r\n\r\n").into_bytes()),
        ("a header line without a colon", format!("GET {PATH} HTTP/1.1\r\nnonsense\r\n\r\n").into_bytes()),
        ("NUL bytes in the request line", b"GET /\0\0\0 HTTP/1.1\r\n\r\n".to_vec()),
        ("closed half-way through the request", ws_request(host).as_bytes()[..40].to_vec()),
    ];
    let count = cases.len();
    for (name, bytes) in cases {
        let mut stream = connect(server.ws);
        let addr = stream.local_addr().unwrap();
        let _ = stream.write_all(&bytes);
        if name.starts_with("closed") {
            stream.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let answered = wait_closed(&mut stream, name);
        // tungstenite drops the socket before portnet logs why: the log line is there once
        // the event loop has answered the good client's next round.
        good.round();
        let line = reason(addr, "WebSocket handshake from");
        assert!(!server.reported(addr), "{name}: reported to the application");
        println!("ws handshake, {name}: closed ({answered} bytes answered); log: {line}");
    }
    println!("malformed handshakes: {count} refused, good client {} rounds", good.rounds);
}

#[test]
fn malformed_ws_frames_end_the_connection() {
    let _serial = serial();
    let _abort =
        AbortAfter::start("malformed_ws_frames_end_the_connection", Duration::from_secs(120));
    let mut server = Server::start();
    let mut good = Good::connect(&server);
    let rss_before = rss();
    let mut oversize_len = vec![0x82, 0x80 | 127];
    oversize_len.extend_from_slice(&(1u64 << 40).to_be_bytes());
    oversize_len.extend_from_slice(&[1, 2, 3, 4]);
    let mut top_bit_len = vec![0x82, 0x80 | 127];
    top_bit_len.extend_from_slice(&(1u64 << 63).to_be_bytes());
    top_bit_len.extend_from_slice(&[1, 2, 3, 4]);
    // A message over the 1 MiB limit in frames that are each under it.
    let mut fragmented_over_limit = ws_frame(0x02, &vec![7; 700 * 1024]);
    fragmented_over_limit.extend(ws_frame(0x80, &vec![7; 700 * 1024]));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("reserved data opcode 0x3", ws_frame(0x83, b"x")),
        ("reserved control opcode 0xB", ws_frame(0x8b, b"")),
        ("RSV1 set without an extension", ws_frame(0xc2, b"abc")),
        ("RSV2+RSV3 set", ws_frame(0xb2, b"abc")),
        ("unmasked client frame", vec![0x82, 0x03, b'a', b'b', b'c']),
        ("frame announcing 2^40 bytes", oversize_len),
        ("64-bit length with the top bit set", top_bit_len),
        ("frame of 1 MiB + 1 (over the limit)", ws_frame(0x82, &vec![1; MAX_WS_MESSAGE + 1])),
        ("message over the limit in two frames", fragmented_over_limit),
        ("ping with 126 bytes", ws_frame(0x89, &[0; 126])),
        ("fragmented ping", ws_frame(0x09, b"p")),
        ("continuation with nothing to continue", ws_frame(0x80, b"c")),
        (
            "new message inside a fragmented one",
            [ws_frame(0x02, b"a"), ws_frame(0x82, b"b")].concat(),
        ),
        ("text frame with invalid UTF-8", ws_frame(0x81, &[0xff, 0xfe, 0xfd])),
        ("close frame with code 999", ws_frame(0x88, &999u16.to_be_bytes())),
        ("close frame with a 1-byte body", ws_frame(0x88, &[3])),
    ];
    let count = cases.len();
    for (name, bytes) in cases {
        let mut stream = raw_ws(server.ws);
        let addr = stream.local_addr().unwrap();
        let endpoint = server.accepted(addr);
        // The server may close before taking all of a big frame.
        let _ = stream.write_all(&bytes);
        server.disconnected(endpoint);
        let answered = wait_closed(&mut stream, name);
        assert_eq!(server.messages_from(endpoint), 0, "{name}: delivered to the application");
        let line = reason(addr, "disconnected");
        println!("ws frame, {name}: Disconnected ({answered} bytes answered); log: {line}");
        good.round();
    }
    let rss_after = rss();
    println!(
        "malformed frames: {count} connections ended, good client {} rounds, rss {:.1} -> {:.1} MiB",
        good.rounds,
        mib(rss_before),
        mib(rss_after)
    );
    assert!(rss_after.saturating_sub(rss_before) < 32 << 20, "memory grew");
}
