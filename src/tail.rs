//! `dtredact tail`: follow log files and named pipes like `tail -F`, and
//! write a redacted copy to one output.
//!
//! Each file has its own engine stream and is followed by its open file
//! descriptor, so the rest of a file that was renamed or deleted is still
//! read before it is closed. A path that now names another file (rename
//! rotation, delete and re-create) starts a new stream from that file's
//! first byte; a file that shrank (copytruncate) is read again from byte 0.
//! Output is written in whole lines per file, so lines of different files
//! never interleave; a partial line goes out only after the idle deadline.
//!
//! With a checkpoint file, the position after the last whole line written
//! is recorded per file (device, inode, offset and a fingerprint of the
//! file's first bytes), atomically, after each write. After a restart each
//! file resumes there: no line is lost or written twice. A partial line
//! written by an idle flush is written again after a restart, because
//! resuming in the middle of a line could start in the middle of a token.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::metrics::Telemetry;
use crate::reload::SharedRedactor;
use crate::Stream;

/// Bytes at the start of a file whose hash identifies it across restarts,
/// together with its device and inode (inodes are reused after deletion).
const HEAD_LEN: usize = 256;

/// How long a rotated or deleted file must stay at its end before it is
/// closed: after a rename, an app keeps writing to the old file until it
/// reopens its log, which takes up to a few seconds after logrotate's
/// signal.
const ROTATED_QUIET: Duration = Duration::from_secs(5);

/// Start position in a file that has no checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The first byte.
    Beginning,
    /// The end at start-up; files that appear later are read whole.
    End,
}

/// Options of one tail run.
#[derive(Debug, Clone)]
pub struct TailOptions {
    /// Paths, globs or named pipes to follow.
    pub patterns: Vec<String>,
    /// Output file; `None` means standard output.
    pub output: Option<PathBuf>,
    /// Checkpoint file.
    pub checkpoint: Option<PathBuf>,
    /// Start of files without a checkpoint.
    pub from: StartFrom,
    /// How often paths are checked when no file event arrives.
    pub poll_interval: Duration,
    /// Pause after which a file's held-back bytes and partial line go out.
    pub idle_flush: Option<Duration>,
    /// Bytes per read.
    pub read_buffer: usize,
}

/// Errors that stop a tail run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TailError {
    /// The output could not be written.
    #[error("failed to write {path}")]
    Write {
        /// Output path or `stdout`.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The checkpoint could not be written.
    #[error("failed to write the checkpoint {path}")]
    Checkpoint {
        /// Checkpoint path.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// A glob pattern is invalid.
    #[error("invalid path pattern {pattern:?}: {message}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// What is wrong.
        message: String,
    },
    /// The checkpoint needs output whose length equals the input's.
    #[error("--checkpoint needs a length-keeping policy (keep-id, full or fingerprint), not placeholder")]
    CheckpointPolicy,
}

/// One followed file.
struct Tracked {
    path: PathBuf,
    file: File,
    dev: u64,
    ino: u64,
    fifo: bool,
    /// File offset of the next byte to read.
    read_offset: u64,
    /// File offset of `stream`'s first input byte.
    stream_start: u64,
    stream: Stream,
    /// Output of this file not written yet (a partial line).
    pending: Vec<u8>,
    /// File offset just after the last newline written; what the
    /// checkpoint records.
    committed: u64,
    /// Output bytes written for the current stream.
    written: u64,
    head: Option<(u64, usize)>,
    last_data: Instant,
    /// The path names another file now (or none): read to the end, then
    /// close.
    detached: bool,
}

/// Checkpoint record of one file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Mark {
    path: PathBuf,
    dev: u64,
    ino: u64,
    offset: u64,
    /// Hash of the file's first `head_len` bytes, which grows with the
    /// file up to [`HEAD_LEN`].
    head: Option<u64>,
    #[serde(default)]
    head_len: usize,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Checkpoint {
    files: Vec<Mark>,
}

/// Counts of a tail run.
#[derive(Debug, Default)]
pub struct TailReport {
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
}

/// Follows the files until `stop` is set, then writes every whole line
/// read and the checkpoint, and returns.
///
/// # Errors
///
/// Writing the output or the checkpoint fails, or a pattern is invalid.
/// Unreadable files are logged and retried.
pub fn run(
    shared: &SharedRedactor,
    options: &TailOptions,
    telemetry: Option<&Telemetry>,
    stop: &AtomicBool,
) -> Result<TailReport, TailError> {
    if options.checkpoint.is_some() && !shared.load().policy().keeps_length() {
        return Err(TailError::CheckpointPolicy);
    }
    for pattern in &options.patterns {
        glob::Pattern::new(pattern).map_err(|e| TailError::Pattern {
            pattern: pattern.clone(),
            message: e.to_string(),
        })?;
    }
    let mut tail = Tail {
        shared: Arc::clone(shared),
        options: options.clone(),
        telemetry: telemetry.cloned(),
        files: Vec::new(),
        marks: load_checkpoint(options.checkpoint.as_deref()),
        writer: Writer {
            out: open_output(options.output.as_deref())?,
            name: options
                .output
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "stdout".into()),
            report: TailReport::default(),
            telemetry: telemetry.cloned(),
        },
        first_scan: true,
        saved: None,
        warned: HashMap::new(),
    };
    let (wake_tx, wake_rx) = mpsc::channel::<()>();
    let _watcher = watch_dirs(&options.patterns, wake_tx);
    loop {
        tail.scan_paths()?;
        tail.first_scan = false;
        let got_data = tail.read_all()?;
        tail.flush_idle()?;
        tail.save_checkpoint()?;
        if let Some(t) = &tail.telemetry {
            t.metrics.files_followed.set(tail.files.len() as i64);
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if !got_data {
            // Sleep until a file event or the poll interval, whichever
            // comes first; drain the extra events.
            let _ = wake_rx.recv_timeout(options.poll_interval);
            while wake_rx.try_recv().is_ok() {}
        }
    }
    tail.shutdown()?;
    Ok(tail.writer.report)
}

struct Tail {
    shared: SharedRedactor,
    options: TailOptions,
    telemetry: Option<Telemetry>,
    files: Vec<Tracked>,
    marks: Vec<Mark>,
    writer: Writer,
    first_scan: bool,
    saved: Option<Vec<Mark>>,
    warned: HashMap<PathBuf, String>,
}

impl Tail {
    /// Picks up new paths, and notices rotation, truncation and deletion.
    fn scan_paths(&mut self) -> Result<(), TailError> {
        let mut seen: Vec<PathBuf> = Vec::new();
        for pattern in &self.options.patterns {
            match glob::glob(pattern) {
                Ok(paths) => seen.extend(paths.flatten()),
                Err(_) => seen.push(PathBuf::from(pattern)),
            }
        }
        seen.sort();
        seen.dedup();
        // Files whose path is gone or names another file now.
        for t in &mut self.files {
            if t.detached || t.fifo {
                continue;
            }
            match std::fs::metadata(&t.path) {
                Ok(meta) if meta.dev() == t.dev && meta.ino() == t.ino => {
                    if meta.len() < t.read_offset {
                        tracing::info!(path = %t.path.display(), "file was truncated; reading it again from the start");
                        // What was read before the truncation goes out
                        // first.
                        t.stream.finish_input();
                        self.writer.collect(t, true)?;
                        truncated(t, self.options.read_buffer);
                    }
                }
                _ => {
                    tracing::info!(path = %t.path.display(), "file was rotated or deleted; reading the rest of it");
                    t.detached = true;
                }
            }
        }
        for path in seen {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !(meta.is_file() || meta.file_type().is_fifo()) {
                continue;
            }
            // A rotated file that a pattern matches under its new name (such
            // as `app.log*` after `app.log` became `app.log.1`) is the same
            // file: follow it on from where it is, instead of opening it
            // again from its start.
            let same = |t: &&mut Tracked| t.dev == meta.dev() && t.ino == meta.ino();
            if let Some(t) = self.files.iter_mut().find(same) {
                if t.detached {
                    tracing::info!(from = %t.path.display(), to = %path.display(), "following a rotated file under its new name");
                    t.path = path;
                    t.detached = false;
                }
                continue;
            }
            match self.open(&path, &meta) {
                Ok(tracked) => {
                    self.warned.remove(&path);
                    self.files.push(tracked);
                }
                Err(error) => {
                    let message = error.to_string();
                    if self.warned.get(&path) != Some(&message) {
                        tracing::error!(path = %path.display(), %error, "failed to open a file to follow; retrying");
                        self.warned.insert(path.clone(), message);
                    }
                }
            }
        }
        // A checkpointed file that was rotated while dtredact was down:
        // finish it if it is still in its directory under another name.
        if self.first_scan {
            let marks = std::mem::take(&mut self.marks);
            for mark in &marks {
                if self
                    .files
                    .iter()
                    .any(|t| t.dev == mark.dev && t.ino == mark.ino)
                {
                    continue;
                }
                if let Some(tracked) = self.find_rotated(mark) {
                    self.files.push(tracked);
                }
            }
            self.marks = marks;
        }
        Ok(())
    }

    fn open(&self, path: &Path, meta: &std::fs::Metadata) -> io::Result<Tracked> {
        let fifo = meta.file_type().is_fifo();
        let mut file = if fifo {
            // Read and write: the pipe then never reports end of file
            // when the writer closes, so an app restart is invisible, and
            // opening does not wait for a writer.
            OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                .open(path)?
        } else {
            File::open(path)?
        };
        let mark = self.marks.iter().find(|m| {
            m.dev == meta.dev()
                && m.ino == meta.ino()
                && !fifo
                && head_hash(&file, m.head_len).map(|h| h.0) == m.head
        });
        let head = if fifo {
            None
        } else {
            head_hash(&file, HEAD_LEN)
        };
        let start = match (mark, fifo) {
            (_, true) => 0,
            (Some(m), false) if m.offset <= meta.len() => m.offset,
            (Some(_), false) => 0,
            (None, false) if self.first_scan && self.options.from == StartFrom::End => meta.len(),
            (None, false) => 0,
        };
        if !fifo {
            file.seek(SeekFrom::Start(start))?;
        }
        tracing::info!(path = %path.display(), offset = start, "following file");
        Ok(self.tracked(path, file, meta, start, head, fifo))
    }

    fn tracked(
        &self,
        path: &Path,
        file: File,
        meta: &std::fs::Metadata,
        start: u64,
        head: Option<(u64, usize)>,
        fifo: bool,
    ) -> Tracked {
        Tracked {
            path: path.to_path_buf(),
            file,
            dev: meta.dev(),
            ino: meta.ino(),
            fifo,
            read_offset: start,
            stream_start: start,
            stream: self
                .shared
                .load()
                .stream_with_capacity(self.options.read_buffer),
            pending: Vec::new(),
            committed: start,
            written: 0,
            head,
            last_data: Instant::now(),
            detached: false,
        }
    }

    /// Looks in the checkpointed file's directory for the same file under
    /// another name.
    fn find_rotated(&self, mark: &Mark) -> Option<Tracked> {
        let dir = mark.path.parent()?;
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.dev() != mark.dev || meta.ino() != mark.ino || !meta.is_file() {
                continue;
            }
            let mut file = File::open(&path).ok()?;
            if head_hash(&file, mark.head_len).map(|h| h.0) != mark.head || mark.offset > meta.len()
            {
                return None;
            }
            file.seek(SeekFrom::Start(mark.offset)).ok()?;
            tracing::info!(path = %path.display(), "finishing a file rotated while dtredact was stopped");
            let head = head_hash(&file, HEAD_LEN);
            let mut tracked = self.tracked(&path, file, &meta, mark.offset, head, false);
            tracked.detached = true;
            return Some(tracked);
        }
        None
    }

    /// Reads what every file has, writes whole lines, and closes detached
    /// files that reached their end. Returns whether any data came in.
    fn read_all(&mut self) -> Result<bool, TailError> {
        let mut got = false;
        let mut i = 0;
        while i < self.files.len() {
            let (data, eof) = self.read_file(i)?;
            got |= data;
            let t = &self.files[i];
            if eof && t.detached && t.last_data.elapsed() >= ROTATED_QUIET {
                let mut t = self.files.remove(i);
                t.stream.finish_input();
                self.writer.collect(&mut t, true)?;
                tracing::info!(path = %t.path.display(), "finished a rotated file");
                continue;
            }
            i += 1;
        }
        Ok(got)
    }

    /// Reads file `i` until it has no more data now. Returns whether data
    /// came in and whether the file is at its end.
    fn read_file(&mut self, i: usize) -> Result<(bool, bool), TailError> {
        let mut got = false;
        loop {
            let t = &mut self.files[i];
            let result = t.file.read(t.stream.spare());
            match result {
                Ok(0) => return Ok((got, true)),
                Ok(n) => {
                    got = true;
                    t.read_offset += n as u64;
                    t.last_data = Instant::now();
                    t.stream.commit(n);
                    self.writer.report.bytes_in += n as u64;
                    if let Some(tel) = &self.telemetry {
                        tel.bytes(n as u64, 0);
                    }
                    self.writer.collect(&mut self.files[i], false)?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((got, false)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    tracing::error!(path = %t.path.display(), %error, "failed to read a followed file");
                    return Ok((got, true));
                }
            }
        }
    }

    /// Releases held-back bytes and partial lines of files that have been
    /// quiet for the idle deadline.
    fn flush_idle(&mut self) -> Result<(), TailError> {
        let Some(idle) = self.options.idle_flush else {
            return Ok(());
        };
        for i in 0..self.files.len() {
            let quiet = self.files[i].last_data.elapsed() >= idle;
            let holding = self.files[i].stream.held_back() > 0 || !self.files[i].pending.is_empty();
            if !quiet || !holding {
                continue;
            }
            self.files[i].stream.flush_idle();
            if let Some(tel) = &self.telemetry {
                tel.metrics.idle_flushes.with_label_values(&["tail"]).inc();
            }
            self.writer.collect(&mut self.files[i], true)?;
        }
        Ok(())
    }

    /// Writes the checkpoint if it changed.
    fn save_checkpoint(&mut self) -> Result<(), TailError> {
        let Some(path) = self.options.checkpoint.clone() else {
            return Ok(());
        };
        for t in &mut self.files {
            // The head grows with a young file until it covers HEAD_LEN.
            let short = t.head.map_or(true, |(_, len)| len < HEAD_LEN);
            if !t.fifo && short && t.read_offset > t.head.map_or(0, |h| h.1 as u64) {
                t.head = head_hash(&t.file, HEAD_LEN);
            }
        }
        let mut files: Vec<Mark> = self
            .files
            .iter()
            .filter(|t| !t.fifo)
            .map(|t| Mark {
                path: t.path.clone(),
                dev: t.dev,
                ino: t.ino,
                offset: t.committed,
                head: t.head.map(|h| h.0),
                head_len: t.head.map_or(0, |h| h.1),
            })
            .collect();
        // Keep marks of files not open yet (not matched so far), so that a
        // restart with a narrower glob does not forget them.
        for m in &self.marks {
            if !files.iter().any(|f| f.dev == m.dev && f.ino == m.ino) && self.first_scan {
                files.push(m.clone());
            }
        }
        if self.saved.as_ref() == Some(&files) {
            return Ok(());
        }
        write_checkpoint(
            &path,
            &Checkpoint {
                files: files.clone(),
            },
        )
        .map_err(|source| TailError::Checkpoint {
            path: path.display().to_string(),
            source,
        })?;
        self.saved = Some(files);
        Ok(())
    }

    /// Writes every whole line read, and the checkpoint.
    fn shutdown(&mut self) -> Result<(), TailError> {
        for i in 0..self.files.len() {
            // Decide every candidate. With a checkpoint, the partial line
            // after the last newline of a regular file stays unwritten and
            // is read again after a restart. Bytes read from a FIFO, or
            // from any file without a checkpoint, are never read again, so
            // all of them are written.
            let all = self.files[i].fifo || self.options.checkpoint.is_none();
            self.files[i].stream.finish_input();
            self.writer.collect(&mut self.files[i], all)?;
        }
        self.save_checkpoint()?;
        tracing::info!("tail stopped");
        Ok(())
    }
}

/// The shared output, with its counts.
struct Writer {
    out: File,
    name: String,
    report: TailReport,
    telemetry: Option<Telemetry>,
}

impl Writer {
    /// Moves the stream's output into the file's pending bytes and writes
    /// the whole lines (all of it when `all`).
    fn collect(&mut self, t: &mut Tracked, all: bool) -> Result<(), TailError> {
        let findings = t.stream.take_findings();
        if let Some(tel) = &self.telemetry {
            tel.record(&findings, &t.path.display().to_string());
        }
        loop {
            let ready = t.stream.output();
            if ready.is_empty() {
                break;
            }
            let n = ready.len();
            t.pending.extend_from_slice(ready);
            t.stream.consume(n);
        }
        let cut = if all {
            t.pending.len()
        } else {
            match memchr::memrchr(b'\n', &t.pending) {
                Some(i) => i + 1,
                None => return Ok(()),
            }
        };
        if cut == 0 {
            return Ok(());
        }
        write_out(&mut self.out, &self.name, &t.pending[..cut])?;
        let lines = memchr::memchr_iter(b'\n', &t.pending[..cut]).count();
        if let Some(tel) = &self.telemetry {
            tel.bytes(0, cut as u64);
            tel.metrics.tail_lines.inc_by(lines as u64);
        }
        self.report.bytes_out += cut as u64;
        // Output has the input's length, so output offsets are input
        // offsets within the stream.
        if let Some(nl) = memchr::memrchr(b'\n', &t.pending[..cut]) {
            t.committed = t.stream_start + t.written + nl as u64 + 1;
        }
        t.written += cut as u64;
        t.pending.drain(..cut);
        Ok(())
    }
}

/// Restarts a truncated file from byte 0 with a fresh stream.
fn truncated(t: &mut Tracked, read_buffer: usize) {
    let _ = t.file.seek(SeekFrom::Start(0));
    t.read_offset = 0;
    t.stream_start = 0;
    t.committed = 0;
    t.written = 0;
    t.pending.clear();
    t.stream = t.stream.redactor().stream_with_capacity(read_buffer);
    t.head = head_hash(&t.file, HEAD_LEN);
}

/// Hashes the first `len` bytes of the file (at most [`HEAD_LEN`]), or
/// fewer if the file is shorter. Returns the hash and the length hashed,
/// or `None` for an empty file.
fn head_hash(file: &File, len: usize) -> Option<(u64, usize)> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; HEAD_LEN];
    let want = len.min(HEAD_LEN);
    let mut n = 0;
    while n < want {
        match file.read_at(&mut buf[n..want], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => break,
        }
    }
    if n == 0 {
        return None;
    }
    // FNV-1a: stable across versions and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in &buf[..n] {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    Some((h, n))
}

fn load_checkpoint(path: Option<&Path>) -> Vec<Mark> {
    let Some(path) = path else {
        return Vec::new();
    };
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice::<Checkpoint>(&bytes) {
            Ok(c) => c.files,
            Err(error) => {
                tracing::error!(path = %path.display(), %error, "ignoring an unreadable checkpoint; files start per --from");
                Vec::new()
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(error) => {
            tracing::error!(path = %path.display(), %error, "ignoring an unreadable checkpoint; files start per --from");
            Vec::new()
        }
    }
}

/// Writes the checkpoint to a temporary file beside it, syncs it, and
/// renames it into place, so a crash leaves the old or the new one.
fn write_checkpoint(path: &Path, checkpoint: &Checkpoint) -> io::Result<()> {
    // Appended rather than swapped for the extension: a checkpoint named
    // `state.tmp` would otherwise be truncated in place.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = File::create(&tmp)?;
    serde_json::to_writer(&mut file, checkpoint)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn open_output(path: Option<&Path>) -> Result<File, TailError> {
    let result = match path {
        None => io::stdout().as_fd().try_clone_to_owned().map(File::from),
        Some(path) => OpenOptions::new().create(true).append(true).open(path),
    };
    result.map_err(|source| TailError::Write {
        path: path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "stdout".into()),
        source,
    })
}

fn write_out(out: &mut File, name: &str, bytes: &[u8]) -> Result<(), TailError> {
    out.write_all(bytes).map_err(|source| TailError::Write {
        path: name.to_string(),
        source,
    })
}

/// Watches the directories of the patterns with inotify; events only wake
/// the loop early, and polling finds changes where inotify does not work.
fn watch_dirs(patterns: &[String], wake: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let mut watcher = notify::recommended_watcher(move |_event| {
        let _ = wake.send(());
    })
    .ok()?;
    for pattern in patterns {
        let dir = glob_dir(pattern);
        if let Err(error) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
            tracing::debug!(dir = %dir.display(), %error, "no file events for this directory; polling");
        }
    }
    Some(watcher)
}

/// Returns the longest leading directory of a pattern without glob characters.
fn glob_dir(pattern: &str) -> PathBuf {
    let path = Path::new(pattern);
    let mut dir = PathBuf::new();
    for part in path.components() {
        let s = part.as_os_str().to_string_lossy();
        if s.contains(['*', '?', '[']) {
            break;
        }
        dir.push(part);
    }
    if dir == path {
        dir.pop();
    }
    if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    }
}
