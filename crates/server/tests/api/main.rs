//! End-to-end tests: the application `strata serve` runs, built by the same function, on a free
//! port, wired to a fresh PostgreSQL database and a private Redis key prefix, driven over HTTP.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

mod auth;
mod binary;
mod edge;
mod helpers;
mod lifecycle;
mod users;
