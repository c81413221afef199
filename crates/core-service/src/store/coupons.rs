//! Coupon campaigns and coupons: Postgres is the record.
//!
//! A claim is one statement ([`sql::COUPON_ISSUE`]): a conditional
//! `UPDATE` of the campaign's `issued` counter (`issued < quantity`, inside
//! the window, the fan holding none yet) and the coupon's `INSERT`, so
//! Postgres by itself never issues more than `quantity` coupons, nor two
//! to one fan (also backed by the unique `(campaign_id, user_id)`), nor
//! leaves a gap in the sequence numbers 1…quantity: a failed statement
//! rolls its increment back. Redis only decides who gets to try.
//!
//! Spending a coupon is part of the payment's transaction
//! ([`sql::COUPON_SPEND`] from `store::payments`).

use chrono::{DateTime, Utc};
use sqlx::{Row, postgres::PgRow};

use super::{StoreError, sql, sqlstate};
use crate::{
    api::coupons::{Campaign, CampaignCounts, Coupon, Discount, NewCampaign, Reconciliation},
    db::Db,
    domain::{CampaignId, CouponCode, Krw, UserId},
};

/// A campaign as the claim path needs it (immutable once created, so it
/// may be cached).
#[derive(Debug, Clone)]
pub struct CampaignRule {
    /// Campaign id.
    pub id: CampaignId,
    /// Coupons to issue.
    pub quantity: i32,
    /// Claims open.
    pub starts_at: DateTime<Utc>,
    /// Claims close.
    pub ends_at: DateTime<Utc>,
}

/// How a claim ended in Postgres.
#[derive(Debug, Clone)]
pub enum Issue {
    /// This claim issued the coupon.
    Issued(Coupon),
    /// The fan held one already: theirs.
    AlreadyClaimed(Coupon),
    /// All `quantity` coupons are issued.
    SoldOut,
    /// The window closed (or has not opened) by the database's clock.
    Closed,
}

/// The columns [`campaign_of`] reads (a macro, so statements stay static
/// text that `concat!` builds at compile time).
macro_rules! campaign_columns {
    () => {
        "id, name, concert_id, performance_id, discount_kind, discount_amount_krw, \
         discount_percent, max_discount_krw, quantity, issued, starts_at, ends_at, \
         valid_seconds, reconcile_fixes, last_reconcile"
    };
}

/// The `SELECT … FROM coupons JOIN coupon_campaigns` that [`coupon_of`]
/// reads.
macro_rules! coupon_select {
    () => {
        "SELECT c.code, c.campaign_id, k.name, c.sequence, c.issued_at, c.expires_at, \
         c.used_at, k.concert_id, k.performance_id, k.discount_kind, k.discount_amount_krw, \
         k.discount_percent, k.max_discount_krw \
         FROM coupons c JOIN coupon_campaigns k ON k.id = c.campaign_id"
    };
}

/// The discount stored in `row`'s `discount_*` columns.
///
/// # Errors
/// [`StoreError::Invariant`] for a row the schema's checks should forbid.
pub(crate) fn discount_of(row: &PgRow) -> Result<Discount, StoreError> {
    let bad = || StoreError::Invariant("a campaign's discount columns are inconsistent");
    match row.try_get::<String, _>("discount_kind")?.as_str() {
        "amount" => Ok(Discount::Amount {
            amount_krw: Krw::positive(row.try_get("discount_amount_krw")?).map_err(|_| bad())?,
        }),
        "percent" => Ok(Discount::Percent {
            percent: u8::try_from(row.try_get::<i32, _>("discount_percent")?).map_err(|_| bad())?,
            max_krw: Krw::positive(row.try_get("max_discount_krw")?).map_err(|_| bad())?,
        }),
        _ => Err(bad()),
    }
}

fn coupon_of(row: &PgRow) -> Result<Coupon, StoreError> {
    Ok(Coupon {
        code: row.try_get("code")?,
        campaign_id: row.try_get("campaign_id")?,
        campaign_name: row.try_get("name")?,
        sequence: row.try_get("sequence")?,
        discount: discount_of(row)?,
        concert_id: row.try_get("concert_id")?,
        performance_id: row.try_get("performance_id")?,
        issued_at: row.try_get("issued_at")?,
        expires_at: row.try_get("expires_at")?,
        used_at: row.try_get("used_at")?,
    })
}

fn campaign_of(row: &PgRow, used: i64) -> Result<Campaign, StoreError> {
    let last: Option<serde_json::Value> = row.try_get("last_reconcile")?;
    Ok(Campaign {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        concert_id: row.try_get("concert_id")?,
        performance_id: row.try_get("performance_id")?,
        discount: discount_of(row)?,
        quantity: row.try_get("quantity")?,
        starts_at: row.try_get("starts_at")?,
        ends_at: row.try_get("ends_at")?,
        valid_for_seconds: row.try_get("valid_seconds")?,
        counts: CampaignCounts {
            issued: row.try_get("issued")?,
            used,
            compensated: None,
            reconciliation_fixes: row.try_get("reconcile_fixes")?,
            last_reconciliation: last.and_then(|value| serde_json::from_value(value).ok()),
        },
    })
}

/// Creates a campaign (the body is validated by the caller).
///
/// # Errors
/// [`StoreError::NotFound`] (`concert`, `performance`) for an unknown scope;
/// database errors.
pub async fn create_campaign(db: &Db, new: &NewCampaign) -> Result<Campaign, StoreError> {
    let (kind, amount, percent, cap) = match new.discount {
        Discount::Amount { amount_krw } => ("amount", Some(amount_krw.won()), None, None),
        Discount::Percent { percent, max_krw } => (
            "percent",
            None,
            Some(i32::from(percent)),
            Some(max_krw.won()),
        ),
    };
    let row = sqlx::query(concat!(
        "INSERT INTO coupon_campaigns (name, concert_id, performance_id, discount_kind, \
         discount_amount_krw, discount_percent, max_discount_krw, quantity, starts_at, ends_at, \
         valid_seconds) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING ",
        campaign_columns!()
    ))
    .bind(&new.name)
    .bind(new.concert_id.map(|id| id.get()))
    .bind(new.performance_id.map(|id| id.get()))
    .bind(kind)
    .bind(amount)
    .bind(percent)
    .bind(cap)
    .bind(new.quantity)
    .bind(new.starts_at)
    .bind(new.ends_at)
    .bind(new.valid_for_seconds)
    .fetch_one(db.pool())
    .await
    .map_err(|error| match sqlstate(&error).as_deref() {
        Some("23503") if new.concert_id.is_some() => StoreError::NotFound("concert"),
        Some("23503") => StoreError::NotFound("performance"),
        _ => error.into(),
    })?;
    campaign_of(&row, 0)
}

/// A campaign with its Postgres counts, or `None`.
///
/// # Errors
/// Database errors.
pub async fn campaign(db: &Db, id: CampaignId) -> Result<Option<Campaign>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        campaign_columns!(),
        ", (SELECT count(*) FROM coupons c WHERE c.campaign_id = $1 AND c.used_at IS NOT NULL) \
         AS used FROM coupon_campaigns WHERE id = $1"
    ))
    .bind(id.get())
    .fetch_optional(db.pool())
    .await?;
    row.map(|row| campaign_of(&row, row.try_get("used")?))
        .transpose()
}

/// The claim rule of a campaign, or `None`.
///
/// # Errors
/// Database errors.
pub async fn rule(db: &Db, id: CampaignId) -> Result<Option<CampaignRule>, StoreError> {
    let row =
        sqlx::query("SELECT id, quantity, starts_at, ends_at FROM coupon_campaigns WHERE id = $1")
            .bind(id.get())
            .fetch_optional(db.pool())
            .await?;
    row.as_ref().map(rule_of).transpose()
}

/// The claim rule in `row` (`id`, `quantity`, `starts_at`, `ends_at`).
fn rule_of(row: &PgRow) -> Result<CampaignRule, StoreError> {
    Ok(CampaignRule {
        id: CampaignId::new(row.try_get("id")?)
            .map_err(|_| StoreError::Invariant("a campaign id is not positive"))?,
        quantity: row.try_get("quantity")?,
        starts_at: row.try_get("starts_at")?,
        ends_at: row.try_get("ends_at")?,
    })
}

/// Issues a coupon of `campaign` to `fan` if one is left (see the module
/// docs).
///
/// `lock_timeout_ms`, when given, replaces the connection's `lock_timeout`
/// for this claim alone (the statement then runs in its own transaction
/// with `set_config('lock_timeout', …, true)`). Every claim serializes on
/// the campaign's row, each holding its lock through its commit, so a
/// burst of claims queues there. Through the Redis gate at most
/// `quantity` claims ever reach Postgres, which bounds that queue, and
/// the caller passes the longer wait; on the exact path, when Redis is
/// down, the queue is unbounded and the general timeout sheds it.
///
/// # Errors
/// Database errors, a lock wait past the timeout among them: nothing was
/// issued.
pub async fn issue(
    db: &Db,
    campaign: CampaignId,
    fan: &UserId,
    lock_timeout_ms: Option<u64>,
) -> Result<Issue, StoreError> {
    let code = CouponCode::generate();
    let claim = sqlx::query(sql::COUPON_ISSUE)
        .bind(campaign.get())
        .bind(fan.as_str())
        .bind(code.as_str());
    let issued = match lock_timeout_ms {
        None => claim.fetch_optional(db.pool()).await,
        Some(ms) => {
            let mut tx = db.pool().begin().await?;
            sqlx::query("SELECT set_config('lock_timeout', $1, true)")
                .bind(ms.to_string())
                .execute(&mut *tx)
                .await?;
            match claim.fetch_optional(&mut *tx).await {
                Ok(row) => tx.commit().await.map(|()| row),
                // Dropping `tx` rolls it back.
                Err(error) => Err(error),
            }
        }
    };
    match issued {
        Ok(Some(row)) => Ok(Issue::Issued(coupon_of(&row)?)),
        // A concurrent claim of the same fan committed first.
        Err(error) if sqlstate(&error).as_deref() == Some("23505") => Ok(Issue::AlreadyClaimed(
            fan_coupon(db, campaign, fan)
                .await?
                .ok_or(StoreError::Invariant("a conflicting coupon is missing"))?,
        )),
        Err(error) => Err(error.into()),
        Ok(None) => {
            if let Some(coupon) = fan_coupon(db, campaign, fan).await? {
                return Ok(Issue::AlreadyClaimed(coupon));
            }
            let open: Option<bool> = sqlx::query_scalar(
                "SELECT starts_at <= now() AND now() < ends_at FROM coupon_campaigns WHERE id = $1",
            )
            .bind(campaign.get())
            .fetch_optional(db.pool())
            .await?;
            Ok(if open == Some(false) {
                Issue::Closed
            } else {
                Issue::SoldOut
            })
        }
    }
}

/// `fan`'s coupon of `campaign`, if any.
///
/// # Errors
/// Database errors.
pub async fn fan_coupon(
    db: &Db,
    campaign: CampaignId,
    fan: &UserId,
) -> Result<Option<Coupon>, StoreError> {
    let row = sqlx::query(concat!(
        coupon_select!(),
        " WHERE c.campaign_id = $1 AND c.user_id = $2"
    ))
    .bind(campaign.get())
    .bind(fan.as_str())
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(coupon_of).transpose()
}

/// `fan`'s coupons, newest first, at most 100.
///
/// # Errors
/// Database errors.
pub async fn fan_coupons(db: &Db, fan: &UserId) -> Result<Vec<Coupon>, StoreError> {
    let rows = sqlx::query(concat!(
        coupon_select!(),
        " WHERE c.user_id = $1 ORDER BY c.issued_at DESC, c.code LIMIT 100"
    ))
    .bind(fan.as_str())
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(coupon_of).collect()
}

/// The fans holding a coupon of `campaign`, sorted by their bytes (as
/// Rust compares strings; the database's collation may order differently).
///
/// # Errors
/// Database errors.
pub async fn holders(db: &Db, campaign: CampaignId) -> Result<Vec<String>, StoreError> {
    let mut fans: Vec<String> =
        sqlx::query_scalar("SELECT user_id FROM coupons WHERE campaign_id = $1")
            .bind(campaign.get())
            .fetch_all(db.pool())
            .await?;
    fans.sort_unstable();
    Ok(fans)
}

/// Campaigns whose Redis keys may still live: `ends_at` within the last
/// `keys_outlive_seconds`, or later. Oldest end first, at most 1,000.
///
/// # Errors
/// Database errors.
pub async fn live_campaigns(
    db: &Db,
    keys_outlive_seconds: u64,
) -> Result<Vec<CampaignRule>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, quantity, starts_at, ends_at FROM coupon_campaigns \
         WHERE ends_at > now() - make_interval(secs => $1) AND starts_at <= now() \
         ORDER BY ends_at LIMIT 1000",
    )
    .bind(keys_outlive_seconds as f64)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(rule_of).collect()
}

/// Records a reconciliation's report on its campaign.
///
/// # Errors
/// Database errors.
pub async fn record_reconciliation(db: &Db, report: &Reconciliation) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE coupon_campaigns SET reconciled_at = $2, reconcile_fixes = reconcile_fixes + $3, \
         last_reconcile = $4 WHERE id = $1",
    )
    .bind(report.campaign_id)
    .bind(report.at)
    .bind(report.fixes)
    .bind(serde_json::to_value(report).map_err(StoreError::Encode)?)
    .execute(db.pool())
    .await?;
    Ok(())
}
