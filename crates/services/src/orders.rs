//! Orders: placement (oversell-proof, idempotent), the caller's or everyone's list, and the
//! status changes.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strata_domain::{
    FieldError, InvalidTransition, Order, OrderId, OrderRejection, OrderRequest, OrderStatus,
    PageLimit, RawLine, ShortLine, UserId, ValidationErrors,
};
use strata_ports::{
    Cache, Clock, IdGenerator, NewOrder, OrderFilter, OrderPageKey, OrderRepository,
    PlaceOrderError, Placement, PortError, TransitionError,
};
use uuid::Uuid;

use crate::auth::Principal;
use crate::cache_aside::invalidate;
use crate::catalog::product_cache_key;
use crate::cursor::CursorCodec;
use crate::failure::Failure;
use crate::idempotency;
use crate::users::Page;

/// What a caller of [`OrderService`] must handle.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// Some fields are invalid; every one is listed.
    #[error("invalid input")]
    Validation(#[from] ValidationErrors),
    /// The caller may not do this.
    #[error("forbidden")]
    Forbidden,
    /// No such order, or not the caller's.
    #[error("order not found")]
    NotFound,
    /// Some lines exceed the stock on hand; nothing was written.
    #[error("insufficient stock")]
    InsufficientStock(Vec<ShortLine>),
    /// The order's status does not allow this change.
    #[error(transparent)]
    InvalidTransition(#[from] InvalidTransition),
    /// The Idempotency-Key was used with a different request.
    #[error("idempotency key reused with a different request")]
    KeyReused,
    /// Infrastructure failure.
    #[error(transparent)]
    Failure(#[from] Failure),
}

impl From<PortError> for OrderError {
    fn from(error: PortError) -> Self {
        OrderError::Failure(error.into())
    }
}

impl From<TransitionError> for OrderError {
    fn from(error: TransitionError) -> Self {
        match error {
            TransitionError::NotFound => OrderError::NotFound,
            TransitionError::Invalid(invalid) => OrderError::InvalidTransition(invalid),
            TransitionError::Port(error) => error.into(),
        }
    }
}

impl From<PlaceOrderError> for OrderError {
    fn from(error: PlaceOrderError) -> Self {
        match error {
            PlaceOrderError::Rejected(OrderRejection::InvalidLines(errors)) => errors.into(),
            PlaceOrderError::Rejected(OrderRejection::InsufficientStock(short)) => {
                OrderError::InsufficientStock(short)
            }
            PlaceOrderError::KeyReused => OrderError::KeyReused,
            PlaceOrderError::Port(error) => error.into(),
        }
    }
}

/// A placed order, and whether this answer replays an earlier request with the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedOrder {
    /// The order as first placed.
    pub order: Order,
    /// True when the Idempotency-Key had been used already: nothing new happened.
    pub replayed: bool,
}

/// List parameters as a caller sent them (query strings).
#[derive(Debug, Clone, Default)]
pub struct OrderListParams {
    /// `placed`, `fulfilled` or `cancelled`.
    pub status: Option<String>,
    /// Admins only: one user's orders.
    pub user_id: Option<String>,
    /// Position from the previous page.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct OrdersCursor {
    at: DateTime<Utc>,
    id: Uuid,
}

/// The operation name recorded with an Idempotency-Key.
const PLACE_OPERATION: &str = "orders.place";

/// The order use cases.
pub struct OrderService {
    orders: Arc<dyn OrderRepository>,
    cache: Arc<dyn Cache>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    cursors: CursorCodec,
    idempotency_window: Duration,
}

impl OrderService {
    /// Wires the service to its ports; an Idempotency-Key replays for `idempotency_window`.
    pub fn new(
        orders: Arc<dyn OrderRepository>,
        cache: Arc<dyn Cache>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
        cursors: CursorCodec,
        idempotency_window: Duration,
    ) -> Self {
        Self {
            orders,
            cache,
            clock,
            ids,
            cursors,
            idempotency_window,
        }
    }

    /// Places an order for the caller. With an Idempotency-Key, a retry of the same request
    /// replays the first answer and a different request under the same key is refused.
    pub async fn place(
        &self,
        principal: &Principal,
        lines: &[RawLine],
        idempotency_key: Option<&str>,
    ) -> Result<PlacedOrder, OrderError> {
        let key = idempotency::parse_key(idempotency_key);
        let request = OrderRequest::parse(lines);
        let (key, request) = match (key, request) {
            (Ok(key), Ok(request)) => (key, request),
            (key, request) => {
                let mut errors = ValidationErrors::new();
                if let Err(error) = key {
                    errors.push(error);
                }
                if let Err(more) = request {
                    errors.0.extend(more.0);
                }
                return Err(errors.into());
            }
        };
        let now = self.clock.now();
        let lines: Vec<[u8; 18]> = request
            .lines()
            .iter()
            .map(|line| {
                let mut part = [0u8; 18];
                part[..16].copy_from_slice(line.product_id.0.as_bytes());
                part[16..].copy_from_slice(&line.quantity.get().to_be_bytes());
                part
            })
            .collect();
        let parts: Vec<&[u8]> = lines.iter().map(|part| part.as_slice()).collect();
        let idempotency = key
            .map(|key| {
                idempotency::claim(key, PLACE_OPERATION, &parts, now, self.idempotency_window)
            })
            .transpose()?;
        let new_order = NewOrder {
            id: OrderId(self.ids.new_id()),
            user_id: principal.user_id,
            request,
            created_at: now,
            idempotency,
        };
        let placement = self.orders.place(&new_order).await?;
        Ok(match placement {
            Placement::Placed(order) => {
                self.invalidate_products(&order).await;
                PlacedOrder {
                    order,
                    replayed: false,
                }
            }
            Placement::Replayed(order) => PlacedOrder {
                order,
                replayed: true,
            },
        })
    }

    /// The caller's orders, or everyone's for an admin, newest first, with their lines.
    pub async fn list(
        &self,
        principal: &Principal,
        params: OrderListParams,
    ) -> Result<Page<Order>, OrderError> {
        let mut errors = ValidationErrors::new();
        let limit = errors.check("limit", PageLimit::parse(params.limit.as_deref()));
        let status = match params.status.as_deref() {
            None => Some(None),
            Some(raw) => match OrderStatus::parse(raw) {
                Some(status) => Some(Some(status)),
                None => {
                    errors.push(FieldError::new(
                        "status",
                        "invalid_choice",
                        "must be placed, fulfilled or cancelled",
                    ));
                    None
                }
            },
        };
        let user_id = match params.user_id.as_deref() {
            _ if !principal.is_admin() => Some(Some(principal.user_id)),
            None => Some(None),
            Some(raw) => match Uuid::parse_str(raw) {
                Ok(id) => Some(Some(UserId(id))),
                Err(_) => {
                    errors.push(FieldError::new("user_id", "invalid_uuid", "must be a UUID"));
                    None
                }
            },
        };
        if params.user_id.is_some() && !principal.is_admin() {
            return Err(OrderError::Forbidden);
        }
        let (Some(limit), Some(status), Some(user_id)) = (limit, status, user_id) else {
            return Err(errors.into());
        };
        let filter = OrderFilter { user_id, status };
        let scope = format!(
            "orders:{}:{}",
            user_id.map(|id| id.to_string()).unwrap_or_default(),
            status.map(OrderStatus::as_str).unwrap_or_default()
        );
        let after = match params.cursor.as_deref() {
            None => None,
            Some(raw) => match self.cursors.decode::<OrdersCursor>(&scope, raw) {
                Ok(cursor) => Some(OrderPageKey {
                    created_at: cursor.at,
                    id: OrderId(cursor.id),
                }),
                Err(_) => {
                    errors.push(FieldError::new(
                        "cursor",
                        "invalid_cursor",
                        "is not a cursor of this list with these filters",
                    ));
                    None
                }
            },
        };
        errors.into_result()?;
        let items = self.orders.list(&filter, after, limit.get() + 1).await?;
        Ok(Page::cut(items, limit, |last| {
            self.cursors.encode(
                &scope,
                &OrdersCursor {
                    at: last.created_at,
                    id: last.id.0,
                },
            )
        }))
    }

    /// One order: the caller's own, or any for an admin. Another user's order is not found.
    pub async fn get(&self, principal: &Principal, id: OrderId) -> Result<Order, OrderError> {
        let order = self.orders.find(id).await?.ok_or(OrderError::NotFound)?;
        if order.user_id != principal.user_id && !principal.is_admin() {
            return Err(OrderError::NotFound);
        }
        Ok(order)
    }

    /// Cancels a placed order (its owner or an admin) and puts its stock back, exactly once.
    pub async fn cancel(&self, principal: &Principal, id: OrderId) -> Result<Order, OrderError> {
        let owner = (!principal.is_admin()).then_some(principal.user_id);
        let order = self
            .orders
            .transition(id, owner, OrderStatus::Cancelled, self.clock.now())
            .await?;
        self.invalidate_products(&order).await;
        Ok(order)
    }

    /// Marks a placed order fulfilled (admin only).
    pub async fn fulfill(&self, principal: &Principal, id: OrderId) -> Result<Order, OrderError> {
        if !principal.is_admin() {
            return Err(OrderError::Forbidden);
        }
        Ok(self
            .orders
            .transition(id, None, OrderStatus::Fulfilled, self.clock.now())
            .await?)
    }

    /// Stock changed for every product on `order`: drop their cached copies.
    async fn invalidate_products(&self, order: &Order) {
        let keys: Vec<String> = order
            .lines
            .iter()
            .map(|line| product_cache_key(line.product_id))
            .collect();
        invalidate(self.cache.as_ref(), &keys).await;
    }
}

#[cfg(test)]
mod tests;
