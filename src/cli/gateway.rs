//! `arus gateway`: the REST gateway over the state in Redis.

use std::sync::Arc;

use anyhow::Context;

/// `arus gateway` arguments.
#[derive(Debug, clap::Args)]
pub struct GatewayArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Redis holding the materialized state.
    #[arg(long, default_value = "redis://127.0.0.1:6379/")]
    redis: String,
    /// Prefix of the keys (as the jobs' `store.prefix`).
    #[arg(long, default_value = "arus:")]
    prefix: String,
    /// Kafka brokers to publish commands to (`POST /api/v1/members`, coverage); without it,
    /// commands are refused with 503.
    #[arg(long, value_name = "BROKERS")]
    kafka: Option<String>,
    /// Put before topic names when publishing (as the jobs' `source.topic_prefix`).
    #[arg(long, default_value = "")]
    topic_prefix: String,
    /// Also serve gRPC (`arus.eligibility.v1.Eligibility/Check`) on this address.
    #[arg(long, value_name = "ADDR")]
    grpc_addr: Option<String>,
    /// Requests per address without a token on `/api/` and gRPC, as `100/min`, `200/s` or
    /// `10/h`; past it, 429 with when to retry. Budgets are kept in `--redis`, shared by every
    /// gateway on it.
    #[arg(long, default_value = "100/min", value_parser = rate)]
    rate_limit_anonymous: arus_gateway::RateLimit,
    /// Requests per client with a token.
    #[arg(long, default_value = "1000/min", value_parser = rate)]
    rate_limit_authenticated: arus_gateway::RateLimit,
    /// Requests per client whose token says `arus_tier: premium`.
    #[arg(long, default_value = "10000/min", value_parser = rate)]
    rate_limit_premium: arus_gateway::RateLimit,
    /// No rate limits at all (a gateway behind one that limits).
    #[arg(long)]
    no_rate_limit: bool,
    /// Serve the partner routes (`/api/partner/v1/*`) on this address, over TLS with client
    /// certificates (mTLS); without it, they answer nowhere.
    #[arg(long, value_name = "ADDR", requires_all = ["partner_cert", "partner_key", "partner_ca"])]
    partner_addr: Option<String>,
    /// The partner listener's certificate chain (PEM).
    #[arg(long, value_name = "PEM")]
    partner_cert: Option<std::path::PathBuf>,
    /// The partner listener's private key (PEM).
    #[arg(long, value_name = "PEM")]
    partner_key: Option<std::path::PathBuf>,
    /// The CA (PEM) partners' client certificates must chain to; a certificate names its
    /// partner in its first DNS name's first label (`X1.partners.example.id` is X1).
    #[arg(long, value_name = "PEM")]
    partner_ca: Option<std::path::PathBuf>,
    /// Serve gRPC over TLS with client certificates of `--partner-ca` (the `--partner-cert`
    /// and `--partner-key` as the server's), as the partner routes.
    #[arg(long, requires_all = ["grpc_addr", "partner_cert", "partner_key", "partner_ca"])]
    grpc_tls: bool,
    /// The environment variable holding the key of NIK digests, the eligibility job's
    /// `nik_key_env`: a new member whose NIK is on record is then refused (409).
    #[arg(long, value_name = "NAME")]
    nik_key_env: Option<String>,
    /// A proxy in front of the gateway whose `X-Forwarded-For` is believed (repeatable).
    #[arg(long, value_name = "IP")]
    trusted_proxy: Vec<std::net::IpAddr>,
    /// ClickHouse's HTTP address, for `/api/v1/analytics/…` (without it they answer 503).
    #[arg(long, value_name = "URL")]
    clickhouse: Option<String>,
    /// The ClickHouse database (as `arus clickhouse migrate --database`).
    #[arg(long, default_value = "arus")]
    clickhouse_database: String,
    /// The OpenID provider whose access tokens are accepted (its URL, as tokens name it in
    /// `iss`); its keys are found through `/.well-known/openid-configuration`.
    #[arg(long, value_name = "URL", required_unless_present = "insecure_dev_issuer")]
    issuer: Option<String>,
    /// The audience tokens must be for (`aud`).
    #[arg(long, default_value = arus_gateway::auth::DEFAULT_AUDIENCE)]
    audience: String,
    /// Where "today" is for the commands' checks (a service date is never after today there):
    /// `Asia/Jakarta` (WIB), `Asia/Pontianak`, `Asia/Makassar` (WITA), `Asia/Jayapura` (WIT),
    /// `UTC`, or an offset such as `+07:00`.
    #[arg(long, default_value = "Asia/Jakarta", value_parser = utc_offset_minutes)]
    timezone: i32,
    /// Most one claim line may charge, in rupiah; past it a claim is refused (422).
    #[arg(long, value_name = "IDR", default_value_t = arus_gateway::commands::Plausible::default().max_line_charge.0)]
    max_line_charge_idr: i64,
    /// Most one claim may charge, all lines together, in rupiah.
    #[arg(long, value_name = "IDR", default_value_t = arus_gateway::commands::Plausible::default().max_claim_charge.0)]
    max_claim_charge_idr: i64,
    /// Development only: accept tokens of an issuer inside this process (a key made at start)
    /// and print one for an internal caller. Never on a gateway others reach.
    #[arg(long, conflicts_with = "issuer")]
    insecure_dev_issuer: bool,
}

/// A line on stderr for whoever started the gateway; a reader that has gone (a closed pipe)
/// must not stop the server, so a failed write is ignored.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Serves until stopped.
pub fn run(args: GatewayArgs) -> anyhow::Result<()> {
    let rate_limit = (!args.no_rate_limit).then(|| arus_gateway::RateLimiting {
        tiers: arus_gateway::Tiers {
            anonymous: args.rate_limit_anonymous,
            authenticated: args.rate_limit_authenticated,
            premium: args.rate_limit_premium,
        },
        redis: Some(args.redis.clone()),
        prefix: args.prefix.clone(),
        trusted_proxies: args.trusted_proxy.clone(),
    });
    let store = arus_connectors::store::RedisStore::connect(&args.redis, &args.prefix)?;
    let listener =
        std::net::TcpListener::bind(&args.addr).with_context(|| format!("--addr {}: cannot listen", args.addr))?;
    let grpc = match &args.grpc_addr {
        Some(addr) => {
            Some(std::net::TcpListener::bind(addr).with_context(|| format!("--grpc-addr {addr}: cannot listen"))?)
        }
        None => None,
    };
    let grpc_note = match &grpc {
        Some(grpc) => format!("; gRPC arus.eligibility.v1.Eligibility on {}", grpc.local_addr()?),
        None => String::new(),
    };
    note!(
        "arus gateway on http://{}: GET /api/v1/eligibility?memberId=…&serviceDate=YYYY-MM-DD&serviceType=…, /openapi.json, /health, /ready{grpc_note}",
        listener.local_addr()?
    );
    let publisher = match &args.kafka {
        Some(brokers) => Some(Arc::new(
            arus_gateway::commands::TopicPublisher::kafka(brokers, &args.topic_prefix).map_err(anyhow::Error::msg)?,
        ) as Arc<dyn arus_gateway::commands::Publisher>),
        None => None,
    };
    // Accesses to members' data go to audit.events on the same bus, through a producer of
    // their own (a command's flush does not wait for audit records).
    let audit = match &args.kafka {
        Some(brokers) => Some(Arc::new(
            arus_gateway::commands::TopicPublisher::kafka(brokers, &args.topic_prefix).map_err(anyhow::Error::msg)?,
        ) as Arc<dyn arus_gateway::commands::Publisher>),
        None => {
            note!("warning: no --kafka: accesses to members' data are not recorded on audit.events");
            None
        }
    };
    let clickhouse = match &args.clickhouse {
        Some(url) => Some(
            arus_connectors::clickhouse::ClickHouse::connect(url, &args.clickhouse_database)
                .with_context(|| format!("--clickhouse {url}"))?
                .client(),
        ),
        None => None,
    };
    let authenticator = super::authenticator(args.issuer.as_deref(), &args.audience, "")?;
    let partner = match (&args.partner_addr, &args.partner_cert, &args.partner_key, &args.partner_ca) {
        (Some(addr), Some(cert), Some(key), Some(ca)) => {
            let config = arus_gateway::server::partner_tls_config(cert, key, ca)
                .map_err(|e| anyhow::anyhow!("--partner-*: {e}"))?;
            let listener =
                std::net::TcpListener::bind(addr).with_context(|| format!("--partner-addr {addr}: cannot listen"))?;
            note!("partner routes on https://{} (client certificates required)", listener.local_addr()?);
            Some(arus_gateway::server::PartnerTls { listener, config })
        }
        _ => None,
    };
    let grpc_tls = match (args.grpc_tls, &args.partner_cert, &args.partner_key, &args.partner_ca) {
        (true, Some(cert), Some(key), Some(ca)) => {
            let read = |path: &std::path::PathBuf| {
                std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))
            };
            Some(arus_gateway::GrpcTls { chain: read(cert)?, key: read(key)?, client_ca: read(ca)? })
        }
        _ => None,
    };
    let nik_key = match &args.nik_key_env {
        None => None,
        Some(name) => Some(
            std::env::var(name)
                .ok()
                .filter(|k| k.len() >= 32)
                .ok_or_else(|| anyhow::anyhow!("--nik-key-env: {name} is not set to a key of at least 32 characters"))?
                .into_bytes(),
        ),
    };
    let options = arus_gateway::Options {
        nik_key,
        grpc_tls,
        partner,
        publisher,
        rate_limit,
        grpc,
        clickhouse,
        audit,
        authenticator: Some(Arc::new(authenticator)),
        limits: arus_gateway::Limits::default(),
        plausible: arus_gateway::commands::Plausible {
            utc_offset_minutes: args.timezone,
            max_line_charge: arus_schemas::Idr(args.max_line_charge_idr),
            max_claim_charge: arus_schemas::Idr(args.max_claim_charge_idr),
        },
    };
    arus_gateway::serve(listener, Arc::new(store), options)?;
    Ok(())
}

/// `--timezone`: Indonesia's zones (none keeps daylight time), UTC, or `±HH:MM`; minutes east
/// of UTC.
fn utc_offset_minutes(text: &str) -> Result<i32, String> {
    match text {
        "Asia/Jakarta" | "Asia/Pontianak" | "WIB" => return Ok(7 * 60),
        "Asia/Makassar" | "WITA" => return Ok(8 * 60),
        "Asia/Jayapura" | "WIT" => return Ok(9 * 60),
        "UTC" | "Z" => return Ok(0),
        _ => {}
    }
    let bad = || format!("{text:?} is not Asia/Jakarta, Asia/Makassar, Asia/Jayapura, UTC or an offset such as +07:00");
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err(bad()),
    };
    let (hours, minutes) = rest.split_once(':').ok_or_else(bad)?;
    let (hours, minutes): (i32, i32) = (hours.parse().map_err(|_| bad())?, minutes.parse().map_err(|_| bad())?);
    if hours > 14 || minutes > 59 {
        return Err(bad());
    }
    Ok(sign * (hours * 60 + minutes))
}

/// `--rate-limit-*`: `100/min`, `200/s`, `10/h`.
fn rate(text: &str) -> Result<arus_gateway::RateLimit, String> {
    text.parse()
}

#[cfg(test)]
mod tests {
    #[test]
    fn timezones_are_indonesias_utc_or_offsets() {
        for (text, minutes) in [("Asia/Jakarta", 420), ("Asia/Makassar", 480), ("Asia/Jayapura", 540), ("UTC", 0)] {
            assert_eq!(super::utc_offset_minutes(text), Ok(minutes), "{text}");
        }
        assert_eq!(super::utc_offset_minutes("+05:30"), Ok(330));
        assert_eq!(super::utc_offset_minutes("-03:00"), Ok(-180));
        for bad in ["Europe/Paris", "7", "+7", "+15:00", "+07:60", ""] {
            assert!(super::utc_offset_minutes(bad).is_err(), "{bad}");
        }
    }
}
