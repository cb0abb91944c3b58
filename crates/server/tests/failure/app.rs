//! The application under test, built in-process by the same function as `strata serve`, wired to
//! whichever servers a test chooses; timed HTTP helpers; background traffic that records how long
//! every request took.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use figment::Figment;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use strata_server::{Application, Components, Settings};

pub const JWT_SECRET: &str = "failure-test-secret-failure-test-secret";
pub const PASSWORD: &str = "correct horse battery staple";

/// Settings for a failure test: cheap hashing, short dependency timeouts, the rate limiter on (it
/// talks to Redis on every request and must fail open) with budgets no test reaches,
/// `overrides` last.
pub fn settings(database_url: &str, redis_url: &str, overrides: &[(&str, Value)]) -> Settings {
    let mut figment = Figment::new()
        .merge(("env", "test"))
        .merge(("host", "127.0.0.1"))
        .merge(("port", 0))
        .merge(("metrics_port", 0))
        .merge(("workers", 2))
        .merge(("database_url", database_url))
        .merge(("redis_url", redis_url))
        .merge((
            "redis_prefix",
            format!("failure:{}:", uuid::Uuid::new_v4().simple()),
        ))
        .merge(("redis_timeout_ms", 200))
        .merge(("jwt_secret", JWT_SECRET))
        .merge(("argon2_memory_kib", 1024))
        .merge(("argon2_iterations", 1))
        .merge(("db_pool_size", 4))
        .merge(("db_acquire_timeout_ms", 1000))
        .merge(("db_query_timeout_ms", 1000))
        .merge(("health_timeout_ms", 500))
        // These tests kill a dependency and look at the health checks at once; a reused check
        // would hide the outage for its interval (`redis_down::the_deep_check_reuses_*` tests that).
        .merge(("health_cache_ms", 0))
        .merge(("shutdown_grace_secs", 0))
        .merge(("shutdown_timeout_secs", 5))
        .merge(("rate_limit_enabled", true))
        .merge(("rate_limit_read_anonymous", "100000/60"))
        .merge(("rate_limit_read_user", "100000/60"))
        .merge(("rate_limit_write_anonymous", "100000/60"))
        .merge(("rate_limit_write_user", "100000/60"))
        .merge(("rate_limit_auth_ip", "100000/60"))
        .merge(("rate_limit_auth_email", "100000/60"));
    for (key, value) in overrides {
        figment = figment.merge((*key, value.clone()));
    }
    Settings::from_figment(figment).expect("test settings are valid")
}

/// One request's outcome.
#[derive(Debug, Clone)]
pub struct Timed {
    pub label: String,
    pub status: Option<StatusCode>,
    pub elapsed: Duration,
    pub retry_after: Option<String>,
    pub content_type: Option<String>,
    pub body: Value,
    pub error: Option<String>,
}

impl Timed {
    pub fn status(&self) -> StatusCode {
        self.status.unwrap_or_else(|| {
            panic!(
                "{}: no response after {:?}: {}",
                self.label,
                self.elapsed,
                self.error.as_deref().unwrap_or("?")
            )
        })
    }

    /// Asserts a 503 SERVICE_UNAVAILABLE problem+json with Retry-After.
    pub fn assert_unavailable(&self) {
        assert_eq!(self.status(), StatusCode::SERVICE_UNAVAILABLE, "{self:?}");
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/problem+json"),
            "{self:?}"
        );
        assert_eq!(self.body["code"], "SERVICE_UNAVAILABLE", "{self:?}");
        assert_eq!(self.body["status"], 503, "{self:?}");
        assert!(
            self.retry_after.is_some(),
            "503 without Retry-After: {self:?}"
        );
    }

    /// Asserts it took less than `limit`.
    pub fn assert_within(&self, limit: Duration) {
        assert!(
            self.elapsed < limit,
            "{} took {:?} (limit {limit:?}): {self:?}",
            self.label,
            self.elapsed
        );
    }
}

/// A running application.
pub struct App {
    pub address: String,
    pub client: Client,
    pub components: Components,
    _server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl App {
    pub fn spawn(settings: &Settings) -> Self {
        let app = Application::build(settings).expect("application builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let components = app.components().clone();
        let server = tokio::spawn(app.run_until_stopped());
        Self {
            address,
            client: client(),
            components,
            _server: server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Sends a request and records status, body and time; a transport error is recorded too.
    pub async fn timed(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Timed {
        send(&self.client, method, &self.url(path), token, body).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Timed {
        self.timed(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Timed {
        self.timed(Method::POST, path, token, Some(body)).await
    }

    /// Registers `email` and returns its access token.
    pub async fn register(&self, email: &str) -> String {
        let response = self
            .post(
                "/v1/auth/register",
                None,
                json!({"email": email, "password": PASSWORD, "display_name": "Failure Test"}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "{response:?}");
        access(&response.body)
    }

    pub async fn login(&self, email: &str) -> Timed {
        self.post(
            "/v1/auth/login",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await
    }

    /// Registers an admin and returns an access token carrying the admin role.
    pub async fn admin_token(&self) -> String {
        self.register("root@example.com").await;
        self.components
            .users
            .grant_admin("root@example.com")
            .await
            .expect("granted");
        let login = self.login("root@example.com").await;
        assert_eq!(login.status(), StatusCode::OK, "{login:?}");
        access(&login.body)
    }

    /// Creates a product and returns its id.
    pub async fn create_product(&self, admin: &str, sku: &str) -> String {
        let created = self
            .post(
                "/v1/products",
                Some(admin),
                json!({
                    "sku": sku,
                    "name": format!("Product {sku}"),
                    "price": {"amount_minor": 1999, "currency": "USD"},
                    "stock": 100,
                }),
            )
            .await;
        assert_eq!(created.status(), StatusCode::CREATED, "{created:?}");
        created.body["id"].as_str().expect("product id").to_owned()
    }

    /// Readiness, with the status of each named check.
    pub async fn readiness(&self) -> (Timed, Vec<(String, String)>) {
        self.health("/health/ready").await
    }

    /// The deep health check, with the status of each named check.
    pub async fn deep_check(&self) -> (Timed, Vec<(String, String)>) {
        self.health("/health").await
    }

    async fn health(&self, path: &str) -> (Timed, Vec<(String, String)>) {
        let ready = self.get(path, None).await;
        let checks = ready.body["checks"]
            .as_array()
            .map(|checks| {
                checks
                    .iter()
                    .map(|c| {
                        (
                            c["name"].as_str().unwrap_or_default().to_owned(),
                            c["status"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        (ready, checks)
    }

    /// Polls `probe` until it returns true, up to `limit`; returns how long it took.
    pub async fn eventually<F, Fut>(&self, limit: Duration, what: &str, mut probe: F) -> Duration
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let started = Instant::now();
        loop {
            if probe().await {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "{what}: not within {limit:?} (no app restart allowed)"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A client with its own connection pool and a timeout well past every limit asserted, so that
/// a hang shows up as a long elapsed time rather than a vanished request.
pub fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client")
}

pub async fn send(
    client: &Client,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Timed {
    let path = url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|slash| &rest[slash..]))
        .unwrap_or(url);
    let label = format!("{method} {path}");
    let mut request = client.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let started = Instant::now();
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let retry_after = header("retry-after");
            let content_type = header("content-type");
            let text = response.text().await;
            let elapsed = started.elapsed();
            match text {
                Ok(text) => Timed {
                    label,
                    status: Some(status),
                    elapsed,
                    retry_after,
                    content_type,
                    body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
                    error: None,
                },
                Err(error) => Timed {
                    label,
                    status: Some(status),
                    elapsed,
                    retry_after,
                    content_type,
                    body: Value::Null,
                    error: Some(format!("body: {error}")),
                },
            }
        }
        Err(error) => Timed {
            label,
            status: None,
            elapsed: started.elapsed(),
            retry_after: None,
            content_type: None,
            body: Value::Null,
            error: Some(format!("{error:#}")),
        },
    }
}

/// The access token of a token body.
pub fn access(body: &Value) -> String {
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {body}"))
        .to_owned()
}

/// One kind of request the background traffic sends.
#[derive(Clone)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub token: Option<String>,
    pub body: Option<Value>,
}

impl Call {
    pub fn get(path: &str, token: Option<&str>) -> Self {
        Self {
            method: Method::GET,
            path: path.to_owned(),
            token: token.map(str::to_owned),
            body: None,
        }
    }

    pub fn post(path: &str, body: Value) -> Self {
        Self {
            method: Method::POST,
            path: path.to_owned(),
            token: None,
            body: Some(body),
        }
    }
}

/// Clients that loop over `calls` until stopped, each on its own connection, recording every
/// request with the moment it started (relative to the traffic's start).
pub struct Traffic {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<(Duration, Timed)>>>,
    pub started: Instant,
}

impl Traffic {
    pub fn start(app: &App, clients: usize, calls: &[Call]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let tasks = (0..clients)
            .map(|n| {
                let stop = stop.clone();
                let calls = calls.to_vec();
                let base = app.address.clone();
                tokio::spawn(async move {
                    let client = client();
                    let mut seen = Vec::new();
                    let mut i = n;
                    while !stop.load(Ordering::SeqCst) {
                        let call = &calls[i % calls.len()];
                        i += 1;
                        let at = started.elapsed();
                        let timed = send(
                            &client,
                            call.method.clone(),
                            &format!("{base}{}", call.path),
                            call.token.as_deref(),
                            call.body.clone(),
                        )
                        .await;
                        seen.push((at, timed));
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    seen
                })
            })
            .collect();
        Self {
            stop,
            tasks,
            started,
        }
    }

    /// Stops the clients (each finishes its current request) and returns every request sent.
    pub async fn finish(self) -> Vec<(Duration, Timed)> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        for task in self.tasks {
            all.extend(task.await.expect("traffic task"));
        }
        all.sort_by_key(|(at, _)| *at);
        all
    }
}

/// A one-line summary per label: count, statuses seen, slowest.
pub fn summarise(requests: &[(Duration, Timed)]) -> String {
    use std::collections::BTreeMap;
    let mut by_label: BTreeMap<&str, (usize, BTreeMap<String, usize>, Duration)> = BTreeMap::new();
    for (_, timed) in requests {
        let entry = by_label.entry(&timed.label).or_default();
        entry.0 += 1;
        let status = timed
            .status
            .map_or_else(|| "error".to_owned(), |s| s.as_u16().to_string());
        *entry.1.entry(status).or_default() += 1;
        entry.2 = entry.2.max(timed.elapsed);
    }
    by_label
        .into_iter()
        .map(|(label, (count, statuses, slowest))| {
            format!("  {label}: {count} requests, statuses {statuses:?}, slowest {slowest:?}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The application's log lines (JSON), captured in memory for a test to quote.
#[derive(Clone, Default)]
pub struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Installs the application's JSON logging, at `filter`, into memory (once per process:
    /// nextest runs each test in its own).
    pub fn capture(filter: &str) -> Self {
        let logs = Self::default();
        let sink = logs.clone();
        let _telemetry =
            strata_server::telemetry::init(filter, strata_server::LogFormat::Json, move || {
                sink.clone()
            });
        logs
    }

    /// The lines logged at ERROR level.
    pub fn errors(&self) -> Vec<String> {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|line| line.contains("\"level\":\"ERROR\""))
            .map(str::to_owned)
            .collect()
    }
}
