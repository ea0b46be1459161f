//! `rql sql "SQL" TRACE...`: DataFusion SQL over a trace as table `trace` (the Parquet trace
//! schema: one row per change, whatever the input format), and with `-q RQL` over that query's
//! output as table `results` (seq, hlc packed, node, variable, value as canonical JSON: one row
//! per value of every emitted record).

use std::process::ExitCode;

use bytesize::ByteSize;
use clap::{Args, ValueEnum};
use log_server::columnar::read_columnar;
use log_server::parquet::{parquet_files, run_sql, ResultRow, SqlFormat, SqlTrace};
use log_server::{read_traces, ReadOptions, Record, TraceInput, Value};
use rql_exec::output::OutValue;
use rql_exec::{catalog_of_columnar, replay_columnar, ExecOptions, OutputRecord};
use rql_planner::plan_statement;

use crate::convert::{parquet_options, trace_format, TraceFormat};
use crate::query::{EXIT_FAILURE, EXIT_QUERY_ERROR};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SqlFormatArg {
    Table,
    Csv,
    Json,
}

#[derive(Args, Debug)]
pub struct SqlArgs {
    /// The SQL statement (DataFusion dialect) over tables `trace` and `results`.
    #[arg(value_name = "SQL")]
    pub sql: String,
    /// Trace files: all NDJSON, or all Parquet (files or directories).
    #[arg(required = true, value_name = "TRACE")]
    pub traces: Vec<String>,
    /// An RQL query run over the trace first; its output records become table `results`.
    #[arg(short = 'q', long = "query", value_name = "RQL")]
    pub query: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: SqlFormatArg,
    /// Memory DataFusion may use before spilling to disk (e.g. 1GiB).
    #[arg(long, value_name = "SIZE")]
    pub memory_limit: Option<ByteSize>,
}

pub fn run(args: &SqlArgs) -> ExitCode {
    match sql(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, e)) => {
            eprintln!("error: {e}");
            ExitCode::from(code)
        }
    }
}

fn fail(e: String) -> (u8, String) {
    (EXIT_FAILURE, e)
}

fn sql(args: &SqlArgs) -> Result<(), (u8, String)> {
    let opts = parquet_options(args.memory_limit).map_err(fail)?;
    let mut formats = Vec::new();
    for t in &args.traces {
        formats.push(trace_format(t).map_err(fail)?);
    }
    let parquet = formats.iter().all(|f| *f == TraceFormat::Parquet);
    if !parquet && formats.contains(&TraceFormat::Parquet) {
        return Err(fail(
            "the traces mix NDJSON and Parquet\nhint: convert them to one format with `rql \
             convert`"
                .into(),
        ));
    }
    let results = match &args.query {
        None => None,
        Some(q) => Some(query_results(q, &args.traces, parquet, &opts)?),
    };
    let trace = if parquet {
        SqlTrace::Parquet(parquet_files(&args.traces).map_err(fail)?)
    } else {
        SqlTrace::Records(read_ndjson(&args.traces).map_err(fail)?)
    };
    let format = match args.format {
        SqlFormatArg::Table => SqlFormat::Table,
        SqlFormatArg::Csv => SqlFormat::Csv,
        SqlFormatArg::Json => SqlFormat::Json,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    run_sql(
        &args.sql,
        trace,
        results.as_deref(),
        &opts,
        format,
        None,
        &mut out,
    )
    .map(|_| ())
    .map_err(fail)
}

fn inputs(paths: &[String]) -> Result<Vec<TraceInput<'static>>, String> {
    let mut inputs = Vec::new();
    for p in paths {
        let f = std::fs::File::open(p).map_err(|e| format!("cannot open trace {p}: {e}"))?;
        inputs.push(TraceInput {
            name: p.clone(),
            reader: Box::new(std::io::BufReader::with_capacity(1 << 20, f)),
        });
    }
    Ok(inputs)
}

fn read_ndjson(paths: &[String]) -> Result<Vec<Record>, String> {
    let trace =
        read_traces(inputs(paths)?, &ReadOptions::default()).map_err(|e| format!("trace {e}"))?;
    Ok(trace.records.into_iter().map(|(_, r)| r).collect())
}

/// Runs the RQL query over the whole trace: its output as rows of table `results`.
fn query_results(
    query: &str,
    traces: &[String],
    parquet: bool,
    opts: &log_server::parquet::ParquetOptions,
) -> Result<Vec<ResultRow>, (u8, String)> {
    let stmt =
        rql_parser::parse_single(query).map_err(|d| (EXIT_QUERY_ERROR, d.one_line(query)))?;
    let cols = if parquet {
        let files = parquet_files(traces).map_err(fail)?;
        log_server::parquet::read_parquet_columnar(&files, &Default::default(), opts)
            .map_err(|e| fail(format!("trace {e}")))?
            .cols
    } else {
        read_columnar(inputs(traces).map_err(fail)?, &ReadOptions::default())
            .map_err(|e| fail(format!("trace {e}")))?
            .cols
    };
    let catalog = catalog_of_columnar(&cols);
    let plan = plan_statement(&stmt, query, &catalog)
        .map_err(|d| (EXIT_QUERY_ERROR, d.one_line(query)))?;
    let mut rows = Vec::new();
    replay_columnar(&plan, &cols, ExecOptions::default(), &mut |e| {
        result_rows(&e.record(), &mut rows)
    })
    .map_err(|e| fail(e.to_string()))?;
    Ok(rows)
}

/// One emitted record as rows of `results`: a row per (variable, node) value, a row per
/// aggregate (no node), or one row of NULLs for a record without values (an `end`). Shared by
/// `rql sql -q` and the shell's `\sql`.
pub(crate) fn result_rows(rec: &OutputRecord, rows: &mut Vec<ResultRow>) {
    let json = |v: &Value| serde_json::to_string(v).unwrap_or_default();
    match rec {
        OutputRecord::Cut(c) => {
            let (seq, hlc) = (c.seq, c.hlc.packed());
            let before = rows.len();
            for (name, value) in &c.values {
                match value {
                    OutValue::Nodes(nodes) => {
                        for (node, v) in nodes {
                            rows.push((
                                seq,
                                hlc,
                                Some(node.clone()),
                                Some(name.clone()),
                                Some(json(v)),
                            ));
                        }
                    }
                    OutValue::One(v) => {
                        rows.push((seq, hlc, None, Some(name.clone()), v.as_ref().map(json)));
                    }
                }
            }
            if rows.len() == before {
                rows.push((seq, hlc, None, None, None));
            }
        }
        OutputRecord::End(e) => rows.push((e.seq, e.hlc.packed(), None, None, None)),
    }
}
