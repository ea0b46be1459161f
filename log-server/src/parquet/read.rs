//! Reading Parquet traces through DataFusion: the files are scanned with the query's exact
//! filters pushed down (rows past the last time any query looks at, variables of logs no query
//! reads, nodes outside every AT NODES), sorted by HLC (spilling to disk under a memory limit),
//! and walked row by row into [`Columnar`] form or into [`Record`]s. Every row is checked as
//! strictly as an NDJSON line; an error names the file, the record and the fix.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, UInt32Array,
    UInt64Array,
};
use datafusion::arrow::datatypes::DataType;
use datafusion::dataframe::DataFrame;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::functions_aggregate::expr_fn::max;
use datafusion::logical_expr::{cast, col, lit, Expr};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use futures_util::StreamExt;
use rustc_hash::FxHashMap;

use super::{META_KEYS, META_MAX_HLC, META_RECORDS};
use crate::columnar::VarTable;
use crate::columnar::{
    assemble, CRecord, Columnar, Names, NodeIdx, NodeTable, Op, SetKinds, Steps, VarIdx,
};
use crate::hlc::Hlc;
use crate::ndjson::parse_value;
use crate::record::{Record, VarName, MAX_NODE_ID_BYTES};
use crate::value::{SetValue, Value};

/// How the reader may use resources.
#[derive(Clone, Debug, Default)]
pub struct ParquetOptions {
    /// Bytes DataFusion may hold while sorting; past it the sort spills to disk. `None`: no
    /// limit.
    pub memory_limit: Option<usize>,
    /// Where spill files go (default: the OS temporary directory).
    pub temp_dir: Option<PathBuf>,
}

/// Rows a reader may leave out because no query can see them (see `rql replay`, which derives
/// them from the plans). `None` keeps everything of that kind. `leave` and `heartbeat` rows
/// are never dropped by `keys`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushDown {
    /// Keep rows with `hlc <=` this.
    pub until: Option<Hlc>,
    /// Keep changes of these variables only (`log.key`).
    pub keys: Option<Vec<String>>,
    /// Keep rows of these nodes only.
    pub nodes: Option<Vec<String>>,
}

impl PushDown {
    pub fn is_empty(&self) -> bool {
        self.until.is_none() && self.keys.is_none() && self.nodes.is_none()
    }
}

/// A Parquet trace read into memory for replay.
#[derive(Clone, Debug, Default)]
pub struct ParquetTrace {
    pub cols: Columnar,
    pub sources: Vec<String>,
    /// Records kept (heartbeats included).
    pub records: usize,
    /// Whether DataFusion had to sort the rows (the files were not in (hlc, rec, idx) order,
    /// or there were several).
    pub sorted_by_datafusion: bool,
}

/// What planning needs from a whole trace before any filter: every variable named, and the
/// largest HLC (NOW of a replay is its physical part).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceSummary {
    pub keys: Vec<String>,
    pub max_hlc: Option<Hlc>,
}

/// The Parquet files named by `paths`: files as given, directories expanded to their
/// `*.parquet` files sorted by name (records with equal HLCs keep that order).
pub fn parquet_files(paths: &[String]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for p in paths {
        let path = Path::new(p);
        if path.is_dir() {
            let entries =
                std::fs::read_dir(path).map_err(|e| format!("cannot list directory {p}: {e}"))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "parquet") && f.is_file())
                .collect();
            if found.is_empty() {
                return Err(format!(
                    "directory {p} holds no .parquet files\nhint: convert NDJSON traces with \
                     `rql convert TRACE.ndjson {p}/TRACE.parquet`"
                ));
            }
            found.sort();
            files.extend(found);
        } else if path.is_file() {
            files.push(path.to_path_buf());
        } else {
            return Err(format!("cannot open trace {p}: no such file or directory"));
        }
    }
    Ok(files)
}

/// The columns a reader needs, and the type each is read as (other integer, float and string
/// types are cast; anything else is an error naming the column).
const COLUMNS: [(&str, DataType); 11] = [
    ("rec", DataType::UInt64),
    ("idx", DataType::UInt32),
    ("node", DataType::Utf8),
    ("hlc", DataType::UInt64),
    ("op", DataType::Utf8),
    ("key", DataType::Utf8),
    ("v_int", DataType::Int64),
    ("v_float", DataType::Float64),
    ("v_str", DataType::Utf8),
    ("v_bool", DataType::Boolean),
    ("v_json", DataType::Utf8),
];

/// Whether a column stored as `from` can be read as `to` without changing what it means.
fn compatible(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let int = |t: &DataType| {
        matches!(
            t,
            Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64
        )
    };
    let string = |t: &DataType| {
        matches!(t, Utf8 | LargeUtf8 | Utf8View)
            || matches!(t, Dictionary(_, v) if matches!(**v, Utf8 | LargeUtf8 | Utf8View))
    };
    // A column with every value missing can be `Null` in files from other tools.
    if matches!(from, Null) {
        return true;
    }
    match to {
        UInt64 | UInt32 | Int64 => int(from),
        Float64 => matches!(from, Float16 | Float32 | Float64),
        Utf8 => string(from),
        Boolean => matches!(from, Boolean),
        _ => false,
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .build()
        .map_err(|e| format!("cannot start the Parquet reader's threads: {e}"))
}

pub(crate) fn session(
    opts: &ParquetOptions,
    partitions: Option<usize>,
) -> Result<SessionContext, String> {
    // Plain strings (not views): the row walker reads `StringArray`s.
    let mut config = SessionConfig::new().set_bool(
        "datafusion.execution.parquet.schema_force_view_types",
        false,
    );
    if let Some(n) = partitions {
        // Partitions are then contiguous ranges of the input in order (a file split by row
        // groups), which the readers rely on; round robin would deal batches out of order.
        // (Nor may an idle partition steal a sibling's row groups at run time: the order of
        // the ranges would then depend on timing.)
        config = config
            .with_target_partitions(n)
            .set_bool("datafusion.optimizer.enable_round_robin_repartition", false)
            .set_bool(
                "datafusion.execution.enable_file_stream_work_stealing",
                false,
            );
    }
    // DataFusion accounts for the sort's buffers, not for decoded row groups, the merge's
    // read-back batches or the engine: half the limit is its pool, the other half room for
    // those (measured: peak RSS stays within the limit plus a fixed ~256 MB, README).
    let pool = opts.memory_limit.map(|limit| limit / 2);
    if let Some(limit) = pool {
        // Each sorting partition reserves this up front for merging its spill files (10 MiB
        // by default); under a small limit that reservation alone would exhaust the pool.
        let per_partition = limit / (4 * config.target_partitions().max(1));
        config = config
            .set_usize(
                "datafusion.execution.sort_spill_reservation_bytes",
                per_partition.clamp(64 << 10, 10 << 20),
            )
            // One sort over all inputs (several files are several partitions): per-partition
            // sorts would each reserve memory, and their final merge cannot spill.
            .set_bool("datafusion.optimizer.repartition_sorts", false);
    }
    let mut rt = RuntimeEnvBuilder::new();
    if let Some(limit) = pool {
        // Spilling operators (the sort) share the pool fairly and spill instead of failing.
        rt = rt.with_memory_pool(Arc::new(FairSpillPool::new(limit)));
    }
    if let Some(dir) = &opts.temp_dir {
        rt = rt.with_temp_file_path(dir.clone());
    }
    let rt = rt
        .build_arc()
        .map_err(|e| format!("cannot set up the Parquet reader: {e}"))?;
    Ok(SessionContext::new_with_config_rt(config, rt))
}

/// The rows of all `files` as one frame of the [`COLUMNS`] (plus `pt` if asked, and `file`,
/// the file's index), filtered by `push`.
async fn frame(
    ctx: &SessionContext,
    files: &[PathBuf],
    push: &PushDown,
    with_pt: bool,
) -> Result<DataFrame, String> {
    let mut all: Option<DataFrame> = None;
    for (i, file) in files.iter().enumerate() {
        let shown = file.display();
        let path = file
            .to_str()
            .ok_or_else(|| format!("{shown}: the path is not UTF-8, which the reader needs"))?;
        let opts = ParquetReadOptions {
            // Files are chosen by the caller (any name), not by DataFusion's extension filter.
            file_extension: "",
            ..ParquetReadOptions::default()
        };
        let df = ctx
            .read_parquet(path, opts)
            .await
            .map_err(|e| format!("{shown}: cannot read it as Parquet: {e}"))?;
        let schema = df.schema().clone();
        let mut exprs = Vec::new();
        let mut wanted: Vec<(&str, DataType)> = COLUMNS.to_vec();
        if with_pt {
            wanted.push(("pt", DataType::UInt64));
        }
        for (name, ty) in wanted {
            let field = match schema.field_with_unqualified_name(name) {
                Ok(f) => f,
                // `pt` is optional: traces without physical clock readings may leave it out.
                Err(_) if name == "pt" => {
                    exprs.push(cast(lit(datafusion::scalar::ScalarValue::Null), ty).alias(name));
                    continue;
                }
                Err(_) => {
                    return Err(format!(
                        "{shown}: not a trace: column `{name}` is missing (a Parquet trace has \
                         columns rec, idx, node, hlc, op, key, v_int, v_float, v_str, v_bool, \
                         v_json and optionally pt)\nhint: write Parquet traces with \
                         `rql convert TRACE.ndjson TRACE.parquet`"
                    ))
                }
            };
            if field.data_type() == &ty {
                exprs.push(col(name));
            } else if compatible(field.data_type(), &ty) {
                exprs.push(cast(col(name), ty).alias(name));
            } else {
                return Err(format!(
                    "{shown}: column `{name}` has type {}, which cannot be read as {ty}\nhint: \
                     store `{name}` as {ty} (see the Parquet trace schema in `rql convert --help`)",
                    field.data_type()
                ));
            }
        }
        exprs.push(lit(i as u32).alias("file"));
        let mut df = df.select(exprs).map_err(|e| format!("{shown}: {e}"))?;
        if let Some(filter) = filter(push) {
            df = df.filter(filter).map_err(|e| format!("{shown}: {e}"))?;
        }
        all = Some(match all {
            None => df,
            Some(a) => a.union(df).map_err(|e| format!("{shown}: {e}"))?,
        });
    }
    all.ok_or_else(|| "no trace files given".to_string())
}

fn filter(push: &PushDown) -> Option<Expr> {
    let mut parts = Vec::new();
    if let Some(until) = push.until {
        parts.push(col("hlc").lt_eq(lit(until.packed())));
    }
    if let Some(keys) = &push.keys {
        let list = keys.iter().map(|k| lit(k.as_str())).collect();
        // Leave and heartbeat rows have no key and are always kept: they move P(t) and
        // membership.
        parts.push(col("key").is_null().or(col("key").in_list(list, false)));
    }
    if let Some(nodes) = &push.nodes {
        let list = nodes.iter().map(|n| lit(n.as_str())).collect();
        parts.push(col("node").in_list(list, false));
    }
    parts.into_iter().reduce(Expr::and)
}

fn sort_order() -> Vec<datafusion::logical_expr::SortExpr> {
    ["hlc", "file", "rec", "idx"]
        .iter()
        .map(|c| col(*c).sort(true, false))
        .collect()
}

/// Runs `df` and feeds every batch to `walker`.
async fn walk(df: DataFrame, walker: &mut Walker<impl Sink>) -> Result<(), Walk> {
    let stream = df
        .execute_stream()
        .await
        .map_err(|e| Walk::Error(datafusion_error(&e)))?;
    walk_stream(stream, walker).await
}

async fn walk_stream(
    mut stream: SendableRecordBatchStream,
    walker: &mut Walker<impl Sink>,
) -> Result<(), Walk> {
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| Walk::Error(datafusion_error(&e)))?;
        walker.batch(&batch)?;
        if !walker.sink.wants_more() {
            break;
        }
    }
    walker.finish().map_err(Walk::Error)
}

fn datafusion_error(e: &datafusion::error::DataFusionError) -> String {
    let text = e.to_string();
    if text.contains("Resources exhausted") || text.contains("ResourcesExhausted") {
        format!(
            "reading the trace ran out of memory: {text}\nhint: raise --memory-limit, or make \
             room in the temporary directory for spill files"
        )
    } else {
        format!("reading the trace failed: {text}")
    }
}

fn display_names(files: &[PathBuf]) -> Arc<[String]> {
    files.iter().map(|f| f.display().to_string()).collect()
}

/// Walks the rows of `files` into `sink` in (hlc, file, rec, idx) order: with `sort`, through
/// DataFusion's sort; without, in file order, stopping with [`Walk::Unsorted`] at the first
/// row out of order.
async fn read_rows<S: Sink>(
    files: &[PathBuf],
    push: &PushDown,
    opts: &ParquetOptions,
    with_pt: bool,
    sink: S,
    sort: bool,
) -> Result<S, Walk> {
    // Without a sort, one partition keeps the file's row order. With one under a memory
    // limit, one partition too: the sort spills its runs and merges them itself; with
    // several, the final cross-partition merge cannot spill and fails once the sorters hold
    // the pool.
    let partitions = if sort {
        opts.memory_limit.map(|_| 1)
    } else {
        Some(1)
    };
    let ctx = session(opts, partitions).map_err(Walk::Error)?;
    let mut df = frame(&ctx, files, push, with_pt)
        .await
        .map_err(Walk::Error)?;
    if sort {
        df = df
            .sort(sort_order())
            .map_err(|e| Walk::Error(e.to_string()))?;
    }
    let mut walker = Walker::new(display_names(files), sink, !sort);
    walk(df, &mut walker).await?;
    Ok(walker.sink)
}

/// Reads the rows of `files` in (hlc, file, rec, idx) order into a sink: first without a sort
/// (one file written sorted, the usual case, streams straight through), and if that finds a
/// row out of order, again with DataFusion's sort. Also says whether the sort was needed.
async fn read_into<S: Sink>(
    files: &[PathBuf],
    push: &PushDown,
    opts: &ParquetOptions,
    with_pt: bool,
    make: impl Fn() -> S,
) -> Result<(S, bool), String> {
    if files.len() == 1 {
        match read_rows(files, push, opts, with_pt, make(), false).await {
            Ok(sink) => return Ok((sink, false)),
            Err(Walk::Error(e)) => return Err(e),
            Err(Walk::Unsorted) => {}
        }
    }
    match read_rows(files, push, opts, with_pt, make(), true).await {
        Ok(sink) => Ok((sink, true)),
        Err(Walk::Error(e)) => Err(e),
        Err(Walk::Unsorted) => Err("the sorted rows came out of order".to_string()),
    }
}

/// The sort-free read of one file into [`Columnar`] rows, its row groups decoded and walked
/// on every core: one DataFusion partition per thread (each a contiguous range of row groups,
/// in order), the parts joined end to end. `None` unless that gave exactly what the one-walker
/// read gives (a row out of order, a bad row, a record the join cannot take): the caller then
/// reads again the sequential way, which finds the same rows or the same first error.
async fn read_file_parallel(
    files: &[PathBuf],
    push: &PushDown,
    opts: &ParquetOptions,
) -> Result<Option<ColumnarSink>, String> {
    let threads = crate::chunked::parse_threads();
    if files.len() != 1 || threads < 2 {
        return Ok(None);
    }
    let ctx = session(opts, Some(threads))?;
    let df = frame(&ctx, files, push, false).await?;
    let streams = df
        .execute_stream_partitioned()
        .await
        .map_err(|e| datafusion_error(&e))?;
    if streams.len() < 2 {
        return Ok(None);
    }
    let names = display_names(files);
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|stream| {
            let names = names.clone();
            tokio::spawn(async move {
                let mut walker = Walker::new(names, ColumnarSink::default(), true);
                walk_stream(stream, &mut walker).await.ok().map(|()| walker)
            })
        })
        .collect();
    let mut joined: Option<Walker<ColumnarSink>> = None;
    let mut tasks = tasks.into_iter();
    while let Some(task) = tasks.next() {
        let part = match task.await {
            Ok(Some(part)) => Some(part),
            _ => None,
        };
        let joins = match (part, joined.as_mut()) {
            (Some(part), None) => {
                joined = Some(part);
                true
            }
            (Some(part), Some(before)) => before.join(part)?,
            (None, _) => false,
        };
        if !joins {
            // The sequential read takes over: the other ranges' walks are not needed.
            tasks.for_each(|t| t.abort());
            return Ok(None);
        }
    }
    Ok(joined.map(|w| w.sink))
}

/// The names and NOW of a whole trace (before any filter): from the footers [`ParquetWriter`]
/// writes when every file has them, else by a scan of `key` and `hlc`.
///
/// [`ParquetWriter`]: super::ParquetWriter
pub fn trace_summary(files: &[PathBuf], opts: &ParquetOptions) -> Result<TraceSummary, String> {
    if let Some(summary) = summary_from_footers(files) {
        return Ok(summary);
    }
    let rt = runtime()?;
    rt.block_on(async {
        let ctx = session(opts, None)?;
        let df = frame(&ctx, files, &PushDown::default(), false).await?;
        let keys = df
            .clone()
            .filter(col("key").is_not_null())
            .and_then(|d| d.aggregate(vec![col("key")], vec![]))
            .map_err(|e| e.to_string())?
            .collect()
            .await
            .map_err(|e| datafusion_error(&e))?;
        let mut all = BTreeSet::new();
        for batch in &keys {
            let Some(a) = batch.column(0).as_any().downcast_ref::<StringArray>() else {
                return Err("the key column did not read as strings".to_string());
            };
            all.extend(a.iter().flatten().map(str::to_string));
        }
        let top = df
            .aggregate(vec![], vec![max(col("hlc")).alias("m")])
            .map_err(|e| e.to_string())?
            .collect()
            .await
            .map_err(|e| datafusion_error(&e))?;
        let max_hlc = top
            .first()
            .and_then(|b| b.column(0).as_any().downcast_ref::<UInt64Array>().cloned())
            .and_then(|a| (a.len() == 1 && a.is_valid(0)).then(|| Hlc::from_packed(a.value(0))));
        Ok(TraceSummary {
            keys: all.into_iter().collect(),
            max_hlc,
        })
    })
}

/// [`TraceSummary`] from the `rql.*` footer entries, if every file has them.
fn summary_from_footers(files: &[PathBuf]) -> Option<TraceSummary> {
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    let mut keys = BTreeSet::new();
    let mut max_hlc: Option<Hlc> = None;
    for f in files {
        let reader = SerializedFileReader::new(std::fs::File::open(f).ok()?).ok()?;
        let kv = reader.metadata().file_metadata().key_value_metadata()?;
        let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
        let file_keys: Vec<String> = serde_json::from_str(&get(META_KEYS)?).ok()?;
        let top: u64 = get(META_MAX_HLC)?.parse().ok()?;
        let records: u64 = get(META_RECORDS)?.parse().ok()?;
        // A file edited by another tool may keep the footer of the original: trust it only
        // when the row count still matches what the writer wrote.
        if records > reader.metadata().file_metadata().num_rows() as u64 {
            return None;
        }
        keys.extend(file_keys);
        if records > 0 {
            let h = Hlc::from_packed(top);
            max_hlc = Some(max_hlc.map_or(h, |m| m.max(h)));
        }
    }
    Some(TraceSummary {
        keys: keys.into_iter().collect(),
        max_hlc,
    })
}

/// Reads Parquet trace files into [`Columnar`] form for replay, leaving out the rows `push`
/// allows. Node ids are numbered in byte order and records grouped by HLC, as
/// [`read_columnar`](crate::columnar::read_columnar) does; `add`/`remove` on a non-set value
/// is an error.
pub fn read_parquet_columnar(
    files: &[PathBuf],
    push: &PushDown,
    opts: &ParquetOptions,
) -> Result<ParquetTrace, String> {
    let rt = runtime()?;
    let (sink, sorted_by_datafusion) = rt.block_on(async {
        match read_file_parallel(files, push, opts).await? {
            Some(sink) => Ok((sink, false)),
            None => read_into(files, push, opts, false, ColumnarSink::default).await,
        }
    })?;
    let sources: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let records = sink.recs.len();
    let cols = sink.finish(&sources)?;
    Ok(ParquetTrace {
        cols,
        sources,
        records,
        sorted_by_datafusion,
    })
}

/// Reads Parquet trace files as records sorted by HLC (equal HLCs: file order, then `rec`),
/// checked as strictly as NDJSON (`add`/`remove` on a non-set value included).
pub fn read_parquet_records(
    files: &[PathBuf],
    opts: &ParquetOptions,
) -> Result<Vec<Record>, String> {
    let all = PushDown::default();
    let read = read_into(files, &all, opts, true, RecordSink::default);
    let (sink, _) = runtime()?.block_on(read)?;
    let refs: Vec<&Record> = sink.records.iter().collect();
    let cols = Columnar::from_records(&refs);
    if let Err((i, e)) = check_set_changes(&cols) {
        let at = sink.origins.get(i).map_or(String::new(), |(f, r)| {
            let file = files.get(*f as usize).map(|p| p.display().to_string());
            format!("{}: record {r}", file.unwrap_or_default())
        });
        return Err(format!("{at}: {e}"));
    }
    Ok(sink.records)
}

/// What the first pass of a streaming replay learned: the names the engine's dense state
/// needs up front, how many records there are, and whether the rows needed a sort.
#[derive(Clone, Debug, Default)]
pub struct ParquetScan {
    pub names: Names,
    /// Records kept (heartbeats included).
    pub records: u64,
    pub sorted_by_datafusion: bool,
}

/// The first pass of a streaming replay: reads the rows `push` keeps in HLC order (DataFusion's
/// sort, spilling under `opts.memory_limit`, unless one file is already sorted) and checks
/// every record as [`read_parquet_columnar`] does, keeping only the names: memory for the
/// names and the per-node kinds of variables, not for the trace.
pub fn scan_parquet(
    files: &[PathBuf],
    push: &PushDown,
    opts: &ParquetOptions,
) -> Result<ParquetScan, String> {
    let sources = display_names(files);
    let read = read_into(files, push, opts, false, || {
        ScanSink::new(Arc::clone(&sources))
    });
    let (sink, sorted_by_datafusion) = runtime()?.block_on(read)?;
    let mut nodes = sink.nodes.into_names();
    nodes.sort_unstable();
    Ok(ParquetScan {
        names: Names {
            nodes,
            vars: sink.vars,
        },
        records: sink.records,
        sorted_by_datafusion,
    })
}

/// The second pass: the same rows again, in the same order, handed to `feed` as [`Steps`]
/// numbered by `scan.names`, [`BATCH_GROUPS`] HLC groups at a time (a group never split).
/// `feed` returns whether it wants more. Memory: one batch, plus DataFusion's sort buffers
/// (bounded by `opts.memory_limit`).
pub fn stream_parquet(
    files: &[PathBuf],
    push: &PushDown,
    opts: &ParquetOptions,
    scan: &ParquetScan,
    feed: &mut dyn FnMut(&Steps) -> Result<bool, String>,
) -> Result<(), String> {
    let rt = runtime()?;
    let sink = StepsSink::new(&scan.names, feed);
    let sort = scan.sorted_by_datafusion;
    let sink = match rt.block_on(read_rows(files, push, opts, false, sink, sort)) {
        Ok(sink) => sink,
        Err(Walk::Error(e)) => return Err(e),
        Err(Walk::Unsorted) => return Err(changed()),
    };
    if sink.more && !sink.steps.groups.is_empty() {
        (sink.feed)(&sink.steps)?;
    }
    Ok(())
}

/// HLC groups a streaming replay hands over at a time: large enough to amortize the batch,
/// small enough that it is nothing next to the sort's memory.
pub const BATCH_GROUPS: usize = 4096;

fn changed() -> String {
    "the trace changed while it was being replayed (a row the first pass did not see)\nhint: \
     replay a copy that nothing writes to"
        .to_string()
}

/// The first pass's sink: names interned, each record checked (the kinds behind `add` and
/// `remove` errors) and dropped.
struct ScanSink {
    sources: Arc<[String]>,
    nodes: NodeTable,
    vars: VarTable,
    kinds: SetKinds,
    /// The current record's operations.
    ops: Vec<Op>,
    node: NodeIdx,
    origin: (u32, u64),
    records: u64,
}

impl ScanSink {
    fn new(sources: Arc<[String]>) -> ScanSink {
        ScanSink {
            sources,
            nodes: NodeTable::default(),
            vars: VarTable::default(),
            kinds: SetKinds::all(),
            ops: Vec::new(),
            node: 0,
            origin: (0, 0),
            records: 0,
        }
    }
}

impl Sink for ScanSink {
    fn start(
        &mut self,
        node: &str,
        _hlc: Hlc,
        _pt: Option<u64>,
        origin: (u32, u64),
    ) -> Result<(), String> {
        self.node = self.nodes.intern(node);
        self.origin = origin;
        self.ops.clear();
        Ok(())
    }

    fn change(&mut self, change: Change<'_>) -> Result<(), String> {
        let vars = &mut self.vars;
        let op = change.into_op(|k| vars.intern_str(k).ok_or_else(|| bad_key(k)))?;
        self.ops.push(op);
        Ok(())
    }

    fn end(&mut self, leave: bool) -> Result<(), String> {
        let end_op = self.ops.len() as u32;
        let rec = CRecord {
            node: self.node,
            first_op: 0,
            end_op,
            leave,
            heartbeat: end_op == 0 && !leave,
        };
        if let Err(e) = self.kinds.apply(&rec, &self.ops, &self.vars) {
            let (file, rec) = self.origin;
            let name = self.sources.get(file as usize).map_or("?", String::as_str);
            return Err(format!(
                "{name}: record {rec}: {e}\nhint: fix the row, or rewrite the file with `rql \
                 convert`"
            ));
        }
        self.records += 1;
        Ok(())
    }
}

/// The second pass's sink: records as [`Steps`] against the first pass's names, handed to
/// `feed` a batch at a time.
struct StepsSink<'n, 'f> {
    names: &'n Names,
    node_index: FxHashMap<&'n str, NodeIdx>,
    feed: &'f mut dyn FnMut(&Steps) -> Result<bool, String>,
    more: bool,
    steps: Steps,
    node: NodeIdx,
    hlc: Hlc,
    first_op: u32,
}

impl<'n, 'f> StepsSink<'n, 'f> {
    fn new(
        names: &'n Names,
        feed: &'f mut dyn FnMut(&Steps) -> Result<bool, String>,
    ) -> StepsSink<'n, 'f> {
        let node_index = names.node_index();
        StepsSink {
            names,
            node_index,
            feed,
            more: true,
            steps: Steps::default(),
            node: 0,
            hlc: Hlc::default(),
            first_op: 0,
        }
    }
}

impl Sink for StepsSink<'_, '_> {
    fn start(
        &mut self,
        node: &str,
        hlc: Hlc,
        _pt: Option<u64>,
        _origin: (u32, u64),
    ) -> Result<(), String> {
        let new_group = self.steps.groups.last().is_none_or(|g| g.hlc != hlc);
        if new_group && self.steps.groups.len() >= BATCH_GROUPS && self.more {
            self.more = (self.feed)(&self.steps)?;
            self.steps.clear();
        }
        if self
            .names
            .nodes
            .get(self.node as usize)
            .is_none_or(|n| n != node)
        {
            self.node = *self.node_index.get(node).ok_or_else(changed)?;
        }
        self.hlc = hlc;
        self.first_op = self.steps.ops.len() as u32;
        Ok(())
    }

    fn change(&mut self, change: Change<'_>) -> Result<(), String> {
        let vars = &self.names.vars;
        let op = change.into_op(|k| vars.get(k).ok_or_else(changed))?;
        self.steps.ops.push(op);
        Ok(())
    }

    fn end(&mut self, leave: bool) -> Result<(), String> {
        let end_op = self.steps.ops.len() as u32;
        let record = CRecord {
            node: self.node,
            first_op: self.first_op,
            end_op,
            leave,
            heartbeat: end_op == self.first_op && !leave,
        };
        self.steps.push_record(record, self.hlc);
        Ok(())
    }

    fn wants_more(&self) -> bool {
        self.more
    }
}

/// How a walk stops early.
enum Walk {
    Error(String),
    /// A row came before the previous one in (hlc, file, rec, idx) order.
    Unsorted,
}

/// One change as read from a row.
enum Change<'a> {
    Unset(&'a str),
    Set(&'a str, Option<Value>),
    Remove(&'a str, SetValue),
    Add(&'a str, SetValue),
}

impl Change<'_> {
    /// The operation, its variable numbered by `var` (each sink has its own way: interning, or
    /// a lookup in names known in advance).
    fn into_op(self, mut var: impl FnMut(&str) -> Result<VarIdx, String>) -> Result<Op, String> {
        Ok(match self {
            Change::Unset(k) | Change::Set(k, None) => Op::Unset(var(k)?),
            Change::Set(k, Some(v)) => Op::Set(var(k)?, v),
            Change::Remove(k, s) => Op::Remove(var(k)?, s),
            Change::Add(k, s) => Op::Add(var(k)?, s),
        })
    }
}

/// Where rows go, one record at a time.
trait Sink {
    fn start(
        &mut self,
        node: &str,
        hlc: Hlc,
        pt: Option<u64>,
        origin: (u32, u64),
    ) -> Result<(), String>;
    fn change(&mut self, change: Change<'_>) -> Result<(), String>;
    fn end(&mut self, leave: bool) -> Result<(), String>;
    /// False once the sink needs no more rows (checked between batches).
    fn wants_more(&self) -> bool {
        true
    }
}

/// The record being read.
struct Current {
    file: u32,
    rec: u64,
    idx: u32,
    hlc: u64,
    node: String,
    /// Rank (in `OPS`) of the last row: rows of a record must go in apply order.
    rank: usize,
    leave: bool,
}

/// Turns batches of rows into records for a [`Sink`].
struct Walker<S> {
    files: Arc<[String]>,
    sink: S,
    /// Stop at the first row out of order (the sort-free attempt) instead of trusting the sort.
    check_order: bool,
    cur: Option<Current>,
    /// The first row's (hlc, file, rec, idx) and rank, and the last record once the walk is
    /// over: where a walk of the rows before or after joins this one.
    first: Option<((u64, u32, u64, u32), usize)>,
    last: Option<Current>,
}

/// Typed views of a batch's columns.
struct Columns<'b> {
    rec: &'b UInt64Array,
    idx: &'b UInt32Array,
    node: &'b StringArray,
    hlc: &'b UInt64Array,
    op: &'b StringArray,
    key: &'b StringArray,
    v_int: &'b Int64Array,
    v_float: &'b Float64Array,
    v_str: &'b StringArray,
    v_bool: &'b BooleanArray,
    v_json: &'b StringArray,
    pt: Option<&'b UInt64Array>,
    file: &'b UInt32Array,
    /// Whether a column every row needs has a null in this batch (else no row is checked).
    required_nulls: bool,
}

fn column<'b, T: 'static>(batch: &'b RecordBatch, name: &str) -> Result<&'b T, String> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| format!("internal: column `{name}` did not read as expected"))
}

impl<'b> Columns<'b> {
    fn of(batch: &'b RecordBatch) -> Result<Columns<'b>, String> {
        let (rec, idx, node, hlc, op): (
            &UInt64Array,
            &UInt32Array,
            &StringArray,
            &UInt64Array,
            &StringArray,
        ) = (
            column(batch, "rec")?,
            column(batch, "idx")?,
            column(batch, "node")?,
            column(batch, "hlc")?,
            column(batch, "op")?,
        );
        let required_nulls = rec.null_count()
            + idx.null_count()
            + node.null_count()
            + hlc.null_count()
            + op.null_count()
            > 0;
        Ok(Columns {
            rec,
            idx,
            node,
            hlc,
            op,
            required_nulls,
            key: column(batch, "key")?,
            v_int: column(batch, "v_int")?,
            v_float: column(batch, "v_float")?,
            v_str: column(batch, "v_str")?,
            v_bool: column(batch, "v_bool")?,
            v_json: column(batch, "v_json")?,
            pt: column(batch, "pt").ok(),
            file: column(batch, "file")?,
        })
    }
}

fn rank_of(op: &str) -> Option<usize> {
    // A match (lengths first) rather than a search of `OPS`: this runs for every row.
    let rank = match op {
        "set" => 1,
        "unset" => 0,
        "add" => 3,
        "remove" => 2,
        "leave" => 4,
        "heartbeat" => 5,
        _ => return None,
    };
    debug_assert_eq!(super::OPS[rank], op);
    Some(rank)
}

/// Whether a row of rank `next` may follow, in one record, a row of rank `before` (and a
/// `leave` row if `left`): apply order, nothing after `leave`, a heartbeat alone.
fn rows_follow(before: usize, left: bool, next: usize) -> bool {
    const HEARTBEAT: usize = 5;
    next >= before && !left && next != HEARTBEAT && before != HEARTBEAT
}

impl Walker<ColumnarSink> {
    /// Appends `next`, the walk of the rows right after this walk's. False if its first row
    /// does not follow this walk's last in order, or continues its last record in a way one
    /// walker would not take (the sequential read then says why).
    fn join(&mut self, next: Walker<ColumnarSink>) -> Result<bool, String> {
        let (Some(last), Some((first, rank))) = (&self.last, next.first) else {
            if self.last.is_none() {
                *self = next;
            }
            return Ok(true);
        };
        if first <= (last.hlc, last.file, last.rec, last.idx) {
            return Ok(false);
        }
        let continues = (first.1, first.2) == (last.file, last.rec);
        if continues {
            let node = next.sink.recs.first().map(|r| next.sink.nodes.name(r.node));
            if first.0 != last.hlc
                || node != Some(last.node.as_str())
                || !rows_follow(last.rank, last.leave, rank)
            {
                return Ok(false);
            }
        }
        self.last = next.last;
        self.sink.append(next.sink, continues)?;
        Ok(true)
    }
}

impl<S: Sink> Walker<S> {
    fn new(files: Arc<[String]>, sink: S, check_order: bool) -> Walker<S> {
        Walker {
            files,
            sink,
            check_order,
            cur: None,
            first: None,
            last: None,
        }
    }

    /// Ends the last record, keeping it as [`Walker::last`].
    fn finish(&mut self) -> Result<(), String> {
        if let Some(cur) = self.cur.take() {
            self.sink.end(cur.leave)?;
            self.last = Some(cur);
        }
        Ok(())
    }

    fn batch(&mut self, batch: &RecordBatch) -> Result<(), Walk> {
        let c = Columns::of(batch).map_err(Walk::Error)?;
        for i in 0..batch.num_rows() {
            self.row(&c, i)?;
        }
        Ok(())
    }

    fn row(&mut self, c: &Columns<'_>, i: usize) -> Result<(), Walk> {
        let file = c.file.value(i);
        let files = &self.files;
        let bad = |what: String| {
            Walk::Error(format!(
                "{}: {what}\nhint: fix the row, or rewrite the file with `rql convert`",
                files.get(file as usize).map_or("?", String::as_str)
            ))
        };
        for (name, nulls) in c
            .required_nulls
            .then(|| {
                [
                    ("rec", c.rec.is_null(i)),
                    ("idx", c.idx.is_null(i)),
                    ("node", c.node.is_null(i)),
                    ("hlc", c.hlc.is_null(i)),
                    ("op", c.op.is_null(i)),
                ]
            })
            .into_iter()
            .flatten()
        {
            if nulls {
                return Err(bad(format!(
                    "a row has a null (or negative) `{name}`; every row needs one"
                )));
            }
        }
        let (rec, idx, hlc) = (c.rec.value(i), c.idx.value(i), c.hlc.value(i));
        let node = c.node.value(i);
        let op = c.op.value(i);
        let at = |what: String| {
            let h = Hlc::from_packed(hlc);
            bad(format!(
                "record {rec} (node {node:?}, hlc [{},{}]): {what}",
                h.physical(),
                h.logical()
            ))
        };
        let same_record = match &self.cur {
            Some(cur) => {
                let before = (cur.hlc, cur.file, cur.rec, cur.idx);
                let now = (hlc, file, rec, idx);
                if self.check_order && now <= before {
                    return Err(Walk::Unsorted);
                }
                cur.file == file && cur.rec == rec
            }
            None => false,
        };
        let rank = rank_of(op).ok_or_else(|| {
            at(format!(
                "unknown op {op:?} (expected one of set, unset, add, remove, leave, heartbeat)"
            ))
        })?;
        if self.first.is_none() {
            self.first = Some(((hlc, file, rec, idx), rank));
        }
        if same_record {
            let Some(cur) = self.cur.as_mut() else {
                return Err(at("internal: lost the current record".to_string()));
            };
            if cur.hlc != hlc || cur.node != node {
                return Err(at(format!(
                    "rows of one record disagree on node or hlc (node {:?}, hlc {})",
                    cur.node, cur.hlc
                )));
            }
            if !rows_follow(cur.rank, cur.leave, rank) {
                return Err(at(format!(
                    "row {op:?} (idx {idx}) is out of place: within a record rows go unset, set, \
                     remove, add, then leave; a heartbeat is a record's only row"
                )));
            }
            cur.rank = rank;
            cur.idx = idx;
        } else {
            // The previous record's node id buffer is reused: no allocation per record.
            let mut node_buf = self
                .cur
                .as_mut()
                .map(|c| std::mem::take(&mut c.node))
                .unwrap_or_default();
            node_buf.clear();
            node_buf.push_str(node);
            if let Some(cur) = self.cur.take() {
                self.sink.end(cur.leave).map_err(Walk::Error)?;
            }
            if node.is_empty() || node.len() > MAX_NODE_ID_BYTES {
                return Err(at(format!(
                    "node id must be 1 to {MAX_NODE_ID_BYTES} bytes"
                )));
            }
            let pt = c.pt.and_then(|p| p.is_valid(i).then(|| p.value(i)));
            self.sink
                .start(node, Hlc::from_packed(hlc), pt, (file, rec))
                .map_err(at)?;
            self.cur = Some(Current {
                file,
                rec,
                idx,
                hlc,
                node: node_buf,
                rank,
                leave: false,
            });
        }
        let key = c.key.is_valid(i).then(|| c.key.value(i));
        let typed = [
            ("v_int", c.v_int.is_valid(i)),
            ("v_float", c.v_float.is_valid(i)),
            ("v_str", c.v_str.is_valid(i)),
            ("v_bool", c.v_bool.is_valid(i)),
        ];
        let json = c.v_json.is_valid(i).then(|| c.v_json.value(i));
        // Counted per row; the column names are only listed for an error (no allocation on
        // the hot path).
        let filled = typed.iter().filter(|(_, v)| *v).count() + usize::from(json.is_some());
        let filled_names = || {
            typed
                .iter()
                .filter(|(_, v)| *v)
                .map(|(n, _)| *n)
                .chain(json.map(|_| "v_json"))
                .collect::<Vec<&str>>()
                .join(", ")
        };
        let change = match op {
            "leave" | "heartbeat" => {
                if key.is_some() || filled > 0 {
                    return Err(at(format!(
                        "a {op:?} row has a key or a value; they must be null"
                    )));
                }
                if op == "leave" {
                    if let Some(cur) = self.cur.as_mut() {
                        cur.leave = true;
                    }
                }
                return Ok(());
            }
            _ => {
                let Some(key) = key else {
                    return Err(at(format!("a {op:?} row needs a key (log.key)")));
                };
                match op {
                    "unset" => {
                        if filled > 0 {
                            return Err(at(format!(
                                "an \"unset\" row of {key} has a value in {}; it must have none",
                                filled_names()
                            )));
                        }
                        Change::Unset(key)
                    }
                    "set" => {
                        if filled > 1 {
                            return Err(at(format!(
                                "the \"set\" row of {key} has values in {}; exactly one value \
                                 column may be filled (none means null)",
                                filled_names()
                            )));
                        }
                        let value = if c.v_int.is_valid(i) {
                            Some(Value::Int(c.v_int.value(i)))
                        } else if c.v_float.is_valid(i) {
                            let f = c.v_float.value(i);
                            Some(Value::float(f).ok_or_else(|| {
                                at(format!("v_float of {key} is {f}; floats must be finite"))
                            })?)
                        } else if c.v_str.is_valid(i) {
                            Some(Value::Str(c.v_str.value(i).to_string()))
                        } else if c.v_bool.is_valid(i) {
                            Some(Value::Bool(c.v_bool.value(i)))
                        } else if let Some(text) = json {
                            Some(
                                parse_value(text)
                                    .map_err(|e| at(format!("v_json of {key}: {e}")))?,
                            )
                        } else {
                            None
                        };
                        Change::Set(key, value)
                    }
                    _ => {
                        let elements = match (json, filled) {
                            (Some(text), 1) => match parse_value(text) {
                                Ok(Value::Set(s)) => s,
                                Ok(v) => {
                                    return Err(at(format!(
                                        "v_json of the {op:?} row of {key} is a {}; it must be \
                                         a JSON array of scalars",
                                        v.kind_name()
                                    )))
                                }
                                Err(e) => return Err(at(format!("v_json of {key}: {e}"))),
                            },
                            _ => {
                                return Err(at(format!(
                                    "the {op:?} row of {key} needs its elements in v_json (a \
                                     JSON array) and no other value column"
                                )))
                            }
                        };
                        if op == "add" {
                            Change::Add(key, elements)
                        } else {
                            Change::Remove(key, elements)
                        }
                    }
                }
            }
        };
        self.sink.change(change).map_err(at)
    }
}

fn too_many_records() -> String {
    format!(
        "the trace has more than {} records or changes, too many to replay in memory\nhint: \
         replay it with --memory-limit (or --stream), which reads it a batch at a time",
        u32::MAX - 1
    )
}

fn bad_key(key: &str) -> String {
    format!("bad variable name {key:?} (expected log.key with identifiers [A-Za-z_][A-Za-z0-9_]*)")
}

/// Builds [`Columnar`] straight from rows: names interned as they come, no [`Record`]s.
#[derive(Default)]
struct ColumnarSink {
    nodes: NodeTable,
    vars: VarTable,
    hlcs: Vec<Hlc>,
    recs: Vec<CRecord>,
    origins: Vec<(u32, u64)>,
    ops: Vec<Op>,
    /// Whether some row adds or removes (only then can the `add`/`remove` check fail).
    set_changes: bool,
    node: NodeIdx,
    hlc: Hlc,
    first_op: u32,
}

impl ColumnarSink {
    /// Appends the records of `next` (read from the rows after this sink's); with `continues`
    /// its first record is the rest of this sink's last.
    fn append(&mut self, next: ColumnarSink, continues: bool) -> Result<(), String> {
        if u32::try_from(self.ops.len() + next.ops.len()).is_err()
            || u32::try_from(self.recs.len() + next.recs.len()).is_err()
        {
            return Err(too_many_records());
        }
        let node_map = self.nodes.intern_all(&next.nodes);
        let var_map = self.vars.intern_all(&next.vars);
        self.set_changes |= next.set_changes;
        let base = self.ops.len() as u32;
        let skip = usize::from(continues);
        let (ops, next_ops) = (&mut self.ops, next.ops);
        // The operations (most of the bytes) are moved on another thread while this one moves
        // the records: the join is the only serial step of the read.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                ops.extend(next_ops.into_iter().map(|mut op| {
                    op.renumber(&var_map);
                    op
                }))
            });
            let mut recs = next.recs.into_iter().map(|r| CRecord {
                node: node_map[r.node as usize],
                first_op: r.first_op + base,
                end_op: r.end_op + base,
                ..r
            });
            if continues {
                if let (Some(rest), Some(last)) = (recs.next(), self.recs.last_mut()) {
                    last.end_op = rest.end_op;
                    last.leave = rest.leave;
                    last.heartbeat = false;
                }
            }
            self.recs.extend(recs);
            self.hlcs.extend(next.hlcs.into_iter().skip(skip));
        });
        self.origins.extend(next.origins.into_iter().skip(skip));
        Ok(())
    }

    /// Node ids renumbered in byte order, records grouped by HLC, `add`/`remove` checked.
    fn finish(self, sources: &[String]) -> Result<Columnar, String> {
        let set_changes = self.set_changes;
        let cols = assemble(self.nodes, self.vars, self.recs, &self.hlcs, self.ops);
        // Without `add`/`remove` nothing can fail: no pass over the operations.
        let checked = if set_changes {
            check_set_changes(&cols)
        } else {
            Ok(())
        };
        if let Err((i, e)) = checked {
            let (file, rec) = self.origins.get(i).copied().unwrap_or_default();
            let name = sources.get(file as usize).map_or("?", String::as_str);
            return Err(format!(
                "{name}: record {rec}: {e}\nhint: fix the row, or rewrite the file with `rql \
                 convert`"
            ));
        }
        Ok(cols)
    }
}

impl Sink for ColumnarSink {
    fn start(
        &mut self,
        node: &str,
        hlc: Hlc,
        _pt: Option<u64>,
        origin: (u32, u64),
    ) -> Result<(), String> {
        if self.recs.len() >= u32::MAX as usize - 1 || self.ops.len() >= u32::MAX as usize - 1 {
            return Err(too_many_records());
        }
        self.node = self.nodes.intern(node);
        self.hlc = hlc;
        self.first_op = self.ops.len() as u32;
        self.origins.push(origin);
        Ok(())
    }

    fn change(&mut self, change: Change<'_>) -> Result<(), String> {
        let vars = &mut self.vars;
        let op = change.into_op(|k| vars.intern_str(k).ok_or_else(|| bad_key(k)))?;
        self.set_changes |= matches!(op, Op::Add(..) | Op::Remove(..));
        self.ops.push(op);
        Ok(())
    }

    fn end(&mut self, leave: bool) -> Result<(), String> {
        let end_op = self.ops.len() as u32;
        self.recs.push(CRecord {
            node: self.node,
            first_op: self.first_op,
            end_op,
            leave,
            heartbeat: end_op == self.first_op && !leave,
        });
        self.hlcs.push(self.hlc);
        Ok(())
    }
}

/// Builds [`Record`]s (for `rql convert` back to NDJSON).
#[derive(Default)]
struct RecordSink {
    records: Vec<Record>,
    origins: Vec<(u32, u64)>,
    cur: Option<Record>,
}

impl Sink for RecordSink {
    fn start(
        &mut self,
        node: &str,
        hlc: Hlc,
        pt: Option<u64>,
        origin: (u32, u64),
    ) -> Result<(), String> {
        let mut r = Record::heartbeat(node, hlc);
        r.pt = pt;
        self.cur = Some(r);
        self.origins.push(origin);
        Ok(())
    }

    fn change(&mut self, change: Change<'_>) -> Result<(), String> {
        let Some(r) = self.cur.as_mut() else {
            return Err("internal: a change outside a record".to_string());
        };
        let var = |k: &str| VarName::parse(k).map_err(|_| bad_key(k));
        match change {
            Change::Unset(k) => r.unset.push(var(k)?),
            Change::Set(k, v) => r.set.push((var(k)?, v)),
            Change::Remove(k, s) => r.remove.push((var(k)?, s)),
            Change::Add(k, s) => r.add.push((var(k)?, s)),
        }
        Ok(())
    }

    fn end(&mut self, leave: bool) -> Result<(), String> {
        if let Some(mut r) = self.cur.take() {
            r.leave = leave;
            self.records.push(r);
        }
        Ok(())
    }
}

/// Replays, per node in HLC order, the kind of every variable that is an `add`/`remove`
/// target (SPEC §6: `add`/`remove` on a non-set value is a bad record). The first bad record's
/// index and the reason.
fn check_set_changes(cols: &Columnar) -> Result<(), (usize, String)> {
    let steps = &cols.steps;
    let vars = &cols.names.vars;
    let Some(mut kinds) = SetKinds::new(&steps.ops, vars.len(), cols.names.nodes.len()) else {
        return Ok(());
    };
    for (i, rec) in steps.records.iter().enumerate() {
        kinds
            .apply(rec, &steps.ops, vars)
            .map_err(|e| (i, e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
