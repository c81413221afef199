//! The purchase limits a hold must stay within: an admission session
//! holds and buys at most the performance's `max_seats_per_order` seats in
//! all, a fan at most its `max_tickets_per_fan` across sessions.
//!
//! The check runs inside the hold's transaction, before the claim:
//! 1. `pg_advisory_xact_lock` on a hash of (fan, performance)
//!    ([`sql::HOLD_LOCK_FAN`]) serializes one fan's holds of one
//!    performance, and nobody else's: buyers never wait on each other;
//! 2. a statement of its own, so its snapshot sees every hold committed
//!    before the lock was granted, counts the seats of the session's and
//!    the fan's live holds (not lapsed) and purchases
//!    ([`sql::HOLD_FAN_SEATS`]) and reads the database's clock, which
//!    `held_until` is computed with, to cut the hold to the access token's
//!    expiry.
//!
//! The lock is released at commit or rollback. A release or an expiry
//! only lowers the counts, so it needs no lock: at worst a hold racing it
//! is refused.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{StoreError, holds::HoldRequest, sql, sqlstate};

/// Which purchase limit a hold would break, and what is left under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitExceeded {
    /// The admission session's live holds and purchases would exceed the
    /// performance's `max_seats_per_order`.
    Order {
        /// The limit, in seats.
        max: i32,
        /// Seats the session may still hold (0 or more).
        remaining: i32,
    },
    /// The fan's live holds and purchases of the performance, across
    /// sessions, would exceed its `max_tickets_per_fan`.
    Fan {
        /// The limit, in seats.
        max: i32,
        /// Seats the fan may still hold (0 or more).
        remaining: i32,
    },
}

/// The purchase limits of a performance that a hold is checked against,
/// in seats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most seats per admission session.
    pub per_session: i32,
    /// Most seats per fan.
    pub per_fan: i32,
}

impl Limits {
    /// The limit `requested` more seats would break, given the seats the
    /// session and the fan already hold or bought; the session's first.
    pub fn exceeded_by(
        self,
        requested: i64,
        session_seats: i64,
        fan_seats: i64,
    ) -> Option<LimitExceeded> {
        let left = |max: i32, used: i64| i32::try_from((i64::from(max) - used).max(0)).unwrap_or(0);
        if session_seats + requested > i64::from(self.per_session) {
            return Some(LimitExceeded::Order {
                max: self.per_session,
                remaining: left(self.per_session, session_seats),
            });
        }
        if fan_seats + requested > i64::from(self.per_fan) {
            return Some(LimitExceeded::Fan {
                max: self.per_fan,
                remaining: left(self.per_fan, fan_seats),
            });
        }
        None
    }
}

/// What the check found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Checked {
    /// Within both limits: hold for this many seconds (the TTL, cut to
    /// what is left of the access token).
    Within {
        /// The hold's length, in seconds.
        seconds: f64,
    },
    /// A limit would be broken.
    Exceeded(LimitExceeded),
    /// The access token has expired by the database's clock.
    AccessExpired,
}

/// Takes the fan's lock for the performance on `tx` (the transaction the
/// hold then continues) and checks `hold` against its limits, as the
/// module docs say.
///
/// # Errors
/// [`StoreError::HoldInProgress`] when the fan's other holds of the
/// performance keep the lock past `lock_timeout`; database errors.
pub async fn check(
    tx: &mut sqlx::PgConnection,
    hold: &HoldRequest<'_>,
) -> Result<Checked, StoreError> {
    sqlx::query(sql::HOLD_LOCK_FAN)
        .bind(hold.user.as_str())
        .bind(hold.performance.get())
        .execute(&mut *tx)
        .await
        .map_err(|error| match sqlstate(&error).as_deref() {
            // lock_not_available: the fan's other holds keep the lock.
            Some("55P03") => StoreError::HoldInProgress,
            _ => error.into(),
        })?;
    let counted = sqlx::query(sql::HOLD_FAN_SEATS)
        .bind(hold.user.as_str())
        .bind(hold.performance.get())
        .bind(hold.session_id)
        .fetch_one(&mut *tx)
        .await?;
    let now: DateTime<Utc> = counted.try_get("now")?;
    let session_seats: i64 = counted.try_get("session_seats")?;
    let fan_seats: i64 = counted.try_get("fan_seats")?;
    if let Some(exceeded) =
        hold.limits
            .exceeded_by(hold.seats.len() as i64, session_seats, fan_seats)
    {
        return Ok(Checked::Exceeded(exceeded));
    }
    let left = (hold.access_expires_at - now).as_seconds_f64();
    if left <= 0.0 {
        return Ok(Checked::AccessExpired);
    }
    Ok(Checked::Within {
        seconds: hold.ttl.as_secs_f64().min(left),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        per_session: 4,
        per_fan: 6,
    };

    #[test]
    fn a_hold_within_both_limits_passes() {
        assert_eq!(LIMITS.exceeded_by(4, 0, 0), None);
        assert_eq!(LIMITS.exceeded_by(2, 2, 4), None);
    }

    #[test]
    fn the_session_limit_is_checked_first_and_reports_what_is_left() {
        assert_eq!(
            LIMITS.exceeded_by(3, 2, 6),
            Some(LimitExceeded::Order {
                max: 4,
                remaining: 2
            })
        );
    }

    #[test]
    fn the_fan_limit_counts_every_session_and_never_reports_a_negative_remainder() {
        assert_eq!(
            LIMITS.exceeded_by(1, 0, 6),
            Some(LimitExceeded::Fan {
                max: 6,
                remaining: 0
            })
        );
        assert_eq!(
            LIMITS.exceeded_by(1, 0, 9),
            Some(LimitExceeded::Fan {
                max: 6,
                remaining: 0
            })
        );
    }
}
