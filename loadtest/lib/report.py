"""Reporting: per-cell medians, the Markdown tables, the results files and the
--quick verdict."""

import json
import os
import statistics

from .common import (ACCEPT_ENCODING, BASE, BY_TRANSFER, MANY_COUNT, MANY_SIZE,
                     NEW_CONNECTION, SAMPLE_INTERVAL, SIZES, TLS_SIZES, cell_mode, log)
from .chart import svg_chart


# ---------------------------------------------------------------- formatting

def fmt_ms(v):
    if v is None:
        return "-"
    if v < 1:
        return f"{v * 1000:.0f}µs"
    if v < 100:
        return f"{v:.2f}ms"
    return f"{v:.0f}ms"


def fmt_rate(v):
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e4:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}"


def fmt_bytes_rate(v):
    for unit, div in (("GiB/s", 2**30), ("MiB/s", 2**20), ("KiB/s", 2**10)):
        if v >= div:
            return f"{v / div:.1f} {unit}"
    return f"{v:.0f} B/s"


# ---------------------------------------------------------------- summary

def error_count(run):
    return sum(run.get("errors", {}).values()) if "errors" in run else 0


def merge_errors(runs):
    m = {}
    for r in runs:
        for k, v in r.get("errors", {}).items():
            if v:
                m[k] = m.get(k, 0) + v
    return m


def summarize_cell(rs):
    good = [r for r in rs if "tool_error" not in r]
    summ = {"reps": len(rs), "ok_reps": len(good),
            "failures": [r["tool_error"] for r in rs if "tool_error" in r]}
    if good:
        def med(k):
            vals = [r[k] for r in good if r.get(k) is not None]
            return statistics.median(vals) if vals else None
        summ.update({
            "rps": med("rps"), "bytes_per_s": med("bytes_per_s"),
            "p50_ms": med("p50_ms"), "p99_ms": med("p99_ms"),
            "errors": sum(error_count(r) for r in good),
            "error_kinds": merge_errors(good),
            "non2xx": sum(r["non2xx"] for r in good),
            "rss_peak_kb": max(r["rss_peak_kb"] for r in good),
            "threads_peak": max(r["threads_peak"] for r in good),
            "server_died": any(not r["server_alive_after"] for r in good),
            "short_responses": any(r.get("short_responses") for r in good),
            "rps_all": [round(r["rps"], 1) for r in good],
            "cpu_us_per_req": med("cpu_us_per_req"), "cpu_pct": med("cpu_pct"),
        })
        if any("tls" in r for r in good):
            summ["tls"] = next(r["tls"] for r in good if "tls" in r)
        counted = [r["handshakes"] for r in good if r.get("handshakes")]
        if counted:
            summ["handshakes"] = {k: sum(h[k] for h in counted)
                                  for k in ("full", "resumed")}
            summ["handshakes_per_s"] = med("handshakes_per_s")
        summ["handshake_mismatch"] = any(r.get("handshake_mismatch") for r in good)
        if any("wire" in r for r in good):
            summ.update({
                "wire": next(r["wire"] for r in good if "wire" in r),
                "bytes_per_resp": med("bytes_per_resp"),
                "wire_mismatch": any(r.get("wire_mismatch") for r in good),
            })
    return summ


def summarize(runs):
    """Median per (size, conns, server) over the successful repetitions."""
    cells = {}
    for r in runs:
        cells.setdefault((r["size"], r["conns"], r["server"]), []).append(r)
    return {key: summarize_cell(rs) for key, rs in cells.items()}


# ---------------------------------------------------------------- Markdown

def markdown_header(meta, servers):
    L = [f"# threadserve load test — {meta['date']} on {meta['host']}", ""]
    L.append(f"- tool: `{meta['tool']}` ({meta['tool_version']}), {meta['duration']} s per run, "
             f"{meta['reps']} repetition(s) interleaved across servers after a "
             f"{meta['warmup']} s warm-up; medians shown")
    L.append(f"- pinning: {meta['pinning']}")
    L.append(f"- machine: {meta['cpu_model']}, {meta['nproc']} CPUs, Linux {meta['kernel']}")
    L.append(f"- threadserve commit: {meta['git_commit']}")
    for n in servers:
        v = meta["server_versions"].get(n)
        if v:
            L.append(f"- {n}: {v}")
    for s in meta.get("skipped", []):
        L.append(f"- skipped: {s}")
    prof = meta.get("profile")
    if prof and prof.get("profiler"):
        L.append(f"- profile: {prof['server']} in cell {prof['cell']} under "
                 f"{prof['profiler']}, an extra run not in these numbers: `{prof['file']}`")
    elif prof:
        L.append(f"- profile: not taken ({prof['note']})")
    if BASE in servers:
        L.append(f"- the baseline, {BASE}, is the binary given with --baseline-bin, "
                 "run with threadserve's flags and pinning, right after threadserve in "
                 "every cell")
    L.append("")
    L.append("Ratios compare req/s with nginx (×nginx)"
             + (f", static-web-server (×sws) and {BASE} (×base)" if BASE in servers
                else " and static-web-server (×sws)") +
             " in the same cell of this run. ⚠ marks errors "
             "(connect/read/write/timeout), non-2xx responses, a server that died, "
             "or responses shorter than the file.")
    L.append("")
    return L


def ref_names(servers):
    """The servers the ratio columns divide by: (name, column title)."""
    refs = [("nginx", "×nginx"), ("static-web-server", "×sws")]
    if BASE in servers:
        refs.append((BASE, "×base"))
    return refs


def ratio_cells(s, key, refs):
    return " | ".join(f"{s[key] / r:.2f}" if r else "-" for r in refs)


def markdown_row(c, n, s, key, refs):
    """One table row; refs are the ratio columns' reference values (or None)."""
    if s.get("rps") is None:
        why = "; ".join(sorted(set(s["failures"]))) or "no result"
        return f"| {c} | {n} | ⚠ {why} |" + " |" * (7 + len(refs))
    err = str(s["errors"])
    if s["errors"]:
        kinds = ", ".join(f"{k} {v}" for k, v in s["error_kinds"].items())
        err = f"⚠ {s['errors']} ({kinds})"
    non2xx = f"⚠ {s['non2xx']}" if s["non2xx"] else "0"
    name = n
    if s["server_died"]:
        name += " ⚠ died"
    if s["short_responses"]:
        name += " ⚠ short"
    if s["ok_reps"] < s["reps"]:
        name += f" ⚠ {s['ok_reps']}/{s['reps']} reps"
    return (f"| {c} | {name} | {fmt_rate(s['rps'])} | "
            f"{fmt_bytes_rate(s['bytes_per_s'])} | {fmt_ms(s['p50_ms'])} | "
            f"{fmt_ms(s['p99_ms'])} | {err} | {non2xx} | "
            f"{s['rss_peak_kb'] / 1024:.1f} MiB | {s['threads_peak']} | "
            f"{ratio_cells(s, key, refs)} |")


def markdown_section(summary, size, conns, servers):
    label = size if size != "random" else f"random path ({MANY_COUNT} × {MANY_SIZE} B)"
    L = [f"## {label}", ""]
    key = "bytes_per_s" if size in BY_TRANSFER else "rps"
    if size in BY_TRANSFER:
        L.append("Ratios in this section compare **transfer/s**: with large files "
                 "few responses finish inside a run, so req/s is coarse.")
        L.append("")
    names = ref_names(servers)
    L.append("| conns | server | req/s | transfer/s | p50 | p99 | errors | non-2xx | "
             "peak RSS | threads | " + " | ".join(t for _, t in names) + " |")
    L.append("|---:|---|" + "---:|" * (8 + len(names)))
    for c in conns:
        refs = [summary.get((size, c, r), {}).get(key) for r, _ in names]
        for n in servers:
            s = summary.get((size, c, n))
            if s is not None:
                L.append(markdown_row(c, n, s, key, refs))
    L.append("")
    return L


# ---------------------------------------------------------------- compression

TARGET_X_NGINX = 3.0   # issue 13: >= 3x nginx gzip on req/s, response no larger


def compression_label(size):
    path, length = SIZES[size]
    kind = "JavaScript" if path.endswith(".js") else "HTML"
    return (f"{size}: {length // 1024} KiB {kind} (`{path}`), "
            f"`Accept-Encoding: {ACCEPT_ENCODING[size]}`")


def compression_row(c, n, s, refs):
    if s.get("rps") is None:
        why = "; ".join(sorted(set(s["failures"]))) or "no result"
        return f"| {c} | {n} | ⚠ {why} |" + " |" * (11 + len(refs))
    w = s.get("wire") or {}
    name = n
    if s["server_died"]:
        name += " ⚠ died"
    if s["short_responses"]:
        name += " ⚠ short"
    if s.get("wire_mismatch"):
        name += " ⚠ B/resp ≠ probe"
    if s["ok_reps"] < s["reps"]:
        name += f" ⚠ {s['ok_reps']}/{s['reps']} reps"
    coding = w.get("content_encoding", "-")
    if coding == "identity":
        coding = "⚠ identity"
    elif str(w.get("verified", "")).startswith("not decoded"):
        coding += " (not decoded)"
    err = f"⚠ {s['errors']}" if s["errors"] else "0"
    non2xx = f"⚠ {s['non2xx']}" if s["non2xx"] else "0"
    bpr = s.get("bytes_per_resp")
    cpu = s.get("cpu_us_per_req")
    pct = s.get("cpu_pct")
    ratio = f"{w['file_bytes'] / w['payload_bytes']:.2f}" if w.get("payload_bytes") else "-"
    return (f"| {c} | {name} | {fmt_rate(s['rps'])} | {coding} | "
            f"{w.get('payload_bytes', '-')} | {ratio} | {w.get('wire_bytes', '-')} | "
            f"{f'{bpr:.0f}' if bpr else '-'} | "
            f"{f'{cpu:.1f}' if cpu is not None else '-'} | "
            f"{f'{pct:.0f}%' if pct is not None else '-'} | "
            f"{fmt_ms(s['p50_ms'])} | {fmt_ms(s['p99_ms'])} | {err} | {non2xx} | "
            f"{ratio_cells(s, 'rps', refs)} |")


def compression_section(summary, size, conns, servers):
    L = [f"## {compression_label(size)}", ""]
    names = ref_names(servers)
    L.append("| conns | server | req/s | coding | body B | file÷body | wire B | "
             "B/resp in run | CPU µs/req | CPU | p50 | p99 | errors | non-2xx | "
             + " | ".join(t for _, t in names) + " |")
    L.append("|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
             + "---:|" * len(names))
    for c in conns:
        refs = [summary.get((size, c, r), {}).get("rps") for r, _ in names]
        for n in servers:
            s = summary.get((size, c, n))
            if s is not None:
                L.append(compression_row(c, n, s, refs))
    L.append("")
    return L


def compression_targets(summary, sizes, conns):
    """Issue 13's targets per compression cell: threadserve >= 3x nginx req/s and
    a response (head + body on the wire) no larger than nginx's."""
    rows = []
    for size in sizes:
        if size not in ACCEPT_ENCODING:
            continue
        for c in conns:
            ts = summary.get((size, c, "threadserve"), {})
            ng = summary.get((size, c, "nginx"), {})
            tw, nw = ts.get("wire") or {}, ng.get("wire") or {}
            x = ts["rps"] / ng["rps"] if ts.get("rps") and ng.get("rps") else None
            row = {"size": size, "conns": c, "x_nginx": x,
                   "threadserve_wire": tw.get("wire_bytes"), "nginx_wire": nw.get("wire_bytes"),
                   "threadserve_body": tw.get("payload_bytes"),
                   "nginx_body": nw.get("payload_bytes"),
                   "threadserve_coding": tw.get("content_encoding"),
                   "nginx_coding": nw.get("content_encoding")}
            if x is None or row["threadserve_wire"] is None or row["nginx_wire"] is None:
                row["met"] = None
            else:
                row["met"] = x >= TARGET_X_NGINX and row["threadserve_wire"] <= row["nginx_wire"]
            rows.append(row)
    return rows


def markdown_compression_notes(rows):
    L = ["## Compression: reading the tables", "",
         "- **coding**: the `Content-Encoding` of one GET with the cell's "
         "`Accept-Encoding`, made over a raw socket after the server started (before "
         "the warm-up). The run is recorded only if that response was 200, in a coding "
         "the request accepted, and decoded to the file (gzip/deflate with zlib; zstd "
         "and br with the `zstd`/`brotli` tools when installed, else marked not "
         "verified in the JSON's `wire.verified`). **body B**: that response's body "
         "(Content-Length, or the de-chunked size); **wire B**: its head + body as "
         "framed on the wire (chunk sizes included), the response size compared with "
         "nginx; **file÷body**: compression ratio.",
         "- **B/resp in run**: the load tool's bytes ÷ responses in the measured run: "
         "wrk counts heads and bodies (and the partial responses in flight at the end, "
         "a few of thousands); marked ⚠ when more than 5% above **wire B**, i.e. the "
         "server sent something larger under load than to the probe. oha counts bodies only.",
         "- **CPU µs/req**: the server's utime + stime (all threads of its process tree, "
         "from `/proc/PID/stat`, read just before and after the measured run) ÷ "
         "responses; **CPU**: the same time as a share of one core over that "
         "interval (the servers are pinned to one core: near 100% means CPU-bound).",
         "- nginx: `gzip on` with its defaults (`gzip_comp_level 1`, `gzip_vary off`, "
         "so no `Vary` header) plus `gzip_types` for JavaScript; nginx-light has no "
         "brotli (or zstd) module, so it answers gzip when the client also accepts br "
         "and zstd. static-web-server: `--compression true` at its default level. "
         "threadserve: its default compression (on, levels in its README).",
         ""]
    if rows:
        L += [f"Targets (issue 13): threadserve ≥ {TARGET_X_NGINX:g}× nginx req/s with a "
              "response (wire B) no larger than nginx's:", "",
              "| cell | conns | ×nginx | threadserve wire B (body, coding) | "
              "nginx wire B (body, coding) | target |",
              "|---|---:|---:|---|---|---|"]
        for r in rows:
            x = f"{r['x_nginx']:.2f}" if r["x_nginx"] is not None else "-"
            met = {True: "met", False: "**missed**", None: "⚠ no result"}[r["met"]]
            L.append(f"| {r['size']} | {r['conns']} | {x} | {r['threadserve_wire'] or '-'} "
                     f"({r['threadserve_body'] or '-'}, {r['threadserve_coding'] or '-'}) | "
                     f"{r['nginx_wire'] or '-'} ({r['nginx_body'] or '-'}, "
                     f"{r['nginx_coding'] or '-'}) | {met} |")
        L.append("")
    return L


# ---------------------------------------------------------------- HTTPS

# Issue 12's targets: cell -> (compared by, threadserve ÷ nginx at least), at
# TLS_TARGET_CONNS connections.
TLS_TARGETS = {"1k-tls": ("rps", 0.9), "1k-tls-new": ("rps", 0.8),
               "10m-tls": ("bytes_per_s", 0.9)}
TLS_TARGET_CONNS = 64
CLIENT_BOUND_PCT = 90   # a server below this share of its core was not the limit
TLS_LABELS = {
    "1k-tls": "1 KiB (`/1k.bin`) over HTTPS, keep-alive",
    "1k-tls-new": "1 KiB (`/1k.bin`) over HTTPS with `Connection: close`: a new TLS "
                  "connection, and a full handshake, per request",
    "10m-tls": "10 MiB (`/10m.bin`) over HTTPS, keep-alive",
}


def tls_label(size):
    return f"{size}: {TLS_LABELS.get(size, size)}"


def tls_row(c, n, s, key, refs):
    if s.get("rps") is None:
        why = "; ".join(sorted(set(s["failures"]))) or "no result"
        return f"| {c} | {n} | ⚠ {why} |" + " |" * (12 + len(refs))
    name = n
    if s["server_died"]:
        name += " ⚠ died"
    if s["short_responses"]:
        name += " ⚠ short"
    if s.get("handshake_mismatch"):
        name += " ⚠ not one full handshake per response"
    if s["ok_reps"] < s["reps"]:
        name += f" ⚠ {s['ok_reps']}/{s['reps']} reps"
    t = s.get("tls") or {}
    proto = f"{t.get('version', '-')} {t.get('cipher', '')}".strip()
    if t.get("resumes") is not None:
        proto += ", resumes" if t["resumes"] else ", no resumption"
    hs = s.get("handshakes")
    hs = f"{hs['full']} / {hs['resumed']}" if hs else "-"
    err = f"⚠ {s['errors']}" if s["errors"] else "0"
    if s["errors"]:
        err += " (" + ", ".join(f"{k} {v}" for k, v in s["error_kinds"].items()) + ")"
    non2xx = f"⚠ {s['non2xx']}" if s["non2xx"] else "0"
    cpu, pct = s.get("cpu_us_per_req"), s.get("cpu_pct")
    return (f"| {c} | {name} | {fmt_rate(s['rps'])} | "
            f"{fmt_bytes_rate(s['bytes_per_s'])} | {fmt_ms(s['p50_ms'])} | "
            f"{fmt_ms(s['p99_ms'])} | {f'{cpu:.1f}' if cpu is not None else '-'} | "
            f"{f'{pct:.0f}%' if pct is not None else '-'} | {hs} | {proto} | "
            f"{err} | {non2xx} | {s['rss_peak_kb'] / 1024:.1f} MiB | "
            f"{s['threads_peak']} | {ratio_cells(s, key, refs)} |")


def tls_section(summary, size, conns, servers):
    L = [f"## {tls_label(size)}", ""]
    key = "bytes_per_s" if size in BY_TRANSFER else "rps"
    if size in BY_TRANSFER:
        L += ["Ratios in this section compare **transfer/s**.", ""]
    names = ref_names(servers)
    L.append("| conns | server | req/s | transfer/s | p50 | p99 | CPU µs/req | CPU | "
             "handshakes full / resumed | TLS | errors | non-2xx | peak RSS | threads | "
             + " | ".join(t for _, t in names) + " |")
    L.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"
             + "---:|" * len(names))
    for c in conns:
        refs = [summary.get((size, c, r), {}).get(key) for r, _ in names]
        for n in servers:
            s = summary.get((size, c, n))
            if s is not None:
                L.append(tls_row(c, n, s, key, refs))
    L.append("")
    return L


def tls_targets(summary, sizes, conns):
    """Issue 12's targets per HTTPS cell at 64 connections: threadserve ÷ nginx
    (req/s, transfer/s for 10 MiB). In the new-connection cell a result counts
    only if both did one full handshake per response."""
    rows = []
    if TLS_TARGET_CONNS not in conns:
        return rows
    c = TLS_TARGET_CONNS
    for size in sizes:
        if size not in TLS_TARGETS:
            continue
        key, want = TLS_TARGETS[size]
        ts = summary.get((size, c, "threadserve"), {})
        ng = summary.get((size, c, "nginx"), {})
        a, b = ts.get(key), ng.get(key)
        x = a / b if a and b else None
        row = {"size": size, "conns": c, "by": key, "threadserve": a, "nginx": b,
               "x_nginx": x, "target": want, "met": None if x is None else x >= want,
               "problems": [],
               "threadserve_cpu_pct": ts.get("cpu_pct"), "nginx_cpu_pct": ng.get("cpu_pct"),
               "threadserve_cpu_us": ts.get("cpu_us_per_req"),
               "nginx_cpu_us": ng.get("cpu_us_per_req")}
        # Server CPU per response, nginx's ÷ threadserve's: above 1, threadserve
        # spends less per response. Independent of the client, which is the
        # limit when a server's core is not busy (client_bound).
        # For 10 MiB per byte (few responses finish): CPU share ÷ transfer/s.
        if key == "bytes_per_s":
            tp, np_ = row["threadserve_cpu_pct"], row["nginx_cpu_pct"]
            tu, nu = (tp / a if tp and a else None), (np_ / b if np_ and b else None)
        else:
            tu, nu = row["threadserve_cpu_us"], row["nginx_cpu_us"]
        row["cpu_per_req_x_nginx"] = nu / tu if tu and nu else None
        row["client_bound"] = any(p is not None and p < CLIENT_BOUND_PCT
                                  for p in (row["threadserve_cpu_pct"], row["nginx_cpu_pct"]))
        for n, s in (("threadserve", ts), ("nginx", ng)):
            if s.get("errors") or s.get("non2xx") or s.get("server_died"):
                row["problems"].append(f"{n} had errors")
            if size in NEW_CONNECTION and (s.get("handshake_mismatch")
                                           or not s.get("handshakes")):
                row["problems"].append(f"{n}: not one full handshake per response")
        if row["problems"]:
            row["met"] = None
        rows.append(row)
    return rows


def markdown_tls_notes(meta, rows):
    tls = meta.get("tls") or {}
    L = ["## HTTPS: reading the tables", "",
         f"- certificate: {tls.get('certificate') or '-'} "
         "(`loadtest/work/tls/cert.pem`, generated by `openssl req -x509 -newkey ec "
         "-pkeyopt ec_paramgen_curve:prime256v1`), the same file for every server.",
         "- threadserve: `--tls-cert cert.pem --tls-key key.pem` (rustls, ring; its "
         "session resumption on). nginx: `listen ... ssl`, `ssl_protocols TLSv1.2 "
         "TLSv1.3`, `ssl_session_cache shared:SSL:10m`, `ssl_session_timeout 10m`, "
         "session tickets and ciphers at nginx's defaults (`meta.nginx_conf_tls` in "
         "the JSON). static-web-server: `--http2 true --http2-tls-cert cert.pem "
         "--http2-tls-key key.pem` (its only TLS mode; it answers HTTP/1.1 to a "
         "client that offers no ALPN). python and tinyhttp have no HTTPS and do not run.",
         "- the client is wrk over OpenSSL, no ALPN, HTTP/1.1. **TLS**: the protocol and "
         "cipher of a GET made like wrk's before the warm-up (body compared with the "
         "file, certificate verified against cert.pem), and whether a second connection "
         "offering that session was resumed.",
         "- **handshakes full / resumed**: counted inside wrk (an LD_PRELOAD shim "
         "around `SSL_connect`, `lib/https.py`), summed over the measured runs. wrk "
         "keeps the session of a closed connection and offers it on the next one, so "
         "in the `Connection: close` cell the shim drops it: every request is a new "
         "TCP connection and a full handshake (key exchange plus the server's ECDSA "
         "P-256 signature), the cost the target is about; ⚠ if the full handshakes "
         "are fewer than 95% of the responses, or any was resumed.",
         "- **CPU µs/req**, **CPU**: the server's CPU time per response and as a share "
         "of one core, as in the compression section. Below ~90% the server was not "
         "the limit (the client core was, or the wait for it): a ratio near 1 then "
         "says little. In the new-connection cell the client does as much crypto per "
         "handshake as the server (more: it verifies the signature).",
         ""]
    if shim := tls.get("wrk_shim_error"):
        L += [f"- ⚠ wrk's handshake shim is missing ({shim}): handshakes are not "
              "counted and may be resumed in the new-connection cell.", ""]
    if rows:
        L += ["Targets (issue 12), at 64 connections, threadserve ÷ nginx in this run:", "",
              "| cell | compared by | threadserve | nginx | ×nginx | target | | "
              "server CPU (ts, nginx) | server CPU per response (10m-tls: per byte), nginx ÷ ts |",
              "|---|---|---:|---:|---:|---:|---|---|---:|"]
        for r in rows:
            fmt = fmt_bytes_rate if r["by"] == "bytes_per_s" else fmt_rate
            a = fmt(r["threadserve"]) if r["threadserve"] else "-"
            b = fmt(r["nginx"]) if r["nginx"] else "-"
            x = f"{r['x_nginx']:.2f}" if r["x_nginx"] is not None else "-"
            met = {True: "met", False: "**missed**", None: "⚠ no result"}[r["met"]]
            if r["problems"]:
                met = "⚠ " + "; ".join(r["problems"])
            by = "transfer/s" if r["by"] == "bytes_per_s" else "req/s"
            pcts = ", ".join(f"{p:.0f}%" if p is not None else "-"
                              for p in (r["threadserve_cpu_pct"], r["nginx_cpu_pct"]))
            if r["client_bound"]:
                pcts += " ⚠ client-bound"
            cx = r["cpu_per_req_x_nginx"]
            L.append(f"| {r['size']} | {by} | {a} | {b} | {x} | ≥ {r['target']:g} | {met} | "
                     f"{pcts} | {f'{cx:.2f}' if cx else '-'} |")
        L.append("")
        if any(r["client_bound"] for r in rows):
            L += [f"⚠ client-bound: a server used less than {CLIENT_BOUND_PCT}% of its "
                  "core, so the load tool (one wrk thread on one core, decrypting and, in "
                  "the new-connection cell, verifying every handshake) set the pace and "
                  "the ×nginx of that cell compares the servers only loosely; the last "
                  "column, nginx's server CPU per response (per byte for 10 MiB) ÷ "
                  "threadserve's (above 1: threadserve spends less), does not depend on "
                  "the client. Rerun with "
                  "more client cores (`--client-cpus 1-3 --client-threads 3` on a "
                  "4-CPU machine) before reading those rows as a verdict.", ""]
    return L


BASE_TOLERANCE = 0.03   # issue 11: every cell within 3% of the pre-change build


def base_comparison(summary, sizes, conns):
    """threadserve ÷ threadserve-base per cell: [(size, conns, key, ts, base,
    ratio)], ratio None when either has no result."""
    rows = []
    for size in sizes:
        key = "bytes_per_s" if size in BY_TRANSFER else "rps"
        for c in conns:
            ts = summary.get((size, c, "threadserve"), {})
            base = summary.get((size, c, BASE), {})
            a, b = ts.get(key), base.get(key)
            rows.append({"size": size, "conns": c, "by": key, "threadserve": a,
                         BASE: b, "ratio": a / b if a and b else None,
                         "threadserve_all": ts.get("rps_all"),
                         "base_all": base.get("rps_all")})
    return rows


def markdown_base(rows):
    """The threadserve / threadserve-base section."""
    L = [f"## threadserve / {BASE}", "",
         f"Median req/s (transfer/s for {', '.join(sorted(BY_TRANSFER))}) of threadserve "
         f"divided by {BASE}'s in the same cell; the two ran back to back in every "
         f"repetition. ✓: within ±{BASE_TOLERANCE:.0%}. Compare the spread of the "
         "repetitions (req/s of each) before reading a difference smaller than it.", "",
         f"| cell | threadserve | {BASE} | ratio | ±{BASE_TOLERANCE:.0%} | "
         f"threadserve reps | {BASE} reps |",
         "|---|---:|---:|---:|---|---|---|"]
    for r in rows:
        fmt = fmt_bytes_rate if r["by"] == "bytes_per_s" else fmt_rate
        a = fmt(r["threadserve"]) if r["threadserve"] else "-"
        b = fmt(r[BASE]) if r[BASE] else "-"
        if r["ratio"] is None:
            ratio, ok = "-", "⚠ no result"
        else:
            ratio = f"{r['ratio']:.3f}"
            ok = "✓" if abs(r["ratio"] - 1) <= BASE_TOLERANCE else "⚠ outside"
        reps = [", ".join(fmt_rate(v) for v in (r[k] or []))
                for k in ("threadserve_all", "base_all")]
        L.append(f"| {r['size']}, {r['conns']} conns | {a} | {b} | {ratio} | {ok} | "
                 f"{reps[0]} | {reps[1]} |")
    L.append("")
    return L


def markdown(meta, summary, sizes, conns, servers, notes):
    L = markdown_header(meta, servers)
    for size in sizes:
        if cell_mode(size) == "compression":
            L += compression_section(summary, size, conns, servers)
        elif cell_mode(size) == "tls":
            L += tls_section(summary, size, conns, servers)
        else:
            L += markdown_section(summary, size, conns, servers)
    if any(size in ACCEPT_ENCODING for size in sizes):
        both = {"threadserve", "nginx"} <= set(servers)
        L += markdown_compression_notes(
            compression_targets(summary, sizes, conns) if both else [])
    if any(size in TLS_SIZES for size in sizes):
        both = {"threadserve", "nginx"} <= set(servers)
        L += markdown_tls_notes(meta, tls_targets(summary, sizes, conns) if both else [])
    if BASE in servers and "threadserve" in servers:
        L += markdown_base(base_comparison(summary, sizes, conns))
    if notes:
        L.append("## Notes")
        L.append("")
        for nt in notes:
            L.append(f"- {nt['size']}, {nt['conns']} conns, {nt['server']}: {nt['note']}")
        L.append("")
    L.append("Peak RSS and threads: the highest sum over the server process and its "
             f"children, sampled from /proc every {SAMPLE_INTERVAL}s during a run "
             "(servers are restarted for each cell).")
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------- files, verdict

def write_results(stem, meta, runs, notes, summary, sizes, conns, servers):
    """Writes STEM.json, STEM.md and STEM.svg; returns the Markdown text."""
    os.makedirs(os.path.dirname(stem), exist_ok=True)
    doc = {"meta": meta, "runs": runs, "notes": notes,
           "summary": [dict(size=k[0], conns=k[1], server=k[2], **v)
                       for k, v in summary.items()]}
    if BASE in servers and "threadserve" in servers:
        doc["vs_base"] = base_comparison(summary, sizes, conns)
    if any(size in ACCEPT_ENCODING for size in sizes):
        doc["compression_targets"] = compression_targets(summary, sizes, conns)
    if any(size in TLS_SIZES for size in sizes):
        doc["tls_targets"] = tls_targets(summary, sizes, conns)
    with open(stem + ".json", "w") as f:
        json.dump(doc, f, indent=1, default=str)
    md = markdown(meta, summary, sizes, conns, servers, notes)
    with open(stem + ".md", "w") as f:
        f.write(md)
    with open(stem + ".svg", "w") as f:
        f.write(svg_chart(meta, summary, sizes, conns, servers))
    return md


def quick_problems(ts_built, notes, summary):
    """What makes a --quick run fail: start/check failures, errors, deaths."""
    problems = []
    if not ts_built:
        problems.append("threadserve was not built")
    problems += [f"{n['server']}: {n['note']}" for n in notes]
    for k, s in summary.items():
        if s.get("rps") is None:
            problems.append(f"{k}: no successful run ({'; '.join(s['failures'])})")
            continue
        if s["errors"] or s["non2xx"]:
            problems.append(f"{k}: {s['errors']} errors {s['error_kinds']}, "
                            f"{s['non2xx']} non-2xx")
        if s["server_died"]:
            problems.append(f"{k}: server died")
        if s["short_responses"]:
            problems.append(f"{k}: responses shorter than the file")
    if not summary and ts_built:
        problems.append("no runs recorded")
    return problems


def quick_verdict(ts_built, notes, summary):
    """Logs the --quick verdict; returns 1 on failure, else None."""
    problems = quick_problems(ts_built, notes, summary)
    if problems:
        log("QUICK CHECK FAILED:\n  " + "\n  ".join(problems))
        return 1
    log("quick check passed")
    return None
