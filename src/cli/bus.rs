//! Where the topics a command reads or writes are: a Kafka cluster (`--kafka BROKERS`) or an
//! embedded log persisted in a folder (`--log DIR`), the names under a prefix; reading a
//! topic's records and writing records to topics, the same way on both.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arus_connectors::embedded::EmbeddedLog;
use arus_connectors::kafka::KafkaConfig;
use arus_connectors::transport::{LogTopics, TopicSink};

/// `--kafka` or `--log`, and `--topic-prefix`.
#[derive(Debug, Clone, clap::Args)]
pub struct BusArgs {
    /// Kafka brokers (`host:port,…`).
    #[arg(long, value_name = "BROKERS", conflicts_with = "log")]
    pub kafka: Option<String>,
    /// Or an embedded log persisted in this folder (as `arus demo --log-dir` and the jobs'
    /// `source.dir` keep it).
    #[arg(long, value_name = "DIR")]
    pub log: Option<PathBuf>,
    /// Put before every topic name (as the jobs' `source.topic_prefix`).
    #[arg(long, default_value = "")]
    pub topic_prefix: String,
}

/// A record read from a topic.
pub struct Read {
    pub partition: u32,
    pub offset: u64,
    pub value: Vec<u8>,
}

/// Where to begin reading a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// Its first records.
    Beginning,
    /// After what it holds now.
    End,
    /// After the given offsets (per partition; a partition not named from its beginning).
    Offsets,
}

/// The bus opened.
pub enum Bus {
    Kafka { config: KafkaConfig, brokers: String },
    Log { log: Arc<EmbeddedLog>, dir: PathBuf },
}

impl BusArgs {
    /// Opens the cluster's client settings, or the log (created when `create` says so).
    pub fn open(&self, create: bool) -> anyhow::Result<Bus> {
        match (&self.kafka, &self.log) {
            (Some(brokers), _) => {
                let config = KafkaConfig::new(brokers.clone());
                config.validate().with_context(|| format!("--kafka {brokers}"))?;
                Ok(Bus::Kafka { config, brokers: brokers.clone() })
            }
            (None, Some(dir)) => {
                if !create && !dir.join("topics").is_dir() {
                    return Err(super::refused(format!(
                        "--log {}: no embedded log there (`arus demo --log-dir {0}` or `arus topics create --log {0}` \
                     makes one)",
                        dir.display()
                    )));
                }
                let log = EmbeddedLog::open(dir).with_context(|| format!("--log {}", dir.display()))?;
                Ok(Bus::Log { log: Arc::new(log), dir: dir.clone() })
            }
            (None, None) => Err(super::refused("say where the topics are: --kafka BROKERS or --log DIR")),
        }
    }

    /// `topic` under the prefix.
    pub fn name(&self, topic: &str) -> String {
        format!("{}{topic}", self.topic_prefix)
    }
}

impl Bus {
    /// Writes records to topics (each topic with its codec, on Kafka).
    pub fn sink(&self) -> anyhow::Result<Box<dyn TopicSink>> {
        Ok(match self {
            Bus::Kafka { config, .. } => Box::new(arus_connectors::kafka::KafkaTopics::new(config, "lz4")?),
            Bus::Log { log, .. } => Box::new(LogTopics(log.clone())),
        })
    }

    /// Whether `topic` exists.
    pub fn has_topic(&self, topic: &str) -> bool {
        match self {
            Bus::Kafka { config, .. } => arus_connectors::kafka::partition_count(config, topic).is_ok(),
            Bus::Log { log, .. } => log.has_topic(topic),
        }
    }

    /// Partitions of `topic`, failing with a clear message when it is missing.
    pub fn partitions(&self, topic: &str) -> anyhow::Result<u32> {
        match self {
            Bus::Kafka { config, brokers } => arus_connectors::kafka::partition_count(config, topic)
                .with_context(|| format!("topic {topic} on {brokers} (`arus topics create` makes the table's)")),
            Bus::Log { log, dir } => {
                if !log.has_topic(topic) {
                    return Err(super::refused(format!(
                        "{}: no topic {topic} (`arus topics create --log {0}` makes the table's)",
                        dir.display()
                    )));
                }
                Ok(log.partitions(topic)?)
            }
        }
    }

    /// Hands `each` the records of `topic` from `from` (with `offsets` for [`From::Offsets`]),
    /// partition by partition as the topic holds them now, then, following, those that come
    /// (until `each` says to stop). Whether `each` asked to stop.
    pub fn read(
        &self,
        topic: &str,
        from: From,
        offsets: &[(u32, u64)],
        follow: bool,
        each: &mut dyn FnMut(Read) -> anyhow::Result<bool>,
    ) -> anyhow::Result<bool> {
        let partitions = self.partitions(topic)?;
        let start = |p: u32| match from {
            From::Offsets => offsets.iter().find(|(q, _)| *q == p).map_or(0, |(_, o)| *o),
            _ => 0,
        };
        match self {
            Bus::Kafka { config, .. } => {
                use arus_connectors::kafka::BoundedPartitionReader;
                let positions: Vec<(u32, Option<u64>)> =
                    (0..partitions).map(|p| (p, Some(start(p)).filter(|o| *o > 0))).collect();
                let mut reader = BoundedPartitionReader::open(config, "arus-cli", topic, &positions, 500)?;
                // What the topic holds now (passed over when reading from its end).
                while let Some(record) = reader.next_record()? {
                    if from != From::End && !each(raw(record))? {
                        return Ok(true);
                    }
                }
                if follow {
                    let mut reader = reader.following();
                    loop {
                        if let Some(record) = reader.next_available(Duration::from_millis(500))?
                            && !each(raw(record))?
                        {
                            return Ok(true);
                        }
                    }
                }
                Ok(false)
            }
            Bus::Log { log, .. } => {
                if follow {
                    return Err(super::refused("--follow needs --kafka (an embedded log is read as it is now)"));
                }
                if from == From::End {
                    return Ok(false);
                }
                for (partition, end) in log.end_offsets(topic)?.into_iter().enumerate() {
                    let partition = partition as u32;
                    let first = start(partition);
                    for record in log.fetch(topic, partition, first, end.saturating_sub(first) as usize)? {
                        let read = Read { partition, offset: record.offset, value: record.value };
                        if !each(read)? {
                            return Ok(true);
                        }
                    }
                }
                Ok(false)
            }
        }
    }

    /// The positions `group` has committed on `topic`.
    pub fn committed(&self, group: &str, topic: &str) -> anyhow::Result<Vec<(u32, u64)>> {
        let partitions: Vec<u32> = (0..self.partitions(topic)?).collect();
        Ok(match self {
            Bus::Kafka { config, .. } => {
                arus_connectors::kafka::committed_positions(config, group, topic, &partitions)?
                    .into_iter()
                    .filter_map(|(p, o)| o.map(|o| (p, o)))
                    .collect()
            }
            Bus::Log { log, .. } => {
                partitions.iter().filter_map(|p| log.committed(group, topic, *p).map(|o| (*p, o))).collect()
            }
        })
    }

    /// Commits `positions` of `topic` for `group`.
    pub fn commit(&self, group: &str, topic: &str, positions: &[(u32, u64)]) -> anyhow::Result<()> {
        match self {
            Bus::Kafka { config, .. } => arus_connectors::kafka::commit_positions(config, group, topic, positions)?,
            Bus::Log { log, .. } => {
                for (partition, offset) in positions {
                    log.commit(group, topic, *partition, *offset)?;
                }
                log.flush()?;
            }
        }
        Ok(())
    }
}

fn raw(record: arus_connectors::kafka::RawRecord) -> Read {
    Read { partition: record.partition, offset: record.offset as u64, value: record.value }
}

/// What is wrong with a JSON line, without repeating what it holds (a line may carry a NIK):
/// where, and which field where serde names one.
pub fn json_error(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let named = ["missing field", "unknown field", "unknown variant", "duplicate field"]
        .iter()
        .find(|prefix| message.starts_with(*prefix))
        .and_then(|prefix| {
            // "missing field `x` at line …": the field's name, never a value.
            let name = message.split('`').nth(1)?;
            Some(format!("{prefix} `{name}`"))
        });
    let what = match (named, error.classify()) {
        (Some(named), _) => named,
        (None, serde_json::error::Category::Syntax) => "not JSON".to_owned(),
        (None, serde_json::error::Category::Eof) => "ends too soon".to_owned(),
        (None, serde_json::error::Category::Io) => "could not be read".to_owned(),
        (None, serde_json::error::Category::Data) => "a value of the wrong type or out of range".to_owned(),
    };
    format!("column {}: {what}", error.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_error_names_the_field_but_never_the_value() {
        let wrong = serde_json::from_str::<arus_schemas::Event>(r#"{"type":"MemberCreated","nik":3201}"#).unwrap_err();
        let described = json_error(&wrong);
        assert!(!described.contains("3201"), "{described}");
        let missing = serde_json::from_str::<arus_schemas::Event>(r#"{"type":"PlanCreated"}"#).unwrap_err();
        assert!(json_error(&missing).contains("missing field `"), "{}", json_error(&missing));
        let bad = serde_json::from_str::<arus_schemas::Event>("{not json").unwrap_err();
        assert_eq!(json_error(&bad), "column 2: not JSON");
    }
}
