//! Schema, sessions, seed data, the backstop index, the ops endpoints and
//! retention. Bad input is in `bad_input.rs`, dependency failures in
//! `outages.rs`.

mod common;

use std::time::Duration;

use common::spawn_app;
use reqwest::StatusCode;
use sea_orm_migration::MigratorTrait;

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
    let campaigns: i64 = sqlx::query_scalar("SELECT count(*) FROM coupon_campaigns")
        .fetch_one(app.db().pool())
        .await
        .unwrap();
    assert_eq!(campaigns, 0, "nor any coupon campaign");

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
    let campaigns: Vec<(i32, Option<i64>)> =
        sqlx::query_as("SELECT quantity, concert_id FROM coupon_campaigns ORDER BY id")
            .fetch_all(app.db().pool())
            .await
            .unwrap();
    assert_eq!(
        campaigns,
        vec![(100, Some(created.concert_id)), (500, None)],
        "the demo campaigns: one for the concert, one for any show"
    );
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
    let second = app.access_token(show.performance_id, "second").await;
    app.hold(&token, show.performance_id, &show.seat_ids).await;
    app.hold(&second, show.performance_id, &show.seat_ids).await;
    let metrics = app.metrics_text().await;
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
        let metrics = app.metrics_text().await;
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
