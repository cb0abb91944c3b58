//! Configuration from the environment (`STRATA_*`, plus `DATABASE_URL` and `REDIS_URL`), validated at
//! start-up: a bad value stops the process with an error naming the variable. Secrets (and the two
//! URLs) may instead be read from files, `<VARIABLE>_FILE`, as container platforms mount them.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Serialized};
use figment::value::{Dict, Value};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use strata_http::edge::{Budgets, EdgeSettings, GroupBudget, IpNet};
use strata_ports::RateLimit;

use crate::secrets;

/// Where the process runs; production forbids development conveniences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// A developer's machine: human-readable logs, a generated JWT secret if none is set.
    Development,
    /// Automated tests.
    Test,
    /// A real deployment: every secret must be set.
    Production,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable.
    Pretty,
}

/// Every setting, with its default. Field `x` is read from `STRATA_X`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `STRATA_ENV`: development | test | production.
    #[serde(default = "default_env")]
    pub env: Environment,
    /// `STRATA_HOST`: interface to listen on.
    #[serde(default = "default_host")]
    pub host: String,
    /// `STRATA_PORT`: port to listen on (0 picks a free one).
    #[serde(default = "default_port")]
    pub port: u16,
    /// `STRATA_WORKERS`: HTTP worker threads (default: one per core).
    #[serde(default)]
    pub workers: Option<usize>,
    /// `DATABASE_URL`.
    #[serde(default = "default_database_url")]
    pub database_url: String,
    /// `DATABASE_URL_FILE`: a file holding `DATABASE_URL` (the two exclude each other).
    #[serde(default)]
    pub database_url_file: Option<PathBuf>,
    /// `STRATA_DB_POOL_SIZE`.
    #[serde(default = "default_pool_size")]
    pub db_pool_size: u32,
    /// `STRATA_DB_ACQUIRE_TIMEOUT_MS`: wait for a pooled connection before answering 503.
    #[serde(default = "default_acquire_ms")]
    pub db_acquire_timeout_ms: u64,
    /// `STRATA_DB_QUERY_TIMEOUT_MS`.
    #[serde(default = "default_query_ms")]
    pub db_query_timeout_ms: u64,
    /// `REDIS_URL`; with `STRATA_REDIS_CLUSTER=true`, the cluster's seed nodes, comma-separated.
    #[serde(default = "default_redis_url")]
    pub redis_url: String,
    /// `REDIS_URL_FILE`: a file holding `REDIS_URL`.
    #[serde(default)]
    pub redis_url_file: Option<PathBuf>,
    /// `STRATA_REDIS_CLUSTER`: Redis is a Redis Cluster (true) or a single server (false).
    #[serde(default)]
    pub redis_cluster: bool,
    /// `STRATA_REDIS_PREFIX`: namespace of every key.
    #[serde(default = "default_redis_prefix")]
    pub redis_prefix: String,
    /// `STRATA_REDIS_TIMEOUT_MS`: bound on connecting and on each command.
    #[serde(default = "default_redis_ms")]
    pub redis_timeout_ms: u64,
    /// `STRATA_JWT_SECRET`: HMAC secret (≥ 32 bytes); required in production, where it must also
    /// be no placeholder of this repository and not patterned (see [`secrets`]).
    #[serde(default)]
    pub jwt_secret: Option<SecretString>,
    /// `STRATA_JWT_SECRET_FILE`: a file holding `STRATA_JWT_SECRET`.
    #[serde(default)]
    pub jwt_secret_file: Option<PathBuf>,
    /// `STRATA_JWT_ALGORITHM`: HS256 (default), HS384, HS512, RS256, PS256, ES256, EdDSA, ...
    #[serde(default = "default_jwt_algorithm")]
    pub jwt_algorithm: String,
    /// `STRATA_JWT_PRIVATE_KEY_PEM` / `STRATA_JWT_PUBLIC_KEY_PEM`: keys for the asymmetric algorithms.
    #[serde(default)]
    pub jwt_private_key_pem: Option<SecretString>,
    /// `STRATA_JWT_PRIVATE_KEY_PEM_FILE`: a file holding `STRATA_JWT_PRIVATE_KEY_PEM`.
    #[serde(default)]
    pub jwt_private_key_pem_file: Option<PathBuf>,
    /// See `jwt_private_key_pem`.
    #[serde(default)]
    pub jwt_public_key_pem: Option<String>,
    /// `STRATA_JWT_PUBLIC_KEY_PEM_FILE`: a file holding `STRATA_JWT_PUBLIC_KEY_PEM`.
    #[serde(default)]
    pub jwt_public_key_pem_file: Option<PathBuf>,
    /// `STRATA_JWT_KID`: key id written into tokens.
    #[serde(default)]
    pub jwt_kid: Option<String>,
    /// `STRATA_JWT_PREVIOUS_SECRETS`: `kid=secret,kid=secret` still accepted after a rotation; each
    /// secret is held to `STRATA_JWT_SECRET`'s rules.
    #[serde(default)]
    pub jwt_previous_secrets: Option<SecretString>,
    /// `STRATA_JWT_PREVIOUS_SECRETS_FILE`: a file holding `STRATA_JWT_PREVIOUS_SECRETS`.
    #[serde(default)]
    pub jwt_previous_secrets_file: Option<PathBuf>,
    /// `STRATA_JWT_ISSUER`.
    #[serde(default = "default_issuer")]
    pub jwt_issuer: String,
    /// `STRATA_JWT_AUDIENCE`.
    #[serde(default = "default_audience")]
    pub jwt_audience: String,
    /// `STRATA_ACCESS_TOKEN_TTL_SECS`.
    #[serde(default = "default_access_ttl")]
    pub access_token_ttl_secs: u64,
    /// `STRATA_REFRESH_TOKEN_TTL_SECS`.
    #[serde(default = "default_refresh_ttl")]
    pub refresh_token_ttl_secs: u64,
    /// `STRATA_REVOCATION_CHECK`: deny (503 when Redis is down) | allow.
    #[serde(default = "default_revocation")]
    pub revocation_check: String,
    /// `STRATA_CURSOR_SECRET`: key of pagination cursors (default: derived from the JWT secret);
    /// held to `STRATA_JWT_SECRET`'s rules.
    #[serde(default)]
    pub cursor_secret: Option<SecretString>,
    /// `STRATA_CURSOR_SECRET_FILE`: a file holding `STRATA_CURSOR_SECRET`.
    #[serde(default)]
    pub cursor_secret_file: Option<PathBuf>,
    /// `STRATA_ARGON2_MEMORY_KIB`.
    #[serde(default = "default_argon_memory")]
    pub argon2_memory_kib: u32,
    /// `STRATA_ARGON2_ITERATIONS`.
    #[serde(default = "default_argon_iterations")]
    pub argon2_iterations: u32,
    /// `STRATA_ARGON2_PARALLELISM`.
    #[serde(default = "default_argon_parallelism")]
    pub argon2_parallelism: u32,
    /// `STRATA_HASH_CONCURRENCY`: hashes at once (default: one per core).
    #[serde(default)]
    pub hash_concurrency: Option<usize>,
    /// `STRATA_HASH_QUEUE_TIMEOUT_MS`: wait for a hashing slot before answering 503.
    #[serde(default = "default_hash_queue_ms")]
    pub hash_queue_timeout_ms: u64,
    /// `STRATA_HASH_NICENESS`: the primary hashing threads' niceness, 0–19 (higher leaves more of a
    /// contended CPU to the async workers, at the hashes' expense).
    #[serde(default = "default_hash_niceness")]
    pub hash_niceness: u8,
    /// `STRATA_HASH_SPARE_NICENESS`: the spare hashing threads' niceness, 0–19 (half the
    /// threads, used only while every other one is busy; 19 lets a login storm take at most half
    /// of a contended CPU from the async workers).
    #[serde(default = "default_hash_spare_niceness")]
    pub hash_spare_niceness: u8,
    /// `STRATA_CACHE_TTL_SECS`.
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl_secs: u64,
    /// `STRATA_LOCAL_CACHE_ENABLED`: keep hot cached values (products) in process too, dropped
    /// across instances by Redis pub/sub on every write.
    #[serde(default = "default_true")]
    pub local_cache_enabled: bool,
    /// `STRATA_LOCAL_CACHE_TTL_SECS`: the longest an in-process copy is served, a bound for an
    /// invalidation that could not be announced.
    #[serde(default = "default_local_cache_ttl")]
    pub local_cache_ttl_secs: u64,
    /// `STRATA_LOCAL_CACHE_CAPACITY`: most values kept in process.
    #[serde(default = "default_local_cache_capacity")]
    pub local_cache_capacity: u64,
    /// `STRATA_EXPORT_BATCH_SIZE`: rows per query of the admin exports (1–50000).
    #[serde(default = "default_export_batch_size")]
    pub export_batch_size: usize,
    /// `STRATA_HEALTH_TIMEOUT_MS`: bound on each readiness ping.
    #[serde(default = "default_health_ms")]
    pub health_timeout_ms: u64,
    /// `STRATA_HEALTH_CACHE_MS`: a readiness check answers every probe arriving this long after it
    /// started (0: only those arriving while it runs).
    #[serde(default = "default_health_cache_ms")]
    pub health_cache_ms: u64,
    /// `STRATA_SHUTDOWN_GRACE_SECS`: after SIGTERM, readiness is 503 this long before the listener
    /// closes, so that load balancers stop routing here first.
    #[serde(default = "default_grace")]
    pub shutdown_grace_secs: u64,
    /// `STRATA_SHUTDOWN_TIMEOUT_SECS`: the most in-flight requests get to finish.
    #[serde(default = "default_drain")]
    pub shutdown_timeout_secs: u64,
    /// `STRATA_RATE_LIMIT_ENABLED`: spend budgets per caller (true) or not at all.
    #[serde(default = "default_true")]
    pub rate_limit_enabled: bool,
    /// `STRATA_RATE_LIMIT_FAIL_OPEN`: with Redis unreachable, let requests through (true) or
    /// answer 503 (false).
    #[serde(default = "default_true")]
    pub rate_limit_fail_open: bool,
    /// `STRATA_RATE_LIMIT_READ_ANONYMOUS`: GETs per client IP, as `requests/seconds`.
    #[serde(default = "default_read_anonymous")]
    pub rate_limit_read_anonymous: String,
    /// `STRATA_RATE_LIMIT_READ_USER`: GETs per user.
    #[serde(default = "default_read_user")]
    pub rate_limit_read_user: String,
    /// `STRATA_RATE_LIMIT_WRITE_ANONYMOUS`: other methods per client IP.
    #[serde(default = "default_write_anonymous")]
    pub rate_limit_write_anonymous: String,
    /// `STRATA_RATE_LIMIT_WRITE_USER`: other methods per user.
    #[serde(default = "default_write_user")]
    pub rate_limit_write_user: String,
    /// `STRATA_RATE_LIMIT_AUTH_IP`: register, login and refresh per client IP.
    #[serde(default = "default_auth_ip")]
    pub rate_limit_auth_ip: String,
    /// `STRATA_RATE_LIMIT_AUTH_EMAIL`: register and login per email address.
    #[serde(default = "default_auth_email")]
    pub rate_limit_auth_email: String,
    /// `STRATA_TRUSTED_PROXIES`: comma-separated addresses or CIDR networks whose
    /// `X-Forwarded-For` is believed (empty: nobody's).
    #[serde(default)]
    pub trusted_proxies: String,
    /// `STRATA_RATE_LIMIT_IPV6_PREFIX`: IPv6 clients share per-IP budgets per network of this
    /// prefix length (1–128; 64 by default, the smallest network a host is usually given).
    #[serde(default = "default_ipv6_prefix")]
    pub rate_limit_ipv6_prefix: u8,
    /// `STRATA_CORS_ORIGINS`: comma-separated origins allowed to call from a browser (empty: none).
    #[serde(default)]
    pub cors_origins: String,
    /// `STRATA_REQUEST_TIMEOUT_MS`: a request running longer is abandoned with 503.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
    /// `STRATA_MAX_IN_FLIGHT`: requests handled at once; beyond it 503 with Retry-After.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// `STRATA_MAX_CONCURRENT_EXPORTS`: admin exports streaming at once; beyond it 503.
    #[serde(default = "default_max_concurrent_exports")]
    pub max_concurrent_exports: usize,
    /// `STRATA_COMPRESS_MIN_BYTES`: smaller bodies are sent uncompressed.
    #[serde(default = "default_compress_min")]
    pub compress_min_bytes: u64,
    /// `STRATA_HSTS_MAX_AGE_SECS`: send Strict-Transport-Security with this max-age (unset: not
    /// sent; set it when the API is served over TLS).
    #[serde(default)]
    pub hsts_max_age_secs: Option<u64>,
    /// `STRATA_METRICS_HOST`: interface of the `GET /metrics` listener of `strata serve` (default:
    /// `STRATA_HOST`).
    #[serde(default)]
    pub metrics_host: Option<String>,
    /// `STRATA_METRICS_PORT`: port of that listener, never the API's (0 picks a free one).
    #[serde(default = "default_metrics_port")]
    pub metrics_port: u16,
    /// `STRATA_WORKER_METRICS_PORT`: where `strata worker` serves `/metrics` and `/health/live`
    /// (on `STRATA_HOST`); unset: not served.
    #[serde(default)]
    pub worker_metrics_port: Option<u16>,
    /// `STRATA_WORKER_KEEP_FINISHED_JOBS_DAYS`: finished jobs are deleted this long after they
    /// ended (an hourly sweep, which also deletes expired Idempotency-Key records).
    #[serde(default = "default_keep_finished_jobs")]
    pub worker_keep_finished_jobs_days: u64,
    /// `STRATA_WORKER_CONSUMER`: this worker's name in the consumer group (default: host-pid).
    #[serde(default)]
    pub worker_consumer: Option<String>,
    /// `STRATA_WORKER_MAX_ATTEMPTS`: attempts before a job is dead-lettered.
    #[serde(default = "default_max_attempts")]
    pub worker_max_attempts: u32,
    /// `STRATA_WORKER_BACKOFF_MS`: delay before the first retry, doubled for each further one.
    #[serde(default = "default_backoff_ms")]
    pub worker_backoff_ms: u64,
    /// `STRATA_WORKER_BACKOFF_MAX_MS`: longest delay between attempts.
    #[serde(default = "default_backoff_max_ms")]
    pub worker_backoff_max_ms: u64,
    /// `STRATA_WORKER_CLAIM_IDLE_MS`: a job unacknowledged this long is taken over from its
    /// (presumably dead) worker.
    #[serde(default = "default_claim_idle_ms")]
    pub worker_claim_idle_ms: u64,
    /// `STRATA_WORKER_SWEEP_AFTER_SECS`: a queued job untouched this long is enqueued again (its
    /// message may have been lost).
    #[serde(default = "default_sweep_after")]
    pub worker_sweep_after_secs: u64,
    /// `STRATA_WORKER_RENEWAL_EVERY_SECS`: how often due subscriptions are renewed (once per
    /// cluster per tick).
    #[serde(default = "default_renewal_every")]
    pub worker_renewal_every_secs: u64,
    /// `STRATA_DASHBOARD_TTL_SECS`: how long the admin dashboard is served from the cache.
    #[serde(default = "default_dashboard_ttl")]
    pub dashboard_ttl_secs: u64,
    /// `STRATA_LOW_STOCK_THRESHOLD`: the dashboard lists active products with fewer units.
    #[serde(default = "default_low_stock_threshold")]
    pub low_stock_threshold: u32,
    /// `STRATA_REPORT_TIMEOUT_SECS`: how long a report's queries may run in all (in the worker).
    #[serde(default = "default_report_timeout")]
    pub report_timeout_secs: u64,
    /// `STRATA_LOG_FORMAT`: json | pretty (default: json, pretty in development).
    #[serde(default)]
    pub log_format: Option<LogFormat>,
    /// `STRATA_LOG`: tracing filter (e.g. `info,strata_http=debug`).
    #[serde(default = "default_log")]
    pub log: String,
}

fn default_env() -> Environment {
    Environment::Development
}
fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    8080
}
fn default_database_url() -> String {
    "postgres://postgres@127.0.0.1:5432/strata".into()
}
fn default_pool_size() -> u32 {
    16
}
fn default_acquire_ms() -> u64 {
    2000
}
fn default_query_ms() -> u64 {
    // Within SPEC §4's 2 s even when PostgreSQL stops answering on an open connection (frozen,
    // partitioned): no checkout round trip stands in front of the query to notice it sooner.
    2000
}
fn default_redis_url() -> String {
    "redis://127.0.0.1:6379".into()
}
fn default_redis_prefix() -> String {
    "strata:".into()
}
fn default_redis_ms() -> u64 {
    1000
}
fn default_jwt_algorithm() -> String {
    "HS256".into()
}
fn default_issuer() -> String {
    "strata".into()
}
fn default_audience() -> String {
    "strata-api".into()
}
fn default_access_ttl() -> u64 {
    900
}
fn default_refresh_ttl() -> u64 {
    30 * 24 * 3600
}
fn default_revocation() -> String {
    "deny".into()
}
fn default_argon_memory() -> u32 {
    19456
}
fn default_argon_iterations() -> u32 {
    2
}
fn default_argon_parallelism() -> u32 {
    1
}
fn default_hash_queue_ms() -> u64 {
    5000
}
fn default_export_batch_size() -> usize {
    strata_services::exports::DEFAULT_BATCH_SIZE
}
fn default_cache_ttl() -> u64 {
    300
}
fn default_hash_niceness() -> u8 {
    strata_services::password::DEFAULT_NICENESS
}
fn default_hash_spare_niceness() -> u8 {
    strata_services::password::DEFAULT_SPARE_NICENESS
}
fn default_local_cache_ttl() -> u64 {
    30
}
fn default_local_cache_capacity() -> u64 {
    10_000
}
fn default_health_ms() -> u64 {
    1000
}
fn default_health_cache_ms() -> u64 {
    1000
}
fn default_metrics_port() -> u16 {
    9464
}
fn default_grace() -> u64 {
    5
}
fn default_drain() -> u64 {
    30
}
fn default_log() -> String {
    "info".into()
}
fn default_true() -> bool {
    true
}
fn default_read_anonymous() -> String {
    "300/60".into()
}
fn default_read_user() -> String {
    "1200/60".into()
}
fn default_write_anonymous() -> String {
    "60/60".into()
}
fn default_write_user() -> String {
    "300/60".into()
}
fn default_auth_ip() -> String {
    "20/60".into()
}
fn default_auth_email() -> String {
    "10/300".into()
}
fn default_ipv6_prefix() -> u8 {
    64
}
fn default_request_timeout() -> u64 {
    10_000
}
fn default_max_in_flight() -> usize {
    1024
}
fn default_max_concurrent_exports() -> usize {
    4
}
fn default_compress_min() -> u64 {
    1024
}
fn default_keep_finished_jobs() -> u64 {
    7
}
fn default_max_attempts() -> u32 {
    5
}
fn default_backoff_ms() -> u64 {
    1000
}
fn default_backoff_max_ms() -> u64 {
    60_000
}
fn default_claim_idle_ms() -> u64 {
    30_000
}
fn default_sweep_after() -> u64 {
    300
}
fn default_renewal_every() -> u64 {
    60
}
fn default_dashboard_ttl() -> u64 {
    30
}
fn default_low_stock_threshold() -> u32 {
    10
}
fn default_report_timeout() -> u64 {
    60
}

/// A budget written `requests/seconds`, e.g. `300/60`.
fn parse_budget(variable: &str, raw: &str) -> Result<RateLimit, ConfigError> {
    let invalid = || {
        config_error(
            variable,
            format!("{raw:?} is not a budget like 300/60 (requests per seconds)"),
        )
    };
    let (limit, seconds) = raw.trim().split_once('/').ok_or_else(invalid)?;
    let limit = limit.trim().parse::<u32>().map_err(|_| invalid())?;
    let seconds = seconds
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(invalid)?;
    Ok(RateLimit {
        limit,
        window: Duration::from_secs(seconds),
    })
}

/// A configuration error, naming the variable at fault.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {variable}: {message}")]
pub struct ConfigError {
    /// The environment variable.
    pub variable: String,
    /// What is wrong with it.
    pub message: String,
}

fn config_error(variable: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        variable: variable.to_owned(),
        message: message.into(),
    }
}

fn variable_for(key: &str) -> String {
    match key {
        "database_url" | "database_url_file" | "redis_url" | "redis_url_file" => {
            key.to_ascii_uppercase()
        }
        other => format!("STRATA_{}", other.to_ascii_uppercase()),
    }
}

/// The settings that `<VARIABLE>_FILE` may hold instead, by key and variable.
const FROM_FILES: [(&str, &str); 7] = [
    ("jwt_secret", "STRATA_JWT_SECRET"),
    ("jwt_previous_secrets", "STRATA_JWT_PREVIOUS_SECRETS"),
    ("jwt_private_key_pem", "STRATA_JWT_PRIVATE_KEY_PEM"),
    ("jwt_public_key_pem", "STRATA_JWT_PUBLIC_KEY_PEM"),
    ("cursor_secret", "STRATA_CURSOR_SECRET"),
    ("database_url", "DATABASE_URL"),
    ("redis_url", "REDIS_URL"),
];

/// Sets each setting whose `_FILE` variant is set to that file's content, minus one trailing
/// newline (editors and `echo` add one; no key ends with one). Both set is refused rather than
/// one silently winning over the other.
fn read_files(mut figment: Figment) -> Result<Figment, ConfigError> {
    for (key, variable) in FROM_FILES {
        let file_key = format!("{key}_file");
        if !figment.contains(&file_key) {
            continue;
        }
        let file_variable = format!("{variable}_FILE");
        let path: PathBuf = figment
            .extract_inner(&file_key)
            .map_err(|error| config_error(&file_variable, error.kind.to_string()))?;
        if figment.contains(key) {
            return Err(config_error(
                &file_variable,
                format!("is set together with {variable}: set only one"),
            ));
        }
        let content = std::fs::read_to_string(&path).map_err(|error| {
            config_error(
                &file_variable,
                format!("cannot read {}: {error}", path.display()),
            )
        })?;
        let content = content.strip_suffix('\n').map_or(content.as_str(), |line| {
            line.strip_suffix('\r').unwrap_or(line)
        });
        figment = figment.merge((key, content));
    }
    Ok(figment)
}

/// A `STRATA_*` variable that names no setting: ignored, and reported for the caller to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVariable {
    /// The variable.
    pub variable: String,
    /// The setting it resembles, if one does.
    pub suggestion: Option<String>,
}

impl std::fmt::Display for UnknownVariable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is not a setting and is ignored", self.variable)?;
        if let Some(suggestion) = &self.suggestion {
            write!(f, " (did you mean {suggestion}?)")?;
        }
        Ok(())
    }
}

/// The keys of [`Settings`]: asked of serde with a key it lacks, which `deny_unknown_fields`
/// answers with all of them, so that no hand-kept list can drift from the struct.
fn setting_keys() -> Option<&'static [&'static str]> {
    let error = Figment::from(("?", 0)).extract::<Settings>().err()?;
    match error.kind {
        figment::error::Kind::UnknownField(_, keys) => Some(keys),
        _ => None,
    }
}

/// Keys that name no setting are taken out, so that what platforms put under our prefix cannot
/// stop the process: Kubernetes' service links (for a Service named `strata-…`) silently, any
/// other with a report. One within a typo of a setting is refused instead: a misspelt secret or
/// proxy list ignored with only a log line would leave production on a default.
fn without_unknown(figment: Figment) -> Result<(Figment, Vec<UnknownVariable>), ConfigError> {
    // Failing either, extraction itself names the problem.
    let (Some(keys), Ok(data)) = (setting_keys(), figment.extract::<Dict>()) else {
        return Ok((figment, Vec::new()));
    };
    let mut kept = Dict::new();
    let mut unknown = Vec::new();
    for (key, value) in data {
        let variable = variable_for(&key);
        if is_service_link(&variable, &value) {
            continue;
        }
        if keys.contains(&key.as_str()) {
            kept.insert(key, value);
            continue;
        }
        let nearest = |within: &dyn Fn(&str) -> usize| {
            keys.iter()
                // Optimal string alignment: a swap of neighbours (`PROT` for `PORT`) is one edit.
                .map(|setting| (*setting, strsim::osa_distance(&key, setting)))
                .filter(|(setting, distance)| *distance <= within(setting))
                .min_by_key(|(_, distance)| *distance)
                .map(|(setting, _)| variable_for(setting))
        };
        // One or two edits (one in a short name) is a slip of the keyboard.
        if let Some(setting) = nearest(&|setting| if setting.len() < 6 { 1 } else { 2 }) {
            return Err(config_error(
                &variable,
                format!("is not a setting: did you mean {setting}?"),
            ));
        }
        unknown.push(UnknownVariable {
            variable,
            suggestion: nearest(&|setting| setting.len() / 2),
        });
    }
    Ok((Figment::from(Serialized::defaults(kept)), unknown))
}

/// Whether a variable is one of the Docker-link variables the kubelet sets for each Service of the
/// namespace (`<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT[_<PORT>]`, `<NAME>_PORT`,
/// `<NAME>_PORT_<n>_<PROTOCOL>[_PROTO|_PORT|_ADDR]`). The value must have the link's shape too,
/// so that an operator's port number under such a name is still reported.
fn is_service_link(variable: &str, value: &Value) -> bool {
    let text = match value {
        Value::String(_, text) => text.clone(),
        Value::Num(..) => value.to_u128().map(|n| n.to_string()).unwrap_or_default(),
        _ => return false,
    };
    let is_port = |text: &str| text.parse::<u16>().is_ok();
    let is_address = |text: &str| text.parse::<IpAddr>().is_ok();
    let is_link = |text: &str| {
        ["tcp://", "udp://", "sctp://"].iter().any(|scheme| {
            text.strip_prefix(scheme)
                .is_some_and(|address| address.parse::<SocketAddr>().is_ok())
        })
    };
    if let Some(name) = variable.strip_suffix("_SERVICE_HOST") {
        return !name.is_empty() && is_address(&text);
    }
    if let Some(at) = variable.find("_SERVICE_PORT") {
        let rest = &variable[at + "_SERVICE_PORT".len()..];
        return at > 0
            && (rest.is_empty() || rest.len() > 1 && rest.starts_with('_'))
            && is_port(&text);
    }
    variable.match_indices("_PORT").any(|(at, _)| {
        let rest = &variable[at + "_PORT".len()..];
        if at == 0 {
            return false;
        }
        if rest.is_empty() {
            return is_link(&text);
        }
        let parts: Vec<&str> = rest.split('_').skip(1).collect();
        let (port, protocol, field) = match parts.as_slice() {
            [port, protocol] => (*port, *protocol, None),
            [port, protocol, field] => (*port, *protocol, Some(*field)),
            _ => return false,
        };
        if !rest.starts_with('_') || !is_port(port) || !["TCP", "UDP", "SCTP"].contains(&protocol) {
            return false;
        }
        match field {
            None => is_link(&text),
            Some("PROTO") => text == protocol.to_ascii_lowercase(),
            Some("PORT") => text == port,
            Some("ADDR") => is_address(&text),
            Some(_) => false,
        }
    })
}

/// The variable that gave a setting its value: the `_FILE` variant when it was read from a file.
fn source(variable: &str, file: &Option<PathBuf>) -> String {
    match file {
        Some(_) => format!("{variable}_FILE"),
        None => variable.to_owned(),
    }
}

impl Settings {
    /// Reads and validates the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_reporting_unknown().map(|(settings, _)| settings)
    }

    /// [`Settings::from_env`], also returning the unknown `STRATA_*` variables it ignored, for
    /// the caller to log once logging is set up.
    pub fn from_env_reporting_unknown() -> Result<(Self, Vec<UnknownVariable>), ConfigError> {
        Self::from_figment_reporting_unknown(
            Figment::new()
                .merge(Env::prefixed("STRATA_").ignore(&[
                    "database_url",
                    "database_url_file",
                    "redis_url",
                    "redis_url_file",
                ]))
                .merge(Env::raw().only(&[
                    "DATABASE_URL",
                    "DATABASE_URL_FILE",
                    "REDIS_URL",
                    "REDIS_URL_FILE",
                ])),
        )
    }

    /// Reads and validates `figment` (tests pass their own).
    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        Self::from_figment_reporting_unknown(figment).map(|(settings, _)| settings)
    }

    /// [`Settings::from_figment`], also returning the unknown `STRATA_*` variables it ignored.
    pub fn from_figment_reporting_unknown(
        figment: Figment,
    ) -> Result<(Self, Vec<UnknownVariable>), ConfigError> {
        let (figment, unknown) = without_unknown(figment)?;
        let settings: Settings = read_files(figment)?.extract().map_err(|error| {
            let key = error.path.first().cloned().unwrap_or_default();
            let variable = if key.is_empty() {
                unknown_variable(&error.kind.to_string())
            } else {
                variable_for(&key)
            };
            config_error(&variable, error.kind.to_string())
        })?;
        settings.validate()?;
        Ok((settings, unknown))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=50_000).contains(&self.export_batch_size) {
            return Err(config_error(
                "STRATA_EXPORT_BATCH_SIZE",
                "must be between 1 and 50000",
            ));
        }
        if self.hash_niceness > 19 {
            return Err(config_error(
                "STRATA_HASH_NICENESS",
                "must be between 0 and 19",
            ));
        }
        if self.hash_spare_niceness > 19 {
            return Err(config_error(
                "STRATA_HASH_SPARE_NICENESS",
                "must be between 0 and 19",
            ));
        }
        if self.db_pool_size == 0 {
            return Err(config_error("STRATA_DB_POOL_SIZE", "must be at least 1"));
        }
        for (variable, value) in [
            ("STRATA_DB_ACQUIRE_TIMEOUT_MS", self.db_acquire_timeout_ms),
            ("STRATA_DB_QUERY_TIMEOUT_MS", self.db_query_timeout_ms),
            ("STRATA_REDIS_TIMEOUT_MS", self.redis_timeout_ms),
            ("STRATA_ACCESS_TOKEN_TTL_SECS", self.access_token_ttl_secs),
            ("STRATA_REFRESH_TOKEN_TTL_SECS", self.refresh_token_ttl_secs),
            ("STRATA_HEALTH_TIMEOUT_MS", self.health_timeout_ms),
            ("STRATA_WORKER_BACKOFF_MS", self.worker_backoff_ms),
            ("STRATA_WORKER_BACKOFF_MAX_MS", self.worker_backoff_max_ms),
            ("STRATA_WORKER_CLAIM_IDLE_MS", self.worker_claim_idle_ms),
            (
                "STRATA_WORKER_SWEEP_AFTER_SECS",
                self.worker_sweep_after_secs,
            ),
            (
                "STRATA_WORKER_RENEWAL_EVERY_SECS",
                self.worker_renewal_every_secs,
            ),
            (
                "STRATA_WORKER_MAX_ATTEMPTS",
                u64::from(self.worker_max_attempts),
            ),
            ("STRATA_DASHBOARD_TTL_SECS", self.dashboard_ttl_secs),
            ("STRATA_LOCAL_CACHE_TTL_SECS", self.local_cache_ttl_secs),
            ("STRATA_LOCAL_CACHE_CAPACITY", self.local_cache_capacity),
            (
                "STRATA_LOW_STOCK_THRESHOLD",
                u64::from(self.low_stock_threshold),
            ),
            ("STRATA_REPORT_TIMEOUT_SECS", self.report_timeout_secs),
        ] {
            if value == 0 {
                return Err(config_error(variable, "must be greater than 0"));
            }
        }
        if !self.database_url.starts_with("postgres://")
            && !self.database_url.starts_with("postgresql://")
        {
            return Err(config_error("DATABASE_URL", "must be a postgres:// URL"));
        }
        self.validate_redis()?;
        if !matches!(self.revocation_check.as_str(), "deny" | "allow") {
            return Err(config_error(
                "STRATA_REVOCATION_CHECK",
                "must be deny or allow",
            ));
        }
        if self
            .jwt_algorithm
            .parse::<strata_services::tokens::Algorithm>()
            .is_err()
        {
            return Err(config_error(
                "STRATA_JWT_ALGORITHM",
                format!("unknown algorithm {:?}", self.jwt_algorithm),
            ));
        }
        self.validate_secrets()?;
        for (variable, raw) in self.budget_variables() {
            parse_budget(variable, raw)?;
        }
        self.trusted_proxy_networks()?;
        self.ipv6_budget_prefix()?;
        if self.max_concurrent_exports == 0 {
            return Err(config_error(
                "STRATA_MAX_CONCURRENT_EXPORTS",
                "must be at least 1",
            ));
        }
        if self.max_in_flight == 0 {
            return Err(config_error("STRATA_MAX_IN_FLIGHT", "must be at least 1"));
        }
        if self.request_timeout_ms == 0 {
            return Err(config_error(
                "STRATA_REQUEST_TIMEOUT_MS",
                "must be greater than 0",
            ));
        }
        for origin in self.cors_origin_list() {
            let scheme_ok = origin.starts_with("http://") || origin.starts_with("https://");
            if !scheme_ok || origin.ends_with('/') || origin == "*" {
                return Err(config_error(
                    "STRATA_CORS_ORIGINS",
                    format!("{origin:?} is not an origin like https://shop.example.com"),
                ));
            }
        }
        if self.low_stock_threshold > strata_domain::Stock::MAX {
            return Err(config_error(
                "STRATA_LOW_STOCK_THRESHOLD",
                format!("must be at most {}", strata_domain::Stock::MAX),
            ));
        }
        if self.workers == Some(0) {
            return Err(config_error("STRATA_WORKERS", "must be at least 1"));
        }
        if self.metrics_port != 0 && self.metrics_port == self.port {
            return Err(config_error(
                "STRATA_METRICS_PORT",
                "must differ from STRATA_PORT: metrics stay off the API port",
            ));
        }
        Ok(())
    }

    /// Keys must be long enough everywhere and rotations well-formed everywhere; production also
    /// refuses what anyone who has read the repository knows (its placeholders) or could guess.
    fn validate_secrets(&self) -> Result<(), ConfigError> {
        let production = self.env == Environment::Production;
        for (variable, file, key) in [
            ("STRATA_JWT_SECRET", &self.jwt_secret_file, &self.jwt_secret),
            (
                "STRATA_CURSOR_SECRET",
                &self.cursor_secret_file,
                &self.cursor_secret,
            ),
        ] {
            if let Some(problem) = key
                .as_ref()
                .and_then(|key| secrets::unfit_key(key.expose_secret(), production))
            {
                return Err(config_error(&source(variable, file), problem));
            }
        }
        if let Some(previous) = &self.jwt_previous_secrets {
            secrets::previous_keys(
                previous.expose_secret(),
                self.jwt_kid.as_deref(),
                production,
            )
            .map_err(|problem| {
                config_error(
                    &source(
                        "STRATA_JWT_PREVIOUS_SECRETS",
                        &self.jwt_previous_secrets_file,
                    ),
                    problem,
                )
            })?;
        }
        if !production {
            return Ok(());
        }
        for (variable, file, url) in [
            ("DATABASE_URL", &self.database_url_file, &self.database_url),
            ("REDIS_URL", &self.redis_url_file, &self.redis_url),
        ] {
            if secrets::is_placeholder(url) {
                return Err(config_error(
                    &source(variable, file),
                    "holds a placeholder published in this repository: set the real credentials",
                ));
            }
        }
        if self.jwt_secret.is_none() && self.jwt_private_key_pem.is_none() {
            return Err(config_error(
                "STRATA_JWT_SECRET",
                "is required when STRATA_ENV=production",
            ));
        }
        Ok(())
    }

    fn validate_redis(&self) -> Result<(), ConfigError> {
        let is_url = |url: &str| url.starts_with("redis://") || url.starts_with("rediss://");
        if !self.redis_cluster {
            if self.redis_url.contains(',') {
                return Err(config_error(
                    "REDIS_URL",
                    "several URLs name a Redis Cluster's nodes: set STRATA_REDIS_CLUSTER=true",
                ));
            }
            if !is_url(&self.redis_url) {
                return Err(config_error(
                    "REDIS_URL",
                    "must be a redis:// or rediss:// URL",
                ));
            }
            return Ok(());
        }
        let seeds: Vec<&str> = self
            .redis_url
            .split(',')
            .map(str::trim)
            .filter(|seed| !seed.is_empty())
            .collect();
        if seeds.is_empty() || !seeds.iter().all(|seed| is_url(seed)) {
            return Err(config_error(
                "REDIS_URL",
                "with STRATA_REDIS_CLUSTER=true, must be redis:// or rediss:// URLs of the \
                 cluster's nodes, comma-separated",
            ));
        }
        // A key's first `{…}` picks its slot: braces in the prefix would override the hash tags
        // that keep a script's keys on one slot.
        if self.redis_prefix.contains(['{', '}']) {
            return Err(config_error(
                "STRATA_REDIS_PREFIX",
                "must not contain braces with STRATA_REDIS_CLUSTER=true",
            ));
        }
        Ok(())
    }

    /// The effective log format.
    pub fn log_format(&self) -> LogFormat {
        self.log_format.unwrap_or(match self.env {
            Environment::Development => LogFormat::Pretty,
            Environment::Test | Environment::Production => LogFormat::Json,
        })
    }

    fn budget_variables(&self) -> [(&'static str, &str); 6] {
        [
            (
                "STRATA_RATE_LIMIT_READ_ANONYMOUS",
                &self.rate_limit_read_anonymous,
            ),
            ("STRATA_RATE_LIMIT_READ_USER", &self.rate_limit_read_user),
            (
                "STRATA_RATE_LIMIT_WRITE_ANONYMOUS",
                &self.rate_limit_write_anonymous,
            ),
            ("STRATA_RATE_LIMIT_WRITE_USER", &self.rate_limit_write_user),
            ("STRATA_RATE_LIMIT_AUTH_IP", &self.rate_limit_auth_ip),
            ("STRATA_RATE_LIMIT_AUTH_EMAIL", &self.rate_limit_auth_email),
        ]
    }

    /// The edge's settings (budgets, proxies, timeouts, CORS, HSTS).
    pub fn edge(&self) -> Result<EdgeSettings, ConfigError> {
        let budget = |variable, raw: &str| parse_budget(variable, raw);
        Ok(EdgeSettings {
            rate_limiting: self.rate_limit_enabled,
            fail_open: self.rate_limit_fail_open,
            budgets: Budgets {
                read: GroupBudget {
                    anonymous: budget(
                        "STRATA_RATE_LIMIT_READ_ANONYMOUS",
                        &self.rate_limit_read_anonymous,
                    )?,
                    user: budget("STRATA_RATE_LIMIT_READ_USER", &self.rate_limit_read_user)?,
                },
                write: GroupBudget {
                    anonymous: budget(
                        "STRATA_RATE_LIMIT_WRITE_ANONYMOUS",
                        &self.rate_limit_write_anonymous,
                    )?,
                    user: budget("STRATA_RATE_LIMIT_WRITE_USER", &self.rate_limit_write_user)?,
                },
                auth_ip: budget("STRATA_RATE_LIMIT_AUTH_IP", &self.rate_limit_auth_ip)?,
                auth_email: budget("STRATA_RATE_LIMIT_AUTH_EMAIL", &self.rate_limit_auth_email)?,
            },
            trusted_proxies: self.trusted_proxy_networks()?,
            ipv6_budget_prefix: self.ipv6_budget_prefix()?,
            request_timeout: Self::ms(self.request_timeout_ms),
            max_in_flight: self.max_in_flight,
            max_concurrent_exports: self.max_concurrent_exports,
            compress_min_bytes: self.compress_min_bytes,
            cors_origins: self.cors_origin_list(),
            hsts_max_age_secs: self.hsts_max_age_secs,
        })
    }

    fn ipv6_budget_prefix(&self) -> Result<u8, ConfigError> {
        if (1..=128).contains(&self.rate_limit_ipv6_prefix) {
            Ok(self.rate_limit_ipv6_prefix)
        } else {
            Err(config_error(
                "STRATA_RATE_LIMIT_IPV6_PREFIX",
                "must be a prefix length from 1 to 128",
            ))
        }
    }

    fn trusted_proxy_networks(&self) -> Result<Vec<IpNet>, ConfigError> {
        self.trusted_proxies
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .map_err(|message| config_error("STRATA_TRUSTED_PROXIES", message))
            })
            .collect()
    }

    fn cors_origin_list(&self) -> Vec<String> {
        self.cors_origins
            .split(',')
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The interface the metrics listener binds.
    pub fn metrics_host(&self) -> &str {
        self.metrics_host.as_deref().unwrap_or(&self.host)
    }

    /// Milliseconds as a duration.
    pub fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }
}

/// figment reports an unknown field without a path; recover its name from the message.
fn unknown_variable(message: &str) -> String {
    message
        .split('`')
        .nth(1)
        .map(variable_for)
        .unwrap_or_else(|| "STRATA_*".to_owned())
}

#[cfg(test)]
#[allow(clippy::result_large_err)]
mod tests {
    use figment::Jail;

    use super::*;

    fn load() -> Result<Settings, ConfigError> {
        Settings::from_env()
    }

    #[test]
    fn defaults_are_valid() {
        Jail::expect_with(|_| {
            let settings = load().map_err(|e| e.to_string())?;
            assert_eq!(settings.port, 8080);
            assert_eq!(settings.env, Environment::Development);
            Ok(())
        });
    }

    #[test]
    fn metrics_have_their_own_port_on_the_api_host_by_default_and_never_the_api_port() {
        Jail::expect_with(|jail| {
            let settings = load().map_err(|e| e.to_string())?;
            assert_eq!(settings.metrics_port, 9464);
            assert_eq!(settings.metrics_host(), settings.host);
            assert_eq!(settings.health_cache_ms, 1000);
            jail.set_env("STRATA_METRICS_HOST", "10.0.0.7");
            jail.set_env("STRATA_HEALTH_CACHE_MS", "0");
            let settings = load().map_err(|e| e.to_string())?;
            assert_eq!(settings.metrics_host(), "10.0.0.7");
            assert_eq!(settings.health_cache_ms, 0);
            jail.set_env("STRATA_METRICS_PORT", "8080");
            let error = load().expect_err("the API's port");
            assert_eq!(error.variable, "STRATA_METRICS_PORT");
            jail.set_env("STRATA_PORT", "0");
            jail.set_env("STRATA_METRICS_PORT", "0");
            load().map_err(|e| e.to_string())?;
            Ok(())
        });
    }

    #[test]
    fn a_malformed_value_names_its_variable() {
        Jail::expect_with(|jail| {
            jail.set_env("STRATA_PORT", "eighty");
            let error = load().expect_err("must fail");
            assert_eq!(error.variable, "STRATA_PORT");
            Ok(())
        });
    }

    #[test]
    fn an_unknown_strata_variable_is_refused_by_name() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("STRATA_PROT", "8080");
            let error = load().expect_err("must fail");
            assert_eq!(error.variable, "STRATA_PROT");
            assert!(error.message.contains("STRATA_PORT?"), "{error}");
            jail.clear_env();
            jail.set_env("STRATA_JWT_SECERT", GOOD);
            let error = load().expect_err("a misspelt secret");
            assert_eq!(error.variable, "STRATA_JWT_SECERT");
            assert!(error.message.contains("STRATA_JWT_SECRET?"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn a_strata_variable_far_from_every_setting_is_ignored_and_reported() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("STRATA_RELEASE_CHANNEL", "stable");
            jail.set_env("STRATA_DB_POOL", "4");
            let (settings, unknown) =
                Settings::from_env_reporting_unknown().map_err(|e| e.to_string())?;
            assert_eq!(settings.db_pool_size, 16);
            let named: Vec<(&str, Option<&str>)> = unknown
                .iter()
                .map(|u| (u.variable.as_str(), u.suggestion.as_deref()))
                .collect();
            assert_eq!(
                named,
                [
                    ("STRATA_DB_POOL", Some("STRATA_DB_POOL_SIZE")),
                    ("STRATA_RELEASE_CHANNEL", None),
                ]
            );
            Ok(())
        });
    }

    #[test]
    fn kubernetes_service_links_are_ignored_silently() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            // A Service named strata-api (one port, "http", 80) and one named strata (IPv6, two
            // ports): the second's STRATA_PORT is a link, never a port number.
            for (name, value) in [
                ("STRATA_API_SERVICE_HOST", "10.0.0.1"),
                ("STRATA_API_SERVICE_PORT", "80"),
                ("STRATA_API_SERVICE_PORT_HTTP", "80"),
                ("STRATA_API_PORT", "tcp://10.0.0.1:80"),
                ("STRATA_API_PORT_80_TCP", "tcp://10.0.0.1:80"),
                ("STRATA_API_PORT_80_TCP_PROTO", "tcp"),
                ("STRATA_API_PORT_80_TCP_PORT", "80"),
                ("STRATA_API_PORT_80_TCP_ADDR", "10.0.0.1"),
                ("STRATA_SERVICE_HOST", "fd00::5"),
                ("STRATA_SERVICE_PORT", "80"),
                ("STRATA_SERVICE_PORT_WEB", "80"),
                ("STRATA_SERVICE_PORT_STATS", "9000"),
                ("STRATA_PORT", "tcp://[fd00::5]:80"),
                ("STRATA_PORT_80_TCP", "tcp://[fd00::5]:80"),
                ("STRATA_PORT_80_TCP_PROTO", "tcp"),
                ("STRATA_PORT_80_TCP_PORT", "80"),
                ("STRATA_PORT_80_TCP_ADDR", "fd00::5"),
                ("STRATA_PORT_9000_UDP", "udp://[fd00::5]:9000"),
                ("STRATA_PORT_9000_UDP_PROTO", "udp"),
                ("STRATA_PORT_9000_UDP_PORT", "9000"),
                ("STRATA_PORT_9000_UDP_ADDR", "fd00::5"),
            ] {
                jail.set_env(name, value);
            }
            let (settings, unknown) =
                Settings::from_env_reporting_unknown().map_err(|e| e.to_string())?;
            assert_eq!(settings.port, 8080);
            assert!(unknown.is_empty(), "{unknown:?}");
            // Only a link's value makes a link: a port number under a link's name is an operator's.
            jail.set_env("STRATA_WORKER_PORT", "9091");
            let (_, unknown) = Settings::from_env_reporting_unknown().map_err(|e| e.to_string())?;
            assert_eq!(unknown.len(), 1, "{unknown:?}");
            assert_eq!(unknown[0].variable, "STRATA_WORKER_PORT");
            Ok(())
        });
    }

    #[test]
    fn production_requires_a_jwt_secret() {
        Jail::expect_with(|jail| {
            jail.set_env("STRATA_ENV", "production");
            let error = load().expect_err("must fail");
            assert_eq!(error.variable, "STRATA_JWT_SECRET");
            jail.set_env("STRATA_JWT_SECRET", "short");
            assert_eq!(load().expect_err("too short").variable, "STRATA_JWT_SECRET");
            jail.set_env("STRATA_JWT_SECRET", "x".repeat(32));
            assert_eq!(load().expect_err("patterned").variable, "STRATA_JWT_SECRET");
            jail.set_env("STRATA_JWT_SECRET", GOOD);
            assert!(load().is_ok());
            Ok(())
        });
    }

    /// As `openssl rand -base64 32` prints one.
    const GOOD: &str = "zt2dSbY00d3b+JvHGQuhTcm1U6pOAROgUCLBZj/kkrs=";

    #[test]
    fn a_secret_file_is_read_without_its_trailing_newline() {
        Jail::expect_with(|jail| {
            // The machine's own DATABASE_URL (which `cargo xtask test` exports) would make the
            // file below a second source of the same setting.
            jail.clear_env();
            jail.create_file("jwt", &format!("{GOOD}\n"))?;
            jail.create_file(
                "previous",
                "old=2851ef06c389735ed211df5ff37ed50476e8fa80f2d1e59f4365b518e040c5c0\r\n",
            )?;
            jail.create_file("url", "postgres://strata:pw@db/strata\n\n")?;
            jail.set_env(
                "STRATA_JWT_SECRET_FILE",
                jail.directory().join("jwt").display(),
            );
            jail.set_env("STRATA_JWT_PREVIOUS_SECRETS_FILE", "previous");
            let settings = load().map_err(|e| e.to_string())?;
            assert_eq!(
                settings
                    .jwt_secret
                    .map(|s| s.expose_secret().to_owned())
                    .as_deref(),
                Some(GOOD)
            );
            assert!(
                settings
                    .jwt_previous_secrets
                    .is_some_and(|s| s.expose_secret().ends_with("c5c0"))
            );
            jail.set_env("DATABASE_URL_FILE", "url");
            let settings = load().map_err(|e| e.to_string())?;
            assert_eq!(settings.database_url, "postgres://strata:pw@db/strata\n");
            Ok(())
        });
    }

    #[test]
    fn a_secret_set_twice_or_in_an_unreadable_file_is_refused_by_name() {
        Jail::expect_with(|jail| {
            jail.set_env("STRATA_CURSOR_SECRET_FILE", "missing");
            let error = load().expect_err("unreadable");
            assert_eq!(error.variable, "STRATA_CURSOR_SECRET_FILE");
            assert!(error.message.contains("missing"), "{error}");
            jail.create_file("cursor", GOOD)?;
            jail.set_env("STRATA_CURSOR_SECRET_FILE", "cursor");
            assert!(load().is_ok());
            jail.set_env("STRATA_CURSOR_SECRET", GOOD);
            let error = load().expect_err("both");
            assert_eq!(error.variable, "STRATA_CURSOR_SECRET_FILE");
            assert!(error.message.contains("STRATA_CURSOR_SECRET:"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn a_retired_key_cannot_take_the_current_kid() {
        Jail::expect_with(|jail| {
            jail.set_env("STRATA_JWT_KID", "2026-01");
            jail.set_env("STRATA_JWT_PREVIOUS_SECRETS", format!("2026-01={GOOD}"));
            let error = load().expect_err("same kid");
            assert_eq!(error.variable, "STRATA_JWT_PREVIOUS_SECRETS");
            jail.set_env("STRATA_JWT_PREVIOUS_SECRETS", format!("2025-07={GOOD}"));
            assert!(load().is_ok());
            Ok(())
        });
    }

    #[test]
    fn the_admin_settings_have_defaults_and_bad_values_are_named() {
        Jail::expect_with(|jail| {
            let settings = load().map_err(|e| e.to_string())?;
            assert_eq!(
                (
                    settings.dashboard_ttl_secs,
                    settings.low_stock_threshold,
                    settings.report_timeout_secs
                ),
                (30, 10, 60)
            );
            for (variable, bad) in [
                ("STRATA_DASHBOARD_TTL_SECS", "0"),
                ("STRATA_LOW_STOCK_THRESHOLD", "0"),
                ("STRATA_LOW_STOCK_THRESHOLD", "1000000001"),
                ("STRATA_LOW_STOCK_THRESHOLD", "-1"),
                ("STRATA_REPORT_TIMEOUT_SECS", "0"),
            ] {
                jail.set_env(variable, bad);
                assert_eq!(
                    load().expect_err(bad).variable,
                    variable,
                    "{variable}={bad}"
                );
                jail.set_env(variable, "5");
            }
            assert_eq!(load().map_err(|e| e.to_string())?.low_stock_threshold, 5);
            Ok(())
        });
    }

    #[test]
    fn a_redis_cluster_takes_its_seed_nodes_comma_separated() {
        Jail::expect_with(|jail| {
            assert!(!load().map_err(|e| e.to_string())?.redis_cluster);
            let seeds = "redis://10.0.0.1:6379, redis://10.0.0.2:6379,redis://10.0.0.3:6379";
            jail.set_env("REDIS_URL", seeds);
            assert_eq!(load().expect_err("no cluster").variable, "REDIS_URL");
            jail.set_env("STRATA_REDIS_CLUSTER", "true");
            let settings = load().map_err(|e| e.to_string())?;
            assert!(settings.redis_cluster);
            assert_eq!(settings.redis_url, seeds);
            jail.set_env("STRATA_REDIS_PREFIX", "{strata}:");
            assert_eq!(load().expect_err("braces").variable, "STRATA_REDIS_PREFIX");
            jail.set_env("STRATA_REDIS_PREFIX", "strata:");
            jail.set_env("REDIS_URL", "redis://10.0.0.1:6379,10.0.0.2:6379");
            assert_eq!(load().expect_err("scheme").variable, "REDIS_URL");
            jail.set_env("STRATA_REDIS_CLUSTER", "maybe");
            assert_eq!(load().expect_err("bool").variable, "STRATA_REDIS_CLUSTER");
            Ok(())
        });
    }

    #[test]
    fn an_ipv6_budget_prefix_outside_1_to_128_is_named() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            for (raw, ok) in [
                ("64", true),
                ("1", true),
                ("128", true),
                ("0", false),
                ("129", false),
                ("/64", false),
            ] {
                jail.set_env("STRATA_RATE_LIMIT_IPV6_PREFIX", raw);
                match load() {
                    Ok(settings) => {
                        assert!(ok, "{raw} was accepted");
                        assert_eq!(
                            settings
                                .edge()
                                .map(|e| e.ipv6_budget_prefix.to_string())
                                .ok()
                                .as_deref(),
                            Some(raw)
                        );
                    }
                    Err(error) => {
                        assert!(!ok, "{raw} was refused: {error:?}");
                        assert_eq!(error.variable, "STRATA_RATE_LIMIT_IPV6_PREFIX");
                    }
                }
            }
            Ok(())
        });
    }

    #[test]
    fn bad_urls_and_enums_are_named() {
        Jail::expect_with(|jail| {
            jail.set_env("DATABASE_URL", "mysql://x");
            assert_eq!(load().expect_err("db").variable, "DATABASE_URL");
            jail.set_env("DATABASE_URL", "postgres://x/y");
            jail.set_env("STRATA_REVOCATION_CHECK", "maybe");
            assert_eq!(
                load().expect_err("policy").variable,
                "STRATA_REVOCATION_CHECK"
            );
            jail.set_env("STRATA_REVOCATION_CHECK", "allow");
            jail.set_env("STRATA_JWT_ALGORITHM", "none");
            assert_eq!(load().expect_err("alg").variable, "STRATA_JWT_ALGORITHM");
            Ok(())
        });
    }
}
