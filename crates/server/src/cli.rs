//! The `strata` command line, in the library so that deployment tests parse the manifests'
//! commands with the binary's own parser.

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::Settings;
use crate::healthcheck::{Probe, address_of, valid_path};

/// Strata, the commerce and subscriptions API.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about)]
pub struct Cli {
    /// What to do; `serve` when left out.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands: the processes a deployment runs, and the operators' one-shot tools.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Run background jobs (renewals, reports) until SIGTERM.
    Worker,
    /// Apply pending database migrations, then exit.
    Migrate,
    /// Probe the process next door once (a container's health check): exit 0 on a 200, else 1
    /// with one line saying what answered.
    Healthcheck(HealthcheckArgs),
    /// Administer users.
    Admin {
        /// What to change.
        #[command(subcommand)]
        command: AdminCommand,
    },
}

/// `strata admin …`: changes to users that only an operator with database access may make.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Give an existing user the admin role (how the first admin is made).
    Grant {
        /// The user's email.
        email: String,
    },
    /// Take the admin role away; the user's access tokens stop working at once.
    Revoke {
        /// The user's email.
        email: String,
    },
}

/// `strata healthcheck`: what to probe. The defaults read the same settings as the process probed.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthcheckArgs {
    /// Probe `strata worker` (its liveness on STRATA_WORKER_METRICS_PORT) instead of the API's
    /// readiness on STRATA_PORT.
    #[arg(long)]
    pub worker: bool,
    /// The path to GET [default: /health/ready; /health/live with --worker].
    #[arg(long, value_parser = valid_path)]
    pub path: Option<String>,
    /// The port [default: STRATA_PORT; STRATA_WORKER_METRICS_PORT with --worker].
    #[arg(long)]
    pub port: Option<u16>,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub timeout_secs: u64,
}

impl HealthcheckArgs {
    /// The port and path these arguments ask for, with the defaults taken from the probed
    /// process's settings: the API's readiness on `STRATA_PORT`, or the worker's liveness on
    /// `STRATA_WORKER_METRICS_PORT`.
    pub fn target(&self, settings: &Settings) -> anyhow::Result<(u16, String)> {
        let (port, path) = if self.worker {
            let port = match self.port {
                Some(port) => port,
                None => settings.worker.metrics_port.context(
                    "strata worker serves no probe: STRATA_WORKER_METRICS_PORT is not set \
                     (or pass --port)",
                )?,
            };
            (port, "/health/live")
        } else {
            (self.port.unwrap_or(settings.http.port), "/health/ready")
        };
        Ok((port, self.path.clone().unwrap_or_else(|| path.to_owned())))
    }

    /// The probe itself: [`Self::target`] on `STRATA_HOST` (a wildcard is reached on loopback).
    pub async fn probe(&self, settings: &Settings) -> anyhow::Result<Probe> {
        let (port, path) = self.target(settings)?;
        let host = &settings.http.host;
        let address = address_of(host, port)
            .await
            .with_context(|| format!("cannot resolve STRATA_HOST {host}"))?;
        Ok(Probe {
            address,
            path,
            timeout: std::time::Duration::from_secs(self.timeout_secs),
        })
    }
}
