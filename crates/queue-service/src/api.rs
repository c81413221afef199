//! Request and response bodies of the HTTP API (JSON). The fan's status
//! and ticket bodies are the service layer's own types
//! ([`FanStatus`], [`Ticket`]), re-exported here so that clients find every
//! body in one module.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use crate::{
    domain::CoreHealth,
    service::{FanStatus, Ticket},
};
use crate::{
    domain::{EventId, RoomState},
    store::RoomSnapshot,
};

/// Body of `POST /v1/events/{event_id}/queue`: optional, and when sent an
/// empty object `{}`. The fan is the subject of the identity token
/// (`Authorization: Bearer`), never a body field: a body with `user_id`, or
/// any other member, is refused with 400 `invalid_request`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnterRequest {}

/// Body of `PUT /admin/v1/events/{event_id}/waiting-room`; omitted fields
/// take the configured defaults.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoomRequest {
    /// Active set size, 1 to [`MAX_CAPACITY`](crate::domain::MAX_CAPACITY).
    #[schema(minimum = 1, maximum = 100_000_000)]
    pub capacity: Option<u64>,
    /// Admissions per second, above 0 and at most
    /// [`MAX_ADMIT_PER_SECOND`](crate::domain::MAX_ADMIT_PER_SECOND).
    #[schema(exclusive_minimum = 0.0, maximum = 1_000_000.0)]
    pub admit_per_second: Option<f64>,
    /// Admission lifetime in seconds, 1 to
    /// [`MAX_SECONDS`](crate::domain::MAX_SECONDS).
    #[schema(minimum = 1, maximum = 86_400)]
    pub access_ttl_seconds: Option<u64>,
    /// Silence in seconds after which a waiting fan loses the place, 1 to
    /// [`MAX_SECONDS`](crate::domain::MAX_SECONDS).
    #[schema(minimum = 1, maximum = 86_400)]
    pub abandon_after_seconds: Option<u64>,
    /// Seconds an admitted fan has to claim the admission (see
    /// [`RoomConfig::claim_within_seconds`](crate::domain::RoomConfig)), at
    /// least 1; a value above `access_ttl_seconds` is cut to it.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86_400)]
    pub claim_within_seconds: Option<u64>,
    /// The booking core's hold and payment p95 above which admission slows
    /// down, ms (see
    /// [`RoomConfig::latency_target_ms`](crate::domain::RoomConfig)), 1 to
    /// [`MAX_LATENCY_TARGET_MS`](crate::domain::MAX_LATENCY_TARGET_MS).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 60_000)]
    pub latency_target_ms: Option<u64>,
    /// A scheduled sale (RFC 3339, at most
    /// [`MAX_OPENS_IN_DAYS`](crate::domain::MAX_OPENS_IN_DAYS) days ahead):
    /// fans who enter before it wait in the pre-queue and are placed in a
    /// seeded random order at this instant; later fans queue behind them in
    /// arrival order. It can be set, moved or dropped only until the first
    /// fan is placed in the line (409 `room_already_open`); dropping it
    /// with fans in the pre-queue opens the room now. A past instant opens
    /// at once.
    #[serde(default)]
    pub opens_at: Option<DateTime<Utc>>,
    /// `open`, `paused` or `closed`.
    pub state: RoomState,
}

/// A room's numbers (`GET …/waiting-room/stats`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RoomStats {
    /// Event id.
    pub event_id: String,
    /// `open`, `paused` or `closed`.
    pub state: RoomState,
    /// Active set size limit.
    pub capacity: u64,
    /// Fans in line.
    pub waiting: u64,
    /// Fans in the active set.
    pub active: u64,
    /// Entries ever made.
    pub entered_total: u64,
    /// Admissions ever made.
    pub admitted_total: u64,
    /// Fans who left the line before admission.
    pub left_waiting_total: u64,
    /// Exits from the active set by reason.
    pub exited: ExitCounts,
    /// Waiting fans dropped for silence.
    pub abandoned_total: u64,
    /// Waiting fans told `sold_out`, who left the line with that final
    /// answer (an exit, as a fan who leaves).
    #[serde(default)]
    pub sold_out_total: u64,
    /// Entries per second over the last 30 s.
    pub entry_rate_per_second: f64,
    /// Admissions (exits from the line) per second over the last 30 s.
    pub exit_rate_per_second: f64,
    /// The booking core last reported no seat left and no live hold:
    /// admission has stopped and waiting fans are told `sold_out`.
    #[serde(default)]
    pub sold_out: bool,
    /// Fans in the pre-queue: entered before `opens_at`, not yet placed in
    /// the line.
    #[serde(default)]
    pub pre_queue: u64,
    /// The scheduled opening, when the room has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<DateTime<Utc>>,
    /// The pre-queue's shuffle seed (32 hex digits), published once the
    /// pre-queue has opened: with the list of pre-queued fans it
    /// reproduces their order ([`crate::pre_queue::pre_queue_order`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shuffle_seed: Option<String>,
    /// Departures from the active set (purchases, leaving, lapsed and
    /// reclaimed admissions) per second over the last 30 s: the pace the
    /// line moves at once the active set is full, and the ETA's base.
    #[serde(default)]
    pub departure_rate_per_second: f64,
    /// The admission rate now, fans per second: `admit_per_second`, or less
    /// while the booking core's health has it cut or a slow start ramps
    /// up after the opening.
    #[serde(default)]
    pub admission_rate_per_second: f64,
    /// Why the admission rate is what it is: `ceiling` (no fresh health
    /// report, or back at `admit_per_second`), `slow_start` (ramping up
    /// after the pre-queue opened: 1/16 of the ceiling, doubling every
    /// second), `healthy` (rising), `hold_p95`, `payment_p95` or
    /// `pool_saturated` (cut by half).
    #[serde(default)]
    pub admission_rate_reason: String,
    /// The booking core's last health report, while fresh (10 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_health: Option<CoreHealth>,
}

/// Exits from the active set.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExitCounts {
    /// The fan left.
    pub left: u64,
    /// The admission lapsed.
    pub expired: u64,
    /// The fan bought tickets.
    pub completed: u64,
    /// Revoked by an operator or service.
    pub revoked: u64,
    /// Admitted, but never claimed within `claim_within_seconds`.
    pub no_show: u64,
}

impl RoomStats {
    pub(crate) fn new(event: &EventId, s: &RoomSnapshot) -> Self {
        Self {
            event_id: event.to_string(),
            state: s.config.state,
            capacity: s.config.capacity,
            waiting: s.waiting,
            active: s.active,
            entered_total: s.entered,
            admitted_total: s.admitted,
            left_waiting_total: s.left_waiting,
            exited: ExitCounts {
                left: s.exited_left,
                expired: s.exited_expired,
                completed: s.exited_completed,
                revoked: s.exited_revoked,
                no_show: s.exited_no_show,
            },
            abandoned_total: s.abandoned,
            sold_out_total: s.told_sold_out,
            entry_rate_per_second: s.entry_rate,
            exit_rate_per_second: s.exit_rate,
            sold_out: s.sold_out,
            pre_queue: s.pre_queue,
            opens_at: s.config.opens_at,
            shuffle_seed: s.shuffle_seed.clone(),
            departure_rate_per_second: s.departure_rate,
            admission_rate_per_second: s.admission_rate,
            admission_rate_reason: s.admission_rate_reason.clone(),
            core_health: s.core_health,
        }
    }
}

/// `/readyz` body.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// Whether every Redis master answered.
    pub ready: bool,
}
