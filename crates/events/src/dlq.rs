//! Dead-letter tooling: `<service> dlq list` and `<service> dlq replay`.
//!
//! [`DlqCommand`] is a clap subcommand that each service mounts. `list`
//! prints the dead letters of a topic with their `dlq.*` headers; `replay`
//! sends chosen dead letters back to their source topic, with their original
//! key, payload and headers (plus `dlq.replayed_from`), once the cause is
//! fixed. Handlers are idempotent, so replaying a letter whose effect was
//! already applied changes nothing.
//!
//! The tool reads the DLQ by assigning partitions directly (no consumer
//! group), so it never moves any group's offsets.

use std::{collections::HashMap, time::Duration};

use clap::{Args, Subcommand};
use platform::settings::KafkaSettings;
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::Headers,
};
use serde::Serialize;

use crate::{producer::Producer, topics};

/// `dlq` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum DlqCommand {
    /// Print the dead letters of a topic.
    List(Selection),
    /// Send dead letters back to their source topic.
    Replay(Selection),
}

/// Which dead letters.
#[derive(Debug, Clone, Args)]
pub struct Selection {
    /// Source topic (base name, e.g. `payment.completed`); its DLQ is read.
    #[arg(long)]
    pub topic: String,
    /// Only this DLQ offset (with `--partition`); default: all.
    #[arg(long, requires = "partition")]
    pub offset: Option<i64>,
    /// Only this DLQ partition.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Print JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One dead letter.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// DLQ partition.
    pub partition: i32,
    /// DLQ offset.
    pub offset: i64,
    /// Record key.
    pub key: String,
    /// Record value (lossy UTF-8).
    pub payload: String,
    /// Every header, `dlq.*` included.
    pub headers: HashMap<String, String>,
}

/// A DLQ tool failure.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// The broker refused or did not answer.
    #[error("kafka error")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Replaying a letter failed.
    #[error("replay failed")]
    Produce(#[from] crate::producer::ProduceError),
    /// The blocking reader task panicked or was cancelled.
    #[error("the DLQ reader task failed")]
    Join(#[from] tokio::task::JoinError),
    /// The letter lacks `dlq.source.topic`.
    #[error("dead letter {0}/{1} has no dlq.source.topic header")]
    NoSource(i32, i64),
}

/// Reads the selected dead letters of `topic` (with deployment suffix)
/// from the brokers of `kafka`.
///
/// # Errors
/// [`DlqError::Kafka`] when the broker is unreachable.
pub fn read(
    kafka: &KafkaSettings,
    topic: &str,
    selection: &Selection,
) -> Result<Vec<DeadLetter>, DlqError> {
    let dlq = topics::dlq(topic);
    let mut config = ClientConfig::new();
    for (property, value) in kafka.client_properties() {
        config.set(property, value);
    }
    let consumer: BaseConsumer = config
        .set("group.id", "onsale-dlq-tool")
        .set("enable.auto.commit", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(&dlq), Duration::from_secs(10))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .filter(|p| selection.partition.is_none_or(|wanted| wanted == *p))
        .collect();
    let mut letters = Vec::new();
    for partition in partitions {
        let (low, high) = consumer.fetch_watermarks(&dlq, partition, Duration::from_secs(10))?;
        let (start, end) = match selection.offset {
            Some(offset) if offset >= low && offset < high => (offset, offset + 1),
            Some(_) => continue,
            None => (low, high),
        };
        if start >= end {
            continue;
        }
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&dlq, partition, Offset::Offset(start))?;
        consumer.assign(&list)?;
        let mut next = start;
        while next < end {
            match consumer.poll(Duration::from_secs(10)) {
                Some(Ok(message)) => {
                    next = message.offset() + 1;
                    let headers = message
                        .headers()
                        .map(|h| {
                            h.iter()
                                .filter_map(|h| {
                                    Some((
                                        h.key.to_owned(),
                                        String::from_utf8_lossy(h.value?).into_owned(),
                                    ))
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    letters.push(DeadLetter {
                        partition,
                        offset: message.offset(),
                        key: message
                            .key()
                            .map(|k| String::from_utf8_lossy(k).into_owned())
                            .unwrap_or_default(),
                        payload: message
                            .payload()
                            .map(|p| String::from_utf8_lossy(p).into_owned())
                            .unwrap_or_default(),
                        headers,
                    });
                }
                Some(Err(error)) => return Err(error.into()),
                // Compacted or transactional gaps: stop at what exists.
                None => break,
            }
        }
    }
    Ok(letters)
}

/// Sends `letters` back to their source topics.
///
/// # Errors
/// [`DlqError`] on the first letter that could not be replayed; earlier ones
/// stay replayed.
pub async fn replay(producer: &Producer, letters: &[DeadLetter]) -> Result<usize, DlqError> {
    for letter in letters {
        let source = letter
            .headers
            .get("dlq.source.topic")
            .ok_or(DlqError::NoSource(letter.partition, letter.offset))?;
        let mut headers: HashMap<String, String> = letter
            .headers
            .iter()
            .filter(|(k, _)| !k.starts_with("dlq."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        headers.insert(
            "dlq.replayed_from".into(),
            format!("{}/{}", letter.partition, letter.offset),
        );
        producer
            .send(source, &letter.key, letter.payload.as_bytes(), &headers)
            .await?;
    }
    Ok(letters.len())
}

/// Runs a `dlq` subcommand for a deployment with `kafka` settings, printing
/// to stdout.
///
/// # Errors
/// [`DlqError`] from [`read`] or [`replay`].
pub async fn execute(command: &DlqCommand, kafka: &KafkaSettings) -> Result<(), DlqError> {
    let (DlqCommand::List(selection) | DlqCommand::Replay(selection)) = command;
    let topic = kafka.topic(&selection.topic);
    let (owned, settings) = (selection.clone(), kafka.clone());
    let letters = tokio::task::spawn_blocking(move || read(&settings, &topic, &owned)).await??;
    match command {
        DlqCommand::List(selection) => {
            for letter in &letters {
                if selection.json {
                    println!("{}", serde_json::to_string(letter).unwrap_or_default());
                } else {
                    println!(
                        "{}/{} key={} attempts={} error={}\n  {}",
                        letter.partition,
                        letter.offset,
                        letter.key,
                        letter
                            .headers
                            .get("dlq.attempts")
                            .map_or("?", String::as_str),
                        letter.headers.get("dlq.error").map_or("?", String::as_str),
                        letter.payload
                    );
                }
            }
            eprintln!("{} dead letter(s)", letters.len());
        }
        DlqCommand::Replay(_) => {
            let producer = Producer::new(kafka, Duration::from_secs(10))?;
            let count = replay(&producer, &letters).await?;
            eprintln!("replayed {count} dead letter(s)");
        }
    }
    Ok(())
}
