//! Schema, bad input, dependency failures and the ops endpoints.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use common::{CORE_ADMIN_KEY, Reply, spawn_app};
use platform::shutdown::CancellationToken;
use reqwest::StatusCode;
use sea_orm_migration::MigratorTrait;
use serde_json::json;

#[tokio::test]
async fn migrations_apply_to_an_empty_database() {
    let url = devstack::testing::fresh_database().await;
    let settings = common::core_settings(&url, "http://127.0.0.1:1", &[]);
    let app = core_service::build(settings).await.unwrap();
    core_service::migrate(app.db()).await.unwrap();
    // Applying again is a no-op.
    core_service::migrate(app.db()).await.unwrap();
    let pending = core_service::migration::Migrator::get_pending_migrations(app.db().orm())
        .await
        .unwrap();
    assert!(pending.is_empty());

    let pool = app.db().pool();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for table in [
        "concerts",
        "idempotency_keys",
        "ledger_entries",
        "outbox",
        "payments",
        "performances",
        "reservation_seats",
        "reservations",
        "seats",
        "users",
    ] {
        assert!(
            tables.iter().any(|t| t == table),
            "{table} missing from {tables:?}"
        );
    }
    let outbox: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text, is_nullable::text FROM information_schema.columns \
         WHERE table_name = 'outbox' ORDER BY ordinal_position",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let expected = [
        ("id", "bigint", "NO"),
        ("event_id", "uuid", "NO"),
        ("topic", "text", "NO"),
        ("aggregate_key", "text", "NO"),
        ("payload", "jsonb", "NO"),
        ("headers", "jsonb", "NO"),
        ("created_at", "timestamp with time zone", "NO"),
        ("published_at", "timestamp with time zone", "YES"),
        ("attempts", "integer", "NO"),
        ("last_error", "text", "YES"),
    ];
    let got: Vec<(&str, &str, &str)> = outbox
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    assert_eq!(got, expected);
    let backstop: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_indexes WHERE indexname IN ('outbox_unpublished', 'reservation_seats_one_live_claim', 'reservations_held_until')",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(backstop, 3);
}

#[tokio::test]
async fn every_pooled_session_carries_the_configured_timeouts() {
    let url = devstack::testing::fresh_database().await;
    let settings = common::core_settings(
        &url,
        "http://127.0.0.1:1",
        &[
            ("ONSALE__DATABASE__STATEMENT_TIMEOUT_MS", "1500"),
            ("ONSALE__DATABASE__LOCK_TIMEOUT_MS", "150"),
        ],
    );
    let app = core_service::build(settings).await.unwrap();
    for _ in 0..3 {
        let mut conn = app.db().acquire().await.unwrap();
        let statement: String = sqlx::query_scalar("SHOW statement_timeout")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let lock: String = sqlx::query_scalar("SHOW lock_timeout")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!((statement.as_str(), lock.as_str()), ("1500ms", "150ms"));
    }
    // A statement past the timeout is cancelled, and reported as 503.
    let slow = sqlx::query("SELECT pg_sleep(3)")
        .execute(app.db().pool())
        .await
        .unwrap_err();
    assert_eq!(
        core_service::error::ApiError::from(slow).status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn seed_creates_demo_data_locally_and_refuses_in_production() {
    let url = devstack::testing::fresh_database().await;
    let settings = common::core_settings(&url, "http://127.0.0.1:1", &[]);
    let app = core_service::build(settings).await.unwrap();
    core_service::migrate(app.db()).await.unwrap();
    let refused =
        core_service::seed::seed(app.db(), platform::settings::Environment::Production).await;
    assert!(refused.is_err());
    let concerts: i64 = sqlx::query_scalar("SELECT count(*) FROM concerts")
        .fetch_one(app.db().pool())
        .await
        .unwrap();
    assert_eq!(concerts, 0, "production refusal wrote nothing");

    let created = core_service::seed::seed(app.db(), platform::settings::Environment::Local)
        .await
        .unwrap();
    assert_eq!(created.performances.len(), 2);
    assert_eq!(created.performances[0].seat_ids.len(), 200);
    let fans: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE balance_krw = 1000000")
        .fetch_one(app.db().pool())
        .await
        .unwrap();
    assert_eq!(fans, 5);
}

#[tokio::test]
async fn the_backstop_index_refuses_a_second_live_claim_on_a_seat() {
    let app = spawn_app().await;
    let show = app.create_show(1, 1, 1_000, 1).await;
    let token = app.access_token(show.performance_id, "first").await;
    assert_eq!(
        app.hold(&token, show.performance_id, &show.seat_ids)
            .await
            .status,
        StatusCode::CREATED
    );
    // Bypass the application: a second active claim on the seat is refused
    // by the database itself.
    let forged = uuid::Uuid::now_v7();
    let mut tx = app.db.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO reservations (id, user_id, performance_id, status, amount_krw, held_until) \
         VALUES ($1, 'forger', $2, 'held', 1000, now() + interval '5 minutes')",
    )
    .bind(forged)
    .bind(show.performance_id)
    .execute(&mut *tx)
    .await
    .unwrap();
    let second = sqlx::query(
        "INSERT INTO reservation_seats (reservation_id, seat_id, price_krw) VALUES ($1, $2, 1000)",
    )
    .bind(forged)
    .bind(show.seat_ids[0])
    .execute(&mut *tx)
    .await;
    let error = second.unwrap_err();
    assert_eq!(
        error.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("23505")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_status_and_problem_code() {
    let app = spawn_app().await;
    let show = app.create_show(1, 10, 10_000, 2).await;
    let token = app.access_token(show.performance_id, "careful").await;
    let other = app.access_token(show.performance_id, "other").await;
    let base = &app.base;
    let http = &app.http;

    let send = |request: reqwest::RequestBuilder| async move {
        Reply::from(request.send().await.unwrap()).await
    };
    let charge = |body: &'static str| {
        http.post(format!("{base}/v1/users/careful/balance/charges"))
            .header("x-admin-key", CORE_ADMIN_KEY)
            .header("content-type", "application/json")
            .body(body)
    };
    let hold = |token: &str, body: serde_json::Value| {
        http.post(format!("{base}/v1/reservations"))
            .bearer_auth(token)
            .json(&body)
    };

    let held = app
        .hold(&token, show.performance_id, &show.seat_ids[..1])
        .await;
    let reservation = held.body["reservation_id"].as_str().unwrap().to_owned();
    let perf = show.performance_id;

    let cases: Vec<(&str, reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            "malformed json",
            charge("{\"amount\": "),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "negative amount",
            charge("{\"amount\": -5}"),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "zero amount",
            charge("{\"amount\": 0}"),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "amount beyond i64",
            charge("{\"amount\": 9223372036854775808}"),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "fractional amount",
            charge("{\"amount\": 1.5}"),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "string amount",
            charge("{\"amount\": \"100\"}"),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "charge without admin key",
            http.post(format!("{base}/v1/users/careful/balance/charges"))
                .json(&json!({"amount": -5})),
            StatusCode::UNAUTHORIZED,
            "admin_key_required",
        ),
        (
            "user id with a space",
            http.get(format!("{base}/v1/users/has%20space/balance")),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "unknown user",
            http.get(format!("{base}/v1/users/nobody/balance")),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "non-numeric concert id",
            http.get(format!("{base}/v1/concerts/abc")),
            StatusCode::BAD_REQUEST,
            "malformed_path",
        ),
        (
            "negative concert id",
            http.get(format!("{base}/v1/concerts/-3")),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "unknown concert",
            http.get(format!("{base}/v1/concerts/999999")),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "unknown performance",
            http.get(format!("{base}/v1/performances/999999/seats")),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "bad paging",
            http.get(format!("{base}/v1/concerts?limit=0")),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "malformed reservation id",
            http.get(format!("{base}/v1/reservations/nope")),
            StatusCode::BAD_REQUEST,
            "malformed_path",
        ),
        (
            "unknown reservation",
            http.get(format!("{base}/v1/reservations/{}", uuid::Uuid::now_v7())),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "wrong method",
            http.put(format!("{base}/v1/reservations")),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "unknown path",
            http.get(format!("{base}/v2/nothing")),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "hold without token",
            http.post(format!("{base}/v1/reservations"))
                .json(&json!({"performance_id": perf, "seat_ids": [show.seat_ids[1]]})),
            StatusCode::UNAUTHORIZED,
            "missing_access_token",
        ),
        (
            "hold with a forged token",
            hold(
                "not.a.token",
                json!({"performance_id": perf, "seat_ids": [show.seat_ids[1]]}),
            ),
            StatusCode::UNAUTHORIZED,
            "invalid_access_token",
        ),
        (
            "too many seats",
            hold(
                &token,
                json!({"performance_id": perf, "seat_ids": &show.seat_ids[1..4]}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_seats",
        ),
        (
            "duplicate seats",
            hold(
                &token,
                json!({"performance_id": perf, "seat_ids": [show.seat_ids[1], show.seat_ids[1]]}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "duplicate_seats",
        ),
        (
            "no seats",
            hold(&token, json!({"performance_id": perf, "seat_ids": []})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_seats",
        ),
        (
            "seat of another performance",
            hold(
                &token,
                json!({"performance_id": perf, "seat_ids": [999_999]}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_seats",
        ),
        (
            "negative seat id",
            hold(&token, json!({"performance_id": perf, "seat_ids": [-1]})),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "token of another performance",
            hold(
                &token,
                json!({"performance_id": perf + 1000, "seat_ids": [show.seat_ids[1]]}),
            ),
            StatusCode::FORBIDDEN,
            "access_denied",
        ),
        (
            "unknown field",
            hold(
                &token,
                json!({"performance_id": perf, "seat_ids": [show.seat_ids[1]], "user_id": "someone-else"}),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "payment without Idempotency-Key",
            http.post(format!("{base}/v1/payments"))
                .bearer_auth(&token)
                .json(&json!({"reservation_id": reservation})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "payment of an unknown reservation",
            http.post(format!("{base}/v1/payments"))
                .bearer_auth(&token)
                .header("idempotency-key", "k1")
                .json(&json!({"reservation_id": uuid::Uuid::now_v7()})),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "payment of another user's reservation",
            http.post(format!("{base}/v1/payments"))
                .bearer_auth(&other)
                .header("idempotency-key", "k2")
                .json(&json!({"reservation_id": reservation})),
            StatusCode::FORBIDDEN,
            "not_owner",
        ),
        (
            "admin without key",
            http.post(format!("{base}/admin/v1/concerts"))
                .json(&json!({})),
            StatusCode::UNAUTHORIZED,
            "admin_key_required",
        ),
    ];
    for (name, request, status, code) in cases {
        let reply = send(request).await;
        assert_eq!(reply.status, status, "{name}: {}", reply.body);
        assert!(reply.is_problem(), "{name}: not a problem+json");
        assert_eq!(reply.code(), code, "{name}: {}", reply.body);
    }

    // A balance that would overflow i64 is refused and left unchanged.
    assert_eq!(
        app.charge("careful", i64::MAX).await.status,
        StatusCode::CREATED
    );
    let overflow = app.charge("careful", 1).await;
    assert_eq!(overflow.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(overflow.code(), "balance_overflow");
    assert_eq!(app.balance("careful").await, i64::MAX);
    // None of the failures left a trace.
    assert_eq!(app.scalar("SELECT count(*) FROM reservations").await, 1);
    assert_eq!(app.scalar("SELECT count(*) FROM idempotency_keys").await, 0);
}

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

/// Starts core-service with queue-service at `queue_url` (500 ms timeout),
/// sends one hold and checks it was refused with 503 `unavailable`.
async fn hold_with_queue_service_at(queue_url: &str) -> Reply {
    let url = devstack::testing::fresh_database().await;
    let settings = common::core_settings(
        &url,
        queue_url,
        &[("ONSALE__CORE__QUEUE_TIMEOUT_MS", "500")],
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
            .bearer_auth("some.access.token")
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
    let (prefix, rest) = url.split_once('@').unwrap();
    let (host, db_path) = rest.split_once('/').unwrap();
    let proxied = format!(
        "{prefix}@{}/{db_path}",
        proxy(host.to_owned(), up.clone(), shutdown.clone()).await
    );
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
async fn ops_endpoints_serve_health_openapi_and_metrics() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body["database"], true);
    let openapi = app.get("/openapi.json").await;
    assert!(openapi.body["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(openapi.body["paths"]["/v1/payments"]["post"].is_object());

    let show = app.create_show(1, 1, 1_000, 1).await;
    let token = app.access_token(show.performance_id, "metered").await;
    app.hold(&token, show.performance_id, &show.seat_ids).await;
    app.hold(&token, show.performance_id, &show.seat_ids).await;
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("reservations_total{result=\"held\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("reservations_total{result=\"seat_taken\"}"));
    assert!(metrics.contains("http_server_request_duration_seconds"));
    assert!(metrics.contains("outcome=\"business\""));
    // Sampled gauges: the pool and the outbox backlog (one expiration row).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = app
            .http
            .get(format!("{}/metrics", app.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if [
            "db_pool_connections_in_use",
            "db_pool_connections_idle",
            "db_pool_requests_waiting",
            "outbox_pending",
            "outbox_oldest_age_seconds",
        ]
        .iter()
        .all(|name| metrics.contains(name))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gauges missing: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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

    // Take the only connection.
    let busy = db.acquire().await.unwrap();
    let started = std::time::Instant::now();
    let reply = Reply::from(
        reqwest::get(format!("{base}/v1/users/someone/balance"))
            .await
            .unwrap(),
    )
    .await;
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
    let reply = Reply::from(
        reqwest::get(format!("{base}/v1/users/someone/balance"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::NOT_FOUND,
        "served again once a connection is free"
    );
    shutdown.cancel();
}

#[tokio::test]
async fn idempotency_keys_are_forgotten_after_their_retention() {
    let url = devstack::testing::fresh_database().await;
    let settings = common::core_settings(&url, "http://127.0.0.1:1", &[]);
    let app = core_service::build(settings).await.unwrap();
    core_service::migrate(app.db()).await.unwrap();
    sqlx::query(
        "INSERT INTO idempotency_keys (user_id, key, fingerprint, state, locked_until, response_status, response_body, created_at) VALUES \
         ('u', 'old-done', 'r', 'completed', now() - interval '2 days', 201, '{}', now() - interval '2 days'), \
         ('u', 'old-abandoned', 'r', 'in_flight', now() - interval '2 days', NULL, NULL, now() - interval '2 days'), \
         ('u', 'old-but-leased', 'r', 'in_flight', now() + interval '1 minute', NULL, NULL, now() - interval '2 days'), \
         ('u', 'recent-done', 'r', 'completed', now(), 201, '{}', now())",
    )
    .execute(app.db().pool())
    .await
    .unwrap();
    let retention = Duration::from_secs(24 * 3_600);
    let deleted = core_service::store::payments::purge_idempotency_keys(app.db(), retention, 1)
        .await
        .unwrap();
    assert_eq!(deleted, 1, "batches are bounded");
    let deleted = core_service::store::payments::purge_idempotency_keys(app.db(), retention, 100)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    let left: Vec<String> = sqlx::query_scalar("SELECT key FROM idempotency_keys ORDER BY key")
        .fetch_all(app.db().pool())
        .await
        .unwrap();
    assert_eq!(left, ["old-but-leased", "recent-done"]);
}
