//! The waiting room's admission follows the booking core's health, end to
//! end: core-service measures its holds and payments and reports their p95
//! and its pool saturation with each inventory report; queue-service
//! halves the admission rate on overload and climbs back while healthy.
//!
//! Postgres sits behind a TCP proxy that, when the fault is on, serves
//! every message from core-service through one shared lane at a fixed cost,
//! as a database with a fraction of its capacity would: latency then grows
//! with load. The load is closed-loop through the real waiting room (each
//! worker enters as a new fan, waits for admission, holds a seat, releases
//! it and leaves), so admitting fewer fans is what lowers it.

mod common;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use common::TestApp;
use onsale_client::{RoomState, queue_api::RoomRequest};
use platform::shutdown::CancellationToken;
use reqwest::StatusCode;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    time::Instant,
};

/// Cost of one message to Postgres while the database is slow.
const SLOW_MESSAGE: Duration = Duration::from_millis(20);
/// The room's latency target, ms.
const TARGET_MS: u64 = 300;
/// The room's ceiling, fans per second.
const CEILING: f64 = 20.0;
/// Fans acting at once.
const WORKERS: usize = 16;

/// A TCP proxy in front of Postgres; while `slow` is set, each chunk from
/// the client waits for one shared lane and holds it for [`SLOW_MESSAGE`].
async fn slow_proxy(target: String, slow: Arc<AtomicBool>, shutdown: CancellationToken) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let lane = Arc::new(tokio::sync::Mutex::new(()));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((client, _)) = accepted else { continue };
            let (target, slow, lane, shutdown) =
                (target.clone(), slow.clone(), lane.clone(), shutdown.clone());
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let upstream = async {
                    let mut buffer = vec![0; 64 * 1024];
                    loop {
                        let n = match client_read.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if slow.load(Ordering::SeqCst) {
                            let _serving = lane.lock().await;
                            tokio::time::sleep(SLOW_MESSAGE).await;
                        }
                        if server_write.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                let downstream = tokio::io::copy(&mut server_read, &mut client_write);
                tokio::select! {
                    () = upstream => {}
                    _ = downstream => {}
                    () = shutdown.cancelled() => {}
                }
            });
        }
    });
    addr
}

/// Hold latencies as the fans saw them: (completed at, latency).
type Holds = Arc<Mutex<Vec<(Instant, Duration)>>>;

/// One worker: fan after fan enters, is admitted, holds `seat`, releases
/// it and leaves the room, until `stop`.
async fn worker(
    app: Arc<TestApp>,
    performance: i64,
    seat: i64,
    id: usize,
    holds: Holds,
    stop: CancellationToken,
) {
    for round in 0.. {
        if stop.is_cancelled() {
            return;
        }
        let pass = app
            .access_token(performance, &format!("w{id}-{round}"))
            .await;
        let started = Instant::now();
        let held = app.hold(&pass, performance, &[seat]).await;
        let elapsed = started.elapsed();
        if held.status == StatusCode::CREATED {
            holds.lock().unwrap().push((Instant::now(), elapsed));
            let id = held.body["reservation_id"].as_str().unwrap().to_owned();
            let released = app.release(&pass.identity, &id).await;
            assert_eq!(released.status, StatusCode::NO_CONTENT, "{}", released.body);
        } else {
            // Shed under overload (503 after the acquire timeout): tried
            // again by the next fan.
            assert!(
                held.status == StatusCode::SERVICE_UNAVAILABLE,
                "hold answered {}: {}",
                held.status,
                held.body
            );
        }
        app.leave(&pass, performance).await;
    }
}

/// The p95 of the holds completed in `[from, to)`, and their number.
fn p95(holds: &Holds, from: Instant, to: Instant) -> (Duration, usize) {
    let mut window: Vec<Duration> = holds
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, _)| *at >= from && *at < to)
        .map(|(_, latency)| *latency)
        .collect();
    window.sort();
    let n = window.len();
    if n == 0 {
        return (Duration::ZERO, 0);
    }
    (window[(n * 95).div_ceil(100) - 1], n)
}

/// The admission rate and the reason of its last change.
async fn rate(app: &TestApp, performance: i64) -> (f64, String) {
    let stats = app.room_stats(performance).await;
    (
        stats["admission_rate_per_second"].as_f64().unwrap(),
        stats["admission_rate_reason"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_database_cuts_admission_until_the_core_is_under_its_target_and_the_rate_climbs_back_once_it_recovers()
 {
    let url = devstack::testing::fresh_database().await;
    let shutdown = CancellationToken::new();
    let slow = Arc::new(AtomicBool::new(false));
    let proxied = common::db_proxy::behind_proxy(&url, |host| {
        slow_proxy(host, slow.clone(), shutdown.clone())
    })
    .await;
    let app = Arc::new(
        common::spawn_apps_on_stores(
            &[("ONSALE__CORE__INVENTORY_REPORT_MS", "1000")],
            &[],
            proxied,
            "http",
        )
        .await,
    );
    let show = app.create_show(1, WORKERS as i32, 10_000, 4).await;
    let performance = show.performance_id;
    let room = RoomRequest {
        capacity: Some(WORKERS as u64),
        admit_per_second: Some(CEILING),
        access_ttl_seconds: Some(600),
        abandon_after_seconds: Some(300),
        claim_within_seconds: None,
        latency_target_ms: Some(TARGET_MS),
        opens_at: None,
        state: RoomState::Open,
    };
    app.client.configure_room(performance, &room).await.unwrap();

    let holds: Holds = Arc::default();
    let stop = CancellationToken::new();
    let workers: Vec<_> = (0..WORKERS)
        .map(|id| {
            tokio::spawn(worker(
                app.clone(),
                performance,
                show.seat_ids[id],
                id,
                holds.clone(),
                stop.clone(),
            ))
        })
        .collect();

    // Healthy: the room admits at its ceiling. The first holds of a cold
    // pool on a loaded machine may still cross the target once, so the
    // room is given time to climb back before the fault is applied.
    let warm = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (healthy, reason) = rate(&app, performance).await;
        if healthy == CEILING && !holds.lock().unwrap().is_empty() {
            assert_eq!(reason, "ceiling");
            break;
        }
        assert!(
            warm.elapsed() < Duration::from_secs(60),
            "the healthy room stayed at {healthy} ({reason}) with {} holds",
            holds.lock().unwrap().len()
        );
    }

    // The database slows down: within a few seconds the rate is cut.
    slow.store(true, Ordering::SeqCst);
    let fault = Instant::now();
    let cut_after = loop {
        let (now, reason) = rate(&app, performance).await;
        if now < CEILING {
            assert!(
                ["hold_p95", "payment_p95", "pool_saturated"].contains(&reason.as_str()),
                "cut for {reason}"
            );
            break fault.elapsed();
        }
        assert!(
            fault.elapsed() < Duration::from_secs(10),
            "the rate was never cut"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // With fewer fans admitted, the core's hold p95 returns under the
    // target while the database is still slow: some 2-second window of
    // holds, as the fans saw them, is under it.
    let mut recovered = None;
    let mut from = Instant::now();
    while recovered.is_none() {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let to = Instant::now();
        let (p95, n) = p95(&holds, from, to);
        if n >= 3 && p95 < Duration::from_millis(TARGET_MS) {
            recovered = Some((p95, n, rate(&app, performance).await.0));
        }
        from = to;
        assert!(
            fault.elapsed() < Duration::from_secs(45),
            "the hold p95 stayed over the target: {p95:?} over {n} holds"
        );
    }

    // The fault is removed: the rate climbs back to the ceiling.
    slow.store(false, Ordering::SeqCst);
    let healed = Instant::now();
    loop {
        let (now, reason) = rate(&app, performance).await;
        if now == CEILING {
            assert_eq!(reason, "ceiling");
            break;
        }
        assert!(
            healed.elapsed() < Duration::from_secs(60),
            "the rate stayed at {now} ({reason})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "cut {cut_after:?} after the fault; hold p95 {:?} over {} holds at {} fans/s; back at the ceiling {:?} after the repair",
        recovered.unwrap().0,
        recovered.unwrap().1,
        recovered.unwrap().2,
        healed.elapsed()
    );
    stop.cancel();
    for worker in workers {
        worker.await.unwrap();
    }
    shutdown.cancel();
}
