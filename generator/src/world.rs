//! The simulation: a book of business, day by day, in event-time order.
//!
//! The loop runs one *planning day* at a time. On planning day `t` it records membership
//! changes dated `t` and plans the encounters whose service date is `t + LOOKAHEAD`, so their
//! prior authorizations (a few days before the service) are still in the future. Every event
//! goes into a heap ordered by (event time, sequence); before each day, everything earlier than
//! that day leaves the heap. The output is therefore sorted by event time, and the heap holds
//! only the near future plus the late claims still to be submitted.

use std::collections::{BTreeMap, HashMap};

use arus_schemas::events::*;
use arus_schemas::{Date, Event, Idr, Timestamp};
use serde::Serialize;

use crate::config::GeneratorConfig;
use crate::labels::{FraudLabel, FraudPattern};
use crate::reference::{self, ENCOUNTERS, Encounter, REGIONS, Region, TIERS, TierRules};
use crate::rng::Rng;
use arus_schemas::nik::make_nik;

/// Days between planning an encounter and its service date: room for prior authorization.
const LOOKAHEAD: i32 = 7;
const HOUR_MS: i64 = 3_600_000;

/// What the generator produces.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// An event, in event-time order.
    Event(Event),
    /// Ground truth for a fraudulent claim (emitted with the claim).
    Label(FraudLabel),
}

/// Counts of what was produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Events by kind name.
    pub events: BTreeMap<&'static str, u64>,
    /// All events.
    pub total_events: u64,
    /// Families created.
    pub families: u64,
    /// Members created.
    pub members: u64,
    /// Providers onboarded.
    pub providers: u64,
    /// Claims submitted (fraudulent included).
    pub claims: u64,
    /// Claims submitted more than 14 days after service.
    pub late_claims: u64,
    /// Fraudulent claims by pattern.
    pub fraud: BTreeMap<&'static str, u64>,
    /// Sum of billed charges.
    pub billed_idr: i64,
    /// First and last event time.
    pub first_event_time: Option<Timestamp>,
    /// Last event time.
    pub last_event_time: Option<Timestamp>,
}

/// An event waiting for its time. The event is boxed so that sorting a day moves 8 bytes
/// per entry instead of ~300.
struct Pending {
    time: Timestamp,
    seq: u64,
    event: Box<Event>,
}

struct Plan {
    id: String,
    rules: &'static TierRules,
    version: i32,
}

struct Provider {
    id: String,
    lat_e6: i32,
    lon_e6: i32,
    /// Billed charge as a percentage of list price (100–130).
    markup_pct: i64,
    /// Contracted fee per unit, indexed like `reference::PROCEDURES` (empty out of network).
    fees: Vec<i64>,
}

struct Member {
    id: String,
    family: usize,
    dob: Date,
    sex: Sex,
    /// Last covered day, once a termination is known.
    coverage_end: Option<Date>,
    /// First covered day.
    coverage_start: Date,
    died: Option<Date>,
}

struct Family {
    id: String,
    subscriber: usize,
    members: Vec<usize>,
    tier: usize,
    region: usize,
    terminated: bool,
}

struct World<'c> {
    config: &'c GeneratorConfig,
    rng: Rng,
    id_prefix: String,
    seq: u64,
    /// Events not yet emitted, bucketed by UTC day of their event time. A day is sorted once,
    /// when it is emitted: cheaper than keeping a heap ordered on every push.
    queue: BTreeMap<i32, Vec<Pending>>,
    /// Days before this one have been emitted; nothing may be scheduled there any more.
    emitted_before: i32,
    /// Plans by (plan year, tier index).
    plans: BTreeMap<(i32, usize), Plan>,
    providers: Vec<Provider>,
    /// Provider indices by region and facility type (`region * 4 + type`), and by type alone.
    by_region_type: Vec<Vec<usize>>,
    by_type: [Vec<usize>; 4],
    members: Vec<Member>,
    families: Vec<Family>,
    /// Members whose coverage ended (phantom-billing candidates).
    ended: Vec<usize>,
    /// NIK serials used, by (regency, district, birth date).
    nik_serials: HashMap<(usize, u32, Date), u32>,
    counters: Counters,
    summary: Summary,
    region_weights: Vec<u32>,
    encounter_weights: Vec<u32>,
    tier_weights: Vec<u32>,
}

#[derive(Default)]
struct Counters {
    claim: u64,
    auth: u64,
    payment: u64,
    request: u64,
}

/// Runs the generator on this thread and `consume` on another, handing it batches through a
/// bounded channel: on two cores, encoding and writing then overlap with generating. The
/// order `consume` sees is exactly [`generate`]'s. Stops at the first error `consume` returns.
pub fn generate_in_parallel<E: Send>(
    config: &GeneratorConfig,
    mut consume: impl FnMut(Output) -> Result<(), E> + Send,
) -> Result<Summary, E> {
    const BATCH: usize = 2048;
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<Output>>(8);
    std::thread::scope(|scope| {
        let consumer = scope.spawn(move || -> Result<(), E> {
            for batch in receiver {
                for output in batch {
                    consume(output)?;
                }
            }
            Ok(())
        });
        let mut batch = Vec::with_capacity(BATCH);
        // A send fails only when the consumer has stopped, i.e. returned an error; the
        // generator then stops too and the consumer's error is returned below.
        let generated = generate(config, |output| {
            batch.push(output);
            if batch.len() == BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                sender.send(full).map_err(|_| ())?;
            }
            Ok::<(), ()>(())
        });
        if generated.is_ok() && !batch.is_empty() {
            let _ = sender.send(batch);
        }
        drop(sender);
        let consumed = consumer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        consumed?;
        Ok(generated.expect("the generator stops early only when the consumer failed"))
    })
}

/// Runs the generator, handing every event and label to `emit` in event-time order.
/// Stops at the first error `emit` returns. The configuration must be valid
/// ([`GeneratorConfig::validate`]).
pub fn generate<E>(config: &GeneratorConfig, mut emit: impl FnMut(Output) -> Result<(), E>) -> Result<Summary, E> {
    let mut world = World::new(config);
    world.setup();
    let start = config.start;
    let days = config.days as i32;
    for i in 0..days + LOOKAHEAD {
        let today = start.add_days(i - LOOKAHEAD);
        world.flush_before(today.0, &mut emit)?;
        if today >= start {
            world.membership_day(today);
        }
        let service_day = today.add_days(LOOKAHEAD);
        if service_day < start.add_days(days) {
            world.claims_day(service_day, i - LOOKAHEAD, &mut emit)?;
        }
    }
    world.flush_before(i32::MAX, &mut emit)?;
    Ok(world.summary)
}

impl<'c> World<'c> {
    fn new(config: &'c GeneratorConfig) -> Self {
        World {
            config,
            rng: Rng::new(config.seed),
            id_prefix: format!("g{:x}", config.seed),
            seq: 0,
            queue: BTreeMap::new(),
            emitted_before: i32::MIN,
            plans: BTreeMap::new(),
            providers: Vec::new(),
            by_region_type: vec![Vec::new(); REGIONS.len() * 4],
            by_type: Default::default(),
            members: Vec::new(),
            families: Vec::new(),
            ended: Vec::new(),
            nik_serials: HashMap::new(),
            counters: Counters::default(),
            summary: Summary::default(),
            region_weights: REGIONS.iter().map(|r| r.weight).collect(),
            encounter_weights: ENCOUNTERS.iter().map(|e| e.weight).collect(),
            tier_weights: TIERS.iter().map(|t| t.weight).collect(),
        }
    }

    /// The id of the next event pushed (ids follow the push sequence).
    fn event_id(&self) -> String {
        padded_id(&self.id_prefix, self.seq + 1, 10)
    }

    fn push(&mut self, event: Event) {
        self.seq += 1;
        let time = event.event_time();
        let day = time.date().0;
        assert!(day >= self.emitted_before, "event scheduled on {} after that day was emitted", time.date());
        self.queue.entry(day).or_default().push(Pending { time, seq: self.seq, event: Box::new(event) });
    }

    /// Emits, in (event time, sequence) order, every event of the days before `day`.
    fn flush_before<E>(&mut self, day: i32, emit: &mut impl FnMut(Output) -> Result<(), E>) -> Result<(), E> {
        self.emitted_before = self.emitted_before.max(day);
        while let Some(entry) = self.queue.first_entry() {
            if *entry.key() >= day {
                break;
            }
            let mut pending = entry.remove();
            pending.sort_unstable_by_key(|p| (p.time, p.seq));
            for p in pending {
                let summary = &mut self.summary;
                *summary.events.entry(p.event.kind().name()).or_default() += 1;
                summary.total_events += 1;
                summary.first_event_time.get_or_insert(p.time);
                summary.last_event_time = Some(p.time);
                emit(Output::Event(*p.event))?;
            }
        }
        Ok(())
    }

    /// A time on `day` between the two hours (local business hours are UTC+7; the
    /// generator keeps UTC and lets hours fall where they fall).
    fn time_on(&mut self, day: Date, from_hour: i64, to_hour: i64) -> Timestamp {
        day.start().add_millis(self.rng.range(from_hour * HOUR_MS, to_hour * HOUR_MS - 1))
    }

    // ---- the book of business at the start ------------------------------------------

    fn setup(&mut self) {
        let start = self.config.start;
        let last_day = start.add_days(self.config.days as i32 - 1);
        for year in start.year()..=last_day.year() {
            self.create_plans(year);
        }
        for i in 0..self.config.provider_count() {
            self.onboard_provider(i);
        }
        let target = self.config.member_count();
        let enrolled_at = start.add_days(-1).start();
        let plan_year_start = Date::from_ymd(start.year(), 1, 1).unwrap_or(start);
        while (self.members.len() as u64) < target {
            let time = enrolled_at.add_millis((self.members.len() as i64 * 997) % (24 * HOUR_MS));
            self.create_family(time, plan_year_start);
        }
    }

    fn create_plans(&mut self, year: i32) {
        let year_start = Date::from_ymd(year, 1, 1).unwrap_or(self.config.start);
        // A month before the plan year (or the run) starts; a plan first needed later (a
        // family enrolling into next year) is created as soon as it is needed.
        let frontier =
            if self.emitted_before == i32::MIN { Timestamp(i64::MIN) } else { Date(self.emitted_before).start() };
        let created = year_start.min(self.config.start).add_days(-30).start().max(frontier);
        for (tier_index, rules) in TIERS.iter().enumerate() {
            let plan_id = format!("{}-{year}", rules.tier);
            let benefits = benefits(rules, 0);
            let event = PlanCreated {
                event_id: self.event_id(),
                event_time: created.add_millis(tier_index as i64 * 60_000),
                plan_id: plan_id.clone(),
                name: format!("{} {year}", rules.name),
                tier: rules.tier,
                plan_year: year,
                version: 1,
                benefits,
            };
            self.push(event.into());
            self.plans.insert((year, tier_index), Plan { id: plan_id, rules, version: 1 });
        }
    }

    fn onboard_provider(&mut self, index: u64) {
        // Every facility type exists at least once; the rest follow the usual mix.
        let provider_type = match index {
            0 => ProviderType::HOSPITAL,
            1 => ProviderType::CLINIC,
            2 => ProviderType::LAB,
            3 => ProviderType::PHARMACY,
            _ => [ProviderType::HOSPITAL, ProviderType::CLINIC, ProviderType::LAB, ProviderType::PHARMACY]
                [self.rng.weighted(&[15, 50, 15, 20])],
        };
        let region = self.rng.weighted(&self.region_weights);
        let r: &Region = &REGIONS[region];
        let id = format!("P{:05}", index + 1);
        let in_network = self.rng.chance_bp(8_500);
        let lat_e6 = r.lat_e6 + self.rng.range(-60_000, 60_000) as i32;
        let lon_e6 = r.lon_e6 + self.rng.range(-60_000, 60_000) as i32;
        let specialties = reference::specialties(provider_type);
        let take = 1 + self.rng.below(specialties.len() as u64) as usize;
        let onboarded = self.config.start.add_days(-20).start().add_millis(index as i64 * 1_000);
        let kind_name = match provider_type {
            ProviderType::HOSPITAL => "RS",
            ProviderType::CLINIC => "Klinik",
            ProviderType::LAB => "Lab Klinik",
            ProviderType::PHARMACY => "Apotek",
        };
        let family = *self.rng.pick(reference::FAMILY_NAMES);
        let event = ProviderOnboarded {
            event_id: self.event_id(),
            event_time: onboarded,
            provider_id: id.clone(),
            name: format!("{kind_name} {family} {}", r.city),
            provider_type,
            province_code: r.province_code.to_owned(),
            regency_code: r.regency_code.to_owned(),
            city: r.city.to_owned(),
            latitude_e6: lat_e6,
            longitude_e6: lon_e6,
            network_status: if in_network { NetworkStatus::IN_NETWORK } else { NetworkStatus::OUT_OF_NETWORK },
            specialties: specialties[..take].iter().map(|s| (*s).to_owned()).collect(),
        };
        self.push(event.into());
        let mut fees = Vec::new();
        if in_network {
            let mut schedule = Vec::new();
            for procedure in reference::PROCEDURES {
                // Contracted at 75–95% of list, rounded to a thousand rupiah.
                let pct = self.rng.range(75, 95);
                let fee = round_thousand(procedure.price_idr * pct / 100);
                fees.push(fee);
                schedule.push(FeeScheduleEntry {
                    procedure_code: procedure.code.to_owned(),
                    contracted_amount_idr: Idr(fee),
                });
            }
            let event = ContractUpdated {
                event_id: self.event_id(),
                event_time: onboarded.add_millis(HOUR_MS),
                provider_id: id.clone(),
                contract_id: format!("K-{id}-1"),
                network_status: NetworkStatus::IN_NETWORK,
                effective_date: self.config.start.add_days(-20),
                end_date: None,
                fee_schedule: schedule,
            };
            self.push(event.into());
        }
        let markup_pct = self.rng.range(100, 130);
        let provider_index = self.providers.len();
        self.by_region_type[region * 4 + provider_type as usize].push(provider_index);
        self.by_type[provider_type as usize].push(provider_index);
        self.providers.push(Provider { id, lat_e6, lon_e6, markup_pct, fees });
        self.summary.providers += 1;
    }

    fn create_family(&mut self, time: Timestamp, effective: Date) {
        let family_index = self.families.len();
        let family_id = format!("F{:08}", family_index + 1);
        let region = self.rng.weighted(&self.region_weights);
        let tier = self.rng.weighted(&self.tier_weights);
        self.families.push(Family {
            id: family_id,
            subscriber: self.members.len(),
            members: Vec::new(),
            tier,
            region,
            terminated: false,
        });
        self.summary.families += 1;
        let today = effective.max(time.date());
        let subscriber_age_days = self.rng.range(22 * 365, 64 * 365) as i32;
        let subscriber_sex = if self.rng.chance_bp(5_500) { Sex::MALE } else { Sex::FEMALE };
        let family_name = *self.rng.pick(reference::FAMILY_NAMES);
        self.add_member(
            family_index,
            Relationship::SUBSCRIBER,
            today.add_days(-subscriber_age_days),
            subscriber_sex,
            family_name,
            time,
            effective,
            None,
        );
        if self.rng.chance_bp(6_000) {
            let spouse_sex = if subscriber_sex == Sex::MALE { Sex::FEMALE } else { Sex::MALE };
            let age = (subscriber_age_days + self.rng.range(-5 * 365, 5 * 365) as i32).max(20 * 365);
            self.add_member(
                family_index,
                Relationship::SPOUSE,
                today.add_days(-age),
                spouse_sex,
                family_name,
                time,
                effective,
                None,
            );
            let children = self.rng.weighted(&[25, 30, 30, 15]);
            for _ in 0..children {
                let max_age = (subscriber_age_days - 18 * 365).clamp(1, 21 * 365);
                let age = self.rng.range(0, i64::from(max_age)) as i32;
                let sex = if self.rng.chance_bp(5_000) { Sex::MALE } else { Sex::FEMALE };
                self.add_member(
                    family_index,
                    Relationship::CHILD,
                    today.add_days(-age),
                    sex,
                    family_name,
                    time,
                    effective,
                    None,
                );
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn add_member(
        &mut self,
        family: usize,
        relationship: Relationship,
        dob: Date,
        sex: Sex,
        family_name: &str,
        time: Timestamp,
        effective: Date,
        reason: Option<&str>,
    ) {
        let member_index = self.members.len();
        let member_id = format!("M{:09}", member_index + 1);
        let region = self.families[family].region;
        let r = &REGIONS[region];
        let district = 1 + self.rng.below(20) as u32;
        let serial = self.nik_serials.entry((region, district, dob)).or_insert(0);
        *serial = *serial % 9_999 + 1;
        let nik = make_nik(r.regency_code, district, dob, sex, *serial);
        let given = *self.rng.pick(if sex == Sex::MALE { reference::MALE_NAMES } else { reference::FEMALE_NAMES });
        let phone =
            (relationship != Relationship::CHILD).then(|| format!("+628{:010}", self.rng.below(10_000_000_000)));
        let email = phone.as_ref().map(|_| {
            format!("{}.{}{}@example.com", given.to_lowercase(), family_name.to_lowercase(), member_index % 1000)
        });
        let fam = &self.families[family];
        let subscriber_id = if relationship == Relationship::SUBSCRIBER {
            member_id.clone()
        } else {
            self.members[fam.subscriber].id.clone()
        };
        let family_id = fam.id.clone();
        let plan_id = self.plan_for(effective.year(), fam.tier).id.clone();
        let created = MemberCreated {
            event_id: self.event_id(),
            event_time: time,
            member_id: member_id.clone(),
            family_id: family_id.clone(),
            subscriber_id: subscriber_id.clone(),
            relationship,
            nik,
            full_name: format!("{given} {family_name}"),
            date_of_birth: dob,
            sex,
            province_code: r.province_code.to_owned(),
            regency_code: r.regency_code.to_owned(),
            city: r.city.to_owned(),
            phone,
            email,
        };
        self.push(created.into());
        let enrolled = CoverageChanged {
            event_id: self.event_id(),
            event_time: time.add_millis(1),
            member_id: member_id.clone(),
            family_id,
            subscriber_id,
            change_type: CoverageChangeType::ENROLLED,
            plan_id,
            effective_date: effective,
            end_date: None,
            reason: reason.map(str::to_owned),
        };
        self.push(enrolled.into());
        self.families[family].members.push(member_index);
        self.members.push(Member {
            id: member_id,
            family,
            dob,
            sex,
            coverage_end: None,
            coverage_start: effective,
            died: None,
        });
        self.summary.members += 1;
    }

    fn plan_for(&mut self, year: i32, tier: usize) -> &Plan {
        if !self.plans.contains_key(&(year, tier)) {
            self.create_plans(year);
        }
        &self.plans[&(year, tier)]
    }

    // ---- membership over time ----------------------------------------------------------

    /// How many of `population` experience a change whose monthly rate is `monthly_bp`
    /// today: the expected count, with its fraction settled by a draw.
    fn daily_count(&mut self, population: u64, monthly_bp: u64) -> u64 {
        let scaled = population * monthly_bp;
        let per_day = 30 * 10_000;
        scaled / per_day + u64::from(self.rng.below(per_day) < scaled % per_day)
    }

    fn membership_day(&mut self, today: Date) {
        let (year, month, day) = today.ymd();
        if month == 1 && day == 1 && today != self.config.start {
            self.renew_plan_year(today);
        }
        if month == 7 && day == 1 {
            self.update_benefits(today);
        }
        let first_of_next_month = first_of_next_month(year, month);
        let families = self.families.len() as u64;
        let members = self.members.len() as u64;
        for _ in 0..self.daily_count(families, 80) {
            self.terminate_family(today, first_of_next_month);
        }
        for _ in 0..self.daily_count(members, 3) {
            self.record_death(today);
        }
        for _ in 0..self.daily_count(families, 60) {
            let time = self.time_on(today, 1, 10);
            self.create_family(time, first_of_next_month);
        }
        for _ in 0..self.daily_count(families, 10) {
            self.add_newborn(today);
        }
        for _ in 0..self.daily_count(members, 50) {
            self.update_demographics(today);
        }
    }

    fn random_active_family(&mut self) -> Option<usize> {
        (0..8).map(|_| self.rng.below(self.families.len() as u64) as usize).find(|&f| !self.families[f].terminated)
    }

    fn terminate_family(&mut self, today: Date, effective: Date) {
        let Some(family) = self.random_active_family() else {
            return;
        };
        self.families[family].terminated = true;
        let reason = if self.rng.chance_bp(6_000) { "VOLUNTARY" } else { "NON_PAYMENT" };
        let time = self.time_on(today, 1, 10);
        for member in self.families[family].members.clone() {
            if self.members[member].coverage_end.is_some() {
                continue;
            }
            self.end_coverage(member, time, effective, reason);
        }
    }

    /// Pushes a `CoverageChanged` for an existing member: (kind, plan, effective date, end
    /// date, reason), with the member's family and subscriber filled in.
    fn push_coverage_change(
        &mut self,
        member: usize,
        time: Timestamp,
        (change_type, plan_id, effective_date, end_date, reason): (
            CoverageChangeType,
            String,
            Date,
            Option<Date>,
            &str,
        ),
    ) {
        let fam = &self.families[self.members[member].family];
        let event = CoverageChanged {
            event_id: self.event_id(),
            event_time: time,
            member_id: self.members[member].id.clone(),
            family_id: fam.id.clone(),
            subscriber_id: self.members[fam.subscriber].id.clone(),
            change_type,
            plan_id,
            effective_date,
            end_date,
            reason: Some(reason.to_owned()),
        };
        self.push(event.into());
    }

    fn end_coverage(&mut self, member: usize, time: Timestamp, effective: Date, reason: &str) {
        let tier = self.families[self.members[member].family].tier;
        let plan_id = self.plans[&(effective.add_days(-1).year().max(self.config.start.year()), tier)].id.clone();
        let change = (CoverageChangeType::TERMINATED, plan_id, effective, Some(effective.add_days(-1)), reason);
        self.push_coverage_change(member, time, change);
        self.members[member].coverage_end = Some(effective.add_days(-1));
        self.ended.push(member);
    }

    fn record_death(&mut self, today: Date) {
        let member = self.rng.below(self.members.len() as u64) as usize;
        if self.members[member].died.is_some() || self.members[member].coverage_end.is_some() {
            return;
        }
        let died = today.add_days(-(self.rng.range(1, 5) as i32));
        self.members[member].died = Some(died);
        let time = self.time_on(today, 1, 10);
        let event = MemberUpdated { date_of_death: Some(died), ..self.member_update(member, time) };
        self.push(event.into());
        self.end_coverage(member, time.add_millis(1), died.add_days(1), "DEATH");
    }

    /// A `MemberUpdated` for `member` that changes nothing yet: callers set the fields that
    /// changed.
    fn member_update(&self, member: usize, time: Timestamp) -> MemberUpdated {
        MemberUpdated {
            event_id: self.event_id(),
            event_time: time,
            member_id: self.members[member].id.clone(),
            full_name: None,
            province_code: None,
            regency_code: None,
            city: None,
            phone: None,
            email: None,
            date_of_death: None,
        }
    }

    fn add_newborn(&mut self, today: Date) {
        let Some(family) = self.random_active_family() else {
            return;
        };
        let has_spouse = self.families[family].members.iter().any(|&m| self.members[m].sex == Sex::FEMALE);
        if !has_spouse {
            return;
        }
        // Born in the last ten days, but within this plan year and the simulated period, so
        // the newborn's coverage starts under a plan that exists.
        let year_start = Date::from_ymd(today.year(), 1, 1).unwrap_or(today);
        let born = today.add_days(-(self.rng.range(0, 10) as i32)).max(year_start).max(self.config.start);
        let sex = if self.rng.chance_bp(5_000) { Sex::MALE } else { Sex::FEMALE };
        let family_name = *self.rng.pick(reference::FAMILY_NAMES);
        let time = self.time_on(today, 1, 10);
        self.add_member(family, Relationship::CHILD, born, sex, family_name, time, born, Some("NEW_DEPENDENT"));
    }

    fn update_demographics(&mut self, today: Date) {
        let member = self.rng.below(self.members.len() as u64) as usize;
        let time = self.time_on(today, 1, 10);
        let mut event = self.member_update(member, time);
        if self.rng.chance_bp(5_000) {
            event.phone = Some(format!("+628{:010}", self.rng.below(10_000_000_000)));
        } else {
            let r = &REGIONS[self.rng.weighted(&self.region_weights)];
            event.province_code = Some(r.province_code.to_owned());
            event.regency_code = Some(r.regency_code.to_owned());
            event.city = Some(r.city.to_owned());
        }
        self.push(event.into());
    }

    fn renew_plan_year(&mut self, today: Date) {
        let year = today.year();
        for family in 0..self.families.len() {
            if self.families[family].terminated {
                continue;
            }
            if self.rng.chance_bp(1_000) {
                self.families[family].tier = self.rng.weighted(&self.tier_weights);
            }
            let plan_id = self.plan_for(year, self.families[family].tier).id.clone();
            let time = self.time_on(today, 0, 1);
            for member in self.families[family].members.clone() {
                if self.members[member].coverage_end.is_some() {
                    continue;
                }
                let change = (CoverageChangeType::PLAN_CHANGED, plan_id.clone(), today, None, "PLAN_YEAR_RENEWAL");
                self.push_coverage_change(member, time, change);
            }
        }
    }

    /// Mid-year benefit change: the Silver plan's copay rises by 25,000.
    fn update_benefits(&mut self, today: Date) {
        let year = today.year();
        let Some(plan) = self.plans.get_mut(&(year, 1)) else {
            return;
        };
        plan.version += 1;
        let (plan_id, version, rules) = (plan.id.clone(), plan.version, plan.rules);
        let event = BenefitUpdated {
            event_id: self.event_id(),
            event_time: today.start().add_millis(2 * HOUR_MS),
            plan_id,
            version,
            effective_date: today.add_days(14),
            benefits: benefits(rules, 25_000),
        };
        self.push(event.into());
    }

    // ---- claims ------------------------------------------------------------------------

    fn covered(&self, member: usize, day: Date) -> bool {
        let m = &self.members[member];
        m.coverage_start <= day && m.coverage_end.is_none_or(|end| day <= end) && m.dob <= day
    }

    fn pick_member(&mut self, day: Date) -> usize {
        let mut member = 0;
        // Mostly covered members; the few uncovered ones left make eligibility denials.
        for _ in 0..4 {
            member = self.rng.below(self.members.len() as u64) as usize;
            if self.covered(member, day) {
                break;
            }
        }
        member
    }

    fn pick_encounter(&mut self, member: usize, day: Date) -> &'static Encounter {
        let age = day.days_since(self.members[member].dob) / 365;
        let female = self.members[member].sex == Sex::FEMALE;
        for _ in 0..6 {
            let e = &ENCOUNTERS[self.rng.weighted(&self.encounter_weights)];
            if (e.ages.0..=e.ages.1).contains(&age) && (!e.ages.2 || female) {
                return e;
            }
        }
        &ENCOUNTERS[0]
    }

    fn pick_provider(&mut self, provider_type: ProviderType, region: usize) -> usize {
        let local = &self.by_region_type[region * 4 + provider_type as usize];
        if self.rng.chance_bp(8_000) && !local.is_empty() {
            return local[self.rng.below(local.len() as u64) as usize];
        }
        let all = &self.by_type[provider_type as usize];
        all[self.rng.below(all.len() as u64) as usize]
    }

    fn claims_day<E>(
        &mut self,
        day: Date,
        day_index: i32,
        emit: &mut impl FnMut(Output) -> Result<(), E>,
    ) -> Result<(), E> {
        let days = u64::from(self.config.days);
        let base = self.config.claims / days;
        let extra = u64::from((day_index as u64) < self.config.claims % days);
        for _ in 0..base + extra {
            if self.rng.chance_bp(self.config.fraud_rate_bp) {
                let pattern = FraudPattern::ALL[self.rng.weighted(&[30, 15, 15, 10, 10, 1, 10])];
                self.fraud_claim(day, pattern, emit)?;
            } else {
                let member = self.pick_member(day);
                let encounter = self.pick_encounter(member, day);
                let region = self.families[self.members[member].family].region;
                let provider = self.pick_provider(encounter.provider_type, region);
                let lines = self.bill_lines(encounter, provider, day);
                self.submit(member, provider, encounter, lines, day, true);
            }
        }
        Ok(())
    }

    fn bill_lines(&mut self, encounter: &Encounter, provider: usize, day: Date) -> Vec<ClaimLine> {
        let mut lines = Vec::with_capacity(encounter.lines.len());
        for template in encounter.lines {
            if !self.rng.chance_bp(template.presence_bp) {
                continue;
            }
            let units = self.rng.range(i64::from(template.min_units), i64::from(template.max_units)) as i32;
            lines.push(self.line(template.code, encounter.diagnosis, units, provider, day));
        }
        if lines.is_empty() {
            let t = encounter.lines[0];
            lines.push(self.line(t.code, encounter.diagnosis, t.min_units, provider, day));
        }
        for (i, line) in lines.iter_mut().enumerate() {
            line.line_number = i as i32 + 1;
        }
        lines
    }

    fn line(&mut self, code: &'static str, diagnosis: &str, units: i32, provider: usize, day: Date) -> ClaimLine {
        let procedure = reference::procedure(code);
        let unit_charge = round_thousand(procedure.price_idr * self.providers[provider].markup_pct / 100);
        ClaimLine {
            line_number: 0,
            procedure_code: code.to_owned(),
            diagnosis_code: diagnosis.to_owned(),
            service_date: day,
            units,
            charge_amount_idr: Idr(unit_charge * i64::from(units)),
            minutes: procedure.minutes.map(|m| m * units),
        }
    }

    /// Plans and pushes a claim (with its eligibility check, authorization and payment) and
    /// returns its id and submission time.
    fn submit(
        &mut self,
        member: usize,
        provider: usize,
        encounter: &Encounter,
        lines: Vec<ClaimLine>,
        day: Date,
        pay: bool,
    ) -> (String, Timestamp) {
        self.submit_at(member, provider, encounter, lines, day, pay, None)
    }

    /// [`Self::submit`], submitted no earlier than `not_before` when given.
    #[allow(clippy::too_many_arguments)]
    fn submit_at(
        &mut self,
        member: usize,
        provider: usize,
        encounter: &Encounter,
        lines: Vec<ClaimLine>,
        day: Date,
        pay: bool,
        not_before: Option<Timestamp>,
    ) -> (String, Timestamp) {
        let member_id = self.members[member].id.clone();
        let provider_id = self.providers[provider].id.clone();
        if self.rng.chance_bp(3_000) {
            self.counters.request += 1;
            let event = EligibilityRequested {
                event_id: self.event_id(),
                event_time: self.time_on(day, 0, 2),
                request_id: padded_id("ER", self.counters.request, 10),
                member_id: member_id.clone(),
                service_date: day,
                service_type: lines[0].procedure_code.clone(),
                provider_id: Some(provider_id.clone()),
            };
            self.push(event.into());
        }
        let auth_id = self.authorize(member, provider, encounter, &lines, day);
        self.counters.claim += 1;
        let claim_id = padded_id("C", self.counters.claim, 10);
        let delay_days = match self.rng.weighted(&[70, 22, 7, 1]) {
            0 => self.rng.range(0, 2),
            1 => self.rng.range(3, 14),
            2 => self.rng.range(15, 45),
            _ => self.rng.range(60, 120),
        } as i32;
        if delay_days > 14 {
            self.summary.late_claims += 1;
        }
        let submitted = self.time_on(day.add_days(delay_days), 2, 12).max(not_before.unwrap_or(Timestamp(i64::MIN)));
        let total = lines.iter().map(|l| l.charge_amount_idr).sum::<Idr>();
        self.summary.billed_idr += total.0;
        self.summary.claims += 1;
        let mut diagnosis_codes: Vec<String> = Vec::new();
        for line in &lines {
            if !diagnosis_codes.contains(&line.diagnosis_code) {
                diagnosis_codes.push(line.diagnosis_code.clone());
            }
        }
        let allowed: i64 = lines
            .iter()
            .map(|l| {
                let fees = &self.providers[provider].fees;
                match reference::procedure_index(&l.procedure_code).and_then(|i| fees.get(i)) {
                    Some(fee) => (fee * i64::from(l.units)).min(l.charge_amount_idr.0),
                    None => l.charge_amount_idr.0,
                }
            })
            .sum();
        let event = ClaimSubmitted {
            event_id: self.event_id(),
            event_time: submitted,
            claim_id: claim_id.clone(),
            member_id,
            provider_id,
            claim_type: encounter.claim_type,
            service_date: day,
            auth_id,
            diagnosis_codes,
            lines,
            total_charge_idr: total,
            currency: "IDR".to_owned(),
            original_claim_id: None,
        };
        self.push(event.clone().into());
        if pay && self.covered(member, day) {
            self.pay(&event, Idr(allowed));
        }
        (claim_id, submitted)
    }

    fn authorize(
        &mut self,
        member: usize,
        provider: usize,
        encounter: &Encounter,
        lines: &[ClaimLine],
        day: Date,
    ) -> Option<String> {
        let line = lines.iter().find(|l| reference::procedure(&l.procedure_code).needs_auth)?;
        if !self.rng.chance_bp(9_000) {
            return None; // billed without asking: the claim will lack its authorization
        }
        self.counters.auth += 1;
        let auth_id = padded_id("A", self.counters.auth, 9);
        let member_id = self.members[member].id.clone();
        let days_before = self.rng.range(1, i64::from(LOOKAHEAD) - 1) as i32;
        let requested_at = self.time_on(day.add_days(-days_before), 1, 9);
        let request = AuthRequested {
            event_id: self.event_id(),
            event_time: requested_at,
            auth_id: auth_id.clone(),
            member_id: member_id.clone(),
            provider_id: self.providers[provider].id.clone(),
            procedure_code: line.procedure_code.clone(),
            diagnosis_code: encounter.diagnosis.to_owned(),
            requested_units: line.units,
            service_date_from: day,
            service_date_to: day.add_days(30),
        };
        self.push(request.into());
        let decided_at = requested_at.add_millis(self.rng.range(2, 20) * HOUR_MS);
        if self.rng.chance_bp(9_400) {
            let approved_units = if self.rng.chance_bp(1_000) { (line.units - 1).max(0) } else { line.units };
            let event = AuthApproved {
                event_id: self.event_id(),
                event_time: decided_at,
                auth_id: auth_id.clone(),
                member_id,
                procedure_code: line.procedure_code.clone(),
                approved_units,
                valid_from: day.add_days(-1),
                valid_to: day.add_days(30),
            };
            self.push(event.into());
        } else {
            let event = AuthDenied {
                event_id: self.event_id(),
                event_time: decided_at,
                auth_id: auth_id.clone(),
                member_id,
                reason_code: "NOT_MEDICALLY_NECESSARY".to_owned(),
                reason: "clinical criteria for the procedure not met".to_owned(),
            };
            self.push(event.into());
        }
        Some(auth_id)
    }

    /// Payment of a covered claim. The generator prices it at the contracted (allowed)
    /// amount; it does not adjudicate, so the amount is the payment system's view, not the
    /// plan's decision. Some payments fail; retryable failures are paid on a second attempt.
    fn pay(&mut self, claim: &ClaimSubmitted, amount: Idr) {
        let mut at = claim.event_time.add_millis(self.rng.range(3, 10) * 24 * HOUR_MS);
        for attempt in 0..2 {
            self.counters.payment += 1;
            let payment_id = padded_id("PAY", self.counters.payment, 10);
            let initiated = PaymentInitiated {
                event_id: self.event_id(),
                event_time: at,
                payment_id: payment_id.clone(),
                claim_id: claim.claim_id.clone(),
                member_id: claim.member_id.clone(),
                provider_id: claim.provider_id.clone(),
                amount_idr: amount,
                currency: "IDR".to_owned(),
                method: if self.rng.chance_bp(7_000) {
                    PaymentMethod::BANK_TRANSFER
                } else {
                    PaymentMethod::VIRTUAL_ACCOUNT
                },
            };
            self.push(initiated.into());
            let settled = at.add_millis(self.rng.range(2, 36) * HOUR_MS);
            if attempt == 1 || self.rng.chance_bp(9_700) {
                let event = PaymentCompleted {
                    event_id: self.event_id(),
                    event_time: settled,
                    payment_id,
                    claim_id: claim.claim_id.clone(),
                    amount_idr: amount,
                    bank_reference: padded_id("BNK", self.rng.below(1_000_000_000_000), 12),
                };
                self.push(event.into());
                return;
            }
            let (code, reason, retryable) = *self.rng.pick(&[
                ("ACCOUNT_CLOSED", "payee account is closed", false),
                ("INVALID_ACCOUNT", "payee account number is invalid", false),
                ("BANK_TIMEOUT", "bank did not answer in time", true),
            ]);
            let event = PaymentFailed {
                event_id: self.event_id(),
                event_time: settled,
                payment_id,
                claim_id: claim.claim_id.clone(),
                amount_idr: amount,
                failure_code: code.to_owned(),
                failure_reason: reason.to_owned(),
                retryable,
            };
            self.push(event.into());
            if !retryable {
                return;
            }
            at = settled.add_millis(self.rng.range(1, 3) * 24 * HOUR_MS);
        }
    }

    // ---- fraud -------------------------------------------------------------------------

    fn label<E>(&mut self, emit: &mut impl FnMut(Output) -> Result<(), E>, label: FraudLabel) -> Result<(), E> {
        *self.summary.fraud.entry(label.pattern.as_str()).or_default() += 1;
        emit(Output::Label(label))
    }

    fn encounter_named(name: &str) -> &'static Encounter {
        ENCOUNTERS.iter().find(|e| e.name == name).unwrap_or(&ENCOUNTERS[0])
    }

    fn fraud_claim<E>(
        &mut self,
        day: Date,
        pattern: FraudPattern,
        emit: &mut impl FnMut(Output) -> Result<(), E>,
    ) -> Result<(), E> {
        let member = self.pick_member(day);
        let region = self.families[self.members[member].family].region;
        match pattern {
            FraudPattern::Duplicate => {
                let encounter = self.pick_encounter(member, day);
                let provider = self.pick_provider(encounter.provider_type, region);
                let lines = self.bill_lines(encounter, provider, day);
                let (original, submitted) = self.submit(member, provider, encounter, lines.clone(), day, true);
                let mut copy = lines;
                let exact = self.rng.chance_bp(5_000);
                if !exact {
                    let line = &mut copy[0];
                    let bump = round_thousand(line.charge_amount_idr.0 * self.rng.range(1, 4) / 100).max(1_000);
                    line.charge_amount_idr = Idr(line.charge_amount_idr.0 + bump);
                }
                let resubmitted = submitted.add_millis(self.rng.range(1, 10) * 24 * HOUR_MS);
                let (claim_id, _) = self.submit_at(member, provider, encounter, copy, day, false, Some(resubmitted));
                let detail = if exact {
                    "exact copy of an earlier claim"
                } else {
                    "copy of an earlier claim with one charge raised slightly"
                };
                let label = self.make_label(claim_id, pattern, member, provider, vec![original], detail);
                self.label(emit, label)
            }
            FraudPattern::Upcoding => {
                let encounter = Self::encounter_named("upper respiratory infection");
                let provider = self.pick_provider(encounter.provider_type, region);
                let mut lines = self.bill_lines(encounter, provider, day);
                let upcoded = self.line("99215", encounter.diagnosis, 1, provider, day);
                lines[0] = ClaimLine { line_number: 1, ..upcoded };
                let (claim_id, _) = self.submit(member, provider, encounter, lines, day, false);
                let label = self.make_label(
                    claim_id,
                    pattern,
                    member,
                    provider,
                    vec![],
                    "simple respiratory infection billed as a high-complexity visit (99215)",
                );
                self.label(emit, label)
            }
            FraudPattern::Unbundling => {
                let encounter = Self::encounter_named("hypertension follow-up");
                let provider = self.pick_provider(encounter.provider_type, region);
                let mut lines = vec![self.line("99214", encounter.diagnosis, 1, provider, day)];
                for code in reference::BMP_COMPONENTS {
                    lines.push(self.line(code, encounter.diagnosis, 1, provider, day));
                }
                for (i, line) in lines.iter_mut().enumerate() {
                    line.line_number = i as i32 + 1;
                }
                let (claim_id, _) = self.submit(member, provider, encounter, lines, day, false);
                let label = self.make_label(
                    claim_id,
                    pattern,
                    member,
                    provider,
                    vec![],
                    "basic metabolic panel (80048) billed as its six components",
                );
                self.label(emit, label)
            }
            FraudPattern::PhantomBilling => {
                let mut ghost = None;
                for _ in 0..if self.ended.is_empty() { 0 } else { 8 } {
                    let m = self.ended[self.rng.below(self.ended.len() as u64) as usize];
                    if self.members[m].coverage_end.is_some_and(|end| end < day) {
                        ghost = Some(m);
                        break;
                    }
                }
                let Some(ghost) = ghost else {
                    return self.fraud_claim(day, FraudPattern::Duplicate, emit);
                };
                let encounter = Self::encounter_named("low back pain with physiotherapy");
                let ghost_region = self.families[self.members[ghost].family].region;
                let provider = self.pick_provider(encounter.provider_type, ghost_region);
                let lines = self.bill_lines(encounter, provider, day);
                let (claim_id, _) = self.submit(ghost, provider, encounter, lines, day, false);
                let detail = if self.members[ghost].died.is_some() {
                    "services billed after the member's death"
                } else {
                    "services billed after the member's coverage ended"
                };
                let label = self.make_label(claim_id, pattern, ghost, provider, vec![], detail);
                self.label(emit, label)
            }
            FraudPattern::ExcessiveUnits => {
                let encounter = Self::encounter_named("low back pain with physiotherapy");
                let provider = self.pick_provider(encounter.provider_type, region);
                let units = self.rng.range(12, 20) as i32;
                let lines = vec![
                    ClaimLine { line_number: 1, ..self.line("99213", encounter.diagnosis, 1, provider, day) },
                    ClaimLine { line_number: 2, ..self.line("97110", encounter.diagnosis, units, provider, day) },
                ];
                let (claim_id, _) = self.submit(member, provider, encounter, lines, day, false);
                let detail = format!("{units} units (x15 min) of therapeutic exercise on one day");
                let label = self.make_label(claim_id, pattern, member, provider, vec![], &detail);
                self.label(emit, label)
            }
            FraudPattern::ImpossibleDay => {
                let encounter = Self::encounter_named("depression therapy");
                let provider = self.pick_provider(ProviderType::CLINIC, region);
                let sessions = self.rng.range(26, 32);
                let mut claim_ids = Vec::new();
                let mut members = Vec::new();
                for _ in 0..sessions {
                    let patient = self.pick_member(day);
                    let lines =
                        vec![ClaimLine { line_number: 1, ..self.line("90837", encounter.diagnosis, 1, provider, day) }];
                    let (claim_id, _) = self.submit(patient, provider, encounter, lines, day, false);
                    claim_ids.push(claim_id);
                    members.push(patient);
                }
                let detail = format!("{sessions} one-hour psychotherapy sessions billed by one provider on one day");
                for (i, claim_id) in claim_ids.iter().enumerate() {
                    let related = claim_ids.iter().filter(|c| *c != claim_id).cloned().collect();
                    let label = self.make_label(claim_id.clone(), pattern, members[i], provider, related, &detail);
                    self.label(emit, label)?;
                }
                Ok(())
            }
            FraudPattern::CardSharing => {
                let encounter = Self::encounter_named("upper respiratory infection");
                let near = self.pick_provider(encounter.provider_type, region);
                let lines = self.bill_lines(encounter, near, day);
                let (first, _) = self.submit(member, near, encounter, lines, day, true);
                let here = &self.providers[near];
                let (lat, lon) = (here.lat_e6, here.lon_e6);
                let far_clinics: Vec<usize> = self.by_type[ProviderType::CLINIC as usize]
                    .iter()
                    .copied()
                    .filter(|&p| {
                        reference::distance_km(lat, lon, self.providers[p].lat_e6, self.providers[p].lon_e6) >= 500
                    })
                    .collect();
                let Some(&far) = far_clinics.get(self.rng.below(far_clinics.len().max(1) as u64) as usize) else {
                    return self.fraud_claim(day, FraudPattern::Duplicate, emit);
                };
                let km = reference::distance_km(lat, lon, self.providers[far].lat_e6, self.providers[far].lon_e6);
                let lines = self.bill_lines(encounter, far, day);
                let (claim_id, _) = self.submit(member, far, encounter, lines, day, false);
                let detail = format!("same member treated the same day at facilities {km} km apart");
                let label = self.make_label(claim_id, pattern, member, far, vec![first], &detail);
                self.label(emit, label)
            }
        }
    }

    fn make_label(
        &self,
        claim_id: String,
        pattern: FraudPattern,
        member: usize,
        provider: usize,
        related: Vec<String>,
        detail: &str,
    ) -> FraudLabel {
        FraudLabel {
            claim_id,
            pattern,
            member_id: self.members[member].id.clone(),
            provider_id: self.providers[provider].id.clone(),
            related_claim_ids: related,
            detail: detail.to_owned(),
        }
    }
}

fn benefits(rules: &TierRules, copay_increase: i64) -> Benefits {
    Benefits {
        deductible_individual_idr: Idr(rules.deductible_individual_idr),
        deductible_family_idr: Idr(rules.deductible_individual_idr * 2),
        oop_max_individual_idr: Idr(rules.oop_max_individual_idr),
        oop_max_family_idr: Idr(rules.oop_max_individual_idr * 2),
        copay_idr: Idr(rules.copay_idr + copay_increase),
        coinsurance_bp: rules.coinsurance_bp,
        out_of_network_coinsurance_bp: rules.out_of_network_coinsurance_bp,
        annual_limit_idr: Idr(rules.annual_limit_idr),
        prior_auth_procedures: reference::PROCEDURES
            .iter()
            .filter(|p| p.needs_auth)
            .map(|p| p.code.to_owned())
            .collect(),
        excluded_procedures: rules.excluded.iter().map(|c| (*c).to_owned()).collect(),
    }
}

/// `prefix` followed by `n` zero-padded to `width` digits, without the formatting machinery
/// (ids are made for every event).
fn padded_id(prefix: &str, n: u64, width: usize) -> String {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = n;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let len = digits.len() - start;
    let mut id = String::with_capacity(prefix.len() + width.max(len));
    id.push_str(prefix);
    id.extend(std::iter::repeat_n('0', width.saturating_sub(len)));
    id.extend(digits[start..].iter().map(|&d| d as char));
    id
}

fn round_thousand(amount: i64) -> i64 {
    (amount + 500).div_euclid(1_000) * 1_000
}

fn first_of_next_month(year: i32, month: u32) -> Date {
    let (y, m) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    Date::from_ymd(y, m, 1).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::padded_id;

    #[test]
    fn padded_ids_match_format() {
        for (n, width) in [(0u64, 10usize), (7, 3), (123_456, 4), (u64::MAX, 10), (42, 0)] {
            assert_eq!(padded_id("X", n, width), format!("X{n:0width$}"));
        }
    }
}
