//! Liveness and readiness.
//!
//! Liveness says the process serves HTTP. Readiness pings every dependency concurrently, each under
//! a timeout, and answers 503 when one is down or while the server drains before shutdown, so a load
//! balancer stops sending traffic before the process stops taking it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use futures_util::future::join_all;
use serde::Serialize;
use strata_ports::{HealthCheck, PortError};

use crate::state::AppState;

/// The dependencies to ping and the draining flag.
pub struct Health {
    checks: Vec<Arc<dyn HealthCheck>>,
    timeout: Duration,
    draining: AtomicBool,
}

impl Health {
    /// Pings `checks`, each bounded by `timeout`.
    pub fn new(checks: Vec<Arc<dyn HealthCheck>>, timeout: Duration) -> Self {
        Self {
            checks,
            timeout,
            draining: AtomicBool::new(false),
        }
    }

    /// From now on readiness answers 503 (shutdown has begun).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// True once draining has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Pings every dependency at once.
    pub async fn report(&self) -> Readiness {
        let pings = self.checks.iter().map(|check| async move {
            let started = Instant::now();
            let result = tokio::time::timeout(self.timeout, check.ping()).await;
            let latency_ms = started.elapsed().as_millis() as u64;
            let (status, error) = match result {
                Ok(Ok(())) => ("up", None),
                Ok(Err(PortError::Unavailable(_))) => ("down", Some("unavailable")),
                Ok(Err(PortError::Unexpected(_))) => ("down", Some("error")),
                Err(_) => ("down", Some("timeout")),
            };
            CheckReport {
                name: check.name(),
                status,
                latency_ms,
                error,
            }
        });
        let checks = join_all(pings).await;
        let draining = self.is_draining();
        let healthy = !draining && checks.iter().all(|c| c.status == "up");
        Readiness {
            status: if healthy { "ok" } else { "degraded" },
            draining,
            checks,
        }
    }
}

/// One dependency's answer.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    /// Dependency name.
    pub name: &'static str,
    /// `up` or `down`.
    pub status: &'static str,
    /// Time the ping took.
    pub latency_ms: u64,
    /// `timeout`, `unavailable` or `error` when down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
}

/// The readiness body.
#[derive(Debug, Serialize)]
pub struct Readiness {
    /// `ok` or `degraded`.
    pub status: &'static str,
    /// True while shutting down.
    pub draining: bool,
    /// Every dependency.
    pub checks: Vec<CheckReport>,
}

/// GET /health/live
pub async fn live() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({ "status": "ok" }))
}

/// GET /health/ready
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let report = state.health.report().await;
    let mut response = if report.status == "ok" {
        HttpResponse::Ok()
    } else {
        let mut r = HttpResponse::ServiceUnavailable();
        r.insert_header((header::RETRY_AFTER, "5"));
        r
    };
    response
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(report)
}
