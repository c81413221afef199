//! Observability for every onsale process: JSON logs through `tracing`,
//! Prometheus metrics through the `metrics` facade, and OTLP trace export when
//! an endpoint is configured. One call to [`init`] sets all three up and
//! returns a [`TelemetryGuard`] that flushes traces when dropped.
//!
//! # Layout
//! - [`init`], [`TelemetrySettings`], [`TelemetryGuard`]: process set-up.
//! - [`http`]: an axum middleware that records request duration by route and
//!   status class, and the `/metrics` handler.
//! - [`propagation`]: W3C trace context in and out of string maps (Kafka
//!   headers, gRPC metadata).
//!
//! Metric names carry their unit (`_seconds`, `_total`), as Prometheus naming
//! conventions ask. Histograms whose name ends in `_seconds` get latency
//! buckets from 0.5 ms to 10 s, fine enough to read a p99 of a few ms.

pub mod http;
pub mod propagation;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::Deserialize;
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

/// Histogram buckets in seconds for every metric whose name ends in `_seconds`.
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2,
    0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0,
];

/// How logs are written to stdout.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line, for log shippers (the default).
    #[default]
    Json,
    /// Human-readable lines, for a terminal.
    Pretty,
}

/// The `telemetry` section of every service's settings.
#[derive(Debug, Clone, Deserialize)]
pub struct TelemetrySettings {
    /// `tracing_subscriber::EnvFilter` directives, e.g. `info,queue_service=debug`.
    /// `RUST_LOG`, when set, wins.
    #[serde(default = "default_filter")]
    pub log_filter: String,
    /// Output format of logs.
    #[serde(default)]
    pub log_format: LogFormat,
    /// OTLP/gRPC collector endpoint such as `http://127.0.0.1:4317`; traces are
    /// exported only when set.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_filter: default_filter(),
            log_format: LogFormat::Json,
            otlp_endpoint: None,
        }
    }
}

fn default_filter() -> String {
    "info".to_owned()
}

/// Failure to set telemetry up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built (bad endpoint).
    #[error("building the OTLP exporter failed")]
    Otlp(#[from] opentelemetry_otlp::ExporterBuildError),
    /// The log filter directives do not parse.
    #[error("invalid log filter {0:?}")]
    Filter(String),
}

/// Keeps the trace pipeline alive; dropping it flushes pending spans.
#[derive(Debug)]
pub struct TelemetryGuard {
    tracer: Option<SdkTracerProvider>,
    metrics: PrometheusHandle,
}

impl TelemetryGuard {
    /// The Prometheus handle that renders `/metrics`.
    pub fn metrics(&self) -> PrometheusHandle {
        self.metrics.clone()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.tracer.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("flushing traces failed: {error}");
        }
    }
}

/// Installs the process-wide Prometheus recorder, once, and returns its
/// handle. Later calls (several services in one test process) share it.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS_SECONDS)
                .expect("the bucket list is a non-empty constant")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (a test harness); the
            // handle then renders only what was recorded through ours, which
            // is the best available.
            let _ = metrics::set_global_recorder(recorder);
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .expect("spawning a thread at start-up");
            handle
        })
        .clone()
}

/// Sets up logs, metrics and (when configured) trace export for `service`.
///
/// Call once in `main`. Tests may call it repeatedly: the subscriber is only
/// installed the first time. Must run inside a Tokio runtime when
/// `otlp_endpoint` is set, because the batch exporter spawns a task.
///
/// # Errors
/// [`TelemetryError`] when the filter or the OTLP endpoint is invalid.
pub fn init(
    service: &'static str,
    settings: &TelemetrySettings,
) -> Result<TelemetryGuard, TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) => EnvFilter::try_new(directives.clone())
            .map_err(|_| TelemetryError::Filter(directives))?,
        Err(_) => EnvFilter::try_new(&settings.log_filter)
            .map_err(|_| TelemetryError::Filter(settings.log_filter.clone()))?,
    };
    let tracer = match &settings.otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()?;
            let resource = opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build();
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource)
                    .build(),
            )
        }
        None => None,
    };
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let fmt = match settings.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().compact().boxed(),
    };
    let otel = tracer.as_ref().map(|provider| {
        opentelemetry::global::set_tracer_provider(provider.clone());
        tracing_opentelemetry::layer().with_tracer(provider.tracer(service))
    });
    // A second init in the same process (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    Ok(TelemetryGuard {
        tracer,
        metrics: metrics_handle(),
    })
}
