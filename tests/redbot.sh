#!/usr/bin/env bash
# External HTTP check with REDbot (issue 3, item 7): run REDbot, "lint for HTTP", against a
# plain file, a precompressed file and a directory served by threadserve, and fail if it
# reports a range, validator, 304 or framing problem.
#
# Usage (as root on a fresh Debian bookworm machine with python3 >= 3.11; needs PyPI):
#   bash tests/redbot.sh
# Environment:
#   THREADSERVE_BIN        server binary to test (default: `cargo build --release`, then
#                          target/release/threadserve)
#   THREADSERVE_REDBOT_VENV  virtualenv to create or reuse
#                          (default: ${TMPDIR:-/tmp}/threadserve-redbot-venv; it is rebuilt
#                          when the pins below change, and is safe to delete)
#   PYTHON                 interpreter for the venv (default: python3)
# Exit status: 0 when every check passes, 1 when any fails, 2 when the setup breaks.
# The last line is "redbot: N passed, N failed" (one per target below).
#
# All traffic stays on 127.0.0.1: the server binds 127.0.0.1:0 (a free port picked by the
# kernel) and REDbot is only ever given URLs on the address the server announces. REDbot's
# CLI does not fetch robots.txt and follows no links unless given -a/--assets (not used
# here), so it only talks to the URL it is given; its requests are the base GET plus its
# four "active checks": a gzip-negotiated GET, a Range GET, If-None-Match and
# If-Modified-Since GETs, all to that same URL.
#
# What runs
#   1. REDbot's own CLI, as a person would run it:  redbot -o har URL
#      for URL in  /plain.txt (64 KiB text)
#                  /app.js    (app.js + app.js.gz from `gzip -k`, + .br and .zst)
#                  /dir/      (directory listing, trailing slash)
#      The HAR's entries[0]._red_messages are the notes REDbot prints in text mode.
#   2. The same REDbot code (redbot.resource.HttpResource, configured exactly as its CLI
#      does) from a small Python driver, for what the CLI can't express:
#        - request headers the CLI can't set: app.js with Accept-Encoding: gzip, br, zstd
#          (so the Range and conditional checks run on each precompressed variant rather
#          than only on the identity one), and dir/ with Accept: application/json;
#        - the notes httplint raises on REDbot's sub-requests' own responses (the 206 and
#          304s), which the CLI doesn't print, for plain.txt and app.js too.
#   3. One check of threadserve's own on the driver's results, not a REDbot note: every
#      variant of app.js (identity, gzip, br, zstd) has a different strong ETag
#      (RFC 9110 section 8.8.3). REDbot itself only compares identity with gzip.
#
# Which notes fail the run (note ids and categories are REDbot 2.7.1 / httplint's)
#   * Category RANGE ("Partial Content") or VALIDATION: every note whose level is not
#     GOOD. WARN/BAD ones are range or validator defects (RANGE_INCORRECT, RANGE_FULL,
#     RANGE_CL_FULL, RANGE_INCORRECT_LENGTH, RANGE_NEG_MISMATCH, CONTENT_RANGE_*,
#     INM_FULL, IMS_FULL, INM_DUP_ETAG_STRONG, MISSING_HDRS_206, MISSING_HDRS_304,
#     NO_DATE_304, ...); the INFO ones mean REDbot could not complete the check
#     (RANGE_STATUS, INM_STATUS, IMS_STATUS: a status other than 206/304/200;
#     *_SUBREQ_PROBLEM: the sub-request failed; INM_UNKNOWN, IMS_UNKNOWN,
#     INM_DUP_ETAG_WEAK: the body changed between two requests;
#     CONTENT_RANGE_UNKNOWN_LENGTH), which for an unchanging static file is a defect too.
#   * Category CONNECTION: WARN or BAD (framing: BAD_CHUNK, EXTRA_DATA, BODY_NOT_ALLOWED
#     on a 304, unwanted transfer-codings, header syntax).
#   * Category CONNEG: WARN or BAD (CONNEG_NO_VARY, VARY_INCONSISTENT,
#     VARY_ETAG_DOESNT_CHANGE - one strong ETag for two encodings is a validator bug -,
#     VARY_HEADER_MISMATCH, VARY_STATUS_MISMATCH, BAD_GZIP/BAD_BROTLI, ENCODING_UNWANTED,
#     ...), plus the INFO notes CONNEG_SUBREQ_PROBLEM (check failed) and
#     VARY_BODY_MISMATCH (the .gz decodes to something else than the file). CONNEG_NO_GZIP
#     (INFO) is expected for files without a .gz and does not fail.
#   * Category GENERAL: BAD (CL_INCORRECT, BAD_DATE_SYNTAX, LM_FUTURE, PARTIAL_NOT_REQUESTED,
#     SINGLE_HEADER_REPEAT, ...) and these WARN ids, which are about validators, 304 or
#     416: DATE_CLOCKLESS, DATE_OBSOLETE, ENTITY_TAG_WEAK_CASE, HEADER_SHOULD_NOT_BE_IN_304,
#     STATUS_416_WITHOUT_CONTENT_RANGE.
#   * A missing result: REDbot reports a fetch error or no response, the status is not 200,
#     or a check did not run. REDbot skips a check silently when the response doesn't
#     invite it, so: a file must carry ETag, Last-Modified and Accept-Ranges: bytes; a
#     response with an ETag must get INM_304, one with Last-Modified IMS_304, one with
#     Accept-Ranges: bytes RANGE_CORRECT; /app.js must get CONNEG_GZIP_GOOD and each
#     Accept-Encoding probe must come back with that Content-Encoding.
# Which notes are printed but never fail
#   * CACHING (freshness, storability, "public is probably not necessary"), SECURITY
#     (missing browser-security headers), CORS and COOKIES: deployment policy set with
#     --cache-control / -H, not range or validator behaviour. The server runs with
#     --cache-control 'max-age=60' so that the files have an explicit freshness lifetime
#     and the caching notes stay few; 'public' is left out because REDbot warns that it is
#     unnecessary (STORE_PUBLIC_UNNECESSARY).
#   * GENERAL INFO/WARN other than the ids above, e.g. LM_PRESENT.
# The directory listing sends no ETag or Last-Modified (today), so REDbot runs no
# conditional or Range check on it; if it starts to send validators, the rules above
# require the checks to pass for it as well.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${THREADSERVE_REDBOT_VENV:-${TMPDIR:-/tmp}/threadserve-redbot-venv}
PYTHON=${PYTHON:-python3}
T_START=$(date +%s)
say() { printf '[%3ss] %s\n' "$(($(date +%s) - T_START))" "$*"; }
die() { say "ERROR: $*" >&2; exit 2; }

# REDbot and the packages that decide what it reports, pinned (the rest only for
# repeatability). Changing this list rebuilds the venv.
PINS='redbot==2.7.1
httplint==2026.10.4
thor==0.17.0
http-sf==1.5.0
babel==2.18.0
brotli==1.2.1
certifi==2026.10.19.post1
cffi==2.1.1
chardet==7.7.0
cryptography==50.0.2
dnspython==2.9.2
idna==3.20
Jinja2==3.1.6
Markdown==3.11.3
MarkupSafe==3.0.4
netaddr==1.3.0
pycparser==3.12
sniffpy==1.0.0
typing_extensions==4.16.0'

WORK=$(mktemp -d "${TMPDIR:-/tmp}/threadserve-redbot.XXXXXX")
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- REDbot in a virtualenv -------------------------------------------------------------
command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "REDbot 2.7.1 needs Python >= 3.11; $PYTHON is $("$PYTHON" -V 2>&1)"
STAMP="$VENV/.threadserve-pins"
if [ -x "$VENV/bin/redbot" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$PINS" ]; then
    say "reusing REDbot venv $VENV"
else
    say "creating REDbot venv $VENV"
    rm -rf "$VENV"
    if ! "$PYTHON" -m venv "$VENV" 2>"$WORK/venv.err"; then
        # Debian's python3 lacks ensurepip until python3-venv is installed.
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            say "installing python3-venv"
            apt-get update -qq >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            rm -rf "$VENV"
            "$PYTHON" -m venv "$VENV"
        else
            cat "$WORK/venv.err" >&2
            die "cannot create a venv (install python3-venv)"
        fi
    fi
    printf '%s\n' "$PINS" >"$WORK/requirements.txt"
    "$VENV/bin/pip" install --disable-pip-version-check -q -r "$WORK/requirements.txt" \
        || die "pip install of REDbot failed"
    printf '%s' "$PINS" >"$STAMP"
fi
RB_VERSION=$("$VENV/bin/python" -c 'import redbot; print(redbot.__version__)')
say "REDbot $RB_VERSION"

# --- the server -------------------------------------------------------------------------
if [ -n "${THREADSERVE_BIN:-}" ]; then
    BIN=$THREADSERVE_BIN
else
    say "cargo build --release"
    (cd "$REPO" && cargo build --release --quiet)
    BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/threadserve
fi
[ -x "$BIN" ] || die "no server binary at $BIN"

ROOT=$WORK/root
mkdir -p "$ROOT/dir/sub"
"$VENV/bin/python" - "$ROOT" <<'EOF'
import brotli, hashlib, sys
root = sys.argv[1]
# 64 KiB of deterministic text (so every run ranges over the same bytes)
out, i = [], 0
while sum(map(len, out)) < 65536:
    out.append(f"{i:05d} {hashlib.sha256(str(i).encode()).hexdigest()}\n")
    i += 1
open(f"{root}/plain.txt", "w").write("".join(out)[:65536])
js = "".join(f"export function f{i}(a, b) {{ return a * {i} + b; }}\n" for i in range(2000))
open(f"{root}/app.js", "w").write(js)
open(f"{root}/app.js.br", "wb").write(brotli.compress(js.encode()))
for name, text in [("a.txt", "a\n"), ("b.html", "<p>b</p>\n"), ("sub/c.txt", "c\n")]:
    open(f"{root}/dir/{name}", "w").write(text)
EOF
gzip -k -9 -n "$ROOT/app.js"
ZSTD=no
if command -v zstd >/dev/null; then zstd -q -19 -k "$ROOT/app.js" -o "$ROOT/app.js.zst"; ZSTD=yes; fi
# Fixed, past mtimes: Last-Modified is then well before Date and the same every run.
find "$ROOT" -exec touch -d '2024-01-02 03:04:05 UTC' {} +

"$BIN" "$ROOT" --bind 127.0.0.1:0 --threads 8 --log-format off \
    --cache-control 'max-age=60' >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
ADDR=
for _ in $(seq 100); do
    ADDR=$(sed -n 's|^threadserve serving .* at http://\(127\.0\.0\.1:[0-9][0-9]*\) with .*|\1|p' \
        "$WORK/server.out")
    [ -n "$ADDR" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$ADDR" ]; then
    cat "$WORK/server.out" "$WORK/server.err" >&2
    die "server did not announce a 127.0.0.1 address"
fi
BASE=http://$ADDR
say "threadserve $("$BIN" --version 2>/dev/null | head -1) at $BASE (root $ROOT)"

# --- REDbot runs ------------------------------------------------------------------------
cat >"$WORK/probe.py" <<'EOF'
"""Run REDbot's HttpResource like its CLI does, with extra request headers, and dump the
notes of the main response and of each sub-request's own response as JSON."""
import json, sys
from configparser import ConfigParser
import thor
from redbot.resource import HttpResource

def notes(resp):
    return [{"note_id": n.__class__.__name__, "category": n.category.name,
             "level": n.level.name, "summary": n.summary} for n in resp.notes]

def headers(resp):
    return [{"name": n, "value": v.strip()} for n, v in resp.headers.text]

url, req = sys.argv[1], []
for arg in sys.argv[2:]:
    name, value = arg.split(":", 1)
    req.append((name.strip(), value.strip()))
config = ConfigParser()
config.read_dict({"redbot": {"enable_local_access": "True"}})  # as redbot/cli.py does
res = HttpResource(config["redbot"], descend=False)
res.set_request(url, headers=req)

@thor.events.on(res)
def check_done():
    thor.stop()

res.check()
thor.run()
out = {"url": url, "request_headers": [{"name": n, "value": v} for n, v in req],
       "error": res.fetch_error.desc if res.fetch_error else None,
       "complete": bool(res.response.complete), "status": res.response.status_code,
       "headers": headers(res.response), "notes": notes(res.response), "subrequests": {}}
for check_id, sub in res.subreqs.items():
    if sub.response.status_code is None:
        continue  # REDbot decided not to send it (e.g. conneg when Accept-Encoding is set)
    out["subrequests"][check_id] = {
        "request_headers": [{"name": n, "value": v} for n, v in sub.request.headers.text],
        "status": sub.response.status_code, "headers": headers(sub.response),
        "notes": notes(sub.response)}
json.dump(out, sys.stdout, indent=1)
EOF

run() { # run OUTFILE COMMAND...: bounded in time; a crash is reported by the evaluator
    local out=$1; shift
    timeout 60 "$@" >"$out" 2>"$out.err" || echo "exit status $?" >>"$out.err"
}
say "redbot -o har on $BASE/{plain.txt,app.js,dir/}"
run "$WORK/cli-plain.har" "$VENV/bin/redbot" -o har "$BASE/plain.txt"
run "$WORK/cli-app.har" "$VENV/bin/redbot" -o har "$BASE/app.js"
run "$WORK/cli-dir.har" "$VENV/bin/redbot" -o har "$BASE/dir/"
say "REDbot driver: sub-request responses, Accept-Encoding variants, JSON listing"
run "$WORK/probe-plain.json" "$VENV/bin/python" "$WORK/probe.py" "$BASE/plain.txt"
run "$WORK/probe-app.json" "$VENV/bin/python" "$WORK/probe.py" "$BASE/app.js"
for enc in gzip br zstd; do
    [ "$enc" = zstd ] && [ "$ZSTD" = no ] && continue
    run "$WORK/probe-app-$enc.json" "$VENV/bin/python" "$WORK/probe.py" "$BASE/app.js" \
        "Accept-Encoding: $enc"
done
run "$WORK/probe-dir-json.json" "$VENV/bin/python" "$WORK/probe.py" "$BASE/dir/" \
    "Accept: application/json"

# --- evaluation -------------------------------------------------------------------------
set +e
"$VENV/bin/python" - "$WORK" "$BASE" "$ZSTD" <<'EOF'
import json, os, sys

work, base, zstd = sys.argv[1], sys.argv[2], sys.argv[3] == "yes"

NEVER_FAIL = {"CACHING", "SECURITY", "CORS", "COOKIES"}
FAIL_IDS = {"DATE_CLOCKLESS", "DATE_OBSOLETE", "ENTITY_TAG_WEAK_CASE",
            "HEADER_SHOULD_NOT_BE_IN_304", "STATUS_416_WITHOUT_CONTENT_RANGE",
            "CONNEG_SUBREQ_PROBLEM", "VARY_BODY_MISMATCH"}

def is_failure(note):
    cat, level = note["category"], note["level"]
    if cat in NEVER_FAIL:
        return False
    if note["note_id"] in FAIL_IDS:
        return True
    if cat in ("RANGE", "VALIDATION"):
        return level != "GOOD"
    if cat in ("CONNECTION", "CONNEG"):
        return level in ("WARN", "BAD")
    return level == "BAD"  # GENERAL

def hdr(headers, name):
    vals = [h["value"].strip() for h in headers if h["name"].strip().lower() == name]
    return ", ".join(vals) if vals else None

def fmt(note, prefix=""):
    mark = "   <-- FAIL" if is_failure(note) else ""
    return (f"    {note['level']:<5} {note['category']:<10} {prefix}{note['note_id']:<26} "
            f"{note['summary']}{mark}")

def load(name):
    path = os.path.join(work, name)
    err = ""
    if os.path.exists(path + ".err"):
        err = open(path + ".err").read().strip()
    try:
        return json.load(open(path)), err
    except (OSError, ValueError) as why:
        return None, f"{err} (no JSON output: {why})".strip()

def from_har(name):
    har, err = load(name)
    if har is None:
        return None, err
    log = har.get("log", {})
    if log.get("_red_error"):
        return None, f"REDbot error: {log['_red_error']}"
    if not log.get("entries"):
        return None, f"REDbot returned no response {err}".strip()
    e = log["entries"][0]
    return {"status": e["response"]["status"], "headers": e["response"]["headers"],
            "request_headers": e["request"]["headers"], "notes": e["_red_messages"],
            "subrequests": {}}, err

def from_probe(name):
    r, err = load(name)
    if r is None:
        return None, err
    if r.get("error") or not r.get("complete"):
        return None, f"fetch error: {r.get('error')} {err}".strip()
    return r, err

# (label, loader, file, required response headers, required note ids, expected C-E)
FILE_HDRS = ["etag", "last-modified", "accept-ranges"]
targets = [
    ("redbot -o har /plain.txt", from_har, "cli-plain.har", FILE_HDRS, [], None),
    ("redbot -o har /app.js", from_har, "cli-app.har", FILE_HDRS + ["vary"],
     ["CONNEG_GZIP_GOOD"], None),
    ("redbot -o har /dir/", from_har, "cli-dir.har", [], [], None),
    ("driver /plain.txt", from_probe, "probe-plain.json", FILE_HDRS, [], None),
    ("driver /app.js", from_probe, "probe-app.json", FILE_HDRS + ["vary"],
     ["CONNEG_GZIP_GOOD"], None),
    ("driver /app.js  Accept-Encoding: gzip", from_probe, "probe-app-gzip.json",
     FILE_HDRS + ["vary"], [], "gzip"),
    ("driver /app.js  Accept-Encoding: br", from_probe, "probe-app-br.json",
     FILE_HDRS + ["vary"], [], "br"),
]
if zstd:
    targets.append(("driver /app.js  Accept-Encoding: zstd", from_probe,
                    "probe-app-zstd.json", FILE_HDRS + ["vary"], [], "zstd"))
targets.append(("driver /dir/  Accept: application/json", from_probe,
                "probe-dir-json.json", [], [], None))

passed = failed = 0
summary = []
etags = {}
for label, loader, fname, req_hdrs, req_notes, want_ce in targets:
    res, err = loader(fname)
    problems = []
    print(f"\n--- {label}")
    if res is None:
        problems.append(err or "no result")
    else:
        hs = res["headers"]
        rq = ", ".join(f"{h['name']}: {h['value']}" for h in res.get("request_headers", [])
                       if h["name"].lower() != "user-agent")
        print(f"  request headers: {rq or '-'}")
        print(f"  HTTP {res['status']}  " + "  ".join(
            f"{n}: {hdr(hs, n.lower())}" for n in
            ("Content-Type", "Content-Length", "Content-Encoding", "ETag", "Last-Modified",
             "Accept-Ranges", "Vary", "Cache-Control") if hdr(hs, n.lower()) is not None))
        ids = {n["note_id"] for n in res["notes"]}
        for note in res["notes"]:
            print(fmt(note))
            if is_failure(note):
                problems.append(f"{note['note_id']}: {note['summary']}")
        for cid, sub in res["subrequests"].items():
            extra = [n for n in sub["notes"] if n["note_id"] not in ids]
            sent = ", ".join(f"{h['name']}: {h['value']}" for h in sub["request_headers"]
                             if h["name"].lower() in ("range", "if-none-match",
                                                      "if-modified-since", "accept-encoding"))
            shs = sub["headers"]
            print(f"  sub-request {cid} ({sent or '-'}) -> HTTP {sub['status']}  " + "  ".join(
                f"{n}: {hdr(shs, n.lower())}" for n in
                ("Content-Range", "Content-Length", "Content-Encoding", "ETag")
                if hdr(shs, n.lower()) is not None))
            for note in extra:
                print(fmt(note, f"[{cid}] "))
                if is_failure(note):
                    problems.append(f"[{cid} response] {note['note_id']}: {note['summary']}")
        if res["status"] != 200:
            problems.append(f"status {res['status']}, expected 200")
        for name in req_hdrs:
            if hdr(hs, name) is None:
                problems.append(f"no {name} header, so REDbot cannot check it")
        if "bytes" not in (hdr(hs, "accept-ranges") or "") and "accept-ranges" in req_hdrs:
            problems.append("Accept-Ranges is not bytes")
        need = list(req_notes)
        if hdr(hs, "etag"):
            need.append("INM_304")
        if hdr(hs, "last-modified"):
            need.append("IMS_304")
        if "bytes" in (hdr(hs, "accept-ranges") or ""):
            need.append("RANGE_CORRECT")
        for nid in need:
            if nid not in ids:
                problems.append(f"expected note {nid} is missing (check did not pass)")
        ce = hdr(hs, "content-encoding")
        if want_ce is not None and ce != want_ce:
            problems.append(f"Content-Encoding is {ce!r}, expected {want_ce!r}")
        if label.startswith("driver /app.js") and hdr(hs, "etag"):
            etags.setdefault(hdr(hs, "etag"), []).append(ce or "identity")
    if err and res is not None:
        print(f"  stderr: {err}")
    if problems:
        failed += 1
        summary.append(f"FAIL  {label}")
        for p in problems:
            print(f"  FAIL: {p}")
            summary.append(f"        {p}")
    else:
        passed += 1
        summary.append(f"PASS  {label}")
        print("  PASS")

label = "threadserve: a distinct ETag per app.js variant (RFC 9110 8.8.3)"
dups = {e: v for e, v in etags.items() if len(set(v)) > 1}
print(f"\n--- {label}")
for e, v in etags.items():
    print(f"    {e}  {', '.join(sorted(set(v)))}")
if dups or not etags:
    failed += 1
    summary.append(f"FAIL  {label}: {dups or 'no ETags seen'}")
    print("  FAIL")
else:
    passed += 1
    summary.append(f"PASS  {label}")
    print("  PASS")

print("\n=== summary")
print("\n".join(summary))
print(f"redbot: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
EOF
status=$?
set -e
say "done"
exit "$status"
