//! Analytics against the real ClickHouse: `arus clickhouse migrate` (idempotent), generated
//! claims adjudicated on an embedded log and streamed by `arus run pipelines/analytics.toml`
//! into the tables; totals in ClickHouse equal to the decisions on the log, exactly, after a
//! SIGKILL mid-run and reruns; the gateway's daily analytics answering from the same tables.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use arus_connectors::clickhouse::{ClickHouse, Row};
use arus_connectors::embedded::EmbeddedLog;
use arus_generator::GeneratorConfig;
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
    let mut wrong = arus_jobs::analytics::CLAIM_LINE_COLUMNS;
    wrong[8] = ("billed", "Int64");
    let err = clickhouse.check_columns("claim_lines", &wrong).expect_err("a column differs");
    assert!(err.to_string().contains("column 9 is billed_idr Int64, the row writes billed Int64"), "{err}");

    // Generated traffic, adjudicated on a persisted log.
    let log_dir = tempfile::tempdir().expect("a folder");
    common::generated_log(log_dir.path(), &GeneratorConfig { claims: 3_000, days: 60, ..GeneratorConfig::default() });
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
    let mut decisions = Vec::new();
    let mut counts = std::collections::BTreeMap::new();
    let mut paid_to_date = 0i64;
    let mut paid_claims = std::collections::BTreeSet::new();
    let log = EmbeddedLog::open(log_dir.path()).expect("the log");
    for topic in ["claims.events", "payment.events", "member.events", "accumulator.updates"] {
        for (partition, end) in log.end_offsets(topic).expect("offsets").into_iter().enumerate() {
            for record in log.fetch(topic, partition as u32, 0, end as usize).expect("fetch") {
                match wire::decode(&record.value).expect("an event") {
                    Event::ClaimAdjudicated(a) => {
                        expected.claims += 1;
                        expected.lines += a.lines.len() as u64;
                        expected.billed += a.total_billed_idr.0;
                        expected.paid += a.total_plan_paid_idr.0;
                        decisions.push(a);
                    }
                    Event::PaymentCompleted(p) => {
                        paid_claims.insert(p.claim_id);
                        *counts.entry("payments").or_insert(0u64) += 1
                    }
                    Event::PaymentInitiated(_) | Event::PaymentFailed(_) => {
                        *counts.entry("payments").or_insert(0u64) += 1
                    }
                    Event::MemberCreated(_) => *counts.entry("members").or_insert(0u64) += 1,
                    Event::AccumulatorUpdated(u) => {
                        *counts.entry("accumulator_snapshots").or_insert(0u64) += 1;
                        paid_to_date += u.paid_to_date_idr.0;
                    }
                    _ => {}
                }
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
    #[derive(Debug, Row, serde::Deserialize)]
    struct N {
        n: u64,
    }
    let rows_in = |sql: &str| -> u64 { clickhouse.fetch::<N>(sql, &[]).expect(sql).first().map_or(0, |r| r.n) };
    for (table, n) in &counts {
        assert_eq!(rows_in(&format!("SELECT count() AS n FROM {table} FINAL")), *n, "{table}");
    }
    assert!(counts.len() == 3 && counts.values().all(|n| *n > 0), "{counts:?}");
    // The paid-to-date the snapshots carry (V009) is the updates' own.
    #[derive(Debug, Row, serde::Deserialize)]
    struct Sum {
        n: i64,
    }
    let sum: Vec<Sum> =
        clickhouse.fetch("SELECT sum(paid_to_date_idr) AS n FROM accumulator_snapshots FINAL", &[]).expect("sum");
    assert!(paid_to_date > 0, "completed payments in the traffic");
    assert_eq!(sum.first().map(|s| s.n), Some(paid_to_date));
    // No personal data in the member dimension.
    let columns = rows_in(
        "SELECT count() AS n FROM system.columns WHERE database = currentDatabase() AND table = 'members' AND (name LIKE '%nik%' OR name LIKE '%name%' OR name LIKE '%phone%' OR name LIKE '%email%')",
    );
    assert_eq!(columns, 0);
    // The daily aggregates (each day's latest recomputation) add up to the decisions.
    #[derive(Debug, Row, serde::Deserialize)]
    struct Daily {
        claims: u64,
        lines: u64,
        billed: i64,
        paid: i64,
    }
    let daily: Vec<Daily> = clickhouse
        .fetch(
            "SELECT sum(claims) AS claims, sum(lines) AS lines, sum(billed_idr) AS billed, sum(plan_paid_idr) AS paid \
             FROM claims_daily WHERE (decided_date, version) IN \
             (SELECT decided_date, max(version) FROM claims_daily GROUP BY decided_date)",
            &[],
        )
        .expect("daily");
    let daily = &daily[0];
    assert_eq!((daily.claims, daily.lines, daily.billed, daily.paid), (got.claims, got.lines, got.billed, got.paid));
    // Every dashboard panel's query runs here, its time filter expanded as Grafana would.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}/deploy/grafana/dashboards/arus-claims.json", env!("CARGO_MANIFEST_DIR")))
            .expect("the dashboard"),
    )
    .expect("JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 5);
    for panel in panels {
        let sql = panel["targets"][0]["rawSql"].as_str().expect("a query");
        let open = sql.find("$__timeFilter(").expect("a time filter") + "$__timeFilter(".len();
        let column = &sql[open..open + sql[open..].find(')').expect("a column")];
        let expanded = sql.replace(
            &format!("$__timeFilter({column})"),
            &format!("{column} >= toDate('2026-01-01') AND {column} <= toDate('2026-12-31')"),
        );
        let rows = clickhouse.fetch::<N>(&format!("SELECT count() AS n FROM ({expanded})"), &[]);
        assert!(rows.is_ok(), "panel {}: {rows:?}", panel["title"]);
    }

    // The gateway answers from the same tables.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = listener.local_addr().expect("address");
    // Analytics are for the insurer's own callers: an internal token from a development issuer.
    let issuer = arus_gateway::auth::DevIssuer::new("arus-test").expect("an issuer");
    let audience = arus_gateway::auth::DEFAULT_AUDIENCE;
    let token = issuer.token(audience, &arus_gateway::auth::dev_claims("internal", "ops"), Duration::from_secs(600));
    let options = arus_gateway::Options {
        clickhouse: Some(clickhouse.client()),
        authenticator: Some(Arc::new(issuer.authenticator(audience))),
        ..arus_gateway::Options::default()
    };
    std::thread::spawn(move || {
        arus_gateway::serve(listener, Arc::new(arus_connectors::store::MemoryStore::new()), options)
    });
    let get = |path: &str| -> (u16, serde_json::Value) {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(address).expect("connect");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: arus\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .expect("request");
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
    // A provider's scorecard adds up to its decisions.
    let mut by_provider = std::collections::BTreeMap::new();
    for a in &decisions {
        let e = by_provider.entry(a.provider_id.clone()).or_insert((0i64, 0i64, 0i64));
        e.0 += a.lines.len() as i64;
        e.1 += a.total_billed_idr.0;
        e.2 += a.total_plan_paid_idr.0;
    }
    let (provider, want) = by_provider.iter().max_by_key(|(_, v)| v.0).expect("a provider");
    let (status, body) = get(&format!("/api/v1/providers/{provider}/scorecard?from=2026-01-01&to=2026-12-31"));
    assert_eq!(status, 200, "{body}");
    let weeks = body["data"]["weeks"].as_array().expect("weeks");
    let sum = |field: &str| weeks.iter().map(|w| w[field].as_i64().unwrap_or(0)).sum::<i64>();
    assert_eq!((sum("lines"), sum("billedIdr"), sum("planPaidIdr")), *want, "{body}");
    assert!(weeks.iter().all(|w| w["denialRateBp"].as_i64().is_some_and(|r| (0..=10_000).contains(&r))));
    // A member's history is their decisions.
    let mut by_member: std::collections::BTreeMap<&str, Vec<&arus_schemas::events::ClaimAdjudicated>> =
        Default::default();
    for a in &decisions {
        by_member.entry(a.member_id.as_str()).or_default().push(a);
    }
    let (member, theirs) = by_member.iter().max_by_key(|(_, v)| v.len()).expect("a member");
    let (status, body) = get(&format!("/api/v1/members/{member}/claims"));
    assert_eq!(status, 200, "{body}");
    let mut listed: Vec<&str> =
        body["data"].as_array().expect("claims").iter().filter_map(|c| c["claimId"].as_str()).collect();
    let mut want: Vec<&str> = theirs.iter().map(|a| a.claim_id.as_str()).collect();
    listed.sort_unstable();
    want.sort_unstable();
    assert_eq!(listed, want);
    // Filtered by status: a member with a denied claim gets exactly those.
    let (member, theirs) = by_member
        .iter()
        .find(|(_, v)| v.iter().any(|a| a.status == arus_schemas::events::ClaimStatus::DENIED))
        .expect("a member with a denied claim");
    let (status, body) = get(&format!("/api/v1/members/{member}/claims?status=DENIED&limit=5"));
    assert_eq!(status, 200, "{body}");
    let listed: std::collections::BTreeSet<&str> =
        body["data"].as_array().expect("claims").iter().filter_map(|c| c["claimId"].as_str()).collect();
    let denied: std::collections::BTreeSet<&str> = theirs
        .iter()
        .filter(|a| a.status == arus_schemas::events::ClaimStatus::DENIED)
        .map(|a| a.claim_id.as_str())
        .take(5)
        .collect();
    assert!(!listed.is_empty() && listed.len() == denied.len().min(5), "{body}");
    assert!(body["data"].as_array().expect("claims").iter().all(|c| c["status"] == "DENIED"), "{body}");
    // The seed's statuses: each filter gives exactly the member's claims it names.
    let (member, theirs) = by_member.iter().max_by_key(|(_, v)| v.len()).expect("a member");
    let ids = |body: &serde_json::Value| -> std::collections::BTreeSet<String> {
        body["data"]
            .as_array()
            .expect("claims")
            .iter()
            .filter_map(|c| c["claimId"].as_str().map(str::to_owned))
            .collect()
    };
    use arus_schemas::events::ClaimStatus;
    for (status, wanted) in [
        (
            "approved",
            &(|a: &arus_schemas::events::ClaimAdjudicated| {
                matches!(a.status, ClaimStatus::APPROVED | ClaimStatus::PARTIALLY_APPROVED)
            }) as &dyn Fn(&arus_schemas::events::ClaimAdjudicated) -> bool,
        ),
        ("denied", &|a| a.status == ClaimStatus::DENIED),
        ("pending", &|a| a.status == ClaimStatus::PENDED),
        ("paid", &|a| paid_claims.contains(&a.claim_id)),
    ] {
        let (code, body) = get(&format!("/api/v1/members/{member}/claims?status={status}"));
        assert_eq!(code, 200, "{status}: {body}");
        let want: std::collections::BTreeSet<String> =
            theirs.iter().filter(|a| wanted(a)).map(|a| a.claim_id.clone()).collect();
        assert_eq!(ids(&body), want, "status={status}");
    }
    assert!(theirs.iter().any(|a| paid_claims.contains(&a.claim_id)), "the member has a paid claim");
    // Pages of two, each following the one before's links.next, give every claim once, newest
    // first; the last page has no next.
    let (mut paged, mut pages, mut path) = (Vec::new(), 0, Some(format!("/api/v1/members/{member}/claims?limit=2")));
    while let Some(next) = path {
        let (code, body) = get(&next);
        assert_eq!(code, 200, "{next}: {body}");
        let page = body["data"].as_array().expect("claims");
        assert_eq!(body["meta"]["count"].as_u64(), Some(page.len() as u64), "{body}");
        assert!(page.len() <= 2, "{body}");
        paged.extend(
            page.iter()
                .map(|c| (c["decidedDate"].as_str().map(str::to_owned), c["claimId"].as_str().map(str::to_owned))),
        );
        path = body["links"]["next"].as_str().map(str::to_owned);
        pages += 1;
        assert!(pages <= theirs.len() + 1, "paging ends");
    }
    let mut newest_first = paged.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(paged, newest_first, "newest first across pages");
    let all: std::collections::BTreeSet<String> = paged.into_iter().filter_map(|(_, id)| id).collect();
    assert_eq!(all.len(), theirs.len(), "every claim once");
    // 400 for what is malformed; 422 for well-formed values that do not fit together.
    for (path, status, field) in [
        ("/api/v1/members/M1/claims?cursor=nonsense", 422, "cursor"),
        ("/api/v1/members/M1/claims?status=LOST", 400, "status"),
        ("/api/v1/members/M1/claims?limit=0", 400, "limit"),
        ("/api/v1/providers/P1/scorecard?from=2026-01-01", 400, "to"),
        ("/api/v1/analytics/claims/daily?from=2026-02-01&to=2026-01-01", 422, "to"),
        ("/api/v1/analytics/claims/daily?from=2026-01-01&to=2026-01-31&groupBy=member", 400, "groupBy"),
        ("/api/v1/analytics/claims/daily?from=2026-01-01&to=2028-01-01", 422, "to"),
        ("/api/v1/analytics/claims/daily?to=2026-01-01", 400, "from"),
    ] {
        let (got, body) = get(path);
        assert_eq!((got, body["error"]["details"][0]["field"].as_str()), (status, Some(field)), "{path}: {body}");
    }
}
