//! The few JS globals the browser backend needs beyond web-sys: timers that work in a window
//! and in a worker alike (both have `setTimeout` on their global object).

use std::time::Duration;
use wasm_bindgen::JsValue;
use wasm_bindgen::prelude::wasm_bindgen;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &JsValue, ms: i32) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(handle: &JsValue);
}

/// A pending `setTimeout`, cleared when dropped. The handler is owned by whoever armed it and
/// must outlive the timeout (the owner drops the timeout first).
pub(super) struct Timeout(JsValue);

impl Timeout {
    /// Calls `handler` (a JS function) after `delay`, rounded up to the next millisecond so
    /// that it never fires before a deadline computed on the same clock.
    pub fn new(handler: &JsValue, delay: Duration) -> Self {
        let ms = (delay.as_secs_f64() * 1000.0).ceil().min(i32::MAX as f64) as i32;
        Timeout(set_timeout(handler, ms))
    }
}

impl Drop for Timeout {
    fn drop(&mut self) {
        clear_timeout(&self.0);
    }
}

/// The message of a JS exception, for an `io::Error`.
pub(super) fn error_message(error: &JsValue) -> String {
    use wasm_bindgen::JsCast;
    match error.dyn_ref::<js_sys::Error>() {
        Some(error) => String::from(error.message()),
        None => error.as_string().unwrap_or_else(|| "unknown JavaScript error".into()),
    }
}
