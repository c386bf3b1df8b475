//! Parity of the async face: each case is one async application body, run natively (loopback
//! sockets, under tokio's current-thread and multi-thread runtimes and futures' executor) and
//! as nodes of a simulated world (`World::node_async`), with the same assertions: an echo with
//! an awaited connect, a refused connect, a delay beside a signal timer, `connected` keeping
//! the stream's events, a delay awaited alone. tests/sim_async.rs covers the simulator alone.

mod util;

use futures::StreamExt;
use futures::future::{Either, select};
use portnet::network::{SendStatus, StoredNetEvent, Transport};
use portnet::node::{self, NodeHandler, NodeStream, StoredNodeEvent};
use portnet::sim::World;
use std::io::ErrorKind;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use util::Watchdog;

type Shared<T> = Arc<Mutex<T>>;
/// A native application's future, boxed for an executor's `block_on`.
type Boxed<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ----- application bodies, the same natively and in a world -----

/// Echoes every message back on its connection, until the node stops.
async fn echo_server(handler: NodeHandler<()>, mut events: NodeStream<()>) {
    while let Some(event) = events.next().await {
        if let StoredNetEvent::Message(endpoint, data) = event.network() {
            handler.network().send(endpoint, &data);
        }
    }
}

/// Connects to `server` (awaiting the connect), then sends `count` numbered requests one at a
/// time, each after the echo of the one before. Stops the node and returns the echoes.
async fn echo_client(
    handler: NodeHandler<()>,
    mut events: NodeStream<()>,
    server: String,
    count: u32,
) -> Vec<u32> {
    let (endpoint, _) = handler.network().connect(Transport::FramedTcp, server.as_str()).unwrap();
    events.connected(endpoint).await.expect("the connect succeeds");
    assert_eq!(handler.network().send(endpoint, &0u32.to_be_bytes()), SendStatus::Sent);
    let mut echoes = Vec::new();
    while let Some(event) = events.next().await {
        match event.network() {
            // The stream still hands out the event `connected` waited for.
            StoredNetEvent::Connected(e, ok) => assert!(ok && e == endpoint),
            StoredNetEvent::Message(_, data) => {
                let index = u32::from_be_bytes(data.try_into().expect("4 bytes"));
                echoes.push(index);
                if index + 1 == count {
                    handler.stop();
                } else {
                    handler.network().send(endpoint, &(index + 1).to_be_bytes());
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    echoes
}

/// Connects to `server`, where nothing listens: `connected` must fail. Returns its error kind.
async fn refused_client(
    handler: NodeHandler<()>,
    mut events: NodeStream<()>,
    server: String,
) -> ErrorKind {
    let (endpoint, _) = handler.network().connect(Transport::FramedTcp, server.as_str()).unwrap();
    let kind = events.connected(endpoint).await.expect_err("nothing listens there").kind();
    handler.stop();
    kind
}

/// A signal timer at 30 ms and a delay of 10 ms: the delay completes first, then the stream
/// hands out the signal, no earlier than 30 ms. Returns the node's clock at each.
async fn delay_then_signal(
    handler: NodeHandler<u32>,
    mut events: NodeStream<u32>,
) -> (Duration, Duration, Duration) {
    let start = handler.now();
    handler.signals().send_with_timer(7, ms(30));
    let delay = pin!(events.delay(ms(10)));
    let first = match select(delay, events.next()).await {
        Either::Left(((), _)) => handler.now(),
        Either::Right((event, _)) => panic!("{:?} before the delay", event.map(|_| ())),
    };
    let Some(StoredNodeEvent::Signal(7)) = events.next().await else { panic!("no signal") };
    let second = handler.now();
    handler.stop();
    (start, first, second)
}

// ----- parity: the bodies above, natively and in a world -----

const ECHOES: u32 = 20;

/// Runs `client(address)` against `echo_server` natively on loopback with `block_on`.
fn native_pair<T: Send + 'static, Fut>(
    executor: &str,
    block_on: impl FnOnce(Boxed<T>) -> T,
    client: impl FnOnce(NodeHandler<()>, NodeStream<()>, String) -> Fut,
) -> T
where
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let (server, server_listener) = node::split::<()>();
    let (_, addr) = server.network().listen(Transport::FramedTcp, util::any_port(false)).unwrap();
    let (handler, listener) = node::split::<()>();
    let watchdog = Watchdog::new(&handler);
    let server_events = server_listener.into_stream().unwrap();
    let client = client(handler, listener.into_stream().unwrap(), addr.to_string());
    let stop_server = server.clone();
    let result = block_on(Box::pin(async move {
        let server = pin!(echo_server(server, server_events));
        let client = pin!(async move {
            let result = client.await;
            stop_server.stop();
            result
        });
        match select(server, client).await {
            Either::Left(((), client)) => client.await,
            Either::Right((result, server)) => {
                server.await;
                result
            }
        }
    }));
    watchdog.check(executor);
    result
}

/// Runs `client` against `echo_server` in a world, and returns what the client returned.
fn sim_pair<T: Send + 'static, Fut>(
    seed: u64,
    client: impl Fn(NodeHandler<()>, NodeStream<()>, String) -> Fut + Send + Sync + 'static,
) -> T
where
    Fut: std::future::Future<Output = T> + 'static,
{
    let result: Shared<Option<T>> = Arc::default();
    let out = result.clone();
    let mut world = World::with_seed(seed);
    world.node_async("server", |handler: NodeHandler<()>, events| async move {
        handler.network().listen(Transport::FramedTcp, "0.0.0.0:3000").unwrap();
        echo_server(handler, events).await
    });
    let client = Arc::new(client);
    world.node_async("client", move |handler, events| {
        let (out, client) = (out.clone(), client.clone());
        async move {
            let value = client(handler, events, "server:3000".into()).await;
            *out.lock().unwrap() = Some(value);
        }
    });
    world.run_until_idle();
    assert!(world.is_finished("client"), "the client's future completed");
    result.lock().unwrap().take().expect("the client returned")
}

fn tokio_current() -> impl FnOnce(Boxed<Vec<u32>>) -> Vec<u32> {
    |future| tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(future)
}

#[test]
fn parity_echo_with_awaited_connect() {
    let expected: Vec<u32> = (0..ECHOES).collect();
    let client = |h, e, addr| echo_client(h, e, addr, ECHOES);
    let on_tokio = native_pair("tokio current-thread", tokio_current(), client);
    assert_eq!(on_tokio, expected, "natively on tokio");
    let multi = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let on_multi = native_pair(
        "tokio multi-thread",
        |future| multi.block_on(async { tokio::spawn(future).await.unwrap() }),
        client,
    );
    assert_eq!(on_multi, expected, "natively on tokio's multi-thread runtime");
    let on_futures = native_pair("futures", futures::executor::block_on, client);
    assert_eq!(on_futures, expected, "natively on futures' block_on");
    for seed in 0..5 {
        assert_eq!(sim_pair(seed, client), expected, "in a world, seed {seed}");
    }
}

#[test]
fn parity_connected_reports_a_refused_connect() {
    let closed = util::closed_port().to_string();
    let client = move |h, e, _addr: String| refused_client(h, e, closed.clone());
    let kind = native_pair("futures", futures::executor::block_on, client.clone());
    assert_eq!(kind, ErrorKind::ConnectionRefused, "natively");
    let kind = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(async { native_pair_inner_refused().await });
    assert_eq!(kind, ErrorKind::ConnectionRefused, "natively on tokio");
    // In a world: the server node listens on 3000, not on 3001.
    let kind = sim_pair(1, |h, e, _| refused_client(h, e, "server:3001".into()));
    assert_eq!(kind, ErrorKind::ConnectionRefused, "in a world");
}

/// The refused connect on a tokio task, alone (no server node).
async fn native_pair_inner_refused() -> ErrorKind {
    let (handler, listener) = node::split::<()>();
    let events = listener.into_stream().unwrap();
    let closed = util::closed_port().to_string();
    tokio::spawn(refused_client(handler, events, closed)).await.unwrap()
}

#[test]
fn parity_delay_then_signal_timer() {
    let check = |(start, first, second): (Duration, Duration, Duration), what: &str| {
        assert!(first - start >= ms(10), "{what}: the delay completed after {:?}", first - start);
        assert!(second - start >= ms(30), "{what}: the signal came after {:?}", second - start);
        assert!(first <= second, "{what}");
    };
    let (handler, listener) = node::split::<u32>();
    let watchdog = Watchdog::new(&handler);
    let times =
        futures::executor::block_on(delay_then_signal(handler, listener.into_stream().unwrap()));
    watchdog.check("futures");
    check(times, "natively on futures");
    let (handler, listener) = node::split::<u32>();
    let watchdog = Watchdog::new(&handler);
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let times = runtime.block_on(delay_then_signal(handler, listener.into_stream().unwrap()));
    watchdog.check("tokio");
    check(times, "natively on tokio");

    let seen: Shared<Option<(Duration, Duration, Duration)>> = Arc::default();
    let out = seen.clone();
    let mut world = World::with_seed(3);
    world.node_async("a", move |handler, events| {
        let out = out.clone();
        async move { *out.lock().unwrap() = Some(delay_then_signal(handler, events).await) }
    });
    let real = Instant::now();
    world.run_until_idle();
    let times = seen.lock().unwrap().expect("the node ran to the end");
    check(times, "in a world");
    // Virtual time: exactly on the deadlines.
    assert_eq!(times, (ms(0), ms(10), ms(30)));
    assert!(real.elapsed() < Duration::from_secs(5), "no real waiting");
}

/// While `connected` waits, the events it gathers stay in the stream, in order, and the
/// `Connected` event too; a `connected` future dropped while pending takes nothing either.
/// Returns the events handed out after the connect, up to the first echo.
async fn connected_keeps_events(
    handler: NodeHandler<u32>,
    mut events: NodeStream<u32>,
    server: String,
) -> Vec<String> {
    handler.signals().send(1);
    let (endpoint, _) = handler.network().connect(Transport::FramedTcp, server.as_str()).unwrap();
    {
        // Dropped after one poll (pending then, unless the connect was that fast natively).
        let pending = pin!(events.connected(endpoint));
        let _ = select(pending, futures::future::ready(())).await;
    }
    events.connected(endpoint).await.expect("the connect succeeds");
    handler.signals().send(2);
    handler.network().send(endpoint, b"ping");
    let mut seen = Vec::new();
    while let Some(event) = events.next().await {
        let line = match event {
            StoredNodeEvent::Signal(n) => format!("signal {n}"),
            StoredNodeEvent::Network(StoredNetEvent::Connected(e, ok)) => {
                assert_eq!(e, endpoint);
                format!("connected {ok}")
            }
            StoredNodeEvent::Network(StoredNetEvent::Message(_, data)) => {
                handler.stop();
                format!("echo {}", String::from_utf8_lossy(&data))
            }
            StoredNodeEvent::Network(other) => format!("{other:?}"),
        };
        seen.push(line);
    }
    seen
}

#[test]
fn parity_connected_keeps_the_events_in_the_stream() {
    let expected = ["signal 1", "connected true", "signal 2", "echo ping"];
    // Natively, against a callback echo server on loopback.
    let (server, task, addr) = util::echo_server(Transport::FramedTcp, false);
    let (handler, listener) = node::split::<u32>();
    let watchdog = Watchdog::new(&handler);
    let stream = listener.into_stream().unwrap();
    let seen =
        futures::executor::block_on(connected_keeps_events(handler, stream, addr.to_string()));
    watchdog.check("futures");
    assert_eq!(seen, expected, "natively on futures");
    let (handler, listener) = node::split::<u32>();
    let watchdog = Watchdog::new(&handler);
    let stream = listener.into_stream().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let seen = runtime.block_on(connected_keeps_events(handler, stream, addr.to_string()));
    watchdog.check("tokio");
    assert_eq!(seen, expected, "natively on tokio");
    server.stop();
    drop(task);

    let seen: Shared<Vec<String>> = Arc::default();
    let out = seen.clone();
    let mut world = World::with_seed(6);
    world.node_async("server", |handler: NodeHandler<()>, events| async move {
        handler.network().listen(Transport::FramedTcp, "0.0.0.0:3000").unwrap();
        echo_server(handler, events).await
    });
    world.node_async("client", move |handler, events| {
        let out = out.clone();
        async move {
            *out.lock().unwrap() =
                connected_keeps_events(handler, events, "server:3000".into()).await
        }
    });
    world.run_until_idle();
    assert_eq!(*seen.lock().unwrap(), expected, "in a world");
}

/// A delay awaited alone, nothing polling the stream: it completes all the same.
async fn delay_alone(handler: NodeHandler<()>, events: NodeStream<()>) -> Duration {
    let start = handler.now();
    events.delay(ms(20)).await;
    handler.now() - start
}

#[test]
fn parity_a_delay_completes_without_the_stream_polled() {
    // Nothing here would stop a delay that never fires: a watchdog of its own ends the wait.
    let in_time = |what: &'static str| {
        let (fire, fired) = futures::channel::oneshot::channel::<()>();
        let (cancel, cancelled) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            // Ends as soon as the future below is dropped (`cancel` with it).
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                cancelled.recv_timeout(util::WATCHDOG)
            {
                let _ = fire.send(());
            }
        });
        async move {
            let _cancel = cancel;
            if fired.await.is_ok() {
                panic!("{what}: the delay did not complete within {:?}", util::WATCHDOG);
            }
            std::future::pending::<()>().await
        }
    };
    let (handler, listener) = node::split::<()>();
    let stream = listener.into_stream().unwrap();
    let waited = futures::executor::block_on(async {
        // The watchdog first: `select` polls it first, so a late wake-up cannot pass.
        match select(pin!(in_time("futures")), pin!(delay_alone(handler, stream))).await {
            Either::Left(((), _)) => unreachable!(),
            Either::Right((waited, _)) => waited,
        }
    });
    assert!(waited >= ms(20), "natively on futures: {waited:?}");
    let (handler, listener) = node::split::<()>();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let stream = listener.into_stream().unwrap();
    let waited = runtime.block_on(async {
        let task = tokio::spawn(delay_alone(handler, stream));
        match select(pin!(in_time("tokio")), task).await {
            Either::Left(((), _)) => unreachable!(),
            Either::Right((waited, _)) => waited.unwrap(),
        }
    });
    assert!(waited >= ms(20), "natively on tokio: {waited:?}");

    let seen: Shared<Option<Duration>> = Arc::default();
    let out = seen.clone();
    let mut world = World::with_seed(8);
    world.node_async("a", move |handler, events| {
        let out = out.clone();
        async move { *out.lock().unwrap() = Some(delay_alone(handler, events).await) }
    });
    world.run_until_idle();
    assert_eq!(*seen.lock().unwrap(), Some(ms(20)), "in a world, exactly");
}
