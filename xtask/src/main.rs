//! `cargo xtask`: Strata's developer commands.
//!
//! Every command first finds or starts PostgreSQL and Redis (see [`stack`]), and stops the
//! servers it started on the way out, whether the command succeeds, fails or is interrupted.

mod database;
#[cfg(test)]
mod layering;
mod process;
mod seed;
mod stack;
mod suite;
mod system;
mod up;
mod urls;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::process::{Interrupted, Shutdown, Signal};
use crate::seed::SeedOptions;
use crate::stack::Stack;

/// Strata's developer commands. PostgreSQL and Redis come from DATABASE_URL / REDIS_URL when they
/// answer, else 127.0.0.1:5432 / 127.0.0.1:6379, else private servers started (and stopped) here.
#[derive(Parser)]
#[command(name = "xtask", bin_name = "cargo xtask", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run Strata locally: servers, migrations, demo accounts and the API, until Ctrl-C.
    Up {
        /// Port for the API on 127.0.0.1.
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Run every test (nextest if installed, then doc tests) against real PostgreSQL and Redis.
    Test {
        /// Extra arguments for the test runner, after `--` (e.g. a test name filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Create the application database if it is missing and apply pending migrations.
    Migrate,
    /// Migrate, then create the demo accounts and, optionally, generated customers (never in production).
    Seed {
        /// Also create this many customers, user-1@seed.strata.test and on.
        #[arg(long, default_value_t = 0)]
        users: u64,
        /// Seed of the generated data: the same seed gives the same data.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Drop the application database and its Redis keys, then migrate and seed the demo accounts
    /// again (never in production).
    Reset,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let shutdown = match Shutdown::install() {
        Ok(shutdown) => shutdown,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    match supervise(cli.command, &shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => match error.downcast_ref::<Interrupted>() {
            // The shell's convention: 128 + the signal number.
            Some(Interrupted(signal)) => {
                eprintln!("xtask: {error}");
                ExitCode::from(match signal {
                    Signal::Interrupt => 130,
                    Signal::Terminate => 143,
                })
            }
            None => {
                eprintln!("xtask: error: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Runs `command` until it ends or a stop request arrives. A command running a child (tests, the
/// API) ends itself on a stop request once the child has stopped; any other is abandoned at once.
/// Either way the command's [`Stack`] is dropped before this returns, stopping private servers.
async fn supervise(command: Command, shutdown: &Shutdown) -> anyhow::Result<()> {
    let run = run(command, shutdown);
    tokio::pin!(run);
    tokio::select! {
        result = &mut run => result,
        signal = shutdown.requested() => {
            if shutdown.child_running() {
                run.await
            } else {
                Err(Interrupted(signal).into())
            }
        }
    }
}

async fn run(command: Command, shutdown: &Shutdown) -> anyhow::Result<()> {
    match command {
        Command::Up { port } => up::run(port, shutdown).await,
        Command::Test { args } => suite::run(&args, shutdown).await,
        Command::Migrate => {
            let stack = Stack::start().await?;
            database::migrate(&stack).await
        }
        Command::Seed { users, seed } => {
            seed::refuse_production()?;
            let stack = Stack::start().await?;
            database::migrate(&stack).await?;
            seed::seed(&stack, SeedOptions { users, seed }).await
        }
        Command::Reset => {
            seed::refuse_production()?;
            let stack = Stack::start().await?;
            database::drop_database(&stack).await?;
            seed::clear_cache(&stack).await?;
            database::migrate(&stack).await?;
            seed::demo_accounts(&stack).await
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command};

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn arguments_after_a_double_dash_go_to_the_test_runner() {
        let cli = Cli::try_parse_from(["xtask", "test", "--", "-E", "test(login)"]).unwrap();
        let Command::Test { args } = cli.command else {
            panic!("not the test command");
        };
        assert_eq!(args, ["-E", "test(login)"]);
    }

    #[test]
    fn seeding_defaults_to_the_demo_accounts_and_seed_42() {
        let cli = Cli::try_parse_from(["xtask", "seed"]).unwrap();
        let Command::Seed { users, seed } = cli.command else {
            panic!("not the seed command");
        };
        assert_eq!((users, seed), (0, 42));
        assert!(Cli::try_parse_from(["xtask", "seed", "--products", "3"]).is_err());
    }
}
