//! HTTP server metrics and the `/metrics` endpoint.
//!
//! Recorded by [`track_metrics`]:
//! - `http_server_request_duration_seconds{route,method,status_class}`
//!   (histogram);
//! - `http_server_requests_total{route,method,status_class,outcome}`, where
//!   `outcome` is `ok`, `business` (402, 409, 410: the sale said no, which is
//!   normal under contention and must not page anyone), `client_error`,
//!   `rejected` (429, 503: load shedding) or `server_error`.
//!
//! Routes are axum's matched path templates (`/v1/events/{event_id}/queue`),
//! never raw paths, so label cardinality stays bounded.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use metrics_exporter_prometheus::PrometheusHandle;

/// The status class label: `2xx`, `3xx`, `4xx` or `5xx`.
pub fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The outcome label described in the module docs.
pub fn outcome(status: StatusCode) -> &'static str {
    match status.as_u16() {
        402 | 409 | 410 => "business",
        429 | 503 => "rejected",
        400..=499 => "client_error",
        500..=599 => "server_error",
        _ => "ok",
    }
}

/// Axum middleware (`axum::middleware::from_fn(track_metrics)`) recording the
/// metrics in the module docs. Unmatched paths are labelled `unmatched`.
pub async fn track_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    let class = status_class(status);
    metrics::histogram!(
        "http_server_request_duration_seconds",
        "route" => route.clone(), "method" => method.clone(), "status_class" => class
    )
    .record(started.elapsed().as_secs_f64());
    metrics::counter!(
        "http_server_requests_total",
        "route" => route, "method" => method, "status_class" => class, "outcome" => outcome(status)
    )
    .increment(1);
    response
}

/// Renders the Prometheus text exposition format.
pub fn render(handle: &PrometheusHandle) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn business_rejections_are_not_counted_as_errors() {
        assert_eq!(outcome(StatusCode::CONFLICT), "business");
        assert_eq!(outcome(StatusCode::GONE), "business");
        assert_eq!(outcome(StatusCode::PAYMENT_REQUIRED), "business");
        assert_eq!(outcome(StatusCode::TOO_MANY_REQUESTS), "rejected");
        assert_eq!(outcome(StatusCode::BAD_REQUEST), "client_error");
        assert_eq!(outcome(StatusCode::INTERNAL_SERVER_ERROR), "server_error");
        assert_eq!(outcome(StatusCode::CREATED), "ok");
    }

    #[test]
    fn status_classes_cover_every_range() {
        assert_eq!(status_class(StatusCode::OK), "2xx");
        assert_eq!(status_class(StatusCode::NOT_MODIFIED), "3xx");
        assert_eq!(status_class(StatusCode::NOT_FOUND), "4xx");
        assert_eq!(status_class(StatusCode::SERVICE_UNAVAILABLE), "5xx");
    }
}
