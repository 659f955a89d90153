#!/usr/bin/env python3
"""The soak's upstream app and its traffic, for benches/soak.sh (issue 18, DESIGN.md §14).

  python3 benches/soak.py upstream --port PORT
  python3 benches/soak.py drive --ports A,B --users U1,U2 --password P --duration S \
      --marker FILE --out FILE.json

upstream  a keep-alive HTTP/1.1 app: every request gets 200 with `X-Seen-Auth-User` (the
          identity doorman forwarded, empty when none) and a short body; `/big` answers
          256 KiB; `/ws` with `Upgrade: websocket` answers 101 and echoes every message.

drive     mixed traffic against the doormen on the given ports (all on loopback), for
          `--duration` seconds, with one pool of sessions shared by every task:

  public   GET /public, anonymous or with a live, dead or made-up cookie: 200.
  auth     GET /dashboard with a live session: 200 with that session's user seen by the
           app, or 503 (the store is down); with a logged-out session or a made-up cookie:
           401 or 503; with no cookie: 401. A logged-out session goes to a doorman with the
           cache other than the one that logged it out only after 1 s (DESIGN.md §13: a
           logout is seen by all within 1 s).
  login    POST /_doorman/login: 303 with the session cookie, or 503; logout of a live
           session: 303, after which the session counts as dead (or 503: then it counts as
           neither). The pool is kept at about 150 live sessions.
  ws       a WebSocket on /ws with a live session: 101, five echoed messages, then either a
           clean Close or a logout while it is open (through the same doorman, or through
           the other one when this one has the Redis cache), after which doorman must close
           it (Close 1008 or the connection) within 3 s. A WebSocket whose session lives
           must never be closed by doorman, also not while Redis restarts.
  slow     a request head sent 10 bytes every 50 ms, then a 256 KiB answer read 4 KiB every
           20 ms: 200 with every byte, or 503. A head that never ends must be cut by doorman
           within header_timeout (`--header-timeout`) + 3 s.

Every answer outside those is wrong: a 200 without a live session, anything but 200/503
for a live one, a hang (10 s), a broken connection. A request whose reused keep-alive
connection closes before any answer byte is sent again once on a new connection, as
browsers do. When `--marker` appears (soak.sh writes `<start> <end>` of its Redis restart
there), 200 answers after the restart for sessions made before it count as survivors.

The verdict goes to `--out` as JSON (counts per kind, the wrong answers, the 503 window, the
survivors); the exit status is 1 when anything was wrong or a kind of traffic never ran.
"""
import argparse
import asyncio
import base64
import collections
import hashlib
import json
import os
import random
import sys
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
BIG = 256 * 1024
TIMEOUT = 10.0
POOL_TARGET = 150
# How long a doorman with the Redis cache may still serve a session logged out through another
# doorman: "with cache = true a logout on one is seen by all within 1 s" (DESIGN.md §13).
CACHE_LAG = 1.0


# ---------------------------------------------------------------- the upstream app
def ws_frame(opcode, payload, mask=False):
    head = bytearray([0x80 | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head.append(bit | n)
    elif n < 65536:
        head.append(bit | 126)
        head += n.to_bytes(2, "big")
    else:
        head.append(bit | 127)
        head += n.to_bytes(8, "big")
    if mask:
        key = os.urandom(4)
        head += key
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes(head) + payload


async def read_frame(reader):
    """One frame: (opcode, payload); unmasks a masked one."""
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8), "big")
    key = await reader.readexactly(4) if b1 & 0x80 else None
    payload = await reader.readexactly(n)
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return b0 & 0x0F, payload


def parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    first = lines[0].split(" ")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return first, headers


async def serve(reader, writer):
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            (method, target, _), headers = parse_head(head)
            length = int(headers.get("content-length", "0") or 0)
            if length:
                await reader.readexactly(length)
            user = headers.get("x-auth-user", "")
            if headers.get("upgrade", "").lower() == "websocket":
                accept = base64.b64encode(hashlib.sha1(headers["sec-websocket-key"].encode() + GUID).digest())
                writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
                while True:
                    opcode, payload = await read_frame(reader)
                    if opcode == 8:
                        writer.write(ws_frame(8, payload[:2]))
                        await writer.drain()
                        return
                    writer.write(ws_frame(opcode, payload))
                    await writer.drain()
            body = b"x" * BIG if target.startswith("/big") else b"ok " + user.encode() + b"\n"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Seen-Auth-User: "
                         + user.encode() + b"\r\nContent-Length: " + str(len(body)).encode()
                         + b"\r\n\r\n" + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, KeyError, ValueError):
        pass
    finally:
        writer.close()


async def upstream(port):
    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


# ---------------------------------------------------------------- the client side
class Broken(Exception):
    """The connection ended before a whole answer arrived."""


async def read_answer(reader, method="GET"):
    """(status, headers, body) of one HTTP/1.1 answer."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        raise Broken("closed before an answer" if not e.partial else "closed in the head") from None
    (_, status, *_), headers = parse_head(head)
    status = int(status)
    if status == 101 or method == "HEAD" or status in (204, 304):
        return status, headers, b""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return status, headers, bytes(body)
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    if "content-length" in headers:
        return status, headers, await reader.readexactly(int(headers["content-length"]))
    return status, headers, await reader.read()


class Client:
    """One keep-alive connection to one doorman, reopened when it closes."""

    def __init__(self, port):
        self.port = port
        self.reader = self.writer = None

    def close(self):
        if self.writer:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, method, path, headers=(), body=b""):
        for attempt in (0, 1):
            fresh = self.writer is None
            if fresh:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1:%d" % self.port]
            lines += ["%s: %s" % h for h in headers]
            if body:
                lines.append("Content-Length: %d" % len(body))
            self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            try:
                status, head, data = await read_answer(self.reader, method)
            except (Broken, ConnectionError) as e:
                self.close()
                # A reused connection the server closed as we sent: once more, as browsers do.
                if not fresh and attempt == 0 and str(e) == "closed before an answer":
                    continue
                raise
            if head.get("connection", "").lower() == "close":
                self.close()
            return status, head, data
        raise Broken("unreachable")


def session_cookie(headers_list):
    """`name=value` of the session cookie a login set, or None."""
    for value in headers_list:
        pair = value.split(";")[0].strip()
        name, _, v = pair.partition("=")
        if v and "max-age=0" not in value.lower():
            return pair
    return None


async def read_all_headers(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    cookies = [l.split(":", 1)[1].strip() for l in lines[1:] if l.lower().startswith("set-cookie:")]
    return status, lines, cookies


class Session:
    def __init__(self, cookie, user, port):
        self.cookie, self.user, self.port, self.made = cookie, user, port, time.time()


class Soak:
    def __init__(self, args):
        self.ports = [int(p) for p in args.ports.split(",")]
        self.cache_ports = {int(p) for p in args.cache_ports.split(",") if p}
        self.users = args.users.split(",")
        self.password = args.password
        self.header_timeout = args.header_timeout
        self.marker = args.marker
        self.restart = None
        self.end = time.time() + args.duration
        self.live = []
        self.in_use = 0
        self.dead = collections.deque(maxlen=1000)
        self.counts = collections.Counter()
        self.wrong = []
        self.first_503 = self.last_503 = None
        self.survivors = set()
        self.ws_ended_ms = 0

    # -- bookkeeping
    def running(self):
        return time.time() < self.end

    def count(self, what):
        self.counts[what] += 1

    def bad(self, what, detail):
        self.counts["wrong"] += 1
        if len(self.wrong) < 50:
            self.wrong.append({"t": round(time.time(), 3), "what": what, "detail": str(detail)[:300]})
        print("WRONG %s: %s" % (what, detail), file=sys.stderr, flush=True)

    def unavailable(self, what):
        now = time.time()
        self.first_503 = self.first_503 or now
        self.last_503 = now
        self.count(what + " 503")

    def restart_window(self):
        if self.restart is None and self.marker and os.path.exists(self.marker):
            try:
                start, end = (float(x) for x in open(self.marker).read().split())
                self.restart = (start, end)
            except ValueError:
                pass
        return self.restart

    def take(self):
        if not self.live:
            return None
        i = random.randrange(len(self.live))
        self.live[i], self.live[-1] = self.live[-1], self.live[i]
        self.in_use += 1
        return self.live.pop()

    def give(self, s):
        self.in_use -= 1
        if s is not None:
            self.live.append(s)

    def origin(self, port):
        return ("Origin", "http://127.0.0.1:%d" % port)

    # -- kinds of traffic
    async def public_task(self):
        clients = {p: Client(p) for p in self.ports}
        while self.running():
            port = random.choice(self.ports)
            roll = random.random()
            headers = []
            if roll < 0.3 and self.live:
                headers = [("Cookie", random.choice(self.live).cookie)]
            elif roll < 0.4 and self.dead:
                headers = [("Cookie", random.choice(self.dead)[0])]
            elif roll < 0.5:
                headers = [("Cookie", "doorman_session=" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="))]
            try:
                status, _, _ = await asyncio.wait_for(clients[port].request("GET", "/public", headers), TIMEOUT)
            except Exception as e:
                clients[port].close()
                self.bad("public", repr(e))
                continue
            self.count("public")
            if status != 200:
                self.bad("public", "status %d" % status)

    async def auth_task(self):
        clients = {p: Client(p) for p in self.ports}
        while self.running():
            port = random.choice(self.ports)
            roll = random.random()
            s = None
            if roll < 0.7:
                s = self.take()
                if s is None:
                    await asyncio.sleep(0.05)
                    continue
                kind, headers = "auth live", [("Cookie", s.cookie)]
            elif roll < 0.8 and self.dead:
                cookie, ended, via = random.choice(self.dead)
                if port in self.cache_ports and port != via and time.time() - ended < CACHE_LAG:
                    # Another doorman's cache may serve it for up to CACHE_LAG (DESIGN.md §13).
                    port = via
                kind, headers = "auth dead", [("Cookie", cookie)]
            elif roll < 0.9:
                kind, headers = "auth made-up", [("Cookie", "doorman_session=" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="))]
            else:
                kind, headers = "auth none", []
            try:
                status, head, _ = await asyncio.wait_for(clients[port].request("GET", "/dashboard", headers), TIMEOUT)
            except Exception as e:
                clients[port].close()
                self.bad(kind, "on :%d: %r" % (port, e))
                self.give(s)
                continue
            self.count(kind)
            if kind == "auth live":
                if status == 200:
                    seen = head.get("x-seen-auth-user")
                    if seen != s.user:
                        self.bad(kind, "the app saw %r for %s's session" % (seen, s.user))
                    window = self.restart_window()
                    if window and s.made < window[0] and time.time() > window[1]:
                        self.survivors.add(s.cookie)
                elif status == 503:
                    self.unavailable(kind)
                else:
                    self.bad(kind, "status %d for a live session" % status)
                self.give(s)
            elif kind == "auth none":
                if status != 401:
                    self.bad(kind, "status %d without a cookie" % status)
            elif status == 503:
                self.unavailable(kind)
            elif status != 401:
                self.bad(kind, "status %d on :%d" % (status, port))

    async def login_task(self):
        while self.running():
            port = random.choice(self.ports)
            if len(self.live) + self.in_use < POOL_TARGET or random.random() < 0.5:
                await self.one_login(port)
            else:
                s = self.take()
                if s is not None:
                    await self.logout(s, port, "logout")
                    self.give(None)
            await asyncio.sleep(0.02)

    async def one_login(self, port):
        user = random.choice(self.users)
        body = ("username=%s&password=%s" % (user, self.password)).encode()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError as e:
            self.bad("login", repr(e))
            return
        try:
            writer.write(("POST /_doorman/login HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nOrigin: http://127.0.0.1:%d\r\n"
                          "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n"
                          "Connection: close\r\n\r\n" % (port, port, len(body))).encode() + body)
            status, _, cookies = await asyncio.wait_for(read_all_headers(reader), TIMEOUT)
        except Exception as e:
            self.bad("login", repr(e))
            return
        finally:
            writer.close()
        self.count("login")
        if status == 303:
            cookie = session_cookie(cookies)
            if cookie is None:
                self.bad("login", "303 without a session cookie")
            else:
                self.live.append(Session(cookie, user, port))
        elif status == 503:
            self.unavailable("login")
        else:
            self.bad("login", "status %d for the right password" % status)

    async def logout(self, s, port, kind):
        """True when doorman said the session ended (303)."""
        client = Client(port)
        try:
            status, _, _ = await asyncio.wait_for(client.request("POST", "/_doorman/logout", [
                ("Cookie", s.cookie), self.origin(port), ("Content-Length", "0")]), TIMEOUT)
        except Exception as e:
            self.bad(kind, repr(e))
            return False
        finally:
            client.close()
        self.count(kind)
        if status == 303:
            self.dead.append((s.cookie, time.time(), port))
            return True
        if status == 503:
            self.unavailable(kind)
        else:
            self.bad(kind, "status %d" % status)
        return False

    async def ws_task(self):
        while self.running():
            s = self.take()
            if s is None:
                await asyncio.sleep(0.05)
                continue
            self.give(s if await self.one_ws(s) else None)
            await asyncio.sleep(0.05)

    async def one_ws(self, s):
        """One WebSocket for session s; False when the session was logged out."""
        port = random.choice(self.ports)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError as e:
            self.bad("ws", repr(e))
            return True
        try:
            key = base64.b64encode(os.urandom(16))
            writer.write(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n"
                         b"Cookie: %s\r\n\r\n" % (port, key, s.cookie.encode()))
            status, head, _ = await asyncio.wait_for(read_answer(reader), TIMEOUT)
            if status == 503:
                self.unavailable("ws")
                return True
            self.count("ws")
            if status != 101:
                self.bad("ws", "status %d for a live session" % status)
                return True
            for i in range(5):
                msg = b"soak %d" % i
                writer.write(ws_frame(1, msg, mask=True))
                opcode, payload = await asyncio.wait_for(read_frame(reader), TIMEOUT)
                if (opcode, payload) != (1, msg):
                    self.bad("ws", "echo %r, got opcode %d %r" % (msg, opcode, payload[:40]))
                    return True
                await asyncio.sleep(0.2)
            if random.random() < 0.3:
                # End the session while its WebSocket is open: doorman must close it.
                via = port
                if port in self.cache_ports:
                    via = random.choice([p for p in self.ports if p != port] or [port])
                if not await self.logout(s, via, "ws logout"):
                    return False
                t0 = time.time()
                try:
                    opcode, payload = await asyncio.wait_for(read_frame(reader), 3.0)
                    if opcode != 8 or payload[:2] != (1008).to_bytes(2, "big"):
                        self.bad("ws ended", "after logout: opcode %d %r" % (opcode, payload[:40]))
                        return False
                except (asyncio.IncompleteReadError, ConnectionError):
                    pass
                except asyncio.TimeoutError:
                    self.bad("ws ended", "still open 3 s after the logout (via :%d, tunnel on :%d)" % (via, port))
                    return False
                self.count("ws ended")
                self.ws_ended_ms = max(self.ws_ended_ms, int((time.time() - t0) * 1000))
                return False
            writer.write(ws_frame(8, (1000).to_bytes(2, "big"), mask=True))
            opcode, payload = await asyncio.wait_for(read_frame(reader), TIMEOUT)
            if opcode != 8:
                self.bad("ws", "closing: opcode %d" % opcode)
            return True
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError) as e:
            self.bad("ws", "a live session's WebSocket broke: %r" % e)
            return True
        finally:
            writer.close()

    async def slow_task(self):
        while self.running():
            s = self.take()
            if s is None:
                await asyncio.sleep(0.05)
                continue
            port = random.choice(self.ports)
            try:
                await self.one_slow(s, port)
            except Exception as e:
                self.bad("slow", repr(e))
            self.give(s)

    async def one_slow(self, s, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            head = ("GET /big HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nCookie: %s\r\nConnection: close\r\n\r\n"
                    % (port, s.cookie)).encode()
            for i in range(0, len(head), 10):
                writer.write(head[i:i + 10])
                await asyncio.sleep(0.05)
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
            (_, status, *_), headers = parse_head(answer)
            if status == "503":
                self.unavailable("slow")
                return
            if status != "200":
                self.bad("slow", "status %s for a live session" % status)
                return
            got = 0
            while True:
                chunk = await asyncio.wait_for(reader.read(4096), TIMEOUT)
                if not chunk:
                    break
                got += len(chunk)
                await asyncio.sleep(0.02)
            self.count("slow")
            if headers.get("x-seen-auth-user") != s.user or got < BIG:
                self.bad("slow", "user %r, %d of %d bytes" % (headers.get("x-seen-auth-user"), got, BIG))
        finally:
            writer.close()

    async def slowloris_task(self):
        while self.running():
            port = random.choice(self.ports)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            t0 = time.time()
            try:
                writer.write(b"GET /public HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                try:
                    await asyncio.wait_for(reader.read(), self.header_timeout + 3)
                    self.count("slowloris cut")
                except asyncio.TimeoutError:
                    self.bad("slowloris", "an unfinished head still open after %.1f s" % (time.time() - t0))
                except ConnectionError:
                    self.count("slowloris cut")
            finally:
                writer.close()

    async def run(self):
        tasks = [self.public_task() for _ in range(2)] + [self.auth_task() for _ in range(3)]
        tasks += [self.login_task(), self.ws_task(), self.ws_task(), self.slow_task()]
        tasks += [self.slowloris_task() for _ in range(2)]
        # Sessions first, so the other tasks have some to use.
        for _ in range(20):
            await self.one_login(random.choice(self.ports))
        await asyncio.gather(*tasks)


def drive(args):
    soak = Soak(args)
    t0 = time.time()
    asyncio.run(soak.run())
    needed = ["public", "auth live", "auth dead", "auth none", "login", "logout", "ws",
              "ws ended", "slow", "slowloris cut"]
    missing = [k for k in needed if soak.counts[k] == 0]
    verdict = {
        "seconds": round(time.time() - t0, 1),
        "counts": dict(sorted(soak.counts.items())),
        "wrong": soak.wrong,
        "missing": missing,
        "window_503": [soak.first_503, soak.last_503],
        "restart": soak.restart,
        "survivors": len(soak.survivors),
        "ws_ended_max_ms": soak.ws_ended_ms,
        "live_at_end": len(soak.live),
    }
    with open(args.out, "w") as f:
        json.dump(verdict, f, indent=1)
    ok = soak.counts["wrong"] == 0 and not missing and (not args.marker or soak.survivors)
    sys.exit(0 if ok else 1)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("upstream")
    u.add_argument("--port", type=int, required=True)
    d = sub.add_parser("drive")
    d.add_argument("--ports", required=True)
    d.add_argument("--cache-ports", default="")
    d.add_argument("--users", required=True)
    d.add_argument("--password", required=True)
    d.add_argument("--duration", type=float, required=True)
    d.add_argument("--header-timeout", type=float, default=3.0)
    d.add_argument("--marker")
    d.add_argument("--out", required=True)
    args = p.parse_args()
    if args.cmd == "upstream":
        asyncio.run(upstream(args.port))
    else:
        drive(args)


if __name__ == "__main__":
    main()
