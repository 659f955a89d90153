#!/usr/bin/env bash
# benches/run.sh -- doorman against nginx and the tutorial's Express stack, in one run.
#
# Starts, on free loopback ports only, each in its own process group:
#   redis      redis-server, no persistence (conf/redis.conf)
#   upstream   nginx, 1 worker, fixed 200 "ok\n"; "ok <user>\n" when it saw X-Auth-User
# and measures with wrk (GET, keep-alive, -t1) at each connection count:
#   a  upstream direct                       GET /dashboard        (the ceiling)
#   b  nginx proxy_pass, keepalive pool,     GET /dashboard        (workers = cores, no auth)
#   c  Express 5 + express-session +         GET /dashboard + its session cookie
#      connect-redis (express-app/, the tutorial's stack; it answers itself, no upstream)
#   d  doorman, public route                 GET /public, no cookie
#   e  doorman, authenticated, Redis store   GET /dashboard + doorman session cookie
#   f  doorman, authenticated, embedded store  (same)
#   g  doorman, authenticated, Redis store with [session] cache = true  (same)
#   h  nginx auth_request -> doorman /_doorman/auth, then proxy_pass   GET /dashboard + doorman cookie
#   x  as h, doorman on its default store (embedded): h's store is --fa-store (Redis, as Express's)
#   i  nginx auth_request -> Express GET /auth, then proxy_pass        GET /dashboard + Express cookie
# Rows d to g are four doorman processes (release build, RUST_LOG=warn) with generated
# configs; e, f and g log in once through POST /_doorman/login (users file from
# `doorman hash-password`) and wrk sends the session cookie. Before measuring, every row is
# checked (200; e/f/g: upstream saw X-Auth-User, no cookie -> 401). A doorman build whose
# `doorman check` refuses `cache = true` gets row g listed as not supported, not measured.
# Rows h, x and i (forward-auth, DESIGN.md §8) put one more nginx in front
# (conf/nginx-authreq.conf.tmpl, workers = cores, as row b plus the auth_request sub-request):
# for h a fifth doorman in auth-only mode ([forward_auth], no [upstream], Redis store as
# Express's; --fa-store), for x a sixth on the embedded store (doorman's default; issue 14's
# target does not name a store, so every run gives both against the same row b), for i row c's
# Express process. Their "proxy" CPU is the gateway nginx and the auth server together (the
# system under test); the auth server's own share is reported separately.
# TLS rows (issue 20): the same upstream behind TLS, nginx (conf/nginx-tls.conf.tmpl: as row b
# plus TLS as nginx's docs recommend: ssl_session_cache shared:SSL:10m, session tickets on, TLS
# 1.2 + 1.3, HTTP/2 via ALPN, workers = cores) against doorman with [listen] tls. Certificates
# are made per run into OUT/certs (openssl req: ECDSA P-256 and RSA 2048), the same file pair
# for both proxies.
#   HTTPS keep-alive, HTTP/1.1 -- wrk to https:// (OpenSSL, no ALPN: HTTP/1.1), as rows a to i:
#   j  nginx TLS proxy                       GET /dashboard
#   k  doorman TLS, public route             GET /public
#   l  doorman TLS, authenticated, embedded store          GET /dashboard + cookie
#   m  doorman TLS, authenticated, Redis store, cache = true  (same)
#   TLS handshakes, a new connection per request -- the tls-load example (benches/tls_load.rs:
#   tokio + rustls with ring, one task per connection slot): connect, handshake, one GET with
#   `Connection: close`, read to the end, close. Not wrk or h2load: both resume the session
#   on every reconnect (wrk keeps it across SSL_clear, h2load per client; checked against
#   nginx's $ssl_session_reused), so they cannot give full handshakes, and neither says which
#   handshakes resumed. Not `openssl s_time`: one connection at a time per process, no status,
#   no latency. Not Python's ssl (benches/tls_conns.py until 2026-12-05): at 1.2 ms of CPU per
#   connection the client, not the server, set the pace. tls-load counts resumed and full
#   handshakes (OUT/handshakes.tsv, in the table); its latency includes connect and
#   handshake. Its own CPU is the "wrk" column.
#   n  nginx, full handshakes, ECDSA P-256           GET /dashboard
#   o  doorman, full handshakes, ECDSA P-256         GET /public
#   p  nginx, resumed handshakes (tickets/session cache), ECDSA P-256
#   q  doorman, resumed handshakes, ECDSA P-256
#   r  nginx, full handshakes, RSA 2048  (reported, not a target: OpenSSL's RSA against ring's)
#   s  doorman, full handshakes, RSA 2048
#   HTTP/2 -- h2load -c CONNS -m 10 (ALPN h2, -tTHREADS; percentiles from its --log-file):
#   t  nginx h2 proxy                        GET /dashboard
#   u  doorman h2, public route              GET /public
#   v  doorman h2, authenticated, embedded store  GET /dashboard + cookie (-H)
#   The stack's floor (issue 20) -- wrk, as rows a to i:
#   w  hyper-floor, hyper's HTTP/1.1 server and client with nothing between them (benches/
#      hyper_floor.rs, workers = cores)              GET /public
#      What doorman's stack costs on its own: row d over row w is doorman's own work, row w
#      over row b the stack's against nginx. Reported, not a target.
# Rows k, l, o, q, u, v are one doorman (ECDSA, embedded store); m its own (Redis, cache), s its
# own (RSA); j, n, p, t one nginx (ECDSA), r its own (RSA). ×nginx compares each TLS row with
# its nginx row (k, l, m: j; o: n; q: p; s: r; u, v: t).
# Scale (10,000 idle connections, plain and TLS; 1,000,000 sessions): benches/scale.sh.
#
# Output: a markdown table (req/s, p50, p99, errors, CPU µs/request and peak RSS of the
# proxy process, ratios to nginx and to Express, the targets met and missed) on stdout and in
# OUT/table.md, a chart of req/s and p99 per row in OUT/chart.svg (report.py, chart.py), plus
# raw.tsv, rss.tsv, versions.txt and the servers' logs in OUT (default
# benches/results/<stamp>/, ignored by git). Everything it started is stopped on exit.
#
# Usage:
#   benches/run.sh [--quick] [--doorman PATH] [--duration 10s] [--conns "64 256"] [--reps 3]
#                  [--warmup 2s] [--threads 1] [--rows a,b,...,v] [--tls-client PATH] [--pin] [--nice N]
#                  [--wait-quiet 60] [--max-other 20] [--retries 2] [--no-install] [--out DIR]
#   --quick    smoke mode, a few seconds: 1 s per row, 64 connections, one rep, no warm-up,
#              no waiting for a quiet machine; rows c and i (Node) are skipped and listed as
#              "skipped in --quick". Figures from it mean nothing; tests/bench_quick.rs runs it.
#   --doorman PATH  use this doorman binary instead of `cargo build --release`.
#   --tls-client PATH  the handshake rows' client (the tls-load example) instead of
#              `cargo build --release --example tls-load`.
#   --floor PATH  row w's hyper-floor example instead of `cargo build --release --example
#              hyper-floor`.
#   --rows     subset of a..x to measure (default all; ratios need b and c, h's also i, the
#              TLS rows their nginx row).
#   --fa-store KIND  row h's doorman session store: redis (default: Express's store),
#              redis-cache (redis with [session] cache = true) or embedded.
#   --pin      wrk on CPU 0, every server on the other CPUs; default: all share all cores.
#   --nice N   (root; for a machine something else is using) run servers and wrk at nice N,
#              each in its own autogroup.
#   --wait-quiet N  before measuring, wait up to N s for foreign CPU load to fall below 10 %
#              of a core. A measured run whose "other" CPU (busy CPU not used by wrk, the
#              proxy, the upstream or redis) exceeds --max-other % of a core is discarded and
#              repeated after waiting for quiet, at most --retries times (then kept, marked !).
#   --no-install  fail instead of installing missing tools (apt-get: nginx, wrk,
#              redis-server, redis-tools, curl, python3, nodejs, npm, openssl, nghttp2-client
#              for h2load; `npm ci` in express-app/).
#   Env: DOORMAN_BENCH_LOG (RUST_LOG for doorman, default warn: info logs every request).
#
# Loopback only; every load is bounded by --duration and a fixed connection count.
set -uo pipefail

SCRIPT=run.sh
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
APP="$HERE/express-app"

DURATION=10s; CONNS="64 256"; REPS=3; THREADS=1; WARMUP=2s; ROWS="a,b,c,d,e,f,g,h,x,i,j,k,l,m,n,o,p,q,r,s,t,u,v,w"
PIN=0; NICE=0; INSTALL=1; OUT=""; WAIT_QUIET=60; MAX_OTHER=20; RETRIES=2; QUICK=0; DOORMAN=""
DOORMAN_LOG=${DOORMAN_BENCH_LOG:-warn}
FA_STORE=redis
TLS_CLIENT=""
FLOOR=""

while [ $# -gt 0 ]; do
  case "$1" in
    --rows) ROWS=$2; shift 2;;
    --fa-store) FA_STORE=$2; shift 2;;
    --tls-client) TLS_CLIENT=$2; shift 2;;
    --floor) FLOOR=$2; shift 2;;
    *) shared_option "$@" || die "unknown option $1 (see --help)"; shift "$SHIFTS";;
  esac
done
SKIPPED=""   # row=reason,... : listed in the table, not measured
has() { case ",$ROWS," in *",$1,"*) return 0;; *) return 1;; esac; }
skip_row() {  # skip_row ROW REASON: drop it from ROWS, list it as skipped
  ROWS=$(echo ",$ROWS," | sed "s/,$1,/,/; s/^,//; s/,\$//")
  SKIPPED="${SKIPPED:+$SKIPPED,}$1=$2"
}
if [ "$QUICK" = 1 ]; then
  DURATION=1s; CONNS=64; REPS=1; WARMUP=0; WAIT_QUIET=0; MAX_OTHER=100000; RETRIES=0
  has c && skip_row c "skipped in --quick"
  has i && skip_row i "skipped in --quick"
fi
needs_express() { has c || has i; }
needs_redis() { needs_express || has e || has g || has h || has m; }
needs_tls() { case ",$ROWS," in *,[j-v],*) return 0;; *) return 1;; esac; }
needs_handshakes() { case ",$ROWS," in *,[n-s],*) return 0;; *) return 1;; esac; }
for r in ${ROWS//,/ }; do case "$r" in [a-x]) ;; *) die "unknown row '$r' (rows are a..x)";; esac; done
case "$FA_STORE" in redis|redis-cache|embedded) ;; *) die "--fa-store: redis, redis-cache or embedded, not '$FA_STORE'";; esac

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
  if needs_tls; then
    command -v openssl >/dev/null || pkgs+=(openssl)
    command -v h2load >/dev/null || pkgs+=(nghttp2-client)
  fi
  if needs_express; then
    command -v node >/dev/null || pkgs+=(nodejs)
    command -v npm >/dev/null || pkgs+=(npm)
  fi
  install_pkgs "${pkgs[@]}"
  if needs_express && [ ! -d "$APP/node_modules/connect-redis" ]; then
    [ "$INSTALL" = 1 ] || die "$APP/node_modules missing (run npm ci there, or rerun without --no-install)"
    log "npm ci in $APP"
    (cd "$APP" && npm ci --no-audit --no-fund >/dev/null) || die "npm ci in $APP failed"
  fi
}
ensure_tools

build_doorman
# The handshake rows' client (see the top).
if needs_handshakes; then
  [ -n "$TLS_CLIENT" ] || TLS_CLIENT=$(release_example tls-load)
  [ -x "$TLS_CLIENT" ] || die "no tls-load binary at $TLS_CLIENT"
  export TLS_CLIENT
fi
# Row w's floor.
if has w; then
  [ -n "$FLOOR" ] || FLOOR=$(release_example hyper-floor)
  [ -x "$FLOOR" ] || die "no hyper-floor binary at $FLOOR"
fi
init_run
RAW="$OUT/raw.tsv"; : > "$RAW"; : > "$OUT/handshakes.tsv"

# ---------------------------------------------------------------- versions
{
  echo "date: $(date -Is)  host: $(uname -srm)  cpus: $NCPU ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo))"
  echo "doorman: $DOORMAN ($(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'))  RUST_LOG=$DOORMAN_LOG"
  echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //')  wrk: $(wrk --version 2>&1 | awk 'NR==1{print $2}')$(needs_redis && echo "  redis: $(redis-server --version | awk '{print $3}')")"
  if needs_tls; then
    echo "$(openssl version)  $(h2load --version 2>&1 | head -1)$(needs_handshakes && echo "  handshake client: tls-load, rustls $(awk '/^name = "rustls"$/{getline; gsub(/"/, "", $3); print $3; exit}' "$ROOT/Cargo.lock")")"
  fi
  if needs_express; then
    echo "node: $(node --version)  $(cd "$APP" && node -e 'for (const p of ["express","express-session","connect-redis","redis"]) process.stdout.write(p+"@"+require("./node_modules/"+p+"/package.json").version+"  ")')"
  fi
  echo "wrk -t$THREADS -d$DURATION, conns: $CONNS, reps: $REPS, warm-up: $WARMUP; nginx proxy workers: $NCPU; pin: $PIN; nice: $NICE$(has h && echo "; row h store: $FA_STORE")$( [ "$QUICK" = 1 ] && echo "; QUICK smoke run")"
} | tee "$OUT/versions.txt" >&2

# Rows g and m need `[session] cache`, which older builds refuse: list them, do not fail the run.
if has g || has m; then
  mkdir -p "$RUN/probe"
  printf '[upstream]\nurl = "http://127.0.0.1:9"\n[session]\n%s' "$(session_toml redis-cache 9)" > "$RUN/probe/proxy.toml"
  if ! "$DOORMAN" check --config "$RUN/probe/proxy.toml" > "$RUN/probe/check.out" 2>&1; then
    grep -q "session.cache: not supported" "$RUN/probe/check.out" || { cat "$RUN/probe/check.out" >&2; die "row g: doorman check refused the cache config"; }
    log "rows g, m: this doorman build does not support [session] cache; listed, not measured"
    has g && skip_row g "not supported by this doorman build"
    has m && skip_row m "not supported by this doorman build"
  fi
fi

# Rows h and x need auth-only mode ([forward_auth] without [upstream]), which older builds refuse.
if has h || has x; then
  mkdir -p "$RUN/probe"
  printf '[forward_auth]\ntrusted_gateways = ["127.0.0.1/32"]\nallowed_hosts = ["127.0.0.1"]\n' > "$RUN/probe/fa.toml"
  if ! "$DOORMAN" check --config "$RUN/probe/fa.toml" > "$RUN/probe/fa-check.out" 2>&1; then
    cat "$RUN/probe/fa-check.out" >&2
    log "rows h, x: this doorman build refuses an auth-only [forward_auth] config; listed, not measured"
    has h && skip_row h "not supported by this doorman build"
    has x && skip_row x "not supported by this doorman build"
  fi
fi

# ---------------------------------------------------------------- start services
read -r REDIS_PORT UPSTREAM_PORT NGINX_PORT EXPRESS_PORT DM_PUBLIC_PORT DM_REDIS_PORT DM_EMB_PORT DM_CACHE_PORT \
  DM_FA_PORT FA_DM_PORT FA_EX_PORT NG_TLS_PORT NG_RSA_PORT DM_TLS_PORT DM_TLS_CACHE_PORT DM_RSA_PORT FLOOR_PORT \
  DM_FA_EMB_PORT FA_DM_EMB_PORT <<< "$(free_ports 19)"
[ -n "$FA_DM_EMB_PORT" ] || die "could not pick free loopback ports"

needs_redis && redis_up redis "$REDIS_PORT"
nginx_up upstream nginx-upstream.conf.tmpl "$UPSTREAM_PORT" 1
has b && nginx_up nginx-proxy nginx-proxy.conf.tmpl "$NGINX_PORT" "$NCPU"
if has w; then
  start_bg floor env "${FLOOR_ENV[@]}" "$FLOOR" --listen "$FLOOR_PORT" --upstream "$UPSTREAM_PORT" --workers "$NCPU"
  wait_port "$FLOOR_PORT" 20 floor
fi
EXPRESS_COOKIE=""
if needs_express; then
  start_bg express env PORT="$EXPRESS_PORT" REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" NODE_ENV=production node "$APP/server.mjs"
  wait_port "$EXPRESS_PORT" 20 express
fi
if has d || has e || has f || has g || has h || has x || needs_tls; then make_users; fi
doorman_up() {  # doorman_up NAME PORT SESSION-KIND
  doorman_config "$1" "$2" "$(session_toml "$3" "$REDIS_PORT")"
  doorman_start "$1" "$2"
}
has d && doorman_up dm-public "$DM_PUBLIC_PORT" embedded
has e && doorman_up dm-redis "$DM_REDIS_PORT" redis
has f && doorman_up dm-embedded "$DM_EMB_PORT" embedded
has g && doorman_up dm-cache "$DM_CACHE_PORT" redis-cache
# Rows h's and x's doorman: auth-only (no [upstream]), answering its gateway nginx's
# sub-requests. The clients' host is the address wrk connects to: nginx sends it in
# X-Original-URL.
fa_up() {  # fa_up DOORMAN-NAME DOORMAN-PORT GATEWAY-NAME GATEWAY-PORT SESSION-KIND
  doorman_config "$1" "$2" "$(session_toml "$5" "$REDIS_PORT")"
  sed -i '/^\[upstream\]$/,/^$/d' "$RUN/$1/proxy.toml"
  printf '\n[forward_auth]\ntrusted_gateways = ["127.0.0.1/32"]\nallowed_hosts = ["127.0.0.1"]\n' >> "$RUN/$1/proxy.toml"
  grep -q '^\[upstream\]' "$RUN/$1/proxy.toml" && die "$1: the generated config still has an [upstream]"
  doorman_start "$1" "$2"
  nginx_up "$3" nginx-authreq.conf.tmpl "$4" "$NCPU" AUTH_PORT="$2" AUTH_URI=/_doorman/auth
}
has h && fa_up dm-fa "$DM_FA_PORT" nginx-fa-dm "$FA_DM_PORT" "$FA_STORE"
has x && fa_up dm-fa-emb "$DM_FA_EMB_PORT" nginx-fa-dm-emb "$FA_DM_EMB_PORT" embedded
has i && nginx_up nginx-fa-ex nginx-authreq.conf.tmpl "$FA_EX_PORT" "$NCPU" AUTH_PORT="$EXPRESS_PORT" AUTH_URI=/auth
# TLS rows: one certificate pair per kind, the same files for nginx and doorman
CERTS="$OUT/certs"
tls_toml() { printf 'tls = { cert = "%s", key = "%s" }' "$CERTS/$1.pem" "$CERTS/$1.key"; }
if needs_tls; then
  make_certs "$CERTS"
  nginx_h2
  if has j || has n || has p || has t; then
    nginx_up nginx-tls nginx-tls.conf.tmpl "$NG_TLS_PORT" "$NCPU" CERT="$CERTS/ecdsa.pem" KEY="$CERTS/ecdsa.key" \
      "LISTEN_H2=$NGINX_LISTEN_H2" "HTTP2_ON=$NGINX_HTTP2_ON"
  fi
  has r && nginx_up nginx-tls-rsa nginx-tls.conf.tmpl "$NG_RSA_PORT" "$NCPU" CERT="$CERTS/rsa.pem" KEY="$CERTS/rsa.key" \
    "LISTEN_H2=$NGINX_LISTEN_H2" "HTTP2_ON=$NGINX_HTTP2_ON"
  if has k || has l || has o || has q || has u || has v; then
    doorman_config dm-tls "$DM_TLS_PORT" "$(session_toml embedded)" "$(tls_toml ecdsa)"
    doorman_start dm-tls "$DM_TLS_PORT"
  fi
  if has m; then
    doorman_config dm-tls-cache "$DM_TLS_CACHE_PORT" "$(session_toml redis-cache "$REDIS_PORT" doorman-bench-tls:)" "$(tls_toml ecdsa)"
    doorman_start dm-tls-cache "$DM_TLS_CACHE_PORT"
  fi
  if has s; then
    doorman_config dm-tls-rsa "$DM_RSA_PORT" "$(session_toml embedded)" "$(tls_toml rsa)"
    doorman_start dm-tls-rsa "$DM_RSA_PORT"
  fi
fi

# idle RSS of every proxy: started, no request served yet
declare -A SUT_OF=([a]=upstream [b]=nginx-proxy [c]=express [d]=dm-public [e]=dm-redis [f]=dm-embedded [g]=dm-cache
                   [h]="nginx-fa-dm dm-fa" [x]="nginx-fa-dm-emb dm-fa-emb" [i]="nginx-fa-ex express"
                   [j]=nginx-tls [k]=dm-tls [l]=dm-tls [m]=dm-tls-cache [n]=nginx-tls [o]=dm-tls [p]=nginx-tls
                   [q]=dm-tls [r]=nginx-tls-rsa [s]=dm-tls-rsa [t]=nginx-tls [u]=dm-tls [v]=dm-tls [w]=floor)
for row in a b c d e f g h x i j k l m n o p q r s t u v w; do has "$row" && echo -e "$row\tidle\t$(mem_of "${SUT_OF[$row]}" VmRSS)"; done > "$OUT/rss.tsv"

if needs_express; then
  EXPRESS_COOKIE=$(curl -s -m 5 -D - -o /dev/null -X POST --data "username=$BENCH_USER&password=bench" \
    "http://127.0.0.1:$EXPRESS_PORT/login" | tr -d '\r' | awk 'tolower($1)=="set-cookie:" {split($2,a,";"); print a[1]; exit}')
  [ -n "$EXPRESS_COOKIE" ] || die "express POST /login gave no cookie"
fi
DM_REDIS_COOKIE=""; DM_EMB_COOKIE=""; DM_CACHE_COOKIE=""; DM_FA_COOKIE=""; DM_FA_EMB_COOKIE=""
if has e; then DM_REDIS_COOKIE=$(doorman_login "$DM_REDIS_PORT"); [ -n "$DM_REDIS_COOKIE" ] || die "doorman (redis) login set no cookie"; fi
if has f; then DM_EMB_COOKIE=$(doorman_login "$DM_EMB_PORT"); [ -n "$DM_EMB_COOKIE" ] || die "doorman (embedded) login set no cookie"; fi
if has g; then DM_CACHE_COOKIE=$(doorman_login "$DM_CACHE_PORT"); [ -n "$DM_CACHE_COOKIE" ] || die "doorman (redis, cache) login set no cookie"; fi
if has h; then DM_FA_COOKIE=$(doorman_login "$DM_FA_PORT"); [ -n "$DM_FA_COOKIE" ] || die "doorman (forward-auth) login set no cookie"; fi
if has x; then DM_FA_EMB_COOKIE=$(doorman_login "$DM_FA_EMB_PORT"); [ -n "$DM_FA_EMB_COOKIE" ] || die "doorman (forward-auth, embedded) login set no cookie"; fi
DM_TLS_COOKIE=""; DM_TLS_CACHE_COOKIE=""
if has l || has v; then DM_TLS_COOKIE=$(doorman_login "$DM_TLS_PORT" 10 https); [ -n "$DM_TLS_COOKIE" ] || die "doorman (TLS) login set no cookie"; fi
if has m; then DM_TLS_CACHE_COOKIE=$(doorman_login "$DM_TLS_CACHE_PORT" 10 https); [ -n "$DM_TLS_CACHE_COOKIE" ] || die "doorman (TLS, cache) login set no cookie"; fi

ORDER=()
add_row() {  # add_row ROW URL COOKIE SUT [USER the upstream must see] [PART: the auth server in SUT]
  has "$1" || return 0; ORDER+=("$1"); R_URL[$1]=$2; R_COOKIE[$1]=$3; R_SUT[$1]=$4; R_USER[$1]=${5:-}; R_PART[$1]=${6:-}
}
add_row a "http://127.0.0.1:$UPSTREAM_PORT/dashboard" "" upstream
add_row b "http://127.0.0.1:$NGINX_PORT/dashboard" "" nginx-proxy
add_row c "http://127.0.0.1:$EXPRESS_PORT/dashboard" "$EXPRESS_COOKIE" express
add_row d "http://127.0.0.1:$DM_PUBLIC_PORT/public" "" dm-public
add_row e "http://127.0.0.1:$DM_REDIS_PORT/dashboard" "$DM_REDIS_COOKIE" dm-redis "$BENCH_USER"
add_row f "http://127.0.0.1:$DM_EMB_PORT/dashboard" "$DM_EMB_COOKIE" dm-embedded "$BENCH_USER"
add_row g "http://127.0.0.1:$DM_CACHE_PORT/dashboard" "$DM_CACHE_COOKIE" dm-cache "$BENCH_USER"
add_row h "http://127.0.0.1:$FA_DM_PORT/dashboard" "$DM_FA_COOKIE" "nginx-fa-dm dm-fa" "$BENCH_USER" dm-fa
add_row x "http://127.0.0.1:$FA_DM_EMB_PORT/dashboard" "$DM_FA_EMB_COOKIE" "nginx-fa-dm-emb dm-fa-emb" "$BENCH_USER" dm-fa-emb
add_row i "http://127.0.0.1:$FA_EX_PORT/dashboard" "$EXPRESS_COOKIE" "nginx-fa-ex express" "$BENCH_USER" express
add_tls_row() {  # add_tls_row ROW TOOL URL COOKIE SUT [USER]: add_row, plus the load tool and curl's check
  has "$1" || return 0
  add_row "$1" "$3" "$4" "$5" "${6:-}"
  R_TOOL[$1]=$2
  case "$2" in h2load) R_CURL[$1]="-k --http2";; *) R_CURL[$1]="-k --http1.1";; esac
}
NG_TLS="https://127.0.0.1:$NG_TLS_PORT"; DM_TLS="https://127.0.0.1:$DM_TLS_PORT"
add_tls_row j wrk "$NG_TLS/dashboard" "" nginx-tls
add_tls_row k wrk "$DM_TLS/public" "" dm-tls
add_tls_row l wrk "$DM_TLS/dashboard" "$DM_TLS_COOKIE" dm-tls "$BENCH_USER"
add_tls_row m wrk "https://127.0.0.1:$DM_TLS_CACHE_PORT/dashboard" "$DM_TLS_CACHE_COOKIE" dm-tls-cache "$BENCH_USER"
add_tls_row n tls-full "$NG_TLS/dashboard" "" nginx-tls
add_tls_row o tls-full "$DM_TLS/public" "" dm-tls
add_tls_row p tls-resume "$NG_TLS/dashboard" "" nginx-tls
add_tls_row q tls-resume "$DM_TLS/public" "" dm-tls
add_tls_row r tls-full "https://127.0.0.1:$NG_RSA_PORT/dashboard" "" nginx-tls-rsa
add_tls_row s tls-full "https://127.0.0.1:$DM_RSA_PORT/public" "" dm-tls-rsa
add_tls_row t h2load "$NG_TLS/dashboard" "" nginx-tls
add_tls_row u h2load "$DM_TLS/public" "" dm-tls
add_tls_row v h2load "$DM_TLS/dashboard" "$DM_TLS_COOKIE" dm-tls "$BENCH_USER"
add_row w "http://127.0.0.1:$FLOOR_PORT/public" "" floor
[ ${#ORDER[@]} -gt 0 ] || die "no rows to measure"
for row in "${ORDER[@]}"; do check_row "$row"; done
# Handshake rows: which handshakes the server gives the client of its row (two connections for
# the resumed rows: the second offers the first one's session). nginx must resume (else the
# row would not measure what it says); doorman's answer is reported as it is.
for row in "${ORDER[@]}"; do
  case "${R_TOOL[$row]:-}" in tls-full|tls-resume) ;; *) continue;; esac
  seen=$("$TLS_CLIENT" --check --port "$(port_of "${R_URL[$row]}")" --path "/${R_URL[$row]#https://*/}" \
    $( [ "${R_TOOL[$row]}" = tls-resume ] && echo --resume ) 2>&1) || { echo "$seen" >&2; die "row $row: tls-load --check failed"; }
  seen=$(echo "$seen" | awk '{printf "%s%s", (NR>1 ? " then " : ""), $2}')
  log "row $row handshakes: $seen"
  case "${R_TOOL[$row]}:$seen" in
    tls-full:full) ;;
    tls-resume:"full then resumed") ;;
    tls-resume:*) case "${R_SUT[$row]}" in nginx*) die "row $row: nginx did not resume ($seen): check conf/nginx-tls.conf.tmpl";; esac
                  log "WARN: row $row: ${R_SUT[$row]} did not resume a session ($seen)";;
    *) die "row $row: unexpected handshakes: $seen";;
  esac
done
# Row g must measure the cache, not Redis: once hot, its requests send (almost) no command.
if has g; then
  redis_commands() { redis-cli -p "$REDIS_PORT" INFO stats | tr -d '\r' | awk -F: '$1=="total_commands_processed"{print $2}'; }
  before=$(redis_commands)
  for ((i=0; i<20; i++)); do curl -s -m 5 -o /dev/null -H "Cookie: $DM_CACHE_COOKIE" "${R_URL[g]}"; done
  sent=$(( $(redis_commands) - before - 1 ))   # less the INFO that read the first count
  [ "$sent" -lt 10 ] || die "row g: 20 requests sent $sent Redis commands: the session cache is not serving them"
  log "row g: 20 hot requests sent $sent Redis commands"
fi

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
    run_measured "$row" "$c" "$DURATION" "$rep"
  done; done
done

# peak RSS (VmHWM) of every proxy after all runs
for row in "${ORDER[@]}"; do echo -e "$row\tpeak\t$(mem_of "${R_SUT[$row]}" VmHWM)"; done >> "$OUT/rss.tsv"
stop_all

# ---------------------------------------------------------------- report
python3 "$HERE/report.py" --raw "$RAW" --rss "$OUT/rss.tsv" --versions "$OUT/versions.txt" \
  --skipped "$SKIPPED" --quick "$QUICK" --fa-store "$FA_STORE" --handshakes "$OUT/handshakes.tsv" \
  --chart "$OUT/chart.svg" > "$OUT/table.md" || die "report.py failed"
cat "$OUT/table.md"
echo "table: $OUT/table.md  chart: $OUT/chart.svg  raw: $RAW  logs: $OUT" >&2
