//! The waiting room against the real Redis Cluster from devstack. Every test
//! starts its own instances on port 0 with its own key prefix and event ids.

mod common;

use std::{
    collections::{BTreeMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use common::{
    TestApp, event_id, eventually, room, settings, settings_with, spawn_app, spawn_app_with,
};
use onsale_proto::queue::v1::{
    GetStatsRequest, ReleaseAccessRequest, ReleaseReason, VerifyAccessBatchRequest,
    VerifyAccessRequest, VerifyAccessResponse, verify_access_result::Outcome,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::Code;

fn token(body: &Value) -> String {
    body["queue_token"]
        .as_str()
        .expect("queue_token")
        .to_owned()
}

async fn verify(app: &TestApp, event: &str, access_token: &str) -> Result<String, tonic::Status> {
    verify_accepting_completed(app, event, access_token, false)
        .await
        .map(|r| r.user_id)
}

async fn verify_accepting_completed(
    app: &TestApp,
    event: &str,
    access_token: &str,
    accept_completed: bool,
) -> Result<VerifyAccessResponse, tonic::Status> {
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

async fn release(app: &TestApp, event: &str, user: &str) -> bool {
    release_for(app, event, user, ReleaseReason::Completed).await
}

async fn release_for(app: &TestApp, event: &str, user: &str, reason: ReleaseReason) -> bool {
    let request = ReleaseAccessRequest {
        event_id: event.to_owned(),
        user_id: user.to_owned(),
        reason: reason as i32,
    };
    app.grpc()
        .await
        .release_access(request)
        .await
        .unwrap()
        .into_inner()
        .released
}

#[tokio::test]
async fn entering_twice_keeps_the_same_place_with_201_then_200() {
    let app = spawn_app().await;
    let event = event_id();
    // Admission never catches up with this line: the places stay put.
    app.open_room(&event, room(1, 0.001)).await;
    let blocker = app.enter(&event, "blocker").await;
    app.until_active(&event, &token(&blocker.body)).await;

    let first = app.enter(&event, "fan-a").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.body["status"], "waiting");
    assert_eq!(first.body["position"], 1);
    assert_eq!(first.body["ahead"], 0);
    assert!(first.body["poll_after_ms"].as_u64().unwrap() >= 1000);
    assert!(first.body.get("access_token").is_none());

    let second_fan = app.enter(&event, "fan-b").await;
    assert_eq!(second_fan.body["position"], 2);

    let again = app.enter(&event, "fan-a").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["position"], 1);

    let polled = app.status(&event, &token(&again.body)).await;
    assert_eq!(polled.status, StatusCode::OK);
    assert_eq!(polled.body["position"], 1);
    assert_eq!(app.stats(&event).await["entered_total"], 3);
}

#[tokio::test]
async fn two_thousand_concurrent_entries_are_admitted_in_exact_entry_order() {
    const FANS: usize = 2000;
    let event = event_id();
    // Entries go through an instance that does not admit, so every place is
    // taken before admission starts and the entry order is fully known.
    let mut entry_settings = settings();
    entry_settings.queue.admission_enabled = false;
    let shared = entry_settings.clone();
    let front = spawn_app_with(entry_settings).await;
    // 500 fans per second: four ticks of admission at least.
    front.open_room(&event, room(FANS as u64, 500.0)).await;

    let front = Arc::new(front);
    let mut tasks = Vec::new();
    for worker in 0..40 {
        let front = front.clone();
        let event = event.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in (worker..FANS).step_by(40) {
                let user = format!("fan-{i}");
                let reply = front.enter(&event, &user).await;
                assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
                mine.push((
                    reply.body["position"].as_u64().unwrap(),
                    user,
                    token(&reply.body),
                ));
            }
            mine
        }));
    }
    let mut entries = Vec::new();
    for task in tasks {
        entries.extend(task.await.unwrap());
    }
    entries.sort();
    // Nobody left and nobody was admitted, so positions at entry are the
    // arrival numbers: exactly 1..=2000.
    let positions: Vec<u64> = entries.iter().map(|(p, _, _)| *p).collect();
    assert_eq!(positions, (1..=FANS as u64).collect::<Vec<_>>());

    let mut admitting = shared;
    admitting.queue.admission_enabled = true;
    let admitter = spawn_app_with(admitting).await;
    eventually(Duration::from_secs(30), || async {
        (front.stats(&event).await["admitted_total"] == FANS).then_some(())
    })
    .await;

    // Admission time (expiry − TTL) never decreases along the entry order,
    // and admission took several ticks, so order was really exercised.
    let mut expiries = Vec::new();
    for (position, _, queue_token) in &entries {
        let reply = front.status(&event, queue_token).await;
        assert_eq!(
            reply.body["status"], "active",
            "fan at {position}: {}",
            reply.body
        );
        let at =
            chrono::DateTime::parse_from_rfc3339(reply.body["access_expires_at"].as_str().unwrap())
                .unwrap();
        expiries.push(at);
    }
    for (i, pair) in expiries.windows(2).enumerate() {
        assert!(
            pair[0] <= pair[1],
            "fan at position {} was admitted after the fan behind",
            i + 1
        );
    }
    let distinct: HashSet<_> = expiries.iter().collect();
    assert!(
        distinct.len() >= 4,
        "admission ran in {} ticks only",
        distinct.len()
    );
    admitter.stop().await;
}

/// Fans whose status poll (through `app`) says active.
async fn active_fans(app: &TestApp, event: &str, tokens: &BTreeMap<String, String>) -> Vec<String> {
    let mut active = Vec::new();
    for (user, queue_token) in tokens {
        let reply = app.status(event, queue_token).await;
        if reply.body["status"] == "active" {
            active.push(user.clone());
        }
    }
    active
}

#[tokio::test]
async fn three_instances_admitting_at_once_never_exceed_capacity_nor_admit_twice() {
    const CAPACITY: u64 = 25;
    const FANS: usize = 200;
    let event = event_id();
    let base = settings();
    let mut apps = Vec::new();
    for _ in 0..3 {
        apps.push(spawn_app_with(base.clone()).await);
    }
    apps[0].open_room(&event, room(CAPACITY, 1000.0)).await;

    // A sampler watches the active set through a different instance.
    let watching = Arc::new(AtomicBool::new(true));
    let max_seen = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (watching, max_seen) = (watching.clone(), max_seen.clone());
        let mut client = apps[1].grpc().await;
        let event = event.clone();
        tokio::spawn(async move {
            while watching.load(Ordering::Relaxed) {
                let stats = client
                    .get_stats(GetStatsRequest {
                        event_id: event.clone(),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                max_seen.fetch_max(stats.active, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let mut tokens = BTreeMap::new();
    for i in 0..FANS {
        let user = format!("fan-{i}");
        let reply = apps[i % 3].enter(&event, &user).await;
        assert!(reply.status.is_success(), "{}", reply.body);
        tokens.insert(user, token(&reply.body));
    }

    eventually(Duration::from_secs(10), || async {
        (apps[0].stats(&event).await["active"] == CAPACITY).then_some(())
    })
    .await;
    // Let the three loops race a while longer over a full room.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first_wave = active_fans(&apps[2], &event, &tokens).await;
    assert_eq!(first_wave.len() as u64, CAPACITY);
    assert_eq!(apps[0].stats(&event).await["admitted_total"], CAPACITY);

    // Freed slots are reused, by fans who were not admitted before.
    for user in &first_wave[..10] {
        assert!(release(&apps[1], &event, user).await);
    }
    eventually(Duration::from_secs(10), || async {
        let stats = apps[0].stats(&event).await;
        (stats["admitted_total"] == CAPACITY + 10 && stats["active"] == CAPACITY).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second_wave = active_fans(&apps[2], &event, &tokens).await;
    assert_eq!(second_wave.len() as u64, CAPACITY);
    let ever: HashSet<&String> = first_wave.iter().chain(second_wave.iter()).collect();
    let stats = apps[0].stats(&event).await;
    // Every admission went to a different fan.
    assert_eq!(ever.len() as u64, CAPACITY + 10);
    assert_eq!(stats["admitted_total"], CAPACITY + 10);
    assert_eq!(stats["exited"]["completed"], 10);

    watching.store(false, Ordering::Relaxed);
    sampler.await.unwrap();
    let max = max_seen.load(Ordering::Relaxed);
    assert!(max <= CAPACITY, "active set reached {max}");
    assert_eq!(max, CAPACITY);
}

#[tokio::test]
async fn an_admitted_fan_is_active_on_the_next_poll_and_gets_a_verifiable_access_token() {
    let app = spawn_app().await;
    let event = event_id();
    app.open_room(&event, room(10, 100.0)).await;
    let entry = app.enter(&event, "fan-1").await;
    let body = app.until_active(&event, &token(&entry.body)).await;
    assert_eq!(body["position"], 0);
    let access = body["access_token"].as_str().unwrap();
    assert!(body["access_expires_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(verify(&app, &event, access).await.unwrap(), "fan-1");

    // Entering again while active returns the active ticket, not a new place.
    let again = app.enter(&event, "fan-1").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["status"], "active");
}

#[tokio::test]
async fn leaving_gives_up_the_place_or_the_slot_and_the_slot_is_reused() {
    let app = spawn_app().await;
    let event = event_id();
    app.open_room(&event, room(1, 100.0)).await;
    let a = token(&app.enter(&event, "fan-a").await.body);
    app.until_active(&event, &a).await;
    let b = token(&app.enter(&event, "fan-b").await.body);
    let c = token(&app.enter(&event, "fan-c").await.body);
    assert_eq!(app.status(&event, &c).await.body["position"], 2);

    // A waiting fan leaves: the fan behind moves up.
    assert_eq!(app.leave(&event, &b).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.status(&event, &c).await.body["position"], 1);
    let gone = app.status(&event, &b).await;
    assert_eq!(gone.status, StatusCode::GONE);
    assert_eq!(gone.code(), "not_in_line");

    // The active fan leaves: the slot goes to the next fan.
    assert_eq!(app.leave(&event, &a).await.status, StatusCode::NO_CONTENT);
    app.until_active(&event, &c).await;
    // Leaving twice is harmless.
    assert_eq!(app.leave(&event, &a).await.status, StatusCode::NO_CONTENT);

    let stats = app.stats(&event).await;
    assert_eq!(stats["left_waiting_total"], 1);
    assert_eq!(stats["exited"]["left"], 1);
    assert_eq!(stats["admitted_total"], 2);
}

#[tokio::test]
async fn an_access_slot_expires_after_its_ttl_and_is_reused() {
    let app = spawn_app().await;
    let event = event_id();
    app.open_room(
        &event,
        json!({"capacity": 1, "admit_per_second": 100, "access_ttl_seconds": 2, "abandon_after_seconds": 60, "state": "open"}),
    )
    .await;
    let a = token(&app.enter(&event, "fan-a").await.body);
    let active = app.until_active(&event, &a).await;
    let access = active["access_token"].as_str().unwrap().to_owned();
    let b = token(&app.enter(&event, "fan-b").await.body);
    assert_eq!(verify(&app, &event, &access).await.unwrap(), "fan-a");

    app.until_active(&event, &b).await;
    let refused = verify(&app, &event, &access).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert_eq!(app.status(&event, &a).await.status, StatusCode::GONE);
    assert!(
        app.stats(&event).await["exited"]["expired"]
            .as_u64()
            .unwrap()
            >= 1
    );
}

#[tokio::test]
async fn a_silent_fan_is_abandoned_stops_counting_ahead_and_is_never_admitted() {
    let app = spawn_app().await;
    let event = event_id();
    app.open_room(
        &event,
        json!({"capacity": 1, "admit_per_second": 100, "access_ttl_seconds": 600, "abandon_after_seconds": 2, "state": "open"}),
    )
    .await;
    // The holder keeps the only slot, so the line does not move by admission.
    let holder = token(&app.enter(&event, "holder").await.body);
    app.until_active(&event, &holder).await;
    let silent = token(&app.enter(&event, "silent").await.body);
    let polling = token(&app.enter(&event, "polling").await.body);
    assert_eq!(app.status(&event, &polling).await.body["position"], 2);

    // Keep polling well inside the window while the silent fan says nothing
    // for longer than abandon_after_seconds plus one presence window.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let reply = app.status(&event, &polling).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    // The sweep dropped the silent fan: the polling fan is now first.
    assert_eq!(app.status(&event, &polling).await.body["position"], 1);
    assert_eq!(app.stats(&event).await["abandoned_total"], 1);

    assert!(release(&app, &event, "holder").await);
    app.until_active(&event, &polling).await;
    let late = app.status(&event, &silent).await;
    assert_eq!(late.status, StatusCode::GONE, "{}", late.body);
    assert_eq!(app.stats(&event).await["admitted_total"], 2);
}

#[tokio::test]
async fn a_completed_session_verifies_only_for_callers_accepting_it_and_a_left_one_never() {
    let app = spawn_app().await;
    let event = event_id();
    app.open_room(&event, room(5, 100.0)).await;
    let mut access = BTreeMap::new();
    for fan in ["buyer", "leaver"] {
        let queue_token = token(&app.enter(&event, fan).await.body);
        let active = app.until_active(&event, &queue_token).await;
        access.insert(fan, active["access_token"].as_str().unwrap().to_owned());
    }
    let live = verify_accepting_completed(&app, &event, &access["buyer"], true)
        .await
        .unwrap();
    assert!(!live.completed, "an active session is not completed");

    assert!(release(&app, &event, "buyer").await);
    assert_eq!(
        verify(&app, &event, &access["buyer"])
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let replay = verify_accepting_completed(&app, &event, &access["buyer"], true)
        .await
        .unwrap();
    assert_eq!((replay.user_id.as_str(), replay.completed), ("buyer", true));

    assert!(release_for(&app, &event, "leaver", ReleaseReason::Left).await);
    let left = verify_accepting_completed(&app, &event, &access["leaver"], true)
        .await
        .unwrap_err();
    assert_eq!(left.code(), Code::PermissionDenied);
    // The buyer's slot is free for the next fan all the same.
    assert_eq!(app.stats(&event).await["active"], 0);
}

#[tokio::test]
async fn a_released_session_is_refused_even_while_its_jwt_is_valid() {
    let app = spawn_app().await;
    let event = event_id();
    app.open_room(&event, room(5, 100.0)).await;
    let queue_token = token(&app.enter(&event, "fan-1").await.body);
    let active = app.until_active(&event, &queue_token).await;
    let access = active["access_token"].as_str().unwrap().to_owned();
    assert_eq!(verify(&app, &event, &access).await.unwrap(), "fan-1");

    assert!(release(&app, &event, "fan-1").await);
    let refused = verify(&app, &event, &access).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    // Releasing twice reports that nothing was held.
    assert!(!release(&app, &event, "fan-1").await);

    // Coming back gives a new session; the old token stays refused.
    let again = token(&app.enter(&event, "fan-1").await.body);
    let renewed = app.until_active(&event, &again).await;
    let new_access = renewed["access_token"].as_str().unwrap();
    assert_ne!(new_access, access);
    assert_eq!(verify(&app, &event, new_access).await.unwrap(), "fan-1");
    assert_eq!(
        verify(&app, &event, &access).await.unwrap_err().code(),
        Code::PermissionDenied
    );

    let unspecified = ReleaseAccessRequest {
        event_id: event.clone(),
        user_id: "fan-1".into(),
        reason: 0,
    };
    let error = app
        .grpc()
        .await
        .release_access(unspecified)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_verify_batch_answers_each_check_in_order_as_verify_access_would() {
    let app = spawn_app().await;
    let (event, other_event) = (event_id(), event_id());
    app.open_room(&event, room(10, 100.0)).await;
    app.open_room(&other_event, room(10, 100.0)).await;
    let mut access = BTreeMap::new();
    for (room_event, fan) in [
        (&event, "fan-a"),
        (&event, "fan-b"),
        (&event, "fan-gone"),
        (&other_event, "fan-elsewhere"),
    ] {
        let queue_token = token(&app.enter(room_event, fan).await.body);
        let active = app.until_active(room_event, &queue_token).await;
        access.insert(fan, active["access_token"].as_str().unwrap().to_owned());
    }
    assert!(release(&app, &event, "fan-gone").await);

    let check = |event: &str, token: &str| VerifyAccessRequest {
        event_id: event.to_owned(),
        access_token: token.to_owned(),
        accept_completed: false,
    };
    let mut replay = check(&event, &access["fan-gone"]);
    replay.accept_completed = true;
    let requests = vec![
        check(&event, &access["fan-a"]),
        check(&event, "not-a-jwt"),
        check(&event, &access["fan-gone"]),
        check(&other_event, &access["fan-elsewhere"]),
        check(&event, &access["fan-elsewhere"]),
        check("bad event!", &access["fan-a"]),
        check(&event, ""),
        replay,
        check(&event, &access["fan-b"]),
    ];
    let mut expected = Vec::new();
    for request in &requests {
        expected.push(
            app.grpc()
                .await
                .verify_access(request.clone())
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| status.code()),
        );
    }
    let results = app
        .grpc()
        .await
        .verify_access_batch(VerifyAccessBatchRequest { requests })
        .await
        .unwrap()
        .into_inner()
        .results;
    let got: Vec<_> = results
        .into_iter()
        .map(|result| match result.outcome.expect("an outcome") {
            Outcome::Access(access) => Ok(access),
            Outcome::Error(error) => Err(Code::from_i32(error.code)),
        })
        .collect();
    assert_eq!(got, expected);
    // The checks cover every kind of answer, not the same one nine times.
    let codes: HashSet<_> = got.iter().map(|r| r.as_ref().err().copied()).collect();
    for code in [
        None,
        Some(Code::Unauthenticated),
        Some(Code::PermissionDenied),
        Some(Code::InvalidArgument),
    ] {
        assert!(codes.contains(&code), "no {code:?} in {got:?}");
    }
    assert_eq!(got[0].as_ref().unwrap().user_id, "fan-a");
    assert_eq!(got[3].as_ref().unwrap().user_id, "fan-elsewhere");
    let replayed = got[7].as_ref().unwrap();
    assert_eq!(
        (replayed.user_id.as_str(), replayed.completed),
        ("fan-gone", true)
    );

    for size in [0, onsale_proto::MAX_VERIFY_BATCH + 1] {
        let oversized = VerifyAccessBatchRequest {
            requests: vec![check(&event, &access["fan-a"]); size],
        };
        let refused = app
            .grpc()
            .await
            .verify_access_batch(oversized)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{size} checks");
    }
}

fn forge(claims: Value, key: &str) -> String {
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn forged_tampered_and_other_event_tokens_are_rejected() {
    let app = spawn_app().await;
    let event = event_id();
    let other_event = event_id();
    app.open_room(&event, room(5, 100.0)).await;
    app.open_room(&other_event, room(5, 100.0)).await;
    let queue_token = token(&app.enter(&event, "fan-1").await.body);
    let access = app.until_active(&event, &queue_token).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let exp = chrono::Utc::now().timestamp() + 600;

    // Signed with a key that is not ours.
    let forged = forge(
        json!({"typ": "queue", "evt": event, "sub": "fan-1", "sid": "1", "iat": 0, "exp": exp}),
        "an-attacker-key-of-sufficient-length!!",
    );
    let reply = app.status(&event, &forged).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.code(), "invalid_token");
    assert!(reply.is_problem());

    // Our signature over a payload edited to name another fan.
    let mut parts: Vec<&str> = queue_token.split('.').collect();
    let edited = forge(
        json!({"typ": "queue", "evt": event, "sub": "fan-2", "sid": "1", "iat": 0, "exp": exp}),
        "x",
    );
    parts[1] = edited.split('.').nth(1).unwrap();
    let tampered = parts.join(".");
    assert_eq!(
        app.status(&event, &tampered).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.leave(&event, &tampered).await.status,
        StatusCode::UNAUTHORIZED
    );

    // A genuine token of another event.
    let reply = app.status(&other_event, &queue_token).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.code(), "token_event_mismatch");

    // Over gRPC: forged or wrong kind → UNAUTHENTICATED, other event →
    // PERMISSION_DENIED.
    let forged_access = forge(
        json!({"typ": "access", "evt": event, "sub": "fan-1", "sid": "1", "iat": 0, "exp": exp}),
        "an-attacker-key-of-sufficient-length!!",
    );
    assert_eq!(
        verify(&app, &event, &forged_access)
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    assert_eq!(
        verify(&app, &event, &queue_token).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(
        verify(&app, &event, "garbage").await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(
        verify(&app, &other_event, &access)
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(verify(&app, &event, &access).await.unwrap(), "fan-1");
}

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
    let reply = app.enter(&event, "").await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::BAD_REQUEST, "invalid_user_id")
    );
    let reply = app.enter(&event, &"u".repeat(65)).await;
    assert_eq!(reply.code(), "invalid_user_id");
    let reply = app.enter(&event, "has space").await;
    assert_eq!(reply.code(), "invalid_user_id");

    let raw = app
        .http
        .post(format!("{}/v1/events/{event}/queue", app.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    assert_eq!(raw.json::<Value>().await.unwrap()["code"], "malformed_json");
    let wrong_shape = app
        .http
        .post(format!("{}/v1/events/{event}/queue", app.base))
        .json(&json!({"user": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_shape.status(), StatusCode::BAD_REQUEST);

    let reply = app.get(&format!("/v1/events/{event}/queue/status")).await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::UNAUTHORIZED, "missing_token")
    );

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

    let reply = app.get("/no/such/path").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.is_problem());
}

#[tokio::test]
async fn a_paused_room_answers_503_with_retry_after_and_a_closed_room_403() {
    let app = spawn_app().await;
    let event = event_id();
    app.open_room(&event, room(5, 0.001)).await;
    let blocker = token(&app.enter(&event, "blocker").await.body);
    app.until_active(&event, &blocker).await;
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
}

#[tokio::test]
async fn a_client_over_its_rate_limit_gets_429_with_retry_after() {
    let mut s = settings();
    s.queue.rate_limit.per_second = 1;
    s.queue.rate_limit.burst = 3;
    let app = spawn_app_with(s).await;
    let event = event_id();
    app.open_room(&event, room(5, 1.0)).await;
    let mut statuses = Vec::new();
    for i in 0..5 {
        statuses.push(app.enter(&event, &format!("fan-{i}")).await);
    }
    assert!(statuses[..3].iter().all(|r| r.status.is_success()));
    let limited = &statuses[4];
    assert_eq!(
        (limited.status, limited.code()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    assert!(
        limited.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    // Admin and probes are not limited.
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    app.stats(&event).await;
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

    let event = event_id();
    app.open_room(&event, room(5, 100.0)).await;
    let t = token(&app.enter(&event, "fan-1").await.body);
    app.until_active(&event, &t).await;
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("queue_entered_total"), "{metrics}");
    assert!(metrics.contains("queue_redis_script_duration_seconds"));
    assert!(metrics.contains("http_server_request_duration_seconds"));

    let channel = tonic::transport::Endpoint::from_shared(app.grpc_addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let reply = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "onsale.queue.v1.WaitingRoom".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reply.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
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
