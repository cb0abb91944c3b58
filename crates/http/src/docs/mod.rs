//! The docs area: the OpenAPI 3.1 document of the whole HTTP surface, assembled from the areas'
//! [`Routes`], and the pages that serve it: `GET /openapi.json`, and Swagger UI at `GET /docs/`
//! (vendored into the binary: no CDN, no network at run time). `cargo xtask openapi` writes the
//! same bytes to `docs/openapi.json`.
//!
//! # Where each part comes from
//!
//! - Operations, parameters, request bodies and success responses: the `#[utoipa::path]`
//!   attribute on each handler, listed once in its area's [`Routes`] (which also mounts it).
//! - Schemas: the areas' DTOs, with examples built from real DTO values.
//! - Error responses: never written by hand. Each operation answers the problems every operation
//!   of its kind can answer (see [`catalogue`]) plus the real errors its area lists beside it (the
//!   services' own error values, turned into [`ApiError`]s by the one mapping in
//!   [`crate::problem`]). Each is rendered exactly as a client would receive it (so `type`,
//!   `title`, `status`, `code` and `detail` come from the catalogue), and the examples are grouped
//!   by status into one `application/problem+json` response per status.

use std::sync::{Arc, LazyLock, OnceLock};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use utoipa::OpenApi;
use utoipa::openapi::OpenApi as Document;

use crate::etag::{self, IfNoneMatch};
use crate::problem::{ApiError, ProblemCode};
use crate::routing::{Problems, Routes, operation};

pub mod catalogue;

pub use catalogue::{BEARER, PROBLEM_JSON};

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

/// The document's info; every operation, tag and schema comes from the areas' [`Routes`].
#[derive(OpenApi)]
#[openapi(info(
    title = "Strata API",
    description = INTRO,
    license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0"),
))]
pub struct Info;

/// `document` as written to `docs/openapi.json` and served at `/openapi.json`: pretty-printed JSON
/// with a trailing newline.
pub fn to_pretty_json(document: &Document) -> serde_json::Result<String> {
    let mut json = serde_json::to_string_pretty(document)?;
    json.push('\n');
    Ok(json)
}

/// Where the docs area finds the document it serves: the crate root assembles it from every area
/// (this one included), and hands it over as app data.
#[derive(Debug, Clone, Copy)]
pub struct Source(pub fn() -> Document);

/// The served document and its ETag, built on first use.
static SERVED: OnceLock<Result<(String, String), String>> = OnceLock::new();

fn served(source: Source) -> &'static Result<(String, String), String> {
    SERVED.get_or_init(|| {
        to_pretty_json(&(source.0)())
            .map(|json| {
                let tag = etag::of(json.as_bytes());
                (json, tag)
            })
            .map_err(|error| error.to_string())
    })
}

/// `/openapi.json`, `/docs`, `/docs/` and `/docs/{file}` (at the root, outside `/v1`: never rate
/// limited).
pub(crate) fn routes() -> Routes {
    Routes::new("")
        .tag(
            "docs",
            "This document and its offline Swagger UI (never rate limited).",
        )
        .route(operation!(openapi_json))
        .route(operation!(docs_redirect))
        .route(operation!(docs_index))
        .route(operation!(docs_asset, || {
            Problems::of([ApiError::new(ProblemCode::NotFound, "no such file")])
        }))
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
    ),
)]
pub async fn openapi_json(
    req: HttpRequest,
    source: web::Data<Source>,
) -> Result<HttpResponse, ApiError> {
    let (json, tag) = served(**source)
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
