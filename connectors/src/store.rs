//! Key-value state that jobs materialize and readers (the gateway) look up: Redis, or a map in
//! this process for `arus demo` and tests. Writes are versioned: a value is replaced only by a
//! newer version, so replaying events never moves a key backwards.

use std::collections::HashMap;
use std::sync::Mutex;

/// A store that failed.
#[derive(Debug, thiserror::Error)]
#[error("state store: {0}")]
pub struct StoreError(pub String);

/// A stored value and its version.
pub type Versioned = (u64, Vec<u8>);

impl From<arus_schemas::read_models::ReadModelError> for StoreError {
    fn from(error: arus_schemas::read_models::ReadModelError) -> Self {
        StoreError(format!("{}: not a readable record ({})", error.key, error.reason))
    }
}

/// The read models of the contract ([`arus_schemas::read_models`]) read from a store: one call
/// each (one round trip for a claim's two keys).
pub mod read {
    use arus_schemas::read_models::{self, ClaimView, MemberEligibility};
    use serde::de::DeserializeOwned;

    use super::{StateStore, StoreError};

    /// A member's eligibility record; `None` for a member the store does not know.
    pub fn member_eligibility(
        store: &dyn StateStore,
        member_id: &str,
    ) -> Result<Option<MemberEligibility>, StoreError> {
        let key = read_models::member_eligibility_key(member_id);
        match store.get(&key)? {
            Some((_, bytes)) => Ok(Some(MemberEligibility::from_json(member_id, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Whether a member is covered for `service_type` on `date`: one read of its eligibility
    /// record (an unknown member's answer when there is none).
    pub fn eligibility(
        store: &dyn StateStore,
        member_id: &str,
        date: arus_schemas::Date,
        service_type: &str,
    ) -> Result<read_models::Answer, StoreError> {
        Ok(match member_eligibility(store, member_id)? {
            Some(record) => record.answer(date, service_type),
            None => read_models::Answer::unknown_member(),
        })
    }

    /// A claim's decision and state; `None` when it has not been decided.
    pub fn claim(store: &dyn StateStore, claim_id: &str) -> Result<Option<ClaimView>, StoreError> {
        let mut found = store.get_many(&ClaimView::keys(claim_id))?.into_iter();
        let (decision, state) = (found.next().flatten(), found.next().flatten());
        Ok(ClaimView::from_stored(
            claim_id,
            decision.as_ref().map(|(_, b)| &b[..]),
            state.as_ref().map(|(_, b)| &b[..]),
        )?)
    }

    /// A JSON record (accumulators, an authorization) under `key`; `None` when there is none.
    pub fn json<T: DeserializeOwned>(store: &dyn StateStore, key: &str) -> Result<Option<T>, StoreError> {
        match store.get(key)? {
            Some((_, bytes)) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError(format!("{key}: not a readable record ({e})"))),
            None => Ok(None),
        }
    }
}

/// Versioned key-value state.
pub trait StateStore: Send + Sync {
    /// Writes `value` under `key` if `version` is newer than the version there; whether it
    /// wrote.
    fn put_versioned(&self, key: &str, version: u64, value: &[u8]) -> Result<bool, StoreError>;
    /// The value under `key` and its version.
    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError>;
    /// The values under several keys, in their order (one round trip where the store can).
    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Versioned>>, StoreError> {
        keys.iter().map(|k| self.get(k)).collect()
    }
    /// [`put_versioned`](Self::put_versioned) of several keys, in one round trip where the store
    /// can; for each, whether it wrote.
    fn put_many_versioned(&self, writes: &[(String, u64, Vec<u8>)]) -> Result<Vec<bool>, StoreError> {
        writes.iter().map(|(key, version, value)| self.put_versioned(key, *version, value)).collect()
    }
    /// [`put_versioned`](Self::put_versioned), the key then gone `ttl` after the write (for
    /// what is only worth keeping a while: idempotency answers, say).
    fn put_versioned_expiring(
        &self,
        key: &str,
        version: u64,
        value: &[u8],
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError>;
    /// [`put_many_versioned`](Self::put_many_versioned), sent now and answered when asked: the
    /// caller works while the store does (where it can; by default written at once). Writes
    /// sent after this one is answered come after it.
    fn send_many_versioned(&self, writes: Vec<(String, u64, Vec<u8>)>) -> Sent<'_> {
        let wrote = self.put_many_versioned(&writes);
        Sent(Box::new(move || wrote))
    }
}

/// A batch of writes sent and not yet answered ([`StateStore::send_many_versioned`]).
pub struct Sent<'a>(Box<dyn FnOnce() -> Result<Vec<bool>, StoreError> + 'a>);

impl Sent<'_> {
    /// Waits for the answer: for each write, whether it wrote.
    pub fn answer(self) -> Result<Vec<bool>, StoreError> {
        (self.0)()
    }
}

/// State in this process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: Mutex<HashMap<String, (u64, Vec<u8>)>>,
    /// When expiring keys go.
    expiries: Mutex<HashMap<String, std::time::Instant>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every key with its version and value, in key order (to compare two stores).
    pub fn contents(&self) -> std::collections::BTreeMap<String, Versioned> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(key, value)| (key.clone(), value.clone())).collect()
    }
}

impl StateStore for MemoryStore {
    fn put_versioned(&self, key: &str, version: u64, value: &[u8]) -> Result<bool, StoreError> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(key) {
            Some((have, _)) if *have >= version => Ok(false),
            _ => {
                map.insert(key.to_owned(), (version, value.to_vec()));
                Ok(true)
            }
        }
    }

    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let mut expiries = self.expiries.lock().unwrap_or_else(|e| e.into_inner());
        if expiries.get(key).is_some_and(|at| *at <= std::time::Instant::now()) {
            expiries.remove(key);
            map.remove(key);
        }
        Ok(map.get(key).cloned())
    }

    fn put_versioned_expiring(
        &self,
        key: &str,
        version: u64,
        value: &[u8],
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let _ = self.get(key)?; // an expired key is gone first
        let wrote = self.put_versioned(key, version, value)?;
        if wrote {
            let at = std::time::Instant::now() + ttl;
            self.expiries.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_owned(), at);
        }
        Ok(wrote)
    }
}

/// `url` with any user and password replaced by `***` (`redis://***@host:6379/`), to show.
pub fn without_credentials(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}***{}", &url[..scheme + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

/// State in Redis: each key a hash of its version (`v`) and value (`d`), written by a script
/// that compares versions on the server, so concurrent writers cannot move a key backwards.
///
/// Connections come from a pool (`r2d2`): each has connect, read and write timeouts, one
/// found broken is replaced, and a request that fails on the connection (the server restarted,
/// a network cut, a timeout) is sent again on a fresh one, backing off, for up to
/// [`Resilience::retry_for`] — every request is safe to repeat (a versioned write written
/// twice changes nothing the second time). A server that stays away fails the request then.
#[cfg(feature = "redis")]
pub struct RedisStore {
    /// A few connections, so concurrent readers do not queue on one.
    pool: r2d2::Pool<Connector>,
    /// The versioned write of one key or many in one call (KEYS the keys, ARGV the version and
    /// value of each in turn, then optionally milliseconds to live): a batch makes one call per
    /// [`MANY`] keys instead of one per key.
    script: redis::Script,
    prefix: String,
    /// Requests sent to the server (a pipeline is one).
    round_trips: std::sync::atomic::AtomicU64,
    /// The server, without credentials, for errors.
    shown: String,
    resilience: Resilience,
}

/// How a [`RedisStore`] copes with a server that is slow or away.
#[cfg(feature = "redis")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resilience {
    /// Connecting, and each read or write on a connection, at most this long.
    pub io_timeout: std::time::Duration,
    /// A request failing on its connection is tried again, backing off, for this long.
    pub retry_for: std::time::Duration,
}

#[cfg(feature = "redis")]
impl Default for Resilience {
    /// A 5 s timeout; retries for 30 s (a restarting Redis is back well within it).
    fn default() -> Self {
        Resilience { io_timeout: std::time::Duration::from_secs(5), retry_for: std::time::Duration::from_secs(30) }
    }
}

/// Makes the pool's connections, each with its timeouts.
#[cfg(feature = "redis")]
struct Connector {
    client: redis::Client,
    timeout: std::time::Duration,
}

#[cfg(feature = "redis")]
impl r2d2::ManageConnection for Connector {
    type Connection = redis::Connection;
    type Error = redis::RedisError;

    fn connect(&self) -> Result<redis::Connection, redis::RedisError> {
        let connection = self.client.get_connection_with_timeout(self.timeout)?;
        connection.set_read_timeout(Some(self.timeout))?;
        connection.set_write_timeout(Some(self.timeout))?;
        Ok(connection)
    }

    fn is_valid(&self, connection: &mut redis::Connection) -> Result<(), redis::RedisError> {
        redis::cmd("PING").query::<String>(connection).map(drop)
    }

    fn has_broken(&self, connection: &mut redis::Connection) -> bool {
        !redis::ConnectionLike::is_open(connection)
    }
}

/// Whether a request failed on its connection (another may succeed), not on what it asked.
#[cfg(feature = "redis")]
fn transient(error: &redis::RedisError) -> bool {
    error.is_io_error() || error.is_connection_dropped() || error.is_timeout() || error.is_connection_refusal()
}

/// Connections a store keeps.
#[cfg(feature = "redis")]
const CONNECTIONS: u32 = 4;

/// Keys per script call in a batch write: enough that the call's own cost is spread thin, few
/// enough that one call holds the server for a millisecond or so. (A multi-key script needs its
/// keys on one node: this store is for one Redis, not a cluster.)
#[cfg(feature = "redis")]
const MANY: usize = 512;

#[cfg(feature = "redis")]
impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`), keys prefixed with `prefix`.
    pub fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, prefix, Resilience::default())
    }

    /// [`connect`](Self::connect), with these timeouts and retries.
    pub fn connect_with(url: &str, prefix: &str, resilience: Resilience) -> Result<Self, StoreError> {
        // Errors name the server, never its credentials.
        let shown = without_credentials(url);
        let client = redis::Client::open(url).map_err(|e| StoreError(format!("{shown}: {e}")))?;
        let connector = Connector { client, timeout: resilience.io_timeout };
        // One connection made now: a server that is not there fails here, not at the first write.
        let first = r2d2::ManageConnection::connect(&connector).map_err(|e| StoreError(format!("{shown}: {e}")))?;
        drop(first);
        let pool = r2d2::Pool::builder()
            .max_size(CONNECTIONS)
            .min_idle(Some(1))
            .connection_timeout(resilience.io_timeout)
            // Checked when handed out only by the broken flag (a PING each time would double
            // the round trips); a request failing on one is retried on another.
            .test_on_check_out(false)
            .build(connector)
            .map_err(|e| StoreError(format!("{shown}: {e}")))?;
        let script = redis::Script::new(
            "local ttl = ARGV[2 * #KEYS + 1] \
             local wrote = {} \
             for i, key in ipairs(KEYS) do \
               local v = redis.call('HGET', key, 'v') \
               if v and tonumber(v) >= tonumber(ARGV[2 * i - 1]) then wrote[i] = 0 \
               else \
                 redis.call('HSET', key, 'v', ARGV[2 * i - 1], 'd', ARGV[2 * i]) \
                 if ttl then redis.call('PEXPIRE', key, ttl) end \
                 wrote[i] = 1 \
               end \
             end \
             return wrote",
        );
        Ok(RedisStore { pool, script, prefix: prefix.to_owned(), round_trips: Default::default(), shown, resilience })
    }

    /// Runs `request` on a connection of the pool; where it fails on the connection, again on
    /// another, backing off (50 ms doubling to 2 s), until [`Resilience::retry_for`] has passed.
    fn retrying<T>(
        &self,
        mut request: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let started = std::time::Instant::now();
        let mut wait = std::time::Duration::from_millis(50);
        loop {
            let failed = match self.pool.get() {
                Ok(mut connection) => match request(&mut connection) {
                    Ok(answer) => return Ok(answer),
                    Err(e) if transient(&e) => e.to_string(),
                    Err(e) => return Err(StoreError(e.to_string())),
                },
                Err(e) => e.to_string(),
            };
            if started.elapsed() + wait > self.resilience.retry_for {
                return Err(StoreError(format!(
                    "{}: {failed} (tried again for {:?})",
                    self.shown, self.resilience.retry_for
                )));
            }
            std::thread::sleep(wait); // backing off from a server that is away (not a test's wait)
            wait = (wait * 2).min(std::time::Duration::from_secs(2));
        }
    }

    /// Requests sent to the server so far, a pipeline counting once: what batching saves, for
    /// tests and metrics.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count_round_trip(&self) {
        self.round_trips.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The versioned write, the key then gone `ttl` after it when given.
    fn write(
        &self,
        key: &str,
        version: u64,
        value: &[u8],
        ttl: Option<std::time::Duration>,
    ) -> Result<bool, StoreError> {
        let mut invocation = self.script.key(format!("{}{key}", self.prefix));
        invocation.arg(version).arg(value);
        if let Some(ttl) = ttl {
            invocation.arg(ttl.as_millis() as u64);
        }
        let wrote: Vec<i64> = self.retrying(|connection| {
            self.count_round_trip();
            invocation.invoke(connection)
        })?;
        Ok(wrote == [1])
    }

    /// The versioned writes as script calls of [`MANY`] keys each, by the script's hash.
    fn pipeline(&self, writes: &[(String, u64, Vec<u8>)]) -> redis::Pipeline {
        let hash = self.script.get_hash();
        let mut pipe = redis::Pipeline::with_capacity(writes.len().div_ceil(MANY));
        let mut key = String::new();
        for chunk in writes.chunks(MANY) {
            // Sized once for its arguments (grown from nothing, a call of large values was
            // copied over and over as it doubled).
            let data: usize =
                chunk.iter().map(|(key, _, value)| self.prefix.len() + key.len() + 20 + value.len()).sum();
            let mut call = redis::Cmd::with_capacity(2 + 3 * chunk.len(), hash.len() + 8 + data);
            call.arg("EVALSHA").arg(hash).arg(chunk.len());
            for (k, _, _) in chunk {
                key.clear();
                key.push_str(&self.prefix);
                key.push_str(k);
                call.arg(key.as_str());
            }
            for (_, version, value) in chunk {
                call.arg(*version).arg(value);
            }
            pipe.add_command(call);
        }
        pipe
    }
}

#[cfg(feature = "redis")]
impl StateStore for RedisStore {
    fn put_versioned(&self, key: &str, version: u64, value: &[u8]) -> Result<bool, StoreError> {
        self.write(key, version, value, None)
    }

    fn put_versioned_expiring(
        &self,
        key: &str,
        version: u64,
        value: &[u8],
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        self.write(key, version, value, Some(ttl))
    }

    /// The writes in one round trip: a script call per [`MANY`] keys, by its hash, pipelined
    /// (the script loaded first when the server does not have it — one round trip more, once).
    /// One round trip per key made the adjudication job three times slower end to end, and one
    /// script call per key cost Redis more CPU than the job's decisions (benches/README.md).
    fn put_many_versioned(&self, writes: &[(String, u64, Vec<u8>)]) -> Result<Vec<bool>, StoreError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let pipeline = self.pipeline(writes);
        let wrote: Vec<Vec<i64>> = self.retrying(|connection| {
            self.count_round_trip();
            match pipeline.query(connection) {
                Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                    self.count_round_trip();
                    self.script.prepare_invoke().load(connection)?;
                    self.count_round_trip();
                    pipeline.query(connection)
                }
                answer => answer,
            }
        })?;
        let wrote: Vec<bool> = wrote.into_iter().flatten().map(|w| w == 1).collect();
        if wrote.len() != writes.len() {
            return Err(StoreError(format!("{} writes sent, {} answered", writes.len(), wrote.len())));
        }
        Ok(wrote)
    }

    /// The script calls written to the connection at once and their answers read when asked:
    /// Redis works on them while the caller goes on (the connection stays taken meanwhile).
    fn send_many_versioned(&self, writes: Vec<(String, u64, Vec<u8>)>) -> Sent<'_> {
        if writes.is_empty() {
            return Sent(Box::new(|| Ok(Vec::new())));
        }
        // A connection that cannot be had, or a send that fails: written by the retrying way.
        let Ok(mut connection) = self.pool.get() else {
            return Sent(Box::new(move || self.put_many_versioned(&writes)));
        };
        self.count_round_trip();
        let sent = connection.send_packed_command(&self.pipeline(&writes).get_packed_pipeline());
        Sent(Box::new(move || {
            if sent.is_err() {
                drop(connection);
                return self.put_many_versioned(&writes);
            }
            let mut wrote = Vec::with_capacity(writes.len());
            let (mut no_script, mut failed) = (false, None);
            // Every answer read, even after a refusal: the connection is used again.
            for _ in 0..writes.len().div_ceil(MANY) {
                let answer = connection.recv_response().and_then(|value| value.extract_error());
                match answer {
                    Ok(value) => match <Vec<i64> as redis::FromRedisValue>::from_redis_value(value) {
                        Ok(answers) => wrote.extend(answers.into_iter().map(|w| w == 1)),
                        Err(e) => _ = failed.get_or_insert(e.to_string()),
                    },
                    Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                        no_script = true;
                    }
                    Err(e) if transient(&e) => {
                        // The connection failed mid-answer (the server restarted): all written
                        // again on another (a version written twice changes nothing).
                        drop(connection);
                        return self.put_many_versioned(&writes);
                    }
                    Err(e) => _ = failed.get_or_insert(e.to_string()),
                }
            }
            if let Some(failed) = failed {
                return Err(StoreError(failed));
            }
            if no_script {
                // The server lost the script (restarted, flushed): loaded, and all written again
                // (writing a version again changes nothing).
                drop(connection);
                return self.put_many_versioned(&writes);
            }
            if wrote.len() != writes.len() {
                return Err(StoreError(format!("{} writes sent, {} answered", writes.len(), wrote.len())));
            }
            Ok(wrote)
        }))
    }

    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let mut request = redis::cmd("HMGET");
        request.arg(format!("{}{key}", self.prefix)).arg("v").arg("d");
        let (version, value): (Option<u64>, Option<Vec<u8>>) = self.retrying(|connection| {
            self.count_round_trip();
            request.query(connection)
        })?;
        Ok(version.zip(value))
    }

    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Versioned>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("HMGET").arg(format!("{}{key}", self.prefix)).arg("v").arg("d");
        }
        let rows: Vec<(Option<u64>, Option<Vec<u8>>)> = self.retrying(|connection| {
            self.count_round_trip();
            pipe.query(connection)
        })?;
        Ok(rows.into_iter().map(|(version, value)| version.zip(value)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Redis of the test's own (`redis-server` on a free port, nothing saved), to stop and
    /// start again; `None` where the binary is not installed (required with
    /// `ARUS_REQUIRE_SERVICES`).
    #[cfg(feature = "redis")]
    struct OwnRedis {
        port: u16,
        server: std::process::Child,
    }

    #[cfg(feature = "redis")]
    impl OwnRedis {
        fn start(port: Option<u16>) -> Option<Self> {
            let port = port.unwrap_or_else(|| {
                std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("port").port()
            });
            let server = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn();
            let server = match server {
                Ok(server) => server,
                Err(e) if std::env::var_os("ARUS_REQUIRE_SERVICES").is_some() => panic!("redis-server: {e}"),
                Err(_) => return None,
            };
            // Up once it answers (a bounded wait for the process to listen).
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("url");
            for _ in 0..500 {
                if let Ok(mut c) = client.get_connection()
                    && redis::cmd("PING").query::<String>(&mut c).is_ok()
                {
                    return Some(OwnRedis { port, server });
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            panic!("redis-server on {port} did not answer");
        }

        fn url(&self) -> String {
            format!("redis://127.0.0.1:{}/", self.port)
        }

        /// Killed (SIGKILL: no goodbye to its clients), then gone.
        fn kill(&mut self) {
            self.server.kill().expect("kill");
            self.server.wait().expect("wait");
        }
    }

    #[cfg(feature = "redis")]
    impl Drop for OwnRedis {
        fn drop(&mut self) {
            let _ = self.server.kill();
            let _ = self.server.wait();
        }
    }

    /// Redis killed and started again under a store's feet: the next writes and reads go
    /// through on fresh connections (every pooled one is dead), the batched write in flight
    /// too; a Redis that stays away fails a request once the retries are spent, not never.
    #[cfg(feature = "redis")]
    #[test]
    fn the_redis_store_reconnects_after_a_restart_and_gives_up_on_a_server_that_stays_away() {
        let Some(mut redis) = OwnRedis::start(None) else { return };
        let resilience = Resilience {
            io_timeout: std::time::Duration::from_millis(500),
            retry_for: std::time::Duration::from_secs(20),
        };
        let store = RedisStore::connect_with(&redis.url(), "t:", resilience).expect("connect");
        // Every connection of the pool in use once.
        let writes: Vec<(String, u64, Vec<u8>)> = (0..2_000).map(|i| (format!("k{i}"), 1, b"v".to_vec())).collect();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| store.put_many_versioned(&writes).expect("write"));
            }
        });
        redis.kill();
        let mut redis = OwnRedis::start(Some(redis.port)).expect("started again");
        assert_eq!(store.get("k1").expect("read after the restart"), None, "a new server, empty");
        assert!(store.put_versioned("k1", 2, b"after").expect("write after the restart"));
        let sent = store.send_many_versioned(writes.clone());
        assert_eq!(sent.answer().expect("batched write").len(), writes.len());
        assert_eq!(store.get("k1").expect("read"), Some((2, b"after".to_vec())));
        assert_eq!(store.get("k7").expect("read"), Some((1, b"v".to_vec())));
        // Restarted again, the script lost with it: loaded again where a batch needs it.
        redis.kill();
        let mut redis = OwnRedis::start(Some(redis.port)).expect("started again");
        assert_eq!(store.put_many_versioned(&writes[..3]).expect("write"), vec![true, true, true]);

        let brief = Resilience {
            io_timeout: std::time::Duration::from_millis(200),
            retry_for: std::time::Duration::from_millis(600),
        };
        let impatient = RedisStore::connect_with(&redis.url(), "t:", brief).expect("connect");
        assert_eq!(impatient.get("k1").expect("read"), Some((1, b"v".to_vec())));
        redis.kill();
        let error = impatient.get("k1").expect_err("nobody there");
        assert!(error.0.contains(&redis.port.to_string()), "the server named: {error}");
        assert!(error.0.contains("tried again"), "{error}");
    }

    fn versioned_writes_never_go_back(store: &dyn StateStore) {
        assert!(store.put_versioned("other", 1, b"one").expect("put"));
        assert!(store.get("k").expect("get").is_none());
        assert!(store.put_versioned("k", 2, b"two").expect("put"));
        assert!(!store.put_versioned("k", 1, b"one").expect("put"), "an older version is refused");
        assert!(!store.put_versioned("k", 2, b"again").expect("put"), "the same version too");
        assert_eq!(store.get("k").expect("get"), Some((2, b"two".to_vec())));
        assert!(store.put_versioned("k", 3, b"three").expect("put"));
        assert_eq!(store.get("k").expect("get"), Some((3, b"three".to_vec())));
        let keys = ["k".to_owned(), "missing".to_owned(), "other".to_owned()];
        assert_eq!(
            store.get_many(&keys).expect("get many"),
            vec![Some((3, b"three".to_vec())), None, Some((1, b"one".to_vec()))]
        );
        assert_eq!(store.get_many(&[]).expect("get none"), Vec::new());
        let many = [
            ("m1".to_owned(), 2, b"a".to_vec()),
            ("k".to_owned(), 1, b"old".to_vec()),
            ("m1".to_owned(), 1, b"b".to_vec()),
        ];
        assert_eq!(store.put_many_versioned(&many).expect("put many"), vec![true, false, false]);
        assert_eq!(store.get("m1").expect("get"), Some((2, b"a".to_vec())));
        assert_eq!(store.get("k").expect("get"), Some((3, b"three".to_vec())));

        let hour = std::time::Duration::from_secs(3_600);
        assert!(store.put_versioned_expiring("kept", 1, b"first", hour).expect("put"));
        assert!(!store.put_versioned_expiring("kept", 1, b"second", hour).expect("put"), "kept once");
        assert_eq!(store.get("kept").expect("get"), Some((1, b"first".to_vec())));
        assert!(store.put_versioned_expiring("gone", 1, b"x", std::time::Duration::ZERO).expect("put"));
        assert_eq!(store.get("gone").expect("get"), None, "expired");
        assert!(store.put_versioned_expiring("gone", 1, b"y", hour).expect("put"), "written again once expired");
        assert_eq!(store.get("gone").expect("get"), Some((1, b"y".to_vec())));
    }

    #[test]
    fn memory_store_writes_only_newer_versions() {
        versioned_writes_never_go_back(&MemoryStore::new());
    }

    /// Against the real Redis (`REDIS_URL`; required when `ARUS_REQUIRE_SERVICES` is set).
    #[cfg(feature = "redis")]
    #[test]
    fn redis_store_writes_only_newer_versions() {
        let Some(url) = crate::service_address("REDIS_URL") else { return };
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let store = RedisStore::connect(&url, &format!("arus-test-{}-{nanos}:", std::process::id())).expect("redis");
        versioned_writes_never_go_back(&store);
        // A batch of writes is one round trip (pipelined), not one per key.
        let before = store.round_trips();
        let batch: Vec<(String, u64, Vec<u8>)> = (0..50).map(|i| (format!("many-{i}"), 1, b"x".to_vec())).collect();
        assert_eq!(store.put_many_versioned(&batch).expect("put many"), vec![true; 50]);
        assert_eq!(store.round_trips() - before, 1, "one round trip for 50 writes");
        // Over several script calls, each key's answer in its place: every third is stale.
        let before = store.round_trips();
        let batch: Vec<(String, u64, Vec<u8>)> = (0..1_200)
            .map(|i| {
                (
                    format!("many-{}", i % 60),
                    if i < 60 { 1 } else { 2 + i as u64 - 60 * u64::from(i % 3 == 0) },
                    vec![b'a' + (i % 26) as u8],
                )
            })
            .collect();
        let wrote = store.put_many_versioned(&batch).expect("put many");
        assert_eq!(store.round_trips() - before, 1, "one round trip for 1,200 writes");
        let mut newest: std::collections::HashMap<&str, u64> = Default::default();
        for (i, ((key, version, _), wrote)) in batch.iter().zip(&wrote).enumerate() {
            let held = newest.entry(key.as_str()).or_insert(if i < 50 { 1 } else { 0 });
            assert_eq!(*wrote, *version > *held, "write {i}: {key} at {version} over {held}");
            *held = (*held).max(*version);
        }
        for (key, version) in &newest {
            assert_eq!(store.get(key).expect("get").map(|(v, _)| v), Some(*version), "{key}");
        }
        // A server that lost the script (restarted, flushed) gets it again on a pipelined write.
        let mut admin = redis::Client::open(url.as_str()).and_then(|c| c.get_connection()).expect("redis");
        redis::cmd("SCRIPT").arg("FLUSH").exec(&mut admin).expect("script flush");
        let writes = vec![("after-flush".to_owned(), 1, b"x".to_vec()), ("k".to_owned(), 9, b"nine".to_vec())];
        assert_eq!(store.put_many_versioned(&writes).expect("put many"), vec![true, true]);
        assert_eq!(store.get("k").expect("get"), Some((9, b"nine".to_vec())));
        // Sent, answered later: the same answers, over several script calls, and after the
        // script is lost again; the connection then serves other requests as before.
        let batch: Vec<(String, u64, Vec<u8>)> = (0..1_100)
            .map(|i| (format!("sent-{}", i % 550), 1 + i as u64 / 550, vec![b'a' + (i % 26) as u8]))
            .collect();
        let sent = store.send_many_versioned(batch.clone());
        assert_eq!(sent.answer().expect("answered"), vec![true; 1_100]);
        assert_eq!(store.get("sent-549").expect("get"), Some((2, vec![b'a' + (1_099 % 26) as u8])));
        let stale = store.send_many_versioned(vec![("k".to_owned(), 8, b"eight".to_vec())]);
        assert_eq!(stale.answer().expect("answered"), vec![false], "an older version is refused");
        redis::cmd("SCRIPT").arg("FLUSH").exec(&mut admin).expect("script flush");
        let sent = store.send_many_versioned(vec![("k".to_owned(), 10, b"ten".to_vec())]);
        assert_eq!(sent.answer().expect("answered after loading the script"), vec![true]);
        assert_eq!(store.get("k").expect("get"), Some((10, b"ten".to_vec())));
        assert!(store.send_many_versioned(Vec::new()).answer().expect("nothing").is_empty());
        let err = RedisStore::connect("redis://127.0.0.1:1/", "x").err().expect("nothing listens there");
        assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    }
}

#[cfg(test)]
mod credential_tests {
    use super::without_credentials;

    #[test]
    fn credentials_are_never_shown() {
        assert_eq!(without_credentials("redis://:s3cret@cache:6379/0"), "redis://***@cache:6379/0");
        assert_eq!(without_credentials("rediss://user:pw@h/"), "rediss://***@h/");
        assert_eq!(without_credentials("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379/");
    }
}
