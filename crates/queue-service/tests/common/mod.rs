//! Test harness: `spawn_app()` starts queue-service in-process on port 0
//! against the devstack Redis Cluster, with a key prefix nobody else uses.
//! Requests are built by `onsale_client`; the helpers that return a
//! [`Reply`] hand back the raw response for assertions on status, headers
//! and body.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::{future::Future, time::Duration};

use onsale_client::{
    Client, RoomConfig,
    queue_api::{EnterRequest, RoomRequest},
};
use onsale_proto::queue::v1::waiting_room_client::WaitingRoomClient;
use queue_service::{CancellationToken, Listeners, Settings};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::transport::Channel;

pub const ADMIN_KEY: &str = "local-admin-key";

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

/// Settings against the devstack cluster with a fresh key prefix.
pub fn settings() -> Settings {
    let stack = devstack::testing::stack();
    let prefix = format!("{}:", devstack::testing::unique_suffix());
    settings_with(&stack.redis_urls.join(","), &prefix)
}

pub fn settings_with(redis_urls: &str, prefix: &str) -> Settings {
    let vars = vec![
        ("ONSALE__REDIS__URLS".to_owned(), redis_urls.to_owned()),
        ("ONSALE__REDIS__KEY_PREFIX".to_owned(), prefix.to_owned()),
        ("ONSALE__QUEUE__TICK_MS".to_owned(), "100".to_owned()),
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
            "2000".to_owned(),
        ),
        // These tests are about the waiting room; the payment.completed
        // consumer is exercised by core-service's tests/events_flow.rs.
        (
            "ONSALE__QUEUE__CONSUME_EVENTS".to_owned(),
            "false".to_owned(),
        ),
    ];
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

/// Polls `check` every 50 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn event_id() -> String {
    format!("perf-{}", devstack::testing::unique_suffix())
}

pub use devstack::testing::Reply;

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

    pub async fn enter(&self, event: &str, user: &str) -> Reply {
        let body = EnterRequest {
            user_id: user.to_owned(),
        };
        Reply::send(self.client.enter_request(event, &body)).await
    }

    pub async fn status(&self, event: &str, token: &str) -> Reply {
        Reply::send(self.client.poll_request(event, token)).await
    }

    pub async fn leave(&self, event: &str, token: &str) -> Reply {
        Reply::send(self.client.leave_request(event, token)).await
    }

    pub async fn stats(&self, event: &str) -> Value {
        let reply = Reply::send(self.client.room_stats_request(event)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body
    }

    pub async fn get(&self, path: &str) -> Reply {
        Reply::send(self.http.get(format!("{}{path}", self.base))).await
    }

    pub async fn grpc(&self) -> WaitingRoomClient<Channel> {
        WaitingRoomClient::connect(self.grpc_addr.clone())
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
