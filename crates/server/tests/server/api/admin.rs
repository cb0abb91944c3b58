//! The admin dashboard and reports over HTTP, against known fixtures written in SQL (exact times,
//! totals, currencies and statuses), with a real worker generating the reports.

use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use strata_ports::JobStatus;
use strata_server::Settings;
use strata_services::Worker;
use tokio::sync::watch;

use crate::api::helpers::{TestApp, access, fields, problem, settings};

/// Products A–F: `(id, sku, currency, stock, active)`, ids ascending so that ties rank A first.
const PRODUCTS: [(&str, &str, &str, i32, bool); 6] = [
    (
        "00000000-0000-7000-8000-00000000000a",
        "SKU-A",
        "USD",
        0,
        true,
    ),
    (
        "00000000-0000-7000-8000-00000000000b",
        "SKU-B",
        "USD",
        9,
        true,
    ),
    (
        "00000000-0000-7000-8000-00000000000c",
        "SKU-C",
        "EUR",
        10,
        true,
    ),
    (
        "00000000-0000-7000-8000-00000000000d",
        "SKU-D",
        "USD",
        5,
        false,
    ),
    (
        "00000000-0000-7000-8000-00000000000e",
        "SKU-E",
        "USD",
        3,
        true,
    ),
    (
        "00000000-0000-7000-8000-00000000000f",
        "SKU-F",
        "USD",
        100,
        true,
    ),
];

fn product_id(sku: &str) -> &'static str {
    PRODUCTS
        .iter()
        .find(|p| p.1 == sku)
        .map(|p| p.0)
        .expect("a fixture product")
}

async fn insert_products(app: &TestApp) {
    for (id, sku, currency, stock, active) in PRODUCTS {
        app.sql(&format!(
            "INSERT INTO products (id, sku, name, price_minor, currency, stock, active) \
             VALUES ('{id}', '{sku}', 'Product {sku}', 100, '{currency}', {stock}, {active})"
        ))
        .await;
    }
}

/// Inserts an order of the user `email` created at the SQL expression `created_at`, with lines
/// `(sku, quantity)` at 100 minor units each.
async fn insert_order(
    app: &TestApp,
    email: &str,
    created_at: &str,
    status: &str,
    currency: &str,
    total_minor: i64,
    lines: &[(&str, i32)],
) {
    let id = uuid::Uuid::now_v7();
    app.sql(&format!(
        "INSERT INTO orders (id, user_id, status, currency, total_minor, created_at, updated_at) \
         SELECT '{id}', id, '{status}', '{currency}', {total_minor}, {created_at}, {created_at} \
         FROM users WHERE email = '{email}'"
    ))
    .await;
    for (position, (sku, quantity)) in lines.iter().enumerate() {
        app.sql(&format!(
            "INSERT INTO order_items (order_id, position, product_id, sku, name, \
               unit_price_minor, quantity, line_total_minor) \
             SELECT '{id}', {position}, id, sku, name, 100, {quantity}, 100 * {quantity} \
             FROM products WHERE sku = '{sku}'"
        ))
        .await;
    }
}

fn money(amount_minor: i64, currency: &str) -> Value {
    json!({"amount_minor": amount_minor, "currency": currency})
}

#[derive(QueryableByName)]
struct Text1 {
    #[diesel(sql_type = Text)]
    v: String,
}

/// The one text value `query` selects (as `v`).
async fn select_text(app: &TestApp, query: &str) -> String {
    let mut conn = app.components.database.connection().await.unwrap();
    diesel::sql_query(query)
        .get_result::<Text1>(&mut conn)
        .await
        .unwrap()
        .v
}

async fn dashboard(app: &TestApp, token: &str) -> Value {
    let response = app.get("/v1/admin/dashboard", token).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

// ---------------------------------------------------------------------------------------------
// dashboard

#[tokio::test]
async fn the_dashboard_is_for_admins_only() {
    let app = TestApp::spawn().await;
    let customer = access(&app.register("ada@example.com").await);
    problem(
        app.get("/v1/admin/dashboard", &customer).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    problem(
        app.get_public("/v1/admin/dashboard").await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
    )
    .await;
}

#[tokio::test]
async fn the_dashboard_reports_a_known_fixture_exactly_and_is_cached_for_its_ttl() {
    let app = TestApp::spawn_with(&[("dashboard_ttl_secs", json!(2))]).await;
    let admin = app.admin_token().await;
    app.register("buyer@example.com").await;
    insert_products(&app).await;
    // Midnight UTC today, and an instant between it and now: both always today, and past.
    let today = "date_trunc('day', now(), 'UTC')";
    let earlier_today =
        "(date_trunc('day', now(), 'UTC') + (now() - date_trunc('day', now(), 'UTC')) / 2)";
    let buyer = "buyer@example.com";
    // Today (one exactly at midnight).
    insert_order(
        &app,
        buyer,
        today,
        "placed",
        "USD",
        1_000,
        &[("SKU-A", 3), ("SKU-B", 1)],
    )
    .await;
    insert_order(
        &app,
        buyer,
        earlier_today,
        "fulfilled",
        "EUR",
        2_000,
        &[("SKU-C", 2)],
    )
    .await;
    insert_order(
        &app,
        buyer,
        earlier_today,
        "cancelled",
        "USD",
        500,
        &[("SKU-B", 10)],
    )
    .await;
    // Yesterday's last microsecond, and 00:00 six days ago: the last 7 days, not today.
    let yesterday = format!("({today} - interval '1 microsecond')");
    let six_days_ago = format!("({today} - interval '6 days')");
    insert_order(
        &app,
        buyer,
        &yesterday,
        "placed",
        "USD",
        300,
        &[("SKU-B", 2)],
    )
    .await;
    insert_order(
        &app,
        buyer,
        &six_days_ago,
        "fulfilled",
        "USD",
        700,
        &[("SKU-F", 1)],
    )
    .await;
    // The last 30 days only (00:00 29 days ago is the first instant of the window).
    let before_the_week = format!("({today} - interval '6 days' - interval '1 second')");
    let first_of_month = format!("({today} - interval '29 days')");
    insert_order(
        &app,
        buyer,
        &before_the_week,
        "placed",
        "EUR",
        400,
        &[("SKU-C", 1)],
    )
    .await;
    let lines = [("SKU-D", 1), ("SKU-E", 1)];
    insert_order(
        &app,
        buyer,
        &first_of_month,
        "fulfilled",
        "USD",
        900,
        &lines,
    )
    .await;
    // Too old.
    let too_old = format!("({today} - interval '29 days' - interval '1 second')");
    insert_order(
        &app,
        buyer,
        &too_old,
        "placed",
        "USD",
        800,
        &[("SKU-D", 50)],
    )
    .await;
    // Two active subscriptions and a cancelled one.
    for (n, plan) in ["basic-monthly", "pro-monthly", "pro-yearly"]
        .into_iter()
        .enumerate()
    {
        let token = access(&app.register(&format!("subscriber{n}@example.com")).await);
        let subscribed = app
            .post_keyed(
                "/v1/subscriptions",
                &token,
                json!({"plan_code": plan}),
                None,
            )
            .await;
        assert_eq!(subscribed.status(), StatusCode::CREATED);
        if n == 2 {
            let cancelled = app
                .post_keyed(
                    "/v1/subscriptions/me/cancel",
                    &token,
                    json!({"at_period_end": false}),
                    None,
                )
                .await;
            assert_eq!(cancelled.status(), StatusCode::OK);
        }
    }

    let first = dashboard(&app, &admin).await;
    let midnight = select_text(
        &app,
        "SELECT to_char(date_trunc('day', now(), 'UTC') AT TIME ZONE 'UTC', \
           'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS v",
    )
    .await;
    let days_before = |days: i64| {
        let at =
            chrono::DateTime::parse_from_rfc3339(&midnight).unwrap() - chrono::Duration::days(days);
        at.with_timezone(&chrono::Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    };
    assert_eq!(
        first["sales"],
        json!({
            "today": {
                "since": midnight,
                "orders": 2,
                "revenue": [money(2_000, "EUR"), money(1_000, "USD")],
            },
            "last_7_days": {
                "since": days_before(6),
                "orders": 4,
                "revenue": [money(2_000, "EUR"), money(2_000, "USD")],
            },
            "last_30_days": {
                "since": days_before(29),
                "orders": 6,
                "revenue": [money(2_400, "EUR"), money(2_900, "USD")],
            },
        })
    );
    // A, B and C sold 3 units each (ties by id), then D, E and F one each.
    let top = |sku: &str, units: u64| json!({"product_id": product_id(sku), "sku": sku, "name": format!("Product {sku}"), "units": units});
    assert_eq!(
        first["top_products"],
        json!([
            top("SKU-A", 3),
            top("SKU-B", 3),
            top("SKU-C", 3),
            top("SKU-D", 1),
            top("SKU-E", 1)
        ])
    );
    // C has exactly the threshold (not below); D is inactive.
    let low = |sku: &str, stock: u32| json!({"product_id": product_id(sku), "sku": sku, "name": format!("Product {sku}"), "stock": stock});
    assert_eq!(
        first["low_stock"],
        json!({
            "threshold": 10,
            "total": 3,
            "products": [low("SKU-A", 0), low("SKU-E", 3), low("SKU-B", 9)],
        })
    );
    assert_eq!(first["active_subscriptions"], 2);
    let generated_at = first["generated_at"].as_str().unwrap().to_owned();

    // Within the TTL: the cached dashboard, new orders or not, with its own generation time.
    insert_order(
        &app,
        buyer,
        earlier_today,
        "placed",
        "USD",
        5,
        &[("SKU-F", 1)],
    )
    .await;
    let response = app.get("/v1/admin/dashboard", &admin).await;
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let second: Value = response.json().await.unwrap();
    assert_eq!(second, first);
    let revalidated = app
        .client
        .get(app.url("/v1/admin/dashboard"))
        .bearer_auth(&admin)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);

    // Past the TTL: computed afresh, with the new order.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let third = dashboard(&app, &admin).await;
    assert!(third["generated_at"].as_str().unwrap() > generated_at.as_str());
    assert_eq!(third["sales"]["today"]["orders"], 3);
    assert_eq!(
        third["sales"]["today"]["revenue"],
        json!([money(2_000, "EUR"), money(1_005, "USD")])
    );
}

#[tokio::test]
async fn the_low_stock_threshold_is_configuration() {
    let app = TestApp::spawn_with(&[("low_stock_threshold", json!(4))]).await;
    let admin = app.admin_token().await;
    insert_products(&app).await;
    let body = dashboard(&app, &admin).await;
    assert_eq!(body["low_stock"]["threshold"], 4);
    assert_eq!(body["low_stock"]["total"], 2);
    let skus: Vec<&str> = body["low_stock"]["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sku"].as_str().unwrap())
        .collect();
    assert_eq!(skus, ["SKU-A", "SKU-E"]);
    // Nothing sold: empty windows, not missing ones.
    assert_eq!(body["sales"]["today"]["orders"], 0);
    assert_eq!(body["sales"]["last_30_days"]["revenue"], json!([]));
    assert_eq!(body["top_products"], json!([]));
}

// ---------------------------------------------------------------------------------------------
// reports

/// A worker on the app's components with fast pacing for tests.
fn worker(app: &TestApp, overrides: &[(&str, Value)]) -> Worker {
    let mut all = vec![
        ("worker_consumer", json!("reports")),
        ("worker_backoff_ms", json!(10)),
        ("worker_backoff_max_ms", json!(40)),
    ];
    all.extend(overrides.iter().cloned());
    let settings: Settings = settings("postgres://unused@127.0.0.1/unused", &all);
    app.components.worker(&settings)
}

/// Runs a worker until `stop` is sent.
fn run(worker: Worker) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn(async move { worker.run(stopped).await });
    (stop, running)
}

async fn stop(worker: (watch::Sender<bool>, tokio::task::JoinHandle<()>)) {
    worker.0.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), worker.1)
        .await
        .expect("the worker stops")
        .unwrap();
}

/// GETs the report at `location` until `done` holds for it (every 20 ms, at most 20 s).
async fn poll(app: &TestApp, admin: &str, location: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let response = app.get(location, admin).await;
        assert_eq!(response.status(), StatusCode::OK);
        let report: Value = response.json().await.unwrap();
        if done(&report) {
            return report;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the report never got there: {report}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn request_report(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.request(Method::POST, "/v1/admin/reports", Some(token), Some(body))
        .await
}

#[tokio::test]
async fn reports_are_for_admins_only_and_a_bad_request_names_every_field() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let customer = access(&app.register("ada@example.com").await);
    let body =
        json!({"kind": "sales", "from": "2026-10-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"});
    problem(
        request_report(&app, &customer, body).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;

    let invalid = problem(
        request_report(&app, &admin, json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(fields(&invalid), ["kind", "from", "to"]);
    let invalid = problem(
        request_report(
            &app,
            &admin,
            json!({"kind": "refunds", "from": "yesterday", "to": "2026-11-01T00:00:00Z"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(fields(&invalid), ["kind", "from"]);
    for (from, to, code) in [
        (
            "2026-11-01T00:00:00Z",
            "2026-11-01T00:00:00Z",
            "not_after_from",
        ),
        (
            "2026-11-01T00:00:00Z",
            "2026-10-01T00:00:00Z",
            "not_after_from",
        ),
        (
            "2025-01-01T00:00:00Z",
            "2026-01-02T00:00:00.000001Z",
            "range_too_long",
        ),
    ] {
        let invalid = problem(
            request_report(
                &app,
                &admin,
                json!({"kind": "sales", "from": from, "to": to}),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        assert_eq!(invalid["errors"][0]["field"], "to");
        assert_eq!(invalid["errors"][0]["code"], code);
    }
    let unknown = problem(
        request_report(
            &app,
            &admin,
            json!({"kind": "sales", "from": "2026-10-01T00:00:00Z", "to": "2026-11-01T00:00:00Z", "format": "pdf"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(fields(&unknown), ["format"]);
    // Exactly 366 days is accepted.
    let longest = request_report(
        &app,
        &admin,
        json!({"kind": "sales", "from": "2024-01-01T00:00:00Z", "to": "2025-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(longest.status(), StatusCode::ACCEPTED);
    let location = longest.headers()["location"].to_str().unwrap().to_owned();

    // Reading: admins only; an unknown or malformed id is 404.
    problem(
        app.get(&location, &customer).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    problem(
        app.get("/v1/admin/reports/not-a-uuid", &customer).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    for missing in [
        format!("/v1/admin/reports/{}", uuid::Uuid::now_v7()),
        "/v1/admin/reports/not-a-uuid".to_owned(),
    ] {
        problem(
            app.get(&missing, &admin).await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_report_goes_queued_running_done_with_exact_figures_and_keeps_its_trace() {
    let app = TestApp::spawn_with(&[("db_pool_size", json!(8))]).await;
    let admin = app.admin_token().await;
    app.register("buyer@example.com").await;
    insert_products(&app).await;
    let buyer = "buyer@example.com";
    let at = |rfc3339: &str| format!("'{rfc3339}'::timestamptz");
    // Before `from`, then at `from`, inside, cancelled, the last microsecond, and at `to`.
    insert_order(
        &app,
        buyer,
        &at("2026-09-30T23:59:59.999999Z"),
        "placed",
        "USD",
        111,
        &[("SKU-F", 5)],
    )
    .await;
    insert_order(
        &app,
        buyer,
        &at("2026-10-01T00:00:00Z"),
        "placed",
        "USD",
        1_000,
        &[("SKU-A", 2)],
    )
    .await;
    insert_order(
        &app,
        buyer,
        &at("2026-10-01T12:00:00Z"),
        "fulfilled",
        "EUR",
        2_000,
        &[("SKU-C", 1)],
    )
    .await;
    insert_order(
        &app,
        buyer,
        &at("2026-10-02T08:00:00Z"),
        "cancelled",
        "USD",
        500,
        &[("SKU-A", 7)],
    )
    .await;
    let lines = [("SKU-B", 4), ("SKU-A", 1)];
    insert_order(
        &app,
        buyer,
        &at("2026-10-03T23:59:59.999999Z"),
        "placed",
        "USD",
        250,
        &lines,
    )
    .await;
    insert_order(
        &app,
        buyer,
        &at("2026-10-04T00:00:00Z"),
        "placed",
        "USD",
        999,
        &[("SKU-B", 9)],
    )
    .await;

    let trace_parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = app
        .client
        .post(app.url("/v1/admin/reports"))
        .bearer_auth(&admin)
        .header("traceparent", trace_parent)
        // Any offset; stored and shown in UTC.
        .json(&json!({"kind": "sales", "from": "2026-10-01T02:00:00+02:00", "to": "2026-10-04T00:00:00Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let queued: Value = response.json().await.unwrap();
    let id = queued["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/admin/reports/{id}"));
    assert_eq!(queued["status"], "queued");
    assert_eq!(queued["kind"], "sales");
    assert_eq!(queued["from"], "2026-10-01T00:00:00.000000Z");
    assert_eq!(queued["to"], "2026-10-04T00:00:00.000000Z");
    for absent in ["started_at", "finished_at", "error", "result"] {
        assert!(queued.get(absent).is_none(), "{absent} in {queued}");
    }
    assert_eq!(
        app.get(&location, &admin)
            .await
            .json::<Value>()
            .await
            .unwrap(),
        queued
    );
    // Its job was stored with it, carrying the request's trace.
    let job_id: uuid::Uuid = select_text(
        &app,
        &format!("SELECT job_id::text AS v FROM reports WHERE id = '{id}'"),
    )
    .await
    .parse()
    .unwrap();
    let job = app
        .components
        .jobs
        .find(job_id)
        .await
        .unwrap()
        .expect("the job");
    assert_eq!(job.kind, "reports.sales");
    assert_eq!(job.trace_parent.as_deref(), Some(trace_parent));

    // Hold the orders table: the worker marks the report running, then waits on the lock.
    let mut lock = app.components.database.connection().await.unwrap();
    lock.batch_execute("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let running = run(worker(&app, &[]));
    let seen = poll(&app, &admin, &location, |r| r["status"] != "queued").await;
    assert_eq!(seen["status"], "running");
    assert!(seen["started_at"].is_string());
    assert!(seen.get("finished_at").is_none() && seen.get("result").is_none());
    lock.batch_execute("ROLLBACK").await.unwrap();
    drop(lock);

    let done = poll(&app, &admin, &location, |r| r["status"] == "done").await;
    stop(running).await;
    assert_eq!(done["started_at"], seen["started_at"]);
    let (created, started, finished) = (
        done["created_at"].as_str().unwrap(),
        done["started_at"].as_str().unwrap(),
        done["finished_at"].as_str().unwrap(),
    );
    assert!(created <= started && started < finished, "{done}");
    assert!(done.get("error").is_none());
    let units = |sku: &str, units: u64| json!({"product_id": product_id(sku), "sku": sku, "name": format!("Product {sku}"), "units": units});
    assert_eq!(
        done["result"],
        json!({
            "order_count": 3,
            "units": 8,
            "revenue": [money(2_000, "EUR"), money(1_250, "USD")],
            "days": [
                {"date": "2026-10-01", "orders": 2, "units": 3,
                 "revenue": [money(2_000, "EUR"), money(1_000, "USD")]},
                {"date": "2026-10-02", "orders": 0, "units": 0, "revenue": []},
                {"date": "2026-10-03", "orders": 1, "units": 5, "revenue": [money(250, "USD")]},
            ],
            "top_products": [units("SKU-B", 4), units("SKU-A", 3), units("SKU-C", 1)],
        })
    );
    let job = app
        .components
        .jobs
        .find(job_id)
        .await
        .unwrap()
        .expect("the job");
    assert_eq!((job.status, job.attempts), (JobStatus::Done, 1));
}

#[tokio::test]
async fn a_report_whose_generation_fails_on_its_last_attempt_ends_failed_with_a_reason() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    app.register("whale@example.com").await;
    // Two orders whose revenue together exceeds 64 bits: every attempt fails the same way.
    for _ in 0..2 {
        insert_order(
            &app,
            "whale@example.com",
            "'2026-10-01T12:00:00Z'::timestamptz",
            "placed",
            "USD",
            6_000_000_000_000_000_000,
            &[],
        )
        .await;
    }
    let response = request_report(
        &app,
        &admin,
        json!({"kind": "sales", "from": "2026-10-01T00:00:00Z", "to": "2026-10-02T00:00:00Z"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let id = location.rsplit('/').next().unwrap().to_owned();

    // One attempt allowed: its failure is the last, so the report fails at once.
    let running = run(worker(&app, &[("worker_max_attempts", json!(1))]));
    let failed = poll(&app, &admin, &location, |r| r["status"] == "failed").await;
    stop(running).await;

    let job_id = select_text(
        &app,
        &format!("SELECT job_id::text AS v FROM reports WHERE id = '{id}'"),
    )
    .await;
    assert_eq!(
        failed["error"],
        format!(
            "generation failed after 1 attempt(s): an unexpected error occurred (the worker's \
             log has it under job {job_id})"
        )
    );
    assert!(failed["started_at"].is_string() && failed["finished_at"].is_string());
    assert!(failed.get("result").is_none());
    // The cause stays with the job, for operators; the job was dead-lettered.
    let job = app
        .components
        .jobs
        .find(job_id.parse().unwrap())
        .await
        .unwrap()
        .expect("the job");
    assert_eq!((job.status, job.attempts), (JobStatus::Failed, 1));
    assert!(
        job.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("out of range"),
        "{:?}",
        job.last_error
    );
    assert_eq!(app.components.queue.dead_letters().await.unwrap(), 1);
}
