//! The `[proxy]`, `[admin]` and `[log]` tables: settings of the
//! long-running `dtredact proxy` service.
//!
//! Parsing and checks follow the rest of the config: raw tables with spans,
//! then validation into the public types, with errors that name the key.

use std::fmt::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use http::header::HeaderName;
use http::Uri;
use serde::Deserialize;
use toml::Spanned;

use super::effective::{quote, quote_path};
use super::{ConfigError, Source};
use crate::proxy::ProxyOptions;

/// Default `proxy.listen` address.
pub const DEFAULT_PROXY_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
/// Default `admin.max_leak_ids`: distinct token identifiers kept in the
/// leak inventory.
pub const DEFAULT_MAX_LEAK_IDS: usize = 10_000;
/// Default `log.filter`.
pub const DEFAULT_LOG_FILTER: &str = "info";
/// Maximum of each proxy time limit (`proxy.header_timeout`,
/// `proxy.body_timeout`, `proxy.upstream_timeout`, `proxy.shutdown_grace`).
/// The proxy adds these to the current time, and a bound of one day keeps
/// that far from overflow while allowing any useful wait.
pub const TIME_LIMIT_MAX: Duration = Duration::from_secs(24 * 60 * 60);
/// Maximum `proxy.max_concurrent_requests`: the most permits a Tokio
/// semaphore can hold, because the proxy counts requests with one.
pub const CONCURRENT_REQUESTS_MAX: usize = tokio::sync::Semaphore::MAX_PERMITS;

/// The `[proxy]` table: settings of `dtredact proxy`. Defaults are those of
/// [`ProxyOptions::new`], with [`DEFAULT_PROXY_LISTEN`] and no upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Socket address to listen on (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// Base URL of the log sink, `http` or `https`, without user
    /// information, query or fragment. `None` (the default, written as `""`)
    /// means not set, and `dtredact proxy` then requires `--upstream`.
    /// Build it with [`parse_upstream`], which applies the same checks.
    pub upstream: Option<Uri>,
    /// PEM file of the CA that signs the upstream's certificate. The system
    /// roots are used when `None` (the default). A relative path in a config
    /// file is resolved against the file's directory.
    pub upstream_ca: Option<PathBuf>,
    /// Speak HTTP/2 to the upstream (default `false`).
    pub upstream_http2: bool,
    /// File that contains the token dtredact sends upstream in the
    /// `Authorization` header, replacing the client's (default `None`). A
    /// relative path in a config file is resolved against the file's
    /// directory.
    pub upstream_token_file: Option<PathBuf>,
    /// Scheme of the `Authorization` header built from
    /// `upstream_token_file` (default `Api-Token`).
    pub credential_scheme: CredentialScheme,
    /// Request headers passed to the upstream without masking when
    /// `upstream_token_file` is not set, in lower case and without
    /// duplicates (default `["authorization"]`).
    pub forward_credentials: Vec<HeaderName>,
    /// Redact response headers and bodies too (default `true`).
    pub redact_responses: bool,
    /// Forward bodies that cannot be inspected instead of rejecting them
    /// (default `false`).
    pub pass_uninspectable: bool,
    /// Maximum request body size as sent, in bytes (default 64 MiB).
    pub max_body_bytes: u64,
    /// Maximum body size after decoding, in bytes (default 256 MiB).
    pub max_decoded_bytes: u64,
    /// Maximum ratio of decoded to encoded bytes (default 100).
    pub max_decompression_ratio: u64,
    /// Requests handled at once; more get 503 (default 1024).
    pub max_concurrent_requests: usize,
    /// Time for a client to send its request headers (default 10 s).
    pub header_timeout: Duration,
    /// Longest pause while a client sends a body (default 30 s).
    pub body_timeout: Duration,
    /// Time for the upstream to connect and send response headers
    /// (default 30 s).
    pub upstream_timeout: Duration,
    /// Time in-flight requests get to finish on shutdown (default 20 s).
    pub shutdown_grace: Duration,
    /// Add a `Via` header to forwarded requests and responses (default
    /// `true`).
    pub add_via: bool,
    /// Append the client address to `X-Forwarded-For` (default `false`).
    pub add_forwarded_for: bool,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        // Copied from ProxyOptions::new so that the two cannot drift apart.
        // A unit test checks the one field that changes type.
        let options = ProxyOptions::new(DEFAULT_PROXY_LISTEN, Uri::default());
        ProxyConfig {
            listen: options.listen,
            upstream: None,
            upstream_ca: options.upstream_ca,
            upstream_http2: options.upstream_http2,
            upstream_token_file: options.upstream_token_file,
            credential_scheme: CredentialScheme::default(),
            forward_credentials: options.forward_credentials,
            redact_responses: options.redact_responses,
            pass_uninspectable: options.pass_uninspectable,
            max_body_bytes: options.max_body_bytes,
            max_decoded_bytes: options.max_decoded_bytes,
            max_decompression_ratio: options.max_decompression_ratio,
            max_concurrent_requests: options.max_concurrent_requests,
            header_timeout: options.header_timeout,
            body_timeout: options.body_timeout,
            upstream_timeout: options.upstream_timeout,
            shutdown_grace: options.shutdown_grace,
            add_via: options.add_via,
            add_forwarded_for: options.add_forwarded_for,
        }
    }
}

impl ProxyConfig {
    /// Builds the proxy's run-time options. `idle_flush` is
    /// `filter.idle_flush`, where zero disables idle flushing.
    ///
    /// Because command-line flags may override the public fields, this
    /// checks the upstream, the limits and the time limits again.
    ///
    /// # Errors
    ///
    /// [`ConfigError::UpstreamMissing`] when no upstream is set, and
    /// [`ConfigError::InvalidProxyOption`] for a value that a config file
    /// could not contain.
    pub fn to_options(&self, idle_flush: Duration) -> Result<ProxyOptions, ConfigError> {
        let upstream = self.upstream.clone().ok_or(ConfigError::UpstreamMissing)?;
        check_upstream(&upstream, &upstream.to_string()).map_err(|problem| {
            ConfigError::InvalidProxyOption {
                key: "proxy.upstream",
                problem: problem.to_string(),
            }
        })?;
        self.check_limits()?;
        let mut options = ProxyOptions::new(self.listen, upstream);
        options.upstream_ca = self.upstream_ca.clone();
        options.upstream_http2 = self.upstream_http2;
        options.upstream_token_file = self.upstream_token_file.clone();
        options.credential_scheme = self.credential_scheme.as_str().to_string();
        options.forward_credentials = self.forward_credentials.clone();
        options.redact_responses = self.redact_responses;
        options.pass_uninspectable = self.pass_uninspectable;
        options.max_body_bytes = self.max_body_bytes;
        options.max_decoded_bytes = self.max_decoded_bytes;
        options.max_decompression_ratio = self.max_decompression_ratio;
        options.max_concurrent_requests = self.max_concurrent_requests;
        options.header_timeout = self.header_timeout;
        options.body_timeout = self.body_timeout;
        options.upstream_timeout = self.upstream_timeout;
        options.shutdown_grace = self.shutdown_grace;
        options.add_via = self.add_via;
        options.add_forwarded_for = self.add_forwarded_for;
        options.idle_flush = Some(idle_flush).filter(|d| !d.is_zero());
        Ok(options)
    }

    /// Checks the limits and time limits with the rules a config file
    /// follows.
    fn check_limits(&self) -> Result<(), ConfigError> {
        let counts = [
            ("proxy.max_body_bytes", self.max_body_bytes, u64::MAX),
            ("proxy.max_decoded_bytes", self.max_decoded_bytes, u64::MAX),
            (
                "proxy.max_decompression_ratio",
                self.max_decompression_ratio,
                u64::MAX,
            ),
            (
                "proxy.max_concurrent_requests",
                self.max_concurrent_requests as u64,
                CONCURRENT_REQUESTS_MAX as u64,
            ),
        ];
        for (key, value, max) in counts {
            if value == 0 || value > max {
                return Err(ConfigError::InvalidProxyOption {
                    key,
                    problem: format!("{value} is out of range; {}", range_hint(1, max, "")),
                });
            }
        }
        let time_limits = [
            ("proxy.header_timeout", self.header_timeout),
            ("proxy.body_timeout", self.body_timeout),
            ("proxy.upstream_timeout", self.upstream_timeout),
            ("proxy.shutdown_grace", self.shutdown_grace),
        ];
        for (key, value) in time_limits {
            if let Some(problem) = time_limit_problem(value) {
                let formatted = humantime::format_duration(value);
                return Err(ConfigError::InvalidProxyOption {
                    key,
                    problem: format!("{formatted} {problem}; {TIME_LIMIT_HINT}"),
                });
            }
        }
        Ok(())
    }
}

/// Scheme of the credential that dtredact sends upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum CredentialScheme {
    /// `Authorization: Api-Token <token>`, the Dynatrace API token scheme.
    #[default]
    ApiToken,
    /// `Authorization: Bearer <token>`, as for OAuth tokens.
    Bearer,
}

impl CredentialScheme {
    /// Every scheme, in the order the docs list them.
    pub const ALL: [CredentialScheme; 2] = [CredentialScheme::ApiToken, CredentialScheme::Bearer];

    /// Returns the scheme as written in the `Authorization` header and in
    /// the config.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialScheme::ApiToken => "Api-Token",
            CredentialScheme::Bearer => "Bearer",
        }
    }
}

impl fmt::Display for CredentialScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CredentialScheme {
    type Err = ();

    /// Parses a scheme name. HTTP authentication schemes are
    /// case-insensitive (RFC 9110, section 11.1), so `bearer` is accepted.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CredentialScheme::ALL
            .into_iter()
            .find(|scheme| scheme.as_str().eq_ignore_ascii_case(s))
            .ok_or(())
    }
}

/// The `[admin]` table: the admin HTTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Socket address of the admin HTTP server, which serves `/metrics`,
    /// `/healthz`, `/readyz` and `/leaks`. `None` (the default, written as
    /// `""`) disables the server.
    pub addr: Option<SocketAddr>,
    /// Distinct token identifiers kept in the leak inventory (default
    /// [`DEFAULT_MAX_LEAK_IDS`]).
    pub max_leak_ids: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            addr: None,
            max_leak_ids: DEFAULT_MAX_LEAK_IDS,
        }
    }
}

/// The `[log]` table: dtredact's own diagnostic log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Output format (default `text`).
    pub format: LogFormat,
    /// `tracing_subscriber::EnvFilter` directives such as `info` or
    /// `dtredact=debug,hyper=warn` (default `info`). The parser checks
    /// them, and the `RUST_LOG` environment variable overrides them at run
    /// time.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            filter: DEFAULT_LOG_FILTER.to_string(),
        }
    }
}

/// Format of dtredact's own log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Every format, in the order the docs list them.
    pub const ALL: [LogFormat; 2] = [LogFormat::Text, LogFormat::Json];

    /// Returns the name used in the config and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected upstream URL. Messages never show the URL's user
/// information, which may contain a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamUrlError {
    /// The text is not a URL.
    #[error("invalid URL {value:?}: {message}; {UPSTREAM_HINT}")]
    Invalid {
        /// The value given.
        value: String,
        /// Message of the URL parser.
        message: String,
    },
    /// The scheme is missing or is neither `http` nor `https`.
    #[error("URL {value:?} does not start with http:// or https://; {UPSTREAM_HINT}")]
    Scheme {
        /// The value given.
        value: String,
    },
    /// The URL has no host.
    #[error("URL {value:?} has no host; {UPSTREAM_HINT}")]
    NoHost {
        /// The value given.
        value: String,
    },
    /// The port is not a number from 1 to 65535.
    #[error("URL {value:?} has an invalid port; use a port from 1 to 65535, or none for the scheme's default")]
    Port {
        /// The value given.
        value: String,
    },
    /// The URL contains a user name or password. The value is not shown.
    #[error("the URL contains user information (user:password@host), which dtredact does not send; remove it and put the token in the file that proxy.upstream_token_file names")]
    UserInfo,
    /// The URL has a query or fragment, which forwarding would drop.
    #[error("URL {value:?} has a query or fragment; remove it, because dtredact appends each request's path and query to the base URL's path")]
    QueryOrFragment {
        /// The value given.
        value: String,
    },
}

const UPSTREAM_HINT: &str =
    "write a base URL such as \"https://logs.example.com\" or \"http://127.0.0.1:9000/api/v2\"";

/// Fix suggested for an invalid time limit. [`ConfigError::InvalidTimeLimit`]
/// repeats it.
pub(super) const TIME_LIMIT_HINT: &str =
    "write a number with a unit, greater than zero and at most 24h, such as \"500ms\" or \"30s\"";

/// Parses and checks an upstream base URL, as `proxy.upstream` and the
/// `--upstream` flag take it: `http` or `https`, with a host, and without
/// user information, query or fragment.
///
/// # Errors
///
/// [`UpstreamUrlError`] names the problem, without the user information.
pub fn parse_upstream(value: &str) -> Result<Uri, UpstreamUrlError> {
    // Checked before parsing, so that no later message can show a password.
    if has_user_info(value) {
        return Err(UpstreamUrlError::UserInfo);
    }
    // The URI parser drops a fragment without an error.
    if value.contains('#') {
        return Err(UpstreamUrlError::QueryOrFragment {
            value: value.to_string(),
        });
    }
    let uri: Uri = value
        .parse()
        .map_err(|e: http::uri::InvalidUri| UpstreamUrlError::Invalid {
            value: value.to_string(),
            message: e.to_string(),
        })?;
    check_upstream(&uri, value)?;
    Ok(uri)
}

/// Checks a parsed upstream URL. Messages quote `value`, the URL as written.
fn check_upstream(uri: &Uri, value: &str) -> Result<(), UpstreamUrlError> {
    let shown = || value.to_string();
    let Some(authority) = uri.authority() else {
        return match uri.scheme_str() {
            None => Err(UpstreamUrlError::Scheme { value: shown() }),
            Some(_) => Err(UpstreamUrlError::NoHost { value: shown() }),
        };
    };
    if authority.as_str().contains('@') {
        return Err(UpstreamUrlError::UserInfo);
    }
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(UpstreamUrlError::Scheme { value: shown() });
    }
    let host = authority.host();
    if host.is_empty() {
        return Err(UpstreamUrlError::NoHost { value: shown() });
    }
    // Without user information the authority is `host` or `host:port`. The
    // parser accepts any digits as a port, so check the range here.
    let port = &authority.as_str()[host.len()..];
    if let Some(port) = port.strip_prefix(':') {
        if !matches!(port.parse::<u16>(), Ok(1..)) {
            return Err(UpstreamUrlError::Port { value: shown() });
        }
    }
    if uri.query().is_some() {
        return Err(UpstreamUrlError::QueryOrFragment { value: shown() });
    }
    Ok(())
}

/// Reports whether the authority of `value` (the text between `://` and
/// the next `/`, `?` or `#`) contains an `@`, which marks user
/// information.
fn has_user_info(value: &str) -> bool {
    let rest = value.split_once("://").map_or(value, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority.contains('@')
}

/// Returns what is wrong with a time limit, or `None` when it is in range.
fn time_limit_problem(value: Duration) -> Option<&'static str> {
    if value.is_zero() {
        Some("is zero")
    } else if value > TIME_LIMIT_MAX {
        Some("is longer than 24h")
    } else {
        None
    }
}

/// Describes the range `min..=max` of a limit. A maximum of `i64::MAX` or
/// more is no real bound, because a config file cannot give more.
pub(super) fn range_hint(min: u64, max: u64, unit: &str) -> String {
    let unit = if unit.is_empty() {
        String::new()
    } else {
        format!(" {unit}")
    };
    if max >= i64::MAX as u64 {
        format!("use {min} or more{unit}")
    } else {
        format!("use {min} to {max}{unit}")
    }
}

/// The `[proxy]` table as deserialized, before defaults and checks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProxyTable {
    listen: Option<Spanned<String>>,
    upstream: Option<Spanned<String>>,
    upstream_ca: Option<Spanned<String>>,
    upstream_http2: Option<bool>,
    upstream_token_file: Option<Spanned<String>>,
    credential_scheme: Option<Spanned<String>>,
    forward_credentials: Option<Vec<Spanned<String>>>,
    redact_responses: Option<bool>,
    pass_uninspectable: Option<bool>,
    max_body_bytes: Option<Spanned<i64>>,
    max_decoded_bytes: Option<Spanned<i64>>,
    max_decompression_ratio: Option<Spanned<i64>>,
    max_concurrent_requests: Option<Spanned<i64>>,
    header_timeout: Option<Spanned<String>>,
    body_timeout: Option<Spanned<String>>,
    upstream_timeout: Option<Spanned<String>>,
    shutdown_grace: Option<Spanned<String>>,
    add_via: Option<bool>,
    add_forwarded_for: Option<bool>,
}

/// The `[admin]` table as deserialized.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AdminTable {
    addr: Option<Spanned<String>>,
    max_leak_ids: Option<Spanned<i64>>,
}

/// The `[log]` table as deserialized.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogTable {
    format: Option<Spanned<String>>,
    filter: Option<Spanned<String>>,
}

const LISTEN_HINT: &str =
    "write an IP address and a port, such as \"127.0.0.1:8080\" or \"[::]:8080\"";
const ADMIN_ADDR_HINT: &str = "write an IP address and a port, such as \"127.0.0.1:9090\", or \"\" to disable the admin server";

impl ProxyTable {
    pub(super) fn validate(self, src: &Source) -> Result<ProxyConfig, ConfigError> {
        let mut out = ProxyConfig::default();
        if let Some(listen) = self.listen {
            out.listen = parse_addr(&listen, "proxy.listen", LISTEN_HINT, src)?;
        }
        if let Some(upstream) = self.upstream {
            if !upstream.get_ref().is_empty() {
                let uri = parse_upstream(upstream.get_ref()).map_err(|problem| {
                    ConfigError::InvalidUpstream {
                        at: src.at(upstream.span(), "proxy.upstream"),
                        problem,
                    }
                })?;
                out.upstream = Some(uri);
            }
        }
        if let Some(ca) = self.upstream_ca {
            let hint = "give the path of the PEM file of the upstream's CA, or remove the key to use the system roots";
            out.upstream_ca = Some(non_empty_path(&ca, "proxy.upstream_ca", hint, src)?);
        }
        out.upstream_http2 = self.upstream_http2.unwrap_or(out.upstream_http2);
        if let Some(file) = self.upstream_token_file {
            let hint = "give the path of the file that contains the upstream token, or remove the key to forward the client's credentials";
            let path = non_empty_path(&file, "proxy.upstream_token_file", hint, src)?;
            out.upstream_token_file = Some(path);
        }
        if let Some(scheme) = self.credential_scheme {
            out.credential_scheme =
                scheme
                    .get_ref()
                    .parse()
                    .map_err(|()| ConfigError::InvalidChoice {
                        at: src.at(scheme.span(), "proxy.credential_scheme"),
                        value: scheme.get_ref().clone(),
                        choices: "Api-Token, Bearer",
                    })?;
        }
        if let Some(names) = self.forward_credentials {
            out.forward_credentials = parse_header_names(names, src)?;
        }
        out.redact_responses = self.redact_responses.unwrap_or(out.redact_responses);
        out.pass_uninspectable = self.pass_uninspectable.unwrap_or(out.pass_uninspectable);

        let any = u64::MAX;
        if let Some(v) = self.max_body_bytes {
            out.max_body_bytes = limit(&v, "proxy.max_body_bytes", any, "bytes", src)?;
        }
        if let Some(v) = self.max_decoded_bytes {
            out.max_decoded_bytes = limit(&v, "proxy.max_decoded_bytes", any, "bytes", src)?;
        }
        if let Some(v) = self.max_decompression_ratio {
            let key = "proxy.max_decompression_ratio";
            out.max_decompression_ratio =
                limit(&v, key, any, "decoded bytes per encoded byte", src)?;
        }
        if let Some(v) = self.max_concurrent_requests {
            let key = "proxy.max_concurrent_requests";
            let max = CONCURRENT_REQUESTS_MAX as u64;
            // The cast is lossless because `limit` checked that v <= max.
            out.max_concurrent_requests = limit(&v, key, max, "requests", src)? as usize;
        }

        let time_limits = [
            (
                self.header_timeout,
                "proxy.header_timeout",
                &mut out.header_timeout,
            ),
            (
                self.body_timeout,
                "proxy.body_timeout",
                &mut out.body_timeout,
            ),
            (
                self.upstream_timeout,
                "proxy.upstream_timeout",
                &mut out.upstream_timeout,
            ),
            (
                self.shutdown_grace,
                "proxy.shutdown_grace",
                &mut out.shutdown_grace,
            ),
        ];
        for (value, key, field) in time_limits {
            if let Some(value) = value {
                *field = time_limit(&value, key, src)?;
            }
        }

        out.add_via = self.add_via.unwrap_or(out.add_via);
        out.add_forwarded_for = self.add_forwarded_for.unwrap_or(out.add_forwarded_for);
        Ok(out)
    }
}

impl AdminTable {
    pub(super) fn validate(self, src: &Source) -> Result<AdminConfig, ConfigError> {
        let mut out = AdminConfig::default();
        if let Some(addr) = self.addr {
            if !addr.get_ref().is_empty() {
                out.addr = Some(parse_addr(&addr, "admin.addr", ADMIN_ADDR_HINT, src)?);
            }
        }
        if let Some(v) = self.max_leak_ids {
            let max = usize::MAX as u64;
            // The cast is lossless because `limit` checked that v <= max.
            out.max_leak_ids =
                limit(&v, "admin.max_leak_ids", max, "token identifiers", src)? as usize;
        }
        Ok(out)
    }
}

impl LogTable {
    pub(super) fn validate(self, src: &Source) -> Result<LogConfig, ConfigError> {
        let mut out = LogConfig::default();
        if let Some(format) = self.format {
            let value = format.get_ref();
            out.format = LogFormat::ALL
                .into_iter()
                .find(|f| f.as_str() == value)
                .ok_or_else(|| ConfigError::InvalidChoice {
                    at: src.at(format.span(), "log.format"),
                    value: value.clone(),
                    choices: "text, json",
                })?;
        }
        if let Some(filter) = self.filter {
            let value = filter.get_ref();
            let at = || src.at(filter.span(), "log.filter");
            if value.trim().is_empty() {
                return Err(ConfigError::EmptyValue {
                    at: at(),
                    hint: "give a level such as \"info\", or remove the key to use \"info\"",
                });
            }
            if let Err(e) = tracing_subscriber::EnvFilter::try_new(value) {
                return Err(ConfigError::InvalidLogFilter {
                    at: at(),
                    value: value.clone(),
                    message: e.to_string(),
                });
            }
            out.filter = value.clone();
        }
        Ok(out)
    }
}

fn parse_addr(
    value: &Spanned<String>,
    key: &str,
    hint: &'static str,
    src: &Source,
) -> Result<SocketAddr, ConfigError> {
    value
        .get_ref()
        .parse()
        .map_err(|_| ConfigError::InvalidAddress {
            at: src.at(value.span(), key),
            value: value.get_ref().clone(),
            hint,
        })
}

fn non_empty_path(
    value: &Spanned<String>,
    key: &str,
    hint: &'static str,
    src: &Source,
) -> Result<PathBuf, ConfigError> {
    if value.get_ref().is_empty() {
        return Err(ConfigError::EmptyValue {
            at: src.at(value.span(), key),
            hint,
        });
    }
    Ok(src.resolve(value.get_ref()))
}

/// Parses `proxy.forward_credentials`, lower-casing each name and dropping
/// repeats.
fn parse_header_names(
    names: Vec<Spanned<String>>,
    src: &Source,
) -> Result<Vec<HeaderName>, ConfigError> {
    let mut out: Vec<HeaderName> = Vec::with_capacity(names.len());
    for (index, name) in names.iter().enumerate() {
        // `from_bytes` lower-cases the name.
        let header = HeaderName::from_bytes(name.get_ref().as_bytes()).map_err(|_| {
            ConfigError::InvalidHeaderName {
                at: src.at(name.span(), format!("proxy.forward_credentials[{index}]")),
                value: name.get_ref().clone(),
            }
        })?;
        if !out.contains(&header) {
            out.push(header);
        }
    }
    Ok(out)
}

/// Checks an integer limit against `1..=max`.
fn limit(
    value: &Spanned<i64>,
    key: &str,
    max: u64,
    unit: &'static str,
    src: &Source,
) -> Result<u64, ConfigError> {
    let number = *value.get_ref();
    u64::try_from(number)
        .ok()
        .filter(|v| (1..=max).contains(v))
        .ok_or_else(|| ConfigError::LimitRange {
            at: src.at(value.span(), key),
            value: number,
            min: 1,
            max,
            unit,
        })
}

fn time_limit(value: &Spanned<String>, key: &str, src: &Source) -> Result<Duration, ConfigError> {
    let text = value.get_ref();
    let error = |problem: String| ConfigError::InvalidTimeLimit {
        at: src.at(value.span(), key),
        value: text.clone(),
        problem,
    };
    let duration = humantime::parse_duration(text).map_err(|e| error(e.to_string()))?;
    match time_limit_problem(duration) {
        Some(problem) => Err(error(problem.to_string())),
        None => Ok(duration),
    }
}

/// Writes the `[proxy]`, `[admin]` and `[log]` tables of the effective
/// config. Paths are shown, the contents of the files they name are not.
pub(super) fn write_effective(out: &mut String, config: &super::Config) -> fmt::Result {
    write_proxy(out, &config.proxy)?;

    writeln!(out)?;
    writeln!(out, "[admin]")?;
    match config.admin.addr {
        Some(addr) => writeln!(out, "addr = {}", quote(&addr.to_string()))?,
        None => writeln!(out, "addr = \"\" # the admin server is disabled")?,
    }
    writeln!(out, "max_leak_ids = {}", config.admin.max_leak_ids)?;

    writeln!(out)?;
    writeln!(out, "[log]")?;
    writeln!(out, "format = {}", quote(config.log.format.as_str()))?;
    writeln!(out, "# RUST_LOG, when set, overrides filter")?;
    writeln!(out, "filter = {}", quote(&config.log.filter))?;
    Ok(())
}

fn write_proxy(out: &mut String, proxy: &ProxyConfig) -> fmt::Result {
    writeln!(out)?;
    writeln!(out, "[proxy]")?;
    writeln!(out, "listen = {}", quote(&proxy.listen.to_string()))?;
    match &proxy.upstream {
        Some(uri) if uri.authority().is_some_and(|a| a.as_str().contains('@')) => {
            // Only code can set such a URL, because parsing rejects it.
            writeln!(out, "# upstream contains user information and is not shown")?
        }
        Some(uri) => writeln!(out, "upstream = {}", quote(&uri.to_string()))?,
        None => writeln!(
            out,
            "upstream = \"\" # not set: dtredact proxy requires --upstream"
        )?,
    }
    match &proxy.upstream_ca {
        Some(path) => writeln!(out, "upstream_ca = {}", quote_path(path))?,
        None => writeln!(
            out,
            "# upstream_ca is not set: the system root certificates are used"
        )?,
    }
    writeln!(out, "upstream_http2 = {}", proxy.upstream_http2)?;
    match &proxy.upstream_token_file {
        Some(path) => writeln!(out, "upstream_token_file = {}", quote_path(path))?,
        None => writeln!(
            out,
            "# upstream_token_file is not set: the headers in forward_credentials pass unmasked"
        )?,
    }
    writeln!(
        out,
        "credential_scheme = {}",
        quote(proxy.credential_scheme.as_str())
    )?;
    let names: Vec<String> = proxy
        .forward_credentials
        .iter()
        .map(|name| quote(name.as_str()))
        .collect();
    writeln!(out, "forward_credentials = [{}]", names.join(", "))?;
    writeln!(out, "redact_responses = {}", proxy.redact_responses)?;
    writeln!(out, "pass_uninspectable = {}", proxy.pass_uninspectable)?;
    writeln!(out, "max_body_bytes = {}", proxy.max_body_bytes)?;
    writeln!(out, "max_decoded_bytes = {}", proxy.max_decoded_bytes)?;
    writeln!(
        out,
        "max_decompression_ratio = {}",
        proxy.max_decompression_ratio
    )?;
    writeln!(
        out,
        "max_concurrent_requests = {}",
        proxy.max_concurrent_requests
    )?;
    let time_limits = [
        ("header_timeout", proxy.header_timeout),
        ("body_timeout", proxy.body_timeout),
        ("upstream_timeout", proxy.upstream_timeout),
        ("shutdown_grace", proxy.shutdown_grace),
    ];
    for (key, value) in time_limits {
        let text = humantime::format_duration(value).to_string();
        writeln!(out, "{key} = {}", quote(&text))?;
    }
    writeln!(out, "add_via = {}", proxy.add_via)?;
    writeln!(out, "add_forwarded_for = {}", proxy.add_forwarded_for)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_scheme_matches_proxy_options() {
        let options = ProxyOptions::new(DEFAULT_PROXY_LISTEN, Uri::default());
        assert_eq!(
            CredentialScheme::default().as_str(),
            options.credential_scheme
        );
    }

    #[test]
    fn credential_scheme_ignores_case() {
        assert_eq!("bearer".parse(), Ok(CredentialScheme::Bearer));
        assert_eq!("API-TOKEN".parse(), Ok(CredentialScheme::ApiToken));
        assert_eq!("Basic".parse::<CredentialScheme>(), Err(()));
    }

    #[test]
    fn log_format_names_match_clap() {
        for format in LogFormat::ALL {
            let value = clap::ValueEnum::to_possible_value(&format).unwrap();
            assert_eq!(value.get_name(), format.as_str());
        }
    }

    #[test]
    fn user_info_found_only_in_authority() {
        assert!(has_user_info("https://u:p@h/x"));
        assert!(has_user_info("u@h:80"));
        assert!(!has_user_info("https://h/a@b"));
        assert!(!has_user_info("https://h?q=a@b"));
    }

    #[test]
    fn range_hint_omits_huge_maximum() {
        assert_eq!(range_hint(1, u64::MAX, "bytes"), "use 1 or more bytes");
        assert_eq!(range_hint(1, 10, ""), "use 1 to 10");
    }
}
