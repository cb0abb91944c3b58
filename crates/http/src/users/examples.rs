//! Example bodies of the users' operations.

use serde_json::Value;

use super::dto::{SessionView, UserView};
use crate::dto::PageView;
use crate::examples::{at, id, value};

pub(crate) fn user_view() -> UserView {
    UserView {
        id: id("0193a5b2-1f00-7c3e-8d2a-5b6c7d8e9f01"),
        email: "ada@example.com".to_owned(),
        display_name: "Ada".to_owned(),
        role: "customer",
        created_at: at("2026-11-02T09:15:00.000000Z"),
        updated_at: at("2026-11-02T09:15:00.000000Z"),
    }
}

/// A user.
pub(crate) fn user() -> Value {
    value(user_view())
}

/// A page of users.
pub(crate) fn user_page() -> Value {
    let mut admin = user_view();
    admin.id = id("0193a5b2-1f00-7c3e-8d2a-5b6c7d8e9f02");
    admin.email = "admin@strata.test".to_owned();
    admin.display_name = "Admin".to_owned();
    admin.role = "admin";
    value(PageView {
        items: vec![user_view(), admin],
        next_cursor: Some("eyJrIjoiMDE5M2E1YjIifQ.c2ln".to_owned()),
    })
}

/// The caller's sessions: this one, and a phone signed in a week earlier.
pub(crate) fn session_page() -> Value {
    value(PageView {
        items: vec![
            SessionView {
                id: id("0193a5f3-1a2b-7c3d-8e4f-5a6b7c8d9e01"),
                started_at: at("2026-11-21T09:00:00.000000Z"),
                last_active_at: at("2026-11-21T11:45:00.000000Z"),
                expires_at: at("2026-12-21T11:45:00.000000Z"),
                current: true,
            },
            SessionView {
                id: id("0193a5f3-1a2b-7c3d-8e4f-5a6b7c8d9e02"),
                started_at: at("2026-11-14T18:30:00.000000Z"),
                last_active_at: at("2026-11-20T21:10:00.000000Z"),
                expires_at: at("2026-12-20T21:10:00.000000Z"),
                current: false,
            },
        ],
        next_cursor: None,
    })
}
