//! Who a request acts for, as the handlers see it: the waiting room's
//! access token of `Onsale-Access-Token`, and [`Caller`], the operator or
//! a verified fan, for the routes both may read.
//!
//! The fan's identity itself is [`platform::identity::Fan`], verified by
//! the `authenticate` layer that [`platform::identity::protect`] puts in
//! front of every fan route.

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, request::Parts},
    response::Response,
};
use platform::{
    auth::MAX_BEARER_BYTES,
    identity::{Fan, Identity},
};

use super::AppState;
use crate::{booking::Viewer, error::ApiError};

/// The header that carries the waiting room's access token on a hold or a
/// payment (the bare token, no scheme). The fan's identity token stays in
/// `Authorization`.
pub const ACCESS_TOKEN_HEADER: &str = "onsale-access-token";

/// The access token of [`ACCESS_TOKEN_HEADER`], trimmed.
///
/// # Errors
/// 401 `missing_access_token` when the header is absent, not visible
/// ASCII, empty or longer than [`MAX_BEARER_BYTES`].
pub fn access_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(ACCESS_TOKEN_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|token| !token.is_empty() && token.len() <= MAX_BEARER_BYTES)
        .ok_or_else(|| {
            ApiError::unauthorized(
                "missing_access_token",
                "the Onsale-Access-Token header must carry the waiting room's access token",
            )
        })
}

/// Who reads a fan's data: the operator (a valid `X-Admin-Key`), or else
/// the verified fan of the identity token. Rejected like
/// [`platform::identity::Fan`] when neither is there.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The request carries the admin key.
    Operator,
    /// A verified fan.
    Fan(Identity),
}

impl Caller {
    /// The booking layer's view of this caller.
    pub fn viewer(&self) -> Viewer<'_> {
        match self {
            Self::Operator => Viewer::Operator,
            Self::Fan(identity) => Viewer::Fan(&identity.subject),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if state.admin_key.admits(&parts.headers) {
            return Ok(Self::Operator);
        }
        let Fan(identity) = Fan::from_request_parts(parts, state).await?;
        Ok(Self::Fan(identity))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderValue, StatusCode};

    use super::*;

    #[test]
    fn a_missing_empty_or_oversized_access_token_is_401_missing_access_token() {
        let oversized = "a".repeat(MAX_BEARER_BYTES + 1);
        for value in ["", "   ", oversized.as_str()] {
            let mut headers = HeaderMap::new();
            headers.insert(ACCESS_TOKEN_HEADER, HeaderValue::from_str(value).unwrap());
            let error = access_token(&headers).unwrap_err();
            assert_eq!(error.status(), StatusCode::UNAUTHORIZED, "{value:?}");
        }
        assert!(matches!(
            access_token(&HeaderMap::new()),
            Err(ApiError::Unauthorized {
                code: "missing_access_token",
                ..
            })
        ));
    }

    #[test]
    fn the_access_token_is_read_bare_and_trimmed() {
        let mut headers = HeaderMap::new();
        headers.insert(ACCESS_TOKEN_HEADER, HeaderValue::from_static(" a.b.c "));
        assert_eq!(access_token(&headers).unwrap(), "a.b.c");
    }
}
