//! What a live query needs from the engine beyond a replay: history applied without
//! evaluation, the starting snapshot as the first candidate, and a rebuild when node ids or
//! variable names appear that the engine's dense state was not sized for.
//!
//! A rebuild carries the cut (by node id and variable name) and the query's counters into a
//! new engine built for the larger names; its incremental parts are recomputed by applying the
//! carried state as one silent step. Output is unaffected: everything that decides a later
//! cut (values, P(t), the EMIT CHANGES run, seq, LIMIT) is carried.

use log_server::{Hlc, Value, VarName};
use rql_planner::Plan;

use super::{Emitted, Engine, ExecError, ExecOptions, Flow, Run, Stats};
use crate::columnar::{CRecord, HlcGroup, Names, NodeIdx, Op, Steps, VarIdx};

/// The part of an engine that survives a rebuild.
pub struct Carry {
    /// Nodes in the cut, with their present variables.
    state: Vec<(String, Vec<(VarName, Value)>)>,
    seq: u64,
    run: Option<Run>,
    stats: Stats,
    done: bool,
}

impl<'p> Engine<'p> {
    /// Applies one HLC group as history before the query starts: the state moves, nothing is
    /// evaluated or counted.
    pub fn apply_only(&mut self, steps: &Steps, group: &HlcGroup) -> Result<(), ExecError> {
        self.apply(steps, group).map(|_| ())
    }

    /// Evaluates the current cut as the live query's first candidate (SPEC §5.1: the snapshot
    /// `C(F0)`, seq 1, `hlc` = F0); later steps continue the numbering.
    pub fn start_snapshot(
        &mut self,
        at: Hlc,
        emit: &mut dyn FnMut(Emitted<'_, 'p>),
    ) -> Result<Flow, ExecError> {
        if self.done {
            return Ok(Flow::Done);
        }
        self.seq += 1;
        self.stats.candidates += 1;
        self.evaluate(at, emit)
    }

    /// Whether `names` holds every node id and variable this engine knows (in the same order
    /// for variables), so records interned against `names` can be stepped here.
    pub fn covers(&self, names: &Names) -> bool {
        names.nodes.len() == self.cut.node_count() && names.vars.len() == self.vars.len()
    }

    /// Everything to carry into a rebuilt engine.
    pub fn carry(self) -> Carry {
        let state = (0..self.cut.node_count() as NodeIdx)
            .filter(|&n| self.cut.in_cut(n))
            .map(|n| {
                let values = self
                    .cut
                    .present(n)
                    .map(|(v, x)| (self.vars.name(v).clone(), x.clone()))
                    .collect();
                (self.cut.node_id(n).to_string(), values)
            })
            .collect();
        Carry {
            state,
            seq: self.seq,
            run: self.run,
            stats: self.stats,
            done: self.done,
        }
    }

    /// A new engine for `names` (a superset of the carried engine's) in the carried state.
    pub fn resume(
        plan: &'p Plan,
        names: &Names,
        opts: ExecOptions,
        carry: Carry,
    ) -> Result<Engine<'p>, ExecError> {
        let mut engine = Engine::new(plan, names, opts);
        let mut steps = Steps::default();
        for (id, values) in &carry.state {
            let Ok(node) = names.nodes.binary_search(id) else {
                continue; // not possible: `names` covers the carried engine's
            };
            let first_op = steps.ops.len() as u32;
            for (var, value) in values {
                if let Some(v) = names.vars.get(var.as_str()) {
                    steps.ops.push(Op::Set(v as VarIdx, value.clone()));
                }
            }
            let end_op = steps.ops.len() as u32;
            steps.records.push(CRecord {
                node: node as NodeIdx,
                first_op,
                end_op,
                leave: false,
                heartbeat: first_op == end_op,
            });
        }
        let group = HlcGroup {
            hlc: Hlc::MIN,
            start: 0,
            end: steps.records.len() as u32,
        };
        engine.apply(&steps, &group)?;
        engine.seq = carry.seq;
        engine.run = carry.run;
        engine.stats = carry.stats;
        engine.done = carry.done;
        Ok(engine)
    }
}
