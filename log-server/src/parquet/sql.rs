//! `rql sql` and the shell's `\sql`: DataFusion SQL over a trace (table `trace`, the Parquet
//! schema of this module, whatever the trace's format or whether it is already in memory) and,
//! optionally, over a query's output (table `results`).

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringBuilder, UInt64Builder};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::prelude::{ParquetReadOptions, SessionContext};

use super::read::session;
use super::write::{columnar_batches, record_batches};
use super::ParquetOptions;
use crate::columnar::{Names, Steps};
use crate::record::Record;

/// One row of table `results`: seq, packed HLC, node, variable (output name), value (canonical
/// JSON). A per-node value is one row per node; an aggregate has no node; a record without
/// values (an `end`, or a query selecting nothing) is one row of NULLs after seq and hlc.
pub type ResultRow = (u64, u64, Option<String>, Option<String>, Option<String>);

/// Where table `trace` comes from.
pub enum SqlTrace<'a> {
    /// Parquet files, read in place.
    Parquet(Vec<PathBuf>),
    /// Records already read (an NDJSON trace), turned into the same columns in memory.
    Records(Vec<Record>),
    /// A trace in the engine's columnar form (what the shell holds), turned into the same
    /// columns in memory: `rec` is the record's position in HLC order, `pt` is null (the
    /// columnar form does not keep it) and `"set": {"k": null}` is an `unset` row.
    Columnar { names: &'a Names, steps: &'a Steps },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlFormat {
    /// An aligned table.
    Table,
    Csv,
    /// JSON Lines, one object per row.
    Json,
}

/// How a statement run by [`run_sql`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SqlRun {
    /// `cancel` turned true before the result was complete: nothing was written.
    pub cancelled: bool,
    /// The statement reads table `results`.
    pub read_results: bool,
}

/// How often [`run_sql`] looks at its cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(20);

/// Runs `sql` (one statement; a trailing `;` is allowed) with table `trace` and, if given,
/// table `results` (a query's output, one row per value: see [`ResultRow`]), writing the result
/// to `out`. A table is only built if the statement names it. When `cancel` turns true the
/// statement is stopped (DataFusion's work is dropped) and nothing is written.
pub fn run_sql(
    sql: &str,
    trace: SqlTrace<'_>,
    results: Option<&[ResultRow]>,
    opts: &ParquetOptions,
    format: SqlFormat,
    cancel: Option<&AtomicBool>,
    out: &mut dyn Write,
) -> Result<SqlRun, String> {
    // Its own runtime, with timers: the cancel flag is polled.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_time()
        .build()
        .map_err(|e| format!("cannot start the SQL engine's threads: {e}"))?;
    let mut read_results = false;
    let work = async {
        let ctx = session(opts, None)?;
        let state = ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let statement = state.sql_to_statement(sql, &dialect).map_err(sql_error)?;
        let tables = state
            .resolve_table_references(&statement)
            .map_err(sql_error)?;
        let names = |name: &str| tables.iter().any(|t| t.table() == name);
        read_results = names("results");
        if names("trace") {
            register_trace(&ctx, trace).await?;
        }
        if let (Some(rows), true) = (results, read_results) {
            ctx.register_batch("results", results_batch(rows)?)
                .map_err(|e| e.to_string())?;
        }
        let df = ctx.sql(sql).await.map_err(sql_error)?;
        df.collect().await.map_err(sql_error)
    };
    let batches = rt.block_on(async {
        match cancel {
            None => work.await.map(Some),
            Some(flag) => {
                tokio::select! {
                    batches = work => batches.map(Some),
                    _ = async {
                        while !flag.load(Ordering::Relaxed) {
                            tokio::time::sleep(CANCEL_POLL).await;
                        }
                    } => Ok(None),
                }
            }
        }
    })?;
    let Some(batches) = batches else {
        return Ok(SqlRun {
            cancelled: true,
            read_results,
        });
    };
    write_batches(&batches, format, out)?;
    Ok(SqlRun {
        cancelled: false,
        read_results,
    })
}

/// An error of the statement, as the user reads it: a syntax error without the debug wrapping.
fn sql_error(e: DataFusionError) -> String {
    match e.find_root() {
        DataFusionError::SQL(parse, _) => format!("SQL: {parse}"),
        _ => format!("SQL: {e}"),
    }
}

/// Registers table `trace`.
async fn register_trace(ctx: &SessionContext, trace: SqlTrace<'_>) -> Result<(), String> {
    let df = match trace {
        SqlTrace::Parquet(files) => {
            let mut all: Option<DataFrame> = None;
            for f in &files {
                let path = f.to_str().ok_or_else(|| {
                    format!(
                        "{}: the path is not UTF-8, which the reader needs",
                        f.display()
                    )
                })?;
                let df = ctx
                    .read_parquet(
                        path,
                        ParquetReadOptions {
                            file_extension: "",
                            ..ParquetReadOptions::default()
                        },
                    )
                    .await
                    .map_err(|e| format!("{}: cannot read it as Parquet: {e}", f.display()))?;
                all = Some(match all {
                    None => df,
                    Some(a) => a.union(df).map_err(|e| format!("{}: {e}", f.display()))?,
                });
            }
            all.ok_or("no trace files given")?
        }
        SqlTrace::Records(records) => ctx
            .read_batches(record_batches(&records)?)
            .map_err(|e| e.to_string())?,
        SqlTrace::Columnar { names, steps } => ctx
            .read_batches(columnar_batches(names, steps)?)
            .map_err(|e| e.to_string())?,
    };
    ctx.register_table("trace", df.into_view())
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The rows of table `results` as one batch (no rows: an empty table with the columns).
fn results_batch(rows: &[ResultRow]) -> Result<RecordBatch, String> {
    let mut seq = UInt64Builder::new();
    let mut hlc = UInt64Builder::new();
    let mut node = StringBuilder::new();
    let mut variable = StringBuilder::new();
    let mut value = StringBuilder::new();
    for (s, h, n, var, v) in rows {
        seq.append_value(*s);
        hlc.append_value(*h);
        node.append_option(n.as_deref());
        variable.append_option(var.as_deref());
        value.append_option(v.as_deref());
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("seq", DataType::UInt64, false),
        Field::new("hlc", DataType::UInt64, false),
        Field::new("node", DataType::Utf8, true),
        Field::new("variable", DataType::Utf8, true),
        Field::new("value", DataType::Utf8, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(seq.finish()),
        Arc::new(hlc.finish()),
        Arc::new(node.finish()),
        Arc::new(variable.finish()),
        Arc::new(value.finish()),
    ];
    RecordBatch::try_new(schema, columns).map_err(|e| e.to_string())
}

/// Writes the result: DataFusion's pretty table, CSV with a header, or JSON Lines.
fn write_batches(
    batches: &[RecordBatch],
    format: SqlFormat,
    out: &mut dyn Write,
) -> Result<(), String> {
    let io = |e: std::io::Error| format!("cannot write output: {e}");
    match format {
        SqlFormat::Table => {
            let text = datafusion::arrow::util::pretty::pretty_format_batches(batches)
                .map_err(|e| e.to_string())?;
            writeln!(out, "{text}").map_err(io)?;
        }
        SqlFormat::Csv => {
            let mut w = datafusion::arrow::csv::Writer::new(&mut *out);
            for b in batches {
                w.write(b).map_err(|e| format!("cannot write CSV: {e}"))?;
            }
        }
        SqlFormat::Json => {
            let mut w = datafusion::arrow::json::LineDelimitedWriter::new(&mut *out);
            for b in batches {
                w.write(b).map_err(|e| format!("cannot write JSON: {e}"))?;
            }
            w.finish().map_err(|e| format!("cannot write JSON: {e}"))?;
        }
    }
    out.flush().map_err(io)
}
