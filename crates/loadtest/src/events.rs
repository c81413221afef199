//! `loadtest events`: throughput of the outbox relay and of the consumer
//! runtime, each next to a raw rdkafka baseline measured in the same run on
//! the same broker:
//!
//! - raw producer: `FutureProducer` sends awaited in windows of 1,000;
//! - relay: rows claimed with `FOR UPDATE SKIP LOCKED`, sent, and marked
//!   published in the same transaction (batch 500);
//! - raw consumer: a `StreamConsumer` reading the topic in a fresh group;
//! - runtime: [`ConsumerRuntime`] with a handler that only counts (offsets
//!   stored after each record, retries and DLQ armed).
//!
//! Runs against the stack's broker and Postgres (a fresh database and
//! topics of its own) and prints a Markdown table.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use clap::Args;
use devstack::Endpoints;
use events::{
    PaymentCompleted,
    consumer::{ConsumerRuntime, ConsumerSettings, Handler, HandlerError, Outcome, Record},
    outbox::{OutboxRelay, RelaySettings, SCHEMA_SQL},
    producer::Producer,
};
use platform::{settings::KafkaSettings, shutdown::CancellationToken};
use rdkafka::{
    ClientConfig,
    consumer::{Consumer, StreamConsumer},
};

/// Options of `loadtest events`.
#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Records sent through each step.
    #[arg(long, env = "EVENTS_BENCH_N", default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(2..=10_000_000))]
    pub records: u64,
}

#[derive(Clone, Default)]
struct Count(Arc<AtomicUsize>);

impl Handler for Count {
    async fn handle(&self, _record: &Record) -> Result<Outcome, HandlerError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(Outcome::Done)
    }
}

/// Prints one table row; returns the rate (records per second).
fn row(label: &str, count: usize, elapsed: Duration, baseline: Option<f64>) -> f64 {
    let rate = count as f64 / elapsed.as_secs_f64();
    let ratio = baseline.map_or_else(
        || "1.00 (baseline)".to_owned(),
        |b| format!("{:.2}", rate / b),
    );
    println!(
        "| {label} | {count} | {:.2} | {rate:.0} | {ratio} |",
        elapsed.as_secs_f64()
    );
    rate
}

/// Runs the four steps against the stack at `endpoints` and prints the
/// table.
///
/// # Errors
/// When the broker or Postgres refuses, a send is not acknowledged, the
/// relay fails a delivery, or records stop arriving for 60 s.
pub async fn run(endpoints: &Endpoints, args: EventsArgs) -> Result<()> {
    let n = usize::try_from(args.records)?;
    let suffix = format!(".{}", devstack::testing::unique_suffix());
    let raw_topic = format!("bench.raw{suffix}");
    let relay_topic = format!("payment.completed{suffix}");
    devstack::kafka::create_topics(
        &endpoints.kafka_brokers,
        &[&raw_topic, &relay_topic, &format!("{relay_topic}.dlq")],
        3,
    )
    .await?;
    let kafka =
        KafkaSettings::plaintext_to(endpoints.kafka_brokers.clone(), suffix.clone(), "bench");
    let producer = Producer::new(&kafka, Duration::from_secs(30))?;
    let records: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            let e = PaymentCompleted::synthetic(i as i64);
            (e.key.clone(), e.to_json())
        })
        .collect();
    let empty = HashMap::new();

    println!("| step | records | seconds | records/s | ratio to its baseline |");
    println!("|---|---|---|---|---|");

    let started = Instant::now();
    for window in records.chunks(1_000) {
        for sent in futures::future::join_all(
            window
                .iter()
                .map(|(k, v)| producer.send(&raw_topic, k, v, &empty)),
        )
        .await
        {
            sent.context("a raw send was not acknowledged")?;
        }
    }
    let raw_produce = row("raw producer (baseline)", n, started.elapsed(), None);

    let url = devstack::testing::create_database(&endpoints.database_url).await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await?;
    sqlx::raw_sql(SCHEMA_SQL).execute(&pool).await?;
    for chunk in (0..n).collect::<Vec<_>>().chunks(5_000) {
        let envelopes: Vec<_> = chunk
            .iter()
            .map(|i| PaymentCompleted::synthetic(*i as i64))
            .collect();
        sqlx::query(
            "INSERT INTO outbox (event_id, topic, aggregate_key, payload)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[])",
        )
        .bind(envelopes.iter().map(|e| e.event_id).collect::<Vec<_>>())
        .bind(vec!["payment.completed".to_owned(); envelopes.len()])
        .bind(envelopes.iter().map(|e| e.key.clone()).collect::<Vec<_>>())
        .bind(
            envelopes
                .iter()
                .map(serde_json::to_value)
                .collect::<Result<Vec<_>, _>>()?,
        )
        .execute(&pool)
        .await?;
    }
    let relay = OutboxRelay::new(
        pool.clone(),
        producer.clone(),
        RelaySettings {
            batch_size: 500,
            topic_suffix: suffix.clone(),
            ..RelaySettings::default()
        },
    );
    let started = Instant::now();
    let mut published = 0;
    while published < n {
        let pass = relay.relay_once().await.context("relay pass")?;
        ensure!(
            pass.failed == 0,
            "the relay failed {} deliveries",
            pass.failed
        );
        published += pass.published;
    }
    row(
        "outbox relay (1 relay, batch 500)",
        n,
        started.elapsed(),
        Some(raw_produce),
    );

    let raw: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &endpoints.kafka_brokers)
        .set("group.id", format!("bench-raw{suffix}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    raw.subscribe(&[&relay_topic])?;
    let mut seen = 0;
    let mut started = None;
    while seen < n {
        tokio::time::timeout(Duration::from_secs(60), raw.recv())
            .await
            .context("no record for 60 s")??;
        // Timing starts at the first record so that the group join is not counted.
        started.get_or_insert_with(Instant::now);
        seen += 1;
    }
    let raw_consume = row(
        "raw consumer (baseline, from first record)",
        n - 1,
        started.map_or(Duration::ZERO, |s| s.elapsed()),
        None,
    );
    events::consumer::close_bounded(raw, Duration::from_secs(1));

    let count = Count::default();
    let shutdown = CancellationToken::new();
    let mut settings = ConsumerSettings::new(
        &endpoints.kafka_brokers,
        format!("bench-runtime{suffix}"),
        &relay_topic,
    );
    settings.max_attempts = 3;
    let runtime = ConsumerRuntime::new(settings, count.clone(), producer.clone());
    let task = tokio::spawn(runtime.run(shutdown.clone()));
    while count.0.load(Ordering::Relaxed) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let started = Instant::now();
    let first = count.0.load(Ordering::Relaxed);
    while count.0.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    row(
        "consumer runtime (from first record)",
        n - first,
        started.elapsed(),
        Some(raw_consume),
    );
    shutdown.cancel();
    let _ = task.await;
    Ok(())
}
