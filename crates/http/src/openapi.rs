//! The OpenAPI 3.1 document of the whole HTTP surface, generated from the code, and the pages that
//! serve it: `GET /openapi.json`, and Swagger UI at `GET /docs/` (vendored into the binary: no CDN,
//! no network at run time). `cargo xtask openapi` writes the same bytes to `docs/openapi.json`.
//!
//! # Where each part comes from
//!
//! - Operations, parameters, request bodies and success responses: the `#[utoipa::path]`
//!   attribute on each handler in [`crate::routes`] (and, for the health probes, in [`probes`]).
//! - Schemas: the DTOs in [`crate::dto`], with examples built from real DTO values.
//! - Error responses: never written by hand. Each operation answers the problems every operation
//!   of its kind can answer (see [`Catalogue`]) plus the real errors listed for it in
//!   `operation_problems` (the services' own error values, turned into [`ApiError`]s by the one
//!   mapping in [`crate::problem`]). Each is rendered exactly as a client would receive it (so
//!   `type`, `title`, `status`, `code` and `detail` come from the catalogue), and the examples are
//!   grouped by status into one `application/problem+json` response per status.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, LazyLock};

use actix_web::body::MessageBody;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::Value;
use strata_domain::{
    BillingInterval, Email, FieldError, InvalidTransition, InvoiceKind, OrderStatus, Password,
    ReportKind, ReportRequest, ReportStatus, Role, ShortLine, SubscriptionStatus, ValidationErrors,
};
use strata_services::exports::{ExportFormat, ExportParams};
use strata_services::{AuthError, BillingError, CatalogError, ExportError, OrderError, UserError};
use strata_services::{DashboardError, ReportError};
use utoipa::openapi::example::{Example, ExampleBuilder};
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ObjectBuilder, SchemaFormat, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, Schema};
use utoipa::{IntoParams, Modify, OpenApi};

use crate::etag;
use crate::extract::JSON_LIMIT;
use crate::problem::{ApiError, ProblemCode};
use crate::routes;

/// The document's introduction (the table of problem codes is appended from the catalogue).
const INTRO: &str = "Strata is a commerce and subscriptions API: authentication and users, a \
catalog, orders, and subscriptions with prorated plan changes and invoices.

## Conventions

- **JSON** in and out; request bodies must be `application/json` (else 415) and at most 64 KiB \
(else 413). Unknown body fields are refused (422), and so are unknown query parameters of \
`GET /v1/products`, `GET /v1/orders` and the proration preview: a misspelt name is never \
silently ignored. A `PATCH` changes the fields it names and must name one; `null` is not a \
value there (leave a field out to keep it). An integer field takes any whole JSON number (`2`, \
`2.0`).
- **Money** is integer minor units plus an ISO 4217 code: `{\"amount_minor\": 4999, \"currency\": \"USD\"}`; \
never floats. **IDs** are UUIDv7. **Timestamps** are RFC 3339 UTC with microseconds.
- **Authentication**: `Authorization: Bearer <access token>` (see the `bearer` scheme). Access \
tokens live 15 minutes; refresh tokens are opaque, rotate on use, and a rotated one presented \
again revokes its whole session.
- **Pagination**: `?limit=1..100` (default 20) `&cursor=<opaque>`; answers are \
`{\"items\": [...], \"next_cursor\": \"...\" | null}` (keyset: stable under inserts). A cursor \
is what `next_cursor` gave: an empty one, or one from another list or other filters, is 422.
- **Caching**: cacheable GETs send a strong `ETag`; send it back as `If-None-Match` for a 304 \
without a body.
- **Idempotency**: `POST /v1/orders`, `POST /v1/subscriptions` and \
`POST /v1/subscriptions/me/change-plan` take an optional `Idempotency-Key`: the same key and body \
within 24 h replays the first answer (`Idempotent-Replayed: true`) with no second effect.
- **Rate limits**: every `/v1` route spends a sliding-window budget (per user with a valid token, \
else per IP; register and login also per email) and reports it in `RateLimit-Limit`, \
`RateLimit-Remaining` and `RateLimit-Reset`, and again in the structured `RateLimit-Policy` and \
`RateLimit` fields of the current IETF draft (draft-ietf-httpapi-ratelimit-headers); a spent \
budget is 429 `RATE_LIMITED` with `Retry-After`. Health and docs are never limited.
- **Errors** are RFC 9457 `application/problem+json` (schema `Problem`) with a stable `code`, \
the same on every endpoint, and the `request_id` (also the `X-Request-Id` header). Any route can \
answer 503 `SERVICE_UNAVAILABLE` (a dependency down, the instance at capacity, or the request \
timeout) with `Retry-After`, and 500 `INTERNAL` (a bug; nothing of the cause is shown). A path \
that matches no route is 404 `NOT_FOUND`; a method a path does not support is 405 \
`METHOD_NOT_ALLOWED`, with `Allow` listing the methods it does support. \
`components.responses` holds one sample of every code.
- **Tracing**: a W3C `traceparent` request header is continued by the server's spans (exported \
over OTLP when configured); problem bodies then carry its `trace_id`.";

/// The name of the bearer security scheme.
pub const BEARER: &str = "bearer";
/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The document's skeleton: every operation, the tags and the info; [`Catalogue`] adds the
/// problem responses, the shared headers and the security scheme.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Strata API",
        description = INTRO,
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0"),
    ),
    paths(
        routes::auth::register,
        routes::auth::login,
        routes::auth::refresh,
        routes::auth::logout,
        routes::users::me,
        routes::users::update_me,
        routes::users::list,
        routes::users::get,
        routes::exports::users,
        routes::exports::orders,
        routes::products::list,
        routes::products::get,
        routes::products::create,
        routes::products::update,
        routes::products::delete,
        routes::products::adjust_stock,
        routes::orders::place,
        routes::orders::list,
        routes::orders::get,
        routes::orders::cancel,
        routes::orders::fulfill,
        routes::billing::plans,
        routes::billing::subscribe,
        routes::billing::current,
        routes::billing::preview,
        routes::billing::change_plan,
        routes::billing::cancel,
        routes::billing::invoices,
        routes::admin::dashboard,
        routes::admin::create_report,
        routes::admin::get_report,
        probes::live,
        probes::ready,
        probes::deep,
        openapi_json,
        docs_redirect,
        docs_index,
        docs_asset,
        routes::problems::page,
    ),
    tags(
        (name = "auth", description = "Registration, login, refresh-token rotation and logout."),
        (name = "users", description = "The caller's profile, and the admin's user list and lookup."),
        (name = "exports", description = "The admin's bulk exports of users and orders: ndjson or CSV, streamed in constant memory."),
        (name = "products", description = "The catalog: public reads (cached, with ETags) and the admin's writes."),
        (name = "orders", description = "Placing orders (with Idempotency-Key), reading, cancelling and fulfilling them."),
        (name = "plans", description = "The subscription plans on offer."),
        (name = "subscriptions", description = "Subscribing, proration previews, plan changes and cancellation."),
        (name = "invoices", description = "The caller's invoices."),
        (name = "admin", description = "The admin's dashboard (cached for a few seconds) and sales reports generated in the background."),
        (name = "health", description = "Liveness and readiness probes, and the deep health check for people and alerts (never shed, never rate limited)."),
        (name = "docs", description = "This document and its offline Swagger UI (never rate limited)."),
    ),
    modifiers(&Catalogue, &BodyRules),
)]
pub struct ApiDoc;

/// The complete OpenAPI 3.1 document.
pub fn document() -> Document {
    ApiDoc::openapi()
}

/// `document` as written to `docs/openapi.json` and served at `/openapi.json`: pretty-printed JSON
/// with a trailing newline.
pub fn to_pretty_json(document: &Document) -> serde_json::Result<String> {
    let mut json = serde_json::to_string_pretty(document)?;
    json.push('\n');
    Ok(json)
}

/// The served document and its ETag, built once.
static SERVED: LazyLock<Result<(String, String), String>> = LazyLock::new(|| {
    to_pretty_json(&document())
        .map(|json| {
            let tag = etag::of(json.as_bytes());
            (json, tag)
        })
        .map_err(|error| error.to_string())
});

/// Mounts `/openapi.json`, `/docs`, `/docs/` and `/docs/{file}` (outside `/v1`: never rate
/// limited).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/openapi.json").route(web::get().to(openapi_json)))
        .service(web::resource("/docs").route(web::get().to(docs_redirect)))
        .service(web::resource("/docs/").route(web::get().to(docs_index)))
        .service(web::resource("/docs/{file}").route(web::get().to(docs_asset)));
}

/// The OpenAPI document.
///
/// The OpenAPI 3.1 description of this API (the same bytes as `docs/openapi.json` in the
/// repository), with an ETag.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "docs",
    operation_id = "getOpenApi",
    params(IfNoneMatch),
    responses(
        (status = 200, description = "The document.", content_type = "application/json", body = Object,
            headers(
                ("ETag" = String, description = "Strong validator of the document; send it back as `If-None-Match`."),
                ("Cache-Control" = String, description = "`public, no-cache`."),
            )),
        (status = 304, description = "Not modified: the `If-None-Match` validator is current.",
            headers(
                ("ETag" = String, description = "The current validator."),
                ("Cache-Control" = String, description = "`public, no-cache`."),
            )),
    ),
)]
pub async fn openapi_json(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let (json, tag) = SERVED
        .as_ref()
        .map_err(|error| ApiError::internal(anyhow::anyhow!("openapi document: {error}")))?;
    let fresh = etag::matches(&req, tag);
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, tag.as_str()))
        .insert_header((header::CACHE_CONTROL, "public, no-cache"));
    Ok(if fresh {
        response.finish()
    } else {
        response.content_type("application/json").body(json.clone())
    })
}

/// The API reference page.
///
/// Redirects to `/docs/`, where the page's relative asset links resolve.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "docs",
    operation_id = "docsRedirect",
    responses(
        (status = 308, description = "Permanent redirect to `/docs/`.",
            headers(("Location" = String, description = "`/docs/`."))),
    ),
)]
pub async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

/// The API reference page (Swagger UI).
///
/// Swagger UI rendering `/openapi.json`. Everything it loads is served from `/docs/`: it works
/// without network access.
#[utoipa::path(
    get,
    path = "/docs/",
    tag = "docs",
    operation_id = "docsPage",
    responses(
        (status = 200, description = "The HTML page.", content_type = "text/html", body = String),
    ),
)]
pub async fn docs_index() -> Result<HttpResponse, ApiError> {
    serve_docs_file("")
}

/// An asset of the API reference page.
///
/// The page's scripts, styles and icons (Swagger UI's distribution, vendored into the binary).
#[utoipa::path(
    get,
    path = "/docs/{file}",
    tag = "docs",
    operation_id = "docsAsset",
    params(("file" = String, Path, description = "A file of the page, such as `swagger-ui-bundle.js`.", example = "swagger-ui.css")),
    responses(
        (status = 200, description = "The file, typed by its extension.", content(
            (String = "text/javascript"),
            (String = "text/css"),
            (String = "text/html"),
            (Vec<u8> = "image/png"),
        )),
    ),
)]
pub async fn docs_asset(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    serve_docs_file(&file)
}

/// Swagger UI's configuration: this document, operation ids shown, and no online validator (which
/// would fetch a badge from the internet).
static SWAGGER_CONFIG: LazyLock<Arc<utoipa_swagger_ui::Config<'static>>> = LazyLock::new(|| {
    Arc::new(
        utoipa_swagger_ui::Config::new(["/openapi.json"])
            .display_operation_id(true)
            .validator_url("none")
            .use_base_layout()
            .filter(true)
            .persist_authorization(false)
            .try_it_out_enabled(false),
    )
});

/// The Content-Security-Policy of the docs pages: their own scripts, styles (Swagger UI sets inline
/// styles) and images, requests to this origin only.
pub const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// A file of Swagger UI's distribution (`""`: the page), as embedded in the binary.
fn serve_docs_file(path: &str) -> Result<HttpResponse, ApiError> {
    let file = utoipa_swagger_ui::serve(path, SWAGGER_CONFIG.clone())
        .map_err(|error| ApiError::internal(anyhow::anyhow!("swagger ui: {error}")))?
        .ok_or_else(|| ApiError::new(ProblemCode::NotFound, "no such file"))?;
    let mut response = HttpResponse::Ok();
    if file.gzpipped {
        response.insert_header((header::CONTENT_ENCODING, "gzip"));
    }
    Ok(response
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .content_type(file.content_type)
        .body(file.bytes.into_owned()))
}

/// Whether `path` is one of the docs pages, which get [`DOCS_CSP`] in place of the API's
/// `default-src 'none'` policy (which would stop Swagger UI's scripts).
pub fn is_docs(path: &str) -> bool {
    path == "/docs" || path.starts_with("/docs/")
}

/// `If-None-Match`, on every GET that sends an ETag.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfNoneMatch {
    /// ETags of the representation the client holds (or `*`); the answer is 304 without a body
    /// when one is current.
    #[param(
        rename = "If-None-Match",
        nullable = false,
        example = "\"x7LvYpS0k9QhT1mWc3aB2g\""
    )]
    pub if_none_match: Option<String>,
}

/// `Idempotency-Key`, on the POSTs that create an effect once.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKey {
    /// The client's name for one intended effect: 1–255 visible ASCII characters (a UUID is
    /// typical). The same key with the same body within 24 h replays the first answer (with
    /// `Idempotent-Replayed: true`) and has no second effect; the same key with another body is
    /// 422 `IDEMPOTENCY_KEY_REUSED`.
    #[param(
        rename = "Idempotency-Key",
        nullable = false,
        min_length = 1,
        max_length = 255,
        pattern = "^[\\x21-\\x7E]{1,255}$",
        example = "8e0c3f5e-2b1a-4c1e-9d7a-3f0b2a1c9e11"
    )]
    pub idempotency_key: Option<String>,
}

/// Schemas the DTOs refer to with `schema_with`: string enumerations whose values come from the
/// domain's own names.
pub(crate) mod schemas {
    use super::*;

    /// A string that is one of `values`.
    pub(crate) fn one_of(
        values: &[&'static str],
        description: &str,
    ) -> utoipa::openapi::schema::Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(values.iter().copied()))
            .description(Some(description))
            .examples(values.first().copied())
            .build()
    }

    /// An export's format.
    pub(crate) fn export_format() -> utoipa::openapi::schema::Object {
        let names: Vec<&'static str> = ExportFormat::ALL.iter().map(|f| f.as_str()).collect();
        let mut schema = one_of(&names, "`ndjson` (default) or `csv`.");
        schema.default = Some(Value::from(ExportFormat::Ndjson.as_str()));
        schema
    }

    /// A user's role.
    pub(crate) fn role() -> utoipa::openapi::schema::Object {
        one_of(
            &[Role::Customer.as_str(), Role::Admin.as_str()],
            "`customer` or `admin`.",
        )
    }

    /// An ISO 4217 code the domain accepts: every one, from the domain's own table (a three-letter
    /// pattern would call `ABC` valid, which the API refuses).
    pub(crate) fn currency() -> utoipa::openapi::schema::Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(strata_domain::Currency::codes()))
            .description(Some("An active ISO 4217 code, in upper case."))
            .examples(["USD"])
            .build()
    }

    /// Always `Bearer`.
    pub(crate) fn token_type() -> utoipa::openapi::schema::Object {
        one_of(&["Bearer"], "Always `Bearer`.")
    }

    fn order_statuses() -> [&'static str; 3] {
        [
            OrderStatus::Placed.as_str(),
            OrderStatus::Fulfilled.as_str(),
            OrderStatus::Cancelled.as_str(),
        ]
    }

    /// An order's status.
    pub(crate) fn order_status() -> utoipa::openapi::schema::Object {
        one_of(
            &order_statuses(),
            "`placed`, then `fulfilled` or `cancelled`.",
        )
    }

    /// The status filter of the order list.
    pub(crate) fn order_status_filter() -> utoipa::openapi::schema::Object {
        one_of(&order_statuses(), "Only orders with this status.")
    }

    /// A plan's billing interval.
    pub(crate) fn plan_interval() -> utoipa::openapi::schema::Object {
        one_of(
            &[
                BillingInterval::Month.as_str(),
                BillingInterval::Year.as_str(),
            ],
            "`month` or `year`.",
        )
    }

    /// What an invoice is for.
    pub(crate) fn invoice_kind() -> utoipa::openapi::schema::Object {
        one_of(
            &[
                InvoiceKind::Subscription.as_str(),
                InvoiceKind::Proration.as_str(),
                InvoiceKind::Renewal.as_str(),
            ],
            "`subscription` (first period), `proration` (plan change) or `renewal`.",
        )
    }

    /// A subscription's status.
    /// What a report is about.
    pub(crate) fn report_kind() -> utoipa::openapi::schema::Object {
        let kinds: Vec<&'static str> = ReportKind::ALL.iter().map(|k| k.as_str()).collect();
        one_of(&kinds, "`sales`.")
    }

    /// Where a report is.
    pub(crate) fn report_status() -> utoipa::openapi::schema::Object {
        let statuses: Vec<&'static str> = ReportStatus::ALL.iter().map(|s| s.as_str()).collect();
        one_of(
            &statuses,
            "`queued`, `running` (a worker is on it, or will retry it), then `done` or `failed`.",
        )
    }

    /// A subscription's status.
    pub(crate) fn subscription_status() -> utoipa::openapi::schema::Object {
        one_of(
            &[
                SubscriptionStatus::Active.as_str(),
                SubscriptionStatus::Cancelled.as_str(),
            ],
            "`active` or `cancelled`.",
        )
    }

    /// The sort key of the product list.
    pub(crate) fn product_sort() -> utoipa::openapi::schema::Object {
        let mut schema = one_of(
            &["created_at", "price"],
            "Sort key: `created_at` (default) or `price`.",
        );
        schema.default = Some(Value::from("created_at"));
        schema
    }

    /// The sort direction of the product list.
    pub(crate) fn sort_order() -> utoipa::openapi::schema::Object {
        let mut schema = one_of(&["desc", "asc"], "Direction: `desc` (default) or `asc`.");
        schema.default = Some(Value::from("desc"));
        schema
    }
}

/// Example bodies, built from real DTO values so that they serialise exactly as responses do.
pub(crate) mod examples {
    use chrono::{DateTime, Utc};
    use serde::Serialize;
    use serde_json::Value;
    use uuid::Uuid;

    use crate::dto::*;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .map(|at| at.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn id(raw: &str) -> Uuid {
        Uuid::parse_str(raw).unwrap_or_default()
    }

    fn value(body: impl Serialize) -> Value {
        serde_json::to_value(body).unwrap_or_default()
    }

    fn usd(amount_minor: i64) -> MoneyView {
        MoneyView {
            amount_minor,
            currency: "USD".to_owned(),
        }
    }

    fn user_view() -> UserView {
        UserView {
            id: id("0193a5b2-1f00-7c3e-8d2a-5b6c7d8e9f01"),
            email: "ada@example.com".to_owned(),
            display_name: "Ada".to_owned(),
            role: "customer",
            created_at: at("2026-11-02T09:15:00.000000Z"),
            updated_at: at("2026-11-02T09:15:00.000000Z"),
        }
    }

    fn tokens_view() -> TokensView {
        TokensView {
            access_token:
                "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIwMTkzYTViMi0xZjAwIn0.c2lnbmF0dXJl"
                    .to_owned(),
            refresh_token: "q3V8cW1zX2FuX29wYXF1ZV8yNTZfYml0X3JhbmRvbV90b2tlbg".to_owned(),
            token_type: "Bearer",
            expires_in: 900,
        }
    }

    fn product_view() -> ProductView {
        ProductView {
            id: id("0193a5b2-7c1e-7d3a-9f10-3b2c4d5e6f70"),
            sku: "LAMP-001".to_owned(),
            name: "Walnut desk lamp".to_owned(),
            description: "A warm light for late work.".to_owned(),
            price: usd(4999),
            stock: 10,
            active: true,
            created_at: at("2026-11-01T08:00:00.000000Z"),
            updated_at: at("2026-11-01T08:00:00.000000Z"),
        }
    }

    fn order_view() -> OrderView {
        OrderView {
            id: id("0193a5c0-2a4b-7e5f-8a6b-7c8d9e0f1a2b"),
            user_id: id("0193a5b2-1f00-7c3e-8d2a-5b6c7d8e9f01"),
            status: "placed",
            items: vec![OrderItemView {
                product_id: id("0193a5b2-7c1e-7d3a-9f10-3b2c4d5e6f70"),
                sku: "LAMP-001".to_owned(),
                name: "Walnut desk lamp".to_owned(),
                unit_price: usd(4999),
                quantity: 2,
                line_total: usd(9998),
            }],
            total: usd(9998),
            created_at: at("2026-11-21T12:00:00.000000Z"),
            updated_at: at("2026-11-21T12:00:00.000000Z"),
        }
    }

    fn plan_view(code: &str, name: &str, amount_minor: i64, interval: &'static str) -> PlanView {
        PlanView {
            code: code.to_owned(),
            name: name.to_owned(),
            price: usd(amount_minor),
            interval,
        }
    }

    fn subscription_view() -> SubscriptionView {
        SubscriptionView {
            id: id("0193a5d1-0b1c-7d2e-9f3a-4b5c6d7e8f90"),
            plan_code: "pro-monthly".to_owned(),
            status: "active",
            current_period_start: at("2026-11-01T00:00:00.000000Z"),
            current_period_end: at("2026-12-01T00:00:00.000000Z"),
            cancel_at_period_end: false,
            cancelled_at: None,
            created_at: at("2026-11-01T00:00:00.000000Z"),
            updated_at: at("2026-11-01T00:00:00.000000Z"),
        }
    }

    fn first_invoice() -> InvoiceView {
        InvoiceView {
            id: id("0193a5d1-0b1c-7d2e-9f3a-4b5c6d7e8f91"),
            subscription_id: id("0193a5d1-0b1c-7d2e-9f3a-4b5c6d7e8f90"),
            kind: "subscription",
            lines: vec![InvoiceLineView {
                description: "Pro (monthly), 2026-11-01 to 2026-12-01".to_owned(),
                amount: usd(2900),
            }],
            total: usd(2900),
            period_start: at("2026-11-01T00:00:00.000000Z"),
            period_end: at("2026-12-01T00:00:00.000000Z"),
            created_at: at("2026-11-01T00:00:00.000000Z"),
        }
    }

    fn proration_lines() -> Vec<InvoiceLineView> {
        vec![
            InvoiceLineView {
                description: "Unused time on Basic (monthly) after 2026-11-16".to_owned(),
                amount: usd(-450),
            },
            InvoiceLineView {
                description: "Remaining time on Pro (monthly) from 2026-11-16".to_owned(),
                amount: usd(1450),
            },
        ]
    }

    fn proration_invoice() -> InvoiceView {
        InvoiceView {
            id: id("0193a5e2-3c4d-7e5f-8a6b-7c8d9e0f1a2c"),
            subscription_id: id("0193a5d1-0b1c-7d2e-9f3a-4b5c6d7e8f90"),
            kind: "proration",
            lines: proration_lines(),
            total: usd(1000),
            period_start: at("2026-11-16T00:00:00.000000Z"),
            period_end: at("2026-12-01T00:00:00.000000Z"),
            created_at: at("2026-11-16T00:00:00.000000Z"),
        }
    }

    /// A registration.
    pub(crate) fn registration() -> Value {
        value(RegisteredView {
            user: user_view(),
            tokens: tokens_view(),
        })
    }

    /// A token pair.
    pub(crate) fn tokens() -> Value {
        value(tokens_view())
    }

    /// A user.
    pub(crate) fn user() -> Value {
        value(user_view())
    }

    /// A page of users.
    pub(crate) fn user_page() -> Value {
        let mut admin = user_view();
        admin.id = id("0193a5b2-1f00-7c3e-8d2a-5b6c7d8e9f02");
        admin.email = "admin@strata.test".to_owned();
        admin.display_name = "Admin".to_owned();
        admin.role = "admin";
        value(PageView {
            items: vec![user_view(), admin],
            next_cursor: Some("eyJrIjoiMDE5M2E1YjIifQ.c2ln".to_owned()),
        })
    }

    /// A product.
    pub(crate) fn product() -> Value {
        value(product_view())
    }

    /// A page of products (the last one).
    pub(crate) fn product_page() -> Value {
        value(PageView {
            items: vec![product_view()],
            next_cursor: None,
        })
    }

    /// An order.
    pub(crate) fn order() -> Value {
        value(order_view())
    }

    /// A cancelled order.
    pub(crate) fn cancelled_order() -> Value {
        let mut order = order_view();
        order.status = "cancelled";
        order.updated_at = at("2026-11-21T12:30:00.000000Z");
        value(order)
    }

    /// A fulfilled order.
    pub(crate) fn fulfilled_order() -> Value {
        let mut order = order_view();
        order.status = "fulfilled";
        order.updated_at = at("2026-11-22T10:00:00.000000Z");
        value(order)
    }

    /// A page of orders.
    pub(crate) fn order_page() -> Value {
        value(PageView {
            items: vec![order_view()],
            next_cursor: Some("eyJrIjoiMDE5M2E1YzAifQ.c2ln".to_owned()),
        })
    }

    /// The plans, all on one page.
    pub(crate) fn plans() -> Value {
        value(PageView {
            items: vec![
                plan_view("basic-monthly", "Basic (monthly)", 900, "month"),
                plan_view("pro-monthly", "Pro (monthly)", 2900, "month"),
                plan_view("pro-yearly", "Pro (yearly)", 29000, "year"),
            ],
            next_cursor: None,
        })
    }

    /// A new subscription with its first invoice.
    pub(crate) fn subscribed() -> Value {
        value(SubscribedView {
            subscription: subscription_view(),
            latest_invoice: first_invoice(),
        })
    }

    /// A subscription.
    pub(crate) fn subscription() -> Value {
        value(subscription_view())
    }

    /// A subscription set to end at its period's end.
    pub(crate) fn cancelled_subscription() -> Value {
        let mut subscription = subscription_view();
        subscription.cancel_at_period_end = true;
        subscription.updated_at = at("2026-11-20T10:00:00.000000Z");
        value(subscription)
    }

    /// A proration preview.
    pub(crate) fn proration() -> Value {
        value(ProrationView {
            from_plan: "basic-monthly".to_owned(),
            to_plan: "pro-monthly".to_owned(),
            at: at("2026-11-16T00:00:00.000000Z"),
            period_end: at("2026-12-01T00:00:00.000000Z"),
            remaining_seconds: 1_296_000,
            credit: usd(-450),
            charge: usd(1450),
            total: usd(1000),
            lines: proration_lines(),
        })
    }

    /// A proration invoice.
    pub(crate) fn proration_invoice_example() -> Value {
        value(proration_invoice())
    }

    fn top_product(n: u8, sku: &str, name: &str, units: u64) -> admin::ProductUnitsView {
        admin::ProductUnitsView {
            product_id: id(&format!("0193a5b2-7c1e-7d3a-9f10-3b2c4d5e6f{n:02}")),
            sku: sku.to_owned(),
            name: name.to_owned(),
            units,
        }
    }

    fn money(amount_minor: i64, currency: &str) -> MoneyView {
        MoneyView {
            amount_minor,
            currency: currency.to_owned(),
        }
    }

    /// The admin dashboard.
    pub(crate) fn dashboard() -> Value {
        let window = |since: &str, orders, usd_minor, eur_minor| admin::SalesWindowView {
            since: at(since),
            orders,
            revenue: vec![money(eur_minor, "EUR"), money(usd_minor, "USD")],
        };
        value(admin::DashboardView {
            generated_at: at("2026-11-21T12:00:05.123456Z"),
            sales: admin::DashboardSalesView {
                today: window("2026-11-21T00:00:00.000000Z", 14, 71_240, 8_990),
                last_7_days: window("2026-11-15T00:00:00.000000Z", 102, 498_310, 61_450),
                last_30_days: window("2026-10-23T00:00:00.000000Z", 431, 2_104_775, 254_300),
            },
            top_products: vec![
                top_product(70, "LAMP-001", "Walnut desk lamp", 58),
                top_product(71, "MUG-014", "Stoneware mug", 41),
            ],
            low_stock: admin::LowStockView {
                threshold: 10,
                total: 2,
                products: vec![
                    admin::StockLevelView {
                        product_id: id("0193a5b2-7c1e-7d3a-9f10-3b2c4d5e6f72"),
                        sku: "KB-0042".to_owned(),
                        name: "Mechanical keyboard".to_owned(),
                        stock: 0,
                    },
                    admin::StockLevelView {
                        product_id: id("0193a5b2-7c1e-7d3a-9f10-3b2c4d5e6f70"),
                        sku: "LAMP-001".to_owned(),
                        name: "Walnut desk lamp".to_owned(),
                        stock: 3,
                    },
                ],
            },
            active_subscriptions: 128,
        })
    }

    fn report_view(status: &'static str) -> admin::ReportView {
        admin::ReportView {
            id: id("0193a5f1-5e6f-7a80-9b1c-2d3e4f5a6b7c"),
            kind: "sales",
            status,
            from: at("2026-10-01T00:00:00.000000Z"),
            to: at("2026-10-03T00:00:00.000000Z"),
            requested_by: id("0193a5b2-1f00-7c3e-8d2a-5b6c7d8e9f02"),
            created_at: at("2026-11-21T12:00:00.000000Z"),
            started_at: None,
            finished_at: None,
            error: None,
            result: None,
        }
    }

    /// A report just requested.
    pub(crate) fn queued_report() -> Value {
        value(report_view("queued"))
    }

    /// A generated report.
    pub(crate) fn done_report() -> Value {
        let day = |d: u32, orders, units, usd_minor| admin::SalesDayView {
            date: chrono::NaiveDate::from_ymd_opt(2026, 10, d).unwrap_or_default(),
            orders,
            units,
            revenue: vec![money(usd_minor, "USD")],
        };
        value(admin::ReportView {
            started_at: Some(at("2026-11-21T12:00:00.250000Z")),
            finished_at: Some(at("2026-11-21T12:00:00.900000Z")),
            result: Some(admin::SalesReportView {
                order_count: 29,
                units: 70,
                revenue: vec![money(142_970, "USD")],
                days: vec![day(1, 17, 41, 83_120), day(2, 12, 29, 59_850)],
                top_products: vec![
                    top_product(70, "LAMP-001", "Walnut desk lamp", 9),
                    top_product(71, "MUG-014", "Stoneware mug", 6),
                ],
            }),
            ..report_view("done")
        })
    }

    /// A report whose every attempt failed.
    pub(crate) fn failed_report() -> Value {
        value(admin::ReportView {
            started_at: Some(at("2026-11-21T12:00:00.250000Z")),
            finished_at: Some(at("2026-11-21T12:01:02.000000Z")),
            error: Some(
                "generation failed after 5 attempt(s): the database was unavailable or too slow"
                    .to_owned(),
            ),
            ..report_view("failed")
        })
    }

    /// A page of invoices.
    pub(crate) fn invoice_page() -> Value {
        value(PageView {
            items: vec![proration_invoice(), first_invoice()],
            next_cursor: None,
        })
    }

    /// `GET /health/live`.
    pub(crate) fn live() -> Value {
        serde_json::json!({"status": "ok"})
    }

    /// A ready instance.
    pub(crate) fn ready() -> Value {
        serde_json::json!({
            "status": "ok",
            "draining": false,
            "checks": [
                {"name": "postgres", "status": "up", "latency_ms": 2},
                {"name": "redis", "status": "up", "latency_ms": 1}
            ]
        })
    }

    /// An instance serving while Redis is down: ready, and degraded.
    pub(crate) fn ready_degraded() -> Value {
        serde_json::json!({
            "status": "degraded",
            "draining": false,
            "checks": [
                {"name": "postgres", "status": "up", "latency_ms": 2},
                {"name": "redis", "status": "down", "latency_ms": 1000, "error": "timeout"}
            ]
        })
    }

    /// An instance shutting down.
    pub(crate) fn draining() -> Value {
        serde_json::json!({
            "status": "ok",
            "draining": true,
            "checks": [
                {"name": "postgres", "status": "up", "latency_ms": 2},
                {"name": "redis", "status": "up", "latency_ms": 1}
            ]
        })
    }

    /// The deep check while Redis is down.
    pub(crate) fn degraded() -> Value {
        serde_json::json!({
            "status": "degraded",
            "draining": false,
            "checks": [
                {"name": "postgres", "status": "up", "latency_ms": 2},
                {"name": "redis", "status": "down", "latency_ms": 3, "error": "unavailable"}
            ]
        })
    }
}

/// The health probes, whose handlers live in [`crate::health`]: these functions only carry their
/// documentation.
pub mod probes {
    use utoipa::ToSchema;
    use utoipa::openapi::schema::Object;

    use super::schemas::one_of;

    /// `GET /health/live`'s body.
    #[derive(ToSchema)]
    #[schema(as = Liveness)]
    pub struct LivenessDoc {
        /// Always `ok`.
        #[schema(schema_with = ok)]
        pub status: String,
    }

    fn ok() -> Object {
        one_of(&["ok"], "Always `ok`.")
    }

    /// One dependency's answer.
    #[derive(ToSchema)]
    #[schema(as = DependencyCheck)]
    pub struct CheckReportDoc {
        /// Dependency name, such as `postgres` or `redis`.
        #[schema(examples("postgres"))]
        pub name: String,
        /// `up`, `down`, or `unknown` (readiness only: not pinged by readiness, and no deep check
        /// has run yet).
        #[schema(schema_with = up_down)]
        pub status: String,
        /// How long the ping took, in milliseconds.
        pub latency_ms: u64,
        /// Why it is down; absent when up.
        #[schema(schema_with = down_reason)]
        pub error: Option<String>,
    }

    fn up_down() -> Object {
        one_of(
            &["up", "down", "unknown"],
            "`up`, `down`, or `unknown` (readiness only: not pinged by readiness, and no deep \
             check has run yet).",
        )
    }

    fn down_reason() -> Object {
        one_of(
            &["timeout", "unavailable", "error"],
            "Why it is down: `timeout`, `unavailable` or `error`; absent when up.",
        )
    }

    /// The body of readiness and of the deep check.
    #[derive(ToSchema)]
    #[schema(as = HealthReport)]
    pub struct ReadinessDoc {
        /// `ok`, or `degraded` when a dependency is down.
        #[schema(schema_with = ok_degraded)]
        pub status: String,
        /// True while the instance shuts down.
        pub draining: bool,
        /// Every dependency.
        pub checks: Vec<CheckReportDoc>,
    }

    fn ok_degraded() -> Object {
        one_of(
            &["ok", "degraded"],
            "`ok`, or `degraded` when a dependency is down.",
        )
    }

    /// Liveness.
    ///
    /// 200 as long as the process serves HTTP.
    #[utoipa::path(
        get,
        path = "/health/live",
        tag = "health",
        operation_id = "live",
        responses(
            (status = 200, description = "The process serves HTTP.", body = LivenessDoc,
                headers(("Cache-Control" = String, description = "`no-store`.")),
                example = super::examples::live),
        ),
    )]
    #[allow(dead_code)] // documentation only: the handler is crate::health::live
    pub(super) fn live() {}

    /// Readiness.
    ///
    /// Whether this instance can serve: 503 only while it drains before shutdown. A dependency
    /// Strata degrades around (Redis, PostgreSQL) is reported in the body as `degraded` with 200,
    /// so that an outage shared by every replica never empties the load balancer. Costs no pool
    /// connection: Redis is pinged over its shared connection, PostgreSQL reported as the last
    /// deep check (`GET /health`) saw it. Never shed, never rate limited.
    #[utoipa::path(
        get,
        path = "/health/ready",
        tag = "health",
        operation_id = "ready",
        responses(
            (status = 200, description = "Ready; `status` is `degraded` when a dependency is down.", body = ReadinessDoc,
                headers(("Cache-Control" = String, description = "`no-store`.")),
                examples(
                    ("ok" = (summary = "Every dependency up", value = json!(super::examples::ready()))),
                    ("degraded" = (summary = "Redis down: still ready", value = json!(super::examples::ready_degraded()))),
                )),
            (status = 503, description = "Not ready: the instance is draining before shutdown.",
                content((ReadinessDoc = "application/json", example = super::examples::draining)),
                headers(
                    ("Cache-Control" = String, description = "`no-store`."),
                    ("Retry-After" = u64, description = "Seconds to wait before probing again."),
                )),
        ),
    )]
    #[allow(dead_code)] // documentation only: the handler is crate::health::ready
    pub(super) fn ready() {}

    /// Deep health check.
    ///
    /// For people and alerts, not for load balancers: pings PostgreSQL and Redis concurrently,
    /// each under a timeout, and answers 503 naming the dependency that is down. Concurrent calls
    /// share one check. Never shed, never rate limited.
    #[utoipa::path(
        get,
        path = "/health",
        tag = "health",
        operation_id = "health",
        responses(
            (status = 200, description = "Every dependency is up.", body = ReadinessDoc,
                headers(("Cache-Control" = String, description = "`no-store`.")),
                example = super::examples::ready),
            (status = 503, description = "A dependency is down; `checks` names it.",
                content((ReadinessDoc = "application/json", example = super::examples::degraded)),
                headers(
                    ("Cache-Control" = String, description = "`no-store`."),
                    ("Retry-After" = u64, description = "Seconds to wait before checking again."),
                )),
        ),
    )]
    #[allow(dead_code)] // documentation only: the handler is crate::health::deep
    pub(super) fn deep() {}
}

/// Adds what the route attributes leave out, from the catalogue: the `Problem` schema, every
/// operation's problem responses, the shared response headers, and the bearer scheme.
pub struct Catalogue;

impl Modify for Catalogue {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .schemas
            .insert("Problem".to_owned(), problem_schema().into());
        components
            .schemas
            .insert("FieldError".to_owned(), field_error_schema().into());
        for (name, header) in shared_headers() {
            components.headers.insert(name.to_owned(), header.into());
        }
        components.security_schemes.insert(
            BEARER.to_owned(),
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token from `/v1/auth/register`, `/v1/auth/login` or \
                         `/v1/auth/refresh`: a JWT valid for 15 minutes (`expires_in`). A \
                         missing or invalid token is 401 `UNAUTHENTICATED`, an expired one 401 \
                         `TOKEN_EXPIRED`, one revoked by logout 401 `TOKEN_REVOKED`.",
                    ))
                    .build(),
            )
            .into(),
        );
        let mut examples = Examples::default();
        for code in ProblemCode::ALL {
            let sample = default_sample(code);
            let mut response =
                problem_response(&mut examples, None, &[sample], catalogue_description(code));
            if code == ProblemCode::MethodNotAllowed {
                response.headers.insert(
                    "Allow".to_owned(),
                    HeaderBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String).build()))
                        .description(Some(
                            "The methods the path does support (RFC 9110 §10.2.1), such as \
                             `GET, PATCH`.",
                        ))
                        .example(Some(Value::from("GET, PATCH")))
                        .build()
                        .into(),
                );
            }
            components
                .responses
                .insert(code.as_str().to_owned(), response.into());
        }
        // Samples many operations share, named for what they are rather than where first seen.
        examples.name_as("SERVICE_UNAVAILABLE_overloaded", &ApiError::overloaded());
        examples.name_as(
            "VALIDATION_FAILED_idempotency_key",
            &idempotency_key_invalid(),
        );
        examples.name_as("VALIDATION_FAILED_limit", &query_invalid("listProducts"));
        if let Some(description) = openapi.info.description.as_mut() {
            description.push_str(&codes_table());
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            for operation in operations(item) {
                add_problems(&mut examples, path, operation);
                add_shared_headers(path, operation);
            }
        }
        let components = openapi.components.get_or_insert_with(Default::default);
        components.examples.append(&mut examples.stored);
        refer_to_item_schemas(&mut components.schemas);
    }
}

/// States the rules of request bodies that the schema attributes cannot: which fields a profile
/// update needs together, a stock change that is not zero, and limits the services own.
pub struct BodyRules;

impl Modify for BodyRules {
    fn modify(&self, openapi: &mut Document) {
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        let schemas = &mut components.schemas;
        if let Some(update_me) = object_mut(schemas.get_mut("UpdateMeRequest")) {
            // One keyword: utoipa keeps extra keywords in a hash map, whose order would change
            // from one build of the document to the next if it held two.
            update_me
                .extensions
                .get_or_insert_with(Default::default)
                .insert(
                    "allOf".to_owned(),
                    serde_json::json!([
                        {"anyOf": [{"required": ["display_name"]}, {"required": ["password"]}]},
                        {"dependentRequired": {"password": ["current_password"]}},
                    ]),
                );
        }
        let delta = object_mut(schemas.get_mut("StockAdjustRequest"))
            .and_then(|stock| object_mut(stock.properties.get_mut("delta")));
        if let Some(delta) = delta {
            delta
                .extensions
                .get_or_insert_with(Default::default)
                .insert("not".to_owned(), serde_json::json!({"const": 0}));
        }
        let password = object_mut(schemas.get_mut("LoginRequest"))
            .and_then(|login| object_mut(login.properties.get_mut("password")));
        if let Some(password) = password {
            password.max_length = Some(strata_services::auth::MAX_LOGIN_PASSWORD_CHARS);
        }
    }
}

/// The object schema in `schema`, if it is one written out (not a reference).
fn object_mut(schema: Option<&mut RefOr<Schema>>) -> Option<&mut utoipa::openapi::schema::Object> {
    match schema {
        Some(RefOr::T(Schema::Object(object))) => Some(object),
        _ => None,
    }
}

/// Every operation of a path item.
fn operations(item: &mut utoipa::openapi::PathItem) -> Vec<&mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.options.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The bearer security requirement.
fn bearer_requirement() -> SecurityRequirement {
    SecurityRequirement::new(BEARER, Vec::<String>::new())
}

/// True when the operation requires the bearer token.
fn is_authenticated(operation: &Operation) -> bool {
    operation
        .security
        .iter()
        .flatten()
        .any(|requirement| *requirement == bearer_requirement())
}

/// True when `path` spends a rate-limit budget (everything under `/v1/`; health and docs never do).
fn is_rate_limited(path: &str) -> bool {
    path.starts_with("/v1/")
}

fn has_parameter(
    operation: &Operation,
    wanted: impl Fn(&utoipa::openapi::path::Parameter) -> bool,
) -> bool {
    operation
        .parameters
        .iter()
        .flatten()
        .any(|parameter| match parameter {
            RefOr::T(parameter) => wanted(parameter),
            RefOr::Ref(_) => false,
        })
}

/// The problems one operation can answer: those its shape implies (a JSON body, query parameters,
/// an Idempotency-Key, the bearer token), its own (`operation_problems_listed`), 404 for a path
/// id, 429 under `/v1/`, and the 503s and 500 any request can meet.
fn problems_of(path: &str, operation: &Operation) -> Vec<ApiError> {
    let id = operation.operation_id.as_deref().unwrap_or_default();
    let mut samples: Vec<ApiError> = Vec::new();
    if operation.request_body.is_some() {
        samples.push(malformed_json());
        samples.push(payload_too_large());
        samples.push(unsupported_media_type());
        samples.push(body_invalid(id));
    }
    if has_parameter(operation, |p| p.parameter_in == ParameterIn::Query) {
        samples.push(query_invalid(id));
    }
    if has_parameter(operation, |p| p.name == "Idempotency-Key") {
        samples.push(idempotency_key_invalid());
    }
    if is_authenticated(operation) {
        samples.push(AuthError::Unauthenticated.into());
        samples.push(AuthError::TokenExpired.into());
        samples.push(AuthError::TokenRevoked.into());
    }
    samples.extend(operation_problems(id));
    if has_parameter(operation, |p| p.parameter_in == ParameterIn::Path)
        && !samples.iter().any(|s| s.code() == ProblemCode::NotFound)
    {
        samples.push(ApiError::new(ProblemCode::NotFound, "no such resource"));
    }
    if is_rate_limited(path) {
        samples.push(ApiError::rate_limited(30));
    }
    samples.push(ApiError::overloaded());
    samples.push(ApiError::unavailable(anyhow::anyhow!(
        "documentation sample"
    )));
    samples.push(ApiError::internal(anyhow::anyhow!("documentation sample")));
    samples
}

/// The errors particular to each operation, as the services raise them: the one list to update
/// when an operation learns a new way to fail. `None` for an operation not listed (a test requires
/// every operation to be listed).
pub fn operation_problems_listed(operation_id: &str) -> Option<Vec<ApiError>> {
    use ProblemCode as P;
    let admin_only = || -> ApiError { UserError::Forbidden.into() };
    Some(match operation_id {
        "register" => vec![AuthError::EmailTaken.into()],
        "login" => vec![AuthError::InvalidCredentials.into()],
        "refresh" => vec![
            AuthError::Unauthenticated.into(),
            AuthError::TokenExpired.into(),
            AuthError::TokenRevoked.into(),
        ],
        "logout" => vec![],
        "getMe" | "updateMe" => vec![UserError::NotFound.into()],
        "listUsers" => vec![admin_only()],
        "getUser" => vec![admin_only(), UserError::NotFound.into()],
        "exportUsers" | "exportOrders" => {
            vec![ExportError::Forbidden.into(), export_range_invalid()]
        }
        "listProducts" => vec![],
        "getProduct" => vec![CatalogError::NotFound.into()],
        "createProduct" => vec![
            CatalogError::Forbidden.into(),
            CatalogError::SkuTaken.into(),
        ],
        "updateProduct" => vec![
            CatalogError::Forbidden.into(),
            CatalogError::NotFound.into(),
            CatalogError::SkuTaken.into(),
        ],
        "deleteProduct" => vec![
            CatalogError::Forbidden.into(),
            CatalogError::NotFound.into(),
        ],
        "adjustStock" => vec![
            CatalogError::Forbidden.into(),
            CatalogError::NotFound.into(),
            CatalogError::InsufficientStock {
                requested: 12,
                available: 10,
            }
            .into(),
            CatalogError::StockTooLarge.into(),
        ],
        "placeOrder" => vec![
            OrderError::InsufficientStock(vec![ShortLine {
                index: 0,
                product_id: strata_domain::ProductId(sample_uuid(
                    "0193a5b2-7c1e-7d3a-9f10-3b2c4d5e6f70",
                )),
                requested: 12,
                available: 10,
            }])
            .into(),
            OrderError::KeyReused.into(),
        ],
        "listOrders" => vec![OrderError::Forbidden.into()],
        "getOrder" => vec![OrderError::NotFound.into()],
        "cancelOrder" => vec![
            OrderError::NotFound.into(),
            OrderError::InvalidTransition(InvalidTransition {
                from: OrderStatus::Fulfilled,
                to: OrderStatus::Cancelled,
            })
            .into(),
        ],
        "fulfillOrder" => vec![
            OrderError::Forbidden.into(),
            OrderError::NotFound.into(),
            OrderError::InvalidTransition(InvalidTransition {
                from: OrderStatus::Cancelled,
                to: OrderStatus::Fulfilled,
            })
            .into(),
        ],
        "listPlans" => vec![],
        "subscribe" => vec![
            BillingError::AlreadySubscribed.into(),
            BillingError::KeyReused.into(),
        ],
        "getMySubscription" => vec![BillingError::NotFound.into()],
        "previewPlanChange" => vec![
            BillingError::NotFound.into(),
            BillingError::SamePlan.into(),
            BillingError::Stale.into(),
        ],
        "changePlan" => vec![
            BillingError::NotFound.into(),
            BillingError::SamePlan.into(),
            BillingError::Stale.into(),
            BillingError::KeyReused.into(),
        ],
        "cancelSubscription" => vec![
            BillingError::NotFound.into(),
            BillingError::NotActive.into(),
        ],
        "listInvoices" => vec![],
        "getDashboard" => vec![DashboardError::Forbidden.into()],
        "createReport" => vec![ReportError::Forbidden.into(), report_request_invalid()],
        "getReport" => vec![ReportError::Forbidden.into(), ReportError::NotFound.into()],
        "live" | "ready" | "health" | "getOpenApi" | "docsRedirect" | "docsPage" => vec![],
        "getProblem" => vec![ApiError::new(P::NotFound, "no such problem type")],
        "docsAsset" => vec![ApiError::new(P::NotFound, "no such file")],
        _ => return None,
    })
}

fn operation_problems(operation_id: &str) -> Vec<ApiError> {
    operation_problems_listed(operation_id).unwrap_or_default()
}

fn sample_uuid(raw: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(raw).unwrap_or_default()
}

fn malformed_json() -> ApiError {
    ApiError::new(
        ProblemCode::MalformedJson,
        "the body is not valid JSON: expected `,` or `}` at line 1 column 24",
    )
}

fn payload_too_large() -> ApiError {
    ApiError::new(
        ProblemCode::PayloadTooLarge,
        format!("the body exceeds {JSON_LIMIT} bytes"),
    )
}

fn unsupported_media_type() -> ApiError {
    ApiError::new(
        ProblemCode::UnsupportedMediaType,
        "send the body as application/json",
    )
}

/// A validation failure of the body: for registration, the domain's own messages; otherwise an
/// unknown field, as the JSON extractor reports it for the operation's DTO.
fn body_invalid(operation_id: &str) -> ApiError {
    use crate::dto::*;
    let unknown = match operation_id {
        "register" => {
            return ApiError::validation(ValidationErrors(
                [Email::parse("ada@").err(), Password::parse("short").err()]
                    .into_iter()
                    .flatten()
                    .collect(),
            ));
        }
        "login" => unknown_field::<LoginRequest>(),
        "refresh" => unknown_field::<RefreshRequest>(),
        "updateMe" => unknown_field::<UpdateMeRequest>(),
        "createProduct" => unknown_field::<CreateProductRequest>(),
        "updateProduct" => unknown_field::<UpdateProductRequest>(),
        "adjustStock" => unknown_field::<StockAdjustRequest>(),
        "placeOrder" => unknown_field::<PlaceOrderRequest>(),
        "subscribe" | "changePlan" => unknown_field::<PlanChoiceRequest>(),
        "cancelSubscription" => unknown_field::<CancelSubscriptionRequest>(),
        "createReport" => unknown_field::<admin::CreateReportRequest>(),
        _ => "unknown field `colour`".to_owned(),
    };
    ApiError::validation(ValidationErrors::single(FieldError::new(
        "colour",
        "unknown_field",
        unknown,
    )))
}

/// serde's message for a `colour` field that `T` does not have.
fn unknown_field<T: serde::de::DeserializeOwned>() -> String {
    serde_json::from_value::<T>(serde_json::json!({ "colour": "red" }))
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default()
}

/// An `Idempotency-Key` that is not a key, with the domain's own message.
fn idempotency_key_invalid() -> ApiError {
    ApiError::validation(ValidationErrors(
        strata_domain::IdempotencyKey::parse("has space")
            .err()
            .into_iter()
            .collect(),
    ))
}

/// An export range that ends before it starts, as the export use case refuses it.
fn export_range_invalid() -> ApiError {
    let params = ExportParams {
        format: None,
        from: Some("2026-12-01T00:00:00Z".to_owned()),
        to: Some("2026-11-01T00:00:00Z".to_owned()),
    };
    match params.validate() {
        Err(errors) => ExportError::Validation(errors).into(),
        Ok(_) => ApiError::new(ProblemCode::ValidationFailed, "to must be later than from"),
    }
}

/// A report request whose range is backwards, as the domain refuses it.
fn report_request_invalid() -> ApiError {
    match ReportRequest::parse(
        Some("sales"),
        Some("2026-11-01T00:00:00Z"),
        Some("2026-10-01T00:00:00Z"),
    ) {
        Err(errors) => ReportError::Validation(errors).into(),
        Ok(_) => ApiError::new(ProblemCode::ValidationFailed, "to must be later than from"),
    }
}

/// A validation failure of the query string, with the domain's own message.
fn query_invalid(operation_id: &str) -> ApiError {
    let error = match operation_id {
        "previewPlanChange" => strata_domain::PlanCode::parse("Pro Monthly!").err(),
        "exportUsers" | "exportOrders" => ExportFormat::parse(Some("xlsx")).err(),
        _ => strata_domain::PageLimit::parse(Some("1000")).err(),
    };
    ApiError::validation(ValidationErrors(error.into_iter().collect()))
}

/// A representative error of each code, for the catalogue in `components.responses`.
fn default_sample(code: ProblemCode) -> ApiError {
    use ProblemCode as P;
    match code {
        P::ValidationFailed => body_invalid("register"),
        P::MalformedJson => malformed_json(),
        P::UnsupportedMediaType => unsupported_media_type(),
        P::PayloadTooLarge => payload_too_large(),
        P::Unauthenticated => AuthError::Unauthenticated.into(),
        P::TokenExpired => AuthError::TokenExpired.into(),
        P::TokenRevoked => AuthError::TokenRevoked.into(),
        P::Forbidden => UserError::Forbidden.into(),
        P::NotFound => ApiError::new(P::NotFound, "no route for GET /v1/nowhere"),
        P::MethodNotAllowed => {
            ApiError::new(P::MethodNotAllowed, "PUT is not allowed on this resource")
        }
        P::EmailTaken => AuthError::EmailTaken.into(),
        P::SkuTaken => CatalogError::SkuTaken.into(),
        P::Conflict => BillingError::AlreadySubscribed.into(),
        P::InsufficientStock => operation_problems("placeOrder")
            .into_iter()
            .next()
            .unwrap_or_else(|| ApiError::new(P::InsufficientStock, "")),
        P::InvalidTransition => BillingError::NotActive.into(),
        P::IdempotencyKeyReused => OrderError::KeyReused.into(),
        P::RateLimited => ApiError::rate_limited(30),
        P::ServiceUnavailable => ApiError::unavailable(anyhow::anyhow!("documentation sample")),
        P::Internal => ApiError::internal(anyhow::anyhow!("documentation sample")),
    }
}

fn catalogue_description(code: ProblemCode) -> String {
    let (status, code_str, title) = code.describe();
    let when = match code {
        ProblemCode::MethodNotAllowed => {
            " Answered on any path for a method it does not support (this is not listed on each \
             operation)."
        }
        ProblemCode::NotFound => " Also answered for any path that matches no route.",
        _ => "",
    };
    format!("{} `{code_str}`: {title}.{when}", status.as_u16())
}

/// A sample error as a client receives it: status, headers and body.
struct Rendered {
    code: ProblemCode,
    headers: Vec<String>,
    body: Value,
}

/// The `request_id` shown in examples.
const SAMPLE_REQUEST_ID: &str = "0193a5f0-4d5e-7f60-8a1b-2c3d4e5f6a7b";

fn render(error: &ApiError) -> Rendered {
    let response = error.error_response();
    let headers = response
        .headers()
        .keys()
        .map(|name| name.as_str().to_owned())
        .filter(|name| name != "content-type")
        .collect();
    let mut body = response
        .into_body()
        .try_into_bytes()
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .unwrap_or_default();
    if let Some(object) = body.as_object_mut() {
        object.insert("request_id".to_owned(), Value::from(SAMPLE_REQUEST_ID));
    }
    Rendered {
        code: error.code(),
        headers,
        body,
    }
}

/// The problem examples, each stored once in `components.examples` and referred to from every
/// response that can carry it. The catalogue's sample of a code is named after the code
/// (`NOT_FOUND`); another is named after the code and the first operation that answers it
/// (`NOT_FOUND_getOrder`, then `_2`, `_3` for more of the same operation).
#[derive(Default)]
struct Examples {
    names: BTreeMap<String, String>,
    stored: BTreeMap<String, RefOr<Example>>,
}

impl Examples {
    /// Stores `error`'s example under `name`.
    fn name_as(&mut self, name: &str, error: &ApiError) {
        let sample = render(error);
        if !self.names.contains_key(&sample.body.to_string()) {
            self.store(name.to_owned(), &sample);
        }
    }

    /// The name of `sample`'s example, stored on first use (by `operation_id`, if any).
    fn name(&mut self, sample: &Rendered, operation_id: Option<&str>) -> String {
        if let Some(name) = self.names.get(&sample.body.to_string()) {
            return name.clone();
        }
        let code = sample.code.as_str();
        let base = match operation_id {
            Some(id) => format!("{code}_{id}"),
            None => code.to_owned(),
        };
        let mut name = base.clone();
        let mut count = 1;
        while self.stored.contains_key(&name) {
            count += 1;
            name = format!("{base}_{count}");
        }
        self.store(name.clone(), sample);
        name
    }

    fn store(&mut self, name: String, sample: &Rendered) {
        let code = sample.code.as_str();
        let detail = sample
            .body
            .get("detail")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let example = ExampleBuilder::new()
            .summary(format!("{code}: {detail}"))
            .value(Some(sample.body.clone()))
            .build();
        self.stored.insert(name.clone(), example.into());
        self.names.insert(sample.body.to_string(), name);
    }
}

/// One `application/problem+json` response holding every sample (all of one status), an example
/// per sample.
fn problem_response(
    examples: &mut Examples,
    operation_id: Option<&str>,
    samples: &[ApiError],
    description: String,
) -> Response {
    let rendered: Vec<Rendered> = samples.iter().map(render).collect();
    let references = rendered.iter().map(|sample| {
        let name = examples.name(sample, operation_id);
        let reference = RefOr::Ref(Ref::new(format!("#/components/examples/{name}")));
        (name, reference)
    });
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .examples_from_iter(references.collect::<Vec<_>>())
        .build();
    let mut response = ResponseBuilder::new()
        .description(description)
        .content(PROBLEM_JSON, content)
        .build();
    attach_error_headers(&mut response, &rendered);
    response
}

/// Headers an error carries (`Retry-After`, `WWW-Authenticate`, `RateLimit-*`), as rendered.
fn attach_error_headers(response: &mut Response, rendered: &[Rendered]) {
    let names: BTreeSet<&str> = rendered
        .iter()
        .flat_map(|sample| sample.headers.iter().map(String::as_str))
        .collect();
    for (name, _) in shared_headers() {
        if names.contains(name.to_ascii_lowercase().as_str()) {
            response.headers.insert(name.to_owned(), header_ref(name));
        }
    }
}

fn header_ref(name: &str) -> RefOr<Header> {
    RefOr::Ref(Ref::new(format!("#/components/headers/{name}")))
}

/// Adds the operation's problem responses, one per status.
fn add_problems(examples: &mut Examples, path: &str, operation: &mut Operation) {
    let mut by_status: BTreeMap<u16, Vec<ApiError>> = BTreeMap::new();
    for sample in problems_of(path, operation) {
        by_status
            .entry(sample.code().status().as_u16())
            .or_default()
            .push(sample);
    }
    for (status, samples) in by_status {
        let codes: Vec<ProblemCode> = samples.iter().fold(Vec::new(), |mut codes, s| {
            if !codes.contains(&s.code()) {
                codes.push(s.code());
            }
            codes
        });
        let description = codes
            .iter()
            .map(|code| {
                let (_, name, title) = code.describe();
                format!("`{name}`: {title}.")
            })
            .collect::<Vec<_>>()
            .join(" ");
        let problem = problem_response(
            examples,
            operation.operation_id.as_deref(),
            &samples,
            description.clone(),
        );
        let key = status.to_string();
        match operation.responses.responses.get_mut(&key) {
            Some(RefOr::T(existing)) => {
                // A documented non-problem answer of the same status (readiness's 503): the
                // problem body is another representation of it.
                existing.description = format!("{} {description}", existing.description);
                for (media, content) in problem.content {
                    existing.content.insert(media, content);
                }
                for (name, header) in problem.headers {
                    existing.headers.entry(name).or_insert(header);
                }
            }
            _ => {
                operation.responses.responses.insert(key, problem.into());
            }
        }
    }
}

/// The headers of every response of a limited route: the three of the earlier drafts, then the
/// two of the current one.
const RATE_LIMIT_HEADERS: [&str; 5] = [
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
    "RateLimit",
];

/// `X-Request-Id` on every response; the `RateLimit-*` headers on every response of a limited
/// route.
fn add_shared_headers(path: &str, operation: &mut Operation) {
    for response in operation.responses.responses.values_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        response
            .headers
            .insert("X-Request-Id".to_owned(), header_ref("X-Request-Id"));
        if is_rate_limited(path) {
            for name in RATE_LIMIT_HEADERS {
                response.headers.insert(name.to_owned(), header_ref(name));
            }
        }
    }
}

/// The response headers shared by many operations, as `components.headers`.
fn shared_headers() -> Vec<(&'static str, Header)> {
    let integer = || {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
            .build()
    };
    let string = || ObjectBuilder::new().schema_type(Type::String).build();
    let header = |schema: utoipa::openapi::schema::Object, description: &str, example: Value| {
        HeaderBuilder::new()
            .schema(Some(schema))
            .description(Some(description))
            .example(Some(example))
            .build()
    };
    vec![
        (
            "X-Request-Id",
            header(
                string(),
                "The request's id: the caller's own `X-Request-Id` when it is 1–128 characters of \
                 `[A-Za-z0-9._:-]`, else a new UUIDv7. Also the `request_id` of a problem body; \
                 quote it when reporting an error.",
                Value::from(SAMPLE_REQUEST_ID),
            ),
        ),
        (
            "RateLimit-Limit",
            header(
                integer(),
                "Requests the caller's budget allows per window (present while rate limiting is \
                 enabled).",
                Value::from(1200),
            ),
        ),
        (
            "RateLimit-Remaining",
            header(
                integer(),
                "Requests left in the current window.",
                Value::from(1187),
            ),
        ),
        (
            "RateLimit-Reset",
            header(
                integer(),
                "Seconds until a request's slot frees.",
                Value::from(42),
            ),
        ),
        (
            "RateLimit-Policy",
            header(
                string(),
                "The caller's budget as a structured-field list of one item \
                 (draft-ietf-httpapi-ratelimit-headers): the budget's name (`read_anonymous`, \
                 `read_user`, `write_anonymous`, `write_user`, `auth_ip` or `auth_email`), `q` the \
                 requests it allows per window (`RateLimit-Limit`) and `w` the window in seconds.",
                Value::from("\"read_user\";q=1200;w=60"),
            ),
        ),
        (
            "RateLimit",
            header(
                string(),
                "What is left of the budget named as in `RateLimit-Policy`: `r` the requests left \
                 in the current window (`RateLimit-Remaining`) and `t` the seconds until a \
                 request's slot frees (`RateLimit-Reset`).",
                Value::from("\"read_user\";r=1187;t=42"),
            ),
        ),
        (
            "Retry-After",
            header(
                integer(),
                "Seconds to wait before retrying.",
                Value::from(30),
            ),
        ),
        (
            "WWW-Authenticate",
            header(
                string(),
                "`Bearer`: the bearer token is missing, invalid, expired or revoked.",
                Value::from("Bearer"),
            ),
        ),
    ]
}

/// The `Problem` schema: exactly what [`ApiError`] serialises (RFC 9457 plus `code`,
/// `request_id`, `trace_id` and `errors`).
fn problem_schema() -> Schema {
    let codes: Vec<&str> = ProblemCode::ALL.iter().map(|code| code.as_str()).collect();
    let string = |description: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(description))
    };
    ObjectBuilder::new()
        .description(Some(
            "An RFC 9457 problem (`application/problem+json`). `code` is stable and means the \
             same on every endpoint; `type`, `title` and `status` follow from it.",
        ))
        .property(
            "type",
            string("A URI reference (relative to the API's origin) naming and explaining the problem: `/problems/<code in kebab case>`.")
                .format(Some(SchemaFormat::Custom("uri-reference".to_owned())))
                .examples(["/problems/validation-failed"]),
        )
        .required("type")
        .property(
            "title",
            string("A short summary of the problem type; the same for every occurrence of `code`.")
                .examples(["Validation failed"]),
        )
        .required("title")
        .property(
            "status",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .description(Some("The HTTP status code."))
                .minimum(Some(400))
                .maximum(Some(599))
                .examples([422]),
        )
        .required("status")
        .property(
            "detail",
            string("What went wrong this time, for a person to read.").examples(["2 fields are invalid"]),
        )
        .required("detail")
        .property(
            "code",
            string("The stable machine-readable code.")
                .enum_values(Some(codes))
                .examples(["VALIDATION_FAILED"]),
        )
        .required("code")
        .property(
            "request_id",
            ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                    Type::String,
                    Type::Null,
                ]))
                .description(Some(
                    "The request's id (also the `X-Request-Id` response header); quote it when \
                     reporting an error.",
                ))
                .examples([SAMPLE_REQUEST_ID]),
        )
        .required("request_id")
        .property(
            "trace_id",
            string(
                "The W3C trace id the request ran under: the caller's `traceparent` trace, or the \
                 one given by the server's tracing when export is on. Absent otherwise.",
            )
            .pattern(Some("^[0-9a-f]{32}$"))
            .examples(["4bf92f3577b34da6a3ce929d0e0e4736"]),
        )
        .property(
            "errors",
            ArrayBuilder::new()
                .items(Ref::from_schema_name("FieldError"))
                .description(Some(
                    "Each offending field (VALIDATION_FAILED lists them all; INSUFFICIENT_STOCK \
                     names each short line). Absent when empty.",
                )),
        )
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .build()
        .into()
}

/// One offending field of a problem.
fn field_error_schema() -> Schema {
    ObjectBuilder::new()
        .description(Some("One offending field."))
        .property(
            "field",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(
                    "The field as the caller spelt it: `email`, `items[2].quantity`, `limit`, \
                     `Idempotency-Key`.",
                ))
                .examples(["email"]),
        )
        .required("field")
        .property(
            "code",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(
                    "A stable machine-readable reason, such as `required`, `too_short`, \
                     `invalid_email`, `unknown_field`, `insufficient_stock`.",
                ))
                .examples(["invalid_email"]),
        )
        .required("code")
        .property(
            "message",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some("A sentence a person can read."))
                .examples(["must be a valid email address"]),
        )
        .required("message")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .build()
        .into()
}

/// The generic page schemas (`Page_Product`) get their item schema inlined; where it is exactly a
/// named schema (`Product`), refer to that instead.
fn refer_to_item_schemas(schemas: &mut BTreeMap<String, RefOr<Schema>>) {
    let named: BTreeMap<String, Value> = schemas
        .iter()
        .filter_map(|(name, schema)| Some((name.clone(), serde_json::to_value(schema).ok()?)))
        .collect();
    for (name, schema) in schemas.iter_mut() {
        let Some(item) = name.strip_prefix("Page_") else {
            continue;
        };
        let (Some(item_schema), Ok(mut list)) = (named.get(item), serde_json::to_value(&*schema))
        else {
            continue;
        };
        let Some(items) = list.pointer_mut("/properties/items/items") else {
            continue;
        };
        if items != item_schema {
            continue;
        }
        *items = serde_json::json!({ "$ref": format!("#/components/schemas/{item}") });
        if let Ok(rewritten) = serde_json::from_value::<RefOr<Schema>>(list) {
            *schema = rewritten;
        }
    }
}

/// The table of codes appended to the document's description.
fn codes_table() -> String {
    let mut table = String::from(
        "\n\n## Problem codes\n\n| code | status | title | type |\n|---|---|---|---|\n",
    );
    for code in ProblemCode::ALL {
        let (status, name, title) = code.describe();
        table.push_str(&format!(
            "| `{name}` | {} | {title} | `{}` |\n",
            status.as_u16(),
            code.type_uri()
        ));
    }
    table
}
