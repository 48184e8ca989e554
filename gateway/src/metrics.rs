//! RED metrics per route — requests by status and a latency histogram — kept with the
//! `prometheus` crate and served at `/metrics`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::Gateway;

/// Latency buckets, in seconds: 100 µs to 10 s (the seed's "p95 > 1 s" alert needs buckets past
/// a second).
pub(crate) const LATENCY_BUCKETS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Rate, errors and duration per route (its template): requests by status, and a latency
/// histogram, kept with the `prometheus` crate.
pub(crate) struct Red {
    registry: prometheus::Registry,
    requests: prometheus::IntCounterVec,
    duration: prometheus::HistogramVec,
}

impl Default for Red {
    fn default() -> Self {
        let registry = prometheus::Registry::new();
        let requests = prometheus::IntCounterVec::new(
            prometheus::Opts::new("arus_gateway_requests_total", "Requests by route and status."),
            &["route", "status"],
        )
        .expect("a valid metric");
        let duration = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new("arus_gateway_request_duration_seconds", "Time to answer, by route.")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("a valid metric");
        registry.register(Box::new(requests.clone())).expect("unique names");
        registry.register(Box::new(duration.clone())).expect("unique names");
        Red { registry, requests, duration }
    }
}

impl Red {
    pub(crate) fn observe(&self, route: &str, status: u16, took: std::time::Duration) {
        self.requests.with_label_values(&[route, itoa::Buffer::new().format(status)]).inc();
        self.duration.with_label_values(&[route]).observe(took.as_secs_f64());
    }

    /// The registry, for the gateway's other metrics.
    pub(crate) fn registry(&self) -> &prometheus::Registry {
        &self.registry
    }

    pub(crate) fn render(&self) -> String {
        use prometheus::Encoder;
        let mut out = Vec::new();
        prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding into memory");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// Records each request's route (its template, not the raw path), status and duration.
pub(crate) async fn record(
    State(gateway): State<Gateway>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = std::time::Instant::now();
    let response = crate::error::traced(next.run(request)).await;
    gateway.metrics.observe(&route, response.status().as_u16(), started.elapsed());
    response
}

/// Requests, errors and latency per route.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "requests, errors and latency per route (Prometheus text format)", content_type = "text/plain", body = String),
))]
pub(crate) async fn metrics(State(gateway): State<Gateway>) -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], gateway.metrics.render())
}
