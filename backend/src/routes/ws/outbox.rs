//! A connection's outgoing queue. Pushing never waits: when the queue is full the client is not reading what it
//! asked for, so the connection is marked for disconnection (the reader loop is woken through the overflow
//! signal) instead of letting the readers and job forwarders block behind it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sf3d_shared::ServerMessage;
use tokio::sync::{Notify, mpsc};

/// Outgoing frames buffered per connection: many jobs' bursts of stage events for a client that reads.
const CAPACITY: usize = 1024;

/// A frame for the writer.
pub(super) enum Out {
    /// A protocol message.
    Msg(ServerMessage),
    /// A WebSocket ping.
    Ping,
    /// A close frame, then stop.
    Close(u16, &'static str),
    /// Stop without a close frame (the client closed).
    Stop,
}

/// The sending side, shared by the reader and the job forwarders of one connection.
#[derive(Clone)]
pub(super) struct Outbox {
    tx: mpsc::Sender<Out>,
    overflow: Arc<Notify>,
    closed: Arc<AtomicBool>,
}

impl Outbox {
    /// The outbox, the writer's receiver, and the signal raised when the outbox overflows.
    pub(super) fn new() -> (Self, mpsc::Receiver<Out>, Arc<Notify>) {
        let (tx, rx) = mpsc::channel(CAPACITY);
        let overflow = Arc::new(Notify::new());
        (Self { tx, overflow: overflow.clone(), closed: Arc::default() }, rx, overflow)
    }

    /// Queues a frame; false once the connection is ending, or when the queue is full or the writer has stopped
    /// (either of which ends it).
    pub(super) fn push(&self, o: Out) -> bool {
        if self.closed.load(Ordering::SeqCst) {
            return false;
        }
        match self.tx.try_send(o) {
            Ok(()) => true,
            // Full: the client does not read. Closed: the writer gave up on a write that made no progress.
            // Either way the connection ends.
            Err(mpsc::error::TrySendError::Full(_) | mpsc::error::TrySendError::Closed(_)) => {
                self.closed.store(true, Ordering::SeqCst);
                self.overflow.notify_one();
                false
            }
        }
    }

    /// Queues the last frame and refuses everything after it; false if it could not be queued.
    pub(super) fn finish(&self, o: Out) -> bool {
        self.closed.store(true, Ordering::SeqCst);
        self.tx.try_send(o).is_ok()
    }
}
