//! The browser backend (`wasm32-unknown-unknown`). Until it maps `Ws` onto the browser's
//! WebSocket, every operation answers with a clear `Unsupported` error instead of panicking.

use crate::network::{
    Endpoint, NetEvent, RemoteAddr, ResourceId, SendStatus, TransportConnect, TransportListen,
};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

fn unsupported(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{what} is not available in the browser yet"),
    )
}

pub(crate) fn split() -> io::Result<(Controller, Processor)> {
    Ok((Controller, Processor))
}

#[derive(Clone)]
pub(crate) struct Controller;

pub(crate) struct Processor;

impl Controller {
    pub fn connect_with(
        &self,
        config: TransportConnect,
        _addr: RemoteAddr,
        _sync: bool,
    ) -> io::Result<(Endpoint, SocketAddr)> {
        Err(unsupported(&format!("connect over {}", config.transport())))
    }

    pub fn listen_with(
        &self,
        config: TransportListen,
        _addr: SocketAddr,
    ) -> io::Result<(ResourceId, SocketAddr)> {
        Err(unsupported(&format!("listen over {}", config.transport())))
    }

    pub fn send(&self, _endpoint: Endpoint, _data: &[u8]) -> SendStatus {
        SendStatus::ResourceNotFound
    }

    pub fn remove(&self, _id: ResourceId) -> bool {
        false
    }

    pub fn is_ready(&self, _id: ResourceId) -> Option<bool> {
        None
    }

    pub fn when_writable(&self, _endpoint: Endpoint, notify: Box<dyn FnOnce() + Send>) {
        notify()
    }

    pub fn was_removed(&self, _id: ResourceId) -> bool {
        false
    }

    pub fn weak_waker(&self) -> std::sync::Arc<dyn Fn() + Send + Sync> {
        std::sync::Arc::new(|| ())
    }

    pub fn wake(&self) {}
}

impl Processor {
    pub fn process_poll_event(
        &mut self,
        _timeout: Option<Duration>,
        _callback: &mut dyn FnMut(NetEvent<'_>),
    ) {
    }
}
