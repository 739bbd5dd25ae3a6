//! W3C trace context across process boundaries: gRPC metadata, event metadata, AMQP headers.

use std::collections::HashMap;

use opentelemetry::Context;
use opentelemetry::global;
use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct Map<'a>(&'a mut HashMap<String, String>);

impl Injector for Map<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct Single<'a>(&'a str);

impl Extractor for Single<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }
    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

/// Makes `span` a child of the trace context in HTTP/2 (gRPC) headers, if any.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    let context = global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
    let _ = span.set_parent(context);
}

/// Makes `span` a child of a `traceparent` value (from event metadata or AMQP headers).
pub fn set_parent_from_traceparent(span: &tracing::Span, traceparent: &str) {
    if traceparent.is_empty() {
        return;
    }
    let context: Context = global::get_text_map_propagator(|p| p.extract(&Single(traceparent)));
    let _ = span.set_parent(context);
}

/// The `traceparent` of `span`, when tracing is active.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let mut map = HashMap::new();
    global::get_text_map_propagator(|p| p.inject_context(&context, &mut Map(&mut map)));
    map.remove("traceparent")
}
