//! Redis Cluster access: key layout, the Lua scripts and their replies.
//!
//! Each public call is one `EVALSHA` (falling back to `EVAL` once per node
//! after a restart) of one script, touching the keys of one event, which
//! share a hash tag and therefore one slot.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use platform::settings::RedisSettings;
use redis::{
    Script,
    cluster::{ClusterClient, ClusterClientBuilder},
    cluster_async::ClusterConnection,
};
use tokio::sync::Mutex;

use crate::{
    domain::{EventId, ExitReason, RoomConfig, RoomState, UserId},
    metrics,
};

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("lua/common.lua"),
            "\n",
            include_str!(concat!("lua/", $file))
        ))
    };
}

/// Fans one admission call may touch (expire, admit or drop, sweep). Sized
/// from SLOWLOG on the 2-core dev box so that a call stays well under 5 ms
/// with 300,000 fans waiting (see docs/benchmarks.md); more work is done by
/// calling again, letting other clients in between.
const ADMIT_BUDGET: u64 = 100;
/// Waiting fans checked for abandonment per call, even when admission used
/// the budget, so the sweep always progresses.
const MIN_SWEEP: u64 = 50;
/// Presence windows spanning the abandonment window (at most).
const PRESENCE_WINDOWS: u64 = 4;
/// After a failed connect, calls fail fast for this long instead of piling up
/// reconnect attempts against a dead cluster.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(250);

/// Redis failed or replied with something the scripts never send.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Connection, timeout, cluster or script error.
    #[error("redis call failed")]
    Redis(#[from] redis::RedisError),
    /// Not connected, and the last attempt failed moments ago.
    #[error("redis is unreachable; reconnecting")]
    Disconnected,
    /// A script reply of an unexpected shape.
    #[error("unexpected script reply: {0}")]
    Reply(String),
    /// The script call shared by several checks failed; the first check
    /// of the call carries the cause.
    #[error("the redis call shared with other checks failed")]
    SharedCallFailed,
}

struct Scripts {
    enter: Script,
    status: Script,
    leave: Script,
    release: Script,
    verify: Script,
    configure: Script,
    room: Script,
    admit: Script,
}

/// Handle on Redis Cluster; cheap to clone.
#[derive(Clone)]
pub(crate) struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

struct Inner {
    client: ClusterClient,
    /// The shared multiplexed connection. A plain lock held only to clone
    /// it: every request takes this path, so it must not queue on an async
    /// mutex.
    current: RwLock<Option<ClusterConnection>>,
    /// Serialises reconnect attempts; holds the time of the last failure.
    connecting: Mutex<Option<Instant>>,
    prefix: String,
    grain: u64,
    tick_ms: u64,
    scripts: Scripts,
}

/// What an entry or status call found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Place {
    /// In line.
    Waiting {
        /// Arrival number.
        seq: u64,
        /// Fans ahead.
        ahead: u64,
        /// Measured admission rate, fans per second.
        exit_rate: f64,
        /// The room's configured admission rate, fans per second.
        admit_per_second: f64,
        /// The room's abandonment window, seconds.
        abandon_after_seconds: u64,
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
    /// Waiting fans dropped for silence.
    pub abandoned: u64,
    /// Entries per second over the last 30 s.
    pub entry_rate: f64,
    /// Admissions per second over the last 30 s.
    pub exit_rate: f64,
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
    /// Waiting fans dropped as abandoned.
    pub abandoned: u64,
    /// Fans in line after the tick.
    pub waiting: u64,
    /// Active set size after the tick.
    pub active: u64,
    /// The call stopped at its budget with work left; call again.
    pub more: bool,
}

impl Store {
    /// Builds the cluster client. Connecting happens on first use and again
    /// after a connection failure, so the service recovers by itself when
    /// Redis comes back.
    ///
    /// # Errors
    /// [`StoreError::Redis`] for unusable URLs.
    pub(crate) fn new(
        settings: &RedisSettings,
        grain_seconds: u64,
        tick_ms: u64,
    ) -> Result<Self, StoreError> {
        let client = ClusterClientBuilder::new(settings.urls.clone())
            .connection_timeout(Duration::from_millis(settings.connect_timeout_ms))
            .response_timeout(Duration::from_millis(settings.response_timeout_ms))
            .retries(2)
            .build()?;
        let scripts = Scripts {
            enter: script!("enter.lua"),
            status: script!("status.lua"),
            leave: script!("leave.lua"),
            release: script!("release.lua"),
            verify: script!("verify.lua"),
            configure: script!("configure.lua"),
            room: script!("room.lua"),
            admit: script!("admit.lua"),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                current: RwLock::new(None),
                connecting: Mutex::new(None),
                prefix: settings.key_prefix.clone(),
                grain: grain_seconds,
                tick_ms,
                scripts,
            }),
        })
    }

    fn cached(&self) -> Option<ClusterConnection> {
        self.inner
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The cluster connection, (re)connecting when there is none.
    async fn connection(&self) -> Result<ClusterConnection, StoreError> {
        if let Some(connection) = self.cached() {
            return Ok(connection);
        }
        let mut last_failure = self.inner.connecting.lock().await;
        // Another request may have reconnected while this one waited.
        if let Some(connection) = self.cached() {
            return Ok(connection);
        }
        if last_failure.is_some_and(|at| at.elapsed() < RECONNECT_BACKOFF) {
            return Err(StoreError::Disconnected);
        }
        match self.inner.client.get_async_connection().await {
            Ok(connection) => {
                *self
                    .inner
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(connection.clone());
                *last_failure = None;
                tracing::info!("connected to redis cluster");
                Ok(connection)
            }
            Err(error) => {
                *last_failure = Some(Instant::now());
                Err(error.into())
            }
        }
    }

    fn forget_connection(&self) {
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    fn keys(&self, event: &EventId) -> [String; 9] {
        let tag = format!("{{{}evt:{}}}", self.inner.prefix, event.as_str());
        [
            "cfg", "waiting", "active", "sessions", "stats", "seq", "seen", "rates", "done",
        ]
        .map(|name| format!("{tag}:{name}"))
    }

    fn rooms_key(&self) -> String {
        format!("{{{}rooms}}", self.inner.prefix)
    }

    async fn run(
        &self,
        name: &'static str,
        script: &Script,
        event: &EventId,
        args: &[&str],
    ) -> Result<Vec<String>, StoreError> {
        let mut connection = self.connection().await?;
        let mut invocation = script.prepare_invoke();
        for key in self.keys(event) {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        let started = Instant::now();
        let result = invocation
            .invoke_async::<Vec<String>>(&mut connection)
            .await;
        metrics::script_duration(name, started.elapsed());
        result.map_err(|e| self.on_error(e))
    }

    fn on_error(&self, error: redis::RedisError) -> StoreError {
        // A dropped or refused connection is replaced on the next call; a
        // timeout alone is not a reason to reconnect.
        if error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_unrecoverable_error()
        {
            self.forget_connection();
        }
        StoreError::Redis(error)
    }

    /// Enters `user` into the line (idempotent).
    ///
    /// # Errors
    /// [`StoreError`] when Redis fails.
    pub(crate) async fn enter(&self, event: &EventId, user: &UserId) -> Result<Lookup, StoreError> {
        let reply = self
            .run("enter", &self.inner.scripts.enter, event, &[user.as_str()])
            .await?;
        parse_lookup(&reply)
    }

    /// Looks `user` up and records the poll as presence.
    ///
    /// # Errors
    /// [`StoreError`] when Redis fails.
    pub(crate) async fn status(
        &self,
        event: &EventId,
        user: &UserId,
    ) -> Result<Lookup, StoreError> {
        let reply = self
            .run(
                "status",
                &self.inner.scripts.status,
                event,
                &[user.as_str()],
            )
            .await?;
        parse_lookup(&reply)
    }

    /// Removes `user` from the line or the active set. Returns what the fan
    /// left: `Some(false)` the line, `Some(true)` an active slot, `None`
    /// nothing.
    ///
    /// # Errors
    /// [`StoreError`] when Redis fails.
    pub(crate) async fn leave(
        &self,
        event: &EventId,
        user: &UserId,
    ) -> Result<Option<bool>, StoreError> {
        let reply = self
            .run("leave", &self.inner.scripts.leave, event, &[user.as_str()])
            .await?;
        match first(&reply)? {
            "waiting" => Ok(Some(false)),
            "active" => Ok(Some(true)),
            "none" => Ok(None),
            other => Err(StoreError::Reply(other.to_owned())),
        }
    }

    /// Frees `user`'s active slot. Returns true when a live slot was freed.
    ///
    /// # Errors
    /// [`StoreError`] when Redis fails.
    pub(crate) async fn release(
        &self,
        event: &EventId,
        user: &UserId,
        reason: ExitReason,
    ) -> Result<bool, StoreError> {
        let reply = self
            .run(
                "release",
                &self.inner.scripts.release,
                event,
                &[user.as_str(), reason.as_str()],
            )
            .await?;
        match first(&reply)? {
            "released" => Ok(true),
            "expired" | "none" => Ok(false),
            other => Err(StoreError::Reply(other.to_owned())),
        }
    }

    /// Whether each session `(user, sid, accept_completed)` of `event` still
    /// holds an active slot, in one script. With `accept_completed`, a
    /// session released because its purchase completed answers
    /// [`SessionCheck::Completed`] instead of `Released`. One answer per
    /// session, in order.
    ///
    /// # Errors
    /// [`StoreError`] when Redis fails or answers out of shape.
    pub(crate) async fn verify_many(
        &self,
        event: &EventId,
        sessions: &[(&UserId, &str, bool)],
    ) -> Result<Vec<SessionCheck>, StoreError> {
        let args: Vec<&str> = sessions
            .iter()
            .flat_map(|(user, sid, accept_completed)| {
                [
                    user.as_str(),
                    sid,
                    if *accept_completed { "1" } else { "0" },
                ]
            })
            .collect();
        let reply = self
            .run("verify", &self.inner.scripts.verify, event, &args)
            .await?;
        if reply.len() != sessions.len() {
            return Err(StoreError::Reply(format!(
                "{} answers for {} sessions",
                reply.len(),
                sessions.len()
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

    /// Creates or updates a room and keeps the registry of rooms the
    /// admission loop serves. Returns true when the room was created.
    ///
    /// Two calls (the room's slot, then the registry's): the registry is a
    /// hint for the loop, and the room's own state is what admission obeys.
    ///
    /// # Errors
    /// [`StoreError`] when Redis fails.
    pub(crate) async fn configure(
        &self,
        event: &EventId,
        config: &RoomConfig,
    ) -> Result<bool, StoreError> {
        let args = [
            config.state.as_str().to_owned(),
            config.capacity.to_string(),
            config.admit_per_second.to_string(),
            config.access_ttl_seconds.to_string(),
            config.abandon_after_seconds.to_string(),
            presence_grain(self.inner.grain, config.abandon_after_seconds).to_string(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let reply = self
            .run("configure", &self.inner.scripts.configure, event, &args)
            .await?;
        let created = first(&reply)? == "created";
        let mut connection = self.connection().await?;
        let command = if config.state == RoomState::Closed {
            "SREM"
        } else {
            "SADD"
        };
        redis::cmd(command)
            .arg(self.rooms_key())
            .arg(event.as_str())
            .query_async::<i64>(&mut connection)
            .await
            .map_err(|e| self.on_error(e))?;
        Ok(created)
    }

    /// The room's settings and numbers, or `None` when it does not exist.
    ///
    /// # Errors
    /// [`StoreError`] when Redis fails.
    pub(crate) async fn room(&self, event: &EventId) -> Result<Option<RoomSnapshot>, StoreError> {
        let reply = self
            .run("room", &self.inner.scripts.room, event, &[])
            .await?;
        if first(&reply)? == "no_room" {
            return Ok(None);
        }
        if reply.len() != 18 {
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
                state,
            },
            waiting: n(6)?,
            active: n(7)?,
            entered: n(8)?,
            admitted: n(9)?,
            left_waiting: n(10)?,
            exited_left: n(11)?,
            exited_expired: n(12)?,
            exited_completed: n(13)?,
            exited_revoked: n(14)?,
            abandoned: n(15)?,
            entry_rate: float(&reply[16])?,
            exit_rate: float(&reply[17])?,
        }))
    }

    /// Event ids in the registry of open and paused rooms.
    ///
    /// # Errors
    /// [`StoreError`] when Redis fails.
    pub(crate) async fn rooms(&self) -> Result<Vec<EventId>, StoreError> {
        let mut connection = self.connection().await?;
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.rooms_key())
            .query_async(&mut connection)
            .await
            .map_err(|e| self.on_error(e))?;
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
        let mut connection = self.connection().await?;
        redis::cmd("SREM")
            .arg(self.rooms_key())
            .arg(event.as_str())
            .query_async::<i64>(&mut connection)
            .await
            .map_err(|e| self.on_error(e))?;
        Ok(())
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
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let reply = self
            .run("admit", &self.inner.scripts.admit, event, &args)
            .await?;
        if first(&reply)? == "no_room" {
            return Ok(TickReport {
                state: None,
                admitted: 0,
                expired: 0,
                abandoned: 0,
                waiting: 0,
                active: 0,
                more: false,
            });
        }
        if reply.len() != 8 {
            return Err(StoreError::Reply(format!(
                "admit reply has {} fields",
                reply.len()
            )));
        }
        Ok(TickReport {
            state: RoomState::from_stored(&reply[0]),
            admitted: num(&reply[1])?,
            expired: num(&reply[2])?,
            abandoned: num(&reply[3])?,
            waiting: num(&reply[4])?,
            active: num(&reply[5])?,
            more: reply[7] == "1",
        })
    }

    /// Whether every cluster master answers `PING`.
    pub(crate) async fn ping(&self) -> bool {
        let Ok(mut connection) = self.connection().await else {
            return false;
        };
        match redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
        {
            Ok(_) => true,
            Err(error) => {
                let _ = self.on_error(error);
                false
            }
        }
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

fn first(reply: &[String]) -> Result<&str, StoreError> {
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

fn parse_lookup(reply: &[String]) -> Result<Lookup, StoreError> {
    let bad = || StoreError::Reply(reply.join(","));
    match first(reply)? {
        "no_room" => Ok(Lookup::NoRoom),
        "closed" => Ok(Lookup::Closed),
        "paused" => Ok(Lookup::Paused),
        "gone" => Ok(Lookup::Gone),
        "active" if reply.len() == 4 => Ok(Lookup::Found {
            created: reply[1] == "1",
            place: Place::Active {
                sid: reply[2].clone(),
                expires_at_ms: num(&reply[3])?,
            },
        }),
        "waiting" if reply.len() == 7 => Ok(Lookup::Found {
            created: reply[1] == "1",
            place: Place::Waiting {
                seq: num(&reply[2])?,
                ahead: num(&reply[3])?,
                exit_rate: float(&reply[4])?,
                admit_per_second: float(&reply[5])?,
                abandon_after_seconds: num(&reply[6])?,
            },
        }),
        _ => Err(bad()),
    }
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
            parse_lookup(&strings(&["waiting", "1", "7", "6", "2.5", "50", "300"])).unwrap(),
            Lookup::Found {
                created: true,
                place: Place::Waiting {
                    seq: 7,
                    ahead: 6,
                    exit_rate: 2.5,
                    admit_per_second: 50.0,
                    abandon_after_seconds: 300
                }
            }
        );
        assert_eq!(
            parse_lookup(&strings(&["active", "0", "7", "1700000000000"])).unwrap(),
            Lookup::Found {
                created: false,
                place: Place::Active {
                    sid: "7".into(),
                    expires_at_ms: 1_700_000_000_000
                }
            }
        );
        assert_eq!(parse_lookup(&strings(&["paused"])).unwrap(), Lookup::Paused);
        assert!(parse_lookup(&strings(&["waiting", "1"])).is_err());
        assert!(parse_lookup(&[]).is_err());
    }

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

    #[test]
    fn every_key_of_an_event_shares_one_hash_tag() {
        let settings = RedisSettings {
            urls: vec!["redis://127.0.0.1:1".into()],
            pool_size: 1,
            connect_timeout_ms: 10,
            response_timeout_ms: 10,
            key_prefix: "t1:".into(),
        };
        let store = Store::new(&settings, 10, 200).unwrap();
        let keys = store.keys(&EventId::parse("perf-9").unwrap());
        for key in &keys {
            assert!(key.starts_with("{t1:evt:perf-9}:"), "{key}");
        }
    }
}
