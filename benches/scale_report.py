#!/usr/bin/env python3
"""Render benches/scale.sh's files (in OUT) as the markdown table (stdout).

  python3 benches/scale_report.py --out OUT [--quick 1]

OUT/idle.tsv: key value lines (conns held failed open_s fds still_open rss_before rss_held hwm
  rss_after; memory in KiB) from the idle-connections part.
OUT/idle-tls.tsv: one line per server (doorman's and nginx's process groups): name conns held
  failed open_s fds still_open rss_before rss_held hwm rss_after (KiB; nginx: master + workers).
OUT/websockets.tsv: key value lines (conns held failed open_s fds rss_before rss_held hwm
  rss_after victims victims_closed close_frames slowest_ms others_closed) from the WebSockets part.
OUT/raw.tsv: run.sh's columns (see report.py), rows named STORE-SIZE.
OUT/seed.tsv: name store size seconds store-MiB (Redis used_memory, or the redb file).
OUT/rss.tsv: STORE-SIZE ready|peak KiB (doorman's VmRSS after the login, VmHWM after all runs).
"""
import argparse
import os
import statistics as st

from tablefmt import fmt_n

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
ap.add_argument("--quick", default="0")
a = ap.parse_args()


def lines(name):
    path = os.path.join(a.out, name)
    if not os.path.exists(path):
        return []
    return [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]


def mib(kib):
    return int(kib) / 1024.0


def met(ok):
    return "met" if ok else "**not met**"


out = ["## doorman at scale" + (" — QUICK SMOKE RUN (figures mean nothing)" if a.quick == "1" else ""), ""]
versions = os.path.join(a.out, "versions.txt")
if os.path.exists(versions):
    out += ["```"] + [l.rstrip("\n") for l in open(versions)] + ["```", ""]
targets = []

idle = {k: v for k, v in (l[:2] for l in lines("idle.tsv"))}
if idle:
    n = int(idle["conns"])
    held = int(idle["held"])
    before, loaded, hwm, after = (mib(idle[k]) for k in ("rss_before", "rss_held", "hwm", "rss_after"))
    per = (int(idle["rss_held"]) - int(idle["rss_before"])) / held if held else 0
    out.append("### Idle keep-alive connections")
    out.append("")
    out.append("One `GET /public` on each connection, then held idle. RSS: doorman's VmRSS before the "
               "connections, while they are held, and after they closed; peak = VmHWM; fds = doorman's "
               "open files while held.")
    out.append("")
    out.append("| connections | held | failed | opened in s | doorman fds | RSS MiB before | held | per connection KiB | peak | after close |")
    out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    out.append("| %d | %d | %s | %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f |" % (
        n, held, idle["failed"], idle["open_s"], idle["fds"], before, loaded, per, hwm, after))
    out.append("")
    # 150 MB = 143.05 MiB
    targets.append(("RSS with %d idle keep-alive connections ≤ 150 MB" % n,
                    "%.1f MiB (%.0f MB), peak %.1f MiB" % (loaded, loaded * 1.048576, hwm),
                    met(loaded * 1.048576 <= 150) if n >= 10000 else "n/a (fewer than 10,000)"))
    targets.append(("RSS per idle plain connection ≤ 8 KiB (issue 20)", "%.1f KiB" % per,
                    met(per <= 8) if n >= 10000 else "n/a (fewer than 10,000)"))

tls_idle = [l for l in lines("idle-tls.tsv") if len(l) >= 11]
if tls_idle:
    out.append("### Idle TLS connections (doorman vs nginx)")
    out.append("")
    out.append("The same hold over TLS (ECDSA P-256, a full handshake and one request per connection, then "
               "idle), doorman ([listen] tls) and nginx (run.sh's row j: workers = cores, ssl_session_cache, "
               "tickets, h2) one after the other. RSS summed over the server's processes (nginx: master + "
               "workers, whose shared pages count once per process); per connection = (held − before) / held.")
    out.append("")
    out.append("| server | connections | held | failed | opened in s | fds | RSS MiB before | held | per connection KiB | peak | after close |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    per_conn = {}
    for name, n, held, failed, secs, fds, _still, r0, r1, hwm, r2 in (l[:11] for l in tls_idle):
        per = (int(r1) - int(r0)) / int(held) if int(held) else 0
        per_conn["nginx" if name.startswith("nginx") else "doorman"] = (per, int(n))
        out.append("| %s | %s | %s | %s | %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f |" % (
            "nginx" if name.startswith("nginx") else "doorman", n, held, failed, secs, fds,
            mib(r0), mib(r1), per, mib(hwm), mib(r2)))
    out.append("")
    if "nginx" in per_conn and "doorman" in per_conn:
        d, n = per_conn["doorman"][0], per_conn["nginx"][0]
        targets.append(("RSS per idle TLS connection ≤ nginx's (issue 20)",
                        "%.1f vs %.1f KiB" % (d, n),
                        met(d <= n) if per_conn["doorman"][1] >= 10000 else "n/a (fewer than 10,000)"))

ws = {k: v for k, v in (l[:2] for l in lines("websockets.tsv"))}
if ws:
    n = int(ws["conns"])
    held = int(ws["held"])
    before, loaded, hwm, after = (mib(ws[k]) for k in ("rss_before", "rss_held", "hwm", "rss_after"))
    per = (int(ws["rss_held"]) - int(ws["rss_before"])) / held if held else 0
    out.append("### Idle WebSockets following their sessions (DESIGN.md §11)")
    out.append("")
    out.append("WebSockets opened through doorman with a session (embedded store) to a WebSocket upstream "
               "and held idle; each is a client and an upstream socket (fds). Then `doorman sessions revoke "
               "--user victim` ends the victim's sessions: how many of their sockets closed, with the "
               "Close frame 1008 `session ended` first, the slowest from just before the command started, "
               "and how many other sockets closed (must be 0).")
    out.append("")
    out.append("| WebSockets | held | failed | doorman fds | RSS MiB before | held | per WebSocket KiB | peak | after close | victim sockets closed | with Close 1008 | slowest ms | others closed |")
    out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    out.append("| %d | %d | %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f | %s / %s | %s | %s | %s |" % (
        n, held, ws["failed"], ws["fds"], before, loaded, per, hwm, after, ws["victims_closed"],
        ws["victims"], ws["close_frames"], ws["slowest_ms"], ws["others_closed"]))
    if int(ws.get("asked", n)) > n:
        out.append("")
        out.append("Asked for %s WebSockets; this machine's open-file limit (%s, which the script may not "
                   "raise) holds %d tunnels of two sockets each." % (ws["asked"], ws["fd_limit"], n))
    out.append("")
    targets.append(("revoking one user closes exactly their WebSockets, within 1 s (embedded store), of %d held" % n,
                    "%s of %s in %s ms, %s others" % (ws["victims_closed"], ws["victims"], ws["slowest_ms"], ws["others_closed"]),
                    met(ws["victims_closed"] == ws["victims"] and ws["others_closed"] == "0"
                        and float(ws["slowest_ms"]) <= 1000)))

runs = {}
for f in lines("raw.tsv"):
    if len(f) >= 20:
        runs.setdefault((f[0], int(f[1])), []).append(f)
seeds = {l[0].removeprefix("dm-"): l for l in lines("seed.tsv")}
rss = {(l[0], l[1]): mib(l[2]) for l in lines("rss.tsv")}


def med(key, i):
    v = [float(r[i]) for r in runs[key] if r[i] != "-"]
    return st.median(v) if v else None


if runs:
    out.append("### Sessions in the store")
    out.append("")
    out.append("`GET /dashboard` with the session cookie of one login, on a store seeded with N other "
               "sessions. req/s, p50, p99, µs/req: median over reps; errors summed. proxy µs/req = "
               "doorman's CPU per request; redis µs/req = that row's redis-server's. store MiB: Redis "
               "`used_memory`, or the redb file. RSS: doorman's VmRSS after the login, VmHWM after all "
               "runs. ×smallest = req/s over the same store's smallest size.")
    out.append("")
    out.append("| store | sessions | seeded in s | store MiB | conns | req/s | p50 ms | p99 ms | errors | proxy µs/req | redis µs/req | RSS MiB ready | peak | ×smallest |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    order = sorted({r for (r, _) in runs}, key=lambda r: (r.split("-")[0] != "redis", int(r.split("-")[1])))
    for c in sorted({c for (_, c) in runs}):
        smallest = {}
        for row in order:
            store, size = row.split("-")
            key = (row, c)
            if key not in runs:
                continue
            rps = med(key, 3)
            base = smallest.setdefault(store, (int(size), rps))
            ratio = rps / base[1] if base[1] else None
            errs = sum(int(r[9]) + int(r[10]) for r in runs[key])
            flag = " !" if any(r[-1] == "!" for r in runs[key]) else ""
            s = seeds.get(row, ["", "", "", "–", "–"])
            out.append("| %s | %s | %s | %s | %d | %s%s | %s | %s | %d | %s | %s | %s | %s | %s |" % (
                store, "{:,}".format(int(size)), s[3], s[4], c, fmt_n(rps), flag, fmt_n(med(key, 4)),
                fmt_n(med(key, 6)), errs, fmt_n(med(key, 17)),
                fmt_n(med(key, 18)) if store == "redis" else "–",
                *("%.1f" % rss[(row, k)] if (row, k) in rss else "–" for k in ("ready", "peak")),
                "%.2f×" % ratio if ratio is not None else "–"))
            if int(size) != base[0] and ratio is not None:
                targets.append(("%s: %s sessions within 10 %% of %s (req/s, %d conns)" % (
                    store, "{:,}".format(int(size)), "{:,}".format(base[0]), c),
                    "%.2f× (%s vs %s req/s)" % (ratio, fmt_n(rps), fmt_n(base[1])),
                    met(ratio >= 0.9) if int(size) >= 1000000 else "n/a (fewer than 1,000,000)"))
    out.append("")
    out.append("CPU split (% of one core, mean over reps): other = busy CPU used by none of wrk, doorman, "
               "the upstream and that row's Redis (foreign load); '!' = kept although other exceeded --max-other.")
    out.append("")
    out.append("| row | conns | req/s min–max | wrk | doorman | upstream | redis | other | all |")
    out.append("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for c in sorted({c for (_, c) in runs}):
        for row in order:
            key = (row, c)
            if key not in runs:
                continue
            v = [float(r[3]) for r in runs[key]]
            m = lambda i: "%.0f" % st.mean(float(r[i]) for r in runs[key])
            out.append("| %s | %d | %s–%s | %s | %s | %s | %s | %s | %s |" % (
                row, c, fmt_n(min(v)), fmt_n(max(v)), m(11), m(12), m(13), m(14), m(16), m(15)))
    out.append("")

if targets:
    out.append("Targets (issue 7) measured by this run:")
    out.append("")
    out.append("| target | figure | met |")
    out.append("|---|---|---|")
    out += ["| %s | %s | %s |" % t for t in targets]
print("\n".join(out))
