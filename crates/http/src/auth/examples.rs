//! Example bodies of the auth operations.

use serde_json::Value;

use super::dto::{RegisteredView, TokensView};
use crate::examples::value;
use crate::users::examples::user_view;

fn tokens_view() -> TokensView {
    TokensView {
        access_token:
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIwMTkzYTViMi0xZjAwIn0.c2lnbmF0dXJl"
                .to_owned(),
        refresh_token: "q3V8cW1zX2FuX29wYXF1ZV8yNTZfYml0X3JhbmRvbV90b2tlbg".to_owned(),
        token_type: "Bearer",
        expires_in: 900,
    }
}

/// A registration.
pub(crate) fn registration() -> Value {
    value(RegisteredView {
        user: user_view(),
        tokens: tokens_view(),
    })
}

/// A token pair.
pub(crate) fn tokens() -> Value {
    value(tokens_view())
}
