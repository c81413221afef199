//! Best-available holds: pick the best block from the availability
//! snapshot and this process's board, claim it with the same
//! all-or-nothing statement as a pick-your-seat hold, and pick again when
//! another instance got there first.

use std::time::Instant;

use super::{Booking, BookingError};
use crate::{
    api::Reservation,
    domain::{PerformanceId, SeatId},
    queue::QueueError,
    seatmap::best::Want,
    store::holds::{self, HoldOutcome, HoldRequest},
};

/// Claims tried before a contended best-available hold gives up with a
/// retryable 409 `seat_taken`. Within one instance picks never collide, so
/// only other instances' holds since the snapshot cost attempts.
const ATTEMPTS: usize = 6;

impl Booking {
    /// Holds the best block for `want` under `request` (whose `seats` are
    /// ignored).
    ///
    /// A pick that finds no block in a snapshot older than this call looks
    /// again in a fresh one (shared with concurrent callers) before it
    /// answers [`BookingError::NoBlock`], so a fan is never told "none left"
    /// from stale data.
    ///
    /// # Errors
    /// As [`Booking::hold`].
    pub(super) async fn hold_best(
        &self,
        request: HoldRequest<'_>,
        want: &Want<'_>,
    ) -> Result<Reservation, BookingError> {
        let performance = request.performance;
        let map = self.maps.map(performance).await?;
        let started = Instant::now();
        let mut read_after = None;
        for attempt in 0..ATTEMPTS {
            let snapshot = self.maps.snapshot(performance, &map, read_after).await?;
            let Some(pending) = map.board.pick(&map.layout, &snapshot, want) else {
                if snapshot.read_at >= started {
                    return Err(BookingError::NoBlock {
                        seats_available: i64::from(snapshot.seats_available()),
                    });
                }
                read_after = Some(Instant::now());
                continue;
            };
            let seats: Vec<SeatId> = pending
                .seats()
                .iter()
                .filter_map(|i| SeatId::new(map.layout.id_of(*i)).ok())
                .collect();
            match holds::hold(
                &self.db,
                HoldRequest {
                    seats: &seats,
                    ..request
                },
            )
            .await?
            {
                HoldOutcome::Held(reservation) => {
                    pending.taken();
                    return Ok(reservation);
                }
                HoldOutcome::Taken => {
                    pending.taken();
                    tracing::debug!(attempt, "a best-available block was taken meanwhile");
                    // From the second collision on, the snapshot is too old
                    // to pick from.
                    if attempt >= 1 {
                        read_after = Some(Instant::now());
                    }
                }
                HoldOutcome::OverLimit(exceeded) => return Err(BookingError::OverLimit(exceeded)),
                HoldOutcome::AccessExpired => {
                    return Err(BookingError::Access(QueueError::InvalidToken));
                }
            }
        }
        Err(BookingError::SeatTaken {
            seats_available: self.seats_available(performance).await?,
        })
    }

    /// Marks the seats of `reservation`, just held by pick-your-seat, as
    /// taken on this process's board, so best-available picks skip them
    /// before the next snapshot.
    pub(super) async fn note_held(&self, performance: PerformanceId, reservation: &Reservation) {
        if let Ok(map) = self.maps.map(performance).await {
            map.board.held(
                reservation
                    .seats
                    .iter()
                    .filter_map(|seat| map.layout.index_of(seat.id)),
            );
        }
    }
}
