//! The admin exports: formats, filters, compression, authorisation, and streaming (past the
//! request timeout, and stopped by a client that goes away).

use std::collections::HashSet;
use std::io::Read;
use std::time::{Duration, Instant};

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api::helpers::{TestApp, access, fields, problem};

const USERS: &str = "/v1/admin/exports/users";
const ORDERS: &str = "/v1/admin/exports/orders";

impl TestApp {
    /// A GET of an export as `token`, with extra headers.
    async fn export(&self, path: &str, token: &str, headers: &[(&str, &str)]) -> Response {
        let mut request = self.client.get(self.url(path)).bearer_auth(token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("request sent")
    }

    /// The whole body of a successful export, as text.
    async fn export_text(&self, path: &str, token: &str) -> String {
        let response = self.export(path, token, &[]).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.text().await.expect("body")
    }

    /// A customer of its own (with a stored password hash to look for) and `count` orders of it,
    /// written straight to the database, created one second apart from `start`.
    async fn bulk_orders(&self, count: u32, start: &str) {
        self.sql(
            "INSERT INTO users (id, email, display_name, role, password_hash) \
             VALUES ('00000000-0000-7000-8000-00000000b01c', 'bulk@example.com', 'Bulk Buyer', \
             'customer', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA')",
        )
        .await;
        self.sql(&format!(
            "INSERT INTO orders (id, user_id, status, currency, total_minor, created_at, updated_at) \
             SELECT gen_random_uuid(), '00000000-0000-7000-8000-00000000b01c', 'placed', 'USD', i, \
               timestamptz '{start}' + i * interval '1 second', \
               timestamptz '{start}' + i * interval '1 second' \
             FROM generate_series(0, {count} - 1) AS i"
        ))
        .await;
    }

    /// Database connections checked out of the pool right now.
    fn connections_in_use(&self) -> u32 {
        let stats = self.components.database.pool_stats();
        stats.connections - stats.idle_connections
    }
}

fn header<'a>(response: &'a Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
}

fn ndjson(text: &str) -> Vec<Value> {
    assert!(text.is_empty() || text.ends_with('\n'), "every line ends");
    text.lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
            assert!(value.is_object(), "{line}");
            value
        })
        .collect()
}

/// The records of a CSV body, parsed by a real CSV reader, with its header.
fn csv_records(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let header = reader
        .headers()
        .expect("a header")
        .iter()
        .map(str::to_owned)
        .collect();
    let records = reader
        .records()
        .map(|record| {
            record
                .expect("a record")
                .iter()
                .map(str::to_owned)
                .collect()
        })
        .collect();
    (header, records)
}

/// An admin token, `customers` customers each with an order of the one product, all through the
/// API.
async fn shop(app: &TestApp, customers: usize) -> String {
    let admin = app.admin_token().await;
    let lamp = app.create_product(&admin, "LAMP-1", 4999, 1000).await;
    let desk = app.create_product(&admin, "DESK-1", 25000, 1000).await;
    for i in 0..customers {
        let token = access(&app.register(&format!("user{i}@example.com")).await);
        let mut items = vec![json!({"product_id": lamp["id"], "quantity": 1})];
        if i % 2 == 0 {
            items.push(json!({"product_id": desk["id"], "quantity": 2}));
        }
        let placed = app.place_order(&token, json!(items), None).await;
        assert_eq!(placed.status(), StatusCode::CREATED);
    }
    admin
}

#[tokio::test]
async fn both_exports_carry_every_row_once_in_order_in_both_formats_across_batches() {
    let app = TestApp::spawn_with(&[("export_batch_size", json!(3))]).await;
    let admin = shop(&app, 7).await;

    let users = ndjson(
        &app.export_text(&format!("{USERS}?format=ndjson"), &admin)
            .await,
    );
    let (user_header, user_rows) = csv_records(
        &app.export_text(&format!("{USERS}?format=csv"), &admin)
            .await,
    );
    let orders = ndjson(&app.export_text(ORDERS, &admin).await);
    let (order_header, order_rows) = csv_records(
        &app.export_text(&format!("{ORDERS}?format=csv"), &admin)
            .await,
    );

    assert_eq!(
        users.len(),
        8,
        "seven customers and the admin, over three batches"
    );
    assert_eq!(user_rows.len(), 8);
    assert_eq!(
        user_header,
        [
            "id",
            "email",
            "display_name",
            "role",
            "created_at",
            "updated_at"
        ]
    );
    let ndjson_ids: Vec<&str> = users
        .iter()
        .map(|u| u["id"].as_str().expect("id"))
        .collect();
    let csv_ids: Vec<&str> = user_rows.iter().map(|row| row[0].as_str()).collect();
    assert_eq!(ndjson_ids, csv_ids, "the same rows in the same order");
    assert_eq!(
        ndjson_ids.iter().collect::<HashSet<_>>().len(),
        8,
        "each once"
    );
    let created: Vec<&str> = users
        .iter()
        .map(|u| u["created_at"].as_str().expect("at"))
        .collect();
    assert!(
        created.windows(2).all(|pair| pair[0] <= pair[1]),
        "oldest first"
    );
    assert_eq!(users[0]["email"], "root@example.com");
    assert_eq!(users[0]["role"], "admin");
    assert_eq!(user_rows[1][3], "customer");

    assert_eq!(orders.len(), 7);
    assert_eq!(order_rows.len(), 7);
    assert_eq!(
        order_header,
        [
            "id",
            "user_id",
            "status",
            "currency",
            "total_minor",
            "item_count",
            "created_at",
            "updated_at"
        ]
    );
    for (json, row) in orders.iter().zip(&order_rows) {
        assert_eq!(json["id"].as_str(), Some(row[0].as_str()));
        assert_eq!(json["item_count"].to_string(), row[5]);
        assert_eq!(json["total_minor"].to_string(), row[4]);
        assert_eq!(json["status"], "placed");
        assert_eq!(json["currency"], "USD");
    }
    let counts: Vec<i64> = orders
        .iter()
        .map(|o| o["item_count"].as_i64().expect("count"))
        .collect();
    assert_eq!(counts, [2, 1, 2, 1, 2, 1, 2]);
    assert_eq!(orders[0]["total_minor"], 4999 + 2 * 25000);
}

#[tokio::test]
async fn an_export_is_an_uncached_attachment_named_for_the_day() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    for (path, content_type, extension) in [
        (USERS.to_owned(), "application/x-ndjson", "ndjson"),
        (
            format!("{USERS}?format=csv"),
            "text/csv; charset=utf-8",
            "csv",
        ),
        (
            format!("{ORDERS}?format=ndjson"),
            "application/x-ndjson",
            "ndjson",
        ),
        (
            format!("{ORDERS}?format=csv"),
            "text/csv; charset=utf-8",
            "csv",
        ),
    ] {
        let before = chrono::Utc::now().format("%Y-%m-%d").to_string();
        let response = app.export(&path, &admin, &[]).await;
        let after = chrono::Utc::now().format("%Y-%m-%d").to_string();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "content-type"), content_type, "{path}");
        assert_eq!(header(&response, "cache-control"), "no-store");
        let name = if path.starts_with(USERS) {
            "users"
        } else {
            "orders"
        };
        let disposition = header(&response, "content-disposition");
        assert!(
            [before, after].iter().any(|day| {
                disposition == format!("attachment; filename=\"{name}-{day}.{extension}\"")
            }),
            "{disposition}"
        );
        assert!(!header(&response, "x-request-id").is_empty());
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    }
}

#[tokio::test]
async fn a_display_name_with_a_comma_quotes_and_a_line_break_round_trips_and_no_hash_leaks() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    app.register("ada@example.com").await;
    // The domain refuses control characters today; older rows may hold them.
    app.sql("UPDATE users SET display_name = E'a, \"b\"\\nc' WHERE email = 'ada@example.com'")
        .await;

    let csv = app
        .export_text(&format!("{USERS}?format=csv"), &admin)
        .await;
    assert!(
        csv.contains("\"a, \"\"b\"\"\nc\""),
        "quoted, quotes doubled: {csv}"
    );
    assert!(csv.ends_with("\r\n"), "CRLF line ends");
    let (_, rows) = csv_records(&csv);
    let ada = rows
        .iter()
        .find(|row| row[1] == "ada@example.com")
        .expect("ada");
    assert_eq!(ada[2], "a, \"b\"\nc");

    let lines = ndjson(&app.export_text(USERS, &admin).await);
    let ada = lines
        .iter()
        .find(|u| u["email"] == "ada@example.com")
        .expect("ada");
    assert_eq!(ada["display_name"], "a, \"b\"\nc");
    for line in &lines {
        let keys: HashSet<&str> = line
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            HashSet::from([
                "id",
                "email",
                "display_name",
                "role",
                "created_at",
                "updated_at"
            ])
        );
    }
    assert!(!csv.contains("argon2"), "never a password hash");
}

#[tokio::test]
async fn a_streamed_export_is_gzip_compressed_when_the_client_accepts_it() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    app.bulk_orders(500, "2026-01-01T00:00:00Z").await;
    let plain = app.export_text(ORDERS, &admin).await;

    let response = app
        .export(ORDERS, &admin, &[("accept-encoding", "gzip")])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-encoding"), "gzip");
    assert_eq!(header(&response, "content-type"), "application/x-ndjson");
    let compressed = response.bytes().await.expect("body");
    let mut decoded = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut decoded)
        .expect("valid gzip");
    assert_eq!(ndjson(&decoded).len(), 500);
    assert_eq!(decoded, plain);
    assert!(
        compressed.len() * 4 < plain.len(),
        "{} of {}",
        compressed.len(),
        plain.len()
    );

    let response = app
        .export(ORDERS, &admin, &[("accept-encoding", "br")])
        .await;
    assert_eq!(header(&response, "content-encoding"), "br");
    let plain = app.export(ORDERS, &admin, &[]).await;
    assert!(
        plain.headers().get("content-encoding").is_none(),
        "identity unless asked"
    );
}

#[tokio::test]
async fn from_and_to_select_rows_created_in_a_half_open_range() {
    let app = TestApp::spawn_with(&[("export_batch_size", json!(2))]).await;
    let admin = app.admin_token().await;
    // One order a second from 00:00:00 to 00:00:09.
    app.bulk_orders(10, "2026-01-01T00:00:00Z").await;
    let created = |path: &str| {
        let path = path.to_owned();
        let app = &app;
        let admin = &admin;
        async move {
            ndjson(&app.export_text(&path, admin).await)
                .iter()
                .map(|o| o["created_at"].as_str().expect("at")[11..19].to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        created(&format!(
            "{ORDERS}?from=2026-01-01T00:00:03Z&to=2026-01-01T00:00:07Z"
        ))
        .await,
        ["00:00:03", "00:00:04", "00:00:05", "00:00:06"],
        "from included, to excluded"
    );
    assert_eq!(
        created(&format!("{ORDERS}?from=2026-01-01T02:00:08%2B02:00")).await,
        ["00:00:08", "00:00:09"],
        "an offset other than Z"
    );
    assert_eq!(
        created(&format!("{ORDERS}?to=2026-01-01T00:00:01Z&format=ndjson")).await,
        ["00:00:00"]
    );
    assert!(
        created(&format!("{ORDERS}?from=2027-01-01T00:00:00Z"))
            .await
            .is_empty()
    );
    let users = ndjson(
        &app.export_text(&format!("{USERS}?to=2026-01-01T00:00:00Z"), &admin)
            .await,
    );
    assert!(users.is_empty(), "every user was created after 2026-01-01");
}

#[tokio::test]
async fn customers_are_forbidden_and_anonymous_callers_unauthenticated() {
    let app = TestApp::spawn().await;
    let customer = access(&app.register("ada@example.com").await);
    for path in [USERS, ORDERS] {
        problem(
            app.export(path, &customer, &[]).await,
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
        )
        .await;
        problem(
            app.export(&format!("{path}?format=xlsx"), &customer, &[])
                .await,
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
        )
        .await;
        problem(
            app.get_public(path).await,
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
        )
        .await;
    }
}

#[tokio::test]
async fn an_unknown_format_a_bad_timestamp_or_an_empty_range_is_422_naming_the_field() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    for (query, expected) in [
        ("format=xml", vec!["format"]),
        ("format=CSV", vec!["format"]),
        ("from=yesterday", vec!["from"]),
        ("to=2026-01-01", vec!["to"]),
        ("format=xlsx&from=nope", vec!["format", "from"]),
        (
            "from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            vec!["to"],
        ),
        (
            "from=2026-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            vec!["to"],
        ),
        ("colour=red", vec!["query"]),
    ] {
        for path in [USERS, ORDERS] {
            let body = problem(
                app.export(&format!("{path}?{query}"), &admin, &[]).await,
                StatusCode::UNPROCESSABLE_ENTITY,
                "VALIDATION_FAILED",
            )
            .await;
            assert_eq!(fields(&body), expected, "{path}?{query}");
        }
    }
}

#[tokio::test]
async fn an_export_streams_on_past_the_request_timeout_to_a_slow_reader() {
    let timeout = Duration::from_millis(250);
    // One row per query: the export takes far longer than the timeout on the server's side alone.
    let app = TestApp::spawn_with(&[
        ("request_timeout_ms", json!(timeout.as_millis() as u64)),
        ("export_batch_size", json!(1)),
    ])
    .await;
    let admin = app.admin_token().await;
    app.bulk_orders(1500, "2026-01-01T00:00:00Z").await;

    let mut response = app
        .export(&format!("{ORDERS}?format=csv"), &admin, &[])
        .await;
    let head = Instant::now();
    assert_eq!(response.status(), StatusCode::OK);
    // A slow reader: nothing for a while, then small reads.
    tokio::time::sleep(timeout * 2).await;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.expect("the stream is not cut") {
        body.extend_from_slice(&chunk);
    }
    let streamed_for = head.elapsed();

    let (_, rows) = csv_records(&String::from_utf8(body).expect("utf-8"));
    assert_eq!(rows.len(), 1500, "every row, after {streamed_for:?}");
    assert!(
        streamed_for > timeout * 3,
        "the export must outlive the timeout for this test to mean anything: {streamed_for:?}"
    );
}

#[tokio::test]
async fn a_client_that_disconnects_mid_stream_leaves_no_connection_checked_out() {
    // A few rows per query: thousands of queries to go when the client leaves.
    let app = TestApp::spawn_with(&[("export_batch_size", json!(5))]).await;
    let admin = app.admin_token().await;
    app.bulk_orders(20_000, "2026-01-01T00:00:00Z").await;
    assert_eq!(app.connections_in_use(), 0);

    let address = app.address.trim_start_matches("http://").to_owned();
    let mut client = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    client
        .write_all(
            format!(
                "GET {ORDERS} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {admin}\r\n\
                 Connection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("request sent");
    let mut received = vec![0u8; 16 * 1024];
    let mut read = 0;
    while read < 4096 {
        let n = client.read(&mut received[read..]).await.expect("read");
        assert!(n > 0, "the server closed early");
        read += n;
    }
    assert!(String::from_utf8_lossy(&received[..read]).starts_with("HTTP/1.1 200 OK"));
    drop(client);

    // Back to no connection in use within a few seconds, and staying there: nothing is querying.
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.connections_in_use() != 0 {
        assert!(
            Instant::now() < deadline,
            "a connection is still checked out: {:?}",
            app.components.database.pool_stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            app.connections_in_use(),
            0,
            "the export went on after the client left"
        );
    }
    let active: Vec<String> = {
        use diesel::QueryableByName;
        use diesel_async::RunQueryDsl;
        #[derive(QueryableByName)]
        struct Query {
            #[diesel(sql_type = diesel::sql_types::Text)]
            query: String,
        }
        let mut conn = app
            .components
            .database
            .connection()
            .await
            .expect("connection");
        diesel::sql_query(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database() \
             AND state = 'active' AND pid <> pg_backend_pid()",
        )
        .load::<Query>(&mut conn)
        .await
        .expect("pg_stat_activity")
        .into_iter()
        .map(|row| row.query)
        .collect()
    };
    assert!(active.is_empty(), "queries still running: {active:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_beyond_the_concurrency_bound_are_refused_with_503_until_one_ends() {
    let app = TestApp::spawn_with(&[
        ("export_batch_size", json!(5)),
        ("max_concurrent_exports", json!(1)),
    ])
    .await;
    let admin = app.admin_token().await;
    app.bulk_orders(20_000, "2026-01-01T00:00:00Z").await;

    // The first export streams (slowly: five rows per query) while the client reads a little.
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut first = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    first
        .write_all(
            format!(
                "GET {ORDERS} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {admin}\r\n\
                 Connection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("request sent");
    let mut head = vec![0u8; 4096];
    let n = first.read(&mut head).await.expect("read");
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200 OK"));

    let second = app.get(ORDERS, &admin).await;
    assert!(second.headers().get("retry-after").is_some());
    problem(
        second,
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
    )
    .await;

    // The slot is freed when the first body is dropped.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let third = app
            .get(&format!("{ORDERS}?to=2026-01-01T00:00:01Z"), &admin)
            .await;
        if third.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "the slot was never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
