//! Identity against the real stack: the fan is the identity token's
//! subject, queue tokens work only for the fan they name, identity tokens
//! that fail verification are refused, gRPC needs the service credential,
//! and `payment.completed` frees only the session it names.

mod common;

use std::{collections::HashMap, time::Duration};

use common::{
    QUEUE_TOKEN, Reply, claim, event_id, eventually, identity, issuer, release_session, room,
    settings, settings_from, spawn_app, spawn_app_with, token, verify,
};
use devstack::issuer::{DEFAULT_AUDIENCE, Issuer};
use events::{Envelope, PaymentCompleted};
use onsale_proto::queue::v1::{
    GetStatsRequest, ReleaseAccessRequest, ReleaseReason, VerifyAccessBatchRequest,
    VerifyAccessRequest, waiting_room_client::WaitingRoomClient,
};
use platform::settings::Secret;
use reqwest::StatusCode;
use serde_json::json;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

/// Asserts a 401 `invalid_identity_token` with its `WWW-Authenticate`.
fn assert_invalid_identity(reply: &Reply, case: &str) {
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::UNAUTHORIZED, "invalid_identity_token"),
        "{case}: {}",
        reply.body
    );
    assert_eq!(
        reply.headers["www-authenticate"], "Bearer error=\"invalid_token\"",
        "{case}"
    );
}

#[tokio::test]
async fn fan_a_cannot_enter_poll_or_leave_as_fan_b() {
    let app = spawn_app().await;
    let event = event_id();
    // One slot, taken, and no admissions to speak of: the line stays put.
    app.open_stalled_room(&event, 1).await;
    let b = token(&app.enter(&event, "fan-b").await.body);

    // A body naming another fan is refused; the fan comes from the token.
    let as_b = Reply::send(
        app.enter_request(&event)
            .bearer_auth(identity("fan-a"))
            .json(&json!({"user_id": "fan-b"})),
    )
    .await;
    assert_eq!(
        (as_b.status, as_b.code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    assert!(as_b.is_problem());
    let own = Reply::send(
        app.enter_request(&event)
            .bearer_auth(identity("fan-a"))
            .json(&json!({})),
    )
    .await;
    assert_eq!(own.status, StatusCode::CREATED, "{}", own.body);
    assert_eq!(own.body["position"], 2);
    assert_eq!(common::subject_of(&token(&own.body)).unwrap(), "fan-a");

    // B's queue token does not work for A, to poll or to leave.
    for reply in [
        app.status_as(&event, "fan-a", &b).await,
        app.leave_as(&event, "fan-a", &b).await,
    ] {
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::FORBIDDEN, "token_subject_mismatch"),
            "{}",
            reply.body
        );
        assert!(reply.is_problem());
    }
    assert_eq!(app.status(&event, &b).await.body["position"], 1);
    let stats = app.stats(&event).await;
    assert_eq!(stats["entered_total"], 3);
    assert_eq!(stats["left_waiting_total"], 0);

    // A queue token where the identity token belongs is no identity.
    let old_style = Reply::send(app.status_request(&event).bearer_auth(&b)).await;
    assert_invalid_identity(&old_style, "a queue token in Authorization");
}

#[tokio::test]
async fn fan_a_cannot_release_fan_bs_session() {
    let app = spawn_app().await;
    let event = event_id();
    app.open_room(&event, room(5, 100.0)).await;
    let mut access = HashMap::new();
    for fan in ["fan-a", "fan-b"] {
        access.insert(fan, app.admitted(&event, fan).await.1);
    }
    let sid = |fan: &str| claim(&access[fan], "sid").unwrap();
    for (user, session) in [("fan-b", sid("fan-a")), ("fan-a", sid("fan-b"))] {
        let released = release_session(&app, &event, user, &session, ReleaseReason::Completed)
            .await
            .unwrap();
        assert!(!released, "{user} released with session {session}");
    }
    assert_eq!(
        verify(&app, &event, &access["fan-a"]).await.unwrap(),
        "fan-a"
    );
    assert_eq!(
        verify(&app, &event, &access["fan-b"]).await.unwrap(),
        "fan-b"
    );
    assert_eq!(app.stats(&event).await["active"], 2);
}

#[tokio::test]
async fn identity_tokens_that_are_missing_foreign_expired_or_for_another_audience_are_refused() {
    let mut s = settings();
    // No leeway, so a token a second old is expired for good.
    s.identity.leeway_seconds = 0;
    let app = spawn_app_with(s).await;
    let event = event_id();
    app.open_room(&event, room(5, 100.0)).await;

    for request in [
        app.enter_request(&event),
        app.status_request(&event).header(QUEUE_TOKEN, "x.y.z"),
        app.leave_request(&event).header(QUEUE_TOKEN, "x.y.z"),
    ] {
        let reply = Reply::send(request).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::UNAUTHORIZED, "missing_identity_token")
        );
    }

    // Same issuer URL, keys of its own: signed by a key the issuer never
    // published.
    let dir = std::env::temp_dir().join(format!(
        "queue-impostor-{}",
        devstack::testing::unique_suffix()
    ));
    let impostor = Issuer::open(&dir, issuer().url()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let short_lived = issuer().mint("fan-1", 1, DEFAULT_AUDIENCE).unwrap();
    let cases = [
        ("garbage", "not-a-jwt".to_owned()),
        (
            "another audience",
            issuer().mint("fan-1", 600, "another-app").unwrap(),
        ),
        (
            "an impostor's key",
            impostor.mint("fan-1", 600, DEFAULT_AUDIENCE).unwrap(),
        ),
    ];
    for (case, bad) in &cases {
        let reply = Reply::send(app.enter_request(&event).bearer_auth(bad)).await;
        assert_invalid_identity(&reply, case);
    }
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let reply = Reply::send(app.enter_request(&event).bearer_auth(&short_lived)).await;
    assert_invalid_identity(&reply, "expired");
    assert_eq!(app.stats(&event).await["entered_total"], 0);
}

#[tokio::test]
async fn grpc_calls_without_the_service_credential_are_unauthenticated_and_health_still_answers() {
    let app = spawn_app().await;
    let event = event_id();
    app.open_room(&event, room(5, 100.0)).await;
    let stats = || GetStatsRequest {
        event_id: event.clone(),
    };
    let verify_request = || VerifyAccessRequest {
        event_id: event.clone(),
        access_token: "x.y.z".into(),
        accept_completed: false,
    };

    let mut bare = WaitingRoomClient::new(app.channel().await);
    let refusals = [
        bare.get_stats(stats()).await.map(|_| ()),
        bare.verify_access(verify_request()).await.map(|_| ()),
        bare.verify_access_batch(VerifyAccessBatchRequest {
            requests: vec![verify_request()],
        })
        .await
        .map(|_| ()),
        bare.release_access(ReleaseAccessRequest {
            event_id: event.clone(),
            user_id: "fan-1".into(),
            reason: ReleaseReason::Completed as i32,
            session_id: "1".into(),
        })
        .await
        .map(|_| ()),
    ];
    for refusal in refusals {
        assert_eq!(refusal.unwrap_err().code(), Code::Unauthenticated);
    }
    let wrong_key = platform::service_auth::present(Secret::from("a-wrong-service-key".to_owned()));
    let mut wrong = WaitingRoomClient::with_interceptor(app.channel().await, wrong_key);
    assert_eq!(
        wrong.get_stats(stats()).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    // Health needs no credential; the credential opens the service.
    assert_eq!(app.grpc_health().await, ServingStatus::Serving as i32);
    let answered = app.grpc().await.get_stats(stats()).await.unwrap();
    assert_eq!(answered.into_inner().capacity, 5);
}

/// `payment.completed` of `user`'s purchase in `session` (`None`: an event
/// written before sessions were recorded).
fn payment(performance: i64, user: &str, session: Option<String>) -> Vec<u8> {
    let data = PaymentCompleted {
        payment_id: uuid::Uuid::now_v7(),
        reservation_id: uuid::Uuid::now_v7(),
        user_id: user.to_owned(),
        session_id: session,
        performance_id: performance,
        amount_krw: 50_000,
        seat_ids: vec![1],
        paid_at: chrono::Utc::now(),
    };
    // One key for every event of the test: one partition, so they are
    // handled in the order sent.
    Envelope::new("late-payments", data).to_json()
}

#[tokio::test]
async fn a_late_payment_completed_for_an_old_session_leaves_the_fans_new_session_active() {
    let stack = devstack::testing::stack();
    let suffix = devstack::testing::isolated_topics().await;
    let group = format!("test{suffix}");
    let prefix = format!("{}:", devstack::testing::unique_suffix());
    let settings = settings_from(
        &stack.redis_urls.join(","),
        &prefix,
        &[
            ("ONSALE__KAFKA__BROKERS", &stack.kafka_brokers),
            ("ONSALE__KAFKA__TOPIC_SUFFIX", &suffix),
            ("ONSALE__KAFKA__GROUP_PREFIX", &group),
            ("ONSALE__QUEUE__CONSUME_EVENTS", "true"),
        ],
    );
    let kafka = settings.kafka.clone();
    let app = spawn_app_with(settings).await;
    // payment.completed names the performance by number.
    let performance = i64::from(rand_u32());
    let event = performance.to_string();
    app.open_room(&event, room(5, 100.0)).await;

    // The buyer's first session ends, a second one is active.
    let (old_access, new_access) = app.readmitted(&event, "buyer").await;
    let (_, marker_access) = app.admitted(&event, "marker").await;

    let producer = events::producer::Producer::new(&kafka, Duration::from_secs(10)).unwrap();
    let topic = kafka.topic(events::topics::PAYMENT_COMPLETED);
    for record in [
        payment(performance, "buyer", claim(&old_access, "sid")),
        payment(performance, "buyer", None),
        payment(performance, "marker", claim(&marker_access, "sid")),
    ] {
        producer
            .send(&topic, "late-payments", &record, &HashMap::new())
            .await
            .expect("the broker takes the event");
    }

    // The marker's release shows that the two events before it were
    // handled too.
    eventually(Duration::from_secs(30), || async {
        verify(&app, &event, &marker_access)
            .await
            .is_err_and(|status| status.code() == Code::PermissionDenied)
            .then_some(())
    })
    .await;
    assert_eq!(verify(&app, &event, &new_access).await.unwrap(), "buyer");
    let stats = app.stats(&event).await;
    assert_eq!(stats["active"], 1);
    assert_eq!(stats["exited"]["completed"], 1);
}

/// A number no other test run uses for its performance, from a fresh
/// unique suffix (`t` + hex digits).
fn rand_u32() -> u32 {
    let suffix = devstack::testing::unique_suffix();
    u32::from_str_radix(&suffix[1..9], 16).unwrap()
}
