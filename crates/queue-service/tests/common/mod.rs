//! Test harness: `spawn_app()` starts queue-service in-process on port 0
//! against the devstack Redis Cluster, with a key prefix nobody else uses,
//! trusting this test binary's identity provider ([`issuer`]).
//!
//! Fans authenticate as in production: every fan call carries
//! `Authorization: Bearer <identity token>` ([`identity`]), status and
//! leave also `Onsale-Queue-Token`. Fan requests are built here with
//! reqwest; admin calls go through `onsale_client`. The helpers that return
//! a [`Reply`] hand back the raw response for assertions on status, headers
//! and body.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock, PoisonError},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use devstack::issuer::{DEFAULT_AUDIENCE, Issuer};
use onsale_client::{Client, RoomConfig, queue_api::RoomRequest};
use onsale_proto::queue::v1::{
    ReleaseAccessRequest, ReleaseReason, VerifyAccessRequest, VerifyAccessResponse,
    waiting_room_client::WaitingRoomClient,
};
use platform::service_auth::present;
use queue_service::{CancellationToken, Listeners, Settings};
use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tonic::{
    Request, Status,
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

pub const ADMIN_KEY: &str = "local-admin-key";
/// The local default of `queue.grpc_service_key`.
pub const GRPC_SERVICE_KEY: &str = "local-grpc-service-key";
/// The header of the queue token on status and leave.
pub const QUEUE_TOKEN: &str = "onsale-queue-token";
/// Lifetime of the identity tokens [`identity`] mints, in seconds.
const IDENTITY_TTL_SECONDS: u64 = 3_600;

pub struct TestApp {
    pub base: String,
    pub grpc_addr: String,
    pub http: reqwest::Client,
    /// The typed client of this instance, with its admin key.
    pub client: Client,
    pub prefix: String,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// This test binary's identity provider: devstack's local issuer, served
/// on a free loopback port by a thread of its own, so that it outlives the
/// runtime of each test (and does not depend on `devstack up` running the
/// stack's issuer). Its keys are created in a fresh folder, loaded, and the
/// folder removed: the issuer keeps them in memory.
pub fn issuer() -> &'static Issuer {
    static ISSUER: OnceLock<Issuer> = OnceLock::new();
    ISSUER.get_or_init(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        listener.set_nonblocking(true).unwrap();
        let url = devstack::issuer::url_for(listener.local_addr().unwrap());
        let dir = std::env::temp_dir().join(format!(
            "queue-service-issuer-{}",
            devstack::testing::unique_suffix()
        ));
        let issuer = Issuer::open(&dir, url).expect("the test issuer's keys");
        let _ = std::fs::remove_dir_all(&dir);
        let serving = issuer.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                serving
                    .serve(listener)
                    .await
                    .expect("the test issuer serves");
            });
        });
        issuer
    })
}

/// An identity token of [`issuer`] for `user` (audience `onsale`), one per
/// user and test binary, as a signed-in fan would hold it.
pub fn identity(user: &str) -> String {
    static TOKENS: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    let mut tokens = TOKENS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    tokens
        .entry(user.to_owned())
        .or_insert_with(|| {
            issuer()
                .mint(user, IDENTITY_TTL_SECONDS, DEFAULT_AUDIENCE)
                .expect("minting an identity token")
        })
        .clone()
}

/// A string claim of a JWT (`sub`, `sid`), read without checking
/// anything; `None` for text that is not a JWT with that claim.
pub fn claim(jwt: &str, name: &str) -> Option<String> {
    let payload = URL_SAFE_NO_PAD.decode(jwt.split('.').nth(1)?).ok()?;
    let claims: Value = serde_json::from_slice(&payload).ok()?;
    claims[name].as_str().map(str::to_owned)
}

/// The fan a JWT names.
pub fn subject_of(jwt: &str) -> Option<String> {
    claim(jwt, "sub")
}

/// The queue token of a ticket body.
pub fn token(body: &Value) -> String {
    body["queue_token"]
        .as_str()
        .expect("queue_token")
        .to_owned()
}

/// `VerifyAccess` of `access_token`: the fan it grants access to.
pub async fn verify(app: &TestApp, event: &str, access_token: &str) -> Result<String, Status> {
    verify_accepting_completed(app, event, access_token, false)
        .await
        .map(|r| r.user_id)
}

pub async fn verify_accepting_completed(
    app: &TestApp,
    event: &str,
    access_token: &str,
    accept_completed: bool,
) -> Result<VerifyAccessResponse, Status> {
    let request = VerifyAccessRequest {
        event_id: event.to_owned(),
        access_token: access_token.to_owned(),
        accept_completed,
    };
    app.grpc()
        .await
        .verify_access(request)
        .await
        .map(tonic::Response::into_inner)
}

/// Releases, as a completed purchase, the session `token` (a queue or
/// access token) names, for the fan it names.
pub async fn release(app: &TestApp, event: &str, token: &str) -> bool {
    release_for(app, event, token, ReleaseReason::Completed).await
}

/// [`release`] with another reason.
pub async fn release_for(app: &TestApp, event: &str, token: &str, reason: ReleaseReason) -> bool {
    let user = subject_of(token).expect("a token naming its fan");
    let session = claim(token, "sid").expect("a token naming its session");
    release_session(app, event, &user, &session, reason)
        .await
        .expect("ReleaseAccess answers")
}

/// `ReleaseAccess` of `user`'s session `session`.
pub async fn release_session(
    app: &TestApp,
    event: &str,
    user: &str,
    session: &str,
    reason: ReleaseReason,
) -> Result<bool, Status> {
    let request = ReleaseAccessRequest {
        event_id: event.to_owned(),
        user_id: user.to_owned(),
        reason: reason as i32,
        session_id: session.to_owned(),
    };
    app.grpc()
        .await
        .release_access(request)
        .await
        .map(|reply| reply.into_inner().released)
}

/// Settings against the devstack cluster with a fresh key prefix.
pub fn settings() -> Settings {
    let stack = devstack::testing::stack();
    let prefix = format!("{}:", devstack::testing::unique_suffix());
    settings_with(&stack.redis_urls.join(","), &prefix)
}

pub fn settings_with(redis_urls: &str, prefix: &str) -> Settings {
    settings_from(redis_urls, prefix, &[])
}

/// [`settings_with`] plus `extra` `ONSALE__…` pairs, which win.
pub fn settings_from(redis_urls: &str, prefix: &str, extra: &[(&str, &str)]) -> Settings {
    let mut vars: Vec<(String, String)> = [
        ("ONSALE__REDIS__URLS", redis_urls),
        ("ONSALE__REDIS__KEY_PREFIX", prefix),
        ("ONSALE__IDENTITY__ISSUER", issuer().url()),
        ("ONSALE__QUEUE__TICK_MS", "100"),
        ("ONSALE__QUEUE__PRESENCE_GRANULARITY_SECONDS", "1"),
        ("ONSALE__QUEUE__RATE_LIMIT__PER_SECOND", "100000"),
        ("ONSALE__QUEUE__RATE_LIMIT__BURST", "100000"),
        ("ONSALE__QUEUE__SHUTDOWN_GRACE_MS", "2000"),
        // These tests are about the waiting room; the payment.completed
        // consumer runs in tests/identity.rs and core-service's
        // tests/events_flow.rs.
        ("ONSALE__QUEUE__CONSUME_EVENTS", "false"),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    // Later pairs win: drop the earlier ones of the same name.
    let mut seen = std::collections::HashSet::new();
    vars.reverse();
    vars.retain(|(k, _)| seen.insert(k.clone()));
    Settings::load_with(vars).expect("test settings are valid")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(settings()).await
}

pub async fn spawn_app_with(settings: Settings) -> TestApp {
    let prefix = settings.redis.key_prefix.clone();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", http.local_addr().unwrap());
    let grpc_addr = format!("http://{}", grpc.local_addr().unwrap());
    let app = queue_service::build(settings).await.expect("build");
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        queue_service::run(app, Listeners { http, grpc }, token)
            .await
            .expect("serve");
    });
    let http_client = reqwest::Client::new();
    let client = Client::builder()
        .queue_url(&base)
        .http(http_client.clone())
        .queue_admin_key(ADMIN_KEY)
        .build();
    TestApp {
        base,
        grpc_addr,
        http: http_client,
        client,
        prefix,
        shutdown,
        task: Some(task),
    }
}

pub use devstack::testing::eventually;

pub fn event_id() -> String {
    format!("perf-{}", devstack::testing::unique_suffix())
}

pub use devstack::testing::Reply;

/// The fan a queue token's helpers act as: the token's own `sub`, or a fan
/// of no ticket for text that names nobody (garbage tokens).
fn ticket_holder(token: &str) -> String {
    subject_of(token).unwrap_or_else(|| "fan-without-a-ticket".to_owned())
}

/// Sends `request` signed in as `user`, with queue token `token`.
async fn with_ticket(request: RequestBuilder, user: &str, token: &str) -> Reply {
    Reply::send(
        request
            .bearer_auth(identity(user))
            .header(QUEUE_TOKEN, token),
    )
    .await
}

/// The gRPC client of [`TestApp::grpc`].
pub type Grpc = WaitingRoomClient<InterceptedService<Channel, Credential>>;

/// `platform::service_auth::present` with the local service key, in a type
/// that can be named.
#[derive(Clone)]
pub struct Credential(Arc<AddsCredential>);

type AddsCredential = dyn Fn(Request<()>) -> Result<Request<()>, Status> + Send + Sync;

impl Credential {
    fn new() -> Self {
        let key = platform::settings::Secret::from(GRPC_SERVICE_KEY.to_owned());
        Self(Arc::new(present(key)))
    }
}

impl Interceptor for Credential {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        (self.0)(request)
    }
}

impl TestApp {
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    /// Configures `event`'s room with `body` (a [`RoomRequest`] as JSON,
    /// see [`room`]); panics unless the service accepts it.
    pub async fn open_room(&self, event: &str, body: Value) -> RoomConfig {
        let room: RoomRequest = serde_json::from_value(body).expect("a room body");
        self.client
            .configure_room(event, &room)
            .await
            .unwrap_or_else(|error| panic!("opening the room failed: {error}"))
    }

    /// Opens `event`'s room with `capacity` slots and next to no admission
    /// rate, and lets one "blocker" fan in, so that the line behind stays
    /// put; returns the blocker's queue token.
    pub async fn open_stalled_room(&self, event: &str, capacity: u64) -> String {
        self.open_room(event, room(capacity, 0.001)).await;
        let blocker = token(&self.enter(event, "blocker").await.body);
        self.until_active(event, &blocker).await;
        blocker
    }

    /// `POST /v1/events/{event}/queue` without identity or body.
    pub fn enter_request(&self, event: &str) -> RequestBuilder {
        self.http
            .post(format!("{}/v1/events/{event}/queue", self.base))
    }

    /// `GET /v1/events/{event}/queue/status` without identity or token.
    pub fn status_request(&self, event: &str) -> RequestBuilder {
        self.http
            .get(format!("{}/v1/events/{event}/queue/status", self.base))
    }

    /// `DELETE /v1/events/{event}/queue` without identity or token.
    pub fn leave_request(&self, event: &str) -> RequestBuilder {
        self.http
            .delete(format!("{}/v1/events/{event}/queue", self.base))
    }

    /// `user` enters `event`'s line, signed in, with no body.
    pub async fn enter(&self, event: &str, user: &str) -> Reply {
        Reply::send(self.enter_request(event).bearer_auth(identity(user))).await
    }

    /// The fan the queue token names polls with it.
    pub async fn status(&self, event: &str, token: &str) -> Reply {
        self.status_as(event, &ticket_holder(token), token).await
    }

    /// `user` polls with `token` (which may be someone else's).
    pub async fn status_as(&self, event: &str, user: &str, token: &str) -> Reply {
        with_ticket(self.status_request(event), user, token).await
    }

    /// The fan the queue token names leaves with it.
    pub async fn leave(&self, event: &str, token: &str) -> Reply {
        self.leave_as(event, &ticket_holder(token), token).await
    }

    /// `user` leaves with `token` (which may be someone else's).
    pub async fn leave_as(&self, event: &str, user: &str, token: &str) -> Reply {
        with_ticket(self.leave_request(event), user, token).await
    }

    /// `user` enters and polls until admitted; returns the queue token and
    /// the access token.
    pub async fn admitted(&self, event: &str, user: &str) -> (String, String) {
        let reply = self.enter(event, user).await;
        assert!(reply.status.is_success(), "{}", reply.body);
        let queue_token = token(&reply.body);
        let active = self.until_active(event, &queue_token).await;
        let access = active["access_token"].as_str().expect("an access token");
        (queue_token, access.to_owned())
    }

    /// `user` is admitted, gives up the slot, enters again and is admitted
    /// again; returns the access tokens of the first and of the second
    /// session.
    pub async fn readmitted(&self, event: &str, user: &str) -> (String, String) {
        let (first, old_access) = self.admitted(event, user).await;
        let left = self.leave(event, &first).await;
        assert_eq!(left.status, StatusCode::NO_CONTENT, "{}", left.body);
        let (_, new_access) = self.admitted(event, user).await;
        assert_ne!(claim(&old_access, "sid"), claim(&new_access, "sid"));
        (old_access, new_access)
    }

    /// The gRPC health status of `onsale.queue.v1.WaitingRoom`, asked
    /// without any credential.
    pub async fn grpc_health(&self) -> i32 {
        let mut health = tonic_health::pb::health_client::HealthClient::new(self.channel().await);
        health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "onsale.queue.v1.WaitingRoom".into(),
            })
            .await
            .expect("gRPC health answers")
            .into_inner()
            .status
    }

    pub async fn stats(&self, event: &str) -> Value {
        let reply = Reply::send(self.client.room_stats_request(event)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body
    }

    pub async fn get(&self, path: &str) -> Reply {
        Reply::send(self.http.get(format!("{}{path}", self.base))).await
    }

    /// A gRPC client presenting the service credential, as core-service
    /// does.
    pub async fn grpc(&self) -> Grpc {
        WaitingRoomClient::with_interceptor(self.channel().await, Credential::new())
    }

    /// A gRPC connection without any credential.
    pub async fn channel(&self) -> Channel {
        tonic::transport::Endpoint::from_shared(self.grpc_addr.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Polls a fan's status until active; returns the body.
    pub async fn until_active(&self, event: &str, token: &str) -> Value {
        eventually(Duration::from_secs(10), || async {
            let reply = self.status(event, token).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
            (reply.body["status"] == "active").then_some(reply.body)
        })
        .await
    }
}

/// A room body with the given capacity and rate and long windows.
pub fn room(capacity: u64, admit_per_second: f64) -> Value {
    json!({
        "capacity": capacity,
        "admit_per_second": admit_per_second,
        "access_ttl_seconds": 600,
        "abandon_after_seconds": 300,
        "state": "open",
    })
}
