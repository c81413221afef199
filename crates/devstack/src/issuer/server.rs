//! The issuer's HTTP endpoints.

use axum::{
    Form, Json, Router,
    extract::{FromRequest, Request, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::json;

use super::{DEFAULT_AUDIENCE, DEFAULT_TTL_SECONDS, Issuer};

/// What `POST /token` takes, as JSON or as a form.
#[derive(Deserialize)]
struct TokenRequest {
    sub: String,
    #[serde(default)]
    ttl_seconds: Option<u64>,
    #[serde(default)]
    audience: Option<String>,
}

pub(super) fn router(issuer: Issuer) -> Router {
    Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(|State(issuer): State<Issuer>| async move { Json(issuer.discovery()) }),
        )
        .route(
            "/jwks.json",
            get(|State(issuer): State<Issuer>| async move { Json(issuer.jwks()) }),
        )
        .route("/token", post(token))
        .with_state(issuer)
}

async fn token(State(issuer): State<Issuer>, request: Request) -> Response {
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    let parsed = if is_form {
        Form::<TokenRequest>::from_request(request, &())
            .await
            .map(|Form(body)| body)
            .map_err(|e| e.body_text())
    } else {
        Json::<TokenRequest>::from_request(request, &())
            .await
            .map(|Json(body)| body)
            .map_err(|e| e.body_text())
    };
    let minted = parsed.and_then(|body| {
        let ttl = body.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS);
        let audience = body.audience.as_deref().unwrap_or(DEFAULT_AUDIENCE);
        issuer
            .mint(&body.sub, ttl, audience)
            .map(|token| (token, ttl))
            .map_err(|e| e.to_string())
    });
    match minted {
        Ok((token, ttl)) => Json(json!({
            "id_token": token,
            "token_type": "Bearer",
            "expires_in": ttl,
        }))
        .into_response(),
        // The error shape of an OAuth 2.0 token endpoint (RFC 6749 §5.2).
        Err(description) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_request", "error_description": description})),
        )
            .into_response(),
    }
}
