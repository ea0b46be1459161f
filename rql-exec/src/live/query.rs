//! A query over live records (SPEC §5): the [`Sequencer`] decides which steps are final, and
//! the same [`Engine`] as a replay evaluates them, so a live query emits what a replay of the
//! same records emits (when none is late). Emitted records carry `stale` (idle nodes) and
//! `late` (a late record was applied since the previous emitted record).
//!
//! Node ids and variable names are not known in advance on a live source. The engine's state is
//! dense (indexed by node and variable), so when a final step names something new the engine
//! is rebuilt for the larger names with its state carried over ([`Engine::resume`]); that
//! happens once per new name, not per step.

use std::time::Instant;

use log_server::{Hlc, Record};
use rql_planner::{Plan, TimeSpec};

use super::order::{FinalGroup, Sequencer};
use crate::columnar::{Names, StepBuilder, Steps, VarTable};
use crate::engine::{Emitted, Engine, ExecError, ExecOptions, Flow, Stats};
use crate::output::OutputRecord;

/// How a live query treats its sources.
#[derive(Clone, Copy, Debug)]
pub struct LiveOptions {
    /// A node that sent nothing for this long is idle (SPEC §5.2).
    pub idle_timeout_ms: u64,
    pub exec: ExecOptions,
}

/// One live query: records in, emitted records out.
pub struct LiveQuery<'p> {
    plan: &'p Plan,
    opts: ExecOptions,
    order: Sequencer,
    names: Names,
    /// `None` only while being rebuilt.
    engine: Option<Engine<'p>>,
    /// The next emitted record carries `"late":true`.
    late_pending: bool,
    started: bool,
    done: bool,
    steps: Steps,
    start: Instant,
}

impl<'p> LiveQuery<'p> {
    pub fn new(plan: &'p Plan, opts: LiveOptions) -> LiveQuery<'p> {
        let names = Names::default();
        LiveQuery {
            plan,
            opts: opts.exec,
            order: Sequencer::new(opts.idle_timeout_ms),
            engine: Some(Engine::new(plan, &names, opts.exec)),
            names,
            late_pending: false,
            started: false,
            done: false,
            steps: Steps::default(),
            start: Instant::now(),
        }
    }

    /// The frontier F.
    pub fn frontier(&self) -> Hlc {
        self.order.frontier()
    }

    /// Records received and not evaluated yet (the caller bounds this).
    pub fn buffered(&self) -> usize {
        self.order.buffered()
    }

    /// False once nothing more can be emitted (LIMIT reached, past the time range).
    pub fn wants_more(&self) -> bool {
        !self.done
    }

    /// Idle nodes now.
    pub fn stale(&self, now_ms: u64) -> Vec<String> {
        self.order.stale(now_ms)
    }

    pub fn stats(&self) -> Stats {
        let mut stats = self
            .engine
            .as_ref()
            .map(|e| e.stats.clone())
            .unwrap_or_default();
        stats.late = self.order.late_total;
        stats.elapsed = self.start.elapsed();
        stats
    }

    /// Forces the frontier forward when too many records wait (see [`Sequencer::relieve`]).
    pub fn relieve(&mut self) {
        self.order.relieve();
    }

    /// Declares a node that will send (see [`Sequencer::expect`]): steps do not become final
    /// before its first record arrives or it turns idle. Call before [`LiveQuery::start`].
    pub fn expect_node(&mut self, node: &str, now_ms: u64) {
        self.order.expect(node, now_ms);
    }

    /// Takes one record as it arrives (`now_ms`: the caller's monotonic clock).
    pub fn push(&mut self, rec: Record, now_ms: u64) {
        self.order.push(rec, now_ms);
    }

    /// Starts the query. Without ON TIME or SINCE it starts at the current frontier F0: the
    /// history through F0 is applied, then `C(F0)` is evaluated as seq 1 (if anything has been
    /// received). With ON TIME or SINCE every step is evaluated as in a replay.
    pub fn start(
        &mut self,
        now_ms: u64,
        emit: &mut dyn FnMut(OutputRecord),
    ) -> Result<Flow, ExecError> {
        self.started = true;
        if !matches!(self.plan.time, TimeSpec::All) || !self.order.received_any() {
            return self.advance(now_ms, emit);
        }
        let f0 = self.order.advance(now_ms);
        let history = self.order.drain_through(f0);
        let mut at = 0;
        while at < history.len() {
            let hlc = history[at].hlc;
            let end = history[at..]
                .iter()
                .position(|r| r.hlc != hlc)
                .map_or(history.len(), |i| at + i);
            self.prepare(&history[at..end], hlc)?;
            if let (Some(engine), Some(group)) = (self.engine.as_mut(), self.steps.groups.first()) {
                engine.apply_only(&self.steps, group)?;
            }
            at = end;
        }
        self.order.start_at(f0);
        // Which nodes are stale is only worked out when a record is emitted (most steps emit
        // nothing).
        let order = &self.order;
        let late = &mut self.late_pending;
        let flow = match self.engine.as_mut() {
            Some(engine) => engine.start_snapshot(f0, &mut |e: Emitted<'_, '_>| {
                emit(mark(e.record(), &order.stale(now_ms), late))
            })?,
            None => Flow::Continue,
        };
        if flow == Flow::Done {
            self.done = true;
            return Ok(Flow::Done);
        }
        self.advance(now_ms, emit)
    }

    /// Moves the frontier as far as the clocks allow at `now_ms` and evaluates every step
    /// that became final, in HLC order.
    pub fn advance(
        &mut self,
        now_ms: u64,
        emit: &mut dyn FnMut(OutputRecord),
    ) -> Result<Flow, ExecError> {
        if self.done || !self.started {
            return Ok(if self.done {
                Flow::Done
            } else {
                Flow::Continue
            });
        }
        let frontier = self.order.advance(now_ms);
        let snapshot_at = match self.plan.time {
            TimeSpec::Snapshot { at } => Some(at),
            _ => None,
        };
        while let Some(hlc) = self.order.peek_final() {
            // A snapshot's cut holds exactly the records up to its time.
            if snapshot_at.is_some_and(|at| hlc > at) {
                break;
            }
            let Some(group) = self.order.next_final() else {
                break;
            };
            if self.run_group(group, now_ms, emit)? == Flow::Done {
                self.done = true;
                return Ok(Flow::Done);
            }
        }
        // Every step up to the frontier is final: a range that ends before it, or a snapshot
        // time before it, is complete.
        match self.plan.time {
            TimeSpec::Range { to, .. } if to < frontier => {
                self.done = true;
            }
            TimeSpec::Snapshot { at } if at < frontier => {
                let order = &self.order;
                let late = &mut self.late_pending;
                if let Some(engine) = self.engine.as_mut() {
                    engine.snapshot(at, &mut |e: Emitted<'_, '_>| {
                        emit(mark(e.record(), &order.stale(now_ms), late))
                    })?;
                }
                self.done = true;
            }
            _ => {}
        }
        Ok(if self.done {
            Flow::Done
        } else {
            Flow::Continue
        })
    }

    fn run_group(
        &mut self,
        mut group: FinalGroup,
        now_ms: u64,
        emit: &mut dyn FnMut(OutputRecord),
    ) -> Result<Flow, ExecError> {
        if group.late > 0 {
            self.late_pending = true;
        }
        // Held records are applied at the start of this step, as part of it.
        for rec in &mut group.records {
            rec.hlc = group.hlc;
        }
        self.prepare(&group.records, group.hlc)?;
        let order = &self.order;
        let late = &mut self.late_pending;
        let (Some(engine), Some(g)) = (self.engine.as_mut(), self.steps.groups.first()) else {
            return Ok(Flow::Continue);
        };
        engine.step(&self.steps, g, &mut |e: Emitted<'_, '_>| {
            emit(mark(e.record(), &order.stale(now_ms), late))
        })
    }

    /// Turns `records` (all stamped `hlc`) into `self.steps`, rebuilding the engine first if
    /// they name a node or variable it has not seen.
    fn prepare(&mut self, records: &[Record], hlc: Hlc) -> Result<(), ExecError> {
        let missing = records.iter().any(|r| {
            self.names.nodes.binary_search(&r.node).is_err()
                || r.touched_vars()
                    .any(|v| self.names.vars.get(v.as_str()).is_none())
        });
        if missing {
            let mut nodes = self.names.nodes.clone();
            let mut vars: VarTable = self.names.vars.clone();
            for r in records {
                if let Err(i) = nodes.binary_search(&r.node) {
                    nodes.insert(i, r.node.clone());
                }
                for v in r.touched_vars() {
                    vars.intern(v);
                }
            }
            self.names = Names { nodes, vars };
            if let Some(old) = self.engine.take() {
                self.engine = Some(Engine::resume(
                    self.plan,
                    &self.names,
                    self.opts,
                    old.carry(),
                )?);
            }
        }
        self.steps.clear();
        let mut builder = StepBuilder::new(&self.names);
        for rec in records {
            debug_assert_eq!(rec.hlc, hlc);
            // Every name is in `self.names` now.
            let _ = builder.push(&mut self.steps, rec);
        }
        Ok(())
    }
}

/// Adds the live fields to an emitted record.
fn mark(mut rec: OutputRecord, stale: &[String], late: &mut bool) -> OutputRecord {
    let late = std::mem::take(late);
    match &mut rec {
        OutputRecord::Cut(c) => {
            c.stale = stale.to_vec();
            c.late = late;
        }
        OutputRecord::End(e) => {
            e.stale = stale.to_vec();
            e.late = late;
        }
    }
    rec
}
