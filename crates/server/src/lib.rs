//! Strata's composition root: configuration, telemetry, the wiring of adapters into services and
//! services into the HTTP app, and the process lifecycle (graceful shutdown).
//!
//! [`Components::build`] is the one place that knows every adapter. [`Application::build`] serves
//! [`strata_http::build_app`] on the configured port; tests build it with port 0 and talk to it over
//! HTTP, so they exercise exactly what `strata serve` runs.

pub mod app;
pub mod cli;
pub mod config;
pub mod healthcheck;
pub mod metrics;
pub mod secrets;
pub mod telemetry;

pub use app::{Application, Components};
pub use config::{ConfigError, Environment, LogFormat, Settings};
