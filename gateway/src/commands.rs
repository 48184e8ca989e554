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

/// Where commands' events go.
pub trait Publisher: Send + Sync {
    /// Publishes an event to its topic, durably (acknowledged) before returning.
    fn publish(&self, event: &Event) -> Result<(), String>;
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
        let bytes = wire::encode(event).map_err(|e| e.to_string())?;
        let topic = format!("{}{}", self.prefix, event.topic());
        self.sink.send(&topic, event.key().as_bytes(), &bytes, event.event_time()).map_err(|e| e.to_string())?;
        self.sink.flush().map_err(|e| e.to_string())
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

/// `POST /api/v1/members`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewMember {
    member_id: Option<String>,
    family_id: Option<String>,
    subscriber_id: Option<String>,
    relationship: Option<String>,
    nik: Option<String>,
    full_name: Option<String>,
    date_of_birth: Option<String>,
    sex: Option<String>,
    province_code: Option<String>,
    regency_code: Option<String>,
    city: Option<String>,
    phone: Option<String>,
    email: Option<String>,
}

/// `POST /api/v1/members/{memberId}/coverage`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CoverageCommand {
    change_type: Option<String>,
    plan_id: Option<String>,
    effective_date: Option<String>,
    end_date: Option<String>,
    reason: Option<String>,
    family_id: Option<String>,
    subscriber_id: Option<String>,
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
    value.parse().map_err(|_| invalid(field, format!("{value:?} is not a date YYYY-MM-DD")))
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
    pub fn event(&self, now: Timestamp) -> Result<MemberCreated, Invalid> {
        let relationship = match required("relationship", &self.relationship)? {
            "SUBSCRIBER" => Relationship::SUBSCRIBER,
            "SPOUSE" => Relationship::SPOUSE,
            "CHILD" => Relationship::CHILD,
            other => return Err(invalid("relationship", format!("{other:?} is not SUBSCRIBER, SPOUSE or CHILD"))),
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
            _ => (
                id("familyId", required("familyId", &self.family_id)?)?,
                id("subscriberId", required("subscriberId", &self.subscriber_id)?)?,
            ),
        };
        let nik = digits("nik", required("nik", &self.nik)?, 16)?;
        let date_of_birth = date("dateOfBirth", required("dateOfBirth", &self.date_of_birth)?)?;
        let sex = match required("sex", &self.sex)? {
            "MALE" => Sex::MALE,
            "FEMALE" => Sex::FEMALE,
            other => return Err(invalid("sex", format!("{other:?} is not MALE or FEMALE"))),
        };
        let province_code = digits("provinceCode", required("provinceCode", &self.province_code)?, 2)?;
        let regency_code = digits("regencyCode", required("regencyCode", &self.regency_code)?, 4)?;
        let today = Date(now.0.div_euclid(86_400_000) as i32);
        let parts =
            arus_schemas::nik::parse_nik(&nik, today).ok_or_else(|| invalid("nik", "is not a well-formed NIK"))?;
        let inconsistent =
            |field: &'static str, issue: &str| Invalid { field, issue: issue.to_owned(), semantic: true };
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
        now: Timestamp,
    ) -> Result<CoverageChanged, Invalid> {
        let change_type = match required("changeType", &self.change_type)? {
            "ENROLLED" => CoverageChangeType::ENROLLED,
            "PLAN_CHANGED" => CoverageChangeType::PLAN_CHANGED,
            "TERMINATED" => CoverageChangeType::TERMINATED,
            "REINSTATED" => CoverageChangeType::REINSTATED,
            other => {
                return Err(invalid(
                    "changeType",
                    format!("{other:?} is not ENROLLED, PLAN_CHANGED, TERMINATED or REINSTATED"),
                ));
            }
        };
        let effective_date = date("effectiveDate", required("effectiveDate", &self.effective_date)?)?;
        let end_date = self.end_date.as_deref().map(|d| date("endDate", d)).transpose()?;
        if end_date.is_some_and(|end| end < effective_date) {
            return Err(Invalid { field: "endDate", issue: "is before the effective date".to_owned(), semantic: true });
        }
        let (family_id, subscriber_id) = match (&self.family_id, &self.subscriber_id, known) {
            (Some(f), Some(s), _) => (id("familyId", f)?, id("subscriberId", s)?),
            (_, _, Some(known)) => known,
            _ => return Err(invalid("familyId", "is required for a member the store does not know yet")),
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
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimLineCommand {
    procedure_code: Option<String>,
    diagnosis_code: Option<String>,
    service_date: Option<String>,
    units: Option<i64>,
    charge_amount_idr: Option<i64>,
    minutes: Option<i64>,
}

/// `POST /api/v1/claims` and `POST /api/partner/v1/claims/submit`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimCommand {
    member_id: Option<String>,
    provider_id: Option<String>,
    claim_type: Option<String>,
    auth_id: Option<String>,
    original_claim_id: Option<String>,
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
    if ok {
        Ok(value.to_owned())
    } else {
        Err(invalid(field, format!("{value:?} is not an ICD-10 code such as J06.9")))
    }
}

impl ClaimCommand {
    /// The `ClaimSubmitted` event (a fresh claim id, the total summed), or the first thing wrong.
    pub fn event(&self, now: Timestamp) -> Result<ClaimSubmitted, Invalid> {
        let member_id = id("memberId", required("memberId", &self.member_id)?)?;
        let provider_id = id("providerId", required("providerId", &self.provider_id)?)?;
        let claim_type = match required("claimType", &self.claim_type)? {
            "PROFESSIONAL" => ClaimType::PROFESSIONAL,
            "INSTITUTIONAL" => ClaimType::INSTITUTIONAL,
            "PHARMACY" => ClaimType::PHARMACY,
            other => {
                return Err(invalid("claimType", format!("{other:?} is not PROFESSIONAL, INSTITUTIONAL or PHARMACY")));
            }
        };
        let commands = self.lines.as_ref().filter(|l| !l.is_empty()).ok_or_else(|| invalid("lines", "is required"))?;
        if commands.len() > MAX_LINES {
            return Err(invalid("lines", format!("at most {MAX_LINES} lines")));
        }
        let today = now.date();
        let mut lines = Vec::with_capacity(commands.len());
        let mut diagnosis_codes: Vec<String> = Vec::new();
        for (i, line) in commands.iter().enumerate() {
            let service_date = date("lines.serviceDate", required("lines.serviceDate", &line.service_date)?)?;
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
            total_charge_idr: lines.iter().map(|l| l.charge_amount_idr).sum(),
            lines,
            currency: "IDR".to_owned(),
            original_claim_id: self.original_claim_id.as_deref().map(|c| id("originalClaimId", c)).transpose()?,
        })
    }
}

/// `POST /api/v1/authorizations`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationCommand {
    member_id: Option<String>,
    provider_id: Option<String>,
    procedure_code: Option<String>,
    diagnosis_code: Option<String>,
    requested_units: Option<i64>,
    service_date_from: Option<String>,
    service_date_to: Option<String>,
}

impl AuthorizationCommand {
    /// The `AuthRequested` event (a fresh authorization id), or the first thing wrong.
    pub fn event(&self, now: Timestamp) -> Result<AuthRequested, Invalid> {
        let from = date("serviceDateFrom", required("serviceDateFrom", &self.service_date_from)?)?;
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
