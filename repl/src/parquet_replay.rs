//! `rql replay` over Parquet traces: plan against the whole trace's names and NOW (from the
//! files' footers, or a scan), then read only the rows the queries can see through DataFusion
//! (see `pushdown`) and run the plans as for NDJSON — in memory (the rows read once into the
//! engine's columnar form, row groups decoded on every core), or streamed (`--memory-limit`,
//! `--stream`, or large inputs: a checking pass for the names, then a pass per query feeding
//! the engine a batch of steps at a time, so memory is the sort's limit plus the cut state).

use std::collections::BTreeSet;
use std::process::ExitCode;

use log_server::columnar::{Names, VarTable};
use std::path::PathBuf;
use std::time::Instant;

use log_server::parquet::{
    parquet_files, read_parquet_columnar, scan_parquet, stream_parquet, trace_summary,
    ParquetOptions, PushDown, TraceSummary,
};
use log_server::{Hlc, VarName};
use rql_exec::{catalog_of_names, replay_columnar, ExecOptions, Replay};
use rql_planner::{Plan, TimeSpec};

use crate::convert::parquet_options;
use crate::query::{LoadedQuery, EXIT_FAILURE};
use crate::replay::{output_format, plan_all, run_plan, ReplayArgs, AUTO_STREAM_BYTES};

pub fn run(args: &ReplayArgs, q: &LoadedQuery) -> ExitCode {
    let fail = |e: String| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_FAILURE)
    };
    if args.traces.iter().any(|t| t == "-") {
        return fail(
            "standard input is read as NDJSON and cannot be mixed with Parquet traces".into(),
        );
    }
    if args.skip_bad {
        return fail(
            "--skip-bad is not supported for Parquet traces\nhint: fix the file, or convert it \
             to NDJSON with `rql convert` and replay that with --skip-bad"
                .into(),
        );
    }
    let opts = match parquet_options(args.memory_limit) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let files = match parquet_files(&args.traces) {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    let summary = match trace_summary(&files, &opts) {
        Ok(s) => s,
        Err(e) => return fail(format!("trace {e}")),
    };
    let mut vars = VarTable::default();
    for k in &summary.keys {
        if let Ok(v) = VarName::parse(k) {
            vars.intern(&v);
        }
    }
    let names = Names {
        nodes: Vec::new(),
        vars,
    };
    let now_ms = summary.max_hlc.map_or(0, Hlc::physical);
    let catalog = catalog_of_names(&names, now_ms);
    let plans = match plan_all(q, &catalog) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let push = pushdown(&plans, &summary);
    let total_bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    if args.stream || args.memory_limit.is_some() || total_bytes >= AUTO_STREAM_BYTES {
        return match streamed(args, &plans, &files, &push, &opts) {
            Ok(()) => ExitCode::SUCCESS,
            Err(code) => code,
        };
    }
    let trace = match read_parquet_columnar(&files, &push, &opts) {
        Ok(t) => t,
        Err(e) => return fail(format!("trace {e}")),
    };
    let format = output_format(args.format);
    let exec = ExecOptions {
        max_bindings: args.max_bindings,
    };
    for plan in &plans {
        let result = run_plan(plan, format, args, trace.records, |emit| {
            replay_columnar(plan, &trace.cols, exec, emit).map_err(|e| e.to_string())
        });
        if let Err(code) = result {
            return code;
        }
    }
    // The process ends here: handing the trace's pages back to the kernel at exit is cheaper
    // than dropping millions of operations one by one first.
    std::mem::forget(trace);
    ExitCode::SUCCESS
}

/// Runs `plans` over the trace read twice per query's worth of steps, never whole: a first
/// pass checks every record and learns the names (planning used the footers' names, a
/// superset), then each query reads the rows again, a batch of steps at a time.
fn streamed(
    args: &ReplayArgs,
    plans: &[Plan],
    files: &[PathBuf],
    push: &PushDown,
    opts: &ParquetOptions,
) -> Result<(), ExitCode> {
    let fail = |e: String| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_FAILURE)
    };
    let scan = scan_parquet(files, push, opts).map_err(|e| fail(format!("trace {e}")))?;
    let format = output_format(args.format);
    let exec = ExecOptions {
        max_bindings: args.max_bindings,
    };
    for plan in plans {
        run_plan(plan, format, args, scan.records as usize, |emit| {
            let start = Instant::now();
            let mut replay = Replay::new(plan, &scan.names, exec);
            let mut exec_error = None;
            let fed = stream_parquet(files, push, opts, &scan, &mut |steps| match replay
                .feed(steps, emit)
            {
                Ok(()) => Ok(replay.wants_more()),
                Err(e) => {
                    let text = e.to_string();
                    exec_error = Some(e);
                    Err(text)
                }
            });
            match (fed, exec_error) {
                (_, Some(e)) => return Err(e.to_string()),
                (Err(e), None) => return Err(format!("trace {e}")),
                (Ok(()), None) => {}
            }
            replay.finish(start, emit).map_err(|e| e.to_string())
        })?;
    }
    Ok(())
}

/// The rows no query of `plans` can see, as filters (exact: the output is the same as with
/// every row):
/// - past the last time any query evaluates (ON TIME / AS OF upper bounds): later records
///   change nothing at or before it; NOW comes from the unfiltered trace.
/// - changes of variables outside every query's FROM logs: they never make a candidate nor
///   change P(t) (which counts FROM-log variables only); `leave`/`heartbeat` rows stay.
/// - rows of nodes outside AT NODES, when every query has one: P(t) and candidacy only look
///   at those nodes.
pub(crate) fn pushdown(plans: &[Plan], summary: &TraceSummary) -> PushDown {
    let queries: Vec<&Plan> = plans.iter().filter(|p| !p.explain).collect();
    if queries.is_empty() {
        return PushDown::default();
    }
    let mut until: Option<Hlc> = None;
    let mut bounded = true;
    for p in &queries {
        match p.time {
            TimeSpec::Range { to, .. } => until = Some(until.map_or(to, |u| u.max(to))),
            TimeSpec::Snapshot { at } => until = Some(until.map_or(at, |u| u.max(at))),
            TimeSpec::All | TimeSpec::Since { .. } => bounded = false,
        }
    }
    let logs: BTreeSet<&str> = queries
        .iter()
        .flat_map(|p| p.logs.iter().map(String::as_str))
        .collect();
    let keys: Vec<String> = summary
        .keys
        .iter()
        .filter(|k| k.split_once('.').is_some_and(|(log, _)| logs.contains(log)))
        .cloned()
        .collect();
    let nodes = if queries.iter().all(|p| p.at_nodes.is_some()) {
        let all: BTreeSet<&String> = queries
            .iter()
            .flat_map(|p| p.at_nodes.iter().flatten())
            .collect();
        Some(all.into_iter().cloned().collect())
    } else {
        None
    };
    PushDown {
        until: if bounded { until } else { None },
        keys: (keys.len() < summary.keys.len()).then_some(keys),
        nodes,
    }
}
