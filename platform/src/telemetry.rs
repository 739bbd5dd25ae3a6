//! Logging and tracing: `tracing` everywhere, formatted as text or JSON, and exported to an
//! OpenTelemetry collector over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. The standard `OTEL_*` variables configure it
//! (`OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`, ...); with no
//! endpoint nothing is exported and nothing fails.

use std::future::Future;
use std::process::ExitCode;
use std::sync::OnceLock;

use opentelemetry::global;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs logging (and tracing export when configured) for a process named
/// `course-platform`. Prefer [`init_service`].
pub fn init(format: LogFormat) {
    init_service("course-platform", format)
}

/// Installs the global subscriber for `service`: `RUST_LOG` filters (default `info`), `format`
/// shapes the lines, and spans go to OTLP when an endpoint is configured. Safe to call twice
/// (tests): later calls are no-ops.
pub fn init_service(service: &str, format: LogFormat) {
    global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
    };
    let otel = otlp_provider(service).map(|provider| {
        let tracer = provider.tracer("course-platform");
        let _ = PROVIDER.set(provider.clone());
        global::set_tracer_provider(provider);
        tracing_opentelemetry::layer().with_tracer(tracer)
    });
    let _ = tracing_subscriber::registry().with(filter).with(fmt).with(otel).try_init();
}

fn otlp_provider(service: &str) -> Option<SdkTracerProvider> {
    let configured = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|var| std::env::var(var).is_ok_and(|v| !v.trim().is_empty()));
    if !configured || std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v == "true") {
        return None;
    }
    let exporter = match opentelemetry_otlp::SpanExporter::builder().with_tonic().build() {
        Ok(exporter) => exporter,
        Err(err) => {
            eprintln!("OTLP exporter not started ({err}); traces are not exported");
            return None;
        }
    };
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service.to_owned());
    }
    Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build(),
    )
}

/// Flushes and stops trace export; call once before the process exits.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(err) = provider.shutdown()
    {
        eprintln!("flushing traces failed: {err}");
    }
}

/// The life of a service process: installs telemetry for `service`, runs `work`, flushes
/// traces, and turns the outcome into the exit code (an error is printed with its causes).
pub async fn run_process(
    service: &str,
    format: LogFormat,
    work: impl Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    init_service(service, format);
    let result = work.await;
    shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{service}: {err:#}");
            ExitCode::FAILURE
        }
    }
}
