//! Determinism: each node's seeded random source, the record of the events each application
//! was handed, and [`check_determinism`], which compares two runs by both.

use super::World;
use crate::backend::sim::Shared;
use crate::backend::sim::world::NodeId;
use crate::core::clock::Clock;
use crate::node::{EventObserver, NodeRng};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A simulated node's clock (the world's) and random source (from the world's seed, its name
/// and its life: a restarted node draws afresh, but the same in every run).
pub(super) fn clock_and_rng(shared: &Shared, node: NodeId) -> (Clock, NodeRng) {
    let core = shared.core();
    let state = &core.nodes[node];
    let rng = NodeRng::for_simulated_node(shared.seed, &state.name, state.life);
    (Clock::Manual(core.clock.clone()), rng)
}

/// What records the events node `node`'s application is handed, if the world records them.
pub(super) fn observer(shared: &Arc<Shared>, node: NodeId) -> Option<EventObserver> {
    let mut recording = shared.app_events.lock().unwrap_or_else(|e| e.into_inner());
    let name = shared.core().nodes[node].name.clone();
    recording.as_mut()?.entry(name.clone()).or_default();
    let shared = shared.clone();
    Some(Box::new(move |event| {
        let now = shared.core().now;
        let line = format!("{now:?} {event}");
        if let Some(record) = shared.app_events.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            record.entry(name.clone()).or_default().push(line);
        }
    }))
}

impl World {
    /// Records, from now on, every event each application is handed (nodes added or
    /// restarted later; a line per event, with its virtual time). [`check_determinism`] turns
    /// it on; read it with [`app_events`](Self::app_events).
    pub fn record_app_events(&mut self) {
        self.shared.app_events.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_default();
    }

    /// Per node name, the events its application was handed since
    /// [`record_app_events`](Self::record_app_events), one line each: the virtual time and
    /// the event (a message by its length and a hash of its bytes; a signal as `signal`).
    /// Empty if the world does not record them.
    pub fn app_events(&self) -> BTreeMap<String, Vec<String>> {
        self.shared.app_events.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default()
    }
}

/// Runs `scenario` twice with `seed` and compares the traces and the events each application
/// was handed ([`World::app_events`]). Returns the first difference, if any: a scenario that
/// is not deterministic (it reads the real clock, iterates a `HashMap`, spawns threads, draws
/// from a random source other than [`NodeHandler::rng`](crate::node::NodeHandler::rng)) shows
/// up here, even where it changes only what an application saw, such as when a timer fired,
/// and not the traffic.
pub fn check_determinism(seed: u64, scenario: impl Fn(&mut World)) -> Result<(), String> {
    let run = || {
        let mut world = World::with_seed(seed);
        world.record_app_events();
        scenario(&mut world);
        (world.trace(), world.app_events())
    };
    let ((trace_a, apps_a), (trace_b, apps_b)) = (run(), run());
    first_difference(&trace_a, &trace_b).map_or(Ok(()), |(step, a, b)| {
        Err(format!("seed {seed}: traces differ at line {step}:\n  {a}\n  {b}"))
    })?;
    let nodes: std::collections::BTreeSet<_> = apps_a.keys().chain(apps_b.keys()).collect();
    for node in nodes {
        let (a, b) = (&apps_a.get(node), &apps_b.get(node));
        let (a, b) = (a.map_or(&[][..], |v| v), b.map_or(&[][..], |v| v));
        if let Some((step, a, b)) = first_difference(a, b) {
            return Err(format!(
                "seed {seed}: node {node:?}'s application saw different events at event \
                 {step}:\n  {a}\n  {b}"
            ));
        }
    }
    Ok(())
}

/// The first line where two runs differ, with each run's line (`(end)` past its last).
fn first_difference<'a>(a: &'a [String], b: &'a [String]) -> Option<(usize, &'a str, &'a str)> {
    let end = "(end)";
    (0..a.len().max(b.len())).find_map(|step| {
        let (x, y) = (a.get(step).map_or(end, |s| s), b.get(step).map_or(end, |s| s));
        (x != y).then_some((step, x, y))
    })
}
