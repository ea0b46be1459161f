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
