"""The servers: building threadserve and the tiny_http baseline, finding the
peers, their argv and configs, starting, checking and stopping them."""

import datetime
import os
import platform
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from . import https
from .common import (BASE, BUILD_TIMEOUT, DOCROOT, INSTALL_HINTS, LOGS, REPO, SIZES,
                     STARTUP_TIMEOUT, STOP_GRACE, TLS_CERT, TLS_KEY, WORK, free_port,
                     log, tool_version, which)

STARTED_ARGV = {}        # server name -> argv of its last start (for the JSON)
TS_BIN = os.path.join(REPO, "target", "release", "threadserve")
TINYHTTP_BIN = os.path.join(REPO, "target", "release", "examples", "tinyhttp_baseline")
NGINX_DIR = os.path.join(WORK, "nginx")


# ---------------------------------------------------------------- builds, discovery

def cargo_build(args, what):
    cmd = ["cargo", "build", "--release"] + args
    log(f"build: {' '.join(cmd)}")
    t0 = time.time()
    try:
        p = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True,
                           timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        log(f"  {what}: build timed out after {BUILD_TIMEOUT}s")
        return False
    except FileNotFoundError:
        log("  cargo not found on PATH")
        return False
    if p.returncode != 0:
        tail = "\n".join("    " + l for l in p.stdout.strip().splitlines()[-15:])
        log(f"  {what}: build FAILED (exit {p.returncode}), last lines:\n{tail}")
        return False
    log(f"  {what}: built in {time.time() - t0:.0f}s")
    return True


def find_servers(servers, no_build, skipped, baseline_bin=None):
    """Builds what is built here and looks for the rest. Returns {name: binary or
    True} for the servers that can run; appends a line to `skipped` for the others.
    threadserve-base is baseline_bin as given (checked by the caller), never built."""
    available = {}

    def skip(line):
        log(line)
        skipped.append(line)

    if "threadserve" in servers:
        ok = no_build or cargo_build([], "threadserve")
        if ok and os.access(TS_BIN, os.X_OK):
            available["threadserve"] = True
        else:
            skip("threadserve: SKIPPED (" + ("target/release/threadserve missing"
                 if no_build else "release build failed") + ")")
    if "tinyhttp" in servers:
        ok = no_build or cargo_build(["--example", "tinyhttp_baseline"], "tinyhttp")
        if ok and os.access(TINYHTTP_BIN, os.X_OK):
            available["tinyhttp"] = True
        else:
            skip("tinyhttp: SKIPPED (" + ("target/release/examples/tinyhttp_baseline "
                 "missing" if no_build else "example build failed") + ")")
    for name in ("nginx", "static-web-server"):
        if name in servers:
            p = which(name)
            if p:
                available[name] = p
            else:
                skip(f"{name}: not found, skipped — install with `{INSTALL_HINTS[name]}`")
    if "python" in servers:
        available["python"] = sys.executable
    if BASE in servers and baseline_bin:
        available[BASE] = baseline_bin
    return available


def binary_version(binary):
    """`BINARY --version`, the path and its modification time, for the JSON."""
    mtime = datetime.datetime.fromtimestamp(os.path.getmtime(binary))
    v = tool_version([binary, "--version"]) or "no --version output"
    return f"{v} ({binary}, built {mtime:%Y-%m-%d %H:%M})"


def server_versions(available, tinyhttp_threads):
    sws = available.get("static-web-server")
    return {
        "threadserve": binary_version(TS_BIN) if "threadserve" in available else "",
        BASE: binary_version(available[BASE]) if BASE in available else "",
        "nginx": tool_version([available["nginx"], "-v"]) if "nginx" in available else "",
        "static-web-server": "static-web-server " + re.sub(
            r"^Version:\s*", "", tool_version([sws, "--version"])) if sws else "",
        "python": f"python {platform.python_version()} http.server (ThreadingHTTPServer)",
        "tinyhttp": "tiny_http 0.12 (examples/tinyhttp_baseline.rs, "
                    f"{tinyhttp_threads} workers, TCP_NODELAY on listener)",
    }


# ---------------------------------------------------------------- argv and configs

class ServerSpec:
    """How to start one server: argv (before pinning), and files to prepare.
    tls: whether it can serve the HTTPS cells."""

    def __init__(self, name, argv_fn, prepare=None, note="", tls=False):
        self.name = name
        self.argv_fn = argv_fn      # (port, mode) -> argv; mode: common.cell_mode
        self.prepare = prepare      # port -> None (writes config files)
        self.note = note
        self.tls = tls


# nginx in the compression cells: `gzip on` with its defaults (gzip_comp_level 1,
# gzip_min_length 20, gzip_vary off, ...) plus the types, as a site would set it.
# text/html is always in gzip_types. nginx-light has no brotli module, so nginx
# answers gzip even when the client accepts br or zstd.
NGINX_GZIP = """    gzip on;
    gzip_types text/javascript application/javascript;
"""


# nginx in the HTTPS cells: `listen ... ssl` on the generated certificate, TLS
# 1.2 and 1.3, its default ciphers, and a session cache and timeout as a site
# sets them (session tickets stay on, nginx's default).
NGINX_TLS = """        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
        ssl_session_timeout 10m;
"""
NGINX_CONF_NAME = {"plain": "nginx.conf", "compression": "nginx-gzip.conf",
                   "tls": "nginx-tls.conf"}


def nginx_conf(port, mode="plain"):
    """Writes nginx.conf (nginx-gzip.conf with gzip on for the compression
    cells, nginx-tls.conf with ssl for the HTTPS cells) and returns its path."""
    d = NGINX_DIR
    os.makedirs(d, exist_ok=True)
    user = "user root root;\n" if os.geteuid() == 0 else ""
    gzip_conf = NGINX_GZIP if mode == "compression" else ""
    ssl = " ssl" if mode == "tls" else ""
    tls_conf = NGINX_TLS.format(cert=TLS_CERT, key=TLS_KEY) if mode == "tls" else ""
    conf = f"""# generated by loadtest/run
{user}worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log error;
worker_rlimit_nofile 65536;
events {{
    worker_connections 16384;
    use epoll;
}}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    open_file_cache max=20000 inactive=120s;
    open_file_cache_valid 120s;
    open_file_cache_min_uses 1;
    open_file_cache_errors on;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    types {{ application/octet-stream bin; text/plain txt; text/html html;
            application/javascript js; }}
    default_type application/octet-stream;
{gzip_conf}    server {{
        listen 127.0.0.1:{port}{ssl} backlog=4096;
        server_name localhost;
{tls_conf}        root {DOCROOT};
        location / {{ }}
    }}
}}
"""
    path = os.path.join(d, NGINX_CONF_NAME[mode])
    with open(path, "w") as f:
        f.write(conf)
    return path


def nginx_conf_text(mode="plain"):
    """The config nginx last ran with in cells of this mode, for the JSON (None
    if nginx did not run so)."""
    conf = os.path.join(NGINX_DIR, NGINX_CONF_NAME[mode])
    if argv_key("nginx", mode) in STARTED_ARGV and os.path.exists(conf):
        with open(conf) as f:
            return f.read()
    return None


MODE_LABEL = {"plain": "", "compression": " (compression cells)",
              "tls": " (HTTPS cells)"}


def argv_key(name, mode):
    """STARTED_ARGV's key: the compression and HTTPS cells start some servers
    differently."""
    return name + MODE_LABEL[mode]


def sws_help_flags(binary):
    try:
        return subprocess.run([binary, "--help"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              timeout=10).stdout
    except Exception:
        return ""


def threadserve_spec(args, name="threadserve", binary=TS_BIN):
    """threadserve, or the baseline binary under its own name: same flags. Its
    compression is on by default, so the compression cells need no flag; the
    HTTPS cells add --tls-cert and --tls-key."""
    def ts_argv(port, mode):
        a = [binary, "--bind", f"127.0.0.1:{port}", "--log-format", "off"]
        if mode == "tls":
            a += ["--tls-cert", TLS_CERT, "--tls-key", TLS_KEY]
        if args.threads:
            a += ["--threads", str(args.threads)]
        for extra in args.ts_arg or []:
            a += extra.split()
        return a + [DOCROOT]
    return ServerSpec(name, ts_argv, tls=True)


def sws_spec(sws):
    helptext = sws_help_flags(sws)

    def sws_argv(port, mode):
        """Compression off, except in the compression cells: on, at its default
        level, and for every coding it was built with. In the HTTPS cells its
        TLS (2.x: `--http2 true` with the certificate; it still answers
        HTTP/1.1 to a client that offers no ALPN, as wrk does)."""
        a = [sws, "--host", "127.0.0.1", "--port", str(port),
             "--root", DOCROOT, "--log-level", "error"]
        if mode == "tls":
            a += ["--http2", "true", "--http2-tls-cert", TLS_CERT,
                  "--http2-tls-key", TLS_KEY]
        if mode == "compression":
            a += ["--compression", "true"]
        elif "--compression" in helptext:
            a += ["--compression", "false"]
        if "--compression-static" in helptext:
            a += ["--compression-static", "false"]
        if "--directory-listing" in helptext:
            a += ["--directory-listing", "false"]
        return a
    return ServerSpec("static-web-server", sws_argv,
                      note="compression off (on in the compression cells)",
                      tls="--http2-tls-cert" in helptext)


def nginx_has_ssl(nginx):
    try:
        p = subprocess.run([nginx, "-V"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=10)
        return "with-http_ssl_module" in p.stdout
    except Exception:
        return False


def build_specs(args, available):
    """Returns {name: ServerSpec} for every server that can run."""
    specs = {}
    if "threadserve" in available:
        specs["threadserve"] = threadserve_spec(args)
    if BASE in available:
        specs[BASE] = threadserve_spec(args, BASE, available[BASE])
    if "nginx" in available:
        nginx = available["nginx"]
        d = NGINX_DIR
        specs["nginx"] = ServerSpec(
            "nginx",
            lambda port, mode: [nginx, "-p", d, "-e", os.path.join(d, "error.log"),
                                "-c", nginx_conf(port, mode)],
            note="1 worker, sendfile, tcp_nopush, open_file_cache "
                 "(+ gzip on in the compression cells, ssl in the HTTPS cells)",
            tls=nginx_has_ssl(nginx))
    if "static-web-server" in available:
        specs["static-web-server"] = sws_spec(available["static-web-server"])
    if "python" in available:
        specs["python"] = ServerSpec(
            "python",
            lambda port, mode: [sys.executable, "-m", "http.server", str(port),
                          "--bind", "127.0.0.1", "--directory", DOCROOT])
    if "tinyhttp" in available:
        specs["tinyhttp"] = ServerSpec(
            "tinyhttp",
            lambda port, mode: [TINYHTTP_BIN, f"127.0.0.1:{port}", DOCROOT,
                          str(args.tinyhttp_threads)],
            note=f"{args.tinyhttp_threads} workers, TCP_NODELAY on listener")
    return specs


# ---------------------------------------------------------------- running servers

def http_get(url, timeout=2.0, context=None):
    req = urllib.request.Request(url, headers={"Connection": "close"})
    with urllib.request.urlopen(req, timeout=timeout, context=context) as r:
        return r.status, r.read()


class RunningServer:
    """One start of a server; mode (common.cell_mode): configured for the plain,
    the compression or the HTTPS cells."""

    def __init__(self, spec, pin_prefix, mode="plain"):
        self.spec = spec
        self.name = spec.name
        self.port = free_port()
        self.tls = https.client_context() if mode == "tls" else None
        scheme = "https" if mode == "tls" else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        os.makedirs(LOGS, exist_ok=True)
        self.logpath = os.path.join(LOGS, f"{self.name}.log")
        self.argv = pin_prefix + spec.argv_fn(self.port, mode)
        STARTED_ARGV[argv_key(self.name, mode)] = self.argv
        self.proc = None
        self.error = None
        self.stopped = False

    truncated_logs = set()   # each invocation starts its logs afresh

    def start(self):
        mode = "ab" if self.logpath in RunningServer.truncated_logs else "wb"
        RunningServer.truncated_logs.add(self.logpath)
        logf = open(self.logpath, mode)
        logf.write(f"\n=== {datetime.datetime.now().isoformat()} {' '.join(self.argv)}\n"
                   .encode())
        logf.flush()
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, cwd=WORK,
                                         stdout=logf, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        except OSError as e:
            self.error = f"cannot start: {e}"
            return False
        finally:
            logf.close()
        return self.wait_until_serving()

    def wait_until_serving(self):
        deadline = time.time() + STARTUP_TIMEOUT
        last = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.error = f"exited with {self.proc.returncode} during startup"
                return False
            try:
                http_get(self.url + "/1k.bin", timeout=1.0, context=self.tls)
                return True
            except urllib.error.HTTPError:
                return True   # it answers; the sanity check judges the status
            except Exception as e:
                last = e
                time.sleep(0.05)
        self.error = f"did not answer within {STARTUP_TIMEOUT:.0f}s" + (
            f" (last: {str(last)[:120]})" if last is not None else "")
        return False

    def sanity_check(self, sizes):
        """GET one file per cell; the status and the body length must be right."""
        for size in sizes:
            path, length = SIZES[size]
            path = path or "/many/0000.bin"
            try:
                status, body = http_get(self.url + path, timeout=10.0,
                                        context=self.tls)
            except urllib.error.HTTPError as e:
                return f"GET {path}: status {e.code}"
            except Exception as e:
                return f"GET {path}: {e}"
            if status != 200 or len(body) != length:
                return f"GET {path}: status {status}, {len(body)} bytes, want 200 and {length}"
            with open(os.path.join(DOCROOT, path.lstrip("/")), "rb") as f:
                if f.read() != body:
                    return f"GET {path}: body differs from the file"
        return None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM, wait, SIGKILL. Returns the exit code (None if killed)."""
        if self.proc is None or self.stopped:
            return None if self.proc is None else self.proc.returncode
        self.stopped = True
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                log(f"  {self.name}: did not exit {STOP_GRACE:.0f}s after SIGTERM, killing")
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
                return None
        # Leftover children in its session (e.g. an nginx worker): kill them.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return self.proc.returncode
