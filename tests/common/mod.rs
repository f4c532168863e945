//! Helpers shared by the integration tests that run the `dtredact` binary:
//! spawning it with a timeout, reading its output while it runs, injecting
//! synthetic tokens into text, and comparing bytes with readable messages.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use dtredact::synth::{SynthToken, TokenGen, TokenKind};

/// Maximum time a run of the binary may take before the test kills it and
/// fails. Debug builds on a loaded two-core machine are slow, so this is
/// far above what a run needs.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// Returns a command for the binary under test, with the environment
/// variables that change its behaviour or its log removed.
pub fn dtredact() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dtredact"));
    cmd.env_remove("DTREDACT_CONFIG")
        .env_remove("DTREDACT_FINGERPRINT_KEY")
        .env_remove("RUST_LOG");
    cmd
}

/// Returns a command for the binary with `args`.
pub fn dtredact_with(args: &[&str]) -> Command {
    let mut cmd = dtredact();
    cmd.args(args);
    cmd
}

/// Folder of the public log corpus beside the checkout.
pub fn corpus_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/corpus/loghub"
    ))
}

/// Returns the `*.log` files of the public corpus, sorted by name.
///
/// # Panics
///
/// When the corpus folder is missing or contains no log, with a message that
/// names the folder.
pub fn corpus_logs() -> Vec<PathBuf> {
    let dir = corpus_dir();
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "log corpus {} is missing ({e}); these tests need the Loghub samples \
             in shared/corpus/loghub beside the checkout",
            dir.display()
        )
    });
    let mut logs: Vec<PathBuf> = entries
        .map(|entry| entry.expect("failed to list the corpus folder").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    logs.sort();
    assert!(!logs.is_empty(), "no *.log file in {}", dir.display());
    logs
}

/// Returns the path of the bundled sample log with synthetic tokens.
pub fn sample_path() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/sample.log"
    ))
}

/// Exit status, standard output and standard error of a finished run.
#[derive(Debug)]
pub struct Run {
    /// How the process ended.
    pub status: ExitStatus,
    /// Everything it wrote to standard output.
    pub stdout: Vec<u8>,
    /// Everything it wrote to standard error.
    pub stderr: Vec<u8>,
}

impl Run {
    /// Standard error as text, for messages.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Asserts that the process exited with `code`.
    pub fn assert_exit(&self, code: i32, context: &str) {
        assert_eq!(
            self.status.code(),
            Some(code),
            "{context}: expected exit code {code}, got {:?}; stderr: {}",
            self.status,
            self.stderr_text()
        );
    }
}

/// A child process that is killed when the test drops it, so that a failed
/// assertion never leaves a process behind.
pub struct ChildGuard {
    pub child: Child,
}

impl ChildGuard {
    /// Spawns `cmd` with piped standard input, output and error.
    pub fn spawn(mut cmd: Command) -> ChildGuard {
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("failed to start the dtredact binary");
        ChildGuard { child }
    }

    /// Process id of the child.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Takes the child's standard input.
    pub fn take_stdin(&mut self) -> ChildStdin {
        self.child.stdin.take().expect("stdin is piped")
    }

    /// Starts collecting the child's standard output.
    pub fn collect_stdout(&mut self) -> Collector {
        Collector::spawn(self.child.stdout.take().expect("stdout is piped"))
    }

    /// Starts collecting the child's standard error.
    pub fn collect_stderr(&mut self) -> Collector {
        Collector::spawn(self.child.stderr.take().expect("stderr is piped"))
    }

    /// Waits for the child to exit.
    ///
    /// # Panics
    ///
    /// When it is still running after `timeout`; the guard kills it.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("failed to wait for the child") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "dtredact (pid {}) still running after {timeout:?}",
                self.id()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads a pipe on a thread and hands the bytes over with timeouts, so
/// that a test can wait for output while the process keeps running.
pub struct Collector {
    receiver: Receiver<Vec<u8>>,
    /// Bytes received so far.
    pub bytes: Vec<u8>,
    /// The pipe reached end of file.
    pub closed: bool,
}

impl Collector {
    /// Starts reading `source` on a new thread.
    pub fn spawn(mut source: impl Read + Send + 'static) -> Collector {
        let (sender, receiver) = mpsc::channel();
        thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                match source.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if sender.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        });
        Collector {
            receiver,
            bytes: Vec::new(),
            closed: false,
        }
    }

    /// Waits until `done` holds for the bytes received, the pipe closes or
    /// `timeout` passes. Returns whether `done` holds.
    pub fn wait_until(&mut self, timeout: Duration, done: impl Fn(&[u8]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.bytes) {
                return true;
            }
            if self.closed {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.receiver.recv_timeout(left) {
                Ok(chunk) => self.bytes.extend_from_slice(&chunk),
                Err(RecvTimeoutError::Timeout) => return done(&self.bytes),
                Err(RecvTimeoutError::Disconnected) => self.closed = true,
            }
        }
    }

    /// Waits until at least `len` bytes arrived. Returns whether they did.
    pub fn wait_len(&mut self, len: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |bytes| bytes.len() >= len)
    }

    /// Reads until end of file and returns all bytes received.
    ///
    /// # Panics
    ///
    /// When the pipe is still open after `timeout`.
    pub fn read_to_end(&mut self, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        while !self.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.receiver.recv_timeout(left) {
                Ok(chunk) => self.bytes.extend_from_slice(&chunk),
                Err(RecvTimeoutError::Timeout) => {
                    panic!("pipe still open after {timeout:?}")
                }
                Err(RecvTimeoutError::Disconnected) => self.closed = true,
            }
        }
        std::mem::take(&mut self.bytes)
    }
}

/// Writes `input` to `stdin` on a new thread and closes it. A reader that
/// exits early (broken pipe) is not an error here: the test checks the
/// exit code and output instead.
pub fn feed(mut stdin: ChildStdin, input: Vec<u8>) -> JoinHandle<()> {
    thread::spawn(move || {
        match stdin.write_all(&input) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
            Err(e) => panic!("failed to write to dtredact's stdin: {e}"),
        }
        drop(stdin);
    })
}

/// Runs `cmd` with `input` on standard input and returns what it wrote.
pub fn run_cmd(cmd: Command, input: &[u8]) -> Run {
    let mut child = ChildGuard::spawn(cmd);
    let writer = feed(child.take_stdin(), input.to_vec());
    let mut stdout = child.collect_stdout();
    let mut stderr = child.collect_stderr();
    let status = child.wait(RUN_TIMEOUT);
    let stdout = stdout.read_to_end(Duration::from_secs(30));
    let stderr = stderr.read_to_end(Duration::from_secs(30));
    writer.join().expect("stdin writer panicked");
    Run {
        status,
        stdout,
        stderr,
    }
}

/// Runs the binary with `args` and `input` on standard input.
pub fn run(args: &[&str], input: &[u8]) -> Run {
    run_cmd(dtredact_with(args), input)
}

/// Returns the lines of `stderr` that report an error: the `error:` prefix,
/// an `ERROR` log line or an OS error such as a broken pipe. Warnings about
/// masked secrets are not errors.
pub fn error_lines(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|line| {
            let lower = line.to_ascii_lowercase();
            lower.contains("error") || lower.contains("broken pipe")
        })
        .map(str::to_string)
        .collect()
}

/// Returns `bytes` with non-printable bytes escaped, for messages.
pub fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// Asserts that two byte strings are equal. On a difference, the message
/// gives the lengths, the first differing offset and line, and the bytes
/// around it, instead of dumping both strings.
pub fn assert_bytes_eq(actual: &[u8], expected: &[u8], context: &str) {
    if actual == expected {
        return;
    }
    let at = actual
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(actual.len().min(expected.len()));
    let line = expected[..at.min(expected.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1;
    let window = |bytes: &[u8]| {
        let lo = at.saturating_sub(60).min(bytes.len());
        let hi = (at + 60).min(bytes.len());
        show(&bytes[lo..hi])
    };
    panic!(
        "{context}: output differs from the expected output at byte {at} (line {line}); \
         output is {} bytes, expected {} bytes\n  output:   {}\n  expected: {}",
        actual.len(),
        expected.len(),
        window(actual),
        window(expected)
    );
}

/// Returns the number of times `needle` occurs in `hay`.
pub fn count(hay: &[u8], needle: &[u8]) -> usize {
    memchr::memmem::find_iter(hay, needle).count()
}

/// Returns whether `hay` contains `needle`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// Returns the part of a token that the `keep-id` policy masks: from the
/// first to the last byte where `text` and `masked` differ. For a base64
/// token this is the encoded secret.
pub fn secret_region(token: &SynthToken) -> &str {
    let text = token.text.as_bytes();
    let masked = token.masked.as_bytes();
    let first = (0..text.len())
        .find(|&i| text[i] != masked[i])
        .expect("a synthetic token has a masked part");
    let last = (0..text.len())
        .rfind(|&i| text[i] != masked[i])
        .expect("a synthetic token has a masked part");
    &token.text[first..=last]
}

/// Asserts that no secret part of any of `tokens` occurs in `hay`.
pub fn assert_no_secret(hay: &[u8], tokens: &[SynthToken], context: &str) {
    for token in tokens {
        let secret = secret_region(token);
        if let Some(at) = memchr::memmem::find(hay, secret.as_bytes()) {
            panic!(
                "{context}: the secret part of a {:?} token leaked at byte {at}: {secret}",
                token.kind
            );
        }
    }
}

/// Name of the encoding that a finding for `token` reports.
///
/// The base64 of alphanumeric text never contains `+`, `/`, `-` or `_`, so
/// a URL-safe token is reported as `base64url` only when its text shows a
/// URL-safe character.
pub fn encoding_name(token: &SynthToken) -> &'static str {
    match token.kind {
        TokenKind::PercentSeparators => "percent",
        TokenKind::Legacy => "context",
        TokenKind::Base64 => "base64",
        TokenKind::Base64Url if token.text.contains(['-', '_']) => "base64url",
        TokenKind::Base64Url => "base64",
        _ => "plain",
    }
}

/// Count of tokens per rule name.
pub fn count_by_rule(tokens: &[SynthToken]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for token in tokens {
        *counts.entry(token.kind.rule().to_string()).or_default() += 1;
    }
    counts
}

/// Count of tokens per encoding name.
pub fn count_by_encoding(tokens: &[SynthToken]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for token in tokens {
        *counts.entry(encoding_name(token).to_string()).or_default() += 1;
    }
    counts
}

/// Converts a JSON object of counts to a map, failing on any other shape.
pub fn json_counts(value: &serde_json::Value, field: &str) -> BTreeMap<String, u64> {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{field} is not a JSON object: {value}"));
    object
        .iter()
        .map(|(key, count)| {
            let count = count
                .as_u64()
                .unwrap_or_else(|| panic!("{field}.{key} is not a count: {count}"));
            (key.clone(), count)
        })
        .collect()
}

/// Parses the summary that `--summary` prints to standard error: the last
/// non-empty line, one JSON object.
pub fn parse_summary(stderr: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or_else(|| panic!("no summary on stderr; stderr: {text:?}"));
    let value: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("summary is not valid JSON ({e}): {line}"));
    assert!(value.is_object(), "summary is not a JSON object: {line}");
    value
}

/// Token identifiers listed in a summary's `leaks`.
pub fn leak_ids(summary: &serde_json::Value) -> BTreeSet<String> {
    summary["leaks"]
        .as_array()
        .unwrap_or_else(|| panic!("summary.leaks is not an array: {summary}"))
        .iter()
        .map(|leak| {
            leak["token_id"]
                .as_str()
                .unwrap_or_else(|| panic!("leak without token_id: {leak}"))
                .to_string()
        })
        .collect()
}

/// Input with synthetic tokens placed in it, and the output that the
/// `keep-id` policy must produce for it.
pub struct Injected {
    /// The text with tokens.
    pub input: Vec<u8>,
    /// The text with each token replaced by its masked form.
    pub expected: Vec<u8>,
    /// The tokens, in the order they appear.
    pub tokens: Vec<SynthToken>,
}

/// Places `per_kind` tokens of every kind into `base` at random word
/// boundaries: each goes right after a space, with a space or `=` on both
/// sides, so that no alphanumeric byte touches a token.
///
/// # Panics
///
/// When `base` has fewer spaces than tokens to place.
pub fn inject(base: &[u8], gen: &mut TokenGen, per_kind: usize) -> Injected {
    let gaps: Vec<usize> = memchr::memchr_iter(b' ', base).map(|i| i + 1).collect();
    let mut tokens: Vec<SynthToken> = Vec::new();
    for kind in TokenKind::ALL {
        for _ in 0..per_kind {
            tokens.push(gen.token(kind));
        }
    }
    assert!(
        gaps.len() >= tokens.len() * 4,
        "base text has {} spaces, too few for {} tokens",
        gaps.len(),
        tokens.len()
    );

    // Gap position -> index into `tokens`.
    let mut placed: BTreeMap<usize, usize> = BTreeMap::new();
    for index in 0..tokens.len() {
        loop {
            let gap = gaps[gen.below(gaps.len() as u64) as usize];
            if let std::collections::btree_map::Entry::Vacant(slot) = placed.entry(gap) {
                slot.insert(index);
                break;
            }
        }
    }

    let mut input = Vec::with_capacity(base.len() + tokens.len() * 200);
    let mut expected = Vec::with_capacity(input.capacity());
    let mut ordered = Vec::with_capacity(tokens.len());
    let mut copied = 0;
    for (&gap, &index) in &placed {
        input.extend_from_slice(&base[copied..gap]);
        expected.extend_from_slice(&base[copied..gap]);
        copied = gap;
        let token = &tokens[index];
        let before = [b' ', b'='][gen.below(2) as usize];
        let after = [b' ', b'='][gen.below(2) as usize];
        for (out, text) in [(&mut input, &token.text), (&mut expected, &token.masked)] {
            out.push(before);
            out.extend_from_slice(text.as_bytes());
            out.push(after);
        }
        ordered.push(token.clone());
    }
    input.extend_from_slice(&base[copied..]);
    expected.extend_from_slice(&base[copied..]);

    Injected {
        input,
        expected,
        tokens: ordered,
    }
}

/// Writes `bytes` to a new file `name` in `dir` and returns its path.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap_or_else(|e| panic!("failed to write {}: {e}", path.display()));
    path
}

/// Returns `path` as `&str`; test paths are always UTF-8.
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}
