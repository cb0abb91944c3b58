//! `cargo xtask up`: Strata running locally with one command.
//!
//! Starts or finds the servers, migrates, seeds the demo accounts, then runs the API and the worker
//! as children until Ctrl-C. The JWT secret is generated once and kept in `target/xtask/jwt-secret`, so that
//! tokens issued before a restart stay valid after it.

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::process::{self, Outcome, Shutdown, Signal, Supervised};
use crate::seed::{self, ADMIN_EMAIL, CUSTOMER_EMAIL, DEMO_PASSWORD};
use crate::stack::{PRIVATE_KNOB, Stack};
use crate::{database, system};

const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// `STRATA_METRICS_PORT`'s default, used when free.
const METRICS_PORT: u16 = 9464;
const MIN_SECRET_LEN: usize = 32;

/// Runs the API on `port` until a stop request, then stops everything it started.
pub async fn run(port: u16, shutdown: &Shutdown) -> anyhow::Result<()> {
    // Fail before the slow steps if the API could not listen anyway.
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).with_context(|| {
        format!("port {port} on 127.0.0.1 is taken; choose another with --port")
    })?;
    seed::refuse_production()?;
    let stack = Stack::start().await?;
    database::migrate(&stack).await?;
    seed::demo_accounts(&stack).await?;
    let secret = jwt_secret(&system::state_dir().join("jwt-secret"))?;
    let metrics_port = system::free_port(METRICS_PORT)?;

    let cargo = system::cargo();
    let mut build = Command::new(&cargo);
    build.args(["build", "-p", "strata-server", "--bin", "strata"]);
    eprintln!("xtask: cargo build -p strata-server --bin strata");
    let status = process::run(build, "cargo build", shutdown).await?;
    if !status.success() {
        bail!("building the API failed ({status})");
    }

    let strata = |subcommand: &str| {
        let mut command = Command::new(&cargo);
        command
            .args([
                "run",
                "--quiet",
                "-p",
                "strata-server",
                "--bin",
                "strata",
                "--",
                subcommand,
            ])
            .env("DATABASE_URL", stack.database_url())
            .env("REDIS_URL", stack.redis_url())
            .env("STRATA_JWT_SECRET", &secret)
            .env("STRATA_PORT", port.to_string())
            .env("STRATA_METRICS_PORT", metrics_port.to_string())
            .env("STRATA_HOST", "127.0.0.1")
            .env("STRATA_ENV", "development")
            .env_remove(PRIVATE_KNOB);
        if std::env::var_os("STRATA_SHUTDOWN_GRACE_SECS").is_none() {
            // No load balancer to drain locally; Ctrl-C should stop at once.
            command.env("STRATA_SHUTDOWN_GRACE_SECS", "0");
        }
        command
    };
    let mut api = Supervised::spawn(strata("serve"), "the API", shutdown)?;
    tokio::select! {
        ready = wait_until_ready(port) => ready?,
        outcome = api.wait() => return match outcome? {
            Outcome::Exited(status) => bail!("the API exited before it was ready ({status})"),
            Outcome::Stopped(_) => Ok(()),
        },
    }
    let mut worker = Supervised::spawn(strata("worker"), "the worker", shutdown)?;
    print_banner(port, metrics_port);
    // Either child ending on its own is an error; a stop request ends both (each `wait` forwards
    // it to its child).
    let (first, other) = tokio::select! {
        outcome = api.wait() => (("the API", outcome?), &mut worker),
        outcome = worker.wait() => (("the worker", outcome?), &mut api),
    };
    match first {
        (name, Outcome::Exited(status)) => {
            other.stop(Signal::Terminate).await;
            bail!("{name} exited ({status})")
        }
        (_, Outcome::Stopped(_)) => {
            other.wait().await?;
            eprintln!("xtask: the API and the worker have stopped");
            Ok(())
        }
    }
}

fn print_banner(port: u16, metrics_port: u16) {
    let base = format!("http://127.0.0.1:{port}");
    println!();
    println!("Strata is running.");
    println!("  API        {base}/v1");
    println!("  readiness  {base}/health/ready");
    println!("  metrics    http://127.0.0.1:{metrics_port}/metrics");
    println!("  worker     renewals every minute, jobs from Redis Streams");
    println!("  admin      {ADMIN_EMAIL} / {DEMO_PASSWORD}");
    println!("  customer   {CUSTOMER_EMAIL} / {DEMO_PASSWORD}");
    println!(
        "  try        curl -s {base}/v1/auth/login -H 'content-type: application/json' \
         -d '{{\"email\":\"{CUSTOMER_EMAIL}\",\"password\":\"{DEMO_PASSWORD}\"}}'"
    );
    println!("Press Ctrl-C to stop.");
    println!();
}

/// Polls GET /health/ready until it answers 200.
async fn wait_until_ready(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if status_of(port, "/health/ready").await == Some(200) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the API did not report ready at http://127.0.0.1:{port}/health/ready within {}s",
                READY_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The status code of a plain HTTP/1.1 GET, or `None` if nothing answered properly.
async fn status_of(port: u16, path: &str) -> Option<u16> {
    let request = async {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await.ok()?;
        let head =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await.ok()?;
        let mut status_line = [0u8; 12];
        stream.read_exact(&mut status_line).await.ok()?;
        // "HTTP/1.1 200"
        std::str::from_utf8(&status_line[9..12]).ok()?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(2), request)
        .await
        .ok()
        .flatten()
}

/// STRATA_JWT_SECRET if set, else the secret kept in `path`, created (0600) on first use.
fn jwt_secret(path: &Path) -> anyhow::Result<String> {
    if let Ok(secret) = std::env::var("STRATA_JWT_SECRET")
        && secret.len() >= MIN_SECRET_LEN
    {
        return Ok(secret);
    }
    if let Ok(secret) = std::fs::read_to_string(path) {
        let secret = secret.trim().to_owned();
        if secret.len() >= MIN_SECRET_LEN {
            return Ok(secret);
        }
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let _ = std::fs::remove_file(path);
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?
    };
    writeln!(file, "{secret}").with_context(|| format!("writing {}", path.display()))?;
    eprintln!("xtask: generated a JWT secret in {}", path.display());
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::jwt_secret;

    #[test]
    fn the_secret_is_made_once_and_kept_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("xtask-jwt-{}", std::process::id()));
        let path = dir.join("jwt-secret");
        let _ = std::fs::remove_dir_all(&dir);
        // The environment may carry a secret; then the file is never consulted.
        if std::env::var("STRATA_JWT_SECRET").is_ok_and(|s| s.len() >= 32) {
            return;
        }
        let first = jwt_secret(&path).unwrap();
        let second = jwt_secret(&path).unwrap();
        assert_eq!(first, second);
        assert!(first.len() >= 32);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
