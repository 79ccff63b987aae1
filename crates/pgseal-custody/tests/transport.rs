//! The custody transport over real sockets on loopback: TLS with a CA and a server certificate
//! made here, and Unix sockets; a handler that echoes what it was given.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pgseal_custody::transport::{
    Client, Endpoint, Handler, Listen, Peer, Refusal, Request, Response, Server, TlsFiles,
    TransportError,
};
use pgseal_custody::wire;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};

/// A CA, and a certificate it issued for localhost and 127.0.0.1, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    ca: PathBuf,
    tls: TlsFiles,
}

fn make_pki(name: &str) -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
    let ca = dir.path().join("ca.pem");
    let cert_chain = dir.path().join("server.pem");
    let private_key = dir.path().join("server.key");
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    std::fs::write(&cert_chain, server_cert.pem()).unwrap();
    std::fs::write(&private_key, server_key.serialize_pem()).unwrap();
    Pki {
        dir,
        ca,
        tls: TlsFiles {
            cert_chain,
            private_key,
        },
    }
}

/// Answers with what it was given, as JSON; `/missing` is 404, `/slow` takes a while (telling
/// the test when it starts and when it is done), `/panic` panics.
#[derive(Default)]
struct Echo {
    calls: AtomicUsize,
    refusals: std::sync::Mutex<Vec<(u16, String)>>,
    slow_started: std::sync::Mutex<Option<mpsc::Sender<()>>>,
    slow_done: AtomicBool,
}

impl Handler for Echo {
    fn handle(&self, request: Request) -> Response {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let route = request.route().to_owned();
        if route == "/panic" {
            panic!("the handler failed");
        }
        if route == "/slow" {
            if let Some(started) = self.slow_started.lock().unwrap().as_ref() {
                started.send(()).unwrap();
            }
            std::thread::sleep(Duration::from_millis(1500));
            self.slow_done.store(true, Ordering::SeqCst);
        }
        let peer = match &request.peer {
            Peer::Tcp(addr) => json!({ "tcp": addr.to_string() }),
            Peer::Unix { uid, pid } => json!({ "uid": uid, "pid": pid }),
        };
        let body = json!({
            "method": request.method,
            "path": request.path,
            "headers": request.headers,
            "user": request.header("X-PgSeal-User"),
            "body": String::from_utf8_lossy(&request.body),
            "body_len": request.body.len(),
            "peer": peer,
        });
        if route == "/huge" {
            return Response::json(200, vec![b' '; pgseal_custody::transport::MAX_RESPONSE + 1]);
        }
        let status = if route == "/missing" { 404 } else { 200 };
        Response::json(status, serde_json::to_vec(&body).unwrap())
    }

    fn refused(&self, refusal: Refusal) {
        self.refusals
            .lock()
            .unwrap()
            .push((refusal.status, refusal.path));
    }
}

/// A running server: stop it with [`Running::stop`].
struct Running {
    addrs: Vec<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), TransportError>>>,
}

impl Running {
    fn start(server: Server) -> Running {
        let addrs = server.local_addrs();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            server.run(async move {
                let _ = stopped.await;
            })
        });
        Running {
            addrs,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("https://localhost:{}", self.addrs[0].port())
    }

    fn stop(mut self) -> Result<(), TransportError> {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn tls_server(pki: &Pki, echo: &Arc<Echo>) -> Running {
    let listen = Listen::Tls {
        addr: "127.0.0.1:0".parse().unwrap(),
        tls: pki.tls.clone(),
    };
    Running::start(Server::bind(vec![listen], echo.clone()).unwrap())
}

fn unix_server(path: &Path, echo: &Arc<Echo>) -> Running {
    let listen = Listen::Unix {
        path: path.to_owned(),
    };
    Running::start(Server::bind(vec![listen], echo.clone()).unwrap())
}

fn tls_client(running: &Running, ca: &Path) -> Client {
    Client::new(Endpoint::parse(&running.url(), Some(ca)).unwrap()).unwrap()
}

fn unix_client(path: &Path) -> Client {
    Client::new(Endpoint::parse(&format!("unix://{}", path.display()), None).unwrap()).unwrap()
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

/// Sends raw bytes on a Unix socket and returns the status line of the answer.
fn raw_unix(path: &Path, request: &[u8]) -> String {
    let mut stream = std::os::unix::net::UnixStream::connect(path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The server may answer (a 413) and close before the whole request is written: what it
    // sent is still there to read, so a broken pipe here is no failure.
    let _ = stream.write_all(request);
    status_line(&mut stream)
}

/// Reads an HTTP/1.1 answer until its headers are in, and returns its status line.
fn status_line(stream: &mut impl Read) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// A TLS connection to the server by rustls itself, offering `alpn`, with only `versions`.
fn raw_tls(
    running: &Running,
    ca: &Path,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connection =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let tcp = std::net::TcpStream::connect(running.addrs[0]).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).unwrap();
    }
    stream
}

#[test]
fn a_request_over_tls_reaches_the_handler_whole_and_its_answer_comes_back() {
    let pki = make_pki("good");
    let echo = Arc::new(Echo::default());
    let running = tls_server(&pki, &echo);
    let client = tls_client(&running, &pki.ca);
    let (status, body) = client
        .send(
            "POST",
            "/v1/unwrap?file=a.pgseal",
            &[
                ("x-pgseal-user", "alice".to_owned()),
                ("content-type", "application/json".to_owned()),
            ],
            br#"{"hello":"world"}"#,
        )
        .unwrap();
    assert_eq!(status, 200);
    let echoed = json_of(&body);
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["path"], "/v1/unwrap?file=a.pgseal");
    assert_eq!(echoed["user"], "alice");
    assert_eq!(echoed["body"], r#"{"hello":"world"}"#);
    let headers = echoed["headers"].as_array().unwrap();
    assert!(
        headers
            .iter()
            .any(|h| h[0] == "content-type" && h[1] == "application/json")
    );
    assert!(
        headers
            .iter()
            .all(|h| h[0].as_str().unwrap() == h[0].as_str().unwrap().to_lowercase())
    );
    let peer = echoed["peer"]["tcp"].as_str().unwrap();
    assert!(peer.starts_with("127.0.0.1:"), "{peer}");

    // A 404 from the handler is a status, not an error; and the connection is new each time.
    let (status, _) = client.send("GET", "/missing", &[], b"").unwrap();
    assert_eq!(status, 404);
    assert_eq!(echo.calls.load(Ordering::SeqCst), 2);
    // The client left no connection open: the server stops at once, not after its grace
    // period.
    let stopping = Instant::now();
    running.stop().unwrap();
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "{:?}",
        stopping.elapsed()
    );
}

#[test]
fn the_server_speaks_h2_and_http_1_1_by_alpn_over_tls_1_2_and_1_3() {
    let pki = make_pki("good");
    let echo = Arc::new(Echo::default());
    let running = tls_server(&pki, &echo);
    let both: &[&[u8]] = &[b"h2", b"http/1.1"];
    let tls13 = &[&rustls::version::TLS13];
    let tls12 = &[&rustls::version::TLS12];

    let stream = raw_tls(&running, &pki.ca, both, tls13);
    assert_eq!(stream.conn.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(
        stream.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    drop(stream);

    for versions in [tls13, tls12] {
        let mut stream = raw_tls(&running, &pki.ca, &[b"http/1.1"], versions);
        assert_eq!(stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        stream
            .write_all(b"GET /v1/health HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .unwrap();
        let status = status_line(&mut stream);
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    }
    let mut stream = raw_tls(&running, &pki.ca, &[], tls12);
    assert_eq!(
        stream.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    stream
        .write_all(b"GET /v1/health HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .unwrap();
    assert!(status_line(&mut stream).starts_with("HTTP/1.1 200"));
    assert_eq!(echo.calls.load(Ordering::SeqCst), 3);
    running.stop().unwrap();
}

#[test]
fn a_client_trusting_another_ca_refuses_the_service_and_the_handler_is_never_called() {
    let pki = make_pki("good");
    let other = make_pki("other");
    let echo = Arc::new(Echo::default());
    let running = tls_server(&pki, &echo);
    let client = tls_client(&running, &other.ca);
    let error = client
        .send("POST", "/v1/unwrap", &[], b"{}")
        .expect_err("a certificate from an unknown CA was trusted");
    match &error {
        TransportError::Untrusted { ca_file, .. } => {
            assert_eq!(ca_file.as_deref(), Some(other.ca.as_path()));
        }
        other => panic!("expected Untrusted, got {other:?}"),
    }
    assert!(error.to_string().contains(&other.ca.display().to_string()));
    assert_eq!(echo.calls.load(Ordering::SeqCst), 0);

    // The failed handshake is counted.
    let (status, metrics) = tls_client(&running, &pki.ca)
        .send("GET", wire::path::METRICS, &[], b"")
        .unwrap();
    assert_eq!(status, 200);
    let samples = parse_metrics(&String::from_utf8(metrics).unwrap());
    assert_eq!(
        samples.get(&("pgseal_custody_tls_handshake_failures_total".into(), vec![])),
        Some(&1.0)
    );
    drop(other.dir);
    running.stop().unwrap();
}

#[test]
fn over_a_unix_socket_the_peer_is_this_process() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("custody.sock");
    let echo = Arc::new(Echo::default());
    let running = unix_server(&socket, &echo);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660, "socket mode {mode:o}");

    let (status, body) = unix_client(&socket)
        .send("GET", wire::path::HEALTH, &[], b"")
        .unwrap();
    assert_eq!(status, 200);
    let echoed = json_of(&body);
    // Our uid, as the file system sees it, without unsafe code.
    let marker = dir.path().join("mine");
    std::fs::write(&marker, b"").unwrap();
    let uid = std::fs::metadata(&marker).unwrap().uid();
    assert_eq!(echoed["peer"]["uid"], json!(uid));
    assert_eq!(echoed["peer"]["pid"], json!(std::process::id()));

    running.stop().unwrap();
    assert!(
        !socket.exists(),
        "the socket was not removed when the server stopped"
    );
}

#[test]
fn a_body_over_max_body_is_refused_413_without_calling_the_handler() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("custody.sock");
    let echo = Arc::new(Echo::default());
    let running = unix_server(&socket, &echo);
    let client = unix_client(&socket);

    // Declared too large. The server answers 413 without reading the body and closes: a client
    // still writing it may see the answer, or only the closed connection (a broken pipe).
    match client.send(
        "POST",
        wire::path::UNWRAP,
        &[],
        &vec![b'x'; wire::MAX_BODY + 1],
    ) {
        Ok((status, body)) => {
            assert_eq!(status, 413);
            let error: wire::ErrorBody = serde_json::from_slice(&body).unwrap();
            assert_eq!(error.kind, "bad_request");
        }
        Err(TransportError::Protocol { .. }) => {}
        Err(e) => panic!("{e}"),
    }
    // Not declared (chunked), found too large while reading.
    let chunk = vec![b'y'; 64 * 1024];
    let mut raw =
        b"POST /v1/unwrap HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..(wire::MAX_BODY / chunk.len() + 1) {
        raw.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        raw.extend_from_slice(&chunk);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let status_line = raw_unix(&socket, &raw);
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    assert_eq!(echo.calls.load(Ordering::SeqCst), 0);

    // Exactly MAX_BODY is accepted.
    let (status, body) = client
        .send("POST", wire::path::UNWRAP, &[], &vec![b'z'; wire::MAX_BODY])
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(json_of(&body)["body_len"], json!(wire::MAX_BODY));
    assert_eq!(echo.calls.load(Ordering::SeqCst), 1);

    running.stop().unwrap();
    // Both refusals were reported for the audit log.
    let refusals = echo.refusals.lock().unwrap().clone();
    assert_eq!(
        refusals,
        vec![
            (413, wire::path::UNWRAP.to_owned()),
            (413, wire::path::UNWRAP.to_owned())
        ]
    );
}

#[test]
fn a_body_that_does_not_arrive_in_time_is_408_and_a_non_ascii_header_is_400() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("custody.sock");
    let echo = Arc::new(Echo::default());
    let server = Server::bind(
        vec![Listen::Unix {
            path: socket.clone(),
        }],
        echo.clone(),
    )
    .unwrap()
    .with_body_timeout(Duration::from_millis(500));
    let running = Running::start(server);

    // Ten bytes promised, three sent, then silence.
    let started = Instant::now();
    let status_line = raw_unix(
        &socket,
        b"POST /v1/unwrap HTTP/1.1\r\nhost: localhost\r\ncontent-length: 10\r\n\r\nabc",
    );
    assert!(status_line.starts_with("HTTP/1.1 408"), "{status_line}");
    assert!(started.elapsed() >= Duration::from_millis(500));

    let status_line = raw_unix(
        &socket,
        b"GET /v1/health HTTP/1.1\r\nhost: localhost\r\nx-pgseal-user: al\xc3\xafce\r\n\r\n",
    );
    assert!(status_line.starts_with("HTTP/1.1 400"), "{status_line}");
    assert_eq!(echo.calls.load(Ordering::SeqCst), 0);
    running.stop().unwrap();
}

#[test]
fn a_panicking_handler_is_answered_500_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("custody.sock");
    let echo = Arc::new(Echo::default());
    let running = unix_server(&socket, &echo);
    let client = unix_client(&socket);
    let (status, body) = client.send("POST", "/panic", &[], b"").unwrap();
    assert_eq!(status, 500);
    assert_eq!(
        serde_json::from_slice::<wire::ErrorBody>(&body)
            .unwrap()
            .kind,
        "internal"
    );
    let (status, _) = client.send("GET", wire::path::HEALTH, &[], b"").unwrap();
    assert_eq!(status, 200);
    running.stop().unwrap();
}

/// `name{labels} value` lines of the exposition, keyed by name and sorted labels.
fn parse_metrics(text: &str) -> BTreeMap<(String, Vec<(String, String)>), f64> {
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample line has a value");
        let value: f64 = value.parse().expect("a sample's value is a number");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').expect("labels end with }");
                let mut labels: Vec<(String, String)> = inner
                    .split(',')
                    .filter(|l| !l.is_empty())
                    .map(|label| {
                        let (key, quoted) = label.split_once('=').expect("a label is key=value");
                        let value = quoted
                            .strip_prefix('"')
                            .and_then(|v| v.strip_suffix('"'))
                            .expect("a label value is quoted");
                        (key.to_owned(), value.to_owned())
                    })
                    .collect();
                labels.sort();
                (name.to_owned(), labels)
            }
            None => (series.to_owned(), Vec::new()),
        };
        assert!(
            samples.insert((name, labels), value).is_none(),
            "a series appears twice: {line}"
        );
    }
    assert!(
        text.ends_with("# EOF\n"),
        "the exposition is not terminated"
    );
    samples
}

fn requests(route: &str, status: u16) -> (String, Vec<(String, String)>) {
    (
        "pgseal_custody_requests_total".to_owned(),
        vec![
            ("route".to_owned(), route.to_owned()),
            ("status".to_owned(), status.to_string()),
        ],
    )
}

#[test]
fn metrics_count_requests_by_route_and_status_without_calling_the_handler() {
    let pki = make_pki("good");
    let echo = Arc::new(Echo::default());
    let running = tls_server(&pki, &echo);
    let client = tls_client(&running, &pki.ca);
    for _ in 0..2 {
        assert_eq!(
            client.send("GET", wire::path::HEALTH, &[], b"").unwrap().0,
            200
        );
    }
    assert_eq!(
        client
            .send("POST", wire::path::UNWRAP, &[], b"{}")
            .unwrap()
            .0,
        200
    );
    for path in ["/missing", "/missing?x=1", "/wp-login.php"] {
        client.send("GET", path, &[], b"").unwrap();
    }
    let too_large = vec![0u8; wire::MAX_BODY + 1];
    assert_eq!(
        client
            .send("POST", wire::path::UNWRAP, &[], &too_large)
            .unwrap()
            .0,
        413
    );
    let calls = echo.calls.load(Ordering::SeqCst);
    assert_eq!(calls, 6);

    let (status, text) = client.send("GET", wire::path::METRICS, &[], b"").unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        echo.calls.load(Ordering::SeqCst),
        calls,
        "/metrics called the handler"
    );
    let samples = parse_metrics(&String::from_utf8(text).unwrap());
    assert_eq!(samples.get(&requests(wire::path::HEALTH, 200)), Some(&2.0));
    assert_eq!(samples.get(&requests(wire::path::UNWRAP, 200)), Some(&1.0));
    assert_eq!(samples.get(&requests(wire::path::UNWRAP, 413)), Some(&1.0));
    assert_eq!(samples.get(&requests("other", 404)), Some(&2.0));
    assert_eq!(samples.get(&requests("other", 200)), Some(&1.0));
    // Only known routes and `other` appear as labels.
    for (name, labels) in samples.keys() {
        for (key, value) in labels {
            if key == "route" {
                assert!(
                    value == "other" || wire::path::ROUTES.contains(&value.as_str()),
                    "{name} has route {value}"
                );
            }
        }
    }
    let count = |route: &str| {
        samples
            .get(&(
                "pgseal_custody_request_duration_seconds_count".to_owned(),
                vec![("route".to_owned(), route.to_owned())],
            ))
            .copied()
    };
    assert_eq!(count(wire::path::HEALTH), Some(2.0));
    assert_eq!(count("other"), Some(3.0));
    running.stop().unwrap();
}

#[test]
fn run_returns_after_shutdown_once_the_request_in_flight_has_completed() {
    let pki = make_pki("good");
    let (started_tx, started_rx) = mpsc::channel();
    let echo = Arc::new(Echo {
        slow_started: std::sync::Mutex::new(Some(started_tx)),
        ..Echo::default()
    });
    let running = tls_server(&pki, &echo);
    let client = tls_client(&running, &pki.ca);
    let in_flight = std::thread::spawn(move || client.send("POST", "/slow", &[], b"slow"));
    started_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the slow request never reached the handler");
    let url = running.url();
    running.stop().unwrap();
    // run returned: by then the request in flight was answered.
    assert!(echo.slow_done.load(Ordering::SeqCst));
    let (status, body) = in_flight.join().unwrap().unwrap();
    assert_eq!(status, 200);
    assert_eq!(json_of(&body)["body"], "slow");
    // And nothing listens any more.
    let after = Client::new(Endpoint::parse(&url, Some(&pki.ca)).unwrap()).unwrap();
    match after.send("GET", wire::path::HEALTH, &[], b"") {
        Err(TransportError::Connect { .. }) => {}
        other => panic!("expected Connect after shutdown, got {other:?}"),
    }
}

#[test]
fn binding_a_taken_port_is_a_bind_error() {
    let pki = make_pki("good");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let result = Server::bind(
        vec![Listen::Tls {
            addr,
            tls: pki.tls.clone(),
        }],
        Arc::new(Echo::default()),
    );
    match result {
        Err(TransportError::Bind { addr: named, .. }) => assert_eq!(named, addr.to_string()),
        Err(other) => panic!("expected Bind, got {other:?}"),
        Ok(_) => panic!("a taken port was bound"),
    }
}

#[test]
fn a_certificate_file_that_is_not_one_is_refused_before_serving() {
    let pki = make_pki("good");
    let garbage = pki.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    for tls in [
        TlsFiles {
            cert_chain: garbage.clone(),
            private_key: pki.tls.private_key.clone(),
        },
        TlsFiles {
            cert_chain: pki.tls.cert_chain.clone(),
            private_key: garbage.clone(),
        },
    ] {
        let result = Server::bind(
            vec![Listen::Tls {
                addr: "127.0.0.1:0".parse().unwrap(),
                tls,
            }],
            Arc::new(Echo::default()),
        );
        match result {
            Err(TransportError::Certificate { path, .. }) => assert_eq!(path, garbage),
            Err(other) => panic!("expected Certificate, got {other:?}"),
            Ok(_) => panic!("a garbage PEM file was accepted"),
        }
    }
    // A key that is not the certificate's.
    let other = make_pki("other");
    let result = Server::bind(
        vec![Listen::Tls {
            addr: "127.0.0.1:0".parse().unwrap(),
            tls: TlsFiles {
                cert_chain: pki.tls.cert_chain.clone(),
                private_key: other.tls.private_key.clone(),
            },
        }],
        Arc::new(Echo::default()),
    );
    assert!(matches!(result, Err(TransportError::Certificate { .. })));
}

#[test]
fn a_file_at_the_unix_path_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("custody.sock");
    std::fs::write(&path, b"precious").unwrap();
    let result = Server::bind(
        vec![Listen::Unix { path: path.clone() }],
        Arc::new(Echo::default()),
    );
    match result {
        Err(TransportError::NotASocket { path: named }) => assert_eq!(named, path),
        Err(other) => panic!("expected NotASocket, got {other:?}"),
        Ok(_) => panic!("a regular file was taken for a socket"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}

#[test]
fn a_stale_socket_is_replaced_but_a_live_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("custody.sock");
    // A socket nothing listens on any more, as a killed service leaves it.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let echo = Arc::new(Echo::default());
    let running = unix_server(&path, &echo);
    assert_eq!(
        unix_client(&path)
            .send("GET", wire::path::HEALTH, &[], b"")
            .unwrap()
            .0,
        200
    );
    // A second server on the live socket is refused, and the first keeps serving.
    match Server::bind(vec![Listen::Unix { path: path.clone() }], echo.clone()) {
        Err(TransportError::Bind { .. }) => {}
        Err(other) => panic!("expected Bind, got {other:?}"),
        Ok(_) => panic!("a live socket was replaced"),
    }
    assert_eq!(
        unix_client(&path)
            .send("GET", wire::path::HEALTH, &[], b"")
            .unwrap()
            .0,
        200
    );
    running.stop().unwrap();
}

#[test]
fn a_plain_http_url_is_refused() {
    match Endpoint::parse("http://localhost:8080", None) {
        Err(error @ TransportError::Url { .. }) => {
            assert!(error.to_string().contains("https://"), "{error}");
        }
        other => panic!("expected Url, got {other:?}"),
    }
}

#[test]
fn a_response_over_max_response_is_refused_by_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("custody.sock");
    let echo = Arc::new(Echo::default());
    let running = unix_server(&socket, &echo);
    match unix_client(&socket).send("GET", "/huge", &[], b"") {
        Err(TransportError::ResponseTooLarge { .. }) => {}
        other => panic!("expected ResponseTooLarge, got {other:?}"),
    }
    running.stop().unwrap();
}

#[test]
fn a_service_that_hangs_up_mid_request_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("custody.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    // A service that dies once it has read the request's first bytes.
    let dying = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 16];
        stream.read_exact(&mut buf).unwrap();
    });
    let error = unix_client(&socket)
        .send("POST", wire::path::UNWRAP, &[], b"{}")
        .expect_err("a request nobody answered succeeded");
    dying.join().unwrap();
    assert!(
        matches!(error, TransportError::Protocol { .. }),
        "expected Protocol, got {error:?}"
    );
    assert!(error.to_string().contains("custody.sock"), "{error}");

    // And nothing listening at all is a Connect error naming the endpoint.
    std::fs::remove_file(&socket).unwrap();
    match unix_client(&socket).send("GET", wire::path::HEALTH, &[], b"") {
        Err(error @ TransportError::Connect { .. }) => {
            assert!(
                error.to_string().contains("is the service running"),
                "{error}"
            );
        }
        other => panic!("expected Connect, got {other:?}"),
    }
}

#[test]
fn concurrent_clients_are_all_answered_each_with_its_own_body() {
    let pki = make_pki("good");
    let echo = Arc::new(Echo::default());
    let running = tls_server(&pki, &echo);
    // Two threads with a client each, two sharing one.
    let shared = Arc::new(tls_client(&running, &pki.ca));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let client = if t < 2 {
                Arc::new(tls_client(&running, &pki.ca))
            } else {
                shared.clone()
            };
            std::thread::spawn(move || {
                for i in 0..25 {
                    let sent = format!("{t}-{i}");
                    let (status, body) = client
                        .send("POST", wire::path::UNWRAP, &[], sent.as_bytes())
                        .unwrap();
                    assert_eq!(status, 200);
                    assert_eq!(json_of(&body)["body"], sent.as_str());
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(echo.calls.load(Ordering::SeqCst), 100);
    running.stop().unwrap();
}
