//! The booking core's health, as the waiting room's admission follows it.
//!
//! Each instance measures its hold and payment requests (from the moment
//! the booking layer takes them to its answer, errors included) and samples
//! whether requests are waiting for a database connection with every
//! connection in use. The inventory
//! reporter hands the figures of each period (about a second) to the
//! waiting room with its inventory reports, and starts a new period. The
//! room halves its admission rate when a p95 passes its latency target or
//! the pool saturated, and raises it again while the core is healthy
//! (queue-service's `lua/inventory.lua`).

use std::{
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;

/// Largest latency recorded, µs (two minutes); longer ones count as this.
const MAX_MICROS: u64 = 120_000_000;
/// Share of the pool samples of a period in which requests waited for a
/// connection, above which the pool counts as saturated.
const SATURATED_SHARE: f64 = 0.5;

/// The operations whose latency the waiting room follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A hold (picked seats or best available).
    Hold,
    /// A payment.
    Payment,
}

/// One period's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HealthReport {
    /// p95 of the period's holds, ms, rounded up; 0 without holds.
    pub hold_p95_ms: u32,
    /// p95 of the period's payments, ms, rounded up; 0 without payments.
    pub payment_p95_ms: u32,
    /// Holds measured.
    pub holds: u32,
    /// Payments measured.
    pub payments: u32,
    /// Requests waited for a connection in more than half the samples.
    pub pool_saturated: bool,
}

/// Latencies and pool samples of the current period, shared by every
/// request of one instance.
#[derive(Debug)]
pub struct Health {
    holds: Mutex<Histogram<u64>>,
    payments: Mutex<Histogram<u64>>,
    samples: AtomicU32,
    waited: AtomicU32,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

/// Records the elapsed time of one operation when dropped, so that early
/// returns, errors and cancelled requests are measured too.
#[derive(Debug)]
#[must_use = "the operation is measured until the timer is dropped"]
pub struct Timer<'a> {
    health: &'a Health,
    operation: Operation,
    started: Instant,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.health.record(self.operation, self.started.elapsed());
    }
}

fn histogram() -> Histogram<u64> {
    // Two significant digits: 1 % resolution at any latency.
    Histogram::new_with_bounds(1, MAX_MICROS, 2).unwrap_or_else(|_| {
        unreachable!("1 ≤ low, high ≥ 2 × low, and 2 significant digits are valid bounds")
    })
}

impl Health {
    /// An empty period.
    #[must_use]
    pub fn new() -> Self {
        Self {
            holds: Mutex::new(histogram()),
            payments: Mutex::new(histogram()),
            samples: AtomicU32::new(0),
            waited: AtomicU32::new(0),
        }
    }

    fn of(&self, operation: Operation) -> &Mutex<Histogram<u64>> {
        match operation {
            Operation::Hold => &self.holds,
            Operation::Payment => &self.payments,
        }
    }

    /// Measures `operation` until the returned timer is dropped.
    pub fn time(&self, operation: Operation) -> Timer<'_> {
        Timer {
            health: self,
            operation,
            started: Instant::now(),
        }
    }

    /// Records one `operation` that took `elapsed`.
    pub fn record(&self, operation: Operation, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(MAX_MICROS);
        self.of(operation)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .saturating_record(micros.clamp(1, MAX_MICROS));
    }

    /// One sample of the pool: `saturated` when requests wait for a
    /// connection with every connection in use.
    pub fn sample_pool(&self, saturated: bool) {
        self.samples.fetch_add(1, Ordering::Relaxed);
        if saturated {
            self.waited.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The period's figures; starts a new period.
    pub fn take(&self) -> HealthReport {
        let (hold_p95_ms, holds) = p95_and_reset(&self.holds);
        let (payment_p95_ms, payments) = p95_and_reset(&self.payments);
        let samples = self.samples.swap(0, Ordering::Relaxed);
        let waited = self.waited.swap(0, Ordering::Relaxed);
        HealthReport {
            hold_p95_ms,
            payment_p95_ms,
            holds,
            payments,
            pool_saturated: samples > 0 && f64::from(waited) > f64::from(samples) * SATURATED_SHARE,
        }
    }
}

/// The p95 in ms (rounded up) and the count of `histogram`, which is then
/// emptied.
fn p95_and_reset(histogram: &Mutex<Histogram<u64>>) -> (u32, u32) {
    let mut h = histogram.lock().unwrap_or_else(PoisonError::into_inner);
    let count = u32::try_from(h.len()).unwrap_or(u32::MAX);
    let p95 = if count == 0 {
        0
    } else {
        u32::try_from(h.value_at_quantile(0.95).div_ceil(1000)).unwrap_or(u32::MAX)
    };
    h.reset();
    (p95, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_p95_of_a_period_is_reported_once_and_the_next_period_starts_empty() {
        let health = Health::new();
        for ms in 1..=100 {
            health.record(Operation::Hold, Duration::from_millis(ms));
        }
        health.record(Operation::Payment, Duration::from_millis(250));
        let report = health.take();
        assert_eq!(report.holds, 100);
        // 1 % resolution: the 95th of 1..=100 ms.
        assert!((95..=96).contains(&report.hold_p95_ms), "{report:?}");
        assert_eq!(report.payments, 1);
        // Two significant digits, rounded up: 250 ms reads as 250–253 ms.
        assert!((250..=253).contains(&report.payment_p95_ms), "{report:?}");
        assert!(!report.pool_saturated);
        assert_eq!(health.take(), HealthReport::default());
    }

    #[test]
    fn a_timer_measures_an_operation_that_returns_early() {
        let health = Health::new();
        {
            let _timer = health.time(Operation::Payment);
            std::thread::sleep(Duration::from_millis(5));
        }
        let report = health.take();
        assert_eq!(report.payments, 1);
        assert!(report.payment_p95_ms >= 5, "{report:?}");
    }

    #[test]
    fn the_pool_is_saturated_when_requests_waited_in_most_samples() {
        let health = Health::new();
        for saturated in [false, true, true, true] {
            health.sample_pool(saturated);
        }
        assert!(health.take().pool_saturated, "3 of 4");
        for saturated in [false, false, true, true] {
            health.sample_pool(saturated);
        }
        assert!(!health.take().pool_saturated, "half is not most");
        assert!(!health.take().pool_saturated, "no samples");
    }
}
