//! `strata serve` receiving SIGTERM with slow requests in flight (SPEC §4 "SIGTERM"): readiness
//! turns 503 at once, every in-flight request completes, the listener closes after the grace, and
//! the process exits 0. Runs the binary against the shared PostgreSQL and Redis (nothing is killed
//! there), with password hashing made slow and serial so that logins queue.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use rustix::process::{Pid, Signal, kill_process};
use serde_json::json;
use strata_postgres::testing::TestDatabase;

use crate::app::{JWT_SECRET, PASSWORD, Timed, client, send};
use crate::servers::free_port;

const GRACE: Duration = Duration::from_secs(1);

/// Kills the child on drop if a failed assertion left it running.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn serve(database_url: &str, port: u16) -> Serve {
    let child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("STRATA_ENV", "test")
        .env("DATABASE_URL", database_url)
        .env("REDIS_URL", strata_redis::testing::server_url())
        .env(
            "STRATA_REDIS_PREFIX",
            format!("failure:{}:", uuid::Uuid::new_v4().simple()),
        )
        .env("STRATA_JWT_SECRET", JWT_SECRET)
        .env("STRATA_PORT", port.to_string())
        .env("STRATA_METRICS_PORT", "0")
        .env("STRATA_WORKERS", "2")
        // Slow, serial hashing: each login holds the one hashing slot for a while.
        .env("STRATA_ARGON2_MEMORY_KIB", "65536")
        .env("STRATA_ARGON2_ITERATIONS", "6")
        .env("STRATA_HASH_CONCURRENCY", "1")
        .env("STRATA_HASH_QUEUE_TIMEOUT_MS", "60000")
        .env("STRATA_SHUTDOWN_GRACE_SECS", GRACE.as_secs().to_string())
        .env("STRATA_SHUTDOWN_TIMEOUT_SECS", "60")
        // Queued logins may take a while; neither the request timeout nor the login budgets
        // are what this test is about.
        .env("STRATA_REQUEST_TIMEOUT_MS", "120000")
        // Under a loaded suite, opening 13 connections at once can take longer than the default.
        .env("STRATA_DB_ACQUIRE_TIMEOUT_MS", "20000")
        .env("STRATA_RATE_LIMIT_AUTH_IP", "1000/60")
        .env("STRATA_RATE_LIMIT_AUTH_EMAIL", "1000/60")
        .env("STRATA_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("strata serve starts");
    Serve(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_logins_refuses_new_connections_and_exits_zero() {
    let database = TestDatabase::create().await.expect("test database");
    let port = free_port();
    let mut serve = serve(database.url(), port);
    let base = format!("http://127.0.0.1:{port}");
    let probe = client();

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = send(
            &probe,
            Method::GET,
            &format!("{base}/health/ready"),
            None,
            None,
        )
        .await;
        if ready.status == Some(StatusCode::OK) {
            break;
        }
        assert!(
            serve.0.try_wait().expect("status").is_none(),
            "strata serve exited early"
        );
        assert!(Instant::now() < deadline, "never ready: {ready:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let registered = send(
        &probe,
        Method::POST,
        &format!("{base}/v1/auth/register"),
        None,
        Some(json!({"email": "slow@example.com", "password": PASSWORD, "display_name": "Slow"})),
    )
    .await;
    assert_eq!(registered.status(), StatusCode::CREATED, "{registered:?}");
    // One hash's cost, timed on a login (the hashing thread's working memory is warm by now, as
    // it is for the logins below): they are serial, so enough of them must queue to outlast the
    // grace by a margin, whatever this machine's speed (at least 4).
    let timed = send(
        &probe,
        Method::POST,
        &format!("{base}/v1/auth/login"),
        None,
        Some(json!({"email": "slow@example.com", "password": PASSWORD})),
    )
    .await;
    assert_eq!(timed.status, Some(StatusCode::OK), "{timed:?}");
    let hash = timed.elapsed;
    let logins = (GRACE.as_secs_f64() * 3.0 / hash.as_secs_f64()).ceil() as usize;
    let logins = logins.clamp(4, 32);
    eprintln!("one hash ≈ {hash:?}; sending {logins} concurrent logins");

    let started = Instant::now();
    let in_flight: Vec<_> = (0..logins)
        .map(|_| {
            let url = format!("{base}/v1/auth/login");
            tokio::spawn(async move {
                // A client each: a connection each, all accepted before the SIGTERM.
                let timed = send(
                    &client(),
                    Method::POST,
                    &url,
                    None,
                    Some(json!({"email": "slow@example.com", "password": PASSWORD})),
                )
                .await;
                (timed, started.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;

    kill_process(Pid::from_child(&serve.0), Signal::TERM).expect("SIGTERM delivered");
    let sigterm_at = started.elapsed();

    // Readiness turns 503 at once (the listener is still open during the grace).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let draining = send(
        &client(),
        Method::GET,
        &format!("{base}/health/ready"),
        None,
        None,
    )
    .await;
    assert_eq!(
        draining.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "readiness right after SIGTERM: {draining:?}"
    );
    assert_eq!(draining.body["draining"], true, "{draining:?}");
    assert!(
        draining.elapsed < Duration::from_millis(500),
        "readiness answered at once: {draining:?}"
    );

    // After the grace, new connections are refused while the queued logins are still being served.
    let after_grace = sigterm_at + GRACE + Duration::from_millis(500);
    tokio::time::sleep(after_grace.saturating_sub(started.elapsed())).await;
    let still_running = serve.0.try_wait().expect("status").is_none();
    let unfinished = in_flight.iter().filter(|task| !task.is_finished()).count();
    let connect = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_secs(2),
    );
    eprintln!(
        "at {:?} after SIGTERM: process running {still_running}, {unfinished} logins in flight, new connection: {connect:?}",
        started.elapsed() - sigterm_at
    );
    assert!(
        still_running && unfinished > 0,
        "the test needs logins in flight past the grace (make hashing slower)"
    );
    match connect {
        Err(error) => assert_eq!(
            error.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{error}"
        ),
        Ok(stream) => {
            drop(stream);
            let late = send(
                &client(),
                Method::GET,
                &format!("{base}/health/live"),
                None,
                None,
            )
            .await;
            panic!(
                "a new connection was accepted {:?} after SIGTERM (grace {GRACE:?}); a request on it got {late:?}",
                started.elapsed() - sigterm_at
            );
        }
    }

    // Every in-flight login completes with tokens.
    let mut outcomes: Vec<(Timed, Duration)> = Vec::new();
    for task in in_flight {
        outcomes.push(task.await.expect("login task"));
    }
    for (timed, finished_at) in &outcomes {
        eprintln!(
            "login: {:?} after {:?}, finished {:?} after SIGTERM",
            timed.status,
            timed.elapsed,
            finished_at.saturating_sub(sigterm_at)
        );
    }
    for (timed, _) in &outcomes {
        assert_eq!(timed.status(), StatusCode::OK, "{timed:?}");
        assert!(timed.body["access_token"].is_string(), "{timed:?}");
    }
    assert!(
        outcomes
            .iter()
            .any(|(_, finished_at)| *finished_at > sigterm_at + GRACE),
        "at least one login was drained after the listener closed"
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = serve.0.try_wait().expect("status") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "strata serve did not exit after draining"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "exited {status:?} {:?} after SIGTERM",
        started.elapsed() - sigterm_at
    );
    assert!(status.success(), "exit status {status:?}");
}
