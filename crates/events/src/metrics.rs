//! Metrics of the events crate. Names carry units.
//!
//! - `events_consumed_total{topic,outcome}`: `handled`, `failed` (one per
//!   failed attempt), `dead_lettered`, `deferred` (not due yet).
//! - `events_handler_duration_seconds{topic}`: handler time per attempt.
//! - `kafka_consumer_lag{topic,partition,group}`: records behind the high
//!   watermark, from librdkafka statistics every 5 s.
//! - `events_published_total{topic}` and `events_publish_failures_total{topic}`:
//!   producer acknowledgements and failures.
//! - `events_producer_recreated_total`: clients replaced after a fatal error.
//! - `outbox_pending`, `outbox_oldest_age_seconds`: the relay's backlog.
//! - `outbox_relayed_total`, `outbox_relay_batch_duration_seconds`.

use std::time::Duration;

pub(crate) fn consumed(topic: &str, outcome: &'static str) {
    metrics::counter!("events_consumed_total", "topic" => topic.to_owned(), "outcome" => outcome)
        .increment(1);
}

pub(crate) fn handler_duration(topic: &str, elapsed: Duration) {
    metrics::histogram!("events_handler_duration_seconds", "topic" => topic.to_owned())
        .record(elapsed.as_secs_f64());
}

pub(crate) fn consumer_lag(topic: &str, partition: i32, group: &str, lag: i64) {
    metrics::gauge!(
        "kafka_consumer_lag",
        "topic" => topic.to_owned(), "partition" => partition.to_string(), "group" => group.to_owned()
    )
    .set(lag as f64);
}

pub(crate) fn published(topic: &str, ok: bool) {
    if ok {
        metrics::counter!("events_published_total", "topic" => topic.to_owned()).increment(1);
    } else {
        metrics::counter!("events_publish_failures_total", "topic" => topic.to_owned())
            .increment(1);
    }
}

pub(crate) fn outbox_backlog(pending: i64, oldest_age_seconds: f64) {
    metrics::gauge!("outbox_pending").set(pending as f64);
    metrics::gauge!("outbox_oldest_age_seconds").set(oldest_age_seconds);
}

pub(crate) fn relayed(count: usize, elapsed: Duration) {
    metrics::counter!("outbox_relayed_total").increment(count as u64);
    metrics::histogram!("outbox_relay_batch_duration_seconds").record(elapsed.as_secs_f64());
}

pub(crate) fn producer_recreated() {
    metrics::counter!("events_producer_recreated_total").increment(1);
}
