#!/usr/bin/env bash
# Load test of `dtredact proxy` on loopback: requests/s and latency of
#   (a) upstream   the bench_upstream sink, hit directly;
#   (b) plain      the proxy with --no-redaction in front of it;
#   (c) redact     the proxy with redaction in front of it;
# with 1 KiB JSON bodies that each carry one synthetic Dynatrace token.
#
# Usage: benches/proxy_load.sh [DIR]
#
# DIR keeps the request body, the wrk script, the server logs and the raw
# results; without it a temporary directory is used and removed at exit.
#
# Environment:
#   DTREDACT_LOAD_DURATION     seconds of load per case and run (default 10)
#   DTREDACT_LOAD_RUNS         runs per case (default 6)
#   DTREDACT_LOAD_CONNECTIONS  open connections (default 32)
#   DTREDACT_LOAD_THREADS      wrk threads (default 2)
#   DTREDACT_LOAD_FEATURES     cargo features of the proxy build, e.g. mimalloc
#   CARGO_TARGET_DIR           cargo's target directory (default ./target)
#
# The load generator is wrk (Debian package `wrk`, installed with apt-get
# when missing). Each run sends the cases one after the other, (a) first and
# then (b) and (c) in turn: (b) before (c) in odd runs, after it in even
# runs, so neither always follows the fast upstream case. One 2-second
# warm-up per case comes first and is not recorded.
#
# The redaction cost is the median, over the runs, of (c)'s requests/s
# divided by (b)'s in the same run: the two ran seconds apart on the same
# machine, and the median ignores a run that machine noise spoiled. The
# best run of each case (highest requests/s) is reported too, with its
# latencies; p99 latency is compared between the best runs.
#
# The run also checks that redaction happened, and exits 1 when it did not:
#   - before the load, one body through (b) must reach the sink with the
#     token's secret and one through (c) without it;
#   - in every run of (c), dtredact_redactions_total on the admin /metrics
#     must grow by at least the requests wrk completed, and by at most that
#     plus the connections (requests cut off when wrk stops);
#   - the sink must see the secret in no body during (c), and in every body
#     during (b);
#   - wrk must report no non-2xx response and no socket error.
#
# wrk is a closed loop: each connection sends its next request when the
# previous response arrives, so latency under this load is mostly queueing
# (p50 is close to connections / requests-per-second).

set -euo pipefail

DURATION=${DTREDACT_LOAD_DURATION:-10}
RUNS=${DTREDACT_LOAD_RUNS:-6}
CONNECTIONS=${DTREDACT_LOAD_CONNECTIONS:-32}
THREADS=${DTREDACT_LOAD_THREADS:-2}
WARMUP=2
INGEST_PATH=/api/v2/logs/ingest

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release

if [[ $# -ge 1 ]]; then
    DIR=$1
    mkdir -p "$DIR"
else
    DIR=$(mktemp -d)
fi
DIR=$(cd "$DIR" && pwd)

log() { printf '%s\n' "$*" >&2; }
fail() {
    log "FAILED: $*"
    exit 1
}

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ $# -eq 0 ]]; then
        rm -rf "$DIR"
    fi
}
if [[ $# -ge 1 ]]; then
    trap 'cleanup keep' EXIT
else
    trap cleanup EXIT
fi

# --- tools -----------------------------------------------------------------

if ! command -v wrk >/dev/null; then
    log "wrk not found: installing it with apt-get"
    if ! { apt-get update -qq && apt-get install -y -qq wrk; } >&2; then
        fail "could not install wrk; install the Debian package wrk and rerun"
    fi
fi
for tool in curl python3; do
    command -v "$tool" >/dev/null || fail "$tool not found; install it and rerun"
done

log "building release binaries in $TARGET"
FEATURES=${DTREDACT_LOAD_FEATURES:-}
(cd "$ROOT" && cargo build --release --quiet --bin dtredact --example bench_upstream \
    ${FEATURES:+--features "$FEATURES"})
DTREDACT=$BIN/dtredact
UPSTREAM=$BIN/examples/bench_upstream

# --- request body and wrk script -------------------------------------------

# Writes body.json, exactly 1024 bytes: a JSON array of log records shaped
# like those of the Dynatrace log ingest API, one of which contains a
# synthetic dt0c01 token. Prints the token's secret part.
SECRET=$(python3 - "$DIR/body.json" <<'PY'
import json
import secrets
import string
import sys

ALNUM = string.ascii_uppercase + string.digits
SIZE = 1024


def random_upper_alnum(length):
    return "".join(secrets.choice(ALNUM) for _ in range(length))


public = random_upper_alnum(24)
secret = random_upper_alnum(64)
token = f"dt0c01.{public}.{secret}"
records = [
    {
        "timestamp": "2024-05-14T09:12:03.120Z",
        "severity": "INFO",
        "log.source": "/var/log/checkout/app.log",
        "content": "GET /api/cart/items 200 18ms user=4411 trace=7f3a9c1e",
    },
    {
        "timestamp": "2024-05-14T09:12:03.481Z",
        "severity": "WARN",
        "log.source": "/var/log/checkout/app.log",
        "content": "retrying POST https://example.invalid/api/v2/metrics/ingest "
        f"with header Authorization: Api-Token {token} after 503",
    },
    {
        "timestamp": "2024-05-14T09:12:04.002Z",
        "severity": "INFO",
        "log.source": "/var/log/checkout/app.log",
        "content": "payment authorised order=88213 amount=42.10 currency=EUR",
    },
]
filler = {
    "timestamp": "2024-05-14T09:12:04.310Z",
    "severity": "DEBUG",
    "log.source": "/var/log/checkout/app.log",
    "content": "",
}
records.append(filler)
base = len(json.dumps(records, separators=(",", ":")).encode())
if base > SIZE:
    sys.exit(f"body template is {base} bytes, more than {SIZE}")
filler["content"] = "cache stats " + "x" * (SIZE - base - len("cache stats "))
body = json.dumps(records, separators=(",", ":")).encode()
assert len(body) == SIZE, len(body)
with open(sys.argv[1], "wb") as out:
    out.write(body)
print(secret)
PY
)

# wrk builds its request once per thread, after init(). The done() callback
# prints one machine-readable line, with latencies in microseconds.
cat >"$DIR/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function init(args)
    local file = assert(io.open(args[1], "rb"))
    wrk.body = file:read("*a")
    file:close()
end

function done(summary, latency, requests)
    local errors = summary.errors
    io.write(string.format(
        "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d socket_errors=%d\n",
        summary.requests, summary.duration,
        latency:percentile(50), latency:percentile(99),
        errors.status, errors.connect + errors.read + errors.write + errors.timeout))
end
LUA

# --- servers ---------------------------------------------------------------

# Prints N distinct free loopback ports. Another process may take one before
# it is bound, and then the readiness checks below fail and print the log.
free_ports() {
    python3 - "$1" <<'PY'
import socket
import sys

sockets = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    sockets.append(s)
print(" ".join(str(s.getsockname()[1]) for s in sockets))
PY
}
read -r UPSTREAM_PORT PLAIN_PORT PLAIN_ADMIN REDACT_PORT REDACT_ADMIN < <(free_ports 5)

export RUST_LOG=${RUST_LOG:-warn}
"$UPSTREAM" --listen "127.0.0.1:$UPSTREAM_PORT" --needle "$SECRET" \
    2>"$DIR/upstream.log" &
PIDS+=($!)
"$DTREDACT" proxy --listen "127.0.0.1:$PLAIN_PORT" \
    --upstream "http://127.0.0.1:$UPSTREAM_PORT" \
    --admin-addr "127.0.0.1:$PLAIN_ADMIN" --no-redaction \
    2>"$DIR/proxy-plain.log" &
PIDS+=($!)
"$DTREDACT" proxy --listen "127.0.0.1:$REDACT_PORT" \
    --upstream "http://127.0.0.1:$UPSTREAM_PORT" \
    --admin-addr "127.0.0.1:$REDACT_ADMIN" \
    2>"$DIR/proxy-redact.log" &
PIDS+=($!)

wait_ready() {
    local name=$1 url=$2 log_file=$3
    for _ in $(seq 100); do
        if curl -sf -o /dev/null "$url"; then
            return 0
        fi
        sleep 0.1
    done
    log "--- $log_file"
    cat "$log_file" >&2 || true
    fail "$name did not answer $url within 10 s"
}
wait_ready upstream "http://127.0.0.1:$UPSTREAM_PORT/_stats" "$DIR/upstream.log"
wait_ready "proxy --no-redaction" "http://127.0.0.1:$PLAIN_ADMIN/readyz" "$DIR/proxy-plain.log"
wait_ready proxy "http://127.0.0.1:$REDACT_ADMIN/readyz" "$DIR/proxy-redact.log"

# Prints the named counter from the sink's /_stats.
upstream_stat() {
    curl -sf "http://127.0.0.1:$UPSTREAM_PORT/_stats" | awk -v name="$1" '$1 == name { print $2 }'
}

# Prints the sum of dtredact_redactions_total over all label sets.
redactions() {
    curl -sf "http://127.0.0.1:$1/metrics" |
        awk '/^dtredact_redactions_total[{ ]/ { sum += $NF } END { printf "%d\n", sum }'
}

post_once() {
    curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' \
        --data-binary "@$DIR/body.json" "http://127.0.0.1:$1$INGEST_PATH"
}

# --- preflight: the check can see a secret, and redaction removes it --------

before=$(upstream_stat needle_bodies)
post_once "$PLAIN_PORT" || fail "POST through proxy --no-redaction failed"
after=$(upstream_stat needle_bodies)
[[ $((after - before)) -eq 1 ]] ||
    fail "the sink did not see the secret in a body sent through --no-redaction ($before -> $after)"

before=$(upstream_stat needle_bodies)
redactions_before=$(redactions "$REDACT_ADMIN")
post_once "$REDACT_PORT" || fail "POST through the redacting proxy failed"
after=$(upstream_stat needle_bodies)
redactions_after=$(redactions "$REDACT_ADMIN")
[[ $after -eq $before ]] ||
    fail "the sink saw the secret in a body sent through the redacting proxy"
[[ $((redactions_after - redactions_before)) -eq 1 ]] ||
    fail "dtredact_redactions_total grew by $((redactions_after - redactions_before)) for one body, expected 1"
log "preflight passed: the secret reaches the sink only through --no-redaction"

# --- load ------------------------------------------------------------------

case_port() {
    case $1 in
        upstream) echo "$UPSTREAM_PORT" ;;
        plain) echo "$PLAIN_PORT" ;;
        redact) echo "$REDACT_PORT" ;;
    esac
}

# Runs wrk for $2 seconds against case $1 and prints its RESULT line.
run_wrk() {
    local port
    port=$(case_port "$1")
    timeout $(($2 + 30)) wrk -t "$THREADS" -c "$CONNECTIONS" -d "${2}s" --timeout 5s \
        -s "$DIR/post.lua" "http://127.0.0.1:$port$INGEST_PATH" -- "$DIR/body.json" |
        grep '^RESULT ' || fail "wrk against $1 printed no RESULT line"
}

CASES=(upstream plain redact)
for name in "${CASES[@]}"; do
    log "warm-up: $name, ${WARMUP}s"
    run_wrk "$name" "$WARMUP" >/dev/null
done

RESULTS=$DIR/results.txt
: >"$RESULTS"
for run in $(seq "$RUNS"); do
    if ((run % 2)); then
        order=(upstream plain redact)
    else
        order=(upstream redact plain)
    fi
    for name in "${order[@]}"; do
        log "run $run/$RUNS: $name, ${DURATION}s, $CONNECTIONS connections, $THREADS threads"
        sink_before=$(upstream_stat requests)
        needle_before=$(upstream_stat needle_bodies)
        redactions_before=$(redactions "$REDACT_ADMIN")
        result=$(run_wrk "$name" "$DURATION")
        # Requests cut off when wrk stops may still reach the sink.
        sleep 0.2
        sink=$(($(upstream_stat requests) - sink_before))
        needle=$(($(upstream_stat needle_bodies) - needle_before))
        redacted=$(($(redactions "$REDACT_ADMIN") - redactions_before))
        echo "case=$name run=$run ${result#RESULT } sink=$sink needle=$needle redactions=$redacted" |
            tee -a "$RESULTS" >&2
    done
done

# --- report ----------------------------------------------------------------

python3 - "$RESULTS" "$CONNECTIONS" <<'PY'
import sys

path, connections = sys.argv[1], int(sys.argv[2])
rows = []
with open(path) as lines:
    for line in lines:
        fields = dict(item.split("=", 1) for item in line.split())
        row = {key: (value if key == "case" else int(value)) for key, value in fields.items()}
        row["rps"] = row["requests"] / (row["duration_us"] / 1e6)
        rows.append(row)

problems = []
for row in rows:
    where = f"{row['case']} run {row['run']}"
    if row["non2xx"] or row["socket_errors"]:
        problems.append(f"{where}: {row['non2xx']} non-2xx responses, {row['socket_errors']} socket errors")
    if row["case"] == "redact":
        low, high = row["requests"], row["requests"] + connections
        if not low <= row["redactions"] <= high:
            problems.append(f"{where}: dtredact_redactions_total grew by {row['redactions']}, expected {low} to {high}")
        if row["needle"]:
            problems.append(f"{where}: the sink saw the secret in {row['needle']} bodies")
    else:
        if row["redactions"]:
            problems.append(f"{where}: dtredact_redactions_total grew by {row['redactions']} without redaction traffic")
        if row["needle"] != row["sink"]:
            problems.append(f"{where}: the sink saw the secret in {row['needle']} of {row['sink']} bodies, expected all")

print("all runs (latencies in ms):")
print(f"{'case':<9} {'run':>3} {'req/s':>9} {'p50':>7} {'p99':>7} {'requests':>9} {'sink':>9} {'redactions':>10} {'secret seen':>11}")
for row in rows:
    print(f"{row['case']:<9} {row['run']:>3} {row['rps']:>9.0f} {row['p50_us'] / 1000:>7.3f} {row['p99_us'] / 1000:>7.3f} "
          f"{row['requests']:>9} {row['sink']:>9} {row['redactions']:>10} {row['needle']:>11}")

best = {}
for row in rows:
    if row["case"] not in best or row["rps"] > best[row["case"]]["rps"]:
        best[row["case"]] = row

print()
print("best run per case (highest req/s):")
labels = {"upstream": "(a) upstream direct", "plain": "(b) proxy --no-redaction", "redact": "(c) proxy, redaction"}
print(f"{'case':<26} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
for name in ("upstream", "plain", "redact"):
    row = best[name]
    print(f"{labels[name]:<26} {row['rps']:>9.0f} {row['p50_us'] / 1000:>8.3f} {row['p99_us'] / 1000:>8.3f}")

a, b, c = best["upstream"], best["plain"], best["redact"]
best_ratio = c["rps"] / b["rps"]
# (b) and (c) of one run saw the same machine, seconds apart.
paired = sorted(
    next(r for r in rows if r["case"] == "redact" and r["run"] == run)["rps"]
    / next(r for r in rows if r["case"] == "plain" and r["run"] == run)["rps"]
    for run in sorted({r["run"] for r in rows})
)
median = paired[len(paired) // 2] if len(paired) % 2 else sum(paired[len(paired) // 2 - 1:len(paired) // 2 + 1]) / 2
print()
print(f"req/s (c)/(b), median of the runs: {median:.3f} "
      f"(redaction costs {100 * (1 - median):.1f}% of the request rate; target under 10%)")
print(f"req/s (c)/(b) run by run, sorted: {', '.join(f'{x:.3f}' for x in paired)}")
print(f"req/s (c)/(b) of the best runs: {best_ratio:.3f}")
print(f"p99 added (c)-(b): {(c['p99_us'] - b['p99_us']) / 1000:+.3f} ms (target under 1 ms)")
print(f"p99 added (b)-(a): {(b['p99_us'] - a['p99_us']) / 1000:+.3f} ms (the proxy hop itself)")
print(f"p50 added (c)-(b): {(c['p50_us'] - b['p50_us']) / 1000:+.3f} ms")
print(f"redaction check, best (c) run: wrk completed {c['requests']} requests, "
      f"dtredact_redactions_total grew by {c['redactions']}, the sink saw the secret in {c['needle']} bodies")

if problems:
    print()
    for problem in problems:
        print(f"FAILED: {problem}")
    sys.exit(1)
print("checks passed: every (c) body was redacted and no secret reached the sink")
PY
