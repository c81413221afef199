//! The outbox relay against real Postgres and Kafka: concurrent relays
//! publish each row once, and a broker outage only grows the backlog, which
//! drains by itself afterwards; published rows are purged after their
//! retention, unpublished ones never.

use std::{collections::HashMap, time::Duration};

use events::{
    Envelope, PaymentCompleted,
    outbox::{OutboxRelay, RelaySettings, SCHEMA_SQL, purge_published},
    producer::Producer,
};
use platform::{settings::KafkaSettings, shutdown::CancellationToken};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
};
use sqlx::{PgPool, postgres::PgPoolOptions};

async fn database() -> PgPool {
    let url = devstack::testing::fresh_database().await;
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&url)
        .await
        .unwrap();
    sqlx::raw_sql(SCHEMA_SQL).execute(&pool).await.unwrap();
    pool
}

async fn insert_payments(pool: &PgPool, count: usize) -> Vec<uuid::Uuid> {
    let mut ids = Vec::with_capacity(count);
    for n in 0..count {
        // Fifty keys, so that records of one key queue behind each other.
        let mut envelope = PaymentCompleted::synthetic(n as i64);
        envelope.key = format!("reservation-{}", n % 50);
        sqlx::query("INSERT INTO outbox (event_id, topic, aggregate_key, payload) VALUES ($1, $2, $3, $4::jsonb)")
            .bind(envelope.event_id)
            .bind("payment.completed")
            .bind(&envelope.key)
            .bind(String::from_utf8(envelope.to_json()).unwrap())
            .execute(pool)
            .await
            .unwrap();
        ids.push(envelope.event_id);
    }
    ids
}

fn relay(pool: &PgPool, brokers: &str, suffix: &str, delivery_timeout: Duration) -> OutboxRelay {
    let kafka = KafkaSettings::plaintext_to(brokers.to_owned(), suffix.to_owned(), "t");
    OutboxRelay::new(
        pool.clone(),
        Producer::new(&kafka, delivery_timeout).unwrap(),
        RelaySettings {
            batch_size: 100,
            topic_suffix: suffix.to_owned(),
            ..RelaySettings::default()
        },
    )
}

async fn pending(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Every event id in `topic` (3 partitions), with how often each was seen,
/// read by direct assignment from the beginning: no consumer group, so the
/// check does not depend on group coordination.
async fn consume_all(brokers: &str, topic: &str, expected: usize) -> HashMap<uuid::Uuid, usize> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("check-{}", devstack::testing::unique_suffix()),
        )
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut partitions = TopicPartitionList::new();
    for partition in 0..3 {
        partitions
            .add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&partitions).unwrap();
    let mut seen: HashMap<uuid::Uuid, usize> = HashMap::new();
    while seen.len() < expected {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {expected} events arrived", seen.len()))
            .unwrap();
        let envelope = Envelope::<PaymentCompleted>::decode(message.payload().unwrap()).unwrap();
        *seen.entry(envelope.event_id).or_default() += 1;
    }
    // Anything still in flight would be a duplicate: give it a moment.
    while let Ok(Ok(message)) = tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await
    {
        let envelope = Envelope::<PaymentCompleted>::decode(message.payload().unwrap()).unwrap();
        *seen.entry(envelope.event_id).or_default() += 1;
    }
    seen
}

#[tokio::test]
async fn two_relays_running_at_once_publish_each_event_exactly_once() {
    let pool = database().await;
    let suffix = format!(".{}", devstack::testing::unique_suffix());
    let topic = format!("payment.completed{suffix}");
    devstack::testing::create_topics(&[&topic], 3).await;
    let brokers = devstack::testing::stack().kafka_brokers.clone();
    let ids = insert_payments(&pool, 1_000).await;

    let shutdown = CancellationToken::new();
    let a = tokio::spawn(
        relay(&pool, &brokers, &suffix, Duration::from_secs(10)).run(shutdown.clone()),
    );
    let b = tokio::spawn(
        relay(&pool, &brokers, &suffix, Duration::from_secs(10)).run(shutdown.clone()),
    );
    for _ in 0..300 {
        if pending(&pool).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pending(&pool).await, 0, "every row is published");
    shutdown.cancel();
    a.await.unwrap();
    b.await.unwrap();

    let seen = consume_all(&brokers, &topic, ids.len()).await;
    assert_eq!(seen.len(), ids.len());
    assert!(
        ids.iter().all(|id| seen.get(id) == Some(&1)),
        "no event is published twice"
    );
    let attempts: i64 = sqlx::query_scalar("SELECT max(attempts)::int8 FROM outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(attempts, 1, "no row was claimed by both relays");
}

#[tokio::test]
async fn a_broker_outage_grows_the_backlog_and_it_drains_when_the_broker_returns() {
    let pool = database().await;
    let broker = devstack::testing::PrivateBroker::start(&["payment.completed"], 3).await;
    let ids = insert_payments(&pool, 200).await;
    broker.pause();

    let relay = relay(&pool, &broker.brokers, "", Duration::from_secs(1));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(relay.clone().run(shutdown.clone()));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (backlog, oldest_age) = relay.measure_backlog().await.unwrap();
    assert_eq!(
        backlog, 200,
        "nothing is marked published while the broker is down"
    );
    assert!(oldest_age >= 3.0, "the oldest age grows during the outage");
    let errors: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE last_error IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(errors > 0, "failed attempts are recorded, not dropped");

    broker.resume();
    for _ in 0..600 {
        if pending(&pool).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pending(&pool).await, 0, "the backlog drains by itself");
    shutdown.cancel();
    task.await.unwrap();

    let seen = consume_all(&broker.brokers, "payment.completed", ids.len()).await;
    assert!(
        ids.iter().all(|id| seen.contains_key(id)),
        "every event is delivered at least once"
    );
}

#[tokio::test]
async fn only_rows_published_longer_ago_than_the_retention_are_purged() {
    let pool = database().await;
    insert_payments(&pool, 30).await;
    // Ids 1-10: published two hours ago; 11-20: published just now;
    // 21-30: never published, and older than anything else.
    sqlx::query("UPDATE outbox SET published_at = now() - interval '2 hours' WHERE id <= 10")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE outbox SET published_at = now() WHERE id BETWEEN 11 AND 20")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE outbox SET created_at = now() - interval '3 days' WHERE id > 20")
        .execute(&pool)
        .await
        .unwrap();
    let retention = Duration::from_secs(3_600);

    assert_eq!(purge_published(&pool, retention, 4).await.unwrap(), 4);
    assert_eq!(purge_published(&pool, retention, 100).await.unwrap(), 6);
    assert_eq!(purge_published(&pool, retention, 100).await.unwrap(), 0);

    let left: Vec<i64> = sqlx::query_scalar("SELECT id FROM outbox ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(left, (11..=30).collect::<Vec<i64>>());
    assert_eq!(pending(&pool).await, 10);
}
