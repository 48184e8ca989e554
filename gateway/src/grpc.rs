//! gRPC: `arus.eligibility.v1.Eligibility/Check` (see `proto/`), the same question, validation,
//! store and rate limit as `GET /api/v1/eligibility`, and counted in the same `/metrics`.

use std::time::Instant;

use tonic::{Code, Request, Response, Status};

use crate::Gateway;
use crate::audit::Who;
use crate::error::trace_id;
use crate::routes::eligibility::{Checked, Failure};

/// The generated messages, client and server.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    tonic::include_proto!("arus.eligibility.v1");
}

/// The service's descriptors, for server reflection (`grpcurl list`, `describe`).
pub const DESCRIPTORS: &[u8] = tonic::include_file_descriptor_set!("eligibility_descriptor");

/// prost's codec, but a message that does not decode is `INVALID_ARGUMENT` (the caller's
/// mistake), where tonic says `INTERNAL`.
#[derive(Debug, Clone)]
pub struct StrictCodec<T, U>(tonic_prost::ProstCodec<T, U>);

impl<T, U> Default for StrictCodec<T, U> {
    fn default() -> Self {
        StrictCodec(tonic_prost::ProstCodec::default())
    }
}

impl<T, U> tonic::codec::Codec for StrictCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = tonic_prost::ProstEncoder<T>;
    type Decoder = StrictDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        StrictDecoder(self.0.decoder())
    }
}

/// [`StrictCodec`]'s decoder.
#[derive(Debug)]
pub struct StrictDecoder<U>(tonic_prost::ProstDecoder<U>);

impl<U: prost::Message + Default> tonic::codec::Decoder for StrictDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|status| match status.code() {
            Code::Internal => Status::invalid_argument("the request is not a well-formed CheckRequest message"),
            _ => status,
        })
    }

    fn buffer_settings(&self) -> tonic::codec::BufferSettings {
        self.0.buffer_settings()
    }
}

use proto::eligibility_server::{Eligibility, EligibilityServer};
use proto::{Benefits, CheckRequest, CheckResponse};

/// The route name `/metrics` counts gRPC checks under.
const ROUTE: &str = "/arus.eligibility.v1.Eligibility/Check";

pub(crate) struct EligibilityService {
    gateway: Gateway,
}

pub(crate) fn service(gateway: Gateway) -> EligibilityServer<EligibilityService> {
    EligibilityServer::new(EligibilityService { gateway })
}

/// An empty proto3 string is a field not given.
fn given(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// The HTTP status a gRPC code stands for in `/metrics`, so both count alike.
fn http_status(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::InvalidArgument => 400,
        Code::NotFound => 404,
        Code::ResourceExhausted => 429,
        Code::Unauthenticated => 401,
        Code::Unavailable => 503,
        _ => 500,
    }
}

impl EligibilityService {
    /// Who asks: the bearer token of the `authorization` metadata, verified (`None` without
    /// one; a token that does not verify is UNAUTHENTICATED).
    async fn caller(&self, request: &Request<CheckRequest>) -> Result<Option<crate::auth::Caller>, Status> {
        let Some(value) = request.metadata().get("authorization") else { return Ok(None) };
        let token = crate::access::bearer_token(value.as_bytes())
            .map_err(|rejected| Status::unauthenticated(format!("the authorization metadata: {}", rejected.0)))?;
        crate::access::verify(self.gateway.authenticator.clone(), token)
            .await
            .map(Some)
            .map_err(|rejected| Status::unauthenticated(format!("the bearer token is not accepted: {}", rejected.0)))
    }

    /// The answer; public like its REST twin: without a token (`named` false),
    /// covered-or-not and the plan only.
    async fn answer(&self, request: Request<CheckRequest>, named: bool) -> Result<CheckResponse, Status> {
        if let Some(limiter) = &self.gateway.limiter {
            // Public, like its REST twin: limited by address at the anonymous tier.
            let peer = request.remote_addr().map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |a| a.ip());
            let caller = limiter.address(peer, &request.metadata().clone().into_headers());
            if let Ok(verdict) = limiter.take(crate::limit::Tier::Anonymous, &caller.to_string()).await
                && let Some(wait) = verdict.wait
            {
                return Err(Status::resource_exhausted(format!(
                    "too many requests from this caller; retry in {} ms",
                    wait.as_millis().max(1)
                )));
            }
        }
        let question = request.into_inner();
        let checked = crate::routes::eligibility::check_eligibility(
            &self.gateway,
            given(question.member_id),
            given(question.service_date),
            given(question.service_type),
            named,
        )
        .await
        .map_err(|failure| match failure {
            Failure::Invalid(invalid) => Status::invalid_argument(format!("{}: {}", invalid.field, invalid.issue)),
            Failure::MemberNotFound(member_id) => Status::not_found(format!("no member {member_id}")),
            Failure::Unavailable => Status::unavailable("the state store does not answer; try again shortly"),
        })?;
        let Checked { member_id, service_date, service_type, answer } = checked;
        let text = |d: Option<arus_schemas::Date>| d.map(|d| d.to_string());
        Ok(CheckResponse {
            member_id,
            service_date: service_date.to_string(),
            service_type,
            eligible: answer.eligible,
            status: format!("{:?}", answer.status),
            plan_id: answer.plan_id,
            coverage_start: text(answer.coverage_start),
            coverage_end: text(answer.coverage_end),
            requires_prior_auth: answer.requires_prior_auth,
            reason: answer.reason,
            benefits: answer.benefits.map(|b| Benefits {
                deductible_individual_idr: b.deductible_individual_idr.0,
                deductible_family_idr: b.deductible_family_idr.0,
                oop_max_individual_idr: b.oop_max_individual_idr.0,
                oop_max_family_idr: b.oop_max_family_idr.0,
                copay_idr: b.copay_idr.0,
                coinsurance_bp: b.coinsurance_bp,
                annual_limit_idr: b.annual_limit_idr.0,
            }),
            trace_id: trace_id(),
        })
    }
}

#[tonic::async_trait]
impl Eligibility for EligibilityService {
    async fn check(&self, request: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        crate::error::traced(async move {
            let started = Instant::now();
            let member_id = request.get_ref().member_id.chars().take(64).collect::<String>();
            let caller = self.caller(&request).await;
            let result = match &caller {
                Ok(caller) => self.answer(request, caller.is_some()).await,
                Err(refused) => Err(refused.clone()),
            };
            let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
            self.gateway.metrics.observe(ROUTE, http_status(code), started.elapsed());
            // A member's coverage was asked about: on the audit trail, as over REST.
            if let Some(auditor) = &self.gateway.auditor {
                let who = match &caller {
                    Ok(None) => Who::Anonymous,
                    Err(_) => Who::Unverified,
                    Ok(Some(caller)) => Who::Caller(std::sync::Arc::new(caller.clone())),
                };
                let ids = (!member_id.is_empty()).then(|| format!("memberId={member_id}")).into_iter().collect();
                auditor.access(&who, "POST", ROUTE, ids, http_status(code));
            }
            result.map(Response::new)
        })
        .await
    }
}
