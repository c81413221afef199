//! Request authentication shared by both services: the bearer token of
//! `Authorization`, constant-time comparison of secrets, and the one admin
//! mechanism (an `X-Admin-Key` route layer).

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{
    problem::Problem,
    settings::{ExposeSecret, Secret},
};

/// Longest bearer token accepted, in bytes. Every token onsale issues or
/// accepts is far shorter; the cap bounds the work an attacker can cause.
pub const MAX_BEARER_BYTES: usize = 4_096;

/// The header that carries the admin key.
pub const ADMIN_KEY_HEADER: &str = "x-admin-key";

/// The token of `Authorization: Bearer <token>`: the scheme matched without
/// regard to case (RFC 9110 §11.1), the token trimmed.
///
/// Returns `None` when the header is missing, not visible ASCII, of another
/// scheme, empty, or longer than [`MAX_BEARER_BYTES`]; each service turns
/// that into its own 401 problem.
#[must_use]
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.len() <= MAX_BEARER_BYTES)
        .then_some(token)
}

/// Compares two byte strings without an early exit on the first differing
/// byte, so response time does not reveal how much of a secret was right.
/// A length difference is not hidden (the secret's length is not secret).
#[must_use]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The admin key of a service and the problem it answers when a request
/// lacks it. Cheap to clone; use it with [`require_admin_key`].
#[derive(Clone)]
pub struct AdminKey {
    key: Arc<Secret>,
    /// The stable problem `code` of the 401 (each service keeps its own).
    code: &'static str,
}

impl std::fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminKey")
            .field("key", &"[redacted]")
            .field("code", &self.code)
            .finish()
    }
}

impl AdminKey {
    /// An admin key whose refusal is a 401 problem with `code`.
    #[must_use]
    pub fn new(key: Secret, code: &'static str) -> Self {
        Self {
            key: Arc::new(key),
            code,
        }
    }

    /// Whether `headers` carry this key in `X-Admin-Key`.
    #[must_use]
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let given = headers
            .get(ADMIN_KEY_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        constant_time_eq(given, self.key.expose_secret().as_bytes())
    }

    /// The 401 problem for a request without the key.
    #[must_use]
    pub fn refusal(&self) -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            self.code,
            "Missing or wrong admin key",
        )
        .detail("a valid X-Admin-Key header is required")
    }
}

/// Route layer that lets through only requests with the admin key. It runs
/// before any extractor, so a request without the key is 401 whatever its
/// body or path. Use as
/// `route_layer(axum::middleware::from_fn_with_state(key, require_admin_key))`.
pub async fn require_admin_key(
    State(key): State<AdminKey>,
    request: Request,
    next: Next,
) -> Response {
    if key.admits(request.headers()) {
        next.run(request).await
    } else {
        key.refusal().into_response()
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    use super::*;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn bearer_tokens_are_read_whatever_the_case_of_the_scheme() {
        assert_eq!(bearer(&with_authorization("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&with_authorization("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(&with_authorization("BEARER abc")), Some("abc"));
    }

    #[test]
    fn other_schemes_empty_and_oversized_tokens_are_refused() {
        assert_eq!(bearer(&HeaderMap::new()), None);
        assert_eq!(bearer(&with_authorization("Basic abc")), None);
        assert_eq!(bearer(&with_authorization("Bearer ")), None);
        assert_eq!(bearer(&with_authorization("Bearer")), None);
        let long = format!("Bearer {}", "a".repeat(MAX_BEARER_BYTES + 1));
        assert_eq!(bearer(&with_authorization(&long)), None);
        let longest = format!("Bearer {}", "a".repeat(MAX_BEARER_BYTES));
        assert!(bearer(&with_authorization(&longest)).is_some());
    }

    #[test]
    fn the_admin_key_admits_only_the_exact_key() {
        let key = AdminKey::new(Secret::from("s3cret".to_owned()), "admin_key_required");
        let mut headers = HeaderMap::new();
        assert!(!key.admits(&headers));
        headers.insert(ADMIN_KEY_HEADER, HeaderValue::from_static("s3cre"));
        assert!(!key.admits(&headers));
        headers.insert(ADMIN_KEY_HEADER, HeaderValue::from_static("s3cret"));
        assert!(key.admits(&headers));
        assert!(!format!("{key:?}").contains("s3cret"));
    }

    proptest! {
        #[test]
        fn constant_time_eq_agrees_with_equality(a in proptest::collection::vec(any::<u8>(), 0..40),
                                                 b in proptest::collection::vec(any::<u8>(), 0..40)) {
            prop_assert_eq!(constant_time_eq(&a, &b), a == b);
            prop_assert!(constant_time_eq(&a, &a));
        }
    }
}
