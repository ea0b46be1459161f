//! `rql serve` as a real process: nothing acknowledged is lost across kill -9, a torn segment
//! tail is cut off on restart, SIGTERM stops cleanly, and retention deletes old segments and then
//! refuses subscriptions older than what it kept.

mod serve_support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serve_support::*;

const T0: u64 = 1_700_000_000_000;

/// Every `.seg` file under `dir`, in name (= log) order.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "seg") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// A batch a writer sent: node, its records' HLC range (`l - T0`, `from..to`), acknowledged.
type Sent = (String, u64, u64, bool);

#[test]
fn kill_9_during_concurrent_ingest_loses_no_acknowledged_record() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Server::start(&data, &[]);
    const WRITERS: usize = 8;
    const BATCH: u64 = 50;
    let stop = Arc::new(AtomicBool::new(false));
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let base = server.base.clone();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (stop, sent, base) = (stop.clone(), sent.clone(), base.clone());
            std::thread::spawn(move || {
                let client = http_client();
                let node = format!("w{w}");
                let mut next = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let lines: Vec<String> = (next..next + BATCH)
                        .map(|k| record(&node, T0 + k, 0, k as i64))
                        .collect();
                    let acked = client
                        .post(format!("{base}/v1/records"))
                        .header("content-type", "application/x-ndjson")
                        .body(batch(&lines))
                        .send()
                        .is_ok_and(|r| r.status().is_success());
                    sent.lock()
                        .unwrap()
                        .push((node.clone(), next, next + BATCH, acked));
                    if !acked {
                        return;
                    }
                    next += BATCH;
                }
            })
        })
        .collect();
    // Let the writers get going, then pull the plug while they are in full flight.
    assert!(wait_for(Duration::from_secs(20), || {
        sent.lock().unwrap().iter().filter(|s| s.3).count() >= 40
    }));
    std::thread::sleep(Duration::from_millis(200));
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }

    let server = Server::start(&data, &[]);
    let client = http_client();
    let stored = records_of(&read_stream(&client, &server, "since=0"));
    let mut count: HashMap<(String, u64), usize> = HashMap::new();
    for (node, (l, c)) in &stored {
        assert_eq!(*c, 0);
        *count.entry((node.clone(), l - T0)).or_default() += 1;
    }
    assert!(count.values().all(|&n| n == 1), "a record is stored twice");
    let sent = sent.lock().unwrap();
    let acked = sent.iter().filter(|s| s.3).count();
    assert!(acked >= 40);
    for (node, from, to, was_acked) in sent.iter() {
        let present = (*from..*to)
            .filter(|k| count.contains_key(&(node.clone(), *k)))
            .count() as u64;
        if *was_acked {
            assert_eq!(
                present,
                to - from,
                "acknowledged batch {node} {from}..{to} lost"
            );
        } else {
            // Unacknowledged: it may or may not have made it, but never in part.
            assert!(
                present == 0 || present == to - from,
                "batch {node} {from}..{to} torn"
            );
        }
    }
    // Each node's records come back in HLC order.
    let mut last: HashMap<&str, (u64, u64)> = HashMap::new();
    for (node, hlc) in &stored {
        if let Some(prev) = last.insert(node, *hlc) {
            assert!(prev < *hlc, "{node}: {prev:?} then {hlc:?}");
        }
    }
}

#[test]
fn torn_segment_tail_is_cut_off_and_earlier_records_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Server::start(&data, &[]);
    let client = http_client();
    let all: Vec<String> = (0..30).map(|k| record("n1", T0 + k, 0, k as i64)).collect();
    for chunk in all.chunks(10) {
        let reply = post(&client, &server, batch(chunk));
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    assert!(server.terminate().success(), "log:\n{}", server.log());

    // Cut the last segment in the middle of its last record, as a crash mid-write would.
    let last = segments(&data).pop().expect("a segment file");
    let len = std::fs::metadata(&last).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    file.set_len(len - 7).unwrap();
    drop(file);

    // Batches are atomic on disk too: the torn batch goes as a whole, the earlier ones stay.
    let server = Server::start(&data, &[]);
    let stored = records_of(&read_stream(&client, &server, "since=0"));
    let expected: Vec<(String, (u64, u64))> =
        (0..20).map(|k| ("n1".to_string(), (T0 + k, 0))).collect();
    assert_eq!(stored, expected, "log:\n{}", server.log());
    assert!(
        server.log().contains("WARN"),
        "the cut is not logged:\n{}",
        server.log()
    );
    // The log goes on after the cut: the lost batch can be sent again.
    let reply = post(&client, &server, batch(&all[20..]));
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        records_of(&read_stream(&client, &server, "since=0")).len(),
        30
    );
}

#[test]
fn sigterm_stops_cleanly_and_keeps_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Server::start(&data, &[]);
    let client = http_client();
    // A live subscriber must not keep the server from stopping.
    let subscriber = client
        .get(server.url("/v1/stream?since=0&follow=true"))
        .send()
        .unwrap();
    assert_eq!(subscriber.status().as_u16(), 200);
    let lines: Vec<String> = (0..100).map(|k| record("a", T0 + k, 0, 1)).collect();
    assert_eq!(post(&client, &server, batch(&lines)).status, 200);
    let status = server.terminate();
    assert!(status.success(), "exit {status:?}; log:\n{}", server.log());
    drop(subscriber);
    let server = Server::start(&data, &[]);
    assert_eq!(
        records_of(&read_stream(&client, &server, "since=0")).len(),
        100
    );
}

#[test]
fn retention_deletes_old_segments_and_refuses_older_subscriptions() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Server::start(
        &data,
        &[
            "--segment-bytes",
            "4KiB",
            "--max-bytes",
            "16KiB",
            "--retention-interval",
            "50ms",
        ],
    );
    let client = http_client();
    for b in 0..40u64 {
        let lines: Vec<String> = (0..20)
            .map(|k| record(&format!("n{}", k % 3), T0 + b * 20 + k, 0, k as i64))
            .collect();
        let reply = post(&client, &server, batch(&lines));
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    let mut earliest = 0;
    assert!(
        wait_for(Duration::from_secs(10), || {
            let nodes = get(&client, &server, "/v1/nodes");
            let e = &nodes.body["store"]["earliest_retained_hlc"];
            earliest = (e[0].as_u64().unwrap_or(0) << 16) | e[1].as_u64().unwrap_or(0);
            earliest > 0 && nodes.body["store"]["bytes"].as_u64().unwrap() <= 16 << 10
        }),
        "retention did not run; log:\n{}",
        server.log()
    );
    let total: u64 = segments(&data)
        .iter()
        .map(|s| std::fs::metadata(s).unwrap().len())
        .sum();
    assert!(total <= 16 << 10, "{total} bytes of segments left");

    let too_old = get(&client, &server, "/v1/stream?since=0&follow=false");
    too_old.assert_error(410, "since_too_old");
    assert!(
        too_old.message().contains(&earliest.to_string()),
        "{}",
        too_old.message()
    );
    let kept = records_of(&read_stream(&client, &server, &format!("since={earliest}")));
    assert!(!kept.is_empty());
    assert!(kept.iter().all(|(_, (l, c))| (l << 16 | c) >= earliest));
    // The newest records are all still there.
    let newest: HashSet<u64> = kept.iter().map(|(_, (l, _))| *l).collect();
    assert!(newest.contains(&(T0 + 799)));
    let metrics = get(&client, &server, "/metrics").text;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("rql_retention_deleted_segments_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
}

#[test]
fn a_second_server_on_the_same_data_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let _first = Server::start(&data, &[]);
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_rql"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("in use by another log server"), "{stderr}");
    assert!(second.stdout.is_empty());
}
