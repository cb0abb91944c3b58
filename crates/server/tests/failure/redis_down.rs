//! Redis killed (and frozen) under a running application (SPEC §4 "Redis down"): reads come from
//! PostgreSQL, readiness stays 200 and names Redis in its body, the deep check answers 503 naming
//! it, revocation checks follow the policy, nothing hangs, and all of it heals when Redis returns
//! on the same port, without restarting the application.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use strata_postgres::testing::TestDatabase;

use crate::app::{App, Call, Traffic, settings, summarise};
use crate::servers::PrivateRedis;

/// No request may take longer than this during the outage.
const NO_HANG: Duration = Duration::from_secs(3);
/// A cache-bypassed read must stay well under this (Redis timeout 200 ms).
const FAST_READ: Duration = Duration::from_secs(2);
/// Recovery after Redis returns.
const RECOVERY: Duration = Duration::from_secs(10);

/// An application on a private Redis and a fresh database (on the shared PostgreSQL, which stays
/// up), with an admin, a customer token and a product already in the cache.
struct Scenario {
    redis: PrivateRedis,
    app: App,
    customer: String,
    product: String,
    /// A product never read, so never cached.
    uncached: String,
    _database: TestDatabase,
}

impl Scenario {
    async fn start(overrides: &[(&str, Value)]) -> Self {
        let redis = PrivateRedis::start().await;
        let database = TestDatabase::create().await.expect("test database");
        let app = App::spawn(&settings(database.url(), &redis.url(), overrides));
        let admin = app.admin_token().await;
        let customer = app.register("ada@example.com").await;
        let product = app.create_product(&admin, "CACHED-1").await;
        let uncached = app.create_product(&admin, "UNCACHED-1").await;

        let first = app.get(&format!("/v1/products/{product}"), None).await;
        assert_eq!(first.status(), StatusCode::OK, "{first:?}");
        let me = app.get("/v1/users/me", Some(&customer)).await;
        assert_eq!(me.status(), StatusCode::OK, "{me:?}");
        let keys = redis.keys("*").await;
        assert!(
            keys.contains(&product),
            "the product is cached in the private Redis before the kill: {keys}"
        );
        let (ready, _) = app.readiness().await;
        assert_eq!(ready.status(), StatusCode::OK, "{ready:?}");
        let (deep, _) = app.deep_check().await;
        assert_eq!(deep.status(), StatusCode::OK, "{deep:?}");
        Self {
            redis,
            app,
            customer,
            product,
            uncached,
            _database: database,
        }
    }

    fn product_path(&self) -> String {
        format!("/v1/products/{}", self.product)
    }
}

/// Asserts that the deep check is 503 `degraded` with postgres up and redis down, and that
/// readiness stays 200 (the instance can serve) with the same report in its body.
async fn assert_redis_reported_down(app: &App) {
    let expected = [
        ("postgres".to_owned(), "up".to_owned()),
        ("redis".to_owned(), "down".to_owned()),
    ];
    let (deep, checks) = app.deep_check().await;
    deep.assert_within(NO_HANG);
    assert_eq!(deep.status(), StatusCode::SERVICE_UNAVAILABLE, "{deep:?}");
    assert!(deep.retry_after.is_some(), "{deep:?}");
    assert_eq!(deep.body["status"], "degraded", "{deep:?}");
    assert_eq!(checks, expected, "{deep:?}");

    let (ready, checks) = app.readiness().await;
    ready.assert_within(NO_HANG);
    assert_eq!(ready.status(), StatusCode::OK, "{ready:?}");
    assert!(ready.retry_after.is_none(), "{ready:?}");
    assert_eq!(ready.body["status"], "degraded", "{ready:?}");
    assert_eq!(ready.body["draining"], false, "{ready:?}");
    assert_eq!(checks, expected, "{ready:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_product_is_served_from_postgres_quickly_while_redis_is_down() {
    let mut s = Scenario::start(&[]).await;
    let before = s.app.get(&s.product_path(), None).await;
    assert_eq!(before.status(), StatusCode::OK);

    s.redis.kill();
    let mut latencies = Vec::new();
    for _ in 0..10 {
        let during = s.app.get(&s.product_path(), None).await;
        assert_eq!(during.status(), StatusCode::OK, "{during:?}");
        assert_eq!(
            during.body, before.body,
            "the same product, from PostgreSQL"
        );
        during.assert_within(FAST_READ);
        latencies.push(during.elapsed);
    }
    eprintln!("cached product with Redis down: {latencies:?}");

    // A product never cached is read from PostgreSQL too.
    let uncached = s
        .app
        .get(&format!("/v1/products/{}", s.uncached), None)
        .await;
    assert_eq!(uncached.status(), StatusCode::OK, "{uncached:?}");
    uncached.assert_within(FAST_READ);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deep_check_reuses_a_recent_check_then_names_redis_down_once_its_interval_is_over() {
    let interval = Duration::from_secs(5);
    let mut s = Scenario::start(&[("health_cache_ms", json!(interval.as_millis()))]).await;
    // The scenario's last step was a deep check; the calls that follow within its interval are
    // answered from it, without reaching Redis.
    s.redis.kill();
    let (deep, checks) = s.app.deep_check().await;
    assert_eq!(deep.status(), StatusCode::OK, "{deep:?}");
    assert_eq!(checks[1], ("redis".to_owned(), "up".to_owned()));
    let took = s
        .app
        .eventually(
            interval + NO_HANG,
            "the deep check 503 after the interval",
            || async {
                let (deep, _) = s.app.deep_check().await;
                deep.assert_within(NO_HANG);
                deep.status == Some(StatusCode::SERVICE_UNAVAILABLE)
            },
        )
        .await;
    eprintln!("the deep check showed the outage {took:?} after the kill");
    assert_redis_reported_down(&s.app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_stays_200_and_the_deep_check_is_503_naming_redis_while_liveness_stays_200() {
    let mut s = Scenario::start(&[]).await;
    s.redis.kill();
    assert_redis_reported_down(&s.app).await;
    let live = s.app.get("/health/live", None).await;
    assert_eq!(live.status(), StatusCode::OK, "{live:?}");
    live.assert_within(NO_HANG);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_issued_before_the_outage_gets_503_with_retry_after_under_the_default_deny_policy()
{
    let mut s = Scenario::start(&[]).await;
    s.redis.kill();
    for _ in 0..3 {
        let me = s.app.get("/v1/users/me", Some(&s.customer)).await;
        me.assert_unavailable();
        me.assert_within(NO_HANG);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_issued_before_the_outage_is_served_under_the_allow_policy() {
    let mut s = Scenario::start(&[("revocation_check", json!("allow"))]).await;
    s.redis.kill();
    for _ in 0..3 {
        let me = s.app.get("/v1/users/me", Some(&s.customer)).await;
        assert_eq!(me.status(), StatusCode::OK, "{me:?}");
        assert_eq!(me.body["email"], "ada@example.com", "{me:?}");
        me.assert_within(NO_HANG);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_hangs_when_redis_is_killed_mid_traffic() {
    let mut s = Scenario::start(&[]).await;
    let calls = [
        Call::get(&s.product_path(), None),
        Call::get("/v1/users/me", Some(&s.customer)),
        Call::get("/v1/products?limit=5", None),
        Call::get("/v1/plans", None),
        Call::get("/health/ready", None),
        Call::get("/health/live", None),
        Call::get("/health", None),
    ];
    let traffic = Traffic::start(&s.app, 4, &calls);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let killed_at = traffic.started.elapsed();
    s.redis.kill();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let requests = traffic.finish().await;
    eprintln!(
        "Redis killed at {killed_at:?}; traffic:\n{}",
        summarise(&requests)
    );

    let during: Vec<_> = requests.iter().filter(|(at, _)| *at >= killed_at).collect();
    assert!(during.len() >= 20, "too little traffic during the outage");
    for (at, timed) in &requests {
        assert!(
            timed.status.is_some(),
            "a request got no answer (sent at {at:?}): {timed:?}"
        );
        timed.assert_within(NO_HANG);
        let status = timed.status();
        assert!(
            status != StatusCode::INTERNAL_SERVER_ERROR,
            "a Redis outage is not a 500 (sent at {at:?}): {timed:?}"
        );
    }
    // Once the kill is a second old, the answers are those of a Redis outage.
    for (_, timed) in during
        .iter()
        .filter(|(at, _)| *at >= killed_at + Duration::from_secs(1))
    {
        let expected = match timed.label.as_str() {
            "GET /v1/users/me" | "GET /health" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::OK,
        };
        assert_eq!(timed.status(), expected, "{timed:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_recovers_when_redis_restarts_on_the_same_port() {
    let mut s = Scenario::start(&[]).await;
    let url = s.redis.url();
    s.redis.kill();
    assert_redis_reported_down(&s.app).await;
    s.app
        .get("/v1/users/me", Some(&s.customer))
        .await
        .assert_unavailable();
    // Outage traffic, so that the connection is broken from the application's point of view.
    for _ in 0..5 {
        let product = s.app.get(&s.product_path(), None).await;
        assert_eq!(product.status(), StatusCode::OK, "{product:?}");
    }

    s.redis.restart().await;
    assert_eq!(s.redis.url(), url, "same port");
    let ready_after = s
        .app
        .eventually(
            RECOVERY,
            "the deep check 200 after Redis returned",
            || async { s.app.deep_check().await.0.status == Some(StatusCode::OK) },
        )
        .await;
    let (ready, _) = s.app.readiness().await;
    assert_eq!(ready.status(), StatusCode::OK, "{ready:?}");
    assert_eq!(ready.body["status"], "ok", "{ready:?}");
    let me_after = s
        .app
        .eventually(
            RECOVERY,
            "GET /v1/users/me 200 after Redis returned",
            || async {
                s.app.get("/v1/users/me", Some(&s.customer)).await.status == Some(StatusCode::OK)
            },
        )
        .await;
    eprintln!(
        "recovered: the deep check after {ready_after:?}, /users/me after a further {me_after:?}"
    );

    // The cache is in use again: a read repopulates the (empty) restarted Redis.
    let product = s.app.get(&s.product_path(), None).await;
    assert_eq!(product.status(), StatusCode::OK, "{product:?}");
    let keys = s.redis.keys("*").await;
    assert!(
        keys.contains(&s.product),
        "the product is cached again after the restart: {keys}"
    );
    // Writes that need Redis (a logout blacklists the token) work, and take effect.
    let logout = s
        .app
        .timed(Method::POST, "/v1/auth/logout", Some(&s.customer), None)
        .await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT, "{logout:?}");
    let revoked = s.app.get("/v1/users/me", Some(&s.customer)).await;
    assert_eq!(revoked.status(), StatusCode::UNAUTHORIZED, "{revoked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_costs_each_request_at_most_about_the_redis_timeout() {
    // SIGSTOP: connects succeed and commands are sent, but no reply ever comes. Unlike a kill,
    // only the application's own timeouts stand between a client and a hang.
    let s = Scenario::start(&[]).await;
    s.redis.freeze();
    let calls = [
        Call::get(&s.product_path(), None),
        Call::get("/v1/users/me", Some(&s.customer)),
        Call::get("/health/ready", None),
        Call::get("/health", None),
    ];
    let traffic = Traffic::start(&s.app, 3, &calls);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let requests = traffic.finish().await;
    eprintln!("Redis frozen; traffic:\n{}", summarise(&requests));
    for (_, timed) in &requests {
        timed.assert_within(NO_HANG);
        let expected = match timed.label.as_str() {
            "GET /v1/users/me" | "GET /health" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::OK,
        };
        assert_eq!(timed.status(), expected, "{timed:?}");
    }

    s.redis.thaw();
    let recovered = s
        .app
        .eventually(
            RECOVERY,
            "GET /v1/users/me 200 after Redis thawed",
            || async {
                s.app.get("/v1/users/me", Some(&s.customer)).await.status == Some(StatusCode::OK)
            },
        )
        .await;
    eprintln!("recovered {recovered:?} after the thaw");
}
