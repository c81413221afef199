//! The Redis side of the ranking: the key layout and its scripts
//! (`lua/apply.lua` counts sales, `lua/top.lua` reads a window,
//! `lua/finish_rebuild.lua` ends a rebuild), each one atomic round trip.
//!
//! Every key carries the hash tag `{ranking}` after the deployment's key
//! prefix (which must not contain braces), so one script may touch several
//! keys on a Redis Cluster. They all live in one slot, hence on one shard:
//! the writes come at the payment rate and the reads are bounded by the
//! answer cache, which one shard carries easily.
//! - `<prefix>{ranking}:bucket:<start>`: a sorted set per bucket of
//!   `ranking.bucket_seconds`, `<start>` its first second (Unix time, a
//!   multiple of the width). Member: the concert id zero-padded to 19
//!   digits, so that the order Redis gives equal scores (by member) is the
//!   numeric one; score: tickets sold by payments whose `paid_at` falls in
//!   the bucket. Expires 24 h + one bucket after `<start>`: the 24-hour
//!   window reads it until `<start>` + 24 h, with one bucket to spare for
//!   clock skew. A fixed expiry, not one renewed on each write, so a late
//!   replay never keeps an old bucket alive.
//! - `<prefix>{ranking}:seen:<payment_id>`: `1` once the payment is
//!   counted. Set in the same script as the count, so a payment counts at
//!   most once per Redis data set, however often it is applied. Expires
//!   24 h + one bucket after it is set, by which time its bucket has left
//!   every window (and expired).
//! - `<prefix>{ranking}:ready`: present once the buckets hold every sale of
//!   `ranking_sales` (set by the rebuild, [`super::consumer`]); no expiry.
//!   Missing means Redis lost its data (a restart without persistence, a
//!   flush, a failover to an empty replica) or the ranking never ran on
//!   this Redis.
//! - `<prefix>{ranking}:rebuild`: the token of the rebuild under way
//!   (expires after an hour); the marker is set only if it is still there
//!   when the rebuild ends (`lua/finish_rebuild.lua`).

use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use platform::redis_pool::{RedisCallError, RedisPool};
use redis::Script;
use uuid::Uuid;

use crate::api::ranking::RankingWindow;

static APPLY: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/apply.lua")));
static TOP: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/top.lua")));
static FINISH_REBUILD: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/finish_rebuild.lua")));

/// A day, in seconds: the longest window.
const DAY: i64 = 86_400;

/// One completed payment as the ranking counts it (a `ranking_sales` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sale {
    /// The payment; counted at most once.
    pub(crate) payment_id: Uuid,
    /// The concert of the performance paid for.
    pub(crate) concert_id: i64,
    /// Seats bought (at least 1).
    pub(crate) tickets: i32,
    /// Commit time of the payment: picks the bucket.
    pub(crate) paid_at: DateTime<Utc>,
}

/// The best concerts of a window as Redis has them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Top {
    /// Whether the ready marker exists (see the module docs): false means
    /// the counts may be missing sales that only a rebuild restores.
    pub(crate) ready: bool,
    /// `(concert id, tickets)`, tickets descending then id ascending, at
    /// most the limit asked for.
    pub(crate) entries: Vec<(i64, i64)>,
}

/// The ranking's keys and scripts over one pool. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Buckets {
    redis: Arc<RedisPool>,
    prefix: String,
    /// Bucket width in seconds (`ranking.bucket_seconds`, divides 3,600).
    width: i64,
}

impl Buckets {
    /// The keys after `prefix` on `redis`, with buckets `width_seconds`
    /// wide.
    pub(crate) fn new(redis: Arc<RedisPool>, prefix: String, width_seconds: u64) -> Self {
        Self {
            redis,
            prefix,
            width: i64::try_from(width_seconds).unwrap_or(600).max(1),
        }
    }

    fn key(&self, part: &str) -> String {
        format!("{}{{ranking}}:{part}", self.prefix)
    }

    fn bucket_key(&self, start: i64) -> String {
        self.key(&format!("bucket:{start}"))
    }

    /// First second of the bucket holding `at` (Unix time).
    pub(crate) fn bucket_start(&self, at: DateTime<Utc>) -> i64 {
        at.timestamp().div_euclid(self.width) * self.width
    }

    /// When the bucket starting at `start` expires (Unix time): 24 h plus
    /// one bucket later.
    fn bucket_expiry(&self, start: i64) -> i64 {
        start + DAY + self.width
    }

    /// Whether a sale paid at `paid_at` still counts in some window at
    /// `now`: its bucket has not expired. Older sales are not sent to Redis
    /// at all (they would only create a bucket no window reads).
    pub(crate) fn still_ranked(&self, paid_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.bucket_expiry(self.bucket_start(paid_at)) > now.timestamp()
    }

    /// The start of the oldest bucket still alive at `now` (24 h before
    /// the current one): where a rebuild starts reading `ranking_sales`.
    pub(crate) fn oldest_ranked(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let from = self.bucket_start(now) - DAY;
        DateTime::from_timestamp(from, 0).unwrap_or(now)
    }

    /// Lifetime of a seen key, in seconds.
    fn seen_ttl(&self) -> i64 {
        DAY + self.width
    }

    /// Starts of the buckets covering `window` at `now`, newest first: the
    /// current one and the whole ones before it.
    fn window_starts(&self, window: RankingWindow, now: DateTime<Utc>) -> Vec<i64> {
        let count = i64::try_from(window.seconds()).unwrap_or(DAY) / self.width;
        let current = self.bucket_start(now);
        (0..count.max(1))
            .map(|i| current - i * self.width)
            .collect()
    }

    /// Counts `sales` (one script call), each at most once ever (its seen
    /// key); sales whose bucket has expired are skipped without a call.
    /// Returns how many this call counted; the rest were counted before.
    ///
    /// # Errors
    /// [`RedisCallError`] when Redis is unreachable or slow: then nothing
    /// or everything of this call was applied (a script is atomic), and
    /// applying the same sales again is safe either way.
    pub(crate) async fn apply(
        &self,
        sales: &[Sale],
        now: DateTime<Utc>,
    ) -> Result<u64, RedisCallError> {
        let mut invocation = APPLY.prepare_invoke();
        invocation.arg(self.seen_ttl());
        let mut sent = 0;
        for sale in sales.iter().filter(|s| self.still_ranked(s.paid_at, now)) {
            let start = self.bucket_start(sale.paid_at);
            invocation
                .key(self.key(&format!("seen:{}", sale.payment_id)))
                .key(self.bucket_key(start))
                .arg(sale.tickets)
                .arg(member(sale.concert_id))
                .arg(self.bucket_expiry(start));
            sent += 1;
        }
        if sent == 0 {
            return Ok(0);
        }
        self.redis.run_script(&invocation).await
    }

    /// The best `limit` concerts of `window` at `now`, and whether the
    /// ready marker exists.
    ///
    /// # Errors
    /// [`RedisCallError`] when Redis is unreachable or slow.
    pub(crate) async fn top(
        &self,
        window: RankingWindow,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Top, RedisCallError> {
        let mut invocation = TOP.prepare_invoke();
        invocation.key(self.key("ready"));
        for start in self.window_starts(window, now) {
            invocation.key(self.bucket_key(start));
        }
        invocation.arg(limit.max(1));
        let reply: Vec<String> = self.redis.run_script(&invocation).await?;
        let mut reply = reply.into_iter();
        let ready = reply.next().as_deref() == Some("1");
        let mut entries = Vec::new();
        while let (Some(member), Some(score)) = (reply.next(), reply.next()) {
            // Scores are sums of whole tickets, far below 2^53.
            if let (Ok(id), Ok(score)) = (member.parse::<i64>(), score.parse::<f64>())
                && score >= 1.0
            {
                entries.push((id, score as i64));
            }
        }
        entries.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        entries.truncate(limit);
        Ok(Top { ready, entries })
    }

    /// Whether the ready marker exists.
    ///
    /// # Errors
    /// [`RedisCallError`].
    pub(crate) async fn is_ready(&self) -> Result<bool, RedisCallError> {
        let found: i64 = self
            .redis
            .query(redis::cmd("EXISTS").arg(self.key("ready")))
            .await?;
        Ok(found == 1)
    }

    /// Records `token` as the rebuild under way (for an hour at most).
    ///
    /// # Errors
    /// [`RedisCallError`].
    pub(crate) async fn begin_rebuild(&self, token: Uuid) -> Result<(), RedisCallError> {
        let _: String = self
            .redis
            .query(
                redis::cmd("SET")
                    .arg(self.key("rebuild"))
                    .arg(token.to_string())
                    .arg("EX")
                    .arg(3_600),
            )
            .await?;
        Ok(())
    }

    /// Sets the ready marker (its value: `started`, in Unix seconds) if
    /// the rebuild of `token` is still the one recorded; false when not
    /// (Redis lost its data again, or another rebuild began since).
    ///
    /// # Errors
    /// [`RedisCallError`].
    pub(crate) async fn finish_rebuild(
        &self,
        token: Uuid,
        started: DateTime<Utc>,
    ) -> Result<bool, RedisCallError> {
        let mut invocation = FINISH_REBUILD.prepare_invoke();
        invocation
            .key(self.key("rebuild"))
            .key(self.key("ready"))
            .arg(token.to_string())
            .arg(started.timestamp());
        let set: i64 = self.redis.run_script(&invocation).await?;
        Ok(set == 1)
    }
}

/// The sorted-set member of `concert_id`: zero-padded to the 19 digits of
/// `i64::MAX`, so members sort like the ids.
fn member(concert_id: i64) -> String {
    format!("{concert_id:019}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(width: u64) -> Buckets {
        let settings: platform::settings::RedisSettings =
            serde_json::from_value(serde_json::json!({"urls": ["redis://127.0.0.1:1"]})).unwrap();
        let pool = RedisPool::new(&settings, "test_checkout").unwrap();
        Buckets::new(Arc::new(pool), "p:".into(), width)
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    #[test]
    fn an_hour_is_six_ten_minute_buckets_and_a_day_is_one_hundred_forty_four() {
        let b = buckets(600);
        let now = at(1_800_000_123);
        let hour = b.window_starts(RankingWindow::Hour, now);
        assert_eq!(hour.len(), 6);
        assert_eq!(hour[0], 1_800_000_000);
        assert_eq!(hour[5], 1_800_000_000 - 5 * 600);
        assert_eq!(b.window_starts(RankingWindow::Day, now).len(), 144);
        assert_eq!(b.bucket_key(600), "p:{ranking}:bucket:600");
    }

    #[test]
    fn a_sale_counts_until_its_bucket_leaves_the_day_window_plus_one_bucket() {
        let b = buckets(600);
        let paid = at(1_800_000_100);
        assert!(b.still_ranked(paid, at(1_800_000_000 + DAY + 599)));
        assert!(!b.still_ranked(paid, at(1_800_000_000 + DAY + 600)));
        assert_eq!(
            b.oldest_ranked(at(1_800_000_000 + DAY + 599)),
            at(1_800_000_000)
        );
    }

    #[test]
    fn members_sort_like_concert_ids() {
        assert!(member(9) < member(10));
        assert_eq!(member(42).parse::<i64>().unwrap(), 42);
    }
}
