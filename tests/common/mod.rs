//! Claims for the end-to-end tests, and the windows they should give, computed directly.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Claims with event times moving forward and jittering back by up to ten minutes (well
/// within the pipeline's one-day out-of-orderness), amounts with 0–2 decimals.
pub fn claims(n: u64) -> Vec<(String, String, String, String, u64)> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    let mut clock = 1_767_225_600u64;
    (0..n)
        .map(|i| {
            clock += next(20);
            let ts = clock - next(600);
            let amount = match next(3) {
                0 => format!("{}", next(2_000_000)),
                1 => format!("{}.{}", next(2_000_000), next(10)),
                _ => format!("{}.{:02}", next(2_000_000), next(100)),
            };
            (format!("C{i}"), format!("M{}", next(50)), format!("P{}", next(12)), amount, ts)
        })
        .collect()
}

pub fn write_claims(path: &Path, claims: &[(String, String, String, String, u64)], extra: &str) {
    let mut text = String::new();
    for (c, m, p, a, ts) in claims {
        text.push_str(&format!(
            "{{\"claim_id\":\"{c}\",\"member_id\":\"{m}\",\"provider_id\":\"{p}\",\"billed_amount\":{a},\"service_ts\":{ts}}}\n"
        ));
    }
    text.push_str(extra);
    std::fs::write(path, text).expect("write claims");
}

pub fn cents(amount: &str) -> i64 {
    let (whole, frac) = amount.split_once('.').unwrap_or((amount, ""));
    whole.parse::<i64>().expect("whole") * 100 + format!("{frac:0<2}").parse::<i64>().expect("fraction")
}

/// The expected CSV, computed directly: group by (window start, provider).
pub fn expected_csv(claims: &[(String, String, String, String, u64)]) -> String {
    let mut windows: BTreeMap<(u64, String), (u64, i64, BTreeSet<String>)> = BTreeMap::new();
    for (_, member, provider, amount, ts) in claims {
        let w = windows.entry((ts - ts % 300, provider.clone())).or_default();
        w.0 += 1;
        w.1 += cents(amount);
        w.2.insert(member.clone());
    }
    let mut csv = "provider_id,window_start,count,sum_billed,distinct_members\n".to_owned();
    for ((start, provider), (count, sum, members)) in windows {
        csv.push_str(&format!("{provider},{start},{count},{}.{:02},{}\n", sum / 100, sum % 100, members.len()));
    }
    csv
}

/// One claim as a JSON line (no newline).
pub fn claim_line((c, m, p, a, ts): &(String, String, String, String, u64)) -> String {
    format!(
        "{{\"claim_id\":\"{c}\",\"member_id\":\"{m}\",\"provider_id\":\"{p}\",\"billed_amount\":{a},\"service_ts\":{ts}}}"
    )
}

/// A topic of its own on the broker of `KAFKA_BROKERS`, deleted with its `.dlq` when dropped;
/// `None` (the test then skips, saying so) when no broker is configured and none is required.
pub struct TestTopic {
    pub brokers: String,
    pub config: arus_connectors::kafka::KafkaConfig,
    pub name: String,
    producer: arus_connectors::kafka::KafkaSink,
}

impl TestTopic {
    pub fn new(prefix: &str, partitions: u32) -> Option<Self> {
        use arus_connectors::kafka::{KafkaConfig, KafkaSink, create_topics};
        let brokers = arus_connectors::service_address("KAFKA_BROKERS")?;
        let config = KafkaConfig::new(brokers.clone());
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let name = format!("arus-test-{prefix}-{}-{nanos}", std::process::id());
        create_topics(&config, &[(&name, partitions)]).expect("create topic");
        let producer = KafkaSink::new(&config, "lz4").expect("producer");
        Some(TestTopic { brokers, config, name, producer })
    }

    /// Sends `(key, value, timestamp ms)` records and waits until they are delivered.
    pub fn send<'a>(&self, records: impl IntoIterator<Item = (&'a [u8], &'a [u8], i64)>) {
        for (key, value, timestamp) in records {
            self.producer.send(&self.name, key, value, timestamp).expect("send");
        }
        self.producer.flush(std::time::Duration::from_secs(60)).expect("delivered");
    }

    /// Sends claims as claim lines keyed by provider.
    pub fn send_claims(&self, claims: &[(String, String, String, String, u64)]) {
        let lines: Vec<String> = claims.iter().map(claim_line).collect();
        self.send(claims.iter().zip(&lines).map(|(c, l)| (c.2.as_bytes(), l.as_bytes(), 0)));
    }
}

impl Drop for TestTopic {
    fn drop(&mut self) {
        let dlq = format!("{}.dlq", self.name);
        let _ = arus_connectors::kafka::delete_topics(&self.config, &[&self.name, &dlq]);
    }
}

/// A child process killed when the test ends, however it ends.
pub struct KillOnDrop(pub Option<std::process::Child>);

impl KillOnDrop {
    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A tiny xorshift, seeded from the clock: kill points differ from run to run (the seed is
/// printed, to replay a failure).
pub struct Dice(u64);

impl Dice {
    pub fn new() -> Self {
        let seed = std::env::var("ARUS_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1
        });
        eprintln!("kill points from ARUS_KILL_SEED={seed}");
        Dice(seed)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Generated traffic written to an embedded log persisted in `dir` (every topic created).
pub fn generated_log(dir: &Path, settings: &arus_generator::GeneratorConfig) {
    use arus_schemas::wire;
    let log = arus_connectors::embedded::EmbeddedLog::open(dir).expect("a log");
    log.create_all_topics().expect("topics");
    arus_generator::generate(settings, |output| -> Result<(), String> {
        if let arus_generator::Output::Event(event) = output {
            let bytes = wire::encode(&event).map_err(|e| e.to_string())?;
            log.produce(&event.topic(), Some(event.key().as_bytes()), bytes, event.event_time())
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
    .expect("generate");
    log.flush().expect("flush");
}

/// Topics `<label>-<pid>-<nanos>.<name>` created on the broker with `partitions` each: the
/// prefix, and the topics (in `names`' order, deleted when dropped).
pub fn broker_topics<'a>(
    config: &'a arus_connectors::kafka::KafkaConfig,
    label: &str,
    names: &[&str],
    partitions: u32,
) -> (String, DropTopics<'a>) {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let prefix = format!("{label}-{}-{nanos}.", std::process::id());
    let topics: Vec<String> = names.iter().map(|t| format!("{prefix}{t}")).collect();
    let specs: Vec<(&str, u32)> = topics.iter().map(|t| (t.as_str(), partitions)).collect();
    arus_connectors::kafka::create_topics(config, &specs).expect("topics");
    (prefix, DropTopics(config, topics))
}

/// Topics deleted from the broker when dropped.
pub struct DropTopics<'a>(pub &'a arus_connectors::kafka::KafkaConfig, pub Vec<String>);

impl Drop for DropTopics<'_> {
    fn drop(&mut self) {
        let names: Vec<&str> = self.1.iter().map(String::as_str).collect();
        let _ = arus_connectors::kafka::delete_topics(self.0, &names);
    }
}

/// Files' bytes in `dir` (a topic of an embedded log: its segments), to follow a run's progress.
pub fn size_of(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| entries.flatten().map(|e| e.metadata().map_or(0, |m| m.len())).sum())
}

/// The epoch of the newest snapshot a job has written in `dir` (0: none yet).
pub fn newest_snapshot(dir: &Path) -> u64 {
    let epochs = std::fs::read_dir(dir).into_iter().flatten().flatten().filter_map(|entry| {
        let name = entry.file_name().into_string().ok()?;
        name.strip_prefix("snapshot-")?.strip_suffix(".arus")?.parse().ok()
    });
    epochs.max().unwrap_or(0)
}

/// Starts `command()` `attempts` times, each killed with SIGKILL at a random moment within
/// `longest`: of its start (every other run: the moments fall anywhere, starting, loading a
/// snapshot, reading), or of its first new snapshot in `snapshots` (the others: so that the
/// runs get on through the input between the faults, and some die writing the next). Each run
/// goes on from where the last stopped: the job's own recovery. Runs are started until
/// `attempts` kills have landed while one ran (a run may finish first), at most four times as
/// many: how many landed.
pub fn kill_at_random_moments(
    attempts: usize,
    longest: std::time::Duration,
    snapshots: &Path,
    mut command: impl FnMut() -> std::process::Command,
) -> usize {
    use std::process::Stdio;
    let mut dice = Dice::new();
    let mut killed = 0;
    for attempt in 0..attempts * 4 {
        if killed == attempts {
            break;
        }
        let at = std::time::Duration::from_micros(1 + dice.below(longest.as_micros() as u64));
        let before = newest_snapshot(snapshots);
        let mut child = command().stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("arus starts");
        let mut from = (attempt % 2 == 0).then(std::time::Instant::now);
        loop {
            if child.try_wait().expect("status").is_some() {
                break;
            }
            if from.is_none() && newest_snapshot(snapshots) > before {
                from = Some(std::time::Instant::now());
            }
            if from.is_some_and(|from| from.elapsed() >= at) {
                child.kill().expect("SIGKILL");
                child.wait().expect("reaped");
                killed += 1;
                break;
            }
            // Waiting for the moment of the fault (or the run's end, whichever comes first).
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    killed
}

/// A free TCP port on 127.0.0.1 (bound, then let go).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("port").port()
}

/// Waits (a bounded poll) until something accepts connections on `port`.
fn listening(port: u16, what: &str) {
    for _ in 0..1_000 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{what} on {port} did not listen within 10 s");
}

/// A server the test started, killed (SIGKILL) and reaped, if running.
fn stop(server: &mut Option<std::process::Child>) {
    if let Some(mut server) = server.take() {
        let _ = server.kill();
        let _ = server.wait();
    }
}

/// A Kafka-protocol broker of the test's own whose log survives its restart: Tansu (`TANSU`,
/// built by `deploy/local/kafka.sh`) on a free port, keeping its log in a fresh database of
/// the local PostgreSQL (its schema: `deploy/local/tansu-0.6.0-postgres.sql`), dropped with it.
pub struct DurableBroker {
    pub port: u16,
    database: String,
    tansu: String,
    dir: tempfile::TempDir,
    server: Option<std::process::Child>,
}

impl DurableBroker {
    /// Started; `None` where `TANSU` is not set (a failure with `ARUS_REQUIRE_SERVICES`).
    pub fn start(label: &str) -> Option<Self> {
        let tansu = arus_connectors::service_address("TANSU")?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let database = format!("arus_test_{label}_{}_{nanos}", std::process::id());
        let psql = |args: &[&str]| {
            let status = std::process::Command::new("psql")
                .args(["-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres"])
                .args(args)
                .stdout(std::process::Stdio::null())
                .status()
                .expect("psql runs");
            assert!(status.success(), "psql {args:?}");
        };
        psql(&["-c", &format!("create database {database}")]);
        let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/local/tansu-0.6.0-postgres.sql");
        psql(&["-d", &database, "-f", schema]);
        let dir = tempfile::tempdir().expect("a folder");
        let mut broker = DurableBroker { port: free_port(), database, tansu, dir, server: None };
        broker.run();
        Some(broker)
    }

    fn run(&mut self) {
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let storage = format!("postgres://postgres@127.0.0.1/{}?sslmode=disable", self.database);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("tansu.log"));
        let server = std::process::Command::new(&self.tansu)
            .args(["broker", "--listener-url", &listener, "--advertised-listener-url", &listener])
            .args(["--storage-engine", &storage])
            .current_dir(self.dir.path()) // (Tansu reads a .env file where it runs)
            .stdout(std::process::Stdio::null())
            .stderr(log.expect("a log file"))
            .spawn()
            .expect("tansu starts");
        self.server = Some(server);
        listening(self.port, "Tansu");
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Killed (SIGKILL) and started again on the same port and database.
    pub fn restart(&mut self) {
        stop(&mut self.server);
        self.run();
    }
}

impl Drop for DurableBroker {
    fn drop(&mut self) {
        stop(&mut self.server);
        let _ = std::process::Command::new("psql")
            .args([
                "-q",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-c",
                &format!("drop database if exists {}", self.database),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// A Redis of the test's own on a free port, persisting every write before answering it
/// (`appendfsync always`), so that it can be killed and started again with nothing lost.
pub struct OwnRedis {
    pub port: u16,
    dir: tempfile::TempDir,
    server: Option<std::process::Child>,
}

impl OwnRedis {
    pub fn start() -> Self {
        let mut redis = OwnRedis { port: free_port(), dir: tempfile::tempdir().expect("a folder"), server: None };
        redis.run();
        redis
    }

    fn run(&mut self) {
        let server = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.server = Some(server);
        listening(self.port, "redis-server");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Killed (SIGKILL) and started again on the same port and files.
    pub fn restart(&mut self) {
        stop(&mut self.server);
        self.run();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        stop(&mut self.server);
    }
}

/// Every key under `prefix` in the Redis at `url` (the prefix cut off) with its version and
/// value (the store's hashes).
pub fn redis_contents(url: &str, prefix: &str) -> BTreeMap<String, (Option<u64>, Option<Vec<u8>>)> {
    let mut connection = redis::Client::open(url).and_then(|c| c.get_connection()).expect("Redis");
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query(&mut connection).expect("KEYS");
    keys.into_iter()
        .map(|key| {
            let value = redis::cmd("HMGET").arg(&key).arg("v").arg("d").query(&mut connection).expect("HMGET");
            (key[prefix.len()..].to_owned(), value)
        })
        .collect()
}

/// Deletes every key under `prefix` in the Redis at `url`.
pub fn redis_forget(url: &str, prefix: &str) {
    let mut connection = redis::Client::open(url).and_then(|c| c.get_connection()).expect("Redis");
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query(&mut connection).expect("KEYS");
    for chunk in keys.chunks(1_000) {
        let _: () = redis::cmd("DEL").arg(chunk).query(&mut connection).expect("DEL");
    }
}

/// The events of generated traffic with `claims` claims over 60 days (the default seed).
pub fn generated_events(claims: u64) -> Vec<arus_schemas::Event> {
    generated_events_with(&arus_generator::GeneratorConfig { claims, days: 60, ..Default::default() })
}

/// The events of traffic generated with `settings`.
pub fn generated_events_with(settings: &arus_generator::GeneratorConfig) -> Vec<arus_schemas::Event> {
    let mut events = Vec::new();
    arus_generator::generate(settings, |output| -> Result<(), String> {
        if let arus_generator::Output::Event(event) = output {
            events.push(event);
        }
        Ok(())
    })
    .expect("generate");
    events
}

/// `events` produced to the topics of `topics` (their names under `prefix`) that are there,
/// delivered.
pub fn produce_to(
    producer: &arus_connectors::kafka::KafkaSink,
    prefix: &str,
    topics: &[String],
    events: &[arus_schemas::Event],
) {
    for event in events {
        let topic = format!("{prefix}{}", event.topic());
        if !topics.contains(&topic) {
            continue;
        }
        let bytes = arus_schemas::wire::encode(event).expect("encode");
        producer.send(&topic, event.key().as_bytes(), &bytes, event.event_time().0).expect("send");
    }
    producer.flush(std::time::Duration::from_secs(60)).expect("delivered");
}

/// How many times each claim was decided on `topic` (two partitions) of the broker.
pub fn decisions_per_claim(config: &arus_connectors::kafka::KafkaConfig, topic: &str) -> BTreeMap<String, u32> {
    let from: Vec<(u32, Option<u64>)> = (0..2).map(|p| (p, None)).collect();
    let mut reader =
        arus_connectors::kafka::BoundedPartitionReader::open(config, "check", topic, &from, 100).expect("read back");
    let mut decided = BTreeMap::new();
    while let Some(record) = reader.next_record().expect("read") {
        if let Ok(arus_schemas::Event::ClaimAdjudicated(a)) = arus_schemas::wire::decode(&record.value) {
            *decided.entry(a.claim_id).or_insert(0u32) += 1;
        }
    }
    decided
}

/// The topics the adjudication job's broker tests create: what the job reads, and where its
/// updates go.
pub const ADJUDICATION_TOPICS: [&str; 7] = [
    "member.events",
    "benefit.events",
    "provider.events",
    "auth.events",
    "claims.events",
    "payment.events",
    "accumulator.updates",
];
