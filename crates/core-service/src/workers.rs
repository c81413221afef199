//! Background workers of core-service, each stopped by the shutdown token:
//!
//! - the **outbox relay** ([`events::outbox::OutboxRelay`]) publishes
//!   `payment.completed` and `reservation.expiration` rows to Kafka;
//! - the **expiry consumer** reads `reservation.expiration` and expires each
//!   hold at its `held_until`. A record that is not due yet pauses its
//!   partition until it is ([`events::consumer::Outcome::NotYet`]), so the
//!   consumer never sleeps per message (failure B-2 of the seed incident
//!   manual);
//! - the **sweeper** expires overdue holds from the database every few
//!   seconds, in bounded batches, whatever Kafka is doing;
//! - the **inventory reporter** sends the seat counts of the performances
//!   being sold to their waiting rooms about once a second
//!   ([`crate::booking::Booking::report_inventory`]).
//!
//! Correctness never depends on these: a hold past `held_until` already
//! counts as free for availability and for new holds (lazy expiry). The
//! consumer and the sweeper only tidy seat rows up and report. Both use
//! [`holds::expire_if_lapsed`], a conditional update under `SKIP LOCKED`:
//! a hold that was paid or released meanwhile is left alone, and a second
//! expiry of the same hold (a re-delivered event, or the sweeper racing the
//! consumer) changes nothing.

use std::time::Duration;

use chrono::Utc;
use events::{
    Envelope, ReservationExpiration,
    consumer::{Handler, HandlerError, Outcome, Record},
};
use platform::shutdown::CancellationToken;
use uuid::Uuid;

use crate::{
    db::Db,
    metrics,
    store::{StoreError, holds},
};

/// Expires the hold named by each `reservation.expiration` at its due time.
#[derive(Debug, Clone)]
pub struct ExpiryHandler {
    db: Db,
}

impl ExpiryHandler {
    /// A handler expiring holds in `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

impl Handler for ExpiryHandler {
    async fn handle(&self, record: &Record) -> Result<Outcome, HandlerError> {
        let envelope = Envelope::<ReservationExpiration>::decode(&record.payload)
            .map_err(HandlerError::permanent)?;
        let due = envelope.data.held_until;
        if due > Utc::now() {
            return Ok(Outcome::NotYet(due));
        }
        match holds::expire_if_lapsed(&self.db, envelope.data.reservation_id).await {
            Ok(expired) => {
                metrics::hold_expired(
                    "event",
                    expired,
                    (Utc::now() - due).to_std().unwrap_or_default(),
                );
                Ok(Outcome::Done)
            }
            // An expiration for a reservation this database never had is a
            // bad event, not a passing fault: dead-letter it.
            Err(StoreError::NotFound(_)) => Err(HandlerError::permanent(format!(
                "reservation {} does not exist",
                envelope.data.reservation_id
            ))),
            Err(error) => Err(HandlerError::transient(error)),
        }
    }
}

/// Expires up to `batch` overdue holds, oldest first. Returns how many this
/// call expired.
///
/// # Errors
/// Database errors; holds expired before the error stay expired.
pub async fn sweep_once(db: &Db, batch: i64) -> Result<usize, StoreError> {
    // Served by the partial index on (held_until) WHERE status = 'held', so a
    // sweep reads only overdue holds however many reservations exist.
    let overdue: Vec<(Uuid, chrono::DateTime<Utc>)> = sqlx::query_as(
        "SELECT id, held_until FROM reservations WHERE status = 'held' AND held_until < now() ORDER BY held_until LIMIT $1",
    )
    .bind(batch)
    .fetch_all(db.pool())
    .await?;
    let mut expired = 0;
    for (id, due) in overdue {
        if holds::expire_if_lapsed(db, id).await? {
            metrics::hold_expired(
                "sweeper",
                true,
                (Utc::now() - due).to_std().unwrap_or_default(),
            );
            expired += 1;
        }
    }
    Ok(expired)
}

/// Sweeps every `interval` until `shutdown`; a full batch sweeps again at
/// once.
pub async fn run_sweeper(db: Db, interval: Duration, batch: i64, shutdown: CancellationToken) {
    loop {
        let pause = match sweep_once(&db, batch).await {
            Ok(count) if count as i64 >= batch => Duration::ZERO,
            Ok(_) => interval,
            Err(error) => {
                tracing::warn!(error = %platform::problem::ErrorChain(&error), "hold sweep failed");
                interval
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
    tracing::info!("hold sweeper stopped");
}

/// Pool samples per inventory report.
const POOL_SAMPLES_PER_REPORT: u32 = 10;

/// Reports inventory, with this instance's health, every `interval` until
/// `shutdown`.
pub async fn run_inventory_reporter(
    booking: crate::booking::Booking,
    interval: Duration,
    shutdown: CancellationToken,
) {
    // The pool is sampled ten times per report period, for the health the
    // reports carry.
    let mut ticks = tokio::time::interval(interval / POOL_SAMPLES_PER_REPORT);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sample = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        booking.sample_pool();
        sample += 1;
        if sample < POOL_SAMPLES_PER_REPORT {
            continue;
        }
        sample = 0;
        if let Err(error) = booking.report_inventory().await {
            tracing::warn!(error = %platform::problem::ErrorChain(&error), "reading the inventory failed");
        }
    }
    tracing::info!("inventory reporter stopped");
}
