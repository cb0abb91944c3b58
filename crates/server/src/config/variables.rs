//! The variables as the environment spells them: one flat key per variable (`x` from `STRATA_X`),
//! each with its default, checked and parsed once into the typed sections of [`Settings`].

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use strata_http::edge::{Budgets, GroupBudget, IpNet};
use strata_ports::RateLimit;
use strata_services::tokens::Algorithm;
use strata_services::{LocalCacheSettings, RevocationCheckPolicy};

use super::{
    AuthSettings, CacheSettings, ConfigError, DatabaseSettings, Environment, HashingSettings,
    HttpSettings, LimitSettings, LogFormat, RedisSettings, Settings, TelemetrySettings,
    WorkerSettings, config_error,
};
use crate::secrets;

/// Every variable, with its default. Field `x` is read from `STRATA_X`, except `database_url`,
/// `redis_url` and their `_file` variants, read from the unprefixed names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Variables {
    /// `STRATA_ENV`: development | test | production.
    #[serde(default = "default_env")]
    env: Environment,
    /// `STRATA_HOST`: interface to listen on.
    #[serde(default = "default_host")]
    host: String,
    /// `STRATA_PORT`: port to listen on (0 picks a free one).
    #[serde(default = "default_port")]
    port: u16,
    /// `STRATA_WORKERS`: HTTP worker threads (default: one per core).
    #[serde(default)]
    workers: Option<usize>,
    /// `DATABASE_URL`.
    #[serde(default = "default_database_url")]
    database_url: String,
    /// `DATABASE_URL_FILE`: a file holding `DATABASE_URL` (the two exclude each other).
    #[serde(default)]
    database_url_file: Option<PathBuf>,
    /// `STRATA_DB_POOL_SIZE`.
    #[serde(default = "default_pool_size")]
    db_pool_size: u32,
    /// `STRATA_DB_ACQUIRE_TIMEOUT_MS`: wait for a pooled connection before answering 503.
    #[serde(default = "default_acquire_ms")]
    db_acquire_timeout_ms: u64,
    /// `STRATA_DB_QUERY_TIMEOUT_MS`.
    #[serde(default = "default_query_ms")]
    db_query_timeout_ms: u64,
    /// `REDIS_URL`; with `STRATA_REDIS_CLUSTER=true`, the cluster's seed nodes, comma-separated.
    #[serde(default = "default_redis_url")]
    redis_url: String,
    /// `REDIS_URL_FILE`: a file holding `REDIS_URL`.
    #[serde(default)]
    redis_url_file: Option<PathBuf>,
    /// `STRATA_REDIS_CLUSTER`: Redis is a Redis Cluster (true) or a single server (false).
    #[serde(default)]
    redis_cluster: bool,
    /// `STRATA_REDIS_PREFIX`: namespace of every key.
    #[serde(default = "default_redis_prefix")]
    redis_prefix: String,
    /// `STRATA_REDIS_TIMEOUT_MS`: bound on connecting and on each command.
    #[serde(default = "default_redis_ms")]
    redis_timeout_ms: u64,
    /// `STRATA_JWT_SECRET`: HMAC secret (≥ 32 bytes); required in production, where it must also
    /// be no placeholder of this repository and not patterned (see [`secrets`]).
    #[serde(default)]
    jwt_secret: Option<SecretString>,
    /// `STRATA_JWT_SECRET_FILE`: a file holding `STRATA_JWT_SECRET`.
    #[serde(default)]
    jwt_secret_file: Option<PathBuf>,
    /// `STRATA_JWT_ALGORITHM`: HS256 (default), HS384, HS512, RS256, PS256, ES256, EdDSA, ...
    #[serde(default = "default_jwt_algorithm")]
    jwt_algorithm: String,
    /// `STRATA_JWT_PRIVATE_KEY_PEM` / `STRATA_JWT_PUBLIC_KEY_PEM`: keys for the asymmetric algorithms.
    #[serde(default)]
    jwt_private_key_pem: Option<SecretString>,
    /// `STRATA_JWT_PRIVATE_KEY_PEM_FILE`: a file holding `STRATA_JWT_PRIVATE_KEY_PEM`.
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "a setting so that the variable is known; `read_files` reads the file"
    )]
    jwt_private_key_pem_file: Option<PathBuf>,
    /// See `jwt_private_key_pem`.
    #[serde(default)]
    jwt_public_key_pem: Option<String>,
    /// `STRATA_JWT_PUBLIC_KEY_PEM_FILE`: a file holding `STRATA_JWT_PUBLIC_KEY_PEM`.
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "a setting so that the variable is known; `read_files` reads the file"
    )]
    jwt_public_key_pem_file: Option<PathBuf>,
    /// `STRATA_JWT_KID`: key id written into tokens.
    #[serde(default)]
    jwt_kid: Option<String>,
    /// `STRATA_JWT_PREVIOUS_SECRETS`: `kid=secret,kid=secret` still accepted after a rotation; each
    /// secret is held to `STRATA_JWT_SECRET`'s rules.
    #[serde(default)]
    jwt_previous_secrets: Option<SecretString>,
    /// `STRATA_JWT_PREVIOUS_SECRETS_FILE`: a file holding `STRATA_JWT_PREVIOUS_SECRETS`.
    #[serde(default)]
    jwt_previous_secrets_file: Option<PathBuf>,
    /// `STRATA_JWT_ISSUER`.
    #[serde(default = "default_issuer")]
    jwt_issuer: String,
    /// `STRATA_JWT_AUDIENCE`.
    #[serde(default = "default_audience")]
    jwt_audience: String,
    /// `STRATA_ACCESS_TOKEN_TTL_SECS`.
    #[serde(default = "default_access_ttl")]
    access_token_ttl_secs: u64,
    /// `STRATA_REFRESH_TOKEN_TTL_SECS`.
    #[serde(default = "default_refresh_ttl")]
    refresh_token_ttl_secs: u64,
    /// `STRATA_REVOCATION_CHECK`: deny (503 when Redis is down) | allow.
    #[serde(default = "default_revocation")]
    revocation_check: String,
    /// `STRATA_CURSOR_SECRET`: key of pagination cursors (default: derived from the JWT secret);
    /// held to `STRATA_JWT_SECRET`'s rules.
    #[serde(default)]
    cursor_secret: Option<SecretString>,
    /// `STRATA_CURSOR_SECRET_FILE`: a file holding `STRATA_CURSOR_SECRET`.
    #[serde(default)]
    cursor_secret_file: Option<PathBuf>,
    /// `STRATA_ARGON2_MEMORY_KIB`.
    #[serde(default = "default_argon_memory")]
    argon2_memory_kib: u32,
    /// `STRATA_ARGON2_ITERATIONS`.
    #[serde(default = "default_argon_iterations")]
    argon2_iterations: u32,
    /// `STRATA_ARGON2_PARALLELISM`.
    #[serde(default = "default_argon_parallelism")]
    argon2_parallelism: u32,
    /// `STRATA_HASH_CONCURRENCY`: hashes at once (default: one per core).
    #[serde(default)]
    hash_concurrency: Option<usize>,
    /// `STRATA_HASH_QUEUE_TIMEOUT_MS`: wait for a hashing slot before answering 503.
    #[serde(default = "default_hash_queue_ms")]
    hash_queue_timeout_ms: u64,
    /// `STRATA_HASH_NICENESS`: the primary hashing threads' niceness, 0–19 (higher leaves more of a
    /// contended CPU to the async workers, at the hashes' expense).
    #[serde(default = "default_hash_niceness")]
    hash_niceness: u8,
    /// `STRATA_HASH_SPARE_NICENESS`: the spare hashing threads' niceness, 0–19 (half the
    /// threads, used only while every other one is busy; 19 lets a login storm take at most half
    /// of a contended CPU from the async workers).
    #[serde(default = "default_hash_spare_niceness")]
    hash_spare_niceness: u8,
    /// `STRATA_CACHE_TTL_SECS`.
    #[serde(default = "default_cache_ttl")]
    cache_ttl_secs: u64,
    /// `STRATA_LOCAL_CACHE_ENABLED`: keep hot cached values (products) in process too, dropped
    /// across instances by Redis pub/sub on every write.
    #[serde(default = "default_true")]
    local_cache_enabled: bool,
    /// `STRATA_LOCAL_CACHE_TTL_SECS`: the longest an in-process copy is served, a bound for an
    /// invalidation that could not be announced.
    #[serde(default = "default_local_cache_ttl")]
    local_cache_ttl_secs: u64,
    /// `STRATA_LOCAL_CACHE_CAPACITY`: most values kept in process.
    #[serde(default = "default_local_cache_capacity")]
    local_cache_capacity: u64,
    /// `STRATA_EXPORT_BATCH_SIZE`: rows per query of the admin exports (1–50000).
    #[serde(default = "default_export_batch_size")]
    export_batch_size: usize,
    /// `STRATA_HEALTH_TIMEOUT_MS`: bound on each readiness ping.
    #[serde(default = "default_health_ms")]
    health_timeout_ms: u64,
    /// `STRATA_HEALTH_CACHE_MS`: a readiness check answers every probe arriving this long after it
    /// started (0: only those arriving while it runs).
    #[serde(default = "default_health_cache_ms")]
    health_cache_ms: u64,
    /// `STRATA_SHUTDOWN_GRACE_SECS`: after SIGTERM, readiness is 503 this long before the listener
    /// closes, so that load balancers stop routing here first.
    #[serde(default = "default_grace")]
    shutdown_grace_secs: u64,
    /// `STRATA_SHUTDOWN_TIMEOUT_SECS`: the most in-flight requests get to finish.
    #[serde(default = "default_drain")]
    shutdown_timeout_secs: u64,
    /// `STRATA_RATE_LIMIT_ENABLED`: spend budgets per caller (true) or not at all.
    #[serde(default = "default_true")]
    rate_limit_enabled: bool,
    /// `STRATA_RATE_LIMIT_FAIL_OPEN`: with Redis unreachable, let requests through (true) or
    /// answer 503 (false).
    #[serde(default = "default_true")]
    rate_limit_fail_open: bool,
    /// `STRATA_RATE_LIMIT_READ_ANONYMOUS`: GETs per client IP, as `requests/seconds`.
    #[serde(default = "default_read_anonymous")]
    rate_limit_read_anonymous: String,
    /// `STRATA_RATE_LIMIT_READ_USER`: GETs per user.
    #[serde(default = "default_read_user")]
    rate_limit_read_user: String,
    /// `STRATA_RATE_LIMIT_WRITE_ANONYMOUS`: other methods per client IP.
    #[serde(default = "default_write_anonymous")]
    rate_limit_write_anonymous: String,
    /// `STRATA_RATE_LIMIT_WRITE_USER`: other methods per user.
    #[serde(default = "default_write_user")]
    rate_limit_write_user: String,
    /// `STRATA_RATE_LIMIT_AUTH_IP`: register, login and refresh per client IP.
    #[serde(default = "default_auth_ip")]
    rate_limit_auth_ip: String,
    /// `STRATA_RATE_LIMIT_AUTH_EMAIL`: register and login per email address.
    #[serde(default = "default_auth_email")]
    rate_limit_auth_email: String,
    /// `STRATA_TRUSTED_PROXIES`: comma-separated addresses or CIDR networks whose
    /// `X-Forwarded-For` is believed (empty: nobody's).
    #[serde(default)]
    trusted_proxies: String,
    /// `STRATA_RATE_LIMIT_IPV6_PREFIX`: IPv6 clients share per-IP budgets per network of this
    /// prefix length (1–128; 64 by default, the smallest network a host is usually given).
    #[serde(default = "default_ipv6_prefix")]
    rate_limit_ipv6_prefix: u8,
    /// `STRATA_CORS_ORIGINS`: comma-separated origins allowed to call from a browser (empty: none).
    #[serde(default)]
    cors_origins: String,
    /// `STRATA_REQUEST_TIMEOUT_MS`: a request running longer is abandoned with 503.
    #[serde(default = "default_request_timeout")]
    request_timeout_ms: u64,
    /// `STRATA_MAX_IN_FLIGHT`: requests handled at once; beyond it 503 with Retry-After.
    #[serde(default = "default_max_in_flight")]
    max_in_flight: usize,
    /// `STRATA_MAX_CONCURRENT_EXPORTS`: admin exports streaming at once; beyond it 503.
    #[serde(default = "default_max_concurrent_exports")]
    max_concurrent_exports: usize,
    /// `STRATA_COMPRESS_MIN_BYTES`: smaller bodies are sent uncompressed.
    #[serde(default = "default_compress_min")]
    compress_min_bytes: u64,
    /// `STRATA_HSTS_MAX_AGE_SECS`: send Strict-Transport-Security with this max-age (unset: not
    /// sent; set it when the API is served over TLS).
    #[serde(default)]
    hsts_max_age_secs: Option<u64>,
    /// `STRATA_METRICS_HOST`: interface of the `GET /metrics` listener of `strata serve` (default:
    /// `STRATA_HOST`).
    #[serde(default)]
    metrics_host: Option<String>,
    /// `STRATA_METRICS_PORT`: port of that listener, never the API's (0 picks a free one).
    #[serde(default = "default_metrics_port")]
    metrics_port: u16,
    /// `STRATA_WORKER_METRICS_PORT`: where `strata worker` serves `/metrics` and `/health/live`
    /// (on `STRATA_HOST`); unset: not served.
    #[serde(default)]
    worker_metrics_port: Option<u16>,
    /// `STRATA_WORKER_KEEP_FINISHED_JOBS_DAYS`: finished jobs are deleted this long after they
    /// ended (an hourly sweep, which also deletes expired Idempotency-Key records).
    #[serde(default = "default_keep_finished_jobs")]
    worker_keep_finished_jobs_days: u64,
    /// `STRATA_WORKER_CONSUMER`: this worker's name in the consumer group (default: host-pid).
    #[serde(default)]
    worker_consumer: Option<String>,
    /// `STRATA_WORKER_MAX_ATTEMPTS`: attempts before a job is dead-lettered.
    #[serde(default = "default_max_attempts")]
    worker_max_attempts: u32,
    /// `STRATA_WORKER_BACKOFF_MS`: delay before the first retry, doubled for each further one.
    #[serde(default = "default_backoff_ms")]
    worker_backoff_ms: u64,
    /// `STRATA_WORKER_BACKOFF_MAX_MS`: longest delay between attempts.
    #[serde(default = "default_backoff_max_ms")]
    worker_backoff_max_ms: u64,
    /// `STRATA_WORKER_CLAIM_IDLE_MS`: a job unacknowledged this long is taken over from its
    /// (presumably dead) worker.
    #[serde(default = "default_claim_idle_ms")]
    worker_claim_idle_ms: u64,
    /// `STRATA_WORKER_SWEEP_AFTER_SECS`: a queued job untouched this long is enqueued again (its
    /// message may have been lost).
    #[serde(default = "default_sweep_after")]
    worker_sweep_after_secs: u64,
    /// `STRATA_WORKER_RENEWAL_EVERY_SECS`: how often due subscriptions are renewed (once per
    /// cluster per tick).
    #[serde(default = "default_renewal_every")]
    worker_renewal_every_secs: u64,
    /// `STRATA_DASHBOARD_TTL_SECS`: how long the admin dashboard is served from the cache.
    #[serde(default = "default_dashboard_ttl")]
    dashboard_ttl_secs: u64,
    /// `STRATA_LOW_STOCK_THRESHOLD`: the dashboard lists active products with fewer units.
    #[serde(default = "default_low_stock_threshold")]
    low_stock_threshold: u32,
    /// `STRATA_REPORT_TIMEOUT_SECS`: how long a report's queries may run in all (in the worker).
    #[serde(default = "default_report_timeout")]
    report_timeout_secs: u64,
    /// `STRATA_LOG_FORMAT`: json | pretty (default: json, pretty in development).
    #[serde(default)]
    log_format: Option<LogFormat>,
    /// `STRATA_LOG`: tracing filter (e.g. `info,strata_http=debug`).
    #[serde(default = "default_log")]
    log: String,
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

/// The variable that gave a setting its value: the `_FILE` variant when it was read from a file.
fn source(variable: &str, file: &Option<PathBuf>) -> String {
    match file {
        Some(_) => format!("{variable}_FILE"),
        None => variable.to_owned(),
    }
}

impl Variables {
    /// Checks every variable and parses each once into the type its user takes, in the order the
    /// checks have always run, so that of several bad variables the same one is named.
    pub(super) fn into_settings(self) -> Result<Settings, ConfigError> {
        self.check_numbers_and_urls()?;
        let revocation_check = match self.revocation_check.as_str() {
            "deny" => RevocationCheckPolicy::Deny,
            "allow" => RevocationCheckPolicy::Allow,
            _ => {
                return Err(config_error(
                    "STRATA_REVOCATION_CHECK",
                    "must be deny or allow",
                ));
            }
        };
        let jwt_algorithm = self.jwt_algorithm.parse::<Algorithm>().map_err(|_| {
            config_error(
                "STRATA_JWT_ALGORITHM",
                format!("unknown algorithm {:?}", self.jwt_algorithm),
            )
        })?;
        let jwt_previous_secrets = self.checked_secrets()?;
        let budgets = self.budgets()?;
        let trusted_proxies = self.trusted_proxy_networks()?;
        let ipv6_budget_prefix = self.ipv6_budget_prefix()?;
        self.check_admission()?;
        let cors_origins = self.cors_origin_list()?;
        self.check_threshold_and_listeners()?;
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.log) {
            return Err(config_error(
                "STRATA_LOG",
                format!("{:?} is not a tracing filter: {error}", self.log),
            ));
        }
        let log_format = self.log_format.unwrap_or(match self.env {
            Environment::Development => LogFormat::Pretty,
            Environment::Test | Environment::Production => LogFormat::Json,
        });
        let metrics_host = self.metrics_host.unwrap_or_else(|| self.host.clone());
        Ok(Settings {
            env: self.env,
            http: HttpSettings {
                host: self.host,
                port: self.port,
                workers: self.workers,
                request_timeout: Duration::from_millis(self.request_timeout_ms),
                compress_min_bytes: self.compress_min_bytes,
                hsts_max_age_secs: self.hsts_max_age_secs,
                cors_origins,
                health_timeout: Duration::from_millis(self.health_timeout_ms),
                health_cache: Duration::from_millis(self.health_cache_ms),
                shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
                shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
            },
            database: DatabaseSettings {
                url: SecretString::from(self.database_url),
                pool_size: self.db_pool_size,
                acquire_timeout: Duration::from_millis(self.db_acquire_timeout_ms),
                query_timeout: Duration::from_millis(self.db_query_timeout_ms),
            },
            redis: RedisSettings {
                url: SecretString::from(self.redis_url),
                cluster: self.redis_cluster,
                prefix: self.redis_prefix,
                timeout: Duration::from_millis(self.redis_timeout_ms),
            },
            auth: AuthSettings {
                jwt_secret: self.jwt_secret,
                jwt_algorithm,
                jwt_private_key_pem: self.jwt_private_key_pem,
                jwt_public_key_pem: self.jwt_public_key_pem,
                jwt_kid: self.jwt_kid,
                jwt_previous_secrets,
                jwt_issuer: self.jwt_issuer,
                jwt_audience: self.jwt_audience,
                access_token_ttl: Duration::from_secs(self.access_token_ttl_secs),
                refresh_token_ttl: Duration::from_secs(self.refresh_token_ttl_secs),
                revocation_check,
                cursor_secret: self.cursor_secret,
            },
            hashing: HashingSettings {
                argon2_memory_kib: self.argon2_memory_kib,
                argon2_iterations: self.argon2_iterations,
                argon2_parallelism: self.argon2_parallelism,
                concurrency: self.hash_concurrency,
                queue_timeout: Duration::from_millis(self.hash_queue_timeout_ms),
                niceness: self.hash_niceness,
                spare_niceness: self.hash_spare_niceness,
            },
            cache: CacheSettings {
                ttl: Duration::from_secs(self.cache_ttl_secs),
                local: self.local_cache_enabled.then(|| LocalCacheSettings {
                    capacity: self.local_cache_capacity,
                    ttl: Duration::from_secs(self.local_cache_ttl_secs),
                }),
                dashboard_ttl: Duration::from_secs(self.dashboard_ttl_secs),
            },
            limits: LimitSettings {
                rate_limiting: self.rate_limit_enabled,
                fail_open: self.rate_limit_fail_open,
                budgets,
                trusted_proxies,
                ipv6_budget_prefix,
                max_in_flight: self.max_in_flight,
                max_concurrent_exports: self.max_concurrent_exports,
                export_batch_size: self.export_batch_size,
                report_timeout: Duration::from_secs(self.report_timeout_secs),
                low_stock_threshold: self.low_stock_threshold,
            },
            worker: WorkerSettings {
                metrics_port: self.worker_metrics_port,
                keep_finished_jobs: Duration::from_secs(
                    self.worker_keep_finished_jobs_days
                        .saturating_mul(24 * 3600),
                ),
                consumer: self.worker_consumer,
                max_attempts: self.worker_max_attempts,
                backoff: Duration::from_millis(self.worker_backoff_ms),
                backoff_max: Duration::from_millis(self.worker_backoff_max_ms),
                claim_idle: Duration::from_millis(self.worker_claim_idle_ms),
                sweep_after: Duration::from_secs(self.worker_sweep_after_secs),
                renewal_every: Duration::from_secs(self.worker_renewal_every_secs),
            },
            telemetry: TelemetrySettings {
                log: self.log,
                log_format,
                metrics_host,
                metrics_port: self.metrics_port,
            },
        })
    }

    fn check_numbers_and_urls(&self) -> Result<(), ConfigError> {
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
        self.check_redis()
    }

    fn check_redis(&self) -> Result<(), ConfigError> {
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

    /// Keys must be long enough everywhere and rotations well-formed everywhere; production also
    /// refuses what anyone who has read the repository knows (its placeholders) or could guess.
    /// Returns the retired keys by kid, as the rules that checked them read them.
    fn checked_secrets(&self) -> Result<Vec<(String, SecretString)>, ConfigError> {
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
        let previous_keys = match &self.jwt_previous_secrets {
            Some(previous) => secrets::previous_keys(
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
            })?
            .into_iter()
            .map(|(kid, secret)| (kid.to_owned(), SecretString::from(secret)))
            .collect(),
            None => Vec::new(),
        };
        if !production {
            return Ok(previous_keys);
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
        Ok(previous_keys)
    }

    fn budgets(&self) -> Result<Budgets, ConfigError> {
        let budget = parse_budget;
        Ok(Budgets {
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
        })
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

    fn check_admission(&self) -> Result<(), ConfigError> {
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
        Ok(())
    }

    fn cors_origin_list(&self) -> Result<Vec<String>, ConfigError> {
        self.cors_origins
            .split(',')
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
            .map(|origin| {
                let scheme_ok = origin.starts_with("http://") || origin.starts_with("https://");
                if !scheme_ok || origin.ends_with('/') || origin == "*" {
                    return Err(config_error(
                        "STRATA_CORS_ORIGINS",
                        format!("{origin:?} is not an origin like https://shop.example.com"),
                    ));
                }
                Ok(origin.to_owned())
            })
            .collect()
    }

    fn check_threshold_and_listeners(&self) -> Result<(), ConfigError> {
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
}
