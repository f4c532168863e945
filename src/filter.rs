//! `dtredact filter`: files or standard input to a file or standard output.
//!
//! Each input file is its own stream: a token never spans two files. Reads
//! go straight into the engine's buffer and output is written from it, so
//! bytes are copied once in and once out. On a pipe, a FIFO or a terminal,
//! input is polled with the idle deadline, and held-back bytes are released
//! when it passes, so that a live log line is not stuck.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags};

use crate::metrics::Telemetry;
use crate::reload::SharedRedactor;
use crate::report::Inventory;
use crate::Redactor;

/// Pipe size requested for standard input and output when they are pipes.
/// Linux lets an unprivileged process raise a pipe to 1 MiB
/// (`/proc/sys/fs/pipe-max-size`); larger pipes mean fewer context switches.
const PIPE_SIZE: usize = 1024 * 1024;

/// Options of one filter run.
#[derive(Debug, Clone)]
pub struct FilterOptions {
    /// Input files in order; empty or `-` means standard input.
    pub inputs: Vec<PathBuf>,
    /// Output file; `None` means standard output.
    pub output: Option<PathBuf>,
    /// Release held-back bytes after input has been idle this long.
    /// `None` disables it.
    pub idle_flush: Option<Duration>,
    /// Bytes per read.
    pub read_buffer: usize,
}

/// Outcome of a filter run: counts, findings and how it ended.
#[derive(Debug, Default)]
pub struct FilterReport {
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Secrets masked.
    pub findings: u64,
    /// Masked secrets by identifier, when the run has no telemetry (which
    /// keeps its own inventory).
    pub inventory: Inventory,
    /// The run stopped early on SIGINT or SIGTERM, after writing all it
    /// had read.
    pub interrupted: bool,
    /// The output was closed by the reader (broken pipe); the run stopped.
    pub output_closed: bool,
}

/// Errors of a filter run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// An input could not be opened or read. The I/O error is the
    /// source, not part of the message.
    #[error("failed to read {path}")]
    Read {
        /// Input path, or `stdin`.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The output could not be created or written. The I/O error is the
    /// source, not part of the message.
    #[error("failed to write {path}")]
    Write {
        /// Output path, or `stdout`.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("failed to install signal handlers: {0}")]
    Signals(io::Error),
}

/// Stops a run on SIGINT and SIGTERM: a flag for blocking reads and a
/// socket pair that wakes a poll.
struct StopSignal {
    flag: Arc<AtomicBool>,
    wake: std::os::unix::net::UnixStream,
}

impl StopSignal {
    fn install() -> io::Result<StopSignal> {
        let flag = Arc::new(AtomicBool::new(false));
        let (wake, notify) = std::os::unix::net::UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, Arc::clone(&flag))?;
            signal_hook::low_level::pipe::register(signal, notify.try_clone()?)?;
        }
        Ok(StopSignal { flag, wake })
    }

    fn raised(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }
}

/// Output file, with its name for error messages.
struct Sink {
    file: File,
    name: String,
}

impl Sink {
    /// Writes all of `bytes`. `Ok(false)` means the reader went away.
    fn write(&mut self, bytes: &[u8]) -> Result<bool, FilterError> {
        match self.file.write_all(bytes) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
            Err(source) => Err(FilterError::Write {
                path: self.name.clone(),
                source,
            }),
        }
    }
}

/// Runs the filter.
///
/// # Errors
///
/// Failing to open or read an input, or to write the output. Output
/// written before the error stays written.
pub fn run(
    redactor: &SharedRedactor,
    options: &FilterOptions,
    telemetry: Option<&Telemetry>,
) -> Result<FilterReport, FilterError> {
    let stop = StopSignal::install().map_err(FilterError::Signals)?;
    let mut sink = open_output(options.output.as_deref())?;
    let mut report = FilterReport::default();
    let stdin_only = [PathBuf::from("-")];
    let inputs: &[PathBuf] = if options.inputs.is_empty() {
        &stdin_only
    } else {
        &options.inputs
    };
    for path in inputs {
        let (file, name) = open_input(path)?;
        let mut out = Output {
            sink: &mut sink,
            report: &mut report,
            telemetry,
            name: &name,
        };
        let done = filter_one(redactor, options, &stop, file, &mut out)?;
        if !done || report.interrupted {
            break;
        }
    }
    Ok(report)
}

fn open_input(path: &Path) -> Result<(File, String), FilterError> {
    if path.as_os_str() == "-" {
        let fd: OwnedFd =
            io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|source| FilterError::Read {
                    path: "stdin".into(),
                    source,
                })?;
        set_pipe_size(fd.as_fd());
        return Ok((File::from(fd), "stdin".into()));
    }
    let name = path.display().to_string();
    let is_fifo = std::fs::metadata(path).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_fifo()
    });
    // A named pipe is opened for reading and writing: it then never reports
    // end of file when the app closes it, so an app restart goes unnoticed,
    // and opening does not wait for a writer. The filter runs until a
    // signal stops it.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(is_fifo)
        .open(path)
        .map_err(|source| FilterError::Read {
            path: name.clone(),
            source,
        })?;
    if is_fifo {
        set_pipe_size(file.as_fd());
    }
    Ok((file, name))
}

fn open_output(path: Option<&Path>) -> Result<Sink, FilterError> {
    match path {
        None => {
            let fd: OwnedFd = io::stdout()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|source| FilterError::Write {
                    path: "stdout".into(),
                    source,
                })?;
            set_pipe_size(fd.as_fd());
            Ok(Sink {
                file: File::from(fd),
                name: "stdout".into(),
            })
        }
        Some(path) => {
            let name = path.display().to_string();
            let file = File::create(path).map_err(|source| FilterError::Write {
                path: name.clone(),
                source,
            })?;
            Ok(Sink { file, name })
        }
    }
}

/// Enlarges a pipe; anything else, or a refusal, is left as it is.
pub(crate) fn set_pipe_size(fd: BorrowedFd<'_>) {
    let is_pipe = rustix::fs::fstat(fd)
        .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Fifo)
        .unwrap_or(false);
    if is_pipe {
        let _ = rustix::pipe::fcntl_setpipe_size(fd, PIPE_SIZE);
    }
}

/// Returns whether reads from `file` can block for a long time (pipe, FIFO,
/// socket, terminal), so that the idle deadline applies.
fn can_idle(file: &File) -> bool {
    match file.metadata() {
        Ok(meta) => !meta.file_type().is_file(),
        Err(_) => true,
    }
}

/// Filters one input into the sink. Returns `Ok(false)` when the output was
/// closed.
fn filter_one(
    shared: &SharedRedactor,
    options: &FilterOptions,
    stop: &StopSignal,
    mut file: File,
    out: &mut Output<'_>,
) -> Result<bool, FilterError> {
    let name = out.name;
    let mut current: Arc<Redactor> = shared.load_full();
    let mut stream = current.stream_with_capacity(options.read_buffer);
    // Reads from a pipe or terminal block, and a signal does not interrupt
    // them (handlers restart reads), so those inputs are polled.
    let pollable = can_idle(&file);
    let read_error = |source| FilterError::Read {
        path: name.to_string(),
        source,
    };
    // Whether the input read so far ends a line (or nothing was read).
    let mut at_line_start = true;
    loop {
        if stop.raised() {
            out.report.interrupted = true;
            break;
        }
        if pollable {
            let deadline = options.idle_flush.filter(|_| stream.held_back() > 0);
            match wait_readable(&file, stop, deadline).map_err(read_error)? {
                Wait::Readable => {}
                Wait::Idle => {
                    stream.flush_idle();
                    if let Some(t) = out.telemetry {
                        t.metrics
                            .idle_flushes
                            .with_label_values(&[t.mode().as_str()])
                            .inc();
                    }
                    if !drain(&mut stream, out)? {
                        return Ok(false);
                    }
                    continue;
                }
                Wait::Stopped => {
                    out.report.interrupted = true;
                    break;
                }
            }
        }
        // After a reload, switch to the new rules at a line end: no token
        // spans a newline, so ending the stream there changes no output.
        if at_line_start && !Arc::ptr_eq(&current, &shared.load()) {
            stream.finish_input();
            if !drain(&mut stream, out)? {
                return Ok(false);
            }
            current = shared.load_full();
            stream = current.stream_with_capacity(options.read_buffer);
            tracing::info!(input = name, "switched to the reloaded rules at a line end");
        }
        let spare = stream.spare();
        let n = match file.read(spare) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Write what was read before failing.
                stream.finish_input();
                drain(&mut stream, out)?;
                return Err(read_error(e));
            }
        };
        if n == 0 {
            break;
        }
        at_line_start = spare[n - 1] == b'\n';
        stream.commit(n);
        out.count_in(n as u64);
        if !drain(&mut stream, out)? {
            return Ok(false);
        }
    }
    stream.finish_input();
    drain(&mut stream, out)
}

/// Destination of one run's output, findings and counts.
struct Output<'a> {
    sink: &'a mut Sink,
    report: &'a mut FilterReport,
    telemetry: Option<&'a Telemetry>,
    /// Name of the current input, for findings.
    name: &'a str,
}

impl Output<'_> {
    fn count_in(&mut self, n: u64) {
        self.report.bytes_in += n;
        if let Some(t) = self.telemetry {
            t.bytes(n, 0);
        }
    }
}

enum Wait {
    Readable,
    Idle,
    Stopped,
}

/// Waits until `file` is readable, a stop signal arrives, or the idle
/// deadline, if any, passes.
fn wait_readable(file: &File, stop: &StopSignal, deadline: Option<Duration>) -> io::Result<Wait> {
    let timeout = match deadline {
        Some(d) => i32::try_from(d.as_millis()).unwrap_or(i32::MAX).max(1),
        None => -1,
    };
    loop {
        let mut fds = [
            PollFd::new(file, PollFlags::IN),
            PollFd::new(&stop.wake, PollFlags::IN),
        ];
        match poll(&mut fds, timeout) {
            Ok(0) => return Ok(Wait::Idle),
            Ok(_) => {
                if !fds[1].revents().is_empty() || stop.raised() {
                    return Ok(Wait::Stopped);
                }
                // Readable, or hung up / in error: a read reports which.
                return Ok(Wait::Readable);
            }
            Err(rustix::io::Errno::INTR) => {
                if stop.raised() {
                    return Ok(Wait::Stopped);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Writes all ready output and records findings. `Ok(false)` means the
/// output was closed.
fn drain(stream: &mut crate::Stream, out: &mut Output<'_>) -> Result<bool, FilterError> {
    let findings = stream.take_findings();
    out.report.findings += findings.len() as u64;
    match out.telemetry {
        Some(t) => t.record(&findings, out.name),
        None => {
            for finding in &findings {
                out.report.inventory.record(finding, out.name);
            }
        }
    }
    let (sink, report) = (&mut *out.sink, &mut *out.report);
    loop {
        let ready = stream.output();
        if ready.is_empty() {
            return Ok(true);
        }
        let n = ready.len();
        if !sink.write(ready)? {
            report.output_closed = true;
            return Ok(false);
        }
        stream.consume(n);
        report.bytes_out += n as u64;
        if let Some(t) = out.telemetry {
            t.bytes(0, n as u64);
        }
    }
}
