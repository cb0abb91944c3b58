//! Configuration from the environment (`STRATA_*`, plus `DATABASE_URL` and `REDIS_URL`), validated at
//! start-up: a bad value stops the process with an error naming the variable. Secrets (and the two
//! URLs) may instead be read from files, `<VARIABLE>_FILE`, as container platforms mount them.
//!
//! The environment is flat, one variable per setting (read into a private flat struct, in
//! `variables.rs`, that holds the defaults); the composition root reads typed sections instead
//! ([`Settings`]), each value parsed once, here, into the type its user takes, so that a bad value
//! is named by its variable before anything is built.

mod environment;
mod variables;

use std::time::Duration;

use figment::Figment;
use figment::providers::Env;
use secrecy::SecretString;
use serde::Deserialize;
use strata_http::edge::{Budgets, EdgeSettings, IpNet};
use strata_services::tokens::Algorithm;
use strata_services::{LocalCacheSettings, RevocationCheckPolicy};

pub use environment::UnknownVariable;
use environment::{read_files, unknown_variable, variable_for, without_unknown};
use variables::Variables;

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

/// Every setting, grouped by what it configures; each field's doc names its variable.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `STRATA_ENV`: development | test | production.
    pub env: Environment,
    /// The API's listener and the edge in front of the handlers.
    pub http: HttpSettings,
    /// PostgreSQL.
    pub database: DatabaseSettings,
    /// Redis.
    pub redis: RedisSettings,
    /// Tokens and their keys.
    pub auth: AuthSettings,
    /// Password hashing.
    pub hashing: HashingSettings,
    /// The shared cache and the in-process one.
    pub cache: CacheSettings,
    /// Rate limits and bounds on work.
    pub limits: LimitSettings,
    /// `strata worker`.
    pub worker: WorkerSettings,
    /// Logs and metrics.
    pub telemetry: TelemetrySettings,
}

/// The API's listener and the edge in front of the handlers.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// `STRATA_HOST`: interface to listen on.
    pub host: String,
    /// `STRATA_PORT`: port to listen on (0 picks a free one).
    pub port: u16,
    /// `STRATA_WORKERS`: HTTP worker threads (default: one per core).
    pub workers: Option<usize>,
    /// `STRATA_REQUEST_TIMEOUT_MS`: a request running longer is abandoned with 503.
    pub request_timeout: Duration,
    /// `STRATA_COMPRESS_MIN_BYTES`: smaller bodies are sent uncompressed.
    pub compress_min_bytes: u64,
    /// `STRATA_HSTS_MAX_AGE_SECS`: Strict-Transport-Security's max-age (unset: not sent).
    pub hsts_max_age_secs: Option<u64>,
    /// `STRATA_CORS_ORIGINS`: origins allowed to call from a browser (empty: none).
    pub cors_origins: Vec<String>,
    /// `STRATA_HEALTH_TIMEOUT_MS`: bound on each readiness ping.
    pub health_timeout: Duration,
    /// `STRATA_HEALTH_CACHE_MS`: a readiness check answers every probe arriving this long after it
    /// started (zero: only those arriving while it runs).
    pub health_cache: Duration,
    /// `STRATA_SHUTDOWN_GRACE_SECS`: after SIGTERM, readiness is 503 this long before the listener
    /// closes, so that load balancers stop routing here first.
    pub shutdown_grace: Duration,
    /// `STRATA_SHUTDOWN_TIMEOUT_SECS`: the most in-flight requests (or the worker's job at hand)
    /// get to finish.
    pub shutdown_timeout: Duration,
}

/// PostgreSQL.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `DATABASE_URL` (or the file named by `DATABASE_URL_FILE`).
    pub url: SecretString,
    /// `STRATA_DB_POOL_SIZE`.
    pub pool_size: u32,
    /// `STRATA_DB_ACQUIRE_TIMEOUT_MS`: wait for a pooled connection before answering 503.
    pub acquire_timeout: Duration,
    /// `STRATA_DB_QUERY_TIMEOUT_MS`.
    pub query_timeout: Duration,
}

/// Redis.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `REDIS_URL` (or the file named by `REDIS_URL_FILE`); with `cluster`, the cluster's seed
    /// nodes, comma-separated.
    pub url: SecretString,
    /// `STRATA_REDIS_CLUSTER`: Redis is a Redis Cluster (true) or a single server (false).
    pub cluster: bool,
    /// `STRATA_REDIS_PREFIX`: namespace of every key.
    pub prefix: String,
    /// `STRATA_REDIS_TIMEOUT_MS`: bound on connecting and on each command.
    pub timeout: Duration,
}

/// Tokens and their keys.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// `STRATA_JWT_SECRET` (or `_FILE`): the HMAC secret, held to the rules of [`crate::secrets`].
    pub jwt_secret: Option<SecretString>,
    /// `STRATA_JWT_ALGORITHM`: HS256 (default), HS384, HS512, RS256, PS256, ES256, EdDSA, ...
    pub jwt_algorithm: Algorithm,
    /// `STRATA_JWT_PRIVATE_KEY_PEM` (or `_FILE`): the signing key of the asymmetric algorithms.
    pub jwt_private_key_pem: Option<SecretString>,
    /// `STRATA_JWT_PUBLIC_KEY_PEM` (or `_FILE`): its verifying key.
    pub jwt_public_key_pem: Option<String>,
    /// `STRATA_JWT_KID`: key id written into tokens.
    pub jwt_kid: Option<String>,
    /// `STRATA_JWT_PREVIOUS_SECRETS` (or `_FILE`): retired HMAC secrets still accepted, by kid.
    pub jwt_previous_secrets: Vec<(String, SecretString)>,
    /// `STRATA_JWT_ISSUER`.
    pub jwt_issuer: String,
    /// `STRATA_JWT_AUDIENCE`.
    pub jwt_audience: String,
    /// `STRATA_ACCESS_TOKEN_TTL_SECS`.
    pub access_token_ttl: Duration,
    /// `STRATA_REFRESH_TOKEN_TTL_SECS`.
    pub refresh_token_ttl: Duration,
    /// `STRATA_REVOCATION_CHECK`: deny (503 when Redis is down) | allow.
    pub revocation_check: RevocationCheckPolicy,
    /// `STRATA_CURSOR_SECRET` (or `_FILE`): key of pagination cursors (default: derived from the
    /// JWT key).
    pub cursor_secret: Option<SecretString>,
}

/// Password hashing.
#[derive(Debug, Clone)]
pub struct HashingSettings {
    /// `STRATA_ARGON2_MEMORY_KIB`.
    pub argon2_memory_kib: u32,
    /// `STRATA_ARGON2_ITERATIONS`.
    pub argon2_iterations: u32,
    /// `STRATA_ARGON2_PARALLELISM`.
    pub argon2_parallelism: u32,
    /// `STRATA_HASH_CONCURRENCY`: hashes at once (default: one per core).
    pub concurrency: Option<usize>,
    /// `STRATA_HASH_QUEUE_TIMEOUT_MS`: wait for a hashing slot before answering 503.
    pub queue_timeout: Duration,
    /// `STRATA_HASH_NICENESS`: the primary hashing threads' niceness, 0–19.
    pub niceness: u8,
    /// `STRATA_HASH_SPARE_NICENESS`: the spare hashing threads' niceness, 0–19 (used only while
    /// every other one is busy).
    pub spare_niceness: u8,
}

/// The shared cache and the in-process one.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// `STRATA_CACHE_TTL_SECS`.
    pub ttl: Duration,
    /// `STRATA_LOCAL_CACHE_ENABLED` (None when false), `STRATA_LOCAL_CACHE_CAPACITY` and
    /// `STRATA_LOCAL_CACHE_TTL_SECS`: hot values kept in process too, dropped across instances by
    /// Redis pub/sub on every write.
    pub local: Option<LocalCacheSettings>,
    /// `STRATA_DASHBOARD_TTL_SECS`: how long the admin dashboard is served from the cache.
    pub dashboard_ttl: Duration,
}

/// Rate limits and bounds on work.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    /// `STRATA_RATE_LIMIT_ENABLED`: spend budgets per caller (true) or not at all.
    pub rate_limiting: bool,
    /// `STRATA_RATE_LIMIT_FAIL_OPEN`: with Redis unreachable, let requests through (true) or
    /// answer 503 (false).
    pub fail_open: bool,
    /// `STRATA_RATE_LIMIT_{READ,WRITE}_{ANONYMOUS,USER}`, `STRATA_RATE_LIMIT_AUTH_{IP,EMAIL}`: the
    /// budgets, each written `requests/seconds`.
    pub budgets: Budgets,
    /// `STRATA_TRUSTED_PROXIES`: peers whose `X-Forwarded-For` is believed (empty: nobody's).
    pub trusted_proxies: Vec<IpNet>,
    /// `STRATA_RATE_LIMIT_IPV6_PREFIX`: IPv6 clients share per-IP budgets per network of this
    /// prefix length (1–128).
    pub ipv6_budget_prefix: u8,
    /// `STRATA_MAX_IN_FLIGHT`: requests handled at once; beyond it 503 with Retry-After.
    pub max_in_flight: usize,
    /// `STRATA_MAX_CONCURRENT_EXPORTS`: admin exports streaming at once; beyond it 503.
    pub max_concurrent_exports: usize,
    /// `STRATA_EXPORT_BATCH_SIZE`: rows per query of the admin exports (1–50000).
    pub export_batch_size: usize,
    /// `STRATA_REPORT_TIMEOUT_SECS`: how long a report's queries may run in all (in the worker).
    pub report_timeout: Duration,
    /// `STRATA_LOW_STOCK_THRESHOLD`: the dashboard lists active products with fewer units.
    pub low_stock_threshold: u32,
}

/// `strata worker`.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// `STRATA_WORKER_METRICS_PORT`: where the worker serves `/metrics` and `/health/live` (on
    /// `STRATA_HOST`); None: not served.
    pub metrics_port: Option<u16>,
    /// `STRATA_WORKER_KEEP_FINISHED_JOBS_DAYS`: finished jobs are deleted this long after they
    /// ended.
    pub keep_finished_jobs: Duration,
    /// `STRATA_WORKER_CONSUMER`: this worker's name in the consumer group (default: host-pid).
    pub consumer: Option<String>,
    /// `STRATA_WORKER_MAX_ATTEMPTS`: attempts before a job is dead-lettered.
    pub max_attempts: u32,
    /// `STRATA_WORKER_BACKOFF_MS`: delay before the first retry, doubled for each further one.
    pub backoff: Duration,
    /// `STRATA_WORKER_BACKOFF_MAX_MS`: longest delay between attempts.
    pub backoff_max: Duration,
    /// `STRATA_WORKER_CLAIM_IDLE_MS`: a job unacknowledged this long is taken over.
    pub claim_idle: Duration,
    /// `STRATA_WORKER_SWEEP_AFTER_SECS`: a queued job untouched this long is enqueued again.
    pub sweep_after: Duration,
    /// `STRATA_WORKER_RENEWAL_EVERY_SECS`: how often due subscriptions are renewed.
    pub renewal_every: Duration,
}

/// Logs and metrics.
#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    /// `STRATA_LOG`: tracing filter (e.g. `info,strata_http=debug`).
    pub log: String,
    /// `STRATA_LOG_FORMAT`: json | pretty (default: json, pretty in development).
    pub log_format: LogFormat,
    /// `STRATA_METRICS_HOST`: interface of the `GET /metrics` listener of `strata serve`
    /// (default: `STRATA_HOST`).
    pub metrics_host: String,
    /// `STRATA_METRICS_PORT`: port of that listener, never the API's (0 picks a free one).
    pub metrics_port: u16,
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

    /// Reads and validates `figment`, keyed as the environment names the variables (`port` for
    /// `STRATA_PORT`, `database_url` for `DATABASE_URL`), so that tests can pass their own.
    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        Self::from_figment_reporting_unknown(figment).map(|(settings, _)| settings)
    }

    /// [`Settings::from_figment`], also returning the unknown `STRATA_*` variables it ignored.
    pub fn from_figment_reporting_unknown(
        figment: Figment,
    ) -> Result<(Self, Vec<UnknownVariable>), ConfigError> {
        let (figment, unknown) = without_unknown(figment)?;
        let variables: Variables = read_files(figment)?.extract().map_err(|error| {
            let key = error.path.first().cloned().unwrap_or_default();
            let variable = if key.is_empty() {
                unknown_variable(&error.kind.to_string())
            } else {
                variable_for(&key)
            };
            config_error(&variable, error.kind.to_string())
        })?;
        Ok((variables.into_settings()?, unknown))
    }

    /// The edge's settings (budgets, proxies, timeouts, CORS, HSTS).
    pub fn edge(&self) -> EdgeSettings {
        EdgeSettings {
            rate_limiting: self.limits.rate_limiting,
            fail_open: self.limits.fail_open,
            budgets: self.limits.budgets,
            trusted_proxies: self.limits.trusted_proxies.clone(),
            ipv6_budget_prefix: self.limits.ipv6_budget_prefix,
            request_timeout: self.http.request_timeout,
            max_in_flight: self.limits.max_in_flight,
            max_concurrent_exports: self.limits.max_concurrent_exports,
            compress_min_bytes: self.http.compress_min_bytes,
            cors_origins: self.http.cors_origins.clone(),
            hsts_max_age_secs: self.http.hsts_max_age_secs,
        }
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)]
mod tests {
    use figment::Jail;

    use super::*;
    use secrecy::ExposeSecret;

    fn load() -> Result<Settings, ConfigError> {
        Settings::from_env()
    }

    #[test]
    fn defaults_are_valid() {
        Jail::expect_with(|_| {
            let settings = load().map_err(|e| e.to_string())?;
            assert_eq!(settings.http.port, 8080);
            assert_eq!(settings.env, Environment::Development);
            Ok(())
        });
    }

    #[test]
    fn metrics_have_their_own_port_on_the_api_host_by_default_and_never_the_api_port() {
        Jail::expect_with(|jail| {
            let settings = load().map_err(|e| e.to_string())?;
            assert_eq!(settings.telemetry.metrics_port, 9464);
            assert_eq!(settings.telemetry.metrics_host, settings.http.host);
            assert_eq!(settings.http.health_cache, Duration::from_millis(1000));
            jail.set_env("STRATA_METRICS_HOST", "10.0.0.7");
            jail.set_env("STRATA_HEALTH_CACHE_MS", "0");
            let settings = load().map_err(|e| e.to_string())?;
            assert_eq!(settings.telemetry.metrics_host, "10.0.0.7");
            assert_eq!(settings.http.health_cache, Duration::ZERO);
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
            assert_eq!(settings.database.pool_size, 16);
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
            assert_eq!(settings.http.port, 8080);
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
                    .auth
                    .jwt_secret
                    .map(|s| s.expose_secret().to_owned())
                    .as_deref(),
                Some(GOOD)
            );
            assert!(
                settings
                    .auth
                    .jwt_previous_secrets
                    .first()
                    .is_some_and(|(kid, s)| kid == "old" && s.expose_secret().ends_with("c5c0"))
            );
            jail.set_env("DATABASE_URL_FILE", "url");
            let settings = load().map_err(|e| e.to_string())?;
            assert_eq!(
                settings.database.url.expose_secret(),
                "postgres://strata:pw@db/strata\n"
            );
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
                    settings.cache.dashboard_ttl,
                    settings.limits.low_stock_threshold,
                    settings.limits.report_timeout
                ),
                (Duration::from_secs(30), 10, Duration::from_secs(60))
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
            assert_eq!(
                load()
                    .map_err(|e| e.to_string())?
                    .limits
                    .low_stock_threshold,
                5
            );
            Ok(())
        });
    }

    #[test]
    fn a_redis_cluster_takes_its_seed_nodes_comma_separated() {
        Jail::expect_with(|jail| {
            assert!(!load().map_err(|e| e.to_string())?.redis.cluster);
            let seeds = "redis://10.0.0.1:6379, redis://10.0.0.2:6379,redis://10.0.0.3:6379";
            jail.set_env("REDIS_URL", seeds);
            assert_eq!(load().expect_err("no cluster").variable, "REDIS_URL");
            jail.set_env("STRATA_REDIS_CLUSTER", "true");
            let settings = load().map_err(|e| e.to_string())?;
            assert!(settings.redis.cluster);
            assert_eq!(settings.redis.url.expose_secret(), seeds);
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
                        assert_eq!(settings.edge().ipv6_budget_prefix.to_string(), raw);
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
    fn values_arrive_parsed_into_the_types_their_users_take() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            let settings = load().map_err(|e| e.to_string())?;
            assert_eq!(settings.auth.revocation_check, RevocationCheckPolicy::Deny);
            assert_eq!(settings.auth.jwt_algorithm, Algorithm::HS256);
            assert_eq!(settings.telemetry.log_format, LogFormat::Pretty);
            assert!(settings.cache.local.is_some());
            assert!(settings.http.cors_origins.is_empty());
            assert!(settings.limits.trusted_proxies.is_empty());
            jail.set_env("STRATA_ENV", "test");
            jail.set_env("STRATA_REVOCATION_CHECK", "allow");
            jail.set_env("STRATA_JWT_ALGORITHM", "HS512");
            jail.set_env("STRATA_DB_ACQUIRE_TIMEOUT_MS", "250");
            jail.set_env("STRATA_WORKER_KEEP_FINISHED_JOBS_DAYS", "2");
            jail.set_env("STRATA_LOCAL_CACHE_ENABLED", "false");
            jail.set_env("STRATA_RATE_LIMIT_AUTH_EMAIL", " 3 / 120 ");
            jail.set_env(
                "STRATA_CORS_ORIGINS",
                "https://shop.example.com, http://localhost:3000,",
            );
            jail.set_env("STRATA_TRUSTED_PROXIES", "10.0.0.0/8, ::1");
            let settings = load().map_err(|e| e.to_string())?;
            assert_eq!(settings.auth.revocation_check, RevocationCheckPolicy::Allow);
            assert_eq!(settings.auth.jwt_algorithm, Algorithm::HS512);
            assert_eq!(settings.telemetry.log_format, LogFormat::Json);
            assert_eq!(
                settings.database.acquire_timeout,
                Duration::from_millis(250)
            );
            assert_eq!(
                settings.worker.keep_finished_jobs,
                Duration::from_secs(2 * 24 * 3600)
            );
            assert!(settings.cache.local.is_none());
            assert_eq!(
                (
                    settings.limits.budgets.auth_email.limit,
                    settings.limits.budgets.auth_email.window
                ),
                (3, Duration::from_secs(120))
            );
            assert_eq!(
                settings.http.cors_origins,
                ["https://shop.example.com", "http://localhost:3000"]
            );
            assert_eq!(settings.limits.trusted_proxies.len(), 2);
            jail.set_env("STRATA_RATE_LIMIT_AUTH_EMAIL", "3 per 120");
            assert_eq!(
                load().expect_err("budget").variable,
                "STRATA_RATE_LIMIT_AUTH_EMAIL"
            );
            jail.set_env("STRATA_RATE_LIMIT_AUTH_EMAIL", "3/120");
            jail.set_env("STRATA_CORS_ORIGINS", "https://shop.example.com/");
            assert_eq!(load().expect_err("origin").variable, "STRATA_CORS_ORIGINS");
            jail.set_env("STRATA_CORS_ORIGINS", "");
            jail.set_env("STRATA_TRUSTED_PROXIES", "10.0.0.0/33");
            assert_eq!(
                load().expect_err("proxy").variable,
                "STRATA_TRUSTED_PROXIES"
            );
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

    /// A filter the subscriber cannot read used to fall back to `info` in silence: an operator
    /// who asked for `debug` on one module got less than they asked for and no word of it.
    #[test]
    fn a_log_filter_the_subscriber_cannot_read_is_named() {
        Jail::expect_with(|jail| {
            jail.set_env("STRATA_LOG", "info,strata_http=loud");
            let error = load().expect_err("filter");
            assert_eq!(error.variable, "STRATA_LOG");
            assert!(error.to_string().contains("strata_http=loud"), "{error}");
            jail.set_env("STRATA_LOG", "warn,strata_http=debug,[{request_id}]=trace");
            assert_eq!(
                load().expect("a valid filter").telemetry.log,
                "warn,strata_http=debug,[{request_id}]=trace"
            );
            Ok(())
        });
    }
}
