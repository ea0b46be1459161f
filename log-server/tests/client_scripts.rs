//! The README's non-Rust clients: `examples/ship.py` (Python standard library) and
//! `examples/ship.sh` (curl) post records to a real log server in this process, with a token;
//! the records must be stored, and failures must show in the exit status. A script whose
//! interpreter is missing is skipped with a message.

mod client_support;

use std::path::PathBuf;
use std::process::{Command, Output};

use client_support::{free_addr, TestServer};
use log_server::client::Value;
use log_server::server::ServerConfig;
use log_server::Record;

const TOKEN: &str = "s3cret-token";

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

/// Whether `program args` runs and succeeds.
fn available(program: &str, args: &[&str]) -> bool {
    let found = Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        println!("skipped: {program} is not installed");
    }
    found
}

fn run(program: &str, script: &str, url: &str, token: Option<&str>) -> Output {
    let mut command = Command::new(program);
    command
        .arg(self::script(script))
        .arg(url)
        .env_remove("RQL_URL");
    match token {
        Some(token) => command.env("RQL_TOKEN", token),
        None => command.env_remove("RQL_TOKEN"),
    };
    command
        .output()
        .unwrap_or_else(|e| panic!("run {program} {script}: {e}"))
}

fn server_with_token() -> TestServer {
    let config = ServerConfig {
        token: Some(TOKEN.into()),
        ..ServerConfig::default()
    };
    TestServer::start_with(free_addr(), config, |_| {})
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The records the script stored: two of `node`, the second setting `app.status` to "ready"
/// and adding to `app.peers`, in HLC order.
fn check_stored(server: &TestServer, node: &str) {
    let records: Vec<Record> = server
        .records()
        .into_iter()
        .filter(|r| r.node == node)
        .collect();
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(records[0].hlc < records[1].hlc);
    let status = records[1]
        .set
        .iter()
        .find(|(v, _)| v.as_str() == "app.status")
        .and_then(|(_, value)| value.clone());
    assert_eq!(status, Some(Value::Str("ready".into())));
    assert_eq!(records[1].add.len(), 1);
    assert_eq!(records[1].add[0].0.as_str(), "app.peers");
}

#[test]
fn python_script_ships_records() {
    if !available("python3", &["--version"]) {
        return;
    }
    let server = server_with_token();
    let output = run("python3", "ship.py", &server.url, Some(TOKEN));
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(r#""stored": 2"#),
        "{}",
        text(&output)
    );
    check_stored(&server, "py-1");

    // A refused request (no token) and an unreachable server fail with a message.
    let output = run("python3", "ship.py", &server.url, None);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unauthorized"));
    let output = run(
        "python3",
        "ship.py",
        &format!("http://{}", free_addr()),
        None,
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot reach"));
}

#[test]
fn shell_script_ships_records() {
    // dash has no --version.
    if !available("curl", &["--version"]) || !available("sh", &["-c", "true"]) {
        return;
    }
    let server = server_with_token();
    let output = run("sh", "ship.sh", &format!("{}/", server.url), Some(TOKEN));
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(r#""stored":2"#),
        "{}",
        text(&output)
    );
    check_stored(&server, "sh-1");

    let output = run("sh", "ship.sh", &server.url, Some("wrong"));
    assert!(!output.status.success(), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("unauthorized"));
}
