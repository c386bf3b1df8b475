//! The simulator tests' applications (ordinary node functions, the ones a user writes) and the
//! log they report to: shared by tests/sim_world.rs, tests/sim_faults.rs and tests/sim_links.rs.

use portnet::network::{NetEvent, SendStatus, Transport};
use portnet::node::{NodeEvent, NodeHandler, NodeListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// An application function, as `World::node` takes it.
pub trait App<S>: Fn(NodeHandler<S>, NodeListener<S>) + Send + Sync + 'static {}
impl<S, F: Fn(NodeHandler<S>, NodeListener<S>) + Send + Sync + 'static> App<S> for F {}

/// What nodes (and world actions) report to the test, in the order it happened. Nodes run one
/// at a time, so the order is the simulation's.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub fn push(&self, line: impl Into<String>) {
        self.0.lock().unwrap().push(line.into());
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    pub fn count(&self, prefix: &str) -> usize {
        self.lines().iter().filter(|l| l.starts_with(prefix)).count()
    }

    /// The lines that start with `prefix`, with the prefix cut off.
    pub fn with(&self, prefix: &str) -> Vec<String> {
        self.lines().iter().filter_map(|l| l.strip_prefix(prefix)).map(str::to_string).collect()
    }

    pub fn position(&self, line: &str) -> usize {
        let lines = self.lines();
        lines.iter().position(|l| l == line).unwrap_or_else(|| panic!("no {line:?} in {lines:?}"))
    }
}

pub fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// The virtual time stamped on a trace line.
pub fn stamp(line: &str) -> f64 {
    line.split_whitespace().next().and_then(|t| t.parse().ok()).expect("a time-stamped line")
}

/// Trace lines of messages delivered to `node`.
pub fn deliveries_to(trace: &[String], node: &str) -> Vec<String> {
    let needle = format!(" {node} <- Message(");
    trace.iter().filter(|l| l.contains(&needle)).cloned().collect()
}

// ----- applications -----

/// A FramedTcp (or Ws) server answering every request `x` with `re:x`.
pub fn reply_server(transport: Transport, port: u16, log: Log) -> impl App<()> {
    move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.network().listen(transport, ("0.0.0.0", port)).unwrap();
        log.push("server up");
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Message(endpoint, data)) => {
                log.push(format!("request {}", text(data)));
                let reply = [b"re:", data].concat();
                assert_eq!(handler.network().send(endpoint, &reply), SendStatus::Sent);
            }
            NodeEvent::Network(NetEvent::Disconnected(_)) => log.push("disconnected"),
            _ => (),
        });
    }
}

#[derive(Debug)]
pub enum Tick {
    Next,
    GiveUp,
}

/// Sends `count` requests over a stream, one every `every`, and stops when every answer came.
pub fn paced_client(target: &'static str, count: u32, every: Duration, log: Log) -> impl App<Tick> {
    move |handler: NodeHandler<Tick>, listener: NodeListener<Tick>| {
        let (server, _) = handler.network().connect(Transport::FramedTcp, target).unwrap();
        handler.signals().send_with_timer(Tick::GiveUp, Duration::from_secs(60));
        let (mut sent, mut answered) = (0, 0);
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Connected(_, ok)) => {
                assert!(ok, "connect to {target}");
                handler.signals().send(Tick::Next);
            }
            NodeEvent::Signal(Tick::Next) => {
                let status = handler.network().send(server, format!("{sent}").as_bytes());
                assert_eq!(status, SendStatus::Sent);
                log.push(format!("sent {sent}"));
                sent += 1;
                if sent < count {
                    handler.signals().send_with_timer(Tick::Next, every);
                }
            }
            NodeEvent::Network(NetEvent::Message(_, data)) => {
                log.push(format!("got {}", text(data)));
                answered += 1;
                if answered == count {
                    handler.stop();
                }
            }
            NodeEvent::Signal(Tick::GiveUp) => {
                log.push("gave up");
                handler.stop();
            }
            NodeEvent::Network(other) => panic!("client: unexpected {other:?}"),
        });
    }
}

/// A Udp server acknowledging every `req N` with `ack N`.
pub fn ack_server(port: u16, log: Log) -> impl App<()> {
    move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.network().listen(Transport::Udp, ("0.0.0.0", port)).unwrap();
        listener.for_each(|event| {
            if let NodeEvent::Network(NetEvent::Message(endpoint, data)) = event {
                let request = text(data);
                log.push(format!("got {request}"));
                let n = request.strip_prefix("req ").expect("a request");
                handler.network().send(endpoint, format!("ack {n}").as_bytes());
            }
        });
    }
}

#[derive(Debug)]
pub enum Retry {
    Resend(u32),
    GiveUp,
}

/// Sends requests `0..count` over Udp one at a time, resending each every `every` until it is
/// acknowledged (stop-and-wait).
pub fn retry_client(
    target: &'static str,
    count: u32,
    every: Duration,
    log: Log,
) -> impl App<Retry> {
    move |handler: NodeHandler<Retry>, listener: NodeListener<Retry>| {
        let (server, _) = handler.network().connect(Transport::Udp, target).unwrap();
        handler.signals().send_with_timer(Retry::GiveUp, Duration::from_secs(600));
        let send = |n: u32| {
            assert_eq!(
                handler.network().send(server, format!("req {n}").as_bytes()),
                SendStatus::Sent
            );
            handler.signals().send_with_timer(Retry::Resend(n), every);
        };
        let mut current = 0;
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Connected(_, ok)) => {
                assert!(ok, "a Udp connect succeeds at once");
                log.push("sent 0");
                send(0);
            }
            NodeEvent::Network(NetEvent::Message(_, data)) => {
                let ack = text(data);
                log.push(format!("received {ack}"));
                if ack == format!("ack {current}") {
                    log.push(format!("acked {current}"));
                    current += 1;
                    if current == count {
                        handler.stop();
                    } else {
                        log.push(format!("sent {current}"));
                        send(current);
                    }
                }
            }
            NodeEvent::Signal(Retry::Resend(n)) if n == current => {
                log.push(format!("resent {n}"));
                send(n);
            }
            NodeEvent::Signal(Retry::Resend(_)) => (), // acknowledged meanwhile
            NodeEvent::Signal(Retry::GiveUp) => {
                log.push("gave up");
                handler.stop();
            }
            NodeEvent::Network(other) => panic!("retry client: unexpected {other:?}"),
        });
    }
}

/// Listens on Udp `port` and logs every datagram as `from <peer node> <text>`; stops after
/// `stop_after` of virtual time.
pub fn udp_sink(port: u16, stop_after: Duration, log: Log) -> impl App<()> {
    move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.network().listen(Transport::Udp, ("0.0.0.0", port)).unwrap();
        handler.signals().send_with_timer((), stop_after);
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Message(_, data)) => {
                log.push(format!("got {}", text(data)))
            }
            NodeEvent::Signal(()) => handler.stop(),
            _ => (),
        });
    }
}

/// Sends `m0`, `m1`, ... over `transport` to `target`: `count` messages, the first `first`
/// after connecting, then one every `every` (all at once if `every` is zero).
pub fn sender(
    transport: Transport,
    target: &'static str,
    count: u32,
    first: Duration,
    every: Duration,
    log: Log,
) -> impl App<u32> {
    move |handler: NodeHandler<u32>, listener: NodeListener<u32>| {
        let (peer, _) = handler.network().connect(transport, target).unwrap();
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Connected(_, ok)) => {
                assert!(ok, "connect to {target}");
                handler.signals().send_with_timer(0, first);
            }
            NodeEvent::Signal(n) => {
                let burst = if every.is_zero() { count } else { 1 };
                for i in n..n + burst {
                    let status = handler.network().send(peer, format!("m{i}").as_bytes());
                    assert_eq!(status, SendStatus::Sent, "m{i}");
                    log.push(format!("sent m{i}"));
                }
                if n + burst < count {
                    handler.signals().send_with_timer(n + 1, every);
                } else {
                    handler.stop();
                }
            }
            NodeEvent::Network(NetEvent::Message(_, data)) => {
                log.push(format!("got {}", text(data)))
            }
            NodeEvent::Network(NetEvent::Disconnected(_)) => log.push("disconnected"),
            NodeEvent::Network(_) => (),
        });
    }
}

/// A stream server that logs `got <message>` for every message and `disconnected`.
pub fn stream_sink(transport: Transport, port: u16, log: Log) -> impl App<()> {
    move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.network().listen(transport, ("0.0.0.0", port)).unwrap();
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Message(_, data)) => {
                log.push(format!("got {}", text(data)))
            }
            NodeEvent::Network(NetEvent::Disconnected(_)) => log.push("disconnected"),
            _ => (),
        });
    }
}

/// `got m0`, `got m1`, ...: what a receiver should log for `count` messages in order.
pub fn in_order(count: u32) -> Vec<String> {
    (0..count).map(|i| format!("m{i}")).collect()
}

pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(not a string)".into())
}
