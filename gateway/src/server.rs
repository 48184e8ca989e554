//! The HTTP/1.1 server under the routes, with the limits that keep slow or greedy clients from
//! exhausting it: a cap on open connections (past it, a new connection is closed at once), a
//! deadline for a request's head (a connection that sends nothing, or dribbles its headers,
//! is closed — on a kept-alive connection too, so it is also the idle timeout), and bounds on
//! the request line and headers answered in the error format (414, 431) rather than with
//! hyper's bare replies. Bodies are bounded by [`MAX_BODY`] (413).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::error::ApiError;

/// The largest body a request may carry: a claim of 100 lines is about 30 KB.
pub const MAX_BODY: usize = 1 << 20;

/// The longest request target (path and query).
pub const MAX_URI: usize = 8 * 1024;

/// The most header bytes a request may carry (names and values).
pub const MAX_HEADERS: usize = 32 * 1024;

/// How the server guards itself.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections at most; past it, new ones are closed.
    pub max_connections: usize,
    /// How long a connection may take to send a request's head, and stay idle between
    /// requests.
    pub header_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_connections: 4_096, header_read_timeout: Duration::from_secs(10) }
    }
}

/// Serves `app` on `listener` until the process ends.
pub(crate) async fn serve(listener: tokio::net::TcpListener, app: Router, limits: Limits) -> std::io::Result<()> {
    let open = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors, a connection reset before it was taken: keep serving.
            Err(_) => {
                tokio::task::yield_now().await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                let mut app = app.clone();
                async move { tower_service::Service::call(&mut app, request).await }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                // Past this, hyper answers a bare 431 itself; below it, `bounded` answers.
                .max_buf_size(MAX_HEADERS * 4);
            let _ = http.serve_connection(TokioIo::new(stream), service).await;
            drop(permit);
        });
    }
}

/// 414 for a request target longer than [`MAX_URI`], 431 for headers past [`MAX_HEADERS`]:
/// in the error format, before any route runs.
pub(crate) async fn bounded(request: Request, next: Next) -> Response {
    let target = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_URI {
        return too_large(
            StatusCode::URI_TOO_LONG,
            "URI_TOO_LONG",
            format!("the request target is over {MAX_URI} bytes"),
        );
    }
    let headers: usize = request.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if headers > MAX_HEADERS {
        return too_large(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "HEADERS_TOO_LARGE",
            format!("the request's headers are over {MAX_HEADERS} bytes"),
        );
    }
    next.run(request).await
}

fn too_large(status: StatusCode, code: &'static str, message: String) -> Response {
    ApiError { status, code, message, details: Vec::new() }.into_response()
}
