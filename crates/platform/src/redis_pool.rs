//! The Redis Cluster connection pool of both services: a small deadpool
//! pool of multiplexed redis-rs cluster connections, and the time limits of
//! one call. queue-service runs its waiting-room scripts through it, and
//! core-service its coupon and ranking scripts.
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
use redis::{
    ClientTlsConfig, Cmd, FromRedisValue, Pipeline, RedisError, RedisFuture, RedisResult,
    TlsCertificates, Value,
    aio::ConnectionLike,
    cluster::{ClusterClient, ClusterClientBuilder},
    cluster_async::ClusterConnection,
};

use crate::settings::{ExposeSecret, RedisSettings};

/// Why a Redis call failed. Every variant means "Redis is unavailable" to
/// a client (503); the cause is for the log.
#[derive(Debug, thiserror::Error)]
pub enum RedisCallError {
    /// The Redis settings cannot make a pool (an unusable URL, unreadable
    /// TLS files).
    #[error("invalid redis settings: {0}")]
    Config(String),
    /// No pooled connection: connecting failed, or waiting for a free slot
    /// or connecting hit the pool's limits.
    #[error("no redis connection")]
    Pool(#[from] deadpool::managed::PoolError<RedisError>),
    /// A command or script failed: connection, cluster or script error.
    #[error("redis call failed")]
    Redis(#[from] RedisError),
    /// No connection within `redis.connect_timeout_ms`, or no reply within
    /// `redis.response_timeout_ms` (the duration says which).
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// Cluster-client retries of a command on MOVED/ASK or a lost node before
/// the call fails (redis-rs's default is 16, far beyond a request's
/// `response_timeout_ms`).
const CLUSTER_RETRIES: u32 = 2;

/// A cluster connection and whether a call through any clone of it failed
/// at the connection level.
pub struct Connection {
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

/// The pool and the limits every call obeys. Cheap to share behind an
/// `Arc`; every call takes `&self`.
pub struct RedisPool {
    pool: Pool<Manager>,
    /// Longest a checkout may take: waiting for a slot or connecting.
    checkout_timeout: Duration,
    /// Longest wait for the reply to one command or script.
    response_timeout: Duration,
    /// Histogram recording each checkout's wait, in seconds.
    checkout_metric: &'static str,
}

impl std::fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPool")
            .field("checkout_timeout", &self.checkout_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisPool {
    /// A pool of at most `settings.pool_size` connections to the cluster
    /// seeded by `settings.urls`. Does not connect. Each checkout's wait is
    /// recorded in the histogram named `checkout_metric` (seconds).
    ///
    /// # Errors
    /// [`RedisCallError::Config`] for unusable URLs or unreadable TLS files.
    pub fn new(
        settings: &RedisSettings,
        checkout_metric: &'static str,
    ) -> Result<Self, RedisCallError> {
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
                RedisCallError::Config(format!("reading the redis.tls files failed: {error}"))
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
            .map_err(|e| RedisCallError::Config(e.to_string()))?;
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
            .map_err(|e| RedisCallError::Config(e.to_string()))?;
        Ok(Self {
            pool,
            checkout_timeout: connect_timeout,
            response_timeout,
            checkout_metric,
        })
    }

    /// A handle on a pooled (or new) connection, recording the wait in the
    /// pool's checkout histogram.
    ///
    /// # Errors
    /// [`RedisCallError::Pool`] when connecting fails or a pool limit is hit,
    /// [`RedisCallError::Timeout`] after `redis.connect_timeout_ms`.
    pub async fn connection(&self) -> Result<Connection, RedisCallError> {
        let started = Instant::now();
        let pooled = tokio::time::timeout(self.checkout_timeout, self.pool.get())
            .await
            .map_err(|_| RedisCallError::Timeout(self.checkout_timeout))??;
        metrics::histogram!(self.checkout_metric).record(started.elapsed().as_secs_f64());
        // Dropping `pooled` hands the connection back to the pool.
        Ok(Connection::clone(&pooled))
    }

    /// Awaits `call` for at most `redis.response_timeout_ms`.
    ///
    /// # Errors
    /// [`RedisCallError::Redis`] when the call fails, [`RedisCallError::Timeout`]
    /// when it takes too long (it is then dropped, and redis-rs discards its
    /// reply).
    pub async fn bounded<T>(
        &self,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, RedisCallError> {
        tokio::time::timeout(self.response_timeout, call)
            .await
            .map_err(|_| RedisCallError::Timeout(self.response_timeout))?
            .map_err(RedisCallError::Redis)
    }

    /// Runs one script (`EVALSHA`, loading it on `NOSCRIPT`) on a pooled
    /// connection, within `redis.response_timeout_ms`.
    ///
    /// # Errors
    /// As [`connection`](Self::connection) and [`bounded`](Self::bounded).
    pub async fn run_script<T: FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, RedisCallError> {
        let mut connection = self.connection().await?;
        self.bounded(invocation.invoke_async(&mut connection)).await
    }

    /// Sends one command on a pooled connection and parses its reply.
    ///
    /// # Errors
    /// As [`connection`](Self::connection) and [`bounded`](Self::bounded).
    pub async fn query<T: FromRedisValue>(&self, command: &Cmd) -> Result<T, RedisCallError> {
        let mut connection = self.connection().await?;
        self.bounded(command.query_async(&mut connection)).await
    }
}
