//! A deliberately naive evaluator of RQL plans: a direct transcription of SPEC §1.4, §3, §4
//! and §6, kept in the test suite as the second opinion for the differential property test
//! (`tests/tests/differential.rs`).
//!
//! It shares nothing with `rql-exec`'s engine but the output types: no incremental cut state,
//! no compiled WHEN, no strategies, no early exit. For every step it rebuilds the cut from the
//! first record, enumerates *every* binding of the outer placeholders, recomputes each
//! aggregate every time an expression needs it, and picks the witness as the minimum of all
//! satisfying bindings. That makes it slow (fine for traces of a few dozen records and a
//! handful of nodes) and, more to the point, obviously right or obviously wrong when read next
//! to the SPEC. Value semantics (operators, functions, aggregates over a list of inputs) come
//! from `rql_planner::ops`, which is shared and trusted.
//!
//! What it takes from the plan: the resolved expressions, placeholders, groups, aggregates,
//! outputs, AT NODES, the time spec, EMIT, LIMIT and `referenced` (the planner's list of
//! variables the query names, which candidacy needs; the differential test checks it against
//! the query it generated). It derives the outer binding units itself from the placeholders
//! and groups rather than trusting `Plan::units`.

use std::collections::{BTreeMap, BTreeSet};

use log_server::{Hlc, NodeState, Record, Value, VarName};
use rql_exec::output::{CutRecord, EndRecord, OutValue, OutputRecord};
use rql_parser::{Emit, LinkKind};
use rql_planner::ops::{self, AggFn, Val, Warnings};
use rql_planner::{OutputItem, PExpr, PExprKind, Plan, TimeSpec, VarRef, VarSite};

/// One consistent cut `C(t)` and its participating nodes `P(t)`.
struct Cut {
    /// Node id → state, for the nodes in the cut only (byte order of ids).
    states: BTreeMap<String, NodeState>,
    /// `P(t)`, sorted by node id.
    p: Vec<String>,
}

impl Cut {
    /// The value of `var` on `node` in this cut (NULL if the node is not in the cut or the
    /// variable is absent there), then its struct field `path`.
    fn value(&self, node: &str, var: &VarRef, path: &[String]) -> Val {
        let name = VarName::new(&var.log, &var.key).expect("planner resolved a valid name");
        let v = self.states.get(node)?.get(&name).cloned();
        ops::field(&v, path)
    }
}

/// SPEC §1.4: apply, per node in HLC order (equal HLCs in input order), every record with
/// `hlc <= t`; a node is in the cut iff it has such a record and the last one is not a leave.
/// Recomputed from nothing on every call, on purpose.
fn cut_at(plan: &Plan, records: &[Record], t: Hlc) -> Cut {
    // A stable sort by HLC of our own, so nothing depends on how the caller ordered them.
    let mut upto: Vec<&Record> = records.iter().filter(|r| r.hlc <= t).collect();
    upto.sort_by_key(|r| r.hlc);
    let mut states: BTreeMap<String, NodeState> = BTreeMap::new();
    let mut left: BTreeMap<String, bool> = BTreeMap::new();
    for rec in upto {
        let st = states.entry(rec.node.clone()).or_default();
        if left.get(&rec.node).copied().unwrap_or(false) {
            // A record after a leave brings the node back with an empty state (the leave
            // cleared it already; clearing again states the rule rather than relying on it).
            *st = NodeState::new();
        }
        st.apply(rec)
            .expect("the trace reader already rejected add/remove on non-sets");
        left.insert(rec.node.clone(), rec.leave);
    }
    states.retain(|node, _| !left[node]);
    // SPEC §3.1: restricted to AT NODES, holding at least one present variable of a FROM log.
    let p = states
        .iter()
        .filter(|(node, _)| plan.at_nodes.as_ref().is_none_or(|at| at.contains(*node)))
        .filter(|(_, st)| {
            st.vars
                .keys()
                .any(|v| plan.logs.iter().any(|l| l == v.log()))
        })
        .map(|(node, _)| node.clone())
        .collect();
    Cut { states, p }
}

/// Placeholder number → the node it is bound to (`None`: P(t) is empty, the value is NULL).
type Binding = BTreeMap<u32, Option<String>>;

/// A witness as output records carry it: `$k` → node, in placeholder order.
type Witness = Vec<(u32, Option<String>)>;

/// Where variables of an aggregate's argument take their node from.
#[derive(Clone, Copy)]
enum Ctx<'a> {
    /// Outside any aggregate.
    Outer,
    /// Inside an aggregate's argument, iterating over this node of P(t).
    Aggregate(&'a str),
}

struct Evaluator<'a> {
    plan: &'a Plan,
    cut: &'a Cut,
    /// Warnings are not compared (SPEC §6: their counts are implementation-specific).
    warnings: Warnings,
}

impl Evaluator<'_> {
    fn eval(&mut self, e: &PExpr, b: &Binding, ctx: Ctx<'_>) -> Val {
        let bool_val = |x: Option<bool>| x.map(Value::Bool);
        match &e.kind {
            PExprKind::Const(v) => v.clone(),
            PExprKind::Var { var, path, site } => {
                let node: Option<String> = match site {
                    VarSite::Placeholder(k) => b.get(k).cloned().flatten(),
                    VarSite::Fixed(n) => Some(n.clone()),
                    VarSite::AggregateNode => match ctx {
                        Ctx::Aggregate(n) => Some(n.to_string()),
                        Ctx::Outer => panic!("aggregate-site variable outside an aggregate"),
                    },
                };
                node.and_then(|n| self.cut.value(&n, var, path))
            }
            PExprKind::NodeOf(k) => b.get(k).cloned().flatten().map(Value::Str),
            PExprKind::Neg(x) => {
                let v = self.eval(x, b, ctx);
                ops::neg(&v, &mut self.warnings)
            }
            PExprKind::Not(x) => {
                let v = self.eval(x, b, ctx);
                bool_val(ops::not3(ops::truth(&v, &mut self.warnings)))
            }
            PExprKind::Arith(op, l, r) => {
                let (l, r) = (self.eval(l, b, ctx), self.eval(r, b, ctx));
                ops::arith(*op, &l, &r, &mut self.warnings)
            }
            PExprKind::Cmp(op, l, r) => {
                let (l, r) = (self.eval(l, b, ctx), self.eval(r, b, ctx));
                ops::compare(*op, &l, &r, &mut self.warnings)
            }
            PExprKind::And(l, r) => {
                let l = self.eval(l, b, ctx);
                let r = self.eval(r, b, ctx);
                let (l, r) = (
                    ops::truth(&l, &mut self.warnings),
                    ops::truth(&r, &mut self.warnings),
                );
                bool_val(ops::and3(l, r))
            }
            PExprKind::Or(l, r) => {
                let l = self.eval(l, b, ctx);
                let r = self.eval(r, b, ctx);
                let (l, r) = (
                    ops::truth(&l, &mut self.warnings),
                    ops::truth(&r, &mut self.warnings),
                );
                bool_val(ops::or3(l, r))
            }
            PExprKind::IsNull { expr, negated } => {
                let v = self.eval(expr, b, ctx);
                Some(Value::Bool(v.is_none() != *negated))
            }
            PExprKind::InList {
                expr,
                list,
                negated,
            } => {
                let x = self.eval(expr, b, ctx);
                let items: Vec<Val> = list.iter().map(|i| self.eval(i, b, ctx)).collect();
                let r = ops::in_list(&x, &items, &mut self.warnings);
                self.maybe_negate(r, *negated)
            }
            PExprKind::InSet { expr, set, negated } => {
                let x = self.eval(expr, b, ctx);
                let s = self.eval(set, b, ctx);
                let r = ops::in_set(&x, &s, &mut self.warnings);
                self.maybe_negate(r, *negated)
            }
            PExprKind::Scalar(f, args) => {
                let args: Vec<Val> = args.iter().map(|a| self.eval(a, b, ctx)).collect();
                ops::call_scalar(*f, &args, &mut self.warnings)
            }
            PExprKind::Aggregate(i) => self.aggregate(*i),
            PExprKind::Link { kind, group, expr } => match kind {
                // The binding already maps every placeholder of the group to the group's node.
                LinkKind::SameNode => self.eval(expr, b, ctx),
                // §3.2: TRUE iff P(t) is non-empty and e is TRUE with all the group's
                // placeholders bound to n, for every n in P(t); otherwise FALSE, never NULL.
                LinkKind::EachNode => {
                    let mut all = !self.cut.p.is_empty();
                    for n in self.cut.p.clone() {
                        let mut inner = b.clone();
                        for k in &self.plan.groups[*group].placeholders {
                            inner.insert(*k, Some(n.clone()));
                        }
                        let v = self.eval(expr, &inner, ctx);
                        if ops::truth(&v, &mut self.warnings) != Some(true) {
                            all = false;
                        }
                    }
                    Some(Value::Bool(all))
                }
            },
        }
    }

    fn maybe_negate(&mut self, r: Val, negated: bool) -> Val {
        if negated {
            ops::not3(ops::truth(&r, &mut self.warnings)).map(Value::Bool)
        } else {
            r
        }
    }

    /// §3.3, computed from scratch each time: the argument once per node of P(t) (in node-id
    /// order) with its variables on that node, then the aggregate over the results.
    fn aggregate(&mut self, i: usize) -> Val {
        let call = &self.plan.aggregates[i];
        let Some(arg) = &call.arg else {
            assert_eq!(call.func, AggFn::Count, "only COUNT takes *");
            return Some(Value::Int(self.cut.p.len() as i64));
        };
        let p = self.cut.p.clone();
        let inputs: Vec<Val> = p
            .iter()
            .map(|n| self.eval(arg, &Binding::new(), Ctx::Aggregate(n)))
            .collect();
        ops::aggregate(call.func, &inputs, &mut self.warnings)
    }

    /// Whether WHEN holds (§3.2: some binding makes it TRUE), and the witness (§4.3, §6).
    fn satisfies(&mut self) -> (bool, Option<Witness>) {
        let plan = self.plan;
        let Some(when) = &plan.when else {
            return (true, None);
        };
        // The outer binding units, derived here from the placeholders: a free placeholder is
        // its own unit; the placeholders of one SAME_NODE group form one unit; EACH_NODE
        // placeholders are bound by their group only.
        let mut units: Vec<Vec<u32>> = Vec::new();
        let mut group_unit: BTreeMap<usize, usize> = BTreeMap::new();
        let mut outer: Vec<u32> = Vec::new();
        for ph in &plan.placeholders {
            match ph.group {
                None => {
                    units.push(vec![ph.number]);
                    outer.push(ph.number);
                }
                Some(g) if plan.groups[g].kind == LinkKind::SameNode => {
                    let u = *group_unit.entry(g).or_insert_with(|| {
                        units.push(Vec::new());
                        units.len() - 1
                    });
                    units[u].push(ph.number);
                    outer.push(ph.number);
                }
                Some(_) => {}
            }
        }
        outer.sort_unstable();

        // Every binding: each unit independently over P(t); with P(t) empty, one binding with
        // everything NULL.
        let p = self.cut.p.clone();
        let mut bindings: Vec<Binding> = Vec::new();
        if p.is_empty() {
            bindings.push(outer.iter().map(|&k| (k, None)).collect());
        } else {
            let mut choice = vec![0usize; units.len()];
            loop {
                let mut b = Binding::new();
                for (u, &c) in units.iter().zip(&choice) {
                    for &k in u {
                        b.insert(k, Some(p[c].clone()));
                    }
                }
                bindings.push(b);
                // Odometer increment over units.len() digits in base |P|.
                let mut i = 0;
                while i < choice.len() {
                    choice[i] += 1;
                    if choice[i] < p.len() {
                        break;
                    }
                    choice[i] = 0;
                    i += 1;
                }
                if i == choice.len() {
                    break;
                }
            }
        }

        // Evaluate all of them; keep the satisfying ones.
        let mut satisfying: Vec<Vec<Option<String>>> = Vec::new();
        for b in &bindings {
            let v = self.eval(when, b, Ctx::Outer);
            if ops::truth(&v, &mut self.warnings) == Some(true) {
                satisfying.push(outer.iter().map(|k| b[k].clone()).collect());
            }
        }
        // The witness: the smallest satisfying vector ($1, $2, ... of the outer binding), node
        // ids compared by bytes (String's order). Ties cannot matter: equal vectors.
        let Some(min) = satisfying.into_iter().min() else {
            return (false, None);
        };
        if outer.is_empty() {
            return (true, None);
        }
        (true, Some(outer.into_iter().zip(min).collect()))
    }

    /// A variable over P(t): node → value, NULLs omitted (§4.3).
    fn over_p(&self, var: &VarRef, path: &[String]) -> OutValue {
        OutValue::Nodes(
            self.cut
                .p
                .iter()
                .filter_map(|n| self.cut.value(n, var, path).map(|v| (n.clone(), v)))
                .collect(),
        )
    }

    /// The SELECT values (§4.3, §2 `log.*`, §6 selectors and identical names).
    fn values(&mut self) -> Vec<(String, OutValue)> {
        let mut out: Vec<(String, OutValue)> = Vec::new();
        for item in &self.plan.outputs {
            match item {
                OutputItem::Variable {
                    name,
                    var,
                    path,
                    node: None,
                } => out.push((name.clone(), self.over_p(var, path))),
                OutputItem::Variable {
                    name,
                    var,
                    path,
                    node: Some(n),
                } => {
                    // `log.key['n']`: node n's value in C(t), P(t) or not.
                    let v = self.cut.value(n, var, path);
                    let nodes = v.map(|v| vec![(n.clone(), v)]).unwrap_or_default();
                    out.push((name.clone(), OutValue::Nodes(nodes)));
                }
                OutputItem::AllOf { logs } => {
                    // Every variable of these logs present on some node of P(t), by name.
                    let mut names: BTreeSet<String> = BTreeSet::new();
                    for n in &self.cut.p {
                        for v in self.cut.states[n].vars.keys() {
                            if logs.iter().any(|l| l == v.log()) {
                                names.insert(v.as_str().to_string());
                            }
                        }
                    }
                    for name in names {
                        let (log, key) = name.split_once('.').expect("log.key");
                        let var = VarRef {
                            log: log.to_string(),
                            key: key.to_string(),
                        };
                        let v = self.over_p(&var, &[]);
                        out.push((name, v));
                    }
                }
                OutputItem::Aggregate { name, index } => {
                    let v = self.aggregate(*index);
                    out.push((name.clone(), OutValue::One(v)));
                }
            }
        }
        // Identical output names print once, at the first position (§6).
        let mut seen: BTreeSet<String> = BTreeSet::new();
        out.retain(|(name, _)| seen.insert(name.clone()));
        out
    }
}

/// One evaluated cut: whether WHEN holds, and the cut record it would emit.
fn evaluate_cut(plan: &Plan, cut: &Cut, seq: u64, hlc: Hlc) -> (bool, CutRecord) {
    let mut ev = Evaluator {
        plan,
        cut,
        warnings: Warnings::new(),
    };
    let (ok, witness) = ev.satisfies();
    let values = ev.values();
    let rec = CutRecord {
        begin: false,
        seq,
        hlc,
        values,
        witness,
        stale: Vec::new(),
        late: false,
    };
    (ok, rec)
}

/// Turns the evaluated candidates into output records: every satisfying cut (`EMIT CUTS`) or
/// the begin/end transitions (`EMIT CHANGES`, §4.3, §6).
struct Emitter {
    emit: Emit,
    out: Vec<OutputRecord>,
    /// `EMIT CHANGES`: the HLC of the run's begin and its satisfying cuts so far.
    run: Option<(Hlc, u64)>,
}

impl Emitter {
    fn candidate(&mut self, ok: bool, mut rec: CutRecord) {
        match self.emit {
            Emit::Cuts => {
                if ok {
                    self.out.push(OutputRecord::Cut(rec));
                }
            }
            Emit::Changes => match (&mut self.run, ok) {
                (None, true) => {
                    self.run = Some((rec.hlc, 1));
                    rec.begin = true;
                    self.out.push(OutputRecord::Cut(rec));
                }
                (Some((_, cuts)), true) => *cuts += 1,
                (Some((begin, cuts)), false) => {
                    self.out.push(OutputRecord::End(EndRecord {
                        seq: rec.seq,
                        hlc: rec.hlc,
                        duration_ms: rec.hlc.physical() - begin.physical(),
                        cuts: *cuts,
                        stale: Vec::new(),
                        late: false,
                    }));
                    self.run = None;
                }
                (None, false) => {}
            },
        }
    }
}

/// Evaluate `plan` over `records` (a whole trace; sorted stably by HLC or not) the naive way.
/// Panics on `SINCE`, which only live sources have.
pub fn evaluate(plan: &Plan, records: &[Record]) -> Vec<OutputRecord> {
    let mut em = Emitter {
        emit: plan.emit,
        out: Vec::new(),
        run: None,
    };
    match plan.time {
        TimeSpec::Snapshot { at } => {
            // One cut, C(T), with seq 1 and hlc T, whether or not a step happened at T.
            let cut = cut_at(plan, records, at);
            let (ok, rec) = evaluate_cut(plan, &cut, 1, at);
            em.candidate(ok, rec);
        }
        TimeSpec::All | TimeSpec::Range { .. } => {
            let in_range = |t: Hlc| match plan.time {
                TimeSpec::Range { from, to } => from <= t && t <= to,
                _ => true,
            };
            // Steps: distinct HLCs carrying at least one change record, ascending.
            let steps: BTreeSet<Hlc> = records
                .iter()
                .filter(|r| !r.is_heartbeat())
                .map(|r| r.hlc)
                .collect();
            let mut prev_p: Vec<String> = Vec::new();
            let mut seq = 0;
            for t in steps {
                let cut = cut_at(plan, records, t);
                // §4.1/§6: a record at t of an AT NODES node naming a referenced variable in
                // set/unset/add/remove (a set to null names it too), or P changed since the
                // previous step (compared even when that step is outside the range).
                let names_referenced = records.iter().filter(|r| r.hlc == t).any(|r| {
                    plan.at_nodes.as_ref().is_none_or(|at| at.contains(&r.node))
                        && r.unset
                            .iter()
                            .chain(r.set.iter().map(|(v, _)| v))
                            .chain(r.add.iter().map(|(v, _)| v))
                            .chain(r.remove.iter().map(|(v, _)| v))
                            .any(|v| plan.referenced.contains(v.log(), v.key()))
                });
                let candidate = names_referenced || cut.p != prev_p;
                prev_p = cut.p.clone();
                if !candidate || !in_range(t) {
                    continue;
                }
                seq += 1;
                let (ok, rec) = evaluate_cut(plan, &cut, seq, t);
                em.candidate(ok, rec);
            }
        }
        TimeSpec::Since { .. } => panic!("SINCE needs a live source"),
    }
    let mut out = em.out;
    // LIMIT n: the first n records (begin and end alike).
    if let Some(n) = plan.limit {
        out.truncate(usize::try_from(n).unwrap_or(usize::MAX));
    }
    out
}
