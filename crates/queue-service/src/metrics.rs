//! Prometheus metrics of the waiting room, through the `metrics` facade
//! (rendered by `telemetry` at `/metrics`).
//!
//! - `queue_waiting{event}`, `queue_active{event}` (gauges): sizes after the
//!   latest admission tick of this instance;
//! - `queue_entered_total{event}`: new entries made by this instance;
//! - `queue_admitted_total{event}`: admissions made by this instance's ticks;
//! - `queue_exited_total{event,reason}`: `left`, `expired`, `completed`,
//!   `revoked`, `no_show` (admitted, never claimed), `abandoned`;
//! - `queue_redis_script_duration_seconds{script}` (histogram): one script
//!   round trip, as the client sees it;
//! - `queue_redis_checkout_duration_seconds` (histogram): getting a pooled
//!   connection, including connecting afresh when one is needed;
//! - `queue_admission_tick_failures_total`: ticks that failed on Redis;
//! - `queue_admission_rate_per_second{event}` (gauge): the admission rate
//!   after the latest health report this instance received, and
//!   `queue_admission_rate_cuts_total{event,reason}`: cuts by half because
//!   of `hold_p95`, `payment_p95` or `pool_saturated`;
//! - `queue_event_releases_total{released}` and
//!   `queue_payment_to_release_seconds` (histogram): slots released from
//!   `payment.completed` events, and the lag from payment to release.

use std::time::Duration;

/// Records one script round trip.
pub fn script_duration(script: &'static str, elapsed: Duration) {
    metrics::histogram!("queue_redis_script_duration_seconds", "script" => script)
        .record(elapsed.as_secs_f64());
}

/// The histogram of checkouts of a pooled Redis connection (seconds),
/// recorded by [`platform::redis_pool::RedisPool`].
pub const REDIS_CHECKOUT_SECONDS: &str = "queue_redis_checkout_duration_seconds";

/// A new entry.
pub fn entered(event: &str) {
    metrics::counter!("queue_entered_total", "event" => event.to_owned()).increment(1);
}

/// Fans admitted in one tick.
pub fn admitted(event: &str, count: u64) {
    metrics::counter!("queue_admitted_total", "event" => event.to_owned()).increment(count);
}

/// Fans leaving the line or the active set, by reason.
pub fn exited(event: &str, reason: &'static str, count: u64) {
    if count > 0 {
        metrics::counter!("queue_exited_total", "event" => event.to_owned(), "reason" => reason)
            .increment(count);
    }
}

/// Sizes after a tick.
pub fn sizes(event: &str, waiting: u64, active: u64) {
    // Gauges are f64; the counts are far below 2^53.
    metrics::gauge!("queue_waiting", "event" => event.to_owned()).set(waiting as f64);
    metrics::gauge!("queue_active", "event" => event.to_owned()).set(active as f64);
}

/// A tick that failed.
pub fn tick_failed() {
    metrics::counter!("queue_admission_tick_failures_total").increment(1);
}

/// A slot release driven by a `payment.completed` event: whether a live slot
/// was freed, and the time from payment to release.
pub fn slot_released_by_event(released: bool, lag: Duration) {
    metrics::counter!("queue_event_releases_total", "released" => if released { "true" } else { "false" })
        .increment(1);
    metrics::histogram!("queue_payment_to_release_seconds").record(lag.as_secs_f64());
}

/// The admission rate after a health report, fans per second.
pub fn admission_rate(event: &str, rate: f64) {
    metrics::gauge!("queue_admission_rate_per_second", "event" => event.to_owned()).set(rate);
}

/// A cut of the admission rate, by the overload that caused it.
pub fn admission_rate_cut(event: &str, reason: &str) {
    metrics::counter!("queue_admission_rate_cuts_total", "event" => event.to_owned(),
        "reason" => reason.to_owned())
    .increment(1);
}
