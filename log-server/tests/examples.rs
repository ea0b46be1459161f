//! Reads the shared example traces (`../shared/examples`, beside the repository): every good
//! trace must load, every `errors/bad_trace_K.ndjson` must fail on line 2 with the reason its
//! `.err` file gives.

use std::fs;
use std::path::{Path, PathBuf};

use log_server::{parse_record, read_trace_file, ReadOptions, TraceErrorKind};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/examples");

fn good_traces() -> Vec<PathBuf> {
    let mut traces: Vec<PathBuf> = fs::read_dir(EXAMPLES)
        .expect("the shared examples directory")
        .filter_map(|entry| entry.ok().map(|e| e.path().join("trace.ndjson")))
        .filter(|p| p.is_file())
        .collect();
    traces.sort();
    traces
}

#[test]
fn every_example_trace_reads() {
    let traces = good_traces();
    assert!(traces.len() >= 19, "found only {traces:?}");
    for path in traces {
        let trace = read_trace_file(&path, &ReadOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!trace.records.is_empty(), "{}", path.display());
        assert_eq!(trace.skipped, 0);
        assert!(trace.records.windows(2).all(|w| w[0].1.hlc <= w[1].1.hlc));
    }
}

#[test]
fn example_records_survive_a_canonical_rewrite() {
    for path in good_traces() {
        let trace = read_trace_file(&path, &ReadOptions::default()).unwrap();
        for (line, rec) in &trace.records {
            let text = rec.to_json_line();
            assert_eq!(
                parse_record(text.as_bytes()).as_ref(),
                Ok(rec),
                "{}:{line}: {text}",
                path.display()
            );
        }
    }
}

#[test]
fn example_traces_are_read_into_stable_hlc_order() {
    // gen-* traces hold equal-HLC records on several nodes and records out of file order.
    let mut out_of_order = 0;
    for path in good_traces() {
        let text = fs::read_to_string(&path).unwrap();
        let trace = read_trace_file(&path, &ReadOptions::default()).unwrap();
        let lines: Vec<usize> = trace.records.iter().map(|(l, _)| *l).collect();
        if lines.windows(2).any(|w| w[0] > w[1]) {
            out_of_order += 1;
        }
        // Equal HLCs keep file order.
        assert!(trace
            .records
            .windows(2)
            .all(|w| w[0].1.hlc < w[1].1.hlc || w[0].0 < w[1].0));
        assert_eq!(
            lines.len(),
            text.lines().filter(|l| !l.trim().is_empty()).count()
        );
    }
    assert!(out_of_order > 0, "no example trace was out of HLC order");
}

fn bad_trace(k: usize) -> (PathBuf, String) {
    let dir = Path::new(EXAMPLES).join("errors");
    let err = fs::read_to_string(dir.join(format!("bad_trace_{k}.err"))).unwrap();
    (dir.join(format!("bad_trace_{k}.ndjson")), err)
}

#[test]
fn bad_traces_fail_on_line_2_for_the_documented_reason() {
    let cases: [(usize, &[&str]); 5] = [
        (1, &["unknown field \"sett\""]),
        (2, &["\"add\" on a non-set value of inv.a"]),
        (3, &["hlc counter 70000 out of range 0..65535"]),
        (4, &["bad variable name \"inv\""]),
        (5, &["non-finite number NaN"]),
    ];
    for (k, words) in cases {
        let (path, expected) = bad_trace(k);
        assert!(expected.contains("line 2:"), "{expected}");
        let e = read_trace_file(&path, &ReadOptions::default())
            .expect_err("a bad trace must be rejected");
        assert_eq!(e.line, 2, "bad_trace_{k}: {e}");
        assert_eq!(e.kind, TraceErrorKind::Record);
        assert!(
            e.to_string()
                .starts_with(&format!("{}:2: ", path.display())),
            "{e}"
        );
        for w in words {
            assert!(expected.contains(w), "bad_trace_{k}.err lacks {w:?}");
            assert!(e.reason.contains(w), "bad_trace_{k}: {e} lacks {w:?}");
        }
    }
}

#[test]
fn bad_traces_can_be_skipped() {
    for k in 1..=5 {
        let (path, _) = bad_trace(k);
        let trace = read_trace_file(&path, &ReadOptions { skip_bad: true }).unwrap();
        assert_eq!(trace.skipped, 1, "bad_trace_{k}");
        assert_eq!(trace.records.len(), 1);
        assert_eq!(trace.records[0].0, 1);
        assert_eq!(trace.errors.len(), 1);
        assert_eq!(trace.errors[0].line, 2);
    }
}
