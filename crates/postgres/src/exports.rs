//! [`ExportRepository`] on the `users` and `orders` tables.
//!
//! Each batch is one statement that seeks into the `(created_at, id)` index of its table (keyset,
//! never OFFSET, so the millionth row costs what the first does) on a connection taken for that
//! statement alone. Statements are built the same way for every batch of a given shape, so each
//! pooled connection prepares them once and reuses them.

use anyhow::anyhow;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamptz};
use diesel_async::RunQueryDsl;
use strata_domain::{Currency, OrderId, OrderStatus, Role, UserId};
use strata_ports::{
    ExportKey, ExportRange, ExportRepository, OrderExportRow, PortError, UserExportRow,
};
use uuid::Uuid;

use crate::database::{Database, keyset};
use crate::schema::{orders, users};

/// The lines of the order on the same row: an index-only probe of `order_items`' primary key.
const ITEM_COUNT: &str =
    "(SELECT count(*) FROM order_items WHERE order_items.order_id = orders.id)";

#[derive(Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
struct UserRecord {
    id: Uuid,
    email: String,
    display_name: String,
    role: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl UserRecord {
    fn into_row(self) -> Result<UserExportRow, PortError> {
        let role = Role::parse(&self.role).ok_or_else(|| corrupt("users", self.id, "role"))?;
        Ok(UserExportRow {
            id: UserId(self.id),
            email: self.email,
            display_name: self.display_name,
            role,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(Queryable)]
struct OrderRecord {
    id: Uuid,
    user_id: Uuid,
    status: String,
    currency: String,
    total_minor: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    item_count: i64,
}

impl OrderRecord {
    fn into_row(self) -> Result<OrderExportRow, PortError> {
        let corrupt = |what: &str| corrupt("orders", self.id, what);
        Ok(OrderExportRow {
            id: OrderId(self.id),
            user_id: UserId(self.user_id),
            status: OrderStatus::parse(&self.status).ok_or_else(|| corrupt("status"))?,
            currency: Currency::parse(&self.currency).map_err(|_| corrupt("currency"))?,
            total_minor: self.total_minor,
            item_count: self.item_count,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

fn corrupt(table: &str, id: Uuid, what: &str) -> PortError {
    PortError::unexpected(anyhow!("{table} row {id} holds an invalid {what}"))
}

/// Exports in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgExportRepository {
    db: Database,
}

impl PgExportRepository {
    /// A repository on `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait]
impl ExportRepository for PgExportRepository {
    async fn users_after(
        &self,
        after: Option<ExportKey>,
        range: ExportRange,
        limit: usize,
    ) -> Result<Vec<UserExportRow>, PortError> {
        let limit = i64::try_from(limit).map_err(PortError::unexpected)?;
        let mut query = users::table
            .select(UserRecord::as_select())
            .order((users::created_at.asc(), users::id.asc()))
            .limit(limit)
            .into_boxed();
        if let Some(from) = range.from {
            query = query.filter(users::created_at.ge(from));
        }
        if let Some(to) = range.to {
            query = query.filter(users::created_at.lt(to));
        }
        if let Some(key) = after {
            query = query.filter(keyset!(
                "created_at",
                after,
                Timestamptz,
                key.created_at,
                key.id
            ));
        }
        let mut conn = self.db.connection().await?;
        let records = self.db.timed(query.load(&mut conn)).await?;
        drop(conn);
        records.into_iter().map(UserRecord::into_row).collect()
    }

    async fn orders_after(
        &self,
        after: Option<ExportKey>,
        range: ExportRange,
        limit: usize,
    ) -> Result<Vec<OrderExportRow>, PortError> {
        let limit = i64::try_from(limit).map_err(PortError::unexpected)?;
        let mut query = orders::table
            .select((
                orders::id,
                orders::user_id,
                orders::status,
                orders::currency,
                orders::total_minor,
                orders::created_at,
                orders::updated_at,
                sql::<BigInt>(ITEM_COUNT),
            ))
            .order((orders::created_at.asc(), orders::id.asc()))
            .limit(limit)
            .into_boxed();
        if let Some(from) = range.from {
            query = query.filter(orders::created_at.ge(from));
        }
        if let Some(to) = range.to {
            query = query.filter(orders::created_at.lt(to));
        }
        if let Some(key) = after {
            query = query.filter(keyset!(
                "created_at",
                after,
                Timestamptz,
                key.created_at,
                key.id
            ));
        }
        let mut conn = self.db.connection().await?;
        let records: Vec<OrderRecord> = self.db.timed(query.load(&mut conn)).await?;
        drop(conn);
        records.into_iter().map(OrderRecord::into_row).collect()
    }
}
