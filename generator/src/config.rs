//! What to generate.

use arus_schemas::Date;
use serde::{Deserialize, Serialize};

/// Generator settings. Everything not given has a default that makes a small, realistic run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Seed: the same seed (and settings) gives the same output, byte for byte.
    pub seed: u64,
    /// Claims to generate (before duplicates and other injected extra claims).
    pub claims: u64,
    /// Members in force at the start; default a third of `claims` (at least 50).
    pub members: Option<u64>,
    /// Providers; default one per 50 members (at least 24).
    pub providers: Option<u64>,
    /// First date of service.
    pub start: Date,
    /// Days of service dates simulated (late claims are submitted after them).
    pub days: u32,
    /// Share of claims made fraudulent, in basis points (100 = 1%).
    pub fraud_rate_bp: u32,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            seed: 7,
            claims: 10_000,
            members: None,
            providers: None,
            start: Date::from_ymd(2026, 1, 1).unwrap_or_default(),
            days: 90,
            fraud_rate_bp: 200,
        }
    }
}

/// A setting out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A value outside its allowed range.
    #[error("{field} = {value} is out of range: {allowed}")]
    OutOfRange {
        /// Setting.
        field: &'static str,
        /// Value given.
        value: String,
        /// What is allowed.
        allowed: &'static str,
    },
}

const MAX_CLAIMS: u64 = 1_000_000_000;
const MAX_MEMBERS: u64 = 100_000_000;

impl GeneratorConfig {
    /// Checks every setting, without generating anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let out = |field, value: String, allowed| Err(ConfigError::OutOfRange { field, value, allowed });
        if self.claims > MAX_CLAIMS {
            return out("claims", self.claims.to_string(), "0 to 1,000,000,000");
        }
        if let Some(m) = self.members
            && !(1..=MAX_MEMBERS).contains(&m)
        {
            return out("members", m.to_string(), "1 to 100,000,000");
        }
        if let Some(p) = self.providers
            && !(4..=1_000_000).contains(&p)
        {
            return out("providers", p.to_string(), "4 to 1,000,000 (one of each facility type at least)");
        }
        if !(1..=3_660).contains(&self.days) {
            return out("days", self.days.to_string(), "1 to 3,660");
        }
        if self.fraud_rate_bp > 5_000 {
            return out("fraud_rate", format!("{} bp", self.fraud_rate_bp), "0 to 50% (5000 bp)");
        }
        let (year, _, _) = self.start.ymd();
        if !(1990..=2200).contains(&year) {
            return out("start", self.start.to_string(), "a date between 1990 and 2200");
        }
        Ok(())
    }

    /// Members in force at the start.
    pub fn member_count(&self) -> u64 {
        self.members.unwrap_or((self.claims / 3).max(50))
    }

    /// Providers.
    pub fn provider_count(&self) -> u64 {
        self.providers.unwrap_or((self.member_count() / 50).max(24))
    }
}

/// Parses a rate written as a fraction (`0.02`), a percentage (`2%`) or basis points
/// (`200bp`) into basis points, exactly (no floating point).
pub fn parse_rate_bp(text: &str) -> Result<u32, String> {
    let text = text.trim();
    let err = || {
        format!("invalid rate {text:?}: write a fraction like 0.02, a percentage like 2% or basis points like 200bp")
    };
    let (number, scale) = if let Some(n) = text.strip_suffix("bp") {
        (n, 0)
    } else if let Some(n) = text.strip_suffix('%') {
        (n, 2)
    } else {
        (text, 4)
    };
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() || frac.len() > scale {
        return Err(err());
    }
    let digits = |s: &str| s.is_empty() || s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(frac) {
        return Err(err());
    }
    let padded = format!("{whole}{frac:0<scale$}");
    let bp: u64 = padded.parse().map_err(|_| err())?;
    if bp > 10_000 {
        return Err(format!("rate {text:?} is above 100%"));
    }
    Ok(bp as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_exactly() {
        assert_eq!(parse_rate_bp("0.02"), Ok(200));
        assert_eq!(parse_rate_bp("2%"), Ok(200));
        assert_eq!(parse_rate_bp("2.5%"), Ok(250));
        assert_eq!(parse_rate_bp("2.55%"), Ok(255));
        assert_eq!(parse_rate_bp("200bp"), Ok(200));
        assert_eq!(parse_rate_bp("0"), Ok(0));
        assert_eq!(parse_rate_bp(".1"), Ok(1000));
        for bad in ["", "abc", "0.00001", "2.555%", "-1", "1.5", "1e-2", "."] {
            assert!(parse_rate_bp(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn validation_names_the_setting() {
        let bad = GeneratorConfig { days: 0, ..GeneratorConfig::default() };
        let err = bad.validate().expect_err("0 days is invalid");
        assert!(err.to_string().contains("days"), "{err}");
        assert_eq!(GeneratorConfig::default().validate(), Ok(()));
    }
}
