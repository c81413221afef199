//! Benchmark (ignored by default): end-to-end latency from a payment's
//! commit to the release of the buyer's waiting-room slot, through the
//! outbox relay, Kafka and queue-service's `payment.completed` consumer.
//!
//! For each buyer: `POST /v1/payments` returns 201 (the transaction has
//! committed), then the harness calls gRPC `VerifyAccess` with the buyer's
//! access token every 1 ms until queue-service refuses it
//! (`PERMISSION_DENIED`: the slot was released). The latency is the time from
//! the 201 to the first refusal, so it slightly overstates the true
//! commit-to-release time by the 201's trip back and the 1 ms poll step.
//!
//! Run:
//! ```sh
//! eval "$(cargo run -q -p devstack -- env)"
//! cargo test --release -p core-service --test bench_release -- --ignored --nocapture
//! ```
//! `BENCH_BUYERS` sets the number of buyers (default 300), paid one after
//! another so that each measurement sees an idle pipeline.

mod common;

use std::time::{Duration, Instant};

use common::spawn_app_on;
use futures::future::join_all;
use onsale_proto::queue::v1::{VerifyAccessRequest, waiting_room_client::WaitingRoomClient};
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn payment_commit_to_slot_release_latency() {
    let buyers: usize = std::env::var("BENCH_BUYERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let suffix = devstack::testing::isolated_topics().await;
    let brokers = devstack::testing::stack().kafka_brokers.clone();
    let app = spawn_app_on(&brokers, &suffix, &[]).await;
    let rows = buyers.div_ceil(50);
    let show = app.create_show(rows, 50, 10_000, 4).await;
    let users: Vec<String> = (0..buyers).map(|i| format!("bench-{i}")).collect();
    join_all(users.iter().map(|u| app.charge(u, 10_000))).await;
    let tokens = join_all(
        users
            .iter()
            .map(|u| app.access_token(show.performance_id, u)),
    )
    .await;
    let mut grpc = WaitingRoomClient::connect(app.queue_grpc.clone())
        .await
        .unwrap();
    let event = show.performance_id.to_string();

    let mut latencies = Vec::with_capacity(buyers);
    for (i, token) in tokens.iter().enumerate() {
        let hold = app
            .hold(token, show.performance_id, &[show.seat_ids[i]])
            .await;
        assert_eq!(hold.status, StatusCode::CREATED);
        let reservation = hold.body["reservation_id"].as_str().unwrap().to_owned();
        let paid = app
            .pay(token, &format!("bench-key-{i}"), &reservation)
            .await;
        assert_eq!(paid.status, StatusCode::CREATED);
        let committed = Instant::now();
        loop {
            let verdict = grpc
                .verify_access(VerifyAccessRequest {
                    event_id: event.clone(),
                    access_token: token.clone(),
                    accept_completed: false,
                })
                .await;
            match verdict {
                Ok(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                Err(status) if status.code() == tonic::Code::PermissionDenied => break,
                Err(status) => panic!("unexpected VerifyAccess answer: {status}"),
            }
            assert!(
                committed.elapsed() < Duration::from_secs(30),
                "slot not released within 30 s"
            );
        }
        latencies.push(committed.elapsed().as_secs_f64() * 1_000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    println!(
        "| payment commit → slot release | {} buyers | p50 {:.1} ms | p99 {:.1} ms | max {:.1} ms |",
        latencies.len(),
        at(0.50),
        at(0.99),
        latencies[latencies.len() - 1]
    );
}
