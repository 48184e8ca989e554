//! `arus gen`: generated traffic into files, with labels and a summary beside it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use arus_connectors::files::{FileFormat, TopicFilesSink};
use arus_connectors::kafka::{self, KafkaConfig, KafkaSink};
use arus_generator::{Output, generate_in_parallel};
use arus_schemas::topics::TOPICS;
use arus_schemas::{Event, Idr};
use indicatif::{ProgressBar, ProgressStyle};

use super::{Population, thousands};

/// Output format.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// JSON lines, one file per topic (`<topic>.jsonl`).
    Jsonl,
    /// Avro object container files, one per topic (`<topic>.avro`).
    Avro,
}

/// `arus gen` arguments.
#[derive(Debug, clap::Args)]
pub struct GenArgs {
    #[command(flatten)]
    population: Population,
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: Format,
    /// Folder to write into (created if missing; files of the same names are replaced).
    #[arg(long, default_value = "arus-data")]
    out: PathBuf,
    /// Also write every claim as one flat JSON line (`claim_id`, `member_id`, `provider_id`,
    /// `billed_amount`, `service_ts` = the claim's event time in epoch seconds): the input of
    /// `pipelines/provider-windows.toml`.
    #[arg(long, value_name = "PATH")]
    claims_file: Option<PathBuf>,
    /// Write the events to the Kafka topics at these brokers (`host:port[,…]`, creating
    /// missing topics) instead of topic files; labels and the summary still go to --out.
    #[arg(long, value_name = "BROKERS")]
    kafka: Option<String>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Generates into files and prints a summary.
pub fn run(args: GenArgs) -> anyhow::Result<()> {
    let config = args.population.config(10_000, 90)?;
    let format = match args.format {
        Format::Jsonl => FileFormat::JsonLines,
        Format::Avro => FileFormat::Avro,
    };
    let mut files = TopicFilesSink::create(&args.out, format)?;
    let kafka = match &args.kafka {
        Some(brokers) => {
            let config = KafkaConfig::new(brokers.clone());
            let topics: Vec<(&str, u32)> = TOPICS.iter().map(|t| (t.name, t.partitions)).collect();
            kafka::create_topics(&config, &topics).with_context(|| format!("creating topics on {brokers}"))?;
            Some(KafkaSink::new(&config, "lz4")?)
        }
        None => None,
    };
    let mut encoded = Vec::with_capacity(1024);
    let labels_path = args.out.join("labels.jsonl");
    let mut labels =
        BufWriter::new(File::create(&labels_path).with_context(|| format!("creating {}", labels_path.display()))?);
    let progress = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(config.claims) };
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} generating [{bar:40}] {human_pos}/{human_len} claims, {per_sec}, eta {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    let mut claims_file = match &args.claims_file {
        Some(path) => Some((
            BufWriter::new(File::create(path).with_context(|| format!("creating {}", path.display()))?),
            path.clone(),
        )),
        None => None,
    };
    let started = Instant::now();
    let mut since_tick = 0u64;
    let summary = generate_in_parallel(&config, |output| -> anyhow::Result<()> {
        match output {
            Output::Event(event) => {
                if let Event::ClaimSubmitted(claim) = &event {
                    if let Some((writer, path)) = claims_file.as_mut() {
                        writeln!(
                            writer,
                            r#"{{"claim_id":"{}","member_id":"{}","provider_id":"{}","billed_amount":{}.00,"service_ts":{}}}"#,
                            claim.claim_id,
                            claim.member_id,
                            claim.provider_id,
                            claim.total_charge_idr.0,
                            claim.event_time.millis().div_euclid(1000)
                        )
                        .with_context(|| format!("writing {}", path.display()))?;
                    }
                    since_tick += 1;
                    if since_tick == 1024 {
                        progress.inc(since_tick);
                        since_tick = 0;
                    }
                }
                match &kafka {
                    Some(producer) => {
                        encoded.clear();
                        arus_schemas::wire::encode_into(&event, &mut encoded)?;
                        producer.send(&event.topic(), event.key().as_bytes(), &encoded, event.event_time().millis())?;
                    }
                    None => files.write(&event)?,
                }
            }
            Output::Label(label) => {
                serde_json::to_writer(&mut labels, &label)?;
                labels.write_all(b"\n").with_context(|| format!("writing {}", labels_path.display()))?;
            }
        }
        Ok(())
    })?;
    progress.finish_and_clear();
    let files = files.finish()?;
    let delivered = match &kafka {
        Some(producer) => Some(producer.flush(std::time::Duration::from_secs(120))?.delivered),
        None => None,
    };
    labels.flush().with_context(|| format!("writing {}", labels_path.display()))?;
    if let Some((mut writer, path)) = claims_file {
        writer.flush().with_context(|| format!("writing {}", path.display()))?;
        out!("  flat claims for provider-windows in {}", path.display());
    }
    let summary_path = args.out.join("summary.json");
    let summary_json = serde_json::json!({ "config": config, "summary": summary });
    std::fs::write(&summary_path, serde_json::to_string_pretty(&summary_json)? + "\n")
        .with_context(|| format!("writing {}", summary_path.display()))?;
    let elapsed = started.elapsed();

    let destination = args.kafka.as_ref().map_or_else(|| args.out.display().to_string(), |b| format!("Kafka at {b}"));
    out!(
        "generated {} events in {:.2?} ({}/s) into {destination}",
        thousands(summary.total_events),
        elapsed,
        thousands(per_second(summary.total_events, elapsed)),
    );
    out!(
        "  {} families, {} members, {} providers; {} claims ({} submitted over 14 days late), billed {}",
        thousands(summary.families),
        thousands(summary.members),
        thousands(summary.providers),
        thousands(summary.claims),
        thousands(summary.late_claims),
        Idr(summary.billed_idr)
    );
    let fraud: u64 = summary.fraud.values().sum();
    let patterns: Vec<String> = summary.fraud.iter().map(|(p, n)| format!("{p} {n}")).collect();
    out!("  {} fraudulent claims labelled in {}: {}", thousands(fraud), labels_path.display(), patterns.join(", "));
    if let (Some(delivered), Some(brokers)) = (delivered, &args.kafka) {
        out!("  {} events delivered to Kafka at {brokers}", thousands(delivered));
    }
    for file in files {
        out!(
            "  {:<40} {:>10} events {:>12} bytes",
            file.path.display(),
            thousands(file.records),
            thousands(file.bytes)
        );
    }
    Ok(())
}

/// Events per second, without floating point.
pub fn per_second(events: u64, elapsed: std::time::Duration) -> u64 {
    let micros = elapsed.as_micros().max(1);
    (u128::from(events) * 1_000_000 / micros) as u64
}
