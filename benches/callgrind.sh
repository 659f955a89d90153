#!/usr/bin/env bash
# benches/callgrind.sh -- user-space instructions per request of doorman, under callgrind.
#
# Usage (loopback only; about 15 s plus the build):
#   cd <doorman checkout> && benches/callgrind.sh      (or a copy: /tmp/callgrind.sh)
#   It measures the checkout that contains the current directory (ROOT=DIR to name another).
#   env: N=2000 (measured requests per path), CONNS=8 (keep-alive connections),
#        WARMUP=1000 (requests before the counters are zeroed), DOORMAN=PATH (use this
#        binary instead of `cargo build --release` in this checkout), KEEP=1 (keep the temp dir)
#
# What it measures: `cargo build --release` of the current checkout, then, for each path, a
# fresh doorman (DOORMAN_WORKERS=1, RUST_LOG=warn, embedded session store) run under
# `valgrind --tool=callgrind`, in front of an nginx upstream (1 worker, fixed 200 "ok\n", as
# benches/conf/nginx-upstream.conf.tmpl). A python3 load generator opens CONNS keep-alive
# connections, sends WARMUP requests over them, zeroes the counters (`callgrind_control -z`),
# sends exactly N requests (N/CONNS per connection, one at a time per connection, all CONNS
# connections at once), checks that every response is a 200, then dumps (`callgrind_control
# -d`). Reported figure: the dump's total Ir (all threads, user space only) / N.
#   public:         GET /public (route with access = "public"), no cookie
#   authenticated:  GET /dashboard (access = "authenticated") with a session cookie from
#                   POST /_doorman/login (users file made with `doorman hash-password`); every
#                   response must carry the upstream's X-Seen-Auth-User echo of the user.
# Prints `public: <Ir/req>` and `authenticated: <Ir/req>` on stdout (details on stderr).
# It only uses the doorman binary, its CLI (`doorman [--config F]`, `check`, `hash-password`)
# and proxy.toml, so it runs unchanged on other commits. Every process it starts (nginx,
# valgrind/doorman) runs in its own session and is stopped on exit, Ctrl-C or failure.
set -uo pipefail

ROOT=${ROOT:-$(git rev-parse --show-toplevel 2>/dev/null || pwd)}
ROOT=$(cd "$ROOT" && pwd) || exit 1
PATH=$PATH:/usr/sbin:/sbin   # nginx lives in /usr/sbin
N=${N:-2000}; CONNS=${CONNS:-8}; WARMUP=${WARMUP:-1000}; DOORMAN=${DOORMAN:-}; KEEP=${KEEP:-0}
USER_NAME=bench; PASSWORD=bench-password-not-secret

die() { echo "callgrind.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

for t in valgrind callgrind_control nginx curl python3 cargo; do
  command -v "$t" >/dev/null || die "missing tool: $t"
done
grep -q '^name = "doorman"' "$ROOT/Cargo.toml" 2>/dev/null || die "$ROOT is not a doorman checkout (cd into one, or set ROOT)"
[ $((N % CONNS)) = 0 ] || die "N ($N) must be a multiple of CONNS ($CONNS)"

# ---------------------------------------------------------------- build
if [ -z "$DOORMAN" ]; then
  log "cargo build --release in $ROOT"
  (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
  TARGET=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])') || die "cargo metadata failed"
  DOORMAN="$TARGET/release/doorman"
fi
[ -x "$DOORMAN" ] || die "no doorman binary at $DOORMAN"

# ---------------------------------------------------------------- processes
RUN=$(mktemp -d /tmp/doorman-callgrind.XXXXXX)
PIDS=()
start_bg() {  # start_bg LOG CMD...: own session (process group); sets BG_PID
  setsid "${@:2}" > "$1" 2>&1 < /dev/null &
  BG_PID=$!; PIDS+=("$BG_PID")
}
stop_pid() {  # stop_pid PID: TERM its process group, wait up to 20 s, then KILL
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
  for ((i=0; i<200; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null; }
  wait "$pid" 2>/dev/null
  return 0
}
cleanup() {
  local i
  for ((i=${#PIDS[@]}-1; i>=0; i--)); do stop_pid "${PIDS[$i]}"; done
  PIDS=()
  if [ "$KEEP" = 1 ]; then echo "kept: $RUN" >&2; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {  # wait_port PORT TIMEOUT_S PID LOG
  local i
  for ((i=0; i<$2*10; i++)); do
    port_open "$1" && return 0
    kill -0 "$3" 2>/dev/null || { cat "$4" >&2; die "process $3 exited during start"; }
    sleep 0.1
  done
  cat "$4" >&2; die "nothing listening on port $1 after $2 s"
}
read -r UP_PORT DM_PORT <<< "$(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))')"
[ -n "$DM_PORT" ] || die "could not pick free loopback ports"

# ---------------------------------------------------------------- upstream: nginx
mkdir -p "$RUN/nginx"
cat > "$RUN/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $RUN/nginx/nginx.pid;
error_log $RUN/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    default_type text/plain;
    keepalive_requests 1000000;
    keepalive_timeout 65s;
    server_tokens off;
    client_body_temp_path $RUN/nginx/tmp_body;
    proxy_temp_path $RUN/nginx/tmp_proxy;
    fastcgi_temp_path $RUN/nginx/tmp_fastcgi;
    uwsgi_temp_path $RUN/nginx/tmp_uwsgi;
    scgi_temp_path $RUN/nginx/tmp_scgi;
    server {
        listen 127.0.0.1:$UP_PORT;
        location / {
            add_header X-Seen-Auth-User \$http_x_auth_user;
            return 200 "ok\n";
        }
    }
}
EOF
nginx -t -q -p "$RUN/nginx/" -c "$RUN/nginx/nginx.conf" -g 'daemon off;' 2>"$RUN/nginx/t.err" \
  || { cat "$RUN/nginx/t.err" >&2; die "nginx config invalid"; }
start_bg "$RUN/nginx.log" nginx -p "$RUN/nginx/" -c "$RUN/nginx/nginx.conf" -g 'daemon off;'
wait_port "$UP_PORT" 10 "$BG_PID" "$RUN/nginx.log"

# ---------------------------------------------------------------- doorman config
HASH=$(printf '%s\n' "$PASSWORD" | "$DOORMAN" hash-password) || die "doorman hash-password failed"
write_config() {  # write_config DIR: proxy.toml + users.toml, embedded store in DIR
  mkdir -p "$1"
  printf '[users.%s]\npassword = "%s"\ngroups = []\n' "$USER_NAME" "$HASH" > "$1/users.toml"
  cat > "$1/proxy.toml" <<EOF
[listen]
addr = "127.0.0.1:$DM_PORT"
max_connections_per_client = 1000000

[upstream]
url = "http://127.0.0.1:$UP_PORT"

[access]
default = "authenticated"

[[routes]]
path = "/public"
access = "public"

[[routes]]
path = "/dashboard"
access = "authenticated"

[login]
users_file = "users.toml"

[session]
store = "embedded"
path = "sessions.db"
EOF
  "$DOORMAN" check --config "$1/proxy.toml" >&2 || die "doorman check refused $1/proxy.toml"
}

# ---------------------------------------------------------------- load generator
cat > "$RUN/load.py" <<'PY'
# load.py PORT PATH COOKIE CONNS N WARMUP PID WANT_USER: see callgrind.sh's header.
import socket, subprocess, sys, threading, time

port, path, cookie = int(sys.argv[1]), sys.argv[2], sys.argv[3]
conns, n, warmup, pid, want_user = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7], sys.argv[8]
req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: doorman-callgrind\r\n"
       "Accept: */*\r\n" + (f"Cookie: {cookie}\r\n" if cookie else "") + "\r\n").encode()

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
        if h.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(self.until(b"\r\n").split(b";")[0], 16)
                self.take(size + 2)
                if size == 0: break
        else:
            self.take(int(h.get("content-length", "0")))
        if status != "200": return f"status {status}"
        if h.get("connection", "").lower() == "close": return "connection: close"
        if want_user and h.get("x-seen-auth-user") != want_user:
            return f"upstream saw X-Auth-User {h.get('x-seen-auth-user')!r}, want {want_user!r}"
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
# measure NAME PATH AUTH(0|1): fresh doorman under callgrind, prints Ir per request
measure() {
  local name=$1 path=$2 auth=$3 dir="$RUN/$1" cookie="" hdrs code out pid
  write_config "$dir"
  out="$dir/callgrind.out"
  log "$name: starting doorman under callgrind on :$DM_PORT"
  start_bg "$dir/doorman.log" env DOORMAN_WORKERS=1 RUST_LOG=warn \
    valgrind --tool=callgrind --callgrind-out-file="$out" "$DOORMAN" --config "$dir/proxy.toml"
  pid=$BG_PID
  wait_port "$DM_PORT" 120 "$pid" "$dir/doorman.log"
  if [ "$auth" = 1 ]; then
    hdrs=$(curl -s -m 300 -D - -o /dev/null -X POST --data-urlencode "username=$USER_NAME" \
      --data-urlencode "password=$PASSWORD" "http://127.0.0.1:$DM_PORT/_doorman/login" | tr -d '\r')
    code=$(echo "$hdrs" | awk 'NR==1{print $2}')
    case "$code" in 200|302|303) ;; *) echo "$hdrs" >&2; die "$name: login gave '$code'";; esac
    cookie=$(echo "$hdrs" | awk 'tolower($1)=="set-cookie:" {split($2,a,";"); print a[1]; exit}')
    [ -n "$cookie" ] || die "$name: login set no cookie"
    code=$(curl -s -m 60 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$DM_PORT$path")
    [ "$code" = 401 ] || die "$name: GET $path without the cookie gave $code, want 401"
  fi
  python3 "$RUN/load.py" "$DM_PORT" "$path" "$cookie" "$CONNS" "$N" "$WARMUP" "$pid" \
    "$( [ "$auth" = 1 ] && echo "$USER_NAME")" || die "$name: load failed (doorman log: $dir/doorman.log)"
  local dumps=("$out".*)
  [ ${#dumps[@]} = 1 ] && [ -f "${dumps[0]}" ] || die "$name: expected one dump $out.*, found: ${dumps[*]}"
  local total
  total=$(awk '$1=="totals:"{print $2}' "${dumps[0]}")
  [ -n "$total" ] || total=$(awk '$1=="summary:"{print $2}' "${dumps[0]}")
  [ -n "$total" ] || die "$name: no totals in ${dumps[0]}"
  log "$name: total Ir $total over $N requests"
  stop_pid "$pid"
  RESULT=$(( (total + N/2) / N ))
}

log "doorman: $DOORMAN ($(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'))"
log "$(valgrind --version), $(nginx -v 2>&1 | sed 's/.*: //'), N=$N CONNS=$CONNS WARMUP=$WARMUP"
measure public /public 0; PUBLIC=$RESULT
measure authenticated /dashboard 1; AUTHENTICATED=$RESULT
echo "public: $PUBLIC"
echo "authenticated: $AUTHENTICATED"
