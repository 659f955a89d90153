#!/usr/bin/env bash
# benches/pgo.sh -- a profile-guided release build of doorman: the release build (fat LTO, one
# codegen unit, as Cargo.toml's [profile.release]) laid out by the profile of a training load.
#
# Usage (loopback only; about ten minutes on two cores, most of it two release builds):
#   benches/pgo.sh [--no-install] [--out DIR]
#   prints the optimised binary's path on stdout (progress on stderr), so
#   bin=$(benches/pgo.sh) && benches/run.sh --doorman "$bin"   measures it. The same build
#   makes the harness's floor (benches/hyper_floor.rs, row w) beside it, trained and laid out
#   the same way: "$(dirname "$bin")/examples/hyper-floor", for run.sh's --floor and
#   callgrind.sh's FLOOR, so that a run's "doorman over the floor" compares like with like.
#   Both are rebuilt in place by the next run of this script: copy them to keep them.
#   --out DIR     where the profile goes (default target/pgo): DIR/raw/*.profraw (the training
#                 run's), DIR/doorman.profdata (merged), DIR/train (benches/run.sh's output).
#   --no-install  fail instead of installing what is missing: llvm-profdata (Debian's llvm-N,
#                 N = the LLVM version rustc was built with: `rustc -vV`), and the training
#                 run's tools (benches/run.sh's: nginx, wrk, h2load, redis-server, openssl,
#                 curl, python3).
#   --print-profdata  print the llvm-profdata this script would use and exit (1: none found);
#                 scripts/test asks it.
#
# Why: a request's path through doorman is long and spread thin over many functions
# (docs/BENCHMARKS.md, *the instruction cache*): 1,934 first-level instruction-cache misses per
# request on the public path against hyper-floor's 688 and nginx's 745. Profile-guided
# optimisation puts the code a request runs next to each other and the code it does not
# (errors, reloads, the login page) out of its way, inlines by measured heat rather than
# by guess, and orders branches by what was taken; no source changes.
#
# Steps, each build in its own target directory (target/pgo-generate, target/pgo-use), so
# target/release/doorman is not touched (the training's handshake rows build the tls-load
# example in target/release, as benches/run.sh always does):
#   1. an instrumented release build (`-Cprofile-generate`) of doorman and hyper-floor;
#   2. the training load: `benches/run.sh --quick` with those binaries on every doorman row
#      (d, e, f, g, h, x: plain HTTP/1.1 public, authenticated on each store, forward-auth;
#      k, l, m, o, q, s: TLS keep-alive and handshakes; u, v: HTTP/2) and the floor's (w),
#      1 s each at 64 connections, each answer checked by the harness as in a measured run.
#      Every doorman and floor process adds its counts to DIR/raw when it exits (run.sh stops
#      them with SIGTERM; LLVM_PROFILE_FILE names the file, one per binary). The run fails
#      here if a row errored, was skipped, or the profile holds fewer than MIN_REQUESTS passes
#      through gate::decide or through the floor's PooledBody::give_back;
#   3. `llvm-profdata merge` of those profiles into one (records are keyed by function name
#      and shape: most of the floor's functions, hyper's, httparse's and tokio's, share name
#      and shape with doorman's and get the sum of both counts, from the same kind of load,
#      in which doorman's fourteen rows weigh most);
#   4. the release build with `-Cprofile-use`. `--target` is given to both builds so the flags
#      reach doorman and its dependencies (hyper, tokio, http, rustls, ...) but not build
#      scripts and proc macros, which run on the host during the build.
# The flags of both builds are the same whatever DIR is (the profile goes where
# LLVM_PROFILE_FILE says, and the merged one is copied to target/pgo-use/doorman.profdata,
# which rustc lists among the build's inputs, so a new profile rebuilds): cargo keeps one
# build per directory instead of one per DIR. One run at a time (a lock in the target dir).
# Both builds have the `bench-seed` feature, as every binary benches/ measures (lib.sh's
# build_doorman). The profile is of this checkout's code: taken from other code, it still
# applies to the functions that kept their shape, with counts that may no longer hold.
set -uo pipefail

SCRIPT=pgo.sh
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

INSTALL=1; OUT=""; PRINT_PROFDATA=0
MIN_REQUESTS=10000
while [ $# -gt 0 ]; do
  case "$1" in
    --no-install) INSTALL=0; shift;;
    --out) OUT=$2; shift 2;;
    --print-profdata) PRINT_PROFDATA=1; shift;;
    -h|--help) awk 'NR>1 && /^set -uo/{exit} NR>1' "$0"; exit 0;;
    *) die "unknown option $1 (see --help)";;
  esac
done

RUSTC_VV=$(cd "$ROOT" && "${RUSTC:-rustc}" -vV) || die "rustc -vV failed"
HOST=$(sed -n 's/^host: //p' <<< "$RUSTC_VV")
LLVM_MAJOR=$(sed -n 's/^LLVM version: \([0-9]*\).*/\1/p' <<< "$RUSTC_VV")
[ -n "$HOST" ] && [ -n "$LLVM_MAJOR" ] || die "cannot read the host and LLVM version from rustc -vV"

# llvm-profdata of rustc's own LLVM version: the raw profile's format changes between versions.
profdata_tool() {
  local sysroot; sysroot=$(cd "$ROOT" && "${RUSTC:-rustc}" --print sysroot)
  for t in "$sysroot/lib/rustlib/$HOST/bin/llvm-profdata" "llvm-profdata-$LLVM_MAJOR" \
           "/usr/lib/llvm-$LLVM_MAJOR/bin/llvm-profdata"; do
    command -v "$t" >/dev/null 2>&1 && { echo "$t"; return 0; }
  done
  return 1
}
if [ "$PRINT_PROFDATA" = 1 ]; then profdata_tool; exit; fi
NO_PROFDATA="no llvm-profdata for rustc's LLVM $LLVM_MAJOR: install Debian's llvm-$LLVM_MAJOR or \`rustup component add llvm-tools\`"
if ! PROFDATA=$(profdata_tool); then
  [ "$INSTALL" = 1 ] || die "$NO_PROFDATA (or rerun without --no-install)"
  apt-cache show "llvm-$LLVM_MAJOR" >/dev/null 2>&1 || die "$NO_PROFDATA (apt has no llvm-$LLVM_MAJOR)"
  install_pkgs "llvm-$LLVM_MAJOR"
  PROFDATA=$(profdata_tool) || die "$NO_PROFDATA"
fi
# RUSTFLAGS would be ignored beside it, and the build silently not instrumented.
[ -z "${CARGO_ENCODED_RUSTFLAGS:-}" ] || die "CARGO_ENCODED_RUSTFLAGS is set: unset it (pgo.sh sets RUSTFLAGS)"

TARGET_ROOT=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET_ROOT" in *[[:space:]]*) die "the target directory's path has a space, which RUSTFLAGS cannot carry: $TARGET_ROOT";; esac
OUT=${OUT:-$TARGET_ROOT/pgo}
mkdir -p "$OUT" "$TARGET_ROOT/pgo-use" || die "cannot create $OUT"
OUT=$(cd "$OUT" && pwd)
exec 9> "$TARGET_ROOT/pgo.lock" && flock 9 || die "cannot lock $TARGET_ROOT/pgo.lock"

build() {  # build DIR RUSTFLAGS: the release doorman and hyper-floor for HOST in target DIR;
           # echo doorman's path (the floor is examples/hyper-floor beside it)
  log "cargo build --release --features bench-seed --bin doorman --example hyper-floor --target $HOST ($2)"
  (cd "$ROOT" && CARGO_TARGET_DIR="$1" RUSTFLAGS="${RUSTFLAGS:-} $2" \
    cargo build --release --quiet --features bench-seed --bin doorman --example hyper-floor \
      --target "$HOST") >&2 \
    || die "cargo build failed ($2)"
  echo "$1/$HOST/release/doorman"
}

rm -rf "$OUT/raw" "$OUT/train" "$OUT/doorman.profdata"
GENERATE=$(build "$TARGET_ROOT/pgo-generate" "-Cprofile-generate=$TARGET_ROOT/pgo-generate/profraw") \
  || exit 1

ROWS=d,e,f,g,h,x,k,l,m,o,q,s,u,v,w
log "training: benches/run.sh --quick on doorman's and the floor's rows ($ROWS)"
PASS_INSTALL=(); [ "$INSTALL" = 1 ] || PASS_INSTALL=(--no-install)
# %m: one file per binary, to which every doorman (or floor) of the run adds its counts as it
# exits.
# 9>&-: the servers run.sh starts do not hold the lock; one left behind would block every
# later run of this script.
LLVM_PROFILE_FILE="$OUT/raw/doorman-%m.profraw" \
  bash "$HERE/run.sh" --quick "${PASS_INSTALL[@]}" --doorman "$GENERATE" \
  --floor "$(dirname "$GENERATE")/examples/hyper-floor" \
  --rows "$ROWS" --out "$OUT/train" >&2 9>&- \
  || die "the training run failed (its output: $OUT/train)"
# Each row of the run's main table: measured (a number of requests per second), without errors.
BAD=$(awk -F'|' -v rows=",$ROWS," '
  /^\| row \| what \| conns \| req\/s \| p50/ { main = 1; next }
  main && !/^\|/ { main = 0 }
  main && index(rows, "," substr($2, 2, 1) ",") && ($5 !~ /[0-9]/ || $8 + 0 > 0) { print $2 "(" $4 "):" $5 "," $8 }
' "$OUT/train/table.md")
[ -z "$BAD" ] || die "the training run has rows that errored or were not measured: $BAD ($OUT/train/table.md)"
compgen -G "$OUT/raw/*.profraw" >/dev/null || die "the training run left no profile in $OUT/raw"

log "$PROFDATA merge"
"$PROFDATA" merge -o "$OUT/doorman.profdata" "$OUT"/raw/*.profraw >&2 || die "llvm-profdata merge failed"
# The training must have run the request path, or the build would be laid out by start-up and
# shutdown alone: the hottest block of gate::decide (every request's way through doorman), at
# least MIN_REQUESTS times (the harness's own checks and logins alone pass through it).
# The floor's likewise: PooledBody::give_back (the end of every response it proxies; its
# `forward` is inlined before the counters are placed, so it has none of its own).
hottest() {  # hottest FUNCTION: the largest block count of the functions whose name has FUNCTION
  "$PROFDATA" show --counts --function="$1" "$OUT/doorman.profdata" \
    | sed -n 's/.*Block counts: \[\(.*\)\]/\1/p' | tr ', ' '\n\n' | sort -n | tail -n 1
}
HOT=$(hottest 4gate6decide)
[ "${HOT:-0}" -ge "$MIN_REQUESTS" ] 2>/dev/null \
  || die "gate::decide's hottest block ran ${HOT:-0} times in the profile (at least $MIN_REQUESTS wanted): the training reached too few requests"
log "profile: gate::decide's hottest block ran $HOT times"
FLOOR_HOT=$(hottest 11hyper_floor10PooledBody9give_back)
[ "${FLOOR_HOT:-0}" -ge "$MIN_REQUESTS" ] 2>/dev/null \
  || die "hyper-floor's PooledBody::give_back ran ${FLOOR_HOT:-0} times in the profile (at least $MIN_REQUESTS wanted): the floor's training reached too few requests"
log "profile: hyper-floor's PooledBody::give_back's hottest block ran $FLOOR_HOT times"

cp "$OUT/doorman.profdata" "$TARGET_ROOT/pgo-use/doorman.profdata" || die "cannot copy the profile"
build "$TARGET_ROOT/pgo-use" "-Cprofile-use=$TARGET_ROOT/pgo-use/doorman.profdata"
