//! The chat demo's client: a portnet node in a web page, connected with `Transport::Ws` to the
//! native `chat-server` example. The page (`web/demo/www`) draws; this crate does the network.
//!
//! Built for `wasm32-unknown-unknown` only: natively this crate is empty.
#![cfg(all(target_family = "wasm", target_os = "unknown"))]

use futures_core::Stream;
use portnet::network::{Endpoint, SendStatus, StoredNetEvent, Transport};
use portnet::node::{self, NodeHandler, NodeStream, StoredNodeEvent};
use std::pin::Pin;
use wasm_bindgen::prelude::*;

/// The stream's next event (what `StreamExt::next` does, without the `futures` crate).
async fn next(events: &mut NodeStream<()>) -> Option<StoredNodeEvent<()>> {
    std::future::poll_fn(|cx| Pin::new(&mut *events).poll_next(cx)).await
}

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
        // The node's async face on the page's event loop: the task awaits the connect, then
        // each event (docs/async.md, "In the browser").
        let mut events = listener.into_stream().map_err(|e| JsError::new(&e.to_string()))?;
        wasm_bindgen_futures::spawn_local(async move {
            if events.connected(server).await.is_err() {
                return report("state", "refused");
            }
            while let Some(event) = next(&mut events).await {
                match event {
                    StoredNodeEvent::Network(StoredNetEvent::Connected(_, true)) => {
                        report("state", "connected")
                    }
                    StoredNodeEvent::Network(StoredNetEvent::Disconnected(_)) => {
                        report("state", "disconnected")
                    }
                    StoredNodeEvent::Network(StoredNetEvent::Message(_, data)) => {
                        report("message", &String::from_utf8_lossy(&data))
                    }
                    _ => (),
                }
            }
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
