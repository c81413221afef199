//! Rooms: their settings and numbers, the registry of rooms the admission
//! loop serves (one set in a slot of its own), and the admission tick.

use super::{Configured, RateControl, RoomSnapshot, Store, StoreError, TickReport, reply};
use crate::domain::{CoreHealth, EventId, RoomConfig, RoomState};

/// Fans one admission call may touch (expire, admit or drop, sweep). Sized
/// from SLOWLOG on the 2-core dev box so that a call stays well under 5 ms
/// with 300,000 fans waiting (see docs/benchmarks.md); more work is done by
/// calling again, letting other clients in between.
const ADMIT_BUDGET: u64 = 100;
/// Waiting fans checked for abandonment per call, even when admission used
/// the budget, so the sweep always progresses.
const MIN_SWEEP: u64 = 50;
/// Pre-queued fans one admission call places in the line at opening. At
/// 2,000 a call took about 2 ms on the 2-core dev box (SLOWLOG, see
/// docs/waiting-room.md), inside the 5 ms a call may block a shard; 300,000
/// pre-queued fans are placed in 150 calls, 10 per room and tick.
const PLACE_BUDGET: u64 = 2_000;
/// Presence windows spanning the abandonment window (at most).
const PRESENCE_WINDOWS: u64 = 4;

impl Store {
    /// Creates or updates a room and keeps the registry of rooms the
    /// admission loop serves.
    ///
    /// Two calls (the room's slot, then the registry's): the registry is a
    /// hint for the loop, and the room's own state is what admission obeys.
    /// A new room draws its pre-queue shuffle seed here: 128 random bits,
    /// kept for the room's life and published once the pre-queue opens.
    ///
    /// # Errors
    /// [`StoreError`] when Redis fails.
    pub(crate) async fn configure(
        &self,
        event: &EventId,
        config: &RoomConfig,
    ) -> Result<Configured, StoreError> {
        let args = [
            config.state.as_str().to_owned(),
            config.capacity.to_string(),
            config.admit_per_second.to_string(),
            config.access_ttl_seconds.to_string(),
            config.abandon_after_seconds.to_string(),
            presence_grain(self.inner.grain, config.abandon_after_seconds).to_string(),
            config.claim_within_seconds.to_string(),
            config
                .opens_at
                .map(|at| at.timestamp_millis().to_string())
                .unwrap_or_default(),
            format!("{:032x}", rand::random::<u128>()),
            config.latency_target_ms.to_string(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let reply = self
            .run("configure", &self.scripts().configure, event, &args)
            .await?;
        let outcome = reply::configured(&reply)?;
        if outcome == Configured::AlreadyOpen {
            return Ok(outcome);
        }
        let command = if config.state == RoomState::Closed {
            "SREM"
        } else {
            "SADD"
        };
        self.inner
            .redis
            .query::<i64>(
                redis::cmd(command)
                    .arg(self.rooms_key())
                    .arg(event.as_str()),
            )
            .await?;
        Ok(outcome)
    }

    /// The room's settings and numbers, or `None` when it does not exist.
    ///
    /// # Errors
    /// [`StoreError`] when Redis fails.
    pub(crate) async fn room(&self, event: &EventId) -> Result<Option<RoomSnapshot>, StoreError> {
        let reply = self.run("room", &self.scripts().room, event, &[]).await?;
        reply::room(&reply)
    }

    /// Event ids in the registry of open and paused rooms.
    ///
    /// # Errors
    /// [`StoreError`] when Redis fails.
    pub(crate) async fn rooms(&self) -> Result<Vec<EventId>, StoreError> {
        let ids: Vec<String> = self
            .inner
            .redis
            .query(redis::cmd("SMEMBERS").arg(self.rooms_key()))
            .await?;
        Ok(ids
            .iter()
            .filter_map(|id| EventId::parse(id).ok())
            .collect())
    }

    /// Drops a room id from the registry (its settings are gone).
    ///
    /// # Errors
    /// [`StoreError`] when Redis fails.
    pub(crate) async fn unregister(&self, event: &EventId) -> Result<(), StoreError> {
        self.inner
            .redis
            .query::<i64>(redis::cmd("SREM").arg(self.rooms_key()).arg(event.as_str()))
            .await?;
        Ok(())
    }

    /// Records the booking core's inventory of `event`: `available` seats
    /// that can be held, `held` in live holds, `holders` fans with a live
    /// hold, and the reporting instance's `health`, which the admission
    /// rate follows (see `lua/inventory.lua`). `None` when the event has no
    /// room.
    ///
    /// # Errors
    /// [`StoreError`] when Redis fails.
    pub(crate) async fn report_inventory(
        &self,
        event: &EventId,
        available: u64,
        held: u64,
        holders: u64,
        health: Option<&CoreHealth>,
    ) -> Result<Option<RateControl>, StoreError> {
        let mut args = vec![available.to_string(), held.to_string(), holders.to_string()];
        match health {
            Some(h) => args.extend([
                h.hold_p95_ms.to_string(),
                h.payment_p95_ms.to_string(),
                if h.pool_saturated { "1" } else { "0" }.to_owned(),
            ]),
            None => args.extend([String::new(), String::new(), String::new()]),
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let reply = self
            .run("inventory", &self.scripts().inventory, event, &args)
            .await?;
        reply::rate_control(&reply)
    }

    /// Runs one bounded admission call for `event`; see
    /// [`TickReport::more`].
    ///
    /// # Errors
    /// [`StoreError`] when Redis fails.
    pub(crate) async fn admit(&self, event: &EventId) -> Result<TickReport, StoreError> {
        let args = [
            self.inner.tick_ms.to_string(),
            ADMIT_BUDGET.to_string(),
            MIN_SWEEP.to_string(),
            PLACE_BUDGET.to_string(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let reply = self
            .run("admit", &self.scripts().admit, event, &args)
            .await?;
        reply::tick(&reply)
    }
}

/// Width in seconds of one presence window of a room: at least the
/// configured minimum, and at least a quarter of the abandonment window, so
/// that checking an absent fan reads at most 5 windows (see `common.lua`).
fn presence_grain(min_grain: u64, abandon_after_seconds: u64) -> u64 {
    min_grain
        .max(abandon_after_seconds.div_ceil(PRESENCE_WINDOWS))
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_windows_are_at_least_the_minimum_and_at_most_four_per_abandonment_window() {
        assert_eq!(presence_grain(10, 300), 75);
        assert_eq!(presence_grain(10, 30), 10);
        assert_eq!(presence_grain(1, 2), 1);
        assert_eq!(presence_grain(0, 0), 1);
        for abandon in 1..5_000 {
            let grain = presence_grain(5, abandon);
            assert!(abandon.div_ceil(grain) <= PRESENCE_WINDOWS);
        }
    }
}
