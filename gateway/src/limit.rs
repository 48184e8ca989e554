//! Rate limits per caller (its address), shared by REST and gRPC: the generic cell rate
//! algorithm, in integer time. A caller may send `requests` at once, then one more each
//! `per / requests`; past that it is told when to come back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most `requests` per `per` from one caller, in bursts of up to `requests`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed at once, and per `per`.
    pub requests: u32,
    /// The period.
    pub per: Duration,
}

impl FromStr for RateLimit {
    type Err = String;

    /// `200/s`, `6000/min`, `10/h`; a bare number is per second.
    fn from_str(text: &str) -> Result<Self, String> {
        let (count, unit) = text.split_once('/').unwrap_or((text, "s"));
        let per = match unit {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3_600),
            other => return Err(format!("rate limit {text:?}: unknown unit {other:?} (use s, min or h)")),
        };
        let requests: u32 = count
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("rate limit {text:?}: expected a positive count of requests, as in 200/s"))?;
        Ok(RateLimit { requests, per })
    }
}

/// How many callers are remembered before the idle ones are forgotten.
const CALLERS_KEPT: usize = 65_536;

/// The limiter: per caller, the time at which its budget is whole again.
pub(crate) struct Limiter {
    interval: Duration,
    burst: Duration,
    callers: Mutex<HashMap<IpAddr, Instant>>,
}

impl Limiter {
    pub(crate) fn new(limit: RateLimit) -> Self {
        let interval = limit.per / limit.requests;
        Limiter { interval, burst: interval * limit.requests, callers: Mutex::new(HashMap::new()) }
    }

    /// Takes one request from `caller`'s budget at `now`; when it is spent, how long until
    /// the next request is allowed.
    pub(crate) fn admit(&self, caller: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut callers = self.callers.lock().unwrap_or_else(|e| e.into_inner());
        if callers.len() >= CALLERS_KEPT && !callers.contains_key(&caller) {
            callers.retain(|_, whole| *whole > now);
        }
        let whole = callers.get(&caller).copied().filter(|t| *t > now).unwrap_or(now);
        let after = whole + self.interval;
        if after > now + self.burst {
            return Err(after - (now + self.burst));
        }
        callers.insert(caller, after);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_interval_per_caller() {
        let limiter = Limiter::new("3/s".parse().expect("a limit"));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().expect("ip"), "10.0.0.2".parse().expect("ip"));
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.admit(a, start), Ok(()));
        }
        let wait = limiter.admit(a, start).expect_err("the fourth at once is refused");
        assert_eq!(wait, Duration::from_secs(1) / 3);
        assert_eq!(limiter.admit(b, start), Ok(()), "another caller has its own budget");
        assert!(limiter.admit(a, start + wait - Duration::from_nanos(1)).is_err());
        assert_eq!(limiter.admit(a, start + wait), Ok(()));
        // After a quiet second the whole burst is back, no more.
        let later = start + Duration::from_secs(2);
        for _ in 0..3 {
            assert_eq!(limiter.admit(a, later), Ok(()));
        }
        assert!(limiter.admit(a, later).is_err());
    }

    #[test]
    fn limits_parse_with_clear_errors() {
        assert_eq!("200".parse(), Ok(RateLimit { requests: 200, per: Duration::from_secs(1) }));
        assert_eq!("10/h".parse(), Ok(RateLimit { requests: 10, per: Duration::from_secs(3_600) }));
        assert!("0/s".parse::<RateLimit>().expect_err("zero").contains("positive"));
        assert!("5/day".parse::<RateLimit>().expect_err("unit").contains("unknown unit"));
    }
}
