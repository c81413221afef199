//! HTTP transport: the fan API (`/v1`), the admin API (`/admin/v1`, behind
//! `X-Admin-Key`), probes, `/metrics` and `/openapi.json`.

use std::{
    net::{IpAddr, SocketAddr},
    num::NonZeroU32,
    sync::Arc,
};

use axum::{
    Router,
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    state::keyed::DefaultKeyedStateStore,
};
use platform::{
    auth::{AdminKey, require_admin_key},
    problem::{ApiJson, ApiPath},
};
use tracing::instrument;
use utoipa::OpenApi;

use crate::{
    api::{EnterRequest, ExitCounts, Readiness, RoomRequest, RoomStats},
    domain::{EventId, RoomConfig, RoomState, UserId},
    error::ApiError,
    service::{FanStatus, Ticket, WaitingRoom},
    settings::RateLimitSettings,
};

/// Keyed GCRA limiter: one bucket per client address.
pub(crate) type Limiter = RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>;

/// Builds the per-client limiter from settings.
pub(crate) fn limiter(settings: &RateLimitSettings) -> Limiter {
    let per_second = NonZeroU32::new(settings.per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(settings.burst).unwrap_or(NonZeroU32::MIN);
    RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
}

#[derive(Clone)]
struct HttpState {
    room: WaitingRoom,
    limiter: Arc<Limiter>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "onsale queue-service",
        description = "Virtual waiting room: fair line, admission, access tokens."
    ),
    paths(enter, status, leave, put_room, get_room, room_stats, healthz, readyz),
    components(schemas(
        Ticket,
        FanStatus,
        EnterRequest,
        RoomRequest,
        RoomConfig,
        RoomState,
        RoomStats,
        ExitCounts,
        Readiness
    ))
)]
struct ApiDoc;

/// The OpenAPI 3.1 document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Problem code of the 401 for a missing or wrong `X-Admin-Key`.
const ADMIN_KEY_REFUSED: &str = "invalid_admin_key";

/// The whole HTTP router, with the standard layers of every onsale service
/// (404/405 problems, request metrics, panic → 500 problem, tracing).
pub(crate) fn router(room: WaitingRoom, limiter: Arc<Limiter>) -> Router {
    let admin_key = AdminKey::new(room.settings.queue.admin_key.clone(), ADMIN_KEY_REFUSED);
    let state = HttpState { room, limiter };
    let fan = Router::new()
        .route("/v1/events/{event_id}/queue", post(enter).delete(leave))
        .route("/v1/events/{event_id}/queue/status", get(status))
        .route_layer(middleware::from_fn_with_state(state.clone(), rate_limit));
    let admin = Router::new()
        .route(
            "/admin/v1/events/{event_id}/waiting-room",
            put(put_room).get(get_room),
        )
        .route(
            "/admin/v1/events/{event_id}/waiting-room/stats",
            get(room_stats),
        )
        .route_layer(middleware::from_fn_with_state(admin_key, require_admin_key));
    let router = Router::new()
        .merge(fan)
        .merge(admin)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json));
    platform::router::standard_layers(router.with_state(state))
}

fn client_ip(state: &HttpState, request: &Request) -> IpAddr {
    let header_ip = state
        .room
        .settings
        .queue
        .rate_limit
        .client_ip_header
        .as_deref()
        .and_then(|name| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse().ok())
        });
    header_ip.unwrap_or_else(|| {
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(addr)| addr.ip())
    })
}

async fn rate_limit(State(state): State<HttpState>, request: Request, next: Next) -> Response {
    let ip = client_ip(&state, &request);
    match state.limiter.check_key(&ip) {
        Ok(()) => next.run(request).await,
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::RateLimited(wait.as_secs().max(1)).into_response()
        }
    }
}

fn event_id(raw: &str) -> Result<EventId, ApiError> {
    EventId::parse(raw).map_err(ApiError::InvalidEventId)
}

/// The `Authorization: Bearer` token; [`ApiError::MissingToken`] when
/// there is none (see [`platform::auth::bearer`]).
fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    platform::auth::bearer(headers).ok_or(ApiError::MissingToken)
}

/// Enter the waiting room.
#[utoipa::path(post, path = "/v1/events/{event_id}/queue", request_body = EnterRequest,
    params(("event_id" = String, Path, description = "Performance id, [A-Za-z0-9_-]{1,64}")),
    responses(
        (status = 201, description = "New place in line", body = Ticket),
        (status = 200, description = "Already in line or active: the same place", body = Ticket),
        (status = 400, description = "Malformed id or body (problem+json)"),
        (status = 403, description = "Room closed"),
        (status = 404, description = "No room for this event"),
        (status = 429, description = "Rate limited (Retry-After)"),
        (status = 503, description = "Room paused or storage unavailable (Retry-After)"),
    ))]
#[instrument(skip_all, fields(event_id = %raw_event))]
async fn enter(
    State(state): State<HttpState>,
    ApiPath(raw_event): ApiPath<String>,
    ApiJson(body): ApiJson<EnterRequest>,
) -> Result<(StatusCode, ApiJson<Ticket>), ApiError> {
    let event = event_id(&raw_event)?;
    let user = UserId::parse(&body.user_id).map_err(|e| ApiError::InvalidUserId(e.into()))?;
    let (ticket, created) = state.room.enter(&event, &user).await?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, ApiJson(ticket)))
}

/// Poll the fan's place; also proves the fan is still there.
#[utoipa::path(get, path = "/v1/events/{event_id}/queue/status",
    params(("event_id" = String, Path, description = "Performance id")),
    responses(
        (status = 200, description = "Place in line, or access token once active", body = Ticket),
        (status = 401, description = "Missing, forged, expired or other-event token"),
        (status = 403, description = "Room closed"),
        (status = 410, description = "No longer in line (left, abandoned or expired)"),
        (status = 503, description = "Room paused or storage unavailable (Retry-After)"),
    ))]
#[instrument(skip_all, fields(event_id = %raw_event))]
async fn status(
    State(state): State<HttpState>,
    ApiPath(raw_event): ApiPath<String>,
    headers: HeaderMap,
) -> Result<ApiJson<Ticket>, ApiError> {
    let event = event_id(&raw_event)?;
    let token = bearer(&headers)?;
    Ok(ApiJson(state.room.status(&event, token).await?))
}

/// Leave the line or give up the active slot.
#[utoipa::path(delete, path = "/v1/events/{event_id}/queue",
    params(("event_id" = String, Path, description = "Performance id")),
    responses(
        (status = 204, description = "Left (or was not there)"),
        (status = 401, description = "Missing, forged, expired or other-event token"),
    ))]
#[instrument(skip_all, fields(event_id = %raw_event))]
async fn leave(
    State(state): State<HttpState>,
    ApiPath(raw_event): ApiPath<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let event = event_id(&raw_event)?;
    let token = bearer(&headers)?;
    state.room.leave(&event, token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create or update an event's waiting room.
#[utoipa::path(put, path = "/admin/v1/events/{event_id}/waiting-room", request_body = RoomRequest,
    params(("event_id" = String, Path, description = "Performance id")),
    responses(
        (status = 201, description = "Created", body = RoomConfig),
        (status = 200, description = "Updated", body = RoomConfig),
        (status = 400, description = "Settings out of range"),
        (status = 401, description = "Missing or wrong X-Admin-Key"),
    ))]
#[instrument(skip_all, fields(event_id = %raw_event))]
async fn put_room(
    State(state): State<HttpState>,
    ApiPath(raw_event): ApiPath<String>,
    ApiJson(body): ApiJson<RoomRequest>,
) -> Result<(StatusCode, ApiJson<RoomConfig>), ApiError> {
    let event = event_id(&raw_event)?;
    let defaults = state.room.settings.default_room(body.state);
    let config = RoomConfig {
        capacity: body.capacity.unwrap_or(defaults.capacity),
        admit_per_second: body.admit_per_second.unwrap_or(defaults.admit_per_second),
        access_ttl_seconds: body
            .access_ttl_seconds
            .unwrap_or(defaults.access_ttl_seconds),
        abandon_after_seconds: body
            .abandon_after_seconds
            .unwrap_or(defaults.abandon_after_seconds),
        state: body.state,
    };
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
    params(("event_id" = String, Path, description = "Performance id")),
    responses(
        (status = 200, description = "Settings", body = RoomConfig),
        (status = 401, description = "Missing or wrong X-Admin-Key"),
        (status = 404, description = "No room for this event"),
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
    params(("event_id" = String, Path, description = "Performance id")),
    responses(
        (status = 200, description = "Numbers", body = RoomStats),
        (status = 401, description = "Missing or wrong X-Admin-Key"),
        (status = 404, description = "No room for this event"),
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
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let mut headers = HeaderMap::new();
        assert!(matches!(bearer(&headers), Err(ApiError::MissingToken)));
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert!(matches!(bearer(&headers), Err(ApiError::MissingToken)));
        headers.insert(header::AUTHORIZATION, "Bearer abc.def.ghi".parse().unwrap());
        assert_eq!(bearer(&headers).unwrap(), "abc.def.ghi");
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
    fn the_openapi_document_is_3_1_and_lists_the_fan_api() {
        let doc = serde_json::to_value(openapi()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        assert!(doc["paths"]["/v1/events/{event_id}/queue"]["post"].is_object());
        assert!(doc["paths"]["/admin/v1/events/{event_id}/waiting-room/stats"]["get"].is_object());
    }
}
