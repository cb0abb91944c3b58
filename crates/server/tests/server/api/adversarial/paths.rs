//! Path spellings × route groups: a budget is spent on the route the router matched, whatever the
//! spelling of the request line, and a spelling the router does not match is a 404 that spends a
//! budget too.
//!
//! Requests go over a raw TCP connection: an HTTP client library would normalise the very
//! spellings under test (dot segments, percent-encodings) before sending them.

use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api::helpers::TestApp;

/// Spellings the router reads as a route: `(method, route as documented, spelling)`. Each must
/// reach the route (not 404) and share its budget.
#[rustfmt::skip]
const SAME_ROUTE: &[(&str, &str, &str)] = &[
    ("POST", "/v1/auth/login", "/%761/auth/login"),
    ("POST", "/v1/auth/login", "/v1/%61uth/login"),
    ("POST", "/v1/auth/login", "/%76%31/%61%75%74%68/%6c%6f%67%69%6e"),
    ("POST", "/v1/auth/login", "/v1/auth/%6C%6F%67%69%6E"),
    ("POST", "/v1/auth/register", "/v1/auth/regist%65r"),
    ("POST", "/v1/auth/refresh", "/v1/auth/r%65fresh"),
    ("GET", "/v1/plans", "/v1/%70lans"),
    ("GET", "/v1/products", "/%761/products"),
    ("HEAD", "/v1/products", "/v1/pr%6Fducts"),
    ("POST", "/v1/orders", "/v1/%6Frders"),
    ("GET", "/v1/orders", "/v1/orde%72s"),
    ("PATCH", "/v1/users/me", "/v1/users/%6De"),
    ("POST", "/v1/auth/logout", "/v1/auth/l%6Fgout"),
    ("DELETE", "/v1/products/00000000-0000-0000-0000-000000000001", "/v1/products/%30%30000000-0000-0000-0000-000000000001"),
];

/// Spellings the router does not match: `(method, spelling)`. Each is a 404 problem and spends the
/// budget of the group its method and prefix put it in, so probing for routes is not free.
const NOT_A_ROUTE: &[(&str, &str)] = &[
    ("POST", "/v1/auth/login/"),
    ("POST", "/v1//auth/login"),
    ("POST", "/v1/auth//login"),
    ("POST", "/v1/auth/./login"),
    ("POST", "/v1/x/../auth/login"),
    ("POST", "/v1/auth%2Flogin"),
    ("POST", "/v1/auth%2flogin"),
    ("POST", "/V1/auth/login"),
    ("POST", "/v1/AUTH/login"),
    ("POST", "/v1/auth/Login"),
    ("POST", "/v1/auth/login%20"),
    ("POST", "/v1/auth/login;x=1"),
    ("GET", "/v1/products/"),
    ("GET", "/v1//products"),
    ("GET", "/v1/./products"),
    ("GET", "/V1/products"),
    ("GET", "/v1/PRODUCTS"),
    ("GET", "/nowhere"),
    ("GET", "/%6Detrics%2F"),
];

/// The budget of every group in these tests.
const LIMIT: usize = 3;

/// A client address per case (the app trusts the loopback proxy), so that cases do not share
/// budgets.
fn next_client() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    format!("198.51.{}.{}", 100 + n / 250, n % 250 + 1)
}

async fn limited_app() -> TestApp {
    TestApp::spawn_with(&[
        ("rate_limit_enabled", json!(true)),
        ("trusted_proxies", json!("127.0.0.1/32, ::1")),
        ("rate_limit_read_anonymous", json!(format!("{LIMIT}/600"))),
        ("rate_limit_write_anonymous", json!(format!("{LIMIT}/600"))),
        ("rate_limit_auth_ip", json!(format!("{LIMIT}/600"))),
        ("rate_limit_auth_email", json!("1000/600")),
    ])
    .await
}

/// A response read off the wire.
#[derive(Debug)]
pub struct Raw {
    /// The status code.
    pub status: u16,
    /// The header block, lower-cased.
    pub head: String,
    /// The body (problem+json or JSON), or `Value::Null`.
    pub body: Value,
}

/// Sends one request with `target` exactly as written on the request line.
pub async fn send_raw(app: &TestApp, method: &str, target: &str, headers: &[(&str, &str)]) -> Raw {
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let body = if matches!(method, "POST" | "PATCH" | "PUT") {
        "{}"
    } else {
        ""
    };
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        request.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut response),
    )
    .await
    .expect("the server answers and closes")
    .unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    Raw {
        status,
        head: head.to_ascii_lowercase(),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}

async fn send_as(app: &TestApp, client: &str, method: &str, target: &str) -> Raw {
    send_raw(app, method, target, &[("x-forwarded-for", client)]).await
}

#[tokio::test]
async fn every_spelling_of_a_route_reaches_it_and_spends_its_budget() {
    let app = limited_app().await;
    for (method, route, spelling) in SAME_ROUTE {
        let case = format!("{method} {spelling} (as {route})");
        let fresh = send_as(&app, &next_client(), method, spelling).await;
        assert!(
            ![404, 429].contains(&fresh.status),
            "{case}: the router reached no route ({})",
            fresh.status
        );

        let client = next_client();
        for _ in 0..LIMIT {
            let answer = send_as(&app, &client, method, route).await;
            assert_ne!(answer.status, 429, "{case}: the documented spelling");
        }
        let spelled = send_as(&app, &client, method, spelling).await;
        assert_eq!(
            spelled.status, 429,
            "{case}: another spelling got a fresh budget"
        );

        let client = next_client();
        for _ in 0..LIMIT {
            send_as(&app, &client, method, spelling).await;
        }
        let plain = send_as(&app, &client, method, route).await;
        assert_eq!(plain.status, 429, "{case}: the spelling spent no budget");
    }
}

#[tokio::test]
async fn a_spelling_the_router_does_not_match_is_404_and_spends_a_budget() {
    let app = limited_app().await;
    for (method, spelling) in NOT_A_ROUTE {
        let case = format!("{method} {spelling}");
        let client = next_client();
        for _ in 0..LIMIT {
            let answer = send_as(&app, &client, method, spelling).await;
            assert_eq!(answer.status, 404, "{case}: {answer:?}");
            assert_eq!(answer.body["code"], "NOT_FOUND", "{case}: {answer:?}");
            assert!(
                answer
                    .head
                    .contains("content-type: application/problem+json"),
                "{case}: {answer:?}"
            );
        }
        let refused = send_as(&app, &client, method, spelling).await;
        assert_eq!(refused.status, 429, "{case}: unmatched paths are free");
    }
}

#[tokio::test]
async fn probes_and_operator_pages_are_free_in_every_spelling() {
    let app = limited_app().await;
    let client = next_client();
    for target in [
        "/health/live",
        "/health/%6Cive",
        "/%68ealth/ready",
        "/health",
        "/%68ealth",
        "/openapi.json",
        "/%6Fpenapi.json",
    ] {
        for _ in 0..=LIMIT {
            let answer = send_as(&app, &client, "GET", target).await;
            assert_eq!(answer.status, 200, "GET {target}: {answer:?}");
            assert!(!answer.head.contains("ratelimit-limit"), "GET {target}");
        }
    }
}
