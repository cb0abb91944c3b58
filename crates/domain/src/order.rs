//! Orders: what a valid order request is, how it is priced against the catalog, and the status
//! machine `placed → fulfilled | cancelled`.
//!
//! [`price_order`] is the whole placement rule. Given the requested lines and the current state of
//! the products (read under lock by whoever persists the order), it either refuses, naming every
//! offending line, or returns the lines with their unit prices captured, the total, and the stock to
//! take from each product.

use std::collections::{HashMap, HashSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::{Currency, Money, Price};
use crate::product::{ProductId, ProductName, Sku, Stock};
use crate::user::UserId;
use crate::validation::{FieldError, ValidationErrors};

/// An order's identifier (UUIDv7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(pub Uuid);

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Accepted; stock is reserved.
    Placed,
    /// Shipped; final.
    Fulfilled,
    /// Withdrawn; its stock went back. Final.
    Cancelled,
}

/// A status change that the status machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an order cannot go from {from} to {to}")]
pub struct InvalidTransition {
    /// The current status.
    pub from: OrderStatus,
    /// The requested status.
    pub to: OrderStatus,
}

impl OrderStatus {
    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Placed => "placed",
            OrderStatus::Fulfilled => "fulfilled",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a stored or requested status.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "placed" => Some(OrderStatus::Placed),
            "fulfilled" => Some(OrderStatus::Fulfilled),
            "cancelled" => Some(OrderStatus::Cancelled),
            _ => None,
        }
    }

    /// Checks a change of status: only a placed order moves, to fulfilled or cancelled.
    ///
    /// ```
    /// use strata_domain::OrderStatus::{Cancelled, Fulfilled, Placed};
    ///
    /// assert_eq!(Placed.transition(Cancelled), Ok(Cancelled));
    /// assert!(Cancelled.transition(Cancelled).is_err()); // so a cancel restocks once
    /// assert!(Fulfilled.transition(Cancelled).is_err());
    /// ```
    pub fn transition(self, to: OrderStatus) -> Result<OrderStatus, InvalidTransition> {
        match (self, to) {
            (OrderStatus::Placed, OrderStatus::Fulfilled | OrderStatus::Cancelled) => Ok(to),
            _ => Err(InvalidTransition { from: self, to }),
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Units of one product on an order line: 1 to 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Quantity(u16);

impl Quantity {
    /// The most units of one product per order.
    pub const MAX: u16 = 1000;

    /// Validates a quantity.
    pub fn new(units: i64) -> Result<Self, FieldError> {
        match u16::try_from(units) {
            Ok(units) if (1..=Self::MAX).contains(&units) => Ok(Self(units)),
            _ => Err(FieldError::new(
                "quantity",
                "out_of_range",
                format!("must be between 1 and {}", Self::MAX),
            )),
        }
    }

    /// The units.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl TryFrom<i64> for Quantity {
    type Error = FieldError;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Quantity> for i64 {
    fn from(value: Quantity) -> Self {
        i64::from(value.0)
    }
}

/// One requested line: a product and how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LineRequest {
    /// The product.
    pub product_id: ProductId,
    /// How many units.
    pub quantity: Quantity,
}

/// A valid order request: 1–50 lines, each product at most once, in the caller's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRequest(Vec<LineRequest>);

/// A requested line before validation, as a caller sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawLine {
    /// The product id as text.
    pub product_id: Option<String>,
    /// The quantity.
    pub quantity: Option<i64>,
}

impl OrderRequest {
    /// The most lines one order may have.
    pub const MAX_LINES: usize = 50;

    /// Validates raw lines, naming every offending field (`items[2].quantity`).
    ///
    /// ```
    /// use strata_domain::{OrderRequest, RawLine};
    ///
    /// let id = "0190b6a8-7c1e-7000-8000-000000000001".to_owned();
    /// let line = |q| RawLine { product_id: Some(id.clone()), quantity: Some(q) };
    /// assert_eq!(OrderRequest::parse(&[line(2)]).unwrap().lines().len(), 1);
    ///
    /// let errors = OrderRequest::parse(&[line(2), line(0)]).unwrap_err();
    /// let fields: Vec<_> = errors.0.iter().map(|e| (e.field.as_str(), e.code)).collect();
    /// assert_eq!(
    ///     fields,
    ///     [("items[1].product_id", "duplicate"), ("items[1].quantity", "out_of_range")]
    /// );
    /// ```
    pub fn parse(raw: &[RawLine]) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if raw.is_empty() || raw.len() > Self::MAX_LINES {
            errors.push(FieldError::new(
                "items",
                "out_of_range",
                format!("must hold between 1 and {} lines", Self::MAX_LINES),
            ));
            return Err(errors);
        }
        let mut seen = HashSet::new();
        let mut lines = Vec::with_capacity(raw.len());
        for (index, line) in raw.iter().enumerate() {
            let field = |name: &str| format!("items[{index}].{name}");
            let product_id = match line.product_id.as_deref().map(Uuid::parse_str) {
                None => {
                    errors.push(FieldError::new(
                        field("product_id"),
                        "required",
                        "is required",
                    ));
                    None
                }
                Some(Err(_)) => {
                    errors.push(FieldError::new(
                        field("product_id"),
                        "invalid_uuid",
                        "must be a UUID",
                    ));
                    None
                }
                Some(Ok(id)) if !seen.insert(id) => {
                    errors.push(FieldError::new(
                        field("product_id"),
                        "duplicate",
                        "appears on an earlier line; give each product once with its total quantity",
                    ));
                    None
                }
                Some(Ok(id)) => Some(ProductId(id)),
            };
            let quantity = match line.quantity {
                None => {
                    errors.push(FieldError::new(
                        field("quantity"),
                        "required",
                        "is required",
                    ));
                    None
                }
                Some(units) => errors.check(&field("quantity"), Quantity::new(units)),
            };
            if let (Some(product_id), Some(quantity)) = (product_id, quantity) {
                lines.push(LineRequest {
                    product_id,
                    quantity,
                });
            }
        }
        errors.into_result()?;
        Ok(Self(lines))
    }

    /// The lines, in the caller's order.
    pub fn lines(&self) -> &[LineRequest] {
        &self.0
    }

    /// The product ids in ascending order: the order in which to lock them, so that two orders
    /// sharing products always lock in the same order and never deadlock.
    pub fn lock_order(&self) -> Vec<ProductId> {
        let mut ids: Vec<ProductId> = self.0.iter().map(|line| line.product_id).collect();
        ids.sort_unstable();
        ids
    }
}

/// A product as an order sees it at placement time (read under lock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockedProduct {
    /// Identifier.
    pub id: ProductId,
    /// SKU, captured on the line.
    pub sku: Sku,
    /// Name, captured on the line.
    pub name: ProductName,
    /// Current price, captured as the unit price.
    pub price: Price,
    /// Units on hand.
    pub stock: Stock,
    /// Whether it can be ordered.
    pub active: bool,
}

/// A priced order line, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// The product.
    pub product_id: ProductId,
    /// Its SKU when ordered.
    pub sku: Sku,
    /// Its name when ordered.
    pub name: ProductName,
    /// Its price when ordered.
    pub unit_price: Money,
    /// Units.
    pub quantity: Quantity,
    /// `unit_price × quantity`.
    pub line_total: Money,
}

/// The outcome of [`price_order`]: what to store and what to take from stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedOrder {
    /// Lines in the caller's order, prices captured.
    pub lines: Vec<OrderLine>,
    /// Sum of the line totals.
    pub total: Money,
    /// New stock level per product, in lock order.
    pub new_stock: Vec<(ProductId, Stock)>,
}

/// One line that cannot be served from stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShortLine {
    /// Index of the line in the request.
    pub index: usize,
    /// The product.
    pub product_id: ProductId,
    /// Units asked for.
    pub requested: u16,
    /// Units on hand.
    pub available: u32,
}

/// Why an order cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderRejection {
    /// Some lines name products that do not exist, are inactive, or are priced in another
    /// currency than the first line: the request itself is wrong (422).
    #[error("invalid order lines")]
    InvalidLines(ValidationErrors),
    /// Every line is valid but some exceed the stock on hand (409).
    #[error("insufficient stock on {} line(s)", .0.len())]
    InsufficientStock(Vec<ShortLine>),
}

/// Prices `request` against `products` (the current state, in any order) and checks stock.
///
/// Lines naming unknown or inactive products, or mixing currencies, are refused first; only a
/// request whose every line could be served is checked against stock, so the stock error lists
/// every short line.
///
/// ```
/// use strata_domain::*;
///
/// let usd = Currency::parse("USD").unwrap();
/// let lamp = StockedProduct {
///     id: ProductId(uuid::Uuid::from_u128(1)),
///     sku: Sku::parse("LAMP-1").unwrap(),
///     name: ProductName::parse("Desk lamp").unwrap(),
///     price: Price::new(2_500, usd).unwrap(),
///     stock: Stock::new(3).unwrap(),
///     active: true,
/// };
/// let line = |q| RawLine { product_id: Some(lamp.id.to_string()), quantity: Some(q) };
///
/// let priced = price_order(&OrderRequest::parse(&[line(2)]).unwrap(), &[lamp.clone()]).unwrap();
/// assert_eq!(priced.total, Money::new(5_000, usd));
/// assert_eq!(priced.new_stock, [(lamp.id, Stock::new(1).unwrap())]);
///
/// let refused = price_order(&OrderRequest::parse(&[line(4)]).unwrap(), &[lamp]);
/// assert!(matches!(refused, Err(OrderRejection::InsufficientStock(short)) if short[0].available == 3));
/// ```
pub fn price_order(
    request: &OrderRequest,
    products: &[StockedProduct],
) -> Result<PricedOrder, OrderRejection> {
    let by_id: HashMap<ProductId, &StockedProduct> = products.iter().map(|p| (p.id, p)).collect();
    let mut invalid = ValidationErrors::new();
    let mut currency: Option<Currency> = None;
    for (index, line) in request.lines().iter().enumerate() {
        let field = format!("items[{index}].product_id");
        match by_id.get(&line.product_id) {
            None => invalid.push(FieldError::new(field, "not_found", "no such product")),
            Some(product) if !product.active => invalid.push(FieldError::new(
                field,
                "inactive",
                "this product is no longer sold",
            )),
            Some(product) => {
                let line_currency = product.price.money().currency;
                match currency {
                    None => currency = Some(line_currency),
                    Some(first) if first != line_currency => invalid.push(FieldError::new(
                        field,
                        "currency_mismatch",
                        format!(
                            "is priced in {line_currency}, but this order is in {first}; \
                             one order holds one currency"
                        ),
                    )),
                    Some(_) => {}
                }
            }
        }
    }
    if !invalid.is_empty() {
        return Err(OrderRejection::InvalidLines(invalid));
    }

    let mut short = Vec::new();
    let mut lines = Vec::with_capacity(request.lines().len());
    let mut new_stock = Vec::with_capacity(request.lines().len());
    for (index, line) in request.lines().iter().enumerate() {
        let Some(product) = by_id.get(&line.product_id) else {
            continue;
        };
        let quantity = line.quantity.get();
        match product.stock.adjust(-i64::from(quantity)) {
            Ok(stock) => new_stock.push((product.id, stock)),
            Err(_) => short.push(ShortLine {
                index,
                product_id: product.id,
                requested: quantity,
                available: product.stock.get(),
            }),
        }
        let unit_price = product.price.money();
        // A price is at most Price::MAX_MINOR and a quantity at most 1000: this cannot overflow.
        let line_total = unit_price
            .checked_mul(i64::from(quantity))
            .unwrap_or(unit_price);
        lines.push(OrderLine {
            product_id: product.id,
            sku: product.sku.clone(),
            name: product.name.clone(),
            unit_price,
            quantity: line.quantity,
            line_total,
        });
    }
    if !short.is_empty() {
        return Err(OrderRejection::InsufficientStock(short));
    }
    let Some(currency) = currency else {
        return Err(OrderRejection::InvalidLines(ValidationErrors::single(
            FieldError::new("items", "out_of_range", "must hold at least 1 line"),
        )));
    };
    let total = lines
        .iter()
        .try_fold(Money::new(0, currency), |sum, line| {
            sum.checked_add(line.line_total)
        })
        .ok_or_else(|| {
            OrderRejection::InvalidLines(ValidationErrors::single(FieldError::new(
                "items",
                "total_too_large",
                "the order total is too large",
            )))
        })?;
    new_stock.sort_unstable_by_key(|(id, _)| *id);
    Ok(PricedOrder {
        lines,
        total,
        new_stock,
    })
}

/// A placed order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Identifier.
    pub id: OrderId,
    /// Who placed it.
    pub user_id: UserId,
    /// Where it is in its life.
    pub status: OrderStatus,
    /// Lines in the order they were requested.
    pub lines: Vec<OrderLine>,
    /// Sum of the line totals.
    pub total: Money,
    /// When it was placed.
    pub created_at: DateTime<Utc>,
    /// Last status change.
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(n: u128, currency: &str, stock: i64, active: bool) -> StockedProduct {
        StockedProduct {
            id: ProductId(Uuid::from_u128(n)),
            sku: Sku::parse(&format!("SKU-{n}")).unwrap(),
            name: ProductName::parse("Thing").unwrap(),
            price: Price::new(150, Currency::parse(currency).unwrap()).unwrap(),
            stock: Stock::new(stock).unwrap(),
            active,
        }
    }

    fn request(lines: &[(u128, i64)]) -> OrderRequest {
        let raw: Vec<RawLine> = lines
            .iter()
            .map(|(n, q)| RawLine {
                product_id: Some(Uuid::from_u128(*n).to_string()),
                quantity: Some(*q),
            })
            .collect();
        OrderRequest::parse(&raw).unwrap()
    }

    #[test]
    fn the_total_is_the_sum_of_captured_line_totals() {
        let products = [product(2, "USD", 10, true), product(1, "USD", 10, true)];
        let priced = price_order(&request(&[(2, 3), (1, 1)]), &products).unwrap();
        assert_eq!(priced.total.amount_minor, 600);
        assert_eq!(priced.lines[0].product_id, ProductId(Uuid::from_u128(2)));
        assert_eq!(priced.lines[0].line_total.amount_minor, 450);
        let ids: Vec<_> = priced
            .new_stock
            .iter()
            .map(|(id, _)| id.0.as_u128())
            .collect();
        assert_eq!(ids, [1, 2], "stock changes come in lock order");
    }

    #[test]
    fn every_short_line_is_named() {
        let products = [product(1, "USD", 1, true), product(2, "USD", 0, true)];
        let Err(OrderRejection::InsufficientStock(short)) =
            price_order(&request(&[(1, 2), (2, 1)]), &products)
        else {
            panic!("expected a stock refusal");
        };
        assert_eq!(short.len(), 2);
        assert_eq!((short[0].index, short[0].available), (0, 1));
        assert_eq!((short[1].index, short[1].requested), (1, 1));
    }

    #[test]
    fn unknown_inactive_and_foreign_currency_lines_are_invalid() {
        let products = [
            product(1, "USD", 5, true),
            product(2, "USD", 5, false),
            product(3, "EUR", 5, true),
        ];
        let Err(OrderRejection::InvalidLines(errors)) =
            price_order(&request(&[(1, 1), (2, 1), (3, 1), (4, 1)]), &products)
        else {
            panic!("expected invalid lines");
        };
        let codes: Vec<_> = errors
            .0
            .iter()
            .map(|e| (e.field.as_str(), e.code))
            .collect();
        assert_eq!(
            codes,
            [
                ("items[1].product_id", "inactive"),
                ("items[2].product_id", "currency_mismatch"),
                ("items[3].product_id", "not_found"),
            ]
        );
    }

    #[test]
    fn requests_are_bounded() {
        assert!(OrderRequest::parse(&[]).is_err());
        let many: Vec<RawLine> = (0..51u128)
            .map(|n| RawLine {
                product_id: Some(Uuid::from_u128(n).to_string()),
                quantity: Some(1),
            })
            .collect();
        assert_eq!(OrderRequest::parse(&many).unwrap_err().0[0].field, "items");
        let errors = OrderRequest::parse(&[RawLine::default()]).unwrap_err();
        assert_eq!(errors.0.len(), 2);
        assert!(Quantity::new(1001).is_err());
    }
}
