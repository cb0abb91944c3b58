//! Products: the catalog's value objects and the stock rule.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::Price;
use crate::validation::FieldError;

/// A product's identifier (UUIDv7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProductId(pub Uuid);

impl fmt::Display for ProductId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A stock-keeping unit: 3–32 characters of `A-Z`, `0-9` and `-`, unique across the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sku(String);

impl Sku {
    /// Validates a SKU. It is not case-folded: `abc-1` is refused rather than silently changed.
    ///
    /// ```
    /// use strata_domain::Sku;
    ///
    /// assert!(Sku::parse("KB-0042").is_ok());
    /// assert_eq!(Sku::parse("kb-0042").unwrap_err().code, "invalid_sku");
    /// assert_eq!(Sku::parse("KB").unwrap_err().code, "invalid_sku");
    /// ```
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let valid = (3..=32).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err(FieldError::new(
                "sku",
                "invalid_sku",
                "must be 3 to 32 characters of A-Z, 0-9 and -",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The SKU.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Sku {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Sku> for String {
    fn from(value: Sku) -> Self {
        value.0
    }
}

/// A product name: 1–200 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProductName(String);

impl ProductName {
    /// The longest name, in characters.
    pub const MAX_CHARS: usize = 200;

    /// Validates a name.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let trimmed = raw.trim();
        let chars = trimmed.chars().count();
        if chars == 0 {
            return Err(FieldError::new("name", "required", "must not be empty"));
        }
        if chars > Self::MAX_CHARS {
            return Err(FieldError::new(
                "name",
                "too_long",
                format!("must be at most {} characters", Self::MAX_CHARS),
            ));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(FieldError::new(
                "name",
                "invalid_characters",
                "must not contain control characters",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ProductName {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ProductName> for String {
    fn from(value: ProductName) -> Self {
        value.0
    }
}

/// A product description: at most 5000 characters (line breaks allowed), possibly empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Description(String);

impl Description {
    /// The longest description, in characters.
    pub const MAX_CHARS: usize = 5000;

    /// Validates a description.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let trimmed = raw.trim();
        // Every product read from the database is checked again, so the common case (fewer
        // bytes than the limit allows characters) skips counting them.
        if trimmed.len() > Self::MAX_CHARS && trimmed.chars().count() > Self::MAX_CHARS {
            return Err(FieldError::new(
                "description",
                "too_long",
                format!("must be at most {} characters", Self::MAX_CHARS),
            ));
        }
        let forbidden = |c: char| c.is_control() && c != '\n' && c != '\t';
        // ASCII text (most of it) is checked a byte at a time; char decoding only when needed.
        let invalid = if trimmed.is_ascii() {
            trimmed.bytes().any(|b| forbidden(char::from(b)))
        } else {
            trimmed.chars().any(forbidden)
        };
        if invalid {
            return Err(FieldError::new(
                "description",
                "invalid_characters",
                "must not contain control characters other than line breaks and tabs",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The description.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Description {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Description> for String {
    fn from(value: Description) -> Self {
        value.0
    }
}

/// Units on hand: never negative, at most [`Stock::MAX`].
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(try_from = "i64", into = "i64")]
pub struct Stock(u32);

/// Why a stock change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StockError {
    /// Fewer units are on hand than would be taken.
    #[error("{requested} requested, {available} available")]
    Insufficient {
        /// Units asked for.
        requested: u64,
        /// Units on hand.
        available: u32,
    },
    /// The result would exceed [`Stock::MAX`].
    #[error("stock would exceed {}", Stock::MAX)]
    TooLarge,
}

impl Stock {
    /// The most units one product may hold (fits PostgreSQL's `integer` with room to spare).
    pub const MAX: u32 = 1_000_000_000;

    /// Validates a stock level.
    ///
    /// ```
    /// use strata_domain::Stock;
    ///
    /// assert_eq!(Stock::new(10).unwrap().get(), 10);
    /// assert_eq!(Stock::new(-1).unwrap_err().code, "out_of_range");
    /// ```
    pub fn new(units: i64) -> Result<Self, FieldError> {
        match u32::try_from(units) {
            Ok(units) if units <= Self::MAX => Ok(Self(units)),
            _ => Err(FieldError::new(
                "stock",
                "out_of_range",
                format!("must be between 0 and {}", Self::MAX),
            )),
        }
    }

    /// The units on hand.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The stock after adding `delta` (negative takes units away); refused rather than ever
    /// going below zero.
    ///
    /// ```
    /// use strata_domain::{Stock, StockError};
    ///
    /// let stock = Stock::new(3).unwrap();
    /// assert_eq!(stock.adjust(-3).unwrap().get(), 0);
    /// assert_eq!(
    ///     stock.adjust(-4),
    ///     Err(StockError::Insufficient { requested: 4, available: 3 })
    /// );
    /// ```
    pub fn adjust(self, delta: i64) -> Result<Stock, StockError> {
        let next = i64::from(self.0).saturating_add(delta);
        if next < 0 {
            return Err(StockError::Insufficient {
                requested: delta.unsigned_abs(),
                available: self.0,
            });
        }
        match u32::try_from(next) {
            Ok(next) if next <= Self::MAX => Ok(Self(next)),
            _ => Err(StockError::TooLarge),
        }
    }
}

impl TryFrom<i64> for Stock {
    type Error = FieldError;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Stock> for i64 {
    fn from(value: Stock) -> Self {
        i64::from(value.0)
    }
}

/// A catalog entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// Identifier.
    pub id: ProductId,
    /// Unique stock-keeping unit.
    pub sku: Sku,
    /// Display name.
    pub name: ProductName,
    /// Longer text, possibly empty.
    pub description: Description,
    /// Current unit price.
    pub price: Price,
    /// Units on hand.
    pub stock: Stock,
    /// False once deleted (deletion is a soft deactivation): it can no longer be ordered.
    pub active: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change, stock changes included.
    pub updated_at: DateTime<Utc>,
}

/// The largest stock adjustment accepted in one call, either way.
pub const MAX_STOCK_DELTA: i64 = Stock::MAX as i64;

/// Validates a stock adjustment: non-zero and within ±[`MAX_STOCK_DELTA`].
pub fn validate_stock_delta(delta: i64) -> Result<i64, FieldError> {
    if delta == 0 || delta.unsigned_abs() > MAX_STOCK_DELTA.unsigned_abs() {
        return Err(FieldError::new(
            "delta",
            "out_of_range",
            format!("must be non-zero and between -{MAX_STOCK_DELTA} and {MAX_STOCK_DELTA}"),
        ));
    }
    Ok(delta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_never_goes_negative_or_past_the_maximum() {
        let stock = Stock::new(5).unwrap();
        assert_eq!(stock.adjust(2).unwrap().get(), 7);
        assert_eq!(
            stock.adjust(-6),
            Err(StockError::Insufficient {
                requested: 6,
                available: 5
            })
        );
        assert_eq!(
            Stock::new(i64::from(Stock::MAX)).unwrap().adjust(1),
            Err(StockError::TooLarge)
        );
        assert_eq!(stock.adjust(i64::MIN).unwrap_err(), {
            StockError::Insufficient {
                requested: i64::MIN.unsigned_abs(),
                available: 5,
            }
        });
        assert!(Stock::new(i64::from(Stock::MAX) + 1).is_err());
    }

    #[test]
    fn names_and_descriptions_are_trimmed_and_bounded() {
        assert_eq!(ProductName::parse("  Lamp ").unwrap().as_str(), "Lamp");
        assert_eq!(ProductName::parse("   ").unwrap_err().code, "required");
        assert_eq!(
            ProductName::parse(&"x".repeat(201)).unwrap_err().code,
            "too_long"
        );
        assert!(Description::parse("line one\nline two").is_ok());
        assert_eq!(
            Description::parse(&"é".repeat(5001)).unwrap_err().code,
            "too_long"
        );
        assert_eq!(validate_stock_delta(0).unwrap_err().code, "out_of_range");
        assert_eq!(validate_stock_delta(-3), Ok(-3));
    }
}
