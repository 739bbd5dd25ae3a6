use std::collections::HashSet;

use opentelemetry::trace::{TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

use tracing_subscriber::layer::SubscriberExt;
use uuid::Uuid;

use crate::helpers::*;

/// The test runs on one thread (tokio's current-thread test runtime), so every task of both
/// services reports to this thread's subscriber, which exports to memory.
#[tokio::test]
async fn a_command_and_its_projection_share_one_trace_across_the_bus() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let (command, catalog) = spawn_mesh().await;
    let id = testkit::driver::create_course(&command, Uuid::now_v7(), create_request(0)).await;
    catalog.course_at(&id, 1).await;

    // The read can answer as soon as Redis holds the course, before the consumer's spans
    // close: flush until they are exported (60 s at most).
    let created = "course.v1.CourseCommandService/CreateCourse";
    let continued = |spans: &Vec<SpanData>| {
        traces(spans, created).iter().next().is_some_and(|trace| {
            ["projection.consume", "read_model.write"]
                .iter()
                .all(|name| traces(spans, name).contains(trace))
        })
    };
    let exported = || {
        provider.force_flush().expect("flush");
        std::future::ready(exporter.get_finished_spans().expect("spans"))
    };
    let spans = testkit::poll_until(WAIT, exported, continued).await;
    let commands = traces(&spans, created);
    assert_eq!(commands.len(), 1, "one traced CreateCourse call");
    let trace = *commands.iter().next().expect("trace");
    let trace_of = |name: &str| traces(&spans, name);
    assert!(
        trace_of("projection.consume").contains(&trace),
        "the consumer continues the command's trace"
    );
    assert!(trace_of("read_model.write").contains(&trace), "so does the read-model write");
    let catalog_call = trace_of("course.v1.CatalogQueryService/GetCourse");
    assert!(!catalog_call.is_empty(), "query RPCs get spans too");
}

/// The traces of the spans named `name`.
fn traces(spans: &[SpanData], name: &str) -> HashSet<TraceId> {
    spans.iter().filter(|s| s.name == name).map(|s| s.span_context.trace_id()).collect()
}

#[tokio::test]
async fn metrics_are_served_in_the_prometheus_format() {
    let (command, catalog) = spawn_mesh().await;
    let id = testkit::driver::create_course(&command, Uuid::now_v7(), create_request(0)).await;
    catalog.course_at(&id, 1).await;
    // The projection's gauges are set after the write a read can already see.
    let wanted = [
        "grpc_server_requests_total",
        "grpc_server_request_duration_seconds_bucket",
        "events_appended_total",
        "projection_applied_position",
        "projection_lag_seconds",
    ];
    let scrape = || testkit::scrape(catalog.metrics_port);
    let body =
        testkit::poll_until(WAIT, scrape, |body: &String| wanted.iter().all(|m| body.contains(m)))
            .await;
    for metric in wanted {
        assert!(body.contains(metric), "{metric} missing from:\n{body}");
    }
    assert!(body.contains("method=\"/course.v1.CatalogQueryService/GetCourse\""), "{body}");
}
