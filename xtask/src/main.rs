//! `cargo xtask`: Strata's developer commands.
//!
//! Every command first finds or starts PostgreSQL and Redis (see [`stack`]), and stops the
//! servers it started on the way out, whether the command succeeds, fails or is interrupted.

mod bench;
mod bench_export;
mod bulk;
mod client;
mod database;
#[cfg(test)]
mod layering;
mod openapi;
mod pgbouncer;
mod process;
mod promtool;
mod redis_cluster;
mod schemathesis;
mod seed;
mod stack;
mod suite;
mod system;
mod up;
mod urls;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::bench_export::BenchOptions;
use crate::process::{Interrupted, Shutdown, Signal};
use crate::seed::SeedOptions;
use crate::stack::Stack;

/// Strata's developer commands. PostgreSQL and Redis come from DATABASE_URL / REDIS_URL when a real
/// login succeeds, else 127.0.0.1:5432 / 127.0.0.1:6379 when they let us in, else private servers
/// started (and stopped) here.
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
    /// Check the alert rules and run their unit tests with promtool (unpacked from Debian's
    /// package when missing); `test` runs this too.
    Promtool,
    /// Create the application database if it is missing and apply pending migrations.
    Migrate,
    /// Migrate, then create the demo accounts and products and, optionally, generated customers,
    /// products and orders (never in production).
    Seed {
        /// Also create this many customers, user-1@seed.strata.test and on.
        #[arg(long, default_value_t = 0)]
        users: u64,
        /// Also create this many products (SKU-000001-… and on).
        #[arg(long, default_value_t = 0)]
        products: u64,
        /// Also create this many past orders, spread over the users and products in the database
        /// (after this run's users and products are created).
        #[arg(long, default_value_t = 0)]
        orders: u64,
        /// Seed of the generated data: the same seed gives the same data.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Drop the application database and its Redis keys, then migrate and seed the demo accounts
    /// again (never in production).
    Reset,
    /// Write the OpenAPI document generated from the code to docs/openapi.json (no servers
    /// needed).
    Openapi {
        /// Write nothing; fail when docs/openapi.json differs from the generated document.
        #[arg(long)]
        check: bool,
    },
    /// Benchmark the HTTP API with wrk: seeds the benchmark database (10k products, 1k users, 100k
    /// orders), serves a release build without throttling budgets, prints rps / p50 / p99 /
    /// errors per scenario and writes target/bench/results.json.
    Bench {
        /// Scenarios to run, comma-separated (default: all, in this order).
        #[arg(long, value_delimiter = ',', value_parser = bench::SCENARIOS)]
        scenarios: Vec<String>,
        /// Seconds per measured scenario (after a warm-up of up to 3 s).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
        duration: u64,
        /// Connections of each scenario (the keep-alive scenario `c10k` always uses 10,000).
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=5000))]
        connections: u32,
        /// Also measure ../shared/bench's Fastify peer and actix-web ceiling in the same run and
        /// print Strata's ratios to them (needs node and npm).
        #[arg(long)]
        peers: bool,
    },
    /// Benchmark the streamed order export against the development database: rows per second and
    /// the server's memory growth, with a release build (writes target/bench/export.json).
    BenchExport {
        /// Make sure the development database holds at least this many orders (seeding the
        /// missing ones first).
        #[arg(long, default_value_t = 1_000_000)]
        orders: u64,
        /// STRATA_EXPORT_BATCH_SIZE for the server under test (default: the server's own).
        #[arg(long)]
        batch_size: Option<usize>,
        /// Runs of each format; the median is reported (and the best, and every run).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
        repeat: u32,
    },
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
        Command::Promtool => promtool::run(shutdown).await,
        Command::Migrate => {
            let stack = Stack::start().await?;
            database::migrate(&stack).await
        }
        Command::Seed {
            users,
            products,
            orders,
            seed,
        } => {
            seed::refuse_production()?;
            let stack = Stack::start().await?;
            database::migrate(&stack).await?;
            let options = SeedOptions {
                users,
                products,
                orders,
                seed,
            };
            seed::seed(&stack, options).await
        }
        Command::Openapi { check } => openapi::run(check),
        Command::Bench {
            scenarios,
            duration,
            connections,
            peers,
        } => {
            let options = bench::Options {
                scenarios,
                duration,
                connections,
                peers,
            };
            bench::run(options, shutdown).await
        }
        Command::BenchExport {
            orders,
            batch_size,
            repeat,
        } => {
            let options = BenchOptions {
                orders,
                batch_size,
                repeat,
            };
            bench_export::run(options, shutdown).await
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
    fn openapi_writes_or_checks() {
        let cli = Cli::try_parse_from(["xtask", "openapi"]).unwrap();
        assert!(matches!(cli.command, Command::Openapi { check: false }));
        let cli = Cli::try_parse_from(["xtask", "openapi", "--check"]).unwrap();
        assert!(matches!(cli.command, Command::Openapi { check: true }));
    }

    #[test]
    fn the_export_benchmark_defaults_to_a_million_orders() {
        let cli = Cli::try_parse_from(["xtask", "bench-export"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::BenchExport {
                orders: 1_000_000,
                batch_size: None,
                repeat: 3
            }
        ));
        let cli = Cli::try_parse_from([
            "xtask",
            "bench-export",
            "--orders",
            "5000",
            "--batch-size",
            "500",
            "--repeat",
            "1",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::BenchExport {
                orders: 5000,
                batch_size: Some(500),
                repeat: 1
            }
        ));
    }

    #[test]
    fn the_http_benchmark_takes_scenarios_duration_connections_and_peers() {
        let cli = Cli::try_parse_from(["xtask", "bench"]).unwrap();
        let Command::Bench {
            scenarios,
            duration,
            connections,
            peers,
        } = cli.command
        else {
            panic!("not the bench command");
        };
        assert!(scenarios.is_empty());
        assert_eq!((duration, connections, peers), (10, 64, false));
        let cli = Cli::try_parse_from([
            "xtask",
            "bench",
            "--scenarios",
            "get_product,c10k",
            "--duration",
            "5",
            "--connections",
            "128",
            "--peers",
        ])
        .unwrap();
        let Command::Bench {
            scenarios,
            duration,
            connections,
            peers,
        } = cli.command
        else {
            panic!("not the bench command");
        };
        assert_eq!(scenarios, ["get_product", "c10k"]);
        assert_eq!((duration, connections, peers), (5, 128, true));
        assert!(Cli::try_parse_from(["xtask", "bench", "--scenarios", "nope"]).is_err());
        assert!(Cli::try_parse_from(["xtask", "bench", "--duration", "0"]).is_err());
    }

    #[test]
    fn seeding_defaults_to_the_demo_data_and_seed_42() {
        let cli = Cli::try_parse_from(["xtask", "seed"]).unwrap();
        let Command::Seed {
            users,
            products,
            orders,
            seed,
        } = cli.command
        else {
            panic!("not the seed command");
        };
        assert_eq!((users, products, orders, seed), (0, 0, 0, 42));
        assert!(Cli::try_parse_from(["xtask", "seed", "--plans", "3"]).is_err());
    }

    #[test]
    fn seeding_takes_users_products_orders_and_a_seed() {
        let cli = Cli::try_parse_from([
            "xtask",
            "seed",
            "--users",
            "1000",
            "--products",
            "100000",
            "--orders",
            "1000000",
            "--seed",
            "7",
        ])
        .unwrap();
        let Command::Seed {
            users,
            products,
            orders,
            seed,
        } = cli.command
        else {
            panic!("not the seed command");
        };
        assert_eq!(
            (users, products, orders, seed),
            (1000, 100_000, 1_000_000, 7)
        );
        assert!(Cli::try_parse_from(["xtask", "seed", "--orders", "-1"]).is_err());
    }
}
