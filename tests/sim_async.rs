//! Async nodes in the simulator (`World::node_async`): echo under loss, partition and
//! crash-restart, the same trace as callback nodes, virtual-time delays, `writable`, awaitable
//! connect, wakers between nodes, determinism and shrinking. tests/async_parity.rs runs async
//! bodies natively and in a world with the same assertions.

use futures::StreamExt;
use futures::future::{Either, select};
use portnet::adapters::framed_tcp::FramedTcpConnectConfig;
use portnet::network::{SendStatus, StoredNetEvent, Transport, TransportConnect};
use portnet::node::{NodeHandler, NodeListener, NodeStream, StoredNodeEvent};
use portnet::sim::{self, Link, World};
use std::io::ErrorKind;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Shared<T> = Arc<Mutex<T>>;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Echoes every message back on its connection, until the node stops.
async fn echo_server(handler: NodeHandler<()>, mut events: NodeStream<()>) {
    while let Some(event) = events.next().await {
        if let StoredNetEvent::Message(endpoint, data) = event.network() {
            handler.network().send(endpoint, &data);
        }
    }
}

/// Round trips of the echo in `callback_and_async_nodes_give_the_same_trace`.
const ECHOES: u32 = 20;

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
