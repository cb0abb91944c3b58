//! `GET /metrics`: the Prometheus scrape endpoint.
//!
//! This crate records through the `metrics` facade only (the request metrics in
//! [`crate::middleware`], the admission and rate-limit metrics in [`crate::edge`]). Which recorder
//! collects them, and how they are rendered, is the composition root's choice, handed in as the
//! [`MetricsExporter`](crate::state::MetricsExporter) of [`AppState`] — which also refreshes what
//! is read at scrape time, such as the database pool gauges.

use actix_web::{HttpResponse, web};

use crate::state::AppState;

/// The Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Every metric of the process in the Prometheus text format.
pub async fn render(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(state.metrics.render())
}
