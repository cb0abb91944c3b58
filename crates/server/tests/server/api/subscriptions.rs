//! Plans, subscriptions, plan changes and invoices over HTTP.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api::helpers::{TestApp, access, fields, problem};

async fn subscribe(app: &TestApp, token: &str, plan: &str, key: Option<&str>) -> reqwest::Response {
    app.post_keyed("/v1/subscriptions", token, json!({"plan_code": plan}), key)
        .await
}

#[tokio::test]
async fn the_three_plans_are_on_offer_with_an_etag() {
    let app = TestApp::spawn().await;
    let response = app.get_public("/v1/plans").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("etag"));
    let body: Value = response.json().await.unwrap();
    let codes: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["basic-monthly", "pro-monthly", "pro-yearly"]);
    assert_eq!(body["items"][2]["interval"], "year");
    assert_eq!(body["items"][0]["price"]["currency"], "USD");
    assert_eq!(body["next_cursor"], Value::Null, "one page holds them all");
}

#[tokio::test]
async fn the_plans_are_a_page_like_every_list() {
    let app = TestApp::spawn().await;
    let first = app.get_json("/v1/plans?limit=2").await;
    let codes = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["code"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(codes(&first), ["basic-monthly", "pro-monthly"]);
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let second = app
        .get_json(&format!("/v1/plans?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(codes(&second), ["pro-yearly"]);
    assert_eq!(second["next_cursor"], Value::Null);

    for bad in ["limit=0", "limit=101", "cursor=", "cursor=not-a-cursor"] {
        let refused = problem(
            app.get_public(&format!("/v1/plans?{bad}")).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        let field = bad.split('=').next().unwrap();
        assert_eq!(fields(&refused), [field], "{bad}");
    }
    // A cursor of another list is not a cursor of this one.
    let admin = app.admin_token().await;
    app.register("ada@example.com").await;
    let users: Value = app
        .get("/v1/users?limit=1", &admin)
        .await
        .json()
        .await
        .unwrap();
    let foreign = users["next_cursor"].as_str().expect("a users cursor");
    problem(
        app.get_public(&format!("/v1/plans?cursor={foreign}")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
}

#[tokio::test]
async fn subscribing_starts_a_period_and_invoices_it_once() {
    let app = TestApp::spawn().await;
    let token = access(&app.register("ada@example.com").await);
    let response = subscribe(&app, &token, "basic-monthly", None).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "active");
    assert_eq!(body["plan_code"], "basic-monthly");
    assert_eq!(body["cancel_at_period_end"], false);
    assert_eq!(body["latest_invoice"]["kind"], "subscription");
    assert_eq!(body["latest_invoice"]["total"]["amount_minor"], 999);
    assert_eq!(
        body["current_period_start"],
        body["latest_invoice"]["period_start"]
    );

    let me: Value = app
        .get("/v1/subscriptions/me", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], body["id"]);

    problem(
        subscribe(&app, &token, "pro-monthly", None).await,
        StatusCode::CONFLICT,
        "CONFLICT",
    )
    .await;
    let bad = problem(
        subscribe(&app, &token, "gold-forever", Some(&"x".repeat(300))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(fields(&bad), ["Idempotency-Key", "plan_code"]);
    problem(
        app.get(
            "/v1/subscriptions/me",
            &access(&app.register("bob@example.com").await),
        )
        .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
}

#[tokio::test]
async fn a_keyed_subscribe_replays_and_concurrent_ones_make_one_subscription() {
    let app = TestApp::spawn_with(&[("db_pool_size", json!(12))]).await;
    let token = access(&app.register("ada@example.com").await);
    let mut requests = Vec::new();
    for _ in 0..8 {
        requests.push(subscribe(&app, &token, "pro-monthly", Some("sub-key")));
    }
    let responses = futures_util::future::join_all(requests).await;
    let mut bodies = Vec::new();
    for response in responses {
        assert_eq!(response.status(), StatusCode::CREATED);
        bodies.push(response.json::<Value>().await.unwrap());
    }
    assert!(
        bodies.iter().all(|b| b == &bodies[0]),
        "one subscription, replayed"
    );

    app.components.redis.clear_namespace().await.unwrap();
    let retry = subscribe(&app, &token, "pro-monthly", Some("sub-key")).await;
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.json::<Value>().await.unwrap(), bodies[0]);
    problem(
        subscribe(&app, &token, "basic-monthly", Some("sub-key")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "IDEMPOTENCY_KEY_REUSED",
    )
    .await;
    let invoices: Value = app.get("/v1/invoices", &token).await.json().await.unwrap();
    assert_eq!(invoices["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_plan_change_is_previewed_without_effect_then_invoiced_with_proration() {
    let app = TestApp::spawn().await;
    let token = access(&app.register("ada@example.com").await);
    subscribe(&app, &token, "basic-monthly", None).await;
    // Ten days into a one-month period.
    app.sql(
        "UPDATE subscriptions SET current_period_start = now() - interval '10 days', \
         current_period_end = now() - interval '10 days' + interval '1 month', \
         anchor = now() - interval '10 days'",
    )
    .await;

    let preview: Value = app
        .get(
            "/v1/subscriptions/me/proration?plan_code=pro-monthly",
            &token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(preview["from_plan"], "basic-monthly");
    assert_eq!(preview["to_plan"], "pro-monthly");
    let credit = preview["credit"]["amount_minor"].as_i64().unwrap();
    let charge = preview["charge"]["amount_minor"].as_i64().unwrap();
    // 18 to 21 days of a 28- to 31-day month remain: 58 % to 68 % of each price.
    assert!((-680..=-580).contains(&credit), "{preview}");
    assert!(
        (charge + 3 * credit).abs() <= 6,
        "charge is three times the credit: {preview}"
    );
    assert_eq!(
        preview["total"]["amount_minor"].as_i64().unwrap(),
        credit + charge
    );
    let me: Value = app
        .get("/v1/subscriptions/me", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        me["plan_code"], "basic-monthly",
        "a preview changes nothing"
    );

    let changed = app
        .post_keyed(
            "/v1/subscriptions/me/change-plan",
            &token,
            json!({"plan_code": "pro-monthly"}),
            Some("change-1"),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::OK);
    let invoice: Value = changed.json().await.unwrap();
    assert_eq!(invoice["kind"], "proration");
    assert_eq!(invoice["lines"].as_array().unwrap().len(), 2);
    let total = invoice["total"]["amount_minor"].as_i64().unwrap();
    assert!((total - preview["total"]["amount_minor"].as_i64().unwrap()).abs() <= 1);

    let retry = app
        .post_keyed(
            "/v1/subscriptions/me/change-plan",
            &token,
            json!({"plan_code": "pro-monthly"}),
            Some("change-1"),
        )
        .await;
    assert_eq!(
        retry.status(),
        StatusCode::OK,
        "a retry after success replays"
    );
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.json::<Value>().await.unwrap(), invoice);

    problem(
        app.post_keyed(
            "/v1/subscriptions/me/change-plan",
            &token,
            json!({"plan_code": "pro-monthly"}),
            None,
        )
        .await,
        StatusCode::CONFLICT,
        "CONFLICT",
    )
    .await;
    let down = app
        .post_keyed(
            "/v1/subscriptions/me/change-plan",
            &token,
            json!({"plan_code": "basic-monthly"}),
            None,
        )
        .await;
    assert_eq!(down.status(), StatusCode::OK);
    let refund: Value = down.json().await.unwrap();
    assert!(
        refund["total"]["amount_minor"].as_i64().unwrap() < 0,
        "{refund}"
    );

    let invoices: Value = app
        .get("/v1/invoices?limit=2", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(invoices["items"][0]["id"], refund["id"], "newest first");
    let cursor = invoices["next_cursor"].as_str().unwrap();
    let rest: Value = app
        .get(&format!("/v1/invoices?limit=2&cursor={cursor}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["items"][0]["kind"], "subscription");
    assert!(rest["next_cursor"].is_null());
}

#[tokio::test]
async fn cancelling_at_period_end_keeps_it_active_and_cancelling_now_ends_it() {
    let app = TestApp::spawn().await;
    let token = access(&app.register("ada@example.com").await);
    subscribe(&app, &token, "pro-yearly", None).await;
    let cancel = |at_period_end: Value| {
        app.post_keyed(
            "/v1/subscriptions/me/cancel",
            &token,
            json!({"at_period_end": at_period_end}),
            None,
        )
    };
    let later: Value = cancel(json!(true)).await.json().await.unwrap();
    assert_eq!(later["status"], "active");
    assert_eq!(later["cancel_at_period_end"], true);
    let now: Value = cancel(json!(false)).await.json().await.unwrap();
    assert_eq!(now["status"], "cancelled");
    assert!(now["cancelled_at"].is_string());
    problem(
        cancel(json!(false)).await,
        StatusCode::CONFLICT,
        "INVALID_TRANSITION",
    )
    .await;
    problem(
        cancel(json!("soon")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    let again = subscribe(&app, &token, "basic-monthly", None).await;
    assert_eq!(
        again.status(),
        StatusCode::CREATED,
        "a new one after cancelling"
    );
    problem(
        app.get(
            "/v1/subscriptions/me/proration?plan_code=basic-monthly",
            &token,
        )
        .await,
        StatusCode::CONFLICT,
        "CONFLICT",
    )
    .await;
}
