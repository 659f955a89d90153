#!/usr/bin/env python3
"""Render benches/run.sh's raw.tsv + rss.tsv as the markdown table (stdout).

  python3 benches/report.py --raw OUT/raw.tsv --rss OUT/rss.tsv [--versions OUT/versions.txt]
                            [--skipped c=reason,g=reason] [--quick 1] [--handshakes OUT/handshakes.tsv]
                            [--chart OUT/chart.svg]

raw.tsv, one line per measured run: row conns rep rps p50 p90 p99 max requests non2xx sockerr
  wrk% proxy% upstream% redis% all% other% proxy_us/req redis_us/req all_us/req [part%
  part_us/req] [!] (CPU % = of one core; us/req = CPU microseconds per request; proxy = every
  process of the system under test, for rows h and i the gateway nginx and the auth server;
  part = the auth server alone, "-" for the other rows).
rss.tsv: row idle|ready|peak KiB: VmRSS before any request | VmRSS after the login and the
  checks, before the load | VmHWM after all runs; summed over the proxy's processes (nginx
  master + workers).
handshakes.tsv (rows measured with the tls-load example, benches/tls_load.rs): row conns rep resumed full.
"""
import argparse
import statistics as st

from tablefmt import fmt_n

NAMES = {
    "a": "upstream direct (nginx, 1 worker)",
    "b": "nginx proxy_pass, keepalive, workers = cores",
    "c": "Express + express-session + connect-redis",
    "d": "doorman, public route",
    "e": "doorman, authenticated, Redis store",
    "f": "doorman, authenticated, embedded store",
    "g": "doorman, authenticated, Redis store, cache = true",
    "h": "nginx auth_request → doorman /auth",
    "x": "nginx auth_request → doorman /auth (embedded store, doorman's default)",
    "i": "nginx auth_request → Express session check",
    "j": "nginx TLS proxy, HTTP/1.1 keep-alive",
    "k": "doorman TLS, public route, HTTP/1.1 keep-alive",
    "l": "doorman TLS, authenticated, embedded store, HTTP/1.1",
    "m": "doorman TLS, authenticated, Redis store, cache = true, HTTP/1.1",
    "n": "nginx, full TLS handshakes, ECDSA P-256",
    "o": "doorman, full TLS handshakes, ECDSA P-256",
    "p": "nginx, resumed TLS handshakes, ECDSA P-256",
    "q": "doorman, resumed TLS handshakes, ECDSA P-256",
    "r": "nginx, full TLS handshakes, RSA 2048",
    "s": "doorman, full TLS handshakes, RSA 2048",
    "t": "nginx h2 proxy (h2load -m 10)",
    "u": "doorman h2, public route (h2load -m 10)",
    "v": "doorman h2, authenticated, embedded store (h2load -m 10)",
    "w": "hyper-floor: hyper server + client, nothing else (not doorman)",
}
# Row w is listed after i: it belongs with the plain HTTP/1.1 rows it is compared with.
ROWS = "abcdefghxiwjklmnopqrstuv"
DOORMAN = "defg"
# The nginx row each row's ×nginx is taken from: b (plain proxy_pass) unless it is a TLS row.
REF = {"k": "j", "l": "j", "m": "j", "o": "n", "q": "p", "s": "r", "u": "t", "v": "t"}
REFERENCE_ROWS = "bjnprt"
HANDSHAKE_ROWS = "nopqrs"

ap = argparse.ArgumentParser()
ap.add_argument("--raw", required=True)
ap.add_argument("--rss", required=True)
ap.add_argument("--versions")
ap.add_argument("--skipped", default="")
ap.add_argument("--quick", default="0")
ap.add_argument("--fa-store", default="redis", help="row h's doorman store (run.sh --fa-store)")
ap.add_argument("--handshakes", help="run.sh's handshakes.tsv")
ap.add_argument("--chart", help="write an SVG chart of req/s and p99 per row here (chart.py)")
a = ap.parse_args()
NAMES["h"] += " (%s)" % {"redis": "Redis store", "redis-cache": "Redis store, cache = true",
                         "embedded": "embedded store"}.get(a.fa_store, a.fa_store)
# row=reason,...; a bare row (older callers) was skipped by --quick
skipped = {}
for item in filter(None, a.skipped.split(",")):
    row, _, reason = item.partition("=")
    skipped[row] = reason or "skipped in --quick"

runs = {}
for line in open(a.raw):
    f = line.rstrip("\n").split("\t")
    if len(f) >= 20:
        runs.setdefault((f[0], int(f[1])), []).append(f)
rss = {}
for line in open(a.rss):
    row, kind, kib = line.split()
    rss[(row, kind)] = int(kib) / 1024.0


def med(key, i):
    v = [float(r[i]) for r in runs[key] if r[i] != "-"]
    return st.median(v) if v else None


def per_rep(key, ref, i):
    """The ratio of `key`'s figure `i` over `ref`'s within each rep both ran, in rep order. Rows of
    one rep run back to back (the reps are interleaved), so a rep's foreign load and the
    machine's pace fall on both; the medians' ratio pairs one rep's row with another's nginx."""
    mine = {r[2]: float(r[i]) for r in runs[key] if r[i] != "-"}
    theirs = {r[2]: float(r[i]) for r in runs[ref] if r[i] != "-"}
    return [mine[k] / theirs[k] for k in sorted(mine, key=int) if k in theirs and theirs[k]]


def ratio(x, y):
    return "%.2f×" % (x / y) if x is not None and y else "–"


conns = sorted({c for (_, c) in runs})
rows_present = sorted({r for (r, _) in runs})
out = []
title = "doorman benchmark" + (" — QUICK SMOKE RUN (figures mean nothing)" if a.quick == "1" else "")
out.append("## " + title)
out.append("")
if a.versions:
    out.append("```")
    out += [l.rstrip("\n") for l in open(a.versions)]
    out.append("```")
    out.append("")
out.append("req/s, p50, p99 and µs/req: median over reps; errors: non-2xx + socket errors, summed.")
out.append("µs/req = CPU time (user + system, all threads) of the proxy process(es) per request (rows h, i:")
out.append("the gateway nginx and the auth server together; split below);")
out.append("RSS (nginx: master + workers summed): idle = VmRSS before any request; ready = VmRSS after the")
out.append("login (doorman: one Argon2id hash, m = 19 MiB) and the checks, before the load; peak = VmHWM after")
out.append("all runs. ×nginx / ×Express = req/s of this row over row b's / row c's at the same connection count;")
out.append("for a TLS row, over its nginx row's (k, l, m: j; o: n; q: p; s: r; u, v: t). Rows n to s: one request")
out.append("per connection, so req/s = handshakes/s, and their latency includes connect and handshake.")
out.append("")
out.append("| row | what | conns | req/s | p50 ms | p99 ms | errors | proxy µs/req | RSS MiB idle | ready | peak | ×nginx | ×Express |")
out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for c in conns:
    for row in ROWS:
        key = (row, c)
        if row in skipped:
            out.append("| %s | %s | %d | %s | | | | | | | | | |" % (row, NAMES[row], c, skipped[row]))
            continue
        if key not in runs:
            continue
        rps = med(key, 3)
        errs = sum(int(r[9]) + int(r[10]) for r in runs[key])
        flag = " !" if any(r[-1] == "!" for r in runs[key]) else ""
        out.append("| %s | %s | %d | %s%s | %s | %s | %d | %s | %s | %s | %s | %s | %s |" % (
            row, NAMES[row], c, fmt_n(rps), flag, fmt_n(med(key, 4)), fmt_n(med(key, 6)), errs,
            fmt_n(med(key, 17)),
            *("%.1f" % rss[(row, k)] if (row, k) in rss else "–" for k in ("idle", "ready", "peak")),
            ratio(rps, med((REF.get(row, "b"), c), 3))
            if row not in REFERENCE_ROWS and (REF.get(row, "b"), c) in runs else "–",
            ratio(rps, med(("c", c), 3)) if row in DOORMAN and ("c", c) in runs else "–"))

out.append("")
out.append("CPU split (% of one core, mean over reps; the machine has all cores × 100 %). "
           "other = busy CPU used by none of wrk, the proxy, the upstream and Redis (foreign load, keep it near 0); "
           "'!' = kept although other exceeded --max-other.")
out.append("")
out.append("| row | conns | req/s min–max | wrk | proxy | upstream | redis | other | all | redis µs/req | machine µs/req |")
out.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")


def mean(key, i):
    return "%.0f" % st.mean(float(r[i]) for r in runs[key])


for c in conns:
    for row in ROWS:
        key = (row, c)
        if key not in runs:
            continue
        v = [float(r[3]) for r in runs[key]]
        out.append("| %s | %d | %s–%s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            row, c, fmt_n(min(v)), fmt_n(max(v)), mean(key, 11), mean(key, 12),
            mean(key, 13) if row != "a" else "(proxy)", mean(key, 14), mean(key, 16), mean(key, 15),
            fmt_n(med(key, 18)) if row in "ceghi" else "–", fmt_n(med(key, 19))))


def part_us(key):  # median over reps of the auth server's µs/req
    v = [float(r[21]) for r in runs.get(key, []) if len(r) > 21 and r[21] not in ("-", "!")]
    return st.median(v) if v else None


def gateway_us(key):  # median over reps of (everything measured as proxy) − (the auth server)
    v = [float(r[17]) - float(r[21]) for r in runs.get(key, [])
         if len(r) > 21 and "-" not in (r[17], r[21]) and r[21] != "!"]
    return st.median(v) if v else None


fa_rows = [r for r in "hxi" if any((r, c) in runs for c in conns)]
if fa_rows:
    out.append("")
    out.append("Forward-auth (rows h, x, i): a gateway nginx (workers = cores) in front; each request is an "
               "auth_request sub-request to the auth server, then proxy_pass to the upstream. "
               "µs/req split (medians over reps): gateway nginx (master + workers), the auth server alone "
               "(doorman / node), Redis. ×nginx = req/s over row b's (plain proxy_pass, one exchange); "
               "h/i = row h (x: row x) over row i.")
    out.append("")
    out.append("| row | what | conns | req/s | p99 ms | errors | gateway µs/req | auth server µs/req "
               "| Redis µs/req | gateway + auth µs/req | ×nginx | h/i req/s | h/i auth server µs |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in conns:
        for row in "hxi":
            key = (row, c)
            if key not in runs:
                continue
            errs = sum(int(r[9]) + int(r[10]) for r in runs[key])
            hi = row in "hx" and ("i", c) in runs
            pu, pi = part_us(key), part_us(("i", c))
            out.append("| %s | %s | %d | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s |" % (
                row, NAMES[row], c, fmt_n(med(key, 3)), fmt_n(med(key, 6)), errs,
                fmt_n(gateway_us(key)), fmt_n(pu), fmt_n(med(key, 18)), fmt_n(med(key, 17)),
                ratio(med(key, 3), med(("b", c), 3)) if ("b", c) in runs else "–",
                ratio(med(key, 3), med(("i", c), 3)) if hi else "–",
                ratio(pu, pi) if hi else "–"))

hs = {}
if a.handshakes:
    for line in open(a.handshakes):
        f = line.split()
        if len(f) == 5:
            k = (f[0], int(f[1]))
            hs[k] = [x + int(y) for x, y in zip(hs.get(k, [0, 0]), f[3:5])]
if hs:
    out.append("")
    out.append("TLS handshakes (rows n to s, the tls-load example: a new connection per request; resumed = "
               "handshakes the server resumed from the session the client offered, summed over reps). "
               "µs/handshake = the proxy's CPU per connection (handshake + one proxied request).")
    out.append("")
    out.append("| row | what | conns | handshakes/s | resumed | full | proxy µs/handshake | ×nginx |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for c in conns:
        for row in HANDSHAKE_ROWS:
            key = (row, c)
            if key not in runs or key not in hs:
                continue
            ref = (REF.get(row), c)
            out.append("| %s | %s | %d | %s | %d | %d | %s | %s |" % (
                row, NAMES[row], c, fmt_n(med(key, 3)), hs[key][0], hs[key][1], fmt_n(med(key, 17)),
                ratio(med(key, 3), med(ref, 3)) if ref in runs else "–"))

# Issue 20's targets (they replace issue 7's), and issue 14 item 9's for rows h and i.
out.append("")
out.append("Targets measured by this run (issue 20; rows h, x and i: issue 14 item 9). Ratios are of this run's "
           "medians (met or not is judged on them); a req/s target also lists the ratio within each rep, and "
           "their median; idle memory per connection is `benches/scale.sh`'s.")
out.append("")
out.append("| target | conns | figure | met |")
out.append("|---|---:|---|---|")


def target(name, c, figure, ok):
    out.append("| %s | %s | %s | %s |" % (name, c, figure, "n/a" if ok is None else ("met" if ok else "**not met**")))


# req/s floors against the row's nginx (REF, else row b)
FLOORS = [("d", "plain HTTP, public", 1.0), ("e", "Redis, no cache", 0.75), ("f", "embedded", 0.95),
          ("g", "Redis + cache", 0.95), ("k", "HTTPS keep-alive, public", 1.0),
          ("l", "HTTPS keep-alive, embedded", 1.0), ("m", "HTTPS keep-alive, Redis + cache", 1.0),
          ("o", "full handshakes/s, ECDSA P-256", 1.0), ("q", "resumed handshakes/s, ECDSA P-256", 1.0),
          ("u", "h2, public", 1.0), ("v", "h2, authenticated", 1.0)]
TARGETS = []  # (row, conns, kind, ratio, met, met by the per-rep median or None): for the summary lines
for c in conns:
    for row, what, floor in FLOORS:
        key, ref = (row, c), (REF.get(row, "b"), c)
        if key not in runs or ref not in runs:
            continue
        r = med(key, 3) / med(ref, 3)
        reps = per_rep(key, ref, 3)
        figure = "%.2f×" % r
        if len(reps) > 1:
            figure += " (per rep %s; their median %.2f×)" % (
                ", ".join("%.2f×" % x for x in reps), st.median(reps))
        target("%s %s ≥ %.2f× nginx req/s (row %s)" % (row, what, floor, ref[0]), c, figure, r >= floor)
        TARGETS.append((row, c, "req/s", r, r >= floor, st.median(reps) >= floor if reps else None))
    d, b = ("d", c), ("b", c)
    if d in runs and b in runs and med(d, 17) and med(b, 17):
        nd, nb = med(d, 17), med(b, 17)
        target("d public µs/req ≤ 1.0× nginx's (row b)", c, "%.1f vs %.1f µs = %.2f×" % (nd, nb, nd / nb), nd <= nb)
    # The stack's floor (row w): not a target, the yardstick for what doorman's own work costs.
    w = ("w", c)
    if w in runs and b in runs and med(w, 17) and med(b, 17):
        nw, nb = med(w, 17), med(b, 17)
        target("w hyper-floor µs/req against nginx's (row b): the stack alone", c,
               "%.1f vs %.1f µs = %.2f×, req/s %.2f×" % (nw, nb, nw / nb, med(w, 3) / med(b, 3)), None)
        if d in runs and med(d, 17):
            target("d public µs/req over the floor's (row w): doorman's own work", c,
                   "%.1f vs %.1f µs = %+.1f µs" % (med(d, 17), nw, med(d, 17) - nw), None)
    # p99 on every doorman row against its nginx row
    for row in "defgklmoqsuv":
        key, ref = (row, c), (REF.get(row, "b"), c)
        if key not in runs or ref not in runs:
            continue
        p, pr = med(key, 6), med(ref, 6)
        if p and pr:
            target("%s p99 ≤ 1.2× nginx's (row %s)" % (row, ref[0]), c, "%.2f vs %.2f ms = %.2f×" % (p, pr, p / pr),
                   p / pr <= 1.2)
            TARGETS.append((row, c, "p99", p / pr, p / pr <= 1.2, None))
    # CPU per request against Express's on the authenticated rows (replaces "≥ 10× Express req/s")
    cx = ("c", c)
    for row in "efg":
        key = (row, c)
        if key in runs and cx in runs and med(key, 17) and med(cx, 17):
            u, ux = med(key, 17), med(cx, 17)
            target("%s µs/req ≤ 1/8 of Express's (row c)" % row, c, "%.1f vs %.0f µs = 1/%.1f" % (u, ux, ux / u),
                   u * 8 <= ux)
# Issue 14's forward-auth targets do not name doorman's store: row h's is --fa-store's (Redis
# by default, as Express's), row x's the embedded store (doorman's default); both are judged.
for c in conns:
    b, i = ("b", c), ("i", c)
    for row in "hx":
        key = (row, c)
        if key in runs and b in runs:
            r = med(key, 3) / med(b, 3)
            target("%s forward-auth ≥ 0.5× nginx proxy_pass req/s (issue 14)" % row, c, "%.2f×" % r, r >= 0.5)
        if key in runs and i in runs:
            dh, di = part_us(key), part_us(i)
            if dh and di:
                target("%s doorman µs/req ≤ 1/8 of Express's (row i's node) (issue 14)" % row, c,
                       "%.1f vs %.0f µs = 1/%.1f" % (dh, di, di / dh), dh * 8 <= di)
for row in DOORMAN:  # issue 7's, which issue 20 keeps
    if (row, "idle") in rss:
        v = rss[(row, "idle")]
        target("%s idle RSS ≤ 20 MB (issue 7)" % row, "–", "%.1f MiB" % v, v * 1.048576 <= 20)
target("idle memory per plain connection ≤ 8 KiB; per TLS connection ≤ nginx's", "–",
       "`benches/scale.sh --parts idle,idle-tls`", None)
if TARGETS:
    met = sum(1 for t in TARGETS if t[4])
    out.append("")
    out.append("req/s and p99 targets met: %d of %d." % (met, len(TARGETS)))
    paired = [t for t in TARGETS if t[5] is not None]
    if paired:
        out.append("")
        out.append("req/s targets met by the median of the per-rep ratios as well (a rep's row over the "
                   "same rep's nginx row): %d of the %d met, %d of %d in all." % (
                       sum(1 for t in paired if t[4] and t[5]), sum(1 for t in paired if t[4]),
                       sum(1 for t in paired if t[5]), len(paired)))
if a.chart:
    import chart
    chart.write(a.chart, runs, med, NAMES, ROWS, REF, conns, a.quick == "1")
    out.append("")
    out.append("Chart of req/s and p99 per row: `%s`." % a.chart.split("/")[-1])
out.append("")
out.append("RSS with 10,000 idle keep-alive connections and throughput with 1,000,000 sessions in the "
           "store: `benches/scale.sh`.")
print("\n".join(out))
