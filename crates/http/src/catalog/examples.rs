//! Example bodies of the catalog's operations.

use serde_json::Value;

use super::dto::ProductView;
use crate::dto::PageView;
use crate::examples::{at, id, usd, value};

fn product_view() -> ProductView {
    ProductView {
        id: id("0193a5b2-7c1e-7d3a-9f10-3b2c4d5e6f70"),
        sku: "LAMP-001".to_owned(),
        name: "Walnut desk lamp".to_owned(),
        description: "A warm light for late work.".to_owned(),
        price: usd(4999),
        stock: 10,
        active: true,
        created_at: at("2026-11-01T08:00:00.000000Z"),
        updated_at: at("2026-11-01T08:00:00.000000Z"),
    }
}

/// A product.
pub(crate) fn product() -> Value {
    value(product_view())
}

/// A page of products (the last one).
pub(crate) fn product_page() -> Value {
    value(PageView {
        items: vec![product_view()],
        next_cursor: None,
    })
}
