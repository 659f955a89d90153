#!/usr/bin/env python3
"""benches/soak.sh's report: summary.md (verdict, growth) and rss.svg (the RSS curves).

  python3 benches/soak_report.py --samples OUT/samples.tsv --verdict OUT/verdict.json \
      --duration S --out OUT [--restart-at S] [--answers-only]

Growth, per doorman, of VmRSS and of open fds between minute 2 (the samples taken in
90–150 s) and the end (those of the last 60 s): the medians of VmRSS, the smallest open-fd
counts (see growth()). Exit status 1 when one of them grew more than 10 % (not with
--answers-only, which --quick uses: 30 s has no minute 2).
"""
import argparse
import json
import statistics

LIMIT = 0.10


def growth(rows, col, duration):
    """(minute 2, end, growth) of one column, or None for a run too short to have minute 2.

    Windows: the samples in 90–150 s, and those of the run's last 60 s (the sample taken after
    the traffic stopped is not one of them). VmRSS: the median of each window. Open fds: the
    smallest of each, because they follow the connections in flight at the sampling instant
    (the driver's logins, WebSockets and slow clients come and go: 34–38 within one minute);
    a leak raises that floor, a sample that caught a few more connections does not."""
    pick = min if col.startswith("fds") else statistics.median
    start = [r[col] for r in rows if 90 <= r["t"] <= 150]
    end = [r[col] for r in rows if duration - 60 <= r["t"] <= duration]
    if not start or not end or duration < 210:
        return None
    begin, last = pick(start), pick(end)
    return begin, last, (last - begin) / begin if begin else 0.0


def svg(rows, restart_t, width=640, height=270):
    """Both doormen's VmRSS (MiB) over time, a dashed line at the Redis restart."""
    pad_l, pad_r, pad_t, pad_b = 48, 28, 12, 50
    t_max = max(r["t"] for r in rows) or 1
    mib = [r[c] / 1024 for r in rows for c in ("rss_a", "rss_b")]
    top = max(mib) * 1.15 or 1
    x = lambda t: pad_l + (width - pad_l - pad_r) * t / t_max
    y = lambda v: height - pad_b - (height - pad_t - pad_b) * v / top
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
           'font-size="11">' % (width, height),
           '<rect width="100%" height="100%" fill="white"/>']
    for i in range(5):
        v = top * i / 4
        out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>' % (pad_l, width - pad_r, y(v), y(v)))
        out.append('<text x="%d" y="%.1f" text-anchor="end">%.0f</text>' % (pad_l - 4, y(v) + 4, v))
    step = next(s for s in (5, 10, 30, 60, 120, 300, 600, 1800) if t_max / s <= 6)
    for i in range(int(t_max // step) + 1):
        t = i * step
        out.append('<text x="%.1f" y="%d" text-anchor="middle">%.0f s</text>' % (x(t), height - pad_b + 14, t))
    if restart_t is not None:
        out.append('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#999" stroke-dasharray="4 3"/>'
                   % (x(restart_t), x(restart_t), pad_t, height - pad_b))
        out.append('<text x="%.1f" y="%d" fill="#666">redis restart</text>' % (x(restart_t) + 4, pad_t + 10))
    for col, colour in (("rss_a", "#1f77b4"), ("rss_b", "#d62728")):
        pts = " ".join("%.1f,%.1f" % (x(r["t"]), y(r[col] / 1024)) for r in rows)
        out.append('<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>' % (colour, pts))
    out.append('<text x="%d" y="%d">VmRSS, MiB</text>' % (pad_l + 4, pad_t + 10))
    for i, (colour, label) in enumerate((("#1f77b4", "doorman, Redis"), ("#d62728", "doorman, Redis + cache"))):
        lx, ly = pad_l + 200 * i, height - 8
        out.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="2"/>' % (lx, lx + 16, ly - 4, ly - 4, colour))
        out.append('<text x="%d" y="%d">%s</text>' % (lx + 20, ly, label))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--samples", required=True)
    p.add_argument("--verdict", required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--restart-at", type=float, help="seconds into the soak of the Redis restart")
    p.add_argument("--answers-only", action="store_true")
    a = p.parse_args()

    with open(a.samples) as f:
        head = f.readline().split()
        rows = [dict(zip(head, (float(v) for v in line.split()))) for line in f if line.strip()]
    try:
        with open(a.verdict) as f:
            verdict = json.load(f)
    except (OSError, ValueError):
        verdict = {}
    restart = verdict.get("restart")
    lines = ["# doorman soak, %.0f s" % a.duration, ""]
    counts = verdict.get("counts", {})
    lines.append("Answers: %d wrong; %s." % (counts.get("wrong", 0), ", ".join(
        "%s %d" % (k, v) for k, v in counts.items() if k != "wrong")))
    if counts.get("ws ended"):
        lines.append("WebSockets closed by a logout: %d, the slowest %d ms after it." % (
            counts["ws ended"], verdict.get("ws_ended_max_ms", 0)))
    if verdict.get("missing"):
        lines.append("Traffic that never ran: %s." % ", ".join(verdict["missing"]))
    w = verdict.get("window_503") or [None, None]
    if restart:
        lines.append("Redis restart: down %.2f s; sessions made before it served after it: %d." % (
            restart[1] - restart[0], verdict.get("survivors", 0)))
        if w[0]:
            lines.append("503 answers from %+.2f s to %+.2f s around the restart's start." % (
                w[0] - restart[0], w[1] - restart[0]))
    for wrong in verdict.get("wrong", [])[:10]:
        lines.append("- wrong: %s: %s" % (wrong["what"], wrong["detail"]))
    lines.append("")
    failed = False
    lines.append("| doorman | | minute 2 | end | growth |")
    lines.append("|---|---|---:|---:|---:|")
    for name, suffix in (("Redis", "a"), ("Redis + cache", "b")):
        for what, col, unit in (("VmRSS", "rss_" + suffix, "KiB"), ("open fds", "fds_" + suffix, "")):
            g = growth(rows, col, a.duration)
            if g is None:
                lines.append("| %s | %s | – | %.0f %s | – |" % (name, what, rows[-1][col], unit))
                continue
            begin, end, frac = g
            over = frac > LIMIT
            failed |= over and not a.answers_only
            lines.append("| %s | %s | %.0f %s | %.0f %s | %+.1f %%%s |" % (
                name, what, begin, unit, end, unit, 100 * frac, " **over 10 %**" if over else ""))
    after = [r for r in rows if r["t"] > a.duration]
    if after:
        r = after[-1]
        lines.append("")
        lines.append("After the traffic stopped: VmRSS %.0f / %.0f KiB, open fds %d / %d "
                     "(without / with the cache; at the start, before any traffic: %d / %d fds)."
                     % (r["rss_a"], r["rss_b"], r["fds_a"], r["fds_b"], rows[0]["fds_a"], rows[0]["fds_b"]))
    with open(a.out + "/summary.md", "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(a.out + "/rss.svg", "w") as f:
        f.write(svg(rows, a.restart_at))
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
