//! The pre-queue's order, reproducible by anyone who holds the room's seed.
//!
//! Fans who enter before a room's `opens_at` wait in the pre-queue. At
//! opening they are placed in the line in a uniformly random order, as
//! Cloudflare's, Queue-it's and Ticketmaster's waiting rooms do for a
//! scheduled sale, so that arriving early earns nothing over arriving on
//! time. The order is not drawn by a shuffle pass: each fan is kept sorted
//! by [`shuffle_key`] (a keyed hash of a seed drawn when the room is
//! created), which is the same permutation, costs O(log n) per entry and
//! nothing at opening. The seed is published in the room's stats once the
//! pre-queue has opened, so the order can be audited from the list of
//! pre-queued fans with [`pre_queue_order`].

/// The pre-queue sort key of `user` under `seed`: the first 52 bits of
/// SHA-1(`seed` `:` `user`), exact in the double that Redis keeps as a
/// sorted-set score. `lua/common.lua` computes the same with
/// `redis.sha1hex`.
#[must_use]
pub fn shuffle_key(seed: &str, user: &str) -> u64 {
    let digest = sha1_smol::Sha1::from(format!("{seed}:{user}"))
        .digest()
        .bytes();
    let mut first = [0u8; 8];
    first[1..].copy_from_slice(&digest[..7]);
    // 56 bits read, the low 4 dropped: the first 13 hex digits.
    u64::from_be_bytes(first) >> 4
}

/// `fans` in the order the room places them in the line at opening: by
/// [`shuffle_key`], then by id (a sorted set orders equal scores by
/// member), as the room does.
#[must_use]
pub fn pre_queue_order<'a>(seed: &str, fans: &[&'a str]) -> Vec<&'a str> {
    let mut keyed: Vec<(u64, &'a str)> = fans
        .iter()
        .map(|fan| (shuffle_key(seed, fan), *fan))
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, fan)| fan).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_key_is_the_first_thirteen_hex_digits_of_the_sha1() {
        // `printf 'seed:fan' | sha1sum` gives 47077b571fa9a6abafeb…
        assert_eq!(shuffle_key("seed", "fan"), 0x4_7077_b571_fa9a);
    }

    /// Chi-square test of independence between arrival and position: 10
    /// fans shuffled under 4,000 seeds give a 10 × 10 table of counts, 400
    /// expected in each cell, (10 − 1)² = 81 degrees of freedom. The
    /// critical value at α = 0.001 is 126.1 (Wilson–Hilferty
    /// approximation; tables give 124.8 for 80 and 137.2 for 90 degrees).
    /// The seeds are fixed, so the test is deterministic.
    #[test]
    fn positions_are_uniform_over_many_seeded_shuffles() {
        const FANS: usize = 10;
        const SEEDS: usize = 4_000;
        let names: Vec<String> = (0..FANS).map(|i| format!("fan-{i}")).collect();
        let fans: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut counts = [[0u32; FANS]; FANS];
        for seed in 0..SEEDS {
            let order = pre_queue_order(&format!("seed-{seed}"), &fans);
            for (position, fan) in order.iter().enumerate() {
                let arrival = fans.iter().position(|f| f == fan).unwrap();
                counts[arrival][position] += 1;
            }
        }
        let expected = (SEEDS / FANS) as f64;
        let chi2: f64 = counts
            .iter()
            .flatten()
            .map(|&observed| (f64::from(observed) - expected).powi(2) / expected)
            .sum();
        assert!(
            chi2 < 126.1,
            "chi-square {chi2:.1} over 81 degrees of freedom"
        );
    }

    proptest! {
        #[test]
        fn the_order_is_a_permutation_fixed_by_the_seed(
            seed in "[0-9a-f]{32}",
            fans in proptest::collection::hash_set("[a-z0-9]{1,12}", 0..50),
        ) {
            let fans: Vec<&str> = fans.iter().map(String::as_str).collect();
            let order = pre_queue_order(&seed, &fans);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            let mut expected = fans.clone();
            expected.sort_unstable();
            prop_assert_eq!(sorted, expected);
            let mut reversed = fans.clone();
            reversed.reverse();
            prop_assert_eq!(pre_queue_order(&seed, &reversed), order);
        }
    }
}
