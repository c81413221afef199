//! The broker from devstack carries records from an idempotent producer to a
//! consumer group, and the group's committed offsets survive a new consumer.

use std::{collections::HashMap, time::Duration};

use events::{Envelope, PaymentCompleted, producer::Producer};
use platform::settings::KafkaSettings;
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{CommitMode, Consumer, StreamConsumer},
};

fn settings() -> KafkaSettings {
    KafkaSettings::plaintext_to(
        devstack::testing::stack().kafka_brokers.clone(),
        String::new(),
        "test",
    )
}

fn consumer(brokers: &str, group: &str) -> StreamConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .create()
        .expect("consumer config is valid")
}

#[tokio::test]
async fn records_round_trip_through_a_consumer_group_with_offsets_committed() {
    let settings = settings();
    let topic = format!("roundtrip.{}", devstack::testing::unique_suffix());
    devstack::testing::create_topics(&[&topic], 3).await;
    let producer = Producer::new(&settings, Duration::from_secs(10)).unwrap();

    let sent: Vec<Envelope<PaymentCompleted>> = (0..30).map(PaymentCompleted::synthetic).collect();
    let mut headers = HashMap::new();
    headers.insert(
        "traceparent".to_owned(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
    );
    for envelope in &sent {
        producer
            .send(&topic, &envelope.key, &envelope.to_json(), &headers)
            .await
            .expect("broker acknowledges");
    }

    let group = format!("group-{}", devstack::testing::unique_suffix());
    let first = consumer(&settings.brokers, &group);
    first.subscribe(&[&topic]).unwrap();
    let mut received = Vec::new();
    while received.len() < sent.len() {
        let message = tokio::time::timeout(Duration::from_secs(30), first.recv())
            .await
            .expect("every record arrives within 30 s")
            .expect("consume succeeds");
        let decoded = Envelope::<PaymentCompleted>::decode(message.payload().unwrap()).unwrap();
        assert_eq!(
            message.key(),
            Some(decoded.key.as_bytes()),
            "the record key is the aggregate key"
        );
        let traceparent = message.headers().and_then(|h| {
            rdkafka::message::Headers::iter(h)
                .find(|h| h.key == "traceparent")
                .and_then(|h| h.value.map(<[u8]>::to_vec))
        });
        assert_eq!(
            traceparent.as_deref(),
            Some(headers["traceparent"].as_bytes())
        );
        first.store_offset_from_message(&message).unwrap();
        received.push(decoded);
    }
    first
        .commit_consumer_state(CommitMode::Sync)
        .expect("offsets commit");

    let mut want: Vec<_> = sent.iter().map(|e| e.event_id).collect();
    let mut got: Vec<_> = received.iter().map(|e| e.event_id).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "each record is received exactly once");

    let assignment = first.assignment().unwrap();
    let committed = first.committed(Duration::from_secs(10)).unwrap();
    let committed_total: i64 = committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum();
    assert_eq!(
        assignment.count(),
        3,
        "one consumer owns all three partitions"
    );
    assert_eq!(committed_total, 30, "committed offsets cover every record");
    events::consumer::close_bounded(first, events::consumer::CLOSE_BOUND);

    // A new member of the same group resumes after the committed offsets.
    let second = consumer(&settings.brokers, &group);
    let mut partitions = TopicPartitionList::new();
    for p in 0..3 {
        partitions.add_partition(&topic, p);
    }
    let positions = second
        .committed_offsets(partitions, Duration::from_secs(10))
        .unwrap();
    let resumed: i64 = positions
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum();
    assert_eq!(resumed, 30);
}
