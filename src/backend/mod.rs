//! The drivers that carry out what the core asks, one per platform, chosen by an enum so the
//! public types carry no generics and no cfgs.

#[cfg(all(target_family = "wasm", target_os = "unknown"))]
pub(crate) mod browser;
#[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
pub(crate) mod native;
#[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
pub(crate) mod sim;

use crate::adapters::ws::{MessageKind, WsClose, WsHandshake};
#[cfg(feature = "adapter")]
use crate::core::Transport;
use crate::core::{
    Endpoint, NetEvent, RemoteAddr, ResourceId, SendStatus, TransportConnect, TransportListen,
};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// The acting half of a network, whatever drives it.
#[derive(Clone)]
pub(crate) enum Controller {
    #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
    Native(native::Controller),
    #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
    Sim(sim::Controller),
    #[cfg(all(target_family = "wasm", target_os = "unknown"))]
    Browser(browser::Controller),
}

/// The event-processing half of a network.
pub(crate) enum Processor {
    #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
    Native(native::Processor),
    #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
    Sim(sim::Processor),
    #[cfg(all(target_family = "wasm", target_os = "unknown"))]
    Browser(browser::Processor),
}

/// The default backend for this target.
pub(crate) fn split() -> io::Result<(Controller, Processor)> {
    #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
    {
        let (c, p) = native::split()?;
        Ok((Controller::Native(c), Processor::Native(p)))
    }
    #[cfg(all(target_family = "wasm", target_os = "unknown"))]
    {
        let (c, p) = browser::split()?;
        Ok((Controller::Browser(c), Processor::Browser(p)))
    }
}

/// Forwards a call to whichever driver is inside.
macro_rules! dispatch {
    ($self:expr, $driver:ident => $call:expr) => {
        match $self {
            #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
            Self::Native($driver) => $call,
            #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
            Self::Sim($driver) => $call,
            #[cfg(all(target_family = "wasm", target_os = "unknown"))]
            Self::Browser($driver) => $call,
        }
    };
}

impl Controller {
    pub fn connect_with(
        &self,
        config: TransportConnect,
        addr: RemoteAddr,
        sync: bool,
    ) -> io::Result<(Endpoint, SocketAddr)> {
        dispatch!(self, d => d.connect_with(config, addr, sync))
    }

    pub fn listen_with(
        &self,
        config: TransportListen,
        addr: SocketAddr,
    ) -> io::Result<(ResourceId, SocketAddr)> {
        dispatch!(self, d => d.listen_with(config, addr))
    }

    #[cfg(feature = "adapter")]
    /// Mounts a stream protocol on the carrier it names, if this backend has that carrier.
    pub fn mount(&self, mount: crate::adapter::Mount) -> io::Result<Transport> {
        dispatch!(self, d => d.mount(mount))
    }

    pub fn send(&self, endpoint: Endpoint, data: &[u8]) -> SendStatus {
        dispatch!(self, d => d.send(endpoint, data))
    }

    pub fn send_text(&self, endpoint: Endpoint, text: &str) -> SendStatus {
        dispatch!(self, d => d.send_text(endpoint, text))
    }

    pub fn message_kind(&self, endpoint: Endpoint) -> MessageKind {
        dispatch!(self, d => d.message_kind(endpoint))
    }

    pub fn ws_handshake(&self, endpoint: Endpoint) -> Option<WsHandshake> {
        dispatch!(self, d => d.ws_handshake(endpoint))
    }

    pub fn ws_close(&self, endpoint: Endpoint) -> Option<WsClose> {
        dispatch!(self, d => d.ws_close(endpoint))
    }

    pub fn remove(&self, id: ResourceId) -> bool {
        dispatch!(self, d => d.remove(id))
    }

    /// How long closing connections may take to flush (see `NetworkController::set_linger`).
    pub fn linger(&self) -> &crate::core::LingerSetting {
        dispatch!(self, d => d.linger())
    }

    pub fn is_ready(&self, id: ResourceId) -> Option<bool> {
        dispatch!(self, d => d.is_ready(id))
    }

    pub fn when_writable(&self, endpoint: Endpoint, notify: Box<dyn FnOnce() + Send>) {
        dispatch!(self, d => d.when_writable(endpoint, notify))
    }

    /// Whether the application removed `id` since the processor last polled: events gathered
    /// before the removal must not be handed out.
    pub fn was_removed(&self, id: ResourceId) -> bool {
        dispatch!(self, d => d.was_removed(id))
    }

    /// A wake-up for the processor that does not keep the network alive (it lives inside the
    /// node's signal queue, which resources may hold).
    pub fn weak_waker(&self) -> std::sync::Arc<dyn Fn() + Send + Sync> {
        dispatch!(self, d => d.weak_waker())
    }

    pub fn is_simulated(&self) -> bool {
        #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
        if let Self::Sim(_) = self {
            return true;
        }
        false
    }

    /// In a simulated world, yields the node to the world until something wakes it or
    /// `timeout` passes (an async node whose stream is not polled). Nothing natively.
    #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
    pub fn park_simulated(&self, timeout: Option<Duration>) {
        if let Self::Sim(d) = self {
            d.park(timeout);
        }
    }

    /// Wakes the processor from its wait.
    pub fn wake(&self) {
        dispatch!(self, d => d.wake())
    }

    /// Installs a node's loop on the JS event loop (the browser's `for_each`).
    #[cfg(all(target_family = "wasm", target_os = "unknown"))]
    pub fn install_loop(&self, turn: browser::Turn) {
        match self {
            Self::Browser(d) => d.install_loop(turn),
        }
    }

    /// Takes the installed loop off the JS event loop (a browser `NodeStream` going away).
    #[cfg(all(target_family = "wasm", target_os = "unknown"))]
    pub fn uninstall_loop(&self) {
        match self {
            Self::Browser(d) => d.uninstall_loop(),
        }
    }
}

impl Processor {
    pub fn process_poll_event(
        &mut self,
        timeout: Option<Duration>,
        callback: &mut dyn FnMut(NetEvent<'_>),
    ) {
        dispatch!(self, d => d.process_poll_event(timeout, callback))
    }
}
