//! Ground truth for injected fraud: one label per fraudulent claim.

use serde::{Deserialize, Serialize};

/// The fraud patterns the generator injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FraudPattern {
    /// The same claim billed again (exactly, or with a slightly different charge).
    Duplicate,
    /// A simple visit billed as a high-complexity one.
    Upcoding,
    /// A lab panel billed as its separately priced components.
    Unbundling,
    /// Services billed for a member whose coverage had ended, or who had died.
    PhantomBilling,
    /// Far more units of a timed therapy than fit in a day.
    ExcessiveUnits,
    /// A provider billing more than 24 hours of timed services on one day.
    ImpossibleDay,
    /// One member's card used on the same day at facilities hundreds of kilometres apart.
    CardSharing,
}

impl FraudPattern {
    /// Every pattern.
    pub const ALL: &'static [FraudPattern] = &[
        FraudPattern::Duplicate,
        FraudPattern::Upcoding,
        FraudPattern::Unbundling,
        FraudPattern::PhantomBilling,
        FraudPattern::ExcessiveUnits,
        FraudPattern::ImpossibleDay,
        FraudPattern::CardSharing,
    ];

    /// The snake_case name used in labels and alerts.
    pub fn as_str(self) -> &'static str {
        match self {
            FraudPattern::Duplicate => "duplicate",
            FraudPattern::Upcoding => "upcoding",
            FraudPattern::Unbundling => "unbundling",
            FraudPattern::PhantomBilling => "phantom_billing",
            FraudPattern::ExcessiveUnits => "excessive_units",
            FraudPattern::ImpossibleDay => "impossible_day",
            FraudPattern::CardSharing => "card_sharing",
        }
    }
}

/// The truth about one fraudulent claim (one JSON line in `labels.jsonl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FraudLabel {
    /// The fraudulent claim.
    pub claim_id: String,
    /// Pattern injected.
    pub pattern: FraudPattern,
    /// Member on the claim.
    pub member_id: String,
    /// Billing provider.
    pub provider_id: String,
    /// Other claims that make the pattern visible (the original of a duplicate, the other
    /// claims of an impossible day, the same-day claim far away).
    pub related_claim_ids: Vec<String>,
    /// What was done, in words.
    pub detail: String,
}
