use std::collections::HashSet;

use opentelemetry::trace::{TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

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
    provider.force_flush().expect("flush");

    let spans = exporter.get_finished_spans().expect("spans");
    let trace_of = |name: &str| -> HashSet<TraceId> {
        spans.iter().filter(|s| s.name == name).map(|s| s.span_context.trace_id()).collect()
    };
    let commands = trace_of("course.v1.CourseCommandService/CreateCourse");
    assert_eq!(commands.len(), 1, "one traced CreateCourse call");
    let trace = *commands.iter().next().expect("trace");
    assert!(
        trace_of("projection.consume").contains(&trace),
        "the consumer continues the command's trace"
    );
    assert!(trace_of("read_model.write").contains(&trace), "so does the read-model write");
    let catalog_call = trace_of("course.v1.CatalogQueryService/GetCourse");
    assert!(!catalog_call.is_empty(), "query RPCs get spans too");
}

#[tokio::test]
async fn metrics_are_served_in_the_prometheus_format() {
    let (command, catalog) = spawn_mesh().await;
    let id = testkit::driver::create_course(&command, Uuid::now_v7(), create_request(0)).await;
    catalog.course_at(&id, 1).await;
    let body = testkit::scrape(catalog.metrics_port).await;
    for metric in [
        "grpc_server_requests_total",
        "grpc_server_request_duration_seconds_bucket",
        "events_appended_total",
        "projection_applied_position",
        "projection_lag_seconds",
    ] {
        assert!(body.contains(metric), "{metric} missing from:\n{body}");
    }
    assert!(body.contains("method=\"/course.v1.CatalogQueryService/GetCourse\""), "{body}");
}
