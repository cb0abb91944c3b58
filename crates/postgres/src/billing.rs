//! [`PlanRepository`] and [`SubscriptionRepository`] on the `plans`, `subscriptions`, `invoices`
//! and `idempotency_keys` tables.
//!
//! Two database guarantees carry the billing rules under concurrency: the partial unique index
//! `subscriptions_one_live_per_user` (one non-cancelled subscription per user) and
//! `invoices_one_renewal_per_period` (a period is billed once). The renewal pass locks the rows it
//! works on with `FOR UPDATE OF s SKIP LOCKED`, so concurrent workers share the due subscriptions
//! instead of queueing behind each other.

use anyhow::anyhow;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Int8, Jsonb, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use strata_domain::{
    BilledSubscription, BillingInterval, Currency, Invoice, InvoiceId, InvoiceKind, InvoiceLine,
    Money, Plan, PlanCode, Price, RenewalDecision, Subscription, SubscriptionId,
    SubscriptionStatus, UserId, decide_renewal,
};
use strata_ports::{
    IdempotencyClaim, InvoicePageKey, NewSubscription, PlanChange, PlanRepository, PortError,
    Recorded, RenewalPass, SubscriptionRepository, SubscriptionWriteError,
};
use uuid::Uuid;

use crate::database::{Abort, Database, Transaction, keyset, violates};
use crate::idempotency::{KeyClaim, claim_key, peek_key, store_response};
use crate::prepared::{LimitLiteral as _, PrepareOnce as _};
use crate::schema::{invoices, plans, subscriptions};

const ONE_LIVE_PER_USER: &str = "subscriptions_one_live_per_user";

#[derive(Queryable, QueryableByName, Selectable)]
#[diesel(table_name = plans, check_for_backend(diesel::pg::Pg))]
struct PlanRow {
    code: String,
    name: String,
    price_minor: i64,
    currency: String,
    interval: String,
    active: bool,
}

#[derive(Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = subscriptions, check_for_backend(diesel::pg::Pg))]
struct SubscriptionRow {
    id: Uuid,
    user_id: Uuid,
    plan_code: String,
    status: String,
    anchor: DateTime<Utc>,
    current_period_start: DateTime<Utc>,
    current_period_end: DateTime<Utc>,
    cancel_at_period_end: bool,
    cancelled_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = invoices, check_for_backend(diesel::pg::Pg))]
struct InvoiceRow {
    id: Uuid,
    user_id: Uuid,
    subscription_id: Uuid,
    kind: String,
    lines: serde_json::Value,
    total_minor: i64,
    currency: String,
    period_start: DateTime<Utc>,
    period_end: DateTime<Utc>,
    created_at: DateTime<Utc>,
}

/// A due subscription with its plan, as the renewal scan reads it (the column names of the two
/// tables do not overlap).
#[derive(QueryableByName)]
struct DueRow {
    #[diesel(embed)]
    subscription: SubscriptionRow,
    #[diesel(embed)]
    plan: PlanRow,
}

fn corrupt(table: &str, id: impl std::fmt::Display, what: &str) -> PortError {
    PortError::unexpected(anyhow!("{table} row {id} holds an invalid {what}"))
}

impl PlanRow {
    fn into_plan(self) -> Result<Plan, PortError> {
        let corrupt = |what: &str| corrupt("plans", &self.code, what);
        let currency = Currency::parse(&self.currency).map_err(|_| corrupt("currency"))?;
        Ok(Plan {
            code: PlanCode::parse(&self.code).map_err(|_| corrupt("code"))?,
            price: Price::new(self.price_minor, currency).map_err(|_| corrupt("price"))?,
            interval: BillingInterval::parse(&self.interval).ok_or_else(|| corrupt("interval"))?,
            active: self.active,
            name: self.name,
        })
    }
}

impl SubscriptionRow {
    fn new(subscription: &Subscription) -> Self {
        Self {
            id: subscription.id.0,
            user_id: subscription.user_id.0,
            plan_code: subscription.plan_code.as_str().to_owned(),
            status: subscription.status.as_str().to_owned(),
            anchor: subscription.anchor,
            current_period_start: subscription.current_period_start,
            current_period_end: subscription.current_period_end,
            cancel_at_period_end: subscription.cancel_at_period_end,
            cancelled_at: subscription.cancelled_at,
            created_at: subscription.created_at,
            updated_at: subscription.updated_at,
        }
    }

    fn into_subscription(self) -> Result<Subscription, PortError> {
        let corrupt = |what: &str| corrupt("subscriptions", self.id, what);
        Ok(Subscription {
            id: SubscriptionId(self.id),
            user_id: UserId(self.user_id),
            plan_code: PlanCode::parse(&self.plan_code).map_err(|_| corrupt("plan_code"))?,
            status: SubscriptionStatus::parse(&self.status).ok_or_else(|| corrupt("status"))?,
            anchor: self.anchor,
            current_period_start: self.current_period_start,
            current_period_end: self.current_period_end,
            cancel_at_period_end: self.cancel_at_period_end,
            cancelled_at: self.cancelled_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

impl InvoiceRow {
    fn new(invoice: &Invoice) -> Result<Self, PortError> {
        Ok(Self {
            id: invoice.id.0,
            user_id: invoice.user_id.0,
            subscription_id: invoice.subscription_id.0,
            kind: invoice.kind.as_str().to_owned(),
            lines: serde_json::to_value(&invoice.lines).map_err(PortError::unexpected)?,
            total_minor: invoice.total.amount_minor,
            currency: invoice.total.currency.as_str().to_owned(),
            period_start: invoice.period_start,
            period_end: invoice.period_end,
            created_at: invoice.created_at,
        })
    }

    fn into_invoice(self) -> Result<Invoice, PortError> {
        let corrupt = |what: &str| corrupt("invoices", self.id, what);
        let currency = Currency::parse(&self.currency).map_err(|_| corrupt("currency"))?;
        Ok(Invoice {
            id: InvoiceId(self.id),
            user_id: UserId(self.user_id),
            subscription_id: SubscriptionId(self.subscription_id),
            kind: InvoiceKind::parse(&self.kind).ok_or_else(|| corrupt("kind"))?,
            lines: serde_json::from_value::<Vec<InvoiceLine>>(self.lines)
                .map_err(|_| corrupt("lines"))?,
            total: Money::new(self.total_minor, currency),
            period_start: self.period_start,
            period_end: self.period_end,
            created_at: self.created_at,
        })
    }
}

/// Plans in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgPlanRepository {
    db: Database,
}

impl PgPlanRepository {
    /// A repository on `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait]
impl PlanRepository for PgPlanRepository {
    async fn list(&self) -> Result<Vec<Plan>, PortError> {
        let mut conn = self.db.connection().await?;
        let rows = self
            .db
            .timed(
                plans::table
                    .select(PlanRow::as_select())
                    .order(plans::code.asc())
                    .load(&mut conn),
            )
            .await?;
        rows.into_iter().map(PlanRow::into_plan).collect()
    }

    async fn find(&self, code: &PlanCode) -> Result<Option<Plan>, PortError> {
        let mut conn = self.db.connection().await?;
        let row = self
            .db
            .timed(async {
                plans::table
                    .find(code.as_str())
                    .select(PlanRow::as_select())
                    .first(&mut conn)
                    .await
                    .optional()
            })
            .await?;
        row.map(PlanRow::into_plan).transpose()
    }
}

/// Subscriptions and invoices in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgSubscriptionRepository {
    db: Database,
}

impl PgSubscriptionRepository {
    /// A repository on `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// Inserts `invoice` and returns it as stored (timestamps at the database's precision).
async fn insert_invoice<E: From<PortError>>(
    conn: &mut AsyncPgConnection,
    invoice: &Invoice,
) -> Result<Invoice, Abort<E>> {
    let row = InvoiceRow::new(invoice).map_err(Abort::port)?;
    let stored = diesel::insert_into(invoices::table)
        .values(&row)
        .returning(InvoiceRow::as_returning())
        .prepared()
        .get_result(conn)
        .await?;
    stored.into_invoice().map_err(Abort::port)
}

/// The response a keyed write records and returns: the stored rows, so that this call, a replay
/// and a later read all agree to the microsecond.
fn billed(
    subscription: SubscriptionRow,
    invoice: Invoice,
) -> Result<BilledSubscription, Abort<SubscriptionWriteError>> {
    Ok(BilledSubscription {
        subscription: subscription.into_subscription().map_err(Abort::port)?,
        invoice,
    })
}

/// Claims the write's key, if any; `Some` with the earlier result when it is to be replayed.
async fn claim(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    claim: Option<&IdempotencyClaim>,
    now: DateTime<Utc>,
) -> Result<Option<BilledSubscription>, Abort<SubscriptionWriteError>> {
    let Some(claim) = claim else {
        return Ok(None);
    };
    let decode = serde_json::from_value::<BilledSubscription>;
    match claim_key(conn, user_id, claim, now, decode).await? {
        KeyClaim::Fresh => Ok(None),
        KeyClaim::Replay(earlier) => Ok(Some(earlier)),
        KeyClaim::Reused => Err(Abort::Refused(SubscriptionWriteError::KeyReused)),
    }
}

/// [`SubscriptionRepository::create`] inside its transaction.
async fn create_in(
    conn: &mut AsyncPgConnection,
    new: &NewSubscription,
) -> Result<Recorded<BilledSubscription>, Abort<SubscriptionWriteError>> {
    let subscription = &new.billed.subscription;
    let user_id = subscription.user_id;
    let keyed = new.idempotency.as_ref();
    if let Some(earlier) = claim(conn, user_id, keyed, subscription.created_at).await? {
        return Ok(Recorded::Replayed(earlier));
    }
    // A concurrent subscribe of the same user waits on the partial unique index until this
    // transaction ends, then fails it: one live subscription per user, whatever the timing. The
    // refusal rolls back the key claimed above too.
    let inserted = diesel::insert_into(subscriptions::table)
        .values(SubscriptionRow::new(subscription))
        .returning(SubscriptionRow::as_returning())
        .prepared()
        .get_result(conn)
        .await;
    let stored = match inserted {
        Ok(row) => row,
        Err(error) if violates(&error, ONE_LIVE_PER_USER) => {
            return Err(Abort::Refused(SubscriptionWriteError::AlreadySubscribed));
        }
        Err(error) => return Err(error.into()),
    };
    let invoice = insert_invoice(conn, &new.billed.invoice).await?;
    let result = billed(stored, invoice)?;
    if let Some(claim) = keyed {
        let response = serde_json::to_value(&result);
        store_response(conn, user_id, claim, subscription.id.0, response).await?;
    }
    Ok(Recorded::Created(result))
}

/// [`SubscriptionRepository::change_plan`] inside its transaction.
async fn change_plan_in(
    conn: &mut AsyncPgConnection,
    change: &PlanChange,
) -> Result<Recorded<BilledSubscription>, Abort<SubscriptionWriteError>> {
    let subscription = &change.billed.subscription;
    let user_id = subscription.user_id;
    let keyed = change.idempotency.as_ref();
    if let Some(earlier) = claim(conn, user_id, keyed, subscription.updated_at).await? {
        return Ok(Recorded::Replayed(earlier));
    }
    // A compare-and-set on what the proration was computed from: a renewal, a cancellation or
    // another change in between makes it stale rather than wrongly priced.
    let updated = diesel::update(subscriptions::table.find(subscription.id.0))
        .filter(subscriptions::user_id.eq(user_id.0))
        .filter(subscriptions::status.eq(SubscriptionStatus::Active.as_str()))
        .filter(subscriptions::plan_code.eq(change.expected_plan.as_str()))
        .filter(subscriptions::current_period_start.eq(change.expected_period_start))
        .set((
            subscriptions::plan_code.eq(subscription.plan_code.as_str()),
            subscriptions::updated_at.eq(subscription.updated_at),
        ))
        .returning(SubscriptionRow::as_returning())
        .prepared()
        .get_result(conn)
        .await
        .optional()?;
    let Some(updated) = updated else {
        return Err(Abort::Refused(SubscriptionWriteError::Stale));
    };
    let invoice = insert_invoice(conn, &change.billed.invoice).await?;
    let result = billed(updated, invoice)?;
    if let Some(claim) = keyed {
        let response = serde_json::to_value(&result);
        store_response(conn, user_id, claim, subscription.id.0, response).await?;
    }
    Ok(Recorded::Created(result))
}

/// The renewal scan. `OF s`: only the subscriptions are locked, not the plans they share (which
/// would make every worker skip every subscription of a plan another worker touched).
const DUE_SQL: &str = "\
    SELECT s.id, s.user_id, s.plan_code, s.status, s.anchor, s.current_period_start, \
           s.current_period_end, s.cancel_at_period_end, s.cancelled_at, s.created_at, \
           s.updated_at, p.code, p.name, p.price_minor, p.currency, p.interval, p.active \
    FROM subscriptions s JOIN plans p ON p.code = s.plan_code \
    WHERE s.status = 'active' AND s.current_period_end <= $1 \
      AND s.renewal_quarantined_at IS NULL \
    ORDER BY s.current_period_end, s.id \
    LIMIT $2 \
    FOR UPDATE OF s SKIP LOCKED";

/// The renewal invoices of one pass, as columns for one `unnest` insert.
#[derive(Default)]
struct RenewalInvoices {
    ids: Vec<Uuid>,
    user_ids: Vec<Uuid>,
    subscription_ids: Vec<Uuid>,
    lines: Vec<serde_json::Value>,
    totals: Vec<i64>,
    currencies: Vec<String>,
    period_starts: Vec<DateTime<Utc>>,
    period_ends: Vec<DateTime<Utc>>,
}

impl RenewalInvoices {
    fn push(
        &mut self,
        subscription: &Subscription,
        period_start: DateTime<Utc>,
        period_end: DateTime<Utc>,
        line: &InvoiceLine,
    ) -> Result<(), PortError> {
        self.ids.push(Uuid::now_v7());
        self.user_ids.push(subscription.user_id.0);
        self.subscription_ids.push(subscription.id.0);
        self.lines
            .push(serde_json::to_value(std::slice::from_ref(line)).map_err(PortError::unexpected)?);
        self.totals.push(line.amount.amount_minor);
        self.currencies
            .push(line.amount.currency.as_str().to_owned());
        self.period_starts.push(period_start);
        self.period_ends.push(period_end);
        Ok(())
    }
}

/// What the renewal decided for one due subscription: its new periods, each with its invoice
/// line, the subscription as they leave it, and the instant it ended if it was set to end.
struct RowRenewal {
    subscription: Subscription,
    periods: Vec<(DateTime<Utc>, DateTime<Utc>, InvoiceLine)>,
    ended_at: Option<DateTime<Utc>>,
}

/// Every elapsed period of one due subscription at once, each with its own invoice, so that a
/// subscription left in the batch is never still due afterwards (a short batch means nothing is
/// due). Each renewal moves the period's end strictly forward, so the loop ends. An error means
/// the row cannot be read or decided on.
fn renew_row(row: DueRow, now: DateTime<Utc>) -> anyhow::Result<RowRenewal> {
    let plan = row.plan.into_plan()?;
    let mut subscription = row.subscription.into_subscription()?;
    let mut periods = Vec::new();
    let mut ended_at = None;
    loop {
        match decide_renewal(&subscription, &plan, now)? {
            RenewalDecision::NotDue => break,
            RenewalDecision::Cancel { at } => {
                ended_at = Some(at);
                break;
            }
            RenewalDecision::Renew {
                period_start,
                period_end,
                line,
            } => {
                subscription.current_period_start = period_start;
                subscription.current_period_end = period_end;
                periods.push((period_start, period_end, line));
            }
        }
    }
    Ok(RowRenewal {
        subscription,
        periods,
        ended_at,
    })
}

/// [`SubscriptionRepository::renew_due`] inside its transaction.
async fn renew_due_in(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<RenewalPass, Abort<PortError>> {
    let due = diesel::sql_query(DUE_SQL)
        .bind::<Timestamptz, _>(now)
        .bind::<BigInt, _>(limit)
        .prepared()
        .load::<DueRow>(conn)
        .await?;
    let mut pass = RenewalPass {
        examined: due.len(),
        ..RenewalPass::default()
    };
    let mut invoices = RenewalInvoices::default();
    let (mut renewed_ids, mut period_starts, mut period_ends) =
        (Vec::new(), Vec::new(), Vec::new());
    let (mut ended_ids, mut ended_at) = (Vec::new(), Vec::new());
    let (mut quarantined_ids, mut reasons) = (Vec::new(), Vec::new());
    for row in due {
        let id = row.subscription.id;
        // One row the renewal cannot read or decide on must not stop every other renewal: it is
        // set aside with its reason, and nothing of it is written.
        let renewal = match renew_row(row, now) {
            Ok(renewal) => renewal,
            Err(error) => {
                let reason = format!("{error:#}");
                tracing::error!(
                    subscription_id = %id,
                    reason = %reason,
                    "due subscription quarantined: renewals skip it until it is repaired"
                );
                quarantined_ids.push(id);
                reasons.push(reason.chars().take(1000).collect::<String>());
                pass.quarantined += 1;
                continue;
            }
        };
        for (period_start, period_end, line) in &renewal.periods {
            invoices
                .push(&renewal.subscription, *period_start, *period_end, line)
                .map_err(Abort::port)?;
        }
        if !renewal.periods.is_empty() {
            renewed_ids.push(id);
            period_starts.push(renewal.subscription.current_period_start);
            period_ends.push(renewal.subscription.current_period_end);
            pass.renewed += 1;
        }
        if let Some(at) = renewal.ended_at {
            ended_ids.push(id);
            ended_at.push(at);
            pass.cancelled += 1;
        }
    }
    if !quarantined_ids.is_empty() {
        diesel::sql_query(
            "UPDATE subscriptions AS s \
             SET renewal_quarantined_at = $3, renewal_error = v.reason \
             FROM unnest($1::uuid[], $2::text[]) AS v(id, reason) \
             WHERE s.id = v.id",
        )
        .bind::<Array<SqlUuid>, _>(&quarantined_ids)
        .bind::<Array<Text>, _>(&reasons)
        .bind::<Timestamptz, _>(now)
        .prepared()
        .execute(conn)
        .await?;
    }

    if !invoices.ids.is_empty() {
        // The partial unique index is the last line of defence: a period billed already (which
        // the row locks should make impossible) is not billed again.
        let inserted = diesel::sql_query(
            "INSERT INTO invoices (id, user_id, subscription_id, kind, lines, total_minor, \
                                   currency, period_start, period_end, created_at) \
             SELECT v.id, v.user_id, v.subscription_id, 'renewal', v.lines, v.total_minor, \
                    v.currency, v.period_start, v.period_end, $9 \
             FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::jsonb[], $5::int8[], \
                         $6::text[], $7::timestamptz[], $8::timestamptz[]) \
                  AS v(id, user_id, subscription_id, lines, total_minor, currency, \
                       period_start, period_end) \
             ON CONFLICT (subscription_id, period_start) WHERE kind = 'renewal' DO NOTHING",
        )
        .bind::<Array<SqlUuid>, _>(&invoices.ids)
        .bind::<Array<SqlUuid>, _>(&invoices.user_ids)
        .bind::<Array<SqlUuid>, _>(&invoices.subscription_ids)
        .bind::<Array<Jsonb>, _>(&invoices.lines)
        .bind::<Array<Int8>, _>(&invoices.totals)
        .bind::<Array<Text>, _>(&invoices.currencies)
        .bind::<Array<Timestamptz>, _>(&invoices.period_starts)
        .bind::<Array<Timestamptz>, _>(&invoices.period_ends)
        .bind::<Timestamptz, _>(now)
        .prepared()
        .execute(conn)
        .await?;
        if inserted != invoices.ids.len() {
            tracing::warn!(
                skipped = invoices.ids.len() - inserted,
                "renewal periods found already invoiced; not billed again"
            );
        }
    }
    if !renewed_ids.is_empty() {
        diesel::sql_query(
            "UPDATE subscriptions AS s \
             SET current_period_start = v.period_start, current_period_end = v.period_end, \
                 updated_at = $4 \
             FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[]) \
                  AS v(id, period_start, period_end) \
             WHERE s.id = v.id",
        )
        .bind::<Array<SqlUuid>, _>(&renewed_ids)
        .bind::<Array<Timestamptz>, _>(&period_starts)
        .bind::<Array<Timestamptz>, _>(&period_ends)
        .bind::<Timestamptz, _>(now)
        .prepared()
        .execute(conn)
        .await?;
    }
    if !ended_ids.is_empty() {
        // cancel_at_period_end stays true: it records why the subscription ended.
        diesel::sql_query(
            "UPDATE subscriptions AS s \
             SET status = 'cancelled', cancelled_at = v.ended_at, updated_at = $3 \
             FROM unnest($1::uuid[], $2::timestamptz[]) AS v(id, ended_at) \
             WHERE s.id = v.id",
        )
        .bind::<Array<SqlUuid>, _>(&ended_ids)
        .bind::<Array<Timestamptz>, _>(&ended_at)
        .bind::<Timestamptz, _>(now)
        .prepared()
        .execute(conn)
        .await?;
    }
    Ok(pass)
}

#[async_trait]
impl SubscriptionRepository for PgSubscriptionRepository {
    async fn create(
        &self,
        new: &NewSubscription,
    ) -> Result<Recorded<BilledSubscription>, SubscriptionWriteError> {
        self.db
            .in_transaction(Transaction::Write, async |conn| create_in(conn, new).await)
            .await
    }

    async fn find_replay(
        &self,
        user_id: UserId,
        claim: &IdempotencyClaim,
    ) -> Result<Option<BilledSubscription>, SubscriptionWriteError> {
        let decode = serde_json::from_value::<BilledSubscription>;
        let mut conn = self.db.connection().await?;
        let found = self
            .db
            .timed(peek_key(&mut conn, user_id, claim, decode))
            .await??;
        match found {
            KeyClaim::Fresh => Ok(None),
            KeyClaim::Replay(earlier) => Ok(Some(earlier)),
            KeyClaim::Reused => Err(SubscriptionWriteError::KeyReused),
        }
    }

    async fn current(&self, user_id: UserId) -> Result<Option<Subscription>, PortError> {
        let mut conn = self.db.connection().await?;
        let row = self
            .db
            .timed(async {
                subscriptions::table
                    .filter(subscriptions::user_id.eq(user_id.0))
                    // The live one first (false sorts before true), then the most recent.
                    .order((
                        subscriptions::status
                            .eq(SubscriptionStatus::Cancelled.as_str())
                            .asc(),
                        subscriptions::created_at.desc(),
                        subscriptions::id.desc(),
                    ))
                    .select(SubscriptionRow::as_select())
                    .first(&mut conn)
                    .await
                    .optional()
            })
            .await?;
        row.map(SubscriptionRow::into_subscription).transpose()
    }

    async fn change_plan(
        &self,
        change: &PlanChange,
    ) -> Result<Recorded<BilledSubscription>, SubscriptionWriteError> {
        self.db
            .in_transaction(Transaction::Write, async |conn| {
                change_plan_in(conn, change).await
            })
            .await
    }

    async fn cancel(
        &self,
        id: SubscriptionId,
        at_period_end: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscription>, PortError> {
        let active = subscriptions::table
            .find(id.0)
            .filter(subscriptions::status.eq(SubscriptionStatus::Active.as_str()));
        let mut conn = self.db.connection().await?;
        // One statement each: a concurrent renewal holds the row, and the update then applies to
        // the row as the renewal left it (or to none, if it ended it).
        let row = if at_period_end {
            self.db
                .timed(async {
                    diesel::update(active)
                        .set((
                            subscriptions::cancel_at_period_end.eq(true),
                            subscriptions::updated_at.eq(now),
                        ))
                        .returning(SubscriptionRow::as_returning())
                        .prepared()
                        .get_result(&mut conn)
                        .await
                        .optional()
                })
                .await?
        } else {
            self.db
                .timed(async {
                    diesel::update(active)
                        .set((
                            subscriptions::status.eq(SubscriptionStatus::Cancelled.as_str()),
                            subscriptions::cancelled_at.eq(now),
                            subscriptions::updated_at.eq(now),
                        ))
                        .returning(SubscriptionRow::as_returning())
                        .prepared()
                        .get_result(&mut conn)
                        .await
                        .optional()
                })
                .await?
        };
        row.map(SubscriptionRow::into_subscription).transpose()
    }

    async fn renew_due(&self, now: DateTime<Utc>, limit: usize) -> Result<RenewalPass, PortError> {
        let limit = i64::try_from(limit).map_err(PortError::unexpected)?;
        self.db
            .in_transaction(Transaction::Write, async |conn| {
                renew_due_in(conn, now, limit).await
            })
            .await
    }

    async fn invoices(
        &self,
        user_id: UserId,
        after: Option<InvoicePageKey>,
        limit: usize,
    ) -> Result<Vec<Invoice>, PortError> {
        let mut query = invoices::table
            .filter(invoices::user_id.eq(user_id.0))
            .select(InvoiceRow::as_select())
            .order((invoices::created_at.desc(), invoices::id.desc()))
            .into_boxed();
        if let Some(key) = after {
            query = query.filter(keyset!(
                "created_at",
                before,
                Timestamptz,
                key.created_at,
                key.id.0
            ));
        }
        let query = query.limit_literal(limit).prepared();
        let mut conn = self.db.connection().await?;
        let rows: Vec<InvoiceRow> = self.db.timed(query.load(&mut conn)).await?;
        rows.into_iter()
            .take(limit)
            .map(InvoiceRow::into_invoice)
            .collect()
    }
}
