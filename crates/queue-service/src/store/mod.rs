//! Redis Cluster access: the connection pool, one call per Lua script, and
//! the scripts' replies.
//!
//! Each script call is one `EVALSHA` (falling back to `EVAL` once per node
//! after a restart) of one script, touching the keys of one event, which
//! share a hash tag and therefore one slot (see [`crate::layout`]).
//!
//! - `pool`: the deadpool-redis cluster pool and the time limits of a call.
//! - `line`: entering, polling and leaving the line.
//! - `sessions`: checking and releasing access sessions.
//! - `rooms`: room settings, the registry of rooms, and admission ticks.
//! - `reply`: what the scripts answer, parsed into typed results.

mod line;
mod pool;
mod reply;
mod rooms;
mod sessions;

use std::{sync::Arc, time::Instant};

use platform::settings::RedisSettings;
use redis::Script;

pub use reply::RoomSnapshot;
pub(crate) use reply::{Lookup, Place, SessionCheck, TickReport};

use crate::{domain::EventId, layout, metrics};

/// Redis failed, took too long, or replied with something the scripts never
/// send. Every variant becomes a 503 (problem code `unavailable`) or gRPC
/// `UNAVAILABLE`; the cause is logged, never shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The Redis settings cannot make a pool (an unusable URL).
    #[error("invalid redis settings: {0}")]
    Config(String),
    /// No pooled connection: connecting failed, or waiting for a free slot
    /// or connecting hit the pool's limits.
    #[error("no redis connection")]
    Pool(#[from] deadpool::managed::PoolError<redis::RedisError>),
    /// A command or script failed: connection, cluster or script error.
    #[error("redis call failed")]
    Redis(#[from] redis::RedisError),
    /// No connection within `redis.connect_timeout_ms`, or no reply within
    /// `redis.response_timeout_ms` (the duration says which).
    #[error("redis did not answer within {0:?}")]
    Timeout(std::time::Duration),
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
    redis: pool::Redis,
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
    /// [`StoreError::Config`] for unusable URLs.
    pub(crate) fn new(
        settings: &RedisSettings,
        grain_seconds: u64,
        tick_ms: u64,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            inner: Arc::new(Inner {
                redis: pool::Redis::new(settings)?,
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
        let redis = &self.inner.redis;
        let mut connection = redis.connection().await?;
        let started = Instant::now();
        let result = redis
            .bounded(invocation.invoke_async::<Vec<String>>(&mut connection))
            .await;
        metrics::script_duration(name, started.elapsed());
        result
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
