#!/usr/bin/env bash
# benches/pgo.sh -- a profile-guided release build of doorman: the release build (fat LTO, one
# codegen unit, as Cargo.toml's [profile.release]) laid out by the profile of a training load.
#
# Usage (loopback only; about 12 minutes on two cores, most of it two release builds):
#   benches/pgo.sh [--no-install] [--out DIR]
#   prints the optimised binary's path on stdout (progress on stderr), so
#   benches/run.sh --doorman "$(benches/pgo.sh)"   measures it.
#   --out DIR     where the profile goes (default target/pgo): DIR/raw/*.profraw (the training
#                 run's), DIR/doorman.profdata (merged), DIR/train (benches/run.sh's output).
#   --no-install  fail instead of installing what is missing: llvm-profdata (Debian's llvm-N,
#                 N = the LLVM version rustc was built with: `rustc -vV`), and the training
#                 run's tools (benches/run.sh's: nginx, wrk, h2load, redis-server, openssl).
#
# Why: a request's path through doorman is long and spread thin over many functions
# (docs/BENCHMARKS.md, *the instruction cache*): 1,934 first-level instruction-cache misses per
# request on the public path against hyper-floor's 688 and nginx's 745. Profile-guided
# optimisation puts the code a request runs next to each other and the code it does not
# (errors, reloads, the login page) out of its way, inlines by measured heat rather than
# by guess, and orders branches by what was taken; no source changes.
#
# Steps, each in its own target directory (target/pgo-generate, target/pgo-use) so the plain
# release build in target/release is not touched:
#   1. an instrumented release build (`-Cprofile-generate`);
#   2. the training load: `benches/run.sh --quick` with that binary on every doorman row
#      (d, e, f, g, h, x: plain HTTP/1.1 public, authenticated on each store, forward-auth;
#      k, l, m, o, q, s: TLS keep-alive and handshakes; u, v: HTTP/2), 1 s each at 64
#      connections, each answer checked by the harness as in a measured run. Every doorman
#      process writes its profile when it exits (run.sh stops them with SIGTERM);
#   3. `llvm-profdata merge` of those profiles;
#   4. the release build with `-Cprofile-use`. `--target` is given to both builds so the flags
#      reach doorman and its dependencies (hyper, tokio, http, rustls, ...) but not build
#      scripts and proc macros, which run on the host during the build.
# Both builds have the `bench-seed` feature, as every binary benches/ measures (lib.sh's
# build_doorman). The profile is of this checkout's code: a profile from other code is
# accepted (LLVM skips what no longer matches) but guides less.
set -uo pipefail

SCRIPT=pgo.sh
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

INSTALL=1; OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --no-install) INSTALL=0; shift;;
    --out) OUT=$2; shift 2;;
    -h|--help) awk 'NR>1 && /^set -uo/{exit} NR>1' "$0"; exit 0;;
    *) die "unknown option $1 (see --help)";;
  esac
done
TARGET_ROOT=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${OUT:-$TARGET_ROOT/pgo}
mkdir -p "$OUT" || die "cannot create $OUT"
OUT=$(cd "$OUT" && pwd)

HOST=$(rustc -vV | sed -n 's/^host: //p')
LLVM_MAJOR=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
[ -n "$HOST" ] && [ -n "$LLVM_MAJOR" ] || die "cannot read the host and LLVM version from rustc -vV"

# llvm-profdata of rustc's own LLVM version: the raw profile's format changes between versions.
profdata_tool() {
  local sysroot; sysroot=$(rustc --print sysroot)
  for t in "$sysroot/lib/rustlib/$HOST/bin/llvm-profdata" "llvm-profdata-$LLVM_MAJOR" \
           "/usr/lib/llvm-$LLVM_MAJOR/bin/llvm-profdata"; do
    command -v "$t" >/dev/null 2>&1 && { echo "$t"; return 0; }
  done
  return 1
}
PROFDATA=$(profdata_tool) || { install_pkgs "llvm-$LLVM_MAJOR"; PROFDATA=$(profdata_tool); } \
  || die "no llvm-profdata for LLVM $LLVM_MAJOR (Debian: llvm-$LLVM_MAJOR; rustup: llvm-tools)"

build() {  # build DIR RUSTFLAGS: the release doorman for HOST in target DIR; echo its path
  log "cargo build --release --features bench-seed --bin doorman --target $HOST ($2)"
  (cd "$ROOT" && CARGO_TARGET_DIR="$1" RUSTFLAGS="${RUSTFLAGS:-} $2" \
    cargo build --release --quiet --features bench-seed --bin doorman --target "$HOST") >&2 \
    || die "cargo build failed ($2)"
  echo "$1/$HOST/release/doorman"
}

rm -rf "$OUT/raw" "$OUT/train" "$OUT/doorman.profdata"
GENERATE=$(build "$TARGET_ROOT/pgo-generate" "-Cprofile-generate=$OUT/raw") || exit 1

log "training: benches/run.sh --quick on doorman's rows"
PASS_INSTALL=(); [ "$INSTALL" = 1 ] || PASS_INSTALL=(--no-install)
bash "$HERE/run.sh" --quick "${PASS_INSTALL[@]}" --doorman "$GENERATE" \
  --rows d,e,f,g,h,x,k,l,m,o,q,s,u,v --out "$OUT/train" >&2 \
  || die "the training run failed (its output: $OUT/train)"
compgen -G "$OUT/raw/*.profraw" >/dev/null || die "the training run left no profile in $OUT/raw"

# Every doorman of the run merged its counts into one file as it exited (the `%m` in rustc's
# default name for it); merging indexes it for the compiler.
log "$PROFDATA merge"
"$PROFDATA" merge -o "$OUT/doorman.profdata" "$OUT"/raw/*.profraw >&2 || die "llvm-profdata merge failed"
# The training must have run the request path, or the build would be laid out by start-up and
# shutdown alone: the hottest block of gate::decide (every request's way through doorman).
HOT=$("$PROFDATA" show --counts --function=4gate6decide "$OUT/doorman.profdata" \
  | sed -n 's/.*Block counts: \[\(.*\)\]/\1/p' | tr ', ' '\n\n' | sort -n | tail -n 1)
[ "${HOT:-0}" -gt 0 ] 2>/dev/null || die "the profile has no count for gate::decide: the training reached no request"
log "profile: gate::decide's hottest block ran $HOT times"

build "$TARGET_ROOT/pgo-use" "-Cprofile-use=$OUT/doorman.profdata"
