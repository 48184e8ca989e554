//! Creating and deleting topics (Tansu, like many production clusters, does not create
//! topics on first use).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use arus_schemas::topics::TopicSpec;

use super::{KafkaConfig, KafkaError};

fn admin(config: &KafkaConfig) -> Result<AdminClient<DefaultClientContext>, KafkaError> {
    config.validate().map_err(|e| KafkaError::Config(e.to_string()))?;
    config.client_config().create().map_err(|e| KafkaError::Config(e.to_string()))
}

fn options(config: &KafkaConfig) -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_millis(u64::from(config.request_timeout_ms))))
}

/// Creates topics `(name, partitions)` that do not exist yet; existing ones are left alone.
pub fn create_topics(config: &KafkaConfig, topics: &[(&str, u32)]) -> Result<(), KafkaError> {
    let admin = admin(config)?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions as i32, TopicReplication::Fixed(1)))
        .collect();
    let results = futures_executor::block_on(admin.create_topics(new.iter(), &options(config)))
        .map_err(|e| KafkaError::broker("create topics", e))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(KafkaError::broker("create topics", format!("{topic}: {code}"))),
        }
    }
    Ok(())
}

/// Deletes topics; missing ones are not an error.
pub fn delete_topics(config: &KafkaConfig, topics: &[&str]) -> Result<(), KafkaError> {
    let admin = admin(config)?;
    let results = futures_executor::block_on(admin.delete_topics(topics, &options(config)))
        .map_err(|e| KafkaError::broker("delete topics", e))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((topic, code)) => return Err(KafkaError::broker("delete topics", format!("{topic}: {code}"))),
        }
    }
    Ok(())
}

/// How the topics of a cluster are kept: copies of each partition, and how many of them must
/// have a write before it is acknowledged. The seed's production setting is 3 and 2; a
/// single-broker cluster (the local one) takes 1 and 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durability {
    /// Replicas of each partition.
    pub replication: i32,
    /// `min.insync.replicas`.
    pub min_insync_replicas: i32,
}

impl Durability {
    /// `replication` copies, a write acknowledged by all but one of them (at least one).
    pub fn replicated(replication: i32) -> Self {
        Durability { replication, min_insync_replicas: (replication - 1).max(1) }
    }
}

impl Default for Durability {
    fn default() -> Self {
        Durability::replicated(1)
    }
}

/// The settings the table gives a topic, as the broker names them.
pub fn declared_configs(spec: &TopicSpec, durability: Durability) -> Vec<(&'static str, String)> {
    vec![
        ("cleanup.policy", spec.cleanup_policy.to_owned()),
        ("compression.type", spec.compression.to_owned()),
        ("min.insync.replicas", durability.min_insync_replicas.to_string()),
        ("retention.ms", spec.retention_ms.to_string()),
    ]
}

/// What applying the table did to one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// It was missing, and is created as declared.
    Created,
    /// It is there, as declared.
    AsDeclared,
    /// It is there, otherwise than declared: each difference, `what: on the broker, declared`.
    Differs(Vec<String>),
}

/// Applies the topic table to `topics` (each a name on the cluster and its spec): creates those
/// missing with the spec's partitions, `durability` and settings, and compares those there
/// with what the table declares — partition count, replication and each setting — reporting
/// every difference rather than changing a topic that holds data (partitions decide where keys
/// land; a retention cut short loses records).
pub fn apply_topics(
    config: &KafkaConfig,
    topics: &[(String, TopicSpec)],
    durability: Durability,
) -> Result<Vec<(String, Applied)>, KafkaError> {
    apply(config, topics, Some(durability))
}

/// Compares the topics of `topics` that are there with what the table declares — partitions
/// and settings, not the durability (replication and `min.insync.replicas` are the cluster's
/// choice: `arus topics create --replication`) — creating none: each that differs, with how.
/// A job's startup check.
pub fn check_topics(
    config: &KafkaConfig,
    topics: &[(String, TopicSpec)],
) -> Result<Vec<(String, Vec<String>)>, KafkaError> {
    Ok(apply(config, topics, None)?
        .into_iter()
        .filter_map(|(name, applied)| match applied {
            Applied::Differs(differences) => Some((name, differences)),
            _ => None,
        })
        .collect())
}

/// [`apply_topics`]; without a durability, only compares (what is missing stays missing, and
/// replication and `min.insync.replicas` are not compared).
fn apply(
    config: &KafkaConfig,
    topics: &[(String, TopicSpec)],
    durability: Option<Durability>,
) -> Result<Vec<(String, Applied)>, KafkaError> {
    use rdkafka::admin::ResourceSpecifier;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let admin = admin(config)?;
    let timeout = Duration::from_millis(u64::from(config.request_timeout_ms));
    let metadata_client: BaseConsumer =
        config.client_config().create().map_err(|e| KafkaError::Config(e.to_string()))?;
    let metadata = metadata_client.fetch_metadata(None, timeout).map_err(|e| KafkaError::broker("metadata", e))?;
    // Partitions and replicas of each topic there.
    let present: std::collections::HashMap<&str, (u32, i32)> = metadata
        .topics()
        .iter()
        .filter(|t| !t.partitions().is_empty())
        .map(|t| {
            (
                t.name(),
                (
                    t.partitions().len() as u32,
                    t.partitions().iter().map(|p| p.replicas().len() as i32).min().unwrap_or(0),
                ),
            )
        })
        .collect();
    let configs: Vec<Vec<(&'static str, String)>> = topics
        .iter()
        .map(|(_, spec)| {
            let mut configs = declared_configs(spec, durability.unwrap_or_default());
            if durability.is_none() {
                configs.retain(|(key, _)| *key != "min.insync.replicas");
            }
            configs
        })
        .collect();
    let missing: Vec<usize> = (0..topics.len()).filter(|i| !present.contains_key(topics[*i].0.as_str())).collect();
    let mut outcome: Vec<Option<Applied>> = vec![None; topics.len()];
    if let Some(durability) = durability
        && !missing.is_empty()
    {
        let new: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|i| {
                let (name, spec) = &topics[*i];
                let mut topic =
                    NewTopic::new(name, spec.partitions as i32, TopicReplication::Fixed(durability.replication));
                for (key, value) in &configs[*i] {
                    topic = topic.set(key, value);
                }
                topic
            })
            .collect();
        let results = futures_executor::block_on(admin.create_topics(new.iter(), &options(config)))
            .map_err(|e| KafkaError::broker("create topics", e))?;
        for (i, result) in missing.iter().zip(results) {
            match result {
                Ok(_) => outcome[*i] = Some(Applied::Created),
                // Made meanwhile by someone else: compared below.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(KafkaError::broker("create topics", format!("{topic}: {code}"))),
            }
        }
    }
    // (Only compared: what is missing is left out.)
    let compare: Vec<usize> = (0..topics.len())
        .filter(|i| outcome[*i].is_none() && (durability.is_some() || present.contains_key(topics[*i].0.as_str())))
        .collect();
    if !compare.is_empty() {
        let resources: Vec<ResourceSpecifier<'_>> =
            compare.iter().map(|i| ResourceSpecifier::Topic(topics[*i].0.as_str())).collect();
        let described = futures_executor::block_on(admin.describe_configs(resources.iter(), &options(config)))
            .map_err(|e| KafkaError::broker("describe topic configs", e))?;
        for (i, result) in compare.iter().zip(described) {
            let (name, spec) = &topics[*i];
            let mut differences = Vec::new();
            let declared_replicas = durability.map_or(0, |d| d.replication);
            let (partitions, replicas) =
                present.get(name.as_str()).copied().unwrap_or((spec.partitions, declared_replicas));
            if partitions != spec.partitions {
                differences.push(format!("partitions: {partitions}, declared {}", spec.partitions));
            }
            if let Some(durability) = durability
                && replicas != durability.replication
            {
                differences.push(format!("replication: {replicas}, declared {}", durability.replication));
            }
            match result {
                Ok(resource) => {
                    for (key, declared) in &configs[*i] {
                        let actual = resource.get(key).and_then(|entry| entry.value.as_deref());
                        if actual != Some(declared.as_str()) {
                            differences.push(format!("{key}: {}, declared {declared}", actual.unwrap_or("(not set)")));
                        }
                    }
                }
                Err(code) => differences.push(format!("settings could not be read: {code}")),
            }
            outcome[*i] =
                Some(if differences.is_empty() { Applied::AsDeclared } else { Applied::Differs(differences) });
        }
    }
    Ok(topics
        .iter()
        .zip(outcome)
        .map(|((name, _), applied)| (name.clone(), applied.unwrap_or(Applied::AsDeclared)))
        .collect())
}
