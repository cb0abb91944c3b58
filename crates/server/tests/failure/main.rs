//! Failure tests: real servers stopped and started under a running Strata (SPEC §4).
//!
//! Each test starts its own Redis and/or PostgreSQL (never the shared ones on 6379/5432, which
//! other tests use), kills it with `kill -9` while the application serves traffic, asserts what
//! clients see, restarts it on the same port and asserts that the same application recovers on
//! its own. The SIGTERM test runs the `strata` binary against the shared servers.
//!
//! Run them with `cargo nextest run -p strata-server --test failure` (one process per test).

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

mod app;
mod postgres_down;
mod redis_down;
mod servers;
mod sigterm;
