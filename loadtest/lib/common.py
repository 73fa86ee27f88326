"""Paths, the test matrix's constants and small helpers shared by every module."""

import os
import shutil
import socket
import subprocess

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # loadtest/
REPO = os.path.dirname(HERE)
WORK = os.path.join(HERE, "work")
DOCROOT = os.path.join(WORK, "docroot")
LOGS = os.path.join(WORK, "logs")
RESULTS = os.path.join(HERE, "results")

# File-size cells: name -> (URL path, size in bytes of the file behind it).
MANY_COUNT = 10_000
MANY_SIZE = 1024
SIZES = {
    "1k": ("/1k.bin", 1024),
    # A new connection per request (`Connection: close`): accept, one response,
    # close, 64 (or 1000) at a time.
    "1k-new": ("/1k.bin", 1024),
    "64k": ("/64k.bin", 64 * 1024),
    "10m": ("/10m.bin", 10 * 1024 * 1024),
    "random": (None, MANY_SIZE),  # MANY_COUNT files under /many/, random order
    # The compression cells (--compression): text files fetched with an
    # Accept-Encoding header; the two cells of a file share it.
    "js64k-br": ("/app64k.js", 64 * 1024),
    "js64k-gz": ("/app64k.js", 64 * 1024),
    "html200k-br": ("/page200k.html", 200 * 1024),
    "html200k-gz": ("/page200k.html", 200 * 1024),
    # The HTTPS cells (--https): the plain cells' files over TLS.
    "1k-tls": ("/1k.bin", 1024),
    "1k-tls-new": ("/1k.bin", 1024),
    "10m-tls": ("/10m.bin", 10 * 1024 * 1024),
}
ALL_SIZES = ["1k", "1k-new", "64k", "10m", "random"]   # the default --sizes
KNOWN_SIZES = list(SIZES)
# The compression cells' Accept-Encoding: "-br" cells accept all four codings
# (what browsers send, plus zstd), "-gz" cells gzip only.
ACCEPT_ALL = "gzip, deflate, br, zstd"
ACCEPT_ENCODING = {"js64k-br": ACCEPT_ALL, "js64k-gz": "gzip",
                   "html200k-br": ACCEPT_ALL, "html200k-gz": "gzip"}
COMPRESSION_SIZES = list(ACCEPT_ENCODING)
COMPRESSION_CONNS = [64]      # --compression without --conns
# The HTTPS cells: every request of a "-new" cell asks for `Connection: close`,
# so each response ends its TLS connection and the client opens a new one (the
# handshake rate); wrk's reused sessions are dropped so each is a full handshake.
TLS_SIZES = ["1k-tls", "1k-tls-new", "10m-tls"]
NEW_CONNECTION = {"1k-tls-new", "1k-new"}
TLS_CONNS = [64]              # --https without --conns
TLS_DIR = os.path.join(WORK, "tls")
TLS_CERT = os.path.join(TLS_DIR, "cert.pem")   # ECDSA P-256, self-signed, 127.0.0.1
TLS_KEY = os.path.join(TLS_DIR, "key.pem")
# Generated text behind the compression cells: URL path -> textgen kind.
TEXT_FILES = {"/app64k.js": "js", "/page200k.html": "html"}
# For large files few responses complete within a run at high concurrency (1000 ×
# 10 MiB in flight), so req/s mostly measures the run's edges. These cells are
# compared (ratios, chart) by transfer/s, which wrk counts including partial
# responses; the chart shows it as transfer/s ÷ file size ("responses' worth").
BY_TRANSFER = {"10m", "10m-tls"}
ALL_CONNS = [1, 64, 1000]
ALL_SERVERS = ["threadserve", "nginx", "static-web-server", "python", "tinyhttp"]
# A second threadserve binary (--baseline-bin), e.g. the build before a change:
# started with threadserve's flags and pinning, run right after threadserve in
# every cell. Not in ALL_SERVERS: it runs only when --baseline-bin names a binary.
BASE = "threadserve-base"
KNOWN_SERVERS = ALL_SERVERS + [BASE]
SERVER_ALIASES = {"sws": "static-web-server", "tiny_http": "tinyhttp",
                  "tinyhttp_baseline": "tinyhttp", "ts": "threadserve",
                  "http.server": "python", "base": BASE, "ts-base": BASE}
COLORS = {"threadserve": "#d62728", "nginx": "#2ca02c",
          "static-web-server": "#1f77b4", "python": "#9467bd",
          "tinyhttp": "#ff7f0e", BASE: "#8c564b"}
DASHED = {BASE}   # drawn dashed in the chart
INSTALL_HINTS = {
    "wrk": "apt-get install wrk",
    "nginx": "apt-get install nginx-light",
    "oha": "cargo install oha --locked",
    "static-web-server": "cargo install static-web-server --locked",
}



def cell_mode(size):
    """How a cell's servers are started: "plain", "compression" (nginx gzip on,
    sws compression on) or "tls" (HTTPS on the generated certificate)."""
    if size in TLS_SIZES:
        return "tls"
    if size in ACCEPT_ENCODING:
        return "compression"
    return "plain"


STARTUP_TIMEOUT = 20.0   # seconds for a server to answer its first request
STOP_GRACE = 5.0         # seconds between SIGTERM and SIGKILL
SAMPLE_INTERVAL = 0.2    # seconds between /proc samples of the server
PAUSE_BETWEEN_RUNS = 0.5
BUILD_TIMEOUT = 1800


def log(msg=""):
    print(msg, flush=True)


def which(name):
    return shutil.which(name) or (
        os.path.exists(os.path.expanduser(f"~/.cargo/bin/{name}"))
        and os.path.expanduser(f"~/.cargo/bin/{name}")) or None


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tool_version(cmd):
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=10)
        out = p.stdout.strip().splitlines()
        return out[0].strip() if out else ""
    except Exception:
        return ""


def one_line(text, limit=160):
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    s = " / ".join(lines[:3])
    return s if len(s) <= limit else s[:limit - 1] + "…"


def log_tail(path, n=8):
    try:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()[-n:]
    except OSError:
        return
    for line in lines:
        log(f"    | {line}")
