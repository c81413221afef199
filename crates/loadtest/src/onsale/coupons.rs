//! The simulation's first-come coupon campaign: created for the concert
//! before the sale opens, claimed by a share of the fans while they wait,
//! spent by those who then pay; and its figures and checks, as the fans saw
//! them and as Postgres records them.
//!
//! Choices (nobody to ask; these are the defaults and why):
//! - **Quantity**: `--coupons` × the seats (20 % by default), at least one:
//!   fewer coupons than claimers (`--coupon-claimers`, 30 % of the fans, so
//!   6,000 of the default 20,000 for 200 coupons), so the campaign sells out
//!   and most claims are answered `sold_out` from Redis, as a real
//!   first-come campaign is.
//! - **Discount**: 10 % of the price, at most 30,000 KRW: one seat (110,000
//!   KRW) gets 11,000 off, three or four hit the cap, so both sides of
//!   [`Discount::on`] are exercised and each payment's discount is checked
//!   against it.
//! - **Scope**: the simulation's concert (`concert_id`), so the payment
//!   path checks the scope too.
//! - **Window**: from now until the run's `--duration` plus ten minutes;
//!   coupons valid for an hour, longer than any run, so none expires midway.

use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use chrono::{Duration as Span, Utc};
use core_service::{
    api::coupons::{Discount, NewCampaign},
    domain::{ConcertId, Krw},
};
use onsale_client::Client;
use serde::Serialize;
use sqlx::PgConnection;

use super::{OnsaleArgs, journey::Sim};

/// The campaign of a run.
#[derive(Debug, Clone)]
pub(super) struct CouponCampaign {
    pub(super) id: i64,
    pub(super) quantity: i32,
    pub(super) discount: Discount,
}

/// Creates the campaign for `concert` (see the module docs), or none with
/// `--coupons 0`.
///
/// # Errors
/// core-service refusing or unreachable.
pub(super) async fn create(
    client: &Client,
    concert: i64,
    seats: u64,
    args: &OnsaleArgs,
) -> Result<Option<CouponCampaign>> {
    if args.coupons <= 0.0 {
        return Ok(None);
    }
    let quantity = ((seats as f64 * args.coupons).round() as i32).max(1);
    let discount = Discount::Percent {
        percent: 10,
        max_krw: Krw::positive(30_000)?,
    };
    let now = Utc::now();
    let campaign = client
        .create_campaign(&NewCampaign {
            name: "onsale simulation: 10 % off, first come".to_owned(),
            concert_id: Some(ConcertId::new(concert)?),
            performance_id: None,
            discount,
            quantity,
            starts_at: now,
            ends_at: now + Span::seconds(i64::try_from(args.duration)? + 600),
            valid_for_seconds: 3_600,
        })
        .await
        .context("creating the coupon campaign")?;
    Ok(Some(CouponCampaign {
        id: campaign.id,
        quantity,
        discount,
    }))
}

/// The coupon part of the report.
#[derive(Debug, Serialize)]
pub(super) struct CouponReport {
    campaign_id: i64,
    quantity: i32,
    /// Fans who tried to claim.
    claimers: u64,
    /// Coupons the fans got (201, or their own after a retried claim).
    issued: u64,
    sold_out_answers: u64,
    claims_refused: u64,
    /// Payments that spent a coupon, as the fans saw them.
    used: u64,
    payments_refused_for_the_coupon: u64,
    discount_krw: u64,
    discount_mismatches: u64,
    /// The campaign's `issued` counter (Postgres, via the admin API).
    campaign_issued: i32,
    /// Coupon rows of the campaign in Postgres.
    postgres_coupons: i64,
    /// Of those, spent by a payment.
    postgres_used: i64,
    /// Payments carrying a code of this campaign.
    payments_with_coupon: i64,
    /// Payment ids that more than one coupon names.
    payments_named_twice: i64,
    /// Codes that more than one payment carries.
    codes_paid_twice: i64,
    /// Spent coupons whose `payment_id` is not a payment carrying the code.
    unmatched_spends: i64,
    /// Redis compensations the campaign's counts report (`null`: Redis
    /// unreachable).
    compensated: Option<i64>,
    /// `postgres_coupons` ≤ `quantity` and the counter ≤ `quantity`.
    pub(super) issued_within_quantity: bool,
    /// Fans' `issued` = coupons in Postgres = the campaign's counter.
    pub(super) issued_matches_postgres: bool,
    /// No payment id named twice, no code paid twice, every spend matched.
    pub(super) no_coupon_used_twice: bool,
    /// Coupons spent = payments with a coupon = the fans' `used`.
    pub(super) used_matches_payments: bool,
    /// No coupon refused at payment, no discount off the campaign's rule.
    pub(super) payments_applied_the_discount: bool,
}

impl CouponReport {
    /// Every coupon check passed.
    pub(super) fn ok(&self) -> bool {
        self.issued_within_quantity
            && self.issued_matches_postgres
            && self.no_coupon_used_twice
            && self.used_matches_payments
            && self.payments_applied_the_discount
    }
}

/// Reads the campaign back from Postgres and core-service and checks it
/// against what the fans saw; `None` without a campaign.
///
/// # Errors
/// Postgres or core-service unreachable.
pub(super) async fn report(sim: &Sim, db: &mut PgConnection) -> Result<Option<CouponReport>> {
    let Some(campaign) = &sim.campaign else {
        return Ok(None);
    };
    let counts = sim.client.campaign(campaign.id).await?.counts;
    let (postgres_coupons, postgres_used): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE used_at IS NOT NULL) FROM coupons WHERE campaign_id = $1",
    )
    .bind(campaign.id)
    .fetch_one(&mut *db)
    .await?;
    let payments_with_coupon: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM payments p JOIN coupons c ON c.code = p.coupon_code WHERE c.campaign_id = $1",
    )
    .bind(campaign.id)
    .fetch_one(&mut *db)
    .await?;
    let payments_named_twice: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT payment_id FROM coupons
           WHERE campaign_id = $1 AND payment_id IS NOT NULL
           GROUP BY payment_id HAVING count(*) > 1) twice",
    )
    .bind(campaign.id)
    .fetch_one(&mut *db)
    .await?;
    let codes_paid_twice: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT p.coupon_code FROM payments p
           JOIN coupons c ON c.code = p.coupon_code WHERE c.campaign_id = $1
           GROUP BY p.coupon_code HAVING count(*) > 1) twice",
    )
    .bind(campaign.id)
    .fetch_one(&mut *db)
    .await?;
    let unmatched_spends: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM coupons c
          WHERE c.campaign_id = $1 AND c.payment_id IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.id = c.payment_id AND p.coupon_code = c.code)",
    )
    .bind(campaign.id)
    .fetch_one(&mut *db)
    .await?;

    let t = &sim.tally.coupons;
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let (issued, used) = (load(&t.issued), load(&t.used));
    let quantity = i64::from(campaign.quantity);
    Ok(Some(CouponReport {
        campaign_id: campaign.id,
        quantity: campaign.quantity,
        claimers: load(&t.claimers),
        issued,
        sold_out_answers: load(&t.sold_out),
        claims_refused: load(&t.claims_refused),
        used,
        payments_refused_for_the_coupon: load(&t.payments_refused),
        discount_krw: load(&t.discount_krw),
        discount_mismatches: load(&t.discount_mismatches),
        campaign_issued: counts.issued,
        postgres_coupons,
        postgres_used,
        payments_with_coupon,
        payments_named_twice,
        codes_paid_twice,
        unmatched_spends,
        compensated: counts.compensated,
        issued_within_quantity: postgres_coupons <= quantity && counts.issued <= campaign.quantity,
        issued_matches_postgres: i64::try_from(issued).ok() == Some(postgres_coupons)
            && i64::from(counts.issued) == postgres_coupons,
        no_coupon_used_twice: payments_named_twice == 0
            && codes_paid_twice == 0
            && unmatched_spends == 0,
        used_matches_payments: postgres_used == payments_with_coupon
            && i64::try_from(used).ok() == Some(postgres_used)
            && counts.used == postgres_used,
        payments_applied_the_discount: load(&t.payments_refused) == 0
            && load(&t.discount_mismatches) == 0,
    }))
}

/// Prints the coupon lines of the terminal report.
pub(super) fn print(report: Option<&CouponReport>) {
    let Some(c) = report else {
        println!("coupons: no campaign (--coupons 0)");
        return;
    };
    let check = |ok: bool| if ok { "ok" } else { "FAILED" };
    println!(
        "coupons: campaign {} of {}: {} claimers, {} issued, {} sold_out, {} refused; used {} ({} KRW off)",
        c.campaign_id,
        c.quantity,
        c.claimers,
        c.issued,
        c.sold_out_answers,
        c.claims_refused,
        c.used,
        c.discount_krw
    );
    println!(
        "  issued ≤ quantity [{}]   issued {} = Postgres {} = counter {} [{}]   used twice: payments {} codes {} unmatched {} [{}]",
        check(c.issued_within_quantity),
        c.issued,
        c.postgres_coupons,
        c.campaign_issued,
        check(c.issued_matches_postgres),
        c.payments_named_twice,
        c.codes_paid_twice,
        c.unmatched_spends,
        check(c.no_coupon_used_twice)
    );
    println!(
        "  used {} = Postgres {} = payments with a coupon {} [{}]   refused at payment {} discount mismatches {} [{}]",
        c.used,
        c.postgres_used,
        c.payments_with_coupon,
        check(c.used_matches_payments),
        c.payments_refused_for_the_coupon,
        c.discount_mismatches,
        check(c.payments_applied_the_discount)
    );
}
