//! `/v1/admin/dashboard` and `/v1/admin/reports`: the admin's figures, and reports generated in the
//! background.
//!
//! Mounted as resources with their full paths, not under a `/admin` scope: an actix scope owns
//! every path below its prefix, so a second `/admin` scope (the exports') would never be reached.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use strata_domain::ReportId;

use strata_domain::ReportRequest;
use strata_services::{DashboardError, ReportError};

use self::dto::{CreateReportRequest, DashboardView, ReportView};
use crate::etag;
use crate::extract::{ApiJson, Authenticated, path_uuid};
use crate::problem::{ApiError, ProblemCode};
use crate::routing::{Problems, Routes, operation};
use crate::state::AppState;

pub mod dto;
mod examples;

/// The admin's routes and documentation.
pub(crate) fn routes() -> Routes {
    Routes::new("/v1")
        .tag(
            "admin",
            "The admin's dashboard (cached for a few seconds) and sales reports generated in the background.",
        )
        .route(operation!(dashboard, || {
            Problems::of([DashboardError::Forbidden.into()])
        }))
        .route(operation!(create_report, || {
            Problems::of([ReportError::Forbidden.into(), report_request_invalid()])
                .body::<CreateReportRequest>()
        }))
        .route(operation!(get_report, || {
            Problems::of([ReportError::Forbidden.into(), ReportError::NotFound.into()])
        }))
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

/// The admin dashboard.
///
/// Revenue (per currency, never summed across currencies) and orders today, over the last 7 days
/// and over the last 30 days; the 5 best-selling products of the last 30 days by units; the
/// active products below the low-stock threshold (the first 20, lowest stock first, and how many
/// in all); and the number of active subscriptions. Orders that were cancelled never count.
/// Windows are whole UTC days ending now: `today` starts at 00:00 UTC, `last_7_days` is today and
/// the 6 days before it, `last_30_days` today and the 29 days before it. The figures are read
/// concurrently and cached for a few seconds (`STRATA_DASHBOARD_TTL_SECS`): `generated_at` says
/// when they were read.
#[utoipa::path(
    get,
    path = "/v1/admin/dashboard",
    tag = "admin",
    operation_id = "getDashboard",
    security(("bearer" = [])),
    params(crate::etag::IfNoneMatch),
    responses(
        (status = 200, description = "The dashboard.", body = DashboardView,
            headers(
                ("ETag" = String, description = "Strong validator of the representation (it changes with `generated_at`)."),
                ("Cache-Control" = String, description = "`private, no-cache`."),
            ),
            example = examples::dashboard),
    ),
)]
async fn dashboard(
    req: HttpRequest,
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let dashboard = state.dashboard.dashboard(&principal).await?;
    etag::respond(&req, &DashboardView::from(dashboard), "private, no-cache")
}

/// Request a report (admin).
///
/// Queues a report over `[from, to)` and answers at once with its id (`202`); a worker generates
/// it. Poll `Location` until `status` is `done` (the `result` is then included) or `failed` (with
/// `error`). A `sales` report counts the orders created in the range and not cancelled: the
/// order count, the revenue per currency, the orders, units and revenue of every UTC day the
/// range touches, and the 10 best-selling products by units. `from` must be before `to`, at most
/// 366 days apart; every invalid field is named in the 422.
#[utoipa::path(
    post,
    path = "/v1/admin/reports",
    tag = "admin",
    operation_id = "createReport",
    security(("bearer" = [])),
    request_body = CreateReportRequest,
    responses(
        (status = 202, description = "Queued.", body = ReportView,
            headers(("Location" = String, description = "The report: `/v1/admin/reports/{id}`.")),
            example = examples::queued_report),
    ),
)]
async fn create_report(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    ApiJson(body): ApiJson<CreateReportRequest>,
) -> Result<HttpResponse, ApiError> {
    let report = state
        .reports
        .request(&principal, body.into(), crate::trace::current_context())
        .await?;
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/v1/admin/reports/{}", report.id)))
        .json(ReportView::from(report)))
}

/// Get a report (admin).
///
/// The report's status: `queued`, `running` (a worker is on it, or will retry it), `done` (with
/// `result`) or `failed` (with `error`, once every attempt failed). With an ETag.
#[utoipa::path(
    get,
    path = "/v1/admin/reports/{id}",
    tag = "admin",
    operation_id = "getReport",
    security(("bearer" = [])),
    params(
        ("id" = uuid::Uuid, Path, description = "The report's id."),
        crate::etag::IfNoneMatch,
    ),
    responses(
        (status = 200, description = "The report.", body = ReportView,
            headers(
                ("ETag" = String, description = "Strong validator of the representation."),
                ("Cache-Control" = String, description = "`private, no-cache`."),
            ),
            examples(
                ("done" = (summary = "Done, with its result", value = json!(examples::done_report()))),
                ("failed" = (summary = "Failed, with the reason", value = json!(examples::failed_report()))),
            )),
    ),
)]
async fn get_report(
    req: HttpRequest,
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = ReportId(path_uuid(&id, "report", Some(&principal))?);
    let report = state.reports.get(&principal, id).await?;
    etag::respond(&req, &ReportView::from(report), "private, no-cache")
}
