#!/usr/bin/env bash
# Log server ingest bench: the release `rql serve` on an ephemeral loopback port with a fresh
# temp data directory; 64 concurrent node writers POST batches of 1000 records back to back
# (each answered only after fsync), one subscriber follows the live stream.
#
# Prints durable records/s and the delivery latency (writer's ack -> subscriber receives the
# record, p50/p99). The harness is repl/benches/ingest.rs.
#
#   bench/ingest.sh                              # 10 s, 64 writers, batches of 1000
#   RQL_BENCH_SECS=30 RQL_BENCH_WRITERS=16 bench/ingest.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --locked -p repl --bench ingest
