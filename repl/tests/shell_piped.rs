//! `rql repl` (and `rql` alone) with piped input: statements run in order, results on stdout
//! exactly (no prompt, no colour), errors on stderr, and the exit status says whether any
//! statement failed (2: an error in a query or command; 1: a run, trace or server failed).

mod cli_support;
mod serve_support;

use std::path::PathBuf;

use cli_support::{rql, temp_dir, text};
use serve_support::{http_client, post, Server};

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

#[test]
fn sql_reads_the_trace_and_the_last_query_s_output() {
    // `results` is empty before any query; `\sql` may span lines up to its `;` (not one in a
    // string or comment), and the last one needs none; the format is the shell's.
    let input = "\\sql SELECT count(*) AS n FROM results;
SELECT app.level FROM app WHEN app.level > 1;
\\sql SELECT node, count(*) AS n FROM results GROUP BY node ORDER BY node;
\\format table
\\sql SELECT count(*) FROM trace;
\\sql SELECT rec, idx, node, hlc, op, key, v_int, v_json, pt
  FROM trace -- n2's records: ';' in a comment
  WHERE node = 'n2' ORDER BY rec, idx;
SELECT app.name FROM app LIMIT 1;
\\format csv
\\sql SELECT seq, hlc, node, variable, value FROM results ORDER BY node
";
    let (stdout, stderr, code) = shell("sql", &[], input);
    assert_eq!((stderr.as_str(), code), ("", 0));
    // The table cuts the long value short; `results` keeps it whole.
    assert_eq!(
        stdout,
        r#"{"n":0}
{"seq":1,"hlc":[1000,0],"values":{"app.level":{"n1":1,"n2":2}},"witness":{"$1":"n2"}}
{"seq":2,"hlc":[2000,0],"values":{"app.level":{"n1":3,"n2":2}},"witness":{"$1":"n1"}}
{"node":"n1","n":2}
{"node":"n2","n":2}
+----------+
| count(*) |
+----------+
| 7        |
+----------+
+-----+-----+------+-----------+-----------+-----------+-------+--------+----+
| rec | idx | node | hlc       | op        | key       | v_int | v_json | pt |
+-----+-----+------+-----------+-----------+-----------+-------+--------+----+
| 1   | 0   | n2   | 65536000  | set       | app.level | 2     |        |    |
| 1   | 1   | n2   | 65536000  | set       | app.name  |       |        |    |
| 3   | 0   | n2   | 196608000 | heartbeat |           |       |        |    |
+-----+-----+------+-----------+-----------+-----------+-------+--------+----+
┌─────┬──────────┬──────┬──────────────────────────────────────────┐
│ seq ┆ hlc      ┆ node ┆ app.name                                 │
╞═════╪══════════╪══════╪══════════════════════════════════════════╡
│ 1   ┆ [1000,0] ┆ n1   ┆ short                                    │
│ 1   ┆ [1000,0] ┆ n2   ┆ a value much longer than forty characte… │
└─────┴──────────┴──────┴──────────────────────────────────────────┘
(1 cut)
seq,hlc,node,variable,value
1,65536000,n1,app.name,"""short"""
1,65536000,n2,app.name,"""a value much longer than forty characters, cut short"""
"#
    );
}

#[test]
fn sql_over_a_shared_example_counts_violations_per_node() {
    let trace = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/examples/seed-invariant/trace.ndjson"
    );
    let input = "SELECT inv.a, inv.b, inv.c FROM inv WHEN (inv.a + inv.b <= inv.c) LINK SAME_NODE;
\\format table
\\sql SELECT node, count(*) AS violations
  FROM (SELECT seq, node,
               max(CASE WHEN variable = 'inv.a' THEN CAST(value AS BIGINT) END) AS a,
               max(CASE WHEN variable = 'inv.b' THEN CAST(value AS BIGINT) END) AS b,
               max(CASE WHEN variable = 'inv.c' THEN CAST(value AS BIGINT) END) AS c
        FROM results GROUP BY seq, node)
  WHERE a + b <= c
  GROUP BY node ORDER BY node;
\\sql SELECT node, count(*) AS changes, count(DISTINCT rec) AS records FROM trace
  GROUP BY node ORDER BY node;
";
    let out = rql(&["repl", "--trace", trace], Some(input));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!((stderr.as_str(), out.status.code()), ("", Some(0)));
    let sql = stdout
        .split_once("+------+")
        .map(|(_, tables)| format!("+------+{tables}"))
        .unwrap_or_default();
    assert_eq!(
        sql,
        "+------+------------+
| node | violations |
+------+------------+
| n1   | 6          |
| n2   | 3          |
| n3   | 3          |
+------+------------+
+------+---------+---------+
| node | changes | records |
+------+---------+---------+
| n1   | 21      | 8       |
| n2   | 20      | 8       |
| n3   | 21      | 9       |
| n4   | 3       | 1       |
+------+---------+---------+
"
    );
}

#[test]
fn a_bad_sql_statement_is_exit_status_2_and_the_session_goes_on() {
    let input = "\\sql SELEC 1;
\\sql SELECT nope FROM trace;
\\sql SELECT * FROM nosuch;
\\sql
;
\\sql SELECT 1 AS one;
";
    let (stdout, stderr, code) = shell("sql-errors", &[], input);
    assert_eq!(stdout, "{\"one\":1}\n");
    assert_eq!(
        stderr,
        "error: SQL: sql parser error: Expected: an SQL statement, found: SELEC at Line: 1, \
         Column: 1
error: SQL: Schema error: No field named nope. Did you mean 'trace.node'?
Valid fields are trace.rec, trace.idx, trace.node, trace.hlc, trace.op, trace.key, \
         trace.v_int, trace.v_float, trace.v_str, trace.v_bool, trace.v_json, trace.pt.
error: SQL: Error during planning: table 'datafusion.public.nosuch' not found
hint: the tables are trace (the source, one row per change) and results (the output of the \
         last query)
error: \\sql needs an SQL statement, e.g. \\sql SELECT node, count(*) FROM results GROUP BY \
         node;
"
    );
    assert_eq!(code, 2, "an SQL error is an error in a command");
    // Without a source there is no table trace.
    let out = rql(&["repl"], Some("\\sql SELECT count(*) FROM results;\n"));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        "error: \\sql needs a source for its table trace, and no source is open\nhint: \\open \
         FILE... reads trace files (NDJSON); \\connect URL reads a log server\n"
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn sql_reads_a_log_server_s_history_after_connect() {
    let dir = temp_dir("shell-piped", "sql-connect");
    let data = dir.join("data");
    let _ = std::fs::remove_dir_all(&data);
    let server = Server::start(&data, &[]);
    let reply = post(&http_client(), &server, TRACE.to_string());
    assert_eq!(reply.status, 200, "{}", reply.text);
    let input = "SELECT COUNT(*) AS n FROM app WHEN app.level >= 2;
\\sql SELECT r.seq, r.value, t.node, t.op, t.v_int FROM results r
  JOIN trace t ON t.hlc = r.hlc AND t.key = 'app.level' ORDER BY r.seq, t.node;
";
    let out = rql(
        &["repl", "--server", &server.base, "--format", "csv"],
        Some(input),
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stdout,
        "seq,hlc_physical,hlc_logical,node,n,witness
1,1000,0,,2,$1=n2
2,2000,0,,2,$1=n1
seq,value,node,op,v_int
1,2,n1,set,1
1,2,n2,set,2
2,2,n1,set,3
"
    );
}
