//! The public HTTP API: routes, middleware and the OpenAPI 3.1 document.

pub mod handlers;
pub mod state;

use axum::{
    Json, Router,
    http::StatusCode,
    middleware,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use platform::problem::{Problem, not_found_fallback};
use tower_http::{catch_panic::CatchPanicLayer, trace::TraceLayer};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
};

pub use state::AppState;

/// The OpenAPI document served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(title = "onsale core-service", description = "Concerts, seat holds, payments and balances."),
    paths(
        handlers::healthz,
        handlers::readyz,
        handlers::list_concerts,
        handlers::get_concert,
        handlers::get_seats,
        handlers::create_reservation,
        handlers::get_reservation,
        handlers::delete_reservation,
        handlers::create_payment,
        handlers::charge_balance,
        handlers::get_balance,
        handlers::create_concert,
    ),
    modifiers(&Security),
    tags(
        (name = "catalog", description = "Concerts, performances and seat maps"),
        (name = "reservations", description = "Seat holds"),
        (name = "payments", description = "Idempotent payments from the prepaid balance"),
        (name = "balance", description = "Prepaid KRW balances"),
        (name = "admin", description = "Operator API (X-Admin-Key)"),
        (name = "ops", description = "Health"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "access_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "admin_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Admin-Key"))),
        );
    }
}

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method not allowed",
    )
    .detail("this path does not support the request method")
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a handler panicked");
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "Internal error",
    )
    .into_response()
}

/// The router with every route and middleware.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics_endpoint))
        .route("/openapi.json", get(openapi_json))
        .route("/v1/concerts", get(handlers::list_concerts))
        .route("/v1/concerts/{id}", get(handlers::get_concert))
        .route("/v1/performances/{id}/seats", get(handlers::get_seats))
        .route("/v1/reservations", post(handlers::create_reservation))
        .route(
            "/v1/reservations/{id}",
            get(handlers::get_reservation).delete(handlers::delete_reservation),
        )
        .route("/v1/payments", post(handlers::create_payment))
        .route("/v1/users/{id}/balance", get(handlers::get_balance))
        .route(
            "/v1/users/{id}/balance/charges",
            post(handlers::charge_balance),
        )
        .route("/admin/v1/concerts", post(handlers::create_concert))
        .fallback(not_found_fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(middleware::from_fn(telemetry::http::track_metrics))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TraceLayer::new_for_http())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_is_3_1_and_lists_the_public_paths() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        for path in [
            "/v1/reservations",
            "/v1/payments",
            "/v1/performances/{id}/seats",
            "/v1/users/{id}/balance/charges",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path} missing");
        }
        assert!(doc["components"]["schemas"].get("Reservation").is_some());
    }
}
