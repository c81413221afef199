//! Kendall's τ-b of paired samples by Knight's algorithm (O(n log n)),
//! with its standard deviation when the two samples are independent: how
//! far from 0 a fair shuffle still lands.

use serde::Serialize;

/// Kendall's τ-b of paired samples, and its standard deviation when the
/// two are independent (with the same ties).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(super) struct Tau {
    /// Pairs in the sample.
    pub(super) n: usize,
    /// τ-b: (concordant − discordant) / √((pairs − tied in x)(pairs − tied
    /// in y)), −1 to 1.
    pub(super) tau: f64,
    /// Standard deviation of τ-b under independence (Kendall's variance
    /// of S with ties, scaled like τ-b).
    pub(super) sigma: f64,
}

/// Pairs among `t` equal values.
fn pairs(t: u64) -> u64 {
    t * t.saturating_sub(1) / 2
}

/// Sizes of the runs of equal values of the sorted `values`.
fn ties<T: PartialEq>(values: impl IntoIterator<Item = T>) -> Vec<u64> {
    let mut runs = Vec::new();
    let mut last = None;
    for v in values {
        if last.as_ref() == Some(&v) {
            if let Some(n) = runs.last_mut() {
                *n += 1;
            }
        } else {
            runs.push(1);
            last = Some(v);
        }
    }
    runs
}

/// Kendall's τ-b of `(x, y)` by Knight's algorithm, O(n log n); `None` for
/// fewer than two pairs or when every x or every y is equal.
pub(super) fn kendall_tau_b(samples: &[(i64, i64)]) -> Option<Tau> {
    let n = samples.len();
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let x_ties = ties(sorted.iter().map(|s| s.0));
    let joint_ties = ties(sorted.iter().copied());
    let mut ys: Vec<i64> = sorted.iter().map(|s| s.1).collect();
    let discordant = merge_sort_swaps(&mut ys);
    let y_ties = ties(ys.iter().copied());
    let n0 = pairs(n as u64);
    let n1: u64 = x_ties.iter().map(|&t| pairs(t)).sum();
    let n2: u64 = y_ties.iter().map(|&u| pairs(u)).sum();
    let n3: u64 = joint_ties.iter().map(|&t| pairs(t)).sum();
    let denominator = ((n0 - n1) as f64 * (n0 - n2) as f64).sqrt();
    if n < 2 || denominator == 0.0 {
        return None;
    }
    let s = (n0 + n3) as f64 - (n1 + n2) as f64 - 2.0 * discordant as f64;
    Some(Tau {
        n,
        tau: s / denominator,
        sigma: null_variance_of_s(n, &x_ties, &y_ties).sqrt() / denominator,
    })
}

/// Kendall's variance of S = concordant − discordant when x and y are
/// independent, with ties of sizes `t` in x and `u` in y.
fn null_variance_of_s(n: usize, t: &[u64], u: &[u64]) -> f64 {
    let n = n as f64;
    let sum = |ties: &[u64], f: fn(f64) -> f64| ties.iter().map(|&k| f(k as f64)).sum::<f64>();
    let v0 = n * (n - 1.0) * (2.0 * n + 5.0);
    let spread = |k: f64| k * (k - 1.0) * (2.0 * k + 5.0);
    let two = |k: f64| k * (k - 1.0);
    let three = |k: f64| k * (k - 1.0) * (k - 2.0);
    let v1 = sum(t, two) * sum(u, two) / (2.0 * n * (n - 1.0));
    let v2 = if n > 2.0 {
        sum(t, three) * sum(u, three) / (9.0 * n * (n - 1.0) * (n - 2.0))
    } else {
        0.0
    };
    ((v0 - sum(t, spread) - sum(u, spread)) / 18.0 + v1 + v2).max(0.0)
}

/// Sorts `values` (stably, by merging) and returns the pairs it found out
/// of order: i < j with `values[i] > values[j]`, equal values not counted.
fn merge_sort_swaps(values: &mut [i64]) -> u64 {
    let n = values.len();
    let mut swaps = 0;
    let mut buffer = values.to_vec();
    let mut width = 1;
    while width < n {
        for start in (0..n).step_by(2 * width) {
            let mid = (start + width).min(n);
            let end = (start + 2 * width).min(n);
            let (mut i, mut j) = (start, mid);
            for slot in &mut buffer[start..end] {
                if j >= end || (i < mid && values[i] <= values[j]) {
                    *slot = values[i];
                    i += 1;
                } else {
                    *slot = values[j];
                    swaps += (mid - i) as u64;
                    j += 1;
                }
            }
        }
        values.copy_from_slice(&buffer);
        width *= 2;
    }
    swaps
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn tau_brute(samples: &[(i64, i64)]) -> Option<f64> {
        let (mut s, mut tied_x, mut tied_y, mut pairs) = (0_i64, 0_u64, 0_u64, 0_u64);
        for (a, &(x1, y1)) in samples.iter().enumerate() {
            for &(x2, y2) in &samples[a + 1..] {
                pairs += 1;
                tied_x += u64::from(x1 == x2);
                tied_y += u64::from(y1 == y2);
                s += (x1 - x2).signum() * (y1 - y2).signum();
            }
        }
        let d = ((pairs - tied_x) as f64 * (pairs - tied_y) as f64).sqrt();
        (d > 0.0).then(|| s as f64 / d)
    }

    #[test]
    fn tau_b_of_known_samples() {
        let up: Vec<(i64, i64)> = (0..10).map(|i| (i, i)).collect();
        let down: Vec<(i64, i64)> = (0..10).map(|i| (i, -i)).collect();
        assert!((kendall_tau_b(&up).unwrap().tau - 1.0).abs() < 1e-12);
        assert!((kendall_tau_b(&down).unwrap().tau + 1.0).abs() < 1e-12);
        // Ties in y: S = 2 - 6 = -4 over 10 pairs, 2 of them tied in y, so
        // τ-b = -4 / √(10 · 8) = -1 / √5.
        let tied = [(1, 3), (2, 3), (3, 1), (4, 2), (5, 2)];
        let tau = kendall_tau_b(&tied).unwrap().tau;
        assert!((tau + 1.0 / 5_f64.sqrt()).abs() < 1e-12, "{tau}");
        // Ties in both, and a tie in x and y at once.
        let both = [(1, 1), (1, 1), (1, 2), (2, 1), (3, 3), (3, 2)];
        let tau = kendall_tau_b(&both).unwrap().tau;
        assert!((tau - tau_brute(&both).unwrap()).abs() < 1e-12);
        assert_eq!(kendall_tau_b(&[(1, 1)]), None);
        assert_eq!(kendall_tau_b(&[(1, 1), (2, 1), (3, 1)]), None);
    }

    #[test]
    fn sigma_without_ties_is_kendalls() {
        let n = 450_i64;
        let samples: Vec<(i64, i64)> = (0..n).map(|i| (i, (i * 7_919) % n)).collect();
        let tau = kendall_tau_b(&samples).unwrap();
        let n = n as f64;
        let expected = (2.0 * (2.0 * n + 5.0) / (9.0 * n * (n - 1.0))).sqrt();
        assert!((tau.sigma - expected).abs() < 1e-12);
    }

    #[test]
    fn sigma_with_ties_matches_the_spread_of_fair_shuffles() {
        // 450 fans in arrival order, admitted in a shuffled order in ticks
        // of 50 (ties in y), 400 shuffles from a fixed seed.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut sum_sq, mut sigma) = (0.0, 0.0);
        let trials = 400;
        for _ in 0..trials {
            let mut order: Vec<i64> = (0..450).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, (next() % (i as u64 + 1)) as usize);
            }
            let samples: Vec<(i64, i64)> = order
                .iter()
                .enumerate()
                .map(|(x, &place)| (x as i64, place / 50))
                .collect();
            let tau = kendall_tau_b(&samples).unwrap();
            sum_sq += tau.tau * tau.tau;
            sigma = tau.sigma;
        }
        let spread = (sum_sq / f64::from(trials)).sqrt();
        assert!((spread / sigma - 1.0).abs() < 0.1, "{spread} vs {sigma}");
    }

    proptest! {
        #[test]
        fn tau_b_matches_the_definition(
            samples in prop::collection::vec((0_i64..15, 0_i64..15), 2..60)
        ) {
            let fast = kendall_tau_b(&samples).map(|t| t.tau);
            match (fast, tau_brute(&samples)) {
                (Some(a), Some(b)) => prop_assert!((a - b).abs() < 1e-9, "{a} vs {b}"),
                (a, b) => prop_assert_eq!(a.is_some(), b.is_some()),
            }
        }
    }
}
