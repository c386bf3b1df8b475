//! One test per message-io defect that portnet must not have (issue 2), on native loopback.

mod util;

use portnet::adapters::framed_tcp::FramedTcpConnectConfig;
use portnet::adapters::tcp::TcpConnectConfig;
use portnet::network::{Endpoint, NetEvent, SendStatus, Transport, TransportConnect};
use portnet::node::{self, NodeEvent, StoredNodeEvent};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;
use util::{Watchdog, send_all};

const RECORD: usize = 64 * 1024;
const RECORDS_PER_THREAD: u32 = 300;

fn record(thread: u8, index: u32) -> Vec<u8> {
    let mut data = vec![thread; RECORD];
    data[1..5].copy_from_slice(&index.to_le_bytes());
    data
}

/// Checks a record is whole: one thread's byte throughout, and that thread's next index.
fn check_record(data: &[u8], next: &mut [u32; 2]) {
    let thread = data[0];
    assert!(thread < 2, "record starts with {thread}: bytes interleaved");
    let index = u32::from_le_bytes(data[1..5].try_into().unwrap());
    assert_eq!(index, next[thread as usize], "thread {thread}'s records out of order");
    assert!(data[5..].iter().all(|&b| b == thread), "record {index} of thread {thread} mixed");
    next[thread as usize] += 1;
}

/// message-io wrote from the caller's thread without a lock: two threads sending to one
/// stream endpoint interleaved their bytes.
fn two_threads_one_endpoint(transport: Transport) {
    let (server, server_listener) = node::split::<()>();
    let watchdog = Watchdog::new(&server);
    let (_, addr) = server.network().listen(transport, "127.0.0.1:0").unwrap();

    let (client, client_listener) = node::split::<()>();
    let config = match transport {
        Transport::Tcp => TransportConnect::Tcp(TcpConnectConfig::default()),
        _ => TransportConnect::FramedTcp(FramedTcpConnectConfig::default()),
    };
    let (endpoint, _) = client.network().connect_sync_with(config, addr).unwrap();
    let client_task = client_listener.for_each_async(|_| ());
    let senders: Vec<_> = (0..2u8)
        .map(|thread| {
            let client = client.clone();
            std::thread::spawn(move || {
                for index in 0..RECORDS_PER_THREAD {
                    send_all(&client, endpoint, &record(thread, index));
                }
            })
        })
        .collect();

    let mut next = [0u32; 2];
    let mut stream = Vec::new();
    server_listener.for_each(|event| {
        if let NodeEvent::Network(NetEvent::Message(_, data)) = event {
            if transport == Transport::Tcp {
                stream.extend_from_slice(data);
                let whole = stream.len() / RECORD * RECORD;
                for chunk in stream[..whole].chunks(RECORD) {
                    check_record(chunk, &mut next);
                }
                stream.drain(..whole);
            } else {
                assert_eq!(data.len(), RECORD);
                check_record(data, &mut next);
            }
            if next == [RECORDS_PER_THREAD; 2] {
                server.stop();
            }
        }
    });
    watchdog.check(&format!("{transport}: records received {next:?}"));
    for sender in senders {
        sender.join().unwrap();
    }
    client.stop();
    drop(client_task);
}

#[test]
fn two_threads_sending_to_one_framed_tcp_endpoint_do_not_interleave() {
    two_threads_one_endpoint(Transport::FramedTcp);
}

#[test]
fn two_threads_sending_to_one_tcp_endpoint_do_not_interleave() {
    two_threads_one_endpoint(Transport::Tcp);
}

/// message-io busy-spun inside `send` while the peer did not read, blocking the event thread.
/// portnet queues up to a limit, answers `QueueFull`, and signals when the queue drains.
#[test]
fn slow_peer_fills_a_bounded_queue_and_send_never_blocks() {
    const LIMIT: usize = 1 << 20;
    const MESSAGES: u32 = 400; // 25 MiB in all: far more than the queue and socket buffers.
    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = peer.local_addr().unwrap();
    let (go_read, read_now) = mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let (mut socket, _) = peer.accept().unwrap();
        read_now.recv().unwrap(); // not a byte read until the queue is full
        let mut decoder = portnet::util::encoding::Decoder::default();
        let mut next = 0u32;
        let mut buf = vec![0; 1 << 16];
        while next < MESSAGES {
            let n = socket.read(&mut buf).unwrap();
            assert!(n > 0, "closed after {next} messages");
            decoder
                .decode(&buf[..n], |frame| {
                    assert_eq!(util::check_payload(frame), next);
                    next += 1;
                })
                .unwrap();
        }
    });

    let (handler, listener) = node::split::<&str>();
    let watchdog = Watchdog::new(&handler);
    let config = FramedTcpConnectConfig::default().with_send_queue_limit(LIMIT);
    let (endpoint, _) =
        handler.network().connect_sync_with(TransportConnect::FramedTcp(config), addr).unwrap();

    let mut next = 0u32;
    let mut accepted_before_full = None;
    let send_until_full = |next: &mut u32| -> bool {
        while *next < MESSAGES {
            match handler.network().send(endpoint, &util::payload(*next, RECORD)) {
                SendStatus::Sent => *next += 1,
                SendStatus::QueueFull => return false,
                status => panic!("send: {status:?}"),
            }
        }
        true
    };
    assert!(!send_until_full(&mut next), "the queue never filled");
    accepted_before_full.get_or_insert(next);
    handler.signal_when_writable(endpoint, "drained");
    go_read.send(()).unwrap();
    listener.for_each(|event| match event {
        NodeEvent::Signal("drained") => {
            if send_until_full(&mut next) {
                handler.stop();
            } else {
                handler.signal_when_writable(endpoint, "drained");
            }
        }
        NodeEvent::Network(NetEvent::Connected(..)) => (),
        other => panic!("unexpected {other:?}"),
    });
    watchdog.check(&format!("sent {next} of {MESSAGES}"));
    reader.join().unwrap();
    // Queue limit + kernel socket buffers (a few MiB on loopback) bound what was accepted.
    let accepted = accepted_before_full.unwrap() as usize * RECORD;
    assert!(accepted <= LIMIT + 16 * (1 << 20), "{accepted} bytes accepted before QueueFull");
}

/// message-io had no maximum frame size: a peer announcing 2^40 bytes made it buffer without
/// limit. portnet closes that connection, and keeps serving the others.
#[test]
fn huge_or_endless_frame_headers_end_only_that_connection() {
    let (handler, listener) = node::split::<()>();
    let watchdog = Watchdog::new(&handler);
    let (_, addr) = handler.network().listen(Transport::FramedTcp, "127.0.0.1:0").unwrap();
    let mut huge = TcpStream::connect(addr).unwrap();
    let mut header = [0; 10];
    huge.write_all(portnet::util::encoding::encode_size(&[], &mut header)).unwrap();
    // 2^40 announced: 0x80 0x80 0x80 0x80 0x80 0x20.
    huge.write_all(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 1, 2, 3]).unwrap();
    let mut endless = TcpStream::connect(addr).unwrap();
    endless.write_all(&[0xff; 16]).unwrap();
    let (good, _) = handler.network().connect(Transport::FramedTcp, addr).unwrap();

    let mut disconnected = 0;
    let mut empty_frames = 0;
    let mut echoed = false;
    listener.for_each(|event| {
        match event {
            NodeEvent::Network(NetEvent::Connected(endpoint, true)) => {
                assert_eq!(handler.network().send(endpoint, b"still here"), SendStatus::Sent);
            }
            NodeEvent::Network(NetEvent::Message(endpoint, data)) if endpoint == good => {
                assert_eq!(data, b"still here");
                echoed = true;
            }
            NodeEvent::Network(NetEvent::Message(endpoint, data)) => {
                if data.is_empty() {
                    empty_frames += 1; // the valid frame before the huge one
                } else {
                    handler.network().send(endpoint, data);
                }
            }
            NodeEvent::Network(NetEvent::Disconnected(_)) => disconnected += 1,
            _ => (),
        }
        if disconnected == 2 && echoed {
            handler.stop();
        }
    });
    watchdog.check(&format!("{disconnected} disconnections, echoed: {echoed}"));
    assert_eq!(empty_frames, 1, "the frame before the bad header is delivered");
    drop((huge, endless));
}

/// A tungstenite client, blocking, on a portnet `Ws` server.
fn raw_ws_client(addr: std::net::SocketAddr) -> tungstenite::WebSocket<TcpStream> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(util::WATCHDOG)).unwrap();
    let url = format!("ws://{addr}/");
    tungstenite::client::client(url.as_str(), stream).unwrap().0
}

/// message-io dropped a `Ws` connection without a Close frame.
#[test]
fn removing_a_ws_connection_sends_a_close_frame() {
    let (handler, listener) = node::split::<()>();
    let (_, addr) = handler.network().listen(Transport::Ws, "127.0.0.1:0").unwrap();
    let remover = handler.clone();
    let task = listener.for_each_async(move |event| {
        if let NodeEvent::Network(NetEvent::Accepted(endpoint, _)) = event {
            assert!(remover.network().remove(endpoint.resource_id()));
        }
    });
    let mut client = raw_ws_client(addr);
    match client.read() {
        Ok(tungstenite::Message::Close(_)) => (),
        other => panic!("expected a Close frame, got {other:?}"),
    }
    handler.stop();
    drop(task);
}

/// message-io silently dropped text messages.
#[test]
fn ws_text_messages_arrive_as_their_bytes() {
    let (handler, listener) = node::split::<()>();
    let watchdog = Watchdog::new(&handler);
    let (_, addr) = handler.network().listen(Transport::Ws, "127.0.0.1:0").unwrap();
    let client = std::thread::spawn(move || {
        let mut client = raw_ws_client(addr);
        client.send(tungstenite::Message::text("héllo")).unwrap();
        client.send(tungstenite::Message::binary(vec![1, 2])).unwrap();
        client
    });
    let mut got = Vec::new();
    listener.for_each(|event| {
        if let NodeEvent::Network(NetEvent::Message(_, data)) = event {
            got.push(data.to_vec());
            if got.len() == 2 {
                handler.stop();
            }
        }
    });
    watchdog.check("waiting for two messages");
    assert_eq!(got, vec!["héllo".as_bytes().to_vec(), vec![1, 2]]);
    drop(client.join().unwrap());
}

/// A masked binary frame, as a client sends it (mask 0, so the payload is unchanged).
fn client_frame(payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut frame = vec![0x82, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    frame
}

/// message-io left frames that arrived together undelivered until the peer sent again. Here
/// three frames arrive in one segment right after the handshake.
#[test]
fn ws_frames_that_arrive_together_are_delivered_at_once() {
    let (handler, listener) = node::split::<()>();
    let watchdog = Watchdog::new(&handler);
    let (_, addr) = handler.network().listen(Transport::Ws, "127.0.0.1:0").unwrap();
    let bytes = format!(
        "GET /message-io-default HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes();
    // The node only runs inside for_each: the raw client runs on its own thread.
    let client = std::thread::spawn(move || {
        let mut raw = TcpStream::connect(addr).unwrap();
        raw.set_read_timeout(Some(util::WATCHDOG)).unwrap();
        raw.write_all(&bytes).unwrap();
        // RFC 6455: the client waits for the response before sending frames.
        let mut response = Vec::new();
        let mut byte = [0];
        while !response.ends_with(b"\r\n\r\n") {
            raw.read_exact(&mut byte).unwrap();
            response.push(byte[0]);
        }
        assert!(response.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&response));
        let frames: Vec<u8> =
            [&b"one"[..], b"two", b"three"].iter().flat_map(|p| client_frame(p)).collect();
        raw.write_all(&frames).unwrap();
        raw
    });
    let mut events = Vec::new();
    listener.for_each(|event| {
        if let NodeEvent::Network(event) = event {
            events.push(StoredNodeEvent::<()>::Network(event.into()));
            if events.len() == 4 {
                handler.stop();
            }
        }
    });
    watchdog.check(&format!("events so far: {events:?}"));
    let messages: Vec<_> = events[1..]
        .iter()
        .map(|e| match e {
            StoredNodeEvent::Network(portnet::network::StoredNetEvent::Message(_, data)) => {
                data.clone()
            }
            other => panic!("expected a message, got {other:?}"),
        })
        .collect();
    assert!(matches!(
        events[0],
        StoredNodeEvent::Network(portnet::network::StoredNetEvent::Accepted(..))
    ));
    assert_eq!(messages, [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
    drop(client.join().unwrap());
}

/// The client side: a server that sends three messages right behind its handshake response.
#[test]
fn ws_frames_sent_with_the_handshake_response_are_delivered_at_once() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let (done, finished) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let (stream, _) = server.accept().unwrap();
        let mut ws = tungstenite::accept(stream).unwrap();
        for text in ["one", "two", "three"] {
            ws.write(tungstenite::Message::binary(text.as_bytes().to_vec())).unwrap();
        }
        ws.flush().unwrap();
        // Say nothing more until the client has everything.
        let _ = finished.recv_timeout(util::WATCHDOG);
    });
    let (handler, listener) = node::split::<()>();
    let watchdog = Watchdog::new(&handler);
    handler.network().connect(Transport::Ws, addr).unwrap();
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut connected = false;
    listener.for_each(|event| match event {
        NodeEvent::Network(NetEvent::Connected(_, ok)) => connected = ok,
        NodeEvent::Network(NetEvent::Message(_, data)) => {
            assert!(connected, "a message before Connected");
            got.push(data.to_vec());
            if got.len() == 3 {
                handler.stop();
            }
        }
        _ => (),
    });
    watchdog.check(&format!("got {} of 3", got.len()));
    assert_eq!(got, [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
    done.send(()).unwrap();
    thread.join().unwrap();
}

/// message-io had no connect timeout. A listener whose accept queue is full drops SYNs, so a
/// connect to it never completes on its own.
#[test]
fn connect_times_out_with_connected_false() {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    // Fill the accept queue (never accepted).
    let _queued: Vec<_> = (0..2)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok())
        .collect();

    let (handler, listener) = node::split::<()>();
    let watchdog = Watchdog::new(&handler);
    let config = FramedTcpConnectConfig::default().with_connect_timeout(Duration::from_millis(200));
    let (endpoint, _) =
        handler.network().connect_with(TransportConnect::FramedTcp(config), addr).unwrap();
    let mut outcome = None;
    listener.for_each(|event| {
        if let NodeEvent::Network(NetEvent::Connected(ep, ok)) = event {
            assert_eq!(ep, endpoint);
            outcome = Some(ok);
            handler.stop();
        }
    });
    watchdog.check("waiting for the connect to time out");
    assert_eq!(outcome, Some(false));
    assert_eq!(handler.network().is_ready(endpoint.resource_id()), None);
}

/// message-io's loop woke every 50 ms to notice `stop()`. portnet's sleeps until woken, so
/// `stop()` from another thread must wake it (else this hangs: nothing else would).
#[test]
fn stop_from_another_thread_wakes_an_idle_loop() {
    let (handler, listener) = node::split::<()>();
    let (finished, wait_finished) = mpsc::channel();
    let stopper = handler.clone();
    handler.signals().send(());
    let node = std::thread::spawn(move || {
        listener.for_each(|event| {
            if let NodeEvent::Signal(()) = event {
                // The loop is running; stop it from elsewhere while it idles.
                let stopper = stopper.clone();
                std::thread::spawn(move || stopper.stop());
            }
        });
        finished.send(()).unwrap();
    });
    assert!(wait_finished.recv_timeout(util::WATCHDOG).is_ok(), "for_each did not return");
    node.join().unwrap();
}

/// Sending through an endpoint before it is connected, or after it is gone.
#[test]
fn send_status_follows_the_endpoint_lifecycle() {
    let (server, server_task, addr) = util::echo_server(Transport::FramedTcp, false);
    let (handler, listener) = node::split::<()>();
    let watchdog = Watchdog::new(&handler);
    let (endpoint, _) = handler.network().connect(Transport::FramedTcp, addr).unwrap();
    assert_eq!(handler.network().is_ready(endpoint.resource_id()), Some(false));
    assert_eq!(handler.network().send(endpoint, b"x"), SendStatus::ResourceNotAvailable);
    let mut events = 0;
    listener.for_each(|event| {
        events += 1;
        match event {
            NodeEvent::Network(NetEvent::Connected(ep, true)) => {
                assert_eq!(handler.network().is_ready(ep.resource_id()), Some(true));
                assert_eq!(handler.network().send(ep, b"x"), SendStatus::Sent);
                assert!(handler.network().remove(ep.resource_id()));
                assert!(!handler.network().remove(ep.resource_id()));
                assert_eq!(handler.network().send(ep, b"x"), SendStatus::ResourceNotFound);
                // Nothing may follow a remove: stop on a timer-free signal after this turn.
                handler.signals().send(());
            }
            NodeEvent::Signal(()) => handler.stop(),
            other => panic!("unexpected after remove: {other:?}"),
        }
    });
    watchdog.check("lifecycle");
    assert_eq!(events, 2);
    let foreign = Endpoint::from_listener(endpoint.resource_id(), addr);
    assert_eq!(handler.network().send(foreign, b"x"), SendStatus::ResourceNotFound);
    server.stop();
    drop(server_task);
}

/// message-io had no handshake timeout. A `Ws` peer that completes TCP but never the
/// handshake is given up on after `DEFAULT_CONNECT_TIMEOUT` (10 s), on both sides: the client
/// reports `Connected(ep, false)`; the server drops the half-open connection (slowloris) and
/// keeps serving others.
#[test]
fn ws_handshakes_time_out_on_both_sides() {
    // A server that accepts TCP and never answers the upgrade request.
    let mute = TcpListener::bind("127.0.0.1:0").unwrap();
    let mute_addr = mute.local_addr().unwrap();
    let (handler, listener) = node::split::<()>();
    let watchdog = Watchdog::new(&handler);
    let (_, ws_addr) = handler.network().listen(Transport::Ws, "127.0.0.1:0").unwrap();
    let (client, _) = handler.network().connect(Transport::Ws, mute_addr).unwrap();
    // A client that connects to the portnet server and never sends its request.
    let mut slow = TcpStream::connect(ws_addr).unwrap();
    slow.set_read_timeout(Some(util::WATCHDOG)).unwrap();
    let signals = handler.signals().clone();
    let slow_reader = std::thread::spawn(move || {
        let mut buf = [0; 16];
        // The server closes it: end of stream (or a reset), not the watchdog's timeout.
        let closed = match slow.read(&mut buf) {
            Ok(0) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(()),
            other => Err(format!("{other:?}")),
        };
        signals.send(()); // the node runs on until then: only its deadline could close it
        closed
    });
    let _held = mute.accept().unwrap();
    let (mut outcome, mut slow_closed) = (None, false);
    listener.for_each(|event| {
        match event {
            NodeEvent::Network(NetEvent::Connected(endpoint, ok)) => {
                assert_eq!(endpoint, client);
                outcome = Some(ok);
            }
            NodeEvent::Signal(()) => slow_closed = true,
            other => panic!("unexpected {other:?} (the half-open server side must stay silent)"),
        }
        if outcome.is_some() && slow_closed {
            handler.stop();
        }
    });
    watchdog.check("waiting for the handshake timeouts");
    assert_eq!(outcome, Some(false));
    assert_eq!(slow_reader.join().unwrap(), Ok(()), "the server dropped the silent client");
}
