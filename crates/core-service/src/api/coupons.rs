//! Request and response bodies of first-come coupons: campaigns (admin),
//! claims and a fan's coupons. Amounts are whole KRW, times RFC 3339 UTC.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{ConcertId, Krw, PerformanceId};

/// A campaign's discount: a fixed KRW amount, or a percentage of the price
/// capped at a KRW amount. A discount never exceeds the price it applies
/// to, so a payment is never negative. (Members other than those of its
/// `kind` are ignored: the OpenAPI document cannot say otherwise of a
/// variant of a tagged union.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Discount {
    /// `amount_krw` off the price.
    Amount {
        /// KRW off (positive).
        amount_krw: Krw,
    },
    /// `percent` % off the price (rounded down to whole KRW), at most
    /// `max_krw`.
    Percent {
        /// 1–100.
        #[schema(minimum = 1, maximum = 100)]
        percent: u8,
        /// Cap in KRW (positive).
        max_krw: Krw,
    },
}

impl Discount {
    /// The discount on `price_krw`, in KRW: never more than the price.
    pub fn on(&self, price_krw: i64) -> i64 {
        let off = match *self {
            Self::Amount { amount_krw } => amount_krw.won(),
            Self::Percent { percent, max_krw } => {
                // i128: a price near i64::MAX times 100 must not overflow.
                let share = i128::from(price_krw) * i128::from(percent) / 100;
                i64::try_from(share).unwrap_or(i64::MAX).min(max_krw.won())
            }
        };
        off.clamp(0, price_krw.max(0))
    }
}

/// `POST /admin/v1/coupon-campaigns` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCampaign {
    /// Name shown to fans (1–200 characters).
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Limits the coupons to one concert's performances (not with
    /// `performance_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concert_id: Option<ConcertId>,
    /// Limits the coupons to one performance (not with `concert_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance_id: Option<PerformanceId>,
    /// What a coupon takes off the price.
    pub discount: Discount,
    /// Coupons to issue, first come first served (1–10,000,000).
    #[schema(minimum = 1, maximum = 10_000_000)]
    pub quantity: i32,
    /// Claims open.
    pub starts_at: DateTime<Utc>,
    /// Claims close (after `starts_at`).
    pub ends_at: DateTime<Utc>,
    /// How long an issued coupon may be used, in seconds from its issue
    /// (60 s to 365 days).
    #[schema(minimum = 60, maximum = 31_536_000)]
    pub valid_for_seconds: i64,
}

/// A campaign with its counts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Campaign {
    /// Campaign id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Concert scope, if any.
    pub concert_id: Option<i64>,
    /// Performance scope, if any.
    pub performance_id: Option<i64>,
    /// The discount.
    pub discount: Discount,
    /// Coupons to issue.
    pub quantity: i32,
    /// Claims open.
    pub starts_at: DateTime<Utc>,
    /// Claims close.
    pub ends_at: DateTime<Utc>,
    /// Validity of an issued coupon, in seconds.
    pub valid_for_seconds: i64,
    /// What happened so far.
    pub counts: CampaignCounts,
}

/// A campaign's counts. `issued` and `used` are the record (Postgres);
/// the Redis figures may lag until reconciliation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CampaignCounts {
    /// Coupons issued (in Postgres), at most `quantity`.
    pub issued: i32,
    /// Coupons spent by a payment.
    pub used: i64,
    /// Claims reserved in Redis and undone because the Postgres write
    /// failed (`null` while Redis is unreachable).
    /// Undo attempts that failed are not kept here: they are the metric
    /// `coupon_compensation_failures_total` (alerted on), and the
    /// reconciliation job repairs what they left.
    pub compensated: Option<i64>,
    /// Differences repaired by reconciliation so far.
    pub reconciliation_fixes: i64,
    /// The latest reconciliation, if any ran.
    pub last_reconciliation: Option<Reconciliation>,
}

/// What one reconciliation of a campaign's Redis state against Postgres
/// found and repaired.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Reconciliation {
    /// Campaign id.
    pub campaign_id: i64,
    /// When it ran.
    pub at: DateTime<Utc>,
    /// Redis's issued counter before the repair (`null`: no key yet).
    pub redis_issued_before: Option<i64>,
    /// Coupons in Postgres, which Redis now matches.
    pub postgres_issued: i64,
    /// Fans with a coupon in Postgres that Redis lacked.
    pub fans_added: i64,
    /// Fans Redis counted without a coupon in Postgres.
    pub fans_removed: i64,
    /// `fans_added + fans_removed`, plus 1 if the counter was off.
    pub fixes: i64,
}

/// An issued coupon.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Coupon {
    /// The code to pay with (`coupon_code` of `POST /v1/payments`).
    pub code: String,
    /// The campaign.
    pub campaign_id: i64,
    /// The campaign's name.
    pub campaign_name: String,
    /// Issue order, 1…quantity.
    pub sequence: i32,
    /// The discount.
    pub discount: Discount,
    /// Concert scope, if any.
    pub concert_id: Option<i64>,
    /// Performance scope, if any.
    pub performance_id: Option<i64>,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// Last moment it may be used.
    pub expires_at: DateTime<Utc>,
    /// When a payment spent it, if one did.
    pub used_at: Option<DateTime<Utc>>,
}

/// `GET /v1/coupons`: the fan's own coupons, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CouponList {
    /// The coupons (at most 100).
    pub coupons: Vec<Coupon>,
}

/// The 409 `already_claimed` problem: the fan's coupon of this campaign.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlreadyClaimed {
    /// `type`, `title`, `status`, `detail`, `code`.
    #[serde(flatten)]
    #[schema(inline)]
    pub problem: platform::openapi::ProblemDetails,
    /// The coupon the fan already holds.
    pub coupon: Coupon,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn krw(n: i64) -> Krw {
        Krw::positive(n).unwrap()
    }

    proptest! {
        #[test]
        fn a_discount_never_exceeds_the_price_nor_its_cap(
            price in 1_i64..=i64::MAX,
            amount in 1_i64..=i64::MAX,
            percent in 1_u8..=100,
            cap in 1_i64..=i64::MAX,
        ) {
            let fixed = Discount::Amount { amount_krw: krw(amount) }.on(price);
            prop_assert!(fixed <= price && fixed <= amount && fixed > 0);
            let share = Discount::Percent { percent, max_krw: krw(cap) }.on(price);
            prop_assert!(share <= price && share <= cap && share >= 0);
        }
    }

    #[test]
    fn a_percentage_rounds_down_and_stops_at_its_cap() {
        let ten = Discount::Percent {
            percent: 10,
            max_krw: krw(5_000),
        };
        assert_eq!(ten.on(99_999), 5_000);
        assert_eq!(ten.on(12_345), 1_234);
        let whole = Discount::Amount {
            amount_krw: krw(50_000),
        };
        assert_eq!(whole.on(30_000), 30_000);
    }
}
