"""The SVG chart: req/s against connections, one line per server, one panel per
file cell (transfer/s ÷ file size for the BY_TRANSFER cells)."""

import math

from .common import BY_TRANSFER, COLORS, DASHED, SIZES

PW, PH = 420, 280             # panel size
ML, MR, MT, MB = 70, 20, 40, 45
LEGEND_H = 30
TITLE_H = 36


def dash(n):
    return ' stroke-dasharray="6 3"' if n in DASHED else ""


def esc(s):
    return (str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def fmt_axis(v):
    for suffix, div in (("M", 1e6), ("k", 1e3)):
        if v >= div:
            return f"{v / div:g}{suffix}"
    return f"{v:g}"


def nice_step(v):
    """Smallest 1, 2, 2.5 or 5 × 10^k that is >= v."""
    if v <= 0:
        return 1
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if m * e >= v:
            return m * e
    return 10 * e


def xpos(j, count, x0, x1):
    """x of the j-th of `count` connection counts between x0 and x1."""
    if count == 1:
        return (x0 + x1) / 2
    return x0 + 20 + (x1 - x0 - 40) * j / (count - 1)


def svg_chart(meta, summary, sizes, conns, servers):
    cols = min(2, len(sizes))
    rows = (len(sizes) + cols - 1) // cols
    W = cols * PW
    H = TITLE_H + LEGEND_H + rows * PH
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15" '
           f'font-weight="bold">{esc("req/s by connections — " + meta["tool"] + ", " + meta["date"] + ", " + meta["host"])}</text>']
    out += legend(servers)
    for i, size in enumerate(sizes):
        ox = (i % cols) * PW
        oy = TITLE_H + LEGEND_H + (i // cols) * PH
        out += panel(summary, size, conns, servers, ox, oy)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def legend(servers):
    out = []
    x = 20
    for n in servers:
        y = TITLE_H + 12
        out.append(f'<line x1="{x}" y1="{y}" x2="{x + 22}" y2="{y}" '
                   f'stroke="{COLORS.get(n, "#444")}" stroke-width="3"{dash(n)}/>')
        out.append(f'<text x="{x + 28}" y="{y + 4}">{esc(n)}</text>')
        x += 40 + 8 * len(n)
    return out


def cell_value(summary, size, c, n):
    """What the chart plots for one point: req/s, or transfer/s ÷ file size."""
    s = summary.get((size, c, n), {})
    if size in BY_TRANSFER:
        b = s.get("bytes_per_s")
        return None if b is None else b / SIZES[size][1]
    return s.get("rps")


def panel(summary, size, conns, servers, ox, oy):
    """One file cell's panel with its top-left corner at (ox, oy)."""
    x0, x1 = ox + ML, ox + PW - MR
    y0, y1 = oy + PH - MB, oy + MT
    vals = [cell_value(summary, size, c, n) for c in conns for n in servers]
    vmax = max([v for v in vals if v] or [1])
    step = nice_step(vmax / 4)
    ticks = max(1, math.ceil(vmax * 1.04 / step))
    top = step * ticks
    label = size if size != "random" else "random path"
    if size in BY_TRANSFER:
        label += f" (transfer/s ÷ {SIZES[size][1] // 2**20} MiB)"
    out = [f'<text x="{(x0 + x1) / 2}" y="{oy + 22}" text-anchor="middle" '
           f'font-weight="bold">{esc(label)}</text>']
    out += axes(ox, x0, x1, y0, y1, step, ticks, conns)

    for n in servers:
        pts = []
        for j, c in enumerate(conns):
            v = cell_value(summary, size, c, n)
            if v is not None:
                pts.append((xpos(j, len(conns), x0, x1), y0 - (y0 - y1) * v / top, v, c))
        out += series(n, label, pts)
    return out


def axes(ox, x0, x1, y0, y1, step, ticks, conns):
    out = []
    for k in range(ticks + 1):
        v = step * k
        y = y0 - (y0 - y1) * k / ticks
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" '
                   f'stroke="#ddd"/>')
        out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">'
                   f'{fmt_axis(v)}</text>')
    out.append(f'<text x="{ox + 14}" y="{(y0 + y1) / 2:.1f}" text-anchor="middle" '
               f'fill="#555" transform="rotate(-90 {ox + 14} {(y0 + y1) / 2:.1f})">'
               f'req/s</text>')
    out.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#333"/>')
    out.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#333"/>')
    for j, c in enumerate(conns):
        out.append(f'<text x="{xpos(j, len(conns), x0, x1):.1f}" y="{y0 + 16}" text-anchor="middle">{c}</text>')
    out.append(f'<text x="{(x0 + x1) / 2}" y="{y0 + 34}" text-anchor="middle" '
               f'fill="#555">connections</text>')
    return out


def series(n, label, pts):
    """One server's line and points; pts are (x, y, value, conns)."""
    out = []
    color = COLORS.get(n, "#444")
    if len(pts) > 1:
        d = " ".join(f"{px:.1f},{py:.1f}" for px, py, _, _ in pts)
        out.append(f'<polyline points="{d}" fill="none" stroke="{color}" '
                   f'stroke-width="2"{dash(n)}/>')
    for px, py, v, c in pts:
        out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="{color}">'
                   f'<title>{esc(f"{n}, {label}, {c} conns: {v:.0f} req/s")}</title>'
                   f'</circle>')
    return out

