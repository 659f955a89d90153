#!/usr/bin/env bash
# benches/scale.sh -- doorman at scale (issue 7): memory with 10,000 idle keep-alive
# connections, and authenticated throughput with 1,000,000 sessions in the store vs 1,000.
#
# Starts, on free loopback ports only, each in its own process group (benches/lib.sh, shared
# with benches/run.sh): the harness's nginx upstream (1 worker, fixed 200 "ok\n") and:
#
#   idle      one doorman (public route /public, max_connections = N + 1000,
#             idle_timeout = 10m). benches/idle_conns.py opens N connections, makes one
#             GET /public on each (keep-alive; at most 64 in flight), and holds them idle.
#             Read from /proc, 5 s later (doorman's upstream pool has idled out): doorman's
#             VmRSS before, with the N connections held, and after they closed; VmHWM; its
#             open fds (proof that it holds them). Target: <= 150 MB.
#   idle-tls  the same hold over TLS (idle_conns.py --tls: a full handshake, one GET /public or
#             /dashboard, then idle), for doorman ([listen] tls) and for nginx
#             (conf/nginx-tls.conf.tmpl, as run.sh's row j: workers = cores, session cache,
#             tickets, h2), one after the other, both with the run's ECDSA P-256 certificate
#             (openssl req, into OUT/certs). RSS before, held, after (nginx: master + workers
#             summed), so RSS per TLS connection of each. Target (issue 20): doorman's <= nginx's.
#   websockets  one doorman (embedded store) in front of benches/ws_conns.py's WebSocket
#             upstream; N WebSockets opened through it with sessions (M of them as the user
#             `victim`) and held idle: VmRSS before / held / after, so RSS per connection; then
#             `doorman sessions revoke --user victim`: all M must close (Close 1008 "session
#             ended") within the stated latency, and no other (DESIGN.md §11). Raises the
#             open-file limit (two sockets per tunnel) when allowed to.
#   sessions  per store (redis, embedded) and per size (default 1,000 and 1,000,000): its own
#             doorman (and, for redis, its own redis-server, so the small store is not measured
#             inside the big one's keyspace), seeded before doorman starts by the bench-seed
#             example (benches/seed.rs: the embedded store's own bulk insert in one
#             transaction; for Redis, HSET + PEXPIRE per key in the store's layout through
#             redis-cli --pipe). Each doorman is checked to accept a *seeded* session (the
#             layout is the one it reads), then the harness logs in once and wrk sends that
#             cookie to GET /dashboard, as rows e/f of run.sh do. Rows are interleaved
#             (rep -> row), medians of reps. Target: the biggest size within 10 % of the
#             smallest, per store. Seeding time is recorded.
#
# Output: OUT/scale.md (stdout too), idle.tsv, raw.tsv (run.sh's columns), seed.tsv,
# versions.txt and the servers' logs; OUT defaults to benches/results/scale-<stamp>/.
#
# Usage:
#   benches/scale.sh [--quick] [--doorman PATH] [--seed PATH] [--parts idle,idle-tls,websockets,sessions]
#                    [--idle-conns 10000] [--ws-conns 10000] [--ws-victims 100] [--sizes "1000 1000000"] [--stores redis,embedded]
#                    [--conns 64] [--duration 10s] [--reps 3] [--warmup 2s] [--threads 1]
#                    [--pin] [--nice N] [--wait-quiet 60] [--max-other 20] [--retries 2]
#                    [--no-install] [--out DIR]
#   --quick    smoke mode, ~25 s: 300 idle connections (plain, and TLS to each server), 300 WebSockets (10 victims), sizes "100 2000", 1 s per row, one rep,
#              no warm-up, no waiting for quiet. Figures from it mean nothing;
#              tests/bench_scale.rs runs it.
#   --doorman PATH, --seed PATH  use these binaries (doorman, and the bench-seed example)
#              instead of `cargo build --release --features bench-seed --bin doorman
#              --example bench-seed`.
#   Other options as in benches/run.sh. Env: DOORMAN_BENCH_LOG (RUST_LOG, default warn).
#
# Needs: nginx, wrk, redis-server, redis-cli, curl, python3, openssl (installed with apt-get when
# missing, unless --no-install), and an open-file hard limit above N + 64 for the client.
set -uo pipefail

SCRIPT=scale.sh
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PARTS="idle,idle-tls,websockets,sessions"; IDLE_CONNS=10000; WS_CONNS=10000; WS_VICTIMS=100; SIZES="1000 1000000"; STORES="redis,embedded"
CONNS=64; DURATION=10s; REPS=3; WARMUP=2s; THREADS=1
PIN=0; NICE=0; INSTALL=1; OUT=""; WAIT_QUIET=60; MAX_OTHER=20; RETRIES=2; QUICK=0
DOORMAN=""; SEED=""
DOORMAN_LOG=${DOORMAN_BENCH_LOG:-warn}

while [ $# -gt 0 ]; do
  case "$1" in
    --seed) SEED=$2; shift 2;;
    --parts) PARTS=$2; shift 2;;
    --idle-conns) IDLE_CONNS=$2; shift 2;;
    --ws-conns) WS_CONNS=$2; shift 2;;
    --ws-victims) WS_VICTIMS=$2; shift 2;;
    --sizes) SIZES=$2; shift 2;;
    --stores) STORES=$2; shift 2;;
    *) shared_option "$@" || die "unknown option $1 (see --help)"; shift "$SHIFTS";;
  esac
done
POOL_SETTLE=5
if [ "$QUICK" = 1 ]; then
  POOL_SETTLE=1; IDLE_CONNS=300; WS_CONNS=300; WS_VICTIMS=10; SIZES="100 2000"; DURATION=1s; REPS=1; WARMUP=0
  WAIT_QUIET=0; MAX_OTHER=100000; RETRIES=0
fi
part() { case ",$PARTS," in *",$1,"*) return 0;; *) return 1;; esac; }
store() { case ",$STORES," in *",$1,"*) return 0;; *) return 1;; esac; }
part sessions && store redis && NEED_REDIS=1 || NEED_REDIS=0
[ -n "$SIZES" ] && [ -n "$STORES" ] || die "--sizes and --stores must not be empty"

# ---------------------------------------------------------------- install, build
pkgs=()
command -v nginx >/dev/null || pkgs+=(nginx)
command -v wrk >/dev/null || pkgs+=(wrk)
command -v curl >/dev/null || pkgs+=(curl)
command -v python3 >/dev/null || pkgs+=(python3)
[ "$PIN" = 1 ] && ! command -v taskset >/dev/null && pkgs+=(util-linux)
part idle-tls && ! command -v openssl >/dev/null && pkgs+=(openssl)
if [ $NEED_REDIS = 1 ]; then
  command -v redis-server >/dev/null || pkgs+=(redis-server)
  command -v redis-cli >/dev/null || pkgs+=(redis-tools)
fi
install_pkgs "${pkgs[@]}"

if [ -z "$DOORMAN" ] || { part sessions && [ -z "$SEED" ]; }; then
  # One build for both: the seeder needs the bench-seed feature (EmbeddedStore::insert_many),
  # which only adds a function doorman never calls, so the doorman binary behaves the same.
  log "cargo build --release --features bench-seed --bin doorman --example bench-seed"
  (cd "$ROOT" && cargo build --release --quiet --features bench-seed --bin doorman --example bench-seed) || die "cargo build --release failed"
  target="${CARGO_TARGET_DIR:-$ROOT/target}/release"
  DOORMAN=${DOORMAN:-$target/doorman}; SEED=${SEED:-$target/examples/bench-seed}
fi
build_doorman   # DOORMAN is set: only checked and made absolute
if part sessions; then
  [ -x "$SEED" ] || die "no bench-seed binary at $SEED"
  SEED=$(cd "$(dirname "$SEED")" && pwd)/$(basename "$SEED")
fi

OUT=${OUT:-$HERE/results/scale-$(date +%Y%m%d-%H%M%S)}
init_run
RAW="$OUT/raw.tsv"; : > "$RAW"; : > "$OUT/idle.tsv"; : > "$OUT/idle-tls.tsv"; : > "$OUT/seed.tsv"; : > "$OUT/websockets.tsv"
{
  echo "date: $(date -Is)  host: $(uname -srm)  cpus: $NCPU ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo))"
  echo "doorman: $DOORMAN ($(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'))  RUST_LOG=$DOORMAN_LOG"
  echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //')  wrk: $(wrk --version 2>&1 | awk 'NR==1{print $2}')$( [ $NEED_REDIS = 1 ] && echo "  redis: $(redis-server --version | awk '{print $3}')")  python: $(python3 --version | awk '{print $2}')"
  echo "parts: $PARTS; idle connections: $IDLE_CONNS; sizes: $SIZES; stores: $STORES"
  echo "wrk -t$THREADS -d$DURATION, conns: $CONNS, reps: $REPS, warm-up: $WARMUP; pin: $PIN; nice: $NICE$( [ "$QUICK" = 1 ] && echo "; QUICK smoke run")"
} | tee "$OUT/versions.txt" >&2

read -r UPSTREAM_PORT <<< "$(free_ports 1)"
nginx_up upstream nginx-upstream.conf.tmpl "$UPSTREAM_PORT" 1
make_users

# ---------------------------------------------------------------- part 1: idle connections
IDLE_CLIENT=""
cleanup_hook() {  # the clients holding idle connections, if a failure left them running
  [ -n "$IDLE_CLIENT" ] && kill "$IDLE_CLIENT" 2>/dev/null
  [ -n "${WS_CLIENT:-}" ] && kill "$WS_CLIENT" 2>/dev/null
  return 0
}
kib() { awk -v f="$2:" '$1==f {print $2}' "/proc/$1/status" 2>/dev/null; }
# hold_idle NAME PORT PATH TAG [--tls]: IDLE_CONNS connections (TLS with --tls) to the server
# NAME, one GET PATH each (keep-alive), held idle by benches/idle_conns.py, then closed. Memory
# is summed over NAME's process group (doorman alone; nginx's master and workers). Sets HELD
# FAILED SECS FDS STILL and, in KiB, RSS0 (before) RSS1 HWM (held) RSS2 (after close); dies
# when a connection got no 200 or the server closed one while held. TAG prefixes the log lines.
hold_idle() {
  local name=$1 port=$2 path=$3 tag=$4 tls=${5:-} line ready p
  sleep 0.5
  RSS0=$(mem_of "$name" VmRSS)
  log "$tag: $name VmRSS $((RSS0 / 1024)) MiB before; opening $IDLE_CONNS connections"
  # shellcheck disable=SC2086 # $tls: empty or --tls
  coproc IDLE { exec python3 "$HERE/idle_conns.py" $tls --port "$port" --count "$IDLE_CONNS" --path "$path" --parallel 64 2>&1; }
  local in=${IDLE[0]} out=${IDLE[1]} cpid=$IDLE_PID
  IDLE_CLIENT=$cpid
  read -r -t 600 line <&"$in" || die "$tag: the client gave no READY line for $name (see $OUT/run.log)"
  read -r ready HELD FAILED SECS <<< "$line"
  [ "$ready" = READY ] || die "$tag: the client said: $line"
  # Let doorman's pooled upstream connections (up to --parallel of them) idle out
  # (pool_idle_timeout, 4 s): what is left is the client connections alone.
  sleep "$POOL_SETTLE"
  RSS1=$(mem_of "$name" VmRSS); HWM=$(mem_of "$name" VmHWM)
  FDS=0
  for p in $(group_pids "$name"); do FDS=$((FDS + $(find "/proc/$p/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l))); done
  log "$tag: $name held $HELD ($FAILED failed, opened in ${SECS}s): VmRSS $((RSS1 / 1024)) MiB, VmHWM $((HWM / 1024)) MiB, $FDS fds"
  echo >&"$out"
  read -r -t 60 line <&"$in" || die "$tag: the client did not close ($name)"
  STILL=${line#CLOSED }
  wait "$cpid" 2>/dev/null; IDLE_CLIENT=""
  sleep 2
  RSS2=$(mem_of "$name" VmRSS)
  log "$tag: $STILL of $HELD still open at the end; after close $name VmRSS $((RSS2 / 1024)) MiB"
  [ "$FAILED" = 0 ] || die "$tag: $FAILED of $IDLE_CONNS connections to $name got no 200 keep-alive answer"
  [ "$STILL" = "$HELD" ] || die "$tag: $name closed $((HELD - STILL)) idle connections while held"
}
idle_part() {
  local port
  read -r port <<< "$(free_ports 1)"
  doorman_config dm-idle "$port" "$(session_toml embedded)" \
    "max_connections = $((IDLE_CONNS + 1000))
idle_timeout = \"10m\""
  doorman_start dm-idle "$port"
  hold_idle dm-idle "$port" /public idle
  printf 'conns\t%s\nheld\t%s\nfailed\t%s\nopen_s\t%s\nfds\t%s\nstill_open\t%s\nrss_before\t%s\nrss_held\t%s\nhwm\t%s\nrss_after\t%s\n' \
    "$IDLE_CONNS" "$HELD" "$FAILED" "$SECS" "$FDS" "$STILL" "$RSS0" "$RSS1" "$HWM" "$RSS2" > "$OUT/idle.tsv"
}
part idle && idle_part

# ---------------------------------------------------------------- part 1c: idle TLS connections
# hold_idle_tls NAME PORT PATH: hold_idle over TLS; one line in idle-tls.tsv:
# name conns held failed open_s fds still_open rss_before rss_held hwm rss_after (KiB).
hold_idle_tls() {
  hold_idle "$1" "$2" "$3" idle-tls --tls
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$IDLE_CONNS" "$HELD" "$FAILED" "$SECS" "$FDS" \
    "$STILL" "$RSS0" "$RSS1" "$HWM" "$RSS2" >> "$OUT/idle-tls.tsv"
}
idle_tls_part() {
  local dport nport
  read -r dport nport <<< "$(free_ports 2)"
  make_certs "$OUT/certs"
  doorman_config dm-idle-tls "$dport" "$(session_toml embedded)" \
    "max_connections = $((IDLE_CONNS + 1000))
idle_timeout = \"10m\"
tls = { cert = \"$OUT/certs/ecdsa.pem\", key = \"$OUT/certs/ecdsa.key\" }"
  doorman_start dm-idle-tls "$dport"
  hold_idle_tls dm-idle-tls "$dport" /public
  nginx_h2
  nginx_up nginx-idle-tls nginx-tls.conf.tmpl "$nport" "$(nproc)" CERT="$OUT/certs/ecdsa.pem" KEY="$OUT/certs/ecdsa.key" \
    "LISTEN_H2=$NGINX_LISTEN_H2" "HTTP2_ON=$NGINX_HTTP2_ON"
  hold_idle_tls nginx-idle-tls "$nport" /dashboard
}
part idle-tls && idle_tls_part

# ---------------------------------------------------------------- part 1b: idle WebSockets
# ws_part: doorman (embedded store) in front of benches/ws_conns.py's WebSocket upstream; the
# client opens WS_CONNS WebSockets through it with a session (WS_VICTIMS of them as the user
# `victim`, the rest as BENCH_USER) and holds them idle. Read: doorman's VmRSS before, held and
# after, so RSS per connection; then `doorman sessions revoke --user victim`: how many of the
# victim's sockets closed (with the Close frame 1008 "session ended") and how fast, and that no
# other socket did (DESIGN.md §11). Each tunnel holds two sockets, so this raises the open-file
# limit first (root may; otherwise WS_CONNS must fit in the limit it has).
WS_CLIENT=""
ws_part() {
  local port wsport pid rss0 rss1 rss2 hwm line ready held failed secs fds hash cookie victim
  local ended victims_closed victims max_ms others frames
  read -r port wsport <<< "$(free_ports 2)"
  local fit asked=$WS_CONNS
  ulimit -Hn $((WS_CONNS * 2 + 1000)) 2>/dev/null; ulimit -n "$(ulimit -Hn)" 2>/dev/null
  fit=$(( ($(ulimit -n) - 200) / 2 ))
  if [ "$WS_CONNS" -gt "$fit" ]; then
    log "websockets: the open-file limit ($(ulimit -n), not raisable here) holds at most $fit tunnels of 2 sockets: measuring $fit, not $WS_CONNS"
    WS_CONNS=$fit
  fi
  start_bg ws-upstream python3 "$HERE/ws_conns.py" server --port "$wsport" --count "$WS_CONNS"
  wait_port "$wsport" 10 ws-upstream
  UPSTREAM_PORT=$wsport doorman_config dm-ws "$port" "$(session_toml embedded)" \
    "max_connections = $((WS_CONNS + 1000))"
  hash=$(awk -F'"' '/^password/ {print $2; exit}' "$RUN/users.toml")
  printf '\n[users.victim]\npassword = "%s"\ngroups = []\n' "$hash" >> "$RUN/dm-ws/users.toml"
  doorman_start dm-ws "$port"
  pid=$(pid_of dm-ws)
  cookie=$(doorman_login "$port")
  victim=$(BENCH_USER=victim doorman_login "$port")
  sleep 1
  rss0=$(kib "$pid" VmRSS)
  log "websockets: doorman VmRSS $((rss0 / 1024)) MiB before; opening $WS_CONNS WebSockets ($WS_VICTIMS as victim)"
  coproc WS { exec python3 "$HERE/ws_conns.py" client --port "$port" --count "$WS_CONNS" \
    --cookie "$cookie" --victim-cookie "$victim" --victims "$WS_VICTIMS" --parallel 64 2>&1; }
  WS_CLIENT=$WS_PID
  local in=${WS[0]} out=${WS[1]}
  read -r -t 600 line <&"$in" || die "websockets: the client gave no READY line (see $OUT/run.log)"
  read -r ready held failed secs <<< "$line"
  [ "$ready" = READY ] || die "websockets: the client said: $line"
  sleep 3
  rss1=$(kib "$pid" VmRSS); hwm=$(kib "$pid" VmHWM)
  fds=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
  log "websockets: $held held ($failed failed, opened in ${secs}s): VmRSS $((rss1 / 1024)) MiB, $fds fds"
  echo MARK >&"$out"
  "$DOORMAN" sessions revoke --user victim --config "$RUN/dm-ws/proxy.toml" >&2 \
    || die "websockets: sessions revoke failed"
  read -r -t 30 line <&"$in" || die "websockets: the client gave no ENDED line"
  read -r ended victims_closed victims max_ms others frames <<< "$line"
  [ "$ended" = ENDED ] || die "websockets: the client said: $line"
  log "websockets: revoke closed $victims_closed of $victims victim sockets (slowest $max_ms ms, $frames with the Close 1008), $others others"
  echo >&"$out"
  wait "$WS_CLIENT" 2>/dev/null; WS_CLIENT=""
  sleep 2
  rss2=$(kib "$pid" VmRSS)
  printf 'conns\t%s\nheld\t%s\nfailed\t%s\nopen_s\t%s\nfds\t%s\nrss_before\t%s\nrss_held\t%s\nhwm\t%s\nrss_after\t%s\nvictims\t%s\nvictims_closed\t%s\nclose_frames\t%s\nslowest_ms\t%s\nothers_closed\t%s\n' \
    "$WS_CONNS" "$held" "$failed" "$secs" "$fds" "$rss0" "$rss1" "$hwm" "$rss2" \
    "$victims" "$victims_closed" "$frames" "$max_ms" "$others" > "$OUT/websockets.tsv"
  printf 'asked\t%s\nfd_limit\t%s\n' "$asked" "$(ulimit -n)" >> "$OUT/websockets.tsv"
  [ "$failed" = 0 ] || die "websockets: $failed of $WS_CONNS WebSockets were not opened"
  [ "$victims_closed" = "$victims" ] || die "websockets: only $victims_closed of $victims victim sockets closed"
  [ "$others" = 0 ] || die "websockets: revoking the victim closed $others other sockets"
}
part websockets && ws_part

# ---------------------------------------------------------------- part 2: sessions
# seed_store STORE SIZE NAME: fill the store NAME's doorman will use; one line in seed.tsv
seed_store() {
  local store=$1 size=$2 name=$3 t0 t1 out n what
  t0=$(date +%s.%N)
  if [ "$store" = redis ]; then
    out=$("$SEED" redis --prefix doorman-bench: --count "$size" 2>"$RUN/$name.seed.log" \
      | redis-cli -p "${REDIS_OF[$name]}" --pipe 2>&1) \
      || { cat "$RUN/$name.seed.log" >&2; echo "$out" >&2; die "seeding $name failed"; }
    echo "$out" | grep -q "errors: 0," || { echo "$out" >&2; die "redis-cli --pipe reported errors seeding $name"; }
    t1=$(date +%s.%N)
    n=$(redis-cli -p "${REDIS_OF[$name]}" DBSIZE)
    what="$(redis-cli -p "${REDIS_OF[$name]}" INFO memory | tr -d '\r' | awk -F: '$1=="used_memory"{printf "%.1f", $2/1048576}')"
  else
    "$SEED" embedded --path "$RUN/$name/sessions.db" --count "$size" >&2 || die "bench-seed embedded failed"
    t1=$(date +%s.%N)
    n=$size
    what=$(du -k "$RUN/$name/sessions.db" | awk '{printf "%.1f", $1/1024}')
  fi
  [ "$n" -ge "$size" ] || die "seeding $name: $n records, want $size"
  echo -e "$name\t$store\t$size\t$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')\t$what" >> "$OUT/seed.tsv"
  log "seeded $name: $size sessions in $(tail -1 "$OUT/seed.tsv" | cut -f4) s (store: $what MiB)"
}

# check_seeded NAME PORT SIZE COOKIE_NAME: doorman reads a seeded session as its user's
check_seeded() {
  local last=$(( $3 - 1 )) id body
  id=$("$SEED" cookie --index "$last") || die "bench-seed cookie failed"
  body=$(curl -s -m 5 -H "Cookie: $4=$id" "http://127.0.0.1:$2/dashboard")
  saw_user "$body" "seed-$(( last % 10000 ))" \
    || { echo "$body" >&2; die "$1: doorman did not accept seeded session $last (layout drift?)"; }
  log "$1: seeded session $last accepted as seed-$(( last % 10000 ))"
}

sessions_part() {
  local store size name port rport cookie
  declare -gA REDIS_OF
  ORDER=()
  for store in ${STORES//,/ }; do
    case "$store" in redis|embedded) ;; *) die "unknown store '$store' (redis, embedded)";; esac
    for size in $SIZES; do
      name="dm-$store-$size"
      read -r port rport <<< "$(free_ports 2)"
      if [ "$store" = redis ]; then
        redis_up "redis-$size" "$rport"
        REDIS_OF[$name]=$rport
        doorman_config "$name" "$port" "$(session_toml redis "$rport")"
      else
        doorman_config "$name" "$port" "$(session_toml embedded)"
      fi
      seed_store "$store" "$size" "$name"
      doorman_start "$name" "$port"
      cookie=$(doorman_login "$port"); [ -n "$cookie" ] || die "$name: login set no cookie"
      check_seeded "$name" "$port" "$size" "${cookie%%=*}"
      ORDER+=("$store-$size")
      R_URL[$store-$size]="http://127.0.0.1:$port/dashboard"; R_COOKIE[$store-$size]=$cookie
      R_SUT[$store-$size]=$name; R_USER[$store-$size]=$BENCH_USER
      R_REDIS[$store-$size]=$( [ "$store" = redis ] && echo "redis-$size" || echo none )
      check_row "$store-$size"
      echo -e "$store-$size\tready\t$(mem_of "$name" VmRSS)" >> "$OUT/rss.tsv"
    done
  done

  # interleaved (rep -> connections -> row) so that drift hits every size alike
  wait_quiet
  if [ "$WARMUP" != 0 ]; then
    for c in $CONNS; do for row in "${ORDER[@]}"; do
      log "warm-up row $row c=$c $WARMUP"; run_wrk "$row" "$c" "$WARMUP" 0
    done; done
  fi
  for ((rep=1; rep<=REPS; rep++)); do
    for c in $CONNS; do for row in "${ORDER[@]}"; do
      run_measured "$row" "$c" "$DURATION" "$rep"
    done; done
  done
  for row in "${ORDER[@]}"; do echo -e "$row\tpeak\t$(mem_of "${R_SUT[$row]}" VmHWM)"; done >> "$OUT/rss.tsv"
}
: > "$OUT/rss.tsv"
part sessions && sessions_part
stop_all

# ---------------------------------------------------------------- report
python3 "$HERE/scale_report.py" --out "$OUT" --quick "$QUICK" > "$OUT/scale.md" || die "scale_report.py failed"
cat "$OUT/scale.md"
echo "table: $OUT/scale.md  logs: $OUT" >&2
