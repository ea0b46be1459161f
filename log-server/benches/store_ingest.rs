//! Durable ingest through the store alone (no HTTP): 64 concurrent writers, each its own node,
//! appending batches of 1000 records, every batch fsynced before its ack; then one reader
//! streaming everything back; then a restart (recovery checks and indexes every record).
//! Prints records/s for each.
//!
//! `cargo bench -p log-server --features server --bench store_ingest [-- RECORDS_PER_WRITER]`
//! (the data goes to a temporary directory under $TMPDIR).

use std::time::Instant;

use log_server::store::{Store, StoreConfig};
use log_server::{Hlc, Record, Value, VarName};

const WRITERS: usize = 64;
const BATCH: usize = 1000;

fn record(node: &str, l: u64, i: u64) -> Record {
    let mut rec = Record::heartbeat(node, Hlc::new(l, i % 0xFFFF).unwrap_or(Hlc::MIN));
    let a = VarName::parse("inv.a").unwrap_or_else(|_| unreachable!());
    let b = VarName::parse("inv.b").unwrap_or_else(|_| unreachable!());
    rec.set = vec![
        (a, Some(Value::Int(i as i64))),
        (b, Some(Value::Int((i * 7 % 1000) as i64))),
    ];
    rec
}

fn main() {
    let per_writer: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("temporary directory");
    let (store, _) = Store::open(StoreConfig::new(dir.path())).expect("open store");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");

    let started = Instant::now();
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let node = format!("node{w}");
                let base = 1_700_000_000_000u64;
                for b in 0..per_writer / BATCH {
                    let records: Vec<Record> = (0..BATCH)
                        .map(|i| {
                            let n = (b * BATCH + i) as u64;
                            record(&node, base + n / 16, n)
                        })
                        .collect();
                    let lines = (1..=BATCH).collect();
                    store.append(records, lines).await.expect("append");
                }
            }));
        }
        for task in tasks {
            task.await.expect("writer task");
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let stats = store.stats();
    let total = stats.records as f64;
    println!(
        "ingest: {} records ({} MiB) from {WRITERS} writers in batches of {BATCH}: {:.2} s, \
         {:.0} records/s, {} group commits ({:.1} batches per fsync)",
        stats.records,
        stats.bytes >> 20,
        elapsed,
        total / elapsed,
        stats.group_commits,
        (stats.records as f64 / BATCH as f64) / stats.group_commits as f64
    );

    let started = Instant::now();
    let mut reader = store.reader(Hlc::MIN, None).expect("reader");
    let mut read = 0usize;
    loop {
        let chunk = reader.next_chunk(1000).expect("read");
        if chunk.is_empty() {
            break;
        }
        read += chunk.len();
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "read back: {read} records in {elapsed:.2} s, {:.0} records/s",
        read as f64 / elapsed
    );
    store.close().expect("close");

    let started = Instant::now();
    let (store, report) = Store::open(StoreConfig::new(dir.path())).expect("reopen store");
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "recovery: {} records in {} segments in {elapsed:.2} s, {:.0} records/s",
        report.records,
        report.segments,
        report.records as f64 / elapsed
    );
    store.close().expect("close");
}
