//! The alert rules' gate: `promtool check rules` on `deploy/prometheus/strata-rules.yaml`, then
//! `promtool test rules` on its unit tests, which feed every alert synthetic series (fires when it
//! should, not before its `for:`, not when healthy). promtool ships in Debian's `prometheus`
//! package, installed on first use where packages can be installed (root on Debian; the package's
//! services are left to the system's policy); elsewhere the step fails saying what to install.

use std::path::PathBuf;

use anyhow::{Context, bail};
use tokio::process::Command;

use crate::process::{self, Shutdown};
use crate::system;

/// The rules file and its promtool tests, under `deploy/prometheus/`.
const RULES: &str = "strata-rules.yaml";
const TESTS: &str = "strata-rules.test.yaml";

/// Checks the alert rules and runs their unit tests; fails if promtool finds anything.
pub async fn run(shutdown: &Shutdown) -> anyhow::Result<()> {
    let promtool = install().await?;
    let dir = system::workspace_root().join("deploy").join("prometheus");
    for (verb, file) in [("check", RULES), ("test", TESTS)] {
        let label = format!("promtool {verb} rules {file}");
        eprintln!("xtask: {label}");
        let mut command = Command::new(&promtool);
        command.args([verb, "rules"]).arg(dir.join(file));
        let status = process::run(command, &label, shutdown).await?;
        if !status.success() {
            bail!("{label} failed ({status})");
        }
    }
    Ok(())
}

/// promtool from PATH, else from Debian's `prometheus` package, installed now.
async fn install() -> anyhow::Result<PathBuf> {
    if let Some(promtool) = system::find_program("promtool") {
        return Ok(promtool);
    }
    if !system::can_apt_install() {
        bail!(
            "promtool not found: install Debian's prometheus package \
             (`sudo apt-get install --no-install-recommends prometheus`) or put promtool on PATH"
        );
    }
    system::apt_install("prometheus").await?;
    system::find_program("promtool").context("the prometheus package installed no promtool")
}
