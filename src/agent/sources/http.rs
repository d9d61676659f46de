//! The `http` source: clients POST batches of events to `/`.
//!
//! A request carries one batch, in Flume's JSON format or the binary format (see
//! [`wire`]), and gets its answer only once the batch is settled:
//!
//! | status | when | committed |
//! | --- | --- | --- |
//! | 200 | every required channel committed the batch (durably, for a file channel with `fsync = always`) | all |
//! | 400 | the body is not a well-formed batch, or an event routes to no required channel (a multiplexing value without mapping or default); the body of the answer says why | nothing |
//! | 401 | `auth_token` is set and the request lacks `Authorization: Bearer <token>` | nothing |
//! | 408 | the body stalled: no part of it for 30 s | nothing |
//! | 413 | the body exceeds `max_body_size`, an event exceeds a channel's `max_event_size`, or the batch exceeds its `transaction_capacity` | nothing |
//! | 415 | a `Content-Type` that is neither JSON nor binary | nothing |
//! | 503 | a channel is full, or the agent is stopping; `Retry-After: 1` | nothing |
//! | 500 | a channel failed (poisoned, closed, I/O) | nothing, or (a commit failed) the required channels that committed before it |
//!
//! The batch is put into every required channel before any commits, so a refused put commits
//! nothing; the commits then run one channel after the other, and a commit that fails after
//! another channel committed leaves the batch in that earlier channel. So a client that retries
//! everything that did not get a 200 loses nothing; it may duplicate a batch (in a channel that
//! committed before a later commit failed, or whose 200 was lost on the way back):
//! at-least-once, like every hop of the agent.
//!
//! With `tls = { cert, key }` the source speaks HTTPS only (rustls, PEM files read at start). On
//! shutdown it stops accepting, lets requests in flight finish (their deliveries included), and
//! closes idle connections.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use crate::agent::component::{
    BoxFuture, ComponentError, DeliverError, Source, SourceContext, SourceCounters, SourceOutput,
};
use crate::agent::units::ByteSize;
use crate::agent::wire::{self, Format};

/// Default `max_body_size`: 16 MiB.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 16 << 20;
/// How long a client has to finish its TLS handshake or send a request's headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default longest pause while a client sends a request body (then 408).
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The `http` source's keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSourceConfig {
    /// Address to listen on, `host:port`.
    pub bind: String,
    /// Largest request body. Default 16 MiB.
    #[serde(default = "default_max_body_size")]
    pub max_body_size: ByteSize,
    /// When set, requests must carry `Authorization: Bearer <auth_token>`.
    #[serde(default)]
    pub auth_token: Option<String>,
    /// Serve HTTPS with this certificate chain and key (PEM files).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

fn default_max_body_size() -> ByteSize {
    ByteSize(DEFAULT_MAX_BODY_SIZE)
}

/// `tls = { cert = "cert.pem", key = "key.pem" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Builds an `http` source (reads the TLS files now; binds when it runs).
pub fn build(name: &str, cfg: HttpSourceConfig) -> Result<Box<dyn Source>, ComponentError> {
    Ok(Box::new(HttpSource::new(name, cfg)?))
}

/// The `http` source. [`HttpSource::bind`] binds early (to learn the port of `127.0.0.1:0`);
/// otherwise [`Source::run`] binds.
pub struct HttpSource {
    name: String,
    cfg: HttpSourceConfig,
    tls: Option<TlsAcceptor>,
    listener: Option<std::net::TcpListener>,
    body_idle_timeout: Duration,
}

impl HttpSource {
    /// Checks `cfg` and loads the TLS certificate and key.
    pub fn new(name: &str, cfg: HttpSourceConfig) -> Result<Self, ComponentError> {
        if usize::try_from(cfg.max_body_size.0).is_err() || cfg.max_body_size.0 == 0 {
            return Err(ComponentError::Config(format!(
                "source {name}: max_body_size must be between 1 byte and the address space"
            )));
        }
        let tls = cfg
            .tls
            .as_ref()
            .map(|t| tls_acceptor(name, t))
            .transpose()?;
        Ok(HttpSource {
            name: name.to_owned(),
            cfg,
            tls,
            listener: None,
            body_idle_timeout: DEFAULT_BODY_IDLE_TIMEOUT,
        })
    }

    /// Changes the longest pause allowed while a client sends a body (default 30 s; not a
    /// config key).
    #[must_use]
    pub fn body_idle_timeout(mut self, timeout: Duration) -> Self {
        self.body_idle_timeout = timeout;
        self
    }

    /// Binds the listening socket now and returns its address.
    pub fn bind(&mut self) -> Result<SocketAddr, ComponentError> {
        let listener = bind(&self.name, &self.cfg.bind)?;
        let addr = listener.local_addr()?;
        self.listener = Some(listener);
        Ok(addr)
    }
}

/// Binds a non-blocking listener on `addr`, with the source and address in the error.
pub(crate) fn bind(name: &str, addr: &str) -> Result<std::net::TcpListener, ComponentError> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        ComponentError::Io(std::io::Error::new(
            e.kind(),
            format!("source {name}: cannot listen on {addr}: {e}"),
        ))
    })?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

fn tls_acceptor(name: &str, t: &TlsConfig) -> Result<TlsAcceptor, ComponentError> {
    let bad = |what: &str, path: &PathBuf, e: &dyn std::fmt::Display| {
        ComponentError::Config(format!("source {name}: tls.{what} {}: {e}", path.display()))
    };
    let certs = CertificateDer::pem_file_iter(&t.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad("cert", &t.cert, &e))?;
    if certs.is_empty() {
        return Err(bad("cert", &t.cert, &"holds no certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(&t.key).map_err(|e| bad("key", &t.key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| bad("key", &t.key, &e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What every request handler shares.
struct Shared {
    output: SourceOutput,
    counters: Arc<SourceCounters>,
    max_body_size: u64,
    auth_token: Option<String>,
    body_idle_timeout: Duration,
}

impl Source for HttpSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), ComponentError>> {
        Box::pin(async move {
            let this = *self;
            let listener = match this.listener {
                Some(l) => l,
                None => bind(&this.name, &this.cfg.bind)?,
            };
            let listener = TcpListener::from_std(listener)?;
            let shared = Arc::new(Shared {
                output: ctx.output,
                counters: ctx.counters,
                max_body_size: this.cfg.max_body_size.0,
                auth_token: this.cfg.auth_token,
                body_idle_timeout: this.body_idle_timeout,
            });
            let router = Router::new().route("/", post(handle)).with_state(shared);
            tracing::info!(source = %this.name, addr = ?listener.local_addr().ok(), tls = this.tls.is_some(), "http source listening");
            serve(listener, router, this.tls, ctx.shutdown).await;
            Ok(())
        })
    }
}

/// Accepts connections until `shutdown`, then waits for every connection to finish its
/// request in flight.
async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) {
    accept_until(listener, &shutdown.clone(), "http", move |tcp, peer| {
        let (router, tls, shutdown) = (router.clone(), tls.clone(), shutdown.clone());
        async move {
            let Some(acceptor) = tls else {
                return serve_connection(tcp, router, shutdown).await;
            };
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
            let stream = tokio::select! {
                () = shutdown.cancelled() => return,
                s = handshake => s,
            };
            match stream {
                Ok(Ok(stream)) => serve_connection(stream, router, shutdown).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    })
    .await;
}

/// The accept loop of the TCP sources: runs `on_accept`'s future for each connection on its
/// own task until `shutdown`, then stops accepting (closes the listener) and waits for every
/// connection task to end (each watches `shutdown` itself and finishes what is in flight).
pub(crate) async fn accept_until<F, Fut>(
    listener: TcpListener,
    shutdown: &CancellationToken,
    source_type: &'static str,
    mut on_accept: F,
) where
    F: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    connections.spawn(on_accept(tcp, peer));
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!(source_type, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Serves one connection (HTTP/1.1, keep-alive) until the client closes it or, after
/// `shutdown`, until its request in flight is answered.
async fn serve_connection<IO>(io: IO, router: Router, shutdown: CancellationToken)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(router);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "http source: connection ended with an error");
    }
}

async fn handle(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    if let Some(token) = &s.auth_token
        && !authorized(&headers, token)
    {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong bearer token\n",
        )
            .into_response();
    }
    let format = match request_format(&headers) {
        Ok(f) => f,
        Err(ct) => {
            return (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "unsupported Content-Type {ct:?}: send {} or {}\n",
                    wire::JSON_CONTENT_TYPE,
                    wire::BINARY_CONTENT_TYPE
                ),
            )
                .into_response();
        }
    };
    let body = match read_body(body, &headers, s.max_body_size, s.body_idle_timeout).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    let events = match format.decode(&body) {
        Ok(events) => events,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let n = events.len() as u64;
    s.counters.received.fetch_add(n, Ordering::Relaxed);
    if n == 0 {
        return StatusCode::OK.into_response();
    }
    match s.output.deliver(events).await {
        Ok(()) => {
            s.counters.accepted.fetch_add(n, Ordering::Relaxed);
            s.counters.append_batches.fetch_add(1, Ordering::Relaxed);
            StatusCode::OK.into_response()
        }
        Err(e) => {
            s.counters.rejected.fetch_add(n, Ordering::Relaxed);
            let status = deliver_status(&e);
            let mut response = (status, format!("{e}\n")).into_response();
            if status == StatusCode::SERVICE_UNAVAILABLE {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            }
            response
        }
    }
}

/// Reads a request body of at most `limit` bytes, with at most `idle` between two pieces of it.
async fn read_body(
    mut body: Body,
    headers: &HeaderMap,
    limit: u64,
    idle: Duration,
) -> Result<Vec<u8>, Response> {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds max_body_size of {limit} bytes\n"),
        )
            .into_response()
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    // Grown as bytes arrive: a declared length alone reserves at most 64 KiB.
    let mut out = Vec::with_capacity(declared.map_or(0, |n| n.min(64 << 10) as usize));
    loop {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx));
        match tokio::time::timeout(idle, frame).await {
            Err(_) => {
                return Err((
                    StatusCode::REQUEST_TIMEOUT,
                    format!("no part of the request body arrived for {idle:?}\n"),
                )
                    .into_response());
            }
            Ok(None) => return Ok(out),
            Ok(Some(Err(e))) => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    format!("reading the request body failed: {e}\n"),
                )
                    .into_response());
            }
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if (out.len() + data.len()) as u64 > limit {
                        return Err(too_large());
                    }
                    out.extend_from_slice(data);
                }
            }
        }
    }
}

/// The status a failed delivery answers with.
fn deliver_status(e: &DeliverError) -> StatusCode {
    match e {
        DeliverError::Full { .. } | DeliverError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        DeliverError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        DeliverError::NoChannel { .. } => StatusCode::BAD_REQUEST,
        DeliverError::Channel { source, .. } => match source {
            crate::Error::ChannelFull { .. } | crate::Error::InsufficientSpace { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            crate::Error::EventTooLarge { .. } | crate::Error::TransactionFull { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        },
    }
}

/// JSON unless the request says binary; refuses other explicit types except curl's default
/// form type (Flume's HTTP source ignores the type, and `curl -d` sends that one).
fn request_format(headers: &HeaderMap) -> Result<Format, String> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Format::Json);
    };
    let ct = String::from_utf8_lossy(ct.as_bytes()).into_owned();
    let mut parts = ct.split(';').map(str::trim);
    let mime = parts.next().unwrap_or("").to_ascii_lowercase();
    let utf8 = parts.all(|p| {
        p.split_once('=').is_none_or(|(k, v)| {
            !k.trim().eq_ignore_ascii_case("charset")
                || v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        })
    });
    match mime.as_str() {
        wire::BINARY_CONTENT_TYPE => Ok(Format::Binary),
        wire::JSON_CONTENT_TYPE | "application/x-www-form-urlencoded" | "text/plain" | ""
            if utf8 =>
        {
            Ok(Format::Json)
        }
        _ => Err(ct),
    }
}

/// `Authorization: Bearer <token>`, compared in time independent of where it differs.
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
    else {
        return false;
    };
    let expected = token.as_bytes();
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_type(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_str(ct).expect("header"),
        );
        h
    }

    #[test]
    fn content_types_pick_the_format() {
        assert_eq!(request_format(&HeaderMap::new()), Ok(Format::Json));
        assert_eq!(
            request_format(&with_type("application/json; charset=UTF-8")),
            Ok(Format::Json)
        );
        assert_eq!(
            request_format(&with_type("application/x-tidegate-batch")),
            Ok(Format::Binary)
        );
        assert!(request_format(&with_type("application/json; charset=latin1")).is_err());
        assert!(request_format(&with_type("image/png")).is_err());
    }

    #[test]
    fn bearer_token_must_match_exactly() {
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, "s3cret"));
        for (value, ok) in [
            ("Bearer s3cret", true),
            ("Bearer s3cre", false),
            ("Bearer s3cret2", false),
            ("bearer s3cret", false),
            ("Basic s3cret", false),
        ] {
            h.insert(
                header::AUTHORIZATION,
                header::HeaderValue::from_static(value),
            );
            assert_eq!(authorized(&h, "s3cret"), ok, "{value}");
        }
    }
}
