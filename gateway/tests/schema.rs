//! The OpenAPI document against the server, by a schema-driven fuzzer: `schemathesis` (from
//! PyPI, installed by `deploy/local/`) generates requests from `/openapi.json` — valid ones and
//! broken ones — and checks every answer: no server error, every status and body as the
//! document says, every valid request accepted, every invalid one refused. The gateway serves
//! a store with a member, a provider and a decided claim, commands go to an embedded log, and
//! analytics to a fresh ClickHouse database.

mod common;

use std::process::Command;
use std::sync::Arc;

use arus_connectors::clickhouse::{ClickHouse, Migration};
use arus_connectors::embedded::EmbeddedLog;

struct DropDatabase(ClickHouse, String);

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let _ = self.0.execute(&format!("DROP DATABASE IF EXISTS {}", self.1));
    }
}

#[test]
fn a_schema_driven_fuzzer_finds_every_answer_as_the_document_says() {
    let Some(schemathesis) = arus_connectors::service_address("SCHEMATHESIS") else { return };
    let Some(url) = arus_connectors::service_address("CLICKHOUSE_URL") else { return };

    // The store: member M1 covered, provider P1, claim C1 decided.
    let (store, report) =
        common::decided_store(common::events().into_iter().chain(common::provider_and_claim()).collect(), 1);
    assert_eq!(report.decided.get("APPROVED"), Some(&1), "{report:?}");
    // Commands go to a log of their own.
    let log = Arc::new(EmbeddedLog::new());
    log.create_all_topics().expect("topics");

    // ClickHouse: the analytics tables, empty, in a database of this test's own.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let database = format!("arus_schema_{}_{nanos}", std::process::id());
    let _drop = DropDatabase(ClickHouse::connect(&url, "default").expect("ClickHouse"), database.clone());
    let clickhouse = ClickHouse::connect(&url, &database).expect("ClickHouse");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/clickhouse");
    clickhouse.migrate(&Migration::from_dir(&dir).expect("migrations")).expect("migrate");

    // Served over the partner listener (TLS, a client certificate of the partners' CA), so
    // that the partner routes answer too.
    let reports = tempfile::tempdir().expect("a folder");
    let partners = common::ca();
    let tls = common::partner_tls(reports.path(), &partners);
    let (cert, key) =
        common::certificate(&partners, "X1.partners.arus.id", rcgen::ExtendedKeyUsagePurpose::ClientAuth, false);
    std::fs::write(reports.path().join("client.pem"), cert).expect("write");
    std::fs::write(reports.path().join("client.key"), key).expect("write");
    let port = tls.listener.local_addr().expect("address").port();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let options = arus_gateway::Options {
        partner: Some(tls),
        publisher: Some(Arc::new(arus_gateway::commands::TopicPublisher::log(log.clone()))),
        clickhouse: Some(clickhouse.client()),
        // Connections idle longer than the head deadline are closed (10 s by default), and the
        // fuzzer, working out its next cases on a busy machine, sometimes leaves one idle that
        // long and then sends a POST on it, which its client does not retry ("EOF occurred in
        // violation of protocol"): a deadline longer than the whole run.
        limits: arus_gateway::Limits { header_read_timeout: std::time::Duration::from_secs(600), ..Default::default() },
        ..common::options()
    };
    std::thread::spawn(move || arus_gateway::serve(listener, store, options));

    // Every operation of the document but the document itself (schemathesis leaves the URL it
    // loaded alone), as the JUnit report names them.
    let document = arus_gateway::openapi_document();
    let mut operations: Vec<String> = document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object().into_iter().flat_map(|m| m.keys()).map(move |m| format!("{} {path}", m.to_uppercase()))
        })
        .filter(|operation| operation != "GET /openapi.json")
        .collect();
    operations.sort();
    let junit = reports.path().join("junit.xml");
    let output = Command::new(&schemathesis)
        // Its cache (.schemathesis/) goes with the reports, not into the clone.
        .current_dir(reports.path())
        .arg("--config-file")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis.toml"))
        .args(["--no-color", "run", &format!("https://localhost:{port}/openapi.json")])
        .arg("--tls-verify")
        .arg(reports.path().join("server-ca.pem"))
        .arg("--request-cert")
        .arg(reports.path().join("client.pem"))
        .arg("--request-cert-key")
        .arg(reports.path().join("client.key"))
        .args(["--checks", "all", "--phases", "examples,coverage,fuzzing"])
        // An internal caller's token (every scope): the fuzzer reaches every route's logic,
        // and its `ignored_auth` check sends requests without it too.
        .args(["--header", &format!("Authorization: Bearer {}", common::token("internal", "ops"))])
        .args(["--max-examples", "40", "--seed", "20261203"])
        // One worker: with two, this machine's CPython 3.11 failed now and then inside
        // Hypothesis ("SystemError: AST constructor recursion depth mismatch", ast.parse in
        // two threads at once), a fault of the tool, not of the API.
        .args(["--workers", "1"])
        .arg("--report-junit-path")
        .arg(&junit)
        .args(["--report", "junit"])
        .output()
        .expect("schemathesis runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "schemathesis found problems:\n{text}");
    // Every operation was exercised (a run that tested nothing proves nothing), none failed.
    let report = std::fs::read_to_string(&junit).expect("the JUnit report");
    let mut tested: Vec<String> = report
        .split("<testcase name=\"")
        .skip(1)
        .filter_map(|case| case.split('"').next())
        .map(|name| name.replace("&amp;", "&"))
        .collect();
    tested.sort();
    assert_eq!(tested, operations, "{text}");
    assert!(!report.contains("<failure") && !report.contains("<error"), "{report}");
}
