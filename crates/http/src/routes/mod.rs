//! Route tables and controllers: each controller turns HTTP into a use-case call and back.

pub mod admin;
pub mod auth;
pub mod billing;
pub mod exports;
pub mod orders;
pub mod problems;
pub mod products;
pub mod users;
