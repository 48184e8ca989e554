//! `arus controller` and `arus job …` end to end: jobs in PostgreSQL, the adjudication job on
//! the real broker and Redis — submitted, listed, savepointed, stopped, resumed from a
//! savepoint, cancelled; killed with SIGKILL and restarted by the controller; the controller
//! itself killed and started again, finding its job running. Every claim decided exactly once
//! throughout. The jobs page is loaded in headless Chromium.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arus_connectors::kafka::{KafkaConfig, KafkaSink};
use arus_generator::GeneratorConfig;
use arus_schemas::{Event, wire};
use serde_json::Value;

fn claim_ids(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ClaimSubmitted(c) => Some(c.claim_id.clone()),
            _ => None,
        })
        .collect()
}

/// A database of the local PostgreSQL of the test's own, dropped with it.
struct Database {
    url: String,
    name: String,
    server: String,
}

impl Database {
    fn create(server: &str, label: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let name = format!("arus_test_{label}_{}_{nanos}", std::process::id());
        psql(server, &format!("create database {name}"));
        let url = format!("{}/{name}", server.rsplit_once('/').map_or(server, |(base, _)| base));
        Database { url, name, server: server.to_owned() }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(&self.server)
            .args(["-q", "-c", &format!("drop database if exists {} with (force)", self.name)])
            .status();
    }
}

fn psql(server: &str, sql: &str) {
    let status =
        Command::new("psql").arg(server).args(["-q", "-v", "ON_ERROR_STOP=1", "-c", sql]).status().expect("psql runs");
    assert!(status.success(), "psql {sql}");
}

/// Every job process launched from `data` (its spec is there), killed when the test ends
/// however it ends: jobs outlive a controller by design.
struct KillJobs(PathBuf);

impl Drop for KillJobs {
    fn drop(&mut self) {
        let marker = self.0.to_string_lossy().into_owned();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
            if String::from_utf8_lossy(&cmdline).contains(&marker)
                && cmdline.starts_with(env!("CARGO_BIN_EXE_arus").as_bytes())
            {
                let pid = entry.file_name().to_string_lossy().into_owned();
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
        }
    }
}

/// `arus controller` on a free port, with a development issuer whose admin token it printed.
struct Controller {
    _process: common::KillOnDrop,
    url: String,
    token: String,
}

impl Controller {
    fn start(database: &str, data: &Path) -> Self {
        Controller::start_with(database, data, &[])
    }

    fn start_with(database: &str, data: &Path, extra: &[&str]) -> Self {
        let port = common::free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_arus"))
            .args(["controller", "--addr", &format!("127.0.0.1:{port}"), "--database", database])
            .arg("--data-dir")
            .arg(data)
            .args(["--insecure-dev-issuer", "--backoff", "200ms"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the controller starts");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
        let mut token = None;
        for line in lines.by_ref() {
            let line = line.expect("read");
            if let Some(t) = line.trim().strip_prefix("export ARUS_TOKEN=") {
                token = Some(t.to_owned());
            }
            if line.starts_with("controller on ") {
                break;
            }
            assert!(!line.starts_with("error"), "the controller did not start: {line}");
        }
        // The rest of what it says is drained (a full pipe would block it).
        std::thread::spawn(move || lines.for_each(drop));
        Controller {
            _process: common::KillOnDrop(Some(child)),
            // (Over TLS by the name the server's certificate is for.)
            url: if extra.is_empty() {
                format!("http://127.0.0.1:{port}")
            } else {
                format!("https://localhost:{port}")
            },
            token: token.expect("it printed a token"),
        }
    }

    /// `arus job <args>`: success, stdout, stderr.
    fn job(&self, args: &[&str]) -> (bool, String, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_arus"))
            .arg("job")
            .args(args)
            .args(["--controller", &self.url])
            .env("ARUS_TOKEN", &self.token)
            .output()
            .expect("arus runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn status(&self, id: &str) -> Value {
        let (ok, stdout, stderr) = self.job(&["status", id, "--output", "json"]);
        assert!(ok, "{stderr}");
        serde_json::from_str(&stdout).expect("JSON")
    }

    /// Polls job `id`'s status until `ready` says so (bounded: a failure, not a hang).
    fn wait(&self, id: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let status = self.status(id);
            if ready(&status) {
                return status;
            }
            assert!(Instant::now() < deadline, "job {id} never {what}: {status:#}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Waits until claim `id` is decided in Redis.
fn decided_in_redis(store: &arus_connectors::store::RedisStore, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while arus_connectors::store::read::claim(store, id).expect("read").is_none() {
        assert!(Instant::now() < deadline, "claim {id} was not decided");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Setup {
    brokers: String,
    redis: String,
    postgres: String,
}

fn services() -> Option<Setup> {
    Some(Setup {
        brokers: arus_connectors::service_address("KAFKA_BROKERS")?,
        redis: arus_connectors::service_address("REDIS_URL")?,
        postgres: arus_connectors::service_address("POSTGRES_URL")?,
    })
}

/// The adjudication spec's overrides for the test's topics and store, following the broker.
fn overrides(setup: &Setup, prefix: &str) -> Vec<String> {
    [
        format!("source.brokers={}", setup.brokers),
        format!("source.topic_prefix={prefix}"),
        "source.follow=true".to_owned(),
        "source.idle_timeout=\"1s\"".to_owned(),
        format!("store.url={}", setup.redis),
        format!("store.prefix={prefix}store:"),
        // Snapshots when asked (savepoints, stops) only.
        "checkpoint.interval=\"1h\"".to_owned(),
    ]
    .into_iter()
    .flat_map(|o| ["--set".to_owned(), o])
    .collect()
}

fn spec() -> String {
    format!("{}/pipelines/adjudication.toml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn a_job_is_submitted_savepointed_stopped_resumed_and_cancelled() {
    let Some(setup) = services() else { return };
    let config = KafkaConfig::new(setup.brokers.clone());
    let (prefix, topics) = common::broker_topics(&config, "arus-test-ctl", &common::ADJUDICATION_TOPICS, 2);
    let database = Database::create(&setup.postgres, "controller");
    let data = tempfile::tempdir().expect("a folder");
    let _jobs = KillJobs(data.path().to_owned());
    let controller = Controller::start(&database.url, data.path());

    // Refused before anything runs: no token, a spec that does not validate, an unknown job.
    let no_token = Command::new(env!("CARGO_BIN_EXE_arus"))
        .args(["job", "list", "--controller", &controller.url])
        .env_remove("ARUS_TOKEN")
        .output()
        .expect("arus runs");
    let said = String::from_utf8_lossy(&no_token.stderr);
    assert!(!no_token.status.success() && said.contains("401") && said.contains("ARUS_TOKEN"), "{said}");
    let bad = data.path().join("bad.toml");
    std::fs::write(&bad, "job = \"nothing\"\n").expect("write");
    let (ok, _, stderr) = controller.job(&["submit", bad.to_str().expect("a path")]);
    assert!(!ok && stderr.contains("INVALID_SPEC"), "{stderr}");
    let (ok, _, stderr) = controller.job(&["status", "nobody-1"]);
    assert!(!ok && stderr.contains("no job nobody-1"), "{stderr}");

    let events = common::generated_events(300);
    let (first, second) = events.split_at(events.len() / 2);
    let producer = KafkaSink::new(&config, "lz4").expect("producer");
    common::produce_to(&producer, &prefix, &topics.1, first);
    // A broken producer's record among the claims: a dead letter, on the page.
    let dead = common::DropTopics(&config, vec![format!("{prefix}claims.events.dlq")]);
    producer.send(&format!("{prefix}claims.events"), b"M-x", b"\x00\x00\x00\x00\x07broken", 0).expect("send");
    producer.flush(Duration::from_secs(30)).expect("flush");
    let mut submit = vec!["submit".to_owned(), spec(), "--workers".to_owned(), "2".to_owned()];
    submit.extend(overrides(&setup, &prefix));
    let submit: Vec<&str> = submit.iter().map(String::as_str).collect();
    let (ok, stdout, stderr) = controller.job(&submit);
    assert!(ok, "{stderr}");
    let id = stdout.trim().to_owned();
    assert_eq!(id, "adjudication-1", "the id, at once: {stdout}");

    let store = arus_connectors::store::RedisStore::connect(&setup.redis, &format!("{prefix}store:")).expect("redis");
    let first_claims = claim_ids(first);
    decided_in_redis(&store, first_claims.last().expect("claims"));
    let (ok, stdout, stderr) = controller.job(&["list"]);
    assert!(ok, "{stderr}");
    let row = stdout.lines().find(|l| l.starts_with(&id)).unwrap_or_else(|| panic!("{id} not listed: {stdout}"));
    assert!(row.contains("running") && row.contains("2×1"), "{stdout}");

    // The jobs page, as a person would see it.
    if let Some(chromium) = arus_connectors::service_address("CHROMIUM") {
        page_shows(&chromium, &controller, &id, &format!("{prefix}claims.events partition"));
    }

    // A savepoint: a snapshot file, the job going on.
    let (ok, stdout, stderr) = controller.job(&["savepoint", &id]);
    assert!(ok, "{stderr}");
    let savepoint = PathBuf::from(stdout.trim().split_once(": ").expect("savepoint N: PATH").1);
    assert!(savepoint.is_file(), "{stdout}");
    // What the run had read by then, in figures read after it (nothing new came since).
    let taken = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("a clock").as_millis() as i64;
    let at_savepoint = controller.wait(&id, "shown its figures after the savepoint", |s| {
        s["figures_at_ms"].as_i64().is_some_and(|at| at > taken)
    });
    assert_eq!(at_savepoint["state"], "running");
    let read_at_savepoint = at_savepoint["records"].as_u64().expect("records read");

    common::produce_to(&producer, &prefix, &topics.1, second);
    let all_claims = claim_ids(&events);
    decided_in_redis(&store, all_claims.last().expect("claims"));

    // (The controller's figures, scraped every second, have seen the second half read.)
    controller
        .wait(&id, "shown reading the second half", |s| s["records"].as_u64().is_some_and(|r| r > read_at_savepoint));
    // Stopped: with a savepoint of its own, no process left.
    let (ok, stdout, stderr) = controller.job(&["stop", &id]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("stopped; savepoint "), "{stdout}");
    let stopped = controller.status(&id);
    // Read after the savepoint: what a run resumed from it reads again.
    let after_savepoint = stopped["records"].as_u64().expect("records read") - read_at_savepoint;
    assert!(after_savepoint > 0, "{stopped:#}");
    assert_eq!((stopped["state"].as_str(), stopped["pids"].as_array().map(Vec::len)), (Some("stopped"), Some(0)));
    let decisions = || common::decisions_per_claim(&config, &format!("{prefix}claims.events"));
    let decided = decisions();
    // (Following, the newest claims — within the allowed out-of-orderness of the newest
    // event — are held until later events pass them: decided by the run that gets those.)
    let known: std::collections::BTreeSet<&String> = all_claims.iter().collect();
    assert!(decided.keys().all(|c| known.contains(c)) && decided.contains_key(all_claims.last().expect("claims")));
    assert!(decided.values().all(|n| *n == 1), "a claim decided twice");

    // Resumed from the first savepoint: the second half read again, nothing decided twice.
    let (ok, _, stderr) = controller.job(&["resume", &id, "--from-savepoint", savepoint.to_str().expect("a path")]);
    assert!(ok, "{stderr}");
    controller.wait(&id, &format!("read again the {after_savepoint} records after the savepoint"), |s| {
        s["state"] == "running" && s["records"].as_u64().is_some_and(|r| r >= after_savepoint)
    });
    let (ok, stdout, stderr) = controller.job(&["cancel", &id]);
    assert!(ok && stdout.contains("cancelled"), "{stdout}{stderr}");
    // (It may decide more than the stopped run had: claims that run still held.)
    let again = decisions();
    let twice = again.values().filter(|n| **n != 1).count();
    assert_eq!(twice, 0, "a run resumed from a savepoint decides nothing twice");
    assert!(decided.keys().all(|c| again.contains_key(c)), "nothing decided is lost");

    // The history, each transition with its reason.
    let status = controller.status(&id);
    let steps: Vec<&str> =
        status["transitions"].as_array().expect("transitions").iter().filter_map(|t| t["to"].as_str()).collect();
    assert_eq!(
        steps,
        ["created", "starting", "running", "stopping", "stopped", "created", "starting", "running", "cancelled"],
        "{status:#}"
    );
    assert_eq!(status["launches"], 2);
    let (ok, stdout, _) = controller.job(&["logs", &id]);
    assert!(ok && stdout.contains("snapshots: "), "the job's own output: {stdout}");
    drop(controller);
    drop((topics, dead));
}

/// Loads the page in headless Chromium with the admin token and checks the job's row; keeps
/// a screenshot (`ARUS_SCREENSHOTS`, when set).
fn page_shows(chromium: &str, controller: &Controller, id: &str, dead_letter: &str) {
    let address = format!("{}/#token={}", controller.url, controller.token);
    let profile = tempfile::tempdir().expect("a folder");
    let browse = |extra: &[String]| {
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--virtual-time-budget=5000",
                "--window-size=1500,420",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&address)
            .output()
            .expect("chromium runs")
    };
    // (The controller reads the job's dead letters every 2 s: a few looks at most.)
    let mut dom = String::new();
    for _ in 0..10 {
        dom = String::from_utf8_lossy(&browse(&["--dump-dom".to_owned()]).stdout).into_owned();
        if dom.contains(dead_letter) {
            break;
        }
    }
    let letters = dom.split("id=\"dead-letters\"").nth(1).unwrap_or_default();
    assert!(letters.contains(dead_letter), "the dead letter is not on the page: {dom}");
    let row = dom
        .split("<tr")
        .find(|r| r.contains(&format!("data-job=\"{id}\"")))
        .unwrap_or_else(|| panic!("no row for {id} on the page: {dom}"));
    assert!(row.contains(">running<") && row.contains(">adjudication<"), "{row}");
    assert!(dom.contains("1 job, updated"), "{dom}");
    if let Ok(dir) = std::env::var("ARUS_SCREENSHOTS") {
        std::fs::create_dir_all(&dir).expect("the screenshots folder");
        let shot = Path::new(&dir).join("jobs-page.png");
        let taken = browse(&[format!("--screenshot={}", shot.display())]);
        assert!(taken.status.success() && shot.is_file(), "{}", String::from_utf8_lossy(&taken.stderr));
    }
}

#[test]
fn a_killed_job_is_restarted_and_a_restarted_controller_finds_it_running() {
    let Some(setup) = services() else { return };
    let config = KafkaConfig::new(setup.brokers.clone());
    let (prefix, topics) = common::broker_topics(&config, "arus-test-ctl-kill", &common::ADJUDICATION_TOPICS, 2);
    let database = Database::create(&setup.postgres, "controller_kill");
    let data = tempfile::tempdir().expect("a folder");
    let _jobs = KillJobs(data.path().to_owned());
    let controller = Controller::start(&database.url, data.path());

    let events = common::generated_events(300);
    let (first, second) = events.split_at(events.len() / 2);
    let producer = KafkaSink::new(&config, "lz4").expect("producer");
    common::produce_to(&producer, &prefix, &topics.1, first);
    let mut submit = vec!["submit".to_owned(), spec(), "--name".to_owned(), "claims".to_owned()];
    submit.extend(overrides(&setup, &prefix));
    let submit: Vec<&str> = submit.iter().map(String::as_str).collect();
    let (ok, stdout, stderr) = controller.job(&submit);
    assert!(ok, "{stderr}");
    let id = stdout.trim().to_owned();
    let store = arus_connectors::store::RedisStore::connect(&setup.redis, &format!("{prefix}store:")).expect("redis");
    decided_in_redis(&store, claim_ids(first).last().expect("claims"));

    // Killed: restarted by the controller, from its snapshots.
    let running = controller.status(&id);
    let pid = running["pids"][0].as_u64().expect("a pid").to_string();
    assert!(Command::new("kill").args(["-KILL", &pid]).status().expect("kill runs").success());
    let restarted = controller.wait(&id, "restarted", |s| s["state"] == "running" && s["launches"] == 2);
    assert!(restarted["last_error"].as_str().is_some_and(|e| e.contains("without an exit status")), "{restarted:#}");
    let steps: Vec<&str> =
        restarted["transitions"].as_array().expect("transitions").iter().filter_map(|t| t["to"].as_str()).collect();
    assert!(steps.ends_with(&["running", "failing", "restarting", "starting", "running"]), "{steps:?}");

    // The controller killed and started again: the job is found running, not started twice.
    let pid = restarted["pids"][0].clone();
    drop(controller);
    let controller = Controller::start(&database.url, data.path());
    let found = controller.status(&id);
    assert_eq!(
        (found["state"].as_str(), &found["pids"][0], &found["launches"]),
        (Some("running"), &pid, &Value::from(2))
    );
    let reason = found["transitions"].as_array().and_then(|t| t.last()).map(|t| t["reason"].clone());
    assert!(reason.is_some_and(|r| r.as_str().is_some_and(|r| r.contains("found running"))), "{found:#}");

    // It goes on: the second half decided, every claim once.
    common::produce_to(&producer, &prefix, &topics.1, second);
    let all = claim_ids(&events);
    decided_in_redis(&store, all.last().expect("claims"));
    let (ok, stdout, stderr) = controller.job(&["stop", &id]);
    assert!(ok && stdout.contains("stopped"), "{stdout}{stderr}");
    let decided = common::decisions_per_claim(&config, &format!("{prefix}claims.events"));
    let known: std::collections::BTreeSet<&String> = all.iter().collect();
    assert!(decided.keys().all(|c| known.contains(c)) && decided.contains_key(all.last().expect("claims")));
    assert!(decided.values().all(|n| *n == 1), "a claim decided twice");
    drop(controller);
    drop(topics);
}

/// A CA of the test's own (rcgen).
fn ca(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().expect("a key")).expect("a CA")
}

/// A certificate for `name` from `ca`, for `usage`, expired or not, written to `dir` as
/// `<file>.pem` and `<file>.key`.
fn certificate(
    dir: &Path,
    file: &str,
    ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    name: &str,
    usage: rcgen::ExtendedKeyUsagePurpose,
    expired: bool,
) -> (PathBuf, PathBuf) {
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
    let (pem, private) = (dir.join(format!("{file}.pem")), dir.join(format!("{file}.key")));
    std::fs::write(&pem, cert.pem()).expect("write");
    std::fs::write(&private, key.serialize_pem()).expect("write");
    (pem, private)
}

/// Over TLS, the API answers only clients with a certificate of the configured CA, valid now
/// and for client authentication (the internal routes' mTLS); the token is still needed.
#[test]
fn over_mtls_the_api_needs_a_client_certificate_of_its_ca() {
    let Some(postgres) = arus_connectors::service_address("POSTGRES_URL") else { return };
    let database = Database::create(&postgres, "controller_tls");
    let data = tempfile::tempdir().expect("a folder");
    let certs = tempfile::tempdir().expect("a folder");
    let dir = certs.path();
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let (server_ca, clients, strangers) = (ca("servers"), ca("internal clients"), ca("someone else"));
    std::fs::write(dir.join("server-ca.pem"), server_ca.pem()).expect("write");
    std::fs::write(dir.join("clients.pem"), clients.pem()).expect("write");
    let (server, server_key) = certificate(dir, "server", &server_ca, "localhost", ServerAuth, false);
    let good = certificate(dir, "ops", &clients, "ops.internal.arus.id", ClientAuth, false);
    let expired = certificate(dir, "old", &clients, "old.internal.arus.id", ClientAuth, true);
    let server_only = certificate(dir, "server-only", &clients, "svc.internal.arus.id", ServerAuth, false);
    let stranger = certificate(dir, "stranger", &strangers, "ops.internal.arus.id", ClientAuth, false);
    let path = |p: &Path| p.to_str().expect("a path").to_owned();
    let (server, server_key, client_ca) = (path(&server), path(&server_key), path(&dir.join("clients.pem")));
    let extra = ["--tls-cert", &server, "--tls-key", &server_key, "--client-ca", &client_ca];
    let controller = Controller::start_with(&database.url, data.path(), &extra);
    let server_ca = path(&dir.join("server-ca.pem"));
    let list = |client: Option<&(PathBuf, PathBuf)>, token: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_arus"));
        command.args(["job", "list", "--controller", &controller.url, "--ca", &server_ca]);
        if let Some((cert, key)) = client {
            command.arg("--client-cert").arg(cert).arg("--client-key").arg(key);
        }
        if token {
            command.env("ARUS_TOKEN", &controller.token);
        } else {
            command.env_remove("ARUS_TOKEN");
        }
        let output = command.output().expect("arus runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr),
        )
    };
    let (ok, said) = list(Some(&good), true);
    assert!(ok && said.contains("no jobs"), "{said}");
    for (what, client) in [
        ("no certificate", None),
        ("an expired one", Some(&expired)),
        ("one for servers", Some(&server_only)),
        ("another CA's", Some(&stranger)),
    ] {
        let (ok, said) = list(client, true);
        assert!(!ok && said.contains("out of reach"), "{what}: {said}");
    }
    let (ok, said) = list(Some(&good), false);
    assert!(!ok && said.contains("401"), "a certificate is not a token: {said}");

    // Without TLS, it listens on this machine only.
    let open = Command::new(env!("CARGO_BIN_EXE_arus"))
        .args(["controller", "--insecure-dev-issuer", "--addr", "0.0.0.0:0", "--database", &database.url])
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .expect("arus runs");
    let said = String::from_utf8_lossy(&open.stderr);
    assert!(open.status.code() == Some(2) && said.contains("over mTLS only"), "{said}");
}

/// Events to an embedded log persisted in `dir` (every topic created).
fn to_log(dir: &Path, events: &[Event]) {
    let log = arus_connectors::embedded::EmbeddedLog::open(dir).expect("a log");
    log.create_all_topics().expect("topics");
    for event in events {
        let bytes = wire::encode(event).expect("encode");
        log.produce(&event.topic(), Some(event.key().as_bytes()), bytes, event.event_time()).expect("produce");
    }
    log.flush().expect("flush");
}

/// The alerts on the embedded log in `dir`, sorted (the partitions' order aside).
fn alerts_on(dir: &Path) -> Vec<Vec<u8>> {
    let log = arus_connectors::embedded::EmbeddedLog::open(dir).expect("the log");
    let mut alerts = Vec::new();
    for (partition, end) in log.end_offsets("fraud.alerts").expect("offsets").into_iter().enumerate() {
        alerts.extend(
            log.fetch("fraud.alerts", partition as u32, 0, end as usize).expect("fetch").into_iter().map(|r| r.value),
        );
    }
    alerts.sort();
    alerts
}

/// The fraud rules through the controller on an embedded log that grows between runs (the
/// embedded default, SQLite): the first half, then — resumed from its snapshot — the second,
/// then resumed again from the savepoint the first run left: `fraud.alerts` holds exactly what
/// one uninterrupted run over the whole log raises, nothing twice.
#[test]
fn resumed_from_its_snapshots_the_fraud_job_raises_what_an_uninterrupted_run_raises() {
    let root = tempfile::tempdir().expect("a folder");
    let events =
        common::generated_events_with(&GeneratorConfig { claims: 3_000, days: 40, ..GeneratorConfig::default() });
    let (first, second) = events.split_at(events.len() / 2);
    let spec = root.path().join("fraud-rules.toml");
    std::fs::write(&spec, "job = \"fraud\"\nout_of_orderness = \"1d\"\n[source]\nkind = \"embedded\"\ndir = \".\"\n")
        .expect("a spec");
    let on = |log: &Path| format!("source={{kind=\"embedded\", dir=\"{}\"}}", log.display());
    // The reference: every event at once, no controller (with snapshots, as the controller's
    // runs: the end of the input a pause, the windows still open then left open).
    let whole = root.path().join("whole");
    to_log(&whole, &events);
    let snapshots = format!("checkpoint={{dir=\"{}\"}}", root.path().join("whole-snapshots").display());
    let reference = Command::new(env!("CARGO_BIN_EXE_arus"))
        .args(["run", spec.to_str().expect("a path"), "--workers", "2", "--set", &on(&whole), "--set", &snapshots])
        .output()
        .expect("arus runs");
    assert!(reference.status.success(), "{}", String::from_utf8_lossy(&reference.stderr));
    let expected = alerts_on(&whole);
    assert!(expected.len() > 10, "{} alerts", expected.len());

    let data = root.path().join("controller");
    let _jobs = KillJobs(data.clone());
    let database = format!("sqlite://{}?mode=rwc", root.path().join("jobs.db").display());
    let controller = Controller::start(&database, &data);
    let grown = root.path().join("grown");
    to_log(&grown, first);
    let (ok, stdout, stderr) =
        controller.job(&["submit", spec.to_str().expect("a path"), "-w", "2", "--set", &on(&grown)]);
    assert!(ok, "{stderr}");
    let id = stdout.trim().to_owned();
    let done = controller.wait(&id, "finished the first half", |s| s["state"] == "finished");
    let savepoint = PathBuf::from(done["checkpoint"]["path"].as_str().expect("a snapshot at the pause"));
    let kept = root.path().join(savepoint.file_name().expect("a name"));
    std::fs::copy(&savepoint, &kept).expect("kept");

    to_log(&grown, second);
    let (ok, _, stderr) = controller.job(&["resume", &id]);
    assert!(ok, "{stderr}");
    controller.wait(&id, "finished the second half", |s| s["state"] == "finished" && s["launches"] == 2);
    assert_eq!(alerts_on(&grown), expected, "read in two pieces, the alerts of one run");

    // From the first run's savepoint again: the second half read again, nothing raised twice.
    let (ok, _, stderr) = controller.job(&["resume", &id, "--from-savepoint", kept.to_str().expect("a path")]);
    assert!(ok, "{stderr}");
    controller.wait(&id, "finished again", |s| s["state"] == "finished" && s["launches"] == 3);
    assert_eq!(alerts_on(&grown), expected, "resumed from the savepoint, nothing twice");
}
