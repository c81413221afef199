//! Request handlers. Each parses its input into domain types, calls
//! [`crate::store`] and returns JSON or an [`ApiError`].

use std::{collections::BTreeSet, time::Duration};

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use platform::problem::{ApiJson, ApiPath, ApiQuery};
use serde::Deserialize;
use tracing::instrument;
use utoipa::IntoParams;
use uuid::Uuid;

use super::state::{Admin, AppState};
use crate::{
    domain::{ConcertId, IdempotencyKey, PerformanceId, SeatId, UserId},
    error::ApiError,
    metrics,
    model::{
        Balance, ChargeRequest, Concert, ConcertCreated, ConcertPage, CreatePayment,
        CreateReservation, LedgerEntry, NewConcert, Payment, Readiness, Reservation, SeatMap,
    },
    store::{
        admin, balance, catalog,
        holds::{self, HoldOutcome},
        payments::{self, PaymentOutcome, PaymentRequest},
    },
};

/// Longest accepted access token, in bytes.
const MAX_TOKEN_BYTES: usize = 4_096;
/// Hard cap of seats in one request, whatever the performance allows.
const MAX_SEATS_PER_REQUEST: usize = 50;

/// The bearer token of `Authorization`.
fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let missing = || {
        ApiError::unauthorized(
            "missing_access_token",
            "Authorization: Bearer <access_token> is required",
        )
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(missing)?
        .to_str()
        .map_err(|_| missing())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(missing)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(missing());
    }
    Ok(token)
}

fn positive<T>(
    parse: impl FnOnce(i64) -> Result<T, crate::domain::ParseError>,
    raw: i64,
) -> Result<T, ApiError> {
    parse(raw).map_err(|e| ApiError::BadRequest(e.0))
}

/// `GET /healthz`: the process is alive.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "Alive")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// `GET /readyz`: the database answers (within 1 s).
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, description = "Ready", body = Readiness),
    (status = 503, description = "Database unreachable", body = Readiness)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let database = state.db.ping(Duration::from_secs(1)).await;
    let status = if database {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Readiness { database })).into_response()
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics_endpoint(State(state): State<AppState>) -> Response {
    telemetry::http::render(&state.metrics)
}

/// Paging of `GET /v1/concerts`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ConcertQuery {
    /// Return concerts with an id greater than this (default 0).
    pub after: Option<i64>,
    /// Page size, 1–100 (default 20).
    pub limit: Option<u64>,
}

/// `GET /v1/concerts`: concerts by id, with their performances.
#[utoipa::path(get, path = "/v1/concerts", tag = "catalog", params(ConcertQuery), responses(
    (status = 200, body = ConcertPage), (status = 400, description = "Bad paging")))]
#[instrument(skip_all)]
pub async fn list_concerts(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ConcertQuery>,
) -> Result<Json<ConcertPage>, ApiError> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be 1-100".into()));
    }
    let after = query.after.unwrap_or(0).max(0);
    Ok(Json(catalog::list(&state.db, after, limit).await?))
}

/// `GET /v1/concerts/{id}`: one concert with seat counts per performance.
#[utoipa::path(get, path = "/v1/concerts/{id}", tag = "catalog", params(("id" = i64, Path)), responses(
    (status = 200, body = Concert), (status = 404, description = "Unknown concert")))]
#[instrument(skip_all, fields(concert_id = id))]
pub async fn get_concert(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Concert>, ApiError> {
    let id = positive(ConcertId::new, id)?;
    Ok(Json(catalog::get(&state.db, id).await?))
}

/// `GET /v1/performances/{id}/seats`: the seat map (≤ 1 s stale; a
/// lapsed hold shows as available).
#[utoipa::path(get, path = "/v1/performances/{id}/seats", tag = "catalog", params(("id" = i64, Path)), responses(
    (status = 200, body = SeatMap), (status = 404, description = "Unknown performance")))]
#[instrument(skip_all, fields(performance_id = id))]
pub async fn get_seats(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    let id = positive(PerformanceId::new, id)?;
    let map = state.seat_map(id).await?;
    let mut response = Json(&*map).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=1"));
    Ok(response)
}

/// `POST /v1/reservations`: hold seats, all or nothing, for `hold_ttl`.
#[utoipa::path(post, path = "/v1/reservations", tag = "reservations", request_body = CreateReservation,
    security(("access_token" = [])),
    responses(
        (status = 201, body = Reservation, description = "Held"),
        (status = 400, description = "Malformed body"),
        (status = 401, description = "Missing or invalid access token"),
        (status = 403, description = "Token of another performance, or sale not open"),
        (status = 404, description = "Unknown performance"),
        (status = 409, description = "A seat is taken; `seats_available` in the problem"),
        (status = 422, description = "Too many, duplicate or unknown seats"),
        (status = 503, description = "Database or queue-service unavailable")))]
#[instrument(skip_all, fields(performance_id = body.performance_id.get(), seats = body.seat_ids.len(), user_id))]
pub async fn create_reservation(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateReservation>,
) -> Result<Response, ApiError> {
    let result = hold(&state, &headers, body).await;
    metrics::reservation(match &result {
        Ok(_) => "held",
        Err(ApiError::SeatTaken { .. }) => "seat_taken",
        Err(ApiError::TooManySeats { .. }) => "too_many_seats",
        Err(e) if e.status().is_server_error() => "error",
        Err(_) => "rejected",
    });
    let reservation = result?;
    let location = format!("/v1/reservations/{}", reservation.reservation_id);
    let mut response = (StatusCode::CREATED, Json(reservation)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

async fn hold(
    state: &AppState,
    headers: &HeaderMap,
    body: CreateReservation,
) -> Result<Reservation, ApiError> {
    let token = bearer(headers)?;
    if body.seat_ids.is_empty() {
        return Err(ApiError::unprocessable(
            "no_seats",
            "seat_ids must not be empty",
        ));
    }
    if body.seat_ids.len() > MAX_SEATS_PER_REQUEST {
        return Err(ApiError::TooManySeats {
            max: MAX_SEATS_PER_REQUEST as i32,
        });
    }
    let seats: BTreeSet<SeatId> = body.seat_ids.iter().copied().collect();
    if seats.len() != body.seat_ids.len() {
        return Err(ApiError::unprocessable(
            "duplicate_seats",
            "seat_ids must not repeat",
        ));
    }
    let user = state.queue.verify(body.performance_id, token).await?;
    tracing::Span::current().record("user_id", user.as_str());
    let rules = state.sale_rules(body.performance_id).await?;
    if seats.len() > rules.max_seats_per_order as usize {
        return Err(ApiError::TooManySeats {
            max: rules.max_seats_per_order,
        });
    }
    if chrono::Utc::now() < rules.sale_opens_at {
        return Err(ApiError::forbidden(
            "sale_not_open",
            "the sale of this performance has not opened yet",
        ));
    }
    let seats: Vec<SeatId> = seats.into_iter().collect();
    match holds::hold(
        &state.db,
        &user,
        body.performance_id,
        &seats,
        state.core.hold_ttl(),
    )
    .await?
    {
        HoldOutcome::Held(reservation) => {
            state.seats.invalidate(body.performance_id);
            Ok(reservation)
        }
        HoldOutcome::Taken => Err(ApiError::SeatTaken {
            seats_available: state.seats_available(body.performance_id).await?,
        }),
    }
}

/// `GET /v1/reservations/{id}`: a reservation by its (unguessable) id.
#[utoipa::path(get, path = "/v1/reservations/{id}", tag = "reservations", params(("id" = Uuid, Path)), responses(
    (status = 200, body = Reservation), (status = 400, description = "Malformed id"),
    (status = 404, description = "Unknown reservation")))]
#[instrument(skip_all, fields(reservation_id = %id))]
pub async fn get_reservation(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Reservation>, ApiError> {
    Ok(Json(holds::get(&state.db, id).await?))
}

/// `DELETE /v1/reservations/{id}`: release one's own hold (204).
#[utoipa::path(delete, path = "/v1/reservations/{id}", tag = "reservations", params(("id" = Uuid, Path)),
    security(("access_token" = [])),
    responses(
        (status = 204, description = "Released (or already ended)"),
        (status = 401, description = "Missing or invalid access token"),
        (status = 403, description = "Another user's reservation"),
        (status = 404, description = "Unknown reservation"),
        (status = 409, description = "Already paid, or being paid")))]
#[instrument(skip_all, fields(reservation_id = %id, user_id))]
pub async fn delete_reservation(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    let token = bearer(&headers)?;
    let header = holds::header(&state.db, id).await?;
    let performance = positive(PerformanceId::new, header.performance_id)?;
    let user = state.queue.verify(performance, token).await?;
    tracing::Span::current().record("user_id", user.as_str());
    holds::release(&state.db, &user, id).await?;
    state.seats.invalidate(performance);
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/payments`: pay a held reservation from the balance.
#[utoipa::path(post, path = "/v1/payments", tag = "payments", request_body = CreatePayment,
    security(("access_token" = [])),
    params(("Idempotency-Key" = String, Header, description = "1-255 visible ASCII characters, unique per payment")),
    responses(
        (status = 201, body = Payment, description = "Paid, or the replay of an earlier success with the same key"),
        (status = 400, description = "Malformed body or Idempotency-Key"),
        (status = 401, description = "Missing or invalid access token"),
        (status = 402, description = "Insufficient balance; nothing changed"),
        (status = 403, description = "Another user's reservation, or `access_completed`: a new key from a session whose purchase already completed"),
        (status = 404, description = "Unknown reservation"),
        (status = 409, description = "Same key in flight (Retry-After), already paid, or cancelled"),
        (status = 410, description = "Hold expired; nothing charged"),
        (status = 422, description = "Key reused for another reservation"),
        (status = 503, description = "Database or queue-service unavailable")))]
#[instrument(skip_all, fields(reservation_id = %body.reservation_id, user_id))]
pub async fn create_payment(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreatePayment>,
) -> Result<Response, ApiError> {
    let result = pay(&state, &headers, &body).await;
    metrics::payment(match &result {
        Ok(PaymentOutcome::Completed(_)) => "completed",
        Ok(PaymentOutcome::Replayed(_)) => "replayed",
        Err(ApiError::PaymentInProgress) => "in_progress",
        Err(ApiError::InsufficientBalance { .. }) => "insufficient_balance",
        Err(ApiError::HoldExpired) => "hold_expired",
        Err(e) if e.status().is_server_error() => "error",
        Err(_) => "rejected",
    });
    Ok(match result? {
        PaymentOutcome::Completed(payment) => (StatusCode::CREATED, Json(payment)).into_response(),
        PaymentOutcome::Replayed(payment) => {
            let mut response = (StatusCode::CREATED, Json(payment)).into_response();
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            response
        }
    })
}

async fn pay(
    state: &AppState,
    headers: &HeaderMap,
    body: &CreatePayment,
) -> Result<PaymentOutcome, ApiError> {
    let token = bearer(headers)?;
    let key = headers
        .get("idempotency-key")
        .ok_or_else(|| ApiError::BadRequest("the Idempotency-Key header is required".into()))?
        .to_str()
        .map_err(|_| ApiError::BadRequest("Idempotency-Key must be visible ASCII".into()))
        .and_then(|raw| IdempotencyKey::parse(raw).map_err(|e| ApiError::BadRequest(e.0)))?;
    let header = holds::header(&state.db, body.reservation_id).await?;
    let performance = positive(PerformanceId::new, header.performance_id)?;
    let access = state.queue.verify_for_replay(performance, token).await?;
    tracing::Span::current().record("user_id", access.user.as_str());
    let request = PaymentRequest {
        user: &access.user,
        key: &key,
        reservation_id: body.reservation_id,
        lease_seconds: state.core.idempotency_lease_seconds,
    };
    if access.completed {
        // The slot is gone because this fan's purchase completed: answer a
        // retry of a key already used, never start a new payment.
        return payments::replay(&state.db, &request).await;
    }
    let outcome = payments::pay(&state.db, request).await?;
    if matches!(outcome, PaymentOutcome::Completed(_)) {
        state.seats.invalidate(performance);
    }
    Ok(outcome)
}

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw).map_err(|e| ApiError::BadRequest(e.0))
}

/// `POST /v1/users/{id}/balance/charges`: add KRW to a prepaid balance.
/// Called by the top-up integration, so it needs `X-Admin-Key`.
#[utoipa::path(post, path = "/v1/users/{id}/balance/charges", tag = "balance", params(("id" = String, Path)),
    request_body = ChargeRequest, security(("admin_key" = [])),
    responses(
        (status = 201, body = LedgerEntry),
        (status = 400, description = "Malformed id or amount (zero, negative, not an integer, beyond i64)"),
        (status = 401, description = "Missing admin key"),
        (status = 422, description = "Balance would overflow")))]
#[instrument(skip_all, fields(user_id = %id))]
pub async fn charge_balance(
    State(state): State<AppState>,
    _admin: Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ChargeRequest>,
) -> Result<(StatusCode, Json<LedgerEntry>), ApiError> {
    let user = user_id(&id)?;
    Ok((
        StatusCode::CREATED,
        Json(balance::charge(&state.db, &user, body.amount).await?),
    ))
}

/// `GET /v1/users/{id}/balance`: the balance and recent ledger entries.
#[utoipa::path(get, path = "/v1/users/{id}/balance", tag = "balance", params(("id" = String, Path)), responses(
    (status = 200, body = Balance), (status = 400, description = "Malformed id"),
    (status = 404, description = "User never charged")))]
#[instrument(skip_all, fields(user_id = %id))]
pub async fn get_balance(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Balance>, ApiError> {
    let user = user_id(&id)?;
    Ok(Json(
        balance::get(&state.db, &user, state.core.recent_ledger_entries).await?,
    ))
}

/// `POST /admin/v1/concerts`: create a concert, its performances and seat
/// maps in one transaction.
#[utoipa::path(post, path = "/admin/v1/concerts", tag = "admin", request_body = NewConcert,
    security(("admin_key" = [])),
    responses(
        (status = 201, body = ConcertCreated),
        (status = 400, description = "Malformed body"),
        (status = 401, description = "Missing admin key"),
        (status = 422, description = "Invalid seat map")))]
#[instrument(skip_all)]
pub async fn create_concert(
    State(state): State<AppState>,
    _admin: Admin,
    ApiJson(body): ApiJson<NewConcert>,
) -> Result<(StatusCode, Json<ConcertCreated>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(admin::create_concert(&state.db, &body).await?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn bearer_tokens_are_extracted_case_insensitively() {
        assert_eq!(bearer(&headers("Bearer abc.def")).unwrap(), "abc.def");
        assert_eq!(bearer(&headers("bearer xyz")).unwrap(), "xyz");
    }

    #[test]
    fn other_schemes_and_empty_tokens_are_unauthorized() {
        for value in ["Basic abc", "Bearer ", "Bearer", "abc"] {
            let error = bearer(&headers(value)).unwrap_err();
            assert_eq!(error.status(), StatusCode::UNAUTHORIZED, "{value}");
        }
        assert_eq!(
            bearer(&HeaderMap::new()).unwrap_err().status(),
            StatusCode::UNAUTHORIZED
        );
    }
}
