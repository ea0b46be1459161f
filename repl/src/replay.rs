//! `rql replay` and `rql explain`: run queries over saved traces, or show their plans.

use std::fs::File;
use std::io::{BufReader, IsTerminal, Write};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use log_server::columnar::{read_columnar, LoadedTrace};
use log_server::{ReadOptions, TraceError, TraceErrorKind, TraceInput};
use rql_exec::{
    catalog_of_columnar, replay_columnar, Emitted, ExecOptions, Format, RecordWriter, Stats,
};
use rql_planner::{explain, plan_statement, Catalog, Plan};

use crate::query::{LoadedQuery, QuerySource, EXIT_FAILURE, EXIT_QUERY_ERROR};
use crate::stream;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// An aligned table, one row per (cut, node).
    Table,
    /// JSON Lines, one record per line (the machine form).
    Json,
    /// CSV with a header, rows as in the table.
    Csv,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Trace files (NDJSON, format rql-trace/1), merged into one trace; "-" reads stdin.
    #[arg(required = true, value_name = "TRACE")]
    pub traces: Vec<String>,
    #[command(flatten)]
    pub query: QuerySource,
    /// Output format [default: table on a terminal, json otherwise].
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Print statistics (steps, candidates, emitted, warnings, time) to stderr.
    #[arg(long)]
    pub stats: bool,
    /// Skip bad trace records (counted in the statistics) instead of stopping at the first.
    #[arg(long)]
    pub skip_bad: bool,
    /// Most outer bindings enumerated for one cut before the query stops with an error.
    #[arg(long, value_name = "N", default_value_t = rql_exec::DEFAULT_MAX_BINDINGS)]
    pub max_bindings: u64,
    /// Stream inputs that are already in HLC order: memory proportional to the cut state,
    /// not the trace (the files are read twice: to validate, then to evaluate). Automatic for
    /// files totalling at least 256 MiB; an unsorted input is then sorted in memory instead.
    /// Parquet traces stream in any order (DataFusion sorts them, see --memory-limit).
    #[arg(long)]
    pub stream: bool,
    /// Parquet traces: memory DataFusion may use to sort the rows by HLC before spilling to
    /// disk (e.g. 1GiB); implies --stream, so the whole replay stays within about this much
    /// plus the cut state. Default: no limit.
    #[arg(long, value_name = "SIZE")]
    pub memory_limit: Option<bytesize::ByteSize>,
}

/// Inputs at least this large (all files) are streamed when they turn out to be sorted.
pub(crate) const AUTO_STREAM_BYTES: u64 = 256 << 20;

#[derive(Args, Debug)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub query: QuerySource,
    /// Trace files to resolve names (and NOW) against; optional.
    #[arg(value_name = "TRACE")]
    pub traces: Vec<String>,
    /// The enumeration bound to show.
    #[arg(long, value_name = "N", default_value_t = rql_exec::DEFAULT_MAX_BINDINGS)]
    pub max_bindings: u64,
}

/// Read and merge trace files into memory; `-` is stdin.
pub(crate) fn read_inputs(paths: &[String], skip_bad: bool) -> Result<LoadedTrace, String> {
    let mut inputs = Vec::new();
    for p in paths {
        if p == "-" {
            inputs.push(TraceInput {
                name: "<stdin>".into(),
                reader: Box::new(std::io::stdin().lock()),
            });
        } else {
            let f = File::open(p).map_err(|e| format!("cannot open trace {p}: {e}"))?;
            inputs.push(TraceInput {
                name: p.clone(),
                reader: Box::new(BufReader::with_capacity(1 << 20, f)),
            });
        }
    }
    read_columnar(inputs, &ReadOptions { skip_bad }).map_err(|e| trace_error(&e))
}

/// A trace error as the user sees it, with what to do about a bad record.
pub(crate) fn trace_error(e: &TraceError) -> String {
    let hint = match e.kind {
        TraceErrorKind::Record => {
            "\nhint: fix the record, or pass --skip-bad to skip bad records and count them"
        }
        TraceErrorKind::Io | TraceErrorKind::Unsorted => "",
    };
    format!("trace {e}{hint}")
}

/// Plan every statement before running any, so a bad third query does not leave the output
/// of the first two looking complete.
pub(crate) fn plan_all(q: &LoadedQuery, catalog: &Catalog) -> Result<Vec<Plan>, ExitCode> {
    let statements = q.parse().map_err(|diags| {
        q.print_diagnostics(&diags);
        ExitCode::from(EXIT_QUERY_ERROR)
    })?;
    let mut plans = Vec::new();
    let mut errors = Vec::new();
    for s in &statements {
        match plan_statement(s, &q.text, catalog) {
            Ok(p) => plans.push(p),
            Err(d) => errors.push(d),
        }
    }
    if !errors.is_empty() {
        q.print_diagnostics(&errors);
        return Err(ExitCode::from(EXIT_QUERY_ERROR));
    }
    for p in &plans {
        for n in &p.notes {
            eprintln!("note: {}", n.one_line(&q.text));
        }
    }
    Ok(plans)
}

pub fn run_replay(args: &ReplayArgs) -> ExitCode {
    let q = match LoadedQuery::load(&args.query) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    // Parse first: a typo in the query should not wait for a large trace to load.
    if let Err(diags) = q.parse() {
        q.print_diagnostics(&diags);
        return ExitCode::from(EXIT_QUERY_ERROR);
    }
    if args.traces.iter().filter(|t| *t == "-").count() > 0
        && args.query.file.as_deref() == Some("-")
    {
        eprintln!("error: standard input cannot hold both the trace and the query");
        return ExitCode::from(EXIT_FAILURE);
    }
    // Parquet traces (`.parquet` files, directories of them) are read through DataFusion.
    if crate::convert::any_parquet(&args.traces) {
        return crate::parquet_replay::run(args, &q);
    }
    let stdin = args.traces.iter().any(|t| t == "-");
    if args.stream && stdin {
        eprintln!(
            "error: --stream reads the inputs twice, so it needs files, not standard input\n\
             hint: save the trace to a file, or drop --stream to read it in memory"
        );
        return ExitCode::from(EXIT_FAILURE);
    }
    let total_bytes: u64 = args
        .traces
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    if args.stream || (!stdin && total_bytes >= AUTO_STREAM_BYTES) {
        match stream::run(args, &q) {
            stream::Outcome::Done(code) => return code,
            // Not in HLC order (auto mode only): sort in memory below.
            stream::Outcome::Unsorted => {}
        }
    }
    let trace = match read_inputs(&args.traces, args.skip_bad) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    for e in &trace.errors {
        eprintln!("warning: skipped bad record: {e}");
    }
    if trace.skipped > trace.errors.len() {
        eprintln!(
            "warning: ... and {} more bad records skipped",
            trace.skipped - trace.errors.len()
        );
    }
    let records_count = trace.records;
    let cols = trace.cols;
    let catalog = catalog_of_columnar(&cols);
    let plans = match plan_all(&q, &catalog) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let format = output_format(args.format);
    let opts = ExecOptions {
        max_bindings: args.max_bindings,
    };
    for plan in &plans {
        let result = run_plan(plan, format, args, records_count, |emit| {
            replay_columnar(plan, &cols, opts, emit)
                .map(|mut stats| {
                    stats.skipped_records = trace.skipped as u64;
                    stats
                })
                .map_err(|e| e.to_string())
        });
        if let Err(code) = result {
            return code;
        }
    }
    ExitCode::SUCCESS
}

/// Runs one planned statement: EXPLAIN prints the plan; a query's records go to stdout as
/// `run` emits them, then its statistics to stderr. `Err` is the exit code to stop with.
pub(crate) fn run_plan<'p>(
    plan: &'p Plan,
    format: Format,
    args: &ReplayArgs,
    records: usize,
    run: impl FnOnce(&mut dyn FnMut(Emitted<'_, 'p>)) -> Result<Stats, String>,
) -> Result<(), ExitCode> {
    let stdout = std::io::stdout();
    if plan.explain {
        let mut out = stdout.lock();
        // A closed pipe is the reader saying it has enough.
        let _ = write!(out, "{}", explain(plan, args.max_bindings));
        return Ok(());
    }
    let mut writer = RecordWriter::new(
        format,
        std::io::BufWriter::new(stdout.lock()),
        plan.emit == rql_parser::Emit::Changes,
    );
    let mut write_error = None;
    let mut output = std::time::Duration::ZERO;
    let result = run(&mut |rec: Emitted<'_, '_>| {
        let start = std::time::Instant::now();
        if write_error.is_none() {
            if let Err(e) = rec.write(&mut writer) {
                write_error = Some(e);
            }
        }
        output += start.elapsed();
    });
    let result = result.map(|mut stats| {
        stats.output = output.min(stats.elapsed);
        stats
    });
    let finished = writer.finish();
    if let Some(e) = write_error.or(finished.err()) {
        // A closed pipe (`| head`) is the reader saying it has enough.
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Err(ExitCode::SUCCESS);
        }
        eprintln!("error: cannot write output: {e}");
        return Err(ExitCode::from(EXIT_FAILURE));
    }
    match result {
        Ok(stats) => {
            report(&stats, args.stats, records);
            Ok(())
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(EXIT_FAILURE))
        }
    }
}

/// The output format asked for, or the default for where stdout goes.
pub(crate) fn output_format(arg: Option<FormatArg>) -> Format {
    match arg {
        Some(FormatArg::Json) => Format::Json,
        Some(FormatArg::Csv) => Format::Csv,
        Some(FormatArg::Table) => Format::Table,
        None if std::io::stdout().is_terminal() => Format::Table,
        None => Format::Json,
    }
}

/// Statistics go to stderr, never stdout. Without `--stats` only what needs attention
/// (warnings, skipped records) is reported.
pub(crate) fn report(stats: &Stats, full: bool, records: usize) {
    let warnings: Vec<String> = stats
        .warnings
        .iter()
        .map(|(k, n)| format!("{}={n}", k.name()))
        .collect();
    if full {
        let secs = stats.elapsed.as_secs_f64();
        let rate = |n: f64| if secs > 0.0 { n / secs } else { 0.0 };
        eprintln!(
            "stats: {} records, {} steps scanned, {} candidate cuts, {} emitted, {} late, {} bad records skipped",
            records, stats.steps, stats.candidates, stats.emitted, stats.late, stats.skipped_records
        );
        eprintln!(
            "stats: warnings: {}",
            if warnings.is_empty() {
                "none".to_string()
            } else {
                warnings.join(", ")
            }
        );
        eprintln!(
            "stats: elapsed {:.3} ms ({:.0} cuts/s, {:.0} events/s)",
            secs * 1000.0,
            rate(stats.candidates as f64),
            rate(records as f64)
        );
        let output = stats.output.as_secs_f64();
        let evaluation = secs - output;
        eprintln!(
            "stats: evaluation {:.3} ms ({:.0} cuts/s), writing output {:.3} ms",
            evaluation * 1000.0,
            if evaluation > 0.0 {
                stats.candidates as f64 / evaluation
            } else {
                0.0
            },
            output * 1000.0
        );
    } else if !warnings.is_empty() {
        eprintln!(
            "warning: evaluation warnings: {} (see --stats)",
            warnings.join(", ")
        );
    }
}

pub fn run_explain(args: &ExplainArgs) -> ExitCode {
    let q = match LoadedQuery::load(&args.query) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let catalog = if args.traces.is_empty() {
        Catalog {
            now_ms: log_server::hlc::system_time_ms(),
            ..Catalog::default()
        }
    } else {
        match read_inputs(&args.traces, false) {
            Ok(t) => catalog_of_columnar(&t.cols),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        }
    };
    let plans = match plan_all(&q, &catalog) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut out = std::io::stdout().lock();
    for (i, p) in plans.iter().enumerate() {
        if i > 0 {
            let _ = writeln!(out);
        }
        let _ = write!(out, "{}", explain(p, args.max_bindings));
    }
    ExitCode::SUCCESS
}
