//! Progress reporting and cancellation inside long stages.

use crate::error::{Error, Result};

/// Receives progress from inside a long stage and decides whether it may go on.
///
/// Long loops call [`Progress::report`] every so often; an `Err` (normally [`Error::Cancelled`]) must be
/// propagated at once, which is how a cancelled job stops at its next check.
pub trait Progress {
    /// `value` of `max` units are done. Returns `Err(Error::Cancelled)` when the job was cancelled.
    fn report(&mut self, value: u64, max: u64) -> Result<()>;
}

/// Ignores progress and never cancels.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn report(&mut self, _value: u64, _max: u64) -> Result<()> {
        Ok(())
    }
}

impl<F: FnMut(u64, u64) -> Result<()>> Progress for F {
    fn report(&mut self, value: u64, max: u64) -> Result<()> {
        self(value, max)
    }
}

/// A cancellation flag shared between a job's owner and the thread running it.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// `Err(Error::Cancelled)` once cancelled.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() { Err(Error::Cancelled) } else { Ok(()) }
    }
}
