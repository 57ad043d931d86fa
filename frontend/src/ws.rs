//! The job socket (`/ws` on the page's own origin): connects, decodes every server frame into a
//! [`ServerMessage`], hands it to one handler, and reconnects with exponential backoff after a drop.
//!
//! The `web_sys::WebSocket` is `!Send`, so it lives in a thread-local next to its event closures; the rest of
//! the app only sees [`SocketEvent`]s and the [`send`] / [`send_with_binary`] functions. What to do after a
//! reconnect (re-subscribing to a running job) is the handler's business: it gets a fresh
//! [`ServerMessage::Hello`] on every connection.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use js_sys::ArrayBuffer;
use sf3d_shared::{ClientMessage, ServerMessage};
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use crate::api::js_error_text;

/// First reconnect delay.
const BACKOFF_START_MS: u32 = 500;
/// Longest reconnect delay.
const BACKOFF_MAX_MS: u32 = 8_000;

/// What the socket tells the app.
#[derive(Debug, Clone, PartialEq)]
pub enum SocketEvent {
    /// A connection attempt started (`attempt` 0 is the first since the last successful message).
    Connecting {
        /// Failed attempts since the last good connection.
        attempt: u32,
    },
    /// A server message arrived.
    Message(ServerMessage),
    /// A text frame that is not a message of this protocol version.
    Invalid(String),
    /// The connection dropped (or never opened); the next attempt starts in `retry_in`, unless stopped.
    Closed {
        /// Delay before the next attempt.
        retry_in: Duration,
        /// The close reason the server gave, if any.
        reason: String,
    },
}

/// Why a message could not be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// There is no open connection right now (it reconnects by itself).
    NotConnected,
    /// The browser refused the frame.
    Failed(String),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::NotConnected => f.write_str("not connected to the server (reconnecting…)"),
            SendError::Failed(why) => write!(f, "could not send: {why}"),
        }
    }
}

type Handler = Rc<dyn Fn(SocketEvent)>;

/// The open socket and the closures it calls (dropping them detaches the socket).
struct Live {
    ws: WebSocket,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        // Already closing or closed sockets ignore this.
        let _ = self.ws.close();
    }
}

thread_local! {
    static LIVE: RefCell<Option<Live>> = const { RefCell::new(None) };
    static HANDLER: RefCell<Option<Handler>> = const { RefCell::new(None) };
    static ATTEMPT: Cell<u32> = const { Cell::new(0) };
    static STOPPED: Cell<bool> = const { Cell::new(false) };
}

/// Delay before reconnect attempt `attempt` (1-based): 0.5 s doubling up to 8 s.
pub fn backoff(attempt: u32) -> Duration {
    let shift = attempt.saturating_sub(1).min(16);
    Duration::from_millis(u64::from(BACKOFF_START_MS.saturating_mul(1 << shift).min(BACKOFF_MAX_MS)))
}

/// The socket URL for a page at `protocol` (`"http:"`/`"https:"`) and `host` (`"127.0.0.1:9299"`).
pub fn socket_url(protocol: &str, host: &str) -> String {
    let scheme = if protocol == "https:" { "wss" } else { "ws" };
    format!("{scheme}://{host}/ws")
}

fn emit(event: SocketEvent) {
    let handler = HANDLER.with(|h| h.borrow().clone());
    if let Some(h) = handler {
        h(event);
    }
}

/// Starts the connection loop; `handler` receives every [`SocketEvent`] from now on.
pub fn start(handler: impl Fn(SocketEvent) + 'static) {
    HANDLER.with(|h| *h.borrow_mut() = Some(Rc::new(handler)));
    STOPPED.with(|s| s.set(false));
    open();
}

/// Drops the current connection so that the loop reconnects at once (e.g. with a new API key).
pub fn reconnect() {
    ATTEMPT.with(|a| a.set(0));
    LIVE.with(|l| {
        if let Some(live) = l.borrow().as_ref() {
            let _ = live.ws.close();
        }
    });
}

/// Closes the socket for good (after a protocol mismatch): no further reconnects.
pub fn stop() {
    STOPPED.with(|s| s.set(true));
    LIVE.with(|l| {
        if let Some(live) = l.borrow().as_ref() {
            let _ = live.ws.close();
        }
    });
}

fn open() {
    if STOPPED.with(Cell::get) {
        return;
    }
    let attempt = ATTEMPT.with(Cell::get);
    emit(SocketEvent::Connecting { attempt });
    let url = web_sys::window()
        .map(|w| w.location())
        .map(|l| socket_url(&l.protocol().unwrap_or_default(), &l.host().unwrap_or_default()))
        .map(|u| crate::api::authed_url(&u))
        .unwrap_or_default();
    let ws = match WebSocket::new(&url) {
        Ok(ws) => ws,
        Err(e) => {
            // A malformed URL: retrying will not help, but keep the loop alive in case the page is moved.
            closed(js_error_text(&e));
            return;
        }
    };
    ws.set_binary_type(BinaryType::Arraybuffer);
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(|ev: MessageEvent| {
        let Some(text) = ev.data().as_string() else {
            // The server pushes no binary frames in protocol 1; results are fetched by URL.
            return;
        };
        match serde_json::from_str::<ServerMessage>(&text) {
            Ok(msg) => {
                ATTEMPT.with(|a| a.set(0));
                emit(SocketEvent::Message(msg));
            }
            Err(e) => emit(SocketEvent::Invalid(format!("{e}: {}", text.chars().take(120).collect::<String>()))),
        }
    });
    let on_close = Closure::<dyn FnMut(CloseEvent)>::new(|ev: CloseEvent| closed(ev.reason()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    // Replacing the previous `Live` drops its closures; we are in a timer callback, not inside them.
    let previous = LIVE.with(|l| l.borrow_mut().replace(Live { ws, _on_message: on_message, _on_close: on_close }));
    drop(previous);
}

fn closed(reason: String) {
    if STOPPED.with(Cell::get) {
        return;
    }
    let attempt = ATTEMPT.with(|a| {
        let n = a.get().saturating_add(1);
        a.set(n);
        n
    });
    let retry_in = backoff(attempt);
    emit(SocketEvent::Closed { retry_in, reason });
    leptos::prelude::set_timeout(open, retry_in);
}

fn with_open_socket<T>(f: impl FnOnce(&WebSocket) -> Result<T, SendError>) -> Result<T, SendError> {
    LIVE.with(|l| match l.borrow().as_ref() {
        Some(live) if live.ws.ready_state() == WebSocket::OPEN => f(&live.ws),
        _ => Err(SendError::NotConnected),
    })
}

fn encode(msg: &ClientMessage) -> Result<String, SendError> {
    serde_json::to_string(msg).map_err(|e| SendError::Failed(e.to_string()))
}

/// Sends one JSON message.
pub fn send(msg: &ClientMessage) -> Result<(), SendError> {
    let text = encode(msg)?;
    with_open_socket(|ws| ws.send_with_str(&text).map_err(|e| SendError::Failed(js_error_text(&e))))
}

/// Sends a JSON message and, right after it on the same connection, one binary frame (the image of a
/// `generate` with `"image": {"kind": "binary", ...}`).
pub fn send_with_binary(msg: &ClientMessage, data: &ArrayBuffer) -> Result<(), SendError> {
    let text = encode(msg)?;
    with_open_socket(|ws| {
        ws.send_with_str(&text).map_err(|e| SendError::Failed(js_error_text(&e)))?;
        ws.send_with_array_buffer(data).map_err(|e| SendError::Failed(js_error_text(&e)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_saturates() {
        let ms: Vec<u128> = (1..=7).map(|a| backoff(a).as_millis()).collect();
        assert_eq!(ms, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(backoff(0).as_millis(), 500);
        assert_eq!(backoff(u32::MAX).as_millis(), 8000);
    }

    #[test]
    fn socket_url_follows_the_page() {
        assert_eq!(socket_url("http:", "127.0.0.1:9299"), "ws://127.0.0.1:9299/ws");
        assert_eq!(socket_url("https:", "sf3d.example"), "wss://sf3d.example/ws");
    }
}
