#!/usr/bin/env bash
# The metrics path through Prometheus' own linter (issue 14): start threadserve with
# --metrics-path, send it some traffic (200s, a 404, a HEAD, a 405, a listing, a
# range, the health and stats paths), then run `promtool check metrics` on what
# /metrics answers. Passes only when promtool exits 0 and prints nothing, i.e. no
# naming, type, HELP or unit complaint and no parse error.
#
# Usage: bash tests/promtool.sh
# Environment:
#   THREADSERVE_BIN  server binary (default: `cargo build --release`, then
#                    target/release/threadserve)
#   PROMTOOL         promtool binary (default: promtool on PATH; Debian's `prometheus`
#                    package has it, .ci/run installs it)
# Needs curl. Exit status: 0 clean, 1 when promtool reports anything, 2 when the setup
# breaks. All traffic stays on 127.0.0.1 (the server binds 127.0.0.1:0).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROMTOOL=${PROMTOOL:-promtool}
die() { echo "promtool.sh: $*" >&2; exit 2; }
command -v "$PROMTOOL" >/dev/null || die "$PROMTOOL not found (apt-get install prometheus)"
command -v curl >/dev/null || die "curl not found"

if [ -n "${THREADSERVE_BIN:-}" ]; then
    BIN=$THREADSERVE_BIN
else
    (cd "$REPO" && cargo build --release --quiet)
    BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/threadserve
fi
[ -x "$BIN" ] || die "no server binary at $BIN"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/threadserve-promtool.XXXXXX")
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/root/dir"
printf 'hello\n' >"$WORK/root/index.html"
head -c 100000 /dev/zero >"$WORK/root/big.bin"
printf 'a\n' >"$WORK/root/dir/a.txt"

"$BIN" "$WORK/root" --bind 127.0.0.1:0 --threads 4 --log-format off \
    --metrics-path /metrics --health-path /healthz --stats-path /.stats \
    >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
ADDR=
for _ in $(seq 100); do
    ADDR=$(sed -n 's|^threadserve serving .* at http://\(127\.0\.0\.1:[0-9][0-9]*\) with .*|\1|p' "$WORK/server.out")
    [ -n "$ADDR" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
done
[ -n "$ADDR" ] || { cat "$WORK/server.out" "$WORK/server.err" >&2; die "the server did not start"; }
BASE=http://$ADDR

c() { curl -s -o /dev/null "$@" || true; }
for _ in 1 2 3; do c "$BASE/"; done
c "$BASE/missing"
c -I "$BASE/index.html"
c -X POST "$BASE/index.html"
c "$BASE/dir/"
c -r 0-99 "$BASE/big.bin"
c "$BASE/healthz"
c "$BASE/.stats"
curl -s "$BASE/metrics" >/dev/null  # the first scrape is itself counted in the second
curl -sf "$BASE/metrics" >"$WORK/metrics.txt" || die "GET /metrics failed"
grep -q '^threadserve_requests_total{method="GET",code="2xx"} ' "$WORK/metrics.txt" \
    || die "no threadserve_requests_total in the answer"

set +e
"$PROMTOOL" check metrics <"$WORK/metrics.txt" >"$WORK/promtool.out" 2>&1
status=$?
set -e
echo "promtool check metrics: $(grep -c '^# TYPE' "$WORK/metrics.txt") families, exit status $status"
if [ "$status" -ne 0 ] || [ -s "$WORK/promtool.out" ]; then
    cat "$WORK/promtool.out"
    echo "FAIL: promtool reported problems with $BASE/metrics"
    exit 1
fi
echo "ok: promtool reports nothing"
