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

/// The partner listener: TLS with client certificates (mTLS).
pub struct PartnerTls {
    /// Where partners connect.
    pub listener: std::net::TcpListener,
    /// The server's certificate and key, and the CA partners' certificates must chain to
    /// ([`partner_tls_config`]).
    pub config: Arc<rustls::ServerConfig>,
}

/// Who a client certificate names: a partner or provider id, the first label of its first
/// DNS subject alternative name (`X1.partners.arus.id` names `X1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity(pub String);

/// A TLS server configuration that requires client certificates: the server's chain and key
/// (PEM), and the CA (PEM) whose certificates partners present. rustls-webpki checks each
/// client certificate: its chain to that CA, its validity dates, its extended key usage
/// (client authentication).
pub fn partner_tls_config(
    server_chain: &std::path::Path,
    server_key: &std::path::Path,
    client_ca: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read_certs = |path: &std::path::Path| -> Result<Vec<CertificateDer<'static>>, String> {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate in it", path.display()));
        }
        Ok(certs)
    };
    let chain = read_certs(server_chain)?;
    let key = PrivateKeyDer::from_pem_file(server_key).map_err(|e| format!("{}: {e}", server_key.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in read_certs(client_ca)? {
        roots.add(ca).map_err(|e| format!("{}: {e}", client_ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("{}: {e}", client_ca.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("{}: {e}", server_key.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The identity of a verified client certificate.
fn identity(certificates: Option<&[rustls::pki_types::CertificateDer<'_>]>) -> Option<PeerIdentity> {
    let leaf = certificates?.first()?;
    let cert = webpki::EndEntityCert::try_from(leaf).ok()?;
    let name = cert.valid_dns_names().next()?;
    let id = name.split('.').next()?;
    crate::commands::valid_id(id).then(|| PeerIdentity(id.to_owned()))
}

/// Serves `app` on `listener` until the process ends; with `tls`, each connection's TLS
/// handshake first (within the head deadline), its client certificate's identity carried by
/// every request on it.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
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
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                // Past this, hyper answers a bare 431 itself; below it, `bounded` answers.
                .max_buf_size(MAX_HEADERS * 4);
            let service = move |identity: Option<PeerIdentity>| {
                hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    if let Some(identity) = &identity {
                        request.extensions_mut().insert(identity.clone());
                    }
                    let mut app = app.clone();
                    async move { tower_service::Service::call(&mut app, request).await }
                })
            };
            match acceptor {
                None => {
                    let _ = http.serve_connection(TokioIo::new(stream), service(None)).await;
                }
                Some(acceptor) => {
                    // A refused certificate ends the handshake: nothing is served.
                    let handshake = tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)).await;
                    if let Ok(Ok(stream)) = handshake {
                        let identity = identity(stream.get_ref().1.peer_certificates());
                        let _ = http.serve_connection(TokioIo::new(stream), service(identity)).await;
                    }
                }
            }
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
