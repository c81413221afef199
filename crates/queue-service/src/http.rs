//! HTTP transport: the fan API (`/v1`), the admin API (`/admin/v1`, behind
//! `X-Admin-Key`), probes, `/metrics` and `/openapi.json`.
//!
//! Fan routes sit behind `platform::identity::protect`: the identity token
//! (`Authorization: Bearer`) is verified first, then the per-client rate
//! limit applies (per signed-in fan, else per client address), then the
//! handler takes the fan from [`Fan`]. Status and leave also carry the
//! fan's queue token in [`QUEUE_TOKEN_HEADER`]; it must name the same fan.

use axum::{
    Router,
    body::Bytes,
    extract::{FromRequest, Request, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use platform::{
    auth::{AdminKey, MAX_BEARER_BYTES, require_admin_key},
    identity::{Fan, IdentityVerifier},
    problem::{ApiJson, ApiPath, Problem},
    ratelimit::RateLimiter,
};
use tracing::instrument;

use self::openapi::EventPath;
pub use self::openapi::openapi;
use crate::{
    api::{EnterRequest, Readiness, RoomRequest, RoomStats},
    domain::{EventId, MAX_OPENS_IN_DAYS, MAX_SECONDS, RoomConfig},
    error::ApiError,
    service::{Ticket, WaitingRoom},
};

mod openapi;

/// The header carrying the queue token of a ticket on status polls and
/// leaving (`Onsale-Queue-Token: <queue_token>`); `Authorization` carries
/// the fan's identity token.
pub const QUEUE_TOKEN_HEADER: &str = "onsale-queue-token";

#[derive(Clone)]
struct HttpState {
    room: WaitingRoom,
}

/// Problem code of the 401 for a missing or wrong `X-Admin-Key`.
const ADMIN_KEY_REFUSED: &str = "invalid_admin_key";

/// The whole HTTP router, with the standard layers of every onsale service
/// (404/405 problems, request metrics, panic → 500 problem, tracing). Fan
/// routes verify identity tokens with `verifier` and are limited by
/// `limiter`; admin routes, probes and metrics are neither.
pub(crate) fn router(
    room: WaitingRoom,
    verifier: IdentityVerifier,
    limiter: RateLimiter,
) -> Router {
    let admin_key = AdminKey::new(room.settings.queue.admin_key.clone(), ADMIN_KEY_REFUSED);
    let state = HttpState { room };
    let fan = Router::new()
        .route("/v1/events/{event_id}/queue", post(enter).delete(leave))
        .route("/v1/events/{event_id}/queue/status", get(status));
    let fan = platform::identity::protect(fan, verifier, limiter);
    let admin = Router::new()
        .route(
            "/admin/v1/events/{event_id}/waiting-room",
            put(put_room).get(get_room),
        )
        .route(
            "/admin/v1/events/{event_id}/waiting-room/stats",
            get(room_stats),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            admin_key,
            require_admin_key,
        ));
    let router = Router::new()
        .merge(fan)
        .merge(admin)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json));
    platform::router::standard_layers(router.with_state(state))
}

fn event_id(raw: &str) -> Result<EventId, ApiError> {
    EventId::parse(raw).map_err(ApiError::InvalidEventId)
}

/// The queue token of [`QUEUE_TOKEN_HEADER`], trimmed;
/// [`ApiError::MissingToken`] when it is missing, empty, not visible ASCII
/// or longer than any token this service signs.
fn queue_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(QUEUE_TOKEN_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|token| !token.is_empty() && token.len() <= MAX_BEARER_BYTES)
        .ok_or(ApiError::MissingToken)
}

/// The body of an entry: empty, `null` or a JSON object without members. The fan
/// is the identity token's subject, so a `user_id` (or anything else) is
/// refused with 400 `invalid_request`; text that is not JSON is 400
/// `malformed_json`.
struct EnterBody;

/// Why an entry body other than those [`EnterBody`] takes is refused.
const ENTER_BODY_SHAPE: &str = "the body must be empty or an empty JSON object {}";

impl<S: Send + Sync> FromRequest<S> for EnterBody {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                Problem::new(
                    rejection.status(),
                    "malformed_body",
                    "Malformed request body",
                )
                .detail(rejection.body_text())
                .into_response()
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self);
        }
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|error| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                "Malformed request body",
            )
            .detail(error.to_string())
            .into_response()
        })?;
        if value.is_null() {
            return Ok(Self);
        }
        // serde reads a struct without fields from `[]` too; the documented
        // body is an object.
        if !value.is_object() {
            return Err(ApiError::InvalidRequest(ENTER_BODY_SHAPE).into_response());
        }
        if value.get("user_id").is_some() {
            return Err(ApiError::InvalidRequest(
                "the fan is the identity token's subject: send no user_id (an empty body or {})",
            )
            .into_response());
        }
        serde_json::from_value::<EnterRequest>(value)
            .map(|EnterRequest {}| Self)
            .map_err(|_| ApiError::InvalidRequest(ENTER_BODY_SHAPE).into_response())
    }
}

/// Enter the waiting room as the signed-in fan.
#[utoipa::path(post, path = "/v1/events/{event_id}/queue", request_body(
        content = Option<EnterRequest>, description = "Optional: an empty body or `{}`"),
    params(EventPath),
    security(("identity" = [])),
    responses(
        (status = 201, description = "New place in line", body = Ticket),
        (status = 200, description = "Already in line or active: the same place", body = Ticket),
        (status = 400, description = "`invalid_event_id`; `malformed_json`, or a body that is \
            not empty or `{}` (`invalid_request`, e.g. a `user_id`)"),
        (status = 401, description = "Missing or invalid identity token \
            (`missing_identity_token`, `invalid_identity_token`)"),
        (status = 403, description = "`waiting_room_closed`"),
        (status = 404, description = "`waiting_room_not_found`: no room for this event"),
        (status = 410, description = "`sold_out`: no seat left and no live hold; no place is made"),
        (status = 413, description = "`malformed_body`: a body over axum's 2 MB limit"),
        (status = 429, description = "`rate_limited` (Retry-After, RateLimit-Policy, RateLimit)"),
        (status = 503, description = "`waiting_room_paused`, storage (`unavailable`) or identity \
            provider (`identity_unavailable`) unavailable (Retry-After)"),
    ))]
#[instrument(skip_all, fields(event_id = %raw_event))]
async fn enter(
    State(state): State<HttpState>,
    Fan(fan): Fan,
    ApiPath(raw_event): ApiPath<String>,
    EnterBody: EnterBody,
) -> Result<(StatusCode, ApiJson<Ticket>), ApiError> {
    let event = event_id(&raw_event)?;
    let (ticket, created) = state.room.enter(&event, &fan.subject).await?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, ApiJson(ticket)))
}

/// Poll the signed-in fan's place; also proves the fan is still there.
#[utoipa::path(get, path = "/v1/events/{event_id}/queue/status",
    params(EventPath),
    security(("identity" = [], "queue_token" = [])),
    responses(
        (status = 200, description = "Place in line, or access token once active", body = Ticket),
        (status = 400, description = "`invalid_event_id`"),
        (status = 401, description = "Missing or invalid identity token; missing \
            (`missing_token`), forged (`invalid_token`), expired (`token_expired`) or \
            other-event (`token_event_mismatch`) queue token"),
        (status = 403, description = "`waiting_room_closed`, or the queue token is another \
            fan's (`token_subject_mismatch`)"),
        (status = 404, description = "`waiting_room_not_found`: the room was removed"),
        (status = 410, description = "`not_in_line`: left, abandoned or expired; `sold_out`: \
            no seat left and no live hold (the place is kept while seats may return)"),
        (status = 429, description = "`rate_limited` (Retry-After, RateLimit-Policy, RateLimit)"),
        (status = 503, description = "`waiting_room_paused`, storage (`unavailable`) or identity \
            provider (`identity_unavailable`) unavailable (Retry-After)"),
    ))]
#[instrument(skip_all, fields(event_id = %raw_event))]
async fn status(
    State(state): State<HttpState>,
    Fan(fan): Fan,
    ApiPath(raw_event): ApiPath<String>,
    headers: HeaderMap,
) -> Result<ApiJson<Ticket>, ApiError> {
    let event = event_id(&raw_event)?;
    let token = queue_token(&headers)?;
    Ok(ApiJson(
        state.room.status(&event, token, &fan.subject).await?,
    ))
}

/// The signed-in fan leaves the line or gives up the active slot.
#[utoipa::path(delete, path = "/v1/events/{event_id}/queue",
    params(EventPath),
    security(("identity" = [], "queue_token" = [])),
    responses(
        (status = 204, description = "Left (or was not there)"),
        (status = 400, description = "`invalid_event_id`"),
        (status = 401, description = "Missing or invalid identity token; missing \
            (`missing_token`), forged (`invalid_token`), expired (`token_expired`) or \
            other-event (`token_event_mismatch`) queue token"),
        (status = 403, description = "The queue token is another fan's \
            (`token_subject_mismatch`)"),
        (status = 429, description = "`rate_limited` (Retry-After, RateLimit-Policy, RateLimit)"),
        (status = 503, description = "Storage (`unavailable`) or identity provider \
            (`identity_unavailable`) unavailable (Retry-After)"),
    ))]
#[instrument(skip_all, fields(event_id = %raw_event))]
async fn leave(
    State(state): State<HttpState>,
    Fan(fan): Fan,
    ApiPath(raw_event): ApiPath<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let event = event_id(&raw_event)?;
    let token = queue_token(&headers)?;
    state.room.leave(&event, token, &fan.subject).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create or update an event's waiting room.
#[utoipa::path(put, path = "/admin/v1/events/{event_id}/waiting-room", request_body = RoomRequest,
    params(EventPath),
    security(("admin_key" = [])),
    responses(
        (status = 201, description = "Created", body = RoomConfig),
        (status = 200, description = "Updated", body = RoomConfig),
        (status = 400, description = "`invalid_event_id`; `invalid_room_settings`: out of \
            range; a body that is not such JSON (`malformed_json`, `invalid_body`, \
            `unsupported_content_type`)"),
        (status = 401, description = "`invalid_admin_key`: missing or wrong X-Admin-Key"),
        (status = 409, description = "`room_already_open`: a new `opens_at` after fans were \
            placed in the line"),
        (status = 503, description = "Storage unavailable (`unavailable`, Retry-After)"),
    ))]
#[instrument(skip_all, fields(event_id = %raw_event))]
async fn put_room(
    State(state): State<HttpState>,
    ApiPath(raw_event): ApiPath<String>,
    ApiJson(body): ApiJson<RoomRequest>,
) -> Result<(StatusCode, ApiJson<RoomConfig>), ApiError> {
    let event = event_id(&raw_event)?;
    let defaults = state.room.settings.default_room(body.state);
    if let Some(claim) = body.claim_within_seconds
        && !(1..=MAX_SECONDS).contains(&claim)
    {
        return Err(ApiError::InvalidRoom(format!(
            "claim_within_seconds must be between 1 and {MAX_SECONDS}"
        )));
    }
    let access_ttl_seconds = body
        .access_ttl_seconds
        .unwrap_or(defaults.access_ttl_seconds);
    let config = RoomConfig {
        capacity: body.capacity.unwrap_or(defaults.capacity),
        admit_per_second: body.admit_per_second.unwrap_or(defaults.admit_per_second),
        access_ttl_seconds,
        abandon_after_seconds: body
            .abandon_after_seconds
            .unwrap_or(defaults.abandon_after_seconds),
        // A claim window past the admission's end means "until it lapses":
        // it is cut to the access TTL, given or default.
        claim_within_seconds: body
            .claim_within_seconds
            .unwrap_or(defaults.claim_within_seconds)
            .min(access_ttl_seconds),
        latency_target_ms: body.latency_target_ms.unwrap_or(defaults.latency_target_ms),
        opens_at: body.opens_at,
        state: body.state,
    };
    if let Some(opens_at) = body.opens_at
        && opens_at > chrono::Utc::now() + chrono::Duration::days(MAX_OPENS_IN_DAYS)
    {
        return Err(ApiError::InvalidRoom(format!(
            "opens_at must be at most {MAX_OPENS_IN_DAYS} days ahead"
        )));
    }
    let created = state.room.configure(&event, &config).await?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, ApiJson(config)))
}

/// Read an event's waiting room settings.
#[utoipa::path(get, path = "/admin/v1/events/{event_id}/waiting-room",
    params(EventPath),
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "Settings", body = RoomConfig),
        (status = 400, description = "`invalid_event_id`"),
        (status = 401, description = "`invalid_admin_key`: missing or wrong X-Admin-Key"),
        (status = 404, description = "`waiting_room_not_found`: no room for this event"),
        (status = 503, description = "Storage unavailable (`unavailable`, Retry-After)"),
    ))]
#[instrument(skip_all, fields(event_id = %raw_event))]
async fn get_room(
    State(state): State<HttpState>,
    ApiPath(raw_event): ApiPath<String>,
) -> Result<ApiJson<RoomConfig>, ApiError> {
    let event = event_id(&raw_event)?;
    Ok(ApiJson(state.room.room(&event).await?.config))
}

/// An event's waiting room numbers.
#[utoipa::path(get, path = "/admin/v1/events/{event_id}/waiting-room/stats",
    params(EventPath),
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "Numbers", body = RoomStats),
        (status = 400, description = "`invalid_event_id`"),
        (status = 401, description = "`invalid_admin_key`: missing or wrong X-Admin-Key"),
        (status = 404, description = "`waiting_room_not_found`: no room for this event"),
        (status = 503, description = "Storage unavailable (`unavailable`, Retry-After)"),
    ))]
#[instrument(skip_all, fields(event_id = %raw_event))]
async fn room_stats(
    State(state): State<HttpState>,
    ApiPath(raw_event): ApiPath<String>,
) -> Result<ApiJson<RoomStats>, ApiError> {
    let event = event_id(&raw_event)?;
    let snapshot = state.room.room(&event).await?;
    Ok(ApiJson(RoomStats::new(&event, &snapshot)))
}

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "Alive")))]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: every Redis master answers.
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, description = "Ready", body = Readiness),
    (status = 503, description = "Redis unreachable", body = Readiness),
))]
async fn readyz(State(state): State<HttpState>) -> (StatusCode, ApiJson<Readiness>) {
    let ready = state.room.store.ping().await;
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, ApiJson(Readiness { ready }))
}

async fn metrics() -> Response {
    telemetry::http::render(&telemetry::metrics_handle())
}

async fn openapi_json() -> Response {
    axum::Json(openapi()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::http::header;

    #[test]
    fn queue_tokens_are_read_from_their_own_header_not_from_authorization() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer abc.def.ghi".parse().unwrap());
        assert!(matches!(queue_token(&headers), Err(ApiError::MissingToken)));
        headers.insert(QUEUE_TOKEN_HEADER, "  ".parse().unwrap());
        assert!(matches!(queue_token(&headers), Err(ApiError::MissingToken)));
        headers.insert(QUEUE_TOKEN_HEADER, " q.r.s ".parse().unwrap());
        assert_eq!(queue_token(&headers).unwrap(), "q.r.s");
        let oversized = "q".repeat(MAX_BEARER_BYTES + 1);
        headers.insert(QUEUE_TOKEN_HEADER, oversized.parse().unwrap());
        assert!(matches!(queue_token(&headers), Err(ApiError::MissingToken)));
    }

    #[test]
    fn the_admin_key_is_refused_with_this_services_problem_code() {
        let key = AdminKey::new(
            platform::settings::Secret::from("key".to_owned()),
            ADMIN_KEY_REFUSED,
        );
        let mut headers = HeaderMap::new();
        for wrong in ["ke", "kez"] {
            headers.insert("x-admin-key", wrong.parse().unwrap());
            assert!(!key.admits(&headers), "{wrong}");
        }
        headers.insert("x-admin-key", "key".parse().unwrap());
        assert!(key.admits(&headers));
        let refusal = key.refusal();
        assert_eq!(
            (refusal.status(), refusal.code()),
            (StatusCode::UNAUTHORIZED, "invalid_admin_key")
        );
    }

    #[test]
    fn a_rate_one_step_above_the_maximum_is_read_as_sent_and_refused() {
        let body: RoomRequest =
            serde_json::from_str(r#"{"admit_per_second": 1000000.0000000001, "state": "open"}"#)
                .unwrap();
        let rate = body.admit_per_second.unwrap();
        assert!(rate > crate::domain::MAX_ADMIT_PER_SECOND, "{rate}");
    }
}
