//! Tansu, a Kafka-API broker from crates.io, with in-memory storage, and the
//! topics the services use.
//!
//! Apache Kafka cannot be downloaded on these machines; Tansu 0.6 speaks the
//! Kafka protocol well enough for the rdkafka crate's bundled librdkafka 2.12
//! (idempotent producer, consumer groups, manual offset store and commit).
//! Debian's librdkafka 2.0.2 (kcat) fails against it with "Read underflow".
//! Storage is `memory://`: topics and offsets vanish when the broker stops,
//! and `up` recreates the topics.

use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    types::RDKafkaErrorCode,
};

use crate::{StackConfig, TOPICS, process};

/// Partitions of every topic: enough to test rebalances and per-key order.
pub const PARTITIONS: i32 = 3;

fn pid_file(config: &StackConfig) -> PathBuf {
    config.run_dir().join("tansu.pid")
}

/// The broker PID, when it runs.
pub fn pid(config: &StackConfig) -> Option<i32> {
    process::running_pid(&pid_file(config), "tansu")
}

/// Every topic `up` creates: each of [`TOPICS`] and its `.dlq`.
pub fn all_topics() -> Vec<String> {
    TOPICS
        .iter()
        .flat_map(|t| [(*t).to_owned(), format!("{t}.dlq")])
        .collect()
}

/// Starts the broker unless it runs, and creates missing topics.
///
/// # Errors
/// When tansu cannot be installed or started, or does not answer within 30 s.
pub async fn up(config: &StackConfig) -> Result<()> {
    let tansu = crate::install::ensure_tansu()?;
    if pid(config).is_none() {
        if process::port_open(config.kafka_port) {
            bail!(
                "port {} is taken by a process devstack did not start; set DEVSTACK_KAFKA_PORT",
                config.kafka_port
            );
        }
        let url = format!("tcp://127.0.0.1:{}", config.kafka_port);
        let mut command = Command::new(tansu);
        command
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .env(
                "RUST_LOG",
                std::env::var("DEVSTACK_TANSU_LOG").unwrap_or_else(|_| "warn".into()),
            );
        process::spawn_detached(
            command,
            &config.logs_dir().join("tansu.log"),
            &pid_file(config),
        )?;
    }
    let brokers = format!("127.0.0.1:{}", config.kafka_port);
    process::wait_until("kafka port", Duration::from_secs(30), || {
        process::port_open(config.kafka_port)
    })?;
    let topics = all_topics();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    create_topics(&brokers, &names, PARTITIONS).await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match healthy(&brokers) {
            Ok(()) => return Ok(()),
            Err(error) if std::time::Instant::now() > deadline => return Err(error),
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

/// Creates `topics` with `partitions` each; topics that exist are left alone.
///
/// # Errors
/// When the broker is unreachable or refuses a topic for another reason.
pub async fn create_topics(brokers: &str, topics: &[&str], partitions: i32) -> Result<()> {
    create_topics_with(
        &[("bootstrap.servers", brokers.to_owned())],
        topics,
        partitions,
    )
    .await
}

/// [`create_topics`] with the client's connection `properties`
/// (`bootstrap.servers`, and for the TLS broker `security.protocol` and
/// `ssl.ca.location`).
///
/// # Errors
/// As [`create_topics`].
pub async fn create_topics_with(
    properties: &[(&str, String)],
    topics: &[&str],
    partitions: i32,
) -> Result<()> {
    let mut config = ClientConfig::new();
    for (property, value) in properties {
        config.set(*property, value);
    }
    let admin: AdminClient<DefaultClientContext> =
        config.create().context("creating the admin client")?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&new, &options)
        .await
        .context("CreateTopics request failed")?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => bail!("creating topic {topic} failed: {code}"),
        }
    }
    Ok(())
}

/// Fetches cluster metadata and checks every stack topic exists with its
/// partitions.
///
/// # Errors
/// Names what is missing.
pub fn healthy(brokers: &str) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "devstack-health")
        .create()
        .context("creating a metadata client")?;
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(5))
        .context("fetching metadata")?;
    for wanted in all_topics() {
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == wanted)
            .with_context(|| format!("topic {wanted} missing"))?;
        if topic.partitions().len() != PARTITIONS as usize {
            bail!(
                "topic {wanted} has {} partitions, expected {PARTITIONS}",
                topic.partitions().len()
            );
        }
    }
    Ok(())
}

/// Stops the broker devstack started.
pub fn down(config: &StackConfig) -> bool {
    let stopped = pid(config)
        .is_some_and(|pid| process::stop(pid, "tansu", Signal::SIGTERM, Duration::from_secs(10)));
    let _ = std::fs::remove_file(pid_file(config));
    stopped
}
