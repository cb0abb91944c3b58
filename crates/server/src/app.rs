//! Wiring and lifecycle.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpServer;
use actix_web::dev::{Server, ServerHandle};
use anyhow::{Context, anyhow};
use secrecy::ExposeSecret;
use strata_http::edge::Edge;
use strata_http::state::MetricsExporter;
use strata_http::{AppState, Health, build_app};
use strata_ports::{AnalyticsRepository, ReportRepository};
use strata_ports::{
    Cache, Clock, HealthCheck, IdGenerator, JobQueue, JobRepository, OrderRepository,
    PasswordHasher, PlanRepository, ProductRepository, RateLimiter, RefreshTokenRepository,
    SubscriptionRepository, TokenBlacklist, UserRepository,
};
use strata_postgres::{
    Database, PgExportRepository, PgJobRepository, PgOrderRepository, PgPlanRepository,
    PgProductRepository, PgRefreshTokenRepository, PgRetentionRepository, PgSubscriptionRepository,
    PgUserRepository, PoolSettings,
};
use strata_postgres::{PgAnalyticsRepository, PgReportRepository};
use strata_redis::{
    JobQueueSettings, RedisCache, RedisConnection, RedisInvalidations, RedisJobQueue,
    RedisRateLimiter, RedisSettings, RedisTokenBlacklist,
};
use strata_services::tokens::JwtKey;
use strata_services::{
    Argon2Hasher, Argon2Settings, AuthService, AuthSettings, CatalogService, CursorCodec,
    ExportService, JwtCodec, JwtSettings, OrderService, PeriodicJob, PurgeExpired, RENEWAL_JOB,
    RETENTION_JOB, RenewDueSubscriptions, SubscriptionService, SystemClock, TraceLink, UserService,
    UuidV7Ids, Worker, WorkerSettings, derive_key,
};
use strata_services::{
    DashboardService, DashboardSettings, GenerateSalesReport, InvalidatingCache, LocalCache,
    ReportService, SALES_REPORT_JOB,
};

/// How often the retention sweep runs.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// How long periodic-task ticks are kept (only the current tick matters; a day helps debugging).
const FINISHED_TICKS_KEPT: Duration = Duration::from_secs(24 * 3600);

/// How long an Idempotency-Key replays its first answer (SPEC §3: 24 h).
const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

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
    /// Catalog use cases.
    pub catalog: Arc<CatalogService>,
    /// Order use cases.
    pub orders: Arc<OrderService>,
    /// Subscription use cases.
    pub subscriptions: Arc<SubscriptionService>,
    /// Admin export use cases.
    pub exports: Arc<ExportService>,
    /// The admin dashboard.
    pub dashboard: Arc<DashboardService>,
    /// Admin report use cases.
    pub reports: Arc<ReportService>,
    /// Report storage (the report job writes the result to it).
    pub report_repository: Arc<dyn ReportRepository>,
    /// Aggregate reads (the report job computes from them).
    pub analytics: Arc<dyn AnalyticsRepository>,
    /// Subscription storage (the renewal job runs on it).
    pub subscription_repository: Arc<dyn SubscriptionRepository>,
    /// Durable job state.
    pub jobs: Arc<dyn JobRepository>,
    /// Job delivery.
    pub queue: Arc<dyn JobQueue>,
    /// The clock every use case reads.
    pub clock: Arc<dyn Clock>,
    /// The id generator every use case uses.
    pub ids: Arc<dyn IdGenerator>,
    /// Admission control, rate limiting and the request timeout.
    pub edge: Arc<Edge>,
    /// Readiness and the deep health check.
    pub health: Arc<Health>,
    /// The `/metrics` body (the process-wide recorder, with this pool's gauges).
    pub metrics: MetricsExporter,
    /// This process's copies of hot cached values, when kept (`STRATA_LOCAL_CACHE_ENABLED`).
    pub local_cache: Option<Arc<LocalCache>>,
    /// The cross-instance invalidation feed that keeps `local_cache` fresh.
    pub invalidations: RedisInvalidations,
}

impl Components {
    /// Builds pools, adapters and services from `settings`, in that order. Connects lazily: the
    /// process starts even while a dependency is down, and the deep check (`/health`) says so.
    pub fn build(settings: &Settings) -> anyhow::Result<Self> {
        // First, so that everything built below records into it; idempotent, since tests build
        // several components in one process.
        let metrics_handle = crate::metrics::install()?;
        let database = Database::connect_lazy(
            settings.database.url.expose_secret(),
            &PoolSettings {
                max_size: settings.database.pool_size,
                acquire_timeout: settings.database.acquire_timeout,
                query_timeout: settings.database.query_timeout,
                // A pool per HTTP worker, as actix counts them, so that queries stay on the
                // worker that sends them.
                lanes: settings
                    .http
                    .workers
                    .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
                    .and_then(|workers| u32::try_from(workers).ok())
                    .unwrap_or(1),
            },
        );
        let redis_settings = RedisSettings {
            url: settings.redis.url.expose_secret().to_owned(),
            cluster: settings.redis.cluster,
            key_prefix: settings.redis.prefix.clone(),
            command_timeout: settings.redis.timeout,
        };
        let redis = RedisConnection::new(&redis_settings)?;
        let invalidations = RedisInvalidations::new(redis.clone(), &redis_settings);
        let local_cache = settings
            .cache
            .local
            .map(|local| Arc::new(LocalCache::new(local)));

        let users: Arc<dyn UserRepository> = Arc::new(PgUserRepository::new(database.clone()));
        let refresh_tokens: Arc<dyn RefreshTokenRepository> =
            Arc::new(PgRefreshTokenRepository::new(database.clone()));
        // Every removal is also announced, so other instances drop their in-process copies.
        let cache: Arc<dyn Cache> = Arc::new(InvalidatingCache::new(
            Arc::new(RedisCache::new(redis.clone())),
            Arc::new(invalidations.clone()),
            local_cache.clone(),
        ));
        let blacklist: Arc<dyn TokenBlacklist> = Arc::new(RedisTokenBlacklist::new(redis.clone()));
        let hasher: Arc<dyn PasswordHasher> = Arc::new(Argon2Hasher::new(&Argon2Settings {
            memory_kib: settings.hashing.argon2_memory_kib,
            iterations: settings.hashing.argon2_iterations,
            parallelism: settings.hashing.argon2_parallelism,
            max_concurrent: settings
                .hashing
                .concurrency
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
            queue_timeout: settings.hashing.queue_timeout,
            niceness: settings.hashing.niceness,
            spare_niceness: settings.hashing.spare_niceness,
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
            ids.clone(),
            jwt,
            AuthSettings {
                refresh_ttl: settings.auth.refresh_token_ttl,
                revocation_check: settings.auth.revocation_check,
            },
        ));
        let cache_ttl = settings.cache.ttl;
        let cursors = CursorCodec::new(&cursor_key);
        let users = Arc::new(UserService::new(
            users,
            refresh_tokens,
            cache.clone(),
            hasher,
            clock.clone(),
            cursors.clone(),
            cache_ttl,
            auth.access_revocation(),
        ));
        let products: Arc<dyn ProductRepository> =
            Arc::new(PgProductRepository::new(database.clone()));
        let catalog = Arc::new(
            CatalogService::new(
                products,
                cache.clone(),
                clock.clone(),
                ids.clone(),
                cursors.clone(),
                cache_ttl,
            )
            .with_local_cache(local_cache.clone()),
        );
        let order_repository: Arc<dyn OrderRepository> =
            Arc::new(PgOrderRepository::new(database.clone()));
        let orders = Arc::new(OrderService::new(
            order_repository,
            cache.clone(),
            clock.clone(),
            ids.clone(),
            cursors.clone(),
            IDEMPOTENCY_WINDOW,
        ));
        let plans: Arc<dyn PlanRepository> = Arc::new(PgPlanRepository::new(database.clone()));
        let subscription_repository: Arc<dyn SubscriptionRepository> =
            Arc::new(PgSubscriptionRepository::new(database.clone()));
        let subscriptions = Arc::new(SubscriptionService::new(
            plans,
            subscription_repository.clone(),
            cache.clone(),
            clock.clone(),
            ids.clone(),
            cursors,
            cache_ttl,
            IDEMPOTENCY_WINDOW,
        ));
        let exports = Arc::new(ExportService::new(
            Arc::new(PgExportRepository::new(database.clone())),
            clock.clone(),
            settings.limits.export_batch_size,
        ));
        let jobs: Arc<dyn JobRepository> = Arc::new(PgJobRepository::new(database.clone()));
        let queue: Arc<dyn JobQueue> = Arc::new(RedisJobQueue::new(
            redis.clone(),
            JobQueueSettings::default(),
        ));
        let analytics: Arc<dyn AnalyticsRepository> = Arc::new(PgAnalyticsRepository::new(
            database.clone(),
            settings.limits.report_timeout,
        ));
        let dashboard = Arc::new(DashboardService::new(
            analytics.clone(),
            cache.clone(),
            clock.clone(),
            DashboardSettings {
                ttl: settings.cache.dashboard_ttl,
                low_stock_threshold: settings.limits.low_stock_threshold,
            },
        ));
        let report_repository: Arc<dyn ReportRepository> =
            Arc::new(PgReportRepository::new(database.clone()));
        let reports = Arc::new(ReportService::new(
            report_repository.clone(),
            queue.clone(),
            clock.clone(),
            ids.clone(),
        ));
        let limiter: Arc<dyn RateLimiter> = Arc::new(RedisRateLimiter::new(redis.clone()));
        let edge = Arc::new(Edge::new(settings.edge(), limiter));
        let redis_check: Arc<dyn HealthCheck> = Arc::new(redis.clone());
        let checks: Vec<Arc<dyn HealthCheck>> =
            vec![Arc::new(database.clone()), redis_check.clone()];
        let health = Arc::new(
            Health::new(checks, settings.http.health_timeout)
                // A Redis ping rides the shared multiplexed connection; a PostgreSQL ping would take
                // a pool connection, which readiness must not (SPEC §3), so only the deep check
                // pings it.
                .readiness_pings(vec![redis_check])
                .reusing_results_for(settings.http.health_cache),
        );
        let metrics = crate::metrics::exporter(metrics_handle, database.clone());
        Ok(Self {
            database,
            redis,
            auth,
            users,
            catalog,
            orders,
            subscriptions,
            exports,
            dashboard,
            reports,
            report_repository,
            analytics,
            subscription_repository,
            jobs,
            queue,
            clock,
            ids,
            edge,
            health,
            metrics,
            local_cache,
            invalidations,
        })
    }

    /// The state handed to the HTTP app.
    pub fn app_state(&self) -> AppState {
        AppState {
            auth: self.auth.clone(),
            users: self.users.clone(),
            catalog: self.catalog.clone(),
            orders: self.orders.clone(),
            subscriptions: self.subscriptions.clone(),
            exports: self.exports.clone(),
            dashboard: self.dashboard.clone(),
            reports: self.reports.clone(),
            edge: self.edge.clone(),
            health: self.health.clone(),
        }
    }

    /// The background worker with every job handler registered and the periodic jobs scheduled.
    pub fn worker(&self, settings: &Settings) -> Worker {
        let consumer = settings.worker.consumer.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_owned());
            format!("{host}-{}", std::process::id())
        });
        let worker_settings = WorkerSettings {
            consumer,
            max_attempts: settings.worker.max_attempts,
            backoff_base: settings.worker.backoff,
            backoff_max: settings.worker.backoff_max,
            claim_idle: settings.worker.claim_idle,
            sweep_after: settings.worker.sweep_after,
            shutdown_grace: settings.http.shutdown_timeout,
            ..WorkerSettings::default()
        };
        Worker::new(
            self.queue.clone(),
            self.jobs.clone(),
            self.clock.clone(),
            self.ids.clone(),
            worker_settings,
        )
        .handle(
            RENEWAL_JOB,
            Arc::new(RenewDueSubscriptions::new(
                self.subscription_repository.clone(),
                self.clock.clone(),
                100,
            )),
        )
        .handle(
            SALES_REPORT_JOB,
            Arc::new(GenerateSalesReport::new(
                self.report_repository.clone(),
                self.analytics.clone(),
                self.clock.clone(),
            )),
        )
        .handle(
            RETENTION_JOB,
            Arc::new(PurgeExpired::new(
                Arc::new(PgRetentionRepository::new(self.database.clone())),
                self.clock.clone(),
                settings.worker.keep_finished_jobs,
                FINISHED_TICKS_KEPT,
                1000,
            )),
        )
        .every(PeriodicJob {
            kind: RENEWAL_JOB,
            every: settings.worker.renewal_every,
        })
        .every(PeriodicJob {
            kind: RETENTION_JOB,
            every: RETENTION_EVERY,
        })
        .with_trace_link(Arc::new(W3cTraceLink))
    }
}

/// Continues a queued job's trace through the HTTP adapter's W3C trace-context handling.
struct W3cTraceLink;

impl TraceLink for W3cTraceLink {
    fn adopt(&self, span: &tracing::Span, trace_parent: &str, trace_state: Option<&str>) {
        strata_http::trace::adopt(span, trace_parent, trace_state);
    }
}

/// The JWT settings and the cursor key, from configuration.
fn jwt_settings(settings: &Settings) -> anyhow::Result<(JwtSettings, Vec<u8>)> {
    let auth = &settings.auth;
    let key = match (
        &auth.jwt_private_key_pem,
        &auth.jwt_public_key_pem,
        &auth.jwt_secret,
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
    let previous_keys = auth
        .jwt_previous_secrets
        .iter()
        .map(|(kid, secret)| {
            (
                kid.clone(),
                JwtKey::Hmac(secret.expose_secret().as_bytes().to_vec()),
            )
        })
        .collect();
    let cursor_key = match (&auth.cursor_secret, &key) {
        (Some(secret), _) => secret.expose_secret().as_bytes().to_vec(),
        (None, JwtKey::Hmac(secret)) => derive_key(secret, "pagination cursors"),
        (None, JwtKey::Pem { private, .. }) => {
            derive_key(private.as_deref().unwrap_or_default(), "pagination cursors")
        }
    };
    Ok((
        JwtSettings {
            issuer: auth.jwt_issuer.clone(),
            audience: auth.jwt_audience.clone(),
            access_ttl: auth.access_token_ttl,
            algorithm: auth.jwt_algorithm,
            kid: auth.jwt_kid.clone(),
            key,
            previous_keys,
        },
        cursor_key,
    ))
}

/// A running HTTP server, its metrics listener, and the handles to stop them.
pub struct Application {
    server: Server,
    metrics_server: Server,
    metrics_port: u16,
    /// Keeps the in-process cache fed with invalidations for as long as the server lives.
    _invalidation_feed: Option<AbortOnDrop>,
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
        let http = &settings.http;
        let listener = TcpListener::bind((http.host.as_str(), http.port)).with_context(|| {
            format!(
                "cannot listen on {}:{} (STRATA_HOST/STRATA_PORT)",
                http.host, http.port
            )
        })?;
        let port = listener.local_addr()?.port();
        let state = components.app_state();
        let mut server = HttpServer::new(move || build_app(state.clone()))
            // actix answers 408 to a connection whose request head has not been read within this
            // (default 5 s), counted from the accept: under a surge of connections the server,
            // not the client, is what is slow, so it gets as long as a request may take, and
            // never less than that default (a short request timeout must not turn a busy
            // moment into 408s for requests that were never read).
            .client_request_timeout(http.request_timeout.max(Duration::from_secs(5)))
            .disable_signals()
            .shutdown_timeout(http.shutdown_timeout.as_secs());
        if let Some(workers) = http.workers {
            server = server.workers(workers);
        }
        let server = server.listen(listener)?.run();
        let (metrics_server, metrics_port) = metrics_listener(settings, &components)?;
        let invalidation_feed = components
            .local_cache
            .clone()
            .map(|local| AbortOnDrop(components.invalidations.listen(local)));
        Ok(Self {
            server,
            metrics_server,
            metrics_port,
            _invalidation_feed: invalidation_feed,
            port,
            health: components.health.clone(),
            components,
            grace: http.shutdown_grace,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the metrics listener.
    pub fn metrics_port(&self) -> u16 {
        self.metrics_port
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
        // Scrapes go on through the drain, so a dashboard sees the shutdown; they end with the API.
        let metrics = self.metrics_server.handle();
        let scraping = tokio::spawn(self.metrics_server);
        let served = self.server.await;
        metrics.stop(false).await;
        let scraped = scraping.await.map_err(std::io::Error::other)?;
        served.and(scraped)
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

/// `GET /metrics` of `strata serve`, on its own listener: never on the API's port, where the public
/// load balancer would expose it.
fn metrics_listener(settings: &Settings, components: &Components) -> anyhow::Result<(Server, u16)> {
    let host = settings.telemetry.metrics_host.as_str();
    let listener =
        TcpListener::bind((host, settings.telemetry.metrics_port)).with_context(|| {
            format!(
                "cannot listen on {host}:{} (STRATA_METRICS_HOST/STRATA_METRICS_PORT)",
                settings.telemetry.metrics_port
            )
        })?;
    let port = listener.local_addr()?.port();
    let exporter = components.metrics.clone();
    let server = HttpServer::new(move || strata_http::metrics::build_metrics_app(exporter.clone()))
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();
    tracing::info!(%host, port, "metrics on /metrics");
    Ok((server, port))
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
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

/// Runs the background worker until SIGTERM or SIGINT; then it finishes (or releases) the job at
/// hand and returns.
pub async fn run_worker_until_signalled(
    worker: Worker,
    components: &Components,
    settings: &Settings,
) -> anyhow::Result<()> {
    let probes = match settings.worker.metrics_port {
        Some(port) => Some(worker_probes(components, &settings.http.host, port)?),
        None => None,
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(async move { worker.run(stopped).await });
    wait_for_signal().await?;
    tracing::info!("stopping the worker: finishing the job at hand");
    let _ = stop.send(true);
    running.await?;
    if let Some(probes) = probes {
        probes.stop(true).await;
    }
    Ok(())
}

/// `GET /metrics` (the worker's job metrics) and `GET /health/live` for the worker process.
fn worker_probes(components: &Components, host: &str, port: u16) -> anyhow::Result<ServerHandle> {
    let metrics = components.metrics.clone();
    let server = HttpServer::new(move || {
        let metrics = metrics.clone();
        actix_web::App::new()
            .route(
                "/metrics",
                actix_web::web::get().to(move || {
                    let body = metrics.render();
                    async move {
                        actix_web::HttpResponse::Ok()
                            .content_type(strata_http::metrics::CONTENT_TYPE)
                            .body(body)
                    }
                }),
            )
            .route(
                "/health/live",
                actix_web::web::get().to(|| async {
                    actix_web::HttpResponse::Ok()
                        .content_type("application/json")
                        .body(r#"{"status":"ok"}"#)
                }),
            )
    })
    .workers(1)
    .disable_signals()
    .bind((host, port))
    .with_context(|| format!("cannot listen on {host}:{port} (STRATA_WORKER_METRICS_PORT)"))?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    tracing::info!(%host, port, "worker metrics on /metrics");
    Ok(handle)
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
