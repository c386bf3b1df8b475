//! A link: the properties of one direction of a path between two nodes, its delays and its
//! faults. The datagram faults it describes (corruption, truncation, the MTU) are applied in
//! the `datagram` module beside it.

use std::time::Duration;

/// Bytes of IPv4 and UDP headers around a datagram's payload.
pub const UDP_OVERHEAD_V4: usize = 20 + 8;
/// Bytes of IPv6 and UDP headers around a datagram's payload.
pub const UDP_OVERHEAD_V6: usize = 40 + 8;

/// The properties of the path from one node to another.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Link {
    /// Fixed one-way delay.
    pub latency: Duration,
    /// Extra delay drawn per packet, with `spread` (reorders datagrams): uniformly from
    /// `0..=jitter` by default.
    pub jitter: Duration,
    /// How the extra delay is distributed (default [`Spread::Uniform`]).
    pub spread: Spread,
    /// Probability that a datagram is lost (a stream segment is retransmitted instead).
    pub loss: f64,
    /// Probability that a datagram arrives twice.
    pub duplicate: f64,
    /// Bytes per second the link carries (`None`: unlimited). Packets queue behind each other,
    /// so a stream's send queue fills and `send` answers `QueueFull`.
    pub bandwidth: Option<u64>,
    /// Bytes the link buffers while it transmits (`None`: unlimited); datagrams beyond are
    /// dropped, as by a router's full queue.
    pub queue: Option<usize>,
    /// Probability that a `Udp` datagram arrives with bits flipped (one to three, at seeded
    /// places) that no checksum caught. Streams are never corrupted: their checksums and
    /// retransmits hide it (a caught corruption is a loss: see `loss`).
    pub corrupt: f64,
    /// Probability that a `Udp` datagram arrives cut short: a seeded prefix, shorter than sent.
    pub truncate: f64,
    /// The largest IP packet the path carries (`None`: no limit). A `Udp` datagram whose
    /// payload and headers ([`UDP_OVERHEAD_V4`] or [`UDP_OVERHEAD_V6`] bytes) exceed it is
    /// dropped, as on a path that does not fragment; streams are segmented to fit it.
    pub mtu: Option<usize>,
}

impl Default for Link {
    /// A clean link with 1 ms latency.
    fn default() -> Self {
        Link {
            latency: Duration::from_millis(1),
            jitter: Duration::ZERO,
            spread: Spread::Uniform,
            loss: 0.0,
            duplicate: 0.0,
            bandwidth: None,
            queue: None,
            corrupt: 0.0,
            truncate: 0.0,
            mtu: None,
        }
    }
}

impl Link {
    /// The largest `Udp` payload this link carries to an IPv4 (`ipv6` false) or IPv6 address:
    /// its MTU less the headers, `None` without an MTU.
    pub fn max_datagram(&self, ipv6: bool) -> Option<usize> {
        let overhead = if ipv6 { UDP_OVERHEAD_V6 } else { UDP_OVERHEAD_V4 };
        self.mtu.map(|mtu| mtu.saturating_sub(overhead))
    }
}

/// How a link's extra delay per packet is drawn, given its `jitter`.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Spread {
    /// Uniformly from `0..=jitter`: a bounded, even spread.
    #[default]
    Uniform,
    /// Exponentially with mean `jitter`: mostly small, sometimes several times larger (queueing
    /// behind other traffic). Capped at 20 × `jitter`.
    Exponential,
    /// Pareto with mean `jitter` and this shape (> 1; smaller is heavier): the long tail of a
    /// congested or wireless path, where a few packets take far longer than the rest. Capped at
    /// 100 × `jitter`.
    Pareto(f64),
}

impl Spread {
    /// The extra delay for a uniform draw `u` in `[0, 1)`, by the inverse of the distribution.
    pub(crate) fn sample(self, jitter: Duration, u: f64) -> Duration {
        let mean = jitter.as_secs_f64();
        let seconds = match self {
            Spread::Uniform => mean * u,
            Spread::Exponential => (-mean * (1.0 - u).ln()).min(20.0 * mean),
            Spread::Pareto(shape) => {
                let shape = if shape.is_finite() && shape > 1.0 { shape } else { 1.0 + 1e-3 };
                let least = mean * (shape - 1.0) / shape;
                (least / (1.0 - u).powf(1.0 / shape)).min(100.0 * mean)
            }
        };
        Duration::from_secs_f64(seconds.max(0.0))
    }
}
