//! W3C trace context: an incoming `traceparent` is continued by the request's span (and so by
//! everything exported over OTLP), and its trace id is echoed in problem bodies so that a client
//! can hand it to whoever reads the traces.

use std::future::Future;

use actix_web::http::header::HeaderMap;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The request header carrying the caller's trace context.
pub const TRACEPARENT: &str = "traceparent";

/// A parsed `traceparent` (version 00): `00-<trace id>-<parent span id>-<flags>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace's id.
    pub trace_id: TraceId,
    /// The caller's span.
    pub parent_id: SpanId,
    /// Whether the caller sampled the trace.
    pub sampled: bool,
}

impl TraceParent {
    /// Parses a header value; `None` for anything malformed or an all-zero id (which the W3C
    /// specification says to ignore).
    pub fn parse(raw: &str) -> Option<Self> {
        let mut parts = raw.trim().split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let lower_hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        // Version 00 has exactly four fields; later versions may append more.
        let extra_allowed = version != "00" || parts.next().is_none();
        if !(lower_hex(version, 2)
            && version != "ff"
            && lower_hex(trace, 32)
            && lower_hex(parent, 16)
            && lower_hex(flags, 2)
            && extra_allowed)
        {
            return None;
        }
        let trace_id = TraceId::from_hex(trace).ok()?;
        let parent_id = SpanId::from_hex(parent).ok()?;
        if trace_id == TraceId::INVALID || parent_id == SpanId::INVALID {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(Self {
            trace_id,
            parent_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The `traceparent` of the request's caller, if it sent a valid one.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(Self::parse)
    }

    /// The header value.
    pub fn header_value(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id,
            self.parent_id,
            u8::from(self.sampled)
        )
    }
}

/// Makes `span` a child of the caller's span, and returns the trace id the request runs under:
/// the caller's, or the one the exporter gave the span (none when tracing export is off and the
/// caller sent nothing).
pub fn continue_trace(span: &tracing::Span, parent: Option<TraceParent>) -> Option<String> {
    if let Some(parent) = parent {
        let flags = if parent.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let remote = SpanContext::new(
            parent.trace_id,
            parent.parent_id,
            flags,
            true,
            TraceState::default(),
        );
        // A no-op when no OpenTelemetry layer is installed.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
        return Some(parent.trace_id.to_string());
    }
    let own = span.context().span().span_context().trace_id();
    (own != TraceId::INVALID).then(|| own.to_string())
}

/// The trace context of the request being handled.
#[derive(Debug, Clone, Default)]
pub struct RequestTrace {
    /// The trace id, if known.
    pub trace_id: Option<String>,
    /// The `traceparent` to hand on to work the request starts (a queued job), if any.
    pub traceparent: Option<String>,
}

tokio::task_local! {
    static TRACE: RequestTrace;
}

/// Runs `future` with `trace` as the current request's trace context (a plain function for the
/// reason given at [`crate::request_id::scope`]).
pub fn scope<F: Future>(trace: RequestTrace, future: F) -> impl Future<Output = F::Output> {
    TRACE.scope(trace, future)
}

/// The current request's trace id, if known.
pub fn current_trace_id() -> Option<String> {
    TRACE.try_with(|t| t.trace_id.clone()).ok().flatten()
}

/// The current request's `traceparent` for work it hands on (a queued job), if any.
pub fn current_traceparent() -> Option<String> {
    TRACE.try_with(|t| t.traceparent.clone()).ok().flatten()
}

/// The `traceparent` naming `span` as the parent: its exported context when tracing export is
/// on, otherwise the caller's own header passed through.
pub fn traceparent_of(span: &tracing::Span, incoming: Option<TraceParent>) -> Option<String> {
    let context = span.context();
    let own = context.span().span_context().clone();
    if own.is_valid() {
        return Some(
            TraceParent {
                trace_id: own.trace_id(),
                parent_id: own.span_id(),
                sampled: own.is_sampled(),
            }
            .header_value(),
        );
    }
    incoming.map(|parent| parent.header_value())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_traceparents_parse_and_round_trip() {
        let raw = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parent = TraceParent::parse(raw).unwrap();
        assert!(parent.sampled);
        assert_eq!(
            parent.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent.header_value(), raw);
        assert!(
            TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra")
                .is_some()
        );
    }

    #[test]
    fn malformed_and_zero_traceparents_are_ignored() {
        for raw in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceParent::parse(raw), None, "{raw}");
        }
    }
}
