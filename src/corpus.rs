//! Seeded generator of mixed log corpora with synthetic tokens, for
//! benchmarks, tests and the `gen_corpus` example.
//!
//! A corpus mixes plain-text application log lines, JSON log lines and
//! access log lines with query strings. Now and then a line is a long JSON
//! batch record or ends in CRLF. Tokens from [`TokenGen`] are injected at a
//! chosen rate. Each token sits between delimiters that are neither
//! alphanumeric nor base64 characters (a space, `=`, `"`, `&`, `,`, `;` or a
//! line end), so the engine's output for it is its [`SynthToken::masked`]
//! text.
//!
//! Beside the input the generator produces the expected output under the
//! `keep-id` policy. It is the input with each token's text replaced by its
//! `masked` text, computed without the engine, so a run checks the engine
//! against an independent expectation.
//!
//! Filler text contains no candidate of the built-in searcher: no `dt0` or
//! `-tok` in any case, and none of the base64 literals of `dt0` (each
//! contains an upper-case letter from a small set that filler words avoid).
//! A corpus with a token rate of 0 therefore measures the prefilter alone.
//!
//! ```
//! use dtredact::corpus::{generate, CorpusConfig};
//!
//! let config = CorpusConfig {
//!     size: 64 * 1024,
//!     token_rate: 0.1,
//!     ..CorpusConfig::default()
//! };
//! let corpus = generate(&config);
//! assert_eq!(corpus.input.len(), 64 * 1024);
//! assert_eq!(corpus.expected.len(), corpus.input.len());
//! assert!(!corpus.injections.is_empty());
//! ```

use std::io::{self, Write};
use std::ops::RangeInclusive;

use crate::synth::{SynthToken, TokenGen, TokenKind};

/// Settings of a generated corpus.
#[derive(Debug, Clone)]
pub struct CorpusConfig {
    /// Seed of every random choice: equal configs give equal bytes.
    pub seed: u64,
    /// Exact size of the input in bytes.
    pub size: u64,
    /// Mean number of tokens per line; 0 for none. A long line is built
    /// from short records, and each record counts as a line here, so the
    /// token density per byte is about the same in long lines.
    pub token_rate: f64,
    /// Target share of the input bytes that lie in long lines, from 0 to 1.
    pub long_line_share: f64,
    /// Length range of a long line in bytes.
    pub long_line_len: RangeInclusive<usize>,
    /// Share of lines that end in CRLF instead of LF, from 0 to 1.
    pub crlf_share: f64,
    /// Token kinds to inject, drawn with equal probability.
    pub kinds: Vec<TokenKind>,
    /// End lines with a line break. When false, every line ends in a space
    /// instead, so the whole input is one line.
    pub line_breaks: bool,
}

impl Default for CorpusConfig {
    fn default() -> Self {
        CorpusConfig {
            seed: 1,
            size: 64 * 1024 * 1024,
            token_rate: 0.001,
            long_line_share: 0.05,
            long_line_len: 16 * 1024..=1024 * 1024,
            crlf_share: 0.02,
            kinds: TokenKind::ALL.to_vec(),
            line_breaks: true,
        }
    }
}

/// One injected token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    /// Byte offset of the token text in the input.
    pub offset: u64,
    /// Length of the token text, equal to the length of its masked text.
    pub len: usize,
    /// Kind of the token.
    pub kind: TokenKind,
}

/// Counts of what a generator has written so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorpusStats {
    /// Input bytes.
    pub bytes: u64,
    /// Lines, padding line included.
    pub lines: u64,
    /// Long lines.
    pub long_lines: u64,
    /// Bytes in long lines.
    pub long_line_bytes: u64,
    /// Lines ending in CRLF.
    pub crlf_lines: u64,
    /// Injected tokens per kind, indexed like [`TokenKind::ALL`].
    pub tokens: [u64; TokenKind::ALL.len()],
}

impl CorpusStats {
    /// Total injected tokens.
    pub fn total_tokens(&self) -> u64 {
        self.tokens.iter().sum()
    }
}

/// A corpus generated in memory by [`generate`].
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Input bytes.
    pub input: Vec<u8>,
    /// Expected `keep-id` output.
    pub expected: Vec<u8>,
    /// Every injected token, in input order.
    pub injections: Vec<Injection>,
    /// Counts of lines, bytes and tokens.
    pub stats: CorpusStats,
}

/// Generates a whole corpus in memory.
pub fn generate(config: &CorpusConfig) -> Corpus {
    let mut gen = CorpusGen::new(config.clone());
    let capacity = usize::try_from(config.size).unwrap_or(0);
    let mut input = Vec::with_capacity(capacity);
    let mut expected = Vec::with_capacity(capacity);
    let mut injections = Vec::new();
    while gen.next_line(&mut input, &mut expected) {
        injections.extend_from_slice(gen.last_injections());
    }
    Corpus {
        input,
        expected,
        injections,
        stats: gen.stats().clone(),
    }
}

/// Buffered bytes after which [`CorpusGen::write_to`] writes them out.
const WRITE_CHUNK: usize = 4 * 1024 * 1024;

/// Records shorter than this are not started when less room is left.
const MIN_RECORD_ROOM: usize = 2048;

/// A seeded generator that produces a corpus line by line.
#[derive(Debug, Clone)]
pub struct CorpusGen {
    config: CorpusConfig,
    rng: TokenGen,
    /// Tokens per line, whole part.
    rate_whole: u64,
    /// Probability of one more token, scaled to `u64`.
    rate_frac: u64,
    crlf_threshold: u64,
    /// Milliseconds since the corpus' first timestamp.
    clock_ms: u64,
    /// Tokens of the line being built: offset in the line and token.
    line_tokens: Vec<(usize, SynthToken)>,
    /// Tokens of the last line written, with input offsets.
    injections: Vec<Injection>,
    stats: CorpusStats,
}

/// Scales a probability to a threshold for a uniform `u64`.
fn threshold(p: f64) -> u64 {
    if p >= 1.0 {
        u64::MAX
    } else if p > 0.0 {
        // `as` saturates, and p < 1 keeps the product below 2^64.
        (p * 18_446_744_073_709_551_616.0) as u64
    } else {
        0
    }
}

impl CorpusGen {
    /// Creates a generator.
    ///
    /// # Panics
    ///
    /// When `token_rate` is positive and `kinds` is empty, or when the
    /// long line length range is empty or starts at 0.
    pub fn new(config: CorpusConfig) -> CorpusGen {
        let rate = if config.token_rate.is_finite() {
            config.token_rate.max(0.0)
        } else {
            0.0
        };
        assert!(
            rate == 0.0 || !config.kinds.is_empty(),
            "token_rate is {rate} but no token kind is given; set kinds or a rate of 0"
        );
        let (lo, hi) = (*config.long_line_len.start(), *config.long_line_len.end());
        assert!(
            lo > 0 && lo <= hi,
            "long_line_len {lo}..={hi} is invalid; it must be a non-empty range above 0"
        );
        let rate_whole = rate.floor();
        CorpusGen {
            rng: TokenGen::new(config.seed),
            rate_whole: rate_whole as u64,
            rate_frac: threshold(rate - rate_whole),
            crlf_threshold: threshold(config.crlf_share),
            clock_ms: 0,
            line_tokens: Vec::new(),
            injections: Vec::new(),
            stats: CorpusStats::default(),
            config,
        }
    }

    /// Returns the counts of what has been written so far.
    pub fn stats(&self) -> &CorpusStats {
        &self.stats
    }

    /// Returns the tokens of the line that the last [`CorpusGen::next_line`] call
    /// appended, with offsets into the whole input.
    pub fn last_injections(&self) -> &[Injection] {
        &self.injections
    }

    /// Appends the next line to `input` and its expected output to
    /// `expected`. Returns false, and appends nothing, once the input has
    /// reached the configured size.
    pub fn next_line(&mut self, input: &mut Vec<u8>, expected: &mut Vec<u8>) -> bool {
        self.injections.clear();
        let remaining = self.config.size - self.stats.bytes;
        if remaining == 0 {
            return false;
        }
        let remaining = usize::try_from(remaining).unwrap_or(usize::MAX);
        let start = input.len();
        self.line_tokens.clear();
        let long = self.wants_long_line(remaining);
        if long {
            self.long_line(input, remaining);
        } else {
            match self.rng.below(20) {
                0..=8 => self.plain_line(input),
                9..=14 => self.json_line(input),
                _ => self.access_line(input),
            }
        }
        self.line_end(input);
        if input.len() - start > remaining {
            // The line does not fit: pad to the exact size instead.
            input.truncate(start);
            self.line_tokens.clear();
            self.padding_line(input, remaining);
        } else if long {
            self.stats.long_lines += 1;
            self.stats.long_line_bytes += (input.len() - start) as u64;
        }

        expected.extend_from_slice(&input[start..]);
        let line_start = expected.len() - (input.len() - start);
        for (at, token) in &self.line_tokens {
            assert_eq!(
                token.text.len(),
                token.masked.len(),
                "keep-id masking of {:?} changed the length",
                token.kind
            );
            let at_line = line_start + at;
            expected[at_line..at_line + token.masked.len()]
                .copy_from_slice(token.masked.as_bytes());
            self.injections.push(Injection {
                offset: self.stats.bytes + *at as u64,
                len: token.text.len(),
                kind: token.kind,
            });
            let index = TokenKind::ALL
                .iter()
                .position(|k| *k == token.kind)
                .expect("TokenKind::ALL lists every kind");
            self.stats.tokens[index] += 1;
        }
        self.stats.bytes += (input.len() - start) as u64;
        self.stats.lines += 1;
        true
    }

    /// Writes the rest of the corpus: input to `input` and expected output
    /// to `expected`. It buffers about 4 MiB of each, plus at most one
    /// line, between writes.
    ///
    /// # Errors
    ///
    /// The first write error of either writer.
    pub fn write_to(
        &mut self,
        input: &mut impl Write,
        expected: &mut impl Write,
    ) -> io::Result<()> {
        let mut in_buf = Vec::with_capacity(WRITE_CHUNK * 2);
        let mut exp_buf = Vec::with_capacity(WRITE_CHUNK * 2);
        loop {
            let more = self.next_line(&mut in_buf, &mut exp_buf);
            if in_buf.len() >= WRITE_CHUNK || !more {
                input.write_all(&in_buf)?;
                expected.write_all(&exp_buf)?;
                in_buf.clear();
                exp_buf.clear();
            }
            if !more {
                break;
            }
        }
        input.flush()?;
        expected.flush()
    }

    /// Decides whether the next line is long: when long lines hold less
    /// than their share of the bytes so far, with some randomness in the
    /// spacing.
    fn wants_long_line(&mut self, remaining: usize) -> bool {
        let share = self.config.long_line_share;
        if share <= 0.0 || remaining < *self.config.long_line_len.start() {
            return false;
        }
        if share >= 1.0 {
            return true;
        }
        let behind = (self.stats.long_line_bytes as f64) < share * (self.stats.bytes as f64 + 1.0);
        behind && self.rng.below(8) == 0
    }

    /// Number of tokens for the next line or record.
    fn token_count(&mut self) -> u64 {
        let extra = self.rate_frac > 0 && self.rng.next_u64() < self.rate_frac;
        self.rate_whole + u64::from(extra)
    }

    /// Appends a token and remembers where it went.
    fn inject(&mut self, line: &mut Vec<u8>, line_start: usize, token: SynthToken) {
        self.line_tokens
            .push((line.len() - line_start, token.clone()));
        line.extend_from_slice(token.text.as_bytes());
    }

    fn next_token(&mut self) -> SynthToken {
        let kinds = &self.config.kinds;
        let kind = kinds[self.rng.below(kinds.len() as u64) as usize];
        self.rng.token(kind)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.rng.below(items.len() as u64) as usize]
    }

    fn line_end(&mut self, line: &mut Vec<u8>) {
        if !self.config.line_breaks {
            line.push(b' ');
        } else if self.crlf_threshold > 0 && self.rng.next_u64() < self.crlf_threshold {
            line.extend_from_slice(b"\r\n");
            self.stats.crlf_lines += 1;
        } else {
            line.push(b'\n');
        }
    }

    /// Fills exactly `len` bytes, line end included, without tokens.
    fn padding_line(&mut self, line: &mut Vec<u8>, len: usize) {
        let body = len - 1;
        let text = b"# padding to the configured corpus size ";
        for i in 0..body {
            line.push(text[i % text.len()]);
        }
        line.push(if self.config.line_breaks { b'\n' } else { b' ' });
    }

    /// Appends `2024-05-DDTHH:MM:SS.mmmZ` and advances the clock.
    fn iso_timestamp(&mut self, line: &mut Vec<u8>) {
        self.clock_ms += 1 + self.rng.below(40);
        let (day, h, m, s, ms) = self.clock_parts();
        line.extend_from_slice(b"2024-05-");
        push_padded(line, day, 2);
        line.push(b'T');
        push_padded(line, h, 2);
        line.push(b':');
        push_padded(line, m, 2);
        line.push(b':');
        push_padded(line, s, 2);
        line.push(b'.');
        push_padded(line, ms, 3);
        line.push(b'Z');
    }

    /// Appends `[DD/May/2024:HH:MM:SS +0000]` and advances the clock.
    fn clf_timestamp(&mut self, line: &mut Vec<u8>) {
        self.clock_ms += 1 + self.rng.below(40);
        let (day, h, m, s, _) = self.clock_parts();
        line.push(b'[');
        push_padded(line, day, 2);
        line.extend_from_slice(b"/May/2024:");
        push_padded(line, h, 2);
        line.push(b':');
        push_padded(line, m, 2);
        line.push(b':');
        push_padded(line, s, 2);
        line.extend_from_slice(b" +0000]");
    }

    /// Day of May (cycling through 1 to 28), hour, minute, second and
    /// millisecond of the clock.
    fn clock_parts(&self) -> (u64, u64, u64, u64, u64) {
        let t = self.clock_ms;
        let day = 1 + (t / 86_400_000) % 28;
        (
            day,
            t / 3_600_000 % 24,
            t / 60_000 % 60,
            t / 1000 % 60,
            t % 1000,
        )
    }

    /// Expands a message template: `#` is a number, `@` a tenant, `~` a
    /// word.
    fn message(&mut self, line: &mut Vec<u8>, template: &str) {
        for &b in template.as_bytes() {
            match b {
                b'#' => {
                    let n = self.rng.below(100_000);
                    push_u64(line, n);
                }
                b'@' => {
                    let tenant = self.pick(TENANTS);
                    line.extend_from_slice(tenant.as_bytes());
                }
                b'~' => {
                    let word = self.pick(WORDS);
                    line.extend_from_slice(word.as_bytes());
                }
                _ => line.push(b),
            }
        }
    }

    fn hex(&mut self, line: &mut Vec<u8>, len: usize) {
        for _ in 0..len {
            line.push(b"0123456789abcdef"[self.rng.below(16) as usize]);
        }
    }

    /// Appends `2024-05-14T10:23:45.123Z INFO  [worker-3] logger - message`, with
    /// tokens appended as ` key=<token>` or similar.
    fn plain_line(&mut self, line: &mut Vec<u8>) {
        let start = line.len();
        self.iso_timestamp(line);
        line.push(b' ');
        let level = self.pick(&["INFO ", "INFO ", "INFO ", "DEBUG", "WARN ", "ERROR"]);
        line.extend_from_slice(level.as_bytes());
        line.extend_from_slice(b" [");
        let thread = self.pick(THREADS);
        line.extend_from_slice(thread.as_bytes());
        line.extend_from_slice(b"] ");
        let logger = self.pick(LOGGERS);
        line.extend_from_slice(logger.as_bytes());
        line.extend_from_slice(b" - ");
        let template = self.pick(MESSAGES);
        self.message(line, template);
        for _ in 0..self.token_count() {
            let (before, after) = match self.rng.below(5) {
                0 => (" token=", ""),
                1 => (" using \"", "\""),
                2 => (" Authorization: ", ""),
                3 => (" header ", ","),
                _ => (" key=", ";"),
            };
            line.extend_from_slice(before.as_bytes());
            let token = self.next_token();
            self.inject(line, start, token);
            line.extend_from_slice(after.as_bytes());
        }
    }

    /// Appends a JSON log object, with tokens as extra string fields.
    fn json_line(&mut self, line: &mut Vec<u8>) {
        let start = line.len();
        line.extend_from_slice(b"{\"ts\":\"");
        self.iso_timestamp(line);
        line.extend_from_slice(b"\",\"level\":\"");
        let level = self.pick(&["info", "info", "info", "debug", "warn", "error"]);
        line.extend_from_slice(level.as_bytes());
        line.extend_from_slice(b"\",\"logger\":\"");
        let logger = self.pick(LOGGERS);
        line.extend_from_slice(logger.as_bytes());
        line.extend_from_slice(b"\",\"thread\":\"");
        let thread = self.pick(THREADS);
        line.extend_from_slice(thread.as_bytes());
        line.extend_from_slice(b"\",\"msg\":\"");
        let template = self.pick(MESSAGES);
        self.message(line, template);

        line.extend_from_slice(b"\",\"tenant\":\"");
        let tenant = self.pick(TENANTS);
        line.extend_from_slice(tenant.as_bytes());
        line.extend_from_slice(b"\",\"duration_ms\":");
        let duration = self.rng.below(5000);
        push_u64(line, duration);
        line.extend_from_slice(b",\"trace_id\":\"");
        self.hex(line, 32);
        line.push(b'"');

        for _ in 0..self.token_count() {
            let key = self.pick(&[
                "token",
                "authorization",
                "api_token",
                "credentials",
                "header",
            ]);
            line.extend_from_slice(b",\"");
            line.extend_from_slice(key.as_bytes());
            line.extend_from_slice(b"\":\"");
            let token = self.next_token();
            self.inject(line, start, token);
            line.push(b'"');
        }
        line.push(b'}');
    }

    /// Appends a combined log format line. Tokens go into the query string, or
    /// into a trailing `auth="..."` field when they contain a space.
    fn access_line(&mut self, line: &mut Vec<u8>) {
        let start = line.len();
        let net = self.pick(&["192.0.2.", "198.51.100.", "203.0.113."]);
        line.extend_from_slice(net.as_bytes());
        let host = 1 + self.rng.below(254);
        push_u64(line, host);
        line.extend_from_slice(b" - - ");
        self.clf_timestamp(line);
        line.extend_from_slice(b" \"");
        let method = self.pick(&["GET", "GET", "GET", "POST", "PUT", "DELETE"]);
        line.extend_from_slice(method.as_bytes());
        line.push(b' ');
        let path = self.pick(PATHS);
        line.extend_from_slice(path.as_bytes());
        let query = self.pick(QUERIES);
        self.message(line, query);

        let count = self.token_count();
        let mut trailer = Vec::new();
        for _ in 0..count {
            let token = self.next_token();
            if token.text.contains(' ') {
                trailer.push(token);
            } else {
                let key = self.pick(&["token", "access_token", "key", "auth"]);
                line.push(b'&');
                line.extend_from_slice(key.as_bytes());
                line.push(b'=');
                self.inject(line, start, token);
            }
        }

        line.extend_from_slice(b" HTTP/1.1\" ");
        let status = self.pick(&[
            "200", "200", "200", "201", "204", "304", "401", "404", "500",
        ]);
        line.extend_from_slice(status.as_bytes());
        line.push(b' ');
        let size = self.rng.below(200_000);
        push_u64(line, size);
        line.extend_from_slice(b" \"-\" \"");
        let agent = self.pick(AGENTS);
        line.extend_from_slice(agent.as_bytes());
        line.push(b'"');
        for token in trailer {
            line.extend_from_slice(b" auth=\"");
            self.inject(line, start, token);
            line.push(b'"');
        }
    }

    /// Appends a JSON batch record of at most `remaining` bytes (line end
    /// included), made of short item records.
    fn long_line(&mut self, line: &mut Vec<u8>, remaining: usize) {
        let start = line.len();
        let (lo, hi) = (
            *self.config.long_line_len.start(),
            *self.config.long_line_len.end(),
        );
        let target = self
            .long_line_target(lo, hi)
            .min(remaining.saturating_sub(2));
        line.extend_from_slice(b"{\"ts\":\"");
        self.iso_timestamp(line);
        line.extend_from_slice(b"\",\"level\":\"debug\",\"logger\":\"batch.export\",\"msg\":\"export batch\",\"batch_id\":");
        let batch = self.rng.below(1_000_000);
        push_u64(line, batch);
        line.extend_from_slice(b",\"items\":[");
        let mut first = true;
        // Records are short (under MIN_RECORD_ROOM bytes unless they hold
        // several tokens), so the line ends up close to the target.
        while line.len() - start + MIN_RECORD_ROOM < target {
            if !first {
                line.push(b',');
            }
            first = false;
            self.item_record(line, start);
        }
        line.extend_from_slice(b"]}");
    }

    /// Picks a long line length, spread evenly over the powers of two in the
    /// range so that shorter long lines are more frequent.
    fn long_line_target(&mut self, lo: usize, hi: usize) -> usize {
        let mut octaves = 0;
        while (lo << (octaves + 1)) <= hi && octaves < 40 {
            octaves += 1;
        }
        let octave = self.rng.below(octaves as u64 + 1) as u32;
        let base = lo << octave;
        let top = (base * 2).min(hi + 1);
        base + self.rng.below((top - base).max(1) as u64) as usize
    }

    /// Appends one item of a batch record, with tokens as extra fields.
    fn item_record(&mut self, line: &mut Vec<u8>, start: usize) {
        line.extend_from_slice(b"{\"id\":");
        let id = self.rng.below(10_000_000);
        push_u64(line, id);
        line.extend_from_slice(b",\"sku\":\"sku-");
        let sku = self.rng.below(100_000);
        push_u64(line, sku);
        line.extend_from_slice(b"\",\"qty\":");
        let qty = 1 + self.rng.below(50);
        push_u64(line, qty);
        line.extend_from_slice(b",\"warehouse\":\"");
        let tenant = self.pick(TENANTS);
        line.extend_from_slice(tenant.as_bytes());
        line.extend_from_slice(b"\",\"note\":\"");
        self.message(line, "~ ~ ~ ~");
        line.push(b'"');
        for _ in 0..self.token_count() {
            line.extend_from_slice(b",\"token\":\"");
            let token = self.next_token();
            self.inject(line, start, token);
            line.push(b'"');
        }
        line.push(b'}');
    }
}

/// Appends the decimal digits of `n`.
fn push_u64(line: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    line.extend_from_slice(&digits[i..]);
}

/// Appends `n` with leading zeros to `width` digits.
fn push_padded(line: &mut Vec<u8>, n: u64, width: usize) {
    let mut digits = Vec::with_capacity(width);
    push_u64(&mut digits, n);
    for _ in digits.len()..width {
        line.push(b'0');
    }
    line.extend_from_slice(&digits);
}

// Filler vocabulary. Upper-case letters appear only in words that hold no
// base64 literal of `dt0` (such as `R0M`, `RUM` or `EVD`), and no entry
// contains `dt0` or `-tok` in any case. The zero-rate test checks generated
// text against the real searcher.

const THREADS: &[&str] = &[
    "main",
    "worker-3",
    "worker-7",
    "http-nio-8080-exec-4",
    "pool-2-thread-1",
    "scheduler-1",
    "grpc-default-executor-2",
];

const LOGGERS: &[&str] = &[
    "com.example.billing.InvoiceService",
    "com.example.auth.SessionManager",
    "org.eclipse.jetty.server.Server",
    "io.grpc.netty.NettyClientHandler",
    "payments.gateway",
    "app.cache",
    "ingest.pipeline",
];

const MESSAGES: &[&str] = &[
    "processed invoice # for tenant @ in # ms",
    "session # refreshed for user @-#",
    "cache miss for key ~:# after # ms",
    "retrying request # to upstream ~ (attempt #)",
    "connection to ~-# closed by peer",
    "flushed # records to shard # of ~",
    "lease # renewed, expires in # s",
    "quota for tenant @ at # of # requests",
    "rejected payload of # bytes from @: too large",
    "scheduled job ~ finished with # items in # ms",
    "slow query on ~ took # ms, # rows",
    "config reloaded, # rules active",
];

const TENANTS: &[&str] = &[
    "acme", "globex", "initech", "umbrella", "hooli", "vandelay", "stark", "wayne",
];

const WORDS: &[&str] = &[
    "alpha", "bravo", "cache", "delta", "queue", "retry", "shard", "region", "replica", "commit",
    "ledger", "order", "batch", "cursor", "window", "buffer", "socket", "lease", "quota", "index",
];

const PATHS: &[&str] = &[
    "/api/v2/metrics/query",
    "/api/v2/entities",
    "/api/v2/logs/ingest",
    "/e/tenant/api/v1/config/clusterversion",
    "/platform/storage/query/v1/query:execute",
    "/healthz",
    "/static/app.js",
];

const QUERIES: &[&str] = &[
    "?pageSize=#&from=now-2h",
    "?metricSelector=builtin:host.cpu.usage&resolution=1m",
    "?entitySelector=type(HOST)&fields=tags&page=#",
    "?q=~&limit=#",
    "?v=#",
];

const AGENTS: &[&str] = &[
    "curl/8.5.0",
    "python-requests/2.31.0",
    "Go-http-client/1.1",
    "okhttp/4.12.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{Rules, Searcher};
    use crate::Redactor;

    fn small(seed: u64, token_rate: f64) -> CorpusConfig {
        CorpusConfig {
            seed,
            size: 512 * 1024,
            token_rate,
            long_line_share: 0.2,
            long_line_len: 16 * 1024..=128 * 1024,
            crlf_share: 0.05,
            ..CorpusConfig::default()
        }
    }

    #[test]
    fn same_seed_same_bytes() {
        let a = generate(&small(9, 0.1));
        let b = generate(&small(9, 0.1));
        assert_eq!(a.input, b.input);
        assert_eq!(a.expected, b.expected);
        assert_eq!(a.injections, b.injections);
    }

    #[test]
    fn other_seed_other_bytes() {
        let a = generate(&small(9, 0.1));
        let b = generate(&small(10, 0.1));
        assert_ne!(a.input, b.input);
    }

    #[test]
    fn size_is_exact() {
        for size in [1, 2, 100, 4097, 300_000] {
            let config = CorpusConfig {
                size,
                ..small(3, 0.1)
            };
            let corpus = generate(&config);
            assert_eq!(corpus.input.len() as u64, size);
            assert_eq!(corpus.stats.bytes, size);
        }
    }

    #[test]
    fn stream_writer_matches_memory() {
        let config = small(4, 0.05);
        let corpus = generate(&config);
        let mut input = Vec::new();
        let mut expected = Vec::new();
        let mut gen = CorpusGen::new(config);
        gen.write_to(&mut input, &mut expected).unwrap();
        assert_eq!(input, corpus.input);
        assert_eq!(expected, corpus.expected);
        assert_eq!(gen.stats(), &corpus.stats);
    }

    #[test]
    fn expected_differs_only_at_tokens() {
        let corpus = generate(&small(5, 0.2));
        assert_eq!(corpus.input.len(), corpus.expected.len());
        let mut covered = vec![false; corpus.input.len()];
        for inj in &corpus.injections {
            let span = inj.offset as usize..inj.offset as usize + inj.len;
            let (text, masked) = (&corpus.input[span.clone()], &corpus.expected[span.clone()]);
            assert_ne!(
                text, masked,
                "token at {} ({:?}) is not masked",
                inj.offset, inj.kind
            );
            covered[span].fill(true);
        }
        for (i, covered) in covered.iter().enumerate() {
            if !covered {
                assert_eq!(
                    corpus.input[i], corpus.expected[i],
                    "byte {i} outside every token differs"
                );
            }
        }
        assert_eq!(corpus.stats.total_tokens(), corpus.injections.len() as u64);
    }

    #[test]
    fn every_kind_and_line_shape_appears() {
        let corpus = generate(&small(6, 0.2));
        for (i, kind) in TokenKind::ALL.iter().enumerate() {
            assert!(corpus.stats.tokens[i] > 0, "no {kind:?} token injected");
        }
        assert!(corpus.stats.long_lines > 0, "no long line");
        assert!(corpus.stats.crlf_lines > 0, "no CRLF line");
        let text = String::from_utf8_lossy(&corpus.input);
        assert!(text.contains("{\"ts\":"), "no JSON line");
        assert!(text.contains(" HTTP/1.1\" "), "no access log line");
        assert!(text.contains("\n2024-05-"), "no plain line");
    }

    #[test]
    fn tokens_have_delimiters() {
        let corpus = generate(&small(7, 0.3));
        let delimiters = b" =\"&,;:\r\n";
        for inj in &corpus.injections {
            let start = inj.offset as usize;
            let end = start + inj.len;
            let before = corpus.input[start - 1];
            assert!(
                delimiters.contains(&before),
                "byte {before:?} before token at {start}"
            );
            let after = corpus.input.get(end).copied().unwrap_or(b'\n');
            assert!(
                delimiters.contains(&after),
                "byte {after:?} after token at {start}"
            );
        }
    }

    #[test]
    fn zero_rate_has_no_candidates() {
        let config = CorpusConfig {
            size: 2 * 1024 * 1024,
            ..small(8, 0.0)
        };
        let corpus = generate(&config);
        assert!(corpus.injections.is_empty());
        assert_eq!(corpus.input, corpus.expected);
        let rules = Rules::builtin();
        let candidate = rules.next_candidate(Searcher::Builtin, &corpus.input, 0);
        assert!(
            candidate.is_none(),
            "candidate at {:?}",
            candidate.map(|c| c.pos)
        );
    }

    #[test]
    fn no_line_breaks_is_one_line() {
        let config = CorpusConfig {
            line_breaks: false,
            ..small(11, 0.1)
        };
        let corpus = generate(&config);
        assert!(!corpus.input.contains(&b'\n'));
        assert!(!corpus.input.contains(&b'\r'));
        assert!(!corpus.injections.is_empty());
    }

    /// Returns where two outputs first differ, with some context, for an
    /// assertion message that does not print megabytes.
    fn first_difference(got: &[u8], want: &[u8]) -> Option<String> {
        let i = got.iter().zip(want).position(|(a, b)| a != b);
        let i = match i {
            Some(i) => i,
            None if got.len() == want.len() => return None,
            None => got.len().min(want.len()),
        };
        let lo = i.saturating_sub(120);
        let context = |b: &[u8]| {
            String::from_utf8_lossy(&b[lo.min(b.len())..(i + 120).min(b.len())]).into_owned()
        };
        Some(format!(
            "outputs differ at byte {i} (lengths {} and {}):\n got: {}\nwant: {}",
            got.len(),
            want.len(),
            context(got),
            context(want)
        ))
    }

    fn engine_config(line_breaks: bool) -> CorpusConfig {
        CorpusConfig {
            seed: 42,
            size: 2 * 1024 * 1024,
            token_rate: 0.05,
            long_line_share: 0.2,
            long_line_len: 16 * 1024..=256 * 1024,
            crlf_share: 0.05,
            kinds: TokenKind::ALL.to_vec(),
            line_breaks,
        }
    }

    #[test]
    fn engine_output_matches_expected() {
        let corpus = generate(&engine_config(true));
        assert!(
            corpus.injections.len() > 500,
            "{} tokens",
            corpus.injections.len()
        );
        let (out, findings) = Redactor::default().redact_all(&corpus.input);
        if let Some(diff) = first_difference(&out, &corpus.expected) {
            panic!("{diff}");
        }
        assert_eq!(findings.len(), corpus.injections.len());
        for (finding, inj) in findings.iter().zip(&corpus.injections) {
            assert!(
                finding.offset >= inj.offset && finding.offset < inj.offset + inj.len as u64,
                "finding at {} is outside the {:?} token at {}",
                finding.offset,
                inj.kind,
                inj.offset
            );
        }
    }

    #[test]
    fn engine_streamed_matches_expected() {
        // Odd read sizes cut tokens at many different points.
        let corpus = generate(&engine_config(false));
        let redactor = Redactor::default();
        for chunk in [4099, 65_537] {
            let mut stream = redactor.stream_with_capacity(chunk);
            let mut out = Vec::with_capacity(corpus.input.len());
            for piece in corpus.input.chunks(chunk) {
                stream.push(piece, &mut out);
            }
            stream.finish(&mut out);
            if let Some(diff) = first_difference(&out, &corpus.expected) {
                panic!("read size {chunk}: {diff}");
            }
        }
    }
}
