//! An idempotent Kafka producer.
//!
//! `enable.idempotence=true` implies `acks=all` and retries without
//! duplicates or reordering within a partition. [`Producer::send`] waits for
//! the broker's acknowledgement and returns an error otherwise, so a caller
//! (the outbox relay) marks an event published only after Kafka has it. A
//! producer that cannot reach the broker fails each send after
//! `delivery_timeout_ms` instead of dropping the record silently.
//!
//! An idempotent client can hit a *fatal* error, after which librdkafka
//! refuses every send (seen with Tansu after a broker freeze: the producer id
//! is fenced once in-flight records time out). [`Producer`] then builds a new
//! client with a new producer id; the failed records were reported as
//! failures, so the caller (the relay) sends them again.
//!
//! The connection (`bootstrap.servers`, and with TLS `security.protocol`
//! and `ssl.ca.location`) comes from the settings'
//! [`KafkaSettings::client_properties`].

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use platform::settings::KafkaSettings;
use rdkafka::{
    ClientConfig,
    error::KafkaError,
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};

/// Why a record was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// The client could not be configured.
    #[error("creating the Kafka producer failed")]
    Create(#[source] KafkaError),
    /// The broker did not acknowledge the record in time, or refused it.
    #[error("delivery to {topic} failed")]
    Delivery {
        /// Target topic.
        topic: String,
        /// The client's error.
        #[source]
        source: KafkaError,
    },
}

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
}

/// An idempotent producer; cheap to clone (clones share the client).
#[derive(Clone)]
pub struct Producer {
    inner: Arc<RwLock<FutureProducer>>,
    config: ClientConfig,
    delivery_timeout: Duration,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("delivery_timeout", &self.delivery_timeout)
            .finish_non_exhaustive()
    }
}

impl Producer {
    /// Connects lazily to the brokers of `settings` (a service's
    /// `[kafka]`, TLS included, or a tool's plain
    /// [`platform::settings::KafkaSettings`]). `delivery_timeout` bounds how
    /// long one send may wait for an acknowledgement, retries included.
    ///
    /// # Errors
    /// [`ProduceError::Create`] on invalid configuration (an unreadable
    /// `ssl.ca.location` among it).
    pub fn new(settings: &KafkaSettings, delivery_timeout: Duration) -> Result<Self, ProduceError> {
        let mut config = ClientConfig::new();
        for (property, value) in settings.client_properties() {
            config.set(property, value);
        }
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set(
                "delivery.timeout.ms",
                delivery_timeout.as_millis().to_string(),
            )
            .set(
                "message.timeout.ms",
                delivery_timeout.as_millis().to_string(),
            );
        let inner: FutureProducer = config.create().map_err(ProduceError::Create)?;
        Ok(Self {
            inner: Arc::new(RwLock::new(inner)),
            config,
            delivery_timeout,
        })
    }

    fn client(&self) -> FutureProducer {
        // A poisoned lock only means a thread panicked while swapping in a
        // new client; the value inside is still a valid client.
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces a client whose producer identity is no longer accepted (a
    /// fatal error, or the broker fencing its producer id or epoch) with a
    /// new one, which starts with a new producer id.
    fn recover(&self, failed: &FutureProducer, error: &KafkaError) {
        use rdkafka::{producer::Producer as _, types::RDKafkaErrorCode as Code};
        let fenced = matches!(
            error.rdkafka_error_code(),
            Some(
                Code::ProducerFenced
                    | Code::InvalidProducerEpoch
                    | Code::UnknownProducerId
                    | Code::OutOfOrderSequenceNumber
                    | Code::InvalidProducerIdMapping
                    | Code::Fatal
            )
        );
        let (code, reason) = match failed.client().fatal_error() {
            Some(fatal) => fatal,
            None if fenced => (
                error.rdkafka_error_code().unwrap_or(Code::Fatal),
                error.to_string(),
            ),
            None => return,
        };
        let mut current = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Another sender may have replaced the failed client already.
        if current.client().native_ptr() != failed.client().native_ptr() {
            return;
        }
        match self.config.create::<FutureProducer>() {
            Ok(fresh) => {
                tracing::warn!(
                    ?code,
                    reason,
                    "the Kafka producer hit a fatal error; created a new one"
                );
                crate::metrics::producer_recreated();
                *current = fresh;
            }
            Err(error) => {
                tracing::error!(%error, "recreating the Kafka producer failed; retrying on the next send");
            }
        }
    }

    /// Sends one record and waits for the broker's acknowledgement.
    ///
    /// # Errors
    /// [`ProduceError::Delivery`] when the record was not acknowledged.
    pub async fn send(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: &HashMap<String, String>,
    ) -> Result<Delivered, ProduceError> {
        let mut owned = OwnedHeaders::new_with_capacity(headers.len());
        for (name, value) in headers {
            owned = owned.insert(Header {
                key: name,
                value: Some(value.as_bytes()),
            });
        }
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(owned);
        let client = self.client();
        match client.send(record, self.delivery_timeout).await {
            Ok(delivery) => {
                crate::metrics::published(topic, true);
                Ok(Delivered {
                    partition: delivery.partition,
                    offset: delivery.offset,
                })
            }
            Err((source, _)) => {
                crate::metrics::published(topic, false);
                self.recover(&client, &source);
                Err(ProduceError::Delivery {
                    topic: topic.to_owned(),
                    source,
                })
            }
        }
    }

    /// Waits up to `timeout` for queued records to be delivered.
    pub fn flush(&self, timeout: Duration) {
        use rdkafka::producer::Producer as _;
        if let Err(error) = self.client().flush(timeout) {
            tracing::warn!(%error, "flushing the producer did not finish");
        }
    }
}
