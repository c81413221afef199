//! Request handlers. Each parses its input into domain types, calls the
//! [`Booking`](crate::booking::Booking) layer and shapes the HTTP answer;
//! every failure is an [`ApiError`].

use std::time::Duration;

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use platform::{
    identity::Fan,
    problem::{ApiJson, ApiPath, ApiQuery},
};
use serde::Deserialize;
use tracing::instrument;
use utoipa::IntoParams;
use uuid::Uuid;

use super::{
    AppState,
    access::{Caller, access_token},
};
use crate::{
    api::{
        Balance, ChargeRequest, Concert, ConcertCreated, ConcertPage, CreatePayment,
        CreateReservation, LedgerEntry, NewConcert, Payment, Readiness, Reservation,
    },
    booking::Selection,
    domain::{ConcertId, IdempotencyKey, ParseError, UserId},
    error::ApiError,
    metrics,
    store::payments::PaymentOutcome,
};

/// `raw` parsed by `parse`; 400 `invalid_request` with its message.
pub(super) fn parsed<T, R>(
    parse: impl FnOnce(R) -> Result<T, ParseError>,
    raw: R,
) -> Result<T, ApiError> {
    parse(raw).map_err(|e| ApiError::BadRequest(e.0))
}

/// The `Idempotency-Key` header.
///
/// # Errors
/// 400 `invalid_request` when absent, not visible ASCII, empty or longer
/// than 255 bytes.
fn idempotency_key(headers: &HeaderMap) -> Result<IdempotencyKey, ApiError> {
    let raw = headers
        .get("idempotency-key")
        .ok_or_else(|| ApiError::BadRequest("the Idempotency-Key header is required".into()))?
        .to_str()
        .map_err(|_| ApiError::BadRequest("Idempotency-Key must be visible ASCII".into()))?;
    parsed(IdempotencyKey::parse, raw)
}

/// A user id from the path; 400 `invalid_request` with its message.
fn user_id(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw).map_err(|e| ApiError::BadRequest(ParseError::from(e).0))
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
    let database = state.booking.db().ping(Duration::from_secs(1)).await;
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
#[into_params(parameter_in = Query)]
pub struct ConcertQuery {
    /// Return concerts with an id greater than this (default 0).
    pub after: Option<i64>,
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
}

/// The `{id}` of the balance routes, as documented; handlers parse it with
/// [`user_id`]. The pattern is what a user id takes: no whitespace (Unicode
/// `White_Space`) and no control character (`Cc`). Its 1-64 bytes are
/// documented as 1-64 characters: a schema cannot count UTF-8 bytes.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // read by the OpenAPI document only
struct UserPath {
    /// The fan (their identity token's `sub`): 1-64 bytes of UTF-8 without
    /// whitespace or control characters.
    #[param(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$"
    )]
    id: String,
}

/// `GET /v1/concerts`: concerts by id, with their performances.
#[utoipa::path(get, path = "/v1/concerts", tag = "catalog", params(ConcertQuery), responses(
    (status = 200, body = ConcertPage),
    (status = 400, description = "Bad paging (`malformed_query`, `invalid_request`)"),
    (status = 429, description = "`rate_limited` per client address (Retry-After, RateLimit-Policy, RateLimit)"),
    (status = 503, description = "Database unavailable (Retry-After)")))]
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
    Ok(Json(state.booking.concerts(after, limit).await?))
}

/// `GET /v1/concerts/{id}`: one concert with seat counts per performance.
#[utoipa::path(get, path = "/v1/concerts/{id}", tag = "catalog", params(("id" = i64, Path, minimum = 1)), responses(
    (status = 200, body = Concert),
    (status = 400, description = "Malformed or non-positive id (`malformed_path`, `invalid_request`)"),
    (status = 404, description = "Unknown concert"),
    (status = 429, description = "`rate_limited` per client address (Retry-After, RateLimit-Policy, RateLimit)"),
    (status = 503, description = "Database unavailable (Retry-After)")))]
#[instrument(skip_all, fields(concert_id = id))]
pub async fn get_concert(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Concert>, ApiError> {
    let id = parsed(ConcertId::new, id)?;
    Ok(Json(state.booking.concert(id).await?))
}

/// `POST /v1/reservations`: hold seats for the fan, all or nothing, for
/// `hold_ttl` (never past the access token's expiry), within the
/// performance's purchase limits.
#[utoipa::path(post, path = "/v1/reservations", tag = "reservations", request_body = CreateReservation,
    security(("identity" = [], "access_token" = [])),
    responses(
        (status = 201, body = Reservation, description = "Held"),
        (status = 400, description = "Malformed body"),
        (status = 401, description = "`missing_identity_token` or `invalid_identity_token` (Authorization); `missing_access_token` or `invalid_access_token` (Onsale-Access-Token)"),
        (status = 403, description = "`token_subject_mismatch`: the access token is another fan's; `access_denied`: of another performance or released; `sale_not_open`"),
        (status = 404, description = "Unknown performance"),
        (status = 409, description = "`seat_taken` (with `seats_available`); `order_limit` (with `max_seats_per_order`, `remaining`): the admission session's holds and purchases would exceed it; `fan_limit` (with `max_tickets_per_fan`, `remaining`): the fan's, across sessions; `hold_in_progress` (Retry-After): the fan's other hold of this performance"),
        (status = 422, description = "Too many, duplicate or unknown seats"),
        (status = 429, description = "`rate_limited` per fan (Retry-After, RateLimit-Policy, RateLimit)"),
        (status = 503, description = "Database, queue-service or identity provider (`identity_unavailable`) unavailable")))]
#[instrument(skip_all, fields(performance_id = body.performance_id.get(), seats = body.seat_ids.len(), best_available = body.best_available.as_ref().map(|b| b.quantity), user_id))]
pub async fn create_reservation(
    State(state): State<AppState>,
    Fan(fan): Fan,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateReservation>,
) -> Result<Response, ApiError> {
    let result = async {
        let selection = Selection::of(&body)?;
        let token = access_token(&headers)?;
        let held = state
            .booking
            .hold(&fan.subject, token, body.performance_id, &selection);
        Ok::<_, ApiError>(held.await?)
    }
    .await;
    metrics::reservation(match &result {
        Ok(_) => "held",
        Err(ApiError::SeatTaken { .. }) => "seat_taken",
        Err(ApiError::NoBlock { .. }) => "no_block",
        Err(ApiError::TooManySeats { .. }) => "too_many_seats",
        Err(ApiError::OverLimit(..)) => "over_limit",
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

/// `GET /v1/reservations/{id}`: one of the fan's own reservations (any,
/// with the admin key).
#[utoipa::path(get, path = "/v1/reservations/{id}", tag = "reservations", params(("id" = Uuid, Path)),
    security(("identity" = []), ("admin_key" = [])),
    responses(
        (status = 200, body = Reservation), (status = 400, description = "Malformed id"),
        (status = 401, description = "`missing_identity_token` or `invalid_identity_token`"),
        (status = 404, description = "Unknown reservation, or another fan's (whose existence is not told)"),
        (status = 429, description = "`rate_limited` per fan (Retry-After, RateLimit-Policy, RateLimit)"),
        (status = 503, description = "Database or identity provider (`identity_unavailable`) unavailable")))]
#[instrument(skip_all, fields(reservation_id = %id))]
pub async fn get_reservation(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Reservation>, ApiError> {
    Ok(Json(state.booking.reservation(caller.viewer(), id).await?))
}

/// `DELETE /v1/reservations/{id}`: release one's own hold (204). Needs
/// the identity only, so a fan whose admission ended can still give the
/// seats back.
#[utoipa::path(delete, path = "/v1/reservations/{id}", tag = "reservations", params(("id" = Uuid, Path)),
    security(("identity" = [])),
    responses(
        (status = 204, description = "Released (or already ended)"),
        (status = 400, description = "Malformed id (`malformed_path`)"),
        (status = 401, description = "`missing_identity_token` or `invalid_identity_token`"),
        (status = 403, description = "`not_owner`: another fan's reservation"),
        (status = 404, description = "Unknown reservation"),
        (status = 409, description = "Already paid, or being paid"),
        (status = 429, description = "`rate_limited` per fan (Retry-After, RateLimit-Policy, RateLimit)"),
        (status = 503, description = "Database or identity provider (`identity_unavailable`) unavailable")))]
#[instrument(skip_all, fields(reservation_id = %id, user_id))]
pub async fn delete_reservation(
    State(state): State<AppState>,
    Fan(fan): Fan,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    state.booking.release(&fan.subject, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/payments`: pay one of the fan's held reservations from their
/// balance.
#[utoipa::path(post, path = "/v1/payments", tag = "payments", request_body = CreatePayment,
    security(("identity" = [], "access_token" = [])),
    params(("Idempotency-Key" = String, Header, pattern = r"^[!-~]{1,255}$",
        description = "1-255 visible ASCII characters, unique per payment")),
    responses(
        (status = 201, body = Payment, description = "Paid, or the replay of an earlier success with the same key"),
        (status = 400, description = "Malformed body or Idempotency-Key"),
        (status = 401, description = "`missing_identity_token` or `invalid_identity_token` (Authorization); `missing_access_token` or `invalid_access_token` (Onsale-Access-Token)"),
        (status = 402, description = "Insufficient balance (for the price less the coupon's discount); nothing changed"),
        (status = 403, description = "`not_owner`: another fan's reservation; `token_subject_mismatch`: the access token is another fan's; `access_completed`: a new key from a session whose purchase already completed"),
        (status = 404, description = "Unknown reservation"),
        (status = 409, description = "Same key in flight (Retry-After), already paid, cancelled, or `coupon_used`: the coupon paid for another payment"),
        (status = 410, description = "`hold_expired`: hold expired; `coupon_expired`: the coupon is past its expiry; nothing charged"),
        (status = 422, description = "`idempotency_key_reused`: key reused for another reservation or another coupon; `unknown_coupon`: no such coupon among the fan's; `coupon_not_applicable`: the coupon is for another concert or performance"),
        (status = 429, description = "`rate_limited` per fan (Retry-After, RateLimit-Policy, RateLimit)"),
        (status = 503, description = "Database, queue-service or identity provider (`identity_unavailable`) unavailable")))]
#[instrument(skip_all, fields(reservation_id = %body.reservation_id, user_id))]
pub async fn create_payment(
    State(state): State<AppState>,
    Fan(fan): Fan,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreatePayment>,
) -> Result<Response, ApiError> {
    // The access token is checked before the key: a request with neither
    // is 401.
    let result = async {
        let token = access_token(&headers)?;
        let key = idempotency_key(&headers)?;
        let paid = state.booking.pay(
            &fan.subject,
            token,
            &key,
            body.reservation_id,
            body.coupon_code.as_ref(),
        );
        Ok::<_, ApiError>(paid.await?)
    }
    .await;
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

/// `POST /v1/users/{id}/balance/charges`: add KRW to a prepaid balance.
/// Called by the top-up integration, so it needs `X-Admin-Key`.
#[utoipa::path(post, path = "/v1/users/{id}/balance/charges", tag = "balance", params(UserPath),
    request_body = ChargeRequest, security(("admin_key" = [])),
    responses(
        (status = 201, body = LedgerEntry),
        (status = 400, description = "Malformed id or amount (zero, negative, not an integer, beyond i64)"),
        (status = 401, description = "`admin_key_required`: missing or wrong admin key"),
        (status = 422, description = "`balance_overflow`: the balance would pass i64::MAX"),
        (status = 503, description = "Database unavailable (Retry-After)")))]
#[instrument(skip_all, fields(user_id = %id))]
pub async fn charge_balance(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ChargeRequest>,
) -> Result<(StatusCode, Json<LedgerEntry>), ApiError> {
    let user = user_id(&id)?;
    Ok((
        StatusCode::CREATED,
        Json(state.booking.charge(&user, body.amount).await?),
    ))
}

/// `GET /v1/users/{id}/balance`: the balance and recent ledger entries of
/// the fan themself (`id` is their identity token's `sub`), or of anyone
/// with the admin key.
#[utoipa::path(get, path = "/v1/users/{id}/balance", tag = "balance", params(UserPath),
    security(("identity" = []), ("admin_key" = [])),
    responses(
        (status = 200, body = Balance), (status = 400, description = "Malformed id"),
        (status = 401, description = "`missing_identity_token` or `invalid_identity_token`"),
        (status = 403, description = "`not_owner`: another fan's balance"),
        (status = 404, description = "User never charged"),
        (status = 429, description = "`rate_limited` per fan (Retry-After, RateLimit-Policy, RateLimit)"),
        (status = 503, description = "Database or identity provider (`identity_unavailable`) unavailable")))]
#[instrument(skip_all, fields(user_id = %id))]
pub async fn get_balance(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Balance>, ApiError> {
    let user = user_id(&id)?;
    Ok(Json(state.booking.balance(caller.viewer(), &user).await?))
}

/// `POST /admin/v1/concerts`: create a concert, its performances and seat
/// maps in one transaction.
#[utoipa::path(post, path = "/admin/v1/concerts", tag = "admin", request_body = NewConcert,
    security(("admin_key" = [])),
    responses(
        (status = 201, body = ConcertCreated),
        (status = 400, description = "Malformed body"),
        (status = 401, description = "`admin_key_required`: missing or wrong admin key"),
        (status = 422, description = "`invalid_field`: a rule the schema cannot state (sale \
            opening after the show, a per-fan limit below the per-order one, more than \
            100 000 seats, a row listed twice)"),
        (status = 503, description = "Database unavailable (Retry-After)")))]
#[instrument(skip_all)]
pub async fn create_concert(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewConcert>,
) -> Result<(StatusCode, Json<ConcertCreated>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.booking.create_concert(&body).await?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_keep_their_messages() {
        let error = user_id("has space").unwrap_err();
        assert_eq!(
            error.to_string(),
            "user id must not contain whitespace or control characters"
        );
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    }
}
