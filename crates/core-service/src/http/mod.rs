//! The public HTTP API: routes, who may call them, the OpenAPI 3.1
//! document. The layers every onsale router wears (404/405 problems,
//! metrics, panics, tracing) come from [`platform::router`].
//!
//! Who may call what:
//! - fan routes (holds, payments, a fan's reservations and balance) need
//!   the fan's identity token (`Authorization: Bearer`), verified by
//!   [`platform::identity::protect`], which also limits each fan's request
//!   rate; holds and payments also need the waiting room's access token
//!   ([`access::ACCESS_TOKEN_HEADER`]), issued to the same fan. The
//!   operator may read any fan's reservations and balance with
//!   `X-Admin-Key`;
//! - catalog reads are public, rate-limited per client address;
//! - admin routes (the operator API and balance top-ups) need `X-Admin-Key`;
//! - health, readiness, metrics and the OpenAPI document are open.

pub mod access;
pub mod coupons;
pub mod handlers;
pub mod openapi;
pub mod rankings;
pub mod seatmap;

use axum::{
    Json, Router, middleware,
    routing::{get, post},
};
use platform::{
    auth::{AdminKey, require_admin_key},
    identity::{IdentityVerifier, protect},
    ratelimit::{RateLimiter, limit},
};
use utoipa::OpenApi;

pub use self::openapi::ApiDoc;
use crate::booking::Booking;

/// The problem `code` of a request to an admin route without the right
/// `X-Admin-Key`.
pub const ADMIN_KEY_REQUIRED: &str = "admin_key_required";

/// Everything a handler needs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The booking operations.
    pub booking: Booking,
    /// First-come coupon campaigns and claims.
    pub coupons: crate::coupons::Coupons,
    /// The popular-concert ranking.
    pub ranking: crate::ranking::Ranking,
    /// The key of the admin routes (`core.admin_key`).
    pub admin_key: AdminKey,
    /// Verifies fans' identity tokens (`[identity]`).
    pub identity: IdentityVerifier,
    /// Request buckets per fan, or per client address
    /// (`[core.rate_limit]`).
    pub limiter: RateLimiter,
    /// Renders `/metrics`.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The router with every route and middleware, as the module docs say.
/// Admin routes answer 401 [`ADMIN_KEY_REQUIRED`] before anything else runs
/// when `X-Admin-Key` is missing or wrong; rate-limited routes answer 429
/// `rate_limited` before their handler runs.
pub fn router(state: AppState) -> Router {
    let admin_only = middleware::from_fn_with_state(state.admin_key.clone(), require_admin_key);
    let ops = Router::new()
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics_endpoint))
        .route("/openapi.json", get(openapi_json));
    // Without `authenticate` in front, the limiter keys on the address.
    let catalog = Router::new()
        .route("/v1/concerts", get(handlers::list_concerts))
        .route("/v1/concerts/{id}", get(handlers::get_concert))
        .route("/v1/performances/{id}/seats", get(seatmap::get_seats))
        .route("/v1/performances/{id}/layout", get(seatmap::get_layout))
        .route(
            "/v1/performances/{id}/availability",
            get(seatmap::get_availability),
        )
        .route("/v1/rankings/concerts", get(rankings::concert_ranking))
        .route_layer(middleware::from_fn_with_state(state.limiter.clone(), limit));
    let fan = Router::new()
        .route("/v1/reservations", post(handlers::create_reservation))
        .route(
            "/v1/reservations/{id}",
            get(handlers::get_reservation).delete(handlers::delete_reservation),
        )
        .route("/v1/payments", post(handlers::create_payment))
        .route("/v1/users/{id}/balance", get(handlers::get_balance))
        .route(
            "/v1/coupon-campaigns/{id}/claims",
            post(coupons::claim_coupon),
        )
        .route("/v1/coupons", get(coupons::list_coupons));
    let fan = protect(fan, state.identity.clone(), state.limiter.clone());
    let admin = Router::new()
        .route(
            "/v1/users/{id}/balance/charges",
            post(handlers::charge_balance).route_layer(admin_only.clone()),
        )
        .route(
            "/admin/v1/concerts",
            post(handlers::create_concert).route_layer(admin_only.clone()),
        )
        .route(
            "/admin/v1/coupon-campaigns",
            post(coupons::create_campaign).route_layer(admin_only.clone()),
        )
        .route(
            "/admin/v1/coupon-campaigns/{id}",
            get(coupons::get_campaign).route_layer(admin_only.clone()),
        )
        .route(
            "/admin/v1/coupon-campaigns/{id}/reconciliation",
            post(coupons::reconcile_campaign).route_layer(admin_only),
        );
    let router = ops.merge(catalog).merge(fan).merge(admin);
    platform::router::standard_layers(router.with_state(state))
}

/// The admin key of `settings`, refused with [`ADMIN_KEY_REQUIRED`].
pub fn admin_key(settings: &crate::settings::CoreSettings) -> AdminKey {
    AdminKey::new(settings.admin_key.clone(), ADMIN_KEY_REQUIRED)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A router over a database and a waiting room that are never reached:
    /// every request below is answered before either is needed.
    /// The identity provider, database and waiting room are never reached
    /// either (the local issuer's keys are fetched on the first well-formed
    /// token only).
    fn offline_router() -> (Router, String) {
        offline_router_with(Default::default())
    }

    /// [`offline_router`] with `vars` (`ONSALE__…` overrides).
    fn offline_router_with(vars: Vec<(String, String)>) -> (Router, String) {
        let settings: crate::Settings = platform::settings::load_from(
            crate::settings::LAYERS,
            platform::settings::Environment::Local,
            Some(vars),
        )
        .unwrap();
        let db = crate::db::Db::connect_lazy(&settings.database).unwrap();
        let queue = crate::queue::QueueClient::connect_lazy(
            "http://127.0.0.1:1",
            &settings.grpc.tls,
            std::time::Duration::from_millis(100),
            settings.core.queue_service_key.clone(),
        )
        .unwrap();
        let key =
            platform::settings::ExposeSecret::expose_secret(&settings.core.admin_key).to_owned();
        let redis = std::sync::Arc::new(
            platform::redis_pool::RedisPool::new(
                &settings.redis,
                crate::metrics::REDIS_CHECKOUT_SECONDS,
            )
            .unwrap(),
        );
        let state = AppState {
            coupons: crate::coupons::Coupons::new(
                db.clone(),
                redis.clone(),
                String::new(),
                settings.coupons.clone(),
            ),
            ranking: crate::ranking::Ranking::new(
                db.clone(),
                redis,
                String::new(),
                settings.ranking.clone(),
            ),
            booking: Booking::new(db, queue, std::sync::Arc::new(settings.core.clone())),
            admin_key: admin_key(&settings.core),
            identity: IdentityVerifier::new(settings.identity.clone()).unwrap(),
            limiter: RateLimiter::new(&settings.core.rate_limit),
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
        send_with(router, method, path, key, None).await
    }

    async fn send_with(
        router: &Router,
        method: &str,
        path: &str,
        key: Option<&str>,
        bearer: Option<&str>,
    ) -> (axum::http::StatusCode, serde_json::Value) {
        use tower::ServiceExt;
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json");
        if let Some(key) = key {
            request = request.header(platform::auth::ADMIN_KEY_HEADER, key);
        }
        if let Some(token) = bearer {
            request = request.header("authorization", format!("Bearer {token}"));
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

    #[tokio::test]
    async fn fan_routes_refuse_a_missing_or_malformed_identity_token_before_anything_else() {
        let (router, _) = offline_router();
        let id = uuid::Uuid::now_v7();
        let reservation = format!("/v1/reservations/{id}");
        for (method, path) in [
            ("POST", "/v1/reservations"),
            ("POST", "/v1/payments"),
            ("GET", reservation.as_str()),
            ("DELETE", reservation.as_str()),
            ("GET", "/v1/users/fan-1/balance"),
        ] {
            let (status, body) = send(&router, method, path, None).await;
            assert_eq!(
                status,
                axum::http::StatusCode::UNAUTHORIZED,
                "{method} {path}"
            );
            assert_eq!(body["code"], "missing_identity_token", "{method} {path}");
            let (status, body) = send_with(&router, method, path, None, Some("not-a-jwt")).await;
            assert_eq!(
                status,
                axum::http::StatusCode::UNAUTHORIZED,
                "{method} {path}"
            );
            assert_eq!(body["code"], "invalid_identity_token", "{method} {path}");
        }
    }

    #[tokio::test]
    async fn a_wrong_admin_key_does_not_stand_in_for_an_identity() {
        let (router, _) = offline_router();
        let path = "/v1/users/fan-1/balance";
        let (status, body) = send(&router, "GET", path, Some("wrong-key")).await;
        assert_eq!(status, axum::http::StatusCode::UNAUTHORIZED);
        assert_eq!(body["code"], "missing_identity_token");
    }

    #[tokio::test]
    async fn a_client_past_its_burst_gets_429_with_retry_after() {
        let vars = [
            ("ONSALE__CORE__RATE_LIMIT__PER_SECOND", "1"),
            ("ONSALE__CORE__RATE_LIMIT__BURST", "2"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .to_vec();
        let (router, _) = offline_router_with(vars);
        // Unsigned requests share the client address's bucket.
        for _ in 0..2 {
            let (status, _) = send(&router, "POST", "/v1/reservations", None).await;
            assert_eq!(status, axum::http::StatusCode::UNAUTHORIZED);
        }
        let (status, body) = send(&router, "POST", "/v1/reservations", None).await;
        assert_eq!(status, axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(body["code"], "rate_limited");
    }
}
