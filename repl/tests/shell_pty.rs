//! `rql repl` on a terminal, driven through a pseudo-terminal: a statement over several lines
//! (with the continuation prompt), Tab completing a key of the open trace, Ctrl-C cancelling a
//! long query (or `\sql` statement) without ending the shell, errors with carets that do not end
//! it either, history kept across two sessions, and `\watch` following a log server until
//! Ctrl-C.

mod cli_support;
mod serve_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cli_support::{rql, temp_dir, text};
use rexpect::reader::Options;
use rexpect::session::{spawn_with_options, PtySession};
use serve_support::{http_client, post, Server};

/// `rql ARGS` on a fresh pseudo-terminal with `env` added, without colour (so the screen is
/// plain text), once its first prompt is up; and what it printed before that prompt.
fn start(args: &[&str], env: &[(&str, &str)]) -> (PtySession, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rql"));
    cmd.args(args)
        .env("TERM", "xterm")
        .env("NO_COLOR", "1")
        .env_remove("RQL_HISTORY")
        .env_remove("RQL_TOKEN")
        .envs(env.iter().copied());
    let options = Options::new()
        .timeout_ms(Some(30_000))
        .strip_ansi_escape_codes(true);
    let mut p = spawn_with_options(cmd, options).expect("start rql on a pty");
    let banner = p.exp_string("rql> ").expect("the first prompt");
    (p, banner)
}

/// `rql repl ARGS`.
fn shell(args: &[&str]) -> PtySession {
    let mut all = vec!["repl"];
    all.extend_from_slice(args);
    start(&all, &[]).0
}

/// A trace made by `rql gen` (cached per test binary run by name).
fn trace(dir: &Path, scenario: &str, nodes: u32, steps: u32) -> PathBuf {
    let path = dir.join(format!("{scenario}-{nodes}-{steps}.ndjson"));
    let (n, s) = (nodes.to_string(), steps.to_string());
    let out = rql(
        &["gen", "--scenario", scenario, "--nodes", &n, "--steps", &s],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::write(&path, &out.stdout).expect("write the trace");
    path
}

/// Types `keys` without Enter.
fn keys(p: &mut PtySession, keys: &str) {
    p.send(keys).expect("send keys");
    p.flush().expect("flush keys");
}

/// Quits at the prompt (waiting for it: keys typed before it is up may be read while the
/// terminal is still in line mode).
fn quit(mut p: PtySession) {
    p.exp_string("rql> ").expect("the prompt before \\q");
    p.send_line("\\q").expect("send \\q");
    p.exp_eof().expect("the shell ends after \\q");
}

#[test]
fn bare_rql_starts_the_shell_and_says_how_to_open_a_source() {
    let dir = temp_dir("shell-pty", "bare");
    let history = dir.join("history");
    let history = history.to_str().expect("utf-8 path");
    let (mut p, banner) = start(&[], &[("RQL_HISTORY", history)]);
    assert!(
        banner.contains("No source is open: \\open FILE... reads trace files"),
        "{banner}"
    );
    p.send_line("SELECT x.y FROM x;").expect("a query");
    p.exp_string("no source is open").expect("the error");
    p.exp_string("\\open FILE... reads trace files")
        .expect("how to open one");
    quit(p);
}

#[test]
fn a_statement_may_span_lines_and_errors_do_not_end_the_session() {
    let dir = temp_dir("shell-pty", "lines");
    let inv = trace(&dir, "invariant", 3, 100);
    let inv = inv.to_str().expect("utf-8 path");
    let mut p = shell(&["--no-history", "--format", "json", "--trace", inv]);
    p.send_line("SELECT COUNT(*) AS n").expect("line 1");
    p.exp_string("...> ").expect("the continuation prompt");
    p.send_line("FROM inv").expect("line 2");
    p.exp_string("...> ").expect("still going");
    p.send_line("LIMIT 1;").expect("line 3");
    p.exp_string(r#"{"seq":1,"hlc":[1700000000000,0],"values":{"n":3}}"#)
        .expect("the result of the three lines");
    p.exp_string("rql> ").expect("back at the prompt");
    // An error: caret and hint, and the session goes on.
    p.send_line("SELECT inv.a FROM inv WHEN inv.a > inv.b LINK SAME_NODE;")
        .expect("a bad query");
    p.exp_string("LINK applies only to a parenthesized expression")
        .expect("the message");
    p.exp_string("^^^^").expect("the caret");
    p.exp_string("help: write (inv.a > inv.b) LINK SAME_NODE")
        .expect("the hint");
    p.exp_string("rql> ").expect("still at the prompt");
    p.send_line("\\nosuch").expect("a bad command");
    p.exp_string("unknown command \\nosuch").expect("told so");
    p.exp_string("rql> ").expect("prompt");
    p.send_line("SELECT COUNT(*) AS m FROM inv LIMIT 1;")
        .expect("a good query");
    p.exp_string(r#""values":{"m":3}"#).expect("it runs");
    // Ctrl-D on an empty line ends the shell.
    p.exp_string("rql> ").expect("prompt");
    p.send_control('d').expect("Ctrl-D");
    p.exp_eof().expect("the shell ends on Ctrl-D");
}

#[test]
fn tab_completes_a_key_of_the_open_trace() {
    let dir = temp_dir("shell-pty", "complete");
    let zk = trace(&dir, "staleness", 3, 100);
    let zk = zk.to_str().expect("utf-8 path");
    let mut p = shell(&["--no-history", "--format", "json", "--trace", zk]);
    // `zk.ver` becomes `zk.version`: only the completed name gives a non-null maximum.
    keys(&mut p, "SELECT MAX(zk.ver");
    keys(&mut p, "\t");
    p.exp_string("zk.version").expect("completed on screen");
    p.send_line(") AS v FROM zk LIMIT 1;")
        .expect("finish the query");
    p.exp_string(r#"{"seq":1,"hlc":[1700000000000,0],"values":{"v":0}}"#)
        .expect("the completed name was queried");
    // A meta-command and its argument complete too.
    p.exp_string("rql> ").expect("prompt");
    keys(&mut p, "\\form");
    keys(&mut p, "\t");
    keys(&mut p, "c");
    keys(&mut p, "\t");
    p.send_line("").expect("Enter");
    p.exp_string("rql> ").expect("prompt");
    p.send_line("\\format").expect("ask");
    p.exp_string("csv")
        .expect("\\format csv was completed and run");
    quit(p);
}

#[test]
fn ctrl_c_cancels_a_long_query_and_the_shell_goes_on() {
    let dir = temp_dir("shell-pty", "cancel");
    // 20 nodes and a WHEN no binding satisfies: all 20^3 bindings of every cut are tried,
    // tens of seconds in all (a debug build).
    let big = trace(&dir, "invariant", 20, 20_000);
    let big = big.to_str().expect("utf-8 path");
    let mut p = shell(&["--no-history", "--format", "json", "--trace", big]);
    p.send_line("SELECT COUNT(*) FROM inv WHEN inv.a * inv.b = inv.c + 10001;")
        .expect("a long query");
    std::thread::sleep(Duration::from_millis(1500));
    let sent = Instant::now();
    p.send_control('c').expect("Ctrl-C");
    p.exp_string("cancelled after 0 cuts").expect("cancelled");
    let took = sent.elapsed();
    // A batch of steps takes well under a second even here; allow for a loaded machine.
    assert!(took < Duration::from_secs(5), "cancelling took {took:?}");
    p.exp_string("rql> ").expect("back at the prompt");
    p.send_line("SELECT COUNT(*) AS n FROM inv LIMIT 1;")
        .expect("another query");
    p.exp_string(r#""values":{"n":20}"#)
        .expect("the shell still works");
    quit(p);
}

#[test]
fn ctrl_c_stops_a_long_sql_statement_and_the_shell_goes_on() {
    let dir = temp_dir("shell-pty", "sql-cancel");
    let inv = trace(&dir, "invariant", 3, 100);
    let inv = inv.to_str().expect("utf-8 path");
    let mut p = shell(&["--no-history", "--format", "json", "--trace", inv]);
    // `\sql` spans lines up to its `;`; this one would run for minutes.
    p.send_line("\\sql SELECT sum(value) AS s").expect("line 1");
    p.exp_string("...> ").expect("continuation");
    p.send_line("FROM generate_series(1, 100000000000);")
        .expect("line 2");
    std::thread::sleep(Duration::from_millis(1500));
    let sent = Instant::now();
    p.send_control('c').expect("Ctrl-C");
    p.exp_string("cancelled: the SQL statement was stopped")
        .expect("cancelled");
    let took = sent.elapsed();
    assert!(took < Duration::from_secs(5), "cancelling took {took:?}");
    p.exp_string("rql> ").expect("back at the prompt");
    p.send_line("\\sql SELECT count(DISTINCT node) AS n FROM trace;")
        .expect("another statement");
    p.exp_string(r#"{"n":3}"#).expect("the shell still works");
    quit(p);
}

#[test]
fn history_is_kept_across_sessions() {
    let dir = temp_dir("shell-pty", "history");
    let inv = trace(&dir, "invariant", 3, 100);
    let inv = inv.to_str().expect("utf-8 path");
    let history = dir.join("history");
    let _ = std::fs::remove_file(&history);
    let history = history.to_str().expect("utf-8 path");
    let args = ["--history", history, "--format", "json", "--trace", inv];
    let mut p = shell(&args);
    p.send_line("SELECT COUNT(*) AS remembered")
        .expect("line 1");
    p.exp_string("...> ").expect("continuation");
    p.send_line("FROM inv LIMIT 1;").expect("line 2");
    p.exp_string(r#""values":{"remembered":3}"#).expect("runs");
    p.exp_string("rql> ").expect("prompt");
    p.send_control('d').expect("Ctrl-D");
    p.exp_eof().expect("the shell ends on Ctrl-D");
    // The second session (history file from the environment this time) recalls the two-line
    // statement as one entry with ↑.
    let (mut p, _) = start(
        &["repl", "--format", "json", "--trace", inv],
        &[("RQL_HISTORY", history)],
    );
    keys(&mut p, "\x1b[A");
    p.exp_string("FROM inv LIMIT 1;").expect("recalled");
    keys(&mut p, "\r");
    p.exp_string(r#""values":{"remembered":3}"#)
        .expect("the recalled statement runs");
    quit(p);
    let saved = std::fs::read_to_string(history).expect("the history file");
    assert!(saved.contains("SELECT COUNT(*) AS remembered"), "{saved}");
}

#[test]
fn watch_follows_a_log_server_until_ctrl_c() {
    let dir = temp_dir("shell-pty", "watch");
    let data = dir.join("data");
    let _ = std::fs::remove_dir_all(&data);
    let server = Server::start(&data, &["--idle-timeout", "1h"]);
    let client = http_client();
    let send = |lines: &str| {
        let reply = post(&client, &server, lines.to_string());
        assert_eq!(reply.status, 200, "{}", reply.text);
    };
    send(concat!(
        r#"{"node":"n1","hlc":[1000,0],"set":{"x.v":1}}"#,
        "\n",
        r#"{"node":"n2","hlc":[1000,0],"set":{"x.v":2}}"#,
        "\n"
    ));
    let mut p = shell(&["--no-history", "--format", "json"]);
    p.send_line(&format!("\\connect {}", server.base))
        .expect("connect");
    p.exp_string("Connected to").expect("connected");
    p.exp_string("rql> ").expect("prompt");
    // A plain query reads the retained history.
    p.send_line("SELECT SUM(x.v) AS total FROM x;")
        .expect("a history query");
    p.exp_string(r#""values":{"total":3}"#).expect("history");
    p.exp_string("rql> ").expect("prompt");
    p.send_line("\\nodes").expect("nodes");
    p.exp_string("frontier [1000,0]").expect("the frontier");
    p.exp_string("rql> ").expect("prompt");
    p.send_line("\\watch SELECT x.v FROM x WHEN x.v > 5")
        .expect("watch");
    p.exp_string("Ctrl-C stops").expect("watching");
    send(concat!(
        r#"{"node":"n1","hlc":[2000,0],"set":{"x.v":7}}"#,
        "\n",
        r#"{"node":"n2","hlc":[3000,0]}"#,
        "\n",
        r#"{"node":"n1","hlc":[3000,0]}"#,
        "\n"
    ));
    // At HLC 2000 once live, or, if the records beat the watch's start, in the snapshot of
    // the starting frontier (SPEC §5.1): one record either way.
    p.exp_string(r#""values":{"x.v":{"n1":7,"n2":2}}"#)
        .expect("the live record");
    p.send_control('c').expect("Ctrl-C");
    p.exp_string("watch stopped after 1 record")
        .expect("stopped");
    quit(p);
}
