//! Holding seats and releasing them.

use std::collections::BTreeSet;

use chrono::Utc;
use uuid::Uuid;

use super::{Booking, BookingError, record_user};
use crate::{
    api::Reservation,
    domain::{PerformanceId, SeatId},
    store::holds::{self, HoldOutcome, Release},
};

/// Most seats one request may name, whatever the performance allows: it
/// bounds the claim before the sale rules are even read.
pub const MAX_SEATS_PER_REQUEST: usize = 50;

/// `seat_ids` sorted, once checked to be 1 to [`MAX_SEATS_PER_REQUEST`]
/// distinct seats.
fn selection(seat_ids: &[SeatId]) -> Result<Vec<SeatId>, BookingError> {
    if seat_ids.is_empty() {
        return Err(BookingError::NoSeats);
    }
    if seat_ids.len() > MAX_SEATS_PER_REQUEST {
        return Err(BookingError::TooManySeats {
            max: MAX_SEATS_PER_REQUEST as i32,
        });
    }
    let seats: BTreeSet<SeatId> = seat_ids.iter().copied().collect();
    if seats.len() != seat_ids.len() {
        return Err(BookingError::DuplicateSeats);
    }
    Ok(seats.into_iter().collect())
}

impl Booking {
    /// Holds `seat_ids` of `performance` for the holder of `access_token`,
    /// all or nothing, for `hold_ttl_seconds`. The checks run cheapest
    /// first: the seat list, the token, then the performance's sale rules.
    ///
    /// # Errors
    /// - [`BookingError::NoSeats`], [`BookingError::DuplicateSeats`],
    ///   [`BookingError::TooManySeats`] (per request, then per the
    ///   performance's `max_seats_per_order`);
    /// - [`BookingError::Access`]: the token does not admit the performance;
    /// - [`BookingError::SaleNotOpen`];
    /// - [`BookingError::SeatTaken`]: a seat is held or sold, nothing held;
    /// - store errors (unknown performance or seats, faults).
    pub async fn hold(
        &self,
        access_token: &str,
        performance: PerformanceId,
        seat_ids: &[SeatId],
    ) -> Result<Reservation, BookingError> {
        let seats = selection(seat_ids)?;
        let user = self.queue.verify(performance, access_token).await?;
        record_user(&user);
        let rules = self.sale_rules(performance).await?;
        if seats.len() > rules.max_seats_per_order as usize {
            return Err(BookingError::TooManySeats {
                max: rules.max_seats_per_order,
            });
        }
        if Utc::now() < rules.sale_opens_at {
            return Err(BookingError::SaleNotOpen);
        }
        match holds::hold(
            &self.db,
            &user,
            performance,
            &seats,
            self.settings.hold_ttl(),
        )
        .await?
        {
            HoldOutcome::Held(reservation) => {
                self.seats.invalidate(performance);
                Ok(reservation)
            }
            HoldOutcome::Taken => Err(BookingError::SeatTaken {
                seats_available: self.seats_available(performance).await?,
            }),
        }
    }

    /// Releases hold `id` for the holder of `access_token`: its seats are
    /// free at once. Releasing a hold that already ended is a no-op.
    ///
    /// # Errors
    /// - store errors: unknown reservation, another user's, being paid;
    /// - [`BookingError::Access`]: the token does not admit its performance;
    /// - [`BookingError::ReleasePaid`]: the reservation is paid.
    pub async fn release(&self, access_token: &str, id: Uuid) -> Result<(), BookingError> {
        let header = holds::header(&self.db, id).await?;
        let user = self
            .queue
            .verify(header.performance_id, access_token)
            .await?;
        record_user(&user);
        match holds::release(&self.db, &user, id).await? {
            Release::Paid => Err(BookingError::ReleasePaid),
            Release::Ended | Release::AlreadyEnded => {
                self.seats.invalidate(header.performance_id);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seats(ids: &[i64]) -> Vec<SeatId> {
        ids.iter().map(|id| SeatId::new(*id).unwrap()).collect()
    }

    #[test]
    fn a_selection_is_sorted_and_refuses_empty_repeated_or_oversized_lists() {
        assert_eq!(selection(&seats(&[3, 1, 2])).unwrap(), seats(&[1, 2, 3]));
        assert!(matches!(selection(&[]), Err(BookingError::NoSeats)));
        assert!(matches!(
            selection(&seats(&[1, 1])),
            Err(BookingError::DuplicateSeats)
        ));
        let many: Vec<i64> = (1..=51).collect();
        assert!(matches!(
            selection(&seats(&many)),
            Err(BookingError::TooManySeats { max: 50 })
        ));
    }
}
