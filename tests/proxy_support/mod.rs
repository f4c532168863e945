//! Helpers for the proxy tests: a recording upstream server (plain HTTP,
//! h2c or TLS), an in-process proxy, HTTP clients, streamed request bodies
//! and memory readings from `/proc`.

// Not every helper is used by every test.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use dtredact::proxy::{serve, BoxError, FindingsHook, ProxyOptions, Shutdown};
use dtredact::{Finding, Redactor};
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

/// Upper bound for one test; every test wraps its body in [`bounded`].
pub const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `fut`, failing the test if it takes longer than [`TEST_TIMEOUT`].
pub async fn bounded<F: Future>(fut: F) -> F::Output {
    bounded_for(TEST_TIMEOUT, fut).await
}

/// Runs `fut`, failing the test if it takes longer than `limit`.
pub async fn bounded_for<F: Future>(limit: Duration, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(out) => out,
        Err(_) => panic!("test step timed out after {limit:?}"),
    }
}

/// Body type that the test clients send.
pub type ClientBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Returns a body with all of `bytes` in one frame and an exact length.
pub fn full(bytes: impl Into<Bytes>) -> ClientBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A request body fed frame by frame from a channel, sent chunked because
/// its length is unknown. Sending an `Err` makes the client abort the
/// request.
pub struct StreamedBody {
    rx: mpsc::Receiver<Result<Bytes, BoxError>>,
}

impl Body for StreamedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|result| result.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Returns a streamed body and the sender that feeds it; the body ends
/// when the sender is dropped.
pub fn streamed() -> (mpsc::Sender<Result<Bytes, BoxError>>, ClientBody) {
    let (tx, rx) = mpsc::channel(2);
    (tx, StreamedBody { rx }.boxed())
}

/// Returns a body that sends `frames` one by one, pausing `pause` between
/// them, without a length.
pub fn framed(frames: Vec<Vec<u8>>, pause: Duration) -> ClientBody {
    let (tx, body) = streamed();
    tokio::spawn(async move {
        for (i, frame) in frames.into_iter().enumerate() {
            if i > 0 && !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            if tx.send(Ok(Bytes::from(frame))).await.is_err() {
                return;
            }
        }
    });
    body
}

/// Returns an HTTP/1.1 client without connection reuse, so that each request
/// opens its own connection to the proxy.
pub fn http1_client() -> Client<HttpConnector, ClientBody> {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(HttpConnector::new())
}

/// Returns an HTTP/2 client with prior knowledge (h2c).
pub fn http2_client() -> Client<HttpConnector, ClientBody> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new())
}

/// A response read whole by a test client.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// Returns the `error` field of a JSON error body, or an empty string.
    pub fn error_kind(&self) -> String {
        let value: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        value["error"].as_str().unwrap_or_default().to_string()
    }
}

/// Sends `request` and reads the whole response.
pub async fn send(
    client: &Client<HttpConnector, ClientBody>,
    request: Request<ClientBody>,
) -> Result<Answer, BoxError> {
    let response = client.request(request).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes().to_vec();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Builds a `POST` to `path` on `proxy`.
pub fn post(proxy: SocketAddr, path: &str, body: ClientBody) -> Request<ClientBody> {
    Request::post(format!("http://{proxy}{path}"))
        .body(body)
        .expect("valid request")
}

/// What the upstream received for one request.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: http::Method,
    /// Path and query as received.
    pub target: String,
    pub version: Version,
    pub headers: HeaderMap,
    /// The body bytes, unless [`Behavior::keep_body`] is false.
    pub body: Vec<u8>,
    /// Body bytes received, also when they are discarded.
    pub body_len: u64,
    /// Whether the body reached its end without an error.
    pub complete: bool,
    /// Occurrences of each [`Behavior::needles`] entry in the body.
    pub needle_hits: Vec<u64>,
}

/// How the upstream responds. Changes take effect for the next request.
#[derive(Debug, Clone)]
pub struct Behavior {
    pub status: StatusCode,
    /// HTTP/1 reason phrase in place of the status code's own.
    pub reason: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Pause before the response headers, after the request body was read.
    pub delay: Duration,
    /// Keep body bytes in [`Recorded::body`]; when false only count them.
    pub keep_body: bool,
    /// Read the request body; when false, wait `delay` without reading it.
    pub read_body: bool,
    /// Response body sent in these frames, `frame_pause` apart, in place
    /// of `body` when not empty.
    pub response_frames: Vec<Vec<u8>>,
    pub frame_pause: Duration,
    /// Byte strings counted in the body as it streams (for bodies too
    /// large to keep). Each must be at most [`NEEDLE_MAX`] bytes long.
    pub needles: Vec<Vec<u8>>,
}

/// Maximum needle length that [`Behavior::needles`] counts correctly
/// across frame boundaries.
pub const NEEDLE_MAX: usize = 256;

impl Default for Behavior {
    fn default() -> Self {
        Behavior {
            status: StatusCode::OK,
            reason: None,
            headers: Vec::new(),
            body: b"ok\n".to_vec(),
            delay: Duration::ZERO,
            keep_body: true,
            read_body: true,
            response_frames: Vec::new(),
            frame_pause: Duration::ZERO,
            needles: Vec::new(),
        }
    }
}

/// TLS settings of an upstream.
pub struct UpstreamTls {
    pub acceptor: tokio_rustls::TlsAcceptor,
}

/// A recording upstream server on 127.0.0.1.
pub struct Upstream {
    pub addr: SocketAddr,
    records: Arc<Mutex<Vec<Recorded>>>,
    behavior: Arc<Mutex<Behavior>>,
    changed: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    /// Starts a plain HTTP upstream that speaks HTTP/1.1 and h2c.
    pub async fn start(behavior: Behavior) -> Upstream {
        Upstream::start_inner(behavior, None).await
    }

    /// Starts an HTTPS upstream.
    pub async fn start_tls(behavior: Behavior, tls: UpstreamTls) -> Upstream {
        Upstream::start_inner(behavior, Some(tls)).await
    }

    async fn start_inner(behavior: Behavior, tls: Option<UpstreamTls>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream address");
        let records = Arc::new(Mutex::new(Vec::new()));
        let behavior = Arc::new(Mutex::new(behavior));
        let changed = Arc::new(Notify::new());
        let shared = Shared {
            records: Arc::clone(&records),
            behavior: Arc::clone(&behavior),
            changed: Arc::clone(&changed),
        };
        let acceptor = tls.map(|t| t.acceptor);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| record(shared.clone(), req));
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                        }
                        Some(acceptor) => {
                            let Ok(tls) = acceptor.accept(tcp).await else {
                                return;
                            };
                            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                        }
                    }
                });
            }
        });
        Upstream {
            addr,
            records,
            behavior,
            changed,
            task,
        }
    }

    /// Base URL of this upstream for `ProxyOptions::new`.
    pub fn uri(&self) -> http::Uri {
        format!("http://{}", self.addr).parse().expect("valid URI")
    }

    /// Replaces the behavior for later requests.
    pub fn set_behavior(&self, behavior: Behavior) {
        *self.behavior.lock().unwrap() = behavior;
    }

    /// Returns a copy of every request seen so far, in arrival order.
    pub fn records(&self) -> Vec<Recorded> {
        self.records.lock().unwrap().clone()
    }

    /// Waits until `count` requests have completed bodies, or fails.
    pub async fn wait_complete(&self, count: usize) -> Vec<Recorded> {
        bounded_for(Duration::from_secs(30), async {
            loop {
                let notified = self.changed.notified();
                let records = self.records();
                if records.iter().filter(|r| r.complete).count() >= count {
                    return records;
                }
                notified.await;
            }
        })
        .await
    }

    /// Waits `settle` and then returns the records: for asserting that
    /// something did not arrive.
    pub async fn records_after(&self, settle: Duration) -> Vec<Recorded> {
        tokio::time::sleep(settle).await;
        self.records()
    }
}

#[derive(Clone)]
struct Shared {
    records: Arc<Mutex<Vec<Recorded>>>,
    behavior: Arc<Mutex<Behavior>>,
    changed: Arc<Notify>,
}

impl Shared {
    fn update(&self, index: usize, f: impl FnOnce(&mut Recorded)) {
        f(&mut self.records.lock().unwrap()[index]);
        self.changed.notify_waiters();
    }
}

async fn record(
    shared: Shared,
    req: Request<Incoming>,
) -> Result<Response<ClientBody>, Infallible> {
    let behavior = shared.behavior.lock().unwrap().clone();
    let (parts, mut body) = req.into_parts();
    let index = {
        let mut records = shared.records.lock().unwrap();
        records.push(Recorded {
            method: parts.method.clone(),
            target: parts
                .uri
                .path_and_query()
                .map(|pq| pq.as_str().to_string())
                .unwrap_or_default(),
            version: parts.version,
            headers: parts.headers.clone(),
            body: Vec::new(),
            body_len: 0,
            complete: false,
            needle_hits: vec![0; behavior.needles.len()],
        });
        records.len() - 1
    };
    shared.changed.notify_waiters();

    if !behavior.read_body {
        tokio::time::sleep(behavior.delay).await;
        return Ok(Response::new(full(Bytes::new())));
    }
    let mut tail: Vec<u8> = Vec::new();
    loop {
        match body.frame().await {
            None => break,
            Some(Err(_)) => {
                // The body was cut off: the record stays incomplete.
                shared.changed.notify_waiters();
                return Ok(Response::new(full(Bytes::new())));
            }
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                let hits = count_needles(&behavior.needles, &mut tail, &data);
                shared.update(index, |r| {
                    r.body_len += data.len() as u64;
                    if behavior.keep_body {
                        r.body.extend_from_slice(&data);
                    }
                    for (total, new) in r.needle_hits.iter_mut().zip(hits) {
                        *total += new;
                    }
                });
            }
        }
    }
    shared.update(index, |r| r.complete = true);

    if !behavior.delay.is_zero() {
        tokio::time::sleep(behavior.delay).await;
    }
    let body = if behavior.response_frames.is_empty() {
        full(behavior.body.clone())
    } else {
        framed(behavior.response_frames.clone(), behavior.frame_pause)
    };
    let mut response = Response::new(body);
    *response.status_mut() = behavior.status;
    if let Some(reason) = &behavior.reason {
        let reason = hyper::ext::ReasonPhrase::try_from(reason.clone()).expect("valid reason");
        response.extensions_mut().insert(reason);
    }
    for (name, value) in &behavior.headers {
        response.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).expect("valid header name"),
            http::HeaderValue::from_str(value).expect("valid header value"),
        );
    }
    Ok(response)
}

/// Counts needles that end inside `data`, looking back into `tail` (the
/// last bytes of earlier frames), then keeps the new tail.
fn count_needles(needles: &[Vec<u8>], tail: &mut Vec<u8>, data: &[u8]) -> Vec<u64> {
    if needles.is_empty() {
        return Vec::new();
    }
    let mut window = std::mem::take(tail);
    let old = window.len();
    window.extend_from_slice(data);
    let hits = needles
        .iter()
        .map(|needle| {
            memchr::memmem::find_iter(&window, needle)
                .filter(|&start| start + needle.len() > old)
                .count() as u64
        })
        .collect();
    let keep = window.len().min(NEEDLE_MAX);
    *tail = window[window.len() - keep..].to_vec();
    hits
}

/// A proxy served in this process on 127.0.0.1.
pub struct Proxy {
    pub addr: SocketAddr,
    pub shutdown: Shutdown,
    pub findings: Arc<Mutex<Vec<Finding>>>,
    /// The route passed with each batch of findings.
    pub routes: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown.trigger();
        self.task.abort();
    }
}

impl Proxy {
    /// Starts a proxy to `upstream` with options adjusted by `adjust`.
    pub async fn start(
        upstream: http::Uri,
        redactor: Redactor,
        adjust: impl FnOnce(&mut ProxyOptions),
    ) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let mut options = ProxyOptions::new(addr, upstream);
        adjust(&mut options);

        let shutdown = Shutdown::default();
        let findings = Arc::new(Mutex::new(Vec::new()));
        let routes = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&findings);
        let route_sink = Arc::clone(&routes);
        let hook: FindingsHook = Arc::new(move |found: &[Finding], route: &str| {
            sink.lock().unwrap().extend_from_slice(found);
            route_sink.lock().unwrap().push(route.to_string());
        });
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
        let ready_tx = Mutex::new(Some(ready_tx));
        let ready = Arc::new(move |up: bool| {
            if up {
                if let Some(tx) = ready_tx.lock().unwrap().take() {
                    let _ = tx.send(());
                }
            }
        });

        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            if let Err(error) = serve(listener, options, redactor, stop, hook, ready).await {
                panic!("proxy failed to start: {error}");
            }
        });
        bounded_for(Duration::from_secs(10), ready_rx)
            .await
            .expect("proxy reported ready");
        Proxy {
            addr,
            shutdown,
            findings,
            routes,
            task,
        }
    }

    /// Starts a proxy with the default redactor and default options.
    pub async fn to(upstream: &Upstream) -> Proxy {
        Proxy::start(upstream.uri(), Redactor::default(), |_| {}).await
    }
}

/// Returns a loopback address with nothing listening on it.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    addr
}

/// Writes raw bytes to `addr`, then closes the connection without reading.
pub async fn write_and_close(addr: SocketAddr, bytes: &[u8]) {
    use tokio::io::AsyncWriteExt;
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(bytes).await.expect("write");
    tcp.flush().await.expect("flush");
    drop(tcp);
}

/// Returns a field of `/proc/<pid>/status` in KiB (e.g. `VmHWM`).
pub fn proc_status_kib(pid: &str, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("failed to read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.trim().trim_end_matches("kB").trim().parse().ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Returns whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

/// Returns whether `curl` can be run.
pub fn curl_available() -> bool {
    std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// The `dtredact proxy` binary, run as a child process on 127.0.0.1 with
/// a free port. Killed on drop if still running.
pub struct ProxyProcess {
    child: std::process::Child,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    _config_dir: tempfile::TempDir,
}

impl ProxyProcess {
    /// Starts the binary with `config` (TOML) and `args`, and waits for
    /// the `listen=ADDR` line on standard error.
    pub fn start(upstream: &http::Uri, config: &str, args: &[&str]) -> ProxyProcess {
        use std::io::BufRead;

        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("dtredact.toml");
        std::fs::write(&config_path, config).expect("write config");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dtredact"))
            .env_remove("DTREDACT_CONFIG")
            .env("RUST_LOG", "info")
            .arg("proxy")
            .arg("--config")
            .arg(&config_path)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                &upstream.to_string(),
            ])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn dtredact proxy");

        let stderr = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let pipe = child.stderr.take().expect("stderr pipe");
        let log = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = listen_addr(&line) {
                    let _ = addr_tx.send(addr);
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match addr_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "dtredact proxy logged no listen= line within 30 s; stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        ProxyProcess {
            child,
            addr,
            stderr,
            _config_dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Returns what the process wrote to standard error so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM to the process.
    pub fn terminate(&self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("valid pid");
        rustix::process::kill_process(pid, rustix::process::Signal::Term).expect("send SIGTERM");
    }

    /// Waits up to `limit` for the process to exit and returns its status,
    /// or `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the proxy") {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Extracts the address from a log line containing `listen=ADDR`, with
/// any terminal colour codes removed.
fn listen_addr(line: &str) -> Option<SocketAddr> {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip a CSI sequence up to its final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    let rest = &plain[plain.find("listen=")? + "listen=".len()..];
    let value: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ',' && *c != '"')
        .collect();
    value.parse().ok()
}
