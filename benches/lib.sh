# benches/lib.sh -- helpers shared by benches/run.sh, scale.sh, soak.sh, failover.sh and
# callgrind.sh (sourced, not run).
#
# The sourcing script sets SCRIPT (its name, for messages) before sourcing, and these
# globals before calling the helpers that use them: OUT and PIN/NICE (init_run), DOORMAN,
# DOORMAN_LOG, UPSTREAM_PORT, THREADS, RAW, WAIT_QUIET, BENCH_USER/BENCH_PASSWORD.
# Everything listens on loopback only; every process started with start_bg is stopped by
# stop_all, which init_run arranges to run on exit, Ctrl-C or failure.

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PATH=$PATH:/usr/sbin:/sbin   # nginx lives in /usr/sbin
ROOT=$(cd "$HERE/.." && pwd)
CONF="$HERE/conf"
BENCH_USER=bench; BENCH_PASSWORD=bench-password-not-secret
# The allocator setting doorman gives itself when it serves (src/main.rs, TCACHE_COUNT, which a
# unit test keeps equal to this), given to the hyper-floor too: the floor is doorman's stack
# set up as doorman sets it up, so the difference stays doorman's own work.
FLOOR_ENV=(GLIBC_TUNABLES=glibc.malloc.tcache_count=127)
# Per measured row: URL, cookie (sent by wrk; a row with one must answer 401 without it),
# the process group(s) measured as "proxy" (space-separated: a gateway and its auth server
# together are the system under test), the user the upstream must see, the Redis group
# whose CPU is counted (default: the one named redis), and optionally one group of R_SUT whose
# CPU is also reported on its own (R_PART: the auth server behind a gateway); the load tool
# (R_TOOL, see run_wrk: wrk by default, h2load, tls-full, tls-resume) and curl's extra options
# for the row's check (R_CURL: -k and the HTTP version for the TLS rows).
declare -A R_URL R_COOKIE R_SUT R_USER R_REDIS R_PART R_TOOL R_CURL

die() { echo "$SCRIPT: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# shared_option ARGS...: parse one option that run.sh and scale.sh both take (the first of
# ARGS), set its variable, and set SHIFTS to how many arguments it used. Returns 1 when ARGS
# does not start with one of them (the caller reports it as unknown).
shared_option() {
  case "$1" in
    --quick) QUICK=1; SHIFTS=1;;
    # An empty path (a failed `$(benches/pgo.sh)`) would quietly measure the plain build.
    --doorman) [ -n "${2:-}" ] || die "--doorman needs a path"; DOORMAN=$2; SHIFTS=2;;
    --duration) DURATION=$2; SHIFTS=2;;
    --conns) CONNS=$2; SHIFTS=2;;
    --reps) REPS=$2; SHIFTS=2;;
    --warmup) WARMUP=$2; SHIFTS=2;;
    --threads) THREADS=$2; SHIFTS=2;;
    --pin) PIN=1; SHIFTS=1;;
    --nice) NICE=$2; SHIFTS=2;;
    --wait-quiet) WAIT_QUIET=$2; SHIFTS=2;;
    --max-other) MAX_OTHER=$2; SHIFTS=2;;
    --retries) RETRIES=$2; SHIFTS=2;;
    --no-install) INSTALL=0; SHIFTS=1;;
    --out) OUT=$2; SHIFTS=2;;
    -h|--help) awk 'NR>1 && /^set -uo/{exit} NR>1' "$0"; exit 0;;
    *) return 1;;
  esac
}

# ---------------------------------------------------------------- install
install_pkgs() {  # install_pkgs PKG...: apt-get install, unless --no-install (INSTALL=0)
  [ $# -gt 0 ] || return 0
  [ "$INSTALL" = 1 ] || die "missing: $* (scripts/test installs nginx and wrk; or rerun without --no-install)"
  log "apt-get install $*"
  local sudo=(); [ "$(id -u)" = 0 ] || sudo=(sudo -n)
  # keep Debian from starting system nginx/redis services during the install
  local own_policy=0
  if [ "$(id -u)" = 0 ] && [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; own_policy=1
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  local rc=$?
  [ $own_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ $rc = 0 ] || die "apt-get install $* failed"
}

build_doorman() {  # sets DOORMAN to an absolute path; builds the release binary unless given
  if [ -z "$DOORMAN" ]; then
    # With bench-seed, as scale.sh builds: run.sh and scale.sh (and tests/bench_quick.rs and
    # tests/bench_scale.rs after it) then share one release build of the library. The feature
    # only adds EmbeddedStore::insert_many, which doorman never calls.
    log "cargo build --release --features bench-seed --bin doorman"
    (cd "$ROOT" && cargo build --release --quiet --features bench-seed --bin doorman) || die "cargo build --release failed"
    DOORMAN="${CARGO_TARGET_DIR:-$ROOT/target}/release/doorman"
  fi
  [ -x "$DOORMAN" ] || die "no doorman binary at $DOORMAN"
  DOORMAN=$(cd "$(dirname "$DOORMAN")" && pwd)/$(basename "$DOORMAN")
}

# release_example NAME: echo the path of the example NAME, built as build_doorman builds
# doorman (release, bench-seed), so the two share one library build.
release_example() {
  log "cargo build --release --features bench-seed --example $1"
  (cd "$ROOT" && cargo build --release --quiet --features bench-seed --example "$1") \
    || die "cargo build --example $1 failed"
  echo "${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/$1"
}

# ---------------------------------------------------------------- run dir, cpu sets
init_run() {  # OUT (default results/<stamp>), RUN (temp), stderr teed to OUT/run.log, traps
  STAMP=$(date +%Y%m%d-%H%M%S)
  OUT=${OUT:-$HERE/results/$STAMP}
  mkdir -p "$OUT" || die "cannot create $OUT"
  OUT=$(cd "$OUT" && pwd)
  RUN=$(mktemp -d /tmp/doorman-bench.XXXXXX)
  exec 2> >(tee -a "$OUT/run.log" >&2)
  NCPU=$(nproc)
  if [ "$PIN" = 1 ]; then
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
  trap cleanup EXIT
  trap 'exit 130' INT TERM
}

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
group_pids() {  # group_pids NAME... (or one space-separated string): every live process in
  # the sessions started for those names
  local n pid sids=""
  for n in $*; do pid=$(pid_of "$n"); [ -n "$pid" ] && sids="$sids $pid"; done
  [ -n "$sids" ] || return 0
  ps -e -o pid=,sid= | awk -v s="$sids" 'BEGIN {split(s, a, " "); for (i in a) want[a[i]] = 1} ($2 in want) {print $1}'
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
  declare -F cleanup_hook >/dev/null && cleanup_hook   # the sourcing script's own extras
  stop_all
  if [ -n "${RUN:-}" ] && [ -d "$RUN" ]; then
    cp "$RUN"/*.log "$OUT"/ 2>/dev/null
    for d in "$RUN"/*/; do [ -f "$d/error.log" ] && cp "$d/error.log" "$OUT/$(basename "$d")-error.log"; done
    rm -rf "$RUN"
  fi
}

port_of() { local hp=${1#*://}; hp=${hp%%/*}; echo "${hp##*:}"; }  # port_of URL: its port
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
mem_of() {  # mem_of NAME FIELD(VmHWM|VmRSS): sum over the group's processes, KiB (NAME may be
  # several space-separated names: summed over all their groups)
  local p t=0 v
  for p in $(group_pids "$1"); do
    v=$(awk -v f="$2:" '$1==f {print $2}' "/proc/$p/status" 2>/dev/null)
    t=$((t + ${v:-0}))
  done
  echo $t
}

# ---------------------------------------------------------------- servers
nginx_up() {  # nginx_up NAME TEMPLATE PORT WORKERS [KEY=VALUE...] (each replaces @KEY@)
  nginx_render "$@"
  start_bg "$1" nginx -p "$RUN/$1/" -c "$RUN/$1/nginx.conf" -g 'daemon off;'
  wait_port "$3" 10 "$1"
}
# nginx_render NAME TEMPLATE PORT WORKERS [KEY=VALUE...]: nginx_up's $RUN/NAME/nginx.conf,
# checked with nginx -t, not started
nginx_render() {
  local name=$1 tmpl=$2 port=$3 workers=$4 kv subst=()
  shift 4
  for kv in "$@"; do subst+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
  local dir="$RUN/$name"; mkdir -p "$dir"
  sed "s|@RUN@|$dir|g" "$CONF/nginx-common.inc" > "$dir/nginx-common.inc"
  sed -e "s|@RUN@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@WORKERS@|$workers|g" \
      -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" "${subst[@]}" "$CONF/$tmpl" > "$dir/nginx.conf"
  grep -q '@[A-Z_]*@' "$dir/nginx.conf" && die "nginx conf $name: unreplaced $(grep -o '@[A-Z_]*@' "$dir/nginx.conf" | head -1)"
  nginx -t -q -p "$dir/" -c "$dir/nginx.conf" -g 'daemon off;' 2>"$dir/t.err" || { cat "$dir/t.err" >&2; die "nginx conf $name invalid"; }
}

# make_certs DIR: the run's own self-signed certificates, CN and SAN 127.0.0.1 and localhost:
# DIR/ecdsa.pem + ecdsa.key (ECDSA P-256) and DIR/rsa.pem + rsa.key (RSA 2048); keys in
# PKCS#8, unencrypted. Made per run (never committed), shared by nginx and doorman.
make_certs() {
  mkdir -p "$1"
  local kind spec
  for kind in ecdsa rsa; do
    case $kind in ecdsa) spec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1);; rsa) spec=(-newkey rsa:2048);; esac
    openssl req -x509 "${spec[@]}" -nodes -days 2 -subj /CN=127.0.0.1 \
      -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout "$1/$kind.key" -out "$1/$kind.pem" \
      > "$1/$kind.log" 2>&1 || { cat "$1/$kind.log" >&2; die "openssl req ($kind) failed"; }
  done
}

# nginx_h2: set NGINX_LISTEN_H2 and NGINX_HTTP2_ON, what turns HTTP/2 on in
# conf/nginx-tls.conf.tmpl: `http2 on;` from nginx 1.25.1 (the listen flag is deprecated
# there), the listen flag before.
nginx_h2() {
  local v; v=$(nginx -v 2>&1 | sed 's|.*/||; s| .*||')
  if [ "$(printf '%s\n1.25.1\n' "$v" | sort -V | head -1)" = 1.25.1 ]; then
    NGINX_LISTEN_H2=""; NGINX_HTTP2_ON="http2 on;"
  else
    NGINX_LISTEN_H2=" http2"; NGINX_HTTP2_ON=""
  fi
}

redis_up() {  # redis_up NAME PORT [ARGS...]: no persistence (conf/redis.conf), its own folder;
  # ARGS go to redis-server after the conf (e.g. --replicaof, --cluster-enabled yes). Each gets
  # its own copy of the conf: Sentinel has replicas rewrite theirs (CONFIG REWRITE).
  local name=$1 port=$2; shift 2
  mkdir -p "$RUN/$name"
  cp "$CONF/redis.conf" "$RUN/$name/redis.conf"
  start_bg "$name" redis-server "$RUN/$name/redis.conf" --port "$port" --dir "$RUN/$name" --logfile "" "$@"
  wait_port "$port" 10 "$name"
}

# sentinel_up NAME PORT MASTER_PORT QUORUM: a Sentinel watching the master on MASTER_PORT as
# "mymaster", with the short failure detection tests/support/redis.rs uses (down after 1 s).
# Sentinel rewrites its config file, so each gets its own in its folder.
sentinel_up() {
  local name=$1 port=$2 dir="$RUN/$1"
  mkdir -p "$dir"
  printf '%s\n' "bind 127.0.0.1" "port $port" "dir $dir" \
    "sentinel monitor mymaster 127.0.0.1 $3 $4" \
    "sentinel down-after-milliseconds mymaster 1000" \
    "sentinel failover-timeout mymaster 5000" > "$dir/sentinel.conf"
  start_bg "$name" redis-server "$dir/sentinel.conf" --sentinel
  wait_port "$port" 10 "$name"
}

# redis_wait PORT TIMEOUT_S WHAT CMD... : until the output of `redis-cli -p PORT CMD...`
# matches the extended regex WHAT (e.g. master_link_status:up), or die
redis_wait() {
  local port=$1 secs=$2 what=$3 i out=""; shift 3
  for ((i=0; i<secs*10; i++)); do
    out=$(redis-cli -p "$port" "$@" 2>&1 | tr -d '\r')
    echo "$out" | grep -Eq -- "$what" && return 0
    sleep 0.1
  done
  echo "$out" >&2; die "redis on :$port: no '$what' in '$*' within $secs s"
}

make_users() {  # $RUN/users.toml with BENCH_USER (one Argon2id hash, as doorman makes them)
  local hash
  hash=$(echo "$BENCH_PASSWORD" | "$DOORMAN" hash-password) || die "doorman hash-password failed"
  printf '# generated by benches/%s\n[users.%s]\npassword = "%s"\ngroups = []\n' "$SCRIPT" "$BENCH_USER" "$hash" > "$RUN/users.toml"
}

# session_toml KIND [REDIS_PORT] [KEY_PREFIX]: the [session] body for a generated config.
# KIND: embedded | redis | redis-cache (redis + `cache = true`) | sentinel (REDIS_PORT: the
# Sentinels' ports, space-separated, watching "mymaster") | cluster (REDIS_PORT: the seeds' ports).
session_toml() {
  local urls
  case "$1" in
    sentinel|cluster) urls=$(printf '"redis://127.0.0.1:%s", ' $2); urls="[${urls%, }]";;
  esac
  case "$1" in
    embedded) printf 'store = "embedded"\npath = "sessions.db"\n';;
    redis|redis-cache)
      printf 'store = "redis"\nredis = "redis://127.0.0.1:%s/0"\nkey_prefix = "%s"\n' "$2" "${3:-doorman-bench:}"
      [ "$1" = redis-cache ] && printf 'cache = true\n';;
    sentinel)
      printf 'store = "redis"\nredis_sentinel = { master = "mymaster", nodes = %s }\nkey_prefix = "%s"\n' "$urls" "${3:-doorman-bench:}";;
    cluster)
      printf 'store = "redis"\nredis_cluster = %s\nkey_prefix = "%s"\n' "$urls" "${3:-doorman-bench:}";;
    *) die "session_toml: unknown kind $1";;
  esac
}

# doorman_config NAME PORT SESSION [LISTEN_EXTRA]: write $RUN/NAME/proxy.toml (upstream = the
# harness's nginx; /public public, /dashboard and the default authenticated) and the users file.
doorman_config() {
  local name=$1 port=$2 session=$3 extra=${4:-} dir="$RUN/$1"
  mkdir -p "$dir"
  cp "$RUN/users.toml" "$dir/users.toml"
  cat > "$dir/proxy.toml" <<EOF
# generated by benches/$SCRIPT
[listen]
addr = "127.0.0.1:$port"
# Every load generator here connects from 127.0.0.1: the per-client cap would measure itself.
max_connections_per_client = 1000000
$extra

[upstream]
url = "http://127.0.0.1:$UPSTREAM_PORT"
# nginx's rows keep \`keepalive 512\` idle upstream connections per worker; doorman's default (64
# per thread) closes a burst's surplus and reconnects at 256 client connections.
pool_max_idle = 512

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
}

# doorman_start NAME PORT: run the config doorman_config wrote, RUST_LOG=$DOORMAN_LOG
doorman_start() {
  "$DOORMAN" check --config "$RUN/$1/proxy.toml" >&2 || die "generated $RUN/$1/proxy.toml is invalid"
  start_bg "$1" env RUST_LOG="$DOORMAN_LOG" "$DOORMAN" --config "$RUN/$1/proxy.toml"
  wait_port "$2" 30 "$1"
}

doorman_login() {  # doorman_login PORT [TIMEOUT_S, default 10] [SCHEME, default http; https: the
  # run's own certificate, not checked] -> prints "name=value" of the cookie
  local hdrs code
  hdrs=$(curl -s -k -m "${2:-10}" -D - -o /dev/null -X POST \
    --data-urlencode "username=$BENCH_USER" --data-urlencode "password=$BENCH_PASSWORD" \
    "${3:-http}://127.0.0.1:$1/_doorman/login" | tr -d '\r')
  code=$(echo "$hdrs" | awk 'NR==1{print $2}')
  case "$code" in 200|302|303) ;; *) echo "$hdrs" >&2; die "doorman login on :$1 gave '$code'";; esac
  echo "$hdrs" | awk 'tolower($1)=="set-cookie:" {split($2,a,";"); print a[1]; exit}'
}

# saw_user BODY USER: whether the upstream's answer BODY says it saw X-Auth-User: USER. The
# upstream (conf/nginx-upstream.conf.tmpl) names the user it saw in its body, "ok <user>" (the
# one spelling of that answer for every check here and in scale.sh).
saw_user() {
  [ "$1" = "ok $2" ]
}

# check_row ROW: one request as the row's load tool will send it (200, over HTTP/2 for h2load's
# rows, HTTP/1.1 for the others); with R_USER, the upstream saw that identity; with a cookie, the
# same request without it gets 401.
check_row() {
  local row=$1 url=${R_URL[$1]} cookie=${R_COOKIE[$1]} user=${R_USER[$1]:-} hdrs code args=() extra=()
  read -r -a extra <<< "${R_CURL[$1]:-}"
  [ -n "$cookie" ] && args=(-H "Cookie: $cookie")
  hdrs=$(curl -s -m 5 -D - -o "$RUN/body" "${extra[@]}" "${args[@]}" "$url" | tr -d '\r')
  code=$(echo "$hdrs" | awk 'NR==1{print $2}')
  case "${R_TOOL[$row]:-wrk}" in  # the protocol the load will speak
    h2load) echo "$hdrs" | head -1 | grep -q '^HTTP/2 ' || { echo "$hdrs" >&2; die "row $row: $url did not answer over HTTP/2"; };;
    *) echo "$hdrs" | head -1 | grep -q '^HTTP/1.1 ' || { echo "$hdrs" >&2; die "row $row: $url did not answer over HTTP/1.1"; };;
  esac
  [ "$code" = 200 ] || { echo "$hdrs" >&2; die "row $row: GET $url gave '$code', want 200"; }
  if [ -n "$user" ]; then
    saw_user "$(cat "$RUN/body")" "$user" \
      || { echo "$hdrs" >&2; die "row $row: the upstream did not see X-Auth-User: $user (it answered '$(head -c 80 "$RUN/body")')"; }
  fi
  if [ -n "$cookie" ]; then
    code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "${extra[@]}" "$url")
    [ "$code" = 401 ] || die "row $row: GET $url without the cookie gave $code, want 401"
  fi
  log "row $row ok: $(head -c 40 "$RUN/body" | tr '\n' ' ')"
}

# load_cmd ROW CONNS DURATION: set LOAD_CMD to the row's load (R_TOOL) for DURATION with CONNS
# connections; its stdout ends with a WRKRESULT line as conf/wrk-report.lua prints it (h2load:
# once h2load_result has read its output).
#   wrk         wrk -tTHREADS, keep-alive (http:// or https://: HTTP/1.1, TLS without ALPN)
#   h2load      h2load -tTHREADS -c CONNS -m H2_STREAMS (default 10) over TLS, ALPN h2; its
#               per-request log ($RUN/h2load.req) gives the percentiles
#   tls-full    $TLS_CLIENT (the tls-load example, benches/tls_load.rs): a new connection
#               per request, full handshakes only
#   tls-resume  the same, each connection resuming its predecessor's session
load_cmd() {
  local row=$1 c=$2 d=$3 url=${R_URL[$1]} cookie=${R_COOKIE[$1]} hdr=()
  [ -n "$cookie" ] && hdr=(-H "Cookie: $cookie")
  case "${R_TOOL[$row]:-wrk}" in
    wrk) LOAD_CMD=(wrk -t"$THREADS" -c"$c" -d"$d" --timeout 5s -s "$CONF/wrk-report.lua" "${hdr[@]}" "$url");;
    h2load) LOAD_CMD=(h2load -t"$THREADS" -c"$c" -m"${H2_STREAMS:-10}" -D"$d" -T 5s --log-file="$RUN/h2load.req" "${hdr[@]}" "$url");;
    tls-full|tls-resume)
      # In whole seconds with their unit: wrk also takes a bare number, proxy.toml's reader does not.
      LOAD_CMD=("$TLS_CLIENT" --port "$(port_of "$url")" --path "/${url#https://*/}" --conns "$c" --duration "$(seconds_of "$d")s")
      [ -n "$cookie" ] && LOAD_CMD+=(--cookie "$cookie")
      [ "${R_TOOL[$row]}" = tls-resume ] && LOAD_CMD+=(--resume);;
    *) die "row $row: unknown load tool ${R_TOOL[$row]}";;
  esac
}
# h2load_result OUT LOG: append to OUT the WRKRESULT line of h2load's summary OUT and its
# per-request LOG (start µs, status, duration µs)
h2load_result() {
  python3 - "$1" "$2" >> "$1" <<'PY'
import re, sys
out = open(sys.argv[1]).read()
m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", out)
st = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
rps = re.search(r"finished in [^,]+, ([\d.]+) req/s", out)
if not (m and st and rps):
    sys.exit(0)   # no WRKRESULT: run_wrk reports the output
lat = []
for line in open(sys.argv[2]):
    f = line.split()
    if len(f) >= 3:
        lat.append(int(f[2]) / 1000.0)
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(len(lat) * p / 100.0))] if lat else 0.0
print("WRKRESULT rps=%s p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f requests=%d non2xx=%d sockerr=%d" % (
    rps.group(1), pct(50), pct(90), pct(99), lat[-1] if lat else 0.0, int(m.group(3)),
    int(st.group(2)) + int(st.group(3)) + int(st.group(4)), int(m.group(6)) + int(m.group(7))))
PY
}

# seconds_of DURATION: wrk's 10s / 2m / 1h (or a bare number of seconds) in whole seconds
seconds_of() {
  case $1 in
    *s) echo "${1%s}";; *m) echo $(( ${1%m} * 60 ));; *h) echo $(( ${1%h} * 3600 ));; *) echo "$1";;
  esac
}
# run_wrk ROW CONNS DURATION REP(0 = warm-up, not recorded): one load_cmd run, appended to $RAW:
# row conns rep rps p50 p90 p99 max requests non2xx sockerr wrk% proxy% upstream% redis% all%
# other% proxy_us/req redis_us/req all_us/req part% part_us/req (CPU % of one core; us = CPU µs
# per request; part = R_PART's group alone, "-" without one). "proxy" is every group of R_SUT.
run_wrk() {
  local row=$1 c=$2 d=$3 rep=$4 f="$RUN/wrk.out"
  local sut_p up_p rd_p pt_p s0 u0 r0 b0 p0 s1 u1 r1 b1 p1 t0 t1
  sut_p=$(group_pids "${R_SUT[$row]}"); up_p=$(group_pids upstream); rd_p=$(group_pids "${R_REDIS[$row]:-redis}")
  pt_p=$(group_pids "${R_PART[$row]:-}")
  s0=$(ticks_of $sut_p); u0=$(ticks_of $up_p); r0=$(ticks_of $rd_p); p0=$(ticks_of $pt_p); b0=$(busy_ticks); t0=$(date +%s.%N)
  local TIMEFORMAT='%U %S' wrc sampler=""
  rm -f "$RUN/h2load.req" "$RUN/split"
  load_cmd "$row" "$c" "$d"
  # A server of several processes (nginx's workers): how the row's connections were spread
  # over them halfway through, for the log line. nginx's row b moves by a quarter between reps
  # with it (docs/BENCHMARKS.md, "Row b has two speeds"); doorman is one process and is not split.
  # Not for the upstream's own row: one worker, and its port also holds the proxies' pools.
  if [ "$rep" != 0 ] && [ "${R_SUT[$row]}" != upstream ] && [ "$(echo "$sut_p" | wc -w)" -gt 1 ] \
    && command -v ss > /dev/null; then
    { sleep "$(awk -v s="$(seconds_of "$d")" 'BEGIN{print s/2}')"; conns_per_process "${R_URL[$row]}" $sut_p > "$RUN/split"; } &
    sampler=$!
  fi
  # Bounded: h2load has been seen to keep some of its clients going long past -D (one warm-up
  # at 256 connections ran for 15 minutes). A load tool still running 30 s after its duration
  # is killed, and its row fails below for want of a result, instead of hanging the run.
  { time timeout -k 5 $(( $(seconds_of "$d") + 30 )) "${LOAD_PRIO[@]}" "${LOAD_PIN[@]}" "${LOAD_CMD[@]}" > "$f" 2>&1; wrc=$?; } 2> "$RUN/wrk.time"
  t1=$(date +%s.%N)
  [ -n "$sampler" ] && wait "$sampler"
  s1=$(ticks_of $sut_p); u1=$(ticks_of $up_p); r1=$(ticks_of $rd_p); p1=$(ticks_of $pt_p); b1=$(busy_ticks)
  [ "$rep" = 0 ] && return 0
  [ "${R_TOOL[$row]:-wrk}" = h2load ] && h2load_result "$f" "$RUN/h2load.req"
  local res; res=$(grep '^WRKRESULT' "$f") || { cat "$f" >&2; die "${R_TOOL[$row]:-wrk} failed for row $row (exit $wrc$( [ "$wrc" = 124 ] && echo ": still running 30 s after its duration, killed"))"; }
  case "$res" in *" resumed="*) echo -e "$row\t$c\t$rep\t${res##* resumed=}" | sed 's/ full=/\t/' >> "$OUT/handshakes.tsv";; esac
  python3 - "$row" "$c" "$rep" "$res" "$t0" "$t1" $((s1-s0)) $((u1-u0)) $((r1-r0)) $((b1-b0)) "$HZ" \
    "$( [ "${R_SUT[$row]}" = upstream ] && echo 1 || echo 0 )" "$(tail -1 "$RUN/wrk.time")" \
    "$( [ -n "${R_PART[$row]:-}" ] && echo $((p1-p0)) || echo - )" >> "$RAW" <<'PY'
import sys
row, c, rep, res, t0, t1, s, u, r, b, hz, upin, wt, p = sys.argv[1:]
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
    us(s), us(r), us(b), "-" if p == "-" else "%.0f" % pct(p), "-" if p == "-" else us(p)]))
PY
  log "$(tail -1 "$RAW" | awk -F'\t' '{printf "row %s c=%-4s rep=%s %8s req/s p50=%sms p99=%sms non2xx=%s sockerr=%s cpu%% wrk/proxy/up/redis/other/all=%s/%s/%s/%s/%s/%s  proxy %s us/req%s", $1,$2,$3,$4,$5,$7,$10,$11,$12,$13,$14,$15,$17,$16,$18, ($22=="-" ? "" : " (auth server " $22 ")")}')$( [ -s "$RUN/split" ] && echo "  conns per process $(cat "$RUN/split")")"
}

# conns_per_process URL PID...: the established connections to URL's port held by each of
# PIDs, most first, as "61/3" (a process holding none is left out: "64" is all on one).
conns_per_process() {
  local port pids
  port=$(port_of "$1"); shift
  pids=" $* "
  ss -Htnp state established "( sport = :$port )" 2> /dev/null \
    | grep -o 'pid=[0-9]*' | sort | uniq -c \
    | awk -v pids="$pids" '{ split($2, p, "="); if (index(pids, " " p[2] " ")) print $1 }' \
    | sort -rn | paste -sd/ -
}

# run_measured ROW CONNS DURATION REP: run_wrk, discarding and repeating (after waiting for
# quiet) a run whose foreign CPU load exceeded MAX_OTHER, at most RETRIES times; a run kept
# anyway is marked '!' in RAW.
run_measured() {
  local try other
  for ((try=0; ; try++)); do
    run_wrk "$@"
    [ "$QUICK" = 1 ] || sleep 1
    other=$(tail -1 "$RAW" | cut -f17)
    [ "$other" -le "$MAX_OTHER" ] && return 0
    if [ "$try" -ge "$RETRIES" ]; then
      log "WARN: keeping a contaminated run (other=$other%)"
      sed -i '$ s/$/\t!/' "$RAW"; return 0
    fi
    log "foreign CPU load (other=$other%): discarding the run, waiting for quiet"
    sed -i '$d' "$RAW"; wait_quiet
  done
}
