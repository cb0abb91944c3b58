//! Traces as a tracing backend receives them: real requests through the application `strata serve`
//! runs, their spans captured by an in-memory exporter behind the subscriber layers the binary
//! installs, and read back by OpenTelemetry's conventions (span names, `http.*` and `db.*`
//! attributes, status, the service's resource, and W3C trace context with its `tracestate`).
//!
//! A binary of its own: the subscriber is process-wide, and the API tests install a different one.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

#[path = "server/api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::sync::OnceLock;
use std::time::Duration;

use helpers::{TestApp, settings};
use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::{Key, Value as OtelValue};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use reqwest::StatusCode;
use serde_json::{Value, json};
use strata_server::LogFormat;
use strata_server::telemetry::{self, Service, TelemetryGuard};
use tokio::sync::watch;

const CALLER_SPAN: &str = "00f067aa0ba902b7";
const TRACESTATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
/// Set in the child process of [`each_subcommand_exports_as_a_service_of_its_own`].
const RERUN: &str = "STRATA_TEST_SERVICE_NAME_RERUN";

/// The process's exporter, installed (once) behind the same layers as `strata serve`'s.
fn exporter() -> &'static InMemorySpanExporter {
    static INSTALLED: OnceLock<(InMemorySpanExporter, TelemetryGuard)> = OnceLock::new();
    &INSTALLED
        .get_or_init(|| {
            let exporter = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder()
                .with_simple_exporter(exporter.clone())
                .with_resource(telemetry::resource(Service::Api))
                .build();
            let guard = telemetry::install("warn", LogFormat::Json, std::io::sink, Some(provider));
            (exporter, guard)
        })
        .0
}

/// A trace id no other test uses, as a `traceparent` names it.
fn new_trace_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn attribute(span: &SpanData, key: &str) -> Option<OtelValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key == Key::new(key.to_owned()))
        .map(|kv| kv.value.clone())
}

fn text(span: &SpanData, key: &str) -> Option<String> {
    attribute(span, key).map(|value| value.as_str().into_owned())
}

fn describe(spans: &[SpanData]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "{} [{:?}] trace {} span {} parent {} {:?}",
                s.name,
                s.span_kind,
                s.span_context.trace_id(),
                s.span_context.span_id(),
                s.parent_span_id,
                s.attributes
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits (up to 10 s) for an exported span matching `wanted`; the request's span ends as its
/// response leaves, so it may be exported a moment after the client has the answer.
async fn exported(wanted: impl Fn(&SpanData) -> bool) -> SpanData {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let spans = exporter().get_finished_spans().unwrap();
        if let Some(span) = spans.iter().find(|span| wanted(span)) {
            return span.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no such span among:\n{}",
            describe(&spans)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The exported children of `parent`.
fn children(parent: &SpanData) -> Vec<SpanData> {
    exporter()
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|span| {
            span.parent_span_id == parent.span_context.span_id()
                && span.span_context.trace_id() == parent.span_context.trace_id()
        })
        .collect()
}

#[tokio::test]
async fn a_request_span_is_named_by_its_route_and_continues_the_callers_trace_and_state() {
    exporter();
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let product = app.create_product(&admin, "TRACE-1", 1250, 3).await;
    let id = product["id"].as_str().unwrap();
    let trace_id = new_trace_id();

    let response = app
        .client
        .get(app.url(&format!("/v1/products/{id}")))
        .header("traceparent", format!("00-{trace_id}-{CALLER_SPAN}-01"))
        .header("tracestate", TRACESTATE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let request = exported(|span| {
        span.span_context.trace_id().to_string() == trace_id && span.span_kind == SpanKind::Server
    })
    .await;
    assert_eq!(request.name, "GET /v1/products/{id}");
    assert_eq!(
        text(&request, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(
        text(&request, "http.route").as_deref(),
        Some("/v1/products/{id}")
    );
    assert_eq!(
        attribute(&request, "http.response.status_code"),
        Some(OtelValue::I64(200))
    );
    assert_eq!(
        text(&request, "url.path"),
        Some(format!("/v1/products/{id}"))
    );
    assert_eq!(text(&request, "url.scheme").as_deref(), Some("http"));
    assert_eq!(
        text(&request, "client.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(attribute(&request, "error.type"), None);
    assert_eq!(request.status, Status::Unset);
    // A child of the caller's span, its trace state carried on.
    assert_eq!(
        request.parent_span_id,
        SpanId::from_hex(CALLER_SPAN).unwrap()
    );
    assert!(request.parent_span_is_remote);
    assert_eq!(request.span_context.trace_state().header(), TRACESTATE);

    // What the request asked of the stores: client spans named after their operation.
    let clients: Vec<SpanData> = children(&request)
        .into_iter()
        .filter(|span| span.span_kind == SpanKind::Client)
        .collect();
    let all = describe(&clients);
    let cache_read = clients
        .iter()
        .find(|span| text(span, "db.system.name").as_deref() == Some("redis"))
        .unwrap_or_else(|| panic!("no Redis span under the request:\n{all}"));
    assert_eq!(
        text(cache_read, "db.operation.name").as_deref(),
        Some(cache_read.name.as_ref()),
        "{all}"
    );
    assert!(
        ["GET", "MGET", "EVALSHA"].contains(&cache_read.name.as_ref()),
        "{all}"
    );
    for span in &clients {
        assert_eq!(
            span.span_context.trace_state().header(),
            TRACESTATE,
            "{all}"
        );
    }
}

#[tokio::test]
async fn a_write_shows_its_statements_as_postgresql_client_spans() {
    exporter();
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    app.create_product(&admin, "TRACE-2", 990, 1).await;

    let create = exported(|span| span.name == "POST /v1/products").await;
    assert_eq!(
        attribute(&create, "http.response.status_code"),
        Some(OtelValue::I64(201))
    );
    let statements: Vec<SpanData> = children(&create)
        .into_iter()
        .filter(|span| text(span, "db.system.name").as_deref() == Some("postgresql"))
        .collect();
    let all = describe(&statements);
    let insert = statements
        .iter()
        .find(|span| span.name == "INSERT")
        .unwrap_or_else(|| panic!("no INSERT span under the request:\n{all}"));
    assert_eq!(insert.span_kind, SpanKind::Client);
    assert_eq!(text(insert, "db.operation.name").as_deref(), Some("INSERT"));
    // The server the test database lives on (directly or through a pooler): named, not fixed.
    let address = text(insert, "server.address").unwrap_or_default();
    assert!(!address.is_empty(), "{all}");
    assert!(
        matches!(
            attribute(insert, "server.port"),
            Some(OtelValue::I64(1..=65535))
        ),
        "{all}"
    );
}

#[tokio::test]
async fn an_unmatched_path_is_named_by_its_method_alone_and_a_malformed_traceparent_starts_a_trace()
{
    exporter();
    let app = TestApp::spawn().await;
    let request_id = format!("unmatched-{}", new_trace_id());

    let response = app
        .client
        .get(app.url("/no/such/thing"))
        .header("x-request-id", &request_id)
        .header("traceparent", "00-not-a-trace-01")
        .header("tracestate", TRACESTATE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let request =
        exported(|span| text(span, "request_id").as_deref() == Some(request_id.as_str())).await;
    assert_eq!(request.name, "GET");
    assert_eq!(attribute(&request, "http.route"), None);
    assert_eq!(
        attribute(&request, "http.response.status_code"),
        Some(OtelValue::I64(404))
    );
    // A client error is not the server's failure.
    assert_eq!(request.status, Status::Unset);
    assert_eq!(attribute(&request, "error.type"), None);
    // A trace of its own, with a valid id, and nothing of the ignored caller's state.
    assert!(request.span_context.is_valid());
    assert_eq!(request.parent_span_id, SpanId::INVALID);
    assert_eq!(request.span_context.trace_state().header(), "");
    // The problem body names the trace the request ran under.
    let problem: Value = response.json().await.unwrap();
    assert_eq!(
        problem["trace_id"],
        request.span_context.trace_id().to_string(),
        "{problem}"
    );
}

#[tokio::test]
async fn a_server_error_marks_the_span_failed_with_its_status() {
    exporter();
    let app = TestApp::spawn().await;
    // The statement of an uncached read then fails: an unexpected error, answered 500.
    app.sql("ALTER TABLE products RENAME TO products_elsewhere")
        .await;
    let trace_id = new_trace_id();
    let response = app
        .client
        .get(app.url(&format!("/v1/products/{}", uuid::Uuid::new_v4())))
        .header("traceparent", format!("00-{trace_id}-{CALLER_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);

    let request = exported(|span| {
        span.span_context.trace_id().to_string() == trace_id && span.span_kind == SpanKind::Server
    })
    .await;
    assert_eq!(request.name, "GET /v1/products/{id}");
    assert_eq!(
        attribute(&request, "http.response.status_code"),
        Some(OtelValue::I64(500))
    );
    assert_eq!(text(&request, "error.type").as_deref(), Some("500"));
    assert!(
        matches!(request.status, Status::Error { .. }),
        "{:?}",
        request.status
    );
}

#[tokio::test]
async fn a_queued_job_runs_in_the_trace_of_the_request_that_queued_it() {
    exporter();
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let trace_id = new_trace_id();

    let response = app
        .client
        .post(app.url("/v1/admin/reports"))
        .bearer_auth(&admin)
        .header("traceparent", format!("00-{trace_id}-{CALLER_SPAN}-01"))
        .header("tracestate", TRACESTATE)
        .json(
            &json!({"kind": "sales", "from": "2026-10-01T00:00:00Z", "to": "2026-10-02T00:00:00Z"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let request = exported(|span| {
        span.span_context.trace_id().to_string() == trace_id && span.span_kind == SpanKind::Server
    })
    .await;

    let worker_settings = settings(
        "postgres://unused@127.0.0.1/unused",
        &[("worker_consumer", json!("traces"))],
    );
    let worker = app.components.worker(&worker_settings);
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn(async move { worker.run(stopped).await });
    let job = exported(|span| {
        span.span_context.trace_id().to_string() == trace_id && span.span_kind == SpanKind::Consumer
    })
    .await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the worker stops")
        .unwrap();

    assert_eq!(job.name, "process reports.sales");
    assert_eq!(job.parent_span_id, request.span_context.span_id());
    assert_eq!(job.span_context.trace_state().header(), TRACESTATE);
    assert_eq!(
        text(&job, "messaging.operation.type").as_deref(),
        Some("process")
    );
}

#[test]
fn each_subcommand_exports_as_a_service_of_its_own() {
    let name = |service| {
        telemetry::resource(service)
            .get(&Key::new("service.name"))
            .map(|name| name.as_str().into_owned())
    };
    if std::env::var_os(RERUN).is_some() {
        // The re-run below: the operator's name wins over the subcommand's.
        assert_eq!(name(Service::Worker).as_deref(), Some("billing-east"));
        return;
    }
    assert_eq!(name(Service::Api).as_deref(), Some("strata-api"));
    assert_eq!(name(Service::Worker).as_deref(), Some("strata-worker"));
    assert_eq!(name(Service::Migrate).as_deref(), Some("strata-migrate"));
    assert_eq!(name(Service::Admin).as_deref(), Some("strata-admin"));
    let version = telemetry::resource(Service::Api)
        .get(&Key::new("service.version"))
        .map(|version| version.as_str().into_owned());
    assert_eq!(version.as_deref(), Some(env!("CARGO_PKG_VERSION")));

    // The variable is read from the process environment, which a test may not change for
    // itself: this test runs again, alone, in a child process that has it set.
    let rerun = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "each_subcommand_exports_as_a_service_of_its_own"])
        .env(telemetry::SERVICE_NAME_VARIABLE, "billing-east")
        .env(RERUN, "1")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&rerun.stdout);
    assert!(
        rerun.status.success() && report.contains("1 passed"),
        "the re-run with OTEL_SERVICE_NAME failed: {report}"
    );
}
