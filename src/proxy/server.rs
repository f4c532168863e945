//! Accept loop, request handling and graceful shutdown.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, Uri};
use http_body::Body as _;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::body::{redact_body, BodyOptions, BodyReport, DeferredBody};
use super::codec::{ContentCoding, Limits};
use super::error::ProxyError;
use super::headers::{
    head_has_candidate, mask_headers, mask_method, mask_reason, mask_target, remove_hop_by_hop,
    Credential, CredentialError,
};
use super::upstream::{self, UpstreamClient, UpstreamError};
use super::{ProxyBody, ProxyOptions};
use crate::admin::Readiness;
use crate::metrics::{Metrics, Telemetry};
use crate::{Finding, Redactor};

/// Tells a running proxy to stop: readiness turns false, the listener
/// closes, and in-flight requests get the shutdown grace to finish.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            tx: Arc::new(watch::channel(false).0),
        }
    }
}

impl Shutdown {
    /// Starts the shutdown.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }
}

/// Errors that stop the proxy from starting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("failed to listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The upstream client could not be built.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The credential file could not be read.
    #[error(transparent)]
    Credential(#[from] CredentialError),
}

/// Called with the findings of each request (headers, target, bodies) and
/// the request path they were found on.
pub type FindingsHook = Arc<dyn Fn(&[Finding], &str) + Send + Sync>;

/// The redactor in force, swapped whole on a config reload. Each request
/// takes the one in force when it starts and keeps it to the end.
pub use crate::reload::SharedRedactor;

/// Shared state of a running proxy: rules, telemetry and readiness.
#[derive(Clone)]
pub struct ProxyContext {
    /// Rules and policy, swapped on reload.
    pub redactor: SharedRedactor,
    /// Metrics, leak inventory and leak warnings.
    pub telemetry: Telemetry,
    /// Readiness shown on `/readyz`.
    pub readiness: Readiness,
}

struct State {
    /// Request counters by status class (1xx to 5xx), looked up once.
    status_counters: [prometheus::IntCounter; 5],
    options: ProxyOptions,
    redactor: SharedRedactor,
    metrics: Metrics,
    client: UpstreamClient,
    limit: Arc<Semaphore>,
    credential: Option<Credential>,
    next_id: AtomicU64,
    on_findings: FindingsHook,
    via: HeaderValue,
}

/// Binds the listener and serves until `shutdown` is triggered, then
/// drains in-flight requests for at most the shutdown grace.
///
/// `ready` is called with `true` once the listener is bound and with
/// `false` when draining starts.
///
/// # Errors
///
/// Binding the address, building the upstream client, or reading the
/// credential file fails.
pub async fn run(
    options: ProxyOptions,
    redactor: Redactor,
    shutdown: Shutdown,
    on_findings: FindingsHook,
    ready: Arc<dyn Fn(bool) + Send + Sync>,
) -> Result<(), StartError> {
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: options.listen,
            source,
        })?;
    serve(listener, options, redactor, shutdown, on_findings, ready).await
}

/// Serves on a bound listener; see [`run`].
pub async fn serve(
    listener: TcpListener,
    options: ProxyOptions,
    redactor: Redactor,
    shutdown: Shutdown,
    on_findings: FindingsHook,
    ready: Arc<dyn Fn(bool) + Send + Sync>,
) -> Result<(), StartError> {
    let telemetry = Telemetry::new(crate::metrics::Mode::Proxy, crate::report::DEFAULT_MAX_IDS);
    let redactor = Arc::new(arc_swap::ArcSwap::from_pointee(redactor));
    serve_inner(
        listener,
        options,
        redactor,
        telemetry.metrics,
        shutdown,
        on_findings,
        ready,
    )
    .await
}

/// Serves on a bound listener with shared telemetry, readiness and a
/// reloadable redactor.
pub async fn serve_with(
    listener: TcpListener,
    options: ProxyOptions,
    context: ProxyContext,
    shutdown: Shutdown,
) -> Result<(), StartError> {
    let telemetry = context.telemetry.clone();
    let on_findings: FindingsHook =
        Arc::new(move |findings: &[Finding], route: &str| telemetry.record(findings, route));
    let readiness = context.readiness.clone();
    let metrics = context.telemetry.metrics.clone();
    let ready: Arc<dyn Fn(bool) + Send + Sync> = Arc::new(move |ready: bool| {
        readiness.set(ready);
        metrics
            .ready
            .with_label_values(&["proxy"])
            .set(i64::from(ready));
    });
    serve_inner(
        listener,
        options,
        context.redactor,
        context.telemetry.metrics,
        shutdown,
        on_findings,
        ready,
    )
    .await
}

async fn serve_inner(
    listener: TcpListener,
    options: ProxyOptions,
    redactor: SharedRedactor,
    metrics: Metrics,
    shutdown: Shutdown,
    on_findings: FindingsHook,
    ready: Arc<dyn Fn(bool) + Send + Sync>,
) -> Result<(), StartError> {
    let client = upstream::client(&options)?;
    let credential = match &options.upstream_token_file {
        Some(path) => {
            let credential = Credential::load(path.clone(), &options.credential_scheme)?;
            credential.clone().watch(std::time::Duration::from_secs(1));
            Some(credential)
        }
        None => None,
    };
    let status_counters = ["1xx", "2xx", "3xx", "4xx", "5xx"]
        .map(|class| metrics.http_requests.with_label_values(&[class]));
    let state = Arc::new(State {
        status_counters,
        limit: Arc::new(Semaphore::new(options.max_concurrent_requests)),
        via: HeaderValue::from_static("1.1 dtredact"),
        options,
        redactor,
        metrics,
        client,
        credential,
        next_id: AtomicU64::new(1),
        on_findings,
    });
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(listen = %local, upstream = %state.options.upstream, "proxy started");
    ready(true);

    let graceful = GracefulShutdown::new();
    let mut stop = shutdown.subscribe();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, remote) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // Out of file descriptors and the like: wait a moment
                        // instead of spinning.
                        tracing::error!(%error, "failed to accept a connection");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder
                    .http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(state.options.header_timeout);
                let state = Arc::clone(&state);
                let service = service_fn(move |req| handle(Arc::clone(&state), req, remote));
                let conn = builder.serve_connection(TokioIo::new(tcp), service).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(error) = conn.await {
                        tracing::debug!(%error, %remote, "connection ended with an error");
                    }
                });
            }
            _ = stop.changed() => break,
        }
    }
    ready(false);
    drop(listener);
    let grace = state.options.shutdown_grace;
    tracing::info!(?grace, "draining in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("proxy stopped"),
        () = tokio::time::sleep(grace) => {
            tracing::warn!(?grace, "shutdown grace expired with requests in flight");
        }
    }
    Ok(())
}

/// Returns a standard method's name, and `other` for an extension method.
fn loggable_method(method: &http::Method) -> &'static str {
    const STANDARD: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
    ];
    STANDARD
        .into_iter()
        .find(|name| method.as_str() == *name)
        .unwrap_or("other")
}

/// A request's id in the log and in error bodies: 16 hex digits, formatted
/// only when used.
#[derive(Debug, Clone, Copy)]
struct RequestId(u64);

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
    remote: SocketAddr,
) -> Result<Response<ProxyBody>, Infallible> {
    let id = RequestId(state.next_id.fetch_add(1, Ordering::Relaxed));
    let started = Instant::now();
    // Any HTTP token is a valid method, so only standard ones are logged.
    let method = loggable_method(req.method());
    let response = match forward(&state, req, remote, id).await {
        Ok(response) => response,
        Err(error) => {
            count_error(&state.metrics, &error);
            tracing::warn!(
                request_id = %id,
                %method,
                error = error.kind(),
                status = error.status().as_u16(),
                "request not forwarded"
            );
            error.to_response(&id.to_string())
        }
    };
    let class = match response.status().as_u16() {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    };
    state.status_counters[class].inc();
    state
        .metrics
        .request_duration
        .observe(started.elapsed().as_secs_f64());
    tracing::debug!(
        request_id = %id,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request done"
    );
    Ok(response)
}

async fn forward(
    state: &Arc<State>,
    req: Request<Incoming>,
    remote: SocketAddr,
    id: RequestId,
) -> Result<Response<ProxyBody>, ProxyError> {
    let _permit = Arc::clone(&state.limit)
        .try_acquire_owned()
        .map_err(|_| ProxyError::Overloaded)?;
    let options = &state.options;
    let shared_redactor: Arc<Redactor> = state.redactor.load_full();
    let redactor = &*shared_redactor;
    let (mut parts, body) = req.into_parts();
    // `--no-redaction` skips inspection only: every other step below runs
    // either way, so that it measures what redaction alone costs.
    let inspect = options.redact;

    // The request target, then the headers.
    let target = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let keep: &[HeaderName] = if state.credential.is_some() {
        &[]
    } else {
        &options.forward_credentials
    };
    // Most requests have no candidate anywhere in their head.
    let inspect_head =
        inspect && head_has_candidate(redactor, &parts.method, target, &parts.headers, keep);
    let (target, mut findings) = if inspect_head {
        mask_target(redactor, target)
    } else {
        (Cow::Borrowed(target), Vec::new())
    };
    // Findings name the route they were made on, in the log and on
    // /leaks: the masked path, since a token may be part of the path.
    let route = target.split('?').next().unwrap_or("/");
    let report = BodyReport::new(Arc::clone(&state.on_findings), route);
    let uri = upstream_uri(&options.upstream, &target);
    parts.uri = uri;
    remove_hop_by_hop(&mut parts.headers);
    if inspect_head {
        findings.extend(mask_method(redactor, &mut parts.method));
        findings.extend(mask_headers(redactor, &mut parts.headers, keep));
    }
    // The client sent these whether or not the upstream takes the request.
    report.add_findings(&findings);
    if let Some(credential) = &state.credential {
        parts
            .headers
            .insert(header::AUTHORIZATION, credential.value());
    }
    // The client sets Host from the upstream URI.
    parts.headers.remove(header::HOST);
    if options.add_via {
        parts.headers.append(header::VIA, state.via.clone());
    }
    if options.add_forwarded_for {
        append_forwarded_for(&mut parts.headers, remote);
    }
    parts.version = http::Version::HTTP_11;

    let body = if inspect {
        request_body(
            state,
            &shared_redactor,
            &mut parts.headers,
            body,
            report.clone(),
        )
        .await?
    } else {
        uninspected_request_body(state, &parts.headers, body)?
    };
    let request = Request::from_parts(parts, body);

    let upstream_started = Instant::now();
    let sent = upstream_response(state, request, &report).await;
    state
        .metrics
        .upstream_duration
        .observe(upstream_started.elapsed().as_secs_f64());
    let response = match sent {
        Err(_) => return Err(report.error().unwrap_or(ProxyError::UpstreamTimeout)),
        Ok(Err(error)) => {
            if let Some(body_error) = report.error() {
                return Err(body_error);
            }
            tracing::debug!(request_id = %id, %error, "upstream request failed");
            return Err(ProxyError::UpstreamUnreachable);
        }
        Ok(Ok(response)) => response,
    };
    // The upstream responded before the body failed: the body was cut
    // off, so that response does not acknowledge it.
    if let Some(body_error) = report.error() {
        return Err(body_error);
    }

    let (mut parts, body) = response.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    if options.add_via {
        parts.headers.append(header::VIA, state.via.clone());
    }
    let body = if inspect && options.redact_responses {
        report.add_findings(&mask_headers(redactor, &mut parts.headers, &[]));
        report.add_findings(&mask_reason(redactor, &mut parts.extensions));
        response_body(state, redactor, &mut parts.headers, body, report).await?
    } else {
        body.map_err(|e| Box::new(e) as super::BoxError).boxed()
    };
    Ok(Response::from_parts(parts, body))
}

/// The upstream's response headers, or why they did not arrive.
type UpstreamResult = Result<Response<Incoming>, hyper_util::client::legacy::Error>;

/// Sends `request` and waits for the response headers. The upstream
/// timeout counts from the later of the send and the body's last progress,
/// so a long upload is not taken for a slow upstream.
///
/// NOTE: a body passed through uninspected reports no progress, so for
/// it the timeout counts from the send and includes the upload.
async fn upstream_response(
    state: &State,
    request: Request<ProxyBody>,
    report: &BodyReport,
) -> Result<UpstreamResult, tokio::time::error::Elapsed> {
    let timeout = state.options.upstream_timeout;
    let started = tokio::time::Instant::now();
    let mut response = std::pin::pin!(state.client.request(request));
    loop {
        let since = report.last_progress().map_or(started, |t| t.max(started));
        match tokio::time::timeout_at(since + timeout, &mut response).await {
            Ok(result) => return Ok(result),
            Err(_) if report.last_progress().is_some_and(|t| t > since) => continue,
            Err(elapsed) => return Err(elapsed),
        }
    }
}

/// Counts an error and, for a rejected body, its reason.
fn count_error(metrics: &Metrics, error: &ProxyError) {
    metrics.errors.with_label_values(&[error.kind()]).inc();
    let reason = match error {
        ProxyError::BodyTooLarge(super::error::BodyLimit::Encoded) => "too_large",
        ProxyError::BodyTooLarge(_) => "bomb",
        ProxyError::UnsupportedEncoding => "unknown_encoding",
        ProxyError::CorruptBody => "corrupt",
        _ => return,
    };
    metrics.bodies_rejected.with_label_values(&[reason]).inc();
}

fn body_options(options: &ProxyOptions) -> BodyOptions {
    BodyOptions {
        max_body: options.max_body_bytes,
        limits: Limits {
            max_decoded: options.max_decoded_bytes,
            max_ratio: options.max_decompression_ratio,
        },
        frame_timeout: options.body_timeout,
        idle_flush: options.idle_flush,
        linger: true,
    }
}

/// Builds the redacted request body, and fixes Content-Length for it.
/// A body in the identity coding is redacted when the upstream connection
/// reads it (see [`DeferredBody`]). An encoded one is read here first, so
/// that a body that fails to decode at once never reaches the upstream.
async fn request_body(
    state: &Arc<State>,
    redactor: &Arc<Redactor>,
    headers: &mut http::HeaderMap,
    body: Incoming,
    report: BodyReport,
) -> Result<ProxyBody, ProxyError> {
    if body.is_end_stream() {
        return Ok(empty());
    }
    let coding = match coding_of(headers) {
        Ok(coding) => coding,
        Err(()) if state.options.pass_uninspectable => {
            tracing::warn!("forwarding a body with an unsupported content encoding uninspected");
            state.metrics.uninspectable_passed.inc();
            return Ok(body.map_err(|e| Box::new(e) as super::BoxError).boxed());
        }
        Err(()) => return Err(ProxyError::UnsupportedEncoding),
    };
    // Check the declared length before it is dropped for a body that
    // changes length, so that any body declared too large is rejected
    // before the upstream is contacted.
    if body_too_large(headers, state.options.max_body_bytes) {
        return Err(ProxyError::BodyTooLarge(super::error::BodyLimit::Encoded));
    }
    let exact_len = keeps_length(redactor, coding, headers);
    if exact_len.is_none() {
        headers.remove(header::CONTENT_LENGTH);
    }
    let options = body_options(&state.options);
    if coding == ContentCoding::Identity {
        let body = DeferredBody::new(body, Arc::clone(redactor), options, exact_len, report);
        return Ok(body.boxed());
    }
    redact_body(body, redactor, coding, options, exact_len, report).await
}

/// Passes a request body on uninspected (`--no-redaction`), under the
/// same size limit as a redacted one.
fn uninspected_request_body(
    state: &Arc<State>,
    headers: &http::HeaderMap,
    body: Incoming,
) -> Result<ProxyBody, ProxyError> {
    if body_too_large(headers, state.options.max_body_bytes) {
        return Err(ProxyError::BodyTooLarge(super::error::BodyLimit::Encoded));
    }
    Ok(body.map_err(|e| Box::new(e) as super::BoxError).boxed())
}

/// Builds the redacted response body.
async fn response_body(
    state: &Arc<State>,
    redactor: &Redactor,
    headers: &mut http::HeaderMap,
    body: Incoming,
    report: BodyReport,
) -> Result<ProxyBody, ProxyError> {
    if body.is_end_stream() {
        return Ok(empty());
    }
    let coding = match coding_of(headers) {
        Ok(coding) => coding,
        Err(()) if state.options.pass_uninspectable => {
            return Ok(body.map_err(|e| Box::new(e) as super::BoxError).boxed());
        }
        Err(()) => return Err(ProxyError::UninspectableResponse),
    };
    let exact_len = keeps_length(redactor, coding, headers);
    if exact_len.is_none() {
        headers.remove(header::CONTENT_LENGTH);
    }
    let mut options = body_options(&state.options);
    options.max_body = u64::MAX;
    options.linger = false;
    redact_body(body, redactor, coding, options, exact_len, report)
        .await
        .map_err(|e| match e {
            ProxyError::CorruptBody | ProxyError::BodyTooLarge(_) => {
                ProxyError::UninspectableResponse
            }
            ProxyError::ClientTimeout | ProxyError::ClientAborted => {
                ProxyError::UpstreamUnreachable
            }
            other => other,
        })
}

fn coding_of(headers: &http::HeaderMap) -> Result<ContentCoding, ()> {
    match headers.get(header::CONTENT_ENCODING) {
        None => Ok(ContentCoding::Identity),
        Some(value) => {
            let value = value.to_str().map_err(|_| ())?;
            ContentCoding::parse(value).map_err(|_| ())
        }
    }
}

/// Returns the body's length when it passes through at the same length: identity
/// coding under a length-keeping policy with a Content-Length.
fn keeps_length(
    redactor: &Redactor,
    coding: ContentCoding,
    headers: &http::HeaderMap,
) -> Option<u64> {
    if coding != ContentCoding::Identity || !redactor.policy().keeps_length() {
        return None;
    }
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn body_too_large(headers: &http::HeaderMap, max: u64) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > max)
}

fn empty() -> ProxyBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// Joins the upstream base URL and a request target.
fn upstream_uri(base: &Uri, target: &str) -> Uri {
    let prefix = base.path().trim_end_matches('/');
    let target = if target.starts_with('/') {
        target.to_string()
    } else {
        format!("/{target}")
    };
    let mut parts = base.clone().into_parts();
    let joined = format!("{prefix}{target}");
    parts.path_and_query = joined
        .parse()
        .ok()
        .or_else(|| Some("/".parse().expect("valid")));
    Uri::from_parts(parts).unwrap_or_else(|_| base.clone())
}

fn append_forwarded_for(headers: &mut http::HeaderMap, remote: SocketAddr) {
    let ip = remote.ip().to_string();
    let value = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(existing) => format!("{existing}, {ip}"),
        None => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert("x-forwarded-for", v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_uri_joins_paths() {
        let base: Uri = "http://127.0.0.1:9/api/v2".parse().unwrap();
        assert_eq!(
            upstream_uri(&base, "/logs/ingest?x=1").to_string(),
            "http://127.0.0.1:9/api/v2/logs/ingest?x=1"
        );
        let root: Uri = "http://127.0.0.1:9".parse().unwrap();
        assert_eq!(
            upstream_uri(&root, "/a").to_string(),
            "http://127.0.0.1:9/a"
        );
    }
}
