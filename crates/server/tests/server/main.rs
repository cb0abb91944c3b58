//! The server's integration tests that can share a process (ADR 0026): the HTTP API end to end
//! (`api`), `deploy/` against the binary (`deploy`) and two replicas behind one database and one
//! Redis (`replicas`).
//!
//! Three others keep a binary of their own because each installs something process-wide that the
//! tests here would install first under `cargo test` (one process per binary, where nextest runs
//! each test in its own): `failure` and `traces` the global tracing subscriber, `monitoring` the
//! metrics recorder.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

mod api;
mod deploy;
mod replicas;
