//! Admissions that nobody claims: an admitted fan must see the admission
//! (a poll or an entry answered `active`) or use the access token within
//! the room's `claim_within_seconds`, or the slot is reclaimed at once as a
//! no-show, instead of idling for the whole access TTL. Against the real
//! Redis Cluster, with several instances ticking at once.

mod common;

use std::time::Duration;

use common::{
    ADMIN_KEY, TestApp, event_id, eventually, release, settings, spawn_app, spawn_app_with, token,
    verify,
};
use futures::future::join_all;
use onsale_proto::queue::v1::GetStatsRequest;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A room of `capacity` with a long access TTL and abandonment window, and
/// `claim` seconds to claim an admission.
fn claiming_room(capacity: u64, claim: u64) -> Value {
    json!({
        "capacity": capacity,
        "admit_per_second": 1000,
        "access_ttl_seconds": 600,
        "abandon_after_seconds": 300,
        "claim_within_seconds": claim,
        "state": "open",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn absent_fans_admitted_on_three_instances_are_reclaimed_once_each_and_every_present_fan_gets_in()
 {
    const PRESENT: usize = 30;
    const ABSENT: usize = 30;
    let event = event_id();
    let base = settings();
    let mut apps: Vec<TestApp> = Vec::new();
    for _ in 0..3 {
        apps.push(spawn_app_with(base.clone()).await);
    }
    // Ten slots for sixty fans, of whom half stop polling once they are in
    // line: without reclaiming, their admissions would block the room for
    // ten minutes.
    apps[0].open_room(&event, claiming_room(10, 1)).await;

    let absent = join_all((0..ABSENT).map(|i| {
        let app = &apps[i % 3];
        let event = &event;
        async move {
            let reply = app.enter(event, &format!("absent-{i}")).await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        }
    }));
    let present = join_all((0..PRESENT).map(|i| {
        let app = &apps[i % 3];
        let event = &event;
        async move {
            let (_, access) = app.admitted(event, &format!("present-{i}")).await;
            // Buys at once: the slot goes back as completed.
            assert!(release(app, event, &access).await, "released once");
        }
    }));
    tokio::join!(absent, present);

    let stats = eventually(Duration::from_secs(30), || async {
        let stats = apps[1].stats(&event).await;
        (stats["exited"]["no_show"] == ABSENT && stats["active"] == 0).then_some(stats)
    })
    .await;
    assert_eq!(stats["admitted_total"], PRESENT + ABSENT);
    assert_eq!(stats["exited"]["completed"], PRESENT);
    assert_eq!(stats["exited"]["expired"], 0);
    assert_eq!(stats["waiting"], 0);
    let grpc = apps[2]
        .grpc()
        .await
        .get_stats(GetStatsRequest {
            event_id: event.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grpc.exited_no_show_total, ABSENT as u64);

    // A reclaimed fan who comes back finds the admission gone.
    let back = apps[0].enter(&event, "absent-0").await;
    assert_eq!(
        back.status,
        StatusCode::CREATED,
        "a new place: {}",
        back.body
    );
    assert_eq!(back.body["status"], "waiting");
}

#[tokio::test]
async fn a_fan_who_saw_the_admission_keeps_the_slot_past_the_claim_window() {
    let app = spawn_app().await;
    let event = event_id();
    app.open_room(&event, claiming_room(1, 1)).await;
    let (queue, access) = app.admitted(&event, "claimer").await;
    let waiting = token(&app.enter(&event, "next").await.body);

    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(verify(&app, &event, &access).await.unwrap(), "claimer");
    assert_eq!(app.status(&event, &queue).await.body["status"], "active");
    let next = app.status(&event, &waiting).await;
    assert_eq!(next.body["status"], "waiting", "the slot is still taken");
    let stats = app.stats(&event).await;
    assert_eq!(stats["exited"]["no_show"], 0);
    assert_eq!(stats["active"], 1);
}

#[tokio::test]
async fn waiting_fans_are_told_to_poll_within_two_thirds_of_the_claim_window() {
    let app = spawn_app().await;
    let event = event_id();
    // Next to no admission rate: the last fan's ETA (40 fans ahead, at the
    // one admission a second measured so far) alone would mean polling
    // every 10 s.
    let mut room = claiming_room(1, 3);
    room["admit_per_second"] = json!(0.001);
    app.open_room(&event, room).await;
    let blocker = token(&app.enter(&event, "blocker").await.body);
    app.until_active(&event, &blocker).await;
    let fans: Vec<String> = (0..40).map(|i| format!("fan-{i}")).collect();
    join_all(fans.iter().map(|fan| app.enter(&event, fan))).await;
    let last = app.enter(&event, "last").await;
    assert_eq!(last.body["ahead"], 40);
    assert_eq!(last.body["poll_after_ms"], 2_000);
}

#[tokio::test]
async fn a_claim_window_is_cut_to_the_admission_and_zero_is_refused() {
    let app = spawn_app().await;
    let event = event_id();
    let mut long = claiming_room(1, 601);
    long["access_ttl_seconds"] = json!(600);
    assert_eq!(app.open_room(&event, long).await.claim_within_seconds, 600);
    // Left out, the default (30 s) is cut to a shorter admission too.
    let mut short = claiming_room(1, 1);
    short
        .as_object_mut()
        .unwrap()
        .remove("claim_within_seconds");
    short["access_ttl_seconds"] = json!(5);
    assert_eq!(app.open_room(&event, short).await.claim_within_seconds, 5);

    let refused = app
        .http
        .put(format!("{}/admin/v1/events/{event}/waiting-room", app.base))
        .header("x-admin-key", ADMIN_KEY)
        .json(&claiming_room(1, 0))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "invalid_room_settings");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("claim_within_seconds"),
        "{body}"
    );
}
