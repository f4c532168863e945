//! Streaming decoders and encoders for HTTP content codings.
//!
//! The proxy decodes a request body (`Content-Encoding` gzip, deflate, zstd,
//! br or identity), redacts the decoded bytes and encodes the result again
//! in the same coding. Both directions work on chunks of any size, so a body
//! is never held whole.
//!
//! Decoding guards against decompression bombs. Output is produced in steps
//! of at most [`STEP`] bytes, and [`Limits`] are checked after each step. A
//! tiny body that would inflate to gigabytes is therefore rejected once it
//! passes the limit, and the memory it used depends on the limit and the
//! step, not on what the body would decode to.
//!
//! Nothing here does I/O: callers pass in encoded bytes and receive decoded
//! bytes in a `Vec` they own, or the other way round for encoding.

use std::fmt;

use brotli::enc::encode::{
    BrotliEncoderOperation, BrotliEncoderParameter, BrotliEncoderStateStruct,
};
use brotli::enc::StandardAlloc;
use brotli::{BrotliDecompressStream, BrotliResult, BrotliState};
use flate2::{Compress, Compression, Crc, Decompress, FlushCompress, FlushDecompress, Status};
use zstd::stream::raw::{CParameter, DParameter, InBuffer, Operation, OutBuffer};

/// Maximum number of decoded bytes produced between two limit checks.
///
/// `Decoder::push` can append at most this many bytes past a limit before it
/// returns the error. The scratch buffer of each decoder and encoder has this
/// size.
pub const STEP: usize = 32 * 1024;

/// Number of decoded bytes after which [`Limits::max_ratio`] is enforced.
///
/// Small bodies of repetitive text compress far better than any sensible
/// ratio cap, and they cannot exhaust memory, so they are exempt.
pub const RATIO_CHECK_AFTER: u64 = 64 * 1024;

/// Largest zstd window accepted, as a base-2 logarithm (8 MiB).
///
/// RFC 9659 limits frames of the HTTP "zstd" content coding to an 8 MB
/// window, and the decoder allocates a buffer of the window's size, so a
/// larger window is rejected as invalid data.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// Maximum length, in characters, of the header value kept in [`UnsupportedCoding`].
///
/// 32 characters fit every registered content coding name, and they are
/// never more than the public part of a Dynatrace token (prefix, identifier
/// and the dot before the secret), so a token pasted into the header does
/// not reach logs through this error.
const MAX_CODING_EXCERPT: usize = 32;

/// Compression level for gzip and deflate output (1, the fastest).
///
/// Re-encoding sits on the request path of every log body, so speed matters
/// more than the last few percent of size.
const FLATE_LEVEL: u32 = 1;

/// Compression level for zstd output (3, the zstd library's default).
const ZSTD_LEVEL: i32 = 3;

/// Compression quality for brotli output (0 to 11; 5 is a common choice
/// for on-the-fly compression).
const BROTLI_QUALITY: u32 = 5;

/// Brotli window for output, as a base-2 logarithm (4 MiB).
const BROTLI_LGWIN: u32 = 22;

/// An HTTP content coding that the proxy can decode and encode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContentCoding {
    /// No transformation (`identity`, or no `Content-Encoding` header).
    Identity,
    /// gzip file format (RFC 1952).
    Gzip,
    /// zlib-wrapped deflate (RFC 1950); raw deflate (RFC 1951) is also
    /// accepted on input.
    Deflate,
    /// Zstandard (RFC 8878).
    Zstd,
    /// Brotli (RFC 7932), header value `br`.
    Brotli,
}

impl ContentCoding {
    /// Parses a `Content-Encoding` header value.
    ///
    /// Matching is case-insensitive and ignores surrounding whitespace;
    /// `x-gzip` is gzip, and an empty value or `identity` is
    /// [`ContentCoding::Identity`]. A list of several codings (`gzip, br`)
    /// or an unknown coding is an error that names the value.
    pub fn parse(value: &str) -> Result<ContentCoding, UnsupportedCoding> {
        let name = value.trim();
        let known = [
            ("", ContentCoding::Identity),
            ("identity", ContentCoding::Identity),
            ("gzip", ContentCoding::Gzip),
            ("x-gzip", ContentCoding::Gzip),
            ("deflate", ContentCoding::Deflate),
            ("zstd", ContentCoding::Zstd),
            ("br", ContentCoding::Brotli),
        ];
        known
            .iter()
            .find(|(known_name, _)| name.eq_ignore_ascii_case(known_name))
            .map(|&(_, coding)| coding)
            .ok_or_else(|| UnsupportedCoding::new(name))
    }

    /// Returns the header value that names this coding.
    pub fn as_str(self) -> &'static str {
        match self {
            ContentCoding::Identity => "identity",
            ContentCoding::Gzip => "gzip",
            ContentCoding::Deflate => "deflate",
            ContentCoding::Zstd => "zstd",
            ContentCoding::Brotli => "br",
        }
    }
}

impl fmt::Display for ContentCoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error from [`ContentCoding::parse`]: the header value, cut to at most
/// 32 characters so that no secret pasted into the header is repeated whole.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unsupported content encoding {0:?}; supported: gzip, deflate, zstd, br, identity")]
pub struct UnsupportedCoding(pub String);

impl UnsupportedCoding {
    fn new(value: &str) -> UnsupportedCoding {
        match value.char_indices().nth(MAX_CODING_EXCERPT) {
            Some((cut, _)) => UnsupportedCoding(format!("{}...", &value[..cut])),
            None => UnsupportedCoding(value.to_owned()),
        }
    }
}

/// Error from a [`Decoder`] or an [`Encoder`].
///
/// Messages name the coding and never contain body bytes. Once a decoder or
/// encoder has returned an error, every later call returns the same error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The body is not valid data in its coding: a bad header, a failed
    /// checksum, an invalid block, or data after the end of the stream.
    #[error("invalid {coding} body: {message}")]
    Corrupt {
        /// Coding of the body.
        coding: ContentCoding,
        /// Description of the problem, from the decoder library or the format's rules.
        message: String,
    },
    /// The body ended before the end marker of its coding.
    #[error("truncated {coding} body: the data ended before the end of the compressed stream")]
    Truncated {
        /// Coding of the body.
        coding: ContentCoding,
    },
    /// The decoded body is larger than [`Limits::max_decoded`].
    #[error("decoded {coding} body exceeds the maximum size of {limit} bytes")]
    TooLarge {
        /// Coding of the body.
        coding: ContentCoding,
        /// The limit in bytes.
        limit: u64,
    },
    /// The body decodes to more than [`Limits::max_ratio`] times its encoded size.
    #[error(
        "decoded {coding} body is more than {max_ratio} times its compressed size \
         (likely a decompression bomb)"
    )]
    RatioExceeded {
        /// Coding of the body.
        coding: ContentCoding,
        /// The maximum ratio of decoded to encoded bytes.
        max_ratio: u64,
    },
    /// The compressor failed; this points to a bug, not to bad input.
    #[error("{coding} encoder failed: {message}")]
    Encode {
        /// Coding of the output.
        coding: ContentCoding,
        /// Message of the compression library.
        message: String,
    },
    /// `push`, `flush` or `finish` was called after `finish`.
    #[error("{coding} codec used after finish")]
    Finished {
        /// Coding of the decoder or encoder.
        coding: ContentCoding,
    },
}

/// Limits that a [`Decoder`] enforces on one body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Maximum decoded size of the body, in bytes.
    pub max_decoded: u64,
    /// Maximum ratio of decoded bytes to encoded bytes consumed, checked
    /// once at least 64 KiB ([`RATIO_CHECK_AFTER`]) has been decoded. It does
    /// not apply to identity bodies.
    pub max_ratio: u64,
}

/// Streaming decoder for one request body.
///
/// Feed the encoded body through [`Decoder::push`] in chunks of any size,
/// then call [`Decoder::finish`]. The decoded output does not depend on how
/// the body was split. An empty body (no bytes pushed) decodes to nothing
/// in every coding, since it contains nothing to inspect.
pub struct Decoder {
    inner: DecoderInner,
    meter: Meter,
    scratch: Vec<u8>,
    state: Lifecycle,
}

enum DecoderInner {
    Identity,
    Gzip(GzipDecoder),
    Deflate(DeflateDecoder),
    Zstd(ZstdDecoder),
    Brotli(BrotliDecoder),
}

/// Whether a decoder or encoder still accepts calls.
enum Lifecycle {
    Open,
    Finished,
    Failed(CodecError),
}

impl Lifecycle {
    fn check_open(&self, coding: ContentCoding) -> Result<(), CodecError> {
        match self {
            Lifecycle::Open => Ok(()),
            Lifecycle::Finished => Err(CodecError::Finished { coding }),
            Lifecycle::Failed(error) => Err(error.clone()),
        }
    }

    /// Records the outcome of a call, so that a failed codec stays failed.
    fn record(&mut self, result: &Result<(), CodecError>, finished: bool) {
        match result {
            Err(error) => *self = Lifecycle::Failed(error.clone()),
            Ok(()) if finished => *self = Lifecycle::Finished,
            Ok(()) => {}
        }
    }
}

impl Decoder {
    /// Creates a decoder for a body in `coding` that enforces `limits`.
    pub fn new(coding: ContentCoding, limits: Limits) -> Decoder {
        let inner = match coding {
            ContentCoding::Identity => DecoderInner::Identity,
            ContentCoding::Gzip => DecoderInner::Gzip(GzipDecoder::new()),
            ContentCoding::Deflate => DecoderInner::Deflate(DeflateDecoder::new()),
            ContentCoding::Zstd => DecoderInner::Zstd(ZstdDecoder::new()),
            ContentCoding::Brotli => DecoderInner::Brotli(BrotliDecoder::new()),
        };
        let scratch = match coding {
            ContentCoding::Identity => Vec::new(),
            _ => vec![0; STEP],
        };
        Decoder {
            inner,
            meter: Meter {
                coding,
                limits,
                encoded: 0,
                decoded: 0,
            },
            scratch,
            state: Lifecycle::Open,
        }
    }

    /// Decodes `input` (the next bytes of the encoded body) and appends the
    /// decoded bytes to `out`.
    ///
    /// On a limit error, `out` contains at most `max_decoded` bytes more than
    /// before the call; the bytes of the step that crossed the limit are
    /// dropped.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.state.check_open(self.meter.coding)?;
        let scratch = &mut self.scratch;
        let meter = &mut self.meter;
        let result = match &mut self.inner {
            DecoderInner::Identity => meter.accept(input.len(), input, out),
            DecoderInner::Gzip(gzip) => gzip.push(input, scratch, meter, out),
            DecoderInner::Deflate(deflate) => deflate.push(input, scratch, meter, out),
            DecoderInner::Zstd(zstd) => zstd.push(input, scratch, meter, out),
            DecoderInner::Brotli(brotli) => brotli.push(input, scratch, meter, out),
        };
        self.state.record(&result, false);
        result
    }

    /// Ends the body, appending any decoded bytes still held to `out`.
    ///
    /// A compressed stream that stops before its end marker (or, for gzip,
    /// before the trailer of its last member) is [`CodecError::Truncated`].
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.state.check_open(self.meter.coding)?;
        let scratch = &mut self.scratch;
        let meter = &mut self.meter;
        let result = match &mut self.inner {
            DecoderInner::Identity => Ok(()),
            DecoderInner::Gzip(gzip) => gzip.finish(scratch, meter, out),
            DecoderInner::Deflate(deflate) => deflate.finish(scratch, meter, out),
            DecoderInner::Zstd(zstd) => zstd.finish(meter),
            DecoderInner::Brotli(brotli) => brotli.finish(meter),
        };
        self.state.record(&result, true);
        result
    }

    /// Returns the number of decoded bytes appended to `out` so far.
    pub fn decoded_bytes(&self) -> u64 {
        self.meter.decoded
    }

    /// Returns the number of encoded bytes consumed so far.
    pub fn encoded_bytes(&self) -> u64 {
        self.meter.encoded
    }

    /// Returns the coding this decoder was created for.
    pub fn coding(&self) -> ContentCoding {
        self.meter.coding
    }

    /// Returns true if this is a deflate body whose first two bytes showed
    /// raw deflate (RFC 1951) instead of the zlib wrapper (RFC 1950).
    ///
    /// It is false until the first two bytes have been pushed, so ask after
    /// the first output or after [`Decoder::finish`]. Re-encode such a body
    /// with [`Encoder::new_raw_deflate`].
    pub fn is_raw_deflate(&self) -> bool {
        match &self.inner {
            DecoderInner::Deflate(deflate) => deflate.is_raw(),
            _ => false,
        }
    }
}

/// Byte counts of one body and the limit checks on them.
struct Meter {
    coding: ContentCoding,
    limits: Limits,
    encoded: u64,
    decoded: u64,
}

impl Meter {
    /// Counts one decoding step (`consumed` encoded bytes that produced
    /// `produced`) and appends `produced` to `out` if the limits allow it.
    fn accept(
        &mut self,
        consumed: usize,
        produced: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        self.encoded += consumed as u64;
        let decoded = self.decoded + produced.len() as u64;
        if decoded > self.limits.max_decoded {
            return Err(CodecError::TooLarge {
                coding: self.coding,
                limit: self.limits.max_decoded,
            });
        }
        let ratio_applies = self.coding != ContentCoding::Identity;
        if ratio_applies
            && decoded >= RATIO_CHECK_AFTER
            && decoded > self.encoded.saturating_mul(self.limits.max_ratio)
        {
            return Err(CodecError::RatioExceeded {
                coding: self.coding,
                max_ratio: self.limits.max_ratio,
            });
        }
        out.extend_from_slice(produced);
        self.decoded = decoded;
        Ok(())
    }

    fn corrupt(&self, message: impl Into<String>) -> CodecError {
        CodecError::Corrupt {
            coding: self.coding,
            message: message.into(),
        }
    }

    fn truncated(&self) -> CodecError {
        CodecError::Truncated {
            coding: self.coding,
        }
    }
}

/// Outcome of feeding bytes to a deflate stream.
#[derive(PartialEq, Eq)]
enum InflateProgress {
    /// All input was consumed and all output produced; more input is needed.
    NeedInput,
    /// The deflate stream ended; the rest of the input follows it.
    StreamEnd,
}

/// Runs `inflater` over `input` in steps of at most one scratch buffer,
/// passing each step's output to `meter` (and to `crc` when given).
///
/// On return with [`InflateProgress::StreamEnd`], `input` has been advanced
/// past the end of the deflate stream.
fn inflate(
    inflater: &mut Decompress,
    input: &mut &[u8],
    scratch: &mut [u8],
    meter: &mut Meter,
    mut crc: Option<&mut Crc>,
    out: &mut Vec<u8>,
) -> Result<InflateProgress, CodecError> {
    loop {
        let in_before = inflater.total_in();
        let out_before = inflater.total_out();
        let status = inflater
            .decompress(input, scratch, FlushDecompress::None)
            .map_err(|error| inflate_error(meter, &error))?;
        let consumed = (inflater.total_in() - in_before) as usize;
        let produced = (inflater.total_out() - out_before) as usize;
        *input = &input[consumed..];
        if let Some(crc) = crc.as_deref_mut() {
            crc.update(&scratch[..produced]);
        }
        meter.accept(consumed, &scratch[..produced], out)?;

        if status == Status::StreamEnd {
            return Ok(InflateProgress::StreamEnd);
        }
        // A step that did not fill the scratch buffer ran out of input.
        if produced < scratch.len() && input.is_empty() {
            return Ok(InflateProgress::NeedInput);
        }
        if consumed == 0 && produced == 0 {
            // NOTE: not seen with flate2 1.1 (miniz_oxide); this guards the
            // loop against a backend that neither reads nor writes.
            return Err(meter.corrupt("deflate decoder made no progress"));
        }
    }
}

fn inflate_error(meter: &Meter, error: &flate2::DecompressError) -> CodecError {
    if error.needs_dictionary().is_some() {
        return meter.corrupt("zlib stream requires a preset dictionary, which is not supported");
    }
    meter.corrupt(error.to_string())
}

/// Decoder for HTTP "deflate": zlib-wrapped, or raw deflate as some
/// clients send it.
struct DeflateDecoder {
    phase: DeflatePhase,
}

enum DeflatePhase {
    /// Waiting for the first two bytes, which tell zlib from raw deflate.
    Sniff {
        first: Option<u8>,
    },
    Body {
        inflater: Decompress,
        raw: bool,
    },
    Done {
        raw: bool,
    },
}

impl DeflateDecoder {
    fn new() -> DeflateDecoder {
        DeflateDecoder {
            phase: DeflatePhase::Sniff { first: None },
        }
    }

    fn is_raw(&self) -> bool {
        match self.phase {
            DeflatePhase::Sniff { .. } => false,
            DeflatePhase::Body { raw, .. } | DeflatePhase::Done { raw } => raw,
        }
    }

    fn push(
        &mut self,
        input: &[u8],
        scratch: &mut [u8],
        meter: &mut Meter,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        if input.is_empty() {
            return Ok(());
        }
        if let DeflatePhase::Sniff { first } = self.phase {
            match first {
                None if input.len() == 1 => {
                    self.phase = DeflatePhase::Sniff {
                        first: Some(input[0]),
                    };
                    return Ok(());
                }
                None => self.start(input[0], input[1]),
                Some(first) => {
                    self.start(first, input[0]);
                    self.push_body(&[first], scratch, meter, out)?;
                }
            }
        }
        self.push_body(input, scratch, meter, out)
    }

    /// Chooses zlib or raw deflate from the first two bytes of the body.
    fn start(&mut self, first: u8, second: u8) {
        let raw = !is_zlib_header(first, second);
        self.phase = DeflatePhase::Body {
            inflater: Decompress::new(!raw),
            raw,
        };
    }

    fn push_body(
        &mut self,
        mut input: &[u8],
        scratch: &mut [u8],
        meter: &mut Meter,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        match &mut self.phase {
            DeflatePhase::Sniff { .. } => unreachable!("push_body runs after the format is known"),
            DeflatePhase::Body { inflater, raw } => {
                let raw = *raw;
                let progress = inflate(inflater, &mut input, scratch, meter, None, out)?;
                if progress == InflateProgress::StreamEnd {
                    self.phase = DeflatePhase::Done { raw };
                    return reject_trailing(input, meter);
                }
                Ok(())
            }
            DeflatePhase::Done { .. } => reject_trailing(input, meter),
        }
    }

    fn finish(
        &mut self,
        scratch: &mut [u8],
        meter: &mut Meter,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        match &mut self.phase {
            DeflatePhase::Sniff { first: None } => Ok(()),
            DeflatePhase::Sniff { first: Some(_) } => Err(meter.truncated()),
            DeflatePhase::Body { inflater, .. } => {
                // Give the inflater one more chance to reach the end of the
                // stream with the input it already holds.
                let progress = inflate(inflater, &mut &[][..], scratch, meter, None, out)?;
                match progress {
                    InflateProgress::StreamEnd => Ok(()),
                    InflateProgress::NeedInput => Err(meter.truncated()),
                }
            }
            DeflatePhase::Done { .. } => Ok(()),
        }
    }
}

/// Returns true if two bytes are a valid zlib header (RFC 1950, section
/// 2.2) without a preset dictionary, as HTTP "deflate" requires.
///
/// Raw deflate can match only if it starts with a non-final stored block
/// (the low nibble 8 of a zlib header reads as BFINAL 0, BTYPE 00). Such a
/// stream is misread as zlib and then fails as corrupt.
fn is_zlib_header(cmf: u8, flg: u8) -> bool {
    let method = cmf & 0x0f;
    let window_log = cmf >> 4;
    let preset_dictionary = flg & 0x20 != 0;
    let check = (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0;
    method == 8 && window_log <= 7 && !preset_dictionary && check
}

fn reject_trailing(input: &[u8], meter: &Meter) -> Result<(), CodecError> {
    if input.is_empty() {
        Ok(())
    } else {
        Err(meter.corrupt("unexpected data after the end of the compressed stream"))
    }
}

/// Decoder for gzip (RFC 1952), including several concatenated members.
struct GzipDecoder {
    phase: GzipPhase,
    inflater: Decompress,
    /// CRC-32 and length of the current member's decoded data.
    crc: Crc,
    member_len: u64,
    members_done: u64,
}

enum GzipPhase {
    Header(GzipHeader),
    Body,
    Trailer { bytes: [u8; 8], filled: usize },
}

impl GzipDecoder {
    fn new() -> GzipDecoder {
        GzipDecoder {
            phase: GzipPhase::Header(GzipHeader::new()),
            inflater: Decompress::new(false),
            crc: Crc::new(),
            member_len: 0,
            members_done: 0,
        }
    }

    fn push(
        &mut self,
        mut input: &[u8],
        scratch: &mut [u8],
        meter: &mut Meter,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        while !input.is_empty() {
            match &mut self.phase {
                GzipPhase::Header(header) => {
                    let before = input.len();
                    let done = header
                        .parse(&mut input)
                        .map_err(|message| self.header_error(meter, message))?;
                    meter.accept(before - input.len(), &[], out)?;
                    if done {
                        self.phase = GzipPhase::Body;
                    }
                }
                GzipPhase::Body => {
                    let decoded_before = meter.decoded;
                    let progress = inflate(
                        &mut self.inflater,
                        &mut input,
                        scratch,
                        meter,
                        Some(&mut self.crc),
                        out,
                    )?;
                    self.member_len += meter.decoded - decoded_before;
                    if progress == InflateProgress::StreamEnd {
                        self.phase = GzipPhase::Trailer {
                            bytes: [0; 8],
                            filled: 0,
                        };
                    }
                }
                GzipPhase::Trailer { bytes, filled } => {
                    let copied = fill(bytes, filled, &mut input);
                    meter.accept(copied, &[], out)?;
                    if *filled == bytes.len() {
                        let trailer = *bytes;
                        self.end_member(&trailer, meter)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn header_error(&self, meter: &Meter, message: &str) -> CodecError {
        if self.members_done > 0 {
            meter.corrupt("unexpected data after the last gzip member")
        } else {
            meter.corrupt(message)
        }
    }

    /// Checks a member's trailer (CRC-32 and length modulo 2^32) and gets
    /// ready for another member.
    fn end_member(&mut self, trailer: &[u8; 8], meter: &Meter) -> Result<(), CodecError> {
        let expected_crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let expected_len = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
        if expected_crc != self.crc.sum() {
            return Err(meter.corrupt("CRC-32 mismatch"));
        }
        if expected_len != self.member_len as u32 {
            return Err(meter.corrupt("length in trailer does not match the decoded length"));
        }
        self.members_done += 1;
        self.member_len = 0;
        self.crc.reset();
        self.inflater.reset(false);
        self.phase = GzipPhase::Header(GzipHeader::new());
        Ok(())
    }

    fn finish(
        &mut self,
        scratch: &mut [u8],
        meter: &mut Meter,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        if let GzipPhase::Body = self.phase {
            // Flush what the inflater holds, to report output before the error.
            inflate(
                &mut self.inflater,
                &mut &[][..],
                scratch,
                meter,
                Some(&mut self.crc),
                out,
            )?;
            return Err(meter.truncated());
        }
        match &self.phase {
            GzipPhase::Header(header) if header.is_untouched() => Ok(()),
            _ => Err(meter.truncated()),
        }
    }
}

/// Copies bytes from the front of `input` into `buffer[*filled..]` and
/// returns how many were copied.
fn fill(buffer: &mut [u8], filled: &mut usize, input: &mut &[u8]) -> usize {
    let count = (buffer.len() - *filled).min(input.len());
    buffer[*filled..*filled + count].copy_from_slice(&input[..count]);
    *filled += count;
    *input = &input[count..];
    count
}

const GZIP_FLAG_HCRC: u8 = 0x02;
const GZIP_FLAG_EXTRA: u8 = 0x04;
const GZIP_FLAG_NAME: u8 = 0x08;
const GZIP_FLAG_COMMENT: u8 = 0x10;
const GZIP_FLAGS_RESERVED: u8 = 0xe0;

/// Field of a gzip member header (RFC 1952, section 2.3), in stream order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum HeaderField {
    Fixed,
    ExtraLength,
    Extra,
    Name,
    Comment,
    HeaderCrc,
    Done,
}

/// Parser of one gzip member header that accepts the header in pieces.
///
/// Optional fields are skipped, not stored, so a long file name costs no
/// memory.
struct GzipHeader {
    field: HeaderField,
    buffer: [u8; 10],
    filled: usize,
    flags: u8,
    extra_remaining: usize,
    /// CRC-32 of the header bytes so far, for the optional header CRC.
    crc: Crc,
}

impl GzipHeader {
    fn new() -> GzipHeader {
        GzipHeader {
            field: HeaderField::Fixed,
            buffer: [0; 10],
            filled: 0,
            flags: 0,
            extra_remaining: 0,
            crc: Crc::new(),
        }
    }

    fn is_untouched(&self) -> bool {
        self.field == HeaderField::Fixed && self.filled == 0
    }

    /// Consumes header bytes from the front of `input`; returns true once
    /// the header is complete.
    fn parse(&mut self, input: &mut &[u8]) -> Result<bool, &'static str> {
        loop {
            match self.field {
                HeaderField::Fixed => {
                    let complete = self.fill_field(input, 10);
                    // Check the magic bytes as soon as they arrive, so that a
                    // few bytes of trailing garbage are reported as such.
                    let seen = if complete { 10 } else { self.filled };
                    let magic = &[0x1f, 0x8b][..seen.min(2)];
                    if self.buffer[..magic.len()] != *magic {
                        return Err("not a gzip stream (wrong magic bytes)");
                    }
                    if !complete {
                        return Ok(false);
                    }
                    let fixed = self.buffer;
                    if fixed[2] != 8 {
                        return Err("unknown compression method (only deflate is defined)");
                    }
                    if fixed[3] & GZIP_FLAGS_RESERVED != 0 {
                        return Err("reserved header flags are set");
                    }
                    self.flags = fixed[3];
                }
                HeaderField::ExtraLength => {
                    if !self.fill_field(input, 2) {
                        return Ok(false);
                    }
                    self.extra_remaining =
                        usize::from(u16::from_le_bytes([self.buffer[0], self.buffer[1]]));
                }
                HeaderField::Extra => {
                    let count = self.extra_remaining.min(input.len());
                    self.crc.update(&input[..count]);
                    *input = &input[count..];
                    self.extra_remaining -= count;
                    if self.extra_remaining > 0 {
                        return Ok(false);
                    }
                }
                HeaderField::Name | HeaderField::Comment => {
                    let Some(end) = memchr::memchr(0, input) else {
                        self.crc.update(input);
                        *input = &[];
                        return Ok(false);
                    };
                    self.crc.update(&input[..=end]);
                    *input = &input[end + 1..];
                }
                HeaderField::HeaderCrc => {
                    let expected = (self.crc.sum() & 0xffff) as u16;
                    if !self.fill_field(input, 2) {
                        return Ok(false);
                    }
                    if u16::from_le_bytes([self.buffer[0], self.buffer[1]]) != expected {
                        return Err("header CRC mismatch");
                    }
                }
                HeaderField::Done => return Ok(true),
            }
            self.field = self.next_field();
        }
    }

    /// Collects a fixed-size field of `len` bytes in `self.buffer`; returns
    /// true once it is complete.
    fn fill_field(&mut self, input: &mut &[u8], len: usize) -> bool {
        let start = self.filled;
        fill(&mut self.buffer[..len], &mut self.filled, input);
        // The header CRC covers every header byte before the CRC itself.
        if self.field != HeaderField::HeaderCrc {
            self.crc.update(&self.buffer[start..self.filled]);
        }
        if self.filled < len {
            return false;
        }
        self.filled = 0;
        true
    }

    fn next_field(&self) -> HeaderField {
        let present = |field: HeaderField| match field {
            HeaderField::ExtraLength | HeaderField::Extra => self.flags & GZIP_FLAG_EXTRA != 0,
            HeaderField::Name => self.flags & GZIP_FLAG_NAME != 0,
            HeaderField::Comment => self.flags & GZIP_FLAG_COMMENT != 0,
            HeaderField::HeaderCrc => self.flags & GZIP_FLAG_HCRC != 0,
            HeaderField::Fixed | HeaderField::Done => true,
        };
        [
            HeaderField::ExtraLength,
            HeaderField::Extra,
            HeaderField::Name,
            HeaderField::Comment,
            HeaderField::HeaderCrc,
            HeaderField::Done,
        ]
        .into_iter()
        .find(|&field| field > self.field && present(field))
        .unwrap_or(HeaderField::Done)
    }
}

/// Decoder for zstd, including several concatenated frames.
struct ZstdDecoder {
    context: zstd::stream::raw::Decoder<'static>,
    /// True while a frame has started but not ended.
    in_frame: bool,
}

impl ZstdDecoder {
    fn new() -> ZstdDecoder {
        // Without a dictionary, zstd 0.13 fails here only when allocation
        // fails, and the window limit is within zstd's valid range.
        let mut context =
            zstd::stream::raw::Decoder::new().expect("zstd decoder context allocation");
        context
            .set_parameter(DParameter::WindowLogMax(ZSTD_WINDOW_LOG_MAX))
            .expect("zstd accepts a window log of 23");
        ZstdDecoder {
            context,
            in_frame: false,
        }
    }

    fn push(
        &mut self,
        mut input: &[u8],
        scratch: &mut [u8],
        meter: &mut Meter,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        if input.is_empty() {
            return Ok(());
        }
        loop {
            let mut source = InBuffer::around(input);
            let mut target = OutBuffer::around(&mut *scratch);
            let hint = self
                .context
                .run(&mut source, &mut target)
                .map_err(|error| meter.corrupt(zstd_message(&error)))?;
            let consumed = source.pos();
            let produced = target.pos();
            input = &input[consumed..];
            meter.accept(consumed, &scratch[..produced], out)?;
            // A hint of 0 means a frame ended and all its output was
            // returned. A call without progress returns the header size of
            // a next frame, which tells nothing about the current one.
            if consumed > 0 || produced > 0 {
                self.in_frame = hint != 0;
            }
            if hint == 0 && input.is_empty() {
                return Ok(());
            }

            if produced < scratch.len() && input.is_empty() {
                return Ok(());
            }
            if consumed == 0 && produced == 0 {
                return Err(meter.corrupt("zstd decoder made no progress"));
            }
        }
    }

    fn finish(&mut self, meter: &Meter) -> Result<(), CodecError> {
        if self.in_frame {
            return Err(meter.truncated());
        }
        Ok(())
    }
}

/// Returns a zstd error message in lowercase, as messages in this module are.
fn zstd_message(error: &std::io::Error) -> String {
    let message = error.to_string();
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => message,
    }
}

/// Decoder for brotli, which has exactly one stream per body.
struct BrotliDecoder {
    state: Box<BrotliState<StandardAlloc, StandardAlloc, StandardAlloc>>,
    started: bool,
    done: bool,
}

impl BrotliDecoder {
    fn new() -> BrotliDecoder {
        let mut state = Box::new(BrotliState::new(
            StandardAlloc::default(),
            StandardAlloc::default(),
            StandardAlloc::default(),
        ));
        // Large-window brotli (windows up to 1 GiB) is an extension outside
        // RFC 7932 that HTTP does not use; standard windows stop at 16 MiB.
        state.large_window = false;
        BrotliDecoder {
            state,
            started: false,
            done: false,
        }
    }

    fn push(
        &mut self,
        mut input: &[u8],
        scratch: &mut [u8],
        meter: &mut Meter,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        if input.is_empty() {
            return Ok(());
        }
        if self.done {
            return reject_trailing(input, meter);
        }
        self.started = true;
        loop {
            let mut available_in = input.len();
            let mut input_offset = 0;
            let mut available_out = scratch.len();
            let mut output_offset = 0;
            let mut total_out = 0;
            let result = BrotliDecompressStream(
                &mut available_in,
                &mut input_offset,
                input,
                &mut available_out,
                &mut output_offset,
                scratch,
                &mut total_out,
                &mut self.state,
            );
            input = &input[input_offset..];
            meter.accept(input_offset, &scratch[..output_offset], out)?;
            match result {
                BrotliResult::ResultSuccess => {
                    self.done = true;
                    return reject_trailing(input, meter);
                }
                BrotliResult::ResultFailure => {
                    let code = format!("{:?}", self.state.error_code);
                    let message = code
                        .trim_start_matches("BROTLI_DECODER_ERROR_")
                        .to_lowercase()
                        .replace('_', " ");
                    return Err(meter.corrupt(message));
                }
                // The decoder can request input while it still has output
                // pending (seen after a flush), so a full step is always
                // followed by another one.
                BrotliResult::NeedsMoreInput
                    if input.is_empty() && output_offset < scratch.len() =>
                {
                    return Ok(())
                }
                BrotliResult::NeedsMoreInput | BrotliResult::NeedsMoreOutput => {
                    if input_offset == 0 && output_offset == 0 {
                        return Err(meter.corrupt("brotli decoder made no progress"));
                    }
                }
            }
        }
    }

    fn finish(&mut self, meter: &Meter) -> Result<(), CodecError> {
        if self.started && !self.done {
            return Err(meter.truncated());
        }
        Ok(())
    }
}

/// Streaming encoder for one body.
///
/// Push the body in chunks, call [`Encoder::flush`] whenever the input goes
/// idle (so that the receiver can decode everything so far), and end with
/// [`Encoder::finish`].
pub struct Encoder {
    coding: ContentCoding,
    inner: EncoderInner,
    scratch: Vec<u8>,
    state: Lifecycle,
}

enum EncoderInner {
    Identity,
    Gzip {
        deflater: Compress,
        crc: Crc,
        header_written: bool,
    },
    Deflate(Compress),
    Zstd(zstd::stream::raw::Encoder<'static>),
    Brotli(Box<BrotliEncoderStateStruct<StandardAlloc>>),
}

impl Encoder {
    /// Creates an encoder that writes `coding`; deflate output is
    /// zlib-wrapped, as RFC 9110 defines HTTP "deflate".
    pub fn new(coding: ContentCoding) -> Encoder {
        let level = Compression::new(FLATE_LEVEL);
        let inner = match coding {
            ContentCoding::Identity => EncoderInner::Identity,
            ContentCoding::Gzip => EncoderInner::Gzip {
                deflater: Compress::new(level, false),
                crc: Crc::new(),
                header_written: false,
            },
            ContentCoding::Deflate => EncoderInner::Deflate(Compress::new(level, true)),
            ContentCoding::Zstd => new_zstd_encoder(),
            ContentCoding::Brotli => new_brotli_encoder(),
        };
        Encoder::with_inner(coding, inner)
    }

    /// Creates a deflate encoder that writes raw deflate (RFC 1951, no zlib
    /// wrapper), for re-encoding a body that arrived that way.
    pub fn new_raw_deflate() -> Encoder {
        let deflater = Compress::new(Compression::new(FLATE_LEVEL), false);
        Encoder::with_inner(ContentCoding::Deflate, EncoderInner::Deflate(deflater))
    }

    fn with_inner(coding: ContentCoding, inner: EncoderInner) -> Encoder {
        let scratch = match inner {
            EncoderInner::Identity => Vec::new(),
            _ => vec![0; STEP],
        };
        Encoder {
            coding,
            inner,
            scratch,
            state: Lifecycle::Open,
        }
    }

    /// Returns the coding this encoder writes.
    pub fn coding(&self) -> ContentCoding {
        self.coding
    }

    /// Compresses `input` and appends the output to `out`. The compressor
    /// may keep some of the input buffered until the next flush or finish.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.run(Action::Process, input, out)
    }

    /// Appends output that makes everything pushed so far decodable by the
    /// receiver (a sync flush), without ending the stream.
    pub fn flush(&mut self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.run(Action::Flush, &[], out)
    }

    /// Ends the stream and appends the rest of the output, including any
    /// trailer.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.run(Action::Finish, &[], out)
    }

    fn run(&mut self, action: Action, input: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.state.check_open(self.coding)?;
        let coding = self.coding;
        let encode_error = |message: String| CodecError::Encode { coding, message };
        let scratch = &mut self.scratch;
        let result = match &mut self.inner {
            EncoderInner::Identity => {
                out.extend_from_slice(input);
                Ok(())
            }
            EncoderInner::Gzip {
                deflater,
                crc,
                header_written,
            } => {
                if !*header_written {
                    out.extend_from_slice(&gzip_header());
                    *header_written = true;
                }
                crc.update(input);
                let result = deflate(deflater, action, input, scratch, out).map_err(encode_error);
                if result.is_ok() && action == Action::Finish {
                    out.extend_from_slice(&crc.sum().to_le_bytes());
                    // ISIZE is the input length modulo 2^32 (RFC 1952).
                    out.extend_from_slice(&(deflater.total_in() as u32).to_le_bytes());
                }
                result
            }
            EncoderInner::Deflate(deflater) => {
                deflate(deflater, action, input, scratch, out).map_err(encode_error)
            }
            EncoderInner::Zstd(context) => {
                zstd_encode(context, action, input, scratch, out).map_err(encode_error)
            }
            EncoderInner::Brotli(state) => {
                brotli_encode(state, action, input, scratch, out).map_err(encode_error)
            }
        };
        self.state.record(&result, action == Action::Finish);
        result
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Process,
    Flush,
    Finish,
}

/// Returns a gzip member header without optional fields (RFC 1952).
fn gzip_header() -> [u8; 10] {
    // XFL 4 marks the fastest compression, which level 1 is.
    let extra_flags = if FLATE_LEVEL == 1 { 4 } else { 0 };
    // Modification time 0 means none; operating system 255 means unknown.
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, extra_flags, 255]
}

fn new_zstd_encoder() -> EncoderInner {
    // Without a dictionary, zstd 0.13 fails here only when allocation fails,
    // and both parameters are valid.
    let mut context =
        zstd::stream::raw::Encoder::new(ZSTD_LEVEL).expect("zstd encoder context allocation");
    context
        .set_parameter(CParameter::ChecksumFlag(true))
        .expect("zstd accepts the checksum flag");
    EncoderInner::Zstd(context)
}

fn new_brotli_encoder() -> EncoderInner {
    let mut state = Box::new(BrotliEncoderStateStruct::new(StandardAlloc::default()));
    // Parameters are rejected only after compression has started.
    let quality_set =
        state.set_parameter(BrotliEncoderParameter::BROTLI_PARAM_QUALITY, BROTLI_QUALITY);
    let window_set = state.set_parameter(BrotliEncoderParameter::BROTLI_PARAM_LGWIN, BROTLI_LGWIN);
    debug_assert!(quality_set && window_set);
    EncoderInner::Brotli(state)
}

/// Runs a flate2 compressor (gzip body, zlib or raw deflate) for one action.
fn deflate(
    deflater: &mut Compress,
    action: Action,
    mut input: &[u8],
    scratch: &mut [u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let flush = match action {
        Action::Process => FlushCompress::None,
        Action::Flush => FlushCompress::Sync,
        Action::Finish => FlushCompress::Finish,
    };
    loop {
        let in_before = deflater.total_in();
        let out_before = deflater.total_out();
        let status = deflater
            .compress(input, scratch, flush)
            .map_err(|error| error.to_string())?;
        let consumed = (deflater.total_in() - in_before) as usize;
        let produced = (deflater.total_out() - out_before) as usize;
        input = &input[consumed..];
        out.extend_from_slice(&scratch[..produced]);

        let done = match action {
            Action::Finish => status == Status::StreamEnd,
            // A step that left room in the scratch buffer has written all
            // output that the consumed input and the flush call for.
            Action::Process | Action::Flush => input.is_empty() && produced < scratch.len(),
        };
        if done {
            return Ok(());
        }
        if consumed == 0 && produced == 0 && status == Status::BufError {
            return Err("deflate encoder made no progress".to_owned());
        }
    }
}

/// Runs a zstd compressor for one action.
fn zstd_encode(
    context: &mut zstd::stream::raw::Encoder<'static>,
    action: Action,
    mut input: &[u8],
    scratch: &mut [u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    while !input.is_empty() {
        let mut source = InBuffer::around(input);
        let mut target = OutBuffer::around(&mut *scratch);
        context
            .run(&mut source, &mut target)
            .map_err(|error| error.to_string())?;
        let consumed = source.pos();
        let produced = target.pos();
        input = &input[consumed..];
        out.extend_from_slice(&scratch[..produced]);
    }
    if action == Action::Process {
        return Ok(());
    }
    loop {
        let mut target = OutBuffer::around(&mut *scratch);
        // Both calls return the number of bytes still to write.
        let remaining = match action {
            Action::Finish => context.finish(&mut target, false),
            _ => context.flush(&mut target),
        }
        .map_err(|error| error.to_string())?;
        let produced = target.pos();
        out.extend_from_slice(&scratch[..produced]);
        if remaining == 0 {
            return Ok(());
        }
    }
}

/// Runs a brotli compressor for one action.
fn brotli_encode(
    state: &mut BrotliEncoderStateStruct<StandardAlloc>,
    action: Action,
    input: &[u8],
    scratch: &mut [u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let operation = match action {
        Action::Process => BrotliEncoderOperation::BROTLI_OPERATION_PROCESS,
        Action::Flush => BrotliEncoderOperation::BROTLI_OPERATION_FLUSH,
        Action::Finish => BrotliEncoderOperation::BROTLI_OPERATION_FINISH,
    };
    let mut available_in = input.len();
    let mut input_offset = 0;
    let mut ignore_metablock =
        |_: &mut brotli::interface::PredictionModeContextMap<brotli::InputReferenceMut>,
         _: &mut [brotli::interface::StaticCommand],
         _: brotli::InputPair,
         _: &mut StandardAlloc| {};
    loop {
        let mut available_out = scratch.len();
        let mut output_offset = 0;
        let succeeded = state.compress_stream(
            operation,
            &mut available_in,
            input,
            &mut input_offset,
            &mut available_out,
            scratch,
            &mut output_offset,
            &mut None,
            &mut ignore_metablock,
        );
        out.extend_from_slice(&scratch[..output_offset]);
        if !succeeded {
            return Err("brotli compression failed".to_owned());
        }
        let done = match action {
            Action::Finish => state.is_finished(),
            Action::Process | Action::Flush => available_in == 0 && !state.has_more_output(),
        };
        if done {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests;
