#!/usr/bin/env bash
# benches/failover.sh -- a Redis master dies (kill -9) under load in front of three doormen:
# how long do they answer 503, how long until each serves again by itself, which sessions are
# lost, and is every answer right meanwhile? (issue 19, DESIGN.md §13)
#
# Two set-ups, one after the other, each on free loopback ports:
#   sentinel  one master, two replicas, three Sentinels (quorum 2, down-after 1 s, failover
#             timeout 5 s, as tests/redis_failover.rs); doorman's `redis_sentinel`
#   cluster   six `redis-server --cluster-enabled yes` (three masters with one replica each,
#             cluster-node-timeout 1 s); doorman's `redis_cluster`, all six as seeds
# Each time: three doormen (with [admin] for /readyz) in front of nginx; benches/failover.py
# logs --sessions sessions in over them, and 4 more it logs out; then one wrk per doorman
# (--conns connections, conf/wrk-failover.lua: GETs with a live session, a made-up cookie,
# and public ones) and failover.py's prober (each doorman every 10 ms: a session whose record
# is on the master that will die, plus a logged-out, made-up or no cookie, or /public; /readyz
# every 100 ms) run, and a third of --duration in, the master holding the most sessions is
# killed. Load and prober go on for the rest of --duration, and at least until every doorman
# has served the probe session again for 2 s; then every session is asked for once more.
#
# Figures per set-up: the 503 window (first to last 503 the prober saw after the kill), the
# time until each doorman serves the probe again (no restart), sessions lost of those
# acknowledged before the kill, /readyz's not-ready window, wrk's requests and answers. A
# table goes to stdout and OUT/summary.md, everything to OUT/verdict.json; the prober's own
# verdicts and timelines are OUT/<setup>.json and OUT/<setup>-timeline.tsv.
#
# It fails when an answer was wrong (failover.py's and wrk-failover.lua's rules: a 200 on a
# protected route without a valid session, a 503 that deletes doorman's cookie, a status
# other than 200/401/503, a public route not 200, no answer), when a doorman does not serve
# again within --deadline s of the kill, or when no replica took over.
#
#   benches/failover.sh [--quick] [--setups sentinel,cluster] [--duration S] [--conns N]
#       [--sessions N] [--deadline S] [--doorman PATH] [--no-install] [--out DIR]
#
# Defaults: 30 s of load per set-up, kill at 10 s, 16 connections per doorman, 100 sessions,
# deadline 60 s; builds doorman --release (with bench-seed, as run.sh) unless --doorman.
# --quick: kill after 2 s of load, stop when every doorman has served again for 1 s (at least
# 4 s after the kill), 4 connections per doorman, 12 sessions: about 35 s for both set-ups with
# a debug build; tests/bench_failover.rs runs it. Env: DOORMAN_BENCH_LOG (RUST_LOG, default warn).
set -uo pipefail
SCRIPT=failover.sh
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

QUICK=0; DOORMAN=""; INSTALL=1; OUT=""; PIN=0; NICE=0; DURATION=30; CONNS=16; THREADS=1
WAIT_QUIET=0; SETUPS="sentinel,cluster"; SESSIONS=100; DEADLINE=60
DOORMAN_LOG=${DOORMAN_BENCH_LOG:-warn}
while [ $# -gt 0 ]; do
  case "$1" in
    --setups) SETUPS=$2; shift 2;;
    --sessions) SESSIONS=$2; shift 2;;
    --deadline) DEADLINE=$2; shift 2;;
    *) shared_option "$@" || die "unknown option $1 (see --help)"; shift "$SHIFTS";;
  esac
done
PRE=$(( ${DURATION%s} / 3 )); SETTLE=2
if [ "$QUICK" = 1 ]; then DURATION=6; PRE=2; CONNS=4; SESSIONS=12; SETTLE=1; DEADLINE=45; fi
DURATION=${DURATION%s}
for v in DURATION CONNS SESSIONS DEADLINE; do
  case "${!v}" in ''|*[!0-9]*|0) die "--${v,,} takes a whole number above 0, not '${!v}'";; esac
done
[ "$PRE" -ge 1 ] || die "--duration below 3 s leaves no load before the kill"
for s in ${SETUPS//,/ }; do
  case "$s" in sentinel|cluster) ;; *) die "unknown set-up '$s' (sentinel, cluster)";; esac
done

pkgs=()
command -v nginx >/dev/null || pkgs+=(nginx)
command -v wrk >/dev/null || pkgs+=(wrk)
command -v redis-server >/dev/null || pkgs+=(redis-server)
command -v redis-cli >/dev/null || pkgs+=(redis-tools)
command -v python3 >/dev/null || pkgs+=(python3)
install_pkgs "${pkgs[@]}"
build_doorman
OUT=${OUT:-$HERE/results/failover-$(date +%Y%m%d-%H%M%S)}
init_run
{
  echo "date: $(date -Is)  host: $(uname -srm)  cpus: $NCPU ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo))"
  echo "doorman: $DOORMAN ($(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'))  RUST_LOG=$DOORMAN_LOG"
  echo "redis: $(redis-server --version | awk '{print $3}')  nginx: $(nginx -v 2>&1 | sed 's/.*: //')  wrk: $(wrk --version 2>&1 | awk 'NR==1{print $2}')  python: $(python3 --version | awk '{print $2}')"
  echo "set-ups: $SETUPS; load ${DURATION}s per set-up, kill at ${PRE}s; wrk -t1 -c$CONNS per doorman; $SESSIONS sessions$( [ "$QUICK" = 1 ] && echo "; QUICK smoke run")"
} | tee "$OUT/versions.txt" >&2
make_users
PREFIX="failover:"

# ---------------------------------------------------------------- the two Redis set-ups
# Each sets SESSION (the [session] body) and DATA_PORTS (the data nodes, to find the master
# holding the most sessions); victim_port/promoted_port read the topology.
declare -A NODE_OF   # data node port -> its start_bg name
sentinel_setup() {
  local m r1 r2 s1 s2 s3 p
  read -r m r1 r2 s1 s2 s3 <<< "$(free_ports 6)"
  redis_up sentinel-master "$m"
  redis_up sentinel-replica1 "$r1" --replicaof 127.0.0.1 "$m"
  redis_up sentinel-replica2 "$r2" --replicaof 127.0.0.1 "$m"
  NODE_OF=([$m]=sentinel-master [$r1]=sentinel-replica1 [$r2]=sentinel-replica2)
  for p in "$r1" "$r2"; do redis_wait "$p" 20 master_link_status:up INFO replication; done
  sentinel_up sentinel-s1 "$s1" "$m" 2; sentinel_up sentinel-s2 "$s2" "$m" 2; sentinel_up sentinel-s3 "$s3" "$m" 2
  # every Sentinel knows both replicas and the two other Sentinels
  for p in "$s1" "$s2" "$s3"; do redis_wait "$p" 30 'status=ok,.*slaves=2,sentinels=3' INFO sentinel; done
  DATA_PORTS="$m $r1 $r2"
  SESSION=$(session_toml sentinel "$s1 $s2 $s3" "$PREFIX")
}
cluster_setup() {
  local ports p i
  # the cluster bus ports too: free ones, not port + 10000 (which may be above 65535)
  read -r -a ports <<< "$(free_ports 12)"
  NODE_OF=()
  for i in 0 1 2 3 4 5; do
    redis_up "cluster-node$((i+1))" "${ports[$i]}" --cluster-enabled yes --cluster-config-file nodes.conf \
      --cluster-port "${ports[$((i+6))]}" --cluster-node-timeout 1000 --cluster-announce-ip 127.0.0.1
    NODE_OF[${ports[$i]}]=cluster-node$((i+1))
  done
  ports=("${ports[@]:0:6}")
  redis-cli --cluster create $(printf '127.0.0.1:%s ' "${ports[@]}") --cluster-replicas 1 --cluster-yes \
    < /dev/null > "$RUN/cluster-create.log" 2>&1 || { cat "$RUN/cluster-create.log" >&2; die "redis-cli --cluster create failed"; }
  for p in "${ports[@]}"; do
    redis_wait "$p" 30 cluster_state:ok CLUSTER INFO
    redis_wait "$p" 30 cluster_known_nodes:6 CLUSTER INFO
    redis_wait "$p" 30 'role:master|master_link_status:up' INFO replication
  done
  DATA_PORTS="${ports[*]}"
  SESSION=$(session_toml cluster "$DATA_PORTS" "$PREFIX")
}
role_of() { redis-cli -p "$1" ROLE 2>/dev/null | head -1 | tr -d '\r'; }
# replicas_of PORT: the ports of the master's replicas, from its INFO replication
replicas_of() { redis-cli -p "$1" INFO replication | tr -d '\r' | awk -F'[=,]' '/^slave[0-9]+:/{printf "%s ", $4}'; }

# ---------------------------------------------------------------- one set-up
run_setup() {
  local setup=$1 i p admin ports=() admins=() names=()
  local marker="$RUN/$setup-killed"
  log "$setup: starting"
  "${setup}_setup"
  read -r UPSTREAM_PORT <<< "$(free_ports 1)"
  nginx_up "$setup-upstream" nginx-echo-upstream.conf.tmpl "$UPSTREAM_PORT" 1
  for i in 1 2 3; do
    read -r p admin <<< "$(free_ports 2)"
    doorman_config "$setup-dm$i" "$p" "$SESSION"
    printf '\n[admin]\naddr = "127.0.0.1:%s"\n' "$admin" >> "$RUN/$setup-dm$i/proxy.toml"
    doorman_start "$setup-dm$i" "$p"
    ports+=("$p"); admins+=("$admin"); names+=("$setup-dm$i")
  done
  local csv; csv=$(IFS=,; echo "${ports[*]}")
  python3 "$HERE/failover.py" login --ports "$csv" --user "$BENCH_USER" --password "$BENCH_PASSWORD" \
    --sessions "$SESSIONS" --dead 4 --prefix "$PREFIX" --out "$RUN/$setup-sessions.json" \
    || die "$setup: logging the sessions in failed"

  # the master holding the most of them, and its keys
  local victim="" most=-1 n
  for p in $DATA_PORTS; do
    [ "$(role_of "$p")" = master ] || continue
    n=$(redis-cli -p "$p" --scan --pattern "${PREFIX}s:*" | wc -l)
    [ "$n" -gt "$most" ] && { most=$n; victim=$p; }
  done
  [ -n "$victim" ] && [ "$most" -gt 0 ] || die "$setup: no master holds a session"
  redis-cli -p "$victim" --scan --pattern "${PREFIX}s:*" > "$RUN/$setup-victim-keys"
  local replicas victim_name=${NODE_OF[$victim]}; replicas=$(replicas_of "$victim")
  [ -n "$replicas" ] || die "$setup: the master on :$victim has no replica"
  log "$setup: the master on :$victim ($victim_name) holds $most of $SESSIONS sessions; replicas: $replicas"

  # load, prober, kill
  local cookies madeup cap=$((DURATION + DEADLINE + 30)) t0 t_kill t_end
  cookies=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["cookie_name"], " ".join(e["cookie"].split("=",1)[1] for e in s["live"]))' "$RUN/$setup-sessions.json")
  madeup=$(python3 -c 'import base64,os; print(base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="))')
  t0=$(date +%s.%N)
  for i in 0 1 2; do
    # shellcheck disable=SC2086 # the cookie name and the session ids, one word each
    start_bg "$setup-wrk$((i+1))" wrk -t"$THREADS" -c"$CONNS" -d"${cap}s" --timeout 5s \
      -s "$CONF/wrk-failover.lua" "http://127.0.0.1:${ports[$i]}" -- ${cookies%% *} "$madeup" ${cookies#* }
  done
  start_bg "$setup-prober" python3 "$HERE/failover.py" watch --ports "$csv" \
    --admin-ports "$(IFS=,; echo "${admins[*]}")" --user "$BENCH_USER" \
    --sessions "$RUN/$setup-sessions.json" --victim-keys "$RUN/$setup-victim-keys" \
    --marker "$marker" --min-after "$((DURATION - PRE))" --settle "$SETTLE" --deadline "$DEADLINE" \
    --timeline "$OUT/$setup-timeline.tsv" --out "$OUT/$setup.json"
  sleep "$PRE"
  for i in 1 2 3; do kill -0 "$(pid_of "$setup-wrk$i")" 2>/dev/null || { cat "$RUN/$setup-wrk$i.log" >&2; die "$setup: wrk $i exited before the kill"; }; done
  t_kill=$(date +%s.%N)
  # reaped at once, with bash's "Killed" notice on /dev/null
  { kill -KILL "$(pid_of "$victim_name")" && wait "$(pid_of "$victim_name")"; } 2>/dev/null
  kill -0 "$(pid_of "$victim_name")" 2>/dev/null && die "$setup: kill -9 of the master failed"
  echo "$t_kill" > "$marker.tmp" && mv "$marker.tmp" "$marker"
  log "$setup: killed the master on :$victim (kill -9); waiting for every doorman to serve again"
  local prober rc waited=0; prober=$(pid_of "$setup-prober")
  while kill -0 "$prober" 2>/dev/null && [ $waited -lt $((DURATION + 2 * DEADLINE)) ]; do sleep 0.5; waited=$((waited + 1)); done
  wait "$prober"; rc=$?
  t_end=$(date +%s.%N)
  for i in 1 2 3; do kill -INT "$(pid_of "$setup-wrk$i")" 2>/dev/null; done
  for i in 1 2 3; do wait "$(pid_of "$setup-wrk$i")" 2>/dev/null; done
  cat "$RUN/$setup-prober.log" >&2
  [ -s "$OUT/$setup.json" ] || die "$setup: the prober wrote no verdict (exit $rc)"

  # what wrk saw, who took over, whether the doormen lived through it
  : > "$OUT/$setup-wrk.tsv"
  for i in 1 2 3; do
    grep '^WRKFAIL' "$RUN/$setup-wrk$i.log" | sed "s/^WRKFAIL/doorman=$i/" >> "$OUT/$setup-wrk.tsv" \
      || { cat "$RUN/$setup-wrk$i.log" >&2; die "$setup: wrk $i printed no result"; }
  done
  local promoted="" crashed=""
  for p in $replicas; do [ "$(role_of "$p")" = master ] && promoted=$p; done
  for n in "${names[@]}"; do kill -0 "$(pid_of "$n")" 2>/dev/null || crashed="$crashed $n"; done
  printf '{"setup": "%s", "victim": %s, "victim_sessions": %s, "replicas": [%s], "promoted": %s, "load_s": %s, "kill_at_s": %s, "exited": "%s"}\n' \
    "$setup" "$victim" "$most" "$(echo $replicas | tr ' ' ',')" "${promoted:-null}" \
    "$(awk -v a="$t0" -v b="$t_end" 'BEGIN{printf "%.1f", b-a}')" \
    "$(awk -v a="$t0" -v b="$t_kill" 'BEGIN{printf "%.1f", b-a}')" "${crashed# }" > "$OUT/$setup-run.json"
  log "$setup: done ($([ -n "$promoted" ] && echo "the replica on :$promoted took over" || echo "no replica took over")${crashed:+; exited:$crashed})"
  stop_all
}

for s in ${SETUPS//,/ }; do run_setup "$s"; done

python3 "$HERE/failover_report.py" --out "$OUT" --setups "$SETUPS" > "$OUT/summary.md"; report=$?
cat "$OUT/summary.md"
[ "$report" = 0 ] || die "wrong answers, no recovery or no promotion (see $OUT/summary.md and $OUT/verdict.json)"
log "failover: passed"
