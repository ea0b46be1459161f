//! Engine throughput on preloaded traces: the benchmark queries Q1–Q4 of the performance
//! issue, evaluated over synthetic traces from `log_server::synth` already in columnar form.
//! Output records are counted, not built or printed, so this measures evaluation: apply each
//! step, keep the incremental parts current, decide every candidate, find the witness of
//! each emitted cut. (Building and printing records is measured end to end by bench/run.sh.)
//!
//! Throughput is reported per step; in these traces every step is a candidate cut, so
//! elements/s is cuts/s. Run: `cargo bench -p rql-exec --bench engine`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use log_server::synth::{generate, Scenario};
use log_server::Record;
use rql_exec::{catalog_of_columnar, replay_columnar, Columnar, Emitted, ExecOptions};
use rql_planner::plan_statement;

const Q1: &str = "SELECT inv.a, inv.b, inv.c FROM inv WHEN (inv.a + inv.b <= inv.c) LINK SAME_NODE";
const Q2: &str = "SELECT inv.c FROM inv WHEN inv.c > inv.a + inv.b";
const Q3: &str = "SELECT zk.version FROM zk WHEN MAX(zk.version) - MIN(zk.version) >= 2";
const Q4: &str = "SELECT zk.version FROM zk WHEN (zk.version >= 7) LINK EACH_NODE";

/// Steps per trace: enough that per-query setup is noise, small enough for quick runs.
const STEPS: u64 = 200_000;

fn trace(scenario: Scenario, nodes: usize) -> Columnar {
    let mut records: Vec<Record> = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = generate(scenario, nodes, STEPS, 1, &mut |r| {
        records.push(r);
        Ok(())
    });
    let refs: Vec<&Record> = records.iter().collect();
    Columnar::from_records(&refs)
}

fn bench_query(c: &mut Criterion, name: &str, query: &str, scenario: Scenario, nodes: &[usize]) {
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    for &n in nodes {
        let cols = trace(scenario, n);
        let stmt = rql_parser::parse_single(query).expect("benchmark query parses");
        let plan = plan_statement(&stmt, query, &catalog_of_columnar(&cols))
            .expect("benchmark query plans");
        group.throughput(Throughput::Elements(cols.steps.groups.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &cols, |b, cols| {
            b.iter(|| {
                let mut emitted = 0u64;
                let stats =
                    replay_columnar(&plan, cols, ExecOptions::default(), &mut |r: Emitted| {
                        emitted += 1;
                        std::hint::black_box(r.hlc());
                    })
                    .expect("benchmark query runs");
                std::hint::black_box((emitted, stats.candidates))
            })
        });
    }
    group.finish();
}

fn engine(c: &mut Criterion) {
    bench_query(c, "Q1_same_node", Q1, Scenario::Invariant, &[32]);
    bench_query(
        c,
        "Q2_free_placeholders",
        Q2,
        Scenario::Invariant,
        &[8, 128, 1024],
    );
    bench_query(c, "Q3_max_minus_min", Q3, Scenario::Staleness, &[32, 1024]);
    bench_query(c, "Q4_each_node", Q4, Scenario::Staleness, &[32]);
}

criterion_group!(benches, engine);
criterion_main!(benches);
