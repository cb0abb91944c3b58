//! A private Redis server for development and tests: a `redis-server` child on 127.0.0.1 with
//! persistence off (`--save "" --appendonly no`), its pid file and log under `target/xtask/redis`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::system::{self, arg};

const PREFERRED_PORT: u16 = 56379;
const INSTALL_HINT: &str = "install Redis 7+: `sudo apt-get install redis-server` (Debian/Ubuntu), \
     `sudo dnf install redis` (Fedora), or `brew install redis` (macOS); or set REDIS_URL to a \
     server that is running";
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A `redis-server` child, stopped when dropped.
pub struct PrivateRedis {
    child: Child,
    port: u16,
}

impl PrivateRedis {
    /// Finds (or installs) `redis-server` and starts it on a free port.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = system::state_dir().join("redis");
        Self::start_in(&dir, system::free_port(PREFERRED_PORT)?, &[]).await
    }

    /// Finds (or installs) `redis-server` and starts it on `port` with `extra` arguments (cluster
    /// mode, say), its pid file, log and any other file in `dir`; first stops a server an earlier
    /// run left there.
    pub async fn start_in(dir: &Path, port: u16, extra: &[&str]) -> anyhow::Result<Self> {
        let program = find_or_install().await?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let pidfile = dir.join("redis.pid");
        let log = dir.join("redis.log");
        stop_leftover(&pidfile);
        let _ = std::fs::remove_file(&log);

        let port_arg = port.to_string();
        let mut command = Command::new(&program);
        command
            .args(["--port", &port_arg, "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args([
                "--dir",
                &arg(dir),
                "--pidfile",
                &arg(&pidfile),
                "--logfile",
                &arg(&log),
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group: a Ctrl-C at the terminal is ours to handle, not Redis's.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let mut server = Self { child, port };
        server.wait_until_ready(&log).await?;
        Ok(server)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn wait_until_ready(&mut self, log: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!(
                    "redis-server exited at start ({status}):\n{}",
                    system::tail(log, 20)
                );
            }
            if serving(self.port).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "redis-server did not answer PING within {}s:\n{}",
                    START_TIMEOUT.as_secs(),
                    system::tail(log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        // SIGTERM lets it remove its pid file; nothing is persisted either way.
        match system::terminate(&mut self.child) {
            system::Ended::Already => {}
            system::Ended::OnTerm => eprintln!(
                "xtask: redis: stopped the private server (port {})",
                self.port
            ),
            system::Ended::Killed => eprintln!(
                "xtask: redis: killed the private server (port {})",
                self.port
            ),
        }
    }
}

/// Whether the server answers PING: with PONG, or (started with `--requirepass`) by asking for the
/// password first.
async fn serving(port: u16) -> bool {
    let ping = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        while !reply.ends_with(b"\r\n") && reply.len() < 256 {
            stream.read_exact(&mut byte).await.ok()?;
            reply.push(byte[0]);
        }
        (reply.starts_with(b"+PONG") || reply.starts_with(b"-NOAUTH")).then_some(())
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(500), ping).await,
        Ok(Some(()))
    )
}

/// A server left running by a run that was killed; recognised by its pid file and its name.
pub(crate) fn stop_leftover(pidfile: &Path) {
    let Some(pid) = std::fs::read_to_string(pidfile)
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
    else {
        return;
    };
    let name = Command::new("ps")
        .args(["-p", &pid.to_string(), "-o", "comm="])
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default();
    if name.contains("redis-server") {
        eprintln!(
            "xtask: redis: stopping a private server left running by an earlier run (pid {pid})"
        );
        system::signal_process(pid, system::Signal::TERM);
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = std::fs::remove_file(pidfile);
}

/// The `redis-server` program, installing it where it can.
pub(crate) async fn server_program() -> anyhow::Result<PathBuf> {
    find_or_install().await
}

async fn find_or_install() -> anyhow::Result<PathBuf> {
    if let Some(found) = system::find_program("redis-server") {
        return Ok(found);
    }
    if !system::can_apt_install() {
        bail!("redis-server not found; {INSTALL_HINT}");
    }
    eprintln!("xtask: redis: redis-server not found; installing it with apt-get");
    system::apt_install("redis-server").await?;
    system::find_program("redis-server").with_context(|| {
        format!("apt-get installed redis-server but it is still missing; {INSTALL_HINT}")
    })
}
