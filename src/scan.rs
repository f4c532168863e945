//! `dtredact scan`: report where secrets are, rewrite nothing.
//!
//! Each finding is one JSON line with the file, the 1-based line and byte
//! column, the byte offset, the rule, the encoding and the token
//! identifier. No secret byte is ever part of a finding.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::report::Inventory;
use crate::{Finding, Policy, Redactor};

/// Outcome of a scan.
#[derive(Debug, Default)]
pub struct ScanReport {
    /// Findings in all files.
    pub inventory: Inventory,
    /// Files that could not be read, with the error.
    pub errors: Vec<(String, io::Error)>,
    /// Bytes read.
    pub bytes_in: u64,
}

/// Scans each input (standard input for `-` or when `inputs` is empty) and
/// writes one JSON line per finding to `out`. A file that cannot be read is
/// reported in [`ScanReport::errors`] and the scan goes on.
///
/// # Errors
///
/// Only a failure to write to `out`.
pub fn run(redactor: &Redactor, inputs: &[PathBuf], out: &mut dyn Write) -> io::Result<ScanReport> {
    // Findings name the token identifier whatever the masking policy.
    let redactor = redactor.with_policy(Policy::KeepId);
    let mut report = ScanReport::default();
    let stdin_only = [PathBuf::from("-")];
    let inputs: &[PathBuf] = if inputs.is_empty() {
        &stdin_only
    } else {
        inputs
    };
    for path in inputs {
        let name = display_name(path);
        let result = if path.as_os_str() == "-" {
            scan_reader(&redactor, io::stdin().lock(), &name, out, &mut report)
        } else {
            match File::open(path) {
                Ok(file) => scan_reader(&redactor, file, &name, out, &mut report),
                Err(e) => Err(ScanError::Read(e)),
            }
        };
        match result {
            Ok(()) => {}
            Err(ScanError::Read(e)) => report.errors.push((name, e)),
            Err(ScanError::Write(e)) => return Err(e),
        }
    }
    Ok(report)
}

enum ScanError {
    Read(io::Error),
    Write(io::Error),
}

/// Tracks line numbers over the stream, so that findings, which come with
/// byte offsets, get a line and column once the bytes before them have
/// passed.
struct LineCursor {
    /// Stream offset of the next byte to count.
    offset: u64,
    /// 1-based number of the current line.
    line: u64,
    /// Stream offset where the current line starts.
    line_start: u64,
    /// Findings waiting for their line, sorted by offset.
    waiting: VecDeque<Finding>,
}

impl LineCursor {
    fn new() -> LineCursor {
        LineCursor {
            offset: 0,
            line: 1,
            line_start: 0,
            waiting: VecDeque::new(),
        }
    }

    fn add(&mut self, mut findings: Vec<Finding>) {
        if findings.is_empty() {
            return;
        }
        self.waiting.extend(findings.drain(..));
        self.waiting.make_contiguous().sort_by_key(|f| f.offset);
    }

    /// Counts `bytes` (the next bytes of the stream) and emits every finding
    /// that starts within them.
    fn advance(
        &mut self,
        bytes: &[u8],
        mut emit: impl FnMut(&Finding, u64, u64) -> io::Result<()>,
    ) -> io::Result<()> {
        let end = self.offset + bytes.len() as u64;
        for nl in memchr::memchr_iter(b'\n', bytes) {
            let at = self.offset + nl as u64;
            self.emit_before(at + 1, &mut emit)?;
            self.line += 1;
            self.line_start = at + 1;
        }
        self.emit_before(end, &mut emit)?;
        self.offset = end;
        Ok(())
    }

    fn emit_before(
        &mut self,
        limit: u64,
        emit: &mut impl FnMut(&Finding, u64, u64) -> io::Result<()>,
    ) -> io::Result<()> {
        while self.waiting.front().is_some_and(|f| f.offset < limit) {
            let f = self.waiting.pop_front().expect("front exists");
            let column = f.offset - self.line_start + 1;
            emit(&f, self.line, column)?;
        }
        Ok(())
    }
}

fn scan_reader(
    redactor: &Redactor,
    mut reader: impl Read,
    name: &str,
    out: &mut dyn Write,
    report: &mut ScanReport,
) -> Result<(), ScanError> {
    let mut stream = redactor.stream();
    let mut cursor = LineCursor::new();
    let mut emit = |f: &Finding, line: u64, column: u64| -> io::Result<()> {
        let record = json!({
            "file": name,
            "line": line,
            "column": column,
            "offset": f.offset,
            "rule": &*f.rule,
            "encoding": f.encoding.as_str(),
            "token_id": f.token_id,
        });
        serde_json::to_writer(&mut *out, &record)?;
        out.write_all(b"\n")
    };
    let mut finished = false;
    loop {
        if !finished {
            let n = match reader.read(stream.spare()) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ScanError::Read(e)),
            };
            if n == 0 {
                stream.finish_input();
                finished = true;
            } else {
                stream.commit(n);
            }
        }
        let findings = stream.take_findings();
        for f in &findings {
            report.inventory.record(f, name);
        }
        cursor.add(findings);
        loop {
            let ready = stream.output();
            if ready.is_empty() {
                break;
            }
            let n = ready.len();
            cursor.advance(ready, &mut emit).map_err(ScanError::Write)?;
            stream.consume(n);
        }
        if finished {
            break;
        }
    }
    report.bytes_in += stream.bytes_in();
    Ok(())
}

/// Returns the path as scan reports it.
pub fn display_name(path: &Path) -> String {
    if path.as_os_str() == "-" {
        "stdin".to_string()
    } else {
        path.display().to_string()
    }
}
