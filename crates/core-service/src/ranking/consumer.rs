//! The ranking's write path: the `payment.completed` handler, the replay of
//! sales recorded while Redis was down, and the rebuild of Redis data that
//! was lost.
//!
//! Every sale reaches Redis through the one script of `buckets`, which
//! counts a payment only if its seen key was not set yet; so the handler,
//! the replay and the rebuild may race over the same sale, or a delivery
//! be repeated, and each payment still counts once. Postgres
//! (`ranking_sales`) is the record: a sale is written there before Redis is
//! tried, so no sale the consumer acknowledged is lost while Redis is down.
//!
//! **The rebuild.** When the ready marker is missing, Redis lost its data
//! (or the ranking never ran on it). Applied rows would then be missing
//! from the ranking for up to a day, so the replay job first rebuilds:
//! every sale paid within the last 24 h (applied or not, keyset-paged in
//! batches of [`BATCH`]) goes through the script again, and the marker is
//! set only if the rebuild's own token is still in Redis at the end (a
//! second loss during the rebuild removes it, and the next tick rebuilds
//! again). Sales counted meanwhile by the consumer have seen keys and are
//! skipped. One limit remains: a failover to a replica that lagged keeps
//! the marker but loses the last writes before it (their seen keys with
//! them); those few sales are missing from the live ranking until their
//! buckets age out (at most a day). For a popularity ranking that is
//! acceptable; counting them again would need a full rebuild per failover.

use std::time::Duration;

use chrono::Utc;
use events::{
    Envelope, PaymentCompleted,
    consumer::{Handler, HandlerError, Outcome, Record},
};
use platform::{problem::ErrorChain, shutdown::CancellationToken};
use uuid::Uuid;

use super::{
    Ranking, RankingError,
    buckets::Sale,
    sales::{self, Recorded},
};
use crate::metrics;

/// Sales per replay or rebuild batch (one query and one script call each).
pub const BATCH: i64 = 500;
/// Batches one replay call applies at most before yielding to the loop
/// (which runs again at once when the cap was reached).
const REPLAY_BATCHES: usize = 20;

/// What handling one sale did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaleOutcome {
    /// Counted in Redis now.
    Counted,
    /// Counted before: a redelivery (or another path got there first).
    Duplicate,
    /// Recorded in Postgres; Redis was unreachable, so the replay job
    /// counts it once Redis answers.
    Pending,
    /// Paid so long ago that no window includes it any more: recorded and
    /// marked applied, not sent to Redis.
    Expired,
}

impl SaleOutcome {
    /// The `result` label of `ranking_sales_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counted => "counted",
            Self::Duplicate => "duplicate",
            Self::Pending => "pending",
            Self::Expired => "expired",
        }
    }
}

impl Ranking {
    /// Records the sale of `payment` and counts it once (see the module
    /// docs of [`super`]). Redis failing is not an error: the sale stays
    /// pending ([`SaleOutcome::Pending`]) for the replay job.
    ///
    /// # Errors
    /// [`RankingError::NoSeats`], [`RankingError::UnknownPerformance`]
    /// (bad events); [`RankingError::Store`] when the sale could not be
    /// recorded (retry: nothing was counted).
    pub async fn record_sale(
        &self,
        payment: &PaymentCompleted,
    ) -> Result<SaleOutcome, RankingError> {
        let tickets = i32::try_from(payment.seat_ids.len())
            .ok()
            .filter(|n| *n > 0)
            .ok_or(RankingError::NoSeats(payment.payment_id))?;
        let sale = Sale {
            payment_id: payment.payment_id,
            concert_id: self.concert_of(payment.performance_id).await?,
            tickets,
            paid_at: payment.paid_at,
        };
        let outcome = match sales::record(&self.inner.db, &sale).await? {
            Recorded::Applied => SaleOutcome::Duplicate,
            Recorded::New | Recorded::Pending => self.apply_one(&sale).await,
        };
        metrics::ranking_sale(outcome.as_str());
        Ok(outcome)
    }

    /// The concert of `performance` (cached: it never changes).
    async fn concert_of(&self, performance: i64) -> Result<i64, RankingError> {
        if let Some(concert) = self.inner.concerts.get(&performance) {
            return Ok(concert);
        }
        let concert = sales::concert_of(&self.inner.db, performance)
            .await?
            .ok_or(RankingError::UnknownPerformance(performance))?;
        self.inner.concerts.insert(performance, concert);
        Ok(concert)
    }

    /// Counts a recorded sale in Redis and marks it applied.
    async fn apply_one(&self, sale: &Sale) -> SaleOutcome {
        let inner = &self.inner;
        let now = Utc::now();
        let outcome = if !inner.buckets.still_ranked(sale.paid_at, now) {
            SaleOutcome::Expired
        } else if inner.breaker.is_open() {
            return SaleOutcome::Pending;
        } else {
            match inner.buckets.apply(std::slice::from_ref(sale), now).await {
                Ok(1) => SaleOutcome::Counted,
                Ok(_) => SaleOutcome::Duplicate,
                Err(error) => {
                    self.redis_failed(&error, "counting a sale");
                    return SaleOutcome::Pending;
                }
            }
        };
        // Failing here leaves the row pending: the replay applies it again,
        // which the seen key turns into a no-op, and marks it.
        if let Err(error) = sales::mark_applied(&inner.db, &[sale.payment_id]).await {
            tracing::warn!(error = %ErrorChain(&error), payment_id = %sale.payment_id,
                "marking a ranked sale applied failed; the replay job will");
        }
        outcome
    }

    /// Applies pending sales to Redis, oldest recorded first, in batches of
    /// [`BATCH`] (at most 20 batches per call). Returns how many it
    /// applied; counted in `ranking_replayed_sales_total`.
    ///
    /// # Errors
    /// [`RankingError::Redis`] (the rows stay pending) or
    /// [`RankingError::Store`]; batches before the error stay applied.
    pub async fn replay_pending(&self) -> Result<u64, RankingError> {
        let inner = &self.inner;
        let mut replayed = 0;
        for _ in 0..REPLAY_BATCHES {
            let batch = sales::pending(&inner.db, BATCH).await?;
            if batch.is_empty() {
                break;
            }
            inner.buckets.apply(&batch, Utc::now()).await?;
            inner.breaker.close();
            let ids: Vec<Uuid> = batch.iter().map(|s| s.payment_id).collect();
            let marked = sales::mark_applied(&inner.db, &ids).await?;
            metrics::ranking_replayed(marked);
            replayed += marked;
            if (batch.len() as i64) < BATCH {
                break;
            }
        }
        Ok(replayed)
    }

    /// Rebuilds the Redis buckets from `ranking_sales` when the ready
    /// marker is missing (see the module docs). Returns `None` when Redis
    /// had its data, else how many sales the rebuild counted.
    ///
    /// # Errors
    /// [`RankingError::Redis`] or [`RankingError::Store`]: the marker stays
    /// missing and the next call starts over (already counted sales are
    /// skipped by their seen keys).
    pub async fn rebuild_if_lost(&self) -> Result<Option<u64>, RankingError> {
        let inner = &self.inner;
        if inner.buckets.is_ready().await? {
            inner.breaker.close();
            return Ok(None);
        }
        inner.breaker.close();
        let started = Utc::now();
        let token = Uuid::now_v7();
        inner.buckets.begin_rebuild(token).await?;
        let from = inner.buckets.oldest_ranked(started);
        let mut after = (from, Uuid::nil());
        let (mut seen, mut counted) = (0_u64, 0_u64);
        loop {
            let batch = sales::paid_since(&inner.db, from, after, BATCH).await?;
            let Some(last) = batch.last() else { break };
            after = (last.paid_at, last.payment_id);
            counted += inner.buckets.apply(&batch, Utc::now()).await?;
            let ids: Vec<Uuid> = batch.iter().map(|s| s.payment_id).collect();
            metrics::ranking_replayed(sales::mark_applied(&inner.db, &ids).await?);
            seen += batch.len() as u64;
            if (batch.len() as i64) < BATCH {
                break;
            }
        }
        if !inner.buckets.finish_rebuild(token, started).await? {
            tracing::warn!("the ranking's Redis data changed during its rebuild; rebuilding again");
            return Err(RankingError::NotReady);
        }
        metrics::ranking_rebuilt();
        tracing::info!(
            sales = seen,
            counted,
            "rebuilt the ranking's Redis buckets from ranking_sales"
        );
        Ok(Some(counted))
    }
}

/// Every `interval` until `shutdown`: rebuild lost Redis data, then replay
/// pending sales (again at once while a replay hits its batch cap).
/// Failures are logged when they start and when they end, not per tick.
pub async fn run_replay(ranking: Ranking, interval: Duration, shutdown: CancellationToken) {
    let mut failing = false;
    loop {
        let result = async {
            ranking.rebuild_if_lost().await?;
            ranking.replay_pending().await
        }
        .await;
        let pause = match result {
            Ok(replayed) => {
                if failing {
                    tracing::info!("the ranking's replay job works again");
                    failing = false;
                }
                if replayed > 0 {
                    tracing::info!(replayed, "replayed pending sales into the ranking");
                }
                let capped = replayed >= BATCH as u64 * REPLAY_BATCHES as u64;
                if capped { Duration::ZERO } else { interval }
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(error = %ErrorChain(&error),
                        "the ranking's replay job failed; retrying every {interval:?}");
                    failing = true;
                }
                interval
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
    tracing::info!("ranking replay job stopped");
}

/// Counts each `payment.completed` in the ranking
/// ([`Ranking::record_sale`]).
#[derive(Debug, Clone)]
pub struct RankingHandler {
    ranking: Ranking,
}

impl RankingHandler {
    /// A handler feeding `ranking`.
    pub fn new(ranking: Ranking) -> Self {
        Self { ranking }
    }
}

impl Handler for RankingHandler {
    async fn handle(&self, record: &Record) -> Result<Outcome, HandlerError> {
        let envelope = Envelope::<PaymentCompleted>::decode(&record.payload)
            .map_err(HandlerError::permanent)?;
        match self.ranking.record_sale(&envelope.data).await {
            Ok(_) => Ok(Outcome::Done),
            Err(error @ (RankingError::NoSeats(_) | RankingError::UnknownPerformance(_))) => {
                Err(HandlerError::permanent(error))
            }
            Err(error) => Err(HandlerError::transient(error)),
        }
    }
}
