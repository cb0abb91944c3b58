//! User storage.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use strata_domain::{DisplayName, Email, Role, User, UserId};

use crate::PortError;

/// Everything needed to store a new user.
#[derive(Debug, Clone)]
pub struct NewUserRecord {
    /// The user, as it will be returned.
    pub user: User,
    /// PHC hash of the password.
    pub password_hash: String,
}

/// A user together with the stored password hash, for login.
#[derive(Debug, Clone)]
pub struct UserCredentials {
    /// The user.
    pub user: User,
    /// PHC hash of the password.
    pub password_hash: String,
}

/// Changes to a user's profile; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserUpdate {
    /// New display name.
    pub display_name: Option<DisplayName>,
    /// New password hash.
    pub password_hash: Option<String>,
}

/// The keyset position of a user in the admin list (ordered by creation, then id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserPageKey {
    /// `created_at` of the last user of the previous page.
    pub created_at: DateTime<Utc>,
    /// `id` of the last user of the previous page.
    pub id: UserId,
}

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    /// Another user has this email (compared case-insensitively).
    #[error("email already registered")]
    EmailTaken,
    /// Infrastructure failure.
    #[error(transparent)]
    Port(#[from] PortError),
}

/// Durable storage of users.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait UserRepository: Send + Sync + 'static {
    /// Stores a new user; [`CreateUserError::EmailTaken`] when the email exists in any case.
    async fn create(&self, record: &NewUserRecord) -> Result<User, CreateUserError>;
    /// The user with this id, `Ok(None)` when there is none.
    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, PortError>;
    /// The user and password hash for this email, `Ok(None)` when there is none.
    async fn find_credentials(&self, email: &Email) -> Result<Option<UserCredentials>, PortError>;
    /// The user and password hash by id, `Ok(None)` when there is none.
    async fn find_credentials_by_id(
        &self,
        id: UserId,
    ) -> Result<Option<UserCredentials>, PortError>;
    /// Applies `update` and sets `updated_at`; `Ok(None)` when the user does not exist.
    async fn update(
        &self,
        id: UserId,
        update: &UserUpdate,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, PortError>;
    /// Sets the role of the user with this email; `Ok(None)` when there is none.
    async fn set_role(
        &self,
        email: &Email,
        role: Role,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, PortError>;
    /// Up to `limit` users after `after`, oldest first (keyset, never OFFSET).
    async fn list(&self, after: Option<UserPageKey>, limit: usize) -> Result<Vec<User>, PortError>;
}
