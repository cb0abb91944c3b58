//! The worker against real PostgreSQL and Redis: renewals exactly once with two workers, a job
//! taken over from a worker that died mid-job, a long job kept by its living worker's heartbeat
//! and taken over once that worker dies, a poison job dead-lettered after five attempts, and a job
//! whose message was flushed away found and run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use strata_ports::{Job, JobStatus};
use strata_server::Settings;
use strata_services::{JobHandler, Outcome, RENEWAL_JOB, Worker};
use tokio::sync::watch;

use crate::api::helpers::{TestApp, access, settings};

/// A worker on the app's components with fast pacing for tests.
fn worker(app: &TestApp, consumer: &str, overrides: &[(&str, Value)]) -> Worker {
    let mut all = vec![
        ("worker_consumer", json!(consumer)),
        ("worker_backoff_ms", json!(10)),
        ("worker_backoff_max_ms", json!(40)),
        ("worker_claim_idle_ms", json!(200)),
    ];
    all.extend(overrides.iter().cloned());
    let settings: Settings = settings("postgres://unused@127.0.0.1/unused", &all);
    app.components.worker(&settings)
}

async fn job(app: &TestApp, id: uuid::Uuid) -> Job {
    app.components
        .jobs
        .find(id)
        .await
        .unwrap()
        .expect("job exists")
}

/// Runs `worker` until `done` holds (checked every 20 ms) or 20 s pass.
async fn run_until<F, Fut>(worker: Worker, done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn(async move { worker.run(stopped).await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the worker stops")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_renew_each_due_subscription_exactly_once_per_period() {
    let app = TestApp::spawn_with(&[("db_pool_size", json!(12))]).await;
    let mut tokens = Vec::new();
    for n in 0..24 {
        let token = access(&app.register(&format!("user{n}@example.com")).await);
        let plan = if n % 2 == 0 {
            "basic-monthly"
        } else {
            "pro-yearly"
        };
        let created = app
            .post_keyed(
                "/v1/subscriptions",
                &token,
                json!({"plan_code": plan}),
                None,
            )
            .await;
        assert_eq!(created.status(), reqwest::StatusCode::CREATED);
        tokens.push(token);
    }
    // Every subscription's period ended a minute ago; a quarter are marked to end instead.
    app.sql(
        "UPDATE subscriptions SET anchor = now() - interval '1 month' - interval '1 minute', \
         current_period_start = now() - interval '1 month' - interval '1 minute', \
         current_period_end = now() - interval '1 minute' WHERE plan_code = 'basic-monthly'",
    )
    .await;
    app.sql(
        "UPDATE subscriptions SET anchor = now() - interval '1 year' - interval '1 minute', \
         current_period_start = now() - interval '1 year' - interval '1 minute', \
         current_period_end = now() - interval '1 minute' WHERE plan_code = 'pro-yearly'",
    )
    .await;
    app.sql(
        "UPDATE subscriptions SET cancel_at_period_end = true WHERE user_id IN \
         (SELECT id FROM users WHERE email LIKE 'user1%' OR email LIKE 'user3%')",
    )
    .await;

    // Two renewal jobs, two workers at once: both may run the renewal concurrently.
    let (a, b) = (worker(&app, "a", &[]), worker(&app, "b", &[]));
    let first = a.enqueue_new(RENEWAL_JOB, "{}").await.unwrap();
    let second = b.enqueue_new(RENEWAL_JOB, "{}").await.unwrap();
    let both_done = || async {
        job(&app, first.id).await.status == JobStatus::Done
            && job(&app, second.id).await.status == JobStatus::Done
    };
    let (stop, stopped) = watch::channel(false);
    let (stopped_a, stopped_b) = (stopped.clone(), stopped);
    let runs = [
        tokio::spawn(async move { a.run(stopped_a).await }),
        tokio::spawn(async move { b.run(stopped_b).await }),
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !both_done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "renewal jobs not done"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    for run in runs {
        run.await.unwrap();
    }

    for (n, token) in tokens.iter().enumerate() {
        let invoices: Value = app.get("/v1/invoices", token).await.json().await.unwrap();
        let renewals = invoices["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["kind"] == "renewal")
            .count();
        let me: Value = app
            .get("/v1/subscriptions/me", token)
            .await
            .json()
            .await
            .unwrap();
        let email_digit_marked = n == 1 || n == 3 || (10..20).contains(&n);
        if email_digit_marked {
            assert_eq!(renewals, 0, "user{n}: ended instead of renewing");
            assert_eq!(me["status"], "cancelled", "user{n}");
        } else {
            assert_eq!(renewals, 1, "user{n}: renewed exactly once");
            assert_eq!(me["status"], "active", "user{n}");
            assert_eq!(
                me["current_period_start"],
                invoices["items"][0]["period_start"]
            );
        }
    }
}

#[tokio::test]
async fn a_job_left_unacknowledged_by_a_dead_worker_is_taken_over_and_finished() {
    let app = TestApp::spawn().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let counting = Arc::new(Counting(runs.clone()));
    let survivor = worker(&app, "survivor", &[]).handle("test.count", counting);
    let created = survivor.enqueue_new("test.count", "{}").await.unwrap();

    // The doomed worker receives the message and dies before acknowledging it.
    let taken = app
        .components
        .queue
        .receive("doomed", Duration::from_millis(500))
        .await
        .unwrap()
        .expect("a delivery");
    assert_eq!(taken.job_id, created.id);
    app.components
        .jobs
        .start(created.id, chrono::Utc::now())
        .await
        .unwrap();

    let done = || async { job(&app, created.id).await.status == JobStatus::Done };
    run_until(survivor, done).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        job(&app, created.id).await.attempts,
        2,
        "the dead attempt counts"
    );
}

#[tokio::test]
async fn a_poison_job_is_dead_lettered_after_five_attempts() {
    let app = TestApp::spawn().await;
    let worker = worker(&app, "w", &[]).handle("test.poison", Arc::new(Poison));
    let created = worker.enqueue_new("test.poison", "{}").await.unwrap();
    let dead = || async { app.components.queue.dead_letters().await.unwrap() == 1 };
    run_until(worker, dead).await;
    let stored = job(&app, created.id).await;
    assert_eq!(stored.status, JobStatus::Failed);
    assert_eq!(stored.attempts, 5);
    assert!(stored.last_error.unwrap().contains("always fails"));
}

#[tokio::test]
async fn a_job_whose_message_was_flushed_is_found_and_run() {
    let app = TestApp::spawn().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let worker = worker(&app, "w", &[("worker_sweep_after_secs", json!(1))])
        .handle("test.count", Arc::new(Counting(runs.clone())));
    // Stored and enqueued, then Redis loses everything (this namespace of the shared test server
    // stands in for FLUSHALL).
    let created = worker.enqueue_new("test.count", "{}").await.unwrap();
    app.components.redis.clear_namespace().await.unwrap();
    let done = || async { job(&app, created.id).await.status == JobStatus::Done };
    run_until(worker, done).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_stopping_worker_finishes_the_job_at_hand() {
    let app = TestApp::spawn().await;
    let worker = worker(&app, "w", &[]).handle("test.slow", Arc::new(Slow));
    let created = worker.enqueue_new("test.slow", "{}").await.unwrap();
    let delivery = app
        .components
        .queue
        .receive("w", Duration::from_millis(500))
        .await
        .unwrap()
        .expect("a delivery");
    let (stop, mut stopped) = watch::channel(false);
    let processing = tokio::spawn(async move { worker.process(delivery, &mut stopped).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.send(true).unwrap();
    assert_eq!(processing.await.unwrap(), Outcome::Done);
    assert_eq!(job(&app, created.id).await.status, JobStatus::Done);
}

/// A handler that takes `took` and counts its runs: started, running now, and the most ever
/// running at once.
#[derive(Default)]
struct Long {
    took: Duration,
    started: AtomicUsize,
    running: Arc<AtomicUsize>,
    most_at_once: AtomicUsize,
}

impl Long {
    fn new(took: Duration) -> Arc<Self> {
        Arc::new(Self {
            took,
            ..Self::default()
        })
    }
}

/// Leaves the running count when the run ends, however it ends (a worker aborted mid-job drops
/// the run).
struct Leave(Arc<AtomicUsize>);

impl Drop for Leave {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl JobHandler for Long {
    async fn handle(&self, _job: &Job) -> anyhow::Result<()> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        let _leave = Leave(self.running.clone());
        self.most_at_once.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.took).await;
        Ok(())
    }
}

/// Claims go idle after 300 ms; the long job takes more than eight times that, so without its
/// heartbeat the other worker's housekeeping (every second) would take it over mid-run.
const CLAIM_IDLE_MS: u64 = 300;
const LONG_JOB: Duration = Duration::from_millis(2_500);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_far_longer_than_the_claim_idle_time_runs_once_however_many_workers_run() {
    let app = TestApp::spawn().await;
    let long = Long::new(LONG_JOB);
    let idle = [("worker_claim_idle_ms", json!(CLAIM_IDLE_MS))];
    let first = worker(&app, "first", &idle).handle("test.long", long.clone());
    let second = worker(&app, "second", &idle).handle("test.long", long.clone());
    let created = first.enqueue_new("test.long", "{}").await.unwrap();

    let (stop, stopped) = watch::channel(false);
    let other = tokio::spawn({
        let stopped = stopped.clone();
        async move { second.run(stopped).await }
    });
    let done = || async { job(&app, created.id).await.status == JobStatus::Done };
    run_until(first, done).await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), other)
        .await
        .expect("the other worker stops")
        .unwrap();

    assert_eq!(long.started.load(Ordering::SeqCst), 1, "the job ran once");
    assert_eq!(long.most_at_once.load(Ordering::SeqCst), 1);
    assert_eq!(job(&app, created.id).await.attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_job_whose_worker_dies_mid_run_is_taken_over_after_the_claim_idle_time() {
    let app = TestApp::spawn().await;
    let long = Long::new(LONG_JOB);
    let idle = [("worker_claim_idle_ms", json!(CLAIM_IDLE_MS))];
    let doomed = worker(&app, "doomed", &idle).handle("test.long", long.clone());
    let survivor = worker(&app, "survivor", &idle).handle("test.long", long.clone());
    let created = doomed.enqueue_new("test.long", "{}").await.unwrap();

    let (_keep, stopped) = watch::channel(false);
    let dying = tokio::spawn(async move { doomed.run(stopped).await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while long.started.load(Ordering::SeqCst) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the job started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The survivor runs beside the living worker for several claim-idle times and leaves its job
    // alone; then the worker dies mid-job (its task dropped: no release, no acknowledgement).
    let (stop, survivor_stopped) = watch::channel(false);
    let surviving = tokio::spawn(async move { survivor.run(survivor_stopped).await });
    tokio::time::sleep(Duration::from_millis(4 * CLAIM_IDLE_MS)).await;
    assert_eq!(
        long.started.load(Ordering::SeqCst),
        1,
        "not taken over while alive"
    );
    dying.abort();
    let _ = dying.await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while job(&app, created.id).await.status != JobStatus::Done {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job was taken over and finished"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), surviving)
        .await
        .expect("the survivor stops")
        .unwrap();

    assert_eq!(
        long.started.load(Ordering::SeqCst),
        2,
        "run again once, by the survivor"
    );
    assert_eq!(
        long.most_at_once.load(Ordering::SeqCst),
        1,
        "never two at once"
    );
    assert_eq!(
        job(&app, created.id).await.attempts,
        2,
        "the dead attempt counts"
    );
}

/// The value of the sample line `series` (name and labels, as rendered) in `rendered`.
fn sample(rendered: &str, series: &str) -> Option<f64> {
    rendered
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn the_worker_times_every_attempt_by_outcome_and_samples_the_backlog_and_the_dead_letters() {
    // A recorder of this test's thread (and so of its single-threaded runtime, the worker
    // included), configured as the process's: other tests of this binary cannot add to it.
    let recorder = strata_server::metrics::builder().unwrap().build_recorder();
    let scrape = recorder.handle();
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let app = TestApp::spawn().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let with_handlers = |consumer: &str| {
        worker(&app, consumer, &[])
            .handle("test.count", Arc::new(Counting(runs.clone())))
            .handle("test.poison", Arc::new(Poison))
    };
    let depth = |kind: &str| format!("jobs_queue_depth{{kind=\"{kind}\"}}");
    let timed = |kind: &str, outcome: &str| {
        format!("jobs_duration_seconds_count{{kind=\"{kind}\",outcome=\"{outcome}\"}}")
    };

    // Queued and not yet run: the backlog, by kind.
    let worker = with_handlers("w");
    for _ in 0..3 {
        worker.enqueue_new("test.count", "{}").await.unwrap();
    }
    worker.enqueue_new("test.poison", "{}").await.unwrap();
    worker.sample_depths().await.unwrap();
    let rendered = scrape.render();
    assert_eq!(
        sample(&rendered, &depth("test.count")),
        Some(3.0),
        "{rendered}"
    );
    assert_eq!(
        sample(&rendered, &depth("test.poison")),
        Some(1.0),
        "{rendered}"
    );
    assert_eq!(
        sample(&rendered, &depth(RENEWAL_JOB)),
        Some(0.0),
        "{rendered}"
    );
    assert_eq!(
        sample(&rendered, "jobs_dead_letter_depth"),
        Some(0.0),
        "{rendered}"
    );

    // Run: three jobs done, the poison one failed four times then dead-lettered.
    let finished = || async {
        runs.load(Ordering::SeqCst) == 3 && app.components.queue.dead_letters().await.unwrap() == 1
    };
    run_until(worker, finished).await;
    with_handlers("sampler").sample_depths().await.unwrap();
    let rendered = scrape.render();
    assert_eq!(
        sample(&rendered, &depth("test.count")),
        Some(0.0),
        "{rendered}"
    );
    assert_eq!(
        sample(&rendered, &depth("test.poison")),
        Some(0.0),
        "{rendered}"
    );
    assert_eq!(
        sample(&rendered, "jobs_dead_letter_depth"),
        Some(1.0),
        "{rendered}"
    );
    for (kind, outcome, attempts) in [
        ("test.count", "done", 3.0),
        ("test.poison", "failed", 4.0),
        ("test.poison", "dead_lettered", 1.0),
    ] {
        let series = timed(kind, outcome);
        assert_eq!(
            sample(&rendered, &series),
            Some(attempts),
            "{series} in:\n{rendered}"
        );
    }
    assert_eq!(
        sample(&rendered, &timed("test.count", "failed")),
        None,
        "{rendered}"
    );
    // A histogram, with the buckets of the process's recorder.
    let bucket = "jobs_duration_seconds_bucket{kind=\"test.count\",outcome=\"done\",le=\"+Inf\"}";
    assert_eq!(sample(&rendered, bucket), Some(3.0), "{rendered}");
}

struct Counting(Arc<AtomicUsize>);

#[async_trait]
impl JobHandler for Counting {
    async fn handle(&self, _job: &Job) -> anyhow::Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

struct Poison;

#[async_trait]
impl JobHandler for Poison {
    async fn handle(&self, _job: &Job) -> anyhow::Result<()> {
        anyhow::bail!("this job always fails")
    }
}

struct Slow;

#[async_trait]
impl JobHandler for Slow {
    async fn handle(&self, _job: &Job) -> anyhow::Result<()> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(())
    }
}
