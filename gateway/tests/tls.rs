//! The partner listener: TLS with client certificates. A CA and certificates are made here at
//! run time (rcgen): a partner's and a provider's good certificates are served, naming who
//! they are; a certificate of an unknown CA, an expired one and one for servers only are
//! refused in the handshake; a certificate naming another partner than the token is 403.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use arus_connectors::embedded::EmbeddedLog;
use arus_connectors::store::MemoryStore;
use arus_jobs::eligibility::EligibilityState;
use common::{ca, certificate};
use rcgen::{CertifiedIssuer, ExtendedKeyUsagePurpose, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;

struct Gateway {
    plain: SocketAddr,
    partner: SocketAddr,
    ca: CertificateDer<'static>,
}

fn serve(partners: &CertifiedIssuer<'static, KeyPair>) -> Gateway {
    let dir = tempfile::tempdir().expect("a folder");
    let tls = common::partner_tls(dir.path(), partners);
    let pem = std::fs::read(dir.path().join("server-ca.pem")).expect("the server's CA");
    let ca = CertificateDer::from_pem_slice(&pem).expect("a certificate");
    let store = Arc::new(MemoryStore::new());
    let mut state = EligibilityState::new();
    for event in common::events() {
        state.apply_to(&event, &*store).expect("store");
    }
    let log = Arc::new(EmbeddedLog::new());
    log.create_all_topics().expect("topics");
    let plain = bind();
    let addresses = (plain.local_addr().expect("address"), tls.listener.local_addr().expect("address"));
    let options = arus_gateway::Options {
        publisher: Some(Arc::new(arus_gateway::commands::TopicPublisher::log(log))),
        partner: Some(tls),
        ..common::options()
    };
    std::thread::spawn(move || arus_gateway::serve(plain, store, options));
    Gateway { plain: addresses.0, partner: addresses.1, ca }
}

fn bind() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a port")
}

/// POSTs `body` to `path` over TLS with `client` (a certificate's PEM and its key's) and
/// `token`: the status and body, or why the connection failed.
fn post_tls(
    gateway: &Gateway,
    client: Option<&(String, String)>,
    path: &str,
    body: &str,
    token: &str,
) -> Result<(u16, Value), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(gateway.ca.clone()).expect("a root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => {
            let chain = CertificateDer::pem_slice_iter(chain.as_bytes()).collect::<Result<Vec<_>, _>>().expect("PEM");
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("a key");
            builder.with_client_auth_cert(chain, key).expect("a client certificate")
        }
    };
    let name = ServerName::try_from("localhost").expect("a name");
    let connection = rustls::ClientConnection::new(Arc::new(config), name).expect("a connection");
    let socket = std::net::TcpStream::connect(gateway.partner).expect("connect");
    socket.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("a timeout");
    let mut tls = rustls::StreamOwned::new(connection, socket);
    write!(
        tls,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    match tls.read_to_end(&mut response) {
        Ok(_) => {}
        // The server may close without a TLS close_notify after its answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    let text = String::from_utf8_lossy(&response);
    let status =
        text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| format!("no answer: {text}"))?;
    Ok((status, serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap_or("")).unwrap_or(Value::Null)))
}

const VERIFY: &str = "/api/partner/v1/eligibility/verify";
const QUESTION: &str = r#"{"memberId":"M1","serviceDate":"2026-03-01","serviceType":"99213"}"#;

#[test]
fn partners_need_a_certificate_of_the_partners_ca_naming_them() {
    let partners = ca();
    let gateway = serve(&partners);
    let client = ExtendedKeyUsagePurpose::ClientAuth;
    let x1 = certificate(&partners, "X1.partners.arus.id", client.clone(), false);
    let partner_token = common::token("partner", "X1");

    // The partner, with its certificate and its token: the same answer as the public route's.
    let (status, body) = post_tls(&gateway, Some(&x1), VERIFY, QUESTION, &partner_token).expect("served");
    assert_eq!(status, 200, "{body}");
    let path = "/api/v1/eligibility?memberId=M1&serviceDate=2026-03-01&serviceType=99213";
    let (_, public) = common::request_json(gateway.plain, "GET", path, "", &common::internal());
    assert_eq!(body["data"], public["data"]);
    let (status, body) = post_tls(&gateway, Some(&x1), VERIFY, "not json", &partner_token).expect("served");
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("INVALID_PARAMETER")), "{body}");

    // A provider submits through the partner route, as itself, with its own certificate.
    let p1 = certificate(&partners, "P1.partners.arus.id", client.clone(), false);
    let claim = r#"{"memberId":"M1","providerId":"P1","claimType":"PROFESSIONAL","lines":[{"procedureCode":"80053","diagnosisCode":"J06.9","serviceDate":"2026-01-20","units":1,"chargeAmountIdr":1000000}]}"#;
    let provider_token = common::token("provider", "P1");
    let (status, body) =
        post_tls(&gateway, Some(&p1), "/api/partner/v1/claims/submit", claim, &provider_token).expect("served");
    assert_eq!(status, 202, "{body}");

    // The certificate must name the token's partner.
    let (status, body) = post_tls(&gateway, Some(&p1), VERIFY, QUESTION, &partner_token).expect("served");
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("CERTIFICATE_MISMATCH")), "{body}");

    // Refused in the handshake: no certificate, another CA's, an expired one, a server's.
    let stranger = certificate(&ca(), "X1.partners.arus.id", client.clone(), false);
    let expired = certificate(&partners, "X1.partners.arus.id", client, true);
    let server_only = certificate(&partners, "X1.partners.arus.id", ExtendedKeyUsagePurpose::ServerAuth, false);
    for (what, certificate) in [
        ("none", None),
        ("unknown CA", Some(&stranger)),
        ("expired", Some(&expired)),
        ("wrong usage", Some(&server_only)),
    ] {
        let outcome = post_tls(&gateway, certificate, VERIFY, QUESTION, &partner_token);
        assert!(outcome.is_err(), "{what}: served {outcome:?}");
    }

    // On the plain listener, partner routes are refused.
    let (status, body) = common::request_json(
        gateway.plain,
        "POST",
        VERIFY,
        QUESTION,
        &format!("Authorization: Bearer {partner_token}\r\n"),
    );
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("CLIENT_CERTIFICATE_REQUIRED")), "{body}");
}

#[tokio::test]
async fn grpc_over_mtls_wants_a_partners_certificate() {
    use arus_gateway::grpc::proto::CheckRequest;
    use arus_gateway::grpc::proto::eligibility_client::EligibilityClient;
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
    let (partners, server_ca) = (ca(), ca());
    let (chain, key) = certificate(&server_ca, "localhost", ExtendedKeyUsagePurpose::ServerAuth, false);
    let store = Arc::new(MemoryStore::new());
    let mut state = EligibilityState::new();
    for event in common::events() {
        state.apply_to(&event, &*store).expect("store");
    }
    let grpc = bind();
    let port = grpc.local_addr().expect("address").port();
    let options = arus_gateway::Options {
        grpc: Some(grpc),
        grpc_tls: Some(arus_gateway::GrpcTls { chain, key, client_ca: partners.pem() }),
        ..common::options()
    };
    std::thread::spawn(move || arus_gateway::serve(bind(), store, options));
    let question = || CheckRequest {
        member_id: "M1".to_owned(),
        service_date: "2026-03-01".to_owned(),
        service_type: "99213".to_owned(),
    };
    let channel = |identity: Option<(String, String)>| {
        let mut tls =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(server_ca.pem())).domain_name("localhost");
        if let Some((cert, key)) = identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        Channel::from_shared(format!("https://127.0.0.1:{port}")).expect("an endpoint").tls_config(tls).expect("TLS")
    };
    let x1 = certificate(&partners, "X1.partners.arus.id", ExtendedKeyUsagePurpose::ClientAuth, false);
    let connected = channel(Some(x1)).connect().await.expect("a partner connects");
    let answer = EligibilityClient::new(connected).check(question()).await.expect("an answer").into_inner();
    assert_eq!(answer.status, "ACTIVE");
    let stranger = certificate(&ca(), "X1.partners.arus.id", ExtendedKeyUsagePurpose::ClientAuth, false);
    for (what, identity) in [("no certificate", None), ("another CA's", Some(stranger))] {
        let refused = match channel(identity).connect().await {
            Err(_) => true,
            Ok(channel) => EligibilityClient::new(channel).check(question()).await.is_err(),
        };
        assert!(refused, "{what}: served");
    }
}
