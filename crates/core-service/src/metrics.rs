//! Metrics of core-service (the `metrics` facade; rendered at `/metrics`).
//!
//! - `reservations_total{result}`: hold attempts by outcome (`held`,
//!   `seat_taken`, `no_block`, `too_many_seats`, `over_limit`, `rejected`,
//!   `error`);
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
//! - `queue_releases_total{result}`: paid sessions released in
//!   queue-service right after the payment (`released`; `none` when the
//!   event or the session's expiry got there first; `failed` after the
//!   retries, or `dropped` when the release queue was full: both left to
//!   the `payment.completed` event);
//! - `inventory_reports_total{result}`: seat counts sent to queue-service
//!   (`recorded`, `no_room` for a performance without a waiting room,
//!   `failed`, `dropped`), about once a second per performance being sold;
//! - `coupon_claims_total{result}`: claims by outcome (`claimed`,
//!   `already_claimed`, `sold_out`, `closed`, `not_started`, `error`) and
//!   `coupon_claim_path_total{path}` (`redis`, or `postgres` while Redis is
//!   unreachable);
//! - `coupon_compensations_total` and
//!   `coupon_compensation_failures_total`: Redis reservations undone after
//!   the Postgres write failed, and undo attempts that failed themselves
//!   (alerted on: only the reconciliation job repairs those);
//! - `coupon_reconciliation_fixes_total{kind}`: differences the
//!   reconciliation job repaired (`count`, `fan_added`, `fan_removed`);
//! - `core_redis_checkout_duration_seconds` (histogram): getting a pooled
//!   Redis connection;
//! - `ranking_cache_requests_total{result}`: ranking reads answered from
//!   the in-process answer cache (`hit`) or built (`miss`); alerted on
//!   below 80 % hits;
//! - `ranking_answers_total{source}`: built ranking answers by source
//!   (`live`; `snapshot`, `partial` or `empty` while Redis is unreachable
//!   or being rebuilt, all served with `stale: true`);
//! - `ranking_sales_total{result}`: `payment.completed` events counted by
//!   the ranking consumer (`counted`, `duplicate`, `pending` while Redis
//!   is down, `expired`), `ranking_replayed_sales_total`: pending sales
//!   applied later by the replay job or a rebuild, and
//!   `ranking_rebuilds_total`: rebuilds of lost Redis data;
//! - `ranking_snapshots_total{result}`: snapshot job runs (`taken`,
//!   `skipped` while Redis is rebuilt, `failed`);
//! - `seat_map_reads_total{result}`: availability reads answered from the
//!   current snapshot (`fresh`), from the previous one while another
//!   request rebuilds it (`stale`), and `seat_map_rebuilds_total` with
//!   `seat_map_rebuild_duration_seconds` (histogram): snapshots read from
//!   Postgres (at most one per performance and `seat_cache_ms`);
//! - `seat_map_responses_total{result}`: seat-map bodies sent (`full`) or
//!   answered 304 (`not_modified`);
//! - HTTP request durations come from [`telemetry::http::track_metrics`].

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::db::Db;

/// The histogram of checkouts of a pooled Redis connection (seconds),
/// recorded by [`platform::redis_pool::RedisPool`].
pub const REDIS_CHECKOUT_SECONDS: &str = "core_redis_checkout_duration_seconds";

/// Counts one background release of a paid session (`released`, `none`,
/// `failed`, `dropped`).
pub fn queue_release(result: &'static str) {
    metrics::counter!("queue_releases_total", "result" => result).increment(1);
}

/// Counts one inventory report (`recorded`, `no_room`, `failed`,
/// `dropped`).
pub fn inventory_report(result: &'static str) {
    metrics::counter!("inventory_reports_total", "result" => result).increment(1);
}

/// Counts one availability read answered from a snapshot (`fresh`,
/// `stale`).
pub fn seat_map_read(result: &'static str) {
    metrics::counter!("seat_map_reads_total", "result" => result).increment(1);
}

/// Records one availability snapshot read from Postgres, taking `took`.
pub fn seat_map_rebuilt(took: Duration) {
    metrics::counter!("seat_map_rebuilds_total").increment(1);
    metrics::histogram!("seat_map_rebuild_duration_seconds").record(took.as_secs_f64());
}

/// Counts one seat-map response (`full`, `not_modified`).
pub fn seat_map_response(result: &'static str) {
    metrics::counter!("seat_map_responses_total", "result" => result).increment(1);
}

/// Counts one coupon claim outcome, and which path decided it (`redis`,
/// `postgres`).
pub fn coupon_claim(result: &'static str, path: &'static str) {
    metrics::counter!("coupon_claims_total", "result" => result).increment(1);
    metrics::counter!("coupon_claim_path_total", "path" => path).increment(1);
}

/// Counts one compensation of a Redis coupon reservation: `undone` tells
/// whether the undo itself succeeded.
pub fn coupon_compensation(undone: bool) {
    if undone {
        metrics::counter!("coupon_compensations_total").increment(1);
    } else {
        metrics::counter!("coupon_compensation_failures_total").increment(1);
    }
}

/// Counts `n` differences of `kind` repaired by coupon reconciliation.
pub fn coupon_reconciled(kind: &'static str, n: u64) {
    if n > 0 {
        metrics::counter!("coupon_reconciliation_fixes_total", "kind" => kind).increment(n);
    }
}

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

/// Counts one ranking read: served from the answer cache (`hit`) or not.
pub fn ranking_cache(hit: bool) {
    let result = if hit { "hit" } else { "miss" };
    metrics::counter!("ranking_cache_requests_total", "result" => result).increment(1);
}

/// Counts one ranking answer built from `source` (`live`, `snapshot`,
/// `partial`, `empty`).
pub fn ranking_answer(source: &'static str) {
    metrics::counter!("ranking_answers_total", "source" => source).increment(1);
}

/// Counts one sale handled by the ranking consumer, by `result`.
pub fn ranking_sale(result: &'static str) {
    metrics::counter!("ranking_sales_total", "result" => result).increment(1);
}

/// Counts `n` pending sales applied to Redis after the fact.
pub fn ranking_replayed(n: u64) {
    if n > 0 {
        metrics::counter!("ranking_replayed_sales_total").increment(n);
    }
}

/// Counts one rebuild of the ranking's lost Redis data.
pub fn ranking_rebuilt() {
    metrics::counter!("ranking_rebuilds_total").increment(1);
}

/// Counts one run of the ranking snapshot job, by `result`.
pub fn ranking_snapshot(result: &'static str) {
    metrics::counter!("ranking_snapshots_total", "result" => result).increment(1);
}
