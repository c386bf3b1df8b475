//! A simulated node's addresses, for tests and applications that need one written out.

use super::World;
use crate::backend::sim::world::addresses::{node_v4, node_v6};
use std::net::{Ipv4Addr, Ipv6Addr};

impl World {
    /// `node`'s IPv4 address: `10.0.x.y`, in the order nodes were added (the first is
    /// `10.0.0.1`). Its name resolves to this one: `"server:3000"` is IPv4.
    pub fn ipv4(&self, node: &str) -> Ipv4Addr {
        node_v4(self.id(node))
    }

    /// `node`'s IPv6 address: `fd00::N`, N its place in the order nodes were added (the first
    /// is `fd00::1`). Reach it as `"[fd00::1]:3000"`, or as what its `listen` on `[::]` returned.
    pub fn ipv6(&self, node: &str) -> Ipv6Addr {
        node_v6(self.id(node))
    }
}
