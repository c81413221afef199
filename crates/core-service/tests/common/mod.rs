//! Test harness: `spawn_app()` starts the real queue-service and
//! core-service in-process on port 0, against the devstack Postgres (a fresh
//! database per test, migrated) and Redis Cluster (a fresh key prefix), and
//! an identity provider of the test's own that both services trust
//! ([`TestIssuer`]). Fans sign in with its identity tokens and are admitted
//! by the waiting room ([`TestApp::access_token`] gives their [`Pass`]).
//! Requests are built by `onsale_client`; the helpers that return a
//! [`Reply`] hand back the raw response for assertions on status, headers
//! and body.

#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod db_proxy;
pub mod drill;
pub mod identity;

use core_service::{
    api::{
        ChargeRequest, CreatePayment, CreateReservation, NewConcert, NewPerformance, NewSection,
    },
    domain::{Krw, PerformanceId, SeatId},
};
pub use identity::{Pass, TestIssuer};
use onsale_client::{Client, RoomState, queue_api::RoomRequest};
use platform::{settings::Environment, shutdown::CancellationToken};
use sqlx::PgPool;

pub const CORE_ADMIN_KEY: &str = "core-test-admin-key";
/// The per-fan limit of the shows [`TestApp::create_show`] makes: the
/// highest allowed, so only the per-session limit applies.
pub const MAX_TICKETS_PER_FAN: i32 = core_service::booking::concerts::MAX_TICKETS_PER_FAN;
/// queue-service's local admin key (its `config/local.toml`).
pub const QUEUE_ADMIN_KEY: &str = "local-admin-key";

pub struct TestApp {
    pub base: String,
    pub queue_base: String,
    /// queue-service gRPC endpoint (`http://127.0.0.1:port`).
    #[allow(dead_code)] // used by some test binaries only
    pub queue_grpc: String,
    pub http: reqwest::Client,
    /// The typed client of both services, with their admin keys.
    pub client: Client,
    /// A separate pool on the test database, for assertions.
    pub db: PgPool,
    pub database_url: String,
    /// The identity provider both services trust.
    pub issuer: TestIssuer,
    /// The settings core-service was built with (its Redis key prefix,
    /// database, queue-service), for a second instance ([`TestApp::twin`]).
    pub settings: core_service::Settings,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub use devstack::testing::Reply;

/// A performance created through the admin API.
#[derive(Debug, Clone)]
pub struct Show {
    pub performance_id: i64,
    pub seat_ids: Vec<i64>,
}

fn queue_settings(issuer: &str, extra: &[(String, String)]) -> queue_service::Settings {
    let stack = devstack::testing::stack();
    let prefix = format!("{}:", devstack::testing::unique_suffix());
    let mut vars = vec![
        ("ONSALE__IDENTITY__ISSUER".to_owned(), issuer.to_owned()),
        ("ONSALE__REDIS__URLS".to_owned(), stack.redis_urls.join(",")),
        ("ONSALE__REDIS__KEY_PREFIX".to_owned(), prefix),
        // A loaded 2-core machine answers Redis slower than production; the
        // tests check booking correctness, not queue-service's shedding.
        (
            "ONSALE__REDIS__RESPONSE_TIMEOUT_MS".to_owned(),
            "10000".to_owned(),
        ),
        (
            "ONSALE__REDIS__CONNECT_TIMEOUT_MS".to_owned(),
            "5000".to_owned(),
        ),
        ("ONSALE__QUEUE__TICK_MS".to_owned(), "50".to_owned()),
        (
            "ONSALE__QUEUE__PRESENCE_GRANULARITY_SECONDS".to_owned(),
            "1".to_owned(),
        ),
        (
            "ONSALE__QUEUE__RATE_LIMIT__PER_SECOND".to_owned(),
            "100000".to_owned(),
        ),
        (
            "ONSALE__QUEUE__RATE_LIMIT__BURST".to_owned(),
            "100000".to_owned(),
        ),
        (
            "ONSALE__QUEUE__SHUTDOWN_GRACE_MS".to_owned(),
            "1000".to_owned(),
        ),
    ];
    vars.extend(extra.iter().cloned());
    queue_service::Settings::load_with(vars).expect("queue-service test settings are valid")
}

/// core-service settings for `database_url` and `queue_grpc_url`, with
/// `extra` `ONSALE__…` overrides.
pub fn core_settings(
    database_url: &str,
    queue_grpc_url: &str,
    extra: &[(&str, &str)],
) -> core_service::Settings {
    let vars = core_vars(database_url, queue_grpc_url, extra);
    let settings: core_service::Settings = platform::settings::load_from(
        core_service::settings::LAYERS,
        Environment::Local,
        Some(vars),
    )
    .expect("core-service test settings load");
    settings
        .validate()
        .expect("core-service test settings are valid");
    settings
}

/// The `ONSALE__…` variables behind [`core_settings`], for a core-service
/// started as a process of its own.
pub fn core_vars(
    database_url: &str,
    queue_grpc_url: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let stack = devstack::testing::stack();
    let mut vars = vec![
        ("ONSALE__DATABASE__URL".to_owned(), database_url.to_owned()),
        // Coupons and the ranking: the shared cluster under a key prefix
        // of this app's own.
        ("ONSALE__REDIS__URLS".to_owned(), stack.redis_urls.join(",")),
        (
            "ONSALE__REDIS__KEY_PREFIX".to_owned(),
            format!("{}:", devstack::testing::unique_suffix()),
        ),
        (
            "ONSALE__REDIS__RESPONSE_TIMEOUT_MS".to_owned(),
            "10000".to_owned(),
        ),
        (
            "ONSALE__REDIS__CONNECT_TIMEOUT_MS".to_owned(),
            "5000".to_owned(),
        ),
        (
            "ONSALE__DATABASE__MAX_CONNECTIONS".to_owned(),
            "10".to_owned(),
        ),
        (
            "ONSALE__DATABASE__MIN_CONNECTIONS".to_owned(),
            "0".to_owned(),
        ),
        // Generous for a loaded 2-core test machine: the tests check
        // correctness, not load shedding.
        (
            "ONSALE__DATABASE__ACQUIRE_TIMEOUT_MS".to_owned(),
            "10000".to_owned(),
        ),
        (
            "ONSALE__CORE__QUEUE_GRPC_URL".to_owned(),
            queue_grpc_url.to_owned(),
        ),
        (
            "ONSALE__CORE__QUEUE_TIMEOUT_MS".to_owned(),
            "5000".to_owned(),
        ),
        (
            "ONSALE__CORE__ADMIN_KEY".to_owned(),
            CORE_ADMIN_KEY.to_owned(),
        ),
        (
            "ONSALE__KAFKA__BROKERS".to_owned(),
            stack.kafka_brokers.clone(),
        ),
        // Hundreds of fans share 127.0.0.1 for the catalog reads; each fan
        // has a bucket of their own for the rest (tests/identity.rs checks
        // the limit itself).
        (
            "ONSALE__CORE__RATE_LIMIT__PER_SECOND".to_owned(),
            "100000".to_owned(),
        ),
        (
            "ONSALE__CORE__RATE_LIMIT__BURST".to_owned(),
            "100000".to_owned(),
        ),
    ];
    vars.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    vars
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Event workers off: these tests drive holds and payments by hand, and a
/// sweeper or expiry consumer acting in between would race their checks.
/// `tests/events_flow.rs` turns them on with [`spawn_app_on`].
const WORKERS_OFF: &[(&str, &str)] = &[
    ("ONSALE__CORE__OUTBOX_RELAY", "false"),
    ("ONSALE__CORE__EXPIRY_CONSUMER", "false"),
    ("ONSALE__CORE__SWEEPER", "false"),
    ("ONSALE__RANKING__CONSUMER", "false"),
    ("ONSALE__RANKING__SNAPSHOT_INTERVAL_SECONDS", "0"),
    ("ONSALE__COUPONS__RECONCILE_INTERVAL_SECONDS", "0"),
];

/// Starts queue-service and core-service (with `extra` settings) on a fresh,
/// migrated database, without event workers.
pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    let mut all: Vec<(&str, &str)> = WORKERS_OFF.to_vec();
    all.extend_from_slice(extra);
    spawn_apps(
        &all,
        &[(
            "ONSALE__QUEUE__CONSUME_EVENTS".to_owned(),
            "false".to_owned(),
        )],
    )
    .await
}

/// Starts both services with every event worker on, talking to Kafka at
/// `brokers` with topic suffix and consumer-group prefix `suffix` (the
/// topics must exist), plus `extra` core-service settings.
#[allow(dead_code)] // used by some test binaries only
pub async fn spawn_app_on(brokers: &str, suffix: &str, extra: &[(&str, &str)]) -> TestApp {
    let database_url = devstack::testing::fresh_database().await;
    spawn_app_on_database(brokers, suffix, database_url, extra, &[]).await
}

/// [`spawn_app_on`] on `database_url` (migrated here), with `queue_extra`
/// queue-service settings on top.
#[allow(dead_code)] // used by some test binaries only
pub async fn spawn_app_on_database(
    brokers: &str,
    suffix: &str,
    database_url: String,
    extra: &[(&str, &str)],
    queue_extra: &[(String, String)],
) -> TestApp {
    let mut kafka = vec![
        ("ONSALE__KAFKA__BROKERS".to_owned(), brokers.to_owned()),
        ("ONSALE__KAFKA__TOPIC_SUFFIX".to_owned(), suffix.to_owned()),
        (
            "ONSALE__KAFKA__GROUP_PREFIX".to_owned(),
            format!("test{suffix}"),
        ),
    ];
    let group = format!("test{suffix}");
    let mut all: Vec<(&str, &str)> = vec![
        ("ONSALE__KAFKA__BROKERS", brokers),
        ("ONSALE__KAFKA__TOPIC_SUFFIX", suffix),
        ("ONSALE__KAFKA__GROUP_PREFIX", &group),
    ];
    all.extend_from_slice(extra);
    kafka.extend_from_slice(queue_extra);
    spawn_apps_on(&all, &kafka, database_url, "http").await
}

async fn spawn_apps(core_extra: &[(&str, &str)], queue_extra: &[(String, String)]) -> TestApp {
    let database_url = devstack::testing::fresh_database().await;
    spawn_apps_on(core_extra, queue_extra, database_url, "http").await
}

/// Starts both services without event workers on the stores the extra
/// settings name (the TLS stack's, say): queue-service with `queue_extra`,
/// core-service on `database_url` (migrated here) with `core_extra`,
/// calling queue-service's gRPC at `<grpc_scheme>://127.0.0.1:<port>`.
#[allow(dead_code)] // used by some test binaries only
pub async fn spawn_apps_on_stores(
    core_extra: &[(&str, &str)],
    queue_extra: &[(String, String)],
    database_url: String,
    grpc_scheme: &str,
) -> TestApp {
    let mut core: Vec<(&str, &str)> = WORKERS_OFF.to_vec();
    core.extend_from_slice(core_extra);
    let mut queue = vec![(
        "ONSALE__QUEUE__CONSUME_EVENTS".to_owned(),
        "false".to_owned(),
    )];
    queue.extend_from_slice(queue_extra);
    spawn_apps_on(&core, &queue, database_url, grpc_scheme).await
}

async fn spawn_apps_on(
    core_extra: &[(&str, &str)],
    queue_extra: &[(String, String)],
    database_url: String,
    grpc_scheme: &str,
) -> TestApp {
    let shutdown = CancellationToken::new();
    let issuer = TestIssuer::start().await;

    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let queue_base = format!("http://{}", http.local_addr().unwrap());
    let grpc_url = format!("{grpc_scheme}://{}", grpc.local_addr().unwrap());
    let queue = queue_service::build(queue_settings(issuer.url(), queue_extra))
        .await
        .expect("queue-service builds");
    let token = shutdown.clone();
    tokio::spawn(async move {
        queue_service::run(queue, queue_service::Listeners { http, grpc }, token)
            .await
            .expect("queue-service serves");
    });

    let mut core_extra = core_extra.to_vec();
    core_extra.push(("ONSALE__IDENTITY__ISSUER", issuer.url()));
    let core_settings = core_settings(&database_url, &grpc_url, &core_extra);
    spawn_core(
        core_settings,
        shutdown,
        (queue_base, grpc_url),
        database_url,
        issuer,
    )
    .await
}

/// Starts core-service with `settings`, beside the queue-service at
/// `queue` (HTTP base, gRPC URL).
async fn spawn_core(
    settings: core_service::Settings,
    shutdown: CancellationToken,
    (queue_base, queue_grpc): (String, String),
    database_url: String,
    issuer: TestIssuer,
) -> TestApp {
    let app = core_service::build(settings.clone())
        .await
        .expect("core-service builds");
    core_service::migrate(app.db())
        .await
        .expect("migrations apply");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let token = shutdown.clone();
    tokio::spawn(async move {
        core_service::run(app, listener, token)
            .await
            .expect("core-service serves");
    });
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(3)
        .connect(&database_url)
        .await
        .unwrap();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(600)
        .build()
        .unwrap();
    let client = Client::builder()
        .queue_url(&queue_base)
        .core_url(&base)
        .http(http.clone())
        .queue_admin_key(QUEUE_ADMIN_KEY)
        .core_admin_key(CORE_ADMIN_KEY)
        .build();
    TestApp {
        base,
        queue_base,
        queue_grpc,
        http,
        client,
        db,
        database_url,
        issuer,
        settings,
        shutdown,
    }
}

impl TestApp {
    /// Starts another core-service instance with this one's settings (same
    /// database, Redis key prefix and queue-service), stopped with this
    /// app; returns its base URL.
    pub async fn twin(&self) -> String {
        let app = core_service::build(self.settings.clone())
            .await
            .expect("the twin builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let token = self.shutdown.clone();
        tokio::spawn(async move {
            core_service::run(app, listener, token)
                .await
                .expect("the twin serves");
        });
        base
    }

    /// `GET path` as the operator (with the admin key): catalog reads, and
    /// any fan's reservation.
    pub async fn get(&self, path: &str) -> Reply {
        let request = self.http.get(format!("{}{path}", self.base));
        Reply::send(request.header("x-admin-key", CORE_ADMIN_KEY)).await
    }

    /// Creates a concert with one performance of `rows` × `per_row` seats at
    /// `price` KRW, on sale now, and opens its waiting room wide.
    pub async fn create_show(
        &self,
        rows: usize,
        per_row: i32,
        price: i64,
        max_per_order: i32,
    ) -> Show {
        // As high as allowed, so that only the per-session limit applies.
        let limits = (max_per_order, MAX_TICKETS_PER_FAN);
        self.create_show_limited(rows, per_row, price, limits).await
    }

    /// [`Self::create_show`] with both purchase limits:
    /// `(max_seats_per_order, max_tickets_per_fan)`.
    pub async fn create_show_limited(
        &self,
        rows: usize,
        per_row: i32,
        price: i64,
        (max_per_order, max_per_fan): (i32, i32),
    ) -> Show {
        let now = chrono::Utc::now();
        let concert = NewConcert {
            title: "Test Concert".into(),
            artist: "Test Artist".into(),
            venue: "Test Hall".into(),
            performances: vec![NewPerformance {
                starts_at: now + chrono::Duration::days(7),
                sale_opens_at: now - chrono::Duration::minutes(1),
                max_seats_per_order: max_per_order,
                max_tickets_per_fan: Some(max_per_fan),
                sections: vec![NewSection {
                    section: "A".into(),
                    grade: "R".into(),
                    price: Krw::positive(price).expect("a positive price"),
                    rows: (1..=rows).map(|r| r.to_string()).collect(),
                    seats_per_row: per_row,
                }],
            }],
        };
        let created = self
            .client
            .create_concert(&concert)
            .await
            .unwrap_or_else(|error| panic!("creating the concert failed: {error}"));
        let performance = created
            .performances
            .into_iter()
            .next()
            .expect("a performance");
        let show = Show {
            performance_id: performance.id,
            seat_ids: performance.seat_ids,
        };
        self.open_room(show.performance_id).await;
        show
    }

    /// Opens the waiting room of `performance` wide, so everyone is admitted
    /// at once.
    pub async fn open_room(&self, performance: i64) {
        self.configure_room(performance, 100_000, 100_000.0).await;
    }

    /// Opens the waiting room of `performance` with `capacity` slots,
    /// admitting up to 1,000 fans a second.
    #[allow(dead_code)] // used by some test binaries only
    pub async fn open_room_of(&self, performance: i64, capacity: u64) {
        self.configure_room(performance, capacity, 1_000.0).await;
    }

    /// An open room of `capacity` admitting `admit_per_second`, with a
    /// 600 s access TTL and a 300 s abandonment window.
    async fn configure_room(&self, performance: i64, capacity: u64, admit_per_second: f64) {
        let room = RoomRequest {
            capacity: Some(capacity),
            admit_per_second: Some(admit_per_second),
            access_ttl_seconds: Some(600),
            abandon_after_seconds: Some(300),
            claim_within_seconds: None,
            latency_target_ms: None,
            opens_at: None,
            state: RoomState::Open,
        };
        self.client
            .configure_room(performance, &room)
            .await
            .unwrap_or_else(|error| panic!("opening the room failed: {error}"));
    }

    /// The waiting room's stats of `performance` (the admin endpoint's
    /// JSON).
    #[allow(dead_code)] // used by some test binaries only
    pub async fn room_stats(&self, performance: i64) -> serde_json::Value {
        self.http
            .get(format!(
                "{}/admin/v1/events/{performance}/waiting-room/stats",
                self.queue_base
            ))
            .header("X-Admin-Key", QUEUE_ADMIN_KEY)
            .send()
            .await
            .expect("the room stats answer")
            .json()
            .await
            .expect("the room stats are JSON")
    }

    /// Creates a coupon campaign open from a minute ago for an hour:
    /// `quantity` coupons of `discount` KRW off any show, valid for an
    /// hour; returns its id.
    pub async fn open_campaign(&self, name: &str, quantity: i32, discount: i64) -> i64 {
        let now = chrono::Utc::now();
        let campaign = core_service::api::coupons::NewCampaign {
            name: name.into(),
            concert_id: None,
            performance_id: None,
            discount: core_service::api::coupons::Discount::Amount {
                amount_krw: Krw::positive(discount).expect("a positive discount"),
            },
            quantity,
            starts_at: now - chrono::Duration::minutes(1),
            ends_at: now + chrono::Duration::hours(1),
            valid_for_seconds: 3_600,
        };
        self.client
            .create_campaign(&campaign)
            .await
            .unwrap_or_else(|error| panic!("creating the campaign failed: {error}"))
            .id
    }

    pub async fn charge(&self, user: &str, amount: i64) -> Reply {
        let charge = ChargeRequest {
            amount: Krw::positive(amount).expect("a positive amount"),
        };
        Reply::send(self.client.charge_request(user, &charge)).await
    }

    /// Holds `seats` with `pass`: its identity, its access token.
    pub async fn hold(&self, pass: &Pass, performance: i64, seats: &[i64]) -> Reply {
        let fan = self.client.as_fan(&pass.identity);
        Reply::send(fan.hold_request(&pass.access, &hold_body(performance, seats))).await
    }

    /// Pays `reservation` with `pass` under `key`.
    pub async fn pay(&self, pass: &Pass, key: &str, reservation: &str) -> Reply {
        let payment = CreatePayment {
            reservation_id: reservation.parse().expect("a reservation id"),
            coupon_code: None,
        };
        let fan = self.client.as_fan(&pass.identity);
        Reply::send(fan.pay_request(&pass.access, key, &payment)).await
    }

    /// `DELETE /v1/reservations/{id}` as the fan of `identity`.
    pub async fn release(&self, identity: &str, reservation: &str) -> Reply {
        let path = format!("/v1/reservations/{reservation}");
        Reply::send(self.signed(reqwest::Method::DELETE, &path, identity)).await
    }

    /// `user`'s balance, read by `user`.
    pub async fn balance(&self, user: &str) -> i64 {
        self.fan(user)
            .balance(user)
            .await
            .unwrap_or_else(|error| panic!("reading {user}'s balance failed: {error}"))
            .balance
    }

    /// The service's `/metrics` text (Prometheus exposition).
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("a /metrics response")
            .text()
            .await
            .expect("the /metrics body")
    }

    pub async fn scalar(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.db)
            .await
            .unwrap()
    }
}

/// The body of a hold of `seats` of `performance`.
pub fn hold_body(performance: i64, seats: &[i64]) -> CreateReservation {
    CreateReservation::seats(
        PerformanceId::new(performance).expect("a performance id"),
        seats
            .iter()
            .map(|s| SeatId::new(*s).expect("a seat id"))
            .collect(),
    )
}
