//! The bodies of the profile and the admin's user reads.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strata_domain::User;
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
