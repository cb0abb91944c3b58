//! End-to-end tests: the application `strata serve` runs, built by the same function, on a free
//! port, wired to a fresh PostgreSQL database and a private Redis key prefix, driven over HTTP.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

mod admin;
mod adversarial;
mod auth;
mod binary;
mod edge;
mod exports;
mod helpers;
mod lifecycle;
mod limits;
mod metrics;
mod orders;
mod products;
mod subscriptions;
mod users;
mod worker;
