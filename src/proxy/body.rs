//! Redacting bodies as they stream: decode, redact, re-encode, frame by
//! frame, in a task that feeds a channel-backed body. A body that arrives
//! whole is redacted at once by the task that reads it.

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
    /// After the body is rejected for its size or encoding, read and drop
    /// what the sender still sends (see [`linger`]). Set for request bodies
    /// only.
    pub linger: bool,
}

/// Maximum time a rejected request body is read on.
const LINGER_TIME: Duration = Duration::from_secs(5);
/// Maximum bytes of a rejected request body read on.
const LINGER_BYTES: u64 = 64 << 20;

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

/// A request body in the identity coding, redacted when the upstream
/// connection first polls it instead of in the request handler.
///
/// The handler runs in the task of the client's HTTP/1 connection, and
/// hyper wakes that task whenever the body's next frame is taken. Taking it
/// in the handler wakes the running task itself, which tokio handles as a
/// yield: the task is queued again and an idle worker thread is woken, a
/// futex call and a context switch per request. Taken by the upstream
/// connection's task, the wake goes to the handler's task, which is waiting
/// for the response anyway.
///
/// A body that arrives whole in its first frame is redacted there and then.
/// A longer one is handed to a [`pump`] task, as in [`redact_body`]. An
/// identity body has nothing to decode, so it can only fail by growing too
/// large or by its client being too slow or gone. Such a body ends the
/// upstream request before it is whole, and the handler reads the error
/// from the [`BodyReport`].
pub struct DeferredBody<B> {
    state: Deferred<B>,
    redactor: Arc<Redactor>,
    options: BodyOptions,
    exact_len: Option<u64>,
    report: BodyReport,
}

enum Deferred<B> {
    /// Not polled yet.
    Start(B),
    /// Fed by a pump task.
    Channel(ChannelBody),
    /// Passed on whole, or failed.
    Done,
}

impl<B> DeferredBody<B> {
    /// Wraps `body`. `exact_len` is as for [`redact_body`].
    pub fn new(
        body: B,
        redactor: Arc<Redactor>,
        options: BodyOptions,
        exact_len: Option<u64>,
        report: BodyReport,
    ) -> DeferredBody<B> {
        DeferredBody {
            state: Deferred::Start(body),
            redactor,
            options,
            exact_len,
            report,
        }
    }

    /// Ends the body with `error` and records it in the report for the
    /// handler.
    fn fail(&mut self, error: ProxyError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.state = Deferred::Done;
        self.report.set_error(error.clone());
        Poll::Ready(Some(Err(Box::new(error))))
    }
}

impl<B> Body for DeferredBody<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError> + Send,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                Deferred::Start(body) => {
                    let first = match Pin::new(body).poll_frame(cx) {
                        Poll::Pending => None,
                        Poll::Ready(None) => {
                            this.state = Deferred::Done;
                            return Poll::Ready(None);
                        }
                        Poll::Ready(Some(Err(_))) => return this.fail(ProxyError::ClientAborted),
                        Poll::Ready(Some(Ok(frame))) => {
                            this.report.touch();
                            Some(frame)
                        }
                    };
                    let Deferred::Start(body) = std::mem::replace(&mut this.state, Deferred::Done)
                    else {
                        unreachable!("the state was Start above");
                    };
                    if body.is_end_stream() && first.as_ref().is_some_and(Frame::is_data) {
                        let data = first.and_then(|f| f.into_data().ok()).unwrap_or_default();
                        let coding = ContentCoding::Identity;
                        return match redact_whole(
                            data,
                            &this.redactor,
                            coding,
                            &this.options,
                            &this.report,
                        ) {
                            Ok(out) => Poll::Ready(Some(Ok(Frame::data(out)))),
                            Err(error) => this.fail(error),
                        };
                    }
                    let (tx, rx) = mpsc::channel::<Item>(4);
                    tokio::spawn(pump(
                        body,
                        first,
                        (*this.redactor).clone(),
                        ContentCoding::Identity,
                        this.options,
                        tx,
                        this.report.clone(),
                    ));
                    this.state = Deferred::Channel(ChannelBody {
                        first: None,
                        rx,
                        exact_len: this.exact_len,
                    });
                }
                Deferred::Channel(channel) => return Pin::new(channel).poll_frame(cx),
                Deferred::Done => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, Deferred::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact_len {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
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
        report.add_findings(stream.findings());
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
        let rejected = matches!(e, ProxyError::BodyTooLarge(_) | ProxyError::CorruptBody);
        let _ = tx.send(Err(e)).await;
        if rejected && options.linger {
            linger(body).await;
        }
    }
}

/// Reads and drops the rest of a rejected request body, for at most
/// [`LINGER_TIME`] and [`LINGER_BYTES`]. A client that is still writing
/// its body when the error response goes out then reads that response.
/// Closing the connection at once could reset it before the client reads
/// it.
async fn linger<B>(mut body: B)
where
    B: Body<Data = Bytes> + Unpin,
{
    let deadline = Instant::now() + LINGER_TIME;
    let mut left = LINGER_BYTES;
    while let Ok(Some(Ok(frame))) = timeout_at(deadline, body.frame()).await {
        let len = frame.data_ref().map_or(0, |d| d.len() as u64);
        if len >= left {
            break;
        }
        left -= len;
    }
}

async fn send(tx: &mpsc::Sender<Item>, bytes: Vec<u8>) -> Result<(), ()> {
    tx.send(Ok(Frame::data(Bytes::from(bytes))))
        .await
        .map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::synth::{TokenGen, TokenKind};

    /// A body that gives one queued frame per poll and has ended as soon as
    /// its last frame is taken, as a request body that arrived whole does.
    struct Frames(VecDeque<Result<Frame<Bytes>, std::io::Error>>);

    impl Frames {
        fn data(chunks: &[&[u8]]) -> Frames {
            let frames = chunks
                .iter()
                .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))));
            Frames(frames.collect())
        }
    }

    impl Body for Frames {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            Poll::Ready(self.0.pop_front())
        }

        fn is_end_stream(&self) -> bool {
            self.0.is_empty()
        }
    }

    fn options(max_body: u64) -> BodyOptions {
        BodyOptions {
            max_body,
            limits: Limits {
                max_decoded: max_body,
                max_ratio: 100,
            },
            frame_timeout: Duration::from_secs(10),
            idle_flush: None,
            linger: true,
        }
    }

    /// Returns a report whose findings land in the returned list.
    fn report() -> (BodyReport, Arc<Mutex<Vec<Finding>>>) {
        let found = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&found);
        let hook: FindingsHook = Arc::new(move |findings: &[Finding], _route: &str| {
            sink.lock().unwrap().extend_from_slice(findings);
        });
        (BodyReport::new(hook, "/logs"), found)
    }

    fn deferred(frames: Frames, max_body: u64) -> (DeferredBody<Frames>, BodyReport) {
        let (report, _) = report();
        let body = DeferredBody::new(
            frames,
            Arc::new(Redactor::default()),
            options(max_body),
            None,
            report.clone(),
        );
        (body, report)
    }

    /// Reads every frame and returns the data frames, or the first error.
    async fn read_all<B: Body<Data = Bytes> + Unpin>(body: &mut B) -> Result<Vec<Bytes>, B::Error> {
        let mut chunks = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                chunks.push(data);
            }
        }
        Ok(chunks)
    }

    #[tokio::test]
    async fn deferred_whole_body_one_frame() {
        let token = TokenGen::new(11).token(TokenKind::Classic);
        let input = format!("line one\ntoken={} end\n", token.text);
        let (report, found) = report();
        let mut body = DeferredBody::new(
            Frames::data(&[input.as_bytes()]),
            Arc::new(Redactor::default()),
            options(1 << 20),
            Some(input.len() as u64),
            report,
        );
        assert_eq!(body.size_hint().exact(), Some(input.len() as u64));

        let chunks = read_all(&mut body).await.unwrap();
        assert_eq!(chunks.len(), 1, "one frame for a body that came whole");
        let expected = format!("line one\ntoken={} end\n", token.masked);
        assert_eq!(chunks[0], expected.as_bytes());
        assert!(body.is_end_stream());
        assert_eq!(found.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn deferred_split_token_masked() {
        let token = TokenGen::new(12).token(TokenKind::Classic);
        let input = format!("token={} end\n", token.text);
        let (first, second) = input.as_bytes().split_at(20);
        let (mut body, report) = deferred(Frames::data(&[first, second]), 1 << 20);

        let output = read_all(&mut body).await.unwrap().concat();
        let expected = format!("token={} end\n", token.masked);
        assert_eq!(output, expected.as_bytes());
        assert!(report.error().is_none());
    }

    #[tokio::test]
    async fn deferred_clean_body_unchanged() {
        let input = b"no token in this line\n";
        let (mut body, _) = deferred(Frames::data(&[input]), 1 << 20);
        assert_eq!(read_all(&mut body).await.unwrap().concat(), input);
    }

    #[tokio::test]
    async fn deferred_errors_reach_report() {
        let aborted = Frames(VecDeque::from([Err(std::io::Error::other("reset"))]));
        let (mut body, report) = deferred(aborted, 1 << 20);
        assert!(read_all(&mut body).await.is_err());
        assert_eq!(report.error(), Some(ProxyError::ClientAborted));

        let (mut body, report) = deferred(Frames::data(&[&[b'a'; 100]]), 64);
        assert!(read_all(&mut body).await.is_err());
        assert_eq!(
            report.error(),
            Some(ProxyError::BodyTooLarge(BodyLimit::Encoded))
        );
    }
}
