//! The background worker: consumes job messages, runs their handlers, retries with exponential
//! backoff, dead-letters what keeps failing, takes over what a crashed worker left, re-enqueues
//! jobs whose messages were lost, and fires the periodic jobs once per cluster per tick.
//!
//! Delivery is at least once; a job's row in PostgreSQL is the truth, and handlers are idempotent
//! (a renewal is unique per subscription and period), so a duplicate delivery does no harm.
//! When the worker gives up on a job, it first calls its handler's [`JobHandler::on_dead`], so that
//! whatever awaits the job's outcome (a report) is marked failed; if that fails, the job is left to
//! be taken over and run again (docs/decisions/0010-reports.md).
//!
//! While a handler runs, a heartbeat beside it refreshes the job's claim on the queue and its row
//! (see [`WorkerSettings::heartbeat_every`]), so that a job longer than the claim-idle time is not
//! taken over by another worker while it still runs here; a worker that dies stops beating, and
//! its job is taken over as before. Should a beat come too late and another worker hold the job,
//! this worker stops its handler and records nothing: the job runs in one place at a time.
//!
//! Outcomes are counted by job kind in [`JOBS_PROCESSED`], [`JOBS_FAILED`] and
//! [`JOBS_DEAD_LETTERED`], once the outcome is recorded (a job whose outcome could not be stored
//! runs again, and is counted then); the handler's time of each such attempt goes to
//! [`JOBS_DURATION_SECONDS`] at the same moment, so its count per outcome matches the counters.
//! While it runs, the worker also samples the backlog into [`JOBS_QUEUE_DEPTH`] and
//! [`JOBS_DEAD_LETTER_DEPTH`], beside the job loop rather than in it, so that a slow count never
//! delays a job.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use strata_ports::{
    Clock, Delivery, IdGenerator, Job, JobQueue, JobRepository, JobStatus, PortError, TraceContext,
};
use tokio::sync::watch;
use tracing::Instrument as _;

/// Jobs whose handler succeeded.
pub const JOBS_PROCESSED: &str = "jobs_processed_total";
/// Failed attempts that will be retried.
pub const JOBS_FAILED: &str = "jobs_failed_total";
/// Jobs given up on: out of attempts, or of a kind no handler runs.
pub const JOBS_DEAD_LETTERED: &str = "jobs_dead_lettered_total";
/// How long the handler of each recorded attempt took, by `kind` and `outcome`.
pub const JOBS_DURATION_SECONDS: &str = "jobs_duration_seconds";
/// Jobs waiting to run (retries waiting out their backoff included), by `kind`.
pub const JOBS_QUEUE_DEPTH: &str = "jobs_queue_depth";
/// Messages on the dead-letter stream.
pub const JOBS_DEAD_LETTER_DEPTH: &str = "jobs_dead_letter_depth";

/// The longest one sample of the depths may take: a count stuck behind an outage is abandoned
/// and tried again at the next tick.
pub const DEPTH_SAMPLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Counts an outcome of a job of `kind`.
fn count(metric: &'static str, kind: &str) {
    metrics::counter!(metric, "kind" => kind.to_owned()).increment(1);
}

/// Records how long the handler of an attempt of `kind` took, and to what `outcome` (`done`,
/// `failed` or `dead_lettered`).
fn time(kind: &str, outcome: &'static str, took: Duration) {
    metrics::histogram!(JOBS_DURATION_SECONDS, "kind" => kind.to_owned(), "outcome" => outcome)
        .record(took.as_secs_f64());
}

/// Runs one kind of job.
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// Does the job's work. An error is retried (up to the attempt limit), so the work must be
    /// safe to run again.
    async fn handle(&self, job: &Job) -> anyhow::Result<()>;

    /// Called once the worker gives up on `job` (its last attempt failed with `error`), before
    /// the job is recorded failed and dead-lettered: the place to record the failure wherever the
    /// job's outcome is awaited. An error leaves the job unrecorded and its message
    /// unacknowledged, so that it is taken over, run again, and this is called again if that
    /// attempt fails too. Idempotent, like [`JobHandler::handle`]. Does nothing by default.
    async fn on_dead(&self, job: &Job, error: &anyhow::Error) -> anyhow::Result<()> {
        let _ = (job, error);
        Ok(())
    }
}

/// Joins a job's span to the trace of the request that queued it (implemented by whoever owns the
/// tracing setup; the worker only hands over the stored `traceparent` and `tracestate`).
pub trait TraceLink: Send + Sync + 'static {
    /// Makes `span` a child of the span named by `trace_parent` (a W3C `traceparent`), carrying
    /// `trace_state` (its `tracestate`) on.
    fn adopt(&self, span: &tracing::Span, trace_parent: &str, trace_state: Option<&str>);
}

/// A job created on a schedule.
#[derive(Debug, Clone)]
pub struct PeriodicJob {
    /// The job kind to enqueue (a registered handler).
    pub kind: &'static str,
    /// How often: once per `every`, counted from the Unix epoch, across every worker.
    pub every: Duration,
}

/// How the worker paces itself.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// This worker's name in the consumer group (unique per process).
    pub consumer: String,
    /// Attempts before a job is dead-lettered.
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each further attempt.
    pub backoff_base: Duration,
    /// Longest delay between attempts.
    pub backoff_max: Duration,
    /// A message received but unacknowledged this long belongs to a dead worker and is taken over.
    pub claim_idle: Duration,
    /// How long one receive waits for a message.
    pub block: Duration,
    /// A queued or running job untouched this long may have lost its message: enqueue it again.
    pub sweep_after: Duration,
    /// How often housekeeping (promote retries, claim, sweep, ticks) runs.
    pub housekeeping_every: Duration,
    /// After a stop request, how long the job at hand may take before it is released.
    pub shutdown_grace: Duration,
    /// How often the queue and dead-letter depths are sampled into their gauges; `None` samples
    /// nothing.
    pub depth_sample_every: Option<Duration>,
}

impl WorkerSettings {
    /// How often a running job's claim is refreshed: a third of the shorter of
    /// [`WorkerSettings::claim_idle`] and [`WorkerSettings::sweep_after`], so that two refreshes
    /// may be lost before another worker takes the job over.
    pub fn heartbeat_every(&self) -> Duration {
        (self.claim_idle.min(self.sweep_after) / 3).max(Duration::from_millis(1))
    }
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            consumer: format!("worker-{}", std::process::id()),
            max_attempts: 5,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            claim_idle: Duration::from_secs(30),
            block: Duration::from_millis(500),
            sweep_after: Duration::from_secs(300),
            housekeeping_every: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(10),
            depth_sample_every: Some(Duration::from_secs(15)),
        }
    }
}

/// What processing one delivery came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The handler succeeded; the message is acknowledged.
    Done,
    /// The handler failed; the job is scheduled again.
    Retrying,
    /// The handler failed for the last time, or no handler exists; the message is dead-lettered.
    DeadLettered,
    /// The job was done or failed already (a duplicate delivery); acknowledged and dropped.
    Duplicate,
    /// The worker was stopping and the job did not finish in time; it was put back.
    Released,
    /// Another worker took the job over while its handler ran here (a heartbeat came too late):
    /// the handler was stopped and nothing recorded, the other worker's run is the one that counts.
    Abandoned,
}

/// The worker.
pub struct Worker {
    queue: Arc<dyn JobQueue>,
    jobs: Arc<dyn JobRepository>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    handlers: HashMap<String, Arc<dyn JobHandler>>,
    periodic: Vec<PeriodicJob>,
    settings: WorkerSettings,
    trace_link: Option<Arc<dyn TraceLink>>,
    depths: Arc<DepthSampler>,
}

impl Worker {
    /// A worker with no handlers yet.
    pub fn new(
        queue: Arc<dyn JobQueue>,
        jobs: Arc<dyn JobRepository>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
        settings: WorkerSettings,
    ) -> Self {
        Self {
            queue: queue.clone(),
            jobs: jobs.clone(),
            clock,
            ids,
            handlers: HashMap::new(),
            periodic: Vec::new(),
            settings,
            trace_link: None,
            depths: Arc::new(DepthSampler {
                queue,
                jobs,
                kinds: std::sync::Mutex::new(BTreeSet::new()),
            }),
        }
    }

    /// Registers the handler of `kind`.
    #[must_use]
    pub fn handle(mut self, kind: &str, handler: Arc<dyn JobHandler>) -> Self {
        self.handlers.insert(kind.to_owned(), handler);
        self.depths.know(kind);
        self
    }

    /// Continues the traces of the requests that queued jobs.
    #[must_use]
    pub fn with_trace_link(mut self, link: Arc<dyn TraceLink>) -> Self {
        self.trace_link = Some(link);
        self
    }

    /// Schedules `job` periodically.
    #[must_use]
    pub fn every(mut self, job: PeriodicJob) -> Self {
        self.periodic.push(job);
        self
    }

    /// Runs until `stop` turns true: then finishes (or releases) the job at hand and returns.
    /// Infrastructure errors are logged and retried after a pause; they never end the loop.
    /// Meanwhile a task of its own samples the depth gauges every
    /// [`WorkerSettings::depth_sample_every`]: a slow count never holds up a job, nor a busy job
    /// a sample.
    pub async fn run(&self, stop: watch::Receiver<bool>) {
        let _sampler = self.settings.depth_sample_every.map(|every| {
            let depths = self.depths.clone();
            AbortOnDrop(tokio::spawn(async move { depths.every(every).await }))
        });
        self.run_jobs(stop).await;
    }

    async fn run_jobs(&self, mut stop: watch::Receiver<bool>) {
        tracing::info!(consumer = %self.settings.consumer, "worker started");
        let mut last_housekeeping: Option<tokio::time::Instant> = None;
        while !*stop.borrow() {
            if last_housekeeping.is_none_or(|at| at.elapsed() >= self.settings.housekeeping_every) {
                if let Err(error) = self.housekeeping_until(&mut stop).await {
                    tracing::warn!(%error, "worker housekeeping failed; retrying shortly");
                }
                last_housekeeping = Some(tokio::time::Instant::now());
            }
            let received = tokio::select! {
                received = self.queue.receive(&self.settings.consumer, self.settings.block) => received,
                _ = stop.changed() => break,
            };
            match received {
                Ok(Some(delivery)) => {
                    self.process(delivery, &mut stop).await;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "cannot receive jobs; retrying shortly");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => break,
                    }
                }
            }
        }
        tracing::info!(consumer = %self.settings.consumer, "worker stopped");
    }

    /// Sets [`JOBS_QUEUE_DEPTH`] and [`JOBS_DEAD_LETTER_DEPTH`] now (what
    /// [`Worker::run`] does periodically). Each gauge whose count succeeded is set; the first
    /// error is returned.
    pub async fn sample_depths(&self) -> Result<(), PortError> {
        self.depths.sample().await
    }

    /// One housekeeping round: due retries back onto the queue, stale messages of dead workers
    /// taken over (and processed), lost jobs re-enqueued, periodic jobs fired.
    pub async fn housekeeping(&self) -> Result<(), PortError> {
        let (_never, mut stop) = watch::channel(false);
        self.housekeeping_until(&mut stop).await
    }

    /// [`Worker::housekeeping`], releasing a taken-over job if `stop` fires while it runs.
    async fn housekeeping_until(&self, stop: &mut watch::Receiver<bool>) -> Result<(), PortError> {
        let now = self.clock.now();
        self.queue.promote_due(now).await?;
        let stale = self
            .queue
            .claim_stale(&self.settings.consumer, self.settings.claim_idle, 10)
            .await?;
        for (index, delivery) in stale.into_iter().enumerate() {
            if *stop.borrow() {
                break;
            }
            // Claimed with the first, it sat idle while those before it ran: by now another
            // worker may have taken it over and be running it.
            if index > 0
                && !self
                    .queue
                    .refresh_claim(&self.settings.consumer, &delivery)
                    .await?
            {
                continue;
            }
            tracing::info!(job_id = %delivery.job_id, deliveries = delivery.deliveries, "took over a job a worker left");
            self.process(delivery, stop).await;
        }
        // Claimed but not started because the worker is stopping: another worker claims them
        // once they are idle again.
        if *stop.borrow() {
            return Ok(());
        }
        self.sweep(now).await?;
        self.fire_periodic(now).await
    }

    async fn sweep(&self, now: DateTime<Utc>) -> Result<(), PortError> {
        let before = now - chrono_duration(self.settings.sweep_after);
        for job in self.jobs.stranded(before, now, 100).await? {
            tracing::info!(job_id = %job.id, kind = %job.kind, "re-enqueuing a job whose message was lost");
            self.queue.enqueue(job.id, &job.kind).await?;
        }
        Ok(())
    }

    async fn fire_periodic(&self, now: DateTime<Utc>) -> Result<(), PortError> {
        for periodic in &self.periodic {
            let every = i64::try_from(periodic.every.as_millis())
                .unwrap_or(i64::MAX)
                .max(1);
            let tick_millis = now.timestamp_millis().div_euclid(every) * every;
            let Some(tick) = DateTime::<Utc>::from_timestamp_millis(tick_millis) else {
                continue;
            };
            if self.jobs.claim_tick(periodic.kind, tick).await? {
                self.enqueue_new(periodic.kind, "{}").await?;
            }
        }
        Ok(())
    }

    /// Creates a job and enqueues it. If the enqueue fails, the job is still stored and the sweep
    /// enqueues it later.
    pub async fn enqueue_new(&self, kind: &str, payload: &str) -> Result<Job, PortError> {
        self.enqueue_traced(kind, payload, None).await
    }

    /// [`Worker::enqueue_new`] for a job a request queues: `trace` (the request's W3C trace
    /// context) makes the job's spans part of the request's trace.
    pub async fn enqueue_traced(
        &self,
        kind: &str,
        payload: &str,
        trace: Option<TraceContext>,
    ) -> Result<Job, PortError> {
        let mut job = new_job(self.ids.new_id(), kind, payload, self.clock.now());
        if let Some(trace) = trace {
            job.trace_parent = Some(trace.traceparent);
            job.trace_state = trace.tracestate;
        }
        self.jobs.create(&job).await?;
        if let Err(error) = self.queue.enqueue(job.id, kind).await {
            tracing::warn!(%error, job_id = %job.id, "job stored but not enqueued; the sweep will enqueue it");
        }
        Ok(job)
    }

    /// Processes one delivery to the end: run, then acknowledge, retry, or dead-letter.
    /// `delivery` must be held by this worker's consumer: the heartbeat refreshes the claim in
    /// that name, and a claim held by another consumer means the job is another worker's.
    pub async fn process(&self, delivery: Delivery, stop: &mut watch::Receiver<bool>) -> Outcome {
        match self.try_process(&delivery, stop).await {
            Ok(outcome) => outcome,
            Err(error) => {
                // Left unacknowledged: after `claim_idle` a worker takes the message over.
                tracing::warn!(%error, job_id = %delivery.job_id, "could not record a job's outcome; it will be retried");
                Outcome::Retrying
            }
        }
    }

    async fn try_process(
        &self,
        delivery: &Delivery,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Outcome, PortError> {
        let Some(job) = self.jobs.start(delivery.job_id, self.clock.now()).await? else {
            self.queue.ack(delivery).await?;
            return Ok(Outcome::Duplicate);
        };
        let Some(handler) = self.handlers.get(&job.kind).cloned() else {
            let reason = format!("no handler for job kind {}", job.kind);
            self.jobs
                .fail(job.id, &reason, None, self.clock.now())
                .await?;
            self.queue.dead_letter(delivery, &reason).await?;
            count(JOBS_DEAD_LETTERED, &job.kind);
            return Ok(Outcome::DeadLettered);
        };
        let span = tracing::info_span!(
            "job",
            otel.name = %format_args!("process {}", job.kind),
            otel.kind = "consumer",
            messaging.operation.type = "process",
            job_id = %job.id,
            kind = %job.kind,
            attempt = i64::from(job.attempts),
        );
        if let (Some(link), Some(parent)) = (&self.trace_link, &job.trace_parent) {
            link.adopt(&span, parent, job.trace_state.as_deref());
        }
        let started = tokio::time::Instant::now();
        let work = handler.handle(&job).instrument(span);
        // The heartbeat runs beside the handler, also through the shutdown grace, so that no
        // other worker takes the job over while this one still runs it.
        let guarded = async {
            tokio::select! {
                biased;
                result = work => Some(result),
                () = self.keep_alive(delivery, job.id) => None,
            }
        };
        tokio::pin!(guarded);
        let result = tokio::select! {
            result = &mut guarded => Some(result),
            _ = wait_for_stop(stop) => {
                tokio::time::timeout(self.settings.shutdown_grace, &mut guarded).await.ok()
            }
        };
        let took = started.elapsed();
        let now = self.clock.now();
        match result {
            Some(None) => {
                // Another worker runs the job now and records its outcome: recording or
                // acknowledging anything here would act on that worker's delivery.
                tracing::warn!(job_id = %job.id, kind = %job.kind, "another worker took the job over; stopped running it here");
                Ok(Outcome::Abandoned)
            }
            None => {
                self.jobs.release(job.id, now).await?;
                self.queue.enqueue(job.id, &job.kind).await?;
                self.queue.ack(delivery).await?;
                tracing::info!(job_id = %job.id, "released the job at hand on shutdown");
                Ok(Outcome::Released)
            }
            Some(Some(Ok(()))) => {
                self.jobs.complete(job.id, now).await?;
                self.queue.ack(delivery).await?;
                count(JOBS_PROCESSED, &job.kind);
                time(&job.kind, "done", took);
                tracing::info!(job_id = %job.id, kind = %job.kind, attempt = job.attempts, "job done");
                Ok(Outcome::Done)
            }
            Some(Some(Err(error))) => {
                let reason = format!("{error:#}");
                if job.attempts >= self.settings.max_attempts {
                    // First, so that a failure to record it leaves the job to be run again.
                    handler.on_dead(&job, &error).await.map_err(|error| {
                        PortError::unexpected(error.context("the job's dead hook failed"))
                    })?;
                    self.jobs.fail(job.id, &reason, None, now).await?;
                    self.queue.dead_letter(delivery, &reason).await?;
                    count(JOBS_DEAD_LETTERED, &job.kind);
                    time(&job.kind, "dead_lettered", took);
                    tracing::error!(job_id = %job.id, kind = %job.kind, attempts = job.attempts, error = %reason, "job dead-lettered");
                    Ok(Outcome::DeadLettered)
                } else {
                    let retry_at = now + chrono_duration(self.backoff(job.attempts));
                    self.jobs.fail(job.id, &reason, Some(retry_at), now).await?;
                    self.queue.enqueue_at(job.id, &job.kind, retry_at).await?;
                    self.queue.ack(delivery).await?;
                    count(JOBS_FAILED, &job.kind);
                    time(&job.kind, "failed", took);
                    tracing::warn!(job_id = %job.id, kind = %job.kind, attempt = job.attempts, %retry_at, error = %reason, "job failed; will retry");
                    Ok(Outcome::Retrying)
                }
            }
        }
    }

    /// Refreshes the job's claim on the queue and its row every
    /// [`WorkerSettings::heartbeat_every`] for as long as it is polled; returns only once the job
    /// is found to be another worker's (its message claimed by another consumer, or its row no
    /// longer running). A refresh that fails or takes longer than an interval is logged and tried
    /// again at the next one: one slow round trip must not cost the job while the claim still
    /// has time left.
    async fn keep_alive(&self, delivery: &Delivery, job_id: uuid::Uuid) {
        let every = self.settings.heartbeat_every();
        loop {
            tokio::time::sleep(every).await;
            let refreshed = tokio::time::timeout(every, async {
                tokio::join!(
                    self.queue.refresh_claim(&self.settings.consumer, delivery),
                    self.jobs.heartbeat(job_id, self.clock.now()),
                )
            })
            .await;
            match refreshed {
                Ok((Ok(true), Ok(true))) => {}
                Ok((Ok(false), _) | (_, Ok(false))) => return,
                Ok((claim, row)) => {
                    for error in [claim.err(), row.err()].into_iter().flatten() {
                        tracing::warn!(%error, job_id = %job_id, "cannot refresh a running job's claim; trying again");
                    }
                }
                Err(_) => {
                    tracing::warn!(job_id = %job_id, "refreshing a running job's claim timed out; trying again");
                }
            }
        }
    }

    /// The delay after the `attempt`-th failure: base × 2^(attempt − 1), capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.settings
            .backoff_base
            .saturating_mul(factor)
            .min(self.settings.backoff_max)
    }
}

/// Samples the backlog into the depth gauges.
struct DepthSampler {
    queue: Arc<dyn JobQueue>,
    jobs: Arc<dyn JobRepository>,
    /// Every kind [`JOBS_QUEUE_DEPTH`] is set for: the registered ones, and any seen queued, so
    /// that a kind whose backlog emptied reads 0 rather than its last count.
    kinds: std::sync::Mutex<BTreeSet<String>>,
}

impl DepthSampler {
    fn know(&self, kind: &str) {
        self.kinds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(kind.to_owned());
    }

    /// Samples every `every`, each sample bounded by [`DEPTH_SAMPLE_TIMEOUT`]; never returns.
    async fn every(&self, every: Duration) {
        let mut ticks = tokio::time::interval(every.max(Duration::from_millis(1)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match tokio::time::timeout(DEPTH_SAMPLE_TIMEOUT.min(every), self.sample()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, "cannot sample the job queue depths; the gauges keep their last values");
                }
                Err(_) => {
                    tracing::warn!(
                        "sampling the job queue depths timed out; the gauges keep their last values"
                    );
                }
            }
        }
    }

    /// [`JOBS_QUEUE_DEPTH`] from the job rows (the truth: a job whose message was lost still
    /// waits), [`JOBS_DEAD_LETTER_DEPTH`] from the dead-letter stream's length.
    async fn sample(&self) -> Result<(), PortError> {
        let (queued, dead) = tokio::join!(self.jobs.queued_by_kind(), self.queue.dead_letters());
        if let Ok(queued) = &queued {
            let mut kinds = self
                .kinds
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            kinds.extend(queued.iter().map(|(kind, _)| kind.clone()));
            for kind in &*kinds {
                let count = queued
                    .iter()
                    .find(|(queued_kind, _)| queued_kind == kind)
                    .map_or(0, |(_, count)| *count);
                // Far below 2^53, so the conversion is exact.
                metrics::gauge!(JOBS_QUEUE_DEPTH, "kind" => kind.clone()).set(count as f64);
            }
        }
        if let Ok(dead) = &dead {
            metrics::gauge!(JOBS_DEAD_LETTER_DEPTH).set(*dead as f64);
        }
        queued?;
        dead.map(|_| ())
    }
}

/// Aborts the task when dropped: the sampler ends with [`Worker::run`], however that ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn wait_for_stop(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stopped| *stopped).await.is_err() {
        // The sender is gone: nobody can ask this worker to stop any more.
        std::future::pending::<()>().await;
    }
}

fn chrono_duration(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

/// A new queued job.
pub fn new_job(id: uuid::Uuid, kind: &str, payload: &str, now: DateTime<Utc>) -> Job {
    Job {
        id,
        kind: kind.to_owned(),
        payload: payload.to_owned(),
        status: JobStatus::Queued,
        attempts: 0,
        last_error: None,
        trace_parent: None,
        trace_state: None,
        run_after: now,
        created_at: now,
        updated_at: now,
    }
}

#[cfg(test)]
mod tests;
