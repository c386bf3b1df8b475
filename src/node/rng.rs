//! A node's random source: OS-seeded natively and in the browser, drawn from the world's seed
//! (and the node's name) in a simulated world, so that choices made with it replay.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::{Arc, Mutex};

/// A node's random source: what an application should draw its own random choices from
/// (backoff jitter, peer selection, ids), so that a simulated run that depends on them replays
/// from the world's seed.
///
/// Get it with [`NodeHandler::rng`](crate::node::NodeHandler::rng). It implements
/// [`rand::RngCore`], so `rand::Rng`'s methods (`random_range`, `random_bool`, ...) work on
/// it. Every handle of one node draws from the same sequence; clone it freely.
///
/// - Natively it is seeded from the operating system, so two nodes (and two runs) differ.
/// - In the browser it is seeded from `Math.random()`.
/// - In a simulated world ([`World`](crate::sim::World)) its seed is derived from the world's
///   seed, the node's name and how many times the node was restarted: the same seed gives
///   the same sequence to the same node, run after run.
///
/// It is ChaCha8: fast and well distributed, but not meant for keys or other secrets.
///
/// ```
/// use portnet::node::{self, NodeEvent};
/// use rand::Rng;
/// use std::time::Duration;
///
/// let (handler, listener) = node::split::<()>();
/// // A retry after 100 ms plus up to 50 ms of jitter.
/// let jitter = handler.rng().random_range(0..50);
/// handler.signals().send_with_timer((), Duration::from_millis(100 + jitter));
/// listener.for_each(move |event| {
///     if let NodeEvent::Signal(()) = event {
///         handler.stop();
///     }
/// });
/// ```
#[derive(Clone)]
pub struct NodeRng(Arc<Mutex<ChaCha8Rng>>);

impl std::fmt::Debug for NodeRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeRng")
    }
}

impl NodeRng {
    fn from_rng(rng: ChaCha8Rng) -> Self {
        NodeRng(Arc::new(Mutex::new(rng)))
    }

    /// A generator seeded from the operating system (natively).
    #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
    pub(crate) fn from_os() -> Self {
        // The OS refusing randomness is exceptional; std's per-process hash keys (also from
        // the OS) and the time still make each node's sequence its own.
        let rng = ChaCha8Rng::try_from_os_rng()
            .unwrap_or_else(|_| ChaCha8Rng::seed_from_u64(time_entropy()));
        NodeRng::from_rng(rng)
    }

    /// A generator seeded from the browser's `Math.random()`.
    #[cfg(all(target_family = "wasm", target_os = "unknown"))]
    pub(crate) fn from_os() -> Self {
        // Math.random() gives 52 random bits a call: four calls fill the 32-byte seed loosely.
        let mut seed = [0u8; 32];
        for chunk in seed.chunks_mut(8) {
            let bits = (js_sys::Math::random() * (1u64 << 52) as f64) as u64;
            chunk.copy_from_slice(&bits.to_le_bytes());
        }
        NodeRng::from_rng(ChaCha8Rng::from_seed(seed))
    }

    /// The generator of simulated node `name` in its `life`-th run in a world seeded `seed`:
    /// fixed by those three, whatever else the world does.
    #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
    pub(crate) fn for_simulated_node(seed: u64, name: &str, life: u64) -> Self {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&super::observer::fnv1a(name.as_bytes()).to_le_bytes());
        key[16..24].copy_from_slice(&life.to_le_bytes());
        // Keeps these streams apart from any other use of the world's seed.
        key[24..].copy_from_slice(b"node rng");
        NodeRng::from_rng(ChaCha8Rng::from_seed(key))
    }

    fn with<T>(&self, draw: impl FnOnce(&mut ChaCha8Rng) -> T) -> T {
        draw(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl RngCore for NodeRng {
    fn next_u32(&mut self) -> u32 {
        self.with(|rng| rng.next_u32())
    }

    fn next_u64(&mut self) -> u64 {
        self.with(|rng| rng.next_u64())
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.with(|rng| rng.fill_bytes(dest))
    }
}

/// A number that differs between processes and calls without asking the OS for randomness:
/// std's per-process hash keys over the current time. For seeds that need not be secret (a
/// world's seed, a fallback when the OS refuses randomness).
#[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
pub(crate) fn time_entropy() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish()
}
