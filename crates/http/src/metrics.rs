//! `GET /metrics`: the Prometheus scrape endpoint, on a listener of its own.
//!
//! The scrape is for operators, so it is never part of [`build_app`](crate::build_app): the
//! composition root serves [`build_metrics_app`] on a separate port, which the public load balancer
//! and ingress never route to. A path rule at a proxy cannot be the protection, since proxies and
//! actix disagree on spellings such as `/%6Detrics`.
//!
//! This crate records through the `metrics` facade only (the request metrics in
//! [`crate::middleware`], the admission and rate-limit metrics in [`crate::edge`]). Which recorder
//! collects them, and how they are rendered, is the composition root's choice, handed in as the
//! [`MetricsExporter`] — which also refreshes what is read at scrape time, such as the database
//! pool gauges.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, HttpResponse, web};

use crate::state::MetricsExporter;

/// The Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// The metrics listener's application: `GET /metrics`, and 404 problem+json for anything else.
pub fn build_metrics_app(
    exporter: MetricsExporter,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(web::Data::new(exporter))
        .service(web::resource("/metrics").route(web::get().to(render)))
        .default_service(web::to(crate::routing::unmatched))
}

/// Every metric of the process in the Prometheus text format.
pub async fn render(exporter: web::Data<MetricsExporter>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(exporter.render())
}

#[cfg(test)]
mod tests {
    use actix_web::http::StatusCode;
    use actix_web::test;

    use super::*;

    #[actix_web::test]
    async fn the_metrics_app_serves_the_scrape_and_nothing_else() {
        let app = test::init_service(build_metrics_app(MetricsExporter::new(|| {
            "strata_build_info 1\n".to_owned()
        })))
        .await;
        let response =
            test::call_service(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers().get("content-type").unwrap(),
            CONTENT_TYPE
        );
        assert_eq!(test::read_body(response).await, "strata_build_info 1\n");
        for uri in ["/", "/health/ready", "/v1/products"] {
            let response =
                test::call_service(&app, test::TestRequest::get().uri(uri).to_request()).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{uri}");
        }
    }
}
