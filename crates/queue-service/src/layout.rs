//! The Redis key layout of the waiting room and the Lua sources that run on
//! it, public so that the load-test tool drives Redis with exactly the
//! service's keys and scripts (its raw baseline must run the same work).
//!
//! Every key of one event shares the hash tag `{<prefix>evt:<event>}`, so a
//! script touches one cluster slot; the room index `{<prefix>rooms}` lives
//! in a slot of its own.

use crate::domain::EventId;

/// Names of an event's keys, in the order every script expects them as
/// `KEYS[1..=11]` (see `lua/common.lua`).
pub const EVENT_KEY_NAMES: [&str; 11] = [
    "cfg",
    "waiting",
    "active",
    "sessions",
    "stats",
    "seq",
    "seen",
    "rates",
    "done",
    "unclaimed",
    "pre",
];

/// The keys of one event, in [`EVENT_KEY_NAMES`] order, e.g.
/// `{t1:evt:perf-9}:waiting` for prefix `t1:` and event `perf-9`.
#[must_use]
pub fn event_keys(prefix: &str, event: &EventId) -> [String; 11] {
    let tag = format!("{{{prefix}evt:{}}}", event.as_str());
    EVENT_KEY_NAMES.map(|name| format!("{tag}:{name}"))
}

/// The index of every configured room (one key, its own slot).
#[must_use]
pub fn rooms_key(prefix: &str) -> String {
    format!("{{{prefix}rooms}}")
}

/// Lua sources. Each script is run as the three parts of the prelude
/// ([`PRELUDE`], [`ADMISSION_RATE`], [`REPLIES`]), each followed by a
/// newline, then its own body; [`script_source`] joins them.
pub mod lua {
    /// Helpers shared by every script (key unpacking, presence, rates).
    pub const PRELUDE: &str = include_str!("lua/common.lua");
    /// The booking core's last report and the admission rate (AIMD, slow
    /// start).
    pub const ADMISSION_RATE: &str = include_str!("lua/admission_rate.lua");
    /// The replies entry and status share.
    pub const REPLIES: &str = include_str!("lua/replies.lua");
    /// Enter the line (or return the existing place).
    pub const ENTER: &str = include_str!("lua/enter.lua");
    /// A fan's status: position, fans ahead, admission.
    pub const STATUS: &str = include_str!("lua/status.lua");
    /// Leave the line or the active set.
    pub const LEAVE: &str = include_str!("lua/leave.lua");
    /// Release an admission after a purchase (or revoke it).
    pub const RELEASE: &str = include_str!("lua/release.lua");
    /// Check that access sessions are still live (argument triples).
    pub const VERIFY: &str = include_str!("lua/verify.lua");
    /// Create or change a room.
    pub const CONFIGURE: &str = include_str!("lua/configure.lua");
    /// Read a room's configuration and counters.
    pub const ROOM: &str = include_str!("lua/room.lua");
    /// One admission tick: expire, admit, drop, sweep.
    pub const ADMIT: &str = include_str!("lua/admit.lua");
    /// Record the booking core's inventory report.
    pub const INVENTORY: &str = include_str!("lua/inventory.lua");
}

/// The full text of a script as the service runs it: the prelude's three
/// parts, each with a newline, then `body` (one of the [`lua`] constants).
#[must_use]
pub fn script_source(body: &str) -> String {
    format!(
        "{}\n{}\n{}\n{body}",
        lua::PRELUDE,
        lua::ADMISSION_RATE,
        lua::REPLIES
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_an_event_shares_one_hash_tag() {
        let event = EventId::parse("perf-9").unwrap();
        for key in event_keys("t1:", &event) {
            assert!(key.starts_with("{t1:evt:perf-9}:"), "{key}");
        }
        assert_eq!(rooms_key("t1:"), "{t1:rooms}");
    }
}
