//! The catalog over HTTP: admin writes, public reads, caching headers, lists.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api::helpers::{TestApp, access, fields, problem};

#[tokio::test]
async fn an_admin_creates_a_product_that_anyone_can_read_with_an_etag() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let response = app
        .request(
            Method::POST,
            "/v1/products",
            Some(&admin),
            Some(json!({
                "sku": "LAMP-001",
                "name": "  Walnut desk lamp ",
                "description": "Warm light.",
                "price": {"amount_minor": 4999, "currency": "USD"},
                "stock": 12
            })),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/v1/products/{}", created["id"].as_str().unwrap())
    );
    assert_eq!(created["name"], "Walnut desk lamp");
    assert_eq!(
        created["price"],
        json!({"amount_minor": 4999, "currency": "USD"})
    );
    assert_eq!(created["stock"], 12);
    assert_eq!(created["active"], true);

    let first = app.get_public(&location).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["cache-control"], "public, no-cache");
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(first.json::<Value>().await.unwrap(), created);

    let revalidated = app
        .client
        .get(app.url(&location))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(revalidated.headers()["etag"].to_str().unwrap(), etag);
}

#[tokio::test]
async fn only_admins_write_the_catalog() {
    let app = TestApp::spawn().await;
    let customer = access(&app.register("ada@example.com").await);
    let body =
        json!({"sku": "ABC-1", "name": "x", "price": {"amount_minor": 1, "currency": "USD"}});
    problem(
        app.request(Method::POST, "/v1/products", None, Some(body.clone()))
            .await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
    )
    .await;
    problem(
        app.request(Method::POST, "/v1/products", Some(&customer), Some(body))
            .await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    problem(
        app.request(
            Method::POST,
            "/v1/products/not-a-uuid/stock",
            Some(&customer),
            Some(json!({"delta": 1})),
        )
        .await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
}

#[tokio::test]
async fn every_invalid_field_is_named_and_a_taken_sku_is_409() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let body = problem(
        app.request(
            Method::POST,
            "/v1/products",
            Some(&admin),
            Some(json!({
                "sku": "lower-case",
                "name": "",
                "description": "d".repeat(5001),
                "price": {"amount_minor": -1, "currency": "usd"},
                "stock": -3
            })),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    let mut named = fields(&body);
    named.sort();
    assert_eq!(
        named,
        [
            "description",
            "name",
            "price.amount_minor",
            "price.currency",
            "sku",
            "stock"
        ],
        "{body}"
    );

    let missing = problem(
        app.request(Method::POST, "/v1/products", Some(&admin), Some(json!({})))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(fields(&missing), ["sku", "name", "price"]);

    let product = app.create_product(&admin, "DUP-1", 100, 1).await;
    let again = app
        .request(
            Method::POST,
            "/v1/products",
            Some(&admin),
            Some(json!({"sku": "DUP-1", "name": "Other", "price": {"amount_minor": 1, "currency": "EUR"}})),
        )
        .await;
    problem(again, StatusCode::CONFLICT, "SKU_TAKEN").await;
    let other = app.create_product(&admin, "DUP-2", 100, 1).await;
    let renamed = app
        .request(
            Method::PATCH,
            &format!("/v1/products/{}", other["id"].as_str().unwrap()),
            Some(&admin),
            Some(json!({"sku": "DUP-1"})),
        )
        .await;
    problem(renamed, StatusCode::CONFLICT, "SKU_TAKEN").await;

    let stock_by_patch = app
        .request(
            Method::PATCH,
            &format!("/v1/products/{}", product["id"].as_str().unwrap()),
            Some(&admin),
            Some(json!({"stock": 5})),
        )
        .await;
    let body = problem(
        stock_by_patch,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(fields(&body), ["stock"], "stock changes go through /stock");
}

#[tokio::test]
async fn a_write_is_visible_at_once_despite_the_cache() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let product = app.create_product(&admin, "CACHE-1", 1000, 5).await;
    let path = format!("/v1/products/{}", product["id"].as_str().unwrap());
    assert_eq!(app.get_json(&path).await["price"]["amount_minor"], 1000);

    let patched = app
        .request(
            Method::PATCH,
            &path,
            Some(&admin),
            Some(json!({"price": {"amount_minor": 1250, "currency": "USD"}, "name": "Renamed"})),
        )
        .await;
    assert_eq!(patched.status(), StatusCode::OK);
    let read = app.get_json(&path).await;
    assert_eq!(read["price"]["amount_minor"], 1250);
    assert_eq!(read["name"], "Renamed");

    let adjusted = app
        .request(
            Method::POST,
            &format!("{path}/stock"),
            Some(&admin),
            Some(json!({"delta": 7})),
        )
        .await;
    assert_eq!(adjusted.status(), StatusCode::OK);
    assert_eq!(app.get_json(&path).await["stock"], 12);
}

#[tokio::test]
async fn stock_adjustments_are_refused_below_zero() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let product = app.create_product(&admin, "STOCK-1", 1000, 3).await;
    let path = format!("/v1/products/{}/stock", product["id"].as_str().unwrap());
    let adjust = |delta: Value| {
        app.request(
            Method::POST,
            &path,
            Some(&admin),
            Some(json!({"delta": delta})),
        )
    };
    let refused = problem(
        adjust(json!(-4)).await,
        StatusCode::CONFLICT,
        "INSUFFICIENT_STOCK",
    )
    .await;
    assert_eq!(fields(&refused), ["delta"]);
    assert_eq!(
        adjust(json!(-3)).await.json::<Value>().await.unwrap()["stock"],
        0
    );
    problem(
        adjust(json!(0)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    problem(
        adjust(json!("ten")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    let unknown = app
        .request(
            Method::POST,
            &format!("/v1/products/{}/stock", uuid::Uuid::now_v7()),
            Some(&admin),
            Some(json!({"delta": 1})),
        )
        .await;
    problem(unknown, StatusCode::NOT_FOUND, "NOT_FOUND").await;
}

#[tokio::test]
async fn a_deleted_product_is_deactivated_not_removed() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let product = app.create_product(&admin, "GONE-1", 1000, 3).await;
    let id = product["id"].as_str().unwrap();
    let path = format!("/v1/products/{id}");
    let deleted = app.request(Method::DELETE, &path, Some(&admin), None).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get_json(&path).await["active"], false);

    let listed = app.get_json("/v1/products").await;
    assert!(listed["items"].as_array().unwrap().is_empty());
    let inactive = app.get_json("/v1/products?active=false").await;
    assert_eq!(inactive["items"][0]["id"], id);

    let again = app.request(Method::DELETE, &path, Some(&admin), None).await;
    assert_eq!(
        again.status(),
        StatusCode::NO_CONTENT,
        "deleting twice is fine"
    );
    let missing = app
        .request(
            Method::DELETE,
            &format!("/v1/products/{}", uuid::Uuid::now_v7()),
            Some(&admin),
            None,
        )
        .await;
    problem(missing, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    problem(
        app.get_public("/v1/products/not-a-uuid").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
}

#[tokio::test]
async fn the_list_pages_through_every_product_once_in_price_order_with_filters() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    for (n, price) in [500, 100, 300, 300, 900, 700, 300].iter().enumerate() {
        app.create_product(&admin, &format!("PAGE-{n}"), *price, 1)
            .await;
    }
    let mut seen = Vec::new();
    let mut path = "/v1/products?sort=price&order=asc&limit=3".to_owned();
    loop {
        let page = app.get_json(&path).await;
        for item in page["items"].as_array().unwrap() {
            seen.push((
                item["price"]["amount_minor"].as_i64().unwrap(),
                item["sku"].as_str().unwrap().to_owned(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                path = format!("/v1/products?sort=price&order=asc&limit=3&cursor={cursor}");
            }
            None => break,
        }
    }
    let prices: Vec<i64> = seen.iter().map(|(p, _)| *p).collect();
    assert_eq!(prices, [100, 300, 300, 300, 500, 700, 900]);
    let mut skus: Vec<&str> = seen.iter().map(|(_, s)| s.as_str()).collect();
    skus.sort_unstable();
    skus.dedup();
    assert_eq!(skus.len(), 7, "every product exactly once");

    let filtered = app
        .get_json("/v1/products?min_price=300&max_price=700&q=page-&sort=price&order=desc")
        .await;
    let prices: Vec<i64> = filtered["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["price"]["amount_minor"].as_i64().unwrap())
        .collect();
    assert_eq!(prices, [700, 500, 300, 300, 300]);

    let first = app.get_json("/v1/products?sort=price&limit=2").await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let foreign = app
        .get_public(&format!(
            "/v1/products?sort=created_at&limit=2&cursor={cursor}"
        ))
        .await;
    let body = problem(
        foreign,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(fields(&body), ["cursor"]);
    let bad = problem(
        app.get_public(
            "/v1/products?limit=0&sort=name&order=up&min_price=-1&currency=usd&q=ab&cursor=x",
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    let mut named = fields(&bad);
    named.sort();
    assert_eq!(
        named,
        ["currency", "limit", "min_price", "order", "q", "sort"]
    );
    problem(
        app.get_public("/v1/products?colour=red").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
}

#[tokio::test]
async fn redis_keeps_the_ready_body_and_an_entry_of_another_format_is_replaced() {
    use strata_ports::Cache as _;

    // Without the in-process copy every read goes to Redis.
    let app = TestApp::spawn_with(&[("local_cache_enabled", json!(false))]).await;
    let admin = app.admin_token().await;
    let product = app.create_product(&admin, "BYTES-1", 1000, 5).await;
    let id = product["id"].as_str().unwrap();
    let path = format!("/v1/products/{id}");
    let cache = strata_redis::RedisCache::new(app.components.redis.clone());
    let key = format!("product:{id}");
    // What an older version kept (the product's own JSON, another shape): never served.
    cache
        .set(
            &key,
            r#"{"id":"stale"}"#,
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap();

    let first = app.get_public(&path).await;
    assert_eq!(first.status(), StatusCode::OK);
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let body = first.text().await.unwrap();
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), product);
    assert_eq!(
        cache.get(&key).await.unwrap().unwrap(),
        format!("product-v1|{body}")
    );

    let hit = app.get_public(&path).await;
    assert_eq!(hit.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(hit.text().await.unwrap(), body);
    let revalidated = app
        .client
        .get(app.url(&path))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn a_patch_must_change_something_and_null_is_not_a_value() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let product = app.create_product(&admin, "PATCH-1", 1000, 3).await;
    let path = format!("/v1/products/{}", product["id"].as_str().unwrap());
    let patch = |body: Value| app.request(Method::PATCH, &path, Some(&admin), Some(body));
    problem(
        patch(json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    // Leaving a field out keeps it; null would read as "clear it", which a PATCH here cannot do.
    for (body, field) in [
        (json!({"name": null}), "name"),
        (
            json!({"name": "Renamed", "description": null}),
            "description",
        ),
        (json!({"active": null, "sku": "PATCH-2"}), "active"),
        (json!({"price": null}), "price"),
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
    let unchanged = app.get_json(&path).await;
    assert_eq!(unchanged["name"], product["name"]);
    assert_eq!(unchanged["sku"], "PATCH-1");
}

#[tokio::test]
async fn an_integer_field_takes_a_whole_number_however_it_is_written() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    // JSON has one number type: 2.0 and 2e0 are the integer 2 (as JSON Schema's `integer` says).
    let created = app
        .request(
            Method::POST,
            "/v1/products",
            Some(&admin),
            Some(json!({
                "sku": "FLOAT-1",
                "name": "Whole",
                "price": {"amount_minor": 1500.0, "currency": "USD"},
                "stock": 4.0,
            })),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let product: Value = created.json().await.unwrap();
    assert_eq!(product["price"]["amount_minor"], 1500);
    assert_eq!(product["stock"], 4);
    let id = product["id"].as_str().unwrap().to_owned();
    let stock_path = format!("/v1/products/{id}/stock");
    let adjusted = app
        .client
        .post(app.url(&stock_path))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(r#"{"delta": 2e0}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(adjusted.status(), StatusCode::OK);
    assert_eq!(adjusted.json::<Value>().await.unwrap()["stock"], 6);

    let customer = access(&app.register("ada@example.com").await);
    let order = app
        .place_order(
            &customer,
            json!([{"product_id": id, "quantity": 1.0}]),
            None,
        )
        .await;
    assert_eq!(order.status(), StatusCode::CREATED);

    for fraction in [json!(1.5), json!(-0.25)] {
        let refused = problem(
            app.request(
                Method::POST,
                &stock_path,
                Some(&admin),
                Some(json!({ "delta": fraction })),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        assert_eq!(fields(&refused), ["delta"]);
        assert_eq!(refused["errors"][0]["code"], "invalid_type");
    }
}
