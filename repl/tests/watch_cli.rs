//! `rql watch` against real `rql serve` processes on ephemeral loopback ports: live output
//! equals replay output, idle nodes are stale, late records are flagged, a server restart is
//! survived without gaps or duplicates, and alerts reach a webhook that fails at first.

mod cli_support;
mod serve_support;

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cli_support::{rql, temp_dir, text};
use serde_json::Value;
use serve_support::{http_client, post, wait_for, Server};

/// A running `rql watch`; its stdout lines are collected as they come.
struct Watch {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: std::path::PathBuf,
}

impl Watch {
    fn start(servers: &[&Server], query: &str, extra: &[&str], stderr: &Path) -> Watch {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rql"));
        cmd.arg("watch");
        for s in servers {
            cmd.args(["--server", &s.base]);
        }
        let mut child = cmd
            .args(["-e", query, "--format", "json", "--stats"])
            .args(extra)
            .env_remove("RQL_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(stderr).expect("create the watch log"))
            .spawn()
            .expect("start rql watch");
        let stdout = child.stdout.take().expect("stdout is piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().expect("lines").push(line);
            }
        });
        Watch {
            child,
            lines,
            stderr: stderr.to_path_buf(),
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    fn records(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .map(|l| serde_json::from_str(l).expect("watch prints JSON lines"))
            .collect()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn wait_lines(&self, n: usize, timeout: Duration) {
        assert!(
            wait_for(timeout, || self.lines().len() >= n),
            "expected {n} lines, got {:?}\nstderr:\n{}",
            self.lines(),
            self.log()
        );
    }

    /// SIGTERM, then the exit status (at most 20 s).
    fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for rql watch") {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            assert!(Instant::now() < deadline, "rql watch ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn line(node: &str, l: u64, set: &str) -> String {
    if set.is_empty() {
        format!(r#"{{"node":"{node}","hlc":[{l},0]}}"#)
    } else {
        format!(r#"{{"node":"{node}","hlc":[{l},0],"set":{{{set}}}}}"#)
    }
}

fn send(server: &Server, lines: &[String]) {
    let mut body = lines.join("\n");
    body.push('\n');
    let reply = post(&http_client(), server, body);
    assert_eq!(reply.status, 200, "{}", reply.text);
}

/// A deterministic shuffle source for interleavings.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// `lines` (one trace, sorted) in a random interleaving that keeps each node's order.
fn interleave(lines: &[String], rng: &mut Rng) -> Vec<String> {
    let mut queues: BTreeMap<String, VecDeque<String>> = BTreeMap::new();
    for l in lines {
        let v: Value = serde_json::from_str(l).expect("trace line");
        let node = v["node"].as_str().expect("node").to_string();
        queues.entry(node).or_default().push_back(l.clone());
    }
    let mut out = Vec::new();
    while !queues.is_empty() {
        let key = queues
            .keys()
            .nth(rng.below(queues.len()))
            .cloned()
            .expect("key");
        let q = queues.get_mut(&key).expect("queue");
        out.extend(q.pop_front());
        if q.is_empty() {
            queues.remove(&key);
        }
    }
    out
}

#[test]
fn live_output_equals_replay_of_the_same_records() {
    // Different clusters, seeds and interleavings; each through a real log server.
    for (scenario, nodes, seed) in [("invariant", 5, 3), ("staleness", 7, 11), ("bank", 3, 5)] {
        live_equals_replay(scenario, nodes, seed);
    }
}

fn live_equals_replay(scenario: &str, node_count: u32, seed: u64) {
    let dir = temp_dir("watch", &format!("equal-{scenario}"));
    let trace = dir.join("trace.ndjson");
    let (nodes_arg, seed_arg) = (node_count.to_string(), seed.to_string());
    let gen = rql(
        &[
            "gen",
            "--scenario",
            scenario,
            "--nodes",
            &nodes_arg,
            "--steps",
            "600",
            "--seed",
            &seed_arg,
        ],
        None,
    );
    assert!(gen.status.success(), "{}", text(&gen.stderr));
    let generated: Vec<String> = text(&gen.stdout).lines().map(str::to_string).collect();
    let nodes: Vec<String> = {
        let mut n: Vec<String> = generated
            .iter()
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("line");
                v["node"].as_str().expect("node").to_string()
            })
            .collect();
        n.sort();
        n.dedup();
        n
    };
    let last_l = generated
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("line");
            v["hlc"][0].as_u64().expect("l")
        })
        .max()
        .expect("records");
    // Every node announces itself first, and says at the end that its clock moved on, so
    // every step becomes final.
    let mut all: Vec<String> = nodes.iter().map(|n| line(n, 1, "")).collect();
    all.extend(generated);
    all.extend(nodes.iter().map(|n| line(n, last_l + 1, "")));
    std::fs::write(&trace, all.join("\n") + "\n").expect("write trace");

    let queries: &[&str] = match scenario {
        "invariant" => &[
            "SELECT inv.a, inv.b, inv.c FROM inv WHEN (inv.a + inv.b <= inv.c) LINK SAME_NODE",
            "SELECT MAX(inv.c) FROM inv WHEN MAX(inv.c) > MIN(inv.a) EMIT CHANGES",
        ],
        "staleness" => &[
            "SELECT zk.version FROM zk WHEN MAX(zk.version) - MIN(zk.version) >= 2",
            "SELECT zk.version FROM zk WHEN (zk.version >= 7) LINK EACH_NODE EMIT CHANGES",
        ],
        _ => &[
            "SELECT SUM(bank.balance) AS held FROM bank \
             WHEN SUM(bank.balance) + SUM(bank.sent) - SUM(bank.recv) = 3000",
            "SELECT bank.balance FROM bank WHEN bank.balance < 900",
        ],
    };
    // The same query from the start of the retained history (SINCE goes before EMIT).
    let since = |q: &str| match q.find(" EMIT") {
        Some(at) => format!("{} SINCE 0{}", &q[..at], &q[at..]),
        None => format!("{q} SINCE 0"),
    };
    let queries: Vec<(String, String)> =
        queries.iter().map(|q| (q.to_string(), since(q))).collect();
    let server = Server::start(&dir.join("data"), &[]);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed);
    let shuffled = interleave(&all, &mut rng);
    // Half the records are history when the watches start, half arrive live.
    let half = shuffled.len() / 2;
    let mut at = 0;
    while at < half {
        let n = 1 + rng.below(40);
        send(&server, &shuffled[at..(at + n).min(half)]);
        at = (at + n).min(half);
    }
    let mut watches: Vec<(Watch, String)> = queries
        .iter()
        .enumerate()
        .map(|(i, (q, since))| {
            let log = dir.join(format!("watch{i}.log"));
            (
                Watch::start(&[&server], since, &["--idle-timeout", "60s"], &log),
                q.clone(),
            )
        })
        .collect();
    while at < shuffled.len() {
        let n = 1 + rng.below(40);
        let end = (at + n).min(shuffled.len());
        send(&server, &shuffled[at..end]);
        at = end;
    }
    for (watch, query) in &mut watches {
        let replay = rql(
            &[
                "replay",
                trace.to_str().expect("path"),
                "-e",
                query,
                "--format",
                "json",
            ],
            None,
        );
        assert!(replay.status.success(), "{}", text(&replay.stderr));
        let want: Vec<String> = text(&replay.stdout).lines().map(str::to_string).collect();
        assert!(!want.is_empty(), "the query should emit something: {query}");
        watch.wait_lines(want.len(), Duration::from_secs(30));
        // Nothing more may come.
        std::thread::sleep(Duration::from_millis(300));
        let status = watch.terminate();
        assert!(status.success(), "{status:?}\n{}", watch.log());
        assert_eq!(
            watch.lines(),
            want,
            "query {query}\nstderr:\n{}",
            watch.log()
        );
        assert!(watch.log().contains("stats:"), "{}", watch.log());
    }
}

#[test]
fn idle_nodes_are_stale_and_late_records_are_flagged() {
    let dir = temp_dir("watch", "idle");
    let server = Server::start(&dir.join("data"), &[]);
    send(
        &server,
        &[line("a", 100, r#""m.x":1"#), line("b", 100, r#""m.x":1"#)],
    );
    let mut watch = Watch::start(
        &[&server],
        "SELECT m.x FROM m WHEN m.x >= 1",
        &["--idle-timeout", "300ms"],
        &dir.join("watch.log"),
    );
    // The start: C(F0) at F0 = [100, 0].
    watch.wait_lines(1, Duration::from_secs(20));
    let first = &watch.records()[0];
    assert_eq!(first["seq"], 1);
    assert_eq!(first["hlc"], serde_json::json!([100, 0]));
    // a goes on, b says nothing: after the idle timeout b is stale and a's steps are final.
    send(&server, &[line("a", 101, r#""m.x":2"#)]);
    send(&server, &[line("a", 102, r#""m.x":3"#)]);
    watch.wait_lines(2, Duration::from_secs(20));
    let second = &watch.records()[1];
    assert_eq!(second["hlc"], serde_json::json!([101, 0]), "{second}");
    assert_eq!(second["stale"], serde_json::json!(["b"]), "{second}");
    // b is back, behind the frontier: its record is late, applied with the next final step.
    send(&server, &[line("b", 100, r#""m.x":5"#)]);
    std::thread::sleep(Duration::from_millis(100));
    send(&server, &[line("a", 103, r#""m.x":4"#)]);
    send(&server, &[line("b", 104, "")]);
    watch.wait_lines(3, Duration::from_secs(20));
    let third = &watch.records()[2];
    assert_eq!(third["hlc"], serde_json::json!([102, 0]), "{third}");
    assert_eq!(third["late"], true, "{third}");
    assert_eq!(third["values"]["m.x"]["b"], 5, "{third}");
    assert!(third.get("stale").is_none(), "b is active again: {third}");
    let status = watch.terminate();
    assert!(status.success());
    assert!(watch.log().contains("1 late"), "{}", watch.log());
}

#[test]
fn a_server_restart_loses_and_repeats_nothing() {
    let dir = temp_dir("watch", "restart");
    let data = dir.join("data");
    let mut server = Server::start(&data, &[]);
    let listen = server.base.trim_start_matches("http://").to_string();
    let mut all = Vec::new();
    let mut batch = |from: u64, to: u64| -> Vec<String> {
        let lines: Vec<String> = (from..to)
            .flat_map(|l| {
                [
                    line("a", l, &format!(r#""m.x":{}"#, l % 7)),
                    line("b", l, &format!(r#""m.x":{}"#, l % 5)),
                ]
            })
            .collect();
        all.extend(lines.clone());
        lines
    };
    send(&server, &batch(10, 30));
    let query = "SELECT m.x FROM m WHEN m.x >= 3";
    let mut watch = Watch::start(
        &[&server],
        &format!("{query} SINCE 0"),
        &["--idle-timeout", "60s"],
        &dir.join("watch.log"),
    );
    send(&server, &batch(30, 40));
    watch.wait_lines(1, Duration::from_secs(20));
    let status = server.terminate();
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(500));
    let server = Server::start_at(&data, &listen, &[]);
    send(&server, &batch(40, 60));
    let end = vec![line("a", 100, ""), line("b", 100, "")];
    send(&server, &end);
    all.extend(end);
    let trace = dir.join("all.ndjson");
    std::fs::write(&trace, all.join("\n") + "\n").expect("write");
    let replay = rql(
        &[
            "replay",
            trace.to_str().expect("path"),
            "-e",
            query,
            "--format",
            "json",
        ],
        None,
    );
    let want: Vec<String> = text(&replay.stdout).lines().map(str::to_string).collect();
    watch.wait_lines(want.len(), Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    assert!(watch.terminate().success());
    assert_eq!(watch.lines(), want, "stderr:\n{}", watch.log());
    assert!(watch.log().contains("reconnecting"), "{}", watch.log());
}

#[test]
fn a_node_on_two_servers_is_an_error() {
    let dir = temp_dir("watch", "two");
    let one = Server::start(&dir.join("one"), &[]);
    let two = Server::start(&dir.join("two"), &[]);
    send(&one, &[line("a", 1, r#""m.x":1"#)]);
    send(&two, &[line("a", 2, r#""m.x":1"#)]);
    let mut watch = Watch::start(&[&one, &two], "SELECT m.x FROM m", &[], &dir.join("w.log"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = watch.child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "watch did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1));
    assert!(
        watch.log().contains("appears on two log servers"),
        "{}",
        watch.log()
    );
}

#[test]
fn a_node_that_leaves_no_longer_holds_the_frontier() {
    let dir = temp_dir("watch", "leave");
    let server = Server::start(&dir.join("data"), &[]);
    send(
        &server,
        &[line("a", 1, r#""m.x":1"#), line("b", 1, r#""m.x":1"#)],
    );
    let mut watch = Watch::start(
        &[&server],
        "SELECT m.x FROM m WHEN COUNT(m.x) = 1",
        &["--idle-timeout", "60s"],
        &dir.join("watch.log"),
    );
    std::thread::sleep(Duration::from_millis(300));
    send(
        &server,
        &[
            r#"{"node":"a","hlc":[2,0],"leave":true}"#.to_string(),
            line("b", 3, r#""m.x":2"#),
            line("b", 4, ""),
        ],
    );
    // Without the leave, a's latest (2) would hold F and step 3 would wait for the idle
    // timeout (a minute).
    watch.wait_lines(2, Duration::from_secs(10));
    let records = watch.records();
    assert_eq!(records[0]["hlc"], serde_json::json!([2, 0]));
    assert_eq!(records[0]["values"]["m.x"], serde_json::json!({"b": 1}));
    assert_eq!(records[1]["hlc"], serde_json::json!([3, 0]));
    assert!(watch.terminate().success());
}

/// A webhook receiver that answers 500 to the first `fail` requests, then 200, keeping the
/// bodies it accepted.
struct Hook {
    base: String,
    bodies: Arc<Mutex<Vec<String>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Hook {
    fn start(fail: usize) -> Hook {
        use axum::routing::post;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let kept = Arc::clone(&bodies);
        let app = axum::Router::new().route(
            "/alert",
            post(move |body: String| {
                let (kept, calls) = (Arc::clone(&kept), Arc::clone(&calls));
                async move {
                    if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < fail {
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    kept.lock().expect("bodies").push(body);
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Hook {
            base: format!("http://{addr}"),
            bodies,
            _runtime: runtime,
        }
    }
}

#[test]
fn alerts_reach_a_webhook_that_fails_at_first() {
    let dir = temp_dir("watch", "webhook");
    let hook = Hook::start(2);
    let server = Server::start(&dir.join("data"), &[]);
    send(
        &server,
        &[line("a", 1, r#""m.x":0"#), line("b", 1, r#""m.x":0"#)],
    );
    let url = format!("{}/alert", hook.base);
    let mut watch = Watch::start(
        &[&server],
        "SELECT m.x FROM m WHEN m.x > 5 EMIT CHANGES",
        &["--idle-timeout", "60s", "--webhook", &url],
        &dir.join("watch.log"),
    );
    std::thread::sleep(Duration::from_millis(300));
    send(
        &server,
        &[
            line("a", 2, r#""m.x":9"#),
            line("b", 2, ""),
            line("a", 3, r#""m.x":1"#),
            line("b", 3, ""),
            line("a", 4, ""),
            line("b", 4, ""),
        ],
    );
    // stdout does not wait for the webhook's retries.
    watch.wait_lines(2, Duration::from_secs(10));
    assert!(
        wait_for(Duration::from_secs(20), || hook
            .bodies
            .lock()
            .expect("bodies")
            .len()
            >= 2),
        "the webhook got {:?}\n{}",
        hook.bodies.lock().expect("bodies"),
        watch.log()
    );
    let bodies: Vec<Value> = hook
        .bodies
        .lock()
        .expect("bodies")
        .iter()
        .map(|b| serde_json::from_str(b).expect("JSON body"))
        .collect();
    assert_eq!(bodies[0]["event"], "begin");
    assert_eq!(bodies[0]["hlc"], serde_json::json!([2, 0]));
    assert_eq!(bodies[1]["event"], "end");
    assert_eq!(bodies[1]["hlc"], serde_json::json!([3, 0]));
    let lines = watch.lines();
    assert!(watch.terminate().success());
    assert_eq!(
        serde_json::from_str::<Value>(&lines[0]).expect("json"),
        bodies[0]
    );
    let log = watch.log();
    assert!(
        log.contains("webhook: 2 delivered, 0 failed, 0 dropped"),
        "{log}"
    );
    assert!(log.contains("2 retries"), "{log}");
}
