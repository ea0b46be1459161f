//! The replay driver: runs a plan over a whole saved trace (records already sorted by HLC).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use log_server::{Hlc, Record};
use rql_planner::{Catalog, Plan, TimeSpec};

use crate::engine::{Engine, ExecError, ExecOptions, Flow, Stats};
use crate::output::OutputRecord;

/// What the planner should know about a trace: its variables and what NOW means.
pub fn catalog_of<'r>(records: impl IntoIterator<Item = &'r Record>) -> Catalog {
    let mut vars: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut now = Hlc::MIN;
    for rec in records {
        now = now.max(rec.hlc);
        for v in rec.touched_vars() {
            vars.entry(v.log().to_string())
                .or_default()
                .insert(v.key().to_string());
        }
    }
    Catalog {
        vars,
        now_ms: now.physical(),
        live: false,
    }
}

/// Run `plan` over `records` (sorted by HLC; equal HLCs in arrival order) and hand every
/// emitted record to `emit`.
pub fn replay<'r>(
    plan: &Plan,
    records: &'r [&'r Record],
    opts: ExecOptions,
    emit: &mut dyn FnMut(OutputRecord),
) -> Result<Stats, ExecError> {
    let start = Instant::now();
    let mut engine = Engine::new(plan, opts);
    let snapshot = match plan.time {
        TimeSpec::Snapshot { at } => Some(at),
        _ => None,
    };
    let mut i = 0;
    while i < records.len() {
        let hlc = records[i].hlc;
        if snapshot.is_some_and(|at| hlc > at) {
            break;
        }
        let mut j = i + 1;
        while j < records.len() && records[j].hlc == hlc {
            j += 1;
        }
        if engine.step(hlc, &records[i..j], emit)? == Flow::Done {
            break;
        }
        i = j;
    }
    if let Some(at) = snapshot {
        engine.snapshot(at, emit)?;
    }
    let mut stats = engine.stats;
    stats.elapsed = start.elapsed();
    Ok(stats)
}
