//! The `strata` binary as operators run it: `serve` until SIGTERM, `migrate`, `admin grant`.

use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use strata_postgres::testing::TestDatabase;

use crate::helpers::JWT_SECRET;

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

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let draining = client
        .get(&ready_url)
        .send()
        .await
        .expect("still listening during the grace period");
    assert_eq!(draining.status(), StatusCode::SERVICE_UNAVAILABLE);

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

    let settings = crate::helpers::settings(database.url(), &[]);
    let components = strata_server::Components::build(&settings).expect("components");
    components
        .auth
        .register(strata_services::RegisterInput {
            email: "ops@example.com".into(),
            password: crate::helpers::PASSWORD.into(),
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
