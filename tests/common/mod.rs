//! Claims for the end-to-end tests, and the windows they should give, computed directly.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Claims with event times moving forward and jittering back by up to ten minutes (well
/// within the pipeline's one-day out-of-orderness), amounts with 0–2 decimals.
pub fn claims(n: u64) -> Vec<(String, String, String, String, u64)> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    let mut clock = 1_767_225_600u64;
    (0..n)
        .map(|i| {
            clock += next(20);
            let ts = clock - next(600);
            let amount = match next(3) {
                0 => format!("{}", next(2_000_000)),
                1 => format!("{}.{}", next(2_000_000), next(10)),
                _ => format!("{}.{:02}", next(2_000_000), next(100)),
            };
            (format!("C{i}"), format!("M{}", next(50)), format!("P{}", next(12)), amount, ts)
        })
        .collect()
}

pub fn write_claims(path: &Path, claims: &[(String, String, String, String, u64)], extra: &str) {
    let mut text = String::new();
    for (c, m, p, a, ts) in claims {
        text.push_str(&format!(
            "{{\"claim_id\":\"{c}\",\"member_id\":\"{m}\",\"provider_id\":\"{p}\",\"billed_amount\":{a},\"service_ts\":{ts}}}\n"
        ));
    }
    text.push_str(extra);
    std::fs::write(path, text).expect("write claims");
}

pub fn cents(amount: &str) -> i64 {
    let (whole, frac) = amount.split_once('.').unwrap_or((amount, ""));
    whole.parse::<i64>().expect("whole") * 100 + format!("{frac:0<2}").parse::<i64>().expect("fraction")
}

/// The expected CSV, computed directly: group by (window start, provider).
pub fn expected_csv(claims: &[(String, String, String, String, u64)]) -> String {
    let mut windows: BTreeMap<(u64, String), (u64, i64, BTreeSet<String>)> = BTreeMap::new();
    for (_, member, provider, amount, ts) in claims {
        let w = windows.entry((ts - ts % 300, provider.clone())).or_default();
        w.0 += 1;
        w.1 += cents(amount);
        w.2.insert(member.clone());
    }
    let mut csv = "provider_id,window_start,count,sum_billed,distinct_members\n".to_owned();
    for ((start, provider), (count, sum, members)) in windows {
        csv.push_str(&format!("{provider},{start},{count},{}.{:02},{}\n", sum / 100, sum % 100, members.len()));
    }
    csv
}

/// One claim as a JSON line (no newline).
pub fn claim_line((c, m, p, a, ts): &(String, String, String, String, u64)) -> String {
    format!(
        "{{\"claim_id\":\"{c}\",\"member_id\":\"{m}\",\"provider_id\":\"{p}\",\"billed_amount\":{a},\"service_ts\":{ts}}}"
    )
}
