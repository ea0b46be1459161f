#!/usr/bin/env bash
# rql benchmark: rql vs DuckDB on the same synthetic traces.
#
# What it measures
#   For each benchmark query and node count N, `rql gen` writes a deterministic trace
#   (NDJSON, rql-trace/1) into bench/out/. Then, in the same run and on the same file:
#     - rql:    target/release/rql replay TRACE -e QUERY --format json --stats > output
#               wall time of the whole process (read + sort + evaluate + write), and rql's own
#               evaluation and output-writing times from its --stats lines; peak RSS if
#               /usr/bin/time exists.
#     - DuckDB: the SQL a DuckDB user would write for the same question (bench/duckdb_bench.py,
#               single-threaded: SET threads = 1): "eval" = the query over the trace already
#               loaded into a table, "e2e" = connect + read_json + query.
#   It checks that both return the same SET of satisfying cuts (rql: the "hlc" of every output
#   record; DuckDB: the step HLCs where the predicate holds; bench/compare.py) and prints a
#   markdown table (also saved to bench/out/results.md).
#
#   Q1  SELECT inv.a, inv.b, inv.c FROM inv WHEN (inv.a + inv.b <= inv.c) LINK SAME_NODE
#   Q2  SELECT inv.c FROM inv WHEN inv.c > inv.a + inv.b
#   Q3  SELECT zk.version FROM zk WHEN MAX(zk.version) - MIN(zk.version) >= 2
#   Q4  SELECT zk.version FROM zk WHEN (zk.version >= 7) LINK EACH_NODE
#   Q1/Q2 run on `rql gen --scenario invariant` (~1% of cuts violate), Q3/Q4 on
#   `--scenario staleness`. Q1/Q4 are node-local, so their DuckDB SQL counts satisfying nodes
#   with running sums ("deltas", O(records)); Q2/Q3 need the whole cut at every step ("grid":
#   steps x nodes rows via ASOF JOIN). With DUCKDB_GRID=1 (default) Q1/Q4 also get a row with
#   the generic grid SQL, to show what a cross-node formulation costs.
#
# How to run
#   bench/run.sh                 # full run (several minutes; needs python3 and PyPI access)
#   QUICK=1 bench/run.sh         # ~100k steps per trace: a fast sanity run
#   RQL_ONLY=1 bench/run.sh      # skip DuckDB (no venv, no comparison)
#   bench/.venv/bin/python bench/duckdb_bench.py q1 TRACE /dev/null --print-sql   # the SQL
#
# Environment variables (defaults in brackets; QUICK=1 changes the defaults marked *)
#   QUICK           1 = small traces and shorter timeouts                              [0]
#   RQL_ONLY        1 = run rql only                                                   [0]
#   Q1_RUNS*        space-separated N:STEPS pairs for Q1              [32:2000000] (QUICK 32:100000)
#   Q2_RUNS*        ... for Q2           [8:500000 128:200000 1024:100000] (QUICK 8:100000
#                                                                  128:100000 1024:20000)
#   Q3_RUNS*        ... for Q3                  [32:1000000 1024:100000] (QUICK 32:100000
#                                                                           1024:20000)
#   Q4_RUNS*        ... for Q4                                  [32:500000] (QUICK 32:100000)
#   QUERIES         which queries to run                                       [Q1 Q2 Q3 Q4]
#   SEED            seed for rql gen                                                   [1]
#   RQL_TIMEOUT*    seconds before an rql run is stopped and reported "timeout" [600] (QUICK 120)
#   DUCKDB_TIMEOUT* the same for a DuckDB run                              [1200] (QUICK 240)
#   MAX_BINDINGS    rql --max-bindings (a run over it is reported "bound exceeded")   [rql's]
#   DUCKDB_GRID     1 = also time the grid SQL for Q1/Q4                               [1]
#   DUCKDB_VERSION  pip version pin for duckdb (e.g. 1.2.2)                        [latest]
#   KEEP_OUTPUT     1 = keep rql's output files in bench/out (can be large)            [0]
#   CARGO_TARGET_DIR  where cargo builds (the binary is $CARGO_TARGET_DIR/release/rql) [target]
#
# Exit status: 0 if every comparison agreed (timeouts and exceeded bounds are reported in the
# table, not failures), 1 if rql and DuckDB disagreed on some query or a step failed.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
OUT=$BENCH/out
QUICK=${QUICK:-0}
RQL_ONLY=${RQL_ONLY:-0}
SEED=${SEED:-1}
DUCKDB_GRID=${DUCKDB_GRID:-1}
KEEP_OUTPUT=${KEEP_OUTPUT:-0}
QUERIES=${QUERIES:-Q1 Q2 Q3 Q4}
if [[ $QUICK == 1 ]]; then
    Q1_RUNS=${Q1_RUNS:-32:100000}
    Q2_RUNS=${Q2_RUNS:-8:100000 128:100000 1024:20000}
    Q3_RUNS=${Q3_RUNS:-32:100000 1024:20000}
    Q4_RUNS=${Q4_RUNS:-32:100000}
    RQL_TIMEOUT=${RQL_TIMEOUT:-120}
    DUCKDB_TIMEOUT=${DUCKDB_TIMEOUT:-240}
else
    Q1_RUNS=${Q1_RUNS:-32:2000000}
    Q2_RUNS=${Q2_RUNS:-8:500000 128:200000 1024:100000}
    Q3_RUNS=${Q3_RUNS:-32:1000000 1024:100000}
    Q4_RUNS=${Q4_RUNS:-32:500000}
    RQL_TIMEOUT=${RQL_TIMEOUT:-600}
    DUCKDB_TIMEOUT=${DUCKDB_TIMEOUT:-1200}
fi

declare -A SQL SCENARIO RUNS
SQL[Q1]='SELECT inv.a, inv.b, inv.c FROM inv WHEN (inv.a + inv.b <= inv.c) LINK SAME_NODE'
SQL[Q2]='SELECT inv.c FROM inv WHEN inv.c > inv.a + inv.b'
SQL[Q3]='SELECT zk.version FROM zk WHEN MAX(zk.version) - MIN(zk.version) >= 2'
SQL[Q4]='SELECT zk.version FROM zk WHEN (zk.version >= 7) LINK EACH_NODE'
SCENARIO=([Q1]=invariant [Q2]=invariant [Q3]=staleness [Q4]=staleness)
RUNS=([Q1]=$Q1_RUNS [Q2]=$Q2_RUNS [Q3]=$Q3_RUNS [Q4]=$Q4_RUNS)

log() { printf '==> %s\n' "$*" >&2; }

# --- build ---------------------------------------------------------------------------------
log "building rql (cargo build --release -p repl)"
(cd "$ROOT" && cargo build --release -p repl)
TARGET_DIR=${CARGO_TARGET_DIR:-target}
[[ $TARGET_DIR == /* ]] || TARGET_DIR=$ROOT/$TARGET_DIR
RQL=$TARGET_DIR/release/rql
mkdir -p "$OUT"

# --- DuckDB in a venv ----------------------------------------------------------------------
PY=$BENCH/.venv/bin/python
if [[ $RQL_ONLY != 1 ]]; then
    if ! "$PY" -c 'import duckdb' 2>/dev/null; then
        log "installing duckdb${DUCKDB_VERSION:+==$DUCKDB_VERSION} into bench/.venv"
        python3 -m venv "$BENCH/.venv"
        "$PY" -m pip install --quiet --disable-pip-version-check \
            "duckdb${DUCKDB_VERSION:+==$DUCKDB_VERSION}"
    fi
    DUCKDB_VER=$("$PY" -c 'import duckdb; print(duckdb.__version__)')
fi

TIME_BIN=
[[ -x /usr/bin/time ]] && TIME_BIN=/usr/bin/time

now_ns() { date +%s%N; }
# fmt_s SECONDS -> 4 decimals below 1 s, 2 above ("-" stays "-")
fmt_s() {
    awk -v x="$1" 'BEGIN { if (x == "-" || x == "") print "-"; else if (x < 1) printf "%.4f", x; else printf "%.2f", x }'
}
# secs START_NS END_NS -> seconds
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", (b - a) / 1e9 }'; }
# rate COUNT SECONDS -> count per second, human readable (e.g. 1.23M)
rate() {
    awk -v n="$1" -v s="$2" 'BEGIN {
        if (s <= 0) { print "-"; exit }
        r = n / s
        if (r >= 1e6) printf "%.2fM", r / 1e6; else if (r >= 1e3) printf "%.1fk", r / 1e3; else printf "%.0f", r
    }'
}
# ratio A B -> A / B with 2 decimals ("-" if either is missing)
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a == "" || b == "" || a == "-" || b == "-" || b <= 0) { print "-"; exit }
        printf "%.2f", a / b
    }'
}
rss_mb() { # file written by /usr/bin/time -f %M (KiB)
    if [[ -s $1 ]]; then awk '{ printf "%.0f", $1 / 1024 }' "$1"; else echo -; fi
}

# --- traces --------------------------------------------------------------------------------
declare -A GENERATED
make_trace() { # scenario nodes steps -> sets TRACE (generated once per run)
    TRACE="$OUT/$1-n$2-s$3-seed$SEED.ndjson"
    if [[ -z ${GENERATED[$TRACE]:-} ]]; then
        log "rql gen --scenario $1 --nodes $2 --steps $3 --seed $SEED"
        "$RQL" gen --scenario "$1" --nodes "$2" --steps "$3" --seed "$SEED" -o "$TRACE"
        GENERATED[$TRACE]=1
    fi
}

# --- runs ----------------------------------------------------------------------------------
ROWS=()
FAILED=0
MAX_BINDINGS_ARGS=()
[[ -n ${MAX_BINDINGS:-} ]] && MAX_BINDINGS_ARGS=(--max-bindings "$MAX_BINDINGS")

# run_duckdb QUERY VARIANT TRACE -> sets D_E2E D_EVAL D_RSS D_STATUS D_HLCS
run_duckdb() {
    local q=$1 variant=$2 trace=$3 lq
    lq=$(tr '[:upper:]' '[:lower:]' <<<"$q")
    D_HLCS="$OUT/$lq-$variant-$(basename "$trace" .ndjson).duckdb.txt"
    local json="$OUT/duckdb.json" err="$OUT/duckdb.err" tfile="$OUT/duckdb.time"
    rm -f "$tfile"
    local timer=()
    [[ -n $TIME_BIN ]] && timer=("$TIME_BIN" -f %M -o "$tfile")
    local rc=0
    timeout "$DUCKDB_TIMEOUT" "${timer[@]}" "$PY" "$BENCH/duckdb_bench.py" "$lq" "$trace" \
        "$D_HLCS" --variant "$variant" >"$json" 2>"$err" || rc=$?
    D_RSS=$(rss_mb "$tfile")
    D_E2E=- D_EVAL=-
    if [[ $rc == 0 ]]; then
        D_STATUS=ok
        D_E2E=$("$PY" -c 'import json,sys; print(json.load(sys.stdin)["e2e_s"])' <"$json")
        D_EVAL=$("$PY" -c 'import json,sys; print(json.load(sys.stdin)["eval_s"])' <"$json")
    elif [[ $rc == 124 ]]; then
        D_STATUS="timeout (${DUCKDB_TIMEOUT} s)"
    else
        D_STATUS="error (exit $rc)"
        log "DuckDB $q ($variant) failed: $(tail -n 3 "$err")"
        FAILED=1
    fi
}

for Q in $QUERIES; do
    [[ -n ${SQL[$Q]:-} ]] || { log "unknown query $Q"; exit 1; }
    for run in ${RUNS[$Q]}; do
        N=${run%%:*} STEPS=${run##*:}
        make_trace "${SCENARIO[$Q]}" "$N" "$STEPS"
        EVENTS=$(wc -l <"$TRACE" | tr -d ' ')

        # rql
        log "$Q N=$N steps=$STEPS: rql"
        R_OUT="$OUT/$(tr '[:upper:]' '[:lower:]' <<<"$Q")-$(basename "$TRACE" .ndjson).rql.jsonl"
        R_ERR="$OUT/rql.err" R_TIME="$OUT/rql.time"
        rm -f "$R_TIME"
        timer=()
        [[ -n $TIME_BIN ]] && timer=("$TIME_BIN" -f %M -o "$R_TIME")
        rc=0
        t0=$(now_ns)
        timeout "$RQL_TIMEOUT" "${timer[@]}" "$RQL" replay "$TRACE" -e "${SQL[$Q]}" \
            --format json --stats "${MAX_BINDINGS_ARGS[@]}" >"$R_OUT" 2>"$R_ERR" || rc=$?
        t1=$(now_ns)
        R_RSS=$(rss_mb "$R_TIME")
        R_WALL=- R_EVAL=- R_WRITE=- CUTS=- R_EV=- R_CUTS=-
        if [[ $rc == 0 ]]; then
            R_STATUS=ok
            R_WALL=$(secs "$t0" "$t1")
            # "stats: elapsed 311.074 ms (...)" and "stats: R records, S steps scanned, C candidate cuts, ..."
            # "stats: evaluation 120.5 ms (...), writing output 80.1 ms": evaluation alone.
            R_EVAL=$(sed -n 's/^stats: evaluation \([0-9.]*\) ms.*/\1/p' "$R_ERR" | awk '{ printf "%.6f", $1 / 1000 }')
            R_WRITE=$(sed -n 's/^stats: evaluation .* writing output \([0-9.]*\) ms.*/\1/p' "$R_ERR" | awk '{ printf "%.6f", $1 / 1000 }')
            CUTS=$(sed -n 's/^stats: .* \([0-9]*\) candidate cuts.*/\1/p' "$R_ERR")
            R_EV=$(rate "$EVENTS" "$R_WALL")
            R_CUTS=$(rate "$CUTS" "$R_EVAL")
        elif [[ $rc == 124 ]]; then
            R_STATUS="timeout (${RQL_TIMEOUT} s)"
        elif grep -qi 'bound\|max-bindings' "$R_ERR"; then
            R_STATUS="bound exceeded"
        else
            R_STATUS="error (exit $rc)"
            log "rql $Q failed: $(tail -n 3 "$R_ERR")"
            FAILED=1
        fi
        [[ $R_STATUS == ok ]] || log "rql $Q N=$N: $R_STATUS"
        R_WALL_S=$(fmt_s "$R_WALL")
        [[ $R_STATUS == ok ]] || R_WALL_S=$R_STATUS

        variants=()
        if [[ $RQL_ONLY != 1 ]]; then
            case $Q in
                Q1 | Q4) variants=(deltas); [[ $DUCKDB_GRID == 1 ]] && variants+=(grid) ;;
                *) variants=(grid) ;;
            esac
        fi
        if [[ ${#variants[@]} == 0 ]]; then
            ROWS+=("| $Q | $N | $EVENTS | $CUTS | $R_WALL_S | $(fmt_s "$R_EVAL") | $(fmt_s "$R_WRITE") | $R_EV | $R_CUTS | $R_RSS | - | - | - | - | - | - | - |")
        fi
        for variant in "${variants[@]}"; do
            log "$Q N=$N steps=$STEPS: DuckDB ($variant SQL)"
            run_duckdb "$Q" "$variant" "$TRACE"
            SAME=-
            if [[ $R_STATUS == ok && $D_STATUS == ok ]]; then
                if SAME=$(python3 "$BENCH/compare.py" "$R_OUT" "$D_HLCS"); then
                    SAME="yes (${SAME#same })"
                else
                    log "$Q N=$N: rql and DuckDB ($variant) disagree: $SAME"
                    SAME="**NO**: $SAME"
                    FAILED=1
                fi
            fi
            [[ $D_STATUS == ok ]] || log "DuckDB $Q N=$N ($variant): $D_STATUS"
            D_E2E_S=$(fmt_s "$D_E2E")
            [[ $D_STATUS == ok ]] || D_E2E_S=$D_STATUS
            ROWS+=("| $Q | $N | $EVENTS | $CUTS | $R_WALL_S | $(fmt_s "$R_EVAL") | $(fmt_s "$R_WRITE") | $R_EV | $R_CUTS | $R_RSS | $variant | $D_E2E_S | $(fmt_s "$D_EVAL") | $(rate "$EVENTS" "$D_E2E") | $D_RSS | $(ratio "$D_E2E" "$R_WALL") / $(ratio "$D_EVAL" "$R_EVAL") | $SAME |")
            rm -f "$D_HLCS"
        done
        [[ $KEEP_OUTPUT == 1 ]] || rm -f "$R_OUT"
    done
done
rm -f "$OUT/rql.err" "$OUT/rql.time" "$OUT/duckdb.json" "$OUT/duckdb.err" "$OUT/duckdb.time"

# --- report --------------------------------------------------------------------------------
{
    echo "## rql vs DuckDB ($( [[ $QUICK == 1 ]] && echo QUICK || echo full ) run, $(date -u +%Y-%m-%dT%H:%M:%SZ))"
    echo
    echo "rql $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && git diff --quiet 2>/dev/null || echo ' (dirty)'), DuckDB ${DUCKDB_VER:-not run} (threads=1), seed $SEED, $(nproc) CPUs: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
    echo
    echo "| query | N | events | cuts | rql wall s | rql eval s | rql write s | rql events/s | rql cuts/s | rql RSS MB | DuckDB SQL | DuckDB e2e s | DuckDB eval s | DuckDB events/s | DuckDB RSS MB | ratio e2e / eval | same cuts |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "events = trace records; cuts = candidate cuts rql evaluated (one per step here)."
    echo "rql wall = the whole \`rql replay\` process (read NDJSON, sort, evaluate, write JSON Lines);"
    echo "rql eval = evaluation time from its --stats (deciding every cut, witnesses), rql write = building"
    echo "and writing the JSON Lines output (every emitted cut with its values on every node);"
    echo "rql events/s = events / wall; rql cuts/s = cuts / eval."
    echo "DuckDB e2e = connect + read_json into a table + query; eval = the query on the loaded table;"
    echo "events/s = events / e2e. ratio = DuckDB time / rql time (> 1: rql is faster), e2e / eval."
    echo "DuckDB SQL: deltas = running count of satisfying nodes (node-local predicates only);"
    echo "grid = every (step, node) pair via ASOF JOIN, then GROUP BY step (any predicate)."
} | tee "$OUT/results.md"

exit "$FAILED"
