//! Conformance: every query of every folder of ../shared/examples, run over the folder's
//! trace, gives the expected JSON Lines under the rule of cmp.py; every expected error is an
//! error; every bad trace is rejected naming line 2.

use rql_tests::compare::same_output;
use rql_tests::{example_queries, examples_dir, read_trace_records, run_query};

#[test]
fn every_example_gives_the_expected_output() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for ex in example_queries() {
        let dir = examples_dir().join(&ex.folder);
        let trace = dir.join("trace.ndjson");
        let records =
            read_trace_records(&trace).unwrap_or_else(|e| panic!("{}: {e}", trace.display()));
        for (k, query) in &ex.queries {
            let expected = std::fs::read_to_string(dir.join(format!("expected_{k}.jsonl"))).ok();
            let must_fail = dir.join(format!("expected_{k}.err")).exists();
            let what = format!("{} query {k}: {query}", ex.folder);
            match (run_query(query, &records), expected, must_fail) {
                (Ok(lines), Some(exp), _) => {
                    if let Err(diff) = same_output(&exp, &lines) {
                        failures.push(format!("{what}\n{diff}"));
                    }
                }
                (Err(e), Some(_), _) => failures.push(format!("{what}\nfailed: {e}")),
                (Ok(lines), None, true) => failures.push(format!(
                    "{what}\nshould be rejected, gave {} lines",
                    lines.len()
                )),
                (Err(_), None, true) => {}
                (_, None, false) => failures.push(format!("{what}\nno expected file")),
            }
            checked += 1;
        }
    }
    assert!(checked >= 150, "only {checked} queries checked");
    assert!(
        failures.is_empty(),
        "{} of {checked} differ:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_bad_trace_is_rejected_at_its_line() {
    let dir = examples_dir().join("errors");
    for k in 1..=5 {
        let path = dir.join(format!("bad_trace_{k}.ndjson"));
        let err = read_trace_records(&path).expect_err(&path.display().to_string());
        assert!(err.contains(":2: "), "{err}");
    }
}

/// The streaming driver (`rql replay --stream`) gives every example's output too, with the
/// trace split into one sorted input per node and the output written as the CLI writes it.
#[test]
fn every_example_streams_like_it_replays() {
    let mut checked = 0;
    for ex in example_queries() {
        let trace = examples_dir().join(&ex.folder).join("trace.ndjson");
        let records =
            read_trace_records(&trace).unwrap_or_else(|e| panic!("{}: {e}", trace.display()));
        let refs: Vec<&log_server::Record> = records.iter().collect();
        let catalog = rql_exec::catalog_of(refs.iter().copied());
        let inputs = rql_tests::inputs_per_node(&records);
        for (k, query) in &ex.queries {
            let Ok(stmt) = rql_parser::parse_single(query) else {
                continue;
            };
            let Ok(plan) = rql_planner::plan_statement(&stmt, query, &catalog) else {
                continue;
            };
            let opts = rql_exec::ExecOptions::default();
            let Ok(expected) = run_query(query, &records) else {
                continue;
            };
            // Written as the CLI writes JSON (straight from the engine's state), compared with
            // the serialized records.
            let streamed = rql_tests::run_streaming_json(&plan, &inputs, opts)
                .unwrap_or_else(|e| panic!("{} query {k}: {e}", ex.folder));
            assert_eq!(streamed, expected, "{} query {k}: {query}", ex.folder);
            checked += 1;
        }
    }
    assert!(checked >= 100, "only {checked} queries checked");
}
