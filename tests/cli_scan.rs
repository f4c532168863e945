//! Integration tests of `dtredact scan`, run as a real process.

mod common;

use common::{assert_no_secret, path_str, run, write_file};
use dtredact::synth::{SynthToken, TokenGen, TokenKind};
use serde_json::Value;

const SEED: u64 = 0x5CA7_0001;

/// One finding that scan must report.
#[derive(Debug, PartialEq)]
struct Expected {
    file: String,
    line: u64,
    column: u64,
    offset: u64,
    rule: String,
    encoding: String,
    token_id: Option<String>,
}

/// Builds a file line by line and records where each token lands.
struct FileBuilder {
    name: String,
    bytes: Vec<u8>,
    line: u64,
    findings: Vec<Expected>,
}

impl FileBuilder {
    fn new(name: &str) -> FileBuilder {
        FileBuilder {
            name: name.to_string(),
            bytes: Vec::new(),
            line: 1,
            findings: Vec::new(),
        }
    }

    /// Appends text with no token.
    fn text(&mut self, text: &str) {
        self.bytes.extend_from_slice(text.as_bytes());
        self.line += text.matches('\n').count() as u64;
    }

    /// Appends a token and records the line, 1-based byte column and
    /// offset where scan must report it.
    fn token(&mut self, token: &SynthToken, encoding: &str) {
        let line_start = self
            .bytes
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let offset = self.bytes.len();
        self.findings.push(Expected {
            file: self.name.clone(),
            line: self.line,
            column: (offset - line_start + 1) as u64,
            offset: offset as u64,
            rule: token.kind.rule().to_string(),
            encoding: encoding.to_string(),
            token_id: token.id.clone(),
        });
        self.bytes.extend_from_slice(token.text.as_bytes());
    }
}

/// Parses scan's JSON lines into findings, checking each line's keys.
fn parse_findings(stdout: &[u8]) -> Vec<Expected> {
    let text = String::from_utf8(stdout.to_vec()).expect("scan output is UTF-8");
    text.lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("finding is not valid JSON ({e}): {line}"));
            let number = |key: &str| {
                record[key]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{key} is not a number in {line}"))
            };
            let string = |key: &str| {
                record[key]
                    .as_str()
                    .unwrap_or_else(|| panic!("{key} is not a string in {line}"))
                    .to_string()
            };
            assert!(
                record.get("token_id").is_some(),
                "token_id missing in {line}"
            );
            Expected {
                file: string("file"),
                line: number("line"),
                column: number("column"),
                offset: number("offset"),
                rule: string("rule"),
                encoding: string("encoding"),
                token_id: record["token_id"].as_str().map(str::to_string),
            }
        })
        .collect()
}

#[test]
fn scan_reports_line_and_column() {
    let mut gen = TokenGen::new(SEED);
    let mut tokens = Vec::new();
    let mut next = |kind: TokenKind| {
        let token = gen.token(kind);
        tokens.push(token.clone());
        token
    };
    let dir = tempfile::tempdir().unwrap();

    let mut first = FileBuilder::new(path_str(&dir.path().join("first.log")));
    first.text("first line, no token\r\n");
    first.text("\r\n");
    first.token(&next(TokenKind::Classic), "plain");
    first.text(" at the start of a CRLF line\r\n");
    first.text("crlf line with key=");
    first.token(&next(TokenKind::Platform), "plain");
    first.text(" in the middle\r\n");
    first.text("lf line\n");
    first.text("two tokens: ");
    first.token(&next(TokenKind::PercentSeparators), "percent");
    first.text(" and ");
    first.token(&next(TokenKind::LowerCase), "plain");
    first.text("\n\n\r\n");
    first.text("short: ");
    first.token(&next(TokenKind::ShortSecret), "plain");
    first.text("\r\nno newline at the end ");
    first.token(&next(TokenKind::Agent), "plain");

    let mut second = FileBuilder::new(path_str(&dir.path().join("second.log")));
    second.text("second file\r\n    ");
    second.token(&next(TokenKind::OAuthSecret), "plain");
    second.text("\r\n");

    let first_path = write_file(dir.path(), "first.log", &first.bytes);
    let second_path = write_file(dir.path(), "second.log", &second.bytes);
    let result = run(
        &["scan", path_str(&first_path), path_str(&second_path)],
        b"",
    );
    result.assert_exit(1, "scan with findings");

    let mut expected = first.findings;
    expected.extend(second.findings);
    let found = parse_findings(&result.stdout);
    assert_eq!(found.len(), expected.len(), "findings: {found:#?}");
    for (found, expected) in found.iter().zip(&expected) {
        assert_eq!(found, expected);
    }
    assert_no_secret(&result.stdout, &tokens, "scan output");
    assert_no_secret(&result.stderr, &tokens, "scan stderr");
}

#[test]
fn scan_reads_stdin() {
    let mut gen = TokenGen::new(SEED + 1);
    let token = gen.token(TokenKind::Classic);
    let mut input = FileBuilder::new("stdin");
    input.text("line one\r\nline two key=");
    input.token(&token, "plain");
    input.text("\r\n");

    let result = run(&["scan"], &input.bytes);
    result.assert_exit(1, "scan of stdin");
    assert_eq!(parse_findings(&result.stdout), input.findings);

    let result = run(&["scan", "-"], &input.bytes);
    result.assert_exit(1, "scan of -");
    assert_eq!(parse_findings(&result.stdout), input.findings);
    assert_no_secret(&result.stdout, &[token], "scan output");
}

#[test]
fn scan_exit_codes() {
    let mut gen = TokenGen::new(SEED + 2);
    let token = gen.token(TokenKind::Classic);
    let dir = tempfile::tempdir().unwrap();
    let clean = write_file(dir.path(), "clean.log", b"nothing here\r\nat all\n");
    let leaky = write_file(
        dir.path(),
        "leaky.log",
        format!("auth {}\n", token.text).as_bytes(),
    );
    let missing = dir.path().join("missing-file.log");

    let result = run(&["scan", path_str(&clean)], b"");
    result.assert_exit(0, "clean file");
    assert!(result.stdout.is_empty(), "findings on a clean file");

    let result = run(&["scan", path_str(&clean), path_str(&leaky)], b"");
    result.assert_exit(1, "file with a token");
    assert_eq!(parse_findings(&result.stdout).len(), 1);

    let result = run(&["scan", path_str(&missing)], b"");
    result.assert_exit(2, "missing file");
    assert!(
        result.stderr_text().contains("missing-file.log"),
        "stderr does not name the missing file: {}",
        result.stderr_text()
    );

    // A missing file does not stop the scan of the others, and an
    // unreadable file outranks a finding in the exit code.
    let result = run(&["scan", path_str(&missing), path_str(&leaky)], b"");
    result.assert_exit(2, "missing file and a file with a token");
    let found = parse_findings(&result.stdout);
    assert_eq!(found.len(), 1, "findings: {found:#?}");
    assert_eq!(found[0].file, path_str(&leaky));
    assert_no_secret(&result.stdout, std::slice::from_ref(&token), "scan output");
    assert_no_secret(&result.stderr, &[token], "scan stderr");
}

#[test]
fn scan_summary_has_no_secret() {
    let mut gen = TokenGen::new(SEED + 3);
    let tokens: Vec<SynthToken> = TokenKind::ALL.iter().map(|&k| gen.token(k)).collect();
    let mut input = String::new();
    for token in &tokens {
        input.push_str(&format!("value={}\r\n", token.text));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "all.log", input.as_bytes());

    let result = run(&["scan", "--summary", path_str(&path)], b"");
    result.assert_exit(1, "scan --summary");
    let found = parse_findings(&result.stdout);
    assert_eq!(found.len(), tokens.len(), "findings: {found:#?}");
    for (line, (finding, token)) in found.iter().zip(&tokens).enumerate() {
        assert_eq!(finding.line, line as u64 + 1, "{:?}", token.kind);
        assert_eq!(finding.rule, token.kind.rule(), "{:?}", token.kind);
        assert_eq!(finding.token_id, token.id, "{:?}", token.kind);
    }
    let summary = common::parse_summary(&result.stderr);
    assert_eq!(summary["findings"].as_u64(), Some(tokens.len() as u64));
    assert_eq!(
        common::json_counts(&summary["by_rule"], "by_rule"),
        common::count_by_rule(&tokens)
    );
    assert_no_secret(&result.stdout, &tokens, "scan output");
    assert_no_secret(&result.stderr, &tokens, "scan summary");
}

#[test]
fn scan_long_lines() {
    // Tokens far into long lines and across the reader's buffer size, so
    // that line and column are counted over many reads.
    let mut gen = TokenGen::new(SEED + 4);
    let mut tokens = Vec::new();
    let mut input = FileBuilder::new("stdin");
    for (line, filler_len) in [300_000usize, 262_100, 1_000_000].into_iter().enumerate() {
        let token = gen.token(TokenKind::ALL[line]);
        let filler: String = "word ".repeat(filler_len / 5);
        input.text(&filler);
        input.token(&token, "plain");
        input.text(" end\r\n");
        tokens.push(token);
    }
    let result = run(&["scan"], &input.bytes);
    result.assert_exit(1, "scan of long lines");
    assert_eq!(parse_findings(&result.stdout), input.findings);
    assert_no_secret(&result.stdout, &tokens, "scan output");
}

#[test]
fn scan_closed_stdout_quiet() {
    // Like `dtredact scan big.log | head -n 1`: many findings, and the
    // reader leaves after the first.
    let mut gen = TokenGen::new(SEED + 5);
    let token = gen.token(TokenKind::Classic);
    let mut input = String::new();
    for i in 0..100_000 {
        input.push_str(&format!("line {i} key={} end\n", token.text));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "many.log", input.as_bytes());

    let mut child = common::ChildGuard::spawn(common::dtredact_with(&["scan", path_str(&path)]));
    let mut stderr = child.collect_stderr();
    let stdout = child.child.stdout.take().unwrap();
    let mut first_line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut first_line).unwrap();
    // The reader above is dropped here, which closes the pipe.
    let status = child.wait(common::RUN_TIMEOUT);
    let errors = stderr.read_to_end(std::time::Duration::from_secs(10));

    assert!(
        first_line.contains("\"line\":1"),
        "first finding: {first_line}"
    );
    assert_eq!(
        status.code(),
        Some(1),
        "status {status:?}; stderr: {}",
        common::show(&errors)
    );
    let reported = common::error_lines(&errors);
    assert!(reported.is_empty(), "error on stderr: {reported:#?}");
}
