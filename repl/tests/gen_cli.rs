//! `rql gen` end to end: determinism, record counts, every line a valid record, and each
//! scenario's property checked by running `rql replay` on the generated trace.

use std::path::{Path, PathBuf};
use std::process::Output;

mod cli_support;

fn rql(args: &[&str]) -> Output {
    cli_support::rql(args, None)
}

use cli_support::text;

fn temp_dir(name: &str) -> PathBuf {
    cli_support::temp_dir("gen", name)
}

/// The trace `rql gen` writes to stdout.
fn gen(scenario: &str, nodes: u32, steps: u64, seed: u64) -> Vec<u8> {
    let out = rql(&[
        "gen",
        "--scenario",
        scenario,
        "--nodes",
        &nodes.to_string(),
        "--steps",
        &steps.to_string(),
        "--seed",
        &seed.to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    out.stdout
}

/// Writes a generated trace to `dir/name` and returns its path.
fn gen_file(dir: &Path, scenario: &str, nodes: u32, steps: u64, seed: u64) -> String {
    let path = dir.join(format!("{scenario}-{nodes}-{steps}-{seed}.ndjson"));
    let path = path.display().to_string();
    let out = rql(&[
        "gen",
        "--scenario",
        scenario,
        "--nodes",
        &nodes.to_string(),
        "--steps",
        &steps.to_string(),
        "--seed",
        &seed.to_string(),
        "-o",
        &path,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    path
}

/// Runs `rql replay FILE -e QUERY --format json --stats`: (output lines, candidate cuts).
fn replay(path: &str, query: &str) -> (Vec<String>, u64) {
    let out = rql(&["replay", path, "-e", query, "--format", "json", "--stats"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // "stats: R records, S steps scanned, C candidate cuts, ..."
    let candidates = stderr
        .lines()
        .find_map(|l| {
            let l = l.strip_prefix("stats: ")?;
            let (before, _) = l.split_once(" candidate cuts")?;
            before.rsplit(' ').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no candidate count in {stderr}"));
    (
        text(&out.stdout).lines().map(String::from).collect(),
        candidates,
    )
}

const SCENARIOS: [&str; 3] = ["invariant", "staleness", "bank"];

const Q1: &str = "SELECT inv.a, inv.b, inv.c FROM inv WHEN (inv.a + inv.b <= inv.c) LINK SAME_NODE";

#[test]
fn same_seed_gives_the_same_bytes_and_another_seed_does_not() {
    for scenario in SCENARIOS {
        let a = gen(scenario, 5, 2_000, 42);
        assert_eq!(a, gen(scenario, 5, 2_000, 42), "{scenario}");
        assert_ne!(a, gen(scenario, 5, 2_000, 43), "{scenario}");
    }
    // -o writes exactly what stdout gets.
    let dir = temp_dir("same-bytes");
    let path = gen_file(&dir, "bank", 5, 2_000, 42);
    assert_eq!(std::fs::read(&path).unwrap(), gen("bank", 5, 2_000, 42));
}

#[test]
fn one_record_per_node_then_one_per_step_each_a_valid_record() {
    for scenario in SCENARIOS {
        for (nodes, steps) in [(1, 0), (1, 300), (7, 1_234), (200, 50)] {
            let out = gen(scenario, nodes, steps, 1);
            assert_eq!(out.last(), (steps + nodes as u64 > 0).then_some(&b'\n'));
            let lines: Vec<&[u8]> = out
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .collect();
            assert_eq!(
                lines.len() as u64,
                nodes as u64 + steps,
                "{scenario} {nodes} {steps}"
            );
            let records: Vec<_> = lines
                .iter()
                .map(|l| log_server::parse_record(l).unwrap_or_else(|e| panic!("{e}")))
                .collect();
            // The initial records are one step; then each record has its own, increasing HLC.
            let n = nodes as usize;
            assert!(records[..n].iter().all(|r| r.hlc == records[0].hlc));
            assert!(records[n - 1..].windows(2).all(|p| p[0].hlc < p[1].hlc));
            assert!(records.iter().all(|r| !r.is_heartbeat()));
            // The first records introduce n1..nN in order, setting every variable.
            for (i, r) in records.iter().take(nodes as usize).enumerate() {
                assert_eq!(r.node, format!("n{}", i + 1));
                assert!(r.set.len() >= 2);
            }
            for r in records.iter().skip(nodes as usize) {
                let k: u32 = r.node[1..].parse().unwrap();
                assert!((1..=nodes).contains(&k));
            }
        }
    }
}

#[test]
fn about_one_percent_of_invariant_cuts_violate_q1() {
    let dir = temp_dir("invariant");
    for nodes in [4, 64] {
        let path = gen_file(&dir, "invariant", nodes, 20_000, 11);
        let (lines, candidates) = replay(&path, Q1);
        assert_eq!(candidates, 1 + 20_000);
        let frac = lines.len() as f64 / candidates as f64;
        assert!(
            (0.005..=0.02).contains(&frac),
            "{nodes} nodes: {} of {candidates} cuts violate",
            lines.len()
        );
    }
}

#[test]
fn bank_money_is_conserved_on_every_cut() {
    let dir = temp_dir("bank");
    for nodes in [1, 3, 40] {
        let path = gen_file(&dir, "bank", nodes, 5_000, 5);
        let total = 1000 * nodes;
        let broken = format!(
            "SELECT COUNT(*) AS n FROM bank \
             WHEN SUM(bank.balance) + SUM(bank.sent) - SUM(bank.recv) != {total}"
        );
        let (lines, candidates) = replay(&path, &broken);
        assert_eq!(candidates, 1 + 5_000);
        assert!(lines.is_empty(), "{nodes} nodes: {}", lines[0]);
        // Money does move: some cuts have transfers in flight.
        let moving = "SELECT COUNT(*) AS n FROM bank WHEN SUM(bank.sent) > SUM(bank.recv)";
        assert!(!replay(&path, moving).0.is_empty());
        let never_negative = "SELECT bank.balance FROM bank WHEN bank.balance < 0";
        assert!(replay(&path, never_negative).0.is_empty());
    }
}

#[test]
fn staleness_has_cuts_with_followers_two_versions_behind() {
    let dir = temp_dir("staleness");
    for nodes in [2, 4, 32] {
        let path = gen_file(&dir, "staleness", nodes, 10_000, 8);
        let q3 = "SELECT zk.version FROM zk WHEN MAX(zk.version) - MIN(zk.version) >= 2";
        let (lines, candidates) = replay(&path, q3);
        assert_eq!(candidates, 1 + 10_000);
        assert!(
            !lines.is_empty() && lines.len() < candidates as usize / 3,
            "{nodes} nodes: {} of {candidates}",
            lines.len()
        );
        // The leader is never behind a follower, and roles are set once.
        let ahead = "SELECT zk.version FROM zk WHEN MAX(zk.version) > zk.version['n1']";
        assert!(replay(&path, ahead).0.is_empty());
        let roles = "SELECT COUNT(*) AS n FROM zk \
                     WHEN (zk.role = 'leader') LINK SAME_NODE AND NODE($1) != 'n1'";
        assert!(replay(&path, roles).0.is_empty());
    }
}

#[test]
fn bad_arguments_are_rejected() {
    let out = rql(&["gen", "--scenario", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    let out = rql(&["gen", "--scenario", "bank", "--nodes", "0"]);
    assert_eq!(out.status.code(), Some(2));
    let out = rql(&[
        "gen",
        "--scenario",
        "bank",
        "-o",
        "/nonexistent-dir/x.ndjson",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot create"));
}
