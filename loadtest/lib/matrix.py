"""Running one cell of the matrix: start every server, check what it serves,
warm up, then the measured repetitions interleaved across servers (A B C A B C)."""

import signal
import time

from .common import PAUSE_BETWEEN_RUNS, SIZES, log, log_tail
from .peers import RunningServer
from .procfs import Sampler
from .report import error_count, fmt_ms
from .tools import run_tool


class Cell:
    """One (size, connections) cell; appends run records and notes to the lists."""

    def __init__(self, args, specs, size, conns, scripts, paths_file, out_runs,
                 cell_notes):
        self.args = args
        self.specs = specs
        self.size = size
        self.conns = conns
        self.scripts = scripts
        self.paths_file = paths_file
        self.runs = out_runs
        self.notes = cell_notes

    def note(self, server, text):
        self.notes.append({"size": self.size, "conns": self.conns, "server": server,
                           "note": text})

    def start_servers(self, servers, up):
        """Starts and checks each server; appends those that passed to up."""
        for s in servers:
            if not s.start():
                log(f"  {s.name}: FAILED to start: {s.error} (log: {s.logpath})")
                log_tail(s.logpath)
                self.note(s.name, f"failed to start: {s.error}")
                s.stop()
                continue
            bad = s.sanity_check([self.size])
            if bad:
                log(f"  {s.name}: sanity check FAILED: {bad}")
                self.note(s.name, f"sanity check failed: {bad}")
                s.stop()
                continue
            up.append(s)

    def measure(self, s, duration):
        """One load-tool run against s, with its process tree sampled."""
        sampler = Sampler(s.proc.pid)
        sampler.start()
        r = run_tool(self.args, s.url, self.size, self.conns, duration, self.scripts,
                     self.paths_file)
        sampler.finish()
        r["rss_peak_kb"] = sampler.rss_peak_kb
        r["hwm_kb"] = sampler.hwm_kb
        r["threads_peak"] = sampler.threads_peak
        r["processes_peak"] = sampler.processes_peak
        r["server_alive_after"] = s.alive()
        return r

    def rep(self, s, rep):
        """One measured repetition of s: records it and logs one line. Returns
        False if s was not running (nothing was run)."""
        size, conns = self.size, self.conns
        rec = {"server": s.name, "size": size, "conns": conns, "tool": self.args.tool,
               "rep": rep}
        head = f"  {size:>6} c={conns:<4} {s.name:<18} rep {rep}: "
        if not s.alive():
            rec["tool_error"] = "server not running"
            self.runs.append(rec)
            log(head + "server not running")
            return False
        r = self.measure(s, self.args.duration)
        rec.update(r)
        if not self.args.keep_raw:
            rec.pop("raw", None)
        self.runs.append(rec)
        if "tool_error" in r:
            log(head + r["tool_error"])
            return True
        flag = ""
        if error_count(r) or r["non2xx"]:
            flag = f"  !! errors={r['errors']} non2xx={r['non2xx']}"
        if not r["server_alive_after"]:
            flag += "  !! server died"
        size_bytes = SIZES[size][1]
        if r["requests"] and r["bytes"] < r["requests"] * size_bytes:
            flag += "  !! short responses"
            rec["short_responses"] = True
        log(head + f"{r['rps']:>10.0f} req/s  p50 {fmt_ms(r['p50_ms'])}  "
            f"p99 {fmt_ms(r['p99_ms'])}  rss {r['rss_peak_kb'] / 1024:.1f} MiB  "
            f"threads {r['threads_peak']}{flag}")
        return True

    def stop_servers(self, servers, up):
        for s in servers:
            if s.proc is not None:
                code = s.stop()
                if code not in (0, None, -signal.SIGTERM) and s in up:
                    self.note(s.name, f"exit status {code} after SIGTERM")

    def run(self, after_reps=None):
        """Runs the cell. after_reps(cell, up), if given, is called after the
        measured repetitions while the servers still run (--profile)."""
        args = self.args
        servers = [RunningServer(self.specs[n], args.server_prefix) for n in self.specs]
        up = []
        try:
            self.start_servers(servers, up)
            if args.warmup > 0:
                for s in up:
                    if s.alive():
                        self.measure(s, args.warmup)
                        time.sleep(PAUSE_BETWEEN_RUNS)
            for rep in range(args.reps):
                for s in up:
                    if self.rep(s, rep):
                        time.sleep(PAUSE_BETWEEN_RUNS)
            if after_reps is not None:
                after_reps(self, up)
        finally:
            self.stop_servers(servers, up)


def run_cell(args, specs, size, conns, scripts, paths_file, out_runs, cell_notes,
             after_reps=None):
    Cell(args, specs, size, conns, scripts, paths_file, out_runs, cell_notes).run(
        after_reps)
