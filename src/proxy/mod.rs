//! `dtredact proxy`: an HTTP log forwarder that redacts request bodies,
//! headers and query strings on their way to the log sink, and the sink's
//! responses on their way back.
//!
//! Clients speak HTTP/1.1 or HTTP/2 without TLS (h2c). The upstream may be
//! `http` or `https` (rustls), HTTP/1.1 or HTTP/2. A client gets a 2xx only
//! when the upstream sent one: when a body fails to redact, the upstream
//! request is aborted and the client gets the error.

pub mod body;
pub mod codec;
pub mod error;
pub mod headers;
mod server;
mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderName;
use http_body_util::combinators::BoxBody;

pub use body::BoxError;
pub use error::ProxyError;
pub use server::{
    run, serve, serve_with, FindingsHook, ProxyContext, SharedRedactor, Shutdown, StartError,
};

/// Body type of every response the proxy sends.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// Everything the proxy needs to run, from the config file and flags.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Base URL of the log sink; request paths are appended to its path.
    pub upstream: http::Uri,
    /// PEM file of the CA that signs the upstream's certificate; system
    /// roots when `None`.
    pub upstream_ca: Option<PathBuf>,
    /// Speak HTTP/2 to the upstream (h2c for `http`, ALPN for `https`
    /// offers both either way).
    pub upstream_http2: bool,
    /// File holding the token dtredact sends upstream, replacing the
    /// client's `Authorization`.
    pub upstream_token_file: Option<PathBuf>,
    /// Scheme of the injected credential: `Api-Token` or `Bearer`.
    pub credential_scheme: String,
    /// Request headers passed to the upstream without masking.
    pub forward_credentials: Vec<HeaderName>,
    /// Redact response bodies and headers too.
    pub redact_responses: bool,
    /// Forward bodies that cannot be inspected instead of rejecting them.
    pub pass_uninspectable: bool,
    /// Maximum request body size as sent, in bytes.
    pub max_body_bytes: u64,
    /// Maximum body size after decoding, in bytes.
    pub max_decoded_bytes: u64,
    /// Maximum ratio of decoded to encoded bytes.
    pub max_decompression_ratio: u64,
    /// Requests handled at once; more get 503.
    pub max_concurrent_requests: usize,
    /// Time for a client to send its request headers.
    pub header_timeout: Duration,
    /// Longest pause while a client sends a body.
    pub body_timeout: Duration,
    /// Time for the upstream to connect and send response headers.
    pub upstream_timeout: Duration,
    /// Time in-flight requests get to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Add a `Via` header to forwarded requests and responses.
    pub add_via: bool,
    /// Append the client address to `X-Forwarded-For`.
    pub add_forwarded_for: bool,
    /// Pause in a body after which held-back bytes are released.
    pub idle_flush: Option<Duration>,
    /// Inspect and redact traffic. `false` forwards bodies, targets and
    /// headers uninspected (limits, timeouts, `Via` and the credential
    /// still apply), which exists only to measure the cost of redaction.
    pub redact: bool,
}

impl ProxyOptions {
    /// Options with the documented defaults for `listen` and `upstream`.
    pub fn new(listen: SocketAddr, upstream: http::Uri) -> ProxyOptions {
        ProxyOptions {
            listen,
            upstream,
            upstream_ca: None,
            upstream_http2: false,
            upstream_token_file: None,
            credential_scheme: "Api-Token".to_string(),
            forward_credentials: vec![http::header::AUTHORIZATION],
            redact_responses: true,
            pass_uninspectable: false,
            max_body_bytes: 64 * 1024 * 1024,
            max_decoded_bytes: 256 * 1024 * 1024,
            max_decompression_ratio: 100,
            max_concurrent_requests: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            upstream_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(20),
            add_via: true,
            add_forwarded_for: false,
            idle_flush: Some(Duration::from_millis(100)),
            redact: true,
        }
    }
}
