//! W3C trace context: an incoming `traceparent` (with its `tracestate`) is continued by the
//! request's span, and so by everything exported over OTLP, and its trace id is echoed in problem
//! bodies so that a client can hand it to whoever reads the traces.
//!
//! Both headers are read and written by the OpenTelemetry SDK's `TraceContextPropagator`, so the
//! validation rules (and what is forwarded of a vendor's `tracestate`) are the SDK's own.

use std::future::Future;

use actix_web::http::header::{HeaderMap, HeaderName};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The header naming the caller's trace and span.
pub const TRACEPARENT: &str = "traceparent";
/// The header carrying vendors' trace state along with [`TRACEPARENT`].
pub const TRACESTATE: &str = "tracestate";
/// The longest `tracestate` handed on to queued work (what its store holds); the W3C
/// specification asks that at least this much be propagated.
pub const TRACESTATE_KEPT: usize = 512;

/// The request's headers as a carrier the propagator reads.
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// A stored trace context (a queued job's) as a carrier the propagator reads.
struct StoredExtractor<'a> {
    traceparent: &'a str,
    tracestate: Option<&'a str>,
}

impl Extractor for StoredExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => Some(self.traceparent),
            TRACESTATE => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        let mut keys = vec![TRACEPARENT];
        if self.tracestate.is_some() {
            keys.push(TRACESTATE);
        }
        keys
    }
}

/// The remote context `carrier` names, when its `traceparent` is valid. Anything malformed (or an
/// all-zero id, which the W3C specification says to ignore) gives `None`: the work then starts a
/// trace of its own.
fn extract(carrier: &dyn Extractor) -> Option<opentelemetry::Context> {
    // From an empty context, not the thread's current one: the caller's span must be the parent.
    let context =
        TraceContextPropagator::new().extract_with_context(&opentelemetry::Context::new(), carrier);
    context.has_active_span().then_some(context)
}

/// The caller's trace context, if its headers carry a valid `traceparent` (and then its
/// `tracestate` too).
pub fn from_headers(headers: &HeaderMap) -> Option<opentelemetry::Context> {
    // Most requests carry none: skip the propagator's work for them.
    if !headers.contains_key(TRACEPARENT) {
        return None;
    }
    extract(&HeaderExtractor(headers))
}

/// Makes `span` a child of the caller's span (`remote`, from [`from_headers`]), and returns the
/// trace context the request runs under: the span's own when spans are exported, otherwise the
/// caller's passed through (nothing when the caller sent none and export is off).
pub fn continue_trace(
    span: &tracing::Span,
    remote: Option<opentelemetry::Context>,
) -> RequestTrace {
    if let Some(remote) = &remote {
        // An error only when no OpenTelemetry layer is installed; the caller's context is then
        // passed through below.
        let _ = span.set_parent(remote.clone());
    }
    let own = span.context();
    let context = if own.span().span_context().is_valid() {
        own
    } else {
        match remote {
            Some(remote) => remote,
            None => return RequestTrace::default(),
        }
    };
    let mut trace = RequestTrace {
        trace_id: Some(context.span().span_context().trace_id().to_string()),
        ..RequestTrace::default()
    };
    TraceContextPropagator::new().inject_context(&context, &mut trace);
    trace
}

/// Makes `span` a child of a stored trace context (a queued job's `traceparent` and
/// `tracestate`); a malformed one is ignored and the span starts a trace of its own.
pub fn adopt(span: &tracing::Span, traceparent: &str, tracestate: Option<&str>) {
    if let Some(remote) = extract(&StoredExtractor {
        traceparent,
        tracestate,
    }) {
        let _ = span.set_parent(remote);
    }
}

/// Gives `span`'s exported span a name known only once its work has run (the route template of
/// a request). Recording `otel.name` cannot do it then: the span has started by that time, and
/// only its attributes and status still follow recorded fields.
/// `name` is called only when the span is exported.
pub fn rename(span: &tracing::Span, name: impl FnOnce() -> String) {
    let context = span.context();
    let exported = context.span();
    if exported.span_context().is_valid() {
        exported.update_name(name());
    }
}

/// The trace context of the request being handled.
#[derive(Debug, Clone, Default)]
pub struct RequestTrace {
    /// The trace id, if known.
    pub trace_id: Option<String>,
    /// The `traceparent` to hand on to work the request starts (a queued job), if any.
    pub traceparent: Option<String>,
    /// The `tracestate` that goes with [`RequestTrace::traceparent`], if the trace has one (cut
    /// to [`TRACESTATE_KEPT`]).
    pub tracestate: Option<String>,
}

impl Injector for RequestTrace {
    fn set(&mut self, key: &str, value: String) {
        match key {
            TRACEPARENT => self.traceparent = Some(value),
            // The propagator writes an empty state when there is none.
            TRACESTATE if !value.is_empty() => self.tracestate = Some(cut(value)),
            _ => {}
        }
    }
}

/// `tracestate` cut to [`TRACESTATE_KEPT`] characters by dropping whole entries from the right,
/// as the W3C specification says to (entries on the left are the most recent).
fn cut(mut tracestate: String) -> String {
    while tracestate.len() > TRACESTATE_KEPT {
        match tracestate.rfind(',') {
            Some(comma) => tracestate.truncate(comma),
            None => tracestate.clear(),
        }
    }
    tracestate
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

/// The current request's trace context for work it hands on (a queued job), if any.
pub fn current_context() -> Option<strata_ports::TraceContext> {
    TRACE
        .try_with(|t| {
            t.traceparent
                .clone()
                .map(|traceparent| strata_ports::TraceContext {
                    traceparent,
                    tracestate: t.tracestate.clone().filter(|state| !state.is_empty()),
                })
        })
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;
    use opentelemetry::trace::TraceId;

    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const STATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn a_valid_traceparent_is_continued_with_its_tracestate() {
        let remote = from_headers(&headers(&[(TRACEPARENT, PARENT), (TRACESTATE, STATE)]));
        let remote = remote.expect("a valid traceparent is extracted");
        let span = remote.span();
        let context = span.span_context();
        assert_eq!(
            context.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert!(context.is_sampled() && context.is_remote());
        assert_eq!(context.trace_state().header(), STATE);
    }

    #[test]
    fn without_an_exporter_the_callers_context_is_passed_through_whole() {
        let remote = from_headers(&headers(&[(TRACEPARENT, PARENT), (TRACESTATE, STATE)]));
        let trace = continue_trace(&tracing::Span::none(), remote);
        assert_eq!(
            trace.trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace.traceparent.as_deref(), Some(PARENT));
        assert_eq!(trace.tracestate.as_deref(), Some(STATE));

        let untraced = continue_trace(&tracing::Span::none(), None);
        assert_eq!(untraced.trace_id, None);
        assert_eq!(untraced.traceparent, None);
    }

    #[test]
    fn a_long_tracestate_handed_on_loses_whole_entries_from_the_right() {
        let entries: Vec<String> = (0..40)
            .map(|i| format!("vendor{i:02}=value{i:02}"))
            .collect();
        let mut trace = RequestTrace::default();
        trace.set(TRACESTATE, entries.join(","));
        let kept = trace.tracestate.unwrap();
        assert!(kept.len() <= TRACESTATE_KEPT, "{}", kept.len());
        assert!(entries.join(",").starts_with(&kept));
        assert!(kept.ends_with(&entries[kept.split(',').count() - 1]));
        assert_eq!(cut("a=".to_owned() + &"x".repeat(600)), "");
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
            "not a traceparent at all",
        ] {
            let headers = headers(&[(TRACEPARENT, raw), (TRACESTATE, STATE)]);
            assert!(from_headers(&headers).is_none(), "{raw}");
        }
        // A later version may append fields, which a version-00 reader skips.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra";
        assert!(from_headers(&headers(&[(TRACEPARENT, later)])).is_some());
    }
}
