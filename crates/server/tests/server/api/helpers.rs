//! A running application per test, and HTTP helpers.

use std::time::Duration;

use figment::Figment;
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{Value, json};
use strata_postgres::testing::TestDatabase;
use strata_server::app::ShutdownHandle;
use strata_server::{Application, Components, Settings};

pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret!";
pub const PASSWORD: &str = "correct horse battery staple";

/// A running Strata with its own database.
pub struct TestApp {
    pub address: String,
    /// Where `GET /metrics` is served (its own listener).
    pub metrics_address: String,
    pub client: Client,
    pub components: Components,
    pub shutdown: ShutdownHandle,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
    _database: TestDatabase,
}

/// Settings every test starts from; `overrides` are `(setting, value)` pairs.
pub fn settings(database_url: &str, overrides: &[(&str, Value)]) -> Settings {
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let mut figment = Figment::new()
        .merge(("env", "test"))
        .merge(("host", "127.0.0.1"))
        .merge(("port", 0))
        .merge(("metrics_port", 0))
        .merge(("workers", 1))
        .merge(("database_url", database_url))
        .merge(("redis_url", strata_redis::testing::server_url()))
        .merge(("redis_prefix", prefix))
        .merge(("jwt_secret", JWT_SECRET))
        .merge(("argon2_memory_kib", 1024))
        .merge(("argon2_iterations", 1))
        .merge(("db_pool_size", 4))
        .merge(("shutdown_grace_secs", 0))
        // Tests share one client IP; the limiter has its own tests (api::limits).
        .merge(("rate_limit_enabled", false))
        .merge(("shutdown_timeout_secs", 5));
    for (key, value) in overrides {
        figment = figment.merge((*key, value.clone()));
    }
    Settings::from_figment(figment).expect("test settings are valid")
}

impl TestApp {
    /// Starts an app on a fresh database.
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// Starts an app on a fresh database with some settings changed.
    pub async fn spawn_with(overrides: &[(&str, Value)]) -> Self {
        let database = TestDatabase::create().await.expect("test database");
        let settings = settings(database.url(), overrides);
        let app = Application::build(&settings).expect("application builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let metrics_address = format!("http://127.0.0.1:{}", app.metrics_port());
        let components = app.components().clone();
        let shutdown = app.shutdown_handle();
        let server = tokio::spawn(app.run_until_stopped());
        Self {
            address,
            metrics_address,
            client: Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
            components,
            shutdown,
            server,
            _database: database,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// `path` on the metrics listener.
    pub fn metrics_url(&self, path: &str) -> String {
        format!("{}{path}", self.metrics_address)
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request sent")
    }

    /// A GET without credentials.
    pub async fn get_public(&self, path: &str) -> Response {
        self.request(Method::GET, path, None, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.request(Method::POST, path, None, Some(body)).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.request(Method::GET, path, Some(token), None).await
    }

    /// Registers a user and returns the registration body.
    pub async fn register(&self, email: &str) -> Value {
        let response = self
            .post(
                "/v1/auth/register",
                json!({"email": email, "password": PASSWORD, "display_name": "Test User"}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.expect("json")
    }

    /// Logs in and returns the token body.
    pub async fn login(&self, email: &str) -> Value {
        let response = self
            .post(
                "/v1/auth/login",
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("json")
    }

    /// Registers an admin and returns an access token carrying the admin role.
    pub async fn admin_token(&self) -> String {
        self.register("root@example.com").await;
        self.components
            .users
            .grant_admin("root@example.com")
            .await
            .expect("granted");
        access(&self.login("root@example.com").await)
    }
}

impl TestApp {
    /// Creates a product as `admin` and returns its body.
    pub async fn create_product(
        &self,
        admin: &str,
        sku: &str,
        amount_minor: i64,
        stock: i64,
    ) -> Value {
        let response = self
            .request(
                Method::POST,
                "/v1/products",
                Some(admin),
                Some(json!({
                    "sku": sku,
                    "name": format!("Product {sku}"),
                    "price": {"amount_minor": amount_minor, "currency": "USD"},
                    "stock": stock,
                })),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.expect("json")
    }

    /// Places an order as `token`, with an optional Idempotency-Key.
    pub async fn place_order(&self, token: &str, items: Value, key: Option<&str>) -> Response {
        let mut request = self
            .client
            .post(self.url("/v1/orders"))
            .bearer_auth(token)
            .json(&json!({ "items": items }));
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request.send().await.expect("request sent")
    }

    /// The JSON body of an anonymous GET that must succeed.
    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get_public(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("json")
    }
}

impl TestApp {
    /// Runs one SQL statement on the app's database (tests use it to move time along).
    pub async fn sql(&self, statement: &str) -> usize {
        use diesel_async::RunQueryDsl;
        let mut conn = self
            .components
            .database
            .connection()
            .await
            .expect("connection");
        diesel::sql_query(statement)
            .execute(&mut conn)
            .await
            .expect("statement runs")
    }

    /// A request with a JSON body, a token and an optional Idempotency-Key.
    pub async fn post_keyed(
        &self,
        path: &str,
        token: &str,
        body: Value,
        key: Option<&str>,
    ) -> Response {
        let mut request = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request.send().await.expect("request sent")
    }
}

/// The access token of a token body.
pub fn access(body: &Value) -> String {
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// Asserts a problem+json response and returns its body.
pub async fn problem(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = response.json().await.expect("problem body");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16());
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("/problems/"))
    );
    assert!(body["title"].is_string() && body["detail"].is_string());
    assert_eq!(
        body["request_id"].as_str(),
        request_id.as_deref(),
        "the body quotes the echoed request id"
    );
    body
}

/// The `field` of every entry of a validation problem's `errors`.
pub fn fields(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}
