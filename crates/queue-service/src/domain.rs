//! Domain types, parsed once at the boundary: ids, room settings, exit
//! reasons.

use std::fmt;

use chrono::{DateTime, Utc};
use platform::id::UserIdError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Why an id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Empty or longer than 64 bytes.
    #[error("must be 1 to 64 bytes long")]
    Length,
    /// Contains a character the id kind does not allow.
    #[error("contains a character that is not allowed")]
    Character,
}

/// The performance being sold, as sent by core-service: 1–64 characters of
/// `[A-Za-z0-9_-]`. Safe inside Redis key names and hash tags.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(String);

impl EventId {
    /// Parses an event id.
    ///
    /// # Errors
    /// [`IdError`] when the id is empty, longer than 64 bytes or has a
    /// character outside `[A-Za-z0-9_-]`.
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        if raw.is_empty() || raw.len() > 64 {
            return Err(IdError::Length);
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(IdError::Character);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A fan: the `sub` of their identity token, the id both services parse
/// (1–64 bytes of UTF-8, no whitespace or control characters).
pub use platform::id::UserId;

/// The shared id type's refusals, as this service reports every id refusal
/// (the same messages as for event ids).
impl From<UserIdError> for IdError {
    fn from(error: UserIdError) -> Self {
        match error {
            UserIdError::Length => Self::Length,
            UserIdError::Character => Self::Character,
        }
    }
}

/// Whether a waiting room takes entries and admits fans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoomState {
    /// Fans may enter; admission runs.
    Open,
    /// Entries and polls get 503 with Retry-After; admission stops, places
    /// are kept.
    Paused,
    /// The sale is over: 403 for entries and polls. The room is no longer
    /// ticked, and its Redis keys expire after the access TTL plus a day
    /// (reopening it within that time keeps them).
    Closed,
}

impl RoomState {
    /// The lowercase name stored in Redis.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Paused => "paused",
            Self::Closed => "closed",
        }
    }

    /// Parses the stored name.
    pub fn from_stored(raw: &str) -> Option<Self> {
        match raw {
            "open" => Some(Self::Open),
            "paused" => Some(Self::Paused),
            "closed" => Some(Self::Closed),
            _ => None,
        }
    }
}

/// Settings of one event's waiting room.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RoomConfig {
    /// Maximum size of the active set (fans allowed to buy at once).
    pub capacity: u64,
    /// Admissions per second.
    pub admit_per_second: f64,
    /// Lifetime of an admission (and of its access token), in seconds.
    pub access_ttl_seconds: u64,
    /// A waiting fan silent for this many seconds loses the place.
    pub abandon_after_seconds: u64,
    /// An admitted fan must claim the admission within this many seconds
    /// (by seeing it in a poll, or by a first use of the access token), or
    /// the slot is reclaimed as a no-show; 1 to `access_ttl_seconds`.
    /// Waiting fans are told to poll at least every two thirds of it.
    pub claim_within_seconds: u64,
    /// Within `admit_per_second`, the admission rate follows the booking
    /// core's health: it halves when core-service reports a hold or
    /// payment p95 above this many ms, or a saturated pool, and climbs
    /// back while it is healthy (AIMD); 1 to [`MAX_LATENCY_TARGET_MS`].
    #[serde(default = "default_latency_target_ms")]
    pub latency_target_ms: u64,
    /// A scheduled sale (RFC 3339): fans who enter before it wait in the
    /// pre-queue, drawn into a seeded random order at this instant (see
    /// [`crate::pre_queue`]); fans who come later queue behind them in
    /// arrival order. `None`: the line is first come, first served from
    /// the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<DateTime<Utc>>,
    /// Open, paused or closed.
    pub state: RoomState,
}

/// Upper bounds that keep a room's numbers sane.
pub const MAX_CAPACITY: u64 = 100_000_000;
/// Largest accepted `admit_per_second`.
pub const MAX_ADMIT_PER_SECOND: f64 = 1_000_000.0;
/// Largest accepted `access_ttl_seconds` and `abandon_after_seconds` (a day).
pub const MAX_SECONDS: u64 = 86_400;
/// Largest accepted `latency_target_ms` (a minute).
pub const MAX_LATENCY_TARGET_MS: u64 = 60_000;

/// The latency target of a room stored before targets existed, ms.
const fn default_latency_target_ms() -> u64 {
    200
}

/// Furthest ahead a sale may be scheduled (`opens_at`), in days.
pub const MAX_OPENS_IN_DAYS: i64 = 366;

impl RoomConfig {
    /// Checks the bounds.
    ///
    /// # Errors
    /// A message naming the first field out of range.
    pub fn validate(&self) -> Result<(), String> {
        if self.capacity == 0 || self.capacity > MAX_CAPACITY {
            return Err(format!("capacity must be between 1 and {MAX_CAPACITY}"));
        }
        if !self.admit_per_second.is_finite()
            || self.admit_per_second <= 0.0
            || self.admit_per_second > MAX_ADMIT_PER_SECOND
        {
            return Err(format!(
                "admit_per_second must be above 0 and at most {MAX_ADMIT_PER_SECOND}"
            ));
        }
        if self.access_ttl_seconds == 0 || self.access_ttl_seconds > MAX_SECONDS {
            return Err(format!(
                "access_ttl_seconds must be between 1 and {MAX_SECONDS}"
            ));
        }
        if self.abandon_after_seconds == 0 || self.abandon_after_seconds > MAX_SECONDS {
            return Err(format!(
                "abandon_after_seconds must be between 1 and {MAX_SECONDS}"
            ));
        }
        if self.claim_within_seconds == 0 || self.claim_within_seconds > self.access_ttl_seconds {
            return Err("claim_within_seconds must be between 1 and access_ttl_seconds".to_owned());
        }
        if self.latency_target_ms == 0 || self.latency_target_ms > MAX_LATENCY_TARGET_MS {
            return Err(format!(
                "latency_target_ms must be between 1 and {MAX_LATENCY_TARGET_MS}"
            ));
        }
        Ok(())
    }
}

/// One core-service instance's health over its last report period, as
/// the waiting room received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CoreHealth {
    /// p95 of hold requests, ms (0: none).
    pub hold_p95_ms: u64,
    /// p95 of payment requests, ms (0: none).
    pub payment_p95_ms: u64,
    /// Requests waited for a database connection for most of the period.
    pub pool_saturated: bool,
}

/// Why a fan's active slot is given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// The fan bought tickets.
    Completed,
    /// The fan left on their own.
    Left,
    /// An operator or another service revoked the session.
    Revoked,
}

impl ExitReason {
    /// The label used in Redis counters and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Left => "left",
            Self::Revoked => "revoked",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_at_the_length_limits() {
        assert!(EventId::parse("").is_err());
        assert!(EventId::parse(&"a".repeat(64)).is_ok());
        assert_eq!(EventId::parse(&"a".repeat(65)), Err(IdError::Length));
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse(&"é".repeat(32)).is_ok());
        assert_eq!(UserId::parse(&"é".repeat(33)), Err(UserIdError::Length));
        assert_eq!(IdError::from(UserIdError::Length), IdError::Length);
        assert_eq!(IdError::from(UserIdError::Character), IdError::Character);
    }

    #[test]
    fn event_ids_refuse_hash_tag_characters() {
        assert_eq!(EventId::parse("perf{1}"), Err(IdError::Character));
        assert_eq!(EventId::parse("a:b"), Err(IdError::Character));
        assert!(EventId::parse("perf_2026-10-01").is_ok());
    }

    #[test]
    fn room_config_bounds() {
        let ok = RoomConfig {
            capacity: 10,
            admit_per_second: 5.0,
            access_ttl_seconds: 60,
            abandon_after_seconds: 300,
            claim_within_seconds: 30,
            latency_target_ms: 200,
            opens_at: None,
            state: RoomState::Open,
        };
        assert!(ok.validate().is_ok());
        for claim in [0, 61] {
            let config = RoomConfig {
                claim_within_seconds: claim,
                ..ok
            };
            assert!(config.validate().is_err(), "claim {claim}");
        }
        assert!(RoomConfig { capacity: 0, ..ok }.validate().is_err());
        assert!(
            RoomConfig {
                admit_per_second: f64::NAN,
                ..ok
            }
            .validate()
            .is_err()
        );
        assert!(
            RoomConfig {
                admit_per_second: 0.0,
                ..ok
            }
            .validate()
            .is_err()
        );
        assert!(
            RoomConfig {
                access_ttl_seconds: 0,
                ..ok
            }
            .validate()
            .is_err()
        );
        assert!(
            RoomConfig {
                abandon_after_seconds: MAX_SECONDS + 1,
                ..ok
            }
            .validate()
            .is_err()
        );
    }

    proptest! {
        #[test]
        fn event_ids_accept_exactly_the_safe_alphabet(raw in "\\PC{0,70}") {
            let valid = !raw.is_empty()
                && raw.len() <= 64
                && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            prop_assert_eq!(EventId::parse(&raw).is_ok(), valid);
        }

        #[test]
        fn user_ids_accept_1_to_64_bytes_without_whitespace(raw in "\\PC{0,70}|[ \t\na-z]{0,5}") {
            let valid = !raw.is_empty()
                && raw.len() <= 64
                && !raw.chars().any(|c| c.is_whitespace() || c.is_control());
            let parsed = UserId::parse(&raw);
            prop_assert_eq!(parsed.is_ok(), valid);
            if let Ok(id) = parsed {
                prop_assert_eq!(id.as_str(), raw.as_str());
            }
        }
    }
}
