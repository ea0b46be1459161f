#!/usr/bin/env python3
"""Check that rql and DuckDB found the same satisfying cuts (bench/run.sh).

Usage:  compare.py RQL_JSONL DUCKDB_HLCS

RQL_JSONL is `rql replay --format json` output: one record per satisfying cut, whose "hlc" is
[l, c]. DUCKDB_HLCS has one packed HLC (l << 16 | c) per line (bench/duckdb_bench.py). Prints
"same N" and exits 0 if the two SETS of HLCs are equal; otherwise prints what differs and
exits 1. Only the standard library is used.
"""

import re
import sys

# Every JSON Lines record of rql starts with "seq" then "hlc" (canonical key order).
HLC = re.compile(rb'^\{"seq":\d+,"hlc":\[(\d+),(\d+)\]')


def rql_hlcs(path):
    out = set()
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            m = HLC.match(line)
            if not m:
                sys.exit(f"{path}:{n}: not an rql output record: {line[:80]!r}")
            out.add(int(m.group(1)) << 16 | int(m.group(2)))
    return out


def duckdb_hlcs(path):
    with open(path) as f:
        return {int(line) for line in f if line.strip()}


def show(hlcs):
    return ", ".join(f"[{t >> 16},{t & 0xFFFF}]" for t in sorted(hlcs)[:5])


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    a, b = rql_hlcs(sys.argv[1]), duckdb_hlcs(sys.argv[2])
    if a == b:
        print(f"same {len(a)}")
        return
    print(
        f"DIFFER: rql {len(a)}, duckdb {len(b)}; only rql: {len(a - b)} {show(a - b)}; "
        f"only duckdb: {len(b - a)} {show(b - a)}"
    )
    sys.exit(1)


if __name__ == "__main__":
    main()
