//! The alert rules' gate: `promtool check rules` on `deploy/prometheus/strata-rules.yaml`, then
//! `promtool test rules` on its unit tests, which feed every alert synthetic series (fires when it
//! should, not before its `for:`, not when healthy). promtool ships in Debian's `prometheus`
//! package: when it is not on PATH, the package is downloaded (not installed: installing it would
//! start a Prometheus server and a node exporter on the machine) and unpacked once under
//! `target/xtask/promtool/`; elsewhere than Debian the step fails saying what to install.

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

/// promtool from PATH, else from Debian's `prometheus` package, downloaded and unpacked here once.
async fn install() -> anyhow::Result<PathBuf> {
    if let Some(promtool) = system::find_program("promtool") {
        return Ok(promtool);
    }
    let home = system::state_dir().join("promtool");
    let unpacked = home.join("root").join("usr").join("bin").join("promtool");
    if system::is_executable(&unpacked) {
        return Ok(unpacked);
    }
    let package = system::apt_download("prometheus", &home)
        .await
        .context("promtool not found: put it on PATH (Debian's prometheus package has it)")?;
    eprintln!("xtask: unpacking promtool from {}", package.display());
    let status = Command::new("dpkg-deb")
        .arg("--extract")
        .arg(&package)
        .arg(home.join("root"))
        .status()
        .await
        .context("cannot run dpkg-deb")?;
    if !status.success() {
        bail!("dpkg-deb --extract {} failed ({status})", package.display());
    }
    if !system::is_executable(&unpacked) {
        bail!("{} holds no usr/bin/promtool", package.display());
    }
    Ok(unpacked)
}
