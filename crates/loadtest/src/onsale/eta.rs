//! ETA accuracy: every ETA an admitted fan was given while waiting, against
//! the wait that really followed it.
//!
//! A fan's ETAs are those of its `waiting` answers (entry and polls; the
//! `pre_queue` answers carry none), each with the wall-clock time it was
//! received. The real remaining wait of one is the fan's admission time
//! minus that time, at least 0: the admission is `access_expires_at` minus
//! the access TTL (ms, the room's clock; same machine, same clock), or the
//! receipt of the first `active` answer when that had no expiry. For each
//! ETA:
//!
//! - **error**: |`eta_ms` − real| in seconds, and as a share of the
//!   real wait, |eta − real| / max(real, 1 s), in %. `eta_ms` is the same
//!   estimate as `eta_seconds`, unrounded: most waits here are a few
//!   seconds, where rounding up to whole seconds alone would cost up to a
//!   second of error;
//! - **in range**: `eta_low_seconds` − 1 s ≤ real ≤ `eta_high_seconds`
//!   (the bounds are rounded up to whole seconds, so the range they stand
//!   for starts above `eta_low_seconds` − 1).
//!
//! Reported for three sets of answers: **at entry** (each fan's first
//! `waiting` answer: its entry, or for a pre-queued fan its first poll
//! after the opening), **in the last minute** (answers given 60 s or less
//! before the admission), and **every answer**. Targets (reported, never
//! failing): median error ≤ 20 % at entry and ≤ 10 % in the last minute.

use serde::Serialize;

use super::{checks::Check, tally::Passage};
use crate::stats::nearest_rank;

const ISSUE: &str = "issue: fairness, ETA and circulation of the on-sale";
/// Answers this close to the admission, in seconds, are "the last minute".
const LAST_MINUTE_SECONDS: f64 = 60.0;

/// One ETA a waiting fan was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct EtaGiven {
    /// When the answer arrived, ms since the epoch (wall clock).
    pub(super) at_ms: i64,
    /// `eta_ms`.
    pub(super) eta_ms: u64,
    /// `eta_low_seconds`.
    pub(super) low_s: u64,
    /// `eta_high_seconds`.
    pub(super) high_s: u64,
}

/// One ETA against the wait that followed it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Outcome {
    /// |eta − real|, seconds.
    error_s: f64,
    /// |eta − real| / max(real, 1 s), %.
    error_pct: f64,
    /// The real wait fell in the range.
    in_range: bool,
    /// The real wait, seconds.
    real_s: f64,
}

impl Outcome {
    /// `given` against an admission at `admitted_ms` (ms since the epoch).
    fn of(given: &EtaGiven, admitted_ms: i64) -> Self {
        let real_s = ((admitted_ms - given.at_ms) as f64 / 1_000.0).max(0.0);
        let error_s = (given.eta_ms as f64 / 1_000.0 - real_s).abs();
        Self {
            error_s,
            error_pct: error_s * 100.0 / real_s.max(1.0),
            in_range: given.low_s as f64 - 1.0 <= real_s && real_s <= given.high_s as f64,
            real_s,
        }
    }
}

/// The errors of one set of answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct EtaErrors {
    /// Answers in the set.
    pub(super) answers: usize,
    /// Median and p90 (nearest rank) of |eta − real|, seconds.
    pub(super) median_error_seconds: f64,
    pub(super) p90_error_seconds: f64,
    /// Median and p90 of |eta − real| / max(real, 1 s), %.
    pub(super) median_error_pct: f64,
    pub(super) p90_error_pct: f64,
    /// Real waits inside [eta_low − 1 s, eta_high], % of the answers.
    pub(super) within_range_pct: f64,
    /// Median real wait after these answers, seconds.
    pub(super) median_real_wait_seconds: f64,
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

impl EtaErrors {
    /// The errors of `outcomes`; `None` for none.
    fn of(outcomes: &[Outcome]) -> Option<Self> {
        if outcomes.is_empty() {
            return None;
        }
        let quantiles = |f: fn(&Outcome) -> f64| {
            let mut values: Vec<f64> = outcomes.iter().map(f).collect();
            values.sort_by(f64::total_cmp);
            (
                round2(nearest_rank(&values, 0.5)),
                round2(nearest_rank(&values, 0.9)),
            )
        };
        let (median_s, p90_s) = quantiles(|o| o.error_s);
        let (median_pct, p90_pct) = quantiles(|o| o.error_pct);
        let inside = outcomes.iter().filter(|o| o.in_range).count();
        Some(Self {
            answers: outcomes.len(),
            median_error_seconds: median_s,
            p90_error_seconds: p90_s,
            median_error_pct: median_pct,
            p90_error_pct: p90_pct,
            within_range_pct: round2(inside as f64 * 100.0 / outcomes.len() as f64),
            median_real_wait_seconds: quantiles(|o| o.real_s).0,
        })
    }
}

/// ETA accuracy in the JSON report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct EtaReport {
    /// Admitted fans with at least one `waiting` answer.
    pub(super) fans: usize,
    /// Each fan's first `waiting` answer; `null` when none.
    pub(super) at_entry: Option<EtaErrors>,
    /// Answers given at most 60 s before the admission.
    pub(super) last_minute: Option<EtaErrors>,
    /// Every `waiting` answer of an admitted fan.
    pub(super) every_answer: Option<EtaErrors>,
}

impl EtaReport {
    /// The accuracy of the ETAs in the admitted fans' `passages`, whose
    /// admissions lasted `access_ttl_ms`.
    pub(super) fn of(passages: &[Passage], access_ttl_ms: i64) -> Self {
        let (mut fans, mut entry, mut last, mut every) = (0, Vec::new(), Vec::new(), Vec::new());
        for p in passages {
            let admitted_ms = p
                .access_expires_ms
                .map_or(p.first_active_ms, |e| e - access_ttl_ms);
            let outcomes: Vec<Outcome> =
                p.etas.iter().map(|g| Outcome::of(g, admitted_ms)).collect();
            let Some(first) = outcomes.first() else {
                continue;
            };
            fans += 1;
            entry.push(*first);
            last.extend(outcomes.iter().filter(|o| o.real_s <= LAST_MINUTE_SECONDS));
            every.extend(outcomes);
        }
        Self {
            fans,
            at_entry: EtaErrors::of(&entry),
            last_minute: EtaErrors::of(&last),
            every_answer: EtaErrors::of(&every),
        }
    }

    /// The targets on the median error (reported, never failing).
    pub(super) fn targets(&self) -> [Check; 2] {
        let median = |e: &Option<EtaErrors>| e.as_ref().map(|e| e.median_error_pct);
        [
            Check::bounded(
                "ETA median error at entry",
                median(&self.at_entry),
                20.0,
                false,
                "%",
                ISSUE,
            ),
            Check::bounded(
                "ETA median error, last minute",
                median(&self.last_minute),
                10.0,
                false,
                "%",
                ISSUE,
            ),
        ]
    }
}

/// Prints the ETA accuracy.
pub(super) fn print(r: &EtaReport) {
    let line = |name: &str, e: &Option<EtaErrors>| match e {
        Some(e) => println!(
            "  {name:<13} {:>7} answers  error p50 {:.1} s / {:.1} %, p90 {:.1} s / {:.1} %  in range {:.1} %  (real wait p50 {:.1} s)",
            e.answers,
            e.median_error_seconds,
            e.median_error_pct,
            e.p90_error_seconds,
            e.p90_error_pct,
            e.within_range_pct,
            e.median_real_wait_seconds
        ),
        None => println!("  {name:<13} no answers"),
    };
    println!("ETA accuracy ({} admitted fans who waited):", r.fans);
    line("at entry", &r.at_entry);
    line("last minute", &r.last_minute);
    line("every answer", &r.every_answer);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(at_ms: i64, eta_s: u64, low_s: u64, high_s: u64) -> EtaGiven {
        EtaGiven {
            at_ms,
            eta_ms: eta_s * 1_000,
            low_s,
            high_s,
        }
    }

    #[test]
    fn an_outcome_compares_the_eta_with_the_wait_that_followed() {
        // 20 s promised, admitted 25 s later.
        let o = Outcome::of(&given(1_000, 20, 15, 30), 26_000);
        assert_eq!((o.error_s, o.error_pct, o.in_range), (5.0, 20.0, true));
        // Short waits are judged against at least 1 s.
        let o = Outcome::of(&given(0, 1, 1, 1), 200);
        assert!((o.error_pct - 80.0).abs() < 1e-9);
        // 0.2 s is in a range rounded up to [1, 1].
        assert!(o.in_range);
        // An answer received just after the admission waited 0 s.
        let o = Outcome::of(&given(5_000, 0, 0, 2), 4_900);
        assert_eq!((o.real_s, o.error_s, o.in_range), (0.0, 0.0, true));
        assert!(!Outcome::of(&given(0, 10, 8, 12), 13_000).in_range);
        assert!(!Outcome::of(&given(0, 10, 9, 12), 7_500).in_range);
    }

    #[test]
    fn entry_last_minute_and_every_answer_are_told_apart() {
        let ttl = 600_000;
        let passages = [
            // Admitted at 100 s: promised 90 s at 0 s (real 100), then 30 s
            // at 60 s (real 40).
            Passage {
                access_expires_ms: Some(100_000 + ttl),
                first_active_ms: 101_000,
                etas: vec![given(0, 90, 80, 120), given(60_000, 30, 20, 50)],
                ..Passage::default()
            },
            // No expiry: the first active answer (10 s) is the admission;
            // promised 10 s at 0 s.
            Passage {
                access_expires_ms: None,
                first_active_ms: 10_000,
                etas: vec![given(0, 10, 5, 15)],
                ..Passage::default()
            },
            // Admitted before any waiting answer: no ETA.
            Passage::default(),
        ];
        let r = EtaReport::of(&passages, ttl);
        assert_eq!(r.fans, 2);
        let entry = r.at_entry.clone().unwrap();
        assert_eq!(entry.answers, 2);
        // Errors 10 % (10 s of 100) and 0 %: nearest-rank median 0 %.
        assert_eq!((entry.median_error_pct, entry.p90_error_pct), (0.0, 10.0));
        let last = r.last_minute.clone().unwrap();
        assert_eq!(last.answers, 2);
        // 10 s of 40 s: 25 %.
        assert_eq!(last.p90_error_pct, 25.0);
        assert_eq!(r.every_answer.as_ref().map(|e| e.answers), Some(3));
        let targets = r.targets();
        assert!(targets[0].ok && targets[1].ok);
        let nothing = EtaReport::of(&[], ttl);
        assert!(nothing.at_entry.is_none() && nothing.targets().iter().all(|t| t.ok));
    }
}
