//! `rql replay` of inputs already in HLC order, in memory proportional to the cut state: a
//! validating pass over the files, then an evaluating pass per statement (see
//! `rql_exec::stream`).

use std::fs::File;
use std::io::BufReader;
use std::process::ExitCode;

use log_server::{SortedMerge, TraceErrorKind, TraceInput};
use rql_exec::stream::{replay_stream, scan};
use rql_exec::{catalog_of_names, ExecOptions};

use crate::query::{LoadedQuery, EXIT_FAILURE};
use crate::replay::{output_format, plan_all, run_plan, trace_error, ReplayArgs};

pub enum Outcome {
    /// Finished (successfully or not) with this exit code.
    Done(ExitCode),
    /// An input is not in HLC order and streaming was not asked for: read it in memory.
    Unsorted,
}

/// The trace files merged in HLC order, opened afresh for each pass.
fn open(paths: &[String]) -> Result<SortedMerge<'static>, String> {
    let mut inputs = Vec::new();
    for p in paths {
        let f = File::open(p).map_err(|e| format!("cannot open trace {p}: {e}"))?;
        inputs.push(TraceInput {
            name: p.clone(),
            reader: Box::new(BufReader::with_capacity(1 << 20, f)),
        });
    }
    Ok(SortedMerge::new(inputs))
}

pub fn run(args: &ReplayArgs, q: &LoadedQuery) -> Outcome {
    let fail = |msg: String| {
        eprintln!("error: {msg}");
        Outcome::Done(ExitCode::from(EXIT_FAILURE))
    };
    let merged = match open(&args.traces) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let sources = merged.sources().to_vec();
    let scanned = match scan(merged, &sources, args.skip_bad) {
        Ok(s) => s,
        Err(e) if e.kind == TraceErrorKind::Unsorted && !args.stream => return Outcome::Unsorted,
        Err(e) => return fail(trace_error(&e)),
    };
    for e in &scanned.errors {
        eprintln!("warning: skipped bad record: {e}");
    }
    if scanned.skipped > scanned.errors.len() as u64 {
        eprintln!(
            "warning: ... and {} more bad records skipped",
            scanned.skipped - scanned.errors.len() as u64
        );
    }
    let now_ms = scanned.last_hlc.map_or(0, |h| h.physical());
    let plans = match plan_all(q, &catalog_of_names(&scanned.names, now_ms)) {
        Ok(p) => p,
        Err(code) => return Outcome::Done(code),
    };
    let format = output_format(args.format);
    let opts = ExecOptions {
        max_bindings: args.max_bindings,
    };
    for plan in &plans {
        let result = run_plan(plan, format, args, scanned.records as usize, |emit| {
            let records = open(&args.traces)?;
            replay_stream(plan, &scanned, records, opts, emit).map_err(|e| e.to_string())
        });
        if let Err(code) = result {
            return Outcome::Done(code);
        }
    }
    Outcome::Done(ExitCode::SUCCESS)
}
