//! core-service: the booking core of onsale. Concerts, performances and
//! seats; seat holds that never double-sell; idempotent payments from a
//! prepaid KRW balance; and a transactional outbox, all on Postgres.
//!
//! Start it like `main` does, or like the tests do:
//! ```no_run
//! # async fn start() -> anyhow::Result<()> {
//! let settings = core_service::Settings::load()?;
//! let app = core_service::build(settings).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let shutdown = platform::shutdown::CancellationToken::new();
//! core_service::run(app, listener, shutdown).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! Requests flow transport → booking layer → store → SQL:
//! - [`http`]: routes (fan routes behind the identity token and the
//!   per-fan rate limit of [`platform::identity::protect`], the catalog
//!   rate-limited per client address, admin routes behind
//!   [`platform::auth::AdminKey`], the standard layers of
//!   [`platform::router`]), handlers that parse HTTP input and shape
//!   answers, and the OpenAPI document.
//! - [`api`]: the JSON request and response bodies.
//! - [`booking`]: the transport-free booking layer, [`booking::Booking`]:
//!   the hold, release and payment rules, the access checks, concert
//!   validation, best-available holds and the sale-rule cache. Fails with
//!   [`booking::BookingError`].
//! - [`seatmap`]: seat maps built for a spike, [`seatmap::SeatMaps`]: the
//!   static layout, availability snapshots rebuilt single-flight at most
//!   once per interval, precompressed bodies with entity tags, deltas, and
//!   the best-available rule.
//! - [`store`]: the transactions (holds within their purchase limits,
//!   payments, balances, catalog, admin) and the SQL text of the hot paths
//!   ([`store::sql`]). Answers
//!   with outcome types and [`store::StoreError`] (database faults
//!   classified as shed / unavailable / internal, and the rules its
//!   transactions enforce).
//! - [`error`]: [`error::ApiError`], the one place where booking, store and
//!   queue errors get their status and problem code.
//! - [`domain`]: newtypes parsed once (`UserId`, `Krw`, ids, keys).
//! - [`coupons`]: first-come coupons, [`coupons::Coupons`]: the Redis
//!   gate (claim, compensation and repair scripts), the exact Postgres
//!   record and the reconciliation job; fails with
//!   [`coupons::CouponError`].
//! - [`ranking`]: the popular-concert ranking, [`ranking::Ranking`]: a
//!   `payment.completed` consumer into Redis sorted sets per time bucket,
//!   Postgres snapshots, and the stale fallback while Redis is down.
//! - [`queue`]: the waiting room's gRPC client (token verification, with
//!   concurrent checks coalesced into `VerifyAccessBatch` calls, and the
//!   release of a paid session right after its payment), failing with
//!   [`queue::QueueError`].
//! - [`settings`]: typed configuration (`[database]`, `[kafka]`,
//!   `[identity]`, `[telemetry]`, `[core]`) from embedded TOML and
//!   `ONSALE__…` variables; `[redis]`, `[coupons]` and `[ranking]` for
//!   the coupons and the ranking.
//! - [`db`]: the explicitly sized pool with per-session timeouts.
//! - [`health`]: hold and payment p95 and pool saturation per report
//!   period, which the waiting room's admission rate follows.
//! - [`migration`]: the schema (sea-orm-migration) and its invariants.
//! - [`entities`]: sea-orm entities for the catalog and balances.
//! - [`outbox`]: event envelopes written with the business change.
//! - [`workers`]: outbox relay, expiry consumer, hold sweeper, inventory
//!   reporter.
//! - [`metrics`]: business, outbox and pool metrics.
//! - [`seed`]: dev-only demo data.

pub mod api;
pub mod booking;
pub mod coupons;
pub mod db;
pub mod domain;
pub mod entities;
pub mod error;
pub mod health;
pub mod http;
pub mod metrics;
pub mod migration;
pub mod outbox;
pub mod queue;
pub mod ranking;
pub mod seatmap;
pub mod seed;
pub mod settings;
pub mod store;
pub mod workers;

use std::{sync::Arc, time::Duration};

use platform::shutdown::CancellationToken;
use sea_orm_migration::MigratorTrait;

pub use settings::Settings;

/// A built service: pool and gRPC channel ready, not listening yet.
#[derive(Debug)]
pub struct App {
    state: http::AppState,
    shutdown_deadline: Duration,
    kafka: platform::settings::KafkaSettings,
    producer: events::producer::Producer,
}

impl App {
    /// The database handle (for tests and the `migrate`/`seed` commands).
    pub fn db(&self) -> &db::Db {
        self.state.booking.db()
    }
}

/// Why the service could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Settings break a rule.
    #[error("invalid settings")]
    Settings(#[from] platform::settings::SettingsError),
    /// The database URL is malformed.
    #[error("database configuration")]
    Database(#[from] db::DbConfigError),
    /// The Redis settings cannot make a pool.
    #[error("redis configuration")]
    Redis(#[from] platform::redis_pool::RedisCallError),
    /// The queue-service URL is malformed.
    #[error("queue-service configuration")]
    Queue(#[from] queue::QueueConfigError),
    /// The Kafka client could not be created.
    #[error("kafka configuration")]
    Kafka(#[from] events::producer::ProduceError),
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Accepting or serving connections failed.
    #[error("serving HTTP failed")]
    Io(#[from] std::io::Error),
}

/// Validates `settings` and prepares the pool (lazy: the service starts
/// while the database is down and reports `/readyz` false) and the
/// queue-service channel. Installs the process-wide metrics recorder.
///
/// # Errors
/// [`StartupError`] for invalid settings or malformed URLs.
pub async fn build(settings: Settings) -> Result<App, StartupError> {
    settings.validate()?;
    platform::settings::warn_plaintext(settings.environment, settings.plaintext());
    platform::tls::install_crypto_provider();
    let db = db::Db::connect_lazy(&settings.database)?;
    let queue = queue::QueueClient::connect_lazy(
        &settings.core.queue_grpc_url,
        &settings.grpc.tls,
        Duration::from_millis(settings.core.queue_timeout_ms),
        settings.core.queue_service_key.clone(),
    )?;
    let redis = Arc::new(platform::redis_pool::RedisPool::new(
        &settings.redis,
        metrics::REDIS_CHECKOUT_SECONDS,
    )?);
    let state = http::AppState {
        coupons: coupons::Coupons::new(
            db.clone(),
            Arc::clone(&redis),
            settings.redis.key_prefix.clone(),
            settings.coupons.clone(),
        ),
        ranking: ranking::Ranking::new(
            db.clone(),
            Arc::clone(&redis),
            settings.redis.key_prefix.clone(),
            settings.ranking.clone(),
        ),
        booking: booking::Booking::new(db, queue, Arc::new(settings.core.clone())),
        admin_key: http::admin_key(&settings.core),
        identity: platform::identity::IdentityVerifier::new(settings.identity.clone())?,
        limiter: platform::ratelimit::RateLimiter::new(&settings.core.rate_limit),
        metrics: telemetry::metrics_handle(),
    };
    let producer = events::producer::Producer::new(
        &settings.kafka,
        Duration::from_millis(settings.core.outbox_delivery_timeout_ms),
    )?;
    Ok(App {
        state,
        shutdown_deadline: Duration::from_secs(settings.core.shutdown_deadline_seconds),
        kafka: settings.kafka.clone(),
        producer,
    })
}

/// Applies pending migrations.
///
/// # Errors
/// Database errors.
pub async fn migrate(db: &db::Db) -> Result<(), sea_orm::DbErr> {
    migration::Migrator::up(db.orm(), None).await
}

/// Every minute, until `shutdown`, forgets idempotency keys older than
/// `keys` and deletes outbox rows published more than `outbox` ago, each in
/// batches of 1,000 until a batch comes back short.
async fn purge_retained(db: db::Db, keys: Duration, outbox: Duration, shutdown: CancellationToken) {
    const BATCH: u64 = 1_000;
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let purged_keys = purge_in_batches(BATCH, || {
                    store::payments::purge_idempotency_keys(&db, keys, BATCH as i64)
                })
                .await;
                let purged_rows = purge_in_batches(BATCH, || async {
                    Ok(events::outbox::purge_published(db.pool(), outbox, BATCH as i64).await?)
                })
                .await;
                match (purged_keys, purged_rows) {
                    (Ok(0), Ok(0)) => {}
                    (Ok(keys), Ok(rows)) => tracing::info!(
                        idempotency_keys = keys,
                        outbox_rows = rows,
                        "purged data past its retention"
                    ),
                    (Err(error), _) | (_, Err(error)) => tracing::warn!(
                        error = %platform::problem::ErrorChain(&error),
                        "purging data past its retention failed; retrying next minute"
                    ),
                }
            }
        }
    }
}

/// Runs `purge` until it deletes fewer than `batch` rows; returns the total.
async fn purge_in_batches<F, Fut>(batch: u64, mut purge: F) -> Result<u64, store::StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, store::StoreError>>,
{
    let mut total = 0;
    loop {
        let deleted = purge().await?;
        total += deleted;
        if deleted < batch {
            return Ok(total);
        }
    }
}

/// Starts the event workers that the `[core]` settings enable: outbox
/// relay, expiry consumer, hold sweeper and inventory reporter (see
/// [`workers`]).
fn spawn_workers(
    state: &http::AppState,
    kafka: &platform::settings::KafkaSettings,
    producer: events::producer::Producer,
    shutdown: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let core = state.booking.settings();
    let db = state.booking.db();
    let mut tasks = Vec::new();
    if core.outbox_relay {
        let relay = events::outbox::OutboxRelay::new(
            db.pool().clone(),
            producer.clone(),
            events::outbox::RelaySettings {
                batch_size: core.outbox_batch_size,
                topic_suffix: kafka.topic_suffix.clone(),
                // metrics::sample already refreshes the backlog gauges.
                backlog_interval: None,
                ..events::outbox::RelaySettings::default()
            },
        );
        tasks.push(tokio::spawn(relay.run(shutdown.clone())));
    }
    if core.expiry_consumer {
        let consumer = events::consumer::ConsumerRuntime::new(
            events::consumer::ConsumerSettings::for_kafka(
                kafka,
                format!("{}-core-expiry", kafka.group_prefix),
                kafka.topic(events::topics::RESERVATION_EXPIRATION),
            ),
            workers::ExpiryHandler::new(db.clone()),
            producer,
        );
        let token = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(error) = consumer.run(token).await {
                tracing::error!(error = %platform::problem::ErrorChain(&error), "expiry consumer stopped");
            }
        }));
    }
    if core.inventory_report_ms > 0 {
        tasks.push(tokio::spawn(workers::run_inventory_reporter(
            state.booking.clone(),
            Duration::from_millis(core.inventory_report_ms),
            shutdown.clone(),
        )));
    }
    if core.sweeper {
        tasks.push(tokio::spawn(workers::run_sweeper(
            db.clone(),
            Duration::from_millis(core.sweep_interval_ms),
            500,
            shutdown.clone(),
        )));
    }
    tasks.extend(state.coupons.spawn_workers(shutdown));
    tasks
}

/// Serves the API on `listener` until `shutdown` is cancelled, then drains
/// in-flight requests for at most `core.shutdown_deadline_seconds`.
///
/// # Errors
/// [`ServeError`] when serving fails.
pub async fn run(
    app: App,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let App {
        state,
        shutdown_deadline,
        kafka,
        producer,
    } = app;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "core-service listening");
    }
    let db = state.booking.db().clone();
    let core = state.booking.settings();
    let sampler = tokio::spawn(metrics::sample(
        db.clone(),
        Duration::from_secs(5),
        shutdown.clone(),
    ));
    let purger = tokio::spawn(purge_retained(
        db.clone(),
        Duration::from_secs(core.idempotency_retention_hours * 3_600),
        Duration::from_secs(core.outbox_retention_hours * 3_600),
        shutdown.clone(),
    ));
    let mut workers = state
        .ranking
        .spawn_workers(&kafka, producer.clone(), &shutdown);
    workers.extend(spawn_workers(&state, &kafka, producer, &shutdown));
    // The first fan should not wait for the identity provider's discovery
    // and keys; a failure here is retried on demand by the first token.
    let identity = state.identity.clone();
    let warm_up = tokio::spawn(async move {
        if let Err(error) = identity.warm_up().await {
            tracing::warn!(%error, "fetching the identity provider's keys failed; retrying on demand");
        }
    });
    let router = http::router(state.clone());
    // The peer address keys the rate limit of anonymous requests.
    let server = axum::serve(
        platform::listener::no_delay(listener),
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let serving = async move {
        let _ = tx.send(server.await);
        // The pool closes below, so the workers finish their batch first.
        for worker in workers {
            if let Err(error) = worker.await {
                tracing::error!(%error, "a worker task failed");
            }
        }
    };
    let finished = platform::shutdown::drain(&shutdown, shutdown_deadline, serving).await;
    sampler.abort();
    purger.abort();
    warm_up.abort();
    db.pool().close().await;
    if !finished {
        return Ok(());
    }
    match rx.await {
        Ok(result) => Ok(result?),
        Err(_) => Ok(()),
    }
}
