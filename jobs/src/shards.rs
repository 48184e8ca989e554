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
//! One difference from a single fold remains, for a case the generator does not make: a claim
//! replacing one that was submitted before its member was known, once the member is known in
//! another shard, is decided in the member's shard (with the family's accumulators, as a single
//! fold does), but the denied original there is not marked reversed.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use arus_operators::Time;
use arus_schemas::Event;
use foldhash::HashMap;

use crate::adjudication_job::{Decided, Fold, Writes, keep_latest, with_store_keys};
use crate::runner::RunError;

/// Events for a shard: each with its place in the batch.
type Share = Vec<(usize, Event)>;

/// What a shard decided: each output with the place of the event that caused it, and the
/// records for the store.
type Folded = Result<(Vec<(usize, Decided)>, Writes), RunError>;

/// A fold over shards of families, the first folded on the caller's thread.
pub(crate) struct Sharded {
    router: Router,
    first: Box<dyn Fold>,
    others: Vec<Shard>,
}

struct Shard {
    events: Option<Sender<Share>>,
    folded: Receiver<Folded>,
    thread: Option<JoinHandle<()>>,
}

impl Sharded {
    /// `shards` folds made by `make`, all but the first on threads of their own.
    pub(crate) fn new(shards: usize, make: impl Fn() -> Box<dyn Fold>) -> Result<Self, RunError> {
        let mut others = Vec::new();
        for n in 1..shards.max(1) {
            let (events, received) = channel::<Share>();
            let (sent, folded) = channel::<Folded>();
            let mut fold = make();
            let thread = std::thread::Builder::new()
                .name(format!("arus-shard-{n}"))
                .spawn(move || {
                    for share in received {
                        if sent.send(fold_share(&mut *fold, share)).is_err() {
                            return;
                        }
                    }
                })
                .map_err(|e| RunError::Unsupported(format!("cannot start a shard thread: {e}")))?;
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
                        share.push((at, event.clone()));
                    }
                    shares[0].push((at, event));
                }
                Route::One(shard) => shares[shard].push((at, event)),
            }
        }
        let mut shares = shares.into_iter();
        let first = shares.next().unwrap_or_default();
        for (shard, share) in self.others.iter().zip(shares) {
            let sent = shard.events.as_ref().is_some_and(|events| events.send(share).is_ok());
            if !sent {
                return Err(RunError::Unsupported("a shard thread has stopped".to_owned()));
            }
        }
        let (mut decided, first_writes) = fold_share(&mut *self.first, first)?;
        merge(writes, first_writes);
        for shard in &self.others {
            let (more, more_writes) =
                shard.folded.recv().map_err(|_| RunError::Unsupported("a shard thread has stopped".to_owned()))??;
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
                let shard = match self.members.get(&e.member_id) {
                    Some(shard) => *shard,
                    // Not known yet: where a replaced claim is, else by its own id.
                    None => match e.original_claim_id.as_ref().and_then(|o| self.claims.get(o)) {
                        Some(shard) => *shard,
                        None => self.shard_of(&e.member_id),
                    },
                };
                self.claims.entry(e.claim_id.clone()).or_insert(shard);
                Route::One(shard)
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

    #[test]
    fn a_family_shares_a_shard_and_reference_data_goes_everywhere() {
        let mut events = Vec::new();
        let settings = arus_generator::GeneratorConfig { claims: 1_500, days: 60, ..Default::default() };
        arus_generator::generate(&settings, |output| -> Result<(), String> {
            if let arus_generator::Output::Event(event) = output {
                events.push(event);
            }
            Ok(())
        })
        .expect("generate");
        let mut ordered: Vec<&Event> = events.iter().filter(|e| crate::adjudication_job::wanted(e)).collect();
        ordered.sort_by(|a, b| crate::adjudication_job::order_key(a).cmp(&crate::adjudication_job::order_key(b)));
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
