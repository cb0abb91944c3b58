//! Logging and tracing: JSON lines (production, tests) or human-readable (development), filtered by
//! `STRATA_LOG`; spans exported over OTLP (HTTP/protobuf) when `OTEL_EXPORTER_OTLP_ENDPOINT` is
//! set, and no exporter at all otherwise. Each subcommand exports as a service of its own
//! (`strata-api`, `strata-worker`, …) unless `OTEL_SERVICE_NAME` names it, as the OpenTelemetry
//! specification has that variable win.
//!
//! Secrets never reach a log line by construction: passwords are `Password` (redacted `Debug`),
//! configuration secrets are `SecretString`, and no code logs headers or request bodies.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::resource::{EnvResourceDetector, ResourceDetector as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::LogFormat;

/// The variable that turns span export on (the OpenTelemetry SDK's own name for it).
pub const OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The variable naming the exported service, over the subcommand's own name.
pub const SERVICE_NAME_VARIABLE: &str = "OTEL_SERVICE_NAME";
/// The resource attribute naming the service.
const SERVICE_NAME: &str = "service.name";

/// What the process runs, which names it in the traces it exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `strata serve`.
    Api,
    /// `strata worker`.
    Worker,
    /// `strata migrate`.
    Migrate,
    /// `strata admin`.
    Admin,
}

impl Service {
    /// The `service.name` it exports as.
    pub fn name(self) -> &'static str {
        match self {
            Service::Api => "strata-api",
            Service::Worker => "strata-worker",
            Service::Migrate => "strata-migrate",
            Service::Admin => "strata-admin",
        }
    }
}

/// Flushes exported spans when dropped; keep it alive for the process's life.
#[must_use = "dropping the guard at once would stop span export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("strata: flushing spans at exit failed: {error}");
        }
    }
}

/// [`init_for`] the API.
pub fn init<W>(filter: &str, format: LogFormat, sink: W) -> TelemetryGuard
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    init_for(Service::Api, filter, format, sink)
}

/// Installs the global subscriber writing to `sink`, with OTLP export as `service` when the
/// endpoint variable is set; a second call is a no-op (tests share a process).
pub fn init_for<W>(service: Service, filter: &str, format: LogFormat, sink: W) -> TelemetryGuard
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    install(filter, format, sink, otlp_provider(service))
}

/// Installs the global subscriber writing to `sink`, exporting spans through `provider` when
/// there is one (tests pass an in-memory exporter's, to read what OTLP would receive); a second
/// call is a no-op.
pub fn install<W>(
    filter: &str,
    format: LogFormat,
    sink: W,
    provider: Option<SdkTracerProvider>,
) -> TelemetryGuard
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(sink)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .compact()
            .with_writer(sink)
            .with_filter(filter)
            .boxed(),
    };
    // Spans are exported at info and above whatever the log filter says: a quiet log
    // (`STRATA_LOG=warn`) must not empty the traces.
    let spans = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("strata"))
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
            .boxed()
    });
    let installed = tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init()
        .is_ok();
    TelemetryGuard {
        provider: provider.filter(|_| installed),
    }
}

/// The tracer provider exporting to the configured endpoint, or `None` when export is off (or
/// cannot be set up, which is reported and otherwise ignored: tracing must not stop the API).
fn otlp_provider(service: Service) -> Option<SdkTracerProvider> {
    let endpoint = std::env::var(OTLP_ENDPOINT).ok()?;
    if endpoint.trim().is_empty() {
        return None;
    }
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => exporter,
        Err(error) => {
            eprintln!("strata: {OTLP_ENDPOINT}={endpoint}: cannot export spans: {error}");
            return None;
        }
    };
    Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource(service))
            .build(),
    )
}

/// The resource spans are exported under: `service`'s name unless the environment names the
/// service (`OTEL_SERVICE_NAME`, or `service.name` in `OTEL_RESOURCE_ATTRIBUTES`), the version,
/// and whatever else `OTEL_RESOURCE_ATTRIBUTES` sets (the SDK's detectors read both variables).
pub fn resource(service: Service) -> Resource {
    let builder = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
        "service.version",
        env!("CARGO_PKG_VERSION"),
    ));
    let named_by_environment = std::env::var(SERVICE_NAME_VARIABLE)
        .is_ok_and(|name| !name.is_empty())
        || EnvResourceDetector::new()
            .detect()
            .get(&opentelemetry::Key::new(SERVICE_NAME))
            .is_some();
    if named_by_environment {
        builder.build()
    } else {
        builder.with_service_name(service.name()).build()
    }
}
