//! For the gateway tests: a plan, a member enrolled in it, and a bare HTTP/1.1 client (one
//! request per connection).

#![allow(dead_code)]

use std::io::{Read, Write};

use arus_schemas::events::{
    Benefits, ClaimLine, ClaimSubmitted, ClaimType, ContractUpdated, CoverageChangeType, CoverageChanged,
    FeeScheduleEntry, MemberCreated, NetworkStatus, PlanCreated, PlanTier, ProviderOnboarded, ProviderType,
    Relationship, Sex,
};
use arus_schemas::{Date, Event, Idr, Timestamp};
use serde_json::Value;

/// Sends a request (with extra header lines, each ending in `\r\n`) and returns the status and
/// the body text.
pub fn request_text(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    headers: &str,
) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: arus\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status");
    (status, response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned())
}

/// [`request_text`], the body read as JSON (`Null` when it is not).
pub fn request_json(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    headers: &str,
) -> (u16, Value) {
    let (status, text) = request_text(address, method, path, body, headers);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub fn date(text: &str) -> Date {
    text.parse().expect("a date")
}

/// A Silver plan, member M1 (a subscriber) and M1 enrolled from 2026-01-01.
pub fn events() -> Vec<Event> {
    let benefits = Benefits {
        deductible_individual_idr: Idr(500_000),
        deductible_family_idr: Idr(1_500_000),
        oop_max_individual_idr: Idr(5_000_000),
        oop_max_family_idr: Idr(15_000_000),
        copay_idr: Idr(25_000),
        coinsurance_bp: 2_000,
        out_of_network_coinsurance_bp: 4_000,
        annual_limit_idr: Idr(100_000_000),
        prior_auth_procedures: vec!["70551".to_owned()],
        excluded_procedures: vec![],
    };
    vec![
        Event::PlanCreated(PlanCreated {
            event_id: "p".to_owned(),
            event_time: Timestamp(0),
            plan_id: "SILVER-2026".to_owned(),
            name: "Silver".to_owned(),
            tier: PlanTier::SILVER,
            plan_year: 2026,
            version: 1,
            benefits,
        }),
        Event::MemberCreated(MemberCreated {
            event_id: "m".to_owned(),
            event_time: Timestamp(1),
            member_id: "M1".to_owned(),
            family_id: "F1".to_owned(),
            subscriber_id: "M1".to_owned(),
            relationship: Relationship::SUBSCRIBER,
            nik: "3171010101900001".to_owned(),
            full_name: "Test Member".to_owned(),
            date_of_birth: date("1990-01-01"),
            sex: Sex::MALE,
            province_code: "31".to_owned(),
            regency_code: "3171".to_owned(),
            city: "Jakarta".to_owned(),
            phone: None,
            email: None,
        }),
        coverage("c1", CoverageChangeType::ENROLLED, "2026-01-01"),
    ]
}

/// A coverage change of M1 under the Silver plan.
pub fn coverage(id: &str, change_type: CoverageChangeType, effective: &str) -> Event {
    Event::CoverageChanged(CoverageChanged {
        event_id: id.to_owned(),
        event_time: Timestamp(2),
        member_id: "M1".to_owned(),
        family_id: "F1".to_owned(),
        subscriber_id: "M1".to_owned(),
        change_type,
        plan_id: "SILVER-2026".to_owned(),
        effective_date: date(effective),
        end_date: None,
        reason: Some("VOLUNTARY".to_owned()),
    })
}

/// Provider P1 (in network, contracted for 80053) and claim C1 of member M1 for it.
pub fn provider_and_claim() -> Vec<Event> {
    vec![
        Event::ProviderOnboarded(ProviderOnboarded {
            event_id: "prov".to_owned(),
            event_time: Timestamp(0),
            provider_id: "P1".to_owned(),
            name: "Klinik".to_owned(),
            provider_type: ProviderType::CLINIC,
            province_code: "31".to_owned(),
            regency_code: "3171".to_owned(),
            city: "Jakarta".to_owned(),
            latitude_e6: 0,
            longitude_e6: 0,
            network_status: NetworkStatus::IN_NETWORK,
            specialties: vec![],
        }),
        Event::ContractUpdated(ContractUpdated {
            event_id: "contract".to_owned(),
            event_time: Timestamp(0),
            provider_id: "P1".to_owned(),
            contract_id: "K1".to_owned(),
            network_status: NetworkStatus::IN_NETWORK,
            effective_date: date("2025-01-01"),
            end_date: None,
            fee_schedule: vec![FeeScheduleEntry {
                procedure_code: "80053".to_owned(),
                contracted_amount_idr: Idr(800_000),
            }],
        }),
        Event::ClaimSubmitted(ClaimSubmitted {
            event_id: "claim".to_owned(),
            event_time: date("2026-01-21").start(),
            claim_id: "C1".to_owned(),
            member_id: "M1".to_owned(),
            provider_id: "P1".to_owned(),
            claim_type: ClaimType::PROFESSIONAL,
            service_date: date("2026-01-20"),
            auth_id: None,
            diagnosis_codes: vec!["J06.9".to_owned()],
            lines: vec![ClaimLine {
                line_number: 1,
                procedure_code: "80053".to_owned(),
                diagnosis_code: "J06.9".to_owned(),
                service_date: date("2026-01-20"),
                units: 1,
                charge_amount_idr: Idr(1_000_000),
                minutes: None,
            }],
            total_charge_idr: Idr(1_000_000),
            currency: "IDR".to_owned(),
            original_claim_id: None,
        }),
    ]
}

/// The tests' development issuer: one per test process, its tokens accepted by
/// [`authenticator`].
pub fn issuer() -> &'static arus_gateway::auth::DevIssuer {
    static ISSUER: std::sync::OnceLock<arus_gateway::auth::DevIssuer> = std::sync::OnceLock::new();
    ISSUER.get_or_init(|| arus_gateway::auth::DevIssuer::new("arus-tests").expect("a development issuer"))
}

/// Verifies the tests' tokens.
pub fn authenticator() -> std::sync::Arc<arus_gateway::auth::Authenticator> {
    std::sync::Arc::new(issuer().authenticator(arus_gateway::auth::DEFAULT_AUDIENCE))
}

/// Options that verify the tests' tokens, and nothing else.
pub fn options() -> arus_gateway::Options {
    arus_gateway::Options { authenticator: Some(authenticator()), ..arus_gateway::Options::default() }
}

/// A token of the tests' issuer for `role` (`member`, `provider`, `partner`, `internal`) and
/// id.
pub fn token(role: &str, id: &str) -> String {
    let claims = arus_gateway::auth::dev_claims(role, id);
    issuer().token(arus_gateway::auth::DEFAULT_AUDIENCE, &claims, std::time::Duration::from_secs(600))
}

/// The header line of an internal caller's token (every scope).
pub fn internal() -> String {
    format!("Authorization: Bearer {}\r\n", token("internal", "ops"))
}

/// A CA of the tests' own (rcgen).
pub fn ca() -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    // A subject of its own (rcgen's default is every certificate's: OpenSSL would take a
    // leaf with its issuer's subject for self-signed).
    params.distinguished_name.push(rcgen::DnType::CommonName, "arus tests CA");
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().expect("a key")).expect("a CA")
}

/// A certificate for `name` signed by `ca`, for `usage`, expired or not: its PEM and its key's.
pub fn certificate(
    ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    name: &str,
    usage: rcgen::ExtendedKeyUsagePurpose,
    expired: bool,
) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let key = rcgen::KeyPair::generate().expect("a key");
    let cert = params.signed_by(&key, ca).expect("a certificate");
    (cert.pem(), key.serialize_pem())
}

/// A partner listener: a server certificate for `localhost` from a CA of its own (its PEM in
/// `dir/server-ca.pem`), partners' certificates from `partners`.
pub fn partner_tls(
    dir: &std::path::Path,
    partners: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
) -> arus_gateway::server::PartnerTls {
    let server_ca = ca();
    let (chain, key) = certificate(&server_ca, "localhost", rcgen::ExtendedKeyUsagePurpose::ServerAuth, false);
    let files = [
        ("server.pem", chain),
        ("server.key", key),
        ("partners.pem", partners.pem()),
        ("server-ca.pem", server_ca.pem()),
    ];
    for (name, text) in &files {
        std::fs::write(dir.join(name), text).expect("write");
    }
    let config = arus_gateway::server::partner_tls_config(
        &dir.join("server.pem"),
        &dir.join("server.key"),
        &dir.join("partners.pem"),
    )
    .expect("a TLS configuration");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    arus_gateway::server::PartnerTls { listener, config }
}

/// A store as the jobs leave it after `events`: folded by the eligibility state, then put on
/// an embedded log and decided by the adjudication job (on `workers` workers); its report.
pub fn decided_store(
    events: Vec<Event>,
    workers: usize,
) -> (std::sync::Arc<arus_connectors::store::MemoryStore>, arus_jobs::adjudication::job::AdjudicationReport) {
    let log = arus_connectors::embedded::EmbeddedLog::new();
    log.create_all_topics().expect("topics");
    let store = std::sync::Arc::new(arus_connectors::store::MemoryStore::new());
    let mut state = arus_jobs::eligibility::EligibilityState::new();
    for event in events {
        state.apply_to(&event, &*store).expect("store");
        let bytes = arus_schemas::wire::encode(&event).expect("encode");
        log.produce(&event.topic(), Some(event.key().as_bytes()), bytes, event.event_time()).expect("produce");
    }
    let report = arus_jobs::adjudication::job::run_on_log(
        std::sync::Arc::new(log),
        &arus_jobs::runtime::Cluster::Local { workers },
        store.clone(),
    )
    .expect("adjudication");
    (store, report)
}
