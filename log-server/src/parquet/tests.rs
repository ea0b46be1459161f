//! Parquet traces against the NDJSON model: round trips, the columnar reader against
//! `Columnar::from_records`, pushed-down filters, files from other writers (unsorted, no
//! footer, other column types) and the errors for bad rows.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int32Array, StringArray, UInt32Array, UInt64Array};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;

use super::*;
use crate::columnar::{describe, Columnar};
use crate::hlc::Hlc;
use crate::ndjson::{read_trace, ReadOptions};
use crate::record::Record;

fn records(text: &str) -> Vec<Record> {
    read_trace(std::io::Cursor::new(text), &ReadOptions::default())
        .unwrap()
        .records
        .into_iter()
        .map(|(_, r)| r)
        .collect()
}

/// Every kind of change, a `set` to null, leaves, heartbeats, `pt` on some records, records
/// out of HLC order (also used by the writer's tests).
pub(super) const TRACE: &str = r#"
{"node":"n2","hlc":[5,0],"set":{"inv.a":1,"inv.f":2.5,"inv.s":"x","inv.b":true,"inv.m":[1,"a"],"inv.st":{"f":1,"g":[2]}},"pt":7}
{"node":"n1","hlc":[5,0],"set":{"inv.a":null,"aux.x":3}}
{"node":"n1","hlc":[6,1],"unset":["inv.a"],"set":{"inv.a":4},"remove":{"inv.m":[1]},"add":{"inv.m":["b"]},"leave":true}
{"node":"n3","hlc":[6,1]}
{"node":"n3","hlc":[2,0],"pt":3}
{"node":"n\"q","hlc":[9,65535],"set":{"aux.y":-1.0e-300},"leave":true}
"#;

fn write(dir: &Path, name: &str, recs: &[Record]) -> PathBuf {
    let path = dir.join(name);
    let file = std::fs::File::create(&path).unwrap();
    write_parquet(recs.iter(), file).unwrap();
    path
}

#[test]
fn records_round_trip_and_columnar_matches_from_records() {
    let dir = tempfile::tempdir().unwrap();
    let recs = records(TRACE);
    let path = write(dir.path(), "t.parquet", &recs);
    let opts = ParquetOptions::default();
    let back = read_parquet_records(std::slice::from_ref(&path), &opts).unwrap();
    assert_eq!(back, recs);
    let loaded =
        read_parquet_columnar(std::slice::from_ref(&path), &PushDown::default(), &opts).unwrap();
    assert!(!loaded.sorted_by_datafusion);
    let refs: Vec<&Record> = recs.iter().collect();
    assert_eq!(
        describe(&loaded.cols),
        describe(&Columnar::from_records(&refs))
    );
    assert_eq!(loaded.records, recs.len());
    let summary = trace_summary(&[path], &opts).unwrap();
    assert_eq!(summary.max_hlc, Hlc::new(9, 65535).ok());
    assert_eq!(
        summary.keys,
        ["aux.x", "aux.y", "inv.a", "inv.b", "inv.f", "inv.m", "inv.s", "inv.st"]
    );
}

#[test]
fn pushed_down_filters_keep_leaves_and_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let recs = records(TRACE);
    let path = write(dir.path(), "t.parquet", &recs);
    let push = PushDown {
        until: Hlc::new(6, 1).ok(),
        keys: Some(vec!["inv.a".into()]),
        nodes: None,
    };
    let loaded = read_parquet_columnar(&[path], &push, &ParquetOptions::default()).unwrap();
    let got = describe(&loaded.cols);
    assert_eq!(
        got,
        [
            r#"nodes ["n1", "n2", "n3"]"#,
            r#"vars ["inv.a"]"#,
            "[2,0] n3 leave=false heartbeat=true []",
            "[5,0] n2 leave=false heartbeat=false [\"set inv.a Int(1)\"]",
            "[5,0] n1 leave=false heartbeat=false [\"unset inv.a\"]",
            "[6,1] n1 leave=true heartbeat=false [\"unset inv.a\", \"set inv.a Int(4)\"]",
            "[6,1] n3 leave=false heartbeat=true []",
        ]
    );
}

/// Writes one batch of the given columns with a plain Arrow writer (no `rql.*` footer), as
/// another tool would.
fn raw(dir: &Path, name: &str, cols: Vec<(&str, ArrayRef)>) -> PathBuf {
    let fields: Vec<Field> = cols
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batch =
        RecordBatch::try_new(schema.clone(), cols.into_iter().map(|(_, a)| a).collect()).unwrap();
    let path = dir.join(name);
    let mut w = ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    path
}

fn strs(v: &[Option<&str>]) -> ArrayRef {
    Arc::new(StringArray::from(v.to_vec()))
}

/// A trace file from another tool: rows in reverse order, `rec`/`idx` as other integer types,
/// no `pt` column, value columns only where needed (`Null`-typed elsewhere is not needed:
/// missing value columns are an error, so all are present).
fn other_tool(
    dir: &Path,
    ops: &[&str],
    keys: &[Option<&str>],
    ints: &[Option<i32>],
    json: &[Option<&str>],
) -> PathBuf {
    let n = ops.len();
    let hlc: Vec<u64> = (0..n as u64).rev().map(|i| (i + 1) << 16).collect();
    let none: Vec<Option<&str>> = vec![None; n];
    raw(
        dir,
        "other.parquet",
        vec![
            (
                "rec",
                Arc::new(Int32Array::from((0..n as i32).rev().collect::<Vec<_>>())) as ArrayRef,
            ),
            ("idx", Arc::new(UInt64Array::from(vec![0u64; n]))),
            ("node", strs(&vec![Some("n1"); n])),
            ("hlc", Arc::new(UInt64Array::from(hlc))),
            (
                "op",
                strs(&ops.iter().map(|o| Some(*o)).collect::<Vec<_>>()),
            ),
            ("key", strs(keys)),
            ("v_int", Arc::new(Int32Array::from(ints.to_vec()))),
            (
                "v_float",
                Arc::new(datafusion::arrow::array::Float32Array::from(vec![None; n])),
            ),
            ("v_str", strs(&none)),
            (
                "v_bool",
                Arc::new(datafusion::arrow::array::BooleanArray::from(vec![None; n])),
            ),
            ("v_json", strs(json)),
        ],
    )
}

#[test]
fn files_from_other_tools_are_sorted_and_cast() {
    let dir = tempfile::tempdir().unwrap();
    // Reverse order: the last row is the first record.
    let path = other_tool(
        dir.path(),
        &["heartbeat", "add", "set"],
        &[None, Some("a.s"), Some("a.x")],
        &[None, None, Some(3)],
        &[None, Some("[1]"), None],
    );
    let opts = ParquetOptions {
        memory_limit: Some(64 << 20),
        temp_dir: None,
    };
    let recs = read_parquet_records(std::slice::from_ref(&path), &opts).unwrap();
    let lines: Vec<String> = recs.iter().map(Record::to_json_line).collect();
    assert_eq!(
        lines,
        [
            r#"{"node":"n1","hlc":[1,0],"set":{"a.x":3}}"#,
            r#"{"node":"n1","hlc":[2,0],"add":{"a.s":[1]}}"#,
            r#"{"node":"n1","hlc":[3,0]}"#,
        ]
    );
    let loaded =
        read_parquet_columnar(std::slice::from_ref(&path), &PushDown::default(), &opts).unwrap();
    assert!(loaded.sorted_by_datafusion);
    // No footer: the summary comes from a scan.
    let summary = trace_summary(&[path], &opts).unwrap();
    assert_eq!(summary.keys, ["a.s", "a.x"]);
    assert_eq!(summary.max_hlc, Hlc::new(3, 0).ok());
}

fn error_of(path: PathBuf) -> String {
    read_parquet_columnar(&[path], &PushDown::default(), &ParquetOptions::default())
        .map(|_| ())
        .unwrap_err()
}

#[test]
fn bad_rows_are_errors_naming_file_record_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let e = error_of(other_tool(
        d,
        &["sett"],
        &[Some("a.x")],
        &[Some(1)],
        &[None],
    ));
    assert!(
        e.contains("other.parquet: record 0 (node \"n1\", hlc [1,0]): unknown op \"sett\""),
        "{e}"
    );
    assert!(e.contains("hint:"), "{e}");
    let e = error_of(other_tool(d, &["set"], &[Some("ax")], &[Some(1)], &[None]));
    assert!(e.contains("bad variable name \"ax\""), "{e}");
    let e = error_of(other_tool(
        d,
        &["set"],
        &[Some("a.x")],
        &[Some(1)],
        &[Some("2")],
    ));
    assert!(e.contains("values in v_int, v_json"), "{e}");
    let e = error_of(other_tool(
        d,
        &["add"],
        &[Some("a.x")],
        &[None],
        &[Some("{\"f\":1}")],
    ));
    assert!(e.contains("must be a JSON array"), "{e}");
    let e = error_of(other_tool(d, &["leave"], &[Some("a.x")], &[None], &[None]));
    assert!(e.contains("must be null"), "{e}");
    let e = error_of(other_tool(d, &["unset"], &[None], &[None], &[None]));
    assert!(e.contains("needs a key"), "{e}");
    // Reverse order: set a.x to 1 at [1,0], then add to it at [2,0].
    let e = error_of(other_tool(
        d,
        &["add", "set"],
        &[Some("a.x"), Some("a.x")],
        &[None, Some(1)],
        &[Some("[2]"), None],
    ));
    assert!(
        e.contains("record 1: \"add\" on a non-set value of a.x (int)"),
        "{e}"
    );
    // Missing column, wrong type, not Parquet.
    let path = raw(
        d,
        "cols.parquet",
        vec![("rec", Arc::new(UInt32Array::from(vec![1])) as ArrayRef)],
    );
    let e = error_of(path);
    assert!(
        e.contains("cols.parquet: not a trace: column `idx` is missing"),
        "{e}"
    );
    let path = raw(
        d,
        "types.parquet",
        vec![
            ("rec", Arc::new(UInt64Array::from(vec![1])) as ArrayRef),
            ("idx", Arc::new(UInt64Array::from(vec![1]))),
            ("node", strs(&[Some("n")])),
            ("hlc", strs(&[Some("[1,0]")])),
        ],
    );
    let e = error_of(path);
    assert!(
        e.contains("column `hlc` has type Utf8, which cannot be read as UInt64"),
        "{e}"
    );
    let junk = d.join("junk.parquet");
    std::fs::write(&junk, b"PAR1 not really").unwrap();
    let e = error_of(junk);
    assert!(e.contains("junk.parquet: cannot read it as Parquet"), "{e}");
}
