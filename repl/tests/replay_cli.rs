//! `rql replay` and `rql explain` end to end: formats, merging, stdin, bad input and exit
//! statuses. Traces come from ../shared/examples.

mod cli_support;

use std::path::PathBuf;

use cli_support::{rql, text};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/examples")
}

fn seed_trace() -> String {
    examples()
        .join("seed-invariant/trace.ndjson")
        .display()
        .to_string()
}

fn temp_dir(name: &str) -> PathBuf {
    cli_support::temp_dir("replay", name)
}

const SEED_Q1: &str =
    "SELECT inv.a, inv.b, inv.c FROM inv WHEN (inv.a + inv.b <= inv.c) LINK SAME_NODE";

fn expected_seed_q1() -> String {
    std::fs::read_to_string(examples().join("seed-invariant/expected_1.jsonl")).unwrap()
}

#[test]
fn json_output_matches_the_shared_example() {
    let out = rql(
        &["replay", &seed_trace(), "-e", SEED_Q1, "--format", "json"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), expected_seed_q1());
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn table_and_csv_formats() {
    let out = rql(
        &["replay", &seed_trace(), "-e", SEED_Q1, "--format", "table"],
        None,
    );
    assert!(out.status.success());
    let t = text(&out.stdout);
    for col in ["seq", "hlc", "node", "inv.a", "inv.b", "inv.c", "witness"] {
        assert!(t.contains(col), "{t}");
    }
    assert!(t.contains("$1=n1 $2=n1 $3=n1"), "{t}");
    assert!(t.trim_end().ends_with("(6 cuts)"), "{t}");
    let out = rql(
        &["replay", &seed_trace(), "-e", SEED_Q1, "--format", "csv"],
        None,
    );
    assert!(out.status.success());
    let csv = text(&out.stdout);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("seq,hlc_physical,hlc_logical,node,inv.a,inv.b,inv.c,witness")
    );
    assert_eq!(
        lines.next(),
        Some("1,1700000000100,0,n1,1,1,5,$1=n1 $2=n1 $3=n1")
    );
}

#[test]
fn merges_one_file_per_node_and_unsorted_files() {
    let dir = temp_dir("merge");
    let trace = std::fs::read_to_string(seed_trace()).unwrap();
    let mut paths = Vec::new();
    for node in ["n1", "n2", "n3", "n4"] {
        let needle = format!("\"node\":\"{node}\"");
        // Each node's file in reverse order: records need not be sorted.
        let lines: Vec<&str> = trace
            .lines()
            .filter(|l| l.contains(&needle))
            .rev()
            .collect();
        let p = dir.join(format!("{node}.ndjson"));
        std::fs::write(&p, lines.join("\n")).unwrap();
        paths.push(p.display().to_string());
    }
    let mut args = vec!["replay"];
    args.extend(paths.iter().map(String::as_str));
    args.extend(["-e", SEED_Q1, "--format", "json"]);
    let out = rql(&args, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), expected_seed_q1());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn reads_the_trace_from_stdin_and_queries_from_a_file() {
    let trace = std::fs::read_to_string(seed_trace()).unwrap();
    let out = rql(
        &["replay", "-", "-e", SEED_Q1, "--format", "json"],
        Some(&trace),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), expected_seed_q1());

    let dir = temp_dir("qfile");
    let q = dir.join("q.rql");
    std::fs::write(
        &q,
        format!("-- two queries\n{SEED_Q1};\nSELECT COUNT(*) AS n FROM inv LIMIT 1;\n"),
    )
    .unwrap();
    let out = rql(
        &[
            "replay",
            &seed_trace(),
            "-f",
            q.to_str().unwrap(),
            "--format",
            "json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got = text(&out.stdout);
    assert!(got.starts_with(&expected_seed_q1()), "{got}");
    assert!(
        got.ends_with("{\"seq\":1,\"hlc\":[1700000000100,0],\"values\":{\"n\":3}}\n"),
        "{got}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_bad_record_stops_with_its_line_and_prints_nothing() {
    let bad = examples()
        .join("errors/bad_trace_1.ndjson")
        .display()
        .to_string();
    let out = rql(
        &[
            "replay",
            &bad,
            "-e",
            "SELECT inv.a FROM inv",
            "--format",
            "json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    assert!(
        err.contains("bad_trace_1.ndjson:2: unknown field \"sett\""),
        "{err}"
    );
    assert!(err.contains("--skip-bad"), "{err}");
}

#[test]
fn skip_bad_skips_and_counts() {
    let bad = examples()
        .join("errors/bad_trace_2.ndjson")
        .display()
        .to_string();
    let out = rql(
        &[
            "replay",
            &bad,
            "-e",
            "SELECT COUNT(*) AS n FROM inv",
            "--format",
            "json",
            "--skip-bad",
            "--stats",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("skipped bad record"), "{err}");
    assert!(err.contains("1 bad records skipped"), "{err}");
    assert!(!out.stdout.is_empty());
}

#[test]
fn query_errors_exit_2_with_nothing_on_stdout() {
    let out = rql(
        &["replay", &seed_trace(), "-e", "SELECT anv.a FROM inv"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    assert!(err.contains("unknown log anv"), "{err}");
    assert!(err.contains("did you mean inv?"), "{err}");
    // A semantic error in a later statement stops the run before any output.
    let out = rql(
        &["replay", &seed_trace(), "-f", "-"],
        Some("SELECT inv.a FROM inv; SELECT inv.a FROM inv WHEN MAXX(inv.a) > 1;"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn the_enumeration_bound_is_an_error_naming_the_bound() {
    let out = rql(
        &[
            "replay",
            &seed_trace(),
            "-e",
            "SELECT inv.a FROM inv WHEN inv.a * inv.b > inv.c",
            "--max-bindings",
            "10",
            "--format",
            "json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("enumeration bound of 10"), "{err}");
    assert!(err.contains("--max-bindings"), "{err}");
}

#[test]
fn stats_go_to_stderr() {
    let out = rql(
        &[
            "replay",
            &seed_trace(),
            "-e",
            SEED_Q1,
            "--format",
            "json",
            "--stats",
        ],
        None,
    );
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), expected_seed_q1());
    let err = text(&out.stderr);
    assert!(
        err.contains("12 steps scanned, 11 candidate cuts, 6 emitted"),
        "{err}"
    );
    assert!(err.contains("cuts/s"), "{err}");
    // Evaluation warnings are reported even without --stats.
    let out = rql(
        &[
            "replay",
            &seed_trace(),
            "-e",
            "SELECT inv.a FROM inv WHEN inv.a / 0 > 1",
            "--format",
            "json",
        ],
        None,
    );
    assert!(out.status.success());
    assert!(
        text(&out.stderr).contains("division_by_zero"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn explain_shows_placeholders_groups_and_strategies() {
    let out = rql(
        &[
            "explain",
            "-e",
            "SELECT inv.a FROM inv WHEN (inv.a + inv.b <= inv.c) AND NODE($1) = NODE($3)",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(t.contains("$1 = inv.a  free"), "{t}");
    assert!(t.contains("$3 = inv.c  free"), "{t}");
    assert!(t.contains("O(N^3)"), "{t}");
    assert!(t.contains("enumeration bound"), "{t}");
    let out = rql(
        &[
            "explain",
            "-e",
            "SELECT inv.a FROM inv WHEN (inv.a + inv.b <= inv.c) LINK SAME_NODE",
        ],
        None,
    );
    let t = text(&out.stdout);
    assert!(t.contains("G1 SAME_NODE: {$1, $2, $3}"), "{t}");
    // EXPLAIN as a statement prints the plan instead of running it.
    let out = rql(
        &["replay", &seed_trace(), "-e", &format!("EXPLAIN {SEED_Q1}")],
        None,
    );
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("link groups:"));
}

/// `--stream` (sorted inputs, memory ∝ cut state) prints exactly what the in-memory replay
/// prints, for one file and for the trace split into one file per node; with `--stats` both
/// count the same records and cuts.
#[test]
fn streaming_prints_what_the_in_memory_replay_prints() {
    let dir = temp_dir("stream");
    let whole = std::fs::read_to_string(seed_trace()).unwrap();
    let mut per_node: std::collections::BTreeMap<String, String> = Default::default();
    let mut sorted: Vec<(u64, u64, usize, &str)> = Vec::new();
    for (i, line) in whole.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let hlc = &v["hlc"];
        sorted.push((hlc[0].as_u64().unwrap(), hlc[1].as_u64().unwrap(), i, line));
    }
    sorted.sort();
    for (_, _, _, line) in &sorted {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let node = v["node"].as_str().unwrap().to_string();
        per_node
            .entry(node)
            .or_default()
            .push_str(&format!("{line}\n"));
    }
    let mut files = Vec::new();
    for (node, text) in &per_node {
        let path = dir.join(format!("{node}.ndjson"));
        std::fs::write(&path, text).unwrap();
        files.push(path.display().to_string());
    }
    let in_memory = rql(
        &["replay", &seed_trace(), "-e", SEED_Q1, "--format", "json"],
        None,
    );
    assert!(in_memory.status.success());
    let mut args = vec!["replay", "--stream"];
    args.extend(files.iter().map(String::as_str));
    args.extend(["-e", SEED_Q1, "--format", "json", "--stats"]);
    let streamed = rql(&args, None);
    assert!(streamed.status.success(), "{}", text(&streamed.stderr));
    assert_eq!(text(&streamed.stdout), text(&in_memory.stdout));
    assert_eq!(text(&streamed.stdout), expected_seed_q1());
    let err = text(&streamed.stderr);
    assert!(err.contains("stats: evaluation"), "{err}");
}

#[test]
fn streaming_refuses_stdin_and_unsorted_input_with_a_hint() {
    let out = rql(&["replay", "--stream", "-", "-e", SEED_Q1], Some(""));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("needs files"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());

    let dir = temp_dir("unsorted");
    let path = dir.join("t.ndjson");
    std::fs::write(
        &path,
        "{\"node\":\"n1\",\"hlc\":[5,0],\"set\":{\"inv.a\":1}}\n{\"node\":\"n1\",\"hlc\":[2,0],\"set\":{\"inv.a\":2}}\n",
    )
    .unwrap();
    let p = path.display().to_string();
    let out = rql(
        &["replay", "--stream", &p, "-e", "SELECT inv.a FROM inv"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains(":2: not in HLC order"), "{err}");
    assert!(err.contains("without --stream"), "{err}");
    assert!(out.stdout.is_empty());
    // Without --stream the same file is sorted in memory.
    let out = rql(
        &[
            "replay",
            &p,
            "-e",
            "SELECT inv.a FROM inv",
            "--format",
            "json",
        ],
        None,
    );
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).lines().count(), 2);
}

/// A bad record stops a streaming replay before anything is printed (the first pass
/// validates), and `--skip-bad` skips it in both passes.
#[test]
fn streaming_validates_before_printing() {
    let dir = temp_dir("stream-bad");
    let path = dir.join("t.ndjson");
    std::fs::write(
        &path,
        "{\"node\":\"n1\",\"hlc\":[1,0],\"set\":{\"inv.a\":1}}\n\
         {\"node\":\"n1\",\"hlc\":[2,0],\"set\":{\"inv.a\":2},\"oops\":1}\n\
         {\"node\":\"n1\",\"hlc\":[3,0],\"add\":{\"inv.a\":[1]}}\n\
         {\"node\":\"n1\",\"hlc\":[4,0],\"set\":{\"inv.a\":4}}\n",
    )
    .unwrap();
    let p = path.display().to_string();
    let q = "SELECT inv.a FROM inv";
    let out = rql(&["replay", "--stream", &p, "-e", q], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("t.ndjson:2:"),
        "{}",
        text(&out.stderr)
    );
    let out = rql(
        &[
            "replay",
            "--stream",
            &p,
            "-e",
            q,
            "--skip-bad",
            "--format",
            "json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[1].contains("\"n1\":4"), "{lines:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("t.ndjson:2:") && err.contains("t.ndjson:3:"),
        "{err}"
    );
    let in_memory = rql(
        &["replay", &p, "-e", q, "--skip-bad", "--format", "json"],
        None,
    );
    assert_eq!(text(&in_memory.stdout), text(&out.stdout));
}
