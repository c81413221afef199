//! The transactional outbox: events are rows written in the same
//! transaction as the business change, published to Kafka later by the relay
//! ([`events::outbox::OutboxRelay`]). A Kafka outage therefore never fails a
//! payment.
//!
//! Every row's `payload` is a version-1 [`events::Envelope`]:
//! `{"event_id","type","version":1,"occurred_at","key","data"}` where `key`
//! is the reservation id (also the Kafka record key, `aggregate_key`), and
//! `headers` holds the W3C trace context of the request.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The shared event schemas (`events` crate), re-exported for the stores.
pub use events::{
    EventType, PaymentCompleted, ReservationExpiration,
    topics::{PAYMENT_COMPLETED, RESERVATION_EXPIRATION},
};

/// A row for `outbox`, bound into the statement that makes the business
/// change (`store/sql/hold_insert_reservation.sql`, `store/sql/pay_record.sql`).
#[derive(Debug, Clone)]
pub struct OutboxRow {
    /// `payload.event_id`.
    pub event_id: Uuid,
    /// Base topic name.
    pub topic: &'static str,
    /// Kafka record key (the reservation id).
    pub aggregate_key: String,
    /// The full envelope.
    pub payload: serde_json::Value,
    /// W3C trace context.
    pub headers: serde_json::Value,
}

impl OutboxRow {
    /// Wraps `data` in a version-1 [`events::Envelope`] for its topic
    /// (`T::TYPE`), capturing the current trace context.
    pub fn new<T: EventType>(key: String, occurred_at: DateTime<Utc>, data: T) -> Self {
        let envelope = events::Envelope::at(key.clone(), data, occurred_at);
        let event_id = envelope.event_id;
        let topic = T::TYPE;
        let payload = serde_json::to_value(&envelope).unwrap_or(serde_json::Value::Null);
        let headers = serde_json::to_value(telemetry::propagation::inject_current())
            .unwrap_or_else(|_| serde_json::json!({}));
        Self {
            event_id,
            topic,
            aggregate_key: key,
            payload,
            headers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_has_the_agreed_shape() {
        let at = DateTime::parse_from_rfc3339("2026-11-22T04:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let reservation = Uuid::now_v7();
        let row = OutboxRow::new(
            reservation.to_string(),
            at,
            PaymentCompleted {
                payment_id: Uuid::now_v7(),
                reservation_id: reservation,
                user_id: "fan-1".into(),
                session_id: Some("7".into()),
                performance_id: 7,
                amount_krw: 110_000,
                seat_ids: vec![1, 2],
                paid_at: at,
            },
        );
        let p = &row.payload;
        assert_eq!(p["type"], "payment.completed");
        assert_eq!(p["version"], 1);
        assert_eq!(p["key"], reservation.to_string());
        assert_eq!(p["event_id"], row.event_id.to_string());
        assert_eq!(p["occurred_at"], "2026-11-22T04:00:00Z");
        assert_eq!(p["data"]["amount_krw"], 110_000);
        assert_eq!(p["data"]["performance_id"], 7);
        assert_eq!(p["data"]["seat_ids"], serde_json::json!([1, 2]));
        assert_eq!(row.aggregate_key, reservation.to_string());
        let back: events::Envelope<PaymentCompleted> = serde_json::from_value(p.clone()).unwrap();
        assert_eq!(back.data.user_id, "fan-1");
    }
}
