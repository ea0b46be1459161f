//! Replay of a trace whose inputs are already in HLC order, in memory proportional to the cut
//! state rather than to the trace. It reads the records twice: [`scan`] validates every one
//! (so a bad record stops the replay before anything is printed, as in memory) and learns the
//! trace's names, which the planner and the engine's dense state need up front;
//! [`replay_stream`] reads them again and feeds the engine a batch of steps at a time.

use std::time::Instant;

use log_server::ndjson::MAX_REPORTED_ERRORS;
use log_server::{ApplyCheck, Hlc, Origin, Record, TraceError, TraceErrorKind};
use rql_planner::Plan;
use rustc_hash::FxHashSet;

use crate::columnar::{NameCollector, Names, StepBuilder, Steps};
use crate::engine::{Emitted, ExecError, ExecOptions, Stats};
use crate::replay::Replay;

/// Steps handed to the engine at a time: large enough to amortize the batch, small enough
/// that the batch is nothing next to the cut state.
const BATCH_GROUPS: usize = 4096;

/// What the validating pass learned.
#[derive(Debug, Default)]
pub struct Scan {
    pub names: Names,
    /// Good records.
    pub records: u64,
    pub last_hlc: Option<Hlc>,
    /// Bad records skipped (with `skip_bad`).
    pub skipped: u64,
    /// The first [`MAX_REPORTED_ERRORS`] of them.
    pub errors: Vec<TraceError>,
    /// Records that parse but that the node's state rejects (`add` on a non-set value), for
    /// the second pass to skip too.
    rejected: FxHashSet<Origin>,
}

/// The validating pass. Fails on the first bad record unless `skip_bad`, and always on an
/// input that cannot be read or is not in HLC order.
pub fn scan(
    records: impl Iterator<Item = Result<(Origin, Record), TraceError>>,
    sources: &[String],
    skip_bad: bool,
) -> Result<Scan, TraceError> {
    let mut names = NameCollector::default();
    let mut check = ApplyCheck::default();
    let mut scan = Scan::default();
    let skip = |scan: &mut Scan, e: TraceError| {
        if !skip_bad || e.kind != TraceErrorKind::Record {
            return Err(e);
        }
        scan.skipped += 1;
        if scan.errors.len() < MAX_REPORTED_ERRORS {
            scan.errors.push(e);
        }
        Ok(())
    };
    for item in records {
        let (origin, rec) = match item {
            Ok(r) => r,
            Err(e) => {
                skip(&mut scan, e)?;
                continue;
            }
        };
        if let Err(e) = check.check(&rec) {
            let source = sources.get(origin.source).cloned().unwrap_or_default();
            skip(
                &mut scan,
                TraceError::new(origin.line, e.to_string()).with_source(source),
            )?;
            scan.rejected.insert(origin);
            continue;
        }
        names.add(&rec);
        scan.records += 1;
        scan.last_hlc = Some(rec.hlc);
    }
    scan.names = names.finish();
    Ok(scan)
}

/// Why a streaming replay stopped.
#[derive(Debug)]
pub enum StreamError {
    /// The inputs changed between the passes (a record the scan did not see).
    Trace(TraceError),
    Exec(ExecError),
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamError::Trace(e) => write!(f, "trace {e}"),
            StreamError::Exec(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for StreamError {}

/// The evaluating pass: the same records as [`scan`] saw (read again), skipping what it
/// skipped, fed to the engine [`BATCH_GROUPS`] steps at a time.
pub fn replay_stream<'p>(
    plan: &'p Plan,
    scan: &'p Scan,
    records: impl Iterator<Item = Result<(Origin, Record), TraceError>>,
    opts: ExecOptions,
    emit: &mut dyn FnMut(Emitted<'_, 'p>),
) -> Result<Stats, StreamError> {
    let start = Instant::now();
    let changed = |origin: Origin| {
        StreamError::Trace(TraceError::io(
            origin.line,
            "the input changed while it was being replayed (a record the first pass did not see)",
        ))
    };
    let mut replay = Replay::new(plan, &scan.names, opts);
    let mut builder = StepBuilder::new(&scan.names);
    let mut steps = Steps::default();
    for item in records {
        if !replay.wants_more() {
            break;
        }
        let (origin, rec) = match item {
            Ok(r) => r,
            Err(e) if e.kind != TraceErrorKind::Record => return Err(StreamError::Trace(e)),
            // A bad line: the scan counted it (and only goes on with `skip_bad`).
            Err(_) => continue,
        };
        if scan.rejected.contains(&origin) {
            continue;
        }
        let new_step = steps.groups.last().is_none_or(|g| g.hlc != rec.hlc);
        if new_step && steps.groups.len() >= BATCH_GROUPS {
            replay.feed(&steps, emit).map_err(StreamError::Exec)?;
            steps.clear();
        }
        builder
            .push(&mut steps, &rec)
            .ok_or_else(|| changed(origin))?;
    }
    replay.feed(&steps, emit).map_err(StreamError::Exec)?;
    let mut stats = replay.finish(start, emit).map_err(StreamError::Exec)?;
    stats.skipped_records = scan.skipped;
    Ok(stats)
}
