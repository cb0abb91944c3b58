//! The caller's profile and the admin's user list.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api::helpers::{PASSWORD, TestApp, access, fields, problem};

#[tokio::test]
async fn the_profile_carries_an_etag_and_answers_if_none_match_with_304() {
    let app = TestApp::spawn().await;
    let token = access(&app.register("ada@example.com").await);
    let first = app.get("/v1/users/me", &token).await;
    assert_eq!(first.status(), StatusCode::OK);
    let etag = first
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("etag")
        .to_owned();
    let cached = app
        .client
        .get(app.url("/v1/users/me"))
        .bearer_auth(&token)
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("sent");
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn a_profile_update_is_visible_at_once_despite_the_cache() {
    let app = TestApp::spawn().await;
    let token = access(&app.register("ada@example.com").await);
    assert_eq!(
        app.get("/v1/users/me", &token)
            .await
            .json::<Value>()
            .await
            .expect("json")["display_name"],
        "Test User"
    );
    let patched = app
        .request(
            Method::PATCH,
            "/v1/users/me",
            Some(&token),
            Some(json!({"display_name": "  Countess  "})),
        )
        .await;
    assert_eq!(patched.status(), StatusCode::OK);
    let me: Value = app
        .get("/v1/users/me", &token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(me["display_name"], "Countess");
}

#[tokio::test]
async fn a_password_change_needs_the_current_password_and_the_new_one_works() {
    let app = TestApp::spawn().await;
    let token = access(&app.register("ada@example.com").await);
    let without = app
        .request(
            Method::PATCH,
            "/v1/users/me",
            Some(&token),
            Some(json!({"password": "a new password"})),
        )
        .await;
    let body = problem(
        without,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(fields(&body), ["current_password"]);

    let changed = app
        .request(
            Method::PATCH,
            "/v1/users/me",
            Some(&token),
            Some(json!({"password": "a new password", "current_password": PASSWORD})),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::OK);
    let old = app
        .post(
            "/v1/auth/login",
            json!({"email": "ada@example.com", "password": PASSWORD}),
        )
        .await;
    problem(old, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
    let new = app
        .post(
            "/v1/auth/login",
            json!({"email": "ada@example.com", "password": "a new password"}),
        )
        .await;
    assert_eq!(new.status(), StatusCode::OK);
}

#[tokio::test]
async fn customers_cannot_list_or_read_other_users() {
    let app = TestApp::spawn().await;
    let token = access(&app.register("ada@example.com").await);
    problem(
        app.get("/v1/users", &token).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    let other = app.register("bob@example.com").await;
    let path = format!("/v1/users/{}", other["user"]["id"].as_str().expect("id"));
    problem(
        app.get(&path, &token).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
}

#[tokio::test]
async fn an_admin_pages_through_every_user_exactly_once() {
    let app = TestApp::spawn().await;
    for i in 0..6 {
        app.register(&format!("user{i}@example.com")).await;
    }
    let admin = app.admin_token().await;
    let mut seen = Vec::new();
    let mut path = "/v1/users?limit=4".to_owned();
    loop {
        let page: Value = app.get(&path, &admin).await.json().await.expect("json");
        for item in page["items"].as_array().expect("items") {
            seen.push(item["email"].as_str().expect("email").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/users?limit=4&cursor={cursor}"),
            None => break,
        }
    }
    let mut expected: Vec<String> = (0..6).map(|i| format!("user{i}@example.com")).collect();
    expected.push("root@example.com".into());
    assert_eq!(seen, expected, "oldest first, each once");
}

#[tokio::test]
async fn bad_list_parameters_are_named() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let response = app.get("/v1/users?limit=abc&cursor=forged", &admin).await;
    let body = problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(fields(&body), ["limit", "cursor"]);
    let response = app.get("/v1/users?limit=101", &admin).await;
    problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
}

#[tokio::test]
async fn an_admin_reads_a_user_by_id_and_unknown_ids_are_404() {
    let app = TestApp::spawn().await;
    let other = app.register("bob@example.com").await;
    let admin = app.admin_token().await;
    let path = format!("/v1/users/{}", other["user"]["id"].as_str().expect("id"));
    let found: Value = app.get(&path, &admin).await.json().await.expect("json");
    assert_eq!(found["email"], "bob@example.com");
    let unknown = format!("/v1/users/{}", uuid::Uuid::now_v7());
    problem(
        app.get(&unknown, &admin).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    problem(
        app.get("/v1/users/not-a-uuid", &admin).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
}

#[tokio::test]
async fn a_profile_patch_must_change_something_and_null_is_not_a_value() {
    let app = TestApp::spawn().await;
    let token = access(&app.register("ada@example.com").await);
    let patch = |body: Value| app.request(Method::PATCH, "/v1/users/me", Some(&token), Some(body));
    for body in [
        json!({}),
        json!({"current_password": PASSWORD}),
        json!({"display_name": "Countess", "current_password": ""}),
    ] {
        problem(
            patch(body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
    }
    for (body, field) in [
        (json!({"display_name": null}), "display_name"),
        (
            json!({"display_name": "Countess", "password": null}),
            "password",
        ),
        (
            json!({"display_name": "Countess", "current_password": null}),
            "current_password",
        ),
    ] {
        let refused = problem(
            patch(body.clone()).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        assert_eq!(fields(&refused), [field], "{body}");
        assert_eq!(refused["errors"][0]["code"], "invalid_type", "{body}");
    }
    let me: Value = app.get("/v1/users/me", &token).await.json().await.unwrap();
    assert_eq!(me["display_name"], "Test User");
}

/// Two devices of one user: the phone ends the laptop's session; the laptop's access token is
/// refused at once and its refresh token no longer works, while the phone goes on. Ids that are
/// not the caller's live sessions (another user's, unknown, malformed, already ended) are 404.
#[tokio::test]
async fn a_user_lists_their_sessions_and_ends_one_everywhere_at_once() {
    let app = TestApp::spawn().await;
    let laptop = app.register("ada@example.com").await;
    let phone = app.login("ada@example.com").await;
    let (laptop_token, phone_token) = (access(&laptop), access(&phone));
    let listed = app.get("/v1/users/me/sessions", &phone_token).await;
    assert_eq!(listed.status(), StatusCode::OK);
    assert_eq!(
        listed
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let page: Value = listed.json().await.expect("json");
    let sessions = page["items"].as_array().expect("items").clone();
    assert_eq!(sessions.len(), 2, "{page}");
    assert_eq!(page["next_cursor"], Value::Null);
    // The phone signed in last: listed first, and current for its own token.
    assert_eq!(sessions[0]["current"], true);
    assert_eq!(sessions[1]["current"], false);
    let laptop_session = sessions[1]["id"].as_str().expect("id").to_owned();

    // One per page: the cursor leads to the laptop's session, then nothing.
    let first: Value = app
        .get("/v1/users/me/sessions?limit=1", &phone_token)
        .await
        .json()
        .await
        .expect("json");
    let cursor = first["next_cursor"].as_str().expect("a cursor").to_owned();
    let second: Value = app
        .get(
            &format!("/v1/users/me/sessions?limit=1&cursor={cursor}"),
            &phone_token,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(second["items"][0]["id"], laptop_session.as_str());
    assert_eq!(second["next_cursor"], Value::Null);

    // Someone else cannot end it, nor tell it from an unknown id.
    let eve = access(&app.register("eve@example.com").await);
    let path = format!("/v1/users/me/sessions/{laptop_session}");
    let foreign = app.request(Method::DELETE, &path, Some(&eve), None).await;
    let foreign = problem(foreign, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    assert_eq!(foreign["detail"], "no such session");
    assert_eq!(
        app.get("/v1/users/me", &laptop_token).await.status(),
        StatusCode::OK
    );

    let ended = app
        .request(Method::DELETE, &path, Some(&phone_token), None)
        .await;
    assert_eq!(ended.status(), StatusCode::NO_CONTENT);
    // At once, on the next request: no waiting for the access token to expire.
    problem(
        app.get("/v1/users/me", &laptop_token).await,
        StatusCode::UNAUTHORIZED,
        "TOKEN_REVOKED",
    )
    .await;
    let refreshed = app
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": laptop["refresh_token"]}),
        )
        .await;
    assert_eq!(refreshed.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get("/v1/users/me", &phone_token).await.status(),
        StatusCode::OK
    );
    let left: Value = app
        .get("/v1/users/me/sessions", &phone_token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(left["items"].as_array().map(Vec::len), Some(1), "{left}");

    for gone in [
        path.clone(),
        format!("/v1/users/me/sessions/{}", uuid::Uuid::now_v7()),
        "/v1/users/me/sessions/not-a-uuid".to_owned(),
    ] {
        let answer = app
            .request(Method::DELETE, &gone, Some(&phone_token), None)
            .await;
        problem(answer, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    }
    // Ending the current session signs this client out too.
    let current = left["items"][0]["id"].as_str().expect("id").to_owned();
    let own = app
        .request(
            Method::DELETE,
            &format!("/v1/users/me/sessions/{current}"),
            Some(&phone_token),
            None,
        )
        .await;
    assert_eq!(own.status(), StatusCode::NO_CONTENT);
    problem(
        app.get("/v1/users/me/sessions", &phone_token).await,
        StatusCode::UNAUTHORIZED,
        "TOKEN_REVOKED",
    )
    .await;
}
