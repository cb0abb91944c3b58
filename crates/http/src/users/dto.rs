//! The bodies of the profile and the admin's user reads.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strata_domain::{Session, User};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::dto::{present, rfc3339, schemas};

/// PATCH /v1/users/me: `display_name`, `password` (with `current_password`), or both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"display_name": "Countess"}), json!({"password": "a new long passphrase", "current_password": "correct horse battery"})))]
pub struct UpdateMeRequest {
    /// New public name.
    #[serde(default, deserialize_with = "present")]
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 80,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$",
        examples("Countess")
    )]
    pub display_name: Option<String>,
    /// New password.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, format = Password, min_length = 8, max_length = 128)]
    pub password: Option<String>,
    /// Current password, required with `password`.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, format = Password, min_length = 1)]
    pub current_password: Option<String>,
}

/// A user as clients see it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = User)]
pub struct UserView {
    /// Identifier.
    pub id: Uuid,
    /// Email.
    #[schema(format = Email, examples("ada@example.com"))]
    pub email: String,
    /// Public name.
    #[schema(examples("Ada"))]
    pub display_name: String,
    /// `customer` or `admin`.
    #[schema(schema_with = schemas::role)]
    pub role: &'static str,
    /// Registration time.
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    /// Last profile change.
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
}

impl From<User> for UserView {
    fn from(user: User) -> Self {
        Self {
            id: user.id.0,
            email: user.email.into(),
            display_name: user.display_name.into(),
            role: user.role.as_str(),
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}

/// One of the caller's sessions: a sign-in, and the refreshes that followed it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Session)]
pub struct SessionView {
    /// The session's id: end it with `DELETE /v1/users/me/sessions/{id}`.
    pub id: Uuid,
    /// When it signed in.
    #[serde(serialize_with = "rfc3339")]
    pub started_at: DateTime<Utc>,
    /// When it last refreshed its tokens (its sign-in if it never did).
    #[serde(serialize_with = "rfc3339")]
    pub last_active_at: DateTime<Utc>,
    /// When it ends unless it refreshes again.
    #[serde(serialize_with = "rfc3339")]
    pub expires_at: DateTime<Utc>,
    /// True for the session of the access token that asked.
    pub current: bool,
}

impl From<Session> for SessionView {
    fn from(session: Session) -> Self {
        Self {
            id: session.id,
            started_at: session.started_at,
            last_active_at: session.last_active_at,
            expires_at: session.expires_at,
            current: session.current,
        }
    }
}
