//! Handlers of first-come coupons: campaigns (admin, `X-Admin-Key`),
//! claims and a fan's own coupons (identity token). Each parses its input,
//! calls [`Coupons`](crate::coupons::Coupons) and shapes the answer.

use axum::{Json, extract::State, http::StatusCode};
use platform::{
    identity::Fan,
    problem::{ApiJson, ApiPath},
};
use tracing::instrument;

use super::AppState;
use crate::{
    api::coupons::{Campaign, Coupon, CouponList, NewCampaign, Reconciliation},
    domain::CampaignId,
    error::ApiError,
};

/// A campaign id from the path; 400 `invalid_request` when not positive.
fn campaign_id(raw: i64) -> Result<CampaignId, ApiError> {
    CampaignId::new(raw).map_err(|e| ApiError::BadRequest(e.0))
}

/// `POST /admin/v1/coupon-campaigns`: create a first-come campaign.
#[utoipa::path(post, path = "/admin/v1/coupon-campaigns", tag = "coupons",
    request_body = NewCampaign, security(("admin_key" = [])),
    responses(
        (status = 201, body = Campaign),
        (status = 400, description = "Malformed body"),
        (status = 401, description = "`admin_key_required`: missing or wrong admin key"),
        (status = 404, description = "Unknown concert or performance scope"),
        (status = 422, description = "`invalid_field`: both scopes, `ends_at` not after \
            `starts_at`, quantity, validity or percentage out of range, a bad name"),
        (status = 503, description = "Database unavailable (Retry-After)")))]
#[instrument(skip_all)]
pub async fn create_campaign(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewCampaign>,
) -> Result<(StatusCode, Json<Campaign>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.coupons.create_campaign(&body).await?),
    ))
}

/// `GET /admin/v1/coupon-campaigns/{id}`: a campaign with its counts.
#[utoipa::path(get, path = "/admin/v1/coupon-campaigns/{id}", tag = "coupons",
    params(("id" = i64, Path, minimum = 1)), security(("admin_key" = [])),
    responses(
        (status = 200, body = Campaign),
        (status = 400, description = "Malformed or non-positive id"),
        (status = 401, description = "`admin_key_required`: missing or wrong admin key"),
        (status = 404, description = "Unknown campaign"),
        (status = 503, description = "Database unavailable (Retry-After)")))]
#[instrument(skip_all, fields(campaign_id = id))]
pub async fn get_campaign(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Campaign>, ApiError> {
    Ok(Json(state.coupons.campaign(campaign_id(id)?).await?))
}

/// `POST /admin/v1/coupon-campaigns/{id}/reconciliation`: make the
/// campaign's Redis state match Postgres now, and report what differed.
#[utoipa::path(post, path = "/admin/v1/coupon-campaigns/{id}/reconciliation", tag = "coupons",
    params(("id" = i64, Path, minimum = 1)), security(("admin_key" = [])),
    responses(
        (status = 200, body = Reconciliation),
        (status = 400, description = "Malformed or non-positive id"),
        (status = 401, description = "`admin_key_required`: missing or wrong admin key"),
        (status = 404, description = "Unknown campaign"),
        (status = 503, description = "Database or Redis unavailable (Retry-After)")))]
#[instrument(skip_all, fields(campaign_id = id))]
pub async fn reconcile_campaign(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Reconciliation>, ApiError> {
    Ok(Json(state.coupons.reconcile(campaign_id(id)?).await?))
}

/// `POST /v1/coupon-campaigns/{id}/claims`: claim one coupon, first come
/// first served; at most one per fan.
#[utoipa::path(post, path = "/v1/coupon-campaigns/{id}/claims", tag = "coupons",
    params(("id" = i64, Path, minimum = 1)), security(("identity" = [])),
    responses(
        (status = 201, body = Coupon, description = "Issued to the fan"),
        (status = 400, description = "Malformed or non-positive id"),
        (status = 401, description = "`missing_identity_token` or `invalid_identity_token`"),
        (status = 403, description = "`campaign_not_started` or `campaign_closed`"),
        (status = 404, description = "Unknown campaign"),
        (status = 409, body = crate::api::coupons::AlreadyClaimed,
            content_type = "application/problem+json", description = "`sold_out`: \
            every coupon is issued; `already_claimed`: the fan holds one (`coupon`)"),
        (status = 429, description = "`rate_limited` per fan (Retry-After, RateLimit-Policy, RateLimit)"),
        (status = 503, description = "Database or identity provider unavailable (Retry-After)")))]
#[instrument(skip_all, fields(campaign_id = id, user_id = %fan.subject))]
pub async fn claim_coupon(
    State(state): State<AppState>,
    Fan(fan): Fan,
    ApiPath(id): ApiPath<i64>,
) -> Result<(StatusCode, Json<Coupon>), ApiError> {
    let coupon = state.coupons.claim(campaign_id(id)?, &fan.subject).await?;
    Ok((StatusCode::CREATED, Json(coupon)))
}

/// `GET /v1/coupons`: the fan's own coupons, newest first (at most 100).
#[utoipa::path(get, path = "/v1/coupons", tag = "coupons", security(("identity" = [])),
    responses(
        (status = 200, body = CouponList),
        (status = 401, description = "`missing_identity_token` or `invalid_identity_token`"),
        (status = 429, description = "`rate_limited` per fan (Retry-After, RateLimit-Policy, RateLimit)"),
        (status = 503, description = "Database or identity provider unavailable (Retry-After)")))]
#[instrument(skip_all, fields(user_id = %fan.subject))]
pub async fn list_coupons(
    State(state): State<AppState>,
    Fan(fan): Fan,
) -> Result<Json<CouponList>, ApiError> {
    Ok(Json(CouponList {
        coupons: state.coupons.fan_coupons(&fan.subject).await?,
    }))
}
