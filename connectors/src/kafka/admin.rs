//! Creating and deleting topics (Tansu, like many production clusters, does not create
//! topics on first use).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

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
