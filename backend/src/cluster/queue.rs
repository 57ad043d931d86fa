//! The cluster's job queue on NATS JetStream: a work-queue stream `sf3d-NAME-jobs` on subject `sf3d.NAME.jobs`
//! and one durable pull consumer, `workers`, shared by every worker process — so each job goes to one worker at a
//! time. A worker acknowledges a job once it ended, sends progress acknowledgements while it runs (so a long job
//! is not delivered again), and terminates one that failed for good (a bad image); a job not acknowledged within
//! the ack wait (its worker died) is delivered again, to any worker, until it was delivered [`MAX_ATTEMPTS`]
//! times. The stream holds at most `capacity` jobs, waiting or running: a full queue refuses new ones
//! ([`QueueError::Full`], which clients see as `queue_full` / HTTP 429). A job is published with its id as the
//! message id, so publishing it twice (a retry after a lost answer) queues it once.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy};
use async_nats::jetstream::{self, Context};
use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ClusterName;
use crate::journal::MAX_ATTEMPTS;

/// The consumer every worker pulls from.
const CONSUMER: &str = "workers";
/// Default time a worker has to acknowledge a job (or send progress) before it is delivered again.
pub const ACK_WAIT: Duration = Duration::from_secs(30);
/// The header that carries a job's id (JetStream's de-duplication key).
const JOB_ID_HEADER: &str = "Nats-Msg-Id";
/// How long JetStream remembers a job id to drop a second publish of it.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Queue failures.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The stream holds `capacity` jobs.
    #[error("the cluster's queue is full ({0} jobs waiting or running); retry later")]
    Full(u32),
    /// NATS refused or did not answer.
    #[error("the cluster's job queue: {0}")]
    Nats(String),
    /// A queued message that is no job of ours (it is terminated, never retried).
    #[error("a queued message is no job: {0}")]
    BadMessage(String),
}

fn nats(what: &str, e: impl std::fmt::Display) -> QueueError {
    QueueError::Nats(format!("{what}: {e}"))
}

/// One cluster's queue, as a web tier (publishing) or a worker (pulling) sees it.
#[derive(Debug, Clone)]
pub struct JobQueue {
    js: Context,
    stream: String,
    subject: String,
    consumer: PullConsumer,
    capacity: u32,
}

/// A job a worker took: acknowledge it with [`Delivery::finished`] or [`Delivery::failed_for_good`], or let it be
/// delivered again by dropping it.
#[derive(Debug)]
pub struct Delivery<T> {
    /// The job's id.
    pub job_id: String,
    /// What was queued.
    pub job: T,
    /// 1 on the first delivery, 2 when a worker died with it, …
    pub attempt: u32,
    message: jetstream::Message,
}

impl JobQueue {
    /// Opens (creating if needed) the queue of `cluster` holding at most `capacity` jobs; a job not
    /// acknowledged within `ack_wait` is delivered again. The stream's and consumer's settings are fixed by the
    /// first process that creates them.
    pub async fn open(
        client: async_nats::Client,
        cluster: &ClusterName,
        capacity: u32,
        ack_wait: Duration,
    ) -> Result<Self, QueueError> {
        let js = jetstream::new(client);
        let subject = cluster.subject("jobs");
        let stream = js
            .get_or_create_stream(stream::Config {
                name: cluster.bucket("jobs"),
                subjects: vec![subject.clone()],
                retention: RetentionPolicy::WorkQueue,
                max_messages: i64::from(capacity),
                discard: DiscardPolicy::New,
                duplicate_window: DUPLICATE_WINDOW,
                ..Default::default()
            })
            .await
            .map_err(|e| nats("creating the stream", e))?;
        let consumer = stream
            .get_or_create_consumer(
                CONSUMER,
                pull::Config {
                    durable_name: Some(CONSUMER.into()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait,
                    max_deliver: i64::from(MAX_ATTEMPTS),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| nats("creating the consumer", e))?;
        Ok(Self { js, stream: cluster.bucket("jobs"), subject, consumer, capacity })
    }

    /// Removes the queue of `cluster` with its jobs (a deployment taken down; the tests' clean-up).
    pub async fn remove(client: async_nats::Client, cluster: &ClusterName) -> Result<(), QueueError> {
        jetstream::new(client).delete_stream(cluster.bucket("jobs")).await.map(drop).map_err(|e| nats("removing", e))
    }

    /// Queues `job` under `job_id`; [`QueueError::Full`] when the queue holds its capacity.
    pub async fn publish<T: Serialize>(&self, job_id: &str, job: &T) -> Result<(), QueueError> {
        let body = serde_json::to_vec(job).map_err(|e| nats("encoding the job", e))?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(JOB_ID_HEADER, job_id);
        let sent = self.js.publish_with_headers(self.subject.clone(), headers, body.into()).await;
        let acked = match sent {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match acked {
            Ok(_) => Ok(()),
            // JetStream's answer when a stream that discards new messages is at its limit.
            Err(e) if e.to_string().contains("maximum messages") => Err(QueueError::Full(self.capacity)),
            Err(e) => Err(nats("queueing the job", e)),
        }
    }

    /// `(waiting, running)`: jobs no worker took yet, and jobs a worker holds.
    pub async fn occupancy(&self) -> Result<(u32, u32), QueueError> {
        let info = self.consumer.clone().info().await.map_err(|e| nats("reading the queue", e))?.clone();
        let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        Ok((clamp(info.num_pending), clamp(info.num_ack_pending as u64)))
    }

    /// How long a worker may hold a job without a word before it goes to another (the consumer's setting,
    /// fixed by the process that created it).
    pub fn ack_wait(&self) -> Duration {
        self.consumer.cached_info().config.ack_wait
    }

    /// Sets the queue's capacity to `capacity` when the stream was created with another one (a web tier
    /// started with another `--max-queue`, or a worker created the stream first).
    pub async fn fit_capacity(&mut self, capacity: u32) -> Result<(), QueueError> {
        let mut stream = self.js.get_stream(&self.stream).await.map_err(|e| nats("reading the stream", e))?;
        let mut config = stream.info().await.map_err(|e| nats("reading the stream", e))?.config.clone();
        if config.max_messages != i64::from(capacity) {
            config.max_messages = i64::from(capacity);
            self.js.update_stream(config).await.map_err(|e| nats("resizing the queue", e))?;
        }
        self.capacity = capacity;
        Ok(())
    }

    /// The advisories JetStream sends when a job was delivered [`MAX_ATTEMPTS`] times and its last worker did not
    /// end it either (pass each to [`Self::remove_exhausted`]).
    pub async fn watch_exhausted(&self, client: &async_nats::Client) -> Result<async_nats::Subscriber, QueueError> {
        let subject = format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{CONSUMER}", self.stream);
        client.subscribe(subject).await.map_err(|e| nats("watching for exhausted jobs", e))
    }

    /// Removes the job an exhaustion advisory names from the queue (it is never delivered again, but would hold
    /// a place); returns its id, or `None` when another process removed it first.
    pub async fn remove_exhausted(&self, advisory: &[u8]) -> Result<Option<String>, QueueError> {
        #[derive(serde::Deserialize)]
        struct Advisory {
            stream_seq: u64,
        }
        let seq = serde_json::from_slice::<Advisory>(advisory).map_err(|e| nats("reading an advisory", e))?.stream_seq;
        let stream = self.js.get_stream(&self.stream).await.map_err(|e| nats("reading the stream", e))?;
        let Ok(message) = stream.get_raw_message(seq).await else { return Ok(None) };
        let job_id = message.headers.get(JOB_ID_HEADER).map(|v| v.as_str().to_string());
        match stream.delete_message(seq).await {
            Ok(true) => Ok(job_id),
            _ => Ok(None),
        }
    }

    /// The next job, waiting up to `wait` for one (`None` when none came).
    pub async fn next<T: DeserializeOwned>(&self, wait: Duration) -> Result<Option<Delivery<T>>, QueueError> {
        let mut batch =
            self.consumer.fetch().max_messages(1).expires(wait).messages().await.map_err(|e| nats("pulling", e))?;
        let message = match batch.next().await {
            None => return Ok(None),
            Some(m) => m.map_err(|e| nats("pulling", e))?,
        };
        let attempt = message.info().map(|i| u32::try_from(i.delivered).unwrap_or(u32::MAX)).unwrap_or(1);
        let job_id = message
            .headers
            .as_ref()
            .and_then(|h| h.get(JOB_ID_HEADER))
            .map(|v| v.as_str().to_string())
            .unwrap_or_default();
        match serde_json::from_slice::<T>(&message.payload) {
            Ok(job) if crate::gallery::is_valid_id(&job_id) => Ok(Some(Delivery { job_id, job, attempt, message })),
            decoded => {
                let why = match decoded {
                    Err(e) => e.to_string(),
                    Ok(_) => format!("no valid job id ({job_id:?})"),
                };
                let _ = message.ack_with(AckKind::Term).await;
                Err(QueueError::BadMessage(why))
            }
        }
    }
}

impl<T> Delivery<T> {
    /// Tells the queue the job is still running (call at least every third of the ack wait).
    pub async fn in_progress(&self) -> Result<(), QueueError> {
        self.message.ack_with(AckKind::Progress).await.map_err(|e| nats("progress", e))
    }

    /// The job ended (done, failed or cancelled): it leaves the queue for good.
    pub async fn finished(self) -> Result<(), QueueError> {
        self.message.double_ack().await.map_err(|e| nats("acknowledging", e))
    }

    /// This worker gives the job up (it stops): it goes to another worker at once. The delivery counts.
    pub async fn hand_back(self) -> Result<(), QueueError> {
        self.message.ack_with(AckKind::Nak(None)).await.map_err(|e| nats("handing back", e))
    }

    /// The job can never succeed (a bad image): it leaves the queue without being delivered again.
    pub async fn failed_for_good(self) -> Result<(), QueueError> {
        self.message.ack_with(AckKind::Term).await.map_err(|e| nats("terminating", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_services::test_nats;

    /// A queue of a cluster of the test's own, removed at the end.
    struct TestQueue {
        url: String,
        client: async_nats::Client,
        cluster: ClusterName,
    }

    impl TestQueue {
        async fn new(test: &str) -> Option<Self> {
            let url = test_nats()?;
            let client = async_nats::connect(url.as_str()).await.unwrap();
            let cluster: ClusterName = format!("t{}-q-{test}", std::process::id()).parse().unwrap();
            let _ = JobQueue::remove(client.clone(), &cluster).await;
            Some(Self { url, client, cluster })
        }

        /// A worker's or web tier's handle (each opens its own, as separate processes do).
        async fn open(&self, capacity: u32, ack_wait: Duration) -> JobQueue {
            let client = async_nats::connect(self.url.as_str()).await.unwrap();
            JobQueue::open(client, &self.cluster, capacity, ack_wait).await.unwrap()
        }

        async fn remove(self) {
            JobQueue::remove(self.client, &self.cluster).await.unwrap();
        }
    }

    #[derive(Debug, Serialize, serde::Deserialize, PartialEq)]
    struct Job {
        n: u32,
    }

    fn id() -> String {
        ulid::Ulid::new().to_string()
    }

    const SHORT: Duration = Duration::from_millis(1500);

    #[tokio::test]
    async fn each_job_goes_to_one_worker_and_leaves_when_finished() {
        let Some(t) = TestQueue::new("spread").await else { return };
        let (web, a, b) = (t.open(16, ACK_WAIT).await, t.open(16, ACK_WAIT).await, t.open(16, ACK_WAIT).await);
        for n in 0..4 {
            web.publish(&id(), &Job { n }).await.unwrap();
        }
        let mut seen = Vec::new();
        for worker in [&a, &b, &a, &b] {
            let d: Delivery<Job> = worker.next(SHORT).await.unwrap().unwrap();
            assert_eq!(d.attempt, 1);
            seen.push(d.job.n);
            d.finished().await.unwrap();
        }
        seen.sort_unstable();
        assert_eq!(seen, [0, 1, 2, 3]);
        assert!(a.next::<Job>(SHORT).await.unwrap().is_none());
        t.remove().await;
    }

    #[tokio::test]
    async fn a_job_whose_worker_died_is_delivered_again_to_another() {
        let Some(t) = TestQueue::new("redeliver").await else { return };
        let (a, b) = (t.open(16, Duration::from_secs(1)).await, t.open(16, Duration::from_secs(1)).await);
        let job_id = id();
        a.publish(&job_id, &Job { n: 7 }).await.unwrap();
        let first: Delivery<Job> = a.next(SHORT).await.unwrap().unwrap();
        assert_eq!((first.job_id.as_str(), first.attempt), (job_id.as_str(), 1));
        drop(first); // the worker died: no acknowledgement
        let again: Delivery<Job> = b.next(Duration::from_secs(5)).await.unwrap().unwrap();
        assert_eq!((again.job_id.as_str(), again.job.n, again.attempt), (job_id.as_str(), 7, 2));
        drop(again);
        // Delivered MAX_ATTEMPTS times: not again.
        assert!(a.next::<Job>(Duration::from_secs(3)).await.unwrap().is_none());
        t.remove().await;
    }

    #[tokio::test]
    async fn progress_keeps_a_long_job_with_its_worker_and_a_bad_one_ends_for_good() {
        let Some(t) = TestQueue::new("progress").await else { return };
        let (a, b) = (t.open(16, Duration::from_secs(1)).await, t.open(16, Duration::from_secs(1)).await);
        a.publish(&id(), &Job { n: 1 }).await.unwrap();
        let long: Delivery<Job> = a.next(SHORT).await.unwrap().unwrap();
        let watcher = tokio::spawn(async move { b.next::<Job>(Duration::from_millis(2500)).await.unwrap().is_none() });
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            long.in_progress().await.unwrap();
        }
        assert!(watcher.await.unwrap(), "a job with progress must not be delivered again");
        long.finished().await.unwrap();

        a.publish(&id(), &Job { n: 2 }).await.unwrap();
        let bad: Delivery<Job> = a.next(SHORT).await.unwrap().unwrap();
        bad.failed_for_good().await.unwrap();
        assert!(a.next::<Job>(Duration::from_secs(2)).await.unwrap().is_none());
        t.remove().await;
    }

    #[tokio::test]
    async fn a_full_queue_refuses_jobs_and_a_job_published_twice_is_queued_once() {
        let Some(t) = TestQueue::new("full").await else { return };
        let q = t.open(2, ACK_WAIT).await;
        let twice = id();
        q.publish(&twice, &Job { n: 0 }).await.unwrap();
        q.publish(&twice, &Job { n: 0 }).await.unwrap();
        q.publish(&id(), &Job { n: 1 }).await.unwrap();
        assert!(matches!(q.publish(&id(), &Job { n: 2 }).await, Err(QueueError::Full(2))));
        let d: Delivery<Job> = q.next(SHORT).await.unwrap().unwrap();
        assert_eq!((d.job_id.as_str(), d.job.n), (twice.as_str(), 0));
        d.finished().await.unwrap();
        q.publish(&id(), &Job { n: 3 }).await.unwrap();
        let rest: Vec<u32> = [q.next::<Job>(SHORT).await, q.next::<Job>(SHORT).await]
            .into_iter()
            .map(|d| d.unwrap().unwrap().job.n)
            .collect();
        assert_eq!(rest, [1, 3]);
        t.remove().await;
    }
}
