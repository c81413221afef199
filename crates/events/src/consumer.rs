//! An at-least-once Kafka consumer runtime shared by both services.
//!
//! Rules (so that no record is lost and none blocks its partition forever,
//! as a stuck expiration consumer without a DLQ would leave seats held):
//! - `enable.auto.offset.store=false`: the offset of a record is stored only
//!   after its handler succeeded or the record was written to the DLQ, and
//!   stored offsets are committed every `auto.commit.interval.ms` (1 s), on
//!   revoke and on shutdown. A crash re-delivers at most the records since
//!   the last commit, so handlers must be idempotent.
//! - A failing handler is retried with exponential backoff (`backon`), at
//!   most `max_attempts` times; then the record goes to `<topic>.dlq` with
//!   headers `dlq.source.topic`, `dlq.source.partition`, `dlq.source.offset`,
//!   `dlq.error` and `dlq.attempts`, and the partition keeps flowing. A
//!   record that cannot be decoded (a [`HandlerError::Permanent`]) goes to the
//!   DLQ at once, never retried forever.
//! - A handler may answer [`Outcome::NotYet`] with a due time (expiry
//!   events): the runtime pauses that partition, seeks back to the record and
//!   resumes at the due time. No sleep per message, and the other partitions
//!   keep flowing.
//! - Records are handled one at a time, in the task that polls the consumer.
//!   Rebalance callbacks run inside that poll, so when a partition is revoked
//!   no record of it is in flight: the revoke commits the stored offsets and
//!   the partition is drained by construction.
//!
//! Each handler call runs in a `consume` span whose parent is the trace
//! context in the record's `traceparent` header, so a trace follows an event
//! from the request that wrote it to the handler that applied it.
//!
//! Metrics (see [`crate::metrics`]): consumer lag per partition from
//! librdkafka statistics, handled / failed / dead-lettered totals and handler
//! duration.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};
use platform::{settings::KafkaSettings, shutdown::CancellationToken};
use rdkafka::{
    ClientConfig, ClientContext, Message, Offset, Statistics, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    error::KafkaError,
    message::Headers,
};
use tracing::Instrument;

use crate::{metrics, producer::Producer, topics};

/// One consumed record, detached from the client.
#[derive(Debug, Clone)]
pub struct Record {
    /// Topic name (with deployment suffix).
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Record key, usually the aggregate id.
    pub key: Option<Vec<u8>>,
    /// Record value.
    pub payload: Vec<u8>,
    /// Headers whose values are UTF-8 (trace context among them).
    pub headers: HashMap<String, String>,
    /// 1 for the first delivery to the handler, 2 for the first retry, …
    pub attempt: u32,
}

/// What a successful handler call means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Handled (or already handled before: handlers are idempotent).
    Done,
    /// Not due yet: hand the record back at the given instant.
    NotYet(DateTime<Utc>),
}

/// A handler failure.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying (database or network hiccup).
    #[error("transient failure: {0}")]
    Transient(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Retrying cannot help (malformed record, unknown version): DLQ now.
    #[error("permanent failure: {0}")]
    Permanent(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl HandlerError {
    /// A transient failure from any error.
    pub fn transient(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Transient(error.into())
    }

    /// A permanent failure from any error.
    pub fn permanent(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Permanent(error.into())
    }
}

/// Handles records of one topic. Must be idempotent: the same record can be
/// delivered again after a crash or rebalance (deduplicate by the envelope's
/// `event_id` in an inbox, or make the effect naturally idempotent).
pub trait Handler: Send + Sync + 'static {
    /// Handles one record.
    fn handle(&self, record: &Record)
    -> impl Future<Output = Result<Outcome, HandlerError>> + Send;
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// The other connection properties: `security.protocol` and
    /// `ssl.ca.location` with TLS (see [`ConsumerSettings::for_kafka`]).
    pub security: Vec<(&'static str, String)>,
    /// Consumer group id.
    pub group_id: String,
    /// The topic (with deployment suffix); its DLQ is `<topic>.dlq`.
    pub topic: String,
    /// Handler attempts before the record is dead-lettered (≥ 1).
    pub max_attempts: u32,
    /// First retry delay.
    pub min_backoff: Duration,
    /// Largest retry delay.
    pub max_backoff: Duration,
    /// `fetch.wait.max.ms`: how long the broker may hold an empty fetch.
    /// Kafka answers a waiting fetch as soon as records arrive, but Tansu
    /// 0.6 holds it for the full wait, which with librdkafka's default
    /// (500 ms) put 500 ms between a payment and its slot release. 50 ms
    /// costs about 20 small fetches per second while idle.
    pub fetch_wait_max: Duration,
}

impl ConsumerSettings {
    /// Defaults: 5 attempts, backoff 100 ms doubling up to 5 s.
    pub fn new(
        brokers: impl Into<String>,
        group_id: impl Into<String>,
        topic: impl Into<String>,
    ) -> Self {
        Self {
            brokers: brokers.into(),
            security: Vec::new(),
            group_id: group_id.into(),
            topic: topic.into(),
            max_attempts: 5,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            fetch_wait_max: Duration::from_millis(50),
        }
    }
}

impl ConsumerSettings {
    /// [`ConsumerSettings::new`] for the brokers of `kafka` (a service's
    /// `[kafka]`), with its TLS.
    pub fn for_kafka(
        kafka: &KafkaSettings,
        group_id: impl Into<String>,
        topic: impl Into<String>,
    ) -> Self {
        let mut settings = Self::new(String::new(), group_id, topic);
        for (property, value) in kafka.client_properties() {
            match property {
                "bootstrap.servers" => settings.brokers = value,
                _ => settings.security.push((property, value)),
            }
        }
        settings
    }
}

/// Why the consumer could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// Creating or subscribing the client failed.
    #[error("starting the Kafka consumer failed")]
    Start(#[source] KafkaError),
}

/// Partitions revoked since the poll loop last looked.
type Revoked = Arc<Mutex<Vec<i32>>>;

struct Context {
    group: String,
    revoked: Revoked,
}

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                // librdkafka reports -1 for the internal UA partition and for
                // partitions this member does not consume.
                if *partition >= 0 && p.consumer_lag >= 0 {
                    metrics::consumer_lag(topic, *partition, &self.group, p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            // Nothing is in flight (see module docs): commit what was stored
            // so the next owner starts right after it.
            if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync)
                && !matches!(
                    error,
                    KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)
                )
            {
                tracing::warn!(%error, "committing offsets on revoke failed");
            }
            if let Ok(mut revoked) = self.revoked.lock() {
                revoked.extend(partitions.elements().iter().map(|e| e.partition()));
            }
            tracing::info!(count = partitions.count(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            // A partition paused by an earlier owner of this client must not
            // stay paused after it comes back.
            let _ = consumer.resume(partitions);
            tracing::info!(count = partitions.count(), "partitions assigned");
        }
    }
}

/// A running consumer: subscribe, handle, dead-letter, commit.
pub struct ConsumerRuntime<H> {
    settings: ConsumerSettings,
    handler: H,
    dlq: Producer,
}

impl<H> std::fmt::Debug for ConsumerRuntime<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerRuntime")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

enum Processed {
    Store,
    Defer(DateTime<Utc>),
    Interrupted,
}

impl<H: Handler> ConsumerRuntime<H> {
    /// A runtime for `handler`; `dlq` publishes dead letters.
    pub fn new(settings: ConsumerSettings, handler: H, dlq: Producer) -> Self {
        Self {
            settings,
            handler,
            dlq,
        }
    }

    fn client(&self, revoked: Revoked) -> Result<StreamConsumer<Context>, ConsumerError> {
        let mut config = ClientConfig::new();
        for (property, value) in &self.settings.security {
            config.set(*property, value);
        }
        config
            .set("bootstrap.servers", &self.settings.brokers)
            .set("group.id", &self.settings.group_id)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("statistics.interval.ms", "5000")
            .set(
                "fetch.wait.max.ms",
                self.settings.fetch_wait_max.as_millis().to_string(),
            )
            .create_with_context(Context {
                group: self.settings.group_id.clone(),
                revoked,
            })
            .map_err(ConsumerError::Start)
    }

    /// Consumes until `shutdown` is cancelled, then commits and leaves the
    /// group.
    ///
    /// # Errors
    /// [`ConsumerError::Start`] when the client cannot be created or
    /// subscribed. Errors while running are logged, counted and retried.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ConsumerError> {
        let revoked = Revoked::default();
        let consumer = ClosingConsumer(Some(self.client(revoked.clone())?));
        consumer
            .subscribe(&[&self.settings.topic])
            .map_err(ConsumerError::Start)?;
        tracing::info!(topic = %self.settings.topic, group = %self.settings.group_id, "consumer started");
        let mut paused: HashMap<i32, DateTime<Utc>> = HashMap::new();
        loop {
            if let Ok(mut revoked) = revoked.lock() {
                for partition in revoked.drain(..) {
                    paused.remove(&partition);
                }
            }
            let next_due = paused.values().min().copied();
            let wake = async {
                match next_due {
                    Some(due) => tokio::time::sleep(until(due)).await,
                    None => std::future::pending().await,
                }
            };
            let message = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = wake => {
                    self.resume_due(&consumer, &mut paused);
                    continue;
                }
                message = consumer.recv() => message,
            };
            let record = match message {
                Ok(message) => detach(&message),
                Err(error) => {
                    tracing::warn!(%error, topic = %self.settings.topic, "consume error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            if paused.contains_key(&record.partition) {
                // Prefetched before the pause; the seek hands it back later.
                continue;
            }
            match self.process(record.clone(), &shutdown).await {
                Processed::Store => {
                    if let Err(error) =
                        consumer.store_offset(&record.topic, record.partition, record.offset + 1)
                    {
                        // The partition was revoked meanwhile: its new owner
                        // re-delivers the record, which is safe.
                        tracing::warn!(%error, partition = record.partition, "storing offset failed");
                    }
                }
                Processed::Defer(due) => {
                    let mut list = TopicPartitionList::new();
                    list.add_partition(&record.topic, record.partition);
                    let paused_ok = consumer.pause(&list).is_ok();
                    let seek_ok = consumer
                        .seek(
                            &record.topic,
                            record.partition,
                            Offset::Offset(record.offset),
                            Duration::from_secs(5),
                        )
                        .is_ok();
                    if paused_ok && seek_ok {
                        paused.insert(record.partition, due);
                    } else {
                        // Could not rewind: never skip the record, so wait
                        // here and then treat it as due.
                        let _ = consumer.resume(&list);
                        tokio::time::sleep(until(due).min(Duration::from_secs(1))).await;
                    }
                }
                Processed::Interrupted => break,
            }
        }
        if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync)
            && !matches!(
                error,
                KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)
            )
        {
            tracing::warn!(%error, "final commit failed");
        }
        consumer.close(CLOSE_BOUND);
        tracing::info!(topic = %self.settings.topic, "consumer stopped");
        Ok(())
    }

    fn resume_due(
        &self,
        consumer: &StreamConsumer<Context>,
        paused: &mut HashMap<i32, DateTime<Utc>>,
    ) {
        let now = Utc::now();
        let due: Vec<i32> = paused
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(p, _)| *p)
            .collect();
        if due.is_empty() {
            return;
        }
        let mut list = TopicPartitionList::new();
        for partition in &due {
            list.add_partition(&self.settings.topic, *partition);
            paused.remove(partition);
        }
        if let Err(error) = consumer.resume(&list) {
            tracing::warn!(%error, "resuming partitions failed");
        }
    }

    async fn process(&self, mut record: Record, shutdown: &CancellationToken) -> Processed {
        let topic = self.settings.topic.as_str();
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.settings.min_backoff)
            .with_max_delay(self.settings.max_backoff)
            .with_jitter()
            .without_max_times()
            .build();
        let max_attempts = self.settings.max_attempts.max(1);
        for attempt in 1..=max_attempts {
            record.attempt = attempt;
            let started = Instant::now();
            // Continue the producer's trace (W3C `traceparent` header).
            let span = tracing::info_span!(
                "consume",
                topic,
                partition = record.partition,
                offset = record.offset,
                attempt
            );
            telemetry::propagation::set_parent(&span, &record.headers);
            let result = self.handler.handle(&record).instrument(span).await;
            metrics::handler_duration(topic, started.elapsed());
            let error = match result {
                Ok(Outcome::Done) => {
                    metrics::consumed(topic, "handled");
                    return Processed::Store;
                }
                Ok(Outcome::NotYet(due)) => {
                    metrics::consumed(topic, "deferred");
                    return Processed::Defer(due);
                }
                Err(HandlerError::Permanent(error)) => {
                    metrics::consumed(topic, "failed");
                    tracing::warn!(topic, partition = record.partition, offset = record.offset, %error, "permanent failure");
                    return self
                        .dead_letter(&record, &error.to_string(), shutdown)
                        .await;
                }
                Err(HandlerError::Transient(error)) => error,
            };
            metrics::consumed(topic, "failed");
            tracing::warn!(topic, partition = record.partition, offset = record.offset, attempt, %error, "handler failed");
            if attempt == max_attempts {
                return self
                    .dead_letter(&record, &error.to_string(), shutdown)
                    .await;
            }
            let delay = backoff.next().unwrap_or(self.settings.max_backoff);
            tokio::select! {
                () = shutdown.cancelled() => return Processed::Interrupted,
                () = tokio::time::sleep(delay) => {}
            }
        }
        Processed::Interrupted
    }

    /// Writes the record to the DLQ, retrying until the broker has it: a
    /// dead letter that is not written would be a lost record.
    async fn dead_letter(
        &self,
        record: &Record,
        error: &str,
        shutdown: &CancellationToken,
    ) -> Processed {
        let dlq_topic = topics::dlq(&record.topic);
        let mut headers = record.headers.clone();
        headers.insert("dlq.source.topic".into(), record.topic.clone());
        headers.insert("dlq.source.partition".into(), record.partition.to_string());
        headers.insert("dlq.source.offset".into(), record.offset.to_string());
        headers.insert("dlq.error".into(), error.chars().take(1000).collect());
        headers.insert("dlq.attempts".into(), record.attempt.to_string());
        let key = record
            .key
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.settings.min_backoff)
            .with_max_delay(self.settings.max_backoff)
            .without_max_times()
            .build();
        loop {
            match self
                .dlq
                .send(&dlq_topic, &key, &record.payload, &headers)
                .await
            {
                Ok(_) => {
                    metrics::consumed(&record.topic, "dead_lettered");
                    tracing::error!(topic = %record.topic, partition = record.partition, offset = record.offset, error, "record dead-lettered");
                    return Processed::Store;
                }
                Err(send_error) => {
                    tracing::error!(error = %send_error, "writing to the DLQ failed; retrying");
                    let delay = backoff.next().unwrap_or(self.settings.max_backoff);
                    tokio::select! {
                        () = shutdown.cancelled() => return Processed::Interrupted,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}

/// Owns the client so that dropping it never blocks the caller: when the
/// runtime's task is cancelled (a test runtime ending, a panic), the close
/// happens on a detached thread.
struct ClosingConsumer(Option<StreamConsumer<Context>>);

impl std::ops::Deref for ClosingConsumer {
    type Target = StreamConsumer<Context>;

    fn deref(&self) -> &Self::Target {
        // Only `close` and `drop` take the client out, and both consume self.
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("the consumer is present until closed"))
    }
}

impl ClosingConsumer {
    fn close(mut self, bound: Duration) {
        if let Some(consumer) = self.0.take() {
            close_bounded(consumer, bound);
        }
    }
}

impl Drop for ClosingConsumer {
    fn drop(&mut self) {
        if let Some(consumer) = self.0.take() {
            close_bounded(consumer, Duration::ZERO);
        }
    }
}

/// How long shutdown waits for a consumer to leave its group.
pub const CLOSE_BOUND: Duration = Duration::from_secs(5);

/// Closes `consumer` (leave group, free the client) on a detached thread and
/// waits at most `bound` for it.
///
/// Against Tansu 0.6, librdkafka's consumer close never completes: the
/// group handler waits forever on the coordinator, and rdkafka's `Drop` polls
/// until it does. Offsets are committed synchronously before this call, so
/// giving up on the close loses nothing; the member then leaves the group by
/// session timeout. With Apache Kafka or MSK the close finishes at once.
pub fn close_bounded<C: Send + Sync + 'static>(consumer: C, bound: Duration) {
    let (done, finished) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("kafka-close".into())
        .spawn(move || {
            drop(consumer);
            let _ = done.send(());
        });
    if spawned.is_ok() && !bound.is_zero() && finished.recv_timeout(bound).is_err() {
        tracing::warn!(
            bound_ms = bound.as_millis() as u64,
            "consumer close did not finish; continuing shutdown"
        );
    }
}

fn until(due: DateTime<Utc>) -> Duration {
    (due - Utc::now()).to_std().unwrap_or(Duration::ZERO)
}

fn detach<M: Message>(message: &M) -> Record {
    let mut headers = HashMap::new();
    if let Some(borrowed) = message.headers() {
        for header in borrowed.iter() {
            if let Some(value) = header.value.and_then(|v| std::str::from_utf8(v).ok()) {
                headers.insert(header.key.to_owned(), value.to_owned());
            }
        }
    }
    Record {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        headers,
        attempt: 0,
    }
}
