//! Register, login, refresh rotation, logout, and every way a token is refused.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api::helpers::{JWT_SECRET, PASSWORD, TestApp, access, fields, problem};

#[tokio::test]
async fn registration_returns_the_user_and_working_tokens() {
    let app = TestApp::spawn().await;
    let response = app
        .post(
            "/v1/auth/register",
            json!({"email": " Ada@Example.com ", "password": PASSWORD, "display_name": "Ada"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["user"]["email"], "ada@example.com");
    assert_eq!(body["user"]["role"], "customer");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert!(
        body["refresh_token"]
            .as_str()
            .is_some_and(|t| t.len() == 43)
    );
    assert!(body["user"].get("password_hash").is_none());
    assert_eq!(
        location,
        Some(format!(
            "/v1/users/{}",
            body["user"]["id"].as_str().expect("id")
        ))
    );
    let id = body["user"]["id"].as_str().expect("id");
    assert_eq!(
        uuid::Uuid::parse_str(id).expect("uuid").get_version_num(),
        7
    );

    let me = app.get("/v1/users/me", &access(&body)).await;
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(
        me.json::<Value>().await.expect("json")["id"],
        body["user"]["id"]
    );
}

#[tokio::test]
async fn a_duplicate_email_in_another_case_is_email_taken() {
    let app = TestApp::spawn().await;
    app.register("ada@example.com").await;
    let response = app
        .post(
            "/v1/auth/register",
            json!({"email": "ADA@example.COM", "password": PASSWORD, "display_name": "Ada"}),
        )
        .await;
    problem(response, StatusCode::CONFLICT, "EMAIL_TAKEN").await;
}

#[tokio::test]
async fn registration_lists_every_invalid_field() {
    let app = TestApp::spawn().await;
    let response = app
        .post(
            "/v1/auth/register",
            json!({"email": "not-an-email", "password": "short", "display_name": ""}),
        )
        .await;
    let body = problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(fields(&body), ["email", "display_name", "password"]);

    let long = "x".repeat(129);
    let response = app
        .post(
            "/v1/auth/register",
            json!({"email": "ok@example.com", "password": long, "display_name": "Ok"}),
        )
        .await;
    let body = problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(body["errors"][0]["code"], "too_long");

    let response = app.post("/v1/auth/register", json!({})).await;
    let body = problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(fields(&body), ["email", "display_name", "password"]);
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_get_the_same_answer() {
    let app = TestApp::spawn().await;
    app.register("ada@example.com").await;
    let wrong = app
        .post(
            "/v1/auth/login",
            json!({"email": "ada@example.com", "password": "wrong password"}),
        )
        .await;
    assert!(wrong.headers().get("www-authenticate").is_some());
    let wrong = problem(wrong, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
    let unknown = app
        .post(
            "/v1/auth/login",
            json!({"email": "nobody@example.com", "password": "wrong password"}),
        )
        .await;
    let unknown = problem(unknown, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
    assert_eq!(wrong["detail"], unknown["detail"]);
}

#[tokio::test]
async fn login_accepts_the_email_in_any_case() {
    let app = TestApp::spawn().await;
    app.register("ada@example.com").await;
    let body = app.login("ADA@EXAMPLE.COM").await;
    assert!(body["access_token"].is_string());
}

#[tokio::test]
async fn refresh_rotates_and_reusing_a_rotated_token_revokes_the_family() {
    let app = TestApp::spawn().await;
    let first = app.register("ada@example.com").await;
    let original = first["refresh_token"].as_str().expect("token").to_owned();

    let rotated = app
        .post("/v1/auth/refresh", json!({"refresh_token": original}))
        .await;
    assert_eq!(rotated.status(), StatusCode::OK);
    let rotated: Value = rotated.json().await.expect("json");
    let successor = rotated["refresh_token"].as_str().expect("token").to_owned();
    assert_ne!(successor, original);
    assert_eq!(
        app.get("/v1/users/me", &access(&rotated)).await.status(),
        StatusCode::OK
    );

    let replay = app
        .post("/v1/auth/refresh", json!({"refresh_token": original}))
        .await;
    problem(replay, StatusCode::UNAUTHORIZED, "TOKEN_REVOKED").await;
    let after_reuse = app
        .post("/v1/auth/refresh", json!({"refresh_token": successor}))
        .await;
    problem(after_reuse, StatusCode::UNAUTHORIZED, "TOKEN_REVOKED").await;

    let unknown = app
        .post("/v1/auth/refresh", json!({"refresh_token": "never-issued"}))
        .await;
    problem(unknown, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
}

#[tokio::test]
async fn logout_revokes_the_access_token_and_the_session() {
    let app = TestApp::spawn().await;
    let body = app.register("ada@example.com").await;
    let token = access(&body);
    let logout = app
        .request(Method::POST, "/v1/auth/logout", Some(&token), None)
        .await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    problem(
        app.get("/v1/users/me", &token).await,
        StatusCode::UNAUTHORIZED,
        "TOKEN_REVOKED",
    )
    .await;
    let refresh = app
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": body["refresh_token"]}),
        )
        .await;
    problem(refresh, StatusCode::UNAUTHORIZED, "TOKEN_REVOKED").await;

    // Another session of the same user is untouched.
    let other = app.login("ada@example.com").await;
    assert_eq!(
        app.get("/v1/users/me", &access(&other)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_refresh_or_login_body_missing_its_fields_is_422_naming_each_of_them() {
    let app = TestApp::spawn().await;
    for (path, body, expected) in [
        ("/v1/auth/refresh", json!({}), vec!["refresh_token"]),
        (
            "/v1/auth/refresh",
            json!({"refresh_token": ""}),
            vec!["refresh_token"],
        ),
        ("/v1/auth/login", json!({}), vec!["email", "password"]),
    ] {
        let refused = problem(
            app.post(path, body.clone()).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        assert_eq!(fields(&refused), expected, "{path} {body}");
        assert!(
            refused["errors"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["code"] == "required"),
            "{refused}"
        );
    }
}

#[tokio::test]
async fn logout_takes_no_body_and_an_empty_one_does_not_change_that() {
    let app = TestApp::spawn().await;
    let token = access(&app.register("ada@example.com").await);
    let logout = app
        .request(
            Method::POST,
            "/v1/auth/logout",
            Some(&token),
            Some(json!({})),
        )
        .await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    problem(
        app.request(Method::POST, "/v1/auth/logout", None, Some(json!({})))
            .await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
    )
    .await;
}

fn sign(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("signed")
}

fn claims_for(body: &Value, exp_offset_secs: i64) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "sub": body["user"]["id"], "role": "customer", "jti": uuid::Uuid::now_v7(), "sid": uuid::Uuid::now_v7(),
        "iat": now - 3600, "exp": now + exp_offset_secs, "iss": "strata", "aud": "strata-api",
    })
}

#[tokio::test]
async fn expired_tampered_foreign_and_alg_none_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let body = app.register("ada@example.com").await;

    let expired = sign(&claims_for(&body, -600), JWT_SECRET.as_bytes());
    problem(
        app.get("/v1/users/me", &expired).await,
        StatusCode::UNAUTHORIZED,
        "TOKEN_EXPIRED",
    )
    .await;

    let foreign = sign(
        &claims_for(&body, 600),
        b"some-other-secret-some-other-secret!",
    );
    problem(
        app.get("/v1/users/me", &foreign).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
    )
    .await;

    let wrong_audience = {
        let mut claims = claims_for(&body, 600);
        claims["aud"] = "another-api".into();
        sign(&claims, JWT_SECRET.as_bytes())
    };
    problem(
        app.get("/v1/users/me", &wrong_audience).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
    )
    .await;

    let genuine = access(&body);
    let mut parts: Vec<String> = genuine.split('.').map(str::to_owned).collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).expect("b64")).expect("json");
    claims["role"] = "admin".into();
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("json"));
    let tampered = parts.join(".");
    problem(
        app.get("/v1/users/me", &tampered).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
    )
    .await;

    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let alg_none = format!("{none_header}.{}.", parts[1]);
    problem(
        app.get("/v1/users/me", &alg_none).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
    )
    .await;

    let missing = app.request(Method::GET, "/v1/users/me", None, None).await;
    problem(missing, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
}

#[tokio::test]
async fn an_overloaded_hashing_pool_sheds_load_with_503_and_retry_after() {
    let app = TestApp::spawn_with(&[
        ("argon2_memory_kib", json!(65536)),
        ("argon2_iterations", json!(3)),
        ("hash_concurrency", json!(1)),
        ("hash_queue_timeout_ms", json!(1)),
    ])
    .await;
    let attempts: Vec<_> = (0..6).map(|i| {
        let client = app.client.clone();
        let url = app.url("/v1/auth/register");
        tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({"email": format!("user{i}@example.com"), "password": PASSWORD, "display_name": "U"}))
                .send()
                .await
                .expect("sent")
        })
    }).collect();
    let mut shed = 0;
    let mut created = 0;
    for attempt in attempts {
        let response = attempt.await.expect("task");
        match response.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(response.headers().get("retry-after").is_some());
                problem(
                    response,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "SERVICE_UNAVAILABLE",
                )
                .await;
                shed += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(created >= 1, "the pool still serves");
    assert!(
        shed >= 1,
        "beyond the bound callers are shed, not queued (created {created})"
    );
}
