//! The adjudication job: every claim decided in event-time order by the [`Adjudicator`]
//! (through the sequenced runtime, [`crate::runtime::sequenced`]), its decisions and
//! `ClaimPaid` to `claims.events`, accumulator updates to `accumulator.updates`, and each
//! claim's, accumulator's and authorization's record to the store (`claim:<id>`,
//! `acc:<member>:<year>`, `auth:<id>`), versioned. The fold can be spread over threads by
//! family (`fold_threads`, [`super::shards`]).

use std::sync::Arc;

use arus_connectors::embedded::EmbeddedLog;
use arus_connectors::store::StateStore;
use arus_schemas::Event;
use arus_schemas::topics::names::{
    ACCUMULATOR_UPDATES, AUTH_EVENTS, BENEFIT_EVENTS, CLAIMS_EVENTS, MEMBER_EVENTS, PAYMENT_EVENTS, PROVIDER_EVENTS,
};

use super::spec::AdjudicationSpec;
use super::{Adjudicator, accumulator_key, authorization_key, decision_key, state_key};
use crate::runtime::metrics::Metrics;
use crate::runtime::sequenced::{
    Fold, READING, Sequenced, SequencedReport, Writes, record, run_fold_on_log, run_sequenced,
};
use crate::runtime::snapshot::{SnapshotSettings, from_bytes, to_bytes};
use crate::runtime::{Cluster, RunContext, RunError, Shutdown};

/// What a run of the job did.
pub type AdjudicationReport = SequencedReport;

/// The topics the job reads.
pub const TOPICS: [&str; 6] =
    [BENEFIT_EVENTS, PROVIDER_EVENTS, MEMBER_EVENTS, AUTH_EVENTS, CLAIMS_EVENTS, PAYMENT_EVENTS];

/// The topics the adjudication job writes.
pub const OUTPUT_TOPICS: [&str; 2] = [CLAIMS_EVENTS, ACCUMULATOR_UPDATES];

/// Threads the decisions are folded on by default: one. On this project's 2-core machines a
/// second fold thread measured no faster (the fold is about a quarter of the job's CPU; the
/// decoding, ordering and writing share the same two cores — benches/README.md); `fold_threads`
/// spreads families over more where there are cores for them.
pub const FOLD_THREADS: usize = 1;

/// The adjudication fold over `threads` shards of families.
pub(crate) fn adjudication_fold(threads: usize) -> Result<Box<dyn Fold>, RunError> {
    adjudication_fold_keeping(threads, crate::runtime::seen::DEDUP_HORIZON_MS)
}

/// [`adjudication_fold`], event ids kept `horizon_ms` of event time for dropping duplicates.
pub(crate) fn adjudication_fold_keeping(threads: usize, horizon_ms: i64) -> Result<Box<dyn Fold>, RunError> {
    if !(1..=16).contains(&threads) {
        return Err(RunError::Invalid(format!("fold_threads is {threads}: it must be 1 to 16")));
    }
    if threads == 1 {
        return Ok(Box::new(AdjudicationFold::keeping(horizon_ms)));
    }
    Ok(Box::new(super::shards::Sharded::new(threads, move || Box::new(AdjudicationFold::keeping(horizon_ms)))?))
}

/// Runs the job with the store the spec names, until its input ends or `context` asks it to
/// stop.
pub fn run(spec: &AdjudicationSpec, context: &RunContext) -> Result<AdjudicationReport, RunError> {
    let lateness = spec.out_of_orderness.ms();
    let fold = adjudication_fold_keeping(spec.fold_threads, spec.dedup_horizon.ms() as i64)?;
    let (metrics, shutdown) = (context.metrics.clone(), context.shutdown.clone());
    let snapshots = spec.checkpoint.as_ref().map(|checkpoint| {
        // (The fold threads too: families are spread over them by a hash of their id.)
        let identity = format!(
            "adjudication of {}, fold_threads {}",
            spec.source.topic_names(&TOPICS).join(", "),
            spec.fold_threads
        );
        SnapshotSettings::of(checkpoint, identity)
    });
    let job = Sequenced { topics: &TOPICS, outputs: &OUTPUT_TOPICS, fold, metrics, shutdown, snapshots };
    run_sequenced(&spec.source, &spec.store, lateness, job, &context.cluster)
}

/// Runs the job over topics of a log this process already has (as `arus demo` does), writing
/// the decisions back to it.
pub fn run_on_log(
    log: Arc<EmbeddedLog>,
    cluster: &Cluster,
    store: Arc<dyn StateStore>,
) -> Result<AdjudicationReport, RunError> {
    run_on_log_folding(log, cluster, store, FOLD_THREADS)
}

/// [`run_on_log`] with the decisions folded on `fold_threads` threads.
pub fn run_on_log_folding(
    log: Arc<EmbeddedLog>,
    cluster: &Cluster,
    store: Arc<dyn StateStore>,
    fold_threads: usize,
) -> Result<AdjudicationReport, RunError> {
    let fold = adjudication_fold(fold_threads)?;
    let metrics = Arc::new(Metrics::new("adjudication"));
    let job = Sequenced {
        topics: &TOPICS,
        outputs: &OUTPUT_TOPICS,
        fold,
        metrics,
        shutdown: Shutdown::new(),
        snapshots: None,
    };
    run_fold_on_log(log, cluster, store, job, READING)
}

/// The adjudicator, and the records of claims, accumulators and authorizations it keeps.
#[derive(Default)]
struct AdjudicationFold {
    adjudicator: Adjudicator,
}

impl AdjudicationFold {
    /// Event ids kept `horizon_ms` of event time.
    fn keeping(horizon_ms: i64) -> Self {
        let mut adjudicator = Adjudicator::default();
        adjudicator.set_dedup_horizon(horizon_ms);
        AdjudicationFold { adjudicator }
    }
}

impl Fold for AdjudicationFold {
    fn apply(&mut self, event: &Event, writes: &mut Writes) -> Result<Vec<Event>, RunError> {
        // In event-time order (late events aside): ids older than the horizon go.
        self.adjudicator.advance(event.event_time().0);
        let decided = self.adjudicator.apply(event);
        for out in &decided {
            if let Event::AccumulatorUpdated(u) = out
                && let Some(acc) = self.adjudicator.accumulators(&u.member_id, u.plan_year)
            {
                record(writes, accumulator_key(&u.member_id, u.plan_year), acc.version as u64, acc.clone());
            }
        }
        // A payment's paid-to-date.
        if let Event::PaymentCompleted(p) = event
            && let Some((member, year)) = self.adjudicator.payment_year(&p.claim_id)
            && let Some(acc) = self.adjudicator.accumulators(member, year)
        {
            record(writes, accumulator_key(member, year), acc.version as u64, acc.clone());
        }
        // The authorization's record, when the event is one's, or a claim that used one.
        let auth_id = match event {
            Event::AuthRequested(a) => Some(&a.auth_id),
            Event::AuthApproved(a) => Some(&a.auth_id),
            Event::AuthDenied(a) => Some(&a.auth_id),
            _ => None,
        };
        // The authorization a submitted claim's decision used (the decision itself goes to the
        // store as its wire bytes: `stored_as`).
        let mut used = None;
        for out in &decided {
            if let Event::ClaimAdjudicated(a) = out
                && matches!(event, Event::ClaimSubmitted(c) if c.claim_id == a.claim_id)
            {
                used = a.auth_id.clone();
            }
        }
        for auth_id in auth_id.cloned().into_iter().chain(used) {
            if let Some(view) = self.adjudicator.authorization(&auth_id) {
                // Versioned by what changes it: its status, then the units used.
                let version = match view.status.as_str() {
                    "REQUESTED" => 1,
                    _ => 2 + view.used_units.max(0) as u64,
                };
                record(writes, authorization_key(&auth_id), version, view);
            }
        }
        // Where each claim the event touched stands.
        let claim_id = match event {
            Event::ClaimSubmitted(c) => Some(&c.claim_id),
            Event::PaymentCompleted(p) => Some(&p.claim_id),
            Event::PaymentFailed(p) => Some(&p.claim_id),
            _ => None,
        };
        // Claims decided again (pended for an authorization now decided) have new records too.
        let again = decided.iter().filter_map(|e| match e {
            Event::ClaimAdjudicated(a) if Some(&a.claim_id) != claim_id => Some(&a.claim_id),
            _ => None,
        });
        let touched = claim_id
            .into_iter()
            .chain(match event {
                Event::ClaimSubmitted(c) => c.original_claim_id.as_ref(),
                _ => None,
            })
            .chain(again);
        // (Not the first, just decided: a decision with no state stands as that.)
        for claim_id in touched {
            if let Some(state) = self.adjudicator.claim_state(claim_id)
                && state.version > 1
            {
                record(writes, state_key(claim_id), state.version as u64, state.clone());
            }
        }
        Ok(decided)
    }

    /// Each decision under `claim:<id>`, versioned by the claim's decisions, as the Avro record
    /// the topic has (no second encoding, and not JSON: the gateway decodes it with the schema
    /// registry, so the record evolves as the event does).
    fn stored_as(&self, output: &Event) -> Option<(String, u64)> {
        let Event::ClaimAdjudicated(a) = output else { return None };
        let state = self.adjudicator.claim_state(&a.claim_id)?;
        Some((decision_key(&a.claim_id), state.decisions as u64))
    }

    fn save(&mut self) -> Result<Option<Vec<u8>>, RunError> {
        to_bytes(&self.adjudicator).map(Some)
    }

    fn expired(&mut self) -> u64 {
        self.adjudicator.dedup_ids().1
    }

    fn load(&mut self, state: &[u8]) -> Result<(), RunError> {
        let horizon = self.adjudicator.dedup_horizon();
        self.adjudicator = from_bytes(state)?;
        self.adjudicator.set_dedup_horizon(horizon); // (the run's setting, not the snapshot's)
        Ok(())
    }
}
