//! Best available: which block of adjacent free seats to offer a fan who
//! asks for a quantity instead of seat ids.
//!
//! The rule, in order:
//! 1. seats side by side: one row, consecutive numbers (a gap in the
//!    numbers is an aisle and breaks the block);
//! 2. no orphan: never leave exactly one free seat between the block and a
//!    taken seat, an aisle or the row's end, while any row offers a
//!    placement that does not (a lone seat rarely sells; seats.io and
//!    Ticketmaster apply the same rule);
//! 3. nearest the stage: the first row, in listed section and row order,
//!    that has such a block;
//! 4. there, the block whose centre is nearest the row's centre.

use super::layout::{Layout, Row};

/// What the fan asked for.
#[derive(Debug, Clone, Copy)]
pub struct Want<'a> {
    /// Seats side by side (at least 1).
    pub quantity: usize,
    /// Only this grade.
    pub grade: Option<&'a str>,
    /// Only this section.
    pub section: Option<&'a str>,
}

/// The best placement found in one row.
#[derive(Debug, Clone, Copy)]
struct Placement {
    orphan: bool,
    distance: f64,
    /// Position of the block's first seat within the row.
    start: usize,
}

/// The indices of the best block for `want` among the seats `free` says
/// can be taken, or `None` when no row has `want.quantity` adjacent free
/// seats in the grade and section asked for.
pub fn pick(layout: &Layout, want: &Want<'_>, free: impl Fn(u32) -> bool) -> Option<Vec<u32>> {
    if want.quantity == 0 {
        return None;
    }
    let mut fallback: Option<(&Row, Placement)> = None;
    let sections = layout.sections.iter().filter(|s| {
        want.grade.is_none_or(|g| g == s.grade) && want.section.is_none_or(|n| n == s.name)
    });
    for section in sections {
        for row in &section.rows {
            let Some(placement) = best_in_row(row, want.quantity, &free) else {
                continue;
            };
            if !placement.orphan {
                return Some(block(row, placement, want.quantity));
            }
            if fallback.is_none() {
                fallback = Some((row, placement));
            }
        }
    }
    fallback.map(|(row, placement)| block(row, placement, want.quantity))
}

fn block(row: &Row, placement: Placement, quantity: usize) -> Vec<u32> {
    row.seats[placement.start..placement.start + quantity].to_vec()
}

/// The best placement of `quantity` seats in `row`: without an orphan if
/// possible, then nearest the centre.
fn best_in_row(row: &Row, quantity: usize, free: &impl Fn(u32) -> bool) -> Option<Placement> {
    let mut best: Option<Placement> = None;
    let n = row.seats.len();
    let mut start = 0;
    while start < n {
        if !free(row.seats[start]) {
            start += 1;
            continue;
        }
        // A run of free, adjacent seats: [start, end).
        let mut end = start + 1;
        while end < n && free(row.seats[end]) && row.numbers[end] == row.numbers[end - 1] + 1 {
            end += 1;
        }
        let len = end - start;
        if len >= quantity {
            for offset in 0..=len - quantity {
                let (left, right) = (offset, len - quantity - offset);
                let first = row.numbers[start + offset];
                let last = row.numbers[start + offset + quantity - 1];
                let centre = (f64::from(first) + f64::from(last)) / 2.0;
                let candidate = Placement {
                    orphan: left == 1 || right == 1,
                    distance: (centre - row.centre).abs(),
                    start: start + offset,
                };
                if best
                    .is_none_or(|b| (candidate.orphan, candidate.distance) < (b.orphan, b.distance))
                {
                    best = Some(candidate);
                }
            }
        }
        start = end;
    }
    best
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;
    use crate::seatmap::layout::tests::venue;

    fn want(quantity: usize) -> Want<'static> {
        Want {
            quantity,
            grade: None,
            section: None,
        }
    }

    /// Seat numbers of picked indices in a venue of rows of 10.
    fn numbers(picked: &[u32]) -> Vec<i32> {
        picked.iter().map(|i| (*i % 10) as i32 + 1).collect()
    }

    #[test]
    fn an_empty_hall_gives_the_centre_of_the_front_row() {
        let layout = Layout::new(1, venue(&[("A", 3, 10)]));
        let picked = pick(&layout, &want(2), |_| true).unwrap();
        assert_eq!(numbers(&picked), [5, 6]);
        let picked = pick(&layout, &want(3), |_| true).unwrap();
        assert!(picked.iter().all(|i| *i < 10), "front row");
    }

    #[test]
    fn a_block_never_strands_a_single_seat_when_another_row_avoids_it() {
        let layout = Layout::new(1, venue(&[("A", 2, 4)]));
        // Row 1: seats 1-3 free (4 taken): two seats would leave one alone.
        // Row 2 is empty: seats 2-3 would strand 1 and 4, 1-2 or 3-4 don't.
        let free = |i: u32| i != 3;
        let picked = pick(&layout, &want(2), free).unwrap();
        assert_eq!(picked, [4, 5], "row 2, seats 1-2 (no orphan)");
        // With only row 1 left, the orphan placement is accepted.
        let picked = pick(&layout, &want(2), |i: u32| i < 3).unwrap();
        assert_eq!(picked.len(), 2);
    }

    #[test]
    fn aisles_break_blocks_and_filters_apply() {
        let mut seats = venue(&[("A", 1, 4), ("B", 1, 4)]);
        seats[2].number = 10;
        seats[3].number = 11;
        let layout = Layout::new(1, seats);
        assert!(
            pick(&layout, &want(3), |i: u32| i < 4).is_none(),
            "1,2 | 10,11"
        );
        let b = Want {
            section: Some("B"),
            ..want(4)
        };
        assert_eq!(pick(&layout, &b, |_| true).unwrap(), [4, 5, 6, 7]);
        let grade = Want {
            grade: Some("GX"),
            ..want(1)
        };
        assert!(pick(&layout, &grade, |_| true).is_none());
    }

    proptest! {
        #[test]
        fn a_pick_is_free_adjacent_and_found_whenever_a_block_exists(
            taken in proptest::collection::hash_set(0u32..60, 0..60),
            quantity in 1usize..6,
        ) {
            let layout = Layout::new(1, venue(&[("A", 3, 10), ("B", 3, 10)]));
            let free = |i: u32| !taken.contains(&i);
            let exists = layout.sections.iter().flat_map(|s| &s.rows).any(|row| {
                row.seats.windows(quantity).any(|w| w.iter().all(|i| free(*i)))
            });
            match pick(&layout, &want(quantity), free) {
                None => prop_assert!(!exists),
                Some(picked) => {
                    prop_assert_eq!(picked.len(), quantity);
                    let unique: HashSet<_> = picked.iter().collect();
                    prop_assert_eq!(unique.len(), quantity);
                    prop_assert!(picked.iter().all(|i| free(*i)));
                    prop_assert!(picked.windows(2).all(|w| w[1] == w[0] + 1));
                    prop_assert!(picked.iter().all(|i| i / 10 == picked[0] / 10), "one row");
                }
            }
        }
    }
}
