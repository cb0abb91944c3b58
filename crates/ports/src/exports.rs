//! Bulk reads for the admin exports: every user or order, oldest first, one keyset batch at a time.
//!
//! The rows are a read model, not domain entities: text is exported as stored (no re-validation
//! of each email or display name, so one odd legacy row cannot abort a million-row export), and a
//! user row has no password hash at all.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use strata_domain::{Currency, OrderId, OrderStatus, Role, UserId};
use uuid::Uuid;

use crate::PortError;

/// Which rows an export covers: `created_at` in `[from, to)`; `None` leaves that side open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportRange {
    /// Earliest `created_at` included.
    pub from: Option<DateTime<Utc>>,
    /// First `created_at` excluded.
    pub to: Option<DateTime<Utc>>,
}

/// The keyset position after the last row of a batch (exports are ordered by `created_at`, then
/// `id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportKey {
    /// `created_at` of the last row of the previous batch.
    pub created_at: DateTime<Utc>,
    /// `id` of the last row of the previous batch.
    pub id: Uuid,
}

/// A user as exported: never the password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserExportRow {
    /// The user's id.
    pub id: UserId,
    /// The email, as stored.
    pub email: String,
    /// The display name, as stored.
    pub display_name: String,
    /// The role.
    pub role: Role,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl UserExportRow {
    /// The keyset position of this row.
    pub fn key(&self) -> ExportKey {
        ExportKey {
            created_at: self.created_at,
            id: self.id.0,
        }
    }
}

/// An order as exported: one flat row, its lines summarised by their count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderExportRow {
    /// The order's id.
    pub id: OrderId,
    /// Who placed it.
    pub user_id: UserId,
    /// Its status.
    pub status: OrderStatus,
    /// The currency of every amount of the order.
    pub currency: Currency,
    /// The total, in minor units of `currency`.
    pub total_minor: i64,
    /// How many lines (distinct products) the order has.
    pub item_count: i64,
    /// When it was placed.
    pub created_at: DateTime<Utc>,
    /// When its status last changed.
    pub updated_at: DateTime<Utc>,
}

impl OrderExportRow {
    /// The keyset position of this row.
    pub fn key(&self) -> ExportKey {
        ExportKey {
            created_at: self.created_at,
            id: self.id.0,
        }
    }
}

/// Batched reads of whole tables for the exports. Each call is one statement on one pooled
/// connection, returned before the call returns: nothing is held between batches.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait ExportRepository: Send + Sync + 'static {
    /// Up to `limit` users in `range` after `after` (all from the start with `None`), ordered by
    /// `created_at`, then `id`; fewer than `limit` only when no more follow. An empty vector when
    /// there are none; [`PortError`] on an infrastructure failure.
    async fn users_after(
        &self,
        after: Option<ExportKey>,
        range: ExportRange,
        limit: usize,
    ) -> Result<Vec<UserExportRow>, PortError>;
    /// Up to `limit` orders in `range` after `after`, in the same order and with the same
    /// contract as [`ExportRepository::users_after`].
    async fn orders_after(
        &self,
        after: Option<ExportKey>,
        range: ExportRange,
        limit: usize,
    ) -> Result<Vec<OrderExportRow>, PortError>;
}
