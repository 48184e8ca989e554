//! Commands in: a request becomes an event on a topic, answered `202 Accepted` with the event's
//! id. The gateway validates and publishes; the jobs decide.

use std::sync::Arc;

use arus_connectors::embedded::EmbeddedLog;
use arus_connectors::kafka::{KafkaConfig, KafkaTopics};
use arus_connectors::transport::{LogTopics, TopicSink};
use arus_schemas::events::{
    AuthRequested, ClaimLine, ClaimSubmitted, ClaimType, CoverageChangeType, CoverageChanged, MemberCreated,
    Relationship, Sex,
};
use arus_schemas::{Date, Event, Idr, Timestamp, wire};

use crate::openapi::{Id, IsoDate};

/// Where commands' events go.
pub trait Publisher: Send + Sync {
    /// Publishes an event to its topic, durably (acknowledged) before returning.
    fn publish(&self, event: &Event) -> Result<(), String>;

    /// Publishes events to their topics, all acknowledged before returning.
    fn publish_all(&self, events: &[Event]) -> Result<(), String> {
        events.iter().try_for_each(|event| self.publish(event))
    }
}

/// Events to their topics through a [`TopicSink`]: Kafka (topic names prefixed as the jobs
/// read them), or an embedded log (the demo's).
pub struct TopicPublisher {
    sink: Box<dyn TopicSink>,
    prefix: String,
}

impl TopicPublisher {
    /// A publisher to the brokers `brokers`, topics `<prefix><topic>`.
    pub fn kafka(brokers: &str, prefix: &str) -> Result<Self, String> {
        // A request waits for its event's delivery: ten seconds at most, then it is refused.
        let sink = KafkaTopics::new(&KafkaConfig::new(brokers), "lz4")
            .map_err(|e| e.to_string())?
            .with_flush_timeout(std::time::Duration::from_secs(10));
        Ok(TopicPublisher { sink: Box::new(sink), prefix: prefix.to_owned() })
    }

    /// A publisher to `log`.
    pub fn log(log: Arc<EmbeddedLog>) -> Self {
        TopicPublisher { sink: Box::new(LogTopics(log)), prefix: String::new() }
    }
}

impl Publisher for TopicPublisher {
    fn publish(&self, event: &Event) -> Result<(), String> {
        self.publish_all(std::slice::from_ref(event))
    }

    /// Sent together, acknowledged by one flush.
    fn publish_all(&self, events: &[Event]) -> Result<(), String> {
        for event in events {
            let bytes = wire::encode(event).map_err(|e| e.to_string())?;
            let topic = format!("{}{}", self.prefix, event.topic());
            self.sink.send(&topic, event.key().as_bytes(), &bytes, event.event_time()).map_err(|e| e.to_string())?;
        }
        self.sink.flush().map_err(|e| e.to_string())
    }
}

/// What the plausibility checks of commands allow, beyond their format.
#[derive(Debug, Clone, Copy)]
pub struct Plausible {
    /// The insurer's offset from UTC, in minutes, for what "today" is (Asia/Jakarta, WIB:
    /// +07:00, by default): a service date is never after today there.
    pub utc_offset_minutes: i32,
    /// Most one claim line may charge.
    pub max_line_charge: Idr,
    /// Most one claim may charge, all lines together.
    pub max_claim_charge: Idr,
}

impl Default for Plausible {
    fn default() -> Self {
        Plausible {
            utc_offset_minutes: 7 * 60,
            max_line_charge: Idr(2_000_000_000),
            max_claim_charge: Idr(10_000_000_000),
        }
    }
}

/// No service, coverage or authorization before this day is plausible.
pub const EARLIEST_SERVICE: &str = "2000-01-01";

/// A command's checks, at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Checks {
    /// Now: the event's time.
    pub now: Timestamp,
    /// Today where the insurer is.
    pub today: Date,
    /// What is plausible.
    pub plausible: Plausible,
}

impl Checks {
    /// The checks at `now` under `plausible`.
    pub fn at(now: Timestamp, plausible: Plausible) -> Self {
        let local = now.0 + i64::from(plausible.utc_offset_minutes) * 60_000;
        Checks { now, today: Date(local.div_euclid(86_400_000) as i32), plausible }
    }

    /// `day` of `field`, refused (422) before [`EARLIEST_SERVICE`].
    fn not_before_2000(&self, field: &'static str, day: Date) -> Result<Date, Invalid> {
        let earliest: Date = EARLIEST_SERVICE.parse().expect("a date");
        if day < earliest {
            return Err(Invalid { field, issue: format!("is before {EARLIEST_SERVICE}"), semantic: true });
        }
        Ok(day)
    }
}

/// A field that is wrong, and how; `semantic` for well-formed values that do not fit together
/// (422 rather than 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub issue: String,
    /// Well-formed but inconsistent.
    pub semantic: bool,
}

pub(crate) fn invalid(field: &'static str, issue: impl Into<String>) -> Invalid {
    Invalid { field, issue: issue.into(), semantic: false }
}

// The request types below are all `Option`s in Rust, so that a missing field gets a clear 400
// naming it; their `#[schema]` says what the server requires and enforces (the OpenAPI
// document is made from them). What a schema cannot say — fields that must agree with each
// other or with today — is refused with 422.

/// `POST /api/v1/members`.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "relationship": "SUBSCRIBER", "nik": "3171014703900012", "fullName": "Siti Aminah",
    "dateOfBirth": "1990-03-07", "sex": "FEMALE", "provinceCode": "31", "regencyCode": "3171", "city": "Jakarta"
}))]
pub struct NewMember {
    /// The new member's id (default: a fresh one).
    #[schema(value_type = Option<Id>)]
    member_id: Option<String>,
    /// The family; required for a spouse or child, fresh for a new subscriber by default.
    #[schema(value_type = Option<Id>)]
    family_id: Option<String>,
    /// The family's subscriber; required for a spouse or child.
    #[schema(value_type = Option<Id>)]
    subscriber_id: Option<String>,
    #[schema(value_type = Relationship, required = true)]
    relationship: Option<String>,
    /// The NIK (16 digits); it must encode the date of birth, sex, province and regency given.
    #[schema(value_type = String, required = true, pattern = "^[0-9]{16}$")]
    nik: Option<String>,
    #[schema(schema_with = text_100, required = true)]
    full_name: Option<String>,
    #[schema(value_type = IsoDate, required = true)]
    date_of_birth: Option<String>,
    #[schema(value_type = Sex, required = true)]
    sex: Option<String>,
    #[schema(value_type = String, required = true, pattern = "^[0-9]{2}$")]
    province_code: Option<String>,
    /// The regency: the NIK's first four digits.
    #[schema(value_type = String, required = true, pattern = "^[0-9]{4}$")]
    regency_code: Option<String>,
    #[schema(schema_with = text_100, required = true)]
    city: Option<String>,
    #[schema(schema_with = text_20)]
    phone: Option<String>,
    #[schema(schema_with = email)]
    email: Option<String>,
}

/// `POST /api/v1/members/{memberId}/coverage`.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({ "changeType": "ENROLLED", "planId": "SILVER-2026", "effectiveDate": "2026-01-01" }))]
pub struct CoverageCommand {
    #[schema(value_type = CoverageChangeType, required = true)]
    change_type: Option<String>,
    #[schema(value_type = Id, required = true)]
    plan_id: Option<String>,
    #[schema(value_type = IsoDate, required = true)]
    effective_date: Option<String>,
    /// The last covered day; not before the effective date.
    #[schema(value_type = Option<IsoDate>)]
    end_date: Option<String>,
    #[schema(schema_with = text_40)]
    reason: Option<String>,
    /// With `subscriberId`, for a member the store does not know yet.
    #[schema(value_type = Option<Id>)]
    family_id: Option<String>,
    #[schema(value_type = Option<Id>)]
    subscriber_id: Option<String>,
}

/// A whole number as JSON may write it: `3`, or `3.0` (JSON Schema's integers include it).
fn whole<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    use serde::Deserialize;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else { return Ok(None) };
    // Beyond 2^53 a float is no longer exact: those are refused, not rounded.
    let exact = |f: f64| (f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0).then_some(f as i64);
    number
        .as_i64()
        .or_else(|| number.as_f64().and_then(exact))
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom("not a whole number"))
}

/// Free text: 1 to `max` characters (after trimming), at least one not blank, no control
/// characters.
fn text_schema(max: usize) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"))
        .build()
}

fn text_100() -> utoipa::openapi::Object {
    text_schema(100)
}

fn text_40() -> utoipa::openapi::Object {
    text_schema(40)
}

fn text_20() -> utoipa::openapi::Object {
    text_schema(20)
}

/// An e-mail address: free text with an `@`.
fn email() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .min_length(Some(1))
        .max_length(Some(254))
        .pattern(Some(r"^[^\x00-\x1f\x7f-\x9f]*@[^\x00-\x1f\x7f-\x9f]*$"))
        .build()
}

/// An id: letters, digits, `-`, `_`, `.`, 1 to 64.
pub fn valid_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn required<'a>(field: &'static str, value: &'a Option<String>) -> Result<&'a str, Invalid> {
    value.as_deref().filter(|v| !v.trim().is_empty()).ok_or_else(|| invalid(field, "is required"))
}

pub(crate) fn id(field: &'static str, value: &str) -> Result<String, Invalid> {
    if valid_id(value) {
        Ok(value.to_owned())
    } else {
        Err(invalid(field, "must be 1 to 64 letters, digits, '-', '_' or '.'"))
    }
}

pub(crate) fn date(field: &'static str, value: &str) -> Result<Date, Invalid> {
    value.parse().map_err(|_| invalid(field, "is not a date YYYY-MM-DD"))
}

fn text(field: &'static str, value: &str, max: usize) -> Result<String, Invalid> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(invalid(field, format!("must be 1 to {max} characters, without control characters")));
    }
    Ok(value.to_owned())
}

fn digits(field: &'static str, value: &str, len: usize) -> Result<String, Invalid> {
    if value.len() == len && value.bytes().all(|b| b.is_ascii_digit()) {
        Ok(value.to_owned())
    } else {
        Err(invalid(field, format!("must be {len} digits")))
    }
}

/// A fresh id: `prefix` and 16 hex digits from the clock and a counter.
pub fn fresh_id(prefix: &str, now: Timestamp) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mixed =
        (now.0 as u64).rotate_left(20) ^ NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format!("{prefix}{mixed:016x}")
}

impl NewMember {
    /// The `MemberCreated` event, or the first thing wrong with the request. The NIK must be
    /// well formed and agree with the date of birth, sex, province and regency given.
    pub fn event(&self, checks: &Checks) -> Result<MemberCreated, Invalid> {
        let now = checks.now;
        let relationship = match required("relationship", &self.relationship)? {
            "SUBSCRIBER" => Relationship::SUBSCRIBER,
            "SPOUSE" => Relationship::SPOUSE,
            "CHILD" => Relationship::CHILD,
            _ => return Err(invalid("relationship", "must be SUBSCRIBER, SPOUSE or CHILD")),
        };
        let member_id = match &self.member_id {
            Some(m) => id("memberId", m)?,
            None => fresh_id("M", now),
        };
        let (family_id, subscriber_id) = match relationship {
            Relationship::SUBSCRIBER => (
                self.family_id.as_deref().map(|f| id("familyId", f)).transpose()?.unwrap_or_else(|| fresh_id("F", now)),
                member_id.clone(),
            ),
            // Well-formed on their own, but a spouse or child belongs to a family.
            _ => match (&self.family_id, &self.subscriber_id) {
                (Some(family), Some(subscriber)) => (id("familyId", family)?, id("subscriberId", subscriber)?),
                _ => {
                    return Err(Invalid {
                        field: "familyId",
                        issue: "and subscriberId are required for a spouse or child".to_owned(),
                        semantic: true,
                    });
                }
            },
        };
        let nik = digits("nik", required("nik", &self.nik)?, 16)?;
        let date_of_birth = date("dateOfBirth", required("dateOfBirth", &self.date_of_birth)?)?;
        let sex = match required("sex", &self.sex)? {
            "MALE" => Sex::MALE,
            "FEMALE" => Sex::FEMALE,
            _ => return Err(invalid("sex", "must be MALE or FEMALE")),
        };
        let province_code = digits("provinceCode", required("provinceCode", &self.province_code)?, 2)?;
        let regency_code = digits("regencyCode", required("regencyCode", &self.regency_code)?, 4)?;
        let today = checks.today;
        let inconsistent =
            |field: &'static str, issue: &str| Invalid { field, issue: issue.to_owned(), semantic: true };
        // Sixteen digits, but not every sixteen digits encode a birth date and a sequence.
        let parts = arus_schemas::nik::parse_nik(&nik, today)
            .ok_or_else(|| inconsistent("nik", "does not encode a date of birth and a sequence number"))?;
        if parts.date_of_birth != date_of_birth || parts.sex != sex {
            return Err(inconsistent("nik", "does not encode the date of birth and sex given"));
        }
        if !nik.starts_with(&regency_code) || !regency_code.starts_with(&province_code) {
            return Err(inconsistent("regencyCode", "does not agree with the NIK and the province"));
        }
        let email = self.email.as_deref().map(|e| text("email", e, 254)).transpose()?;
        if email.as_deref().is_some_and(|e| !e.contains('@')) {
            return Err(invalid("email", "is not an e-mail address"));
        }
        Ok(MemberCreated {
            event_id: fresh_id("E", now),
            event_time: now,
            member_id,
            family_id,
            subscriber_id,
            relationship,
            nik,
            full_name: text("fullName", required("fullName", &self.full_name)?, 100)?,
            date_of_birth,
            sex,
            province_code,
            regency_code,
            city: text("city", required("city", &self.city)?, 100)?,
            phone: self.phone.as_deref().map(|p| text("phone", p, 20)).transpose()?,
            email,
        })
    }
}

impl CoverageCommand {
    /// The `CoverageChanged` event for `member_id`; family and subscriber from the request or,
    /// when absent, from what the store knows of the member (`known`).
    pub fn event(
        &self,
        member_id: &str,
        known: Option<(String, String)>,
        checks: &Checks,
    ) -> Result<CoverageChanged, Invalid> {
        let now = checks.now;
        let change_type = match required("changeType", &self.change_type)? {
            "ENROLLED" => CoverageChangeType::ENROLLED,
            "PLAN_CHANGED" => CoverageChangeType::PLAN_CHANGED,
            "TERMINATED" => CoverageChangeType::TERMINATED,
            "REINSTATED" => CoverageChangeType::REINSTATED,
            _ => return Err(invalid("changeType", "must be ENROLLED, PLAN_CHANGED, TERMINATED or REINSTATED")),
        };
        let effective_date = checks.not_before_2000(
            "effectiveDate",
            date("effectiveDate", required("effectiveDate", &self.effective_date)?)?,
        )?;
        let end_date = self.end_date.as_deref().map(|d| date("endDate", d)).transpose()?;
        if end_date.is_some_and(|end| end < effective_date) {
            return Err(Invalid { field: "endDate", issue: "is before the effective date".to_owned(), semantic: true });
        }
        let (family_id, subscriber_id) = match (&self.family_id, &self.subscriber_id, known) {
            (Some(f), Some(s), _) => (id("familyId", f)?, id("subscriberId", s)?),
            (_, _, Some(known)) => known,
            _ => {
                return Err(Invalid {
                    field: "familyId",
                    issue: "and subscriberId are required for a member the store does not know yet".to_owned(),
                    semantic: true,
                });
            }
        };
        Ok(CoverageChanged {
            event_id: fresh_id("E", now),
            event_time: now,
            member_id: member_id.to_owned(),
            family_id,
            subscriber_id,
            change_type,
            plan_id: id("planId", required("planId", &self.plan_id)?)?,
            effective_date,
            end_date,
            reason: self.reason.as_deref().map(|r| text("reason", r, 40)).transpose()?,
        })
    }
}

/// One line of `POST /api/v1/claims`.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimLineCommand {
    #[schema(value_type = Id, required = true)]
    procedure_code: Option<String>,
    /// ICD-10, such as `J06.9`.
    #[schema(value_type = String, required = true, pattern = "^[A-Z][A-Za-z0-9]{2}([.][A-Za-z0-9]{1,4})?$")]
    diagnosis_code: Option<String>,
    /// Not after today.
    #[schema(value_type = IsoDate, required = true)]
    service_date: Option<String>,
    #[schema(value_type = i64, required = true, minimum = 1, maximum = 999)]
    #[serde(default, deserialize_with = "whole")]
    units: Option<i64>,
    /// Whole rupiah.
    #[schema(value_type = i64, required = true, minimum = 1, maximum = 1_000_000_000_000_i64)]
    #[serde(default, deserialize_with = "whole")]
    charge_amount_idr: Option<i64>,
    /// Time-based codes: minutes of service.
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1440)]
    #[serde(default, deserialize_with = "whole")]
    minutes: Option<i64>,
}

/// `POST /api/v1/claims` and `POST /api/partner/v1/claims/submit`.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "memberId": "M1", "providerId": "P1", "claimType": "PROFESSIONAL",
    "lines": [{ "procedureCode": "80053", "diagnosisCode": "J06.9", "serviceDate": "2026-01-20", "units": 1, "chargeAmountIdr": 1000000 }]
}))]
pub struct ClaimCommand {
    #[schema(value_type = Id, required = true)]
    member_id: Option<String>,
    #[schema(value_type = Id, required = true)]
    provider_id: Option<String>,
    #[schema(value_type = ClaimType, required = true)]
    claim_type: Option<String>,
    /// The prior authorization the claim is under.
    #[schema(value_type = Option<Id>)]
    auth_id: Option<String>,
    /// The claim this one corrects.
    #[schema(value_type = Option<Id>)]
    original_claim_id: Option<String>,
    #[schema(value_type = Vec<ClaimLineCommand>, required = true, min_items = 1, max_items = 100)]
    lines: Option<Vec<ClaimLineCommand>>,
}

/// Most lines a claim may have.
const MAX_LINES: usize = 100;

/// Most a line may charge: a trillion rupiah (no sum of 100 lines can overflow).
const MAX_CHARGE_IDR: i64 = 1_000_000_000_000;

/// An ICD-10 code: a letter, two digits or letters, then optionally a dot and up to four more.
fn icd10(field: &'static str, value: &str) -> Result<String, Invalid> {
    let bytes = value.as_bytes();
    let ok = (3..=8).contains(&bytes.len())
        && bytes[0].is_ascii_uppercase()
        && bytes[1..3].iter().all(u8::is_ascii_alphanumeric)
        && match bytes.get(3) {
            None => true,
            Some(b'.') => bytes.len() > 4 && bytes[4..].iter().all(u8::is_ascii_alphanumeric),
            Some(_) => false,
        };
    if ok { Ok(value.to_owned()) } else { Err(invalid(field, "is not an ICD-10 code such as J06.9")) }
}

impl ClaimCommand {
    /// The `ClaimSubmitted` event (a fresh claim id, the total summed), or the first thing wrong.
    pub fn event(&self, checks: &Checks) -> Result<ClaimSubmitted, Invalid> {
        let now = checks.now;
        let member_id = id("memberId", required("memberId", &self.member_id)?)?;
        let provider_id = id("providerId", required("providerId", &self.provider_id)?)?;
        let claim_type = match required("claimType", &self.claim_type)? {
            "PROFESSIONAL" => ClaimType::PROFESSIONAL,
            "INSTITUTIONAL" => ClaimType::INSTITUTIONAL,
            "PHARMACY" => ClaimType::PHARMACY,
            _ => return Err(invalid("claimType", "must be PROFESSIONAL, INSTITUTIONAL or PHARMACY")),
        };
        let commands = self.lines.as_ref().filter(|l| !l.is_empty()).ok_or_else(|| invalid("lines", "is required"))?;
        if commands.len() > MAX_LINES {
            return Err(invalid("lines", format!("at most {MAX_LINES} lines")));
        }
        let today = checks.today;
        let mut lines = Vec::with_capacity(commands.len());
        let mut diagnosis_codes: Vec<String> = Vec::new();
        for (i, line) in commands.iter().enumerate() {
            let service_date = checks.not_before_2000(
                "lines.serviceDate",
                date("lines.serviceDate", required("lines.serviceDate", &line.service_date)?)?,
            )?;
            if service_date > today {
                return Err(Invalid {
                    field: "lines.serviceDate",
                    issue: format!("line {}: {service_date} is after today", i + 1),
                    semantic: true,
                });
            }
            let units = line.units.ok_or_else(|| invalid("lines.units", "is required"))?;
            let units = i32::try_from(units)
                .ok()
                .filter(|u| (1..=999).contains(u))
                .ok_or_else(|| invalid("lines.units", format!("line {}: must be 1 to 999", i + 1)))?;
            let charge = line.charge_amount_idr.ok_or_else(|| invalid("lines.chargeAmountIdr", "is required"))?;
            if !(1..=MAX_CHARGE_IDR).contains(&charge) {
                return Err(invalid(
                    "lines.chargeAmountIdr",
                    format!("line {}: must be a whole number of rupiah, 1 to {MAX_CHARGE_IDR}", i + 1),
                ));
            }
            if charge > checks.plausible.max_line_charge.0 {
                return Err(Invalid {
                    field: "lines.chargeAmountIdr",
                    issue: format!(
                        "line {}: more than a line may charge ({} rupiah)",
                        i + 1,
                        checks.plausible.max_line_charge.0
                    ),
                    semantic: true,
                });
            }
            let minutes = line
                .minutes
                .map(|m| {
                    i32::try_from(m)
                        .ok()
                        .filter(|m| (1..=1_440).contains(m))
                        .ok_or_else(|| invalid("lines.minutes", format!("line {}: must be 1 to 1440", i + 1)))
                })
                .transpose()?;
            let diagnosis_code = icd10("lines.diagnosisCode", required("lines.diagnosisCode", &line.diagnosis_code)?)?;
            if !diagnosis_codes.contains(&diagnosis_code) {
                diagnosis_codes.push(diagnosis_code.clone());
            }
            lines.push(ClaimLine {
                line_number: i as i32 + 1,
                procedure_code: id("lines.procedureCode", required("lines.procedureCode", &line.procedure_code)?)?,
                diagnosis_code,
                service_date,
                units,
                charge_amount_idr: Idr(charge),
                minutes,
            });
        }
        let total: Idr = lines.iter().map(|l| l.charge_amount_idr).sum();
        if total > checks.plausible.max_claim_charge {
            return Err(Invalid {
                field: "lines.chargeAmountIdr",
                issue: format!(
                    "the lines charge more than a claim may ({} rupiah)",
                    checks.plausible.max_claim_charge.0
                ),
                semantic: true,
            });
        }
        let service_date = lines.iter().map(|l| l.service_date).min().unwrap_or(today);
        Ok(ClaimSubmitted {
            event_id: fresh_id("E", now),
            event_time: now,
            claim_id: fresh_id("C", now),
            member_id,
            provider_id,
            claim_type,
            service_date,
            auth_id: self.auth_id.as_deref().map(|a| id("authId", a)).transpose()?,
            diagnosis_codes,
            total_charge_idr: total,
            lines,
            currency: "IDR".to_owned(),
            original_claim_id: self.original_claim_id.as_deref().map(|c| id("originalClaimId", c)).transpose()?,
        })
    }
}

/// A claim with a line served before the member was born, refused (422 on
/// `lines.serviceDate`, naming the line, not the date of birth).
pub fn served_after_birth(claim: &ClaimSubmitted, born: Date) -> Result<(), Invalid> {
    match claim.lines.iter().position(|line| line.service_date < born) {
        Some(i) => Err(Invalid {
            field: "lines.serviceDate",
            issue: format!("line {}: before the member was born", i + 1),
            semantic: true,
        }),
        None => Ok(()),
    }
}

/// An authorization for services starting before the member was born, refused (422).
pub fn requested_after_birth(request: &AuthRequested, born: Date) -> Result<(), Invalid> {
    if request.service_date_from < born {
        return Err(Invalid {
            field: "serviceDateFrom",
            issue: "is before the member was born".to_owned(),
            semantic: true,
        });
    }
    Ok(())
}

/// `POST /api/v1/authorizations`.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "memberId": "M1", "providerId": "P1", "procedureCode": "70551", "diagnosisCode": "G43.9",
    "requestedUnits": 1, "serviceDateFrom": "2026-02-01", "serviceDateTo": "2026-02-28"
}))]
pub struct AuthorizationCommand {
    #[schema(value_type = Id, required = true)]
    member_id: Option<String>,
    #[schema(value_type = Id, required = true)]
    provider_id: Option<String>,
    #[schema(value_type = Id, required = true)]
    procedure_code: Option<String>,
    /// ICD-10, such as `J06.9`.
    #[schema(value_type = String, required = true, pattern = "^[A-Z][A-Za-z0-9]{2}([.][A-Za-z0-9]{1,4})?$")]
    diagnosis_code: Option<String>,
    #[schema(value_type = i64, required = true, minimum = 1, maximum = 999)]
    #[serde(default, deserialize_with = "whole")]
    requested_units: Option<i64>,
    #[schema(value_type = IsoDate, required = true)]
    service_date_from: Option<String>,
    /// On or after `serviceDateFrom`, at most 366 days after it.
    #[schema(value_type = IsoDate, required = true)]
    service_date_to: Option<String>,
}

impl AuthorizationCommand {
    /// The `AuthRequested` event (a fresh authorization id), or the first thing wrong.
    pub fn event(&self, checks: &Checks) -> Result<AuthRequested, Invalid> {
        let now = checks.now;
        let from = checks.not_before_2000(
            "serviceDateFrom",
            date("serviceDateFrom", required("serviceDateFrom", &self.service_date_from)?)?,
        )?;
        let to = date("serviceDateTo", required("serviceDateTo", &self.service_date_to)?)?;
        if to < from {
            return Err(Invalid {
                field: "serviceDateTo",
                issue: "is before serviceDateFrom".to_owned(),
                semantic: true,
            });
        }
        if to.days_since(from) > 366 {
            return Err(Invalid {
                field: "serviceDateTo",
                issue: "more than a year after serviceDateFrom".to_owned(),
                semantic: true,
            });
        }
        let units = self.requested_units.ok_or_else(|| invalid("requestedUnits", "is required"))?;
        Ok(AuthRequested {
            event_id: fresh_id("E", now),
            event_time: now,
            auth_id: fresh_id("A", now),
            member_id: id("memberId", required("memberId", &self.member_id)?)?,
            provider_id: id("providerId", required("providerId", &self.provider_id)?)?,
            procedure_code: id("procedureCode", required("procedureCode", &self.procedure_code)?)?,
            diagnosis_code: icd10("diagnosisCode", required("diagnosisCode", &self.diagnosis_code)?)?,
            requested_units: i32::try_from(units)
                .ok()
                .filter(|u| (1..=999).contains(u))
                .ok_or_else(|| invalid("requestedUnits", "must be 1 to 999"))?,
            service_date_from: from,
            service_date_to: to,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(service_date: &str, charges: &[i64]) -> ClaimCommand {
        let lines = charges
            .iter()
            .map(|&charge| ClaimLineCommand {
                procedure_code: Some("99213".to_owned()),
                diagnosis_code: Some("J06.9".to_owned()),
                service_date: Some(service_date.to_owned()),
                units: Some(1),
                charge_amount_idr: Some(charge),
                minutes: None,
            })
            .collect();
        ClaimCommand {
            member_id: Some("M1".to_owned()),
            provider_id: Some("P1".to_owned()),
            claim_type: Some("PROFESSIONAL".to_owned()),
            auth_id: None,
            original_claim_id: None,
            lines: Some(lines),
        }
    }

    fn at(text: &str, plausible: Plausible) -> Checks {
        Checks::at(text.parse().expect("a timestamp"), plausible)
    }

    /// 06:00 in Jakarta is 23:00 UTC the day before: a claim served this morning is not
    /// "after today".
    #[test]
    fn today_is_the_insurers_not_utcs() {
        let morning = at("2026-12-02T23:00:00Z", Plausible::default());
        assert_eq!(morning.today.to_string(), "2026-12-03");
        assert!(claim("2026-12-03", &[100_000]).event(&morning).is_ok());
        let utc = at("2026-12-02T23:00:00Z", Plausible { utc_offset_minutes: 0, ..Plausible::default() });
        let refused = claim("2026-12-03", &[100_000]).event(&utc).expect_err("after today in UTC");
        assert_eq!((refused.field, refused.semantic), ("lines.serviceDate", true));
    }

    #[test]
    fn implausible_claims_are_refused_as_inconsistent() {
        let checks = at("2026-12-03T03:00:00Z", Plausible::default());
        for (what, command, field) in [
            ("a line over the line ceiling", claim("2026-12-01", &[2_000_000_001]), "lines.chargeAmountIdr"),
            ("lines over the claim ceiling", claim("2026-12-01", &[2_000_000_000; 6]), "lines.chargeAmountIdr"),
            ("a service before 2000", claim("1999-12-31", &[100_000]), "lines.serviceDate"),
        ] {
            let refused = command.event(&checks).expect_err(what);
            assert_eq!((refused.field, refused.semantic), (field, true), "{what}: {refused:?}");
            assert!(!refused.issue.contains("2000000001"), "{what}: the value is not echoed");
        }
        // At the ceilings exactly: plausible.
        assert!(claim("2026-12-01", &[2_000_000_000; 5]).event(&checks).is_ok());
    }

    #[test]
    fn services_before_the_members_birth_are_refused_as_inconsistent() {
        let checks = at("2026-12-03T03:00:00Z", Plausible::default());
        let born: Date = "2026-11-20".parse().expect("a date");
        let before = claim("2026-11-19", &[100_000]).event(&checks).expect("plausible alone");
        let refused = served_after_birth(&before, born).expect_err("served before birth");
        assert_eq!((refused.field, refused.semantic), ("lines.serviceDate", true));
        assert!(!refused.issue.contains("2026-11-20"), "the date of birth is not told: {refused:?}");
        let on_the_day = claim("2026-11-20", &[100_000]).event(&checks).expect("plausible");
        assert_eq!(served_after_birth(&on_the_day, born), Ok(()));

        let request = |from: &str| AuthorizationCommand {
            member_id: Some("M1".into()),
            provider_id: Some("P1".into()),
            procedure_code: Some("70551".into()),
            diagnosis_code: Some("G43.9".into()),
            requested_units: Some(1),
            service_date_from: Some(from.into()),
            service_date_to: Some("2026-12-01".into()),
        };
        let early = request("2026-11-01").event(&checks).expect("plausible alone");
        assert_eq!(requested_after_birth(&early, born).map_err(|e| e.field), Err("serviceDateFrom"));
        let later = request("2026-11-21").event(&checks).expect("plausible");
        assert_eq!(requested_after_birth(&later, born), Ok(()));
    }
}
