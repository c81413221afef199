//! Paying a held reservation from the prepaid balance.

use uuid::Uuid;

use super::{Booking, BookingError, admits, record_user};
use crate::{
    domain::{CouponCode, IdempotencyKey, UserId},
    health::Operation,
    store::{
        holds,
        payments::{self, PaymentOutcome, PaymentRequest},
    },
};

impl Booking {
    /// Pays reservation `reservation_id` from `fan`'s balance, admitted by
    /// `access_token`, idempotently under `key` (scoped to the fan). The
    /// token's admission session is released right after the commit (in
    /// the background), and the `payment.completed` event names it too, so
    /// that exactly this session is released, once, with Kafka up or down.
    ///
    /// A session whose purchase already completed (its slot was released
    /// by `payment.completed`) gets the stored response of a key it already
    /// used, and never starts a new payment.
    ///
    /// # Errors
    /// - store errors: unknown reservation, another fan's, same key or
    ///   reservation in flight, key reused, already paid or released, hold
    ///   expired, insufficient balance, faults;
    /// - [`BookingError::Access`]: the token does not admit the
    ///   reservation's performance;
    /// - [`BookingError::SubjectMismatch`]: the token is another fan's;
    /// - [`BookingError::AccessCompleted`]: a completed session with a key
    ///   it never used.
    pub async fn pay(
        &self,
        fan: &UserId,
        access_token: &str,
        key: &IdempotencyKey,
        reservation_id: Uuid,
        coupon: Option<&CouponCode>,
    ) -> Result<PaymentOutcome, BookingError> {
        let _timer = self.health.time(Operation::Payment);
        record_user(fan);
        let header = holds::header(&self.db, reservation_id).await?;
        let access = self
            .queue
            .verify_for_replay(header.performance_id, access_token)
            .await?;
        admits(fan, &access)?;
        let request = PaymentRequest {
            user: fan,
            session_id: &access.session_id,
            key,
            reservation_id,
            coupon,
            lease_seconds: self.settings.idempotency_lease_seconds,
        };
        if access.completed {
            return payments::replay(&self.db, &request)
                .await?
                .ok_or(BookingError::AccessCompleted);
        }
        // A paid seat was held before, so availability does not change.
        let outcome = payments::pay(&self.db, request).await?;
        if matches!(outcome, PaymentOutcome::Completed(_)) {
            self.queue.release_completed(header.performance_id, &access);
            // Keeps the performance's inventory reported (a sold-out
            // performance is told so after its last payment).
            let _ = self.maps.map(header.performance_id).await;
        }
        Ok(outcome)
    }
}
