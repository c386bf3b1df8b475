//! The chat demo's client: a portnet node in a web page, connected with `Transport::Ws` to the
//! native `chat-server` example. The page (`web/demo/www`) draws; this crate does the network.
//!
//! Built for `wasm32-unknown-unknown` only: natively this crate is empty.
#![cfg(all(target_family = "wasm", target_os = "unknown"))]

use portnet::network::{Endpoint, NetEvent, SendStatus, Transport};
use portnet::node::{self, NodeEvent, NodeHandler};
use wasm_bindgen::prelude::*;

/// A connection to the chat server.
#[wasm_bindgen]
pub struct Chat {
    handler: NodeHandler<()>,
    server: Endpoint,
}

#[wasm_bindgen]
impl Chat {
    /// Connects to `url` (a `ws://` URL or `host:port`) and reports to
    /// `on_event(kind, text)`: `("state", "connected" | "refused" | "disconnected")` and
    /// `("message", text)`.
    #[wasm_bindgen(constructor)]
    pub fn new(url: &str, on_event: js_sys::Function) -> Result<Chat, JsError> {
        let (handler, listener) = node::split();
        let (server, _) = handler
            .network()
            .connect(Transport::Ws, url)
            .map_err(|e| JsError::new(&e.to_string()))?;
        let report = move |kind: &str, text: &str| {
            let _ = on_event.call2(&JsValue::NULL, &kind.into(), &text.into());
        };
        // Returns at once: in the browser the loop runs on the JS event loop.
        listener.for_each(move |event| match event {
            NodeEvent::Network(NetEvent::Connected(_, true)) => report("state", "connected"),
            NodeEvent::Network(NetEvent::Connected(_, false)) => report("state", "refused"),
            NodeEvent::Network(NetEvent::Disconnected(_)) => report("state", "disconnected"),
            NodeEvent::Network(NetEvent::Message(_, data)) => {
                report("message", &String::from_utf8_lossy(data))
            }
            NodeEvent::Network(NetEvent::Accepted(..)) | NodeEvent::Signal(()) => (),
        });
        Ok(Chat { handler, server })
    }

    /// Sends a chat line. Returns what went wrong, or an empty string.
    pub fn send(&self, text: &str) -> String {
        match self.handler.network().send(self.server, text.as_bytes()) {
            SendStatus::Sent => "",
            SendStatus::ResourceNotAvailable => "not connected yet",
            SendStatus::QueueFull => "too much to send: try again",
            SendStatus::MaxPacketSizeExceeded => "too long",
            _ => "not connected",
        }
        .into()
    }

    /// Disconnects and stops the node.
    pub fn close(&self) {
        self.handler.stop();
    }
}
