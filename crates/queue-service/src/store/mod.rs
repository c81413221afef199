//! Redis Cluster access: the connection pool, one call per Lua script, and
//! the scripts' replies.
//!
//! Each script call is one `EVALSHA` (falling back to `EVAL` once per node
//! after a restart) of one script, touching the keys of one event, which
//! share a hash tag and therefore one slot (see [`crate::layout`]).
//!
//! - `line`: entering, polling and leaving the line.
//! - `sessions`: checking and releasing access sessions.
//! - `rooms`: room settings, the registry of rooms, and admission ticks.
//! - `reply`: what the scripts answer, parsed into typed results.

mod line;
mod reply;
mod rooms;
mod sessions;

use std::{sync::Arc, time::Instant};

use platform::settings::RedisSettings;
use redis::Script;

pub use reply::RoomSnapshot;
pub(crate) use reply::{Configured, Lookup, Place, RateControl, SessionCheck, TickReport};

use platform::redis_pool::{RedisCallError, RedisPool};

use crate::{domain::EventId, layout, metrics};

/// Redis failed, took too long, or replied with something the scripts never
/// send. Every variant becomes a 503 (problem code `unavailable`) or gRPC
/// `UNAVAILABLE`; the cause is logged, never shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The pool could not be made, or the call failed or timed out
    /// ([`platform::redis_pool::RedisCallError`] says which).
    #[error(transparent)]
    Call(#[from] RedisCallError),
    /// A script reply of an unexpected shape.
    #[error("unexpected script reply: {0}")]
    Reply(String),
    /// The script call shared by several checks failed; the first check
    /// of the call carries the cause.
    #[error("the redis call shared with other checks failed")]
    SharedCallFailed,
}

/// The scripts, each the prelude followed by its body; `Script` keeps the
/// SHA1 for `EVALSHA`.
struct Scripts {
    enter: Script,
    status: Script,
    leave: Script,
    release: Script,
    verify: Script,
    configure: Script,
    room: Script,
    admit: Script,
    inventory: Script,
}

impl Scripts {
    fn new() -> Self {
        let script = |body: &str| Script::new(&layout::script_source(body));
        Self {
            enter: script(layout::lua::ENTER),
            status: script(layout::lua::STATUS),
            leave: script(layout::lua::LEAVE),
            release: script(layout::lua::RELEASE),
            verify: script(layout::lua::VERIFY),
            configure: script(layout::lua::CONFIGURE),
            room: script(layout::lua::ROOM),
            admit: script(layout::lua::ADMIT),
            inventory: script(layout::lua::INVENTORY),
        }
    }
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
    redis: RedisPool,
    /// Put before every key (`redis.key_prefix`).
    prefix: String,
    /// Minimum presence window, seconds.
    grain: u64,
    /// Admission tick, ms.
    tick_ms: u64,
    scripts: Scripts,
}

impl Store {
    /// Builds the connection pool. Connecting happens on first use, and a
    /// broken connection is replaced when the pool next hands it out, so
    /// the service recovers by itself when Redis comes back.
    ///
    /// `grain_seconds` is the minimum presence window
    /// (`queue.presence_granularity_seconds`), `tick_ms` the admission tick.
    ///
    /// # Errors
    /// [`StoreError::Call`] for unusable URLs.
    pub(crate) fn new(
        settings: &RedisSettings,
        grain_seconds: u64,
        tick_ms: u64,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            inner: Arc::new(Inner {
                redis: RedisPool::new(settings, metrics::REDIS_CHECKOUT_SECONDS)?,
                prefix: settings.key_prefix.clone(),
                grain: grain_seconds,
                tick_ms,
                scripts: Scripts::new(),
            }),
        })
    }

    fn scripts(&self) -> &Scripts {
        &self.inner.scripts
    }

    fn rooms_key(&self) -> String {
        layout::rooms_key(&self.inner.prefix)
    }

    /// Runs `script` on `event`'s keys with `args`, recording the round
    /// trip as `queue_redis_script_duration_seconds{script = name}`.
    async fn run(
        &self,
        name: &'static str,
        script: &Script,
        event: &EventId,
        args: &[&str],
    ) -> Result<Vec<String>, StoreError> {
        let mut invocation = script.prepare_invoke();
        for key in layout::event_keys(&self.inner.prefix, event) {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        let started = Instant::now();
        let result = self
            .inner
            .redis
            .run_script::<Vec<String>>(&invocation)
            .await;
        metrics::script_duration(name, started.elapsed());
        Ok(result?)
    }

    /// Whether every cluster master answers `PING`.
    pub(crate) async fn ping(&self) -> bool {
        self.inner
            .redis
            .query::<String>(&redis::cmd("PING"))
            .await
            .is_ok()
    }
}
