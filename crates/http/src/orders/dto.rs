//! The bodies of orders: placing one, reading them, and the list's filters.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strata_domain::{Order, RawLine};
use strata_services::OrderListParams;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::dto::schemas::{self, one_of};
use crate::dto::{MoneyView, integral, rfc3339};

/// One line of POST /v1/orders.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderItemRequest {
    /// The product's id.
    #[schema(value_type = uuid::Uuid, required = true)]
    pub product_id: Option<String>,
    /// 1–1000.
    #[serde(default, deserialize_with = "integral")]
    #[schema(value_type = i64, required = true, minimum = 1, maximum = 1000, examples(2))]
    pub quantity: Option<i64>,
}

/// POST /v1/orders
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"items": [{"product_id": "0193a5b2-7c1e-7d3a-9f10-3b2c4d5e6f70", "quantity": 2}]})))]
pub struct PlaceOrderRequest {
    /// 1–50 lines of distinct products.
    #[serde(default)]
    #[schema(required = true, min_items = 1, max_items = 50)]
    pub items: Vec<OrderItemRequest>,
}

impl PlaceOrderRequest {
    /// The lines as the domain validates them.
    pub fn lines(self) -> Vec<RawLine> {
        self.items
            .into_iter()
            .map(|item| RawLine {
                product_id: item.product_id,
                quantity: item.quantity,
            })
            .collect()
    }
}

/// An order line as clients see it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OrderItem)]
pub struct OrderItemView {
    /// The product.
    pub product_id: Uuid,
    /// Its SKU when ordered.
    #[schema(examples("LAMP-001"))]
    pub sku: String,
    /// Its name when ordered.
    #[schema(examples("Walnut desk lamp"))]
    pub name: String,
    /// Its price when ordered.
    pub unit_price: MoneyView,
    /// Units.
    #[schema(minimum = 1, maximum = 1000, examples(2))]
    pub quantity: i64,
    /// `unit_price × quantity`.
    pub line_total: MoneyView,
}

/// An order as clients see it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Order)]
pub struct OrderView {
    /// Identifier.
    pub id: Uuid,
    /// Who placed it.
    pub user_id: Uuid,
    /// `placed`, `fulfilled` or `cancelled`.
    #[schema(schema_with = schemas::order_status)]
    pub status: &'static str,
    /// Lines in request order.
    pub items: Vec<OrderItemView>,
    /// Sum of the line totals.
    pub total: MoneyView,
    /// Placement time.
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    /// Last status change.
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
}

impl From<Order> for OrderView {
    fn from(order: Order) -> Self {
        Self {
            id: order.id.0,
            user_id: order.user_id.0,
            status: order.status.as_str(),
            items: order
                .lines
                .into_iter()
                .map(|line| OrderItemView {
                    product_id: line.product_id.0,
                    sku: line.sku.into(),
                    name: line.name.into(),
                    unit_price: line.unit_price.into(),
                    quantity: line.quantity.into(),
                    line_total: line.line_total.into(),
                })
                .collect(),
            total: order.total.into(),
            created_at: order.created_at,
            updated_at: order.updated_at,
        }
    }
}

/// `GET /v1/orders` query parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OrderListQuery {
    /// `placed`, `fulfilled` or `cancelled`.
    #[param(schema_with = order_status_filter)]
    pub status: Option<String>,
    /// Admins only: one user's orders.
    #[param(value_type = Option<uuid::Uuid>, nullable = false)]
    pub user_id: Option<String>,
    /// Opaque position from the previous page (its `next_cursor`).
    #[param(nullable = false, min_length = 1)]
    pub cursor: Option<String>,
    /// 1–100, default 20.
    #[param(value_type = Option<u16>, minimum = 1, maximum = 100, default = 20, nullable = false)]
    pub limit: Option<String>,
}

impl From<OrderListQuery> for OrderListParams {
    fn from(query: OrderListQuery) -> Self {
        Self {
            status: query.status,
            user_id: query.user_id,
            cursor: query.cursor,
            limit: query.limit,
        }
    }
}

/// The status filter of the order list.
fn order_status_filter() -> utoipa::openapi::schema::Object {
    one_of(&schemas::order_statuses(), "Only orders with this status.")
}
