//! The process's metrics recorder (Prometheus), installed once, and the scrape-time gauges.
//!
//! The layers record through the `metrics` facade; this module installs the one global recorder
//! that collects them. A process has one global recorder, but tests build several applications in
//! one process, so [`install`] is idempotent: the first call installs, every call returns a handle
//! on the same recorder.
//!
//! What is read at scrape time — the pool gauges and the process metrics (CPU, memory, file
//! descriptors, threads, start time, read from the operating system by `metrics-process`) — is
//! refreshed by the [`exporter`] that both `strata serve` and `strata worker` serve.

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

/// Buckets (seconds) of `jobs_duration_seconds`: from a few milliseconds (a renewal pass with
/// nothing due) to the ten minutes a large report may take.
pub const JOB_DURATION_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// CPU time, user and system, in whole seconds (a counter).
pub const PROCESS_CPU_SECONDS_TOTAL: &str = "process_cpu_seconds_total";
/// Resident set size.
pub const PROCESS_RESIDENT_MEMORY_BYTES: &str = "process_resident_memory_bytes";
/// Virtual memory size.
pub const PROCESS_VIRTUAL_MEMORY_BYTES: &str = "process_virtual_memory_bytes";
/// The address-space limit (0: unlimited).
pub const PROCESS_VIRTUAL_MEMORY_MAX_BYTES: &str = "process_virtual_memory_max_bytes";
/// Open file descriptors (sockets included).
pub const PROCESS_OPEN_FDS: &str = "process_open_fds";
/// The file-descriptor limit (0: unlimited).
pub const PROCESS_MAX_FDS: &str = "process_max_fds";
/// Operating-system threads.
pub const PROCESS_THREADS: &str = "process_threads";
/// When the process started, in seconds since the Unix epoch.
pub const PROCESS_START_TIME_SECONDS: &str = "process_start_time_seconds";

/// Every process metric, as `metrics-process` names them.
pub const PROCESS_METRICS: [&str; 8] = [
    PROCESS_CPU_SECONDS_TOTAL,
    PROCESS_RESIDENT_MEMORY_BYTES,
    PROCESS_VIRTUAL_MEMORY_BYTES,
    PROCESS_VIRTUAL_MEMORY_MAX_BYTES,
    PROCESS_OPEN_FDS,
    PROCESS_MAX_FDS,
    PROCESS_THREADS,
    PROCESS_START_TIME_SECONDS,
];

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

/// The recorder's configuration (the histograms' buckets), for [`install`] and for tests that
/// record into a recorder of their own.
pub fn builder() -> anyhow::Result<PrometheusBuilder> {
    Ok(PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(REQUEST_DURATION_SECONDS.to_owned()),
            &LATENCY_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(strata_services::worker::JOBS_DURATION_SECONDS.to_owned()),
            &JOB_DURATION_BUCKETS,
        )?)
}

fn install_once() -> anyhow::Result<PrometheusHandle> {
    let handle = builder()?.install_recorder()?;
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

/// Describes every metric the process exports (the HELP lines of the scrape); whatever records a
/// new metric describes it here.
pub fn describe() {
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
        "cache_local_hits_total",
        "Cache hits answered from this process's own memory (also in cache_hits_total), by cache"
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
    describe_histogram!(
        worker::JOBS_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "Time the handler of a job attempt took, by kind and outcome (done, failed, dead_lettered)"
    );
    describe_gauge!(
        worker::JOBS_QUEUE_DEPTH,
        "Jobs waiting to run, retries in backoff included, by kind (sampled by each worker)"
    );
    describe_gauge!(
        worker::JOBS_DEAD_LETTER_DEPTH,
        "Jobs on the dead-letter stream (sampled by each worker)"
    );
    describe_gauge!(BUILD_INFO, "Always 1; the labels name the build");

    describe_counter!(
        PROCESS_CPU_SECONDS_TOTAL,
        metrics::Unit::Seconds,
        "User and system CPU time spent, in whole seconds"
    );
    describe_gauge!(
        PROCESS_RESIDENT_MEMORY_BYTES,
        metrics::Unit::Bytes,
        "Resident memory size"
    );
    describe_gauge!(
        PROCESS_VIRTUAL_MEMORY_BYTES,
        metrics::Unit::Bytes,
        "Virtual memory size"
    );
    describe_gauge!(
        PROCESS_VIRTUAL_MEMORY_MAX_BYTES,
        metrics::Unit::Bytes,
        "Address-space limit (0: unlimited)"
    );
    describe_gauge!(PROCESS_OPEN_FDS, "Open file descriptors");
    describe_gauge!(PROCESS_MAX_FDS, "File-descriptor limit (0: unlimited)");
    describe_gauge!(PROCESS_THREADS, "Operating-system threads of the process");
    describe_gauge!(
        PROCESS_START_TIME_SECONDS,
        metrics::Unit::Seconds,
        "Start time of the process, in seconds since the Unix epoch"
    );
}

/// Sets the pool gauges from `database` now.
pub fn record_pool(database: &Database) {
    let stats = database.pool_stats();
    metrics::gauge!(DB_POOL_CONNECTIONS).set(f64::from(stats.connections));
    metrics::gauge!(DB_POOL_IDLE_CONNECTIONS).set(f64::from(stats.idle_connections));
    // A count of waiting tasks; far below 2^53, so the conversion is exact.
    metrics::gauge!(DB_POOL_WAITING).set(stats.waiting as f64);
}

/// The `/metrics` body: the pool gauges refreshed from `database` and the process metrics from
/// the operating system, then everything rendered.
pub fn exporter(handle: PrometheusHandle, database: Database) -> MetricsExporter {
    // A few reads under /proc per scrape (microseconds); nothing to sample in between.
    let process = metrics_process::Collector::default();
    MetricsExporter::new(move || {
        record_pool(&database);
        process.collect();
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
    async fn the_exporter_reads_the_process_metrics_at_each_scrape_and_describes_them() {
        let handle = install().unwrap();
        let database = Database::connect_lazy(
            "postgres://nobody@127.0.0.1:9/none",
            &strata_postgres::PoolSettings::default(),
        );
        let exporter = exporter(handle, database);
        let body = exporter.render();
        let value = |body: &str, name: &str| -> f64 {
            let line = body
                .lines()
                .find(|line| line.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing from:\n{body}"));
            line.rsplit_once(' ').unwrap().1.parse().unwrap()
        };
        for name in PROCESS_METRICS {
            assert!(
                body.contains(&format!("# HELP {name} ")),
                "{name} undescribed in:\n{body}"
            );
            assert!(value(&body, name) >= 0.0, "{name}");
        }
        assert!(value(&body, PROCESS_RESIDENT_MEMORY_BYTES) > 1_000_000.0);
        assert!(value(&body, PROCESS_OPEN_FDS) >= 3.0);
        assert!(value(&body, PROCESS_THREADS) >= 1.0);
        let started = value(&body, PROCESS_START_TIME_SECONDS);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            started <= now && started > now - 3600.0,
            "started {started}"
        );

        // Read anew at each scrape: a file opened meanwhile is counted.
        let before = value(&body, PROCESS_OPEN_FDS);
        let opened: Vec<std::fs::File> = (0..16)
            .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
            .collect();
        let after = value(&exporter.render(), PROCESS_OPEN_FDS);
        drop(opened);
        assert!(
            after >= before + 16.0 - 4.0,
            "before {before}, after {after}"
        );
    }

    #[test]
    fn the_job_metrics_are_described_and_their_durations_bucketed() {
        let handle = install().unwrap();
        metrics::histogram!(
            strata_services::worker::JOBS_DURATION_SECONDS,
            "kind" => "unit.test",
            "outcome" => "done"
        )
        .record(0.2);
        metrics::gauge!(strata_services::worker::JOBS_QUEUE_DEPTH, "kind" => "unit.test").set(3.0);
        metrics::gauge!(strata_services::worker::JOBS_DEAD_LETTER_DEPTH).set(1.0);
        let body = handle.render();
        for name in [
            strata_services::worker::JOBS_DURATION_SECONDS,
            strata_services::worker::JOBS_QUEUE_DEPTH,
            strata_services::worker::JOBS_DEAD_LETTER_DEPTH,
        ] {
            assert!(
                body.contains(&format!("# HELP {name} ")),
                "{name} undescribed in:\n{body}"
            );
        }
        // A histogram with buckets (a summary would have no `_bucket` lines to aggregate).
        for (bound, count) in [("0.1", 0), ("0.25", 1), ("600", 1), ("+Inf", 1)] {
            let line = format!(
                "jobs_duration_seconds_bucket{{kind=\"unit.test\",outcome=\"done\",le=\"{bound}\"}} {count}\n"
            );
            assert!(body.contains(&line), "{line} missing from:\n{body}");
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
