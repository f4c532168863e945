//! Per-stream state of the engine.

use std::ops::Range;

use super::policy::{self, MASK};
use super::{Finding, Redactor};
use crate::detect::{Check, Searcher, LOOKBEHIND};

/// Default bytes of input a stream takes per read.
pub const DEFAULT_CAPACITY: usize = 256 * 1024;

/// One byte stream being redacted.
///
/// Input goes in with [`Stream::push`] (or [`Stream::spare`] and
/// [`Stream::commit`] to read straight into the stream's buffer); output
/// comes out with [`Stream::output`] and [`Stream::consume`]. The caller
/// calls [`Stream::flush_idle`] when input has paused and
/// [`Stream::finish`] at the end of the stream.
///
/// # Chunking
///
/// Every candidate is decided from the bytes of the stream alone: a check
/// that runs out of bytes waits for more instead of guessing, so output is
/// the same whichever way the input is cut. The one exception is
/// [`Stream::flush_idle`], which trades that for latency (see there).
///
/// # Memory usage
///
/// The buffer contains one read of input plus what is held back: bytes that
/// an undecided candidate may still need (at most the rules' window, a few
/// hundred bytes for the built-in rules) and up to [`LOOKBEHIND`] bytes
/// before them. Output not yet consumed stays in the buffer too, so a
/// caller that consumes output after each call keeps the buffer at its
/// initial size, whatever the line length.
#[derive(Debug)]
pub struct Stream {
    redactor: Redactor,
    /// Input bytes; `buf[..filled]` is valid and `buf[filled..]` is spare.
    /// The buffer is initialised once and reused, so reads go straight
    /// into it.
    buf: Vec<u8>,
    filled: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// Input bytes taken per read.
    capacity: usize,
    /// Scan position of each searcher: every candidate that starts before
    /// it has been decided.
    scans: Vec<(Searcher, u64)>,
    /// Output handed out so far ends here (stream offset).
    ready_start: u64,
    /// Bytes in `[ready_start, ready_end)` are final and masked in place.
    /// Everything before `ready_end` has been turned into output.
    ready_end: u64,
    /// Output copied out of the buffer: the placeholder policy's output,
    /// and what an idle flush releases. Read before the in-place region.
    out: Vec<u8>,
    out_pos: usize,
    /// Decided replacements not yet applied, sorted by start. Under a
    /// length-keeping policy each holds only bytes that change.
    pending: Vec<Replacement>,
    /// Under the placeholder policy: input up to here is covered by a
    /// placeholder already written.
    skip_until: u64,
    findings: Vec<Finding>,
    finished: bool,
    bytes_in: u64,
    bytes_out: u64,
}

/// Bytes that replace `start..end` of the stream.
#[derive(Debug, Clone)]
struct Replacement {
    start: u64,
    end: u64,
    bytes: Vec<u8>,
}

impl Stream {
    pub(super) fn new(redactor: Redactor, capacity: usize) -> Stream {
        let capacity = capacity.max(4096);
        let scans = redactor.rules().searchers().map(|s| (s, 0)).collect();
        let size = capacity + redactor.rules().window() + LOOKBEHIND + 4096;
        Stream {
            redactor,
            buf: vec![0; size],
            filled: 0,
            base: 0,
            capacity,
            scans,
            ready_start: 0,
            ready_end: 0,
            out: Vec::new(),
            out_pos: 0,
            pending: Vec::new(),
            skip_until: 0,
            findings: Vec::new(),
            finished: false,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// Makes the stream new again for another input, keeping its buffers,
    /// so that a caller redacting many small inputs allocates once.
    /// Everything after a reset is as on a new stream of the same redactor
    /// and capacity: only `buf[..filled]` is ever read, so the old bytes
    /// left in the buffer are never seen again.
    pub fn reset(&mut self) {
        self.filled = 0;
        self.base = 0;
        for scan in &mut self.scans {
            scan.1 = 0;
        }
        self.ready_start = 0;
        self.ready_end = 0;
        self.out.clear();
        self.out_pos = 0;
        self.pending.clear();
        self.skip_until = 0;
        self.findings.clear();
        self.finished = false;
        self.bytes_in = 0;
        self.bytes_out = 0;
    }

    /// Resets the stream and redacts `input` as a whole stream of its own.
    ///
    /// Returns false, and appends nothing, when no searcher finds a
    /// candidate in `input`: its output is `input` itself. Otherwise
    /// appends the whole output to `out` and returns true; the findings
    /// are read with [`Stream::findings`] or [`Stream::take_findings`].
    ///
    /// The bytes before the first candidate are neither copied into the
    /// buffer nor scanned a second time: the stream starts [`LOOKBEHIND`]
    /// bytes before the candidate, as if it had taken the bytes before in
    /// an earlier chunk. Regex rules see the whole input, because a regex
    /// may be anchored where its haystack starts.
    pub fn redact_whole(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        self.reset();
        let rules = self.redactor.rules();
        let first = rules
            .searchers()
            .filter_map(|s| rules.next_candidate(s, input, 0))
            .map(|c| c.pos)
            .min();
        let Some(first) = first else {
            return false;
        };

        let skip = if rules.has_regexes() {
            0
        } else {
            first.saturating_sub(LOOKBEHIND)
        };
        out.reserve(input.len());
        out.extend_from_slice(&input[..skip]);

        let at = skip as u64;
        self.base = at;
        for scan in &mut self.scans {
            scan.1 = at;
        }
        self.ready_start = at;
        self.ready_end = at;
        self.skip_until = at;
        self.bytes_in = at;
        self.bytes_out = at;

        self.push(&input[skip..], out);
        self.finish(out);
        true
    }

    /// Returns the redactor this stream uses.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Input bytes taken so far.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }

    /// Output bytes consumed so far.
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out
    }

    /// Removes and returns the findings made so far, in the order they
    /// were decided.
    pub fn take_findings(&mut self) -> Vec<Finding> {
        std::mem::take(&mut self.findings)
    }

    /// Returns the findings made so far without removing them, so that a
    /// stream reset after each input keeps one findings list.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// Input bytes taken but not yet turned into output: what an idle
    /// flush would release.
    pub fn held_back(&self) -> u64 {
        self.end() - self.ready_end
    }

    /// Returns whether findings are waiting in [`Stream::take_findings`].
    pub fn has_findings(&self) -> bool {
        !self.findings.is_empty()
    }

    /// Returns spare buffer space for at most one read of input. Write
    /// into it and call [`Stream::commit`] with the number of bytes
    /// written.
    ///
    /// # Panics
    ///
    /// After [`Stream::finish`].
    pub fn spare(&mut self) -> &mut [u8] {
        assert!(!self.finished, "input after the end of the stream");
        self.compact();
        let end = (self.filled + self.capacity).min(self.buf.len());
        &mut self.buf[self.filled..end]
    }

    /// Takes `n` bytes written into [`Stream::spare`] and redacts what can
    /// be decided.
    pub fn commit(&mut self, n: usize) {
        assert!(
            self.filled + n <= self.buf.len(),
            "commit beyond the spare space"
        );
        self.filled += n;
        self.bytes_in += n as u64;
        self.process(false);
    }

    /// Takes input and appends all output that is ready to `out`.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            let spare = self.spare();
            let n = spare.len().min(input.len());
            spare[..n].copy_from_slice(&input[..n]);
            self.commit(n);
            input = &input[n..];
            self.drain_into(out);
        }
    }

    /// Releases held-back bytes because input has paused, and appends all
    /// output to `out`.
    pub fn flush_idle_into(&mut self, out: &mut Vec<u8>) {
        self.flush_idle();
        self.drain_into(out);
    }

    /// Ends the stream: decides every candidate with the end of input as
    /// their right boundary, and appends the rest of the output to `out`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.finish_input();
        self.drain_into(out);
    }

    /// Marks the end of input and decides everything; read what remains
    /// with [`Stream::output`].
    pub fn finish_input(&mut self) {
        if !self.finished {
            self.process(true);
            self.finished = true;
        }
    }

    /// Output that is ready. Call [`Stream::consume`] after writing it.
    pub fn output(&self) -> &[u8] {
        if self.out_pos < self.out.len() {
            return &self.out[self.out_pos..];
        }
        let start = (self.ready_start - self.base) as usize;
        let end = (self.ready_end - self.base) as usize;
        &self.buf[start..end]
    }

    /// Marks `n` bytes of [`Stream::output`] as written.
    pub fn consume(&mut self, n: usize) {
        self.bytes_out += n as u64;
        if self.out_pos < self.out.len() {
            self.out_pos += n;
            assert!(
                self.out_pos <= self.out.len(),
                "consumed more than the output"
            );
            if self.out_pos == self.out.len() {
                self.out.clear();
                self.out_pos = 0;
            }
        } else {
            self.ready_start += n as u64;
            assert!(
                self.ready_start <= self.ready_end,
                "consumed more than the output"
            );
        }
    }

    fn drain_into(&mut self, out: &mut Vec<u8>) {
        loop {
            let ready = self.output();
            if ready.is_empty() {
                break;
            }
            out.extend_from_slice(ready);
            let n = ready.len();
            self.consume(n);
        }
    }

    /// Stream offset where the buffer's valid bytes end.
    fn end(&self) -> u64 {
        self.base + self.filled as u64
    }

    /// Drops bytes that are neither unconsumed output nor context that a
    /// check may still read.
    fn compact(&mut self) {
        let min_scan = self.scans.iter().map(|s| s.1).min().unwrap_or(self.end());
        let keep = self
            .ready_start
            .min(min_scan.saturating_sub(LOOKBEHIND as u64))
            .max(self.base);
        let drop = (keep - self.base) as usize;
        if drop > 0 && (self.filled + self.capacity > self.buf.len() || drop >= self.filled / 2) {
            self.buf.copy_within(drop..self.filled, 0);
            self.filled -= drop;
            self.base = keep;
        }
        let need = self.filled + self.capacity;
        if need > self.buf.len() {
            // Unconsumed output or a long hold-back: grow rather than lose
            // bytes.
            self.buf.resize(need, 0);
        }
    }

    /// Decides candidates, records findings and masks, and moves the
    /// output frontier.
    fn process(&mut self, eof: bool) {
        // Borrowed, not cloned: a clone of the shared rules is an atomic
        // update of a count that every thread redacting with them writes.
        let rules = self.redactor.rules();
        let hay_end = self.filled;
        for k in 0..self.scans.len() {
            let (searcher, scan) = self.scans[k];
            let mut from = (scan.max(self.base) - self.base) as usize;
            loop {
                let hay = &self.buf[..hay_end];
                let Some(c) = rules.next_candidate(searcher, hay, from) else {
                    if !eof {
                        let tail = rules.pending_tail(searcher).saturating_sub(1);
                        from = from.max(hay_end.saturating_sub(tail));
                    } else {
                        from = hay_end;
                    }
                    break;
                };
                match rules.check(searcher, hay, c, eof) {
                    Check::Found(hit) => {
                        record(
                            &self.redactor,
                            &hay[..hay_end],
                            self.base,
                            &hit,
                            &mut self.findings,
                            &mut self.pending,
                        );
                        // Built-in candidates may overlap (a token glued to
                        // the end of another is found at its own `dt0`).
                        // User matches do not, so that one secret gives one
                        // finding.
                        from = match searcher {
                            Searcher::Builtin => c.pos + 1,
                            Searcher::Literals | Searcher::Regex(_) => hit.span.end.max(c.pos + 1),
                        };
                    }
                    Check::NotFound => from = c.pos + 1,
                    Check::NeedMore => {
                        // The searcher reports the leftmost match that is
                        // complete, so a match that starts earlier but ends
                        // past the haystack (a longer literal, a longer
                        // regex alternative) was not reported yet: rescan
                        // from where such a match can start.
                        let tail = rules.pending_tail(searcher).saturating_sub(1);
                        from = c.pos.min(from.max(hay_end.saturating_sub(tail)));
                        break;
                    }
                }
            }
            self.scans[k].1 = self.base + from as u64;
        }

        let frontier = if eof {
            self.end()
        } else {
            let min_scan = self.scans.iter().map(|s| s.1).min().unwrap_or(self.end());
            min_scan.saturating_sub(LOOKBEHIND as u64)
        };
        if frontier > self.ready_end {
            self.emit(frontier);
        }
    }

    /// Turns input up to `frontier` into output.
    fn emit(&mut self, frontier: u64) {
        if self.redactor.policy().keeps_length() {
            // Bytes copied out by an idle flush end at `ready_end`; the new
            // in-place region follows them.
            self.apply_in_place(self.ready_end, frontier);
            self.ready_end = frontier;
        } else {
            self.copy_with_placeholders(frontier);
        }
    }

    /// Writes pending replacements into `[from, to)` of the buffer and drops
    /// those that end by `to`.
    fn apply_in_place(&mut self, from: u64, to: u64) {
        for r in &self.pending {
            if r.start >= to {
                break;
            }
            let lo = r.start.max(from);
            let hi = r.end.min(to);
            if lo >= hi {
                continue;
            }
            let src = &r.bytes[(lo - r.start) as usize..(hi - r.start) as usize];
            let dst = (lo - self.base) as usize..(hi - self.base) as usize;
            self.buf[dst].copy_from_slice(src);
        }
        self.pending.retain(|r| r.end > to);
    }

    /// Copies `[ready_end, frontier)` into `out`, replacing each span with
    /// its placeholder. Overlapping spans share one placeholder.
    fn copy_with_placeholders(&mut self, frontier: u64) {
        let mut pos = self.ready_end;
        let mut i = 0;
        while pos < frontier {
            let next = self.pending.get(i).filter(|r| r.start < frontier);
            if pos < self.skip_until {
                pos = self.skip_until.min(frontier);
                continue;
            }
            match next {
                Some(r) if r.start <= pos || r.start < self.skip_until => {
                    if r.end > self.skip_until {
                        if r.start >= self.skip_until {
                            self.out.extend_from_slice(&r.bytes);
                        }
                        self.skip_until = r.end;
                    }
                    i += 1;
                }
                Some(r) => {
                    let (a, b) = ((pos - self.base) as usize, (r.start - self.base) as usize);
                    self.out.extend_from_slice(&self.buf[a..b]);
                    pos = r.start;
                }
                None => {
                    let (a, b) = ((pos - self.base) as usize, (frontier - self.base) as usize);
                    self.out.extend_from_slice(&self.buf[a..b]);
                    pos = frontier;
                }
            }
        }
        // Replacements that start before the frontier have been written.
        self.pending.retain(|r| r.start >= frontier);
        self.ready_end = frontier;
        self.ready_start = frontier;
    }

    /// Releases every held-back byte because input has paused.
    ///
    /// Bytes that an undecided candidate may turn into a secret cannot wait,
    /// so they are masked with `*` now: from where its secret part would
    /// start, or from the candidate itself when that is not known. The
    /// candidate is decided later as usual, and its remaining bytes are
    /// masked by its policy. An idle flush therefore never lets a secret
    /// byte through, but may mask bytes that later turn out not to be
    /// secret, and output after it may differ from output without it.
    ///
    /// The first bytes of a literal or known secret that the held-back
    /// bytes end in are masked too.
    ///
    /// NOTE: a user regex match that has not started to match at the end
    /// of the held-back bytes (the regex did not report a candidate yet) is
    /// not masked by an idle flush.
    pub fn flush_idle(&mut self) {
        if self.finished {
            return;
        }
        let end = self.end();
        if self.ready_end >= end {
            return;
        }
        let rules = self.redactor.rules().clone();
        let hay_end = self.filled;
        let mut masks: Vec<Range<u64>> = Vec::new();
        let mut decided: Vec<Replacement> = Vec::new();
        for &(searcher, scan) in &self.scans {
            let mut from = (scan.max(self.base) - self.base) as usize;
            let hay = &self.buf[..hay_end];
            if searcher == Searcher::Literals {
                if let Some(start) = rules.partial_literal_start(hay, from) {
                    masks.push(self.base + start as u64..self.end());
                }
            }
            while let Some(c) = rules.next_candidate(searcher, hay, from) {
                from = c.pos + 1;
                match rules.check(searcher, hay, c, false) {
                    Check::NeedMore => {
                        if let Some(start) = rules.provisional_mask_start(searcher, hay, c) {
                            let lo = self.base + start.min(hay_end) as u64;
                            masks.push(lo..self.end());
                        }
                    }
                    Check::Found(hit) => {
                        // Decided already, but recorded only when the scan
                        // reaches it; apply its mask now without a finding.
                        let bytes = policy::render(self.redactor.policy(), &rules, hay, &hit);
                        if bytes.len() == hit.span.len() {
                            let original = &hay[hit.span.clone()];
                            let start = self.base + hit.span.start as u64;
                            for run in changed_runs(original, &bytes) {
                                decided.push(Replacement {
                                    start: start + run.start as u64,
                                    end: start + run.end as u64,
                                    bytes: bytes[run].to_vec(),
                                });
                            }
                        } else {
                            masks.push(
                                self.base + hit.span.start as u64..self.base + hit.span.end as u64,
                            );
                        }
                    }
                    Check::NotFound => {}
                }
            }
        }

        let from = self.ready_end;
        if self.redactor.policy().keeps_length() {
            // Copy rather than mask in place: the original bytes stay in
            // the buffer for the checks that are still open.
            let a = (from - self.base) as usize;
            let start_len = self.out.len();
            self.out.extend_from_slice(&self.buf[a..hay_end]);
            for r in self.pending.iter().chain(decided.iter()) {
                overlay(&mut self.out[start_len..], from, r.start, &r.bytes);
            }
            for m in &masks {
                let lo = (m.start.max(from) - from) as usize + start_len;
                let hi = (m.end - from) as usize + start_len;
                self.out[lo..hi].fill(MASK);
            }
        } else {
            // Placeholders up to the first byte that may be secret, then
            // one `*` per byte that no placeholder covers.
            let first = masks.iter().map(|m| m.start).min().unwrap_or(end);
            let first = first.clamp(from, end);
            self.copy_with_placeholders(first);
            let lo = first.max(self.skip_until);
            if lo < end {
                self.out.resize(self.out.len() + (end - lo) as usize, MASK);
            }
            // Spans that start in the masked stretch are covered by it.
            for r in self.pending.iter().filter(|r| r.start < end) {
                self.skip_until = self.skip_until.max(r.end);
            }
            self.pending.retain(|r| r.start >= end);
        }
        self.ready_start = end;
        self.ready_end = end;
    }
}

/// Writes the part of `bytes` (placed at stream offset `at`) that falls
/// inside `dst` (placed at stream offset `dst_at`).
fn overlay(dst: &mut [u8], dst_at: u64, at: u64, bytes: &[u8]) {
    let dst_end = dst_at + dst.len() as u64;
    let lo = at.max(dst_at);
    let hi = (at + bytes.len() as u64).min(dst_end);
    if lo >= hi {
        return;
    }
    let src = &bytes[(lo - at) as usize..(hi - at) as usize];
    dst[(lo - dst_at) as usize..(hi - dst_at) as usize].copy_from_slice(src);
}

/// Inserts a replacement, keeping the list sorted by start.
/// Records a finding and the replacement for a decided hit in `hay`, the
/// stream's buffer, which starts at stream offset `base`.
fn record(
    redactor: &Redactor,
    hay: &[u8],
    base: u64,
    hit: &crate::detect::Hit,
    findings: &mut Vec<Finding>,
    pending: &mut Vec<Replacement>,
) {
    let policy = redactor.policy();
    let rules = redactor.rules();
    let start = base + hit.span.start as u64;
    findings.push(Finding {
        rule: rules.rule_names()[hit.rule].clone(),
        encoding: hit.encoding,
        offset: start,
        len: hit.span.len() as u64,
        token_id: policy::token_id(policy, hay, hit),
    });
    let bytes = policy::render(policy, rules, hay, hit);
    if policy.keeps_length() {
        // Keep only the runs that change, so that bytes one hit leaves
        // visible never undo another hit's mask.
        let original = &hay[hit.span.clone()];
        for run in changed_runs(original, &bytes) {
            insert_sorted(
                pending,
                Replacement {
                    start: start + run.start as u64,
                    end: start + run.end as u64,
                    bytes: bytes[run].to_vec(),
                },
            );
        }
    } else {
        insert_sorted(
            pending,
            Replacement {
                start,
                end: base + hit.span.end as u64,
                bytes,
            },
        );
    }
}

fn insert_sorted(pending: &mut Vec<Replacement>, r: Replacement) {
    let at = pending.partition_point(|p| p.start <= r.start);
    pending.insert(at, r);
}

/// Returns the maximal runs where `b` differs from `a` (equal lengths).
fn changed_runs<'a>(a: &'a [u8], b: &'a [u8]) -> impl Iterator<Item = Range<usize>> + 'a {
    debug_assert_eq!(a.len(), b.len());
    let mut i = 0;
    std::iter::from_fn(move || {
        i += same_kind_len(&a[i..], &b[i..], true);
        if i == a.len() {
            return None;
        }
        let start = i;
        i += same_kind_len(&a[i..], &b[i..], false);
        Some(start..i)
    })
}

/// Length of the prefix where each byte of `a` equals (`equal`) or differs
/// from (`!equal`) the byte of `b` at the same index. Compares eight bytes
/// at a time: a token's visible and masked runs are tens of bytes long.
fn same_kind_len(a: &[u8], b: &[u8], equal: bool) -> usize {
    const LOW: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let mut i = 0;
    while let (Some(x), Some(y)) = (a.get(i..i + 8), b.get(i..i + 8)) {
        let diff = u64::from_ne_bytes(x.try_into().expect("8 bytes"))
            ^ u64::from_ne_bytes(y.try_into().expect("8 bytes"));
        // A zero byte in `diff` is a byte that is equal.
        let any_equal = diff.wrapping_sub(LOW) & !diff & HIGH != 0;
        let all_same_kind = if equal { diff == 0 } else { !any_equal };
        if !all_same_kind {
            break;
        }
        i += 8;
    }
    while i < a.len() && (a[i] == b[i]) == equal {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::changed_runs;

    /// Computes the changed runs with a byte-by-byte comparison.
    fn naive_runs(a: &[u8], b: &[u8]) -> Vec<std::ops::Range<usize>> {
        let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
        for i in 0..a.len() {
            if a[i] == b[i] {
                continue;
            }
            match runs.last_mut() {
                Some(run) if run.end == i => run.end = i + 1,
                _ => runs.push(i..i + 1),
            }
        }
        runs
    }

    #[test]
    fn changed_runs_match_bytewise_comparison() {
        // Runs of every start and length, alone and followed by a second
        // run, cover the 8-byte word boundaries without trying all 2^40
        // patterns of changed bytes.
        let a: Vec<u8> = (0..40u8).map(|i| b'A' + i % 26).collect();
        for start in 0..a.len() {
            for len in 0..=a.len() - start {
                for gap in [0, 1, 7, 8, 9] {
                    let mut b = a.clone();
                    for x in &mut b[start..start + len] {
                        *x = b'*';
                    }
                    let second = start + len + gap;
                    if second < b.len() {
                        b[second..].iter_mut().take(3).for_each(|x| *x = b'#');
                    }
                    let got: Vec<_> = changed_runs(&a, &b).collect();
                    assert_eq!(got, naive_runs(&a, &b), "start {start} len {len} gap {gap}");
                }
            }
        }
    }
}
