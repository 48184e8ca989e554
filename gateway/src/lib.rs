//! The gateway: REST over the state the jobs materialize (Redis, or the embedded store).
//! Eligibility first: `GET /api/v1/eligibility?memberId=…&serviceDate=…&serviceType=…`, and the
//! same check for partners as `POST /api/partner/v1/eligibility/verify` with a JSON body.
//!
//! Responses follow the seed's format: `{"data": …, "meta": {"traceId": …}, "links": {"self": …}}`;
//! errors `{"error": {"code", "message", "details", "trace_id"}}` (the seed's names) with 400 for a malformed or
//! missing parameter, 404 for an unknown member, 503 when the store cannot be read. A client's
//! mistake never gets a 500. `GET /health` says the process is up, `GET /ready` that the store
//! answers, `GET /metrics` the rate, errors and latency of each route (Prometheus text).
//!
//! The gateway decides nothing: a command becomes an event, a query reads the read models the
//! jobs write (`arus_schemas::read_models`). It depends on `schemas` and `connectors`, never on
//! the jobs.
//!
//! # Layout
//! - `routes/`: the REST routes, a module per resource — `eligibility` (and the benefits
//!   summary), `members` (and accumulators), `claims`, `authorizations`, `commands` (every
//!   command in, with idempotency keys), `analytics` (ClickHouse), `health`.
//! - [`commands`]: validating commands and publishing their events ([`commands::Publisher`]).
//! - [`grpc`]: `arus.eligibility.v1.Eligibility` over tonic, the same check as REST.
//! - [`auth`]: bearer tokens verified against the issuer's keys (discovered, cached,
//!   rotated), the caller they name, and the development issuer; `access`: who may call what
//!   (one table of scopes and roles, one middleware) and what a caller may see of a resource.
//! - `body`: the success body every route answers with, typed; `error`: the error body, trace
//!   ids; `idempotency`: `Idempotency-Key` bound to its caller, route and request; `limit`: rate
//!   limits; `metrics`: RED per route; `openapi`: the OpenAPI document, generated from the
//!   handlers, with the access table as each operation's security.

mod access;
mod audit;
pub mod auth;
mod body;
pub mod commands;
mod error;
pub mod grpc;
mod idempotency;
mod limit;
mod metrics;
mod openapi;
mod routes;
pub mod server;

pub use limit::{RateLimit, RateLimiting, Tiers};
pub use openapi::openapi_document;
pub use server::Limits;

use std::sync::Arc;

use commands::Publisher;

use arus_connectors::store::StateStore;
use axum::Router;

use error::{method_not_allowed, not_found};
use metrics::{Red, record};

/// What the handlers (REST and gRPC) share.
#[derive(Clone)]
pub(crate) struct Gateway {
    store: Arc<dyn StateStore>,
    metrics: Arc<Red>,
    publisher: Option<Arc<dyn Publisher>>,
    limiter: Option<Arc<limit::Limiter>>,
    /// ClickHouse, for the analytics routes.
    clickhouse: Option<clickhouse::Client>,
    /// Verifies bearer tokens; without it only the public routes answer.
    authenticator: Option<Arc<auth::Authenticator>>,
    /// What commands may plausibly say, and where "today" is.
    plausible: commands::Plausible,
    /// Where accesses to members' data are recorded.
    auditor: Option<Arc<audit::Auditor>>,
    /// The key of NIK digests (as the eligibility job's), to find a NIK already on record.
    nik_key: Option<Arc<[u8]>>,
}

/// How a gateway serves, beyond its store.
#[derive(Default)]
pub struct Options {
    /// Where commands are published; without it they are refused with 503.
    pub publisher: Option<Arc<dyn Publisher>>,
    /// Requests allowed per caller and tier on the `/api/` routes and gRPC; past it, 429
    /// (gRPC `RESOURCE_EXHAUSTED`) with when to retry. None: no limit.
    pub rate_limit: Option<RateLimiting>,
    /// Serve gRPC (`arus.eligibility.v1.Eligibility`) on this listener too.
    pub grpc: Option<std::net::TcpListener>,
    /// ClickHouse (its database chosen), for `/api/v1/analytics/…`; without it they answer 503.
    pub clickhouse: Option<clickhouse::Client>,
    /// Verifies bearer tokens (see `access` for who may call what). Without it only the
    /// public routes answer: every other is 401.
    pub authenticator: Option<Arc<auth::Authenticator>>,
    /// Connection cap and timeouts.
    pub limits: server::Limits,
    /// What commands may plausibly say (charge ceilings), and the insurer's UTC offset for
    /// "today".
    pub plausible: commands::Plausible,
    /// Where every access to a member's data is recorded (`AccessAudited` on `audit.events`);
    /// without it, none is.
    pub audit: Option<Arc<dyn Publisher>>,
    /// The partner listener (TLS with client certificates); the partner routes answer only
    /// there.
    pub partner: Option<server::PartnerTls>,
    /// gRPC over TLS with client certificates: the server's certificate chain and key and the
    /// partners' CA, PEM; without it, gRPC is plain.
    pub grpc_tls: Option<GrpcTls>,
    /// The key of NIK digests, the eligibility job's (`nik_key_env`): with it, a new member
    /// whose NIK is on record is refused (409).
    pub nik_key: Option<Vec<u8>>,
}

/// gRPC's mTLS: PEM texts.
#[derive(Debug, Clone)]
pub struct GrpcTls {
    /// The server's certificate chain.
    pub chain: String,
    /// Its private key.
    pub key: String,
    /// The CA client certificates must chain to.
    pub client_ca: String,
}

/// Stops a task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The routes of [`openapi::api`] (each documented where it is registered), with the
/// answers for unknown routes and methods, rate limits and metrics.
fn routes(gateway: Gateway) -> Router {
    let (router, _document) = openapi::api().split_for_parts();
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(axum::middleware::from_fn_with_state(gateway.clone(), access::authorize))
        .route_layer(axum::middleware::from_fn_with_state(gateway.clone(), record))
        .layer(axum::middleware::from_fn(server::bounded))
        .layer(axum::extract::DefaultBodyLimit::max(server::MAX_BODY))
        .with_state(gateway)
}

/// Serves REST on `listener` (and gRPC, per `options`) until the process ends, on a runtime
/// of its own.
pub fn serve(listener: std::net::TcpListener, store: Arc<dyn StateStore>, options: Options) -> std::io::Result<()> {
    let metrics = Arc::new(Red::default());
    let auditor = options.audit.map(|publisher| Arc::new(audit::Auditor::new(publisher, metrics.registry())));
    let gateway = Gateway {
        store,
        metrics,
        publisher: options.publisher,
        limiter: None,
        clickhouse: options.clickhouse,
        authenticator: options.authenticator,
        plausible: options.plausible,
        auditor,
        nik_key: options.nik_key.map(Arc::from),
    };
    listener.set_nonblocking(true)?;
    if let Some(grpc) = &options.grpc {
        grpc.set_nonblocking(true)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let mut gateway = gateway;
        if let Some(config) = options.rate_limit {
            gateway.limiter = Some(Arc::new(limit::Limiter::new(config).await.map_err(std::io::Error::other)?));
        }
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let app = routes(gateway.clone());
        let partner = match options.partner {
            None => None,
            Some(partner) => {
                partner.listener.set_nonblocking(true)?;
                let listener = tokio::net::TcpListener::from_std(partner.listener)?;
                Some(tokio::spawn(server::serve(listener, app.clone(), options.limits, Some(partner.config))))
            }
        };
        let _partner = partner.map(AbortOnDrop);
        let rest = server::serve(listener, app, options.limits, None);
        match options.grpc {
            None => rest.await,
            Some(grpc) => {
                let incoming = tonic::transport::server::TcpIncoming::from(tokio::net::TcpListener::from_std(grpc)?);
                let grpc = async move {
                    let reflection = tonic_reflection::server::Builder::configure()
                        .register_encoded_file_descriptor_set(grpc::DESCRIPTORS)
                        .build_v1()
                        .map_err(std::io::Error::other)?;
                    let mut builder = tonic::transport::Server::builder();
                    if let Some(tls) = &options.grpc_tls {
                        let config = tonic::transport::ServerTlsConfig::new()
                            .identity(tonic::transport::Identity::from_pem(&tls.chain, &tls.key))
                            .client_ca_root(tonic::transport::Certificate::from_pem(&tls.client_ca));
                        builder = builder.tls_config(config).map_err(std::io::Error::other)?;
                    }
                    builder
                        .add_service(grpc::service(gateway))
                        .add_service(reflection)
                        .serve_with_incoming(incoming)
                        .await
                        .map_err(std::io::Error::other)
                };
                tokio::try_join!(rest, grpc).map(|_| ())
            }
        }
    })
}
