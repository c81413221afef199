//! Domain types, parsed once at the boundary, and the position/ETA
//! arithmetic.

use std::fmt;

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
    /// The sale is over: 403 for entries and polls.
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
    /// Open, paused or closed.
    pub state: RoomState,
}

/// Upper bounds that keep a room's numbers sane.
pub const MAX_CAPACITY: u64 = 100_000_000;
/// Largest accepted `admit_per_second`.
pub const MAX_ADMIT_PER_SECOND: f64 = 1_000_000.0;
/// Largest accepted `access_ttl_seconds` and `abandon_after_seconds` (a day).
pub const MAX_SECONDS: u64 = 86_400;

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
        Ok(())
    }
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

/// Polling interval near the front of the line, in ms.
pub const MIN_POLL_MS: u64 = 1_000;
/// Polling interval far back in the line, in ms.
pub const MAX_POLL_MS: u64 = 30_000;

/// A waiting fan's place and the derived estimates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// 1-based place in line.
    pub position: u64,
    /// Fans ahead (`position - 1`).
    pub ahead: u64,
    /// Expected wait in seconds, rounded up.
    pub eta_seconds: u64,
    /// When the client should poll next, in ms.
    pub poll_after_ms: u64,
}

/// Computes the estimate for a fan with `ahead` fans in front.
///
/// `measured_rate` is the admission (exit) rate measured over the recent
/// window, in fans per second; when nothing was admitted in the window (a
/// room that just opened) the configured `configured_rate` is the best
/// available estimate. `silence_window_seconds` (the abandonment window, or
/// twice the claim window when that is shorter) caps the polling interval
/// at a third of it, so an obedient client is never considered gone and
/// sees its admission well before the claim deadline.
///
/// The poll interval is a quarter of the ETA, clamped to
/// [`MIN_POLL_MS`]..=[`MAX_POLL_MS`]: fans near the front poll every second,
/// the back of a 300,000-fan line every 30 s.
pub fn estimate(
    ahead: u64,
    measured_rate: f64,
    configured_rate: f64,
    silence_window_seconds: u64,
) -> Estimate {
    let rate = if measured_rate.is_finite() && measured_rate > 0.0 {
        measured_rate
    } else if configured_rate.is_finite() && configured_rate > 0.0 {
        configured_rate
    } else {
        // Both unknown: assume one fan per second rather than divide by zero.
        1.0
    };
    // Precision loss is irrelevant here: `ahead` is below 2^53 in practice
    // and the result is rounded up to whole seconds anyway.
    let eta = (ahead as f64 / rate).ceil();
    let eta_seconds = if eta >= u64::MAX as f64 {
        u64::MAX
    } else {
        eta as u64
    };
    let ceiling = (silence_window_seconds.saturating_mul(1000) / 3).clamp(MIN_POLL_MS, MAX_POLL_MS);
    let poll_after_ms = (eta_seconds.saturating_mul(1000) / 4).clamp(MIN_POLL_MS, ceiling);
    Estimate {
        position: ahead.saturating_add(1),
        ahead,
        eta_seconds,
        poll_after_ms,
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
    fn a_fan_at_the_front_polls_every_second_and_waits_nothing() {
        let e = estimate(0, 10.0, 50.0, 300);
        assert_eq!(
            e,
            Estimate {
                position: 1,
                ahead: 0,
                eta_seconds: 0,
                poll_after_ms: MIN_POLL_MS
            }
        );
    }

    #[test]
    fn the_measured_rate_wins_over_the_configured_one() {
        assert_eq!(estimate(100, 10.0, 50.0, 300).eta_seconds, 10);
        assert_eq!(estimate(100, 0.0, 50.0, 300).eta_seconds, 2);
    }

    #[test]
    fn far_back_fans_poll_every_thirty_seconds() {
        assert_eq!(
            estimate(300_000, 50.0, 50.0, 300).poll_after_ms,
            MAX_POLL_MS
        );
        // A short abandonment window pulls the ceiling down.
        assert_eq!(estimate(300_000, 50.0, 50.0, 30).poll_after_ms, 10_000);
    }

    #[test]
    fn room_config_bounds() {
        let ok = RoomConfig {
            capacity: 10,
            admit_per_second: 5.0,
            access_ttl_seconds: 60,
            abandon_after_seconds: 300,
            claim_within_seconds: 30,
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

        #[test]
        fn position_is_one_based_and_eta_covers_the_fans_ahead(
            ahead in 0u64..10_000_000,
            measured in 0.0f64..5_000.0,
            configured in 0.01f64..5_000.0,
            abandon in 1u64..86_400,
        ) {
            let e = estimate(ahead, measured, configured, abandon);
            prop_assert_eq!(e.position, ahead + 1);
            prop_assert_eq!(e.ahead, ahead);
            let rate = if measured > 0.0 { measured } else { configured };
            // Within the ETA, the rate admits everyone ahead, and one second
            // less would not.
            prop_assert!(e.eta_seconds as f64 * rate >= ahead as f64 - 1e-6);
            if e.eta_seconds > 0 {
                prop_assert!((e.eta_seconds - 1) as f64 * rate < ahead as f64 + 1e-6);
            }
            prop_assert!(e.poll_after_ms >= MIN_POLL_MS);
            prop_assert!(e.poll_after_ms <= MAX_POLL_MS);
            prop_assert!(e.poll_after_ms <= (abandon * 1000 / 3).max(MIN_POLL_MS));
        }

        #[test]
        fn fans_further_back_never_poll_more_often_or_wait_less(
            ahead in 0u64..1_000_000,
            extra in 0u64..1_000_000,
            rate in 0.01f64..5_000.0,
            abandon in 1u64..86_400,
        ) {
            let front = estimate(ahead, rate, rate, abandon);
            let back = estimate(ahead + extra, rate, rate, abandon);
            prop_assert!(back.eta_seconds >= front.eta_seconds);
            prop_assert!(back.poll_after_ms >= front.poll_after_ms);
        }
    }
}
