//! Example bodies of the orders' operations.

use serde_json::Value;

use super::dto::{OrderItemView, OrderView};
use crate::dto::PageView;
use crate::examples::{at, id, usd, value};

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
