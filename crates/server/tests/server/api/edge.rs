//! The edge every endpoint shares: body handling, unknown routes, request ids, headers.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::api::helpers::{TestApp, fields, problem};

#[tokio::test]
async fn malformed_json_is_400() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(app.url("/v1/auth/login"))
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .expect("sent");
    problem(response, StatusCode::BAD_REQUEST, "MALFORMED_JSON").await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(app.url("/v1/auth/login"))
        .header("content-type", "text/plain")
        .body("email=a")
        .send()
        .await
        .expect("sent");
    problem(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    .await;
    let no_type = app
        .client
        .post(app.url("/v1/auth/login"))
        .body("{}")
        .send()
        .await
        .expect("sent");
    problem(
        no_type,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    .await;
}

#[tokio::test]
async fn a_body_over_64_kib_is_413() {
    let app = TestApp::spawn().await;
    let huge = json!({"email": "a@example.com", "password": "x".repeat(70 * 1024)});
    problem(
        app.post("/v1/auth/login", huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
    )
    .await;
}

#[tokio::test]
async fn a_value_of_the_wrong_type_names_its_field() {
    let app = TestApp::spawn().await;
    let response = app
        .post(
            "/v1/auth/register",
            json!({"email": 42, "password": "x", "display_name": "y"}),
        )
        .await;
    let body = problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(fields(&body), ["email"]);
    assert_eq!(body["errors"][0]["code"], "invalid_type");
}

#[tokio::test]
async fn an_unknown_field_is_refused_by_name_rather_than_ignored() {
    let app = TestApp::spawn().await;
    let body = app.register("ada@example.com").await;
    let token = body["access_token"].as_str().expect("token").to_owned();
    let response = app
        .request(
            Method::PATCH,
            "/v1/users/me",
            Some(&token),
            Some(json!({"email": "new@example.com", "display_name": "A"})),
        )
        .await;
    let problem_body = problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(fields(&problem_body), ["email"]);
    assert_eq!(problem_body["errors"][0]["code"], "unknown_field");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems_too() {
    let app = TestApp::spawn().await;
    let unknown = app.request(Method::GET, "/v1/nowhere", None, None).await;
    problem(unknown, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let wrong_method = app
        .request(Method::DELETE, "/v1/auth/login", None, None)
        .await;
    problem(
        wrong_method,
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
    )
    .await;
}

#[tokio::test]
async fn a_well_formed_request_id_is_echoed_and_a_missing_one_generated() {
    let app = TestApp::spawn().await;
    let given = app
        .client
        .get(app.url("/health/live"))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .expect("sent");
    assert_eq!(
        given
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("trace-abc-123")
    );
    let generated = app.get_public("/health/live").await;
    let id = generated
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("generated");
    assert!(uuid::Uuid::parse_str(id).is_ok());
    let hostile = app
        .client
        .get(app.url("/health/live"))
        .header("x-request-id", "<script>")
        .send()
        .await
        .expect("sent");
    assert_ne!(
        hostile
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("<script>")
    );
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = TestApp::spawn().await;
    for response in [
        app.get_public("/health/live").await,
        app.request(Method::GET, "/v1/nowhere", None, None).await,
    ] {
        let headers = response.headers();
        assert_eq!(
            headers
                .get("x-content-type-options")
                .and_then(|v| v.to_str().ok()),
            Some("nosniff")
        );
        assert_eq!(
            headers.get("x-frame-options").and_then(|v| v.to_str().ok()),
            Some("DENY")
        );
        assert_eq!(
            headers.get("referrer-policy").and_then(|v| v.to_str().ok()),
            Some("no-referrer")
        );
        assert!(headers.get("content-security-policy").is_some());
    }
}

#[tokio::test]
async fn every_problem_type_uri_resolves_to_its_page() {
    let app = TestApp::spawn().await;
    // The `type` of a real error leads to a page about it.
    let missing = app.get_public("/v1/products/not-a-uuid").await;
    let body: serde_json::Value = missing.json().await.unwrap();
    let page = app.get_public(body["type"].as_str().unwrap()).await;
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().await.unwrap().contains("NOT_FOUND"));

    for code in strata_http::ProblemCode::ALL {
        let json: serde_json::Value = app
            .client
            .get(app.url(&code.type_uri()))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(json["code"], code.as_str());
        assert_eq!(json["status"], code.status().as_u16());
        assert_eq!(json["title"], code.describe().2);
        assert_eq!(json["type"], code.type_uri());
    }
    let unknown = app.get_public("/problems/no-such-problem").await;
    assert_eq!(unknown.status(), reqwest::StatusCode::NOT_FOUND);
}

/// A concrete path for a documented template: every `{param}` gets a plausible value (routing
/// decides 405 before any handler looks at it).
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|segment| match segment {
            "{file}" => "swagger-ui.css",
            "{code}" => "not-found",
            s if s.starts_with('{') => "0193a5b2-1f00-7c3e-8d2a-5b6c7d8e9f01",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The methods of an `Allow` header value.
fn allowed(response: &reqwest::Response) -> std::collections::BTreeSet<String> {
    response
        .headers()
        .get_all("allow")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|method| method.trim().to_owned())
        .filter(|method| !method.is_empty())
        .collect()
}

#[tokio::test]
async fn every_documented_path_answers_another_method_with_405_and_allow_naming_its_methods() {
    let app = TestApp::spawn().await;
    let document: serde_json::Value = app.get_json("/openapi.json").await;
    let candidates = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
    ];
    let mut checked = 0;
    for (template, item) in document["paths"].as_object().expect("paths") {
        let documented: std::collections::BTreeSet<String> = item
            .as_object()
            .expect("path item")
            .keys()
            .map(|key| key.to_uppercase())
            .filter(|key| candidates.iter().any(|m| m.as_str() == key))
            .collect();
        let path = concrete(template);
        for method in &candidates {
            if documented.contains(method.as_str()) {
                continue;
            }
            let response = app
                .client
                .request(method.clone(), app.url(&path))
                .send()
                .await
                .expect("sent");
            assert_eq!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {template}"
            );
            assert_eq!(
                allowed(&response),
                documented,
                "Allow of {method} {template}"
            );
            if *method == Method::HEAD {
                // No body to a HEAD, but the same representation metadata.
                assert_eq!(
                    response.headers()["content-type"],
                    "application/problem+json",
                    "HEAD {template}"
                );
            } else {
                problem(
                    response,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "METHOD_NOT_ALLOWED",
                )
                .await;
            }
            checked += 1;
        }
    }
    assert!(
        checked > 100,
        "only {checked} method and path pairs checked"
    );
}
