//! The public HTTP API: routes, the admin-key layer, the OpenAPI 3.1
//! document. The layers every onsale router wears (404/405 problems,
//! metrics, panics, tracing) come from [`platform::router`].

pub mod handlers;

use axum::{
    Json, Router, middleware,
    routing::{get, post},
};
use platform::auth::{AdminKey, require_admin_key};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use crate::booking::Booking;

/// The problem `code` of a request to an admin route without the right
/// `X-Admin-Key`.
pub const ADMIN_KEY_REQUIRED: &str = "admin_key_required";

/// Everything a handler needs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The booking operations.
    pub booking: Booking,
    /// The key of the admin routes (`core.admin_key`).
    pub admin_key: AdminKey,
    /// Renders `/metrics`.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

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

/// The router with every route and middleware. Admin routes (operator and
/// top-up integration) answer 401 [`ADMIN_KEY_REQUIRED`] before anything
/// else runs when `X-Admin-Key` is missing or wrong.
pub fn router(state: AppState) -> Router {
    let admin_only = middleware::from_fn_with_state(state.admin_key.clone(), require_admin_key);
    let router = Router::new()
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
            post(handlers::charge_balance).route_layer(admin_only.clone()),
        )
        .route(
            "/admin/v1/concerts",
            post(handlers::create_concert).route_layer(admin_only),
        );
    platform::router::standard_layers(router.with_state(state))
}

/// The admin key of `settings`, refused with [`ADMIN_KEY_REQUIRED`].
pub fn admin_key(settings: &crate::settings::CoreSettings) -> AdminKey {
    AdminKey::new(settings.admin_key.clone(), ADMIN_KEY_REQUIRED)
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

    /// A router over a database and a waiting room that are never reached:
    /// every request below is answered before either is needed.
    fn offline_router() -> (Router, String) {
        let settings: crate::Settings = platform::settings::load_from(
            crate::settings::LAYERS,
            platform::settings::Environment::Local,
            Some(Default::default()),
        )
        .unwrap();
        let db = crate::db::Db::connect_lazy(&settings.database).unwrap();
        let queue = crate::queue::QueueClient::connect_lazy(
            "http://127.0.0.1:1",
            std::time::Duration::from_millis(100),
        )
        .unwrap();
        let key =
            platform::settings::ExposeSecret::expose_secret(&settings.core.admin_key).to_owned();
        let state = AppState {
            booking: Booking::new(db, queue, std::sync::Arc::new(settings.core.clone())),
            admin_key: admin_key(&settings.core),
            metrics: telemetry::metrics_handle(),
        };
        (router(state), key)
    }

    async fn send(
        router: &Router,
        method: &str,
        path: &str,
        key: Option<&str>,
    ) -> (axum::http::StatusCode, serde_json::Value) {
        use tower::ServiceExt;
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json");
        if let Some(key) = key {
            request = request.header(platform::auth::ADMIN_KEY_HEADER, key);
        }
        let request = request
            .body(axum::body::Body::from("{\"amount\": "))
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn admin_routes_refuse_a_missing_or_wrong_key_before_reading_the_body() {
        let (router, key) = offline_router();
        for (path, given) in [
            ("/admin/v1/concerts", None),
            ("/admin/v1/concerts", Some("wrong-key")),
            ("/v1/users/fan-1/balance/charges", None),
            ("/v1/users/fan-1/balance/charges", Some("wrong-key")),
        ] {
            let (status, body) = send(&router, "POST", path, given).await;
            assert_eq!(status, axum::http::StatusCode::UNAUTHORIZED, "{path}");
            assert_eq!(body["code"], ADMIN_KEY_REQUIRED, "{path}");
        }
        // With the key, the request reaches the handler, whose body
        // extractor refuses the truncated JSON.
        let charge = "/v1/users/fan-1/balance/charges";
        let (status, body) = send(&router, "POST", charge, Some(&key)).await;
        assert_eq!(status, axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], "malformed_json");
    }

    #[tokio::test]
    async fn unknown_paths_and_methods_are_problems_even_on_admin_paths() {
        let (router, _) = offline_router();
        let (status, body) = send(&router, "GET", "/admin/v1/concerts", None).await;
        assert_eq!(status, axum::http::StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["code"], "method_not_allowed");
        let (status, body) = send(&router, "GET", "/v1/nowhere", None).await;
        assert_eq!(status, axum::http::StatusCode::NOT_FOUND);
        assert_eq!(body["code"], "not_found");
    }
}
