//! The eligibility job end to end against the real broker and Redis: the generator's member and
//! plan events produced to Kafka, `arus run pipelines/eligibility.toml` materializing them into
//! Redis, and answers read back from Redis for every generated claim; then a termination
//! produced to Kafka changes the answer, and a subscriber's plan change moves a dependent.

mod common;

use std::process::Command;

use arus_connectors::kafka::{KafkaConfig, KafkaSink, create_topics};
use arus_connectors::store::RedisStore;
use arus_generator::{FraudPattern, GeneratorConfig, Output, generate};
use arus_jobs::eligibility::EligibilityState;
use arus_schemas::events::{CoverageChangeType, CoverageChanged, EligibilityStatus};
use arus_schemas::{Event, Timestamp, wire};

use common::DropTopics as Topics;

#[test]
fn eligibility_from_kafka_into_redis_answers_every_generated_claim() {
    let (Some(brokers), Some(redis)) =
        (arus_connectors::service_address("KAFKA_BROKERS"), arus_connectors::service_address("REDIS_URL"))
    else {
        return;
    };
    let config = KafkaConfig::new(brokers.clone());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let prefix = format!("arus-test-elig-{}-{nanos}.", std::process::id());
    let (members, benefits) = (format!("{prefix}member.events"), format!("{prefix}benefit.events"));
    let (requests, responses) = (format!("{prefix}eligibility.requests"), format!("{prefix}eligibility.responses"));
    create_topics(&config, &[(&members, 3), (&benefits, 1), (&requests, 2)]).expect("create topics");
    let _topics = Topics(&config, vec![members.clone(), benefits.clone(), requests.clone(), responses.clone()]);
    let mut request_count = 0u64;

    let producer = KafkaSink::new(&config, "lz4").expect("producer");
    let mut claims = Vec::new();
    let mut local = EligibilityState::new();
    let mut deaths = std::collections::HashMap::new();
    let mut phantom = std::collections::BTreeSet::new();
    let (mut subscribers, mut plan_years) = (std::collections::HashMap::new(), std::collections::BTreeMap::new());
    let settings = GeneratorConfig { claims: 1_500, days: 60, ..GeneratorConfig::default() };
    generate(&settings, |output| -> Result<(), String> {
        match output {
            Output::Event(Event::ClaimSubmitted(claim)) => claims.push(claim),
            Output::Event(event) => {
                match &event {
                    Event::MemberCreated(m) => {
                        subscribers.insert(m.member_id.clone(), m.subscriber_id.clone());
                    }
                    Event::PlanCreated(p) => {
                        plan_years.insert(p.plan_id.clone(), p.plan_year);
                    }
                    _ => {}
                }
                if let Event::MemberUpdated(update) = &event
                    && let Some(died) = update.date_of_death
                {
                    deaths.insert(update.member_id.clone(), died);
                }
                local.apply(&event);
                let topic = match event.topic().as_ref() {
                    "member.events" => &members,
                    "benefit.events" => &benefits,
                    "eligibility.requests" => {
                        request_count += 1;
                        &requests
                    }
                    _ => return Ok(()),
                };
                let bytes = wire::encode(&event).map_err(|e| e.to_string())?;
                producer
                    .send(topic, event.key().as_bytes(), &bytes, event.event_time().0)
                    .map_err(|e| e.to_string())?;
            }
            Output::Label(label) if label.pattern == FraudPattern::PhantomBilling => {
                phantom.insert(label.claim_id);
            }
            Output::Label(_) => {}
        }
        Ok(())
    })
    .expect("generate and produce");
    producer.flush(std::time::Duration::from_secs(60)).expect("delivered");

    let store_prefix = format!("{prefix}store:");
    let run_job = || {
        let run = Command::new(env!("CARGO_BIN_EXE_arus"))
            .args(["run", &format!("{}/pipelines/eligibility.toml", env!("CARGO_MANIFEST_DIR")), "--workers", "2"])
            .args(["--set", &format!("source.brokers={brokers}")])
            .args(["--set", &format!("source.topic_prefix={prefix}")])
            .args(["--set", &format!("store.url={redis}")])
            .args(["--set", &format!("store.prefix={store_prefix}")])
            .args(["--set", "answer_requests=true"])
            .output()
            .expect("arus runs");
        let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
        assert!(run.status.success(), "the eligibility job failed: {stderr}");
        stderr
    };
    let stderr = run_job();
    assert!(stderr.contains("into the Redis store"), "{stderr}");

    assert!(stderr.replace(',', "").contains(&format!("{request_count} requests answered")), "{stderr}");
    let store = RedisStore::connect(&redis, &store_prefix).expect("redis");
    // Every request answered on the bus, as the store answers it.
    let mut reader = arus_connectors::kafka::BoundedPartitionReader::open(
        &config,
        "check",
        &responses,
        &[(0, None), (1, None)],
        100,
    )
    .expect("read the responses");
    let mut answered = 0u64;
    while let Some(record) = reader.next_record().expect("read") {
        let Event::EligibilityResponded(response) = wire::decode(&record.value).expect("a response") else {
            panic!("not a response")
        };
        let expected =
            arus_connectors::store::read::eligibility(&store, &response.member_id, response.service_date, "99213")
                .expect("read Redis");
        assert_eq!(response.status, expected.status, "{response:?}");
        assert_eq!(response.plan_id, expected.plan_id, "{response:?}");
        answered += 1;
    }
    assert_eq!(answered, request_count);
    assert!(request_count > 100);
    let answer = |member: &str, date| {
        arus_connectors::store::read::eligibility(&store, member, date, "99213").expect("read Redis")
    };
    let mut wrong = Vec::new();
    for claim in &claims {
        let covered = answer(&claim.member_id, claim.service_date).status == EligibilityStatus::ACTIVE;
        // Not covered: the phantom billing injected after terminations and deaths, and the few
        // claims the generator makes for days after a death (deaths are recorded, back-dated,
        // some days after they happen; such claims are not labelled).
        let after_death = deaths.get(&claim.member_id).is_some_and(|died| *died < claim.service_date);
        if covered == (phantom.contains(&claim.claim_id) || after_death) {
            let here = local.answer(&claim.member_id, claim.service_date, "99213");
            wrong.push(format!(
                "{} {} on {}: from Redis {:?}, in process {:?}",
                claim.claim_id,
                claim.member_id,
                claim.service_date,
                answer(&claim.member_id, claim.service_date),
                here
            ));
        }
    }
    assert!(claims.len() > 1_000 && !phantom.is_empty());
    assert!(
        wrong.is_empty(),
        "{} of {} claims judged wrongly from Redis: {:?}",
        wrong.len(),
        claims.len(),
        &wrong[..wrong.len().min(5)]
    );

    // The gateway over the same Redis, accepting the OpenID provider's tokens (the
    // eligibility check is public: asked here without one).
    let Some(issuer) = arus_connectors::service_address("OIDC_ISSUER") else { return };
    let mut gateway = Command::new(env!("CARGO_BIN_EXE_arus"))
        .args(["gateway", "--addr", "127.0.0.1:0", "--redis", &redis, "--prefix", &store_prefix])
        .args(["--issuer", &issuer])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("arus gateway starts");
    let mut banner = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(gateway.stderr.take().expect("stderr")), &mut banner)
        .expect("the gateway says where it listens");
    let _gateway = common::KillOnDrop(Some(gateway));
    let address = banner
        .split("http://")
        .nth(1)
        .and_then(|r| r.split(':').nth(1))
        .and_then(|p| p.split(|c: char| !c.is_ascii_digit()).next())
        .expect("a port");
    let http_get = |path: &str| -> (u16, serde_json::Value) {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(format!("127.0.0.1:{address}")).expect("connect");
        write!(stream, "GET {path} HTTP/1.1\r\nHost: arus\r\nConnection: close\r\n\r\n").expect("request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("response");
        let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status");
        (status, serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap_or("")).unwrap_or_default())
    };

    // A termination produced to Kafka: after the job runs again, the member is ineligible.
    let claim = claims.iter().find(|c| !phantom.contains(&c.claim_id)).expect("a covered claim");
    assert_eq!(answer(&claim.member_id, claim.service_date).status, EligibilityStatus::ACTIVE);
    let path = format!(
        "/api/v1/eligibility?memberId={}&serviceDate={}&serviceType=99213",
        claim.member_id, claim.service_date
    );
    let (status, body) = http_get(&path);
    assert_eq!((status, body["data"]["status"].as_str()), (200, Some("ACTIVE")), "{body}");
    let subscriber = claim.member_id.clone();
    let termination = Event::CoverageChanged(CoverageChanged {
        event_id: format!("{prefix}termination"),
        event_time: Timestamp(claim.event_time.0 + 1),
        member_id: claim.member_id.clone(),
        family_id: "unknown".to_owned(),
        subscriber_id: subscriber,
        change_type: CoverageChangeType::TERMINATED,
        plan_id: "any".to_owned(),
        effective_date: claim.service_date,
        end_date: None,
        reason: Some("VOLUNTARY".to_owned()),
    });
    let bytes = wire::encode(&termination).expect("encode");
    producer.send(&members, termination.key().as_bytes(), &bytes, 0).expect("send");
    // And a plan change of another family's subscriber: a dependent follows it.
    let dependent = claims
        .iter()
        .find(|c| {
            let subscriber = &subscribers[&c.member_id];
            *subscriber != c.member_id
                && *subscriber != subscribers[&claim.member_id]
                && answer(&c.member_id, c.service_date).status == EligibilityStatus::ACTIVE
        })
        .expect("a covered dependent");
    let before = answer(&dependent.member_id, dependent.service_date);
    let current = before.plan_id.clone().expect("a plan");
    let other = plan_years
        .iter()
        .find(|(plan, year)| **plan != current && **year == plan_years[&current])
        .map(|(plan, _)| plan.clone())
        .expect("another plan of the same year");
    let subscriber = subscribers[&dependent.member_id].clone();
    let plan_change = Event::CoverageChanged(CoverageChanged {
        event_id: format!("{prefix}plan-change"),
        event_time: Timestamp(dependent.event_time.0 + 1),
        member_id: subscriber.clone(),
        family_id: "unknown".to_owned(),
        subscriber_id: subscriber,
        change_type: CoverageChangeType::PLAN_CHANGED,
        plan_id: other.clone(),
        effective_date: dependent.service_date,
        end_date: None,
        reason: Some("PLAN_CHANGE".to_owned()),
    });
    let bytes = wire::encode(&plan_change).expect("encode");
    producer.send(&members, plan_change.key().as_bytes(), &bytes, 0).expect("send");
    producer.flush(std::time::Duration::from_secs(60)).expect("delivered");
    run_job();
    let after = answer(&dependent.member_id, dependent.service_date);
    assert_eq!(
        (after.status, after.plan_id.as_deref()),
        (EligibilityStatus::ACTIVE, Some(other.as_str())),
        "{after:?}"
    );
    let (status, body) = http_get(&format!(
        "/api/v1/eligibility?memberId={}&serviceDate={}&serviceType=99213",
        dependent.member_id, dependent.service_date
    ));
    assert_eq!((status, body["data"]["planId"].as_str()), (200, Some(other.as_str())), "{body}");
    let day_before = answer(&dependent.member_id, dependent.service_date.add_days(-1));
    if day_before.status == EligibilityStatus::ACTIVE {
        assert_eq!(day_before.plan_id, before.plan_id, "the change applies from its effective date");
    }
    let after = answer(&claim.member_id, claim.service_date);
    assert_eq!((after.eligible, after.status), (false, EligibilityStatus::TERMINATED), "{after:?}");
    let (status, body) = http_get(&path);
    assert_eq!(
        (status, body["data"]["eligible"].as_bool()),
        (200, Some(false)),
        "the gateway's answer changed: {body}"
    );
    assert_eq!(http_get("/api/v1/eligibility?memberId=nobody&serviceDate=2026-01-01&serviceType=99213").0, 404);
}

/// Produces `events` (wire format) to their topics under `prefix`.
fn produce(producer: &KafkaSink, prefix: &str, events: &[Event]) {
    for event in events {
        let bytes = wire::encode(event).expect("encode");
        let topic = format!("{prefix}{}", event.topic());
        producer.send(&topic, event.key().as_bytes(), &bytes, event.event_time().0).expect("send");
    }
    producer.flush(std::time::Duration::from_secs(60)).expect("delivered");
}

#[test]
fn following_the_job_answers_requests_as_they_come() {
    let (Some(brokers), Some(redis)) =
        (arus_connectors::service_address("KAFKA_BROKERS"), arus_connectors::service_address("REDIS_URL"))
    else {
        return;
    };
    let config = KafkaConfig::new(brokers.clone());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let prefix = format!("arus-test-follow-{}-{nanos}.", std::process::id());
    let names = ["member.events", "benefit.events", "eligibility.requests", "eligibility.responses"]
        .map(|topic| format!("{prefix}{topic}"));
    create_topics(&config, &[(&names[0], 2), (&names[1], 1), (&names[2], 1), (&names[3], 1)]).expect("topics");
    let _topics = Topics(&config, names.to_vec());

    // A small population, and the covered (member, date) of two claims of different members.
    let producer = KafkaSink::new(&config, "lz4").expect("producer");
    let (mut population, mut local, mut claims) = (Vec::new(), EligibilityState::new(), Vec::new());
    let settings = GeneratorConfig { claims: 200, days: 30, ..GeneratorConfig::default() };
    generate(&settings, |output| -> Result<(), String> {
        match output {
            Output::Event(Event::ClaimSubmitted(claim)) => claims.push((claim.member_id, claim.service_date)),
            Output::Event(event) if matches!(event.topic().as_ref(), "member.events" | "benefit.events") => {
                local.apply(&event);
                population.push(event);
            }
            _ => {}
        }
        Ok(())
    })
    .expect("generate");
    claims.retain(|(member, date)| local.answer(member, *date, "99213").status == EligibilityStatus::ACTIVE);
    let first = claims[0].clone();
    let second = claims.iter().find(|(member, _)| *member != first.0).expect("another member").clone();
    let request = |n: u32, (member_id, service_date): &(String, arus_schemas::Date)| {
        Event::EligibilityRequested(arus_schemas::events::EligibilityRequested {
            event_id: format!("{prefix}request-{n}"),
            event_time: Timestamp(1_800_000_000_000),
            request_id: format!("R{n}"),
            member_id: member_id.clone(),
            service_date: *service_date,
            service_type: "99213".to_owned(),
            provider_id: None,
        })
    };
    population.push(request(1, &first));
    produce(&producer, &prefix, &population);

    let mut job = common::KillOnDrop(Some(
        Command::new(env!("CARGO_BIN_EXE_arus"))
            .args(["run", &format!("{}/pipelines/eligibility.toml", env!("CARGO_MANIFEST_DIR"))])
            .args(["--set", &format!("source.brokers={brokers}")])
            .args(["--set", &format!("source.topic_prefix={prefix}")])
            .args(["--set", "source.follow=true", "--set", "source.idle_timeout=5m"])
            .args(["--set", &format!("store.url={redis}")])
            .args(["--set", &format!("store.prefix={prefix}store:")])
            .args(["--set", "answer_requests=true"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("arus runs"),
    ));
    let mut responses =
        arus_connectors::kafka::BoundedPartitionReader::open(&config, "check", &names[3], &[(0, None)], 10)
            .expect("read the responses")
            .following();
    let mut next_response = || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while std::time::Instant::now() < deadline {
            if let Some(record) = responses.next_available(std::time::Duration::from_millis(200)).expect("read") {
                let Event::EligibilityResponded(response) = wire::decode(&record.value).expect("a response") else {
                    panic!("not a response")
                };
                return response;
            }
        }
        panic!("no response within two minutes");
    };
    let answered = next_response();
    assert_eq!((answered.request_id.as_str(), answered.member_id.as_str()), ("R1", first.0.as_str()));
    assert_eq!(answered.status, EligibilityStatus::ACTIVE, "{answered:?}");

    // A request made after the first answer: a job that answered once and stopped would leave
    // it unanswered.
    produce(&producer, &prefix, &[request(2, &second)]);
    let answered = next_response();
    assert_eq!((answered.request_id.as_str(), answered.member_id.as_str()), ("R2", second.0.as_str()));
    assert_eq!((answered.eligible, answered.status), (true, EligibilityStatus::ACTIVE), "{answered:?}");
    assert!(job.0.as_mut().expect("running").try_wait().expect("status").is_none(), "the job still follows");
    job.kill();
}

/// Killed with SIGKILL at twenty random moments and started again each time, the job taking
/// snapshots (each run killed within a quarter of an uninterrupted run's time, of its start or of
/// its first snapshot): each restart begins from the newest, and Redis ends up holding exactly what one
/// uninterrupted run leaves there.
#[test]
fn killed_and_restarted_from_its_snapshots_the_job_leaves_what_an_uninterrupted_run_does() {
    let Some(url) = arus_connectors::service_address("REDIS_URL") else { return };
    let root = tempfile::tempdir().expect("a folder");
    let log = root.path().join("log");
    common::generated_log(
        &log,
        &GeneratorConfig { claims: 2_000, members: Some(12_000), ..GeneratorConfig::default() },
    );
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let label = format!("arus-test-elig-kill-{}-{nanos}", std::process::id());
    let (reference, recovered) = (format!("{label}-a:"), format!("{label}-b:"));
    let snapshots = root.path().join("snapshots");
    let run = |prefix: &str, snapshots: Option<&std::path::Path>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_arus"));
        command
            .args(["run", concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/eligibility.toml"), "--workers", "2"])
            .args(["--set", &format!("source={{kind=\"embedded\", dir=\"{}\"}}", log.display())])
            .args(["--set", &format!("store={{kind=\"redis\", url=\"{url}\", prefix=\"{prefix}\"}}")]);
        if let Some(dir) = snapshots {
            command.args(["--set", &format!("checkpoint={{dir=\"{}\", interval=\"20ms\"}}", dir.display())]);
        }
        command
    };
    let started = std::time::Instant::now();
    let once = run(&reference, None).output().expect("runs");
    let took = started.elapsed();
    assert!(once.status.success(), "{}", String::from_utf8_lossy(&once.stderr));
    let want = common::redis_contents(&url, &reference);
    assert!(want.len() > 12_000, "{} records", want.len());
    let killed = common::kill_at_random_moments(20, took / 4, &snapshots, || run(&recovered, Some(&snapshots)));
    assert_eq!(killed, 20, "kills that landed while the job ran");
    let last = run(&recovered, Some(&snapshots)).output().expect("runs");
    let stderr = String::from_utf8_lossy(&last.stderr);
    assert!(last.status.success() && stderr.contains("resumed from snapshot"), "{stderr}");
    let got = common::redis_contents(&url, &recovered);
    let differ = want.iter().filter(|(key, value)| got.get(*key) != Some(value)).count();
    assert!(got.len() == want.len() && differ == 0, "{} records, {} wanted, {differ} differ", got.len(), want.len());
    for prefix in [&reference, &recovered] {
        common::redis_forget(&url, prefix);
    }
}
