"""Command line and orchestration: flags, pinning, builds, the matrix of cells,
metadata, and the results files. main() is what loadtest/run calls."""

import argparse
import datetime
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time

from . import https, peers
from .common import (ACCEPT_ENCODING, ALL_CONNS, ALL_SERVERS, ALL_SIZES, BASE,
                     COMPRESSION_CONNS, COMPRESSION_SIZES, INSTALL_HINTS, KNOWN_SERVERS,
                     KNOWN_SIZES, REPO, RESULTS, SERVER_ALIASES, TLS_CONNS, TLS_SIZES,
                     WORK, cell_mode, log, tool_version, which)
from .matrix import run_cell
from .profile import ProfileRun, parse_spec
from .report import quick_verdict, summarize, write_results
from .tools import oha_supports_random, write_wrk_scripts
from .workspace import make_docroot, raise_nofile

# The --help description (argparse prints it verbatim).
DESCRIPTION = """Side-by-side load test: threadserve vs nginx, static-web-server, python
http.server and a tiny_http baseline, on loopback, with wrk or oha.

Run `loadtest/run --help` for the flags; loadtest/README.md explains the method
and how to read the output. Python 3 standard library only.
"""


def build_parser():
    ap = argparse.ArgumentParser(
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Servers: " + ", ".join(ALL_SERVERS) + ", and " + BASE + " with "
               "--baseline-bin (aliases: sws, ts, base). "
               "Sizes: " + ", ".join(ALL_SIZES) + " (the default), and the "
               "compression cells " + ", ".join(
                   f"{k} (Accept-Encoding: {v})" for k, v in ACCEPT_ENCODING.items())
               + ", and the HTTPS cells " + ", ".join(TLS_SIZES) + ".")
    ap.add_argument("--tool", choices=["wrk", "oha"], default="wrk",
                    help="load generator (default wrk)")
    ap.add_argument("--servers", default=",".join(ALL_SERVERS),
                    help="comma list of servers to run (default: all available)")
    ap.add_argument("--sizes", default=None,
                    help="comma list of file-size cells (default: "
                         + ",".join(ALL_SIZES) + ")")
    ap.add_argument("--conns", default=None,
                    help="comma list of connection counts (default: "
                         + ",".join(map(str, ALL_CONNS)) + "; with --compression "
                         + ",".join(map(str, COMPRESSION_CONNS)) + ")")
    ap.add_argument("--compression", action="store_true",
                    help="the compression section: cells " + ",".join(COMPRESSION_SIZES)
                         + " (64 KiB JS, 200 KiB HTML; Accept-Encoding all four codings "
                         "or gzip only), nginx with gzip on, static-web-server with "
                         "its compression on; alone it replaces the default sizes "
                         "and conns, with --sizes it adds to them")
    ap.add_argument("--https", action="store_true",
                    help="the HTTPS section: cells " + ",".join(TLS_SIZES) + " (1 KiB "
                         "keep-alive; 1 KiB with Connection: close, a new TLS "
                         "connection and full handshake per request; 10 MiB) on an "
                         "ECDSA P-256 certificate generated into loadtest/work/tls/, "
                         "against nginx with ssl and static-web-server with its TLS; "
                         "alone it replaces the default sizes and conns ("
                         + ",".join(map(str, TLS_CONNS)) + "), with --sizes or "
                         "--compression it adds to them")
    ap.add_argument("--duration", type=int, default=6,
                    help="seconds per measured run (default %(default)s)")
    ap.add_argument("--warmup", type=int, default=2,
                    help="seconds of warm-up per server per cell, 0 to skip (default %(default)s)")
    ap.add_argument("--reps", type=int, default=3,
                    help="measured repetitions per cell, interleaved across servers "
                         "(default %(default)s)")
    ap.add_argument("--timeout", type=int, default=10,
                    help="client per-request timeout in seconds; slower responses count "
                         "as timeouts (default %(default)s)")
    ap.add_argument("--no-pin", action="store_true",
                    help="do not pin servers and the load tool to separate CPUs")
    ap.add_argument("--server-cpus", default="0",
                    help="taskset CPU list for servers (default %(default)s)")
    ap.add_argument("--client-cpus", default="1",
                    help="taskset CPU list for the load tool and this script (default %(default)s)")
    ap.add_argument("--client-threads", type=int, default=1,
                    help="wrk -t / oha --worker-threads (default %(default)s)")
    ap.add_argument("--threads", type=int, default=0,
                    help="pass --threads N to threadserve (default: its own default)")
    ap.add_argument("--ts-arg", action="append", metavar="ARGS",
                    help="extra arguments for threadserve (repeatable, split on spaces)")
    ap.add_argument("--baseline-bin", metavar="PATH",
                    help="a second threadserve binary (e.g. the build before a change), "
                         f"run as server {BASE} (alias base) with threadserve's flags "
                         "and pinning, right after threadserve in every cell; the "
                         "tables gain a ×base column and a threadserve/base section")
    ap.add_argument("--tinyhttp-threads", type=int, default=8,
                    help="worker threads of the tiny_http baseline (default %(default)s)")
    ap.add_argument("--no-build", action="store_true",
                    help="use the binaries already in target/release")
    ap.add_argument("--out", default=None,
                    help="directory for DATE-HOST.{json,md,svg} (default loadtest/results; "
                         "--quick: loadtest/work/quick)")
    ap.add_argument("--keep-raw", action="store_true",
                    help="also keep the load tool's raw parsed output in the JSON")
    ap.add_argument("--quick", action="store_true",
                    help="CI smoke run (<60 s): threadserve only, 1k file, 64 conns, 2 s, "
                         "1 rep; exit 1 on any error, non-2xx or start failure")
    ap.add_argument("--profile", nargs="?", const="", default=None, metavar="SIZE:CONNS",
                    help="after the measured reps of one cell (default: the first cell "
                         "run), one extra threadserve run under `perf record -g` (else "
                         "`strace -c -f`); top entries to DATE-HOST-profile.txt")
    return ap


def parse_list(s, allowed, what, conv=str, aliases=None):
    out = []
    for item in s.split(","):
        item = item.strip()
        if not item:
            continue
        if aliases:
            item = aliases.get(item, item)
        try:
            item = conv(item)
        except ValueError:
            sys.exit(f"bad {what}: {item!r}")
        if allowed is not None and item not in allowed:
            sys.exit(f"unknown {what} {item!r}; choose from {', '.join(map(str, allowed))}")
        if item not in out:
            out.append(item)
    return out


def with_baseline(args, servers):
    """Checks --baseline-bin (made absolute: servers start in loadtest/work) and
    puts threadserve-base right after threadserve, so the two run back to back."""
    if not args.baseline_bin:
        if BASE in servers:
            sys.exit(f"{BASE} is the binary given with --baseline-bin PATH")
        return servers
    if args.quick:
        sys.exit("--quick runs threadserve alone; drop --baseline-bin")
    args.baseline_bin = os.path.abspath(os.path.expanduser(args.baseline_bin))
    if not (os.path.isfile(args.baseline_bin) and os.access(args.baseline_bin, os.X_OK)):
        sys.exit(f"--baseline-bin {args.baseline_bin}: not an executable file")
    servers = [n for n in servers if n != BASE]
    at = servers.index("threadserve") + 1 if "threadserve" in servers else 0
    return servers[:at] + [BASE] + servers[at:]


def cpu_list_count(spec):
    n = set()
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-")
            n.update(range(int(a), int(b) + 1))
        elif part.strip():
            n.add(int(part))
    return n


def matrix_from_args(args):
    """Applies --quick and checks the lists; returns (servers, sizes, conns)."""
    if args.quick:
        if args.compression or args.https:
            sys.exit("--quick runs the 1k cell alone; drop --compression and --https")
        args.servers, args.sizes, args.conns = "threadserve", "1k", "64"
        args.duration, args.reps, args.warmup = 2, 1, 1
    servers = parse_list(args.servers, KNOWN_SERVERS, "server", aliases=SERVER_ALIASES)
    servers = with_baseline(args, servers)
    sections = args.compression or args.https
    if args.sizes is None:
        sizes = [] if sections else list(ALL_SIZES)
    else:
        sizes = parse_list(args.sizes, KNOWN_SIZES, "size")
    if args.compression:
        sizes += [s for s in COMPRESSION_SIZES if s not in sizes]
    if args.https:
        sizes += [s for s in TLS_SIZES if s not in sizes]
    if args.conns is None:
        conns = list(ALL_CONNS)
        if sections:
            conns = sorted(set((COMPRESSION_CONNS if args.compression else [])
                               + (TLS_CONNS if args.https else [])))
    else:
        conns = parse_list(args.conns, None, "connection count", conv=int)
    if not sizes or not conns:
        sys.exit("--sizes and --conns must name at least one cell")
    if any(c < 1 for c in conns) or args.reps < 1 or args.duration <= 0:
        sys.exit("connections, --reps and --duration must be positive")
    return servers, sizes, conns


def set_pinning(args, ncpu):
    """Sets args.server_prefix and args.client_prefix; returns the description."""
    if args.no_pin:
        pinning = "off (--no-pin)"
        args.server_prefix, args.client_prefix = [], []
    elif ncpu < 2:
        pinning = f"off (only {ncpu} CPU)"
        args.server_prefix, args.client_prefix = [], []
    elif not which("taskset"):
        pinning = "off (taskset not found: apt-get install util-linux)"
        args.server_prefix, args.client_prefix = [], []
    else:
        pinning = (f"servers on CPU {args.server_cpus} (taskset), load tool on CPU "
                   f"{args.client_cpus}, {args.client_threads} load-tool thread(s)")
        args.server_prefix = ["taskset", "-c", args.server_cpus]
        args.client_prefix = ["taskset", "-c", args.client_cpus]
    return pinning


def pin_self(args):
    """Pins this script (and its /proc sampling) next to the load tool."""
    if args.client_prefix:
        try:
            os.sched_setaffinity(0, cpu_list_count(args.client_cpus))
        except (OSError, ValueError):
            pass


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            return m.group(1) if m else ""
    except OSError:
        return ""


def base_meta(args, now, host, pinning, nofile, order, sizes, conns, available, skipped):
    git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    versions = peers.server_versions(available, args.tinyhttp_threads)
    return {
        "date": now.strftime("%Y-%m-%d %H:%M"),
        "host": host,
        "tool": args.tool,
        "tool_version": tool_version([args.tool_path, "--version"]),
        "duration": args.duration, "warmup": args.warmup, "reps": args.reps,
        "timeout": args.timeout,
        "pinning": pinning,
        "nproc": os.cpu_count() or 1, "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "git_commit": git.stdout.strip() or "unknown",
        "nofile": nofile,
        "servers": order, "sizes": sizes, "conns": conns,
        "server_versions": {k: v for k, v in versions.items() if k in order},
        "skipped": skipped,
        "quick": args.quick,
        "baseline_bin": args.baseline_bin,
    }


def log_plan(args, order, sizes, conns):
    log(f"servers: {', '.join(order)}; sizes: {', '.join(sizes)}; conns: "
        f"{', '.join(map(str, conns))}; {args.reps}×{args.duration}s "
        f"(+{args.warmup}s warm-up) with {args.tool}")
    est = len(sizes) * len(conns) * len(order) * (
        (args.warmup + 1 if args.warmup else 0) + args.reps * (args.duration + 1) + 1)
    log(f"estimated time: ~{est / 60:.0f} min" if est >= 120 else f"estimated time: ~{est:.0f} s")


def run_matrix(args, specs, sizes, conns, scripts, paths_file, profile=None):
    """Every cell, sizes outer, connections inner. Returns (runs, notes,
    interrupted); SIGTERM and ^C stop it with what was measured so far.
    profile, a ProfileRun, is called in the cell it wants."""
    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    runs, notes = [], []
    interrupted = False
    try:
        for size in sizes:
            for c in conns:
                log(f"cell: {size}, {c} connections")
                hook = profile if profile is not None and profile.wants(size, c) else None
                run_cell(args, specs, size, c, scripts, paths_file, runs, notes, hook)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: writing what was measured so far")
    return runs, notes, interrupted


def finish_meta(meta, t_start, interrupted):
    """What is known only after the runs: elapsed time, argv, nginx.conf."""
    meta["elapsed_s"] = round(time.time() - t_start, 1)
    meta["server_argv"] = peers.STARTED_ARGV
    for mode, key in (("plain", "nginx_conf"), ("compression", "nginx_conf_compression"),
                      ("tls", "nginx_conf_tls")):
        conf = peers.nginx_conf_text(mode)
        if conf is not None:
            meta[key] = conf
    if "tls" in meta:
        meta["tls"]["wrk_shim"] = https.SHIM_SO if https.shim_error() is None else None
        if https.shim_error():
            meta["tls"]["wrk_shim_error"] = https.shim_error()
    meta["interrupted"] = interrupted


def choose_tool(args, sizes, skipped):
    """Finds the load tool (sets args.tool_path); returns the sizes it can run,
    or None if it is not installed."""
    tool_path = which(args.tool)
    if not tool_path:
        log(f"{args.tool} not found: install it with `{INSTALL_HINTS[args.tool]}`")
        return None
    args.tool_path = tool_path
    if args.tool == "oha" and "random" in sizes and not oha_supports_random(tool_path):
        log("oha: no --urls-from-file/--rand-regex-url in this version; "
            "skipping the random-path cell")
        skipped.append("random-path cell: this oha has no random-URL option")
        sizes = [s for s in sizes if s != "random"]
    return sizes


def main():
    args = build_parser().parse_args()
    servers, sizes, conns = matrix_from_args(args)
    if args.profile is not None:
        profile_cell = parse_spec(args.profile, servers, sizes, conns)
    out_dir = args.out or (os.path.join(WORK, "quick") if args.quick else RESULTS)
    t_start = time.time()
    skipped = []

    nofile = raise_nofile()
    if max(conns) + 100 > nofile:
        log(f"warning: RLIMIT_NOFILE is {nofile}; {max(conns)} connections may fail")
    sizes = choose_tool(args, sizes, skipped)
    if sizes is None:
        return 2
    pinning = set_pinning(args, os.cpu_count() or 1)
    log(f"pinning: {pinning}")
    available = peers.find_servers(servers, args.no_build, skipped, args.baseline_bin)
    pin_self(args)   # after the builds

    if any(cell_mode(s) == "tls" for s in sizes):
        bad = https.ensure_cert()
        if bad:
            log(f"tls: {bad}; the HTTPS cells cannot run")
            return 2
    paths_file = make_docroot()
    scripts = write_wrk_scripts(paths_file)
    specs = peers.build_specs(args, available)
    order = [n for n in servers if n in specs]
    if not order:
        log("no server can run")
        return 1

    host = socket.gethostname()
    now = datetime.datetime.now()
    meta = base_meta(args, now, host, pinning, nofile, order, sizes, conns, available,
                     skipped)
    if any(cell_mode(s) == "tls" for s in sizes):
        meta["tls"] = {"certificate": https.cert_summary(), "cert_file": https.TLS_CERT,
                       "servers": [n for n in order if specs[n].tls]}
    log_plan(args, order, sizes, conns)
    stem = os.path.join(out_dir, f"{now.strftime('%Y%m%d-%H%M%S')}-{host}")
    profile = None
    if args.profile is not None:
        cell = profile_cell if args.profile else (sizes[0], conns[0])   # oha may drop random
        profile = ProfileRun(args, *cell, stem + "-profile.txt")
        meta["profile"] = profile.meta
    runs, notes, interrupted = run_matrix(args, {n: specs[n] for n in order}, sizes,
                                          conns, scripts, paths_file, profile)

    summary = summarize(runs)
    finish_meta(meta, t_start, interrupted)
    md = write_results(stem, meta, runs, notes, summary, sizes, conns, order)
    log("")
    log(md)
    log(f"results: {stem}.json / .md / .svg  ({meta['elapsed_s']:.0f}s)")

    if args.quick and quick_verdict("threadserve" in specs, notes, summary):
        return 1
    return 130 if interrupted else 0
