//! `cargo xtask bench-export`: how fast the streamed order export runs, and what it costs the
//! server in memory.
//!
//! Makes sure the development database holds at least `--orders` orders (seeding the missing
//! ones, see [`crate::bulk`]), builds `strata` in release mode, serves it against that database
//! (rate limiting off), and gets an admin token the way the contract test does (register, then
//! `strata admin grant`, then log in). Then, for ndjson and CSV, it streams
//! `GET /v1/admin/exports/orders` as fast as it can read (with `curl | wc -l`, or without curl over
//! a plain TCP connection, decoding the chunked body itself), counting rows, while it samples the
//! server's resident memory (`VmRSS` in `/proc/<pid>/status`) every 50 ms. A last run reads slowly for a few seconds and
//! hangs up, to show that a slow client does not make the server buffer. The numbers are printed
//! and written to `target/bench/export.json`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::process::{self, Shutdown, Signal, Supervised};
use crate::seed::{self, SeedOptions};
use crate::stack::{PRIVATE_KNOB, Stack};
use crate::{client, database, system, urls};

const EMAIL: &str = "bench-export@strata.test";
const PASSWORD: &str = "bench-export-password";
const JWT_SECRET: &str = "bench-export-secret-bench-export-secret";
const EXPORT: &str = "/v1/admin/exports/orders";
/// How often the server's memory is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// The goals on this kind of machine (2 cores): memory flat, throughput well above a real need.
const GOAL_RSS_GROWTH_MIB: f64 = 20.0;
const GOAL_ROWS_PER_SEC: f64 = 100_000.0;
/// The slow client: this many bytes a second, for this long, then it hangs up.
const SLOW_BYTES_PER_SEC: u64 = 256 * 1024;
const SLOW_FOR: Duration = Duration::from_secs(4);

/// What `cargo xtask bench-export` measures against.
#[derive(Debug, Clone, Copy)]
pub struct BenchOptions {
    /// Orders the development database must hold at least.
    pub orders: u64,
    /// `STRATA_EXPORT_BATCH_SIZE` of the server under test; `None` keeps its default.
    pub batch_size: Option<usize>,
    /// Runs of each format (the median is the figure; the machine may be busy).
    pub repeat: u32,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Runs the benchmark; see the module docs.
pub async fn run(options: BenchOptions, shutdown: &Shutdown) -> anyhow::Result<()> {
    seed::refuse_production()?;
    let stack = Stack::start().await?;
    database::migrate(&stack).await?;
    ensure_orders(&stack, options.orders).await?;
    let strata = build_release(shutdown).await?;

    let port = system::free_port(18_600)?;
    let mut serve = Command::new(&strata);
    serve.arg("serve");
    environment(&mut serve, &stack, port, options.batch_size);
    let mut server = Supervised::spawn(serve, "the API under benchmark", shutdown)?;
    let outcome = async {
        client::wait_ready(port, "the API under benchmark").await?;
        let mut grant = Command::new(&strata);
        grant.args(["admin", "grant", EMAIL]);
        environment(&mut grant, &stack, port, options.batch_size);
        let admin = client::Admin {
            email: EMAIL,
            password: PASSWORD,
            display_name: "Export benchmark",
        };
        let token = client::admin_token(port, &admin, grant, shutdown).await?;
        measure(server.pid(), port, &token, options).await
    }
    .await;
    server.stop(Signal::Terminate).await;
    let report = outcome?;
    let path = system::workspace_root()
        .join("target")
        .join("bench")
        .join("export.json");
    write_report(&path, &report)?;
    println!("xtask: wrote {}", path.display());
    Ok(())
}

/// Seeds orders 1..=`wanted` of seed 42 (those missing) when the database holds fewer.
async fn ensure_orders(stack: &Stack, wanted: u64) -> anyhow::Result<()> {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    let count = |table: &'static str| async move {
        let mut conn = AsyncPgConnection::establish(stack.database_url())
            .await
            .with_context(|| {
                format!("cannot connect to {}", urls::redacted(stack.database_url()))
            })?;
        let found = diesel::sql_query(format!("SELECT count(*) AS n FROM {table}"))
            .get_result::<Count>(&mut conn)
            .await
            .with_context(|| format!("counting {table}"))?;
        anyhow::Ok(u64::try_from(found.n).unwrap_or_default())
    };
    let orders = count("orders").await?;
    if orders >= wanted {
        println!("bench: {orders} orders in the database (at least {wanted} wanted)");
        return Ok(());
    }
    let products = count("products").await?;
    println!("bench: {orders} orders in the database; seeding up to {wanted}");
    seed::seed(
        stack,
        SeedOptions {
            users: 0,
            products: if products < 100 { 1_000 } else { 0 },
            orders: wanted,
            seed: 42,
        },
    )
    .await
}

/// `cargo build --release -p strata-server --bin strata`; the binary's path.
async fn build_release(shutdown: &Shutdown) -> anyhow::Result<PathBuf> {
    let mut build = Command::new(system::cargo());
    build.args([
        "build",
        "--release",
        "-p",
        "strata-server",
        "--bin",
        "strata",
    ]);
    eprintln!("xtask: cargo build --release -p strata-server --bin strata");
    let status = process::run(build, "cargo build --release", shutdown).await?;
    if !status.success() {
        bail!("building the release binary failed ({status})");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| system::workspace_root().join("target"), PathBuf::from);
    Ok(target.join("release").join("strata"))
}

/// The server's environment: the development database, rate limiting off, quiet logs.
fn environment(command: &mut Command, stack: &Stack, port: u16, batch_size: Option<usize>) {
    command
        .env("DATABASE_URL", stack.database_url())
        .env("REDIS_URL", stack.redis_url())
        .env(
            "STRATA_REDIS_PREFIX",
            format!("bench:{}:", std::process::id()),
        )
        .env("STRATA_JWT_SECRET", JWT_SECRET)
        .env("STRATA_ENV", "test")
        .env("STRATA_LOG", "warn")
        .env("STRATA_PORT", port.to_string())
        // Nothing here scrapes; any free port keeps the fixed default free.
        .env("STRATA_METRICS_PORT", "0")
        .env("STRATA_HOST", "127.0.0.1")
        .env("STRATA_SHUTDOWN_GRACE_SECS", "0")
        .env("STRATA_RATE_LIMIT_ENABLED", "false")
        .env("STRATA_ARGON2_MEMORY_KIB", "1024")
        .env("STRATA_ARGON2_ITERATIONS", "1")
        .env_remove(PRIVATE_KNOB);
    if let Some(batch_size) = batch_size {
        command.env("STRATA_EXPORT_BATCH_SIZE", batch_size.to_string());
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples the server's memory every [`SAMPLE_EVERY`] until dropped; keeps the peak.
struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(rss_kib(pid).unwrap_or_default()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (peak, stop) = (peak.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(rss) = rss_kib(pid) {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    tokio::time::sleep(SAMPLE_EVERY).await;
                }
            })
        };
        Self { peak, stop, task }
    }

    /// The peak seen, in KiB, after one last sample.
    async fn finish(self, pid: u32) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        if let Some(rss) = rss_kib(pid) {
            self.peak.fetch_max(rss, Ordering::Relaxed);
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// What reading one export took.
struct Transfer {
    status: u16,
    /// Body bytes, after the chunked framing.
    bytes: u64,
    /// Line feeds in the body.
    lines: u64,
    /// Whether the final chunk arrived (the export ended normally).
    complete: bool,
    first_byte: Duration,
    total: Duration,
}

/// Streams `path` as fast as possible (or at `throttle` bytes a second for at most `stop_after`,
/// then hangs up), decoding the chunked body.
async fn transfer(
    port: u16,
    path: &str,
    token: &str,
    throttle: Option<(u64, Duration)>,
) -> anyhow::Result<Transfer> {
    let started = Instant::now();
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
    let mut reader = BufReader::with_capacity(256 * 1024, stream);
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n"
    );
    reader.get_mut().write_all(head.as_bytes()).await?;

    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let first_byte = started.elapsed();
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .context("not an HTTP response")?;
    let mut chunked = false;
    loop {
        line.clear();
        reader.read_line(&mut line).await?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("transfer-encoding")
            && value.trim().eq_ignore_ascii_case("chunked")
        {
            chunked = true;
        }
    }
    let mut transfer = Transfer {
        status,
        bytes: 0,
        lines: 0,
        complete: false,
        first_byte,
        total: Duration::ZERO,
    };
    if !chunked {
        let mut body = Vec::new();
        reader.read_to_end(&mut body).await?;
        transfer.bytes = body.len() as u64;
        transfer.lines = count_lines(&body);
        transfer.complete = true;
        transfer.total = started.elapsed();
        return Ok(transfer);
    }
    let mut chunk = Vec::new();
    loop {
        if let Some((bytes_per_sec, stop_after)) = throttle {
            let elapsed = started.elapsed();
            if elapsed >= stop_after {
                break; // hang up mid-stream
            }
            let allowed = elapsed.as_secs_f64() * bytes_per_sec as f64;
            if transfer.bytes as f64 > allowed {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        }
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            break; // closed before the final chunk: the export failed
        }
        let size = line.trim_end().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size, 16)
            .with_context(|| format!("bad chunk size line {line:?}"))?;
        if size == 0 {
            transfer.complete = true;
            break;
        }
        chunk.resize(size, 0);
        reader.read_exact(&mut chunk).await?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf).await?;
        transfer.bytes += size as u64;
        transfer.lines += count_lines(&chunk);
    }
    transfer.total = started.elapsed();
    Ok(transfer)
}

/// Streams `path` with `curl | wc -l`: both optimised C, so that the client's own work (this
/// crate is built without optimisations) does not cap the figure. `None` without curl.
async fn curl_transfer(port: u16, path: &str, token: &str) -> anyhow::Result<Option<Transfer>> {
    let Some(curl) = system::find_program("curl") else {
        return Ok(None);
    };
    let mut fetch = Command::new(curl);
    fetch
        .args(["-sS", "-o", "-", "-w"])
        .arg("%{stderr}%{http_code} %{size_download} %{time_starttransfer} %{time_total}\n")
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut fetch = fetch.spawn().context("cannot start curl")?;
    let body: Stdio = fetch
        .stdout
        .take()
        .context("curl's output")?
        .try_into()
        .context("piping curl into wc")?;
    let count = Command::new("wc")
        .arg("-l")
        .stdin(body)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start wc")?;
    let (fetched, counted) = tokio::join!(fetch.wait_with_output(), count.wait_with_output());
    let (fetched, counted) = (fetched.context("curl")?, counted.context("wc")?);
    let report = String::from_utf8_lossy(&fetched.stderr);
    let fields: Vec<&str> = report
        .lines()
        .last()
        .unwrap_or_default()
        .split(' ')
        .collect();
    let [status, bytes, first_byte, total] = fields[..] else {
        bail!("curl reported {report:?}");
    };
    let seconds = |raw: &str| raw.parse::<f64>().map(Duration::from_secs_f64);
    Ok(Some(Transfer {
        status: status.parse().context("curl's status")?,
        bytes: bytes.parse().context("curl's size")?,
        lines: String::from_utf8_lossy(&counted.stdout)
            .trim()
            .parse()
            .context("wc's count")?,
        // curl fails (18, partial file) when the body ends without its final chunk.
        complete: fetched.status.success(),
        first_byte: seconds(first_byte).context("curl's time to first byte")?,
        total: seconds(total).context("curl's total time")?,
    }))
}

fn count_lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|byte| **byte == b'\n').count() as u64
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

/// Every measurement, as the JSON report.
async fn measure(pid: u32, port: u16, token: &str, options: BenchOptions) -> anyhow::Result<Value> {
    // Other work on the machine shows in the figures; the report says how busy it was.
    let load_average = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default();
    // Warm up: connections opened, statements prepared, allocator arenas in place.
    for format in ["ndjson", "csv"] {
        let warm = transfer(
            port,
            &format!("{EXPORT}?format={format}&to=2000-01-01T00:00:00Z"),
            token,
            None,
        )
        .await?;
        if warm.status != 200 {
            bail!("the warm-up export answered {}", warm.status);
        }
    }
    let mut runs = Vec::new();
    for format in ["ndjson", "csv"] {
        let path = format!("{EXPORT}?format={format}");
        let mut attempts = Vec::new();
        for attempt in 1..=options.repeat.max(1) {
            let before = rss_kib(pid).context("cannot read the server's VmRSS")?;
            let sampler = RssSampler::start(pid);
            let (run, client) = match curl_transfer(port, &path, token).await? {
                Some(run) => (run, "curl | wc -l"),
                None => (
                    transfer(port, &path, token, None).await?,
                    "xtask (unoptimised)",
                ),
            };
            let peak = sampler.finish(pid).await;
            if run.status != 200 || !run.complete {
                bail!(
                    "the {format} export answered {}{}",
                    run.status,
                    if run.complete { "" } else { " and ended early" }
                );
            }
            let rows = match format {
                "csv" => run.lines.saturating_sub(1),
                _ => run.lines,
            };
            let seconds = run.total.as_secs_f64();
            let rows_per_sec = rows as f64 / seconds;
            let growth = mib(peak.saturating_sub(before));
            println!(
                "bench: {format:>6} #{attempt} ({client}): {rows} rows, {:.1} MiB in {seconds:.2} s \
                 = {rows_per_sec:.0} rows/s ({:.1} MiB/s), first byte after {:.1} ms; server RSS \
                 {:.1} MiB before, peak {:.1} MiB (+{growth:.1} MiB)",
                mib(run.bytes / 1024),
                mib(run.bytes / 1024) / seconds,
                run.first_byte.as_secs_f64() * 1000.0,
                mib(before),
                mib(peak),
            );
            attempts.push(json!({
                "client": client,
                "rows": rows,
                "bytes": run.bytes,
                "seconds": round(seconds, 3),
                "rows_per_sec": round(rows_per_sec, 0),
                "mib_per_sec": round(mib(run.bytes / 1024) / seconds, 1),
                "first_byte_ms": round(run.first_byte.as_secs_f64() * 1000.0, 1),
                "rss_before_mib": round(mib(before), 1),
                "rss_peak_mib": round(mib(peak), 1),
                "rss_growth_mib": round(growth, 1),
            }));
        }
        let mut rates: Vec<f64> = attempts
            .iter()
            .filter_map(|a| a["rows_per_sec"].as_f64())
            .collect();
        rates.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        let best = rates.last().copied().unwrap_or_default();
        let growth = attempts
            .iter()
            .filter_map(|a| a["rss_growth_mib"].as_f64())
            .fold(0.0, f64::max);
        println!(
            "bench: {format:>6}: median {median:.0} rows/s, best {best:.0} rows/s, RSS growth at \
             most {growth:.1} MiB"
        );
        runs.push(json!({
            "format": format,
            "median_rows_per_sec": median,
            "best_rows_per_sec": best,
            "max_rss_growth_mib": growth,
            "goal_met": growth < GOAL_RSS_GROWTH_MIB && median >= GOAL_ROWS_PER_SEC,
            "attempts": attempts,
        }));
    }

    // A slow client: the server must wait for it, not buffer for it.
    let before = rss_kib(pid).context("cannot read the server's VmRSS")?;
    let sampler = RssSampler::start(pid);
    let slow = transfer(
        port,
        &format!("{EXPORT}?format=ndjson"),
        token,
        Some((SLOW_BYTES_PER_SEC, SLOW_FOR)),
    )
    .await?;
    // Give the server a moment to notice the hang-up and drop the export.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peak = sampler.finish(pid).await;
    let after = rss_kib(pid).unwrap_or_default();
    println!(
        "bench: slow client: read {:.1} MiB in {:.1} s at {} KiB/s, then hung up; server RSS {:.1} \
         MiB before, peak {:.1} MiB (+{:.1} MiB), {:.1} MiB after",
        mib(slow.bytes / 1024),
        slow.total.as_secs_f64(),
        SLOW_BYTES_PER_SEC / 1024,
        mib(before),
        mib(peak),
        mib(peak.saturating_sub(before)),
        mib(after),
    );
    let met = runs.iter().all(|run| run["goal_met"] == json!(true));
    println!(
        "bench: goal (RSS growth < {GOAL_RSS_GROWTH_MIB} MiB and a median >= {GOAL_ROWS_PER_SEC} \
         rows/s): {}",
        if met { "met" } else { "NOT met" }
    );
    Ok(json!({
        "command": format!(
            "cargo xtask bench-export --orders {} --repeat {}{}",
            options.orders,
            options.repeat,
            options.batch_size.map(|b| format!(" --batch-size {b}")).unwrap_or_default()
        ),
        "load_average_at_start": load_average,
        "endpoint": EXPORT,
        "orders_wanted": options.orders,
        "batch_size": options.batch_size.unwrap_or(strata_services::exports::DEFAULT_BATCH_SIZE),
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "goal": {"rss_growth_mib_below": GOAL_RSS_GROWTH_MIB, "rows_per_sec_at_least": GOAL_ROWS_PER_SEC},
        "goal_met": met,
        "runs": runs,
        "slow_client": {
            "bytes_per_sec": SLOW_BYTES_PER_SEC,
            "seconds": round(slow.total.as_secs_f64(), 2),
            "bytes_read": slow.bytes,
            "rss_before_mib": round(mib(before), 1),
            "rss_peak_mib": round(mib(peak), 1),
            "rss_growth_mib": round(mib(peak.saturating_sub(before)), 1),
            "rss_after_hang_up_mib": round(mib(after), 1),
        },
    }))
}

fn write_report(path: &Path, report: &Value) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut text = serde_json::to_string_pretty(report)?;
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resident_memory_of_this_process_is_readable() {
        let rss = rss_kib(std::process::id()).expect("VmRSS");
        assert!(rss > 0);
    }

    #[test]
    fn lines_are_counted_by_line_feeds() {
        assert_eq!(count_lines(b"a\r\nb\r\n"), 2);
        assert_eq!(count_lines(b"{}\n{}\n{}"), 2);
        assert_eq!(count_lines(b""), 0);
    }
}
