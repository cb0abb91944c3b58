//! PostgreSQL killed (and frozen) under a running application (SPEC §4 "PostgreSQL down"):
//! requests that need it answer 503 within the pool's acquire timeout and never hang, the deep
//! check answers 503 naming it while readiness stays 200 (reporting it in the body), and
//! everything succeeds again once it returns on the same port, without restarting the application.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::app::{App, Call, Logs, Timed, Traffic, settings, summarise};
use crate::servers::PrivatePostgres;

/// `db_acquire_timeout_ms` and `db_query_timeout_ms` in these tests are 1000 (a connection that
/// stopped answering is noticed by the query's timeout: no round trip checks it at checkout); a
/// request that needs PostgreSQL must be answered within this.
const WITHIN_ACQUIRE: Duration = Duration::from_millis(2500);
/// Recovery after PostgreSQL returns (its crash recovery included).
const RECOVERY: Duration = Duration::from_secs(15);

/// An application on a private PostgreSQL (and the shared Redis under a random prefix), with an
/// admin, a customer token, a product never read (so not cached) and one order.
struct Scenario {
    postgres: PrivatePostgres,
    app: App,
    customer: String,
    product: String,
}

impl Scenario {
    async fn start(overrides: &[(&str, Value)]) -> Self {
        let postgres = PrivatePostgres::start().await;
        let app = App::spawn(&settings(
            &postgres.url(),
            &strata_redis::testing::server_url(),
            overrides,
        ));
        let admin = app.admin_token().await;
        let customer = app.register("ada@example.com").await;
        let product = app.create_product(&admin, "PG-1").await;
        let order = place_order(&app, &customer, &product).await;
        assert_eq!(order.status(), StatusCode::CREATED, "{order:?}");
        let orders = app.get("/v1/orders", Some(&customer)).await;
        assert_eq!(orders.status(), StatusCode::OK, "{orders:?}");
        let (ready, _) = app.readiness().await;
        assert_eq!(ready.status(), StatusCode::OK, "{ready:?}");
        Self {
            postgres,
            app,
            customer,
            product,
        }
    }

    fn product_path(&self) -> String {
        format!("/v1/products/{}", self.product)
    }

    /// The three requests that need PostgreSQL: an uncached product, a login, the order list.
    async fn needing_postgres(&self) -> [Timed; 3] {
        [
            self.app.get(&self.product_path(), None).await,
            self.app.login("ada@example.com").await,
            self.app.get("/v1/orders", Some(&self.customer)).await,
        ]
    }
}

async fn place_order(app: &App, token: &str, product: &str) -> Timed {
    app.post(
        "/v1/orders",
        Some(token),
        json!({"items": [{"product_id": product, "quantity": 1}]}),
    )
    .await
}

/// Asserts that the deep check is 503 `degraded` with postgres down and redis up, and that
/// readiness stays 200 with the same report in its body: every replica shares this PostgreSQL, so
/// failing readiness would only empty the load balancer (docs/decisions/0022).
async fn assert_postgres_reported_down(app: &App) {
    let expected = [
        ("postgres".to_owned(), "down".to_owned()),
        ("redis".to_owned(), "up".to_owned()),
    ];
    let (deep, checks) = app.deep_check().await;
    deep.assert_within(WITHIN_ACQUIRE);
    assert_eq!(deep.status(), StatusCode::SERVICE_UNAVAILABLE, "{deep:?}");
    assert_eq!(deep.body["status"], "degraded", "{deep:?}");
    assert_eq!(checks, expected, "{deep:?}");

    let (ready, checks) = app.readiness().await;
    ready.assert_within(WITHIN_ACQUIRE);
    assert_eq!(ready.status(), StatusCode::OK, "{ready:?}");
    assert_eq!(ready.body["status"], "degraded", "{ready:?}");
    assert_eq!(checks, expected, "{ready:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_need_postgres_get_503_within_the_acquire_timeout_and_the_health_checks_name_it()
 {
    let mut s = Scenario::start(&[]).await;
    s.postgres.kill();
    // Twice: the first round meets the pool's broken connections, the second a refused connect.
    for round in 0..2 {
        for timed in s.needing_postgres().await {
            eprintln!(
                "round {round}: {} -> {:?} in {:?}",
                timed.label, timed.status, timed.elapsed
            );
            timed.assert_unavailable();
            timed.assert_within(WITHIN_ACQUIRE);
        }
    }
    assert_postgres_reported_down(&s.app).await;
    let live = s.app.get("/health/live", None).await;
    assert_eq!(live.status(), StatusCode::OK, "{live:?}");
}

// A request whose query is running at the instant of the kill must answer 503 as well;
// `a_request_caught_mid_query_by_the_crash_gets_503_not_500` makes that case deterministic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_hangs_when_postgres_is_killed_mid_traffic() {
    let logs = Logs::capture("warn");
    let mut s = Scenario::start(&[]).await;
    let calls = [
        Call::get(&s.product_path(), None),
        Call::get("/v1/orders", Some(&s.customer)),
        Call::post(
            "/v1/auth/login",
            json!({"email": "ada@example.com", "password": crate::app::PASSWORD}),
        ),
        Call::get("/v1/products?limit=5", None),
        Call::get("/health/ready", None),
    ];
    let traffic = Traffic::start(&s.app, 4, &calls);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let killed_at = traffic.started.elapsed();
    s.postgres.kill();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let requests = traffic.finish().await;
    eprintln!(
        "PostgreSQL killed at {killed_at:?}; traffic:\n{}",
        summarise(&requests)
    );

    let during = requests.iter().filter(|(at, _)| *at >= killed_at).count();
    assert!(during >= 10, "too little traffic during the outage");
    let mut wrong = Vec::new();
    for (at, timed) in &requests {
        assert!(
            timed.status.is_some(),
            "a request got no answer (sent at {at:?}): {timed:?}"
        );
        timed.assert_within(WITHIN_ACQUIRE);
        // Before the kill everything succeeds; from the kill on, what needs PostgreSQL is 503
        // (a request caught mid-query included), what does not (a cached product) may be 200.
        let status = timed.status();
        let fine = status.is_success()
            || (*at + timed.elapsed >= killed_at && status == StatusCode::SERVICE_UNAVAILABLE);
        if !fine {
            wrong.push(format!("sent at {at:?}: {timed:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "only successes and 503s are acceptable around a PostgreSQL crash:\n{}\nerrors logged:\n{}",
        wrong.join("\n"),
        logs.errors().join("\n")
    );
}

// diesel-async reports a connection lost mid-query as
// `DatabaseError(UnableToSendCommand, "connection closed")`: a dependency failure (503), not a bug.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_caught_mid_query_by_the_crash_gets_503_not_500() {
    use diesel_async::RunQueryDsl;
    let logs = Logs::capture("warn");
    let mut s = Scenario::start(&[]).await;

    // Hold a lock that GET /v1/orders waits for, so that its query is surely running at the kill.
    let mut locker = s.postgres.session().await;
    diesel::sql_query("BEGIN")
        .execute(&mut locker)
        .await
        .expect("BEGIN");
    diesel::sql_query("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .expect("LOCK");
    let blocked = {
        let client = crate::app::client();
        let url = s.app.url("/v1/orders");
        let token = s.customer.clone();
        tokio::spawn(async move {
            crate::app::send(&client, reqwest::Method::GET, &url, Some(&token), None).await
        })
    };
    let mut watcher = s.postgres.session().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting = diesel::sql_query(
            "SELECT count(*) AS n FROM pg_locks WHERE NOT granted AND relation = 'orders'::regclass",
        )
        .get_result::<Count>(&mut watcher)
        .await
        .expect("pg_locks");
        if waiting.n > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "GET /v1/orders never waited on the lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(watcher);

    s.postgres.kill();
    drop(locker);
    let answer = tokio::time::timeout(Duration::from_secs(10), blocked)
        .await
        .expect("an answer in time")
        .expect("request task");
    eprintln!("caught mid-query: {answer:?}");
    answer.assert_within(WITHIN_ACQUIRE);
    assert!(
        answer.status == Some(StatusCode::SERVICE_UNAVAILABLE),
        "a query cut short by the crash must be 503, got {:?}: {answer:?}\nerrors logged:\n{}",
        answer.status,
        logs.errors().join("\n")
    );
    answer.assert_unavailable();
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_recovers_when_postgres_restarts_on_the_same_port() {
    let mut s = Scenario::start(&[]).await;
    let url = s.postgres.url();
    s.postgres.kill();
    for timed in s.needing_postgres().await {
        timed.assert_unavailable();
    }
    assert_postgres_reported_down(&s.app).await;

    s.postgres.restart().await;
    assert_eq!(s.postgres.url(), url, "same port");
    let took = s
        .app
        .eventually(RECOVERY, "login 200 after PostgreSQL returned", || async {
            s.app.login("ada@example.com").await.status == Some(StatusCode::OK)
        })
        .await;
    eprintln!("login succeeded {took:?} after PostgreSQL accepted connections again");

    for timed in s.needing_postgres().await {
        assert_eq!(timed.status(), StatusCode::OK, "{timed:?}");
    }
    let orders = s.app.get("/v1/orders", Some(&s.customer)).await;
    assert_eq!(
        orders.body["items"].as_array().map(Vec::len),
        Some(1),
        "the order placed before the crash survived it: {orders:?}"
    );
    let order = place_order(&s.app, &s.customer, &s.product).await;
    assert_eq!(order.status(), StatusCode::CREATED, "{order:?}");
    let (deep, checks) = s.app.deep_check().await;
    assert_eq!(deep.status(), StatusCode::OK, "{deep:?} {checks:?}");
    let (ready, _) = s.app.readiness().await;
    assert_eq!(ready.body["status"], "ok", "{ready:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_postgres_costs_each_request_at_most_about_the_acquire_timeout() {
    // SIGSTOP: the kernel still accepts connections, but neither a new session nor a query on a
    // pooled connection is ever answered. Only the pool's and the queries' timeouts help here.
    let mut s = Scenario::start(&[]).await;
    s.postgres.freeze();
    let mut seen = Vec::new();
    for _ in 0..2 {
        for timed in s.needing_postgres().await {
            seen.push(format!(
                "{} -> {:?} in {:?}",
                timed.label, timed.status, timed.elapsed
            ));
            timed.assert_within(WITHIN_ACQUIRE);
            timed.assert_unavailable();
        }
    }
    eprintln!("PostgreSQL frozen:\n  {}", seen.join("\n  "));
    let (deep, _) = s.app.deep_check().await;
    deep.assert_within(WITHIN_ACQUIRE);
    assert_eq!(deep.status(), StatusCode::SERVICE_UNAVAILABLE, "{deep:?}");
    let (ready, _) = s.app.readiness().await;
    ready.assert_within(WITHIN_ACQUIRE);
    assert_eq!(ready.status(), StatusCode::OK, "{ready:?}");

    s.postgres.thaw();
    let took = s
        .app
        .eventually(RECOVERY, "login 200 after PostgreSQL thawed", || async {
            s.app.login("ada@example.com").await.status == Some(StatusCode::OK)
        })
        .await;
    eprintln!("recovered {took:?} after the thaw");
}
