//! The pooled client that talks to the log sink.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::{ProxyBody, ProxyOptions};

/// The upstream client type.
pub(crate) type UpstreamClient = Client<HttpsConnector<HttpConnector>, ProxyBody>;

/// Errors building the upstream client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The CA file could not be read.
    #[error("failed to read the upstream CA file {path}: {source}")]
    ReadCa {
        /// File path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The CA file holds no usable certificate.
    #[error("the upstream CA file {path} holds no valid PEM certificate")]
    InvalidCa {
        /// File path.
        path: String,
    },
    /// The system's root certificates could not be loaded.
    #[error("failed to load the system root certificates: {0}; set --upstream-ca")]
    NativeRoots(String),
}

/// Builds the pooled upstream client.
pub(crate) fn client(options: &ProxyOptions) -> Result<UpstreamClient, UpstreamError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions");
    let https = options.upstream.scheme() == Some(&http::uri::Scheme::HTTPS);
    let roots = match &options.upstream_ca {
        Some(path) => ca_roots(path)?,
        None if https => native_roots()?,
        // A plain-HTTP upstream needs no roots.
        None => rustls::RootCertStore::empty(),
    };
    let tls = builder.with_root_certificates(roots).with_no_client_auth();

    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(options.upstream_timeout));
    http.set_nodelay(true);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .http2_only(options.upstream_http2);
    Ok(builder.build(connector))
}

fn ca_roots(path: &Path) -> Result<rustls::RootCertStore, UpstreamError> {
    let pem = std::fs::read(path).map_err(|source| UpstreamError::ReadCa {
        path: path.display().to_string(),
        source,
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(UpstreamError::InvalidCa {
            path: path.display().to_string(),
        });
    }
    Ok(roots)
}

fn native_roots() -> Result<rustls::RootCertStore, UpstreamError> {
    let result = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    for cert in result.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        let reason = result
            .errors
            .first()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "no certificates found".to_string());
        return Err(UpstreamError::NativeRoots(reason));
    }
    Ok(roots)
}
