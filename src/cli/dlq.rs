//! `arus dlq`: the dead letters the jobs set aside — records of a topic that were not events
//! of the contract, each on `<topic>.dlq` as a `DeadLetter` — shown (`tail`) and, once what
//! made them fail is fixed, re-driven into their topic (`replay`).

use arus_schemas::events::DeadLetter;
use arus_schemas::{Event, wire};

use super::bus::{BusArgs, From};

/// `arus dlq` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// Print the dead letters of topics (all the table's, or those named), one JSON object
    /// each: where the record was, why it was refused, its size — and its bytes with
    /// `--original`.
    Tail(TailArgs),
    /// Re-drive the dead letters of a topic that now decode into the topic they came from,
    /// with their original key: each once (the group `arus-dlq-replay` remembers how far it
    /// got). A letter that still does not decode stops the replay there, unless
    /// `--skip-undecodable`.
    Replay(ReplayArgs),
}

/// `arus dlq tail`.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// Source topics whose dead letters to show (default: every topic of the table).
    topics: Vec<String>,
    /// Print each letter's original bytes too (hex). They may hold personal data.
    #[arg(long)]
    original: bool,
    /// Keep printing letters as they come (Kafka; one topic).
    #[arg(long)]
    follow: bool,
    #[command(flatten)]
    bus: BusArgs,
}

/// `arus dlq replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The source topic whose dead letters to re-drive.
    topic: String,
    /// Move past letters that still do not decode (they stay in the dead-letter topic).
    #[arg(long)]
    skip_undecodable: bool,
    /// Say what would be re-driven, write nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    bus: BusArgs,
}

/// The group whose committed positions on a dead-letter topic say how far replays got.
const REPLAY_GROUP: &str = "arus-dlq-replay";

/// Runs a subcommand.
pub fn run(command: DlqCommand) -> anyhow::Result<()> {
    match command {
        DlqCommand::Tail(args) => tail(&args),
        DlqCommand::Replay(args) => replay(&args),
    }
}

/// A letter as `tail` prints it.
fn describe(letter: &DeadLetter, original: bool) -> serde_json::Value {
    let mut line = serde_json::json!({
        "id": letter.event_id,
        "source_topic": letter.source_topic,
        "partition": letter.source_partition,
        "offset": letter.source_offset,
        "time": letter.event_time.0,
        "error_kind": letter.error_kind,
        "error": letter.error,
        "bytes": letter.original_value.len(),
        "decodes_now": wire::decode(&letter.original_value).is_ok(),
    });
    if original {
        line["original_key"] = letter.original_key.as_deref().map(arus_schemas::json::hex).into();
        line["original"] = arus_schemas::json::hex(&letter.original_value).into();
    }
    line
}

fn tail(args: &TailArgs) -> anyhow::Result<()> {
    let bus = args.bus.open(false)?;
    let sources: Vec<String> = if args.topics.is_empty() {
        arus_schemas::topics::TOPICS.iter().map(|t| t.name.to_owned()).collect()
    } else {
        args.topics.clone()
    };
    if args.follow && sources.len() != 1 {
        return Err(super::refused("--follow follows one topic's dead letters: name it"));
    }
    let mut shown = 0u64;
    for source in &sources {
        let topic = args.bus.name(&arus_schemas::topics::dlq_topic(source));
        if !bus.has_topic(&topic) {
            if !args.topics.is_empty() {
                eprintln!("{topic}: no dead letters (the topic does not exist)");
            }
            continue;
        }
        bus.read(&topic, From::Beginning, &[], args.follow, &mut |record| {
            if let Ok(Event::DeadLetter(letter)) = wire::decode(&record.value) {
                out!("{}", describe(&letter, args.original));
                shown += 1;
            }
            Ok(true)
        })?;
    }
    std::io::Write::flush(&mut std::io::stdout())?;
    eprintln!("{shown} dead letters");
    Ok(())
}

/// What a replay did.
#[derive(Debug, Default)]
struct Replayed {
    redriven: u64,
    still_bad: u64,
    /// The position to commit (the offset after the last letter dealt with).
    through: Option<u64>,
}

fn replay(args: &ReplayArgs) -> anyhow::Result<()> {
    let bus = args.bus.open(false)?;
    let source = args.bus.name(&args.topic);
    let topic = args.bus.name(&arus_schemas::topics::dlq_topic(&args.topic));
    if !bus.has_topic(&topic) {
        eprintln!("{topic} does not exist: no dead letters to replay");
        return Ok(());
    }
    bus.partitions(&source)?;
    let sink = bus.sink()?;
    let committed = bus.committed(REPLAY_GROUP, &topic)?;
    let mut per_partition: std::collections::BTreeMap<u32, Replayed> = Default::default();
    // Ids re-driven in this replay: a letter written twice (two jobs reading one topic) goes
    // back once.
    let mut seen = std::collections::HashSet::new();
    bus.read(&topic, From::Offsets, &committed, false, &mut |record| {
        let done = per_partition.entry(record.partition).or_default();
        if done.still_bad > 0 && !args.skip_undecodable {
            return Ok(true); // this partition stopped at a letter that still fails
        }
        let Ok(Event::DeadLetter(letter)) = wire::decode(&record.value) else {
            done.through = Some(record.offset + 1);
            return Ok(true);
        };
        match wire::decode(&letter.original_value) {
            Ok(event) => {
                if seen.insert(letter.event_id.clone()) && !args.dry_run {
                    let key = letter.original_key.as_deref().unwrap_or(event.key().as_bytes()).to_vec();
                    sink.send(&source, &key, &letter.original_value, event.event_time())?;
                }
                done.redriven += 1;
                done.through = Some(record.offset + 1);
            }
            Err(_) => {
                done.still_bad += 1;
                eprintln!("{}: still not an event of the contract", letter.event_id);
                if args.skip_undecodable {
                    done.through = Some(record.offset + 1);
                }
            }
        }
        Ok(true)
    })?;
    let redriven: u64 = per_partition.values().map(|r| r.redriven).sum();
    let still_bad: u64 = per_partition.values().map(|r| r.still_bad).sum();
    if args.dry_run {
        eprintln!("{redriven} dead letters would go back to {source}; {still_bad} still do not decode");
        return Ok(());
    }
    // Written and durable before the position moves: a replay stopped in between sends the
    // same records again, with the same event ids, which every job folds once.
    sink.flush()?;
    let positions: Vec<(u32, u64)> = per_partition.iter().filter_map(|(p, r)| r.through.map(|o| (*p, o))).collect();
    bus.commit(REPLAY_GROUP, &topic, &positions)?;
    eprintln!(
        "{redriven} dead letters went back to {source}{}",
        if still_bad > 0 {
            format!(
                "; {still_bad} still do not decode{}",
                if args.skip_undecodable { " (passed over)" } else { " (the replay stopped at the first)" }
            )
        } else {
            String::new()
        }
    );
    Ok(())
}
