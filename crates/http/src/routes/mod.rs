//! Route tables and controllers: each controller turns HTTP into a use-case call and back.

pub mod auth;
pub mod users;
