//! Admission control: within the room's `admit_per_second` ceiling, the
//! admission rate follows the booking core's health, as core-service
//! reports it with its inventory over gRPC (`ReportInventory`). The rate
//! halves when a p95 passes the room's latency target or the pool
//! saturates, at most once a second, and climbs back by 5 % of the ceiling
//! per second while the core is healthy (AIMD). When a pre-queue opens,
//! the rate starts at 1/16 of the ceiling and doubles every second (slow
//! start) until the ceiling or the first cut. Against the real Redis
//! Cluster; the rates are read back from the room's stats.

mod common;

use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;

use common::{TestApp, event_id, spawn_app};
use futures::{StreamExt, future::join_all, stream};
use onsale_proto::queue::v1::{CoreHealth, ReportInventoryRequest};
use serde_json::{Value, json};

/// Hold and payment p95 well under the default 200 ms target.
const HEALTHY: CoreHealth = CoreHealth {
    hold_p95_ms: 20,
    payment_p95_ms: 40,
    pool_saturated: false,
    holds: 100,
    payments: 50,
};

/// Hold p95 over the default target.
const SLOW_HOLDS: CoreHealth = CoreHealth {
    hold_p95_ms: 450,
    ..HEALTHY
};

/// Payment p95 over the default target.
const SLOW_PAYMENTS: CoreHealth = CoreHealth {
    payment_p95_ms: 900,
    ..HEALTHY
};

/// A pool that made requests wait for a connection.
const SATURATED: CoreHealth = CoreHealth {
    pool_saturated: true,
    ..HEALTHY
};

/// A little over the once-a-second limit of cuts.
const NEXT_ROUND: Duration = Duration::from_millis(1_100);

/// A room with the ceiling `admit_per_second` and room for everybody.
fn room(admit_per_second: f64) -> Value {
    json!({
        "capacity": 10_000,
        "admit_per_second": admit_per_second,
        "access_ttl_seconds": 600,
        "abandon_after_seconds": 300,
        "state": "open",
    })
}

/// Reports plenty of seats and `health` (`None`: an inventory report
/// without health) for `event`, as core-service's inventory reporter does.
async fn report(app: &TestApp, event: &str, health: Option<CoreHealth>) {
    let recorded = app
        .grpc()
        .await
        .report_inventory(ReportInventoryRequest {
            event_id: event.to_owned(),
            seats_available: 1_000_000,
            seats_held: 0,
            fans_holding: 0,
            health,
        })
        .await
        .expect("ReportInventory answers")
        .into_inner()
        .recorded;
    assert!(recorded, "the report was recorded");
}

/// The room's admission rate (fans per second) and the reason it last
/// changed.
async fn rate(app: &TestApp, event: &str) -> (f64, String) {
    let stats = app.stats(event).await;
    (
        stats["admission_rate_per_second"]
            .as_f64()
            .expect("admission_rate_per_second"),
        stats["admission_rate_reason"]
            .as_str()
            .expect("admission_rate_reason")
            .to_owned(),
    )
}

fn assert_near(actual: f64, expected: f64, tolerance: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: {actual} is not within {tolerance} of {expected}"
    );
}

#[tokio::test]
async fn a_slow_core_halves_the_rate_at_most_once_a_second_for_each_kind_of_overload() {
    let app = spawn_app().await;
    let event = event_id();
    app.open_room(&event, room(100.0)).await;
    assert_eq!(rate(&app, &event).await, (100.0, "ceiling".to_owned()));

    report(&app, &event, Some(SLOW_HOLDS)).await;
    assert_eq!(rate(&app, &event).await, (50.0, "hold_p95".to_owned()));
    // Every instance reports the same overload; one cut per round is enough.
    for _ in 0..3 {
        report(&app, &event, Some(SLOW_HOLDS)).await;
    }
    assert_eq!(rate(&app, &event).await, (50.0, "hold_p95".to_owned()));

    tokio::time::sleep(NEXT_ROUND).await;
    report(&app, &event, Some(SLOW_PAYMENTS)).await;
    assert_eq!(rate(&app, &event).await, (25.0, "payment_p95".to_owned()));

    tokio::time::sleep(NEXT_ROUND).await;
    report(&app, &event, Some(SATURATED)).await;
    assert_eq!(
        rate(&app, &event).await,
        (12.5, "pool_saturated".to_owned())
    );

    let stats = app.stats(&event).await;
    assert_eq!(stats["core_health"]["hold_p95_ms"], 20, "{stats}");
    assert_eq!(stats["core_health"]["payment_p95_ms"], 40, "{stats}");
    assert_eq!(stats["core_health"]["pool_saturated"], true, "{stats}");
    app.stop().await;
}

#[tokio::test]
async fn the_rate_never_falls_below_one_percent_of_the_ceiling() {
    let app = spawn_app().await;
    let event = event_id();
    app.open_room(&event, room(400.0)).await;
    // 400 → 200 → 100 → 50 → 25 → 12.5 → 6.25 → 4 (1 % of 400), and no lower.
    for _ in 0..8 {
        report(&app, &event, Some(SATURATED)).await;
        tokio::time::sleep(NEXT_ROUND).await;
    }
    assert_eq!(rate(&app, &event).await, (4.0, "pool_saturated".to_owned()));
    app.stop().await;
}

#[tokio::test]
async fn a_healthy_core_lets_the_rate_climb_by_five_percent_of_the_ceiling_a_second_back_to_the_ceiling()
 {
    let app = spawn_app().await;
    let event = event_id();
    app.open_room(&event, room(100.0)).await;
    report(&app, &event, Some(SLOW_HOLDS)).await;
    tokio::time::sleep(NEXT_ROUND).await;
    report(&app, &event, Some(SLOW_HOLDS)).await;
    assert_eq!(rate(&app, &event).await.0, 25.0);

    // Reports about once a second, as core-service sends them: +5/s.
    let mut last = 25.0;
    let started = tokio::time::Instant::now();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        report(&app, &event, Some(HEALTHY)).await;
        let (now, reason) = rate(&app, &event).await;
        assert_eq!(reason, "healthy");
        assert!(now > last, "the rate rose: {last} → {now}");
        last = now;
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Growth counts from the last change, so it follows the clock: 5/s
    // over the elapsed time, give or take one report's latency.
    assert_near(
        last,
        25.0 + 5.0 * elapsed,
        2.0,
        "the rate after 3 healthy reports",
    );

    // Several instances reporting at once do not speed the climb up.
    let before = rate(&app, &event).await.0;
    join_all((0..10).map(|_| report(&app, &event, Some(HEALTHY)))).await;
    assert_near(
        rate(&app, &event).await.0,
        before,
        1.0,
        "a burst of reports",
    );

    let back = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        report(&app, &event, Some(HEALTHY)).await;
        let (now, reason) = rate(&app, &event).await;
        if now == 100.0 {
            assert_eq!(reason, "ceiling");
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "the rate stays under the ceiling: {now}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn an_inventory_report_without_health_leaves_the_rate_as_it_is() {
    let app = spawn_app().await;
    let event = event_id();
    app.open_room(&event, room(100.0)).await;
    report(&app, &event, Some(SLOW_PAYMENTS)).await;
    tokio::time::sleep(NEXT_ROUND).await;
    report(&app, &event, None).await;
    assert_eq!(rate(&app, &event).await, (50.0, "payment_p95".to_owned()));
    app.stop().await;
}

#[tokio::test]
async fn without_a_fresh_health_report_the_room_admits_at_its_ceiling_again() {
    let app = spawn_app().await;
    let event = event_id();
    app.open_room(&event, room(100.0)).await;
    report(&app, &event, Some(SLOW_HOLDS)).await;
    assert_eq!(rate(&app, &event).await.0, 50.0);

    // A booking core that stopped reporting cannot keep the room throttled:
    // its last report goes stale after 10 s.
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    let stats = app.stats(&event).await;
    assert_eq!(stats["admission_rate_per_second"], 100.0, "{stats}");
    assert_eq!(stats["admission_rate_reason"], "ceiling", "{stats}");
    assert!(stats.get("core_health").is_none(), "{stats}");

    // The next report starts from the ceiling, not from the stale cut.
    report(&app, &event, Some(SLOW_HOLDS)).await;
    assert_eq!(rate(&app, &event).await, (50.0, "hold_p95".to_owned()));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admissions_follow_a_cut_rate() {
    const FANS: usize = 400;
    let app = spawn_app().await;
    let (cut, steady) = (event_id(), event_id());
    for event in [&cut, &steady] {
        app.open_room(event, room(40.0)).await;
    }
    // One cut: 20 fans a second for the cut room, 40 for the other.
    report(&app, &cut, Some(SATURATED)).await;
    assert_eq!(rate(&app, &cut).await.0, 20.0);

    let enter = |event: String, fan: String| {
        let app = &app;
        async move {
            let reply = app.enter(&event, &fan).await;
            assert!(reply.status.is_success(), "{fan}: {}", reply.body);
        }
    };
    let entries = (0..FANS).flat_map(|fan| {
        [
            enter(cut.clone(), format!("cut-{fan}")),
            enter(steady.clone(), format!("steady-{fan}")),
        ]
    });
    stream::iter(entries)
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    let admitted = |stats: Value| stats["admitted_total"].as_f64().expect("admitted_total");
    let (slow, fast) = (
        admitted(app.stats(&cut).await),
        admitted(app.stats(&steady).await),
    );
    // Same clock, same instance: the cut room admits about half as many.
    assert!(
        fast > 0.0 && slow > 0.0,
        "both rooms admit: {slow} and {fast}"
    );
    let ratio = slow / fast;
    assert!(
        (0.3..=0.7).contains(&ratio),
        "cut room admitted {slow}, the steady one {fast} (ratio {ratio:.2})"
    );
    app.stop().await;
}

/// Opens `room` with three fans in its pre-queue, then opens the
/// pre-queue now. Returns two instants between which the slow start began:
/// before the opening was asked for, and when the stats first showed it.
async fn open_pre_queue(app: &TestApp, event: &str, room_body: Value) -> (Instant, Instant) {
    let mut scheduled = room_body.clone();
    scheduled["opens_at"] = json!(Utc::now() + chrono::Duration::hours(1));
    app.open_room(event, scheduled).await;
    for fan in 0..3 {
        let reply = app.enter(event, &format!("early-{fan}")).await;
        assert_eq!(reply.body["status"], "pre_queue", "{}", reply.body);
    }
    let asked = Instant::now();
    // Without opens_at, a room with fans in its pre-queue opens now; the
    // next admission tick opens the pre-queue.
    app.open_room(event, room_body).await;
    loop {
        let (_, reason) = rate(app, event).await;
        if reason == "slow_start" {
            return (asked, Instant::now());
        }
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "the slow start began: {reason}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_pre_queue_opens_with_a_slow_start_that_doubles_every_second_up_to_the_ceiling() {
    let app = spawn_app().await;
    let event = event_id();
    let (asked, seen) = open_pre_queue(&app, &event, room(160.0)).await;
    // 160 / 16 = 10 fans a second at the opening, doubling every second.
    let ramp = |elapsed: Duration| 10.0 * 2f64.powf(elapsed.as_secs_f64());
    let mut last = 0.0;
    for _ in 0..3 {
        // Healthy reports during the ramp leave the ramp in charge.
        report(&app, &event, Some(HEALTHY)).await;
        let before = Instant::now();
        let (now, reason) = rate(&app, &event).await;
        let after = Instant::now();
        assert_eq!(reason, "slow_start");
        // The ramp began between `asked` and `seen`.
        let (low, high) = (ramp(before - seen) * 0.99, ramp(after - asked) * 1.01);
        assert!(
            (low..=high).contains(&now),
            "{now} fans/s, expected within {low:.1}..={high:.1}"
        );
        assert!(now > last, "the rate rose: {last} → {now}");
        last = now;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    // At 16 × 10 after 4 s the ramp ends at the ceiling.
    tokio::time::sleep_until(seen + Duration::from_millis(4_300)).await;
    report(&app, &event, Some(HEALTHY)).await;
    assert_eq!(rate(&app, &event).await, (160.0, "ceiling".to_owned()));
    app.stop().await;
}

#[tokio::test]
async fn a_cut_during_the_slow_start_halves_the_ramped_rate_and_ends_the_ramp() {
    let app = spawn_app().await;
    let event = event_id();
    let (asked, _) = open_pre_queue(&app, &event, room(160.0)).await;
    let before = rate(&app, &event).await.0;
    report(&app, &event, Some(SLOW_HOLDS)).await;
    let (cut, reason) = rate(&app, &event).await;
    assert_eq!(reason, "hold_p95");
    // The ramp began after `asked`: it cannot have grown further than this.
    let ramped_since = 10.0 * 2f64.powf(asked.elapsed().as_secs_f64());
    assert!(
        cut >= before / 2.0 && cut <= ramped_since / 2.0 * 1.01,
        "{cut} is half the ramped rate ({before}..{ramped_since})"
    );
    // The ramp would have doubled the rate twice by now; after the cut it
    // stays where admission control put it.
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    assert_eq!(rate(&app, &event).await, (cut, "hold_p95".to_owned()));
    app.stop().await;
}
