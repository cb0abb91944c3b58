#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design
//! Strata's instances are stateless replicas (SPEC §7: "any number of replicas behind a load
//! balancer share PostgreSQL and Redis").
//!
//! Every test runs two `strata serve` processes, A and B, on their own loopback ports, sharing one
//! fresh PostgreSQL database and one Redis key prefix, with the same JWT secret, and shows that
//! what one replica did is what the other sees: revocations, the rate-limit budget, the cache,
//! Idempotency-Keys, queued jobs (processed by a `strata worker` beside them), and that killing
//! one replica with SIGKILL mid-traffic loses no acknowledged write; and that a Redis outage,
//! shared by every replica, leaves both in the load balancer's pool, serving reads.
//!
//! Run them with `cargo nextest run -p strata-server --test server replicas::`.

use std::collections::{BTreeSet, HashSet};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{Value, json};
use strata_postgres::testing::TestDatabase;

// The failure tests' private servers: a Redis this file can kill without touching the shared one.
#[path = "../failure/servers.rs"]
#[allow(dead_code)] // only its Redis is used here
mod servers;

const JWT_SECRET: &str = "replica-test-secret-replica-test-secret";
const PASSWORD: &str = "correct horse battery staple";

// ---------------------------------------------------------------------------------------------
// processes

/// A child process, killed (SIGKILL) and reaped when dropped if still running.
struct Process {
    what: String,
    child: Child,
}

impl Process {
    /// `kill -9`, then waits for the process to be gone.
    fn kill_hard(&mut self) {
        self.child.kill().expect("SIGKILL sent");
        self.child.wait().expect("reaped");
    }

    fn assert_running(&mut self) {
        let status = self.child.try_wait().expect("child status");
        assert!(status.is_none(), "{} exited early: {status:?}", self.what);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One database, one Redis namespace and one configuration, shared by every process started.
struct Cluster {
    database: TestDatabase,
    env: Vec<(String, String)>,
}

impl Cluster {
    /// A fresh database and Redis prefix; `extra` settings apply to every process.
    async fn new(extra: &[(&str, &str)]) -> Self {
        let database = TestDatabase::create().await.expect("test database");
        let prefix = format!("replicas:{}:", uuid::Uuid::new_v4().simple());
        let mut env: Vec<(String, String)> = [
            ("STRATA_ENV", "test"),
            ("DATABASE_URL", database.url()),
            ("REDIS_URL", &strata_redis::testing::server_url()),
            ("STRATA_REDIS_PREFIX", &prefix),
            ("STRATA_JWT_SECRET", JWT_SECRET),
            ("STRATA_ARGON2_MEMORY_KIB", "1024"),
            ("STRATA_ARGON2_ITERATIONS", "1"),
            ("STRATA_LOG", "warn"),
            ("STRATA_SHUTDOWN_GRACE_SECS", "0"),
            ("STRATA_DB_POOL_SIZE", "8"),
            // Most tests share one client IP and are not about limits (test 2 turns them on).
            ("STRATA_RATE_LIMIT_ENABLED", "false"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (key, value) in extra {
            env.retain(|(k, _)| k != key);
            env.push(((*key).to_owned(), (*value).to_owned()));
        }
        Self { database, env }
    }

    /// `strata <args>` with exactly the cluster's environment.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        command
    }

    /// Starts `strata serve` on a free port and waits until it is ready.
    async fn serve(&self, name: &'static str) -> Replica {
        let port = free_port();
        let metrics_port = free_port();
        let child = self
            .command(&["serve"])
            .env("STRATA_PORT", port.to_string())
            .env("STRATA_METRICS_PORT", metrics_port.to_string())
            .spawn()
            .expect("strata serve starts");
        let mut replica = Replica {
            name,
            base: format!("http://127.0.0.1:{port}"),
            metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
            client: client(),
            process: Process {
                what: format!("strata serve ({name})"),
                child,
            },
        };
        replica.wait_ready().await;
        replica
    }

    /// Two replicas of the same deployment.
    async fn pair(&self) -> (Replica, Replica) {
        (self.serve("A").await, self.serve("B").await)
    }

    /// `strata worker` beside the replicas (no metrics port).
    fn worker(&self) -> Process {
        let child = self
            .command(&["worker"])
            .spawn()
            .expect("strata worker starts");
        Process {
            what: "strata worker".into(),
            child,
        }
    }

    /// `strata admin grant <email>`, as an operator runs it.
    fn grant_admin(&self, email: &str) {
        let output = self
            .command(&["admin", "grant", email])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("strata admin grant runs");
        assert!(
            output.status.success(),
            "strata admin grant {email}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// One SQL query returning rows of `T`.
    async fn query<T>(&self, statement: &str) -> Vec<T>
    where
        T: diesel::QueryableByName<diesel::pg::Pg> + Send + 'static,
    {
        use diesel_async::RunQueryDsl;
        let db = self.database.database();
        let mut conn = db.connection().await.expect("connection");
        diesel::sql_query(statement)
            .load(&mut conn)
            .await
            .expect("query runs")
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// One running `strata serve`.
struct Replica {
    name: &'static str,
    base: String,
    /// The metrics listener.
    metrics: String,
    client: Client,
    process: Process,
}

impl Replica {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(response) = self.client.get(self.url("/health/ready")).send().await
                && response.status() == StatusCode::OK
            {
                return;
            }
            self.process.assert_running();
            assert!(
                Instant::now() < deadline,
                "replica {} never became ready",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn send(
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

    async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.send(Method::GET, path, token, None).await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.send(Method::POST, path, token, Some(body)).await
    }

    /// A GET that must answer 200; its JSON body.
    async fn get_json(&self, path: &str, token: Option<&str>) -> Value {
        let response = self.get(path, token).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "GET {path} on {}",
            self.name
        );
        response.json().await.expect("json")
    }

    /// Registers a customer; the registration body (user and tokens).
    async fn register(&self, email: &str) -> Value {
        let response = self
            .post(
                "/v1/auth/register",
                None,
                json!({"email": email, "password": PASSWORD, "display_name": "Replica Test"}),
            )
            .await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "register on {}",
            self.name
        );
        response.json().await.expect("json")
    }

    /// Logs in; the token body.
    async fn login(&self, email: &str) -> Value {
        let response = self
            .post(
                "/v1/auth/login",
                None,
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK, "login on {}", self.name);
        response.json().await.expect("json")
    }

    /// Creates a product as `admin`; its body.
    async fn create_product(&self, admin: &str, sku: &str, amount_minor: i64, stock: i64) -> Value {
        let response = self
            .post(
                "/v1/products",
                Some(admin),
                json!({
                    "sku": sku,
                    "name": format!("Product {sku}"),
                    "price": {"amount_minor": amount_minor, "currency": "USD"},
                    "stock": stock,
                }),
            )
            .await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "create on {}",
            self.name
        );
        response.json().await.expect("json")
    }

    async fn place_order(&self, token: &str, items: &Value, key: Option<&str>) -> Response {
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

    /// The value of the Prometheus sample `series` (exact name and labels), 0 when absent.
    async fn metric(&self, series: &str) -> f64 {
        let text = self
            .client
            .get(&self.metrics)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0.0, |value| value.trim().parse().expect("a number"))
    }
}

/// The access token of a token body.
fn access(body: &Value) -> String {
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

fn id(body: &Value) -> String {
    body["id"].as_str().expect("id").to_owned()
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Asserts a problem+json answer with `status` and `code`.
async fn problem(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        header(&response, "content-type").as_deref(),
        Some("application/problem+json")
    );
    let body: Value = response.json().await.expect("problem body");
    assert_eq!(body["code"], code, "{body}");
    body
}

/// Registers `email` on A, makes it an admin with `strata admin grant`, logs in on B: a token
/// carrying the admin role.
async fn admin_token(cluster: &Cluster, a: &Replica, b: &Replica) -> String {
    a.register("root@example.com").await;
    cluster.grant_admin("root@example.com");
    let token = access(&b.login("root@example.com").await);
    let me = a.get_json("/v1/users/me", Some(&token)).await;
    assert_eq!(me["role"], "admin", "{me}");
    token
}

// ---------------------------------------------------------------------------------------------
// 1. revocation

#[tokio::test]
async fn a_token_revoked_on_one_replica_is_refused_by_the_other() {
    let cluster = Cluster::new(&[]).await;
    let (a, b) = cluster.pair().await;
    let registered = a.register("ada@example.com").await;
    let token = access(&registered);

    // A token A issued works on B (one key) and B caches the profile.
    assert_eq!(
        b.get_json("/v1/users/me", Some(&token)).await["email"],
        "ada@example.com"
    );

    let logout = a
        .send(Method::POST, "/v1/auth/logout", Some(&token), None)
        .await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);

    for replica in [&b, &a] {
        problem(
            replica.get("/v1/users/me", Some(&token)).await,
            StatusCode::UNAUTHORIZED,
            "TOKEN_REVOKED",
        )
        .await;
    }
    // The session's refresh family was revoked for B too.
    problem(
        b.post(
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": registered["refresh_token"]}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "TOKEN_REVOKED",
    )
    .await;

    // Another session of the same user, opened on B, still works on A.
    let other = access(&b.login("ada@example.com").await);
    assert_eq!(
        a.get("/v1/users/me", Some(&other)).await.status(),
        StatusCode::OK
    );
}

// ---------------------------------------------------------------------------------------------
// 2. one rate-limit budget

#[tokio::test]
async fn both_replicas_spend_one_rate_limit_budget() {
    let cluster = Cluster::new(&[
        ("STRATA_RATE_LIMIT_ENABLED", "true"),
        ("STRATA_RATE_LIMIT_READ_ANONYMOUS", "4/60"),
    ])
    .await;
    let (a, b) = cluster.pair().await;

    let mut seen = Vec::new();
    for n in 0..10 {
        let replica = if n % 2 == 0 { &a } else { &b };
        let response = replica.get("/v1/plans", None).await;
        let status = response.status();
        let remaining = header(&response, "ratelimit-remaining");
        let retry_after = header(&response, "retry-after");
        assert_eq!(
            header(&response, "ratelimit-limit").as_deref(),
            Some("4"),
            "{}",
            replica.name
        );
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert!(retry_after.is_some(), "429 without Retry-After");
            problem(response, status, "RATE_LIMITED").await;
        }
        seen.push((replica.name, status.as_u16(), remaining));
    }
    let allowed = seen.iter().filter(|(_, status, _)| *status == 200).count();
    assert_eq!(allowed, 4, "{seen:?}");
    // The first four, alternately on A and B, each see the budget the other spent.
    let remaining: Vec<_> = seen[..4]
        .iter()
        .map(|(_, _, remaining)| remaining.as_deref())
        .collect();
    assert_eq!(
        remaining,
        [Some("3"), Some("2"), Some("1"), Some("0")],
        "{seen:?}"
    );
    assert!(
        seen[4..].iter().all(|(_, status, _)| *status == 429),
        "{seen:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. the cache is shared, each replica's in-process copies are invalidated by every replica

/// How long a write may take to reach the other replica's in-process copies: the documented
/// bound is the pub/sub delivery (well under a millisecond on loopback); this leaves room for a
/// loaded machine without letting a replica that never hears of the write pass.
const INVALIDATION_BOUND: Duration = Duration::from_secs(1);

/// Reads `path` on `replica` until `fresh` holds for the body, or fails after the bound.
async fn served_fresh_within_bound(replica: &Replica, path: &str, fresh: impl Fn(&Value) -> bool) {
    let started = std::time::Instant::now();
    loop {
        let body = replica.get_json(path, None).await;
        if fresh(&body) {
            return;
        }
        assert!(
            started.elapsed() < INVALIDATION_BOUND,
            "still stale after {INVALIDATION_BOUND:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Reads `path` on `replica` until one read is answered from its in-process copy.
async fn served_from_local_copy(replica: &Replica, path: &str) {
    let local_hits = r#"cache_local_hits_total{cache="product"}"#;
    let before = replica.metric(local_hits).await;
    let started = std::time::Instant::now();
    // The invalidation feed subscribes in the background at start-up; until it is up nothing is
    // kept in process, so the first reads may all go to Redis.
    while replica.metric(local_hits).await == before {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no read was served from the in-process copy"
        );
        replica.get_json(path, None).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_product_updated_through_one_replica_is_served_fresh_by_the_other() {
    let cluster = Cluster::new(&[]).await;
    let (a, b) = cluster.pair().await;
    let admin = admin_token(&cluster, &a, &b).await;
    let lamp = a.create_product(&admin, "LAMP-1", 1000, 5).await;
    let path = format!("/v1/products/{}", id(&lamp));

    // B reads it (populating the shared cache); A then finds it in that cache, not in
    // PostgreSQL: one cache for both.
    let on_b = b.get(&path, None).await;
    assert_eq!(on_b.status(), StatusCode::OK);
    let etag = header(&on_b, "etag").expect("an ETag");
    let on_b: Value = on_b.json().await.unwrap();
    assert_eq!(on_b["price"]["amount_minor"], 1000);
    let misses = r#"cache_misses_total{cache="product"}"#;
    let misses_before = a.metric(misses).await;
    assert_eq!(a.get_json(&path, None).await, on_b);
    assert_eq!(
        a.metric(misses).await,
        misses_before,
        "A found B's entry in the shared cache (or its own copy of it)"
    );
    // Both now serve it from their own memory, without asking Redis.
    served_from_local_copy(&a, &path).await;
    served_from_local_copy(&b, &path).await;

    // A write through A: B drops its in-process copy when A's announcement arrives, answers
    // with the new price, and its old ETag is stale.
    let patched = a
        .send(
            Method::PATCH,
            &path,
            Some(&admin),
            Some(json!({"price": {"amount_minor": 1234, "currency": "USD"}})),
        )
        .await;
    assert_eq!(patched.status(), StatusCode::OK);
    served_fresh_within_bound(&b, &path, |body| body["price"]["amount_minor"] == 1234).await;
    let revalidated = b
        .client
        .get(b.url(&path))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(
        revalidated.status(),
        StatusCode::OK,
        "the old ETag is stale"
    );
    // The writer itself never serves its old copy, not even for a moment.
    assert_eq!(a.get_json(&path, None).await["price"]["amount_minor"], 1234);

    // And the other way round: held in A's memory, written through B.
    served_from_local_copy(&a, &path).await;
    let patched = b
        .send(
            Method::PATCH,
            &path,
            Some(&admin),
            Some(json!({"price": {"amount_minor": 999, "currency": "USD"}, "name": "Lamp"})),
        )
        .await;
    assert_eq!(patched.status(), StatusCode::OK);
    served_fresh_within_bound(&a, &path, |body| {
        body["price"]["amount_minor"] == 999 && body["name"] == "Lamp"
    })
    .await;
    assert_eq!(b.get_json(&path, None).await, a.get_json(&path, None).await);

    // A stock change made by an order (not a product write) reaches the other replica's copy too.
    served_from_local_copy(&b, &path).await;
    let customer = access(&a.register("lamp-buyer@example.com").await);
    let ordered = a
        .send(
            Method::POST,
            "/v1/orders",
            Some(&customer),
            Some(json!({"items": [{"product_id": id(&lamp), "quantity": 2}]})),
        )
        .await;
    assert_eq!(ordered.status(), StatusCode::CREATED);
    served_fresh_within_bound(&b, &path, |body| body["stock"] == 3).await;
}

// ---------------------------------------------------------------------------------------------
// 4. Idempotency-Key across replicas

async fn stock(replica: &Replica, product: &Value) -> i64 {
    replica
        .get_json(&format!("/v1/products/{}", id(product)), None)
        .await["stock"]
        .as_i64()
        .expect("stock")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idempotency_key_used_on_one_replica_replays_on_the_other() {
    let cluster = Cluster::new(&[]).await;
    let (a, b) = cluster.pair().await;
    let admin = admin_token(&cluster, &a, &b).await;
    let lamp = a.create_product(&admin, "LAMP-1", 2500, 10).await;
    let customer = access(&b.register("ada@example.com").await);
    let items = json!([{"product_id": id(&lamp), "quantity": 2}]);

    let first = a
        .place_order(&customer, &items, Some("replica-key-1"))
        .await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(header(&first, "idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();

    let replay = b
        .place_order(&customer, &items, Some("replica-key-1"))
        .await;
    assert_eq!(replay.status(), StatusCode::CREATED);
    assert_eq!(
        header(&replay, "idempotent-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(replay.json::<Value>().await.unwrap(), first);
    assert_eq!(stock(&b, &lamp).await, 8, "stock taken once");
    assert_eq!(stock(&a, &lamp).await, 8);

    // The key is bound to its body on every replica.
    problem(
        b.place_order(
            &customer,
            &json!([{"product_id": id(&lamp), "quantity": 1}]),
            Some("replica-key-1"),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "IDEMPOTENCY_KEY_REUSED",
    )
    .await;

    // Concurrent duplicates spread over both replicas: one effect.
    let (a, b) = (Arc::new(a), Arc::new(b));
    let one = json!([{"product_id": id(&lamp), "quantity": 1}]);
    let racers: Vec<_> = (0..8)
        .map(|n| {
            let replica = if n % 2 == 0 { a.clone() } else { b.clone() };
            let (customer, one) = (customer.clone(), one.clone());
            tokio::spawn(async move {
                let response = replica
                    .place_order(&customer, &one, Some("replica-key-2"))
                    .await;
                assert_eq!(
                    response.status(),
                    StatusCode::CREATED,
                    "on {}",
                    replica.name
                );
                id(&response.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut ids = BTreeSet::new();
    for racer in racers {
        ids.insert(racer.await.unwrap());
    }
    assert_eq!(ids.len(), 1, "every answer names the same order: {ids:?}");
    assert_eq!(stock(&a, &lamp).await, 7, "stock taken once");
    let listed = b.get_json("/v1/orders", Some(&customer)).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed}");
}

// ---------------------------------------------------------------------------------------------
// 5. a job queued through one replica, run by a worker beside the other

#[tokio::test]
async fn a_report_queued_through_one_replica_is_done_by_a_worker_and_read_through_the_other() {
    let cluster = Cluster::new(&[]).await;
    let (a, b) = cluster.pair().await;
    let admin = admin_token(&cluster, &a, &b).await;
    let lamp = a.create_product(&admin, "LAMP-1", 2500, 10).await;
    let customer = access(&b.register("ada@example.com").await);
    let placed = b
        .place_order(
            &customer,
            &json!([{"product_id": id(&lamp), "quantity": 3}]),
            None,
        )
        .await;
    assert_eq!(placed.status(), StatusCode::CREATED);

    let now = chrono::Utc::now();
    let range = json!({
        "kind": "sales",
        "from": (now - chrono::Duration::days(1)).to_rfc3339(),
        "to": (now + chrono::Duration::days(1)).to_rfc3339(),
    });
    let queued = a.post("/v1/admin/reports", Some(&admin), range).await;
    assert_eq!(queued.status(), StatusCode::ACCEPTED);
    let location = header(&queued, "location").expect("Location");
    let queued: Value = queued.json().await.unwrap();
    assert_eq!(queued["status"], "queued");
    // No worker yet: B sees the queued report A stored.
    assert_eq!(b.get_json(&location, Some(&admin)).await, queued);

    let mut worker = cluster.worker();
    let deadline = Instant::now() + Duration::from_secs(15);
    let done = loop {
        let report = b.get_json(&location, Some(&admin)).await;
        if report["status"] == "done" {
            break report;
        }
        assert_ne!(report["status"], "failed", "{report}");
        worker.assert_running();
        assert!(
            Instant::now() < deadline,
            "the report never got done: {report}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done["id"], queued["id"]);
    assert_eq!(done["result"]["order_count"], 1, "{done}");
    assert_eq!(done["result"]["units"], 3, "{done}");
    assert_eq!(done["result"]["top_products"][0]["sku"], "LAMP-1", "{done}");
    assert_eq!(a.get_json(&location, Some(&admin)).await, done);
}

// ---------------------------------------------------------------------------------------------
// 6. SIGKILL of one replica mid-traffic

/// One order request of the traffic.
#[derive(Debug)]
struct Attempt {
    replica: &'static str,
    sent: Duration,
    /// Status and, for a 201, the order id; or the transport error.
    outcome: Result<(StatusCode, Option<String>), String>,
}

#[derive(diesel::QueryableByName)]
struct OrderRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    quantity: i32,
}

#[derive(diesel::QueryableByName)]
struct StockRow {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    stock: i32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_a_replica_mid_traffic_loses_no_acknowledged_order() {
    const CLIENTS: usize = 8;
    const INITIAL_STOCK: i64 = 1_000_000;
    let traffic_for = Duration::from_secs(2);
    let kill_after = Duration::from_secs(1);

    // A patient pool: on this small machine B must absorb A's share without shedding.
    let cluster = Cluster::new(&[("STRATA_DB_ACQUIRE_TIMEOUT_MS", "10000")]).await;
    let (mut a, b) = cluster.pair().await;
    let admin = admin_token(&cluster, &a, &b).await;
    let lamp = a
        .create_product(&admin, "LAMP-1", 2500, INITIAL_STOCK)
        .await;
    let lamp_id = id(&lamp);
    let customer = access(&b.register("ada@example.com").await);
    let items = json!([{"product_id": lamp_id, "quantity": 1}]);

    let bases = [(a.name, a.base.clone()), (b.name, b.base.clone())];
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let (bases, customer, items) = (bases.clone(), customer.clone(), items.clone());
            tokio::spawn(async move {
                // A client each, with its own connections.
                let http = client();
                let mut attempts = Vec::new();
                let mut turn = n;
                while started.elapsed() < traffic_for {
                    let (replica, base) = &bases[turn % 2];
                    turn += 1;
                    let sent = started.elapsed();
                    let outcome = match http
                        .post(format!("{base}/v1/orders"))
                        .bearer_auth(&customer)
                        .json(&json!({ "items": items }))
                        .send()
                        .await
                    {
                        Ok(response) => {
                            let status = response.status();
                            match response.json::<Value>().await {
                                Ok(body) => Ok((status, body["id"].as_str().map(str::to_owned))),
                                Err(error) => Err(format!("body of a {status}: {error}")),
                            }
                        }
                        Err(error) => Err(format!("{error:#}")),
                    };
                    attempts.push(Attempt {
                        replica,
                        sent,
                        outcome,
                    });
                }
                attempts
            })
        })
        .collect();

    tokio::time::sleep(kill_after.saturating_sub(started.elapsed())).await;
    a.process.kill_hard();
    let killed = started.elapsed();

    let mut attempts = Vec::new();
    for client in clients {
        attempts.extend(client.await.expect("client task"));
    }
    attempts.sort_by_key(|attempt| attempt.sent);
    let summary = {
        let count = |replica: &str, before: bool, ok: bool| {
            attempts
                .iter()
                .filter(|t| t.replica == replica && (t.sent < killed) == before)
                .filter(|t| matches!(t.outcome, Ok((StatusCode::CREATED, _))) == ok)
                .count()
        };
        format!(
            "killed A at {killed:?}; {} requests: A before kill {} ok / {} not, A after {} ok / \
             {} not; B before {} ok / {} not, B after {} ok / {} not",
            attempts.len(),
            count("A", true, true),
            count("A", true, false),
            count("A", false, true),
            count("A", false, false),
            count("B", true, true),
            count("B", true, false),
            count("B", false, true),
            count("B", false, false),
        )
    };
    eprintln!("{summary}");

    // What the clients were told.
    let mut acknowledged: Vec<(&str, String)> = Vec::new();
    let mut unanswered = 0;
    for attempt in &attempts {
        match &attempt.outcome {
            Ok((StatusCode::CREATED, Some(order))) => {
                acknowledged.push((attempt.replica, order.clone()));
            }
            Ok(_) => panic!("an answer other than 201: {attempt:?}\n{summary}"),
            // In flight when A died: perhaps stored, never acknowledged.
            Err(_) if attempt.replica == "A" && attempt.sent < killed => unanswered += 1,
            Err(_) if attempt.replica == "A" => {}
            Err(_) => panic!("B failed a request: {attempt:?}\n{summary}"),
        }
        // Once A is gone, a request to it fails at the connection level.
        if attempt.replica == "A" && attempt.sent > killed {
            assert!(
                attempt.outcome.is_err(),
                "A answered after its death: {attempt:?}"
            );
        }
    }
    let on = |replica: &str| acknowledged.iter().filter(|(r, _)| *r == replica).count();
    assert!(
        on("A") > 0,
        "A acknowledged nothing before its death\n{summary}"
    );
    assert!(
        attempts
            .iter()
            .any(|t| t.replica == "B" && t.sent > killed && t.outcome.is_ok()),
        "B served nothing after A died\n{summary}"
    );
    let acknowledged_ids: HashSet<&str> = acknowledged.iter().map(|(_, o)| o.as_str()).collect();
    assert_eq!(
        acknowledged_ids.len(),
        acknowledged.len(),
        "one order acknowledged twice"
    );

    // What the database holds: every acknowledged order, stock down by exactly what is stored.
    let stored: Vec<OrderRow> = cluster
        .query(&format!(
            "SELECT o.id::text AS id, i.quantity FROM orders o JOIN order_items i \
             ON i.order_id = o.id WHERE i.product_id = '{lamp_id}'"
        ))
        .await;
    let stored_ids: HashSet<&str> = stored.iter().map(|row| row.id.as_str()).collect();
    assert_eq!(stored_ids.len(), stored.len(), "one line per order");
    assert!(stored.iter().all(|row| row.quantity == 1));
    let lost: Vec<_> = acknowledged_ids.difference(&stored_ids).collect();
    assert!(
        lost.is_empty(),
        "acknowledged orders lost: {lost:?}\n{summary}"
    );
    // Orders stored but never acknowledged can only be requests A took in before it died.
    let extra = stored_ids.len() - acknowledged_ids.len();
    assert!(
        extra <= unanswered,
        "{extra} orders stored unacknowledged, but only {unanswered} were in flight on A\n{summary}"
    );
    let stock_now: Vec<StockRow> = cluster
        .query(&format!(
            "SELECT stock FROM products WHERE id = '{lamp_id}'"
        ))
        .await;
    let taken = INITIAL_STOCK - i64::from(stock_now[0].stock);
    assert_eq!(
        taken,
        i64::try_from(stored.len()).unwrap(),
        "stock taken = orders stored\n{summary}"
    );
    assert_eq!(stock(&b, &lamp).await, i64::from(stock_now[0].stock));

    // B serves every order A acknowledged before dying.
    for (_, order) in acknowledged.iter().filter(|(r, _)| *r == "A") {
        let read = b
            .get_json(&format!("/v1/orders/{order}"), Some(&customer))
            .await;
        assert_eq!(read["status"], "placed", "{read}");
    }
    eprintln!(
        "{} acknowledged ({} by A), {} stored, {unanswered} in flight on A when it died",
        acknowledged.len(),
        on("A"),
        stored.len()
    );
}

// ---------------------------------------------------------------------------------------------
// 7. a Redis outage behind the load balancer

/// The compose load balancer's membership rule, read from deploy/haproxy.cfg: a replica stays in
/// the pool while its health check answers the expected status, and leaves it after `fall`
/// failures in a row.
struct Balancer {
    path: String,
    expect: StatusCode,
    fall: usize,
}

impl Balancer {
    fn from_haproxy_cfg() -> Self {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/haproxy.cfg");
        let config = std::fs::read_to_string(path).expect("deploy/haproxy.cfg");
        let words: Vec<Vec<&str>> = config
            .lines()
            .map(|line| line.split('#').next().unwrap_or_default())
            .map(|line| line.split_whitespace().collect())
            .collect();
        let after = |key: &[&str], what: &str| -> String {
            words
                .iter()
                .find_map(|line| {
                    line.windows(key.len())
                        .position(|w| w == key)
                        .and_then(|at| line.get(at + key.len()))
                })
                .unwrap_or_else(|| panic!("haproxy.cfg has no {what}"))
                .to_string()
        };
        Self {
            path: after(&["uri"], "check path"),
            expect: after(&["expect", "status"], "expected check status")
                .parse::<u16>()
                .ok()
                .and_then(|code| StatusCode::from_u16(code).ok())
                .expect("a status code"),
            fall: after(&["fall"], "fall count").parse().expect("a count"),
        }
    }

    /// One health check of `replica`: passed or failed, and the body it answered.
    async fn check(&self, replica: &Replica) -> (bool, Value) {
        let response = replica.get(&self.path, None).await;
        let passed = response.status() == self.expect;
        (passed, response.json().await.unwrap_or(Value::Null))
    }
}

fn check_of<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {name} check in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_the_load_balancer_keeps_both_replicas_and_reads_are_served() {
    let balancer = Balancer::from_haproxy_cfg();
    let mut redis = servers::PrivateRedis::start().await;
    let redis_url = redis.url();
    let cluster = Cluster::new(&[
        ("REDIS_URL", &redis_url),
        ("STRATA_REDIS_TIMEOUT_MS", "200"),
        ("STRATA_HEALTH_TIMEOUT_MS", "500"),
        // Each check sees the outage at once rather than after the reuse interval.
        ("STRATA_HEALTH_CACHE_MS", "0"),
    ])
    .await;
    let (a, b) = cluster.pair().await;
    let admin = admin_token(&cluster, &a, &b).await;
    let product = id(&a.create_product(&admin, "LB-1", 1999, 5).await);
    let path = format!("/v1/products/{product}");
    for replica in [&a, &b] {
        replica.get_json(&path, None).await;
    }

    redis.kill();
    // More rounds than the balancer needs to take a failing replica out, each replica checked
    // every round as HAProxy does, with reads spread over the pool in between.
    for round in 0..balancer.fall + 2 {
        let mut pool = Vec::new();
        for replica in [&a, &b] {
            let (passed, body) = balancer.check(replica).await;
            assert!(
                passed,
                "round {round}: {} failed its check {} with Redis down: {body}",
                replica.name, balancer.path
            );
            assert_eq!(body["status"], "degraded", "{}: {body}", replica.name);
            assert_eq!(check_of(&body, "redis")["status"], "down", "{body}");
            pool.push(replica);
        }
        assert_eq!(pool.len(), 2, "both replicas stay in the pool");
        for replica in pool {
            let read = replica.get_json(&path, None).await;
            assert_eq!(read["id"], product.as_str(), "{}: {read}", replica.name);
            let page = replica.get_json("/v1/products?limit=5", None).await;
            assert!(
                page["items"]
                    .as_array()
                    .is_some_and(|items| !items.is_empty()),
                "{}: {page}",
                replica.name
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The deep check, which alerts watch, says what is wrong.
    for replica in [&a, &b] {
        let deep = replica.get("/health", None).await;
        assert_eq!(
            deep.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            replica.name
        );
        let body: Value = deep.json().await.expect("json");
        assert_eq!(check_of(&body, "redis")["status"], "down", "{body}");
        assert_eq!(check_of(&body, "postgres")["status"], "up", "{body}");
    }
}
