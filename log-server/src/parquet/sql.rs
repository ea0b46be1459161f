//! `rql sql`: DataFusion SQL over a trace (table `trace`, the Parquet schema of this module,
//! whatever the trace's format) and, optionally, over a query's output (table `results`).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringBuilder, UInt64Builder};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::ParquetReadOptions;

use super::read::{runtime, session};
use super::write::record_batches;
use super::ParquetOptions;
use crate::record::Record;

/// One row of table `results`: seq, packed HLC, node, variable (output name), value (canonical
/// JSON). A per-node value is one row per node; an aggregate has no node; a record without
/// values (an `end`, or a query selecting nothing) is one row of NULLs after seq and hlc.
pub type ResultRow = (u64, u64, Option<String>, Option<String>, Option<String>);

/// Where table `trace` comes from.
pub enum SqlTrace {
    /// Parquet files, read in place.
    Parquet(Vec<PathBuf>),
    /// Records already read (an NDJSON trace), turned into the same columns in memory.
    Records(Vec<Record>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlFormat {
    /// An aligned table.
    Table,
    Csv,
    /// JSON Lines, one object per row.
    Json,
}

/// Runs `sql` with table `trace` and, if given, table `results` (a query's output, one row per
/// value: see [`ResultRow`]), writing the result to `out`.
pub fn run_sql(
    sql: &str,
    trace: SqlTrace,
    results: Option<Vec<ResultRow>>,
    opts: &ParquetOptions,
    format: SqlFormat,
    out: &mut dyn Write,
) -> Result<(), String> {
    let rt = runtime()?;
    let batches = rt.block_on(async {
        let ctx = session(opts, None)?;
        match trace {
            SqlTrace::Parquet(files) => {
                let mut all: Option<datafusion::dataframe::DataFrame> = None;
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
                let df = all.ok_or("no trace files given")?;
                ctx.register_table("trace", df.into_view())
                    .map_err(|e| e.to_string())?;
            }
            SqlTrace::Records(records) => {
                let batches = record_batches(&records)?;
                let df = ctx.read_batches(batches).map_err(|e| e.to_string())?;
                ctx.register_table("trace", df.into_view())
                    .map_err(|e| e.to_string())?;
            }
        }
        if let Some(rows) = results {
            let mut seq = UInt64Builder::new();
            let mut hlc = UInt64Builder::new();
            let mut node = StringBuilder::new();
            let mut variable = StringBuilder::new();
            let mut value = StringBuilder::new();
            for (s, h, n, var, v) in &rows {
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
            let batch = RecordBatch::try_new(schema, columns).map_err(|e| e.to_string())?;
            ctx.register_batch("results", batch)
                .map_err(|e| e.to_string())?;
        }
        let df = ctx.sql(sql).await.map_err(|e| format!("SQL: {e}"))?;
        df.collect().await.map_err(|e| format!("SQL: {e}"))
    })?;
    let io = |e: std::io::Error| format!("cannot write output: {e}");
    match format {
        SqlFormat::Table => {
            let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                .map_err(|e| e.to_string())?;
            writeln!(out, "{text}").map_err(io)?;
        }
        SqlFormat::Csv => {
            let mut w = datafusion::arrow::csv::Writer::new(&mut *out);
            for b in &batches {
                w.write(b).map_err(|e| format!("cannot write CSV: {e}"))?;
            }
        }
        SqlFormat::Json => {
            let mut w = datafusion::arrow::json::LineDelimitedWriter::new(&mut *out);
            for b in &batches {
                w.write(b).map_err(|e| format!("cannot write JSON: {e}"))?;
            }
            w.finish().map_err(|e| format!("cannot write JSON: {e}"))?;
        }
    }
    out.flush().map_err(io)
}
