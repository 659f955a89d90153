#!/usr/bin/env python3
"""benches/cg_sources.py -- where a callgrind profile's instructions are, by source file.

callgrind_annotate counts an inlined function in the function it was inlined into: in a
release build most of hyper, http and doorman's forward path show up as one
`gate::decide::{{closure}}`. With line tables in the binary, callgrind also records the
source file of every instruction (its `fi=`/`fe=` records), inlined or not; this script sums
by that file instead, so a profile says how much is hyper's parser, http's header map, the
allocator, memcpy or doorman's own modules, and two profiles (doorman's public path and the
floor's, see benches/hyper_floor.rs) can be compared file by file.

Usage:
  CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_TARGET_DIR=target/lines \\
    cargo build --release --features bench-seed --bin doorman --example hyper-floor
  DOORMAN=target/lines/release/doorman FLOOR=target/lines/release/examples/hyper-floor \\
    KEEP=1 OUT=/tmp/cg bash benches/callgrind.sh
  python3 benches/cg_sources.py --per 2000 /tmp/cg/public.callgrind.out [/tmp/cg/floor.callgrind.out]

Options:
  --per N         divide every figure by N (callgrind.sh's N: the measured requests)
  --top K         rows to print (default 40)
  --event E       the event to sum (default Ir; with CACHE=1: D1mw, DLmr, DLmw, ...)
  --calls TEXT    instead, the calls into functions whose name contains TEXT (`memcpy`,
                  `malloc`), by calling function and call-site line, with their inclusive cost
                  (calls from a function whose own name contains TEXT are left out: they are
                  inside a call already counted); one profile only
  --lines TEXT    instead, the self cost by line of the source files whose path contains TEXT
                  (`header/map.rs`, `src/gate.rs`): where in a file the instructions are, when
                  callgrind_annotate cannot find the file or splits it by inlining caller;
                  one profile only

Figures are self costs (a call's callee is counted in the callee's file), so the rows add up
to the profile's total. With a second profile, rows are sorted by the size of the difference,
either way. Profiles made with `--dump-instr=yes` (an address column) are refused.
"""

import argparse
import collections
import os
import re
import sys

NAMED = re.compile(r"^\((\d+)\)(?: (.*))?$")
KEY = re.compile(r"^([a-z]+)=(.*)$")


def read(path, event, calls_into=None, lines_of=None):
    """Self cost by source file; when `calls_into` is given, the inclusive cost of calls into
    matching functions by (caller, call-site file, line); when `lines_of` is given, the self
    cost by (file, line) of the files whose path contains it."""
    files, functions = {}, {}

    def name(table, text):
        m = NAMED.match(text)
        if not m:
            return text
        if m.group(2) is not None:
            table[m.group(1)] = m.group(2)
        return table.get(m.group(1), "?")

    by_file = collections.Counter()
    calls = collections.Counter()
    by_line = collections.Counter()
    column, fl, fi, fn, callee, in_call, last = 0, "?", "?", "?", "?", False, 0
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            if line.startswith("positions:"):
                # One position column (the line) is what the cost columns are read after.
                if line.split()[1:] != ["line"]:
                    sys.exit(f"{path}: positions {line.split()[1:]}: only `line` is read "
                             "(a profile made without --dump-instr)")
                continue
            if line.startswith("events:"):
                events = line.split()[1:]
                if event not in events:
                    sys.exit(f"{path}: no event {event} (has {' '.join(events)})")
                column = events.index(event)
                continue
            m = KEY.match(line)
            if m:
                key, value = m.groups()
                if key == "fl":
                    fl = fi = name(files, value)
                elif key in ("fi", "fe"):
                    fi = name(files, value)
                elif key == "fn":
                    fn = name(functions, value)
                    fi = fl
                elif key in ("cfl", "cfi"):
                    name(files, value)
                elif key == "cfn":
                    callee = name(functions, value)
                elif key == "calls":
                    in_call = True
                continue
            if not (line[0].isdigit() or line[0] in "+-*"):
                continue
            fields = line.split()
            pos = fields[0]
            if pos == "*":
                here = last
            elif pos[0] in "+-":
                here = last + int(pos)
            else:
                here = int(pos)
            last = here
            cost = int(fields[1 + column]) if len(fields) > 1 + column else 0
            if in_call:
                # The line after `calls=` is the call's inclusive cost, at its call site.
                in_call = False
                # A call made from a function that itself matches is inside a matching
                # call already counted (`malloc` calling `_int_malloc`).
                if calls_into is not None and calls_into in callee and calls_into not in fn:
                    calls[(fn, fi, here)] += cost
                continue
            by_file[fi] += cost
            if lines_of is not None and lines_of in fi:
                by_line[(fi, here)] += cost
    return by_file, calls, by_line


def short(path):
    """A registry or toolchain path cut to the crate and file; doorman's, to its own path."""
    here = os.getcwd() + "/"
    if path.startswith(here):
        return path[len(here):]
    for marker in ("/registry/src/", "/library/"):
        if marker in path:
            rest = path.split(marker, 1)[1]
            return rest.split("/", 1)[1] if marker == "/registry/src/" else "std:" + rest
    return path


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("profile")
    p.add_argument("base", nargs="?")
    p.add_argument("--per", type=float, default=1.0)
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--event", default="Ir")
    p.add_argument("--calls")
    p.add_argument("--lines")
    a = p.parse_args()

    if a.calls is not None and a.lines is not None:
        sys.exit("--calls and --lines are two reports: one at a time")
    if a.calls is not None:
        if a.base:
            sys.exit("--calls reads one profile")
        _, calls, _ = read(a.profile, a.event, a.calls)
        for (fn, fi, line), cost in calls.most_common(a.top):
            print(f"{cost / a.per:9.1f}  {fn[:80]}  at {short(fi)}:{line}")
        return

    if a.lines is not None:
        if a.base:
            sys.exit("--lines reads one profile")
        _, _, lines = read(a.profile, a.event, lines_of=a.lines)
        for (fi, line), cost in lines.most_common(a.top):
            print(f"{cost / a.per:9.1f}  {short(fi)}:{line}")
        return

    mine, _, _ = read(a.profile, a.event)
    if not a.base:
        print(f"{sum(mine.values()) / a.per:9.0f}  total")
        for path, cost in mine.most_common(a.top):
            print(f"{cost / a.per:9.0f}  {short(path)}")
        return
    base, _, _ = read(a.base, a.event)
    print(f"{'profile':>9} {'base':>9} {'diff':>9}")
    print(f"{sum(mine.values()) / a.per:9.0f} {sum(base.values()) / a.per:9.0f} "
          f"{(sum(mine.values()) - sum(base.values())) / a.per:+9.0f}  total")
    rows = sorted(set(mine) | set(base), key=lambda k: -abs(mine.get(k, 0) - base.get(k, 0)))
    for path in rows[: a.top]:
        m, b = mine.get(path, 0), base.get(path, 0)
        print(f"{m / a.per:9.0f} {b / a.per:9.0f} {(m - b) / a.per:+9.0f}  {short(path)}")


if __name__ == "__main__":
    main()
