//! Runs the `cluster` example against a real log server (in this process) and checks what it
//! stored: every branch's records, money conserved at the end, and — the point of HLC
//! stamping — on every cut along the HLC order no branch has received money that was not sent
//! yet, although the branches' physical clocks disagree by up to 120 ms.

#[path = "../../log-server/tests/client_support/mod.rs"]
mod client_support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use client_support::TestServer;
use log_server::client::Value;
use log_server::Record;

fn int(rec: &Record, var: &str) -> Option<i64> {
    rec.set
        .iter()
        .find(|(v, _)| v.as_str() == var)
        .and_then(|(_, value)| match value {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        })
}

#[test]
fn the_bank_is_consistent_on_every_cut() {
    let server = TestServer::start();
    let output = Command::new(env!("CARGO_BIN_EXE_cluster"))
        .args(["--server", &server.url])
        .args(["--branches", "4", "--transfers", "40", "--pace-ms", "1"])
        .args(["--skew-ms", "40", "--seed", "7"])
        .env_remove("RQL_TOKEN")
        .output()
        .expect("run cluster");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{:?}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("total balance 4000 (opened with 4000)"),
        "{stdout}"
    );

    let mut records = server.records();
    let nodes: BTreeSet<&str> = records.iter().map(|r| r.node.as_str()).collect();
    assert_eq!(
        nodes,
        BTreeSet::from(["branch-0", "branch-1", "branch-2", "branch-3"])
    );
    // Cuts along the HLC order (SPEC §1.4): all records up to each distinct HLC.
    records.sort_by_key(|r| r.hlc);
    let mut state: BTreeMap<&str, (i64, i64, i64)> = BTreeMap::new();
    let mut transfers = 0;
    for (i, rec) in records.iter().enumerate() {
        let entry = state.entry(rec.node.as_str()).or_default();
        if let Some(b) = int(rec, "bank.balance") {
            entry.0 = b;
        }
        if let Some(s) = int(rec, "bank.sent") {
            entry.1 = s;
            transfers += 1;
        }
        if let Some(r) = int(rec, "bank.received") {
            entry.2 = r;
        }
        if records.get(i + 1).is_some_and(|next| next.hlc == rec.hlc) {
            continue; // the cut is after the last record of this HLC
        }
        let sent: i64 = state.values().map(|s| s.1).sum();
        let received: i64 = state.values().map(|s| s.2).sum();
        assert!(
            received <= sent,
            "at {}: received {received} > sent {sent}: an inconsistent cut",
            rec.hlc
        );
    }
    assert!(transfers > 100, "only {transfers} debits recorded");
    let sent: i64 = state.values().map(|s| s.1).sum();
    let received: i64 = state.values().map(|s| s.2).sum();
    let balance: i64 = state.values().map(|s| s.0).sum();
    assert_eq!(sent, received, "every transfer arrived");
    assert_eq!(balance, 4000);
}
