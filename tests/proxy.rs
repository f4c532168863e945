//! End-to-end tests of `dtredact proxy`: real clients (hyper and curl) send
//! requests through an in-process proxy, or the real binary, to a recording
//! upstream on 127.0.0.1, and the tests check what the upstream received
//! and what the client got back.

mod proxy_support;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dtredact::synth::{SynthToken, TokenGen, TokenKind};
use dtredact::{Policy, Redactor};
use http::{header, Request, StatusCode};
use proxy_support::*;

fn classic(seed: u64) -> SynthToken {
    TokenGen::new(seed).token(TokenKind::Classic)
}

/// Returns the secret part of a dotted token (after the last dot).
fn secret_of(token: &SynthToken) -> &str {
    token.text.rsplit('.').next().expect("dotted token")
}

/// Returns a few log lines with `token` in the middle one.
fn log_with(token: &str) -> String {
    format!(
        "2024-05-01T10:00:00Z INFO starting worker\n\
         2024-05-01T10:00:01Z DEBUG calling api with token={token} ok\n\
         2024-05-01T10:00:02Z INFO done\n"
    )
}

fn header_str(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

// ---------------------------------------------------------------------
// Identity bodies and framing
// ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_body_masked_length_kept() {
    bounded(async {
        let upstream = Upstream::start(Behavior::default()).await;
        let proxy = Proxy::to(&upstream).await;
        let token = classic(1);
        let body = log_with(&token.text);
        let expected = log_with(&token.masked);

        let answer = send(
            &http1_client(),
            post(proxy.addr, "/api/v2/logs/ingest", full(body.clone())),
        )
        .await
        .expect("request through the proxy");
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body, b"ok\n");

        let records = upstream.wait_complete(1).await;
        assert_eq!(records.len(), 1);
        let got = &records[0];
        assert_eq!(got.target, "/api/v2/logs/ingest");
        assert_eq!(String::from_utf8_lossy(&got.body), expected);
        assert_eq!(
            header_str(&got.headers, "content-length"),
            Some(body.len().to_string()),
            "Content-Length must be kept for a length-keeping policy"
        );
        assert_eq!(got.body.len(), body.len());
        assert!(got.headers.get("transfer-encoding").is_none());
        assert_eq!(
            header_str(&got.headers, "host"),
            Some(upstream.addr.to_string()),
            "Host must name the upstream"
        );
        assert_eq!(
            header_str(&got.headers, "via").as_deref(),
            Some("1.1 dtredact")
        );
        let findings = proxy.findings.lock().unwrap().clone();
        assert_eq!(findings.len(), 1, "one finding for one token");
        assert_eq!(findings[0].token_id, token.id);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_token_across_frames() {
    bounded(async {
        let upstream = Upstream::start(Behavior::default()).await;
        let proxy =
            Proxy::start(upstream.uri(), Redactor::default(), |o| o.idle_flush = None).await;
        let token = classic(2);
        let body = log_with(&token.text).into_bytes();
        let cut = body.len() / 2;
        let frames = vec![body[..cut].to_vec(), body[cut..].to_vec()];

        let answer = send(
            &http1_client(),
            post(
                proxy.addr,
                "/logs",
                framed(frames, Duration::from_millis(20)),
            ),
        )
        .await
        .expect("request through the proxy");
        assert_eq!(answer.status, StatusCode::OK);

        let records = upstream.wait_complete(1).await;
        assert_eq!(
            String::from_utf8_lossy(&records[0].body),
            log_with(&token.masked)
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_token_every_position() {
    bounded(async {
        let upstream = Upstream::start(Behavior::default()).await;
        let proxy =
            Proxy::start(upstream.uri(), Redactor::default(), |o| o.idle_flush = None).await;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(hyper_util::client::legacy::connect::HttpConnector::new());
        let token = classic(3);
        let body = format!("a={} b\n", token.text).into_bytes();
        let expected = format!("a={} b\n", token.masked).into_bytes();

        // One request per cut position, each with two non-empty frames.
        for cut in 1..body.len() {
            let frames = vec![body[..cut].to_vec(), body[cut..].to_vec()];
            let answer = send(
                &client,
                post(proxy.addr, "/split", framed(frames, Duration::ZERO)),
            )
            .await
            .unwrap_or_else(|e| panic!("request with cut at {cut} failed: {e}"));
            assert_eq!(answer.status, StatusCode::OK, "cut at {cut}");
        }
        let records = upstream.wait_complete(body.len() - 1).await;
        for (i, record) in records.iter().enumerate() {
            let cut = i + 1;
            assert_eq!(
                String::from_utf8_lossy(&record.body),
                String::from_utf8_lossy(&expected),
                "cut at {cut}"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_pause_inside_token() {
    // Default options: held-back bytes are released after 100 ms. A pause
    // in the middle of the secret must not let any part of it through.
    bounded(async {
        let upstream = Upstream::start(Behavior::default()).await;
        let proxy = Proxy::to(&upstream).await;
        let token = classic(4);
        let body = log_with(&token.text).into_bytes();
        let secret = secret_of(&token);
        let start = memchr::memmem::find(&body, secret.as_bytes()).expect("secret in body");
        let cut = start + secret.len() / 2;
        let frames = vec![body[..cut].to_vec(), body[cut..].to_vec()];

        let answer = send(
            &http1_client(),
            post(
                proxy.addr,
                "/logs",
                framed(frames, Duration::from_millis(500)),
            ),
        )
        .await
        .expect("request through the proxy");
        assert_eq!(answer.status, StatusCode::OK);

        let records = upstream.wait_complete(1).await;
        let got = &records[0].body;
        assert_eq!(got.len(), body.len());
        assert!(
            !contains(got, &secret.as_bytes()[..16]),
            "first part of the secret leaked"
        );
        assert!(
            !contains(got, &secret.as_bytes()[secret.len() - 16..]),
            "last part of the secret leaked"
        );
    })
    .await;
}

// ---------------------------------------------------------------------
// Content codings
// ---------------------------------------------------------------------

/// Returns a body of many log lines with several tokens, large enough to
/// take several frames once encoded, and the body the proxy must forward.
fn big_log(seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut gen = TokenGen::new(seed);
    let mut input = Vec::new();
    let mut expected = Vec::new();
    for i in 0..2000 {
        if i % 97 == 0 {
            let token = gen.token(TokenKind::Classic);
            input.extend_from_slice(log_with(&token.text).as_bytes());
            expected.extend_from_slice(log_with(&token.masked).as_bytes());
        } else {
            let line = format!(
                "2024-05-01T10:00:00Z INFO request {i} served in {} ms\n",
                i % 13
            );
            input.extend_from_slice(line.as_bytes());
            expected.extend_from_slice(line.as_bytes());
        }
    }
    (input, expected)
}

#[derive(Clone, Copy, Debug)]
enum Coding {
    Gzip,
    Zlib,
    RawDeflate,
    Zstd,
    Brotli,
}

impl Coding {
    const ALL: [Coding; 5] = [
        Coding::Gzip,
        Coding::Zlib,
        Coding::RawDeflate,
        Coding::Zstd,
        Coding::Brotli,
    ];

    fn header(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Zlib | Coding::RawDeflate => "deflate",
            Coding::Zstd => "zstd",
            Coding::Brotli => "br",
        }
    }

    fn encode(self, data: &[u8]) -> Vec<u8> {
        use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
        use flate2::Compression;
        match self {
            Coding::Gzip => {
                let mut e = GzEncoder::new(Vec::new(), Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Coding::Zlib => {
                let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Coding::RawDeflate => {
                let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Coding::Zstd => zstd::encode_all(data, 3).unwrap(),
            Coding::Brotli => {
                let mut out = Vec::new();
                {
                    let mut e = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                    e.write_all(data).unwrap();
                }
                out
            }
        }
    }

    /// Decodes `data` strictly in this coding (raw deflate stays raw).
    fn decode(self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        use flate2::read::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};
        let mut out = Vec::new();
        match self {
            Coding::Gzip => MultiGzDecoder::new(data).read_to_end(&mut out)?,
            Coding::Zlib => ZlibDecoder::new(data).read_to_end(&mut out)?,
            Coding::RawDeflate => DeflateDecoder::new(data).read_to_end(&mut out)?,
            Coding::Zstd => return zstd::decode_all(data),
            Coding::Brotli => brotli::Decompressor::new(data, 4096).read_to_end(&mut out)?,
        };
        Ok(out)
    }
}

/// Cuts `data` into `parts` frames of about equal size.
fn frames_of(data: &[u8], parts: usize) -> Vec<Vec<u8>> {
    let size = data.len().div_ceil(parts).max(1);
    data.chunks(size).map(<[u8]>::to_vec).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_bodies_masked_same_coding() {
    bounded(async {
        let upstream = Upstream::start(Behavior::default()).await;
        let proxy = Proxy::to(&upstream).await;
        let client = http1_client();
        let (input, expected) = big_log(5);

        for (i, coding) in Coding::ALL.into_iter().enumerate() {
            let encoded = coding.encode(&input);
            let request = Request::post(format!("http://{}/enc/{coding:?}", proxy.addr))
                .header(header::CONTENT_ENCODING, coding.header())
                .header(header::CONTENT_TYPE, "text/plain")
                .body(framed(frames_of(&encoded, 3), Duration::ZERO))
                .unwrap();
            let answer = send(&client, request)
                .await
                .expect("request through the proxy");
            assert_eq!(
                answer.status,
                StatusCode::OK,
                "{coding:?}: {}",
                String::from_utf8_lossy(&answer.body)
            );

            let records = upstream.wait_complete(i + 1).await;
            let got = &records[i];
            assert_eq!(got.target, format!("/enc/{coding:?}"));
            assert_eq!(
                header_str(&got.headers, "content-encoding").as_deref(),
                Some(coding.header()),
                "{coding:?}: Content-Encoding must be kept"
            );
            let decoded = coding
                .decode(&got.body)
                .unwrap_or_else(|e| panic!("{coding:?}: upstream body does not decode: {e}"));
            assert!(
                decoded == expected,
                "{coding:?}: decoded body is not the masked input"
            );
            if let Some(length) = header_str(&got.headers, "content-length") {
                assert_eq!(
                    length,
                    got.body.len().to_string(),
                    "{coding:?}: wrong Content-Length"
                );
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_gzip_rejected_400() {
    bounded(async {
        let upstream = Upstream::start(Behavior::default()).await;
        let proxy = Proxy::to(&upstream).await;
        let client = http1_client();

        let request = Request::post(format!("http://{}/logs", proxy.addr))
            .header(header::CONTENT_ENCODING, "gzip")
            .body(full(&b"this is plain text, not a gzip stream\n"[..]))
            .unwrap();
        let answer = send(&client, request).await.expect("answer from the proxy");
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            header_str(&answer.headers, "content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(answer.error_kind(), "corrupt_body");
        let records = upstream.records_after(Duration::from_millis(300)).await;
        assert!(
            records.is_empty(),
            "upstream got {} requests",
            records.len()
        );

        // A valid stream whose CRC is wrong fails only at the end, after
        // forwarding has begun: the upstream must not get a whole body.
        let mut encoded = Coding::Gzip.encode(log_with(&classic(6).text).as_bytes());
        let crc_at = encoded.len() - 8;
        encoded[crc_at] ^= 0xff;
        let request = Request::post(format!("http://{}/logs", proxy.addr))
            .header(header::CONTENT_ENCODING, "gzip")
            .body(full(encoded))
            .unwrap();
        let answer = send(&client, request).await.expect("answer from the proxy");
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        assert_eq!(answer.error_kind(), "corrupt_body");
        let records = upstream.records_after(Duration::from_millis(300)).await;
        assert!(
            records.iter().all(|r| !r.complete),
            "upstream received a complete body of a corrupt gzip request"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_encoding_415_or_passed() {
    bounded(async {
        let upstream = Upstream::start(Behavior::default()).await;
        let body = b"\x1f\x9d compress-format bytes".to_vec();

        let proxy = Proxy::to(&upstream).await;
        let request = Request::post(format!("http://{}/logs", proxy.addr))
            .header(header::CONTENT_ENCODING, "compress")
            .body(full(body.clone()))
            .unwrap();
        let answer = send(&http1_client(), request)
            .await
            .expect("answer from the proxy");
        assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(answer.error_kind(), "unsupported_encoding");
        assert!(upstream
            .records_after(Duration::from_millis(300))
            .await
            .is_empty());

        let passing = Proxy::start(upstream.uri(), Redactor::default(), |o| {
            o.pass_uninspectable = true
        })
        .await;
        let request = Request::post(format!("http://{}/logs", passing.addr))
            .header(header::CONTENT_ENCODING, "compress")
            .body(full(body.clone()))
            .unwrap();
        let answer = send(&http1_client(), request)
            .await
            .expect("answer from the proxy");
        assert_eq!(answer.status, StatusCode::OK);
        let records = upstream.wait_complete(1).await;
        assert_eq!(records[0].body, body);
        assert_eq!(
            header_str(&records[0].headers, "content-encoding").as_deref(),
            Some("compress")
        );
    })
    .await;
}

/// Returns a gzip body that decodes to `members` MiB of zeros: one member
/// of 1 MiB of zeros, repeated, so that building it stays cheap.
fn gzip_zeros(members: usize) -> Vec<u8> {
    let member = Coding::Gzip.encode(&vec![0u8; 1 << 20]);
    let mut out = Vec::with_capacity(member.len() * members);
    for _ in 0..members {
        out.extend_from_slice(&member);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bomb_rejected_memory_bounded() {
    bounded(async {
        let before = proc_status_kib("self", "VmHWM");
        let upstream = Upstream::start(Behavior {
            keep_body: false,
            ..Behavior::default()
        })
        .await;
        // 1 GiB of zeros in about 1 MiB of gzip.
        let bomb = Bytes::from(gzip_zeros(1024));

        // Default limits: the ratio check stops it.
        let proxy = Proxy::to(&upstream).await;
        let request = Request::post(format!("http://{}/logs", proxy.addr))
            .header(header::CONTENT_ENCODING, "gzip")
            .body(framed(frames_of(&bomb, 16), Duration::ZERO))
            .unwrap();
        let answer = send(&http1_client(), request)
            .await
            .expect("answer from the proxy");
        assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(answer.error_kind(), "decompression_bomb");

        // Without a ratio limit, the decoded-size limit stops it.
        let proxy = Proxy::start(upstream.uri(), Redactor::default(), |o| {
            o.max_decompression_ratio = u64::MAX;
            o.max_decoded_bytes = 16 << 20;
        })
        .await;
        let request = Request::post(format!("http://{}/logs", proxy.addr))
            .header(header::CONTENT_ENCODING, "gzip")
            .body(framed(frames_of(&bomb, 16), Duration::ZERO))
            .unwrap();
        let answer = send(&http1_client(), request)
            .await
            .expect("answer from the proxy");
        assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(answer.error_kind(), "decoded_body_too_large");
        let records = upstream.records_after(Duration::from_millis(300)).await;
        assert!(
            records.iter().all(|r| !r.complete),
            "upstream got a whole bomb"
        );

        let after = proc_status_kib("self", "VmHWM");
        let growth_mib = after.saturating_sub(before) / 1024;
        assert!(growth_mib < 256, "peak memory grew by {growth_mib} MiB");
    })
    .await;
}

// ---------------------------------------------------------------------
// Length-changing policy
// ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placeholder_policy_reframes_body() {
    bounded(async {
        let upstream = Upstream::start(Behavior::default()).await;
        let redactor = Redactor::builder()
            .policy(Policy::Placeholder)
            .build()
            .unwrap();
        let proxy = Proxy::start(upstream.uri(), redactor.clone(), |_| {}).await;
        let token = classic(7);
        let body = log_with(&token.text).into_bytes();
        let (expected, _) = redactor.redact_all(&body);
        assert_ne!(
            expected.len(),
            body.len(),
            "placeholder must change the length"
        );

        let answer = send(
            &http1_client(),
            post(proxy.addr, "/logs", full(body.clone())),
        )
        .await
        .expect("request through the proxy");
        assert_eq!(answer.status, StatusCode::OK);
        let records = upstream.wait_complete(1).await;
        let got = &records[0];
        assert_eq!(got.body, expected);
        match header_str(&got.headers, "content-length") {
            Some(length) => assert_eq!(length, got.body.len().to_string()),
            None => assert_eq!(
                header_str(&got.headers, "transfer-encoding").as_deref(),
                Some("chunked")
            ),
        }

        // The query string too, and the path must survive the mask.
        let path = format!("/api/v2/logs/ingest?Api-Token={}&x=1", token.text);
        let answer = send(
            &http1_client(),
            post(proxy.addr, &path, full(&b"hello\n"[..])),
        )
        .await
        .expect("request through the proxy");
        assert_eq!(answer.status, StatusCode::OK);
        let records = upstream.wait_complete(2).await;
        let target = &records[1].target;
        assert!(
            target.starts_with("/api/v2/logs/ingest?"),
            "upstream got target {target:?}"
        );
        assert!(
            !target.contains(secret_of(&token)),
            "secret leaked in the query"
        );
        assert!(target.ends_with("&x=1"), "upstream got target {target:?}");
    })
    .await;
}

// ---------------------------------------------------------------------
// Upstream failures and client aborts
// ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_502() {
    bounded(async {
        let down = closed_port().await;
        let uri: http::Uri = format!("http://{down}").parse().unwrap();
        let proxy = Proxy::start(uri, Redactor::default(), |_| {}).await;
        let answer = send(
            &http1_client(),
            post(proxy.addr, "/logs", full(&b"x\n"[..])),
        )
        .await
        .expect("answer from the proxy");
        assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
        assert_eq!(answer.error_kind(), "upstream_unreachable");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_504() {
    bounded(async {
        let upstream = Upstream::start(Behavior {
            delay: Duration::from_secs(5),
            ..Behavior::default()
        })
        .await;
        let proxy = Proxy::start(upstream.uri(), Redactor::default(), |o| {
            o.upstream_timeout = Duration::from_millis(500)
        })
        .await;
        let answer = send(
            &http1_client(),
            post(proxy.addr, "/logs", full(&b"x\n"[..])),
        )
        .await
        .expect("answer from the proxy");
        assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(answer.error_kind(), "upstream_timeout");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_abort_never_completes_upstream() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    bounded(async {
        let upstream = Upstream::start(Behavior::default()).await;
        let proxy = Proxy::start(upstream.uri(), Redactor::default(), |o| o.idle_flush = None).await;
        let line = log_with(&classic(8).text);

        // Content-Length promises more than is sent; the connection closes.
        let head = format!(
            "POST /abort HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            line.len() * 100
        );
        let mut raw = head.into_bytes();
        for _ in 0..50 {
            raw.extend_from_slice(line.as_bytes());
        }
        write_and_close(proxy.addr, &raw).await;

        // Chunked: one chunk, no terminating chunk, write side shut down,
        // and the client still reads whatever the proxy sends.
        let chunk = line.repeat(20);
        let raw = format!(
            "POST /abort HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n",
            chunk.len()
        );
        let mut tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        tcp.write_all(raw.as_bytes()).await.unwrap();
        tcp.shutdown().await.unwrap();
        let mut reply = Vec::new();
        let _ = bounded_for(Duration::from_secs(20), tcp.read_to_end(&mut reply)).await;
        let reply = String::from_utf8_lossy(&reply);
        assert!(
            !reply.starts_with("HTTP/1.1 2"),
            "client got a 2xx for a cut-off body: {reply:?}"
        );

        let records = upstream.records_after(Duration::from_millis(500)).await;
        for record in &records {
            assert!(!record.complete, "upstream got a complete body: {} bytes", record.body_len);
        }
    })
    .await;
}

// ---------------------------------------------------------------------
// Headers, query strings and credentials
// ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_and_query_masked() {
    bounded(async {
        let upstream = Upstream::start(Behavior::default()).await;
        let proxy = Proxy::to(&upstream).await;
        let in_query = classic(9);
        let in_header = classic(10);
        let in_auth = classic(11);

        let request = Request::post(format!(
            "http://{}/api/v2/logs/ingest?Api-Token={}&x=1",
            proxy.addr, in_query.text
        ))
        .header("x-debug-token", format!("key {}", in_header.text))
        .header(header::AUTHORIZATION, format!("Api-Token {}", in_auth.text))
        .body(full(&b"hello\n"[..]))
        .unwrap();
        let answer = send(&http1_client(), request)
            .await
            .expect("request through the proxy");
        assert_eq!(answer.status, StatusCode::OK);

        let records = upstream.wait_complete(1).await;
        let got = &records[0];
        assert_eq!(
            got.target,
            format!("/api/v2/logs/ingest?Api-Token={}&x=1", in_query.masked)
        );
        assert_eq!(
            header_str(&got.headers, "x-debug-token"),
            Some(format!("key {}", in_header.masked))
        );
        assert_eq!(
            header_str(&got.headers, "authorization"),
            Some(format!("Api-Token {}", in_auth.text)),
            "Authorization is forwarded unmasked by default"
        );

        // Without forward_credentials, Authorization is masked too.
        let strict = Proxy::start(upstream.uri(), Redactor::default(), |o| {
            o.forward_credentials.clear()
        })
        .await;
        let request = Request::post(format!("http://{}/logs", strict.addr))
            .header(header::AUTHORIZATION, format!("Api-Token {}", in_auth.text))
            .body(full(&b"hello\n"[..]))
            .unwrap();
        let answer = send(&http1_client(), request)
            .await
            .expect("request through the proxy");
        assert_eq!(answer.status, StatusCode::OK);
        let records = upstream.wait_complete(2).await;
        let auth = header_str(&records[1].headers, "authorization").unwrap_or_default();
        assert!(
            !auth.contains(secret_of(&in_auth)),
            "Authorization was not masked: {auth}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_file_injected_and_reloaded() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        let first = classic(12);
        let second = classic(13);
        let client_token = classic(14);
        std::fs::write(&file, format!("{}\n", first.text)).unwrap();

        let upstream = Upstream::start(Behavior::default()).await;
        let path = file.clone();
        let proxy = Proxy::start(upstream.uri(), Redactor::default(), move |o| {
            o.upstream_token_file = Some(path)
        })
        .await;
        let client = http1_client();
        let request_with_auth = |addr| {
            Request::post(format!("http://{addr}/logs"))
                .header(
                    header::AUTHORIZATION,
                    format!("Api-Token {}", client_token.text),
                )
                .body(full(&b"hello\n"[..]))
                .unwrap()
        };

        let answer = send(&client, request_with_auth(proxy.addr)).await.unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        let records = upstream.wait_complete(1).await;
        assert_eq!(
            header_str(&records[0].headers, "authorization"),
            Some(format!("Api-Token {}", first.text))
        );

        // Replace the file the way a Secret volume update does: write a
        // new file and rename it over the old one.
        let staged = dir.path().join("token.new");
        std::fs::write(&staged, format!("{}\n", second.text)).unwrap();
        std::fs::rename(&staged, &file).unwrap();
        let expected_auth = format!("Api-Token {}", second.text);
        let mut seen_new = false;
        for attempt in 0..50 {
            send(&client, request_with_auth(proxy.addr)).await.unwrap();
            let records = upstream.wait_complete(attempt + 2).await;
            if header_str(&records[attempt + 1].headers, "authorization").as_deref()
                == Some(expected_auth.as_str())
            {
                seen_new = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(seen_new, "upstream never saw the new token within 10 s");

        for record in upstream.records() {
            for value in record.headers.values() {
                let value = String::from_utf8_lossy(value.as_bytes());
                assert!(
                    !value.contains(secret_of(&client_token)),
                    "the client's token reached the upstream"
                );
            }
        }
    })
    .await;
}

// ---------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_body_and_headers_masked() {
    bounded(async {
        let token = classic(15);
        let behavior = Behavior {
            headers: vec![("x-echo".into(), format!("got {}", token.text))],
            body: log_with(&token.text).into_bytes(),
            ..Behavior::default()
        };
        let upstream = Upstream::start(behavior.clone()).await;

        let proxy = Proxy::to(&upstream).await;
        let answer = send(
            &http1_client(),
            post(proxy.addr, "/logs", full(&b"x\n"[..])),
        )
        .await
        .unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(
            String::from_utf8_lossy(&answer.body),
            log_with(&token.masked)
        );
        assert_eq!(
            header_str(&answer.headers, "x-echo"),
            Some(format!("got {}", token.masked))
        );

        let open = Proxy::start(upstream.uri(), Redactor::default(), |o| {
            o.redact_responses = false
        })
        .await;
        let answer = send(&http1_client(), post(open.addr, "/logs", full(&b"x\n"[..])))
            .await
            .unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(String::from_utf8_lossy(&answer.body), log_with(&token.text));
        assert_eq!(
            header_str(&answer.headers, "x-echo"),
            Some(format!("got {}", token.text))
        );

        // A gzip response is decoded, masked and sent back as gzip.
        upstream.set_behavior(Behavior {
            headers: vec![("content-encoding".into(), "gzip".into())],
            body: Coding::Gzip.encode(log_with(&token.text).as_bytes()),
            ..behavior
        });
        let answer = send(
            &http1_client(),
            post(proxy.addr, "/logs", full(&b"x\n"[..])),
        )
        .await
        .unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        let decoded = Coding::Gzip.decode(&answer.body).expect("gzip response");
        assert_eq!(String::from_utf8_lossy(&decoded), log_with(&token.masked));
    })
    .await;
}

// ---------------------------------------------------------------------
// TLS and HTTP/2
// ---------------------------------------------------------------------

/// A CA and a server certificate for 127.0.0.1 signed by it.
struct TestPki {
    ca_pem: String,
    acceptor: tokio_rustls::TlsAcceptor,
}

fn test_pki(name: &str) -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("dtredact test CA {name}"));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let leaf_key = KeyPair::generate().unwrap();
    let leaf_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    TestPki {
        ca_pem: ca.pem(),
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_private_ca() {
    bounded(async {
        let pki = test_pki("trusted");
        let other = test_pki("other");
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &pki.ca_pem).unwrap();
        let other_file = dir.path().join("other.pem");
        std::fs::write(&other_file, &other.ca_pem).unwrap();

        let upstream = Upstream::start_tls(
            Behavior::default(),
            UpstreamTls {
                acceptor: pki.acceptor.clone(),
            },
        )
        .await;
        let uri: http::Uri = format!("https://{}", upstream.addr).parse().unwrap();
        let token = classic(16);

        let ca = ca_file.clone();
        let proxy = Proxy::start(uri.clone(), Redactor::default(), move |o| {
            o.upstream_ca = Some(ca)
        })
        .await;
        let answer = send(
            &http1_client(),
            post(proxy.addr, "/logs", full(log_with(&token.text))),
        )
        .await
        .unwrap();
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        let records = upstream.wait_complete(1).await;
        assert_eq!(
            String::from_utf8_lossy(&records[0].body),
            log_with(&token.masked)
        );

        // A CA that did not sign the upstream's certificate.
        let proxy = Proxy::start(uri.clone(), Redactor::default(), move |o| {
            o.upstream_ca = Some(other_file)
        })
        .await;
        let answer = send(
            &http1_client(),
            post(proxy.addr, "/logs", full(log_with(&token.text))),
        )
        .await
        .unwrap();
        assert_eq!(answer.status, StatusCode::BAD_GATEWAY);

        // No CA file: the system roots do not know the test CA.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let options = dtredact::proxy::ProxyOptions::new(listener.local_addr().unwrap(), uri);
        let addr = options.listen;
        let shutdown = dtredact::proxy::Shutdown::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let tx = std::sync::Mutex::new(Some(tx));
        let serving = tokio::spawn(dtredact::proxy::serve(
            listener,
            options,
            Redactor::default(),
            shutdown.clone(),
            Arc::new(|_: &[dtredact::Finding], _: &str| {}),
            Arc::new(move |up| {
                if up {
                    if let Some(tx) = tx.lock().unwrap().take() {
                        let _ = tx.send(());
                    }
                }
            }),
        ));
        tokio::select! {
            _ = rx => {
                let answer = send(&http1_client(), post(addr, "/logs", full(&b"x\n"[..])))
                    .await
                    .unwrap();
                assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
                shutdown.trigger();
            }
            result = serving => {
                // No system roots on this machine: starting fails instead.
                let error = result.unwrap().expect_err("serve ended without being stopped");
                println!("note: proxy without --upstream-ca did not start: {error}");
            }
        }
        assert_eq!(upstream.records().iter().filter(|r| r.complete).count(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_client_and_h2c_upstream() {
    bounded(async {
        let upstream = Upstream::start(Behavior::default()).await;
        let token = classic(17);

        let proxy = Proxy::to(&upstream).await;
        let answer = send(
            &http2_client(),
            post(proxy.addr, "/logs", full(log_with(&token.text))),
        )
        .await
        .expect("HTTP/2 request through the proxy");
        assert_eq!(answer.status, StatusCode::OK);
        let records = upstream.wait_complete(1).await;
        assert_eq!(
            String::from_utf8_lossy(&records[0].body),
            log_with(&token.masked)
        );
        assert_eq!(records[0].version, http::Version::HTTP_11);

        let h2 = Proxy::start(upstream.uri(), Redactor::default(), |o| {
            o.upstream_http2 = true
        })
        .await;
        for client in [http1_client(), http2_client()] {
            let answer = send(&client, post(h2.addr, "/logs", full(log_with(&token.text))))
                .await
                .expect("request through the proxy to an h2c upstream");
            assert_eq!(
                answer.status,
                StatusCode::OK,
                "{}",
                String::from_utf8_lossy(&answer.body)
            );
        }
        let records = upstream.wait_complete(3).await;
        for record in &records[1..] {
            assert_eq!(record.version, http::Version::HTTP_2);
            assert_eq!(
                String::from_utf8_lossy(&record.body),
                log_with(&token.masked)
            );
        }
    })
    .await;
}

// ---------------------------------------------------------------------
// Concurrency limit
// ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_503() {
    bounded(async {
        let upstream = Upstream::start(Behavior {
            delay: Duration::from_secs(2),
            ..Behavior::default()
        })
        .await;
        let proxy = Proxy::start(upstream.uri(), Redactor::default(), |o| {
            o.max_concurrent_requests = 1
        })
        .await;
        let addr = proxy.addr;
        let first = tokio::spawn(async move {
            send(&http1_client(), post(addr, "/slow", full(&b"one\n"[..]))).await
        });
        upstream.wait_complete(1).await;

        let answer = send(&http1_client(), post(addr, "/fast", full(&b"two\n"[..])))
            .await
            .unwrap();
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.error_kind(), "overloaded");

        let first = first.await.unwrap().unwrap();
        assert_eq!(first.status, StatusCode::OK);
        // The permit is free again.
        upstream.set_behavior(Behavior::default());
        let answer = send(&http1_client(), post(addr, "/again", full(&b"three\n"[..])))
            .await
            .unwrap();
        assert_eq!(answer.status, StatusCode::OK);
    })
    .await;
}

// ---------------------------------------------------------------------
// curl
// ---------------------------------------------------------------------

/// Runs curl with `args`, returning (HTTP status, body). Returns `None`
/// with a note when curl is not installed.
fn curl(args: &[&str]) -> Option<(u16, Vec<u8>)> {
    if !curl_available() {
        println!("note: curl is not installed; skipping the curl case");
        return None;
    }
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "60", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut body = out.stdout;
    let split = body.iter().rposition(|&b| b == b'\n').expect("status line");
    let status = String::from_utf8_lossy(&body[split + 1..])
        .trim()
        .parse()
        .unwrap();
    body.truncate(split);
    Some((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_identity_gzip_and_h2() {
    bounded(async {
        let upstream = Upstream::start(Behavior::default()).await;
        let proxy = Proxy::to(&upstream).await;
        let dir = tempfile::tempdir().unwrap();
        let (input, expected) = big_log(18);
        // About 4 MiB, so that curl sends `Expect: 100-continue`.
        let mut big = Vec::new();
        let mut big_expected = Vec::new();
        while big.len() < 4 << 20 {
            big.extend_from_slice(&input);
            big_expected.extend_from_slice(&expected);
        }
        let plain = dir.path().join("plain.log");
        std::fs::write(&plain, &big).unwrap();
        let gz = dir.path().join("body.gz");
        std::fs::write(&gz, Coding::Gzip.encode(&input)).unwrap();
        let url = format!("http://{}/curl", proxy.addr);

        let cases: Vec<(Vec<String>, &[u8])> = vec![
            (
                vec!["--data-binary".into(), format!("@{}", plain.display())],
                &big_expected,
            ),
            (
                vec![
                    "-H".into(),
                    "Content-Encoding: gzip".into(),
                    "--data-binary".into(),
                    format!("@{}", gz.display()),
                ],
                &expected,
            ),
            (
                vec![
                    "--http2-prior-knowledge".into(),
                    "--data-binary".into(),
                    format!("@{}", plain.display()),
                ],
                &big_expected,
            ),
        ];
        for (i, (extra, want)) in cases.into_iter().enumerate() {
            let mut args: Vec<String> = extra;
            args.push(url.clone());
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let Some((status, body)) = tokio::task::spawn_blocking({
                let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
                move || curl(&argv.iter().map(String::as_str).collect::<Vec<_>>())
            })
            .await
            .unwrap() else {
                return;
            };
            assert_eq!(status, 200, "case {i}: {}", String::from_utf8_lossy(&body));
            let records = upstream.wait_complete(i + 1).await;
            let got = &records[i];
            let decoded = if header_str(&got.headers, "content-encoding").as_deref() == Some("gzip")
            {
                Coding::Gzip.decode(&got.body).unwrap()
            } else {
                got.body.clone()
            };
            assert!(
                decoded == want,
                "case {i}: upstream body is not the masked input"
            );
        }
    })
    .await;
}

// ---------------------------------------------------------------------
// Body size and timing limits
// ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upload_not_upstream_timeout() {
    // The upstream timeout bounds the wait for the upstream's response, not
    // the time a client takes to send a body that keeps arriving.
    bounded(async {
        let upstream = Upstream::start(Behavior::default()).await;
        let proxy = Proxy::start(upstream.uri(), Redactor::default(), |o| {
            o.upstream_timeout = Duration::from_secs(1);
            o.body_timeout = Duration::from_secs(5);
        })
        .await;
        let token = classic(19);
        let body = log_with(&token.text).repeat(5).into_bytes();
        let frames = frames_of(&body, 6);
        let answer = send(
            &http1_client(),
            post(
                proxy.addr,
                "/slow-client",
                framed(frames, Duration::from_millis(400)),
            ),
        )
        .await
        .expect("request through the proxy");
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        let records = upstream.wait_complete(1).await;
        assert_eq!(
            String::from_utf8_lossy(&records[0].body),
            log_with(&token.masked).repeat(5)
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_client_408() {
    bounded(async {
        let upstream = Upstream::start(Behavior::default()).await;
        let proxy = Proxy::start(upstream.uri(), Redactor::default(), |o| {
            o.body_timeout = Duration::from_millis(300);
        })
        .await;
        let frames = vec![b"first line\n".to_vec(), b"second line\n".to_vec()];
        let answer = send(
            &http1_client(),
            post(proxy.addr, "/stall", framed(frames, Duration::from_secs(2))),
        )
        .await
        .expect("answer from the proxy");
        assert_eq!(answer.status, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(answer.error_kind(), "client_timeout");
        let records = upstream.records_after(Duration::from_millis(300)).await;
        assert!(
            records.iter().all(|r| !r.complete),
            "upstream got a complete body"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_length_over_limit_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    bounded(async {
        let upstream = Upstream::start(Behavior::default()).await;
        let proxy = Proxy::start(upstream.uri(), Redactor::default(), |o| {
            o.max_body_bytes = 1000;
        })
        .await;
        let encoded = Coding::Gzip.encode(big_log(20).0.as_slice());
        assert!(encoded.len() > 1000);

        for coding in ["identity", "gzip"] {
            // Send the head and a small first piece, then the rest: a body
            // whose Content-Length is over the limit is rejected at once.
            let head = format!(
                "POST /big HTTP/1.1\r\nHost: x\r\nContent-Encoding: {coding}\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                encoded.len()
            );
            let mut tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
            tcp.write_all(head.as_bytes()).await.unwrap();
            tcp.write_all(&encoded[..100]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = tcp.write_all(&encoded[100..]).await;
            let mut reply = Vec::new();
            let _ = bounded_for(Duration::from_secs(20), tcp.read_to_end(&mut reply)).await;
            let reply = String::from_utf8_lossy(&reply);
            assert!(
                reply.starts_with("HTTP/1.1 413"),
                "{coding}: expected 413, got {reply:?}"
            );
        }
        let records = upstream.records_after(Duration::from_millis(300)).await;
        assert!(
            records.is_empty(),
            "upstream was contacted for {} bodies over the limit",
            records.len()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_body_over_limit_413() {
    bounded(async {
        let upstream = Upstream::start(Behavior::default()).await;
        let proxy = Proxy::start(upstream.uri(), Redactor::default(), |o| {
            o.max_body_bytes = 64 * 1024;
        })
        .await;
        let frames = vec![vec![b'a'; 16 * 1024]; 8];
        let answer = send(
            &http1_client(),
            post(
                proxy.addr,
                "/big",
                framed(frames, Duration::from_millis(10)),
            ),
        )
        .await
        .expect("answer from the proxy");
        assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(answer.error_kind(), "body_too_large");
        let records = upstream.records_after(Duration::from_millis(300)).await;
        assert!(
            records.iter().all(|r| !r.complete),
            "upstream got a complete body"
        );
    })
    .await;
}

/// A client that writes a body over the limit without pause is still
/// writing when the 413 goes out: it must read the 413, not a reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_body_over_limit_reads_413() {
    bounded(async {
        let upstream = Upstream::start(Behavior::default()).await;
        let proxy = Proxy::start(upstream.uri(), Redactor::default(), |o| {
            o.max_body_bytes = 64 * 1024;
        })
        .await;
        // Bytes that do not compress, so the gzip body is over the limit
        // as sent too.
        let mut state = 0x9e37_79b9_u32;
        let plain: Vec<u8> = (0..4 << 20)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 24) as u8
            })
            .collect();
        // The race is lost only now and then: run it several times.
        let cases = [None, Some(Coding::Gzip)].repeat(5);
        for coding in cases {
            let body = match coding {
                Some(c) => c.encode(&plain),
                None => plain.clone(),
            };
            let mut request = Request::post(format!("http://{}/big", proxy.addr));
            if let Some(c) = coding {
                request = request.header(header::CONTENT_ENCODING, c.header());
            }
            let request = request
                .body(framed(frames_of(&body, 256), Duration::ZERO))
                .unwrap();
            let answer = send(&http1_client(), request)
                .await
                .unwrap_or_else(|e| panic!("{coding:?}: no answer from the proxy: {e}"));
            assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{coding:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placeholder_token_in_path() {
    bounded(async {
        let upstream = Upstream::start(Behavior::default()).await;
        let redactor = Redactor::builder()
            .policy(Policy::Placeholder)
            .build()
            .unwrap();
        let proxy = Proxy::start(upstream.uri(), redactor, |_| {}).await;
        let token = classic(21);
        let path = format!("/logs/{}/tail?x=1", token.text);
        let answer = send(
            &http1_client(),
            post(proxy.addr, &path, full(&b"hello\n"[..])),
        )
        .await
        .expect("request through the proxy");
        assert_eq!(answer.status, StatusCode::OK);
        let records = upstream.wait_complete(1).await;
        let target = &records[0].target;
        assert!(
            target.starts_with("/logs/"),
            "upstream got target {target:?}"
        );
        assert!(
            target.ends_with("/tail?x=1"),
            "upstream got target {target:?}"
        );
        assert!(
            !target.contains(secret_of(&token)),
            "secret leaked in the path"
        );
        // Findings are reported under the masked path.
        let routes = proxy.routes.lock().unwrap().clone();
        assert!(!routes.is_empty(), "no findings reported");
        for route in routes {
            assert!(
                route.starts_with("/logs/") && route.ends_with("/tail"),
                "{route:?}"
            );
            assert!(
                !route.contains(secret_of(&token)),
                "secret in route {route:?}"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_not_reading_504() {
    // An upstream that stops reading the body must not hold the request
    // forever: the upstream timeout runs while the body makes no progress.
    bounded(async {
        let upstream = Upstream::start(Behavior {
            read_body: false,
            delay: Duration::from_secs(30),
            ..Behavior::default()
        })
        .await;
        let proxy = Proxy::start(upstream.uri(), Redactor::default(), |o| {
            o.upstream_timeout = Duration::from_secs(1);
        })
        .await;
        // Far more than the socket buffers hold, so that sending stalls.
        let frames = vec![vec![b'x'; 1 << 20]; 32];
        let answer = bounded_for(
            Duration::from_secs(20),
            send(
                &http1_client(),
                post(proxy.addr, "/stuck", framed(frames, Duration::ZERO)),
            ),
        )
        .await
        .expect("answer from the proxy");
        assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(answer.error_kind(), "upstream_timeout");
    })
    .await;
}

// ---------------------------------------------------------------------
// The real binary
// ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight() {
    bounded(async {
        let upstream = Upstream::start(Behavior {
            delay: Duration::from_millis(1500),
            ..Behavior::default()
        })
        .await;
        let mut proxy = ProxyProcess::start(&upstream.uri(), "", &["--shutdown-grace", "20s"]);
        let addr = proxy.addr;

        // Keep-alive connections that sit idle when the signal comes must
        // not hold the drain until the grace runs out.
        let idle_h1 =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(hyper_util::client::legacy::connect::HttpConnector::new());
        let idle_h2 = http2_client();
        for client in [&idle_h1, &idle_h2] {
            let answer = send(client, post(addr, "/warm-up", full(&b"x\n"[..])))
                .await
                .expect("warm-up request");
            assert_eq!(answer.status, StatusCode::OK);
        }
        let warm_up = upstream.records().len();

        // Requests of two shapes: whole bodies, and bodies still arriving
        // in frames when the signal comes.
        let mut sent = Vec::new();
        for i in 0..8u64 {
            let token = classic(100 + i);
            let body = log_with(&token.text).into_bytes();
            let expected = log_with(&token.masked).into_bytes();
            let path = format!("/req/{i}");
            let request_body = if i % 2 == 0 {
                full(body)
            } else {
                framed(frames_of(&body, 3), Duration::from_millis(300))
            };
            let request = post(addr, &path, request_body);
            let task = tokio::spawn(async move { send(&http1_client(), request).await });
            sent.push((path, expected, task));
        }
        // Signal once the upstream has seen requests start.
        bounded_for(Duration::from_secs(30), async {
            while upstream.records().len() < warm_up + 4 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        proxy.terminate();
        let signalled = std::time::Instant::now();

        let mut answered_ok = 0;
        for (path, expected, task) in sent {
            let result = task.await.unwrap();
            let Ok(answer) = result else { continue };
            if !answer.status.is_success() {
                continue;
            }
            answered_ok += 1;
            let records = upstream.records();
            let record = records
                .iter()
                .find(|r| r.target == path)
                .unwrap_or_else(|| panic!("{path} answered 2xx but never reached the upstream"));
            assert!(
                record.complete,
                "{path} answered 2xx but its body was cut off"
            );
            assert_eq!(record.body, expected, "{path}: wrong body upstream");
        }
        println!("{answered_ok} of 8 requests answered 2xx during shutdown");
        assert!(
            answered_ok >= 4,
            "only {answered_ok} of 8 in-flight requests were answered"
        );

        let status = tokio::task::spawn_blocking(move || {
            // The in-flight requests need about 2 s; 10 s is far less than
            // the 20 s grace, so waiting out the grace fails here.
            let limit = Duration::from_secs(10).saturating_sub(signalled.elapsed());
            let status = proxy.wait_exit(limit);
            (status, proxy.stderr())
        })
        .await
        .unwrap();
        match status {
            (Some(status), log) => assert!(status.success(), "exit {status}; stderr:\n{log}"),
            (None, log) => panic!("proxy did not exit within 10 s of SIGTERM; stderr:\n{log}"),
        }
        drop(idle_h1);
        drop(idle_h2);

        // The port is closed after shutdown.
        let after = send(&http1_client(), post(addr, "/late", full(&b"x\n"[..]))).await;
        assert!(after.is_err(), "the proxy still answered after exiting");
    })
    .await;
}

/// Streams `total` bytes of log text through the binary, with a token
/// straddling every frame boundary, and checks memory and masking.
async fn stream_through_binary(total: u64) {
    let token = classic(200);
    let secret = secret_of(&token).as_bytes().to_vec();
    let upstream = Upstream::start(Behavior {
        keep_body: false,
        needles: vec![secret.clone(), token.masked.clone().into_bytes()],
        ..Behavior::default()
    })
    .await;
    let config = format!(
        "[filter]\nidle_flush = \"0s\"\n\n[proxy]\nmax_body_bytes = {}\nmax_decoded_bytes = {}\n",
        total * 2,
        total * 2
    );
    let proxy = ProxyProcess::start(&upstream.uri(), &config, &[]);
    let pid = proxy.pid().to_string();

    // Frame layout: [filler][token head] then repeated
    // [token tail][filler][token head], ending with [token tail].
    let cut = token.text.len() / 2;
    let (head, tail) = token.text.as_bytes().split_at(cut);
    let mut filler = Vec::new();
    while filler.len() < 64 * 1024 {
        filler.extend_from_slice(b"2024-05-01T10:00:00Z INFO a plain log line without secrets\n");
    }
    let first: Bytes = [&filler[..], head].concat().into();
    let middle: Bytes = [tail, &filler[..], head].concat().into();
    let last: Bytes = [tail, &b"\n"[..]].concat().into();
    let frames = 1 + (total - first.len() as u64) / middle.len() as u64;
    let body_len = first.len() as u64 + (frames - 1) * middle.len() as u64 + last.len() as u64;

    let (tx, body) = streamed();
    let feeder = tokio::spawn(async move {
        tx.send(Ok(first)).await.map_err(|_| "closed")?;
        for _ in 1..frames {
            tx.send(Ok(middle.clone())).await.map_err(|_| "closed")?;
        }
        tx.send(Ok(last)).await.map_err(|_| "closed")?;
        Ok::<(), &str>(())
    });
    let answer = send(&http1_client(), post(proxy.addr, "/bulk", body))
        .await
        .expect("bulk request through the proxy");
    let peak_kib = proc_status_kib(&pid, "VmHWM");
    feeder.await.unwrap().expect("body fed whole");
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );

    let records = upstream.wait_complete(1).await;
    let got = &records[0];
    assert_eq!(got.body_len, body_len);
    assert_eq!(got.needle_hits[0], 0, "the secret reached the upstream");
    assert_eq!(got.needle_hits[1], frames, "masked tokens upstream");
    let peak_mib = peak_kib / 1024;
    assert!(peak_mib < 128, "proxy peak memory {peak_mib} MiB");
    println!("proxy peak memory: {peak_mib} MiB for {body_len} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_streams_1gib_bounded() {
    // About 35 s in a debug build on two shared cores.
    bounded_for(Duration::from_secs(600), stream_through_binary(1 << 30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_client_abort_not_forwarded() {
    bounded(async {
        let upstream = Upstream::start(Behavior::default()).await;
        for upstream_http2 in [false, true] {
            let proxy = Proxy::start(upstream.uri(), Redactor::default(), |o| {
                o.upstream_http2 = upstream_http2;
                o.idle_flush = None;
            })
            .await;
            let (tx, body) = streamed();
            let line = log_with(&classic(22).text);
            let request = post(proxy.addr, "/h2-abort", body);
            let client = http2_client();
            let pending = tokio::spawn(async move { send(&client, request).await });
            for _ in 0..20 {
                tx.send(Ok(Bytes::from(line.clone()))).await.unwrap();
            }
            // Wait until the upstream has seen the request start, then
            // reset the stream.
            bounded_for(Duration::from_secs(10), async {
                while upstream
                    .records()
                    .iter()
                    .all(|r| r.body_len == 0 || r.complete)
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await;
            tx.send(Err("client gave up".into())).await.unwrap();
            let result = pending.await.unwrap();
            if let Ok(answer) = &result {
                assert!(
                    !answer.status.is_success(),
                    "aborted request got {}",
                    answer.status
                );
            }
            let records = upstream.records_after(Duration::from_millis(500)).await;
            assert!(
                records.iter().all(|r| !r.complete),
                "upstream_http2={upstream_http2}: upstream got a complete body"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_connection_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    bounded(async {
        let upstream = Upstream::start(Behavior::default()).await;
        let proxy = Proxy::start(upstream.uri(), Redactor::default(), |o| {
            o.header_timeout = Duration::from_millis(500);
        })
        .await;
        let mut tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        tcp.write_all(b"POST /slow HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut reply = Vec::new();
        let read = bounded_for(Duration::from_secs(10), tcp.read_to_end(&mut reply)).await;
        assert!(
            read.is_ok() || !reply.is_empty(),
            "connection neither closed nor answered"
        );
        let reply = String::from_utf8_lossy(&reply);
        assert!(!reply.starts_with("HTTP/1.1 2"), "got {reply:?}");
        assert!(upstream.records().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_and_percent_token() {
    bounded(async {
        let upstream = Upstream::start(Behavior::default()).await;
        let proxy = Proxy::start(upstream.uri(), Redactor::default(), |o| {
            o.add_forwarded_for = true;
            o.add_via = false;
        })
        .await;
        let token = TokenGen::new(23).token(TokenKind::PercentSeparators);
        let request = Request::post(format!("http://{}/q?t={}", proxy.addr, token.text))
            .header("x-forwarded-for", "192.0.2.7")
            .body(full(&b"x\n"[..]))
            .unwrap();
        let answer = send(&http1_client(), request).await.unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        let records = upstream.wait_complete(1).await;
        let got = &records[0];
        assert_eq!(got.target, format!("/q?t={}", token.masked));
        assert_eq!(
            header_str(&got.headers, "x-forwarded-for").as_deref(),
            Some("192.0.2.7, 127.0.0.1")
        );
        assert!(got.headers.get("via").is_none());
        assert!(answer.headers.get("via").is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_response_split_token() {
    bounded(async {
        let token = classic(24);
        let body = log_with(&token.text).into_bytes();
        let secret = secret_of(&token);
        let start = memchr::memmem::find(&body, secret.as_bytes()).expect("secret in body");
        let cut = start + 10;
        let upstream = Upstream::start(Behavior {
            response_frames: vec![body[..cut].to_vec(), body[cut..].to_vec()],
            frame_pause: Duration::from_millis(50),
            ..Behavior::default()
        })
        .await;
        let proxy =
            Proxy::start(upstream.uri(), Redactor::default(), |o| o.idle_flush = None).await;
        let answer = send(
            &http1_client(),
            post(proxy.addr, "/logs", full(&b"x\n"[..])),
        )
        .await
        .expect("request through the proxy");
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(
            String::from_utf8_lossy(&answer.body),
            log_with(&token.masked)
        );

        // With idle flushing and a pause longer than its deadline, no part
        // of the secret may come back either.
        upstream.set_behavior(Behavior {
            response_frames: vec![body[..cut].to_vec(), body[cut..].to_vec()],
            frame_pause: Duration::from_millis(500),
            ..Behavior::default()
        });
        let proxy = Proxy::to(&upstream).await;
        let answer = send(
            &http1_client(),
            post(proxy.addr, "/logs", full(&b"x\n"[..])),
        )
        .await
        .expect("request through the proxy");
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body.len(), body.len());
        assert!(
            !contains(&answer.body, &secret.as_bytes()[..8]),
            "secret start leaked"
        );
        assert!(
            !contains(&answer.body, &secret.as_bytes()[secret.len() - 16..]),
            "secret end leaked"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_path_head_and_204() {
    bounded(async {
        let upstream = Upstream::start(Behavior {
            headers: vec![("content-length".into(), "3".into())],
            ..Behavior::default()
        })
        .await;
        let base: http::Uri = format!("http://{}/base/", upstream.addr).parse().unwrap();
        let proxy = Proxy::start(base, Redactor::default(), |_| {}).await;
        let client = http1_client();

        let request = Request::head(format!("http://{}/logs?x=1", proxy.addr))
            .body(full(Bytes::new()))
            .unwrap();
        let answer = send(&client, request)
            .await
            .expect("HEAD through the proxy");
        assert_eq!(answer.status, StatusCode::OK);
        assert!(answer.body.is_empty());
        let records = upstream.wait_complete(1).await;
        assert_eq!(records[0].method, http::Method::HEAD);
        assert_eq!(records[0].target, "/base/logs?x=1");

        upstream.set_behavior(Behavior {
            status: StatusCode::NO_CONTENT,
            body: Vec::new(),
            ..Behavior::default()
        });
        let answer = send(&client, post(proxy.addr, "/logs", full(&b"x\n"[..])))
            .await
            .expect("POST through the proxy");
        assert_eq!(answer.status, StatusCode::NO_CONTENT);
        assert!(answer.body.is_empty());
    })
    .await;
}

// ---------------------------------------------------------------------
// Inspection switched off, and bodies without a candidate
// ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_body_passes_byte_for_byte() {
    bounded(async {
        let upstream = Upstream::start(Behavior::default()).await;
        let proxy = Proxy::to(&upstream).await;
        // Text close to a token but without a candidate in it.
        let body = b"{\"content\":\"dt1c01 at 0x7f, DT-0 is not a token\"}\n".repeat(40);
        assert!(!Redactor::default().has_candidate(&body));
        let answer = send(
            &http1_client(),
            post(proxy.addr, "/logs", full(body.clone())),
        )
        .await
        .expect("request through the proxy");
        assert_eq!(answer.status, StatusCode::OK);
        let records = upstream.wait_complete(1).await;
        assert!(records[0].body == body, "a clean body must pass unchanged");
        assert_eq!(
            header_str(&records[0].headers, "content-length"),
            Some(body.len().to_string())
        );
        assert!(proxy.findings.lock().unwrap().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_redaction_skips_inspection_only() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        let sink_token = classic(40);
        let body_token = classic(41);
        std::fs::write(&file, format!("{}\n", sink_token.text)).unwrap();
        let upstream = Upstream::start(Behavior::default()).await;
        let path = file.clone();
        let proxy = Proxy::start(upstream.uri(), Redactor::default(), move |o| {
            o.redact = false;
            o.upstream_token_file = Some(path);
            o.add_forwarded_for = true;
        })
        .await;
        let body = log_with(&body_token.text);
        let request = Request::post(format!("http://{}/logs?t={}", proxy.addr, body_token.text))
            .header(header::AUTHORIZATION, "Api-Token client-credential")
            .header("x-debug", body_token.text.as_str())
            .body(full(body.clone()))
            .unwrap();
        let answer = send(&http1_client(), request).await.unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(
            header_str(&answer.headers, "via").as_deref(),
            Some("1.1 dtredact")
        );

        let got = &upstream.wait_complete(1).await[0];
        // Nothing inspected: body, target and headers arrive as sent ...
        assert_eq!(String::from_utf8_lossy(&got.body), body);
        assert_eq!(got.target, format!("/logs?t={}", body_token.text));
        assert_eq!(
            header_str(&got.headers, "x-debug").as_deref(),
            Some(body_token.text.as_str())
        );
        assert!(proxy.findings.lock().unwrap().is_empty());
        // ... and every other step of the proxy still runs.
        assert_eq!(
            header_str(&got.headers, "authorization"),
            Some(format!("Api-Token {}", sink_token.text))
        );
        assert_eq!(
            header_str(&got.headers, "via").as_deref(),
            Some("1.1 dtredact")
        );
        assert_eq!(
            header_str(&got.headers, "x-forwarded-for").as_deref(),
            Some("127.0.0.1")
        );
    })
    .await;
}

// ---------------------------------------------------------------------
// Request and status lines, header names
// ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_and_header_name_masked() {
    bounded(async {
        let upstream = Upstream::start(Behavior::default()).await;
        let proxy = Proxy::to(&upstream).await;
        let in_method = classic(50);
        let in_name = classic(51);
        let request = Request::builder()
            .method(in_method.text.as_str())
            .uri(format!("http://{}/m", proxy.addr))
            .header(format!("x-{}", in_name.text), "1")
            .body(full(&b"hello\n"[..]))
            .unwrap();
        let answer = send(&http1_client(), request).await.unwrap();
        assert_eq!(answer.status, StatusCode::OK);

        let got = &upstream.wait_complete(1).await[0];
        assert_eq!(got.method.as_str(), in_method.masked);
        let masked_name = format!("x-{}", in_name.masked.to_ascii_lowercase());
        assert_eq!(header_str(&got.headers, &masked_name).as_deref(), Some("1"));
        for name in got.headers.keys() {
            assert!(
                !name
                    .as_str()
                    .contains(&secret_of(&in_name).to_ascii_lowercase()),
                "secret in header name {name}"
            );
        }
        let findings = proxy.findings.lock().unwrap().clone();
        assert_eq!(findings.len(), 2, "one finding each: {findings:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reason_phrase_and_response_name_masked() {
    bounded(async {
        let in_reason = classic(52);
        let in_name = classic(53);
        let upstream = Upstream::start(Behavior {
            status: StatusCode::UNAUTHORIZED,
            reason: Some(format!("Bad token {}", in_reason.text)),
            headers: vec![(format!("x-{}", in_name.text), "1".into())],
            ..Behavior::default()
        })
        .await;
        let proxy = Proxy::to(&upstream).await;
        // A raw client, to read the status line as sent.
        let mut stream = std::net::TcpStream::connect(proxy.addr).unwrap();
        let request = format!(
            "POST /r HTTP/1.1\r\nHost: {}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nx\n",
            proxy.addr
        );
        let raw = tokio::task::spawn_blocking(move || {
            stream.write_all(request.as_bytes()).unwrap();
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).unwrap();
            raw
        })
        .await
        .unwrap();
        let raw = String::from_utf8_lossy(&raw).to_string();
        let status_line = raw.lines().next().unwrap_or_default();
        assert_eq!(
            status_line,
            format!("HTTP/1.1 401 Bad token {}", in_reason.masked)
        );
        assert!(!raw.contains(secret_of(&in_reason)), "{raw}");
        assert!(
            !raw.to_ascii_lowercase()
                .contains(&secret_of(&in_name).to_ascii_lowercase()),
            "{raw}"
        );
        assert_eq!(proxy.findings.lock().unwrap().len(), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_request_still_reports_findings() {
    bounded(async {
        let down = closed_port().await;
        let uri: http::Uri = format!("http://{down}").parse().unwrap();
        let proxy = Proxy::start(uri, Redactor::default(), |_| {}).await;
        let in_path = classic(54);
        let in_header = classic(55);
        let request = Request::post(format!("http://{}/a/{}", proxy.addr, in_path.text))
            .header("x-debug", in_header.text.as_str())
            .body(full(&b"x\n"[..]))
            .unwrap();
        let answer = send(&http1_client(), request).await.unwrap();
        assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
        let ids: Vec<_> = proxy
            .findings
            .lock()
            .unwrap()
            .iter()
            .map(|f| f.token_id.clone())
            .collect();
        assert!(ids.contains(&in_path.id), "{ids:?}");
        assert!(ids.contains(&in_header.id), "{ids:?}");
    })
    .await;
}
