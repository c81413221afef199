//! An idempotent Kafka producer.
//!
//! `enable.idempotence=true` implies `acks=all` and retries without
//! duplicates or reordering within a partition. [`Producer::send`] waits for
//! the broker's acknowledgement and returns an error otherwise, so a caller
//! (the outbox relay) marks an event published only after Kafka has it. A
//! producer that cannot reach the broker fails each send after
//! `delivery_timeout_ms` instead of dropping the record silently (failure B-4
//! of the seed incident manual).

use std::{collections::HashMap, time::Duration};

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

/// An idempotent producer; cheap to clone.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
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
    /// Connects lazily to `settings.brokers`. `delivery_timeout` bounds how
    /// long one send may wait for an acknowledgement, retries included.
    ///
    /// # Errors
    /// [`ProduceError::Create`] on invalid configuration.
    pub fn new(settings: &KafkaSettings, delivery_timeout: Duration) -> Result<Self, ProduceError> {
        let inner: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
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
            )
            .create()
            .map_err(ProduceError::Create)?;
        Ok(Self {
            inner,
            delivery_timeout,
        })
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
        match self.inner.send(record, self.delivery_timeout).await {
            Ok(delivery) => {
                crate::metrics::published(topic, true);
                Ok(Delivered {
                    partition: delivery.partition,
                    offset: delivery.offset,
                })
            }
            Err((source, _)) => {
                crate::metrics::published(topic, false);
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
        if let Err(error) = self.inner.flush(timeout) {
            tracing::warn!(%error, "flushing the producer did not finish");
        }
    }
}
