//! The seat step of a fan's journey: hold seats, the best available or
//! picked from the seat map, trying again while seats may come back; and
//! what the fan saw there, for the booking success rate.
//!
//! - **Best available** (most fans; `--pick-own-seats` of them pick): one
//!   `POST /v1/reservations` with `best_available: {quantity}`, no seat-map
//!   read; the server holds the best adjacent block. On 409
//!   `no_block_available` the fan asks for fewer: as many as
//!   `seats_available` says are left, or one fewer when enough are left but
//!   not side by side; with none left it waits a second for lapsed holds.
//! - **Pick your seats**: reads the seat map, picks free seats at random,
//!   and picks again after a 409 `seat_taken`.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use core_service::domain::SeatId;
use onsale_client::{
    Client, Error,
    core_api::{CreateReservation, Reservation},
};
use rand::{Rng, seq::SliceRandom};
use reqwest::StatusCode;

use super::{
    journey::{Sim, answer, patiently},
    tally::SeatStepTally,
};

/// What one fan met at the seat step.
#[derive(Debug, Default)]
pub(super) struct SeatStep {
    /// The fan was admitted and asked for seats.
    pub(super) reached: bool,
    /// Held and paid, or held and let the hold lapse by choice.
    pub(super) booked: bool,
    /// Free seats in the last answer the fan saw: the seat map, a 409's
    /// `seats_available`, or its own hold; `None` when nothing told.
    pub(super) last_free: Option<u64>,
}

impl SeatStep {
    /// Counts how the fan's seat step ended; `sold_out` is whether every
    /// seat was paid for when the fan finished.
    pub(super) fn count(&self, tally: &SeatStepTally, sold_out: bool) {
        if !self.reached {
            return;
        }
        tally.reached.fetch_add(1, Ordering::Relaxed);
        let counter = if self.booked {
            &tally.booked
        } else if self.last_free.map_or(!sold_out, |free| free > 0) {
            &tally.failed_with_seats_left
        } else {
            &tally.ended_without_seats
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// How the seat step ended.
pub(super) enum Held {
    Seats(Reservation),
    /// Sold out, or patience ran out; the fan has left the queue.
    NoSeat,
    /// A refusal that ends the journey.
    Stopped,
}

/// `seats_available` of a 409's problem.
fn seats_available(error: &Error) -> Option<u64> {
    error.problem()?.extensions.get("seats_available")?.as_u64()
}

/// The next best-available quantity after a 409 `no_block_available` for
/// `asked` seats with `free` seats left (at least one): all that are left
/// when fewer than asked, else one fewer (enough left, not side by side).
fn fewer(asked: u32, free: u64) -> u32 {
    let free = u32::try_from(free).unwrap_or(u32::MAX);
    if free < asked {
        free.max(1)
    } else {
        asked.saturating_sub(1).max(1)
    }
}

impl Sim {
    /// Holds up to `quantity` seats for `fan` (admitted with `access`, in
    /// line with `queue_token`): the best available, or picked from the
    /// seat map when `picks`. Keeps trying while seats may come back
    /// (lapsed holds), until the sale is sold out or patience (twice the
    /// hold TTL plus 10 s) runs out.
    pub(super) async fn hold_seats(
        &self,
        fan: &Client,
        access: &str,
        queue_token: &str,
        mut quantity: u32,
        picks: bool,
        step: &mut SeatStep,
    ) -> Result<Held, Error> {
        let event = self.performance.get();
        let counts = &self.tally.seat_step;
        let fans = if picks {
            &counts.picking_fans
        } else {
            &counts.best_available_fans
        };
        fans.fetch_add(1, Ordering::Relaxed);
        step.reached = true;
        let patience = Instant::now() + Duration::from_secs(self.args.hold_ttl * 2 + 10);
        loop {
            let sold_out = self.sold_out.load(Ordering::Relaxed);
            if sold_out || Instant::now() > patience.min(self.deadline) {
                if sold_out {
                    step.last_free = Some(0);
                }
                let _ = fan.leave(event, queue_token).await;
                return Ok(Held::NoSeat);
            }
            let hold = if picks {
                let Some(map) = answer(patiently(|| fan.seat_map(event)).await)? else {
                    return Ok(Held::Stopped);
                };
                let mut free: Vec<SeatId> = map
                    .seats
                    .iter()
                    .filter(|s| s.available)
                    .filter_map(|s| SeatId::new(s.id).ok())
                    .collect();
                step.last_free = Some(free.len() as u64);
                if free.is_empty() {
                    tokio::time::sleep(Duration::from_millis(1_000)).await;
                    continue;
                }
                free.shuffle(&mut rand::rng());
                free.truncate(quantity as usize);
                CreateReservation::seats(self.performance, free)
            } else {
                CreateReservation::best_available(self.performance, quantity)
            };
            let asked = if picks {
                hold.seat_ids.len() as u64
            } else {
                u64::from(quantity)
            };
            let result = patiently(|| fan.hold(access, &hold)).await;
            if matches!(result, Ok(_) | Err(Error::Status { .. })) {
                counts.attempt(picks);
            }
            let error = match result {
                Ok(reservation) => {
                    step.last_free = Some(reservation.seats.len() as u64);
                    return Ok(Held::Seats(reservation));
                }
                Err(error) if error.status() == Some(StatusCode::CONFLICT) => error,
                Err(Error::Status { .. }) => return Ok(Held::Stopped),
                Err(error) => return Err(error),
            };
            let free = seats_available(&error);
            counts.conflict(picks, error.code(), free, asked);
            self.tally.conflicts.fetch_add(1, Ordering::Relaxed);
            if free.is_some() {
                step.last_free = free;
            }
            match (error.code(), free) {
                // Limits do not lift by trying again.
                (Some("order_limit" | "fan_limit"), _) => return Ok(Held::Stopped),
                // None left: wait for lapsed holds.
                (_, Some(0)) => {
                    tokio::time::sleep(Duration::from_millis(1_000)).await;
                    continue;
                }
                (Some("no_block_available"), Some(free)) if !picks => {
                    quantity = fewer(quantity, free);
                }
                _ => {}
            }
            let pause = rand::rng().random_range(50..250);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fan_without_a_block_asks_for_fewer() {
        assert_eq!(fewer(4, 2), 2);
        assert_eq!(fewer(4, 9), 3);
        assert_eq!(fewer(1, 5), 1);
    }

    #[test]
    fn only_fans_who_left_while_seats_remained_count_against_the_rate() {
        let tally = SeatStepTally::default();
        let fans = [
            SeatStep::default(),
            SeatStep {
                reached: true,
                booked: true,
                last_free: Some(2),
            },
            SeatStep {
                reached: true,
                booked: false,
                last_free: Some(3),
            },
            SeatStep {
                reached: true,
                booked: false,
                last_free: Some(0),
            },
            SeatStep {
                reached: true,
                booked: false,
                last_free: None,
            },
        ];
        for fan in &fans {
            fan.count(&tally, true);
        }
        let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        assert_eq!(n(&tally.reached), 4);
        assert_eq!(n(&tally.booked), 1);
        assert_eq!(n(&tally.failed_with_seats_left), 1);
        assert_eq!(n(&tally.ended_without_seats), 2);
    }
}
