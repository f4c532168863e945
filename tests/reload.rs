//! Hot reload of the real binary: SIGHUP and a changed config file swap in
//! new rules for new data, an invalid config keeps the old rules, and no
//! secret value reaches the log or the metrics.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const ALPHA: &str = "alpha-secret-value-0001";
const BETA: &str = "beta-secret-value-0002";
const GAMMA: &str = "gamma-secret-value-0003";

fn rule(name: &str, literal: &str) -> String {
    format!("[[rules]]\nname = \"{name}\"\nliteral = \"{literal}\"\n")
}

/// Replaces the file in one step, as a ConfigMap update does.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} failed");
}

/// Collects stderr lines in the background and finds the address logged
/// after `key=`.
struct Stderr {
    lines: Arc<Mutex<Vec<String>>>,
}

impl Stderr {
    fn capture(child: &mut Child) -> Stderr {
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Stderr { lines }
    }

    fn addr(&self, key: &str) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for line in self.lines.lock().unwrap().iter() {
                if let Some(rest) = line.split(&format!("{key}=")).nth(1) {
                    let addr: String = rest
                        .chars()
                        .take_while(|c| !c.is_whitespace() && *c != '"')
                        .collect();
                    if let Ok(addr) = addr.trim_matches('"').parse() {
                        return addr;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no {key}= in the log");
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

/// Sends a GET and returns the response body.
fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).unwrap();
    response.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
}

/// Returns the value of one series in the metrics text, or 0.
fn metric(admin: SocketAddr, series: &str) -> f64 {
    http_get(admin, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn wait_metric(admin: SocketAddr, series: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(admin, series) < want {
        assert!(Instant::now() < deadline, "{series} did not reach {want}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn read_line(out: &mut BufReader<ChildStdout>) -> String {
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    line
}

#[test]
fn filter_reload_swaps_rules() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("dtredact.toml");
    write_atomically(&cfg, &rule("alpha", ALPHA));
    let mut child = Command::new(env!("CARGO_BIN_EXE_dtredact"))
        .args(["filter", "--admin-addr", "127.0.0.1:0", "-c"])
        .arg(&cfg)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Stderr::capture(&mut child);
    let admin = stderr.addr("admin");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let masked = |s: &str| "*".repeat(s.len());
    let success = r#"dtredact_config_reloads_total{result="success"}"#;
    let failure = r#"dtredact_config_reloads_total{result="failure"}"#;

    writeln!(stdin, "1 {ALPHA} {BETA}").unwrap();
    assert_eq!(
        read_line(&mut stdout),
        format!("1 {} {BETA}\n", masked(ALPHA))
    );

    // SIGHUP after a change: new data follows the new rule only.
    write_atomically(&cfg, &rule("beta", BETA));
    signal(&child, "HUP");
    wait_metric(admin, success, 1.0);
    writeln!(stdin, "2 {ALPHA} {BETA}").unwrap();
    assert_eq!(
        read_line(&mut stdout),
        format!("2 {ALPHA} {}\n", masked(BETA))
    );

    // An invalid config is rejected and the previous rules stay.
    write_atomically(&cfg, "[[rules]]\nname = \"broken\"\nregex = \"x+\"\n");
    signal(&child, "HUP");
    wait_metric(admin, failure, 1.0);
    writeln!(stdin, "3 {ALPHA} {BETA}").unwrap();
    assert_eq!(
        read_line(&mut stdout),
        format!("3 {ALPHA} {}\n", masked(BETA))
    );

    // A changed file is picked up without a signal.
    write_atomically(&cfg, &rule("gamma", GAMMA));
    wait_metric(admin, success, 2.0);
    writeln!(stdin, "4 {BETA} {GAMMA}").unwrap();
    assert_eq!(
        read_line(&mut stdout),
        format!("4 {BETA} {}\n", masked(GAMMA))
    );

    let metrics = http_get(admin, "/metrics");
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    let log = stderr.text();
    for secret in [ALPHA, BETA, GAMMA] {
        assert!(!log.contains(secret), "log contains a secret value: {log}");
        assert!(!metrics.contains(secret), "metrics contain a secret value");
    }
    assert!(log.contains("config reload rejected"), "{log}");
}

/// A one-connection-at-a-time HTTP upstream that records request bodies.
fn upstream() -> (SocketAddr, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let tx = tx.clone();
            thread::spawn(move || serve_one(tcp, tx));
        }
    });
    (addr, rx)
}

fn serve_one(tcp: TcpStream, tx: mpsc::Sender<String>) {
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(tcp.try_clone().unwrap());
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        tx.send(String::from_utf8(body).unwrap()).unwrap();
        let mut w = &tcp;
        w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .unwrap();
    }
}

fn post(proxy: SocketAddr, body: &str) -> String {
    let mut tcp = TcpStream::connect(proxy).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        tcp,
        "POST /logs HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn proxy_reload_swaps_rules() {
    let (up, bodies) = upstream();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("dtredact.toml");
    let proxy_table = format!("[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{up}\"\n\n");
    write_atomically(&cfg, &format!("{proxy_table}{}", rule("alpha", ALPHA)));
    let mut child = Command::new(env!("CARGO_BIN_EXE_dtredact"))
        .args(["proxy", "--admin-addr", "127.0.0.1:0", "-c"])
        .arg(&cfg)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Stderr::capture(&mut child);
    let admin = stderr.addr("admin");
    let proxy = stderr.addr("listen");
    let masked = |s: &str| "*".repeat(s.len());

    let response = post(proxy, &format!("{ALPHA} {BETA}"));
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let got = bodies.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(got, format!("{} {BETA}", masked(ALPHA)));

    write_atomically(&cfg, &format!("{proxy_table}{}", rule("beta", BETA)));
    signal(&child, "HUP");
    wait_metric(
        admin,
        r#"dtredact_config_reloads_total{result="success"}"#,
        1.0,
    );
    let response = post(proxy, &format!("{ALPHA} {BETA}"));
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let got = bodies.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(got, format!("{ALPHA} {}", masked(BETA)));

    signal(&child, "TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    let log = stderr.text();
    assert!(
        !log.contains(ALPHA) && !log.contains(BETA),
        "log contains a secret: {log}"
    );
}
