//! Strata's HTTP adapter on actix-web: routes, controllers, DTOs, extractors, middleware and the
//! one mapping from use-case errors to RFC 9457 problem responses.
//!
//! [`build_app`] is the whole HTTP surface; the server binary and the HTTP tests both serve it, so
//! what is tested is what runs.

pub mod dto;
pub mod edge;
pub mod etag;
pub mod extract;
pub mod health;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod problem;
pub mod request_id;
pub mod routes;
pub mod state;
pub mod trace;

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
        // actix tries routes in the order they are registered, each pattern with a path
        // parameter through a regex: the busiest routes come first (a cached product read matched
        // after ten others spent 5 % of its instructions there).
        .service(
            web::scope("/v1")
                .configure(routes::products::configure)
                .configure(routes::orders::configure)
                .configure(routes::auth::configure)
                .configure(routes::users::configure)
                .configure(routes::exports::configure)
                .configure(routes::billing::configure)
                .configure(routes::admin::configure),
        )
        // Before the scope, which would answer `/health` with its own 404.
        .service(web::resource("/health").route(web::get().to(health::deep)))
        .service(
            web::scope("/health")
                .service(web::resource("/live").route(web::get().to(health::live)))
                .service(web::resource("/ready").route(web::get().to(health::ready))),
        )
        .configure(routes::problems::configure)
        .configure(openapi::configure)
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

/// No route matched.
async fn unmatched(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        ProblemCode::NotFound,
        format!("no route for {} {}", req.method(), req.path()),
    ))
}
