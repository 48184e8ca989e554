//! The Rust side of every event in the contract, one struct per Avro record.
//!
//! Field names, order and types mirror the `.avsc` files under `schemas/avro/` (the source
//! of truth); the round-trip tests fail if the two drift apart. Optional fields are Avro
//! `["null", T]` unions and may be left out of the JSON form.

use serde::{Deserialize, Serialize};

use crate::money::Idr;
use crate::time::{Date, Timestamp};

macro_rules! avro_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        ///
        /// Variants are spelled exactly as the Avro enum's symbols.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[allow(non_camel_case_types, clippy::upper_case_acronyms, missing_docs)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every symbol, in schema order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The Avro symbol.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => stringify!($variant)),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

avro_enum!(
    /// Sex as encoded in the NIK.
    Sex { MALE, FEMALE }
);
avro_enum!(
    /// Relationship of a member to the family's subscriber.
    Relationship { SUBSCRIBER, SPOUSE, CHILD }
);
avro_enum!(
    /// Whether a provider is contracted.
    NetworkStatus { IN_NETWORK, OUT_OF_NETWORK }
);
avro_enum!(
    /// Metal tier of a plan.
    PlanTier { BRONZE, SILVER, GOLD, PLATINUM }
);
avro_enum!(
    /// Kind of coverage change.
    CoverageChangeType { ENROLLED, PLAN_CHANGED, TERMINATED, REINSTATED }
);
avro_enum!(
    /// Kind of facility.
    ProviderType { HOSPITAL, CLINIC, LAB, PHARMACY }
);
avro_enum!(
    /// X12 837 flavour of a claim.
    ClaimType { PROFESSIONAL, INSTITUTIONAL, PHARMACY }
);
avro_enum!(
    /// X12 claim adjustment group: contractual, patient responsibility, other, payer initiated.
    AdjustmentGroup { CO, PR, OA, PI }
);
avro_enum!(
    /// Outcome of adjudication.
    ClaimStatus { APPROVED, PARTIALLY_APPROVED, DENIED, PENDED }
);
avro_enum!(
    /// How a payment moves.
    PaymentMethod { BANK_TRANSFER, VIRTUAL_ACCOUNT }
);
avro_enum!(
    /// Coverage status on a date.
    EligibilityStatus { ACTIVE, NOT_YET_COVERED, TERMINATED, UNKNOWN_MEMBER }
);
avro_enum!(
    /// Whether a fraud alert stands.
    AlertStatus { RAISED, WITHDRAWN }
);
avro_enum!(
    /// What a fraud alert is about.
    SubjectType { PROVIDER, MEMBER }
);
avro_enum!(
    /// Severity of a fraud alert.
    Severity { LOW, MEDIUM, HIGH, CRITICAL }
);

/// A member enters the insurer's records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberCreated {
    /// Stable id; consumers deduplicate on it.
    pub event_id: String,
    /// Registration time.
    pub event_time: Timestamp,
    /// Member id.
    pub member_id: String,
    /// Family (policy) id; family accumulators are kept per family.
    pub family_id: String,
    /// The family's subscriber (equal to `member_id` for the subscriber).
    pub subscriber_id: String,
    /// Relationship to the subscriber.
    pub relationship: Relationship,
    /// 16-digit NIK. Personal data: never logged.
    pub nik: String,
    /// Full name. Personal data: never logged.
    pub full_name: String,
    /// Date of birth.
    pub date_of_birth: Date,
    /// Sex.
    pub sex: Sex,
    /// BPS province code of residence.
    pub province_code: String,
    /// BPS regency/city code of residence.
    pub regency_code: String,
    /// City of residence.
    pub city: String,
    /// Phone (E.164). Personal data.
    #[serde(default)]
    pub phone: Option<String>,
    /// E-mail. Personal data.
    #[serde(default)]
    pub email: Option<String>,
}

/// Demographic change of a member; only the fields present changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberUpdated {
    /// Stable id.
    pub event_id: String,
    /// When the change was recorded.
    pub event_time: Timestamp,
    /// Member whose data changed.
    pub member_id: String,
    /// New full name.
    #[serde(default)]
    pub full_name: Option<String>,
    /// New province code.
    #[serde(default)]
    pub province_code: Option<String>,
    /// New regency code.
    #[serde(default)]
    pub regency_code: Option<String>,
    /// New city.
    #[serde(default)]
    pub city: Option<String>,
    /// New phone.
    #[serde(default)]
    pub phone: Option<String>,
    /// New e-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// Date of death, once known.
    #[serde(default)]
    pub date_of_death: Option<Date>,
}

/// Start, change or end of a member's coverage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoverageChanged {
    /// Stable id.
    pub event_id: String,
    /// When the change was recorded; `effective_date` says when it applies.
    pub event_time: Timestamp,
    /// Member.
    pub member_id: String,
    /// Family.
    pub family_id: String,
    /// Subscriber of the family.
    pub subscriber_id: String,
    /// Kind of change.
    pub change_type: CoverageChangeType,
    /// Plan covered under (or left, for a termination).
    pub plan_id: String,
    /// First day the change applies (for a termination: first day not covered).
    pub effective_date: Date,
    /// Last covered day, when known in advance.
    #[serde(default)]
    pub end_date: Option<Date>,
    /// Reason code: VOLUNTARY, NON_PAYMENT, DEATH, NEW_DEPENDENT, …
    #[serde(default)]
    pub reason: Option<String>,
}

/// A provider joins the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderOnboarded {
    /// Stable id.
    pub event_id: String,
    /// Onboarding time.
    pub event_time: Timestamp,
    /// Provider id.
    pub provider_id: String,
    /// Facility name.
    pub name: String,
    /// Kind of facility.
    pub provider_type: ProviderType,
    /// BPS province code.
    pub province_code: String,
    /// BPS regency code.
    pub regency_code: String,
    /// City.
    pub city: String,
    /// Latitude in microdegrees.
    pub latitude_e6: i32,
    /// Longitude in microdegrees.
    pub longitude_e6: i32,
    /// Network status at onboarding.
    pub network_status: NetworkStatus,
    /// Specialties offered.
    pub specialties: Vec<String>,
}

/// Contracted price of one procedure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeScheduleEntry {
    /// Procedure code.
    pub procedure_code: String,
    /// Allowed amount per unit.
    pub contracted_amount_idr: Idr,
}

/// A provider contract takes effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractUpdated {
    /// Stable id.
    pub event_id: String,
    /// When the contract was recorded.
    pub event_time: Timestamp,
    /// Provider.
    pub provider_id: String,
    /// Contract id.
    pub contract_id: String,
    /// Network status under the contract.
    pub network_status: NetworkStatus,
    /// First day it applies.
    pub effective_date: Date,
    /// Last day it applies, if fixed.
    #[serde(default)]
    pub end_date: Option<Date>,
    /// Contracted fees.
    pub fee_schedule: Vec<FeeScheduleEntry>,
}

/// Periodic provider scorecard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerformanceCalculated {
    /// Stable id.
    pub event_id: String,
    /// End of the scored period.
    pub event_time: Timestamp,
    /// Provider.
    pub provider_id: String,
    /// First day of the period.
    pub period_start: Date,
    /// Last day of the period.
    pub period_end: Date,
    /// Claims submitted.
    pub claim_count: i64,
    /// Claims denied.
    pub denied_count: i64,
    /// Billed.
    pub total_billed_idr: Idr,
    /// Paid.
    pub total_paid_idr: Idr,
    /// Mean hours from service to submission.
    pub mean_submission_delay_hours: i64,
    /// Quality score, basis points.
    pub quality_score_bp: i32,
}

/// Cost-sharing rules of one plan version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Benefits {
    /// Deductible per member per plan year.
    pub deductible_individual_idr: Idr,
    /// Deductible per family per plan year.
    pub deductible_family_idr: Idr,
    /// Out-of-pocket maximum per member.
    pub oop_max_individual_idr: Idr,
    /// Out-of-pocket maximum per family.
    pub oop_max_family_idr: Idr,
    /// Copay per office-type claim line.
    pub copay_idr: Idr,
    /// In-network coinsurance, basis points.
    pub coinsurance_bp: i32,
    /// Out-of-network coinsurance, basis points (10000: not covered).
    pub out_of_network_coinsurance_bp: i32,
    /// Annual limit the plan pays per member.
    pub annual_limit_idr: Idr,
    /// Procedures needing prior authorization.
    pub prior_auth_procedures: Vec<String>,
    /// Procedures never covered.
    pub excluded_procedures: Vec<String>,
}

/// A plan is defined for a plan year.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanCreated {
    /// Stable id.
    pub event_id: String,
    /// Creation time.
    pub event_time: Timestamp,
    /// Plan id.
    pub plan_id: String,
    /// Marketing name.
    pub name: String,
    /// Tier.
    pub tier: PlanTier,
    /// Plan year.
    pub plan_year: i32,
    /// Benefit version (1 at creation).
    pub version: i32,
    /// Cost-sharing rules.
    pub benefits: Benefits,
}

/// New version of a plan's benefits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenefitUpdated {
    /// Stable id.
    pub event_id: String,
    /// When recorded.
    pub event_time: Timestamp,
    /// Plan.
    pub plan_id: String,
    /// New version.
    pub version: i32,
    /// First service date it applies to.
    pub effective_date: Date,
    /// The complete new rules.
    pub benefits: Benefits,
}

/// Prior authorization requested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthRequested {
    /// Stable id.
    pub event_id: String,
    /// When received.
    pub event_time: Timestamp,
    /// Authorization id.
    pub auth_id: String,
    /// Member.
    pub member_id: String,
    /// Requesting provider.
    pub provider_id: String,
    /// Procedure.
    pub procedure_code: String,
    /// ICD-10 diagnosis.
    pub diagnosis_code: String,
    /// Units requested.
    pub requested_units: i32,
    /// First planned date.
    pub service_date_from: Date,
    /// Last planned date.
    pub service_date_to: Date,
}

/// Prior authorization granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthApproved {
    /// Stable id.
    pub event_id: String,
    /// When approved.
    pub event_time: Timestamp,
    /// Authorization id.
    pub auth_id: String,
    /// Member.
    pub member_id: String,
    /// Authorized procedure.
    pub procedure_code: String,
    /// Units approved.
    pub approved_units: i32,
    /// First covered service date.
    pub valid_from: Date,
    /// Last covered service date.
    pub valid_to: Date,
}

/// Prior authorization refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthDenied {
    /// Stable id.
    pub event_id: String,
    /// When denied.
    pub event_time: Timestamp,
    /// Authorization id.
    pub auth_id: String,
    /// Member.
    pub member_id: String,
    /// Reason code.
    pub reason_code: String,
    /// Reason text.
    pub reason: String,
}

/// One billed service line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimLine {
    /// 1-based line number.
    pub line_number: i32,
    /// Procedure code.
    pub procedure_code: String,
    /// ICD-10 diagnosis.
    pub diagnosis_code: String,
    /// Date of service.
    pub service_date: Date,
    /// Quantity.
    pub units: i32,
    /// Billed charge for all units.
    pub charge_amount_idr: Idr,
    /// Minutes, for timed services.
    #[serde(default)]
    pub minutes: Option<i32>,
}

fn idr_currency() -> String {
    "IDR".to_owned()
}

/// A provider submits a claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimSubmitted {
    /// Stable id.
    pub event_id: String,
    /// Submission time; service dates may be weeks earlier.
    pub event_time: Timestamp,
    /// Claim id.
    pub claim_id: String,
    /// Patient.
    pub member_id: String,
    /// Billing provider.
    pub provider_id: String,
    /// Claim type.
    pub claim_type: ClaimType,
    /// First date of service.
    pub service_date: Date,
    /// Cited prior authorization.
    #[serde(default)]
    pub auth_id: Option<String>,
    /// ICD-10 diagnoses, principal first.
    pub diagnosis_codes: Vec<String>,
    /// Service lines.
    pub lines: Vec<ClaimLine>,
    /// Sum of line charges.
    pub total_charge_idr: Idr,
    /// Currency of all amounts (IDR); added in schema v2 with that default.
    #[serde(default = "idr_currency")]
    pub currency: String,
    /// The claim a correction or void replaces; added in schema v2.
    #[serde(default)]
    pub original_claim_id: Option<String>,
}

/// One X12 CAS adjustment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adjustment {
    /// Group code.
    pub group: AdjustmentGroup,
    /// Claim Adjustment Reason Code.
    pub carc: String,
    /// Amount.
    pub amount_idr: Idr,
}

/// Decision on one claim line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdjudicatedLine {
    /// Line number.
    pub line_number: i32,
    /// Billed.
    pub billed_idr: Idr,
    /// Allowed.
    pub allowed_idr: Idr,
    /// Deductible (PR-1).
    pub deductible_idr: Idr,
    /// Copay (PR-3).
    pub copay_idr: Idr,
    /// Coinsurance (PR-2).
    pub coinsurance_idr: Idr,
    /// Plan pays.
    pub plan_paid_idr: Idr,
    /// Adjustments explaining billed − plan paid.
    pub adjustments: Vec<Adjustment>,
}

/// The adjudication job's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimAdjudicated {
    /// Stable id.
    pub event_id: String,
    /// Submission time of the decided claim.
    pub event_time: Timestamp,
    /// Claim.
    pub claim_id: String,
    /// Patient.
    pub member_id: String,
    /// Provider.
    pub provider_id: String,
    /// Outcome.
    pub status: ClaimStatus,
    /// Plan applied.
    #[serde(default)]
    pub plan_id: Option<String>,
    /// Benefit version applied.
    #[serde(default)]
    pub plan_version: Option<i32>,
    /// Authorization applied.
    #[serde(default)]
    pub auth_id: Option<String>,
    /// Per-line decisions.
    pub lines: Vec<AdjudicatedLine>,
    /// Sum billed.
    pub total_billed_idr: Idr,
    /// Sum allowed.
    pub total_allowed_idr: Idr,
    /// Sum of member shares.
    pub total_member_share_idr: Idr,
    /// Sum plan pays.
    pub total_plan_paid_idr: Idr,
    /// Rule trace.
    pub trace: Vec<String>,
}

/// A claim's payment completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimPaid {
    /// Stable id.
    pub event_id: String,
    /// Completion time.
    pub event_time: Timestamp,
    /// Claim.
    pub claim_id: String,
    /// Payment.
    pub payment_id: String,
    /// Patient.
    pub member_id: String,
    /// Payee.
    pub provider_id: String,
    /// Paid.
    pub amount_idr: Idr,
}

/// Payment sent to the bank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentInitiated {
    /// Stable id.
    pub event_id: String,
    /// Initiation time.
    pub event_time: Timestamp,
    /// Payment id.
    pub payment_id: String,
    /// Claim.
    pub claim_id: String,
    /// Patient of the claim.
    pub member_id: String,
    /// Payee.
    pub provider_id: String,
    /// Amount.
    pub amount_idr: Idr,
    /// Currency (IDR).
    #[serde(default = "idr_currency")]
    pub currency: String,
    /// Method.
    pub method: PaymentMethod,
}

/// The bank confirmed a payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentCompleted {
    /// Stable id.
    pub event_id: String,
    /// Confirmation time.
    pub event_time: Timestamp,
    /// Payment id.
    pub payment_id: String,
    /// Claim.
    pub claim_id: String,
    /// Amount paid.
    pub amount_idr: Idr,
    /// Bank reference.
    pub bank_reference: String,
}

/// A payment failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentFailed {
    /// Stable id.
    pub event_id: String,
    /// Failure time.
    pub event_time: Timestamp,
    /// Payment id.
    pub payment_id: String,
    /// Claim.
    pub claim_id: String,
    /// Amount not paid.
    pub amount_idr: Idr,
    /// Bank failure code.
    pub failure_code: String,
    /// Reason text.
    pub failure_reason: String,
    /// Whether a retry may succeed.
    pub retryable: bool,
}

/// Eligibility question (X12 270).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EligibilityRequested {
    /// Stable id.
    pub event_id: String,
    /// Request time.
    pub event_time: Timestamp,
    /// Request id.
    pub request_id: String,
    /// Member.
    pub member_id: String,
    /// Date of the planned service.
    pub service_date: Date,
    /// Service type or procedure.
    pub service_type: String,
    /// Asking provider.
    #[serde(default)]
    pub provider_id: Option<String>,
}

/// Eligibility answer (X12 271).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EligibilityResponded {
    /// Stable id.
    pub event_id: String,
    /// Event time of the request answered.
    pub event_time: Timestamp,
    /// Request answered.
    pub request_id: String,
    /// Member.
    pub member_id: String,
    /// Date asked about.
    pub service_date: Date,
    /// Covered on that date.
    pub eligible: bool,
    /// Status on that date.
    pub status: EligibilityStatus,
    /// Plan.
    #[serde(default)]
    pub plan_id: Option<String>,
    /// First covered day.
    #[serde(default)]
    pub coverage_start: Option<Date>,
    /// Last covered day.
    #[serde(default)]
    pub coverage_end: Option<Date>,
    /// Deductible left.
    #[serde(default)]
    pub deductible_remaining_idr: Option<Idr>,
    /// Out-of-pocket room left.
    #[serde(default)]
    pub oop_remaining_idr: Option<Idr>,
    /// Annual limit left.
    #[serde(default)]
    pub annual_limit_remaining_idr: Option<Idr>,
    /// Service needs prior authorization.
    pub requires_prior_auth: bool,
    /// Why not eligible.
    #[serde(default)]
    pub reason: Option<String>,
}

/// New accumulator totals of a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccumulatorUpdated {
    /// Stable id.
    pub event_id: String,
    /// Event time of the cause.
    pub event_time: Timestamp,
    /// Member.
    pub member_id: String,
    /// Family.
    pub family_id: String,
    /// Plan.
    pub plan_id: String,
    /// Plan year.
    pub plan_year: i32,
    /// Member's deductible met.
    pub deductible_met_idr: Idr,
    /// Member's out-of-pocket met.
    pub oop_met_idr: Idr,
    /// Family's deductible met.
    pub family_deductible_met_idr: Idr,
    /// Family's out-of-pocket met.
    pub family_oop_met_idr: Idr,
    /// Plan paid to date (annual limit use).
    pub plan_paid_to_date_idr: Idr,
    /// Causing event.
    pub cause_event_id: String,
    /// Claim involved.
    #[serde(default)]
    pub claim_id: Option<String>,
    /// Monotonic version per member and plan year.
    pub version: i64,
    /// Paid out by completed payments for the member's claims of the year that still stand
    /// (the Cost_Accumulator's paid-to-date); 0 in version 1.
    #[serde(default)]
    pub paid_to_date_idr: Idr,
}

/// A rule that fired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleHit {
    /// Rule id.
    pub rule: String,
    /// Fraud pattern.
    pub pattern: String,
    /// What the rule saw.
    pub detail: String,
}

/// A feature value (a measurement, not money, so a double).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feature {
    /// Name.
    pub name: String,
    /// Value.
    pub value: f64,
}

/// One request to the gateway for a member's data: who, what, how it ended; never the data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessAudited {
    /// Stable id (the request's trace id).
    pub event_id: String,
    /// When the request was answered.
    pub event_time: Timestamp,
    /// The token's subject (`anonymous`, `unverified`).
    pub subject: String,
    /// The token's client (`anonymous`, `unverified`).
    pub client_id: String,
    /// `member`, `provider`, `partner`, `internal`, `anonymous`, `unverified`.
    pub role: String,
    /// HTTP method.
    pub method: String,
    /// The route's template.
    pub route: String,
    /// Identifiers named, `name=value`.
    pub resource_ids: Vec<String>,
    /// HTTP status answered.
    pub status: i32,
    /// The trace id the caller was given.
    pub trace_id: String,
}

/// A suspicion for an analyst.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FraudAlert {
    /// Stable id.
    pub event_id: String,
    /// Window end, or the claim's event time.
    pub event_time: Timestamp,
    /// Alert id.
    pub alert_id: String,
    /// RAISED or WITHDRAWN.
    pub status: AlertStatus,
    /// Kind of subject.
    pub subject_type: SubjectType,
    /// Provider or member id.
    pub subject_id: String,
    /// Window start (inclusive).
    pub window_start: Timestamp,
    /// Window end (exclusive).
    pub window_end: Timestamp,
    /// Severity.
    pub severity: Severity,
    /// Rules that fired.
    pub rule_hits: Vec<RuleHit>,
    /// Model name.
    #[serde(default)]
    pub model_name: Option<String>,
    /// Model version.
    #[serde(default)]
    pub model_version: Option<String>,
    /// Model score in [0, 1].
    #[serde(default)]
    pub score: Option<f64>,
    /// Shadow model version.
    #[serde(default)]
    pub shadow_model_version: Option<String>,
    /// Shadow model score.
    #[serde(default)]
    pub shadow_score: Option<f64>,
    /// Feature values.
    pub features: Vec<Feature>,
    /// Top features behind the score.
    pub top_features: Vec<String>,
    /// Claims involved.
    pub claim_ids: Vec<String>,
}

/// A record that could not be decoded or validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetter {
    /// Stable id.
    pub event_id: String,
    /// Timestamp of the original record.
    pub event_time: Timestamp,
    /// Source topic.
    pub source_topic: String,
    /// Source partition.
    pub source_partition: i32,
    /// Source offset.
    pub source_offset: i64,
    /// Class of error.
    pub error_kind: String,
    /// What was wrong, without personal data.
    pub error: String,
    /// Original key.
    #[serde(default, with = "opt_bytes")]
    pub original_key: Option<Vec<u8>>,
    /// Original value, untouched.
    #[serde(with = "bytes")]
    pub original_value: Vec<u8>,
}

/// Avro `bytes` through serde: a byte string in Avro, lowercase hex text in JSON.
mod bytes {
    use std::fmt;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() { s.serialize_str(&crate::json::hex(v)) } else { s.serialize_bytes(v) }
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("bytes, or hex text")
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
            if !v.len().is_multiple_of(2) || !v.is_ascii() {
                return Err(E::custom("hex text must have an even number of ASCII hex digits"));
            }
            (0..v.len()).step_by(2).map(|i| u8::from_str_radix(&v[i..i + 2], 16).map_err(E::custom)).collect()
        }

        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::new();
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() { d.deserialize_any(BytesVisitor) } else { d.deserialize_byte_buf(BytesVisitor) }
    }
}

mod opt_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(transparent)]
    struct Wrapped(#[serde(with = "super::bytes")] Vec<u8>);

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => s.serialize_some(&Wrapped(bytes.clone())),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
    }
}
