//! Request and response bodies, named for their purpose. Request fields are optional strings with
//! defaults so that validation can name every missing or invalid field at once; unknown fields are
//! refused, so a misspelt or unsupported field is never silently ignored.

use chrono::{DateTime, Datelike as _, SecondsFormat, Timelike as _, Utc};
use serde::{Deserialize, Serialize, Serializer};
use strata_domain::{
    BilledSubscription, Currency, Invoice, InvoiceLine, Money, Order, Plan, Product, RawLine,
    Subscription, User,
};
use strata_ports::{OrderExportRow, UserExportRow};
use strata_services::{
    ExportParams, OrderListParams, Page, PriceInput, ProductDraft, ProductListParams, ProductPatch,
    ProrationPreview, TokenPair,
};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// `at` in RFC 3339, UTC, to the microsecond (`2026-11-21T10:00:00.123456Z`), as chrono writes it
/// with `SecondsFormat::Micros`, but digit by digit: a list page carries two per product, and
/// chrono's general formatter was ≈ 4 % of the product list's time.
fn rfc3339<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    match (u32::try_from(at.year()), at.nanosecond()) {
        (Ok(year), nanos) if year <= 9999 && nanos < 1_000_000_000 => {
            for (start, width, value) in [
                (0, 4, year),
                (5, 2, at.month()),
                (8, 2, at.day()),
                (11, 2, at.hour()),
                (14, 2, at.minute()),
                (17, 2, at.second()),
                (20, 6, nanos / 1000),
            ] {
                let mut rest = value;
                for digit in text[start..start + width].iter_mut().rev() {
                    // A single decimal digit.
                    #[allow(clippy::cast_possible_truncation)]
                    let unit = (rest % 10) as u8;
                    *digit = b'0' + unit;
                    rest /= 10;
                }
            }
            let text = std::str::from_utf8(&text).map_err(serde::ser::Error::custom)?;
            serializer.serialize_str(text)
        }
        // Years beyond four digits and leap seconds: chrono's own spelling.
        _ => serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Micros, true)),
    }
}

/// The `pattern` of a name (a display name, a product name): the domain trims it, then wants at
/// least one character and no control character (Unicode `Cc`). The schema attributes spell it
/// out (they take literals only); a test holds them to this.
pub const NAME_PATTERN: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$";

/// The `pattern` of a product description: no control character but line feeds and tabs.
pub const DESCRIPTION_PATTERN: &str = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]*$";

/// A field a PATCH may leave out but not set to null: null would read as "clear it", which these
/// fields do not support, and silently taking it for "leave it" would hide the client's mistake.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// An integer field: JSON has one number type, and JSON Schema's `integer` (what the document
/// says) is any number with a zero fractional part, so `2.0` and `2e0` are the integer 2.
fn integral<'de, D>(deserializer: D) -> Result<Option<i64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Integral;

    impl serde::de::Visitor<'_> for Integral {
        type Value = Option<i64>;

        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str("an integer")
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Self::Value, E> {
            Ok(Some(value))
        }

        fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Self::Value, E> {
            i64::try_from(value).map(Some).map_err(|_| {
                E::invalid_value(serde::de::Unexpected::Unsigned(value), &"a 64-bit integer")
            })
        }

        fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Self::Value, E> {
            // 2^63 is exactly representable; every whole f64 below it (and from -2^63) fits.
            const BOUND: f64 = 9_223_372_036_854_775_808.0;
            if value.fract() == 0.0 && (-BOUND..BOUND).contains(&value) {
                // Exact: `value` is whole and within i64's range.
                #[allow(clippy::cast_possible_truncation)]
                Ok(Some(value as i64))
            } else {
                Err(E::invalid_type(serde::de::Unexpected::Float(value), &self))
            }
        }
    }

    deserializer.deserialize_any(Integral)
}

/// POST /v1/auth/register
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"email": "ada@example.com", "password": "correct horse battery", "display_name": "Ada"})))]
pub struct RegisterRequest {
    /// Email address.
    #[serde(default)]
    #[schema(required = true, format = Email, max_length = 254, examples("ada@example.com"))]
    pub email: String,
    /// Password, 8–128 characters.
    #[serde(default)]
    #[schema(required = true, format = Password, min_length = 8, max_length = 128, examples("correct horse battery"))]
    pub password: String,
    /// Public name, 1–80 characters.
    #[serde(default)]
    #[schema(
        required = true,
        min_length = 1,
        max_length = 80,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$",
        examples("Ada")
    )]
    pub display_name: String,
}

/// POST /v1/auth/login
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"email": "customer@strata.test", "password": "strata-demo-password"})))]
pub struct LoginRequest {
    /// Email address.
    #[serde(default)]
    #[schema(required = true, format = Email, examples("customer@strata.test"))]
    pub email: String,
    /// Password.
    #[serde(default)]
    #[schema(required = true, format = Password, min_length = 1, examples("strata-demo-password"))]
    pub password: String,
}

/// POST /v1/auth/refresh
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"refresh_token": "q3V8cW1zX2FuX29wYXF1ZV8yNTZfYml0X3JhbmRvbV90b2tlbg"})))]
pub struct RefreshRequest {
    /// The refresh token of the last login or refresh.
    #[serde(default)]
    #[schema(required = true, min_length = 1)]
    pub refresh_token: String,
}

/// PATCH /v1/users/me: `display_name`, `password` (with `current_password`), or both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"display_name": "Countess"}), json!({"password": "a new long passphrase", "current_password": "correct horse battery"})))]
pub struct UpdateMeRequest {
    /// New public name.
    #[serde(default, deserialize_with = "present")]
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 80,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$",
        examples("Countess")
    )]
    pub display_name: Option<String>,
    /// New password.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, format = Password, min_length = 8, max_length = 128)]
    pub password: Option<String>,
    /// Current password, required with `password`.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, format = Password, min_length = 1)]
    pub current_password: Option<String>,
}

/// A user as clients see it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = User)]
pub struct UserView {
    /// Identifier.
    pub id: Uuid,
    /// Email.
    #[schema(format = Email, examples("ada@example.com"))]
    pub email: String,
    /// Public name.
    #[schema(examples("Ada"))]
    pub display_name: String,
    /// `customer` or `admin`.
    #[schema(schema_with = crate::openapi::schemas::role)]
    pub role: &'static str,
    /// Registration time.
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    /// Last profile change.
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
}

impl From<User> for UserView {
    fn from(user: User) -> Self {
        Self {
            id: user.id.0,
            email: user.email.into(),
            display_name: user.display_name.into(),
            role: user.role.as_str(),
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}

/// Tokens as returned by login and refresh.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Tokens)]
pub struct TokensView {
    /// JWT for `Authorization: Bearer`.
    #[schema(examples("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIwMTkzIn0.c2lnbmF0dXJl"))]
    pub access_token: String,
    /// Opaque token for `/v1/auth/refresh`.
    #[schema(examples("q3V8cW1zX2FuX29wYXF1ZV8yNTZfYml0X3JhbmRvbV90b2tlbg"))]
    pub refresh_token: String,
    /// Always `Bearer`.
    #[schema(schema_with = crate::openapi::schemas::token_type)]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    #[schema(examples(900))]
    pub expires_in: u64,
}

impl From<TokenPair> for TokensView {
    fn from(pair: TokenPair) -> Self {
        Self {
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
            token_type: "Bearer",
            expires_in: pair.expires_in,
        }
    }
}

/// Registration's answer: the user and their first tokens.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Registration)]
pub struct RegisteredView {
    /// The new user.
    pub user: UserView,
    /// Tokens, flattened beside `user`.
    #[serde(flatten)]
    pub tokens: TokensView,
}

/// A page of a list.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Page<T>)]
pub struct PageView<T> {
    /// Items in list order.
    pub items: Vec<T>,
    /// Pass as `?cursor=` for the next page; null on the last.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

impl<T, U: From<T>> From<Page<T>> for PageView<U> {
    fn from(page: Page<T>) -> Self {
        Self {
            items: page.items.into_iter().map(U::from).collect(),
            next_cursor: page.next_cursor,
        }
    }
}

/// `?limit=&cursor=` of every list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1–100, default 20.
    #[param(value_type = Option<u16>, minimum = 1, maximum = 100, default = 20, nullable = false)]
    pub limit: Option<String>,
    /// Opaque position from the previous page (its `next_cursor`).
    #[param(nullable = false, min_length = 1)]
    pub cursor: Option<String>,
}

/// Money in requests and responses: integer minor units and an ISO 4217 code.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Money, examples(json!({"amount_minor": 4999, "currency": "USD"})))]
pub struct MoneyView {
    /// Amount in the currency's minor unit (cents for USD).
    #[schema(examples(4999))]
    pub amount_minor: i64,
    /// ISO 4217 code.
    #[schema(pattern = "^[A-Z]{3}$", examples("USD"))]
    pub currency: String,
}

impl From<Money> for MoneyView {
    fn from(money: Money) -> Self {
        Self {
            amount_minor: money.amount_minor,
            currency: money.currency.as_str().to_owned(),
        }
    }
}

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
    #[schema(required = true, schema_with = crate::openapi::schemas::currency)]
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
    #[param(schema_with = crate::openapi::schemas::currency)]
    pub currency: Option<String>,
    /// `created_at` (default) or `price`.
    #[param(schema_with = crate::openapi::schemas::product_sort)]
    pub sort: Option<String>,
    /// `desc` (default) or `asc`.
    #[param(schema_with = crate::openapi::schemas::sort_order)]
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
    #[schema(schema_with = crate::openapi::schemas::order_status)]
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
    #[param(schema_with = crate::openapi::schemas::order_status_filter)]
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

/// A plan as clients see it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Plan)]
pub struct PlanView {
    /// Stable code, used to subscribe.
    #[schema(examples("pro-monthly"))]
    pub code: String,
    /// Display name.
    #[schema(examples("Pro (monthly)"))]
    pub name: String,
    /// Price per interval.
    pub price: MoneyView,
    /// `month` or `year`.
    #[schema(schema_with = crate::openapi::schemas::plan_interval)]
    pub interval: &'static str,
}

impl From<Plan> for PlanView {
    fn from(plan: Plan) -> Self {
        Self {
            code: plan.code.into(),
            name: plan.name,
            price: plan.price.money().into(),
            interval: plan.interval.as_str(),
        }
    }
}

/// POST /v1/subscriptions and POST /v1/subscriptions/me/change-plan
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"plan_code": "pro-monthly"})))]
pub struct PlanChoiceRequest {
    /// The plan's code, as listed by GET /v1/plans.
    #[schema(value_type = String, required = true, pattern = "^[a-z0-9-]{1,40}$", examples("pro-monthly"))]
    pub plan_code: Option<String>,
}

/// `?plan_code=` of the proration preview.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PlanChoiceQuery {
    /// The plan's code.
    #[param(value_type = String, required = true, pattern = "^[a-z0-9-]{1,40}$", example = "pro-monthly")]
    pub plan_code: Option<String>,
}

/// POST /v1/subscriptions/me/cancel
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"at_period_end": true})))]
pub struct CancelSubscriptionRequest {
    /// True: end at the period's end; false: end now.
    #[schema(value_type = bool, required = true)]
    pub at_period_end: Option<bool>,
}

/// One invoice line.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = InvoiceLine)]
pub struct InvoiceLineView {
    /// What for.
    #[schema(examples("Pro (monthly), 2026-11-01 to 2026-12-01"))]
    pub description: String,
    /// Signed amount (credits are negative).
    pub amount: MoneyView,
}

impl From<InvoiceLine> for InvoiceLineView {
    fn from(line: InvoiceLine) -> Self {
        Self {
            description: line.description,
            amount: line.amount.into(),
        }
    }
}

/// An invoice as clients see it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Invoice)]
pub struct InvoiceView {
    /// Identifier.
    pub id: Uuid,
    /// The subscription it belongs to.
    pub subscription_id: Uuid,
    /// `subscription`, `proration` or `renewal`.
    #[schema(schema_with = crate::openapi::schemas::invoice_kind)]
    pub kind: &'static str,
    /// The lines.
    pub lines: Vec<InvoiceLineView>,
    /// Sum of the lines (negative for a net credit).
    pub total: MoneyView,
    /// Start of the time it covers.
    #[serde(serialize_with = "rfc3339")]
    pub period_start: DateTime<Utc>,
    /// End of the time it covers.
    #[serde(serialize_with = "rfc3339")]
    pub period_end: DateTime<Utc>,
    /// Issue time.
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
}

impl From<Invoice> for InvoiceView {
    fn from(invoice: Invoice) -> Self {
        Self {
            id: invoice.id.0,
            subscription_id: invoice.subscription_id.0,
            kind: invoice.kind.as_str(),
            lines: invoice.lines.into_iter().map(Into::into).collect(),
            total: invoice.total.into(),
            period_start: invoice.period_start,
            period_end: invoice.period_end,
            created_at: invoice.created_at,
        }
    }
}

fn rfc3339_opt<S: Serializer>(
    at: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => rfc3339(at, serializer),
        None => serializer.serialize_none(),
    }
}

/// A subscription as clients see it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Subscription)]
pub struct SubscriptionView {
    /// Identifier.
    pub id: Uuid,
    /// The current plan.
    #[schema(examples("pro-monthly"))]
    pub plan_code: String,
    /// `active` or `cancelled`.
    #[schema(schema_with = crate::openapi::schemas::subscription_status)]
    pub status: &'static str,
    /// Start of the period being billed.
    #[serde(serialize_with = "rfc3339")]
    pub current_period_start: DateTime<Utc>,
    /// End of the period being billed; it renews (or ends) then.
    #[serde(serialize_with = "rfc3339")]
    pub current_period_end: DateTime<Utc>,
    /// Ends at the period's end instead of renewing.
    pub cancel_at_period_end: bool,
    /// When it ended.
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(required = true)]
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Creation time.
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    /// Last change.
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
}

impl From<Subscription> for SubscriptionView {
    fn from(subscription: Subscription) -> Self {
        Self {
            id: subscription.id.0,
            plan_code: subscription.plan_code.into(),
            status: subscription.status.as_str(),
            current_period_start: subscription.current_period_start,
            current_period_end: subscription.current_period_end,
            cancel_at_period_end: subscription.cancel_at_period_end,
            cancelled_at: subscription.cancelled_at,
            created_at: subscription.created_at,
            updated_at: subscription.updated_at,
        }
    }
}

/// A new subscription with the invoice of its first period.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SubscriptionWithInvoice)]
pub struct SubscribedView {
    /// The subscription.
    #[serde(flatten)]
    pub subscription: SubscriptionView,
    /// The invoice of the first period.
    pub latest_invoice: InvoiceView,
}

impl From<BilledSubscription> for SubscribedView {
    fn from(billed: BilledSubscription) -> Self {
        Self {
            subscription: billed.subscription.into(),
            latest_invoice: billed.invoice.into(),
        }
    }
}

/// What a plan change would cost now.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ProrationPreview)]
pub struct ProrationView {
    /// The current plan's code.
    #[schema(examples("basic-monthly"))]
    pub from_plan: String,
    /// The new plan's code.
    #[schema(examples("pro-monthly"))]
    pub to_plan: String,
    /// The instant it is computed for.
    #[serde(serialize_with = "rfc3339")]
    pub at: DateTime<Utc>,
    /// End of the current period.
    #[serde(serialize_with = "rfc3339")]
    pub period_end: DateTime<Utc>,
    /// Whole seconds left in the period.
    #[schema(minimum = 0, examples(1296000))]
    pub remaining_seconds: i64,
    /// Credit for the unused time of the current plan (negative).
    pub credit: MoneyView,
    /// Charge for the remaining time on the new plan.
    pub charge: MoneyView,
    /// What the change would invoice: `charge + credit`.
    pub total: MoneyView,
    /// The invoice lines a change now would issue.
    pub lines: Vec<InvoiceLineView>,
}

impl From<ProrationPreview> for ProrationView {
    fn from(preview: ProrationPreview) -> Self {
        Self {
            from_plan: preview.from.code.into(),
            to_plan: preview.to.code.into(),
            at: preview.at,
            period_end: preview.period_end,
            remaining_seconds: preview.proration.remaining_seconds,
            credit: preview.proration.credit.into(),
            charge: preview.proration.charge.into(),
            total: preview.proration.total.into(),
            lines: preview.lines.into_iter().map(Into::into).collect(),
        }
    }
}

/// `GET /v1/admin/exports/*` query parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `ndjson` (default): one JSON object per line; `csv`: RFC 4180 with a header line.
    #[param(schema_with = crate::openapi::schemas::export_format)]
    pub format: Option<String>,
    /// Only rows created at or after this instant (RFC 3339; encode `+` as `%2B`).
    #[param(value_type = Option<DateTime<Utc>>, nullable = false, example = "2026-11-01T00:00:00Z")]
    pub from: Option<String>,
    /// Only rows created before this instant (RFC 3339); must be later than `from`.
    #[param(value_type = Option<DateTime<Utc>>, nullable = false, example = "2026-12-01T00:00:00Z")]
    pub to: Option<String>,
}

impl From<ExportQuery> for ExportParams {
    fn from(query: ExportQuery) -> Self {
        Self {
            format: query.format,
            from: query.from,
            to: query.to,
        }
    }
}

/// One exported user: a line of the ndjson export, a row of the CSV export (columns in this
/// order). Never the password hash.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = UserExportRecord)]
pub struct UserExportView {
    /// Identifier.
    pub id: Uuid,
    /// Email, as stored.
    #[schema(examples("ada@example.com"))]
    pub email: String,
    /// Public name, as stored.
    #[schema(examples("Ada"))]
    pub display_name: String,
    /// `customer` or `admin`.
    #[schema(schema_with = crate::openapi::schemas::role)]
    pub role: &'static str,
    /// Registration time.
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    /// Last profile change.
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
}

impl UserExportView {
    /// The CSV header: the field names, in order.
    pub const COLUMNS: &'static [&'static str] = &[
        "id",
        "email",
        "display_name",
        "role",
        "created_at",
        "updated_at",
    ];
}

impl From<UserExportRow> for UserExportView {
    fn from(row: UserExportRow) -> Self {
        Self {
            id: row.id.0,
            email: row.email,
            display_name: row.display_name,
            role: row.role.as_str(),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

fn currency_code<S: Serializer>(currency: &Currency, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(currency.as_str())
}

/// One exported order: a line of the ndjson export, a row of the CSV export (columns in this
/// order). Flat in both formats: the lines are summarised by `item_count` (read them with
/// `GET /v1/orders/{id}`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OrderExportRecord)]
pub struct OrderExportView {
    /// Identifier.
    pub id: Uuid,
    /// Who placed it.
    pub user_id: Uuid,
    /// `placed`, `fulfilled` or `cancelled`.
    #[schema(schema_with = crate::openapi::schemas::order_status)]
    pub status: &'static str,
    /// ISO 4217 code of the total.
    #[serde(serialize_with = "currency_code")]
    #[schema(value_type = String, pattern = "^[A-Z]{3}$", examples("USD"))]
    pub currency: Currency,
    /// Sum of the line totals, in minor units of `currency`.
    #[schema(minimum = 0, examples(9998))]
    pub total_minor: i64,
    /// Number of lines (distinct products) of the order.
    #[schema(minimum = 0, examples(2))]
    pub item_count: i64,
    /// Placement time.
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    /// Last status change.
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
}

impl OrderExportView {
    /// The CSV header: the field names, in order.
    pub const COLUMNS: &'static [&'static str] = &[
        "id",
        "user_id",
        "status",
        "currency",
        "total_minor",
        "item_count",
        "created_at",
        "updated_at",
    ];
}

impl From<OrderExportRow> for OrderExportView {
    fn from(row: OrderExportRow) -> Self {
        Self {
            id: row.id.0,
            user_id: row.user_id.0,
            status: row.status.as_str(),
            currency: row.currency,
            total_minor: row.total_minor,
            item_count: row.item_count,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// The admin's dashboard and reports.
pub mod admin;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct At(#[serde(serialize_with = "rfc3339")] DateTime<Utc>);

    #[test]
    fn timestamps_are_written_as_chrono_writes_them() {
        let chrono = |at: DateTime<Utc>| at.to_rfc3339_opts(SecondsFormat::Micros, true);
        let mut seconds: i64 = -62_135_596_800; // 0001-01-01
        let mut micros: u32 = 0;
        while seconds < 253_402_300_799 {
            // 9999-12-31T23:59:59
            let at = DateTime::from_timestamp(seconds, micros * 1000).unwrap_or_default();
            assert_eq!(
                serde_json::to_string(&At(at)).ok(),
                Some(format!("\"{}\"", chrono(at)))
            );
            seconds += 7_777_777 + i64::from(micros);
            micros = (micros * 7 + 123_457) % 1_000_000;
        }
        for at in [
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
            DateTime::from_timestamp(0, 0).unwrap_or_default(),
            DateTime::from_timestamp(-62_167_219_200, 0).unwrap_or_default(), // year 0
        ] {
            assert_eq!(
                serde_json::to_string(&At(at)).ok(),
                Some(format!("\"{}\"", chrono(at)))
            );
        }
    }
}
