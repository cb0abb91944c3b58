//! Configuration from the environment (`STRATA_*`, plus `DATABASE_URL` and `REDIS_URL`), validated at
//! start-up: a bad value stops the process with an error naming the variable.

use std::time::Duration;

use figment::Figment;
use figment::providers::Env;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

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
    /// `STRATA_DB_POOL_SIZE`.
    #[serde(default = "default_pool_size")]
    pub db_pool_size: u32,
    /// `STRATA_DB_ACQUIRE_TIMEOUT_MS`: wait for a pooled connection before answering 503.
    #[serde(default = "default_acquire_ms")]
    pub db_acquire_timeout_ms: u64,
    /// `STRATA_DB_QUERY_TIMEOUT_MS`.
    #[serde(default = "default_query_ms")]
    pub db_query_timeout_ms: u64,
    /// `REDIS_URL`.
    #[serde(default = "default_redis_url")]
    pub redis_url: String,
    /// `STRATA_REDIS_PREFIX`: namespace of every key.
    #[serde(default = "default_redis_prefix")]
    pub redis_prefix: String,
    /// `STRATA_REDIS_TIMEOUT_MS`: bound on connecting and on each command.
    #[serde(default = "default_redis_ms")]
    pub redis_timeout_ms: u64,
    /// `STRATA_JWT_SECRET`: HMAC secret (≥ 32 bytes); required in production.
    #[serde(default)]
    pub jwt_secret: Option<SecretString>,
    /// `STRATA_JWT_ALGORITHM`: HS256 (default), HS384, HS512, RS256, PS256, ES256, EdDSA, ...
    #[serde(default = "default_jwt_algorithm")]
    pub jwt_algorithm: String,
    /// `STRATA_JWT_PRIVATE_KEY_PEM` / `STRATA_JWT_PUBLIC_KEY_PEM`: keys for the asymmetric algorithms.
    #[serde(default)]
    pub jwt_private_key_pem: Option<SecretString>,
    /// See `jwt_private_key_pem`.
    #[serde(default)]
    pub jwt_public_key_pem: Option<String>,
    /// `STRATA_JWT_KID`: key id written into tokens.
    #[serde(default)]
    pub jwt_kid: Option<String>,
    /// `STRATA_JWT_PREVIOUS_SECRETS`: `kid=secret,kid=secret` still accepted after a rotation.
    #[serde(default)]
    pub jwt_previous_secrets: Option<SecretString>,
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
    /// `STRATA_CURSOR_SECRET`: key of pagination cursors (default: derived from the JWT secret).
    #[serde(default)]
    pub cursor_secret: Option<SecretString>,
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
    /// `STRATA_CACHE_TTL_SECS`.
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl_secs: u64,
    /// `STRATA_HEALTH_TIMEOUT_MS`: bound on each readiness ping.
    #[serde(default = "default_health_ms")]
    pub health_timeout_ms: u64,
    /// `STRATA_SHUTDOWN_GRACE_SECS`: after SIGTERM, readiness is 503 this long before the listener
    /// closes, so that load balancers stop routing here first.
    #[serde(default = "default_grace")]
    pub shutdown_grace_secs: u64,
    /// `STRATA_SHUTDOWN_TIMEOUT_SECS`: the most in-flight requests get to finish.
    #[serde(default = "default_drain")]
    pub shutdown_timeout_secs: u64,
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
    5000
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
fn default_cache_ttl() -> u64 {
    300
}
fn default_health_ms() -> u64 {
    1000
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
        "database_url" => "DATABASE_URL".to_owned(),
        "redis_url" => "REDIS_URL".to_owned(),
        other => format!("STRATA_{}", other.to_ascii_uppercase()),
    }
}

impl Settings {
    /// Reads and validates the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_figment(
            Figment::new()
                .merge(Env::prefixed("STRATA_").ignore(&["database_url", "redis_url"]))
                .merge(Env::raw().only(&["DATABASE_URL", "REDIS_URL"])),
        )
    }

    /// Reads and validates `figment` (tests pass their own).
    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let settings: Settings = figment.extract().map_err(|error| {
            let key = error.path.first().cloned().unwrap_or_default();
            let variable = if key.is_empty() {
                unknown_variable(&error.kind.to_string())
            } else {
                variable_for(&key)
            };
            config_error(&variable, error.kind.to_string())
        })?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
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
        if !self.redis_url.starts_with("redis://") && !self.redis_url.starts_with("rediss://") {
            return Err(config_error(
                "REDIS_URL",
                "must be a redis:// or rediss:// URL",
            ));
        }
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
        if let Some(secret) = &self.jwt_secret
            && secret.expose_secret().len() < 32
        {
            return Err(config_error(
                "STRATA_JWT_SECRET",
                "must be at least 32 bytes",
            ));
        }
        if self.env == Environment::Production
            && self.jwt_secret.is_none()
            && self.jwt_private_key_pem.is_none()
        {
            return Err(config_error(
                "STRATA_JWT_SECRET",
                "is required when STRATA_ENV=production",
            ));
        }
        if self.workers == Some(0) {
            return Err(config_error("STRATA_WORKERS", "must be at least 1"));
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
            jail.set_env("STRATA_PROT", "8080");
            let error = load().expect_err("must fail");
            assert_eq!(error.variable, "STRATA_PROT");
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
            assert!(load().is_ok());
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
