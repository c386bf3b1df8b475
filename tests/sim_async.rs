//! Async nodes in the simulator (`World::node_async`): echo under loss, partition and
//! crash-restart, virtual-time delays, `writable`, awaitable connect, determinism and
//! shrinking; and parity cases whose one async application body runs natively (loopback
//! sockets, under tokio and futures' executor) and in a world, with the same assertions.

mod util;

use futures::StreamExt;
use futures::future::{Either, select};
use portnet::adapters::framed_tcp::FramedTcpConnectConfig;
use portnet::network::{SendStatus, StoredNetEvent, Transport, TransportConnect};
use portnet::node::{self, NodeHandler, NodeListener, NodeStream, StoredNodeEvent};
use portnet::sim::{self, Link, World};
use std::io::ErrorKind;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
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

// ----- the simulator alone -----

/// The same echo written with callbacks and as async nodes: the world runs both the same way,
/// line for line of the trace.
#[test]
fn callback_and_async_nodes_give_the_same_trace() {
    use portnet::network::NetEvent;
    use portnet::node::NodeEvent;
    let scenario = |world: &mut World, callbacks: bool| {
        world.set_default_link(Link {
            latency: ms(3),
            jitter: ms(2),
            loss: 0.1,
            ..Link::default()
        });
        if callbacks {
            world.node("server", |handler: NodeHandler<()>, listener: NodeListener<()>| {
                handler.network().listen(Transport::FramedTcp, "0.0.0.0:3000").unwrap();
                listener.for_each(|event| {
                    if let NodeEvent::Network(NetEvent::Message(endpoint, data)) = event {
                        handler.network().send(endpoint, data);
                    }
                });
            });
            world.node("client", |handler: NodeHandler<()>, listener: NodeListener<()>| {
                let (server, _) =
                    handler.network().connect(Transport::FramedTcp, "server:3000").unwrap();
                listener.for_each(|event| match event.network() {
                    NetEvent::Connected(..) => {
                        handler.network().send(server, &0u32.to_be_bytes());
                    }
                    NetEvent::Message(_, data) => {
                        let index = u32::from_be_bytes(data.try_into().unwrap());
                        if index + 1 == ECHOES {
                            handler.stop();
                        } else {
                            handler.network().send(server, &(index + 1).to_be_bytes());
                        }
                    }
                    _ => (),
                });
            });
        } else {
            world.node_async("server", |handler: NodeHandler<()>, events| async move {
                handler.network().listen(Transport::FramedTcp, "0.0.0.0:3000").unwrap();
                echo_server(handler, events).await
            });
            world.node_async("client", |handler: NodeHandler<()>, mut events| async move {
                let (server, _) =
                    handler.network().connect(Transport::FramedTcp, "server:3000").unwrap();
                while let Some(event) = events.next().await {
                    match event.network() {
                        StoredNetEvent::Connected(..) => {
                            handler.network().send(server, &0u32.to_be_bytes());
                        }
                        StoredNetEvent::Message(_, data) => {
                            let index = u32::from_be_bytes(data.try_into().unwrap());
                            if index + 1 == ECHOES {
                                handler.stop();
                            } else {
                                handler.network().send(server, &(index + 1).to_be_bytes());
                            }
                        }
                        _ => (),
                    }
                }
            });
        }
        world.run_until_idle();
        assert!(world.is_finished("client"));
        world.trace()
    };
    for seed in 0..3 {
        let callbacks = scenario(&mut World::with_seed(seed), true);
        let futures = scenario(&mut World::with_seed(seed), false);
        assert!(callbacks.len() > 2 * ECHOES as usize, "{}", callbacks.len());
        assert_eq!(callbacks, futures, "seed {seed}");
    }
}

/// A client that survives faults: it reconnects when the connection fails, drops or stays
/// silent for 1 s (virtual), and resends the request in flight. Records each echo it accepts.
async fn retrying_client(
    handler: NodeHandler<()>,
    mut events: NodeStream<()>,
    count: u32,
    answers: Shared<Vec<u32>>,
    connects: Arc<AtomicU64>,
) {
    let mut next = 0u32;
    'connect: loop {
        connects.fetch_add(1, Ordering::Relaxed);
        let (endpoint, _) = handler.network().connect(Transport::FramedTcp, "server:3000").unwrap();
        if events.connected(endpoint).await.is_err() {
            events.delay(ms(200)).await;
            continue;
        }
        handler.network().send(endpoint, &next.to_be_bytes());
        loop {
            let silence = pin!(events.delay(Duration::from_secs(1)));
            let event = match select(silence, events.next()).await {
                Either::Left(((), _)) => {
                    handler.network().remove(endpoint.resource_id());
                    continue 'connect;
                }
                Either::Right((event, _)) => event.expect("the client never stops early"),
            };
            match event.network() {
                StoredNetEvent::Message(e, data) if e == endpoint => {
                    let index = u32::from_be_bytes(data.try_into().unwrap());
                    if index != next {
                        continue; // a late echo of a request sent again
                    }
                    answers.lock().unwrap().push(index);
                    next += 1;
                    if next == count {
                        handler.stop();
                        return;
                    }
                    handler.network().send(endpoint, &next.to_be_bytes());
                }
                StoredNetEvent::Disconnected(e) if e == endpoint => {
                    events.delay(ms(100)).await;
                    continue 'connect;
                }
                _ => (),
            }
        }
    }
}

struct Faulty {
    answers: Shared<Vec<u32>>,
    server_starts: Arc<AtomicU64>,
    connects: Arc<AtomicU64>,
}

const REQUESTS: u32 = 200;

/// The echo server and the retrying client on a lossy, jittery link, with a partition and a
/// crash-restart of the server in the middle.
fn faulty_echo(world: &mut World) -> Faulty {
    world.set_default_link(Link { latency: ms(5), jitter: ms(3), loss: 0.05, ..Link::default() });
    let server_starts = Arc::new(AtomicU64::new(0));
    let starts = server_starts.clone();
    world.node_async("server", move |handler: NodeHandler<()>, events| {
        starts.fetch_add(1, Ordering::Relaxed);
        async move {
            handler.network().listen(Transport::FramedTcp, "0.0.0.0:3000").unwrap();
            echo_server(handler, events).await
        }
    });
    let answers: Shared<Vec<u32>> = Arc::default();
    let connects = Arc::new(AtomicU64::new(0));
    let (out, count) = (answers.clone(), connects.clone());
    world.node_async("client", move |handler, events| {
        retrying_client(handler, events, REQUESTS, out.clone(), count.clone())
    });
    world.at(ms(300), |w| w.partition("client", "server"));
    world.at(ms(2500), |w| w.heal());
    world.at(ms(4000), |w| w.crash("server"));
    world.at(ms(4700), |w| w.restart("server"));
    world.run_until(|w| w.is_finished("client"));
    Faulty { answers, server_starts, connects }
}

#[test]
fn echo_survives_loss_partition_and_crash_restart() {
    for seed in 0..4 {
        let mut world = World::with_seed(seed);
        let faulty = faulty_echo(&mut world);
        assert!(world.is_finished("client"), "seed {seed}: the client finished");
        let answers = faulty.answers.lock().unwrap().clone();
        assert_eq!(answers, (0..REQUESTS).collect::<Vec<_>>(), "seed {seed}");
        assert_eq!(faulty.server_starts.load(Ordering::Relaxed), 2, "restarted from the start");
        let connects = faulty.connects.load(Ordering::Relaxed);
        assert!(
            connects >= 3,
            "seed {seed}: the partition and the crash made it reconnect: {connects}"
        );
        let trace = world.trace();
        assert!(trace.iter().any(|l| l.contains("crash")), "seed {seed}");
        assert!(world.now() > ms(4700), "seed {seed}: finished after the restart");
    }
}

#[test]
fn same_seed_same_run_for_async_nodes() {
    for seed in [1, 17, 99] {
        let scenario = |world: &mut World| {
            faulty_echo(world);
        };
        sim::check_determinism(seed, scenario).unwrap();
    }
    // And the record covers what the async applications were handed.
    let mut world = World::with_seed(5);
    world.record_app_events();
    faulty_echo(&mut world);
    let events = world.app_events();
    let client = &events["client"];
    assert!(client.len() > REQUESTS as usize, "every echo is recorded: {}", client.len());
    assert!(events["server"].iter().any(|l| l.contains("message")), "{:?}", &events["server"][..3]);
}

/// The check catches an async application that is not deterministic: here its delay depends
/// on a counter that outlives the run.
#[test]
fn check_determinism_catches_a_nondeterministic_async_node() {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let scenario = |world: &mut World| {
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        world.node_async("a", move |handler: NodeHandler<u32>, mut events| async move {
            events.delay(ms(10 + run)).await;
            handler.signals().send(1);
            let _ = events.next().await;
            handler.stop();
        });
        world.run_until_idle();
    };
    let error = sim::check_determinism(7, scenario).expect_err("the runs differ");
    assert!(error.contains("differ"), "{error}");
}

/// A world's seed fixes what an async node sees, and differs between seeds: loss on Udp.
#[test]
fn different_seeds_different_async_runs() {
    let run = |seed| {
        let mut world = World::with_seed(seed);
        let got = naive_udp(&mut world);
        (world.trace(), got)
    };
    assert_eq!(run(11), run(11));
    let distinct: std::collections::BTreeSet<_> = (0..6).map(|s| run(s).0).collect();
    assert!(distinct.len() > 1, "seeds change the run");
}

/// A naive async Udp client: five requests, no retries, then waits 1 s (virtual) for the
/// answers. Returns how many came.
fn naive_udp(world: &mut World) -> u32 {
    world.set_default_link(Link { loss: 0.2, jitter: ms(2), ..Link::default() });
    world.node_async("server", |handler: NodeHandler<()>, events| async move {
        handler.network().listen(Transport::Udp, "0.0.0.0:7000").unwrap();
        echo_server(handler, events).await
    });
    let answers = Arc::new(Mutex::new(0));
    let counted = answers.clone();
    world.node_async("client", move |handler: NodeHandler<()>, mut events| {
        let counted = counted.clone();
        async move {
            let (server, _) = handler.network().connect(Transport::Udp, "server:7000").unwrap();
            events.connected(server).await.unwrap();
            for i in 0..5u8 {
                handler.network().send(server, &[i]);
            }
            let mut deadline = pin!(events.delay(Duration::from_secs(1)));
            loop {
                match select(deadline.as_mut(), events.next()).await {
                    Either::Left(_) => break,
                    Either::Right((
                        Some(StoredNodeEvent::Network(StoredNetEvent::Message(..))),
                        _,
                    )) => *counted.lock().unwrap() += 1,
                    Either::Right(_) => (),
                }
            }
            handler.stop();
        }
    });
    world.run_until(|w| w.is_finished("client"));
    *answers.lock().unwrap()
}

#[test]
fn runner_and_shrinking_work_on_async_nodes() {
    let scenario = |world: &mut World| assert_eq!(naive_udp(world), 5, "answers lost");
    let failures = sim::run_seeds(0..40, scenario);
    assert!(!failures.is_empty(), "20 % loss on 10 datagrams must break some of 40 seeds");
    assert!(failures.len() < 40, "and spare some");
    let shrunk = sim::shrink(failures[0].seed, scenario).expect("the seed fails again");
    assert_eq!(shrunk.faults.len(), 1, "{shrunk}");
    assert!(shrunk.faults[0].description.contains("lose a datagram"), "{shrunk}");
}

/// `writable` in virtual time: a bandwidth-limited link fills the send queue, the sender
/// awaits room (beside its stream, as natively) and every chunk arrives.
#[test]
fn writable_paces_an_async_sender_by_the_link() {
    const CHUNK: usize = 16 * 1024;
    const CHUNKS: u32 = 60;
    let mut world = World::with_seed(3);
    world.set_default_link(Link { bandwidth: Some(1_000_000), ..Link::default() });
    let received = Arc::new(AtomicU64::new(0));
    let bytes = received.clone();
    world.node_async("receiver", move |handler: NodeHandler<()>, mut events| {
        let bytes = bytes.clone();
        async move {
            handler.network().listen(Transport::FramedTcp, "0.0.0.0:3000").unwrap();
            while let Some(event) = events.next().await {
                if let StoredNetEvent::Message(_, data) = event.network() {
                    bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
        }
    });
    let full = Arc::new(AtomicU64::new(0));
    let count_full = full.clone();
    let sent_all: Shared<Option<Duration>> = Arc::default();
    let done_at = sent_all.clone();
    world.node_async("sender", move |handler: NodeHandler<()>, mut events| {
        let (count_full, done) = (count_full.clone(), done_at.clone());
        async move {
            let config = FramedTcpConnectConfig::default().with_send_queue_limit(64 * 1024);
            let connect = TransportConnect::FramedTcp(config);
            let (peer, _) = handler.network().connect_with(connect, "receiver:3000").unwrap();
            events.connected(peer).await.unwrap();
            let mut sent = 0;
            while sent < CHUNKS {
                match handler.network().send(peer, &vec![7u8; CHUNK]) {
                    SendStatus::Sent => sent += 1,
                    SendStatus::QueueFull => {
                        count_full.fetch_add(1, Ordering::Relaxed);
                        let room = pin!(handler.writable(peer));
                        // Natively the stream must be polled beside it; here too it may be.
                        let mut room = room;
                        loop {
                            match select(room.as_mut(), events.next()).await {
                                Either::Left(((), _)) => break,
                                Either::Right((event, _)) => assert!(event.is_some()),
                            }
                        }
                    }
                    other => panic!("{other:?}"),
                }
            }
            *done.lock().unwrap() = Some(handler.now());
            events.delay(Duration::from_secs(5)).await;
            handler.stop();
        }
    });
    world.run_until(|w| w.is_finished("sender"));
    assert!(full.load(Ordering::Relaxed) > 5, "the 64 KiB queue filled repeatedly");
    assert_eq!(
        received.load(Ordering::Relaxed),
        CHUNKS as u64 * CHUNK as u64,
        "every chunk arrived"
    );
    // About 1 MB at 1 MB/s, less what the queue still held.
    let seconds = sent_all.lock().unwrap().expect("all sent").as_secs_f64();
    assert!((0.8..1.2).contains(&seconds), "bandwidth-bound, in virtual time: {seconds} s");
    assert!(world.now() >= Duration::from_secs(5), "the final delay, in virtual time");
}

/// `into_listener` and a new `into_stream` inside an async node: nothing lost, in order; a
/// callback node still gets `Unsupported` from `into_stream`.
#[test]
fn into_listener_and_back_inside_an_async_node() {
    let seen: Shared<Vec<u32>> = Arc::default();
    let out = seen.clone();
    let mut world = World::with_seed(2);
    world.node_async("a", move |handler: NodeHandler<u32>, mut events| {
        let out = out.clone();
        async move {
            for i in 0..10 {
                handler.signals().send_with_timer(i, ms(u64::from(i)));
            }
            for _ in 0..3 {
                if let Some(StoredNodeEvent::Signal(i)) = events.next().await {
                    out.lock().unwrap().push(i);
                }
            }
            let listener: NodeListener<u32> = events.into_listener();
            let mut events = listener.into_stream().expect("again, under the same executor");
            while let Some(event) = events.next().await {
                if let StoredNodeEvent::Signal(i) = event {
                    out.lock().unwrap().push(i);
                    if i == 9 {
                        handler.stop();
                    }
                }
            }
        }
    });
    let kind: Shared<Option<ErrorKind>> = Arc::default();
    let out = kind.clone();
    world.node("callback", move |_handler, listener: NodeListener<()>| {
        *out.lock().unwrap() = listener.into_stream().err().map(|e| e.kind());
    });
    world.run_until_idle();
    assert_eq!(*seen.lock().unwrap(), (0..10).collect::<Vec<_>>());
    assert_eq!(*kind.lock().unwrap(), Some(ErrorKind::Unsupported));
    assert_eq!(world.now(), ms(9));
}

/// A waker passed between nodes (a channel) wakes the waiting node at the current virtual
/// time, though it polls no stream.
#[test]
fn a_channel_between_async_nodes_wakes_the_receiver() {
    let (tx, rx) = futures::channel::oneshot::channel::<Duration>();
    let tx = Mutex::new(Some(tx));
    let rx = Mutex::new(Some(rx));
    let got: Shared<Option<(Duration, Duration)>> = Arc::default();
    let out = got.clone();
    let mut world = World::with_seed(4);
    world.node_async("receiver", move |handler: NodeHandler<()>, _events| {
        let rx = rx.lock().unwrap().take().expect("runs once");
        let out = out.clone();
        async move {
            let sent_at = rx.await.expect("sent");
            *out.lock().unwrap() = Some((sent_at, handler.now()));
        }
    });
    world.node_async("sender", move |handler: NodeHandler<()>, events| {
        let tx = tx.lock().unwrap().take().expect("runs once");
        async move {
            events.delay(ms(250)).await;
            let _ = tx.send(handler.now());
        }
    });
    world.run_until_idle();
    assert!(world.is_finished("receiver"), "woken and finished");
    let (sent_at, woken_at) = got.lock().unwrap().expect("the receiver got it");
    assert_eq!(sent_at, ms(250));
    assert_eq!(woken_at, sent_at, "woken at the same virtual instant");
}

/// A crashed async client is dropped where it awaits; restarted, it runs from the start and
/// still gets every answer.
#[test]
fn a_crashed_async_client_restarts_from_the_start() {
    let mut world = World::with_seed(9);
    world.set_default_link(Link { latency: ms(5), jitter: ms(2), ..Link::default() });
    world.node_async("server", |handler: NodeHandler<()>, events| async move {
        handler.network().listen(Transport::FramedTcp, "0.0.0.0:3000").unwrap();
        echo_server(handler, events).await
    });
    let answers: Shared<Vec<u32>> = Arc::default();
    let (starts, connects) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (out, started, count) = (answers.clone(), starts.clone(), connects.clone());
    world.node_async("client", move |handler, events| {
        started.fetch_add(1, Ordering::Relaxed);
        retrying_client(handler, events, REQUESTS, out.clone(), count.clone())
    });
    world.at(ms(600), |w| w.crash("client"));
    world.at(ms(900), |w| w.restart("client"));
    world.run_until(|w| w.is_finished("client"));
    assert_eq!(starts.load(Ordering::Relaxed), 2);
    let answers = answers.lock().unwrap().clone();
    let before = answers.len() - REQUESTS as usize;
    assert!(before > 0, "the first life got some answers before the crash");
    assert!(answers[..before].iter().copied().eq(0..before as u32), "{:?}", &answers[..before]);
    assert!(answers[before..].iter().copied().eq(0..REQUESTS), "the second life from 0");
    assert!(world.trace().iter().any(|l| l.contains("client: crash")), "crashed");
}

/// A connect that times out (the server is cut off) fails `connected`, in virtual time.
#[test]
fn connected_fails_after_the_connect_timeout() {
    let outcome: Shared<Option<(ErrorKind, Duration)>> = Arc::default();
    let out = outcome.clone();
    let mut world = World::with_seed(10);
    world.node_async("server", |handler: NodeHandler<()>, events| async move {
        handler.network().listen(Transport::FramedTcp, "0.0.0.0:3000").unwrap();
        echo_server(handler, events).await
    });
    world.node_async("client", move |handler: NodeHandler<()>, mut events| {
        let out = out.clone();
        async move {
            let config = FramedTcpConnectConfig::default().with_connect_timeout(ms(1500));
            let connect = TransportConnect::FramedTcp(config);
            let (server, _) = handler.network().connect_with(connect, "server:3000").unwrap();
            let error = events.connected(server).await.expect_err("cut off");
            *out.lock().unwrap() = Some((error.kind(), handler.now()));
            handler.stop();
        }
    });
    world.isolate("server");
    world.run_until(|w| w.is_finished("client"));
    let (kind, at) = outcome.lock().unwrap().expect("decided");
    assert_eq!(kind, ErrorKind::ConnectionRefused);
    assert_eq!(at, ms(1500), "at the connect timeout, in virtual time");
}

/// A future that keeps waking itself is polled again at once; every so often the executor
/// lets the world run (virtual time does not move for it), and it completes.
#[test]
fn a_self_waking_future_completes_without_time_passing() {
    struct YieldTimes(u32);
    impl std::future::Future for YieldTimes {
        type Output = ();
        fn poll(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<()> {
            if self.0 == 0 {
                return std::task::Poll::Ready(());
            }
            self.0 -= 1;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
    let done: Shared<Option<Duration>> = Arc::default();
    let out = done.clone();
    let mut world = World::with_seed(11);
    world.node_async("a", move |handler: NodeHandler<()>, _events| {
        let out = out.clone();
        async move {
            YieldTimes(5000).await;
            *out.lock().unwrap() = Some(handler.now());
        }
    });
    world.run_until_idle();
    assert_eq!(*done.lock().unwrap(), Some(Duration::ZERO));
}
