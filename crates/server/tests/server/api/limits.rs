//! The edge over HTTP: rate limits (headers, exact budgets, per user / IP / email, shared by
//! instances, proxy trust), CORS, the request timeout, admission control, compression and HSTS.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api::helpers::{PASSWORD, TestApp, access, problem};
use crate::api::metrics::{scrape, value};

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The one item of the structured-field list `name` (draft-ietf-httpapi-ratelimit-headers):
/// its policy name and its integer parameters.
fn draft_field(response: &reqwest::Response, name: &str) -> (String, BTreeMap<String, i64>) {
    let raw = header(response, name).unwrap_or_else(|| panic!("no {name}"));
    let list: sfv::List = sfv::Parser::new(raw)
        .parse()
        .unwrap_or_else(|error| panic!("{name}: {raw:?} is no structured list: {error}"));
    assert_eq!(list.len(), 1, "{name}: {raw}");
    let sfv::ListEntry::Item(item) = &list[0] else {
        panic!("{name}: {raw} is an inner list");
    };
    let policy = item
        .bare_item
        .as_string()
        .unwrap_or_else(|| panic!("{name}: {raw} names its policy with no string"))
        .as_str()
        .to_owned();
    let parameters = item
        .params
        .iter()
        .map(|(key, value)| {
            let value = value
                .as_integer()
                .unwrap_or_else(|| panic!("{name}: {raw}: {key} is no integer"));
            (key.as_str().to_owned(), i64::from(value))
        })
        .collect();
    (policy, parameters)
}

/// `RateLimit-Policy` and `RateLimit` name `policy`, and say what the three earlier fields of
/// `response` say: q = `RateLimit-Limit`, w = the window, r = `RateLimit-Remaining`,
/// t = `RateLimit-Reset`.
fn assert_draft_fields_agree(response: &reqwest::Response, policy: &str, window_secs: i64) {
    let legacy = |name: &str| -> i64 {
        header(response, name)
            .unwrap_or_else(|| panic!("no {name}"))
            .parse()
            .unwrap()
    };
    let (name, quota) = draft_field(response, "ratelimit-policy");
    assert_eq!(name, policy);
    assert_eq!(
        quota,
        BTreeMap::from([
            ("q".to_owned(), legacy("ratelimit-limit")),
            ("w".to_owned(), window_secs)
        ])
    );
    let (name, left) = draft_field(response, "ratelimit");
    assert_eq!(name, policy);
    assert_eq!(
        left,
        BTreeMap::from([
            ("r".to_owned(), legacy("ratelimit-remaining")),
            ("t".to_owned(), legacy("ratelimit-reset"))
        ])
    );
}

fn limited(overrides: &[(&'static str, Value)]) -> Vec<(&'static str, Value)> {
    let mut all = vec![("rate_limit_enabled", json!(true))];
    all.extend(overrides.iter().cloned());
    all
}

#[tokio::test]
async fn a_spent_budget_is_429_with_retry_after_and_every_limited_response_has_the_headers() {
    let app = TestApp::spawn_with(&limited(&[("rate_limit_read_anonymous", json!("3/60"))])).await;
    for remaining in ["2", "1", "0"] {
        let response = app.get_public("/v1/plans").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "ratelimit-limit"), Some("3"));
        assert_eq!(header(&response, "ratelimit-remaining"), Some(remaining));
        let reset: u64 = header(&response, "ratelimit-reset")
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&reset), "reset {reset}");
        assert_draft_fields_agree(&response, "read_anonymous", 60);
    }
    let refused = app.get_public("/v1/plans").await;
    let retry: u64 = header(&refused, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(header(&refused, "ratelimit-remaining"), Some("0"));
    assert_draft_fields_agree(&refused, "read_anonymous", 60);
    assert_eq!(header(&refused, "x-content-type-options"), Some("nosniff"));
    problem(refused, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;

    let probe = app.get_public("/health/live").await;
    assert_eq!(probe.status(), StatusCode::OK, "probes are never limited");
    assert!(header(&probe, "ratelimit-limit").is_none());
    assert!(header(&probe, "ratelimit-policy").is_none());
    assert!(header(&probe, "ratelimit").is_none());
}

#[tokio::test]
async fn users_spend_their_own_budget_and_anonymous_callers_the_ip_s() {
    let app = TestApp::spawn_with(&limited(&[
        ("rate_limit_read_anonymous", json!("2/60")),
        ("rate_limit_read_user", json!("5/60")),
    ]))
    .await;
    let token = access(&app.register("ada@example.com").await);
    for _ in 0..2 {
        assert_eq!(app.get_public("/v1/plans").await.status(), StatusCode::OK);
    }
    assert_eq!(
        app.get_public("/v1/plans").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    for _ in 0..5 {
        let response = app.get("/v1/plans", &token).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "ratelimit-limit"), Some("5"));
        assert_draft_fields_agree(&response, "read_user", 60);
    }
    let refused = app.get("/v1/plans", &token).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_draft_fields_agree(&refused, "read_user", 60);
}

#[tokio::test]
async fn login_has_a_stricter_budget_per_email_whatever_the_ip() {
    let app = TestApp::spawn_with(&limited(&[
        ("rate_limit_auth_ip", json!("100/60")),
        ("rate_limit_auth_email", json!("3/60")),
    ]))
    .await;
    app.register("ada@example.com").await;
    for _ in 0..2 {
        let wrong = app
            .post(
                "/v1/auth/login",
                json!({"email": "ada@example.com", "password": "not the password"}),
            )
            .await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    // Registration spent the first unit; even the right password is now refused for a while.
    let refused = app
        .post(
            "/v1/auth/login",
            json!({"email": "ADA@example.com", "password": PASSWORD}),
        )
        .await;
    assert!(header(&refused, "retry-after").is_some());
    // The budget that refused it is the per-email one, and the fields say so.
    assert_eq!(header(&refused, "ratelimit-limit"), Some("3"));
    assert_draft_fields_agree(&refused, "auth_email", 60);
    problem(refused, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;
    app.register("bob@example.com").await;
    app.login("bob@example.com").await;
}

#[tokio::test]
async fn the_per_email_budget_is_keyed_on_the_normalised_address() {
    let app = TestApp::spawn_with(&limited(&[
        ("rate_limit_auth_ip", json!("100/60")),
        ("rate_limit_auth_email", json!("3/60")),
    ]))
    .await;
    let login = |email: String| {
        app.post(
            "/v1/auth/login",
            json!({"email": email, "password": "not the password"}),
        )
    };
    for email in ["ada@example.com", " Ada@Example.COM", "ADA@EXAMPLE.COM  "] {
        assert_ne!(
            login(email.to_owned()).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    assert_eq!(
        login("aDa@eXample.com".to_owned()).await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "every spelling of one address spends one budget"
    );

    // Strings that are no address cannot each open a budget of their own (nor a key the size of
    // the body): they share one.
    for n in 0..3 {
        let junk = format!("{n}{}", "x".repeat(16_000));
        assert_ne!(login(junk).await.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    let refused = login("not an address at all".to_owned()).await;
    problem(refused, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;
    assert_ne!(
        login("bob@example.com".to_owned()).await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "a real address keeps its own budget"
    );
}

#[tokio::test]
async fn two_instances_share_one_budget() {
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let overrides = limited(&[
        ("rate_limit_read_anonymous", json!("4/60")),
        ("redis_prefix", json!(prefix)),
    ]);
    let (a, b) = (
        TestApp::spawn_with(&overrides).await,
        TestApp::spawn_with(&overrides).await,
    );
    let mut allowed = 0;
    for n in 0..10 {
        let app = if n % 2 == 0 { &a } else { &b };
        if app.get_public("/v1/plans").await.status() == StatusCode::OK {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 4);
}

#[tokio::test]
async fn forwarded_for_counts_only_from_a_trusted_proxy() {
    let get_as = |app: &TestApp, client: &'static str| {
        app.client
            .get(app.url("/v1/plans"))
            .header("x-forwarded-for", client)
            .send()
    };
    let untrusting =
        TestApp::spawn_with(&limited(&[("rate_limit_read_anonymous", json!("2/60"))])).await;
    let mut statuses = Vec::new();
    for client in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        statuses.push(get_as(&untrusting, client).await.unwrap().status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ],
        "a header from an untrusted peer changes nothing"
    );

    let trusting = TestApp::spawn_with(&limited(&[
        ("rate_limit_read_anonymous", json!("2/60")),
        ("trusted_proxies", json!("127.0.0.1/32, ::1")),
    ]))
    .await;
    for client in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        for _ in 0..2 {
            let response = get_as(&trusting, client).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{client}");
        }
    }
    assert_eq!(
        get_as(&trusting, "203.0.113.1").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn cors_answers_allowed_origins_only() {
    let app = TestApp::spawn_with(&[("cors_origins", json!("https://shop.example.com"))]).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, app.url("/v1/orders"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type, idempotency-key",
            )
            .send()
    };
    let allowed = preflight("https://shop.example.com").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(
        header(&allowed, "access-control-allow-origin"),
        Some("https://shop.example.com")
    );
    let foreign = preflight("https://evil.example.net").await.unwrap();
    assert!(header(&foreign, "access-control-allow-origin").is_none());

    let simple = app
        .client
        .get(app.url("/v1/plans"))
        .header("origin", "https://shop.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&simple, "access-control-allow-origin"),
        Some("https://shop.example.com")
    );
    let exposed = header(&simple, "access-control-expose-headers").unwrap_or_default();
    assert!(exposed.to_ascii_lowercase().contains("etag"), "{exposed}");
}

#[tokio::test]
async fn a_request_past_the_timeout_is_abandoned_with_503() {
    let app = TestApp::spawn_with(&[
        ("request_timeout_ms", json!(100)),
        ("argon2_memory_kib", json!(65536)),
        ("argon2_iterations", json!(8)),
    ])
    .await;
    // Counted under its route, though its response never came back through the router.
    let abandoned = [
        ("method", "POST"),
        ("route", "/v1/auth/register"),
        ("status", "503"),
    ];
    let (_, before) = scrape(&app).await;
    let started = std::time::Instant::now();
    let response = app
        .post(
            "/v1/auth/register",
            json!({"email": "ada@example.com", "password": PASSWORD, "display_name": "Ada"}),
        )
        .await;
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert!(header(&response, "retry-after").is_some());
    assert!(header(&response, "x-request-id").is_some());
    problem(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
    )
    .await;
    let (_, after) = scrape(&app).await;
    assert_eq!(
        value(&after, "http_requests_total", &abandoned)
            - value(&before, "http_requests_total", &abandoned),
        1.0
    );
    assert_eq!(
        app.get_public("/health/live").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn beyond_the_in_flight_bound_requests_are_shed_with_503() {
    let app = TestApp::spawn_with(&[
        ("max_in_flight", json!(1)),
        ("argon2_memory_kib", json!(65536)),
        ("argon2_iterations", json!(6)),
    ])
    .await;
    let slow = app.post(
        "/v1/auth/register",
        json!({"email": "ada@example.com", "password": PASSWORD, "display_name": "Ada"}),
    );
    let quick = async {
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        app.get_public("/v1/plans").await
    };
    let (slow, quick) = tokio::join!(slow, quick);
    assert_eq!(slow.status(), StatusCode::CREATED);
    assert_eq!(header(&quick, "retry-after"), Some("1"));
    problem(
        quick,
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
    )
    .await;
    assert_eq!(app.get_public("/v1/plans").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn probes_are_answered_while_every_slot_is_taken() {
    let app = TestApp::spawn_with(&[
        ("max_in_flight", json!(1)),
        ("argon2_memory_kib", json!(65536)),
        ("argon2_iterations", json!(8)),
    ])
    .await;
    let slow = app.post(
        "/v1/auth/register",
        json!({"email": "ada@example.com", "password": PASSWORD, "display_name": "Ada"}),
    );
    let probes = async {
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let mut probes = Vec::new();
        for path in ["/health/live", "/health/ready", "/health", "/health/%6Cive"] {
            probes.push((path, app.get_public(path).await.status()));
        }
        // Still shed after the probes: they were answered while the slot was taken.
        let shed = app.get_public("/v1/plans").await.status();
        (shed, probes)
    };
    let (slow, (shed, probes)) = tokio::join!(slow, probes);
    assert_eq!(slow.status(), StatusCode::CREATED);
    assert_eq!(shed, StatusCode::SERVICE_UNAVAILABLE, "the slot was taken");
    for (path, status) in probes {
        assert_eq!(status, StatusCode::OK, "{path} was shed");
    }
}

#[tokio::test]
async fn large_bodies_are_compressed_and_small_ones_are_not() {
    let app = TestApp::spawn_with(&[("hsts_max_age_secs", json!(31536000))]).await;
    let admin = app.admin_token().await;
    for n in 0..20 {
        app.create_product(&admin, &format!("BIG-{n:03}"), 1000 + n, 1)
            .await;
    }
    let gzip = |path: &'static str| {
        app.client
            .get(app.url(path))
            .header("accept-encoding", "gzip")
            .send()
    };
    let big = gzip("/v1/products?limit=20").await.unwrap();
    assert_eq!(header(&big, "content-encoding"), Some("gzip"));
    let small = gzip("/health/live").await.unwrap();
    assert!(header(&small, "content-encoding").is_none());
    let brotli = app
        .client
        .get(app.url("/v1/products?limit=20"))
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&brotli, "content-encoding"), Some("br"));
    assert_eq!(
        header(&small, "strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
}
