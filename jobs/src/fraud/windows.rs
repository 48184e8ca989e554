//! Event-time windows over claims for the fraud job, by the time a claim was submitted: per
//! provider and per member, 5-minute tumbling windows and 1-day windows hopping by 5 minutes,
//! and a provider's peer group (the providers of its type) over the same day.
//!
//! Time is cut into slots of [`SLOT_MS`]; a claim's tumbling window is its slot, and the 1-day
//! window it is scored in is the one ending with its slot (the last [`DAY_SLOTS`] slots). Each
//! subject keeps its slots and, for the day window, running sums that slide forward slot by
//! slot — distinct members per provider and providers per member kept as counts — so a
//! window's features cost what changed since the last one, not the day's claims. A window
//! asked for out of order (a late claim, or a claim taken back, re-scoring an earlier window)
//! is summed from the slots.
//!
//! Everything is integers: money in rupiah, shares in thousandths.

use std::collections::BTreeMap;

use foldhash::HashMap;

/// The tumbling window and the hop of the day window: 5 minutes.
pub const SLOT_MS: i64 = 5 * 60_000;
/// Slots in the day window.
pub const DAY_SLOTS: i64 = 24 * 60 * 60_000 / SLOT_MS;

/// Codes at the top of their evaluation-and-management family (a new or established patient's
/// office visit, a hospital admission, an emergency visit): the high-severity, high-cost lines
/// whose share a provider is compared on with its peers.
pub const HIGH_SEVERITY: [&str; 4] = ["99205", "99215", "99223", "99285"];

/// The window features of a claim, in this order (they follow the claim's own in
/// [`crate::fraud::FEATURES`]).
pub const WINDOW_FEATURES: [&str; 9] = [
    "provider_5m_claims",
    "provider_5m_billed_idr",
    "provider_1d_claims",
    "provider_1d_mean_billed_idr",
    "provider_1d_members",
    "provider_1d_high_severity_permille",
    "peer_1d_high_severity_permille",
    "member_1d_claims",
    "member_1d_providers",
];

/// The slot an event time falls in.
pub fn slot_of(time_ms: i64) -> i64 {
    time_ms.div_euclid(SLOT_MS)
}

/// What a claim adds to its windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contribution<'a> {
    /// Its slot.
    pub slot: i64,
    /// The provider billing it.
    pub provider: &'a str,
    /// The member treated.
    pub member: &'a str,
    /// The provider's peer group (its type).
    pub peer: &'a str,
    /// Billed, rupiah.
    pub billed: i64,
    /// Lines.
    pub lines: i64,
    /// Lines with a [`HIGH_SEVERITY`] code.
    pub high_severity: i64,
}

/// A contribution as the windows keep it: names interned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Kept {
    slot: i64,
    provider: u32,
    member: u32,
    peer: u32,
    billed: i64,
    lines: i64,
    high_severity: i64,
}

/// Sums over one slot or one day.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Sums {
    claims: i64,
    billed: i64,
    lines: i64,
    high_severity: i64,
    /// The other side (members of a provider, providers of a member, interned), with how many
    /// claims.
    others: HashMap<u32, u32>,
}

impl Sums {
    fn add(&mut self, c: &Kept, other: Option<u32>, sign: i64) {
        self.claims += sign;
        self.billed += sign * c.billed;
        self.lines += sign * c.lines;
        self.high_severity += sign * c.high_severity;
        let Some(other) = other else { return };
        if sign > 0 {
            *self.others.entry(other).or_default() += 1;
        } else if let Some(n) = self.others.get_mut(&other) {
            *n -= 1;
            if *n == 0 {
                self.others.remove(&other);
            }
        }
    }

    fn merge(&mut self, other: &Sums, sign: i64) {
        self.claims += sign * other.claims;
        self.billed += sign * other.billed;
        self.lines += sign * other.lines;
        self.high_severity += sign * other.high_severity;
        for (key, n) in &other.others {
            if sign > 0 {
                *self.others.entry(*key).or_default() += n;
            } else if let Some(m) = self.others.get_mut(key) {
                *m = m.saturating_sub(*n);
                if *m == 0 {
                    self.others.remove(key);
                }
            }
        }
    }

    fn figures(&self) -> Figures {
        Figures {
            claims: self.claims,
            billed: self.billed,
            others: self.others.len() as i64,
            high_severity_permille: if self.lines == 0 { 0 } else { self.high_severity * 1_000 / self.lines },
        }
    }
}

/// What the features take from a window's sums.
#[derive(Debug, Clone, Copy)]
struct Figures {
    claims: i64,
    billed: i64,
    others: i64,
    high_severity_permille: i64,
}

/// One subject's slots, and the day window ending at `end` kept as running sums.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Subject {
    slots: BTreeMap<i64, Sums>,
    /// The slot the running day window ends with (inclusive); `None` before the first.
    end: Option<i64>,
    day: Sums,
}

impl Subject {
    fn in_day(&self, slot: i64) -> bool {
        self.end.is_some_and(|end| slot <= end && slot > end - DAY_SLOTS)
    }

    fn add(&mut self, c: &Kept, other: Option<u32>, sign: i64) {
        self.slots.entry(c.slot).or_default().add(c, other, sign);
        if self.in_day(c.slot) {
            self.day.add(c, other, sign);
        }
        if let Some(slot) = self.slots.get(&c.slot)
            && slot.claims == 0
        {
            self.slots.remove(&c.slot);
        }
    }

    /// The day window ending with `slot`: slid forward to it when it is ahead of the running
    /// one, summed from the slots when behind.
    fn day_to(&mut self, slot: i64) -> Figures {
        match self.end {
            Some(end) if slot == end => {}
            Some(end) if slot > end && slot - end < DAY_SLOTS => {
                for (_, sums) in self.slots.range(end + 1..=slot) {
                    self.day.merge(sums, 1);
                }
                for (_, sums) in self.slots.range(end - DAY_SLOTS + 1..=slot - DAY_SLOTS) {
                    self.day.merge(sums, -1);
                }
                self.end = Some(slot);
            }
            Some(end) if slot < end => return self.sum(slot).figures(),
            _ => {
                self.day = self.sum(slot);
                self.end = Some(slot);
            }
        }
        self.day.figures()
    }

    fn sum(&self, slot: i64) -> Sums {
        let mut day = Sums::default();
        for (_, sums) in self.slots.range(slot - DAY_SLOTS + 1..=slot) {
            day.merge(sums, 1);
        }
        day
    }

    /// Drops slots before `slot` (and out of the running day).
    fn prune(&mut self, slot: i64) {
        if self.slots.first_key_value().is_none_or(|(first, _)| *first >= slot) {
            return;
        }
        let keep = self.slots.split_off(&slot);
        let dropped = std::mem::replace(&mut self.slots, keep);
        for (s, sums) in dropped {
            if self.in_day(s) {
                self.day.merge(&sums, -1);
            }
        }
    }
}

/// The windows of every provider, member and peer group.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Windows {
    /// Provider, member and peer-group names, interned.
    names: HashMap<String, u32>,
    providers: HashMap<u32, Subject>,
    members: HashMap<u32, Subject>,
    peers: HashMap<u32, Subject>,
    by_claim: HashMap<String, Kept>,
}

impl Windows {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(id) = self.names.get(name) {
            return *id;
        }
        let id = self.names.len() as u32;
        self.names.insert(name.to_owned(), id);
        id
    }

    /// Adds a claim to its windows (a claim already in them is not added again).
    pub fn add(&mut self, claim_id: &str, c: Contribution<'_>) {
        if self.by_claim.contains_key(claim_id) {
            return;
        }
        let kept = Kept {
            slot: c.slot,
            provider: self.intern(c.provider),
            member: self.intern(c.member),
            peer: self.intern(c.peer),
            billed: c.billed,
            lines: c.lines,
            high_severity: c.high_severity,
        };
        self.apply(&kept, 1);
        self.by_claim.insert(claim_id.to_owned(), kept);
    }

    /// Takes a claim out of its windows (taken back): the slot it was in.
    pub fn remove(&mut self, claim_id: &str) -> Option<i64> {
        let c = self.by_claim.remove(claim_id)?;
        self.apply(&c, -1);
        Some(c.slot)
    }

    fn apply(&mut self, c: &Kept, sign: i64) {
        self.providers.entry(c.provider).or_default().add(c, Some(c.member), sign);
        self.members.entry(c.member).or_default().add(c, Some(c.provider), sign);
        self.peers.entry(c.peer).or_default().add(c, None, sign);
    }

    /// The window features of a claim in its windows ([`WINDOW_FEATURES`] order), as they
    /// stand; `None` for a claim not in them.
    pub fn features(&mut self, claim_id: &str) -> Option<[i64; WINDOW_FEATURES.len()]> {
        let c = *self.by_claim.get(claim_id)?;
        let slot = c.slot;
        let provider = self.providers.get_mut(&c.provider)?;
        let tumbling = provider.slots.get(&slot).map_or((0, 0), |s| (s.claims, s.billed));
        let provider_day = provider.day_to(slot);
        let peer_day = self.peers.get_mut(&c.peer)?.day_to(slot);
        let member_day = self.members.get_mut(&c.member)?.day_to(slot);
        Some([
            tumbling.0,
            tumbling.1,
            provider_day.claims,
            provider_day.billed / provider_day.claims.max(1),
            provider_day.others,
            provider_day.high_severity_permille,
            peer_day.high_severity_permille,
            member_day.claims,
            member_day.others,
        ])
    }

    /// Forgets slots before `slot`, and the claims in them.
    pub fn prune(&mut self, slot: i64) {
        for subjects in [&mut self.providers, &mut self.members, &mut self.peers] {
            subjects.retain(|_, s| {
                s.prune(slot);
                !s.slots.is_empty()
            });
        }
        self.by_claim.retain(|_, c| c.slot >= slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim<'a>(slot: i64, provider: &'a str, member: &'a str, billed: i64, high: i64) -> Contribution<'a> {
        Contribution { slot, provider, member, peer: "CLINIC", billed, lines: 2, high_severity: high }
    }

    /// The features summed from scratch over every claim given, for comparison.
    fn by_hand(claims: &[(&str, Contribution<'_>)], of: &str) -> [i64; WINDOW_FEATURES.len()] {
        let me = &claims.iter().find(|(id, _)| *id == of).expect("the claim").1;
        let day = |c: &Contribution<'_>| c.slot <= me.slot && c.slot > me.slot - DAY_SLOTS;
        let provider: Vec<&Contribution<'_>> =
            claims.iter().map(|(_, c)| c).filter(|c| c.provider == me.provider && day(c)).collect();
        let member: Vec<&Contribution<'_>> =
            claims.iter().map(|(_, c)| c).filter(|c| c.member == me.member && day(c)).collect();
        let peers: Vec<&Contribution<'_>> = claims.iter().map(|(_, c)| c).filter(|c| day(c)).collect();
        let tumbling: Vec<&&Contribution<'_>> = provider.iter().filter(|c| c.slot == me.slot).collect();
        let permille = |cs: &[&Contribution<'_>]| {
            let lines: i64 = cs.iter().map(|c| c.lines).sum();
            cs.iter().map(|c| c.high_severity).sum::<i64>() * 1_000 / lines.max(1)
        };
        let distinct = |cs: &[&Contribution<'_>], f: for<'x> fn(&Contribution<'x>) -> &'x str| {
            cs.iter().map(|c| f(c)).collect::<std::collections::HashSet<_>>().len() as i64
        };
        [
            tumbling.len() as i64,
            tumbling.iter().map(|c| c.billed).sum(),
            provider.len() as i64,
            provider.iter().map(|c| c.billed).sum::<i64>() / (provider.len() as i64).max(1),
            distinct(&provider, |c| c.member),
            permille(&provider),
            permille(&peers),
            member.len() as i64,
            distinct(&member, |c| c.provider),
        ]
    }

    #[test]
    fn sliding_sums_equal_the_window_summed_by_hand() {
        // Claims over three days, in slot order with some late ones and one taken back.
        let mut claims: Vec<(String, Contribution<'_>)> = Vec::new();
        for i in 0..400i64 {
            let slot = 1_000 + i * 2 + (i % 7);
            let provider = ["P1", "P2", "P3"][(i % 3) as usize];
            let member = ["M1", "M2", "M3", "M4", "M5"][(i % 5) as usize];
            claims.push((format!("C{i}"), claim(slot, provider, member, 100_000 + i * 1_000, i % 2)));
        }
        let mut windows = Windows::default();
        let mut added: Vec<(&str, Contribution<'_>)> = Vec::new();
        for (i, (id, c)) in claims.iter().enumerate() {
            windows.add(id, *c);
            added.push((id, *c));
            if i == 250 {
                let gone = windows.remove("C100").expect("C100 was in");
                assert_eq!(gone, claims[100].1.slot);
                added.retain(|(id, _)| *id != "C100");
            }
            // Every fifth claim scored, in order, and now and then an earlier one (out of order).
            if i % 5 == 0 {
                assert_eq!(windows.features(id), Some(by_hand(&added, id)), "{id}");
            }
            if i % 37 == 0 && i > 40 {
                let earlier = added[i - 40].0;
                assert_eq!(windows.features(earlier), Some(by_hand(&added, earlier)), "{earlier} out of order");
            }
        }
        assert_eq!(windows.features("C100"), None, "taken back");
    }

    #[test]
    fn pruning_forgets_old_slots_but_not_the_running_day() {
        let mut windows = Windows::default();
        windows.add("A", claim(10, "P", "M", 5, 1));
        windows.add("B", claim(10 + DAY_SLOTS, "P", "M", 7, 0));
        assert_eq!(windows.features("A").map(|f| f[2]), Some(1));
        assert_eq!(windows.features("B").map(|f| f[2]), Some(1), "A is a day before B");
        windows.prune(11);
        assert_eq!(windows.features("A"), None);
        assert_eq!(windows.features("B").map(|f| (f[2], f[3])), Some((1, 7)));
        windows.add("C", claim(11 + DAY_SLOTS, "P", "N", 9, 1));
        assert_eq!(windows.features("C").map(|f| (f[2], f[4], f[5])), Some((2, 2, 250)));
    }
}
