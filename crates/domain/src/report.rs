//! Reports: what a valid report request is, a report's life (`queued → running → done | failed`),
//! and how a sales report is assembled from the figures of its days.
//!
//! A report covers the half-open range `[from, to)`: `from` strictly before `to`, at most
//! [`ReportRange::MAX_DAYS`] days long. Its days are the UTC calendar dates the range touches, the
//! first and last possibly partial. A sales report counts the orders that were not cancelled and
//! were created within the range: how many, their revenue per currency (never summed across
//! currencies), units and revenue per day (every day listed, zero when nothing sold), and the
//! [`SalesReport::TOP_PRODUCTS`] products that sold the most units.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Duration, NaiveDate, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::{Currency, Money};
use crate::product::{ProductId, ProductName, Sku};
use crate::user::UserId;
use crate::validation::{FieldError, ValidationErrors};

/// A report's identifier (UUIDv7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReportId(pub Uuid);

impl fmt::Display for ReportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    /// Orders, revenue, units and top products over a range ([`SalesReport`]).
    Sales,
}

impl ReportKind {
    /// Every kind.
    pub const ALL: [ReportKind; 1] = [ReportKind::Sales];

    /// The kind as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Sales => "sales",
        }
    }

    /// Parses a stored or requested kind.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == raw)
    }
}

impl fmt::Display for ReportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a report is in its life: `queued → running → done | failed` (`running` may be entered
/// again when an attempt is retried). `done` and `failed` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    /// Requested; waiting for a worker.
    Queued,
    /// A worker is generating it.
    Running,
    /// Generated; the result is stored. Final.
    Done,
    /// Given up on; the reason is stored. Final.
    Failed,
}

impl ReportStatus {
    /// Every status, in life order.
    pub const ALL: [ReportStatus; 4] = [
        ReportStatus::Queued,
        ReportStatus::Running,
        ReportStatus::Done,
        ReportStatus::Failed,
    ];

    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportStatus::Queued => "queued",
            ReportStatus::Running => "running",
            ReportStatus::Done => "done",
            ReportStatus::Failed => "failed",
        }
    }

    /// Parses a stored status.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == raw)
    }

    /// True for `done` and `failed`, which nothing changes any more.
    ///
    /// ```
    /// use strata_domain::ReportStatus;
    ///
    /// assert!(!ReportStatus::Running.is_final());
    /// assert!(ReportStatus::Failed.is_final());
    /// ```
    pub fn is_final(self) -> bool {
        matches!(self, ReportStatus::Done | ReportStatus::Failed)
    }
}

impl fmt::Display for ReportStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The half-open time range `[from, to)` a report covers: `from < to`, at most
/// [`ReportRange::MAX_DAYS`] days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReportRange {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

impl ReportRange {
    /// The longest range, in days of 24 hours (a leap year).
    pub const MAX_DAYS: i64 = 366;

    /// Validates a range; a bad one is reported on `to`.
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use strata_domain::ReportRange;
    ///
    /// let at = |d| Utc.with_ymd_and_hms(2026, 1, d, 0, 0, 0).unwrap();
    /// assert!(ReportRange::new(at(1), at(2)).is_ok());
    /// assert_eq!(ReportRange::new(at(2), at(2)).unwrap_err().code, "not_after_from");
    /// ```
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Self, FieldError> {
        if to <= from {
            return Err(FieldError::new(
                "to",
                "not_after_from",
                "must be later than from",
            ));
        }
        if to - from > Duration::days(Self::MAX_DAYS) {
            return Err(FieldError::new(
                "to",
                "range_too_long",
                format!("must be at most {} days after from", Self::MAX_DAYS),
            ));
        }
        Ok(Self { from, to })
    }

    /// The first instant covered.
    pub fn from(&self) -> DateTime<Utc> {
        self.from
    }

    /// The first instant no longer covered.
    pub fn to(&self) -> DateTime<Utc> {
        self.to
    }

    /// The UTC dates the range touches, in order; the first and the last may be partial.
    ///
    /// ```
    /// use chrono::{NaiveDate, TimeZone, Utc};
    /// use strata_domain::ReportRange;
    ///
    /// let range = ReportRange::new(
    ///     Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap(),
    ///     Utc.with_ymd_and_hms(2026, 3, 3, 0, 0, 0).unwrap(), // excluded: 3 March not touched
    /// )
    /// .unwrap();
    /// let day = |d| NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
    /// assert_eq!(range.days(), [day(1), day(2)]);
    /// ```
    pub fn days(&self) -> Vec<NaiveDate> {
        let first = self.from.date_naive();
        // The last instant covered is just before `to`.
        let last = (self.to - Duration::nanoseconds(1)).date_naive();
        first.iter_days().take_while(|day| *day <= last).collect()
    }
}

/// A valid request for a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportRequest {
    /// What to report on.
    pub kind: ReportKind,
    /// Over which range.
    pub range: ReportRange,
}

impl ReportRequest {
    /// Validates a request as a caller sent it: `kind` one of the kinds, `from` and `to` RFC 3339
    /// timestamps (any offset; kept in UTC at microsecond precision), `from < to`, at most
    /// [`ReportRange::MAX_DAYS`] days apart. Every offending field is named.
    ///
    /// ```
    /// use strata_domain::{ReportKind, ReportRequest};
    ///
    /// let request = ReportRequest::parse(
    ///     Some("sales"),
    ///     Some("2026-10-01T00:00:00Z"),
    ///     Some("2026-11-01T00:00:00+01:00"),
    /// )
    /// .unwrap();
    /// assert_eq!(request.kind, ReportKind::Sales);
    /// assert_eq!(request.range.to().to_rfc3339(), "2026-10-31T23:00:00+00:00");
    ///
    /// let errors = ReportRequest::parse(Some("refunds"), None, Some("yesterday")).unwrap_err();
    /// let fields: Vec<_> = errors.0.iter().map(|e| (e.field.as_str(), e.code)).collect();
    /// assert_eq!(
    ///     fields,
    ///     [("kind", "invalid_choice"), ("from", "required"), ("to", "invalid_timestamp")]
    /// );
    /// ```
    pub fn parse(
        kind: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let kind = match kind {
            None => {
                errors.push(FieldError::new("kind", "required", "is required"));
                None
            }
            Some(raw) => match ReportKind::parse(raw) {
                Some(kind) => Some(kind),
                None => {
                    let kinds: Vec<&str> = ReportKind::ALL.iter().map(|k| k.as_str()).collect();
                    errors.push(FieldError::new(
                        "kind",
                        "invalid_choice",
                        format!("must be one of: {}", kinds.join(", ")),
                    ));
                    None
                }
            },
        };
        let from = errors.check("from", timestamp(from));
        let to = errors.check("to", timestamp(to));
        let range = match (from, to) {
            (Some(from), Some(to)) => errors.check("to", ReportRange::new(from, to)),
            _ => None,
        };
        errors.into_result()?;
        match (kind, range) {
            (Some(kind), Some(range)) => Ok(Self { kind, range }),
            // Unreachable: a missing part left an error behind.
            _ => Err(ValidationErrors::single(FieldError::new(
                "body",
                "invalid",
                "is not a report request",
            ))),
        }
    }
}

/// An RFC 3339 timestamp, in UTC at the microsecond precision timestamps are stored with.
fn timestamp(raw: Option<&str>) -> Result<DateTime<Utc>, FieldError> {
    let raw = raw.ok_or_else(|| FieldError::new("timestamp", "required", "is required"))?;
    DateTime::parse_from_rfc3339(raw.trim())
        .map(|at| at.with_timezone(&Utc).trunc_subsecs(6))
        .map_err(|_| {
            FieldError::new(
                "timestamp",
                "invalid_timestamp",
                "must be an RFC 3339 timestamp such as 2026-11-01T00:00:00Z",
            )
        })
}

/// A report as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Identifier.
    pub id: ReportId,
    /// What it reports on.
    pub kind: ReportKind,
    /// The range it covers.
    pub range: ReportRange,
    /// Where it is.
    pub status: ReportStatus,
    /// The admin who asked for it.
    pub requested_by: UserId,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
    /// When a worker first started on it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it became `done` or `failed`.
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed (`failed` only).
    pub error: Option<String>,
    /// The result (`done` only).
    pub result: Option<SalesReport>,
}

impl Report {
    /// A new report of `request`, queued at `now`.
    pub fn queued(
        id: ReportId,
        request: ReportRequest,
        requested_by: UserId,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            kind: request.kind,
            range: request.range,
            status: ReportStatus::Queued,
            requested_by,
            created_at: now,
            started_at: None,
            finished_at: None,
            error: None,
            result: None,
        }
    }
}

/// Orders of one currency created on one UTC day and not cancelled: how many, and their total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaySales {
    /// The day.
    pub date: NaiveDate,
    /// The orders' currency.
    pub currency: Currency,
    /// How many orders.
    pub orders: u64,
    /// The sum of their totals, in minor units of `currency`.
    pub revenue_minor: i64,
}

/// Units on the orders created on one UTC day and not cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayUnits {
    /// The day.
    pub date: NaiveDate,
    /// Units of every product.
    pub units: u64,
}

/// A product and how many units of it sold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductUnits {
    /// The product.
    pub product_id: ProductId,
    /// Its SKU.
    pub sku: Sku,
    /// Its name.
    pub name: ProductName,
    /// Units sold.
    pub units: u64,
}

/// The raw figures of a sales report, as the database aggregates them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SalesFigures {
    /// One entry per day and currency that had orders.
    pub sales: Vec<DaySales>,
    /// One entry per day that had orders.
    pub units: Vec<DayUnits>,
    /// The best-selling products, most units first.
    pub top_products: Vec<ProductUnits>,
}

/// One day of a sales report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesDay {
    /// The UTC date.
    pub date: NaiveDate,
    /// Orders created that day and not cancelled.
    pub orders: u64,
    /// Units on them.
    pub units: u64,
    /// Their revenue, one amount per currency (by code), none on a day without orders.
    pub revenue: Vec<Money>,
}

/// A generated sales report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesReport {
    /// Orders created in the range and not cancelled.
    pub order_count: u64,
    /// Units on them.
    pub units: u64,
    /// Their revenue, one amount per currency (by code).
    pub revenue: Vec<Money>,
    /// Every day of the range, in order.
    pub days: Vec<SalesDay>,
    /// The products that sold the most units (ties by id), at most [`SalesReport::TOP_PRODUCTS`].
    pub top_products: Vec<ProductUnits>,
}

/// Why figures cannot make a sales report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SalesReportError {
    /// A sum does not fit in 64 bits.
    #[error("the revenue in {currency} does not fit in 64 bits")]
    Overflow {
        /// The currency whose sum overflowed.
        currency: Currency,
    },
    /// The figures name a day the range does not touch (a bug in whoever aggregated them).
    #[error("figures for {date}, a day outside the report's range")]
    OutOfRange {
        /// The stray day.
        date: NaiveDate,
    },
}

impl SalesReport {
    /// How many products the report ranks.
    pub const TOP_PRODUCTS: usize = 10;

    /// Assembles the report of `range` from its figures: totals, every day of the range (zero
    /// where nothing sold), and the top products (most units first, ties by product id).
    ///
    /// ```
    /// use chrono::{NaiveDate, TimeZone, Utc};
    /// use strata_domain::*;
    ///
    /// let usd = Currency::parse("USD").unwrap();
    /// let day = |d| NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
    /// let range = ReportRange::new(
    ///     Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap(),
    ///     Utc.with_ymd_and_hms(2026, 3, 4, 0, 0, 0).unwrap(),
    /// )
    /// .unwrap();
    /// let figures = SalesFigures {
    ///     sales: vec![
    ///         DaySales { date: day(1), currency: usd, orders: 2, revenue_minor: 500 },
    ///         DaySales { date: day(3), currency: usd, orders: 1, revenue_minor: 250 },
    ///     ],
    ///     units: vec![DayUnits { date: day(1), units: 4 }, DayUnits { date: day(3), units: 1 }],
    ///     top_products: vec![],
    /// };
    /// let report = SalesReport::assemble(&range, figures).unwrap();
    /// assert_eq!((report.order_count, report.units), (3, 5));
    /// assert_eq!(report.revenue, [Money::new(750, usd)]);
    /// assert_eq!(report.days.len(), 3);
    /// assert_eq!((report.days[1].orders, report.days[1].revenue.len()), (0, 0));
    /// ```
    pub fn assemble(range: &ReportRange, figures: SalesFigures) -> Result<Self, SalesReportError> {
        let mut days: BTreeMap<NaiveDate, SalesDay> = range
            .days()
            .into_iter()
            .map(|date| {
                let day = SalesDay {
                    date,
                    orders: 0,
                    units: 0,
                    revenue: Vec::new(),
                };
                (date, day)
            })
            .collect();
        let mut totals: BTreeMap<Currency, Money> = BTreeMap::new();
        let mut order_count = 0u64;
        let mut units = 0u64;
        for sales in figures.sales {
            let day = days
                .get_mut(&sales.date)
                .ok_or(SalesReportError::OutOfRange { date: sales.date })?;
            let overflow = SalesReportError::Overflow {
                currency: sales.currency,
            };
            let amount = Money::new(sales.revenue_minor, sales.currency);
            day.orders = day.orders.saturating_add(sales.orders);
            order_count = order_count.saturating_add(sales.orders);
            match day
                .revenue
                .iter_mut()
                .find(|money| money.currency == sales.currency)
            {
                Some(money) => *money = money.checked_add(amount).ok_or(overflow.clone())?,
                None => day.revenue.push(amount),
            }
            let total = totals
                .entry(sales.currency)
                .or_insert(Money::new(0, sales.currency));
            *total = total.checked_add(amount).ok_or(overflow)?;
        }
        for sold in figures.units {
            let day = days
                .get_mut(&sold.date)
                .ok_or(SalesReportError::OutOfRange { date: sold.date })?;
            day.units = day.units.saturating_add(sold.units);
            units = units.saturating_add(sold.units);
        }
        let mut days: Vec<SalesDay> = days.into_values().collect();
        for day in &mut days {
            day.revenue.sort_by_key(|money| money.currency);
        }
        let mut top_products = figures.top_products;
        top_products.sort_by(|a, b| b.units.cmp(&a.units).then(a.product_id.cmp(&b.product_id)));
        top_products.truncate(Self::TOP_PRODUCTS);
        Ok(Self {
            order_count,
            units,
            revenue: totals.into_values().collect(),
            days,
            top_products,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn day(month: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, month, d).unwrap()
    }

    fn currency(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    fn codes(result: Result<ReportRequest, ValidationErrors>) -> Vec<(String, &'static str)> {
        result
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| (e.field, e.code))
            .collect()
    }

    fn product(n: u128, units: u64) -> ProductUnits {
        ProductUnits {
            product_id: ProductId(Uuid::from_u128(n)),
            sku: Sku::parse(&format!("SKU-{n}")).unwrap(),
            name: ProductName::parse("Thing").unwrap(),
            units,
        }
    }

    #[test]
    fn a_range_is_from_before_to_and_at_most_366_days() {
        let from = at("2025-03-01T00:00:00Z");
        assert!(ReportRange::new(from, from + Duration::microseconds(1)).is_ok());
        assert!(ReportRange::new(from, from + Duration::days(366)).is_ok());
        let too_long = ReportRange::new(from, from + Duration::days(366) + Duration::seconds(1));
        assert_eq!(too_long.unwrap_err().code, "range_too_long");
        assert_eq!(
            ReportRange::new(from, from).unwrap_err().code,
            "not_after_from"
        );
        assert_eq!(
            ReportRange::new(from, from - Duration::seconds(1))
                .unwrap_err()
                .field,
            "to"
        );
    }

    #[test]
    fn every_field_of_a_bad_request_is_named() {
        assert_eq!(
            codes(ReportRequest::parse(None, None, None)),
            [
                ("kind".to_owned(), "required"),
                ("from".to_owned(), "required"),
                ("to".to_owned(), "required"),
            ]
        );
        assert_eq!(
            codes(ReportRequest::parse(
                Some("Sales"),
                Some("2026-13-01T00:00:00Z"),
                Some("2026-11-01")
            )),
            [
                ("kind".to_owned(), "invalid_choice"),
                ("from".to_owned(), "invalid_timestamp"),
                ("to".to_owned(), "invalid_timestamp"),
            ]
        );
        assert_eq!(
            codes(ReportRequest::parse(
                Some("sales"),
                Some("2026-11-01T00:00:00Z"),
                Some("2026-10-01T00:00:00Z")
            )),
            [("to".to_owned(), "not_after_from")]
        );
        assert_eq!(
            codes(ReportRequest::parse(
                Some("sales"),
                Some("2024-01-01T00:00:00Z"),
                Some("2025-01-02T00:00:00Z")
            )),
            [("to".to_owned(), "range_too_long")]
        );
    }

    #[test]
    fn timestamps_are_kept_in_utc_at_microsecond_precision() {
        let request = ReportRequest::parse(
            Some("sales"),
            Some("2026-11-01T01:00:00.123456789+01:00"),
            Some("2026-11-02T00:00:00Z"),
        )
        .unwrap();
        assert_eq!(request.range.from(), at("2026-11-01T00:00:00.123456Z"));
        assert_eq!(request.range.to(), at("2026-11-02T00:00:00Z"));
    }

    #[test]
    fn the_days_of_a_range_are_the_utc_dates_it_touches() {
        let range = |from: &str, to: &str| ReportRange::new(at(from), at(to)).unwrap();
        assert_eq!(
            range("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z").days(),
            [day(3, 1)]
        );
        assert_eq!(
            range("2026-02-28T23:59:59Z", "2026-03-01T00:00:01Z").days(),
            [day(2, 28), day(3, 1)]
        );
        // An offset moves the boundaries: 2 March 00:00 at +01:00 is 1 March 23:00 UTC.
        assert_eq!(
            range("2026-03-01T00:00:00Z", "2026-03-02T00:00:00+01:00").days(),
            [day(3, 1)]
        );
        let year = range("2025-11-01T00:00:00Z", "2026-11-01T00:00:00Z");
        assert_eq!(year.days().len(), 365);
        let longest = range("2023-06-01T12:00:00Z", "2024-06-01T12:00:00Z");
        assert_eq!(longest.days().len(), 367, "366 days, partial at both ends");
    }

    #[test]
    fn statuses_and_kinds_round_trip_and_only_done_and_failed_are_final() {
        for status in ReportStatus::ALL {
            assert_eq!(ReportStatus::parse(status.as_str()), Some(status));
        }
        let finals: Vec<_> = ReportStatus::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .collect();
        assert_eq!(finals, [ReportStatus::Done, ReportStatus::Failed]);
        assert_eq!(ReportKind::parse("sales"), Some(ReportKind::Sales));
        assert_eq!(ReportKind::parse("refunds"), None);
        assert_eq!(ReportStatus::parse("cancelled"), None);
    }

    #[test]
    fn a_report_sums_currencies_apart_lists_every_day_and_ranks_ten_products() {
        let (usd, eur) = (currency("USD"), currency("EUR"));
        let range = ReportRange::new(
            Utc.with_ymd_and_hms(2026, 3, 1, 6, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 3, 3, 6, 0, 0).unwrap(),
        )
        .unwrap();
        let sales = |d, currency, orders, revenue_minor| DaySales {
            date: day(3, d),
            currency,
            orders,
            revenue_minor,
        };
        let figures = SalesFigures {
            sales: vec![
                sales(1, usd, 2, 1_000),
                sales(1, eur, 1, 700),
                sales(3, usd, 1, 300),
            ],
            units: vec![
                DayUnits {
                    date: day(3, 1),
                    units: 9,
                },
                DayUnits {
                    date: day(3, 3),
                    units: 2,
                },
            ],
            top_products: (1..=12).map(|n| product(n, 100 - (n as u64 / 2))).collect(),
        };
        let report = SalesReport::assemble(&range, figures).unwrap();
        assert_eq!(report.order_count, 4);
        assert_eq!(report.units, 11);
        assert_eq!(
            report.revenue,
            [Money::new(700, eur), Money::new(1_300, usd)]
        );
        assert_eq!(
            report.days,
            [
                SalesDay {
                    date: day(3, 1),
                    orders: 3,
                    units: 9,
                    revenue: vec![Money::new(700, eur), Money::new(1_000, usd)],
                },
                SalesDay {
                    date: day(3, 2),
                    orders: 0,
                    units: 0,
                    revenue: vec![],
                },
                SalesDay {
                    date: day(3, 3),
                    orders: 1,
                    units: 2,
                    revenue: vec![Money::new(300, usd)],
                },
            ]
        );
        let ranked: Vec<(u128, u64)> = report
            .top_products
            .iter()
            .map(|p| (p.product_id.0.as_u128(), p.units))
            .collect();
        // Most units first; equal units by id.
        assert_eq!(
            ranked,
            [
                (1, 100),
                (2, 99),
                (3, 99),
                (4, 98),
                (5, 98),
                (6, 97),
                (7, 97),
                (8, 96),
                (9, 96),
                (10, 95)
            ]
        );
    }

    #[test]
    fn an_overflowing_revenue_or_a_stray_day_is_refused() {
        let usd = currency("USD");
        let range =
            ReportRange::new(at("2026-03-01T00:00:00Z"), at("2026-03-03T00:00:00Z")).unwrap();
        let sales = |d, revenue_minor| DaySales {
            date: day(3, d),
            currency: usd,
            orders: 1,
            revenue_minor,
        };
        let overflowing = SalesFigures {
            sales: vec![sales(1, i64::MAX), sales(2, 1)],
            ..SalesFigures::default()
        };
        assert_eq!(
            SalesReport::assemble(&range, overflowing),
            Err(SalesReportError::Overflow { currency: usd })
        );
        let stray = SalesFigures {
            sales: vec![sales(3, 1)],
            ..SalesFigures::default()
        };
        assert_eq!(
            SalesReport::assemble(&range, stray),
            Err(SalesReportError::OutOfRange { date: day(3, 3) })
        );
    }

    #[test]
    fn a_report_serialises_dates_money_and_products_plainly() {
        let usd = currency("USD");
        let range =
            ReportRange::new(at("2026-03-01T00:00:00Z"), at("2026-03-02T00:00:00Z")).unwrap();
        let figures = SalesFigures {
            sales: vec![DaySales {
                date: day(3, 1),
                currency: usd,
                orders: 1,
                revenue_minor: 250,
            }],
            units: vec![DayUnits {
                date: day(3, 1),
                units: 1,
            }],
            top_products: vec![product(1, 1)],
        };
        let report = SalesReport::assemble(&range, figures).unwrap();
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["days"][0]["date"], "2026-03-01");
        assert_eq!(json["revenue"][0]["amount_minor"], 250);
        assert_eq!(json["top_products"][0]["sku"], "SKU-1");
        let back: SalesReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
    }
}
