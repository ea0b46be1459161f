//! The replay driver: runs a plan over a whole saved trace (records already sorted by HLC).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use log_server::Record;
use rql_planner::{Catalog, Plan, TimeSpec};

use crate::columnar::{Columnar, VarIdx};
use crate::engine::{Emitted, Engine, ExecError, ExecOptions, Flow, Stats};
use crate::output::OutputRecord;

/// What the planner should know about a trace: its variables and what NOW means.
pub fn catalog_of<'r>(records: impl IntoIterator<Item = &'r Record>) -> Catalog {
    let records: Vec<&Record> = records.into_iter().collect();
    catalog_of_columnar(&Columnar::from_records(&records))
}

/// [`catalog_of`] for a trace already in columnar form.
pub fn catalog_of_columnar(cols: &Columnar) -> Catalog {
    let mut vars: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for v in 0..cols.vars.len() {
        let name = cols.vars.name(v as VarIdx);
        vars.entry(name.log().to_string())
            .or_default()
            .insert(name.key().to_string());
    }
    Catalog {
        vars,
        now_ms: cols.groups.last().map_or(0, |g| g.hlc.physical()),
        live: false,
    }
}

/// Run `plan` over `records` (sorted by HLC; equal HLCs in arrival order) and hand every
/// emitted record to `emit`.
pub fn replay(
    plan: &Plan,
    records: &[&Record],
    opts: ExecOptions,
    emit: &mut dyn FnMut(OutputRecord),
) -> Result<Stats, ExecError> {
    let cols = Columnar::from_records(records);
    replay_columnar(plan, &cols, opts, &mut |e: Emitted<'_, '_>| {
        emit(e.record())
    })
}

/// [`replay`] over a trace already in columnar form (load once, query many times); records
/// are built only if `emit` asks for them ([`Emitted::record`]).
pub fn replay_columnar<'p>(
    plan: &'p Plan,
    cols: &'p Columnar,
    opts: ExecOptions,
    emit: &mut dyn FnMut(Emitted<'_, 'p>),
) -> Result<Stats, ExecError> {
    let start = Instant::now();
    let mut engine = Engine::new(plan, cols, opts);
    let snapshot = match plan.time {
        TimeSpec::Snapshot { at } => Some(at),
        _ => None,
    };
    for group in &cols.groups {
        if snapshot.is_some_and(|at| group.hlc > at) {
            break;
        }
        if engine.step(group, emit)? == Flow::Done {
            break;
        }
    }
    if let Some(at) = snapshot {
        engine.snapshot(at, emit)?;
    }
    let mut stats = engine.stats;
    stats.elapsed = start.elapsed();
    Ok(stats)
}
