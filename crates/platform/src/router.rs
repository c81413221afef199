//! The router layers every onsale HTTP service wears, so both answer the
//! same way for what no handler covers: unknown paths (404), wrong methods
//! (405), panics (500), all as RFC 9457 problems, with request metrics and
//! a trace span around everything.

use axum::{
    Router,
    http::StatusCode,
    middleware,
    response::{IntoResponse, Response},
};
use tower_http::{catch_panic::CatchPanicLayer, trace::TraceLayer};

use crate::problem::{Problem, not_found_fallback};

/// 405 problem for a known path with a method it does not serve.
pub async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method not allowed",
    )
    .detail("this path does not support the request method")
}

/// A panic became a response: log it, and tell the client nothing more
/// than "internal" (the panic text may hold request data).
fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a handler panicked");
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "Internal error",
    )
    .into_response()
}

/// Adds, from the inside out: the 404 and 405 fallbacks, request metrics
/// ([`telemetry::http::track_metrics`]), panic → problem+json, and a
/// `TraceLayer` span. Call it last, on the router with its state.
pub fn standard_layers(router: Router) -> Router {
    router
        .fallback(not_found_fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(telemetry::http::track_metrics))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TraceLayer::new_for_http())
}
