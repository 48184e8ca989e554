//! `arus run pipelines/provider-windows.toml` as a user runs it: correct windows against a
//! direct computation, the same file for 1, 2 and 4 workers, bad lines set aside, late claims
//! corrected or reported, clear errors for bad specs.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{claims, expected_csv, write_claims};

fn arus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_arus")).args(args).output().expect("arus runs")
}

fn pipeline() -> String {
    format!("{}/pipelines/provider-windows.toml", env!("CARGO_MANIFEST_DIR"))
}

fn run_pipeline(dir: &Path, input: &Path, workers: &str, extra: &[&str]) -> (String, String) {
    let out = dir.join(format!("out-{workers}.csv"));
    let mut args = vec![
        "run".to_owned(),
        pipeline(),
        "--workers".to_owned(),
        workers.to_owned(),
        "--set".to_owned(),
        format!("source.path={}", input.display()),
        "--set".to_owned(),
        format!("sink.path={}", out.display()),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = arus(&refs);
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "arus run failed: {stderr}");
    (std::fs::read_to_string(&out).expect("output csv"), stderr)
}

#[test]
fn provider_windows_are_correct_and_the_same_for_any_number_of_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("claims.jsonl");
    let claims = claims(20_000);
    write_claims(&input, &claims, "");
    let expected = expected_csv(&claims);
    for workers in ["1", "2", "4"] {
        let (csv, stderr) = run_pipeline(dir.path(), &input, workers, &[]);
        assert!(csv == expected, "{workers} workers: output differs from the direct computation");
        assert!(stderr.contains("20,000 records"), "{stderr}");
    }
}

#[test]
fn bad_lines_go_to_dead_letters_and_the_job_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("claims.jsonl");
    let claims = claims(500);
    write_claims(
        &input,
        &claims,
        "not json\n{\"claim_id\":\"X\",\"member_id\":\"M\",\"provider_id\":\"P\",\"billed_amount\":1.005,\"service_ts\":1}\n",
    );
    let (csv, stderr) = run_pipeline(dir.path(), &input, "2", &[]);
    assert_eq!(csv, expected_csv(&claims));
    assert!(stderr.contains("2 dead letters"), "{stderr}");
    let dlq = std::fs::read_to_string(dir.path().join("out-2.dlq.jsonl")).expect("dead letters");
    let letters: Vec<serde_json::Value> = dlq.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0]["line"], 501);
    assert_eq!(letters[1]["original"].as_str().map(|s| s.contains("1.005")), Some(true));
    assert!(letters[1]["error"].as_str().is_some_and(|e| e.contains("billed_amount")));
}

#[test]
fn late_claims_correct_their_window_or_are_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("claims.jsonl");
    let line = |c: &str, p: &str, a: &str, ts: u64| {
        format!(
            "{{\"claim_id\":\"{c}\",\"member_id\":\"M{c}\",\"provider_id\":\"{p}\",\"billed_amount\":{a},\"service_ts\":{ts}}}\n"
        )
    };
    // One batch per line, no out-of-orderness: C3 (10 minutes late) corrects the first
    // window within the 15 minutes allowed; C5 (an hour late) does not.
    let text = [
        line("1", "P", "10", 0),
        line("2", "P", "1", 900),
        line("3", "P", "5", 60),
        line("4", "P", "1", 4_000),
        line("5", "P", "7", 120),
    ]
    .concat();
    std::fs::write(&input, text).expect("write");
    let late = dir.path().join("late.jsonl");
    let (csv, stderr) = run_pipeline(
        dir.path(),
        &input,
        "2",
        &[
            "--set",
            "source.batch_lines=1",
            "--set",
            "windows.out_of_orderness=\"0s\"",
            "--set",
            "windows.allowed_lateness=\"15m\"",
            "--set",
            &format!("sink.late_path={}", late.display()),
        ],
    );
    assert_eq!(
        csv,
        "provider_id,window_start,count,sum_billed,distinct_members\nP,0,1,10.00,1\nP,0,2,15.00,2\nP,900,1,1.00,1\nP,3900,1,1.00,1\n",
        "{stderr}"
    );
    let late = std::fs::read_to_string(late).expect("late file");
    assert_eq!(late.lines().count(), 1, "{late}");
    assert!(late.contains("\"event_time_ms\":120000") && late.contains("allowed lateness"), "{late}");

    // The same as a JSON-lines change log: the correction retracts the value written before.
    let (log, stderr) = run_pipeline(
        dir.path(),
        &input,
        "2",
        &[
            "--set",
            "sink.kind=\"jsonl\"",
            "--set",
            "source.batch_lines=1",
            "--set",
            "windows.out_of_orderness=\"0s\"",
            "--set",
            "windows.allowed_lateness=\"15m\"",
        ],
    );
    let changes: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str(l).expect("a JSON change")).collect();
    let summary: Vec<(u64, u64, u64, String, i64)> = changes
        .iter()
        .map(|c| {
            let n = |k: &str| c[k].as_u64().expect("a number");
            (
                n("window_start"),
                n("window_end"),
                n("count"),
                c["sum_billed"].to_string(),
                c["diff"].as_i64().expect("diff"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (0, 300, 1, "10.0".to_owned(), 1),
            (0, 300, 1, "10.0".to_owned(), -1),
            (0, 300, 2, "15.0".to_owned(), 1),
            (900, 1200, 1, "1.0".to_owned(), 1),
            (3900, 4200, 1, "1.0".to_owned(), 1),
        ],
        "{stderr}"
    );
    assert!(log.contains("\"sum_billed\":15.00"), "amounts written with two decimals: {log}");
}

#[test]
fn bad_specs_and_inputs_get_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.jsonl");
    // The user's to fix: exit status 2.
    let run = arus(&["run", &pipeline(), "--set", &format!("source.path={}", missing.display())]);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("nope.jsonl"), "{}", String::from_utf8_lossy(&run.stderr));
    let run = arus(&["run", &pipeline(), "--set", "windows.size=\"5 parsecs\""]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("size") && stderr.contains("5 parsecs") && stderr.contains("unknown unit"), "{stderr}");
    assert_eq!(run.status.code(), Some(2));
    let run = arus(&["run", "does-not-exist.toml"]);
    assert!(String::from_utf8_lossy(&run.stderr).contains("does-not-exist.toml"));
    assert_eq!(run.status.code(), Some(2));
    let adjudication = format!("{}/pipelines/adjudication.toml", env!("CARGO_MANIFEST_DIR"));
    for threads in ["0", "17"] {
        let run = arus(&["run", &adjudication, "--set", &format!("fold_threads={threads}")]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(stderr.contains(&format!("fold_threads: {threads} is not between 1 and 16")), "{stderr}");
        assert_eq!(run.status.code(), Some(2), "{stderr}");
    }
    // A service that is not there: exit status 3, saying a retry may help.
    let run =
        arus(&["run", &adjudication, "--set", "source.brokers=127.0.0.1:1", "--set", "store.url=redis://127.0.0.1:1/"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("running again may succeed"), "{stderr}");
}

/// Against the real broker (`KAFKA_BROKERS`; required when `ARUS_REQUIRE_SERVICES` is set).
#[test]
fn provider_windows_read_from_kafka_match_the_direct_computation() {
    let Some(kafka) = common::TestTopic::new("run", 3) else { return };
    let (brokers, topic) = (&kafka.brokers, &kafka.name);

    let claims = claims(5_000);
    kafka.send_claims(&claims);
    kafka.send([(&b"P0"[..], &b"not a claim"[..], 0)]);

    let dir = tempfile::tempdir().expect("tempdir");
    let source = format!("source={{kind=\"kafka\", brokers=\"{brokers}\", topic=\"{topic}\"}}");
    for workers in ["1", "2"] {
        let (csv, stderr) = run_pipeline(dir.path(), Path::new("unused"), workers, &["--set", &source]);
        let expected = expected_csv(&claims);
        if csv != expected {
            let missing: Vec<&str> = expected.lines().filter(|l| !csv.lines().any(|c| c == *l)).take(5).collect();
            let extra: Vec<&str> = csv.lines().filter(|l| !expected.lines().any(|c| c == *l)).take(5).collect();
            panic!(
                "{workers} workers: Kafka-fed output differs ({} vs {} lines)\nmissing {missing:?}\nextra {extra:?}\n{stderr}",
                csv.lines().count(),
                expected.lines().count()
            );
        }
        assert!(stderr.contains("5,000 records") && stderr.contains("1 dead letters"), "{stderr}");
    }
}

#[test]
fn metrics_are_served_where_asked_and_a_bad_address_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("claims.jsonl");
    write_claims(&input, &claims(100), "");
    let (_, stderr) = run_pipeline(dir.path(), &input, "1", &["--metrics-addr", "127.0.0.1:0"]);
    assert!(stderr.contains("metrics: http://127.0.0.1:"), "{stderr}");
    let run =
        arus(&["run", &pipeline(), "--set", &format!("source.path={}", input.display()), "--metrics-addr", "nowhere"]);
    assert!(!run.status.success());
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("--metrics-addr nowhere"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

#[test]
fn provider_sessions_match_the_direct_computation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("claims.jsonl");
    let claims = claims(20_000);
    write_claims(&input, &claims, "");
    // Sessions of one provider: claims sorted by time, each joining the session while it starts
    // before the session's end (last claim + gap).
    let gap = 60u64;
    let mut by_provider: std::collections::BTreeMap<&str, Vec<(u64, &str, i64)>> = Default::default();
    for (_, member, provider, amount, ts) in &claims {
        by_provider.entry(provider).or_default().push((*ts, member, common::cents(amount)));
    }
    let mut sessions = Vec::new();
    for (provider, mut events) in by_provider {
        events.sort();
        let mut current: Option<(u64, u64, u64, i64, std::collections::BTreeSet<&str>)> = None;
        for (ts, member, cents) in events {
            match current.as_mut() {
                Some((_, end, count, sum, members)) if ts < *end => {
                    *end = (*end).max(ts + gap);
                    *count += 1;
                    *sum += cents;
                    members.insert(member);
                }
                _ => {
                    sessions.extend(current.take().map(|s| (provider, s)));
                    current = Some((ts, ts + gap, 1, cents, [member].into()));
                }
            }
        }
        sessions.extend(current.map(|s| (provider, s)));
    }
    // Written as they close: by end, then start, then provider.
    sessions.sort_by_key(|(p, (start, end, ..))| (*end, *start, *p));
    let mut expected = "provider_id,window_start,window_end,count,sum_billed,distinct_members\n".to_owned();
    for (provider, (start, end, count, sum, members)) in &sessions {
        expected.push_str(&format!(
            "{provider},{start},{end},{count},{}.{:02},{}\n",
            sum / 100,
            sum % 100,
            members.len()
        ));
    }
    let sessions_pipeline = format!("{}/pipelines/provider-sessions.toml", env!("CARGO_MANIFEST_DIR"));
    for workers in ["1", "2"] {
        let out = dir.path().join(format!("sessions-{workers}.csv"));
        let run = arus(&[
            "run",
            &sessions_pipeline,
            "--workers",
            workers,
            "--set",
            &format!("source.path={}", input.display()),
            "--set",
            &format!("sink.path={}", out.display()),
            "--set",
            "windows.gap=\"1m\"",
        ]);
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let csv = std::fs::read_to_string(&out).expect("output");
        assert!(sessions.len() > 1_000, "the claims make many sessions");
        assert!(csv == expected, "{workers} workers: sessions differ from the direct computation");
    }
}

#[test]
fn an_avro_container_of_claim_events_gives_the_windows_of_the_flat_claims() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let flat = dir.path().join("flat.jsonl");
    let generated = arus(&[
        "gen",
        "--claims",
        "3000",
        "--days",
        "10",
        "--format",
        "avro",
        "--quiet",
        "--out",
        &data.display().to_string(),
        "--claims-file",
        &flat.display().to_string(),
    ]);
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    let (from_flat, _) = run_pipeline(dir.path(), &flat, "2", &[]);
    let avro = data.join("claims.events.avro");
    let (from_avro, stderr) = run_pipeline(
        dir.path(),
        Path::new("unused"),
        "2",
        &["--set", &format!("source={{kind=\"avro\", path=\"{}\"}}", avro.display())],
    );
    assert!(from_flat.lines().count() > 100, "the claims make windows");
    assert_eq!(from_avro, from_flat, "{stderr}");
    let refused = |source: String, why: &str| {
        let run = arus(&["run", &pipeline(), "--set", &source]);
        assert!(!run.status.success());
        assert!(String::from_utf8_lossy(&run.stderr).contains(why), "{}", String::from_utf8_lossy(&run.stderr));
    };
    refused(format!("source={{kind=\"avro\", path=\"{}\"}}", flat.display()), "not a topic of the contract");
    refused(
        format!("source={{kind=\"avro\", path=\"{}\", topic=\"claims.events\"}}", flat.display()),
        "not an Avro container",
    );
}

/// Against the real broker: `follow = true` keeps reading what is written after the run began;
/// windows close as new claims move the watermark on, and the CSV shows them while the run goes
/// on.
#[test]
fn a_followed_topic_keeps_being_read_and_windows_close_as_claims_arrive() {
    let Some(kafka) = common::TestTopic::new("follow", 2) else { return };
    let (brokers, topic) = (&kafka.brokers, &kafka.name);
    let send = |claims: &[(String, String, String, String, u64)]| kafka.send_claims(claims);
    let mut cleanup = common::KillOnDrop(None);
    let first = claims(2_000);
    send(&first);

    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("followed.csv");
    let child = Command::new(env!("CARGO_BIN_EXE_arus"))
        .args(["run", &pipeline(), "--workers", "2", "--set"])
        .arg(format!(
            "source={{kind=\"kafka\", brokers=\"{brokers}\", topic=\"{topic}\", follow=true, idle_timeout=\"1s\", batch_records=500}}"
        ))
        .args(["--set", "windows.out_of_orderness=\"10m\"", "--set", "windows.allowed_lateness=\"1h\"", "--set"])
        .arg(format!("sink.path={}", out.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("arus starts");
    cleanup.0 = Some(child);
    // Waits for every row of `expected` (window rows, no header) to be in the CSV.
    let wait_for = |expected: &[String], what: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        loop {
            let csv = std::fs::read_to_string(&out).unwrap_or_default();
            let rows: std::collections::BTreeSet<&str> = csv.lines().collect();
            let missing = expected.iter().filter(|r| !rows.contains(r.as_str())).count();
            if missing == 0 {
                return csv;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: {missing} rows still missing after 90 s");
            // Polling the file the running job writes.
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    // Windows of the first claims that end ten minutes before the last of them are complete.
    let newest = first.iter().map(|c| c.4).max().expect("claims");
    let rows = |claims: &[(String, String, String, String, u64)], until: u64| -> Vec<String> {
        expected_csv(claims)
            .lines()
            .skip(1)
            .filter(|row| row.split(',').nth(1).and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s + 300 <= until))
            .map(str::to_owned)
            .collect()
    };
    let early = rows(&first, newest - 3_600);
    assert!(early.len() > 100);
    wait_for(&early, "windows of the claims there before the run");

    // Claims written while the run goes on, a day later: every window of the first claims
    // closes, and the new claims' windows follow.
    let later: Vec<_> =
        claims(2_000).into_iter().map(|(c, m, p, a, ts)| (format!("L{c}"), m, p, a, ts + 86_400)).collect();
    send(&later);
    let all_first = rows(&first, u64::MAX);
    let csv = wait_for(&all_first, "the rest of the first claims' windows, closed by the later claims");
    let later_newest = later.iter().map(|c| c.4).max().expect("claims");
    wait_for(&rows(&later, later_newest - 3_600), "windows of the claims written while the run went on");
    assert!(csv.starts_with("provider_id,window_start"), "{csv}");
}

/// Against the real broker: a followed run with checkpoints keeps checkpointing while its topic
/// is quiet, and after SIGKILL and a restart it goes on from there, each window once.
#[test]
fn a_followed_run_checkpoints_while_idle_and_resumes_after_a_kill() {
    let Some(kafka) = common::TestTopic::new("follow-ck", 2) else { return };
    let (brokers, topic) = (&kafka.brokers, &kafka.name);
    let send = |claims: &[(String, String, String, String, u64)]| kafka.send_claims(claims);
    let mut cleanup = common::KillOnDrop(None);
    let first = claims(1_000);
    send(&first);
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, checkpoints) = (dir.path().join("followed.csv"), dir.path().join("checkpoints"));
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_arus"))
            .args(["run", &pipeline(), "--workers", "2", "--set"])
            .arg(format!(
                "source={{kind=\"kafka\", brokers=\"{brokers}\", topic=\"{topic}\", follow=true, idle_timeout=\"500ms\", batch_records=200}}"
            ))
            .args(["--set", "windows.out_of_orderness=\"10m\"", "--set", "windows.allowed_lateness=\"1h\"", "--set"])
            .arg(format!("sink.path={}", out.display()))
            .args(["--set", &format!("checkpoint.dir={}", checkpoints.display()), "--set", "checkpoint.interval=\"100ms\""])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("arus starts")
    };
    let epoch = || -> u64 {
        std::fs::read_dir(&checkpoints)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| {
                        let name = e.file_name().into_string().ok()?;
                        name.strip_prefix("checkpoint-")?.strip_suffix(".json")?.parse().ok()
                    })
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    };
    // Polls for a condition on what the running job writes.
    let wait_until = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}: not after 90 s");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    cleanup.0 = Some(start());
    // Read everything, then quiet: checkpoints go on being taken.
    let quiet_from = std::cell::Cell::new(0);
    wait_until("first checkpoints", &|| epoch() >= 3);
    quiet_from.set(epoch());
    wait_until("checkpoints while the topic is quiet", &|| epoch() >= quiet_from.get() + 5);
    cleanup.kill();
    cleanup.0 = Some(start());
    let later: Vec<_> =
        claims(1_000).into_iter().map(|(c, m, p, a, ts)| (format!("L{c}"), m, p, a, ts + 86_400)).collect();
    send(&later);
    let expected = expected_csv(&first);
    let expected_rows: Vec<&str> = expected.lines().skip(1).collect();
    wait_until("every window of the first claims, after the restart", &|| {
        let csv = std::fs::read_to_string(&out).unwrap_or_default();
        expected_rows.iter().all(|row| csv.lines().any(|l| l == *row))
    });
    let csv = std::fs::read_to_string(&out).expect("csv");
    let mut seen = std::collections::BTreeSet::new();
    for row in csv.lines().skip(1) {
        assert!(seen.insert(row), "row written twice across the restart: {row}");
    }
    assert_eq!(csv.lines().next(), Some("provider_id,window_start,count,sum_billed,distinct_members"));
}

#[test]
fn a_cluster_of_two_processes_gives_the_same_windows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("claims.jsonl");
    let claims = claims(10_000);
    write_claims(&input, &claims, "");
    // Two free ports for the processes to meet on.
    let ports: Vec<u16> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port())
        .collect();
    let hostfile = dir.path().join("hosts");
    std::fs::write(&hostfile, ports.iter().map(|p| format!("127.0.0.1:{p}\n")).collect::<String>()).expect("hostfile");
    let out = dir.path().join("cluster.csv");
    let spawn = |process: usize| {
        Command::new(env!("CARGO_BIN_EXE_arus"))
            .args(["run", &pipeline(), "--workers", "2", "--processes", "2", "--process", &process.to_string()])
            .arg("--hostfile")
            .arg(&hostfile)
            .args(["--set", &format!("source.path={}", input.display())])
            .args(["--set", &format!("sink.path={}", out.display())])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("arus starts")
    };
    let (first, second) = (spawn(0), spawn(1));
    let (first, second) = (first.wait_with_output().expect("process 0"), second.wait_with_output().expect("process 1"));
    assert!(first.status.success(), "process 0: {}", String::from_utf8_lossy(&first.stderr));
    assert!(second.status.success(), "process 1: {}", String::from_utf8_lossy(&second.stderr));
    let csv = std::fs::read_to_string(&out).expect("the output, written by the process of worker 0");
    assert!(csv == expected_csv(&claims), "a two-process cluster's windows differ from the direct computation");
    let with_checkpoints = arus(&[
        "run",
        &pipeline(),
        "--processes",
        "2",
        "--process",
        "0",
        "--hostfile",
        &hostfile.display().to_string(),
        "--set",
        &format!("source.path={}", input.display()),
        "--set",
        &format!("checkpoint.dir={}", dir.path().join("ck").display()),
    ]);
    assert!(!with_checkpoints.status.success());
    assert!(
        String::from_utf8_lossy(&with_checkpoints.stderr).contains("single process"),
        "{}",
        String::from_utf8_lossy(&with_checkpoints.stderr)
    );
}
