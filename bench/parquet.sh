#!/usr/bin/env bash
# rql benchmark: replaying Parquet traces (speed, and memory under --memory-limit).
#
# What it measures
#   speed   Q1 over `rql gen --scenario invariant --nodes 32 --steps 2000000 --seed 1` (the
#           trace of bench/run.sh's Q1 row), converted to one Parquet file with `rql convert`.
#           Wall time of `rql replay TRACE.parquet -e Q1 --format json` (the whole process:
#           footer, plan, read + decode, evaluate, write), best and median of RUNS runs;
#           events/s = trace records / median wall time (target: >= 5M). The NDJSON replay of the
#           same trace is timed the same way for reference, and the outputs must be identical.
#   memory  Q1 over a BIG-record trace (`--nodes 32 --steps BIG --seed 7`), split by node into
#           two Parquet files (odd and even node numbers), so that the rows must be sorted by
#           HLC across files: `rql replay a.parquet b.parquet -e Q1 --memory-limit LIMIT` with
#           peak RSS from /usr/bin/time (target: within LIMIT plus the overhead stated in
#           README). Its output must equal the replay of the whole NDJSON trace.
#   Prints a markdown table (also saved to bench/out/parquet.md).
#
# How to run
#   bench/parquet.sh                    # both parts (~10 minutes; ~3 GB of disk in bench/out)
#   PARTS=speed bench/parquet.sh        # only the speed part
#   QUICK=1 bench/parquet.sh            # small traces: a sanity run of the script
#
# Environment variables (defaults in brackets)
#   PARTS        which parts to run                                  [speed memory]
#   RUNS         timed runs per replay in the speed part                              [5]
#   STEPS        records of the speed trace (after the initial ones)   [2000000] (QUICK 100000)
#   BIG          records of the memory trace                         [20000000] (QUICK 300000)
#   LIMIT        --memory-limit of the memory part                      [1GiB] (QUICK 16MiB)
#   KEEP         1 = keep the generated traces in bench/out for the next run              [1]
#   CARGO_TARGET_DIR  where cargo builds (the binary is $CARGO_TARGET_DIR/release/rql) [target]
#
# Exit status: 0 if every output matched its reference, 1 otherwise.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/bench/out
QUICK=${QUICK:-0}
PARTS=${PARTS:-speed memory}
RUNS=${RUNS:-5}
KEEP=${KEEP:-1}
if [[ $QUICK == 1 ]]; then
    STEPS=${STEPS:-100000} BIG=${BIG:-300000} LIMIT=${LIMIT:-16MiB}
else
    STEPS=${STEPS:-2000000} BIG=${BIG:-20000000} LIMIT=${LIMIT:-1GiB}
fi
Q1='SELECT inv.a, inv.b, inv.c FROM inv WHEN (inv.a + inv.b <= inv.c) LINK SAME_NODE'

log() { printf '==> %s\n' "$*" >&2; }

log "building rql (cargo build --release -p repl)"
(cd "$ROOT" && cargo build --release -p repl)
TARGET_DIR=${CARGO_TARGET_DIR:-target}
[[ $TARGET_DIR == /* ]] || TARGET_DIR=$ROOT/$TARGET_DIR
RQL=$TARGET_DIR/release/rql
[[ -x /usr/bin/time ]] || { log "needs /usr/bin/time (GNU time) for wall time and peak RSS"; exit 1; }
mkdir -p "$OUT"
FAILED=0
ROWS=()

# timed OUT -- CMD...: runs CMD with stdout to OUT; sets WALL (s) and RSS (MB)
timed() {
    local out=$1 tfile=$OUT/parquet.time
    shift 2
    /usr/bin/time -f '%e %M' -o "$tfile" "$@" >"$out"
    read -r WALL RSS_KB <"$tfile"
    RSS=$(awk -v k="$RSS_KB" 'BEGIN { printf "%.0f", k / 1024 }')
}
# stats of a list of seconds: "best median"
best_median() { tr ' ' '\n' <<<"$*" | sort -g | awk '{ a[NR] = $1 } END { printf "%s %s", a[1], a[int((NR + 1) / 2)] }'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.2fM", n / s / 1e6 }'; }
same() { # same A B WHAT
    if cmp -s "$1" "$2"; then echo same; else log "$3: outputs differ ($1 vs $2)"; FAILED=1; echo DIFFER; fi
}

if [[ " $PARTS " == *" speed "* ]]; then
    TRACE=$OUT/invariant-n32-s$STEPS-seed1.ndjson
    PQ=$OUT/invariant-n32-s$STEPS-seed1.parquet
    [[ -s $TRACE ]] || { log "rql gen (speed trace)"; "$RQL" gen --scenario invariant --nodes 32 --steps "$STEPS" --seed 1 -o "$TRACE"; }
    [[ -s $PQ && $PQ -nt $TRACE ]] || "$RQL" convert "$TRACE" "$PQ" >&2
    EVENTS=$(wc -l <"$TRACE" | tr -d ' ')
    for fmt in parquet ndjson; do
        [[ $fmt == parquet ]] && input=$PQ || input=$TRACE
        walls=()
        for _ in $(seq "$RUNS"); do
            timed "$OUT/q1-speed.$fmt.jsonl" -- "$RQL" replay "$input" -e "$Q1" --format json
            walls+=("$WALL")
        done
        read -r best median <<<"$(best_median "${walls[*]}")"
        check=-
        [[ $fmt == ndjson ]] && check=$(same "$OUT/q1-speed.parquet.jsonl" "$OUT/q1-speed.ndjson.jsonl" "Q1 speed")
        ROWS+=("| Q1 replay, $fmt | $EVENTS records, 32 nodes, 1 file ($(du -h "$input" | cut -f1)) | best $best s, median $median s | $(rate "$EVENTS" "$median") events/s | $RSS MB | $check |")
    done
    rm -f "$OUT"/q1-speed.*.jsonl
fi

if [[ " $PARTS " == *" memory "* ]]; then
    BIGT=$OUT/invariant-n32-s$BIG-seed7.ndjson
    A=$OUT/invariant-n32-s$BIG-seed7.odd.parquet
    B=$OUT/invariant-n32-s$BIG-seed7.even.parquet
    REF=$OUT/q1-invariant-n32-s$BIG-seed7.ndjson.jsonl
    if [[ ! -s $A || ! -s $B ]]; then
        [[ -s $BIGT ]] || { log "rql gen (memory trace, $BIG records)"; "$RQL" gen --scenario invariant --nodes 32 --steps "$BIG" --seed 7 -o "$BIGT"; }
        log "splitting by node and converting to Parquet"
        awk -v a="$OUT/odd.ndjson" -v b="$OUT/even.ndjson" '
            { if (match($0, /"node":"n[0-9]*[13579]"/)) print > a; else print > b }' "$BIGT"
        "$RQL" convert "$OUT/odd.ndjson" "$A" >&2
        "$RQL" convert "$OUT/even.ndjson" "$B" >&2
        rm -f "$OUT/odd.ndjson" "$OUT/even.ndjson"
    fi
    if [[ ! -s $REF ]]; then
        [[ -s $BIGT ]] || { log "rql gen (memory trace, $BIG records)"; "$RQL" gen --scenario invariant --nodes 32 --steps "$BIG" --seed 7 -o "$BIGT"; }
        log "reference: the NDJSON trace (streamed: it is sorted)"
        "$RQL" replay "$BIGT" -e "$Q1" --format json >"$REF"
    fi
    EVENTS=$(( BIG + 32 ))
    log "Q1 over two Parquet files, --memory-limit $LIMIT"
    timed "$OUT/q1-big.parquet.jsonl" -- "$RQL" replay "$A" "$B" -e "$Q1" --format json \
        --memory-limit "$LIMIT" --stats
    check=$(same "$OUT/q1-big.parquet.jsonl" "$REF" "Q1 memory")
    ROWS+=("| Q1 replay, parquet, --memory-limit $LIMIT | $EVENTS records, 32 nodes, 2 files by node (sorted with spilling) | $WALL s | $(rate "$EVENTS" "$WALL") events/s | $RSS MB | $check |")
    rm -f "$OUT/q1-big.parquet.jsonl"
    if [[ $KEEP != 1 ]]; then rm -f "$BIGT" "$A" "$B" "$REF"; fi
fi

{
    echo "| run | trace | wall time | throughput | peak RSS | output vs reference |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
} | tee "$OUT/parquet.md"
exit $FAILED
