//! Holding seats and releasing them.

use std::collections::BTreeSet;

use chrono::Utc;
use uuid::Uuid;

use super::{Booking, BookingError, admits, record_user};
use crate::{
    api::{CreateReservation, Reservation},
    domain::{PerformanceId, SeatId, UserId},
    health::Operation,
    queue::QueueError,
    seatmap::best::Want,
    store::{
        holds::{self, HoldOutcome, HoldRequest, Release},
        limits::Limits,
    },
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

/// Longest grade or section name a best-available request may name (the
/// concert rules allow 16 and 32 characters).
const MAX_FILTER_CHARS: usize = 32;

/// What a hold asks for, parsed from the request body once.
#[derive(Debug, Clone)]
pub enum Selection<'a> {
    /// Exactly these seats: sorted, distinct, 1 to
    /// [`MAX_SEATS_PER_REQUEST`].
    Seats(Vec<SeatId>),
    /// The best block of adjacent seats (see [`crate::seatmap::best`]).
    Best(Want<'a>),
}

impl<'a> Selection<'a> {
    /// The selection `body` asks for: its `seat_ids`, or its
    /// `best_available`.
    ///
    /// # Errors
    /// [`BookingError::NoSeats`] (no seat or a quantity of 0),
    /// [`BookingError::DuplicateSeats`], [`BookingError::TooManySeats`],
    /// [`BookingError::InvalidSelection`] (both kinds, or an overlong
    /// filter).
    pub fn of(body: &'a CreateReservation) -> Result<Self, BookingError> {
        match (&body.seat_ids[..], &body.best_available) {
            (ids, None) => Ok(Self::Seats(selection(ids)?)),
            ([], Some(best)) => {
                let quantity = best.quantity as usize;
                if quantity == 0 {
                    return Err(BookingError::NoSeats);
                }
                if quantity > MAX_SEATS_PER_REQUEST {
                    return Err(BookingError::TooManySeats {
                        max: MAX_SEATS_PER_REQUEST as i32,
                    });
                }
                let long = |f: &Option<String>| {
                    f.as_ref()
                        .is_some_and(|f| f.chars().count() > MAX_FILTER_CHARS)
                };
                if long(&best.grade) || long(&best.section) {
                    return Err(BookingError::InvalidSelection(
                        "grade and section are at most 32 characters",
                    ));
                }
                Ok(Self::Best(Want {
                    quantity,
                    grade: best.grade.as_deref(),
                    section: best.section.as_deref(),
                }))
            }
            (_, Some(_)) => Err(BookingError::InvalidSelection(
                "give either seat_ids or best_available, not both",
            )),
        }
    }

    /// Seats asked for.
    pub fn len(&self) -> usize {
        match self {
            Self::Seats(seats) => seats.len(),
            Self::Best(want) => want.quantity,
        }
    }

    /// Whether no seat is asked for (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Booking {
    /// Holds the seats `selection` names (or the best block it asks for) of
    /// `performance` for `fan`, admitted by `access_token`, all or nothing,
    /// for `hold_ttl_seconds` but never past the token's expiry. The checks
    /// run cheapest first: the selection (parsed by the caller), the
    /// token, the performance's sale rules, then the purchase limits and
    /// the claim in one transaction.
    ///
    /// # Errors
    /// - [`BookingError::NoSeats`], [`BookingError::DuplicateSeats`],
    ///   [`BookingError::TooManySeats`] (per request, then per the
    ///   performance's `max_seats_per_order`);
    /// - [`BookingError::Access`]: the token does not admit the performance
    ///   (or expired meanwhile);
    /// - [`BookingError::SubjectMismatch`]: the token is another fan's;
    /// - [`BookingError::SaleNotOpen`];
    /// - [`BookingError::OverLimit`]: the session's or the fan's seats
    ///   would exceed a purchase limit, nothing held;
    /// - [`BookingError::SeatTaken`]: a seat is held or sold, nothing held;
    /// - [`BookingError::NoBlock`]: no row has the block asked for;
    /// - store errors (unknown performance or seats, the fan's other hold
    ///   in progress, faults).
    pub async fn hold(
        &self,
        fan: &UserId,
        access_token: &str,
        performance: PerformanceId,
        selection: &Selection<'_>,
    ) -> Result<Reservation, BookingError> {
        let _timer = self.health.time(Operation::Hold);
        record_user(fan);
        let access = self.queue.verify(performance, access_token).await?;
        admits(fan, &access)?;
        let rules = self.sale_rules(performance).await?;
        if selection.len() > rules.max_seats_per_order as usize {
            return Err(BookingError::TooManySeats {
                max: rules.max_seats_per_order,
            });
        }
        if Utc::now() < rules.sale_opens_at {
            return Err(BookingError::SaleNotOpen);
        }
        let request = HoldRequest {
            user: fan,
            session_id: &access.session_id,
            performance,
            seats: &[],
            ttl: self.settings.hold_ttl(),
            access_expires_at: access.expires_at,
            limits: Limits {
                per_session: rules.max_seats_per_order,
                per_fan: rules.max_tickets_per_fan,
            },
        };
        let seats = match selection {
            Selection::Seats(seats) => seats,
            Selection::Best(want) => return self.hold_best(request, want).await,
        };
        let request = HoldRequest { seats, ..request };
        match holds::hold(&self.db, request).await? {
            HoldOutcome::Held(reservation) => {
                self.note_held(performance, &reservation).await;
                Ok(reservation)
            }
            HoldOutcome::Taken => Err(BookingError::SeatTaken {
                seats_available: self.seats_available(performance).await?,
            }),
            HoldOutcome::OverLimit(exceeded) => Err(BookingError::OverLimit(exceeded)),
            HoldOutcome::AccessExpired => Err(BookingError::Access(QueueError::InvalidToken)),
        }
    }

    /// Releases `fan`'s hold `id`: its seats are free at once. Releasing a
    /// hold that already ended is a no-op. Needs no admission: a fan whose
    /// access ended may still give their seats back.
    ///
    /// # Errors
    /// - store errors: unknown reservation, another fan's, being paid;
    /// - [`BookingError::ReleasePaid`]: the reservation is paid.
    pub async fn release(&self, fan: &UserId, id: Uuid) -> Result<(), BookingError> {
        record_user(fan);
        match holds::release(&self.db, fan, id).await? {
            Release::Paid => Err(BookingError::ReleasePaid),
            // The seats show as free with the next snapshot.
            Release::Ended | Release::AlreadyEnded => Ok(()),
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
