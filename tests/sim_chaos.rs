//! Chaos in the simulator: the distributed example (`examples/distributed/`, its own code,
//! unchanged, included as `examples/sim-distributed.rs` does) under random partitions (both
//! ways, one way, isolation), crashes and restarts of participants and of the discovery server,
//! connection resets, pauses, and lossy, jittery, duplicating links, on many seeds.
//!
//! Invariants, checked after every step of the world (and by the monitor on every message it
//! gets): the discovery server's registry, as a monitor node registered with it sees it, never
//! announces a name twice, never removes a name it did not announce, never lists the monitor to
//! itself, names only participants, and gives each one the address of its own node. Liveness,
//! after the faults end (heal, clean links, crashed nodes restarted, an operator restarting
//! participants that gave up): the registry converges to every participant, and a newcomer is
//! greeted by every participant and greets every one of them.
//!
//! ```text
//! cargo test --test sim_chaos                                        # 500 seeds
//! PORTNET_CHAOS_SEEDS=5000 cargo test --release --test sim_chaos     # more
//! PORTNET_SIM_SEED=17 cargo test --test sim_chaos                    # rerun one seed
//! ```

#[path = "../examples/distributed/discovery.rs"]
mod discovery;
#[path = "../examples/distributed/participant.rs"]
mod participant;
#[path = "../examples/distributed/protocol.rs"]
mod protocol;

use portnet::network::{NetEvent, Transport};
use portnet::node::{NodeEvent, NodeHandler, NodeListener};
use portnet::sim::{self, Link, SEED_VAR, World};
use protocol::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How many seeds a plain `cargo test` runs.
const DEFAULT_SEEDS: u64 = 500;
/// The environment variable that asks for more (or fewer) seeds.
const SEEDS_VAR: &str = "PORTNET_CHAOS_SEEDS";
/// Set, it prints each seed's trace.
const TRACE_VAR: &str = "PORTNET_CHAOS_TRACE";

const PARTICIPANTS: [&str; 4] = ["alice", "bob", "carol", "dave"];
const NEWCOMER: &str = "erin";
const MONITOR: &str = "monitor";
const DISCOVERY: &str = "discovery";
/// Faults happen in `[1 s, CHAOS_END)`; then they end.
const CHAOS_END: Duration = Duration::from_secs(16);
/// How long the registry may take to converge after the faults end.
const CONVERGE_WITHIN: Duration = Duration::from_secs(40);
/// How long it must then stay converged.
const STABLE_FOR: Duration = Duration::from_secs(3);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A small seeded generator (SplitMix64): the fault schedule is a function of the world's seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    fn between(&mut self, low: u64, high: u64) -> Duration {
        ms(low + self.below(high - low))
    }
}

/// What the test sees of the run.
#[derive(Default)]
struct Observed {
    /// The registry as the monitor sees it: name -> the Udp address announced for it.
    view: BTreeMap<String, SocketAddr>,
    /// Each participant's handler, in its current life.
    handlers: BTreeMap<String, NodeHandler<participant::Signal>>,
    /// Who greeted each participant, when its last life ended normally.
    greeted_by: BTreeMap<String, BTreeSet<String>>,
    /// Nodes crashed by the schedule and not yet restarted by it.
    crashed: BTreeSet<String>,
    /// Links the schedule degraded.
    links: BTreeSet<(String, String)>,
    paused: BTreeSet<String>,
    /// Whether the operator restarts participants that gave up (until the final check).
    operator_off: bool,
    /// Invariant checks made.
    checks: u64,
}

type Shared = Arc<Mutex<Observed>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Observed> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// The address each node has: worlds number their nodes 10.0.0.1, 10.0.0.2, ... in the order
/// they are added (discovery, monitor, the participants, the newcomer).
fn ip_of(name: &str) -> Option<IpAddr> {
    let order = [DISCOVERY, MONITOR, PARTICIPANTS[0], PARTICIPANTS[1], PARTICIPANTS[2]]
        .into_iter()
        .chain([PARTICIPANTS[3], NEWCOMER]);
    order.enumerate().find(|(_, n)| *n == name).map(|(i, _)| IpAddr::from([10, 0, 0, i as u8 + 1]))
}

/// The registry invariants on the monitor's view.
fn check_view(observed: &mut Observed) {
    for (name, addr) in &observed.view {
        assert_ne!(name, MONITOR, "the registry listed the monitor to itself");
        let expected =
            ip_of(name).unwrap_or_else(|| panic!("the registry names a stranger: {name}"));
        assert_eq!(addr.ip(), expected, "{name} is announced at another node's address {addr}");
    }
    observed.checks += 1;
}

enum MonitorSignal {
    Reconnect,
}

/// A node of the test's own: registers with the discovery server as "monitor" and keeps the
/// registry it is told about, checking every announcement against it. It reconnects when the
/// server goes away or refuses it.
fn monitor(
    discovery: Arc<Mutex<Option<SocketAddr>>>,
    shared: Shared,
) -> impl Fn(NodeHandler<MonitorSignal>, NodeListener<MonitorSignal>) + Send + Sync + 'static {
    move |handler: NodeHandler<MonitorSignal>, listener: NodeListener<MonitorSignal>| {
        let addr = discovery.lock().unwrap().expect("the discovery server listens");
        let network = handler.network();
        let (_, udp) = network.listen(Transport::Udp, "0.0.0.0:0").unwrap();
        let mut server = network.connect(Transport::FramedTcp, addr).unwrap().0;
        lock(&shared).view.clear();
        let retry = || handler.signals().send_with_timer(MonitorSignal::Reconnect, ms(500));
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Connected(endpoint, true)) if endpoint == server => {
                let register = Message::Register(MONITOR.into(), udp).encode();
                network.send(server, &register);
            }
            NodeEvent::Network(NetEvent::Connected(endpoint, false))
            | NodeEvent::Network(NetEvent::Disconnected(endpoint))
                if endpoint == server =>
            {
                lock(&shared).view.clear();
                retry();
            }
            NodeEvent::Network(NetEvent::Message(endpoint, data)) if endpoint == server => {
                let mut observed = lock(&shared);
                match Message::decode(data).expect("the discovery server speaks the protocol") {
                    Message::List(entries) => {
                        let mut names = BTreeSet::new();
                        for (name, _) in &entries {
                            assert!(names.insert(name.clone()), "the list names {name} twice");
                        }
                        observed.view = entries.into_iter().collect();
                    }
                    Message::Added(name, addr) => {
                        let before = observed.view.insert(name.clone(), addr);
                        assert!(before.is_none(), "{name} announced while registered");
                    }
                    Message::Removed(name) => {
                        let before = observed.view.remove(&name);
                        assert!(before.is_some(), "{name} removed but never announced");
                    }
                    Message::Rejected(_) => {
                        // A stale registration of ours (its connection's end has not reached the
                        // server yet): try again later.
                        observed.view.clear();
                        network.remove(server.resource_id());
                        drop(observed);
                        retry();
                        return;
                    }
                    other => panic!("the discovery server sent {:?}", other.encode()),
                }
                check_view(&mut observed);
            }
            NodeEvent::Signal(MonitorSignal::Reconnect) => {
                lock(&shared).view.clear();
                network.remove(server.resource_id());
                server = network.connect(Transport::FramedTcp, addr).unwrap().0;
            }
            _ => (), // greetings from participants: not the monitor's business
        });
    }
}

/// A participant node: the example's function, its handler and its result kept for the test.
fn participant_app(
    name: &'static str,
    discovery: Arc<Mutex<Option<SocketAddr>>>,
    shared: Shared,
    leave_after: Option<Duration>,
) -> impl Fn(NodeHandler<participant::Signal>, NodeListener<participant::Signal>) + Send + Sync + 'static
{
    move |handler, listener| {
        lock(&shared).handlers.insert(name.into(), handler.clone());
        let config = participant::Config {
            name: name.to_string(),
            discovery_addr: discovery.lock().unwrap().expect("the discovery server listens"),
            udp_addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            leave_after,
        };
        let greeted = participant::participant(handler, listener, config).expect("it runs");
        let mut observed = lock(&shared);
        observed.handlers.remove(name);
        observed.greeted_by.insert(name.into(), greeted);
    }
}

/// Crashes `name` at `at` and restarts it `lasts` later, unless something restarted it meanwhile.
fn crash_for(
    world: &mut World,
    shared: &Shared,
    name: &'static str,
    at: Duration,
    lasts: Duration,
) {
    let (crashed, restart) = (shared.clone(), shared.clone());
    world.at(at, move |w| {
        lock(&crashed).crashed.insert(name.into());
        w.crash(name);
    });
    world.at(at + lasts, move |w| {
        if lock(&restart).crashed.remove(name) {
            w.restart(name);
        }
    });
}

/// Schedules the random faults of this seed in `[1 s, CHAOS_END)`. Returns how many.
fn schedule_faults(world: &mut World, shared: &Shared, rng: &mut Rng) -> usize {
    let everyone: Vec<&str> =
        [DISCOVERY, MONITOR].into_iter().chain(PARTICIPANTS).collect::<Vec<_>>();
    let mut at = ms(1000);
    let mut planned = 0;
    while at < CHAOS_END {
        planned += 1;
        let (a, b) = (rng.pick(&everyone), rng.pick(&everyone));
        let participant = rng.pick(&PARTICIPANTS);
        let lasts = rng.between(200, 3000);
        let shared = shared.clone();
        match rng.below(10) {
            0 | 1 if a != b => {
                world.at(at, move |w| w.partition(a, b));
                world.at(at + lasts, |w| w.heal());
            }
            2 if a != b => {
                world.at(at, move |w| w.partition_one_way(a, b));
                world.at(at + lasts, |w| w.heal());
            }
            3 => {
                world.at(at, move |w| w.isolate(participant));
                world.at(at + lasts, |w| w.heal());
            }
            // A participant crashes and comes back.
            4 | 5 => crash_for(world, &shared, participant, at, lasts),
            // The discovery server crashes and comes back: everyone re-registers.
            6 if rng.below(3) == 0 => crash_for(world, &shared, DISCOVERY, at, lasts),
            7 if a != b => {
                let link = Link {
                    latency: rng.between(1, 40),
                    jitter: rng.between(0, 40),
                    loss: rng.below(6) as f64 / 10.0,
                    duplicate: rng.below(3) as f64 / 10.0,
                    ..Link::default()
                };
                world.at(at, move |w| {
                    lock(&shared).links.insert((a.into(), b.into()));
                    w.set_link(a, b, link);
                });
            }
            8 if a != b => world.at(at, move |w| w.reset(a, b)),
            9 => {
                let resume = shared.clone();
                world.at(at, move |w| {
                    lock(&shared).paused.insert(participant.into());
                    w.pause(participant);
                });
                world.at(at + lasts.min(ms(1500)), move |w| {
                    lock(&resume).paused.remove(participant);
                    w.resume(participant);
                });
            }
            _ => planned -= 1,
        }
        at += rng.between(50, 600);
    }
    planned
}

/// Participants whose application ended (it gave up: the server went away, refused it, or
/// could not be reached) and were not crashed by the schedule: an operator restarts them.
fn restart_finished(world: &mut World, shared: &Shared) {
    let (crashed, off) = {
        let observed = lock(shared);
        (observed.crashed.clone(), observed.operator_off)
    };
    if off {
        return;
    }
    for name in PARTICIPANTS {
        if world.is_finished(name) && !crashed.contains(name) {
            world.restart(name);
        }
    }
}

/// Runs until `done` or `deadline` (virtual time), checking the invariants before every step.
fn run_checked(
    world: &mut World,
    shared: &Shared,
    deadline: Duration,
    mut done: impl FnMut(&World, &Observed) -> bool,
) -> bool {
    let mut held = false;
    world.run_until(|w| {
        let mut observed = lock(shared);
        check_view(&mut observed);
        held = done(w, &observed);
        held || w.now() >= deadline
    });
    held
}

/// One seed: the example under chaos, then after it. Returns (faults injected, checks made).
fn scenario(world: &mut World) -> (usize, u64) {
    let mut rng = Rng(world.seed() ^ 0x5eed_c4a0_5000_0000);
    let shared: Shared = Arc::default();
    world.set_default_link(Link { latency: ms(2), jitter: ms(5), ..Link::default() });

    let discovery_addr: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let bound = discovery_addr.clone();
    world.node(DISCOVERY, move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let listen = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 5000));
        discovery::discovery_server(handler, listener, listen, |addr| {
            *bound.lock().unwrap() = Some(addr)
        })
        .expect("the discovery server runs");
    });
    world.node(MONITOR, monitor(discovery_addr.clone(), shared.clone()));
    for name in PARTICIPANTS {
        world.node(name, participant_app(name, discovery_addr.clone(), shared.clone(), None));
    }
    // An operator restarts participants that gave up, every second of the run.
    for second in 1..(CHAOS_END + CONVERGE_WITHIN).as_secs() {
        let shared = shared.clone();
        world.at(Duration::from_secs(second), move |w| restart_finished(w, &shared));
    }
    schedule_faults(world, &shared, &mut rng);

    // The chaos.
    run_checked(world, &shared, CHAOS_END, |_, _| false);

    // The faults end: heal, clean links, resume, restart what the schedule crashed.
    world.heal();
    let (links, paused, crashed) = {
        let mut observed = lock(&shared);
        let links = std::mem::take(&mut observed.links);
        let paused = std::mem::take(&mut observed.paused);
        (links, paused, std::mem::take(&mut observed.crashed))
    };
    for (a, b) in links {
        world.set_link(&a, &b, Link { latency: ms(2), jitter: ms(5), ..Link::default() });
    }
    for name in paused {
        world.resume(&name);
    }
    if crashed.contains(DISCOVERY) {
        world.restart(DISCOVERY);
    }
    for name in crashed.iter().filter(|n| *n != DISCOVERY) {
        world.restart(name);
    }

    // Liveness: the registry converges to every participant, each running, and stays so (a
    // restarted participant whose old registration the server still holds is refused and
    // gives up, the operator restarts it: that is not convergence yet).
    let everyone: BTreeSet<&str> = PARTICIPANTS.into_iter().collect();
    let mut since = None;
    let converged = run_checked(world, &shared, CHAOS_END + CONVERGE_WITHIN, |w, observed| {
        let registered: BTreeSet<&str> = observed.view.keys().map(String::as_str).collect();
        let running = PARTICIPANTS.iter().all(|name| !w.is_finished(name));
        if registered == everyone && running {
            let since = *since.get_or_insert(w.now());
            w.now() >= since + STABLE_FOR
        } else {
            since = None;
            false
        }
    });
    let view: Vec<String> = lock(&shared).view.keys().cloned().collect();
    assert!(
        converged,
        "the registry did not converge to every participant within {CONVERGE_WITHIN:?} after \
         the faults ended: the monitor sees {view:?}"
    );

    // Liveness: a newcomer greets and is greeted by everyone.
    lock(&shared).operator_off = true;
    let start = world.now();
    world.node(
        NEWCOMER,
        participant_app(NEWCOMER, discovery_addr.clone(), shared.clone(), Some(ms(3000))),
    );
    let left = run_checked(world, &shared, start + ms(10_000), |w, _| w.is_finished(NEWCOMER));
    assert!(left, "{NEWCOMER} did not leave");
    let greeted = lock(&shared).greeted_by.get(NEWCOMER).cloned().unwrap_or_default();
    for name in PARTICIPANTS {
        assert!(greeted.contains(name), "{NEWCOMER} was never greeted by {name}: {greeted:?}");
    }
    let handlers: Vec<_> = {
        let mut observed = lock(&shared);
        observed.greeted_by.clear();
        observed.handlers.values().cloned().collect()
    };
    assert_eq!(handlers.len(), PARTICIPANTS.len(), "every participant runs");
    for handler in handlers {
        handler.signals().send(participant::Signal::Leave);
    }
    let all_left = run_checked(world, &shared, start + ms(20_000), |w, _| {
        PARTICIPANTS.iter().all(|name| w.is_finished(name))
    });
    assert!(all_left, "the participants did not leave");
    let observed = lock(&shared);
    for name in PARTICIPANTS {
        let greeted = observed.greeted_by.get(name).cloned().unwrap_or_default();
        assert!(greeted.contains(NEWCOMER), "{name} was never greeted by {NEWCOMER}: {greeted:?}");
    }
    let trace = world.trace();
    if std::env::var_os(TRACE_VAR).is_some() {
        println!("seed {} trace:\n{}", world.seed(), trace.join("\n"));
    }
    let faults = trace.iter().filter(|line| line.contains(" fault #")).count();
    (faults, observed.checks)
}

#[test]
fn distributed_example_under_chaos() {
    let seeds: Vec<u64> = match std::env::var(SEED_VAR).ok().and_then(|s| s.trim().parse().ok()) {
        Some(seed) => vec![seed],
        None => {
            let count = std::env::var(SEEDS_VAR)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(DEFAULT_SEEDS);
            (0..count).collect()
        }
    };
    let started = Instant::now();
    let totals = Mutex::new((0usize, 0u64, 0u64));
    let failures = sim::run_seeds(seeds.iter().copied(), |world| {
        let (faults, checks) = scenario(world);
        let mut totals = totals.lock().unwrap();
        totals.0 += faults;
        totals.1 += checks;
        totals.2 += world.deliveries();
    });
    let (faults, checks, deliveries) = *totals.lock().unwrap();
    println!(
        "sim_chaos: {} seed(s), {} passed, {faults} faults injected, {checks} invariant checks, \
         {deliveries} events delivered (figures of the seeds that passed), in {:.1?}",
        seeds.len(),
        seeds.len() - failures.len(),
        started.elapsed()
    );
    for failure in &failures {
        eprintln!(
            "seed {} FAILED: {}\n  rerun: {SEED_VAR}={} cargo test --test sim_chaos\n",
            failure.seed, failure.message, failure.seed
        );
    }
    if let Some(first) = failures.first() {
        if seeds.len() == 1 {
            // One seed asked for: find the faults that matter.
            if let Some(shrunk) = sim::shrink(first.seed, |world| {
                scenario(world);
            }) {
                eprintln!("{shrunk}");
            }
        }
        panic!(
            "{} of {} seed(s) failed; first: seed {} (rerun: {SEED_VAR}={} cargo test --test \
             sim_chaos)",
            failures.len(),
            seeds.len(),
            first.seed,
            first.seed
        );
    }
}
