//! Tests of `dtredact tail` and of `dtredact filter` on a named pipe, run
//! against the real binary: appends, every kind of rotation, restarts with a
//! checkpoint, long and partial lines, concurrent writers and FIFOs.
//!
//! Every line written carries a tag (which file and which writer) and a
//! sequence number, then one synthetic token of each kind. Output is compared
//! with the `keep-id` masking of the input as a multiset of lines (nothing
//! lost, nothing repeated), and the lines of each tag must keep their order.
//! Waits poll the output with generous deadlines and never assert on speed.

mod common;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{path_str, secret_region, ChildGuard, Collector};
use dtredact::synth::{SynthToken, TokenGen, TokenKind};
use rustix::process::{kill_process, Pid, Signal};

/// Maximum wait for output that is expected; far above what a debug build
/// on a loaded machine needs.
const WAIT: Duration = Duration::from_secs(20);

/// Quiet period after the expected output arrived, so that a duplicate
/// written late is still seen.
const SETTLE: Duration = Duration::from_millis(600);

/// Poll interval given to `tail`, shorter than the default to keep the
/// suite fast; file events usually wake it earlier.
const POLL: &str = "50ms";

/// One input line and the output expected for it.
#[derive(Clone, Debug)]
struct Line {
    text: String,
    masked: String,
    tokens: Vec<SynthToken>,
}

/// Writes numbered lines with one token of each kind, for one tag.
struct Source {
    gen: TokenGen,
    tag: String,
    seq: usize,
}

impl Source {
    fn new(tag: &str, seed: u64) -> Source {
        Source {
            gen: TokenGen::new(seed),
            tag: tag.to_string(),
            seq: 0,
        }
    }

    fn line(&mut self) -> Line {
        self.seq += 1;
        let mut text = format!("{} {:06}", self.tag, self.seq);
        let mut masked = text.clone();
        let mut tokens = Vec::new();
        for kind in TokenKind::ALL {
            let token = self.gen.token(kind);
            text.push(' ');
            text.push_str(&token.text);
            masked.push(' ');
            masked.push_str(&token.masked);
            tokens.push(token);
        }
        text.push_str(" end\n");
        masked.push_str(" end\n");
        Line {
            text,
            masked,
            tokens,
        }
    }

    fn lines(&mut self, n: usize) -> Vec<Line> {
        (0..n).map(|_| self.line()).collect()
    }
}

/// Opens `path` for appending, creating it, as a logging app does.
fn open_log(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("failed to open {}: {e}", path.display()))
}

/// Writes each line with one `write` call, as a line-buffered logger does.
fn write_lines(file: &mut File, lines: &[Line]) {
    for line in lines {
        file.write_all(line.text.as_bytes())
            .expect("failed to write a log line");
    }
}

fn masked(lines: &[Line]) -> Vec<String> {
    lines.iter().map(|l| l.masked.clone()).collect()
}

fn tokens(lines: &[Line]) -> Vec<SynthToken> {
    lines.iter().flat_map(|l| l.tokens.clone()).collect()
}

/// Asserts that no secret part of `tokens` occurs in `hay`, in one pass:
/// one substring search per token is too slow for megabytes of output in a
/// debug build.
fn assert_no_secret(hay: &[u8], tokens: &[SynthToken], context: &str) {
    let secrets: Vec<&str> = tokens.iter().map(secret_region).collect();
    let searcher = aho_corasick::AhoCorasick::new(&secrets).expect("secrets form a searcher");
    if let Some(found) = searcher.find(hay) {
        panic!(
            "{context}: the secret part of a {:?} token leaked at byte {}",
            tokens[found.pattern().as_usize()].kind,
            found.start()
        );
    }
}

/// Cuts output into lines that keep their newline; a last line without one
/// is kept as it is.
fn split_lines(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    text.split_inclusive('\n').map(str::to_string).collect()
}

fn short(line: &str) -> String {
    let head: String = line.chars().take(60).collect();
    format!("{head}... ({} bytes)", line.len())
}

/// Asserts that `output` contains exactly the `expected` lines, each once, and
/// that the lines of each tag (first word) come in the expected order.
fn assert_lines(output: &[u8], expected: &[String], context: &str) {
    let actual = split_lines(output);
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for line in expected {
        *counts.entry(line).or_default() += 1;
    }
    for line in &actual {
        *counts.entry(line).or_default() -= 1;
    }

    let missing: Vec<String> = counts
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(l, n)| format!("{n} x {}", short(l)))
        .collect();
    let extra: Vec<String> = counts
        .iter()
        .filter(|(_, &n)| n < 0)
        .map(|(l, n)| format!("{} x {}", -n, short(l)))
        .collect();
    assert!(
        missing.is_empty(),
        "{context}: {} of {} expected lines missing (output has {} lines): {:#?}",
        missing.len(),
        expected.len(),
        actual.len(),
        &missing[..missing.len().min(8)]
    );
    assert!(
        extra.is_empty(),
        "{context}: {} unexpected or repeated lines: {:#?}",
        extra.len(),
        &extra[..extra.len().min(8)]
    );

    let tag = |l: &str| l.split(' ').next().unwrap_or_default().to_string();
    let mut tags: Vec<String> = expected.iter().map(|l| tag(l)).collect();
    tags.sort();
    tags.dedup();
    for t in tags {
        let want: Vec<&String> = expected.iter().filter(|l| tag(l) == t).collect();
        let got: Vec<&String> = actual.iter().filter(|l| tag(l) == t).collect();
        assert!(
            want == got,
            "{context}: lines of {t} are out of order in the output"
        );
    }
}

/// A running `dtredact` whose output and log are collected.
struct Proc {
    guard: ChildGuard,
    out: Collector,
    err: Collector,
    /// Newlines in `out.bytes[..counted]`, counted once per byte.
    lines: usize,
    counted: usize,
}

impl Proc {
    fn start(args: &[&str]) -> Proc {
        let mut cmd = common::dtredact();
        cmd.args(args);
        let mut guard = ChildGuard::spawn(cmd);
        drop(guard.take_stdin());
        let out = guard.collect_stdout();
        let err = guard.collect_stderr();
        Proc {
            guard,
            out,
            err,
            lines: 0,
            counted: 0,
        }
    }

    /// Starts `dtredact tail` with a short poll interval and `args`.
    fn tail(args: &[&str]) -> Proc {
        let mut all = vec!["tail", "--poll-interval", POLL];
        all.extend_from_slice(args);
        Proc::start(&all)
    }

    fn log(&mut self) -> String {
        self.err.wait_until(Duration::ZERO, |_| false);
        String::from_utf8_lossy(&self.err.bytes).into_owned()
    }

    /// Waits until the log shows that `path` is followed.
    fn wait_following(&mut self, path: &Path) {
        let needle = path_str(path).to_string();
        let found = self.err.wait_until(WAIT, |b| {
            let log = String::from_utf8_lossy(b);
            log.lines()
                .any(|l| l.contains("following file") && l.contains(&needle))
        });
        let log = self.log();
        assert!(found, "tail did not start following {needle}; log:\n{log}");
    }

    /// Waits up to `timeout` until at least `n` whole lines came out.
    /// Returns whether they did.
    fn wait_count(&mut self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let new = &self.out.bytes[self.counted..];
            self.lines += memchr::memchr_iter(b'\n', new).count();
            self.counted = self.out.bytes.len();
            if self.lines >= n {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.out.closed {
                return false;
            }
            let seen = self.counted;
            self.out.wait_until(left, |b| b.len() > seen);
        }
    }

    /// Waits until `n` whole lines came out, then for a quiet period, and
    /// returns all output so far.
    fn wait_lines(&mut self, n: usize, context: &str) -> Vec<u8> {
        let done = self.wait_count(n, WAIT);
        self.out.wait_until(SETTLE, |_| false);
        if !done {
            let log = self.log();
            panic!(
                "{context}: {} of {n} lines came out within {WAIT:?}; log:\n{log}",
                self.lines
            );
        }
        self.out.bytes.clone()
    }

    fn signal(&mut self, signal: Signal) {
        kill_process(Pid::from_child(&self.guard.child), signal)
            .expect("failed to send a signal to dtredact");
    }

    /// Sends `signal`, waits for the exit and returns the status and all
    /// output.
    fn stop(mut self, signal: Signal) -> (ExitStatus, Vec<u8>, String) {
        self.signal(signal);
        let status = self.guard.wait(WAIT);
        let out = self.out.read_to_end(WAIT);
        let log = String::from_utf8_lossy(&self.err.read_to_end(WAIT)).into_owned();
        (status, out, log)
    }

    /// Stops with SIGTERM and asserts exit code 0.
    fn terminate(self, context: &str) -> Vec<u8> {
        let (status, out, log) = self.stop(Signal::Term);
        assert_eq!(
            status.code(),
            Some(0),
            "{context}: exit status after SIGTERM; log:\n{log}"
        );
        out
    }
}

/// Parses the checkpoint, failing the test when it is not valid JSON with a
/// `files` array.
fn read_checkpoint(path: &Path) -> serde_json::Value {
    let bytes = fs::read(path)
        .unwrap_or_else(|e| panic!("failed to read the checkpoint {}: {e}", path.display()));
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "checkpoint is not valid JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert!(
        value["files"].is_array(),
        "checkpoint has no files array: {value}"
    );
    value
}

/// Offset that the checkpoint records for the file now at `file`.
fn checkpoint_offset(checkpoint: &Path, file: &Path) -> Option<u64> {
    let meta = fs::metadata(file).ok()?;
    let value = read_checkpoint(checkpoint);
    value["files"].as_array()?.iter().find_map(|m| {
        let same = m["dev"].as_u64() == Some(meta.dev()) && m["ino"].as_u64() == Some(meta.ino());
        if same {
            m["offset"].as_u64()
        } else {
            None
        }
    })
}

/// Waits until the checkpoint records all of `file` as written.
fn wait_committed(checkpoint: &Path, file: &Path) {
    let len = fs::metadata(file).expect("log file exists").len();
    let deadline = Instant::now() + WAIT;
    loop {
        if checkpoint.exists() && checkpoint_offset(checkpoint, file) == Some(len) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "checkpoint did not reach offset {len} of {} within {WAIT:?}: {:?}",
            file.display(),
            fs::read_to_string(checkpoint)
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Reads the checkpoint in a loop on a thread; every read must parse.
struct CheckpointReader {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<(usize, Vec<String>)>,
}

impl CheckpointReader {
    fn start(path: &Path) -> CheckpointReader {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let path = path.to_path_buf();
        let handle = thread::spawn(move || {
            let mut reads = 0;
            let mut errors = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match fs::read(&path) {
                    Ok(bytes) => {
                        reads += 1;
                        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                            errors.push(format!("{e}: {:?}", String::from_utf8_lossy(&bytes)));
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => errors.push(e.to_string()),
                }
                thread::yield_now();
            }
            (reads, errors)
        });
        CheckpointReader { stop, handle }
    }

    fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let (reads, errors) = self.handle.join().expect("checkpoint reader panicked");
        assert!(reads > 0, "the checkpoint was never read");
        assert!(
            errors.is_empty(),
            "{} of {reads} concurrent reads of the checkpoint failed: {:?}",
            errors.len(),
            &errors[..errors.len().min(3)]
        );
    }
}

/// Writes lines to `path` on a thread, one every `pause`, until stopped.
/// The lines written so far are shared, in file order.
struct Writer {
    stop: Arc<AtomicBool>,
    written: Arc<Mutex<Vec<Line>>>,
    handle: JoinHandle<()>,
}

impl Writer {
    fn start(path: &Path, source: Source, pause: Duration) -> Writer {
        Writer::start_split(path, source, pause, false)
    }

    fn start_split(path: &Path, mut source: Source, pause: Duration, split: bool) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(Mutex::new(Vec::new()));
        let (flag, shared) = (Arc::clone(&stop), Arc::clone(&written));
        let mut file = open_log(path);
        let handle = thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let line = source.line();
                // In two writes when `split`, so that reads end mid-line.
                let cut = if split { line.text.len() / 2 } else { 0 };
                for part in [&line.text[..cut], &line.text[cut..]] {
                    file.write_all(part.as_bytes())
                        .expect("failed to write a log line");
                }
                shared.lock().unwrap().push(line);
                thread::sleep(pause);
            }
        });
        Writer {
            stop,
            written,
            handle,
        }
    }

    fn count(&self) -> usize {
        self.written.lock().unwrap().len()
    }

    /// Waits until at least `n` lines were written.
    fn wait_count(&self, n: usize) {
        let deadline = Instant::now() + WAIT;
        while self.count() < n {
            assert!(Instant::now() < deadline, "writer stalled");
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn finish(self) -> Vec<Line> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("writer thread panicked");
        Arc::try_unwrap(self.written)
            .expect("writer is done")
            .into_inner()
            .unwrap()
    }
}

/// Index of the line that starts at byte `offset`; fails when `offset` is
/// inside a line.
fn line_at_offset(lines: &[Line], offset: u64) -> usize {
    let mut at = 0u64;
    for (i, line) in lines.iter().enumerate() {
        if at == offset {
            return i;
        }
        assert!(at < offset, "checkpoint offset {offset} is inside line {i}");
        at += line.text.len() as u64;
    }
    assert_eq!(at, offset, "checkpoint offset is past the lines written");
    lines.len()
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("failed to create a temporary directory")
}

// ---------------------------------------------------------------------------
// Following one file

#[test]
fn append_one_file() {
    let dir = tempdir();
    let log = dir.path().join("app.log");
    let checkpoint = dir.path().join("checkpoint.json");
    let mut file = open_log(&log);
    let mut source = Source::new("app", 1);
    let mut expected = Vec::new();
    let mut all = Vec::new();

    // Lines written before the start are read from the first byte.
    let first = source.lines(20);
    write_lines(&mut file, &first);
    expected.extend(masked(&first));
    all.extend(first);

    let mut tail = Proc::tail(&[path_str(&log), "--checkpoint", path_str(&checkpoint)]);
    let reader = CheckpointReader::start(&checkpoint);
    for step in 0..3 {
        let batch = source.lines(30);
        for chunk in batch.chunks(5) {
            write_lines(&mut file, chunk);
            thread::sleep(Duration::from_millis(10));
        }
        expected.extend(masked(&batch));
        all.extend(batch);
        let out = tail.wait_lines(expected.len(), "append");
        assert_lines(&out, &expected, &format!("append, step {step}"));
        wait_committed(&checkpoint, &log);
        read_checkpoint(&checkpoint);
    }
    reader.finish();
    let out = tail.terminate("append");
    assert_lines(&out, &expected, "append, after SIGTERM");
    assert_no_secret(&out, &tokens(&all), "append");
    read_checkpoint(&checkpoint);
}

#[test]
fn rename_rotation() {
    let dir = tempdir();
    let log = dir.path().join("app.log");
    let rotated = dir.path().join("app.log.1");
    let checkpoint = dir.path().join("checkpoint.json");
    let glob = format!("{}/*.log", path_str(dir.path()));
    let mut old = open_log(&log);
    let mut old_source = Source::new("old", 2);
    let mut new_source = Source::new("new", 3);
    let mut expected = Vec::new();

    let mut tail = Proc::tail(&[&glob, "--checkpoint", path_str(&checkpoint)]);
    let batch = old_source.lines(20);
    write_lines(&mut old, &batch);
    expected.extend(masked(&batch));
    tail.wait_lines(expected.len(), "before rotation");

    // logrotate `create`: rename, then the app keeps writing to its open
    // descriptor until it reopens its log.
    fs::rename(&log, &rotated).unwrap();
    let batch = old_source.lines(5);
    write_lines(&mut old, &batch);
    expected.extend(masked(&batch));
    thread::sleep(Duration::from_millis(200));
    read_checkpoint(&checkpoint);

    let mut new = open_log(&log);
    let batch = new_source.lines(10);
    write_lines(&mut new, &batch);
    expected.extend(masked(&batch));
    let batch = old_source.lines(5);
    write_lines(&mut old, &batch);
    expected.extend(masked(&batch));
    let batch = new_source.lines(10);
    write_lines(&mut new, &batch);
    expected.extend(masked(&batch));

    let out = tail.wait_lines(expected.len(), "rename rotation");
    assert_lines(&out, &expected, "rename rotation");
    read_checkpoint(&checkpoint);
    let out = tail.terminate("rename rotation");
    assert_lines(&out, &expected, "rename rotation, after SIGTERM");
}

/// A glob that also matches the rotated name (`app.log*`) must not read the
/// renamed file a second time from its start.
#[test]
fn rename_rotation_glob_matches_both() {
    let dir = tempdir();
    let log = dir.path().join("app.log");
    let rotated = dir.path().join("app.log.1");
    let glob = format!("{}/app.log*", path_str(dir.path()));
    let mut old = open_log(&log);
    let mut old_source = Source::new("old", 4);
    let mut new_source = Source::new("new", 5);
    let mut expected = Vec::new();

    let mut tail = Proc::tail(&[&glob]);
    let batch = old_source.lines(20);
    write_lines(&mut old, &batch);
    expected.extend(masked(&batch));
    tail.wait_lines(expected.len(), "before rotation");

    fs::rename(&log, &rotated).unwrap();
    let batch = old_source.lines(5);
    write_lines(&mut old, &batch);
    expected.extend(masked(&batch));
    let mut new = open_log(&log);
    let batch = new_source.lines(10);
    write_lines(&mut new, &batch);
    expected.extend(masked(&batch));

    let out = tail.wait_lines(expected.len(), "glob matches both names");
    assert_lines(&out, &expected, "glob matches both names");

    // The rotated file is still matched, so its later lines are read too.
    let batch = old_source.lines(5);
    write_lines(&mut old, &batch);
    expected.extend(masked(&batch));
    let out = tail.wait_lines(expected.len(), "glob matches both names, later");
    assert_lines(&out, &expected, "glob matches both names, later");
    tail.terminate("glob matches both names");
}

#[test]
fn copytruncate_rotation() {
    let dir = tempdir();
    let log = dir.path().join("app.log");
    let checkpoint = dir.path().join("checkpoint.json");
    let mut file = open_log(&log);
    let mut source = Source::new("app", 6);
    let mut expected = Vec::new();

    let mut tail = Proc::tail(&[path_str(&log), "--checkpoint", path_str(&checkpoint)]);
    let batch = source.lines(30);
    write_lines(&mut file, &batch);
    expected.extend(masked(&batch));
    tail.wait_lines(expected.len(), "before copytruncate");

    // The copy is not followed (it does not match). The lines appended after
    // the truncation are fewer bytes than the file held, so the shrink is
    // visible whenever tail looks.
    fs::copy(&log, dir.path().join("app.log.1")).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    let batch = source.lines(5);
    write_lines(&mut file, &batch);
    expected.extend(masked(&batch));

    let out = tail.wait_lines(expected.len(), "copytruncate");
    assert_lines(&out, &expected, "copytruncate");
    wait_committed(&checkpoint, &log);

    let batch = source.lines(10);
    write_lines(&mut file, &batch);
    expected.extend(masked(&batch));
    let out = tail.wait_lines(expected.len(), "copytruncate, later");
    assert_lines(&out, &expected, "copytruncate, later");
    wait_committed(&checkpoint, &log);
    tail.terminate("copytruncate");
}

#[test]
fn delete_and_recreate() {
    let dir = tempdir();
    let log = dir.path().join("app.log");
    let mut old = open_log(&log);
    let mut old_source = Source::new("old", 7);
    let mut new_source = Source::new("new", 8);
    let mut expected = Vec::new();

    let mut tail = Proc::tail(&[path_str(&log)]);
    let batch = old_source.lines(20);
    write_lines(&mut old, &batch);
    expected.extend(masked(&batch));
    tail.wait_lines(expected.len(), "before delete");

    // The app writes a few more lines to the deleted file before it opens
    // the new one.
    fs::remove_file(&log).unwrap();
    let batch = old_source.lines(5);
    write_lines(&mut old, &batch);
    expected.extend(masked(&batch));
    thread::sleep(Duration::from_millis(200));
    let mut new = open_log(&log);
    let batch = new_source.lines(15);
    write_lines(&mut new, &batch);
    expected.extend(masked(&batch));

    let out = tail.wait_lines(expected.len(), "delete and re-create");
    assert_lines(&out, &expected, "delete and re-create");
    tail.terminate("delete and re-create");
}

#[test]
fn new_file_matches_glob() {
    let dir = tempdir();
    let glob = format!("{}/*.log", path_str(dir.path()));
    let mut a = open_log(&dir.path().join("a.log"));
    let mut a_source = Source::new("a", 9);
    let mut b_source = Source::new("b", 10);
    let mut expected = Vec::new();

    let mut tail = Proc::tail(&[&glob]);
    let batch = a_source.lines(10);
    write_lines(&mut a, &batch);
    expected.extend(masked(&batch));
    tail.wait_lines(expected.len(), "first file");

    // A file that does not match is ignored.
    let mut other = open_log(&dir.path().join("b.txt"));
    write_lines(&mut other, &Source::new("ignored", 11).lines(3));

    let mut b = open_log(&dir.path().join("b.log"));
    let batch = b_source.lines(10);
    write_lines(&mut b, &batch);
    expected.extend(masked(&batch));
    let batch = a_source.lines(5);
    write_lines(&mut a, &batch);
    expected.extend(masked(&batch));

    let out = tail.wait_lines(expected.len(), "new file");
    assert_lines(&out, &expected, "new file");
    tail.terminate("new file");
}

/// `--from end` skips what a file contains at start-up; a file created later
/// is read from its first byte.
#[test]
fn from_end_skips_existing() {
    let dir = tempdir();
    let log = dir.path().join("app.log");
    let glob = format!("{}/*.log", path_str(dir.path()));
    let mut file = open_log(&log);
    let mut source = Source::new("app", 12);
    let mut later_source = Source::new("later", 13);
    write_lines(&mut file, &Source::new("skipped", 14).lines(10));

    let mut tail = Proc::tail(&[&glob, "--from", "end"]);
    tail.wait_following(&log);
    let mut expected = Vec::new();
    let batch = source.lines(10);
    write_lines(&mut file, &batch);
    expected.extend(masked(&batch));
    let mut later = open_log(&dir.path().join("later.log"));
    let batch = later_source.lines(10);
    write_lines(&mut later, &batch);
    expected.extend(masked(&batch));

    let out = tail.wait_lines(expected.len(), "--from end");
    assert_lines(&out, &expected, "--from end");
    tail.terminate("--from end");
}

// ---------------------------------------------------------------------------
// Restarts with a checkpoint

/// SIGKILL after everything was written and checkpointed: lines written
/// while tail is down and after the restart come out exactly once.
#[test]
fn kill_restart_exactly_once() {
    let dir = tempdir();
    let log = dir.path().join("app.log");
    let checkpoint = dir.path().join("checkpoint.json");
    let mut file = open_log(&log);
    let mut source = Source::new("app", 15);
    let args = [path_str(&log), "--checkpoint", path_str(&checkpoint)];

    let mut tail = Proc::tail(&args);
    let before = source.lines(20);
    write_lines(&mut file, &before);
    tail.wait_lines(before.len(), "before kill");
    wait_committed(&checkpoint, &log);
    let (_, out, _) = tail.stop(Signal::Kill);
    assert_lines(&out, &masked(&before), "before kill");
    read_checkpoint(&checkpoint);

    let down = source.lines(15);
    write_lines(&mut file, &down);
    let mut tail = Proc::tail(&args);
    let after = source.lines(15);
    write_lines(&mut file, &after);
    let mut expected = masked(&down);
    expected.extend(masked(&after));
    let out = tail.wait_lines(expected.len(), "after restart");
    assert_lines(&out, &expected, "after restart");
    wait_committed(&checkpoint, &log);
    tail.terminate("after restart");
}

/// SIGKILL while a writer appends. Lines before the checkpointed offset
/// must have come out before the kill and must not come out again. The
/// restart writes every line from that offset on exactly once.
///
/// Lines written after the last checkpoint save and before the kill come
/// out twice: output and checkpoint cannot be updated atomically, and the
/// checkpoint follows the output so that nothing is lost.
#[test]
fn kill_mid_stream_resumes() {
    let dir = tempdir();
    let log = dir.path().join("app.log");
    let checkpoint = dir.path().join("checkpoint.json");
    let args = [path_str(&log), "--checkpoint", path_str(&checkpoint)];
    let writer = Writer::start(&log, Source::new("app", 16), Duration::from_millis(2));

    let mut tail = Proc::tail(&args);
    let reader = CheckpointReader::start(&checkpoint);
    tail.wait_count(100, WAIT);
    let (_, first, _) = tail.stop(Signal::Kill);
    reader.finish();
    let offset = checkpoint_offset(&checkpoint, &log).expect("checkpoint records app.log");

    let down = writer.count();
    writer.wait_count(down + 20);
    let mut tail = Proc::tail(&args);
    tail.wait_count(50, WAIT);
    let lines = writer.finish();

    let committed = line_at_offset(&lines, offset);
    let run1 = split_lines(&first);
    assert!(
        run1.len() >= committed,
        "checkpoint at line {committed} is ahead of the {} lines written before the kill",
        run1.len()
    );
    assert_lines(&first, &masked(&lines[..run1.len()]), "before kill");
    let out = tail.wait_lines(lines.len() - committed, "after restart");
    assert_lines(&out, &masked(&lines[committed..]), "after restart");
    wait_committed(&checkpoint, &log);
    tail.terminate("after restart");
}

/// SIGTERM while a writer appends: tail writes every whole line it read and
/// checkpoints it, so the restart repeats nothing.
#[test]
fn sigterm_restart_exactly_once() {
    let dir = tempdir();
    let log = dir.path().join("app.log");
    let checkpoint = dir.path().join("checkpoint.json");
    let args = [path_str(&log), "--checkpoint", path_str(&checkpoint)];
    let writer = Writer::start(&log, Source::new("app", 17), Duration::from_millis(2));

    let mut tail = Proc::tail(&args);
    tail.wait_count(100, WAIT);
    let first = tail.terminate("first run");
    let offset = checkpoint_offset(&checkpoint, &log).expect("checkpoint records app.log");

    writer.wait_count(writer.count() + 20);
    let mut tail = Proc::tail(&args);
    tail.wait_count(50, WAIT);
    let lines = writer.finish();

    let committed = line_at_offset(&lines, offset);
    assert_lines(&first, &masked(&lines[..committed]), "before SIGTERM");
    let out = tail.wait_lines(lines.len() - committed, "after restart");
    assert_lines(&out, &masked(&lines[committed..]), "after restart");
    tail.terminate("after restart");
}

/// Rename rotation while tail is stopped: the rest of the renamed file
/// (still in the same directory) is read once, then the new file.
#[test]
fn rotation_while_down() {
    let dir = tempdir();
    let log = dir.path().join("app.log");
    let checkpoint = dir.path().join("checkpoint.json");
    let args = [path_str(&log), "--checkpoint", path_str(&checkpoint)];
    let mut old = open_log(&log);
    let mut old_source = Source::new("old", 18);
    let mut new_source = Source::new("new", 19);

    let mut tail = Proc::tail(&args);
    let batch = old_source.lines(20);
    write_lines(&mut old, &batch);
    tail.wait_lines(batch.len(), "before stop");
    wait_committed(&checkpoint, &log);
    let out = tail.terminate("before stop");
    assert_lines(&out, &masked(&batch), "before stop");

    let rest = old_source.lines(10);
    write_lines(&mut old, &rest);
    fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    let mut new = open_log(&log);
    let fresh = new_source.lines(10);
    write_lines(&mut new, &fresh);

    let mut tail = Proc::tail(&args);
    let mut expected = masked(&rest);
    expected.extend(masked(&fresh));
    let out = tail.wait_lines(expected.len(), "after restart");
    assert_lines(&out, &expected, "after restart");
    let out = tail.terminate("after restart");
    assert_lines(&out, &expected, "after restart, after SIGTERM");

    // A second restart repeats nothing.
    let mut tail = Proc::tail(&args);
    let batch = new_source.lines(5);
    write_lines(&mut new, &batch);
    let out = tail.wait_lines(batch.len(), "second restart");
    assert_lines(&out, &masked(&batch), "second restart");
    tail.terminate("second restart");
}

#[test]
fn checkpoint_rejects_placeholder() {
    let dir = tempdir();
    let log = dir.path().join("app.log");
    let checkpoint = dir.path().join("checkpoint.json");
    fs::write(&log, "line\n").unwrap();
    let mut tail = Proc::tail(&[
        path_str(&log),
        "--checkpoint",
        path_str(&checkpoint),
        "--policy",
        "placeholder",
    ]);
    let status = tail.guard.wait(WAIT);
    let log_text = String::from_utf8_lossy(&tail.err.read_to_end(WAIT)).into_owned();
    assert_eq!(status.code(), Some(64), "exit status; stderr:\n{log_text}");
    assert!(
        log_text.contains("placeholder"),
        "message does not name the policy: {log_text}"
    );
    assert!(
        tail.out.read_to_end(WAIT).is_empty(),
        "output written despite the error"
    );
}

// ---------------------------------------------------------------------------
// Long, partial and concurrent lines

#[test]
fn long_line() {
    let dir = tempdir();
    let log = dir.path().join("app.log");
    let mut file = open_log(&log);
    let mut gen = TokenGen::new(20);
    let mut text = String::from("long 000001");
    let mut expected = text.clone();
    let mut all = Vec::new();
    let filler = "x".repeat(4000);
    while text.len() < 1 << 20 {
        for kind in TokenKind::ALL {
            let token = gen.token(kind);
            text.push_str(&format!(" {filler} {}", token.text));
            expected.push_str(&format!(" {filler} {}", token.masked));
            all.push(token);
        }
    }
    text.push('\n');
    expected.push('\n');
    let mut source = Source::new("short", 21);
    let after = source.lines(5);

    let mut tail = Proc::tail(&[path_str(&log)]);
    file.write_all(text.as_bytes()).unwrap();
    write_lines(&mut file, &after);
    let mut want = vec![expected];
    want.extend(masked(&after));
    let out = tail.wait_lines(want.len(), "1 MiB line");
    assert_lines(&out, &want, "1 MiB line");
    assert_no_secret(&out, &all, "1 MiB line");
    tail.terminate("1 MiB line");
}

/// A line written in two parts with a pause: the first part goes out after
/// the idle deadline, and the whole output is the masked line.
#[test]
fn partial_line_completed() {
    let dir = tempdir();
    let log = dir.path().join("app.log");
    let mut file = open_log(&log);
    let mut source = Source::new("app", 22);
    let line = source.line();
    // Cut at a space between two tokens, so that the idle flush has no
    // undecided token to mask early.
    let cut = line.text.len() / 2 + line.text[line.text.len() / 2..].find(' ').unwrap();

    let mut tail = Proc::tail(&[path_str(&log)]);
    file.write_all(&line.text.as_bytes()[..cut]).unwrap();
    let first_part = line.masked[..cut].to_string();
    let flushed = tail
        .out
        .wait_until(WAIT, |b| b.starts_with(first_part.as_bytes()));
    assert!(
        flushed,
        "the partial line did not come out after the idle deadline: {:?}",
        short(&String::from_utf8_lossy(&tail.out.bytes))
    );
    file.write_all(&line.text.as_bytes()[cut..]).unwrap();
    let out = tail.wait_lines(1, "partial line");
    assert_lines(&out, std::slice::from_ref(&line.masked), "partial line");

    // Cut inside a secret: the idle flush masks early, and no secret byte
    // comes out.
    let line2 = source.line();
    let secret = secret_region(&line2.tokens[0]);
    let at = line2.text.find(secret).unwrap() + secret.len() / 2;
    file.write_all(&line2.text.as_bytes()[..at]).unwrap();
    tail.out.wait_until(WAIT, |b| b.len() > out.len());
    thread::sleep(Duration::from_millis(300));
    file.write_all(&line2.text.as_bytes()[at..]).unwrap();
    let out = tail.wait_lines(2, "partial line in a secret");
    assert_no_secret(&out, &line2.tokens, "partial line in a secret");
    assert_lines(
        &out,
        &[line.masked.clone(), line2.masked.clone()],
        "partial line in a secret",
    );
    tail.terminate("partial line");
}

/// Two files written at the same time, each line in two writes: every
/// output line is a whole input line. The idle deadline is set far above
/// the pause between the two writes, so that a slow machine does not turn
/// the first half into an idle flush. It cannot be turned off: the engine
/// holds back the last bytes of a file until more input or the idle flush,
/// so the last line of each file comes out only after it.
#[test]
fn concurrent_files_whole_lines() {
    let dir = tempdir();
    let config = dir.path().join("dtredact.toml");
    fs::write(&config, "[filter]\nidle_flush = \"3s\"\n").unwrap();
    let glob = format!("{}/*.log", path_str(dir.path()));
    let mut tail = Proc::tail(&[&glob, "-c", path_str(&config)]);
    let pause = Duration::from_micros(300);
    let a = Writer::start_split(&dir.path().join("a.log"), Source::new("a", 23), pause, true);
    let b = Writer::start_split(&dir.path().join("b.log"), Source::new("b", 24), pause, true);
    a.wait_count(400);
    b.wait_count(400);
    let mut lines = a.finish();
    lines.extend(b.finish());
    let out = tail.wait_lines(lines.len(), "two writers");
    assert_lines(&out, &masked(&lines), "two writers");
    tail.terminate("two writers");
}

// ---------------------------------------------------------------------------
// Named pipes

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("failed to run mkfifo");
    assert!(status.success(), "mkfifo {} failed", path.display());
}

/// Opens the FIFO for writing once a reader has it open. Opening without
/// O_NONBLOCK would wait for a reader, so readiness is probed without it.
fn open_fifo_writer(path: &Path) -> File {
    let deadline = Instant::now() + WAIT;
    loop {
        let probe = OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(path);
        match probe {
            Ok(_) => break,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error()) => {}
            Err(e) => panic!("failed to open the FIFO: {e}"),
        }
        assert!(Instant::now() < deadline, "no reader opened the FIFO");
        thread::sleep(Duration::from_millis(20));
    }
    OpenOptions::new().write(true).open(path).unwrap()
}

/// Writes a line in two parts through two writers, one after the other,
/// with a pause longer than the idle deadline between them.
fn write_split_token(fifo: &Path, line: &Line) -> usize {
    let secret = secret_region(&line.tokens[0]);
    let at = line.text.find(secret).unwrap() + secret.len() / 2;
    let mut first = open_fifo_writer(fifo);
    first.write_all(&line.text.as_bytes()[..at]).unwrap();
    drop(first);
    thread::sleep(Duration::from_millis(300));
    let mut second = open_fifo_writer(fifo);
    second.write_all(&line.text.as_bytes()[at..]).unwrap();
    at
}

/// Writes `lines` through a new writer on a thread and fails when the
/// writes do not finish within the deadline.
fn assert_writer_not_blocked(fifo: &Path, lines: Vec<Line>, context: &str) {
    let mut writer = open_fifo_writer(fifo);
    let (done, finished) = mpsc::channel();
    thread::spawn(move || {
        write_lines(&mut writer, &lines);
        let _ = done.send(());
    });
    assert!(
        finished.recv_timeout(WAIT).is_ok(),
        "{context}: writes to the FIFO blocked for {WAIT:?}"
    );
}

#[test]
fn tail_fifo_writers() {
    let dir = tempdir();
    let fifo = dir.path().join("app.pipe");
    mkfifo(&fifo);
    let mut source = Source::new("fifo", 25);
    let mut tail = Proc::tail(&[path_str(&fifo)]);

    let line = source.line();
    write_split_token(&fifo, &line);
    let out = tail.wait_lines(1, "token split across writers");
    assert_no_secret(&out, &line.tokens, "token split across writers");
    assert_lines(
        &out,
        std::slice::from_ref(&line.masked),
        "token split across writers",
    );

    // About 2.5 MB, far more than the pipe buffer holds.
    let lines = source.lines(2000);
    let mut expected = vec![line.masked.clone()];
    expected.extend(masked(&lines));
    assert_writer_not_blocked(&fifo, lines.clone(), "tail");
    let out = tail.wait_lines(expected.len(), "many lines");
    assert_lines(&out, &expected, "many lines");
    tail.terminate("tail FIFO");
}

#[test]
fn filter_fifo_writers() {
    let dir = tempdir();
    let fifo = dir.path().join("app.pipe");
    mkfifo(&fifo);
    let mut source = Source::new("fifo", 26);
    let mut filter = Proc::start(&["filter", path_str(&fifo)]);

    let line = source.line();
    write_split_token(&fifo, &line);
    let out = filter.wait_lines(1, "token split across writers");
    assert_no_secret(&out, &line.tokens, "token split across writers");
    assert_lines(
        &out,
        std::slice::from_ref(&line.masked),
        "token split across writers",
    );

    let lines = source.lines(2000);
    let mut expected = line.masked.clone();
    for l in &lines {
        expected.push_str(&l.masked);
    }
    assert_writer_not_blocked(&fifo, lines.clone(), "filter");

    // A last line without a newline ends in a token: SIGTERM must still
    // write it, masked.
    let mut gen = TokenGen::new(27);
    let last = gen.token(TokenKind::Classic);
    let mut writer = open_fifo_writer(&fifo);
    writer
        .write_all(format!("no newline {}", last.text).as_bytes())
        .unwrap();
    drop(writer);
    expected.push_str(&format!("no newline {}", last.masked));
    filter
        .out
        .wait_until(WAIT, |b| b.len() >= expected.len() - last.text.len());
    thread::sleep(Duration::from_millis(300));
    let (status, out, log) = filter.stop(Signal::Term);
    assert_eq!(
        status.code(),
        Some(0),
        "filter exit after SIGTERM; log:\n{log}"
    );
    assert_no_secret(&out, &[last], "filter after SIGTERM");
    assert_no_secret(&out, &tokens(&lines), "filter after SIGTERM");
    assert!(
        out == expected.as_bytes(),
        "filter output differs from the masked input: {} bytes, expected {}; last bytes {:?}",
        out.len(),
        expected.len(),
        String::from_utf8_lossy(&out[out.len().saturating_sub(200)..])
    );
}

/// SIGTERM right after a partial line arrived on a FIFO: the bytes cannot
/// be read again after a restart, so tail writes them before it exits.
#[test]
fn tail_fifo_sigterm_partial() {
    let dir = tempdir();
    let fifo = dir.path().join("app.pipe");
    mkfifo(&fifo);
    let mut source = Source::new("fifo", 28);
    let mut tail = Proc::tail(&[path_str(&fifo)]);
    let line = source.line();
    let mut writer = open_fifo_writer(&fifo);
    write_lines(&mut writer, std::slice::from_ref(&line));
    tail.wait_lines(1, "whole line");

    let mut gen = TokenGen::new(29);
    let last = gen.token(TokenKind::Classic);
    writer
        .write_all(format!("no newline {}", last.text).as_bytes())
        .unwrap();
    let (status, out, log) = tail.stop(Signal::Term);
    assert_eq!(status.code(), Some(0), "exit after SIGTERM; log:\n{log}");
    assert_no_secret(&out, std::slice::from_ref(&last), "partial line");
    let expected = format!("{}no newline {}", line.masked, last.masked);
    assert_eq!(
        String::from_utf8_lossy(&out),
        expected,
        "output after SIGTERM"
    );
}

/// A checkpoint path that already ends in `.tmp` is still replaced
/// atomically: concurrent reads always parse.
#[test]
fn checkpoint_tmp_name_atomic() {
    let dir = tempdir();
    let log = dir.path().join("app.log");
    let checkpoint = dir.path().join("state.tmp");
    let mut tail = Proc::tail(&[path_str(&log), "--checkpoint", path_str(&checkpoint)]);
    let reader = CheckpointReader::start(&checkpoint);
    let writer = Writer::start(&log, Source::new("app", 30), Duration::from_millis(1));
    writer.wait_count(300);
    let lines = writer.finish();
    let out = tail.wait_lines(lines.len(), "state.tmp");
    reader.finish();
    assert_lines(&out, &masked(&lines), "state.tmp");
    tail.terminate("state.tmp");
}
