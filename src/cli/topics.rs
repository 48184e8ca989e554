//! `arus topics`: the topic table (`list`), applying it to a cluster or a log (`create`),
//! and loading and reading events without writing a client (`produce`, `consume`).

use std::io::BufRead;

use anyhow::Context;
use arus_schemas::topics::{DLQ_SPEC, TOPICS, TopicSpec, dlq_topic};
use arus_schemas::{Event, EventKind, wire};

use super::bus::{BusArgs, From, json_error};

/// `arus topics` subcommands (`list` when none is given).
#[derive(Debug, clap::Subcommand)]
pub enum TopicsCommand {
    /// Print every topic with its settings and the events it carries.
    List,
    /// Create the table's topics where missing, with their partitions, replication, retention,
    /// compaction and codec; report every existing topic whose settings differ (exit 2).
    Create(CreateArgs),
    /// Write the events of a JSON-lines file (the JSON form: `{"type":"ClaimSubmitted",…}`)
    /// to a topic in the wire format, keyed and partitioned as the contract says. The file is
    /// checked whole first: if a line is not an event of that topic, nothing is written and
    /// every such line is named.
    Produce(ProduceArgs),
    /// Print a topic's events in the JSON form, one per line.
    Consume(ConsumeArgs),
}

/// `arus topics create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    #[command(flatten)]
    bus: BusArgs,
    /// Replicas of each partition (3 in production; 1 on a single broker). `min.insync.replicas`
    /// is one less (at least 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=16))]
    replication: i32,
}

/// `arus topics produce`.
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// The topic (its name in the table; the prefix is put before it).
    topic: String,
    /// The events, one JSON object per line (`-`: standard input is not read; give a file).
    #[arg(long, value_name = "FILE")]
    file: std::path::PathBuf,
    #[command(flatten)]
    bus: BusArgs,
}

/// `arus topics consume`.
#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    /// The topic (its name in the table, or a dead-letter topic `<topic>.dlq`).
    topic: String,
    /// Read what the topic holds from its first record (the default unless following).
    #[arg(long)]
    from_beginning: bool,
    /// Keep printing events as they come (Kafka), until stopped; from the end unless
    /// `--from-beginning`.
    #[arg(long)]
    follow: bool,
    /// Stop after this many.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    #[command(flatten)]
    bus: BusArgs,
}

/// Runs a subcommand.
pub fn run(command: Option<TopicsCommand>) -> anyhow::Result<()> {
    match command.unwrap_or(TopicsCommand::List) {
        TopicsCommand::List => list(),
        TopicsCommand::Create(args) => create(&args),
        TopicsCommand::Produce(args) => produce(&args),
        TopicsCommand::Consume(args) => consume(&args),
    }
}

/// Prints every topic with its settings and the events it carries.
fn list() -> anyhow::Result<()> {
    out!(
        "{:<24} {:>10} {:>10} {:<6} {:<8} {:<18} events",
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
            "{:<24} {:>10} {:>10} {:<6} {:<8} {:<18} {}",
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

/// The topics the table declares, as named on the bus: each topic, and the dead-letter topic
/// of each topic the jobs read.
fn declared(bus: &BusArgs) -> Vec<(String, TopicSpec)> {
    let mut topics: Vec<(String, TopicSpec)> = TOPICS.iter().map(|t| (bus.name(t.name), *t)).collect();
    for read in READ_BY_JOBS {
        topics.push((bus.name(&dlq_topic(read)), DLQ_SPEC));
    }
    topics
}

/// The topics jobs read (their undecodable records go to `<topic>.dlq`).
const READ_BY_JOBS: &[&str] = {
    use arus_schemas::topics::names::*;
    &[MEMBER_EVENTS, PROVIDER_EVENTS, BENEFIT_EVENTS, AUTH_EVENTS, CLAIMS_EVENTS, PAYMENT_EVENTS, ELIGIBILITY_REQUESTS]
};

fn create(args: &CreateArgs) -> anyhow::Result<()> {
    let bus = args.bus.open(true)?;
    let topics = declared(&args.bus);
    let mut differing = 0;
    match &bus {
        super::bus::Bus::Kafka { config, brokers } => {
            let durability = arus_connectors::kafka::Durability::replicated(args.replication);
            let applied = arus_connectors::kafka::apply_topics(config, &topics, durability)
                .with_context(|| format!("applying the topic table on {brokers}"))?;
            for (name, outcome) in applied {
                use arus_connectors::kafka::Applied;
                match outcome {
                    Applied::Created => out!("{name:<40} created"),
                    Applied::AsDeclared => out!("{name:<40} as declared"),
                    Applied::Differs(differences) => {
                        differing += 1;
                        out!("{name:<40} DIFFERS: {}", differences.join("; "));
                    }
                }
            }
        }
        super::bus::Bus::Log { log, .. } => {
            // The log keeps partitions only (nothing expires or is compacted in it).
            for (name, spec) in &topics {
                if log.has_topic(name) {
                    let partitions = log.partitions(name)?;
                    if partitions == spec.partitions {
                        out!("{name:<40} as declared");
                    } else {
                        differing += 1;
                        out!("{name:<40} DIFFERS: partitions: {partitions}, declared {}", spec.partitions);
                    }
                } else {
                    log.create_topic(name, spec.partitions)?;
                    out!("{name:<40} created");
                }
            }
            log.flush()?;
        }
    }
    if differing > 0 {
        return Err(super::refused(format!(
            "{differing} topics differ from the table: a topic's partitions cannot change once it holds data (keys \
             would move); settings can be changed with the cluster's tools"
        )));
    }
    Ok(())
}

/// A line of a JSON-lines file: its event and the event's wire encoding, or why it is not one.
type Line = Result<(Event, Vec<u8>), String>;

/// Each event of a JSON-lines file with its wire encoding, or why its line is not one of
/// `topic`'s.
fn events_of(
    file: &std::path::Path,
    topic: &str,
    each: &mut dyn FnMut(u64, Line) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let reader =
        std::io::BufReader::new(std::fs::File::open(file).with_context(|| format!("--file {}", file.display()))?);
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("{} line {}", file.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let event = match serde_json::from_str::<Event>(&line) {
            Err(error) => Err(format!("not an event of the contract ({})", json_error(&error))),
            Ok(event) if event.topic() != topic => {
                Err(format!("a {} belongs on {}, not {topic}", event.kind().name(), event.topic()))
            }
            Ok(event) => {
                wire::encode(&event).map(|bytes| (event, bytes)).map_err(|e| format!("cannot be encoded: {e}"))
            }
        };
        each(n as u64 + 1, event)?;
    }
    Ok(())
}

fn produce(args: &ProduceArgs) -> anyhow::Result<()> {
    let topic = args.topic.as_str();
    if arus_schemas::topics::topic_spec(topic).is_none() {
        return Err(super::refused(format!("{topic} is not a topic of the table (`arus topics` lists them)")));
    }
    // Checked whole first: nothing is written from a file with a bad line.
    let (mut good, mut bad) = (0u64, Vec::new());
    events_of(&args.file, topic, &mut |line, event| {
        match event {
            Ok(_) => good += 1,
            Err(why) => bad.push(format!("line {line}: {why}")),
        }
        Ok(())
    })?;
    if !bad.is_empty() {
        for why in bad.iter().take(50) {
            eprintln!("{}: {why}", args.file.display());
        }
        if bad.len() > 50 {
            eprintln!("… and {} more", bad.len() - 50);
        }
        return Err(super::refused(format!(
            "{} of {} lines of {} are not events of {topic}: nothing was written",
            bad.len(),
            good + bad.len() as u64,
            args.file.display()
        )));
    }
    let bus = args.bus.open(true)?;
    let name = args.bus.name(topic);
    let sink = bus.sink()?;
    let partitions = arus_schemas::topics::topic_spec(topic).map_or(1, |t| t.partitions);
    sink.ensure_topic(&name, partitions)?;
    let mut written = 0u64;
    let progress = indicatif::ProgressBar::new(good).with_message(format!("to {name}"));
    progress.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} events ({per_sec})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    events_of(&args.file, topic, &mut |_, event| {
        let (event, bytes) = event.map_err(anyhow::Error::msg)?;
        sink.send(&name, event.key().as_bytes(), &bytes, event.event_time())?;
        written += 1;
        if written.is_multiple_of(1024) {
            progress.set_position(written);
        }
        Ok(())
    })?;
    sink.flush()?;
    progress.finish_and_clear();
    eprintln!("{written} events written to {name}");
    Ok(())
}

fn consume(args: &ConsumeArgs) -> anyhow::Result<()> {
    let bus = args.bus.open(false)?;
    let name = args.bus.name(&args.topic);
    let from = if args.from_beginning || !args.follow { From::Beginning } else { From::End };
    let limit = args.limit.unwrap_or(u64::MAX);
    let (mut shown, mut refused) = (0u64, 0u64);
    if limit > 0 {
        bus.read(&name, from, &[], args.follow, &mut |record| {
            match wire::decode(&record.value) {
                Ok(event) => {
                    out!("{}", serde_json::to_string(&event)?);
                    shown += 1;
                }
                Err(_) => {
                    refused += 1;
                    eprintln!("partition {} offset {}: not an event of the contract", record.partition, record.offset);
                }
            }
            Ok(shown < limit)
        })?;
    }
    std::io::Write::flush(&mut std::io::stdout())?;
    eprintln!("{shown} events{}", if refused > 0 { format!(", {refused} records not events") } else { String::new() });
    Ok(())
}
