#!/usr/bin/env python3
"""benches/failover.sh's report: one table row per set-up, to stdout, and OUT/verdict.json.

  python3 benches/failover_report.py --out OUT --setups sentinel,cluster

Reads, per set-up, OUT/<setup>.json (failover.py watch's verdict), OUT/<setup>-run.json (the
master killed, the replica that took over, load seconds) and OUT/<setup>-wrk.tsv (one
`doorman=N requests=… non2xx=… s200=… …` line per wrk). Times are seconds after the kill.
Exit status 1 when an answer was wrong, a doorman did not serve again, no replica took over
or a doorman exited.
"""
import argparse
import json

NAMES = {"sentinel": "Sentinel", "cluster": "Cluster"}


def load(out, setup):
    with open("%s/%s.json" % (out, setup)) as f:
        prober = json.load(f)
    with open("%s/%s-run.json" % (out, setup)) as f:
        run = json.load(f)
    wrk = []
    with open("%s/%s-wrk.tsv" % (out, setup)) as f:
        for line in f:
            if line.strip():
                wrk.append({k: int(v) for k, v in (kv.split("=") for kv in line.split())})
    total = {k: sum(w[k] for w in wrk) for k in wrk[0] if k != "doorman"} if wrk else {}
    for k in ("p99_ms", "max_ms"):  # the worst of the three wrk runs, not a sum
        if k in total:
            total[k] = max(w[k] for w in wrk)
    return prober, run, total


def window(w):
    if w["first_s"] is None:
        return "none"
    return "%.2f–%.2f s (%.2f s)" % (w["first_s"], w["last_s"], w["last_s"] - w["first_s"])


def seconds(x):
    return "never" if x is None else "%.2f" % x


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--setups", required=True)
    a = p.parse_args()

    rows, notes, verdict, failed = [], [], {"setups": {}}, False
    for setup in a.setups.split(","):
        prober, run, wrk = load(a.out, setup)
        s = prober["sessions"]
        rec = [d["recovery_s"] for d in prober["doormen"]]
        wrong = prober["wrong"] + wrk.get("wrong", 0)
        ok = prober["recovered"] and wrong == 0 and run["promoted"] is not None and not run["exited"]
        failed |= not ok
        rows.append("| %s | %d of %d | %s | %s (max %s) | %d of %d | %s | %s | %s / %s | %s / %s | %s / %s | %d |" % (
            NAMES[setup], run["victim_sessions"], s["n"], window(prober["window_503"]),
            " / ".join(seconds(r) for r in rec), seconds(prober["recovery_max_s"]),
            s["lost"], s["n"], window(prober["readyz_not_ready"]),
            "{:,}".format(wrk.get("requests", 0)), "{:,}".format(wrk.get("s401", 0)),
            "{:,}".format(wrk.get("s503", 0)), "{:,}".format(wrk.get("p99_ms", 0)),
            "{:,}".format(wrk.get("max_ms", 0)), "{:,}".format(wrk.get("sockerr", 0)),
            "{:,}".format(wrk.get("other", 0)), wrong))
        notes.append("- %s: kill -9 of the master on :%d at %.1f s of %.1f s of load; %s; the prober "
                     "sent %s requests (%d × 503 after the kill, %d before it); logged-out sessions "
                     "served again: %d of %d; %s%s." % (
                         NAMES[setup], run["victim"], run["kill_at_s"], run["load_s"],
                         "the replica on :%d took over" % run["promoted"] if run["promoted"]
                         else "**no replica took over**",
                         "{:,}".format(prober["requests"]), prober["window_503"]["count"],
                         prober["before_kill_503"], s["dead_back"], s["dead"],
                         "every doorman served the probe session again" if prober["recovered"]
                         else "**not every doorman served again**",
                         "; **exited: %s**" % run["exited"] if run["exited"] else ""))
        if prober.get("window_503_elsewhere"):
            notes.append("  - sessions whose record is on a surviving master: 503 %s" % (
                window(prober["window_503_elsewhere"]) if prober["window_503_elsewhere"]["count"]
                else "never"))
        for w in prober["wrong_list"][:10]:
            notes.append("  - wrong (doorman %d, %s): %s" % (w["doorman"] + 1, w["kind"], w["detail"]))
        if wrk.get("wrong"):
            notes.append("  - wrong in wrk's answers: %d (%d × 503 deleting the cookie, %d other statuses)"
                         % (wrk["wrong"], wrk["deleted"], wrk["other"]))
        verdict["setups"][setup] = {"run": run, "wrk": wrk, "wrong": wrong, "passed": ok,
                                    **{k: v for k, v in prober.items() if k != "counts"},
                                    "prober_counts": prober["counts"]}
    verdict["wrong"] = sum(v["wrong"] for v in verdict["setups"].values())
    verdict["recovered"] = all(v["recovered"] for v in verdict["setups"].values())
    verdict["passed"] = not failed
    with open(a.out + "/verdict.json", "w") as f:
        json.dump(verdict, f, indent=1)

    print("| set-up | sessions on the killed master | 503 window after the kill | serves again after, per doorman (s) | sessions lost | /readyz not ready | wrk requests | wrk 401 / 503 | wrk p99 / max latency (ms) | wrk socket errors / other statuses | wrong answers |")
    print("|---|---:|---|---|---:|---|---:|---|---|---|---:|")
    print("\n".join(rows))
    print()
    print("\n".join(notes))
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
