//! The Postgres pool: sized explicitly, with an acquire timeout (requests
//! beyond it are shed with 503) and `statement_timeout` / `lock_timeout` set
//! on every pooled session as startup parameters (no extra round trip).
//!
//! TLS: `database.tls.mode` overrides the URL's `sslmode`, and
//! `database.tls.ca_file` is the root the server's chain must reach
//! (`sslrootcert`); sqlx speaks TLS through rustls on aws-lc-rs.

use std::{
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use platform::settings::PgTlsMode;
use platform::settings::{DatabaseSettings, ExposeSecret};
use sea_orm::{DatabaseConnection, SqlxPostgresConnector};
use sqlx::{
    PgPool, Postgres, Transaction,
    pool::PoolConnection,
    postgres::{PgConnectOptions, PgPoolOptions, PgSslMode},
};

/// The shared pool, as sqlx (hot paths) and as sea-orm (entities), plus
/// the number of requests waiting for a connection.
#[derive(Debug, Clone)]
pub struct Db {
    pool: PgPool,
    orm: DatabaseConnection,
    waiting: Arc<AtomicI64>,
}

/// The pool could not be configured.
#[derive(Debug, thiserror::Error)]
#[error("invalid database.url")]
pub struct DbConfigError(#[source] sqlx::Error);

impl Db {
    /// Builds the pool lazily: no connection is opened until the first
    /// request, so the service starts (and reports `/readyz` false) while the
    /// database is down, and recovers by itself when it returns.
    ///
    /// # Errors
    /// [`DbConfigError`] when the URL does not parse.
    pub fn connect_lazy(settings: &DatabaseSettings) -> Result<Self, DbConfigError> {
        let options = PgConnectOptions::from_str(settings.url.expose_secret())
            .map_err(DbConfigError)?
            .application_name("core-service")
            .options([
                (
                    "statement_timeout",
                    settings.statement_timeout_ms.to_string(),
                ),
                ("lock_timeout", settings.lock_timeout_ms.to_string()),
                // A crashed client never pins a row lock for long.
                (
                    "idle_in_transaction_session_timeout",
                    (settings.statement_timeout_ms * 4).to_string(),
                ),
            ]);
        let mut options = match settings.tls.mode {
            Some(mode) => options.ssl_mode(ssl_mode(mode)),
            None => options,
        };
        if let Some(ca) = &settings.tls.ca_file {
            options = options.ssl_root_cert(ca);
        }
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .min_connections(settings.min_connections)
            .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms))
            .idle_timeout(Some(Duration::from_secs(300)))
            // Connections are checked when handed out only if idle for a
            // while (sqlx pings on acquire by default; that is a round trip
            // per request on the hot path).
            .test_before_acquire(false)
            .connect_lazy_with(options);
        let orm = SqlxPostgresConnector::from_sqlx_postgres_pool(pool.clone());
        Ok(Self {
            pool,
            orm,
            waiting: Arc::new(AtomicI64::new(0)),
        })
    }

    /// The sqlx pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The same pool as a sea-orm connection.
    pub fn orm(&self) -> &DatabaseConnection {
        &self.orm
    }

    /// Starts a transaction, counting the wait in the pool's `waiting` gauge.
    ///
    /// # Errors
    /// `sqlx::Error::PoolTimedOut` past the acquire timeout; connection errors.
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let _waiting = WaitGuard::new(&self.waiting);
        self.pool.begin().await
    }

    /// Starts a transaction with `begin`, a simple-protocol `BEGIN; …`
    /// text sent in the same round trip as a plain `BEGIN` (for `SET LOCAL`
    /// settings that only this transaction needs). Counts the wait like
    /// [`Db::begin`].
    ///
    /// # Errors
    /// As [`Db::begin`]; `sqlx::Error::BeginFailed` when `begin` did not
    /// leave the session in a transaction.
    pub async fn begin_with(
        &self,
        begin: &'static str,
    ) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let _waiting = WaitGuard::new(&self.waiting);
        self.pool.begin_with(begin).await
    }

    /// Takes a connection for autocommit statements, counting the wait.
    ///
    /// # Errors
    /// As [`Db::begin`].
    pub async fn acquire(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        let _waiting = WaitGuard::new(&self.waiting);
        self.pool.acquire().await
    }

    /// Pool statistics: (connections in use, idle connections, requests
    /// waiting for one).
    pub fn stats(&self) -> (u32, usize, i64) {
        let size = self.pool.size();
        let idle = self.pool.num_idle();
        let in_use = size.saturating_sub(u32::try_from(idle).unwrap_or(u32::MAX));
        (in_use, idle, self.waiting.load(Ordering::Relaxed).max(0))
    }

    /// Requests are waiting for a connection because every connection the
    /// pool may open is in use (a wait while a connection is being opened,
    /// with room for more, is not saturation).
    pub fn saturated(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
            && self.pool.num_idle() == 0
            && self.pool.size() >= self.pool.options().get_max_connections()
    }

    /// `SELECT 1` within `timeout`: is the database reachable?
    pub async fn ping(&self, timeout: Duration) -> bool {
        let check = async {
            let mut conn = self.acquire().await?;
            sqlx::query("SELECT 1").execute(&mut *conn).await
        };
        matches!(tokio::time::timeout(timeout, check).await, Ok(Ok(_)))
    }
}

/// sqlx's name for `mode`.
fn ssl_mode(mode: PgTlsMode) -> PgSslMode {
    match mode {
        PgTlsMode::Disable => PgSslMode::Disable,
        PgTlsMode::Prefer => PgSslMode::Prefer,
        PgTlsMode::Require => PgSslMode::Require,
        PgTlsMode::VerifyCa => PgSslMode::VerifyCa,
        PgTlsMode::VerifyFull => PgSslMode::VerifyFull,
    }
}

struct WaitGuard<'a>(&'a AtomicI64);

impl<'a> WaitGuard<'a> {
    fn new(counter: &'a AtomicI64) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
