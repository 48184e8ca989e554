//! Every job serves its Prometheus metrics at `--metrics-addr` while it runs: each job is run
//! following generated traffic on the real broker, its `/metrics` scraped until it shows the
//! events it folded, and the scrape checked by `promtool check metrics` (Debian's `prometheus`
//! package, installed by `deploy/local/`; required where `ARUS_REQUIRE_SERVICES` is set).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arus_connectors::kafka::{KafkaConfig, KafkaSink};
use arus_schemas::{Event, wire};

fn pipeline(name: &str) -> String {
    format!("{}/pipelines/{name}.toml", env!("CARGO_MANIFEST_DIR"))
}

/// `GET /metrics` of `address`: the body.
fn scrape(address: &str) -> String {
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the metrics");
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// The sum of the samples of `name` (its value, for a series without labels); `None` when it
/// has none.
fn value(text: &str, name: &str) -> Option<f64> {
    let samples: Vec<f64> = text
        .lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()))
        .collect();
    (!samples.is_empty()).then(|| samples.iter().sum())
}

/// `promtool check metrics` of a scrape, where promtool is installed (required with
/// `ARUS_REQUIRE_SERVICES`).
fn promtool_check(text: &str) {
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_owned());
    let child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if std::env::var_os("ARUS_REQUIRE_SERVICES").is_none() => {
            eprintln!("skipping promtool check metrics: {promtool}: {e}");
            return;
        }
        Err(e) => panic!("{promtool}: {e} (ARUS_REQUIRE_SERVICES is set)"),
    };
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("to promtool");
    let out = child.wait_with_output().expect("promtool ran");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `arus run <pipeline> <args>` with its metrics on a free port, scrapes them until
/// `metric` is at least `at_least` (two minutes at most), checks the scrape with promtool, and
/// stops the job, which is still running then: what it returns is the scrape.
fn scrape_while_it_runs(pipeline: &str, args: &[String], metric: &str, at_least: f64) -> String {
    let mut job = common::KillOnDrop(Some(
        Command::new(env!("CARGO_BIN_EXE_arus"))
            .args(["run", pipeline, "--metrics-addr", "127.0.0.1:0"])
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .expect("arus runs"),
    ));
    let stderr = job.0.as_mut().and_then(|c| c.stderr.take()).expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let address = loop {
        let line = lines.next().expect("a line before the job ends").expect("stderr is text");
        if let Some(url) = line.strip_prefix("metrics: http://") {
            break url.trim_end_matches("/metrics").to_owned();
        }
    };
    // The rest of stderr drained, so the job never blocks on it.
    std::thread::spawn(move || lines.for_each(drop));
    let deadline = Instant::now() + Duration::from_secs(120);
    let text = loop {
        let text = scrape(&address);
        if value(&text, metric).is_some_and(|v| v >= at_least) {
            break text;
        }
        assert!(Instant::now() < deadline, "{metric} below {at_least} after two minutes:\n{text}");
        assert!(job.0.as_mut().expect("running").try_wait().expect("status").is_none(), "the job stopped");
        std::thread::sleep(Duration::from_millis(100)); // between scrapes of a running job
    };
    assert!(job.0.as_mut().expect("running").try_wait().expect("status").is_none(), "the job still follows");
    job.kill();
    promtool_check(&text);
    text
}

/// A ClickHouse database dropped when the test ends.
struct DropDatabase<'a>(&'a arus_connectors::clickhouse::ClickHouse, String);

impl Drop for DropDatabase<'_> {
    fn drop(&mut self) {
        let _ = self.0.execute(&format!("DROP DATABASE IF EXISTS {}", self.1));
    }
}

#[test]
fn every_job_serves_its_metrics_while_it_runs() {
    let (Some(brokers), Some(redis)) =
        (arus_connectors::service_address("KAFKA_BROKERS"), arus_connectors::service_address("REDIS_URL"))
    else {
        return;
    };
    let config = KafkaConfig::new(brokers.clone());
    // Every topic of the contract: the generator writes to most of them.
    let names: Vec<&str> = arus_schemas::topics::TOPICS.iter().map(|t| t.name).collect();
    let (prefix, _topics) = common::broker_topics(&config, "arus-test-metrics", &names, 2);
    let settings = arus_generator::GeneratorConfig { claims: 300, days: 20, ..Default::default() };
    let producer = KafkaSink::new(&config, "lz4").expect("producer");
    let mut events = 0u64;
    arus_generator::generate(&settings, |output| -> Result<(), String> {
        if let arus_generator::Output::Event(event) = output {
            let bytes = wire::encode(&event).map_err(|e| e.to_string())?;
            let topic = format!("{prefix}{}", event.topic());
            producer.send(&topic, event.key().as_bytes(), &bytes, event.event_time().0).map_err(|e| e.to_string())?;
            events += u64::from(matches!(event, Event::MemberCreated(_) | Event::CoverageChanged(_)));
        }
        Ok(())
    })
    .expect("generate");
    producer.flush(Duration::from_secs(60)).expect("delivered");
    let topics = |group: &str| {
        vec![
            "--set".to_owned(),
            format!("source.brokers={brokers}"),
            "--set".to_owned(),
            format!("source.topic_prefix={prefix}"),
            "--set".to_owned(),
            format!("source.group={prefix}{group}"),
            "--set".to_owned(),
            "source.follow=true".to_owned(),
            "--set".to_owned(),
            "source.idle_timeout=1s".to_owned(),
        ]
    };
    let store =
        ["--set".to_owned(), format!("store.url={redis}"), "--set".to_owned(), format!("store.prefix={prefix}s:")];

    let eligibility = [topics("elig"), store.to_vec()].concat();
    let text = scrape_while_it_runs(&pipeline("eligibility"), &eligibility, "arus_events_folded_total", events as f64);
    assert!(value(&text, "arus_store_records_written_total").is_some_and(|v| v > 0.0), "{text}");

    let adjudication =
        [topics("adj"), store.to_vec(), vec!["--set".to_owned(), "out_of_orderness=0s".to_owned()]].concat();
    let text = scrape_while_it_runs(&pipeline("adjudication"), &adjudication, "arus_outputs_total", 1.0);
    assert!(value(&text, "arus_events_folded_total").is_some_and(|v| v > 0.0), "{text}");
    assert!(value(&text, "arus_watermark_seconds").is_some_and(|v| v > 1.0e9), "a watermark in seconds: {text}");

    let models = format!("model.dir=\"{}/models\"", env!("CARGO_MANIFEST_DIR"));
    let fraud =
        [topics("fraud"), vec!["--set".to_owned(), models, "--set".to_owned(), "out_of_orderness=0s".to_owned()]]
            .concat();
    scrape_while_it_runs(&pipeline("fraud"), &fraud, "arus_events_folded_total", 1.0);

    // Analytics into a database of its own (its tables migrated first), where ClickHouse is.
    if let Some(url) = arus_connectors::service_address("CLICKHOUSE_URL") {
        let database = format!("arus_test_metrics_{}", std::process::id());
        let admin = arus_connectors::clickhouse::ClickHouse::connect(&url, "default").expect("ClickHouse");
        let _drop = DropDatabase(&admin, database.clone());
        let dir = format!("{}/deploy/clickhouse", env!("CARGO_MANIFEST_DIR"));
        let migrate = Command::new(env!("CARGO_BIN_EXE_arus"))
            .args(["clickhouse", "migrate", "--url", &url, "--database", &database, "--dir", &dir])
            .output()
            .expect("arus runs");
        assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));
        let target = [
            "--set".to_owned(),
            format!("clickhouse.url=\"{url}\""),
            "--set".to_owned(),
            format!("clickhouse.database={database}"),
            "--set".to_owned(),
            "clickhouse.batch_rows=50".to_owned(),
        ];
        let analytics = [topics("analytics"), target.to_vec()].concat();
        // Rows are inserted 50 at a time while following: the tables' counts together.
        let text = scrape_while_it_runs(&pipeline("analytics"), &analytics, "arus_sink_lines_total", 50.0);
        assert!(value(&text, "arus_source_records_total").is_some_and(|v| v > 50.0), "{text}");
    }

    // The windowed job over the flat claims of a topic, following it.
    let claims = common::TestTopic::new("metrics-claims", 2).expect("a broker");
    claims.send_claims(&common::claims(500));
    let source = format!(
        "source={{kind=\"kafka\", brokers=\"{brokers}\", topic=\"{}\", follow=true, idle_timeout=\"1s\", batch_records=100}}",
        claims.name
    );
    let out = tempfile::tempdir().expect("tempdir");
    let windows =
        ["--set".to_owned(), source, "--set".to_owned(), format!("sink.path={}", out.path().join("out.csv").display())];
    let text = scrape_while_it_runs(&pipeline("provider-windows"), &windows, "arus_source_records_total", 500.0);
    assert!(text.contains("arus_source_position{partition=\"1\""), "both partitions read: {text}");
}
