#!/usr/bin/env python3
"""DuckDB baselines for the rql benchmark (bench/run.sh).

For one benchmark query and one trace (NDJSON, rql-trace/1, as written by `rql gen`), run the
SQL a user of DuckDB would write to answer the same question -- "at which steps of the trace
does the predicate hold on the cut?" -- single-threaded, and report

    {"query": ..., "variant": ..., "load_s": ..., "eval_s": ..., "e2e_s": ..., "rows": ...}

on stdout (one JSON line), where

    load_s  reading the NDJSON into a table `rec` (one row per record),
    eval_s  the query alone over the loaded table ("evaluation only"),
    e2e_s   connect + load + query ("end to end including reading the NDJSON").

The satisfying steps are written to OUT, one packed HLC (`l << 16 | c`) per line, ascending,
so that bench/compare.py can check them against rql's output.

Usage:  duckdb_bench.py QUERY TRACE OUT [--variant deltas|grid] [--threads 1]
        QUERY is q1, q2, q3 or q4 (see QUERIES below).

How the SQL models rql's semantics (SPEC §1.4, §3):

* The state of node n at step t is the result of applying n's records with hlc <= t. A record
  of `rql gen` sets some variables (JSON object "set"); a variable it does not set keeps its
  value. So a node's state after each of its records is a forward fill:
  `last_value(x IGNORE NULLS) OVER (PARTITION BY node ORDER BY t)` (CTE `state`).
* The cut at step t holds, for every node that has sent a record, its latest state with
  hlc <= t. Two ways to evaluate a predicate over all cuts:
  - "grid" (works for any predicate across nodes): build every (step, node) pair and attach
    the node's latest state with an ASOF JOIN, then GROUP BY step and test the predicate with
    aggregates over the nodes. Cost: steps x nodes rows.
  - "deltas" (only for node-local predicates: LINK SAME_NODE / EACH_NODE): flag each node
    state as satisfying or not; each record changes its node's flag by -1, 0 or +1; a running
    SUM of those changes over the global HLC order is the number of satisfying nodes at each
    step. Cost: O(records log records), independent of the number of nodes.
  Each query uses the faster formulation it admits (deltas for q1/q4, grid for q2/q3);
  `--variant grid` forces the generic one (for q1, to show its cost).
* Simplifications that hold for `rql gen` traces (and are checked by comparing with rql): no
  `unset`/`add`/`remove`/`leave`, no heartbeats, at most one record per node per HLC, every
  node sets every variable in its first record, and every record touches a queried variable,
  so every step is a candidate cut (SPEC §4.1) and P(t) is the set of nodes seen so far.
"""

import argparse
import json
import sys
import time

import duckdb

# ---------------------------------------------------------------------------------------------
# Loading: one row per record; HLC packed into one BIGINT so that ordering by `t` is HLC order.
# The `set` object is read as a STRUCT with one field per variable the query needs (explicit
# columns: other fields, e.g. zk.role, are ignored); a variable the record does not set is NULL.
# This is the unpivot of `set` restricted to the variables of the query, one column per key.
# ---------------------------------------------------------------------------------------------
LOAD = {
    "inv": """
        CREATE TABLE rec AS
        SELECT node,
               hlc[1] * 65536 + hlc[2] AS t,          -- packed HLC: l << 16 | c
               "set"."inv.a" AS a,
               "set"."inv.b" AS b,
               "set"."inv.c" AS c
        FROM read_json($trace, format = 'newline_delimited',
                       columns = {node: 'VARCHAR', hlc: 'BIGINT[]',
                                  "set": 'STRUCT("inv.a" BIGINT, "inv.b" BIGINT, "inv.c" BIGINT)'})
    """,
    "zk": """
        CREATE TABLE rec AS
        SELECT node,
               hlc[1] * 65536 + hlc[2] AS t,          -- packed HLC: l << 16 | c
               "set"."zk.version" AS v
        FROM read_json($trace, format = 'newline_delimited',
                       columns = {node: 'VARCHAR', hlc: 'BIGINT[]',
                                  "set": 'STRUCT("zk.version" BIGINT)'})
    """,
}

# Each node's state after each of its records: forward fill of every variable per node.
STATE = {
    "inv": """
        state AS (
            SELECT node, t,
                   last_value(a IGNORE NULLS) OVER w AS a,
                   last_value(b IGNORE NULLS) OVER w AS b,
                   last_value(c IGNORE NULLS) OVER w AS c
            FROM rec
            WINDOW w AS (PARTITION BY node ORDER BY t
                         ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
        )""",
    "zk": """
        state AS (
            SELECT node, t,
                   last_value(v IGNORE NULLS) OVER w AS v
            FROM rec
            WINDOW w AS (PARTITION BY node ORDER BY t
                         ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
        )""",
}

# The cut at every step: one row per (step, node seen so far) with the node's latest state.
GRID = """
        steps AS (SELECT DISTINCT t FROM rec),
        nodes AS (SELECT DISTINCT node FROM rec),
        cut AS (
            SELECT g.t, s.*  EXCLUDE (node, t)
            FROM (SELECT steps.t, nodes.node FROM steps CROSS JOIN nodes) g
            -- the node's latest state at or before the step; nodes that have not sent
            -- anything yet find no match and drop out (inner ASOF join)
            ASOF JOIN state s ON s.node = g.node AND s.t <= g.t
        )"""


def deltas(flag_sql, require_all):
    """Steps where some node (require_all=False) or every node (True) satisfies `flag_sql`, a
    boolean over one node's state; NULL counts as not satisfied."""
    test = "good = seen AND seen > 0" if require_all else "good > 0"
    return f"""
        flag AS (
            SELECT node, t, coalesce({flag_sql}, false)::INTEGER AS good FROM state
        ),
        change AS (
            -- how this record changes the number of satisfying nodes and of nodes seen
            SELECT t,
                   good - coalesce(lag(good) OVER (PARTITION BY node ORDER BY t), 0) AS d_good,
                   CASE WHEN lag(t) OVER (PARTITION BY node ORDER BY t) IS NULL
                        THEN 1 ELSE 0 END AS d_seen
            FROM flag
        ),
        per_step AS (
            SELECT t, sum(d_good) AS d_good, sum(d_seen) AS d_seen FROM change GROUP BY t
        ),
        running AS (
            SELECT t,
                   sum(d_good) OVER w AS good,     -- satisfying nodes on the cut at t
                   sum(d_seen) OVER w AS seen      -- nodes on the cut at t
            FROM per_step
            WINDOW w AS (ORDER BY t ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
        )
    SELECT t FROM running WHERE {test} ORDER BY t"""


QUERIES = {
    # Q1: SELECT inv.a, inv.b, inv.c FROM inv WHEN (inv.a + inv.b <= inv.c) LINK SAME_NODE
    #     = exists a node i with a_i + b_i <= c_i.
    "q1": {
        "log": "inv",
        "deltas": "WITH" + STATE["inv"] + "," + deltas("a + b <= c", require_all=False),
        "grid": "WITH" + STATE["inv"] + "," + GRID + """
    SELECT t FROM cut GROUP BY t HAVING bool_or(a + b <= c) ORDER BY t""",
    },
    # Q2: SELECT inv.c FROM inv WHEN inv.c > inv.a + inv.b
    #     = exists nodes i, j, k with c_k > a_i + b_j  <=>  MAX(c) > MIN(a) + MIN(b).
    "q2": {
        "log": "inv",
        "grid": "WITH" + STATE["inv"] + "," + GRID + """
    SELECT t FROM cut GROUP BY t HAVING max(c) > min(a) + min(b) ORDER BY t""",
    },
    # Q3: SELECT zk.version FROM zk WHEN MAX(zk.version) - MIN(zk.version) >= 2
    "q3": {
        "log": "zk",
        "grid": "WITH" + STATE["zk"] + "," + GRID + """
    SELECT t FROM cut GROUP BY t HAVING max(v) - min(v) >= 2 ORDER BY t""",
    },
    # Q4: SELECT zk.version FROM zk WHEN (zk.version >= 7) LINK EACH_NODE
    #     = the cut is not empty and every node on it has version >= 7.
    "q4": {
        "log": "zk",
        "deltas": "WITH" + STATE["zk"] + "," + deltas("v >= 7", require_all=True),
        "grid": "WITH" + STATE["zk"] + "," + GRID + """
    SELECT t FROM cut GROUP BY t HAVING bool_and(coalesce(v >= 7, false)) ORDER BY t""",
    },
}


def default_variant(query):
    return "deltas" if "deltas" in QUERIES[query] else "grid"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("query", choices=sorted(QUERIES))
    ap.add_argument("trace")
    ap.add_argument("out", help="file for the satisfying packed HLCs")
    ap.add_argument("--variant", choices=["deltas", "grid"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--print-sql", action="store_true", help="print the SQL and exit")
    args = ap.parse_args()
    q = QUERIES[args.query]
    variant = args.variant or default_variant(args.query)
    if variant not in q:
        sys.exit(f"{args.query} has no {variant} formulation")
    load_sql, eval_sql = LOAD[q["log"]], q[variant]
    if args.print_sql:
        print(load_sql.strip() + ";\n\n" + eval_sql.strip() + ";")
        return

    start = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"SET threads = {args.threads}")
    con.execute("SET enable_progress_bar = false")
    con.execute(load_sql, {"trace": args.trace})
    loaded = time.perf_counter()
    rows = con.execute(eval_sql).fetchall()
    done = time.perf_counter()

    with open(args.out, "w") as f:
        for (t,) in rows:
            f.write(f"{t}\n")
    print(json.dumps({
        "query": args.query,
        "variant": variant,
        "records": con.execute("SELECT count(*) FROM rec").fetchone()[0],
        "load_s": round(loaded - start, 4),
        "eval_s": round(done - loaded, 4),
        "e2e_s": round(done - start, 4),
        "rows": len(rows),
    }))


if __name__ == "__main__":
    main()
