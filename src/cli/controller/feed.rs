//! What a running job puts out for people to look at: the newest fraud alerts on its
//! `fraud.alerts`, the newest dead letters of the topics it reads. Read from the job's Kafka
//! topics every few seconds while the job is supervised, from where the last read ended, the
//! newest [`KEPT`] of each kept.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use arus_connectors::kafka::{BoundedPartitionReader, KafkaConfig, partition_count};
use arus_jobs::Pipeline;
use arus_jobs::runtime::spec::TopicsSource;
use arus_schemas::{Event, wire};
use serde::Serialize;

/// How many of each are kept.
pub const KEPT: usize = 20;

/// How often the topics are read.
const EVERY: Duration = Duration::from_secs(2);

/// One alert or dead letter, for the page.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Item {
    /// The job.
    pub job: String,
    /// The event's time (ms since the epoch).
    pub at_ms: i64,
    /// In words.
    pub text: String,
}

/// The newest of each, for one job.
#[derive(Debug, Default)]
pub struct Feed {
    items: Mutex<(VecDeque<Item>, VecDeque<Item>)>,
}

impl Feed {
    /// The newest alerts and dead letters, the newest first.
    pub fn newest(&self) -> (Vec<Item>, Vec<Item>) {
        let items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        (items.0.iter().rev().cloned().collect(), items.1.iter().rev().cloned().collect())
    }

    fn push(&self, alert: bool, item: Item) {
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        let list = if alert { &mut items.0 } else { &mut items.1 };
        list.push_back(item);
        while list.len() > KEPT {
            list.pop_front();
        }
    }
}

/// The Kafka topics a job's feed reads, under their full names: whether each holds alerts
/// (else dead letters). None for a job not on Kafka topics.
pub fn topics_of(name: &str, spec: &str, overrides: &[String]) -> Option<(KafkaConfig, Vec<(String, bool)>)> {
    let pipeline = Pipeline::parse(Path::new(name), spec, overrides).ok()?;
    let (source, inputs, alerts): (&TopicsSource, &[&str], bool) = match &pipeline {
        Pipeline::Eligibility(spec) => (&spec.source, &arus_jobs::eligibility::job::TOPICS, false),
        Pipeline::Adjudication(spec) => (&spec.source, &arus_jobs::adjudication::job::TOPICS, false),
        Pipeline::Fraud(spec) => (&spec.source, &arus_jobs::fraud::job::TOPICS, true),
        Pipeline::Analytics(spec) => (&spec.source, &arus_jobs::analytics::TOPICS, false),
        Pipeline::ProviderWindows(_) => return None,
    };
    let TopicsSource::Kafka { brokers, topic_prefix, .. } = source else { return None };
    let mut topics: Vec<(String, bool)> =
        inputs.iter().map(|t| (format!("{topic_prefix}{}", arus_schemas::topics::dlq_topic(t)), false)).collect();
    if alerts {
        topics.push((format!("{topic_prefix}{}", arus_schemas::topics::names::FRAUD_ALERTS), true));
    }
    Some((KafkaConfig::new(brokers.clone()), topics))
}

/// Reads `topics` into `feed` every few seconds until `going` says to stop.
pub fn follow(job: &str, config: &KafkaConfig, topics: &[(String, bool)], feed: &Feed, going: &dyn Fn() -> bool) {
    // Per topic, per partition: the next offset to read.
    let mut next: BTreeMap<&str, Vec<(u32, Option<u64>)>> = BTreeMap::new();
    while going() {
        for (topic, alerts) in topics {
            // A topic not there yet (no dead letter so far) is looked for again next time.
            let Ok(partitions) = partition_count(config, topic) else { continue };
            let positions = next.entry(topic).or_insert_with(|| (0..partitions).map(|p| (p, None)).collect());
            let from = positions.clone();
            let Ok(mut reader) = BoundedPartitionReader::open(config, "arus-controller-feed", topic, &from, 200) else {
                continue;
            };
            while let Ok(Some(record)) = reader.next_record() {
                if let Some(position) = positions.iter_mut().find(|(p, _)| *p == record.partition) {
                    position.1 = Some(record.offset.max(0) as u64 + 1);
                }
                match wire::decode(&record.value) {
                    Ok(Event::FraudAlert(alert)) if *alerts => feed.push(
                        true,
                        Item {
                            job: job.to_owned(),
                            at_ms: alert.event_time.0,
                            text: super::super::alerts::describe(&alert),
                        },
                    ),
                    Ok(Event::DeadLetter(letter)) if !alerts => feed.push(
                        false,
                        Item {
                            job: job.to_owned(),
                            at_ms: letter.event_time.0,
                            text: format!(
                                "{} partition {} offset {}: {} ({} bytes)",
                                letter.source_topic,
                                letter.source_partition,
                                letter.source_offset,
                                letter.error_kind,
                                letter.original_value.len()
                            ),
                        },
                    ),
                    _ => {}
                }
            }
        }
        // Asleep in short steps, so that a job's end stops the reading soon.
        for _ in 0..(EVERY.as_millis() / 100) {
            if !going() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> String {
        std::fs::read_to_string(format!("{}/pipelines/{name}.toml", env!("CARGO_MANIFEST_DIR"))).expect("a spec")
    }

    #[test]
    fn a_fraud_job_feeds_its_alerts_and_every_job_its_inputs_dead_letters() {
        let prefix = ["source.topic_prefix=staging.".to_owned()];
        let (_, topics) = topics_of("fraud", &spec("fraud"), &prefix).expect("on Kafka");
        assert!(topics.contains(&("staging.fraud.alerts".to_owned(), true)), "{topics:?}");
        assert!(topics.contains(&("staging.claims.events.dlq".to_owned(), false)), "{topics:?}");
        let (_, topics) = topics_of("adjudication", &spec("adjudication"), &[]).expect("on Kafka");
        assert!(topics.iter().all(|(t, alerts)| !alerts && t.ends_with(".dlq")), "{topics:?}");
        // Not on Kafka topics: nothing to read.
        let embedded = ["source={kind=\"embedded\", dir=\"log\"}".to_owned()];
        assert!(topics_of("fraud", &spec("fraud"), &embedded).is_none());
        assert!(topics_of("provider-windows", &spec("provider-windows"), &[]).is_none());
    }
}
