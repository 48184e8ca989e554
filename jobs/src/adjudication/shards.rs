//! The adjudication fold sharded by family over threads.
//!
//! A family's members share accumulators (the family deductible and out-of-pocket maximum), so
//! everything that touches a member — coverage, authorizations, claims, their payments — goes
//! to the shard of the member's family; reference data (plans, providers, contracts) goes to
//! every shard. The sequencer still decides the order: it routes each batch's events, in that
//! order, to the shards, folds the first shard's share itself while the others fold theirs on
//! their threads, and merges the decided events back into the order of the events that caused
//! them. So the outputs are those of one fold over all events, in the same order, whatever the
//! number of shards or workers (the direct fold and 1, 2 and 4 workers are compared in the
//! tests).
//!
//! The routing follows what the events say: a member's family from `MemberCreated` (or the
//! first `CoverageChanged` naming one), a payment's claim from the `ClaimSubmitted` before it.
//! Authorizations go to every shard (they are few, and may come before their member is known:
//! each shard keeps them, only the member's shard uses them), and so does a `MemberUpdated` of
//! a member not known yet. A claim of a member not known yet is denied as an unknown member
//! (CO-31) in the shard of the member's own id, and its payments follow it there.
//!
//! A claim replacing one in another shard (the original submitted before its member was known,
//! so folded under the member's own id; the member since known in its family's shard) is split:
//! a void copy of it (no lines) goes to the original's shard, which reverses the original there,
//! and the claim itself to the member's shard, which decides it with the family's accumulators.
//! The void's outputs are placed before the claim's: what a single fold does in one step.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use arus_operators::Time;
use arus_schemas::Event;
use foldhash::HashMap;

use crate::runtime::RunError;
use crate::runtime::sequenced::{Decided, Fold, Writes, keep_latest, with_store_keys};

/// Where an event's outputs go among the batch's: the event's place in the batch, then its part
/// (a split claim's void copy, 0, before the claim itself, 1).
type Place = (usize, u8);

/// Events for a shard: each with its place.
type Share = Vec<(Place, Event)>;

/// What a shard decided: each output with the place of the event that caused it, and the
/// records for the store.
type Folded = Result<(Vec<(Place, Decided)>, Writes), RunError>;

/// What a shard thread is asked.
enum ToShard {
    /// Fold these events.
    Fold(Share),
    /// Say the fold's state (a snapshot).
    Save,
    /// Take on this state.
    Load(Vec<u8>),
    /// Say how many events it refused as older than the dedup horizon.
    Expired,
}

/// What a shard thread answers.
enum FromShard {
    Folded(Folded),
    Saved(Result<Option<Vec<u8>>, RunError>),
    Loaded(Result<(), RunError>),
    Expired(u64),
}

/// The sharded fold's state in a snapshot: the routing, and each shard's fold's own state (as
/// CBOR byte strings).
#[derive(serde::Serialize, serde::Deserialize)]
struct ShardedState {
    members: HashMap<String, usize>,
    claims: HashMap<String, usize>,
    shards: Vec<ciborium::Value>,
}

/// A fold over shards of families, the first folded on the caller's thread.
pub(crate) struct Sharded {
    router: Router,
    first: Box<dyn Fold>,
    others: Vec<Shard>,
}

struct Shard {
    events: Option<Sender<ToShard>>,
    folded: Receiver<FromShard>,
    thread: Option<JoinHandle<()>>,
}

impl Shard {
    /// Asks the shard's thread, and waits for its answer.
    fn ask(&self, question: ToShard) -> Result<FromShard, RunError> {
        let stopped = || RunError::Internal("a shard thread has stopped".to_owned());
        self.events.as_ref().ok_or_else(stopped)?.send(question).map_err(|_| stopped())?;
        self.folded.recv().map_err(|_| stopped())
    }
}

impl Sharded {
    /// `shards` folds made by `make`, all but the first on threads of their own.
    pub(crate) fn new(shards: usize, make: impl Fn() -> Box<dyn Fold>) -> Result<Self, RunError> {
        let mut others = Vec::new();
        for n in 1..shards.max(1) {
            let (events, received) = channel::<ToShard>();
            let (sent, folded) = channel::<FromShard>();
            let mut fold = make();
            let thread = std::thread::Builder::new()
                .name(format!("arus-shard-{n}"))
                .spawn(move || {
                    for question in received {
                        let answer = match question {
                            ToShard::Fold(share) => FromShard::Folded(fold_share(&mut *fold, share)),
                            ToShard::Save => FromShard::Saved(fold.save()),
                            ToShard::Load(state) => FromShard::Loaded(fold.load(&state)),
                            ToShard::Expired => FromShard::Expired(fold.expired()),
                        };
                        if sent.send(answer).is_err() {
                            return;
                        }
                    }
                })
                .map_err(|e| RunError::Internal(format!("cannot start a shard thread: {e}")))?;
            others.push(Shard { events: Some(events), folded, thread: Some(thread) });
        }
        Ok(Sharded { router: Router::new(shards.max(1)), first: make(), others })
    }
}

/// A shard's records into the batch's. Keys are per member or claim, one shard's each, but for
/// authorizations, which every shard keeps: the latest version wins (the member's shard's,
/// which uses it).
fn merge(writes: &mut Writes, more: Writes) {
    for (key, (version, record)) in more {
        keep_latest(writes, key, version, record);
    }
}

/// Folds a shard's events in order.
fn fold_share(fold: &mut dyn Fold, share: Share) -> Folded {
    let mut writes = Writes::default();
    let mut decided = Vec::new();
    for (at, event) in share {
        let outputs = fold.apply(&event, &mut writes)?;
        decided.extend(with_store_keys(fold, outputs).map(|d| (at, d)));
    }
    Ok((decided, writes))
}

impl Fold for Sharded {
    fn apply(&mut self, event: &Event, writes: &mut Writes) -> Result<Vec<Event>, RunError> {
        Ok(self.apply_batch(vec![event.clone()], writes)?.into_iter().map(|(event, _)| event).collect())
    }

    fn apply_batch(&mut self, events: Vec<Event>, writes: &mut Writes) -> Result<Vec<Decided>, RunError> {
        let shards = self.others.len() + 1;
        let mut shares: Vec<Share> = (0..shards).map(|_| Vec::new()).collect();
        for (at, event) in events.into_iter().enumerate() {
            match self.router.route(&event) {
                Route::All => {
                    for share in &mut shares[1..] {
                        share.push(((at, 1), event.clone()));
                    }
                    shares[0].push(((at, 1), event));
                }
                Route::One(shard) => shares[shard].push(((at, 1), event)),
                Route::Split { original, decided } => {
                    let mut void = event.clone();
                    if let Event::ClaimSubmitted(claim) = &mut void {
                        claim.lines.clear();
                    }
                    shares[original].push(((at, 0), void));
                    shares[decided].push(((at, 1), event));
                }
            }
        }
        let mut shares = shares.into_iter();
        let first = shares.next().unwrap_or_default();
        let stopped = || RunError::Internal("a shard thread has stopped".to_owned());
        for (shard, share) in self.others.iter().zip(shares) {
            let sent = shard.events.as_ref().is_some_and(|events| events.send(ToShard::Fold(share)).is_ok());
            if !sent {
                return Err(stopped());
            }
        }
        let (mut decided, first_writes) = fold_share(&mut *self.first, first)?;
        merge(writes, first_writes);
        for shard in &self.others {
            let FromShard::Folded(folded) = shard.folded.recv().map_err(|_| stopped())? else {
                return Err(RunError::Internal("a shard thread answered out of turn".to_owned()));
            };
            let (more, more_writes) = folded?;
            decided.extend(more);
            merge(writes, more_writes);
        }
        // Back in the order of the events that caused them (stable: one event's outputs keep
        // theirs).
        decided.sort_by_key(|(at, _)| *at);
        Ok(decided.into_iter().map(|(_, decided)| decided).collect())
    }

    fn end_of_batch(&mut self, released_below: Time, writes: &mut Writes) -> Result<Vec<Event>, RunError> {
        self.first.end_of_batch(released_below, writes)
    }

    /// Every shard's (a shard that does not answer counts none).
    fn expired(&mut self) -> u64 {
        let others = self.others.iter().map(|shard| match shard.ask(ToShard::Expired) {
            Ok(FromShard::Expired(n)) => n,
            _ => 0,
        });
        self.first.expired() + others.sum::<u64>()
    }

    /// The routing and every shard's state (between batches: no shard is folding).
    fn save(&mut self) -> Result<Option<Vec<u8>>, RunError> {
        let Some(first) = self.first.save()? else { return Ok(None) };
        let mut shards = vec![ciborium::Value::Bytes(first)];
        for shard in &self.others {
            let FromShard::Saved(saved) = shard.ask(ToShard::Save)? else {
                return Err(RunError::Internal("a shard thread answered out of turn".to_owned()));
            };
            let Some(state) = saved? else { return Ok(None) };
            shards.push(ciborium::Value::Bytes(state));
        }
        let state = ShardedState { members: self.router.members.clone(), claims: self.router.claims.clone(), shards };
        crate::runtime::snapshot::to_bytes(&state).map(Some)
    }

    /// A state [`save`](Self::save) gave, taken with as many fold threads.
    fn load(&mut self, state: &[u8]) -> Result<(), RunError> {
        let ShardedState { members, claims, shards } = crate::runtime::snapshot::from_bytes(state)?;
        if shards.len() != self.others.len() + 1 {
            return Err(RunError::Invalid(format!(
                "the snapshot was taken with fold_threads = {}, this run has {}: run with {0} (families are spread \
                 over the threads by a hash of their id)",
                shards.len(),
                self.others.len() + 1
            )));
        }
        let mut states = shards.into_iter().map(|value| match value {
            ciborium::Value::Bytes(bytes) => Ok(bytes),
            _ => Err(RunError::Invalid("a snapshot's shard state is not bytes".to_owned())),
        });
        if let Some(first) = states.next() {
            self.first.load(&first?)?;
        }
        for (shard, state) in self.others.iter().zip(states) {
            let FromShard::Loaded(loaded) = shard.ask(ToShard::Load(state?))? else {
                return Err(RunError::Internal("a shard thread answered out of turn".to_owned()));
            };
            loaded?;
        }
        (self.router.members, self.router.claims) = (members, claims);
        Ok(())
    }
}

impl Drop for Sharded {
    fn drop(&mut self) {
        for shard in &mut self.others {
            shard.events = None;
            if let Some(thread) = shard.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// Where an event goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    All,
    One(usize),
    /// A claim replacing one in another shard: its void copy to the original's shard (`original`),
    /// the claim to its member's (`decided`).
    Split {
        original: usize,
        decided: usize,
    },
}

/// Which shard each member and claim is folded in.
struct Router {
    shards: usize,
    /// Member → its family's shard, once the family is known.
    members: HashMap<String, usize>,
    /// Claim → its shard (for its payments).
    claims: HashMap<String, usize>,
}

impl Router {
    fn new(shards: usize) -> Self {
        Router { shards, members: HashMap::default(), claims: HashMap::default() }
    }

    /// The shard of a family: a hash of its id that does not change between runs or builds.
    fn shard_of(&self, family: &str) -> usize {
        // FNV-1a.
        let hash =
            family.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        (hash % self.shards as u64) as usize
    }

    /// A member's family is known: its shard from now on (the first family named stays).
    fn family(&mut self, member_id: &str, family_id: &str) -> usize {
        if let Some(shard) = self.members.get(member_id) {
            return *shard;
        }
        let shard = self.shard_of(family_id);
        self.members.insert(member_id.to_owned(), shard);
        shard
    }

    fn route(&mut self, event: &Event) -> Route {
        if self.shards == 1 {
            return Route::One(0);
        }
        match event {
            Event::PlanCreated(_)
            | Event::BenefitUpdated(_)
            | Event::ProviderOnboarded(_)
            | Event::ContractUpdated(_) => Route::All,
            Event::AuthRequested(_) | Event::AuthApproved(_) | Event::AuthDenied(_) => Route::All,
            Event::MemberCreated(e) => Route::One(self.family(&e.member_id, &e.family_id)),
            Event::CoverageChanged(e) => Route::One(self.family(&e.member_id, &e.family_id)),
            Event::MemberUpdated(e) => self.members.get(&e.member_id).map_or(Route::All, |shard| Route::One(*shard)),
            Event::ClaimSubmitted(e) => {
                let original = e.original_claim_id.as_ref().and_then(|o| self.claims.get(o)).copied();
                let shard = match self.members.get(&e.member_id) {
                    Some(shard) => *shard,
                    // Not known yet: where a replaced claim is, else by its own id.
                    None => original.unwrap_or_else(|| self.shard_of(&e.member_id)),
                };
                self.claims.entry(e.claim_id.clone()).or_insert(shard);
                match original {
                    // A void decides nothing: it only reverses, where the original is.
                    Some(original) if original != shard && e.lines.is_empty() => Route::One(original),
                    Some(original) if original != shard => Route::Split { original, decided: shard },
                    _ => Route::One(shard),
                }
            }
            Event::PaymentCompleted(e) => Route::One(self.claims.get(&e.claim_id).copied().unwrap_or(0)),
            Event::PaymentFailed(e) => Route::One(self.claims.get(&e.claim_id).copied().unwrap_or(0)),
            // Nothing the adjudicator reads: any shard passes over it.
            _ => Route::One(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Claims of a member not known yet, replaced (and voided) once the member is known in
    /// another shard: the same outputs and records as one fold, in the same order.
    #[test]
    fn a_claim_replacing_one_folded_before_its_member_was_known_is_decided_as_one_fold_does() {
        let claim = |event: &str, at: &str, claim: &str, original: &str, lines: &str| {
            format!(
                r#"{{"type":"ClaimSubmitted","event_id":"{event}","event_time":"{at}","claim_id":"{claim}","member_id":"M-LATE","provider_id":"P1","claim_type":"PROFESSIONAL","service_date":"2026-03-01","auth_id":null,"diagnosis_codes":["J06.9"],"lines":[{lines}],"total_charge_idr":900000,"currency":"IDR","original_claim_id":{original}}}"#
            )
        };
        let line = r#"{"line_number":1,"procedure_code":"80053","diagnosis_code":"J06.9","service_date":"2026-03-01","units":1,"charge_amount_idr":900000,"minutes":null}"#;
        let lines = [
            r#"{"type":"PlanCreated","event_id":"plan-1","event_time":"1970-01-01T00:00:00.000Z","plan_id":"SILVER","name":"SILVER","tier":"SILVER","plan_year":2026,"version":1,"benefits":{"deductible_individual_idr":300000,"deductible_family_idr":400000,"oop_max_individual_idr":5000000,"oop_max_family_idr":10000000,"copay_idr":0,"coinsurance_bp":2000,"out_of_network_coinsurance_bp":10000,"annual_limit_idr":100000000,"prior_auth_procedures":[],"excluded_procedures":[]}}"#.to_owned(),
            r#"{"type":"ProviderOnboarded","event_id":"provider-2","event_time":"1970-01-01T00:00:00.000Z","provider_id":"P1","name":"P1","provider_type":"CLINIC","province_code":"31","regency_code":"3171","city":"Jakarta","latitude_e6":0,"longitude_e6":0,"network_status":"IN_NETWORK","specialties":[]}"#.to_owned(),
            r#"{"type":"ContractUpdated","event_id":"contract-3","event_time":"1970-01-01T00:00:00.000Z","provider_id":"P1","contract_id":"K-P1","network_status":"IN_NETWORK","effective_date":"2025-01-01","end_date":null,"fee_schedule":[{"procedure_code":"80053","contracted_amount_idr":800000}]}"#.to_owned(),
            // Two claims before the member is known: denied, folded under the member's own id.
            claim("claim-4", "2026-03-01T12:00:00.000Z", "C1", "null", line),
            claim("claim-5", "2026-03-01T13:00:00.000Z", "C2", "null", line),
            r#"{"type":"MemberCreated","event_id":"member-6","event_time":"2026-03-02T00:00:00.000Z","member_id":"M-LATE","family_id":"F-LATE","subscriber_id":"M-LATE","relationship":"SUBSCRIBER","nik":"3171010101900001","full_name":"Test","date_of_birth":"1990-01-01","sex":"MALE","province_code":"31","regency_code":"3171","city":"Jakarta","phone":null,"email":null}"#.to_owned(),
            r#"{"type":"CoverageChanged","event_id":"coverage-7","event_time":"2026-03-02T00:00:00.001Z","member_id":"M-LATE","family_id":"F-LATE","subscriber_id":"M-LATE","change_type":"ENROLLED","plan_id":"SILVER","effective_date":"2026-01-01","end_date":null,"reason":"TEST"}"#.to_owned(),
            // The first replaced, the second voided, now that the member is known.
            claim("claim-8", "2026-03-03T12:00:00.000Z", "C1B", r#""C1""#, line),
            claim("claim-9", "2026-03-04T12:00:00.000Z", "C2V", r#""C2""#, ""),
            r#"{"type":"PaymentCompleted","event_id":"payment-10","event_time":"2026-03-05T12:00:00.000Z","payment_id":"PAY-C1B","claim_id":"C1B","amount_idr":400000,"bank_reference":"BNK1"}"#.to_owned(),
        ];
        let events: Vec<Event> =
            lines.iter().map(|line| arus_schemas::json::from_json(line).expect("an event")).collect();
        type Records = std::collections::BTreeMap<String, (u64, String)>;
        let fold = |shards: usize, one_at_a_time: bool| -> (Vec<Decided>, Records) {
            let mut fold = crate::adjudication::job::adjudication_fold(shards).expect("a fold");
            let mut writes = Writes::default();
            let mut decided = Vec::new();
            if one_at_a_time {
                for event in &events {
                    decided.extend(fold.apply_batch(vec![event.clone()], &mut writes).expect("applied"));
                }
            } else {
                decided = fold.apply_batch(events.clone(), &mut writes).expect("applied");
            }
            let records = writes
                .into_iter()
                .map(|(key, (version, record))| (key, (version, String::from_utf8(record.json().unwrap()).unwrap())))
                .collect();
            (decided, records)
        };
        let (decided, records) = fold(1, false);
        assert!(
            records.get("claim-state:C1").is_some_and(|(_, state)| state.contains("REVERSED"))
                && records.get("claim-state:C2").is_some_and(|(_, state)| state.contains("REVERSED")),
            "one fold reverses both originals: {records:#?}"
        );
        assert!(
            decided.iter().any(|(e, _)| matches!(e, Event::ClaimAdjudicated(a) if a.claim_id == "C1B" && a.status.as_str() == "APPROVED")),
            "the replacement is decided with the member known: {decided:#?}"
        );
        for shards in 2..=4 {
            let router = Router::new(shards);
            assert_ne!(router.shard_of("M-LATE"), router.shard_of("F-LATE"), "the case needs two shards");
            for one_at_a_time in [false, true] {
                let (sharded, sharded_records) = fold(shards, one_at_a_time);
                assert_eq!(sharded, decided, "{shards} shards, one at a time: {one_at_a_time}");
                assert_eq!(sharded_records, records, "{shards} shards, one at a time: {one_at_a_time}");
            }
        }
    }

    #[test]
    fn a_family_shares_a_shard_and_reference_data_goes_everywhere() {
        let events = crate::runtime::sequenced::generated(1_500, 60);
        let mut ordered: Vec<&Event> = events.iter().filter(|e| crate::runtime::sequenced::wanted(e)).collect();
        ordered.sort_by(|a, b| crate::runtime::sequenced::order_key(a).cmp(&crate::runtime::sequenced::order_key(b)));
        let mut router = Router::new(4);
        let mut family_shards: std::collections::HashMap<String, usize> = Default::default();
        let mut used = std::collections::BTreeSet::new();
        let mut all = 0;
        let (mut claims, mut payments) = (0, 0);
        for event in ordered {
            let route = router.route(event);
            match (event, route) {
                (Event::PlanCreated(_) | Event::ProviderOnboarded(_) | Event::AuthRequested(_), route) => {
                    assert_eq!(route, Route::All);
                    all += 1;
                }
                (Event::MemberCreated(e), Route::One(shard)) => {
                    let first = *family_shards.entry(e.family_id.clone()).or_insert(shard);
                    assert_eq!(first, shard, "family {} split over shards", e.family_id);
                    used.insert(shard);
                }
                (Event::ClaimSubmitted(c), Route::One(shard)) => {
                    assert_eq!(
                        router.members.get(&c.member_id),
                        Some(&shard),
                        "claim {} away from its family",
                        c.claim_id
                    );
                    claims += 1;
                }
                (Event::PaymentCompleted(p), Route::One(shard)) => {
                    assert_eq!(router.claims.get(&p.claim_id), Some(&shard), "a payment away from its claim");
                    payments += 1;
                }
                _ => {}
            }
        }
        assert!(all > 0 && claims > 1_400 && payments > 0, "{all} {claims} {payments}");
        assert_eq!(used.len(), 4, "families spread over every shard");
    }
}
