//! `arus run`: a pipeline in the foreground.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use arus_jobs::Pipeline;
use arus_jobs::adjudication::spec::AdjudicationSpec;
use arus_jobs::analytics::spec::AnalyticsSpec;
use arus_jobs::eligibility::spec::EligibilitySpec;
use arus_jobs::fraud::spec::FraudSpec;
use arus_jobs::provider_windows::spec::ProviderWindowsSpec;
use arus_jobs::runtime::metrics::Metrics;
use arus_jobs::runtime::spec::StoreSpec;
use arus_jobs::runtime::{Cluster, RunContext, Shutdown};

use super::generate::per_second;
use super::thousands;

/// `arus run` arguments.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The pipeline spec (`pipelines/<name>.toml`).
    pipeline: PathBuf,
    /// Worker threads (per process).
    #[arg(long, short = 'w', default_value_t = 1)]
    workers: usize,
    /// Override a key of the spec: `--set source.path=in.jsonl` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Processes in the timely cluster (with --process and --hostfile).
    #[arg(long, default_value_t = 1)]
    processes: usize,
    /// This process's index in the cluster.
    #[arg(long, default_value_t = 0)]
    process: usize,
    /// File with one `host:port` per line, one per process.
    #[arg(long)]
    hostfile: Option<PathBuf>,
    /// Serve Prometheus metrics at `http://ADDR/metrics` while the job runs (e.g.
    /// `127.0.0.1:9464`; port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<String>,
    /// Write how the run ended here: the exit code, then the error (for the controller).
    #[arg(long, value_name = "PATH", hide = true)]
    status_file: Option<PathBuf>,
    /// The controller's id of the job (on the command line, so that the process is found).
    #[arg(long, hide = true)]
    job_id: Option<String>,
}

/// Runs the pipeline to the end of its input and prints what it did; with `--status-file`,
/// writes there how it ended.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let status_file = args.status_file.clone();
    let result = run_job(args);
    if let Some(path) = status_file {
        let status = match &result {
            Ok(()) => "0\n".to_owned(),
            Err(error) => format!("{}\n{error:#}\n", crate::exit_code(crate::domain_of(error))),
        };
        if let Err(e) = std::fs::write(&path, status) {
            eprintln!("warning: --status-file {}: {e}", path.display());
        }
    }
    result
}

fn run_job(args: RunArgs) -> anyhow::Result<()> {
    anyhow::ensure!((1..=256).contains(&args.workers), "--workers must be between 1 and 256");
    let pipeline = Pipeline::load(&args.pipeline, &args.overrides)?;
    // Every job's metrics, served where asked while it runs.
    let name = args.pipeline.file_stem().and_then(|s| s.to_str()).unwrap_or("pipeline");
    let metrics = Arc::new(Metrics::new(name));
    if let Some(address) = &args.metrics_addr {
        let bound = arus_jobs::runtime::metrics::serve(address, metrics.clone())
            .with_context(|| format!("--metrics-addr {address}: cannot listen"))?;
        eprintln!("metrics: http://{bound}/metrics");
    }
    // SIGTERM or Ctrl-C asks the job to stop: it flushes what it decided and reports; a second
    // one ends the process at once.
    let shutdown = Shutdown::new();
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register_conditional_shutdown(signal, 130, shutdown.flag())
            .and_then(|_| signal_hook::flag::register(signal, shutdown.flag()))
            .context("cannot handle SIGTERM and SIGINT")?;
    }
    // SIGUSR1 asks for a savepoint: a snapshot now, the run going on (jobs with snapshots).
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, shutdown.savepoint_flag())
        .context("cannot handle SIGUSR1")?;
    let context = RunContext { cluster: cluster(&args)?, metrics, shutdown: shutdown.clone() };
    // The job's topics on the broker against the table: what differs is said, not fixed.
    match &pipeline {
        Pipeline::Eligibility(spec) => check_topics(&spec.source, &arus_jobs::eligibility::job::TOPICS),
        Pipeline::Adjudication(spec) => {
            use arus_jobs::adjudication::job::{OUTPUT_TOPICS, TOPICS};
            check_topics(&spec.source, &[&TOPICS[..], &OUTPUT_TOPICS[..]].concat())
        }
        Pipeline::Fraud(spec) => {
            let alerts = arus_schemas::topics::names::FRAUD_ALERTS;
            check_topics(&spec.source, &[&arus_jobs::fraud::job::TOPICS[..], &[alerts]].concat())
        }
        Pipeline::Analytics(spec) => check_topics(&spec.source, &arus_jobs::analytics::TOPICS),
        Pipeline::ProviderWindows(_) => {}
    }
    let result = match pipeline {
        Pipeline::ProviderWindows(spec) => run_windows(&args, &spec, &context),
        Pipeline::Eligibility(spec) => run_eligibility(&args, &spec, &context),
        Pipeline::Adjudication(spec) => run_adjudication(&args, &spec, &context),
        Pipeline::Analytics(spec) => run_analytics(&args, &spec, &context),
        Pipeline::Fraud(spec) => run_fraud(&args, &spec, &context),
    };
    if result.is_ok() && shutdown.requested() {
        eprintln!(
            "stopped on request: what was decided is written and flushed; a restart goes on from the topics (or \
             the last checkpoint)"
        );
    }
    result
}

/// Says which of `topics` (under the source's prefix) are on the broker otherwise than the
/// topic table declares — partitions, retention, compaction, compression — and how; a check
/// that cannot be made is said too. The job runs either way (`arus topics create` reports
/// every topic, exit 2 when one differs).
fn check_topics(source: &arus_jobs::runtime::spec::TopicsSource, topics: &[&str]) {
    let arus_jobs::runtime::spec::TopicsSource::Kafka { brokers, topic_prefix, .. } = source else { return };
    let config = arus_connectors::kafka::KafkaConfig::new(brokers.clone());
    let declared: Vec<(String, arus_schemas::topics::TopicSpec)> = topics
        .iter()
        .filter_map(|topic| arus_schemas::topics::declared(topic).map(|spec| (format!("{topic_prefix}{topic}"), spec)))
        .collect();
    match arus_connectors::kafka::check_topics(&config, &declared) {
        Ok(differing) => {
            for (name, differences) in differing {
                eprintln!("warning: topic {name} differs from the topic table: {}", differences.join("; "));
            }
        }
        Err(error) => eprintln!("warning: the topics' settings could not be checked: {error}"),
    }
}

/// Runs the provider-windows job and prints what it did.
fn run_windows(args: &RunArgs, spec: &ProviderWindowsSpec, context: &RunContext) -> anyhow::Result<()> {
    if let Some(checkpoint) = &spec.checkpoint {
        eprintln!("checkpoints: {} every {}", checkpoint.dir.display(), checkpoint.interval);
    }
    let report = arus_jobs::provider_windows::job::run(spec, context)?;
    let path = &spec.sink.path;
    if let Some((epoch, at)) = report.resumed_from {
        eprintln!("resumed from checkpoint {epoch} (watermark {at} ms)");
    }
    if spec.checkpoint.is_some() {
        eprintln!("{} checkpoints taken", thousands(report.checkpoints));
    }
    eprintln!(
        "{}: {} records in {:.2?} ({}/s on {} worker{}), {} rows to {}, {} late, {} dead letters",
        args.pipeline.display(),
        thousands(report.records),
        report.elapsed,
        thousands(per_second(report.records, report.elapsed)),
        args.workers,
        if args.workers == 1 { "" } else { "s" },
        thousands(report.rows),
        path.display(),
        thousands(report.late),
        thousands(report.dead_letters),
    );
    Ok(())
}

/// The timely cluster the arguments describe.
fn cluster(args: &RunArgs) -> anyhow::Result<Cluster> {
    Ok(if args.processes > 1 {
        let hostfile = args.hostfile.as_ref().context("--processes > 1 needs --hostfile")?;
        let text = std::fs::read_to_string(hostfile).with_context(|| format!("reading {}", hostfile.display()))?;
        let addresses: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
        anyhow::ensure!(
            addresses.len() == args.processes,
            "{} lists {} addresses for {} processes",
            hostfile.display(),
            addresses.len(),
            args.processes
        );
        anyhow::ensure!(
            args.process < args.processes,
            "--process {} is not below --processes {}",
            args.process,
            args.processes
        );
        Cluster::Process { workers: args.workers, process: args.process, addresses }
    } else {
        Cluster::Local { workers: args.workers }
    })
}

/// Runs the eligibility job and prints what it did.
fn run_eligibility(args: &RunArgs, spec: &EligibilitySpec, context: &RunContext) -> anyhow::Result<()> {
    if let Some(checkpoint) = &spec.checkpoint {
        eprintln!("snapshots: {} every {}", checkpoint.dir.display(), checkpoint.interval);
    }
    let report = arus_jobs::eligibility::job::run(spec, context)?;
    if let Some(epoch) = report.restored_from {
        eprintln!("resumed from snapshot {epoch}");
    }
    eprintln!(
        "{}: {} member and plan events in {:.2?} ({}/s on {} worker{}) into the {} store{}",
        args.pipeline.display(),
        thousands(report.events),
        report.elapsed,
        thousands(per_second(report.events, report.elapsed)),
        args.workers,
        if args.workers == 1 { "" } else { "s" },
        match &spec.store {
            StoreSpec::Redis { .. } => "Redis",
            StoreSpec::Memory => "in-memory",
        },
        if report.undecodable > 0 {
            format!(", {} records that are not events passed over", thousands(report.undecodable))
        } else {
            String::new()
        }
    );
    if spec.answer_requests {
        eprintln!("{} requests answered on eligibility.responses", thousands(report.answered));
    }
    if spec.checkpoint.is_some() {
        eprintln!("{} snapshots taken", thousands(report.snapshots));
    }
    Ok(())
}

fn run_adjudication(args: &RunArgs, spec: &AdjudicationSpec, context: &RunContext) -> anyhow::Result<()> {
    if let Some(checkpoint) = &spec.checkpoint {
        eprintln!("snapshots: {} every {}", checkpoint.dir.display(), checkpoint.interval);
    }
    let report = arus_jobs::adjudication::job::run(spec, context)?;
    if let Some(epoch) = report.restored_from {
        eprintln!("resumed from snapshot {epoch}");
    }
    eprintln!("{}", adjudication_summary(&report, args.workers));
    if spec.checkpoint.is_some() {
        eprintln!("{} snapshots taken", thousands(report.snapshots));
    }
    Ok(())
}

/// One line on what an adjudication run did.
pub fn adjudication_summary(report: &arus_jobs::adjudication::job::AdjudicationReport, workers: usize) -> String {
    let claims: u64 = report.decided.values().sum();
    let statuses: Vec<String> =
        report.decided.iter().map(|(status, n)| format!("{} {}", thousands(*n), status.to_lowercase())).collect();
    format!(
        "adjudication: {} events in {:.2?} on {} worker{}: {} claims decided ({}), {} accumulator updates, {} paid{}{}{}{}",
        thousands(report.events),
        report.elapsed,
        workers,
        if workers == 1 { "" } else { "s" },
        thousands(claims),
        statuses.join(", "),
        thousands(report.accumulator_updates),
        thousands(report.paid),
        if report.late > 0 {
            format!(", {} late (decided as they came)", thousands(report.late))
        } else {
            String::new()
        },
        if report.undecodable > 0 {
            format!(", {} records that are not events passed over", thousands(report.undecodable))
        } else {
            String::new()
        },
        if report.already_written > 0 {
            format!("; {} of the decisions already written by an earlier run", thousands(report.already_written))
        } else {
            String::new()
        },
        expired(report.expired),
    )
}

/// What a run says of the events it refused as older than the dedup horizon.
fn expired(n: u64) -> String {
    if n == 0 {
        return String::new();
    }
    format!("; {} events older than the dedup horizon refused (replays: nothing decided)", thousands(n))
}

fn run_analytics(args: &RunArgs, spec: &AnalyticsSpec, context: &RunContext) -> anyhow::Result<()> {
    let report = arus_jobs::analytics::run(spec, context)?;
    eprintln!(
        "analytics: {} claim lines, {} providers and {} payment, accumulator, member and alert rows into ClickHouse {} \
         (database {}) in {} inserts, {:.2?} on {} worker{}",
        thousands(report.claim_lines),
        thousands(report.providers),
        thousands(report.other_rows),
        spec.clickhouse.url,
        spec.clickhouse.database,
        thousands(report.inserts),
        report.elapsed,
        args.workers,
        if args.workers == 1 { "" } else { "s" },
    );
    Ok(())
}

fn run_fraud(args: &RunArgs, spec: &FraudSpec, context: &RunContext) -> anyhow::Result<()> {
    if let Some(checkpoint) = &spec.checkpoint {
        eprintln!("snapshots: {} every {}", checkpoint.dir.display(), checkpoint.interval);
    }
    let report = arus_jobs::fraud::job::run(spec, context)?;
    if let Some(epoch) = report.restored_from {
        eprintln!("resumed from snapshot {epoch}");
    }
    eprintln!(
        "fraud: {} events in {:.2?} on {} worker{}: {} alerts to fraud.alerts{}{}",
        thousands(report.events),
        report.elapsed,
        args.workers,
        if args.workers == 1 { "" } else { "s" },
        thousands(report.alerts),
        if report.already_written > 0 {
            format!(" ({} already there from an earlier run)", thousands(report.already_written))
        } else {
            String::new()
        },
        expired(report.expired),
    );
    if spec.checkpoint.is_some() {
        eprintln!(
            "{} snapshots taken; {} events of windows still open wait in the last for the next run",
            thousands(report.snapshots),
            thousands(report.held)
        );
    }
    Ok(())
}
