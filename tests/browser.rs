//! The browser backend in real headless Chromium, against a native portnet server.
//!
//! Run by `tests/browser.sh`, which starts `examples/browser-test-server.rs` on ephemeral
//! 127.0.0.1 ports and passes them in `PORTNET_BROWSER_TEST_PORTS` (`echo,refused,text,silent,proto,wss,lines`).
//! Every wait races a watchdog, so a hang fails with what was awaited.
//!
//! Natively this file compiles to nothing.
#![cfg(all(target_family = "wasm", target_os = "unknown"))]

#[cfg(feature = "adapter")]
#[path = "../examples/line-protocol/lines.rs"]
mod lines;

use js_sys::{Array, Function, Promise};
use portnet::adapters::ws::WsConnectConfig;
use portnet::network::{
    Endpoint, MessageKind, NetEvent, SendStatus, StoredNetEvent, Transport, WsClose,
};
use portnet::node::{self, NodeEvent, NodeHandler, StoredNodeEvent};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &Function, ms: i32) -> JsValue;
}

/// How long any one awaited event may take.
const WATCHDOG_MS: i32 = 20_000;

struct Ports {
    echo: u16,
    refused: u16,
    text: u16,
    silent: u16,
    proto: u16,
    wss: u16,
    #[cfg_attr(not(feature = "adapter"), allow(dead_code))]
    lines: u16,
}

fn ports() -> Ports {
    let Some(ports) = option_env!("PORTNET_BROWSER_TEST_PORTS") else {
        panic!("PORTNET_BROWSER_TEST_PORTS is not set: run the browser tests with tests/browser.sh")
    };
    let ports: Vec<u16> = ports.split(',').map(|p| p.parse().expect("a port number")).collect();
    let names = "echo,refused,text,silent,proto,wss,lines";
    assert_eq!(ports.len(), 7, "PORTNET_BROWSER_TEST_PORTS: {names}");
    let [echo, refused, text, silent, proto, wss, lines] = ports[..] else { unreachable!() };
    Ports { echo, refused, text, silent, proto, wss, lines }
}

/// Waits for `promise`, or fails after `ms` saying what it waited for.
async fn within(ms: i32, what: &str, promise: Promise) -> JsValue {
    let watchdog = Promise::new(&mut |resolve, _| {
        set_timeout(&resolve, ms);
    });
    let winner = JsFuture::from(Promise::race(&Array::of2(&promise, &watchdog)))
        .await
        .unwrap_or_else(|e| panic!("waiting for {what}: rejected: {e:?}"));
    assert!(!winner.is_undefined(), "timed out after {ms} ms waiting for {what}");
    winner
}

/// Lets the JS event loop run for `ms` (only to observe that nothing happens meanwhile).
async fn quiet_for(ms: i32) {
    let elapsed = Promise::new(&mut |resolve, _| {
        set_timeout(&resolve, ms);
    });
    let _ = JsFuture::from(elapsed).await;
}

/// The events a node's `for_each` delivered, for a test to await one by one.
struct Inbox<S> {
    events: RefCell<VecDeque<StoredNodeEvent<S>>>,
    waiting: RefCell<Option<Function>>,
}

impl<S> Inbox<S> {
    fn new() -> Rc<Self> {
        Rc::new(Self { events: RefCell::new(VecDeque::new()), waiting: RefCell::new(None) })
    }

    fn push(&self, event: StoredNodeEvent<S>) {
        self.events.borrow_mut().push_back(event);
        if let Some(resolve) = self.waiting.borrow_mut().take() {
            let _ = resolve.call1(&JsValue::NULL, &JsValue::TRUE);
        }
    }

    fn len(&self) -> usize {
        self.events.borrow().len()
    }

    async fn next(&self, what: &str) -> StoredNodeEvent<S> {
        loop {
            if let Some(event) = self.events.borrow_mut().pop_front() {
                return event;
            }
            let arrived = Promise::new(&mut |resolve, _| {
                *self.waiting.borrow_mut() = Some(resolve);
            });
            within(WATCHDOG_MS, what, arrived).await;
        }
    }

    async fn next_network(&self, what: &str) -> StoredNetEvent {
        match self.next(what).await {
            StoredNodeEvent::Network(event) => event,
            StoredNodeEvent::Signal(_) => panic!("a signal instead of {what}"),
        }
    }
}

/// A node whose `for_each` (which returns at once in the browser) feeds an inbox.
fn start<S: Send + 'static>() -> (NodeHandler<S>, Rc<Inbox<S>>) {
    let (handler, listener) = node::split::<S>();
    let inbox = Inbox::new();
    let events = inbox.clone();
    listener.for_each(move |event| events.push(event.into()));
    (handler, inbox)
}

async fn connect(
    handler: &NodeHandler<impl Send>,
    inbox: &Inbox<impl Send>,
    addr: &str,
) -> Endpoint {
    let (endpoint, _) = handler.network().connect(Transport::Ws, addr).expect("connect");
    assert_eq!(handler.network().is_ready(endpoint.resource_id()), Some(false));
    assert_eq!(handler.network().send(endpoint, b"early"), SendStatus::ResourceNotAvailable);
    let event = inbox.next_network(&format!("Connected to {addr}")).await;
    assert_eq!(event, StoredNetEvent::Connected(endpoint, true));
    assert_eq!(handler.network().is_ready(endpoint.resource_id()), Some(true));
    endpoint
}

async fn expect_message(inbox: &Inbox<impl Send>, endpoint: Endpoint, data: &[u8]) {
    let what = format!("a message of {} bytes", data.len());
    match inbox.next_network(&what).await {
        StoredNetEvent::Message(from, got) => {
            assert_eq!(from, endpoint);
            assert!(got == data, "{what}: got {} different bytes", got.len());
        }
        other => panic!("{what}: got {other:?}"),
    }
}

#[wasm_bindgen_test]
async fn bare_socket_address_connects_and_small_messages_round_trip() {
    let (handler, inbox) = start::<()>();
    let addr = format!("127.0.0.1:{}", ports().echo);
    let endpoint = connect(&handler, &inbox, &addr).await;
    assert_eq!(endpoint.addr(), addr.parse::<SocketAddr>().unwrap());
    let large: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    for message in [&b"abc"[..], &[7; 256], &large] {
        assert_eq!(handler.network().send(endpoint, message), SendStatus::Sent);
    }
    for message in [&b"abc"[..], &[7; 256], &large] {
        expect_message(&inbox, endpoint, message).await;
    }
    handler.stop();
}

/// A portnet `wss://` server, its self-signed certificate trusted by this Chromium alone (by
/// its public key: tests/browser.sh passes `--ignore-certificate-errors-spki-list`).
#[wasm_bindgen_test]
async fn wss_reaches_a_portnet_tls_server() {
    let (handler, inbox) = start::<()>();
    for host in ["127.0.0.1", "localhost"] {
        let url = format!("wss://{host}:{}/secure", ports().wss);
        let endpoint = connect(&handler, &inbox, &url).await;
        let large: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        for message in [&b"over tls"[..], &large] {
            assert_eq!(handler.network().send(endpoint, message), SendStatus::Sent);
            expect_message(&inbox, endpoint, message).await;
        }
        handler.network().remove(endpoint.resource_id());
    }
    handler.stop();
}

#[wasm_bindgen_test]
async fn ws_urls_connect_with_their_path_and_host() {
    let (handler, inbox) = start::<()>();
    let echo = ports().echo;
    let endpoint = connect(&handler, &inbox, &format!("ws://127.0.0.1:{echo}/chat?room=1")).await;
    assert_eq!(endpoint.addr(), SocketAddr::from(([127, 0, 0, 1], echo)));
    assert_eq!(handler.network().send(endpoint, b"via a URL"), SendStatus::Sent);
    expect_message(&inbox, endpoint, b"via a URL").await;
    // A host name: the browser resolves it and does not say to what.
    let named = connect(&handler, &inbox, &format!("ws://localhost:{echo}/")).await;
    assert_eq!(named.addr(), SocketAddr::from(([0, 0, 0, 0], echo)));
    assert_eq!(handler.network().send(named, b"by name"), SendStatus::Sent);
    expect_message(&inbox, named, b"by name").await;
    handler.stop();
}

#[derive(Debug, PartialEq)]
enum Sig {
    Writable,
}

#[wasm_bindgen_test]
async fn eight_mib_messages_round_trip_and_a_full_queue_reports_queue_full() {
    let (handler, inbox) = start::<Sig>();
    let endpoint = connect(&handler, &inbox, &format!("127.0.0.1:{}", ports().echo)).await;
    let first: Vec<u8> = (0..8u32 << 20).map(|i| (i % 253) as u8).collect();
    let second: Vec<u8> = first.iter().map(|b| b ^ 0xff).collect();
    // The browser's `bufferedAmount` rises at once by what `send` took: 8 MiB, then 16 MiB,
    // which is the native queue limit (16 MiB), so the third send is refused.
    assert_eq!(handler.network().send(endpoint, &first), SendStatus::Sent);
    assert_eq!(handler.network().send(endpoint, &second), SendStatus::Sent);
    assert_eq!(handler.network().send(endpoint, b"third"), SendStatus::QueueFull);
    assert_eq!(
        handler.network().send(endpoint, &vec![0; portnet::adapters::ws::MAX_PAYLOAD_LEN + 1]),
        SendStatus::MaxPacketSizeExceeded
    );
    handler.signal_when_writable(endpoint, Sig::Writable);
    let mut echoes = Vec::new();
    let mut writable = false;
    while echoes.len() < 2 || !writable {
        match inbox.next("the echoes and the writable signal").await {
            StoredNodeEvent::Signal(Sig::Writable) => {
                assert!(!writable, "one signal_when_writable, one signal");
                writable = true;
                assert_eq!(handler.network().send(endpoint, b"third"), SendStatus::Sent);
            }
            StoredNodeEvent::Network(StoredNetEvent::Message(from, data)) => {
                assert_eq!(from, endpoint);
                echoes.push(data);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(echoes[0] == first, "the first 8 MiB echo differs");
    assert!(echoes[1] == second, "the second 8 MiB echo differs");
    expect_message(&inbox, endpoint, b"third").await;
    handler.stop();
}

#[wasm_bindgen_test]
async fn a_refused_connect_reports_connected_false() {
    let (handler, inbox) = start::<()>();
    let addr = format!("127.0.0.1:{}", ports().refused);
    let (endpoint, _) = handler.network().connect(Transport::Ws, addr.as_str()).unwrap();
    let event = inbox.next_network("Connected(_, false)").await;
    assert_eq!(event, StoredNetEvent::Connected(endpoint, false));
    assert_eq!(handler.network().is_ready(endpoint.resource_id()), None);
    assert_eq!(handler.network().send(endpoint, b"x"), SendStatus::ResourceNotFound);
    assert!(!handler.network().remove(endpoint.resource_id()));
    handler.stop();
}

#[wasm_bindgen_test]
async fn a_handshake_that_never_completes_times_out_as_connected_false() {
    let (handler, inbox) = start::<()>();
    let config = WsConnectConfig::default().with_connect_timeout(Duration::from_millis(300));
    let addr = format!("127.0.0.1:{}", ports().silent);
    let started = handler.now();
    let (endpoint, _) = handler.network().connect_with(config.into(), addr).unwrap();
    let event = inbox.next_network("Connected(_, false) after the connect timeout").await;
    assert_eq!(event, StoredNetEvent::Connected(endpoint, false));
    assert!(handler.now() - started >= Duration::from_millis(300), "timed out early");
    assert_eq!(handler.network().is_ready(endpoint.resource_id()), None);
    handler.stop();
}

#[wasm_bindgen_test]
async fn subprotocols_are_offered_and_the_agreed_one_reported() {
    let (handler, inbox) = start::<()>();
    let network = handler.network();
    let config = WsConnectConfig::default().with_subprotocols(["chat.v2", "chat.v1"]);
    let addr = format!("127.0.0.1:{}", ports().proto);
    let (endpoint, _) = network.connect_with(config.into(), addr).unwrap();
    let event = inbox.next_network("Connected with a subprotocol").await;
    assert_eq!(event, StoredNetEvent::Connected(endpoint, true));
    let handshake = network.ws_handshake(endpoint).expect("a handshake once connected");
    assert_eq!(handshake.subprotocol.as_deref(), Some("chat.v1"));
    assert_eq!(network.send(endpoint, b"with a subprotocol"), SendStatus::Sent);
    expect_message(&inbox, endpoint, b"with a subprotocol").await;
    handler.stop();
}

#[wasm_bindgen_test]
async fn a_server_side_close_reports_disconnected() {
    let (handler, inbox) = start::<()>();
    let endpoint = connect(&handler, &inbox, &format!("127.0.0.1:{}", ports().echo)).await;
    assert_eq!(handler.network().send(endpoint, b"close"), SendStatus::Sent);
    let event = inbox.next_network("Disconnected").await;
    assert_eq!(event, StoredNetEvent::Disconnected(endpoint));
    assert_eq!(handler.network().is_ready(endpoint.resource_id()), None);
    assert_eq!(handler.network().send(endpoint, b"x"), SendStatus::ResourceNotFound);
    handler.stop();
}

#[wasm_bindgen_test]
async fn text_frames_arrive_as_their_utf8_bytes() {
    let (handler, inbox) = start::<()>();
    let endpoint = connect(&handler, &inbox, &format!("127.0.0.1:{}", ports().text)).await;
    expect_message(&inbox, endpoint, "héllo, browser ✓".as_bytes()).await;
    handler.stop();
}

/// A network event with what `message_kind` and `ws_close` answered while it was handled.
type Asked = (StoredNetEvent, MessageKind, Option<WsClose>);

/// A node that records, with each network event, what the network says about it while the
/// event is being handled.
fn start_asking() -> (NodeHandler<()>, Rc<Inbox<Asked>>) {
    let (handler, listener) = node::split::<()>();
    let (asked, inbox) = (handler.clone(), Inbox::new());
    let events = inbox.clone();
    listener.for_each(move |event| {
        if let NodeEvent::Network(event) = event {
            let endpoint = match event {
                NetEvent::Connected(e, _)
                | NetEvent::Accepted(e, _)
                | NetEvent::Message(e, _)
                | NetEvent::Disconnected(e) => e,
            };
            let network = asked.network();
            let answers = (network.message_kind(endpoint), network.ws_close(endpoint));
            events.push(StoredNodeEvent::Signal((event.into(), answers.0, answers.1)));
        }
    });
    (handler, inbox)
}

#[wasm_bindgen_test]
async fn message_kind_send_text_ws_handshake_and_ws_close_answer_as_natively() {
    let (handler, inbox) = start_asking();
    let network = handler.network();
    let (endpoint, _) =
        network.connect(Transport::Ws, format!("127.0.0.1:{}", ports().text)).unwrap();
    assert_eq!(network.ws_handshake(endpoint), None, "no handshake before Connected");
    let next = async |what: &str| inbox.next(what).await.signal();
    assert_eq!(
        next("Connected").await,
        (StoredNetEvent::Connected(endpoint, true), MessageKind::Binary, None)
    );
    let handshake = network.ws_handshake(endpoint).expect("a handshake once connected");
    assert_eq!(handshake.subprotocol, None);
    assert_eq!(handshake.path, portnet::adapters::ws::DEFAULT_PATH, "the path requested");
    let greeting = StoredNetEvent::Message(endpoint, "héllo, browser ✓".into());
    assert_eq!(next("the greeting").await, (greeting, MessageKind::Text, None));
    assert_eq!(network.send_text(endpoint, "as text"), SendStatus::Sent);
    assert_eq!(network.send(endpoint, b"as binary"), SendStatus::Sent);
    let text = StoredNetEvent::Message(endpoint, b"as text".to_vec());
    assert_eq!(next("the text echo").await, (text, MessageKind::Text, None));
    let binary = StoredNetEvent::Message(endpoint, b"as binary".to_vec());
    assert_eq!(next("the binary echo").await, (binary, MessageKind::Binary, None));
    assert_eq!(network.message_kind(endpoint), MessageKind::Binary, "asked outside the callback");
    assert_eq!(network.send_text(endpoint, "close"), SendStatus::Sent);
    let close = WsClose { code: 4000, reason: "bye".into() };
    assert_eq!(
        next("Disconnected with a Close frame").await,
        (StoredNetEvent::Disconnected(endpoint), MessageKind::Binary, Some(close))
    );
    assert_eq!(network.ws_close(endpoint), None, "asked outside the callback");
    handler.stop();
}

#[wasm_bindgen_test]
async fn remove_closes_without_an_event_and_drops_queued_events() {
    let (handler, inbox) = start::<()>();
    let echo = format!("127.0.0.1:{}", ports().echo);
    let removed = connect(&handler, &inbox, &echo).await;
    let kept = connect(&handler, &inbox, &echo).await;
    assert_eq!(handler.network().send(removed, b"to nobody"), SendStatus::Sent);
    assert!(handler.network().remove(removed.resource_id()));
    assert!(!handler.network().remove(removed.resource_id()));
    assert_eq!(handler.network().send(removed, b"x"), SendStatus::ResourceNotFound);
    // What `kept` receives afterwards comes first: nothing of `removed` is delivered.
    assert_eq!(handler.network().send(kept, b"still here"), SendStatus::Sent);
    expect_message(&inbox, kept, b"still here").await;
    handler.stop();
}

#[wasm_bindgen_test]
async fn signals_and_timers_fire_in_the_native_order() {
    let (handler, inbox) = start::<&'static str>();
    let signals = handler.signals();
    let start = handler.now();
    signals.send_with_timer("late", Duration::from_millis(60));
    signals.send_with_timer("due-1", Duration::from_millis(20));
    signals.send_with_timer("due-2", Duration::from_millis(20));
    let cancelled = signals.send_with_timer("cancelled", Duration::from_millis(10));
    assert!(signals.cancel_timer(cancelled));
    signals.send("now");
    signals.send_with_priority("first");
    let mut order = Vec::new();
    while order.len() < 5 {
        order.push(inbox.next("signals").await.signal());
    }
    assert_eq!(order, ["first", "now", "due-1", "due-2", "late"]);
    assert!(handler.now() - start >= Duration::from_millis(60), "the late timer fired early");
    handler.stop();
}

/// Dropped with the `for_each` callback that owns it.
struct DropFlag(Rc<RefCell<Option<Function>>>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        if let Some(resolve) = self.0.borrow_mut().take() {
            let _ = resolve.call1(&JsValue::NULL, &JsValue::TRUE);
        }
    }
}

#[wasm_bindgen_test]
async fn stop_releases_the_callback_the_sockets_and_the_timers() {
    let (handler, listener) = node::split::<&'static str>();
    let inbox = Inbox::new();
    let events = inbox.clone();
    let resolve = Rc::new(RefCell::new(None));
    let dropped = Promise::new(&mut |r, _| *resolve.borrow_mut() = Some(r));
    let flag = DropFlag(resolve);
    listener.for_each(move |event| {
        let _ = &flag;
        events.push(event.into());
    });
    let echo = format!("127.0.0.1:{}", ports().echo);
    let endpoint = connect(&handler, &inbox, &echo).await;
    // Another node watches the server's count of clients.
    let (watcher, watched) = start::<()>();
    let watching = connect(&watcher, &watched, &echo).await;
    let peers = async || {
        assert_eq!(watcher.network().send(watching, b"peers"), SendStatus::Sent);
        match watched.next_network("the server's count of clients").await {
            StoredNetEvent::Message(_, data) => {
                let answer = String::from_utf8(data).unwrap();
                answer["peers: ".len()..].parse::<usize>().unwrap()
            }
            other => panic!("{other:?}"),
        }
    };
    let before = peers().await;
    handler.signals().send_with_timer("after stop", Duration::from_millis(30));
    handler.stop();
    within(WATCHDOG_MS, "the callback to be dropped after stop()", dropped).await;
    assert_eq!(handler.network().is_ready(endpoint.resource_id()), None, "socket not released");
    assert_eq!(handler.network().send(endpoint, b"x"), SendStatus::ResourceNotFound);
    // The server sees the socket close (sockets of earlier tests may close meanwhile too).
    let give_up = js_sys::Date::now() + f64::from(WATCHDOG_MS);
    while peers().await >= before {
        assert!(js_sys::Date::now() < give_up, "the server still counts the stopped node");
    }
    quiet_for(100).await;
    assert_eq!(inbox.len(), 0, "an event was delivered after stop()");
    watcher.stop();
}

#[wasm_bindgen_test]
fn what_a_browser_cannot_do_is_an_unsupported_error() {
    let (handler, _listener) = node::split::<()>();
    let network = handler.network();
    for transport in Transport::ALL {
        let error = network.listen(transport, "127.0.0.1:0").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unsupported, "listen {transport}");
        assert!(error.to_string().contains("browser"), "{error}");
    }
    for transport in [Transport::Tcp, Transport::FramedTcp, Transport::Udp] {
        let error = network.connect(transport, "127.0.0.1:9").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unsupported, "connect {transport}");
        assert!(error.to_string().contains("browser"), "{error}");
    }
    let error = network.connect_sync(Transport::Ws, "127.0.0.1:9").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unsupported, "{error}");
    for bad in ["http://127.0.0.1:9/", "ws://[::1", "ws://127.0.0.1:99999/"] {
        let error = network.connect(Transport::Ws, bad).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{bad}: {error}");
    }
}

#[wasm_bindgen_test]
async fn try_next_pumps_without_for_each_and_never_blocks() {
    let (handler, mut listener) = node::split::<()>();
    let (endpoint, _) =
        handler.network().connect(Transport::Ws, format!("127.0.0.1:{}", ports().echo)).unwrap();
    assert!(listener.try_next().is_none());
    assert_eq!(listener.poll_events(Duration::from_secs(3600), |_| ()), 0, "poll_events waited");
    // A game loop: one look per tick of the JS event loop.
    let mut ticks = 0;
    let event = loop {
        if let Some(event) = listener.try_next() {
            break event;
        }
        ticks += 1;
        assert!(ticks < 2_000, "no Connected after {ticks} ticks");
        quiet_for(5).await;
    };
    assert!(matches!(event.network(), StoredNetEvent::Connected(e, true) if e == endpoint));
    handler.stop();
}

#[wasm_bindgen_test]
fn node_event_matching_is_the_same_as_natively() {
    // The application code of the README compiles unchanged for the browser.
    let (handler, listener) = node::split::<u8>();
    let signals = handler.signals().clone();
    listener.for_each(move |event| match event {
        NodeEvent::Network(NetEvent::Message(endpoint, data)) => {
            handler.network().send(endpoint, data);
        }
        NodeEvent::Network(_) => (),
        NodeEvent::Signal(_) => handler.stop(),
    });
    signals.send(1); // stops it
}

// ---------------------------------------------------------------------------------------------
// The async face: `NodeListener::into_stream` on the page's event loop.

/// Awaits `future`, or fails after `ms` saying what it waited for.
async fn within_future<T>(ms: i32, what: &str, future: impl std::future::Future<Output = T>) -> T {
    let watchdog = JsFuture::from(Promise::new(&mut |resolve, _| {
        set_timeout(&resolve, ms);
    }));
    match futures::future::select(std::pin::pin!(future), watchdog).await {
        futures::future::Either::Left((value, _)) => value,
        futures::future::Either::Right(_) => panic!("timed out after {ms} ms waiting for {what}"),
    }
}

/// The next event of `events`, which must be a network event.
async fn next_network<S>(events: &mut node::NodeStream<S>, what: &str) -> StoredNetEvent {
    use futures::StreamExt;
    match within_future(WATCHDOG_MS, what, events.next()).await {
        Some(StoredNodeEvent::Network(event)) => event,
        Some(StoredNodeEvent::Signal(_)) => panic!("{what}: got a signal"),
        None => panic!("{what}: the stream ended"),
    }
}

#[wasm_bindgen_test]
async fn a_stream_awaits_its_connect_round_trips_and_ends_after_stop() {
    use futures::StreamExt;
    let (handler, listener) = node::split::<()>();
    let mut events = listener.into_stream().expect("a stream in the browser");
    let addr = format!("127.0.0.1:{}", ports().echo);
    let (endpoint, _) = handler.network().connect(Transport::Ws, &addr).expect("connect");
    within_future(WATCHDOG_MS, "the connect", events.connected(endpoint))
        .await
        .expect("the echo server accepts");
    for message in [&b"one"[..], b"two"] {
        assert_eq!(handler.network().send(endpoint, message), SendStatus::Sent);
    }
    // `connected` took nothing out of the stream: `Connected` comes first, then the echoes.
    let connected = next_network(&mut events, "Connected").await;
    assert_eq!(connected, StoredNetEvent::Connected(endpoint, true));
    for message in [&b"one"[..], b"two"] {
        let echo = next_network(&mut events, "an echo").await;
        assert_eq!(echo, StoredNetEvent::Message(endpoint, message.to_vec()));
    }
    handler.stop();
    let end = within_future(WATCHDOG_MS, "the end of the stream", events.next()).await;
    assert!(end.is_none(), "the stream goes on after stop()");
}

#[wasm_bindgen_test]
async fn a_refused_connect_is_an_error_of_the_awaited_connect() {
    let (handler, listener) = node::split::<()>();
    let mut events = listener.into_stream().expect("a stream in the browser");
    let addr = format!("127.0.0.1:{}", ports().refused);
    let (endpoint, _) = handler.network().connect(Transport::Ws, &addr).expect("connect");
    let outcome = within_future(WATCHDOG_MS, "the refusal", events.connected(endpoint)).await;
    let error = outcome.expect_err("a refused connect succeeded");
    assert_eq!(error.kind(), ErrorKind::ConnectionRefused, "{error}");
    assert_eq!(
        next_network(&mut events, "Connected(false)").await,
        StoredNetEvent::Connected(endpoint, false)
    );
    handler.stop();
}

#[wasm_bindgen_test]
async fn delays_and_signal_timers_come_in_time_order_without_polling_the_stream() {
    use futures::StreamExt;
    let (handler, listener) = node::split::<u32>();
    let mut events = listener.into_stream().expect("a stream in the browser");
    handler.signals().send_with_timer(1, Duration::from_millis(40));
    let started = handler.now();
    // Awaited alone: the page's loop fires it whether or not the stream is polled.
    within_future(WATCHDOG_MS, "a 20 ms delay", events.delay(Duration::from_millis(20))).await;
    let waited = handler.now() - started;
    assert!(waited >= Duration::from_millis(20), "the delay completed after {waited:?}");
    let signal = within_future(WATCHDOG_MS, "the 40 ms signal", events.next()).await;
    assert!(matches!(signal, Some(StoredNodeEvent::Signal(1))), "expected the signal");
    assert!(handler.now() - started >= Duration::from_millis(40));
    handler.stop();
}

#[wasm_bindgen_test]
async fn into_listener_gives_back_every_event_not_handed_out() {
    let (handler, listener) = node::split::<()>();
    let mut events = listener.into_stream().expect("a stream in the browser");
    let addr = format!("127.0.0.1:{}", ports().echo);
    let (endpoint, _) = handler.network().connect(Transport::Ws, &addr).expect("connect");
    let connected = next_network(&mut events, "Connected").await;
    assert_eq!(connected, StoredNetEvent::Connected(endpoint, true));
    for message in [&b"a"[..], b"b", b"c"] {
        assert_eq!(handler.network().send(endpoint, message), SendStatus::Sent);
    }
    let first = next_network(&mut events, "the first echo").await;
    assert_eq!(first, StoredNetEvent::Message(endpoint, b"a".to_vec()));
    // The rest may be gathered already, or still on their way: either way they come next.
    let mut events = events.into_listener().into_stream().expect("a new stream");
    for message in [&b"b"[..], b"c"] {
        let echo = next_network(&mut events, "an echo after into_listener").await;
        assert_eq!(echo, StoredNetEvent::Message(endpoint, message.to_vec()));
    }
    handler.stop();
}

/// A transport defined outside portnet (the line protocol of `examples/line-protocol`), carried
/// over the page's `WebSocket` to a native server that mounts it the same way: lines echo, what
/// the protocol cannot frame is refused here, and a line over the server's maximum ends the
/// connection there, which the page sees.
#[cfg(feature = "adapter")]
#[wasm_bindgen_test]
async fn a_transport_of_our_own_runs_over_the_pages_websocket() {
    use portnet::adapter::Carrier;
    let (handler, inbox) = start::<()>();
    let network = handler.network();
    let error = network.mount(lines::Lines::default()).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unsupported, "no TCP in a page: {error}");
    assert!(error.to_string().contains("Carrier::WebSocket"), "{error}");
    let ours = lines::Lines::default().with_max_line(200);
    let lines = network.mount_with(ours, Carrier::WebSocket).expect("mount");
    let addr = format!("127.0.0.1:{}", ports().lines);
    let (endpoint, _) = network.connect(lines, addr.as_str()).expect("connect");
    assert_eq!(endpoint.transport(), lines);
    let event = inbox.next_network(&format!("Connected to {addr}")).await;
    assert_eq!(event, StoredNetEvent::Connected(endpoint, true));
    for line in ["héllo", "", "a line of its own"] {
        assert_eq!(network.send(endpoint, line.as_bytes()), SendStatus::Sent);
    }
    for line in ["héllo", "", "a line of its own"] {
        expect_message(&inbox, endpoint, line.as_bytes()).await;
    }
    assert_eq!(network.send(endpoint, b"two\nlines"), SendStatus::MaxPacketSizeExceeded);
    assert_eq!(network.send(endpoint, &[b'a'; 101]), SendStatus::Sent, "within our 200");
    let event = inbox.next_network("the server ends the connection").await;
    assert_eq!(event, StoredNetEvent::Disconnected(endpoint));
    handler.stop();
}
