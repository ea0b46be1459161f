//! The query engine: applies steps to the cut state, decides candidacy (SPEC §4.1), evaluates
//! candidates within the time range (§4.2), and emits records for `EMIT CUTS` / `EMIT CHANGES`
//! with `LIMIT` (§4.3). Drivers (replay here, live later) feed it one HLC's records at a time.

use std::time::Duration;

use log_server::{ApplyError, Hlc, Record, Value};
use rql_parser::Emit;
use rql_planner::ops::{self, Val, Warnings};
use rql_planner::BindingUnit;
use rql_planner::{OutputItem, Plan, TimeSpec};

use crate::cut::{CutState, NodeIdx};
use crate::eval::{var_name, BoundExceeded, Evaluator};
use crate::output::{CutRecord, EndRecord, OutValue, OutputRecord};

/// Default bound on the outer bindings enumerated for one cut.
pub const DEFAULT_MAX_BINDINGS: u64 = 10_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecOptions {
    /// Enumeration bound per cut (`--max-bindings`).
    pub max_bindings: u64,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            max_bindings: DEFAULT_MAX_BINDINGS,
        }
    }
}

/// The statistics of SPEC §4.4.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Steps (distinct HLCs with a change record) applied.
    pub steps: u64,
    /// Candidate cuts evaluated (within the time range).
    pub candidates: u64,
    /// Records emitted (cuts, or begin/end records).
    pub emitted: u64,
    pub warnings: Warnings,
    /// Records that arrived late (live sources).
    pub late: u64,
    /// Bad records skipped while reading (`--skip-bad`).
    pub skipped_records: u64,
    pub elapsed: Duration,
}

#[derive(Debug)]
pub enum ExecError {
    /// The enumeration bound was exceeded at this cut.
    Bound {
        seq: u64,
        hlc: Hlc,
        detail: BoundExceeded,
    },
    /// A record could not be applied (`add` on a non-set); readers catch this earlier.
    Apply(ApplyError),
}

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecError::Bound { seq, hlc, detail } => write!(
                f,
                "cut {hlc} (candidate {seq}): {detail}; raise it with --max-bindings, or LINK \
                 the variables that belong to one node"
            ),
            ExecError::Apply(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ExecError {}

/// Whether the driver should keep feeding steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// LIMIT reached or past the end of the time range: nothing more can be emitted.
    Done,
}

struct Run {
    begin: Hlc,
    cuts: u64,
}

pub struct Engine<'p> {
    plan: &'p Plan,
    evaluator: Evaluator,
    cut: CutState,
    seq: u64,
    run: Option<Run>,
    pub stats: Stats,
    done: bool,
    touched: Vec<NodeIdx>,
}

impl<'p> Engine<'p> {
    pub fn new(plan: &'p Plan, opts: ExecOptions) -> Engine<'p> {
        Engine {
            plan,
            evaluator: Evaluator::new(plan, opts.max_bindings),
            cut: CutState::new(&plan.logs, plan.at_nodes.as_ref()),
            seq: 0,
            run: None,
            stats: Stats::default(),
            done: false,
            touched: Vec::new(),
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Apply every record stamped `hlc` (one step if any changes something) and, if the step
    /// is a candidate within the time range, evaluate it. Emitted records go to `emit`.
    pub fn step(
        &mut self,
        hlc: Hlc,
        records: &[&Record],
        emit: &mut dyn FnMut(OutputRecord),
    ) -> Result<Flow, ExecError> {
        if self.done {
            return Ok(Flow::Done);
        }
        let (evaluate_from, evaluate_to) = match self.plan.time {
            TimeSpec::All => (Hlc::MIN, Hlc::MAX),
            TimeSpec::Range { from, to } => (from, to),
            TimeSpec::Since { from } => (from, Hlc::MAX),
            // Snapshots are evaluated by `snapshot`; steps only build the state.
            TimeSpec::Snapshot { .. } => (Hlc::MAX, Hlc::MIN),
        };
        if hlc > evaluate_to && !matches!(self.plan.time, TimeSpec::Snapshot { .. }) {
            self.done = true;
            return Ok(Flow::Done);
        }
        let (is_step, candidate) = self.apply(records)?;
        if !is_step {
            return Ok(Flow::Continue);
        }
        self.stats.steps += 1;
        if !candidate || hlc < evaluate_from || hlc > evaluate_to {
            return Ok(Flow::Continue);
        }
        self.seq += 1;
        self.stats.candidates += 1;
        self.evaluate(hlc, emit)
    }

    /// Apply records; returns (they make a step, the step is a candidate).
    fn apply(&mut self, records: &[&Record]) -> Result<(bool, bool), ExecError> {
        self.touched.clear();
        let mut is_step = false;
        let mut touches_referenced = false;
        for rec in records {
            let applied = self.cut.apply(rec).map_err(ExecError::Apply)?;
            if !self.touched.contains(&applied.node) {
                self.touched.push(applied.node);
            }
            if rec.is_heartbeat() {
                continue;
            }
            is_step = true;
            if applied.node_selected && !touches_referenced {
                let refs = &self.plan.referenced;
                touches_referenced = rec.touched_vars().any(|v| refs.contains(v.log(), v.key()));
            }
        }
        let p_changed = self.cut.finish_step(&self.touched);
        Ok((is_step, touches_referenced || p_changed))
    }

    /// Evaluate the snapshot `C(at)`: the state must hold every record `<= at`.
    pub fn snapshot(
        &mut self,
        at: Hlc,
        emit: &mut dyn FnMut(OutputRecord),
    ) -> Result<Flow, ExecError> {
        self.seq = 1;
        self.stats.candidates += 1;
        self.evaluate(at, emit)?;
        self.done = true;
        Ok(Flow::Done)
    }

    fn evaluate(
        &mut self,
        hlc: Hlc,
        emit: &mut dyn FnMut(OutputRecord),
    ) -> Result<Flow, ExecError> {
        let result = self
            .evaluator
            .evaluate(&self.cut, &mut self.stats.warnings)
            .map_err(|detail| ExecError::Bound {
                seq: self.seq,
                hlc,
                detail,
            })?;
        let satisfied = result.binding.is_some();
        let record = match (self.plan.emit, satisfied, &mut self.run) {
            (Emit::Cuts, true, _) => Some(self.cut_record(hlc, false, &result)),
            (Emit::Cuts, false, _) => None,
            (Emit::Changes, true, Some(run)) => {
                run.cuts += 1;
                None
            }
            (Emit::Changes, true, None) => {
                self.run = Some(Run {
                    begin: hlc,
                    cuts: 1,
                });
                Some(self.cut_record(hlc, true, &result))
            }
            (Emit::Changes, false, Some(_)) => self.run.take().map(|run| {
                OutputRecord::End(EndRecord {
                    seq: self.seq,
                    hlc,
                    duration_ms: hlc.physical().saturating_sub(run.begin.physical()),
                    cuts: run.cuts,
                    stale: Vec::new(),
                    late: false,
                })
            }),
            (Emit::Changes, false, None) => None,
        };
        if let Some(r) = record {
            emit(r);
            self.stats.emitted += 1;
            if self.plan.limit.is_some_and(|l| self.stats.emitted >= l) {
                self.done = true;
                return Ok(Flow::Done);
            }
        }
        Ok(Flow::Continue)
    }

    fn cut_record(&self, hlc: Hlc, begin: bool, result: &crate::eval::CutResult) -> OutputRecord {
        let p = self.cut.participants();
        let mut values: Vec<(String, OutValue)> = Vec::new();
        let mut push = |name: String, v: OutValue| {
            // Identical names print once, at the first position (SPEC §6).
            if !values.iter().any(|(n, _)| *n == name) {
                values.push((name, v));
            }
        };
        for item in &self.plan.outputs {
            match item {
                OutputItem::Variable {
                    name,
                    var,
                    path,
                    node,
                } => {
                    let var = var_name(&var.log, &var.key);
                    let read = |n: NodeIdx| -> Val {
                        let v = self.cut.value(n, &var)?;
                        if path.is_empty() {
                            Some(v.clone())
                        } else {
                            ops::field(&Some(v.clone()), path)
                        }
                    };
                    let nodes: Vec<(String, Value)> = match node {
                        Some(id) => self
                            .cut
                            .lookup(id)
                            .filter(|&n| self.cut.in_cut(n))
                            .and_then(|n| read(n).map(|v| (id.clone(), v)))
                            .into_iter()
                            .collect(),
                        None => p
                            .iter()
                            .filter_map(|&n| read(n).map(|v| (self.cut.node_id(n).to_string(), v)))
                            .collect(),
                    };
                    push(name.clone(), OutValue::Nodes(nodes));
                }
                OutputItem::AllOf { logs } => {
                    let mut names = std::collections::BTreeMap::new();
                    for log in logs {
                        for &n in p {
                            for (var, v) in self.cut.vars_of_log(n, log) {
                                names
                                    .entry(var.as_str().to_string())
                                    .or_insert_with(Vec::new)
                                    .push((self.cut.node_id(n).to_string(), v.clone()));
                            }
                        }
                    }
                    for (name, nodes) in names {
                        push(name, OutValue::Nodes(nodes));
                    }
                }
                OutputItem::Aggregate { name, index } => {
                    let v = result.aggregates.get(*index).cloned().flatten();
                    push(name.clone(), OutValue::One(v));
                }
            }
        }
        let listed = self.plan.witness_placeholders();
        let witness = (!listed.is_empty()).then(|| {
            let binding = result.binding.as_deref().unwrap_or(&[]);
            listed
                .iter()
                .map(|&k| {
                    let node = self
                        .plan
                        .units
                        .iter()
                        .position(|u| unit_contains(self.plan, *u, k))
                        .and_then(|i| binding.get(i))
                        .map(|&n| self.cut.node_id(n).to_string());
                    (k, node)
                })
                .collect()
        });
        OutputRecord::Cut(CutRecord {
            begin,
            seq: self.seq,
            hlc,
            values,
            witness,
            stale: Vec::new(),
            late: false,
        })
    }
}

fn unit_contains(plan: &Plan, unit: BindingUnit, k: u32) -> bool {
    match unit {
        BindingUnit::Free(f) => f == k,
        BindingUnit::SameNode(g) => plan.groups[g].placeholders.contains(&k),
    }
}
