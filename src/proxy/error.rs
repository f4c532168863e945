//! Every error the proxy responds to itself, with its status code, in one
//! place. Bodies are short JSON objects that name the problem and never
//! contain request data.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::ProxyBody;

/// Reason the proxy responded to a request itself instead of forwarding the
/// upstream's response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The upstream could not be reached or dropped the connection.
    #[error("upstream unreachable")]
    UpstreamUnreachable,
    /// The upstream did not send response headers in time.
    #[error("upstream timed out")]
    UpstreamTimeout,
    /// The body is larger than the configured maximum, before or after
    /// decoding, or decodes to too many times its size.
    #[error("request body too large")]
    BodyTooLarge(BodyLimit),
    /// The body's Content-Encoding is not one the proxy can inspect.
    #[error("unsupported content encoding")]
    UnsupportedEncoding,
    /// The body could not be decoded.
    #[error("request body could not be decoded")]
    CorruptBody,
    /// The client sent the body too slowly.
    #[error("client timed out sending the request body")]
    ClientTimeout,
    /// The client closed the connection before the body ended.
    #[error("client aborted the request body")]
    ClientAborted,
    /// Too many requests are in flight.
    #[error("too many concurrent requests")]
    Overloaded,
    /// The upstream's response could not be inspected (unknown or corrupt
    /// encoding), so it is not passed on.
    #[error("upstream response could not be inspected")]
    UninspectableResponse,
}

/// Size limit that a body exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLimit {
    /// Bytes as sent (`proxy.max_body_bytes`).
    Encoded,
    /// Bytes after decoding (`proxy.max_decoded_bytes`).
    Decoded,
    /// Decoded bytes per encoded byte (`proxy.max_decompression_ratio`).
    Ratio,
}

impl ProxyError {
    /// Every value [`ProxyError::kind`] returns.
    pub const KINDS: [&'static str; 11] = [
        "upstream_unreachable",
        "upstream_timeout",
        "body_too_large",
        "decoded_body_too_large",
        "decompression_bomb",
        "unsupported_encoding",
        "corrupt_body",
        "client_timeout",
        "client_aborted",
        "overloaded",
        "uninspectable_response",
    ];

    /// Returns the status code of the response.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::UpstreamUnreachable | ProxyError::UninspectableResponse => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::UnsupportedEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProxyError::CorruptBody => StatusCode::BAD_REQUEST,
            ProxyError::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            // The client is gone; the status only reaches logs and metrics.
            ProxyError::ClientAborted => StatusCode::BAD_REQUEST,
            ProxyError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Stable machine-readable name, used in the JSON body, in logs and as
    /// a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::UpstreamUnreachable => "upstream_unreachable",
            ProxyError::UpstreamTimeout => "upstream_timeout",
            ProxyError::BodyTooLarge(BodyLimit::Encoded) => "body_too_large",
            ProxyError::BodyTooLarge(BodyLimit::Decoded) => "decoded_body_too_large",
            ProxyError::BodyTooLarge(BodyLimit::Ratio) => "decompression_bomb",
            ProxyError::UnsupportedEncoding => "unsupported_encoding",
            ProxyError::CorruptBody => "corrupt_body",
            ProxyError::ClientTimeout => "client_timeout",
            ProxyError::ClientAborted => "client_aborted",
            ProxyError::Overloaded => "overloaded",
            ProxyError::UninspectableResponse => "uninspectable_response",
        }
    }

    /// Returns what the client can do about it.
    fn hint(&self) -> &'static str {
        match self {
            ProxyError::UpstreamUnreachable => "the log sink could not be reached; retry later",
            ProxyError::UpstreamTimeout => "the log sink did not respond in time; retry later",
            ProxyError::BodyTooLarge(_) => "send smaller batches",
            ProxyError::UnsupportedEncoding => {
                "use Content-Encoding gzip, deflate, zstd, br or identity"
            }
            ProxyError::CorruptBody => "the body does not match its Content-Encoding",
            ProxyError::ClientTimeout => "send the body without long pauses",
            ProxyError::ClientAborted => "the request body was cut off",
            ProxyError::Overloaded => "retry later",
            ProxyError::UninspectableResponse => "the log sink sent a body dtredact cannot decode",
        }
    }

    /// Builds the response sent to the client.
    pub fn to_response(&self, request_id: &str) -> Response<ProxyBody> {
        let body = serde_json::json!({
            "error": self.kind(),
            "message": format!("{self}: {}", self.hint()),
            "request_id": request_id,
        });
        let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
        bytes.push(b'\n');
        let mut response = Response::new(
            Full::new(Bytes::from(bytes))
                .map_err(|never| match never {})
                .boxed(),
        );
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert("x-dtredact-error", HeaderValue::from_static(self.kind()));
        if let Ok(id) = HeaderValue::from_str(request_id) {
            headers.insert("x-request-id", id);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_lists_every_kind() {
        let all = [
            ProxyError::UpstreamUnreachable,
            ProxyError::UpstreamTimeout,
            ProxyError::BodyTooLarge(BodyLimit::Encoded),
            ProxyError::BodyTooLarge(BodyLimit::Decoded),
            ProxyError::BodyTooLarge(BodyLimit::Ratio),
            ProxyError::UnsupportedEncoding,
            ProxyError::CorruptBody,
            ProxyError::ClientTimeout,
            ProxyError::ClientAborted,
            ProxyError::Overloaded,
            ProxyError::UninspectableResponse,
        ];
        let kinds: Vec<&str> = all.iter().map(ProxyError::kind).collect();
        assert_eq!(kinds, ProxyError::KINDS);
    }
}
