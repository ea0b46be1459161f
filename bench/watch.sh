#!/usr/bin/env bash
# Alert latency of `rql watch`: the release `rql serve` on an ephemeral loopback port, 32 nodes
# (16 busy sending 50k change records/s in total, 16 quiet sending a heartbeat every 50 ms),
# a violation every 100 ms; prints the time from the ack of the violating record to the alert
# line on `rql watch`'s stdout (p50/p99/max). The harness is repl/benches/watch_latency.rs.
#
#   bench/watch.sh
#   RQL_BENCH_SECS=30 RQL_BENCH_RATE=100000 bench/watch.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --locked -p repl --bench watch_latency
