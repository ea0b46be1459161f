//! Shared helpers for the integration and conformance tests: where the shared examples live,
//! how to run a query over a trace through the library, and the comparison rule of
//! `../shared/examples/cmp.py` in Rust, and a deliberately naive second evaluator ([`naive`])
//! for the differential property test.

pub mod compare;
pub mod naive;

use std::path::{Path, PathBuf};

use log_server::{read_traces, ReadOptions, Record, TraceInput};
use rql_exec::{catalog_of, replay, ExecOptions, OutputRecord, Stats};
use rql_planner::plan_statement;

/// `../shared/examples`, beside the checkout (as in CI).
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/examples")
}

/// One example folder: its name and its queries, numbered from 1 as in `expected_K.*`.
pub struct ExampleQueries {
    pub folder: String,
    pub queries: Vec<(usize, String)>,
}

/// Every folder of the shared examples with a `queries.rql`, sorted by name. Panics (failing
/// the test) if the examples are missing: CI must have `../shared` beside the checkout.
pub fn example_queries() -> Vec<ExampleQueries> {
    let dir = examples_dir();
    let mut out = Vec::new();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e} (is ../shared beside the checkout?)",
            dir.display()
        )
    });
    for entry in entries.flatten() {
        let path = entry.path().join("queries.rql");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let queries = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| (i + 1, l.to_string()))
            .collect();
        out.push(ExampleQueries {
            folder: entry.file_name().to_string_lossy().into_owned(),
            queries,
        });
    }
    out.sort_by(|a, b| a.folder.cmp(&b.folder));
    out
}

/// Read an NDJSON trace file into records sorted by HLC.
pub fn read_trace_records(path: &Path) -> Result<Vec<Record>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let input = TraceInput {
        name: path.display().to_string(),
        reader: Box::new(std::io::BufReader::new(file)),
    };
    let trace = read_traces(vec![input], &ReadOptions::default()).map_err(|e| e.to_string())?;
    Ok(trace.records.into_iter().map(|(_, r)| r).collect())
}

/// Parse an inline NDJSON trace (`rql-trace/1`) into records sorted by HLC. Panics (failing the
/// test) if the trace is malformed.
pub fn records_from_ndjson(text: &str) -> Vec<Record> {
    log_server::read_trace(std::io::Cursor::new(text), &ReadOptions::default())
        .unwrap_or_else(|e| panic!("bad inline trace: {e}"))
        .records
        .into_iter()
        .map(|(_, r)| r)
        .collect()
}

/// Run one query (text) over sorted records with the engine; JSON Lines out, or the error.
pub fn run_query(query: &str, records: &[Record]) -> Result<Vec<String>, String> {
    run_query_with(query, records, ExecOptions::default()).map(|(lines, _)| lines)
}

/// [`run_query`] with explicit engine options; also returns the query's statistics.
pub fn run_query_with(
    query: &str,
    records: &[Record],
    opts: ExecOptions,
) -> Result<(Vec<String>, Stats), String> {
    let stmt = rql_parser::parse_single(query).map_err(|d| d.one_line(query))?;
    let refs: Vec<&Record> = records.iter().collect();
    let catalog = catalog_of(refs.iter().copied());
    let plan = plan_statement(&stmt, query, &catalog).map_err(|d| d.one_line(query))?;
    let mut lines = Vec::new();
    let stats = replay(&plan, &refs, opts, &mut |r: OutputRecord| {
        lines.push(serde_json::to_string(&r).unwrap_or_default())
    })
    .map_err(|e| e.to_string())?;
    Ok((lines, stats))
}

/// Run one planned query through the streaming driver (`rql replay --stream`): `inputs` are
/// NDJSON texts, each in HLC order, merged by [`log_server::SortedMerge`] and read twice.
pub fn run_streaming(
    plan: &rql_planner::Plan,
    inputs: &[String],
    opts: ExecOptions,
) -> Result<Vec<OutputRecord>, String> {
    let open = || merged(inputs);
    let merged = open();
    let sources = merged.sources().to_vec();
    let scan = rql_exec::stream::scan(merged, &sources, false).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    rql_exec::stream::replay_stream(plan, &scan, open(), opts, &mut |e| out.push(e.record()))
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// [`run_streaming`], with the output written the way `rql replay --format json` writes it
/// (JSON straight from the engine's state, [`rql_exec::Emitted::write`]): one string per line.
pub fn run_streaming_json(
    plan: &rql_planner::Plan,
    inputs: &[String],
    opts: ExecOptions,
) -> Result<Vec<String>, String> {
    let open = || merged(inputs);
    let merged = open();
    let sources = merged.sources().to_vec();
    let scan = rql_exec::stream::scan(merged, &sources, false).map_err(|e| e.to_string())?;
    let changes = plan.emit == rql_parser::Emit::Changes;
    let mut writer = rql_exec::RecordWriter::new(rql_exec::Format::Json, Vec::new(), changes);
    let mut failed = None;
    rql_exec::stream::replay_stream(plan, &scan, open(), opts, &mut |e| {
        if let Err(err) = e.write(&mut writer) {
            failed = Some(err.to_string());
        }
    })
    .map_err(|e| e.to_string())?;
    if let Some(e) = failed {
        return Err(e);
    }
    let bytes = writer.finish().map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .map(str::to_string)
        .collect())
}

/// NDJSON texts, each in HLC order, merged into one sorted record stream.
fn merged(inputs: &[String]) -> log_server::SortedMerge<'static> {
    log_server::SortedMerge::new(
        inputs
            .iter()
            .enumerate()
            .map(|(i, text)| TraceInput {
                name: format!("input{i}"),
                reader: Box::new(std::io::Cursor::new(text.clone().into_bytes())),
            })
            .collect(),
    )
}

/// Sorted records split into one NDJSON input per node (each in HLC order), the usual shape
/// of a trace collected from a cluster.
pub fn inputs_per_node(records: &[Record]) -> Vec<String> {
    let mut per_node: std::collections::BTreeMap<&str, String> = Default::default();
    for r in records {
        let text = per_node.entry(r.node.as_str()).or_default();
        text.push_str(&r.to_json_line());
        text.push('\n');
    }
    per_node.into_values().collect()
}

/// What a live query emits when `records` (sorted by HLC) arrive in the order `arrival` gives
/// (a permutation of their indices that keeps each node's records in order), with every node
/// announced by a heartbeat at HLC 0 first and a closing heartbeat from every node at `close`
/// (after which every step is final). `None` if some record arrived late: the SPEC promises
/// replay's output only when none is. The records a replay must see for the same output are
/// `with_heartbeats(records, close)`.
pub fn run_live(
    plan: &rql_planner::Plan,
    records: &[Record],
    arrival: &[usize],
    close: log_server::Hlc,
    batch: usize,
) -> Result<Option<Vec<OutputRecord>>, String> {
    use rql_exec::live::{LiveOptions, LiveQuery};
    let opts = LiveOptions {
        // Nobody goes idle: time stands still.
        idle_timeout_ms: u64::MAX,
        exec: ExecOptions::default(),
    };
    let mut live = LiveQuery::new(plan, opts);
    let mut out = Vec::new();
    let mut emit = |r: OutputRecord| out.push(r);
    live.start(0, &mut emit).map_err(|e| e.to_string())?;
    let nodes: std::collections::BTreeSet<&str> = records.iter().map(|r| r.node.as_str()).collect();
    for n in &nodes {
        live.push(Record::heartbeat(n.to_string(), log_server::Hlc::MIN), 0);
    }
    for (i, &k) in arrival.iter().enumerate() {
        live.push(records[k].clone(), 0);
        if (i + 1) % batch.max(1) == 0 {
            live.advance(0, &mut emit).map_err(|e| e.to_string())?;
        }
    }
    for n in &nodes {
        live.push(Record::heartbeat(n.to_string(), close), 0);
    }
    live.advance(0, &mut emit).map_err(|e| e.to_string())?;
    if live.stats().late > 0 {
        return Ok(None);
    }
    Ok(Some(out))
}

/// `records` with the heartbeats [`run_live`] adds, sorted as a replay sorts them.
pub fn with_heartbeats(records: &[Record], close: log_server::Hlc) -> Vec<Record> {
    let nodes: std::collections::BTreeSet<&str> = records.iter().map(|r| r.node.as_str()).collect();
    let mut all: Vec<Record> = nodes
        .iter()
        .map(|n| Record::heartbeat(n.to_string(), log_server::Hlc::MIN))
        .collect();
    all.extend(records.iter().cloned());
    all.extend(
        nodes
            .iter()
            .map(|n| Record::heartbeat(n.to_string(), close)),
    );
    all.sort_by_key(|r| r.hlc);
    all
}
