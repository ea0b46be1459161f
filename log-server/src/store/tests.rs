//! Tests of the store: append and read back, group commit, validation, recovery of damaged
//! tails, retention with its base state, readers, limits, and a crash property.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;
use tempfile::TempDir;

use super::segment::{push_unsealed_frame, seal_frame, segment_file_name};
use super::*;
use crate::record::VarName;
use crate::value::{SetValue, Value};

fn hlc(l: u64, c: u64) -> Hlc {
    Hlc::new(l, c).unwrap()
}

fn var(name: &str) -> VarName {
    VarName::parse(name).unwrap()
}

/// A record of `node` at `(l, 0)` setting `a.x` to `l`.
fn rec(node: &str, l: u64) -> Record {
    let mut r = Record::heartbeat(node, hlc(l, 0));
    r.set = vec![(var("a.x"), Some(Value::Int(l as i64)))];
    r
}

fn lines(n: usize) -> Vec<usize> {
    (1..=n).collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn open(config: StoreConfig) -> (Store, RecoveryReport) {
    Store::open(config).unwrap()
}

fn read_all(store: &Store) -> Vec<StoredRecord> {
    read_from(store, Hlc::MIN, None)
}

fn read_from(store: &Store, since: Hlc, nodes: Option<BTreeSet<String>>) -> Vec<StoredRecord> {
    let mut reader = store.reader(since, nodes).unwrap();
    let mut out = Vec::new();
    loop {
        let chunk = reader.next_chunk(333).unwrap();
        if chunk.is_empty() {
            return out;
        }
        out.extend(chunk);
    }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

fn append_sync(rt: &tokio::runtime::Runtime, store: &Store, records: Vec<Record>) -> AppendReceipt {
    let n = records.len();
    rt.block_on(store.append(records, lines(n))).unwrap()
}

#[test]
fn append_and_read_back() {
    let dir = TempDir::new().unwrap();
    let rt = runtime();
    let (store, report) = open(StoreConfig::new(dir.path()));
    assert_eq!(report.last_seq, 0);
    let first = vec![rec("n1", 10), rec("n2", 5), rec("n1", 11)];
    let receipt = append_sync(&rt, &store, first.clone());
    assert_eq!(
        receipt,
        AppendReceipt {
            stored: 3,
            first_seq: 1,
            last_seq: 3
        }
    );
    let mut second = rec("n2", 6);
    second.add = vec![(
        var("a.s"),
        SetValue::from_values(vec![Value::Int(1)]).unwrap(),
    )];
    second.pt = Some(77);
    let receipt = append_sync(&rt, &store, vec![second.clone()]);
    assert_eq!((receipt.first_seq, receipt.last_seq), (4, 4));
    assert_eq!(*store.commits().borrow(), 4);

    let all: Vec<Record> = first.into_iter().chain([second]).collect();
    let read = read_all(&store);
    assert_eq!(read.len(), 4);
    for (i, (got, want)) in read.iter().zip(&all).enumerate() {
        assert_eq!(got.seq, i as u64 + 1);
        assert_eq!(&got.record, want);
        assert_eq!(got.json, want.to_json_line());
    }
    let nodes = store.nodes();
    assert_eq!(nodes.len(), 2);
    assert_eq!(
        (nodes[0].node.as_str(), nodes[0].last_hlc, nodes[0].records),
        ("n1", hlc(11, 0), 2)
    );
    assert_eq!(
        (nodes[1].node.as_str(), nodes[1].last_hlc, nodes[1].records),
        ("n2", hlc(6, 0), 2)
    );
    let stats = store.stats();
    assert_eq!((stats.first_seq, stats.last_seq, stats.records), (1, 4, 4));
    assert_eq!(stats.earliest, Hlc::MIN);
    assert!(stats.bytes > 0);
    let empty = rt.block_on(store.append(Vec::new(), Vec::new())).unwrap();
    assert_eq!(empty.stored, 0);
    store.close().unwrap();

    // Everything is there after a restart, and seqs go on.
    let (store, report) = open(StoreConfig::new(dir.path()));
    assert_eq!(report.last_seq, 4);
    assert_eq!(report.records, 4);
    assert_eq!(report.nodes, 2);
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(read_all(&store), read);
    assert_eq!(store.nodes().len(), 2);
    assert_eq!(store.nodes()[1].records, 2);
    let receipt = append_sync(&rt, &store, vec![rec("n1", 12)]);
    assert_eq!(receipt.first_seq, 5);
    // The restored node table still knows n1's last HLC.
    let err = rt.block_on(store.append(vec![rec("n1", 3)], vec![7]));
    assert!(matches!(err, Err(AppendError::Rejected(ref r)) if r[0].line == 7));
    store.close().unwrap();
}

#[test]
fn a_second_store_on_the_same_directory_is_refused() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(StoreConfig::new(dir.path()));
    match Store::open(StoreConfig::new(dir.path())) {
        Err(StoreError::Locked(path)) => assert!(path.ends_with("LOCK")),
        other => panic!("{:?}", other.map(|_| ())),
    }
    // Closing releases the lock, even while a reader of the closed store lives on.
    let reader = store.reader(Hlc::MIN, None).unwrap();
    store.close().unwrap();
    let (store, _) = open(StoreConfig::new(dir.path()));
    drop(reader);
    store.close().unwrap();
}

#[test]
fn bad_configuration_is_an_error() {
    let dir = TempDir::new().unwrap();
    let mut config = StoreConfig::new(dir.path());
    config.max_nodes = 0;
    assert!(matches!(Store::open(config), Err(StoreError::Config(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_are_group_committed_and_read_back_once() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(StoreConfig::new(dir.path()));
    let writers = 32;
    let batches = 40;
    let per_batch = 50;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let node = format!("node{w}");
            let mut receipts = Vec::new();
            for b in 0..batches {
                let records: Vec<Record> = (0..per_batch)
                    .map(|i| rec(&node, 1000 + (b * per_batch + i) as u64))
                    .collect();
                let receipt = store.append(records, lines(per_batch)).await.unwrap();
                receipts.push(receipt);
            }
            (node, receipts)
        }));
    }
    let mut acked: BTreeMap<u64, (String, u64)> = BTreeMap::new();
    for task in tasks {
        let (node, receipts) = task.await.unwrap();
        for (b, receipt) in receipts.iter().enumerate() {
            assert_eq!(receipt.stored, per_batch);
            assert_eq!(receipt.last_seq - receipt.first_seq + 1, per_batch as u64);
            for (i, seq) in (receipt.first_seq..=receipt.last_seq).enumerate() {
                let l = 1000 + (b * per_batch + i) as u64;
                assert!(
                    acked.insert(seq, (node.clone(), l)).is_none(),
                    "seq {seq} twice"
                );
            }
        }
    }
    let total = writers * batches * per_batch;
    assert_eq!(acked.len(), total);
    let stats = store.stats();
    assert!(
        stats.group_commits < (writers * batches) as u64,
        "{} fsyncs for {} batches: no group commit",
        stats.group_commits,
        writers * batches
    );
    let read = read_all(&store);
    assert_eq!(read.len(), total);
    for got in &read {
        let (node, l) = &acked[&got.seq];
        assert_eq!((&got.record.node, got.record.hlc), (node, hlc(*l, 0)));
    }
    store.close().unwrap();
}

#[test]
fn out_of_order_records_reject_the_whole_batch() {
    let dir = TempDir::new().unwrap();
    let rt = runtime();
    let (store, _) = open(StoreConfig::new(dir.path()));
    append_sync(&rt, &store, vec![rec("n1", 10)]);

    // Older than the last stored record: rejected, and the good records before it with it.
    let err = rt
        .block_on(store.append(
            vec![rec("n1", 11), rec("n2", 1), rec("n1", 9)],
            vec![4, 5, 6],
        ))
        .unwrap_err();
    let AppendError::Rejected(rejections) = err else {
        panic!("{err:?}")
    };
    assert_eq!(rejections.len(), 1);
    assert_eq!(rejections[0].line, 6);
    assert_eq!(rejections[0].node, "n1");
    assert_eq!(rejections[0].reason, RejectReason::OutOfOrder);
    assert!(
        rejections[0].message.contains("[9,0]"),
        "{}",
        rejections[0].message
    );
    // The batch's own n1 record at 11 came first.
    assert!(
        rejections[0].message.contains("[11,0]"),
        "{}",
        rejections[0].message
    );

    // Out of order within the batch, against the batch's own earlier record.
    let err = rt
        .block_on(store.append(vec![rec("n3", 5), rec("n3", 4), rec("n3", 3)], lines(3)))
        .unwrap_err();
    let AppendError::Rejected(rejections) = err else {
        panic!("{err:?}")
    };
    let bad: Vec<usize> = rejections.iter().map(|r| r.line).collect();
    assert_eq!(bad, vec![2, 3]);

    // Nothing of either batch is stored, and neither n2 nor n3 exists.
    assert_eq!(read_all(&store).len(), 1);
    let nodes: Vec<String> = store.nodes().into_iter().map(|n| n.node).collect();
    assert_eq!(nodes, vec!["n1"]);
    assert_eq!(store.nodes()[0].last_hlc, hlc(10, 0));

    // An equal HLC is accepted (and so is the batch once it is in order).
    let receipt = append_sync(
        &rt,
        &store,
        vec![rec("n1", 10), rec("n1", 10), rec("n2", 1)],
    );
    assert_eq!(receipt.stored, 3);
    assert_eq!(read_all(&store).len(), 4);
    store.close().unwrap();
}

#[test]
fn add_on_a_non_set_value_rejects_the_batch_and_undoes_it() {
    let dir = TempDir::new().unwrap();
    let rt = runtime();
    let (store, _) = open(StoreConfig::new(dir.path()));
    let one = SetValue::from_values(vec![Value::Int(1)]).unwrap();
    // a.y becomes an int in line 1; line 2 adds to it: the batch is rejected ...
    let mut add = Record::heartbeat("n1", hlc(2, 0));
    add.add = vec![(var("a.y"), one.clone())];
    let mut set = Record::heartbeat("n1", hlc(1, 0));
    set.set = vec![(var("a.y"), Some(Value::Int(1)))];
    let err = rt
        .block_on(store.append(vec![set.clone(), add.clone()], lines(2)))
        .unwrap_err();
    let AppendError::Rejected(rejections) = err else {
        panic!("{err:?}")
    };
    assert_eq!(rejections.len(), 1);
    assert_eq!(rejections[0].line, 2);
    assert_eq!(rejections[0].reason, RejectReason::NotASet);
    assert!(rejections[0].message.contains("a.y"));
    // ... and forgotten: a.y is not an int, so adding to it is fine now.
    append_sync(&rt, &store, vec![add.clone()]);
    // After a restart the kinds are rebuilt from the log.
    set.hlc = hlc(5, 0);
    append_sync(&rt, &store, vec![set]);
    store.close().unwrap();
    let (store, _) = open(StoreConfig::new(dir.path()));
    let mut again = add;
    again.hlc = hlc(6, 0);
    let err = rt
        .block_on(store.append(vec![again], lines(1)))
        .unwrap_err();
    assert!(matches!(err, AppendError::Rejected(ref r) if r[0].reason == RejectReason::NotASet));
    store.close().unwrap();
}

#[test]
fn node_limit() {
    let dir = TempDir::new().unwrap();
    let rt = runtime();
    let mut config = StoreConfig::new(dir.path());
    config.max_nodes = 2;
    let (store, _) = open(config.clone());
    append_sync(&rt, &store, vec![rec("n1", 1), rec("n2", 1)]);
    let err = rt
        .block_on(store.append(vec![rec("n1", 2), rec("n3", 1)], lines(2)))
        .unwrap_err();
    let AppendError::Rejected(rejections) = err else {
        panic!("{err:?}")
    };
    assert_eq!(rejections.len(), 1);
    assert_eq!(
        (rejections[0].line, rejections[0].reason),
        (2, RejectReason::TooManyNodes)
    );
    assert_eq!(RejectReason::TooManyNodes.as_str(), "too_many_nodes");
    assert_eq!(store.nodes().len(), 2);
    assert_eq!(store.nodes()[0].last_hlc, hlc(1, 0));
    append_sync(&rt, &store, vec![rec("n1", 2)]);
    store.close().unwrap();
    // The limit counts the nodes found at recovery.
    let (store, _) = open(config);
    assert!(rt
        .block_on(store.append(vec![rec("n4", 1)], lines(1)))
        .is_err());
    store.close().unwrap();
}

#[test]
fn appends_after_close_fail() {
    let dir = TempDir::new().unwrap();
    let rt = runtime();
    let (store, _) = open(StoreConfig::new(dir.path()));
    let other = store.clone();
    store.close().unwrap();
    assert_eq!(
        rt.block_on(other.append(vec![rec("n1", 1)], lines(1))),
        Err(AppendError::Closed)
    );
}

/// Three batches of two records, then the store closed; returns the segment file.
fn three_batches(dir: &Path) -> (PathBuf, Vec<Record>) {
    let rt = runtime();
    let (store, _) = open(StoreConfig::new(dir));
    let mut all = Vec::new();
    for b in 0..3 {
        let batch = vec![rec("n1", 10 * b + 11), rec("n2", 10 * b + 12)];
        all.extend(batch.clone());
        append_sync(&rt, &store, batch);
    }
    store.close().unwrap();
    let files = segment_files(dir);
    assert_eq!(files.len(), 1);
    (files[0].clone(), all)
}

fn records_of(store: &Store) -> Vec<Record> {
    read_all(store).into_iter().map(|r| r.record).collect()
}

#[test]
fn a_tail_cut_mid_record_loses_only_the_unfinished_batch() {
    let dir = TempDir::new().unwrap();
    let (segment, all) = three_batches(dir.path());
    let len = fs::metadata(&segment).unwrap().len();
    let batch_len = (len / 3) as usize; // the three batches encode to equal sizes
    OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let (store, report) = open(StoreConfig::new(dir.path()));
    // The third batch's first record is whole, but the batch is not: all of it goes.
    assert_eq!(records_of(&store), all[..4]);
    assert_eq!(report.records, 4);
    assert_eq!(report.last_seq, 4);
    assert_eq!(report.truncated_bytes as usize, batch_len - 5);
    assert_eq!(report.truncated_segment.as_deref(), Some(segment.as_path()));
    let saved = report.saved_tail.clone().unwrap();
    assert_eq!(fs::metadata(&saved).unwrap().len() as usize, batch_len - 5);
    assert!(saved.starts_with(dir.path().join("damaged")));
    assert_eq!(
        fs::metadata(&segment).unwrap().len() as usize,
        2 * batch_len
    );
    assert_eq!(store.nodes()[0].last_hlc, hlc(21, 0));
    // Appending goes on from there.
    let rt = runtime();
    let receipt = append_sync(&rt, &store, vec![rec("n1", 21)]);
    assert_eq!(receipt.first_seq, 5);
    store.close().unwrap();
    let (store, report) = open(StoreConfig::new(dir.path()));
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(report.records, 5);
    store.close().unwrap();
}

#[test]
fn a_flipped_byte_in_the_last_record_cuts_its_batch() {
    let dir = TempDir::new().unwrap();
    let (segment, all) = three_batches(dir.path());
    let mut bytes = fs::read(&segment).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x01;
    fs::write(&segment, &bytes).unwrap();
    let (store, report) = open(StoreConfig::new(dir.path()));
    assert_eq!(records_of(&store), all[..4]);
    assert!(report.truncated_bytes > 0);
    assert!(
        report
            .truncation_reason
            .as_deref()
            .unwrap()
            .contains("checksum"),
        "{report:?}"
    );
    store.close().unwrap();
}

#[test]
fn a_torn_tail_of_zeros_is_cut() {
    let dir = TempDir::new().unwrap();
    let (segment, all) = three_batches(dir.path());
    let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
    file.write_all(&[0; 4096]).unwrap();
    drop(file);
    let (store, report) = open(StoreConfig::new(dir.path()));
    assert_eq!(records_of(&store), all);
    assert_eq!(report.truncated_bytes, 4096);
    store.close().unwrap();
}

#[test]
fn damage_in_an_older_segment_is_an_error_naming_it() {
    let dir = TempDir::new().unwrap();
    let rt = runtime();
    let mut config = StoreConfig::new(dir.path());
    config.segment_bytes = 1; // every group starts a new segment
    let (store, _) = open(config.clone());
    for b in 0..3 {
        append_sync(&rt, &store, vec![rec("n1", b + 1), rec("n1", b + 1)]);
    }
    store.close().unwrap();
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 3);
    assert!(files[1].ends_with(segment_file_name(3)));
    let mut bytes = fs::read(&files[1]).unwrap();
    let second_frame = bytes.len() / 2;
    bytes[second_frame + 30] ^= 0x20;
    fs::write(&files[1], &bytes).unwrap();
    match Store::open(config) {
        Err(err @ StoreError::Corrupt { .. }) => {
            let StoreError::Corrupt { path, offset, .. } = &err else {
                unreachable!()
            };
            assert_eq!(path, &files[1]);
            assert_eq!(*offset as usize, second_frame);
            let message = err.to_string();
            assert!(message.contains("truncate it to 0 bytes"), "{message}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

/// Records for the retention tests: two nodes with sets, adds, removes and a leave, HLCs of
/// n2 lagging behind n1's.
fn varied_records(batches: u64) -> Vec<Vec<Record>> {
    (0..batches)
        .map(|b| {
            let mut n1 = rec("n1", 100 + 10 * b);
            n1.add = vec![(
                var("a.s"),
                SetValue::from_values(vec![Value::Int(b as i64)]).unwrap(),
            )];
            if b % 3 == 2 {
                n1.remove = vec![(
                    var("a.s"),
                    SetValue::from_values(vec![Value::Int(b as i64 - 1)]).unwrap(),
                )];
            }
            let mut n2 = rec("n2", 50 + 10 * b);
            n2.set
                .push((var("a.name"), Some(Value::Str(format!("v{b}")))));
            n2.leave = b == 5;
            vec![n1, n2, Record::heartbeat("n3", hlc(60 + 10 * b, 1))]
        })
        .collect()
}

/// Replays `records` into per-node states: what the base state must equal.
fn replay(records: &[StoredRecord]) -> BTreeMap<String, (Hlc, NodeState, bool, u64)> {
    let mut states: BTreeMap<String, (Hlc, NodeState, bool, u64)> = BTreeMap::new();
    for r in records {
        let entry = states
            .entry(r.record.node.clone())
            .or_insert_with(|| (Hlc::MIN, NodeState::new(), false, 0));
        entry.1.apply(&r.record).unwrap();
        entry.0 = r.record.hlc;
        entry.2 = r.record.leave;
        entry.3 += 1;
    }
    states
}

fn base_as_map(store: &Store) -> BTreeMap<String, (Hlc, NodeState, bool, u64)> {
    store
        .base_state()
        .into_iter()
        .map(|b| (b.node, (b.last_hlc, b.state, b.left, b.records)))
        .collect()
}

#[test]
fn retention_by_size_folds_deleted_segments_into_the_base_state() {
    let dir = TempDir::new().unwrap();
    let rt = runtime();
    let mut config = StoreConfig::new(dir.path());
    config.segment_bytes = 1;
    let (store, _) = open(config.clone());
    for batch in varied_records(10) {
        append_sync(&rt, &store, batch);
    }
    let everything = read_all(&store);
    let nodes_before = store.nodes();
    assert_eq!(store.stats().segments, 10);
    let sizes: Vec<u64> = segment_files(dir.path())
        .iter()
        .map(|f| fs::metadata(f).unwrap().len())
        .collect();
    config.max_bytes = Some(sizes[6..].iter().sum());
    store.close().unwrap();
    let (store, _) = open(config.clone());
    let report = store.enforce_retention().unwrap();
    assert_eq!(report.deleted_segments, 6);
    assert_eq!(report.deleted_records, 18);
    assert_eq!(report.deleted_bytes, sizes[..6].iter().sum::<u64>());
    assert_eq!(segment_files(dir.path()).len(), 4);
    let after = store.stats();
    assert_eq!(
        (after.segments, after.first_seq, after.last_seq),
        (4, 19, 30)
    );
    assert_eq!(after.bytes, sizes[6..].iter().sum::<u64>());

    // The base state is the replay of exactly the deleted records.
    let folded = &everything[..18];
    assert_eq!(base_as_map(&store), replay(folded));
    assert!(store.base_state().iter().any(|b| b.node == "n2" && b.left));
    // Earliest: just above the newest folded record.
    let newest_folded = folded.iter().map(|r| r.record.hlc).max().unwrap();
    assert_eq!(
        report.earliest,
        Hlc::from_packed(newest_folded.packed() + 1)
    );
    assert_eq!(after.earliest, report.earliest);
    // Node status still counts every record.
    assert_eq!(store.nodes(), nodes_before);

    // Readers: older than the retained history is an error naming where it starts ...
    match store.reader(Hlc::MIN, None) {
        Err(StoreError::SinceTooOld { earliest, .. }) => assert_eq!(earliest, report.earliest),
        other => panic!("{:?}", other.map(|_| ())),
    }
    // ... and from `earliest` on, every record at or above it is there.
    let want: Vec<(u64, String)> = everything
        .iter()
        .filter(|r| r.record.hlc >= report.earliest)
        .map(|r| (r.seq, r.json.clone()))
        .collect();
    let got: Vec<(u64, String)> = read_from(&store, report.earliest, None)
        .into_iter()
        .map(|r| (r.seq, r.json))
        .collect();
    assert_eq!(got, want);
    // A second run has nothing to do; the state survives a restart.
    assert_eq!(store.enforce_retention().unwrap().deleted_segments, 0);
    let base = base_as_map(&store);
    store.close().unwrap();
    let (store, report) = open(config);
    assert_eq!(base_as_map(&store), base);
    assert_eq!(store.nodes(), nodes_before);
    assert_eq!(report.records, 12);
    // Validation state survives too: n1 cannot go back, and a.s is a set.
    let err = rt.block_on(store.append(vec![rec("n1", 1)], lines(1)));
    assert!(err.is_err());
    store.close().unwrap();
}

#[test]
fn a_reader_behind_retention_gets_an_error() {
    let dir = TempDir::new().unwrap();
    let rt = runtime();
    let mut config = StoreConfig::new(dir.path());
    config.segment_bytes = 1;
    config.max_bytes = Some(1);
    let (store, _) = open(config);
    for batch in varied_records(4) {
        append_sync(&rt, &store, batch);
    }
    let mut reader = store.reader(Hlc::MIN, None).unwrap();
    assert_eq!(reader.next_chunk(1).unwrap().len(), 1);
    let report = store.enforce_retention().unwrap();
    assert_eq!(report.deleted_segments, 3);
    let err = reader.next_chunk(1).unwrap_err();
    assert!(
        matches!(err, StoreError::ReaderBehind { next_seq: 2, .. }),
        "{err}"
    );
    // A reader that only wants records above `earliest` skips the deleted ones silently.
    let mut reader = store.reader(report.earliest, None).unwrap();
    assert!(!reader.next_chunk(100).unwrap().is_empty());
    store.close().unwrap();
}

#[test]
fn retention_by_age_keeps_the_active_segment() {
    let dir = TempDir::new().unwrap();
    let rt = runtime();
    let mut config = StoreConfig::new(dir.path());
    config.segment_bytes = 1;
    config.retention_age = Some(Duration::from_secs(3600));
    let (store, _) = open(config.clone());
    for batch in varied_records(5) {
        append_sync(&rt, &store, batch);
    }
    let everything = read_all(&store);
    assert_eq!(store.enforce_retention().unwrap().deleted_segments, 0);
    store.close().unwrap();

    config.retention_age = Some(Duration::from_millis(1));
    std::thread::sleep(Duration::from_millis(20));
    let (store, _) = open(config);
    let report = store.enforce_retention().unwrap();
    assert_eq!(report.deleted_segments, 4);
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(base_as_map(&store), replay(&everything[..12]));
    let above = everything
        .iter()
        .filter(|r| r.record.hlc >= report.earliest);
    assert_eq!(
        read_from(&store, report.earliest, None).len(),
        above.count()
    );
    // New records go on after the folded ones.
    let receipt = append_sync(&rt, &store, vec![rec("n1", 1000)]);
    assert_eq!(receipt.first_seq, 16);
    store.close().unwrap();
}

#[test]
fn an_interrupted_retention_run_is_finished_at_recovery() {
    let dir = TempDir::new().unwrap();
    let rt = runtime();
    let mut config = StoreConfig::new(dir.path());
    config.segment_bytes = 1;
    let (store, _) = open(config.clone());
    for batch in varied_records(4) {
        append_sync(&rt, &store, batch);
    }
    let files = segment_files(dir.path());
    let saved: Vec<Vec<u8>> = files.iter().map(|f| fs::read(f).unwrap()).collect();
    config.max_bytes = Some(1);
    store.close().unwrap();
    let (store, _) = open(config.clone());
    assert_eq!(store.enforce_retention().unwrap().deleted_segments, 3);
    let base = base_as_map(&store);
    store.close().unwrap();
    // As if the run had stopped after writing base.json, before deleting the segments.
    for (file, bytes) in files.iter().zip(&saved).take(3) {
        fs::write(file, bytes).unwrap();
    }
    let (store, report) = open(config);
    assert_eq!(report.removed_folded_segments, 3);
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(base_as_map(&store), base);
    assert_eq!(report.records, 3);
    store.close().unwrap();
}

#[test]
fn reader_filters_by_since_and_nodes_and_skips_old_blocks() {
    let dir = TempDir::new().unwrap();
    let rt = runtime();
    let (store, _) = open(StoreConfig::new(dir.path()));
    // n1 climbs; n2 stays low, but only in the first 500 records.
    for b in 0..10u64 {
        let mut batch: Vec<Record> = (0..500).map(|i| rec("n1", 1000 + b * 500 + i)).collect();
        if b == 0 {
            batch.extend((0..500).map(|i| rec("n2", 10 + i)));
        }
        append_sync(&rt, &store, batch);
    }
    let all = read_all(&store);
    assert_eq!(all.len(), 5500);
    for since in [
        hlc(0, 0),
        hlc(500, 0),
        hlc(3000, 0),
        hlc(3000, 1),
        hlc(5999, 0),
        hlc(7000, 0),
    ] {
        let want: Vec<u64> = all
            .iter()
            .filter(|r| r.record.hlc >= since)
            .map(|r| r.seq)
            .collect();
        let mut reader = store.reader(since, None).unwrap();
        let mut got = Vec::new();
        loop {
            let chunk = reader.next_chunk(77).unwrap();
            if chunk.is_empty() {
                break;
            }
            got.extend(chunk.into_iter().map(|r| r.seq));
        }
        assert_eq!(got, want, "since {since}");
        assert_eq!(reader.position(), 5500, "since {since}");
    }
    let n2: BTreeSet<String> = ["n2".to_string()].into();
    let got = read_from(&store, hlc(200, 0), Some(n2));
    assert_eq!(got.len(), 310);
    assert!(got
        .iter()
        .all(|r| r.record.node == "n2" && r.record.hlc >= hlc(200, 0)));
    store.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_only_committed_records_and_wake_on_commits() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(StoreConfig::new(dir.path()));
    store.append(vec![rec("n1", 1)], lines(1)).await.unwrap();
    // A whole, valid frame written past the committed end (as the writer does before its
    // fsync returns) is not committed, so no reader may see it.
    let segment = segment_files(dir.path()).remove(0);
    let mut frame = Vec::new();
    push_unsealed_frame(&mut frame, rec("n1", 2).to_json_line().as_bytes(), true);
    seal_frame(&mut frame, 2, 1);
    OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap()
        .write_all(&frame)
        .unwrap();
    let mut reader = store.reader(Hlc::MIN, None).unwrap();
    assert_eq!(reader.next_chunk(10).unwrap().len(), 1);
    assert!(reader.next_chunk(10).unwrap().is_empty());
    assert_eq!(reader.position(), 1);

    let mut commits = store.commits();
    assert_eq!(*commits.borrow_and_update(), 1);
    let waiter = tokio::spawn(async move {
        commits.changed().await.unwrap();
        let seq = *commits.borrow();
        let chunk = reader.next_chunk(10).unwrap();
        (seq, chunk)
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    store
        .append(vec![rec("n1", 3), rec("n1", 4)], lines(2))
        .await
        .unwrap();
    let (seq, chunk) = waiter.await.unwrap();
    assert_eq!(seq, 3);
    let got: Vec<(u64, Hlc)> = chunk.iter().map(|r| (r.seq, r.record.hlc)).collect();
    assert_eq!(got, vec![(2, hlc(3, 0)), (3, hlc(4, 0))]);
    store.close().unwrap();
}

/// What a batch in the crash property is.
#[derive(Clone, Debug)]
struct GenBatch {
    /// (node index, hlc step) per record; steps may go back, which the store rejects.
    records: Vec<(u8, i8)>,
}

fn gen_batch() -> impl Strategy<Value = GenBatch> {
    prop::collection::vec((0u8..3, -1i8..4), 1..6).prop_map(|records| GenBatch { records })
}

/// Turns generated batches into records, continuing each node's clock from `clocks`.
fn materialize(batch: &GenBatch, clocks: &mut [u64; 3]) -> Vec<Record> {
    let mut next = *clocks;
    let records = batch
        .records
        .iter()
        .map(|&(node, step)| {
            let clock = &mut next[node as usize];
            *clock = clock.saturating_add_signed(step as i64);
            rec(&format!("n{node}"), *clock)
        })
        .collect();
    *clocks = next;
    records
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random batches (some rejected), then a crash in the middle of writing more batches
    /// (their bytes cut at a random point): the recovered log is exactly the acknowledged
    /// batches, followed by whole unacknowledged batches that happened to reach the disk.
    #[test]
    fn crash_recovery_keeps_exactly_whole_acknowledged_batches(
        batches in prop::collection::vec(gen_batch(), 1..8),
        in_flight in prop::collection::vec(gen_batch(), 1..4),
        cut in 0.0f64..=1.0,
    ) {
        let dir = TempDir::new().unwrap();
        let rt = runtime();
        let (store, _) = open(StoreConfig::new(dir.path()));
        let mut acked: Vec<Record> = Vec::new();
        let mut clocks = [100u64; 3];
        for batch in &batches {
            let mut trial = clocks;
            let records = materialize(batch, &mut trial);
            match rt.block_on(store.append(records.clone(), lines(records.len()))) {
                Ok(receipt) => {
                    prop_assert_eq!(receipt.first_seq, acked.len() as u64 + 1);
                    acked.extend(records);
                    clocks = trial;
                }
                Err(AppendError::Rejected(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
        store.close().unwrap();

        // The group being written when the process died: frames of whole batches, cut.
        let mut bytes = Vec::new();
        let mut batch_ends = Vec::new();
        let mut seq = acked.len() as u64 + 1;
        let mut in_flight_records = Vec::new();
        for batch in &in_flight {
            let records = materialize(&GenBatch {
                records: batch.records.iter().map(|&(n, s)| (n, s.max(0))).collect(),
            }, &mut clocks);
            let start = bytes.len();
            for (j, r) in records.iter().enumerate() {
                push_unsealed_frame(&mut bytes, r.to_json_line().as_bytes(), j + 1 == records.len());
            }
            let mut at = start;
            while at < bytes.len() {
                at += seal_frame(&mut bytes[at..], seq, 1);
                seq += 1;
            }
            batch_ends.push(bytes.len());
            in_flight_records.push(records);
        }
        let cut_at = ((bytes.len() as f64) * cut) as usize;
        let segment = segment_files(dir.path()).pop().unwrap();
        OpenOptions::new().append(true).open(&segment).unwrap()
            .write_all(&bytes[..cut_at]).unwrap();

        let (store, report) = open(StoreConfig::new(dir.path()));
        let mut want = acked.clone();
        for (records, end) in in_flight_records.iter().zip(&batch_ends) {
            if *end <= cut_at {
                want.extend(records.iter().cloned());
            }
        }
        let whole = batch_ends.iter().copied().filter(|e| *e <= cut_at).max().unwrap_or(0);
        prop_assert_eq!(report.truncated_bytes as usize, cut_at - whole);
        let got = records_of(&store);
        prop_assert_eq!(got, want.clone());
        prop_assert_eq!(report.last_seq, want.len() as u64);
        // And the store takes the next batch right after them.
        let next = rec("n9", 1);
        let receipt = rt.block_on(store.append(vec![next], lines(1))).unwrap();
        prop_assert_eq!(receipt.first_seq, want.len() as u64 + 1);
        store.close().unwrap();
    }
}

/// A write that fails (the active segment is /dev/full) acknowledges nothing and undoes the
/// batch's effect on the node table.
#[cfg(target_os = "linux")]
#[test]
fn a_failed_write_acknowledges_nothing() {
    let dir = TempDir::new().unwrap();
    std::os::unix::fs::symlink("/dev/full", dir.path().join(segment_file_name(1))).unwrap();
    let rt = runtime();
    let (store, _) = open(StoreConfig::new(dir.path()));
    for _ in 0..2 {
        match rt.block_on(store.append(vec![rec("n1", 5)], lines(1))) {
            Err(AppendError::Io(message)) => assert!(message.contains("write"), "{message}"),
            other => panic!("{other:?}"),
        }
    }
    assert!(store.nodes().is_empty());
    assert_eq!(store.stats().last_seq, 0);
    assert_eq!(*store.commits().borrow(), 0);
    assert!(read_all(&store).is_empty());
    store.close().unwrap();
}
