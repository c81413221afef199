//! Identity on HTTP routes: a middleware that verifies the bearer identity
//! token once per request, the [`Fan`] extractor that hands the verified
//! fan to a handler, and [`protect`], which puts identity and the rate
//! limit on a router in the right order.
//!
//! The middleware never rejects by itself: it records the outcome, so the
//! rate limiter that runs after it can key on the verified fan (and on the
//! client address when there is none), and a flood of bad tokens is limited
//! like any other traffic before a handler refuses it.

use axum::{
    Router,
    extract::{FromRequestParts, Request, State},
    http::{HeaderValue, StatusCode, header, request::Parts},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};

use super::{Identity, IdentityError, IdentityVerifier};
use crate::{
    auth::bearer,
    problem::Problem,
    ratelimit::{self, RateLimiter},
};

/// Seconds a client is told to wait when the provider's keys are
/// unavailable: long enough for a refetch interval to pass.
const UNAVAILABLE_RETRY_SECONDS: u64 = 5;

/// What [`authenticate`] found, kept in the request's extensions.
#[derive(Debug, Clone)]
pub(crate) struct Verified(pub(crate) Result<Identity, IdentityError>);

/// Verifies the request's `Authorization: Bearer` identity token (if any)
/// with `verifier` and records the outcome for [`Fan`] and the rate
/// limiter. Use as
/// `route_layer(middleware::from_fn_with_state(verifier, authenticate))`,
/// or through [`protect`].
pub async fn authenticate(
    State(verifier): State<IdentityVerifier>,
    mut request: Request,
    next: Next,
) -> Response {
    let outcome = match bearer(request.headers()) {
        Some(token) => verifier.verify(token).await,
        None => Err(IdentityError::Missing),
    };
    if let Err(IdentityError::Unavailable(reason)) = &outcome {
        tracing::warn!(%reason, "identity provider keys unavailable");
    }
    request.extensions_mut().insert(Verified(outcome));
    next.run(request).await
}

/// The fan a request acts for: the verified identity token's subject.
///
/// Rejections are RFC 9457 problems: 401 `missing_identity_token`, 401
/// `invalid_identity_token` (the detail says which rule the token broke;
/// with `WWW-Authenticate: Bearer error="invalid_token"`, RFC 6750 §3), 503
/// `identity_unavailable` with `Retry-After`. A route without
/// [`authenticate`] in front of it answers 401 `missing_identity_token`.
#[derive(Debug, Clone)]
pub struct Fan(pub Identity);

impl<S: Send + Sync> FromRequestParts<S> for Fan {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Verified>() {
            Some(Verified(Ok(identity))) => Ok(Self(identity.clone())),
            Some(Verified(Err(error))) => Err(rejection(error)),
            None => Err(rejection(&IdentityError::Missing)),
        }
    }
}

/// The verified fan of a request that went through [`authenticate`].
pub(crate) fn verified_fan(request: &Request) -> Option<&Identity> {
    match request.extensions().get::<Verified>() {
        Some(Verified(Ok(identity))) => Some(identity),
        _ => None,
    }
}

/// The problem answered for a refused identity token.
#[must_use]
pub fn rejection(error: &IdentityError) -> Response {
    match error {
        IdentityError::Missing => Problem::new(
            StatusCode::UNAUTHORIZED,
            "missing_identity_token",
            "Sign-in required",
        )
        .detail("Authorization: Bearer <identity token> is required")
        .into_response(),
        IdentityError::Unavailable(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "identity_unavailable",
            "Sign-in cannot be checked right now",
        )
        .detail("the identity provider's keys are unavailable; try again shortly")
        .retry_after(UNAVAILABLE_RETRY_SECONDS)
        .into_response(),
        other => {
            let mut response = Problem::new(
                StatusCode::UNAUTHORIZED,
                "invalid_identity_token",
                "Invalid identity token",
            )
            .detail(other.to_string())
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            response
        }
    }
}

/// `router` with identity and the rate limit on every route it has so far:
/// [`authenticate`] runs first, then [`ratelimit::limit`] (keyed on the
/// verified fan, or the client address), then the handler.
pub fn protect<S>(router: Router<S>, verifier: IdentityVerifier, limiter: RateLimiter) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    // Layers added later run earlier.
    router
        .route_layer(middleware::from_fn_with_state(limiter, ratelimit::limit))
        .route_layer(middleware::from_fn_with_state(verifier, authenticate))
}
