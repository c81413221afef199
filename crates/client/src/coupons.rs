//! core-service's first-come coupons (campaigns with the admin key, claims
//! and a fan's coupons with their identity) and the popular-concert
//! ranking (public).

use core_service::api::coupons::{Campaign, Coupon, CouponList, NewCampaign, Reconciliation};
use reqwest::{Method, RequestBuilder};

use crate::{Client, Error, Operation, Service};

impl Client {
    /// The request of [`Client::create_campaign`].
    pub fn create_campaign_request(&self, campaign: &NewCampaign) -> RequestBuilder {
        self.admin(Service::Core, Method::POST, "/admin/v1/coupon-campaigns")
            .json(campaign)
    }

    /// Creates a first-come coupon campaign (admin key).
    ///
    /// # Errors
    /// [`Error::Status`] 401 without the admin key, 404 for an unknown
    /// scope, 422 for a rule the body breaks.
    pub async fn create_campaign(&self, campaign: &NewCampaign) -> Result<Campaign, Error> {
        self.json(
            Operation::CreateCampaign,
            self.create_campaign_request(campaign),
        )
        .await
    }

    /// A campaign with its counts (admin key).
    ///
    /// # Errors
    /// [`Error::Status`] 401 without the admin key, 404 for an unknown
    /// campaign.
    pub async fn campaign(&self, id: i64) -> Result<Campaign, Error> {
        let request = self.admin(
            Service::Core,
            Method::GET,
            &format!("/admin/v1/coupon-campaigns/{id}"),
        );
        self.json(Operation::Campaign, request).await
    }

    /// Makes the campaign's Redis state match Postgres now (admin key).
    ///
    /// # Errors
    /// [`Error::Status`] 404 for an unknown campaign, 503 while Redis or
    /// Postgres is unreachable.
    pub async fn reconcile_campaign(&self, id: i64) -> Result<Reconciliation, Error> {
        let request = self.admin(
            Service::Core,
            Method::POST,
            &format!("/admin/v1/coupon-campaigns/{id}/reconciliation"),
        );
        self.json(Operation::Reconcile, request).await
    }

    /// The request of [`Client::claim_coupon`].
    pub fn claim_coupon_request(&self, campaign: i64) -> RequestBuilder {
        self.request(
            Service::Core,
            Method::POST,
            &format!("/v1/coupon-campaigns/{campaign}/claims"),
        )
    }

    /// Claims a coupon of `campaign` for this client's fan
    /// ([`Client::as_fan`]).
    ///
    /// # Errors
    /// [`Error::Status`] 403 `campaign_not_started`/`campaign_closed`, 404,
    /// 409 `sold_out`/`already_claimed` (the problem carries the coupon).
    pub async fn claim_coupon(&self, campaign: i64) -> Result<Coupon, Error> {
        self.json(Operation::ClaimCoupon, self.claim_coupon_request(campaign))
            .await
    }

    /// This client's fan's coupons, newest first.
    ///
    /// # Errors
    /// [`Error::Status`] 401 without an identity.
    pub async fn coupons(&self) -> Result<CouponList, Error> {
        let request = self.request(Service::Core, Method::GET, "/v1/coupons");
        self.json(Operation::Coupons, request).await
    }

    /// The request of the concert ranking over `window` (`1h` or `24h`),
    /// top `limit` (1–100).
    pub fn ranking_request(&self, window: &str, limit: u32) -> RequestBuilder {
        self.request(
            Service::Core,
            Method::GET,
            &format!("/v1/rankings/concerts?window={window}&limit={limit}"),
        )
    }
}
