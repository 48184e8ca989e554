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
    arus_gateway::serve(listener, Arc::new(store), arus_gateway::Options { publisher, rate_limit, grpc, clickhouse })?;
    Ok(())
}
