//! Order storage, with stock taken and restored in the same transactions.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use strata_domain::{
    IdempotencyKey, Order, OrderId, OrderRejection, OrderRequest, OrderStatus, UserId,
};

use crate::PortError;

/// An order to place: who, what, and under which id and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    /// Id the order will have.
    pub id: OrderId,
    /// Who places it.
    pub user_id: UserId,
    /// The validated lines.
    pub request: OrderRequest,
    /// Placement time.
    pub created_at: DateTime<Utc>,
    /// The client's Idempotency-Key, if it sent one.
    pub idempotency: Option<IdempotencyClaim>,
}

/// The client's Idempotency-Key and what it was first used for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    /// The key, unique per user.
    pub key: IdempotencyKey,
    /// The operation (`orders.place`), so a key reused on another endpoint is caught.
    pub operation: &'static str,
    /// Digest of the operation and its validated body.
    pub fingerprint: String,
    /// Until when a retry replays; afterwards the key may be used afresh.
    pub expires_at: DateTime<Utc>,
}

/// What placing an order did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// The order was placed now.
    Placed(Order),
    /// The key was used before with the same request: the first result, unchanged, and no new
    /// effect.
    Replayed(Order),
}

/// Why an order was not placed; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum PlaceOrderError {
    /// The domain refused it (invalid lines or insufficient stock).
    #[error(transparent)]
    Rejected(#[from] OrderRejection),
    /// The Idempotency-Key was used before with a different request.
    #[error("idempotency key reused with a different request")]
    KeyReused,
    /// Infrastructure failure.
    #[error(transparent)]
    Port(#[from] PortError),
}

/// Why a status change was not made; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    /// No such order (or not the caller's).
    #[error("order not found")]
    NotFound,
    /// The order is not in a status that allows the change.
    #[error(transparent)]
    Invalid(#[from] strata_domain::InvalidTransition),
    /// Infrastructure failure.
    #[error(transparent)]
    Port(#[from] PortError),
}

/// Which orders a list shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrderFilter {
    /// Only this user's orders (`None`: everyone's, for admins).
    pub user_id: Option<UserId>,
    /// Only orders in this status.
    pub status: Option<OrderStatus>,
}

/// The keyset position after the last order of a page (newest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderPageKey {
    /// `created_at` of the last order of the previous page.
    pub created_at: DateTime<Utc>,
    /// `id` of the last order of the previous page.
    pub id: OrderId,
}

/// Durable storage of orders.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait OrderRepository: Send + Sync + 'static {
    /// In one transaction: claims the Idempotency-Key if given (a concurrent request with the
    /// same key waits for this one and then replays it), locks the products in id order, prices
    /// the order with the domain rule, takes the stock, and stores the order with its lines and
    /// the key's response.
    async fn place(&self, order: &NewOrder) -> Result<Placement, PlaceOrderError>;
    /// The order with its lines; `Ok(None)` when there is none.
    async fn find(&self, id: OrderId) -> Result<Option<Order>, PortError>;
    /// Up to `limit` orders after `after`, newest first, each with its lines (one query for the
    /// orders and one for all their lines, whatever the page size).
    async fn list(
        &self,
        filter: &OrderFilter,
        after: Option<OrderPageKey>,
        limit: usize,
    ) -> Result<Vec<Order>, PortError>;
    /// Moves a placed order to `to`; a cancellation restocks every line in the same
    /// transaction, so it happens exactly once. With `owner`, only that user's order is found.
    async fn transition(
        &self,
        id: OrderId,
        owner: Option<UserId>,
        to: OrderStatus,
        now: DateTime<Utc>,
    ) -> Result<Order, TransitionError>;
}
