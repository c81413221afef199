//! When a dependency fails: an unreachable or silent queue-service, a
//! database outage, an exhausted pool. Each answers 503 (never hangs,
//! never lets a request through) and the service recovers by itself.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use common::{CORE_ADMIN_KEY, Reply};
use platform::shutdown::CancellationToken;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn an_unreachable_queue_service_fails_closed_with_503() {
    // Nothing listens on port 1.
    let reply = hold_with_queue_service_at("http://127.0.0.1:1").await;
    assert!(reply.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn a_queue_service_that_accepts_but_never_answers_fails_closed_with_503() {
    // Accepts connections and reads nothing back: every token check stalls.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    hold_with_queue_service_at(&format!("http://{address}")).await;
    held.abort();
}

#[tokio::test]
async fn a_queue_service_refusing_core_services_credential_fails_closed_with_503() {
    let app = common::spawn_app_with(&[(
        "ONSALE__CORE__QUEUE_SERVICE_KEY",
        "not-the-key-queue-service-has",
    )])
    .await;
    let show = app.create_show(1, 1, 1_000, 1).await;
    let pass = app.access_token(show.performance_id, "admitted").await;
    let reply = app.hold(&pass, show.performance_id, &show.seat_ids).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a valid access token, but queue-service would not check it: {}",
        reply.body
    );
    assert_eq!(reply.code(), "unavailable");
    assert_eq!(app.scalar("SELECT count(*) FROM reservations").await, 0);
}

/// Starts core-service with queue-service at `queue_url` (500 ms timeout),
/// sends one hold of a signed-in fan and checks it was refused with 503
/// `unavailable`.
async fn hold_with_queue_service_at(queue_url: &str) -> Reply {
    let url = devstack::testing::fresh_database().await;
    let issuer = common::TestIssuer::start().await;
    let settings = common::core_settings(
        &url,
        queue_url,
        &[
            ("ONSALE__CORE__QUEUE_TIMEOUT_MS", "500"),
            ("ONSALE__IDENTITY__ISSUER", issuer.url()),
        ],
    );
    let app = core_service::build(settings).await.unwrap();
    core_service::migrate(app.db()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(core_service::run(app, listener, shutdown.clone()));

    let reply = Reply::from(
        reqwest::Client::new()
            .post(format!("{base}/v1/reservations"))
            .bearer_auth(issuer.identity("patient"))
            .header("onsale-access-token", "some.access.token")
            .json(&json!({"performance_id": 1, "seat_ids": [1]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    shutdown.cancel();
    server.await.unwrap().unwrap();
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert_eq!(reply.code(), "unavailable");
    reply
}

/// A TCP proxy in front of Postgres that the test can cut.
async fn proxy(target: String, up: Arc<AtomicBool>, shutdown: CancellationToken) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((mut client, _)) = accepted else {
                continue;
            };
            if !up.load(Ordering::SeqCst) {
                continue; // dropped: connection refused-like
            }
            let (target, up, shutdown) = (target.clone(), up.clone(), shutdown.clone());
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                let watch = async {
                    while up.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    () = watch => {}
                    () = shutdown.cancelled() => {}
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_and_the_service_recovers_by_itself() {
    let url = devstack::testing::fresh_database().await;
    let shutdown = CancellationToken::new();
    let up = Arc::new(AtomicBool::new(true));
    let proxied =
        common::db_proxy::behind_proxy(&url, |host| proxy(host, up.clone(), shutdown.clone()))
            .await;
    let settings = common::core_settings(
        &proxied,
        "http://127.0.0.1:1",
        &[("ONSALE__DATABASE__ACQUIRE_TIMEOUT_MS", "500")],
    );
    let app = core_service::build(settings).await.unwrap();
    core_service::migrate(app.db()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(core_service::run(app, listener, shutdown.clone()));
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let (http, base) = (http.clone(), base.clone());
        async move { Reply::from(http.get(format!("{base}{path}")).send().await.unwrap()).await }
    };

    assert_eq!(get("/readyz").await.status, StatusCode::OK);
    assert_eq!(get("/v1/concerts").await.status, StatusCode::OK);

    up.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ready = get("/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["database"], false);
    let down = get("/v1/concerts").await;
    assert_eq!(
        down.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        down.body
    );
    assert!(down.is_problem());
    assert!(down.headers.contains_key("retry-after"));
    assert!(
        !down.body.to_string().contains("password"),
        "no details leak"
    );

    up.store(true, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if get("/readyz").await.status == StatusCode::OK
            && get("/v1/concerts").await.status == StatusCode::OK
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the service did not recover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
}

#[tokio::test]
async fn an_exhausted_pool_sheds_load_with_503_and_retry_after_instead_of_hanging() {
    let url = devstack::testing::fresh_database().await;
    let settings = common::core_settings(
        &url,
        "http://127.0.0.1:1",
        &[
            ("ONSALE__DATABASE__MAX_CONNECTIONS", "1"),
            ("ONSALE__DATABASE__ACQUIRE_TIMEOUT_MS", "200"),
        ],
    );
    let app = core_service::build(settings).await.unwrap();
    core_service::migrate(app.db()).await.unwrap();
    let db = app.db().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(core_service::run(app, listener, shutdown.clone()));

    // The operator reads any balance, so no identity provider is needed.
    let http = reqwest::Client::new();
    let read_balance = || {
        let request = http.get(format!("{base}/v1/users/someone/balance"));
        Reply::send(request.header("x-admin-key", CORE_ADMIN_KEY))
    };
    // Take the only connection.
    let busy = db.acquire().await.unwrap();
    let started = std::time::Instant::now();
    let reply = read_balance().await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert_eq!(reply.code(), "overloaded");
    assert_eq!(reply.headers["retry-after"], "1");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shed promptly, not hung"
    );
    drop(busy);
    assert_eq!(
        read_balance().await.status,
        StatusCode::NOT_FOUND,
        "served again once a connection is free"
    );
    shutdown.cancel();
}
