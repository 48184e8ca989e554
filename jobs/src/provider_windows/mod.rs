//! Claims per provider in event-time windows: claim count, billed total and distinct members.
//!
//! Input lines are JSON objects `{"claim_id", "member_id", "provider_id", "billed_amount",
//! "service_ts"}`: `billed_amount` a JSON number with at most two decimals, read exactly from
//! its text (never through a float), `service_ts` epoch seconds. Output rows are CSV
//! `provider_id,window_start,count,sum_billed,distinct_members` (`window_start` in epoch
//! seconds, `sum_billed` with two decimals).

pub mod job;
pub mod spec;

use std::borrow::Cow;
use std::collections::HashSet;

use arus_operators::{Aggregate, LateRecord, Time, WindowAggregate, WindowChange, WindowSpec};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use timely::dataflow::StreamVec;

/// A parsed claim: the key (provider), its event time in ms, and (member, billed cents).
pub type Claim = (String, Time, (String, i64));

/// A change to one provider window: count, billed cents, distinct members.
pub type ProviderWindow = WindowChange<String, (u64, i64, u64)>;

/// A claim too late to count, with why.
pub type LateClaim = LateRecord<String, (String, i64)>;

/// Why a line is not a claim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// Not the expected JSON object.
    #[error("not a claim object: {0}")]
    Json(String),
    /// The amount is not a plain decimal with at most two places.
    #[error("billed_amount {0:?} is not a decimal number with at most two decimal places")]
    Amount(String),
    /// The timestamp is negative or absurd.
    #[error("service_ts {0} is outside 1970..=9999")]
    Timestamp(i64),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimLine<'a> {
    #[allow(dead_code)]
    #[serde(borrow)]
    claim_id: Cow<'a, str>,
    #[serde(borrow)]
    member_id: Cow<'a, str>,
    #[serde(borrow)]
    provider_id: Cow<'a, str>,
    #[serde(borrow)]
    billed_amount: &'a RawValue,
    service_ts: i64,
}

/// Parses one input line.
pub fn parse_claim(line: &[u8]) -> Result<Claim, ClaimError> {
    if let Some(claim) = parse_plain_claim(line) {
        return claim;
    }
    let claim: ClaimLine<'_> = serde_json::from_slice(line).map_err(|e| ClaimError::Json(e.to_string()))?;
    let cents = parse_cents(claim.billed_amount.get())?;
    if !(0..=253_402_300_799).contains(&claim.service_ts) {
        return Err(ClaimError::Timestamp(claim.service_ts));
    }
    let time = claim.service_ts as u64 * 1000;
    Ok((claim.provider_id.into_owned(), time, (claim.member_id.into_owned(), cents)))
}

/// A claim from a `ClaimSubmitted` event, as its claim line would give it: provider, the
/// submission time (in whole seconds, a line's `service_ts`), member, and the total charge in
/// cents.
pub fn claim_from_event(claim: &arus_schemas::events::ClaimSubmitted) -> Result<Claim, ClaimError> {
    let seconds = claim.event_time.0.div_euclid(1000);
    if !(0..=253_402_300_799).contains(&seconds) {
        return Err(ClaimError::Timestamp(seconds));
    }
    let total = claim.total_charge_idr.0;
    let cents = total.checked_mul(100).ok_or_else(|| ClaimError::Amount(total.to_string()))?;
    Ok((claim.provider_id.clone(), seconds as u64 * 1000, (claim.member_id.clone(), cents)))
}

/// What a source's record is to the job: a claim line (JSON), a `ClaimSubmitted` event in the
/// contract's wire format, or another event of the topic (`None`: passed over). A record in
/// the wire format that does not decode goes to the line parser as it is (and to the dead
/// letters if it is no claim).
pub fn claim_of(bytes: &[u8]) -> Option<Result<Claim, ClaimError>> {
    if bytes.first() == Some(&0) {
        match arus_schemas::wire::decode(bytes) {
            Ok(arus_schemas::Event::ClaimSubmitted(claim)) => return Some(claim_from_event(&claim)),
            Ok(_) => return None,
            Err(_) => {}
        }
    }
    Some(parse_claim(bytes))
}

/// The fast path for lines in exactly the shape writers produce: the five keys in order, no
/// whitespace, strings without escapes, numbers without exponents. `None` for anything else,
/// which the full JSON parser then reads (or refuses) — so both paths give the same result for
/// every line this one accepts.
fn parse_plain_claim(line: &[u8]) -> Option<Result<Claim, ClaimError>> {
    let rest = line.strip_prefix(b"{\"claim_id\":")?;
    let (_, rest) = plain_string(rest)?;
    let rest = rest.strip_prefix(b",\"member_id\":")?;
    let (member, rest) = plain_string(rest)?;
    let rest = rest.strip_prefix(b",\"provider_id\":")?;
    let (provider, rest) = plain_string(rest)?;
    let rest = rest.strip_prefix(b",\"billed_amount\":")?;
    let (amount, rest) = plain_number(rest, true)?;
    let rest = rest.strip_prefix(b",\"service_ts\":")?;
    let (ts, rest) = plain_number(rest, false)?;
    // A negative time is refused anyway; the JSON parser says how (`-0` is a float to it).
    if rest != b"}" || ts.starts_with('-') {
        return None;
    }
    let service_ts: i64 = ts.parse().ok()?;
    Some((|| {
        let cents = parse_cents(amount)?;
        if !(0..=253_402_300_799).contains(&service_ts) {
            return Err(ClaimError::Timestamp(service_ts));
        }
        Ok((provider.to_owned(), service_ts as u64 * 1000, (member.to_owned(), cents)))
    })())
}

/// A JSON string without escapes or control characters, and what follows it.
fn plain_string(input: &[u8]) -> Option<(&str, &[u8])> {
    let body = input.strip_prefix(b"\"")?;
    let end = body.iter().position(|b| *b == b'"' || *b == b'\\' || *b < 0x20)?;
    if body[end] != b'"' {
        return None;
    }
    Some((std::str::from_utf8(&body[..end]).ok()?, &body[end + 1..]))
}

/// A JSON number's text (an optional minus, digits without a leading zero, and when
/// `fraction`, an optional fraction; no exponent), and what follows it.
fn plain_number(input: &[u8], fraction: bool) -> Option<(&str, &[u8])> {
    let sign = usize::from(input.first() == Some(&b'-'));
    let digits = input[sign..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || (digits > 1 && input[sign] == b'0') {
        return None;
    }
    let mut end = sign + digits;
    if fraction && input.get(end) == Some(&b'.') {
        let decimals = input[end + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if decimals == 0 {
            return None;
        }
        end += 1 + decimals;
    }
    if matches!(input.get(end), Some(b'.' | b'e' | b'E')) {
        return None;
    }
    // ASCII by construction.
    Some((std::str::from_utf8(&input[..end]).ok()?, &input[end..]))
}

/// Hundredths of a unit from a JSON number's text: `123`, `123.4`, `123.45`, `-0.5`; no
/// exponent, at most two decimals, exactly.
pub fn parse_cents(text: &str) -> Result<i64, ClaimError> {
    let err = || ClaimError::Amount(text.to_owned());
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || fraction.len() > 2
        || !all_digits(whole)
        || !all_digits(fraction)
        || (digits.contains('.') && fraction.is_empty())
    {
        return Err(err());
    }
    let whole: i64 = whole.parse().map_err(|_| err())?;
    let fraction: i64 = if fraction.is_empty() { 0 } else { format!("{fraction:0<2}").parse().map_err(|_| err())? };
    let cents = whole.checked_mul(100).and_then(|w| w.checked_add(fraction)).ok_or_else(err)?;
    Ok(if negative { -cents } else { cents })
}

/// Count, billed cents and distinct members of a provider window.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProviderStats;

/// The distinct members of a window. Most provider windows see one or two members, so a short
/// list (one small allocation) serves until it grows past [`SMALL_SET`] and becomes a hash set.
/// Saved at checkpoints as a sorted list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(into = "Vec<String>", from = "Vec<String>")]
pub enum Members {
    /// Up to [`SMALL_SET`] members, searched linearly.
    Few(Vec<String>),
    /// More.
    Many(HashSet<String>),
}

/// Members kept in a list before switching to a hash set.
pub const SMALL_SET: usize = 16;

impl Default for Members {
    fn default() -> Self {
        Members::Few(Vec::new())
    }
}

impl From<Members> for Vec<String> {
    fn from(members: Members) -> Self {
        let mut list: Vec<String> = match members {
            Members::Few(list) => list,
            Members::Many(set) => set.into_iter().collect(),
        };
        list.sort_unstable();
        list
    }
}

impl From<Vec<String>> for Members {
    fn from(list: Vec<String>) -> Self {
        let mut members = Members::default();
        list.iter().for_each(|m| members.insert(m));
        members
    }
}

impl Members {
    fn insert(&mut self, member: &str) {
        match self {
            Members::Few(list) => {
                if list.iter().any(|m| m == member) {
                    return;
                }
                if list.len() < SMALL_SET {
                    list.push(member.to_owned());
                } else {
                    let mut set: HashSet<String> = list.drain(..).collect();
                    set.insert(member.to_owned());
                    *self = Members::Many(set);
                }
            }
            Members::Many(set) => {
                if !set.contains(member) {
                    set.insert(member.to_owned());
                }
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Members::Few(list) => list.len(),
            Members::Many(set) => set.len(),
        }
    }
}

impl Aggregate for ProviderStats {
    type Input = (String, i64);
    type State = (u64, i64, Members);
    type Output = (u64, i64, u64);

    fn add(&self, state: &mut Self::State, (member, cents): &(String, i64)) {
        state.0 += 1;
        state.1 += cents;
        state.2.insert(member);
    }

    fn merge(&self, into: &mut Self::State, from: Self::State) {
        into.0 += from.0;
        into.1 += from.1;
        match from.2 {
            Members::Few(list) => list.iter().for_each(|m| into.2.insert(m)),
            Members::Many(set) => set.iter().for_each(|m| into.2.insert(m)),
        }
    }

    fn output(&self, state: &Self::State) -> Self::Output {
        (state.0, state.1, state.2.len() as u64)
    }
}

/// Settings of the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderWindowsConfig {
    /// Window shape.
    pub windows: WindowSpec,
    /// How long after a window's end a late claim still corrects it.
    pub allowed_lateness_ms: u64,
}

/// The name of the job's windowing operator (under which its state is checkpointed).
pub const OPERATOR: &str = "ProviderWindows";

/// The job: claims in, provider window changes and late claims out; the windows are saved at
/// the checkpoints `checkpoints` asks for.
pub fn build<'scope>(
    claims: StreamVec<'scope, Time, Claim>,
    config: &ProviderWindowsConfig,
    checkpoints: Option<std::sync::Arc<dyn arus_operators::StateCheckpoints>>,
) -> (StreamVec<'scope, Time, ProviderWindow>, StreamVec<'scope, Time, LateClaim>) {
    claims.window_aggregate_checkpointed(
        OPERATOR,
        config.windows,
        config.allowed_lateness_ms,
        ProviderStats,
        checkpoints,
    )
}

/// The CSV header.
pub const CSV_HEADER: &str = "provider_id,window_start,count,sum_billed,distinct_members";

/// The CSV header for session windows, whose ends vary.
pub const SESSION_CSV_HEADER: &str = "provider_id,window_start,window_end,count,sum_billed,distinct_members";

/// One CSV row of a window result (provider ids are quoted when they need it).
pub fn csv_row(change: &ProviderWindow, out: &mut String) {
    push_csv_field(&change.key, out);
    push_row_rest(change, None, out);
}

/// One CSV row of a session window result, with the session's end.
pub fn session_csv_row(change: &ProviderWindow, out: &mut String) {
    push_csv_field(&change.key, out);
    push_row_rest(change, Some(change.window.end), out);
}

/// A window change as one JSON object (and a newline): provider, window start and end (epoch
/// seconds), count, billed sum as a decimal number with two places, distinct members, diff.
pub fn json_change(change: &ProviderWindow, out: &mut String) {
    use std::fmt::Write;
    let (count, cents, members) = change.value;
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    let provider = serde_json::Value::from(change.key.as_str());
    let _ = writeln!(
        out,
        "{{\"provider_id\":{provider},\"window_start\":{},\"window_end\":{},\"count\":{count},\"sum_billed\":{sign}{}.{:02},\"distinct_members\":{members},\"diff\":{}}}",
        change.window.start / 1000,
        change.window.end / 1000,
        abs / 100,
        abs % 100,
        change.diff
    );
}

fn push_row_rest(change: &ProviderWindow, end: Option<Time>, out: &mut String) {
    let (count, cents, members) = change.value;
    out.push(',');
    push_u64(out, change.window.start / 1000);
    if let Some(end) = end {
        out.push(',');
        push_u64(out, end / 1000);
    }
    out.push(',');
    push_u64(out, count);
    out.push(',');
    if cents < 0 {
        out.push('-');
    }
    let abs = cents.unsigned_abs();
    push_u64(out, abs / 100);
    out.push('.');
    let hundredths = (abs % 100) as u8;
    out.push(char::from(b'0' + hundredths / 10));
    out.push(char::from(b'0' + hundredths % 10));
    out.push(',');
    push_u64(out, members);
    out.push('\n');
}

/// Decimal digits of `n` (what `write!` does, without the formatting machinery: rows are
/// written by the million).
fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[at..]).expect("ASCII digits"));
}

fn push_csv_field(field: &str, out: &mut String) {
    if field.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `ClaimSubmitted` event gives the claim its claim line gives (the line as writers of
    /// flat claims make it), read from the event or from its wire bytes; other events are no
    /// claims; a time before 1970 is refused either way.
    #[test]
    fn an_event_gives_the_claim_its_line_gives() {
        use arus_generator::{GeneratorConfig, Output, generate};
        let mut claims = Vec::new();
        let mut others = Vec::new();
        let config = GeneratorConfig { claims: 300, days: 10, ..GeneratorConfig::default() };
        generate(&config, |output| -> Result<(), std::convert::Infallible> {
            match output {
                Output::Event(arus_schemas::Event::ClaimSubmitted(c)) => claims.push(c),
                Output::Event(other) if others.len() < 20 => others.push(other),
                _ => {}
            }
            Ok(())
        })
        .expect("generate");
        assert!(claims.len() >= 300);
        let line = |c: &arus_schemas::events::ClaimSubmitted| {
            serde_json::json!({
                "claim_id": c.claim_id,
                "member_id": c.member_id,
                "provider_id": c.provider_id,
                "billed_amount": c.total_charge_idr.0,
                "service_ts": c.event_time.0.div_euclid(1000),
            })
            .to_string()
        };
        for mut claim in claims {
            let from_line = parse_claim(line(&claim).as_bytes()).expect("a claim line");
            assert_eq!(claim_from_event(&claim).expect("a claim"), from_line);
            let wire = arus_schemas::wire::encode(&arus_schemas::Event::ClaimSubmitted(claim.clone())).expect("wire");
            assert_eq!(claim_of(&wire).expect("a claim").expect("valid"), from_line);
            claim.event_time = arus_schemas::Timestamp(-1_000);
            assert_eq!(
                claim_from_event(&claim).map_err(|e| e.to_string()),
                parse_claim(line(&claim).as_bytes()).map_err(|e| e.to_string())
            );
        }
        for other in others {
            assert!(claim_of(&arus_schemas::wire::encode(&other).expect("wire")).is_none(), "{other:?}");
        }
        assert!(matches!(claim_of(b"{\"not\": 1}"), Some(Err(ClaimError::Json(_)))));
    }

    #[test]
    fn amounts_are_read_exactly() {
        assert_eq!(parse_cents("1234.5"), Ok(123_450));
        assert_eq!(parse_cents("0.07"), Ok(7));
        assert_eq!(parse_cents("99"), Ok(9_900));
        assert_eq!(parse_cents("-0.5"), Ok(-50));
        for bad in ["1.234", "1e3", "1.", ".5", "", "-", "1,5", "92233720368547758.08"] {
            assert!(parse_cents(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lines_parse_or_say_why_not() {
        let line = br#"{"claim_id":"C1","member_id":"M1","provider_id":"P1","billed_amount":150000.25,"service_ts":1767225600}"#;
        assert_eq!(parse_claim(line), Ok(("P1".to_owned(), 1_767_225_600_000, ("M1".to_owned(), 15_000_025))));
        assert!(parse_plain_claim(line).is_some(), "the usual shape takes the fast path");
        assert!(parse_plain_claim(&line[..line.len() - 1]).is_none(), "anything else goes to the JSON parser");
        let bad_amount =
            br#"{"claim_id":"C1","member_id":"M1","provider_id":"P1","billed_amount":1.005,"service_ts":1}"#;
        assert!(matches!(parse_claim(bad_amount), Err(ClaimError::Amount(_))));
        assert!(matches!(parse_claim(b"{\"claim_id\":1}"), Err(ClaimError::Json(_))));
        assert!(matches!(parse_claim(b"garbage"), Err(ClaimError::Json(_))));
    }

    proptest::proptest! {
        /// The fast path and the full JSON parser agree on every line the fast path takes, and
        /// lines it does not take still parse (or fail) as before.
        #[test]
        fn the_fast_path_agrees_with_the_json_parser(
            claim in "[A-Za-z0-9 _é\\\\\"-]{0,8}",
            member in "[A-Za-z0-9 _é-]{0,8}",
            provider in "[A-Za-z0-9_,\\\\-]{0,8}",
            amount in "-?(0|[1-9][0-9]{0,6}|0[0-9])(\\.[0-9]{0,3})?(e1)?",
            ts in "-?[0-9]{1,13}",
            space in proptest::bool::ANY,
        ) {
            let sep = if space { ", " } else { "," };
            let line = format!(
                "{{\"claim_id\":{}{sep}\"member_id\":{}{sep}\"provider_id\":{}{sep}\"billed_amount\":{amount}{sep}\"service_ts\":{ts}}}",
                serde_json::Value::from(claim.as_str()),
                serde_json::Value::from(member.as_str()),
                serde_json::Value::from(provider.as_str()),
            );
            let full = || -> Result<Claim, ClaimError> {
                let claim: ClaimLine<'_> =
                    serde_json::from_slice(line.as_bytes()).map_err(|e| ClaimError::Json(e.to_string()))?;
                let cents = parse_cents(claim.billed_amount.get())?;
                if !(0..=253_402_300_799).contains(&claim.service_ts) {
                    return Err(ClaimError::Timestamp(claim.service_ts));
                }
                Ok((claim.provider_id.into_owned(), claim.service_ts as u64 * 1000, (claim.member_id.into_owned(), cents)))
            };
            if let Some(fast) = parse_plain_claim(line.as_bytes()) {
                proptest::prop_assert_eq!(fast, full(), "{}", line);
            }
            proptest::prop_assert_eq!(parse_claim(line.as_bytes()), full(), "{}", line);
        }
    }

    #[test]
    fn distinct_members_stay_exact_past_the_small_list() {
        let mut state = <ProviderStats as Aggregate>::State::default();
        for i in 0..(SMALL_SET * 3) {
            ProviderStats.add(&mut state, &(format!("M{}", i % (SMALL_SET + 5)), 1));
        }
        assert!(matches!(state.2, Members::Many(_)));
        assert_eq!(
            ProviderStats.output(&state),
            ((SMALL_SET * 3) as u64, (SMALL_SET * 3) as i64, (SMALL_SET + 5) as u64)
        );
        let mut few = <ProviderStats as Aggregate>::State::default();
        for m in ["A", "B", "A"] {
            ProviderStats.add(&mut few, &(m.to_owned(), 5));
        }
        assert_eq!(ProviderStats.output(&few), (3, 15, 2));
        let saved = serde_json::to_string(&state).expect("serializes");
        let back: <ProviderStats as Aggregate>::State = serde_json::from_str(&saved).expect("reads back");
        assert_eq!(ProviderStats.output(&back), ProviderStats.output(&state));
        assert_eq!(serde_json::to_string(&back).expect("serializes"), saved, "saved sorted, so the same bytes");
    }

    #[test]
    fn csv_rows_format_money_and_quote_fields() {
        let change = WindowChange {
            key: "P,1".to_owned(),
            window: arus_operators::Window { start: 300_000, end: 600_000 },
            value: (3, 1_050, 2),
            diff: 1,
        };
        let mut row = String::new();
        csv_row(&change, &mut row);
        assert_eq!(row, "\"P,1\",300,3,10.50,2\n");
        let refund = WindowChange { value: (1, -1_205, 1), ..change.clone() };
        row.clear();
        session_csv_row(&refund, &mut row);
        assert_eq!(row, "\"P,1\",300,600,1,-12.05,1\n");
        for n in [0, 7, 10, 99, 100, 18_446_744_073_709_551_615] {
            let mut text = String::new();
            push_u64(&mut text, n);
            assert_eq!(text, n.to_string());
        }
    }
}
