//! Prometheus metrics of a run, served as text on `GET /metrics` (`arus run --metrics-addr`).
//!
//! Counters are atomics bumped once per batch or per written stamp, so keeping them costs
//! nothing measurable. The server is a small blocking HTTP/1.1 responder on its own thread: a
//! scrape is one short request, and a run has one scraper.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The metrics of one run.
#[derive(Debug, Default)]
pub struct Metrics {
    /// The pipeline's name (label `pipeline`).
    pipeline: String,
    /// Records decoded.
    records: AtomicU64,
    /// Records refused (dead letters).
    dead_letters: AtomicU64,
    /// Lines written, per sink.
    sink_lines: Mutex<BTreeMap<&'static str, u64>>,
    /// Watermark per source worker.
    watermarks: Mutex<BTreeMap<usize, u64>>,
    /// Per partition: next position, and the end it is read to (when known).
    partitions: Mutex<BTreeMap<u32, (u64, Option<u64>)>>,
    checkpoints: AtomicU64,
    checkpoint_millis: AtomicU64,
    checkpoint_bytes: AtomicU64,
}

impl Metrics {
    /// Metrics of a run of `pipeline`.
    pub fn new(pipeline: &str) -> Self {
        Metrics { pipeline: pipeline.to_owned(), ..Metrics::default() }
    }

    /// A source batch: `records` decoded, `dead` refused, watermark now, positions now.
    pub fn source_batch(
        &self,
        worker: usize,
        records: u64,
        dead: u64,
        watermark: u64,
        positions: &[(u32, Option<u64>)],
    ) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.dead_letters.fetch_add(dead, Ordering::Relaxed);
        lock(&self.watermarks).insert(worker, watermark);
        let mut partitions = lock(&self.partitions);
        for (partition, position) in positions {
            let entry = partitions.entry(*partition).or_insert((0, None));
            entry.0 = position.unwrap_or(0);
        }
    }

    /// Where a partition ends (for the lag).
    pub fn partition_end(&self, partition: u32, end: u64) {
        lock(&self.partitions).entry(partition).or_insert((0, None)).1 = Some(end);
    }

    /// A sink wrote `lines`.
    pub fn sink_lines(&self, sink: &'static str, lines: u64) {
        *lock(&self.sink_lines).entry(sink).or_default() += lines;
    }

    /// A checkpoint completed: how long from start to durable, and its size.
    pub fn checkpoint(&self, took: Duration, bytes: u64) {
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.checkpoint_millis.store(took.as_millis() as u64, Ordering::Relaxed);
        self.checkpoint_bytes.store(bytes, Ordering::Relaxed);
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let p = escape(&self.pipeline);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let comma = if labels.is_empty() { "" } else { "," };
                let _ = writeln!(out, "{name}{{pipeline=\"{p}\"{comma}{labels}}} {value}");
            }
        };
        let one = |v: u64| vec![(String::new(), v.to_string())];
        metric(
            "arus_source_records_total",
            "counter",
            "Records read and decoded.",
            &one(self.records.load(Ordering::Relaxed)),
        );
        metric(
            "arus_dead_letters_total",
            "counter",
            "Records refused and set aside as dead letters.",
            &one(self.dead_letters.load(Ordering::Relaxed)),
        );
        let sinks: Vec<(String, String)> =
            lock(&self.sink_lines).iter().map(|(s, n)| (format!("sink=\"{s}\""), n.to_string())).collect();
        metric("arus_sink_lines_total", "counter", "Lines written, per sink.", &sinks);
        let watermarks = lock(&self.watermarks).clone();
        if let Some(min) = watermarks.values().min() {
            metric(
                "arus_watermark_ms",
                "gauge",
                "The job's event-time watermark (the slowest source worker's), ms since 1970.",
                &one(*min),
            );
        }
        let per_worker: Vec<(String, String)> =
            watermarks.iter().map(|(w, m)| (format!("worker=\"{w}\""), m.to_string())).collect();
        metric("arus_source_watermark_ms", "gauge", "Watermark per source worker, ms since 1970.", &per_worker);
        let partitions = lock(&self.partitions).clone();
        let positions: Vec<(String, String)> =
            partitions.iter().map(|(p, (at, _))| (format!("partition=\"{p}\""), at.to_string())).collect();
        metric("arus_source_position", "gauge", "Next position read, per partition.", &positions);
        let lag: Vec<(String, String)> = partitions
            .iter()
            .filter_map(|(p, (at, end))| {
                end.map(|end| (format!("partition=\"{p}\""), end.saturating_sub(*at).to_string()))
            })
            .collect();
        metric("arus_consumer_lag_records", "gauge", "Records between the position and the partition's end.", &lag);
        metric(
            "arus_checkpoints_total",
            "counter",
            "Checkpoints completed.",
            &one(self.checkpoints.load(Ordering::Relaxed)),
        );
        metric(
            "arus_checkpoint_duration_seconds",
            "gauge",
            "Time from the start of the last checkpoint to its file being durable.",
            &[(String::new(), {
                let millis = self.checkpoint_millis.load(Ordering::Relaxed);
                format!("{}.{:03}", millis / 1000, millis % 1000)
            })],
        );
        metric(
            "arus_checkpoint_bytes",
            "gauge",
            "Size of the last checkpoint file.",
            &one(self.checkpoint_bytes.load(Ordering::Relaxed)),
        );
        out
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Serves `metrics` on `address` (`host:port`; port 0 picks one) from a background thread, for
/// as long as the process lives. Returns the address bound.
pub fn serve(address: &str, metrics: std::sync::Arc<Metrics>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(address)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new().name("arus-metrics".to_owned()).spawn(move || {
        for stream in listener.incoming().flatten() {
            // A scraper that misbehaves costs only its own request.
            let _ = answer(stream, &metrics);
        }
    })?;
    Ok(bound)
}

fn answer(stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Headers, up to the blank line.
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }
    let mut stream = stream;
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let (status, content_type, body) = match (request.split_whitespace().next(), path) {
        (Some("GET"), "/metrics") => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
        (Some("GET"), _) => ("404 Not Found", "text/plain", "metrics are at /metrics\n".to_owned()),
        _ => ("405 Method Not Allowed", "text/plain", "only GET\n".to_owned()),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn get(address: SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(address).expect("connect");
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("response");
        response
    }

    #[test]
    fn metrics_are_served_in_prometheus_text() {
        let metrics = std::sync::Arc::new(Metrics::new("provider-windows"));
        metrics.source_batch(0, 10, 1, 5_000, &[(0, Some(11))]);
        metrics.source_batch(1, 5, 0, 4_000, &[(1, Some(5))]);
        metrics.partition_end(0, 20);
        metrics.sink_lines("csv", 3);
        metrics.checkpoint(Duration::from_millis(1_500), 2_048);
        let address = serve("127.0.0.1:0", metrics.clone()).expect("serve");
        let response = get(address, "/metrics");
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        for line in [
            "arus_source_records_total{pipeline=\"provider-windows\"} 15",
            "arus_dead_letters_total{pipeline=\"provider-windows\"} 1",
            "arus_sink_lines_total{pipeline=\"provider-windows\",sink=\"csv\"} 3",
            "arus_watermark_ms{pipeline=\"provider-windows\"} 4000",
            "arus_consumer_lag_records{pipeline=\"provider-windows\",partition=\"0\"} 9",
            "arus_checkpoint_duration_seconds{pipeline=\"provider-windows\"} 1.500",
            "arus_checkpoint_bytes{pipeline=\"provider-windows\"} 2048",
        ] {
            assert!(response.lines().any(|l| l == line), "missing {line:?} in\n{response}");
        }
        assert!(get(address, "/other").starts_with("HTTP/1.1 404"));
    }
}
