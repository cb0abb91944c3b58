//! Liveness, readiness and the deep health check.
//!
//! Liveness says the process serves HTTP. Readiness says whether this instance can serve: 503
//! only while it drains before shutdown, so a load balancer stops sending traffic before the
//! process stops taking it. A dependency Strata degrades around never fails readiness: every
//! replica shares the same PostgreSQL and Redis, so a readiness that followed them would take
//! every replica out of the load balancer at once, turning a degraded service into no service
//! (docs/decisions/0022-readiness-is-this-instance.md). Readiness reports dependencies in its
//! body instead, and only pings those that cost no pool connection (Redis answers over the shared
//! multiplexed connection); the others are reported as the last deep check saw them. The deep
//! check (`GET /health`) pings every dependency and answers 503 when one is down: it is for
//! people and alerts.
//!
//! Probes come from every load balancer, kubelet and monitor at once, so their cost must not grow
//! with their number: concurrent probes share one check (single flight), and a finished check
//! answers every probe for a short interval after it started. Draining is read at each probe, never
//! from a shared check, so shutdown shows at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared, join_all};
use serde::Serialize;
use strata_ports::{HealthCheck, PortError};
use tokio::time::Instant;

use utoipa::ToSchema;
use utoipa::openapi::schema::Object;

use crate::dto::schemas::one_of;
use crate::routing::{Routes, operation};
use crate::state::AppState;

mod examples;

/// How long a check answers probes by default: at most one ping per dependency per second.
pub const DEFAULT_REUSE: Duration = Duration::from_secs(1);

/// The outcome of one check, shared by every probe it answers.
type Outcome = Shared<BoxFuture<'static, Arc<[CheckReport]>>>;

/// The latest check: started at `started`, running or finished.
struct Round {
    started: Instant,
    outcome: Outcome,
}

/// Some dependencies and their latest check, shared by the probes that arrive together.
struct Checks {
    checks: Arc<[Arc<dyn HealthCheck>]>,
    latest: Mutex<Option<Round>>,
}

impl Checks {
    fn new(checks: Vec<Arc<dyn HealthCheck>>) -> Self {
        Self {
            checks: checks.into(),
            latest: Mutex::new(None),
        }
    }

    /// The check to wait for, started here if none can be shared.
    fn round(&self, timeout: Duration, reuse: Duration) -> Outcome {
        let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(round) = latest.as_ref() {
            let age = round.started.elapsed();
            let shareable = match round.outcome.peek() {
                Some(_) => age < reuse,
                // A check runs on its probes' tasks: one whose probes all went away stops, and
                // resuming it past its timeout would report timeouts that never happened.
                None => age <= timeout,
            };
            if shareable {
                return round.outcome.clone();
            }
        }
        let outcome = ping_all(self.checks.clone(), timeout).boxed().shared();
        *latest = Some(Round {
            started: Instant::now(),
            outcome: outcome.clone(),
        });
        outcome
    }

    /// The latest finished check's answers, without starting one.
    fn last_finished(&self) -> Option<Arc<[CheckReport]>> {
        let latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        latest
            .as_ref()
            .and_then(|round| round.outcome.peek().cloned())
    }
}

/// The dependencies to ping and the draining flag.
pub struct Health {
    deep: Checks,
    readiness: Checks,
    timeout: Duration,
    reuse: Duration,
    draining: AtomicBool,
}

impl Health {
    /// Pings `checks`, each bounded by `timeout`, for the deep check; readiness pings none of them
    /// until told which are free (see [`Health::readiness_pings`]). Concurrent probes share a
    /// check, but a finished one is not reused (see [`Health::reusing_results_for`]).
    pub fn new(checks: Vec<Arc<dyn HealthCheck>>, timeout: Duration) -> Self {
        Self {
            deep: Checks::new(checks),
            readiness: Checks::new(Vec::new()),
            timeout,
            reuse: Duration::ZERO,
            draining: AtomicBool::new(false),
        }
    }

    /// Readiness pings `checks` itself: those that cost no pool connection. It reports every
    /// other dependency as the last deep check saw it.
    #[must_use]
    pub fn readiness_pings(mut self, checks: Vec<Arc<dyn HealthCheck>>) -> Self {
        self.readiness = Checks::new(checks);
        self
    }

    /// A check answers the probes that arrive within `reuse` of its start (zero: only those that
    /// arrive while it runs).
    #[must_use]
    pub fn reusing_results_for(mut self, reuse: Duration) -> Self {
        self.reuse = reuse;
        self
    }

    /// From now on readiness answers 503 (shutdown has begun).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// True once draining has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Every dependency pinged, from the deep check running now or one recent enough, else from a
    /// new one.
    pub async fn deep_check(&self) -> HealthReport {
        let checks = self.deep.round(self.timeout, self.reuse).await.to_vec();
        self.reported(checks)
    }

    /// What readiness knows without a pool connection: the dependencies it may ping, pinged as
    /// [`Health::deep_check`] does; every other one as the last finished deep check saw it, or
    /// `unknown` before there was one.
    pub async fn readiness(&self) -> HealthReport {
        let pinged = self.readiness.round(self.timeout, self.reuse).await;
        let seen = self.deep.last_finished();
        let checks = self
            .deep
            .checks
            .iter()
            .map(|check| {
                let name = check.name();
                let found =
                    |reports: &[CheckReport]| reports.iter().find(|r| r.name == name).cloned();
                found(&pinged)
                    .or_else(|| seen.as_deref().and_then(found))
                    .unwrap_or(CheckReport {
                        name,
                        status: "unknown",
                        latency_ms: 0,
                        error: None,
                    })
            })
            .collect();
        self.reported(checks)
    }

    fn reported(&self, checks: Vec<CheckReport>) -> HealthReport {
        let degraded = checks.iter().any(|c| c.status == "down");
        HealthReport {
            status: if degraded { "degraded" } else { "ok" },
            draining: self.is_draining(),
            checks,
        }
    }
}

/// Pings every dependency at once.
async fn ping_all(checks: Arc<[Arc<dyn HealthCheck>]>, timeout: Duration) -> Arc<[CheckReport]> {
    let pings = checks.iter().map(|check| async move {
        let started = Instant::now();
        let result = tokio::time::timeout(timeout, check.ping()).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        let (status, error) = match result {
            Ok(Ok(())) => ("up", None),
            Ok(Err(PortError::Unavailable(_))) => ("down", Some("unavailable")),
            Ok(Err(PortError::Unexpected(_))) => ("down", Some("error")),
            Err(_) => ("down", Some("timeout")),
        };
        CheckReport {
            name: check.name(),
            status,
            latency_ms,
            error,
        }
    });
    join_all(pings).await.into()
}

/// One dependency's answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = DependencyCheck)]
pub struct CheckReport {
    /// Dependency name, such as `postgres` or `redis`.
    #[schema(value_type = String, examples("postgres"))]
    pub name: &'static str,
    /// `up`, `down`, or `unknown` (readiness only: not pinged by readiness, and no deep check
    /// has run yet).
    #[schema(schema_with = up_down)]
    pub status: &'static str,
    /// How long the ping took, in milliseconds.
    pub latency_ms: u64,
    /// Why it is down; absent when up.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = down_reason)]
    pub error: Option<&'static str>,
}

fn up_down() -> Object {
    one_of(
        &["up", "down", "unknown"],
        "`up`, `down`, or `unknown` (readiness only: not pinged by readiness, and no deep \
         check has run yet).",
    )
}

fn down_reason() -> Object {
    one_of(
        &["timeout", "unavailable", "error"],
        "Why it is down: `timeout`, `unavailable` or `error`; absent when up.",
    )
}

/// The body of readiness and of the deep check.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = HealthReport)]
pub struct HealthReport {
    /// `ok`, or `degraded` when a dependency is down.
    #[schema(schema_with = ok_degraded)]
    pub status: &'static str,
    /// True while the instance shuts down.
    pub draining: bool,
    /// Every dependency.
    pub checks: Vec<CheckReport>,
}

fn ok_degraded() -> Object {
    one_of(
        &["ok", "degraded"],
        "`ok`, or `degraded` when a dependency is down.",
    )
}

/// `GET /health/live`'s body.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Liveness)]
pub struct Liveness {
    /// Always `ok`.
    #[schema(schema_with = ok)]
    pub status: &'static str,
}

fn ok() -> Object {
    one_of(&["ok"], "Always `ok`.")
}

/// The probes' routes and documentation (at the root, outside `/v1`: never shed, never rate
/// limited).
pub(crate) fn routes() -> Routes {
    Routes::new("")
        .tag(
            "health",
            "Liveness and readiness probes, and the deep health check for people and alerts (never shed, never rate limited).",
        )
        // Before the scope, which would answer `/health` with its own 404.
        .route(operation!(deep))
        .scope("/health", |routes| {
            routes.route(operation!(live)).route(operation!(ready))
        })
}

/// Liveness.
///
/// 200 as long as the process serves HTTP.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "health",
    operation_id = "live",
    responses(
        (status = 200, description = "The process serves HTTP.", body = Liveness,
            headers(("Cache-Control" = String, description = "`no-store`.")),
            example = examples::live),
    ),
)]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(Liveness { status: "ok" })
}

/// Readiness.
///
/// Whether this instance can serve: 503 only while it drains before shutdown. A dependency
/// Strata degrades around (Redis, PostgreSQL) is reported in the body as `degraded` with 200,
/// so that an outage shared by every replica never empties the load balancer. Costs no pool
/// connection: Redis is pinged over its shared connection, PostgreSQL reported as the last
/// deep check (`GET /health`) saw it. Never shed, never rate limited.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "health",
    operation_id = "ready",
    responses(
        (status = 200, description = "Ready; `status` is `degraded` when a dependency is down.", body = HealthReport,
            headers(("Cache-Control" = String, description = "`no-store`.")),
            examples(
                ("ok" = (summary = "Every dependency up", value = json!(examples::ready()))),
                ("degraded" = (summary = "Redis down: still ready", value = json!(examples::ready_degraded()))),
            )),
        (status = 503, description = "Not ready: the instance is draining before shutdown.",
            content((HealthReport = "application/json", example = examples::draining)),
            headers(
                ("Cache-Control" = String, description = "`no-store`."),
                ("Retry-After" = u64, description = "Seconds to wait before probing again."),
            )),
    ),
)]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let report = state.health.readiness().await;
    answer(report.draining, report)
}

/// Deep health check.
///
/// For people and alerts, not for load balancers: pings PostgreSQL and Redis concurrently,
/// each under a timeout, and answers 503 naming the dependency that is down. Concurrent calls
/// share one check. Never shed, never rate limited.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    operation_id = "health",
    responses(
        (status = 200, description = "Every dependency is up.", body = HealthReport,
            headers(("Cache-Control" = String, description = "`no-store`.")),
            example = examples::ready),
        (status = 503, description = "A dependency is down; `checks` names it.",
            content((HealthReport = "application/json", example = examples::degraded)),
            headers(
                ("Cache-Control" = String, description = "`no-store`."),
                ("Retry-After" = u64, description = "Seconds to wait before checking again."),
            )),
    ),
)]
pub async fn deep(state: web::Data<AppState>) -> HttpResponse {
    let report = state.health.deep_check().await;
    answer(report.status != "ok", report)
}

fn answer(unavailable: bool, report: HealthReport) -> HttpResponse {
    let mut response = if unavailable {
        let mut r = HttpResponse::ServiceUnavailable();
        r.insert_header((header::RETRY_AFTER, "5"));
        r
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(report)
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use futures_util::future::join_all;
    use tokio::sync::Semaphore;

    use super::*;

    /// A dependency that counts its pings; a gated one holds each ping until the test opens it.
    struct Counting {
        name: &'static str,
        pings: AtomicUsize,
        down: AtomicBool,
        gate: Option<Arc<Semaphore>>,
    }

    impl Counting {
        fn new(name: &'static str, gate: Option<Arc<Semaphore>>) -> Arc<Self> {
            Arc::new(Self {
                name,
                pings: AtomicUsize::new(0),
                down: AtomicBool::new(false),
                gate,
            })
        }

        fn pings(&self) -> usize {
            self.pings.load(Ordering::SeqCst)
        }
    }

    // Written out rather than through `async_trait`, which this crate does not otherwise need.
    impl HealthCheck for Counting {
        fn name(&self) -> &'static str {
            self.name
        }

        fn ping<'a, 'b>(
            &'a self,
        ) -> Pin<Box<dyn Future<Output = Result<(), PortError>> + Send + 'b>>
        where
            'a: 'b,
            Self: 'b,
        {
            Box::pin(async move {
                self.pings.fetch_add(1, Ordering::SeqCst);
                if let Some(gate) = &self.gate {
                    let _open = gate.acquire().await;
                }
                if self.down.load(Ordering::SeqCst) {
                    Err(PortError::unavailable(anyhow::anyhow!("refused")))
                } else {
                    Ok(())
                }
            })
        }
    }

    fn health(checks: &[&Arc<Counting>]) -> Health {
        let checks = checks
            .iter()
            .map(|check| Arc::clone(*check) as Arc<dyn HealthCheck>)
            .collect();
        Health::new(checks, Duration::from_secs(30))
    }

    /// Postgres is reported by the deep check only; readiness pings Redis itself.
    fn split(postgres: &Arc<Counting>, redis: &Arc<Counting>) -> Health {
        health(&[postgres, redis]).readiness_pings(vec![redis.clone() as Arc<dyn HealthCheck>])
    }

    #[tokio::test]
    async fn readiness_never_pings_a_dependency_it_was_not_given() {
        let postgres = Counting::new("postgres", None);
        let redis = Counting::new("redis", None);
        let health = split(&postgres, &redis);
        for _ in 0..3 {
            let report = health.readiness().await;
            assert_eq!(report.status, "ok");
            assert_eq!(
                statuses(&report),
                [("postgres", "unknown"), ("redis", "up")]
            );
        }
        assert_eq!((postgres.pings(), redis.pings()), (0, 3));
    }

    #[tokio::test]
    async fn readiness_is_degraded_naming_redis_while_the_deep_check_sees_it_too() {
        let postgres = Counting::new("postgres", None);
        let redis = Counting::new("redis", None);
        redis.down.store(true, Ordering::SeqCst);
        let health = split(&postgres, &redis);
        let ready = health.readiness().await;
        assert_eq!(ready.status, "degraded");
        assert!(!ready.draining);
        assert_eq!(
            statuses(&ready),
            [("postgres", "unknown"), ("redis", "down")]
        );
        let deep = health.deep_check().await;
        assert_eq!(deep.status, "degraded");
        assert_eq!(statuses(&deep), [("postgres", "up"), ("redis", "down")]);
    }

    #[tokio::test]
    async fn readiness_reports_an_unpinged_dependency_as_the_last_deep_check_saw_it() {
        let postgres = Counting::new("postgres", None);
        let redis = Counting::new("redis", None);
        postgres.down.store(true, Ordering::SeqCst);
        let health = split(&postgres, &redis);
        assert_eq!(health.deep_check().await.status, "degraded");
        let ready = health.readiness().await;
        assert_eq!(ready.status, "degraded");
        assert_eq!(statuses(&ready), [("postgres", "down"), ("redis", "up")]);
        assert_eq!(ready.checks[0].error, Some("unavailable"));
        assert_eq!(
            postgres.pings(),
            1,
            "readiness reused the deep check's answer"
        );
    }

    fn statuses(report: &HealthReport) -> Vec<(&'static str, &'static str)> {
        report.checks.iter().map(|c| (c.name, c.status)).collect()
    }

    #[tokio::test]
    async fn two_hundred_concurrent_probes_ping_each_dependency_once() {
        let gate = Arc::new(Semaphore::new(0));
        let postgres = Counting::new("postgres", Some(gate.clone()));
        let redis = Counting::new("redis", Some(gate.clone()));
        let health = health(&[&postgres, &redis]);
        let entered = AtomicUsize::new(0);
        let probes = join_all((0..200).map(|_| async {
            entered.fetch_add(1, Ordering::SeqCst);
            health.deep_check().await
        }));
        // Every probe has asked for readiness before the first ping may answer.
        let open = async {
            while entered.load(Ordering::SeqCst) < 200 {
                tokio::task::yield_now().await;
            }
            gate.add_permits(Semaphore::MAX_PERMITS / 2);
        };
        let (reports, ()) = tokio::join!(probes, open);
        assert!(reports.iter().all(|report| report.status == "ok"));
        assert_eq!((postgres.pings(), redis.pings()), (1, 1));
    }

    #[tokio::test]
    async fn a_finished_check_answers_the_probes_of_its_interval_without_a_ping() {
        let postgres = Counting::new("postgres", None);
        let redis = Counting::new("redis", None);
        let health = health(&[&postgres, &redis]).reusing_results_for(Duration::from_secs(3600));
        assert_eq!(health.deep_check().await.status, "ok");
        redis.down.store(true, Ordering::SeqCst);
        for _ in 0..10 {
            assert_eq!(health.deep_check().await.status, "ok");
        }
        assert_eq!((postgres.pings(), redis.pings()), (1, 1));
    }

    #[tokio::test]
    async fn after_the_interval_a_new_check_sees_a_dependency_that_went_down() {
        let postgres = Counting::new("postgres", None);
        let redis = Counting::new("redis", None);
        let health = health(&[&postgres, &redis]).reusing_results_for(Duration::from_millis(20));
        assert_eq!(health.deep_check().await.status, "ok");
        redis.down.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
        let report = health.deep_check().await;
        assert_eq!(report.status, "degraded");
        assert_eq!(statuses(&report), [("postgres", "up"), ("redis", "down")]);
        assert_eq!(report.checks[1].error, Some("unavailable"));
        assert_eq!((postgres.pings(), redis.pings()), (2, 2));
    }

    #[tokio::test]
    async fn draining_shows_at_once_even_while_a_check_is_reused() {
        let postgres = Counting::new("postgres", None);
        let health = health(&[&postgres]).reusing_results_for(Duration::from_secs(3600));
        assert_eq!(health.deep_check().await.status, "ok");
        health.start_draining();
        let report = health.readiness().await;
        assert_eq!(report.status, "ok", "draining is not a dependency");
        assert!(report.draining);
        assert_eq!(statuses(&report), [("postgres", "up")]);
        assert_eq!(postgres.pings(), 1);
    }

    #[tokio::test]
    async fn without_reuse_each_probe_after_a_finished_check_pings_again() {
        let postgres = Counting::new("postgres", None);
        let health = health(&[&postgres]);
        for _ in 0..3 {
            assert_eq!(health.deep_check().await.status, "ok");
        }
        assert_eq!(postgres.pings(), 3);
    }

    #[tokio::test]
    async fn a_check_whose_probes_went_away_is_finished_by_the_next_probe() {
        let gate = Arc::new(Semaphore::new(0));
        let postgres = Counting::new("postgres", Some(gate.clone()));
        let health = health(&[&postgres]);
        // The first probe starts the check, then its caller hangs up.
        assert!(health.deep_check().now_or_never().is_none());
        gate.add_permits(1);
        let report = health.deep_check().await;
        assert_eq!(statuses(&report), [("postgres", "up")]);
        assert_eq!(postgres.pings(), 1);
    }

    #[tokio::test]
    async fn a_check_abandoned_for_longer_than_the_timeout_is_not_resumed() {
        let gate = Arc::new(Semaphore::new(0));
        let postgres = Counting::new("postgres", Some(gate.clone()));
        let health = Health::new(
            vec![postgres.clone() as Arc<dyn HealthCheck>],
            Duration::from_millis(20),
        );
        assert!(health.deep_check().now_or_never().is_none());
        tokio::time::sleep(Duration::from_millis(40)).await;
        gate.add_permits(1);
        let report = health.deep_check().await;
        assert_eq!(statuses(&report), [("postgres", "up")]);
        assert_eq!(postgres.pings(), 2);
    }
}
