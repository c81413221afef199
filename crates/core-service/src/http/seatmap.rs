//! The seat-map reads: the legacy full map, the static layout and the
//! availability, each a precompressed [`Encoded`] body answered with its
//! entity tag, or 304 when the client's `If-None-Match` names it.
//!
//! `Cache-Control` lets a CDN absorb the load: the layout never changes
//! (a day); availability and the full map change with every hold, so they
//! live `seat_cache_ms` at most, one second (`max-age=1`), and may be
//! served a second stale while the CDN revalidates.

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use platform::problem::{ApiPath, ApiQuery};
use serde::Deserialize;
use tracing::instrument;
use utoipa::IntoParams;

use super::{AppState, handlers::parsed};
use crate::{
    api::{
        SeatMap,
        seatmap::{Availability, SeatLayout},
    },
    domain::PerformanceId,
    error::ApiError,
    metrics,
    seatmap::{Coding, Encoded},
};

/// Caching of bodies that change with every hold.
const LIVE: &str = "public, max-age=1, stale-while-revalidate=1";
/// Caching of the layout, which never changes for a performance.
const STATIC: &str = "public, max-age=86400";
/// Longest `since` accepted: a version is 16 hex digits.
const MAX_VERSION_CHARS: usize = 16;

/// `body` as the answer to a request with `headers`: 304 when
/// `If-None-Match` names its version, else 200 in the best coding the
/// client accepts.
fn conditional(headers: &HeaderMap, body: &Encoded, cache_control: &'static str) -> Response {
    let coding = Coding::negotiate(
        headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    );
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| body.matches(tags));
    let mut response = if not_modified {
        metrics::seat_map_response("not_modified");
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        metrics::seat_map_response("full");
        let mut response = body.body(coding).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(encoding) = coding.header() {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        response
    };
    let headers = response.headers_mut();
    if let Ok(tag) = HeaderValue::from_str(&body.etag(coding)) {
        headers.insert(header::ETAG, tag);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    response
}

/// `GET /v1/performances/{id}/seats`: every seat with its availability (at
/// most `seat_cache_ms` stale; a lapsed hold shows as available). Prefer
/// `/layout` plus `/availability`, which are far smaller.
#[utoipa::path(get, path = "/v1/performances/{id}/seats", tag = "catalog", params(("id" = i64, Path, minimum = 1)), responses(
    (status = 200, body = SeatMap, description = "gzip or br per Accept-Encoding; strong ETag"),
    (status = 304, description = "If-None-Match names the current version"),
    (status = 400, description = "Malformed or non-positive id (`malformed_path`, `invalid_request`)"),
    (status = 404, description = "Unknown performance"),
    (status = 429, description = "`rate_limited` per client address (Retry-After, RateLimit-Policy, RateLimit)"),
    (status = 503, description = "Database unavailable (Retry-After)")))]
#[instrument(skip_all, fields(performance_id = id))]
pub async fn get_seats(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parsed(PerformanceId::new, id)?;
    let body = state.booking.seat_maps().seat_map(id).await?;
    Ok(conditional(&headers, &body, LIVE))
}

/// `GET /v1/performances/{id}/layout`: sections, rows, grades, prices and
/// seat ids, as runs; it never changes, so it is cached for a day.
#[utoipa::path(get, path = "/v1/performances/{id}/layout", tag = "catalog", params(("id" = i64, Path, minimum = 1)), responses(
    (status = 200, body = SeatLayout, description = "gzip or br per Accept-Encoding; strong ETag"),
    (status = 304, description = "If-None-Match names it"),
    (status = 400, description = "Malformed or non-positive id (`malformed_path`, `invalid_request`)"),
    (status = 404, description = "Unknown performance"),
    (status = 429, description = "`rate_limited` per client address (Retry-After, RateLimit-Policy, RateLimit)"),
    (status = 503, description = "Database unavailable (Retry-After)")))]
#[instrument(skip_all, fields(performance_id = id))]
pub async fn get_layout(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parsed(PerformanceId::new, id)?;
    let body = state.booking.seat_maps().layout(id).await?;
    Ok(conditional(&headers, &body, STATIC))
}

/// Query of `GET /v1/performances/{id}/availability`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityQuery {
    /// A version the client has: the answer is the delta from it when the
    /// server still knows it (16 hex digits).
    pub since: Option<String>,
}

/// `GET /v1/performances/{id}/availability[?since=<version>]`: which seats
/// can be held, as a bitmap by seat index, or the seats freed and taken
/// since `since`; at most `seat_cache_ms` old.
#[utoipa::path(get, path = "/v1/performances/{id}/availability", tag = "catalog",
    params(("id" = i64, Path, minimum = 1), AvailabilityQuery), responses(
    (status = 200, body = Availability, description = "gzip or br per Accept-Encoding; strong ETag (the version)"),
    (status = 304, description = "If-None-Match names the current version"),
    (status = 400, description = "Malformed id or `since` (`invalid_request`)"),
    (status = 404, description = "Unknown performance"),
    (status = 429, description = "`rate_limited` per client address (Retry-After, RateLimit-Policy, RateLimit)"),
    (status = 503, description = "Database unavailable (Retry-After)")))]
#[instrument(skip_all, fields(performance_id = id))]
pub async fn get_availability(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<AvailabilityQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parsed(PerformanceId::new, id)?;
    if let Some(since) = &query.since
        && (since.is_empty()
            || since.len() > MAX_VERSION_CHARS
            || !since.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(ApiError::BadRequest(
            "since must be a version: 1-16 hex digits".into(),
        ));
    }
    let body = state
        .booking
        .seat_maps()
        .availability(id, query.since.as_deref())
        .await?;
    Ok(conditional(&headers, &body, LIVE))
}
