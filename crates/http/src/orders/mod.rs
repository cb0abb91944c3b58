//! `/v1/orders`: placing (with Idempotency-Key), reading and moving orders.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use strata_domain::{InvalidTransition, OrderId, OrderStatus, ProductId, ShortLine};
use strata_services::OrderError;

use self::dto::{OrderListQuery, OrderView, PlaceOrderRequest};
use crate::dto::PageView;
use crate::etag;
use crate::extract::{ApiJson, Authenticated, IDEMPOTENT_REPLAYED, idempotency_key, path_uuid};
use crate::problem::ApiError;
use crate::routing::{Problems, Routes, operation};
use crate::state::AppState;

pub mod dto;
mod examples;

/// The orders' routes and documentation.
pub(crate) fn routes() -> Routes {
    Routes::new("/v1")
        .tag(
            "orders",
            "Placing orders (with Idempotency-Key), reading, cancelling and fulfilling them.",
        )
        .scope("/orders", |routes| {
            routes
                .route(operation!(list, || Problems::of([
                    OrderError::Forbidden.into()
                ])))
                .route(operation!(place, || {
                    Problems::of([short_of_stock(), OrderError::KeyReused.into()])
                        .body::<PlaceOrderRequest>()
                }))
                .route(operation!(get, || Problems::of([
                    OrderError::NotFound.into()
                ])))
                .route(operation!(cancel, || {
                    Problems::of([
                        OrderError::NotFound.into(),
                        refused_move(OrderStatus::Fulfilled, OrderStatus::Cancelled),
                    ])
                }))
                .route(operation!(fulfill, || {
                    Problems::of([
                        OrderError::Forbidden.into(),
                        OrderError::NotFound.into(),
                        refused_move(OrderStatus::Cancelled, OrderStatus::Fulfilled),
                    ])
                }))
        })
}

/// An order refused for a line short of stock.
pub(crate) fn short_of_stock() -> ApiError {
    OrderError::InsufficientStock(vec![ShortLine {
        index: 0,
        product_id: ProductId(
            uuid::Uuid::parse_str("0193a5b2-7c1e-7d3a-9f10-3b2c4d5e6f70").unwrap_or_default(),
        ),
        requested: 12,
        available: 10,
    }])
    .into()
}

fn refused_move(from: OrderStatus, to: OrderStatus) -> ApiError {
    OrderError::InvalidTransition(InvalidTransition { from, to }).into()
}

fn order_id(raw: &str) -> Result<OrderId, ApiError> {
    path_uuid(raw, "order", None).map(OrderId)
}

/// Place an order.
///
/// 1–50 lines of distinct active products, 1–1000 units each, all in one currency; prices are
/// captured now and the stock taken in the same transaction (never oversold). With an
/// `Idempotency-Key`, a retry replays the first answer and takes no more stock. Unknown or
/// inactive products are 422; lines short of stock are 409 `INSUFFICIENT_STOCK`, each named in
/// `errors` (`items[i].quantity`), and nothing is ordered.
#[utoipa::path(
    post,
    path = "/v1/orders",
    tag = "orders",
    operation_id = "placeOrder",
    security(("bearer" = [])),
    params(crate::extract::IdempotencyKey),
    request_body = PlaceOrderRequest,
    responses(
        (status = 201, description = "Placed (or, with `Idempotent-Replayed: true`, the first answer to this key).", body = OrderView,
            headers(
                ("Location" = String, description = "The order: `/v1/orders/{id}`."),
                ("Idempotent-Replayed" = String, description = "`true` when this replays the first answer to the `Idempotency-Key`; absent otherwise."),
            ),
            example = examples::order),
    ),
)]
async fn place(
    req: HttpRequest,
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    ApiJson(body): ApiJson<PlaceOrderRequest>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let placed = state.orders.place(&principal, &body.lines(), key).await?;
    let mut response = HttpResponse::Created();
    response.insert_header((header::LOCATION, format!("/v1/orders/{}", placed.order.id)));
    if placed.replayed {
        response.insert_header((IDEMPOTENT_REPLAYED, "true"));
    }
    Ok(response.json(OrderView::from(placed.order)))
}

/// List orders.
///
/// The caller's orders (an admin's: everyone's, or one user's with `user_id`), newest first,
/// with their lines; keyset-paginated.
#[utoipa::path(
    get,
    path = "/v1/orders",
    tag = "orders",
    operation_id = "listOrders",
    security(("bearer" = [])),
    params(OrderListQuery),
    responses(
        (status = 200, description = "A page of orders.", body = PageView<OrderView>,
            headers(("Cache-Control" = String, description = "`private, no-store`.")),
            example = examples::order_page),
    ),
)]
async fn list(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    query: web::Query<OrderListQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = state
        .orders
        .list(&principal, query.into_inner().into())
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "private, no-store"))
        .json(PageView::<OrderView>::from(page)))
}

/// Get an order.
///
/// One of the caller's orders (an admin: anyone's); another user's order is 404.
#[utoipa::path(
    get,
    path = "/v1/orders/{id}",
    tag = "orders",
    operation_id = "getOrder",
    security(("bearer" = [])),
    params(
        ("id" = uuid::Uuid, Path, description = "The order's id."),
        crate::etag::IfNoneMatch,
    ),
    responses(
        (status = 200, description = "The order.", body = OrderView,
            headers(
                ("ETag" = String, description = "Strong validator of the representation."),
                ("Cache-Control" = String, description = "`private, no-cache`."),
            ),
            example = examples::order),
    ),
)]
async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let order = state.orders.get(&principal, order_id(&id)?).await?;
    etag::respond(&req, &OrderView::from(order), "private, no-cache")
}

/// Cancel an order.
///
/// `placed` → `cancelled` (the owner or an admin); every line's stock goes back, exactly once.
/// Any other status is 409 `INVALID_TRANSITION`.
#[utoipa::path(
    post,
    path = "/v1/orders/{id}/cancel",
    tag = "orders",
    operation_id = "cancelOrder",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The order's id.")),
    responses(
        (status = 200, description = "The cancelled order.", body = OrderView,
            example = examples::cancelled_order),
    ),
)]
async fn cancel(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let order = state.orders.cancel(&principal, order_id(&id)?).await?;
    Ok(HttpResponse::Ok().json(OrderView::from(order)))
}

/// Fulfil an order (admin).
///
/// `placed` → `fulfilled`; any other status is 409 `INVALID_TRANSITION`.
#[utoipa::path(
    post,
    path = "/v1/orders/{id}/fulfill",
    tag = "orders",
    operation_id = "fulfillOrder",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The order's id.")),
    responses(
        (status = 200, description = "The fulfilled order.", body = OrderView,
            example = examples::fulfilled_order),
    ),
)]
async fn fulfill(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = OrderId(path_uuid(&id, "order", Some(&principal))?);
    let order = state.orders.fulfill(&principal, id).await?;
    Ok(HttpResponse::Ok().json(OrderView::from(order)))
}
