//! The analytics job: adjudicated claim lines (`ClaimAdjudicated` on `claims.events`),
//! payments, accumulator snapshots, fraud alerts, and the provider and member dimensions (no
//! personal data) streamed into ClickHouse (`deploy/clickhouse/`). Every worker reads its share of the partitions, turns
//! events into rows and inserts them in batches; the tables are ReplacingMergeTree keyed by the
//! row's identity, so a replay — a rerun after a crash — writes rows that merge away, and the
//! queries (with `FINAL`) count each once: totals never double.

pub mod spec;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arus_connectors::clickhouse::ClickHouse;
use arus_operators::Time;
use arus_schemas::events::ClaimAdjudicated;
use arus_schemas::topics::names::{
    ACCUMULATOR_UPDATES, CLAIMS_EVENTS, FRAUD_ALERTS, MEMBER_EVENTS, PAYMENT_EVENTS, PROVIDER_EVENTS,
};
use arus_schemas::{Date, Event};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Operator;
use timely::dataflow::operators::generic::operator::source;

use crate::runtime::input::{open_inputs, open_readers, read_events};
use crate::runtime::sinks::DeadLetterTopics;
use crate::runtime::{RunContext, RunError, Shared, fail, finish, timely_config};
use spec::AnalyticsSpec;

/// The topics the job reads.
pub const TOPICS: [&str; 6] =
    [PROVIDER_EVENTS, MEMBER_EVENTS, CLAIMS_EVENTS, PAYMENT_EVENTS, ACCUMULATOR_UPDATES, FRAUD_ALERTS];

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

/// A row of `payments`.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct PaymentRow {
    /// The payment event.
    pub event_id: String,
    /// Payment.
    pub payment_id: String,
    /// Claim.
    pub claim_id: String,
    /// INITIATED, COMPLETED or FAILED.
    pub kind: String,
    /// Day of the event.
    pub event_date: u16,
    /// Amount.
    pub amount_idr: i64,
    /// The bank's failure code ("" unless failed).
    pub failure_code: String,
    /// Replacing version: the event time.
    pub version: u64,
}

/// The columns of `payments`.
pub const PAYMENT_COLUMNS: [(&str, &str); 8] = [
    ("event_id", "String"),
    ("payment_id", "String"),
    ("claim_id", "String"),
    ("kind", "String"),
    ("event_date", "Date"),
    ("amount_idr", "Int64"),
    ("failure_code", "String"),
    ("version", "UInt64"),
];

/// A row of `accumulator_snapshots`.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct AccumulatorRow {
    /// Member.
    pub member_id: String,
    /// Year.
    pub plan_year: i32,
    /// The update's version.
    pub version: i64,
    /// Family.
    pub family_id: String,
    /// Plan.
    pub plan_id: String,
    /// Day of the cause.
    pub snapshot_date: u16,
    /// Member's deductible met.
    pub deductible_met_idr: i64,
    /// Member's out-of-pocket met.
    pub oop_met_idr: i64,
    /// Family's deductible met.
    pub family_deductible_met_idr: i64,
    /// Family's out-of-pocket met.
    pub family_oop_met_idr: i64,
    /// Plan paid to date.
    pub plan_paid_to_date_idr: i64,
    /// Claim involved ("" when none).
    pub claim_id: String,
    /// Paid out by completed payments to date (0 from version-1 updates).
    pub paid_to_date_idr: i64,
}

/// The columns of `accumulator_snapshots`.
pub const ACCUMULATOR_COLUMNS: [(&str, &str); 13] = [
    ("member_id", "String"),
    ("plan_year", "Int32"),
    ("version", "Int64"),
    ("family_id", "String"),
    ("plan_id", "String"),
    ("snapshot_date", "Date"),
    ("deductible_met_idr", "Int64"),
    ("oop_met_idr", "Int64"),
    ("family_deductible_met_idr", "Int64"),
    ("family_oop_met_idr", "Int64"),
    ("plan_paid_to_date_idr", "Int64"),
    ("claim_id", "String"),
    ("paid_to_date_idr", "Int64"),
];

/// A row of `members`: no personal data.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct MemberRow {
    /// Member.
    pub member_id: String,
    /// Family.
    pub family_id: String,
    /// SUBSCRIBER, SPOUSE, CHILD.
    pub relationship: String,
    /// BPS province code.
    pub province_code: String,
    /// BPS regency code.
    pub regency_code: String,
    /// MALE or FEMALE.
    pub sex: String,
    /// Year of birth.
    pub birth_year: i32,
    /// Replacing version: the event time.
    pub version: u64,
}

/// The columns of `members`.
pub const MEMBER_COLUMNS: [(&str, &str); 8] = [
    ("member_id", "String"),
    ("family_id", "String"),
    ("relationship", "String"),
    ("province_code", "String"),
    ("regency_code", "String"),
    ("sex", "String"),
    ("birth_year", "Int32"),
    ("version", "UInt64"),
];

/// A row of `fraud_alerts`.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct FraudAlertRow {
    /// Alert.
    pub alert_id: String,
    /// RAISED or WITHDRAWN.
    pub status: String,
    /// The alert event.
    pub event_id: String,
    /// Day of the alert.
    pub alert_date: u16,
    /// PROVIDER or MEMBER.
    pub subject_type: String,
    /// Provider or member.
    pub subject_id: String,
    /// LOW … CRITICAL.
    pub severity: String,
    /// The first rule hit's pattern ("MODEL" when only the model fired).
    pub pattern: String,
    /// Rules that fired.
    pub rules: Vec<String>,
    /// Model version ("" without a model).
    pub model_version: String,
    /// Model score.
    pub score: Option<f64>,
    /// Claims involved.
    pub claim_ids: Vec<String>,
    /// Replacing version: the event time.
    pub version: u64,
}

/// The columns of `fraud_alerts`.
pub const FRAUD_ALERT_COLUMNS: [(&str, &str); 13] = [
    ("alert_id", "String"),
    ("status", "String"),
    ("event_id", "String"),
    ("alert_date", "Date"),
    ("subject_type", "String"),
    ("subject_id", "String"),
    ("severity", "String"),
    ("pattern", "String"),
    ("rules", "Array(String)"),
    ("model_version", "String"),
    ("score", "Nullable(Float64)"),
    ("claim_ids", "Array(String)"),
    ("version", "UInt64"),
];

fn day(at: arus_schemas::Timestamp) -> u16 {
    u16::try_from(at.date().0.max(0)).unwrap_or(u16::MAX)
}

fn version(at: arus_schemas::Timestamp) -> u64 {
    at.0.max(0) as u64
}

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

/// The columns of `claims_daily` (filled by [`recompute_daily`], not written as rows).
pub const CLAIMS_DAILY_COLUMNS: [(&str, &str); 12] = [
    ("decided_date", "Date"),
    ("provider_id", "String"),
    ("plan_id", "String"),
    ("status", "String"),
    ("claims", "UInt64"),
    ("lines", "UInt64"),
    ("denied_lines", "UInt64"),
    ("billed_idr", "Int64"),
    ("allowed_idr", "Int64"),
    ("member_share_idr", "Int64"),
    ("plan_paid_idr", "Int64"),
    ("version", "UInt64"),
];

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
    /// Payment, accumulator, member and alert rows inserted.
    pub other_rows: u64,
    /// Insert statements.
    pub inserts: u64,
    /// The first and last day of decision among the claim lines written (days since 1970).
    pub days: Option<(u16, u16)>,
    /// Wall-clock time.
    pub elapsed: Duration,
}

/// What the source hands the inserting sink.
enum RowOf {
    Line(ClaimLineRow),
    Provider(ProviderRow),
    Payment(PaymentRow),
    Accumulator(AccumulatorRow),
    Member(MemberRow),
    Alert(FraudAlertRow),
}

/// The rows an event gives.
fn rows_of(event: Event) -> Vec<RowOf> {
    let payment =
        |event_id: String, payment_id: String, claim_id: String, kind: &str, at, amount: i64, code: String| {
            RowOf::Payment(PaymentRow {
                event_id,
                payment_id,
                claim_id,
                kind: kind.to_owned(),
                event_date: day(at),
                amount_idr: amount,
                failure_code: code,
                version: version(at),
            })
        };
    match event {
        Event::ClaimAdjudicated(a) => claim_line_rows(&a).into_iter().map(RowOf::Line).collect(),
        Event::ProviderOnboarded(p) => vec![RowOf::Provider(ProviderRow {
            provider_id: p.provider_id,
            provider_type: format!("{:?}", p.provider_type),
            province_code: p.province_code,
            regency_code: p.regency_code,
            city: p.city,
            network_status: format!("{:?}", p.network_status),
            version: version(p.event_time),
        })],
        Event::MemberCreated(m) => vec![RowOf::Member(MemberRow {
            member_id: m.member_id,
            family_id: m.family_id,
            relationship: format!("{:?}", m.relationship),
            province_code: m.province_code,
            regency_code: m.regency_code,
            sex: format!("{:?}", m.sex),
            birth_year: m.date_of_birth.year(),
            version: version(m.event_time),
        })],
        Event::PaymentInitiated(p) => {
            vec![payment(
                p.event_id,
                p.payment_id,
                p.claim_id,
                "INITIATED",
                p.event_time,
                p.amount_idr.0,
                String::new(),
            )]
        }
        Event::PaymentCompleted(p) => {
            vec![payment(
                p.event_id,
                p.payment_id,
                p.claim_id,
                "COMPLETED",
                p.event_time,
                p.amount_idr.0,
                String::new(),
            )]
        }
        Event::PaymentFailed(p) => {
            vec![payment(p.event_id, p.payment_id, p.claim_id, "FAILED", p.event_time, p.amount_idr.0, p.failure_code)]
        }
        Event::AccumulatorUpdated(u) => vec![RowOf::Accumulator(AccumulatorRow {
            member_id: u.member_id,
            plan_year: u.plan_year,
            version: u.version,
            family_id: u.family_id,
            plan_id: u.plan_id,
            snapshot_date: day(u.event_time),
            deductible_met_idr: u.deductible_met_idr.0,
            oop_met_idr: u.oop_met_idr.0,
            family_deductible_met_idr: u.family_deductible_met_idr.0,
            family_oop_met_idr: u.family_oop_met_idr.0,
            plan_paid_to_date_idr: u.plan_paid_to_date_idr.0,
            claim_id: u.claim_id.unwrap_or_default(),
            paid_to_date_idr: u.paid_to_date_idr.0,
        })],
        Event::FraudAlert(a) => vec![RowOf::Alert(FraudAlertRow {
            pattern: a.rule_hits.first().map_or_else(|| "MODEL".to_owned(), |h| h.pattern.clone()),
            rules: a.rule_hits.iter().map(|h| h.rule.clone()).collect(),
            alert_id: a.alert_id,
            status: format!("{:?}", a.status),
            event_id: a.event_id,
            alert_date: day(a.event_time),
            subject_type: format!("{:?}", a.subject_type),
            subject_id: a.subject_id,
            severity: format!("{:?}", a.severity),
            model_version: a.model_version.unwrap_or_default(),
            score: a.score,
            claim_ids: a.claim_ids,
            version: version(a.event_time),
        })],
        _ => Vec::new(),
    }
}

/// Rows waiting to be inserted, per table.
#[derive(Default)]
struct Pending {
    lines: Vec<ClaimLineRow>,
    providers: Vec<ProviderRow>,
    payments: Vec<PaymentRow>,
    accumulators: Vec<AccumulatorRow>,
    members: Vec<MemberRow>,
    alerts: Vec<FraudAlertRow>,
}

/// Inserts `rows` into `table` when there are `batch` of them, or any at all once `done`;
/// how many went in.
fn flush<T>(
    clickhouse: &ClickHouse,
    table: &str,
    rows: &mut Vec<T>,
    batch: usize,
    done: bool,
    report: &mut AnalyticsReport,
) -> Result<u64, RunError>
where
    T: clickhouse::Row + Serialize + for<'b> clickhouse::Row<Value<'b> = T> + 'static,
{
    let due = rows.len() >= batch || (done && !rows.is_empty());
    if !due {
        return Ok(0);
    }
    clickhouse.insert(table, rows, INSERT_ATTEMPTS).map_err(clickhouse_error)?;
    report.inserts += 1;
    let n = rows.len() as u64;
    rows.clear();
    Ok(n)
}

fn clickhouse_error(e: arus_connectors::clickhouse::ClickHouseError) -> RunError {
    RunError::ClickHouse(e.to_string())
}

/// Checks the tables match the rows (a clear error naming the column when not).
pub fn check_tables(clickhouse: &ClickHouse) -> Result<(), RunError> {
    for (table, columns) in [
        ("claim_lines", &CLAIM_LINE_COLUMNS[..]),
        ("providers", &PROVIDER_COLUMNS[..]),
        ("payments", &PAYMENT_COLUMNS[..]),
        ("accumulator_snapshots", &ACCUMULATOR_COLUMNS[..]),
        ("members", &MEMBER_COLUMNS[..]),
        ("fraud_alerts", &FRAUD_ALERT_COLUMNS[..]),
        ("claims_daily", &CLAIMS_DAILY_COLUMNS[..]),
    ] {
        clickhouse.check_columns(table, columns).map_err(clickhouse_error)?;
    }
    Ok(())
}

/// Runs the job until its input ends or `context` asks it to stop (rows inserted counted per
/// table in its metrics, as sink lines).
pub fn run(spec: &AnalyticsSpec, context: &RunContext) -> Result<AnalyticsReport, RunError> {
    let (cluster, metrics, shutdown) = (&context.cluster, context.metrics.clone(), context.shutdown.clone());
    let leader = ClickHouse::connect(&spec.clickhouse.url, &spec.clickhouse.database).map_err(clickhouse_error)?;
    check_tables(&leader)?;
    let inputs = open_inputs(&spec.source, &TOPICS)?;
    let letters = DeadLetterTopics::of(&inputs)?;
    let worker_letters = letters.clone();
    let inputs = Arc::new(inputs);
    let (config, _) = timely_config(cluster);
    let shared = Arc::new(Mutex::new(Shared::<AnalyticsReport>::default()));
    let started = Instant::now();
    let worker_shared = shared.clone();
    let target = spec.clickhouse.clone();
    let guards = timely::execute(config, move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let shared = worker_shared.clone();
        let (source_metrics, metrics, shutdown) = (metrics.clone(), metrics.clone(), shutdown.clone());
        let letters = worker_letters.clone();
        let (mut readers, _) = open_readers(&inputs, index, peers, BATCH, &[], &shared);
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
                    if shutdown.requested() {
                        capability = None; // stopped: the input ends here
                    }
                    let Some(cap) = capability.as_mut() else { return };
                    let mut events = 0;
                    let failed = {
                        let mut session = output.session(&*cap);
                        // Records that are not events of the contract are passed over (to
                        // their topic's dead-letter topic).
                        let read = read_events(&mut readers, BATCH, &shared, letters.as_deref(), |_, _, _, event| {
                            events += 1;
                            for row in rows_of(event) {
                                session.give(row);
                            }
                        });
                        source_metrics.events_read(events, read.unwrap_or(0));
                        read.is_none()
                    };
                    if failed || readers.iter().all(|r| r.finished()) {
                        capability = None;
                    } else {
                        let next = *cap.time() + 1;
                        cap.downgrade(&next);
                        activator.activate();
                    }
                }
            });
            let mut pending = Pending::default();
            let mut report = AnalyticsReport::default();
            rows.sink(Pipeline, "ClickHouseInsert", move |(input, frontier)| {
                input.for_each(|_, data: &mut Vec<RowOf>| {
                    for row in data.drain(..) {
                        match row {
                            RowOf::Line(row) => {
                                let day = row.decided_date;
                                report.days = Some(report.days.map_or((day, day), |(a, b)| (a.min(day), b.max(day))));
                                pending.lines.push(row);
                            }
                            RowOf::Provider(row) => pending.providers.push(row),
                            RowOf::Payment(row) => pending.payments.push(row),
                            RowOf::Accumulator(row) => pending.accumulators.push(row),
                            RowOf::Member(row) => pending.members.push(row),
                            RowOf::Alert(row) => pending.alerts.push(row),
                        }
                    }
                });
                let done = frontier.is_empty();
                let Some(clickhouse) = clickhouse.as_ref() else { return };
                let mut insert = || -> Result<(), RunError> {
                    let (b, r) = (batch_rows, &mut report);
                    let counted = |table: &'static str, rows: u64| {
                        metrics.sink_lines(table, rows);
                        rows
                    };
                    let lines = flush(clickhouse, "claim_lines", &mut pending.lines, b, done, r)?;
                    r.claim_lines += counted("claim_lines", lines);
                    let providers = flush(clickhouse, "providers", &mut pending.providers, b, done, r)?;
                    r.providers += counted("providers", providers);
                    let payments = flush(clickhouse, "payments", &mut pending.payments, b, done, r)?;
                    r.other_rows += counted("payments", payments);
                    let accumulators =
                        flush(clickhouse, "accumulator_snapshots", &mut pending.accumulators, b, done, r)?;
                    r.other_rows += counted("accumulator_snapshots", accumulators);
                    let members = flush(clickhouse, "members", &mut pending.members, b, done, r)?;
                    r.other_rows += counted("members", members);
                    let alerts = flush(clickhouse, "fraud_alerts", &mut pending.alerts, b, done, r)?;
                    r.other_rows += counted("fraud_alerts", alerts);
                    Ok(())
                };
                if let Err(error) = insert() {
                    fail(&shared, error);
                }
                if done {
                    let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
                    shared.report.claim_lines += report.claim_lines;
                    shared.report.providers += report.providers;
                    shared.report.other_rows += report.other_rows;
                    shared.report.inserts += report.inserts;
                    if let Some((a, b)) = report.days {
                        shared.report.days = Some(shared.report.days.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
                    }
                    report = AnalyticsReport::default();
                }
            });
        });
        while worker.step_or_park(None) {}
    })
    .map_err(RunError::Timely)?;
    let mut report = finish(guards, shared)?;
    if let Some(letters) = &letters {
        letters.flush()?;
    }
    if let Some((first, last)) = report.days {
        let version =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        recompute_daily(&leader, date_of(first), date_of(last), version)?;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Recomputes the daily aggregates (`claims_daily`, `denials_daily`) of the days from `first`
/// to `last` from the deduplicated claim lines, every row at `version` (higher than any before).
pub fn recompute_daily(clickhouse: &ClickHouse, first: Date, last: Date, version: u64) -> Result<(), RunError> {
    // A week at a time: the FINAL read and the grouping of a whole year at once can pass the
    // server's memory limit for a query.
    let mut start = first;
    while start <= last {
        let end = start.add_days(6).min(last);
        recompute_days(clickhouse, start, end, version)?;
        start = end.add_days(1);
    }
    Ok(())
}

fn recompute_days(clickhouse: &ClickHouse, first: Date, last: Date, version: u64) -> Result<(), RunError> {
    let range = "decided_date >= toDate(?) AND decided_date <= toDate(?)";
    let (from, to, version) = (first.to_string(), last.to_string(), version.to_string());
    clickhouse
        .run(
            &format!(
                "INSERT INTO claims_daily SELECT decided_date, provider_id, plan_id, status, uniqExact(claim_id), count(), \
                 countIf(allowed_idr = 0), sum(billed_idr), sum(allowed_idr), \
                 sum(deductible_idr + copay_idr + coinsurance_idr), sum(plan_paid_idr), toUInt64(?) \
                 FROM claim_lines FINAL WHERE {range} GROUP BY decided_date, provider_id, plan_id, status"
            ),
            &[&version, &from, &to],
        )
        .map_err(clickhouse_error)?;
    clickhouse
        .run(
            &format!(
                "INSERT INTO denials_daily SELECT decided_date, carc, count(), sum(billed_idr), toUInt64(?) \
                 FROM claim_lines FINAL ARRAY JOIN carcs AS carc WHERE {range} AND allowed_idr = 0 \
                 GROUP BY decided_date, carc"
            ),
            &[&version, &from, &to],
        )
        .map_err(clickhouse_error)
}
