//! The suite's pass through PgBouncer in transaction pooling mode.
//!
//! Production puts PgBouncer (transaction pooling) between the API and PostgreSQL, where a server
//! connection is lent to a client for one transaction only. `cargo xtask test` therefore runs the
//! PostgreSQL adapter tests and the HTTP API tests a second time with every application connection
//! going through a private PgBouncer whose pool is smaller than the pools the tests open, so that
//! consecutive transactions of one client land on different server connections. The tests' own
//! housekeeping (the template database, its advisory lock, CREATE and DROP DATABASE) still goes
//! straight to PostgreSQL; `TEST_DATABASE_POOLER` tells them where the pooler is.
//!
//! The API tests of the HTTP edge, the rate limiter and the metrics are left out of this pass: they
//! send no statement that the others do not (measured with `pg_stat_statements`, see
//! `docs/scaling.md`), and they are a sixth of the pass's time.
//!
//! Strata prepares its statements (diesel-async always does), which transaction pooling only
//! carries with PgBouncer 1.21 or later and `max_prepared_statements` above zero. The system's
//! `pgbouncer` is used when it is recent enough; otherwise, as root on a Debian-like system, the
//! distribution's package when apt offers 1.21 or later (Debian 13 does, Debian 12 has 1.18);
//! otherwise Debian's 1.24.1 source is downloaded, checked against its SHA-256 and built once
//! into `target/xtask/pgbouncer-1.24.1/`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::Command;

use crate::process::{self, Shutdown};
use crate::stack::{self, PRIVATE_KNOB, Stack};
use crate::system;
use crate::urls;

/// Tells the tests where the pooler listens (`host:port`); read by `strata_postgres::testing`.
const POOLER_VARIABLE: &str = "TEST_DATABASE_POOLER";
/// The oldest PgBouncer that keeps protocol-level prepared statements in transaction pooling.
const MINIMUM_VERSION: (u32, u32) = (1, 21);
/// Debian's source of the release built when the system has no recent enough PgBouncer.
const SOURCE_VERSION: &str = "1.24.1";
const SOURCE_URL: &str =
    "https://deb.debian.org/debian/pool/main/p/pgbouncer/pgbouncer_1.24.1.orig.tar.gz";
const SOURCE_SHA256: &str = "da72a3aba13072876d055a3e58dd4aba4a5de4ed6148e73033185245598fd3e0";
const PREFERRED_PORT: u16 = 56432;
/// Server connections per database: fewer than any pool the tests open (the API's is 4), so that
/// client connections always outnumber server connections and have to take turns on them.
const POOL_SIZE: u32 = 3;
/// Per server connection, as in `deploy/compose.yaml`; beyond it PgBouncer evicts the least
/// recently used statement and prepares it again when needed.
const MAX_PREPARED_STATEMENTS: u32 = 200;
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// PgBouncer refuses to run as root; as root it switches at start to the first of these that exists.
const UNPRIVILEGED_USERS: [&str; 2] = ["nobody", "postgres"];
/// What runs through the pooler: every PostgreSQL adapter test, and the API tests (the `api`
/// module of the server's `server` test binary) but for the modules in [`SKIPPED_MODULES`].
const FILTER: &str = "(package(strata-postgres) & kind(test)) \
     | (binary_id(strata-server::server) & test(/^api::/) \
        & not test(/^api::(edge|limits|metrics)::/))";
/// The test binaries of the pass, for `cargo test --test …`: the PostgreSQL adapter's and the
/// server's.
const TEST_TARGETS: [&str; 2] = ["postgres", "server"];
/// Test modules of [`TEST_TARGETS`] left out of the pass: the API tests of the HTTP edge, the Redis
/// rate limiter and the metrics, and the server binary's tests that are not API tests.
const SKIPPED_MODULES: [&str; 5] = [
    "api::edge::",
    "api::limits::",
    "api::metrics::",
    "deploy::",
    "replicas::",
];

/// Runs the PostgreSQL adapter tests and the API tests through PgBouncer in transaction pooling
/// mode, with the same test build as the main step. Skipped when the caller narrowed the run with
/// test runner arguments (a filter of theirs would widen ours, not narrow it).
pub async fn run(stack: &Stack, extra_args: &[String], shutdown: &Shutdown) -> anyhow::Result<()> {
    if !extra_args.is_empty() {
        eprintln!("xtask: pgbouncer: skipped (test runner arguments given)");
        return Ok(());
    }
    let program = find_or_build(shutdown).await?;
    let pooler = PrivatePgBouncer::start(&program, &stack.maintenance_url()).await?;
    eprintln!(
        "xtask: pgbouncer: {} on {} (transaction pooling, {POOL_SIZE} server connections per \
         database, max_prepared_statements {MAX_PREPARED_STATEMENTS})",
        program.display(),
        pooler.address()
    );
    let mut command = system::test_pass(
        |command| {
            command.args(["test", "--workspace", "--no-fail-fast"]);
            for target in TEST_TARGETS {
                command.args(["--test", target]);
            }
            command.arg("--");
            for module in SKIPPED_MODULES {
                command.args(["--skip", module]);
            }
            Ok(())
        },
        FILTER,
    )?;
    command
        .env("DATABASE_URL", stack.maintenance_url())
        .env("REDIS_URL", stack.redis_url())
        .env(POOLER_VARIABLE, pooler.address())
        .env_remove(PRIVATE_KNOB);
    let started = Instant::now();
    let status = process::run(command, "the tests through pgbouncer", shutdown).await?;
    eprintln!(
        "xtask: pgbouncer: pass took {:.0}s",
        started.elapsed().as_secs_f64()
    );
    if !status.success() {
        bail!(
            "tests failed through PgBouncer ({status}); its log: {}",
            pooler.log().display()
        );
    }
    Ok(())
}

/// A PgBouncer child listening on 127.0.0.1, stopped when dropped.
struct PrivatePgBouncer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl PrivatePgBouncer {
    /// Writes a configuration routing every database name to the server of `server_url` and starts
    /// `program` with it.
    async fn start(program: &Path, server_url: &str) -> anyhow::Result<Self> {
        let (host, server_port) = urls::host_port(server_url, 5432)
            .with_context(|| format!("no host in {}", urls::redacted(server_url)))?;
        let (user, password) = credentials(server_url);
        // A directory per xtask process: several `cargo xtask test` may share a workspace.
        let runs = system::state_dir().join("pgbouncer");
        stop_leftovers(&runs);
        let dir = runs.join(std::process::id().to_string());
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let pidfile = dir.join("pgbouncer.pid");
        let port = system::free_port(PREFERRED_PORT)?;
        let auth_file = dir.join("userlist.txt");
        std::fs::write(
            &auth_file,
            format!("{} {}\n", quoted(&user), quoted(&password)),
        )
        .with_context(|| format!("writing {}", auth_file.display()))?;
        let config = dir.join("pgbouncer.ini");
        std::fs::write(&config, configuration(&host, server_port, port, &auth_file))
            .with_context(|| format!("writing {}", config.display()))?;
        let log = dir.join("pgbouncer.log");
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;

        let mut command = std::process::Command::new(program);
        // Both files are read before PgBouncer switches users; it logs to the stderr we opened.
        if system::is_root() {
            let user = UNPRIVILEGED_USERS
                .into_iter()
                .find(|user| system::user_uid(user).is_some())
                .context("PgBouncer refuses to run as root and there is no `nobody` user")?;
            command.args(["-u", user]);
        }
        command
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        // Its own process group: a Ctrl-C at the terminal is ours to handle, not PgBouncer's.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        std::fs::write(&pidfile, child.id().to_string())
            .with_context(|| format!("writing {}", pidfile.display()))?;
        let mut pooler = Self { child, port, log };
        pooler.wait_until_ready().await?;
        Ok(pooler)
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> &Path {
        &self.log
    }

    async fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!(
                    "pgbouncer exited at start ({status}):\n{}",
                    system::tail(&self.log, 20)
                );
            }
            if stack::probe::accepts("127.0.0.1", self.port).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "pgbouncer did not listen within {}s:\n{}",
                    START_TIMEOUT.as_secs(),
                    system::tail(&self.log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for PrivatePgBouncer {
    fn drop(&mut self) {
        // SIGTERM is PgBouncer's immediate shutdown; the tests are over, nothing waits on it.
        system::terminate(&mut self.child);
    }
}

/// The configuration: every database name goes to the one server, so the per-test databases need
/// no entry of their own.
fn configuration(host: &str, server_port: u16, port: u16, auth_file: &Path) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "[databases]");
    let _ = writeln!(text, "* = host={host} port={server_port}");
    let _ = writeln!(text);
    let _ = writeln!(text, "[pgbouncer]");
    let _ = writeln!(text, "listen_addr = 127.0.0.1");
    let _ = writeln!(text, "listen_port = {port}");
    let _ = writeln!(text, "unix_socket_dir =");
    let _ = writeln!(text, "auth_type = trust");
    let _ = writeln!(text, "auth_file = {}", auth_file.display());
    let _ = writeln!(text, "pool_mode = transaction");
    let _ = writeln!(text, "max_prepared_statements = {MAX_PREPARED_STATEMENTS}");
    let _ = writeln!(text, "default_pool_size = {POOL_SIZE}");
    let _ = writeln!(text, "max_client_conn = 2000");
    let _ = writeln!(text, "log_connections = 0");
    let _ = writeln!(text, "log_disconnections = 0");
    let _ = writeln!(text, "log_stats = 0");
    text
}

/// The user and password of a `postgres://` URL, percent-decoded; `postgres` when it names none.
fn credentials(url: &str) -> (String, String) {
    let after_scheme = url.find("://").map_or(url, |i| &url[i + 3..]);
    let authority = after_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    let Some((credentials, _)) = authority.rsplit_once('@') else {
        return ("postgres".to_owned(), String::new());
    };
    let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
    (percent_decoded(user), percent_decoded(password))
}

fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// A double-quoted auth file field (a double quote inside is doubled).
fn quoted(field: &str) -> String {
    format!("\"{}\"", field.replace('"', "\"\""))
}

/// Clears the directories of earlier runs whose xtask process is gone, stopping a PgBouncer left
/// running by one that was killed (recognised by its pid file and its name). Runs still going on
/// are left alone.
fn stop_leftovers(runs: &Path) {
    let Ok(entries) = std::fs::read_dir(runs) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let owner = entry.file_name().to_string_lossy().parse::<u32>().ok();
        if owner.is_none_or(|pid| process_name(pid).is_some()) {
            continue;
        }
        let pooler = std::fs::read_to_string(dir.join("pgbouncer.pid"))
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok());
        if let Some(pid) = pooler
            && process_name(pid).is_some_and(|name| name.contains("pgbouncer"))
        {
            eprintln!("xtask: pgbouncer: stopping one left running by an earlier run (pid {pid})");
            system::signal_process(pid, system::Signal::TERM);
            std::thread::sleep(Duration::from_millis(300));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The command name of a running process, if it is running.
fn process_name(pid: u32) -> Option<String> {
    let output = std::process::Command::new("ps")
        .args(["-p", &pid.to_string(), "-o", "comm="])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let name = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (output.status.success() && !name.is_empty()).then_some(name)
}

/// A PgBouncer that carries prepared statements in transaction pooling: the system's if recent
/// enough, else the one built here earlier, else the distribution's package if apt offers a recent
/// enough one (installed when we are root), else one built now from Debian's source.
async fn find_or_build(shutdown: &Shutdown) -> anyhow::Result<PathBuf> {
    if let Some(program) = system_program() {
        match version(&program) {
            Some(found) if found >= MINIMUM_VERSION => return Ok(program),
            found => eprintln!(
                "xtask: pgbouncer: {} is {}; transaction pooling with prepared statements needs \
                 {}.{}+",
                program.display(),
                found.map_or_else(|| "of an unknown version".to_owned(), dotted),
                MINIMUM_VERSION.0,
                MINIMUM_VERSION.1
            ),
        }
    }
    let home = system::state_dir().join(format!("pgbouncer-{SOURCE_VERSION}"));
    let built = home.join("bin").join("pgbouncer");
    if system::is_executable(&built) {
        return Ok(built);
    }
    if system::can_apt_install() {
        match from_apt().await {
            Ok(Some(program)) => return Ok(program),
            Ok(None) => {}
            Err(error) => eprintln!("xtask: pgbouncer: {error:#}"),
        }
    }
    eprintln!("xtask: pgbouncer: building {SOURCE_VERSION} from source");
    build(&home, &built, shutdown).await?;
    Ok(built)
}

/// `pgbouncer` on PATH, else where Debian's package puts it (/usr/sbin, off a normal user's PATH).
fn system_program() -> Option<PathBuf> {
    system::find_program("pgbouncer").or_else(|| {
        let debian = PathBuf::from("/usr/sbin/pgbouncer");
        system::is_executable(&debian).then_some(debian)
    })
}

/// What apt would install as `pgbouncer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AptOffer {
    /// A release that carries prepared statements in transaction pooling.
    Recent((u32, u32)),
    /// An older release (Debian 12 has 1.18).
    TooOld((u32, u32)),
    /// No package at all.
    Nothing,
}

/// Reads `apt-cache policy pgbouncer`'s `Candidate:` line ("1.24.1-1", "1.18.0-1+deb12u1",
/// "1.24.1-1.pgdg120+1"; an epoch such as "1:" and the Debian revision are not the upstream
/// release).
fn apt_offer(policy: &str) -> AptOffer {
    let candidate = policy
        .lines()
        .find_map(|line| line.trim().strip_prefix("Candidate:"))
        .map(str::trim);
    let Some(candidate) = candidate.filter(|c| !c.is_empty() && *c != "(none)") else {
        return AptOffer::Nothing;
    };
    let upstream = candidate
        .split_once(':')
        .map_or(candidate, |(_, rest)| rest);
    let upstream = upstream.split('-').next().unwrap_or_default();
    let mut numbers = upstream.split('.').map(|part| {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    });
    match (numbers.next().flatten(), numbers.next().flatten()) {
        (Some(major), Some(minor)) if (major, minor) >= MINIMUM_VERSION => {
            AptOffer::Recent((major, minor))
        }
        (Some(major), Some(minor)) => AptOffer::TooOld((major, minor)),
        _ => AptOffer::Nothing,
    }
}

/// Installs the distribution's `pgbouncer` if apt offers a recent enough one; its path, or none
/// when apt offers none. The package may start a service of its own (port 6432, its own
/// configuration); the tests never use it, only the binary, with a configuration written here.
async fn from_apt() -> anyhow::Result<Option<PathBuf>> {
    let policy = system::apt_policy("pgbouncer").await?;
    match apt_offer(&policy) {
        AptOffer::Recent(offered) => {
            eprintln!(
                "xtask: pgbouncer: installing the distribution's pgbouncer {} with apt-get",
                dotted(offered)
            );
            system::apt_install("pgbouncer").await?;
            let program = system_program()
                .context("apt-get installed pgbouncer but there is no pgbouncer program")?;
            match version(&program) {
                Some(found) if found >= MINIMUM_VERSION => Ok(Some(program)),
                found => bail!(
                    "apt-get installed pgbouncer but {} is {}",
                    program.display(),
                    found.map_or_else(|| "of an unknown version".to_owned(), dotted)
                ),
            }
        }
        AptOffer::TooOld(offered) => {
            eprintln!(
                "xtask: pgbouncer: apt offers pgbouncer {}, older than {}",
                dotted(offered),
                dotted(MINIMUM_VERSION)
            );
            Ok(None)
        }
        AptOffer::Nothing => {
            eprintln!("xtask: pgbouncer: apt offers no pgbouncer package");
            Ok(None)
        }
    }
}

fn dotted((major, minor): (u32, u32)) -> String {
    format!("{major}.{minor}")
}

/// `(major, minor)` of `pgbouncer --version` ("PgBouncer 1.24.1" on its first line).
fn version(program: &Path) -> Option<(u32, u32)> {
    let output = std::process::Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    parse_version(&String::from_utf8_lossy(&output.stdout))
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let number = text.lines().next()?.split_whitespace().nth(1)?;
    let mut parts = number.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Downloads, verifies and compiles the source; installs only the binary, at `binary`.
async fn build(home: &Path, binary: &Path, shutdown: &Shutdown) -> anyhow::Result<()> {
    ensure_build_tools().await?;
    std::fs::create_dir_all(home).with_context(|| format!("creating {}", home.display()))?;
    let tarball = home.join(format!("pgbouncer_{SOURCE_VERSION}.orig.tar.gz"));
    if !tarball.is_file() || sha256(&tarball).await? != SOURCE_SHA256 {
        download(&tarball, shutdown).await?;
    }
    let source = home.join("src");
    if source.exists() {
        std::fs::remove_dir_all(&source)
            .with_context(|| format!("removing {}", source.display()))?;
    }
    std::fs::create_dir_all(&source)?;
    eprintln!(
        "xtask: pgbouncer: building {SOURCE_VERSION} in {} (once; the binary is kept)",
        source.display()
    );
    let mut unpack = Command::new("tar");
    unpack
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&source)
        .arg("--strip-components=1");
    step(unpack, "tar", shutdown).await?;
    // Only what the tests need: no TLS on loopback, no DNS library, PAM or systemd.
    let mut configure = Command::new(source.join("configure"));
    configure.current_dir(&source).args([
        "--without-openssl",
        "--without-cares",
        "--without-pam",
        "--without-systemd",
    ]);
    step(configure, "configure", shutdown).await?;
    let jobs = std::thread::available_parallelism().map_or(2, usize::from);
    let mut make = Command::new("make");
    make.current_dir(&source).arg(format!("-j{jobs}"));
    step(make, "make", shutdown).await?;

    let bin = binary.parent().context("the binary's directory")?;
    std::fs::create_dir_all(bin).with_context(|| format!("creating {}", bin.display()))?;
    // Copied then renamed, so a build cut short never leaves a binary that looks finished.
    let partial = bin.join("pgbouncer.partial");
    std::fs::copy(source.join("pgbouncer"), &partial)
        .with_context(|| format!("copying the built pgbouncer to {}", partial.display()))?;
    std::fs::rename(&partial, binary)
        .with_context(|| format!("installing {}", binary.display()))?;
    let _ = std::fs::remove_dir_all(&source);
    match version(binary) {
        Some(found) if found >= MINIMUM_VERSION => Ok(()),
        _ => bail!("{} does not report its version", binary.display()),
    }
}

/// The compiler, make, pkg-config and libevent's headers, installed with apt-get where we can.
async fn ensure_build_tools() -> anyhow::Result<()> {
    let mut missing: Vec<&str> = Vec::new();
    if system::find_program("cc").is_none() && system::find_program("gcc").is_none() {
        missing.push("gcc");
    }
    if system::find_program("make").is_none() {
        missing.push("make");
    }
    if system::find_program("pkg-config").is_none() {
        missing.push("pkg-config");
    }
    if !system::succeeds("pkg-config", ["--exists", "libevent"]) {
        missing.push("libevent-dev");
    }
    if system::find_program("curl").is_none() {
        missing.push("curl");
    }
    if missing.is_empty() {
        return Ok(());
    }
    if !system::can_apt_install() {
        bail!(
            "the tests run through PgBouncer {}.{}+ (transaction pooling with prepared \
             statements); install it (`sudo apt-get install pgbouncer` where the distribution \
             ships 1.21 or later), or install what building {SOURCE_VERSION} here needs: {} \
             (`sudo apt-get install {}`)",
            MINIMUM_VERSION.0,
            MINIMUM_VERSION.1,
            missing.join(", "),
            missing.join(" ")
        );
    }
    for package in missing {
        system::apt_install(package).await?;
    }
    Ok(())
}

async fn download(tarball: &Path, shutdown: &Shutdown) -> anyhow::Result<()> {
    eprintln!("xtask: pgbouncer: downloading {SOURCE_URL}");
    let partial = tarball.with_extension("partial");
    let mut curl = Command::new("curl");
    curl.args(["--fail", "--silent", "--show-error", "--location"])
        .args(["--retry", "3", "--connect-timeout", "20"])
        .arg("--output")
        .arg(&partial)
        .arg(SOURCE_URL);
    step(curl, "curl", shutdown).await?;
    let found = sha256(&partial).await?;
    if found != SOURCE_SHA256 {
        let _ = std::fs::remove_file(&partial);
        bail!("{SOURCE_URL} has SHA-256 {found}, expected {SOURCE_SHA256}; not building it");
    }
    std::fs::rename(&partial, tarball).with_context(|| format!("saving {}", tarball.display()))
}

/// The SHA-256 of a file, in hex, by `sha256sum` (or `shasum -a 256` where there is none).
async fn sha256(path: &Path) -> anyhow::Result<String> {
    let output = if system::find_program("sha256sum").is_some() {
        Command::new("sha256sum").arg(path).output().await
    } else {
        Command::new("shasum")
            .args(["-a", "256"])
            .arg(path)
            .output()
            .await
    }
    .context("cannot run sha256sum (or shasum)")?;
    if !output.status.success() {
        bail!(
            "hashing {} failed: {}",
            path.display(),
            system::output_text(&output)
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace()
        .next()
        .map(str::to_ascii_lowercase)
        .with_context(|| format!("no hash of {} in {text:?}", path.display()))
}

/// Runs one build step, its output shown only when it fails.
async fn step(mut command: Command, what: &str, shutdown: &Shutdown) -> anyhow::Result<()> {
    let log = system::state_dir().join("pgbouncer-build.log");
    let file =
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    command
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    let status = process::run(command, what, shutdown).await?;
    if !status.success() {
        bail!(
            "{what} failed ({status}) building PgBouncer {SOURCE_VERSION}:\n{}",
            system::tail(&log, 30)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_read_from_the_first_line() {
        let text = "PgBouncer 1.18.0\nlibevent 2.1.12-stable\nadns: evdns2\ntls: OpenSSL 3.0.17\n";
        assert_eq!(parse_version(text), Some((1, 18)));
        assert_eq!(parse_version("PgBouncer 1.24.1\n"), Some((1, 24)));
        assert!(parse_version("PgBouncer 1.18.0\n").unwrap() < MINIMUM_VERSION);
        assert!(parse_version("PgBouncer 1.21.0\n").unwrap() >= MINIMUM_VERSION);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn the_package_apt_offers_is_used_only_from_1_21_on() {
        // Debian 12 (bookworm), as `apt-cache policy pgbouncer` prints it.
        let bookworm = "pgbouncer:\n  Installed: (none)\n  Candidate: 1.18.0-1+deb12u1\n  \
             Version table:\n     1.18.0-1+deb12u1 500\n        500 \
             http://deb.debian.org/debian bookworm/main amd64 Packages\n";
        assert_eq!(apt_offer(bookworm), AptOffer::TooOld((1, 18)));
        // Debian 13 (trixie).
        let trixie = "pgbouncer:\n  Installed: (none)\n  Candidate: 1.24.1-1\n  Version table:\n     \
             1.24.1-1 500\n        500 http://deb.debian.org/debian trixie/main amd64 Packages\n";
        assert_eq!(apt_offer(trixie), AptOffer::Recent((1, 24)));
        // An old release installed, PGDG's newer one on offer.
        let pgdg = "pgbouncer:\n  Installed: 1.18.0-1+deb12u1\n  Candidate: 1.24.1-1.pgdg120+1\n  \
             Version table:\n     1.24.1-1.pgdg120+1 500\n        500 \
             https://apt.postgresql.org/pub/repos/apt bookworm-pgdg/main amd64 Packages\n \
             *** 1.18.0-1+deb12u1 100\n        100 /var/lib/dpkg/status\n";
        assert_eq!(apt_offer(pgdg), AptOffer::Recent((1, 24)));
        assert_eq!(
            apt_offer("pgbouncer:\n  Installed: (none)\n  Candidate: 1:1.21~rc1-2\n"),
            AptOffer::Recent((1, 21))
        );
        // A package known only by name (no source offers it), and one apt has never heard of
        // (apt-cache prints nothing).
        let listed_nowhere =
            "pgbouncer:\n  Installed: (none)\n  Candidate: (none)\n  Version table:\n";
        assert_eq!(apt_offer(listed_nowhere), AptOffer::Nothing);
        assert_eq!(apt_offer(""), AptOffer::Nothing);
    }

    #[test]
    fn credentials_come_from_the_url_decoded() {
        assert_eq!(
            credentials("postgres://postgres@127.0.0.1:5432/postgres"),
            ("postgres".to_owned(), String::new())
        );
        assert_eq!(
            credentials("postgres://app:p%40ss:w@db:5432/x?sslmode=disable"),
            ("app".to_owned(), "p@ss:w".to_owned())
        );
        assert_eq!(
            credentials("postgres://127.0.0.1/x"),
            ("postgres".to_owned(), String::new())
        );
    }

    #[test]
    fn the_configuration_pools_transactions_and_keeps_prepared_statements() {
        let text = configuration("127.0.0.1", 5432, 56432, Path::new("/x/userlist.txt"));
        for line in [
            "* = host=127.0.0.1 port=5432",
            "listen_port = 56432",
            "pool_mode = transaction",
            "max_prepared_statements = 200",
            "default_pool_size = 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert_eq!(quoted("a\"b"), "\"a\"\"b\"");
    }
}
