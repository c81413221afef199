//! The popular-concert ranking: tickets sold per concert over the last hour
//! or day, counted in Redis sorted sets from `payment.completed`, recorded
//! in Postgres so nothing is lost, and backed up in Postgres snapshots so
//! the ranking still answers while Redis is down.
//!
//! The design answers section 1 of the seed's coupon-and-ranking review
//! (`../shared/seeds/002_…`, "Redis 장애 시 Fallback 전략 강화"): a Redis
//! outage used to empty the ranking; its fix backs up the top 100 to the
//! database every 10 minutes and serves the backup while Redis fails,
//! then an empty list if the database fails too. Here, besides:
//! - **Writes.** A consumer (group `<group_prefix>-core-ranking`) reads
//!   `payment.completed`, records the sale in `ranking_sales` (one row per
//!   payment, `ON CONFLICT DO NOTHING`), then counts it in Redis with one
//!   script that sets the payment's seen key and, only if it was new, adds
//!   the tickets to the bucket of its `paid_at`; the row is then marked
//!   applied. A redelivery finds the row applied (or the seen key set) and
//!   counts nothing. When Redis fails the row stays pending and the
//!   handler still succeeds: the sale is kept in Postgres, and the replay
//!   job applies pending rows, oldest first, once Redis answers again.
//! - **Lost Redis data.** Redis is a cache of `ranking_sales` here, not
//!   the record: a marker key says the buckets hold every recorded sale.
//!   When it is missing (a node restarted without persistence, a flush, an
//!   empty replica promoted), the replay job rebuilds the buckets from the
//!   sales of the last 24 h, through the same script, so the ranking is
//!   exact again instead of missing everything counted before the loss.
//!   `ranking_sales` keeps applied rows 25 h for that. Only instances with
//!   `ranking.consumer` run the rebuild: where none does, the marker is
//!   never set and every answer says `stale` (nothing keeps it current).
//! - **Reads.** A window is a union of buckets (6 for `1h`, 144 for
//!   `24h`), top `limit`, titles from Postgres (cached). Each answer is
//!   cached in-process for `ranking.cache_ms` (at most 1 s) per window and
//!   limit, with one build at a time per key. Never an error: Redis
//!   unreachable (or its data being rebuilt) → the newest snapshot of the
//!   window, `stale: true`; no snapshot or Postgres down too → an empty
//!   list, `stale: true`.
//! - **Snapshots.** Every `ranking.snapshot_interval_seconds` (600: the
//!   review's 10 minutes) each window's top 100 (the review's size, while
//!   the API shows 10 by default) goes to `ranking_snapshots`; older than
//!   `ranking.snapshot_retention_days` is purged, as are applied sales
//!   older than 25 h.
//!
//! A failed Redis call opens a breaker for one second ([`BREAKER_OPEN`]):
//! meanwhile reads go straight to the snapshot and the consumer leaves
//! sales pending, instead of each waiting out `redis.response_timeout_ms`.
//! The replay job ignores it (it is the probe) and closes it.
//!
//! # Layout
//! - this module: [`Ranking`], the read path with its answer cache and
//!   fallback, and the workers ([`Ranking::spawn_workers`]), failing with
//!   [`RankingError`];
//! - [`consumer`]: the `payment.completed` handler, the replay of pending
//!   sales and the rebuild of lost Redis data;
//! - [`snapshots`]: the snapshot job, its purges and the fallback read;
//! - `buckets`: the Redis keys and scripts (`lua/apply.lua`,
//!   `lua/top.lua`, `lua/finish_rebuild.lua`);
//! - `sales`: the SQL of `ranking_sales` and the catalog lookups.

mod buckets;
pub mod consumer;
mod sales;
pub mod snapshots;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use chrono::Utc;
use platform::{problem::ErrorChain, redis_pool::RedisPool, shutdown::CancellationToken};

use self::buckets::Buckets;
pub use self::{
    consumer::{RankingHandler, SaleOutcome},
    snapshots::Snapshot,
};
use crate::{
    api::ranking::{ConcertRanking, RankedConcert, RankingWindow},
    db::Db,
    metrics,
    settings::RankingSettings,
    store::StoreError,
};

/// The `limit` when the query gives none.
pub const DEFAULT_LIMIT: usize = 10;
/// The largest `limit` a request may ask for.
pub const MAX_LIMIT: usize = 100;
/// How long reads and the consumer leave Redis alone after a failed call.
pub const BREAKER_OPEN: Duration = Duration::from_secs(1);
/// Titles are kept this long (concerts are never renamed through the API;
/// this bounds a fix made directly in the database).
const TITLE_TTL: Duration = Duration::from_secs(600);

/// Why a ranking operation failed. Reads never fail (see
/// [`Ranking::concerts`]); these come from the consumer and the jobs.
#[derive(Debug, thiserror::Error)]
pub enum RankingError {
    /// A `payment.completed` names a performance this database does not
    /// have: a bad event (dead-lettered).
    #[error("performance {0} does not exist")]
    UnknownPerformance(i64),
    /// A `payment.completed` sold no seats: a bad event (dead-lettered).
    #[error("payment {0} sold no seats")]
    NoSeats(uuid::Uuid),
    /// Redis is empty and its buckets have not been rebuilt yet: a
    /// snapshot now would record partial counts.
    #[error("the ranking's Redis data is being rebuilt")]
    NotReady,
    /// Redis is unreachable or slow.
    #[error("redis unavailable")]
    Redis(#[from] platform::redis_pool::RedisCallError),
    /// Postgres failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The ranking service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Ranking {
    inner: Arc<Inner>,
}

/// An answer cache key: window and limit.
type Key = (RankingWindow, usize);

#[derive(Debug)]
struct Inner {
    db: Db,
    buckets: Buckets,
    settings: RankingSettings,
    /// Answers by window and limit, for `ranking.cache_ms`; `None` when
    /// that is 0.
    answers: Option<moka::sync::Cache<Key, ConcertRanking>>,
    /// One build at a time per key: 2 windows × [`MAX_LIMIT`] locks.
    building: Vec<tokio::sync::Mutex<()>>,
    /// Concert titles by id.
    titles: moka::sync::Cache<i64, Arc<str>>,
    /// A performance's concert (never changes).
    concerts: moka::sync::Cache<i64, i64>,
    breaker: Breaker,
}

impl Ranking {
    /// The ranking over `db` and `redis`, whose keys start with `prefix`.
    pub fn new(db: Db, redis: Arc<RedisPool>, prefix: String, settings: RankingSettings) -> Self {
        let answers = (settings.cache_ms > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(2 * MAX_LIMIT as u64)
                .time_to_live(Duration::from_millis(settings.cache_ms))
                .build()
        });
        Self {
            inner: Arc::new(Inner {
                db,
                buckets: Buckets::new(redis, prefix, settings.bucket_seconds),
                answers,
                building: (0..2 * MAX_LIMIT)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
                titles: moka::sync::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(TITLE_TTL)
                    .build(),
                concerts: moka::sync::Cache::new(100_000),
                breaker: Breaker::default(),
                settings,
            }),
        }
    }

    /// The best-selling `limit` concerts of `window` (`limit` clamped to
    /// 1..=[`MAX_LIMIT`]). Infallible: while Redis is unreachable (or
    /// emptied and not rebuilt yet) the newest snapshot of the window,
    /// truncated to `limit`, with `stale: true` and its `taken_at` as
    /// `as_of`; with no snapshot, or Postgres failing too, an empty list
    /// with `stale: true`. Answers are cached for `ranking.cache_ms`,
    /// counted in `ranking_cache_requests_total{result}`.
    pub async fn concerts(&self, window: RankingWindow, limit: usize) -> ConcertRanking {
        let limit = limit.clamp(1, MAX_LIMIT);
        let Some(answers) = &self.inner.answers else {
            metrics::ranking_cache(false);
            return self.build(window, limit).await;
        };
        let key = (window, limit);
        if let Some(hit) = answers.get(&key) {
            metrics::ranking_cache(true);
            return hit;
        }
        let slot = usize::from(window == RankingWindow::Day) * MAX_LIMIT + limit - 1;
        let _building = self.inner.building[slot].lock().await;
        // Built by the request this one waited for: a hit too.
        if let Some(hit) = answers.get(&key) {
            metrics::ranking_cache(true);
            return hit;
        }
        metrics::ranking_cache(false);
        let answer = self.build(window, limit).await;
        answers.insert(key, answer.clone());
        answer
    }

    /// Builds an answer from Redis, else from the newest snapshot.
    async fn build(&self, window: RankingWindow, limit: usize) -> ConcertRanking {
        let inner = &self.inner;
        let now = Utc::now();
        let mut partial = None;
        if !inner.breaker.is_open() {
            match inner.buckets.top(window, limit, now).await {
                Ok(top) if top.ready => {
                    metrics::ranking_answer("live");
                    return ConcertRanking {
                        window,
                        as_of: now,
                        stale: false,
                        concerts: self.ranked(top.entries).await,
                    };
                }
                // Emptied, being rebuilt: the snapshot is nearer the truth.
                Ok(top) => partial = Some(top.entries),
                Err(error) => self.redis_failed(&error, "reading the ranking"),
            }
        }
        match self.latest_snapshot(window).await {
            Ok(Some(mut snapshot)) => {
                metrics::ranking_answer("snapshot");
                snapshot.concerts.truncate(limit);
                return ConcertRanking {
                    window,
                    as_of: snapshot.taken_at,
                    stale: true,
                    concerts: snapshot.concerts,
                };
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(
                error = %ErrorChain(&error),
                %window,
                "reading the ranking snapshot failed; answering an empty ranking"
            ),
        }
        let concerts = match partial {
            Some(entries) => {
                metrics::ranking_answer("partial");
                self.ranked(entries).await
            }
            None => {
                metrics::ranking_answer("empty");
                Vec::new()
            }
        };
        ConcertRanking {
            window,
            as_of: now,
            stale: true,
            concerts,
        }
    }

    /// `(concert id, tickets)` pairs, best first, as ranked concerts with
    /// their titles; a title Postgres cannot give now is empty.
    async fn ranked(&self, entries: Vec<(i64, i64)>) -> Vec<RankedConcert> {
        let ids: Vec<i64> = entries.iter().map(|(id, _)| *id).collect();
        let titles = match self.titles(&ids).await {
            Ok(titles) => titles,
            Err(error) => {
                tracing::warn!(error = %ErrorChain(&error), "reading concert titles failed; serving cached ones");
                self.cached_titles(&ids)
            }
        };
        rank(entries, &titles)
    }

    /// The titles of `ids`: cached ones, and the rest in one query.
    async fn titles(&self, ids: &[i64]) -> Result<HashMap<i64, Arc<str>>, StoreError> {
        let mut titles = self.cached_titles(ids);
        let missing: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| !titles.contains_key(id))
            .collect();
        if !missing.is_empty() {
            for (id, title) in sales::titles(&self.inner.db, &missing).await? {
                let title: Arc<str> = title.into();
                self.inner.titles.insert(id, Arc::clone(&title));
                titles.insert(id, title);
            }
        }
        Ok(titles)
    }

    fn cached_titles(&self, ids: &[i64]) -> HashMap<i64, Arc<str>> {
        ids.iter()
            .filter_map(|id| self.inner.titles.get(id).map(|title| (*id, title)))
            .collect()
    }

    /// Opens the breaker after a failed Redis call, logging `what` failed
    /// when it was closed (once per outage second, not per call).
    fn redis_failed(&self, error: &platform::redis_pool::RedisCallError, what: &str) {
        if self.inner.breaker.trip() {
            tracing::warn!(
                error = %ErrorChain(error),
                "{what} in Redis failed; the ranking falls back to Postgres for {BREAKER_OPEN:?}"
            );
        }
    }

    /// Starts the ranking's background work until `shutdown`: with
    /// `ranking.consumer`, the `payment.completed` consumer (dead letters
    /// through `producer`) and the replay job (every
    /// `ranking.replay_interval_ms`: rebuild lost Redis data, apply pending
    /// sales); with `ranking.snapshot_interval_seconds` > 0, the snapshot
    /// job and its purges.
    pub fn spawn_workers(
        &self,
        kafka: &platform::settings::KafkaSettings,
        producer: events::producer::Producer,
        shutdown: &CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let settings = &self.inner.settings;
        let mut tasks = Vec::new();
        if settings.consumer {
            let runtime = events::consumer::ConsumerRuntime::new(
                events::consumer::ConsumerSettings::for_kafka(
                    kafka,
                    format!("{}-core-ranking", kafka.group_prefix),
                    kafka.topic(events::topics::PAYMENT_COMPLETED),
                ),
                RankingHandler::new(self.clone()),
                producer,
            );
            let token = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(error) = runtime.run(token).await {
                    tracing::error!(error = %ErrorChain(&error), "ranking consumer stopped");
                }
            }));
            tasks.push(tokio::spawn(consumer::run_replay(
                self.clone(),
                Duration::from_millis(settings.replay_interval_ms),
                shutdown.clone(),
            )));
        }
        if settings.snapshot_interval_seconds > 0 {
            tasks.push(tokio::spawn(snapshots::run_snapshots(
                self.clone(),
                Duration::from_secs(settings.snapshot_interval_seconds),
                shutdown.clone(),
            )));
        }
        tasks
    }
}

/// Positions 1, 2, … for `entries` (already best first), with titles.
fn rank(entries: Vec<(i64, i64)>, titles: &HashMap<i64, Arc<str>>) -> Vec<RankedConcert> {
    entries
        .into_iter()
        .zip(1..)
        .map(|((concert_id, tickets), rank)| RankedConcert {
            rank,
            concert_id,
            title: titles
                .get(&concert_id)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            tickets,
        })
        .collect()
}

/// Open for [`BREAKER_OPEN`] after a failed Redis call.
#[derive(Debug, Default)]
struct Breaker {
    /// Unix ms until which Redis is left alone (0: closed).
    open_until_ms: AtomicI64,
}

impl Breaker {
    fn is_open(&self) -> bool {
        Utc::now().timestamp_millis() < self.open_until_ms.load(Ordering::Relaxed)
    }

    /// Opens (or extends) it; true when it was closed.
    fn trip(&self) -> bool {
        let now = Utc::now().timestamp_millis();
        let until = now + BREAKER_OPEN.as_millis() as i64;
        self.open_until_ms.swap(until, Ordering::Relaxed) <= now
    }

    fn close(&self) {
        self.open_until_ms.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_follow_the_order_and_unknown_titles_are_empty() {
        let titles = HashMap::from([(7, Arc::<str>::from("Seven"))]);
        let ranked = rank(vec![(7, 5), (3, 2)], &titles);
        assert_eq!(
            (ranked[0].rank, ranked[0].title.as_str(), ranked[0].tickets),
            (1, "Seven", 5)
        );
        assert_eq!((ranked[1].rank, ranked[1].title.as_str()), (2, ""));
    }

    #[test]
    fn the_breaker_opens_once_and_closes() {
        let breaker = Breaker::default();
        assert!(!breaker.is_open());
        assert!(breaker.trip());
        assert!(!breaker.trip(), "already open");
        assert!(breaker.is_open());
        breaker.close();
        assert!(!breaker.is_open());
    }
}
