//! Plans, subscriptions, invoices and proration.
//!
//! # Billing periods
//!
//! A subscription is billed in periods of its plan's interval, counted from its *anchor* (the
//! instant it started): period `n` runs from `anchor + n intervals` to `anchor + (n + 1) intervals`.
//! Adding months is calendar arithmetic that clamps to the end of a shorter month, always from the
//! anchor, so periods never drift: a subscription started on 31 January renews on 28 February
//! (29 in a leap year), then 31 March, 30 April, 31 May. A year is twelve months (29 February + 1
//! year = 28 February).
//!
//! A plan change keeps the period, so after a monthly → yearly change the period still ends on a
//! monthly boundary; from there the yearly plan renews a whole year at a time, counted from that
//! end (not up to the anchor's next anniversary, which would bill a full year for a few months).
//!
//! # Proration
//!
//! Changing plan mid-period keeps the period and settles the difference at once, to the second:
//!
//! - **credit** for the unused time of the old plan: `old price × remaining / old length`, negative;
//! - **charge** for the remaining time of the new plan: `new price × remaining / new length`;
//!
//! where `remaining` is the number of whole seconds from the change to the period's end and a
//! plan's *length* is the period itself when the period is one interval of that plan (even one
//! that starts on a clamped day: 28 February → 31 March is a month of 31 days), and otherwise its
//! interval measured from the period's start. So for two monthly plans both lengths are the
//! period; a monthly → yearly change charges the yearly price pro rata of a year until the period
//! ends, after which the new plan renews yearly; and a yearly → monthly change charges the monthly
//! rate for all the time left in the yearly period (nothing is capped at one price: that would
//! give the rest of the year for one month's price). Each amount is rounded half-to-even to the
//! minor unit on its own; the invoice total is their sum. Consequences, all covered by property
//! tests (`tests/proration.rs`): an upgrade never refunds and a downgrade never costs (each moves
//! at least one minor unit once the exact difference exceeds one), the same plan nets to zero, a
//! change at the period's start costs exactly the price difference (equal intervals), a change at
//! its end costs nothing, changing back at the same instant undoes a change exactly, the credit
//! never exceeds the old price when the period is one interval of the old plan, and the charge
//! never exceeds the new price when the remaining time fits in one interval of the new plan.

use std::fmt;

use chrono::{DateTime, Datelike, Months, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::{Money, Price};
use crate::user::UserId;
use crate::validation::FieldError;

/// How often a plan bills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingInterval {
    /// Every calendar month.
    Month,
    /// Every twelve calendar months.
    Year,
}

impl BillingInterval {
    /// The interval as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            BillingInterval::Month => "month",
            BillingInterval::Year => "year",
        }
    }

    /// Parses a stored interval.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "month" => Some(BillingInterval::Month),
            "year" => Some(BillingInterval::Year),
            _ => None,
        }
    }

    fn months(self) -> u32 {
        match self {
            BillingInterval::Month => 1,
            BillingInterval::Year => 12,
        }
    }

    /// `anchor` plus `n` intervals, clamping to the end of a shorter month; `None` past the
    /// calendar's end.
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use strata_domain::BillingInterval;
    ///
    /// let jan31 = Utc.with_ymd_and_hms(2027, 1, 31, 9, 0, 0).unwrap();
    /// let month = BillingInterval::Month;
    /// assert_eq!(month.advance(jan31, 1), Utc.with_ymd_and_hms(2027, 2, 28, 9, 0, 0).single());
    /// assert_eq!(month.advance(jan31, 2), Utc.with_ymd_and_hms(2027, 3, 31, 9, 0, 0).single());
    /// ```
    pub fn advance(self, anchor: DateTime<Utc>, n: u32) -> Option<DateTime<Utc>> {
        anchor.checked_add_months(Months::new(self.months().checked_mul(n)?))
    }
}

impl fmt::Display for BillingInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A plan's stable code, such as `pro-monthly`: 1–40 characters of `a-z`, `0-9` and `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PlanCode(String);

impl PlanCode {
    /// Validates a plan code.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let valid = (1..=40).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err(FieldError::new(
                "plan_code",
                "invalid_plan_code",
                "must be 1 to 40 characters of a-z, 0-9 and -",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PlanCode {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<PlanCode> for String {
    fn from(value: PlanCode) -> Self {
        value.0
    }
}

impl fmt::Display for PlanCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Something one can subscribe to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Stable code.
    pub code: PlanCode,
    /// Display name.
    pub name: String,
    /// Price per interval.
    pub price: Price,
    /// Billing interval.
    pub interval: BillingInterval,
    /// Whether new subscriptions and changes to it are accepted.
    pub active: bool,
}

/// A subscription's identifier (UUIDv7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SubscriptionId(pub Uuid);

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Whether a subscription is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    /// Billing and renewing.
    Active,
    /// Ended; final.
    Cancelled,
}

impl SubscriptionStatus {
    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a stored status.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "active" => Some(SubscriptionStatus::Active),
            "cancelled" => Some(SubscriptionStatus::Cancelled),
            _ => None,
        }
    }
}

/// A user's subscription to a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// Identifier.
    pub id: SubscriptionId,
    /// The subscriber.
    pub user_id: UserId,
    /// The current plan.
    pub plan_code: PlanCode,
    /// Running or ended.
    pub status: SubscriptionStatus,
    /// The instant periods are counted from (the start).
    pub anchor: DateTime<Utc>,
    /// Start of the period being billed.
    pub current_period_start: DateTime<Utc>,
    /// End of the period being billed (exclusive); renewal is due from then.
    pub current_period_end: DateTime<Utc>,
    /// Ends at the period's end instead of renewing.
    pub cancel_at_period_end: bool,
    /// When it ended.
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// The period after `current_end` for a subscription anchored at `anchor` on `interval`:
/// `(start, end)` where `start == current_end`. `None` only past the calendar's end.
///
/// When `current_end` is one of the anchor's boundaries for `interval`, `end` is the next one.
/// When it is not (the plan changed interval mid-period, e.g. monthly → yearly), the new period is
/// one whole interval from `current_end`.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use strata_domain::{BillingInterval, next_period};
///
/// let anchor = Utc.with_ymd_and_hms(2027, 1, 31, 0, 0, 0).unwrap();
/// let feb28 = Utc.with_ymd_and_hms(2027, 2, 28, 0, 0, 0).unwrap();
/// let (start, end) = next_period(anchor, feb28, BillingInterval::Month).unwrap();
/// assert_eq!((start, end), (feb28, Utc.with_ymd_and_hms(2027, 3, 31, 0, 0, 0).unwrap()));
/// ```
pub fn next_period(
    anchor: DateTime<Utc>,
    current_end: DateTime<Utc>,
    interval: BillingInterval,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    // Boundaries are counted from the anchor so that a clamped month (31 Jan → 28 Feb) does not
    // shift every later period.
    let mut n: u32 = 0;
    loop {
        let boundary = interval.advance(anchor, n)?;
        if boundary == current_end {
            return Some((current_end, interval.advance(anchor, n.checked_add(1)?)?));
        }
        if boundary > current_end {
            // Off this interval's boundaries: the anchor's next one would make a short period
            // billed at the full price.
            return Some((current_end, interval.advance(current_end, 1)?));
        }
        n = n.checked_add(1)?;
    }
}

/// An invoice's identifier (UUIDv7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InvoiceId(pub Uuid);

impl fmt::Display for InvoiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why an invoice was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceKind {
    /// The first period of a new subscription.
    Subscription,
    /// A plan change mid-period.
    Proration,
    /// A new period.
    Renewal,
}

impl InvoiceKind {
    /// The kind as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceKind::Subscription => "subscription",
            InvoiceKind::Proration => "proration",
            InvoiceKind::Renewal => "renewal",
        }
    }

    /// Parses a stored kind.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "subscription" => Some(InvoiceKind::Subscription),
            "proration" => Some(InvoiceKind::Proration),
            "renewal" => Some(InvoiceKind::Renewal),
            _ => None,
        }
    }
}

/// One line of an invoice: what for, and a signed amount (credits are negative).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceLine {
    /// Human description.
    pub description: String,
    /// Signed amount.
    pub amount: Money,
}

/// A bill (or a credit note, when the total is negative).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    /// Identifier.
    pub id: InvoiceId,
    /// Who it is for.
    pub user_id: UserId,
    /// The subscription it belongs to.
    pub subscription_id: SubscriptionId,
    /// Why it was issued.
    pub kind: InvoiceKind,
    /// The lines.
    pub lines: Vec<InvoiceLine>,
    /// Sum of the lines.
    pub total: Money,
    /// The period it covers (for a proration: from the change to the period's end).
    pub period_start: DateTime<Utc>,
    /// End of that period.
    pub period_end: DateTime<Utc>,
    /// Issue time.
    pub created_at: DateTime<Utc>,
}

/// A subscription together with the invoice an operation issued for it (a subscribe or a plan
/// change): what an Idempotency-Key replays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BilledSubscription {
    /// The subscription after the operation.
    pub subscription: Subscription,
    /// The invoice it issued.
    pub invoice: Invoice,
}

/// What renewing a due subscription does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewalDecision {
    /// Not due yet (its period has not ended), or already cancelled: nothing to do.
    NotDue,
    /// It was marked to end at the period's end: cancel it as of then.
    Cancel {
        /// When it ends (the period's end).
        at: DateTime<Utc>,
    },
    /// Bill the next period.
    Renew {
        /// The new period's start (the old period's end).
        period_start: DateTime<Utc>,
        /// The new period's end.
        period_end: DateTime<Utc>,
        /// The invoice line: the plan's full price.
        line: InvoiceLine,
    },
}

/// Decides the renewal of `subscription` (on `plan`, its current plan) at `now`. A subscription
/// several periods behind is renewed one period per call, so each period gets its own invoice.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use strata_domain::*;
///
/// let usd = Currency::parse("USD").unwrap();
/// let plan = Plan {
///     code: PlanCode::parse("basic-monthly").unwrap(),
///     name: "Basic".into(),
///     price: Price::new(999, usd).unwrap(),
///     interval: BillingInterval::Month,
///     active: true,
/// };
/// let start = Utc.with_ymd_and_hms(2027, 1, 31, 0, 0, 0).unwrap();
/// let end = Utc.with_ymd_and_hms(2027, 2, 28, 0, 0, 0).unwrap();
/// let subscription = Subscription {
///     id: SubscriptionId(uuid::Uuid::from_u128(1)),
///     user_id: UserId(uuid::Uuid::from_u128(2)),
///     plan_code: plan.code.clone(),
///     status: SubscriptionStatus::Active,
///     anchor: start,
///     current_period_start: start,
///     current_period_end: end,
///     cancel_at_period_end: false,
///     cancelled_at: None,
///     created_at: start,
///     updated_at: start,
/// };
/// match decide_renewal(&subscription, &plan, end).unwrap() {
///     RenewalDecision::Renew { period_start, period_end, line } => {
///         assert_eq!(period_start, end);
///         assert_eq!(period_end, Utc.with_ymd_and_hms(2027, 3, 31, 0, 0, 0).unwrap());
///         assert_eq!(line.amount.amount_minor, 999);
///     }
///     other => panic!("{other:?}"),
/// }
/// ```
pub fn decide_renewal(
    subscription: &Subscription,
    plan: &Plan,
    now: DateTime<Utc>,
) -> Result<RenewalDecision, ProrationError> {
    if subscription.status != SubscriptionStatus::Active || subscription.current_period_end > now {
        return Ok(RenewalDecision::NotDue);
    }
    if subscription.cancel_at_period_end {
        return Ok(RenewalDecision::Cancel {
            at: subscription.current_period_end,
        });
    }
    let (period_start, period_end) = next_period(
        subscription.anchor,
        subscription.current_period_end,
        plan.interval,
    )
    .ok_or(ProrationError::OutsidePeriod)?;
    Ok(RenewalDecision::Renew {
        period_start,
        period_end,
        line: InvoiceLine {
            description: period_description(plan, period_start, period_end),
            amount: plan.price.money(),
        },
    })
}

/// The description of a full period of `plan` on an invoice.
pub fn period_description(plan: &Plan, start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    format!(
        "{} ({}ly), {} to {}",
        plan.name,
        plan.interval,
        start.format("%Y-%m-%d"),
        end.format("%Y-%m-%d")
    )
}

/// The settlement of a plan change at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proration {
    /// Credit for the old plan's unused time (zero or negative).
    pub credit: Money,
    /// Charge for the new plan's remaining time (zero or positive).
    pub charge: Money,
    /// `charge + credit`: positive for an upgrade, negative for a downgrade.
    pub total: Money,
    /// Whole seconds from the change to the period's end.
    pub remaining_seconds: i64,
}

/// Why a change cannot be prorated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProrationError {
    /// The plans are priced in different currencies.
    #[error("the plans are priced in different currencies")]
    CurrencyMismatch,
    /// The instant is outside the period.
    #[error("the change is outside the current period")]
    OutsidePeriod,
}

/// Prorates a change from `old` to `new` at `at` within `[period_start, period_end]`; see the
/// module documentation for the rules.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use strata_domain::*;
///
/// let usd = Currency::parse("USD").unwrap();
/// let plan = |code: &str, minor| Plan {
///     code: PlanCode::parse(code).unwrap(),
///     name: code.to_owned(),
///     price: Price::new(minor, usd).unwrap(),
///     interval: BillingInterval::Month,
///     active: true,
/// };
/// let (basic, pro) = (plan("basic-monthly", 1_000), plan("pro-monthly", 3_000));
/// // A 30-day period, changed after 10 days: two thirds remain.
/// let start = Utc.with_ymd_and_hms(2027, 4, 1, 0, 0, 0).unwrap();
/// let end = Utc.with_ymd_and_hms(2027, 5, 1, 0, 0, 0).unwrap();
/// let at = Utc.with_ymd_and_hms(2027, 4, 11, 0, 0, 0).unwrap();
///
/// let up = prorate(&basic, &pro, start, end, at).unwrap();
/// assert_eq!(up.credit.amount_minor, -667); // 1000 × 2/3 = 666.67
/// assert_eq!(up.charge.amount_minor, 2_000);
/// assert_eq!(up.total.amount_minor, 1_333);
///
/// let down = prorate(&pro, &basic, start, end, at).unwrap();
/// assert_eq!(down.total.amount_minor, -1_333);
/// ```
pub fn prorate(
    old: &Plan,
    new: &Plan,
    period_start: DateTime<Utc>,
    period_end: DateTime<Utc>,
    at: DateTime<Utc>,
) -> Result<Proration, ProrationError> {
    let (old_price, new_price) = (old.price.money(), new.price.money());
    if old_price.currency != new_price.currency {
        return Err(ProrationError::CurrencyMismatch);
    }
    if at < period_start || at > period_end || period_end <= period_start {
        return Err(ProrationError::OutsidePeriod);
    }
    let remaining = (period_end - at).num_seconds();
    let length_of = |plan: &Plan| {
        plan_length(plan.interval, period_start, period_end).ok_or(ProrationError::OutsidePeriod)
    };
    let credit = pro_rata(old_price.amount_minor, remaining, length_of(old)?);
    let charge = pro_rata(new_price.amount_minor, remaining, length_of(new)?);
    let currency = old_price.currency;
    Ok(Proration {
        credit: Money::new(-credit, currency),
        charge: Money::new(charge, currency),
        total: Money::new(charge - credit, currency),
        remaining_seconds: remaining,
    })
}

/// Whole seconds of one `interval` of a plan billed in `[start, end]`: the period itself when it
/// is one such interval, else the interval measured from `start`. `None` if that is not positive
/// or past the calendar's end.
///
/// A period is one interval when `end == start + interval`, or when `start` is the last day of its
/// month (clamped from a later anchor day) and `end` is a later day of the month `start +
/// interval` falls in, at the same time of day: period 1 of a subscription anchored on 31 January
/// runs 28 February → 31 March, a month of 31 days, not 28.
fn plan_length(interval: BillingInterval, start: DateTime<Utc>, end: DateTime<Utc>) -> Option<i64> {
    let measured = interval.advance(start, 1)?;
    let starts_on_a_month_end = start
        .date_naive()
        .succ_opt()
        .is_some_and(|next| next.day() == 1);
    let clamped_period = starts_on_a_month_end
        && end > measured
        && (end.year(), end.month()) == (measured.year(), measured.month())
        && end.time() == start.time();
    let length_end = if end == measured || clamped_period {
        end
    } else {
        measured
    };
    Some((length_end - start).num_seconds()).filter(|seconds| *seconds > 0)
}

/// `amount × part / whole`, rounded half-to-even, for `0 ≤ part`, `0 < whole`. Not capped:
/// `part > whole` (a monthly plan in a yearly period) bills several intervals' worth.
fn pro_rata(amount: i64, part: i64, whole: i64) -> i64 {
    let numerator = i128::from(amount) * i128::from(part);
    let denominator = i128::from(whole);
    let quotient = numerator / denominator;
    let remainder = numerator % denominator;
    let twice = remainder * 2;
    let rounded = if twice > denominator || (twice == denominator && quotient % 2 != 0) {
        quotient + 1
    } else {
        quotient
    };
    // Cannot fail for a price: |amount| ≤ Price::MAX_MINOR (10¹¹), `part` is at most chrono's
    // whole range (under 2 × 10¹³ seconds) and `whole` at least 28 days (2.4 × 10⁶ seconds), so
    // |rounded| < 10¹⁸ < i64::MAX.
    i64::try_from(rounded).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pro_rata_rounds_half_to_even() {
        assert_eq!(pro_rata(1, 1, 2), 0); // 0.5 → 0
        assert_eq!(pro_rata(3, 1, 2), 2); // 1.5 → 2
        assert_eq!(pro_rata(5, 1, 2), 2); // 2.5 → 2
        assert_eq!(pro_rata(1000, 2, 3), 667);
        assert_eq!(pro_rata(1000, 1, 3), 333);
        assert_eq!(pro_rata(1000, 5, 3), 1667); // not capped
        assert_eq!(pro_rata(1000, 0, 3), 0);
    }
}
