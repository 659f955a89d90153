#!/usr/bin/env bash
# benches/soak.sh -- ten minutes of mixed traffic against doorman on Redis: does anything leak,
# and is every answer right, also across a Redis restart? (issue 18, DESIGN.md §14)
#
# Two doormen on one persistent redis-server (appendonly, fsync always), one without and one
# with `[session] cache = true`, in front of benches/soak.py's upstream app, all on free
# loopback ports. benches/soak.py drives them for --duration seconds: public and authenticated
# requests (live, logged-out, made-up and no cookies), logins and logouts (about 150 live
# sessions), WebSockets (echoes, and logouts that must close them), slow clients (a head sent
# 10 bytes at a time, a 256 KiB answer read slowly) and unfinished heads doorman must cut at
# header_timeout (3 s here). Halfway through, redis-server is stopped (SIGTERM) and started
# again on the same files: sessions must survive it.
#
# Every 10 s (2 s with --quick) it samples each doorman's VmRSS and open fds into
# OUT/samples.tsv. It fails when
#   * any answer was wrong (soak.py's rules: a 200 without a live session, anything but 200 or
#     503 for a live one on a protected route, a hang, a WebSocket of a live session closed,
#     one of a logged-out session left open), a kind of traffic never ran, or no session made
#     before the restart was served after it;
#   * (not with --quick) RSS or open fds grew more than 10 % between minute 2 and the end:
#     the samples in 90–150 s against those of the last 60 s, by their median for RSS and
#     their smallest for fds (open fds follow the connections in flight at the instant).
# OUT/summary.md holds the verdict and OUT/rss.svg the RSS curves (soak_report.py).
#
#   benches/soak.sh [--quick] [--duration S] [--doorman PATH] [--no-install] [--out DIR]
#
# --quick: 30 s, answers only (no growth check); tests/bench_soak.rs runs it in the suite.
set -uo pipefail
SCRIPT=soak.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

QUICK=0; DOORMAN=""; INSTALL=1; OUT=""; PIN=0; NICE=0; DURATION=600
THREADS=1; WAIT_QUIET=0
DOORMAN_LOG=${DOORMAN_BENCH_LOG:-warn}
while [ $# -gt 0 ]; do
  shared_option "$@" || die "unknown option $1 (see --help)"; shift "$SHIFTS"
done
SAMPLE=10
if [ "$QUICK" = 1 ]; then DURATION=30; SAMPLE=2; fi
DURATION=${DURATION%s}
case "$DURATION" in ''|*[!0-9]*) die "--duration takes whole seconds, not '$DURATION'";; esac
[ "$QUICK" = 1 ] || [ "$DURATION" -ge 180 ] || die "--duration below 180 s leaves no minute 2 to compare (use --quick)"

pkgs=()
command -v redis-server >/dev/null || pkgs+=(redis-server)
command -v python3 >/dev/null || pkgs+=(python3)
install_pkgs "${pkgs[@]}"
build_doorman
OUT=${OUT:-$HERE/results/soak-$(date +%Y%m%d-%H%M%S)}
init_run

read -r REDIS_PORT UPSTREAM_PORT PORT_A PORT_B <<< "$(free_ports 4)"

# A persistent Redis: every write is in the append-only file before it is acknowledged.
mkdir -p "$RUN/redis"
redis_start() {
  start_bg redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$RUN/redis" \
    --appendonly yes --appendfsync always --save "" --logfile ""
  wait_port "$REDIS_PORT" 10 redis
}
redis_start

start_bg upstream python3 "$HERE/soak.py" upstream --port "$UPSTREAM_PORT"
wait_port "$UPSTREAM_PORT" 10 upstream

make_users
hash=$(awk -F'"' '/^password/ {print $2; exit}' "$RUN/users.toml")
printf '\n[users.soak2]\npassword = "%s"\ngroups = []\n' "$hash" >> "$RUN/users.toml"
listen=$'header_timeout = "3s"'
doorman_config dm-a "$PORT_A" "$(session_toml redis "$REDIS_PORT" soak:)" "$listen"
doorman_config dm-b "$PORT_B" "$(session_toml redis-cache "$REDIS_PORT" soak:)" "$listen"
doorman_start dm-a "$PORT_A"
doorman_start dm-b "$PORT_B"

SAMPLES="$OUT/samples.tsv"
printf 't\trss_a\tfds_a\trss_b\tfds_b\n' > "$SAMPLES"
fds_of() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
sample() {  # sample T: one line of samples.tsv
  local a b
  a=$(pid_of dm-a); b=$(pid_of dm-b)
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$(mem_of dm-a VmRSS)" "$(fds_of "$a")" \
    "$(mem_of dm-b VmRSS)" "$(fds_of "$b")" >> "$SAMPLES"
}

MARKER="$RUN/restart"
log "soak: ${DURATION}s of mixed traffic on :$PORT_A (Redis) and :$PORT_B (Redis + cache); redis restart at $((DURATION / 2))s"
start_bg driver python3 "$HERE/soak.py" drive --ports "$PORT_A,$PORT_B" --cache-ports "$PORT_B" \
  --users "$BENCH_USER,soak2" --password "$BENCH_PASSWORD" --duration "$DURATION" \
  --header-timeout 3 --marker "$MARKER" --out "$OUT/verdict.json"
driver=$(pid_of driver)

t0=$(date +%s)
restarted=0; restart_at=""
next=0
while kill -0 "$driver" 2>/dev/null; do
  now=$(( $(date +%s) - t0 ))
  if [ "$now" -ge "$next" ]; then
    sample "$now"; next=$((next + SAMPLE))
  fi
  if [ $restarted = 0 ] && [ "$now" -ge $((DURATION / 2)) ]; then
    restarted=1; restart_at=$now
    start=$(date +%s.%N)
    kill -TERM "$(pid_of redis)"
    while kill -0 "$(pid_of redis)" 2>/dev/null; do sleep 0.05; done
    redis_start
    end=$(date +%s.%N)
    echo "$start $end" > "$MARKER.tmp" && mv "$MARKER.tmp" "$MARKER"
    log "soak: redis-server restarted ($(python3 -c "print('%.2f' % ($end - $start))") s down)"
  fi
  sleep 0.5
done
wait "$driver"; rc=$?
sample "$(( $(date +%s) - t0 ))"
for name in dm-a dm-b; do
  kill -0 "$(pid_of "$name")" 2>/dev/null || die "$name exited during the soak (see $OUT/$name.log)"
done

python3 "$HERE/soak_report.py" --samples "$SAMPLES" --verdict "$OUT/verdict.json" \
  --duration "$DURATION" --out "$OUT" ${restart_at:+--restart-at "$restart_at"} \
  $([ "$QUICK" = 1 ] && echo --answers-only)
report=$?
cat "$OUT/summary.md"
[ -s "$OUT/verdict.json" ] || die "the driver wrote no verdict (exit $rc; see $OUT/run.log)"
[ "$rc" = 0 ] || die "wrong answers or missing traffic (see $OUT/summary.md and $OUT/verdict.json)"
[ "$report" = 0 ] || die "growth above 10 % (see $OUT/summary.md)"
log "soak: passed"
