//! The transactional outbox and its relay.
//!
//! A service writes an event into [`SCHEMA_SQL`]'s `outbox` table in the same
//! transaction as the business change, so a committed payment always has its
//! `payment.completed`, whatever Kafka is doing: a Kafka outage never fails
//! a committed payment, and no event is dropped by a disconnected producer.
//! [`OutboxRelay`] then moves rows to Kafka:
//!
//! 1. claim up to `batch_size` unpublished rows, oldest first, with
//!    `FOR UPDATE SKIP LOCKED`, so several relays (one per instance) share the
//!    work without waiting on each other and without publishing a row twice
//!    in normal operation;
//! 2. send them with the idempotent producer, keyed by `aggregate_key`, so
//!    one reservation's events stay in order on one partition;
//! 3. in the same transaction, set `published_at` on the acknowledged rows,
//!    and count an attempt with `last_error` on the others, then commit.
//!
//! When the broker is down, sends fail after the delivery timeout, rows stay
//! unpublished, the relay backs off (100 ms doubling to 5 s), and the backlog
//! drains by itself when the broker returns. `outbox_pending` and
//! `outbox_oldest_age_seconds` show the backlog meanwhile.
//!
//! Delivery is at least once: a relay that dies after Kafka acknowledged but
//! before its commit leaves the rows unpublished, and they are sent again.
//! Consumers deduplicate by `event_id`.
//!
//! Published rows are kept for a retention period (to trace an event back to
//! its transaction) and then deleted by [`purge_published`]; unpublished rows
//! are never deleted.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use backon::{BackoffBuilder, ExponentialBuilder};
use platform::shutdown::CancellationToken;
use sqlx::{PgPool, Row};

use crate::{metrics, producer::Producer};

/// DDL of the outbox table and its index of unpublished rows: the one
/// definition. A service's migration executes it verbatim (core-service's
/// initial migration does), and tests and benches apply it to scratch
/// databases. Idempotent (`IF NOT EXISTS`): applying it where the table
/// already exists changes nothing.
pub const SCHEMA_SQL: &str = r"
CREATE TABLE IF NOT EXISTS outbox (
  id            BIGSERIAL PRIMARY KEY,
  event_id      UUID NOT NULL UNIQUE,
  topic         TEXT NOT NULL,
  aggregate_key TEXT NOT NULL,
  payload       JSONB NOT NULL,
  headers       JSONB NOT NULL DEFAULT '{}'::jsonb,
  created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
  published_at  TIMESTAMPTZ,
  attempts      INT NOT NULL DEFAULT 0,
  last_error    TEXT
);
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
";

/// Relay settings.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Rows claimed per transaction.
    pub batch_size: i64,
    /// Pause between polls when the outbox is empty.
    pub idle_poll: Duration,
    /// Appended to each row's `topic` (tests, shared clusters).
    pub topic_suffix: String,
    /// How often the loop refreshes the backlog gauges; `None` when the
    /// service samples them itself.
    pub backlog_interval: Option<Duration>,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            batch_size: 500,
            idle_poll: Duration::from_millis(20),
            topic_suffix: String::new(),
            backlog_interval: Some(Duration::from_secs(1)),
        }
    }
}

/// A relay failure that is not a per-row delivery failure.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The database refused (connection lost, timeout).
    #[error("outbox database error")]
    Database(#[from] sqlx::Error),
}

/// Result of one relay pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Rows claimed.
    pub claimed: usize,
    /// Rows marked published.
    pub published: usize,
    /// Rows left for a later pass.
    pub failed: usize,
}

/// Moves outbox rows to Kafka.
#[derive(Debug, Clone)]
pub struct OutboxRelay {
    pool: PgPool,
    producer: Producer,
    settings: RelaySettings,
}

impl OutboxRelay {
    /// A relay over `pool`'s `outbox` table.
    pub fn new(pool: PgPool, producer: Producer, settings: RelaySettings) -> Self {
        Self {
            pool,
            producer,
            settings,
        }
    }

    /// Claims one batch, publishes it and records the result.
    ///
    /// # Errors
    /// [`RelayError::Database`]; delivery failures are counted in the
    /// returned [`Pass`] instead.
    pub async fn relay_once(&self) -> Result<Pass, RelayError> {
        let started = Instant::now();
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT id, topic, aggregate_key, payload::text AS payload, headers::text AS headers
               FROM outbox
              WHERE published_at IS NULL
              ORDER BY id
              LIMIT $1
              FOR UPDATE SKIP LOCKED",
        )
        .bind(self.settings.batch_size)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(Pass::default());
        }
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            let topic: String = row.try_get("topic")?;
            let key: String = row.try_get("aggregate_key")?;
            let payload: String = row.try_get("payload")?;
            let headers: String = row.try_get("headers")?;
            let headers: HashMap<String, String> =
                serde_json::from_str(&headers).unwrap_or_default();
            claimed.push((
                id,
                format!("{topic}{}", self.settings.topic_suffix),
                key,
                payload,
                headers,
            ));
        }
        // Sends are queued in row order, and the idempotent producer keeps
        // that order per partition, so they can be awaited together.
        let results =
            futures::future::join_all(claimed.iter().map(|(_, topic, key, payload, headers)| {
                self.producer.send(topic, key, payload.as_bytes(), headers)
            }))
            .await;
        let mut published = Vec::new();
        let mut failed = Vec::new();
        let mut last_error = String::new();
        // After a failure, later rows of the same key are sent again too, so
        // the consumer sees that key's events in order once more.
        let mut broken_keys = HashSet::new();
        for ((id, _, key, _, _), result) in claimed.iter().zip(results) {
            match result {
                Ok(_) if !broken_keys.contains(key) => published.push(*id),
                Ok(_) => failed.push(*id),
                Err(error) => {
                    last_error = format!("{error}: {}", error_source(&error));
                    broken_keys.insert(key.clone());
                    failed.push(*id);
                }
            }
        }
        if !published.is_empty() {
            sqlx::query("UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE id = ANY($1)")
                .bind(&published)
                .execute(&mut *tx)
                .await?;
        }
        if !failed.is_empty() {
            sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = ANY($1)",
            )
            .bind(&failed)
            .bind(&last_error)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        metrics::relayed(published.len(), started.elapsed());
        Ok(Pass {
            claimed: claimed.len(),
            published: published.len(),
            failed: failed.len(),
        })
    }

    /// Refreshes `outbox_pending` and `outbox_oldest_age_seconds`, and
    /// returns them.
    ///
    /// # Errors
    /// [`RelayError::Database`].
    pub async fn measure_backlog(&self) -> Result<(i64, f64), RelayError> {
        Ok(backlog(&self.pool).await?)
    }

    /// Relays until `shutdown` is cancelled. The batch in flight finishes
    /// first, so no claimed row is left half-recorded.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = None;
        let mut last_backlog: Option<Instant> = None;
        while !shutdown.is_cancelled() {
            if let Some(interval) = self.settings.backlog_interval
                && last_backlog.is_none_or(|at| at.elapsed() >= interval)
            {
                last_backlog = Some(Instant::now());
                if let Err(error) = self.measure_backlog().await {
                    tracing::warn!(error = %error, "measuring the outbox backlog failed");
                }
            }
            let pause = match self.relay_once().await {
                Ok(pass) if pass.failed > 0 => {
                    tracing::warn!(
                        failed = pass.failed,
                        published = pass.published,
                        "outbox relay could not publish everything"
                    );
                    next_delay(&mut backoff)
                }
                Ok(pass) if pass.claimed as i64 >= self.settings.batch_size => {
                    backoff = None;
                    Duration::ZERO
                }
                Ok(_) => {
                    backoff = None;
                    self.settings.idle_poll
                }
                Err(error) => {
                    tracing::error!(error = %platform::problem::ErrorChain(&error), "outbox relay pass failed");
                    next_delay(&mut backoff)
                }
            };
            if !pause.is_zero() {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
        self.producer.flush(Duration::from_secs(5));
        tracing::info!("outbox relay stopped");
    }
}

/// Unpublished rows in `pool`'s outbox and the age of the oldest, in
/// seconds; also sets `outbox_pending` and `outbox_oldest_age_seconds`.
///
/// # Errors
/// Database errors.
pub async fn backlog(pool: &PgPool) -> Result<(i64, f64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT count(*) AS pending,
                COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0) AS oldest
           FROM outbox WHERE published_at IS NULL",
    )
    .fetch_one(pool)
    .await?;
    let pending: i64 = row.try_get("pending")?;
    // A row stamped by a database clock slightly ahead reads as negative.
    let oldest = row.try_get::<f64, _>("oldest")?.max(0.0);
    metrics::outbox_backlog(pending, oldest);
    Ok((pending, oldest))
}

/// Deletes up to `batch` rows published more than `retention` ago, oldest
/// first, and returns how many it deleted. Unpublished rows are never
/// touched, however old. Without this the outbox grows by one row per hold
/// and payment forever.
///
/// # Errors
/// Database errors.
pub async fn purge_published(
    pool: &PgPool,
    retention: Duration,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    // Walks the primary key from the oldest id and stops after `batch`
    // matches: rows are published roughly in id order, so the old ones come
    // first and no sequential scan is needed.
    let deleted = sqlx::query(
        "DELETE FROM outbox WHERE id IN (\
           SELECT id FROM outbox \
           WHERE published_at < now() - make_interval(secs => $1) \
           ORDER BY id LIMIT $2)",
    )
    .bind(retention.as_secs_f64())
    .bind(batch)
    .execute(pool)
    .await?;
    Ok(deleted.rows_affected())
}

fn next_delay(backoff: &mut Option<backon::ExponentialBackoff>) -> Duration {
    backoff
        .get_or_insert_with(|| {
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(5))
                .with_jitter()
                .without_max_times()
                .build()
        })
        .next()
        .unwrap_or(Duration::from_secs(5))
}

fn error_source(error: &(dyn std::error::Error + 'static)) -> String {
    error.source().map(ToString::to_string).unwrap_or_default()
}
