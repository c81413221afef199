//! The `[coupons]` and `[ranking]` sections: first-come coupons issued
//! through Redis, and the popular-concert ranking kept in Redis with
//! Postgres snapshots.

use platform::settings::SettingsError;
use serde::Deserialize;

/// The `[coupons]` section.
#[derive(Debug, Clone, Deserialize)]
pub struct CouponSettings {
    /// How long a campaign's Redis keys outlive its `ends_at`, in seconds
    /// (default 86,400: a day). They are of no use once claims close, but
    /// the reconciliation job and the admin counts read them for a while.
    #[serde(default = "defaults::key_ttl_after_end_seconds")]
    pub key_ttl_after_end_seconds: u64,
    /// Period of the reconciliation job, in seconds (default 60; 0 turns it
    /// off, e.g. in tests that run it by hand).
    #[serde(default = "defaults::reconcile_interval_seconds")]
    pub reconcile_interval_seconds: u64,
    /// How long a claim that passed the Redis gate waits for the
    /// campaign's row lock, in ms (default 2,000; 1 to 10,000), instead of
    /// `database.lock_timeout_ms`. Claims serialize on that row, each
    /// through its commit, and the gate lets at most `quantity` of them
    /// through: at the on-sale simulation's opening 200 coupons queued
    /// there past the general 200 ms and 40 fans were shed with 503
    /// (docs/reliability.md). Claims on the exact path, without Redis,
    /// keep the general timeout, since nothing bounds their queue.
    #[serde(default = "defaults::claim_lock_timeout_ms")]
    pub claim_lock_timeout_ms: u64,
}

impl Default for CouponSettings {
    fn default() -> Self {
        Self {
            key_ttl_after_end_seconds: defaults::key_ttl_after_end_seconds(),
            reconcile_interval_seconds: defaults::reconcile_interval_seconds(),
            claim_lock_timeout_ms: defaults::claim_lock_timeout_ms(),
        }
    }
}

/// The `[ranking]` section.
#[derive(Debug, Clone, Deserialize)]
pub struct RankingSettings {
    /// Consume `payment.completed` into the ranking (default true).
    #[serde(default = "defaults::enabled")]
    pub consumer: bool,
    /// Width of one Redis sorted-set bucket, in seconds (default 600: ten
    /// minutes, so a one-hour window is six buckets). Must divide 3,600.
    #[serde(default = "defaults::bucket_seconds")]
    pub bucket_seconds: u64,
    /// Period of the Postgres snapshot of each window's top 100, in seconds
    /// (default 600, as the seed's coupon-and-ranking review backs up every
    /// ten minutes; 0 turns it off).
    #[serde(default = "defaults::snapshot_interval_seconds")]
    pub snapshot_interval_seconds: u64,
    /// Snapshots older than this are purged, in days (default 7).
    #[serde(default = "defaults::snapshot_retention_days")]
    pub snapshot_retention_days: u64,
    /// Lifetime of a cached ranking answer, in ms (default 1,000; at most
    /// 1,000).
    #[serde(default = "defaults::cache_ms")]
    pub cache_ms: u64,
    /// Period of the job that replays into Redis the sales recorded while
    /// Redis was down, in ms (default 5,000).
    #[serde(default = "defaults::replay_interval_ms")]
    pub replay_interval_ms: u64,
}

impl Default for RankingSettings {
    fn default() -> Self {
        Self {
            consumer: true,
            bucket_seconds: defaults::bucket_seconds(),
            snapshot_interval_seconds: defaults::snapshot_interval_seconds(),
            snapshot_retention_days: defaults::snapshot_retention_days(),
            cache_ms: defaults::cache_ms(),
            replay_interval_ms: defaults::replay_interval_ms(),
        }
    }
}

impl CouponSettings {
    /// Checks the rules serde cannot express.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] naming the broken rule.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.key_ttl_after_end_seconds == 0 || self.key_ttl_after_end_seconds > 30 * 86_400 {
            return Err(SettingsError::Invalid(
                "coupons.key_ttl_after_end_seconds must be between 1 and 2592000".into(),
            ));
        }
        if !(1..=10_000).contains(&self.claim_lock_timeout_ms) {
            return Err(SettingsError::Invalid(
                "coupons.claim_lock_timeout_ms must be between 1 and 10000".into(),
            ));
        }
        Ok(())
    }
}

impl RankingSettings {
    /// Checks the rules serde cannot express.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] naming the broken rule.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |msg: &str| Err(SettingsError::Invalid(msg.to_owned()));
        if self.bucket_seconds < 60 || 3_600 % self.bucket_seconds != 0 {
            return invalid("ranking.bucket_seconds must be at least 60 and divide 3600");
        }
        if self.cache_ms > 1_000 {
            return invalid("ranking.cache_ms must be at most 1000");
        }
        if self.snapshot_retention_days == 0 || self.snapshot_retention_days > 365 {
            return invalid("ranking.snapshot_retention_days must be between 1 and 365");
        }
        if self.replay_interval_ms == 0 {
            return invalid("ranking.replay_interval_ms must be at least 1");
        }
        Ok(())
    }
}

mod defaults {
    pub(super) fn enabled() -> bool {
        true
    }
    pub(super) fn key_ttl_after_end_seconds() -> u64 {
        86_400
    }
    pub(super) fn reconcile_interval_seconds() -> u64 {
        60
    }
    pub(super) fn claim_lock_timeout_ms() -> u64 {
        2_000
    }
    pub(super) fn bucket_seconds() -> u64 {
        600
    }
    pub(super) fn snapshot_interval_seconds() -> u64 {
        600
    }
    pub(super) fn snapshot_retention_days() -> u64 {
        7
    }
    pub(super) fn cache_ms() -> u64 {
        1_000
    }
    pub(super) fn replay_interval_ms() -> u64 {
        5_000
    }
}
