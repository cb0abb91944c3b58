//! Example bodies of the health probes.

use serde_json::Value;

/// `GET /health/live`.
pub(crate) fn live() -> Value {
    serde_json::json!({"status": "ok"})
}

/// A ready instance.
pub(crate) fn ready() -> Value {
    serde_json::json!({
        "status": "ok",
        "draining": false,
        "checks": [
            {"name": "postgres", "status": "up", "latency_ms": 2},
            {"name": "redis", "status": "up", "latency_ms": 1}
        ]
    })
}

/// An instance serving while Redis is down: ready, and degraded.
pub(crate) fn ready_degraded() -> Value {
    serde_json::json!({
        "status": "degraded",
        "draining": false,
        "checks": [
            {"name": "postgres", "status": "up", "latency_ms": 2},
            {"name": "redis", "status": "down", "latency_ms": 1000, "error": "timeout"}
        ]
    })
}

/// An instance shutting down.
pub(crate) fn draining() -> Value {
    serde_json::json!({
        "status": "ok",
        "draining": true,
        "checks": [
            {"name": "postgres", "status": "up", "latency_ms": 2},
            {"name": "redis", "status": "up", "latency_ms": 1}
        ]
    })
}

/// The deep check while Redis is down.
pub(crate) fn degraded() -> Value {
    serde_json::json!({
        "status": "degraded",
        "draining": false,
        "checks": [
            {"name": "postgres", "status": "up", "latency_ms": 2},
            {"name": "redis", "status": "down", "latency_ms": 3, "error": "unavailable"}
        ]
    })
}
