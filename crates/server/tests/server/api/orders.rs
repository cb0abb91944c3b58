//! Orders over HTTP: placement, oversell, Idempotency-Key, visibility and transitions.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api::helpers::{TestApp, access, fields, problem};

fn id(value: &Value) -> String {
    value["id"].as_str().expect("id").to_owned()
}

async fn stock(app: &TestApp, product: &Value) -> i64 {
    app.get_json(&format!("/v1/products/{}", id(product))).await["stock"]
        .as_i64()
        .expect("stock")
}

#[tokio::test]
async fn an_order_captures_prices_computes_the_total_and_takes_stock() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let lamp = app.create_product(&admin, "LAMP-1", 2500, 5).await;
    let desk = app.create_product(&admin, "DESK-1", 19999, 2).await;
    let customer = access(&app.register("ada@example.com").await);

    let response = app
        .place_order(
            &customer,
            json!([
                {"product_id": id(&desk), "quantity": 1},
                {"product_id": id(&lamp), "quantity": 3}
            ]),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(response.headers().get("idempotent-replayed").is_none());
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["status"], "placed");
    assert_eq!(
        order["total"],
        json!({"amount_minor": 27499, "currency": "USD"})
    );
    assert_eq!(order["items"][0]["sku"], "DESK-1");
    assert_eq!(order["items"][1]["unit_price"]["amount_minor"], 2500);
    assert_eq!(order["items"][1]["line_total"]["amount_minor"], 7500);
    assert_eq!(stock(&app, &lamp).await, 2);
    assert_eq!(stock(&app, &desk).await, 1);

    // A later price change does not touch the order.
    app.request(
        Method::PATCH,
        &format!("/v1/products/{}", id(&lamp)),
        Some(&admin),
        Some(json!({"price": {"amount_minor": 1, "currency": "USD"}})),
    )
    .await;
    let read = app
        .get(&format!("/v1/orders/{}", id(&order)), &customer)
        .await;
    assert_eq!(read.json::<Value>().await.unwrap(), order);
}

#[tokio::test]
async fn insufficient_stock_names_every_short_line_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let lamp = app.create_product(&admin, "LAMP-1", 2500, 5).await;
    let desk = app.create_product(&admin, "DESK-1", 19999, 1).await;
    let chair = app.create_product(&admin, "CHAIR-1", 5000, 0).await;
    let customer = access(&app.register("ada@example.com").await);
    let response = app
        .place_order(
            &customer,
            json!([
                {"product_id": id(&lamp), "quantity": 5},
                {"product_id": id(&desk), "quantity": 2},
                {"product_id": id(&chair), "quantity": 1}
            ]),
            None,
        )
        .await;
    let body = problem(response, StatusCode::CONFLICT, "INSUFFICIENT_STOCK").await;
    assert_eq!(fields(&body), ["items[1].quantity", "items[2].quantity"]);
    assert_eq!(stock(&app, &lamp).await, 5, "no line was taken");
}

#[tokio::test]
async fn invalid_lines_are_listed_together() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let lamp = app.create_product(&admin, "LAMP-1", 2500, 5).await;
    let gone = app.create_product(&admin, "GONE-1", 100, 5).await;
    app.request(
        Method::DELETE,
        &format!("/v1/products/{}", id(&gone)),
        Some(&admin),
        None,
    )
    .await;
    let customer = access(&app.register("ada@example.com").await);

    let shape = problem(
        app.place_order(
            &customer,
            json!([
                {"product_id": id(&lamp), "quantity": 0},
                {"product_id": "nope", "quantity": 1},
                {"product_id": id(&lamp), "quantity": 1}
            ]),
            Some(&"k".repeat(300)),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(
        fields(&shape),
        [
            "Idempotency-Key",
            "items[0].quantity",
            "items[1].product_id",
            "items[2].product_id"
        ]
    );

    let catalog = problem(
        app.place_order(
            &customer,
            json!([
                {"product_id": id(&gone), "quantity": 1},
                {"product_id": uuid::Uuid::now_v7().to_string(), "quantity": 1}
            ]),
            None,
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(
        fields(&catalog),
        ["items[0].product_id", "items[1].product_id"]
    );
    problem(
        app.place_order(&customer, json!([]), None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_even_with_redis_flushed() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let lamp = app.create_product(&admin, "LAMP-1", 2500, 5).await;
    let customer = access(&app.register("ada@example.com").await);
    let items = json!([{"product_id": id(&lamp), "quantity": 2}]);

    let first = app
        .place_order(&customer, items.clone(), Some("order-key-1"))
        .await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();

    app.components.redis.clear_namespace().await.unwrap();
    let retry = app
        .place_order(&customer, items.clone(), Some("order-key-1"))
        .await;
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.json::<Value>().await.unwrap(), first);
    assert_eq!(stock(&app, &lamp).await, 3, "the retry took no stock");

    let other_body = app
        .place_order(
            &customer,
            json!([{"product_id": id(&lamp), "quantity": 1}]),
            Some("order-key-1"),
        )
        .await;
    problem(
        other_body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "IDEMPOTENCY_KEY_REUSED",
    )
    .await;

    // Keys belong to their user: another customer's identical key is a new order.
    let other = access(&app.register("bob@example.com").await);
    let theirs = app.place_order(&other, items, Some("order-key-1")).await;
    assert_eq!(theirs.status(), StatusCode::CREATED);
    assert!(theirs.headers().get("idempotent-replayed").is_none());
    assert_eq!(stock(&app, &lamp).await, 1);
}

#[tokio::test]
async fn concurrent_posts_with_one_key_make_one_order() {
    let app = TestApp::spawn_with(&[("db_pool_size", json!(12))]).await;
    let admin = app.admin_token().await;
    let lamp = app.create_product(&admin, "LAMP-1", 2500, 100).await;
    let customer = access(&app.register("ada@example.com").await);
    let items = json!([{"product_id": id(&lamp), "quantity": 3}]);

    let mut requests = Vec::new();
    for _ in 0..10 {
        requests.push(app.place_order(&customer, items.clone(), Some("same-key")));
    }
    let responses = futures_util::future::join_all(requests).await;
    let mut ids = Vec::new();
    for response in responses {
        assert_eq!(response.status(), StatusCode::CREATED);
        ids.push(id(&response.json::<Value>().await.unwrap()));
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every answer names the same order");
    assert_eq!(stock(&app, &lamp).await, 97, "stock taken once");
    let listed: Value = app.get("/v1/orders", &customer).await.json().await.unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn concurrent_orders_never_oversell() {
    let app = TestApp::spawn_with(&[("db_pool_size", json!(12))]).await;
    let admin = app.admin_token().await;
    let lamp = app.create_product(&admin, "LAMP-1", 2500, 10).await;
    let customer = access(&app.register("ada@example.com").await);
    let items = json!([{"product_id": id(&lamp), "quantity": 1}]);

    let mut requests = Vec::new();
    for _ in 0..50 {
        requests.push(app.place_order(&customer, items.clone(), None));
    }
    let responses = futures_util::future::join_all(requests).await;
    let created = responses
        .iter()
        .filter(|r| r.status() == StatusCode::CREATED)
        .count();
    let refused = responses
        .iter()
        .filter(|r| r.status() == StatusCode::CONFLICT)
        .count();
    assert_eq!((created, refused), (10, 40));
    assert_eq!(stock(&app, &lamp).await, 0);
}

#[tokio::test]
async fn customers_see_their_own_orders_and_admins_see_all() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let lamp = app.create_product(&admin, "LAMP-1", 2500, 50).await;
    let ada = access(&app.register("ada@example.com").await);
    let bob = access(&app.register("bob@example.com").await);
    let items = json!([{"product_id": id(&lamp), "quantity": 1}]);
    let mut adas = Vec::new();
    for _ in 0..3 {
        let order: Value = app
            .place_order(&ada, items.clone(), None)
            .await
            .json()
            .await
            .unwrap();
        adas.push(id(&order));
    }
    let bobs: Value = app
        .place_order(&bob, items.clone(), None)
        .await
        .json()
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut path = "/v1/orders?limit=2".to_owned();
    loop {
        let page: Value = app.get(&path, &ada).await.json().await.unwrap();
        for order in page["items"].as_array().unwrap() {
            assert_eq!(order["items"][0]["sku"], "LAMP-1", "lines are included");
            seen.push(id(order));
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/orders?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    adas.reverse();
    assert_eq!(seen, adas, "own orders, newest first, each once");

    problem(
        app.get(&format!("/v1/orders/{}", id(&bobs)), &ada).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    problem(
        app.request(
            Method::POST,
            &format!("/v1/orders/{}/cancel", id(&bobs)),
            Some(&ada),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    assert_eq!(
        app.get(&format!("/v1/orders/{}", id(&bobs)), &admin)
            .await
            .status(),
        StatusCode::OK
    );
    let all: Value = app.get("/v1/orders", &admin).await.json().await.unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 4);
    problem(
        app.get(
            "/v1/orders?user_id=00000000-0000-0000-0000-000000000000",
            &ada,
        )
        .await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    problem(
        app.get_public("/v1/orders").await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
    )
    .await;
}

#[tokio::test]
async fn cancel_restocks_once_and_transitions_are_checked() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let lamp = app.create_product(&admin, "LAMP-1", 2500, 10).await;
    let customer = access(&app.register("ada@example.com").await);
    let items = json!([{"product_id": id(&lamp), "quantity": 4}]);
    let order: Value = app
        .place_order(&customer, items.clone(), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stock(&app, &lamp).await, 6);
    let app = &app;
    let action = |order: &Value, verb: &str, token: &str| {
        let path = format!("/v1/orders/{}/{verb}", id(order));
        let token = token.to_owned();
        async move { app.request(Method::POST, &path, Some(&token), None).await }
    };

    let cancelled = action(&order, "cancel", &customer).await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    assert_eq!(
        cancelled.json::<Value>().await.unwrap()["status"],
        "cancelled"
    );
    assert_eq!(stock(app, &lamp).await, 10);
    problem(
        action(&order, "cancel", &customer).await,
        StatusCode::CONFLICT,
        "INVALID_TRANSITION",
    )
    .await;
    assert_eq!(stock(app, &lamp).await, 10, "restocked exactly once");
    problem(
        action(&order, "fulfill", &admin).await,
        StatusCode::CONFLICT,
        "INVALID_TRANSITION",
    )
    .await;

    let second: Value = app
        .place_order(&customer, items, None)
        .await
        .json()
        .await
        .unwrap();
    problem(
        action(&second, "fulfill", &customer).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    let fulfilled = action(&second, "fulfill", &admin).await;
    assert_eq!(
        fulfilled.json::<Value>().await.unwrap()["status"],
        "fulfilled"
    );
    problem(
        action(&second, "cancel", &admin).await,
        StatusCode::CONFLICT,
        "INVALID_TRANSITION",
    )
    .await;
    assert_eq!(stock(app, &lamp).await, 6);
}
