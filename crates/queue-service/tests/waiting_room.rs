//! The waiting room against the real Redis Cluster from devstack: the line,
//! admission, leaving, expiry and abandonment. Every test starts its own
//! instances on port 0 with its own key prefix and event ids, and every fan
//! signs in with an identity token of the test issuer.

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
    TestApp, event_id, eventually, release, room, settings, spawn_app, spawn_app_with, token,
    verify,
};
use onsale_proto::queue::v1::GetStatsRequest;
use reqwest::StatusCode;
use serde_json::json;
use tonic::Code;

#[tokio::test]
async fn entering_twice_keeps_the_same_place_with_201_then_200() {
    let app = spawn_app().await;
    let event = event_id();
    // Admission never catches up with this line: the places stay put.
    app.open_stalled_room(&event, 1).await;

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
        assert!(release(&apps[1], &event, &tokens[user]).await);
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

    assert!(release(&app, &event, &holder).await);
    app.until_active(&event, &polling).await;
    let late = app.status(&event, &silent).await;
    assert_eq!(late.status, StatusCode::GONE, "{}", late.body);
    assert_eq!(app.stats(&event).await["admitted_total"], 2);
}
