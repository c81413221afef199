//! The consumer runtime against the devstack broker: at-least-once handling,
//! bounded retries, dead letters with their headers, and deferral of records
//! that are not due yet.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use events::{
    consumer::{ConsumerRuntime, ConsumerSettings, Handler, HandlerError, Outcome, Record},
    producer::Producer,
};
use platform::{settings::KafkaSettings, shutdown::CancellationToken};
use rdkafka::{
    ClientConfig, Message,
    consumer::{Consumer, StreamConsumer},
    message::Headers,
};

/// Handles JSON `{"n": 1, "poison": false, "due_in_ms": 0}` records: poison
/// ones always fail transiently, malformed ones fail permanently, and
/// `due_in_ms` asks for deferral until `sent_at + due_in_ms`.
/// (record number, when handled, partition).
type HandledLog = Arc<Mutex<Vec<(i64, DateTime<Utc>, i32)>>>;

#[derive(Clone, Default)]
struct Recorder {
    handled: HandledLog,
    attempts: Arc<Mutex<HashMap<i64, u32>>>,
}

impl Handler for Recorder {
    async fn handle(&self, record: &Record) -> Result<Outcome, HandlerError> {
        let value: serde_json::Value =
            serde_json::from_slice(&record.payload).map_err(HandlerError::permanent)?;
        let n = value["n"]
            .as_i64()
            .ok_or_else(|| HandlerError::permanent("no n"))?;
        *self.attempts.lock().unwrap().entry(n).or_default() += 1;
        if value["poison"].as_bool() == Some(true) {
            return Err(HandlerError::transient(format!("record {n} always fails")));
        }
        if let Some(due) = value["due_at"].as_str() {
            let due: DateTime<Utc> = due.parse().unwrap();
            if due > Utc::now() {
                return Ok(Outcome::NotYet(due));
            }
        }
        self.handled
            .lock()
            .unwrap()
            .push((n, Utc::now(), record.partition));
        Ok(Outcome::Done)
    }
}

struct Fixture {
    topic: String,
    brokers: String,
    producer: Producer,
}

async fn fixture(partitions: i32) -> Fixture {
    let brokers = devstack::testing::stack().kafka_brokers.clone();
    let topic = format!("runtime.{}", devstack::testing::unique_suffix());
    devstack::testing::create_topics(&[&topic, &format!("{topic}.dlq")], partitions).await;
    let settings = KafkaSettings::plaintext_to(brokers.clone(), "", "t");
    Fixture {
        producer: Producer::new(&settings, Duration::from_secs(10)).unwrap(),
        topic,
        brokers,
    }
}

impl Fixture {
    async fn send(&self, partition_key: &str, body: serde_json::Value) {
        self.producer
            .send(
                &self.topic,
                partition_key,
                body.to_string().as_bytes(),
                &HashMap::new(),
            )
            .await
            .expect("broker acknowledges");
    }

    async fn send_raw(&self, key: &str, bytes: &[u8]) {
        self.producer
            .send(&self.topic, key, bytes, &HashMap::new())
            .await
            .expect("broker acknowledges");
    }

    fn runtime(&self, handler: Recorder) -> ConsumerRuntime<Recorder> {
        let settings = KafkaSettings::plaintext_to(self.brokers.clone(), "", "t");
        let mut consumer = ConsumerSettings::new(
            &self.brokers,
            format!("g-{}", devstack::testing::unique_suffix()),
            &self.topic,
        );
        consumer.max_attempts = 3;
        consumer.min_backoff = Duration::from_millis(20);
        consumer.max_backoff = Duration::from_millis(100);
        ConsumerRuntime::new(
            consumer,
            handler,
            Producer::new(&settings, Duration::from_secs(10)).unwrap(),
        )
    }

    /// Reads `count` records from the DLQ.
    async fn dead_letters(&self, count: usize) -> Vec<(Vec<u8>, HashMap<String, String>)> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set(
                "group.id",
                format!("dlq-{}", devstack::testing::unique_suffix()),
            )
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer
            .subscribe(&[&format!("{}.dlq", self.topic)])
            .unwrap();
        let mut out = Vec::new();
        while out.len() < count {
            let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
                .await
                .expect("a dead letter arrives")
                .unwrap();
            let headers = message
                .headers()
                .map(|h| {
                    h.iter()
                        .filter_map(|h| {
                            Some((h.key.to_owned(), String::from_utf8(h.value?.to_vec()).ok()?))
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push((message.payload().unwrap_or_default().to_vec(), headers));
        }
        out
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..300 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within 30 s");
}

#[tokio::test]
async fn a_poison_record_is_dead_lettered_after_n_attempts_and_later_records_are_handled() {
    let fx = fixture(1).await;
    fx.send("k", serde_json::json!({"n": 1})).await;
    fx.send("k", serde_json::json!({"n": 2, "poison": true}))
        .await;
    fx.send("k", serde_json::json!({"n": 3})).await;
    let recorder = Recorder::default();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(fx.runtime(recorder.clone()).run(shutdown.clone()));

    let handled = recorder.handled.clone();
    wait_for("records 1 and 3 handled", || {
        handled.lock().unwrap().len() == 2
    })
    .await;
    let order: Vec<i64> = handled.lock().unwrap().iter().map(|h| h.0).collect();
    assert_eq!(
        order,
        vec![1, 3],
        "the partition keeps flowing past the poison record, in order"
    );
    assert_eq!(
        recorder.attempts.lock().unwrap()[&2],
        3,
        "the poison record is tried exactly max_attempts times"
    );

    let letters = fx.dead_letters(1).await;
    let (payload, headers) = &letters[0];
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(payload).unwrap()["n"],
        2
    );
    assert_eq!(headers["dlq.source.topic"], fx.topic);
    assert_eq!(headers["dlq.source.partition"], "0");
    assert_eq!(headers["dlq.source.offset"], "1");
    assert_eq!(headers["dlq.attempts"], "3");
    assert!(headers["dlq.error"].contains("record 2 always fails"));

    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_malformed_record_goes_to_the_dlq_at_once_without_retries() {
    let fx = fixture(1).await;
    fx.send_raw("k", b"{not json").await;
    fx.send("k", serde_json::json!({"n": 7})).await;
    let recorder = Recorder::default();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(fx.runtime(recorder.clone()).run(shutdown.clone()));
    let handled = recorder.handled.clone();
    wait_for("record 7 handled", || handled.lock().unwrap().len() == 1).await;
    let letters = fx.dead_letters(1).await;
    assert_eq!(letters[0].0, b"{not json");
    assert_eq!(
        letters[0].1["dlq.attempts"], "1",
        "permanent failures are not retried"
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_record_that_is_not_due_waits_without_blocking_other_partitions() {
    let fx = fixture(2).await;
    let due = Utc::now() + chrono::Duration::seconds(3);
    // Keys chosen so the two records land on different partitions.
    let (late_key, early_key) = two_keys_on_different_partitions(&fx).await;
    fx.send(
        &late_key,
        serde_json::json!({"n": 1, "due_at": due.to_rfc3339()}),
    )
    .await;
    fx.send(&late_key, serde_json::json!({"n": 2})).await;
    fx.send(&early_key, serde_json::json!({"n": 3})).await;
    let recorder = Recorder::default();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(fx.runtime(recorder.clone()).run(shutdown.clone()));
    let handled = recorder.handled.clone();
    wait_for("all three handled", || handled.lock().unwrap().len() == 3).await;
    let log = handled.lock().unwrap().clone();
    let at = |n: i64| log.iter().find(|h| h.0 == n).unwrap().1;
    assert!(
        at(1) >= due,
        "the deferred record is handled at or after its due time"
    );
    assert!(
        at(3) < due,
        "the other partition is not blocked by the deferred record"
    );
    assert!(
        at(2) >= at(1),
        "order within the deferred partition is kept"
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

/// Probes the broker's partitioner with throwaway records.
async fn two_keys_on_different_partitions(fx: &Fixture) -> (String, String) {
    let probe = format!("{}.probe", fx.topic);
    devstack::testing::create_topics(&[&probe], 2).await;
    let mut seen: HashMap<i32, String> = HashMap::new();
    for i in 0..32 {
        let key = format!("key-{i}");
        let delivered = fx
            .producer
            .send(&probe, &key, b"{}", &HashMap::new())
            .await
            .unwrap();
        seen.entry(delivered.partition).or_insert(key);
        if seen.len() == 2 {
            break;
        }
    }
    (
        seen.remove(&0).expect("a key for partition 0"),
        seen.remove(&1).expect("a key for partition 1"),
    )
}
