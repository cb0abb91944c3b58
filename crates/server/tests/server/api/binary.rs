//! The `strata` binary as operators run it: `serve` and `worker` until SIGTERM, `migrate`,
//! `admin grant`.

use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use rustix::process::{Pid, Signal, kill_process};
use strata_postgres::testing::TestDatabase;

use crate::api::helpers::JWT_SECRET;

fn strata(database_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("STRATA_ENV", "test")
        .env("DATABASE_URL", database_url)
        .env("REDIS_URL", strata_redis::testing::server_url())
        .env(
            "STRATA_REDIS_PREFIX",
            format!("test:{}:", uuid::Uuid::new_v4().simple()),
        )
        .env("STRATA_JWT_SECRET", JWT_SECRET)
        .env("STRATA_ARGON2_MEMORY_KIB", "1024")
        .env("STRATA_ARGON2_ITERATIONS", "1")
        .env("STRATA_RATE_LIMIT_ENABLED", "false")
        // Beside other tests' servers: not the fixed default.
        .env("STRATA_METRICS_PORT", "0")
        .env("STRATA_LOG", "warn");
    command
}

fn run(command: &mut Command) -> Output {
    command.output().expect("strata runs")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn wait_ready(client: &reqwest::Client, url: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(response) = client.get(url).send().await
            && response.status() == StatusCode::OK
        {
            return;
        }
        assert!(
            child.try_wait().expect("child status").is_none(),
            "strata serve exited early"
        );
        assert!(Instant::now() < deadline, "strata serve never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn serve_turns_unready_on_sigterm_then_exits_zero() {
    let database = TestDatabase::create().await.expect("database");
    let port = free_port();
    let mut child = strata(database.url())
        .arg("serve")
        .env("STRATA_PORT", port.to_string())
        .env("STRATA_SHUTDOWN_GRACE_SECS", "2")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawned");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let ready_url = format!("http://127.0.0.1:{port}/health/ready");
    wait_ready(&client, &ready_url, &mut child).await;
    // The container health check, run with the environment of the process it probes.
    let healthy = run(strata(database.url())
        .args(["healthcheck", "--timeout-secs", "2"])
        .env("STRATA_PORT", port.to_string()));
    assert!(healthy.status.success(), "{healthy:?}");
    assert_eq!(
        String::from_utf8_lossy(&healthy.stdout).trim(),
        format!("GET http://127.0.0.1:{port}/health/ready: 200")
    );

    kill_process(Pid::from_child(&child), Signal::TERM).expect("SIGTERM delivered");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let draining = client
        .get(&ready_url)
        .send()
        .await
        .expect("still listening during the grace period");
    assert_eq!(draining.status(), StatusCode::SERVICE_UNAVAILABLE);
    let unhealthy = run(strata(database.url())
        .args(["healthcheck", "--timeout-secs", "2"])
        .env("STRATA_PORT", port.to_string()));
    assert_eq!(unhealthy.status.code(), Some(1), "{unhealthy:?}");
    assert_eq!(
        String::from_utf8_lossy(&unhealthy.stderr).trim(),
        format!("strata: GET http://127.0.0.1:{port}/health/ready answered 503")
    );
    assert!(unhealthy.stdout.is_empty(), "{unhealthy:?}");

    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().expect("child status") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "strata serve did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn the_worker_runs_the_renewal_tick_and_exits_zero_on_sigterm() {
    let database = TestDatabase::create().await.expect("database");
    let metrics_port = free_port();
    let mut child = strata(database.url())
        .arg("worker")
        .env("STRATA_WORKER_METRICS_PORT", metrics_port.to_string())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawned");
    // The first housekeeping round fires the renewal tick: a job row appears and gets done.
    let db = database.database();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        use diesel_async::RunQueryDsl;
        let mut conn = db.connection().await.expect("connection");
        let done: Vec<Done> = diesel::sql_query(
            "SELECT count(*) AS n FROM jobs WHERE kind = 'subscriptions.renew' AND status = 'done'",
        )
        .load(&mut conn)
        .await
        .expect("query");
        if done.into_iter().next().is_some_and(|d| d.n > 0) {
            break;
        }
        assert!(
            child.try_wait().expect("child status").is_none(),
            "strata worker exited early"
        );
        assert!(Instant::now() < deadline, "no renewal job ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The worker's job metrics are scrapeable from its own port.
    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"jobs_processed_total{kind="subscriptions.renew"}"#),
        "{metrics}"
    );
    let healthy = run(strata(database.url())
        .args(["healthcheck", "--worker"])
        .env("STRATA_WORKER_METRICS_PORT", metrics_port.to_string()));
    assert!(healthy.status.success(), "{healthy:?}");
    assert_eq!(
        String::from_utf8_lossy(&healthy.stdout).trim(),
        format!("GET http://127.0.0.1:{metrics_port}/health/live: 200")
    );
    // Without the port the worker serves no probe: the check says so instead of guessing one.
    let unset = run(strata(database.url()).args(["healthcheck", "--worker"]));
    assert_eq!(unset.status.code(), Some(1), "{unset:?}");
    assert!(
        String::from_utf8_lossy(&unset.stderr).contains("STRATA_WORKER_METRICS_PORT is not set"),
        "{unset:?}"
    );
    // Its attempts timed, its backlog sampled from the start, and the process itself described.
    for expected in [
        r#"jobs_duration_seconds_bucket{kind="subscriptions.renew",outcome="done",le="+Inf"} "#,
        r#"jobs_queue_depth{kind="subscriptions.renew"} "#,
        "jobs_dead_letter_depth 0\n",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        "process_max_fds ",
        "process_threads ",
        "process_start_time_seconds ",
        "process_virtual_memory_bytes ",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from:\n{metrics}"
        );
    }

    kill_process(Pid::from_child(&child), Signal::TERM).expect("SIGTERM delivered");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().expect("child status") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "strata worker did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "exit status {status:?}");
}

#[derive(diesel::QueryableByName)]
struct Done {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[tokio::test]
async fn migrate_is_idempotent_and_admin_grant_promotes_only_existing_users() {
    let database = TestDatabase::create().await.expect("database");
    let migrated = run(strata(database.url()).arg("migrate"));
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    assert!(String::from_utf8_lossy(&migrated.stdout).contains("applied 0 migration(s)"));

    let unknown = run(strata(database.url()).args(["admin", "grant", "ghost@example.com"]));
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("ghost@example.com"));

    let settings = crate::api::helpers::settings(database.url(), &[]);
    let components = strata_server::Components::build(&settings).expect("components");
    components
        .auth
        .register(strata_services::RegisterInput {
            email: "ops@example.com".into(),
            password: crate::api::helpers::PASSWORD.into(),
            display_name: "Ops".into(),
        })
        .await
        .expect("registered");
    let granted = run(strata(database.url()).args(["admin", "grant", "OPS@example.com"]));
    assert!(
        granted.status.success(),
        "{}",
        String::from_utf8_lossy(&granted.stderr)
    );
    let user = components
        .users
        .grant_admin("ops@example.com")
        .await
        .expect("still there");
    assert!(user.is_admin());
}

#[test]
fn a_bad_configuration_value_stops_the_binary_naming_the_variable() {
    let output = run(strata("postgres://postgres@127.0.0.1:5432/x")
        .arg("migrate")
        .env("STRATA_DB_POOL_SIZE", "lots"));
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("STRATA_DB_POOL_SIZE"));
}

/// A minimal OTLP/HTTP receiver: answers every POST with 200 and keeps the bodies.
fn otlp_receiver() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let received = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            loop {
                let mut length = 0usize;
                let mut line = String::new();
                // Request line and headers.
                let mut first = true;
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if first {
                        first = false;
                        continue;
                    }
                    let trimmed = line.trim_end();
                    if trimmed.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = trimmed.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    break;
                }
                received.lock().expect("lock").push(body);
                let stream = reader.get_mut();
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
                );
            }
        }
    });
    (port, bodies)
}

#[tokio::test]
async fn a_callers_trace_is_continued_exported_over_otlp_and_echoed_in_problems() {
    let database = TestDatabase::create().await.expect("database");
    let (collector, bodies) = otlp_receiver();
    let port = free_port();
    let mut child = strata(database.url())
        .arg("serve")
        .env("STRATA_PORT", port.to_string())
        .env("STRATA_SHUTDOWN_GRACE_SECS", "0")
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{collector}"),
        )
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawned");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    wait_ready(
        &client,
        &format!("http://127.0.0.1:{port}/health/ready"),
        &mut child,
    )
    .await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = client
        .get(format!("http://127.0.0.1:{port}/v1/products/not-a-uuid"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .expect("sent");
    let problem: serde_json::Value = response.json().await.expect("problem");
    assert_eq!(problem["trace_id"], trace_id, "{problem}");

    // The request's span arrives at the collector under the caller's trace id.
    let raw_trace_id: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let arrived = bodies.lock().expect("lock").iter().any(|body| {
            body.windows(16)
                .any(|window| window == raw_trace_id.as_slice())
        });
        if arrived {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no span with the caller's trace id reached the collector"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = kill_process(Pid::from_child(&child), Signal::TERM);
    let _ = child.wait();
}
