//! Strata's HTTP adapter on actix-web: routes, controllers, DTOs, extractors, middleware and the
//! one mapping from use-case errors to RFC 9457 problem responses.
//!
//! [`build_app`] is the whole HTTP surface; the server binary and the HTTP tests both serve it, so
//! what is tested is what runs.
//!
//! The API is organised by area, one module each ([`auth`], [`users`], [`catalog`], [`orders`],
//! [`billing`], [`admin`], [`exports`], [`problems`], [`health`], [`docs`]): its handlers with
//! their `#[utoipa::path]` documentation, its DTOs, its examples, and one [`routing::Routes`]
//! that both mounts its operations and describes them (with the problems each can answer). The
//! rest is what every area shares: extractors, ETags, the problem mapping, the edge and the
//! middleware.

pub mod admin;
pub mod auth;
pub mod billing;
pub mod catalog;
pub mod docs;
pub mod dto;
pub mod edge;
pub mod etag;
mod examples;
pub mod exports;
pub mod extract;
pub mod headers;
pub mod health;
pub mod metrics;
pub mod middleware;
pub mod orders;
pub mod problem;
pub mod problems;
pub mod request_id;
pub mod routing;
pub mod state;
pub mod trace;
pub mod users;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::{Compress, from_fn};
use actix_web::{App, HttpRequest, HttpResponse, web};

pub use health::Health;
pub use problem::{ApiError, ProblemCode};
pub use state::AppState;

/// The application: every route, the error handlers and the middleware, around `state`.
pub fn build_app(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let cors_origins = state.edge.settings().cors_origins.clone();
    let hsts = state.edge.hsts().cloned();
    App::new()
        .app_data(web::Data::new(state))
        .app_data(
            web::PathConfig::default().error_handler(|_, _| {
                ApiError::new(ProblemCode::NotFound, "no such resource").into()
            }),
        )
        .app_data(web::QueryConfig::default().error_handler(|error, _| {
            ApiError::validation(strata_domain::ValidationErrors::single(
                strata_domain::FieldError::new("query", "invalid", error.to_string()),
            ))
            .into()
        }))
        .configure(mount)
        .default_service(web::to(unmatched))
        // Innermost first; edge.rs explains the order.
        .wrap(from_fn(edge::guard))
        .wrap(Compress::default())
        .wrap(edge::cors(&cors_origins))
        // Boxed: actix keeps the outermost layer's future inside every connection's task, so an
        // unboxed one costs each idle keep-alive connection its size (half a KiB) too.
        .wrap(from_fn(move |req, next| {
            Box::pin(middleware::observe(req, next, hsts.clone()))
        }))
}

/// Every area, in the order of the document's tags; the areas under `/v1` are matched in this
/// order too, each behind its own static prefix (a scope, or a path without parameters), so no
/// route pays for the patterns of the areas before it.
pub(crate) fn areas() -> Vec<routing::Routes> {
    vec![
        auth::routes(),
        users::routes(),
        exports::routes(),
        catalog::routes(),
        orders::routes(),
        billing::routes(),
        admin::routes(),
        health::routes(),
        docs::routes(),
        problems::routes(),
    ]
}

/// Mounts every area: those under `/v1` in one scope (rate limited by the edge), the others at
/// the root.
fn mount(cfg: &mut web::ServiceConfig) {
    let (versioned, root): (Vec<_>, Vec<_>) =
        areas().into_iter().partition(|area| area.base() == "/v1");
    cfg.service(web::scope("/v1").configure(|cfg| {
        for area in versioned {
            area.configure(cfg);
        }
    }));
    for area in root {
        area.configure(cfg);
    }
}

/// No route matched.
async fn unmatched(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        ProblemCode::NotFound,
        format!("no route for {} {}", req.method(), req.path()),
    ))
}
