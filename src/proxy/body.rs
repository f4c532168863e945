//! Redacting bodies as they stream: decode, redact, re-encode, frame by
//! frame, in a task that feeds a channel-backed body.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full};
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};

use super::codec::{CodecError, ContentCoding, Decoder, Encoder, Limits};
use super::error::{BodyLimit, ProxyError};
use super::headers::mask_headers;
use super::{FindingsHook, ProxyBody};
use crate::{Finding, Redactor, Stream};

/// Error type of bodies the proxy builds.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Limits and deadlines of one body.
#[derive(Debug, Clone, Copy)]
pub struct BodyOptions {
    /// Maximum bytes as sent.
    pub max_body: u64,
    /// Limits of decoding.
    pub limits: Limits,
    /// Longest pause between two frames before the body fails.
    pub frame_timeout: Duration,
    /// Pause after which held-back bytes are released.
    pub idle_flush: Option<Duration>,
}

/// Largest engine read for a body, in bytes.
const MAX_READ: usize = 64 * 1024;

/// Decode, redact and re-encode state of one body.
struct Pipeline {
    decoder: Option<Decoder>,
    stream: Stream,
    /// The body's coding; the encoder is made at the first output, once the
    /// decoder knows whether a deflate body is zlib-wrapped or raw.
    coding: ContentCoding,
    encoder: Option<Encoder>,
    decoded: Vec<u8>,
    redacted: Vec<u8>,
    encoded_in: u64,
    max_body: u64,
}

impl Pipeline {
    /// `size` is the body's length when known; a small body gets a small
    /// buffer, because the buffer is allocated and zeroed per body.
    fn new(
        redactor: &Redactor,
        coding: ContentCoding,
        options: &BodyOptions,
        size: Option<u64>,
    ) -> Pipeline {
        let capacity = match (coding, size) {
            (ContentCoding::Identity, Some(n)) => (n as usize).clamp(4096, MAX_READ),
            _ => MAX_READ,
        };
        let decoder = match coding {
            ContentCoding::Identity => None,
            coding => Some(Decoder::new(coding, options.limits)),
        };
        Pipeline {
            decoder,
            stream: redactor.stream_with_capacity(capacity),
            coding,
            encoder: None,
            decoded: Vec::new(),
            redacted: Vec::new(),
            encoded_in: 0,
            max_body: options.max_body,
        }
    }

    /// Takes the next bytes of the body and appends output to `out`.
    fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), ProxyError> {
        self.encoded_in += input.len() as u64;
        if self.encoded_in > self.max_body {
            return Err(ProxyError::BodyTooLarge(BodyLimit::Encoded));
        }
        match &mut self.decoder {
            None => self.stream.push(input, &mut self.redacted),
            Some(decoder) => {
                self.decoded.clear();
                decoder
                    .push(input, &mut self.decoded)
                    .map_err(codec_error)?;
                self.stream.push(&self.decoded, &mut self.redacted);
            }
        }
        self.encode(out)
    }

    fn encode(&mut self, out: &mut Vec<u8>) -> Result<(), ProxyError> {
        if self.coding == ContentCoding::Identity {
            out.append(&mut self.redacted);
            return Ok(());
        }
        if self.redacted.is_empty() {
            return Ok(());
        }
        let redacted = std::mem::take(&mut self.redacted);
        self.encoder()?.push(&redacted, out).map_err(codec_error)?;
        self.redacted = redacted;
        self.redacted.clear();
        Ok(())
    }

    /// Returns the encoder, making it in the decoded body's form.
    fn encoder(&mut self) -> Result<&mut Encoder, ProxyError> {
        let raw = self.decoder.as_ref().is_some_and(Decoder::is_raw_deflate);
        let coding = self.coding;
        Ok(self.encoder.get_or_insert_with(|| {
            if raw {
                Encoder::new_raw_deflate()
            } else {
                Encoder::new(coding)
            }
        }))
    }

    /// Releases held-back bytes because the body paused.
    fn idle(&mut self, out: &mut Vec<u8>) -> Result<(), ProxyError> {
        self.stream.flush_idle_into(&mut self.redacted);
        self.encode(out)?;
        if let Some(encoder) = &mut self.encoder {
            encoder.flush(out).map_err(codec_error)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), ProxyError> {
        if let Some(decoder) = &mut self.decoder {
            self.decoded.clear();
            decoder.finish(&mut self.decoded).map_err(codec_error)?;
            self.stream.push(&self.decoded, &mut self.redacted);
        }
        self.stream.finish(&mut self.redacted);
        self.encode(out)?;
        // A body that decoded to nothing is re-encoded as an empty stream
        // of its coding, so that the upstream can still decode it.
        if self.coding != ContentCoding::Identity
            && self.decoder.as_ref().is_some_and(|d| d.encoded_bytes() > 0)
        {
            self.encoder()?.finish(out).map_err(codec_error)?;
        }
        Ok(())
    }
}

fn codec_error(e: CodecError) -> ProxyError {
    match e {
        CodecError::TooLarge { .. } => ProxyError::BodyTooLarge(BodyLimit::Decoded),
        CodecError::RatioExceeded { .. } => ProxyError::BodyTooLarge(BodyLimit::Ratio),
        _ => ProxyError::CorruptBody,
    }
}

/// Collector of a request's findings, body failure and body progress,
/// shared by the request handler and the tasks that redact its bodies.
#[derive(Clone)]
pub struct BodyReport {
    shared: Arc<ReportShared>,
}

struct ReportShared {
    hook: FindingsHook,
    /// The request path, passed to the hook with each batch of findings.
    route: Box<str>,
    state: Mutex<ReportState>,
}

#[derive(Default)]
struct ReportState {
    error: Option<ProxyError>,
    /// When the body last moved: a frame arrived from the sender or output
    /// was taken by the receiver.
    progress: Option<Instant>,
}

impl BodyReport {
    /// Creates a report that passes findings made on `route` to `hook`.
    pub fn new(hook: FindingsHook, route: &str) -> BodyReport {
        BodyReport {
            shared: Arc::new(ReportShared {
                hook,
                route: route.into(),
                state: Mutex::default(),
            }),
        }
    }

    /// Passes findings to the hook; does nothing when there are none.
    pub fn add_findings(&self, findings: &[Finding]) {
        if !findings.is_empty() {
            (self.shared.hook)(findings, &self.shared.route);
        }
    }

    fn set_error(&self, error: ProxyError) {
        self.lock().error.get_or_insert(error);
    }

    fn touch(&self) {
        self.lock().progress = Some(Instant::now());
    }

    /// When the body last made progress; `None` before its first frame.
    /// The upstream timeout counts from here, so that a body that takes
    /// long to arrive does not count as a slow upstream.
    pub fn last_progress(&self) -> Option<Instant> {
        self.lock().progress
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReportState> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns the error that ended the body, if any.
    pub fn error(&self) -> Option<ProxyError> {
        self.lock().error.clone()
    }
}

type Item = Result<Frame<Bytes>, ProxyError>;

/// A body fed by the redacting task.
pub struct ChannelBody {
    first: Option<Item>,
    rx: mpsc::Receiver<Item>,
    exact_len: Option<u64>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let item = match self.first.take() {
            Some(item) => Some(item),
            None => match self.rx.poll_recv(cx) {
                Poll::Ready(item) => item,
                Poll::Pending => return Poll::Pending,
            },
        };
        Poll::Ready(item.map(|r| r.map_err(|e| Box::new(e) as BoxError)))
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact_len {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// Starts redacting `body` in a task. Waits for the first frame of output
/// (or the end, or an error), so that a body that fails at once is never
/// forwarded at all.
///
/// `exact_len` is the output length when it is known in advance (identity
/// coding under a length-keeping policy), passed on as the size hint.
pub async fn redact_body<B>(
    body: B,
    redactor: &Redactor,
    coding: ContentCoding,
    options: BodyOptions,
    exact_len: Option<u64>,
    report: BodyReport,
) -> Result<ProxyBody, ProxyError>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError> + Send,
{
    let mut body = body;
    // A small body is usually in already when the request is handled: poll
    // for it once before arming a timer.
    let polled = {
        let mut frame = body.frame();
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut frame).poll(cx))).await
    };
    let next = match polled {
        Poll::Ready(next) => next,
        Poll::Pending => tokio::time::timeout(options.frame_timeout, body.frame())
            .await
            .map_err(|_| ProxyError::ClientTimeout)?,
    };
    let first = match next {
        Some(Err(_)) => return Err(ProxyError::ClientAborted),
        Some(Ok(frame)) => Some(frame),
        None => None,
    };
    report.touch();
    // A body that arrived whole in its first frame (most small log batches)
    // is redacted here, without a task and a channel per request.
    let whole = first.as_ref().map_or(true, |f| f.is_data()) && body.is_end_stream();
    if whole {
        let data = first.and_then(|f| f.into_data().ok()).unwrap_or_default();
        let out = redact_whole(data, redactor, coding, &options, &report)?;
        return Ok(whole_body(out, exact_len));
    }
    let (tx, mut rx) = mpsc::channel::<Item>(4);
    tokio::spawn(pump(
        body,
        first,
        redactor.clone(),
        coding,
        options,
        tx,
        report,
    ));
    let first = match rx.recv().await {
        Some(Err(e)) => return Err(e),
        other => other,
    };
    Ok(ChannelBody {
        first,
        rx,
        exact_len,
    }
    .boxed())
}

thread_local! {
    /// A stream kept by each worker thread for bodies that arrive whole, so
    /// that such a body costs no stream buffer of its own.
    static SPARE_STREAM: RefCell<Option<Stream>> = const { RefCell::new(None) };
}

/// Redacts a body that arrived whole. An identity body without a candidate
/// is passed on as it came, without a copy.
fn redact_whole(
    data: Bytes,
    redactor: &Redactor,
    coding: ContentCoding,
    options: &BodyOptions,
    report: &BodyReport,
) -> Result<Bytes, ProxyError> {
    if data.len() as u64 > options.max_body {
        return Err(ProxyError::BodyTooLarge(BodyLimit::Encoded));
    }
    if coding != ContentCoding::Identity {
        let mut pipe = Pipeline::new(redactor, coding, options, Some(data.len() as u64));
        let mut out = Vec::new();
        pipe.push(&data, &mut out)?;
        pipe.finish(&mut out)?;
        report.add_findings(&pipe.stream.take_findings());
        return Ok(Bytes::from(out));
    }
    SPARE_STREAM.with_borrow_mut(|spare| {
        let stream = match spare {
            Some(stream) if stream.redactor().is_same(redactor) => stream,
            _ => spare.insert(redactor.stream_with_capacity(MAX_READ)),
        };
        let mut out = Vec::new();
        if !stream.redact_whole(&data, &mut out) {
            return Ok(data);
        }
        report.add_findings(&stream.take_findings());
        Ok(Bytes::from(out))
    })
}

/// Wraps a body that was redacted whole, or an empty body.
fn whole_body(data: Bytes, exact_len: Option<u64>) -> ProxyBody {
    debug_assert!(exact_len.map_or(true, |n| n == data.len() as u64));
    if data.is_empty() {
        return Empty::new().map_err(|never| match never {}).boxed();
    }
    Full::new(data).map_err(|never| match never {}).boxed()
}

async fn pump<B>(
    mut body: B,
    mut first: Option<Frame<Bytes>>,
    redactor: Redactor,
    coding: ContentCoding,
    options: BodyOptions,
    tx: mpsc::Sender<Item>,
    report: BodyReport,
) where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError> + Send,
{
    let mut pipe = Pipeline::new(&redactor, coding, &options, body.size_hint().upper());
    let mut out = Vec::new();
    let mut trailers: Option<HeaderMap> = None;
    let result: Result<(), ProxyError> = async {
        loop {
            let deadline = Instant::now() + options.frame_timeout;
            let frame = if let Some(frame) = first.take() {
                Some(Ok(frame))
            } else {
                loop {
                    let wait_until = match options.idle_flush {
                        Some(idle) if pipe.stream.held_back() > 0 => {
                            (Instant::now() + idle).min(deadline)
                        }
                        _ => deadline,
                    };
                    match timeout_at(wait_until, body.frame()).await {
                        Ok(frame) => break frame,
                        Err(_) if wait_until < deadline => {
                            pipe.idle(&mut out)?;
                            report.add_findings(&pipe.stream.take_findings());
                            if !out.is_empty() && send(&tx, std::mem::take(&mut out)).await.is_err()
                            {
                                return Ok(());
                            }
                        }
                        Err(_) => return Err(ProxyError::ClientTimeout),
                    }
                }
            };
            report.touch();
            match frame {
                None => break,
                Some(Err(_)) => return Err(ProxyError::ClientAborted),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => pipe.push(&data, &mut out)?,
                    Err(frame) => {
                        if let Ok(mut t) = frame.into_trailers() {
                            report.add_findings(&mask_headers(&redactor, &mut t, &[]));
                            trailers = Some(t);
                        }
                    }
                },
            }
            report.add_findings(&pipe.stream.take_findings());
            if !out.is_empty() && send(&tx, std::mem::take(&mut out)).await.is_err() {
                // The receiver is gone: the request got its response or was dropped.
                return Ok(());
            }
            report.touch();
        }
        pipe.finish(&mut out)?;
        report.add_findings(&pipe.stream.take_findings());
        if !out.is_empty() && send(&tx, std::mem::take(&mut out)).await.is_err() {
            return Ok(());
        }
        if let Some(trailers) = trailers.take() {
            let _ = tx.send(Ok(Frame::trailers(trailers))).await;
        }
        report.touch();
        Ok(())
    }
    .await;
    if let Err(e) = result {
        report.set_error(e.clone());
        let _ = tx.send(Err(e)).await;
    }
}

async fn send(tx: &mpsc::Sender<Item>, bytes: Vec<u8>) -> Result<(), ()> {
    tx.send(Ok(Frame::data(Bytes::from(bytes))))
        .await
        .map_err(|_| ())
}
