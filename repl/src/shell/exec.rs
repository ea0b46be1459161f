//! Running one query over the shell's trace: the steps go to the engine a batch at a time and a
//! Ctrl-C (a flag set by the signal handler) is noticed between two batches. Records are
//! written as `rql replay` writes them, except that the table cuts long values short, and kept
//! (up to [`MAX_RESULT_ROWS`] rows) as the rows of `\sql`'s table `results`.

use std::borrow::Cow;
use std::io::{self, BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use log_server::parquet::ResultRow;
use log_server::Value;
use rql_exec::output::OutValue;
use rql_exec::{Emitted, ExecOptions, Format, OutputRecord, RecordWriter, Replay, Stats};
use rql_planner::Plan;

use super::source::{TraceData, BATCH_STEPS};
use crate::sql::result_rows;

/// Most rows of table `results` the shell keeps (about 100 bytes each): a query emitting more
/// leaves the first ones, and `\sql` says so (`rql sql -q` has no cap).
pub(crate) const MAX_RESULT_ROWS: usize = 1_000_000;

/// The output of the last query run, as rows of `\sql`'s table `results` (see
/// [`result_rows`]).
#[derive(Debug)]
pub(crate) struct Results {
    pub rows: Vec<ResultRow>,
    /// Rows were left out past the cap.
    pub truncated: bool,
    cap: usize,
}

impl Results {
    pub(crate) fn new() -> Results {
        Results::with_cap(MAX_RESULT_ROWS)
    }

    fn with_cap(cap: usize) -> Results {
        Results {
            rows: Vec::new(),
            truncated: false,
            cap,
        }
    }

    /// Whether more rows are taken (else a record only marks the rows truncated).
    fn full(&mut self) -> bool {
        if self.rows.len() >= self.cap {
            self.truncated = true;
        }
        self.truncated
    }

    /// Adds the rows of one emitted record, up to the cap.
    fn add(&mut self, rec: &OutputRecord) {
        if self.full() {
            return;
        }
        result_rows(rec, &mut self.rows);
        if self.rows.len() > self.cap {
            self.rows.truncate(self.cap);
            self.truncated = true;
        }
    }
}

/// Table cells longer than this (in characters) are cut, ending in [`MARKER`].
pub(crate) const MAX_CELL_CHARS: usize = 40;
pub(crate) const MARKER: char = '…';

/// How a query run ended.
pub(crate) enum Ended {
    Finished(Stats),
    /// Ctrl-C: `fraction` of the trace's steps had been evaluated.
    Cancelled {
        fraction: f64,
    },
}

pub(crate) struct Run {
    pub ended: Ended,
    /// Records written (on a cancel: before it).
    pub emitted: u64,
    pub elapsed: Duration,
}

pub(crate) enum RunError {
    /// The query could not finish (the enumeration bound, ...).
    Exec(String),
    /// Standard output failed (a closed pipe, a full disk).
    Write(io::Error),
}

/// Runs `plan` over `data`, writing its records to stdout in `format`, until the end, LIMIT,
/// or `cancel` turning true. `results` gets the records written (which, on a cancel, a table or
/// CSV does not show).
pub(crate) fn run_query(
    plan: &Plan,
    data: &TraceData,
    opts: ExecOptions,
    format: Format,
    cancel: &AtomicBool,
    results: &mut Results,
) -> Result<Run, RunError> {
    let start = Instant::now();
    let stdout = io::stdout();
    let mut writer = RecordWriter::new(
        format,
        BufWriter::new(stdout.lock()),
        plan.emit == rql_parser::Emit::Changes,
    );
    let mut emitted = 0u64;
    let mut write_error = None;
    let mut emit = |e: Emitted<'_, '_>| {
        // After a Ctrl-C the rest of the batch is evaluated but no longer printed.
        if write_error.is_some() || cancel.load(Ordering::Relaxed) {
            return;
        }
        // The table needs its own copy to cut values short; the other formats are written
        // straight from the engine's state.
        let written = if format == Format::Table {
            let mut rec = e.record();
            results.add(&rec);
            shorten(&mut rec);
            writer.write(&rec)
        } else {
            if !results.full() {
                results.add(&e.record());
            }
            e.write(&mut writer)
        };
        match written {
            Ok(()) => emitted += 1,
            Err(err) => write_error = Some(err),
        }
    };
    let mut replay = Replay::new(plan, &data.names, opts);
    let mut steps_done = 0usize;
    let mut cancelled = false;
    for batch in data.trace.groups.chunks(BATCH_STEPS) {
        if !replay.wants_more() {
            break;
        }
        if cancel.load(Ordering::Relaxed) {
            cancelled = true;
            break;
        }
        replay
            .feed_groups(&data.trace, batch, &mut emit)
            .map_err(|e| RunError::Exec(e.to_string()))?;
        steps_done += batch.len();
    }
    // A Ctrl-C during the last batch still counts: its records were not all printed.
    cancelled |= cancel.load(Ordering::Relaxed);
    let ended = if cancelled {
        Ended::Cancelled {
            fraction: steps_done as f64 / data.steps.max(1) as f64,
        }
    } else {
        Ended::Finished(
            replay
                .finish(start, &mut emit)
                .map_err(|e| RunError::Exec(e.to_string()))?,
        )
    };
    if let Some(e) = write_error {
        return Err(RunError::Write(e));
    }
    match ended {
        // JSON Lines already printed are whole records: let them out. A half table or CSV is
        // not worth printing.
        Ended::Cancelled { .. } if format != Format::Json => {}
        _ => {
            writer.finish().map_err(RunError::Write)?;
        }
    }
    Ok(Run {
        ended,
        emitted,
        elapsed: start.elapsed(),
    })
}

/// Cuts long values of a record short for the table (node ids and witnesses stay whole: rows
/// are matched by node id).
pub(crate) fn shorten(rec: &mut OutputRecord) {
    if let OutputRecord::Cut(c) = rec {
        for (_, v) in &mut c.values {
            match v {
                OutValue::Nodes(nodes) => nodes.iter_mut().for_each(|(_, v)| shorten_value(v)),
                OutValue::One(Some(v)) => shorten_value(v),
                OutValue::One(None) => {}
            }
        }
    }
}

fn shorten_value(v: &mut Value) {
    let text = match &*v {
        Value::Str(s) => Cow::Borrowed(s.as_str()),
        other => Cow::Owned(other.to_json()),
    };
    if text.chars().count() > MAX_CELL_CHARS {
        let mut cut: String = text.chars().take(MAX_CELL_CHARS - 1).collect();
        cut.push(MARKER);
        *v = Value::Str(cut);
    }
}

/// The table footer's time line: `Time: 12.345 ms (81000 cuts/s)`, cuts evaluated per second.
pub(crate) fn timing_line(elapsed: Duration, candidates: u64) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        candidates as f64 / secs
    } else {
        0.0
    };
    format!("Time: {:.3} ms ({rate:.0} cuts/s)", secs * 1000.0)
}

/// Flushes stdout, for the footer and messages that follow records.
pub(crate) fn flush_stdout() -> io::Result<()> {
    io::stdout().flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use log_server::Hlc;
    use rql_exec::output::{CutRecord, EndRecord};

    #[test]
    fn results_keep_rows_up_to_the_cap() {
        let cut = |seq: u64| {
            OutputRecord::Cut(CutRecord {
                begin: false,
                seq,
                hlc: Hlc::MIN,
                values: vec![(
                    "x".to_string(),
                    OutValue::Nodes(vec![
                        ("n1".to_string(), Value::Int(1)),
                        ("n2".to_string(), Value::Int(2)),
                    ]),
                )],
                witness: None,
                stale: Vec::new(),
                late: false,
            })
        };
        let mut results = Results::with_cap(3);
        results.add(&cut(1));
        assert_eq!((results.rows.len(), results.truncated), (2, false));
        results.add(&OutputRecord::End(EndRecord {
            seq: 2,
            hlc: Hlc::MIN,
            duration_ms: 0,
            cuts: 1,
            stale: Vec::new(),
            late: false,
        }));
        assert_eq!((results.rows.len(), results.truncated), (3, false));
        assert_eq!(results.rows[2], (2, 0, None, None, None));
        results.add(&cut(3));
        assert_eq!((results.rows.len(), results.truncated), (3, true));
        // A cut that only partly fits is cut too.
        let mut results = Results::with_cap(3);
        results.add(&cut(1));
        results.add(&cut(2));
        assert_eq!((results.rows.len(), results.truncated), (3, true));
        assert_eq!(
            results.rows[2],
            (2, 0, Some("n1".into()), Some("x".into()), Some("1".into()))
        );
    }

    #[test]
    fn long_values_are_cut_with_a_marker() {
        let mut v = Value::Str("x".repeat(100));
        shorten_value(&mut v);
        let Value::Str(s) = &v else {
            panic!("a string stays a string")
        };
        assert_eq!(s.chars().count(), MAX_CELL_CHARS);
        assert!(s.ends_with(MARKER));
        let mut short = Value::Int(12);
        shorten_value(&mut short);
        assert_eq!(short, Value::Int(12));
    }
}
