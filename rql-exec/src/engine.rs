//! The query engine: applies steps to the cut state, keeps the incremental parts of the query
//! current, decides candidacy (SPEC §4.1), evaluates candidates within the time range (§4.2)
//! with the strategy the planner chose for each part, and emits records for `EMIT CUTS` /
//! `EMIT CHANGES` with `LIMIT` (§4.3). Drivers feed it one HLC's records at a time.

use std::collections::BTreeMap;
use std::time::Duration;

use log_server::{Hlc, Value};
use rql_parser::Emit;
use rql_planner::ops::{Val, Warnings};
use rql_planner::strategy::{choose, AggMethod, GroupMethod, OuterMethod};
use rql_planner::{BindingUnit, OutputItem, Plan, TimeSpec};

use crate::columnar::{HlcGroup, Names, NodeIdx, Steps, VarIdx, VarTable};

mod carry;
use crate::compile::{
    aggregate_over_p, eval, eval_plain, holds, strict_units, CExpr, Compiler, Env, NameLookup,
    PlainKind, Site,
};
use crate::incremental::{same_value, AggState, Extremes, NodeTruth};
use crate::output::{CutView, EndRecord, OutValueView, OutputRecord, RecordWriter};
use crate::state::{ApplyError, CutState};
pub use carry::Carry;

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
    /// The part of `elapsed` the driver spent building and writing emitted records (set by
    /// drivers that measure it): `elapsed - output` is the evaluation itself.
    pub output: Duration,
}

#[derive(Debug)]
pub enum ExecError {
    /// The enumeration bound was exceeded at this cut.
    Bound {
        seq: u64,
        hlc: Hlc,
        bindings: u128,
        bound: u64,
    },
    /// A record could not be applied (`add` on a non-set); readers catch this earlier.
    Apply(ApplyError),
}

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecError::Bound {
                seq,
                hlc,
                bindings,
                bound,
            } => write!(
                f,
                "cut {hlc} (candidate {seq}): evaluating WHEN needs {bindings} bindings, more \
                 than the enumeration bound of {bound}; raise it with --max-bindings, or LINK \
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

enum Agg {
    Incremental(Box<AggState>),
    /// Answered by aggregate `of`'s state (MIN and MAX of one argument share it).
    Mirror {
        of: usize,
        func: rql_planner::ops::AggFn,
    },
    Scan(rql_planner::ops::AggFn, Option<CExpr>),
}

/// How the outer binding is decided.
enum Outer {
    Always,
    /// WHEN has no placeholders: evaluated once per cut, or not at all when it reads only
    /// aggregates and groups and none of their values changed (`last` keeps the previous answer).
    Direct {
        when: CExpr,
        reads_cut: bool,
        last: Option<DirectAnswer>,
    },
    /// One unit: per-node truth; `empty` is WHEN with every placeholder NULL (for empty P).
    NodeCache {
        truth: NodeTruth,
        empty: CExpr,
    },
    Extremes(ExtremesOuter),
    Enumerate(Enumeration),
}

/// WHEN's answer for given aggregate and group values, with the warnings it raised (counted
/// again each time the answer is reused, as if WHEN had been evaluated; `None` if none).
struct DirectAnswer {
    aggs: Vec<Val>,
    groups: Vec<Option<bool>>,
    holds: bool,
    warnings: Option<Warnings>,
}

/// Identical values, kind included; containers are never taken as identical (no reuse).
fn identical(a: &[Val], b: &[Val]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (None, None) => true,
            (Some(x), Some(y)) => same_value(x, y),
            _ => false,
        })
}

struct Enumeration {
    when: CExpr,
    /// Per unit: variables that must be non-NULL on the unit's node for WHEN to hold.
    strict: Vec<Vec<(VarIdx, Vec<String>)>>,
    /// A strict variable the trace never has: no binding can satisfy.
    impossible: bool,
}

struct ExtremesOuter {
    /// WHEN reads aggregates (their kinds change per cut); constants are checked once.
    reads_aggregates: bool,
    /// A string constant: numeric extremes never decide then.
    string_constant: bool,
    /// The number kinds of WHEN's constants (when it reads no aggregates; else counted per cut).
    constant_kinds: NumberKinds,
    when: CExpr,
    /// Per unit: index into `vars`, and whether the unit wants its variable's maximum.
    units: Vec<(usize, bool)>,
    vars: Vec<Extremes>,
    fallback: Enumeration,
}

/// The result of deciding one cut: the witness binding (one node per unit; empty when P(t) is
/// empty or there are no units), or `None` if the cut does not satisfy WHEN.
type Decision = Option<Vec<NodeIdx>>;

struct Run {
    begin: Hlc,
    cuts: u64,
}

enum What {
    Cut { begin: bool, binding: Vec<NodeIdx> },
    End(EndRecord),
}

/// A record the engine emits, built on demand from the engine's state at that moment: a
/// consumer that only counts or filters pays nothing for the values.
pub struct Emitted<'e, 'p> {
    engine: &'e Engine<'p>,
    hlc: Hlc,
    what: What,
}

impl Emitted<'_, '_> {
    pub fn record(&self) -> OutputRecord {
        match &self.what {
            What::Cut { begin, binding } => self.engine.cut_record(self.hlc, *begin, binding),
            What::End(e) => OutputRecord::End(e.clone()),
        }
    }

    /// Writes the record to `writer`; JSON Lines straight from the engine's state, without
    /// building an [`OutputRecord`] (the same bytes as writing [`Emitted::record`]).
    pub fn write<W: std::io::Write>(&self, writer: &mut RecordWriter<W>) -> std::io::Result<()> {
        match &self.what {
            What::Cut { begin, binding } => {
                writer.write_cut(&self.engine.cut_view(self.hlc, *begin, binding))
            }
            What::End(e) => writer.write(&OutputRecord::End(e.clone())),
        }
    }

    pub fn hlc(&self) -> Hlc {
        self.hlc
    }
}

pub struct Engine<'p> {
    plan: &'p Plan,
    /// The variables of the trace (a copy: a live query rebuilds its engine when names appear,
    /// so the engine must not borrow them from the driver).
    vars: VarTable,
    max_bindings: u64,
    cut: CutState,
    referenced: Vec<bool>,
    /// Per SELECT item: its variable's index (`None` if not a variable or never seen).
    output_vars: Vec<Option<VarIdx>>,
    aggs: Vec<Agg>,
    agg_values: Vec<Val>,
    /// Per aggregate: the state version its value was computed at, and the warnings that raised.
    agg_seen: Vec<(Option<u64>, Option<Warnings>)>,
    groups: Vec<Option<NodeTruth>>,
    group_values: Vec<Option<bool>>,
    outer: Outer,
    seq: u64,
    run: Option<Run>,
    pub stats: Stats,
    done: bool,
    touched: Vec<NodeIdx>,
    /// Per node: `mark[n] == epoch` if touched in the current step; bit 0 of `relevant[n]`
    /// says a referenced variable of it changed.
    mark: Vec<u64>,
    relevant: Vec<bool>,
    epoch: u64,
}

impl<'p> Engine<'p> {
    pub fn new(plan: &'p Plan, names: &Names, opts: ExecOptions) -> Engine<'p> {
        let nodes = names.nodes.len();
        let vars = &names.vars;
        let from_var: Vec<bool> = (0..vars.len())
            .map(|v| plan.logs.iter().any(|l| l == vars.name(v as VarIdx).log()))
            .collect();
        let referenced: Vec<bool> = (0..vars.len())
            .map(|v| {
                let n = vars.name(v as VarIdx);
                plan.referenced.contains(n.log(), n.key())
            })
            .collect();
        let selected: Vec<bool> = names
            .nodes
            .iter()
            .map(|id| plan.at_nodes.as_ref().is_none_or(|s| s.contains(id)))
            .collect();
        let cut = CutState::new(names.nodes.clone(), selected, from_var);
        let var_of = |name: &str| vars.get(name);
        let node_of = |id: &str| {
            names
                .nodes
                .binary_search_by(|n| n.as_str().cmp(id))
                .ok()
                .map(|i| i as NodeIdx)
        };
        let compiler = |unit_is_local| Compiler {
            plan,
            names: NameLookup {
                var: &var_of,
                node: &node_of,
            },
            unit_is_local,
        };
        let c = compiler(false);
        let strategy = choose(plan);
        let mut aggs: Vec<Agg> = Vec::with_capacity(plan.aggregates.len());
        for (a, m) in plan.aggregates.iter().zip(&strategy.aggregates) {
            let arg = a.arg.as_ref().map(|x| c.expr(x));
            let shared = aggs.iter().position(|b| match b {
                Agg::Incremental(s) => s.answers(a.func, &arg),
                _ => false,
            });
            aggs.push(match (m, shared) {
                (AggMethod::Incremental, Some(of)) => Agg::Mirror { of, func: a.func },
                (AggMethod::Incremental, None) => {
                    Agg::Incremental(Box::new(AggState::new(a.func, arg, nodes)))
                }
                (AggMethod::ScanPerCut, _) => Agg::Scan(a.func, arg),
            });
        }
        let mut groups: Vec<Option<NodeTruth>> = (0..plan.groups.len()).map(|_| None).collect();
        if let Some(w) = &plan.when {
            w.walk(&mut |e| {
                if let rql_planner::PExprKind::Link { group, expr, .. } = &e.kind {
                    if strategy.groups[*group] == Some(GroupMethod::NodeCache) {
                        groups[*group] = Some(NodeTruth::new(c.expr(expr), nodes));
                    }
                }
            });
        }
        let when = plan.when.as_ref().map(|w| c.expr(w));
        let enumeration = |when: CExpr| {
            let mut strict = Vec::new();
            strict_units(&when, &mut strict);
            let mut per_unit = vec![Vec::new(); plan.units.len()];
            let mut impossible = false;
            for (u, var, path) in strict {
                match var {
                    Some(v) => per_unit[u].push((v, path)),
                    None => impossible = true,
                }
            }
            Enumeration {
                when,
                strict: per_unit,
                impossible,
            }
        };
        let outer = match (strategy.outer, when) {
            (OuterMethod::Always, _) | (_, None) => Outer::Always,
            (OuterMethod::Direct, Some(w)) => {
                let mut reads_cut = false;
                w.walk(&mut |e| {
                    // An EACH_NODE group evaluated per cut iterates P(t) itself.
                    reads_cut |= matches!(
                        e,
                        CExpr::Var { .. } | CExpr::NodeOf(_) | CExpr::EachNode(..)
                    );
                });
                Outer::Direct {
                    when: w,
                    reads_cut,
                    last: None,
                }
            }
            (OuterMethod::NodeCache, Some(w)) => {
                let local = plan.when.as_ref().map(|x| compiler(true).expr(x));
                Outer::NodeCache {
                    truth: NodeTruth::new(local.unwrap_or(CExpr::Const(None)), nodes),
                    empty: w,
                }
            }
            (OuterMethod::Extremes, Some(w)) => {
                let mut leaves = Vec::new();
                directions(&w, &mut leaves);
                let mut vars: Vec<Extremes> = Vec::new();
                let mut units = vec![(0, false); plan.units.len()];
                for (u, var, path, max) in leaves {
                    let i = match vars.iter().position(|e| e.var == var && e.path == path) {
                        Some(i) => i,
                        None => {
                            vars.push(Extremes::new(var, path, nodes));
                            vars.len() - 1
                        }
                    };
                    if let Some(slot) = units.get_mut(u) {
                        *slot = (i, max);
                    }
                }
                let (mut reads_aggregates, mut string_constant) = (false, false);
                w.walk(&mut |e| match e {
                    CExpr::Aggregate(_) => reads_aggregates = true,
                    CExpr::Const(Some(Value::Str(_))) => string_constant = true,
                    _ => {}
                });
                let mut constant_kinds = NumberKinds::default();
                constants(&w, &[], &mut |v| constant_kinds.count(v));
                Outer::Extremes(ExtremesOuter {
                    reads_aggregates,
                    string_constant,
                    constant_kinds,
                    fallback: enumeration(w.clone()),
                    when: w,
                    units,
                    vars,
                })
            }
            (OuterMethod::Enumerate, Some(w)) => Outer::Enumerate(enumeration(w)),
        };
        let output_vars = plan
            .outputs
            .iter()
            .map(|o| match o {
                OutputItem::Variable { var, .. } => vars.get(&var.name()),
                _ => None,
            })
            .collect();
        Engine {
            plan,
            vars: names.vars.clone(),
            max_bindings: opts.max_bindings,
            cut,
            referenced,
            output_vars,
            agg_values: vec![None; aggs.len()],
            agg_seen: vec![(None, None); aggs.len()],
            aggs,
            group_values: vec![None; plan.groups.len()],
            groups,
            outer,
            seq: 0,
            run: None,
            stats: Stats::default(),
            done: false,
            touched: Vec::new(),
            mark: vec![0; nodes],
            relevant: vec![false; nodes],
            epoch: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Apply one HLC's records (`group` of `steps`: one step if any changes something) and,
    /// if the step is a candidate within the time range, evaluate it. Emitted records go to
    /// `emit`.
    pub fn step(
        &mut self,
        steps: &Steps,
        group: &HlcGroup,
        emit: &mut dyn FnMut(Emitted<'_, 'p>),
    ) -> Result<Flow, ExecError> {
        if self.done {
            return Ok(Flow::Done);
        }
        let hlc = group.hlc;
        let (from, to) = match self.plan.time {
            TimeSpec::All => (Hlc::MIN, Hlc::MAX),
            TimeSpec::Range { from, to } => (from, to),
            TimeSpec::Since { from } => (from, Hlc::MAX),
            // Snapshots are evaluated by `snapshot`; steps only build the state.
            TimeSpec::Snapshot { .. } => (Hlc::MAX, Hlc::MIN),
        };
        if hlc > to && !matches!(self.plan.time, TimeSpec::Snapshot { .. }) {
            self.done = true;
            return Ok(Flow::Done);
        }
        let (is_step, candidate) = self.apply(steps, group)?;
        if !is_step {
            return Ok(Flow::Continue);
        }
        self.stats.steps += 1;
        if !candidate || hlc < from || hlc > to {
            return Ok(Flow::Continue);
        }
        self.seq += 1;
        self.stats.candidates += 1;
        self.evaluate(hlc, emit)
    }

    /// Apply a group's records and bring every incremental part up to date for the nodes
    /// they touched. Returns (the records make a step, the step is a candidate).
    fn apply(&mut self, steps: &Steps, group: &HlcGroup) -> Result<(bool, bool), ExecError> {
        self.epoch += 1;
        self.touched.clear();
        let mut is_step = false;
        let mut names_referenced = false;
        for rec in &steps.records[group.start as usize..group.end as usize] {
            let n = rec.node;
            self.cut
                .apply(rec, &steps.ops, &self.vars)
                .map_err(ExecError::Apply)?;
            if self.mark[n as usize] != self.epoch {
                self.mark[n as usize] = self.epoch;
                self.relevant[n as usize] = false;
                self.touched.push(n);
            }
            if rec.heartbeat {
                continue;
            }
            is_step = true;
            let ops = &steps.ops[rec.first_op as usize..rec.end_op as usize];
            let hits = ops.iter().any(|op| self.referenced[op.var() as usize]);
            if hits || rec.leave {
                self.relevant[n as usize] = true;
            }
            if hits && self.cut.selected(n) {
                names_referenced = true;
            }
        }
        let mut p_changed = false;
        for i in 0..self.touched.len() {
            let n = self.touched[i];
            let moved = self.cut.finish_node(n);
            p_changed |= moved;
            if moved || self.relevant[n as usize] {
                self.update_node(n);
            }
        }
        Ok((is_step, names_referenced || p_changed))
    }

    fn update_node(&mut self, n: NodeIdx) {
        let w = &mut self.stats.warnings;
        for a in &mut self.aggs {
            if let Agg::Incremental(s) = a {
                s.update(&self.cut, n, w);
            }
        }
        for g in self.groups.iter_mut().flatten() {
            g.update(&self.cut, n, w);
        }
        match &mut self.outer {
            Outer::NodeCache { truth, .. } => truth.update(&self.cut, n, w),
            Outer::Extremes(x) => {
                for v in &mut x.vars {
                    v.update(&self.cut, n);
                }
            }
            _ => {}
        }
    }

    /// Evaluate the snapshot `C(at)`: the state must hold every record `<= at`.
    pub fn snapshot(
        &mut self,
        at: Hlc,
        emit: &mut dyn FnMut(Emitted<'_, 'p>),
    ) -> Result<Flow, ExecError> {
        self.seq = 1;
        self.stats.candidates += 1;
        self.evaluate(at, emit)?;
        self.done = true;
        Ok(Flow::Done)
    }

    /// Refresh the per-cut values of aggregates and EACH_NODE groups; false if every one is
    /// known to be as at the previous cut.
    fn refresh_parts(&mut self) -> bool {
        let mut changed = false;
        let w = &mut self.stats.warnings;
        for (i, a) in self.aggs.iter().enumerate() {
            let (state, func) = match a {
                Agg::Incremental(s) => (s, None),
                Agg::Mirror { of, func } => match &self.aggs[*of] {
                    Agg::Incremental(s) => (s, Some(*func)),
                    _ => continue, // `of` is always an incremental state
                },
                Agg::Scan(func, arg) => {
                    self.agg_values[i] = aggregate_over_p(*func, arg.as_ref(), &self.cut, w);
                    changed = true;
                    continue;
                }
            };
            // Unchanged since the last cut: same value, and the same warnings again.
            let seen = &mut self.agg_seen[i];
            if seen.0 == Some(state.version()) {
                if let Some(again) = &seen.1 {
                    w.merge(again);
                }
                continue;
            }
            let mut raised = Warnings::default();
            let now = match func {
                Some(f) => state.value_as(f, &mut raised),
                None => state.value(&mut raised),
            };
            // A new version often has the same value (another node now holds the extreme):
            // then WHEN's answer can be reused without comparing every value again.
            let value = &mut self.agg_values[i];
            let same = match (&*value, &now) {
                (Some(a), Some(b)) => same_value(a, b),
                (None, None) => true,
                _ => false,
            };
            if !same {
                changed = true;
                *value = now;
            }
            let raised = (!raised.is_empty()).then_some(raised);
            if let Some(r) = &raised {
                w.merge(r);
            }
            *seen = (Some(state.version()), raised);
        }
        for (i, g) in self.groups.iter().enumerate() {
            let now = g.as_ref().map(|g| g.holds_everywhere(&self.cut));
            changed |= now != self.group_values[i];
            self.group_values[i] = now;
        }
        changed
    }

    fn decide(&mut self, seq: u64, hlc: Hlc) -> Result<Decision, ExecError> {
        let parts_changed = self.refresh_parts();
        let w = &mut self.stats.warnings;
        let base = Env {
            cut: &self.cut,
            units: &[],
            local: None,
            aggs: &self.agg_values,
            groups: &self.group_values,
        };
        match &mut self.outer {
            Outer::Always => Ok(Some(Vec::new())),
            Outer::Direct {
                when,
                reads_cut,
                last,
            } => {
                if *reads_cut {
                    return Ok(holds(when, &base, w).then(Vec::new));
                }
                if let Some(a) = last.as_ref() {
                    if !parts_changed
                        || (a.groups == self.group_values && identical(&a.aggs, &self.agg_values))
                    {
                        if let Some(again) = &a.warnings {
                            w.merge(again);
                        }
                        return Ok(a.holds.then(Vec::new));
                    }
                }
                let mut warnings = Warnings::default();
                let answer = holds(when, &base, &mut warnings);
                let warnings = (!warnings.is_empty()).then_some(warnings);
                if let Some(raised) = &warnings {
                    w.merge(raised);
                }
                match last {
                    // Into the previous answer's vectors: no allocation per cut.
                    Some(a) => {
                        a.aggs.clone_from(&self.agg_values);
                        a.groups.clone_from(&self.group_values);
                        a.holds = answer;
                        a.warnings = warnings;
                    }
                    None => {
                        *last = Some(DirectAnswer {
                            aggs: self.agg_values.clone(),
                            groups: self.group_values.clone(),
                            holds: answer,
                            warnings,
                        })
                    }
                }
                Ok(answer.then(Vec::new))
            }
            Outer::NodeCache { truth, empty } => {
                if self.cut.participants().is_empty() {
                    return Ok(holds(empty, &base, w).then(Vec::new));
                }
                Ok(truth.first().map(|n| vec![n]))
            }
            Outer::Extremes(x) => {
                if self.cut.participants().is_empty() {
                    return Ok(holds(&x.when, &base, w).then(Vec::new));
                }
                match extremes_decide(x, &base, w) {
                    Some(false) => Ok(None),
                    Some(true) => Ok(Some(Vec::new())), // witness found when emitted
                    None => enumerate(&x.fallback, &base, self.max_bindings, w)
                        .map_err(|bindings| bound_error(seq, hlc, bindings, self.max_bindings)),
                }
            }
            Outer::Enumerate(e) => enumerate(e, &base, self.max_bindings, w)
                .map_err(|bindings| bound_error(seq, hlc, bindings, self.max_bindings)),
        }
    }

    /// The witness of a satisfying cut decided by extremes (found only for emitted cuts).
    fn witness(
        &mut self,
        decision: Vec<NodeIdx>,
        seq: u64,
        hlc: Hlc,
    ) -> Result<Vec<NodeIdx>, ExecError> {
        let Outer::Extremes(x) = &self.outer else {
            return Ok(decision);
        };
        if !decision.is_empty() || self.plan.units.is_empty() || self.cut.participants().is_empty()
        {
            return Ok(decision);
        }
        let w = &mut self.stats.warnings;
        let env = Env {
            cut: &self.cut,
            units: &[],
            local: None,
            aggs: &self.agg_values,
            groups: &self.group_values,
        };
        match extremes_witness(x, &env, w) {
            Some(b) => Ok(b),
            None => enumerate(&x.fallback, &env, self.max_bindings, w)
                .map(|b| b.unwrap_or_default())
                .map_err(|bindings| bound_error(seq, hlc, bindings, self.max_bindings)),
        }
    }

    fn evaluate(
        &mut self,
        hlc: Hlc,
        emit: &mut dyn FnMut(Emitted<'_, 'p>),
    ) -> Result<Flow, ExecError> {
        // LIMIT 0, or a limit already reached: nothing more may be emitted.
        if self.plan.limit.is_some_and(|l| self.stats.emitted >= l) {
            self.done = true;
            return Ok(Flow::Done);
        }
        let seq = self.seq;
        let decision = self.decide(seq, hlc)?;
        let what = match (self.plan.emit, decision, &mut self.run) {
            (Emit::Cuts, Some(b), _) => Some(What::Cut {
                begin: false,
                binding: self.witness(b, seq, hlc)?,
            }),
            (Emit::Changes, Some(_), Some(run)) => {
                run.cuts += 1;
                None
            }
            (Emit::Changes, Some(b), None) => {
                self.run = Some(Run {
                    begin: hlc,
                    cuts: 1,
                });
                Some(What::Cut {
                    begin: true,
                    binding: self.witness(b, seq, hlc)?,
                })
            }
            (Emit::Changes, None, Some(_)) => self.run.take().map(|run| {
                What::End(EndRecord {
                    seq,
                    hlc,
                    duration_ms: hlc.physical().saturating_sub(run.begin.physical()),
                    cuts: run.cuts,
                    stale: Vec::new(),
                    late: false,
                })
            }),
            (_, None, _) => None,
        };
        if let Some(what) = what {
            emit(Emitted {
                engine: self,
                hlc,
                what,
            });
            self.stats.emitted += 1;
            if self.plan.limit.is_some_and(|l| self.stats.emitted >= l) {
                self.done = true;
                return Ok(Flow::Done);
            }
        }
        Ok(Flow::Continue)
    }

    fn cut_record(&self, hlc: Hlc, begin: bool, binding: &[NodeIdx]) -> OutputRecord {
        OutputRecord::Cut(self.cut_view(hlc, begin, binding).to_owned())
    }

    /// The record of a satisfying cut, borrowing node ids and values from the cut state (JSON
    /// output serializes it as it is; nothing is copied).
    fn cut_view(&self, hlc: Hlc, begin: bool, binding: &[NodeIdx]) -> CutView<'_> {
        let p = self.cut.participants();
        let vars = &self.vars;
        let mut values: Vec<(&str, OutValueView<'_>)> = Vec::new();
        fn push<'a>(
            values: &mut Vec<(&'a str, OutValueView<'a>)>,
            name: &'a str,
            v: OutValueView<'a>,
        ) {
            // Identical names print once, at the first position (SPEC §6).
            if !values.iter().any(|(n, _)| *n == name) {
                values.push((name, v));
            }
        }
        for (i, item) in self.plan.outputs.iter().enumerate() {
            match item {
                OutputItem::Variable {
                    name, path, node, ..
                } => {
                    let v = self.output_vars[i];
                    let read = |n: NodeIdx| -> Option<&Value> {
                        let mut x = self.cut.value(n, v?)?;
                        for f in path {
                            match x {
                                Value::Struct(fields) => x = fields.get(f)?,
                                _ => return None,
                            }
                        }
                        Some(x)
                    };
                    let nodes: Vec<(&str, &Value)> = match node {
                        Some(id) => self
                            .cut
                            .lookup(id)
                            .filter(|&n| self.cut.in_cut(n))
                            .and_then(|n| read(n).map(|x| (id.as_str(), x)))
                            .into_iter()
                            .collect(),
                        None => p
                            .iter()
                            .filter_map(|&n| read(n).map(|x| (self.cut.node_id(n), x)))
                            .collect(),
                    };
                    push(&mut values, name, OutValueView::Nodes(nodes));
                }
                OutputItem::AllOf { logs } => {
                    let mut names: BTreeMap<&str, Vec<(&str, &Value)>> = BTreeMap::new();
                    for &n in p {
                        for (v, x) in self.cut.present(n) {
                            let name = vars.name(v);
                            if logs.iter().any(|l| l == name.log()) {
                                names
                                    .entry(name.as_str())
                                    .or_default()
                                    .push((self.cut.node_id(n), x));
                            }
                        }
                    }
                    for (name, nodes) in names {
                        push(&mut values, name, OutValueView::Nodes(nodes));
                    }
                }
                OutputItem::Aggregate { name, index } => {
                    let v = self.agg_values.get(*index).and_then(|v| v.as_ref());
                    push(&mut values, name, OutValueView::One(v));
                }
            }
        }
        let listed = self.plan.witness_placeholders();
        let witness = (!listed.is_empty()).then(|| {
            listed
                .iter()
                .map(|&k| {
                    let node = self
                        .plan
                        .units
                        .iter()
                        .position(|u| unit_contains(self.plan, *u, k))
                        .and_then(|i| binding.get(i))
                        .map(|&n| self.cut.node_id(n));
                    (k, node)
                })
                .collect()
        });
        CutView {
            begin,
            seq: self.seq,
            hlc,
            values,
            witness,
            stale: &[],
            late: false,
        }
    }
}

fn bound_error(seq: u64, hlc: Hlc, bindings: u128, bound: u64) -> ExecError {
    ExecError::Bound {
        seq,
        hlc,
        bindings,
        bound,
    }
}

fn unit_contains(plan: &Plan, unit: BindingUnit, k: u32) -> bool {
    match unit {
        BindingUnit::Free(f) => f == k,
        BindingUnit::SameNode(g) => plan.groups[g].placeholders.contains(&k),
    }
}

/// Enumerate outer bindings in witness order (first unit most significant, nodes in id order),
/// skipping nodes where a strict variable of the unit is NULL. `Err(bindings)` if the
/// enumeration would exceed `bound`.
fn enumerate(
    e: &Enumeration,
    base: &Env<'_>,
    bound: u64,
    w: &mut Warnings,
) -> Result<Decision, u128> {
    let cut = base.cut;
    let p = cut.participants();
    let units = e.strict.len();
    if p.is_empty() || units == 0 {
        return Ok(holds(&e.when, base, w).then(Vec::new));
    }
    if e.impossible {
        return Ok(None);
    }
    let candidates: Vec<Vec<NodeIdx>> = e
        .strict
        .iter()
        .map(|strict| {
            p.iter()
                .copied()
                .filter(|&n| strict.iter().all(|(v, path)| non_null(cut, n, *v, path)))
                .collect()
        })
        .collect();
    let mut total: u128 = 1;
    for c in &candidates {
        total = total.saturating_mul(c.len() as u128);
    }
    if total == 0 {
        return Ok(None);
    }
    if total > bound as u128 {
        return Err(total);
    }
    let mut digits = vec![0usize; units];
    let mut binding: Vec<NodeIdx> = candidates.iter().map(|c| c[0]).collect();
    loop {
        let env = Env {
            cut,
            units: &binding,
            local: None,
            aggs: base.aggs,
            groups: base.groups,
        };
        if holds(&e.when, &env, w) {
            return Ok(Some(binding));
        }
        let mut i = units;
        loop {
            if i == 0 {
                return Ok(None);
            }
            i -= 1;
            digits[i] += 1;
            if digits[i] < candidates[i].len() {
                binding[i] = candidates[i][digits[i]];
                break;
            }
            digits[i] = 0;
            binding[i] = candidates[i][0];
        }
    }
}

fn non_null(cut: &CutState, n: NodeIdx, v: VarIdx, path: &[String]) -> bool {
    let Some(mut x) = cut.value(n, v) else {
        return false;
    };
    for f in path {
        match x {
            Value::Struct(fields) => match fields.get(f) {
                Some(y) => x = y,
                None => return false,
            },
            _ => return false,
        }
    }
    true
}

/// The leaves of an extremes-shaped `L op R`: (unit, variable, path, wants the maximum).
fn directions(w: &CExpr, out: &mut Vec<(usize, Option<VarIdx>, Vec<String>, bool)>) {
    use rql_planner::ops::{ArithOp, CmpOp};
    let CExpr::Cmp(op, l, r) = w else { return };
    // `L < R` holds for some binding iff it holds with L as small and R as large as possible:
    // minimise L - R. For `>`, maximise it.
    let maximise = matches!(op, CmpOp::Gt | CmpOp::GtEq);
    fn walk(
        e: &CExpr,
        sign: bool,
        maximise: bool,
        out: &mut Vec<(usize, Option<VarIdx>, Vec<String>, bool)>,
    ) {
        match e {
            CExpr::Var {
                var,
                path,
                site: Site::Unit(u),
            } => out.push((*u, *var, path.clone(), sign == maximise)),
            CExpr::Neg(x) => walk(x, !sign, maximise, out),
            CExpr::Arith(ArithOp::Add, a, b) => {
                walk(a, sign, maximise, out);
                walk(b, sign, maximise, out);
            }
            CExpr::Arith(ArithOp::Sub, a, b) => {
                walk(a, sign, maximise, out);
                walk(b, !sign, maximise, out);
            }
            CExpr::Arith(ArithOp::Mul, a, b) => match (&**a, &**b) {
                (CExpr::Const(Some(c)), x) | (x, CExpr::Const(Some(c))) => {
                    walk(x, sign == positive(c), maximise, out)
                }
                _ => {}
            },
            CExpr::Arith(ArithOp::Div, a, b) => {
                if let CExpr::Const(Some(c)) = &**b {
                    walk(a, sign == positive(c), maximise, out)
                }
            }
            _ => {}
        }
    }
    walk(l, true, maximise, out);
    walk(r, false, maximise, out);
}

fn positive(v: &Value) -> bool {
    match v {
        Value::Int(i) => *i > 0,
        Value::Float(f) => *f > 0.0,
        _ => false,
    }
}

/// Every int involved must be small enough that int and float arithmetic agree exactly, or
/// all numbers must be of one kind; otherwise the extreme binding may not be the best one.
const EXACT_MIX_LIMIT: i64 = 1 << 50;

fn mixing_is_exact(x: &ExtremesOuter, base: &Env<'_>, when: &CExpr) -> bool {
    let mut kinds = x.constant_kinds;
    if x.reads_aggregates {
        constants(when, base.aggs, &mut |v| kinds.count(v));
    }
    for v in &x.vars {
        kinds.ints += v.ints;
        kinds.floats += v.floats;
    }
    if kinds.ints == 0 || kinds.floats == 0 {
        return true;
    }
    let mut small = kinds.small;
    for v in &x.vars {
        for max in [false, true] {
            if let Some((_, Value::Int(i))) = v.extreme(max) {
                small &= i.unsigned_abs() <= EXACT_MIX_LIMIT as u64;
            }
        }
    }
    small
}

/// How many ints and floats, and whether every int is small (see [`EXACT_MIX_LIMIT`]).
#[derive(Clone, Copy, Debug)]
struct NumberKinds {
    ints: u64,
    floats: u64,
    small: bool,
}

impl Default for NumberKinds {
    fn default() -> Self {
        NumberKinds {
            ints: 0,
            floats: 0,
            small: true,
        }
    }
}

impl NumberKinds {
    fn count(&mut self, v: &Val) {
        match v {
            Some(Value::Int(i)) => {
                self.ints += 1;
                self.small &= i.unsigned_abs() <= EXACT_MIX_LIMIT as u64;
            }
            Some(Value::Float(_)) => self.floats += 1,
            _ => {}
        }
    }
}

/// The constants and aggregate values WHEN's comparisons read.
fn constants(e: &CExpr, aggs: &[Val], f: &mut dyn FnMut(&Val)) {
    match e {
        CExpr::Const(v) => f(v),
        CExpr::Aggregate(i) => f(&aggs.get(*i).cloned().flatten()),
        CExpr::Neg(x) => constants(x, aggs, f),
        CExpr::Arith(_, a, b) | CExpr::Cmp(_, a, b) => {
            constants(a, aggs, f);
            constants(b, aggs, f);
        }
        _ => {}
    }
}

/// Some(answer) when the extremes decide the cut exactly; None to fall back to enumeration.
fn extremes_decide(x: &ExtremesOuter, base: &Env<'_>, w: &mut Warnings) -> Option<bool> {
    // Strings order too (by bytes): numeric extremes say nothing about them.
    if x.vars.iter().any(|v| v.strings > 0) {
        return None;
    }
    if x.string_constant {
        return None;
    }
    if x.reads_aggregates {
        let mut has_string = false;
        constants(&x.when, base.aggs, &mut |v| {
            has_string |= matches!(v, Some(Value::Str(_)))
        });
        if has_string {
            return None;
        }
    }
    // Decided on every cut: no allocation for the usual handful of units.
    let mut on_stack = [0 as NodeIdx; 8];
    let mut on_heap = Vec::new();
    let binding: &mut [NodeIdx] = if x.units.len() <= on_stack.len() {
        &mut on_stack[..x.units.len()]
    } else {
        on_heap.resize(x.units.len(), 0);
        &mut on_heap
    };
    for (slot, &(var, max)) in binding.iter_mut().zip(&x.units) {
        match x.vars[var].extreme(max) {
            Some((n, _)) => *slot = n,
            // A unit with no numeric value on any node: every binding compares NULL.
            None => return Some(false),
        }
    }
    extreme_truth(x, base, binding, w)
}

/// Evaluate WHEN exactly on `binding` (extreme nodes); trust a FALSE only when no NULL arose
/// (an overflow at the extremes says nothing about other bindings) and number kinds mix exactly.
fn extreme_truth(
    x: &ExtremesOuter,
    base: &Env<'_>,
    binding: &[NodeIdx],
    w: &mut Warnings,
) -> Option<bool> {
    let env = Env {
        cut: base.cut,
        units: binding,
        local: None,
        aggs: base.aggs,
        groups: base.groups,
    };
    let mut scratch = Warnings::default();
    let truth = match eval_plain(&x.when, &env) {
        // Evaluated without a warning.
        Some(p) if p.kind() == PlainKind::Bool => Some(p.as_bool()),
        _ => match eval(&x.when, &env, &mut scratch) {
            Some(Value::Bool(b)) => Some(b),
            _ => None,
        },
    };
    match truth {
        Some(true) => Some(true),
        Some(false) if mixing_is_exact(x, base, &x.when) => Some(false),
        _ => {
            w.merge(&scratch);
            None
        }
    }
}

/// The smallest satisfying binding in witness order: fix units one at a time to the first node
/// (by id) for which the rest, at their extremes, still satisfies.
fn extremes_witness(x: &ExtremesOuter, base: &Env<'_>, w: &mut Warnings) -> Option<Vec<NodeIdx>> {
    extremes_decide(x, base, w)?;
    let mut binding: Vec<NodeIdx> = Vec::with_capacity(x.units.len());
    for &(var, max) in &x.units {
        binding.push(x.vars[var].extreme(max)?.0);
    }
    for u in 0..x.units.len() {
        let (var, max) = x.units[u];
        let mut test = |n: NodeIdx| {
            let saved = std::mem::replace(&mut binding[u], n);
            let passes = extreme_truth(x, base, &binding, w);
            binding[u] = saved;
            passes
        };
        binding[u] = x.vars[var].first_passing(max, &mut test)??;
    }
    Some(binding)
}
