//! What every handler can reach: the use cases and the health probe.

use std::sync::Arc;

use strata_services::{AuthService, UserService};

use crate::health::Health;

/// Shared, immutable application state (cheap to clone: `Arc`s).
#[derive(Clone)]
pub struct AppState {
    /// Authentication use cases.
    pub auth: Arc<AuthService>,
    /// User use cases.
    pub users: Arc<UserService>,
    /// Liveness and readiness.
    pub health: Arc<Health>,
}
