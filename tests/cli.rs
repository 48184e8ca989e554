//! The `arus` binary as a user runs it: `gen` is byte-for-byte deterministic, its files
//! hold what the summary says, bad arguments get a clear error, and `demo` shows the
//! generated population.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

fn arus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_arus")).args(args).output().expect("arus runs")
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("output folder")
        .map(|e| e.expect("entry").path())
        .map(|p| (p.file_name().expect("name").to_string_lossy().into_owned(), std::fs::read(&p).expect("read")))
        .collect()
}

fn gen_into(dir: &Path, extra: &[&str]) -> BTreeMap<String, Vec<u8>> {
    let out = dir.to_str().expect("utf-8 path");
    let mut args = vec!["gen", "--claims", "3000", "--days", "45", "--quiet", "--out", out];
    args.extend_from_slice(extra);
    let run = arus(&args);
    assert!(run.status.success(), "arus gen failed: {}", String::from_utf8_lossy(&run.stderr));
    files(dir)
}

#[test]
fn gen_with_the_same_seed_writes_identical_bytes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = gen_into(&tmp.path().join("a"), &["--seed", "7"]);
    let b = gen_into(&tmp.path().join("b"), &["--seed", "7"]);
    let c = gen_into(&tmp.path().join("c"), &["--seed", "8"]);
    assert!(
        a.contains_key("claims.events.jsonl") && a.contains_key("labels.jsonl") && a.contains_key("summary.json"),
        "{:?}",
        a.keys()
    );
    assert_eq!(a, b, "same seed, different bytes");
    assert_ne!(a["claims.events.jsonl"], c["claims.events.jsonl"], "another seed gave the same claims");

    let avro_a = gen_into(&tmp.path().join("avro-a"), &["--seed", "7", "--format", "avro"]);
    let avro_b = gen_into(&tmp.path().join("avro-b"), &["--seed", "7", "--format", "avro"]);
    assert!(avro_a.contains_key("claims.events.avro"));
    assert_eq!(avro_a, avro_b);
}

#[test]
fn gen_files_hold_what_the_summary_counts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let files = gen_into(tmp.path(), &["--seed", "3"]);
    let summary: serde_json::Value = serde_json::from_slice(&files["summary.json"]).expect("summary.json");
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    for (name, bytes) in &files {
        if !name.ends_with(".events.jsonl") && !name.starts_with("eligibility.") {
            continue;
        }
        for line in String::from_utf8(bytes.clone()).expect("utf-8").lines() {
            let event = arus_schemas::json::from_json(line).expect("every line is a valid event");
            assert_eq!(format!("{}.jsonl", event.topic()), *name, "event in the wrong file");
            *counted.entry(event.kind().name().to_owned()).or_default() += 1;
        }
    }
    let expected: BTreeMap<String, u64> =
        serde_json::from_value(summary["summary"]["events"].clone()).expect("event counts");
    assert_eq!(counted, expected);
    let labels = String::from_utf8(files["labels.jsonl"].clone()).expect("utf-8");
    let fraud: u64 = summary["summary"]["fraud"]
        .as_object()
        .expect("fraud counts")
        .values()
        .map(|v| v.as_u64().expect("count"))
        .sum();
    assert_eq!(labels.lines().count() as u64, fraud);
}

#[test]
fn bad_arguments_get_a_clear_error() {
    for (args, expected) in [
        (&["gen", "--fraud-rate", "200%"][..], "above 100%"),
        (&["gen", "--start", "2026-02-30"][..], "invalid date"),
        (&["gen", "--days", "0"][..], "days = 0 is out of range"),
        (&["gen", "--claims", "many"][..], "invalid value 'many'"),
    ] {
        let run = arus(args);
        assert!(!run.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn demo_shows_the_generated_population_without_personal_data() {
    let dir = tempfile::tempdir().expect("a folder");
    let log_dir = dir.path().join("log");
    let log_arg = log_dir.to_str().expect("utf-8 path");
    let run = arus(&["demo", "--claims", "1500", "--days", "20", "--log-dir", log_arg]);
    assert!(run.status.success(), "arus demo failed: {}", String::from_utf8_lossy(&run.stderr));
    let stdout = String::from_utf8(run.stdout).expect("utf-8");
    for expected in
        ["population", "families", "providers", "plans: BRONZE-2026", "claims.events", "decoded from the wire format"]
    {
        assert!(stdout.contains(expected), "demo output lacks {expected:?}:\n{stdout}");
    }
    // The demo runs provider-windows on the claims of the log: every claim is counted.
    let number_after = |marker: &str| -> u64 {
        let at = stdout.find(marker).unwrap_or_else(|| panic!("no {marker:?} in:\n{stdout}")) + marker.len();
        stdout[at..].split_whitespace().next().unwrap_or("").replace(',', "").parse().expect("a count")
    };
    let claims = number_after("\nclaims: ");
    let windowed = {
        let line = stdout.lines().find(|l| l.starts_with("provider-windows on claims.events")).expect("the job ran");
        line.split("): ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .expect("claims")
            .replace(',', "")
            .parse::<u64>()
            .expect("a count")
    };
    assert_eq!(windowed, claims, "{stdout}");
    // The adjudication job decides every claim.
    let decided = stdout
        .lines()
        .find(|l| l.starts_with("adjudication: "))
        .and_then(|l| l.split("workers: ").nth(1))
        .and_then(|r| r.split(' ').next())
        .map(|n| n.replace(',', "").parse::<u64>().expect("a count"))
        .unwrap_or_else(|| panic!("no adjudication line in:\n{stdout}"));
    assert_eq!(decided, claims, "{stdout}");
    assert!(
        stdout.contains("member pays") && stdout.contains("; why:") && stdout.contains("deductible Rp"),
        "{stdout}"
    );
    assert!(stdout.contains("busiest windows"), "{stdout}");
    // Each job ran through the embedded controller, and finished.
    let table = stdout.split("jobs, run through the embedded controller").nth(1).expect("the jobs' table");
    let finished = table.lines().filter(|l| l.contains(" finished ")).count();
    assert_eq!(finished, 4, "{table}");
    // Its fraud alerts, kept in the folder, as `arus alerts tail` prints them — in the demo and
    // run again afterwards.
    let command = stdout.split("`arus alerts tail ").nth(1).and_then(|r| r.split('`').next()).expect("the command");
    assert!(command.starts_with(&format!("--log {log_arg}")), "{stdout}");
    let mut args = vec!["alerts", "tail", "--limit", "3"];
    args.extend(command.split_whitespace());
    let tail = arus(&args);
    assert!(tail.status.success(), "{}", String::from_utf8_lossy(&tail.stderr));
    let tailed = String::from_utf8(tail.stdout).expect("utf-8");
    assert_eq!(tailed.lines().count(), 3, "{tailed}");
    assert!(tailed.lines().all(|l| stdout.contains(l.trim())), "the demo showed the same alerts:\n{tailed}\n{stdout}");
    // A folder holding anything else is not emptied.
    std::fs::write(dir.path().join("notes.txt"), "mine").expect("a file");
    let refused = arus(&["demo", "--claims", "100", "--days", "5", "--log-dir", dir.path().to_str().expect("utf-8")]);
    assert!(!refused.status.success() && dir.path().join("notes.txt").exists());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("holds other files"), "{refused:?}");
    // Eligibility materialized from the member and plan topics answers the first requests.
    let answers: Vec<&str> = stdout.lines().filter(|l| l.trim_start().starts_with("ER")).collect();
    assert!(!answers.is_empty() && answers.iter().all(|a| a.contains(" for ")), "{stdout}");
    assert!(answers.iter().any(|a| a.contains("ACTIVE under")), "{stdout}");
    // No NIK (16 digits in a row) and no e-mail address is ever printed.
    let digits_run = stdout.as_bytes().windows(16).any(|w| w.iter().all(u8::is_ascii_digit));
    assert!(!digits_run && !stdout.contains("@example.com"), "demo printed personal data:\n{stdout}");
}

#[test]
fn a_reader_that_is_gone_does_not_make_arus_panic() {
    // stdout is a pipe whose reading end is already closed: the first write fails with EPIPE,
    // as it does for `arus topics | head -1` once head has exited.
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_arus"))
        .arg("topics")
        .stdout(std::process::Stdio::from(writer))
        .output()
        .expect("arus runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {:?}: {stderr}", output.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn demo_serves_its_eligibility_answers_over_rest() {
    use std::io::{BufRead, Read, Write};
    let log_dir = tempfile::tempdir().expect("a folder");
    let mut demo = std::process::Command::new(env!("CARGO_BIN_EXE_arus"))
        .args(["demo", "--claims", "600", "--days", "10", "--serve", "127.0.0.1:0", "--log-dir"])
        .arg(log_dir.path().join("log"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("arus demo starts");
    let stdout = demo.stdout.take().expect("stdout");
    let _demo = common::KillOnDrop(Some(demo));
    // The demo prints development tokens and curl lines once it listens, then where every
    // route is.
    let lines: Vec<String> = std::io::BufReader::new(stdout)
        .lines()
        .map(|l| l.expect("a line"))
        .take_while(|l| !l.contains("the jobs page:"))
        .collect();
    let tokens: std::collections::HashMap<String, String> = lines
        .iter()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|l| l.split_whitespace().next()?.split_once('='))
        .map(|(name, token)| (format!("${name}"), token.to_owned()))
        .collect();
    assert_eq!(tokens.len(), 2, "a member's and an internal token: {lines:?}");
    // Each example: its token (when it names one) and its URL.
    let urls: Vec<(Option<String>, String)> = lines
        .iter()
        .filter_map(|l| l.trim().strip_prefix("curl "))
        .map(|l| {
            let token = l.strip_prefix("-H \"Authorization: Bearer ").and_then(|t| t.split('"').next());
            let url = l.rsplit('\'').nth(1).expect("a quoted URL").to_owned();
            (token.map(|t| tokens[t].clone()), url)
        })
        .collect();
    assert_eq!(urls.len(), 3, "an eligibility, a claim and an accumulators example: {lines:?}");
    let get = |(token, url): &(Option<String>, String)| {
        let rest = url.strip_prefix("http://").expect("http");
        let (host, path) = rest.split_at(rest.find('/').expect("a path"));
        let mut stream = std::net::TcpStream::connect(host).expect("connect");
        let auth = token.as_ref().map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: arus\r\n{auth}Connection: close\r\n\r\n").expect("request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("response");
        response
    };
    assert!(urls[0].0.is_none() && urls[1].0.is_some() && urls[2].0.is_some(), "{urls:?}");
    // Without its token, a claim is not shown.
    let anonymous = get(&(None, urls[1].1.clone()));
    assert!(anonymous.starts_with("HTTP/1.1 401"), "{anonymous}");
    let eligibility = get(&urls[0]);
    assert!(eligibility.starts_with("HTTP/1.1 200"), "{eligibility}");
    assert!(eligibility.contains("\"status\":\"ACTIVE\"") && eligibility.contains("\"links\""), "{eligibility}");
    let claim = get(&urls[1]);
    assert!(claim.starts_with("HTTP/1.1 200") && claim.contains("\"explanation\""), "{claim}");
    let accumulators = get(&urls[2]);
    assert!(
        accumulators.starts_with("HTTP/1.1 200") && accumulators.contains("\"deductibleMetIdr\""),
        "{accumulators}"
    );
    // The demo's jobs, run through its controller, as `arus job list` shows them.
    let controller = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("arus job list --controller "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no controller address: {lines:?}"));
    let list = |token: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_arus"));
        command.args(["job", "list", "--output", "json", "--controller", controller]).env_remove("ARUS_TOKEN");
        if let Some(token) = token {
            command.env("ARUS_TOKEN", token);
        }
        command.output().expect("arus runs")
    };
    let listed = list(Some(&tokens["$INTERNAL_TOKEN"]));
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let jobs: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    let mut names: Vec<(&str, &str)> = jobs
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| (j["name"].as_str().unwrap_or(""), j["state"].as_str().unwrap_or("")))
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            ("adjudication", "finished"),
            ("eligibility", "finished"),
            ("fraud", "finished"),
            ("provider-windows", "finished")
        ]
    );
    // A member's token is not an admin's.
    let refused = list(Some(&tokens["$MEMBER_TOKEN"]));
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("403"));
}
