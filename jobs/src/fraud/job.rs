//! Runs the fraud rules ([`FraudDetector`]) over members, providers and claims, in event-time
//! order on one sequencer (as the adjudication job does), writing `FraudAlert`s to
//! `fraud.alerts`; a rerun writes only the alerts missing there.

use std::sync::Arc;

use arus_connectors::embedded::EmbeddedLog;
use arus_connectors::store::MemoryStore;
use arus_schemas::Event;
use arus_schemas::topics::names::{BENEFIT_EVENTS, CLAIMS_EVENTS, FRAUD_ALERTS, MEMBER_EVENTS, PROVIDER_EVENTS};

use super::model::{ModelError, OnnxScorer, Scorer, newest};
use super::spec::{FraudSpec, ModelSpec};
use super::{Closed, FraudDetector, Step};
use crate::runtime::metrics::Metrics;
use crate::runtime::sequenced::{Fold, READING, Sequenced, SequencedReport, Writes, run_fold_on_log, run_sequenced};
use crate::runtime::snapshot::{SnapshotSettings, from_bytes, to_bytes};
use crate::runtime::spec::StoreSpec;
use crate::runtime::{Cluster, RunContext, RunError, Shutdown};
use arus_operators::Time;

/// The topics the job reads.
pub const TOPICS: [&str; 4] = [BENEFIT_EVENTS, PROVIDER_EVENTS, MEMBER_EVENTS, CLAIMS_EVENTS];

/// What a run did (`alerts` counts them).
pub type FraudReport = SequencedReport;

/// How often (in events) the models folder is looked at for a newer version.
const CHECK_EVERY: u32 = 256;

/// The models in use: the newest in a folder, and (shadow mode) a newer one next to it.
pub struct ModelWatch {
    dir: std::path::PathBuf,
    primary: Box<dyn Scorer>,
    shadow: Option<Box<dyn Scorer>>,
    shadow_mode: bool,
    threshold: f64,
    loaded: u32,
    since_check: u32,
}

impl ModelWatch {
    /// The newest model in `dir` (an error when there is none, or it does not load).
    pub fn open(spec: &ModelSpec) -> Result<Self, ModelError> {
        let (version, path) = newest(&spec.dir)
            .ok_or_else(|| ModelError(format!("{}: no fraud-v<version>.onnx here", spec.dir.display())))?;
        Ok(ModelWatch {
            dir: spec.dir.clone(),
            primary: Box::new(OnnxScorer::load(&path)?),
            shadow: None,
            shadow_mode: spec.shadow,
            threshold: spec.threshold,
            loaded: version,
            since_check: 0,
        })
    }

    /// Takes up a newer version if one has appeared (every [`CHECK_EVERY`] events): as the
    /// model, or in shadow mode next to it. `events`: how many since the last call.
    fn refresh(&mut self, events: u32) -> Result<(), ModelError> {
        self.since_check += events;
        if self.since_check < CHECK_EVERY {
            return Ok(());
        }
        self.since_check = 0;
        if let Some((version, path)) = newest(&self.dir).filter(|(v, _)| *v > self.loaded) {
            let scorer: Box<dyn Scorer> = Box::new(OnnxScorer::load(&path)?);
            if self.shadow_mode {
                self.shadow = Some(scorer);
            } else {
                self.primary = scorer;
            }
            self.loaded = version;
        }
        Ok(())
    }
}

/// The rules, and the model when there is one.
#[derive(Default)]
pub struct FraudFold {
    detector: FraudDetector,
    model: Option<ModelWatch>,
    /// What the detector gave since the last flush: alerts, and claims to be scored.
    unscored: Vec<Step>,
    /// Events since the models folder was last looked at.
    events: u32,
}

impl FraudFold {
    /// Rules only, or rules and a model.
    pub fn new(model: Option<ModelWatch>) -> Self {
        FraudFold { detector: FraudDetector::new(), model, unscored: Vec::new(), events: 0 }
    }

    /// The alerts an event lets out: what it raises or withdraws at once, and those of the
    /// claims whose 5-minute windows its time closes (scored together).
    pub fn alerts(&mut self, event: &Event) -> Result<Vec<Event>, ModelError> {
        self.push(event);
        self.flush()
    }

    /// The end of the input: every window closes, and the alerts left go out.
    pub fn finish(&mut self) -> Result<Vec<Event>, ModelError> {
        self.close(i64::MAX);
        self.flush()
    }

    /// Runs the rules on an event; claims wait to be scored with the others of the batch.
    fn push(&mut self, event: &Event) {
        self.events += 1;
        let steps = self.detector.apply(event);
        self.unscored.extend(steps);
    }

    /// Closes the windows that end by `until` (event time, ms).
    fn close(&mut self, until: i64) {
        let steps = self.detector.close(until);
        self.unscored.extend(steps);
    }

    /// Scores the waiting claims in one call per model, and gives every alert in order: the
    /// same alerts, whatever the batches.
    fn flush(&mut self) -> Result<Vec<Event>, ModelError> {
        let steps = std::mem::take(&mut self.unscored);
        let mut out = Vec::new();
        let Some(watch) = self.model.as_mut() else {
            for step in steps {
                match step {
                    Step::Alert(alert) => out.push(alert),
                    Step::Claim(closed) if !closed.again => out.extend(closed.alerts),
                    Step::Claim(_) => {}
                }
            }
            return Ok(self.register(out));
        };
        watch.refresh(std::mem::take(&mut self.events))?;
        let rows: Vec<_> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Claim(c) => Some(c.features.values),
                Step::Alert(_) => None,
            })
            .collect();
        let scores = watch.primary.score(&rows)?;
        let shadow_scores = match watch.shadow.as_mut() {
            Some(shadow) => Some((shadow.version().to_owned(), shadow.score(&rows)?)),
            None => None,
        };
        let mut row = 0;
        for step in steps {
            let mut closed = match step {
                Step::Alert(alert) => {
                    out.push(alert);
                    continue;
                }
                Step::Claim(closed) => closed,
            };
            let score = scores.get(row).copied().unwrap_or(0.0);
            let shadow = shadow_scores.as_ref().map(|(v, s)| (v.clone(), s.get(row).copied().unwrap_or(0.0)));
            row += 1;
            let claim_id = &closed.claim.claim_id;
            let model_alert_id = format!("FA-MODEL-{claim_id}");
            if closed.again {
                // The window changed: the model's alert follows the new score.
                let standing = self.detector.standing(claim_id, Some(&model_alert_id));
                if standing && score < watch.threshold {
                    let why = format!("its window changed and the model now scores it {score:.3}");
                    out.extend(self.detector.withdraw(
                        claim_id,
                        |a| a.alert_id == model_alert_id,
                        &why,
                        closed.claim.event_time,
                    ));
                } else if !standing && score >= watch.threshold && !self.detector.standing(claim_id, None) {
                    out.push(Self::model_alert(watch, &closed, score, shadow));
                }
                continue;
            }
            let mut alerts = std::mem::take(&mut closed.alerts);
            let mut about_claim = 0;
            for alert in alerts.iter_mut() {
                if let Event::FraudAlert(a) = alert
                    && a.claim_ids.first() == Some(claim_id)
                {
                    a.model_name = Some(watch.primary.name().to_owned());
                    a.model_version = Some(watch.primary.version().to_owned());
                    a.score = Some(score);
                    (a.shadow_model_version, a.shadow_score) =
                        shadow.clone().map_or((None, None), |(v, s)| (Some(v), Some(s)));
                    about_claim += 1;
                }
            }
            if about_claim == 0 && score >= watch.threshold {
                alerts.push(Self::model_alert(watch, &closed, score, shadow));
            }
            out.extend(alerts);
        }
        Ok(self.register(out))
    }

    fn model_alert(watch: &ModelWatch, closed: &Closed, score: f64, shadow: Option<(String, f64)>) -> Event {
        let mut alert = crate::fraud::model_alert(
            &closed.claim,
            &closed.features,
            score,
            (watch.primary.name(), watch.primary.version()),
            watch.primary.importance_order(),
        );
        if let (Event::FraudAlert(a), Some((version, shadow_score))) = (&mut alert, shadow) {
            (a.shadow_model_version, a.shadow_score) = (Some(version), Some(shadow_score));
        }
        alert
    }

    /// Records the alerts going out as standing (for withdrawals later).
    fn register(&mut self, mut out: Vec<Event>) -> Vec<Event> {
        for alert in &mut out {
            if let Event::FraudAlert(a) = alert {
                self.detector.register(a);
            }
        }
        out
    }
}

impl Fold for FraudFold {
    fn apply(&mut self, event: &Event, _writes: &mut Writes) -> Result<Vec<Event>, RunError> {
        self.detector.advance(event.event_time().0); // (in event-time order, late events aside)
        self.push(event);
        Ok(Vec::new())
    }

    fn end_of_batch(&mut self, released_below: Time, _writes: &mut Writes) -> Result<Vec<Event>, RunError> {
        self.close(i64::try_from(released_below).unwrap_or(i64::MAX));
        self.flush().map_err(|e| RunError::Invalid(format!("the fraud model: {e}")))
    }

    /// The rules' state (the model is configuration: a restart takes up the newest in its
    /// folder, as a start does).
    fn save(&mut self) -> Result<Option<Vec<u8>>, RunError> {
        to_bytes(&(&self.detector, &self.unscored)).map(Some)
    }

    fn load(&mut self, state: &[u8]) -> Result<(), RunError> {
        let horizon = self.detector.dedup_horizon();
        (self.detector, self.unscored) = from_bytes(state)?;
        self.detector.set_dedup_horizon(horizon); // (the run's setting, not the snapshot's)
        Ok(())
    }

    fn pauses_at_end(&self) -> bool {
        true
    }

    fn expired(&mut self) -> u64 {
        self.detector.expired()
    }
}

/// Runs the job, until its input ends or `context` asks it to stop.
pub fn run(spec: &FraudSpec, context: &RunContext) -> Result<FraudReport, RunError> {
    let lateness = spec.out_of_orderness.ms();
    let model = spec.model.as_ref().map(ModelWatch::open).transpose().map_err(|e| RunError::Invalid(e.to_string()))?;
    let (metrics, shutdown) = (context.metrics.clone(), context.shutdown.clone());
    let mut fold = Box::new(FraudFold::new(model));
    fold.detector.set_dedup_horizon(spec.dedup_horizon.ms() as i64);
    let snapshots = spec.checkpoint.as_ref().map(|checkpoint| {
        let identity = format!("fraud of {}", spec.source.topic_names(&TOPICS).join(", "));
        SnapshotSettings::of(checkpoint, identity)
    });
    let job = Sequenced { topics: &TOPICS, outputs: &[FRAUD_ALERTS], fold, metrics, shutdown, snapshots };
    run_sequenced(&spec.source, &StoreSpec::Memory, lateness, job, &context.cluster)
}

/// Runs the rules (and a model, if given) over a log this process has (the demo), writing the
/// alerts back to it.
pub fn run_on_log(
    log: Arc<EmbeddedLog>,
    cluster: &Cluster,
    model: Option<ModelWatch>,
) -> Result<FraudReport, RunError> {
    let (metrics, fold) = (Arc::new(Metrics::new("fraud")), Box::new(FraudFold::new(model)));
    let job = Sequenced {
        topics: &TOPICS,
        outputs: &[FRAUD_ALERTS],
        fold,
        metrics,
        shutdown: Shutdown::new(),
        snapshots: None,
    };
    run_fold_on_log(log, cluster, Arc::new(MemoryStore::new()), job, READING)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fraud::FEATURES;
    use crate::fraud::windows::SLOT_MS;
    use arus_schemas::events::{AlertStatus, ClaimLine, ClaimSubmitted, ClaimType, FraudAlert};
    use arus_schemas::{Date, Idr, Timestamp};

    /// Scores a claim 0.9 when its provider has two claims or more in its 5-minute window.
    struct Busy;

    impl Scorer for Busy {
        fn name(&self) -> &str {
            "busy"
        }
        fn version(&self) -> &str {
            "1"
        }
        fn score(&mut self, rows: &[[i64; FEATURES.len()]]) -> Result<Vec<f64>, ModelError> {
            let at = FEATURES.iter().position(|f| *f == "provider_5m_claims").expect("a window feature");
            Ok(rows.iter().map(|r| if r[at] >= 2 { 0.9 } else { 0.1 }).collect())
        }
        fn importance_order(&self) -> &[String] {
            &[]
        }
    }

    fn fold() -> FraudFold {
        let watch = ModelWatch {
            dir: std::path::PathBuf::from("/nonexistent"),
            primary: Box::new(Busy),
            shadow: None,
            shadow_mode: false,
            threshold: 0.5,
            loaded: 1,
            since_check: 0,
        };
        FraudFold::new(Some(watch))
    }

    fn claim(id: &str, member: &str, at: i64, original: Option<&str>) -> Event {
        let line = ClaimLine {
            line_number: 1,
            procedure_code: "99213".to_owned(),
            diagnosis_code: "I10".to_owned(),
            service_date: Date(20_000),
            units: 1,
            charge_amount_idr: Idr(250_000),
            minutes: Some(20),
        };
        Event::ClaimSubmitted(ClaimSubmitted {
            event_id: format!("e-{id}"),
            event_time: Timestamp(at),
            claim_id: id.to_owned(),
            member_id: member.to_owned(),
            provider_id: "P1".to_owned(),
            claim_type: ClaimType::PROFESSIONAL,
            service_date: Date(20_000),
            auth_id: None,
            diagnosis_codes: vec!["I10".to_owned()],
            lines: if original.is_some() { Vec::new() } else { vec![line] },
            total_charge_idr: Idr(if original.is_some() { 0 } else { 250_000 }),
            currency: "IDR".to_owned(),
            original_claim_id: original.map(str::to_owned),
        })
    }

    fn alerts(out: Vec<Event>) -> Vec<FraudAlert> {
        out.into_iter()
            .map(|e| match e {
                Event::FraudAlert(a) => a,
                other => panic!("not an alert: {other:?}"),
            })
            .collect()
    }

    /// The rules' state saved in snapshots: a run over the first two thirds of the history (by
    /// event time), then one over the rest resumed from its snapshot — on 1, 2 or 4 workers —
    /// leave on `fraud.alerts` exactly what one run over everything does, the second folding
    /// only what came after. The end of each bounded run is a pause: windows still open then
    /// are not closed (no alert the whole history would not raise).
    #[test]
    fn a_run_resumed_from_its_snapshot_raises_what_one_run_over_everything_does() {
        use crate::runtime::sequenced::{generated, produce};
        use std::time::Duration;
        let events = generated(3_000, 60);
        let mut times: Vec<i64> = events.iter().map(|e| e.event_time().0).collect();
        times.sort_unstable();
        let split = times[times.len() * 2 / 3];
        let alerts_of = |log: &EmbeddedLog| {
            let ends = log.end_offsets(FRAUD_ALERTS).unwrap();
            let fetch = |(p, end): (usize, u64)| log.fetch(FRAUD_ALERTS, p as u32, 0, end as usize).unwrap();
            ends.into_iter()
                .enumerate()
                .map(|e| fetch(e).into_iter().map(|r| r.value).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        };
        let run = |log: &Arc<EmbeddedLog>, dir: std::path::PathBuf, workers: usize| {
            let snapshots = SnapshotSettings { dir, interval: Duration::from_millis(1), identity: "fraud".into() };
            let job = Sequenced {
                topics: &TOPICS,
                outputs: &[FRAUD_ALERTS],
                fold: Box::new(FraudFold::new(None)),
                metrics: Arc::new(Metrics::new("fraud")),
                shutdown: Shutdown::new(),
                snapshots: Some(snapshots),
            };
            run_fold_on_log(log.clone(), &Cluster::Local { workers }, Arc::new(MemoryStore::new()), job, READING)
                .unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let whole = Arc::new(EmbeddedLog::new());
        whole.create_all_topics().unwrap();
        produce(&whole, &events);
        let once = run(&whole, dir.path().join("whole"), 2);
        let expected = alerts_of(&whole);
        assert!(once.alerts > 10, "the history raises alerts: {once:?}");
        assert!(once.held > 0, "the last windows wait for more: {once:?}");
        for workers in [1, 2, 4] {
            let resumed = Arc::new(EmbeddedLog::new());
            resumed.create_all_topics().unwrap();
            let snapshots = dir.path().join(format!("s{workers}"));
            produce(&resumed, events.iter().filter(|e| e.event_time().0 < split));
            let first = run(&resumed, snapshots.clone(), 2);
            assert!(first.held > 0 && first.snapshots >= 1, "{first:?}");
            produce(&resumed, events.iter().filter(|e| e.event_time().0 >= split));
            let second = run(&resumed, snapshots, workers);
            assert_eq!(second.restored_from, Some(first.snapshots), "{second:?}");
            assert!(second.events < once.events / 2, "folded {} of {}", second.events, once.events);
            assert_eq!(alerts_of(&resumed), expected, "{workers} workers: the alerts one run raises");
        }
    }

    #[test]
    fn a_claim_waits_for_its_window_and_late_claims_and_take_backs_correct_it() {
        let mut fold = fold();
        let t = 1_000 * SLOT_MS;
        // A alone in its window: scored when a later event closes the window, no alert.
        assert!(fold.alerts(&claim("A", "M1", t + 10, None)).expect("scored").is_empty(), "the window is open");
        assert!(fold.alerts(&claim("X", "M9", t + 3 * SLOT_MS, None)).expect("scored").is_empty(), "A scored low");
        // B comes late into A's window: B is scored now, A again — both alerted by the model.
        let raised = alerts(fold.alerts(&claim("B", "M2", t + 20, None)).expect("scored"));
        let ids: Vec<(&str, AlertStatus)> = raised.iter().map(|a| (a.alert_id.as_str(), a.status)).collect();
        assert_eq!(ids, [("FA-MODEL-B", AlertStatus::RAISED), ("FA-MODEL-A", AlertStatus::RAISED)]);
        assert_eq!(raised[1].window_start, Timestamp(t), "A's 5-minute window");
        assert_eq!(raised[1].window_end, Timestamp(t + SLOT_MS));
        let busy = FEATURES.iter().position(|f| *f == "provider_5m_claims").expect("feature");
        assert_eq!(raised[1].features[busy].value as i64, 2, "{:?}", raised[1].features);
        // B voided: its alert withdrawn, and A — alone again — withdrawn on its new score.
        let withdrawn = alerts(fold.alerts(&claim("B-VOID", "M2", t + 4 * SLOT_MS, Some("B"))).expect("scored"));
        let ids: Vec<(&str, AlertStatus, &str)> =
            withdrawn.iter().map(|a| (a.alert_id.as_str(), a.status, a.event_id.as_str())).collect();
        assert_eq!(
            ids,
            [
                ("FA-MODEL-B", AlertStatus::WITHDRAWN, "withdrawn:FA-MODEL-B"),
                ("FA-MODEL-A", AlertStatus::WITHDRAWN, "withdrawn:FA-MODEL-A")
            ]
        );
        assert!(withdrawn[1].top_features[0].starts_with("withdrawn: its window changed"), "{:?}", withdrawn[1]);
        // Another late claim into A's window: A raised again, as a new event.
        let again = alerts(fold.alerts(&claim("C", "M3", t + 30, None)).expect("scored"));
        let ids: Vec<(&str, &str)> = again.iter().map(|a| (a.alert_id.as_str(), a.event_id.as_str())).collect();
        assert_eq!(ids, [("FA-MODEL-C", "alert:FA-MODEL-C"), ("FA-MODEL-A", "alert:FA-MODEL-A:2")]);
        assert!(fold.finish().expect("scored").is_empty(), "X stays alone in its window");
    }
}
