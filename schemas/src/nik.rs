//! The NIK (Nomor Induk Kependudukan), Indonesia's 16-digit national identity number.
//!
//! Layout: `PPRRDD` (province, regency, district codes) `DDMMYY` (date of birth, with 40
//! added to the day for women) `SSSS` (serial, from 0001). Generated NIKs follow the layout
//! with real province and regency codes; they are fictional. A NIK is personal data: it is
//! never logged.

use crate::Date;
use crate::events::Sex;

/// What a well-formed NIK encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NikParts {
    /// Date of birth (the century is not encoded; taken as the latest not after `today`).
    pub date_of_birth: Date,
    /// Sex.
    pub sex: Sex,
}

/// Builds a NIK. `regency_code` has 4 digits, `district` is 1–99, `serial` is 1–9999.
pub fn make_nik(regency_code: &str, district: u32, dob: Date, sex: Sex, serial: u32) -> String {
    let (y, m, d) = dob.ymd();
    let day = if sex == Sex::FEMALE { d + 40 } else { d };
    format!("{regency_code}{district:02}{day:02}{m:02}{:02}{serial:04}", y.rem_euclid(100))
}

/// Checks a NIK's layout and decodes it; `None` if it is not a plausible NIK. Two-digit years
/// are placed in the century that puts the birth date on or before `today`.
pub fn parse_nik(nik: &str, today: Date) -> Option<NikParts> {
    if nik.len() != 16 || !nik.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| nik[r].parse::<u32>().ok();
    let (province, district, serial) = (num(0..2)?, num(4..6)?, num(12..16)?);
    if province < 11 || district == 0 || serial == 0 {
        return None;
    }
    let (raw_day, month, yy) = (num(6..8)?, num(8..10)?, num(10..12)? as i32);
    let (day, sex) = if raw_day > 40 { (raw_day - 40, Sex::FEMALE) } else { (raw_day, Sex::MALE) };
    let century = today.year() - today.year().rem_euclid(100);
    let dob = Date::from_ymd(century + yy, month, day)
        .filter(|d| *d <= today)
        .or_else(|| Date::from_ymd(century - 100 + yy, month, day))?;
    Some(NikParts { date_of_birth: dob, sex })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes_female_day_plus_forty() {
        let dob = Date::from_ymd(1990, 3, 7).expect("date");
        assert_eq!(make_nik("3174", 5, dob, Sex::FEMALE, 12), "3174054703900012");
        assert_eq!(make_nik("3174", 5, dob, Sex::MALE, 12), "3174050703900012");
    }

    #[test]
    fn rejects_malformed() {
        let today = Date::from_ymd(2026, 11, 27).expect("date");
        for bad in [
            "",
            "317405470390001",
            "31740547039000120",
            "3174054703900000",
            "0974054703900012",
            "317405470390001x",
            "3174053203900012",
        ] {
            assert_eq!(parse_nik(bad, today), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn parse_inverts_make(days_old in 0i32..36_000, female: bool, district in 1u32..99, serial in 1u32..9999) {
            let today = Date::from_ymd(2026, 11, 27).expect("date");
            let dob = today.add_days(-days_old);
            let sex = if female { Sex::FEMALE } else { Sex::MALE };
            let nik = make_nik("3273", district, dob, sex, serial);
            prop_assert_eq!(parse_nik(&nik, today), Some(NikParts { date_of_birth: dob, sex }));
        }
    }
}

/// A NIK's keyed digest: HMAC-SHA256 under `key`, in hex. What a store may keep to find a NIK
/// already on record without holding the NIK (a NIK has too few possible values for an unkeyed
/// hash to hide it; the key comes from configuration, never from the repository).
pub fn nik_digest(key: &[u8], nik: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(nik.as_bytes());
    crate::json::hex(&mac.finalize().into_bytes())
}

#[cfg(test)]
mod digest_tests {
    #[test]
    fn the_digest_depends_on_the_key_and_the_nik() {
        let a = super::nik_digest(b"key one", "3171014703900012");
        assert_eq!(a.len(), 64);
        assert_eq!(a, super::nik_digest(b"key one", "3171014703900012"));
        assert_ne!(a, super::nik_digest(b"key two", "3171014703900012"));
        assert_ne!(a, super::nik_digest(b"key one", "3171014703900013"));
        assert!(!a.contains("3171014703900012"));
    }
}
