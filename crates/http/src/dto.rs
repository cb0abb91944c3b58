//! Request and response bodies, named for their purpose. Request fields are optional strings with
//! defaults so that validation can name every missing or invalid field at once; unknown fields are
//! refused, so a misspelt or unsupported field is never silently ignored.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use strata_domain::User;
use strata_services::{Page, TokenPair};
use uuid::Uuid;

fn rfc3339<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Micros, true))
}

/// POST /v1/auth/register
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Email address.
    #[serde(default)]
    pub email: String,
    /// Password, 8–128 characters.
    #[serde(default)]
    pub password: String,
    /// Public name, 1–80 characters.
    #[serde(default)]
    pub display_name: String,
}

/// POST /v1/auth/login
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Email address.
    #[serde(default)]
    pub email: String,
    /// Password.
    #[serde(default)]
    pub password: String,
}

/// POST /v1/auth/refresh
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token of the last login or refresh.
    #[serde(default)]
    pub refresh_token: String,
}

/// PATCH /v1/users/me
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeRequest {
    /// New public name.
    pub display_name: Option<String>,
    /// New password.
    pub password: Option<String>,
    /// Current password, required with `password`.
    pub current_password: Option<String>,
}

/// A user as clients see it.
#[derive(Debug, Serialize)]
pub struct UserView {
    /// Identifier.
    pub id: Uuid,
    /// Email.
    pub email: String,
    /// Public name.
    pub display_name: String,
    /// `customer` or `admin`.
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

/// Tokens as returned by login and refresh.
#[derive(Debug, Serialize)]
pub struct TokensView {
    /// JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Opaque token for `/v1/auth/refresh`.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

impl From<TokenPair> for TokensView {
    fn from(pair: TokenPair) -> Self {
        Self {
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
            token_type: "Bearer",
            expires_in: pair.expires_in,
        }
    }
}

/// Registration's answer: the user and their first tokens.
#[derive(Debug, Serialize)]
pub struct RegisteredView {
    /// The new user.
    pub user: UserView,
    /// Tokens, flattened beside `user`.
    #[serde(flatten)]
    pub tokens: TokensView,
}

/// A page of a list.
#[derive(Debug, Serialize)]
pub struct PageView<T> {
    /// Items in list order.
    pub items: Vec<T>,
    /// Pass as `?cursor=` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

impl<T, U: From<T>> From<Page<T>> for PageView<U> {
    fn from(page: Page<T>) -> Self {
        Self {
            items: page.items.into_iter().map(U::from).collect(),
            next_cursor: page.next_cursor,
        }
    }
}

/// `?limit=&cursor=` of every list.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    /// 1–100, default 20.
    pub limit: Option<String>,
    /// Opaque position from the previous page.
    pub cursor: Option<String>,
}
