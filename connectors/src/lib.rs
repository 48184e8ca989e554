//! Where events come from and go to. Transport is kept apart from format: a transport moves
//! bytes with topic, partition, offset and timestamp; encoding and decoding them is the
//! business of `arus-schemas`.
//!
//! # Layout
//! - [`control`] (feature `control`): the control plane's database of jobs (PostgreSQL, or
//!   SQLite embedded).
//! - [`embedded`]: an in-process log with Kafka's semantics (topics, partitions, offsets),
//!   the transport of `arus demo` and of tests that need no servers.
//! - [`files`]: event files, one per topic, as JSON lines or Avro object container files.
//! - [`kafka`] (feature `kafka`): topics on a broker through rdkafka; an idempotent producer.
//! - [`store`]: versioned key-value state jobs materialize: in this process, or Redis (feature
//!   `redis`), and the contract's read models read from it.
//! - [`transport`]: [`transport::TopicSink`], writing topics the same way on Kafka and on the
//!   embedded log.
//! - [`turns`]: the fixed order partitions are read in (turns of a quantum each), for the Kafka
//!   reader and the embedded log's.

#[cfg(feature = "clickhouse")]
pub mod clickhouse;
#[cfg(feature = "control")]
pub mod control;
pub mod embedded;
pub mod files;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod store;
pub mod transport;
pub mod turns;

/// The address of a real service for an integration test, from the environment variable
/// `var` (`KAFKA_BROKERS`, `REDIS_URL`, `CLICKHOUSE_URL`). `None` (the test then skips, saying
/// so) when unset, unless `ARUS_REQUIRE_SERVICES` is set, as `deploy/test.sh` does: then a
/// missing address is a failure, so a suite run never passes by skipping.
pub fn service_address(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(address) if !address.is_empty() => Some(address),
        _ => {
            assert!(std::env::var_os("ARUS_REQUIRE_SERVICES").is_none(), "{var} is not set but services are required");
            eprintln!("{var} not set: skipping a test against a real service");
            None
        }
    }
}
