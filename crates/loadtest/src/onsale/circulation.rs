//! Who leaves the waiting room, and how: the fans who dropped off while
//! waiting, and whether exits keep up with entries (circulation).
//!
//! - **Drop-off**: the `--abandon` fans stop polling while waiting (right
//!   after entering, or at a random moment within `--abandon-within`
//!   seconds); how long each had waited when it stopped, from sending its
//!   entry (p50, p90, max, seconds). Beside it the room's
//!   `abandoned_total`: every waiting or pre-queued fan it dropped for
//!   silence, which includes these, the fans told `sold_out` while waiting
//!   (they stop polling too) and any fan it found absent at admission.
//! - **Circulation**: exits ÷ entries in the room's stats once the line has
//!   settled. Entries: `entered_total`, places made in the line or the
//!   pre-queue (a re-entry after losing a place counts again). Exits: the
//!   fans who left the room for good, `exited.left + exited.expired +
//!   exited.completed + exited.revoked + exited.no_show` (out of the active
//!   set) + `left_waiting_total` (left the line or the pre-queue) +
//!   `abandoned_total` (dropped from either for silence) +
//!   `sold_out_total` (told *sold out*, which ends their wait). The rest are
//!   still waiting, pre-queued or active (an admission that nobody uses
//!   lasts its access TTL). Settled: after the last fan is done, the report
//!   waits until nobody is in the line or the pre-queue (silent fans are
//!   dropped one abandonment window after their last poll, up to a quarter
//!   window later), for at most 1.25 windows + 5 s. Target ≥ 95 %, from the
//!   project's circulation test (`k6/circulation.js`: exits keep up with
//!   entries), with its activation wait p95 < 30 s, counted for pre-queued
//!   fans from the opening, not from their early entry.

use std::time::{Duration, Instant};

use onsale_client::{Client, queue_api::RoomStats};
use serde::Serialize;

use super::checks::Check;
use crate::stats::nearest_rank;

const CIRCULATION: &str = "circulation test (k6/circulation.js)";
/// Exits per entry the room must reach, %.
const MIN_EXITS_PER_ENTRY_PCT: f64 = 95.0;
/// Activation wait p95 bound, ms.
const MAX_ACTIVATION_P95_MS: f64 = 30_000.0;

/// Waits until nobody is in `event`'s line or pre-queue, for at most
/// `abandon_after` × 1.25 + 5 s; the last stats read (`None` when the room
/// refused them) and how long it waited.
pub(super) async fn settle(
    client: &Client,
    event: i64,
    abandon_after: Duration,
) -> (Option<RoomStats>, Duration) {
    let started = Instant::now();
    let until = started + abandon_after.mul_f64(1.25) + Duration::from_secs(5);
    loop {
        let Ok(stats) = client.room_stats(event).await else {
            return (None, started.elapsed());
        };
        if stats.waiting + stats.pre_queue == 0 || Instant::now() >= until {
            return (Some(stats), started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Drop-off in the JSON report.
#[derive(Debug, Serialize)]
pub(super) struct DropOffReport {
    /// Fans who stopped polling while waiting (`--abandon`).
    pub(super) fans: usize,
    /// How long they had waited when they stopped, from sending the entry,
    /// seconds: median, p90 (nearest rank) and the longest.
    pub(super) waited_p50_seconds: f64,
    pub(super) waited_p90_seconds: f64,
    pub(super) waited_max_seconds: f64,
    /// Fans told `sold_out` while waiting, who stop polling as well.
    pub(super) told_sold_out_while_waiting: usize,
    /// The room's `abandoned_total` once settled; `null` when it refused
    /// its stats.
    pub(super) room_abandoned_total: Option<u64>,
}

impl DropOffReport {
    /// From the abandoners' waits `waited_ms`, the number of fans told
    /// `sold_out` while waiting, and the settled `room`.
    pub(super) fn of(waited_ms: &[f64], told_sold_out: usize, room: Option<&RoomStats>) -> Self {
        let mut seconds: Vec<f64> = waited_ms.iter().map(|ms| ms / 1_000.0).collect();
        seconds.sort_by(f64::total_cmp);
        let at = |q: f64| (nearest_rank(&seconds, q) * 100.0).round() / 100.0;
        Self {
            fans: seconds.len(),
            waited_p50_seconds: at(0.5),
            waited_p90_seconds: at(0.9),
            waited_max_seconds: at(1.0),
            told_sold_out_while_waiting: told_sold_out,
            room_abandoned_total: room.map(|r| r.abandoned_total),
        }
    }
}

/// Circulation in the JSON report.
#[derive(Debug, Serialize)]
pub(super) struct CirculationReport {
    /// Seconds the report waited after the last fan for the line to empty.
    pub(super) settled_after_seconds: f64,
    /// Nobody was left in the line or the pre-queue (else the wait ran
    /// out first).
    pub(super) line_empty: bool,
    /// `entered_total`.
    pub(super) entries: u64,
    /// `exits_from_active + left_waiting + abandoned + told_sold_out`.
    pub(super) exits: u64,
    /// Sum of `exited.*`: left, expired, completed, revoked, no-show.
    pub(super) exits_from_active: u64,
    /// `left_waiting_total`.
    pub(super) left_waiting: u64,
    /// `abandoned_total`.
    pub(super) abandoned: u64,
    /// `sold_out_total`: waiting fans told sold out.
    pub(super) told_sold_out: u64,
    /// Still in the line, the pre-queue, the active set.
    pub(super) still_waiting: u64,
    pub(super) still_pre_queued: u64,
    pub(super) still_active: u64,
    /// exits ÷ entries, %; `null` without entries or stats.
    pub(super) exits_per_entry_pct: Option<f64>,
    /// Activation wait p95 (from the opening for pre-queued fans), ms;
    /// `null` when nobody was admitted.
    pub(super) activation_wait_p95_ms: Option<f64>,
}

impl CirculationReport {
    /// From the settled `room` (read `settled_after` the last fan), and the
    /// activation wait p95 in ms.
    pub(super) fn of(
        room: Option<&RoomStats>,
        settled_after: Duration,
        activation_wait_p95_ms: Option<f64>,
    ) -> Self {
        let n = |f: fn(&RoomStats) -> u64| room.map_or(0, f);
        let exits_from_active = n(|r| {
            let e = &r.exited;
            e.left + e.expired + e.completed + e.revoked + e.no_show
        });
        let (left_waiting, abandoned) = (n(|r| r.left_waiting_total), n(|r| r.abandoned_total));
        let told_sold_out = n(|r| r.sold_out_total);
        let (entries, exits) = (
            n(|r| r.entered_total),
            exits_from_active + left_waiting + abandoned + told_sold_out,
        );
        Self {
            settled_after_seconds: (settled_after.as_secs_f64() * 10.0).round() / 10.0,
            line_empty: room.is_some_and(|r| r.waiting + r.pre_queue == 0),
            entries,
            exits,
            exits_from_active,
            left_waiting,
            abandoned,
            told_sold_out,
            still_waiting: n(|r| r.waiting),
            still_pre_queued: n(|r| r.pre_queue),
            still_active: n(|r| r.active),
            exits_per_entry_pct: (entries > 0)
                .then(|| (exits as f64 * 10_000.0 / entries as f64).round() / 100.0),
            activation_wait_p95_ms,
        }
    }

    /// Exits per entry ≥ 95 %, activation wait p95 < 30 s.
    pub(super) fn checks(&self) -> [Check; 2] {
        [
            Check::at_least(
                "circulation: exits ÷ entries",
                self.exits_per_entry_pct,
                MIN_EXITS_PER_ENTRY_PCT,
                CIRCULATION,
            ),
            Check::bounded(
                "activation wait p95 (from opening)",
                self.activation_wait_p95_ms,
                MAX_ACTIVATION_P95_MS,
                true,
                "ms",
                CIRCULATION,
            ),
        ]
    }
}

/// Prints drop-off and circulation.
pub(super) fn print(d: &DropOffReport, c: &CirculationReport) {
    let na = |v: Option<u64>| v.map_or_else(|| "n/a".to_owned(), |v| v.to_string());
    println!(
        "drop-off: {} fans stopped polling while waiting, after p50 {:.1} s, p90 {:.1} s, max {:.1} s; {} told sold out while waiting; room abandoned_total {}",
        d.fans,
        d.waited_p50_seconds,
        d.waited_p90_seconds,
        d.waited_max_seconds,
        d.told_sold_out_while_waiting,
        na(d.room_abandoned_total)
    );
    println!(
        "circulation (room stats {:.1} s after the last fan, line {}): exits {} of {} entries ({}) = {} from the active set + {} left the line + {} abandoned + {} told sold out; still waiting {}, pre-queued {}, active {}",
        c.settled_after_seconds,
        if c.line_empty { "empty" } else { "NOT empty" },
        c.exits,
        c.entries,
        c.exits_per_entry_pct
            .map_or_else(|| "n/a".to_owned(), |p| format!("{p:.2} %")),
        c.exits_from_active,
        c.left_waiting,
        c.abandoned,
        c.told_sold_out,
        c.still_waiting,
        c.still_pre_queued,
        c.still_active
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> RoomStats {
        serde_json::from_value(serde_json::json!({
            "event_id": "1", "state": "open", "capacity": 10, "waiting": 0, "active": 3,
            "entered_total": 100, "admitted_total": 40, "left_waiting_total": 2,
            "exited": {"left": 5, "expired": 1, "completed": 30, "revoked": 0, "no_show": 1},
            "abandoned_total": 50, "sold_out_total": 8, "entry_rate_per_second": 0.0, "exit_rate_per_second": 0.0,
            "pre_queue": 0
        }))
        .unwrap()
    }

    #[test]
    fn exits_count_the_active_set_the_line_and_the_abandoned() {
        let room = stats();
        let c = CirculationReport::of(Some(&room), Duration::from_millis(1_240), Some(900.0));
        assert_eq!((c.exits_from_active, c.exits, c.entries), (37, 97, 100));
        assert_eq!(c.exits_per_entry_pct, Some(97.0));
        assert_eq!(c.settled_after_seconds, 1.2);
        assert!(c.line_empty);
        assert!(c.checks().iter().all(|c| c.ok));
        let slow = CirculationReport::of(Some(&room), Duration::ZERO, Some(30_000.0));
        assert!(!slow.checks()[1].ok);
        let none = CirculationReport::of(None, Duration::ZERO, None);
        assert!(none.exits_per_entry_pct.is_none() && none.checks().iter().all(|c| c.ok));
    }

    #[test]
    fn ninety_five_percent_passes_and_less_fails() {
        let at = |pct| Check::at_least("x", Some(pct), MIN_EXITS_PER_ENTRY_PCT, CIRCULATION).ok;
        assert!(at(95.0) && !at(94.99));
    }

    #[test]
    fn drop_off_waits_in_seconds() {
        let d = DropOffReport::of(&[3_000.0, 1_000.0, 2_000.0], 4, Some(&stats()));
        assert_eq!(
            (
                d.fans,
                d.waited_p50_seconds,
                d.waited_p90_seconds,
                d.waited_max_seconds
            ),
            (3, 2.0, 3.0, 3.0)
        );
        assert_eq!(d.room_abandoned_total, Some(50));
        assert_eq!(DropOffReport::of(&[], 0, None).waited_max_seconds, 0.0);
    }
}
