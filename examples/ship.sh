#!/bin/sh
# Ship records of one node to an rql log server with curl.
#
# Usage: ship.sh [URL]      URL defaults to $RQL_URL, then http://127.0.0.1:7400
#        RQL_TOKEN=...      sent as a bearer token if set
#
# Records are NDJSON (rql-trace/1), one per line, each with the node and its HLC [l, c]: here l
# is the current time in ms and c counts the records within it, which keeps them in order.
set -eu

url=${1:-${RQL_URL:-http://127.0.0.1:7400}}
# Milliseconds where date has %N (GNU); whole seconds otherwise (BSD and macOS print "3N").
now=$(date +%s%3N)
case $now in
    *N) now=$(($(date +%s) * 1000)) ;;
esac

set -- -sS --fail-with-body -X POST "${url%/}/v1/records" \
    -H 'Content-Type: application/x-ndjson' --data-binary @-
if [ -n "${RQL_TOKEN:-}" ]; then
    set -- "$@" -H "Authorization: Bearer $RQL_TOKEN"
fi

curl "$@" <<NDJSON
{"node":"sh-1","hlc":[$now,0],"set":{"app.status":"starting","app.workers":2}}
{"node":"sh-1","hlc":[$now,1],"set":{"app.status":"ready"},"add":{"app.peers":["n1"]}}
NDJSON
echo
