//! What the bodies of every area share: pages, money, timestamps, name patterns and the string
//! enumerations the schemas take from the domain. Each area's own bodies are in its `dto` module:
//! named for their purpose. Request fields are optional strings with
//! defaults so that validation can name every missing or invalid field at once; unknown fields are
//! refused, so a misspelt or unsupported field is never silently ignored.

use chrono::{DateTime, Datelike as _, SecondsFormat, Timelike as _, Utc};
use serde::{Deserialize, Serialize, Serializer};
use strata_domain::{Money, OrderStatus, Role};
use strata_services::Page;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};

/// `at` in RFC 3339, UTC, to the microsecond (`2026-11-21T10:00:00.123456Z`), as chrono writes it
/// with `SecondsFormat::Micros`, but digit by digit: a list page carries two per product, and
/// chrono's general formatter was ≈ 4 % of the product list's time.
pub(crate) fn rfc3339<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
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
pub(crate) fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// An integer field: JSON has one number type, and JSON Schema's `integer` (what the document
/// says) is any number with a zero fractional part, so `2.0` and `2e0` are the integer 2.
pub(crate) fn integral<'de, D>(deserializer: D) -> Result<Option<i64>, D::Error>
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

pub(crate) fn rfc3339_opt<S: Serializer>(
    at: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => rfc3339(at, serializer),
        None => serializer.serialize_none(),
    }
}

/// Schemas the DTOs refer to with `schema_with`: string enumerations whose values come from the
/// domain's own names.
pub(crate) mod schemas {
    use super::*;

    /// A string that is one of `values`.
    pub(crate) fn one_of(
        values: &[&'static str],
        description: &str,
    ) -> utoipa::openapi::schema::Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(values.iter().copied()))
            .description(Some(description))
            .examples(values.first().copied())
            .build()
    }

    /// A user's role.
    pub(crate) fn role() -> utoipa::openapi::schema::Object {
        one_of(
            &[Role::Customer.as_str(), Role::Admin.as_str()],
            "`customer` or `admin`.",
        )
    }

    /// An ISO 4217 code the domain accepts: every one, from the domain's own table (a three-letter
    /// pattern would call `ABC` valid, which the API refuses).
    pub(crate) fn currency() -> utoipa::openapi::schema::Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(strata_domain::Currency::codes()))
            .description(Some("An active ISO 4217 code, in upper case."))
            .examples(["USD"])
            .build()
    }

    pub(crate) fn order_statuses() -> [&'static str; 3] {
        [
            OrderStatus::Placed.as_str(),
            OrderStatus::Fulfilled.as_str(),
            OrderStatus::Cancelled.as_str(),
        ]
    }

    /// An order's status.
    pub(crate) fn order_status() -> utoipa::openapi::schema::Object {
        one_of(
            &order_statuses(),
            "`placed`, then `fulfilled` or `cancelled`.",
        )
    }
}

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
