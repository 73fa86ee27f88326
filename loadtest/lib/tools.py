"""The load tools: wrk (with the Lua reporter) and oha, how they are invoked and
how their output is turned into one record per run."""

import json
import os
import re
import subprocess

from . import https
from .common import ACCEPT_ENCODING, HERE, NEW_CONNECTION, SIZES, WORK, one_line


def header_args(size):
    """-H for the compression cells' Accept-Encoding (both tools spell it so; in
    oha it replaces the Accept-Encoding it sends by default), and for the
    new-connection cells' `Connection: close`."""
    ae = ACCEPT_ENCODING.get(size)
    h = ["-H", f"Accept-Encoding: {ae}"] if ae else []
    if size in NEW_CONNECTION:
        h += ["-H", "Connection: close"]
    return h


def wrk_env(size, tls):
    """wrk's environment in the HTTPS cells: the handshake shim preloaded
    (lib/https.py), dropping sessions in the new-connection cells. None: as is."""
    if not tls:
        return None
    so = https.wrk_shim()
    if so is None:
        return None
    env = dict(os.environ)
    env["LD_PRELOAD"] = so + (" " + env["LD_PRELOAD"] if env.get("LD_PRELOAD") else "")
    env["WRK_TLS_FRESH"] = "1" if size in NEW_CONNECTION else "0"
    return env


def write_wrk_scripts(paths_file):
    """Writes the wrk scripts of the fixed-path and the random-path cells."""
    with open(os.path.join(HERE, "wrk", "report.lua")) as f:
        report = f.read()
    with open(os.path.join(HERE, "wrk", "random.lua")) as f:
        rnd = f.read()
    fixed = os.path.join(WORK, "wrk-fixed.lua")
    with open(fixed, "w") as f:
        f.write(report)
    randomp = os.path.join(WORK, "wrk-random.lua")
    with open(randomp, "w") as f:
        f.write(f"local PATHS_FILE = {json.dumps(paths_file)}\n")
        f.write(rnd + "\n" + report)
    return fixed, randomp


# ---------------------------------------------------------------- wrk

def run_wrk(args, wrk, url, size, conns, duration, scripts, tls=False):
    fixed, randomp = scripts
    path, _ = SIZES[size]
    script = randomp if path is None else fixed
    target = url + (path or "/")
    threads = min(args.client_threads, conns)
    cmd = args.client_prefix + [wrk, f"-t{threads}", f"-c{conns}", f"-d{duration}s",
                                "--timeout", f"{args.timeout}s"] + header_args(size) + [
                                "-s", script, target]
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=duration + args.timeout + 30,
                           env=wrk_env(size, tls))
    except subprocess.TimeoutExpired:
        return {"tool_error": "wrk did not finish in time", "cmd": cmd}
    m = re.search(r"^WRKJSON (\{.*\})\s*$", p.stdout, re.M)
    if not m:
        return {"tool_error": f"wrk exit {p.returncode}: {one_line(p.stdout)}",
                "cmd": cmd}
    r = parse_wrk(json.loads(m.group(1)), duration, cmd)
    if tls:
        hs = r["handshakes"] = https.parse_handshakes(p.stdout)
        if hs and r["seconds"]:
            r["handshakes_per_s"] = (hs["full"] + hs["resumed"]) / r["seconds"]
    return r


def parse_wrk(w, duration, cmd):
    """One run record from the WRKJSON line of loadtest/wrk/report.lua."""
    secs = w["duration_us"] / 1e6 or duration
    return {
        "cmd": cmd,
        "requests": w["requests"],
        "seconds": secs,
        "rps": w["requests"] / secs,
        "bytes": w["bytes"],
        "bytes_per_s": w["bytes"] / secs,
        "p50_ms": w["p50_us"] / 1000,
        "p90_ms": w["p90_us"] / 1000,
        "p99_ms": w["p99_us"] / 1000,
        "p999_ms": w["p999_us"] / 1000,
        "mean_ms": w["latency_mean_us"] / 1000,
        "max_ms": w["latency_max_us"] / 1000,
        "errors": {"connect": w["errors_connect"], "read": w["errors_read"],
                   "write": w["errors_write"], "timeout": w["errors_timeout"]},
        # wrk counts status >= 400; the sanity check makes 3xx unlikely.
        "non2xx": w["errors_status"],
        "raw": w,
    }


# ---------------------------------------------------------------- oha

_OHA_HELP = None


def oha_help(oha):
    global _OHA_HELP
    if _OHA_HELP is None:
        try:
            _OHA_HELP = subprocess.run([oha, "--help"], stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True,
                                       timeout=10).stdout
        except Exception:
            _OHA_HELP = ""
    return _OHA_HELP


def oha_random_args(oha, url, paths_file):
    """oha arguments for the random-path cell, or None if this oha can't."""
    h = oha_help(oha)
    if "--urls-from-file" in h:
        urls = os.path.join(WORK, f"oha-urls-{url.rsplit(':', 1)[1]}.txt")
        with open(paths_file) as src, open(urls, "w") as dst:
            for line in src:
                dst.write(url + line)
        return ["--urls-from-file", urls]
    if "--rand-regex-url" in h:
        # oha treats '.' as a literal in --rand-regex-url.
        return ["--rand-regex-url", url + "/many/[0-9]{4}.bin"]
    return None


def oha_supports_random(oha):
    h = oha_help(oha)
    return "--urls-from-file" in h or "--rand-regex-url" in h


def run_oha(args, oha, url, size, conns, duration, paths_file, tls=False):
    path, _ = SIZES[size]
    h = oha_help(oha)
    if path is None:
        target = oha_random_args(oha, url, paths_file)
        if target is None:
            return {"tool_error": "this oha has no random-URL option"}
    else:
        target = [url + path]
    fmt = ["--output-format", "json"] if "--output-format" in h else ["--json"]
    cmd = args.client_prefix + [oha, "-z", f"{duration}s", "-c", str(conns),
                                "--no-tui", "-t", f"{args.timeout}s"] + fmt
    if "--worker-threads" in h:
        cmd += ["--worker-threads", str(args.client_threads)]
    if tls and "--insecure" in h:
        cmd.append("--insecure")    # the self-signed certificate
    if size in NEW_CONNECTION and "--disable-keepalive" in h:
        cmd.append("--disable-keepalive")
    cmd += header_args(size) + target
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=duration + args.timeout + 30)
    except subprocess.TimeoutExpired:
        return {"tool_error": "oha did not finish in time", "cmd": cmd}
    finally:
        if path is None and target and target[0] == "--urls-from-file":
            try:
                os.unlink(target[1])
            except OSError:
                pass
    try:
        o = json.loads(p.stdout)
    except ValueError:
        return {"tool_error": f"oha exit {p.returncode}: {one_line(p.stderr + p.stdout)}",
                "cmd": cmd}
    return parse_oha(o, duration, cmd)


def parse_oha(o, duration, cmd):
    """One run record from oha's JSON output."""
    s = o.get("summary", {})
    lat = o.get("latencyPercentiles", {})
    codes = {int(k): v for k, v in (o.get("statusCodeDistribution") or {}).items()}
    errs = o.get("errorDistribution") or {}
    # Requests cut off by the end of the run are not server errors.
    errs = {k: v for k, v in errs.items() if "deadline" not in k.lower()}
    ok = sum(v for k, v in codes.items() if 200 <= k < 300)
    total = sum(codes.values())
    secs = s.get("total") or duration
    size_total = s.get("totalData") or 0

    def ms(key):
        v = lat.get(key)
        return None if v is None else v * 1000

    return {
        "cmd": cmd,
        "requests": total,
        "seconds": secs,
        "rps": total / secs if secs else 0,
        "bytes": size_total,
        "bytes_per_s": size_total / secs if secs else 0,
        "p50_ms": ms("p50"), "p90_ms": ms("p90"), "p99_ms": ms("p99"),
        "p999_ms": ms("p99.9"),
        "mean_ms": (s.get("average") or 0) * 1000,
        "max_ms": (s.get("slowest") or 0) * 1000,
        "errors": errs,
        "non2xx": total - ok,
        "status_codes": codes,
    }


def run_tool(args, url, size, conns, duration, scripts, paths_file, tls=False):
    """One run of the selected load tool (args.tool at args.tool_path); tls: an
    HTTPS cell (url is https://)."""
    if args.tool == "wrk":
        return run_wrk(args, args.tool_path, url, size, conns, duration, scripts, tls)
    return run_oha(args, args.tool_path, url, size, conns, duration, paths_file, tls)
