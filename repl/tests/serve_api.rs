//! `rql serve` as a real process: batches are atomic, order violations and bad input are answered
//! precisely (while other clients keep working), the stream goes from history into the live tail
//! without gaps or duplicates, status and metrics, the token, and every limit.

mod serve_support;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serve_support::*;

const T0: u64 = 1_700_000_000_000;

#[test]
fn out_of_order_records_are_rejected_with_409_and_nothing_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]);
    let client = http_client();
    assert_eq!(
        post(&client, &server, record("n1", T0 + 100, 0, 1)).status,
        200
    );

    // Line 1 is fine; line 2 is older than what n1 already stored.
    let reply = post(
        &client,
        &server,
        batch(&[record("n2", T0, 0, 1), record("n1", T0 + 50, 0, 2)]),
    );
    reply.assert_error(409, "out_of_order");
    assert_eq!(reply.lines(), vec![2]);
    assert_eq!(reply.body["error"]["lines"][0]["node"], "n1");
    assert_eq!(reply.body["error"]["lines"][0]["reason"], "out_of_order");

    // Within one batch too.
    let reply = post(
        &client,
        &server,
        batch(&[record("n3", T0 + 10, 0, 1), record("n3", T0 + 5, 0, 2)]),
    );
    reply.assert_error(409, "out_of_order");
    assert_eq!(reply.lines(), vec![2]);

    // An equal HLC is accepted (SPEC §5.1).
    assert_eq!(
        post(&client, &server, record("n1", T0 + 100, 0, 3)).status,
        200
    );
    let stored = records_of(&read_stream(&client, &server, "since=0"));
    assert_eq!(
        stored,
        vec![
            ("n1".to_string(), (T0 + 100, 0)),
            ("n1".to_string(), (T0 + 100, 0))
        ]
    );
}

#[test]
fn a_batch_with_bad_lines_is_rejected_whole_naming_every_bad_line() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]);
    let client = http_client();
    let body = [
        record("a", T0, 0, 1),
        record("b", T0, 0, 1),
        r#"{"node":"c","hlc":[1,0]"#.to_string(),
        String::new(),
        r#"{"node":"d","hlc":[1,0],"sett":{}}"#.to_string(),
        record("e", T0, 0, 1),
    ]
    .join("\n");
    let reply = post(&client, &server, body);
    reply.assert_error(400, "invalid_records");
    assert_eq!(reply.lines(), vec![3, 5]);
    assert!(reply.message().contains("line 3"), "{}", reply.message());
    assert!(
        reply.body["error"]["lines"][1]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field"),
        "{}",
        reply.text
    );
    assert!(records_of(&read_stream(&client, &server, "since=0")).is_empty());
    assert_eq!(
        get(&client, &server, "/v1/nodes").body["nodes"],
        serde_json::json!([])
    );

    let reply = post(
        &client,
        &server,
        batch(&[record("a", T0, 0, 1), record("b", T0, 0, 1)]),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["stored"], 2);
    assert_eq!(
        reply.body["last_seq"].as_u64().unwrap() - reply.body["first_seq"].as_u64().unwrap(),
        1
    );
}

#[test]
fn stream_goes_from_history_into_live_without_gaps_or_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]);
    let client = http_client();
    const NODES: u64 = 4;
    const BATCHES: u64 = 40;
    const PER_BATCH: u64 = 25;
    // History before the subscriber connects.
    for n in 0..NODES {
        let lines: Vec<String> = (0..PER_BATCH)
            .map(|k| record(&format!("n{n}"), T0 + k, 0, 0))
            .collect();
        assert_eq!(post(&client, &server, batch(&lines)).status, 200);
    }
    let expected_total = (NODES * (BATCHES + 1) * PER_BATCH) as usize;
    let writers: Vec<_> = (0..NODES)
        .map(|n| {
            let base = server.base.clone();
            std::thread::spawn(move || {
                let client = http_client();
                for b in 1..=BATCHES {
                    let lines: Vec<String> = (0..PER_BATCH)
                        .map(|k| record(&format!("n{n}"), T0 + b * PER_BATCH + k, 0, 0))
                        .collect();
                    let r = client
                        .post(format!("{base}/v1/records"))
                        .body(batch(&lines))
                        .send()
                        .unwrap();
                    assert_eq!(r.status().as_u16(), 200);
                }
            })
        })
        .collect();
    // Connect while the writers are appending.
    let response = client
        .get(server.url("/v1/stream?since=0&follow=true"))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut seen = Vec::new();
    let mut progress: HashMap<String, (u64, u64)> = HashMap::new();
    let mut progress_lines = 0;
    let mut reader = BufReader::new(response);
    let mut line = String::new();
    let last_hlc = (T0 + (BATCHES + 1) * PER_BATCH - 1, 0);
    // Until every record is in, and the progress line after the last one.
    while seen.len() < expected_total || progress.values().any(|p| *p != last_hlc) {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "stream ended early"
        );
        match classify(line.trim_end()) {
            Line::Record { node, hlc, .. } => {
                // Progress never runs ahead of the records delivered.
                if let Some(p) = progress.get(&node) {
                    assert!(*p <= hlc, "progress {p:?} ahead of record {node} {hlc:?}");
                }
                seen.push((node, hlc));
            }
            Line::Progress(map) => {
                progress_lines += 1;
                for (node, hlc) in map {
                    let prev = progress.insert(node.clone(), hlc);
                    assert!(
                        prev.is_none_or(|p| p <= hlc),
                        "progress of {node} went back"
                    );
                }
            }
            Line::Error(e) => panic!("stream error {e}"),
        }
    }
    for w in writers {
        w.join().unwrap();
    }
    assert!(progress_lines > 0);
    let unique: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "duplicate records in the stream");
    for n in 0..NODES {
        let node = format!("n{n}");
        let hlcs: Vec<u64> = seen
            .iter()
            .filter(|(m, _)| *m == node)
            .map(|(_, h)| h.0)
            .collect();
        let want: Vec<u64> = (0..(BATCHES + 1) * PER_BATCH).map(|k| T0 + k).collect();
        assert_eq!(hlcs, want, "{node}: records missing or out of order");
        assert_eq!(progress.get(&node), Some(&last_hlc));
    }

    // A node filter and a since bound.
    let since = (T0 + 10) << 16;
    let only = records_of(&read_stream(
        &client,
        &server,
        &format!("since={since}&nodes=n1,n3"),
    ));
    assert!(only
        .iter()
        .all(|(n, (l, _))| (n == "n1" || n == "n3") && *l >= T0 + 10));
    assert_eq!(only.len(), 2 * ((BATCHES + 1) * PER_BATCH - 10) as usize);
}

#[test]
fn nodes_health_and_metrics_report_the_server_state() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &["--idle-timeout", "300ms"]);
    let client = http_client();
    let health = get(&client, &server, "/v1/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.body["status"], "ok");
    let lines: Vec<String> = (0..5).map(|k| record("n1", T0 + k, 0, 1)).collect();
    assert_eq!(post(&client, &server, batch(&lines)).status, 200);
    assert_eq!(
        post(&client, &server, r#"{"node":"n2","hlc":[1700000000009,3]}"#).status,
        200
    );
    post(&client, &server, "not json\n").assert_error(400, "invalid_records");

    let nodes = get(&client, &server, "/v1/nodes");
    assert_eq!(nodes.status, 200);
    let list = nodes.body["nodes"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let n1 = list.iter().find(|n| n["node"] == "n1").unwrap();
    assert_eq!(n1["last_hlc"], serde_json::json!([T0 + 4, 0]));
    assert_eq!(n1["records"], 5);
    assert_eq!(n1["idle"], false);
    assert!(n1["last_seen_ms"].as_u64().unwrap() > T0);
    let n2 = list.iter().find(|n| n["node"] == "n2").unwrap();
    assert_eq!(n2["last_hlc"], serde_json::json!([T0 + 9, 3]));
    assert!(wait_for(Duration::from_secs(5), || {
        get(&client, &server, "/v1/nodes").body["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["idle"] == true)
    }));

    let _subscriber = client.get(server.url("/v1/stream")).send().unwrap();
    let metrics = get(&client, &server, "/metrics");
    assert_eq!(metrics.status, 200);
    for needle in [
        "rql_ingest_records_total 6",
        "rql_fsync_seconds_bucket",
        "rql_rejected_records_total{reason=\"invalid_record\"} 1",
        "rql_subscribers 1",
    ] {
        assert!(
            metrics.text.contains(needle),
            "{needle} not in\n{}",
            metrics.text
        );
    }
}

#[test]
fn token_is_required_everywhere_but_health() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &["--token", "s3cret"]);
    let client = http_client();
    assert_eq!(get(&client, &server, "/v1/health").status, 200);
    for path in ["/v1/nodes", "/metrics", "/v1/stream?follow=false"] {
        get(&client, &server, path).assert_error(401, "unauthorized");
        let wrong = client
            .get(server.url(path))
            .bearer_auth("s3cre")
            .send()
            .unwrap();
        assert_eq!(wrong.status().as_u16(), 401);
        let right = client
            .get(server.url(path))
            .bearer_auth("s3cret")
            .send()
            .unwrap();
        assert_eq!(right.status().as_u16(), 200, "{path}");
    }
    let body = record("n1", T0, 0, 1);
    post(&client, &server, body.clone()).assert_error(401, "unauthorized");
    let ok = client
        .post(server.url("/v1/records"))
        .bearer_auth("s3cret")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
}

#[test]
fn limits_are_enforced_with_precise_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(
        &tmp.path().join("data"),
        &[
            "--max-body-bytes",
            "64KiB",
            "--max-line-bytes",
            "1KiB",
            "--max-nodes",
            "3",
            "--max-subscribers",
            "2",
        ],
    );
    let client = http_client();
    let big: Vec<String> = (0..2000).map(|k| record("a", T0 + k, 0, 1)).collect();
    let reply = post(&client, &server, batch(&big));
    reply.assert_error(413, "body_too_large");
    assert!(reply.message().contains("65536"), "{}", reply.message());

    let long = format!(
        r#"{{"node":"a","hlc":[{T0},0],"set":{{"m.s":"{}"}}}}"#,
        "x".repeat(2000)
    );
    let reply = post(&client, &server, batch(&[record("a", T0, 0, 1), long]));
    reply.assert_error(413, "line_too_long");
    assert_eq!(reply.lines(), vec![2]);

    let three: Vec<String> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| record(n, T0, 0, 1))
        .collect();
    assert_eq!(post(&client, &server, batch(&three)).status, 200);
    let reply = post(
        &client,
        &server,
        batch(&[record("n1", T0 + 1, 0, 1), record("n4", T0, 0, 1)]),
    );
    reply.assert_error(403, "too_many_nodes");
    assert_eq!(reply.lines(), vec![2]);

    let first = client.get(server.url("/v1/stream")).send().unwrap();
    let second = http_client().get(server.url("/v1/stream")).send().unwrap();
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    get(&client, &server, "/v1/stream").assert_error(503, "too_many_subscribers");
    drop(first);
    // The slot frees once the server notices the subscriber is gone (at its next write).
    assert!(wait_for(Duration::from_secs(5), || {
        get(&client, &server, "/v1/stream?follow=false").status == 200
    }));
}

#[test]
fn connections_beyond_the_limit_get_503() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &["--max-connections", "2"]);
    let held: Vec<_> = (0..2)
        .map(|_| {
            let c = http_client();
            let r = c.get(server.url("/v1/stream")).send().unwrap();
            assert_eq!(r.status().as_u16(), 200);
            (c, r)
        })
        .collect();
    let reply = get(&http_client(), &server, "/v1/health");
    reply.assert_error(503, "too_many_connections");
    drop(held);
    assert!(wait_for(Duration::from_secs(5), || {
        get(&http_client(), &server, "/v1/health").status == 200
    }));
}

#[test]
fn bad_input_is_answered_precisely_while_other_clients_keep_working() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]);
    let client = http_client();

    // Another client ingests the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let good = Arc::new(AtomicUsize::new(0));
    let background = {
        let (stop, good, base) = (stop.clone(), good.clone(), server.base.clone());
        std::thread::spawn(move || {
            let client = http_client();
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                let lines: Vec<String> =
                    (k..k + 10).map(|i| record("good", T0 + i, 0, 1)).collect();
                let r = client
                    .post(format!("{base}/v1/records"))
                    .header("content-type", "application/x-ndjson")
                    .body(batch(&lines))
                    .send()
                    .unwrap();
                assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap());
                good.fetch_add(10, Ordering::Relaxed);
                k += 10;
            }
        })
    };

    let cases: [(&str, &[u8], &str); 12] = [
        (
            "invalid JSON",
            br#"{"node":"x","hlc":[1,0]"#,
            "invalid_records",
        ),
        (
            "unknown field",
            br#"{"node":"x","hlc":[1,0],"pt":1,"extra":1}"#,
            "invalid_records",
        ),
        (
            "bad key",
            br#"{"node":"x","hlc":[1,0],"set":{"nodot":1}}"#,
            "invalid_records",
        ),
        (
            "non-finite number",
            br#"{"node":"x","hlc":[1,0],"set":{"m.x":1e999}}"#,
            "invalid_records",
        ),
        (
            "huge integer",
            br#"{"node":"x","hlc":[1,0],"set":{"m.x":99999999999999999999}}"#,
            "invalid_records",
        ),
        (
            "HLC out of range",
            br#"{"node":"x","hlc":[281474976710656,0]}"#,
            "invalid_records",
        ),
        ("missing hlc", br#"{"node":"x"}"#, "invalid_records"),
        (
            "a JSON array",
            br#"[{"node":"x","hlc":[1,0]}]"#,
            "invalid_records",
        ),
        (
            "not UTF-8",
            b"{\"node\":\"\xff\",\"hlc\":[1,0]}",
            "invalid_records",
        ),
        ("empty body", b"", "empty_batch"),
        ("blank lines only", b"\n  \n\n", "empty_batch"),
        (
            "add to a non-set",
            br#"{"node":"x","hlc":[1,0],"add":{"m.x":5}}"#,
            "invalid_records",
        ),
    ];
    for (what, body, code) in cases {
        let reply = post(&client, &server, body.to_vec());
        assert_eq!(reply.status, 400, "{what}: {}", reply.text);
        reply.assert_error(400, code);
        if code == "invalid_records" {
            assert_eq!(reply.lines(), vec![1], "{what}: {}", reply.text);
        }
    }

    let form = client
        .post(server.url("/v1/records"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(record("x", 1, 0, 1))
        .send()
        .unwrap();
    let reply = Reply::of(form);
    reply.assert_error(415, "unsupported_content_type");
    assert!(reply.message().contains("application/x-ndjson"));

    for query in [
        "since=abc",
        "since=-1",
        "follow=maybe",
        "nodes=a,,b",
        "bogus=1",
        "since=99999999999999999999999",
    ] {
        get(&client, &server, &format!("/v1/stream?{query}")).assert_error(400, "bad_query");
    }
    get(&client, &server, "/v1/nothing").assert_error(404, "not_found");
    get(&client, &server, "/v1/records").assert_error(405, "method_not_allowed");

    // Nothing of the bad input got in, and the good client never failed.
    assert!(good.load(Ordering::Relaxed) > 0);
    stop.store(true, Ordering::Relaxed);
    background.join().unwrap();
    let stored = records_of(&read_stream(&client, &server, "since=0"));
    assert!(stored.iter().all(|(n, _)| n == "good"));
    assert_eq!(stored.len(), good.load(Ordering::Relaxed));
}

#[test]
fn a_subscriber_that_stops_reading_is_disconnected_and_others_carry_on() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &["--stall-timeout", "500ms"]);
    let client = http_client();
    let mut stalled = http_client()
        .get(server.url("/v1/stream?since=0"))
        .send()
        .unwrap();
    assert_eq!(stalled.status().as_u16(), 200);
    // Far more than the socket buffers and the server's few queued chunks hold.
    let filler = "x".repeat(1000);
    for b in 0..24u64 {
        let lines: Vec<String> = (0..1000)
            .map(|k| {
                format!(
                    r#"{{"node":"n1","hlc":[{},0],"set":{{"m.s":"{filler}"}}}}"#,
                    T0 + b * 1000 + k
                )
            })
            .collect();
        assert_eq!(post(&client, &server, batch(&lines)).status, 200);
    }
    assert!(
        wait_for(Duration::from_secs(10), || {
            let m = get(&client, &server, "/metrics").text;
            m.contains("rql_stalled_disconnects_total 1") && m.contains("rql_subscribers 0")
        }),
        "{}",
        get(&client, &server, "/metrics").text
    );
    // What the server had sent is readable, then the response ends in an error, not cleanly.
    let mut sink = Vec::new();
    assert!(std::io::Read::read_to_end(&mut stalled, &mut sink).is_err());
    // Everyone else is unaffected.
    assert_eq!(post(&client, &server, record("n2", T0, 0, 1)).status, 200);
    assert_eq!(
        records_of(&read_stream(&client, &server, "since=0&nodes=n2")).len(),
        1
    );
}

#[test]
fn idle_connections_are_closed_so_they_cannot_hold_every_slot() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(
        &tmp.path().join("data"),
        &[
            "--max-connections",
            "2",
            "--connection-idle-timeout",
            "300ms",
        ],
    );
    let stream = http_client()
        .get(server.url("/v1/stream?since=0"))
        .send()
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    // This client keeps its connection open (pooled) after its request.
    let idle = http_client();
    assert_eq!(get(&idle, &server, "/v1/health").status, 200);
    get(&http_client(), &server, "/v1/health").assert_error(503, "too_many_connections");
    // Past the idle timeout the idle connection is closed and its slot freed; on a loaded
    // machine that can take a little longer than the timeout, so poll (bounded) for it.
    std::thread::sleep(Duration::from_millis(600));
    let client = http_client();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut status = get(&client, &server, "/v1/health").status;
    while status != 200 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        status = get(&http_client(), &server, "/v1/health").status;
    }
    assert_eq!(status, 200);
    // The stream outlived the idle timeout: it is never idle, it writes heartbeats.
    assert_eq!(post(&client, &server, record("n1", T0, 0, 1)).status, 200);
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "stream closed");
        if matches!(classify(line.trim_end()), Line::Record { .. }) {
            break;
        }
    }
    drop(idle);
}
