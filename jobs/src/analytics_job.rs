//! The analytics job: adjudicated claim lines (`ClaimAdjudicated` on `claims.events`) and the
//! provider dimension (`ProviderOnboarded`, `ContractUpdated` on `provider.events`) streamed into
//! ClickHouse (`deploy/clickhouse/`). Every worker reads its share of the partitions, turns
//! events into rows and inserts them in batches; the tables are ReplacingMergeTree keyed by the
//! row's identity, so a replay — a rerun after a crash — writes rows that merge away, and the
//! queries (with `FINAL`) count each once: totals never double.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arus_connectors::clickhouse::ClickHouse;
use arus_operators::Time;
use arus_schemas::events::ClaimAdjudicated;
use arus_schemas::{Date, Event, wire};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Operator;
use timely::dataflow::operators::generic::operator::source;

use crate::eligibility_job::open_inputs;
use crate::runner::{ClaimReader, Cluster, RunError, timely_config};
use crate::spec::AnalyticsSpec;

/// The topics the job reads.
pub const TOPICS: [&str; 2] = ["provider.events", "claims.events"];

/// Records read per reader per step.
const BATCH: usize = 4_096;

/// Attempts per insert while the server does not answer.
const INSERT_ATTEMPTS: u32 = 8;

/// A row of `claim_lines`.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct ClaimLineRow {
    /// Claim.
    pub claim_id: String,
    /// Line.
    pub line_number: i32,
    /// The decision's event id.
    pub event_id: String,
    /// Member.
    pub member_id: String,
    /// Provider.
    pub provider_id: String,
    /// Plan applied ("" when none).
    pub plan_id: String,
    /// The claim's status.
    pub status: String,
    /// Day of the decision's event time, days since 1970-01-01 (ClickHouse `Date`).
    pub decided_date: u16,
    /// Billed.
    pub billed_idr: i64,
    /// Allowed.
    pub allowed_idr: i64,
    /// Deductible.
    pub deductible_idr: i64,
    /// Copay.
    pub copay_idr: i64,
    /// Coinsurance.
    pub coinsurance_idr: i64,
    /// Plan paid.
    pub plan_paid_idr: i64,
    /// Adjustments as `GROUP-CARC`.
    pub carcs: Vec<String>,
    /// Replacing version: the decision's event time.
    pub version: u64,
}

/// The columns of `claim_lines`, as the row writes them.
pub const CLAIM_LINE_COLUMNS: [(&str, &str); 16] = [
    ("claim_id", "String"),
    ("line_number", "Int32"),
    ("event_id", "String"),
    ("member_id", "String"),
    ("provider_id", "String"),
    ("plan_id", "String"),
    ("status", "String"),
    ("decided_date", "Date"),
    ("billed_idr", "Int64"),
    ("allowed_idr", "Int64"),
    ("deductible_idr", "Int64"),
    ("copay_idr", "Int64"),
    ("coinsurance_idr", "Int64"),
    ("plan_paid_idr", "Int64"),
    ("carcs", "Array(String)"),
    ("version", "UInt64"),
];

/// A row of `providers`.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct ProviderRow {
    /// Provider.
    pub provider_id: String,
    /// HOSPITAL, CLINIC, LAB, PHARMACY ("" until onboarded).
    pub provider_type: String,
    /// BPS province code.
    pub province_code: String,
    /// BPS regency code.
    pub regency_code: String,
    /// City.
    pub city: String,
    /// IN_NETWORK or OUT_OF_NETWORK.
    pub network_status: String,
    /// Replacing version: the event time.
    pub version: u64,
}

/// The columns of `providers`.
pub const PROVIDER_COLUMNS: [(&str, &str); 7] = [
    ("provider_id", "String"),
    ("provider_type", "String"),
    ("province_code", "String"),
    ("regency_code", "String"),
    ("city", "String"),
    ("network_status", "String"),
    ("version", "UInt64"),
];

/// The rows of a decision, one per line.
pub fn claim_line_rows(a: &ClaimAdjudicated) -> Vec<ClaimLineRow> {
    let day = u16::try_from(a.event_time.date().0.max(0)).unwrap_or(u16::MAX);
    a.lines
        .iter()
        .map(|l| ClaimLineRow {
            claim_id: a.claim_id.clone(),
            line_number: l.line_number,
            event_id: a.event_id.clone(),
            member_id: a.member_id.clone(),
            provider_id: a.provider_id.clone(),
            plan_id: a.plan_id.clone().unwrap_or_default(),
            status: format!("{:?}", a.status),
            decided_date: day,
            billed_idr: l.billed_idr.0,
            allowed_idr: l.allowed_idr.0,
            deductible_idr: l.deductible_idr.0,
            copay_idr: l.copay_idr.0,
            coinsurance_idr: l.coinsurance_idr.0,
            plan_paid_idr: l.plan_paid_idr.0,
            carcs: l.adjustments.iter().map(|x| format!("{:?}-{}", x.group, x.carc)).collect(),
            version: a.event_time.0.max(0) as u64,
        })
        .collect()
}

/// A ClickHouse `Date` (days since 1970) as a date.
pub fn date_of(day: u16) -> Date {
    Date(i32::from(day))
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnalyticsReport {
    /// Claim-line rows inserted.
    pub claim_lines: u64,
    /// Provider rows inserted.
    pub providers: u64,
    /// Insert statements.
    pub inserts: u64,
    /// Wall-clock time.
    pub elapsed: Duration,
}

#[derive(Default)]
struct Shared {
    report: AnalyticsReport,
    error: Option<RunError>,
}

fn fail(shared: &Mutex<Shared>, error: RunError) {
    shared.lock().unwrap_or_else(|e| e.into_inner()).error.get_or_insert(error);
}

/// What the source hands the inserting sink.
enum RowOf {
    Line(ClaimLineRow),
    Provider(ProviderRow),
}

fn clickhouse_error(e: arus_connectors::clickhouse::ClickHouseError) -> RunError {
    RunError::Unsupported(e.to_string())
}

/// Checks the tables match the rows (a clear error naming the column when not).
pub fn check_tables(clickhouse: &ClickHouse) -> Result<(), RunError> {
    clickhouse.check_columns("claim_lines", &CLAIM_LINE_COLUMNS).map_err(clickhouse_error)?;
    clickhouse.check_columns("providers", &PROVIDER_COLUMNS).map_err(clickhouse_error)
}

/// Runs the job.
pub fn run(spec: &AnalyticsSpec, cluster: &Cluster) -> Result<AnalyticsReport, RunError> {
    let check = ClickHouse::connect(&spec.clickhouse.url, &spec.clickhouse.database).map_err(clickhouse_error)?;
    check_tables(&check)?;
    drop(check);
    let inputs = Arc::new(open_inputs(&spec.source, &TOPICS)?);
    let (config, _) = timely_config(cluster);
    let shared = Arc::new(Mutex::new(Shared::default()));
    let started = Instant::now();
    let worker_shared = shared.clone();
    let target = spec.clickhouse.clone();
    let guards = timely::execute(config, move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let shared = worker_shared.clone();
        let mut readers: Vec<Box<dyn ClaimReader>> = Vec::new();
        for input in inputs.iter() {
            match input.reader(index, peers, BATCH, None) {
                Ok(Some(reader)) => readers.push(reader),
                Ok(None) => {}
                Err(error) => fail(&shared, error),
            }
        }
        let clickhouse = match ClickHouse::connect(&target.url, &target.database) {
            Ok(c) => Some(c),
            Err(e) => {
                fail(&shared, clickhouse_error(e));
                None
            }
        };
        let batch_rows = target.batch_rows;
        worker.dataflow::<Time, _, _>(|scope| {
            let source_shared = shared.clone();
            let rows = source(scope, "AnalyticsSource", move |capability, info| {
                let activator = scope.activator_for(info.address);
                let mut capability = (!readers.is_empty()).then_some(capability);
                let shared = source_shared;
                move |output| {
                    let Some(cap) = capability.as_mut() else { return };
                    let mut failed = false;
                    {
                        let mut session = output.session(&*cap);
                        'readers: for reader in readers.iter_mut() {
                            for _ in 0..BATCH {
                                match reader.next_record() {
                                    Ok(Some((_, bytes))) => match wire::decode(bytes) {
                                        Ok(Event::ClaimAdjudicated(a)) => {
                                            for row in claim_line_rows(&a) {
                                                session.give(RowOf::Line(row));
                                            }
                                        }
                                        Ok(Event::ProviderOnboarded(p)) => session.give(RowOf::Provider(ProviderRow {
                                            provider_id: p.provider_id,
                                            provider_type: format!("{:?}", p.provider_type),
                                            province_code: p.province_code,
                                            regency_code: p.regency_code,
                                            city: p.city,
                                            network_status: format!("{:?}", p.network_status),
                                            version: p.event_time.0.max(0) as u64,
                                        })),
                                        _ => {}
                                    },
                                    Ok(None) => break,
                                    Err(error) => {
                                        fail(&shared, error);
                                        failed = true;
                                        break 'readers;
                                    }
                                }
                            }
                        }
                    }
                    if failed || readers.iter().all(|r| r.finished()) {
                        capability = None;
                    } else {
                        let next = *cap.time() + 1;
                        cap.downgrade(&next);
                        activator.activate();
                    }
                }
            });
            let (mut lines, mut providers): (Vec<ClaimLineRow>, Vec<ProviderRow>) = (Vec::new(), Vec::new());
            let mut report = AnalyticsReport::default();
            rows.sink(Pipeline, "ClickHouseInsert", move |(input, frontier)| {
                input.for_each(|_, data: &mut Vec<RowOf>| {
                    for row in data.drain(..) {
                        match row {
                            RowOf::Line(row) => lines.push(row),
                            RowOf::Provider(row) => providers.push(row),
                        }
                    }
                });
                let done = frontier.is_empty();
                let Some(clickhouse) = clickhouse.as_ref() else { return };
                if lines.len() >= batch_rows || (done && !lines.is_empty()) {
                    match clickhouse.insert("claim_lines", &lines, INSERT_ATTEMPTS) {
                        Ok(()) => {
                            report.claim_lines += lines.len() as u64;
                            report.inserts += 1;
                        }
                        Err(e) => fail(&shared, clickhouse_error(e)),
                    }
                    lines.clear();
                }
                if providers.len() >= batch_rows || (done && !providers.is_empty()) {
                    match clickhouse.insert("providers", &providers, INSERT_ATTEMPTS) {
                        Ok(()) => {
                            report.providers += providers.len() as u64;
                            report.inserts += 1;
                        }
                        Err(e) => fail(&shared, clickhouse_error(e)),
                    }
                    providers.clear();
                }
                if done {
                    let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
                    shared.report.claim_lines += report.claim_lines;
                    shared.report.providers += report.providers;
                    shared.report.inserts += report.inserts;
                    report = AnalyticsReport::default();
                }
            });
        });
        while worker.step_or_park(None) {}
    })
    .map_err(RunError::Timely)?;
    drop(guards);
    let mut shared =
        Arc::try_unwrap(shared).ok().expect("workers finished").into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(error) = shared.error.take() {
        return Err(error);
    }
    shared.report.elapsed = started.elapsed();
    Ok(shared.report)
}
