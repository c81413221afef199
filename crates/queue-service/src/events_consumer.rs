//! Event-driven admission: queue-service consumes `payment.completed` and
//! releases the buyer's active slot at once, so the next admission tick
//! refills it. No polling lag between a purchase and the next fan's
//! admission: a 5-second poll for completed purchases would delay every
//! refill by up to 5 seconds.
//!
//! An event releases the admission session it names (`session_id`, the
//! access token's session) and nothing else: when the fan has come back and
//! been admitted again, a late event of the earlier purchase leaves the new
//! session active. An event without `session_id` (written before sessions
//! were recorded) cannot say which session it ends, so it releases nothing;
//! it is logged and counted as handled, and the slot lapses with its TTL.
//!
//! The handler is idempotent without an inbox: releasing a session that is
//! no longer active changes nothing and reports `released = false`, so a
//! re-delivered or replayed event has no second effect. A record that does
//! not decode, or names an invalid event or user, goes to the DLQ at once;
//! a Redis failure is retried with backoff by the consumer runtime.

use chrono::Utc;
use events::{
    Envelope, PaymentCompleted,
    consumer::{Handler, HandlerError, Outcome, Record},
};

use crate::{
    domain::{EventId, ExitReason, UserId},
    service::WaitingRoom,
};

/// Releases the active slot of each buyer in `payment.completed`.
#[derive(Debug, Clone)]
pub struct PaymentCompletedHandler {
    room: WaitingRoom,
}

impl PaymentCompletedHandler {
    /// A handler releasing slots in `room`.
    pub fn new(room: WaitingRoom) -> Self {
        Self { room }
    }
}

impl Handler for PaymentCompletedHandler {
    async fn handle(&self, record: &Record) -> Result<Outcome, HandlerError> {
        let envelope = Envelope::<PaymentCompleted>::decode(&record.payload)
            .map_err(HandlerError::permanent)?;
        let event = EventId::parse(&envelope.data.performance_id.to_string())
            .map_err(HandlerError::permanent)?;
        let user = UserId::parse(&envelope.data.user_id).map_err(HandlerError::permanent)?;
        let lag = (Utc::now() - envelope.data.paid_at)
            .to_std()
            .unwrap_or_default();
        let Some(session_id) = envelope
            .data
            .session_id
            .as_deref()
            .filter(|s| !s.is_empty())
        else {
            tracing::warn!(%event, payment_id = %envelope.data.payment_id,
                "payment.completed without a session_id releases nothing");
            crate::metrics::slot_released_by_event(false, lag);
            return Ok(Outcome::Done);
        };
        let released = self
            .room
            .release(&event, &user, session_id, ExitReason::Completed)
            .await
            .map_err(HandlerError::transient)?;
        crate::metrics::slot_released_by_event(released, lag);
        Ok(Outcome::Done)
    }
}
