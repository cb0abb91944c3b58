//! Health, dependency failures, graceful shutdown and what reaches the logs.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use strata_server::{LogFormat, telemetry};

use crate::api::helpers::{PASSWORD, TestApp, access, problem};

#[tokio::test]
async fn liveness_readiness_and_the_deep_check_report_ok_when_everything_answers() {
    let app = TestApp::spawn().await;
    let live = app.get_public("/health/live").await;
    assert_eq!(live.status(), StatusCode::OK);
    let ready = app.get_public("/health/ready").await;
    assert_eq!(ready.status(), StatusCode::OK);
    let body: Value = ready.json().await.expect("json");
    assert_eq!(body["status"], "ok");
    let names: Vec<&str> = body["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["postgres", "redis"]);
    let deep = app.get_public("/health").await;
    assert_eq!(deep.status(), StatusCode::OK);
    let body: Value = deep.json().await.expect("json");
    assert_eq!(body["status"], "ok");
    assert_eq!(checks(&body), named(&[("postgres", "up"), ("redis", "up")]));
}

/// The status of each named check in a health body.
fn checks(body: &Value) -> Vec<(String, String)> {
    body["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_owned(),
                c["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn named(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, status)| ((*name).to_owned(), (*status).to_owned()))
        .collect()
}

#[tokio::test]
async fn with_redis_down_readiness_is_200_degraded_and_the_deep_check_503_naming_redis() {
    let app = TestApp::spawn_with(&[
        ("redis_url", json!("redis://127.0.0.1:1")),
        ("redis_timeout_ms", json!(200)),
    ])
    .await;
    // Readiness first, before any deep check: it must find Redis down on its own.
    let ready = app.get_public("/health/ready").await;
    assert_eq!(ready.status(), StatusCode::OK);
    let body: Value = ready.json().await.expect("json");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["draining"], false);
    assert_eq!(
        checks(&body),
        named(&[("postgres", "unknown"), ("redis", "down")])
    );

    let deep = app.get_public("/health").await;
    assert_eq!(deep.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(deep.headers().get("retry-after").is_some());
    let body: Value = deep.json().await.expect("json");
    assert_eq!(body["status"], "degraded");
    assert_eq!(
        checks(&body),
        named(&[("postgres", "up"), ("redis", "down")])
    );

    // Once a deep check has run, readiness reports PostgreSQL as it saw it.
    let ready: Value = app
        .get_public("/health/ready")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        checks(&ready),
        named(&[("postgres", "up"), ("redis", "down")])
    );

    // Registration needs only PostgreSQL; the revocation check needs Redis and denies by default.
    let body = app.register("ada@example.com").await;
    let me = app.get("/v1/users/me", &access(&body)).await;
    problem(me, StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE").await;
}

#[tokio::test]
async fn with_redis_down_and_revocation_checks_allowed_profiles_come_from_postgres() {
    let app = TestApp::spawn_with(&[
        ("redis_url", json!("redis://127.0.0.1:1")),
        ("redis_timeout_ms", json!(200)),
        ("revocation_check", json!("allow")),
    ])
    .await;
    let body = app.register("ada@example.com").await;
    let me = app.get("/v1/users/me", &access(&body)).await;
    assert_eq!(me.status(), StatusCode::OK);
}

#[tokio::test]
async fn with_postgres_down_requests_get_503_within_the_acquire_timeout_and_readiness_stays_200() {
    let app = TestApp::spawn_with(&[
        (
            "database_url",
            json!("postgres://postgres@127.0.0.1:1/strata"),
        ),
        ("db_acquire_timeout_ms", json!(1000)),
    ])
    .await;
    let started = Instant::now();
    let response = app
        .post(
            "/v1/auth/login",
            json!({"email": "ada@example.com", "password": PASSWORD}),
        )
        .await;
    problem(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // Every replica shares this PostgreSQL: readiness stays 200 (0022), the deep check names it.
    let deep = app.get_public("/health").await;
    assert_eq!(deep.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = deep.json().await.expect("json");
    assert_eq!(checks(&body)[0], ("postgres".to_owned(), "down".to_owned()));
    let ready = app.get_public("/health/ready").await;
    assert_eq!(ready.status(), StatusCode::OK);
    let body: Value = ready.json().await.expect("json");
    assert_eq!(body["status"], "degraded");
    assert_eq!(checks(&body)[0], ("postgres".to_owned(), "down".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_turns_readiness_503_then_drains_in_flight_requests() {
    let app = TestApp::spawn_with(&[("shutdown_grace_secs", json!(1))]).await;
    let port: u16 = app
        .address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");

    // A request whose body is only half sent is in flight across the whole shutdown sequence.
    let body = json!({"email": "nobody@example.com", "password": PASSWORD}).to_string();
    let (first_half, second_half) = body.split_at(body.len() / 2);
    let head = format!(
        "POST /v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{first_half}",
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connected");
    stream.write_all(head.as_bytes()).expect("head sent");
    tokio::time::sleep(Duration::from_millis(100)).await;

    let shutdown = app.shutdown.clone();
    let stopping = tokio::spawn(async move { shutdown.shutdown().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ready = app.get_public("/health/ready").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json::<Value>().await.expect("json")["draining"], true);

    // After the grace the listener closes; the half-sent request is still being served.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        !stopping.is_finished(),
        "the drain waits for the in-flight request"
    );
    let second_half = second_half.to_owned();
    let response = tokio::task::spawn_blocking(move || {
        stream.write_all(second_half.as_bytes())?;
        let mut response = String::new();
        std::io::Read::read_to_string(&mut stream, &mut response)?;
        Ok::<_, std::io::Error>(response)
    })
    .await
    .expect("task")
    .expect("the in-flight request gets its answer");
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");

    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("drained in time")
        .expect("task");
    let served = tokio::time::timeout(Duration::from_secs(10), app.server).await;
    assert!(
        matches!(served, Ok(Ok(Ok(())))),
        "the server exits cleanly: {served:?}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the listener is closed"
    );
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn access_logs_are_json_with_request_fields_and_never_a_secret() {
    let capture = Capture::default();
    let sink = capture.clone();
    // Debug level: whatever a developer turns on must not leak either.
    let _telemetry = telemetry::init("debug", LogFormat::Json, move || sink.clone());
    let app = TestApp::spawn_with(&[("argon2_memory_kib", json!(8192))]).await;

    let body = app.register("secretive@example.com").await;
    let token = access(&body);
    let refresh = body["refresh_token"].as_str().expect("refresh").to_owned();
    app.get("/v1/users/me", &token).await;
    app.post(
        "/v1/auth/login",
        json!({"email": "secretive@example.com", "password": "wrong-password-123"}),
    )
    .await;
    let rotated: Value = app
        .post("/v1/auth/refresh", json!({"refresh_token": refresh}))
        .await
        .json()
        .await
        .expect("json");
    app.request(
        Method::POST,
        "/v1/auth/logout",
        Some(&access(&rotated)),
        None,
    )
    .await;
    // Error paths: a revoked token, a rotated refresh token presented again (family revoked), a
    // forged token, a too-short password, a body with an unknown field next to a password.
    app.get("/v1/users/me", &token).await;
    app.post("/v1/auth/refresh", json!({"refresh_token": refresh}))
        .await;
    let forged = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJmb3JnZWQtc2VjcmV0In0.forged-signature-secret";
    app.get("/v1/users/me", forged).await;
    app.post(
        "/v1/auth/register",
        json!({"email": "x@example.com", "password": "tiny-pw", "display_name": "X"}),
    )
    .await;
    app.post(
        "/v1/auth/login",
        json!({"email": "x@example.com", "password": "unknown-field-password", "otp": 1}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let logs = String::from_utf8(capture.0.lock().expect("lock").clone()).expect("utf-8");
    assert!(
        logs.contains("TOKEN_REVOKED") || logs.contains("401"),
        "error paths were logged"
    );
    for secret in [
        PASSWORD,
        "wrong-password-123",
        "tiny-pw",
        "unknown-field-password",
        token.as_str(),
        refresh.as_str(),
        rotated["refresh_token"].as_str().unwrap_or("-"),
        forged,
        "Bearer ",
    ] {
        assert!(
            !logs.contains(secret),
            "a secret reached the logs: {}",
            &secret[..secret.len().min(12)]
        );
    }
    let access_line = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["span"]["route"] == "/v1/users/me" && line["status"] == 200)
        .expect("an access log line for GET /v1/users/me");
    assert!(access_line["span"]["request_id"].is_string());
    assert_eq!(access_line["span"]["method"], "GET");
    assert!(access_line["latency_ms"].is_number());
    assert_eq!(access_line["user_id"], body["user"]["id"]);
}
