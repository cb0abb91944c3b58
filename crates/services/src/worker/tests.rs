//! The Worker and the renewal job against mockall mocks of every port.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use chrono::TimeZone;
use mockall::Sequence;
use mockall::predicate::eq;
use strata_ports::{
    MockClock, MockIdGenerator, MockJobQueue, MockJobRepository, MockSubscriptionRepository,
    RenewalPass,
};
use uuid::Uuid;

use super::*;
use crate::renewal::{RENEWAL_JOB, RenewDueSubscriptions};
use crate::test_support::unavailable;

const KIND: &str = "test.job";
const CONSUMER: &str = "worker-test";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0)
        .single()
        .expect("valid instant")
}

fn settings() -> WorkerSettings {
    WorkerSettings {
        consumer: CONSUMER.to_owned(),
        max_attempts: 5,
        backoff_base: Duration::from_secs(1),
        backoff_max: Duration::from_secs(60),
        claim_idle: Duration::from_secs(30),
        block: Duration::from_millis(5),
        sweep_after: Duration::from_secs(300),
        housekeeping_every: Duration::from_secs(3600),
        shutdown_grace: Duration::from_millis(100),
        depth_sample_every: None,
    }
}

/// The job as `start` returns it: running, on its `attempts`-th attempt.
fn running_job(kind: &str, attempts: u32) -> Job {
    Job {
        id: Uuid::now_v7(),
        kind: kind.to_owned(),
        payload: "{}".to_owned(),
        status: JobStatus::Running,
        attempts,
        last_error: None,
        trace_parent: None,
        trace_state: None,
        run_after: now(),
        created_at: now(),
        updated_at: now(),
    }
}

fn delivery_of(job: &Job) -> Delivery {
    Delivery {
        message_id: "1700000000000-0".to_owned(),
        job_id: job.id,
        kind: job.kind.clone(),
        deliveries: 1,
    }
}

/// A handler that records the jobs it was given, takes `delay`, then succeeds or fails with
/// `error`.
struct Recording {
    jobs: Mutex<Vec<Job>>,
    delay: Duration,
    error: Option<&'static str>,
    finished: AtomicBool,
}

impl Recording {
    fn new(delay: Duration, error: Option<&'static str>) -> Arc<Self> {
        Arc::new(Self {
            jobs: Mutex::new(Vec::new()),
            delay,
            error,
            finished: AtomicBool::new(false),
        })
    }

    fn succeeding() -> Arc<Self> {
        Self::new(Duration::ZERO, None)
    }

    fn failing(error: &'static str) -> Arc<Self> {
        Self::new(Duration::ZERO, Some(error))
    }

    fn calls(&self) -> Vec<Job> {
        self.jobs.lock().expect("lock").clone()
    }
}

#[async_trait]
impl JobHandler for Recording {
    async fn handle(&self, job: &Job) -> anyhow::Result<()> {
        self.jobs.lock().expect("lock").push(job.clone());
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.finished.store(true, Ordering::SeqCst);
        match self.error {
            None => Ok(()),
            Some(error) => Err(anyhow::anyhow!("{error}").context("the handler failed")),
        }
    }
}

struct Ports {
    queue: MockJobQueue,
    jobs: MockJobRepository,
    ids: MockIdGenerator,
    now: DateTime<Utc>,
    settings: WorkerSettings,
}

impl Ports {
    fn new() -> Self {
        Self {
            queue: MockJobQueue::new(),
            jobs: MockJobRepository::new(),
            ids: MockIdGenerator::new(),
            now: now(),
            settings: settings(),
        }
    }

    fn worker(self) -> Worker {
        let mut clock = MockClock::new();
        let instant = self.now;
        clock.expect_now().returning(move || instant);
        Worker::new(
            Arc::new(self.queue),
            Arc::new(self.jobs),
            Arc::new(clock),
            Arc::new(self.ids),
            self.settings,
        )
    }

    /// `start` of `job` answers it.
    fn expect_start(&mut self, job: &Job) {
        let started = job.clone();
        self.jobs
            .expect_start()
            .with(eq(job.id), eq(self.now))
            .times(1)
            .returning(move |_, _| Ok(Some(started.clone())));
    }

    /// A successful run of `job` is recorded and its delivery acknowledged.
    fn expect_done(&mut self, job: &Job) {
        let delivery = delivery_of(job);
        self.jobs
            .expect_complete()
            .with(eq(job.id), eq(self.now))
            .times(1)
            .returning(|_, _| Ok(()));
        self.queue
            .expect_ack()
            .with(eq(delivery))
            .times(1)
            .returning(|_| Ok(()));
    }

    /// Nothing fails, retries, dead-letters or releases.
    fn expect_no_failure(&mut self) {
        self.jobs.expect_fail().never();
        self.jobs.expect_release().never();
        self.queue.expect_enqueue_at().never();
        self.queue.expect_dead_letter().never();
    }
}

/// A receiver that never sees a stop (its sender is kept alive by the caller).
fn running() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    watch::channel(false)
}

// ---------------------------------------------------------------------------------------------
// process

#[tokio::test]
async fn a_successful_job_is_completed_and_acknowledged() {
    let job = running_job(KIND, 1);
    let handler = Recording::succeeding();
    let mut ports = Ports::new();
    ports.expect_start(&job);
    ports.expect_done(&job);
    ports.expect_no_failure();
    ports.queue.expect_enqueue().never();
    let worker = ports.worker().handle(KIND, handler.clone());
    let (_stop, mut stopped) = running();
    let outcome = worker.process(delivery_of(&job), &mut stopped).await;
    assert_eq!(outcome, Outcome::Done);
    assert_eq!(handler.calls(), vec![job]);
}

#[tokio::test]
async fn a_duplicate_delivery_is_acknowledged_without_running_the_handler() {
    let job = running_job(KIND, 1);
    let delivery = delivery_of(&job);
    let handler = Recording::succeeding();
    let mut ports = Ports::new();
    ports
        .jobs
        .expect_start()
        .with(eq(job.id), eq(now()))
        .times(1)
        .returning(|_, _| Ok(None));
    ports
        .queue
        .expect_ack()
        .with(eq(delivery.clone()))
        .times(1)
        .returning(|_| Ok(()));
    ports.jobs.expect_complete().never();
    ports.expect_no_failure();
    let worker = ports.worker().handle(KIND, handler.clone());
    let (_stop, mut stopped) = running();
    assert_eq!(
        worker.process(delivery, &mut stopped).await,
        Outcome::Duplicate
    );
    assert!(handler.calls().is_empty());
}

#[test]
fn backoff_doubles_from_the_base_and_is_capped() {
    let worker = Ports::new().worker();
    let delays: Vec<u64> = (1..=8)
        .map(|attempt| worker.backoff(attempt).as_secs())
        .collect();
    assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
    assert_eq!(worker.backoff(64), Duration::from_secs(60));
    assert_eq!(worker.backoff(u32::MAX), Duration::from_secs(60));
}

/// Fails a job on its `attempts`-th attempt under `settings` and checks that it is retried
/// `delay` after the clock time: recorded, scheduled, then acknowledged, in that order.
async fn failure_is_retried(attempts: u32, settings: WorkerSettings, delay: Duration) {
    let job = running_job(KIND, attempts);
    let delivery = delivery_of(&job);
    let retry_at = now() + chrono::Duration::from_std(delay).expect("delay");
    let mut ports = Ports::new();
    ports.settings = settings;
    ports.expect_start(&job);
    let mut order = Sequence::new();
    ports
        .jobs
        .expect_fail()
        .withf(move |id, reason, at, recorded_at| {
            *id == job.id
                && reason.contains("boom")
                && reason.contains("the handler failed")
                && *at == Some(retry_at)
                && *recorded_at == now()
        })
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _, _, _| Ok(()));
    ports
        .queue
        .expect_enqueue_at()
        .with(eq(job.id), eq(KIND), eq(retry_at))
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _, _| Ok(()));
    ports
        .queue
        .expect_ack()
        .with(eq(delivery.clone()))
        .times(1)
        .in_sequence(&mut order)
        .returning(|_| Ok(()));
    ports.queue.expect_dead_letter().never();
    ports.jobs.expect_complete().never();
    let handler = Recording::failing("boom");
    let worker = ports.worker().handle(KIND, handler.clone());
    let (_stop, mut stopped) = running();
    assert_eq!(
        worker.process(delivery, &mut stopped).await,
        Outcome::Retrying,
        "attempt {attempts}"
    );
    assert_eq!(handler.calls().len(), 1);
}

#[tokio::test]
async fn a_failure_below_the_attempt_limit_is_retried_after_the_backoff() {
    failure_is_retried(1, settings(), Duration::from_secs(1)).await;
    failure_is_retried(2, settings(), Duration::from_secs(2)).await;
    failure_is_retried(4, settings(), Duration::from_secs(8)).await;
    let slow = WorkerSettings {
        max_attempts: 10,
        backoff_base: Duration::from_secs(10),
        backoff_max: Duration::from_secs(25),
        ..settings()
    };
    failure_is_retried(3, slow, Duration::from_secs(25)).await;
}

#[tokio::test]
async fn a_failure_of_the_last_attempt_is_dead_lettered_with_the_error() {
    for attempts in [5, 6] {
        let job = running_job(KIND, attempts);
        let delivery = delivery_of(&job);
        let mut ports = Ports::new();
        ports.expect_start(&job);
        ports
            .jobs
            .expect_fail()
            .withf(move |id, reason, at, recorded_at| {
                *id == job.id && reason.contains("boom") && at.is_none() && *recorded_at == now()
            })
            .times(1)
            .returning(|_, _, _, _| Ok(()));
        ports
            .queue
            .expect_dead_letter()
            .withf(move |dead: &Delivery, reason: &str| {
                *dead == delivery_of(&job) && reason.contains("boom")
            })
            .times(1)
            .returning(|_, _| Ok(()));
        // Dead-lettering acknowledges; nothing is scheduled again.
        ports.queue.expect_ack().never();
        ports.queue.expect_enqueue_at().never();
        ports.queue.expect_enqueue().never();
        ports.jobs.expect_complete().never();
        let handler = Recording::failing("boom");
        let worker = ports.worker().handle(KIND, handler.clone());
        let (_stop, mut stopped) = running();
        assert_eq!(
            worker.process(delivery, &mut stopped).await,
            Outcome::DeadLettered,
            "attempt {attempts}"
        );
        assert_eq!(handler.calls().len(), 1);
    }
}

/// A handler that always fails and records the calls of its dead hook, which fails while
/// `hook_fails` is set.
struct Mourning {
    dead: Mutex<Vec<(Uuid, String)>>,
    hook_fails: AtomicBool,
}

#[async_trait]
impl JobHandler for Mourning {
    async fn handle(&self, _job: &Job) -> anyhow::Result<()> {
        anyhow::bail!("boom")
    }

    async fn on_dead(&self, job: &Job, error: &anyhow::Error) -> anyhow::Result<()> {
        self.dead
            .lock()
            .expect("lock")
            .push((job.id, format!("{error:#}")));
        if self.hook_fails.load(Ordering::SeqCst) {
            anyhow::bail!("cannot record the failure");
        }
        Ok(())
    }
}

#[tokio::test]
async fn the_dead_hook_runs_once_before_a_job_is_given_up_and_never_for_a_retry() {
    let handler = Arc::new(Mourning {
        dead: Mutex::new(Vec::new()),
        hook_fails: AtomicBool::new(false),
    });
    // A retry: the hook is not called.
    let job = running_job(KIND, 4);
    let mut ports = Ports::new();
    ports.expect_start(&job);
    ports.jobs.expect_fail().returning(|_, _, _, _| Ok(()));
    ports.queue.expect_enqueue_at().returning(|_, _, _| Ok(()));
    ports.queue.expect_ack().returning(|_| Ok(()));
    let worker = ports.worker().handle(KIND, handler.clone());
    let (_stop, mut stopped) = running();
    assert_eq!(
        worker.process(delivery_of(&job), &mut stopped).await,
        Outcome::Retrying
    );
    assert!(handler.dead.lock().expect("lock").is_empty());

    // The last attempt: the hook, then the job failed, then the dead letter.
    let job = running_job(KIND, 5);
    let mut ports = Ports::new();
    ports.expect_start(&job);
    let mut order = Sequence::new();
    let recorded = handler.clone();
    ports
        .jobs
        .expect_fail()
        .withf(move |_, _, at, _| at.is_none() && recorded.dead.lock().expect("lock").len() == 1)
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _, _, _| Ok(()));
    ports
        .queue
        .expect_dead_letter()
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _| Ok(()));
    let worker = ports.worker().handle(KIND, handler.clone());
    assert_eq!(
        worker.process(delivery_of(&job), &mut stopped).await,
        Outcome::DeadLettered
    );
    let dead = handler.dead.lock().expect("lock").clone();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, job.id);
    assert!(dead[0].1.contains("boom"), "{}", dead[0].1);
}

#[tokio::test]
async fn a_failing_dead_hook_leaves_the_job_unrecorded_and_its_message_pending() {
    let handler = Arc::new(Mourning {
        dead: Mutex::new(Vec::new()),
        hook_fails: AtomicBool::new(true),
    });
    let job = running_job(KIND, 5);
    let mut ports = Ports::new();
    ports.expect_start(&job);
    // Not failed, not dead-lettered, not acknowledged: after `claim_idle` another delivery runs
    // it again (a sixth attempt), and gives up again if that fails too.
    ports.jobs.expect_fail().never();
    ports.queue.expect_dead_letter().never();
    ports.queue.expect_ack().never();
    ports.queue.expect_enqueue_at().never();
    let worker = ports.worker().handle(KIND, handler.clone());
    let (_stop, mut stopped) = running();
    assert_eq!(
        worker.process(delivery_of(&job), &mut stopped).await,
        Outcome::Retrying
    );
    assert_eq!(handler.dead.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn a_job_of_an_unknown_kind_is_failed_and_dead_lettered() {
    let job = running_job("mystery.kind", 1);
    let delivery = delivery_of(&job);
    let registered = Recording::succeeding();
    let mut ports = Ports::new();
    ports.expect_start(&job);
    ports
        .jobs
        .expect_fail()
        .withf(move |id, reason, at, _| {
            *id == job.id && reason.contains("mystery.kind") && at.is_none()
        })
        .times(1)
        .returning(|_, _, _, _| Ok(()));
    ports
        .queue
        .expect_dead_letter()
        .withf(|_, reason| reason.contains("mystery.kind"))
        .times(1)
        .returning(|_, _| Ok(()));
    ports.queue.expect_ack().never();
    ports.jobs.expect_complete().never();
    let worker = ports.worker().handle(KIND, registered.clone());
    let (_stop, mut stopped) = running();
    assert_eq!(
        worker.process(delivery, &mut stopped).await,
        Outcome::DeadLettered
    );
    assert!(registered.calls().is_empty());
}

#[tokio::test]
async fn outcomes_are_counted_by_kind_once_they_are_recorded() {
    // A recorder of this thread only: the process-wide one is not this test's to set.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let runs = [
        (1, Recording::succeeding(), Outcome::Done),
        (1, Recording::failing("boom"), Outcome::Retrying),
        (5, Recording::failing("boom"), Outcome::DeadLettered),
    ];
    for (attempts, handler, expected) in runs {
        let job = running_job(KIND, attempts);
        assert_eq!(process_stored(&job, handler).await, expected);
    }
    // An outcome that could not be stored is not counted: the job runs (and counts) again.
    assert_eq!(process_with_completion_lost().await, Outcome::Retrying);

    let rendered = recorder.handle().render();
    for metric in [JOBS_PROCESSED, JOBS_FAILED, JOBS_DEAD_LETTERED] {
        let line = format!("{metric}{{kind=\"{KIND}\"}} 1\n");
        assert!(rendered.contains(&line), "{line} missing from:\n{rendered}");
    }
}

/// Runs `job` once through a worker whose ports store every outcome, with `handler` for its kind.
async fn process_stored(job: &Job, handler: Arc<Recording>) -> Outcome {
    let mut ports = Ports::new();
    ports.expect_start(job);
    ports.jobs.expect_complete().returning(|_, _| Ok(()));
    ports.jobs.expect_fail().returning(|_, _, _, _| Ok(()));
    ports.queue.expect_ack().returning(|_| Ok(()));
    ports.queue.expect_enqueue_at().returning(|_, _, _| Ok(()));
    ports.queue.expect_dead_letter().returning(|_, _| Ok(()));
    let worker = ports.worker().handle(KIND, handler);
    let (_stop, mut stopped) = running();
    worker.process(delivery_of(job), &mut stopped).await
}

/// Runs a first attempt that succeeds but whose completion cannot be stored.
async fn process_with_completion_lost() -> Outcome {
    let job = running_job(KIND, 1);
    let mut ports = Ports::new();
    ports.expect_start(&job);
    ports
        .jobs
        .expect_complete()
        .returning(|_, _| Err(unavailable()));
    let worker = ports.worker().handle(KIND, Recording::succeeding());
    let (_stop, mut stopped) = running();
    worker.process(delivery_of(&job), &mut stopped).await
}

/// The value of the sample line `series` (name and labels, as rendered) in `rendered`.
fn sample(rendered: &str, series: &str) -> Option<f64> {
    rendered
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn each_recorded_attempt_s_handler_time_is_observed_under_its_outcome() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let handler_time = Duration::from_millis(30);
    let runs = [
        (1, None, Outcome::Done),
        (1, Some("boom"), Outcome::Retrying),
        (2, Some("boom"), Outcome::Retrying),
        (5, Some("boom"), Outcome::DeadLettered),
    ];
    for (attempts, error, expected) in runs {
        let job = running_job(KIND, attempts);
        let handler = Recording::new(handler_time, error);
        assert_eq!(process_stored(&job, handler).await, expected);
    }
    // Neither an attempt whose outcome could not be stored (it runs again and is observed then),
    // nor a job no handler runs, nor a duplicate delivery is an observation.
    assert_eq!(process_with_completion_lost().await, Outcome::Retrying);
    let orphan = running_job("nobody.handles", 1);
    let mut ports = Ports::new();
    ports.expect_start(&orphan);
    ports.jobs.expect_fail().returning(|_, _, _, _| Ok(()));
    ports.queue.expect_dead_letter().returning(|_, _| Ok(()));
    let (_stop, mut stopped) = running();
    assert_eq!(
        ports
            .worker()
            .process(delivery_of(&orphan), &mut stopped)
            .await,
        Outcome::DeadLettered
    );

    let rendered = recorder.handle().render();
    for (outcome, attempts) in [("done", 1.0), ("failed", 2.0), ("dead_lettered", 1.0)] {
        let series =
            format!("{JOBS_DURATION_SECONDS}_count{{kind=\"{KIND}\",outcome=\"{outcome}\"}}");
        assert_eq!(
            sample(&rendered, &series),
            Some(attempts),
            "{series} in:\n{rendered}"
        );
        let sum = format!("{JOBS_DURATION_SECONDS}_sum{{kind=\"{KIND}\",outcome=\"{outcome}\"}}");
        let took = sample(&rendered, &sum).unwrap_or_default();
        assert!(
            took >= attempts * handler_time.as_secs_f64(),
            "{sum} = {took}: the handler's time was not measured"
        );
    }
    assert!(
        !rendered
            .lines()
            .any(|line| line.starts_with(JOBS_DURATION_SECONDS) && line.contains("nobody.handles")),
        "a job no handler ran was timed:\n{rendered}"
    );
}

#[tokio::test]
async fn a_sample_sets_the_queue_depth_by_kind_and_the_dead_letter_depth() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let mut ports = Ports::new();
    let mut sequence = Sequence::new();
    for (queued, dead) in [
        (vec![("reports.sales".to_owned(), 3_u64)], 2_u64),
        (vec![], 7),
    ] {
        ports
            .jobs
            .expect_queued_by_kind()
            .times(1)
            .in_sequence(&mut sequence)
            .return_once(move || Ok(queued));
        ports
            .queue
            .expect_dead_letters()
            .times(1)
            .returning(move || Ok(dead));
    }
    let worker = ports.worker().handle(KIND, Recording::succeeding());
    let depth = |kind: &str| format!("{JOBS_QUEUE_DEPTH}{{kind=\"{kind}\"}}");

    worker.sample_depths().await.expect("sampled");
    let rendered = recorder.handle().render();
    assert_eq!(
        sample(&rendered, &depth("reports.sales")),
        Some(3.0),
        "{rendered}"
    );
    // A registered kind with nothing waiting reads 0 rather than being absent.
    assert_eq!(sample(&rendered, &depth(KIND)), Some(0.0), "{rendered}");
    assert_eq!(
        sample(&rendered, JOBS_DEAD_LETTER_DEPTH),
        Some(2.0),
        "{rendered}"
    );

    // The backlog of a kind emptied: it reads 0, not its last count.
    worker.sample_depths().await.expect("sampled");
    let rendered = recorder.handle().render();
    assert_eq!(
        sample(&rendered, &depth("reports.sales")),
        Some(0.0),
        "{rendered}"
    );
    assert_eq!(
        sample(&rendered, JOBS_DEAD_LETTER_DEPTH),
        Some(7.0),
        "{rendered}"
    );
}

#[tokio::test]
async fn a_failed_count_leaves_its_gauge_and_still_sets_the_other() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let mut ports = Ports::new();
    ports
        .jobs
        .expect_queued_by_kind()
        .returning(|| Err(unavailable()));
    ports.queue.expect_dead_letters().returning(|| Ok(4));
    let worker = ports.worker();
    assert!(worker.sample_depths().await.is_err());
    let rendered = recorder.handle().render();
    assert_eq!(
        sample(&rendered, JOBS_DEAD_LETTER_DEPTH),
        Some(4.0),
        "{rendered}"
    );
    assert!(!rendered.contains(JOBS_QUEUE_DEPTH), "{rendered}");

    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let mut ports = Ports::new();
    ports
        .jobs
        .expect_queued_by_kind()
        .returning(|| Ok(vec![("reports.sales".to_owned(), 2)]));
    ports
        .queue
        .expect_dead_letters()
        .returning(|| Err(unavailable()));
    let worker = ports.worker();
    assert!(worker.sample_depths().await.is_err());
    let rendered = recorder.handle().render();
    assert_eq!(
        sample(
            &rendered,
            &format!("{JOBS_QUEUE_DEPTH}{{kind=\"reports.sales\"}}")
        ),
        Some(2.0),
        "{rendered}"
    );
    assert!(!rendered.contains(JOBS_DEAD_LETTER_DEPTH), "{rendered}");
}

#[tokio::test]
async fn a_port_error_recording_the_outcome_leaves_the_message_unacknowledged() {
    // complete fails: the message stays pending and is claimed again later.
    let job = running_job(KIND, 1);
    let mut ports = Ports::new();
    ports.expect_start(&job);
    ports
        .jobs
        .expect_complete()
        .times(1)
        .returning(|_, _| Err(unavailable()));
    ports.queue.expect_ack().never();
    ports.expect_no_failure();
    let handler = Recording::succeeding();
    let worker = ports.worker().handle(KIND, handler.clone());
    let (_stop, mut stopped) = running();
    assert_eq!(
        worker.process(delivery_of(&job), &mut stopped).await,
        Outcome::Retrying
    );
    assert_eq!(handler.calls().len(), 1);

    // start fails: the handler does not run.
    let mut ports = Ports::new();
    ports
        .jobs
        .expect_start()
        .times(1)
        .returning(|_, _| Err(unavailable()));
    ports.queue.expect_ack().never();
    ports.jobs.expect_complete().never();
    ports.expect_no_failure();
    let handler = Recording::succeeding();
    let worker = ports.worker().handle(KIND, handler.clone());
    assert_eq!(
        worker.process(delivery_of(&job), &mut stopped).await,
        Outcome::Retrying
    );
    assert!(handler.calls().is_empty());

    // recording a failure fails: no retry is scheduled and nothing is acknowledged.
    let mut ports = Ports::new();
    ports.expect_start(&job);
    ports
        .jobs
        .expect_fail()
        .times(1)
        .returning(|_, _, _, _| Err(unavailable()));
    ports.queue.expect_enqueue_at().never();
    ports.queue.expect_ack().never();
    ports.queue.expect_dead_letter().never();
    let worker = ports.worker().handle(KIND, Recording::failing("boom"));
    assert_eq!(
        worker.process(delivery_of(&job), &mut stopped).await,
        Outcome::Retrying
    );

    // acknowledging fails after a success was recorded.
    let mut ports = Ports::new();
    ports.expect_start(&job);
    ports
        .jobs
        .expect_complete()
        .times(1)
        .returning(|_, _| Ok(()));
    ports
        .queue
        .expect_ack()
        .times(1)
        .returning(|_| Err(unavailable()));
    ports.expect_no_failure();
    let worker = ports.worker().handle(KIND, Recording::succeeding());
    assert_eq!(
        worker.process(delivery_of(&job), &mut stopped).await,
        Outcome::Retrying
    );
}

#[tokio::test]
async fn a_job_still_running_when_the_grace_ends_is_released_on_shutdown() {
    let job = running_job(KIND, 1);
    let delivery = delivery_of(&job);
    let mut ports = Ports::new();
    ports.expect_start(&job);
    let mut order = Sequence::new();
    ports
        .jobs
        .expect_release()
        .with(eq(job.id), eq(now()))
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _| Ok(()));
    ports
        .queue
        .expect_enqueue()
        .with(eq(job.id), eq(KIND))
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _| Ok(()));
    ports
        .queue
        .expect_ack()
        .with(eq(delivery.clone()))
        .times(1)
        .in_sequence(&mut order)
        .returning(|_| Ok(()));
    ports.jobs.expect_complete().never();
    ports.jobs.expect_fail().never();
    ports.queue.expect_dead_letter().never();
    let handler = Recording::new(Duration::from_secs(30), None);
    let worker = ports.worker().handle(KIND, handler.clone());
    let (stop, mut stopped) = running();
    let started = tokio::time::Instant::now();
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        stop.send(true).expect("the worker listens");
        stop
    });
    let outcome = worker.process(delivery, &mut stopped).await;
    let elapsed = started.elapsed();
    assert_eq!(outcome, Outcome::Released);
    assert_eq!(handler.calls().len(), 1);
    assert!(!handler.finished.load(Ordering::SeqCst));
    // Stopped after ~30 ms, then waited the 100 ms grace, not the handler's 30 s.
    assert!(elapsed >= Duration::from_millis(100), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    drop(stopper.await.expect("stopper"));
}

#[tokio::test]
async fn a_job_that_finishes_within_the_grace_after_a_stop_is_done() {
    let job = running_job(KIND, 1);
    let mut ports = Ports::new();
    ports.settings.shutdown_grace = Duration::from_secs(5);
    ports.expect_start(&job);
    ports.expect_done(&job);
    ports.expect_no_failure();
    ports.queue.expect_enqueue().never();
    let handler = Recording::new(Duration::from_millis(80), None);
    let worker = ports.worker().handle(KIND, handler.clone());
    let (stop, mut stopped) = running();
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        stop.send(true).expect("the worker listens");
        stop
    });
    assert_eq!(
        worker.process(delivery_of(&job), &mut stopped).await,
        Outcome::Done
    );
    assert!(handler.finished.load(Ordering::SeqCst));
    assert!(*stopped.borrow(), "the stop was seen during the job");
    drop(stopper.await.expect("stopper"));
}

// ---------------------------------------------------------------------------------------------
// heartbeat

/// Counts the claim and row refreshes of `job`'s delivery, answering each with `claim` and `row`.
fn count_refreshes(
    ports: &mut Ports,
    job: &Job,
    claim: fn() -> Result<bool, PortError>,
    row: fn() -> Result<bool, PortError>,
) -> (Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let (claims, rows) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (on_claim, on_row) = (claims.clone(), rows.clone());
    let delivery = delivery_of(job);
    ports
        .queue
        .expect_refresh_claim()
        .withf(move |consumer, refreshed| consumer == CONSUMER && *refreshed == delivery)
        .returning(move |_, _| {
            on_claim.fetch_add(1, Ordering::SeqCst);
            claim()
        });
    let (job_id, at) = (job.id, ports.now);
    ports
        .jobs
        .expect_heartbeat()
        .withf(move |id, now| *id == job_id && *now == at)
        .returning(move |_, _| {
            on_row.fetch_add(1, Ordering::SeqCst);
            row()
        });
    (claims, rows)
}

#[test]
fn the_heartbeat_beats_three_times_within_the_shorter_of_claim_idle_and_sweep_after() {
    assert_eq!(settings().heartbeat_every(), Duration::from_secs(10));
    let short_sweep = WorkerSettings {
        sweep_after: Duration::from_secs(6),
        ..settings()
    };
    assert_eq!(short_sweep.heartbeat_every(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_slow_job_refreshes_its_claim_and_row_every_interval_and_stops_when_it_ends() {
    let job = running_job(KIND, 1);
    // 95 s against a claim idle of 30 s: refreshed at 10, 20, ..., 90 s.
    let handler = Recording::new(Duration::from_secs(95), None);
    let mut ports = Ports::new();
    ports.expect_start(&job);
    ports.expect_done(&job);
    ports.expect_no_failure();
    let (claims, rows) = count_refreshes(&mut ports, &job, || Ok(true), || Ok(true));
    let worker = ports.worker().handle(KIND, handler.clone());
    let (_stop, mut stopped) = running();
    let outcome = worker.process(delivery_of(&job), &mut stopped).await;
    assert_eq!(outcome, Outcome::Done);
    assert_eq!(claims.load(Ordering::SeqCst), 9);
    assert_eq!(rows.load(Ordering::SeqCst), 9);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        claims.load(Ordering::SeqCst),
        9,
        "no refresh after the job ended"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_refresh_is_tried_again_and_the_job_still_completes() {
    let job = running_job(KIND, 1);
    let handler = Recording::new(Duration::from_secs(35), None);
    let mut ports = Ports::new();
    ports.expect_start(&job);
    ports.expect_done(&job);
    ports.expect_no_failure();
    let (claims, _rows) = count_refreshes(&mut ports, &job, || Err(unavailable()), || Ok(true));
    let worker = ports.worker().handle(KIND, handler.clone());
    let (_stop, mut stopped) = running();
    let outcome = worker.process(delivery_of(&job), &mut stopped).await;
    assert_eq!(outcome, Outcome::Done);
    assert_eq!(claims.load(Ordering::SeqCst), 3);
}

async fn taken_over(claim: fn() -> Result<bool, PortError>, row: fn() -> Result<bool, PortError>) {
    let job = running_job(KIND, 1);
    let handler = Recording::new(Duration::from_secs(3600), None);
    let mut ports = Ports::new();
    ports.expect_start(&job);
    ports.jobs.expect_complete().never();
    ports.queue.expect_ack().never();
    ports.queue.expect_enqueue().never();
    ports.expect_no_failure();
    let (claims, _rows) = count_refreshes(&mut ports, &job, claim, row);
    let worker = ports.worker().handle(KIND, handler.clone());
    let (_stop, mut stopped) = running();
    let outcome = worker.process(delivery_of(&job), &mut stopped).await;
    assert_eq!(outcome, Outcome::Abandoned);
    assert_eq!(
        claims.load(Ordering::SeqCst),
        1,
        "the first refresh found it lost"
    );
    assert!(
        !handler.finished.load(Ordering::SeqCst),
        "the handler was stopped"
    );
}

#[tokio::test(start_paused = true)]
async fn a_job_whose_message_another_worker_claimed_stops_here_and_records_nothing() {
    taken_over(|| Ok(false), || Ok(true)).await;
}

#[tokio::test(start_paused = true)]
async fn a_job_whose_row_another_worker_finished_stops_here_and_records_nothing() {
    taken_over(|| Ok(true), || Ok(false)).await;
}

#[tokio::test]
async fn a_stale_message_another_worker_took_while_an_earlier_one_ran_is_skipped() {
    let (first, second) = (running_job(KIND, 2), running_job(KIND, 2));
    let handler = Recording::succeeding();
    let mut ports = Ports::new();
    ports.queue.expect_promote_due().returning(|_| Ok(0));
    let claimed = vec![delivery_of(&first), delivery_of(&second)];
    ports
        .queue
        .expect_claim_stale()
        .times(1)
        .returning(move |_, _, _| Ok(claimed.clone()));
    ports.expect_start(&first);
    ports.expect_done(&first);
    let second_delivery = delivery_of(&second);
    ports
        .queue
        .expect_refresh_claim()
        .withf(move |consumer, delivery| consumer == CONSUMER && *delivery == second_delivery)
        .times(1)
        .returning(|_, _| Ok(false));
    ports
        .jobs
        .expect_stranded()
        .returning(|_, _, _| Ok(Vec::new()));
    ports.expect_no_failure();
    let worker = ports.worker().handle(KIND, handler.clone());
    worker.housekeeping().await.expect("housekeeping");
    assert_eq!(handler.calls(), vec![first]);
}

// ---------------------------------------------------------------------------------------------
// housekeeping

#[tokio::test]
async fn housekeeping_promotes_retries_takes_over_stale_messages_and_reenqueues_lost_jobs() {
    let stale = running_job(KIND, 2);
    let lost = running_job("other.kind", 1);
    let handler = Recording::succeeding();
    let mut ports = Ports::new();
    ports
        .queue
        .expect_promote_due()
        .with(eq(now()))
        .times(1)
        .returning(|_| Ok(3));
    let stale_delivery = Delivery {
        deliveries: 4,
        ..delivery_of(&stale)
    };
    let claimed = stale_delivery.clone();
    ports
        .queue
        .expect_claim_stale()
        .withf(|consumer: &str, min_idle: &Duration, count: &usize| {
            consumer == CONSUMER && *min_idle == Duration::from_secs(30) && *count > 0
        })
        .times(1)
        .returning(move |_, _, _| Ok(vec![claimed.clone()]));
    ports.expect_start(&stale);
    ports
        .jobs
        .expect_complete()
        .with(eq(stale.id), eq(now()))
        .times(1)
        .returning(|_, _| Ok(()));
    ports
        .queue
        .expect_ack()
        .with(eq(stale_delivery))
        .times(1)
        .returning(|_| Ok(()));
    let stranded = lost.clone();
    ports
        .jobs
        .expect_stranded()
        .withf(|before, at, limit| {
            *before == now() - chrono::Duration::seconds(300) && *at == now() && *limit > 0
        })
        .times(1)
        .returning(move |_, _, _| Ok(vec![stranded.clone()]));
    ports
        .queue
        .expect_enqueue()
        .with(eq(lost.id), eq("other.kind"))
        .times(1)
        .returning(|_, _| Ok(()));
    ports.jobs.expect_claim_tick().never();
    ports.jobs.expect_create().never();
    ports.expect_no_failure();
    let worker = ports.worker().handle(KIND, handler.clone());
    worker.housekeeping().await.expect("housekeeping");
    assert_eq!(handler.calls(), vec![stale]);
}

/// Ports whose promote, claim and sweep find nothing.
fn idle_ports(instant: DateTime<Utc>) -> Ports {
    let mut ports = Ports::new();
    ports.now = instant;
    ports.queue.expect_promote_due().returning(|_| Ok(0));
    ports
        .queue
        .expect_claim_stale()
        .returning(|_, _, _| Ok(Vec::new()));
    ports
        .jobs
        .expect_stranded()
        .returning(|_, _, _| Ok(Vec::new()));
    ports
}

#[tokio::test]
async fn a_claimed_periodic_tick_creates_and_enqueues_one_job() {
    let instant = now() + chrono::Duration::milliseconds(42_500);
    let minute = now();
    let hour = now();
    let id = Uuid::now_v7();
    let mut ports = idle_ports(instant);
    ports
        .jobs
        .expect_claim_tick()
        .with(eq(RENEWAL_JOB), eq(minute))
        .times(1)
        .returning(|_, _| Ok(true));
    ports
        .jobs
        .expect_claim_tick()
        .with(eq("reports.hourly"), eq(hour))
        .times(1)
        .returning(|_, _| Ok(false));
    ports.ids.expect_new_id().times(1).returning(move || id);
    ports
        .jobs
        .expect_create()
        .withf(move |job: &Job| {
            *job == Job {
                id,
                kind: RENEWAL_JOB.to_owned(),
                payload: "{}".to_owned(),
                status: JobStatus::Queued,
                attempts: 0,
                last_error: None,
                trace_parent: None,
                trace_state: None,
                run_after: instant,
                created_at: instant,
                updated_at: instant,
            }
        })
        .times(1)
        .returning(|_| Ok(()));
    ports
        .queue
        .expect_enqueue()
        .with(eq(id), eq(RENEWAL_JOB))
        .times(1)
        .returning(|_, _| Ok(()));
    let worker = ports
        .worker()
        .every(PeriodicJob {
            kind: RENEWAL_JOB,
            every: Duration::from_secs(60),
        })
        .every(PeriodicJob {
            kind: "reports.hourly",
            every: Duration::from_secs(3600),
        });
    worker.housekeeping().await.expect("housekeeping");
}

#[tokio::test]
async fn ticks_are_counted_from_the_epoch() {
    // 12:07:59.999 is in the 12:07 minute and the 12:05 five-minute tick.
    let instant = now() + chrono::Duration::milliseconds(7 * 60_000 + 59_999);
    let mut ports = idle_ports(instant);
    ports
        .jobs
        .expect_claim_tick()
        .with(eq("every.minute"), eq(now() + chrono::Duration::minutes(7)))
        .times(1)
        .returning(|_, _| Ok(false));
    ports
        .jobs
        .expect_claim_tick()
        .with(eq("every.five"), eq(now() + chrono::Duration::minutes(5)))
        .times(1)
        .returning(|_, _| Ok(false));
    ports.jobs.expect_create().never();
    ports.queue.expect_enqueue().never();
    let worker = ports
        .worker()
        .every(PeriodicJob {
            kind: "every.minute",
            every: Duration::from_secs(60),
        })
        .every(PeriodicJob {
            kind: "every.five",
            every: Duration::from_secs(300),
        });
    worker.housekeeping().await.expect("housekeeping");
}

#[tokio::test]
async fn a_tick_claimed_by_another_worker_creates_nothing() {
    let mut ports = idle_ports(now());
    ports
        .jobs
        .expect_claim_tick()
        .times(1)
        .returning(|_, _| Ok(false));
    ports.ids.expect_new_id().never();
    ports.jobs.expect_create().never();
    ports.queue.expect_enqueue().never();
    let worker = ports.worker().every(PeriodicJob {
        kind: RENEWAL_JOB,
        every: Duration::from_secs(60),
    });
    worker.housekeeping().await.expect("housekeeping");
}

#[tokio::test]
async fn a_periodic_job_whose_enqueue_fails_is_still_stored_for_the_sweep() {
    let mut ports = idle_ports(now());
    ports
        .jobs
        .expect_claim_tick()
        .times(1)
        .returning(|_, _| Ok(true));
    ports.ids.expect_new_id().returning(Uuid::now_v7);
    ports.jobs.expect_create().times(1).returning(|_| Ok(()));
    ports
        .queue
        .expect_enqueue()
        .times(1)
        .returning(|_, _| Err(unavailable()));
    let worker = ports.worker().every(PeriodicJob {
        kind: RENEWAL_JOB,
        every: Duration::from_secs(60),
    });
    worker.housekeeping().await.expect("housekeeping");
}

#[tokio::test]
async fn housekeeping_stops_at_the_first_port_error() {
    let mut ports = Ports::new();
    ports
        .queue
        .expect_promote_due()
        .times(1)
        .returning(|_| Err(unavailable()));
    ports.queue.expect_claim_stale().never();
    ports.jobs.expect_stranded().never();
    ports.jobs.expect_claim_tick().never();
    let worker = ports.worker().every(PeriodicJob {
        kind: RENEWAL_JOB,
        every: Duration::from_secs(60),
    });
    let result = worker.housekeeping().await;
    assert!(
        matches!(result, Err(PortError::Unavailable(_))),
        "{result:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// run

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_processes_what_it_receives_and_returns_when_stopped() {
    let job = running_job(KIND, 1);
    let mut ports = idle_ports(now());
    ports.jobs.expect_claim_tick().never();
    let receives = Arc::new(AtomicUsize::new(0));
    let counter = receives.clone();
    let delivered = delivery_of(&job);
    ports
        .queue
        .expect_receive()
        .withf(|consumer: &str, block: &Duration| {
            consumer == CONSUMER && *block == Duration::from_millis(5)
        })
        .returning(move |_, block| {
            if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                Ok(Some(delivered.clone()))
            } else {
                // Stand in for the queue's blocking read.
                std::thread::sleep(block);
                Ok(None)
            }
        });
    ports.expect_start(&job);
    ports.expect_done(&job);
    ports.expect_no_failure();
    let handler = Recording::succeeding();
    let worker = Arc::new(ports.worker().handle(KIND, handler.clone()));
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn({
        let worker = worker.clone();
        async move { worker.run(stopped).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(true).expect("the worker listens");
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("run returns after the stop")
        .expect("run does not panic");
    assert_eq!(handler.calls(), vec![job]);
    assert!(receives.load(Ordering::SeqCst) >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_samples_the_depths_periodically_beside_the_jobs_and_stops_with_them() {
    let mut ports = idle_ports(now());
    ports.settings.depth_sample_every = Some(Duration::from_millis(10));
    ports.jobs.expect_claim_tick().never();
    let samples = Arc::new(AtomicUsize::new(0));
    let counted = samples.clone();
    ports.jobs.expect_queued_by_kind().returning(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        Ok(Vec::new())
    });
    ports.queue.expect_dead_letters().returning(|| Ok(0));
    let receives = Arc::new(AtomicUsize::new(0));
    let received = receives.clone();
    ports.queue.expect_receive().returning(move |_, block| {
        received.fetch_add(1, Ordering::SeqCst);
        // Stand in for the queue's blocking read, which holds its thread.
        std::thread::sleep(block);
        Ok(None)
    });
    let worker = ports.worker();
    let (stop, stopped) = watch::channel(false);
    // The job loop on a thread of its own that it never lets go of (the mock's receive blocks
    // it): the samples must come all the same.
    let runtime = tokio::runtime::Handle::current();
    let running = std::thread::spawn(move || runtime.block_on(worker.run(stopped)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(true).expect("the worker listens");
    let returned = tokio::task::spawn_blocking(move || running.join());
    tokio::time::timeout(Duration::from_secs(5), returned)
        .await
        .expect("run returns after the stop, sampler and all")
        .expect("joined")
        .expect("run does not panic");
    let sampled = samples.load(Ordering::SeqCst);
    assert!(
        sampled >= 3,
        "sampled {sampled} times in 100 ms at every 10 ms"
    );
    assert!(
        receives.load(Ordering::SeqCst) >= 5,
        "the job loop kept receiving while the sampler ran"
    );
    // Stopped means stopped: no sample after run returned.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(samples.load(Ordering::SeqCst), sampled);
}

// A job taken over during housekeeping obeys the worker's stop like any other (SPEC §4: "the
// worker finishes or releases its job" on SIGTERM).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_a_taken_over_job_releases_it_after_the_grace() {
    let job = running_job(KIND, 2);
    let mut ports = Ports::new();
    ports.queue.expect_promote_due().returning(|_| Ok(0));
    let claimed = delivery_of(&job);
    ports
        .queue
        .expect_claim_stale()
        .times(1)
        .returning(move |_, _, _| Ok(vec![claimed.clone()]));
    ports
        .jobs
        .expect_stranded()
        .returning(|_, _, _| Ok(Vec::new()));
    ports.queue.expect_receive().returning(|_, block| {
        std::thread::sleep(block);
        Ok(None)
    });
    ports.expect_start(&job);
    // Recorded rather than required with `times`, so that the failing run, aborted below, cannot
    // panic while its mocks are dropped.
    let (released, requeued, acked) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (on_release, on_enqueue, on_ack) = (released.clone(), requeued.clone(), acked.clone());
    let job_id = job.id;
    ports.jobs.expect_release().returning(move |id, at| {
        on_release.store(id == job_id && at == now(), Ordering::SeqCst);
        Ok(())
    });
    ports.queue.expect_enqueue().returning(move |id, kind| {
        on_enqueue.store(id == job_id && kind == KIND, Ordering::SeqCst);
        Ok(())
    });
    ports.queue.expect_ack().returning(move |_| {
        on_ack.store(true, Ordering::SeqCst);
        Ok(())
    });
    ports.jobs.expect_complete().returning(|_, _| Ok(()));
    let handler = Recording::new(Duration::from_secs(10), None);
    let worker = Arc::new(ports.worker().handle(KIND, handler.clone()));
    let (stop, stopped) = watch::channel(false);
    let mut running = tokio::spawn({
        let worker = worker.clone();
        async move { worker.run(stopped).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(handler.calls().len(), 1, "the stale job is being handled");
    stop.send(true).expect("the worker listens");
    // The grace is 100 ms; allow far more.
    let returned = tokio::time::timeout(Duration::from_secs(2), &mut running).await;
    if returned.is_err() {
        running.abort();
        let _ = running.await;
    }
    assert!(
        returned.is_ok(),
        "run ignored the stop while housekeeping ran a taken-over job"
    );
    assert!(!handler.finished.load(Ordering::SeqCst));
    assert!(released.load(Ordering::SeqCst), "the job was released");
    assert!(
        requeued.load(Ordering::SeqCst),
        "the job was enqueued again"
    );
    assert!(
        acked.load(Ordering::SeqCst),
        "the taken-over message was acknowledged"
    );
}

// ---------------------------------------------------------------------------------------------
// RenewDueSubscriptions

fn pass(renewed: usize, cancelled: usize, examined: usize) -> RenewalPass {
    RenewalPass {
        renewed,
        cancelled,
        quarantined: 0,
        examined,
    }
}

/// A renewal run of batches of `batch` whose repository answers `passes` in order (and nothing
/// more), all at the one clock reading.
fn renewal(
    batch: usize,
    passes: Vec<Result<RenewalPass, fn() -> PortError>>,
) -> RenewDueSubscriptions {
    let mut subscriptions = MockSubscriptionRepository::new();
    let mut order = Sequence::new();
    for answer in passes {
        subscriptions
            .expect_renew_due()
            .with(eq(now()), eq(batch.max(1)))
            .times(1)
            .in_sequence(&mut order)
            .returning(move |_, _| answer.map_err(|error| error()));
    }
    let mut clock = MockClock::new();
    clock.expect_now().times(1).returning(now);
    RenewDueSubscriptions::new(Arc::new(subscriptions), Arc::new(clock), batch)
}

#[tokio::test]
async fn renewal_runs_batches_while_they_are_full_and_sums_the_totals() {
    let run = renewal(
        2,
        vec![
            Ok(pass(2, 0, 2)),
            Ok(pass(0, 2, 2)),
            Ok(pass(1, 1, 2)),
            Ok(pass(0, 0, 0)),
        ],
    );
    assert_eq!(run.run().await.expect("renewed"), pass(3, 3, 6));
}

#[tokio::test]
async fn a_short_batch_that_renewed_nothing_ends_the_run() {
    let run = renewal(10, vec![Ok(pass(0, 3, 3))]);
    assert_eq!(run.run().await.expect("renewed"), pass(0, 3, 3));
    let run = renewal(10, vec![Ok(pass(0, 0, 0))]);
    assert_eq!(
        run.run().await.expect("nothing due"),
        RenewalPass::default()
    );
}

#[tokio::test]
async fn a_short_batch_that_still_renewed_is_followed_by_another() {
    let run = renewal(
        10,
        vec![Ok(pass(4, 1, 5)), Ok(pass(1, 0, 1)), Ok(pass(0, 0, 0))],
    );
    assert_eq!(run.run().await.expect("renewed"), pass(5, 1, 6));
}

#[tokio::test]
async fn a_batch_of_zero_is_a_batch_of_one() {
    let run = renewal(0, vec![Ok(pass(1, 0, 1)), Ok(pass(0, 0, 0))]);
    assert_eq!(run.run().await.expect("renewed"), pass(1, 0, 1));
}

#[tokio::test]
async fn a_port_error_during_renewal_fails_the_run() {
    let run = renewal(2, vec![Ok(pass(2, 0, 2)), Err(unavailable)]);
    let error = run.run().await.expect_err("failed");
    assert!(
        matches!(
            error.downcast_ref::<PortError>(),
            Some(PortError::Unavailable(_))
        ),
        "{error:?}"
    );

    let run = renewal(2, vec![Err(unavailable)]);
    let job = running_job(RENEWAL_JOB, 1);
    assert!(run.handle(&job).await.is_err());
}

#[tokio::test]
async fn the_renewal_handler_runs_a_full_pass() {
    let run = renewal(2, vec![Ok(pass(2, 0, 2)), Ok(pass(0, 0, 1))]);
    run.handle(&running_job(RENEWAL_JOB, 1))
        .await
        .expect("renewed");
}

struct Linked(std::sync::Mutex<Vec<(String, Option<String>)>>);

impl TraceLink for Linked {
    fn adopt(&self, _span: &tracing::Span, trace_parent: &str, trace_state: Option<&str>) {
        self.0
            .lock()
            .expect("lock")
            .push((trace_parent.to_owned(), trace_state.map(str::to_owned)));
    }
}

#[tokio::test]
async fn a_job_queued_by_a_request_continues_its_trace() {
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut job = running_job(KIND, 1);
    job.trace_parent = Some(traceparent.to_owned());
    job.trace_state = Some("congo=t61rcWkgMzE".to_owned());
    let link = Arc::new(Linked(std::sync::Mutex::new(Vec::new())));
    let mut ports = Ports::new();
    ports.expect_start(&job);
    ports.expect_done(&job);
    ports.expect_no_failure();
    let worker = ports
        .worker()
        .handle(KIND, Recording::succeeding())
        .with_trace_link(link.clone());
    let (_stop, mut stopped) = running();
    assert_eq!(
        worker.process(delivery_of(&job), &mut stopped).await,
        Outcome::Done
    );
    assert_eq!(
        *link.0.lock().expect("lock"),
        vec![(traceparent.to_owned(), Some("congo=t61rcWkgMzE".to_owned()))]
    );
}
