//! Helpers of the documentation's examples: fixed instants, ids and amounts, so that an example
//! body is built from real DTO values and serialises exactly as a response does.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::dto::MoneyView;

pub(crate) fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .map(|at| at.with_timezone(&Utc))
        .unwrap_or_default()
}

pub(crate) fn id(raw: &str) -> Uuid {
    Uuid::parse_str(raw).unwrap_or_default()
}

pub(crate) fn value(body: impl Serialize) -> Value {
    serde_json::to_value(body).unwrap_or_default()
}

pub(crate) fn usd(amount_minor: i64) -> MoneyView {
    MoneyView {
        amount_minor,
        currency: "USD".to_owned(),
    }
}

pub(crate) fn money(amount_minor: i64, currency: &str) -> MoneyView {
    MoneyView {
        amount_minor,
        currency: currency.to_owned(),
    }
}
