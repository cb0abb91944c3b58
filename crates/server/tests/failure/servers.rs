//! Private Redis and PostgreSQL servers that a test starts, kills, freezes and restarts on the
//! same port, so that an application wired to them sees a real outage and a real recovery.
//!
//! Each server lives in a directory of its own under the system temp dir, removed on drop, and
//! runs in a process group of its own, so that a Ctrl-C at the terminal does not reach it.
//! PostgreSQL's children (backends, checkpointer, ...) each call `setsid()`, so a signal to the
//! postmaster's group misses them: they are found through `/proc` as the postmaster's children,
//! and killed (or frozen) with it.
//!
//! PostgreSQL refuses to run as root: as root, `initdb` and `postgres` run as the `postgres`
//! system user through `setpriv`, which execs in place, so the child's pid is the postmaster's
//! (under `runuser` or `su` it would be a wrapper's, and a kill would miss the server).

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rustix::process::{Pid, Signal, kill_process};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a server gets to start (or to restart after a crash) on a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a killed server gets to disappear (every process of it).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// The PostgreSQL system user the server runs as when the tests run as root.
const POSTGRES_USER: &str = "postgres";
/// The database the application uses on the private PostgreSQL.
const DATABASE: &str = "strata";

/// A directory of its own under the system temp dir, removed (with its contents) on drop.
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `<temp>/strata-failure-<what>-<uuid>`.
    pub fn new(what: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "strata-failure-{what}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A port on 127.0.0.1 that nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// Sends `signal` to `pid`. Returns whether it was delivered (false once the process is gone).
fn signal(pid: u32, signal: Signal) -> bool {
    i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .is_some_and(|pid| kill_process(pid, signal).is_ok())
}

/// Sends `signal` to every pid of `pids`, close together (one system call each).
fn signal_all(pids: &[u32], signal: Signal) {
    for &pid in pids {
        let _ = self::signal(pid, signal);
    }
}

/// A process's state letter and parent pid, from `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ...": comm may hold spaces and parentheses; the last ')' ends it.
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` is a live process (a zombie nobody reaped yet counts as gone).
fn alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| !matches!(state, 'Z' | 'X'))
}

/// The live children of `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| proc_stat(pid).is_some_and(|(state, ppid)| ppid == parent && state != 'Z'))
        .collect()
}

/// Waits (blocking) until none of `pids` is alive.
fn wait_all_gone(pids: &[u32]) {
    let deadline = Instant::now() + STOP_TIMEOUT;
    while let Some(pid) = pids.iter().find(|&&pid| alive(pid)) {
        assert!(
            Instant::now() < deadline,
            "process {pid} still alive {STOP_TIMEOUT:?} after SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last `lines` lines of a log file, for a server that would not start.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

// ---------------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------------

/// A `redis-server` child on 127.0.0.1 with persistence off. Killed on drop.
pub struct PrivateRedis {
    dir: ScratchDir,
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts `redis-server` on a free port and waits until it answers PING.
    pub async fn start() -> Self {
        let mut redis = Self {
            dir: ScratchDir::new("redis"),
            port: free_port(),
            child: None,
        };
        redis.launch().await;
        redis
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    async fn launch(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let port = self.port.to_string();
        let program =
            std::env::var_os("XTASK_REDIS_SERVER").unwrap_or_else(|| "redis-server".into());
        let mut command = Command::new(program);
        command
            .args(["--port", &port, "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .expect("cannot start redis-server (is it on PATH?)");
        self.child = Some(child);
        self.wait_until_ready().await;
    }

    async fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "redis-server on port {} exited at start ({status}):\n{}",
                    self.port,
                    tail(&self.log(), 20)
                );
            }
            if pong(self.port).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within {START_TIMEOUT:?}:\n{}",
                self.port,
                tail(&self.log(), 20)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: the server vanishes at once, its connections reset.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the server keeps its sockets (connects succeed) but answers nothing.
    pub fn freeze(&self) {
        if let Some(child) = &self.child {
            assert!(signal(child.id(), Signal::STOP), "SIGSTOP redis");
        }
    }

    /// SIGCONT after [`Self::freeze`].
    pub fn thaw(&self) {
        if let Some(child) = &self.child {
            assert!(signal(child.id(), Signal::CONT), "SIGCONT redis");
        }
    }

    /// SIGTERM (a clean shutdown), escalating to SIGKILL after 10 s.
    pub fn stop(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        signal(child.id(), Signal::CONT);
        signal(child.id(), Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    /// Starts it again on the same port (empty: nothing was persisted), stopping it first if it
    /// still runs.
    pub async fn restart(&mut self) {
        self.stop();
        self.launch().await;
    }

    /// The raw RESP reply to `KEYS <pattern>` (enough to see whether a key is there).
    pub async fn keys(&self, pattern: &str) -> String {
        let command = format!("*2\r\n$4\r\nKEYS\r\n${}\r\n{pattern}\r\n", pattern.len());
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
            stream.write_all(command.as_bytes()).await?;
            let mut reply = vec![0u8; 64 * 1024];
            let n = stream.read(&mut reply).await?;
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&reply[..n]).into_owned())
        };
        tokio::time::timeout(Duration::from_secs(5), exchange)
            .await
            .expect("KEYS answered in time")
            .expect("KEYS")
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a Redis server answers PING on `port` within half a second.
async fn pong(port: u16) -> bool {
    let ping = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await.ok()?;
        (&reply == b"+PONG\r\n").then_some(())
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(500), ping).await,
        Ok(Some(()))
    )
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

/// A throwaway PostgreSQL cluster (trust auth, no fsync) with a migrated `strata` database,
/// listening on 127.0.0.1 and on a socket in its own directory. Stopped and deleted on drop.
///
/// `synchronous_commit` stays on: with fsync off a commit still reaches the OS before it is
/// acknowledged, so a `kill -9` (unlike a power cut) loses nothing that a client saw committed.
pub struct PrivatePostgres {
    dir: ScratchDir,
    binaries: PathBuf,
    run_as: Option<&'static str>,
    port: u16,
    child: Option<Child>,
}

impl PrivatePostgres {
    /// Initialises a cluster, starts it on a free port, creates and migrates the database.
    pub async fn start() -> Self {
        let dir = ScratchDir::new("pg");
        let run_as = is_root().then_some(POSTGRES_USER);
        let mut postgres = Self {
            binaries: find_binaries(),
            run_as,
            port: free_port(),
            child: None,
            dir,
        };
        std::fs::create_dir_all(postgres.data()).expect("data dir");
        std::fs::create_dir_all(postgres.socket_dir()).expect("socket dir");
        set_mode(&postgres.data(), 0o700);
        if let Some(user) = run_as {
            // The scratch dir itself (0755 by default) must let the postgres user in.
            set_mode(postgres.dir.path(), 0o755);
            let status = Command::new("chown")
                .args(["-R", &format!("{user}:")])
                .arg(postgres.dir.path())
                .status()
                .expect("chown runs");
            assert!(status.success(), "chown of the cluster dir failed");
        }
        postgres.initdb();
        postgres.launch().await;

        let mut admin = postgres.connect("postgres").await;
        diesel::sql_query(format!("CREATE DATABASE \"{DATABASE}\""))
            .execute(&mut admin)
            .await
            .expect("CREATE DATABASE");
        drop(admin);
        strata_postgres::run_migrations(&postgres.url())
            .await
            .expect("migrations apply on the private server");
        postgres
    }

    /// The URL of the migrated database.
    pub fn url(&self) -> String {
        self.url_of(DATABASE)
    }

    fn url_of(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// `program` (a PostgreSQL binary) as the user the server runs as.
    fn command(&self, program: &str) -> Command {
        let program = self.binaries.join(program);
        let mut command = match self.run_as {
            Some(user) => {
                let mut command = Command::new("setpriv");
                command
                    .arg(format!("--reuid={user}"))
                    .arg(format!("--regid={user}"))
                    .arg("--init-groups")
                    .arg("--")
                    .arg(program);
                command
            }
            None => Command::new(program),
        };
        // The postgres user may not be able to enter our working directory (e.g. /root).
        command.current_dir("/").stdin(Stdio::null());
        command
    }

    fn initdb(&self) {
        let output = self
            .command("initdb")
            .arg("-D")
            .arg(self.data())
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .expect("initdb runs");
        assert!(
            output.status.success(),
            "initdb failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    async fn launch(&mut self) {
        assert!(self.child.is_none(), "postgres is already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log())
            .expect("postgres log");
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(self.socket_dir())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off"])
            .args(["-c", "full_page_writes=off"])
            .args(["-c", "max_connections=50"])
            .args(["-c", "shared_buffers=16MB"])
            .stdout(Stdio::null())
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        self.child = Some(command.spawn().expect("postgres starts"));
        self.wait_until_accepting().await;
    }

    /// A session of the test's own on the application's database.
    pub async fn session(&self) -> AsyncPgConnection {
        self.connect(DATABASE).await
    }

    async fn connect(&self, database: &str) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url_of(database))
            .await
            .unwrap_or_else(|e| panic!("connecting to the private postgres: {e}"))
    }

    /// Polls until a session can be opened and runs a query (after a crash, until recovery ends).
    async fn wait_until_accepting(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let url = self.url_of("postgres");
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "postgres on port {} exited at start ({status}):\n{}",
                    self.port,
                    tail(&self.log(), 30)
                );
            }
            let attempt = tokio::time::timeout(Duration::from_secs(2), async {
                let mut conn = AsyncPgConnection::establish(&url).await.ok()?;
                diesel::sql_query("SELECT 1").execute(&mut conn).await.ok()
            })
            .await;
            if matches!(attempt, Ok(Some(_))) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "postgres on port {} did not accept connections within {START_TIMEOUT:?}:\n{}",
                self.port,
                tail(&self.log(), 30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The postmaster and its children, the postmaster stopped first so that it forks no new
    /// child (nor restarts a killed one) while the list is taken. Empty once it has exited (its
    /// pid may have been reused; its children, if any, belong to init by then and die on their
    /// own when they notice).
    fn processes_stopped(&mut self) -> Vec<u32> {
        let Some(child) = self.child.as_mut() else {
            return Vec::new();
        };
        if !matches!(child.try_wait(), Ok(None)) {
            return Vec::new();
        }
        let postmaster = child.id();
        signal_all(&[postmaster], Signal::STOP);
        let mut pids = children_of(postmaster);
        pids.push(postmaster);
        pids
    }

    /// `kill -9` on the postmaster and every backend at once: connections reset, nothing shut
    /// down, as in a crash of the server's machine (minus the page cache).
    pub fn kill(&mut self) {
        let pids = self.processes_stopped();
        signal_all(&pids, Signal::KILL);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        // A backend that outlived its postmaster would keep the shared memory, and the restart
        // would refuse to start.
        wait_all_gone(&pids);
    }

    /// SIGSTOP on every process: connects succeed (the kernel accepts them) but nothing answers,
    /// neither a new session nor a query on an open one.
    pub fn freeze(&mut self) {
        let pids = self.processes_stopped();
        signal_all(&pids, Signal::STOP);
    }

    /// SIGCONT after [`Self::freeze`].
    pub fn thaw(&self) {
        if let Some(child) = &self.child {
            let postmaster = child.id();
            let mut pids = children_of(postmaster);
            pids.push(postmaster);
            signal_all(&pids, Signal::CONT);
        }
    }

    /// Starts the same cluster again on the same port, stopping it first if it still runs (after
    /// a kill, crash recovery replays the WAL).
    pub async fn restart(&mut self) {
        self.stop();
        self.launch().await;
    }

    /// Fast shutdown (SIGINT: sessions are terminated), escalating to SIGKILL after 10 s.
    pub fn stop(&mut self) {
        let Some(child) = &self.child else {
            return;
        };
        let postmaster = child.id();
        self.thaw();
        signal_all(&[postmaster], Signal::INT);
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(child) = self.child.as_mut()
            && matches!(child.try_wait(), Ok(None))
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// The directory holding `initdb` and `postgres`: PATH (resolved through Debian's links), then
/// /usr/lib/postgresql/<newest>/bin.
fn find_binaries() -> PathBuf {
    // `cargo xtask test` finds (or installs) them and says where.
    if let Some(dir) = std::env::var_os("XTASK_PG_BIN") {
        return PathBuf::from(dir);
    }
    let from_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("initdb"))
            .find(|candidate| candidate.is_file())
            .and_then(|initdb| std::fs::canonicalize(initdb).ok())
            .and_then(|real| real.parent().map(Path::to_path_buf))
    });
    let mut candidates: Vec<PathBuf> = from_path.into_iter().collect();
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versioned: Vec<(u32, PathBuf)> = entries
            .flatten()
            .filter_map(|entry| {
                let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
                Some((version, entry.path().join("bin")))
            })
            .collect();
        versioned.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
        candidates.extend(versioned.into_iter().map(|(_, dir)| dir));
    }
    candidates
        .into_iter()
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
        .expect("PostgreSQL server binaries (initdb, postgres) not found")
}
