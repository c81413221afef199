//! `loadtest release`: end-to-end latency from a payment's commit to the
//! release of the buyer's waiting-room slot, through the outbox relay, Kafka
//! and queue-service's `payment.completed` consumer, on the services
//! devstack runs.
//!
//! Buyers sign in with the stack's issuer and are admitted first. For each
//! buyer: `POST /v1/payments` returns 201 (the transaction has committed),
//! then the tool calls gRPC `VerifyAccess` (with the stack's service
//! credential, as core-service does) with the buyer's access token every
//! 1 ms until queue-service refuses it
//! (`PERMISSION_DENIED`: the slot was released). The latency is the time from
//! the 201 to the first refusal, so it slightly overstates the true
//! commit-to-release time by the 201's trip back and the 1 ms poll step.
//! Buyers pay one after another, so that each measurement sees an idle
//! pipeline.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use core_service::{
    api::{CreatePayment, CreateReservation},
    domain::{PerformanceId, SeatId},
};
use devstack::{Endpoints, StackConfig, services};
use onsale_client::Client;
use onsale_proto::queue::v1::{VerifyAccessRequest, waiting_room_client::WaitingRoomClient};
use platform::{service_auth, settings::Secret};

use crate::{
    setup::{self, Entered},
    stats::nearest_rank,
};

/// queue-service's gRPC endpoint as devstack starts it.
const QUEUE_GRPC: &str = "http://127.0.0.1:50051";
/// Price of each buyer's seat, KRW; each buyer is charged exactly this.
const PRICE: i64 = 10_000;

/// Options of `loadtest release`.
#[derive(Debug, Clone, Args)]
pub struct ReleaseArgs {
    /// Buyers, each holding and paying one seat.
    #[arg(long, env = "BENCH_BUYERS", default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub buyers: u32,
}

/// Restarts the services with the tools' settings on topics of this run's
/// own, admits `buyers` fans, and measures each one's payment-to-release
/// latency; prints one Markdown row (p50, p99, max in ms). Stops the
/// services at the end.
///
/// # Errors
/// When a service cannot start, a call is refused, or a slot is not
/// released within 30 s.
pub async fn run(config: &StackConfig, endpoints: &Endpoints, args: ReleaseArgs) -> Result<()> {
    // Topics and consumer groups of this run's own: events other runs left
    // behind (a bench leaves tens of thousands) would queue ahead of the
    // buyers' and be measured with them.
    let suffix = devstack::testing::isolated_topics_on(&endpoints.kafka_brokers).await?;
    let group = format!("release{suffix}");
    setup::start_services(
        config,
        endpoints,
        "release",
        &[
            ("ONSALE__KAFKA__TOPIC_SUFFIX", &suffix),
            ("ONSALE__KAFKA__GROUP_PREFIX", &group),
            // One client address admits every buyer: lift the per-client
            // limit.
            ("ONSALE__QUEUE__RATE_LIMIT__PER_SECOND", "1000000"),
            ("ONSALE__QUEUE__RATE_LIMIT__BURST", "1000000"),
        ],
        false,
    )
    .await?;
    let measured = measure(endpoints, &args).await;
    // The services run on this run's topics: stop them rather than leave
    // them for other tools.
    services::down(config);
    measured
}

/// Admits the buyers, then pays and times one after another.
async fn measure(endpoints: &Endpoints, args: &ReleaseArgs) -> Result<()> {
    let http = reqwest::Client::new();
    let client = setup::client(http.clone()).build();
    let issuer = setup::issuer(http, endpoints);
    let buyers = usize::try_from(args.buyers)?;
    let run_id = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
    let rows = args.buyers.div_ceil(setup::SEATS_PER_ROW);
    let (performance, seat_ids) = setup::create_show(
        &client,
        "loadtest release",
        "Kafka",
        "Loopback Hall",
        vec![setup::section("A", "R", PRICE, rows, setup::SEATS_PER_ROW)?],
    )
    .await?;
    client
        .configure_room(performance, &setup::open_room(100_000, 100_000.0, 600, 300))
        .await?;
    let prefix = format!("release-{run_id}");
    setup::charge_all(&client, (0..buyers).map(|i| format!("{prefix}-{i}")), PRICE).await?;
    eprintln!("release: admitting {buyers} buyers");
    let admitted = setup::enter_many(
        &client,
        &issuer,
        &performance.to_string(),
        &prefix,
        buyers,
        true,
    )
    .await?;
    let channel = tonic::transport::Endpoint::from_static(QUEUE_GRPC)
        .connect()
        .await
        .context("connecting to queue-service's gRPC")?;
    let mut grpc = WaitingRoomClient::with_interceptor(
        channel,
        service_auth::present(Secret::from(devstack::LOCAL_SERVICE_KEY.to_owned())),
    );

    eprintln!("release: paying one buyer after another");
    let performance = PerformanceId::new(performance)?;
    let mut latencies = Vec::with_capacity(buyers);
    for (i, (buyer, seat)) in admitted.iter().zip(&seat_ids).enumerate() {
        let committed = pay(
            &client,
            performance,
            buyer,
            *seat,
            &format!("{prefix}-key-{i}"),
        )
        .await?;
        loop {
            let verdict = grpc
                .verify_access(VerifyAccessRequest {
                    event_id: performance.to_string(),
                    access_token: buyer.token.clone(),
                    accept_completed: false,
                })
                .await;
            match verdict {
                Ok(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                Err(status) if status.code() == tonic::Code::PermissionDenied => break,
                Err(status) => bail!("unexpected VerifyAccess answer: {status}"),
            }
            if committed.elapsed() > Duration::from_secs(30) {
                bail!("slot of buyer {i} not released within 30 s");
            }
        }
        latencies.push(committed.elapsed().as_secs_f64() * 1_000.0);
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "| payment commit → slot release | {} buyers | p50 {:.1} ms | p99 {:.1} ms | max {:.1} ms |",
        latencies.len(),
        nearest_rank(&latencies, 0.50),
        nearest_rank(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    Ok(())
}

/// Holds `seat` for the admitted `buyer` (as that fan) and pays it;
/// returns when the payment's 201 arrived.
async fn pay(
    client: &Client,
    performance: PerformanceId,
    buyer: &Entered,
    seat: i64,
    key: &str,
) -> Result<Instant> {
    let (fan, access_token) = (client.as_fan(&buyer.identity), &buyer.token);
    let hold = fan
        .hold(
            access_token,
            &CreateReservation::seats(performance, vec![SeatId::new(seat)?]),
        )
        .await?;
    fan.pay(
        access_token,
        key,
        &CreatePayment {
            reservation_id: hold.reservation_id,
            coupon_code: None,
        },
    )
    .await?;
    Ok(Instant::now())
}
