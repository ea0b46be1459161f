//! Alert latency of `rql watch` (`bench/watch.sh`): the release `rql serve` on an ephemeral
//! loopback port, NODES nodes of which QUIET only send a heartbeat every HEARTBEAT_MS (SPEC
//! §5.1: idle nodes keep the frontier moving that way) and the others send RATE change records
//! per second in total, posted every BATCH_MS by four writers. Every 100 ms one busy node
//! breaks the invariant (`m.x` above 500, with an id in the value) and repairs it in its next
//! batch. `rql watch` runs `SELECT m.x FROM m WHEN m.x > 500 EMIT CHANGES`.
//!
//! Latency of one alert: from the writer receiving the ack of the batch holding the violating
//! record to `rql watch` printing the `begin` line that carries its id (0 if the line came
//! first). Also checks that every violation was alerted and no other alert came. Settings from
//! the environment: RQL_BENCH_SECS (10), RQL_BENCH_RATE (50000), RQL_BENCH_NODES (32),
//! RQL_BENCH_QUIET (16), RQL_BENCH_HEARTBEAT_MS (50), RQL_BENCH_BATCH_MS (5).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log_server::HlcClock;

const VIOLATION: i64 = 1_000_000;

fn setting(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

struct Node {
    id: String,
    clock: HlcClock,
    quiet: bool,
    next_heartbeat: Instant,
    /// Records owed (fractions carried between batches).
    owed: f64,
    /// Repair the violation in the next batch.
    broken: bool,
}

fn main() {
    // `cargo bench` passes `--bench`; this harness takes no arguments.
    let secs = setting("RQL_BENCH_SECS", 10);
    let rate = setting("RQL_BENCH_RATE", 50_000) as f64;
    let nodes = setting("RQL_BENCH_NODES", 32) as usize;
    let quiet = (setting("RQL_BENCH_QUIET", 16) as usize).min(nodes.saturating_sub(1));
    let heartbeat = Duration::from_millis(setting("RQL_BENCH_HEARTBEAT_MS", 50));
    let batch_every = Duration::from_millis(setting("RQL_BENCH_BATCH_MS", 5));
    let busy = nodes - quiet;

    let data = std::env::temp_dir().join(format!("rql-watch-bench-{}", std::process::id()));
    let mut server = Command::new(env!("CARGO_BIN_EXE_rql"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rql serve");
    let mut first = String::new();
    BufReader::new(server.stdout.take().expect("piped"))
        .read_line(&mut first)
        .expect("read the listening line");
    let base = first
        .strip_prefix("listening on ")
        .and_then(|r| r.split_whitespace().next())
        .expect("listening on URL")
        .to_string();

    let mut watch = Command::new(env!("CARGO_BIN_EXE_rql"))
        .args([
            "watch", "--server", &base, "--format", "json", "--stats", "-e",
        ])
        .arg("SELECT m.x FROM m WHEN m.x > 500 EMIT CHANGES")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start rql watch");
    let alerts: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let sink = Arc::clone(&alerts);
    let stdout = watch.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            sink.lock().expect("alerts").push((Instant::now(), line));
        }
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let acks: Arc<Mutex<BTreeMap<i64, Instant>>> = Arc::default();
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let url = format!("{base}/v1/records");
        let mut tasks = Vec::new();
        const WRITERS: usize = 4;
        for w in 0..WRITERS {
            let mut mine: Vec<Node> = (0..nodes)
                .filter(|n| n % WRITERS == w)
                .map(|n| Node {
                    id: format!("n{n:02}"),
                    clock: HlcClock::system(),
                    quiet: n >= busy,
                    next_heartbeat: start + heartbeat * (n as u32) / (nodes as u32),
                    owed: 0.0,
                    broken: false,
                })
                .collect();
            let (client, url, acks, sent) = (
                client.clone(),
                url.clone(),
                Arc::clone(&acks),
                Arc::clone(&sent),
            );
            let per_node = rate / busy.max(1) as f64;
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(batch_every);
                let mut next_violation = start + Duration::from_millis(500);
                let mut violation_id = w as i64;
                let mut x = 0i64;
                let mut last = Instant::now();
                // After `end` every node only sends heartbeats for a while, so the last
                // violations become final as they would in a running system.
                while Instant::now() < end + Duration::from_millis(300) {
                    tick.tick().await;
                    let now = Instant::now();
                    if now >= end {
                        for node in &mut mine {
                            node.quiet = true;
                        }
                    }
                    // Owed by the time that really passed (a slow POST delays the tick).
                    let since_last = now.duration_since(last).as_secs_f64();
                    last = now;
                    let mut body = String::new();
                    let mut id_in_batch = None;
                    let mut lines = 0u64;
                    for node in &mut mine {
                        let due = if node.quiet {
                            if now < node.next_heartbeat {
                                0
                            } else {
                                node.next_heartbeat += heartbeat;
                                1
                            }
                        } else {
                            node.owed += per_node * since_last;
                            let n = node.owed.floor();
                            node.owed -= n;
                            n as u64
                        };
                        for _ in 0..due {
                            let hlc = node.clock.now().expect("clock");
                            let (l, c) = (hlc.physical(), hlc.logical());
                            if node.quiet {
                                body.push_str(&format!(
                                    "{{\"node\":\"{}\",\"hlc\":[{l},{c}]}}\n",
                                    node.id
                                ));
                            } else {
                                let value = if node.broken {
                                    node.broken = false;
                                    x % 400
                                } else if w == 0 && id_in_batch.is_none() && now >= next_violation
                                {
                                    next_violation += Duration::from_millis(100);
                                    id_in_batch = Some(violation_id);
                                    node.broken = true;
                                    VIOLATION + violation_id
                                } else {
                                    x % 400
                                };
                                x += 1;
                                body.push_str(&format!(
                                    "{{\"node\":\"{}\",\"hlc\":[{l},{c}],\"set\":{{\"m.x\":{value}}}}}\n",
                                    node.id
                                ));
                            }
                            lines += 1;
                        }
                    }
                    if id_in_batch.is_some() {
                        violation_id += 1;
                    }
                    if body.is_empty() {
                        continue;
                    }
                    if now >= end {
                        lines = 0;
                    }
                    let reply = client
                        .post(&url)
                        .header("content-type", "application/x-ndjson")
                        .body(body)
                        .send()
                        .await
                        .expect("POST");
                    assert!(reply.status().is_success(), "{}", reply.status());
                    let acked = Instant::now();
                    sent.fetch_add(lines, std::sync::atomic::Ordering::Relaxed);
                    if let Some(id) = id_in_batch {
                        acks.lock().expect("acks").insert(id, acked);
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("writer");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    let elapsed = Duration::from_secs(secs);
    stop(&mut watch);
    let _ = reader.join();
    stop(&mut server);
    let _ = std::fs::remove_dir_all(&data);

    let acks = acks.lock().expect("acks").clone();
    let mut samples = Vec::new();
    let mut unexpected = 0;
    let mut seen = std::collections::BTreeSet::new();
    for (at, line) in alerts.lock().expect("alerts").iter() {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        if v["event"] != "begin" {
            continue;
        }
        let id = v["values"]["m.x"]
            .as_object()
            .and_then(|m| m.values().filter_map(|x| x.as_i64()).max())
            .map(|x| x - VIOLATION);
        match id.and_then(|id| acks.get(&id).map(|ack| (id, ack))) {
            Some((id, ack)) if seen.insert(id) => {
                samples.push(at.saturating_duration_since(*ack));
            }
            _ => unexpected += 1,
        }
    }
    samples.sort();
    let pct = |p: f64| {
        samples
            .get(((samples.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    let total = sent.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "watch latency: {nodes} nodes ({quiet} quiet, heartbeat {} ms), {:.0} change and heartbeat \
         records/s for {:.1} s, batches every {} ms",
        heartbeat.as_millis(),
        total as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        batch_every.as_millis()
    );
    println!(
        "alerts: {} of {} violations alerted, {unexpected} unexpected; ack -> alert line: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        samples.len(),
        acks.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
}
