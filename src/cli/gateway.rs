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
    /// Requests per caller address on `/api/` and gRPC, as `200/s`, `6000/min` or `10/h`;
    /// past it, 429 with when to retry. `off` for none.
    #[arg(long, default_value = "1000/s")]
    rate_limit: String,
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
    /// Development only: accept tokens of an issuer inside this process (a key made at start)
    /// and print one for an internal caller. Never on a gateway others reach.
    #[arg(long, conflicts_with = "issuer")]
    insecure_dev_issuer: bool,
}

/// Serves until stopped.
pub fn run(args: GatewayArgs) -> anyhow::Result<()> {
    let rate_limit = match args.rate_limit.as_str() {
        "off" => None,
        text => Some(text.parse::<arus_gateway::RateLimit>().map_err(|e| anyhow::anyhow!("--rate-limit: {e}"))?),
    };
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
    eprintln!(
        "arus gateway on http://{}: GET /api/v1/eligibility?memberId=…&serviceDate=YYYY-MM-DD&serviceType=…, /openapi.json, /health, /ready{grpc_note}",
        listener.local_addr()?
    );
    let publisher = match &args.kafka {
        Some(brokers) => Some(Arc::new(
            arus_gateway::commands::TopicPublisher::kafka(brokers, &args.topic_prefix).map_err(anyhow::Error::msg)?,
        ) as Arc<dyn arus_gateway::commands::Publisher>),
        None => None,
    };
    let clickhouse = match &args.clickhouse {
        Some(url) => Some(
            arus_connectors::clickhouse::ClickHouse::connect(url, &args.clickhouse_database)
                .with_context(|| format!("--clickhouse {url}"))?
                .client(),
        ),
        None => None,
    };
    let authenticator = match &args.issuer {
        Some(issuer) => arus_gateway::auth::Authenticator::discover(issuer, &args.audience)
            .map_err(|e| anyhow::anyhow!("--issuer {issuer}: {e}"))?,
        None => {
            let dev = arus_gateway::auth::DevIssuer::new("arus-insecure-dev-issuer").map_err(anyhow::Error::msg)?;
            let claims = arus_gateway::auth::dev_claims("internal", "dev");
            let token = dev.token(&args.audience, &claims, std::time::Duration::from_secs(12 * 3_600));
            eprintln!(
                "INSECURE DEVELOPMENT ISSUER: tokens are signed by a key made in this process; an internal token (12 hours):\n  {token}"
            );
            dev.authenticator(&args.audience)
        }
    };
    let options =
        arus_gateway::Options { publisher, rate_limit, grpc, clickhouse, authenticator: Some(Arc::new(authenticator)) };
    arus_gateway::serve(listener, Arc::new(store), options)?;
    Ok(())
}
