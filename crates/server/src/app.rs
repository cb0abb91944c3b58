//! Wiring and lifecycle.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpServer;
use actix_web::dev::{Server, ServerHandle};
use anyhow::{Context, anyhow};
use secrecy::ExposeSecret;
use strata_http::{AppState, Health, build_app};
use strata_ports::{
    Cache, Clock, HealthCheck, IdGenerator, PasswordHasher, RefreshTokenRepository, TokenBlacklist,
    UserRepository,
};
use strata_postgres::{Database, PgRefreshTokenRepository, PgUserRepository, PoolSettings};
use strata_redis::{RedisCache, RedisConnection, RedisSettings, RedisTokenBlacklist};
use strata_services::tokens::{Algorithm, JwtKey};
use strata_services::{
    Argon2Hasher, Argon2Settings, AuthService, AuthSettings, CursorCodec, JwtCodec, JwtSettings,
    RevocationCheckPolicy, SystemClock, UserService, UuidV7Ids, derive_key,
};

use crate::config::{Environment, Settings};

/// Every adapter and service, built once per process.
#[derive(Clone)]
pub struct Components {
    /// The PostgreSQL pool.
    pub database: Database,
    /// The Redis connection.
    pub redis: RedisConnection,
    /// Authentication use cases.
    pub auth: Arc<AuthService>,
    /// User use cases.
    pub users: Arc<UserService>,
    /// Readiness.
    pub health: Arc<Health>,
}

impl Components {
    /// Builds pools, adapters and services from `settings`, in that order. Connects lazily: the
    /// process starts even while a dependency is down, and readiness says so.
    pub fn build(settings: &Settings) -> anyhow::Result<Self> {
        let database = Database::connect_lazy(
            &settings.database_url,
            &PoolSettings {
                max_size: settings.db_pool_size,
                acquire_timeout: Settings::ms(settings.db_acquire_timeout_ms),
                query_timeout: Settings::ms(settings.db_query_timeout_ms),
            },
        );
        let redis = RedisConnection::new(&RedisSettings {
            url: settings.redis_url.clone(),
            key_prefix: settings.redis_prefix.clone(),
            command_timeout: Settings::ms(settings.redis_timeout_ms),
        })?;

        let users: Arc<dyn UserRepository> = Arc::new(PgUserRepository::new(database.clone()));
        let refresh_tokens: Arc<dyn RefreshTokenRepository> =
            Arc::new(PgRefreshTokenRepository::new(database.clone()));
        let cache: Arc<dyn Cache> = Arc::new(RedisCache::new(redis.clone()));
        let blacklist: Arc<dyn TokenBlacklist> = Arc::new(RedisTokenBlacklist::new(redis.clone()));
        let hasher: Arc<dyn PasswordHasher> = Arc::new(Argon2Hasher::new(&Argon2Settings {
            memory_kib: settings.argon2_memory_kib,
            iterations: settings.argon2_iterations,
            parallelism: settings.argon2_parallelism,
            max_concurrent: settings
                .hash_concurrency
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
            queue_timeout: Settings::ms(settings.hash_queue_timeout_ms),
        })?);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let ids: Arc<dyn IdGenerator> = Arc::new(UuidV7Ids);

        let (jwt_settings, cursor_key) = jwt_settings(settings)?;
        let jwt = Arc::new(
            JwtCodec::new(jwt_settings).context("STRATA_JWT_*: the signing key cannot be used")?,
        );
        let auth = Arc::new(AuthService::new(
            users.clone(),
            refresh_tokens.clone(),
            blacklist,
            hasher.clone(),
            clock.clone(),
            ids,
            jwt,
            AuthSettings {
                refresh_ttl: Duration::from_secs(settings.refresh_token_ttl_secs),
                revocation_check: match settings.revocation_check.as_str() {
                    "allow" => RevocationCheckPolicy::Allow,
                    _ => RevocationCheckPolicy::Deny,
                },
            },
        ));
        let users = Arc::new(UserService::new(
            users,
            refresh_tokens,
            cache,
            hasher,
            clock,
            CursorCodec::new(&cursor_key),
            Duration::from_secs(settings.cache_ttl_secs),
        ));
        let checks: Vec<Arc<dyn HealthCheck>> =
            vec![Arc::new(database.clone()), Arc::new(redis.clone())];
        let health = Arc::new(Health::new(
            checks,
            Settings::ms(settings.health_timeout_ms),
        ));
        Ok(Self {
            database,
            redis,
            auth,
            users,
            health,
        })
    }

    /// The state handed to the HTTP app.
    pub fn app_state(&self) -> AppState {
        AppState {
            auth: self.auth.clone(),
            users: self.users.clone(),
            health: self.health.clone(),
        }
    }
}

/// The JWT settings and the cursor key, from configuration.
fn jwt_settings(settings: &Settings) -> anyhow::Result<(JwtSettings, Vec<u8>)> {
    let algorithm: Algorithm = settings
        .jwt_algorithm
        .parse()
        .map_err(|_| anyhow!("STRATA_JWT_ALGORITHM: unknown algorithm"))?;
    let key = match (
        &settings.jwt_private_key_pem,
        &settings.jwt_public_key_pem,
        &settings.jwt_secret,
    ) {
        (Some(private), Some(public), _) => JwtKey::Pem {
            private: Some(private.expose_secret().as_bytes().to_vec()),
            public: public.as_bytes().to_vec(),
        },
        (_, _, Some(secret)) => JwtKey::Hmac(secret.expose_secret().as_bytes().to_vec()),
        _ if settings.env != Environment::Production => {
            tracing::warn!(
                "STRATA_JWT_SECRET is not set: using a random secret; tokens will not survive a restart"
            );
            let mut secret = vec![0u8; 32];
            getrandom::fill(&mut secret).map_err(|e| anyhow!("no system randomness: {e}"))?;
            JwtKey::Hmac(secret)
        }
        _ => {
            return Err(anyhow!(
                "STRATA_JWT_SECRET: required when STRATA_ENV=production"
            ));
        }
    };
    let mut previous_keys = Vec::new();
    if let Some(previous) = &settings.jwt_previous_secrets {
        for entry in previous
            .expose_secret()
            .split(',')
            .filter(|e| !e.trim().is_empty())
        {
            let (kid, secret) = entry.split_once('=').ok_or_else(|| {
                anyhow!("STRATA_JWT_PREVIOUS_SECRETS: expected kid=secret[,kid=secret]")
            })?;
            previous_keys.push((
                kid.trim().to_owned(),
                JwtKey::Hmac(secret.trim().as_bytes().to_vec()),
            ));
        }
    }
    let cursor_key = match (&settings.cursor_secret, &key) {
        (Some(secret), _) => secret.expose_secret().as_bytes().to_vec(),
        (None, JwtKey::Hmac(secret)) => derive_key(secret, "pagination cursors"),
        (None, JwtKey::Pem { private, .. }) => {
            derive_key(private.as_deref().unwrap_or_default(), "pagination cursors")
        }
    };
    Ok((
        JwtSettings {
            issuer: settings.jwt_issuer.clone(),
            audience: settings.jwt_audience.clone(),
            access_ttl: Duration::from_secs(settings.access_token_ttl_secs),
            algorithm,
            kid: settings.jwt_kid.clone(),
            key,
            previous_keys,
        },
        cursor_key,
    ))
}

/// A running HTTP server and the handles to stop it.
pub struct Application {
    server: Server,
    port: u16,
    health: Arc<Health>,
    components: Components,
    grace: Duration,
}

impl Application {
    /// Builds the components and binds the listener (port 0 picks a free port).
    pub fn build(settings: &Settings) -> anyhow::Result<Self> {
        let components = Components::build(settings)?;
        Self::with_components(settings, components)
    }

    /// Serves already-built components.
    pub fn with_components(settings: &Settings, components: Components) -> anyhow::Result<Self> {
        let listener =
            TcpListener::bind((settings.host.as_str(), settings.port)).with_context(|| {
                format!(
                    "cannot listen on {}:{} (STRATA_HOST/STRATA_PORT)",
                    settings.host, settings.port
                )
            })?;
        let port = listener.local_addr()?.port();
        let state = components.app_state();
        let mut server = HttpServer::new(move || build_app(state.clone()))
            .disable_signals()
            .shutdown_timeout(settings.shutdown_timeout_secs);
        if let Some(workers) = settings.workers {
            server = server.workers(workers);
        }
        let server = server.listen(listener)?.run();
        Ok(Self {
            server,
            port,
            health: components.health.clone(),
            components,
            grace: Duration::from_secs(settings.shutdown_grace_secs),
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The wired components (tests reach the database and Redis through them).
    pub fn components(&self) -> &Components {
        &self.components
    }

    /// A handle that shuts the server down gracefully from elsewhere.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            server: self.server.handle(),
            health: self.health.clone(),
            grace: self.grace,
        }
    }

    /// Serves until stopped through a [`ShutdownHandle`] (which also ends the returned future).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully.
    pub async fn run_until_signalled(self) -> anyhow::Result<()> {
        let handle = self.shutdown_handle();
        let server = tokio::spawn(self.run_until_stopped());
        wait_for_signal().await?;
        handle.shutdown().await;
        server.await??;
        Ok(())
    }
}

/// Stops the server: readiness turns 503, a grace period lets load balancers notice, then the
/// listener closes and in-flight requests finish (bounded by the shutdown timeout).
#[derive(Clone)]
pub struct ShutdownHandle {
    server: ServerHandle,
    health: Arc<Health>,
    grace: Duration,
}

impl ShutdownHandle {
    /// Runs the shutdown sequence; returns when the server has stopped.
    pub async fn shutdown(&self) {
        tracing::info!(
            grace_secs = self.grace.as_secs(),
            "shutting down: readiness now reports draining"
        );
        self.health.start_draining();
        tokio::time::sleep(self.grace).await;
        self.server.stop(true).await;
        tracing::info!("server stopped; in-flight requests drained");
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}
