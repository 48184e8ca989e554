//! `arus demo`: the system in one process, on the embedded log, with no servers.
//!
//! The demo generates a book of business and its traffic into the embedded log, the same way
//! a producer writes to Kafka (Confluent wire format, keyed by the entity whose events must
//! stay in order), shows what is on the topics, runs the jobs through a controller inside the
//! process, and with `--serve` serves the gateway and the controller's API and page.

use std::collections::BTreeMap;
use std::time::Instant;

use arus_connectors::embedded::EmbeddedLog;
use arus_generator::{Output, generate};
use arus_schemas::events::{ProviderType, Relationship};
use arus_schemas::topics::names::CLAIMS_EVENTS;
use arus_schemas::{Event, Idr, wire};

use super::generate::per_second;
use super::{Population, thousands};

/// `arus demo` arguments.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    #[command(flatten)]
    population: Population,
    /// Then serve the REST gateway over the demo's state on this address (e.g.
    /// `127.0.0.1:8080`; port 0 picks one) until stopped with Ctrl-C.
    #[arg(long, value_name = "ADDR")]
    serve: Option<String>,
    /// Keep the demo's log in this folder (emptied first), to read again afterwards: `arus
    /// alerts tail --log DIR`, or a job with `--set 'source={kind="embedded", dir="DIR"}'`.
    /// Default: `arus-demo` in the system's temporary folder.
    #[arg(long, value_name = "DIR")]
    log_dir: Option<std::path::PathBuf>,
    /// Run the fraud rules without the model (and do not install ONNX Runtime for it).
    #[arg(long)]
    rules_only: bool,
    /// With --serve, the embedded controller's API and jobs page on this address (port 0
    /// picks one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    controller_addr: String,
}

/// Empties a folder for the demo's log: one that is missing, empty, or an embedded log (its
/// `topics/` and positions) — never a folder holding anything else.
fn fresh_log_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        let names: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        let ours = |n: &String| matches!(n.as_str(), "topics" | "positions.json" | "positions.json.tmp" | "controller");
        anyhow::ensure!(
            names.iter().all(ours),
            "--log-dir {}: holds other files than an embedded log ({}); pick an empty or new folder",
            dir.display(),
            names.iter().filter(|n| !ours(n)).take(3).cloned().collect::<Vec<_>>().join(", ")
        );
        for name in names {
            let path = dir.join(name);
            if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) }
                .map_err(|e| anyhow::anyhow!("--log-dir {}: cannot empty it: {e}", dir.display()))?;
        }
    }
    Ok(())
}

#[derive(Default)]
struct Census {
    relationships: BTreeMap<&'static str, u64>,
    provider_types: BTreeMap<&'static str, u64>,
    plans: Vec<String>,
    in_network: u64,
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let args_serve = args.serve.clone();
    let config = args.population.config(5_000, 60)?;
    let log_dir = args.log_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("arus-demo"));
    fresh_log_dir(&log_dir)?;
    let log = EmbeddedLog::open(&log_dir).map_err(|e| anyhow::anyhow!("--log-dir {}: {e}", log_dir.display()))?;
    log.create_all_topics()?;
    out!(
        "arus demo: embedded log with {} topics in {}, generator seed {}",
        log.topic_names().len(),
        log_dir.display(),
        config.seed
    );

    let started = Instant::now();
    let mut census = Census::default();
    let mut fraud_labels = 0u64;
    let mut buffer = Vec::with_capacity(1024);
    let summary = generate(&config, |output| -> anyhow::Result<()> {
        let event = match output {
            Output::Event(event) => event,
            Output::Label(_) => {
                fraud_labels += 1;
                return Ok(());
            }
        };
        census.observe(&event);
        buffer.clear();
        wire::encode_into(&event, &mut buffer)?;
        log.produce(&event.topic(), Some(event.key().as_bytes()), buffer.clone(), event.event_time())?;
        Ok(())
    })?;
    let elapsed = started.elapsed();

    out!();
    out!("population");
    let rel = |name| thousands(census.relationships.get(name).copied().unwrap_or(0));
    out!(
        "  {} families: {} members ({} subscribers, {} spouses, {} children), generated NIKs and names (never printed)",
        thousands(summary.families),
        thousands(summary.members),
        rel("SUBSCRIBER"),
        rel("SPOUSE"),
        rel("CHILD")
    );
    let types: Vec<String> = census.provider_types.iter().map(|(t, n)| format!("{n} {}", t.to_lowercase())).collect();
    out!(
        "  {} providers ({}), {} in network with fee schedules",
        thousands(summary.providers),
        types.join(", "),
        census.in_network
    );
    out!("  {} plans: {}", census.plans.len(), census.plans.join(", "));
    out!();
    out!(
        "traffic ({} events in {:.2?}, {}/s), as it sits on the log",
        thousands(summary.total_events),
        elapsed,
        thousands(per_second(summary.total_events, elapsed))
    );
    out!("  {:<24} {:>10} {:>12}  events", "topic", "partitions", "records");
    for topic in log.topic_names() {
        let ends = log.end_offsets(&topic)?;
        let records: u64 = ends.iter().sum();
        if records == 0 {
            continue;
        }
        let kinds: Vec<String> = summary
            .events
            .iter()
            .filter(|(kind, _)| {
                arus_schemas::EventKind::from_name(kind).and_then(|k| k.topic()) == Some(topic.as_str())
            })
            .map(|(kind, n)| format!("{kind} {}", thousands(*n)))
            .collect();
        out!("  {:<24} {:>10} {:>12}  {}", topic, ends.len(), thousands(records), kinds.join(", "));
    }
    out!();
    out!(
        "claims: {} billed {} over {} days of service from {}; {} submitted more than 14 days late; {} labelled fraudulent ({})",
        thousands(summary.claims),
        Idr(summary.billed_idr),
        config.days,
        config.start,
        thousands(summary.late_claims),
        thousands(fraud_labels),
        summary.fraud.iter().map(|(p, n)| format!("{p} {n}")).collect::<Vec<_>>().join(", ")
    );
    out!();
    out!("first claims on {CLAIMS_EVENTS} partition 0, decoded from the wire format:");
    for record in log.fetch(CLAIMS_EVENTS, 0, 0, 3)? {
        if let Event::ClaimSubmitted(c) = wire::decode(&record.value)? {
            let lines: Vec<String> =
                c.lines.iter().map(|l| format!("{}x{} {}", l.units, l.procedure_code, l.charge_amount_idr)).collect();
            out!(
                "  offset {:>3}  {} member {} at {} served {} submitted {}  {}  = {}",
                record.offset,
                c.claim_id,
                c.member_id,
                c.provider_id,
                c.service_date,
                c.event_time,
                lines.join(" + "),
                c.total_charge_idr
            );
        }
    }
    out!();
    let log = std::sync::Arc::new(log);
    // The jobs run through a controller inside the process (its database in the log's
    // folder), each recorded with its spec as an engineer would submit it.
    let jobs = super::controller::Embedded::start(&log_dir.join("controller"))?;
    let on_log = format!("source={{kind=\"embedded\", dir=\"{}\"}}", log_dir.display());
    let in_memory = "store={kind=\"memory\"}".to_owned();
    let (store, example) = jobs.run(
        "eligibility",
        2,
        include_str!("../../pipelines/eligibility.toml"),
        vec![on_log.clone(), in_memory.clone()],
        {
            let log = log.clone();
            move || eligibility(log)
        },
    )?;
    out!();
    jobs.run(
        "provider-windows",
        2,
        include_str!("../../pipelines/provider-windows.toml"),
        vec![format!("source={{kind=\"embedded\", dir=\"{}\", topic=\"{CLAIMS_EVENTS}\"}}", log_dir.display())],
        {
            let log = log.clone();
            move || provider_windows(log)
        },
    )?;
    out!();
    let claim_example = jobs.run(
        "adjudication",
        2,
        include_str!("../../pipelines/adjudication.toml"),
        vec![on_log.clone(), in_memory],
        {
            let (log, store) = (log.clone(), store.clone());
            move || adjudication(log, store)
        },
    )?;
    out!();
    jobs.run("fraud", 2, include_str!("../../pipelines/fraud.toml"), vec![on_log], {
        let (log, dir, with_model) = (log.clone(), log_dir.clone(), !args.rules_only);
        move || fraud(log, &dir, with_model)
    })?;
    out!();
    out!("jobs, run through the embedded controller (`arus job list` against it under --serve):");
    let listed = jobs.jobs()?;
    super::job::print_table(listed.as_array().map(Vec::as_slice).unwrap_or_default());
    out!();
    out!(
        "next: `arus gen --claims 1000000` writes the same traffic to files; `arus topics` lists every topic \
         (`arus topics consume claims.events --log {dir}` reads one, `arus dlq tail --log {dir}` its dead \
         letters); `arus run pipelines/provider-windows.toml` (or adjudication.toml, eligibility.toml) runs a job \
         on files or Kafka; `arus demo --serve 127.0.0.1:8080` serves these answers over REST (and the jobs through its controller); \
         `arus controller` with `arus job submit` runs jobs in production.",
        dir = log_dir.display()
    );
    if let Some(address) = &args_serve {
        let listener = std::net::TcpListener::bind(address)
            .map_err(|e| anyhow::anyhow!("--serve {address}: cannot listen: {e}"))?;
        let bound = listener.local_addr()?;
        // Tokens from an issuer inside this process: development only, never a way in to a
        // real gateway (`arus gateway` wants --issuer).
        let issuer = arus_gateway::auth::DevIssuer::new(&format!("http://{bound}/dev-issuer"))
            .map_err(|e| anyhow::anyhow!("the development issuer: {e}"))?;
        let audience = arus_gateway::auth::DEFAULT_AUDIENCE;
        let day = std::time::Duration::from_secs(12 * 3_600);
        out!();
        out!("gateway on http://{bound} (Ctrl-C to stop)");
        out!("DEVELOPMENT ONLY: tokens from an issuer inside this process (a key made at start, valid 12 hours):");
        if let Some((_, member, _)) = &claim_example {
            let token = issuer.token(audience, &arus_gateway::auth::dev_claims("member", member), day);
            out!("  export MEMBER_TOKEN={token}    # member {member}: its own data, its family's");
        }
        let token = issuer.token(audience, &arus_gateway::auth::dev_claims("internal", "demo"), day);
        out!("  export INTERNAL_TOKEN={token}    # internal: every route, every scope");
        out!("try (the eligibility check is public; the rest need a token):");
        if let Some((member, day)) = &example {
            out!("  curl 'http://{bound}/api/v1/eligibility?memberId={member}&serviceDate={day}&serviceType=99213'");
        }
        if let Some((claim, member, year)) = &claim_example {
            out!("  curl -H \"Authorization: Bearer $INTERNAL_TOKEN\" 'http://{bound}/api/v1/claims/{claim}'");
            out!(
                "  curl -H \"Authorization: Bearer $MEMBER_TOKEN\" 'http://{bound}/api/v1/members/{member}/accumulators?year={year}'"
            );
        }
        out!("  every route: http://{bound}/openapi.json");
        let controller = std::net::TcpListener::bind(&args.controller_addr)
            .map_err(|e| anyhow::anyhow!("--controller-addr {}: cannot listen: {e}", args.controller_addr))?;
        let jobs_at = controller.local_addr()?;
        jobs.serve(controller, issuer.authenticator(audience))?;
        out!("the jobs (INTERNAL_TOKEN is an admin token too):");
        out!("  arus job list --controller http://{jobs_at} --token \"$INTERNAL_TOKEN\"");
        out!("  the jobs page: http://{jobs_at}/#token=$INTERNAL_TOKEN");
        let publisher = std::sync::Arc::new(arus_gateway::commands::TopicPublisher::log(log.clone()));
        let options = arus_gateway::Options {
            audit: Some(publisher.clone()),
            publisher: Some(publisher),
            authenticator: Some(std::sync::Arc::new(issuer.authenticator(audience))),
            ..arus_gateway::Options::default()
        };
        arus_gateway::serve(listener, store, options)?;
    }
    Ok(())
}

impl Census {
    fn observe(&mut self, event: &Event) {
        match event {
            Event::MemberCreated(m) => {
                let name = match m.relationship {
                    Relationship::SUBSCRIBER => "SUBSCRIBER",
                    Relationship::SPOUSE => "SPOUSE",
                    Relationship::CHILD => "CHILD",
                };
                *self.relationships.entry(name).or_default() += 1;
            }
            Event::ProviderOnboarded(p) => {
                let name = match p.provider_type {
                    ProviderType::HOSPITAL => "HOSPITAL",
                    ProviderType::CLINIC => "CLINIC",
                    ProviderType::LAB => "LAB",
                    ProviderType::PHARMACY => "PHARMACY",
                };
                *self.provider_types.entry(name).or_default() += 1;
            }
            Event::ContractUpdated(_) => self.in_network += 1,
            Event::PlanCreated(p) => self.plans.push(p.plan_id.clone()),
            _ => {}
        }
    }
}

/// Runs `pipelines/provider-windows.toml` on the claims on the log, on two workers.
fn provider_windows(log: std::sync::Arc<EmbeddedLog>) -> anyhow::Result<()> {
    let csv = std::env::temp_dir().join(format!("arus-demo-provider-windows-{}.csv", std::process::id()));
    let overrides = vec![
        format!("source={{kind=\"embedded\", dir=\"-\", topic=\"{CLAIMS_EVENTS}\"}}"),
        format!("sink.path={}", csv.display()),
    ];
    let path = std::path::Path::new("pipelines/provider-windows.toml");
    let spec = arus_jobs::provider_windows::spec::ProviderWindowsSpec::parse(
        path,
        include_str!("../../pipelines/provider-windows.toml"),
        &overrides,
    )?;
    let report =
        arus_jobs::provider_windows::job::run_on_log(&spec, &arus_jobs::runtime::Cluster::Local { workers: 2 }, log)?;
    out!(
        "provider-windows on {CLAIMS_EVENTS} (2 timely workers, 5-minute event-time windows per provider): {} claims \
         in {:.2?}, {} window rows, {} late",
        thousands(report.records),
        report.elapsed,
        thousands(report.rows),
        thousands(report.late)
    );
    let text = std::fs::read_to_string(&csv)?;
    let mut rows: Vec<(u64, &str)> = text
        .lines()
        .skip(1)
        .filter_map(|row| row.split(',').nth(2).and_then(|n| n.parse().ok()).map(|n| (n, row)))
        .collect();
    rows.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    out!("  busiest windows (provider_id,window_start,count,sum_billed,distinct_members):");
    for (_, row) in rows.iter().take(3) {
        out!("    {row}");
    }
    out!("  all of them: {}", csv.display());
    Ok(())
}

/// A member and a date worth asking about.
type Example = (String, arus_schemas::Date);

/// The models folder: `models/` here, or the one of the source tree this binary was built from.
fn models_dir() -> std::path::PathBuf {
    let here = std::path::PathBuf::from("models");
    if arus_models::newest(&here).is_some() {
        return here;
    }
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// The fraud model, when it can run: ONNX Runtime found (or installed into the cache from
/// PyPI, once, saying so) and a model in the models folder; otherwise why not, said.
fn fraud_model(wanted: bool) -> Option<arus_jobs::fraud::job::ModelWatch> {
    if !wanted {
        out!("fraud model not used (--rules-only): the rules alone");
        return None;
    }
    if let Err(missing) = arus_models::runtime_library() {
        out!("{missing}");
        out!(
            "installing onnxruntime {} from PyPI into the cache, once (the model's runtime; --rules-only skips it)…",
            arus_models::ONNXRUNTIME_VERSION
        );
        match arus_models::install_runtime() {
            Ok(library) => out!("  installed: {}", library.display()),
            Err(e) => {
                out!("fraud model not used (rules only): {e}");
                return None;
            }
        }
    }
    let spec = arus_jobs::fraud::spec::ModelSpec { dir: models_dir(), threshold: 0.5, shadow: false };
    match arus_jobs::fraud::job::ModelWatch::open(&spec) {
        Ok(model) => Some(model),
        Err(e) => {
            out!("fraud model not used (rules only): {e}");
            None
        }
    }
}

/// Runs the fraud rules (and the model in `models/`, when ONNX Runtime is there) over the log
/// on two workers; shows the alerts by pattern, and a few as `arus alerts tail` prints them from
/// the log's folder.
fn fraud(log: std::sync::Arc<EmbeddedLog>, dir: &std::path::Path, with_model: bool) -> anyhow::Result<()> {
    let model = fraud_model(with_model);
    let scored = model.is_some();
    let report =
        arus_jobs::fraud::job::run_on_log(log.clone(), &arus_jobs::runtime::Cluster::Local { workers: 2 }, model)?;
    log.flush()?;
    let mut alerts = Vec::new();
    for (partition, end) in log.end_offsets("fraud.alerts")?.into_iter().enumerate() {
        for record in log.fetch("fraud.alerts", partition as u32, 0, end as usize)? {
            if let Event::FraudAlert(alert) = wire::decode(&record.value)? {
                alerts.push(alert);
            }
        }
    }
    let mut by_pattern: BTreeMap<String, u64> = BTreeMap::new();
    for alert in &alerts {
        *by_pattern.entry(alert.rule_hits.first().map_or("model".to_owned(), |h| h.pattern.clone())).or_default() += 1;
    }
    let patterns: Vec<String> = by_pattern.iter().map(|(p, n)| format!("{n} {p}")).collect();
    out!(
        "fraud {} (2 timely workers; rules over a provider's or member's day of service, claims scored as their \
         5-minute windows close): {} alerts to fraud.alerts in {:.2?} ({})",
        if scored { "rules and model" } else { "rules" },
        thousands(report.alerts),
        report.elapsed,
        patterns.join(", ")
    );
    alerts.sort_by(|a, b| (a.window_start, &a.alert_id).cmp(&(b.window_start, &b.alert_id)));
    let mut shown = std::collections::BTreeSet::new();
    for alert in &alerts {
        let pattern = alert.rule_hits.first().map_or("model", |h| h.pattern.as_str());
        if shown.insert(pattern.to_owned()) && shown.len() <= 4 {
            out!("  {}", super::alerts::describe(alert));
        }
    }
    let min_score = scored.then_some(0.9);
    out!(
        "the first alerts{} as an analyst reads them — `arus alerts tail --log {}{}` (or --kafka BROKERS):",
        if scored { " the model scored 0.9 or more," } else { "," },
        dir.display(),
        if scored { " --min-score 0.9" } else { "" }
    );
    super::alerts::run(super::alerts::AlertsCommand::Tail(super::alerts::TailArgs::log(dir, min_score, 5)))?;
    Ok(())
}

/// Runs the adjudication job over the log on two workers, into the store; shows a decision
/// with its explanation and the member's accumulators. The claim, member and year shown.
fn adjudication(
    log: std::sync::Arc<EmbeddedLog>,
    store: std::sync::Arc<arus_connectors::store::MemoryStore>,
) -> anyhow::Result<Option<(String, String, i32)>> {
    let claims_end = log.end_offsets(CLAIMS_EVENTS)?;
    let report = arus_jobs::adjudication::job::run_on_log(
        log.clone(),
        &arus_jobs::runtime::Cluster::Local { workers: 2 },
        store.clone(),
    )?;
    out!(
        "{} (decisions written back to {CLAIMS_EVENTS}, totals to accumulator.updates)",
        super::run::adjudication_summary(&report, 2)
    );
    // A decision with a deductible taken, to explain.
    let mut shown = None;
    'partitions: for (partition, end) in log.end_offsets(CLAIMS_EVENTS)?.into_iter().enumerate() {
        let from = claims_end.get(partition).copied().unwrap_or(0);
        for record in log.fetch(CLAIMS_EVENTS, partition as u32, from, (end - from) as usize)? {
            if let Event::ClaimAdjudicated(a) = wire::decode(&record.value)?
                && a.lines.iter().any(|l| l.deductible_idr > Idr(0) && l.coinsurance_idr > Idr(0))
            {
                shown = Some(a);
                break 'partitions;
            }
        }
    }
    let Some(a) = shown else { return Ok(None) };
    out!(
        "  claim {} of member {}: {:?}, billed {}, allowed {}, member pays {}, plan pays {}; why:",
        a.claim_id,
        a.member_id,
        a.status,
        a.total_billed_idr,
        a.total_allowed_idr,
        a.total_member_share_idr,
        a.total_plan_paid_idr
    );
    for line in &a.trace {
        out!("    {line}");
    }
    // The accumulators of the year of service: the year submitted, or the one before.
    let submitted = a.event_time.date().year();
    let mut found = None;
    for year in [submitted, submitted - 1] {
        if let Some((_, bytes)) = arus_connectors::store::StateStore::get(
            &*store,
            &arus_schemas::read_models::accumulator_key(&a.member_id, year),
        )? {
            found = Some((year, bytes));
            break;
        }
    }
    let year = found.as_ref().map_or(submitted, |(year, _)| *year);
    if let Some((_, bytes)) = found {
        let acc: arus_schemas::read_models::Accumulators = serde_json::from_slice(&bytes)?;
        out!(
            "  {}'s {year} so far: deductible met {}, out-of-pocket met {} (family {}), plan paid {}",
            a.member_id,
            acc.member.deductible,
            acc.member.oop,
            acc.family.oop,
            acc.member.plan_paid
        );
    }
    Ok(Some((a.claim_id.clone(), a.member_id.clone(), year)))
}

/// Runs the eligibility job on the member and plan topics of the log into the embedded store
/// and answers the first requests on `eligibility.requests` from it.
fn eligibility(
    log: std::sync::Arc<EmbeddedLog>,
) -> anyhow::Result<(std::sync::Arc<arus_connectors::store::MemoryStore>, Option<Example>)> {
    let store = std::sync::Arc::new(arus_connectors::store::MemoryStore::new());
    let report = arus_jobs::eligibility::job::run_on_log(
        log.clone(),
        &arus_jobs::runtime::Cluster::Local { workers: 2 },
        store.clone(),
    )?;
    out!(
        "eligibility (2 timely workers): {} member and plan events materialized into the embedded store in {:.2?}; \
         the first requests on eligibility.requests, answered from the store:",
        thousands(report.events),
        report.elapsed
    );
    let mut example = None;
    for record in log.fetch("eligibility.requests", 0, 0, 4)? {
        let Event::EligibilityRequested(request) = wire::decode(&record.value)? else { continue };
        example.get_or_insert_with(|| (request.member_id.clone(), request.service_date));
        let answer = arus_connectors::store::read::eligibility(
            &*store,
            &request.member_id,
            request.service_date,
            &request.service_type,
        )?;
        let detail = match (&answer.plan_id, answer.coverage_start, &answer.reason) {
            (Some(plan), Some(start), None) => format!("under {plan}, covered since {start}"),
            (_, _, Some(reason)) => reason.clone(),
            _ => String::new(),
        };
        out!(
            "  {} member {} on {} for {}: {:?} {}{}",
            request.request_id,
            request.member_id,
            request.service_date,
            request.service_type,
            answer.status,
            detail,
            if answer.requires_prior_auth { " (needs prior authorization)" } else { "" }
        );
    }
    Ok((store, example))
}
