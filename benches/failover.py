#!/usr/bin/env python3
"""The prober of benches/failover.sh (issue 19): sessions made before a Redis master dies, and
what each doorman answers while it dies and after.

  python3 benches/failover.py login --ports A,B,C --user U --password P --sessions N \
      --dead K --prefix P --out SESSIONS.json
  python3 benches/failover.py watch --ports A,B,C --admin-ports X,Y,Z --user U \
      --sessions SESSIONS.json --victim-keys FILE --marker FILE --min-after S \
      --settle S --deadline S --timeline OUT.tsv --out VERDICT.json

login  logs N sessions in, round robin over the doormen, and K more that it logs out through
       the next doorman; every login and logout must answer 303. Writes the cookies, each with
       its Redis record key (`{prefix}s:{hex(sha256(id))}`, DESIGN.md §7), as JSON.

watch  one thread per doorman, every 10 ms: GET /dashboard with the probe cookie (a session
       from `login` whose record is on the master that will die, made through another
       doorman), then in turn one of: /dashboard with a logged-out cookie, with a made-up
       cookie, with none, /public with the probe cookie, and (Cluster) /dashboard with a
       session whose record is on another master ("live elsewhere"); every 100 ms GET /readyz
       on the doorman's admin port. Each answer goes to the timeline (when it arrived, doorman,
       kind, status, whether it deleted doorman's cookie, ms it took); every time below is that
       of an answer. When `--marker` appears (failover.sh writes the epoch of its `kill -9`
       there), it runs until every doorman has served the probe again for `--settle` s and
       `--min-after` s have passed since the kill, or gives up `--deadline` s after the kill.
       Then it asks for every session from `login` again (200: kept, 401: lost).

Wrong answers: a 200 on /dashboard for a logged-out, made-up or no cookie, or one the upstream
saw as someone else; a 503 whose Set-Cookie deletes doorman's cookie; any status but 200, 401
and 503 on /dashboard, anything but 200 on /public; no answer within 10 s; after the recovery,
a logged-out session served or a session answered with anything but 200 or 401. The verdict
(counts, wrong answers, the 503 window, recovery per doorman, sessions kept and lost) goes to
`--out` as JSON; the exit status is 1 when an answer was wrong or a doorman did not recover.
"""
import argparse
import base64
import collections
import hashlib
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

TIMEOUT = 10.0
POLL = 0.010
READYZ_EVERY = 0.100


def record_key(prefix, cookie):
    """The Redis key of the session whose cookie is `name=value`."""
    value = cookie.split("=", 1)[1]
    raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    return "%ss:%s" % (prefix, hashlib.sha256(raw).hexdigest())


def made_up():
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def deletes_cookie(headers, name):
    """Whether a Set-Cookie among `headers` expires doorman's cookie `name`."""
    for key, value in headers:
        if key.lower() != "set-cookie":
            continue
        pair = value.split(";")[0].strip()
        if pair.split("=", 1)[0] == name and (pair.endswith("=") or "max-age=0" in value.lower()):
            return True
    return False


class Conn:
    """One keep-alive connection, reopened after an error or a `Connection: close`."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def request(self, method, path, headers=None, body=None):
        """(status, [(name, value)...]); raises OSError/HTTPException on no answer."""
        for attempt in (0, 1):
            fresh = self.conn is None
            if fresh:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                # A reused keep-alive connection the server closed as we sent: once more.
                if not fresh and attempt == 0:
                    continue
                raise
            if resp.getheader("connection", "").lower() == "close":
                self.conn.close()
                self.conn = None
            return resp.status, resp.getheaders()
        raise OSError("unreachable")


# ---------------------------------------------------------------- login
def post_login(port, user, password):
    body = urllib.parse.urlencode({"username": user, "password": password})
    status, headers = Conn(port).request("POST", "/_doorman/login", {
        "Content-Type": "application/x-www-form-urlencoded",
        "Origin": "http://127.0.0.1:%d" % port, "Connection": "close"}, body)
    for key, value in headers:
        pair = value.split(";")[0].strip()
        if key.lower() == "set-cookie" and not pair.endswith("=") and "max-age=0" not in value.lower():
            return status, pair
    return status, None


def login(args):
    ports = [int(p) for p in args.ports.split(",")]
    live, dead = [], []
    for i in range(args.sessions + args.dead):
        port = ports[i % len(ports)]
        status, cookie = post_login(port, args.user, args.password)
        if status != 303 or not cookie:
            sys.exit("failover.py: login on :%d gave %d (cookie: %s)" % (port, status, bool(cookie)))
        entry = {"cookie": cookie, "key": record_key(args.prefix, cookie), "via": i % len(ports)}
        if i < args.sessions:
            live.append(entry)
            continue
        out = ports[(i + 1) % len(ports)]
        status, _ = Conn(out).request("POST", "/_doorman/logout", {
            "Cookie": cookie, "Origin": "http://127.0.0.1:%d" % out, "Content-Length": "0",
            "Connection": "close"})
        if status != 303:
            sys.exit("failover.py: logout on :%d gave %d" % (out, status))
        dead.append(entry)
    with open(args.out, "w") as f:
        json.dump({"live": live, "dead": dead, "cookie_name": live[0]["cookie"].split("=")[0]}, f)
    print("failover.py: %d sessions logged in, %d logged out, over %d doormen"
          % (len(live), len(dead), len(ports)), file=sys.stderr)


# ---------------------------------------------------------------- watch
class Watch:
    def __init__(self, args):
        self.args = args
        self.ports = [int(p) for p in args.ports.split(",")]
        self.admin = [int(p) for p in args.admin_ports.split(",")]
        with open(args.sessions) as f:
            s = json.load(f)
        self.live, self.dead, self.name = s["live"], s["dead"], s["cookie_name"]
        with open(args.victim_keys) as f:
            victim = {line.strip() for line in f if line.strip()}
        on_victim = [e for e in self.live if e["key"] in victim]
        if not on_victim:
            sys.exit("failover.py: no session from login has its record on the master to kill")
        # Each doorman's probe: a session on the victim, made through another doorman if any.
        self.probes = []
        for i in range(len(self.ports)):
            other = [e for e in on_victim if e["via"] != i] or on_victim
            self.probes.append(other[i % len(other)]["cookie"])
        self.on_victim = len(on_victim)
        # A session whose record is on another master (Cluster): is it served meanwhile?
        self.elsewhere = [e["cookie"] for e in self.live if e["key"] not in victim]
        self.lock = threading.Lock()
        self.timeline = []  # (t, doorman, kind, status, deleted, ms)
        self.counts = collections.Counter()
        self.wrong = []
        self.kill = None
        self.stop = threading.Event()

    def killed_at(self):
        if self.kill is None and os.path.exists(self.args.marker):
            try:
                self.kill = float(open(self.args.marker).read().split()[0])
            except (ValueError, IndexError):
                pass
        return self.kill

    def bad(self, i, kind, detail):
        with self.lock:
            self.counts["wrong"] += 1
            if len(self.wrong) < 50:
                self.wrong.append({"t": round(time.time(), 3), "doorman": i, "kind": kind,
                                   "detail": str(detail)[:300]})
        print("WRONG doorman %d %s: %s" % (i, kind, detail), file=sys.stderr, flush=True)

    def ask(self, i, conn, kind, path, cookie):
        """One request, judged and put on the timeline; the status (0: no answer)."""
        headers = {"Cookie": cookie} if cookie else {}
        t0 = time.time()
        try:
            status, head = conn.request("GET", path, headers)
        except (OSError, http.client.HTTPException) as e:
            self.bad(i, kind, "no answer: %r" % e)
            status, head = 0, []
        t1 = time.time()
        deleted = status == 503 and deletes_cookie(head, self.name)
        seen = next((v for k, v in head if k.lower() == "x-seen-auth-user"), "")
        with self.lock:
            self.timeline.append((t1, i, kind, status, int(deleted), round((t1 - t0) * 1000, 1)))
            self.counts["%s %d" % (kind, status)] += 1
        if status == 0:
            return 0
        if deleted:
            self.bad(i, kind, "a 503 deleted doorman's cookie")
        if kind == "public":
            if status != 200:
                self.bad(i, kind, "status %d on a public route" % status)
        elif status not in (200, 401, 503):
            self.bad(i, kind, "status %d" % status)
        elif status == 200 and (not kind.startswith("live") or seen != self.args.user):
            self.bad(i, kind, "200 on /dashboard, the upstream saw user %r" % seen)
        return status

    def readyz(self, i, conn):
        t0 = time.time()
        try:
            status, _ = conn.request("GET", "/readyz")
        except (OSError, http.client.HTTPException):
            status = 0
        t1 = time.time()
        with self.lock:
            self.timeline.append((t1, i, "readyz", status, 0, round((t1 - t0) * 1000, 1)))

    def poll(self, i):
        port = self.ports[i]
        conn, admin = Conn(port), Conn(self.admin[i])
        others = [("dead", "/dashboard", lambda n: self.dead[n % len(self.dead)]["cookie"]),
                  ("made-up", "/dashboard", lambda n: "%s=%s" % (self.name, made_up())),
                  ("none", "/dashboard", lambda n: None),
                  ("public", "/public", lambda n: self.probes[i])]
        if self.elsewhere:
            others.append(("live elsewhere", "/dashboard", lambda n: self.elsewhere[n % len(self.elsewhere)]))
        n, next_ready = 0, 0.0
        while not self.stop.is_set():
            start = time.time()
            self.ask(i, conn, "live", "/dashboard", self.probes[i])
            kind, path, cookie = others[n % len(others)]
            self.ask(i, conn, kind, path, cookie(n // len(others)))
            n += 1
            if start >= next_ready:
                self.readyz(i, admin)
                next_ready = start + READYZ_EVERY
            time.sleep(max(0.0, POLL - (time.time() - start)))

    def recovery(self, i, kill):
        """Seconds from the kill to the first probe answer of the final run of answers that
        are not 503 (a 200, or a 401 if the probe session was lost), or None while 503s go on;
        and whether that run is 200s."""
        answers = [(t, s) for (t, d, k, s, _, _) in self.timeline if d == i and k == "live" and t >= kill]
        last_bad = max((t for t, s in answers if s not in (200, 401)), default=None)
        after = [(t, s) for t, s in answers if last_bad is None or t > last_bad]
        if not after:
            return None, False
        return after[0][0] - kill, after[-1][1] == 200

    def window(self, kill, kind):
        """First and last 503 after the kill for requests of `kind`, and how many."""
        fails = [e[0] for e in self.timeline if e[0] >= kill and e[2] == kind and e[3] == 503]
        return {"first_s": round(fails[0] - kill, 3) if fails else None,
                "last_s": round(fails[-1] - kill, 3) if fails else None, "count": len(fails)}

    def run(self):
        threads = [threading.Thread(target=self.poll, args=(i,), daemon=True) for i in range(len(self.ports))]
        for t in threads:
            t.start()
        started = time.time()
        while True:
            time.sleep(0.05)
            kill = self.killed_at()
            now = time.time()
            if kill is None:
                if now > started + 2 * self.args.deadline:
                    sys.exit("failover.py: no kill marker at %s" % self.args.marker)
                continue
            with self.lock:
                rec = [self.recovery(i, kill) for i in range(len(self.ports))]
            done = all(r is not None and now - kill - r >= self.args.settle for r, _ in rec)
            if (done and now - kill >= self.args.min_after) or now - kill >= self.args.deadline:
                break
        self.stop.set()
        for t in threads:
            t.join(TIMEOUT + 1)
        return self.verdict(kill)

    def verdict(self, kill):
        recovered = [self.recovery(i, kill) for i in range(len(self.ports))]
        ok = [r is not None and now_ok for r, now_ok in recovered]
        after = [e for e in self.timeline if e[0] >= kill and e[2] != "readyz"]
        fails = [e[0] for e in after if e[3] == 503]
        ready_fails = [e[0] for e in self.timeline if e[0] >= kill and e[2] == "readyz" and e[3] != 200]
        # Every session from login, once more: kept (200) or lost (401).
        kept, lost, back = 0, 0, 0
        conns = [Conn(p) for p in self.ports]
        for n, e in enumerate(self.live + self.dead):
            i = n % len(self.ports)
            for _ in range(5):
                try:
                    status, head = conns[i].request("GET", "/dashboard", {"Cookie": e["cookie"]})
                except (OSError, http.client.HTTPException) as err:
                    status, head = 0, repr(err)
                if status in (200, 401):
                    break
                time.sleep(0.2)
            is_live = n < len(self.live)
            if is_live and status == 200:
                kept += 1
            elif is_live and status == 401:
                lost += 1
            elif not is_live and status == 200:
                back += 1
                self.bad(i, "dead", "a logged-out session is served again after the failover")
            elif status != 401:
                self.bad(i, "after", "status %d after the recovery" % status)
        by_doorman = []
        for i in range(len(self.ports)):
            mine = [e[0] for e in after if e[1] == i and e[3] == 503]
            by_doorman.append({
                "recovery_s": None if recovered[i][0] is None else round(recovered[i][0], 3),
                "probe_served": recovered[i][1],
                "first_503_s": round(mine[0] - kill, 3) if mine else None,
                "last_503_s": round(mine[-1] - kill, 3) if mine else None,
                "n503": len(mine),
            })
        with open(self.args.timeline, "w") as f:
            f.write("t_s\tdoorman\tkind\tstatus\tdeleted_cookie\tms\n")
            for t, d, k, s, dl, ms in sorted(self.timeline):
                f.write("%.3f\t%d\t%s\t%d\t%d\t%.1f\n" % (t - kill, d, k, s, dl, ms))
        verdict = {
            "kill": kill,
            "doormen": by_doorman,
            "recovered": all(ok),
            "recovery_max_s": max((r["recovery_s"] for r in by_doorman if r["recovery_s"] is not None), default=None),
            "window_503": {"first_s": round(fails[0] - kill, 3) if fails else None,
                           "last_s": round(fails[-1] - kill, 3) if fails else None,
                           "count": len(fails)},
            "window_503_elsewhere": self.window(kill, "live elsewhere") if self.elsewhere else None,
            "readyz_not_ready": {"first_s": round(ready_fails[0] - kill, 3) if ready_fails else None,
                                 "last_s": round(ready_fails[-1] - kill, 3) if ready_fails else None,
                                 "count": len(ready_fails)},
            "before_kill_503": sum(1 for e in self.timeline if e[0] < kill and e[2] != "readyz" and e[3] == 503),
            "sessions": {"n": len(self.live), "kept": kept, "lost": lost, "on_victim": self.on_victim,
                         "dead": len(self.dead), "dead_back": back},
            "requests": len([e for e in self.timeline if e[2] != "readyz"]),
            "counts": dict(sorted(self.counts.items())),
            "wrong": self.counts["wrong"],
            "wrong_list": self.wrong,
        }
        with open(self.args.out, "w") as f:
            json.dump(verdict, f, indent=1)
        return verdict


def watch(args):
    v = Watch(args).run()
    print("failover.py: %d requests, %d wrong; 503s %s; recovery %s; sessions kept %d, lost %d of %d"
          % (v["requests"], v["wrong"], v["window_503"], [d["recovery_s"] for d in v["doormen"]],
             v["sessions"]["kept"], v["sessions"]["lost"], v["sessions"]["n"]), file=sys.stderr)
    sys.exit(0 if v["wrong"] == 0 and v["recovered"] else 1)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("login")
    a.add_argument("--ports", required=True)
    a.add_argument("--user", required=True)
    a.add_argument("--password", required=True)
    a.add_argument("--sessions", type=int, required=True)
    a.add_argument("--dead", type=int, default=4, choices=range(1, 1000), metavar="K")
    a.add_argument("--prefix", required=True)
    a.add_argument("--out", required=True)
    w = sub.add_parser("watch")
    w.add_argument("--ports", required=True)
    w.add_argument("--admin-ports", required=True)
    w.add_argument("--user", required=True)
    w.add_argument("--sessions", required=True)
    w.add_argument("--victim-keys", required=True)
    w.add_argument("--marker", required=True)
    w.add_argument("--min-after", type=float, default=0.0)
    w.add_argument("--settle", type=float, default=2.0)
    w.add_argument("--deadline", type=float, default=60.0)
    w.add_argument("--timeline", required=True)
    w.add_argument("--out", required=True)
    args = p.parse_args()
    login(args) if args.cmd == "login" else watch(args)


if __name__ == "__main__":
    main()
