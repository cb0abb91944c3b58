//! What the machine offers the developer commands: where the workspace and its scratch directory
//! are, whether we are root, where programs live, the system package manager, free ports, and
//! signals (through rustix's safe `kill(2)`, since the workspace forbids `unsafe`).

use std::ffi::OsStr;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use rustix::process::Pid;
pub use rustix::process::Signal;

/// The workspace root: the parent of this crate's manifest directory, whatever the current
/// directory is.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.to_path_buf(), Path::to_path_buf)
}

/// Where the developer commands keep their state (private servers, the local JWT secret).
pub fn state_dir() -> PathBuf {
    workspace_root().join("target").join("xtask")
}

/// The effective user id of this process.
pub fn current_uid() -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        // /proc/self belongs to the effective user; this avoids a process spawn.
        if let Ok(metadata) = std::fs::metadata("/proc/self") {
            return Some(metadata.uid());
        }
    }
    let output = Command::new("id").arg("-u").output().ok()?;
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    current_uid() == Some(0)
}

/// The uid of a system user, if that user exists.
pub fn user_uid(name: &str) -> Option<u32> {
    let output = Command::new("id")
        .args(["-u", name])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

/// The first executable called `name` on PATH.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Whether `path` is a file someone may execute.
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether packages can be installed here without asking anyone: root on a Debian-like system.
pub fn can_apt_install() -> bool {
    is_root() && find_program("apt-get").is_some()
}

static APT_UPDATED: AtomicBool = AtomicBool::new(false);

/// Installs `package` with apt-get, non-interactively, refreshing the package lists once per run.
pub async fn apt_install(package: &str) -> anyhow::Result<()> {
    apt_update_once().await?;
    eprintln!("xtask: apt-get install -y {package}");
    run_apt(&["install", "-y", package]).await
}

/// Downloads Debian's `package` into `dir` without installing it (no maintainer scripts, so no
/// service starts) and returns the `.deb`. Needs no root when the package lists are present; as
/// root they are refreshed once per run first.
pub async fn apt_download(package: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    if find_program("apt-get").is_none() {
        bail!("apt-get not found: this is not a Debian-like system");
    }
    if is_root() {
        apt_update_once().await?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    eprintln!("xtask: apt-get download {package} (into {})", dir.display());
    let output = tokio::process::Command::new("apt-get")
        .args(["download", package])
        .current_dir(dir)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run apt-get download")?;
    if !output.status.success() {
        bail!(
            "apt-get download {package} failed ({}): {}",
            output.status,
            output_text(&output)
        );
    }
    let prefix = format!("{package}_");
    std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension().is_some_and(|ext| ext == "deb")
                && path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with(&prefix))
        })
        .max()
        .with_context(|| {
            format!(
                "apt-get download {package} left no .deb in {}",
                dir.display()
            )
        })
}

/// What `apt-cache policy` says of `package` (installed and candidate versions), after
/// refreshing the package lists once per run: a fresh container has none, and then knows of no
/// package at all.
pub async fn apt_policy(package: &str) -> anyhow::Result<String> {
    apt_update_once().await?;
    let output = tokio::process::Command::new("apt-cache")
        .args(["policy", package])
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run apt-cache")?;
    if !output.status.success() {
        bail!(
            "apt-cache policy {package} failed ({}): {}",
            output.status,
            output_text(&output)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

async fn apt_update_once() -> anyhow::Result<()> {
    if !APT_UPDATED.swap(true, Ordering::SeqCst) {
        eprintln!("xtask: apt-get update");
        run_apt(&["update"]).await?;
    }
    Ok(())
}

async fn run_apt(args: &[&str]) -> anyhow::Result<()> {
    let status = tokio::process::Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .await
        .context("cannot run apt-get")?;
    if !status.success() {
        bail!("apt-get {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// A command that runs `program` as `user` (through runuser, else su), or as ourselves when
/// `user` is `None`.
pub fn command_as(user: Option<&str>, program: &Path, args: &[String]) -> tokio::process::Command {
    let Some(user) = user else {
        let mut command = tokio::process::Command::new(program);
        command.args(args);
        return command;
    };
    if let Some(runuser) = find_program("runuser") {
        let mut command = tokio::process::Command::new(runuser);
        command.args(["-u", user, "--"]).arg(program).args(args);
        command
    } else {
        let line = std::iter::once(program.to_string_lossy().into_owned())
            .chain(args.iter().cloned())
            .map(|word| shell_quote(&word))
            .collect::<Vec<_>>()
            .join(" ");
        let mut command = tokio::process::Command::new("su");
        command.args([user, "-s", "/bin/sh", "-c", &line]);
        command
    }
}

/// `word` quoted for a POSIX shell.
pub fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// `path` as a string argument for a child process.
pub fn arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Gives `path` (recursively) to `user`, unless it is theirs already.
pub fn chown_to(path: &Path, user: &str, uid: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata(path).is_ok_and(|m| m.uid() == uid) {
        return Ok(());
    }
    let status = Command::new("chown")
        .args(["-R", &format!("{user}:")])
        .arg(path)
        .status()
        .context("cannot run chown")?;
    if !status.success() {
        bail!("chown -R {user}: {} failed", path.display());
    }
    Ok(())
}

/// A port on 127.0.0.1 nobody listens on: `preferred`, a neighbour, or one the kernel picks.
pub fn free_port(preferred: u16) -> anyhow::Result<u16> {
    let neighbours = (0..50).filter_map(|offset| preferred.checked_add(offset));
    for port in neighbours {
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("no free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// Sends `signal` to a process.
pub fn signal_process(pid: u32, signal: Signal) {
    if let Some(pid) = unix_pid(pid) {
        // A process that is already gone is the expected case at shutdown, so failures are quiet.
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// How [`terminate`] ended a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It had exited before.
    Already,
    /// It exited on SIGTERM.
    OnTerm,
    /// It had to be killed.
    Killed,
}

/// Stops a child server: SIGTERM, then SIGKILL if it has not exited within five seconds. For
/// `Drop` impls, so it blocks.
pub fn terminate(child: &mut std::process::Child) -> Ended {
    if let Ok(Some(_)) = child.try_wait() {
        return Ended::Already;
    }
    signal_process(child.id(), Signal::TERM);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return Ended::OnTerm;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    Ended::Killed
}

/// `cargo nextest run` of the binaries `filter` picks, with the suite's main-step arguments (so
/// nothing is rebuilt); without nextest, `cargo test` with the arguments `fallback` adds. For the
/// suite's extra passes against other servers.
pub fn test_pass(
    fallback: impl FnOnce(&mut tokio::process::Command) -> anyhow::Result<()>,
    filter: &str,
) -> anyhow::Result<tokio::process::Command> {
    let cargo = cargo();
    let mut command = tokio::process::Command::new(&cargo);
    if succeeds(&cargo, ["nextest", "--version"]) {
        command.args([
            "nextest",
            "run",
            "--workspace",
            "--all-targets",
            "--no-fail-fast",
            "-E",
            filter,
        ]);
    } else {
        fallback(&mut command)?;
    }
    Ok(command)
}

/// Sends `signal` to every process of a process group.
pub fn signal_group(pgid: u32, signal: Signal) {
    if let Some(pgid) = unix_pid(pgid) {
        // A group that has already emptied is the expected case at shutdown, so failures are quiet.
        let _ = rustix::process::kill_process_group(pgid, signal);
    }
}

/// `id` as a process id; none for 0 or an id past `pid_t`'s range, which `kill(2)` would take for
/// our own process group or for some other group rather than the process meant.
fn unix_pid(id: u32) -> Option<Pid> {
    i32::try_from(id).ok().and_then(Pid::from_raw)
}

/// The last `lines` lines of a text file, for error messages about a server that would not start.
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The combined output of a finished command, for error messages.
pub fn output_text(output: &std::process::Output) -> String {
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    text.trim().to_owned()
}

/// Whether `program` runs and exits successfully with `args` (e.g. a `--version` probe).
pub fn succeeds<P, I, S>(program: P, args: I) -> bool
where
    P: AsRef<OsStr>,
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The cargo that runs us (so a toolchain override applies to nested builds too).
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use super::*;

    fn sleeper_in_its_own_group() -> Child {
        let mut command = Command::new("sleep");
        command
            .arg("60")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        command.spawn().unwrap()
    }

    /// The signal that ended `child`, waiting up to five seconds (killing it if it never ends).
    fn ending_signal(child: &mut Child) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                return status.signal();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    #[test]
    fn a_signal_sent_to_a_process_ends_it_by_that_signal() {
        let mut child = sleeper_in_its_own_group();
        signal_process(child.id(), Signal::INT);
        assert_eq!(ending_signal(&mut child), Some(Signal::INT.as_raw()));
    }

    // Reads /proc to see the grandchild end.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_signal_sent_to_a_group_reaches_its_leader_and_the_leaders_children() {
        use std::io::BufRead;
        let mut leader = Command::new("sh")
            .args(["-c", "sleep 60 & echo $!; wait"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(leader.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let grandchild: u32 = line.trim().parse().unwrap();

        signal_group(leader.id(), Signal::TERM);

        assert_eq!(ending_signal(&mut leader), Some(Signal::TERM.as_raw()));
        let deadline = Instant::now() + Duration::from_secs(5);
        while is_alive(grandchild) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let still_alive = is_alive(grandchild);
        if still_alive {
            signal_process(grandchild, Signal::KILL);
        }
        assert!(!still_alive, "the leader's child outlived the group signal");
    }

    #[cfg(target_os = "linux")]
    /// Whether `pid` runs (a zombie waiting for a reaper that may never come does not).
    fn is_alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            // The state follows the command name, which is in parentheses.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X")
        })
    }

    #[test]
    fn terminate_stops_a_child_on_sigterm() {
        let mut child = sleeper_in_its_own_group();
        assert_eq!(terminate(&mut child), Ended::OnTerm);
        assert_eq!(terminate(&mut child), Ended::Already);
    }

    #[test]
    fn no_process_id_is_read_as_a_group() {
        assert!(unix_pid(0).is_none());
        assert!(unix_pid(u32::MAX).is_none());
        assert_eq!(unix_pid(42), Pid::from_raw(42));
    }
}
