//! The connection pool: deadpool-redis's cluster pool of multiplexed
//! redis-rs cluster connections, and the time limits of one call.
//!
//! The pool connects on first use, checks a pooled connection with `PING`
//! (to every master) each time it hands it out, and replaces one that fails
//! the check, so a connection broken by a Redis restart is dropped and the
//! next call connects afresh.
//!
//! A call clones the handle it gets and gives the pooled connection back at
//! once. The connection is multiplexed, so concurrent calls pipeline on it;
//! a pool slot is held only while the pool checks or creates a connection,
//! and `redis.pool_size` bounds those checkouts in flight, not calls.
//!
//! deadpool-redis builds the cluster client itself, with redis-rs's
//! defaults: no response timeout, 16 retries with backoff, 1 s per node
//! connect. So the limits are applied here: a checkout takes at most
//! `redis.connect_timeout_ms` and a reply at most
//! `redis.response_timeout_ms`, and a slow or dead shard fails fast.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use deadpool_redis::cluster::{
    ClusterConnection, Config, Pool, PoolConfig, QueueMode, Runtime, Timeouts,
};
use platform::settings::RedisSettings;
use redis::{Cmd, FromRedisValue, RedisResult};

use super::StoreError;
use crate::metrics;

/// The pool and the limits every call obeys.
pub(super) struct Redis {
    pool: Pool,
    /// Longest a checkout may take: waiting for a slot, checking pooled
    /// connections (several, if they fail one after another), connecting.
    checkout_timeout: Duration,
    /// Longest wait for the reply to one command or script.
    response_timeout: Duration,
}

impl Redis {
    /// A pool of at most `settings.pool_size` connections to the cluster
    /// seeded by `settings.urls`. Does not connect.
    ///
    /// # Errors
    /// [`StoreError::Config`] for unusable URLs.
    pub(super) fn new(settings: &RedisSettings) -> Result<Self, StoreError> {
        let connect_timeout = Duration::from_millis(settings.connect_timeout_ms);
        let response_timeout = Duration::from_millis(settings.response_timeout_ms);
        let mut config = Config::from_urls(settings.urls.clone());
        config.pool = Some(PoolConfig {
            max_size: settings.pool_size,
            timeouts: Timeouts {
                // Every slot busy for a whole reply's time: shed the call.
                wait: Some(response_timeout),
                create: Some(connect_timeout),
                // A check that hangs discards that connection; the pool then
                // tries the next one or connects.
                recycle: Some(response_timeout),
            },
            // Oldest first, so calls spread over the connections (and the
            // Tokio workers driving them).
            queue_mode: QueueMode::Fifo,
        });
        let pool = config
            .create_pool(Some(Runtime::Tokio1))
            .map_err(StoreError::Config)?;
        Ok(Self {
            pool,
            checkout_timeout: connect_timeout,
            response_timeout,
        })
    }

    /// A handle on a checked or new pooled connection, recording the wait
    /// as `queue_redis_checkout_duration_seconds`.
    ///
    /// # Errors
    /// [`StoreError::Pool`] when connecting fails or a pool limit is hit,
    /// [`StoreError::Timeout`] after `redis.connect_timeout_ms`.
    pub(super) async fn connection(&self) -> Result<ClusterConnection, StoreError> {
        let started = Instant::now();
        let pooled = tokio::time::timeout(self.checkout_timeout, self.pool.get())
            .await
            .map_err(|_| StoreError::Timeout(self.checkout_timeout))??;
        metrics::checkout_duration(started.elapsed());
        // Dropping `pooled` hands the connection back to the pool.
        Ok(ClusterConnection::clone(&pooled))
    }

    /// Awaits `call` for at most `redis.response_timeout_ms`.
    ///
    /// # Errors
    /// [`StoreError::Redis`] when the call fails, [`StoreError::Timeout`]
    /// when it takes too long (it is then dropped, and redis-rs discards its
    /// reply).
    pub(super) async fn bounded<T>(
        &self,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.response_timeout, call)
            .await
            .map_err(|_| StoreError::Timeout(self.response_timeout))?
            .map_err(StoreError::Redis)
    }

    /// Sends one command on a pooled connection and parses its reply.
    ///
    /// # Errors
    /// As [`connection`](Self::connection) and [`bounded`](Self::bounded).
    pub(super) async fn query<T: FromRedisValue>(&self, command: &Cmd) -> Result<T, StoreError> {
        let mut connection = self.connection().await?;
        self.bounded(command.query_async(&mut connection)).await
    }
}
