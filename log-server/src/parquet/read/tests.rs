//! The parallel reader (row-group ranges walked on every core, then joined) and the streaming
//! reader (a checking pass, then batches of steps) against the one-walker read of the same
//! rows.

use std::path::{Path, PathBuf};

use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::file::properties::WriterProperties;

use super::*;
use crate::columnar::{describe, HlcGroup};
use crate::record::Record;
use crate::value::SetValue;

fn set_of<const N: usize>(values: [Value; N]) -> SetValue {
    SetValue::from_values(values).unwrap()
}

/// A trace whose records have 1 to 5 rows: sets of ints and strings, set variables grown
/// and shrunk, heartbeats, leaves, several records per HLC.
fn trace(records: usize) -> Vec<Record> {
    let mut out = Vec::with_capacity(records);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut physical = 1_000u64;
    for i in 0..records {
        let r = next();
        if r % 3 == 0 {
            physical += 1;
        }
        let node = format!("n{}", r % 7);
        let hlc = Hlc::new(physical, (i % 3) as u64).unwrap_or_default();
        let mut rec = Record::heartbeat(&node, hlc);
        let var = |k: u64| VarName::parse(&format!("inv.v{k}")).unwrap();
        match (r >> 8) % 8 {
            0 => {}
            1 => rec.leave = true,
            2 => rec.add.push((
                VarName::parse("set.s").unwrap(),
                set_of([Value::Int((r >> 20) as i64 % 5)]),
            )),
            3 => {
                rec.unset.push(var(r >> 16 & 3));
                rec.set
                    .push((var(4), Some(Value::Str(format!("s{}", r % 11)))));
            }
            _ => {
                for k in 0..1 + (r >> 12) % 4 {
                    rec.set
                        .push((var(k), Some(Value::Int((r >> 24) as i64 % 100))));
                }
                if r % 5 == 0 {
                    rec.remove
                        .push((VarName::parse("set.s").unwrap(), set_of([Value::Int(1)])));
                }
            }
        }
        out.push(rec);
    }
    out.sort_by_key(|r| r.hlc);
    out
}

/// Writes `recs` (in the order given) with `group_rows` rows per row group.
fn write(dir: &Path, name: &str, recs: &[Record], group_rows: usize) -> PathBuf {
    let path = dir.join(name);
    let file = std::fs::File::create(&path).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(group_rows))
        .build();
    let mut w = ArrowWriter::try_new(file, super::super::trace_schema(), Some(props)).unwrap();
    for batch in super::super::write::record_batches(recs).unwrap() {
        w.write(&batch).unwrap();
    }
    w.close().unwrap();
    path
}

/// The one-walker read (file order, else DataFusion's sort).
fn sequential(
    files: &[PathBuf],
    push: &PushDown,
    opts: &ParquetOptions,
) -> Result<Columnar, String> {
    let read = read_into(files, push, opts, false, ColumnarSink::default);
    let (sink, _) = runtime()?.block_on(read)?;
    let sources: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    sink.finish(&sources)
}

fn parallel(files: &[PathBuf], push: &PushDown) -> Option<Columnar> {
    let sources: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let rt = runtime().unwrap();
    let sink = rt
        .block_on(read_file_parallel(files, push, &ParquetOptions::default()))
        .unwrap()?;
    Some(sink.finish(&sources).unwrap())
}

/// Both passes of the streaming reader, the batches concatenated; checks that no HLC group
/// is split between two batches.
fn streamed(
    files: &[PathBuf],
    push: &PushDown,
    opts: &ParquetOptions,
) -> Result<(ParquetScan, Columnar), String> {
    let scan = scan_parquet(files, push, opts)?;
    let mut all = Steps::default();
    stream_parquet(files, push, opts, &scan, &mut |steps| {
        if let (Some(before), Some(first)) = (all.groups.last(), steps.groups.first()) {
            assert!(before.hlc < first.hlc, "an HLC group split between batches");
        }
        let (records, ops) = (all.records.len() as u32, all.ops.len() as u32);
        all.ops.extend(steps.ops.iter().cloned());
        all.records.extend(steps.records.iter().map(|r| CRecord {
            first_op: r.first_op + ops,
            end_op: r.end_op + ops,
            ..*r
        }));
        all.groups.extend(steps.groups.iter().map(|g| HlcGroup {
            hlc: g.hlc,
            start: g.start + records,
            end: g.end + records,
        }));
        Ok(true)
    })?;
    let cols = Columnar {
        names: scan.names.clone(),
        steps: all,
    };
    Ok((scan, cols))
}

#[test]
fn row_group_ranges_read_in_parallel_join_to_the_sequential_read() {
    let dir = tempfile::tempdir().unwrap();
    let recs = trace(120_000);
    let path = write(dir.path(), "t.parquet", &recs, 1_000);
    assert!(
        std::fs::metadata(&path).unwrap().len() > 1 << 20,
        "too small to be split"
    );
    let files = [path];
    let opts = ParquetOptions::default();
    for push in [
        PushDown::default(),
        PushDown {
            until: Hlc::new(30_000, 0).ok(),
            keys: Some(vec!["inv.v1".into(), "set.s".into()]),
            nodes: Some(vec!["n1".into(), "n3".into(), "n4".into()]),
        },
    ] {
        let want = describe(&sequential(&files, &push, &opts).unwrap());
        let got = parallel(&files, &push).expect("the parallel read takes a sorted file");
        assert_eq!(describe(&got), want);
        let loaded = read_parquet_columnar(&files, &push, &opts).unwrap();
        assert_eq!(describe(&loaded.cols), want);
        assert!(!loaded.sorted_by_datafusion);
    }
}

#[test]
fn records_cut_by_row_groups_are_joined() {
    // Every record has 1001 rows and a row group 1000: every row-group boundary (so every
    // range boundary) falls inside a record.
    let dir = tempfile::tempdir().unwrap();
    let recs: Vec<Record> = (0..120u64)
        .map(|i| {
            let mut r = Record::heartbeat(format!("n{}", i % 3), Hlc::new(10 + i, 0).unwrap());
            for k in 0..1001 {
                let name = VarName::parse(&format!("big.v{k}")).unwrap();
                r.set.push((name, Some(Value::Int((i * k) as i64))));
            }
            r.leave = i % 10 == 9;
            r
        })
        .collect();
    let path = write(dir.path(), "big.parquet", &recs, 1_000);
    let files = [path];
    let want =
        describe(&sequential(&files, &PushDown::default(), &ParquetOptions::default()).unwrap());
    let got = parallel(&files, &PushDown::default()).expect("joins records across ranges");
    assert_eq!(describe(&got), want);
}

#[test]
fn unsorted_or_bad_files_fall_back_to_the_sequential_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut recs = trace(120_000);
    // Two records swapped far into the file: ranges after the first are out of order.
    let n = recs.len();
    recs.swap(n / 2, n - 10);
    let path = write(dir.path(), "u.parquet", &recs, 1_000);
    let files = [path];
    assert!(parallel(&files, &PushDown::default()).is_none());
    let opts = ParquetOptions::default();
    let loaded = read_parquet_columnar(&files, &PushDown::default(), &opts).unwrap();
    assert!(loaded.sorted_by_datafusion);
    assert_eq!(
        describe(&loaded.cols),
        describe(&sequential(&files, &PushDown::default(), &opts).unwrap())
    );
}

#[test]
fn streaming_gives_the_in_memory_trace_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let recs = trace(30_000);
    let sorted = write(dir.path(), "s.parquet", &recs, 1_000);
    // The same records over two files in the wrong order: DataFusion sorts them.
    let (a, b) = recs.split_at(recs.len() / 3);
    let parts = [
        write(dir.path(), "p1.parquet", b, 700),
        write(dir.path(), "p2.parquet", a, 700),
    ];
    let push = PushDown {
        until: None,
        keys: Some(vec!["inv.v0".into(), "inv.v2".into(), "set.s".into()]),
        nodes: None,
    };
    let small = ParquetOptions {
        memory_limit: Some(8 << 20),
        temp_dir: Some(dir.path().to_path_buf()),
    };
    for (files, want_sort) in [(vec![sorted], false), (parts.to_vec(), true)] {
        for push in [PushDown::default(), push.clone()] {
            for opts in [ParquetOptions::default(), small.clone()] {
                let (scan, got) = streamed(&files, &push, &opts).unwrap();
                let want = read_parquet_columnar(&files, &push, &opts).unwrap();
                assert_eq!(scan.sorted_by_datafusion, want_sort);
                assert_eq!(scan.records, want.records as u64);
                assert_eq!(describe(&got), describe(&want.cols));
                assert_eq!(got.names.nodes, want.cols.names.nodes);
            }
        }
    }
}

#[test]
fn streaming_stops_when_the_consumer_has_enough() {
    let dir = tempfile::tempdir().unwrap();
    let recs = trace(30_000);
    let files = [write(dir.path(), "s.parquet", &recs, 1_000)];
    let opts = ParquetOptions::default();
    let push = PushDown::default();
    let scan = scan_parquet(&files, &push, &opts).unwrap();
    let mut batches = 0;
    stream_parquet(&files, &push, &opts, &scan, &mut |steps| {
        batches += 1;
        assert!(steps.groups.len() >= BATCH_GROUPS);
        Ok(false)
    })
    .unwrap();
    assert_eq!(batches, 1);
}

#[test]
fn streaming_finds_the_errors_the_in_memory_read_finds() {
    let dir = tempfile::tempdir().unwrap();
    let mut recs = trace(5_000);
    // An `add` to a variable holding an int, far into the trace.
    let at = recs.len() - 100;
    let node = recs[at].node.clone();
    let hlc = recs[at].hlc;
    let mut set = Record::heartbeat(&node, hlc);
    set.set
        .push((VarName::parse("inv.v9").unwrap(), Some(Value::Int(1))));
    let mut add = Record::heartbeat(&node, hlc);
    add.add
        .push((VarName::parse("inv.v9").unwrap(), set_of([Value::Int(2)])));
    recs.insert(at + 1, add);
    recs.insert(at + 1, set);
    let files = [write(dir.path(), "e.parquet", &recs, 1_000)];
    let opts = ParquetOptions::default();
    let want = read_parquet_columnar(&files, &PushDown::default(), &opts).unwrap_err();
    let got = scan_parquet(&files, &PushDown::default(), &opts).unwrap_err();
    assert_eq!(got, want);
    assert!(
        got.contains("\"add\" on a non-set value of inv.v9 (int)"),
        "{got}"
    );
}
