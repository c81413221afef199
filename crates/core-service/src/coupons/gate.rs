//! The Redis side of first-come coupons: the gate that lets at most
//! `quantity` fans through to Postgres, one atomic script per step.
//!
//! Keys of campaign `id` share the hash tag `{coupon:<id>}`, so each script
//! runs on one cluster node, after the deployment's key prefix:
//! - `<prefix>{coupon:<id>}:issued`: reservations counted (a string);
//! - `<prefix>{coupon:<id>}:fans`: the fans holding one (a set);
//! - `<prefix>{coupon:<id>}:stats`: `compensated` (a hash).
//!
//! Every key expires `coupons.key_ttl_after_end_seconds` after the
//! campaign's `ends_at`.

use std::sync::{Arc, LazyLock};

use platform::redis_pool::{RedisCallError, RedisPool};
use redis::Script;

use crate::domain::{CampaignId, UserId};

static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/claim.lua")));
static COMPENSATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/compensate.lua")));
static REPAIR: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/repair.lua")));

/// The claim script's source, for the benchmark's redis-benchmark baseline
/// (`KEYS[1]` counter, `KEYS[2]` fans set; `ARGV` fan, quantity, TTL).
pub const CLAIM_SCRIPT: &str = include_str!("lua/claim.lua");

/// Fans added or removed per repair call, so one call stays short.
const REPAIR_CHUNK: usize = 1_000;

/// What the claim script decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// The fan got one of the `quantity` places.
    Reserved,
    /// The fan already holds a place.
    Already,
    /// Every place is taken.
    SoldOut,
}

/// The campaign's Redis state as reconciliation read it.
#[derive(Debug, Clone, Default)]
pub struct GateState {
    /// The counter (`None`: no key).
    pub issued: Option<i64>,
    /// The fans in the set.
    pub fans: Vec<String>,
}

/// The scripts over one pool and key prefix. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CouponGate {
    redis: Arc<RedisPool>,
    prefix: String,
}

impl CouponGate {
    /// The gate on `redis`, with keys after `prefix`.
    pub fn new(redis: Arc<RedisPool>, prefix: String) -> Self {
        Self { redis, prefix }
    }

    fn key(&self, campaign: CampaignId, part: &str) -> String {
        format!("{}{{coupon:{}}}:{part}", self.prefix, campaign.get())
    }

    /// Reserves a place for `fan` among `quantity`, keeping the keys for
    /// `ttl_seconds` from their creation.
    ///
    /// # Errors
    /// [`RedisCallError`] when Redis is unreachable or slow.
    pub async fn reserve(
        &self,
        campaign: CampaignId,
        fan: &UserId,
        quantity: i32,
        ttl_seconds: u64,
    ) -> Result<Gate, RedisCallError> {
        let mut invocation = CLAIM.prepare_invoke();
        invocation
            .key(self.key(campaign, "issued"))
            .key(self.key(campaign, "fans"))
            .arg(fan.as_str())
            .arg(quantity)
            .arg(ttl_seconds);
        let (status, _issued): (String, i64) = self.redis.run_script(&invocation).await?;
        Ok(match status.as_str() {
            "reserved" => Gate::Reserved,
            "already" => Gate::Already,
            _ => Gate::SoldOut,
        })
    }

    /// Undoes `fan`'s reservation; `true` when there was one to undo.
    ///
    /// # Errors
    /// [`RedisCallError`]: the reservation stays until reconciliation.
    pub async fn compensate(
        &self,
        campaign: CampaignId,
        fan: &UserId,
        ttl_seconds: u64,
    ) -> Result<bool, RedisCallError> {
        let mut invocation = COMPENSATE.prepare_invoke();
        invocation
            .key(self.key(campaign, "issued"))
            .key(self.key(campaign, "fans"))
            .key(self.key(campaign, "stats"))
            .arg(fan.as_str())
            .arg(ttl_seconds.max(1));
        let undone: i64 = self.redis.run_script(&invocation).await?;
        Ok(undone == 1)
    }

    /// Reservations undone so far (the stats hash's `compensated`).
    ///
    /// # Errors
    /// [`RedisCallError`].
    pub async fn compensated(&self, campaign: CampaignId) -> Result<i64, RedisCallError> {
        let count: Option<i64> = self
            .redis
            .query(
                redis::cmd("HGET")
                    .arg(self.key(campaign, "stats"))
                    .arg("compensated"),
            )
            .await?;
        Ok(count.unwrap_or(0))
    }

    /// Reads the counter and every fan in the set (`SSCAN`, 1,000 at a
    /// time, so a large set never blocks Redis in one call).
    ///
    /// # Errors
    /// [`RedisCallError`].
    pub async fn state(&self, campaign: CampaignId) -> Result<GateState, RedisCallError> {
        let issued: Option<i64> = self
            .redis
            .query(redis::cmd("GET").arg(self.key(campaign, "issued")))
            .await?;
        let fans_key = self.key(campaign, "fans");
        let mut fans = Vec::new();
        let mut cursor = 0_u64;
        loop {
            let (next, page): (u64, Vec<String>) = self
                .redis
                .query(
                    redis::cmd("SSCAN")
                        .arg(&fans_key)
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(REPAIR_CHUNK),
                )
                .await?;
            fans.extend(page);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        // SSCAN may return a member twice.
        fans.sort_unstable();
        fans.dedup();
        Ok(GateState { issued, fans })
    }

    /// Adds `add` to and removes `remove` from the set, in chunks, then
    /// sets the counter to the set's size. Returns (added, removed, issued).
    ///
    /// # Errors
    /// [`RedisCallError`]: the next reconciliation tries again.
    pub async fn repair(
        &self,
        campaign: CampaignId,
        add: &[String],
        remove: &[String],
        ttl_seconds: u64,
    ) -> Result<(i64, i64, i64), RedisCallError> {
        let (mut added, mut removed) = (0, 0);
        let mut adds = add.chunks(REPAIR_CHUNK);
        let mut removes = remove.chunks(REPAIR_CHUNK);
        loop {
            let (a, r) = (adds.next().unwrap_or(&[]), removes.next().unwrap_or(&[]));
            let mut invocation = REPAIR.prepare_invoke();
            invocation
                .key(self.key(campaign, "issued"))
                .key(self.key(campaign, "fans"))
                .arg(ttl_seconds.max(1))
                .arg(a.len());
            for fan in a.iter().chain(r) {
                invocation.arg(fan);
            }
            let (a_n, r_n, total): (i64, i64, i64) = self.redis.run_script(&invocation).await?;
            added += a_n;
            removed += r_n;
            if adds.len() == 0 && removes.len() == 0 {
                return Ok((added, removed, total));
            }
        }
    }
}
