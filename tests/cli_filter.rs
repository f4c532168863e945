//! Integration tests of `dtredact filter`, run as a real process.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    assert_bytes_eq, assert_no_secret, contains, corpus_logs, count, count_by_encoding,
    count_by_rule, dtredact_with, error_lines, inject, json_counts, leak_ids, parse_summary,
    path_str, run, run_cmd, sample_path, show, write_file, ChildGuard, RUN_TIMEOUT,
};
use dtredact::synth::{SynthToken, TokenGen, TokenKind};
use rustix::process::{kill_process, Pid, Signal};

/// Seed of every token generator in this file, so that a failure repeats.
const SEED: u64 = 0x5EED_F117;

/// Time allowed for output that should arrive at once. Generous for a
/// loaded machine: the tests check that bytes arrive, not how fast.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------
// Public log corpus

#[test]
fn corpus_passes_unchanged() {
    let mut logs_with_crlf = 0;
    for log in corpus_logs() {
        let name = log.file_name().unwrap().to_string_lossy().into_owned();
        let input = fs::read(&log).unwrap();

        let from_file = run(&["filter", path_str(&log)], b"");
        from_file.assert_exit(0, &name);
        assert_bytes_eq(
            &from_file.stdout,
            &input,
            &format!("{name} as a file argument"),
        );

        let from_stdin = run(&["filter"], &input);
        from_stdin.assert_exit(0, &name);
        assert_bytes_eq(&from_stdin.stdout, &input, &format!("{name} on stdin"));

        let crlf_in = count(&input, b"\r\n");
        assert_eq!(
            count(&from_stdin.stdout, b"\r\n"),
            crlf_in,
            "{name}: CRLF line endings were not kept"
        );
        assert_eq!(
            count(&from_stdin.stdout, b"\n"),
            count(&input, b"\n"),
            "{name}: line count changed"
        );
        if crlf_in > 0 {
            logs_with_crlf += 1;
        }
    }
    assert!(
        logs_with_crlf > 0,
        "no corpus log has CRLF line endings, so keeping CRLF was not checked"
    );
}

#[test]
fn corpus_with_tokens_masked() {
    let dir = tempfile::tempdir().unwrap();
    for (index, log) in corpus_logs().iter().enumerate() {
        let name = log.file_name().unwrap().to_string_lossy().into_owned();
        let base = fs::read(log).unwrap();
        let mut gen = TokenGen::new(SEED + index as u64);
        let injected = inject(&base, &mut gen, 3);
        let path = write_file(dir.path(), &name, &injected.input);

        let result = run(&["filter", "--summary", path_str(&path)], b"");
        result.assert_exit(0, &name);
        assert_bytes_eq(&result.stdout, &injected.expected, &name);
        assert_no_secret(&result.stdout, &injected.tokens, &format!("{name} output"));
        assert_no_secret(&result.stderr, &injected.tokens, &format!("{name} summary"));

        let summary = parse_summary(&result.stderr);
        assert_eq!(
            summary["findings"].as_u64(),
            Some(injected.tokens.len() as u64),
            "{name}: findings in {summary}"
        );
        assert_eq!(
            json_counts(&summary["by_rule"], "by_rule"),
            count_by_rule(&injected.tokens),
            "{name}: findings by rule"
        );
        assert_eq!(
            json_counts(&summary["by_encoding"], "by_encoding"),
            count_by_encoding(&injected.tokens),
            "{name}: findings by encoding"
        );
        let expected_ids: BTreeSet<String> = injected
            .tokens
            .iter()
            .filter_map(|t| t.id.clone())
            .collect();
        assert_eq!(leak_ids(&summary), expected_ids, "{name}: token ids");
        for leak in summary["leaks"].as_array().unwrap() {
            assert_eq!(leak["count"].as_u64(), Some(1), "{name}: {leak}");
            assert_eq!(
                leak["sources"],
                serde_json::json!([path_str(&path)]),
                "{name}: {leak}"
            );
        }
        assert_eq!(
            summary["bytes_in"].as_u64(),
            Some(injected.input.len() as u64),
            "{name}: bytes_in"
        );
        assert_eq!(
            summary["bytes_out"].as_u64(),
            Some(injected.expected.len() as u64),
            "{name}: bytes_out"
        );
    }
}

// ---------------------------------------------------------------------------
// Bytes that are not text

/// Lines of bytes that a log stream may carry besides text.
fn unusual_bytes() -> Vec<u8> {
    let mut input = Vec::new();
    input.extend_from_slice(b"crlf line\r\n");
    input.extend_from_slice(b"invalid utf-8: \xff\xfe \xc3\x28 \xe2\x82 \xf0\x9f\x98 end\n");
    input.extend_from_slice(b"nul bytes: \0\0 in\0the middle\0\n");
    input.extend_from_slice(b"\x1b[31mred\x1b[0m \x1b[1;32mbold green\x1b[0m \x1b[2K\x1b[1G\n");
    input.extend_from_slice(b"lone cr\r in a line, tab\there\r\n");
    input.extend((0..=255u8).collect::<Vec<u8>>());
    input.extend_from_slice(b"\n");
    let mut gen = TokenGen::new(SEED);
    input.extend((0..64 * 1024).map(|_| gen.below(256) as u8));
    input.extend_from_slice(b"no newline at the end\r");
    input
}

#[test]
fn binary_bytes_pass_unchanged() {
    let input = unusual_bytes();

    let from_stdin = run(&["filter"], &input);
    from_stdin.assert_exit(0, "stdin");
    assert_bytes_eq(&from_stdin.stdout, &input, "unusual bytes on stdin");

    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "unusual.bin", &input);
    let from_file = run(&["filter", path_str(&path)], b"");
    from_file.assert_exit(0, "file");
    assert_bytes_eq(&from_file.stdout, &input, "unusual bytes in a file");
}

#[test]
fn tokens_among_binary_bytes() {
    let mut gen = TokenGen::new(SEED + 1);
    let mut input = Vec::new();
    let mut expected = Vec::new();
    let mut tokens = Vec::new();
    let frames: [(&[u8], &[u8]); 5] = [
        (b"\x1b[31m", b"\x1b[0m\n"),
        (b"\xff\xfe ", b" \xc3\x28\n"),
        (b"\0", b"\0\n"),
        (b"key=", b"\r\n"),
        (b"\x1b[1;33mwarn\x1b[0m ", b"\x1b[K\r\n"),
    ];
    for (before, after) in frames {
        for kind in [TokenKind::Classic, TokenKind::Legacy, TokenKind::Agent] {
            let token = gen.token(kind);
            for (out, text) in [(&mut input, &token.text), (&mut expected, &token.masked)] {
                out.extend_from_slice(before);
                out.extend_from_slice(text.as_bytes());
                out.extend_from_slice(after);
            }
            tokens.push(token);
        }
    }
    let result = run(&["filter", "--idle-flush", "0s"], &input);
    result.assert_exit(0, "tokens among binary bytes");
    assert_bytes_eq(&result.stdout, &expected, "tokens among binary bytes");
    assert_no_secret(&result.stdout, &tokens, "tokens among binary bytes");
}

// ---------------------------------------------------------------------------
// A 100 MiB line

/// Length of the long line, without its two tokens.
const LONG_LINE_BYTES: usize = 100 << 20;
/// Peak resident memory the filter may use on the long line.
const LONG_LINE_MAX_RSS_KB: u64 = 64 * 1024;

/// Produces the long line: filler, a token in the middle, more filler, and
/// a token as the last bytes of input. There is no newline anywhere.
fn long_line(
    middle: &str,
    last: &str,
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let pattern: &[u8] = b"lorem ipsum dolor sit amet, consectetur 0123456789 adipiscing elit; ";
    let chunk: Vec<u8> = pattern.iter().copied().cycle().take(64 * 1024).collect();
    for (token, after) in [(middle, " "), (last, "")] {
        let mut filler = LONG_LINE_BYTES / 2;
        while filler > 0 {
            let n = filler.min(chunk.len());
            sink(&chunk[..n])?;
            filler -= n;
        }
        sink(b" ")?;
        sink(token.as_bytes())?;
        sink(after.as_bytes())?;
    }
    Ok(())
}

/// Peak resident set size of a process in KiB (`VmHWM`), or `None` once
/// it has exited.
fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn long_line_bounded_memory() {
    let mut gen = TokenGen::new(SEED + 2);
    let middle = gen.token(TokenKind::Classic);
    let last = gen.token(TokenKind::Platform);

    let mut child = ChildGuard::spawn(dtredact_with(&["filter"]));
    let pid = child.id();
    let mut stdin = child.take_stdin();
    let (middle_text, last_text) = (middle.text.clone(), last.text.clone());
    let writer = thread::spawn(move || {
        let result = long_line(&middle_text, &last_text, |bytes| stdin.write_all(bytes));
        drop(stdin);
        result
    });
    let mut stdout = child.collect_stdout();
    let mut stderr = child.collect_stderr();

    // VmHWM only grows, so the last value read before the process becomes
    // a zombie is its peak.
    let deadline = Instant::now() + RUN_TIMEOUT;
    let mut peak_kb = 0;
    while let Some(kb) = peak_rss_kb(pid) {
        peak_kb = peak_kb.max(kb);
        assert!(
            Instant::now() < deadline,
            "filter still running after {RUN_TIMEOUT:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let status = child.wait(RUN_TIMEOUT);
    writer
        .join()
        .expect("stdin writer panicked")
        .expect("failed to write the long line");
    let output = stdout.read_to_end(Duration::from_secs(60));
    let errors = stderr.read_to_end(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "stderr: {}", show(&errors));

    let mut expected = Vec::with_capacity(output.len());
    long_line(&middle.masked, &last.masked, |bytes| {
        expected.extend_from_slice(bytes);
        Ok(())
    })
    .unwrap();
    assert_bytes_eq(&output, &expected, "100 MiB line");
    assert_no_secret(&output, &[middle, last], "100 MiB line");
    assert!(peak_kb > 0, "never read VmHWM of pid {pid}");
    assert!(
        peak_kb < LONG_LINE_MAX_RSS_KB,
        "peak RSS {peak_kb} KiB on a {LONG_LINE_BYTES}-byte line, limit {LONG_LINE_MAX_RSS_KB} KiB"
    );
}

// ---------------------------------------------------------------------------
// Idle flush

#[test]
fn idle_flush_releases_partial_line() {
    let mut child = ChildGuard::spawn(dtredact_with(&["filter", "--idle-flush", "100ms"]));
    let mut stdin = child.take_stdin();
    let mut stdout = child.collect_stdout();
    let partial: &[u8] = b"2026-12-04T09:00:00Z INFO partial line without a newline";
    stdin.write_all(partial).unwrap();
    stdin.flush().unwrap();

    let arrived = stdout.wait_len(partial.len(), DELIVERY_TIMEOUT);
    assert!(
        arrived,
        "with stdin still open, only {} of {} bytes arrived within {DELIVERY_TIMEOUT:?}: {}",
        stdout.bytes.len(),
        partial.len(),
        show(&stdout.bytes)
    );
    assert_bytes_eq(&stdout.bytes, partial, "partial line");

    stdin.write_all(b", and its end\n").unwrap();
    drop(stdin);
    let status = child.wait(RUN_TIMEOUT);
    assert_eq!(status.code(), Some(0));
    let output = stdout.read_to_end(Duration::from_secs(10));
    assert_bytes_eq(
        &output,
        b"2026-12-04T09:00:00Z INFO partial line without a newline, and its end\n",
        "whole line",
    );
}

/// A pause inside a token: the byte index of its text where input stops,
/// and where that is, for messages.
struct Cut {
    kind: TokenKind,
    at: fn(&SynthToken) -> usize,
    place: &'static str,
}

#[test]
fn idle_flush_never_leaks_secret() {
    let cuts = [
        Cut {
            kind: TokenKind::Classic,
            at: |t| t.text.len() - 30,
            place: "inside the secret",
        },
        Cut {
            kind: TokenKind::Classic,
            at: |_| "dt0c01.ABCDEFGHIJ".len(),
            place: "inside the public part",
        },
        Cut {
            kind: TokenKind::Classic,
            at: |_| "dt0c0".len(),
            place: "inside the prefix",
        },
        Cut {
            kind: TokenKind::Scim,
            at: |_| "dt0s01.ABCDEFGHIJ".len(),
            place: "inside a SCIM public part",
        },
        Cut {
            kind: TokenKind::PercentSeparators,
            at: |t| t.text.len() - 10,
            place: "inside a %2E-separated secret",
        },
        Cut {
            kind: TokenKind::Legacy,
            at: |_| "Api-Token 0123456".len(),
            place: "inside a legacy token",
        },
        Cut {
            kind: TokenKind::Base64,
            at: |t| t.text.len() / 2,
            place: "inside base64",
        },
    ];
    let mut gen = TokenGen::new(SEED + 3);
    for cut in cuts {
        let token = gen.token(cut.kind);
        let context = format!("{:?} cut {}", cut.kind, cut.place);
        let at = (cut.at)(&token);
        let prefix = "2026-12-04T09:00:00Z DEBUG auth key=";
        let suffix = " status=ok\n";
        let part1 = format!("{prefix}{}", &token.text[..at]);
        let part2 = format!("{}{suffix}", &token.text[at..]);

        let mut child = ChildGuard::spawn(dtredact_with(&["filter", "--idle-flush", "100ms"]));
        let mut stdin = child.take_stdin();
        let mut stdout = child.collect_stdout();
        stdin.write_all(part1.as_bytes()).unwrap();
        stdin.flush().unwrap();
        // The idle flush releases every held-back byte, so the pause is
        // over once all of the first part is out.
        let flushed = stdout.wait_len(part1.len(), DELIVERY_TIMEOUT);
        assert!(
            flushed,
            "{context}: {} of {} bytes arrived within {DELIVERY_TIMEOUT:?}",
            stdout.bytes.len(),
            part1.len()
        );
        stdin.write_all(part2.as_bytes()).unwrap();
        drop(stdin);
        let status = child.wait(RUN_TIMEOUT);
        assert_eq!(status.code(), Some(0), "{context}");
        let output = stdout.read_to_end(Duration::from_secs(10));

        let input = format!("{part1}{part2}");
        assert_eq!(output.len(), input.len(), "{context}: length changed");
        let start = prefix.len();
        let text = token.text.as_bytes();
        let masked = token.masked.as_bytes();
        for i in 0..text.len() {
            if text[i] != masked[i] {
                assert_ne!(
                    output[start + i],
                    text[i],
                    "{context}: secret byte {i} of the token is in the output: {}",
                    show(&output)
                );
            }
        }
        assert_no_secret(&output, std::slice::from_ref(&token), &context);
        // An idle flush masks undecided base64 with `*` rather than
        // re-encoding it, so only the other kinds have one exact output.
        if cut.kind != TokenKind::Base64 {
            let expected = format!("{prefix}{}{suffix}", token.masked);
            assert_bytes_eq(&output, expected.as_bytes(), &context);
        }
    }
}

// ---------------------------------------------------------------------------
// Signals

/// Lines numbered from `first` with a token each; returns input, expected
/// output and the tokens.
fn token_lines(gen: &mut TokenGen, first: usize, n: usize) -> (Vec<u8>, Vec<u8>, Vec<SynthToken>) {
    let mut input = Vec::new();
    let mut expected = Vec::new();
    let mut tokens = Vec::new();
    for i in first..first + n {
        let kind = TokenKind::ALL[i % TokenKind::ALL.len()];
        let token = gen.token(kind);
        for (out, text) in [(&mut input, &token.text), (&mut expected, &token.masked)] {
            let line = format!("{i:05} level=info msg=\"request done\" token={text} status=200\n");
            out.extend_from_slice(line.as_bytes());
        }
        tokens.push(token);
    }
    (input, expected, tokens)
}

/// Waits until the child has read every byte written to `stdin`: the pipe
/// contains no unread byte.
fn wait_pipe_drained(stdin: &std::process::ChildStdin, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let unread = rustix::io::ioctl_fionread(stdin).expect("FIONREAD on the stdin pipe");
        if unread == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "filter left {unread} bytes unread for {timeout:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

fn stop_mid_stream(signal: Signal) {
    let context = format!("{signal:?}");
    let mut gen = TokenGen::new(SEED + 4);
    // The idle flush is off, so the bytes held back when the signal comes
    // are those the engine is still deciding, and the output is exact.
    let mut child = ChildGuard::spawn(dtredact_with(&[
        "filter",
        "--idle-flush",
        "0s",
        "--summary",
    ]));
    let mut stdin = child.take_stdin();
    let mut stdout = child.collect_stdout();
    let mut stderr = child.collect_stderr();

    let (input1, expected1, mut tokens) = token_lines(&mut gen, 0, 200);
    stdin.write_all(&input1).unwrap();
    stdin.flush().unwrap();
    let last_line = expected1[..expected1.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    let caught_up = stdout.wait_len(last_line, Duration::from_secs(30));
    assert!(
        caught_up,
        "{context}: output stopped at {} bytes, before the start of the last line ({last_line} bytes)",
        stdout.bytes.len()
    );
    assert_bytes_eq(
        &stdout.bytes[..last_line],
        &expected1[..last_line],
        &context,
    );

    // More lines, and a token as the very last bytes, with stdin left open.
    let (input2, expected2, tokens2) = token_lines(&mut gen, 200, 50);
    tokens.extend(tokens2);
    let last = gen.token(TokenKind::Classic);
    stdin.write_all(&input2).unwrap();
    stdin.write_all(b"final token=").unwrap();
    stdin.write_all(last.text.as_bytes()).unwrap();
    stdin.flush().unwrap();
    wait_pipe_drained(&stdin, Duration::from_secs(30));

    kill_process(Pid::from_child(&child.child), signal).expect("failed to send the signal");
    let status = child.wait(Duration::from_secs(30));
    let output = stdout.read_to_end(Duration::from_secs(10));
    let errors = stderr.read_to_end(Duration::from_secs(10));
    drop(stdin);
    assert_eq!(
        status.code(),
        Some(0),
        "{context}: status {status:?}; stderr: {}",
        show(&errors)
    );

    let mut expected = expected1;
    expected.extend_from_slice(&expected2);
    expected.extend_from_slice(b"final token=");
    expected.extend_from_slice(last.masked.as_bytes());
    tokens.push(last);
    assert_bytes_eq(&output, &expected, &context);
    assert_no_secret(&output, &tokens, &context);

    let summary = parse_summary(&errors);
    assert_eq!(summary["interrupted"], true, "{context}: {summary}");
    assert_eq!(
        summary["findings"].as_u64(),
        Some(tokens.len() as u64),
        "{context}: {summary}"
    );
}

#[test]
fn sigterm_writes_all_read() {
    stop_mid_stream(Signal::Term);
}

#[test]
fn sigint_writes_all_read() {
    stop_mid_stream(Signal::Int);
}

// ---------------------------------------------------------------------------
// Closed standard output

#[test]
fn closed_stdout_exits_quietly() {
    let mut gen = TokenGen::new(SEED + 5);
    let mut input = Vec::new();
    let mut line = 0;
    while input.len() < 16 << 20 {
        let text = if line % 50 == 0 {
            gen.token(TokenKind::Classic).text
        } else {
            "nothing to see".to_string()
        };
        input.extend_from_slice(format!("line {line} value={text} end\n").as_bytes());
        line += 1;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "big.log", &input);

    // Like `dtredact filter < big.log | head -c 10`.
    let mut cmd = dtredact_with(&["filter"]);
    cmd.stdin(fs::File::open(&path).unwrap())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = ChildGuard {
        child: cmd.spawn().unwrap(),
    };
    let mut stderr = child.collect_stderr();
    let mut stdout = child.child.stdout.take().unwrap();
    let mut head = [0u8; 10];
    stdout.read_exact(&mut head).unwrap();
    drop(stdout);

    let status = child.wait(RUN_TIMEOUT);
    let errors = stderr.read_to_end(Duration::from_secs(10));
    assert_eq!(head, input[..10], "first bytes");
    assert_eq!(
        status.code(),
        Some(0),
        "status {status:?}; stderr: {}",
        show(&errors)
    );
    let reported = error_lines(&errors);
    assert!(reported.is_empty(), "error on stderr: {reported:#?}");
}

// ---------------------------------------------------------------------------
// --fail-on-leak and --summary

#[test]
fn fail_on_leak_exit_codes() {
    let mut gen = TokenGen::new(SEED + 6);
    let token = gen.token(TokenKind::Classic);
    let leaky = format!("auth key={} ok\n", token.text);

    let result = run(&["filter", "--fail-on-leak"], leaky.as_bytes());
    result.assert_exit(1, "--fail-on-leak with a token");
    assert_bytes_eq(
        &result.stdout,
        format!("auth key={} ok\n", token.masked).as_bytes(),
        "--fail-on-leak output",
    );

    let result = run(
        &["filter", "--fail-on-leak"],
        b"a clean line\nand another\n",
    );
    result.assert_exit(0, "--fail-on-leak on clean input");
    assert_bytes_eq(
        &result.stdout,
        b"a clean line\nand another\n",
        "clean output",
    );

    let result = run(&["filter"], leaky.as_bytes());
    result.assert_exit(0, "a token without --fail-on-leak");
}

#[test]
fn summary_lists_tokens_only() {
    let mut gen = TokenGen::new(SEED + 7);
    let tokens: Vec<SynthToken> = TokenKind::ALL.iter().map(|&k| gen.token(k)).collect();
    let repeated = gen.token(TokenKind::Classic);
    let mut input = String::new();
    for token in &tokens {
        input.push_str(&format!("value={}\n", token.text));
    }
    for _ in 0..3 {
        input.push_str(&format!("again {} here\n", repeated.text));
    }

    let result = run(
        &["filter", "--idle-flush", "0s", "--summary"],
        input.as_bytes(),
    );
    result.assert_exit(0, "--summary");
    // Leak warnings may come first; the summary is one JSON line, the last.
    let stderr = result.stderr_text();
    let json_lines: Vec<&str> = stderr
        .lines()
        .filter(|line| serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v.is_object()))
        .collect();
    assert_eq!(json_lines.len(), 1, "stderr: {stderr}");
    assert_eq!(
        stderr.lines().last(),
        Some(json_lines[0]),
        "stderr: {stderr}"
    );
    let summary = parse_summary(&result.stderr);
    for key in [
        "bytes_in",
        "bytes_out",
        "findings",
        "by_rule",
        "by_encoding",
        "leaks",
        "leaks_evicted",
        "interrupted",
    ] {
        assert!(summary.get(key).is_some(), "key {key} missing: {summary}");
    }
    assert_eq!(summary["interrupted"], false);
    assert_eq!(summary["leaks_evicted"].as_u64(), Some(0));
    assert_eq!(summary["bytes_in"].as_u64(), Some(input.len() as u64));
    assert_eq!(summary["findings"].as_u64(), Some(tokens.len() as u64 + 3));

    let mut expected_ids: BTreeSet<String> = tokens.iter().filter_map(|t| t.id.clone()).collect();
    expected_ids.insert(repeated.id.clone().unwrap());
    assert_eq!(leak_ids(&summary), expected_ids, "token ids");
    let leaks = summary["leaks"].as_array().unwrap();
    let repeated_leak = leaks
        .iter()
        .find(|leak| leak["token_id"].as_str() == repeated.id.as_deref())
        .unwrap();
    assert_eq!(repeated_leak["count"].as_u64(), Some(3), "{repeated_leak}");
    assert_eq!(repeated_leak["rule"], "dynatrace-token", "{repeated_leak}");
    assert_eq!(repeated_leak["sources"], serde_json::json!(["stdin"]));
    for leak in leaks {
        for key in [
            "token_id",
            "rule",
            "count",
            "first_seen",
            "last_seen",
            "sources",
        ] {
            assert!(leak.get(key).is_some(), "key {key} missing in {leak}");
        }
    }

    let mut all = tokens.clone();
    all.push(repeated);
    assert_no_secret(&result.stderr, &all, "summary");
    assert_no_secret(&result.stdout, &all, "output");
}

// ---------------------------------------------------------------------------
// Masking policies

/// Returns the secret stretches of the sample log: where the `keep-id`
/// output differs from the input, with stretches less than 8 bytes apart
/// joined (re-encoded base64 can leave a character unchanged).
fn sample_secrets(sample: &[u8]) -> Vec<Vec<u8>> {
    let keep_id = run(&["filter", "--policy", "keep-id"], sample);
    keep_id.assert_exit(0, "keep-id on the sample");
    assert_eq!(
        keep_id.stdout.len(),
        sample.len(),
        "keep-id changed the length"
    );
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for i in (0..sample.len()).filter(|&i| sample[i] != keep_id.stdout[i]) {
        match runs.last_mut() {
            Some((_, end)) if i - *end < 8 => *end = i + 1,
            _ => runs.push((i, i + 1)),
        }
    }
    runs.iter()
        .map(|&(start, end)| sample[start..end].to_vec())
        .collect()
}

fn assert_sample_secrets_gone(output: &[u8], secrets: &[Vec<u8>], context: &str) {
    for secret in secrets {
        assert!(
            !contains(output, secret),
            "{context}: secret {} survived",
            show(secret)
        );
    }
}

/// Synthetic tokens of every kind, one per line.
fn all_kinds_input(seed: u64) -> (Vec<u8>, Vec<SynthToken>) {
    let mut gen = TokenGen::new(seed);
    let tokens: Vec<SynthToken> = TokenKind::ALL.iter().map(|&k| gen.token(k)).collect();
    let mut input = Vec::new();
    for token in &tokens {
        input.extend_from_slice(format!("2026-12-04 INFO value={} end\n", token.text).as_bytes());
    }
    (input, tokens)
}

#[test]
fn policy_full_masks_sample() {
    let sample = fs::read(sample_path()).unwrap();
    let secrets = sample_secrets(&sample);
    assert!(
        secrets.len() >= 8,
        "only {} secrets found in the sample",
        secrets.len()
    );

    let result = run(
        &["filter", "--policy", "full", path_str(&sample_path())],
        b"",
    );
    result.assert_exit(0, "--policy full");
    assert_eq!(
        result.stdout.len(),
        sample.len(),
        "full policy changed the length"
    );
    assert_sample_secrets_gone(&result.stdout, &secrets, "--policy full");

    let (input, tokens) = all_kinds_input(SEED + 8);
    let result = run(
        &["filter", "--policy", "full", "--idle-flush", "0s"],
        &input,
    );
    result.assert_exit(0, "--policy full, every kind");
    assert_eq!(result.stdout.len(), input.len());
    assert_no_secret(&result.stdout, &tokens, "--policy full, every kind");
    // A plain token is masked whole, its prefix and public part too.
    let lines: Vec<&[u8]> = result.stdout.split_inclusive(|&b| b == b'\n').collect();
    for (line, token) in lines.iter().zip(&tokens) {
        let masked = match token.kind {
            TokenKind::Base64 | TokenKind::Base64Url => continue,
            TokenKind::Legacy => format!("Api-Token {}", "*".repeat(21)),
            _ => "*".repeat(token.text.len()),
        };
        let expected = format!("2026-12-04 INFO value={masked} end\n");
        assert_bytes_eq(line, expected.as_bytes(), &format!("{:?}", token.kind));
    }
}

#[test]
fn policy_placeholder_masks_sample() {
    let sample = fs::read(sample_path()).unwrap();
    let secrets = sample_secrets(&sample);

    let result = run(
        &[
            "filter",
            "--policy",
            "placeholder",
            path_str(&sample_path()),
        ],
        b"",
    );
    result.assert_exit(0, "--policy placeholder");
    assert_sample_secrets_gone(&result.stdout, &secrets, "--policy placeholder");
    assert!(
        contains(&result.stdout, b"[REDACTED:dynatrace-token]"),
        "no placeholder in: {}",
        show(&result.stdout)
    );

    let (input, tokens) = all_kinds_input(SEED + 9);
    let result = run(
        &["filter", "--policy", "placeholder", "--idle-flush", "0s"],
        &input,
    );
    result.assert_exit(0, "--policy placeholder, every kind");
    assert_no_secret(&result.stdout, &tokens, "--policy placeholder, every kind");
    let mut placeholders: BTreeMap<String, u64> = BTreeMap::new();
    for (rule, _) in count_by_rule(&tokens) {
        let text = format!("[REDACTED:{rule}]");
        placeholders.insert(rule, count(&result.stdout, text.as_bytes()) as u64);
    }
    assert_eq!(placeholders, count_by_rule(&tokens), "placeholders by rule");
}

#[test]
fn policy_fingerprint_stable() {
    let sample = fs::read(sample_path()).unwrap();
    let secrets = sample_secrets(&sample);
    let fingerprint = |key: &str| {
        let mut cmd = dtredact_with(&[
            "filter",
            "--policy",
            "fingerprint",
            path_str(&sample_path()),
        ]);
        cmd.env("DTREDACT_FINGERPRINT_KEY", key);
        let result = run_cmd(cmd, b"");
        result.assert_exit(0, "--policy fingerprint");
        result.stdout
    };
    let first = fingerprint("synthetic-test-key-one");
    let second = fingerprint("synthetic-test-key-one");
    let other_key = fingerprint("synthetic-test-key-two");

    assert_sample_secrets_gone(&first, &secrets, "--policy fingerprint");
    assert_eq!(
        first.len(),
        sample.len(),
        "fingerprint policy changed the length"
    );
    assert!(
        contains(&first, b"fp:"),
        "no fingerprint in: {}",
        show(&first)
    );
    assert_bytes_eq(&second, &first, "two runs with the same key");
    assert_ne!(first, other_key, "another key gave the same fingerprints");

    let (input, tokens) = all_kinds_input(SEED + 10);
    let mut cmd = dtredact_with(&["filter", "--policy", "fingerprint", "--idle-flush", "0s"]);
    cmd.env("DTREDACT_FINGERPRINT_KEY", "synthetic-test-key-one");
    let result = run_cmd(cmd, &input);
    result.assert_exit(0, "--policy fingerprint, every kind");
    assert_eq!(result.stdout.len(), input.len());
    assert_no_secret(&result.stdout, &tokens, "--policy fingerprint, every kind");

    // One token written three ways gets one fingerprint.
    let token = TokenGen::new(SEED + 15).token(TokenKind::Classic);
    let forms = [
        token.text.clone(),
        token.text.replace('.', "%2E"),
        token.text.to_ascii_lowercase(),
    ];
    let input: String = forms.iter().map(|form| format!("key={form}\n")).collect();
    let mut cmd = dtredact_with(&["filter", "--policy", "fingerprint"]);
    cmd.env("DTREDACT_FINGERPRINT_KEY", "synthetic-test-key-one");
    let result = run_cmd(cmd, input.as_bytes());
    result.assert_exit(0, "--policy fingerprint, three forms");
    let output = String::from_utf8(result.stdout).unwrap();
    let masked_parts: Vec<&str> = output
        .lines()
        .map(|line| &line[line.len() - 64..])
        .collect();
    assert!(
        masked_parts[0].starts_with("fp:"),
        "no fingerprint: {output}"
    );
    assert_eq!(masked_parts[1], masked_parts[0], "%2E form: {output}");
    assert_eq!(
        masked_parts[2], masked_parts[0],
        "lower-case form: {output}"
    );
}

#[test]
fn policy_fingerprint_needs_key() {
    let (input, _) = all_kinds_input(SEED + 11);
    let result = run(&["filter", "--policy", "fingerprint"], &input);
    result.assert_exit(64, "--policy fingerprint without a key");
    assert!(
        result.stdout.is_empty(),
        "output written without a key: {}",
        show(&result.stdout)
    );
    assert!(!result.stderr.is_empty(), "no error message");
}

// ---------------------------------------------------------------------------
// Several inputs

#[test]
fn files_and_stdin_in_order() {
    let mut gen = TokenGen::new(SEED + 12);
    let tokens: Vec<SynthToken> = (0..3).map(|_| gen.token(TokenKind::Classic)).collect();
    let dir = tempfile::tempdir().unwrap();
    let first = write_file(
        dir.path(),
        "first.log",
        format!("first file {}\r\n", tokens[0].text).as_bytes(),
    );
    let last = write_file(
        dir.path(),
        "last.log",
        format!("last file {}\n", tokens[2].text).as_bytes(),
    );
    let stdin = format!("from stdin {}\n", tokens[1].text);
    let output_path = dir.path().join("out.log");

    let result = run(
        &[
            "filter",
            "--summary",
            path_str(&first),
            "-",
            path_str(&last),
            "-o",
            path_str(&output_path),
        ],
        stdin.as_bytes(),
    );
    result.assert_exit(0, "two files and stdin");
    assert!(result.stdout.is_empty(), "stdout used despite -o");
    let expected = format!(
        "first file {}\r\nfrom stdin {}\nlast file {}\n",
        tokens[0].masked, tokens[1].masked, tokens[2].masked
    );
    let output = fs::read(&output_path).unwrap();
    assert_bytes_eq(&output, expected.as_bytes(), "-o output");

    let summary = parse_summary(&result.stderr);
    let leaks = summary["leaks"].as_array().unwrap();
    let sources: Vec<&serde_json::Value> = tokens
        .iter()
        .map(|token| {
            let leak = leaks
                .iter()
                .find(|leak| leak["token_id"].as_str() == token.id.as_deref())
                .unwrap_or_else(|| panic!("token missing from {summary}"));
            &leak["sources"]
        })
        .collect();
    assert_eq!(sources[0], &serde_json::json!([path_str(&first)]));
    assert_eq!(sources[1], &serde_json::json!(["stdin"]));
    assert_eq!(sources[2], &serde_json::json!([path_str(&last)]));
}

#[test]
fn files_are_separate_streams() {
    // The first file ends in a complete token; the second starts with
    // letters. As one stream they would make a 70-character secret (a
    // partial secret), but each file is its own stream.
    let mut gen = TokenGen::new(SEED + 13);
    let token = gen.token(TokenKind::Classic);
    let dir = tempfile::tempdir().unwrap();
    let first = write_file(
        dir.path(),
        "a.log",
        format!("key={}", token.text).as_bytes(),
    );
    let second = write_file(dir.path(), "b.log", b"ABCDEF continues here\n");

    let result = run(
        &["filter", "--summary", path_str(&first), path_str(&second)],
        b"",
    );
    result.assert_exit(0, "two files");
    let expected = format!("key={}ABCDEF continues here\n", token.masked);
    assert_bytes_eq(&result.stdout, expected.as_bytes(), "two files");
    let summary = parse_summary(&result.stderr);
    let mut by_rule = BTreeMap::new();
    by_rule.insert("dynatrace-token".to_string(), 1);
    assert_eq!(json_counts(&summary["by_rule"], "by_rule"), by_rule);
}

#[test]
fn missing_input_after_output() {
    let dir = tempfile::tempdir().unwrap();
    let present = write_file(dir.path(), "present.log", b"written before the error\n");
    let missing = dir.path().join("no-such-file.log");
    let result = run(&["filter", path_str(&present), path_str(&missing)], b"");
    result.assert_exit(2, "missing second input file");
    assert_bytes_eq(
        &result.stdout,
        b"written before the error\n",
        "output of the first file",
    );
    let message = result.stderr_text();
    assert!(
        message.contains("no-such-file.log"),
        "stderr does not name the file: {message}"
    );
    assert_eq!(
        message.matches("No such file or directory").count(),
        1,
        "the reason should be given once: {message}"
    );
}

#[test]
fn unwritable_output_fails() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("no-such-folder").join("out.log");
    let result = run(&["filter", "-o", path_str(&output)], b"some input\n");
    result.assert_exit(2, "output in a missing folder");
    let message = result.stderr_text();
    assert!(
        message.contains("no-such-folder"),
        "stderr does not name the output path: {message}"
    );
    assert_eq!(
        message.matches("No such file or directory").count(),
        1,
        "the reason should be given once: {message}"
    );
}

/// Builds filler lines with a token of every kind placed so that each
/// multiple of `boundary` bytes falls inside a token.
fn straddling_tokens(gen: &mut TokenGen, boundary: usize) -> (Vec<u8>, Vec<u8>, Vec<SynthToken>) {
    let mut input = Vec::new();
    let mut expected = Vec::new();
    let mut tokens = Vec::new();
    for (k, kind) in TokenKind::ALL.into_iter().enumerate() {
        let token = gen.token(kind);
        // Start the token so that the boundary falls at a different byte
        // of each token: 1 byte in, 2 bytes in, ... , half way.
        let into = (k * 7 + 1).min(token.text.len() - 1);
        let start = boundary * (k + 1) - into;
        let filler_len = start - 1 - input.len();
        let filler: Vec<u8> = b"filler text for the read size\r\n"
            .iter()
            .copied()
            .cycle()
            .take(filler_len)
            .collect();
        for (out, text) in [(&mut input, &token.text), (&mut expected, &token.masked)] {
            out.extend_from_slice(&filler);
            out.push(b' ');
            out.extend_from_slice(text.as_bytes());
            out.push(b' ');
        }
        tokens.push(token);
    }
    input.extend_from_slice(b"end\n");
    expected.extend_from_slice(b"end\n");
    (input, expected, tokens)
}

#[test]
fn tokens_across_read_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let mut gen = TokenGen::new(SEED + 14);
    // 4 KiB is the smallest read size; larger power-of-two read sizes
    // (the default among them) split the input at multiples of it too.
    for boundary in [4096, 64 * 1024, 256 * 1024] {
        let (input, expected, tokens) = straddling_tokens(&mut gen, boundary);
        let context = format!("tokens across {boundary}-byte boundaries");
        let path = write_file(dir.path(), "straddle.log", &input);
        let result = run(&["filter", "--summary", path_str(&path)], b"");
        result.assert_exit(0, &context);
        assert_bytes_eq(&result.stdout, &expected, &context);
        assert_no_secret(&result.stdout, &tokens, &context);
        let summary = parse_summary(&result.stderr);
        assert_eq!(
            json_counts(&summary["by_rule"], "by_rule"),
            count_by_rule(&tokens),
            "{context}"
        );

        // A pipe splits the input wherever the writer and reader meet.
        let result = run(&["filter", "--idle-flush", "0s"], &input);
        result.assert_exit(0, &context);
        assert_bytes_eq(&result.stdout, &expected, &format!("{context}, on stdin"));
    }
}

// ---------------------------------------------------------------------------
// Usage errors

#[test]
fn usage_errors_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let missing_config = dir.path().join("missing-config.toml");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["filter", "--bogus"], "--bogus"),
        (vec!["filter", "--policy", "sometimes"], "sometimes"),
        (vec!["filter", "--policy"], "--policy"),
        (vec!["filter", "--idle-flush", "soon"], "soon"),
        (vec!["filter", "--idle-flush", "100"], "100"),
        (vec!["filter", "--idle-flush=-5ms"], "-5ms"),
        (vec!["scan", "--bogus"], "--bogus"),
        (vec!["frobnicate"], "frobnicate"),
        (
            vec!["filter", "-c", path_str(&missing_config)],
            "missing-config.toml",
        ),
    ];
    for (args, named) in cases {
        let context = args.join(" ");
        let result = run(&args, b"");
        result.assert_exit(64, &context);
        assert!(result.stdout.is_empty(), "{context}: wrote to stdout");
        assert!(
            result.stderr_text().contains(named),
            "{context}: error message does not name {named:?}: {}",
            result.stderr_text()
        );
    }

    let result = run(&[], b"");
    result.assert_exit(64, "no subcommand");
    assert!(
        result.stderr_text().contains("Usage"),
        "no usage text: {}",
        result.stderr_text()
    );
}
