//! `cargo xtask test`: the whole test suite against real PostgreSQL and Redis.
//!
//! Tests isolate themselves (a database per test cloned from a migrated template, a random Redis
//! key prefix), so they only need to know where the servers are: DATABASE_URL points at the
//! server's `postgres` maintenance database and REDIS_URL at Redis.

use anyhow::bail;
use tokio::process::Command;

use crate::database;
use crate::process::{self, Shutdown};
use crate::stack::{self, PG_BIN_VARIABLE, PRIVATE_KNOB, REDIS_SERVER_VARIABLE, Stack};
use crate::system;

/// Runs every test target, then the doc tests; fails if either fails.
pub async fn run(extra_args: &[String], shutdown: &Shutdown) -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    database::drop_leftover_test_databases(&stack).await?;
    let (pg_bin, redis_server) = stack::server_binaries().await?;

    let cargo = system::cargo();
    let mut main_step: Vec<String> = if system::succeeds(&cargo, ["nextest", "--version"]) {
        [
            "nextest",
            "run",
            "--workspace",
            "--all-targets",
            "--no-fail-fast",
        ]
        .map(str::to_owned)
        .to_vec()
    } else {
        eprintln!(
            "xtask: cargo-nextest not found; using cargo test (cargo install cargo-nextest for faster runs)"
        );
        ["test", "--workspace", "--all-targets", "--no-fail-fast"]
            .map(str::to_owned)
            .to_vec()
    };
    main_step.extend(extra_args.iter().cloned());
    // nextest does not run doc tests, and cargo test --all-targets leaves them out too. They run
    // first so that the test runner's summary of the whole suite is the last thing printed.
    let doc_step: Vec<String> = ["test", "--workspace", "--doc"].map(str::to_owned).to_vec();

    let mut failed = Vec::new();
    for step in [doc_step, main_step] {
        let label = format!("cargo {}", step.join(" "));
        eprintln!("xtask: {label}");
        let mut command = Command::new(&cargo);
        command
            .args(&step)
            .env("DATABASE_URL", stack.maintenance_url())
            .env("REDIS_URL", stack.redis_url())
            .env(PG_BIN_VARIABLE, &pg_bin)
            .env(REDIS_SERVER_VARIABLE, &redis_server)
            .env_remove(PRIVATE_KNOB);
        let status = process::run(command, &label, shutdown).await?;
        if !status.success() {
            failed.push(label);
        }
    }
    eprintln!("xtask: the PostgreSQL and API tests again, through PgBouncer (transaction pooling)");
    if let Err(error) = crate::pgbouncer::run(&stack, extra_args, shutdown).await {
        eprintln!("xtask: pgbouncer: {error:#}");
        failed.push("the tests through PgBouncer".to_owned());
    }
    if let Some(step) = crate::redis_cluster::run(extra_args, shutdown).await? {
        failed.push(step);
    }
    // The contract test needs the `strata` binary the main step built.
    eprintln!("xtask: contract test (schemathesis against a live server)");
    if let Err(error) = crate::schemathesis::run(&stack, shutdown).await {
        eprintln!("xtask: contract test: {error:#}");
        failed.push("the contract test".to_owned());
    }
    if extra_args.is_empty() {
        eprintln!("xtask: alert rules (promtool check and unit tests)");
        if let Err(error) = crate::promtool::run(shutdown).await {
            if error.is::<process::Interrupted>() {
                return Err(error);
            }
            eprintln!("xtask: promtool: {error:#}");
            failed.push("the alert rules' promtool tests".to_owned());
        }
    } else {
        eprintln!("xtask: promtool: skipped (test runner arguments given)");
    }
    if !failed.is_empty() {
        bail!("failed: {}", failed.join("; "));
    }
    eprintln!("xtask: every test step passed");
    Ok(())
}
