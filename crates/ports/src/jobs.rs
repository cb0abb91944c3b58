//! Background jobs: their durable state (PostgreSQL) and their delivery (a queue).
//!
//! A job's row is the truth: the queue only carries its id and kind. A message that is lost (the
//! queue flushed, a crash between the write and the enqueue) is found again from the rows and
//! enqueued anew, so every job runs; delivery is at least once and handlers are idempotent.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::PortError;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// Waiting for a worker (also between retries).
    Queued,
    /// A worker is on it.
    Running,
    /// Finished successfully.
    Done,
    /// Gave up after the last attempt (dead-lettered).
    Failed,
}

impl JobStatus {
    /// The status as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
        }
    }

    /// Parses a stored status.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "queued" => Some(JobStatus::Queued),
            "running" => Some(JobStatus::Running),
            "done" => Some(JobStatus::Done),
            "failed" => Some(JobStatus::Failed),
            _ => None,
        }
    }
}

/// The W3C trace context of the request that queues a job, which the job's spans continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// The `traceparent` value.
    pub traceparent: String,
    /// The `tracestate` value, if the trace has one (at most 512 characters).
    pub tracestate: Option<String>,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Identifier (UUIDv7).
    pub id: Uuid,
    /// Which handler runs it (`subscriptions.renew`).
    pub kind: String,
    /// The handler's input, JSON text.
    pub payload: String,
    /// Where it is.
    pub status: JobStatus,
    /// Attempts started so far.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// The W3C `traceparent` of the request that queued the job, so that its spans join that
    /// trace.
    pub trace_parent: Option<String>,
    /// The W3C `tracestate` that goes with [`Job::trace_parent`], if the trace has one (at most
    /// 512 characters).
    pub trace_state: Option<String>,
    /// Not to run before this instant (retry backoff).
    pub run_after: DateTime<Utc>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Durable job state.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait JobRepository: Send + Sync + 'static {
    /// Stores a new queued job.
    async fn create(&self, job: &Job) -> Result<(), PortError>;
    /// The job with this id; `Ok(None)` when there is none.
    async fn find(&self, id: Uuid) -> Result<Option<Job>, PortError>;
    /// Marks an attempt started (running, attempts + 1) unless the job is already done or failed,
    /// in which case `Ok(None)`: a duplicate delivery to acknowledge and drop.
    async fn start(&self, id: Uuid, now: DateTime<Utc>) -> Result<Option<Job>, PortError>;
    /// Marks the job done.
    async fn complete(&self, id: Uuid, now: DateTime<Utc>) -> Result<(), PortError>;
    /// Records a failed attempt: queued again from `retry_at`, or failed for good when `None`.
    async fn fail(
        &self,
        id: Uuid,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), PortError>;
    /// Records that the worker running the job is alive (`updated_at = now`), so that the stranded
    /// sweep leaves a long job alone. `Ok(false)` when the job is no longer running: another
    /// worker recorded its outcome, so this attempt is stale.
    async fn heartbeat(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool, PortError>;
    /// Puts a running job back to queued (a worker shutting down released it).
    async fn release(&self, id: Uuid, now: DateTime<Utc>) -> Result<(), PortError>;
    /// Queued or running jobs untouched since `before` whose `run_after` has passed: candidates
    /// whose queue message may have been lost. Each returned job is touched (`updated_at = now`),
    /// so concurrent sweepers do not all re-enqueue it.
    async fn stranded(
        &self,
        before: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Job>, PortError>;
    /// True for exactly one caller per `(name, tick)`: how a periodic task runs once per cluster
    /// per tick whatever the number of workers.
    async fn claim_tick(&self, name: &str, tick: DateTime<Utc>) -> Result<bool, PortError>;
    /// How many jobs wait to run (queued, retries waiting out their backoff included), by kind:
    /// `(kind, count)` pairs, only the kinds with a waiting job. One cheap statement, for the
    /// queue-depth gauge.
    async fn queued_by_kind(&self) -> Result<Vec<(String, u64)>, PortError>;
}

/// One delivery of a job's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The queue's id of the message (to acknowledge it).
    pub message_id: String,
    /// The job.
    pub job_id: Uuid,
    /// The job's kind.
    pub kind: String,
    /// How many times this message has been delivered (1 the first time).
    pub deliveries: u64,
}

/// The delivery of job messages to a group of workers (Redis Streams).
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Adds a message for the job, to be delivered now.
    async fn enqueue(&self, job_id: Uuid, kind: &str) -> Result<(), PortError>;
    /// Adds a message to be delivered from `at` (retry backoff).
    async fn enqueue_at(
        &self,
        job_id: Uuid,
        kind: &str,
        at: DateTime<Utc>,
    ) -> Result<(), PortError>;
    /// Moves the messages due by `now` from the delayed set to the queue; how many moved.
    async fn promote_due(&self, now: DateTime<Utc>) -> Result<usize, PortError>;
    /// The next message for `consumer`, waiting up to `block`; `Ok(None)` when none came.
    async fn receive(&self, consumer: &str, block: Duration)
    -> Result<Option<Delivery>, PortError>;
    /// Takes over up to `count` messages another consumer received but did not acknowledge for
    /// at least `min_idle` (it crashed or hangs).
    async fn claim_stale(
        &self,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Delivery>, PortError>;
    /// Keeps `consumer`'s claim on a message it is still working on: resets its idle time, so that
    /// [`JobQueue::claim_stale`] does not hand it to another consumer, without counting a
    /// delivery. `Ok(false)` when `consumer` no longer holds it (another consumer took it over, or
    /// it was acknowledged); then nothing changes.
    async fn refresh_claim(&self, consumer: &str, delivery: &Delivery) -> Result<bool, PortError>;
    /// Acknowledges a message: it will not be delivered again.
    async fn ack(&self, delivery: &Delivery) -> Result<(), PortError>;
    /// Acknowledges a message and records it on the dead-letter stream with `reason`.
    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), PortError>;
    /// How many messages the dead-letter stream holds.
    async fn dead_letters(&self) -> Result<u64, PortError>;
}

/// How old things may get before the retention sweep deletes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionCutoffs {
    /// Finished (done or failed) jobs last touched before this go.
    pub finished_jobs_before: DateTime<Utc>,
    /// Ticks of periodic tasks before this go.
    pub ticks_before: DateTime<Utc>,
    /// Idempotency-Key records that expired before this go.
    pub idempotency_expired_before: DateTime<Utc>,
}

/// What one retention batch deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Finished jobs.
    pub jobs: u64,
    /// Periodic-task ticks.
    pub ticks: u64,
    /// Expired Idempotency-Key records.
    pub idempotency_keys: u64,
}

/// Deletes the bookkeeping rows that no longer serve anything.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait RetentionRepository: Send + Sync + 'static {
    /// Deletes up to `batch` rows of each kind older than `cutoffs` (short statements, so no
    /// long lock is held); call again while a kind comes back full.
    async fn purge(&self, cutoffs: &RetentionCutoffs, batch: usize) -> Result<Purged, PortError>;
}
