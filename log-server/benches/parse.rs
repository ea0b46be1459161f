//! Parsing speed of trace lines: `parse_record` on typical lines, and `read_trace` over a
//! generated in-memory trace (lines/s and bytes/s).
//!
//! `cargo bench -p log-server --bench parse`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use log_server::{parse_record, read_trace, ReadOptions};

const LINES: [(&str, &str); 6] = [
    (
        "one_int",
        r#"{"node":"n17","hlc":[1700000001234,3],"set":{"inv.a":57}}"#,
    ),
    (
        "three_ints",
        r#"{"node":"n1","hlc":[1700000000123,0],"set":{"inv.a":5,"inv.b":3,"inv.c":9}}"#,
    ),
    (
        "float_and_set",
        r#"{"node":"n2","hlc":[1700000000125,2],"set":{"inv.a":1.5,"zk.members":["n1","n2"]},"unset":["inv.b"]}"#,
    ),
    (
        "add_remove",
        r#"{"node":"n2","hlc":[1700000000130,0],"add":{"zk.members":["n3"]},"remove":{"zk.members":["n1"]}}"#,
    ),
    ("heartbeat", r#"{"node":"n3","hlc":[1700000000131,0]}"#),
    (
        "string_struct_pt",
        r#"{"node":"zk-2","hlc":111411204653580288,"set":{"zk.leader":"n1","zk.cfg":{"epoch":4,"ratio":0.25}},"pt":1700000071001}"#,
    ),
];

fn parse_lines(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_record");
    for (name, line) in LINES {
        assert!(parse_record(line.as_bytes()).is_ok(), "{name}");
        group.throughput(Throughput::Bytes(line.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| parse_record(black_box(line.as_bytes())))
        });
    }
    group.finish();
}

/// A trace like `rql gen --scenario invariant`: 32 nodes, one variable changed per line.
fn invariant_trace(lines: usize) -> String {
    let mut out = String::new();
    let mut x: u64 = 1;
    for i in 0..lines {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let node = (x >> 33) % 32 + 1;
        let var = ["inv.a", "inv.b", "inv.c"][((x >> 40) % 3) as usize];
        let value = (x >> 50) % 100;
        out.push_str(&format!(
            "{{\"node\":\"n{node}\",\"hlc\":[{},{}],\"set\":{{\"{var}\":{value}}}}}\n",
            1_700_000_000_000u64 + i as u64 / 4,
            i % 4
        ));
    }
    out
}

fn read_whole_trace(c: &mut Criterion) {
    let text = invariant_trace(100_000);
    let mut group = c.benchmark_group("read_trace");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("invariant_100k_lines", |b| {
        b.iter_batched(
            || text.as_bytes(),
            |bytes| read_trace(bytes, &ReadOptions::default()).map(|t| t.records.len()),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, parse_lines, read_whole_trace);
criterion_main!(benches);
