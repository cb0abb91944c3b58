//! The OpenAPI document: committed and current, 3.1, covering every mounted route and every
//! problem code, with a `Problem` schema that matches what `ApiError` serialises; and the docs
//! page served offline.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::ResponseError;
use actix_web::body::MessageBody;
use actix_web::dev::{ResourceMap, Service};
use actix_web::http::{Method, StatusCode, header};
use actix_web::test::{self, TestRequest};
use serde_json::Value;
use strata_domain::{FieldError, Role, ValidationErrors};
use strata_http::docs as openapi;
use strata_http::edge::{Budgets, Edge, EdgeSettings, GroupBudget};
use strata_http::headers::DOCS_CSP;
use strata_http::{
    ApiError, AppState, Health, ProblemCode, auth, billing, build_app, catalog, orders, users,
};
use strata_ports::{MockAnalyticsRepository, MockJobQueue, MockReportRepository};
use strata_ports::{
    MockCache, MockExportRepository, MockHealthCheck, MockOrderRepository, MockPlanRepository,
    MockProductRepository, MockRateLimiter, MockRefreshTokenRepository, MockSubscriptionRepository,
    MockTokenBlacklist, MockUserRepository, PortError, RateLimit,
};
use strata_services::tokens::Algorithm;
use strata_services::{
    Argon2Hasher, Argon2Settings, AuthService, AuthSettings, CatalogService, CursorCodec,
    ExportService, JwtCodec, JwtSettings, OrderService, SubscriptionService, SystemClock,
    UserService, UuidV7Ids,
};
use strata_services::{DashboardService, DashboardSettings, ReportService};

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
}

fn generated() -> String {
    openapi::to_pretty_json(&strata_http::document()).expect("the document serialises")
}

fn document() -> Value {
    serde_json::from_str(&generated()).expect("the document is JSON")
}

/// Every `(METHOD, path template)` of the document.
fn operations(document: &Value) -> BTreeMap<(String, String), Value> {
    let mut operations = BTreeMap::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            if [
                "get", "put", "post", "delete", "patch", "head", "options", "trace",
            ]
            .contains(&method.as_str())
            {
                operations.insert((method.to_uppercase(), path.clone()), operation.clone());
            }
        }
    }
    operations
}

#[test]
fn the_committed_document_is_current() {
    let committed = std::fs::read_to_string(committed_path()).unwrap_or_default();
    assert!(
        committed == generated(),
        "docs/openapi.json is stale (or missing): the code describes another API; run cargo \
         xtask openapi, and commit docs/openapi.json"
    );
}

#[test]
fn the_document_declares_openapi_3_1() {
    let document = document();
    let version = document["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3.1."), "{version}");
    assert_eq!(document["info"]["title"], "Strata API");
}

/// The SPEC §3 endpoints this release implements, plus the operational ones.
const SPEC_ENDPOINTS: &[(&str, &str)] = &[
    ("POST", "/v1/auth/register"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/refresh"),
    ("POST", "/v1/auth/logout"),
    ("GET", "/v1/users/me"),
    ("PATCH", "/v1/users/me"),
    ("GET", "/v1/users"),
    ("GET", "/v1/users/{id}"),
    ("GET", "/v1/products"),
    ("GET", "/v1/products/{id}"),
    ("POST", "/v1/products"),
    ("PATCH", "/v1/products/{id}"),
    ("DELETE", "/v1/products/{id}"),
    ("POST", "/v1/products/{id}/stock"),
    ("POST", "/v1/orders"),
    ("GET", "/v1/orders"),
    ("GET", "/v1/orders/{id}"),
    ("POST", "/v1/orders/{id}/cancel"),
    ("POST", "/v1/orders/{id}/fulfill"),
    ("GET", "/v1/plans"),
    ("POST", "/v1/subscriptions"),
    ("GET", "/v1/subscriptions/me"),
    ("GET", "/v1/subscriptions/me/proration"),
    ("POST", "/v1/subscriptions/me/change-plan"),
    ("POST", "/v1/subscriptions/me/cancel"),
    ("GET", "/v1/invoices"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/health"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/v1/admin/exports/users"),
    ("GET", "/v1/admin/exports/orders"),
    ("GET", "/v1/admin/dashboard"),
    ("POST", "/v1/admin/reports"),
    ("GET", "/v1/admin/reports/{id}"),
];

#[test]
fn every_spec_endpoint_is_documented() {
    let operations = operations(&document());
    let missing: Vec<_> = SPEC_ENDPOINTS
        .iter()
        .filter(|(method, path)| {
            !operations.contains_key(&((*method).to_owned(), (*path).to_owned()))
        })
        .collect();
    assert!(missing.is_empty(), "undocumented: {missing:?}");
}

#[test]
fn every_operation_has_an_id_a_declared_tag_a_summary_and_its_problems() {
    let document = document();
    let declared: BTreeSet<&str> = document["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|tag| tag["name"].as_str())
        .collect();
    let mut ids = BTreeSet::new();
    for ((method, path), operation) in operations(&document) {
        let id = operation["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
        assert!(
            operation["tags"].as_array().is_some_and(|t| !t.is_empty()),
            "{method} {path} has no tag"
        );
        assert!(
            operation["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{method} {path} has no summary (the handler's doc comment)"
        );
        for tag in operation["tags"].as_array().into_iter().flatten() {
            let tag = tag.as_str().unwrap_or_default();
            assert!(
                declared.contains(tag),
                "{method} {path}: the tag {tag} is declared by no area (Routes::tag)"
            );
        }
        for status in ["500", "503"] {
            assert!(
                operation["responses"].get(status).is_some(),
                "{method} {path} does not document {status}"
            );
        }
        if path.starts_with("/v1/") {
            assert!(
                operation["responses"].get("429").is_some(),
                "{method} {path}"
            );
        }
        if operation.get("requestBody").is_some() {
            for status in ["400", "413", "415", "422"] {
                assert!(
                    operation["responses"].get(status).is_some(),
                    "{method} {path} {status}"
                );
            }
        }
    }
}

/// The value of every problem example, resolving `$ref`s into `components.examples`.
fn problem_examples<'a>(document: &'a Value, response: &'a Value) -> Vec<&'a Value> {
    let response = resolve(document, response);
    let Some(examples) = response["content"]["application/problem+json"]["examples"].as_object()
    else {
        return Vec::new();
    };
    examples
        .values()
        .map(|example| &resolve(document, example)["value"])
        .collect()
}

fn resolve<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => document
            .pointer(reference.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling $ref {reference}")),
        None => value,
    }
}

#[test]
fn every_problem_code_is_answered_somewhere_with_the_catalogue_s_title_and_status() {
    let document = document();
    let mut in_operations = BTreeSet::new();
    for ((method, path), operation) in operations(&document) {
        for (status, response) in operation["responses"].as_object().expect("responses") {
            for example in problem_examples(&document, response) {
                let code = example["code"].as_str().expect("code");
                let problem = ProblemCode::ALL
                    .into_iter()
                    .find(|c| c.as_str() == code)
                    .unwrap_or_else(|| panic!("{method} {path}: unknown code {code}"));
                let (expected_status, _, title) = problem.describe();
                assert_eq!(
                    status,
                    &expected_status.as_u16().to_string(),
                    "{method} {path} {code}"
                );
                assert_eq!(example["status"], expected_status.as_u16());
                assert_eq!(example["title"], title);
                assert_eq!(example["type"], problem.type_uri());
                in_operations.insert(code.to_owned());
            }
        }
    }
    let mut in_catalogue = BTreeSet::new();
    for response in document["components"]["responses"]
        .as_object()
        .expect("components.responses")
        .values()
    {
        for example in problem_examples(&document, response) {
            in_catalogue.insert(example["code"].as_str().expect("code").to_owned());
        }
    }
    for code in ProblemCode::ALL {
        assert!(
            in_catalogue.contains(code.as_str()),
            "{} is not in components.responses",
            code.as_str()
        );
        // A 405 answers a method no operation has, so only the catalogue can show it.
        if code != ProblemCode::MethodNotAllowed {
            assert!(
                in_operations.contains(code.as_str()),
                "no operation documents {}",
                code.as_str()
            );
        }
    }
}

#[test]
fn the_problem_schema_is_what_api_error_serialises() {
    let document = document();
    let schema = &document["components"]["schemas"]["Problem"];
    let properties: BTreeSet<&str> = schema["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .map(String::as_str)
        .collect();
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .expect("required")
        .iter()
        .map(|r| r.as_str().expect("name"))
        .collect();
    let field_properties: BTreeSet<&str> =
        document["components"]["schemas"]["FieldError"]["properties"]
            .as_object()
            .expect("FieldError")
            .keys()
            .map(String::as_str)
            .collect();
    let with_errors = ApiError::validation(ValidationErrors(vec![FieldError::new(
        "email",
        "invalid_email",
        "must be a valid email address",
    )]));
    let without_errors = ApiError::new(ProblemCode::NotFound, "no such product");
    for error in [with_errors, without_errors] {
        let response = error.error_response();
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            openapi::PROBLEM_JSON
        );
        let bytes = response.into_body().try_into_bytes().unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        let keys: BTreeSet<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert!(keys.is_subset(&properties), "{keys:?} ⊄ {properties:?}");
        assert!(required.is_subset(&keys), "{required:?} ⊄ {keys:?}");
        for field in body["errors"].as_array().into_iter().flatten() {
            let keys: BTreeSet<&str> = field
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(keys, field_properties);
        }
    }
    let codes: BTreeSet<&str> = schema["properties"]["code"]["enum"]
        .as_array()
        .expect("code enum")
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let all: BTreeSet<&str> = ProblemCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(codes, all);
}

/// Deserialises every example of a request schema into the DTO it documents, so that an example
/// can never name a field the API refuses.
#[test]
fn request_examples_are_accepted_by_their_dtos() {
    fn check<T: serde::de::DeserializeOwned>(document: &Value, name: &str) -> usize {
        let examples = document["components"]["schemas"][name]["examples"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has no examples"));
        for example in examples {
            serde_json::from_value::<T>(example.clone())
                .unwrap_or_else(|e| panic!("{name} example {example}: {e}"));
        }
        examples.len()
    }
    let document = document();
    let checked = check::<auth::dto::RegisterRequest>(&document, "RegisterRequest")
        + check::<auth::dto::LoginRequest>(&document, "LoginRequest")
        + check::<auth::dto::RefreshRequest>(&document, "RefreshRequest")
        + check::<users::dto::UpdateMeRequest>(&document, "UpdateMeRequest")
        + check::<catalog::dto::PriceRequest>(&document, "MoneyInput")
        + check::<catalog::dto::CreateProductRequest>(&document, "CreateProductRequest")
        + check::<catalog::dto::UpdateProductRequest>(&document, "UpdateProductRequest")
        + check::<catalog::dto::StockAdjustRequest>(&document, "StockAdjustRequest")
        + check::<orders::dto::PlaceOrderRequest>(&document, "PlaceOrderRequest")
        + check::<billing::dto::PlanChoiceRequest>(&document, "PlanChoiceRequest")
        + check::<billing::dto::CancelSubscriptionRequest>(&document, "CancelSubscriptionRequest");
    assert!(checked >= 11);
}

#[tokio::test]
async fn the_health_report_schema_matches_the_report() {
    let mut down = MockHealthCheck::new();
    down.expect_name().return_const("redis");
    down.expect_ping()
        .returning(|| Err(PortError::unavailable(anyhow::anyhow!("down"))));
    let health = Health::new(vec![Arc::new(down)], Duration::from_millis(100));
    let report = serde_json::to_value(health.deep_check().await).unwrap();
    let document = document();
    let keys = |value: &Value| -> BTreeSet<String> {
        value.as_object().unwrap().keys().cloned().collect()
    };
    let schema_keys = |name: &str| -> BTreeSet<String> {
        keys(&document["components"]["schemas"][name]["properties"])
    };
    assert_eq!(keys(&report), schema_keys("HealthReport"));
    assert_eq!(keys(&report["checks"][0]), schema_keys("DependencyCheck"));
}

// ---- The app itself ----

/// An app whose ports are mocks: enough to route every request, and to answer the public reads
/// that reach a service.
fn state() -> AppState {
    let clock = Arc::new(SystemClock);
    let ids = Arc::new(UuidV7Ids);
    let jwt = Arc::new(
        JwtCodec::new(JwtSettings {
            issuer: "strata".into(),
            audience: "strata-api".into(),
            access_ttl: Duration::from_secs(900),
            algorithm: Algorithm::HS256,
            kid: None,
            key: strata_services::tokens::JwtKey::Hmac(
                b"0123456789abcdef0123456789abcdef".to_vec(),
            ),
            previous_keys: Vec::new(),
        })
        .unwrap(),
    );
    let hasher = Arc::new(
        Argon2Hasher::new(&Argon2Settings {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
            ..Argon2Settings::default()
        })
        .unwrap(),
    );
    let mut cache = MockCache::new();
    cache.expect_get().returning(|_| Ok(None));
    cache.expect_set().returning(|_, _, _| Ok(()));
    cache.expect_delete().returning(|_| Ok(()));
    cache.expect_delete_many().returning(|_| Ok(()));
    let cache = Arc::new(cache);
    let mut plans = MockPlanRepository::new();
    plans.expect_list().returning(|| Ok(Vec::new()));
    let cursors = CursorCodec::new(b"cursor key");
    let users = Arc::new(MockUserRepository::new());
    let refresh_tokens = Arc::new(MockRefreshTokenRepository::new());
    let limit = RateLimit {
        limit: 1000,
        window: Duration::from_secs(60),
    };
    let group = GroupBudget {
        anonymous: limit,
        user: limit,
    };
    let auth = Arc::new(AuthService::new(
        users.clone(),
        refresh_tokens.clone(),
        Arc::new(MockTokenBlacklist::new()),
        hasher.clone(),
        clock.clone(),
        ids.clone(),
        jwt,
        AuthSettings::default(),
    ));
    AppState {
        users: Arc::new(UserService::new(
            users,
            refresh_tokens,
            cache.clone(),
            hasher,
            clock.clone(),
            cursors.clone(),
            Duration::from_secs(60),
            auth.access_revocation(),
        )),
        auth,
        catalog: Arc::new(CatalogService::new(
            Arc::new(MockProductRepository::new()),
            cache.clone(),
            clock.clone(),
            ids.clone(),
            cursors.clone(),
            Duration::from_secs(60),
        )),
        orders: Arc::new(OrderService::new(
            Arc::new(MockOrderRepository::new()),
            cache.clone(),
            clock.clone(),
            ids.clone(),
            cursors.clone(),
            Duration::from_secs(86_400),
        )),
        exports: Arc::new(ExportService::new(
            Arc::new(MockExportRepository::new()),
            clock.clone(),
            100,
        )),
        dashboard: Arc::new(DashboardService::new(
            Arc::new(MockAnalyticsRepository::new()),
            cache.clone(),
            clock.clone(),
            DashboardSettings {
                ttl: Duration::from_secs(30),
                low_stock_threshold: 10,
            },
        )),
        reports: Arc::new(ReportService::new(
            Arc::new(MockReportRepository::new()),
            Arc::new(MockJobQueue::new()),
            clock.clone(),
            ids.clone(),
        )),
        subscriptions: Arc::new(SubscriptionService::new(
            Arc::new(plans),
            Arc::new(MockSubscriptionRepository::new()),
            cache,
            clock,
            ids,
            cursors,
            Duration::from_secs(60),
            Duration::from_secs(86_400),
        )),
        edge: Arc::new(Edge::new(
            EdgeSettings {
                rate_limiting: false,
                fail_open: true,
                budgets: Budgets {
                    read: group,
                    write: group,
                    auth_ip: limit,
                    auth_email: limit,
                },
                trusted_proxies: Vec::new(),
                ipv6_budget_prefix: 64,
                request_timeout: Duration::from_secs(10),
                max_in_flight: 64,
                max_concurrent_exports: 4,
                compress_min_bytes: 1024,
                cors_origins: Vec::new(),
                hsts_max_age_secs: None,
            },
            Arc::new(MockRateLimiter::new()),
        )),
        health: Arc::new(Health::new(Vec::new(), Duration::from_millis(100))),
    }
}

/// A concrete path for a template: every `{param}` becomes a value no handler can find.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "probe-0"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// An actix pattern in the document's syntax: `{id:[0-9]{2}}` is `{id}` there.
fn as_documented(pattern: &str) -> String {
    let mut template = String::with_capacity(pattern.len());
    let (mut depth, mut in_regex) = (0, false);
    for c in pattern.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ':' if depth == 1 => in_regex = true,
            _ => {}
        }
        if in_regex && depth == 0 {
            in_regex = false;
        }
        if !in_regex {
            template.push(c);
        }
    }
    template
}

/// One value of a `{:?}` rendering: its leading name or string (`ResourceDef`, `Some`, `"/v1"`)
/// and the entries of the group after it, each with its field name or map key.
#[derive(Debug, Default)]
struct Rendered {
    head: String,
    entries: Vec<(Option<String>, Rendered)>,
}

impl Rendered {
    fn field(&self, name: &str) -> &Rendered {
        self.entries
            .iter()
            .find(|(key, _)| key.as_deref() == Some(name))
            .map(|(_, value)| value)
            .unwrap_or_else(|| panic!("no field {name} in {}", self.head))
    }

    fn only(&self) -> &Rendered {
        match self.entries.as_slice() {
            [(None, value)] => value,
            _ => panic!("{} does not hold exactly one value", self.head),
        }
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Punct(char),
}

const PUNCTUATION: &str = "{}()[],:";

fn tokens(rendering: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = rendering.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        if PUNCTUATION.contains(c) {
            tokens.push(Token::Punct(c));
        } else if c == '"' {
            let mut text = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => text.extend(chars.next()),
                    '"' => break,
                    c => text.push(c),
                }
            }
            tokens.push(Token::Text(text));
        } else {
            let mut word = String::from(c);
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '"' || PUNCTUATION.contains(c) {
                    break;
                }
                word.push(c);
                chars.next();
            }
            tokens.push(Token::Word(word));
        }
    }
    tokens
}

fn parse(tokens: &[Token], at: &mut usize) -> Rendered {
    let mut value = Rendered::default();
    if let Some(Token::Word(head) | Token::Text(head)) = tokens.get(*at) {
        value.head = head.clone();
        *at += 1;
    }
    let close = match tokens.get(*at) {
        Some(Token::Punct('{')) => '}',
        Some(Token::Punct('(')) => ')',
        Some(Token::Punct('[')) => ']',
        _ => return value,
    };
    *at += 1;
    while tokens.get(*at) != Some(&Token::Punct(close)) {
        let before = *at;
        let first = parse(tokens, at);
        let entry = if tokens.get(*at) == Some(&Token::Punct(':')) {
            *at += 1;
            (Some(first.head), parse(tokens, at))
        } else {
            (None, first)
        };
        value.entries.push(entry);
        if tokens.get(*at) == Some(&Token::Punct(',')) {
            *at += 1;
        }
        assert!(
            *at > before && *at < tokens.len(),
            "unreadable rendering near token {before}: {:?}",
            tokens.get(before)
        );
    }
    *at += 1;
    value
}

/// Every full pattern a request can be routed to, read from actix's resource map: the tree of
/// scopes (nodes with children) and resources (leaves), each with its own pattern(s). actix keeps
/// the tree's fields private and has no iterator over it; its `Debug` rendering is the one public
/// view of the whole tree, so this reads that (and the test checks each pattern read against
/// actix's own matching).
fn mounted_patterns(map: &ResourceMap) -> BTreeSet<String> {
    fn walk(node: &Rendered, prefix: &str, patterns: &mut BTreeSet<String>) {
        assert_eq!(node.head, "ResourceMap");
        let own = node.field("pattern").field("patterns");
        let own: Vec<&str> = match own.head.as_str() {
            "Single" => vec![own.only().head.as_str()],
            "List" => own
                .only()
                .entries
                .iter()
                .map(|(_, pattern)| pattern.head.as_str())
                .collect(),
            other => panic!("patterns rendered as {other}"),
        };
        let children = node.field("nodes");
        for pattern in own {
            let full = format!("{prefix}{pattern}");
            match children.head.as_str() {
                "None" => {
                    patterns.insert(full);
                }
                "Some" => {
                    for (_, child) in &children.only().entries {
                        walk(child, &full, patterns);
                    }
                }
                other => panic!("nodes rendered as {other}"),
            }
        }
    }
    let tokens = tokens(&format!("{map:?}"));
    let mut patterns = BTreeSet::new();
    walk(&parse(&tokens, &mut 0), "", &mut patterns);
    patterns
}

#[test]
fn an_actix_pattern_is_written_as_the_document_writes_it() {
    assert_eq!(as_documented("/v1/products/{id}"), "/v1/products/{id}");
    assert_eq!(
        as_documented("/v1/orders/{id:[0-9a-f-]+}/cancel"),
        "/v1/orders/{id}/cancel"
    );
    assert_eq!(
        as_documented("/v1/codes/{code:[A-Z]{2}}"),
        "/v1/codes/{code}"
    );
    assert_eq!(as_documented("/a:b/{x}"), "/a:b/{x}");
}

/// Walks every pattern the built app mounts (actix's resource map) and asks each for its methods
/// with one no route takes: actix answers 405 with `Allow` listing the methods its routes were
/// registered with. The `(method, pattern)` pairs found must be exactly the document's
/// operations, both ways; nothing is exempt (the docs pages, health probes and problem pages are
/// documented like the rest).
#[actix_web::test]
async fn the_documented_routes_are_exactly_the_mounted_ones() {
    let app = test::init_service(build_app(state())).await;
    let any = test::call_service(&app, TestRequest::get().uri("/health/live").to_request()).await;
    let patterns = mounted_patterns(any.request().resource_map());
    let unregistered = Method::from_bytes(b"PROBE").unwrap();
    let mut mounted = BTreeSet::new();
    let mut problems = Vec::new();
    for pattern in &patterns {
        let path = concrete(pattern);
        let request = TestRequest::default()
            .method(unregistered.clone())
            .uri(&path)
            .to_request();
        let response = app.call(request).await.expect("a response");
        let matched = response.request().match_pattern();
        if matched.as_deref() != Some(pattern.as_str()) {
            problems.push(format!("{pattern}: {path} is routed to {matched:?}"));
            continue;
        }
        if response.status() != StatusCode::METHOD_NOT_ALLOWED {
            problems.push(format!(
                "{pattern}: answers {unregistered} with {} (a route that takes any method)",
                response.status()
            ));
            continue;
        }
        let allow = response
            .headers()
            .get(header::ALLOW)
            .and_then(|allow| allow.to_str().ok())
            .unwrap_or_default();
        for method in allow.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            mounted.insert((method.to_owned(), as_documented(pattern)));
        }
    }
    let documented: BTreeSet<(String, String)> = operations(&document()).into_keys().collect();
    for (method, path) in mounted.difference(&documented) {
        problems.push(format!("{method} {path}: mounted, undocumented"));
    }
    for (method, path) in documented.difference(&mounted) {
        problems.push(format!("{method} {path}: documented, not mounted"));
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[actix_web::test]
async fn openapi_json_serves_the_committed_document_with_an_etag() {
    let app = test::init_service(build_app(state())).await;
    let response =
        test::call_service(&app, TestRequest::get().uri("/openapi.json").to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers().get(header::CONTENT_TYPE).unwrap(),
        "application/json"
    );
    let etag = response.headers().get(header::ETAG).unwrap().clone();
    let body = test::read_body(response).await;
    assert_eq!(std::str::from_utf8(&body).unwrap(), generated());

    let again = TestRequest::get()
        .uri("/openapi.json")
        .insert_header((header::IF_NONE_MATCH, etag))
        .to_request();
    let response = test::call_service(&app, again).await;
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
}

#[actix_web::test]
async fn the_docs_page_and_everything_it_loads_are_served_from_the_binary() {
    let app = test::init_service(build_app(state())).await;
    let response = test::call_service(&app, TestRequest::get().uri("/docs").to_request()).await;
    assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(response.headers().get(header::LOCATION).unwrap(), "/docs/");

    let response = test::call_service(&app, TestRequest::get().uri("/docs/").to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response
            .headers()
            .get(header::CONTENT_TYPE)
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(
        response
            .headers()
            .get(header::CONTENT_SECURITY_POLICY)
            .unwrap(),
        DOCS_CSP,
        "the docs page gets a policy that lets its own scripts run"
    );
    let page = String::from_utf8(test::read_body(response).await.to_vec()).unwrap();
    let assets: Vec<&str> = page
        .split(['"', '\''])
        .filter(|part| {
            [".js", ".css", ".png"]
                .iter()
                .any(|extension| part.ends_with(extension))
        })
        .collect();
    assert!(assets.len() >= 4, "{assets:?}");
    let mut scripts = String::new();
    for asset in assets.iter().copied().chain(["swagger-initializer.js"]) {
        assert!(
            !asset.contains("//"),
            "the page loads {asset} from elsewhere; it must work offline"
        );
        let uri = format!("/docs/{}", asset.trim_start_matches("./"));
        let response = test::call_service(&app, TestRequest::get().uri(&uri).to_request()).await;
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
        if asset.ends_with("initializer.js") {
            scripts = String::from_utf8(test::read_body(response).await.to_vec()).unwrap();
        }
    }
    assert!(scripts.contains("\"/openapi.json\""), "{scripts}");
    assert!(!scripts.contains("petstore"), "{scripts}");
    assert!(scripts.contains("\"validatorUrl\": \"none\""), "{scripts}");

    let response = test::call_service(
        &app,
        TestRequest::get().uri("/docs/nothing.js").to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        response.headers().get(header::CONTENT_TYPE).unwrap(),
        openapi::PROBLEM_JSON
    );
    let api = test::call_service(&app, TestRequest::get().uri("/health/live").to_request()).await;
    assert_ne!(
        api.headers().get(header::CONTENT_SECURITY_POLICY).unwrap(),
        DOCS_CSP,
        "the API keeps its own, stricter policy"
    );
}

#[test]
fn the_role_enumeration_is_the_domain_s() {
    let document = document();
    let roles = &document["components"]["schemas"]["User"]["properties"]["role"]["enum"];
    assert_eq!(
        roles,
        &serde_json::json!([Role::Customer.as_str(), Role::Admin.as_str()])
    );
}

// ---- What the document calls valid is what the server accepts ----

/// Whether `value` is valid under `schema`, for the JSON Schema keywords the document's request
/// schemas use. `pattern` and `format` are not evaluated (no regex engine here): samples that
/// depend on them do not belong in the tables below.
fn valid(document: &Value, schema: &Value, value: &Value) -> bool {
    let schema = resolve(document, schema);
    if schema == &Value::Bool(false) {
        return false;
    }
    let Some(rules) = schema.as_object() else {
        return true;
    };
    let types: Vec<&str> = match rules.get("type") {
        Some(Value::String(name)) => vec![name.as_str()],
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let type_matches = |name: &str| match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "number" => value.is_number(),
        // JSON Schema: any number with a zero fractional part.
        "integer" => value.as_f64().is_some_and(|n| n.fract() == 0.0),
        _ => true,
    };
    if !types.is_empty() && !types.iter().any(|name| type_matches(name)) {
        return false;
    }
    if let Some(constant) = rules.get("const") {
        // Numbers are equal when their values are (0 and 0.0 are one number).
        let equal = match (constant.as_f64(), value.as_f64()) {
            (Some(a), Some(b)) => a == b,
            _ => constant == value,
        };
        if !equal {
            return false;
        }
    }
    let bound = |key: &str| rules.get(key).and_then(Value::as_f64);
    if let Some(values) = rules.get("enum").and_then(Value::as_array)
        && !values.contains(value)
    {
        return false;
    }
    if let Some(text) = value.as_str() {
        let chars = text.chars().count() as f64;
        if bound("minLength").is_some_and(|min| chars < min)
            || bound("maxLength").is_some_and(|max| chars > max)
        {
            return false;
        }
    }
    if let Some(number) = value.as_f64()
        && (bound("minimum").is_some_and(|min| number < min)
            || bound("maximum").is_some_and(|max| number > max))
    {
        return false;
    }
    if let Some(object) = value.as_object() {
        let properties = rules.get("properties").and_then(Value::as_object);
        for name in rules
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !object.contains_key(name.as_str().unwrap_or_default()) {
                return false;
            }
        }
        if bound("minProperties").is_some_and(|min| (object.len() as f64) < min) {
            return false;
        }
        for (name, needs) in rules
            .get("dependentRequired")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if object.contains_key(name)
                && needs
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|need| !object.contains_key(need.as_str().unwrap_or_default()))
            {
                return false;
            }
        }
        for (name, field) in object {
            let allowed = match properties.and_then(|p| p.get(name)) {
                Some(property) => valid(document, property, field),
                None => rules.get("additionalProperties") != Some(&Value::Bool(false)),
            };
            if !allowed {
                return false;
            }
        }
    }
    let all = |key: &str| {
        rules
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    };
    if !all("allOf").all(|part| valid(document, part, value)) {
        return false;
    }
    if rules.contains_key("anyOf") && !all("anyOf").any(|part| valid(document, part, value)) {
        return false;
    }
    if rules.contains_key("oneOf")
        && all("oneOf")
            .filter(|part| valid(document, part, value))
            .count()
            != 1
    {
        return false;
    }
    if rules
        .get("not")
        .is_some_and(|part| valid(document, part, value))
    {
        return false;
    }
    true
}

fn schema_ref(name: &str) -> Value {
    serde_json::json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// Bodies the server refuses with 422 for a reason a schema can state (each is also refused in
/// the API tests), and bodies it accepts; the document must agree on every one.
#[test]
fn request_schemas_refuse_what_the_server_refuses_and_accept_what_it_accepts() {
    use serde_json::json;
    let document = document();
    let refused = [
        ("RefreshRequest", json!({})),
        ("RefreshRequest", json!({"refresh_token": ""})),
        (
            "LoginRequest",
            json!({"email": "ada@example.com", "password": ""}),
        ),
        ("UpdateProductRequest", json!({})),
        ("UpdateProductRequest", json!({"name": null})),
        (
            "UpdateProductRequest",
            json!({"name": "Lamp", "description": null}),
        ),
        ("UpdateProductRequest", json!({"price": null})),
        ("UpdateMeRequest", json!({})),
        ("UpdateMeRequest", json!({"display_name": null})),
        (
            "UpdateMeRequest",
            json!({"current_password": "correct horse battery"}),
        ),
        (
            "UpdateMeRequest",
            json!({"password": "a new long passphrase"}),
        ),
        (
            "UpdateMeRequest",
            json!({"display_name": "Ada", "password": "a new long passphrase"}),
        ),
        (
            "UpdateMeRequest",
            json!({"password": "a new long passphrase", "current_password": ""}),
        ),
        (
            "UpdateMeRequest",
            json!({"display_name": "Ada", "current_password": ""}),
        ),
        ("MoneyInput", json!({"amount_minor": 1, "currency": "EBI"})),
        ("MoneyInput", json!({"amount_minor": 1, "currency": "usd"})),
        ("StockAdjustRequest", json!({"delta": 1.5})),
        ("StockAdjustRequest", json!({"delta": 0})),
        ("StockAdjustRequest", json!({"delta": 0.0})),
    ];
    let accepted = [
        ("RefreshRequest", json!({"refresh_token": "q3V8cW1z"})),
        ("UpdateProductRequest", json!({"name": "Lamp"})),
        ("UpdateProductRequest", json!({"active": false})),
        ("UpdateMeRequest", json!({"display_name": "Ada"})),
        (
            "UpdateMeRequest",
            json!({"password": "a new long passphrase", "current_password": "x"}),
        ),
        (
            "UpdateMeRequest",
            json!({"display_name": "Ada", "password": "a new long passphrase", "current_password": "x"}),
        ),
        (
            "UpdateMeRequest",
            json!({"display_name": "Ada", "current_password": "x"}),
        ),
        ("MoneyInput", json!({"amount_minor": 1, "currency": "EUR"})),
        ("StockAdjustRequest", json!({"delta": 2.0})),
        (
            "CreateProductRequest",
            json!({"sku": "LAMP-1", "name": "Lamp", "price": {"amount_minor": 1, "currency": "JPY"}, "stock": null}),
        ),
    ];
    let mut wrong = Vec::new();
    for (name, body) in &refused {
        if valid(&document, &schema_ref(name), body) {
            wrong.push(format!("{name} calls {body} valid; the server refuses it"));
        }
    }
    for (name, body) in &accepted {
        if !valid(&document, &schema_ref(name), body) {
            wrong.push(format!(
                "{name} calls {body} invalid; the server accepts it"
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Every query parameter of one operation, by name.
fn query_parameters(operation: &Value) -> BTreeMap<String, Value> {
    operation["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["in"] == "query")
        .map(|p| (p["name"].as_str().unwrap_or_default().to_owned(), p.clone()))
        .collect()
}

#[test]
fn every_list_is_a_page_with_limit_and_a_cursor_that_is_never_empty() {
    let document = document();
    let mut lists = 0;
    for ((method, path), operation) in operations(&document) {
        let body = &operation["responses"]["200"]["content"]["application/json"]["schema"];
        let schema = resolve(&document, body);
        // A list's answer is an envelope around `items` (an order's own `items` are its lines).
        let envelope = schema["properties"].as_object().is_some_and(|properties| {
            properties.contains_key("items")
                && properties
                    .keys()
                    .all(|key| key == "items" || key == "next_cursor")
        });
        if method != "GET" || !envelope {
            continue;
        }
        lists += 1;
        let required: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            required.contains(&"items") && required.contains(&"next_cursor"),
            "{path}: a list answers a page, {{items, next_cursor}}"
        );
        let query = query_parameters(&operation);
        let limit = &query
            .get("limit")
            .unwrap_or_else(|| panic!("{path}: no limit"))["schema"];
        assert_eq!(
            (&limit["minimum"], &limit["maximum"], &limit["default"]),
            (&Value::from(1), &Value::from(100), &Value::from(20)),
            "{path}"
        );
        let cursor = &query
            .get("cursor")
            .unwrap_or_else(|| panic!("{path}: no cursor"))["schema"];
        assert!(
            !valid(&document, cursor, &Value::from("")),
            "{path}: an empty cursor is not a cursor (the server answers 422)"
        );
    }
    assert!(lists >= 5, "{lists}");
}

#[test]
fn a_currency_is_one_the_domain_knows() {
    let letters = b'A'..=b'Z';
    let known: BTreeSet<String> = letters
        .clone()
        .flat_map(|a| {
            letters
                .clone()
                .flat_map(move |b| (b'A'..=b'Z').map(move |c| [a, b, c]))
        })
        .filter_map(|code| String::from_utf8(code.to_vec()).ok())
        .filter(|code| strata_domain::Currency::parse(code).is_ok())
        .collect();
    let document = document();
    let enumerated = |schema: &Value| -> BTreeSet<String> {
        schema["enum"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        enumerated(&document["components"]["schemas"]["MoneyInput"]["properties"]["currency"]),
        known
    );
    let list = &operations(&document)[&("GET".to_owned(), "/v1/products".to_owned())];
    assert_eq!(
        enumerated(&query_parameters(list)["currency"]["schema"]),
        known
    );
}

#[test]
fn names_refuse_the_control_characters_the_domain_refuses() {
    let document = document();
    let schemas = &document["components"]["schemas"];
    for (schema, field) in [
        ("RegisterRequest", "display_name"),
        ("UpdateMeRequest", "display_name"),
        ("CreateProductRequest", "name"),
        ("UpdateProductRequest", "name"),
    ] {
        assert_eq!(
            schemas[schema]["properties"][field]["pattern"],
            strata_http::dto::NAME_PATTERN,
            "{schema}.{field}"
        );
    }
    for schema in ["CreateProductRequest", "UpdateProductRequest"] {
        assert_eq!(
            schemas[schema]["properties"]["description"]["pattern"],
            strata_http::dto::DESCRIPTION_PATTERN,
            "{schema}.description"
        );
    }
}
