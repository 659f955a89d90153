#!/usr/bin/env bash
# benches/run.sh -- doorman against nginx and the tutorial's Express stack, in one run.
#
# Starts, on free loopback ports only, each in its own process group:
#   redis      redis-server, no persistence (conf/redis.conf)
#   upstream   nginx, 1 worker, fixed 200 "ok\n"; echoes X-Auth-User back as X-Seen-Auth-User
# and measures with wrk (GET, keep-alive, -t1) at each connection count:
#   a  upstream direct                       GET /dashboard        (the ceiling)
#   b  nginx proxy_pass, keepalive pool,     GET /dashboard        (workers = cores, no auth)
#   c  Express 5 + express-session +         GET /dashboard + its session cookie
#      connect-redis (express-app/, the tutorial's stack; it answers itself, no upstream)
#   d  doorman, public route                 GET /public, no cookie
#   e  doorman, authenticated, Redis store   GET /dashboard + doorman session cookie
#   f  doorman, authenticated, embedded store  (same)
# Rows d, e and f are three doorman processes (release build, RUST_LOG=warn) with generated
# configs; e and f log in once through POST /_doorman/login (users file from
# `doorman hash-password`) and wrk sends the session cookie. Before measuring, every row is
# checked (200; e/f: upstream saw X-Auth-User, no cookie -> 401).
#
# Output: a markdown table (req/s, p50, p99, errors, CPU µs/request and peak RSS of the
# proxy process, ratios to nginx and to Express) on stdout and in OUT/table.md, plus
# raw.tsv, rss.tsv, versions.txt and the servers' logs in OUT (default
# benches/results/<stamp>/, ignored by git). Everything it started is stopped on exit.
#
# Usage:
#   benches/run.sh [--quick] [--doorman PATH] [--duration 10s] [--conns "64 256"] [--reps 3]
#                  [--warmup 2s] [--threads 1] [--rows a,b,c,d,e,f] [--pin] [--nice N]
#                  [--wait-quiet 60] [--max-other 20] [--retries 2] [--no-install] [--out DIR]
#   --quick    smoke mode, a few seconds: 1 s per row, 64 connections, one rep, no warm-up,
#              no waiting for a quiet machine; row c (Node) is skipped and listed as
#              "skipped in --quick". Figures from it mean nothing; tests/bench_quick.rs runs it.
#   --doorman PATH  use this doorman binary instead of `cargo build --release`.
#   --rows     subset of a..f to measure (default all; ratios need b and c).
#   --pin      wrk on CPU 0, every server on the other CPUs; default: all share all cores.
#   --nice N   (root; for a machine something else is using) run servers and wrk at nice N,
#              each in its own autogroup.
#   --wait-quiet N  before measuring, wait up to N s for foreign CPU load to fall below 10 %
#              of a core. A measured run whose "other" CPU (busy CPU not used by wrk, the
#              proxy, the upstream or redis) exceeds --max-other % of a core is discarded and
#              repeated after waiting for quiet, at most --retries times (then kept, marked !).
#   --no-install  fail instead of installing missing tools (apt-get: nginx, wrk,
#              redis-server, redis-tools, curl, python3, nodejs, npm; `npm ci` in express-app/).
#   Env: DOORMAN_BENCH_LOG (RUST_LOG for doorman, default warn: info logs every request).
#
# Loopback only; every load is bounded by --duration and a fixed connection count.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PATH=$PATH:/usr/sbin:/sbin   # nginx lives in /usr/sbin
ROOT=$(cd "$HERE/.." && pwd)
CONF="$HERE/conf"
APP="$HERE/express-app"

DURATION=10s; CONNS="64 256"; REPS=3; THREADS=1; WARMUP=2s; ROWS="a,b,c,d,e,f"
PIN=0; NICE=0; INSTALL=1; OUT=""; WAIT_QUIET=60; MAX_OTHER=20; RETRIES=2; QUICK=0; DOORMAN=""
DOORMAN_LOG=${DOORMAN_BENCH_LOG:-warn}
BENCH_USER=bench; BENCH_PASSWORD=bench-password-not-secret

die() { echo "benches/run.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; shift;;
    --doorman) DOORMAN=$2; shift 2;;
    --duration) DURATION=$2; shift 2;;
    --conns) CONNS=$2; shift 2;;
    --reps) REPS=$2; shift 2;;
    --warmup) WARMUP=$2; shift 2;;
    --threads) THREADS=$2; shift 2;;
    --rows) ROWS=$2; shift 2;;
    --pin) PIN=1; shift;;
    --nice) NICE=$2; shift 2;;
    --wait-quiet) WAIT_QUIET=$2; shift 2;;
    --max-other) MAX_OTHER=$2; shift 2;;
    --retries) RETRIES=$2; shift 2;;
    --no-install) INSTALL=0; shift;;
    --out) OUT=$2; shift 2;;
    -h|--help) awk 'NR>1 && /^set -uo/{exit} NR>1' "$0"; exit 0;;
    *) die "unknown option $1 (see --help)";;
  esac
done
SKIPPED=""
if [ "$QUICK" = 1 ]; then
  DURATION=1s; CONNS=64; REPS=1; WARMUP=0; WAIT_QUIET=0; MAX_OTHER=100000; RETRIES=0
  case ",$ROWS," in *",c,"*) ROWS=$(echo ",$ROWS," | sed 's/,c,/,/; s/^,//; s/,$//'); SKIPPED="c";; esac
fi
has() { case ",$ROWS," in *",$1,"*) return 0;; *) return 1;; esac; }
needs_redis() { has c || has e; }
for r in ${ROWS//,/ }; do case "$r" in [a-f]) ;; *) die "unknown row '$r' (rows are a..f)";; esac; done

# ---------------------------------------------------------------- install
ensure_tools() {
  local pkgs=()
  command -v nginx >/dev/null || pkgs+=(nginx)
  command -v wrk >/dev/null || pkgs+=(wrk)
  command -v curl >/dev/null || pkgs+=(curl)
  command -v python3 >/dev/null || pkgs+=(python3)
  [ "$PIN" = 1 ] && ! command -v taskset >/dev/null && pkgs+=(util-linux)
  if needs_redis; then
    command -v redis-server >/dev/null || pkgs+=(redis-server)
    command -v redis-cli >/dev/null || pkgs+=(redis-tools)
  fi
  if has c; then
    command -v node >/dev/null || pkgs+=(nodejs)
    command -v npm >/dev/null || pkgs+=(npm)
  fi
  if [ ${#pkgs[@]} -gt 0 ]; then
    [ "$INSTALL" = 1 ] || die "missing: ${pkgs[*]} (scripts/test installs nginx and wrk; or rerun without --no-install)"
    log "apt-get install ${pkgs[*]}"
    local sudo=(); [ "$(id -u)" = 0 ] || sudo=(sudo -n)
    # keep Debian from starting system nginx/redis services during the install
    local own_policy=0
    if [ "$(id -u)" = 0 ] && [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; own_policy=1
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
      && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
    local rc=$?
    [ $own_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
    [ $rc = 0 ] || die "apt-get install ${pkgs[*]} failed"
  fi
  if has c && [ ! -d "$APP/node_modules/connect-redis" ]; then
    [ "$INSTALL" = 1 ] || die "$APP/node_modules missing (run npm ci there, or rerun without --no-install)"
    log "npm ci in $APP"
    (cd "$APP" && npm ci --no-audit --no-fund >/dev/null) || die "npm ci in $APP failed"
  fi
}
ensure_tools

if [ -z "$DOORMAN" ]; then
  log "cargo build --release"
  (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
  DOORMAN="${CARGO_TARGET_DIR:-$ROOT/target}/release/doorman"
fi
[ -x "$DOORMAN" ] || die "no doorman binary at $DOORMAN"
DOORMAN=$(cd "$(dirname "$DOORMAN")" && pwd)/$(basename "$DOORMAN")

# ---------------------------------------------------------------- run dir, cpu sets
STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${OUT:-$HERE/results/$STAMP}
mkdir -p "$OUT" || die "cannot create $OUT"
OUT=$(cd "$OUT" && pwd)
RUN=$(mktemp -d /tmp/doorman-bench.XXXXXX)
exec 2> >(tee -a "$OUT/run.log" >&2)
RAW="$OUT/raw.tsv"; : > "$RAW"
NCPU=$(nproc)
if [ $PIN = 1 ]; then
  [ "$NCPU" -ge 2 ] || die "--pin needs >= 2 CPUs"
  LOAD_PIN=(taskset -c 0); SRV_PIN=(taskset -c 1-$((NCPU-1)))
else
  LOAD_PIN=(); SRV_PIN=()
fi
if [ "$NICE" != 0 ]; then  # own autogroup + nice for each server and for wrk
  PRIO=(bash -c 'echo "$0" > /proc/$$/autogroup 2>/dev/null; exec nice -n "$0" "$@"' "$NICE")
  LOAD_PRIO=(setsid -w "${PRIO[@]}")
else
  PRIO=(); LOAD_PRIO=()
fi

# ---------------------------------------------------------------- process management
STARTED_NAMES=(); STARTED_PIDS=()
start_bg() {  # start_bg NAME CMD... : own session/process group, output in $RUN/NAME.log
  local name=$1; shift
  setsid "${PRIO[@]}" "${SRV_PIN[@]}" "$@" > "$RUN/$name.log" 2>&1 < /dev/null &
  local pid=$!
  STARTED_NAMES+=("$name"); STARTED_PIDS+=("$pid")
  eval "PID_${name//-/_}=$pid"
}
pid_of() { local v="PID_${1//-/_}"; echo "${!v:-}"; }
group_pids() {  # every live process in the session started for NAME
  local pid; pid=$(pid_of "$1"); [ -n "$pid" ] || return 0
  ps -e -o pid=,sid= | awk -v s="$pid" '$2==s {print $1}'
}
stop_all() {
  local i pid alive
  for ((i=${#STARTED_PIDS[@]}-1; i>=0; i--)); do
    pid=${STARTED_PIDS[$i]}
    kill -0 "$pid" 2>/dev/null || continue
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
  done
  for ((i=0; i<50; i++)); do
    alive=0
    for pid in "${STARTED_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break; sleep 0.1
  done
  for pid in "${STARTED_PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null && { kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null; }
  done
  for pid in "${STARTED_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  STARTED_PIDS=()
}
cleanup() {
  stop_all
  if [ -n "${RUN:-}" ] && [ -d "$RUN" ]; then
    cp "$RUN"/*.log "$OUT"/ 2>/dev/null
    for d in "$RUN"/*/; do [ -f "$d/error.log" ] && cp "$d/error.log" "$OUT/$(basename "$d")-error.log"; done
    rm -rf "$RUN"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {  # wait_port PORT TIMEOUT_S NAME
  local i pid
  for ((i=0; i<$2*10; i++)); do
    port_open "$1" && return 0
    pid=$(pid_of "$3"); kill -0 "$pid" 2>/dev/null || { cat "$RUN/$3.log" >&2; die "$3 exited during start"; }
    sleep 0.1
  done
  cat "$RUN/$3.log" >&2; die "$3 did not open port $1 within $2 s"
}
# N distinct loopback ports that are free right now (bound together, then released)
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# ---------------------------------------------------------------- measurement helpers
HZ=$(getconf CLK_TCK)
ticks_of() {  # utime+stime (clock ticks, all threads) of the given pids
  local t=0 p s a
  for p in "$@"; do
    s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    s=${s##*) }; read -r -a a <<< "$s"; t=$((t + a[11] + a[12]))
  done
  echo $t
}
busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
wait_quiet() {  # wait until the machine (less our idle servers) is quiet
  local i b0 b1 pct=0
  [ "$WAIT_QUIET" -gt 0 ] || return 0
  for ((i=0; i<=WAIT_QUIET; i+=2)); do
    b0=$(busy_ticks); sleep 2; b1=$(busy_ticks)
    pct=$(( (b1-b0) * 100 / (2*HZ) ))
    [ $pct -lt 10 ] && { log "machine quiet (${pct}% of a core busy)"; return 0; }
    [ $i = 0 ] && { log "machine busy (${pct}% of a core) before measuring; top:"; ps -e -o pid=,pcpu=,comm= --sort=-pcpu | head -4 >&2; }
  done
  log "WARN: still ${pct}% busy after ${WAIT_QUIET}s; measuring anyway (see the 'other' column)"
}
mem_of() {  # mem_of NAME FIELD(VmHWM|VmRSS): sum over the group's processes, KiB
  local p t=0 v
  for p in $(group_pids "$1"); do
    v=$(awk -v f="$2:" '$1==f {print $2}' "/proc/$p/status" 2>/dev/null)
    t=$((t + ${v:-0}))
  done
  echo $t
}

nginx_up() {  # nginx_up NAME TEMPLATE PORT WORKERS
  local name=$1 tmpl=$2 port=$3 workers=$4
  local dir="$RUN/$name"; mkdir -p "$dir"
  sed "s|@RUN@|$dir|g" "$CONF/nginx-common.inc" > "$dir/nginx-common.inc"
  sed -e "s|@RUN@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@WORKERS@|$workers|g" \
      -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" "$CONF/$tmpl" > "$dir/nginx.conf"
  nginx -t -q -p "$dir/" -c "$dir/nginx.conf" -g 'daemon off;' 2>"$dir/t.err" || { cat "$dir/t.err" >&2; die "nginx conf $name invalid"; }
  start_bg "$name" nginx -p "$dir/" -c "$dir/nginx.conf" -g 'daemon off;'
  wait_port "$port" 10 "$name"
}

# doorman_up NAME PORT STORE(redis|embedded): generated config, own folder, RUST_LOG=$DOORMAN_LOG
doorman_up() {
  local name=$1 port=$2 store=$3 dir="$RUN/$1" session
  mkdir -p "$dir"
  cp "$RUN/users.toml" "$dir/users.toml"
  if [ "$store" = redis ]; then
    session="store = \"redis\"
redis = \"redis://127.0.0.1:$REDIS_PORT/0\"
key_prefix = \"doorman-bench:\""
  else
    session="store = \"embedded\"
path = \"sessions.db\""
  fi
  cat > "$dir/proxy.toml" <<EOF
# generated by benches/run.sh
[listen]
addr = "127.0.0.1:$port"

[upstream]
url = "http://127.0.0.1:$UPSTREAM_PORT"

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
$session
EOF
  "$DOORMAN" check --config "$dir/proxy.toml" >&2 || die "generated $dir/proxy.toml is invalid"
  start_bg "$name" env RUST_LOG="$DOORMAN_LOG" "$DOORMAN" --config "$dir/proxy.toml"
  wait_port "$port" 30 "$name"
}

doorman_login() {  # doorman_login PORT -> prints "name=value" of the session cookie
  local hdrs code
  hdrs=$(curl -s -m 10 -D - -o /dev/null -X POST \
    --data-urlencode "username=$BENCH_USER" --data-urlencode "password=$BENCH_PASSWORD" \
    "http://127.0.0.1:$1/_doorman/login" | tr -d '\r')
  code=$(echo "$hdrs" | awk 'NR==1{print $2}')
  case "$code" in 200|302|303) ;; *) echo "$hdrs" >&2; die "doorman login on :$1 gave '$code'";; esac
  echo "$hdrs" | awk 'tolower($1)=="set-cookie:" {split($2,a,";"); print a[1]; exit}'
}

check_row() {  # check_row ROW: one request as wrk will send it, and the negative checks
  local row=$1 url=${R_URL[$1]} cookie=${R_COOKIE[$1]} hdrs code args=()
  [ -n "$cookie" ] && args=(-H "Cookie: $cookie")
  hdrs=$(curl -s -m 5 -D - -o "$RUN/body" "${args[@]}" "$url" | tr -d '\r')
  code=$(echo "$hdrs" | awk 'NR==1{print $2}')
  [ "$code" = 200 ] || { echo "$hdrs" >&2; die "row $row: GET $url gave '$code', want 200"; }
  case "$row" in
    e|f)
      echo "$hdrs" | grep -qi "^x-seen-auth-user: $BENCH_USER\$" \
        || { echo "$hdrs" >&2; die "row $row: the upstream did not see X-Auth-User: $BENCH_USER"; }
      code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$url")
      [ "$code" = 401 ] || die "row $row: GET $url without the cookie gave $code, want 401";;
    c)
      code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$url")
      [ "$code" = 401 ] || die "row c: GET $url without the cookie gave $code, want 401";;
  esac
  log "row $row ok: $(head -c 40 "$RUN/body" | tr '\n' ' ')"
}

run_wrk() {  # run_wrk ROW CONNS DURATION REP(0 = warm-up, not recorded)
  local row=$1 c=$2 d=$3 rep=$4 f="$RUN/wrk.out" args=()
  [ -n "${R_COOKIE[$row]}" ] && args=(-H "Cookie: ${R_COOKIE[$row]}")
  local sut_p up_p rd_p s0 u0 r0 b0 s1 u1 r1 b1 t0 t1
  sut_p=$(group_pids "${R_SUT[$row]}"); up_p=$(group_pids upstream); rd_p=$(group_pids redis)
  s0=$(ticks_of $sut_p); u0=$(ticks_of $up_p); r0=$(ticks_of $rd_p); b0=$(busy_ticks); t0=$(date +%s.%N)
  local TIMEFORMAT='%U %S' wrc
  { time "${LOAD_PRIO[@]}" "${LOAD_PIN[@]}" wrk -t"$THREADS" -c"$c" -d"$d" --timeout 5s \
      -s "$CONF/wrk-report.lua" "${args[@]}" "${R_URL[$row]}" > "$f" 2>&1; wrc=$?; } 2> "$RUN/wrk.time"
  t1=$(date +%s.%N)
  s1=$(ticks_of $sut_p); u1=$(ticks_of $up_p); r1=$(ticks_of $rd_p); b1=$(busy_ticks)
  [ "$rep" = 0 ] && return 0
  local res; res=$(grep '^WRKRESULT' "$f") || { cat "$f" >&2; die "wrk failed for row $row (exit $wrc)"; }
  python3 - "$row" "$c" "$rep" "$res" "$t0" "$t1" $((s1-s0)) $((u1-u0)) $((r1-r0)) $((b1-b0)) "$HZ" \
    "$( [ "${R_SUT[$row]}" = upstream ] && echo 1 || echo 0 )" "$(tail -1 "$RUN/wrk.time")" >> "$RAW" <<'PY'
import sys
row, c, rep, res, t0, t1, s, u, r, b, hz, upin, wt = sys.argv[1:]
kv = dict(x.split("=") for x in res.split()[1:])
el = float(t1) - float(t0); hz = float(hz)
pct = lambda ticks: 100.0 * float(ticks) / hz / el
n = int(kv["requests"])
us = lambda ticks: "%.1f" % (float(ticks) / hz * 1e6 / n) if n else "-"
wrk = 100.0 * sum(float(x) for x in wt.split()) / el
u_eff = 0.0 if upin == "1" else pct(u)
# other = busy CPU used by none of wrk, the proxy, the upstream and redis: foreign load
print("\t".join([row, c, rep, kv["rps"], kv["p50_ms"], kv["p90_ms"], kv["p99_ms"], kv["max_ms"],
    str(n), kv["non2xx"], kv["sockerr"], "%.0f" % wrk, "%.0f" % pct(s), "%.0f" % pct(u),
    "%.0f" % pct(r), "%.0f" % pct(b), "%.0f" % max(0.0, pct(b) - wrk - pct(s) - u_eff - pct(r)),
    us(s), us(r), us(b)]))
PY
  log "$(tail -1 "$RAW" | awk -F'\t' '{printf "row %s c=%-4s rep=%s %8s req/s p50=%sms p99=%sms non2xx=%s sockerr=%s cpu%% wrk/proxy/up/redis/other/all=%s/%s/%s/%s/%s/%s  proxy %s us/req", $1,$2,$3,$4,$5,$7,$10,$11,$12,$13,$14,$15,$17,$16,$18}')"
}

# ---------------------------------------------------------------- versions
{
  echo "date: $(date -Is)  host: $(uname -srm)  cpus: $NCPU ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo))"
  echo "doorman: $DOORMAN ($(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'))  RUST_LOG=$DOORMAN_LOG"
  echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //')  wrk: $(wrk --version 2>&1 | awk 'NR==1{print $2}')$(needs_redis && echo "  redis: $(redis-server --version | awk '{print $3}')")"
  if has c; then
    echo "node: $(node --version)  $(cd "$APP" && node -e 'for (const p of ["express","express-session","connect-redis","redis"]) process.stdout.write(p+"@"+require("./node_modules/"+p+"/package.json").version+"  ")')"
  fi
  echo "wrk -t$THREADS -d$DURATION, conns: $CONNS, reps: $REPS, warm-up: $WARMUP; nginx proxy workers: $NCPU; pin: $PIN; nice: $NICE$( [ "$QUICK" = 1 ] && echo "; QUICK smoke run")"
} | tee "$OUT/versions.txt" >&2

# ---------------------------------------------------------------- start services
read -r REDIS_PORT UPSTREAM_PORT NGINX_PORT EXPRESS_PORT DM_PUBLIC_PORT DM_REDIS_PORT DM_EMB_PORT <<< "$(free_ports 7)"
[ -n "$DM_EMB_PORT" ] || die "could not pick free loopback ports"

if needs_redis; then
  mkdir -p "$RUN/redis"
  start_bg redis redis-server "$CONF/redis.conf" --port "$REDIS_PORT" --dir "$RUN/redis" --logfile ""
  wait_port "$REDIS_PORT" 10 redis
fi
nginx_up upstream nginx-upstream.conf.tmpl "$UPSTREAM_PORT" 1
has b && nginx_up nginx-proxy nginx-proxy.conf.tmpl "$NGINX_PORT" "$NCPU"
EXPRESS_COOKIE=""
if has c; then
  start_bg express env PORT="$EXPRESS_PORT" REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" NODE_ENV=production node "$APP/server.mjs"
  wait_port "$EXPRESS_PORT" 20 express
fi
if has d || has e || has f; then
  hash=$(echo "$BENCH_PASSWORD" | "$DOORMAN" hash-password) || die "doorman hash-password failed"
  printf '# generated by benches/run.sh\n[users.%s]\npassword = "%s"\ngroups = []\n' "$BENCH_USER" "$hash" > "$RUN/users.toml"
fi
has d && doorman_up dm-public "$DM_PUBLIC_PORT" embedded
has e && doorman_up dm-redis "$DM_REDIS_PORT" redis
has f && doorman_up dm-embedded "$DM_EMB_PORT" embedded

# idle RSS of every proxy: started, no request served yet
declare -A SUT_OF=([a]=upstream [b]=nginx-proxy [c]=express [d]=dm-public [e]=dm-redis [f]=dm-embedded)
for row in a b c d e f; do has "$row" && echo -e "$row\tidle\t$(mem_of "${SUT_OF[$row]}" VmRSS)"; done > "$OUT/rss.tsv"

if has c; then
  EXPRESS_COOKIE=$(curl -s -m 5 -D - -o /dev/null -X POST --data "username=$BENCH_USER&password=bench" \
    "http://127.0.0.1:$EXPRESS_PORT/login" | tr -d '\r' | awk 'tolower($1)=="set-cookie:" {split($2,a,";"); print a[1]; exit}')
  [ -n "$EXPRESS_COOKIE" ] || die "express POST /login gave no cookie"
fi
DM_REDIS_COOKIE=""; DM_EMB_COOKIE=""
if has e; then DM_REDIS_COOKIE=$(doorman_login "$DM_REDIS_PORT"); [ -n "$DM_REDIS_COOKIE" ] || die "doorman (redis) login set no cookie"; fi
if has f; then DM_EMB_COOKIE=$(doorman_login "$DM_EMB_PORT"); [ -n "$DM_EMB_COOKIE" ] || die "doorman (embedded) login set no cookie"; fi

declare -A R_URL R_COOKIE R_SUT
ORDER=()
add_row() { has "$1" || return 0; ORDER+=("$1"); R_URL[$1]=$2; R_COOKIE[$1]=$3; R_SUT[$1]=$4; }
add_row a "http://127.0.0.1:$UPSTREAM_PORT/dashboard" "" upstream
add_row b "http://127.0.0.1:$NGINX_PORT/dashboard" "" nginx-proxy
add_row c "http://127.0.0.1:$EXPRESS_PORT/dashboard" "$EXPRESS_COOKIE" express
add_row d "http://127.0.0.1:$DM_PUBLIC_PORT/public" "" dm-public
add_row e "http://127.0.0.1:$DM_REDIS_PORT/dashboard" "$DM_REDIS_COOKIE" dm-redis
add_row f "http://127.0.0.1:$DM_EMB_PORT/dashboard" "$DM_EMB_COOKIE" dm-embedded
[ ${#ORDER[@]} -gt 0 ] || die "no rows to measure"
for row in "${ORDER[@]}"; do check_row "$row"; done

# RSS once logged in and checked, before the load (doorman's login runs Argon2id, m = 19 MiB)
for row in "${ORDER[@]}"; do echo -e "$row\tready\t$(mem_of "${R_SUT[$row]}" VmRSS)"; done >> "$OUT/rss.tsv"

# ---------------------------------------------------------------- measure
# interleaved (rep -> connections -> row) so that drift hits every row alike
wait_quiet
if [ "$WARMUP" != 0 ]; then
  for c in $CONNS; do for row in "${ORDER[@]}"; do
    log "warm-up row $row c=$c $WARMUP"; run_wrk "$row" "$c" "$WARMUP" 0
  done; done
fi
for ((rep=1; rep<=REPS; rep++)); do
  for c in $CONNS; do for row in "${ORDER[@]}"; do
    for ((try=0; ; try++)); do
      run_wrk "$row" "$c" "$DURATION" "$rep"
      [ "$QUICK" = 1 ] || sleep 1
      other=$(tail -1 "$RAW" | cut -f17)
      [ "$other" -le "$MAX_OTHER" ] && break
      if [ $try -ge "$RETRIES" ]; then
        log "WARN: keeping a contaminated run (other=$other%)"
        sed -i '$ s/$/\t!/' "$RAW"; break
      fi
      log "foreign CPU load (other=$other%): discarding the run, waiting for quiet"
      sed -i '$d' "$RAW"; wait_quiet
    done
  done; done
done

# peak RSS (VmHWM) of every proxy after all runs
for row in "${ORDER[@]}"; do echo -e "$row\tpeak\t$(mem_of "${R_SUT[$row]}" VmHWM)"; done >> "$OUT/rss.tsv"
stop_all

# ---------------------------------------------------------------- report
python3 "$HERE/report.py" --raw "$RAW" --rss "$OUT/rss.tsv" --versions "$OUT/versions.txt" \
  --skipped "$SKIPPED" --quick "$QUICK" > "$OUT/table.md" || die "report.py failed"
cat "$OUT/table.md"
echo "table: $OUT/table.md  raw: $RAW  logs: $OUT" >&2
