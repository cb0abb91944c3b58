//! `/v1/plans`, `/v1/subscriptions` and `/v1/invoices`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use strata_domain::{PlanCode, ValidationErrors};
use strata_services::BillingError;

use self::dto::{
    CancelSubscriptionRequest, InvoiceView, PlanChoiceQuery, PlanChoiceRequest, PlanView,
    ProrationView, SubscribedView, SubscriptionView,
};
use crate::dto::{PageQuery, PageView};
use crate::etag;
use crate::extract::{ApiJson, Authenticated, IDEMPOTENT_REPLAYED, idempotency_key};
use crate::problem::ApiError;
use crate::routing::{Problems, Routes, operation};
use crate::state::AppState;

pub mod dto;
mod examples;

/// The billing routes (plans, subscriptions, invoices) and documentation.
pub(crate) fn routes() -> Routes {
    Routes::new("/v1")
        .tag("plans", "The subscription plans on offer.")
        .tag(
            "subscriptions",
            "Subscribing, proration previews, plan changes and cancellation.",
        )
        .tag("invoices", "The caller's invoices.")
        .route(operation!(plans))
        .scope("/subscriptions", |routes| {
            routes
                .route(operation!(subscribe, || {
                    Problems::of([
                        BillingError::AlreadySubscribed.into(),
                        BillingError::KeyReused.into(),
                    ])
                    .body::<PlanChoiceRequest>()
                }))
                .route(operation!(current, || Problems::of([
                    BillingError::NotFound.into()
                ])))
                .route(operation!(preview, || {
                    Problems::of([
                        BillingError::NotFound.into(),
                        BillingError::SamePlan.into(),
                        BillingError::Stale.into(),
                    ])
                    .query_invalid(ApiError::validation(ValidationErrors(
                        PlanCode::parse("Pro Monthly!").err().into_iter().collect(),
                    )))
                }))
                .route(operation!(change_plan, || {
                    Problems::of([
                        BillingError::NotFound.into(),
                        BillingError::SamePlan.into(),
                        BillingError::Stale.into(),
                        BillingError::KeyReused.into(),
                    ])
                    .body::<PlanChoiceRequest>()
                }))
                .route(operation!(cancel, || {
                    Problems::of([
                        BillingError::NotFound.into(),
                        BillingError::NotActive.into(),
                    ])
                    .body::<CancelSubscriptionRequest>()
                }))
        })
        .route(operation!(invoices))
}

/// List the plans.
///
/// The active plans by code, keyset-paginated like every list (the first page usually holds
/// them all), cached, with an ETag.
#[utoipa::path(
    get,
    path = "/v1/plans",
    tag = "plans",
    operation_id = "listPlans",
    params(PageQuery, crate::etag::IfNoneMatch),
    responses(
        (status = 200, description = "A page of plans.", body = PageView<PlanView>,
            headers(
                ("ETag" = String, description = "Strong validator of the list."),
                ("Cache-Control" = String, description = "`public, no-cache`: revalidate before each use."),
            ),
            example = examples::plans),
    ),
)]
async fn plans(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = state
        .subscriptions
        .plan_page(query.cursor.as_deref(), query.limit.as_deref())
        .await?;
    etag::respond(&req, &PageView::<PlanView>::from(page), "public, no-cache")
}

/// Subscribe to a plan.
///
/// Starts a subscription now and issues the invoice of its first period (`latest_invoice`). One
/// live subscription per user: 409 `CONFLICT` if there is one already (change its plan or cancel
/// it). With an `Idempotency-Key`, a retry replays the first answer.
#[utoipa::path(
    post,
    path = "/v1/subscriptions",
    tag = "subscriptions",
    operation_id = "subscribe",
    security(("bearer" = [])),
    params(crate::extract::IdempotencyKey),
    request_body = PlanChoiceRequest,
    responses(
        (status = 201, description = "Subscribed (or, with `Idempotent-Replayed: true`, the first answer to this key).", body = SubscribedView,
            headers(
                ("Location" = String, description = "`/v1/subscriptions/me`."),
                ("Idempotent-Replayed" = String, description = "`true` when this replays the first answer to the `Idempotency-Key`; absent otherwise."),
            ),
            example = examples::subscribed),
    ),
)]
async fn subscribe(
    req: HttpRequest,
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    ApiJson(body): ApiJson<PlanChoiceRequest>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let outcome = state
        .subscriptions
        .subscribe(&principal, body.plan_code.as_deref(), key)
        .await?;
    let mut response = HttpResponse::Created();
    response.insert_header((header::LOCATION, "/v1/subscriptions/me"));
    if outcome.replayed {
        response.insert_header((IDEMPOTENT_REPLAYED, "true"));
    }
    Ok(response.json(SubscribedView::from(outcome.billed)))
}

/// Your subscription.
///
/// The live subscription, else the most recent one; 404 if the caller never subscribed.
#[utoipa::path(
    get,
    path = "/v1/subscriptions/me",
    tag = "subscriptions",
    operation_id = "getMySubscription",
    security(("bearer" = [])),
    params(crate::etag::IfNoneMatch),
    responses(
        (status = 200, description = "The subscription.", body = SubscriptionView,
            headers(
                ("ETag" = String, description = "Strong validator of the representation."),
                ("Cache-Control" = String, description = "`private, no-cache`."),
            ),
            example = examples::subscription),
    ),
)]
async fn current(
    req: HttpRequest,
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let subscription = state.subscriptions.current(&principal).await?;
    etag::respond(
        &req,
        &SubscriptionView::from(subscription),
        "private, no-cache",
    )
}

/// Preview a plan change.
///
/// What changing to `plan_code` now would invoice: a credit for the unused time of the current
/// plan and a charge for the rest of the period on the new one, to the second. No effect.
#[utoipa::path(
    get,
    path = "/v1/subscriptions/me/proration",
    tag = "subscriptions",
    operation_id = "previewPlanChange",
    security(("bearer" = [])),
    params(PlanChoiceQuery),
    responses(
        (status = 200, description = "The preview.", body = ProrationView,
            headers(("Cache-Control" = String, description = "`private, no-store`.")),
            example = examples::proration),
    ),
)]
async fn preview(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    query: web::Query<PlanChoiceQuery>,
) -> Result<HttpResponse, ApiError> {
    let preview = state
        .subscriptions
        .preview(&principal, query.plan_code.as_deref())
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "private, no-store"))
        .json(ProrationView::from(preview)))
}

/// Change plan.
///
/// Moves the live subscription to `plan_code` now and issues the proration invoice (equal to the
/// preview at that instant); the period is unchanged. With an `Idempotency-Key`, a retry
/// replays the first answer.
#[utoipa::path(
    post,
    path = "/v1/subscriptions/me/change-plan",
    tag = "subscriptions",
    operation_id = "changePlan",
    security(("bearer" = [])),
    params(crate::extract::IdempotencyKey),
    request_body = PlanChoiceRequest,
    responses(
        (status = 200, description = "The proration invoice (or, with `Idempotent-Replayed: true`, the first answer to this key).", body = InvoiceView,
            headers(("Idempotent-Replayed" = String, description = "`true` when this replays the first answer to the `Idempotency-Key`; absent otherwise.")),
            example = examples::proration_invoice_example),
    ),
)]
async fn change_plan(
    req: HttpRequest,
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    ApiJson(body): ApiJson<PlanChoiceRequest>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let outcome = state
        .subscriptions
        .change_plan(&principal, body.plan_code.as_deref(), key)
        .await?;
    let mut response = HttpResponse::Ok();
    if outcome.replayed {
        response.insert_header((IDEMPOTENT_REPLAYED, "true"));
    }
    Ok(response.json(InvoiceView::from(outcome.billed.invoice)))
}

/// Cancel your subscription.
///
/// `at_period_end: true` lets it run to the end of the period and then end instead of renewing;
/// `false` ends it now. 409 `INVALID_TRANSITION` if it is cancelled already.
#[utoipa::path(
    post,
    path = "/v1/subscriptions/me/cancel",
    tag = "subscriptions",
    operation_id = "cancelSubscription",
    security(("bearer" = [])),
    request_body = CancelSubscriptionRequest,
    responses(
        (status = 200, description = "The subscription as it now stands.", body = SubscriptionView,
            example = examples::cancelled_subscription),
    ),
)]
async fn cancel(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    ApiJson(body): ApiJson<CancelSubscriptionRequest>,
) -> Result<HttpResponse, ApiError> {
    let subscription = state
        .subscriptions
        .cancel(&principal, body.at_period_end)
        .await?;
    Ok(HttpResponse::Ok().json(SubscriptionView::from(subscription)))
}

/// List your invoices.
///
/// The caller's invoices, newest first, keyset-paginated.
#[utoipa::path(
    get,
    path = "/v1/invoices",
    tag = "invoices",
    operation_id = "listInvoices",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of invoices.", body = PageView<InvoiceView>,
            headers(("Cache-Control" = String, description = "`private, no-store`.")),
            example = examples::invoice_page),
    ),
)]
async fn invoices(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = state
        .subscriptions
        .invoices(&principal, query.cursor.as_deref(), query.limit.as_deref())
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "private, no-store"))
        .json(PageView::<InvoiceView>::from(page)))
}
