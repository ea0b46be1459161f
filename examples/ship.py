#!/usr/bin/env python3
"""Ship records of one node to an rql log server over HTTP, with the standard library only.

Usage: ship.py [URL]        URL defaults to $RQL_URL, then http://127.0.0.1:7400
       RQL_TOKEN=...        sent as a bearer token if set

A record is one JSON object per line (rql-trace/1): the node, its HLC [l, c], and the changes.
The Hlc class below is the clock rule of SPEC §1.2 for local events; a program that exchanges
messages would also merge received stamps (see the Rust Recorder's on_receive).
"""
import json
import os
import sys
import time
import urllib.error
import urllib.request


class Hlc:
    """Hybrid logical clock for local events: l = max(l, now); c counts within one ms."""

    def __init__(self):
        self.l, self.c = 0, 0

    def tick(self):
        now = time.time_ns() // 1_000_000
        if now > self.l:
            self.l, self.c = now, 0
        else:
            self.c += 1
            if self.c > 65535:
                raise OverflowError("more than 65536 events in one millisecond")
        return [self.l, self.c]


def ship(url, records, token=None):
    """POST the records as one NDJSON batch; returns the server's answer (a dict)."""
    body = "".join(json.dumps(r, separators=(",", ":"), allow_nan=False) + "\n" for r in records)
    request = urllib.request.Request(
        url.rstrip("/") + "/v1/records",
        data=body.encode("utf-8"),
        method="POST",
        headers={"Content-Type": "application/x-ndjson"},
    )
    if token:
        request.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def main():
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("RQL_URL", "http://127.0.0.1:7400")
    clock = Hlc()
    records = [
        {"node": "py-1", "hlc": clock.tick(), "set": {"app.status": "starting", "app.workers": 4}},
        {"node": "py-1", "hlc": clock.tick(), "set": {"app.status": "ready"},
         "add": {"app.peers": ["n1", "n2"]}},
    ]
    try:
        print(json.dumps(ship(url, records, os.environ.get("RQL_TOKEN"))))
    except urllib.error.HTTPError as e:
        # Every error is {"error":{"code":..,"message":..,"lines":[..]}}.
        print(f"error: HTTP {e.code}: {e.read().decode('utf-8', 'replace')}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as e:
        print(f"error: cannot reach {url}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
