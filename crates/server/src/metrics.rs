//! The process's metrics recorder (Prometheus), installed once, and the scrape-time gauges.
//!
//! The layers record through the `metrics` facade; this module installs the one global recorder
//! that collects them. A process has one global recorder, but tests build several applications in
//! one process, so [`install`] is idempotent: the first call installs, every call returns a handle
//! on the same recorder.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::anyhow;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use strata_http::middleware::REQUEST_DURATION_SECONDS;
use strata_http::state::MetricsExporter;
use strata_postgres::Database;

/// Latency buckets (seconds) of `http_request_duration_seconds`: from half a millisecond (a cache
/// hit) to the longest a request may take (10 s), dense enough for p50/p95/p99.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Connections in the database pool, idle or in use.
pub const DB_POOL_CONNECTIONS: &str = "db_pool_connections";
/// Idle connections in the database pool.
pub const DB_POOL_IDLE_CONNECTIONS: &str = "db_pool_idle_connections";
/// Callers waiting for a database connection.
pub const DB_POOL_WAITING: &str = "db_pool_waiting";
/// Always 1, labelled with the build's version (and git commit when the build names one).
pub const BUILD_INFO: &str = "strata_build_info";

/// How often histogram samples are folded in when nobody scrapes (they would pile up otherwise).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static RECORDER: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Installs the global recorder on first call; returns a handle on it at every call.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    RECORDER
        .get_or_init(|| install_once().map_err(|error| format!("{error:#}")))
        .clone()
        .map_err(|error| anyhow!("cannot install the metrics recorder: {error}"))
}

fn install_once() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(REQUEST_DURATION_SECONDS.to_owned()),
            &LATENCY_BUCKETS,
        )?
        .install_recorder()?;
    // `install_recorder` leaves upkeep to the caller; one thread per process, for its lifetime.
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            }
        })?;
    describe();
    let version = env!("CARGO_PKG_VERSION");
    // Named only when the build is given a commit:
    // `STRATA_GIT_SHA=$(git rev-parse HEAD) cargo build`.
    match option_env!("STRATA_GIT_SHA") {
        Some(sha) => metrics::gauge!(BUILD_INFO, "version" => version, "git_sha" => sha).set(1.0),
        None => metrics::gauge!(BUILD_INFO, "version" => version).set(1.0),
    }
    Ok(handle)
}

/// The HELP lines of the scrape.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    use strata_http::{edge, middleware};
    use strata_services::worker;

    describe_counter!(
        middleware::REQUESTS_TOTAL,
        "HTTP requests answered, by method, route template and status"
    );
    describe_histogram!(
        REQUEST_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "HTTP request latency, by method and route template"
    );
    describe_gauge!(
        edge::REQUESTS_IN_FLIGHT,
        "HTTP requests admitted and not yet answered"
    );
    describe_counter!(
        edge::RATE_LIMIT_REJECTIONS_TOTAL,
        "Requests refused with 429, by route group"
    );
    describe_gauge!(DB_POOL_CONNECTIONS, "Open database connections");
    describe_gauge!(DB_POOL_IDLE_CONNECTIONS, "Idle database connections");
    describe_gauge!(DB_POOL_WAITING, "Callers waiting for a database connection");
    describe_counter!(
        "cache_hits_total",
        "Cache reads answered by the cache, by cache"
    );
    describe_counter!(
        "cache_misses_total",
        "Cache reads that went to the database, by cache"
    );
    describe_counter!(worker::JOBS_PROCESSED, "Jobs done, by kind");
    describe_counter!(
        worker::JOBS_FAILED,
        "Failed job attempts that will be retried, by kind"
    );
    describe_counter!(worker::JOBS_DEAD_LETTERED, "Jobs given up on, by kind");
    describe_gauge!(BUILD_INFO, "Always 1; the labels name the build");
}

/// Sets the pool gauges from `database` now.
pub fn record_pool(database: &Database) {
    let stats = database.pool_stats();
    metrics::gauge!(DB_POOL_CONNECTIONS).set(f64::from(stats.connections));
    metrics::gauge!(DB_POOL_IDLE_CONNECTIONS).set(f64::from(stats.idle_connections));
    // A count of waiting tasks; far below 2^53, so the conversion is exact.
    metrics::gauge!(DB_POOL_WAITING).set(stats.waiting as f64);
}

/// The `/metrics` body: the pool gauges refreshed from `database`, then everything rendered.
pub fn exporter(handle: PrometheusHandle, database: Database) -> MetricsExporter {
    MetricsExporter::new(move || {
        record_pool(&database);
        handle.render()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installing_twice_shares_one_recorder_with_the_latency_buckets() {
        let first = install().unwrap();
        let second = install().unwrap();
        metrics::histogram!(REQUEST_DURATION_SECONDS, "method" => "GET", "route" => "/unit")
            .record(0.003);
        // Both handles see the one sample (other tests of this process may record meanwhile, so
        // the two renders are not compared whole).
        for rendered in [first.render(), second.render()] {
            for (bound, count) in [("0.0005", 0), ("0.0025", 0), ("0.005", 1), ("10", 1)] {
                let line = format!(
                    "http_request_duration_seconds_bucket{{method=\"GET\",route=\"/unit\",le=\"{bound}\"}} {count}\n"
                );
                assert!(rendered.contains(&line), "{line} missing from:\n{rendered}");
            }
            assert!(rendered.contains("strata_build_info{version=\""));
        }
    }

    #[tokio::test]
    async fn the_exporter_refreshes_the_pool_gauges_at_each_scrape() {
        let handle = install().unwrap();
        let database = Database::connect_lazy(
            "postgres://nobody@127.0.0.1:9/none",
            &strata_postgres::PoolSettings::default(),
        );
        let body = exporter(handle, database).render();
        for gauge in [
            DB_POOL_CONNECTIONS,
            DB_POOL_IDLE_CONNECTIONS,
            DB_POOL_WAITING,
        ] {
            assert!(
                body.lines()
                    .any(|line| line.starts_with(&format!("{gauge} "))),
                "{gauge} missing from:\n{body}"
            );
        }
    }
}
