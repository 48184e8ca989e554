//! Event-time types: calendar dates and UTC instants as plain integers.
//!
//! Avro carries them as the `date` (days since 1970-01-01) and `timestamp-millis` logical
//! types. The JSON form writes them as ISO 8601 text (`"2026-03-01"`,
//! `"2026-03-01T08:15:00.000Z"`) and also accepts the raw integers. Nothing here reads the
//! wall clock: arus's time is the time an event carries.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const MILLIS_PER_DAY: i64 = 86_400_000;

/// A calendar date, as days since 1970-01-01 (Avro `date`). Its text form covers the years
/// 0001 to 9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Date(pub i32);

/// A UTC instant with millisecond precision (Avro `timestamp-millis`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

/// Text that is not a valid date or timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {text:?}: expected {expected}")]
pub struct TimeParseError {
    what: &'static str,
    text: String,
    expected: &'static str,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i32;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i32 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of days since 1970-01-01 (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i32::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

impl Date {
    /// The date of a year, month (1–12) and day (1–31); `None` if no such day exists.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Self> {
        let valid = (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month);
        valid.then(|| Date(days_from_civil(year, month, day)))
    }

    /// Year, month and day.
    pub fn ymd(self) -> (i32, u32, u32) {
        civil_from_days(self.0)
    }

    /// Appends the date as `YYYY-MM-DD` (what `Display` writes), without the formatting
    /// machinery: a trace line names the plan's date once a claim.
    pub fn push_to(self, out: &mut String) {
        let (y, m, d) = self.ymd();
        if !(0..=9999).contains(&y) {
            use std::fmt::Write;
            let _ = write!(out, "{y:04}-{m:02}-{d:02}");
            return;
        }
        let y = y as u32;
        let digits = [
            b'0' + (y / 1000) as u8,
            b'0' + (y / 100 % 10) as u8,
            b'0' + (y / 10 % 10) as u8,
            b'0' + (y % 10) as u8,
            b'-',
            b'0' + (m / 10) as u8,
            b'0' + (m % 10) as u8,
            b'-',
            b'0' + (d / 10) as u8,
            b'0' + (d % 10) as u8,
        ];
        out.push_str(std::str::from_utf8(&digits).unwrap_or_default());
    }

    /// The calendar year.
    pub fn year(self) -> i32 {
        self.ymd().0
    }

    /// The date `days` later (earlier when negative).
    pub fn add_days(self, days: i32) -> Self {
        Date(self.0 + days)
    }

    /// Days from `earlier` to `self`.
    pub fn days_since(self, earlier: Date) -> i32 {
        self.0 - earlier.0
    }

    /// Midnight UTC at the start of this date.
    pub fn start(self) -> Timestamp {
        Timestamp(i64::from(self.0) * MILLIS_PER_DAY)
    }
}

impl Timestamp {
    /// The date (UTC) this instant falls on.
    pub fn date(self) -> Date {
        Date(self.0.div_euclid(MILLIS_PER_DAY) as i32)
    }

    /// The instant `millis` later.
    pub fn add_millis(self, millis: i64) -> Self {
        Timestamp(self.0 + millis)
    }

    /// Milliseconds since 1970-01-01T00:00:00Z.
    pub fn millis(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.rem_euclid(MILLIS_PER_DAY);
        let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
        let (mi, rest) = (rest / 60_000, rest % 60_000);
        let (s, milli) = (rest / 1000, rest % 1000);
        write!(f, "{}T{h:02}:{mi:02}:{s:02}.{milli:03}Z", self.date())
    }
}

fn digits(text: &str, range: std::ops::Range<usize>) -> Option<u32> {
    let part = text.get(range)?;
    part.bytes().all(|b| b.is_ascii_digit()).then(|| part.parse().ok())?
}

impl FromStr for Date {
    type Err = TimeParseError;

    /// Parses `YYYY-MM-DD`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || TimeParseError { what: "date", text: text.to_owned(), expected: "YYYY-MM-DD" };
        if text.len() != 10 || !text.is_ascii() || &text[4..5] != "-" || &text[7..8] != "-" {
            return Err(err());
        }
        let year = digits(text, 0..4).ok_or_else(err)? as i32;
        let month = digits(text, 5..7).ok_or_else(err)?;
        let day = digits(text, 8..10).ok_or_else(err)?;
        Date::from_ymd(year, month, day).ok_or_else(err)
    }
}

impl FromStr for Timestamp {
    type Err = TimeParseError;

    /// Parses `YYYY-MM-DDTHH:MM:SS[.mmm]Z` (UTC only, so that event time is unambiguous).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || TimeParseError {
            what: "timestamp",
            text: text.to_owned(),
            expected: "YYYY-MM-DDTHH:MM:SS[.mmm]Z (UTC)",
        };
        if !text.is_ascii() || text.len() < 20 || !text.ends_with('Z') || &text[10..11] != "T" {
            return Err(err());
        }
        let date: Date = text[..10].parse().map_err(|_| err())?;
        if &text[13..14] != ":" || &text[16..17] != ":" {
            return Err(err());
        }
        let h = digits(text, 11..13).filter(|h| *h < 24).ok_or_else(err)?;
        let mi = digits(text, 14..16).filter(|m| *m < 60).ok_or_else(err)?;
        let s = digits(text, 17..19).filter(|s| *s < 60).ok_or_else(err)?;
        let milli = match &text[19..text.len() - 1] {
            "" => 0,
            frac if frac.len() == 4 && frac.starts_with('.') => digits(frac, 1..4).ok_or_else(err)?,
            _ => return Err(err()),
        };
        let ms = ((i64::from(h) * 60 + i64::from(mi)) * 60 + i64::from(s)) * 1000 + i64::from(milli);
        Ok(date.start().add_millis(ms))
    }
}

impl Serialize for Date {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() { serializer.collect_str(self) } else { serializer.serialize_i32(self.0) }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() { serializer.collect_str(self) } else { serializer.serialize_i64(self.0) }
    }
}

/// Accepts either form whatever the deserializer claims: Avro values resolved from an older
/// writer schema come through serde's self-describing path.
struct TimeVisitor<T>(std::marker::PhantomData<T>);

impl<T> Visitor<'_> for TimeVisitor<T>
where
    T: FromStr<Err = TimeParseError> + TryFrom<i64>,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an ISO 8601 date/timestamp or an integer")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::custom(format!("{v} is out of range")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        let v = i64::try_from(v).map_err(|_| E::custom(format!("{v} is out of range")))?;
        self.visit_i64(v)
    }
}

impl TryFrom<i64> for Date {
    type Error = std::num::TryFromIntError;
    fn try_from(v: i64) -> Result<Self, Self::Error> {
        i32::try_from(v).map(Date)
    }
}

impl From<i64> for Timestamp {
    fn from(v: i64) -> Self {
        Timestamp(v)
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            deserializer.deserialize_any(TimeVisitor(std::marker::PhantomData))
        } else {
            deserializer.deserialize_i32(TimeVisitor(std::marker::PhantomData))
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            deserializer.deserialize_any(TimeVisitor(std::marker::PhantomData))
        } else {
            deserializer.deserialize_i64(TimeVisitor(std::marker::PhantomData))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_dates() {
        assert_eq!(Date::from_ymd(1970, 1, 1), Some(Date(0)));
        assert_eq!(Date::from_ymd(2026, 11, 27).map(|d| d.to_string()).as_deref(), Some("2026-11-27"));
        assert_eq!(Date::from_ymd(2024, 2, 29).map(|d| d.0), Some(19_782));
        assert_eq!(Date::from_ymd(2025, 2, 29), None);
        assert_eq!(Date::from_ymd(2025, 13, 1), None);
    }

    #[test]
    fn rejects_malformed_text() {
        // Ten bytes that are not ten characters (a date from outside is not always ASCII).
        for bad in ["2026-1-01", "2026-02-30", "20260101", "2026-01-0x", "", "2026-01-01 ", "2026é01-1", "202é-01-1"]
        {
            assert!(bad.parse::<Date>().is_err(), "{bad:?} parsed");
        }
        for bad in
            ["2026-01-01T25:00:00Z", "2026-01-01T10:00:00", "2026-01-01T10:00:00+07:00", "2026-01-01T10:00:00.1Z"]
        {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad:?} parsed");
        }
        assert_eq!("2026-01-01T00:00:01.250Z".parse::<Timestamp>().map(|t| t.0 % 86_400_000), Ok(1_250));
    }

    proptest! {
        #[test]
        fn date_text_round_trips(days in -719_162i32..=2_932_896) {
            let date = Date(days);
            prop_assert_eq!(date.to_string().parse::<Date>(), Ok(date));
        }

        #[test]
        fn a_date_pushed_is_its_display(days in -3_000_000i32..=3_500_000) {
            let mut pushed = String::from("on ");
            Date(days).push_to(&mut pushed);
            prop_assert_eq!(pushed, format!("on {}", Date(days)));
        }

        #[test]
        fn timestamp_text_round_trips(ms in -62_135_596_800_000i64..253_402_300_800_000) {
            let ts = Timestamp(ms);
            prop_assert_eq!(ts.to_string().parse::<Timestamp>(), Ok(ts));
        }
    }
}
