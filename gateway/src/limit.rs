//! Rate limits per caller and tier, shared by REST and gRPC: the generic cell rate algorithm,
//! in integer microseconds. A caller may send `requests` at once, then one more each
//! `per / requests`; past that it is told when to come back. Anonymous callers are counted
//! by address (behind trusted proxies, the forwarded one), token holders by client, at their
//! tier's rate; budgets live in this process or, shared by every replica, in Redis (one
//! atomic script per request, on Redis's clock).

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

/// A tier's limit, per caller: anonymous callers by address, token holders by client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiers {
    /// Callers without a token (and with one that does not verify), per address.
    pub anonymous: RateLimit,
    /// Token holders, per client.
    pub authenticated: RateLimit,
    /// Token holders whose token says `arus_tier: premium`, per client.
    pub premium: RateLimit,
}

impl Default for Tiers {
    /// The seed's: 100, 1,000 and 10,000 a minute.
    fn default() -> Self {
        let per_minute = |requests| RateLimit { requests, per: Duration::from_secs(60) };
        Tiers { anonymous: per_minute(100), authenticated: per_minute(1_000), premium: per_minute(10_000) }
    }
}

impl Tiers {
    /// One limit for every tier.
    pub fn all(limit: RateLimit) -> Self {
        Tiers { anonymous: limit, authenticated: limit, premium: limit }
    }
}

/// Rate limiting: the tiers, where budgets are kept, whose forwarded-for header is believed.
#[derive(Debug, Clone, Default)]
pub struct RateLimiting {
    /// The limits.
    pub tiers: Tiers,
    /// Redis, to share budgets between gateway replicas (one atomic script per request);
    /// without it, budgets are this process's.
    pub redis: Option<String>,
    /// Put before Redis keys.
    pub prefix: String,
    /// Proxies in front of the gateway: from them, the caller's address is the last one of
    /// `X-Forwarded-For` that is not a trusted proxy's.
    pub trusted_proxies: Vec<IpAddr>,
}

/// Which tier a caller is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tier {
    Anonymous,
    Authenticated,
    Premium,
}

impl Tier {
    fn name(self) -> &'static str {
        match self {
            Tier::Anonymous => "anonymous",
            Tier::Authenticated => "authenticated",
            Tier::Premium => "premium",
        }
    }
}

/// What a request's budget says: the limit, what is left, when it is whole again, and, when
/// refused, how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) limit: u32,
    pub(crate) remaining: u32,
    pub(crate) reset: Duration,
    pub(crate) wait: Option<Duration>,
}

/// How many callers are remembered in process before the idle ones are forgotten.
const CALLERS_KEPT: usize = 65_536;

/// The generic cell rate algorithm in Redis, atomically: the key holds the theoretical
/// arrival time in microseconds of Redis's own clock (so replicas' clocks do not matter).
/// ARGV: interval and burst in microseconds. Returns {admitted, microseconds}: until the
/// budget is whole when admitted, to wait when not.
const GCRA: &str = r#"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local after = tat + interval
if after - now > burst then
  return {0, after - now - burst}
end
redis.call('SET', KEYS[1], after, 'PX', math.floor((after - now) / 1000) + 1)
return {1, after - now}
"#;

enum Budgets {
    /// Per caller key, the theoretical arrival time (microseconds from `start`).
    Local {
        start: Instant,
        callers: Mutex<HashMap<String, i64>>,
    },
    Redis {
        connection: redis::aio::MultiplexedConnection,
        script: redis::Script,
        prefix: String,
    },
}

/// The limiter: per tier and caller, a budget.
pub(crate) struct Limiter {
    tiers: Tiers,
    budgets: Budgets,
    trusted_proxies: Vec<IpAddr>,
}

impl Limiter {
    /// A limiter as `config` says; connects to Redis when it names one.
    pub(crate) async fn new(config: RateLimiting) -> Result<Self, String> {
        let budgets = match &config.redis {
            None => Budgets::Local { start: Instant::now(), callers: Mutex::new(HashMap::new()) },
            Some(url) => {
                let shown = arus_connectors::store::without_credentials(url);
                let client = redis::Client::open(url.as_str()).map_err(|e| format!("rate limits in {shown}: {e}"))?;
                let connection = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| format!("rate limits in {shown}: {e}"))?;
                Budgets::Redis { connection, script: redis::Script::new(GCRA), prefix: config.prefix.clone() }
            }
        };
        Ok(Limiter { tiers: config.tiers, budgets, trusted_proxies: config.trusted_proxies })
    }

    /// The caller's address: the peer's, or, from a trusted proxy, the last address of
    /// `X-Forwarded-For` that is not a trusted proxy's.
    pub(crate) fn address(&self, peer: IpAddr, headers: &axum::http::HeaderMap) -> IpAddr {
        if !self.trusted_proxies.contains(&peer) {
            return peer;
        }
        let forwarded = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>();
        forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .rev()
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .find(|a| !self.trusted_proxies.contains(a))
            .unwrap_or(peer)
    }

    /// Takes one request from `caller`'s budget in `tier`.
    pub(crate) async fn take(&self, tier: Tier, caller: &str) -> Result<Verdict, String> {
        let limit = match tier {
            Tier::Anonymous => self.tiers.anonymous,
            Tier::Authenticated => self.tiers.authenticated,
            Tier::Premium => self.tiers.premium,
        };
        let interval = (limit.per.as_micros() / u128::from(limit.requests)).max(1) as i64;
        let burst = interval * i64::from(limit.requests);
        let key = format!("{}:{caller}", tier.name());
        let (admitted, micros) = match &self.budgets {
            Budgets::Local { start, callers } => {
                let now = start.elapsed().as_micros() as i64;
                let mut callers = callers.lock().unwrap_or_else(|e| e.into_inner());
                if callers.len() >= CALLERS_KEPT && !callers.contains_key(&key) {
                    callers.retain(|_, tat| *tat > now);
                }
                let tat = callers.get(&key).copied().unwrap_or(now).max(now);
                let after = tat + interval;
                if after - now > burst {
                    (false, after - now - burst)
                } else {
                    callers.insert(key, after);
                    (true, after - now)
                }
            }
            Budgets::Redis { connection, script, prefix } => {
                let mut connection = connection.clone();
                let (admitted, micros): (i64, i64) = script
                    .key(format!("{prefix}ratelimit:{key}"))
                    .arg(interval)
                    .arg(burst)
                    .invoke_async(&mut connection)
                    .await
                    .map_err(|e| format!("rate limits in Redis: {e}"))?;
                (admitted == 1, micros)
            }
        };
        let micros = Duration::from_micros(micros.max(0) as u64);
        Ok(if admitted {
            let left = (burst - micros.as_micros() as i64).max(0) / interval;
            Verdict { limit: limit.requests, remaining: left as u32, reset: micros, wait: None }
        } else {
            let reset = Duration::from_micros(burst as u64) + micros;
            Verdict { limit: limit.requests, remaining: 0, reset, wait: Some(micros) }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(tiers: Tiers, trusted: &[&str]) -> Limiter {
        let config = RateLimiting {
            tiers,
            trusted_proxies: trusted.iter().map(|a| a.parse().expect("an address")).collect(),
            ..RateLimiting::default()
        };
        futures_lite(Limiter::new(config)).expect("a local limiter")
    }

    /// Runs a future that never waits (the local limiter's).
    fn futures_lite<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().expect("a runtime").block_on(future)
    }

    #[test]
    fn a_burst_per_caller_and_tier_then_told_when_to_come_back() {
        let hour = |requests| RateLimit { requests, per: Duration::from_secs(3_600) };
        let limiter = limiter(Tiers { anonymous: hour(2), authenticated: hour(3), premium: hour(5) }, &[]);
        let take = |tier, caller| futures_lite(limiter.take(tier, caller)).expect("a verdict");
        let first = take(Tier::Anonymous, "10.0.0.1");
        assert_eq!((first.limit, first.remaining, first.wait), (2, 1, None));
        assert_eq!(take(Tier::Anonymous, "10.0.0.1").remaining, 0);
        let refused = take(Tier::Anonymous, "10.0.0.1");
        assert!(refused.wait.is_some_and(|w| w > Duration::from_secs(1_790) && w <= Duration::from_secs(1_800)));
        assert_eq!(take(Tier::Anonymous, "10.0.0.2").wait, None, "another address has its own budget");
        for tier_limit in [(Tier::Authenticated, 3), (Tier::Premium, 5)] {
            for n in 0..tier_limit.1 {
                assert_eq!(take(tier_limit.0, "client-a").wait, None, "{tier_limit:?} #{n}");
            }
            assert!(take(tier_limit.0, "client-a").wait.is_some(), "{tier_limit:?}: one more is refused");
        }
    }

    #[test]
    fn only_a_trusted_proxy_says_who_the_caller_is() {
        let limiter = limiter(Tiers::default(), &["10.0.0.9"]);
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.7, 198.51.100.1, 10.0.0.9".parse().expect("a value"));
        let (proxy, stranger): (IpAddr, IpAddr) = ("10.0.0.9".parse().expect("ip"), "192.0.2.1".parse().expect("ip"));
        assert_eq!(limiter.address(proxy, &headers), "198.51.100.1".parse::<IpAddr>().expect("ip"));
        assert_eq!(limiter.address(stranger, &headers), stranger, "a stranger's header is not believed");
        assert_eq!(limiter.address(proxy, &axum::http::HeaderMap::new()), proxy);
    }

    #[test]
    fn limits_parse_with_clear_errors() {
        assert_eq!("200".parse(), Ok(RateLimit { requests: 200, per: Duration::from_secs(1) }));
        assert_eq!("10/h".parse(), Ok(RateLimit { requests: 10, per: Duration::from_secs(3_600) }));
        assert!("0/s".parse::<RateLimit>().expect_err("zero").contains("positive"));
        assert!("5/day".parse::<RateLimit>().expect_err("unit").contains("unknown unit"));
    }
}
