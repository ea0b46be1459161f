//! `rql demo` as a real process: a few seconds of the simulated cluster with a fixed seed; every
//! injected bug is alerted by the consistent-cut query and nothing else is, the naive
//! physical-time ordering raises false alarms, the kept trace replays to the same alerts, and
//! Ctrl-C ends a run early with its summary and exit status 0.

mod cli_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cli_support::{rql, temp_dir, text};

/// Starts `rql demo ARGS` with stdout and stderr piped.
fn start_demo(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_rql"))
        .arg("demo")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rql demo")
}

/// Waits for `child` at most `limit` (a demo that hangs fails the test instead of hanging it).
fn wait_with_limit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for rql demo") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rql demo did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads a pipe to its end on a thread, line by line, each line sent as it comes.
fn lines_of(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The `summary: key=value ...` line as a map.
fn summary(stdout: &str) -> BTreeMap<String, String> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("summary: "))
        .unwrap_or_else(|| panic!("no summary line in:\n{stdout}"));
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn number(summary: &BTreeMap<String, String>, key: &str) -> u64 {
    summary
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number {key} in {summary:?}"))
}

/// Begin events in `rql replay` JSON Lines output.
fn begins(stdout: &str) -> u64 {
    stdout
        .lines()
        .filter(|l| l.starts_with(r#"{"event":"begin""#))
        .count() as u64
}

/// A kept query file's statement, without its comment lines and `;`.
fn query_of(file: &Path) -> String {
    let text = std::fs::read_to_string(file).expect("read the kept query");
    text.lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .trim_end_matches(';')
        .to_string()
}

#[test]
fn consistent_cuts_alert_every_injected_bug_and_nothing_else() {
    let base = temp_dir("demo", "keep");
    // `--keep` wants a new (or empty) directory.
    let dir = base.join("run");
    let _ = std::fs::remove_dir_all(&dir);
    let keep = dir.to_str().expect("utf-8 temp path");
    let mut child = start_demo(&[
        "--nodes",
        "4",
        "--duration",
        "4s",
        "--seed",
        "7",
        "--keep",
        keep,
    ]);
    let stdout = lines_of(child.stdout.take().expect("stdout"));
    let stderr = lines_of(child.stderr.take().expect("stderr"));
    let status = wait_with_limit(&mut child, Duration::from_secs(90));
    let out: Vec<String> = stdout.iter().collect();
    let out = out.join("\n");
    let err: Vec<String> = stderr.iter().collect();
    let err = err.join("\n");
    assert!(status.success(), "{status}\nstdout:\n{out}\nstderr:\n{err}");

    let s = summary(&out);
    let injected = number(&s, "injected");
    // The first bug comes within a second and lasts at most half a second.
    assert!(injected >= 1, "no bug injected in 4 s:\n{out}");
    assert_eq!(number(&s, "consistent_detected"), injected, "{out}");
    assert_eq!(number(&s, "consistent_false"), 0, "{out}");
    assert!(number(&s, "naive_false") >= 1, "{out}");
    assert_eq!(s.get("interrupted").map(String::as_str), Some("false"));
    // The alerts were printed live: a begin and an end per run (one run per bug, unless a
    // starved audit made two bugs overlap).
    let alerts = number(&s, "consistent_alerts");
    assert!((1..=injected).contains(&alerts), "{out}");
    let printed = |what: &str| out.lines().filter(|l| l.contains(what)).count() as u64;
    assert_eq!(printed("ALERT conservation begin"), alerts, "{out}");
    assert_eq!(printed("ALERT conservation end"), alerts, "{out}");
    assert_eq!(printed("injected, record at"), injected, "{out}");

    // The kept trace replays to the same alerts; the naive ordering to its false alarms too.
    let query = query_of(&dir.join("conservation.rql"));
    let trace = dir.join("trace.ndjson");
    let replay = rql(
        &["replay", trace.to_str().expect("utf-8"), "-e", &query],
        None,
    );
    assert!(replay.status.success(), "{}", text(&replay.stderr));
    assert_eq!(begins(&text(&replay.stdout)), alerts);
    let naive = dir.join("naive.ndjson");
    let conservation = dir.join("conservation.rql");
    let replay = rql(
        &[
            "replay",
            naive.to_str().expect("utf-8"),
            "-f",
            conservation.to_str().expect("utf-8"),
        ],
        None,
    );
    assert!(replay.status.success(), "{}", text(&replay.stderr));
    assert_eq!(
        begins(&text(&replay.stdout)),
        number(&s, "naive_alerts"),
        "{out}"
    );
    let staleness = dir.join("staleness.rql");
    let replay = rql(
        &[
            "replay",
            trace.to_str().expect("utf-8"),
            "-f",
            staleness.to_str().expect("utf-8"),
        ],
        None,
    );
    assert!(replay.status.success(), "{}", text(&replay.stderr));
    assert!(dir.join("log").is_dir(), "the log server's data is kept");
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn ctrl_c_ends_the_run_with_its_summary() {
    let mut child = start_demo(&["--nodes", "3", "--duration", "5m", "--seed", "3"]);
    let stdout = lines_of(child.stdout.take().expect("stdout"));
    let stderr = lines_of(child.stderr.take().expect("stderr"));
    // Running: the clocks are set up. Let it work a little, then interrupt it.
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !out.iter().any(|l: &String| l.contains("clock skews")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match stdout.recv_timeout(left) {
            Ok(line) => out.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("the demo did not start:\n{}", out.join("\n"));
            }
        }
    }
    std::thread::sleep(Duration::from_millis(1500));
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success());
    let status = wait_with_limit(&mut child, Duration::from_secs(60));
    out.extend(stdout.iter());
    let out = out.join("\n");
    let err: Vec<String> = stderr.iter().collect();
    assert!(
        status.success(),
        "{status}\nstdout:\n{out}\nstderr:\n{}",
        err.join("\n")
    );
    assert!(out.contains("interrupted: stopping the cluster"), "{out}");
    let s = summary(&out);
    assert_eq!(s.get("interrupted").map(String::as_str), Some("true"));
    assert_eq!(number(&s, "consistent_false"), 0, "{out}");
    assert_eq!(
        number(&s, "consistent_detected"),
        number(&s, "injected"),
        "{out}"
    );
    assert!(out.contains("rerun with --seed 3 --keep DIR"), "{out}");
}

#[test]
fn keep_refuses_a_directory_that_is_not_empty() {
    let dir = temp_dir("demo", "busy");
    std::fs::write(dir.join("precious.txt"), "x").expect("write");
    let out = rql(
        &[
            "demo",
            "--duration",
            "1s",
            "--keep",
            dir.to_str().expect("utf-8"),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the directory is not empty"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("precious.txt")).ok(),
        Some("x".into())
    );
    let _ = std::fs::remove_dir_all(&dir);
}
