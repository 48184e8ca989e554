//! An idempotent, keyed producer.
//!
//! Delivery guarantee: at-least-once with the broker's idempotent producer (no duplicates
//! from librdkafka's own retries). Records carry stable event ids, so a consumer can drop the
//! duplicates a restarted job may write.

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

use super::{KafkaConfig, KafkaError};

/// Counts deliveries and keeps the first failure.
#[derive(Default)]
struct Deliveries {
    state: Mutex<SinkReport>,
    /// Per topic, per partition, the offset after the last record delivered (looked up by the
    /// topic's name: no key is allocated per delivery).
    positions: Mutex<std::collections::HashMap<String, std::collections::BTreeMap<u32, u64>>>,
}

/// What a sink delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkReport {
    /// Records acknowledged by the broker.
    pub delivered: u64,
    /// Records the broker refused.
    pub failed: u64,
    /// The first refusal.
    pub first_error: Option<String>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(message) => {
                state.delivered += 1;
                use rdkafka::Message;
                // A record acknowledged without its offset (-1: a retry the broker found it had
                // written already, across its restart) moves no position.
                let Ok(offset) = u64::try_from(message.offset()) else { return };
                let next = offset + 1;
                let mut positions = self.positions.lock().unwrap_or_else(|e| e.into_inner());
                let topic = match positions.get_mut(message.topic()) {
                    Some(topic) => topic,
                    None => positions.entry(message.topic().to_owned()).or_default(),
                };
                let entry = topic.entry(message.partition() as u32).or_default();
                *entry = (*entry).max(next);
            }
            Err((error, _)) => {
                state.failed += 1;
                state.first_error.get_or_insert_with(|| error.to_string());
            }
        }
    }
}

/// An idempotent producer (`acks=all`, `partitioner=murmur2_random`), transactional with an id.
fn producer(
    config: &KafkaConfig,
    compression: &str,
    transactional_id: Option<&str>,
) -> Result<BaseProducer<Deliveries>, KafkaError> {
    config.validate().map_err(|e| KafkaError::Config(e.to_string()))?;
    let mut client = config.client_config();
    client
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("compression.type", compression)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000");
    if let Some(id) = transactional_id {
        client.set("transactional.id", id);
    }
    client.create_with_context(Deliveries::default()).map_err(|e| KafkaError::Config(e.to_string()))
}

/// A producer of keyed records, optionally transactional.
pub struct KafkaSink {
    producer: BaseProducer<Deliveries>,
    /// Whether it writes in transactions (one is always open: the next begins at each commit).
    transactional: bool,
}

impl KafkaSink {
    /// Connects an idempotent producer (`acks=all`, `enable.idempotence=true`,
    /// `partitioner=murmur2_random`) compressing with `compression` (`lz4`, `zstd`, `none`…).
    pub fn new(config: &KafkaConfig, compression: &str) -> Result<Self, KafkaError> {
        let producer = producer(config, compression, None)?;
        Ok(KafkaSink { producer, transactional: false })
    }

    /// A transactional producer (`transactional.id` = `id`): what it sends becomes visible to
    /// `read_committed` consumers only when [`commit`](Self::commit) succeeds, and a newer
    /// producer with the same id fences this one off (a zombie after a restart cannot write).
    /// Needs a broker with transactions (Apache Kafka; not Tansu 0.6).
    pub fn transactional(config: &KafkaConfig, compression: &str, id: &str) -> Result<Self, KafkaError> {
        if id.is_empty() {
            return Err(KafkaError::Config("a transactional id must not be empty".to_owned()));
        }
        let producer = producer(config, compression, Some(id))?;
        let timeout = Duration::from_millis(u64::from(config.request_timeout_ms));
        producer.init_transactions(timeout).map_err(|e| KafkaError::broker("init transactions", e))?;
        producer.begin_transaction().map_err(|e| KafkaError::broker("begin transaction", e))?;
        Ok(KafkaSink { producer, transactional: true })
    }

    /// Commits the open transaction (after delivering everything in it) and opens the next.
    /// A plain sink just flushes.
    pub fn commit(&self, timeout: Duration) -> Result<SinkReport, KafkaError> {
        let report = self.flush(timeout)?;
        if self.transactional {
            self.producer.commit_transaction(timeout).map_err(|e| KafkaError::broker("commit transaction", e))?;
            self.producer.begin_transaction().map_err(|e| KafkaError::broker("begin transaction", e))?;
        }
        Ok(report)
    }

    /// Aborts the open transaction: what was sent in it is never visible to `read_committed`
    /// consumers. Not available on a plain sink.
    pub fn abort(&self, timeout: Duration) -> Result<(), KafkaError> {
        if !self.transactional {
            return Err(KafkaError::Config("abort needs a transactional sink".to_owned()));
        }
        // Delivery reports are served by polling: settle the queue first.
        self.producer.flush(timeout).map_err(|e| KafkaError::broker("flush", e))?;
        self.producer.abort_transaction(timeout).map_err(|e| KafkaError::broker("abort transaction", e))?;
        self.producer.begin_transaction().map_err(|e| KafkaError::broker("begin transaction", e))?;
        Ok(())
    }

    /// Whether the sink writes in transactions.
    pub fn is_transactional(&self) -> bool {
        self.transactional
    }

    /// Queues a record; waits (serving delivery reports) while librdkafka's queue is full.
    pub fn send(&self, topic: &str, key: &[u8], value: &[u8], timestamp_ms: i64) -> Result<(), KafkaError> {
        let mut record = BaseRecord::to(topic).key(key).payload(value).timestamp(timestamp_ms);
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    self.producer.poll(Duration::ZERO);
                    return Ok(());
                }
                Err((error, returned)) if error.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    self.producer.poll(Duration::from_millis(50));
                    record = returned;
                }
                Err((error, _)) => return Err(KafkaError::broker("produce", error)),
            }
        }
    }

    /// Per partition of `topic`, the offset after the last record this sink has had delivered
    /// there (call after [`flush`](Self::flush) for a position covering everything sent).
    pub fn delivered_positions(&self, topic: &str) -> Vec<(u32, u64)> {
        let positions = self.producer.context().positions.lock().unwrap_or_else(|e| e.into_inner());
        positions.get(topic).map_or_else(Vec::new, |partitions| partitions.iter().map(|(p, o)| (*p, *o)).collect())
    }

    /// Waits until every queued record is delivered (or `timeout` passes) and reports.
    pub fn flush(&self, timeout: Duration) -> Result<SinkReport, KafkaError> {
        self.producer.flush(timeout).map_err(|e| KafkaError::broker("flush", e))?;
        let report = self.producer.context().state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match &report.first_error {
            Some(error) => {
                Err(KafkaError::broker("deliver", format!("{} records refused, first: {error}", report.failed)))
            }
            None => Ok(report),
        }
    }
}
