//! A minimal log sink for load tests of `dtredact proxy`.
//!
//! ```text
//! cargo run --release --example bench_upstream -- --listen 127.0.0.1:PORT [--needle TEXT]
//! ```
//!
//! Every request except `GET /_stats` has its body read whole and gets
//! `200 OK` with an empty body. `GET /_stats` returns two counters as text,
//! one `name value` pair a line:
//!
//! - `requests`: requests served, `/_stats` excluded;
//! - `needle_bodies`: bodies that contained `--needle` (0 without one).
//!
//! `benches/proxy_load.sh` passes the secret part of the synthetic token as
//! the needle, so a non-zero `needle_bodies` after a redacting run means a
//! secret reached the sink. Counters are never reset, so callers compare
//! readings taken before and after a run.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use memchr::memmem::Finder;
use tokio::net::TcpListener;

const USAGE: &str = "usage: bench_upstream --listen ADDR [--needle TEXT]";
const STATS_PATH: &str = "/_stats";

type ResponseBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

struct Options {
    listen: SocketAddr,
    needle: Option<String>,
}

/// Counters shared by all connections.
struct Stats {
    needle: Option<Finder<'static>>,
    requests: AtomicU64,
    needle_bodies: AtomicU64,
}

fn parse_args() -> Result<Options, String> {
    let mut listen = None;
    let mut needle = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                let value = args.next().ok_or("--listen requires an address")?;
                let addr = value
                    .parse::<SocketAddr>()
                    .map_err(|error| format!("invalid --listen {value:?}: {error}"))?;
                listen = Some(addr);
            }
            "--needle" => {
                let value = args.next().ok_or("--needle requires a value")?;
                if value.is_empty() {
                    return Err("invalid --needle: it must not be empty".to_string());
                }
                needle = Some(value);
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let listen = listen.ok_or_else(|| format!("missing --listen\n{USAGE}"))?;
    Ok(Options { listen, needle })
}

async fn handle(
    stats: Arc<Stats>,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, hyper::Error> {
    if request.method() == Method::GET && request.uri().path() == STATS_PATH {
        let text = format!(
            "requests {}\nneedle_bodies {}\n",
            stats.requests.load(Ordering::Relaxed),
            stats.needle_bodies.load(Ordering::Relaxed),
        );
        return Ok(Response::new(Full::new(Bytes::from(text)).boxed()));
    }

    // An error here means the client went away mid-body. hyper closes the
    // connection, so there is no one to send a response to.
    let body = request.into_body().collect().await?.to_bytes();
    stats.requests.fetch_add(1, Ordering::Relaxed);
    if let Some(finder) = &stats.needle {
        if finder.find(&body).is_some() {
            stats.needle_bodies.fetch_add(1, Ordering::Relaxed);
        }
    }

    Ok(Response::new(Empty::new().boxed()))
}

async fn serve(options: Options) -> std::io::Result<()> {
    let listener = TcpListener::bind(options.listen).await?;
    eprintln!("bench_upstream listening on {}", listener.local_addr()?);
    let stats = Arc::new(Stats {
        needle: options
            .needle
            .map(|needle| Finder::new(needle.as_bytes()).into_owned()),
        requests: AtomicU64::new(0),
        needle_bodies: AtomicU64::new(0),
    });

    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Usually EMFILE or a connection reset before accept. The
                // connections already open keep being served.
                eprintln!("bench_upstream: accept failed: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(Arc::clone(&stats), request));
            // Errors here are clients closing their connections, which load
            // generators do at the end of every run.
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench_upstream: failed to start the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench_upstream: {error}");
            ExitCode::FAILURE
        }
    }
}
