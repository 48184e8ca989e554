//! Analytics against the real ClickHouse: `arus clickhouse migrate` (idempotent), generated
//! claims adjudicated on an embedded log and streamed by `arus run pipelines/analytics.toml`
//! into the tables; totals in ClickHouse equal to the decisions on the log, exactly, after a
//! SIGKILL mid-run and reruns; the gateway's daily analytics answering from the same tables.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use arus_connectors::clickhouse::{ClickHouse, Row};
use arus_connectors::embedded::EmbeddedLog;
use arus_generator::{GeneratorConfig, Output, generate};
use arus_schemas::{Event, wire};

fn arus(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_arus")).args(args).output().expect("arus runs");
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[derive(Debug, Row, serde::Deserialize)]
struct Totals {
    claims: u64,
    lines: u64,
    billed: i64,
    paid: i64,
}

struct DropDatabase<'a>(&'a ClickHouse, String);

impl Drop for DropDatabase<'_> {
    fn drop(&mut self) {
        let _ = self.0.execute(&format!("DROP DATABASE IF EXISTS {}", self.1));
    }
}

fn analytics(dir: &Path, url: &str, database: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_arus"));
    command
        .args(["run", &format!("{}/pipelines/analytics.toml", env!("CARGO_MANIFEST_DIR")), "--workers", "2"])
        .args(["--set", &format!("source={{kind=\"embedded\", dir=\"{}\"}}", dir.display())])
        .args(["--set", &format!("clickhouse.url=\"{url}\""), "--set", &format!("clickhouse.database={database}")])
        .args(["--set", "clickhouse.batch_rows=500"]);
    command
}

#[test]
fn claim_lines_reach_clickhouse_exactly_once_and_the_gateway_reads_them() {
    let Some(url) = arus_connectors::service_address("CLICKHOUSE_URL") else { return };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let database = format!("arus_test_{}_{nanos}", std::process::id());
    let admin = ClickHouse::connect(&url, "default").expect("ClickHouse");
    let _drop = DropDatabase(&admin, database.clone());

    // The tables, twice: the second time applies nothing.
    let dir = format!("{}/deploy/clickhouse", env!("CARGO_MANIFEST_DIR"));
    let migrate = ["clickhouse", "migrate", "--url", &url, "--database", &database, "--dir", &dir];
    let (ok, stderr) = arus(&migrate);
    assert!(ok && stderr.contains("applied V1__claim_lines, V2__providers"), "{stderr}");
    let (ok, stderr) = arus(&migrate);
    assert!(ok && stderr.contains("already applied"), "{stderr}");
    let clickhouse = ClickHouse::connect(&url, &database).expect("ClickHouse");
    let mut wrong = arus_jobs::analytics_job::CLAIM_LINE_COLUMNS;
    wrong[8] = ("billed", "Int64");
    let err = clickhouse.check_columns("claim_lines", &wrong).expect_err("a column differs");
    assert!(err.to_string().contains("column 9 is billed_idr Int64, the row writes billed Int64"), "{err}");

    // Generated traffic, adjudicated on a persisted log.
    let log_dir = tempfile::tempdir().expect("a folder");
    {
        let log = EmbeddedLog::open(log_dir.path()).expect("a log");
        log.create_all_topics().expect("topics");
        let settings = GeneratorConfig { claims: 3_000, days: 60, ..GeneratorConfig::default() };
        generate(&settings, |output| -> Result<(), String> {
            if let Output::Event(event) = output {
                let bytes = wire::encode(&event).map_err(|e| e.to_string())?;
                log.produce(&event.topic(), Some(event.key().as_bytes()), bytes, event.event_time())
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        })
        .expect("generate");
        log.flush().expect("flush");
    }
    let (ok, stderr) = arus(&[
        "run",
        &format!("{}/pipelines/adjudication.toml", env!("CARGO_MANIFEST_DIR")),
        "--set",
        &format!("source={{kind=\"embedded\", dir=\"{}\"}}", log_dir.path().display()),
        "--set",
        "store={kind=\"memory\"}",
    ]);
    assert!(ok, "{stderr}");
    // The totals of the decisions on the log.
    let mut expected = Totals { claims: 0, lines: 0, billed: 0, paid: 0 };
    let log = EmbeddedLog::open(log_dir.path()).expect("the log");
    for (partition, end) in log.end_offsets("claims.events").expect("offsets").into_iter().enumerate() {
        for record in log.fetch("claims.events", partition as u32, 0, end as usize).expect("fetch") {
            if let Ok(Event::ClaimAdjudicated(a)) = wire::decode(&record.value) {
                expected.claims += 1;
                expected.lines += a.lines.len() as u64;
                expected.billed += a.total_billed_idr.0;
                expected.paid += a.total_plan_paid_idr.0;
            }
        }
    }
    drop(log);
    assert!(expected.claims >= 3_000);
    let totals = || -> Totals {
        let rows: Vec<Totals> = clickhouse
            .fetch(
                "SELECT uniqExact(claim_id) AS claims, count() AS lines, sum(billed_idr) AS billed, \
                 sum(plan_paid_idr) AS paid FROM claim_lines FINAL",
                &[],
            )
            .expect("totals");
        rows.into_iter().next().expect("a row")
    };
    let count = || -> u64 {
        #[derive(Row, serde::Deserialize)]
        struct Count {
            n: u64,
        }
        let rows: Vec<Count> = clickhouse.fetch("SELECT count() AS n FROM claim_lines", &[]).expect("count");
        rows.first().map_or(0, |c| c.n)
    };

    // Killed once rows have started to land, then run to the end, then once more.
    let mut dice = common::Dice::new();
    let point = 1 + dice.below(expected.lines / 2);
    let mut child =
        analytics(log_dir.path(), &url, &database).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("arus");
    let mut killed = false;
    loop {
        if child.try_wait().expect("status").is_some() {
            break;
        }
        if count() >= point {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
            killed = true;
            break;
        }
        // Polling the table; any moment must do for the kill.
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    eprintln!("analytics killed mid-run: {killed} (at {point} rows)");
    for _ in 0..2 {
        let output = analytics(log_dir.path(), &url, &database).output().expect("arus runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        assert!(stderr.contains("claim lines"), "{stderr}");
    }
    let got = totals();
    assert_eq!(
        (got.claims, got.lines, got.billed, got.paid),
        (expected.claims, expected.lines, expected.billed, expected.paid),
        "ClickHouse totals after {} and two full runs",
        if killed { "a SIGKILL" } else { "a run that ended before the kill point" }
    );
    assert!(count() >= got.lines, "rows are written again by reruns; FINAL counts each once");

    // The gateway answers from the same tables.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = listener.local_addr().expect("address");
    let options = arus_gateway::Options { clickhouse: Some(clickhouse.client()), ..arus_gateway::Options::default() };
    std::thread::spawn(move || {
        arus_gateway::serve(listener, Arc::new(arus_connectors::store::MemoryStore::new()), options)
    });
    let get = |path: &str| -> (u16, serde_json::Value) {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(address).expect("connect");
        write!(stream, "GET {path} HTTP/1.1\r\nHost: arus\r\nConnection: close\r\n\r\n").expect("request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("response");
        let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status");
        (status, serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap_or("")).unwrap_or_default())
    };
    for group in ["provider", "plan", "province"] {
        let (status, body) =
            get(&format!("/api/v1/analytics/claims/daily?from=2025-01-01&to=2025-12-31&groupBy={group}"));
        assert_eq!(status, 200, "{body}");
        let (status, body) =
            get(&format!("/api/v1/analytics/claims/daily?from=2026-01-01&to=2026-12-31&groupBy={group}"));
        assert_eq!(status, 200, "{body}");
        let rows = body["data"].as_array().expect("rows");
        let sum = |field: &str| rows.iter().map(|r| r[field].as_i64().unwrap_or(0)).sum::<i64>();
        // The generated claims fall in 2026: the year's rows hold every one.
        assert_eq!(
            (sum("lines"), sum("billedIdr"), sum("planPaidIdr")),
            (got.lines as i64, got.billed, got.paid),
            "{group}"
        );
        assert!(rows.iter().all(|r| r[group].is_string()), "{group}: {body}");
        if group == "province" {
            assert!(
                rows.iter().all(|r| r["province"].as_str().is_some_and(|p| p.len() == 2)),
                "every provider has a province: {body}"
            );
        }
    }
    for (path, field) in [
        ("/api/v1/analytics/claims/daily?from=2026-02-01&to=2026-01-01", "to"),
        ("/api/v1/analytics/claims/daily?from=2026-01-01&to=2026-01-31&groupBy=member", "groupBy"),
        ("/api/v1/analytics/claims/daily?from=2026-01-01&to=2028-01-01", "to"),
        ("/api/v1/analytics/claims/daily?to=2026-01-01", "from"),
    ] {
        let (status, body) = get(path);
        assert_eq!((status, body["error"]["details"][0]["field"].as_str()), (400, Some(field)), "{path}: {body}");
    }
}
