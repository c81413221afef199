//! The edges of the API against the real stack: bad inputs get problems
//! with stable codes, a paused or closed room (and its keys' expiry),
//! probes, metrics, OpenAPI,
//! gRPC health, and Redis being unreachable.

mod common;

use common::{
    Reply, event_id, identity, release_session, room, settings_with, spawn_app, spawn_app_with,
    token,
};
use onsale_proto::queue::v1::{GetStatsRequest, ReleaseReason, VerifyAccessRequest};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test]
async fn bad_inputs_get_problem_json_with_a_stable_code() {
    let app = spawn_app().await;
    let event = event_id();
    app.open_room(&event, room(5, 1.0)).await;

    let reply = app.enter("bad{id}", "fan").await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::BAD_REQUEST, "invalid_event_id")
    );
    assert!(reply.is_problem());
    let reply = app.enter(&"e".repeat(65), "fan").await;
    assert_eq!(reply.code(), "invalid_event_id");
    // The issuer signs any subject; one that is no valid user id is an
    // invalid identity, whatever the signature.
    for subject in ["u".repeat(65), "has space".to_owned()] {
        let reply = app.enter(&event, &subject).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::UNAUTHORIZED, "invalid_identity_token"),
            "{subject:?}"
        );
    }

    let signed_in = || app.enter_request(&event).bearer_auth(identity("fan"));
    let raw = Reply::send(
        signed_in()
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(
        (raw.status, raw.code()),
        (StatusCode::BAD_REQUEST, "malformed_json")
    );
    let wrong_shape = Reply::send(signed_in().json(&json!({"user": 5}))).await;
    assert_eq!(
        (wrong_shape.status, wrong_shape.code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    assert!(wrong_shape.is_problem());

    let reply = Reply::send(app.status_request(&event)).await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::UNAUTHORIZED, "missing_identity_token")
    );
    for request in [app.status_request(&event), app.leave_request(&event)] {
        let reply = Reply::send(request.bearer_auth(identity("fan"))).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::UNAUTHORIZED, "missing_token")
        );
    }

    let reply = app.enter(&event_id(), "fan").await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::NOT_FOUND, "waiting_room_not_found")
    );

    let no_key = app
        .http
        .put(format!("{}/admin/v1/events/{event}/waiting-room", app.base))
        .json(&room(5, 1.0))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), StatusCode::UNAUTHORIZED);
    let wrong_key = app
        .http
        .get(format!("{}/admin/v1/events/{event}/waiting-room", app.base))
        .header("x-admin-key", "guess")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_key.status(), StatusCode::UNAUTHORIZED);

    let bad_room = app
        .http
        .put(format!("{}/admin/v1/events/{event}/waiting-room", app.base))
        .header("x-admin-key", common::ADMIN_KEY)
        .json(&json!({"capacity": 0, "state": "open"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_room.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        bad_room.json::<Value>().await.unwrap()["code"],
        "invalid_room_settings"
    );

    let bad_grpc = app
        .grpc()
        .await
        .verify_access(VerifyAccessRequest {
            event_id: "no spaces".into(),
            access_token: "x".into(),
            accept_completed: false,
        })
        .await
        .unwrap_err();
    assert_eq!(bad_grpc.code(), Code::InvalidArgument);
    for (user, session) in [("fan", ""), ("has space", "1")] {
        let refused = release_session(&app, &event, user, session, ReleaseReason::Completed)
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "{user:?} {session:?}"
        );
    }

    let reply = app.get("/no/such/path").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.is_problem());
}

#[tokio::test]
async fn a_paused_room_answers_503_with_retry_after_and_a_closed_room_403() {
    let app = spawn_app().await;
    let event = event_id();
    app.open_stalled_room(&event, 5).await;
    let waiting = token(&app.enter(&event, "fan-1").await.body);

    let mut paused = room(5, 0.001);
    paused["state"] = json!("paused");
    app.open_room(&event, paused).await;
    let reply = app.enter(&event, "fan-2").await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "waiting_room_paused")
    );
    assert!(reply.headers.contains_key("retry-after"));
    assert_eq!(
        app.status(&event, &waiting).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // Reopening keeps the places.
    app.open_room(&event, room(5, 0.001)).await;
    assert_eq!(app.status(&event, &waiting).await.body["position"], 1);

    let mut closed = room(5, 0.001);
    closed["state"] = json!("closed");
    app.open_room(&event, closed).await;
    let reply = app.enter(&event, "fan-3").await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::FORBIDDEN, "waiting_room_closed")
    );
    assert_eq!(
        app.status(&event, &waiting).await.status,
        StatusCode::FORBIDDEN
    );

    // A closed room's keys expire (after the access TTL plus a day), and
    // reopening it keeps them again.
    let ttls = room_key_ttls(&app, &event).await;
    assert!(
        ttls.iter()
            .all(|(_, ttl)| (86_400..=86_400 + 600).contains(ttl)),
        "{ttls:?}"
    );
    app.open_room(&event, room(5, 0.001)).await;
    let ttls = room_key_ttls(&app, &event).await;
    assert!(ttls.iter().all(|(_, ttl)| *ttl == -1), "{ttls:?}");
    assert_eq!(app.status(&event, &waiting).await.body["position"], 1);
}

#[tokio::test]
async fn a_purchase_released_after_the_room_closed_leaves_no_key_without_a_ttl() {
    let app = spawn_app().await;
    let event = event_id();
    app.open_room(&event, room(5, 100.0)).await;
    let (_, access) = app.admitted(&event, "fan-1").await;
    let mut closed = room(5, 100.0);
    closed["state"] = json!("closed");
    app.open_room(&event, closed).await;
    // The fan's payment completes after the close: its session id goes
    // into `done`, a key the room did not have yet.
    assert!(common::release(&app, &event, &access).await);
    let ttls = room_key_ttls(&app, &event).await;
    assert!(
        ttls.iter().any(|(key, _)| key.ends_with(":done")),
        "{ttls:?}"
    );
    assert!(ttls.iter().all(|(_, ttl)| *ttl > 0), "{ttls:?}");
}

/// TTL in seconds of each existing key of the room `event` (-1: none).
async fn room_key_ttls(app: &common::TestApp, event: &str) -> Vec<(String, i64)> {
    let client =
        redis::cluster::ClusterClient::new(devstack::testing::stack().redis_urls.clone()).unwrap();
    let mut conn = client.get_async_connection().await.unwrap();
    let event = queue_service::domain::EventId::parse(event).unwrap();
    let mut ttls = Vec::new();
    for key in queue_service::layout::event_keys(&app.prefix, &event) {
        let ttl: i64 = redis::cmd("TTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if ttl != -2 {
            ttls.push((key, ttl));
        }
    }
    assert!(ttls.len() >= 3, "the room has keys: {ttls:?}");
    ttls
}

#[tokio::test]
async fn probes_metrics_openapi_and_grpc_health_are_served() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body["ready"], true);
    let doc = app.get("/openapi.json").await;
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3.1"));
    let schemes = &doc.body["components"]["securitySchemes"];
    assert_eq!(schemes["identity"]["scheme"], "bearer");
    assert_eq!(schemes["queue_token"]["name"], "Onsale-Queue-Token");

    let event = event_id();
    app.open_room(&event, room(5, 100.0)).await;
    let t = token(&app.enter(&event, "fan-1").await.body);
    app.until_active(&event, &t).await;
    let metrics = app.client.queue_metrics().await.unwrap();
    assert!(metrics.contains("queue_entered_total"), "{metrics}");
    assert!(metrics.contains("queue_redis_script_duration_seconds"));
    assert!(metrics.contains("http_server_request_duration_seconds"));

    // Health needs no service credential.
    assert_eq!(app.grpc_health().await, ServingStatus::Serving as i32);
}

#[tokio::test]
async fn with_redis_unreachable_requests_get_503_and_readiness_is_false() {
    // Nothing listens on port 1.
    let app = spawn_app_with(settings_with("redis://127.0.0.1:1", "down:")).await;
    let reply = app.enter(&event_id(), "fan-1").await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
    assert!(reply.headers.contains_key("retry-after"));
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["ready"], false);
    let grpc = app
        .grpc()
        .await
        .get_stats(GetStatsRequest {
            event_id: "perf-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(grpc.code(), Code::Unavailable);
    app.stop().await;
}
