//! The ranking's backup in Postgres: every
//! `ranking.snapshot_interval_seconds` (600: the 10 minutes of section 1
//! of the seed's coupon-and-ranking review) each window's top
//! [`SNAPSHOT_SIZE`] (the review's 100) is written to `ranking_snapshots`
//! as JSON (`items`: `[{rank, concert_id, title, tickets}]`, the
//! [`RankedConcert`] shape, so a snapshot is served as stored). The read
//! path serves the newest one of a window while Redis is unreachable.
//!
//! With several instances, each runs the job; a snapshot is skipped when
//! the window already has one younger than half the interval, so the table
//! gets about one per interval whatever the number of instances. No
//! snapshot is taken while Redis is empty and not rebuilt yet: it would
//! replace a good backup with partial counts.
//!
//! The same job purges snapshots older than
//! `ranking.snapshot_retention_days`, and applied `ranking_sales` rows
//! paid more than [`SALES_RETENTION`] ago (25 h: beyond the 24 h a rebuild
//! reads, plus at most one bucket of an hour). With the job off
//! (`snapshot_interval_seconds = 0`, as in tests) nothing is purged.

use std::time::Duration;

use chrono::{DateTime, Utc};
use platform::{problem::ErrorChain, shutdown::CancellationToken};

use super::{Ranking, RankingError, sales};
use crate::{
    api::ranking::{RankedConcert, RankingWindow},
    metrics,
    store::StoreError,
};

/// Concerts kept per snapshot (the seed review keeps 100 while its API
/// shows 10).
pub const SNAPSHOT_SIZE: usize = 100;
/// Applied sales older than this (by `paid_at`) are purged.
pub const SALES_RETENTION: Duration = Duration::from_secs(25 * 3_600);
/// Rows per purge statement.
const PURGE_BATCH: i64 = 1_000;

/// One stored snapshot of a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The window it ranks.
    pub window: RankingWindow,
    /// When it was taken (the database's clock).
    pub taken_at: DateTime<Utc>,
    /// Its concerts, best first (at most [`SNAPSHOT_SIZE`]).
    pub concerts: Vec<RankedConcert>,
}

impl Ranking {
    /// Takes a snapshot of each window now (what the job does every
    /// `ranking.snapshot_interval_seconds`, without its skip of recent
    /// snapshots). Returns them, shortest window first.
    ///
    /// # Errors
    /// [`RankingError::Redis`] when Redis cannot be read,
    /// [`RankingError::NotReady`] when its data is being rebuilt,
    /// [`RankingError::Store`] when Postgres fails (a window written
    /// before the error stays written).
    pub async fn take_snapshots(&self) -> Result<Vec<Snapshot>, RankingError> {
        self.snapshot_windows(Duration::ZERO).await
    }

    /// Snapshots each window unless it has one younger than `min_gap`.
    async fn snapshot_windows(&self, min_gap: Duration) -> Result<Vec<Snapshot>, RankingError> {
        let inner = &self.inner;
        let mut taken = Vec::new();
        for window in RankingWindow::ALL {
            let top = inner
                .buckets
                .top(window, SNAPSHOT_SIZE, Utc::now())
                .await
                .inspect_err(|error| self.redis_failed(error, "reading the ranking to snapshot"))?;
            if !top.ready {
                return Err(RankingError::NotReady);
            }
            let ids: Vec<i64> = top.entries.iter().map(|(id, _)| *id).collect();
            let titles = self.titles(&ids).await?;
            let concerts = super::rank(top.entries, &titles);
            if let Some(taken_at) = insert(self, window, &concerts, min_gap).await? {
                taken.push(Snapshot {
                    window,
                    taken_at,
                    concerts,
                });
            }
        }
        Ok(taken)
    }

    /// The newest snapshot of `window`, if any.
    ///
    /// # Errors
    /// [`StoreError`] when Postgres fails or the stored JSON does not
    /// parse.
    pub async fn latest_snapshot(
        &self,
        window: RankingWindow,
    ) -> Result<Option<Snapshot>, StoreError> {
        let row: Option<(DateTime<Utc>, sqlx::types::Json<Vec<RankedConcert>>)> = sqlx::query_as(
            "SELECT taken_at, items FROM ranking_snapshots
                  WHERE window_name = $1 ORDER BY taken_at DESC LIMIT 1",
        )
        .bind(window.as_str())
        .fetch_optional(self.inner.db.pool())
        .await?;
        Ok(row.map(|(taken_at, items)| Snapshot {
            window,
            taken_at,
            concerts: items.0,
        }))
    }

    /// Deletes snapshots past `ranking.snapshot_retention_days` and
    /// applied sales past [`SALES_RETENTION`] (in batches of 1,000).
    /// Returns `(snapshots, sales)` deleted.
    ///
    /// # Errors
    /// [`StoreError`]; rows deleted before the error stay deleted.
    pub async fn purge(&self) -> Result<(u64, u64), StoreError> {
        let db = &self.inner.db;
        let days = i32::try_from(self.inner.settings.snapshot_retention_days).unwrap_or(365);
        let snapshots = sqlx::query(
            "DELETE FROM ranking_snapshots WHERE taken_at < now() - make_interval(days => $1)",
        )
        .bind(days)
        .execute(db.pool())
        .await?
        .rows_affected();
        let mut purged = 0;
        loop {
            let deleted = sales::purge_applied(db, SALES_RETENTION, PURGE_BATCH).await?;
            purged += deleted;
            if deleted < PURGE_BATCH as u64 {
                break;
            }
        }
        Ok((snapshots, purged))
    }
}

/// Writes `concerts` as the snapshot of `window` unless one younger than
/// `min_gap` exists; returns its `taken_at` when written.
async fn insert(
    ranking: &Ranking,
    window: RankingWindow,
    concerts: &[RankedConcert],
    min_gap: Duration,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO ranking_snapshots (window_name, items)
         SELECT $1, $2
          WHERE NOT EXISTS (
            SELECT 1 FROM ranking_snapshots
             WHERE window_name = $1 AND taken_at > now() - make_interval(secs => $3))
         RETURNING taken_at",
    )
    .bind(window.as_str())
    .bind(sqlx::types::Json(concerts))
    .bind(min_gap.as_secs_f64())
    .fetch_optional(ranking.inner.db.pool())
    .await?)
}

/// Every `interval` (the first after one interval) until `shutdown`:
/// snapshot each window (skipping one snapshotted less than half an
/// interval ago, by another instance say), then purge.
pub async fn run_snapshots(ranking: Ranking, interval: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        match ranking.snapshot_windows(interval / 2).await {
            Ok(taken) => {
                metrics::ranking_snapshot("taken");
                tracing::debug!(windows = taken.len(), "took ranking snapshots");
            }
            Err(RankingError::NotReady) => {
                metrics::ranking_snapshot("skipped");
                tracing::info!("ranking snapshot skipped: Redis is being rebuilt");
            }
            Err(error) => {
                metrics::ranking_snapshot("failed");
                tracing::warn!(error = %ErrorChain(&error), "taking the ranking snapshots failed; the fallback keeps the previous ones");
            }
        }
        match ranking.purge().await {
            Ok((0, 0)) => {}
            Ok((snapshots, sales)) => {
                tracing::info!(snapshots, sales, "purged ranking data past its retention");
            }
            Err(error) => {
                tracing::warn!(error = %ErrorChain(&error), "purging ranking data failed")
            }
        }
    }
    tracing::info!("ranking snapshot job stopped");
}
