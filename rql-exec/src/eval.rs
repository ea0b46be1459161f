//! Evaluation of WHEN over one cut, by direct enumeration of bindings (SPEC §3.2).
//!
//! The plan's expressions are compiled once into [`CExpr`], where every variable occurrence
//! already knows where its node comes from (an outer binding unit, the node an EACH_NODE group
//! is iterating over, a fixed node, or the node an aggregate is iterating over). A cut is then
//! evaluated by computing its aggregates once and enumerating the outer bindings in witness
//! order, stopping at the first that makes WHEN TRUE: that binding is the witness.

use log_server::{Value, VarName};
use rql_parser::LinkKind;
use rql_planner::ops::{self, AggFn, ArithOp, CmpOp, ScalarFn, Val, Warnings};
use rql_planner::{BindingUnit, PExpr, PExprKind, Plan, VarSite};

use crate::cut::{CutState, NodeIdx};

/// Where an occurrence takes its node from.
#[derive(Clone, Debug)]
enum Site {
    /// Outer binding unit `i` (a free placeholder or a SAME_NODE group).
    Unit(usize),
    /// The node the (single, since groups do not nest) EACH_NODE group is iterating over.
    Each,
    Fixed(String),
    AggregateNode,
}

#[derive(Clone, Debug)]
enum CExpr {
    Const(Val),
    Var {
        var: VarName,
        path: Vec<String>,
        site: Site,
    },
    NodeOf(Site),
    Neg(Box<CExpr>),
    Not(Box<CExpr>),
    Arith(ArithOp, Box<CExpr>, Box<CExpr>),
    Cmp(CmpOp, Box<CExpr>, Box<CExpr>),
    And(Box<CExpr>, Box<CExpr>),
    Or(Box<CExpr>, Box<CExpr>),
    IsNull(Box<CExpr>, bool),
    InList(Box<CExpr>, Vec<CExpr>, bool),
    InSet(Box<CExpr>, Box<CExpr>, bool),
    Scalar(ScalarFn, Vec<CExpr>),
    Aggregate(usize),
    /// `(e) LINK EACH_NODE`; SAME_NODE groups need no node of their own (their placeholders
    /// are one outer unit) and compile to their body.
    EachNode(Box<CExpr>),
}

#[derive(Clone, Debug)]
struct CAgg {
    func: AggFn,
    arg: Option<CExpr>,
}

/// A plan's WHEN and aggregates, ready to evaluate.
#[derive(Clone, Debug)]
pub struct Evaluator {
    when: Option<CExpr>,
    aggregates: Vec<CAgg>,
    units: usize,
    max_bindings: u64,
}

/// A satisfying outer binding: one node per unit of `Plan::units` (empty when P(t) is empty
/// or there are no units).
pub type Binding = Vec<NodeIdx>;

/// Enumeration would exceed the configured bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundExceeded {
    pub nodes: usize,
    pub units: usize,
    pub bound: u64,
}

impl std::fmt::Display for BoundExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "evaluating WHEN needs {}^{} = {} bindings ({} participating nodes, {} outer placeholders or groups), more than the enumeration bound of {}",
            self.nodes,
            self.units,
            (self.nodes as u128)
                .checked_pow(self.units as u32)
                .map_or_else(|| "more than 2^128".to_string(), |n| n.to_string()),
            self.nodes,
            self.units,
            self.bound
        )
    }
}

/// The outcome of evaluating one cut.
pub struct CutResult {
    /// `Some` iff the cut satisfies WHEN; holds the witness.
    pub binding: Option<Binding>,
    /// Aggregate values (index as in `Plan::aggregates`).
    pub aggregates: Vec<Val>,
}

impl Evaluator {
    pub fn new(plan: &Plan, max_bindings: u64) -> Evaluator {
        let c = Compiler { plan };
        Evaluator {
            when: plan.when.as_ref().map(|w| c.expr(w)),
            aggregates: plan
                .aggregates
                .iter()
                .map(|a| CAgg {
                    func: a.func,
                    arg: a.arg.as_ref().map(|x| c.expr(x)),
                })
                .collect(),
            units: plan.units.len(),
            max_bindings,
        }
    }

    /// Evaluate the cut: its aggregates, then WHEN over the outer bindings.
    pub fn evaluate(&self, cut: &CutState, w: &mut Warnings) -> Result<CutResult, BoundExceeded> {
        let p = cut.participants();
        let aggregates = self.aggregate_values(cut, w);
        let Some(when) = &self.when else {
            return Ok(CutResult {
                binding: Some(Vec::new()),
                aggregates,
            });
        };
        if p.is_empty() || self.units == 0 {
            let env = Env {
                cut,
                units: &[],
                each: None,
                agg_node: None,
                aggs: &aggregates,
            };
            let sat = ops::truth(&eval(when, &env, w), w) == Some(true);
            return Ok(CutResult {
                binding: sat.then(Vec::new),
                aggregates,
            });
        }
        let total = (p.len() as u128).checked_pow(self.units as u32);
        if total.is_none_or(|t| t > self.max_bindings as u128) {
            return Err(BoundExceeded {
                nodes: p.len(),
                units: self.units,
                bound: self.max_bindings,
            });
        }
        // An odometer over P(t)^units, first unit most significant: lexicographic order.
        let mut digits = vec![0usize; self.units];
        let mut binding: Binding = vec![p[0]; self.units];
        loop {
            let env = Env {
                cut,
                units: &binding,
                each: None,
                agg_node: None,
                aggs: &aggregates,
            };
            if ops::truth(&eval(when, &env, w), w) == Some(true) {
                return Ok(CutResult {
                    binding: Some(binding),
                    aggregates,
                });
            }
            let mut i = self.units;
            loop {
                if i == 0 {
                    return Ok(CutResult {
                        binding: None,
                        aggregates,
                    });
                }
                i -= 1;
                digits[i] += 1;
                if digits[i] < p.len() {
                    binding[i] = p[digits[i]];
                    break;
                }
                digits[i] = 0;
                binding[i] = p[0];
            }
        }
    }

    fn aggregate_values(&self, cut: &CutState, w: &mut Warnings) -> Vec<Val> {
        let p = cut.participants();
        self.aggregates
            .iter()
            .map(|a| match &a.arg {
                None => Some(Value::Int(p.len() as i64)),
                Some(arg) => {
                    let inputs: Vec<Val> = p
                        .iter()
                        .map(|&n| {
                            let env = Env {
                                cut,
                                units: &[],
                                each: None,
                                agg_node: Some(n),
                                aggs: &[],
                            };
                            eval(arg, &env, w)
                        })
                        .collect();
                    ops::aggregate(a.func, &inputs, w)
                }
            })
            .collect()
    }
}

struct Compiler<'a> {
    plan: &'a Plan,
}

impl Compiler<'_> {
    fn site_of_placeholder(&self, k: u32) -> Site {
        let p = &self.plan.placeholders[k as usize - 1];
        let unit = match p.group {
            Some(g) if self.plan.groups[g].kind == LinkKind::EachNode => return Site::Each,
            Some(g) => BindingUnit::SameNode(g),
            None => BindingUnit::Free(k),
        };
        // The planner lists every outer placeholder's unit; a miss would be a planner bug,
        // and an unbound site evaluates to NULL rather than crashing.
        Site::Unit(
            self.plan
                .units
                .iter()
                .position(|u| *u == unit)
                .unwrap_or(usize::MAX),
        )
    }

    fn expr(&self, e: &PExpr) -> CExpr {
        let b = |x: &PExpr| Box::new(self.expr(x));
        match &e.kind {
            PExprKind::Const(v) => CExpr::Const(v.clone()),
            PExprKind::Var { var, path, site } => CExpr::Var {
                var: var_name(&var.log, &var.key),
                path: path.clone(),
                site: match site {
                    VarSite::Placeholder(k) => self.site_of_placeholder(*k),
                    VarSite::Fixed(n) => Site::Fixed(n.clone()),
                    VarSite::AggregateNode => Site::AggregateNode,
                },
            },
            PExprKind::NodeOf(k) => CExpr::NodeOf(self.site_of_placeholder(*k)),
            PExprKind::Neg(x) => CExpr::Neg(b(x)),
            PExprKind::Not(x) => CExpr::Not(b(x)),
            PExprKind::Arith(op, l, r) => CExpr::Arith(*op, b(l), b(r)),
            PExprKind::Cmp(op, l, r) => CExpr::Cmp(*op, b(l), b(r)),
            PExprKind::And(l, r) => CExpr::And(b(l), b(r)),
            PExprKind::Or(l, r) => CExpr::Or(b(l), b(r)),
            PExprKind::IsNull { expr, negated } => CExpr::IsNull(b(expr), *negated),
            PExprKind::InList {
                expr,
                list,
                negated,
            } => CExpr::InList(
                b(expr),
                list.iter().map(|x| self.expr(x)).collect(),
                *negated,
            ),
            PExprKind::InSet { expr, set, negated } => CExpr::InSet(b(expr), b(set), *negated),
            PExprKind::Scalar(f, args) => {
                CExpr::Scalar(*f, args.iter().map(|x| self.expr(x)).collect())
            }
            PExprKind::Aggregate(i) => CExpr::Aggregate(*i),
            PExprKind::Link { kind, expr, .. } => match kind {
                LinkKind::SameNode => self.expr(expr),
                LinkKind::EachNode => CExpr::EachNode(b(expr)),
            },
        }
    }
}

/// `VarName` for a resolved `log.key` (both are identifiers, checked by the parser).
pub fn var_name(log: &str, key: &str) -> VarName {
    VarName::new(log, key).unwrap_or_else(|_| {
        // Unreachable for parsed queries; fall back to a name no record can carry, which
        // reads as NULL everywhere.
        VarName::new("_", "_").unwrap_or_else(|_| unreachable!("'_._' is a valid name"))
    })
}

struct Env<'a> {
    cut: &'a CutState,
    units: &'a [NodeIdx],
    each: Option<NodeIdx>,
    agg_node: Option<NodeIdx>,
    aggs: &'a [Val],
}

impl Env<'_> {
    fn node(&self, site: &Site) -> Option<NodeIdx> {
        match site {
            Site::Unit(i) => self.units.get(*i).copied(),
            Site::Each => self.each,
            Site::AggregateNode => self.agg_node,
            Site::Fixed(id) => self.cut.lookup(id).filter(|&n| self.cut.in_cut(n)),
        }
    }
}

fn eval(e: &CExpr, env: &Env<'_>, w: &mut Warnings) -> Val {
    match e {
        CExpr::Const(v) => v.clone(),
        CExpr::Var { var, path, site } => {
            let n = env.node(site)?;
            let v = env.cut.value(n, var)?;
            if path.is_empty() {
                Some(v.clone())
            } else {
                ops::field(&Some(v.clone()), path)
            }
        }
        CExpr::NodeOf(site) => env
            .node(site)
            .map(|n| Value::Str(env.cut.node_id(n).to_string())),
        CExpr::Neg(x) => ops::neg(&eval(x, env, w), w),
        CExpr::Not(x) => {
            let t = ops::truth(&eval(x, env, w), w);
            ops::not3(t).map(Value::Bool)
        }
        CExpr::Arith(op, l, r) => {
            let a = eval(l, env, w);
            let b = eval(r, env, w);
            ops::arith(*op, &a, &b, w)
        }
        CExpr::Cmp(op, l, r) => {
            let a = eval(l, env, w);
            let b = eval(r, env, w);
            ops::compare(*op, &a, &b, w)
        }
        CExpr::And(l, r) => {
            let a = ops::truth(&eval(l, env, w), w);
            if a == Some(false) {
                return Some(Value::Bool(false));
            }
            let b = ops::truth(&eval(r, env, w), w);
            ops::and3(a, b).map(Value::Bool)
        }
        CExpr::Or(l, r) => {
            let a = ops::truth(&eval(l, env, w), w);
            if a == Some(true) {
                return Some(Value::Bool(true));
            }
            let b = ops::truth(&eval(r, env, w), w);
            ops::or3(a, b).map(Value::Bool)
        }
        CExpr::IsNull(x, negated) => Some(Value::Bool(eval(x, env, w).is_none() != *negated)),
        CExpr::InList(x, list, negated) => {
            let v = eval(x, env, w);
            let items: Vec<Val> = list.iter().map(|i| eval(i, env, w)).collect();
            let r = ops::in_list(&v, &items, w);
            if *negated {
                ops::not3(ops::truth(&r, w)).map(Value::Bool)
            } else {
                r
            }
        }
        CExpr::InSet(x, s, negated) => {
            let v = eval(x, env, w);
            let set = eval(s, env, w);
            let r = ops::in_set(&v, &set, w);
            if *negated {
                ops::not3(ops::truth(&r, w)).map(Value::Bool)
            } else {
                r
            }
        }
        CExpr::Scalar(f, args) => {
            let vals: Vec<Val> = args.iter().map(|a| eval(a, env, w)).collect();
            ops::call_scalar(*f, &vals, w)
        }
        CExpr::Aggregate(i) => env.aggs.get(*i).cloned().flatten(),
        CExpr::EachNode(x) => {
            let p = env.cut.participants();
            if p.is_empty() {
                return Some(Value::Bool(false));
            }
            for &n in p {
                let inner = Env {
                    cut: env.cut,
                    units: env.units,
                    each: Some(n),
                    agg_node: env.agg_node,
                    aggs: env.aggs,
                };
                if ops::truth(&eval(x, &inner, w), w) != Some(true) {
                    return Some(Value::Bool(false));
                }
            }
            Some(Value::Bool(true))
        }
    }
}
