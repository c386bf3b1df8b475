//! tests/soak.rs, the client process (the `soak_client` test, run by `run_phase`): the soak
//! client and the churn client.

use super::*;
use portnet::network::{Endpoint, NetEvent, SendStatus, Transport};
use portnet::node::{self, NodeEvent};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The median, 99th percentile and maximum of durations in microseconds, under `keys`.
pub fn percentiles(
    mut times: Vec<u32>,
    report: &mut BTreeMap<&'static str, u64>,
    keys: [&'static str; 3],
) {
    times.sort_unstable();
    let at = |q: f64| -> u64 {
        let i = ((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1));
        times.get(i).copied().unwrap_or(0).into()
    };
    for (key, q) in keys.into_iter().zip([0.5, 0.99, 1.0]) {
        report.insert(key, at(q));
    }
}

pub fn micros(since: Instant) -> u32 {
    since.elapsed().as_micros().min(u32::MAX as u128) as u32
}

/// One connection of the soak client.
pub struct SoakConn {
    pub endpoint: Endpoint,
    pub next_send: u32,
    pub next_echo: u32,
    /// When each unanswered message went.
    pub sent_at: VecDeque<Instant>,
}

/// Client signals.
pub enum Sig {
    Tick,
}

/// Opens `SOAK_FRAMED + SOAK_WS` connections, `window` at a time; sends `SOAK_RATE` messages a
/// second round-robin over them for `secs`; checks every echo; waits for the last ones;
/// reports.
pub fn soak(
    framed: SocketAddr,
    ws: SocketAddr,
    secs: u64,
    window: usize,
) -> BTreeMap<&'static str, u64> {
    let total = SOAK_FRAMED + SOAK_WS;
    // Every tenth connection is Ws.
    let target = |i: usize| {
        if i % 10 == 9 { (Transport::Ws, ws) } else { (Transport::FramedTcp, framed) }
    };
    let (handler, listener) = node::split::<Sig>();
    let net = handler.network();
    let mut conns: Vec<Option<SoakConn>> = (0..total).map(|_| None).collect();
    let mut index: HashMap<Endpoint, usize> = HashMap::with_capacity(total);
    let mut report: BTreeMap<&'static str, u64> = BTreeMap::new();
    let (mut opened, mut in_flight, mut connected) = (0, 0, 0);
    let mut retry: Vec<usize> = Vec::new();
    let (mut connect_failed, mut corrupt, mut out_of_order, mut refused, mut disconnects) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut sent, mut echoed, mut bytes) = (0u64, 0u64, 0u64);
    let mut rtts: Vec<u32> = Vec::new();
    let mut connect_at: Vec<Option<Instant>> = vec![None; total];
    let mut connect_times: Vec<u32> = Vec::with_capacity(total);
    let start = Instant::now();
    let mut traffic_start: Option<Instant> = None;
    let mut traffic_end: Option<Instant> = None;
    let mut cursor = 0;
    let traffic = Duration::from_secs(secs);
    for key in ["connect_ms", "fds", "rss", "traffic_ms"] {
        report.insert(key, 0);
    }

    let open_more = |opened: &mut usize,
                     in_flight: &mut usize,
                     retry: &mut Vec<usize>,
                     index: &mut HashMap<Endpoint, usize>,
                     connect_at: &mut Vec<Option<Instant>>,
                     connect_failed: &mut u64| {
        while *in_flight < window {
            let i = match retry.pop() {
                Some(i) => i,
                None if *opened < total => {
                    *opened += 1;
                    *opened - 1
                }
                None => return,
            };
            let (transport, addr) = target(i);
            connect_at[i] = Some(Instant::now());
            match net.connect(transport, addr) {
                Ok((endpoint, _)) => {
                    index.insert(endpoint, i);
                    *in_flight += 1;
                }
                Err(e) => {
                    eprintln!("soak client: connect {i} failed at once: {e}");
                    *connect_failed += 1;
                    assert!(*connect_failed < 100, "too many connects failed");
                    retry.push(i);
                    return;
                }
            }
        }
    };
    open_more(
        &mut opened,
        &mut in_flight,
        &mut retry,
        &mut index,
        &mut connect_at,
        &mut connect_failed,
    );
    // A watchdog of the connect phase, drain and all.
    handler.signals().send_with_timer(Sig::Tick, TICK);
    listener.for_each(|event| match event {
        NodeEvent::Network(NetEvent::Connected(endpoint, ok)) => {
            in_flight -= 1;
            let i = index[&endpoint];
            if let Some(at) = connect_at[i].take() {
                connect_times.push(micros(at));
            }
            if ok {
                conns[i] = Some(SoakConn {
                    endpoint,
                    next_send: 0,
                    next_echo: 0,
                    sent_at: VecDeque::new(),
                });
                connected += 1;
            } else {
                index.remove(&endpoint);
                connect_failed += 1;
                assert!(connect_failed < 100, "too many connects failed");
                retry.push(i);
            }
            open_more(
                &mut opened,
                &mut in_flight,
                &mut retry,
                &mut index,
                &mut connect_at,
                &mut connect_failed,
            );
            if connected == total {
                report.insert("connect_ms", start.elapsed().as_millis() as u64);
                report.insert("fds", open_fds() as u64);
                report.insert("rss", rss() as u64);
                traffic_start = Some(Instant::now());
            }
        }
        NodeEvent::Network(NetEvent::Message(endpoint, data)) => {
            let i = index[&endpoint];
            let conn = conns[i].as_mut().unwrap();
            match check_message(data) {
                Some((c, seq)) if c as usize == i => {
                    if seq != conn.next_echo {
                        out_of_order += 1;
                    }
                    conn.next_echo = seq + 1;
                    if let Some(at) = conn.sent_at.pop_front() {
                        rtts.push(micros(at));
                    }
                    echoed += 1;
                }
                _ => corrupt += 1,
            }
            if traffic_end.is_some() && echoed + corrupt == sent {
                handler.stop();
            }
        }
        NodeEvent::Network(NetEvent::Disconnected(endpoint)) => {
            eprintln!("soak client: {endpoint} disconnected");
            disconnects += 1;
        }
        NodeEvent::Network(NetEvent::Accepted(..)) => unreachable!(),
        NodeEvent::Signal(Sig::Tick) => {
            handler.signals().send_with_timer(Sig::Tick, TICK);
            let Some(began) = traffic_start else {
                assert!(start.elapsed() < Duration::from_secs(120), "connects take too long");
                return;
            };
            if let Some(ended) = traffic_end {
                if ended.elapsed() > DRAIN {
                    // Report what is missing rather than wait for ever.
                    handler.stop();
                }
                return;
            }
            let elapsed = began.elapsed().min(traffic);
            // Due so far at a steady rate; at most ten ticks' worth at once after a stall.
            let due = (elapsed.as_micros() as u64 * SOAK_RATE / 1_000_000)
                .min(sent + refused + SOAK_RATE / 10);
            while sent + refused < due {
                let i = cursor;
                cursor = (cursor + 1) % total;
                let conn = conns[i].as_mut().unwrap();
                let data = message(i as u32, conn.next_send, 0);
                match net.send(conn.endpoint, &data) {
                    SendStatus::Sent => {
                        sent += 1;
                        bytes += data.len() as u64;
                        conn.next_send += 1;
                        conn.sent_at.push_back(Instant::now());
                    }
                    status => {
                        eprintln!("soak client: send to {}: {status:?}", conn.endpoint);
                        refused += 1;
                    }
                }
            }
            if elapsed >= traffic {
                traffic_end = Some(Instant::now());
                report.insert("traffic_ms", began.elapsed().as_millis() as u64);
                if echoed + corrupt == sent {
                    handler.stop();
                }
            }
        }
    });
    let drained = traffic_end.map_or(0, |t| t.elapsed().as_millis() as u64);
    report.insert("drain_ms", drained);
    report.insert("connected", connected as u64);
    report.insert(
        "framed",
        (0..total).filter(|&i| target(i).0 == Transport::FramedTcp).count() as u64,
    );
    report.insert("ws", (0..total).filter(|&i| target(i).0 == Transport::Ws).count() as u64);
    report.insert("connect_failed", connect_failed);
    report.insert("sent", sent);
    report.insert("bytes", bytes);
    report.insert("echoed", echoed);
    report.insert("lost", sent - echoed.min(sent));
    report.insert("corrupt", corrupt);
    report.insert("out_of_order", out_of_order);
    report.insert("refused", refused);
    report.insert("disconnects", disconnects);
    percentiles(rtts, &mut report, ["rtt_p50_us", "rtt_p99_us", "rtt_max_us"]);
    let keys = ["connect_p50_us", "connect_p99_us", "connect_max_us"];
    percentiles(connect_times, &mut report, keys);
    report.insert("window", window as u64);
    // Closed one by one, as an application would.
    for conn in conns.iter().flatten() {
        net.remove(conn.endpoint.resource_id());
    }
    report
}

/// One connection of the churn client.
pub struct ChurnConn {
    pub index: usize,
    pub server_closes: bool,
    pub echoed: bool,
    pub opened: Instant,
}

/// Opens `total` connections, `CHURN_CONCURRENCY` at a time, every tenth `Ws`: each sends one
/// message and, once it is echoed, is closed by the client (half of them) or has asked the
/// server to close it (the other half: the server removes it after the echo).
pub fn churn(framed: SocketAddr, ws: SocketAddr, total: usize) -> BTreeMap<&'static str, u64> {
    let (handler, listener) = node::split::<Sig>();
    let net = handler.network();
    let mut live: HashMap<Endpoint, ChurnConn> = HashMap::new();
    let mut report: BTreeMap<&'static str, u64> = BTreeMap::new();
    let (mut opened, mut completed) = (0usize, 0usize);
    let mut retry: Vec<usize> = Vec::new();
    let (mut connect_failed, mut corrupt, mut lost, mut disconnects, mut echoed) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut client_closed, mut server_closed, mut n_framed, mut n_ws) = (0u64, 0u64, 0u64, 0u64);
    let mut rtts: Vec<u32> = Vec::new();
    let start = Instant::now();

    let open_more = |opened: &mut usize,
                     retry: &mut Vec<usize>,
                     live: &mut HashMap<Endpoint, ChurnConn>,
                     connect_failed: &mut u64| {
        while live.len() < CHURN_CONCURRENCY {
            let index = match retry.pop() {
                Some(i) => i,
                None if *opened < total => {
                    *opened += 1;
                    *opened - 1
                }
                None => return,
            };
            let (transport, addr) =
                if index % 10 == 9 { (Transport::Ws, ws) } else { (Transport::FramedTcp, framed) };
            match net.connect(transport, addr) {
                Ok((endpoint, _)) => {
                    let server_closes = index % 4 >= 2;
                    let conn =
                        ChurnConn { index, server_closes, echoed: false, opened: Instant::now() };
                    live.insert(endpoint, conn);
                }
                Err(e) => {
                    eprintln!("churn client: connect {index} failed at once: {e}");
                    *connect_failed += 1;
                    assert!(*connect_failed < 100, "too many connects failed");
                    retry.push(index);
                    return;
                }
            }
        }
    };
    open_more(&mut opened, &mut retry, &mut live, &mut connect_failed);
    handler.signals().send_with_timer(Sig::Tick, Duration::from_secs(1));
    listener.for_each(|event| {
        let mut finished = None;
        match event {
            NodeEvent::Network(NetEvent::Connected(endpoint, ok)) => {
                let conn = &live[&endpoint];
                if ok {
                    let flags = if conn.server_closes { SERVER_CLOSES } else { 0 };
                    let status = net.send(endpoint, &message(conn.index as u32, 0, flags));
                    assert_eq!(status, SendStatus::Sent, "churn: send to {endpoint}");
                } else {
                    connect_failed += 1;
                    assert!(connect_failed < 100, "too many connects failed");
                    retry.push(live.remove(&endpoint).unwrap().index);
                }
            }
            NodeEvent::Network(NetEvent::Message(endpoint, data)) => {
                let conn = live.get_mut(&endpoint).unwrap();
                match check_message(data) {
                    Some((c, 0)) if c as usize == conn.index && !conn.echoed => {
                        conn.echoed = true;
                        echoed += 1;
                        rtts.push(micros(conn.opened));
                    }
                    _ => corrupt += 1,
                }
                if !conn.server_closes {
                    net.remove(endpoint.resource_id());
                    client_closed += 1;
                    finished = Some(endpoint);
                }
            }
            NodeEvent::Network(NetEvent::Disconnected(endpoint)) => {
                let conn = &live[&endpoint];
                if conn.server_closes && conn.echoed {
                    server_closed += 1;
                } else {
                    eprintln!("churn client: {endpoint} disconnected before its echo");
                    disconnects += 1;
                    lost += u64::from(!conn.echoed);
                }
                finished = Some(endpoint);
            }
            NodeEvent::Network(NetEvent::Accepted(..)) => unreachable!(),
            NodeEvent::Signal(Sig::Tick) => {
                assert!(start.elapsed() < churn_limit(total), "the churn takes too long");
                handler.signals().send_with_timer(Sig::Tick, Duration::from_secs(1));
            }
        }
        if let Some(endpoint) = finished {
            let conn = live.remove(&endpoint).unwrap();
            if conn.index % 10 == 9 {
                n_ws += 1;
            } else {
                n_framed += 1;
            }
            completed += 1;
            open_more(&mut opened, &mut retry, &mut live, &mut connect_failed);
            if completed == total {
                handler.stop();
            }
        }
    });
    report.insert("churn_ms", start.elapsed().as_millis() as u64);
    report.insert("completed", completed as u64);
    report.insert("framed", n_framed);
    report.insert("ws", n_ws);
    report.insert("echoed", echoed);
    report.insert("lost", lost);
    report.insert("corrupt", corrupt);
    report.insert("connect_failed", connect_failed);
    report.insert("disconnects", disconnects);
    report.insert("client_closed", client_closed);
    report.insert("server_closed", server_closed);
    percentiles(rtts, &mut report, ["rtt_p50_us", "rtt_p99_us", "rtt_max_us"]);
    report
}
