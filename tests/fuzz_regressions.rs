//! Regression tests for what the fuzz targets (`fuzz/`, see docs/reliability.md) found, each
//! the minimized case written as an ordinary test, on the simulator and, for parity, natively.

use portnet::network::{NetEvent, ResourceId, Transport};
use portnet::node::{self, NodeEvent, NodeHandler, NodeListener};
use portnet::sim::World;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Connects over `Udp` and removes the endpoint in the same turn (before any event is handled),
/// then watches for 100 ms: nothing may be reported for the removed endpoint. Returns what was.
fn connect_then_remove(
    handler: NodeHandler<()>,
    listener: NodeListener<()>,
    target: &str,
) -> Vec<String> {
    let network = handler.network();
    let (udp, _) = network.connect(Transport::Udp, target).unwrap();
    assert!(network.remove(udp.resource_id()), "the endpoint was there to remove");
    handler.signals().send_with_timer((), Duration::from_millis(100));
    let removed: ResourceId = udp.resource_id();
    let mut reported = Vec::new();
    listener.for_each(|event| match event {
        NodeEvent::Network(event) => {
            let id = match &event {
                NetEvent::Connected(e, _)
                | NetEvent::Accepted(e, _)
                | NetEvent::Message(e, _)
                | NetEvent::Disconnected(e) => e.resource_id(),
            };
            if id == removed {
                reported.push(format!("{event:?}"));
            }
        }
        NodeEvent::Signal(()) => handler.stop(),
    });
    reported
}

/// Found by `sim_ops` (minimized from a run of signals: connect Udp, remove it, in one turn):
/// the simulator queues `Connected(ep, true)` for a `Udp` connect at once, and the node's
/// "removed this turn" list is cleared before the next turn takes that queue, so the event is
/// delivered after `remove` returned true. The README: "Nothing is reported for a resource
/// after `remove`."
#[test]
fn sim_udp_connected_is_not_reported_after_remove() {
    let reported: Arc<Mutex<Vec<String>>> = Arc::default();
    let out = reported.clone();
    let mut world = World::with_seed(1);
    world.node("a", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.network().listen(Transport::Udp, "0.0.0.0:1020").unwrap();
        *out.lock().unwrap() = connect_then_remove(handler, listener, "a:1020");
    });
    world.run_until(|w| w.is_finished("a"));
    assert!(world.is_finished("a"));
    let reported = reported.lock().unwrap();
    assert!(reported.is_empty(), "reported after remove: {reported:?}");
}

/// The same natively (parity): nothing is reported for the removed endpoint.
#[test]
fn native_udp_connected_is_not_reported_after_remove() {
    let (handler, listener) = node::split::<()>();
    let (_, addr) = handler.network().listen(Transport::Udp, "127.0.0.1:0").unwrap();
    let reported = connect_then_remove(handler, listener, &addr.to_string());
    assert!(reported.is_empty(), "reported after remove: {reported:?}");
}
