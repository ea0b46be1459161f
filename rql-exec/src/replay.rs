//! The replay driver: runs a plan over a whole saved trace (records already sorted by HLC).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use log_server::{Hlc, Record};
use rql_planner::{Catalog, Plan, TimeSpec};

use crate::columnar::{Columnar, HlcGroup, Names, Steps, VarIdx};
use crate::engine::{Emitted, Engine, ExecError, ExecOptions, Flow, Stats};
use crate::output::OutputRecord;

/// What the planner should know about a trace: its variables and what NOW means.
pub fn catalog_of<'r>(records: impl IntoIterator<Item = &'r Record>) -> Catalog {
    let records: Vec<&Record> = records.into_iter().collect();
    catalog_of_columnar(&Columnar::from_records(&records))
}

/// [`catalog_of`] for a trace already in columnar form.
pub fn catalog_of_columnar(cols: &Columnar) -> Catalog {
    let last = cols.steps.groups.last().map(|g| g.hlc);
    catalog_of_names(&cols.names, last.map_or(0, |h| h.physical()))
}

/// [`catalog_of`] from a trace's names and its last HLC's physical time (NOW for a replay).
pub fn catalog_of_names(names: &Names, now_ms: u64) -> Catalog {
    let mut vars: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for v in 0..names.vars.len() {
        let name = names.vars.name(v as VarIdx);
        vars.entry(name.log().to_string())
            .or_default()
            .insert(name.key().to_string());
    }
    Catalog {
        vars,
        now_ms,
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
    let mut replay = Replay::new(plan, &cols.names, opts);
    replay.feed(&cols.steps, emit)?;
    replay.finish(start, emit)
}

/// A replay fed steps a batch at a time (in HLC order, a group never split across batches):
/// the streaming driver holds one batch, not the trace.
pub struct Replay<'p> {
    engine: Engine<'p>,
    snapshot: Option<Hlc>,
    done: bool,
}

impl<'p> Replay<'p> {
    pub fn new(plan: &'p Plan, names: &'p Names, opts: ExecOptions) -> Replay<'p> {
        Replay {
            engine: Engine::new(plan, names, opts),
            snapshot: match plan.time {
                TimeSpec::Snapshot { at } => Some(at),
                _ => None,
            },
            done: false,
        }
    }

    /// False once nothing more can be emitted (LIMIT reached, past the time range).
    pub fn wants_more(&self) -> bool {
        !self.done
    }

    pub fn feed(
        &mut self,
        steps: &Steps,
        emit: &mut dyn FnMut(Emitted<'_, 'p>),
    ) -> Result<(), ExecError> {
        self.feed_groups(steps, &steps.groups, emit)
    }

    /// [`Replay::feed`] of some of `steps`' groups (consecutive, in order, after those fed
    /// before): a driver that checks for cancellation between slices of one in-memory trace.
    pub fn feed_groups(
        &mut self,
        steps: &Steps,
        groups: &[HlcGroup],
        emit: &mut dyn FnMut(Emitted<'_, 'p>),
    ) -> Result<(), ExecError> {
        for group in groups {
            if self.done || self.snapshot.is_some_and(|at| group.hlc > at) {
                self.done = true;
                break;
            }
            if self.engine.step(steps, group, emit)? == Flow::Done {
                self.done = true;
            }
        }
        Ok(())
    }

    /// Evaluates a snapshot query's cut and returns the statistics; `start` is when the
    /// replay began (for the elapsed time).
    pub fn finish(
        mut self,
        start: Instant,
        emit: &mut dyn FnMut(Emitted<'_, 'p>),
    ) -> Result<Stats, ExecError> {
        if let Some(at) = self.snapshot {
            self.engine.snapshot(at, emit)?;
        }
        let mut stats = self.engine.stats;
        stats.elapsed = start.elapsed();
        Ok(stats)
    }
}
