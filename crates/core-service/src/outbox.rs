//! The transactional outbox: events are rows written in the same
//! transaction as the business change, published to Kafka later by the relay
//! (issue 5). A Kafka outage therefore never fails a payment.
//!
//! Every row's `payload` is a version-1 [`Envelope`]:
//! `{"event_id","type","version":1,"occurred_at","key","data"}` where `key`
//! is the reservation id (also the Kafka record key, `aggregate_key`), and
//! `headers` holds the W3C trace context of the request.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

/// Topic of [`PaymentCompleted`].
pub const PAYMENT_COMPLETED: &str = "payment.completed";
/// Topic of [`ReservationExpiration`].
pub const RESERVATION_EXPIRATION: &str = "reservation.expiration";

/// The envelope around every event (version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Unique id; consumers deduplicate on it.
    pub event_id: Uuid,
    /// `payment.completed` or `reservation.expiration`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Schema version of `data`: 1.
    pub version: u32,
    /// When the business change happened.
    pub occurred_at: DateTime<Utc>,
    /// The reservation id, also the Kafka key (per-reservation ordering).
    pub key: String,
    /// The event itself.
    pub data: T,
}

/// `payment.completed`: a reservation was paid and its seats are sold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentCompleted {
    /// The payment (UUID v7).
    pub payment_id: Uuid,
    /// The confirmed reservation.
    pub reservation_id: Uuid,
    /// The buyer.
    pub user_id: String,
    /// The performance (the waiting room's event id).
    pub performance_id: i64,
    /// Amount debited, in KRW.
    pub amount_krw: i64,
    /// The seats sold.
    pub seat_ids: Vec<i64>,
    /// When the payment committed.
    pub paid_at: DateTime<Utc>,
}

/// `reservation.expiration`: due at `held_until`; the consumer expires the
/// hold if it is still unpaid then. Holds also expire lazily, so a lost
/// event never leaves a seat held forever.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReservationExpiration {
    /// The hold.
    pub reservation_id: Uuid,
    /// The performance.
    pub performance_id: i64,
    /// The holder.
    pub user_id: String,
    /// The held seats.
    pub seat_ids: Vec<i64>,
    /// When the hold lapses.
    pub held_until: DateTime<Utc>,
}

/// A row to insert into `outbox`.
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
    /// Wraps `data` in an envelope for `topic`, capturing the current trace
    /// context.
    pub fn new<T: Serialize>(
        topic: &'static str,
        key: String,
        occurred_at: DateTime<Utc>,
        data: T,
    ) -> Self {
        let event_id = Uuid::now_v7();
        let envelope = Envelope {
            event_id,
            kind: topic.to_owned(),
            version: 1,
            occurred_at,
            key: key.clone(),
            data,
        };
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

    /// Inserts the row on `conn`, which must be inside the business
    /// transaction.
    ///
    /// # Errors
    /// Database errors.
    pub async fn insert(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO outbox (event_id, topic, aggregate_key, payload, headers) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(self.event_id)
        .bind(self.topic)
        .bind(&self.aggregate_key)
        .bind(&self.payload)
        .bind(&self.headers)
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// Unpublished rows and the age of the oldest one, in seconds.
///
/// # Errors
/// Database errors.
pub async fn backlog(pool: &sqlx::PgPool) -> Result<(i64, f64), sqlx::Error> {
    let (pending, age): (i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*), EXTRACT(EPOCH FROM now() - min(created_at))::float8 FROM outbox WHERE published_at IS NULL",
    )
    .fetch_one(pool)
    .await?;
    Ok((pending, age.unwrap_or(0.0).max(0.0)))
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
            PAYMENT_COMPLETED,
            reservation.to_string(),
            at,
            PaymentCompleted {
                payment_id: Uuid::now_v7(),
                reservation_id: reservation,
                user_id: "fan-1".into(),
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
        let back: Envelope<PaymentCompleted> = serde_json::from_value(p.clone()).unwrap();
        assert_eq!(back.data.user_id, "fan-1");
    }
}
