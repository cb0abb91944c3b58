//! The bodies of registration, login, refresh and logout.

use serde::{Deserialize, Serialize};
use strata_services::TokenPair;
use utoipa::ToSchema;

use crate::dto::schemas::one_of;
use crate::users::dto::UserView;

/// POST /v1/auth/register
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"email": "ada@example.com", "password": "correct horse battery", "display_name": "Ada"})))]
pub struct RegisterRequest {
    /// Email address.
    #[serde(default)]
    #[schema(required = true, format = Email, max_length = 254, examples("ada@example.com"))]
    pub email: String,
    /// Password, 8–128 characters.
    #[serde(default)]
    #[schema(required = true, format = Password, min_length = 8, max_length = 128, examples("correct horse battery"))]
    pub password: String,
    /// Public name, 1–80 characters.
    #[serde(default)]
    #[schema(
        required = true,
        min_length = 1,
        max_length = 80,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$",
        examples("Ada")
    )]
    pub display_name: String,
}

/// POST /v1/auth/login
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"email": "customer@strata.test", "password": "strata-demo-password"})))]
pub struct LoginRequest {
    /// Email address.
    #[serde(default)]
    #[schema(required = true, format = Email, examples("customer@strata.test"))]
    pub email: String,
    /// Password.
    #[serde(default)]
    #[schema(required = true, format = Password, min_length = 1, examples("strata-demo-password"))]
    pub password: String,
}

/// POST /v1/auth/refresh
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"refresh_token": "q3V8cW1zX2FuX29wYXF1ZV8yNTZfYml0X3JhbmRvbV90b2tlbg"})))]
pub struct RefreshRequest {
    /// The refresh token of the last login or refresh.
    #[serde(default)]
    #[schema(required = true, min_length = 1)]
    pub refresh_token: String,
}

/// Tokens as returned by login and refresh.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Tokens)]
pub struct TokensView {
    /// JWT for `Authorization: Bearer`.
    #[schema(examples("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIwMTkzIn0.c2lnbmF0dXJl"))]
    pub access_token: String,
    /// Opaque token for `/v1/auth/refresh`.
    #[schema(examples("q3V8cW1zX2FuX29wYXF1ZV8yNTZfYml0X3JhbmRvbV90b2tlbg"))]
    pub refresh_token: String,
    /// Always `Bearer`.
    #[schema(schema_with = token_type)]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    #[schema(examples(900))]
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
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Registration)]
pub struct RegisteredView {
    /// The new user.
    pub user: UserView,
    /// Tokens, flattened beside `user`.
    #[serde(flatten)]
    pub tokens: TokensView,
}

/// Always `Bearer`.
fn token_type() -> utoipa::openapi::schema::Object {
    one_of(&["Bearer"], "Always `Bearer`.")
}
