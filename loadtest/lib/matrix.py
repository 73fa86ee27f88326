"""Running one cell of the matrix: start every server, check what it serves,
warm up, then the measured repetitions interleaved across servers (A B C A B C)."""

import os
import signal
import time

from . import wire
from .common import (ACCEPT_ENCODING, DOCROOT, NEW_CONNECTION, PAUSE_BETWEEN_RUNS,
                     SIZES, cell_mode, log, log_tail)
from .peers import RunningServer
from .procfs import Sampler, cpu_seconds, cpu_ticks
from .report import error_count, fmt_ms
from .tools import run_tool

# A run's bytes per response above the probe's by more than this share means the
# server sent something else under load (e.g. identity instead of compressed).
WIRE_TOLERANCE = 0.05


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
        self.accept = ACCEPT_ENCODING.get(size)   # None: not a compression cell
        self.mode = cell_mode(size)
        self.wire = {}                            # server -> probe record
        self.tls = {}                             # server -> TLS probe record

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
            if self.accept and not self.probe(s):
                s.stop()
                continue
            if self.mode == "tls" and not self.probe_tls(s):
                s.stop()
                continue
            up.append(s)

    def probe_tls(self, s):
        """HTTPS cells: the GET over TLS as wrk makes it, and whether the server
        resumes a session (wire.tls_probe); False (and a note) if it is wrong."""
        path = SIZES[self.size][0]
        with open(os.path.join(DOCROOT, path.lstrip("/")), "rb") as f:
            want = f.read()
        w = wire.tls_probe(s.port, path, want, s.tls, self.size in NEW_CONNECTION)
        self.tls[s.name] = w
        if w["problem"]:
            log(f"  {s.name}: TLS check FAILED: {w['problem']}")
            self.note(s.name, f"TLS check failed: {w['problem']}")
            return False
        resumes = {True: "resumes sessions", False: "does not resume sessions",
                   None: f"resumption check failed ({w.get('resume_error')})"}[w["resumes"]]
        log(f"  {s.name}: {w['version']} {w['cipher']}, ALPN {w['alpn'] or 'none'}, "
            f"{resumes}" + (", closes after Connection: close"
                            if w["connection_close"] else ""))
        if w.get("close_without_header"):
            log(f"  {s.name}: closes without a `Connection: close` header: wrk counts "
                "a read error per request")
            self.note(s.name, "closes the connection without a `Connection: close` "
                      "header, so wrk counts one read error per request (the requests "
                      "still count, each on a new connection)")
        return True

    def probe(self, s):
        """Compression cells: one GET with the cell's Accept-Encoding, recorded in
        self.wire; False (and a note) if the response is wrong."""
        path = SIZES[self.size][0]
        with open(os.path.join(DOCROOT, path.lstrip("/")), "rb") as f:
            want = f.read()
        w = wire.probe(s.port, path, self.accept, want)
        self.wire[s.name] = w
        if w["problem"]:
            log(f"  {s.name}: compressed GET FAILED: {w['problem']}")
            self.note(s.name, f"compressed GET failed: {w['problem']}")
            return False
        log(f"  {s.name}: Accept-Encoding: {self.accept} -> {w['content_encoding']}, "
            f"{w['payload_bytes']} B body ({w['file_bytes'] / max(1, w['payload_bytes']):.2f}x), "
            f"{w['wire_bytes']} B on the wire; {w['verified']}")
        if w["content_encoding"] == "identity":
            self.note(s.name, f"did not compress (Accept-Encoding: {self.accept})")
        return True

    def measure(self, s, duration):
        """One load-tool run against s, with its process tree sampled."""
        sampler = Sampler(s.proc.pid)
        sampler.start()
        t0, ticks0 = time.monotonic(), cpu_ticks(s.proc.pid)
        r = run_tool(self.args, s.url, self.size, self.conns, duration, self.scripts,
                     self.paths_file, tls=self.mode == "tls")
        cpu, wall = cpu_seconds(ticks0, cpu_ticks(s.proc.pid)), time.monotonic() - t0
        sampler.finish()
        # The server's CPU between two /proc readings around the load run: per
        # response, and as a share of one core over that interval.
        r["cpu_s"] = cpu
        r["cpu_pct"] = 100 * cpu / wall if wall > 0 else None
        r["cpu_us_per_req"] = 1e6 * cpu / r["requests"] if r.get("requests") else None
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
        hs = r.get("handshakes")
        if self.size in NEW_CONNECTION and self.mode == "tls" and self.args.tool == "wrk":
            rec["tls"] = self.tls.get(s.name)
            # Every response closes its connection: there must be about one
            # full handshake per response (wrk's shim counts them).
            if hs is None:
                flag += "  !! handshakes not counted"
            elif hs["resumed"] or hs["full"] < 0.95 * r["requests"]:
                flag += f"  !! handshakes full {hs['full']} resumed {hs['resumed']}"
                rec["handshake_mismatch"] = True
        elif self.mode == "tls":
            rec["tls"] = self.tls.get(s.name)
        w = self.wire.get(s.name)
        # The shortest a full response can be: the file, or in a compression cell
        # the body this server sent to the probe.
        size_bytes = w["body_wire_bytes"] if w else SIZES[size][1]
        if r["requests"] and r["bytes"] < r["requests"] * size_bytes:
            flag += "  !! short responses"
            rec["short_responses"] = True
        if w:
            rec["wire"] = w
            per = r["bytes"] / r["requests"] if r["requests"] else 0
            r["bytes_per_resp"] = rec["bytes_per_resp"] = per
            if self.args.tool == "wrk" and per > w["wire_bytes"] * (1 + WIRE_TOLERANCE):
                flag += f"  !! {per:.0f} B/response, probe {w['wire_bytes']} B"
                rec["wire_mismatch"] = True
        cpu = ""
        if r.get("cpu_us_per_req") is not None:
            cpu = f"  cpu {r['cpu_us_per_req']:.1f}µs/req {r['cpu_pct']:.0f}%"
        if hs is not None:
            cpu += f"  tls {hs['full']} full/{hs['resumed']} resumed"
        log(head + f"{r['rps']:>10.0f} req/s  p50 {fmt_ms(r['p50_ms'])}  "
            f"p99 {fmt_ms(r['p99_ms'])}  rss {r['rss_peak_kb'] / 1024:.1f} MiB  "
            f"threads {r['threads_peak']}{cpu}{flag}")
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
        specs = list(self.specs.values())
        if self.mode == "tls":
            for spec in [sp for sp in specs if not sp.tls]:
                log(f"  {spec.name}: no HTTPS here, not run in this cell")
                self.note(spec.name, "not run: no HTTPS support")
            specs = [sp for sp in specs if sp.tls]
        servers = [RunningServer(spec, args.server_prefix, self.mode) for spec in specs]
        up = []
        try:
            self.start_servers(servers, up)
            if args.warmup > 0:
                for s in up:
                    if s.alive():
                        self.measure(s, args.warmup)
                        time.sleep(PAUSE_BETWEEN_RUNS)
            for rep in range(args.reps):
                # A B C, then C B A: a server's place in the sequence (what ran just
                # before it, how many TIME_WAIT sockets the last run left) cancels
                # out over the repetitions instead of always favouring one server.
                for s in (up if rep % 2 == 0 else up[::-1]):
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
