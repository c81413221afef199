//! What the scripts answer: every script replies with a flat array of
//! strings (see `src/lua/`), parsed here into typed results. A reply of any
//! other shape is a [`StoreError::Reply`].

use chrono::{DateTime, Utc};

use super::StoreError;
use crate::{
    domain::{CoreHealth, RoomConfig, RoomState},
    eta::LineSpeed,
};

/// What an entry or status call found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Place {
    /// Entered before the room's `opens_at`: no place yet, since the
    /// pre-queue's order is drawn at opening.
    PreQueue {
        /// When the room opens, ms since the epoch.
        opens_at_ms: u64,
        /// The longest the fan may stay silent once the room is open,
        /// seconds.
        silence_window_seconds: u64,
    },
    /// In line.
    Waiting {
        /// Arrival number (0 for a pre-queued fan not yet placed in the
        /// line after opening).
        seq: u64,
        /// Fans ahead.
        ahead: u64,
        /// How fast the line moves, for the ETA.
        speed: LineSpeed,
        /// The longest the fan may stay silent, seconds (the abandonment
        /// window, or twice the claim window when shorter).
        silence_window_seconds: u64,
    },
    /// Admitted.
    Active {
        /// Session id.
        sid: String,
        /// Expiry of the admission, ms since the epoch.
        expires_at_ms: u64,
    },
}

/// Outcome of an entry or status script.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lookup {
    /// No room configured for the event.
    NoRoom,
    /// The room is closed.
    Closed,
    /// The room is paused.
    Paused,
    /// The fan is not in line nor active (left, abandoned, expired).
    Gone,
    /// No seat is left and no hold is live: a waiting fan, or one entering,
    /// is told so (and no place is made).
    SoldOut,
    /// The fan's place; `created` is true for a new entry.
    Found {
        /// Where the fan is.
        place: Place,
        /// A new entry was made.
        created: bool,
    },
}

/// Result of a revocation check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionCheck {
    /// The session holds an active slot.
    Valid,
    /// The slot lapsed.
    Expired,
    /// Released, revoked, or replaced by a newer admission.
    Released,
    /// Released because the purchase completed, and the token has not
    /// expired yet. Only reported when the caller accepts it.
    Completed,
}

/// A room's settings with its live numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomSnapshot {
    /// Settings.
    pub config: RoomConfig,
    /// Fans in line.
    pub waiting: u64,
    /// Fans in the active set.
    pub active: u64,
    /// Entries ever made.
    pub entered: u64,
    /// Admissions ever made.
    pub admitted: u64,
    /// Fans who left the line before admission.
    pub left_waiting: u64,
    /// Active fans who left.
    pub exited_left: u64,
    /// Admissions that lapsed.
    pub exited_expired: u64,
    /// Admissions that ended in a purchase.
    pub exited_completed: u64,
    /// Admissions revoked by an operator or service.
    pub exited_revoked: u64,
    /// Admissions reclaimed because nobody claimed them in time.
    pub exited_no_show: u64,
    /// Waiting fans dropped for silence.
    pub abandoned: u64,
    /// Waiting fans told `sold_out`, who left the line with that answer.
    pub told_sold_out: u64,
    /// Entries per second over the last 30 s.
    pub entry_rate: f64,
    /// Admissions per second over the last 30 s.
    pub exit_rate: f64,
    /// The booking core's latest report: no seat left, no live hold.
    pub sold_out: bool,
    /// Fans in the pre-queue (entered before `opens_at`, not yet placed in
    /// the line).
    pub pre_queue: u64,
    /// The pre-queue's shuffle seed (32 hex digits), once it has opened;
    /// `None` before, so nobody can compute the order in advance.
    pub shuffle_seed: Option<String>,
    /// Departures from the active set per second over the last 30 s.
    pub departure_rate: f64,
    /// The admission rate now, fans per second.
    pub admission_rate: f64,
    /// Why the admission rate last changed (see `lua/inventory.lua`).
    pub admission_rate_reason: String,
    /// The booking core's last health report, while fresh.
    pub core_health: Option<CoreHealth>,
}

/// The admission rate after an inventory report.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RateControl {
    /// Fans per second now.
    pub rate: f64,
    /// Why it last changed: `ceiling`, `healthy`, `hold_p95`,
    /// `payment_p95`, `pool_saturated`.
    pub reason: String,
    /// This report cut the rate.
    pub cut: bool,
}

/// An inventory reply: `no_room` (`None`), or `recorded, rate, reason,
/// cut`.
pub(super) fn rate_control(reply: &[String]) -> Result<Option<RateControl>, StoreError> {
    match first(reply)? {
        "no_room" => Ok(None),
        "recorded" if reply.len() == 4 => Ok(Some(RateControl {
            rate: float(&reply[1])?,
            reason: reply[2].clone(),
            cut: reply[3] == "1",
        })),
        _ => Err(StoreError::Reply(reply.join(","))),
    }
}

/// Outcome of creating or changing a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Configured {
    /// A new room.
    Created,
    /// An existing room, changed.
    Updated,
    /// Refused, nothing written: `opens_at` changed after fans were placed
    /// in the line.
    AlreadyOpen,
}

/// Result of one admission tick.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TickReport {
    /// Room state at the tick; `None` when the room no longer exists.
    pub state: Option<RoomState>,
    /// Fans admitted.
    pub admitted: u64,
    /// Admissions expired.
    pub expired: u64,
    /// Unclaimed admissions reclaimed.
    pub no_shows: u64,
    /// Waiting fans dropped as abandoned.
    pub abandoned: u64,
    /// Fans in line after the tick.
    pub waiting: u64,
    /// Active set size after the tick.
    pub active: u64,
    /// The call stopped at its budget with work left; call again.
    pub more: bool,
}

/// The first field, which names the outcome.
pub(super) fn first(reply: &[String]) -> Result<&str, StoreError> {
    reply
        .first()
        .map(String::as_str)
        .ok_or_else(|| StoreError::Reply("empty reply".into()))
}

fn num(raw: &str) -> Result<u64, StoreError> {
    raw.parse()
        .map_err(|_| StoreError::Reply(format!("not a count: {raw:?}")))
}

fn float(raw: &str) -> Result<f64, StoreError> {
    raw.parse()
        .map_err(|_| StoreError::Reply(format!("not a number: {raw:?}")))
}

/// A configure reply.
pub(super) fn configured(reply: &[String]) -> Result<Configured, StoreError> {
    match first(reply)? {
        "created" => Ok(Configured::Created),
        "updated" => Ok(Configured::Updated),
        "already_open" => Ok(Configured::AlreadyOpen),
        other => Err(StoreError::Reply(other.to_owned())),
    }
}

/// An entry or status reply: an outcome, or `active, created, sid,
/// expires_at_ms`, `pre_queue, created, opens_at_ms, silence_window_seconds`
/// or `waiting, created, seq, ahead, admission rate,
/// silence_window_seconds, free slots, departure rate, its low, its high,
/// capacity, access ttl` (see `waiting_reply` in `lua/replies.lua`).
pub(super) fn lookup(reply: &[String]) -> Result<Lookup, StoreError> {
    let bad = || StoreError::Reply(reply.join(","));
    match first(reply)? {
        "no_room" => Ok(Lookup::NoRoom),
        "closed" => Ok(Lookup::Closed),
        "paused" => Ok(Lookup::Paused),
        "gone" => Ok(Lookup::Gone),
        "sold_out" => Ok(Lookup::SoldOut),
        "active" if reply.len() == 4 => Ok(Lookup::Found {
            created: reply[1] == "1",
            place: Place::Active {
                sid: reply[2].clone(),
                expires_at_ms: num(&reply[3])?,
            },
        }),
        "pre_queue" if reply.len() == 4 => Ok(Lookup::Found {
            created: reply[1] == "1",
            place: Place::PreQueue {
                opens_at_ms: num(&reply[2])?,
                silence_window_seconds: num(&reply[3])?,
            },
        }),
        "waiting" if reply.len() == 12 => Ok(Lookup::Found {
            created: reply[1] == "1",
            place: Place::Waiting {
                seq: num(&reply[2])?,
                ahead: num(&reply[3])?,
                speed: LineSpeed {
                    admit_per_second: float(&reply[4])?,
                    free_slots: num(&reply[6])?,
                    departure_rate: float(&reply[7])?,
                    departure_low: float(&reply[8])?,
                    departure_high: float(&reply[9])?,
                    capacity: num(&reply[10])?,
                    access_ttl_seconds: num(&reply[11])?,
                },
                silence_window_seconds: num(&reply[5])?,
            },
        }),
        _ => Err(bad()),
    }
}

/// A leave reply: `Some(false)` the fan left the line, `Some(true)` an
/// active slot, `None` nothing.
pub(super) fn left(reply: &[String]) -> Result<Option<bool>, StoreError> {
    match first(reply)? {
        "waiting" => Ok(Some(false)),
        "active" => Ok(Some(true)),
        "none" => Ok(None),
        other => Err(StoreError::Reply(other.to_owned())),
    }
}

/// A release reply: whether a live slot was freed.
pub(super) fn released(reply: &[String]) -> Result<bool, StoreError> {
    match first(reply)? {
        "released" => Ok(true),
        "expired" | "none" => Ok(false),
        other => Err(StoreError::Reply(other.to_owned())),
    }
}

/// A verify reply: one status per session, exactly `sessions` of them.
pub(super) fn session_checks(
    reply: &[String],
    sessions: usize,
) -> Result<Vec<SessionCheck>, StoreError> {
    if reply.len() != sessions {
        return Err(StoreError::Reply(format!(
            "{} answers for {sessions} sessions",
            reply.len()
        )));
    }
    reply
        .iter()
        .map(|status| match status.as_str() {
            "ok" => Ok(SessionCheck::Valid),
            "expired" => Ok(SessionCheck::Expired),
            "released" => Ok(SessionCheck::Released),
            "completed" => Ok(SessionCheck::Completed),
            other => Err(StoreError::Reply(other.to_owned())),
        })
        .collect()
}

/// A room reply: `no_room`, or 32 fields (`room`, state, five settings,
/// the sizes of the line and the active set, nine counters, two rates,
/// sold out, the pre-queue's size, opens_at, the seed, the departure
/// rate, the latency target, the admission rate and its reason, the
/// core's health: hold p95, payment p95, saturated, all '' when stale;
/// the fans told sold out).
pub(super) fn room(reply: &[String]) -> Result<Option<RoomSnapshot>, StoreError> {
    if first(reply)? == "no_room" {
        return Ok(None);
    }
    if reply.len() != 32 {
        return Err(StoreError::Reply(format!(
            "room reply has {} fields",
            reply.len()
        )));
    }
    let n = |i: usize| num(&reply[i]);
    let state =
        RoomState::from_stored(&reply[1]).ok_or_else(|| StoreError::Reply(reply[1].clone()))?;
    Ok(Some(RoomSnapshot {
        config: RoomConfig {
            capacity: n(2)?,
            admit_per_second: float(&reply[3])?,
            access_ttl_seconds: n(4)?,
            abandon_after_seconds: n(5)?,
            claim_within_seconds: n(6)?,
            latency_target_ms: n(25)?,
            opens_at: if reply[22].is_empty() {
                None
            } else {
                let ms = i64::try_from(n(22)?).map_err(|_| StoreError::Reply(reply[22].clone()))?;
                Some(
                    DateTime::<Utc>::from_timestamp_millis(ms)
                        .ok_or_else(|| StoreError::Reply(reply[22].clone()))?,
                )
            },
            state,
        },
        waiting: n(7)?,
        active: n(8)?,
        entered: n(9)?,
        admitted: n(10)?,
        left_waiting: n(11)?,
        exited_left: n(12)?,
        exited_expired: n(13)?,
        exited_completed: n(14)?,
        exited_revoked: n(15)?,
        exited_no_show: n(16)?,
        abandoned: n(17)?,
        told_sold_out: n(31)?,
        entry_rate: float(&reply[18])?,
        exit_rate: float(&reply[19])?,
        sold_out: reply[20] == "1",
        pre_queue: n(21)?,
        shuffle_seed: (!reply[23].is_empty()).then(|| reply[23].clone()),
        departure_rate: float(&reply[24])?,
        admission_rate: float(&reply[26])?,
        admission_rate_reason: reply[27].clone(),
        core_health: if reply[28].is_empty() {
            None
        } else {
            Some(CoreHealth {
                hold_p95_ms: n(28)?,
                payment_p95_ms: n(29)?,
                pool_saturated: reply[30] == "1",
            })
        },
    }))
}

/// An admission reply: `no_room`, or 9 fields (state, admitted, expired,
/// abandoned, waiting, active, exit rate (not needed here), more,
/// no-shows).
pub(super) fn tick(reply: &[String]) -> Result<TickReport, StoreError> {
    if first(reply)? == "no_room" {
        return Ok(TickReport {
            state: None,
            admitted: 0,
            expired: 0,
            no_shows: 0,
            abandoned: 0,
            waiting: 0,
            active: 0,
            more: false,
        });
    }
    if reply.len() != 9 {
        return Err(StoreError::Reply(format!(
            "admit reply has {} fields",
            reply.len()
        )));
    }
    Ok(TickReport {
        state: RoomState::from_stored(&reply[0]),
        admitted: num(&reply[1])?,
        expired: num(&reply[2])?,
        no_shows: num(&reply[8])?,
        abandoned: num(&reply[3])?,
        waiting: num(&reply[4])?,
        active: num(&reply[5])?,
        more: reply[7] == "1",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    #[test]
    fn script_replies_parse_into_places() {
        assert_eq!(
            lookup(&strings(&[
                "waiting", "1", "7", "6", "50", "300", "3", "2", "1.5", "2.5", "100", "600"
            ]))
            .unwrap(),
            Lookup::Found {
                created: true,
                place: Place::Waiting {
                    seq: 7,
                    ahead: 6,
                    speed: LineSpeed {
                        admit_per_second: 50.0,
                        free_slots: 3,
                        departure_rate: 2.0,
                        departure_low: 1.5,
                        departure_high: 2.5,
                        capacity: 100,
                        access_ttl_seconds: 600,
                    },
                    silence_window_seconds: 300
                }
            }
        );
        assert_eq!(
            lookup(&strings(&["pre_queue", "1", "1700000000000", "60"])).unwrap(),
            Lookup::Found {
                created: true,
                place: Place::PreQueue {
                    opens_at_ms: 1_700_000_000_000,
                    silence_window_seconds: 60
                }
            }
        );
        assert_eq!(
            lookup(&strings(&["active", "0", "7", "1700000000000"])).unwrap(),
            Lookup::Found {
                created: false,
                place: Place::Active {
                    sid: "7".into(),
                    expires_at_ms: 1_700_000_000_000
                }
            }
        );
        assert_eq!(lookup(&strings(&["paused"])).unwrap(), Lookup::Paused);
        assert!(lookup(&strings(&["waiting", "1", "7", "6", "2.5", "50", "300"])).is_err());
        assert!(lookup(&strings(&["pre_queue", "1"])).is_err());
        assert!(lookup(&[]).is_err());
    }
}
