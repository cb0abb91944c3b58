//! Forwarded-header chains: behind a trusted proxy the budget key is the first untrusted hop
//! from the right of `X-Forwarded-For`, and nothing a client writes to the left of it (garbage,
//! empty entries, a forged address, a padded chain, a second header kind) moves the key.
//!
//! Each case sends its headers from the trusted loopback proxy, then asks which budget that
//! spent: the `RateLimit-Remaining` of the next request counts one less only when both requests
//! share a key.

use serde_json::json;

use super::paths::send_raw;
use crate::api::helpers::TestApp;

/// Headers as sent by the trusted proxy.
type Headers = &'static [(&'static str, &'static str)];

/// `(headers sent, a client it must count as, a client it must not count as)`; a client is
/// written as the `X-Forwarded-For` our proxy would send for it, `""` for the proxy itself.
#[rustfmt::skip]
const CASES: &[(Headers, &str, &str)] = &[
    (&[("x-forwarded-for", "198.51.100.1, -, 203.0.113.1")], "203.0.113.1", "198.51.100.1"),
    (&[("x-forwarded-for", "198.51.100.2, unknown, 203.0.113.2")], "203.0.113.2", "198.51.100.2"),
    (&[("x-forwarded-for", "198.51.100.3,,203.0.113.3")], "203.0.113.3", "198.51.100.3"),
    (&[("x-forwarded-for", "198.51.100.4, 203.0.113.4, 10.0.0.4")], "203.0.113.4", "198.51.100.4"),
    (&[("x-forwarded-for", "198.51.100.5, -, 10.0.0.5")], "10.0.0.5", "198.51.100.5"),
    (&[("x-forwarded-for", "198.51.100.6, 203.0.113.6:51234")], "203.0.113.6", "198.51.100.6"),
    (&[("x-forwarded-for", " 198.51.100.7 ,  203.0.113.7 ")], "203.0.113.7", "198.51.100.7"),
    (&[("x-forwarded-for", "198.51.100.8"), ("x-forwarded-for", "203.0.113.8")], "203.0.113.8", "198.51.100.8"),
    (&[("x-forwarded-for", "2001:db8:9::1")], "2001:db8:9::ffff", "2001:db8:a::1"),
    (&[("x-forwarded-for", "198.51.100.11, [2001:db8:b::1]:443")], "2001:db8:b:0:1::", "198.51.100.11"),
    (&[("x-forwarded-for", "::ffff:203.0.113.12")], "203.0.113.12", "198.51.100.12"),
    (&[("x-forwarded-for", "garbage")], "", "198.51.100.13"),
    (&[("x-forwarded-for", "")], "", "198.51.100.14"),
    (&[("x-forwarded-for", "198.51.100.15 203.0.113.15")], "", "198.51.100.15"),
    (&[("forwarded", "for=198.51.100.16")], "", "198.51.100.16"),
    (&[("forwarded", "for=\"[2001:db8:10::1]\""), ("x-forwarded-for", "203.0.113.17")], "203.0.113.17", "2001:db8:10::1"),
    (&[("x-real-ip", "198.51.100.18")], "", "198.51.100.18"),
];

async fn trusting_app() -> TestApp {
    TestApp::spawn_with(&[
        ("rate_limit_enabled", json!(true)),
        ("trusted_proxies", json!("127.0.0.1/32, ::1, 10.0.0.0/8")),
        ("rate_limit_read_anonymous", json!("100000/600")),
    ])
    .await
}

/// The `RateLimit-Remaining` of one anonymous read sent with `headers`.
async fn remaining(app: &TestApp, headers: &[(&str, &str)]) -> u64 {
    let answer = send_raw(app, "GET", "/v1/plans", headers).await;
    assert_eq!(answer.status, 200, "{headers:?}: {answer:?}");
    answer
        .head
        .lines()
        .find_map(|line| line.strip_prefix("ratelimit-remaining: "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{headers:?}: no RateLimit-Remaining in {answer:?}"))
}

async fn remaining_as(app: &TestApp, client: &str) -> u64 {
    if client.is_empty() {
        remaining(app, &[]).await
    } else {
        remaining(app, &[("x-forwarded-for", client)]).await
    }
}

async fn assert_counts_as(app: &TestApp, headers: &[(&str, &str)], client: &str, not: &str) {
    let spent = remaining(app, headers).await;
    assert_eq!(
        remaining_as(app, client).await,
        spent - 1,
        "{headers:?} must count as {client:?}"
    );
    let other = remaining_as(app, not).await;
    assert_ne!(other, spent - 2, "{headers:?} must not count as {not:?}");
}

#[tokio::test]
async fn the_budget_key_is_the_first_untrusted_hop_from_the_right() {
    let app = trusting_app().await;
    for (headers, client, not) in CASES {
        assert_counts_as(&app, headers, client, not).await;
    }
}

#[tokio::test]
async fn a_chain_padded_with_trusted_hops_or_too_long_for_a_header_moves_nothing() {
    let app = trusting_app().await;
    let padded = format!("198.51.100.30, {}", vec!["10.0.0.30"; 200].join(", "));
    assert_counts_as(
        &app,
        &[("x-forwarded-for", padded.as_str())],
        "10.0.0.30",
        "198.51.100.30",
    )
    .await;

    let huge = format!("{}203.0.113.31", "198.51.100.31, ".repeat(4_000));
    let answer = send_raw(
        &app,
        "GET",
        "/v1/plans",
        &[("x-forwarded-for", huge.as_str())],
    )
    .await;
    assert!(
        answer.status == 200 || answer.status == 431 || answer.status == 400,
        "an oversized header is served or refused cleanly, never a 5xx: {answer:?}"
    );
}
