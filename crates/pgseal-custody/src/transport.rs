//! The service's HTTP transport, both ends, with no pgseal logic in it: a [`Server`] that listens
//! on TLS (HTTP/1.1 and HTTP/2 by ALPN) or on a local Unix socket, reads each request whole
//! within limits and hands it to a [`Handler`] on a blocking thread; and a blocking [`Client`]
//! that sends one request and returns the status and body.
//!
//! The server keeps its own metrics (requests by route and status, latency, failed TLS
//! handshakes) and serves them at [`wire::path::METRICS`] in the Prometheus/OpenMetrics text
//! format without calling the handler. Requests the transport refuses itself (a header that is
//! not visible ASCII → 400, a body over [`wire::MAX_BODY`] → 413, a body that does not arrive
//! within [`BODY_TIMEOUT`] → 408) never reach the handler either: they are counted in the
//! metrics and reported to [`Handler::refused`] so that the service can audit them.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{
    CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderName, HeaderValue, USER_AGENT,
};
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::wire;

/// How long the server waits, once told to stop, for the requests in flight to finish.
pub const GRACE: Duration = Duration::from_secs(30);
/// How long a client has to complete the TLS handshake once connected.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has to send a request's headers (HTTP/1.1; also the longest an idle
/// keep-alive connection is kept).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client has to send a request's body once its headers are in (→ 408).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// The most connections the server keeps open at once; one more is closed as soon as accepted.
pub const MAX_CONNECTIONS: usize = 1024;
/// The most handler calls running at once (the threads of the blocking pool); more wait.
pub const MAX_HANDLER_THREADS: usize = 64;
/// How long the client waits to be connected (TCP and TLS handshake).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the client waits for a whole request, connecting included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest response body the client reads.
pub const MAX_RESPONSE: usize = 4 * wire::MAX_BODY;

/// The ALPN protocols, in order of preference: HTTP/2, then HTTP/1.1.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];
/// The content type of the metrics (what `prometheus-client` writes).
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the errors the transport answers itself ([`wire::ErrorBody`]).
const JSON: &str = "application/json";

/// Why the transport failed. Each message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A listener could not be set up.
    #[error("cannot listen on {addr}: {source} (is another service using it?)")]
    Bind {
        /// The address or socket path.
        addr: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The Unix socket path is taken by something that is not a socket; it was left alone.
    #[error(
        "{} exists and is not a socket: it was left alone; remove it or listen on another path",
        path.display()
    )]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The server was given nothing to listen on.
    #[error("the service has nothing to listen on: give a TLS address or a Unix socket path")]
    NoListener,
    /// A certificate, private key or CA file could not be used.
    #[error("cannot use {}: {why}", path.display())]
    Certificate {
        /// The PEM file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// No CA file was given and the system's trust store holds no usable certificate.
    #[error(
        "the system's trust store holds no usable CA certificate ({why}): give the service's CA file"
    )]
    NoSystemRoots {
        /// What the loader reported.
        why: String,
    },
    /// A custody URL that is not one the client accepts.
    #[error("the custody URL {url:?} is refused: {why}")]
    Url {
        /// The URL as given.
        url: String,
        /// Why, and what to write instead.
        why: &'static str,
    },
    /// The service's certificate is not trusted.
    #[error(
        "the server certificate of {endpoint} is not trusted ({why}): {}",
        trust_hint(ca_file.as_deref())
    )]
    Untrusted {
        /// The service.
        endpoint: String,
        /// The CA file the client trusts, if any (else the system's roots).
        ca_file: Option<PathBuf>,
        /// What the certificate check found.
        why: String,
    },
    /// The TLS handshake failed for another reason than trust.
    #[error("the TLS handshake with {endpoint} failed: {source}")]
    Tls {
        /// The service.
        endpoint: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The service could not be reached.
    #[error(
        "cannot connect to {endpoint}: {source} (is the service running, and is the URL right?)"
    )]
    Connect {
        /// The service.
        endpoint: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The service did not answer in time.
    #[error("{endpoint} did not {stage} within {} s", after.as_secs())]
    Timeout {
        /// The service.
        endpoint: String,
        /// What did not happen: `connect` or `answer`.
        stage: &'static str,
        /// After how long the client gave up.
        after: Duration,
    },
    /// The HTTP exchange failed (the connection was closed mid-request, or the service
    /// answered something that is not HTTP).
    #[error("the exchange with {endpoint} failed: {source}")]
    Protocol {
        /// The service.
        endpoint: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The response's body is over [`MAX_RESPONSE`].
    #[error("{endpoint} sent a response over {MAX_RESPONSE} bytes: refused")]
    ResponseTooLarge {
        /// The service.
        endpoint: String,
    },
    /// The request the caller built cannot be sent (a method, path or header HTTP does not
    /// allow).
    #[error("the request cannot be sent: {0}")]
    InvalidRequest(String),
    /// Any other I/O error (setting up the runtime or a listener).
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

fn trust_hint(ca_file: Option<&Path>) -> String {
    match ca_file {
        Some(path) => format!(
            "it was not issued by the CA in {}; check the custody CA file, or the certificate the service presents",
            path.display()
        ),
        None => {
            "no CA in the system's trust store issued it; give the service's CA file".to_owned()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server side.

/// Who sent a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A TLS client, by its address (the TCP peer: a proxy's address if there is one).
    Tcp(SocketAddr),
    /// A local process on the Unix socket, as the kernel reports it (`SO_PEERCRED`).
    Unix {
        /// Its user id, if the kernel said.
        uid: Option<u32>,
        /// Its process id, if the kernel said.
        pid: Option<i32>,
    },
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(addr) => write!(f, "{addr}"),
            Peer::Unix { uid, pid } => {
                f.write_str("unix")?;
                if let Some(uid) = uid {
                    write!(f, " uid={uid}")?;
                }
                if let Some(pid) = pid {
                    write!(f, " pid={pid}")?;
                }
                Ok(())
            }
        }
    }
}

/// A request, read whole: its body is at most [`wire::MAX_BODY`] bytes (a larger one is
/// answered 413 without calling the handler) and arrived within [`BODY_TIMEOUT`] (else 408;
/// see [`Server::with_body_timeout`]).
#[derive(Debug, Clone)]
pub struct Request {
    /// The method (`GET`, `POST`, …).
    pub method: String,
    /// The path, with the query if there is one.
    pub path: String,
    /// The headers in the order received, names in lowercase. A value that is not visible ASCII
    /// is refused with 400 before the handler is called.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Who sent it.
    pub peer: Peer,
}

impl Request {
    /// The first value of the header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn route(&self) -> &str {
        self.path.split('?').next().unwrap_or_default()
    }
}

/// A handler's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status (a value that is not a valid status is answered as 500).
    pub status: u16,
    /// The body's content type.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type: JSON,
            body,
        }
    }

    /// An error as every route reports one ([`wire::ErrorBody`]).
    pub fn error(status: u16, kind: &str, message: impl Into<String>) -> Response {
        let body = wire::ErrorBody {
            message: message.into(),
            kind: kind.to_owned(),
        };
        Response::json(
            status,
            serde_json::to_vec(&body).expect("an ErrorBody is two strings and always serializes"),
        )
    }
}

/// A request the transport refused without calling [`Handler::handle`].
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The method.
    pub method: String,
    /// The path, with the query.
    pub path: String,
    /// Who sent it.
    pub peer: Peer,
    /// The status it was answered with (400, 408 or 413).
    pub status: u16,
    /// Why, for people.
    pub why: String,
}

/// What serves the requests: the service's operations.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. Called on a blocking thread (tokio's `spawn_blocking`, at most
    /// [`MAX_HANDLER_THREADS`] at once), so it may do RSA and database work. A panic is
    /// answered 500.
    fn handle(&self, request: Request) -> Response;

    /// Told of a request the transport refused itself (too large, too slow, a bad header), on
    /// a blocking thread too, while the answer is sent; for the audit log. Does nothing unless
    /// implemented.
    fn refused(&self, refusal: Refusal) {
        let _ = refusal;
    }
}

/// A certificate chain and its private key, PEM files (the key unencrypted: PKCS#8, PKCS#1 or
/// SEC1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate first, then the intermediates.
    pub cert_chain: PathBuf,
    /// The certificate's private key.
    pub private_key: PathBuf,
}

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// TLS on a TCP address (port 0: any free port, see [`Server::local_addrs`]).
    Tls {
        /// The address.
        addr: SocketAddr,
        /// The certificate and key.
        tls: TlsFiles,
    },
    /// A Unix socket, for clients on the same host: created with mode 0660 (who may connect is
    /// whoever may write it: its owner and group). An existing socket that nothing listens on
    /// is replaced; any other file there is refused and left alone.
    Unix {
        /// The socket's path.
        path: PathBuf,
    },
}

/// A server with its listeners bound, ready to [`run`](Server::run).
pub struct Server {
    listeners: Vec<Bound>,
    handler: Arc<dyn Handler>,
    metrics: Arc<Metrics>,
    body_timeout: Duration,
}

enum Bound {
    Tls {
        listener: std::net::TcpListener,
        addr: SocketAddr,
        acceptor: TlsAcceptor,
    },
    Unix {
        listener: std::os::unix::net::UnixListener,
        file: SocketFile,
    },
}

/// A Unix socket the server created: removed when the server stops (if a socket is still
/// there).
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(&self.0).is_ok_and(|m| m.file_type().is_socket()) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

impl Server {
    /// Binds every listener now, so that errors (a port taken, a bad certificate, a path that
    /// is not a socket) come before serving. TLS is 1.2 or 1.3 (the aws-lc-rs provider), with
    /// HTTP/2 and HTTP/1.1 offered by ALPN.
    pub fn bind(listens: Vec<Listen>, handler: Arc<dyn Handler>) -> Result<Server, TransportError> {
        if listens.is_empty() {
            return Err(TransportError::NoListener);
        }
        let mut listeners = Vec::with_capacity(listens.len());
        for listen in listens {
            match listen {
                Listen::Tls { addr, tls } => {
                    let acceptor = TlsAcceptor::from(server_tls_config(&tls)?);
                    let bind_error = |source| TransportError::Bind {
                        addr: addr.to_string(),
                        source,
                    };
                    let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
                    listener.set_nonblocking(true).map_err(bind_error)?;
                    let addr = listener.local_addr().map_err(bind_error)?;
                    listeners.push(Bound::Tls {
                        listener,
                        addr,
                        acceptor,
                    });
                }
                Listen::Unix { path } => listeners.push(bind_unix(path)?),
            }
        }
        Ok(Server {
            listeners,
            handler,
            metrics: Arc::new(Metrics::new()),
            body_timeout: BODY_TIMEOUT,
        })
    }

    /// How long a client has to send a request's body once its headers are in (default
    /// [`BODY_TIMEOUT`]); past it the request is answered 408.
    pub fn with_body_timeout(mut self, timeout: Duration) -> Server {
        self.body_timeout = timeout;
        self
    }

    /// The TCP addresses actually bound (port 0 → the port chosen), for tests and logs.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|bound| match bound {
                Bound::Tls { addr, .. } => Some(*addr),
                Bound::Unix { .. } => None,
            })
            .collect()
    }

    /// Serves until `shutdown` resolves (the front end passes SIGTERM/SIGINT), then stops
    /// accepting, lets the requests in flight finish (at most [`GRACE`]), removes its Unix
    /// sockets and returns. Runs its own tokio runtime: call it from a plain thread, not from
    /// inside a runtime.
    pub fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), TransportError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .max_blocking_threads(MAX_HANDLER_THREADS)
            .thread_name("pgseal-custody")
            .build()?;
        let result = runtime.block_on(self.serve(shutdown));
        // A handler still running past the grace period is not waited for any longer.
        runtime.shutdown_timeout(Duration::from_secs(1));
        result
    }

    async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), TransportError> {
        let (stop, stopping) = watch::channel(false);
        let shared = Arc::new(Shared {
            handler: self.handler,
            metrics: self.metrics,
            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            body_timeout: self.body_timeout,
        });
        let mut accepting = JoinSet::new();
        let mut socket_files = Vec::new();
        for bound in self.listeners {
            match bound {
                Bound::Tls {
                    listener, acceptor, ..
                } => {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    accepting.spawn(accept_tls(
                        listener,
                        acceptor,
                        shared.clone(),
                        stopping.clone(),
                    ));
                }
                Bound::Unix { listener, file } => {
                    listener.set_nonblocking(true)?;
                    let listener = tokio::net::UnixListener::from_std(listener)?;
                    socket_files.push(file);
                    accepting.spawn(accept_unix(listener, shared.clone(), stopping.clone()));
                }
            }
        }
        shutdown.await;
        let _ = stop.send(true);
        while accepting.join_next().await.is_some() {}
        drop(socket_files);
        Ok(())
    }
}

fn server_tls_config(tls: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TransportError> {
    let certs = read_certificates(&tls.cert_chain)?;
    let key = PrivateKeyDer::from_pem_file(&tls.private_key).map_err(|e| TransportError::Certificate {
        path: tls.private_key.clone(),
        why: match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "it holds no unencrypted private key (a PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY section)".to_owned()
            }
            e => e.to_string(),
        },
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the aws-lc-rs provider supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TransportError::Certificate {
            path: tls.cert_chain.clone(),
            why: format!(
                "{e} (is the key in {} this certificate's, and a kind TLS can use?)",
                tls.private_key.display()
            ),
        })?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The certificates of a PEM file; at least one.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let error = |why: String| TransportError::Certificate {
        path: path.to_owned(),
        why,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| error(e.to_string()))?;
    if certs.is_empty() {
        return Err(error("it holds no PEM CERTIFICATE section".to_owned()));
    }
    Ok(certs)
}

fn bind_unix(path: PathBuf) -> Result<Bound, TransportError> {
    let bind_error = |source| TransportError::Bind {
        addr: path.display().to_string(),
        source,
    };
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(&path) {
                Ok(_) => {
                    return Err(bind_error(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        "a process is listening on this socket",
                    )));
                }
                // Nothing listens: a socket left by a service that stopped uncleanly.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(&path).map_err(bind_error)?;
                }
                Err(e) => return Err(bind_error(e)),
            }
        }
        Ok(_) => return Err(TransportError::NotASocket { path }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_error(e)),
    }
    let listener = std::os::unix::net::UnixListener::bind(&path).map_err(bind_error)?;
    let file = SocketFile(path);
    // Until this, the umask's mode applies (typically 0755 or stricter): nobody but the owner
    // can connect, since connecting needs write permission.
    std::fs::set_permissions(&file.0, std::fs::Permissions::from_mode(0o660)).map_err(
        |source| TransportError::Bind {
            addr: file.0.display().to_string(),
            source,
        },
    )?;
    Ok(Bound::Unix { listener, file })
}

/// What every connection shares.
struct Shared {
    handler: Arc<dyn Handler>,
    metrics: Arc<Metrics>,
    slots: Arc<Semaphore>,
    body_timeout: Duration,
}

/// Resolves once the server is told to stop.
async fn stopped(mut stopping: watch::Receiver<bool>) {
    loop {
        if *stopping.borrow_and_update() {
            return;
        }
        if stopping.changed().await.is_err() {
            return;
        }
    }
}

async fn accept_tls(
    listener: tokio::net::TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    stopping: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stopped(stopping.clone()) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, addr)) => {
                    let Ok(slot) = shared.slots.clone().try_acquire_owned() else {
                        continue; // over MAX_CONNECTIONS: closed at once
                    };
                    let _ = tcp.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let shared = shared.clone();
                    let stopping = stopping.clone();
                    connections.spawn(async move {
                        let _slot = slot;
                        let _open = shared.metrics.open_connection();
                        let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
                        let tls = tokio::select! {
                            () = stopped(stopping.clone()) => return,
                            tls = handshake => match tls {
                                Ok(Ok(tls)) => tls,
                                _ => {
                                    shared.metrics.handshake_failures.inc();
                                    return;
                                }
                            },
                        };
                        serve_connection(tls, Peer::Tcp(addr), shared, stopping).await;
                    });
                }
                // Out of file descriptors and the like: wait a little rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            },
        }
    }
    drop(listener);
    drain(connections).await;
}

async fn accept_unix(
    listener: tokio::net::UnixListener,
    shared: Arc<Shared>,
    stopping: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stopped(stopping.clone()) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let Ok(slot) = shared.slots.clone().try_acquire_owned() else {
                        continue;
                    };
                    let peer = match stream.peer_cred() {
                        Ok(cred) => Peer::Unix { uid: Some(cred.uid()), pid: cred.pid() },
                        Err(_) => Peer::Unix { uid: None, pid: None },
                    };
                    let shared = shared.clone();
                    let stopping = stopping.clone();
                    connections.spawn(async move {
                        let _slot = slot;
                        let _open = shared.metrics.open_connection();
                        serve_connection(stream, peer, shared, stopping).await;
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            },
        }
    }
    drop(listener);
    drain(connections).await;
}

/// Waits for the connections to finish (each was told to stop), at most [`GRACE`]; those
/// still open then are dropped.
async fn drain(mut connections: JoinSet<()>) {
    let _ = tokio::time::timeout(GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}

async fn serve_connection<IO>(
    io: IO,
    peer: Peer,
    shared: Arc<Shared>,
    stopping: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let shared = shared.clone();
        hyper::service::service_fn(move |request| {
            serve_request(request, peer.clone(), shared.clone())
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_headers(100);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64)
        .max_header_list_size(64 * 1024);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        () = stopped(stopping) => connection.as_mut().graceful_shutdown(),
    }
    let _ = connection.await;
}

async fn serve_request(
    request: hyper::Request<Incoming>,
    peer: Peer,
    shared: Arc<Shared>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let started = Instant::now();
    let route = route_of(request.uri().path());
    let response = answer(request, peer, route, &shared).await;
    shared
        .metrics
        .record(route, response.status, started.elapsed());
    Ok(to_hyper(response))
}

/// The route label of a path: the route itself if it is one of [`wire::path::ROUTES`], else
/// `other` (so that a scanner cannot grow the label set).
fn route_of(path: &str) -> &'static str {
    wire::path::ROUTES
        .iter()
        .find(|route| **route == path)
        .copied()
        .unwrap_or("other")
}

async fn answer(
    request: hyper::Request<Incoming>,
    peer: Peer,
    route: &'static str,
    shared: &Arc<Shared>,
) -> Response {
    let (parts, body) = request.into_parts();
    let method = parts.method.as_str().to_owned();
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let refuse = |status: u16, why: String| {
        let refusal = Refusal {
            method: method.clone(),
            path: path.clone(),
            peer: peer.clone(),
            status,
            why: why.clone(),
        };
        let handler = shared.handler.clone();
        // Reported on a blocking thread, without holding up the answer.
        drop(tokio::task::spawn_blocking(move || {
            handler.refused(refusal)
        }));
        Response::error(status, "bad_request", why)
    };

    let mut headers = Vec::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        match value.to_str() {
            Ok(value) => headers.push((name.as_str().to_owned(), value.to_owned())),
            Err(_) => {
                return refuse(
                    400,
                    format!("the {name} header's value is not visible ASCII"),
                );
            }
        }
    }

    if route == wire::path::METRICS {
        if parts.method != Method::GET {
            return Response::error(405, "bad_request", "the metrics are read with GET");
        }
        return Response {
            status: 200,
            content_type: METRICS_CONTENT_TYPE,
            body: shared.metrics.encode().into_bytes(),
        };
    }

    let too_large = || format!("the request's body is over {} bytes", wire::MAX_BODY);
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > wire::MAX_BODY as u64) {
        return refuse(413, too_large());
    }
    let body = match tokio::time::timeout(
        shared.body_timeout,
        Limited::new(body, wire::MAX_BODY).collect(),
    )
    .await
    {
        Ok(Ok(collected)) => collected.to_bytes().to_vec(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return refuse(413, too_large());
        }
        Ok(Err(e)) => return refuse(400, format!("the request's body could not be read: {e}")),
        Err(_) => {
            return refuse(
                408,
                format!(
                    "the request's body did not arrive within {} s",
                    shared.body_timeout.as_secs_f64()
                ),
            );
        }
    };

    let request = Request {
        method,
        path,
        headers,
        body,
        peer,
    };
    let handler = shared.handler.clone();
    match tokio::task::spawn_blocking(move || handler.handle(request)).await {
        Ok(response) => response,
        Err(_) => Response::error(500, "internal", "the service failed to answer this request"),
    }
}

fn to_hyper(response: Response) -> hyper::Response<Full<Bytes>> {
    let (status, content_type, body) = match (
        StatusCode::from_u16(response.status),
        HeaderValue::from_str(response.content_type),
    ) {
        (Ok(status), Ok(content_type)) => (status, content_type, response.body),
        _ => {
            let error = Response::error(500, "internal", "the service built an invalid response");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                HeaderValue::from_static(JSON),
                error.body,
            )
        }
    };
    let mut answer = hyper::Response::new(Full::new(Bytes::from(body)));
    *answer.status_mut() = status;
    answer.headers_mut().insert(CONTENT_TYPE, content_type);
    answer
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    answer
}

// ---------------------------------------------------------------------------------------------
// Metrics.

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

/// The server's own metrics (names prefixed `pgseal_custody_`):
/// - `requests_total{route, status}`: requests answered;
/// - `request_duration_seconds{route}`: from the headers read to the answer built;
/// - `tls_handshake_failures_total`: connections that failed or timed out in the handshake
///   (untrusting clients, scanners);
/// - `open_connections`.
struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    handshake_failures: Counter,
    connections: Gauge,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms … about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("pgseal_custody");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let handshake_failures = Counter::default();
        let connections = Gauge::default();
        registry.register(
            "requests",
            "Requests answered, by route (other: a path that is no route) and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a request's headers read to its answer, by route",
            latency.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "Connections whose TLS handshake failed or timed out",
            handshake_failures.clone(),
        );
        registry.register(
            "open_connections",
            "Connections open now",
            connections.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            handshake_failures,
            connections,
        }
    }

    fn record(&self, route: &'static str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
        self.latency
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
    }

    fn open_connection(&self) -> OpenConnection {
        self.connections.inc();
        OpenConnection(self.connections.clone())
    }

    fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }
}

/// Counts a connection as open while it lives (a gauge shares its value with its clones).
struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

// ---------------------------------------------------------------------------------------------
// The client side.

/// Where the service is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Over TLS.
    Https {
        /// `https://host[:port]`.
        base: String,
        /// The CA that issued the service's certificate; `None`: the system's trust store
        /// (read with `rustls-native-certs`, so that the host's own CA policy applies, as
        /// updated by its package manager).
        ca_file: Option<PathBuf>,
    },
    /// Over a Unix socket on this host.
    Unix {
        /// The socket's path.
        path: PathBuf,
    },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Https { base, .. } => f.write_str(base),
            Endpoint::Unix { path } => write!(f, "unix://{}", path.display()),
        }
    }
}

impl Endpoint {
    /// Parses a custody URL: `https://host[:port]` (port 443 if none), or `unix:///abs/path`
    /// (the CA file is then unused). `http://` is refused: the service hands out file keys and
    /// its requests carry signatures worth replaying, so it is reached over TLS or a local
    /// socket only.
    pub fn parse(url: &str, ca_file: Option<&Path>) -> Result<Endpoint, TransportError> {
        let refuse = |why| TransportError::Url {
            url: url.to_owned(),
            why,
        };
        if let Some(path) = url.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(refuse(
                    "a Unix socket is unix:// then an absolute path, as in unix:///run/pgseal/custody.sock",
                ));
            }
            return Ok(Endpoint::Unix {
                path: PathBuf::from(path),
            });
        }
        if url
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
        {
            return Err(refuse(
                "plain http is not offered: the service is reached over TLS (https://host:port) or a local Unix socket (unix:///path)",
            ));
        }
        let Some(rest) = url.strip_prefix("https://") else {
            return Err(refuse("a custody URL starts with https:// or unix://"));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        https_target(authority).map_err(refuse)?;
        Ok(Endpoint::Https {
            base: format!("https://{authority}"),
            ca_file: ca_file.map(Path::to_owned),
        })
    }
}

/// The host (without brackets) and port of an `https://` URL's authority.
fn https_target(authority: &str) -> Result<(String, u16), &'static str> {
    const SHAPE: &str =
        "a custody URL is https://HOST[:PORT], with no user, path, query or fragment";
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return Err(SHAPE);
    }
    let parsed: hyper::http::uri::Authority = authority.parse().map_err(|_| SHAPE)?;
    let bracketed = parsed.host();
    // What follows the host: nothing (port 443) or `:PORT`, a port TCP has.
    let port = match authority.strip_prefix(bracketed).ok_or(SHAPE)? {
        "" => 443,
        rest => rest
            .strip_prefix(':')
            .and_then(|port| port.parse::<u16>().ok())
            .filter(|port| *port != 0)
            .ok_or("its port is not a number from 1 to 65535")?,
    };
    let host = bracketed
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(bracketed);
    if host.is_empty() {
        return Err(SHAPE);
    }
    Ok((host.to_owned(), port))
}

/// A blocking client of the service: each [`send`](Client::send) opens a connection (HTTP/2 or
/// HTTP/1.1 by ALPN over TLS, HTTP/1.1 on a Unix socket), sends one request, reads the whole
/// answer and closes the connection (TLS session resumption keeps the next handshake short).
/// It runs hyper on a current-thread tokio runtime of its own: do not call it from inside a
/// runtime. It may be shared between threads.
pub struct Client {
    endpoint: Endpoint,
    target: Target,
    runtime: tokio::runtime::Runtime,
}

enum Target {
    Tls {
        connector: TlsConnector,
        server_name: ServerName<'static>,
        host: String,
        port: u16,
        authority: String,
    },
    Unix {
        path: PathBuf,
    },
}

impl Client {
    /// A client of `endpoint`: reads its CA file (or the system's roots) now.
    pub fn new(endpoint: Endpoint) -> Result<Client, TransportError> {
        let target = match &endpoint {
            Endpoint::Https { base, ca_file } => {
                let url_error = |why| TransportError::Url {
                    url: base.clone(),
                    why,
                };
                let authority = base
                    .strip_prefix("https://")
                    .ok_or_else(|| url_error("a custody URL starts with https:// or unix://"))?;
                let (host, port) = https_target(authority).map_err(url_error)?;
                let server_name = ServerName::try_from(host.clone())
                    .map_err(|_| url_error("its host is neither a DNS name nor an IP address"))?;
                let mut config = rustls::ClientConfig::builder_with_provider(provider())
                    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                    .expect("the aws-lc-rs provider supports TLS 1.2 and 1.3")
                    .with_root_certificates(trust_roots(ca_file.as_deref())?)
                    .with_no_client_auth();
                config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
                Target::Tls {
                    connector: TlsConnector::from(Arc::new(config)),
                    server_name,
                    host,
                    port,
                    authority: authority.to_owned(),
                }
            }
            Endpoint::Unix { path } => Target::Unix { path: path.clone() },
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Client {
            endpoint,
            target,
            runtime,
        })
    }

    /// The service this client talks to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends one request (`path` from `/`, with its query) and returns the status and body,
    /// whatever the status. Gives up after [`CONNECT_TIMEOUT`] to connect and
    /// [`REQUEST_TIMEOUT`] in all.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), TransportError> {
        let method = Method::from_bytes(method.as_bytes()).map_err(|_| {
            TransportError::InvalidRequest(format!("{method:?} is not an HTTP method"))
        })?;
        if !path.starts_with('/') {
            return Err(TransportError::InvalidRequest(format!(
                "the path {path:?} does not start with /"
            )));
        }
        let mut header_map = Vec::with_capacity(headers.len());
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                TransportError::InvalidRequest(format!("{name:?} is not a header name"))
            })?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                TransportError::InvalidRequest(format!(
                    "the {name} header's value is not visible ASCII"
                ))
            })?;
            header_map.push((name, value));
        }
        let endpoint = self.endpoint.to_string();
        let body = Bytes::copy_from_slice(body);
        let exchange = async {
            match &self.target {
                Target::Tls {
                    connector,
                    server_name,
                    host,
                    port,
                    authority,
                } => {
                    let connect = async {
                        let tcp = tokio::net::TcpStream::connect((host.as_str(), *port))
                            .await
                            .map_err(|source| TransportError::Connect {
                                endpoint: endpoint.clone(),
                                source,
                            })?;
                        let _ = tcp.set_nodelay(true);
                        connector
                            .connect(server_name.clone(), tcp)
                            .await
                            .map_err(|e| self.handshake_error(e))
                    };
                    let tls = connect_within(&endpoint, connect).await?;
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    let request = build_request(method, path, authority, h2, header_map, body)?;
                    talk(tls, h2, request, &endpoint).await
                }
                Target::Unix { path: socket } => {
                    let connect = async {
                        tokio::net::UnixStream::connect(socket)
                            .await
                            .map_err(|source| TransportError::Connect {
                                endpoint: endpoint.clone(),
                                source,
                            })
                    };
                    let stream = connect_within(&endpoint, connect).await?;
                    let request =
                        build_request(method, path, "localhost", false, header_map, body)?;
                    talk(stream, false, request, &endpoint).await
                }
            }
        };
        self.runtime.block_on(async {
            tokio::time::timeout(REQUEST_TIMEOUT, exchange)
                .await
                .unwrap_or_else(|_| {
                    Err(TransportError::Timeout {
                        endpoint: endpoint.clone(),
                        stage: "answer",
                        after: REQUEST_TIMEOUT,
                    })
                })
        })
    }

    fn handshake_error(&self, error: io::Error) -> TransportError {
        let endpoint = self.endpoint.to_string();
        let rustls_error = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        if let Some(rustls::Error::InvalidCertificate(why)) = rustls_error {
            let ca_file = match &self.endpoint {
                Endpoint::Https { ca_file, .. } => ca_file.clone(),
                Endpoint::Unix { .. } => None,
            };
            return TransportError::Untrusted {
                endpoint,
                ca_file,
                why: why.to_string(),
            };
        }
        TransportError::Tls {
            endpoint,
            source: error,
        }
    }
}

/// The roots the client trusts: the CA file's certificates, or the system's.
fn trust_roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, TransportError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in read_certificates(path)? {
                roots.add(cert).map_err(|e| TransportError::Certificate {
                    path: path.to_owned(),
                    why: format!("a certificate in it cannot be a trust anchor: {e}"),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                let why = match found.errors.first() {
                    Some(error) => error.to_string(),
                    None => "none found".to_owned(),
                };
                return Err(TransportError::NoSystemRoots { why });
            }
        }
    }
    Ok(roots)
}

async fn connect_within<T>(
    endpoint: &str,
    connect: impl Future<Output = Result<T, TransportError>>,
) -> Result<T, TransportError> {
    tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .unwrap_or_else(|_| {
            Err(TransportError::Timeout {
                endpoint: endpoint.to_owned(),
                stage: "connect",
                after: CONNECT_TIMEOUT,
            })
        })
}

fn build_request(
    method: Method,
    path: &str,
    authority: &str,
    h2: bool,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
) -> Result<hyper::Request<Full<Bytes>>, TransportError> {
    // HTTP/2 wants the absolute form; HTTP/1.1 the path and a Host header.
    let uri = if h2 {
        format!("https://{authority}{path}")
    } else {
        path.to_owned()
    };
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(body))
        .map_err(|e| TransportError::InvalidRequest(e.to_string()))?;
    let map = request.headers_mut();
    if !h2 {
        let host = HeaderValue::from_str(authority)
            .map_err(|_| TransportError::InvalidRequest(format!("{authority:?} is not a host")))?;
        map.insert(HOST, host);
    }
    map.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("pgseal/", env!("CARGO_PKG_VERSION"))),
    );
    for (name, value) in headers {
        map.append(name, value);
    }
    Ok(request)
}

async fn talk<T>(
    io: T,
    h2: bool,
    request: hyper::Request<Full<Bytes>>,
    endpoint: &str,
) -> Result<(u16, Vec<u8>), TransportError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let protocol = |source: hyper::Error| TransportError::Protocol {
        endpoint: endpoint.to_owned(),
        source: Box::new(source),
    };
    let io = TokioIo::new(io);
    if h2 {
        // hyper runs an HTTP/2 connection in tasks of its own: they are kept here and ended
        // with the exchange, so that the connection is closed when `send` returns rather than
        // left open until the runtime next runs.
        let tasks = Tasks::default();
        let exchange = async {
            let (mut sender, connection) = hyper::client::conn::http2::handshake(tasks.clone(), io)
                .await
                .map_err(protocol)?;
            let exchange = async move {
                let response = sender.send_request(request).await.map_err(protocol)?;
                read_response(response, endpoint).await
            };
            drive(connection, exchange).await
        };
        let result = exchange.await;
        tasks.end().await;
        result
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(protocol)?;
        let exchange = async move {
            let response = sender.send_request(request).await.map_err(protocol)?;
            read_response(response, endpoint).await
        };
        drive(connection, exchange).await
    }
}

/// An executor whose tasks can all be ended at once.
#[derive(Clone, Default)]
struct Tasks(Arc<std::sync::Mutex<JoinSet<()>>>);

impl<F> hyper::rt::Executor<F> for Tasks
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        self.0
            .lock()
            .expect("the task list's lock is never held across a panic")
            .spawn(async move {
                future.await;
            });
    }
}

impl Tasks {
    /// Cancels every task and waits until each is dropped (with what it held).
    async fn end(self) {
        let mut tasks = std::mem::take(
            &mut *self
                .0
                .lock()
                .expect("the task list's lock is never held across a panic"),
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// Runs the exchange while driving its connection; if the connection ends first, the exchange
/// still reports how it ended (an error, since its response can no longer come).
async fn drive<C, E, T>(connection: C, exchange: E) -> T
where
    C: Future,
    E: Future<Output = T>,
{
    tokio::pin!(connection);
    tokio::pin!(exchange);
    tokio::select! {
        biased;
        out = &mut exchange => return out,
        _ = &mut connection => {}
    }
    exchange.await
}

async fn read_response(
    response: hyper::Response<Incoming>,
    endpoint: &str,
) -> Result<(u16, Vec<u8>), TransportError> {
    let status = response.status().as_u16();
    match Limited::new(response.into_body(), MAX_RESPONSE)
        .collect()
        .await
    {
        Ok(body) => Ok((status, body.to_bytes().to_vec())),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(TransportError::ResponseTooLarge {
                endpoint: endpoint.to_owned(),
            })
        }
        Err(source) => Err(TransportError::Protocol {
            endpoint: endpoint.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custody_urls() {
        let ca = Path::new("/etc/pgseal/ca.pem");
        assert_eq!(
            Endpoint::parse("https://custody.example:8443", Some(ca)).unwrap(),
            Endpoint::Https {
                base: "https://custody.example:8443".into(),
                ca_file: Some(ca.to_owned())
            }
        );
        assert_eq!(
            Endpoint::parse("https://[::1]:8443/", None).unwrap(),
            Endpoint::Https {
                base: "https://[::1]:8443".into(),
                ca_file: None
            }
        );
        assert_eq!(https_target("[::1]:8443").unwrap(), ("::1".into(), 8443));
        assert_eq!(
            https_target("custody.example").unwrap(),
            ("custody.example".into(), 443)
        );
        assert_eq!(
            Endpoint::parse("unix:///run/pgseal/custody.sock", None).unwrap(),
            Endpoint::Unix {
                path: "/run/pgseal/custody.sock".into()
            }
        );
        for bad in [
            "http://custody.example",
            "HTTP://custody.example",
            "https://",
            "https://custody.example/v1",
            "https://user@custody.example",
            "https://custody.example?x=1",
            "https://custody.example:99999",
            "https://custody.example:0",
            "https://custody.example:",
            "unix://relative.sock",
            "custody.example:8443",
        ] {
            assert!(
                matches!(Endpoint::parse(bad, None), Err(TransportError::Url { .. })),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn unknown_paths_are_labelled_other() {
        assert_eq!(route_of(wire::path::UNWRAP), wire::path::UNWRAP);
        assert_eq!(route_of("/v1/unwrap/x"), "other");
        assert_eq!(route_of("/wp-login.php"), "other");
    }
}
