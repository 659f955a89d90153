#!/usr/bin/env python3
"""Hold N idle WebSockets through doorman, end one user's, and time how their sockets close.

  python3 benches/ws_conns.py server --port PORT
  python3 benches/ws_conns.py client --port PORT --count N --cookie NAME=VALUE \
      --victim-cookie NAME=VALUE --victims M [--path /ws] [--parallel 64]

benches/scale.sh runs both for its `websockets` part (DESIGN.md §11):

server  a WebSocket upstream: answers every handshake with 101 and the RFC 6455 accept, then
        reads and drops what arrives until the connection goes (idle sockets send nothing).
client  opens N WebSockets to doorman (`GET PATH` with Upgrade), M of them with the victim's
        session cookie and the rest with the other cookie, at most --parallel handshakes at
        once, and holds them idle. Then, on stdout:

  READY <ok> <failed> <seconds>
  (a line `MARK` on stdin: the caller ends the victim's sessions right after writing it)
  ENDED <victims_closed> <victims> <max_ms> <others_closed> <close_frames>
        victims_closed: victim sockets that got a Close or were closed within 5 s of MARK;
        max_ms: the slowest of them, from MARK; others_closed: other sockets closed by then
        (checked 1 s after the last victim); close_frames: victim sockets whose first bytes
        were a Close frame 1008 "session ended"
  (then it closes everything and exits when stdin closes)

It raises its own open-file limit to the hard limit and fails early if that cannot fit N.
"""
import argparse
import asyncio
import base64
import hashlib
import resource
import sys
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CLOSE = b"\x88\x0f\x03\xf0session ended"
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def raise_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        sys.exit("ws_conns.py: open-file hard limit %d < %d needed (raise `ulimit -Hn`)" % (hard, need))
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def serve_one(reader, writer):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        key = b""
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        await writer.drain()
        while await reader.read(4096):
            pass
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def server(a):
    raise_fd_limit(a.count + 64)
    srv = await asyncio.start_server(serve_one, "127.0.0.1", a.port, backlog=4096)
    async with srv:
        await srv.serve_forever()


class Socket:
    def __init__(self, reader, writer, victim):
        self.reader, self.writer, self.victim = reader, writer, victim
        self.closed_at = None
        self.first = b""

    async def watch(self):
        """Read until the connection ends; note when it ended and its first bytes."""
        try:
            while True:
                data = await self.reader.read(4096)
                if len(self.first) < len(CLOSE):
                    self.first += data[: len(CLOSE) - len(self.first)]
                if not data:
                    break
        except OSError:
            pass
        self.closed_at = time.monotonic()


async def open_one(a, cookie, victim, gate):
    async with gate:
        writer = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", a.port), 30)
            writer.write(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: Upgrade\r\n"
                          "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                          "Sec-WebSocket-Key: %s\r\nCookie: %s\r\n\r\n"
                          % (a.path, a.port, KEY.decode(), cookie)).encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            if not head.startswith(b"HTTP/1.1 101"):
                writer.close()
                return None
            return Socket(reader, writer, victim)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            if writer is not None:
                writer.close()
            return None


async def client(a):
    raise_fd_limit(a.count + 64)
    gate = asyncio.Semaphore(a.parallel)
    t0 = time.monotonic()
    plans = [(a.victim_cookie, True) if i % max(1, a.count // a.victims) == 0 and i // max(1, a.count // a.victims) < a.victims
             else (a.cookie, False) for i in range(a.count)]
    opened = await asyncio.gather(*(open_one(a, c, v, gate) for c, v in plans))
    held = [s for s in opened if s is not None]
    watchers = [asyncio.ensure_future(s.watch()) for s in held]
    print("READY %d %d %.1f" % (len(held), a.count - len(held), time.monotonic() - t0), flush=True)
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    line = await stdin.readline()
    if line.strip() == b"MARK":
        mark = time.monotonic()
        victims = [s for s in held if s.victim]
        deadline = mark + 5
        while time.monotonic() < deadline and any(s.closed_at is None for s in victims):
            await asyncio.sleep(0.01)
        await asyncio.sleep(1)
        closed = [s for s in victims if s.closed_at is not None]
        slowest = max((s.closed_at - mark for s in closed), default=0) * 1000
        others = sum(1 for s in held if not s.victim and s.closed_at is not None)
        frames = sum(1 for s in victims if s.first == CLOSE)
        print("ENDED %d %d %.0f %d %d" % (len(closed), len(victims), slowest, others, frames), flush=True)
        await stdin.readline()
    for s in held:
        s.writer.close()
    for w in watchers:
        w.cancel()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["server", "client"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--cookie", default="")
    ap.add_argument("--victim-cookie", default="")
    ap.add_argument("--victims", type=int, default=100)
    ap.add_argument("--path", default="/ws")
    ap.add_argument("--parallel", type=int, default=64)
    a = ap.parse_args()
    asyncio.run(server(a) if a.mode == "server" else client(a))


if __name__ == "__main__":
    main()
