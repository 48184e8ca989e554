//! `arus topics`.

use arus_schemas::EventKind;
use arus_schemas::topics::{DLQ_SPEC, TOPICS};

/// Prints every topic with its settings and the events it carries.
pub fn run() -> anyhow::Result<()> {
    out!(
        "{:<24} {:>10} {:>10} {:<6} {:<8} {:<12} events",
        "topic",
        "partitions",
        "retention",
        "codec",
        "cleanup",
        "key"
    );
    for spec in TOPICS.iter().chain(std::iter::once(&DLQ_SPEC)) {
        let retention = match spec.retention_ms {
            -1 => "forever".to_owned(),
            ms => format!("{}d", ms / 86_400_000),
        };
        let kinds: Vec<&str> = EventKind::ALL
            .iter()
            .filter(|k| k.topic() == Some(spec.name) || (spec.name == DLQ_SPEC.name && k.topic().is_none()))
            .map(|k| k.name())
            .collect();
        out!(
            "{:<24} {:>10} {:>10} {:<6} {:<8} {:<12} {}",
            spec.name,
            spec.partitions,
            retention,
            spec.compression,
            spec.cleanup_policy,
            spec.key,
            kinds.join(", ")
        );
    }
    Ok(())
}
