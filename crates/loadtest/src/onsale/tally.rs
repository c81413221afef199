//! The simulation's counters and latency samples, shared by every fan.

use std::{
    collections::BTreeMap,
    sync::{Mutex, atomic::AtomicU64},
    time::Duration,
};

use onsale_client::{Observation, Operation};
use reqwest::StatusCode;
use serde::Serialize;

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
    pub(super) activation_wait_ms: Mutex<Vec<f64>>,
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
    pub(super) transport_errors: AtomicU64,
    pub(super) finished: AtomicU64,
    pub(super) coupons: CouponTally,
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
