//! This process's own view on top of an availability snapshot, for
//! best-available picks: seats being claimed right now by its requests,
//! and seats it saw taken since the snapshot was read.
//!
//! Two requests of one process never pick the same seats, so concurrent
//! best-available holds in one instance never collide; across instances
//! a collision costs one refused claim, after which those seats count as
//! taken here until a newer snapshot says otherwise.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
    time::Instant,
};

use super::{
    Snapshot,
    best::{self, Want},
    layout::Layout,
};

/// The overlay of one performance.
#[derive(Debug, Default)]
pub struct Board {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Seats picked by a request whose claim has not ended.
    pending: HashSet<u32>,
    /// Seats this process held or found taken, and when.
    taken: HashMap<u32, Instant>,
}

impl Board {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Picks the best block for `want` in `snapshot` minus this process's
    /// overlay, and marks it pending until the returned guard ends.
    pub fn pick(
        self: &Arc<Self>,
        layout: &Layout,
        snapshot: &Snapshot,
        want: &Want<'_>,
    ) -> Option<Pending> {
        let mut state = self.lock();
        // A snapshot read after a seat was marked already shows it.
        state.taken.retain(|_, at| *at >= snapshot.read_at);
        let picked = best::pick(layout, want, |i| {
            snapshot.free.get(i) && !state.pending.contains(&i) && !state.taken.contains_key(&i)
        })?;
        state.pending.extend(picked.iter().copied());
        Some(Pending {
            board: self.clone(),
            seats: picked,
            taken: false,
        })
    }

    /// Records seats this process has just held (by pick-your-seat).
    pub fn held(&self, seats: impl IntoIterator<Item = u32>) {
        let now = Instant::now();
        self.lock()
            .taken
            .extend(seats.into_iter().map(|i| (i, now)));
    }
}

/// Seats picked and being claimed. Dropping it ends the claim: the seats
/// count as taken after [`Pending::taken`], and return to the snapshot's
/// view otherwise (the claim failed for another reason, or the request was
/// cancelled).
#[derive(Debug)]
pub struct Pending {
    board: Arc<Board>,
    seats: Vec<u32>,
    taken: bool,
}

impl Pending {
    /// The picked seat indices.
    pub fn seats(&self) -> &[u32] {
        &self.seats
    }

    /// The claim ended with the seats held by this request or refused
    /// because another buyer has some of them: either way they are not
    /// free until a newer snapshot says so.
    pub fn taken(mut self) {
        self.taken = true;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut state = self.board.lock();
        for seat in &self.seats {
            state.pending.remove(seat);
        }
        if self.taken {
            let now = Instant::now();
            state.taken.extend(self.seats.iter().map(|i| (*i, now)));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::seatmap::{bitmap::Bitmap, layout::tests::venue};

    fn snapshot(len: u32, read_at: Instant) -> Snapshot {
        let mut free = Bitmap::empty(len);
        for i in 0..len {
            free.set(i);
        }
        Snapshot::new(
            &Layout::new(1, venue(&[("A", 1, len as i32)])),
            free,
            read_at,
        )
    }

    fn want(quantity: usize) -> Want<'static> {
        Want {
            quantity,
            grade: None,
            section: None,
        }
    }

    #[test]
    fn concurrent_picks_never_share_a_seat_and_a_dropped_claim_gives_its_seats_back() {
        let layout = Layout::new(1, venue(&[("A", 1, 6)]));
        let snap = snapshot(6, Instant::now());
        let board = Arc::new(Board::default());
        let first = board.pick(&layout, &snap, &want(2)).unwrap();
        let second = board.pick(&layout, &snap, &want(2)).unwrap();
        assert!(first.seats().iter().all(|s| !second.seats().contains(s)));
        let third = board.pick(&layout, &snap, &want(2)).unwrap();
        assert!(
            board.pick(&layout, &snap, &want(1)).is_none(),
            "all six pending"
        );
        drop(third);
        assert!(board.pick(&layout, &snap, &want(2)).is_some(), "given back");
        first.taken();
        drop(second);
    }

    #[test]
    fn seats_marked_taken_stay_taken_until_a_newer_snapshot() {
        let layout = Layout::new(1, venue(&[("A", 1, 2)]));
        let old = snapshot(2, Instant::now() - Duration::from_secs(1));
        let board = Arc::new(Board::default());
        board.pick(&layout, &old, &want(2)).unwrap().taken();
        assert!(board.pick(&layout, &old, &want(1)).is_none());
        let newer = snapshot(2, Instant::now());
        assert!(board.pick(&layout, &newer, &want(2)).is_some());
    }
}
