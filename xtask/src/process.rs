//! Stopping cleanly on Ctrl-C and SIGTERM.
//!
//! The developer commands take over both signals so that the private servers are always stopped.
//! Long-running children (the test runner, the API) run in a process group of their own: a stop
//! request is forwarded to the whole group exactly once, so cargo, nextest and the test binaries
//! all see it, and the command then waits for them before the servers go away.

use std::fmt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::system;

/// How long a child gets to stop after the forwarded signal before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// A stop request this process received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
}

impl Signal {
    fn unix(self) -> system::Signal {
        match self {
            Self::Interrupt => system::Signal::INT,
            Self::Terminate => system::Signal::TERM,
        }
    }
}

/// The error a command returns when a stop request ended it early.
#[derive(Debug)]
pub struct Interrupted(pub Signal);

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Signal::Interrupt => f.write_str("interrupted (SIGINT)"),
            Signal::Terminate => f.write_str("terminated (SIGTERM)"),
        }
    }
}

impl std::error::Error for Interrupted {}

/// Watches for stop requests, and counts the children currently handling them.
#[derive(Clone)]
pub struct Shutdown {
    requested: watch::Receiver<Option<Signal>>,
    children: Arc<AtomicUsize>,
}

impl Shutdown {
    /// Takes over SIGINT and SIGTERM for the rest of the process's life.
    pub fn install() -> anyhow::Result<Self> {
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let (sender, requested) = watch::channel(None);
        tokio::spawn(async move {
            loop {
                let received = tokio::select! {
                    Some(()) = interrupt.recv() => Signal::Interrupt,
                    Some(()) = terminate.recv() => Signal::Terminate,
                    else => break,
                };
                // The first request decides; repeating it would make nextest kill tests abruptly.
                sender.send_if_modified(|current| {
                    let first = current.is_none();
                    if first {
                        *current = Some(received);
                    }
                    first
                });
            }
        });
        Ok(Self {
            requested,
            children: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Resolves when a stop request has arrived (at once if one already has).
    pub async fn requested(&self) -> Signal {
        let mut requested = self.requested.clone();
        match requested.wait_for(Option::is_some).await {
            Ok(signal) => signal.unwrap_or(Signal::Terminate),
            // The watcher only ends with the runtime; no request can come any more.
            Err(_) => std::future::pending().await,
        }
    }

    /// The stop request, if one has arrived.
    pub fn pending(&self) -> Option<Signal> {
        *self.requested.borrow()
    }

    /// Whether a supervised child is running (and will end the command itself on a stop request).
    pub fn child_running(&self) -> bool {
        self.children.load(Ordering::SeqCst) > 0
    }
}

/// How a supervised child ended.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    /// It exited by itself.
    Exited(ExitStatus),
    /// A stop request was forwarded to it and it has stopped.
    Stopped(Signal),
}

/// A child in its own process group that is stopped, with everything it started, on a stop request.
pub struct Supervised {
    child: Child,
    pgid: u32,
    name: String,
    shutdown: Shutdown,
    reaped: bool,
}

impl Supervised {
    /// Starts `command` in a new process group.
    pub fn spawn(mut command: Command, name: &str, shutdown: &Shutdown) -> anyhow::Result<Self> {
        if let Some(signal) = shutdown.pending() {
            return Err(Interrupted(signal).into());
        }
        command.process_group(0).kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let pgid = child
            .id()
            .with_context(|| format!("{name} exited before it could be supervised"))?;
        shutdown.children.fetch_add(1, Ordering::SeqCst);
        Ok(Self {
            child,
            pgid,
            name: name.to_owned(),
            shutdown: shutdown.clone(),
            reaped: false,
        })
    }

    /// The child's process id (also its process group's).
    pub fn pid(&self) -> u32 {
        self.pgid
    }

    /// Waits for the child to exit, or forwards a stop request and waits for it to stop.
    pub async fn wait(&mut self) -> anyhow::Result<Outcome> {
        let shutdown = self.shutdown.clone();
        tokio::select! {
            status = self.child.wait() => {
                let status = status.with_context(|| format!("waiting for {}", self.name))?;
                self.reaped = true;
                Ok(Outcome::Exited(status))
            }
            signal = shutdown.requested() => {
                self.stop(signal).await;
                Ok(Outcome::Stopped(signal))
            }
        }
    }

    /// Sends `signal` to the child's process group, then waits for it (killing it if it lingers).
    pub async fn stop(&mut self, signal: Signal) {
        if self.reaped {
            return;
        }
        system::signal_group(self.pgid, signal.unix());
        if tokio::time::timeout(STOP_GRACE, self.child.wait())
            .await
            .is_err()
        {
            eprintln!(
                "xtask: {} did not stop within {}s; killing it",
                self.name,
                STOP_GRACE.as_secs()
            );
            system::signal_group(self.pgid, system::Signal::KILL);
            let _ = self.child.wait().await;
        }
        self.reaped = true;
        // Grandchildren that outlived the leader (a test binary under a killed cargo) go too.
        system::signal_group(self.pgid, system::Signal::KILL);
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if !self.reaped && matches!(self.child.try_wait(), Ok(None)) {
            system::signal_group(self.pgid, system::Signal::KILL);
        }
        self.shutdown.children.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs `command` to completion under supervision; a stop request ends it and returns
/// [`Interrupted`].
pub async fn run(command: Command, name: &str, shutdown: &Shutdown) -> anyhow::Result<ExitStatus> {
    let mut child = Supervised::spawn(command, name, shutdown)?;
    match child.wait().await? {
        Outcome::Exited(status) => Ok(status),
        Outcome::Stopped(signal) => Err(Interrupted(signal).into()),
    }
}
