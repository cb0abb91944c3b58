//! `strata`: serve the API, run the background worker, migrate the database, or administer users.

use anyhow::Context;
use clap::Parser as _;
use secrecy::ExposeSecret as _;
use strata_server::cli::{AdminCommand, Cli, Command};
use strata_server::{Application, Components, Settings, telemetry};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "strata failed");
            eprintln!("strata: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (settings, unknown) = Settings::from_env_reporting_unknown()?;
    // A health check prints one line and nothing else: no telemetry, no warnings about settings
    // the probed process has already reported at its start.
    let service = match &cli.command {
        Some(Command::Healthcheck(args)) => return healthcheck(&settings, args).await,
        None | Some(Command::Serve) => telemetry::Service::Api,
        Some(Command::Worker) => telemetry::Service::Worker,
        Some(Command::Migrate) => telemetry::Service::Migrate,
        Some(Command::Admin { .. }) => telemetry::Service::Admin,
    };
    let _telemetry = telemetry::init_for(
        service,
        &settings.telemetry.log,
        settings.telemetry.log_format,
        std::io::stdout,
    );
    for unknown in unknown {
        tracing::warn!(
            variable = %unknown.variable,
            suggestion = unknown.suggestion.as_deref(),
            "{unknown}"
        );
    }
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = Application::build(&settings)?;
            tracing::info!(host = %settings.http.host, port = app.port(), "strata listening");
            app.run_until_signalled().await
        }
        Command::Worker => {
            let components = Components::build(&settings)?;
            let worker = components.worker(&settings);
            strata_server::app::run_worker_until_signalled(worker, &components, &settings).await
        }
        Command::Healthcheck(args) => healthcheck(&settings, &args).await,
        Command::Migrate => {
            let applied = strata_postgres::run_migrations(settings.database.url.expose_secret())
                .await
                .context("migrating the database at DATABASE_URL")?;
            tracing::info!(count = applied.len(), versions = ?applied, "migrations applied");
            println!("applied {} migration(s)", applied.len());
            Ok(())
        }
        Command::Admin { command } => {
            let users = Components::build(&settings)?.users;
            let (changed, email, done) = match &command {
                AdminCommand::Grant { email } => {
                    (users.grant_admin(email).await, email, "is now an admin")
                }
                AdminCommand::Revoke { email } => (
                    users.revoke_admin(email).await,
                    email,
                    "is no longer an admin",
                ),
            };
            let user = changed
                .map_err(|error| anyhow::anyhow!("cannot change the role of {email}: {error}"))?;
            println!("{} {done} (id {})", user.email, user.id);
            Ok(())
        }
    }
}

/// One probe of the API (or, with `--worker`, of the worker) listening per `settings`.
async fn healthcheck(
    settings: &Settings,
    args: &strata_server::cli::HealthcheckArgs,
) -> anyhow::Result<()> {
    let probe = args.probe(settings).await?;
    let status = strata_server::healthcheck::check(&probe).await?;
    println!("GET http://{}{}: {status}", probe.address, probe.path);
    Ok(())
}
