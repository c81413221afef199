//! queue-service: a virtual waiting room on Redis Cluster.
//!
//! When a performance goes on sale, fans enter a per-event line
//! (`POST /v1/events/{id}/queue`), poll their exact position and an ETA, and
//! are admitted into a bounded active set at a controlled rate. An admitted
//! fan receives a signed access token that core-service checks over gRPC
//! (`VerifyAccess`) before it sells a seat, and releases (`ReleaseAccess`)
//! when the purchase completes.
//!
//! # Identity
//! A fan is whoever their identity token says: every fan call carries
//! `Authorization: Bearer <OIDC identity token>`, verified against the
//! `[identity]` issuer's keys by `platform::identity` (cached per token, so
//! a status poll costs one lookup), and the fan's id is the token's `sub`.
//! Queue and access tokens name that fan too: status and leave take the
//! queue token from `Onsale-Queue-Token` and refuse another fan's with 403
//! `token_subject_mismatch`. gRPC callers present the service credential
//! (`queue.grpc_service_key`); `ReleaseAccess` and `payment.completed` free
//! the one admission session they name, never a newer one.
//!
//! # Layout
//! - [`settings`]: `[queue]` settings and validation.
//! - [`api`]: request and response bodies of the HTTP API.
//! - [`domain`]: [`domain::EventId`], [`domain::UserId`], room settings.
//! - [`eta`]: the position, ETA range and polling arithmetic
//!   ([`eta::estimate`]).
//! - [`pre_queue`]: the pre-queue's seeded order, for audits.
//! - [`layout`]: the Redis key layout and the Lua sources in `src/lua/`.
//! - `store` (private): Redis access through
//!   [`platform::redis_pool::RedisPool`] (the connection pool and the time
//!   limits of a call); `store/line.rs` (entry, status,
//!   leave), `store/sessions.rs` (verify, release) and `store/rooms.rs`
//!   (settings, registry, admission ticks) make one script call each;
//!   `store/reply.rs` parses the scripts' replies.
//! - [`tokens`]: queue and access JWTs.
//! - [`service`]: the operations, shared by both transports.
//! - [`error`]: [`error::ApiError`], mapped once to problem+json and once to
//!   `tonic::Status`.
//! - [`http`]: the HTTP API and its OpenAPI document, behind
//!   `platform::router::standard_layers`; fan routes behind
//!   `platform::identity::protect` (identity, then the rate limit), admin
//!   routes behind `platform::auth`'s admin key; `grpc` and `admission`
//!   (private): the gRPC API and the admission loop.
//! - [`metrics`]: metric names.
//! - [`build`] and [`run`]: the library entry points `main.rs` and
//!   core-service's tests use.
//!
//! # Design
//! - **One script per request.** Entry, status, leave, verify, release and
//!   each admission tick are single Lua scripts (one round trip, atomic).
//!   All keys of an event share the hash tag `{<prefix>evt:<id>}`, so a
//!   script touches one slot and events spread over the masters.
//! - **Fairness.** An `INCR` per event gives immutable arrival numbers; the
//!   line is a ZSET scored by them, so order never depends on instance
//!   clocks, and the exact position is `ZCOUNT` below the fan's number.
//! - **Admission.** A tick expires lapsed admissions (bounded batch), then
//!   admits `min(capacity − active, bucket)` fans from the head, where the
//!   bucket is a token bucket refilled at `admit_per_second` and capped at
//!   one tick's worth. Because the bucket lives in Redis and the script is
//!   atomic, any number of instances may tick concurrently: the active set
//!   never exceeds capacity, nobody is admitted twice, and the rate holds.
//!   A slot freed by leave, expiry or release is reused on the next tick.
//!   One call touches at most 100 fans (expired, admitted, dropped, swept)
//!   using bulk commands (`ZPOPMIN`, multi-member `ZADD`/`ZREM`/`HSET`,
//!   `BITFIELD_RO`), and says when work remains; the loop then calls again,
//!   at most 10 times per tick. Each call's cost is bounded whatever the
//!   length of the line (measurements in `docs/benchmarks.md`).
//! - **Abandonment.** Presence is a bitmap per time window indexed by arrival
//!   number (one bit per fan per window instead of a second sorted set of
//!   last-seen times, which would double the memory per fan: the line costs
//!   ~140 bytes per fan in total). A window is at least
//!   `presence_granularity_seconds` and at least 1/4 of the room's
//!   `abandon_after_seconds`, so checking a fan reads at most 5 windows, and
//!   a silent fan is dropped between `abandon_after_seconds` and one window
//!   later. Admission drops absent fans it pops from the head, so no slot
//!   goes to someone who left and abandoned numbers never stall admission; a
//!   sweep checks a bounded slice of the line per call, resuming from a
//!   cursor, so positions converge to exact without scanning the whole line,
//!   and a late poll finds its place already lost. A change of a room's
//!   abandonment window that changes the window width suspends abandonment
//!   for one abandonment window.
//! - **No-shows.** An admission must be claimed within the room's
//!   `claim_within_seconds`: by a poll or entry answered `active` (which
//!   hands over the access token) or a first `VerifyAccess`. Admission
//!   records each new admission's deadline in the `unclaimed` sorted set;
//!   every tick reclaims the due, still-active ones (a bounded batch) and
//!   counts them as `no_show`, so a fan who went away just before their turn
//!   idles a slot for seconds instead of the access TTL. Waiting fans are
//!   told to poll at least every two thirds of the claim window, so a
//!   present fan always sees the admission in time.
//! - **Scheduled sales.** A room with `opens_at` keeps the fans who enter
//!   before it in a pre-queue (status `pre_queue`, a countdown, no
//!   position), sorted by a keyed hash of a per-room seed: a uniformly
//!   random order, drawn when the room opens and reproducible from the
//!   seed, which the stats publish from then on. At opening one arrival
//!   number per pre-queued fan is reserved, so later fans queue behind all
//!   of them in FIFO order, and the admission tick places the pre-queue in
//!   the line in slices of 2,000 fans per call ([`pre_queue`]).
//! - **ETA.** Admissions and departures from the active set are counted
//!   per second in ring buffers. The ETA fills the free slots at the
//!   ceiling, then divides the rest of the fans ahead by the departure rate
//!   over the last 30 s, with a range from its slowest and fastest 5-second
//!   buckets ([`eta`]). `poll_after_ms` grows from 1 s near the front to
//!   30 s far back, capped at a third of the abandonment window.
//! - **Tokens.** HS256 JWTs; verifying a signature needs no Redis. Access
//!   tokens carry the session id (the arrival number); `VerifyAccess` also
//!   checks the session is still the fan's active one (one script), so a
//!   released or expired session is refused even if its JWT is still valid.
//!   `VerifyAccessBatch` answers many checks with one script per event: the
//!   script takes the sessions as argument triples.
//! - **TLS.** `rediss://` to Redis (`[redis.tls]`), `security.protocol=ssl`
//!   to Kafka, and a TLS gRPC server when `[grpc.tls]` names a
//!   certificate (requiring client certificates when it names a CA too),
//!   all on rustls with aws-lc-rs ([`platform::tls`]) except librdkafka's
//!   OpenSSL. Production refuses plain text unless allowed (see
//!   [`settings`]).
//! - **Redis client.** A deadpool pool of up to `redis.pool_size`
//!   multiplexed redis-rs cluster connections (each follows MOVED/ASK
//!   itself), with a manager of our own: it builds the cluster client with
//!   our connect and response timeouts, hands connections out without a
//!   check, and drops a connection once a call through it failed at the
//!   connection level, so the service connects on first use (it starts, and
//!   answers 503, while Redis is down) and heals by itself when Redis
//!   returns. A call clones the handle and gives the pooled connection back
//!   at once, so calls pipeline on shared connections spread over several
//!   sockets per node. deadpool-redis's own cluster manager was measured
//!   and dropped: it `PING`s every master on every hand-out (see
//!   `platform::redis_pool`).

pub mod api;
pub mod domain;
pub mod error;
pub mod eta;
pub mod events_consumer;
pub mod layout;
pub mod metrics;
pub mod pre_queue;
pub mod service;
pub mod settings;
pub mod tokens;

pub mod http;

mod admission;
mod grpc;
mod store;

use std::{sync::Arc, time::Duration};

pub use http::openapi;
pub use platform::shutdown::CancellationToken;
pub use settings::Settings;
pub use store::{RoomSnapshot, StoreError};

use events::consumer::{ConsumerRuntime, ConsumerSettings};
use onsale_proto::queue::v1::waiting_room_server::WaitingRoomServer;
use platform::{identity::IdentityVerifier, ratelimit::RateLimiter, settings::SettingsError};

/// Bound sockets for [`run`]; bind port 0 in tests.
#[derive(Debug)]
pub struct Listeners {
    /// Fan API, admin API, probes, metrics and OpenAPI.
    pub http: tokio::net::TcpListener,
    /// gRPC (`onsale.queue.v1.WaitingRoom`, health, reflection).
    pub grpc: tokio::net::TcpListener,
}

/// A built, not yet serving, service instance.
#[derive(Debug)]
pub struct App {
    room: service::WaitingRoom,
    verifier: IdentityVerifier,
    release_consumer: Option<ConsumerRuntime<events_consumer::PaymentCompletedHandler>>,
    /// The gRPC server's TLS, from `[grpc.tls]`.
    grpc_tls: Option<tonic::transport::ServerTlsConfig>,
}

impl App {
    /// The shared operations, for embedding.
    pub fn waiting_room(&self) -> &service::WaitingRoom {
        &self.room
    }
}

/// Why [`build`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Settings break a rule (including `[identity]`: no identity verifier
    /// can be built from them).
    #[error("invalid settings")]
    Settings(#[from] SettingsError),
    /// The Redis connection pool could not be created (bad URLs).
    #[error("creating the redis connection pool failed")]
    Redis(#[from] store::StoreError),
    /// The Kafka client could not be created (bad settings).
    #[error("creating the kafka client failed")]
    Kafka(#[from] events::producer::ProduceError),
    /// The gRPC server's `[grpc.tls]` files cannot be read or used.
    #[error("the gRPC server's TLS files are unusable: {0}")]
    GrpcTls(String),
}

/// Why [`run`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The HTTP server failed.
    #[error("HTTP server failed")]
    Http(#[source] std::io::Error),
    /// The gRPC server failed.
    #[error("gRPC server failed")]
    Grpc(#[from] tonic::transport::Error),
    /// A server task panicked.
    #[error("a server task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// Validates settings, creates the Redis connection pool and the identity
/// verifier. Does not listen.
///
/// Redis being down at this point is not fatal: the first requests get 503,
/// `/readyz` reports false, and the pool connects again on use. Neither is
/// the identity provider: keys are fetched on first use, and until they
/// can be, fan calls get 503 `identity_unavailable`.
///
/// # Errors
/// [`StartupError`] for invalid settings or unusable Redis URLs.
pub async fn build(settings: Settings) -> Result<App, StartupError> {
    settings.validate()?;
    platform::settings::warn_plaintext(settings.environment, settings.plaintext());
    platform::tls::install_crypto_provider();
    let grpc_tls = grpc_tls(&settings.grpc.tls)?;
    let verifier = IdentityVerifier::new(settings.identity.clone())?;
    // Install the Prometheus recorder before anything is recorded, also when
    // embedded without `telemetry::init` (tests, core-service).
    let _ = telemetry::metrics_handle();
    let store = store::Store::new(
        &settings.redis,
        settings.queue.presence_granularity_seconds,
        settings.queue.tick_ms,
    )?;
    if !store.ping().await {
        tracing::warn!("redis is not reachable yet; serving 503 until it is");
    }
    let release_consumer = if settings.queue.consume_events {
        // Dead letters of this consumer go to `payment.completed.dlq`.
        let dlq = events::producer::Producer::new(&settings.kafka, Duration::from_secs(10))?;
        let consumer = ConsumerSettings::for_kafka(
            &settings.kafka,
            format!("{}-queue-release", settings.kafka.group_prefix),
            settings.kafka.topic(events::topics::PAYMENT_COMPLETED),
        );
        Some((consumer, dlq))
    } else {
        None
    };
    let room = service::WaitingRoom::new(store, Arc::new(settings));
    let release_consumer = release_consumer.map(|(consumer, dlq)| {
        ConsumerRuntime::new(
            consumer,
            events_consumer::PaymentCompletedHandler::new(room.clone()),
            dlq,
        )
    });
    Ok(App {
        room,
        verifier,
        release_consumer,
        grpc_tls,
    })
}

/// The gRPC server's TLS: its certificate and key, and with a CA the
/// requirement that callers present a certificate chaining to it. `None`
/// without a certificate (plain text).
fn grpc_tls(
    files: &platform::settings::TlsFiles,
) -> Result<Option<tonic::transport::ServerTlsConfig>, StartupError> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let unreadable = |error: std::io::Error| StartupError::GrpcTls(error.to_string());
    let Some((cert, key)) = files.read_identity().map_err(unreadable)? else {
        return Ok(None);
    };
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if let Some(ca) = files.read_ca().map_err(unreadable)? {
        config = config.client_ca_root(Certificate::from_pem(ca));
    }
    // Parses the PEM now, so a bad file stops the start, not the server.
    tonic::transport::Server::builder()
        .tls_config(config.clone())
        .map_err(|error| StartupError::GrpcTls(error.to_string()))?;
    Ok(Some(config))
}

/// Serves HTTP and gRPC on `listeners` and runs the admission loop until
/// `shutdown` is cancelled, then drains in-flight work for at most
/// `queue.shutdown_grace_ms`.
///
/// # Errors
/// [`ServeError`] when a server fails; the others are then stopped too.
pub async fn run(
    app: App,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let App {
        room,
        verifier,
        release_consumer,
        grpc_tls,
    } = app;
    let settings = room.settings.clone();
    // Children stop when either the caller cancels or a server fails.
    let stop = shutdown.child_token();
    let limiter = RateLimiter::new(&settings.queue.rate_limit);
    // Fetch the provider's keys now, so the first fan does not wait for
    // discovery; a failure only means the first tokens fetch them.
    let warm = verifier.clone();
    tokio::spawn(async move {
        if let Err(error) = warm.warm_up().await {
            tracing::warn!(%error, "identity provider keys not fetched yet");
        }
    });

    let router = http::router(room.clone(), verifier, limiter);
    let http_stop = stop.clone();
    let http_task = tokio::spawn(async move {
        let result = axum::serve(
            platform::listener::no_delay(listeners.http),
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(http_stop.clone().cancelled_owned())
        .await
        .map_err(ServeError::Http);
        http_stop.cancel();
        result
    });

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<WaitingRoomServer<grpc::GrpcApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(onsale_proto::FILE_DESCRIPTOR_SET)
        .build_v1();
    let grpc_stop = stop.clone();
    // Only services holding the key may verify and release access; health
    // and reflection stay open for probes and tooling.
    let grpc_api = WaitingRoomServer::with_interceptor(
        grpc::GrpcApi { room: room.clone() },
        platform::service_auth::require(settings.queue.grpc_service_key.clone()),
    );
    let grpc_task = tokio::spawn(async move {
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = grpc_tls {
            // Checked in `build`.
            builder = builder.tls_config(tls)?;
        }
        let router = builder.add_service(health_service).add_service(grpc_api);
        let router = match reflection {
            Ok(reflection) => router.add_service(reflection),
            Err(error) => {
                tracing::warn!(%error, "gRPC reflection unavailable");
                router
            }
        };
        let result = router
            .serve_with_incoming_shutdown(
                // A listener handed to tonic does not get its default
                // TCP_NODELAY; without it, replies to concurrent calls on one
                // HTTP/2 connection wait for ACKs of earlier ones.
                tonic::transport::server::TcpIncoming::from(listeners.grpc)
                    .with_nodelay(Some(true)),
                grpc_stop.clone().cancelled_owned(),
            )
            .await
            .map_err(ServeError::Grpc);
        grpc_stop.cancel();
        result
    });

    let admission_task = tokio::spawn(admission::run(
        room.store.clone(),
        Duration::from_millis(settings.queue.tick_ms),
        settings.queue.admission_enabled,
        health,
        stop.clone(),
    ));

    // Event-driven admission: a buyer's slot is freed as soon as their
    // payment.completed arrives.
    let consumer_stop = stop.clone();
    let consumer_task = tokio::spawn(async move {
        if let Some(consumer) = release_consumer
            && let Err(error) = consumer.run(consumer_stop).await
        {
            tracing::error!(error = %platform::problem::ErrorChain(&error), "payment.completed consumer stopped");
        }
    });

    tracing::info!(http = %settings.queue.http_addr, grpc = %settings.queue.grpc_addr, "queue-service serving");
    let mut outcome: Result<(), ServeError> = Ok(());
    let work = async {
        let (http, grpc, admission, consumer) =
            tokio::join!(http_task, grpc_task, admission_task, consumer_task);
        if let Err(error) = consumer {
            tracing::error!(%error, "payment.completed consumer task failed");
        }
        for result in [
            http.map_err(ServeError::from).and_then(|r| r),
            grpc.map_err(ServeError::from).and_then(|r| r),
        ] {
            if let Err(error) = result
                && outcome.is_ok()
            {
                outcome = Err(error);
            }
        }
        if let Err(error) = admission
            && outcome.is_ok()
        {
            outcome = Err(error.into());
        }
    };
    let drained = platform::shutdown::drain(
        &stop,
        Duration::from_millis(settings.queue.shutdown_grace_ms),
        work,
    )
    .await;
    if !drained {
        tracing::warn!("shutdown grace period ended with work in flight");
    }
    outcome
}
