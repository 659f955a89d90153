"""SVG chart of one benches/run.sh run: req/s and p99 per row, one bar per connection count
(the first two of the run's).

Imported by report.py (`--chart PATH`), which passes the run's parsed raw.tsv; every number
drawn comes from there. Doorman's rows are blue, nginx's grey, Express's orange, the stack's
floor (row w, hyper-floor) green; the lighter
bar of a pair is the smaller connection count; req/s bars are scaled per section (handshakes/s
are a hundredth of keep-alive req/s), p99 is on one log scale. On a row compared with an nginx row (×nginx in
the table), a black tick marks that nginx row's figure at the same connection count, so a bar
ending left of its tick (req/s) or right of it (p99) is behind nginx.
"""
import math
from xml.sax.saxutils import escape

NGINX_ROWS = "abjnprt"
EXPRESS_ROWS = "ci"
FLOOR_ROWS = "w"
SECTIONS = [("abcdefghiw", "plain HTTP/1.1, keep-alive"), ("jklm", "HTTPS, HTTP/1.1 keep-alive"),
            ("nopqrs", "TLS handshakes, a new connection per request"), ("tuv", "HTTP/2 over TLS, h2load -m 10")]
COLOURS = {"doorman": ("#8db8e8", "#1f5fa8"), "nginx": ("#bdbdbd", "#6b6b6b"), "express": ("#f5c28a", "#d9822b"),
           "floor": ("#a8d8a0", "#3c8a34")}
ROW_H, BAR_H, LABEL_W, PANEL_W, GAP, TOP = 34, 12, 330, 300, 60, 84


def _kind(row):
    if row in FLOOR_ROWS:
        return "floor"
    return "nginx" if row in NGINX_ROWS else "express" if row in EXPRESS_ROWS else "doorman"


def _fmt(v, unit):
    if unit == "ms":
        return "%.0f" % v if v >= 100 else "%.1f" % v if v >= 10 else "%.2f" % v
    return "%.1fk" % (v / 1000) if v >= 10000 else "%.0f" % v


def write(path, runs, med, names, rows, ref, conns, quick=False):
    present = [r for r in rows if any((r, c) in runs for c in conns)]
    conns = list(conns)[:2]
    rps = {(r, c): med((r, c), 3) for r in present for c in conns if (r, c) in runs}
    p99 = {(r, c): med((r, c), 6) for r in present for c in conns if (r, c) in runs}
    # req/s bars are scaled per section: handshakes/s are a hundredth of keep-alive req/s.
    section_max = {}
    for members, _ in SECTIONS:
        section_max[members] = max([v for (r, _), v in rps.items() if v and r in members] or [1])
    p99s = [v for v in p99.values() if v and v > 0]
    lo = 10 ** math.floor(math.log10(min(p99s))) if p99s else 0.1
    hi = 10 ** math.ceil(math.log10(max(p99s))) if p99s else 10
    if hi <= lo:
        hi = lo * 10

    def x_rps(v, top):
        return LABEL_W + PANEL_W * (v / top)

    def x_p99(v):
        v = min(max(v, lo), hi)
        return LABEL_W + PANEL_W + GAP + PANEL_W * (math.log10(v / lo) / math.log10(hi / lo))

    lines = []
    y = TOP
    for members, title in SECTIONS:
        shown = [r for r in present if r in members]
        if not shown:
            continue
        top = section_max[members]
        lines.append('<text x="8" y="%d" class="section">%s</text>' % (y + 14, escape(title)))
        lines.append('<text x="%d" y="%d" class="value" text-anchor="end">full width = %s req/s</text>'
                     % (LABEL_W + PANEL_W, y + 14, _fmt(top, "req/s")))
        y += 22
        for row in shown:
            label = "%s  %s" % (row, names.get(row, row))
            if len(label) > 48:
                label = label[:47] + "…"
            lines.append('<text x="8" y="%d" class="label">%s</text>' % (y + ROW_H / 2 + 4, escape(label)))
            kind = _kind(row)
            base = ref.get(row, "b") if kind != "nginx" and row not in EXPRESS_ROWS else None
            for i, c in enumerate(conns):
                by = y + 4 + i * (BAR_H + 2)
                colour = COLOURS[kind][min(i, 1)]
                scaled = (lambda v, top=top: x_rps(v, top))
                for value, xf, unit in ((rps.get((row, c)), scaled, "req/s"), (p99.get((row, c)), x_p99, "ms")):
                    if not value:
                        continue
                    x0 = LABEL_W if unit == "req/s" else LABEL_W + PANEL_W + GAP
                    x1 = xf(value)
                    lines.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="%s"/>'
                                 % (x0, by, max(x1 - x0, 1), BAR_H, colour))
                    lines.append('<text x="%.1f" y="%.1f" class="value">%s</text>' % (x1 + 4, by + BAR_H - 2, _fmt(value, unit)))
                    refv = (rps if unit == "req/s" else p99).get((base, c)) if base else None
                    if refv:
                        xr = xf(refv)
                        lines.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="tick"/>'
                                     % (xr, by - 1, xr, by + BAR_H + 1))
            y += ROW_H
        y += 6
    height = y + 40
    # gridlines: req/s at quarters of each section's scale, p99 at decades
    axes = []
    for q in range(5):
        x = LABEL_W + PANEL_W * q / 4
        axes.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" class="grid"/>' % (x, TOP - 6, x, y))
        axes.append('<text x="%.1f" y="%d" class="axis">%d %%</text>' % (x, y + 14, 25 * q))
    d = lo
    while d <= hi * 1.0001:
        x = x_p99(d)
        axes.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" class="grid"/>' % (x, TOP - 6, x, y))
        axes.append('<text x="%.1f" y="%d" class="axis">%s</text>' % (x, y + 14, _fmt(d, "ms")))
        d *= 10
    legend = []
    lx = LABEL_W
    for i, c in enumerate(conns):
        for kind in ("doorman", "nginx", "express"):
            legend.append('<rect x="%d" y="%d" width="12" height="10" fill="%s"/>' % (lx, 32, COLOURS[kind][min(i, 1)]))
            legend.append('<text x="%d" y="%d" class="value">%s, %d conns</text>' % (lx + 16, 41, kind, c))
            lx += 126
    title = "doorman benchmark: req/s (more is better) and p99 (less is better), median of reps"
    if quick:
        title += " — QUICK SMOKE RUN, figures mean nothing"
    width = LABEL_W + 2 * PANEL_W + GAP + 90
    svg = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
           'font-family="sans-serif">' % (width, height, width, height),
           '<style>.label{font-size:12px}.section{font-size:13px;font-weight:bold}.value{font-size:10px;fill:#333}'
           '.axis{font-size:10px;fill:#555;text-anchor:middle}.grid{stroke:#e4e4e4}'
           '.tick{stroke:#000;stroke-width:2}.head{font-size:12px;font-weight:bold;text-anchor:middle}</style>',
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="8" y="18" font-size="14" font-weight="bold">%s</text>' % escape(title),
           '<text x="%d" y="%d" class="head">req/s (scaled per section)</text>' % (LABEL_W + PANEL_W / 2, TOP - 10),
           '<text x="%d" y="%d" class="head">p99 latency, ms (log scale)</text>'
           % (LABEL_W + PANEL_W + GAP + PANEL_W / 2, TOP - 10),
           '<text x="8" y="%d" class="value">black tick: the nginx row this row is compared with, '
           'same connection count</text>' % (height - 10)]
    svg += axes + legend + lines + ["</svg>"]
    with open(path, "w") as f:
        f.write("\n".join(svg) + "\n")
