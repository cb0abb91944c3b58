//! The suite's pass of the Redis adapter tests on a Redis Cluster.
//!
//! Production may run Redis as a cluster (`STRATA_REDIS_CLUSTER=true`), where every key lives on
//! the master that owns its hash slot, a script or a MULTI block touching keys of two slots is
//! refused, and SCAN sees one node's keys only. `cargo xtask test` therefore runs the tests of
//! `strata-redis` a second time on a private cluster: three `redis-server` masters in cluster mode
//! on free loopback ports (each with its own directory under `target/xtask/redis-cluster/`,
//! nothing persisted), joined by `redis-cli --cluster create`, used once every node reports
//! `cluster_state:ok`. `TEST_REDIS_CLUSTER_URLS` tells the tests where the nodes are (read by
//! `strata_redis::testing`). The nodes are stopped when the pass ends, however it ends.

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::Command;

use crate::process::{self, Interrupted, Shutdown};
use crate::stack::PRIVATE_KNOB;
use crate::stack::PrivateRedis;
use crate::stack::redis::{server_program, stop_leftover};
use crate::system;

/// Names the cluster's nodes, comma-separated, for the tests.
const CLUSTER_URLS_VARIABLE: &str = "TEST_REDIS_CLUSTER_URLS";
/// The fewest masters Redis accepts for a cluster.
const NODES: usize = 3;
/// Where the search for free ports starts. A node also listens on its port + 10000 (the cluster
/// bus), which must be free too; this keeps both clear of the private servers' ports.
const PREFERRED_PORT: u16 = 47001;
const BUS_PORT_OFFSET: u16 = 10_000;
/// The test binaries the pass runs.
const FILTER: &str = "package(strata-redis)";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const LABEL: &str = "the Redis adapter tests on a Redis Cluster";

/// Runs the Redis adapter tests on a private Redis Cluster, with the same test build as the main
/// step. Skipped when the caller narrowed the run with test runner arguments. Answers the failed
/// step's label, if it failed; only an interruption is an error.
pub async fn run(extra_args: &[String], shutdown: &Shutdown) -> anyhow::Result<Option<String>> {
    if !extra_args.is_empty() {
        eprintln!("xtask: redis cluster: skipped (test runner arguments given)");
        return Ok(None);
    }
    eprintln!("xtask: the Redis adapter tests again, on a Redis Cluster");
    match pass(shutdown).await {
        Ok(()) => Ok(None),
        Err(error) if error.is::<Interrupted>() => Err(error),
        Err(error) => {
            eprintln!("xtask: redis cluster: {error:#}");
            Ok(Some(LABEL.to_owned()))
        }
    }
}

async fn pass(shutdown: &Shutdown) -> anyhow::Result<()> {
    let cluster = PrivateCluster::start().await?;
    eprintln!(
        "xtask: redis cluster: {NODES} masters on 127.0.0.1 ports {} (data in {})",
        cluster
            .ports()
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        cluster.dir.display()
    );
    let mut command = system::test_pass(
        |command| {
            command.args([
                "test",
                "-p",
                "strata-redis",
                "--all-targets",
                "--no-fail-fast",
            ]);
            Ok(())
        },
        FILTER,
    )?;
    command
        .env(CLUSTER_URLS_VARIABLE, cluster.seed_urls())
        .env_remove(PRIVATE_KNOB);
    let started = Instant::now();
    let status = process::run(command, LABEL, shutdown).await?;
    eprintln!(
        "xtask: redis cluster: pass took {:.0}s",
        started.elapsed().as_secs_f64()
    );
    if !status.success() {
        bail!(
            "tests failed on the Redis Cluster ({status}); node logs under {}",
            cluster.dir.display()
        );
    }
    Ok(())
}

/// Three cluster-mode `redis-server` masters sharing the 16384 slots, stopped when dropped (each
/// [`PrivateRedis`] stops its server).
struct PrivateCluster {
    nodes: Vec<PrivateRedis>,
    dir: PathBuf,
}

impl PrivateCluster {
    async fn start() -> anyhow::Result<Self> {
        let dir = system::state_dir().join("redis-cluster");
        let mut nodes = Vec::with_capacity(NODES);
        let mut from = PREFERRED_PORT;
        for index in 0..NODES {
            let node_dir = dir.join(format!("node-{index}"));
            stop_leftover(&node_dir.join("redis.pid"));
            // A node remembers its cluster in nodes.conf; an old one would not join a new cluster.
            if node_dir.exists() {
                std::fs::remove_dir_all(&node_dir)
                    .with_context(|| format!("removing {}", node_dir.display()))?;
            }
            let port = free_port_with_bus(from)?;
            nodes.push(
                PrivateRedis::start_in(
                    &node_dir,
                    port,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                    ],
                )
                .await
                .with_context(|| format!("starting cluster node {index}"))?,
            );
            from = port + 1;
        }
        let cluster = Self { nodes, dir };
        cluster.create().await?;
        cluster.wait_until_ok().await?;
        Ok(cluster)
    }

    fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(PrivateRedis::port).collect()
    }

    /// Every node's URL, comma-separated.
    fn seed_urls(&self) -> String {
        self.nodes
            .iter()
            .map(PrivateRedis::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Spreads the slots over the nodes, all masters.
    async fn create(&self) -> anyhow::Result<()> {
        let cli = redis_cli().await?;
        let mut command = Command::new(&cli);
        command
            .args(["--cluster", "create"])
            .args(self.ports().iter().map(|port| format!("127.0.0.1:{port}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(READY_TIMEOUT, command.output())
            .await
            .with_context(|| {
                format!(
                    "redis-cli --cluster create did not finish within {}s",
                    READY_TIMEOUT.as_secs()
                )
            })?
            .with_context(|| format!("cannot run {}", cli.display()))?;
        if !output.status.success() {
            bail!(
                "redis-cli --cluster create failed ({}):\n{}",
                output.status,
                system::output_text(&output)
            );
        }
        Ok(())
    }

    /// Waits until every node serves every slot: a node that has not yet learnt the slot map
    /// answers CLUSTERDOWN.
    async fn wait_until_ok(&self) -> anyhow::Result<()> {
        let cli = redis_cli().await?;
        let deadline = Instant::now() + READY_TIMEOUT;
        for port in self.ports() {
            loop {
                let output = Command::new(&cli)
                    .args([
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &port.to_string(),
                        "cluster",
                        "info",
                    ])
                    .stdin(Stdio::null())
                    .kill_on_drop(true)
                    .output()
                    .await
                    .with_context(|| format!("cannot run {}", cli.display()))?;
                let info = String::from_utf8_lossy(&output.stdout);
                if info.lines().any(|line| line.trim() == "cluster_state:ok") {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "node 127.0.0.1:{port} did not report cluster_state:ok within {}s:\n{}",
                        READY_TIMEOUT.as_secs(),
                        system::output_text(&output)
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }
}

/// `redis-cli`, preferably the one installed beside `redis-server`.
async fn redis_cli() -> anyhow::Result<PathBuf> {
    let server = server_program().await?;
    let beside = server.with_file_name("redis-cli");
    if system::is_executable(&beside) {
        return Ok(beside);
    }
    system::find_program("redis-cli").context(
        "redis-cli not found (it comes with Redis: `sudo apt-get install redis-tools` on \
         Debian/Ubuntu)",
    )
}

/// A port from `from` on, free on 127.0.0.1 together with its cluster bus port.
fn free_port_with_bus(from: u16) -> anyhow::Result<u16> {
    let free = |port: u16| TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok();
    (from..from.saturating_add(500))
        .find(|&port| {
            port.checked_add(BUS_PORT_OFFSET)
                .is_some_and(|bus| free(port) && free(bus))
        })
        .with_context(|| {
            format!("no free pair of ports (p, p + {BUS_PORT_OFFSET}) on 127.0.0.1 from {from} on")
        })
}
