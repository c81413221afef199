//! Nearest-rank percentiles, the one definition every tool reports.

/// The `q`-quantile (0–1) of `sorted` (ascending) by nearest rank: the
/// smallest sample with at least `q` of the samples at or below it. 0 for
/// no samples.
pub fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (sorted.len() as f64 * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_rank_is_a_sample() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(nearest_rank(&samples, 0.50), 50.0);
        assert_eq!(nearest_rank(&samples, 0.99), 99.0);
        assert_eq!(nearest_rank(&samples, 0.0), 1.0);
        assert_eq!(nearest_rank(&[], 0.5), 0.0);
    }
}
