//! A burst of holds and seat-map reads rebuilds a performance's
//! availability at most once per `seat_cache_ms` per instance (a binary of
//! its own: it reads the process-wide `seat_map_rebuilds_total`, which
//! other tests would move).

mod common;

use std::time::Instant;

use common::{Reply, TestApp, spawn_app_with};
use core_service::{api::CreateReservation, domain::PerformanceId};
use futures::future::join_all;
use reqwest::StatusCode;

async fn rebuilds(app: &TestApp) -> f64 {
    app.metrics_text()
        .await
        .lines()
        .find_map(|line| line.strip_prefix("seat_map_rebuilds_total "))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_holds_and_reads_rebuilds_the_availability_at_most_once_per_interval() {
    let app = spawn_app_with(&[("ONSALE__CORE__SEAT_CACHE_MS", "1000")]).await;
    let show = app.create_show(10, 20, 10_000, 4).await;
    let performance = show.performance_id;
    let users: Vec<String> = (0..100).map(|i| format!("burst-{i}")).collect();
    let passes = join_all(users.iter().map(|u| app.access_token(performance, u))).await;
    let before = rebuilds(&app).await;
    let started = Instant::now();

    let holds = passes.iter().map(|pass| {
        let body = CreateReservation::best_available(PerformanceId::new(performance).unwrap(), 1);
        let request = app
            .client
            .as_fan(&pass.identity)
            .hold_request(&pass.access, &body);
        async move { Reply::send(request).await.status }
    });
    let reads = (0..400).map(|i| {
        let path = if i % 4 == 0 { "seats" } else { "availability" };
        let request = app
            .http
            .get(format!("{}/v1/performances/{performance}/{path}", app.base));
        async move { Reply::send(request).await.status }
    });
    let (holds, reads) = tokio::join!(join_all(holds), join_all(reads));
    let seconds = started.elapsed().as_secs_f64();
    let rebuilt = rebuilds(&app).await - before;

    assert!(holds.iter().all(|s| *s == StatusCode::CREATED), "{holds:?}");
    assert!(reads.iter().all(|s| *s == StatusCode::OK));
    assert!(rebuilt >= 1.0, "the burst was served from a snapshot");
    // One rebuild per started interval, plus the one a best-available hold
    // may force when its first pick comes from a snapshot older than the
    // request.
    let bound = seconds.ceil() + 2.0;
    assert!(
        rebuilt <= bound,
        "{rebuilt} rebuilds for 100 holds and 400 reads in {seconds:.2} s"
    );
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*) FROM seats WHERE performance_id = {performance} AND status = 'held'"
        ))
        .await,
        100
    );
}
