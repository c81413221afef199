//! W3C trace context (`traceparent`, `tracestate`) carried in string maps, so
//! a trace follows a payment from the HTTP request through the outbox and
//! Kafka into the consumer.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct MapInjector<'a>(&'a mut HashMap<String, String>);

impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct MapExtractor<'a>(&'a HashMap<String, String>);

impl Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The current span's trace context as W3C headers. Empty when no trace
/// pipeline is active.
pub fn inject_current() -> HashMap<String, String> {
    let mut headers = HashMap::new();
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut MapInjector(&mut headers));
    });
    headers
}

/// Makes `span` a child of the trace context found in `headers`, if any.
pub fn set_parent(span: &tracing::Span, headers: &HashMap<String, String>) {
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&MapExtractor(headers))
    });
    // Fails only when the span is disabled; then there is nothing to link.
    let _ = span.set_parent(parent);
}
