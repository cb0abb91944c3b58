//! The bodies of the catalog: products, prices, stock and the list's filters.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use strata_domain::Product;
use strata_services::{PriceInput, ProductDraft, ProductListParams, ProductPatch};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::dto::schemas::{self, one_of};
use crate::dto::{MoneyView, integral, present, rfc3339};

/// A price in a product request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MoneyInput, examples(json!({"amount_minor": 4999, "currency": "USD"})))]
pub struct PriceRequest {
    /// Minor units, 0 or more.
    #[serde(default, deserialize_with = "integral")]
    #[schema(value_type = i64, required = true, minimum = 0, maximum = 100_000_000_000_i64, examples(4999))]
    pub amount_minor: Option<i64>,
    /// ISO 4217 code in upper case.
    #[schema(required = true, schema_with = schemas::currency)]
    pub currency: Option<String>,
}

impl From<PriceRequest> for PriceInput {
    fn from(price: PriceRequest) -> Self {
        Self {
            amount_minor: price.amount_minor,
            currency: price.currency,
        }
    }
}

/// POST /v1/products
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"sku": "LAMP-001", "name": "Walnut desk lamp", "description": "A warm light for late work.", "price": {"amount_minor": 4999, "currency": "USD"}, "stock": 10})))]
pub struct CreateProductRequest {
    /// Unique SKU, `[A-Z0-9-]{3,32}`.
    #[schema(value_type = String, required = true, pattern = "^[A-Z0-9-]{3,32}$", examples("LAMP-001"))]
    pub sku: Option<String>,
    /// Name, 1–200 characters.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 200, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$", examples("Walnut desk lamp"))]
    pub name: Option<String>,
    /// Up to 5000 characters.
    #[schema(
        max_length = 5000,
        pattern = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]*$"
    )]
    pub description: Option<String>,
    /// Unit price.
    #[schema(value_type = PriceRequest, required = true)]
    pub price: Option<PriceRequest>,
    /// Initial stock, default 0.
    #[serde(default, deserialize_with = "integral")]
    #[schema(minimum = 0, maximum = 1_000_000_000, default = 0)]
    pub stock: Option<i64>,
    /// Default true.
    #[schema(default = true)]
    pub active: Option<bool>,
}

impl From<CreateProductRequest> for ProductDraft {
    fn from(body: CreateProductRequest) -> Self {
        Self {
            sku: body.sku,
            name: body.name,
            description: body.description,
            price: body.price.map(Into::into),
            stock: body.stock,
            active: body.active,
        }
    }
}

/// PATCH /v1/products/{id}: at least one field; only the fields given change (null is not a
/// value: leave a field out to keep it); stock has its own endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1, examples(json!({"name": "Walnut desk lamp (2nd edition)", "price": {"amount_minor": 5499, "currency": "USD"}})))]
pub struct UpdateProductRequest {
    /// New SKU.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, pattern = "^[A-Z0-9-]{3,32}$")]
    pub sku: Option<String>,
    /// New name.
    #[serde(default, deserialize_with = "present")]
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub name: Option<String>,
    /// New description.
    #[serde(default, deserialize_with = "present")]
    #[schema(
        nullable = false,
        max_length = 5000,
        pattern = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]*$"
    )]
    pub description: Option<String>,
    /// New price.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub price: Option<PriceRequest>,
    /// Reactivate (true) or deactivate (false).
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub active: Option<bool>,
}

impl From<UpdateProductRequest> for ProductPatch {
    fn from(body: UpdateProductRequest) -> Self {
        Self {
            sku: body.sku,
            name: body.name,
            description: body.description,
            price: body.price.map(Into::into),
            active: body.active,
        }
    }
}

/// POST /v1/products/{id}/stock
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"delta": 25}), json!({"delta": -3})))]
pub struct StockAdjustRequest {
    /// Units to add (negative to remove), non-zero.
    #[serde(default, deserialize_with = "integral")]
    #[schema(value_type = i64, required = true, minimum = -1_000_000_000, maximum = 1_000_000_000, examples(25))]
    pub delta: Option<i64>,
}

/// A product as clients see it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Product)]
pub struct ProductView {
    /// Identifier.
    pub id: Uuid,
    /// Unique SKU.
    #[schema(examples("LAMP-001"))]
    pub sku: String,
    /// Name.
    #[schema(examples("Walnut desk lamp"))]
    pub name: String,
    /// Description, possibly empty.
    pub description: String,
    /// Unit price.
    pub price: MoneyView,
    /// Units on hand.
    #[schema(minimum = 0, examples(10))]
    pub stock: i64,
    /// False once deleted.
    pub active: bool,
    /// Creation time.
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    /// Last change.
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
}

impl From<Product> for ProductView {
    fn from(product: Product) -> Self {
        Self {
            id: product.id.0,
            sku: product.sku.into(),
            name: product.name.into(),
            description: product.description.into(),
            price: product.price.money().into(),
            stock: product.stock.into(),
            active: product.active,
            created_at: product.created_at,
            updated_at: product.updated_at,
        }
    }
}

/// `GET /v1/products` query parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProductListQuery {
    /// Substring of name or SKU, case-insensitive.
    #[param(min_length = 3, max_length = 100, nullable = false, example = "lamp")]
    pub q: Option<String>,
    /// `true` (default) or `false`.
    #[param(value_type = Option<bool>, default = true, nullable = false)]
    pub active: Option<String>,
    /// Lowest price, minor units.
    #[param(value_type = Option<i64>, minimum = 0, nullable = false, example = 1000)]
    pub min_price: Option<String>,
    /// Highest price, minor units.
    #[param(value_type = Option<i64>, minimum = 0, nullable = false, example = 10000)]
    pub max_price: Option<String>,
    /// ISO 4217 code.
    #[param(schema_with = schemas::currency)]
    pub currency: Option<String>,
    /// `created_at` (default) or `price`.
    #[param(schema_with = product_sort)]
    pub sort: Option<String>,
    /// `desc` (default) or `asc`.
    #[param(schema_with = sort_order)]
    pub order: Option<String>,
    /// Opaque position from the previous page (its `next_cursor`).
    #[param(nullable = false, min_length = 1)]
    pub cursor: Option<String>,
    /// 1–100, default 20.
    #[param(value_type = Option<u16>, minimum = 1, maximum = 100, default = 20, nullable = false)]
    pub limit: Option<String>,
}

impl From<ProductListQuery> for ProductListParams {
    fn from(query: ProductListQuery) -> Self {
        Self {
            q: query.q,
            active: query.active,
            min_price: query.min_price,
            max_price: query.max_price,
            currency: query.currency,
            sort: query.sort,
            order: query.order,
            cursor: query.cursor,
            limit: query.limit,
        }
    }
}

/// The sort key of the product list.
fn product_sort() -> utoipa::openapi::schema::Object {
    let mut schema = one_of(
        &["created_at", "price"],
        "Sort key: `created_at` (default) or `price`.",
    );
    schema.default = Some(Value::from("created_at"));
    schema
}

/// The sort direction of the product list.
fn sort_order() -> utoipa::openapi::schema::Object {
    let mut schema = one_of(&["desc", "asc"], "Direction: `desc` (default) or `asc`.");
    schema.default = Some(Value::from("desc"));
    schema
}
