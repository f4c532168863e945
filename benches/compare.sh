#!/usr/bin/env bash
# Side-by-side throughput of `dtredact filter` against cat, a read+memmem
# loop, sed and ripgrep on generated corpora, with every output that should
# equal the expected output checked against it.
#
# Usage: benches/compare.sh [DIR]
#
# DIR keeps the corpora between runs (regenerated only when their settings
# change); without it a temporary directory is used and removed at exit.
#
# Environment:
#   DTREDACT_BENCH_SIZE     corpus size, e.g. 1GiB (default) or 256MiB
#   DTREDACT_BENCH_RUNS     timed runs per command; the best is kept (default 3)
#   DTREDACT_BENCH_TIMEOUT  seconds before one run is stopped (default 300)
#   CARGO_TARGET_DIR        cargo's target directory (default ./target)
#
# Figures are MB/s (10^6 bytes per second) over the input size, measured
# from the start to the end of each shell pipeline, so process start-up is
# included. Files are read once before timing, so they come from the page
# cache. On a shared machine the figures are noisy; best-of-N reduces that.

set -euo pipefail

SIZE=${DTREDACT_BENCH_SIZE:-1GiB}
RUNS=${DTREDACT_BENCH_RUNS:-3}
TIMEOUT=${DTREDACT_BENCH_TIMEOUT:-300}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release

if [[ $# -ge 1 ]]; then
    DIR=$1
    mkdir -p "$DIR"
else
    DIR=$(mktemp -d)
    trap 'rm -rf "$DIR"' EXIT
fi
DIR=$(cd "$DIR" && pwd)

log() { printf '%s\n' "$*" >&2; }

# --- tools -----------------------------------------------------------------

if ! command -v rg >/dev/null; then
    log "rg not found: installing ripgrep with apt-get"
    if ! { apt-get update -qq && apt-get install -y -qq ripgrep; } >&2; then
        log "failed to install ripgrep; rg rows are skipped"
    fi
fi
HAVE_RG=0
command -v rg >/dev/null && HAVE_RG=1

log "building release binaries in $TARGET"
(cd "$ROOT" && cargo build --release --quiet --bin dtredact --example gen_corpus --example read_memchr)
DTREDACT=$BIN/dtredact
MEMCHR=$BIN/examples/read_memchr
GEN=$BIN/examples/gen_corpus

# --- corpora ---------------------------------------------------------------

# gen NAME ARGS...: generates DIR/NAME unless it exists with the same args.
gen() {
    local name=$1
    shift
    local out=$DIR/$name
    local params="size=$SIZE $*"
    if [[ -f $out/params && $(cat "$out/params") == "$params" && -f $out/expected.log ]]; then
        log "corpus $name: reusing $out"
        return
    fi
    rm -rf "$out"
    log "corpus $name: generating $SIZE ($*)"
    "$GEN" --out "$out" --size "$SIZE" "$@" >"$DIR/$name.gen.txt"
    printf '%s' "$params" >"$out/params"
}

gen sparse --rate 0.0001 --seed 1
gen dense --rate 0.1 --seed 2
# Only complete classic tokens: the one shape the sed and rg regex covers.
gen classic --rate 0.01 --seed 3 --kinds classic
gen noline --rate 0.0001 --seed 4 --no-newlines

# --- timing ----------------------------------------------------------------

# The full-token rule as an extended regex: `dt0`, a type letter, two
# digits, a public part and a 64-character secret that no alphanumeric
# byte follows. It masks the secret and keeps the rest.
REGEX='([dD][tT]0[A-Za-z][0-9]{2}\.[A-Za-z0-9-]{8,128}\.)[A-Za-z0-9]{64}([^A-Za-z0-9]|$)'
STARS=$(printf '%*s' 64 '' | tr ' ' '*')
SED_SCRIPT="s/$REGEX/\\1$STARS\\2/g"
RG_REPLACE="\${1}$STARS\${2}"
export LC_ALL=C

# best_seconds CMD: runs CMD with bash RUNS times and prints the shortest
# wall time in seconds, or "timeout" / "failed".
best_seconds() {
    local cmd=$1 best="" i t0 t1 status
    for ((i = 0; i < RUNS; i++)); do
        t0=$(date +%s%N)
        status=0
        timeout "$TIMEOUT" bash -c "$cmd" || status=$?
        t1=$(date +%s%N)
        if [[ $status -eq 124 ]]; then
            echo timeout
            return
        elif [[ $status -ne 0 ]]; then
            echo "failed($status)"
            return
        fi
        if [[ -z $best || $((t1 - t0)) -lt $best ]]; then
            best=$((t1 - t0))
        fi
    done
    awk -v ns="$best" 'BEGIN { printf "%.3f", ns / 1e9 }'
}

is_number() { [[ $1 =~ ^[0-9.]+$ ]]; }

mbps() {
    local bytes=$1 seconds=$2
    if is_number "$seconds"; then
        awk -v b="$bytes" -v s="$seconds" 'BEGIN { printf "%.0f", b / s / 1e6 }'
    else
        echo "-"
    fi
}

ratio() {
    local a=$1 b=$2
    if is_number "$a" && is_number "$b" && [[ $b != 0 ]]; then
        awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }'
    else
        echo "-"
    fi
}

# check OUT EXPECTED: prints whether OUT equals EXPECTED.
check() {
    local first
    if first=$(cmp "$1" "$2" 2>&1); then
        echo "matches expected"
    else
        echo "DIFFERS: ${first##*: }"
    fi
}

declare -A RESULT

# row CORPUS LABEL CMD [NOTE]: times CMD with FILE replaced by the
# corpus input and prints a table row. NOTE is the output check, which the
# caller makes before. The MB/s go into RESULT[CORPUS/LABEL].
row() {
    local corpus=$1 label=$2 cmd=$3 note=${4:-}
    local input=$DIR/$corpus/input.log
    local bytes seconds rate
    bytes=$(stat -c %s "$input")
    seconds=$(best_seconds "${cmd//FILE/$input}")
    rate=$(mbps "$bytes" "$seconds")
    RESULT[$corpus/$label]=$rate
    printf '| %s | `%s` | %s | %s | %s | %s |\n' "$corpus" "${label//|/\\|}" "$seconds" "$rate" \
        "$(ratio "$rate" "${RESULT[$corpus/cat]:-}")" "$note"
}

print_header() {
    echo "| corpus | command | best s | MB/s | x cat | output check |"
    echo "| --- | --- | ---: | ---: | ---: | --- |"
}

echo "runs per command: $RUNS (best kept); corpus size: $SIZE; $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
print_header

OUT=$DIR/out.log
# dtredact logs one warning per masked token to standard error. Timed runs
# discard it, and check runs keep the last one here.
LOG=$DIR/dtredact-stderr.log
for corpus in sparse dense; do
    input=$DIR/$corpus/input.log
    expected=$DIR/$corpus/expected.log
    cat "$input" >/dev/null # into the page cache

    row "$corpus" cat 'cat FILE > /dev/null'
    row "$corpus" read_memchr "'$MEMCHR' FILE > /dev/null"
    row "$corpus" "dtredact filter FILE > /dev/null" "'$DTREDACT' filter FILE > /dev/null 2>/dev/null"
    row "$corpus" "cat FILE > out" "cat FILE > '$OUT'"
    "$DTREDACT" filter "$input" >"$OUT" 2>"$LOG"
    row "$corpus" "dtredact filter FILE > out" "'$DTREDACT' filter FILE > '$OUT' 2>/dev/null" \
        "$(check "$OUT" "$expected")"
    rm -f "$OUT"

    # sed and rg mask only complete tokens; their output is expected to
    # differ here, and is checked on the classic corpus below.
    sed -E "$SED_SCRIPT" "$input" >"$OUT"
    row "$corpus" "sed -E s/REGEX/.../g" "sed -E '$SED_SCRIPT' FILE > /dev/null" \
        "$(check "$OUT" "$expected") (full-token rule only)"
    rm -f "$OUT"
    if [[ $HAVE_RG == 1 ]]; then
        rg --no-config --passthru -N -r "$RG_REPLACE" "$REGEX" "$input" >"$OUT"
        row "$corpus" "rg --passthru -r" \
            "rg --no-config --passthru -N -r '$RG_REPLACE' '$REGEX' FILE > /dev/null" \
            "$(check "$OUT" "$expected") (full-token rule only)"
        rm -f "$OUT"
    fi

    cat "$input" | "$DTREDACT" filter >"$OUT" 2>"$LOG"
    row "$corpus" "cat FILE | dtredact filter | cat" \
        "cat FILE | '$DTREDACT' filter 2>/dev/null | cat > /dev/null" \
        "$(check "$OUT" "$expected")"
    rm -f "$OUT"
    row "$corpus" "cat FILE | cat | cat" 'cat FILE | cat | cat > /dev/null'
done

echo
echo "Checks on the classic corpus (complete classic tokens only, which the sed and rg regex covers):"
echo
classic=$DIR/classic
"$DTREDACT" filter "$classic/input.log" >"$OUT" 2>"$LOG"
echo "- dtredact filter: $(check "$OUT" "$classic/expected.log")"
sed -E "$SED_SCRIPT" "$classic/input.log" >"$OUT"
echo "- sed -E: $(check "$OUT" "$classic/expected.log")"
if [[ $HAVE_RG == 1 ]]; then
    rg --no-config --passthru -N -r "$RG_REPLACE" "$REGEX" "$classic/input.log" >"$OUT"
    echo "- rg --passthru -r: $(check "$OUT" "$classic/expected.log")"
fi
rm -f "$OUT"

# --- peak memory -----------------------------------------------------------

echo
noline=$DIR/noline
noline_size=$(stat -c %s "$noline/input.log")
newlines=$(tr -cd '\n' <"$noline/input.log" | wc -c)
if [[ -x /usr/bin/time ]]; then
    /usr/bin/time -v -o "$DIR/time.txt" "$DTREDACT" filter "$noline/input.log" >"$OUT" 2>"$LOG"
    peak_kib=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$DIR/time.txt")
    how="/usr/bin/time -v"
else
    # VmHWM is the process' peak resident set; poll it until the process
    # exits. A peak in the last poll interval can be missed.
    "$DTREDACT" filter "$noline/input.log" >"$OUT" 2>"$LOG" &
    pid=$!
    peak_kib=0
    while kill -0 "$pid" 2>/dev/null; do
        hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
        if [[ -n $hwm && $hwm -gt $peak_kib ]]; then
            peak_kib=$hwm
        fi
        sleep 0.01
    done
    wait "$pid"
    how="VmHWM from /proc, polled every 10 ms"
fi
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "Peak RSS of dtredact filter on a $noline_size-byte input with $newlines newlines: $peak_kib KiB ($how); output $(check "$OUT" "$noline/expected.log")"
rm -f "$OUT"

# --- targets ---------------------------------------------------------------

target() {
    local name=$1 value=$2 goal=$3
    local verdict=missed
    if is_number "$value" && awk -v v="$value" -v g="$goal" 'BEGIN { exit !(v >= g) }'; then
        verdict=met
    fi
    echo "- $name: $value (target >= $goal): $verdict"
}

echo
echo "Targets:"
sparse_filter=${RESULT[sparse/dtredact filter FILE > /dev/null]}
target "sparse dtredact / read_memchr" "$(ratio "$sparse_filter" "${RESULT[sparse/read_memchr]}")" 0.6
if [[ $HAVE_RG == 1 ]]; then
    target "sparse dtredact / rg --passthru -r" \
        "$(ratio "$sparse_filter" "${RESULT[sparse/rg --passthru -r]}")" 3
fi
target "sparse pipeline dtredact / cat|cat|cat" \
    "$(ratio "${RESULT[sparse/cat FILE | dtredact filter | cat]}" "${RESULT[sparse/cat FILE | cat | cat]}")" 1.5
target "dense dtredact filter FILE > /dev/null, MB/s" "${RESULT[dense/dtredact filter FILE > /dev/null]}" 1000
peak_mib=$(awk -v k="$peak_kib" 'BEGIN { printf "%.1f", k / 1024 }')
if awk -v k="$peak_kib" 'BEGIN { exit !(k < 32 * 1024) }'; then
    echo "- peak RSS on a line without newline: $peak_mib MiB (target < 32 MiB): met"
else
    echo "- peak RSS on a line without newline: $peak_mib MiB (target < 32 MiB): missed"
fi
