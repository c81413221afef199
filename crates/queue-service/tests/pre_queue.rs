//! A scheduled sale: fans who enter before the room's `opens_at` wait in a
//! pre-queue, drawn into a seeded uniformly random order at opening; fans
//! who arrive later queue behind all of them in arrival order. Against the
//! real Redis Cluster, with several instances entering and ticking at once.

mod common;

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use common::{TestApp, claim, event_id, eventually, settings, spawn_app_with, token};
use futures::{StreamExt, stream};
use queue_service::pre_queue::pre_queue_order;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A room of `capacity` that admits 100,000 fans per second and opens at
/// `opens_at` (`None`: at once).
fn scheduled_room(capacity: u64, opens_at: Option<DateTime<Utc>>) -> Value {
    let mut body = json!({
        "capacity": capacity,
        "admit_per_second": 100_000,
        "access_ttl_seconds": 600,
        "abandon_after_seconds": 300,
        "state": "open",
    });
    if let Some(at) = opens_at {
        body["opens_at"] = json!(at);
    }
    body
}

fn in_an_hour() -> DateTime<Utc> {
    Utc::now() + chrono::Duration::hours(1)
}

/// Fans `names`, entering in order through `apps` in turn, `concurrency` at
/// a time; returns each fan's queue token, in the same order, after
/// checking that the entry answered `expected` status.
async fn enter_all(
    apps: &[Arc<TestApp>],
    event: &str,
    names: &[String],
    concurrency: usize,
    expected: &str,
) -> Vec<String> {
    stream::iter(names.iter().enumerate())
        .map(|(i, name)| {
            let app = apps[i % apps.len()].clone();
            async move {
                let reply = app.enter(event, name).await;
                assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
                assert_eq!(reply.body["status"], expected, "{}", reply.body);
                token(&reply.body)
            }
        })
        .buffered(concurrency)
        .collect()
        .await
}

/// Polls every fan (token in `tokens`) until admitted, `concurrency` at a
/// time; returns each fan's session id (its number in the line).
async fn session_ids(
    apps: &[Arc<TestApp>],
    event: &str,
    tokens: &[String],
    concurrency: usize,
) -> Vec<u64> {
    stream::iter(tokens.iter().enumerate())
        .map(|(i, queue_token)| {
            let app = apps[i % apps.len()].clone();
            async move {
                let active = app.until_active(event, queue_token).await;
                let access = active["access_token"].as_str().expect("an access token");
                claim(access, "sid")
                    .expect("a session id")
                    .parse::<u64>()
                    .unwrap()
            }
        })
        .buffered(concurrency)
        .collect()
        .await
}

/// Ranks of `values` (all distinct), 0-based.
fn ranks(values: &[u64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by_key(|&i| values[i]);
    let mut ranks = vec![0.0; values.len()];
    for (rank, i) in order.into_iter().enumerate() {
        ranks[i] = rank as f64;
    }
    ranks
}

/// Spearman's rank correlation between position in `values` and value,
/// for distinct values: 1 − 6 Σ d² / (n (n² − 1)).
fn spearman_with_index(values: &[u64]) -> f64 {
    let n = values.len() as f64;
    let d2: f64 = ranks(values)
        .iter()
        .enumerate()
        .map(|(i, rank)| (i as f64 - rank).powi(2))
        .sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

#[test]
fn spearman_is_one_for_the_same_order_and_minus_one_for_the_reverse() {
    assert!((spearman_with_index(&[1, 2, 3, 4]) - 1.0).abs() < 1e-12);
    assert!((spearman_with_index(&[9, 7, 5, 3]) + 1.0).abs() < 1e-12);
    assert!(spearman_with_index(&[2, 4, 1, 3]).abs() < 0.5);
}

async fn instances(count: usize) -> Vec<Arc<TestApp>> {
    let base = settings();
    let mut apps = Vec::new();
    for _ in 0..count {
        apps.push(Arc::new(spawn_app_with(base.clone()).await));
    }
    apps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_pre_queued_fans_are_admitted_in_the_published_seeded_order_uncorrelated_with_arrival()
 {
    const FANS: usize = 10_000;
    let event = event_id();
    let apps = instances(3).await;
    apps[0]
        .open_room(&event, scheduled_room(FANS as u64, Some(in_an_hour())))
        .await;
    let names: Vec<String> = (0..FANS).map(|i| format!("fan-{i:05}")).collect();
    let tokens = enter_all(&apps, &event, &names, 32, "pre_queue").await;
    let before = apps[1].stats(&event).await;
    assert_eq!(before["pre_queue"], FANS, "{before}");
    assert_eq!(before["waiting"], 0, "{before}");
    assert!(
        before.get("shuffle_seed").is_none(),
        "secret until opening: {before}"
    );

    // Dropping opens_at with fans in the pre-queue opens the room now; the
    // three instances place and admit them concurrently.
    apps[0]
        .open_room(&event, scheduled_room(FANS as u64, None))
        .await;
    let sids = session_ids(&apps, &event, &tokens, 32).await;

    let rho = spearman_with_index(&sids);
    assert!(
        rho.abs() < 0.05,
        "Spearman rho {rho:.4} between arrival and admission"
    );
    // Every fan got a number of its own, and the order is exactly the one
    // the published seed gives: anyone can audit it.
    let after = apps[2].stats(&event).await;
    let seed = after["shuffle_seed"].as_str().expect("the seed, once open");
    assert_eq!(seed.len(), 32, "{after}");
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let expected = pre_queue_order(seed, &refs);
    let by_sid: HashMap<u64, &str> = sids.iter().copied().zip(refs.iter().copied()).collect();
    assert_eq!(by_sid.len(), FANS, "session ids are unique");
    let mut numbered: Vec<(u64, &str)> = by_sid.into_iter().collect();
    numbered.sort_unstable();
    let admitted: Vec<&str> = numbered.into_iter().map(|(_, fan)| fan).collect();
    assert_eq!(admitted, expected);
    assert_eq!(after["pre_queue"], 0, "{after}");
    assert_eq!(after["admitted_total"], FANS, "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fans_who_arrive_after_opening_are_admitted_after_every_pre_queued_fan_in_fifo_order() {
    const EARLY: usize = 300;
    const LATE: usize = 100;
    let event = event_id();
    let apps = instances(2).await;
    let opens_at = Utc::now() + chrono::Duration::seconds(4);
    apps[0]
        .open_room(
            &event,
            scheduled_room((EARLY + LATE) as u64, Some(opens_at)),
        )
        .await;
    let early: Vec<String> = (0..EARLY).map(|i| format!("early-{i}")).collect();
    let early_tokens = enter_all(&apps, &event, &early, 16, "pre_queue").await;

    let wait = (opens_at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(50)).await;
    // One at a time, so the arrival order is known exactly; they arrive
    // while the pre-queue is still being placed and admitted.
    let late: Vec<String> = (0..LATE).map(|i| format!("late-{i}")).collect();
    let mut late_tokens = Vec::new();
    for (i, name) in late.iter().enumerate() {
        let reply = apps[i % 2].enter(&event, name).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        assert_ne!(reply.body["status"], "pre_queue", "{}", reply.body);
        late_tokens.push(token(&reply.body));
    }

    let early_sids = session_ids(&apps, &event, &early_tokens, 16).await;
    let late_sids = session_ids(&apps, &event, &late_tokens, 16).await;
    let last_early = early_sids.iter().max().copied().unwrap();
    assert!(
        late_sids.iter().all(|&sid| sid > last_early),
        "every late fan behind every pre-queued one"
    );
    assert!(
        late_sids.windows(2).all(|pair| pair[0] < pair[1]),
        "late fans in arrival order: {late_sids:?}"
    );
}

#[tokio::test]
async fn a_pre_queued_fan_sees_a_countdown_and_no_position_and_may_leave() {
    let event = event_id();
    let apps = instances(1).await;
    let app = &apps[0];
    let opens_at = in_an_hour();
    app.open_room(&event, scheduled_room(10, Some(opens_at)))
        .await;

    let entered = app.enter(&event, "early-bird").await;
    assert_eq!(entered.status, StatusCode::CREATED, "{}", entered.body);
    let body = &entered.body;
    assert_eq!(body["status"], "pre_queue");
    assert_eq!(body["position"], 0);
    assert_eq!(body["ahead"], 0);
    let told: DateTime<Utc> = serde_json::from_value(body["opens_at"].clone()).unwrap();
    assert_eq!(told.timestamp_millis(), opens_at.timestamp_millis());
    let countdown = body["opens_in_seconds"].as_u64().unwrap();
    assert!((3_590..=3_600).contains(&countdown), "{body}");
    // Far from the opening, a poll every 30 s is enough.
    assert_eq!(body["poll_after_ms"], 30_000);

    let again = app.enter(&event, "early-bird").await;
    assert_eq!(again.status, StatusCode::OK, "entering twice is idempotent");
    let polled = app.status(&event, &token(&entered.body)).await;
    assert_eq!(polled.status, StatusCode::OK, "{}", polled.body);
    assert_eq!(polled.body["status"], "pre_queue");
    assert_eq!(app.stats(&event).await["pre_queue"], 1);

    let left = app.leave(&event, &token(&entered.body)).await;
    assert_eq!(left.status, StatusCode::NO_CONTENT, "{}", left.body);
    let stats = app.stats(&event).await;
    assert_eq!(stats["pre_queue"], 0, "{stats}");
    assert_eq!(stats["left_waiting_total"], 1, "{stats}");
    let gone = app.status(&event, &token(&entered.body)).await;
    assert_eq!(gone.status, StatusCode::GONE, "{}", gone.body);
}

#[tokio::test]
async fn opens_at_is_final_once_fans_are_in_line_and_bounded_in_the_future() {
    let event = event_id();
    let apps = instances(1).await;
    let app = &apps[0];
    let request = |body: Value| {
        app.http
            .put(format!("{}/admin/v1/events/{event}/waiting-room", app.base))
            .header("x-admin-key", common::ADMIN_KEY)
            .json(&body)
    };

    let far = Utc::now() + chrono::Duration::days(400);
    let refused = request(scheduled_room(10, Some(far))).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "invalid_room_settings", "{problem}");

    // Before anyone is in line, the opening may move.
    app.open_room(&event, scheduled_room(10, Some(in_an_hour())))
        .await;
    let soon = Utc::now() + chrono::Duration::seconds(1);
    app.open_room(&event, scheduled_room(10, Some(soon))).await;
    app.enter(&event, "early").await;
    eventually(Duration::from_secs(10), || async {
        let stats = app.stats(&event).await;
        (stats["pre_queue"] == 0 && stats["shuffle_seed"].is_string()).then_some(())
    })
    .await;

    let moved = request(scheduled_room(10, Some(in_an_hour())))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), StatusCode::CONFLICT);
    let problem: Value = moved.json().await.unwrap();
    assert_eq!(problem["code"], "room_already_open", "{problem}");
    // Other settings still change, with the same or no opens_at.
    app.open_room(&event, scheduled_room(20, Some(soon))).await;
    app.open_room(&event, scheduled_room(30, None)).await;
    assert_eq!(app.stats(&event).await["capacity"], 30);
}
