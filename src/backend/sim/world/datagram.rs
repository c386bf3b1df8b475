//! What happens to one `Udp` datagram on its way over a link: the rule's verdict, then the
//! link's faults — loss, duplication, a full queue, the MTU, corruption and truncation — each
//! a decision on the run's tape that a shrinking replay may suppress.
//!
//! Streams never come here: their checksums and retransmits hide corruption, TCP segments to
//! fit the MTU, and a byte stream has no datagram to cut (see docs/simulation.md).

use super::{Core, NodeId, Verdict};
use crate::core::Transport;
use rand::Rng;
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

/// The fate of a datagram on one path.
pub(super) struct Fate<'a> {
    /// How many copies arrive (0: lost).
    pub copies: usize,
    /// Extra delay a rule asked for.
    pub extra: Duration,
    /// What arrives: the payload, or what corruption and truncation left of it.
    pub payload: Cow<'a, [u8]>,
}

impl Core {
    /// Decides what becomes of `data` sent from `from` to `target` (at `to`).
    ///
    /// Every random draw depends only on the link and the draws before it, never on whether a
    /// shrinking replay suppresses a fault, so a replay stays aligned with the run it shrinks;
    /// a link without the newer faults draws exactly as before they existed.
    pub(super) fn datagram_fate<'a>(
        &mut self,
        from: NodeId,
        target: NodeId,
        transport: Transport,
        to: SocketAddr,
        data: &'a [u8],
    ) -> Fate<'a> {
        let link = self.link(from, target);
        let max = link.max_datagram(to.is_ipv6());
        let over_mtu = max.is_some_and(|max| data.len() > max);
        let mut fate = Fate { copies: 1, extra: Duration::ZERO, payload: Cow::Borrowed(data) };
        let (mut corrupt, mut keep) = (false, None);
        match self.judge(from, target, (transport, data, over_mtu)) {
            Verdict::Drop => fate.copies = 0,
            Verdict::Duplicate => fate.copies = 2,
            Verdict::Delay(delay) => fate.extra = delay,
            Verdict::Corrupt => corrupt = true,
            Verdict::Truncate(len) => keep = Some(len),
            Verdict::Pass => (),
        }
        // Drawn every time, so the draws stay aligned when a replay suppresses one.
        let (lost, duplicated) = (self.chance(link.loss), self.chance(link.duplicate));
        let (corrupted, truncated) = (self.chance(link.corrupt), self.chance(link.truncate));
        let flips = (corrupt || corrupted).then(|| self.draw_flips(data.len()));
        let cut = (truncated && !data.is_empty()).then(|| self.rng.random_range(0..data.len()));
        let len = data.len();
        if fate.copies > 0 && over_mtu {
            let (mtu, max) = (link.mtu.unwrap_or_default(), max.unwrap_or_default());
            let what =
                format_args!("drop a datagram over the path MTU {mtu} ({len} > {max} bytes)");
            if self.fault(from, target, what) {
                fate.copies = 0;
            }
        }
        if fate.copies > 0 && lost && self.fault(from, target, format_args!("lose a datagram")) {
            fate.copies = 0;
        }
        if fate.copies == 1
            && duplicated
            && self.fault(from, target, format_args!("duplicate a datagram"))
        {
            fate.copies = 2;
        }
        if let (Some(bandwidth), Some(queue)) = (link.bandwidth, link.queue) {
            if fate.copies > 0
                && self.link_backlog(from, target, bandwidth) + len > queue
                && self.fault(from, target, format_args!("link queue full: drop a datagram"))
            {
                fate.copies = 0;
            }
        }
        if fate.copies == 0 {
            return fate;
        }
        let flips = flips.unwrap_or_default();
        // The rule's corruption was taped as its verdict; the link's is a fault of its own.
        let link_flips = corrupted
            && !flips.is_empty()
            && self.fault(from, target, format_args!("corrupt a datagram: flip bits {flips:?}"));
        if corrupt || link_flips {
            let payload = fate.payload.to_mut();
            for bit in &flips {
                payload[bit / 8] ^= 1 << (bit % 8);
            }
        }
        let cut = cut.filter(|cut| {
            self.fault(from, target, format_args!("truncate a datagram to {cut} of {len} bytes"))
        });
        if let Some(keep) = keep.into_iter().chain(cut).min() {
            fate.payload.to_mut().truncate(keep);
        }
        fate
    }

    /// Which bits of a `len`-byte payload a corruption flips: one to three, distinct, at
    /// seeded places (none of an empty payload).
    fn draw_flips(&mut self, len: usize) -> BTreeSet<usize> {
        if len == 0 {
            return BTreeSet::new();
        }
        let count = self.rng.random_range(1..=3);
        (0..count).map(|_| self.rng.random_range(0..len * 8)).collect()
    }
}
