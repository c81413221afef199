//! The event envelope, version 1.
//!
//! Every record value is one JSON object:
//!
//! ```json
//! {"event_id":"0193…","type":"payment.completed","version":1,
//!  "occurred_at":"2026-11-22T10:00:00Z","key":"<reservation id>","data":{…}}
//! ```
//!
//! - `event_id` (UUID) identifies the event for deduplication: consumers
//!   record it in an inbox and skip it when they see it again.
//! - `type` names the schema of `data`; `version` is its version. A consumer
//!   that meets an unknown type or version sends the record to the DLQ
//!   instead of guessing.
//! - `key` is the aggregate id and is also the Kafka record key, so one
//!   reservation's events stay in order on one partition.
//! - W3C trace context travels in Kafka headers (`traceparent`,
//!   `tracestate`), not in the body.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

/// The only envelope version this crate writes and reads.
pub const VERSION: u32 = 1;

/// Event types and the schema of their `data`.
pub trait EventType: Serialize + DeserializeOwned {
    /// The `type` member, equal to the topic's base name.
    const TYPE: &'static str;
}

/// The versioned envelope around every event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Unique id of this event (UUID v7: time-ordered).
    pub event_id: Uuid,
    /// Schema name, e.g. `payment.completed`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Schema version; always [`VERSION`] here.
    pub version: u32,
    /// When the fact happened (not when it was published).
    pub occurred_at: DateTime<Utc>,
    /// Aggregate id and Kafka record key.
    pub key: String,
    /// The payload.
    pub data: T,
}

/// Why a record could not be decoded. Decoding errors are permanent: the
/// record goes to the DLQ at once, without retries.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The value is not JSON, or not an envelope.
    #[error("malformed envelope: {0}")]
    Malformed(#[source] serde_json::Error),
    /// `type` names another event.
    #[error("unexpected event type {found:?}, expected {expected:?}")]
    WrongType {
        /// The type found.
        found: String,
        /// The type this consumer handles.
        expected: &'static str,
    },
    /// `version` is not one this build understands.
    #[error("unsupported version {0} of {1}")]
    UnsupportedVersion(u32, String),
    /// `data` does not fit the schema.
    #[error("malformed {kind} data: {source}")]
    Data {
        /// The event type.
        kind: &'static str,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

impl<T: EventType> Envelope<T> {
    /// A new envelope with a fresh UUID v7, occurring now.
    pub fn new(key: impl Into<String>, data: T) -> Self {
        Self::at(key, data, Utc::now())
    }

    /// A new envelope occurring at `occurred_at`.
    pub fn at(key: impl Into<String>, data: T, occurred_at: DateTime<Utc>) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            kind: T::TYPE.to_owned(),
            version: VERSION,
            occurred_at,
            key: key.into(),
            data,
        }
    }

    /// The JSON record value.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain structs with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes and checks type and version.
    ///
    /// # Errors
    /// [`DecodeError`]: every variant is permanent.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let raw: Envelope<serde_json::Value> =
            serde_json::from_slice(bytes).map_err(DecodeError::Malformed)?;
        if raw.kind != T::TYPE {
            return Err(DecodeError::WrongType {
                found: raw.kind,
                expected: T::TYPE,
            });
        }
        if raw.version != VERSION {
            return Err(DecodeError::UnsupportedVersion(raw.version, raw.kind));
        }
        let data = serde_json::from_value(raw.data).map_err(|source| DecodeError::Data {
            kind: T::TYPE,
            source,
        })?;
        Ok(Envelope {
            event_id: raw.event_id,
            kind: raw.kind,
            version: raw.version,
            occurred_at: raw.occurred_at,
            key: raw.key,
            data,
        })
    }
}

/// `payment.completed` v1: a payment committed, the seats are sold.
/// Key: `reservation_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentCompleted {
    /// The payment (UUID v7).
    pub payment_id: Uuid,
    /// The reservation that is now confirmed.
    pub reservation_id: Uuid,
    /// The buyer: the `sub` of their identity token (1–64 bytes).
    pub user_id: String,
    /// The waiting-room admission session the purchase was made in (the
    /// access token's session id). Releasing frees this session only, so a
    /// late, redelivered or replayed event never frees a newer admission.
    /// `None` only in events written before sessions were recorded; such an
    /// event releases nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The performance, which is also the waiting room's `event_id`.
    pub performance_id: i64,
    /// Amount debited, in KRW.
    pub amount_krw: i64,
    /// Seats sold.
    pub seat_ids: Vec<i64>,
    /// Commit time of the payment.
    pub paid_at: DateTime<Utc>,
}

impl EventType for PaymentCompleted {
    const TYPE: &'static str = crate::topics::PAYMENT_COMPLETED;
}

impl PaymentCompleted {
    /// A well-formed event number `n` for tests and benchmarks, keyed like
    /// a real one: `reservation-{n}` (shape of the key only; the
    /// reservation id is a fresh UUID v7), fan `fan-{n}`, session `n`,
    /// performance 1, 110,000 KRW for seat `n`, paid now.
    pub fn synthetic(n: i64) -> Envelope<Self> {
        Envelope::new(
            format!("reservation-{n}"),
            Self {
                payment_id: Uuid::now_v7(),
                reservation_id: Uuid::now_v7(),
                user_id: format!("fan-{n}"),
                session_id: Some(n.to_string()),
                performance_id: 1,
                amount_krw: 110_000,
                seat_ids: vec![n],
                paid_at: Utc::now(),
            },
        )
    }
}

/// `reservation.expiration` v1: a hold is due to expire at `held_until`.
/// Key: `reservation_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationExpiration {
    /// The held reservation.
    pub reservation_id: Uuid,
    /// Its performance.
    pub performance_id: i64,
    /// The fan holding it.
    pub user_id: String,
    /// Seats held.
    pub seat_ids: Vec<i64>,
    /// When the hold lapses; the consumer acts at or after this instant.
    pub held_until: DateTime<Utc>,
}

impl EventType for ReservationExpiration {
    const TYPE: &'static str = crate::topics::RESERVATION_EXPIRATION;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn payment(amount: i64, seats: Vec<i64>) -> PaymentCompleted {
        PaymentCompleted {
            payment_id: Uuid::now_v7(),
            reservation_id: Uuid::now_v7(),
            user_id: "fan-1".into(),
            session_id: Some("7".into()),
            performance_id: 42,
            amount_krw: amount,
            seat_ids: seats,
            paid_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        }
    }

    proptest! {
        #[test]
        fn an_envelope_survives_a_round_trip(amount in 1i64..i64::MAX, seats in proptest::collection::vec(any::<i64>(), 1..5)) {
            let envelope = Envelope::new("r-1", payment(amount, seats));
            let decoded = Envelope::<PaymentCompleted>::decode(&envelope.to_json()).unwrap();
            prop_assert_eq!(decoded, envelope);
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Envelope::<ReservationExpiration>::decode(&bytes);
        }
    }

    #[test]
    fn an_unknown_version_is_refused() {
        let mut value: serde_json::Value =
            serde_json::from_slice(&Envelope::new("k", payment(1, vec![1])).to_json()).unwrap();
        value["version"] = 2.into();
        let error =
            Envelope::<PaymentCompleted>::decode(&serde_json::to_vec(&value).unwrap()).unwrap_err();
        assert!(matches!(error, DecodeError::UnsupportedVersion(2, _)));
    }

    #[test]
    fn another_event_type_is_refused() {
        let bytes = Envelope::new("k", payment(1, vec![1])).to_json();
        let error = Envelope::<ReservationExpiration>::decode(&bytes).unwrap_err();
        assert!(matches!(error, DecodeError::WrongType { .. }));
    }
}
