//! The simulation's counters and latency samples, shared by every fan.

use std::{
    collections::BTreeMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use onsale_client::{Observation, Operation};
use reqwest::StatusCode;
use serde::Serialize;

use super::eta::EtaGiven;

/// A request step whose latency is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Step {
    Enter,
    Claim,
    Poll,
    Seats,
    Hold,
    Pay,
}

impl Step {
    /// The step a fan's call belongs to; seeding, leaving and the report's
    /// own reads are not steps.
    fn of(operation: Operation) -> Option<Self> {
        Some(match operation {
            Operation::Enter => Self::Enter,
            Operation::ClaimCoupon => Self::Claim,
            Operation::Poll => Self::Poll,
            Operation::SeatMap => Self::Seats,
            Operation::Hold => Self::Hold,
            Operation::Pay => Self::Pay,
            _ => return None,
        })
    }
}

/// Everything counted during a run.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) latencies_ms: Mutex<BTreeMap<Step, Vec<f64>>>,
    /// From sending the entry to the first `active` answer, ms.
    pub(super) activation_wait_ms: Mutex<Vec<f64>>,
    /// The same, counted from the opening for pre-queued fans, ms.
    pub(super) activation_wait_from_opening_ms: Mutex<Vec<f64>>,
    /// Each admitted fan's way through the room, for the fairness and ETA
    /// figures.
    pub(super) passages: Mutex<Vec<Passage>>,
    /// Fans whose entry answered `pre_queue`.
    pub(super) pre_queued: AtomicU64,
    /// How long each fan who stopped polling while waiting (`--abandon`)
    /// had waited since sending its entry, ms.
    pub(super) abandon_wait_ms: Mutex<Vec<f64>>,
    pub(super) status_counts: Mutex<BTreeMap<u16, u64>>,
    pub(super) entered: AtomicU64,
    /// Milliseconds from the first arrival to the latest entry.
    pub(super) last_entry_ms: AtomicU64,
    pub(super) abandoned: AtomicU64,
    pub(super) admitted: AtomicU64,
    pub(super) holds: AtomicU64,
    pub(super) conflicts: AtomicU64,
    pub(super) let_expire: AtomicU64,
    pub(super) payments: AtomicU64,
    pub(super) seats_paid: AtomicU64,
    pub(super) gave_up: AtomicU64,
    /// Fans the waiting room told `sold_out` (at entry or while waiting).
    pub(super) told_sold_out: AtomicU64,
    /// How long fans told `sold_out` while waiting had waited, in ms.
    pub(super) sold_out_wait_ms: Mutex<Vec<f64>>,
    /// Fans admitted after every seat was sold.
    pub(super) admitted_after_sold_out: AtomicU64,
    pub(super) transport_errors: AtomicU64,
    pub(super) finished: AtomicU64,
    /// Journeys ended by an error without an answer (no response, or a
    /// body that did not decode), by call and kind.
    pub(super) errors: Mutex<BTreeMap<String, u64>>,
    pub(super) coupons: CouponTally,
    pub(super) seat_step: SeatStepTally,
}

/// One admitted fan's way through the waiting room.
#[derive(Debug, Clone, Default)]
pub(super) struct Passage {
    /// µs from the first arrival to sending the entry (its first try, so
    /// the server placed the fan after it).
    pub(super) entry_sent_us: u64,
    /// µs from the first arrival to the entry's answer (the server placed
    /// the fan before it).
    pub(super) entry_answered_us: u64,
    /// The entry answered `pre_queue`: the fan entered before the opening.
    pub(super) pre_queued: bool,
    /// `access_expires_at` of the first `active` answer, ms since the
    /// epoch; `None` when it had none.
    pub(super) access_expires_ms: Option<i64>,
    /// When the first `active` answer arrived, ms since the epoch.
    pub(super) first_active_ms: i64,
    /// Every `waiting` answer's ETA, in order.
    pub(super) etas: Vec<EtaGiven>,
}

/// What the fans met at the seat step (holding seats).
#[derive(Default)]
pub(super) struct SeatStepTally {
    /// Fans who asked for the best available seats.
    pub(super) best_available_fans: AtomicU64,
    /// Fans who picked their own seats from the seat map.
    pub(super) picking_fans: AtomicU64,
    /// Hold requests answered (a hold, a 409 or another refusal; 429 and
    /// 503 answers retried after `Retry-After` are not counted apart).
    pub(super) hold_attempts: AtomicU64,
    /// 409s to a hold whose `seats_available` was at least the seats asked
    /// for: enough seats remained, the hold still failed.
    pub(super) conflicts_with_seats_left: AtomicU64,
    /// 409s to a hold by problem `code`.
    pub(super) conflict_codes: Mutex<BTreeMap<String, u64>>,
    /// Of `hold_attempts`, those of picking fans.
    pub(super) picking_hold_attempts: AtomicU64,
    /// Of `conflicts_with_seats_left`, those of picking fans.
    pub(super) picking_conflicts_with_seats_left: AtomicU64,
    /// Fans who reached the seat step (were admitted and asked for seats).
    pub(super) reached: AtomicU64,
    /// Of those, fans who booked: held seats and paid, or held and let the
    /// hold lapse by choice.
    pub(super) booked: AtomicU64,
    /// Fans who left the seat step without a booking while seats remained
    /// (the last answer they saw showed seats free, or their hold or
    /// payment failed).
    pub(super) failed_with_seats_left: AtomicU64,
    /// Fans who left the seat step without a booking because none remained
    /// (sold out, or every seat held or sold in the last answer they saw).
    pub(super) ended_without_seats: AtomicU64,
}

impl SeatStepTally {
    /// Counts one answered hold, of a picking fan when `picks`.
    pub(super) fn attempt(&self, picks: bool) {
        self.hold_attempts.fetch_add(1, Ordering::Relaxed);
        if picks {
            self.picking_hold_attempts.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one 409 to a hold of `asked` seats (by a picking fan when
    /// `picks`) with `code` and the problem's `seats_available` (absent:
    /// unknown, not counted as seats left).
    pub(super) fn conflict(
        &self,
        picks: bool,
        code: Option<&str>,
        seats_available: Option<u64>,
        asked: u64,
    ) {
        if seats_available.is_some_and(|free| free >= asked) {
            self.conflicts_with_seats_left
                .fetch_add(1, Ordering::Relaxed);
            if picks {
                self.picking_conflicts_with_seats_left
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Ok(mut codes) = self.conflict_codes.lock() {
            *codes
                .entry(code.unwrap_or("(none)").to_owned())
                .or_default() += 1;
        }
    }
}

/// What the fans saw of the coupon campaign.
#[derive(Default)]
pub(super) struct CouponTally {
    /// Fans who tried to claim one.
    pub(super) claimers: AtomicU64,
    /// Fans who got one (201, or `already_claimed` with theirs after a
    /// retried claim).
    pub(super) issued: AtomicU64,
    /// 409 `sold_out` answers.
    pub(super) sold_out: AtomicU64,
    /// Any other refusal of a claim.
    pub(super) claims_refused: AtomicU64,
    /// Payments that spent a coupon.
    pub(super) used: AtomicU64,
    /// Payments refused because of their coupon (`coupon_used`,
    /// `coupon_expired`, `unknown_coupon`, `coupon_not_applicable`); the fan
    /// then pays without it.
    pub(super) payments_refused: AtomicU64,
    /// KRW taken off by coupons.
    pub(super) discount_krw: AtomicU64,
    /// Coupon payments whose discount or amount differs from the
    /// campaign's discount on the price.
    pub(super) discount_mismatches: AtomicU64,
}

impl Tally {
    /// Records one response of a fan's step: its latency and its status.
    /// Every response counts, retried or not.
    pub(super) fn observe(&self, observation: &Observation) {
        if let Some(step) = Step::of(observation.operation) {
            self.record(step, observation.elapsed, observation.status);
        }
    }

    fn record(&self, step: Step, elapsed: Duration, status: StatusCode) {
        let ms = elapsed.as_secs_f64() * 1_000.0;
        if let Ok(mut map) = self.latencies_ms.lock() {
            map.entry(step).or_default().push(ms);
        }
        if let Ok(mut counts) = self.status_counts.lock() {
            *counts.entry(status.as_u16()).or_default() += 1;
        }
    }

    /// Responses with a 5xx status so far.
    pub(super) fn count_5xx(&self) -> u64 {
        self.status_counts
            .lock()
            .map(|c| c.iter().filter(|(s, _)| **s >= 500).map(|(_, n)| n).sum())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_fans_steps_are_recorded() {
        let tally = Tally::default();
        for (operation, status) in [
            (Operation::Enter, StatusCode::CREATED),
            (Operation::Enter, StatusCode::TOO_MANY_REQUESTS),
            (Operation::Leave, StatusCode::NO_CONTENT),
            (Operation::Charge, StatusCode::CREATED),
            (Operation::Pay, StatusCode::SERVICE_UNAVAILABLE),
        ] {
            tally.observe(&Observation {
                operation,
                status,
                elapsed: Duration::from_millis(2),
            });
        }
        let latencies = tally.latencies_ms.lock().unwrap();
        assert_eq!(latencies[&Step::Enter], vec![2.0, 2.0]);
        assert_eq!(latencies.len(), 2);
        assert_eq!(tally.count_5xx(), 1);
    }
}
