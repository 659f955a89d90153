#!/usr/bin/env bash
# benches/callgrind.sh -- user-space instructions per request of doorman, under callgrind.
#
# Usage (loopback only; about 15 s plus the build):
#   benches/callgrind.sh
#   env: N=2000 (measured requests per path), CONNS=8 (keep-alive connections),
#        WARMUP=1000 (requests before the counters are zeroed), DOORMAN=PATH (measure this
#        binary, e.g. another commit's release build, instead of building this checkout),
#        OUT=DIR (where the logs go; default benches/results/<stamp>), KEEP=1 (keep each
#        callgrind dump there too, for callgrind_annotate), CACHE=1 (callgrind's cache model
#        too, `--cache-sim=yes`: each path's first-level instruction and data cache misses
#        per request are printed beside its instructions, and its last-level misses; slower,
#        and the instruction counts are the same), CACHE_LL=SIZE,ASSOC,LINE (with CACHE=1: the
#        last level the model has, valgrind's `--LL`, instead of the machine's last level:
#        e.g. 1048576,8,64 for one core's own 1 MiB 8-way L2 where the shared L3 is far
#        larger, to see what many connections' state costs beyond the first level; without
#        it valgrind models the machine's L3 as it reads it, which may be far off: 256 MiB
#        direct-mapped on a 2026-12-07 AMD EPYC host with a 32 MiB L3)
#
# What it measures: the release build (as benches/run.sh builds it), then, for each path, a
# fresh doorman (DOORMAN_WORKERS=1, RUST_LOG=warn, embedded session store, the config
# benches/lib.sh writes for run.sh) run under `valgrind --tool=callgrind`, in front of the
# harness's nginx upstream (1 worker, fixed 200 "ok\n", the user it saw in the body). A
# python3 load generator opens CONNS keep-alive connections, sends WARMUP requests over them,
# zeroes the counters (`callgrind_control -z`), sends exactly N requests (N/CONNS per
# connection, one at a time per connection, all CONNS connections at once), checks that every
# response is a 200, then dumps (`callgrind_control -d`). Reported figure: the dump's total
# Ir (all threads, user space only) / N. A path whose doorman warned that a request's boxed
# future is over glibc's per-thread cache (src/server/mod.rs) says so in the log.
#   public:         GET /public (route with access = "public"), no cookie
#   authenticated:  GET /dashboard (access = "authenticated") with a session cookie from
#                   POST /_doorman/login; every response body must be the upstream's
#                   "ok <user>\n" (it saw X-Auth-User), and the request without the cookie 401.
#   assertion:      as authenticated, with [identity] assertion on (a key from `doorman keys
#                   generate`, ttl 60 s): every response body must be the upstream's
#                   "jw <user>\n" (it saw a compact JWS; "ok" otherwise: the same length,
#                   so the response costs doorman the same as on the authenticated path, and
#                   the difference between the two rows is the assertion's own work). The
#                   measured requests take well under half the ttl, so this is the cost of the
#                   cached token; signing itself happens once per session and half-ttl.
#                   Skipped with ASSERTION=0, or when DOORMAN has no `keys generate` (a build
#                   from before the assertion).
#   redis:          as authenticated, with the sessions in a redis-server the script starts
#                   (store = "redis", no cache: run.sh's row e), so every request is one HMGET
#                   round trip (the touch script runs at most once per idle / 10 per session). redis-server's own instructions are not counted (it is another
#                   process). Skipped with REDIS=0, or without redis-server.
#   forward-auth:   GET /_doorman/auth as nginx's auth_request sends it (X-Original-Method,
#                   X-Original-URL naming /dashboard on an allowed host) with the session
#                   cookie, doorman with [forward_auth] (127.0.0.1 trusted): every answer must
#                   be a 200 naming the user in X-Auth-User, and the same check without the
#                   cookie 401. Skipped with FORWARD_AUTH=0, or when DOORMAN has no forward-auth
#                   (a build from before it refuses the config). Its store is FA_STORE:
#                   embedded (the default, as in the figures of docs/BENCHMARKS.md), redis or
#                   redis-cache (run.sh's --fa-store: row h runs with redis).
#   nginx:          the same loads through nginx instead of doorman, for a figure that does not
#                   depend on the CPU (issue 20): row b's proxy (conf/nginx-proxy.conf.tmpl,
#                   proxy_pass with a keepalive upstream pool) in one process (`master_process
#                   off`, the counterpart of DOORMAN_WORKERS=1) under callgrind, in front of the
#                   same upstream. nginx-public sends the public path's request, nginx-cookie
#                   the authenticated path's (GET /dashboard with the same Cookie header; nginx
#                   does no auth, so this is what proxying those bytes costs it). Skipped with
#                   NGINX=0.
#   nginx-same-work: as nginx, with conf/nginx-proxy-same-work.conf.tmpl: nginx made to do the
#                   header work doorman does on these loads (X-Forwarded-For, -Proto and -Host
#                   set, the session's Cookie header kept from the upstream, X-Auth-User set
#                   when the request has a cookie: the session lookup replaced by a
#                   constant), so the upstream's answers are the same bytes as doorman's (the
#                   user in the body included) and a row's ratio over it is doorman's
#                   overhead for (nearly) the same work: doorman also sends an empty
#                   X-Auth-Groups, which nginx cannot (it leaves out empty values). Reported beside nginx's, not
#                   instead: issue 20's target is over row b's nginx. Prints
#                   `nginx-same-public` and `nginx-same-cookie`; skipped with SAME_WORK=0 (or
#                   NGINX=0).
#   floor:          the public path's load through `hyper-floor` (benches/hyper_floor.rs, one
#                   worker): hyper's HTTP/1.1 server and client with nothing of doorman between
#                   them, the floor of doorman's stack on this load. Built as doorman is
#                   (lib.sh's release_example) unless FLOOR=PATH names a binary; skipped
#                   with FLOOR=0.
# Prints `public: <Ir/req>`, `authenticated: <Ir/req>`, `redis: <Ir/req>`, `assertion: <Ir/req>`,
# `forward-auth: <Ir/req>`, `nginx-public: <Ir/req>`, `nginx-cookie: <Ir/req>` and
# `floor: <Ir/req>` on stdout, then doorman's and the floor's figures over nginx's (details on stderr). It only drives the binary through its CLI and proxy.toml, so DOORMAN
# may be an older build.
# Processes, ports, the upstream and the config are benches/lib.sh's, as for run.sh.
set -uo pipefail

SCRIPT=callgrind.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=${N:-2000}; CONNS=${CONNS:-8}; WARMUP=${WARMUP:-1000}; DOORMAN=${DOORMAN:-}; OUT=${OUT:-}
COOKIE=""
ASSERTION=${ASSERTION:-1}; FORWARD_AUTH=${FORWARD_AUTH:-1}; NGINX=${NGINX:-1}; FLOOR=${FLOOR:-}
REDIS=${REDIS:-1}; REDIS_UP=0; FA_STORE=${FA_STORE:-embedded}; CACHE=${CACHE:-0}
SAME_WORK=${SAME_WORK:-1}
# --trace-children: doorman starts itself again to raise glibc's per-thread cache (src/main.rs,
# tune_allocator); what is measured is the process that serves.
VALGRIND=(valgrind --tool=callgrind --trace-children=yes)
[ "$CACHE" = 1 ] && VALGRIND+=(--cache-sim=yes)
[ "$CACHE" = 1 ] && [ -n "${CACHE_LL:-}" ] && VALGRIND+=(--LL="$CACHE_LL")
MISSES=()
command -v redis-server >/dev/null || REDIS=0
PIN=0; NICE=0

for t in valgrind callgrind_control nginx curl python3; do
  command -v "$t" >/dev/null || die "missing tool: $t"
done
[ $((N % CONNS)) = 0 ] || die "N ($N) must be a multiple of CONNS ($CONNS)"

build_doorman
init_run
[ -n "$FLOOR" ] || FLOOR=$(release_example hyper-floor)
[ "$FLOOR" = 0 ] || [ -x "$FLOOR" ] || die "no hyper-floor binary at $FLOOR"
read -r UPSTREAM_PORT PUBLIC_PORT AUTH_PORT ASSERT_PORT FA_PORT NG_PUBLIC_PORT NG_COOKIE_PORT FLOOR_PORT \
  REDIS_DOORMAN_PORT NG_SAME_PUBLIC_PORT NG_SAME_COOKIE_PORT REDIS_PORT <<< "$(free_ports 12)"
[ -n "$REDIS_PORT" ] || die "could not pick free loopback ports"
nginx_up upstream nginx-upstream.conf.tmpl "$UPSTREAM_PORT" 1
make_users

# ---------------------------------------------------------------- load generator
cat > "$RUN/load.py" <<'PY'
# load.py PORT PATH COOKIE CONNS N WARMUP PID WANT_USER WANT_ASSERTION [USER_HEADER [HEADER...]]:
# see callgrind.sh's header. USER_HEADER "-" (the default): the answer is the upstream's, whose
# body must be "ok" (or "jw" with WANT_ASSERTION), then " WANT_USER" when WANT_USER is set, then
# a newline (conf/nginx-upstream.conf.tmpl). Otherwise the answer is the proxy's own (forward-auth),
# USER_HEADER must name WANT_USER and the body is not read for it. Each HEADER ("Name: value") is
# sent on every request.
import socket, subprocess, sys, threading, time

port, path, cookie = int(sys.argv[1]), sys.argv[2], sys.argv[3]
conns, n, warmup, pid, want_user = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7], sys.argv[8]
want_assertion = sys.argv[9] == "1"
user_header = sys.argv[10] if len(sys.argv) > 10 else "-"
want_body = ((b"jw" if want_assertion else b"ok")
             + (b" " + want_user.encode() if want_user else b"") + b"\n")
extra = "".join(f"{h}\r\n" for h in sys.argv[11:])
req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: doorman-callgrind\r\n"
       "Accept: */*\r\n" + extra + (f"Cookie: {cookie}\r\n" if cookie else "") + "\r\n").encode()

class Conn:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
    def fill(self):
        d = self.s.recv(65536)
        if not d: raise EOFError("connection closed by doorman")
        self.buf += d
    def until(self, sep):
        while sep not in self.buf: self.fill()
        i = self.buf.index(sep); out = self.buf[:i]; self.buf = self.buf[i + len(sep):]; return out
    def take(self, k):
        while len(self.buf) < k: self.fill()
        out = self.buf[:k]; self.buf = self.buf[k:]; return out
    def get(self):  # one request, one response; returns an error string or None
        self.s.sendall(req)
        head = self.until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = head[0].split(" ")[1]
        h = {}
        for line in head[1:]:
            k, _, v = line.partition(":"); h[k.strip().lower()] = v.strip()
        body = b""
        if h.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(self.until(b"\r\n").split(b";")[0], 16)
                body += self.take(size + 2)[:size]
                if size == 0: break
        else:
            body = self.take(int(h.get("content-length", "0")))
        if status != "200": return f"status {status}"
        if h.get("connection", "").lower() == "close": return "connection: close"
        if user_header != "-":
            # The forward-auth path's answers are doorman's own, with no body.
            if want_user and h.get(user_header) != want_user:
                return f"{user_header} was {h.get(user_header)!r}, want {want_user!r}"
        elif body != want_body:
            return f"the upstream answered {body!r}, want {want_body!r}"
        return None

def phase(cs, per_conn):
    errs, ok = [], [0] * len(cs)
    start = threading.Barrier(len(cs))
    def run(i):
        try:
            start.wait()
            for _ in range(per_conn):
                e = cs[i].get()
                if e: errs.append(e); return
                ok[i] += 1
        except Exception as e:
            errs.append(repr(e))
    ts = [threading.Thread(target=run, args=(i,)) for i in range(len(cs))]
    for t in ts: t.start()
    for t in ts: t.join()
    return sum(ok), errs

def control(flag):
    r = subprocess.run(["callgrind_control", flag, pid], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        sys.exit(f"callgrind_control {flag} {pid} failed: {r.stdout}{r.stderr}")

cs = [Conn() for _ in range(conns)]
ok, errs = phase(cs, -(-warmup // conns))
if errs: sys.exit(f"warm-up failed after {ok} good responses: {errs[0]}")
control("-z")
t0 = time.time()
ok, errs = phase(cs, n // conns)
el = time.time() - t0
control("-d")
for c in cs: c.s.close()
print(f"measured {ok} x 200 of {n} in {el:.1f} s under callgrind", file=sys.stderr)
if errs or ok != n: sys.exit(f"{len(errs)} failures, first: {errs[0] if errs else '?'}")
PY

# ---------------------------------------------------------------- one measurement
# measure NAME PORT PATH AUTH(0|1) [ASSERT(0|1) [FA(0|1) [STORE(embedded|redis)]]]: a fresh
# doorman under callgrind; sets RESULT (Ir/request)
measure() {
  local name=$1 port=$2 path=$3 auth=$4 assert=${5:-0} fa=${6:-0} store=${7:-embedded}
  local cookie="" code out pid
  local -a sent=() user_header=()
  doorman_config "$name" "$port" "$(session_toml "$store" "$REDIS_PORT")"
  if [ "$fa" = 1 ]; then
    printf '\n[forward_auth]\ntrusted_gateways = ["127.0.0.1/32"]\nallowed_hosts = ["bench.test"]\n' \
      >> "$RUN/$name/proxy.toml"
    sent=("X-Original-Method: GET" "X-Original-URL: http://bench.test/dashboard")
    user_header=(x-auth-user)
  fi
  if [ "$assert" = 1 ]; then
    "$DOORMAN" keys generate --out "$RUN/$name/assertion.pem" >&2 || die "$name: keys generate failed"
    printf '\n[identity]\nassertion = { key = "assertion.pem", issuer = "https://bench.test", audience = "bench", ttl = "60s" }\n' \
      >> "$RUN/$name/proxy.toml"
  fi
  out="$RUN/$name/callgrind.out"
  log "$name: starting doorman under callgrind on :$port"
  start_bg "$name" env DOORMAN_WORKERS=1 RUST_LOG=warn \
    "${VALGRIND[@]}" --callgrind-out-file="$out" "$DOORMAN" --config "$RUN/$name/proxy.toml"
  pid=$(pid_of "$name")
  wait_port "$port" 120 "$name"
  if [ "$auth" = 1 ]; then
    # Argon2id under callgrind takes seconds, hence the long login timeout.
    cookie=$(doorman_login "$port" 300)
    [ -n "$cookie" ] || die "$name: login set no cookie"
    local -a curl_headers=()
    for h in "${sent[@]}"; do curl_headers+=(-H "$h"); done
    code=$(curl -s -m 60 -o /dev/null -w '%{http_code}' "${curl_headers[@]}" "http://127.0.0.1:$port$path")
    [ "$code" = 401 ] || die "$name: GET $path without the cookie gave $code, want 401"
  fi
  python3 "$RUN/load.py" "$port" "$path" "$cookie" "$CONNS" "$N" "$WARMUP" "$pid" \
    "$( [ "$auth" = 1 ] && echo "$BENCH_USER")" "$assert" \
    "${user_header[@]:--}" "${sent[@]}" || die "$name: load failed (log: $RUN/$name.log)"
  [ "$auth" = 1 ] && COOKIE=$cookie
  ir_per_request "$name" "$out"
  # A request's boxed future over 1,032 bytes leaves glibc's per-thread cache (about 230
  # instructions more a request): doorman warns once, after its first request.
  if grep -q "a request's boxed future is over" "$RUN/$name.log"; then
    log "$name: WARNING: $(grep -m1 "a request's boxed future is over" "$RUN/$name.log")"
  fi
}

# measure_nginx NAME PORT PATH COOKIE [TEMPLATE [WANT_USER]]: row b's nginx (or TEMPLATE's), one
# process, under callgrind, the same load as measure's; WANT_USER: the user the upstream's
# body must name in every answer; sets RESULT (Ir/request)
measure_nginx() {
  local name=$1 port=$2 path=$3 cookie=$4 tmpl=${5:-nginx-proxy.conf.tmpl} want=${6:-}
  local out="$RUN/$1/callgrind.out" pid
  nginx_render "$name" "$tmpl" "$port" 1 USER="$BENCH_USER"
  log "$name: starting nginx under callgrind on :$port"
  start_bg "$name" "${VALGRIND[@]}" --callgrind-out-file="$out" \
    nginx -p "$RUN/$name/" -c "$RUN/$name/nginx.conf" -g 'daemon off; master_process off;'
  pid=$(pid_of "$name")
  wait_port "$port" 60 "$name"
  python3 "$RUN/load.py" "$port" "$path" "$cookie" "$CONNS" "$N" "$WARMUP" "$pid" "$want" 0 \
    || die "$name: load failed (log: $RUN/$name.log)"
  ir_per_request "$name" "$out"
}

# measure_floor PORT: hyper-floor, one worker, under callgrind, the public path's load; sets
# RESULT (Ir/request)
measure_floor() {
  local name=floor port=$1 out="$RUN/floor/callgrind.out" pid
  mkdir -p "$RUN/floor"
  log "floor: starting hyper-floor under callgrind on :$port"
  start_bg "$name" env "${FLOOR_ENV[@]}" "${VALGRIND[@]}" --callgrind-out-file="$out" \
    "$FLOOR" --listen "$port" --upstream "$UPSTREAM_PORT" --workers 1
  pid=$(pid_of "$name")
  wait_port "$port" 60 "$name"
  python3 "$RUN/load.py" "$port" /public "" "$CONNS" "$N" "$WARMUP" "$pid" "" 0 \
    || die "$name: load failed (log: $RUN/$name.log)"
  ir_per_request "$name" "$out"
}

# ir_per_request NAME OUT: the one dump OUT.* the load generator asked for; sets RESULT to its
# total Ir / N
ir_per_request() {
  local name=$1 out=$2
  local dumps=("$out".*)
  [ ${#dumps[@]} = 1 ] && [ -f "${dumps[0]}" ] || die "$name: expected one dump $out.*, found: ${dumps[*]}"
  local total
  total=$(awk '$1=="totals:"{print $2}' "${dumps[0]}")
  [ -n "$total" ] || total=$(awk '$1=="summary:"{print $2}' "${dumps[0]}")
  [ -n "$total" ] || die "$name: no totals in ${dumps[0]}"
  log "$name: total Ir $total over $N requests"
  # CACHE=1: the cache model's misses, from the same dump (events named on its `events:` line).
  if [ "$CACHE" = 1 ]; then
    MISSES+=("$(awk -v n="$N" -v name="$name" '
      $1 == "events:" { for (i = 2; i <= NF; i++) ev[i] = $i }
      $1 == "totals:" || $1 == "summary:" {
        for (i = 2; i <= NF; i++) v[ev[i]] = $i
        printf "%s: L1i misses %.0f, L1d misses %.0f, last-level misses %.0f per request\n", name,
          v["I1mr"] / n, (v["D1mr"] + v["D1mw"]) / n, (v["ILmr"] + v["DLmr"] + v["DLmw"]) / n
        exit
      }' "${dumps[0]}")")
  fi
  # KEEP=1: keep the dump beside the logs, for callgrind_annotate.
  [ "${KEEP:-0}" = 1 ] && cp "${dumps[0]}" "$OUT/$name.callgrind.out"
  RESULT=$(( (total + N/2) / N ))
}

log "doorman: $DOORMAN ($(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'))"
log "$(valgrind --version), $(nginx -v 2>&1 | sed 's/.*: //'), N=$N CONNS=$CONNS WARMUP=$WARMUP CACHE=$CACHE CACHE_LL=${CACHE_LL:-}"
measure public "$PUBLIC_PORT" /public 0; PUBLIC=$RESULT
measure authenticated "$AUTH_PORT" /dashboard 1; AUTHENTICATED=$RESULT
REDISED=""
if [ "$REDIS" = 1 ]; then
  redis_up redis "$REDIS_PORT"; REDIS_UP=1
  measure redis "$REDIS_DOORMAN_PORT" /dashboard 1 0 0 redis; REDISED=$RESULT
fi
ASSERTED=""
if [ "$ASSERTION" = 1 ] && "$DOORMAN" keys --help >/dev/null 2>&1; then
  measure assertion "$ASSERT_PORT" /dashboard 1 1; ASSERTED=$RESULT
fi
FORWARDED=""
if [ "$FORWARD_AUTH" = 1 ] && printf '[forward_auth]\ntrusted_gateways = ["127.0.0.1"]\nallowed_hosts = ["a.test"]\n' \
    > "$RUN/fa-probe.toml" && "$DOORMAN" check --config "$RUN/fa-probe.toml" >/dev/null 2>&1; then
  case "$FA_STORE" in
    embedded) ;;
    redis|redis-cache) [ "$REDIS_UP" = 1 ] || redis_up redis "$REDIS_PORT";;
    *) die "FA_STORE: embedded, redis or redis-cache, not $FA_STORE";;
  esac
  measure forward-auth "$FA_PORT" /_doorman/auth 1 0 1 "$FA_STORE"; FORWARDED=$RESULT
fi
NG_PUBLIC=""; NG_COOKIE=""; NG_SAME_PUBLIC=""; NG_SAME_COOKIE=""
if [ "$NGINX" = 1 ]; then
  measure_nginx nginx-public "$NG_PUBLIC_PORT" /public ""; NG_PUBLIC=$RESULT
  measure_nginx nginx-cookie "$NG_COOKIE_PORT" /dashboard "$COOKIE"; NG_COOKIE=$RESULT
  if [ "$SAME_WORK" = 1 ]; then
    measure_nginx nginx-same-public "$NG_SAME_PUBLIC_PORT" /public "" nginx-proxy-same-work.conf.tmpl
    NG_SAME_PUBLIC=$RESULT
    measure_nginx nginx-same-cookie "$NG_SAME_COOKIE_PORT" /dashboard "$COOKIE" \
      nginx-proxy-same-work.conf.tmpl "$BENCH_USER"
    NG_SAME_COOKIE=$RESULT
  fi
fi
FLOORED=""
[ "$FLOOR" != 0 ] && { measure_floor "$FLOOR_PORT"; FLOORED=$RESULT; }
echo "public: $PUBLIC"
echo "authenticated: $AUTHENTICATED"
[ -n "$REDISED" ] && echo "redis: $REDISED"
[ -n "$ASSERTED" ] && echo "assertion: $ASSERTED"
[ -n "$FORWARDED" ] && echo "forward-auth: $FORWARDED"
if [ -n "$NG_PUBLIC" ]; then
  echo "nginx-public: $NG_PUBLIC"
  echo "nginx-cookie: $NG_COOKIE"
  # issue 20's target: doorman ≤ 1.2× nginx's instructions per request on the same load
  awk -v p="$PUBLIC" -v np="$NG_PUBLIC" -v a="$AUTHENTICATED" -v na="$NG_COOKIE" 'BEGIN {
    printf "public / nginx-public: %.2fx\nauthenticated / nginx-cookie: %.2fx\n", p / np, a / na }'
fi
if [ -n "$NG_SAME_PUBLIC" ]; then
  echo "nginx-same-public: $NG_SAME_PUBLIC"
  echo "nginx-same-cookie: $NG_SAME_COOKIE"
  awk -v p="$PUBLIC" -v np="$NG_SAME_PUBLIC" -v a="$AUTHENTICATED" -v na="$NG_SAME_COOKIE" 'BEGIN {
    printf "public / nginx-same-public: %.2fx\nauthenticated / nginx-same-cookie: %.2fx\n", p / np, a / na }'
fi
if [ -n "$FLOORED" ]; then
  echo "floor: $FLOORED"
  awk -v p="$PUBLIC" -v f="$FLOORED" -v np="$NG_PUBLIC" 'BEGIN {
    printf "public / floor: %.2fx\n", p / f
    if (np != "") printf "floor / nginx-public: %.2fx\n", f / np }'
fi
[ "$CACHE" = 1 ] && printf '%s\n' "${MISSES[@]}"
[ -n "$ASSERTED" ] && log "assertion on / off: $(awk -v a="$ASSERTED" -v b="$AUTHENTICATED" 'BEGIN{printf "%+.2f %%", (a-b)*100/b}')"
exit 0
