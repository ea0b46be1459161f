//! `rql replay` and `rql explain`: run queries over saved traces, or show their plans.

use std::fs::File;
use std::io::{BufReader, IsTerminal, Write};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use log_server::{read_traces, MergedTrace, ReadOptions, Record, TraceInput};
use rql_exec::{
    catalog_of, catalog_of_columnar, replay_columnar, Columnar, Emitted, ExecOptions, Format,
    RecordWriter, Stats,
};
use rql_planner::{explain, plan_statement, Catalog, Plan};

use crate::query::{LoadedQuery, QuerySource, EXIT_FAILURE, EXIT_QUERY_ERROR};

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
}

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

/// Read and merge trace files; `-` is stdin.
fn read_inputs(paths: &[String], skip_bad: bool) -> Result<MergedTrace, String> {
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
    read_traces(inputs, &ReadOptions { skip_bad }).map_err(|e| {
        let hint = if skip_bad {
            ""
        } else {
            "\nhint: fix the record, or pass --skip-bad to skip bad records and count them"
        };
        format!("trace {e}{hint}")
    })
}

/// Plan every statement before running any, so a bad third query does not leave the output
/// of the first two looking complete.
fn plan_all(q: &LoadedQuery, catalog: &Catalog) -> Result<Vec<Plan>, ExitCode> {
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
    let records: Vec<&Record> = trace.records.iter().map(|(_, r)| r).collect();
    let cols = Columnar::from_records(&records);
    drop(records);
    let records_count = trace.records.len();
    drop(trace.records);
    let catalog = catalog_of_columnar(&cols);
    let plans = match plan_all(&q, &catalog) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let format = match args.format {
        Some(FormatArg::Json) => Format::Json,
        Some(FormatArg::Csv) => Format::Csv,
        Some(FormatArg::Table) => Format::Table,
        None if std::io::stdout().is_terminal() => Format::Table,
        None => Format::Json,
    };
    let opts = ExecOptions {
        max_bindings: args.max_bindings,
    };
    let stdout = std::io::stdout();
    for plan in &plans {
        if plan.explain {
            let mut out = stdout.lock();
            if write!(out, "{}", explain(plan, args.max_bindings)).is_err() {
                return ExitCode::SUCCESS;
            }
            continue;
        }
        let mut writer = RecordWriter::new(
            format,
            std::io::BufWriter::new(stdout.lock()),
            plan.emit == rql_parser::Emit::Changes,
        );
        let mut write_error = None;
        let result = replay_columnar(plan, &cols, opts, &mut |rec: Emitted<'_, '_>| {
            if write_error.is_none() {
                if let Err(e) = writer.write(&rec.record()) {
                    write_error = Some(e);
                }
            }
        });
        let finished = writer.finish();
        if let Some(e) = write_error.or(finished.err()) {
            // A closed pipe (`| head`) is the reader saying it has enough.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: cannot write output: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
        match result {
            Ok(mut stats) => {
                stats.skipped_records = trace.skipped as u64;
                report(&stats, args.stats, records_count);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        }
    }
    ExitCode::SUCCESS
}

/// Statistics go to stderr, never stdout. Without `--stats` only what needs attention
/// (warnings, skipped records) is reported.
fn report(stats: &Stats, full: bool, records: usize) {
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
            Ok(t) => catalog_of(t.records.iter().map(|(_, r)| r)),
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
