//! Metrics of core-service (the `metrics` facade; rendered at `/metrics`).
//!
//! - `reservations_total{result}`: hold attempts by outcome (`held`,
//!   `seat_taken`, `too_many_seats`, `rejected`, `error`);
//! - `payments_total{result}`: payment attempts by outcome (`completed`,
//!   `replayed`, `in_progress`, `insufficient_balance`, `hold_expired`,
//!   `rejected`, `error`);
//! - `outbox_pending` (rows) and `outbox_oldest_age_seconds` (age of the
//!   oldest unpublished row), sampled periodically;
//! - `db_pool_connections_in_use`, `db_pool_connections_idle`,
//!   `db_pool_requests_waiting`, sampled periodically;
//! - `holds_expired_total{source,result}` and
//!   `hold_expiry_lateness_seconds{source}`: eager expiry of lapsed holds by
//!   the `reservation.expiration` consumer (`source="event"`) or a sweeper;
//! - `verify_access_batch_checks`: token checks carried by each
//!   `VerifyAccessBatch` call to queue-service (the coalescing in
//!   [`crate::queue`]);
//! - HTTP request durations come from [`telemetry::http::track_metrics`].

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::db::Db;

/// Counts one `POST /v1/reservations` outcome.
pub fn reservation(result: &'static str) {
    metrics::counter!("reservations_total", "result" => result).increment(1);
}

/// Records the size of one `VerifyAccessBatch` call, in checks.
pub fn verify_call(checks: usize) {
    metrics::histogram!("verify_access_batch_checks").record(checks as f64);
}

/// Counts one `POST /v1/payments` outcome.
pub fn payment(result: &'static str) {
    metrics::counter!("payments_total", "result" => result).increment(1);
}

/// Counts one eager expiry attempt by `source` (`event`, `sweeper`):
/// `expired` tells whether this attempt freed the hold, `lateness` how long
/// after `held_until` it ran.
pub fn hold_expired(source: &'static str, expired: bool, lateness: Duration) {
    let result = if expired { "expired" } else { "already_ended" };
    metrics::counter!("holds_expired_total", "source" => source, "result" => result).increment(1);
    if expired {
        metrics::histogram!("hold_expiry_lateness_seconds", "source" => source)
            .record(lateness.as_secs_f64());
    }
}

/// Samples pool gauges every second and the outbox every `outbox_every`,
/// until `shutdown`.
pub async fn sample(db: Db, outbox_every: Duration, shutdown: CancellationToken) {
    let mut pool_tick = tokio::time::interval(Duration::from_secs(1));
    let mut outbox_tick = tokio::time::interval(outbox_every);
    pool_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    outbox_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = pool_tick.tick() => {
                let (in_use, idle, waiting) = db.stats();
                metrics::gauge!("db_pool_connections_in_use").set(f64::from(in_use));
                metrics::gauge!("db_pool_connections_idle").set(idle as f64);
                metrics::gauge!("db_pool_requests_waiting").set(waiting as f64);
            }
            _ = outbox_tick.tick() => {
                // Sets outbox_pending and outbox_oldest_age_seconds.
                if let Err(error) = events::outbox::backlog(db.pool()).await {
                    tracing::debug!(%error, "sampling the outbox failed");
                }
            }
        }
    }
}
