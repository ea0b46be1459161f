//! `rql export`: a log server's records to a Parquet (or NDJSON) trace, with --since/--until.

mod serve_support;

use std::process::Command;

use serve_support::{batch, http_client, post, Server};

fn rql(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rql"))
        .args(args)
        .output()
        .expect("run rql")
}

#[test]
fn export_writes_the_server_s_records_as_a_trace() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]);
    let client = http_client();
    let mut lines = Vec::new();
    for l in 1..=20u64 {
        for node in ["n1", "n2"] {
            lines.push(format!(
                r#"{{"node":"{node}","hlc":[{},0],"set":{{"m.x":{l},"m.s":"v{l}"}}}}"#,
                1_700_000_000_000 + l
            ));
        }
    }
    lines.push(r#"{"node":"n2","hlc":[1700000000030,0],"leave":true}"#.to_string());
    let reply = post(&client, &server, batch(&lines));
    assert!(reply.status < 300, "{}", reply.text);
    let pq = tmp.path().join("all.parquet");
    let out = rql(&["export", "--server", &server.base, pq.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Back to NDJSON: the records as sent, sorted by HLC.
    let back = tmp.path().join("back.ndjson");
    let out = rql(&["convert", pq.to_str().unwrap(), back.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = std::fs::read_to_string(&back).unwrap();
    assert_eq!(got.lines().collect::<Vec<_>>(), lines);
    // A window, straight to NDJSON.
    let part = tmp.path().join("part.ndjson");
    let out = rql(&[
        "export",
        "--server",
        &server.base,
        "--since",
        "1700000000005",
        "--until",
        "1700000000006",
        part.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&part).unwrap().lines().count(), 4);
    // No server there.
    let out = rql(&[
        "export",
        "--server",
        "http://127.0.0.1:9",
        pq.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
}
