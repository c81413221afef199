//! The position and ETA arithmetic of a waiting fan, and the polling
//! interval that follows from it. Pure: the rates come from the last
//! admission tick (see `waiting_reply` in `lua/replies.lua`).
//!
//! The line moves as fast as the active set lets fans in: at the room's
//! ceiling (`admit_per_second`) while it has free slots, then at the rate
//! fans leave it (departures: purchases, fans leaving, lapsed and reclaimed
//! admissions). So the ETA is the time to fill the free slots at the
//! ceiling, plus the rest of the fans ahead divided by the departure rate
//! measured over the last 30 s. The departure rate is kept within
//! `capacity / access_ttl_seconds` (every admission ends within its TTL,
//! so a full room never moves slower) and the ceiling. The range comes
//! from the slowest and the fastest 5-second bucket of the window (with six
//! buckets, p10 and p90 by nearest rank).

/// Polling interval near the front of the line, in ms.
pub const MIN_POLL_MS: u64 = 1_000;
/// Polling interval far back in the line, in ms.
pub const MAX_POLL_MS: u64 = 30_000;

/// Most a pre-queued fan's poll is spread after the opening, in ms, so that
/// the whole pre-queue does not poll in the same second; arriving early
/// earns nothing in a drawn order, so a late poll loses nothing.
pub const PRE_QUEUE_SPREAD_MS: u64 = 10_000;

/// When a pre-queued fan polls next, in ms: at the opening (at most every
/// [`MAX_POLL_MS`] before), plus a random spread of up to
/// [`PRE_QUEUE_SPREAD_MS`], within a third of the silence window so that
/// the fan stays present once the room is open.
#[must_use]
pub fn pre_queue_poll_ms(opens_in_ms: u64, silence_window_seconds: u64) -> u64 {
    if opens_in_ms > MAX_POLL_MS {
        return MAX_POLL_MS;
    }
    let spread = PRE_QUEUE_SPREAD_MS.min(silence_window_seconds.saturating_mul(1000) / 3);
    let jitter = if spread > 0 {
        rand::random_range(0..spread)
    } else {
        0
    };
    (opens_in_ms + jitter).max(MIN_POLL_MS)
}

/// How fast the line moves, as the last admission tick measured it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LineSpeed {
    /// The admission rate, fans per second: the room's ceiling, or less
    /// while admission control has it cut, or during a slow start the mean
    /// rate over the free slots the fans ahead fill (see
    /// `mean_admission_rate` in `lua/admission_rate.lua`).
    pub admit_per_second: f64,
    /// Slots free in the active set now.
    pub free_slots: u64,
    /// Departures from the active set per second over the last 30 s (mean
    /// since the first departure counted); 0 when nobody has left yet.
    pub departure_rate: f64,
    /// The slowest complete 5-second bucket of the window, per second.
    pub departure_low: f64,
    /// The fastest complete 5-second bucket of the window, per second.
    pub departure_high: f64,
    /// Active set size limit.
    pub capacity: u64,
    /// Lifetime of an admission, seconds.
    pub access_ttl_seconds: u64,
}

/// A waiting fan's place and the derived estimates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// 1-based place in line.
    pub position: u64,
    /// Fans ahead (`position - 1`).
    pub ahead: u64,
    /// Expected wait in seconds, rounded up.
    pub eta_seconds: u64,
    /// The same expected wait in ms, rounded to the nearest ms: near the
    /// front the wait is often under a second, which whole seconds cannot
    /// tell apart.
    pub eta_ms: u64,
    /// The wait if the line keeps its fastest recent pace, seconds.
    pub eta_low_seconds: u64,
    /// The wait if the line keeps its slowest recent pace, seconds; never
    /// more than the fans ahead at `capacity / access_ttl_seconds`.
    pub eta_high_seconds: u64,
    /// When the client should poll next, in ms.
    pub poll_after_ms: u64,
}

/// Seconds (unrounded) for `ahead` fans to pass when `free` slots fill at
/// `ceiling` fans per second and the rest follow at `rate`.
fn wait(ahead: u64, free: u64, ceiling: f64, rate: f64) -> f64 {
    // Precision loss is irrelevant here: the counts are below 2^53 in
    // practice, far finer than the rates they are divided by.
    let first = ahead.min(free) as f64 / ceiling;
    let rest = ahead.saturating_sub(free) as f64 / rate;
    first + rest
}

/// `value` as a whole number, saturating at `u64::MAX` (a cast of a
/// finite, non-negative f64 otherwise).
fn whole(value: f64) -> u64 {
    if value >= u64::MAX as f64 {
        u64::MAX
    } else {
        value as u64
    }
}

/// [`wait`] in seconds, rounded up.
fn wait_seconds(ahead: u64, free: u64, ceiling: f64, rate: f64) -> u64 {
    whole(wait(ahead, free, ceiling, rate).ceil())
}

/// Computes the estimate for a fan with `ahead` fans in front.
///
/// While nobody has left the active set yet (a room that just opened) the
/// ceiling is the expected pace, and the range reaches down to the floor
/// (`capacity / access_ttl_seconds`). `silence_window_seconds` (the
/// abandonment window, or twice the claim window when that is shorter)
/// caps the polling interval at a third of it, so an obedient client is
/// never considered gone and sees its admission well before the claim
/// deadline.
///
/// The poll interval is a quarter of the ETA, clamped to
/// [`MIN_POLL_MS`]..=[`MAX_POLL_MS`]: fans near the front poll every second,
/// the back of a 300,000-fan line every 30 s.
#[must_use]
pub fn estimate(ahead: u64, speed: &LineSpeed, silence_window_seconds: u64) -> Estimate {
    let usable = |rate: f64| rate.is_finite() && rate > 0.0;
    // An unusable ceiling cannot come from a validated room; one fan per
    // second rather than a division by zero.
    let ceiling = if usable(speed.admit_per_second) {
        speed.admit_per_second
    } else {
        1.0
    };
    let floor = if speed.access_ttl_seconds > 0 && speed.capacity > 0 {
        (speed.capacity as f64 / speed.access_ttl_seconds as f64).min(ceiling)
    } else {
        ceiling
    };
    let bounded = |rate: f64| {
        if usable(rate) {
            rate.clamp(floor, ceiling)
        } else {
            floor
        }
    };
    let (mean, slow, fast) = if usable(speed.departure_rate) {
        let mean = bounded(speed.departure_rate);
        (
            mean,
            bounded(speed.departure_low).min(mean),
            bounded(speed.departure_high).max(mean),
        )
    } else {
        (ceiling, floor, ceiling)
    };
    let free = speed.free_slots;
    let eta_seconds = wait_seconds(ahead, free, ceiling, mean);
    let eta_ms = whole((wait(ahead, free, ceiling, mean) * 1_000.0).round());
    let ceiling_ms =
        (silence_window_seconds.saturating_mul(1000) / 3).clamp(MIN_POLL_MS, MAX_POLL_MS);
    let poll_after_ms = (eta_seconds.saturating_mul(1000) / 4).clamp(MIN_POLL_MS, ceiling_ms);
    Estimate {
        position: ahead.saturating_add(1),
        ahead,
        eta_seconds,
        eta_ms,
        eta_low_seconds: wait_seconds(ahead, free, ceiling, fast),
        eta_high_seconds: wait_seconds(ahead, free, ceiling, slow),
        poll_after_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A full room of 1,000 slots, 10 minutes each, ceiling 100/s, whose
    /// fans leave at `rate` per second (between `low` and `high`).
    fn full_room(rate: f64, low: f64, high: f64) -> LineSpeed {
        LineSpeed {
            admit_per_second: 100.0,
            free_slots: 0,
            departure_rate: rate,
            departure_low: low,
            departure_high: high,
            capacity: 1_000,
            access_ttl_seconds: 600,
        }
    }

    #[test]
    fn a_fan_at_the_front_polls_every_second_and_waits_nothing() {
        let e = estimate(0, &full_room(10.0, 10.0, 10.0), 300);
        assert_eq!(
            e,
            Estimate {
                position: 1,
                ahead: 0,
                eta_seconds: 0,
                eta_ms: 0,
                eta_low_seconds: 0,
                eta_high_seconds: 0,
                poll_after_ms: MIN_POLL_MS
            }
        );
    }

    #[test]
    fn a_full_room_moves_at_its_departure_rate_within_its_range() {
        let e = estimate(100, &full_room(10.0, 5.0, 20.0), 300);
        assert_eq!(
            (e.eta_seconds, e.eta_low_seconds, e.eta_high_seconds),
            (10, 5, 20)
        );
    }

    #[test]
    fn free_slots_fill_at_the_ceiling_first() {
        let speed = LineSpeed {
            free_slots: 50,
            ..full_room(10.0, 10.0, 10.0)
        };
        // 50 fans at 100/s, then 50 at 10/s.
        assert_eq!(estimate(100, &speed, 300).eta_seconds, 6);
        assert_eq!(estimate(40, &speed, 300).eta_seconds, 1);
    }

    #[test]
    fn a_wait_under_a_second_is_told_in_ms() {
        let speed = LineSpeed {
            free_slots: 50,
            ..full_room(10.0, 10.0, 10.0)
        };
        // 40 fans at 100/s: 0.4 s, which whole seconds round up to 1.
        let e = estimate(40, &speed, 300);
        assert_eq!((e.eta_ms, e.eta_seconds), (400, 1));
    }

    #[test]
    fn before_anyone_leaves_the_ceiling_is_expected_and_the_floor_bounds_the_range() {
        let e = estimate(100, &full_room(0.0, 0.0, 0.0), 300);
        // Ceiling 100/s; floor 1,000 slots / 600 s = 1.67/s.
        assert_eq!(
            (e.eta_seconds, e.eta_low_seconds, e.eta_high_seconds),
            (1, 1, 60)
        );
    }

    #[test]
    fn a_trickle_of_departures_is_never_slower_than_every_admission_lapsing() {
        let e = estimate(1_000, &full_room(0.01, 0.0, 0.02), 300);
        assert_eq!(e.eta_high_seconds, 600);
        assert_eq!(e.eta_seconds, 600);
    }

    #[test]
    fn pre_queued_fans_poll_at_the_opening_spread_over_ten_seconds() {
        assert_eq!(pre_queue_poll_ms(60_000, 300), MAX_POLL_MS);
        for _ in 0..100 {
            let poll = pre_queue_poll_ms(5_000, 300);
            assert!((5_000..15_000).contains(&poll), "{poll}");
            // A short silence window narrows the spread.
            let poll = pre_queue_poll_ms(5_000, 3);
            assert!((5_000..6_000).contains(&poll), "{poll}");
        }
        assert_eq!(pre_queue_poll_ms(0, 0), MIN_POLL_MS);
    }

    #[test]
    fn far_back_fans_poll_every_thirty_seconds() {
        let speed = full_room(50.0, 50.0, 50.0);
        assert_eq!(estimate(300_000, &speed, 300).poll_after_ms, MAX_POLL_MS);
        // A short silence window pulls the ceiling down.
        assert_eq!(estimate(300_000, &speed, 30).poll_after_ms, 10_000);
    }

    fn speeds() -> impl Strategy<Value = LineSpeed> {
        (
            0.01f64..5_000.0,
            0u64..10_000,
            0.0f64..5_000.0,
            0.0f64..5_000.0,
            0.0f64..5_000.0,
            1u64..100_000,
            1u64..86_400,
        )
            .prop_map(|(ceiling, free, rate, a, b, capacity, ttl)| LineSpeed {
                admit_per_second: ceiling,
                free_slots: free,
                departure_rate: rate,
                departure_low: a.min(b),
                departure_high: a.max(b),
                capacity,
                access_ttl_seconds: ttl,
            })
    }

    proptest! {
        #[test]
        fn the_eta_lies_in_its_range_and_the_range_is_finite(
            ahead in 0u64..10_000_000,
            speed in speeds(),
            silence in 1u64..86_400,
        ) {
            let e = estimate(ahead, &speed, silence);
            prop_assert_eq!(e.position, ahead + 1);
            prop_assert_eq!(e.ahead, ahead);
            prop_assert!(e.eta_low_seconds <= e.eta_seconds);
            prop_assert!(e.eta_seconds <= e.eta_high_seconds);
            // The ms figure is the same estimate, unrounded.
            prop_assert!(e.eta_ms <= e.eta_seconds.saturating_mul(1_000));
            prop_assert!(e.eta_ms.saturating_add(1_000) >= e.eta_seconds.saturating_mul(1_000));
            // Never slower than every admission lapsing (or the ceiling,
            // when that is lower still).
            let floor = (speed.capacity as f64 / speed.access_ttl_seconds as f64)
                .min(speed.admit_per_second);
            prop_assert!(e.eta_high_seconds as f64 <= (ahead as f64 / floor).ceil() + 1.0);
            prop_assert!(e.poll_after_ms >= MIN_POLL_MS);
            prop_assert!(e.poll_after_ms <= MAX_POLL_MS);
            prop_assert!(e.poll_after_ms <= (silence * 1000 / 3).max(MIN_POLL_MS));
        }

        #[test]
        fn in_a_full_room_at_a_steady_pace_the_eta_is_the_fans_ahead_over_that_pace(
            ahead in 0u64..10_000_000,
            rate in 1.67f64..100.0,
        ) {
            let e = estimate(ahead, &full_room(rate, rate, rate), 300);
            prop_assert!(e.eta_seconds as f64 * rate >= ahead as f64 - 1e-6);
            if e.eta_seconds > 0 {
                prop_assert!((e.eta_seconds - 1) as f64 * rate < ahead as f64 + 1e-6);
            }
            prop_assert_eq!(e.eta_low_seconds, e.eta_seconds);
            prop_assert_eq!(e.eta_high_seconds, e.eta_seconds);
        }

        #[test]
        fn fans_further_back_never_poll_more_often_or_wait_less(
            ahead in 0u64..1_000_000,
            extra in 0u64..1_000_000,
            speed in speeds(),
            silence in 1u64..86_400,
        ) {
            let front = estimate(ahead, &speed, silence);
            let back = estimate(ahead + extra, &speed, silence);
            prop_assert!(back.eta_seconds >= front.eta_seconds);
            prop_assert!(back.eta_high_seconds >= front.eta_high_seconds);
            prop_assert!(back.poll_after_ms >= front.poll_after_ms);
        }
    }
}
