//! Prometheus metrics of a run, kept with the `prometheus` crate and served on `GET /metrics`
//! (`arus run --metrics-addr`) by a small axum server on a thread of its own.
//!
//! Every metric of a job is defined here, once, and bumped through a named method ([`Metrics`]):
//! once per batch or per written stamp, so keeping them costs nothing measurable. Every series
//! carries the `pipeline` label; times are in seconds, watermarks in seconds since 1970.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Latency buckets, in seconds: 1 ms to 10 s.
pub const LATENCY_BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0];

/// The metrics of one run.
pub struct Metrics {
    registry: Registry,
    /// Records read and decoded (windowed jobs: claims; topic jobs: events).
    records: IntCounter,
    /// Records refused: dead letters (windowed jobs), or not events of the contract (topic jobs).
    dead_letters: IntCounter,
    /// Events folded into the job's state (topic jobs).
    events: IntCounter,
    /// Events a job decided and wrote to its output topics, per topic.
    outputs: IntCounterVec,
    /// Records written to the serving store.
    store_records: IntCounter,
    /// Lines written, per sink.
    sink_lines: IntCounterVec,
    /// The job's watermark: the slowest source worker's.
    watermark: Gauge,
    /// Watermark per source worker.
    source_watermark: GaugeVec,
    /// Next position per partition.
    position: IntGaugeVec,
    /// Records between the position and the partition's end, where the end is known.
    lag: IntGaugeVec,
    checkpoints: IntCounter,
    checkpoint_seconds: Histogram,
    checkpoint_bytes: IntGauge,
    /// Per worker its watermark, and per partition (position, end): the gauges above are
    /// derived from them (a minimum, a difference).
    sources: Mutex<Sources>,
}

#[derive(Default)]
struct Sources {
    watermarks: BTreeMap<usize, u64>,
    partitions: BTreeMap<u32, (u64, Option<u64>)>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// A registered metric (a failure here is a bug: names are fixed and unique).
fn registered<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry.register(Box::new(metric.clone())).expect("metric names are unique");
    metric
}

impl Metrics {
    /// Metrics of a run of `pipeline` (its `pipeline` label).
    pub fn new(pipeline: &str) -> Self {
        let labels = [("pipeline".to_owned(), pipeline.to_owned())].into_iter().collect();
        let registry = Registry::new_custom(None, Some(labels)).expect("a valid label");
        let counter = |name: &str, help: &str| registered(&registry, IntCounter::new(name, help).expect("valid"));
        let counters = |name: &str, help: &str, label: &str| {
            registered(&registry, IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid"))
        };
        let gauges = |name: &str, help: &str, label: &str| {
            registered(&registry, IntGaugeVec::new(Opts::new(name, help), &[label]).expect("valid"))
        };
        Metrics {
            records: counter("arus_source_records_total", "Records read and decoded."),
            dead_letters: counter(
                "arus_dead_letters_total",
                "Records refused: set aside as dead letters, or not events of the contract.",
            ),
            events: counter("arus_events_folded_total", "Events folded into the job's state."),
            outputs: counters("arus_outputs_total", "Events decided and written to an output topic.", "topic"),
            store_records: counter("arus_store_records_written_total", "Records written to the serving store."),
            sink_lines: counters("arus_sink_lines_total", "Lines written, per sink.", "sink"),
            watermark: registered(
                &registry,
                Gauge::new("arus_watermark_seconds", "The job's event-time watermark (the slowest source's).")
                    .expect("valid"),
            ),
            source_watermark: registered(
                &registry,
                GaugeVec::new(Opts::new("arus_source_watermark_seconds", "Watermark per source worker."), &["worker"])
                    .expect("valid"),
            ),
            position: gauges("arus_source_position", "Next position read, per partition.", "partition"),
            lag: gauges(
                "arus_consumer_lag_records",
                "Records between the position and the partition's end.",
                "partition",
            ),
            checkpoints: counter("arus_checkpoints_total", "Checkpoints completed."),
            checkpoint_seconds: registered(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "arus_checkpoint_duration_seconds",
                        "Time from the start of a checkpoint to its file being durable.",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                )
                .expect("valid"),
            ),
            checkpoint_bytes: registered(
                &registry,
                IntGauge::new("arus_checkpoint_bytes", "Size of the last checkpoint file.").expect("valid"),
            ),
            sources: Mutex::default(),
            registry,
        }
    }

    /// A source batch: `records` decoded, `dead` refused, watermark (ms) now, positions now.
    pub fn source_batch(
        &self,
        worker: usize,
        records: u64,
        dead: u64,
        watermark_ms: u64,
        positions: &[(u32, Option<u64>)],
    ) {
        self.records.inc_by(records);
        self.dead_letters.inc_by(dead);
        self.source_watermark.with_label_values(&[&worker.to_string()]).set(seconds(watermark_ms));
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        sources.watermarks.insert(worker, watermark_ms);
        if let Some(min) = sources.watermarks.values().min() {
            self.watermark.set(seconds(*min));
        }
        for (partition, position) in positions {
            let entry = sources.partitions.entry(*partition).or_insert((0, None));
            entry.0 = position.unwrap_or(0);
            self.partition_gauges(*partition, *entry);
        }
    }

    /// Where a partition ends (for the lag).
    pub fn partition_end(&self, partition: u32, end: u64) {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let entry = sources.partitions.entry(partition).or_insert((0, None));
        entry.1 = Some(end);
        self.partition_gauges(partition, *entry);
    }

    fn partition_gauges(&self, partition: u32, (position, end): (u64, Option<u64>)) {
        let label = partition.to_string();
        self.position.with_label_values(&[&label]).set(position as i64);
        if let Some(end) = end {
            self.lag.with_label_values(&[&label]).set(end.saturating_sub(position) as i64);
        }
    }

    /// Records of the job's topics read: `events` decoded, `undecodable` not events.
    pub fn events_read(&self, events: u64, undecodable: u64) {
        self.records.inc_by(events);
        self.dead_letters.inc_by(undecodable);
    }

    /// Events folded into the job's state, the watermark (ms) they were released below.
    pub fn folded(&self, events: u64, watermark_ms: Option<u64>) {
        self.events.inc_by(events);
        if let Some(watermark) = watermark_ms {
            self.watermark.set(seconds(watermark));
        }
    }

    /// An event decided, written to `topic`.
    pub fn output(&self, topic: &str) {
        self.outputs.with_label_values(&[topic]).inc();
    }

    /// Records written to the serving store.
    pub fn store_records(&self, records: u64) {
        self.store_records.inc_by(records);
    }

    /// A sink wrote `lines`.
    pub fn sink_lines(&self, sink: &'static str, lines: u64) {
        self.sink_lines.with_label_values(&[sink]).inc_by(lines);
    }

    /// A checkpoint completed: how long from start to durable, and its size.
    pub fn checkpoint(&self, took: Duration, bytes: u64) {
        self.checkpoints.inc();
        self.checkpoint_seconds.observe(took.as_secs_f64());
        self.checkpoint_bytes.set(bytes as i64);
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding into memory");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// Milliseconds as seconds, for a gauge.
fn seconds(ms: u64) -> f64 {
    Duration::from_millis(ms).as_secs_f64()
}

/// Serves `metrics` on `address` (`host:port`; port 0 picks one) from a background thread, for
/// as long as the process lives. Returns the address bound.
pub fn serve(address: &str, metrics: Arc<Metrics>) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    std::thread::Builder::new().name("arus-metrics".to_owned()).spawn(move || {
        runtime.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
            let app =
                axum::Router::new()
                    .route(
                        "/metrics",
                        axum::routing::get(move || {
                            let metrics = metrics.clone();
                            async move {
                                ([("content-type", TextEncoder::new().format_type().to_owned())], metrics.render())
                            }
                        }),
                    )
                    .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "metrics are at /metrics\n") });
            // A failing server ends the thread, not the run.
            let _ = axum::serve(listener, app).await;
        });
    })?;
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn get(address: SocketAddr, path: &str) -> String {
        let mut stream = std::net::TcpStream::connect(address).expect("connect");
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("response");
        response
    }

    #[test]
    fn metrics_are_served_in_prometheus_text() {
        let metrics = Arc::new(Metrics::new("provider-windows"));
        metrics.source_batch(0, 10, 1, 5_000, &[(0, Some(11))]);
        metrics.source_batch(1, 5, 0, 4_000, &[(1, Some(5))]);
        metrics.partition_end(0, 20);
        metrics.sink_lines("csv", 3);
        metrics.checkpoint(Duration::from_millis(1_500), 2_048);
        metrics.output("claims.events");
        let address = serve("127.0.0.1:0", metrics.clone()).expect("serve");
        let response = get(address, "/metrics");
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        for line in [
            "arus_source_records_total{pipeline=\"provider-windows\"} 15",
            "arus_dead_letters_total{pipeline=\"provider-windows\"} 1",
            "arus_sink_lines_total{sink=\"csv\",pipeline=\"provider-windows\"} 3",
            "arus_watermark_seconds{pipeline=\"provider-windows\"} 4",
            "arus_consumer_lag_records{partition=\"0\",pipeline=\"provider-windows\"} 9",
            "arus_checkpoint_duration_seconds_bucket{pipeline=\"provider-windows\",le=\"2.5\"} 1",
            "arus_checkpoint_duration_seconds_bucket{pipeline=\"provider-windows\",le=\"1\"} 0",
            "arus_checkpoint_bytes{pipeline=\"provider-windows\"} 2048",
            "arus_outputs_total{topic=\"claims.events\",pipeline=\"provider-windows\"} 1",
        ] {
            assert!(response.lines().any(|l| l == line), "missing {line:?} in\n{response}");
        }
        assert!(get(address, "/other").starts_with("HTTP/1.1 404"));
    }
}
