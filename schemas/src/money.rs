//! Money: whole rupiah as a 64-bit integer, never a float.
//!
//! Every amount in the event contract is IDR in whole rupiah (`long` in Avro, field names end
//! in `_idr`). The rupiah's minor unit (sen) has not circulated for decades and no claim,
//! tariff or plan is priced in it, so whole rupiah is exact for the business; rates such as
//! coinsurance are basis points (`_bp`), applied with explicit rounding where they are used.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Sub, SubAssign};

use serde::{Deserialize, Serialize};

/// An amount of Indonesian rupiah, in whole rupiah.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Idr(pub i64);

impl Idr {
    /// Zero rupiah.
    pub const ZERO: Idr = Idr(0);

    /// The smaller of two amounts.
    pub fn min(self, other: Idr) -> Idr {
        Idr(self.0.min(other.0))
    }

    /// `self - other`, but never below zero.
    pub fn saturating_sub(self, other: Idr) -> Idr {
        Idr((self.0 - other.0).max(0))
    }

    /// `self * bp / 10_000`, rounded half up (basis points: 2000 = 20%). Computed in 128 bits,
    /// so no intermediate overflows.
    pub fn apply_bp(self, bp: i32) -> Idr {
        let product = i128::from(self.0) * i128::from(bp);
        let rounded = (product + 5_000).div_euclid(10_000);
        Idr(rounded as i64)
    }
}

impl Add for Idr {
    type Output = Idr;
    fn add(self, rhs: Idr) -> Idr {
        Idr(self.0 + rhs.0)
    }
}

impl AddAssign for Idr {
    fn add_assign(&mut self, rhs: Idr) {
        self.0 += rhs.0;
    }
}

impl Sub for Idr {
    type Output = Idr;
    fn sub(self, rhs: Idr) -> Idr {
        Idr(self.0 - rhs.0)
    }
}

impl SubAssign for Idr {
    fn sub_assign(&mut self, rhs: Idr) {
        self.0 -= rhs.0;
    }
}

impl Sum for Idr {
    fn sum<I: Iterator<Item = Idr>>(iter: I) -> Idr {
        Idr(iter.map(|a| a.0).sum())
    }
}

impl fmt::Display for Idr {
    /// Indonesian notation: `Rp 1.250.000`, `-Rp 5.000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 0 {
            f.write_str("-")?;
        }
        f.write_str("Rp ")?;
        let mut written = Ok(());
        grouped(self.0.unsigned_abs(), &mut |digits| {
            if written.is_ok() {
                written = f.write_str(digits);
            }
        });
        written
    }
}

impl Idr {
    /// Appends the amount as [`Display`](fmt::Display) writes it, without the formatting
    /// machinery (the adjudicator writes a dozen into each line of a decision's trace).
    pub fn push_to(self, out: &mut String) {
        if self.0 < 0 {
            out.push('-');
        }
        out.push_str("Rp ");
        grouped(self.0.unsigned_abs(), &mut |digits| out.push_str(digits));
    }
}

/// "000" to "999", three digits each: amounts are written three digits at a time.
const THOUSANDS: &str = {
    const DIGITS: [u8; 3000] = {
        let mut digits = [0u8; 3000];
        let mut i = 0;
        while i < 1000 {
            digits[i * 3] = b'0' + (i / 100) as u8;
            digits[i * 3 + 1] = b'0' + (i / 10 % 10) as u8;
            digits[i * 3 + 2] = b'0' + (i % 10) as u8;
            i += 1;
        }
        digits
    };
    match std::str::from_utf8(&DIGITS) {
        Ok(text) => text,
        Err(_) => panic!("ASCII digits"),
    }
};

/// The digits of `n` (below 1,000): all three with `leading` zeros, else from the first that
/// is not a zero.
fn three(n: u64, leading: bool) -> &'static str {
    let at = n as usize * 3;
    let from = if leading || n >= 100 {
        0
    } else if n >= 10 {
        1
    } else {
        2
    };
    &THOUSANDS[at + from..at + 3]
}

/// `n` grouped by threes with dots, handed to `push` piece by piece: three digits at a time
/// from a table, no allocation (a division per digit made amounts a seventh of the
/// adjudication fold's instructions: a dozen are written into every priced line's trace).
fn grouped(n: u64, push: &mut impl FnMut(&str)) {
    if n < 1000 {
        push(three(n, false));
    } else {
        grouped(n / 1000, push);
        push(".");
        push(three(n % 1000, true));
    }
}

/// `n` with `separator` between groups of three digits: `group_digits(1234567, ',')` is
/// `"1,234,567"`.
pub fn group_digits(n: u64, separator: char) -> String {
    let digits = n.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(separator);
        }
        grouped.push(c);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_amount_pushed_reads_as_it_displays() {
        for amount in [0, 5, 999, 1_000, -5_000, 1_250_000, -987_654_321, i64::MAX, i64::MIN] {
            let mut pushed = String::from("x ");
            Idr(amount).push_to(&mut pushed);
            assert_eq!(pushed, format!("x {}", Idr(amount)), "{amount}");
        }
    }

    #[test]
    fn displays_indonesian_grouping() {
        assert_eq!(Idr(1_250_000).to_string(), "Rp 1.250.000");
        assert_eq!(Idr(999).to_string(), "Rp 999");
        assert_eq!(Idr(-5_000).to_string(), "-Rp 5.000");
        assert_eq!(Idr(0).to_string(), "Rp 0");
        assert_eq!(Idr(i64::MIN).to_string(), "-Rp 9.223.372.036.854.775.808");
        assert_eq!(Idr(100_000).to_string(), "Rp 100.000");
        for n in [0u64, 7, 12, 100, 999, 1_000, 1_001, 10_010, 65_536, 123_456_789, 1_000_000_007, u64::MAX] {
            let mut pieces = String::new();
            grouped(n, &mut |digits| pieces.push_str(digits));
            assert_eq!(pieces, group_digits(n, '.'), "{n}");
        }
        // And a spread of amounts of every length (a fixed sequence, the same every run).
        let mut n: u64 = 1;
        for _ in 0..20_000 {
            n = n.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let amount = n >> (n % 64);
            let mut pieces = String::new();
            grouped(amount, &mut |digits| pieces.push_str(digits));
            assert_eq!(pieces, group_digits(amount, '.'), "{amount}");
        }
    }

    #[test]
    fn basis_points_round_half_up() {
        assert_eq!(Idr(500_000).apply_bp(2000), Idr(100_000));
        assert_eq!(Idr(3).apply_bp(5000), Idr(2)); // 1.5 -> 2
        assert_eq!(Idr(1).apply_bp(4999), Idr(0)); // 0.4999 -> 0
        assert_eq!(Idr(i64::MAX).apply_bp(10_000), Idr(i64::MAX));
    }
}
