//! `NodeListener`: its modes (for_each, for_each_async, enqueue, try_next, poll_events) and the
//! ordering it promises.

mod util;

use portnet::network::{NetEvent, StoredNetEvent, Transport};
use portnet::node::{self, NodeEvent, StoredNodeEvent};
use std::time::Duration;
use util::Watchdog;

#[test]
fn for_each_borrows_locals_and_returns_after_stop() {
    let (handler, listener) = node::split::<u32>();
    let watchdog = Watchdog::new(&handler);
    let mut seen = Vec::new(); // borrowed mutably by the callback, read after it
    for i in 0..3 {
        handler.signals().send(i);
    }
    listener.for_each(|event| {
        seen.push(event.signal());
        if seen.len() == 3 {
            handler.stop();
        }
    });
    watchdog.check("signals");
    assert_eq!(seen, [0, 1, 2]);
    assert!(!handler.is_running());
}

#[test]
fn priority_signals_first_then_in_order_then_timers_at_their_deadline() {
    let (handler, listener) = node::split::<&str>();
    let watchdog = Watchdog::new(&handler);
    handler.signals().send_with_timer("timer b", Duration::from_millis(40));
    handler.signals().send_with_timer("timer a", Duration::from_millis(20));
    handler.signals().send("first");
    handler.signals().send("second");
    handler.signals().send_with_priority("urgent");
    let cancelled = handler.signals().send_with_timer("cancelled", Duration::from_millis(10));
    assert!(handler.signals().cancel_timer(cancelled));
    let mut order = Vec::new();
    listener.for_each(|event| {
        order.push(event.signal());
        if order.len() == 5 {
            handler.stop();
        }
    });
    watchdog.check("signals and timers");
    assert_eq!(order, ["urgent", "first", "second", "timer a", "timer b"]);
}

#[test]
fn for_each_async_and_enqueue_run_on_their_own_thread() {
    let (handler, listener) = node::split::<u8>();
    let (mut task, mut events) = listener.enqueue();
    handler.signals().send(7);
    assert!(matches!(events.receive_timeout(util::WATCHDOG), Some(StoredNodeEvent::Signal(7))));
    handler.stop();
    task.wait();
    task.wait(); // waiting twice is fine

    let (handler, listener) = node::split::<u8>();
    let (sender, mut receiver) = portnet::events::split();
    let inner = handler.clone();
    let task = listener.for_each_async(move |event| {
        sender.send(event.signal());
        inner.stop();
    });
    handler.signals().send(9);
    assert_eq!(receiver.receive_timeout(util::WATCHDOG), Some(9));
    drop(task); // waits for the stopped node
}

/// A thread that panics past a running `NodeTask` (before its `stop()`) is not held by the
/// task's drop: the node stops, and the panic reaches whoever joins the thread.
#[test]
fn a_node_task_dropped_by_a_panic_stops_the_node() {
    let (handler, listener) = node::split::<()>();
    let (started, start) = std::sync::mpsc::channel();
    let (ended, end) = std::sync::mpsc::channel::<()>();
    let panicking = std::thread::spawn(move || {
        let _ended = ended; // dropped once the thread has unwound past the task
        let _task = listener.for_each_async(move |_| {});
        started.send(()).unwrap();
        panic!("the application panics before it stops the node");
    });
    start.recv_timeout(util::WATCHDOG).expect("the node started");
    let unwound = end.recv_timeout(util::WATCHDOG);
    if unwound.is_err() {
        handler.stop(); // let the thread end, then fail
    }
    let joined = panicking.join();
    assert_eq!(
        unwound,
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected),
        "the task's drop waited for a node nobody stopped"
    );
    assert!(joined.is_err(), "the panic reaches the joiner");
    assert!(!handler.is_running(), "the task's drop stopped the node");
}

/// A game loop: pump without blocking, each frame.
#[test]
fn try_next_and_poll_events_never_block() {
    let (handler, mut listener) = node::split::<()>();
    assert!(listener.try_next().is_none());
    assert_eq!(listener.poll_events(Duration::ZERO, |_| panic!("nothing to deliver")), 0);

    let (_, addr) = handler.network().listen(Transport::FramedTcp, "127.0.0.1:0").unwrap();
    let (client, _) = handler.network().connect(Transport::FramedTcp, addr).unwrap();
    let mut accepted = None;
    let mut connected = false;
    let mut received = Vec::new();
    for _frame in 0..100_000 {
        while let Some(event) = listener.try_next() {
            match event {
                StoredNodeEvent::Network(StoredNetEvent::Connected(ep, ok)) => {
                    assert!(ok && ep == client);
                    connected = true;
                    handler.network().send(client, b"tick");
                }
                StoredNodeEvent::Network(StoredNetEvent::Accepted(ep, _)) => accepted = Some(ep),
                StoredNodeEvent::Network(StoredNetEvent::Message(_, data)) => received.push(data),
                other => panic!("unexpected {other:?}"),
            }
        }
        if received.len() == 1 {
            break;
        }
        // Between frames, wait a little for the network instead of spinning.
        listener.poll_events(Duration::from_millis(1), |event| match event {
            NodeEvent::Network(NetEvent::Message(_, data)) => received.push(data.to_vec()),
            NodeEvent::Network(NetEvent::Connected(_, ok)) => {
                assert!(ok);
                connected = true;
                handler.network().send(client, b"tick");
            }
            NodeEvent::Network(NetEvent::Accepted(ep, _)) => accepted = Some(ep),
            other => panic!("unexpected {other:?}"),
        });
    }
    assert!(connected && accepted.is_some());
    assert_eq!(received, [b"tick".to_vec()]);
}

/// Several frames arrive in one read; the application removes the endpoint at the first.
#[test]
fn nothing_is_handed_out_for_an_endpoint_after_remove() {
    let (handler, mut listener) = node::split::<()>();
    let (_, addr) = handler.network().listen(Transport::FramedTcp, "127.0.0.1:0").unwrap();
    let mut raw = std::net::TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(&mut raw, &[1, b'a', 1, b'b', 1, b'c', 1, b'd']).unwrap();
    let mut messages = 0;
    for _ in 0..100_000 {
        match listener.try_next() {
            Some(StoredNodeEvent::Network(StoredNetEvent::Accepted(..))) => (),
            Some(StoredNodeEvent::Network(StoredNetEvent::Message(ep, _))) => {
                messages += 1;
                assert!(handler.network().remove(ep.resource_id()));
            }
            Some(other) => panic!("unexpected {other:?}"),
            None if messages > 0 => break,
            None => {
                listener.poll_events(Duration::from_millis(1), |event| match event {
                    NodeEvent::Network(NetEvent::Accepted(..)) => (),
                    NodeEvent::Network(NetEvent::Message(ep, _)) => {
                        messages += 1;
                        handler.network().remove(ep.resource_id());
                    }
                    other => panic!("unexpected {other:?}"),
                });
            }
        }
    }
    assert_eq!(messages, 1, "messages delivered after remove");
}

/// Connections waiting in the backlog of a removed listener are never reported.
#[test]
fn a_removed_listener_accepts_nothing_more() {
    let (handler, listener) = node::split::<()>();
    let watchdog = Watchdog::new(&handler);
    let (id, addr) = handler.network().listen(Transport::Tcp, "127.0.0.1:0").unwrap();
    let waiting: Vec<_> = (0..10).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
    handler.signals().send_with_timer((), Duration::from_millis(100));
    let mut accepted = 0;
    listener.for_each(|event| match event {
        NodeEvent::Network(NetEvent::Accepted(_, listener_id)) => {
            assert_eq!(listener_id, id);
            accepted += 1;
            assert!(handler.network().remove(id));
        }
        NodeEvent::Network(NetEvent::Disconnected(_)) => (),
        NodeEvent::Signal(()) => handler.stop(),
        other => panic!("unexpected {other:?}"),
    });
    watchdog.check("accepting");
    assert_eq!(accepted, 1);
    drop(waiting);
}
