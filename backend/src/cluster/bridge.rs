//! A small tokio runtime of its own for a NATS client used from synchronous code (the gallery, the job manager):
//! each call hands a future to it and waits for the answer, bounded. The client's runtime must not be the
//! server's: a synchronous caller may itself run on one of the server's threads.

use std::future::Future;
use std::time::Duration;

/// The runtime and the calls into it.
pub struct Bridge {
    /// `None` only while dropping.
    rt: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bridge")
    }
}

impl Bridge {
    /// Starts the runtime (one worker thread, named `thread_name`).
    pub fn new(thread_name: &str) -> Result<Self, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(thread_name)
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the {thread_name} runtime: {e}"))?;
        Ok(Self { rt: Some(rt) })
    }

    /// Runs `fut` there and waits at most `timeout` for it, from any thread. Inside a multi-threaded runtime the
    /// wait is announced to it, so its other tasks move to other threads meanwhile.
    pub fn run<T: Send + 'static>(
        &self,
        timeout: Duration,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, String> {
        let Some(rt) = &self.rt else { return Err("closed".into()) };
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = reply.send(fut.await);
        });
        let wait = || answer.recv_timeout(timeout).map_err(|_| format!("no answer within {} s", timeout.as_secs()));
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }

    /// Starts `fut` there without waiting for it.
    pub fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        if let Some(rt) = &self.rt {
            rt.spawn(fut);
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // Never blocks, so it may run inside another runtime too.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
