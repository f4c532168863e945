//! Integration tests of the admin port and of the monitoring manifests in
//! `k8s/monitoring`. They check the real binary's `/metrics`, `/healthz`,
//! `/readyz` and `/leaks`, run `promtool` on the alert rules and on a
//! scraped exposition, let a real Prometheus server scrape the binary, and
//! check that the dashboard and the alert rules use only exported metrics.
//!
//! `promtool` and `prometheus` come from Debian's `prometheus` package,
//! which `.ci/run` installs when `promtool` is missing.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{assert_no_secret, dtredact_with, feed, ChildGuard, Collector};
use dtredact::synth::{SynthToken, TokenGen, TokenKind};
use serde_json::Value;

/// Seed of every token generator in this file, so that a failure repeats.
const SEED: u64 = 0x0AD3_1E7A;

/// Time a process gets to start and log its admin address. Debug builds on
/// a loaded two-core machine start slowly, so this is far above the need.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Time the binary gets to write its output and update its counters.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Connect, read and write timeout of one HTTP request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Time a Prometheus server gets to start, scrape and evaluate its rules.
const PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(60);

/// Time a process gets to exit after its standard input closes.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

const RULE_TOKEN: &str = "dynatrace-token";

fn monitoring_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/k8s/monitoring"))
}

fn read_manifest(name: &str) -> String {
    let path = monitoring_dir().join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("failed to read {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------
// HTTP over loopback

/// Status, headers and body of an HTTP/1.1 response.
struct HttpResponse {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl HttpResponse {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `GET path` to `addr` with `Connection: close` and reads the whole
/// response.
fn try_http_get(addr: SocketAddr, path: &str) -> io::Result<HttpResponse> {
    http_request(addr, "GET", path, "", b"")
}

/// Sends one HTTP/1.1 request with `Connection: close` and reads the whole
/// response. `headers` is empty or lines that each end in CRLF.
fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> io::Result<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    let length = if method == "GET" {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\n{headers}{length}Connection: close\r\n\r\n"
    )?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// Like [`try_http_get`], but panics with the address and path on failure.
fn http_get(addr: SocketAddr, path: &str) -> HttpResponse {
    try_http_get(addr, path).unwrap_or_else(|e| panic!("GET http://{addr}{path} failed: {e}"))
}

fn parse_response(raw: &[u8]) -> io::Result<HttpResponse> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let end = memchr::memmem::find(raw, b"\r\n\r\n")
        .ok_or_else(|| invalid("response has no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("response has no status code"))?;
    let mut body = raw[end + 4..].to_vec();
    let chunked = head.lines().any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("transfer-encoding:") && line.contains("chunked")
    });
    if chunked {
        body = decode_chunked(&body).ok_or_else(|| invalid("invalid chunked body"))?;
    }
    Ok(HttpResponse { status, head, body })
}

fn decode_chunked(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = memchr::memmem::find(data, b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Percent-encodes `text` for a URL query value.
fn query_escape(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Returns a loopback port that was free a moment ago. Another process may
/// take it before the caller binds it, which these tests accept.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("failed to bind a loopback port");
    listener
        .local_addr()
        .expect("bound listener has an address")
        .port()
}

// ---------------------------------------------------------------------------
// Prometheus text format

/// One sample line: `name{labels} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed `/metrics` response.
#[derive(Debug, Default)]
struct Exposition {
    samples: Vec<Sample>,
    /// Metric family name to its `# TYPE`.
    types: BTreeMap<String, String>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut exposition = Exposition::default();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if let Some(comment) = line.strip_prefix('#') {
                let words: Vec<&str> = comment.split_whitespace().collect();
                if let ["TYPE", name, kind] = words[..] {
                    exposition.types.insert(name.to_string(), kind.to_string());
                }
                continue;
            }
            if line.is_empty() {
                continue;
            }
            let sample = parse_sample(line)
                .unwrap_or_else(|| panic!("invalid sample on line {}: {line}", number + 1));
            exposition.samples.push(sample);
        }
        exposition
    }

    /// Samples named `name` whose labels include every pair in `labels`.
    fn matching(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// Returns the value of the one sample that [`Exposition::matching`] finds.
    ///
    /// # Panics
    ///
    /// When no sample or more than one matches.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found = self.matching(name, labels);
        assert_eq!(
            found.len(),
            1,
            "expected exactly one sample {name}{labels:?} in /metrics, found {found:?}"
        );
        found[0].value
    }

    /// Sample names and `# TYPE` family names.
    fn names(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self.samples.iter().map(|s| s.name.clone()).collect();
        names.extend(self.types.keys().cloned());
        names
    }
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        let (parsed, after_labels) = parse_labels(after_brace)?;
        labels = parsed;
        rest = after_labels;
    }
    // A timestamp may follow the value.
    let value_text = rest.split_whitespace().next()?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        other => other.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Parses `k="v",...}` and returns the labels and the text after `}`.
fn parse_labels(mut text: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        text = text.trim_start_matches([',', ' ']);
        if let Some(rest) = text.strip_prefix('}') {
            return Some((labels, rest));
        }
        let eq = text.find('=')?;
        let key = text[..eq].trim().to_string();
        text = text[eq + 1..].strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = text.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    escaped => value.push(escaped),
                },
                c => value.push(c),
            }
        };
        labels.insert(key, value);
        text = &text[end + 1..];
    }
}

// ---------------------------------------------------------------------------
// The binary with its admin port

/// A `dtredact` process with an admin port. The guard kills it when the
/// test ends, also on a failed assertion.
struct AdminProcess {
    child: ChildGuard,
    stdin: Option<ChildStdin>,
    stdout: Collector,
    stderr: Collector,
    addr: SocketAddr,
}

impl AdminProcess {
    /// Starts `dtredact ARGS` and waits for the `admin=ADDR` log line.
    fn start(args: &[&str]) -> AdminProcess {
        let mut cmd = dtredact_with(args);
        // The log lines are parsed below, so keep the default level.
        cmd.env_remove("RUST_LOG").env("NO_COLOR", "1");
        let mut child = ChildGuard::spawn(cmd);
        let stdin = Some(child.take_stdin());
        let stdout = child.collect_stdout();
        let mut stderr = child.collect_stderr();
        let started = stderr.wait_until(START_TIMEOUT, |bytes| logged_admin_addr(bytes).is_some());
        let log = String::from_utf8_lossy(&stderr.bytes).into_owned();
        assert!(
            started,
            "`dtredact {}` logged no `admin=127.0.0.1:PORT` line within {START_TIMEOUT:?}; \
             does it accept --admin-addr? stderr: {log}",
            args.join(" ")
        );
        let addr = logged_admin_addr(&stderr.bytes).expect("checked above");
        assert!(
            addr.ip().is_loopback(),
            "admin server bound to {addr}, not loopback"
        );
        AdminProcess {
            child,
            stdin,
            stdout,
            stderr,
            addr,
        }
    }

    /// Starts `dtredact filter --admin-addr 127.0.0.1:0` on standard input.
    fn filter() -> AdminProcess {
        AdminProcess::start(&["filter", "--admin-addr", "127.0.0.1:0"])
    }

    fn write_stdin(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin is still open");
        stdin
            .write_all(bytes)
            .expect("failed to write to dtredact's stdin");
        stdin.flush().expect("failed to flush dtredact's stdin");
    }

    /// Waits until standard output has `len` bytes and returns them.
    fn read_stdout(&mut self, len: usize) -> Vec<u8> {
        let arrived = self.stdout.wait_len(len, SETTLE_TIMEOUT);
        assert!(
            arrived,
            "dtredact wrote {} of {len} expected bytes to stdout within {SETTLE_TIMEOUT:?}",
            self.stdout.bytes.len()
        );
        self.stdout.bytes.clone()
    }

    fn scrape(&self) -> (String, Exposition) {
        let response = http_get(self.addr, "/metrics");
        assert_eq!(response.status, 200, "GET /metrics: {}", response.head);
        let text = response.text();
        let exposition = Exposition::parse(&text);
        (text, exposition)
    }

    /// Scrapes `/metrics` until `done` holds for it or [`SETTLE_TIMEOUT`]
    /// passes, and returns the last scrape either way.
    fn scrape_until(&self, done: impl Fn(&Exposition) -> bool) -> (String, Exposition) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let (text, exposition) = self.scrape();
            if done(&exposition) || Instant::now() >= deadline {
                return (text, exposition);
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Closes standard input, waits for the exit and returns the status
    /// and everything the process wrote to standard error.
    fn finish(mut self) -> (ExitStatus, String) {
        drop(self.stdin.take());
        let status = self.child.wait(EXIT_TIMEOUT);
        let stderr = self.stderr.read_to_end(EXIT_TIMEOUT);
        (status, String::from_utf8_lossy(&stderr).into_owned())
    }
}

/// Finds `admin=IP:PORT` in log text.
fn logged_admin_addr(log: &[u8]) -> Option<SocketAddr> {
    logged_addr(log, "admin")
}

/// Finds `FIELD=IP:PORT` in log text, skipping ANSI colour codes.
fn logged_addr(log: &[u8], field: &str) -> Option<SocketAddr> {
    let text = strip_ansi(&String::from_utf8_lossy(log));
    let pattern = format!("{field}=");
    text.match_indices(&pattern).find_map(|(at, key)| {
        let rest = &text[at + key.len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || "[]:.".contains(c)))
            .unwrap_or(rest.len());
        rest[..end].trim_matches('"').parse().ok()
    })
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip `ESC [ params letter`.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Log lines that leak the given tokens, and the output the filter must
/// write for them.
struct LeakInput {
    tokens: Vec<SynthToken>,
    /// How often each token of `tokens` occurs in `input`.
    occurrences: Vec<u64>,
    input: Vec<u8>,
    expected_output: Vec<u8>,
}

impl LeakInput {
    /// Four classic tokens: the first leaks three times, the others once.
    fn classic() -> LeakInput {
        let mut generator = TokenGen::new(SEED);
        let tokens: Vec<SynthToken> = (0..4)
            .map(|_| generator.token(TokenKind::Classic))
            .collect();
        let order = [0, 1, 0, 2, 3, 0];
        let mut occurrences = vec![0; tokens.len()];
        let mut input = String::new();
        let mut expected_output = String::new();
        for (line, &index) in order.iter().enumerate() {
            occurrences[index] += 1;
            let prefix = format!("2024-05-01T12:00:0{line}Z ERROR export failed token=");
            let suffix = " status=401\n";
            input.push_str(&format!("{prefix}{}{suffix}", tokens[index].text));
            expected_output.push_str(&format!("{prefix}{}{suffix}", tokens[index].masked));
        }
        LeakInput {
            tokens,
            occurrences,
            input: input.into_bytes(),
            expected_output: expected_output.into_bytes(),
        }
    }

    fn total(&self) -> u64 {
        self.occurrences.iter().sum()
    }

    fn id(&self, index: usize) -> &str {
        self.tokens[index]
            .id
            .as_deref()
            .expect("a classic token has an identifier")
    }
}

// ---------------------------------------------------------------------------
// The filter's admin port

#[test]
fn filter_metrics_count_written_tokens() {
    let leaks = LeakInput::classic();
    let started = SystemTime::now();
    let mut process = AdminProcess::filter();
    process.write_stdin(&leaks.input);
    let output = process.read_stdout(leaks.expected_output.len());
    common::assert_bytes_eq(&output, &leaks.expected_output, "filter output");

    let total = leaks.total() as f64;
    let written = leaks.input.len() as f64;
    let plain = [
        ("mode", "filter"),
        ("rule", RULE_TOKEN),
        ("encoding", "plain"),
    ];
    let bytes_in = [("mode", "filter"), ("direction", "in")];
    let bytes_out = [("mode", "filter"), ("direction", "out")];
    // The counters may lag the output by a moment, so wait for them.
    let (text, metrics) = process.scrape_until(|m| {
        m.matching("dtredact_redactions_total", &plain)
            .first()
            .is_some_and(|s| s.value == total)
            && [&bytes_in, &bytes_out].iter().all(|labels| {
                m.matching("dtredact_bytes_total", &labels[..])
                    .first()
                    .is_some_and(|s| s.value == written)
            })
    });

    assert_eq!(metrics.value("dtredact_redactions_total", &plain), total);
    let all_redactions: f64 = metrics
        .matching("dtredact_redactions_total", &[])
        .iter()
        .map(|s| s.value)
        .sum();
    assert_eq!(
        all_redactions, total,
        "redactions outside rule {RULE_TOKEN}, encoding plain"
    );
    assert_eq!(
        metrics.value("dtredact_bytes_total", &bytes_in),
        written,
        "bytes read by a running filter, scraped after its output was read back"
    );
    assert_eq!(
        metrics.value("dtredact_bytes_total", &bytes_out),
        written,
        "bytes written by a running filter"
    );
    assert_eq!(
        metrics
            .types
            .get("dtredact_redactions_total")
            .map(String::as_str),
        Some("counter")
    );
    assert_eq!(
        metrics
            .types
            .get("dtredact_bytes_total")
            .map(String::as_str),
        Some("counter")
    );
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        metrics.value("dtredact_build_info", &[("version", version)]),
        1.0
    );
    assert_eq!(metrics.value("dtredact_ready", &[("mode", "filter")]), 1.0);
    assert_eq!(metrics.value("dtredact_leak_ids_evicted_total", &[]), 0.0);

    let last_leak = metrics.value("dtredact_last_leak_timestamp_seconds", &[]);
    let started_secs = started
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let now_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    assert!(
        (started_secs as f64..=now_secs as f64).contains(&last_leak),
        "dtredact_last_leak_timestamp_seconds is {last_leak}, not within the test's run \
         {started_secs}..={now_secs}"
    );
    assert_no_secret(text.as_bytes(), &leaks.tokens, "/metrics");

    let health = http_get(process.addr, "/healthz");
    assert_eq!(health.status, 200, "GET /healthz: {}", health.head);
    let ready = http_get(process.addr, "/readyz");
    assert_eq!(ready.status, 200, "GET /readyz: {}", ready.head);
    let missing = http_get(process.addr, "/no-such-page");
    assert_eq!(missing.status, 404, "GET /no-such-page: {}", missing.head);

    let leaks_response = http_get(process.addr, "/leaks");
    assert_eq!(
        leaks_response.status, 200,
        "GET /leaks: {}",
        leaks_response.head
    );
    assert_no_secret(&leaks_response.body, &leaks.tokens, "/leaks");
    check_leak_inventory(&leaks_response.text(), &leaks);

    let (status, stderr) = process.finish();
    assert!(
        status.success(),
        "dtredact filter exited with {status}; stderr: {stderr}"
    );
    assert_no_secret(stderr.as_bytes(), &leaks.tokens, "stderr");
    for index in 0..leaks.tokens.len() {
        let id = leaks.id(index);
        assert!(
            stderr.contains(id),
            "no log line names token identifier {id}; stderr: {stderr}"
        );
    }
}

fn check_leak_inventory(json: &str, leaks: &LeakInput) {
    let inventory: Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("/leaks is not JSON ({e}): {json}"));
    let total = leaks.total();
    assert_eq!(inventory["findings"], total, "/leaks findings: {json}");
    assert_eq!(
        inventory["by_rule"][RULE_TOKEN], total,
        "/leaks by_rule: {json}"
    );
    assert_eq!(
        inventory["by_encoding"]["plain"], total,
        "/leaks by_encoding: {json}"
    );
    assert_eq!(
        inventory["leaks_evicted"], 0,
        "/leaks leaks_evicted: {json}"
    );

    let entries = inventory["leaks"]
        .as_array()
        .expect("/leaks has a leaks array");
    let counts: BTreeMap<&str, u64> = entries
        .iter()
        .map(|entry| {
            let id = entry["token_id"].as_str().expect("token_id is a string");
            (id, entry["count"].as_u64().expect("count is a number"))
        })
        .collect();
    let expected: BTreeMap<&str, u64> = (0..leaks.tokens.len())
        .map(|index| (leaks.id(index), leaks.occurrences[index]))
        .collect();
    assert_eq!(counts, expected, "/leaks token_id counts: {json}");
    for entry in entries {
        assert_eq!(entry["rule"], RULE_TOKEN, "/leaks entry rule: {entry}");
        assert_eq!(
            entry["sources"],
            serde_json::json!(["stdin"]),
            "/leaks entry sources: {entry}"
        );
        let first = entry["first_seen"]
            .as_str()
            .expect("first_seen is a string");
        let last = entry["last_seen"].as_str().expect("last_seen is a string");
        // RFC 3339 times in UTC with whole seconds compare as text.
        assert!(
            first <= last,
            "first_seen {first} after last_seen {last}: {entry}"
        );
    }
}

// ---------------------------------------------------------------------------
// promtool

/// Returns the path of `program` on `PATH`, if any.
fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn require_tool(program: &str) -> PathBuf {
    find_on_path(program).unwrap_or_else(|| {
        panic!(
            "`{program}` is not on PATH; install Debian's `prometheus` package, which ships \
             promtool and the Prometheus server: apt-get install prometheus"
        )
    })
}

/// Runs `cmd` with `input` on standard input and returns its status,
/// standard output and standard error.
fn run_tool(cmd: Command, input: &[u8]) -> (ExitStatus, String) {
    let mut child = ChildGuard::spawn(cmd);
    let writer = feed(child.take_stdin(), input.to_vec());
    let mut stdout = child.collect_stdout();
    let mut stderr = child.collect_stderr();
    let status = child.wait(EXIT_TIMEOUT);
    let stdout = stdout.read_to_end(EXIT_TIMEOUT);
    let stderr = stderr.read_to_end(EXIT_TIMEOUT);
    writer.join().expect("stdin writer panicked");
    let output = format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    (status, output)
}

#[test]
fn promtool_accepts_alert_rules() {
    let mut cmd = Command::new(require_tool("promtool"));
    cmd.arg("check")
        .arg("rules")
        .arg(monitoring_dir().join("alert-rules.yml"));
    let (status, output) = run_tool(cmd, b"");
    assert!(
        status.success(),
        "promtool check rules failed ({status}): {output}"
    );
}

#[test]
fn promtool_accepts_scraped_metrics() {
    let promtool = require_tool("promtool");
    let leaks = LeakInput::classic();
    let mut process = AdminProcess::filter();
    process.write_stdin(&leaks.input);
    process.read_stdout(leaks.expected_output.len());
    let (text, _) = process.scrape();

    let mut cmd = Command::new(promtool);
    cmd.arg("check").arg("metrics");
    let (status, output) = run_tool(cmd, text.as_bytes());
    assert!(
        status.success(),
        "promtool check metrics failed ({status}): {output}\n/metrics:\n{text}"
    );
}

/// Unit tests of the alert rules, run by `promtool test rules`: when each
/// alert fires and which labels and annotations it carries.
const RULE_TESTS: &str = r#"
rule_files:
  - RULES_PATH
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # Pre-created at zero, then one leak at minute 3.
      - series: 'dtredact_redactions_total{job="dtredact",instance="a:9100",mode="filter",rule="dynatrace-token",encoding="plain"}'
        values: '0 0 0 1 1 1 1 1 1 1 1 1 1 1'
      # A series that first appears with its first leak at minute 3.
      - series: 'dtredact_redactions_total{job="dtredact",instance="b:9100",mode="proxy",rule="user-rule",encoding="base64"}'
        values: '_ _ _ 2 2 2 2 2 2 2 2 2 2 2'
      - series: 'dtredact_config_reloads_total{job="dtredact",instance="a:9100",result="failure"}'
        values: '0 0 1 1 1 1 1 1 1 1 1 1 1 1'
      - series: 'dtredact_bodies_rejected_total{job="dtredact",instance="b:9100",reason="unknown_encoding"}'
        values: '_ 1 1 1 1 1 1 1 1 1 1 1 1 1'
      - series: 'dtredact_ready{job="dtredact",instance="a:9100",mode="filter"}'
        values: '1 0 0 0 0 0 0 0 0 0 0 0 0 0'
      - series: 'up{job="dtredact",instance="a:9100"}'
        values: '1 1 0 0 0 0 0 0 0 0 0 0 0 0'
    alert_rule_test:
      - eval_time: 4m
        alertname: DtredactLeakPrevented
        exp_alerts:
          - exp_labels:
              severity: critical
              job: dtredact
              instance: a:9100
              mode: filter
              rule: dynatrace-token
            exp_annotations:
              summary: "dtredact masked a leaked secret (rule dynatrace-token, mode filter)"
              description: "a:9100 (job dtredact) masked about 1 secret(s) matched by rule dynatrace-token in filter mode in the last 5 minutes. The token reached a log stream, so treat it as exposed: look up its token identifier in GET /leaks on that instance's admin port, or in its WARN log lines \"masked a leaked secret; rotate this token\" (field token_id), and rotate that token."
          - exp_labels:
              severity: critical
              job: dtredact
              instance: b:9100
              mode: proxy
              rule: user-rule
            exp_annotations:
              summary: "dtredact masked a leaked secret (rule user-rule, mode proxy)"
              description: "b:9100 (job dtredact) masked about 2 secret(s) matched by rule user-rule in proxy mode in the last 5 minutes. The token reached a log stream, so treat it as exposed: look up its token identifier in GET /leaks on that instance's admin port, or in its WARN log lines \"masked a leaked secret; rotate this token\" (field token_id), and rotate that token."
      - eval_time: 2m
        alertname: DtredactLeakPrevented
        exp_alerts: []
      - eval_time: 10m
        alertname: DtredactLeakPrevented
        exp_alerts: []
      - eval_time: 10m
        alertname: DtredactReloadFailed
        exp_alerts: []
      - eval_time: 10m
        alertname: DtredactBodiesRejected
        exp_alerts: []
      - eval_time: 8m
        alertname: DtredactNotReady
        exp_alerts:
          - exp_labels:
              severity: warning
              job: dtredact
              instance: a:9100
              mode: filter
            exp_annotations:
              summary: "dtredact on a:9100 is not ready (filter mode)"
              description: "a:9100 (job dtredact) has reported dtredact_ready 0 in filter mode for 5 minutes, which means it is still starting or is draining. Its /readyz returns 503, so a readiness probe on /readyz keeps it out of its Service. Its logs show why it is not ready."
      - eval_time: 5m
        alertname: DtredactDown
        exp_alerts: []
      - eval_time: 8m
        alertname: DtredactDown
        exp_alerts:
          - exp_labels:
              severity: critical
              job: dtredact
              instance: a:9100
            exp_annotations:
              summary: "dtredact is down or not scraped"
              description: "Prometheus has not scraped the dtredact admin port of a:9100 for 5 minutes, or finds no scrape target whose job name contains dtredact. Logs routed through a stopped proxy or sidecar are not delivered, and leaks are not counted."
"#;

/// Runs the alert rule unit tests of [`RULE_TESTS`] with `promtool test
/// rules`. promtool compares annotations exactly, so these cases spell them
/// out, which also checks that the leak alert names the rule and the mode
/// and points to `/leaks` and the WARN logs.
#[test]
fn promtool_rule_unit_tests_pass() {
    let promtool = require_tool("promtool");
    let dir = tempfile::tempdir().expect("failed to create a temporary folder");
    let rules = monitoring_dir().join("alert-rules.yml");
    let tests = RULE_TESTS.replace("RULES_PATH", &rules.display().to_string());
    let test_file = dir.path().join("alert-rules.test.yml");
    fs::write(&test_file, tests).expect("failed to write the rule tests");

    let mut cmd = Command::new(promtool);
    cmd.arg("test").arg("rules").arg(&test_file);
    let (status, output) = run_tool(cmd, b"");
    assert!(
        status.success(),
        "promtool test rules failed ({status}): {output}"
    );
}

// ---------------------------------------------------------------------------
// A real Prometheus server

/// A Prometheus server on loopback with its data in a temporary folder.
/// Dropping it kills the server, also when a test fails.
struct PrometheusServer {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl PrometheusServer {
    /// Starts Prometheus scraping `target` every second, with the alert
    /// rules of `k8s/monitoring` evaluated every second.
    fn start(target: SocketAddr) -> PrometheusServer {
        let binary = require_tool("prometheus");
        let dir = tempfile::tempdir().expect("failed to create a temporary folder");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: dtredact\n    static_configs:\n      - targets: ['{target}']\n",
            rules = monitoring_dir().join("alert-rules.yml").display()
        );
        let config_path = dir.path().join("prometheus.yml");
        fs::write(&config_path, config).expect("failed to write prometheus.yml");
        let log = dir.path().join("prometheus.log");
        let log_file = fs::File::create(&log).expect("failed to create the Prometheus log");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("failed to share the log file"))
            .stderr(log_file)
            .spawn()
            .expect("failed to start prometheus");
        PrometheusServer {
            child,
            addr,
            log,
            _dir: dir,
        }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs an instant query and returns `data.result`, or `None` while the
    /// server does not respond yet.
    fn query(&mut self, promql: &str) -> Option<Vec<Value>> {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("prometheus exited with {status}; log: {}", self.log_text());
        }
        let path = format!("/api/v1/query?query={}", query_escape(promql));
        let response = try_http_get(self.addr, &path).ok()?;
        if response.status != 200 {
            return None;
        }
        let body: Value = serde_json::from_slice(&response.body).ok()?;
        body["data"]["result"].as_array().cloned()
    }

    /// Queries `promql` until `done` holds for its result or
    /// [`PROMETHEUS_TIMEOUT`] passes, and returns the last result.
    fn query_until(&mut self, promql: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + PROMETHEUS_TIMEOUT;
        loop {
            let result = self.query(promql).unwrap_or_default();
            if done(&result) || Instant::now() >= deadline {
                return result;
            }
            thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns the value of an instant-query sample: `[time, "value"]`.
fn sample_value(sample: &Value) -> Option<f64> {
    sample["value"][1].as_str()?.parse().ok()
}

#[test]
fn prometheus_scrapes_admin_port() {
    let leaks = LeakInput::classic();
    let mut process = AdminProcess::filter();
    process.write_stdin(&leaks.input);
    process.read_stdout(leaks.expected_output.len());
    let mut prometheus = PrometheusServer::start(process.addr);

    let total = leaks.total() as f64;
    let query =
        r#"dtredact_redactions_total{mode="filter",rule="dynatrace-token",encoding="plain"}"#;
    let result = prometheus.query_until(query, |result| {
        result.len() == 1 && sample_value(&result[0]) == Some(total)
    });
    assert_eq!(
        result.len(),
        1,
        "Prometheus returned {result:?} for {query} within {PROMETHEUS_TIMEOUT:?}; log: {}",
        prometheus.log_text()
    );
    assert_eq!(sample_value(&result[0]), Some(total), "{query}: {result:?}");
    assert_eq!(
        result[0]["metric"]["job"], "dtredact",
        "{query}: {result:?}"
    );

    let up = prometheus.query_until(r#"up{job="dtredact"}"#, |r| !r.is_empty());
    assert_eq!(up.len(), 1, "up{{job=\"dtredact\"}}: {up:?}");
    assert_eq!(
        sample_value(&up[0]),
        Some(1.0),
        "up{{job=\"dtredact\"}}: {up:?}"
    );

    check_leak_alert_fires(&mut prometheus);
    check_rules_healthy(&prometheus);
    drop(prometheus);

    let (status, stderr) = process.finish();
    assert!(
        status.success(),
        "dtredact filter exited with {status}; stderr: {stderr}"
    );
}

/// Checks that DtredactLeakPrevented fires. The counters were above zero at
/// the first scrape, so only its branch for new series can fire here.
fn check_leak_alert_fires(prometheus: &mut PrometheusServer) {
    let alerts = r#"ALERTS{alertname="DtredactLeakPrevented",alertstate="firing"}"#;
    let firing = prometheus.query_until(alerts, |r| !r.is_empty());
    assert_eq!(
        firing.len(),
        1,
        "{alerts} within {PROMETHEUS_TIMEOUT:?}: {firing:?}; log: {}",
        prometheus.log_text()
    );
    let labels = &firing[0]["metric"];
    assert_eq!(labels["rule"], RULE_TOKEN, "alert labels: {labels}");
    assert_eq!(labels["mode"], "filter", "alert labels: {labels}");
    assert_eq!(labels["severity"], "critical", "alert labels: {labels}");
}

fn check_rules_healthy(prometheus: &PrometheusServer) {
    let response = http_get(prometheus.addr, "/api/v1/rules");
    assert_eq!(response.status, 200, "GET /api/v1/rules: {}", response.head);
    let body: Value = serde_json::from_slice(&response.body).expect("/api/v1/rules is JSON");
    let groups = body["data"]["groups"]
        .as_array()
        .expect("rules response has groups");
    let rules: Vec<&Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    assert_eq!(rules.len(), 5, "rules loaded by Prometheus: {body}");
    for rule in rules {
        assert_eq!(
            rule["health"], "ok",
            "rule {} failed to evaluate: {rule}",
            rule["name"]
        );
    }
}

// ---------------------------------------------------------------------------
// Dashboard and manifests

fn dashboard() -> Value {
    let text = read_manifest("grafana-dashboard.json");
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("grafana-dashboard.json is invalid JSON: {e}"))
}

/// Collects every `expr` string in a dashboard.
fn collect_exprs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("expr", Value::String(expr)) => out.push(expr),
                    _ => collect_exprs(child, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_exprs(item, out)),
        _ => {}
    }
}

/// Returns the `dtredact_*` and `process_*` metric names in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let regex = regex_automata::meta::Regex::new(r"\b(?:dtredact|process)_[a-z0-9_]*[a-z0-9]\b")
        .expect("valid regex");
    regex
        .find_iter(text)
        .map(|m| text[m.range()].to_string())
        .collect()
}

#[test]
fn dashboard_is_valid_grafana_json() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "dtredact");
    let inputs = dashboard["__inputs"]
        .as_array()
        .expect("dashboard has __inputs");
    assert!(
        inputs
            .iter()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
        "no DS_PROMETHEUS input: {inputs:?}"
    );
    let panels = dashboard["panels"]
        .as_array()
        .expect("dashboard has panels");
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("?");
        assert!(
            ids.insert(panel["id"].as_u64()),
            "duplicate panel id in {title}"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${DS_PROMETHEUS}",
            "panel {title} datasource"
        );
        let targets = panel["targets"].as_array().expect("panel has targets");
        assert!(!targets.is_empty(), "panel {title} has no query");
        for target in targets {
            assert_eq!(
                target["datasource"]["uid"], "${DS_PROMETHEUS}",
                "panel {title} target"
            );
        }
    }
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    let expected = [
        "sum by (rule) (increase(dtredact_redactions_total[5m]))",
        "sum by (mode, direction) (rate(dtredact_bytes_total[1m]))",
    ];
    for expr in expected {
        assert!(exprs.contains(&expr), "dashboard has no query {expr}");
    }
}

#[test]
fn dashboard_configmap_carries_dashboard() {
    let configmap = read_manifest("grafana-dashboard-configmap.yaml");
    assert!(
        configmap.contains("\n    grafana_dashboard: \"1\"\n"),
        "sidecar label missing"
    );
    let marker = "\n  dtredact.json: |\n";
    let start = configmap
        .find(marker)
        .expect("ConfigMap has a dtredact.json key")
        + marker.len();
    let embedded: String = configmap[start..]
        .lines()
        .map(|line| line.strip_prefix("    ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n");
    let embedded: Value = serde_json::from_str(&embedded)
        .unwrap_or_else(|e| panic!("dtredact.json in the ConfigMap is invalid JSON: {e}"));
    assert!(
        embedded == dashboard(),
        "the ConfigMap's dtredact.json differs from grafana-dashboard.json"
    );
}

#[test]
fn prometheusrule_carries_rules_file() {
    let rules = read_manifest("alert-rules.yml");
    let resource = read_manifest("prometheusrule.yaml");
    let groups = &rules[rules.find("groups:").expect("rules file has groups")..];
    let spec = &resource[resource
        .find("\nspec:\n")
        .expect("PrometheusRule has a spec")
        + 7..];
    let unindented: String = spec
        .lines()
        .map(|line| line.strip_prefix("  ").unwrap_or(line))
        .map(|line| format!("{line}\n"))
        .collect();
    common::assert_bytes_eq(
        unindented.as_bytes(),
        groups.as_bytes(),
        "prometheusrule.yaml spec against alert-rules.yml",
    );
    assert!(resource.contains("kind: PrometheusRule"));
    assert!(resource.contains("apiVersion: monitoring.coreos.com/v1"));
}

#[test]
fn manifests_have_kubernetes_labels() {
    let kustomization = read_manifest("kustomization.yaml");
    for name in [
        "servicemonitor.yaml",
        "prometheusrule.yaml",
        "grafana-dashboard-configmap.yaml",
    ] {
        let text = read_manifest(name);
        assert!(
            kustomization.contains(&format!("  - {name}\n")),
            "kustomization.yaml lacks {name}"
        );
        assert_eq!(
            text.matches("\nkind: ").count(),
            1,
            "{name} holds one resource"
        );
        for label in [
            "app.kubernetes.io/name: dtredact",
            "app.kubernetes.io/part-of: dtredact",
        ] {
            assert!(text.contains(label), "{name} lacks label {label}");
        }
    }
    let monitor = read_manifest("servicemonitor.yaml");
    assert!(monitor.contains("kind: ServiceMonitor"));
    assert!(
        monitor.contains("- port: admin\n"),
        "ServiceMonitor does not scrape port admin"
    );
    assert!(
        monitor.contains("path: /metrics\n"),
        "ServiceMonitor does not scrape /metrics"
    );
}

#[test]
fn dashboard_and_rules_use_exported_metrics() {
    let mut exprs = Vec::new();
    let dashboard = dashboard();
    collect_exprs(&dashboard, &mut exprs);
    let mut used = metric_names(&exprs.join("\n"));
    let dashboard_count = used.len();
    used.extend(metric_names(&read_manifest("alert-rules.yml")));
    assert!(
        dashboard_count >= 10,
        "dashboard uses only {dashboard_count} metrics: {used:?}"
    );

    let mut exported = BTreeSet::new();
    let leaks = LeakInput::classic();
    let mut filter = AdminProcess::filter();
    filter.write_stdin(&leaks.input);
    filter.read_stdout(leaks.expected_output.len());
    exported.extend(filter.scrape().1.names());
    exported.extend(exercised_proxy_metrics(&leaks));

    let missing: Vec<&String> = used.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "the dashboard or alert-rules.yml use metrics that neither a filter nor a proxy \
         exports after a leak, a forwarded request, a rejected body and a failed reload: \
         {missing:?}; exported: {exported:?}"
    );
}

/// Runs `dtredact proxy` in front of a loopback upstream, sends it a
/// request with a token and one with an unknown Content-Encoding, makes a
/// config reload fail, and returns the metric names it then exports.
fn exercised_proxy_metrics(leaks: &LeakInput) -> BTreeSet<String> {
    let dir = tempfile::tempdir().expect("failed to create a temporary folder");
    let config = dir.path().join("dtredact.toml");
    fs::write(&config, "").expect("failed to write an empty config");
    let upstream = Upstream::start();
    let upstream_url = format!("http://{}", upstream.addr);
    let config_arg = config.display().to_string();
    let mut proxy = AdminProcess::start(&[
        "proxy",
        "--config",
        &config_arg,
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream_url,
        "--admin-addr",
        "127.0.0.1:0",
    ]);
    let listening = proxy.stderr.wait_until(START_TIMEOUT, |bytes| {
        logged_addr(bytes, "listen").is_some()
    });
    assert!(
        listening,
        "dtredact proxy logged no `listen=ADDR` line; stderr: {}",
        String::from_utf8_lossy(&proxy.stderr.bytes)
    );
    let listen = logged_addr(&proxy.stderr.bytes, "listen").expect("checked above");

    let forwarded = http_request(listen, "POST", "/logs", "", &leaks.input)
        .unwrap_or_else(|e| panic!("POST through the proxy failed: {e}"));
    assert_eq!(
        forwarded.status,
        200,
        "forwarded request: {}",
        forwarded.text()
    );
    let rejected = http_request(
        listen,
        "POST",
        "/logs",
        "Content-Encoding: x-unknown\r\n",
        b"opaque",
    )
    .unwrap_or_else(|e| panic!("POST with an unknown encoding failed: {e}"));
    assert!(
        (400..500).contains(&rejected.status),
        "a body with an unknown Content-Encoding got status {}",
        rejected.status
    );

    fs::write(&config, "this is not TOML [").expect("failed to write an invalid config");
    let pid =
        rustix::process::Pid::from_raw(proxy.child.id() as i32).expect("child pid is positive");
    rustix::process::kill_process(pid, rustix::process::Signal::Hup)
        .expect("failed to send SIGHUP");
    let failure = [("result", "failure")];
    // The series exists at zero from the start; wait for the count.
    let (_, metrics) =
        proxy.scrape_until(|m| m.value("dtredact_config_reloads_total", &failure) >= 1.0);
    assert_eq!(
        metrics.value("dtredact_config_reloads_total", &failure),
        1.0,
        "reload of an invalid config after SIGHUP"
    );
    assert_eq!(
        metrics.value(
            "dtredact_bodies_rejected_total",
            &[("reason", "unknown_encoding")]
        ),
        1.0
    );
    assert_eq!(
        metrics.value(
            "dtredact_redactions_total",
            &[
                ("mode", "proxy"),
                ("rule", RULE_TOKEN),
                ("encoding", "plain")
            ]
        ),
        leaks.total() as f64
    );
    assert_eq!(
        upstream.bodies().first().map(Vec::as_slice),
        Some(leaks.expected_output.as_slice()),
        "the upstream did not receive the masked body"
    );
    metrics.names()
}

/// A loopback HTTP server that responds to every request with 200 and keeps
/// the request bodies. It stops accepting when dropped or after
/// [`START_TIMEOUT`].
struct Upstream {
    addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl Upstream {
    fn start() -> Upstream {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};

        let listener = TcpListener::bind("127.0.0.1:0").expect("failed to bind the upstream");
        listener
            .set_nonblocking(true)
            .expect("failed to make the upstream non-blocking");
        let addr = listener
            .local_addr()
            .expect("bound listener has an address");
        let stop = Arc::new(AtomicBool::new(false));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (thread_stop, thread_bodies) = (Arc::clone(&stop), Arc::clone(&bodies));
        thread::spawn(move || {
            let deadline = Instant::now() + START_TIMEOUT;
            while !thread_stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Some(body) = answer_ok(stream) {
                            thread_bodies.lock().expect("bodies lock").push(body);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => break,
                }
            }
        });
        Upstream { addr, stop, bodies }
    }

    fn bodies(&self) -> Vec<Vec<u8>> {
        self.bodies.lock().expect("bodies lock").clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Reads one request with a Content-Length body, responds with 200 and returns
/// the body. Returns `None` when the request is cut short.
fn answer_ok(mut stream: TcpStream) -> Option<Vec<u8>> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT)).ok()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let (head_end, length) = loop {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = memchr::memmem::find(&raw, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (end + 4, length);
        }
    };
    while raw.len() < head_end + length {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .ok()?;
    Some(raw[head_end..head_end + length].to_vec())
}
