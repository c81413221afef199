//! Fairness of the waiting room's order, from what the fans saw: FIFO
//! after opening, a fair shuffle of the pre-queue, and the pre-queue ahead
//! of everyone who came later.
//!
//! Only admitted fans count (fans who abandoned, were told `sold_out` or
//! were never admitted have no admission to order). A fan's admission is
//! its `access_expires_at` (ms): every admission of a run lasts the same
//! access TTL, so ordering by expiry is ordering by admission, and fans
//! admitted in the same tick tie.
//!
//! - **FIFO inversions** among the fans whose entry answered `waiting`
//!   (they entered after opening): pairs (i, j) where i entered strictly
//!   before j (i's entry was answered before j's entry was first sent, so
//!   the order the server saw is unambiguous whatever the network did) and
//!   i was admitted strictly later than j. Pairs whose entries overlapped
//!   are not ordered and never count. Target 0.
//! - **Pre-queued fans behind later arrivals**: pairs (p, a) of a fan whose
//!   entry answered `pre_queue` and one whose entry answered `waiting`
//!   (always later: the room had opened), with p admitted strictly later
//!   than a. Target 0.
//! - **Kendall τ-b** between arrival order (entry answered, µs) and
//!   admission order of the pre-queued fans: about 0 for a uniformly random
//!   order. With n fans a fair shuffle still scatters τ by σ ≈ 0.67 / √n
//!   (0.03 for 450 fans), so the check's bound is 0.05 or three of those
//!   standard deviations (σ with the ties of this run, see `kendall`),
//!   whichever is wider: a fair shuffle fails it about once in 370 runs,
//!   an order that follows arrival (τ near 1) always. Measured only with
//!   at least [`MIN_TAU_FANS`] pre-queued admitted fans.

use serde::Serialize;

use super::{
    checks::Check,
    kendall::{Tau, kendall_tau_b},
    tally::Passage,
};

/// Source of the fairness checks.
const ISSUE: &str = "issue: fairness, ETA and circulation of the on-sale";
/// Fewest pre-queued admitted fans for which τ is judged.
pub(super) const MIN_TAU_FANS: usize = 100;
/// The bound on |τ| the issue sets (widened to 3 σ for small samples).
const TAU_BOUND: f64 = 0.05;

/// One admitted fan, as the fairness figures see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Admitted {
    /// µs from the first arrival to sending the entry (its first try).
    pub(super) sent_us: u64,
    /// µs from the first arrival to the entry's answer.
    pub(super) answered_us: u64,
    /// Admission order: `access_expires_at`, ms since the epoch.
    pub(super) admitted_ms: i64,
}

/// Pairs (i, j) with `i.answered_us < j.sent_us` (i entered strictly
/// before j), and those of them with `i.admitted_ms > j.admitted_ms` (i
/// admitted strictly later): `(ordered pairs, inversions)`. O(n log n).
pub(super) fn fifo_inversions(fans: &[Admitted]) -> (u64, u64) {
    let mut by_answer: Vec<&Admitted> = fans.iter().collect();
    by_answer.sort_by_key(|f| f.answered_us);
    let mut by_sent: Vec<&Admitted> = fans.iter().collect();
    by_sent.sort_by_key(|f| f.sent_us);
    let mut ranks: Vec<i64> = fans.iter().map(|f| f.admitted_ms).collect();
    ranks.sort_unstable();
    ranks.dedup();
    // 1-based rank of an admission among the distinct admissions.
    let rank = |ms: i64| ranks.partition_point(|&r| r <= ms);
    let mut tree = Fenwick::new(ranks.len());
    let (mut added, mut ordered, mut inversions) = (0_usize, 0_u64, 0_u64);
    for j in by_sent {
        while let Some(i) = by_answer.get(added).filter(|i| i.answered_us < j.sent_us) {
            tree.add(rank(i.admitted_ms));
            added += 1;
        }
        ordered += added as u64;
        inversions += (added - tree.prefix(rank(j.admitted_ms))) as u64;
    }
    (ordered, inversions)
}

/// Pairs of one of `earlier` (admissions, ms) and one of `later` where the
/// one of `earlier` was admitted strictly later. O(n log n).
pub(super) fn behind_later(earlier: &[i64], later: &[i64]) -> u64 {
    let mut sorted = earlier.to_vec();
    sorted.sort_unstable();
    later
        .iter()
        .map(|&a| (sorted.len() - sorted.partition_point(|&p| p <= a)) as u64)
        .sum()
}

/// Counts over 1-based ranks up to its size.
struct Fenwick(Vec<usize>);

impl Fenwick {
    fn new(size: usize) -> Self {
        Self(vec![0; size + 1])
    }

    fn add(&mut self, mut rank: usize) {
        while rank < self.0.len() {
            self.0[rank] += 1;
            rank += rank & rank.wrapping_neg();
        }
    }

    /// Values added at ranks 1..=`rank`.
    fn prefix(&self, mut rank: usize) -> usize {
        let mut total = 0;
        while rank > 0 {
            total += self.0[rank];
            rank -= rank & rank.wrapping_neg();
        }
        total
    }
}

/// The fairness figures in the JSON report.
#[derive(Debug, Serialize)]
pub(super) struct FairnessReport {
    /// Fans whose entry answered `pre_queue` (admitted or not).
    pub(super) pre_queued_fans: u64,
    /// Of those, admitted with an `access_expires_at`.
    pub(super) pre_queued_admitted: usize,
    /// Admitted fans whose entry answered `waiting` (after opening).
    pub(super) after_opening_admitted: usize,
    /// Pairs of those whose entry order is unambiguous.
    pub(super) fifo_ordered_pairs: u64,
    /// Of those pairs, the ones admitted in the other order; `null` below
    /// two fans.
    pub(super) fifo_inversions: Option<u64>,
    /// Pairs of a pre-queued and an after-opening fan in which the
    /// pre-queued one was admitted later; `null` unless both kinds were
    /// admitted.
    pub(super) pre_queued_behind_later_arrivals: Option<u64>,
    /// τ-b of arrival and admission order of the pre-queued admitted fans;
    /// `null` when not measured (fewer than two, or all tied).
    pub(super) pre_queue_tau: Option<Tau>,
    /// The bound on |τ| the check used: max(0.05, 3 σ); `null` when fewer
    /// than `MIN_TAU_FANS` (100) fans were measured.
    pub(super) tau_bound: Option<f64>,
}

impl FairnessReport {
    /// The figures of the admitted fans' `passages`, `pre_queued_fans`
    /// having entered before opening.
    pub(super) fn of(passages: &[Passage], pre_queued_fans: u64) -> Self {
        let admitted = |pre: bool| -> Vec<Admitted> {
            passages
                .iter()
                .filter(|p| p.pre_queued == pre)
                .filter_map(|p| {
                    Some(Admitted {
                        sent_us: p.entry_sent_us,
                        answered_us: p.entry_answered_us,
                        admitted_ms: p.access_expires_ms?,
                    })
                })
                .collect()
        };
        let (pre, after) = (admitted(true), admitted(false));
        let (ordered, inversions) = fifo_inversions(&after);
        let ms = |fans: &[Admitted]| fans.iter().map(|f| f.admitted_ms).collect::<Vec<_>>();
        let tau = kendall_tau_b(
            &pre.iter()
                .map(|f| {
                    (
                        i64::try_from(f.answered_us).unwrap_or(i64::MAX),
                        f.admitted_ms,
                    )
                })
                .collect::<Vec<_>>(),
        );
        Self {
            pre_queued_fans,
            pre_queued_admitted: pre.len(),
            after_opening_admitted: after.len(),
            fifo_ordered_pairs: ordered,
            fifo_inversions: (after.len() >= 2).then_some(inversions),
            pre_queued_behind_later_arrivals: (!pre.is_empty() && !after.is_empty())
                .then(|| behind_later(&ms(&pre), &ms(&after))),
            tau_bound: tau
                .filter(|t| t.n >= MIN_TAU_FANS)
                .map(|t| TAU_BOUND.max(3.0 * t.sigma)),
            pre_queue_tau: tau,
        }
    }

    /// The fairness checks: no FIFO inversion, no pre-queued fan behind a
    /// later arrival, |τ| within its bound. Each passes when not measured.
    pub(super) fn checks(&self) -> [Check; 3] {
        let zero = |name: &str, measured: Option<u64>| Check {
            name: name.to_owned(),
            target: "= 0".to_owned(),
            measured: measured.map(|m| m as f64),
            unit: "count",
            ok: measured.is_none_or(|m| m == 0),
            source: ISSUE,
        };
        let tau = self
            .tau_bound
            .and(self.pre_queue_tau)
            .map(|t| (t.tau.abs() * 1_000.0).round() / 1_000.0);
        [
            zero("FIFO inversions after opening", self.fifo_inversions),
            zero(
                "pre-queued admitted behind later fans",
                self.pre_queued_behind_later_arrivals,
            ),
            Check {
                name: "pre-queue |Kendall τ|".to_owned(),
                target: self.tau_bound.map_or_else(
                    || format!("< {TAU_BOUND} (n ≥ {MIN_TAU_FANS})"),
                    |b| format!("< {:.3}", b),
                ),
                measured: tau,
                unit: "",
                ok: match (tau, self.tau_bound) {
                    (Some(t), Some(b)) => t < b,
                    _ => true,
                },
                source: ISSUE,
            },
        ]
    }
}

/// Prints the fairness figures.
pub(super) fn print(f: &FairnessReport) {
    let or_na = |v: Option<u64>| v.map_or_else(|| "n/a".to_owned(), |v| v.to_string());
    println!(
        "fairness: {} fans pre-queued ({} admitted), {} admitted after opening; FIFO inversions {} of {} ordered pairs; pre-queued behind later fans {}; pre-queue τ {}",
        f.pre_queued_fans,
        f.pre_queued_admitted,
        f.after_opening_admitted,
        or_na(f.fifo_inversions),
        f.fifo_ordered_pairs,
        or_na(f.pre_queued_behind_later_arrivals),
        f.pre_queue_tau.map_or_else(
            || "n/a".to_owned(),
            |t| format!(
                "{:+.3} (σ of a fair shuffle {:.3}, n {})",
                t.tau, t.sigma, t.n
            )
        ),
    );
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn fan(sent_us: u64, answered_us: u64, admitted_ms: i64) -> Admitted {
        Admitted {
            sent_us,
            answered_us,
            admitted_ms,
        }
    }

    /// The definitions, pair by pair.
    fn fifo_brute(fans: &[Admitted]) -> (u64, u64) {
        let (mut ordered, mut inversions) = (0, 0);
        for i in fans {
            for j in fans {
                if i.answered_us < j.sent_us {
                    ordered += 1;
                    inversions += u64::from(i.admitted_ms > j.admitted_ms);
                }
            }
        }
        (ordered, inversions)
    }

    #[test]
    fn fifo_counts_only_unambiguous_pairs_admitted_the_other_way() {
        let fans = [
            // a: entered first, admitted last: inverted against c.
            fan(0, 10, 300),
            // b overlaps a (sent before a was answered): never ordered
            // with a, whatever their admissions.
            fan(5, 15, 100),
            // c: after both.
            fan(20, 30, 200),
            // d: after c, admitted in the same tick as c: a tie, no
            // inversion with c; after a too, admitted before it.
            fan(40, 50, 200),
        ];
        // Ordered: a<c, a<d, b<c, b<d, c<d; inverted: a>c, a>d.
        assert_eq!(fifo_inversions(&fans), (5, 2));
        assert_eq!(fifo_brute(&fans), (5, 2));
        assert_eq!(fifo_inversions(&[]), (0, 0));
    }

    #[test]
    fn a_fifo_room_has_no_inversion() {
        let fans: Vec<Admitted> = (0..1_000)
            .map(|i| fan(i * 10, i * 10 + 25, 1_000 + i as i64 / 50))
            .collect();
        let (ordered, inversions) = fifo_inversions(&fans);
        assert!(ordered > 0);
        assert_eq!(inversions, 0);
    }

    #[test]
    fn pre_queued_fans_behind_later_ones_are_counted_by_pair() {
        assert_eq!(behind_later(&[1, 2, 5], &[3, 4, 5]), 2);
        assert_eq!(behind_later(&[1, 2], &[3]), 0);
        assert_eq!(behind_later(&[], &[3]), 0);
    }

    #[test]
    fn twenty_thousand_fans_are_counted_quickly() {
        let fans: Vec<Admitted> = (0..20_000_u64)
            .map(|i| fan(i * 50, i * 50 + 80, ((i * 7_919) % 20_000) as i64))
            .collect();
        let started = std::time::Instant::now();
        let (ordered, inversions) = fifo_inversions(&fans);
        let samples: Vec<(i64, i64)> = fans
            .iter()
            .map(|f| (f.answered_us as i64, f.admitted_ms))
            .collect();
        assert!(kendall_tau_b(&samples).is_some());
        assert!(ordered > 0 && inversions > 0);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn the_tau_check_passes_a_shuffle_and_fails_arrival_order() {
        let report = |tau: f64, n: usize| FairnessReport {
            pre_queued_fans: n as u64,
            pre_queued_admitted: n,
            after_opening_admitted: 0,
            fifo_ordered_pairs: 0,
            fifo_inversions: None,
            pre_queued_behind_later_arrivals: None,
            pre_queue_tau: Some(Tau {
                n,
                tau,
                sigma: 0.01,
            }),
            tau_bound: (n >= MIN_TAU_FANS).then_some(0.05),
        };
        assert!(report(0.02, 500).checks()[2].ok);
        assert!(!report(-0.9, 500).checks()[2].ok);
        // Too few fans: not measured, passes.
        let few = report(0.9, 50).checks();
        assert!(few[2].ok && few[2].measured.is_none());
        assert!(few[0].ok && few[1].ok);
    }

    proptest! {
        #[test]
        fn fifo_matches_the_definition(
            fans in prop::collection::vec((0_u64..60, 0_u64..20, 0_i64..12), 0..60)
        ) {
            let fans: Vec<Admitted> =
                fans.into_iter().map(|(s, d, a)| fan(s, s + d, a)).collect();
            prop_assert_eq!(fifo_inversions(&fans), fifo_brute(&fans));
        }

        #[test]
        fn behind_later_matches_the_definition(
            earlier in prop::collection::vec(0_i64..20, 0..40),
            later in prop::collection::vec(0_i64..20, 0..40),
        ) {
            let brute = earlier
                .iter()
                .map(|p| later.iter().filter(|a| p > a).count() as u64)
                .sum::<u64>();
            prop_assert_eq!(behind_later(&earlier, &later), brute);
        }
    }
}
