//! `NodeStream`, the node's async face: the same echo application on three executors, no
//! event lost to a dropped stream or future, wake-ups only when something may be ready,
//! `writable` after `QueueFull`, delays on the node's clock, and a world's callback node refusing.

mod util;

use futures::StreamExt;
use futures::future::{Either, select};
use portnet::adapters::framed_tcp::FramedTcpConnectConfig;
use portnet::network::{SendStatus, StoredNetEvent, Transport, TransportConnect};
use portnet::node::{self, NodeStream, StoredNodeEvent};
use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use util::{Watchdog, check_payload, payload};

const ROUND_TRIPS: u32 = 50;

/// A client and an echo server in one node, over FramedTcp on loopback: the client sends
/// message `i + 1` when the echo of `i` comes back. Returns the echoes' indexes, in order.
async fn echo_application(mut stream: NodeStream<()>) -> Vec<u32> {
    let handler = stream.handler().clone();
    let (_, addr) = handler.network().listen(Transport::FramedTcp, util::any_port(false)).unwrap();
    let (client, _) = handler.network().connect(Transport::FramedTcp, addr).unwrap();
    let mut echoes = Vec::new();
    while let Some(event) = stream.next().await {
        match event.network() {
            StoredNetEvent::Connected(endpoint, established) => {
                assert!(established && endpoint == client, "connect failed: {endpoint}");
                assert_eq!(handler.network().send(client, &payload(0, 100)), SendStatus::Sent);
            }
            StoredNetEvent::Accepted(..) => (),
            StoredNetEvent::Message(endpoint, data) if endpoint == client => {
                let index = check_payload(&data);
                echoes.push(index);
                if index + 1 == ROUND_TRIPS {
                    handler.stop();
                } else {
                    let status = handler.network().send(client, &payload(index + 1, 100));
                    assert_eq!(status, SendStatus::Sent);
                }
            }
            StoredNetEvent::Message(endpoint, data) => {
                assert_eq!(handler.network().send(endpoint, &data), SendStatus::Sent);
            }
            StoredNetEvent::Disconnected(endpoint) => panic!("{endpoint} disconnected"),
        }
    }
    echoes
}

/// Runs the echo application with `run` (an executor's block_on) and checks the result.
fn echo_on(executor: &str, run: impl FnOnce(NodeStream<()>) -> Vec<u32>) {
    let (handler, listener) = node::split::<()>();
    let watchdog = Watchdog::new(&handler);
    let echoes = run(listener.into_stream().unwrap());
    watchdog.check(executor);
    assert_eq!(echoes, (0..ROUND_TRIPS).collect::<Vec<_>>(), "{executor}");
}

#[test]
fn echo_on_tokio_multi_thread() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    // On a spawned task, so the stream moves between the runtime's worker threads.
    echo_on("tokio multi-thread", |stream| {
        runtime.block_on(async { tokio::spawn(echo_application(stream)).await.unwrap() })
    });
}

#[test]
fn echo_on_tokio_current_thread() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    echo_on("tokio current-thread", |stream| runtime.block_on(echo_application(stream)));
}

#[test]
fn echo_on_futures_block_on() {
    echo_on("futures::executor::block_on", |stream| {
        futures::executor::block_on(echo_application(stream))
    });
}

fn signal(event: Option<StoredNodeEvent<u32>>) -> Option<u32> {
    event.map(StoredNodeEvent::signal)
}

/// Events not handed out stay with the node: after a pending `next()` is dropped, and after
/// the stream gives the listener back, `try_next` and a new stream deliver the rest in order.
#[test]
fn dropping_the_stream_or_a_pending_next_loses_no_event() {
    let (handler, listener) = node::split::<u32>();
    let watchdog = Watchdog::new(&handler);
    for i in 0..10 {
        handler.signals().send(i);
    }
    let mut stream = listener.into_stream().unwrap();
    let first: Vec<u32> = futures::executor::block_on(async {
        let mut first = Vec::new();
        for _ in 0..3 {
            first.push(stream.next().await.unwrap().signal());
        }
        first
    });
    assert_eq!(first, [0, 1, 2]);
    let mut listener = stream.into_listener();
    assert_eq!(signal(listener.try_next()), Some(3));
    assert_eq!(signal(listener.try_next()), Some(4));

    // A new stream carries on; a `next()` dropped while pending takes nothing.
    let mut stream = listener.into_stream().unwrap();
    let rest: Vec<u32> = futures::executor::block_on(async {
        let mut rest = Vec::new();
        while rest.len() < 5 {
            rest.push(stream.next().await.unwrap().signal());
        }
        rest
    });
    assert_eq!(rest, [5, 6, 7, 8, 9]);
    assert!(futures::FutureExt::now_or_never(stream.next()).is_none(), "nothing is ready");
    // Sent while the waiter may be in the poll: it keeps what it gathers for the listener.
    let sender = handler.clone();
    std::thread::spawn(move || (10..20).for_each(|i| sender.signals().send(i))).join().unwrap();
    let mut listener = stream.into_listener();
    // Queued before the listener came back, whether the waiter gathered them or not.
    let late: Vec<u32> = (0..10).filter_map(|_| signal(listener.try_next())).collect();
    assert_eq!(late, (10..20).collect::<Vec<_>>());
    assert_eq!(signal(listener.try_next()), None);
    watchdog.check("signals after the stream");
}

/// A connection's send queue fills against a peer that does not read; `writable` completes
/// once the peer reads (with the stream polled beside it), and `send` is accepted again.
#[test]
fn writable_completes_after_queue_full_once_the_peer_reads() {
    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = peer.local_addr().unwrap();
    let (start, started) = mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let (mut socket, _) = peer.accept().unwrap();
        socket.set_read_timeout(Some(util::WATCHDOG)).unwrap();
        let _ = started.recv_timeout(util::WATCHDOG);
        let (mut total, mut buf) = (0usize, vec![0; 1 << 16]);
        loop {
            match socket.read(&mut buf).expect("read (watchdog timeout?)") {
                0 => return total,
                n => total += n,
            }
        }
    });
    let (handler, listener) = node::split::<()>();
    let watchdog = Watchdog::new(&handler);
    let config = FramedTcpConnectConfig::default().with_send_queue_limit(256 * 1024);
    let (endpoint, _) =
        handler.network().connect_sync_with(TransportConnect::FramedTcp(config), addr).unwrap();
    let mut stream = listener.into_stream().unwrap();
    let message = payload(0, 64 * 1024);
    let mut sent = 0;
    let full = (0..10_000).any(|_| match handler.network().send(endpoint, &message) {
        SendStatus::Sent => {
            sent += 1;
            false
        }
        SendStatus::QueueFull => true,
        status => panic!("send: {status:?}"),
    });
    assert!(full, "the queue never filled ({sent} messages sent)");
    let mut writable = handler.writable(endpoint);
    start.send(()).unwrap();
    let completed = futures::executor::block_on(async {
        loop {
            match select(stream.next(), &mut writable).await {
                Either::Left((
                    Some(StoredNodeEvent::Network(StoredNetEvent::Disconnected(e))),
                    _,
                )) => {
                    panic!("{e} disconnected")
                }
                Either::Left((Some(_), _)) => (),
                Either::Left((None, _)) => return false, // stopped: the watchdog
                Either::Right(((), _)) => return true,
            }
        }
    });
    assert!(completed, "writable never completed");
    assert_eq!(handler.network().send(endpoint, &message), SendStatus::Sent);
    handler.stop();
    watchdog.check("writable");
    // The last of the node flushes what was queued, then closes: the reader sees the end.
    drop((stream, handler));
    let total = reader.join().unwrap();
    assert!(total >= (sent + 1) * message.len(), "the peer read {total} bytes");
}

#[test]
fn writable_of_a_removed_endpoint_completes_at_once() {
    let (handler, listener) = node::split::<()>();
    let (_, addr) = handler.network().listen(Transport::FramedTcp, util::any_port(false)).unwrap();
    let (endpoint, _) = handler.network().connect_sync(Transport::FramedTcp, addr).unwrap();
    assert!(handler.network().remove(endpoint.resource_id()));
    let _stream = listener.into_stream().unwrap();
    assert!(futures::FutureExt::now_or_never(handler.writable(endpoint)).is_some());
}

/// A delay completes on the node's clock, no earlier than asked, while the stream is polled
/// beside it; a dropped delay is cancelled and a later one still completes.
async fn delays_complete(mut stream: NodeStream<u32>) {
    let handler = stream.handler().clone();
    let dropped = stream.delay(Duration::from_millis(10));
    drop(dropped);
    let start = handler.now();
    let delay = stream.delay(Duration::from_millis(50));
    match select(stream.next(), delay).await {
        Either::Left((Some(event), _)) => panic!("no event expected: {event:?}"),
        Either::Left((None, _)) => panic!("the node stopped first (watchdog)"),
        Either::Right(((), _)) => (),
    }
    let waited = handler.now() - start;
    assert!(waited >= Duration::from_millis(50), "completed after {waited:?}");
    handler.stop();
    assert!(stream.next().await.is_none(), "the stream ends after stop");
}

#[test]
fn delay_completes_on_the_node_clock_on_both_executors() {
    let (handler, listener) = node::split::<u32>();
    let watchdog = Watchdog::new(&handler);
    futures::executor::block_on(delays_complete(listener.into_stream().unwrap()));
    watchdog.check("delay on block_on");

    let (handler, listener) = node::split::<u32>();
    let watchdog = Watchdog::new(&handler);
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(delays_complete(listener.into_stream().unwrap()));
    watchdog.check("delay on tokio");
}

/// In a world, a callback node has no executor to poll a stream (`World::node_async` has):
/// `into_stream` says so, as an error (tests/sim_async.rs covers async nodes).
#[test]
fn into_stream_in_a_callback_node_of_a_world_is_unsupported() {
    let result = Arc::new(Mutex::new(None));
    let seen = result.clone();
    let mut world = portnet::sim::World::with_seed(1);
    world.node("a", move |_handler, listener: node::NodeListener<()>| {
        *seen.lock().unwrap() = Some(listener.into_stream().err().map(|e| e.kind()));
    });
    world.run_until_idle();
    let result = *result.lock().unwrap();
    assert_eq!(result, Some(Some(std::io::ErrorKind::Unsupported)));
}

/// Counts its wake-ups and reports each one on a channel.
struct CountingWaker {
    wakes: AtomicUsize,
    woken: Mutex<mpsc::Sender<()>>,
}

impl std::task::Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        let _ = self.woken.lock().unwrap().send(());
    }
}

/// No polling loop: waiting 100 ms for a signal timer wakes the task about twice (the wake-up
/// of the send, then the timer), where a loop polling every millisecond would wake it ~100
/// times.
#[test]
fn the_stream_is_woken_only_when_something_may_be_ready() {
    use std::task::{Context, Poll};
    let (handler, listener) = node::split::<u32>();
    let mut stream = listener.into_stream().unwrap();
    let (woken, wakes) = mpsc::channel();
    let counter = Arc::new(CountingWaker { wakes: Default::default(), woken: Mutex::new(woken) });
    let waker = std::task::Waker::from(counter.clone());
    let mut cx = Context::from_waker(&waker);
    let mut poll = || futures::Stream::poll_next(std::pin::Pin::new(&mut stream), &mut cx);
    assert!(poll().is_pending());
    handler.signals().send_with_timer(7, Duration::from_millis(100));
    let mut got = None;
    for _ in 0..10 {
        wakes.recv_timeout(util::WATCHDOG).expect("the task was never woken");
        match poll() {
            Poll::Ready(event) => {
                got = event.map(StoredNodeEvent::signal);
                break;
            }
            Poll::Pending => (),
        }
    }
    assert_eq!(got, Some(7));
    let count = counter.wakes.load(Ordering::SeqCst);
    assert!(count <= 3, "woken {count} times for one timer");
}

/// Dropping the stream just after it went pending (the waiter may not have taken the listener
/// yet) must not leave the waiter in the poll with nobody to wake it.
#[test]
fn dropping_a_stream_that_just_went_pending_returns() {
    let _abort = util::AbortAfter::start("dropping a pending stream", util::WATCHDOG);
    for _ in 0..200 {
        let (_handler, listener) = node::split::<()>();
        let mut stream = listener.into_stream().unwrap();
        assert!(futures::FutureExt::now_or_never(stream.next()).is_none());
        drop(stream);
    }
}
