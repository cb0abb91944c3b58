//! A private PostgreSQL cluster for development and tests.
//!
//! The cluster lives in `target/xtask/pg` (initialised once, trust authentication, superuser
//! `postgres`), listens on 127.0.0.1 only, and is tuned for throwaway data (no fsync). PostgreSQL
//! refuses to run as root, so as root every `initdb` and `pg_ctl` runs as the `postgres` system
//! user, who then owns the cluster's directories.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};

use crate::system::{self, arg};

const PREFERRED_PORT: u16 = 55432;
const SYSTEM_USER: &str = "postgres";
const INSTALL_HINT: &str = "install PostgreSQL 15+ (initdb and pg_ctl): `sudo apt-get install postgresql` \
     (Debian/Ubuntu), `sudo dnf install postgresql-server` (Fedora), or `brew install postgresql@16` \
     (macOS); or set DATABASE_URL to a server that is running";
/// Unix socket paths are limited to about 107 bytes; leave room for `/.s.PGSQL.NNNNN`.
const MAX_SOCKET_DIR_LEN: usize = 90;

/// A PostgreSQL server started here, stopped (`pg_ctl stop -m fast`) when dropped.
pub struct PrivatePostgres {
    binaries: Binaries,
    data: PathBuf,
    run_as: Option<&'static str>,
    port: u16,
}

impl PrivatePostgres {
    /// Finds (or installs) the binaries, initialises the cluster if needed and starts it.
    pub async fn start() -> anyhow::Result<Self> {
        let run_as = system::is_root().then_some(SYSTEM_USER);
        let base = base_dir(run_as).await?;
        Self::start_in(&base, None, PREFERRED_PORT).await
    }

    /// A throwaway cluster in `base` on `port` (or a free neighbour) that, like Debian's packaged
    /// one, trusts local socket connections and wants `password` (SCRAM) from `postgres` over TCP.
    #[cfg(test)]
    pub async fn start_with_password(
        base: &Path,
        port: u16,
        password: &str,
    ) -> anyhow::Result<Self> {
        Self::start_in(base, Some(password), port).await
    }

    /// A cluster in `base/pg`, its socket and log in `base/pg-run`, on a free port from
    /// `preferred_port` on; TCP clients give `password` when there is one, else are trusted.
    async fn start_in(
        base: &Path,
        password: Option<&str>,
        preferred_port: u16,
    ) -> anyhow::Result<Self> {
        let binaries = find_or_install().await?;
        let run_as = system::is_root().then_some(SYSTEM_USER);
        let postgres_uid = match run_as {
            Some(user) => Some(system::user_uid(user).with_context(|| {
                format!(
                    "PostgreSQL refuses to run as root and there is no `{user}` system user to run it as; \
                     create one (`useradd --system --create-home {user}`) or run as a normal user"
                )
            })?),
            None => None,
        };
        let data = base.join("pg");
        let run_dir = base.join("pg-run");
        for dir in [&data, &run_dir] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        set_mode(&data, 0o700)?;
        if let (Some(user), Some(uid)) = (run_as, postgres_uid) {
            system::chown_to(&data, user, uid)?;
            system::chown_to(&run_dir, user, uid)?;
        }

        let mut server = Self {
            binaries,
            data,
            run_as,
            port: 0,
        };
        server.stop_leftover().await;
        server.initialise(postgres_uid, password, &run_dir).await?;
        server.port = system::free_port(preferred_port)?;
        server.launch(&run_dir).await?;
        Ok(server)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The URL of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn pg_ctl(&self, args: &[String]) -> tokio::process::Command {
        let mut command = system::command_as(self.run_as, &self.binaries.pg_ctl(), args);
        // The postgres user may not be able to enter our current directory (e.g. /root).
        command.current_dir("/").stdin(Stdio::null());
        command
    }

    /// A server left running by a run that was killed would hold the data directory.
    async fn stop_leftover(&self) {
        if !self.data.join("postmaster.pid").exists() {
            return;
        }
        let status = self
            .pg_ctl(&["status".into(), "-D".into(), arg(&self.data)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        if status.is_ok_and(|s| s.success()) {
            eprintln!("xtask: postgres: stopping a private server left running by an earlier run");
            let _ = self
                .pg_ctl(&stop_args(&self.data))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
        }
    }

    async fn initialise(
        &self,
        postgres_uid: Option<u32>,
        password: Option<&str>,
        run_dir: &Path,
    ) -> anyhow::Result<()> {
        let data = &self.data;
        if data.join("global").join("pg_control").exists() {
            let found = std::fs::read_to_string(data.join("PG_VERSION")).unwrap_or_default();
            let found = found.trim();
            if found != self.binaries.major.to_string() {
                bail!(
                    "{} holds a PostgreSQL {found} cluster but the binaries found are PostgreSQL {}; \
                     delete it (rm -rf {}) to start afresh, or install PostgreSQL {found}",
                    data.display(),
                    self.binaries.major,
                    data.display()
                );
            }
            return Ok(());
        }
        if std::fs::read_dir(data).is_ok_and(|mut entries| entries.next().is_some()) {
            eprintln!(
                "xtask: postgres: {} holds an unfinished cluster; initialising it again",
                data.display()
            );
            std::fs::remove_dir_all(data)
                .with_context(|| format!("removing {}", data.display()))?;
            std::fs::create_dir_all(data)?;
            set_mode(data, 0o700)?;
            if let (Some(user), Some(uid)) = (self.run_as, postgres_uid) {
                system::chown_to(data, user, uid)?;
            }
        }
        eprintln!(
            "xtask: postgres: initialising a cluster in {}",
            data.display()
        );
        let mut args: Vec<String> = vec![
            "-D".into(),
            arg(data),
            "-U".into(),
            "postgres".into(),
            "--encoding=UTF8".into(),
            "--locale=C".into(),
        ];
        // initdb reads the superuser's password from a file the server's user can read.
        let password_file = run_dir.join("initdb-password");
        match password {
            None => args.push("--auth=trust".into()),
            Some(password) => {
                std::fs::write(&password_file, password)
                    .with_context(|| format!("writing {}", password_file.display()))?;
                if let (Some(user), Some(uid)) = (self.run_as, postgres_uid) {
                    system::chown_to(&password_file, user, uid)?;
                }
                args.extend([
                    "--auth-local=trust".into(),
                    "--auth-host=scram-sha-256".into(),
                    format!("--pwfile={}", arg(&password_file)),
                ]);
            }
        }
        let output = system::command_as(self.run_as, &self.binaries.initdb(), &args)
            .current_dir("/")
            .stdin(Stdio::null())
            .output()
            .await
            .context("cannot run initdb");
        let _ = std::fs::remove_file(&password_file);
        let output = output?;
        if !output.status.success() {
            bail!("initdb failed:\n{}", system::output_text(&output));
        }
        Ok(())
    }

    async fn launch(&self, run_dir: &Path) -> anyhow::Result<()> {
        let log = run_dir.join("postgres.log");
        // pg_ctl pastes -o into a shell command line, hence the quoting.
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=200",
            self.port,
            system::shell_quote(&arg(run_dir))
        );
        let args: Vec<String> = vec![
            "-D".into(),
            arg(&self.data),
            "-l".into(),
            arg(&log),
            "-w".into(),
            "-t".into(),
            "60".into(),
            "-o".into(),
            options,
            "start".into(),
        ];
        let output = self
            .pg_ctl(&args)
            .output()
            .await
            .context("cannot run pg_ctl")?;
        if !output.status.success() {
            bail!(
                "PostgreSQL did not start:\n{}\n--- {} ---\n{}",
                system::output_text(&output),
                log.display(),
                system::tail(&log, 20)
            );
        }
        Ok(())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // Nothing to stop if it never got as far as starting.
        if self.port == 0 || !self.data.join("postmaster.pid").exists() {
            return;
        }
        let command = self.pg_ctl(&stop_args(&self.data));
        let status = command
            .into_std()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match status {
            Ok(status) if status.success() => {
                eprintln!(
                    "xtask: postgres: stopped the private server (port {})",
                    self.port
                );
            }
            _ => eprintln!(
                "xtask: postgres: could not stop the private server on port {}; stop it with pg_ctl -D {} stop",
                self.port,
                self.data.display()
            ),
        }
    }
}

fn stop_args(data: &Path) -> Vec<String> {
    ["-D", &arg(data), "-m", "fast", "-w", "-t", "60", "stop"]
        .map(str::to_owned)
        .to_vec()
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the permissions of {}", path.display()))
}

/// `target/xtask`, unless the `postgres` user cannot reach it (a workspace under a private home
/// directory) or its socket path would be too long; then a directory of our own under /tmp.
async fn base_dir(run_as: Option<&str>) -> anyhow::Result<PathBuf> {
    let preferred = system::state_dir();
    std::fs::create_dir_all(&preferred)
        .with_context(|| format!("creating {}", preferred.display()))?;
    let socket_fits = preferred.join("pg-run").as_os_str().len() <= MAX_SOCKET_DIR_LEN;
    let reachable = match run_as {
        Some(user) => system::command_as(
            Some(user),
            Path::new("test"),
            &["-x".into(), arg(&preferred)],
        )
        .current_dir("/")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success()),
        None => true,
    };
    if reachable && socket_fits {
        return Ok(preferred);
    }
    let fallback = fallback_base();
    std::fs::create_dir_all(&fallback)
        .with_context(|| format!("creating {}", fallback.display()))?;
    set_mode(&fallback, 0o755)?;
    if !reachable {
        eprintln!(
            "xtask: postgres: the `{}` user cannot reach {} (a parent directory is private); \
             keeping the private cluster in {} instead",
            run_as.unwrap_or(SYSTEM_USER),
            preferred.display(),
            fallback.display()
        );
    } else {
        eprintln!(
            "xtask: postgres: {} is too long a path for a Unix socket; keeping the private cluster in {} instead",
            preferred.display(),
            fallback.display()
        );
    }
    Ok(fallback)
}

fn fallback_base() -> PathBuf {
    let uid = system::current_uid().unwrap_or_default();
    std::env::temp_dir().join(format!("strata-xtask-{uid}"))
}

/// A directory holding `initdb` and `pg_ctl`, and their major version.
struct Binaries {
    dir: PathBuf,
    major: u32,
}

impl Binaries {
    fn initdb(&self) -> PathBuf {
        self.dir.join("initdb")
    }

    fn pg_ctl(&self) -> PathBuf {
        self.dir.join("pg_ctl")
    }
}

/// The directory of the server binaries (initdb, postgres), installing them where it can.
pub(crate) async fn binaries_dir() -> anyhow::Result<PathBuf> {
    Ok(find_or_install().await?.dir)
}

async fn find_or_install() -> anyhow::Result<Binaries> {
    // An existing cluster can only be run by its own major version.
    let wanted: Option<u32> = [system::state_dir(), fallback_base()]
        .iter()
        .find_map(|base| std::fs::read_to_string(base.join("pg").join("PG_VERSION")).ok())
        .and_then(|v| v.trim().parse().ok());
    if let Some(found) = find_binaries(wanted) {
        return Ok(found);
    }
    if !system::can_apt_install() {
        bail!("no PostgreSQL server binaries found; {INSTALL_HINT}");
    }
    eprintln!("xtask: postgres: no server binaries found; installing PostgreSQL with apt-get");
    system::apt_install("postgresql").await?;
    find_binaries(wanted).with_context(|| {
        format!("apt-get installed postgresql but initdb is still missing; {INSTALL_HINT}")
    })
}

/// PATH first, then the usual install locations, newest first; the version `wanted` if present.
fn find_binaries(wanted: Option<u32>) -> Option<Binaries> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(initdb) = system::find_program("initdb") {
        // Debian links the binaries into PATH; pg_ctl must be taken from the real directory.
        let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        if let Some(dir) = real.parent() {
            dirs.push(dir.to_path_buf());
        }
    }
    let mut versioned: Vec<(u32, PathBuf)> = Vec::new();
    for (parent, prefix, suffix) in [
        ("/usr/lib/postgresql", "", "bin"),
        ("/usr", "pgsql-", "bin"),
        ("/opt/homebrew/opt", "postgresql@", "bin"),
        ("/usr/local/opt", "postgresql@", "bin"),
    ] {
        let Ok(entries) = std::fs::read_dir(parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(version) = name
                .strip_prefix(prefix)
                .and_then(|v| v.parse::<u32>().ok())
            {
                versioned.push((version, entry.path().join(suffix)));
            }
        }
    }
    versioned.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    dirs.extend(versioned.into_iter().map(|(_, dir)| dir));
    dirs.push(PathBuf::from("/usr/local/pgsql/bin"));

    let mut candidates = Vec::new();
    for dir in dirs {
        if candidates.iter().any(|c: &Binaries| c.dir == dir) {
            continue;
        }
        if !system::is_executable(&dir.join("initdb"))
            || !system::is_executable(&dir.join("pg_ctl"))
        {
            continue;
        }
        if let Some(major) = major_version(&dir.join("pg_ctl")) {
            candidates.push(Binaries { dir, major });
        }
    }
    let position = wanted
        .and_then(|wanted| candidates.iter().position(|c| c.major == wanted))
        .unwrap_or(0);
    (position < candidates.len()).then(|| candidates.swap_remove(position))
}

/// The major version `pg_ctl --version` reports ("pg_ctl (PostgreSQL) 15.14 (Debian ...)").
fn major_version(pg_ctl: &Path) -> Option<u32> {
    let output = std::process::Command::new(pg_ctl)
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.split(')').nth(1)?.split_whitespace().next()?;
    version.split('.').next()?.parse().ok()
}
