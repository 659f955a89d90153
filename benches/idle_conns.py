#!/usr/bin/env python3
"""Open N keep-alive connections to a loopback server, make one request on each, hold them idle.

  python3 benches/idle_conns.py --port PORT --count N [--path /public] [--parallel 200] [--tls]

benches/scale.sh runs it to read doorman's memory with N idle client connections. Each
connection sends one `GET PATH` (HTTP/1.1, keep-alive) and reads the whole response; at most
--parallel connections are connecting or waiting for their response at once, so the upstream
behind the proxy sees a bounded load and the proxy's upstream pool stays small. With --tls each
connection is TLS (1.2 or 1.3, full handshake, ALPN http/1.1, the certificate not checked: it is
the run's own). Then, on stdout:

  READY <ok> <failed> <seconds>     every connection has had its answer (ok: 200, kept alive)
  (it holds the connections idle until a line arrives on stdin, or stdin closes)
  CLOSED <still_open>               connections the server had not closed, then all closed

It raises its own open-file limit to the hard limit and fails early if that cannot fit N.
"""
import argparse
import asyncio
import resource
import ssl
import sys
import time


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--path", default="/public")
    ap.add_argument("--parallel", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--tls", action="store_true")
    return ap.parse_args()


def raise_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        sys.exit("idle_conns.py: open-file hard limit %d < %d needed (raise `ulimit -Hn`)" % (hard, need))
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def tls_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def one(port, request, gate, timeout, tls=None):
    """Connect, send one request, read the whole response; the open connection, or None."""
    async with gate:
        writer = None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, ssl=tls,
                                        server_hostname="localhost" if tls else None), timeout)
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            lines = head.decode("latin-1").split("\r\n")
            status = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else ""
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip().lower()
            length = int(headers.get("content-length", "0"))
            if length:
                await asyncio.wait_for(reader.readexactly(length), timeout)
            if status != "200" or headers.get("connection") == "close":
                writer.close()
                return None
            return reader, writer
        except (OSError, ssl.SSLError, asyncio.TimeoutError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError, ValueError):
            if writer is not None:
                writer.close()
            return None


async def main():
    a = parse_args()
    raise_fd_limit(a.count + 64)
    request = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: doorman-bench-idle\r\n\r\n"
               % (a.path, a.port)).encode()
    gate = asyncio.Semaphore(a.parallel)
    t0 = time.monotonic()
    tls = tls_context() if a.tls else None
    results = await asyncio.gather(*(one(a.port, request, gate, a.timeout, tls) for _ in range(a.count)))
    held = [r for r in results if r is not None]
    print("READY %d %d %.1f" % (len(held), a.count - len(held), time.monotonic() - t0), flush=True)

    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)

    # The transports read continuously, so a connection the server closed is at EOF by now.
    still_open = sum(1 for reader, _ in held if not reader.at_eof())
    for _, writer in held:
        writer.close()
    print("CLOSED %d" % still_open, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
