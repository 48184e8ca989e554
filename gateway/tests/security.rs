//! Identity and access against a real OpenID provider (`oidc-provider` from npm, started by
//! `deploy/local/oidc.sh`): tokens by the client-credentials grant for one client per role,
//! crafted tokens signed with the provider's own keys (expired, another audience, another
//! issuer, HMAC with the public key), and a provider restarted with a new key. Every refusal
//! has the right status and says why without echoing the token.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use arus_connectors::embedded::EmbeddedLog;
use arus_connectors::store::MemoryStore;
use arus_gateway::auth::{Authenticator, DEFAULT_AUDIENCE};
use arus_schemas::Event;
use arus_schemas::events::{MemberCreated, Relationship};
use base64::Engine;
use serde_json::{Value, json};

/// Where the shared provider is: its issuer, clients (with secrets), script, keys.
struct Services {
    issuer: String,
    clients: PathBuf,
    script: PathBuf,
    keys: PathBuf,
}

fn services() -> Option<Services> {
    Some(Services {
        issuer: arus_connectors::service_address("OIDC_ISSUER")?,
        clients: arus_connectors::service_address("OIDC_CLIENTS")?.into(),
        script: arus_connectors::service_address("OIDC_PROVIDER")?.into(),
        keys: arus_connectors::service_address("OIDC_KEYS")?.into(),
    })
}

/// An access token for `client` by the client-credentials grant, with `scope` (all the
/// client's when `None`).
fn token(issuer: &str, clients: &Path, client: &str, scope: Option<&str>) -> String {
    let all: Vec<Value> = serde_json::from_slice(&std::fs::read(clients).expect("the clients file")).expect("JSON");
    let found = all.iter().find(|c| c["client_id"] == client).expect("a client of that id");
    let secret = found["client_secret"].as_str().expect("a secret");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{client}:{secret}"));
    let scope = scope.or(found["scope"].as_str()).expect("a scope");
    let form = [("grant_type", "client_credentials"), ("scope", scope)];
    let mut response = ureq::post(format!("{issuer}/token"))
        .header("Authorization", format!("Basic {basic}"))
        .send_form(form)
        .expect("a token");
    let body: Value = serde_json::from_str(&response.body_mut().read_to_string().expect("a body")).expect("JSON");
    body["access_token"].as_str().expect("an access token").to_owned()
}

/// A token signed with the provider's own key (`sign.mjs`): claims of the test's choosing.
fn crafted(services: &Services, args: &[&str], claims: &Value) -> String {
    let sign = services.script.with_file_name("sign.mjs");
    let output = Command::new("node")
        .current_dir(sign.parent().expect("a folder"))
        .arg(&sign)
        .arg("--keys")
        .arg(&services.keys)
        .args(args)
        .args(["--claims", &claims.to_string()])
        .output()
        .expect("node runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("text").trim().to_owned()
}

/// Member M1 (subscriber of F1) and M3 (its spouse), M2 (another family), provider P1 and
/// M1's claim C1 with it, decided.
fn store() -> Arc<MemoryStore> {
    let mut events = common::events();
    let Event::MemberCreated(m1) = events[1].clone() else { panic!("M1") };
    let member = |id: &str, family: &str, subscriber: &str, relationship| {
        Event::MemberCreated(MemberCreated {
            event_id: format!("created-{id}"),
            member_id: id.to_owned(),
            family_id: family.to_owned(),
            subscriber_id: subscriber.to_owned(),
            relationship,
            ..m1.clone()
        })
    };
    events.push(member("M2", "F2", "M2", Relationship::SUBSCRIBER));
    events.push(member("M3", "F1", "M1", Relationship::SPOUSE));
    events.extend(common::provider_and_claim());
    common::decided_store(events, 1).0
}

fn serve(authenticator: Authenticator) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = listener.local_addr().expect("address");
    let log = Arc::new(EmbeddedLog::new());
    log.create_all_topics().expect("topics");
    let options = arus_gateway::Options {
        authenticator: Some(Arc::new(authenticator)),
        publisher: Some(Arc::new(arus_gateway::commands::TopicPublisher::log(log))),
        ..arus_gateway::Options::default()
    };
    let store = store();
    std::thread::spawn(move || arus_gateway::serve(listener, store, options));
    address
}

/// Status, `WWW-Authenticate` and body of a request with `token` (none when empty).
fn call(address: std::net::SocketAddr, method: &str, path: &str, body: &str, token: &str) -> (u16, String, Value) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    let auth = if token.is_empty() { String::new() } else { format!("Authorization: Bearer {token}\r\n") };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: arus\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let challenge = head
        .lines()
        .find_map(|l| l.strip_prefix("www-authenticate: ").or_else(|| l.strip_prefix("WWW-Authenticate: ")))
        .unwrap_or("")
        .to_owned();
    (status, challenge, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[test]
fn tokens_are_verified_and_every_route_checks_scope_role_and_whose_data_it_is() {
    let Some(services) = services() else { return };
    let address = serve(Authenticator::discover(&services.issuer, DEFAULT_AUDIENCE).expect("the issuer answers"));
    let token = |client: &str| token(&services.issuer, &services.clients, client, None);
    let member = "/api/v1/members/M1";

    // Anonymous: public routes answer without personal data; the others want a token.
    let (status, _, body) =
        call(address, "GET", "/api/v1/eligibility?memberId=M1&serviceDate=2026-03-01&serviceType=99213", "", "");
    assert_eq!((status, &body["data"]["status"]), (200, &json!("ACTIVE")), "{body}");
    assert!(body["data"]["coverageStart"].is_null() && body["data"]["planId"] == "SILVER-2026", "{body}");
    let (status, challenge, body) = call(address, "GET", member, "", "");
    assert_eq!((status, challenge.as_str()), (401, "Bearer realm=\"arus\""), "{body}");
    assert_eq!(body["error"]["code"], "UNAUTHENTICATED");

    // Tokens that must not pass, each with invalid_token and without echoing the token.
    let good = token("internal-ops");
    let claims = |overrides: Value| {
        let mut claims = json!({
            "sub": "internal-ops", "client_id": "internal-ops", "iss": services.issuer, "aud": DEFAULT_AUDIENCE,
            "iat": now(), "exp": now() + 600, "scope": "member.read", "arus_role": "internal",
        });
        for (key, value) in overrides.as_object().expect("an object") {
            claims[key] = value.clone();
        }
        claims
    };
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims(json!({})).to_string());
    let mut tampered = good.clone();
    tampered.insert(good.rfind('.').expect("a signature") + 1, 'A');
    for (what, bad) in [
        ("garbage", "not-a-token".to_owned()),
        ("alg none", format!("{header}.{payload}.")),
        ("HS256 signed with the public key", crafted(&services, &["--hmac-with-public-key"], &claims(json!({})))),
        ("expired", crafted(&services, &[], &claims(json!({ "exp": now() - 3_600, "iat": now() - 7_200 })))),
        ("not valid yet", crafted(&services, &[], &claims(json!({ "nbf": now() + 3_600 })))),
        ("wrong audience", crafted(&services, &[], &claims(json!({ "aud": "api.elsewhere.example" })))),
        ("wrong issuer", crafted(&services, &["--alg", "ES256"], &claims(json!({ "iss": "https://evil.example" })))),
        ("no role", crafted(&services, &[], &claims(json!({ "arus_role": null })))),
        ("tampered signature", tampered),
    ] {
        let (status, challenge, body) = call(address, "GET", member, "", &bad);
        assert_eq!(status, 401, "{what}: {body}");
        assert!(challenge.starts_with("Bearer realm=\"arus\", error=\"invalid_token\""), "{what}: {challenge}");
        assert!(!body.to_string().contains(&bad) && !challenge.contains(&bad), "{what}: the token is echoed");
    }
    // The same claims, rightly signed (RS256 and ES256 both), pass.
    for alg in ["RS256", "ES256"] {
        let (status, _, body) =
            call(address, "GET", member, "", &crafted(&services, &["--alg", alg], &claims(json!({}))));
        assert_eq!(status, 200, "{alg}: {body}");
    }
    let (status, _, body) = call(address, "GET", member, "", &good);
    assert_eq!(status, 200, "{body}");

    // A scope missing: 403 naming it. A role the route is not for: 403.
    let narrow = token("internal-narrow");
    let (status, challenge, body) = call(address, "GET", member, "", &narrow);
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("INSUFFICIENT_SCOPE")), "{body}");
    assert_eq!(challenge, "Bearer error=\"insufficient_scope\", scope=\"member.read\"");
    let (status, _, body) = call(address, "GET", member, "", &token("provider-p1"));
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("ROLE_NOT_ALLOWED")), "{body}");
    let (status, _, _) = call(address, "GET", "/metrics", "", &token("provider-p1"));
    assert_eq!(status, 403, "/metrics is not for everyone");

    // A member: itself and, as the subscriber, its family; nobody else (as if not there).
    let m1 = token("member-m1");
    let m2 = token("member-m2");
    for (token, path, expected) in [
        (&m1, "/api/v1/members/M1", 200),
        (&m1, "/api/v1/members/M3", 200),
        (&m1, "/api/v1/members/M2", 404),
        (&m2, "/api/v1/members/M1", 404),
        (&m2, "/api/v1/members/M2", 200),
        (&m1, "/api/v1/members/M1/accumulators?year=2026", 200),
        (&m2, "/api/v1/members/M1/accumulators?year=2026", 404),
        (&m1, "/api/v1/claims/C1", 200),
        (&m2, "/api/v1/claims/C1", 404),
    ] {
        let (status, _, body) = call(address, "GET", path, "", token);
        assert_eq!(status, expected, "{path}: {body}");
    }
    let (status, _, body) = call(address, "POST", "/api/v1/members", "{}", &m1);
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("INSUFFICIENT_SCOPE")), "{body}");

    // A provider: its own claims; it submits only as itself.
    let p1 = token("provider-p1");
    let p2 = token("provider-p2");
    assert_eq!(call(address, "GET", "/api/v1/claims/C1", "", &p1).0, 200);
    assert_eq!(call(address, "GET", "/api/v1/claims/C1", "", &p2).0, 404);
    let claim = |provider: &str| {
        format!(
            r#"{{"memberId":"M1","providerId":"{provider}","claimType":"PROFESSIONAL","lines":[{{"procedureCode":"80053","diagnosisCode":"J06.9","serviceDate":"2026-01-20","units":1,"chargeAmountIdr":1000000}}]}}"#
        )
    };
    let (status, _, body) = call(address, "POST", "/api/v1/claims", &claim("P1"), &p1);
    assert_eq!(status, 202, "{body}");
    let (status, _, body) = call(address, "POST", "/api/v1/claims", &claim("P1"), &p2);
    assert_eq!((status, body["error"]["details"][0]["field"].as_str()), (403, Some("providerId")), "{body}");
    assert_eq!(call(address, "GET", "/api/v1/providers/P1/scorecard?from=2026-01-01&to=2026-01-31", "", &p2).0, 403);
    // A partner reads no member's record; its routes want its client certificate too
    // (tests/tls.rs), which a plain connection has not.
    let x1 = token("partner-x1");
    let verify = r#"{"memberId":"M1","serviceDate":"2026-03-01","serviceType":"99213"}"#;
    let (status, _, body) = call(address, "POST", "/api/partner/v1/eligibility/verify", verify, &x1);
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("CLIENT_CERTIFICATE_REQUIRED")), "{body}");
    assert_eq!(call(address, "GET", member, "", &x1).0, 403);
}

/// A provider of the test's own, on `port`, with the keys in `keys`.
struct Provider(Child, String);

impl Provider {
    fn start(services: &Services, port: u16, keys: &Path, clients: &Path) -> Provider {
        let mut child = Command::new("node")
            .current_dir(services.script.parent().expect("a folder"))
            .arg(&services.script)
            .args(["--port", &port.to_string()])
            .arg("--keys")
            .arg(keys)
            .arg("--clients")
            .arg(clients)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("a line");
        let issuer = line.trim().strip_prefix("listening ").expect("listening <issuer>").to_owned();
        Provider(child, issuer)
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_key_rotated_at_the_issuer_is_picked_up_without_a_restart() {
    let Some(services) = services() else { return };
    let dir = tempfile::tempdir().expect("a folder");
    let (keys, clients) = (dir.path().join("keys.json"), dir.path().join("clients.json"));
    // A free port, for the provider to come back on after its restart.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a port").port();
    let first = Provider::start(&services, port, &keys, &clients);
    let issuer = first.1.clone();
    let authenticator = Authenticator::discover(&issuer, DEFAULT_AUDIENCE)
        .expect("the issuer answers")
        .refresh_every(std::time::Duration::ZERO);
    let address = serve(authenticator);
    let before = token(&issuer, &clients, "internal-ops", None);
    assert_eq!(call(address, "GET", "/api/v1/members/M1", "", &before).0, 200);

    // The issuer rotates: a new signing key first, the old one still published.
    drop(first);
    let mut set: Value = serde_json::from_slice(&std::fs::read(&keys).expect("keys")).expect("JSON");
    let old = set["keys"].as_array().expect("keys").clone();
    std::fs::remove_file(&keys).expect("remove");
    let fresh = Provider::start(&services, port, &dir.path().join("fresh.json"), &clients);
    drop(fresh);
    let fresh: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("fresh.json")).expect("keys")).expect("JSON");
    set["keys"] = Value::Array(fresh["keys"].as_array().expect("keys").iter().chain(&old).cloned().collect());
    std::fs::write(&keys, set.to_string()).expect("write");
    let _rotated = Provider::start(&services, port, &keys, &clients);
    let after = token(&issuer, &clients, "internal-ops", None);
    let kid = |token: &str| jsonwebtoken::decode_header(token).expect("a header").kid;
    assert_ne!(kid(&after), kid(&before), "signed with the new key");
    let (status, _, body) = call(address, "GET", "/api/v1/members/M1", "", &after);
    assert_eq!(status, 200, "the new key is fetched on first sight: {body}");
    assert_eq!(call(address, "GET", "/api/v1/members/M1", "", &before).0, 200, "the old key still verifies");
}
