//! Events between onsale services, carried by Kafka.
//!
//! Two topics exist, each with a `.dlq` dead-letter twin:
//! - [`topics::PAYMENT_COMPLETED`]: core-service publishes it (through its
//!   transactional outbox) when a payment commits; queue-service consumes it
//!   to release the buyer's active slot at once.
//! - [`topics::RESERVATION_EXPIRATION`]: core-service publishes it when a
//!   hold is created, due at `held_until`, and consumes it to expire the hold.
//!
//! # Layout
//! - [`envelope`]: the versioned JSON envelope and the payload schemas.
//! - [`producer`]: an idempotent (`acks=all`) producer that reports every
//!   delivery, so nothing is dropped silently.
//! - [`consumer`]: the at-least-once consumer runtime with retries, DLQ,
//!   deferral of records that are not due yet, and drain on revoke.
//! - [`dlq`]: `dlq list` and `dlq replay` for service binaries.
//! - [`outbox`]: the transactional outbox: the table's DDL
//!   ([`outbox::SCHEMA_SQL`], which service migrations execute) and its relay
//!   to Kafka.
//! - [`metrics`]: metric names.
//! - [`topics`]: topic names.

pub mod consumer;
pub mod dlq;
pub mod envelope;
pub mod metrics;
pub mod outbox;
pub mod producer;

pub use envelope::{Envelope, EventType, PaymentCompleted, ReservationExpiration};

/// Topic names. Deployments append `kafka.topic_suffix`
/// (see `platform::settings::KafkaSettings::topic`).
pub mod topics {
    /// A payment committed; key: reservation id.
    pub const PAYMENT_COMPLETED: &str = "payment.completed";
    /// A hold is due to expire at `held_until`; key: reservation id.
    pub const RESERVATION_EXPIRATION: &str = "reservation.expiration";
    /// Suffix of each topic's dead-letter queue.
    pub const DLQ_SUFFIX: &str = ".dlq";

    /// The dead-letter topic of `topic`.
    pub fn dlq(topic: &str) -> String {
        format!("{topic}{DLQ_SUFFIX}")
    }
}
