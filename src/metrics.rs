//! Prometheus metrics, and the telemetry hub that every front end reports
//! findings to: counters, the leak inventory, and one rate-limited warning
//! per leaked token identifier.
//!
//! Metric names start with `dtredact_`, counters end in `_total`, and units
//! are in the name. Label values come from fixed sets only: rule names
//! from the config, modes, encodings, reasons and status classes. Token
//! contents, identifiers included, never become labels, because each would
//! be a new time series; identifiers are in `/leaks` instead.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::report::Inventory;
use crate::{Encoding, Finding};

/// Front end a metric comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `dtredact filter`.
    Filter,
    /// `dtredact proxy`.
    Proxy,
    /// `dtredact tail`.
    Tail,
    /// `dtredact scan`.
    Scan,
}

impl Mode {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Filter => "filter",
            Mode::Proxy => "proxy",
            Mode::Tail => "tail",
            Mode::Scan => "scan",
        }
    }
}

/// Every metric dtredact exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Bytes read and written, by mode and direction (`in`, `out`).
    pub bytes: IntCounterVec,
    /// Masked secrets by mode, rule and encoding.
    pub findings: IntCounterVec,
    /// Unix time of the last masked secret.
    pub last_leak: IntGauge,
    /// Held-back bytes released because input went idle.
    pub idle_flushes: IntCounterVec,
    /// Proxy requests by status class (`2xx` .. `5xx`).
    pub http_requests: IntCounterVec,
    /// Proxy request duration, from request headers to response headers.
    pub request_duration: Histogram,
    /// Time the upstream took to send response headers.
    pub upstream_duration: Histogram,
    /// Bodies rejected by reason.
    pub bodies_rejected: IntCounterVec,
    /// Bodies passed without inspection because `pass_uninspectable` is on.
    pub uninspectable_passed: IntCounter,
    /// Errors caught, by kind.
    pub errors: IntCounterVec,
    /// Config reloads by result (`success`, `failure`).
    pub reloads: IntCounterVec,
    /// Files followed by `tail`.
    pub files_followed: IntGauge,
    /// Lines written by `tail`.
    pub tail_lines: IntCounter,
    /// Token identifiers evicted from the leak inventory.
    pub leak_ids_evicted: IntCounter,
    /// Whether the process is ready (1) or not (0), by mode.
    pub ready: IntGaugeVec,
    /// Stage durations in the proxy by stage, for the latency dashboard.
    pub stage_duration: HistogramVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("registered once");
    c
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("registered once");
    c
}

fn histogram(registry: &Registry, name: &str, help: &str) -> Histogram {
    let buckets = vec![
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .expect("valid metric");
    registry
        .register(Box::new(h.clone()))
        .expect("registered once");
    h
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers every metric, with build info and process
    /// metrics.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let build = IntGaugeVec::new(
            Opts::new(
                "dtredact_build_info",
                "Build information; the value is always 1.",
            ),
            &["version"],
        )
        .expect("valid metric");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        registry.register(Box::new(build)).expect("registered once");
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            let _ = registry.register(Box::new(process));
        }
        let last_leak = IntGauge::new(
            "dtredact_last_leak_timestamp_seconds",
            "Unix time of the last masked secret (0 when none).",
        )
        .expect("valid metric");
        registry
            .register(Box::new(last_leak.clone()))
            .expect("registered once");
        let files_followed =
            IntGauge::new("dtredact_tail_files_followed", "Files tail is following.")
                .expect("valid metric");
        registry
            .register(Box::new(files_followed.clone()))
            .expect("registered once");
        let ready = IntGaugeVec::new(
            Opts::new(
                "dtredact_ready",
                "1 while the process accepts work, 0 while starting or draining.",
            ),
            &["mode"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(ready.clone()))
            .expect("registered once");
        let stage_duration = HistogramVec::new(
            HistogramOpts::new(
                "dtredact_proxy_stage_duration_seconds",
                "Time spent per proxy stage (redact_headers, first_body_frame).",
            )
            .buckets(vec![
                0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 1.0,
            ]),
            &["stage"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(stage_duration.clone()))
            .expect("registered once");

        let metrics = Metrics {
            bytes: counter_vec(
                &registry,
                "dtredact_bytes_total",
                "Bytes processed by mode and direction.",
                &["mode", "direction"],
            ),
            findings: counter_vec(
                &registry,
                "dtredact_redactions_total",
                "Secrets masked, by mode, rule and encoding.",
                &["mode", "rule", "encoding"],
            ),
            last_leak,
            idle_flushes: counter_vec(
                &registry,
                "dtredact_idle_flushes_total",
                "Held-back bytes released because input went idle.",
                &["mode"],
            ),
            http_requests: counter_vec(
                &registry,
                "dtredact_http_requests_total",
                "Proxy requests by response status class.",
                &["status_class"],
            ),
            request_duration: histogram(
                &registry,
                "dtredact_http_request_duration_seconds",
                "Proxy request duration until response headers.",
            ),
            upstream_duration: histogram(
                &registry,
                "dtredact_upstream_request_duration_seconds",
                "Upstream time until response headers.",
            ),
            bodies_rejected: counter_vec(
                &registry,
                "dtredact_bodies_rejected_total",
                "Request bodies rejected, by reason.",
                &["reason"],
            ),
            uninspectable_passed: counter(
                &registry,
                "dtredact_uninspectable_bodies_passed_total",
                "Bodies forwarded uninspected because pass_uninspectable is on.",
            ),
            errors: counter_vec(
                &registry,
                "dtredact_errors_total",
                "Errors caught, by kind.",
                &["kind"],
            ),
            reloads: counter_vec(
                &registry,
                "dtredact_config_reloads_total",
                "Config reloads, by result.",
                &["result"],
            ),
            files_followed,
            tail_lines: counter(
                &registry,
                "dtredact_tail_lines_total",
                "Lines written by tail.",
            ),
            leak_ids_evicted: counter(
                &registry,
                "dtredact_leak_ids_evicted_total",
                "Token identifiers evicted from the leak inventory.",
            ),
            ready,
            stage_duration,
            registry,
        };
        metrics.init_fixed_series();
        metrics
    }

    /// Creates the series of fixed label sets at zero, so that `increase()`
    /// and alerts see their first event.
    fn init_fixed_series(&self) {
        for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
            self.http_requests.with_label_values(&[class]);
        }
        for reason in ["too_large", "bomb", "unknown_encoding", "corrupt"] {
            self.bodies_rejected.with_label_values(&[reason]);
        }
        for result in ["success", "failure"] {
            self.reloads.with_label_values(&[result]);
        }
        for mode in [Mode::Filter, Mode::Proxy, Mode::Tail, Mode::Scan] {
            self.idle_flushes.with_label_values(&[mode.as_str()]);
            for direction in ["in", "out"] {
                self.bytes.with_label_values(&[mode.as_str(), direction]);
            }
        }
        for kind in crate::proxy::ProxyError::KINDS {
            self.errors.with_label_values(&[kind]);
        }
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let families = self.registry.gather();
        // Encoding into a Vec only fails on invalid metric names, which
        // `new` would have rejected.
        let _ = TextEncoder::new().encode(&families, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Pre-creates the finding series of every rule and encoding at zero,
    /// so that dashboards and `increase()` see them before the first leak.
    pub fn init_rules(&self, mode: Mode, rules: &[Arc<str>]) {
        for rule in rules {
            for encoding in Encoding::ALL {
                self.findings
                    .with_label_values(&[mode.as_str(), rule, encoding.as_str()]);
            }
        }
    }
}

/// Shortest time between two warnings for the same token identifier.
pub const LEAK_WARN_INTERVAL: Duration = Duration::from_secs(60);

/// Destination of findings: metrics, the leak inventory, and the log.
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// The metrics.
    pub metrics: Metrics,
    mode: Mode,
    /// Everything a finding updates besides the metrics, behind one lock,
    /// so that a batch of findings takes one lock however many it holds.
    ledger: Arc<Mutex<Ledger>>,
}

#[derive(Debug)]
struct Ledger {
    inventory: Inventory,
    warned: WarnLimiter,
    /// `dtredact_findings_total` series looked up so far, by rule and
    /// encoding: a lookup by label values hashes the strings and takes the
    /// metric's own lock.
    series: Vec<(Arc<str>, Encoding, IntCounter)>,
    /// Last value written to `dtredact_last_leak_timestamp_seconds`.
    last_leak: u64,
}

/// A warning decided under the ledger's lock and logged after it.
struct LeakWarning {
    token_id: Option<String>,
    rule: Arc<str>,
    encoding: Encoding,
    suppressed: u64,
}

impl Telemetry {
    /// Creates the hub for `mode`, keeping at most `max_ids` identifiers.
    pub fn new(mode: Mode, max_ids: usize) -> Telemetry {
        Telemetry {
            metrics: Metrics::new(),
            mode,
            ledger: Arc::new(Mutex::new(Ledger {
                inventory: Inventory::new(max_ids),
                warned: WarnLimiter::new(max_ids),
                series: Vec::new(),
                last_leak: 0,
            })),
        }
    }

    /// Returns the mode label.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Calls `f` with the leak inventory, under its lock.
    pub fn with_inventory<R>(&self, f: impl FnOnce(&Inventory) -> R) -> R {
        f(&self.lock().inventory)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts findings made in `source` (a file, `stdin`, a route) and logs
    /// a warning per identifier, at most once per [`LEAK_WARN_INTERVAL`].
    pub fn record(&self, findings: &[Finding], source: &str) {
        if findings.is_empty() {
            return;
        }
        let now = SystemTime::now();
        let instant = Instant::now();
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let source: Arc<str> = Arc::from(source);
        let mut warnings = Vec::new();
        let mut guard = self.lock();
        let ledger = &mut *guard;
        for f in findings {
            self.series(&mut ledger.series, &f.rule, f.encoding).inc();
        }
        let evicted_before = ledger.inventory.evicted();
        for f in findings {
            ledger.inventory.record_shared(f, &source, now);
        }
        let evicted = ledger.inventory.evicted() - evicted_before;
        if evicted > 0 {
            self.metrics.leak_ids_evicted.inc_by(evicted);
        }
        if secs != ledger.last_leak {
            ledger.last_leak = secs;
            self.metrics
                .last_leak
                .set(i64::try_from(secs).unwrap_or(i64::MAX));
        }
        for f in findings {
            let key = f.token_id.as_deref().unwrap_or(&f.rule);
            if let Some(suppressed) = ledger.warned.check(key, instant) {
                warnings.push(LeakWarning {
                    token_id: f.token_id.clone(),
                    rule: Arc::clone(&f.rule),
                    encoding: f.encoding,
                    suppressed,
                });
            }
        }
        drop(guard);
        for w in warnings {
            tracing::warn!(
                token_id = w.token_id.as_deref().unwrap_or("-"),
                rule = &*w.rule,
                encoding = w.encoding.as_str(),
                source = &*source,
                suppressed_repeats = w.suppressed,
                "masked a leaked secret; rotate this token"
            );
        }
    }

    /// Returns the findings counter of `rule` and `encoding`, looking it up
    /// by label values only the first time.
    fn series<'a>(
        &self,
        series: &'a mut Vec<(Arc<str>, Encoding, IntCounter)>,
        rule: &Arc<str>,
        encoding: Encoding,
    ) -> &'a IntCounter {
        let found = series
            .iter()
            .position(|(r, e, _)| *e == encoding && (Arc::ptr_eq(r, rule) || **r == **rule));
        let index = match found {
            Some(index) => index,
            None => {
                let counter = self.metrics.findings.with_label_values(&[
                    self.mode.as_str(),
                    rule,
                    encoding.as_str(),
                ]);
                series.push((Arc::clone(rule), encoding, counter));
                series.len() - 1
            }
        };
        &series[index].2
    }

    /// Counts bytes in and out.
    pub fn bytes(&self, bytes_in: u64, bytes_out: u64) {
        let mode = self.mode.as_str();
        self.metrics
            .bytes
            .with_label_values(&[mode, "in"])
            .inc_by(bytes_in);
        self.metrics
            .bytes
            .with_label_values(&[mode, "out"])
            .inc_by(bytes_out);
    }
}

/// Most leak warnings logged per second over all identifiers, so that a
/// stream full of distinct tokens does not flood the log; the metrics and
/// the leak inventory still count every one.
pub const LEAK_WARNS_PER_SECOND: u32 = 20;

/// Allows one warning per key per interval, and at most
/// [`LEAK_WARNS_PER_SECOND`] in all; counts the rest.
#[derive(Debug)]
struct WarnLimiter {
    max_keys: usize,
    keys: std::collections::HashMap<String, (Instant, u64), foldhash::fast::RandomState>,
    /// Start of the current one-second window and warnings logged in it.
    window: Option<(Instant, u32)>,
}

impl WarnLimiter {
    fn new(max_keys: usize) -> WarnLimiter {
        WarnLimiter {
            max_keys: max_keys.max(1),
            keys: std::collections::HashMap::default(),
            window: None,
        }
    }

    /// Returns `Some(suppressed)` when a warning for `key` is due, with the
    /// number of repeats suppressed since the last one.
    fn check(&mut self, key: &str, now: Instant) -> Option<u64> {
        let due = self.check_key(key, now)?;
        match &mut self.window {
            Some((start, count)) if now.duration_since(*start) < Duration::from_secs(1) => {
                if *count >= LEAK_WARNS_PER_SECOND {
                    // Over the global budget: count it as suppressed for
                    // this key, and let its next warning come early.
                    if let Some((last, suppressed)) = self.keys.get_mut(key) {
                        *suppressed = due + 1;
                        *last = now.checked_sub(LEAK_WARN_INTERVAL).unwrap_or(*last);
                    }
                    return None;
                }
                *count += 1;
            }
            _ => self.window = Some((now, 1)),
        }
        Some(due)
    }

    fn check_key(&mut self, key: &str, now: Instant) -> Option<u64> {
        if let Some((last, suppressed)) = self.keys.get_mut(key) {
            if now.duration_since(*last) < LEAK_WARN_INTERVAL {
                *suppressed += 1;
                return None;
            }
            let count = *suppressed;
            *last = now;
            *suppressed = 0;
            return Some(count);
        }
        if self.keys.len() >= self.max_keys {
            // Forget keys whose interval has passed; if none has, forget
            // all, which at worst repeats a warning early.
            self.keys
                .retain(|_, (last, _)| now.duration_since(*last) < LEAK_WARN_INTERVAL);
            if self.keys.len() >= self.max_keys {
                self.keys.clear();
            }
        }
        self.keys.insert(key.to_string(), (now, 0));
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_suppresses_repeats() {
        let mut l = WarnLimiter::new(10);
        let t0 = Instant::now();
        assert_eq!(l.check("a", t0), Some(0));
        assert_eq!(l.check("a", t0), None);
        assert_eq!(l.check("a", t0), None);
        assert_eq!(l.check("a", t0 + LEAK_WARN_INTERVAL), Some(2));
        assert_eq!(l.check("b", t0), Some(0));
    }

    #[test]
    fn limiter_caps_warnings_per_second() {
        let mut l = WarnLimiter::new(1000);
        let t0 = Instant::now();
        let logged = (0..100)
            .filter(|i| l.check(&format!("id{i}"), t0).is_some())
            .count();
        assert_eq!(logged, LEAK_WARNS_PER_SECOND as usize);
        // A suppressed key warns in the next second, with its count.
        assert_eq!(l.check("id99", t0 + Duration::from_secs(1)), Some(1));
    }

    #[test]
    fn render_has_build_info() {
        let m = Metrics::new();
        let text = m.render();
        assert!(text.contains("dtredact_build_info{version="), "{text}");
    }
}
