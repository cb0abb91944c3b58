//! `GET /metrics`: the Prometheus scrape, on its own port, with bounded labels.
//!
//! Under `cargo test` every test of this binary shares one process-wide recorder (nextest runs
//! each test in its own process), so counts other tests could add to are asserted with `>=` or as
//! increases between two scrapes.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::json;

use crate::api::helpers::{TestApp, problem};

/// One sample line of the text format.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

impl Sample {
    fn has(&self, key: &str, value: &str) -> bool {
        self.labels.get(key).is_some_and(|v| v == value)
    }
}

/// The sample lines of a scrape (comments skipped). Label values may hold `{`, `}` and `,`
/// (route templates do), so labels are read quote-aware.
fn parse(body: &str) -> Vec<Sample> {
    body.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a value");
            let value = value.parse().unwrap_or(f64::NAN);
            let Some((name, rest)) = series.split_once('{') else {
                return Sample {
                    name: series.to_owned(),
                    labels: BTreeMap::new(),
                    value,
                };
            };
            let mut labels = BTreeMap::new();
            let mut chars = rest.strip_suffix('}').expect("closing brace").chars();
            loop {
                let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                if key.is_empty() {
                    break;
                }
                assert_eq!(chars.next(), Some('"'), "{line}");
                let mut value = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => value.push(chars.next().expect("escaped character")),
                        '"' => break,
                        c => value.push(c),
                    }
                }
                labels.insert(key.trim_start_matches(',').to_owned(), value);
            }
            Sample {
                name: name.to_owned(),
                labels,
                value,
            }
        })
        .collect()
}

/// A scrape of the metrics listener, as Prometheus makes it.
pub(crate) async fn scrape(app: &TestApp) -> (String, Vec<Sample>) {
    let response = app
        .client
        .get(app.metrics_url("/metrics"))
        .send()
        .await
        .expect("scraped");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "text/plain; version=0.0.4");
    let body = response.text().await.expect("body");
    let samples = parse(&body);
    (body, samples)
}

/// The value of the one sample of `name` carrying every label of `labels` (0 when absent).
pub(crate) fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.has(k, v)))
        .collect();
    assert!(
        matching.len() <= 1,
        "{name} {labels:?} is several series: {matching:?}"
    );
    matching.first().map_or(0.0, |s| s.value)
}

#[test]
fn the_parser_reads_labels_holding_braces_and_commas() {
    let samples = parse(
        "# TYPE x counter\nx{method=\"GET\",route=\"/v1/products/{id}\",status=\"200\"} 3\ny 1.5\n",
    );
    assert_eq!(samples.len(), 2);
    assert_eq!(samples[0].labels["route"], "/v1/products/{id}");
    assert_eq!(samples[0].labels["status"], "200");
    assert_eq!(samples[0].value, 3.0);
    assert!(samples[1].labels.is_empty());
    assert_eq!(samples[1].value, 1.5);
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_bound_every_label() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let first = app.create_product(&admin, "MET-1", 1_000, 5).await;
    let second = app.create_product(&admin, "MET-2", 2_000, 5).await;
    let ids: Vec<String> = [&first, &second]
        .iter()
        .map(|p| p["id"].as_str().expect("id").to_owned())
        .collect();
    let (_, before) = scrape(&app).await;

    // The first read of a product misses the cache and fills it; the second hits.
    for id in &ids {
        for _ in 0..2 {
            app.get_json(&format!("/v1/products/{id}")).await;
        }
    }
    let absent = uuid::Uuid::new_v4().to_string();
    let response = app.get_public(&format!("/v1/products/{absent}")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let garbage: Vec<String> = (0..25)
        .map(|i| match i % 3 {
            0 => format!("/garbage-{i}/{}", uuid::Uuid::new_v4()),
            1 => format!("/v1/garbage-{i}"),
            _ => format!("/v1/products/{}/garbage-{i}", ids[0]),
        })
        .collect();
    for path in &garbage {
        let response = app.get_public(path).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }

    let (body, after) = scrape(&app).await;
    let requests = "http_requests_total";
    let by_id = [("method", "GET"), ("route", "/v1/products/{id}")];
    assert!(value(&after, requests, &[by_id[0], by_id[1], ("status", "200")]) >= 4.0);
    assert!(value(&after, requests, &[by_id[0], by_id[1], ("status", "404")]) >= 1.0);
    assert!(
        value(
            &after,
            requests,
            &[
                ("method", "POST"),
                ("route", "/v1/products"),
                ("status", "201")
            ]
        ) >= 2.0
    );
    // Scrapes go to the metrics listener: they are not API traffic.
    assert!(
        after.iter().all(|s| !s.has("route", "/metrics")),
        "a scrape was counted as an API request:\n{body}"
    );

    // No raw path reaches a label: neither an id nor any of the unmatched paths.
    for sample in &after {
        for (key, label) in &sample.labels {
            for id in ids.iter().chain([&absent]) {
                assert!(!label.contains(id.as_str()), "{key}={label:?} holds an id");
            }
            assert!(
                !label.contains("garbage"),
                "{key}={label:?} holds a raw path"
            );
        }
    }
    // Every unmatched path fell into one series (and one set of histogram buckets).
    let unmatched = [("method", "GET"), ("route", "unmatched"), ("status", "404")];
    assert!(value(&after, requests, &unmatched) >= garbage.len() as f64);
    let unmatched_buckets = after
        .iter()
        .filter(|s| {
            s.name == "http_request_duration_seconds_bucket"
                && s.has("method", "GET")
                && s.has("route", "unmatched")
        })
        .count();
    assert_eq!(
        unmatched_buckets, 15,
        "14 bounds and +Inf, whatever the paths"
    );

    // The latency histogram has the buckets of the spec, from 0.5 ms to 10 s.
    for bound in ["0.0005", "0.001", "0.1", "1", "10", "+Inf"] {
        let bucket = after.iter().find(|s| {
            s.name == "http_request_duration_seconds_bucket"
                && s.has("route", "/v1/products/{id}")
                && s.has("method", "GET")
                && s.has("le", bound)
        });
        assert!(bucket.is_some(), "no le={bound} bucket in:\n{body}");
    }
    assert!(
        value(
            &after,
            "http_request_duration_seconds_count",
            &[by_id[0], by_id[1]]
        ) >= 5.0
    );

    // Two products each read twice: at least two misses and two hits, in this app at least.
    let cache = [("cache", "product")];
    let hits =
        value(&after, "cache_hits_total", &cache) - value(&before, "cache_hits_total", &cache);
    let misses =
        value(&after, "cache_misses_total", &cache) - value(&before, "cache_misses_total", &cache);
    assert!(hits >= 2.0, "hits {hits}");
    assert!(misses >= 2.0, "misses {misses}");

    // The pool gauges are refreshed at every scrape; the build is named.
    for gauge in [
        "db_pool_connections",
        "db_pool_idle_connections",
        "db_pool_waiting",
        "http_requests_in_flight",
    ] {
        let found = after
            .iter()
            .find(|s| s.name == gauge && s.labels.is_empty());
        assert!(
            found.is_some_and(|s| s.value >= 0.0),
            "{gauge} missing in:\n{body}"
        );
    }
    let build = after
        .iter()
        .find(|s| s.name == "strata_build_info")
        .expect("strata_build_info");
    assert_eq!(build.labels["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(build.value, 1.0);
}

#[tokio::test]
async fn rate_limit_rejections_are_counted_by_group() {
    let app = TestApp::spawn_with(&[
        ("rate_limit_enabled", json!(true)),
        ("rate_limit_read_anonymous", json!("1/60")),
    ])
    .await;
    let (_, before) = scrape(&app).await;
    assert_eq!(app.get_public("/v1/plans").await.status(), StatusCode::OK);
    assert_eq!(
        app.get_public("/v1/plans").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let (_, after) = scrape(&app).await;
    let read = [("group", "read")];
    let rejections = value(&after, "rate_limit_rejections_total", &read)
        - value(&before, "rate_limit_rejections_total", &read);
    assert!(rejections >= 1.0, "rejections {rejections}");
    assert!(
        value(
            &after,
            "http_requests_total",
            &[("method", "GET"), ("route", "/v1/plans"), ("status", "429")]
        ) >= 1.0
    );
}

#[tokio::test]
async fn the_metrics_port_serves_the_prometheus_text_and_nothing_else() {
    let app = TestApp::spawn().await;
    assert_ne!(app.metrics_address, app.address);
    let (body, samples) = scrape(&app).await;
    assert!(
        samples.iter().any(|s| s.name == "strata_build_info"),
        "{body}"
    );
    // The process metrics, read from the operating system at the scrape, each described.
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_virtual_memory_max_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_threads",
        "process_start_time_seconds",
    ] {
        let found = samples
            .iter()
            .find(|s| s.name == name && s.labels.is_empty());
        assert!(
            found.is_some_and(|s| s.value >= 0.0),
            "{name} missing in:\n{body}"
        );
        assert!(
            body.contains(&format!("# HELP {name} ")),
            "{name} undescribed"
        );
    }
    assert!(value(&samples, "process_resident_memory_bytes", &[]) > 1_000_000.0);
    assert!(
        value(&samples, "process_open_fds", &[]) >= 3.0,
        "a listener, at least"
    );
    assert!(
        value(&samples, "process_threads", &[]) >= 2.0,
        "the runtime's, at least"
    );
    for path in ["/", "/health/ready", "/v1/products", "/openapi.json"] {
        let response = app
            .client
            .get(app.metrics_url(path))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn the_api_port_serves_no_metrics_in_any_spelling() {
    let app = TestApp::spawn().await;
    // actix decodes unreserved characters and a proxy's path rules may not: whatever the spelling,
    // the API port has no route that renders metrics.
    for path in [
        "/metrics",
        "/metrics/",
        "/%6Detrics",
        "/%6detrics",
        "/%6D%65%74%72%69%63%73",
        "/metric%73",
        "//metrics",
        "/%2Fmetrics",
        "/metrics%2F",
        "/Metrics",
        "/METRICS",
        "/metrics?format=prometheus",
        "/metrics;jsessionid=1",
    ] {
        let response = app.get_public(path).await;
        let body = problem(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
        assert!(!body.to_string().contains("strata_build_info"), "{path}");
    }
}
