"""--profile: where threadserve's time goes during one cell.

After the measured repetitions of the chosen cell, threadserve gets one extra
load run of --duration seconds with a profiler attached to its pid: `perf record
-g` when perf works, else `strace -c -f` (syscall counts and times). The run is
not part of the results, so the profiler's overhead does not touch the medians.
The top of the report goes to DATE-HOST-profile.txt beside the other results;
perf's full data stays in loadtest/work/profile/perf.data.
"""

import os
import re
import signal
import subprocess
import sys
import time

from .common import KNOWN_SIZES, WORK, log, which

SUBJECT = "threadserve"
PROFILE_DIR = os.path.join(WORK, "profile")
PERF_DATA = os.path.join(PROFILE_DIR, "perf.data")
STRACE_OUT = os.path.join(PROFILE_DIR, "strace.txt")
TOP_LINES = 40          # flat perf profile: entries kept
GRAPH_LINES = 60        # call-graph excerpt: lines kept
ATTACH_WAIT = 0.5       # seconds for the profiler to attach before the load starts
EMPTY_COLUMNS = re.compile(r"(\s+-)*\s*$")
HINTS = "apt-get install linux-perf (or strace)"


def parse_spec(spec, servers, sizes, conns):
    """(size, conns) of the profiled cell: SIZE:CONNS, or the first cell run
    when spec is empty. Exits with a message on a bad spec."""
    if SUBJECT not in servers:
        sys.exit("--profile profiles threadserve: add it to --servers")
    if not spec:
        return sizes[0], conns[0]
    size, _, c = spec.partition(":")
    try:
        c = int(c)
    except ValueError:
        sys.exit(f"bad --profile {spec!r}: want SIZE:CONNS, e.g. 1k:64")
    if size not in KNOWN_SIZES or size not in sizes or c not in conns:
        sys.exit(f"--profile {spec!r} is not a cell of this run "
                 f"(sizes {', '.join(sizes)}; conns {', '.join(map(str, conns))})")
    return size, c


def lines_of(text, limit):
    """The first `limit` non-blank, non-comment lines of a perf report, without
    the padding and empty ("-") columns perf puts after the symbol."""
    keep = [EMPTY_COLUMNS.sub("", l) for l in text.splitlines()
            if l.strip() and not l.startswith("#")]
    return keep[:limit]


def perf_report(extra):
    cmd = ["perf", "report", "-i", PERF_DATA, "--stdio"] + extra
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True, timeout=300)
        return " ".join(cmd), p.stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return " ".join(cmd), f"# failed: {e}\n"


def perf_text():
    """Per-thread shares, the flat profile and a call-graph excerpt."""
    sections = [
        ("time by thread", ["--no-children", "--sort", "comm", "-g", "none"], 12),
        (f"top {TOP_LINES} symbols (self time)",
         ["--no-children", "--sort", "dso,symbol", "-g", "none"], TOP_LINES),
        (f"call graph, first {GRAPH_LINES} lines (callers of the hottest symbols)",
         ["--no-children", "--sort", "symbol", "-g", "caller,2,callee",
          "--percent-limit", "2"], GRAPH_LINES),
    ]
    out = []
    for title, extra, limit in sections:
        cmd, text = perf_report(extra)
        out += ["", f"## {title}", f"# {cmd}", ""] + lines_of(text, limit)
    return "\n".join(out) + "\n"


class Profiler:
    """One profiler attached to a pid: start(), stop(), then text()."""

    def __init__(self, kind, pid, prefix):
        self.kind = kind
        self.pid = pid
        if kind == "perf":
            self.cmd = prefix + ["perf", "record", "-g", "-p", str(pid), "-o", PERF_DATA]
        else:
            self.cmd = prefix + ["strace", "-c", "-f", "-p", str(pid), "-o", STRACE_OUT]
        self.logpath = os.path.join(PROFILE_DIR, f"{kind}.log")
        self.proc = None

    def start(self):
        """Starts and waits ATTACH_WAIT; returns an error text or None."""
        os.makedirs(PROFILE_DIR, exist_ok=True)
        for stale in (PERF_DATA, STRACE_OUT):
            if os.path.exists(stale):
                os.unlink(stale)
        with open(self.logpath, "wb") as logf:
            try:
                self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL,
                                             stdout=logf, stderr=subprocess.STDOUT)
            except OSError as e:
                return f"cannot start {self.kind}: {e}"
        time.sleep(ATTACH_WAIT)
        if self.proc.poll() is not None:
            return f"{self.kind} exited with {self.proc.returncode}: {self.log_text()}"
        return None

    def stop(self):
        """SIGINT (both write their data on it), then SIGKILL after 60 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def log_text(self):
        try:
            with open(self.logpath, errors="replace") as f:
                return " / ".join(l.strip() for l in f.read().splitlines() if l.strip())
        except OSError:
            return ""

    def text(self):
        if self.kind == "perf":
            return perf_text()
        try:
            with open(STRACE_OUT, errors="replace") as f:
                return "\n" + f.read()
        except OSError:
            return f"\n# strace wrote no summary: {self.log_text()}\n"


def available_kinds():
    return [k for k in ("perf", "strace") if which(k)]


class ProfileRun:
    """Profiles threadserve in one cell; its meta dict goes into the JSON."""

    def __init__(self, args, size, conns, path):
        self.args = args
        self.size = size
        self.conns = conns
        self.path = path
        self.meta = {"cell": f"{size}:{conns}", "server": SUBJECT,
                     "file": os.path.basename(path), "profiler": None,
                     "note": "the profiled cell did not run"}

    def wants(self, size, conns):
        return (size, conns) == (self.size, self.conns) and self.meta["profiler"] is None

    def __call__(self, cell, up):
        """Cell.run's after_reps hook: the extra run under a profiler."""
        ts = next((s for s in up if s.name == SUBJECT and s.alive()), None)
        if ts is None:
            self.meta["note"] = f"{SUBJECT} was not running in the profiled cell"
            log(f"  profile: {self.meta['note']}")
            return
        errors = []
        for kind in available_kinds():
            prof = Profiler(kind, ts.proc.pid, self.args.client_prefix)
            err = prof.start()
            if err:
                errors.append(err)
                log(f"  profile: {err}")
                continue
            try:
                r = cell.measure(ts, self.args.duration)
            finally:
                prof.stop()
            self.write(prof, r, errors)
            return
        self.meta["note"] = "; ".join(errors) or f"neither perf nor strace found: {HINTS}"
        log(f"  profile: not taken: {self.meta['note']}")

    def write(self, prof, r, errors):
        rate = "no result" if "tool_error" in r else f"{r['rps']:.0f} req/s"
        if "tool_error" in r:
            rate += f" ({r['tool_error']})"
        head = [
            f"# {SUBJECT} profile: cell {self.size}, {self.conns} connections, "
            f"{self.args.tool}, {self.args.duration} s",
            f"# profiler: {' '.join(prof.cmd)}",
            f"# during one extra run after the measured repetitions: {rate} under "
            "the profiler (not in the results)",
        ]
        head += [f"# fallback because: {e}" for e in errors]
        if prof.kind == "perf":
            head.append(f"# full data: perf report -i {PERF_DATA}")
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path, "w") as f:
            f.write("\n".join(head) + "\n" + prof.text())
        self.meta.update({"profiler": prof.kind, "cmd": prof.cmd, "rps": r.get("rps"),
                          "note": "extra run after the measured repetitions"})
        log(f"  profile: {SUBJECT} under {prof.kind}: {rate}; top entries in {self.path}")
