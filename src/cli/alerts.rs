//! `arus alerts tail`: fraud alerts from `fraud.alerts`, one readable line each, for analysts.

use anyhow::Context;
use arus_schemas::events::{FraudAlert, SubjectType};
use arus_schemas::{Event, wire};

/// `arus alerts` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AlertsCommand {
    /// Print the alerts on `fraud.alerts` (from the beginning), and with `--follow` those to
    /// come.
    Tail(TailArgs),
}

/// `arus alerts tail` arguments.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// Kafka brokers holding `fraud.alerts`.
    #[arg(long, value_name = "BROKERS", conflicts_with = "log")]
    kafka: Option<String>,
    /// Or an embedded log persisted in this folder.
    #[arg(long, value_name = "DIR")]
    log: Option<std::path::PathBuf>,
    /// Put before the topic name (as the jobs' `source.topic_prefix`).
    #[arg(long, default_value = "")]
    topic_prefix: String,
    /// Only alerts about providers, or about members.
    #[arg(long, value_parser = ["provider", "member"])]
    subject: Option<String>,
    /// Only alerts a model scored at least this (0 to 1); rule alerts carry no score and are
    /// left out when this is given.
    #[arg(long, value_name = "SCORE")]
    min_score: Option<f64>,
    /// Keep printing alerts as they come (Kafka), until stopped.
    #[arg(long)]
    follow: bool,
    /// Stop after printing this many.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
}

impl TailArgs {
    /// The first `limit` alerts of an embedded log in `dir` scored at least `min_score`.
    pub fn log(dir: &std::path::Path, min_score: Option<f64>, limit: u64) -> Self {
        TailArgs {
            kafka: None,
            log: Some(dir.to_owned()),
            topic_prefix: String::new(),
            subject: None,
            min_score,
            follow: false,
            limit: Some(limit),
        }
    }
}

/// One alert in a line: day, severity, pattern, subject, why, claims, rules, score.
pub fn describe(alert: &FraudAlert) -> String {
    let hit = alert.rule_hits.first();
    let score = alert.score.map_or_else(String::new, |s| format!(" score {s:.3}"));
    let shadow = match (&alert.shadow_model_version, alert.shadow_score) {
        (Some(version), Some(s)) => format!(" (shadow v{version}: {s:.3})"),
        _ => String::new(),
    };
    let version = alert.model_version.as_deref().unwrap_or("?");
    let (detail, rules) = match hit {
        Some(hit) => {
            (hit.detail.clone(), alert.rule_hits.iter().map(|h| h.rule.as_str()).collect::<Vec<_>>().join(","))
        }
        None => (format!("the model's top features: {}", alert.top_features.join(", ")), format!("model v{version}")),
    };
    format!(
        "{} {:<8} {:<15} {} {} — {} (claims {}) [{}{}]{}{}",
        alert.window_start.date(),
        format!("{:?}", alert.severity),
        hit.map_or("model", |h| h.pattern.as_str()),
        match alert.subject_type {
            SubjectType::PROVIDER => "provider",
            SubjectType::MEMBER => "member",
        },
        alert.subject_id,
        detail,
        alert.claim_ids.join(", "),
        rules,
        if matches!(alert.status, arus_schemas::events::AlertStatus::WITHDRAWN) { ", withdrawn" } else { "" },
        score,
        shadow,
    )
}

/// Runs a subcommand.
pub fn run(command: AlertsCommand) -> anyhow::Result<()> {
    let AlertsCommand::Tail(args) = command;
    if let Some(score) = args.min_score {
        anyhow::ensure!((0.0..=1.0).contains(&score), "--min-score must be between 0 and 1");
    }
    let topic = format!("{}{}", args.topic_prefix, arus_schemas::topics::names::FRAUD_ALERTS);
    let mut shown = 0u64;
    let limit = args.limit.unwrap_or(u64::MAX);
    // Prints an alert that passes the filters; whether to go on.
    let mut show = |bytes: &[u8]| -> anyhow::Result<bool> {
        let Ok(Event::FraudAlert(alert)) = wire::decode(bytes) else { return Ok(true) };
        let subject = match alert.subject_type {
            SubjectType::PROVIDER => "provider",
            SubjectType::MEMBER => "member",
        };
        if args.subject.as_deref().is_some_and(|s| s != subject) {
            return Ok(true);
        }
        if let Some(min) = args.min_score
            && alert.score.is_none_or(|s| s < min)
        {
            return Ok(true);
        }
        out!("{}", describe(&alert));
        shown += 1;
        Ok(shown < limit)
    };
    match (&args.kafka, &args.log) {
        (Some(brokers), _) => {
            let config = arus_connectors::kafka::KafkaConfig::new(brokers.clone());
            let partitions = arus_connectors::kafka::partition_count(&config, &topic)
                .with_context(|| format!("{topic} on {brokers}"))?;
            let from: Vec<(u32, Option<u64>)> = (0..partitions).map(|p| (p, None)).collect();
            let reader =
                arus_connectors::kafka::BoundedPartitionReader::open(&config, "arus-alerts-tail", &topic, &from, 500)?;
            if args.follow {
                let mut reader = reader.following();
                loop {
                    if let Some(record) = reader.next_available(std::time::Duration::from_millis(500))?
                        && !show(&record.value)?
                    {
                        break;
                    }
                }
            } else {
                let mut reader = reader;
                while let Some(record) = reader.next_record()?
                    && show(&record.value)?
                {}
            }
        }
        (None, Some(dir)) => {
            anyhow::ensure!(!args.follow, "--follow needs --kafka (an embedded log is read as it is now)");
            let log = arus_connectors::embedded::EmbeddedLog::open(dir)
                .with_context(|| format!("--log {}", dir.display()))?;
            anyhow::ensure!(
                log.has_topic(&topic),
                "{}: no topic {topic} (run pipelines/fraud.toml first)",
                dir.display()
            );
            'partitions: for (partition, end) in log.end_offsets(&topic)?.into_iter().enumerate() {
                for record in log.fetch(&topic, partition as u32, 0, end as usize)? {
                    if !show(&record.value)? {
                        break 'partitions;
                    }
                }
            }
        }
        (None, None) => anyhow::bail!("say where the alerts are: --kafka BROKERS or --log DIR"),
    }
    std::io::Write::flush(&mut std::io::stdout())?;
    eprintln!("{shown} alerts");
    Ok(())
}
