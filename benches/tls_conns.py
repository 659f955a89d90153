#!/usr/bin/env python3
"""TLS handshake load: a new connection per request, full handshakes or resumed ones.

  python3 benches/tls_conns.py --port PORT --conns C --duration 5s [--path /public]
                               [--resume] [--cookie NAME=VALUE] [--procs P] [--check]

benches/run.sh's handshake rows use it. Each of C loops (spread over P processes, threads
in each: the handshake and the socket calls release the GIL) repeats until the duration is
over: connect to 127.0.0.1:PORT, TLS handshake (TLS 1.2 or 1.3, no certificate check: the
certificate is the run's own), one `GET PATH` with `Connection: close`, read the response to
its end, close. Without --resume every handshake is a full one (no session is ever offered);
with --resume each loop offers the session (TLS 1.3 ticket or 1.2 session) of its previous
connection, so after its first connection every handshake is a resumption when the server
accepts it. Why not wrk or h2load: both resume on reconnect (wrk keeps the session across
SSL_clear, h2load keeps one per client), so neither can measure full handshakes; neither
reports which handshakes resumed.

Latency is per request *including* connect and handshake. Prints one line, as
benches/conf/wrk-report.lua does, plus what the handshakes were:

  WRKRESULT rps=.. p50_ms=.. p90_ms=.. p99_ms=.. max_ms=.. requests=N non2xx=N sockerr=N
            resumed=N full=N

--check: one connection (two with --resume), then print `status resumed` per connection and
exit 0 when every status was 200.
"""
import argparse
import multiprocessing
import os
import socket
import ssl
import sys
import threading
import time

from idle_conns import tls_context  # beside this script: the same client TLS settings


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--duration", default="5s")
    ap.add_argument("--path", default="/public")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--cookie", default="")
    ap.add_argument("--procs", type=int, default=0, help="default: number of CPUs")
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--check", action="store_true")
    return ap.parse_args()


def seconds(d):
    for unit, f in (("ms", 1e-3), ("s", 1.0), ("m", 60.0)):
        if d.endswith(unit) and d[: -len(unit)].replace(".", "", 1).isdigit():
            return float(d[: -len(unit)]) * f
    return float(d)


def one(ctx, port, request, session, timeout):
    """One connection, one request: (status, resumed, session for the next one)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
        try:
            s.sendall(request)
            buf = bytearray()
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            # TLS 1.3 tickets arrive after the handshake: read now, with the response
            return buf[9:12].decode("latin-1"), s.session_reused, s.session
        finally:
            s.close()
    finally:
        raw.close()


def worker(a, nloops, deadline, out):
    ctx = tls_context()
    hdrs = "Cookie: %s\r\n" % a.cookie if a.cookie else ""
    request = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%sConnection: close\r\n\r\n"
               % (a.path, a.port, hdrs)).encode()
    lat, counts, lock = [], [0, 0, 0, 0], threading.Lock()   # non2xx sockerr resumed full

    def loop():
        session, mine, c = None, [], [0, 0, 0, 0]
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                status, resumed, sess = one(ctx, a.port, request, session if a.resume else None, a.timeout)
            except (OSError, ssl.SSLError):
                c[1] += 1
                session = None
                continue
            mine.append(time.monotonic() - t0)
            if status[:1] != "2":
                c[0] += 1
            c[2 if resumed else 3] += 1
            session = sess
        with lock:
            lat.extend(mine)
            for i in range(4):
                counts[i] += c[i]

    threads = [threading.Thread(target=loop) for _ in range(nloops)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((lat, counts))


def main():
    a = parse_args()
    if a.check:
        ctx, ok, session = tls_context(), True, None
        request = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%sConnection: close\r\n\r\n"
                   % (a.path, a.port, "Cookie: %s\r\n" % a.cookie if a.cookie else "")).encode()
        for _ in range(2 if a.resume else 1):
            status, resumed, session = one(ctx, a.port, request, session, a.timeout)
            print(status, "resumed" if resumed else "full")
            ok = ok and status == "200"
        sys.exit(0 if ok else 1)
    procs = max(1, min(a.procs or os.cpu_count() or 1, a.conns))
    share = [a.conns // procs + (1 if i < a.conns % procs else 0) for i in range(procs)]
    t0 = time.monotonic()
    deadline = t0 + seconds(a.duration)
    q = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=worker, args=(a, n, deadline, q)) for n in share]
    for p in ps:
        p.start()
    lat, counts = [], [0, 0, 0, 0]
    for _ in ps:
        l, c = q.get()
        lat.extend(l)
        counts = [x + y for x, y in zip(counts, c)]
    for p in ps:
        p.join()
    el = time.monotonic() - t0
    lat.sort()

    def pct(p):
        return lat[min(len(lat) - 1, int(len(lat) * p / 100.0))] * 1000 if lat else 0.0

    print("WRKRESULT rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f requests=%d non2xx=%d "
          "sockerr=%d resumed=%d full=%d" % (len(lat) / el, pct(50), pct(90), pct(99),
                                             lat[-1] * 1000 if lat else 0.0, len(lat),
                                             counts[0], counts[1], counts[2], counts[3]))


if __name__ == "__main__":
    main()
