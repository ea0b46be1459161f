//! `rql repl` (and `rql` alone) with piped input: statements run in order, results on stdout
//! exactly (no prompt, no colour), errors on stderr, and the exit status says whether any
//! statement failed (2: an error in a query or command; 1: a run, trace or server failed).

mod cli_support;

use std::path::PathBuf;

use cli_support::{rql, temp_dir, text};

/// Two nodes; one value longer than a table cell; a set; a heartbeat last.
const TRACE: &str = r#"{"node":"n1","hlc":[1000,0],"set":{"app.level":1,"app.name":"short"}}
{"node":"n2","hlc":[1000,0],"set":{"app.level":2,"app.name":"a value much longer than forty characters, cut short"}}
{"node":"n1","hlc":[2000,0],"set":{"app.level":3},"add":{"app.tags":["x"]}}
{"node":"n2","hlc":[3000,0]}
"#;

fn trace(name: &str) -> PathBuf {
    let path = temp_dir("shell-piped", name).join("app.ndjson");
    std::fs::write(&path, TRACE).expect("write the trace");
    path
}

/// `rql repl --trace TRACE` with `input` on stdin: (stdout, stderr, exit code).
fn shell(name: &str, extra: &[&str], input: &str) -> (String, String, i32) {
    let path = trace(name);
    let mut args = vec!["repl", "--trace", path.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    let out = rql(&args, Some(input));
    (
        text(&out.stdout),
        text(&out.stderr),
        out.status.code().unwrap_or(-1),
    )
}

#[test]
fn statements_run_in_order_and_print_only_results() {
    let input = "-- counts first
SELECT COUNT(*) AS n FROM app;
\\format table
SELECT app.name, app.level FROM app
  WHEN app.level > 2;
\\format csv
SELECT app.level FROM app LIMIT 1; SELECT MAX(app.level) AS top FROM app
";
    let (stdout, stderr, code) = shell("order", &[], input);
    assert_eq!(stderr, "");
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        r#"{"seq":1,"hlc":[1000,0],"values":{"n":2}}
┌─────┬──────────┬──────┬──────────────────────────────────────────┬───────────┬─────────┐
│ seq ┆ hlc      ┆ node ┆ app.name                                 ┆ app.level ┆ witness │
╞═════╪══════════╪══════╪══════════════════════════════════════════╪═══════════╪═════════╡
│ 2   ┆ [2000,0] ┆ n1   ┆ short                                    ┆ 3         ┆ $1=n1   │
│ 2   ┆ [2000,0] ┆ n2   ┆ a value much longer than forty characte… ┆ 2         ┆ $1=n1   │
└─────┴──────────┴──────┴──────────────────────────────────────────┴───────────┴─────────┘
(1 cut)
seq,hlc_physical,hlc_logical,node,app.level
1,1000,0,n1,1
1,1000,0,n2,2
seq,hlc_physical,hlc_logical,node,top
1,1000,0,,2
2,2000,0,,3
"#
    );
}

#[test]
fn a_bad_statement_is_reported_with_its_line_and_the_rest_still_run() {
    let input = "SELECT COUNT(*) AS before FROM app LIMIT 1;
SELECT app.level FROM app
  WHEN app.level > LIMIT 1;
\\formt json
SELECT COUNT(*) AS after FROM app LIMIT 1;
";
    let (stdout, stderr, code) = shell("errors", &[], input);
    assert_eq!(
        stdout,
        r#"{"seq":1,"hlc":[1000,0],"values":{"before":2}}
{"seq":1,"hlc":[1000,0],"values":{"after":2}}
"#
    );
    assert_eq!(
        stderr,
        "error: expected an expression, found 'LIMIT'
 --> <stdin>:3:20
  |
3 |   WHEN app.level > LIMIT 1;
  |                    ^^^^^

error: unknown command \\formt
hint: did you mean \\format? (\\help lists the commands)
"
    );
    assert_eq!(code, 2, "an error in a statement is exit status 2");
}

#[test]
fn a_failed_run_is_exit_status_1_and_the_session_goes_on() {
    // The enumeration bound stops a query (a run failure); a missing trace keeps the open one.
    let input = "SELECT COUNT(*) FROM app WHEN app.level * app.level = 99;
\\open /nonexistent/trace.ndjson
SELECT COUNT(*) AS still FROM app LIMIT 1;
SELECT nosuch.x FROM app;
";
    let (stdout, stderr, code) = shell("run", &["--max-bindings", "1"], input);
    assert_eq!(
        stdout,
        "{\"seq\":1,\"hlc\":[1000,0],\"values\":{\"still\":2}}\n"
    );
    assert!(
        stderr.contains("more than the enumeration bound of 1"),
        "{stderr}"
    );
    assert!(stderr.contains("unknown log"), "{stderr}");
    assert!(
        stderr.contains("error: cannot open trace /nonexistent/trace.ndjson")
            && stderr.contains("note: the source that was open stays open"),
        "{stderr}"
    );
    assert_eq!(code, 1, "a failed run wins over a query error: {stderr}");
}

#[test]
fn logs_and_nodes_describe_the_open_trace() {
    let (stdout, stderr, code) = shell("describe", &[], "\\logs\n\\nodes\n");
    assert_eq!((stderr.as_str(), code), ("", 0));
    assert_eq!(
        stdout,
        "┌─────┬───────┬────────┬─────────┬───────┐
│ log ┆ key   ┆ kinds  ┆ records ┆ nodes │
╞═════╪═══════╪════════╪═════════╪═══════╡
│ app ┆ level ┆ int    ┆       3 ┆     2 │
│ app ┆ name  ┆ string ┆       2 ┆     2 │
│ app ┆ tags  ┆ set    ┆       1 ┆     1 │
└─────┴───────┴────────┴─────────┴───────┘
(1 log; 2 nodes, 3 variables, 4 records, HLC [1000,0] to [3000,0])
┌──────┬───────────┬──────────┬─────────┐
│ node ┆ first hlc ┆ last hlc ┆ records │
╞══════╪═══════════╪══════════╪═════════╡
│ n1   ┆ [1000,0]  ┆ [2000,0] ┆       2 │
│ n2   ┆ [1000,0]  ┆ [3000,0] ┆       2 │
└──────┴───────────┴──────────┴─────────┘
(2 nodes)
"
    );
}

#[test]
fn explain_timing_and_the_last_statement_without_semicolon() {
    let path = trace("explain");
    let path = path.to_str().expect("utf-8 path");
    let query = "SELECT app.level FROM app WHEN (app.level > 1) LINK SAME_NODE";
    let expected = rql(&["explain", "-e", query, path], None);
    assert!(expected.status.success());
    // `\explain` prints what `rql explain` prints; `EXPLAIN ...;` too.
    let input = format!("\\explain {query}\nEXPLAIN {query};\n");
    let (stdout, stderr, code) = shell("explain", &[], &input);
    assert_eq!((stderr.as_str(), code), ("", 0));
    let plan = text(&expected.stdout);
    let with_explain = plan.replace("query: SELECT", "query: EXPLAIN SELECT");
    assert_eq!(stdout, plan + &with_explain);
    // With \timing the table's footer gains the time and throughput; the last statement
    // needs no `;`.
    let (stdout, stderr, code) = shell(
        "timing",
        &["--format", "table"],
        "\\timing on\nSELECT COUNT(*) AS n FROM app LIMIT 1",
    );
    assert_eq!((stderr.as_str(), code), ("", 0));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[lines.len() - 2], "(1 cut)", "{stdout}");
    let time = lines[lines.len() - 1];
    assert!(
        time.starts_with("Time: ") && time.contains(" ms (") && time.ends_with(" cuts/s)"),
        "{stdout}"
    );
}

#[test]
fn bare_rql_reads_statements_and_says_how_to_open_a_source() {
    let out = rql(
        &[],
        Some("SELECT x.y FROM x;\nEXPLAIN SELECT x.y FROM x;\n"),
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        stderr,
        "error: no source is open\nhint: \\open FILE... reads trace files (NDJSON); \\connect \
         URL reads a log server\n"
    );
    // EXPLAIN needs no source.
    let plan = rql(&["explain", "-e", "EXPLAIN SELECT x.y FROM x"], None);
    assert_eq!(stdout, text(&plan.stdout));
    assert_eq!(out.status.code(), Some(2));
}
