//! First-come coupons: campaigns of `quantity` coupons that fans claim
//! within a window, issued through Redis with Postgres as the record.
//!
//! A claim, as the seed's coupon-and-ranking review designs it (reserve in
//! Redis, then issue in the database), with the weaknesses it lists fixed:
//! 1. the window is checked against the campaign (cached: campaigns never
//!    change once created);
//! 2. one atomic Redis script ([`gate`]) reserves a place: already
//!    claimed? stock left? then `INCR` and `SADD`. Of 10,000 fans racing
//!    for 100 coupons, about 100 reach Postgres and the rest are answered
//!    from Redis alone;
//! 3. the coupon is written to Postgres ([`crate::store::coupons::issue`]), whose
//!    conditional `UPDATE` is exact by itself;
//! 4. when that write fails, or Postgres finds the campaign sold out after
//!    all (Redis behind the record), the reservation is compensated
//!    (`SREM`, `DECR`). A compensation that fails is logged and counted
//!    (`coupon_compensation_failures_total`, alerted on);
//! 5. a reconciliation job ([`reconcile`]) makes Redis match Postgres every
//!    `coupons.reconcile_interval_seconds` and records what it fixed.
//!
//! **Redis down: the exact Postgres path.** When the Redis call fails, the
//! claim goes straight to step 3. It never over-issues, because the
//! conditional `UPDATE` alone is exact; it serializes claims on the
//! campaign's row, which the pool bounds, and it keeps a first-come sale
//! going instead of turning every fan away with 503 during an outage of a
//! component that is not the record. Reconciliation then adds the fans
//! issued meanwhile to Redis. Redis behind the record only costs extra
//! Postgres attempts, never an extra coupon.
//!
//! # Layout
//! - `gate`: the Redis scripts (`lua/claim.lua`, `compensate.lua`,
//!   `repair.lua`);
//! - `reconcile`: the reconciliation job;
//! - this module: [`Coupons`], the transport-free claim and campaign rules,
//!   failing with [`CouponError`].

pub mod gate;
pub mod reconcile;

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use platform::{redis_pool::RedisPool, shutdown::CancellationToken};

use self::gate::{CouponGate, Gate};
use crate::{
    api::coupons::{Campaign, Coupon, Discount, NewCampaign, Reconciliation},
    db::Db,
    domain::{CampaignId, UserId},
    metrics,
    settings::CouponSettings,
    store::{
        StoreError,
        coupons::{self as store, CampaignRule, Issue},
    },
};

/// Why a coupon request failed.
#[derive(Debug, thiserror::Error)]
pub enum CouponError {
    /// No such campaign (404).
    #[error("campaign not found")]
    NotFound,
    /// Claims have not opened yet (403 `campaign_not_started`).
    #[error("claims open at {0}")]
    NotStarted(chrono::DateTime<Utc>),
    /// Claims have closed (403 `campaign_closed`).
    #[error("claims closed at {0}")]
    Closed(chrono::DateTime<Utc>),
    /// Every coupon is issued (409 `sold_out`).
    #[error("every coupon of this campaign is issued")]
    SoldOut,
    /// The fan holds one already (409 `already_claimed`, with it).
    #[error("you already hold a coupon of this campaign")]
    AlreadyClaimed(Box<Coupon>),
    /// A campaign body breaks a rule (422 `invalid_field`).
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Redis failed where no Postgres path exists (reconciliation): 503.
    #[error("redis unavailable")]
    Redis(#[from] platform::redis_pool::RedisCallError),
}

/// The coupon service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Coupons {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Db,
    gate: CouponGate,
    settings: CouponSettings,
    /// Claim rules by campaign id; campaigns never change once created.
    rules: moka::sync::Cache<i64, CampaignRule>,
}

impl Coupons {
    /// The service over `db` and `redis`, with Redis keys after `prefix`.
    pub fn new(db: Db, redis: Arc<RedisPool>, prefix: String, settings: CouponSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                gate: CouponGate::new(redis, prefix),
                settings,
                rules: moka::sync::Cache::new(10_000),
            }),
        }
    }

    /// Creates a campaign.
    ///
    /// # Errors
    /// [`CouponError::Invalid`] for a name outside 1–200 characters, both
    /// scopes at once, `ends_at` not after `starts_at`, a quantity outside
    /// 1–10,000,000, a validity outside 60 s–365 days, or a percentage
    /// outside 1–100; [`CouponError::Store`] with `NotFound` for an unknown
    /// concert or performance.
    pub async fn create_campaign(&self, new: &NewCampaign) -> Result<Campaign, CouponError> {
        let invalid = |msg: &str| Err(CouponError::Invalid(msg.to_owned()));
        let name = new.name.chars().count();
        if name == 0
            || name > 200
            || new.name.trim() != new.name
            || new.name.chars().any(char::is_control)
        {
            return invalid(
                "name must be 1-200 characters, without control characters or surrounding whitespace",
            );
        }
        if new.concert_id.is_some() && new.performance_id.is_some() {
            return invalid("give concert_id or performance_id, not both");
        }
        if new.ends_at <= new.starts_at {
            return invalid("ends_at must be after starts_at");
        }
        if !(1..=10_000_000).contains(&new.quantity) {
            return invalid("quantity must be between 1 and 10000000");
        }
        if !(60..=31_536_000).contains(&new.valid_for_seconds) {
            return invalid("valid_for_seconds must be between 60 and 31536000");
        }
        if let Discount::Percent { percent, .. } = new.discount
            && !(1..=100).contains(&percent)
        {
            return invalid("discount.percent must be between 1 and 100");
        }
        Ok(store::create_campaign(&self.inner.db, new).await?)
    }

    /// A campaign with its counts: Postgres's, and the compensations Redis
    /// recorded (`null` while Redis is unreachable).
    ///
    /// # Errors
    /// [`CouponError::NotFound`]; [`CouponError::Store`].
    pub async fn campaign(&self, id: CampaignId) -> Result<Campaign, CouponError> {
        let mut campaign = store::campaign(&self.inner.db, id)
            .await?
            .ok_or(CouponError::NotFound)?;
        campaign.counts.compensated = self.inner.gate.compensated(id).await.ok();
        Ok(campaign)
    }

    async fn rule(&self, id: CampaignId) -> Result<CampaignRule, CouponError> {
        if let Some(rule) = self.inner.rules.get(&id.get()) {
            return Ok(rule);
        }
        let rule = store::rule(&self.inner.db, id)
            .await?
            .ok_or(CouponError::NotFound)?;
        self.inner.rules.insert(id.get(), rule.clone());
        Ok(rule)
    }

    /// How long a campaign's keys live from now, in seconds: until
    /// `coupons.key_ttl_after_end_seconds` past its end.
    fn key_ttl(&self, rule: &CampaignRule) -> u64 {
        let after =
            i64::try_from(self.inner.settings.key_ttl_after_end_seconds).unwrap_or(i64::MAX);
        let left = (rule.ends_at - Utc::now())
            .num_seconds()
            .saturating_add(after);
        u64::try_from(left).unwrap_or(1).max(1)
    }

    /// Claims a coupon of campaign `id` for `fan` (see the module docs).
    ///
    /// # Errors
    /// [`CouponError::NotFound`], [`CouponError::NotStarted`],
    /// [`CouponError::Closed`], [`CouponError::SoldOut`],
    /// [`CouponError::AlreadyClaimed`]; [`CouponError::Store`] when
    /// Postgres fails (the Redis reservation is then compensated).
    pub async fn claim(&self, id: CampaignId, fan: &UserId) -> Result<Coupon, CouponError> {
        let rule = self.rule(id).await?;
        let now = Utc::now();
        if now < rule.starts_at {
            return Err(CouponError::NotStarted(rule.starts_at));
        }
        if now >= rule.ends_at {
            return Err(CouponError::Closed(rule.ends_at));
        }
        let ttl = self.key_ttl(&rule);
        let gate = &self.inner.gate;
        let reserved = match gate.reserve(id, fan, rule.quantity, ttl).await {
            Ok(Gate::SoldOut) => {
                metrics::coupon_claim("sold_out", "redis");
                return Err(CouponError::SoldOut);
            }
            Ok(Gate::Already) => {
                // Redis says the fan has one; Postgres has it unless the
                // claim is still being written or its compensation failed,
                // and the exact path settles both.
                if let Some(coupon) = store::fan_coupon(&self.inner.db, id, fan).await? {
                    metrics::coupon_claim("already_claimed", "redis");
                    return Err(CouponError::AlreadyClaimed(Box::new(coupon)));
                }
                false
            }
            Ok(Gate::Reserved) => true,
            Err(error) => {
                tracing::warn!(
                    error = %platform::problem::ErrorChain(&error),
                    campaign_id = id.get(),
                    "redis unreachable; claiming on the exact Postgres path"
                );
                false
            }
        };
        let path = if reserved { "redis" } else { "postgres" };
        // A reserved place is one of at most `quantity` claims to reach
        // Postgres, so it may wait longer on the campaign's row.
        let lock_timeout = reserved.then_some(self.inner.settings.claim_lock_timeout_ms);
        let issued = store::issue(&self.inner.db, id, fan, lock_timeout).await;
        let outcome = match issued {
            Ok(Issue::Issued(coupon)) => {
                metrics::coupon_claim("claimed", path);
                return Ok(coupon);
            }
            Ok(Issue::AlreadyClaimed(coupon)) => {
                metrics::coupon_claim("already_claimed", path);
                return Err(CouponError::AlreadyClaimed(Box::new(coupon)));
            }
            Ok(Issue::SoldOut) => Err(CouponError::SoldOut),
            Ok(Issue::Closed) => Err(CouponError::Closed(rule.ends_at)),
            Err(error) => Err(CouponError::Store(error)),
        };
        let result = match &outcome {
            Err(CouponError::SoldOut) => "sold_out",
            Err(CouponError::Closed(_)) => "closed",
            _ => "error",
        };
        metrics::coupon_claim(result, path);
        if reserved {
            self.compensate(id, fan, ttl).await;
        }
        outcome
    }

    /// Undoes `fan`'s Redis reservation, logging and counting a failure.
    async fn compensate(&self, id: CampaignId, fan: &UserId, ttl: u64) {
        match self.inner.gate.compensate(id, fan, ttl).await {
            Ok(_) => metrics::coupon_compensation(true),
            Err(error) => {
                metrics::coupon_compensation(false);
                tracing::error!(
                    error = %platform::problem::ErrorChain(&error),
                    campaign_id = id.get(),
                    "compensating a coupon reservation failed; reconciliation will repair it"
                );
            }
        }
    }

    /// The fan's own coupons, newest first (at most 100).
    ///
    /// # Errors
    /// [`CouponError::Store`].
    pub async fn fan_coupons(&self, fan: &UserId) -> Result<Vec<Coupon>, CouponError> {
        Ok(store::fan_coupons(&self.inner.db, fan).await?)
    }

    /// Reconciles campaign `id` now (see [`reconcile`]).
    ///
    /// # Errors
    /// [`CouponError::NotFound`]; [`CouponError::Store`];
    /// [`CouponError::Redis`].
    pub async fn reconcile(&self, id: CampaignId) -> Result<Reconciliation, CouponError> {
        let rule = self.rule(id).await?;
        reconcile::campaign(&self.inner.db, &self.inner.gate, &rule, self.key_ttl(&rule)).await
    }

    /// Starts the reconciliation job (unless
    /// `coupons.reconcile_interval_seconds` is 0), stopped by `shutdown`.
    pub fn spawn_workers(&self, shutdown: &CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
        let every = self.inner.settings.reconcile_interval_seconds;
        if every == 0 {
            return Vec::new();
        }
        let this = self.clone();
        let shutdown = shutdown.clone();
        vec![tokio::spawn(async move {
            // The first pass one period after start, not at start: a
            // service starting (or restarting) during a sale adds no work
            // then, and a claim's own compensation covers the meantime.
            let period = Duration::from_secs(every);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = tick.tick() => this.reconcile_live().await,
                }
            }
        })]
    }

    /// One pass of the job over every campaign whose keys may still live.
    async fn reconcile_live(&self) {
        let settings = &self.inner.settings;
        let live = match store::live_campaigns(&self.inner.db, settings.key_ttl_after_end_seconds)
            .await
        {
            Ok(live) => live,
            Err(error) => {
                tracing::warn!(error = %platform::problem::ErrorChain(&error), "listing campaigns to reconcile failed");
                return;
            }
        };
        for rule in live {
            let ttl = self.key_ttl(&rule);
            match reconcile::campaign(&self.inner.db, &self.inner.gate, &rule, ttl).await {
                Ok(report) if report.fixes > 0 => tracing::info!(
                    campaign_id = report.campaign_id,
                    fans_added = report.fans_added,
                    fans_removed = report.fans_removed,
                    redis_issued_before = report.redis_issued_before,
                    postgres_issued = report.postgres_issued,
                    "reconciled a coupon campaign's Redis state"
                ),
                Ok(_) => {}
                Err(error) => tracing::warn!(
                    error = %platform::problem::ErrorChain(&error),
                    campaign_id = rule.id.get(),
                    "reconciling a coupon campaign failed; retrying next pass"
                ),
            }
        }
    }
}
