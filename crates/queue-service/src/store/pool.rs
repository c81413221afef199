//! The connection pool: a small deadpool pool of multiplexed redis-rs
//! cluster connections, and the time limits of one call.
//!
//! A call clones the handle it gets and gives the pooled connection back at
//! once. The connection is multiplexed, so concurrent calls pipeline on it;
//! the pool spreads calls over `redis.pool_size` connections (more sockets
//! per node, and more Tokio tasks driving them), and a pool slot is held
//! only for the hand-out itself.
//!
//! **Why our own deadpool manager, not deadpool-redis's.** deadpool-redis
//! 0.23's cluster manager checks a pooled connection with a `PING` to every
//! master each time it hands it out, and cannot be told not to: every
//! script call then cost a round trip and three extra commands, and the
//! benchmark measured entry at 0.29× and status at 0.25× of
//! redis-benchmark against 0.56× and 0.52× before (`docs/benchmarks.md`).
//! It also builds the cluster client with redis-rs's defaults (no response
//! timeout, 16 retries), ignoring ours. This manager builds the client from
//! our settings, hands connections out without a check, and recycles a
//! connection once a call through it failed at the connection level
//! (I/O, dropped, refused): the pool then drops it and connects afresh, so
//! the service heals by itself when Redis returns.
//!
//! **TLS.** `rediss://` URLs connect over rustls, trusting
//! `redis.tls.ca_file` (else the system's roots) and presenting the client
//! certificate of `redis.tls.cert_file`/`key_file` when set; the host name
//! of every node is checked against its certificate.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use deadpool::managed::{self, Metrics, Pool, PoolConfig, QueueMode, RecycleResult, Timeouts};
use platform::settings::{ExposeSecret, RedisSettings};
use redis::{
    ClientTlsConfig, Cmd, FromRedisValue, Pipeline, RedisError, RedisFuture, RedisResult,
    TlsCertificates, Value,
    aio::ConnectionLike,
    cluster::{ClusterClient, ClusterClientBuilder},
    cluster_async::ClusterConnection,
};

use super::StoreError;
use crate::metrics;

/// Cluster-client retries of a command on MOVED/ASK or a lost node before
/// the call fails (redis-rs's default is 16, far beyond a request's
/// `response_timeout_ms`).
const CLUSTER_RETRIES: u32 = 2;

/// A cluster connection and whether a call through any clone of it failed
/// at the connection level.
pub(super) struct Connection {
    inner: ClusterConnection,
    broken: Arc<AtomicBool>,
}

impl Clone for Connection {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            broken: Arc::clone(&self.broken),
        }
    }
}

impl Connection {
    fn observe<T>(&self, result: &RedisResult<T>) {
        if let Err(error) = result
            && (error.is_io_error()
                || error.is_connection_dropped()
                || error.is_connection_refusal()
                || error.is_unrecoverable_error())
        {
            self.broken.store(true, Ordering::Relaxed);
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let result = self.inner.req_packed_command(cmd).await;
            self.observe(&result);
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let result = self.inner.req_packed_commands(cmd, offset, count).await;
            self.observe(&result);
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

/// Creates cluster connections from our client; recycles only sound ones.
struct Manager {
    client: ClusterClient,
}

impl managed::Manager for Manager {
    type Type = Connection;
    type Error = RedisError;

    async fn create(&self) -> Result<Connection, RedisError> {
        Ok(Connection {
            inner: self.client.get_async_connection().await?,
            broken: Arc::default(),
        })
    }

    async fn recycle(&self, connection: &mut Connection, _: &Metrics) -> RecycleResult<RedisError> {
        if connection.broken.load(Ordering::Relaxed) {
            Err(managed::RecycleError::message(
                "a call on this connection failed at the connection level",
            ))
        } else {
            Ok(())
        }
    }
}

/// The pool and the limits every call obeys.
pub(super) struct Redis {
    pool: Pool<Manager>,
    /// Longest a checkout may take: waiting for a slot or connecting.
    checkout_timeout: Duration,
    /// Longest wait for the reply to one command or script.
    response_timeout: Duration,
}

impl Redis {
    /// A pool of at most `settings.pool_size` connections to the cluster
    /// seeded by `settings.urls`. Does not connect.
    ///
    /// # Errors
    /// [`StoreError::Config`] for unusable URLs or unreadable TLS files.
    pub(super) fn new(settings: &RedisSettings) -> Result<Self, StoreError> {
        let connect_timeout = Duration::from_millis(settings.connect_timeout_ms);
        let response_timeout = Duration::from_millis(settings.response_timeout_ms);
        let urls = settings
            .urls
            .iter()
            .map(|url| url.expose_secret().to_owned());
        let mut builder = ClusterClientBuilder::new(urls)
            .connection_timeout(connect_timeout)
            .response_timeout(response_timeout)
            .retries(CLUSTER_RETRIES);
        if settings.uses_tls() {
            let unreadable = |error: std::io::Error| {
                StoreError::Config(format!("reading the redis.tls files failed: {error}"))
            };
            let root_cert = settings.tls.read_ca().map_err(unreadable)?;
            let client_tls = (settings.tls.read_identity().map_err(unreadable)?).map(
                |(client_cert, client_key)| ClientTlsConfig {
                    client_cert,
                    client_key,
                },
            );
            builder = builder.certs(TlsCertificates {
                client_tls,
                root_cert,
            });
        }
        // redis-rs's URL errors do not repeat the URL (which may hold the
        // AUTH token).
        let client = builder
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        let config = PoolConfig {
            max_size: settings.pool_size,
            timeouts: Timeouts {
                // Every slot busy for a whole reply's time: shed the call.
                wait: Some(response_timeout),
                create: Some(connect_timeout),
                recycle: Some(response_timeout),
            },
            // Oldest first, so calls spread over the connections (and the
            // Tokio workers driving them).
            queue_mode: QueueMode::Fifo,
        };
        let pool = Pool::builder(Manager { client })
            .config(config)
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        Ok(Self {
            pool,
            checkout_timeout: connect_timeout,
            response_timeout,
        })
    }

    /// A handle on a pooled (or new) connection, recording the wait as
    /// `queue_redis_checkout_duration_seconds`.
    ///
    /// # Errors
    /// [`StoreError::Pool`] when connecting fails or a pool limit is hit,
    /// [`StoreError::Timeout`] after `redis.connect_timeout_ms`.
    pub(super) async fn connection(&self) -> Result<Connection, StoreError> {
        let started = Instant::now();
        let pooled = tokio::time::timeout(self.checkout_timeout, self.pool.get())
            .await
            .map_err(|_| StoreError::Timeout(self.checkout_timeout))??;
        metrics::checkout_duration(started.elapsed());
        // Dropping `pooled` hands the connection back to the pool.
        Ok(Connection::clone(&pooled))
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
