//! Plan expressions compiled against a trace's interned names, and their evaluation.
//!
//! Every variable occurrence knows its variable index and where its node comes from: an outer
//! binding unit, the "local" node (the node an EACH_NODE group, an aggregate or a per-node
//! cache is evaluating for), or a fixed node. Evaluation reads the dense cut state directly.

use log_server::Value;
use rql_parser::LinkKind;
use rql_planner::ops::{self, AggFn, ArithOp, CmpOp, ScalarFn, Val, Warnings};
use rql_planner::{BindingUnit, PExpr, PExprKind, Plan, VarSite};

use crate::columnar::{NodeIdx, VarIdx};
use crate::state::CutState;

/// Where an occurrence takes its node from.
#[derive(Clone, Debug, PartialEq)]
pub enum Site {
    /// Outer binding unit `i` (a free placeholder or a SAME_NODE group).
    Unit(usize),
    /// The node being evaluated for: an EACH_NODE group's or an aggregate's current node.
    Local,
    /// A fixed node (`x['n1']`); `None` if the trace never has that node.
    Fixed(Option<NodeIdx>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum CExpr {
    Const(Val),
    /// `var` is `None` if the trace never has this variable (it reads as NULL).
    Var {
        var: Option<VarIdx>,
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
    /// The current value of aggregate i.
    Aggregate(usize),
    /// `(e) LINK EACH_NODE` (group index). SAME_NODE groups compile to their body: their
    /// placeholders are one outer unit.
    EachNode(usize, Box<CExpr>),
}

impl CExpr {
    /// Visit every node of the tree (parents first).
    pub fn walk(&self, f: &mut dyn FnMut(&CExpr)) {
        f(self);
        match self {
            CExpr::Const(_) | CExpr::Var { .. } | CExpr::NodeOf(_) | CExpr::Aggregate(_) => {}
            CExpr::Neg(x) | CExpr::Not(x) | CExpr::IsNull(x, _) | CExpr::EachNode(_, x) => {
                x.walk(f)
            }
            CExpr::Arith(_, a, b)
            | CExpr::Cmp(_, a, b)
            | CExpr::And(a, b)
            | CExpr::Or(a, b)
            | CExpr::InSet(a, b, _) => {
                a.walk(f);
                b.walk(f);
            }
            CExpr::InList(x, list, _) => {
                x.walk(f);
                for i in list {
                    i.walk(f);
                }
            }
            CExpr::Scalar(_, args) => {
                for a in args {
                    a.walk(f);
                }
            }
        }
    }
}

/// How names resolve against the trace.
pub struct NameLookup<'a> {
    pub var: &'a dyn Fn(&str) -> Option<VarIdx>,
    pub node: &'a dyn Fn(&str) -> Option<NodeIdx>,
}

pub struct Compiler<'a> {
    pub plan: &'a Plan,
    pub names: NameLookup<'a>,
    /// Treat outer unit 0 as the local node (per-node caching of a one-unit WHEN).
    pub unit_is_local: bool,
}

impl Compiler<'_> {
    fn site_of_placeholder(&self, k: u32) -> Site {
        let Some(p) = self.plan.placeholders.get(k as usize - 1) else {
            return Site::Fixed(None);
        };
        let unit = match p.group {
            Some(g) if self.plan.groups[g].kind == LinkKind::EachNode => return Site::Local,
            Some(g) => BindingUnit::SameNode(g),
            None => BindingUnit::Free(k),
        };
        match self.plan.units.iter().position(|u| *u == unit) {
            Some(_) if self.unit_is_local => Site::Local,
            Some(i) => Site::Unit(i),
            None => Site::Fixed(None),
        }
    }

    pub fn expr(&self, e: &PExpr) -> CExpr {
        let b = |x: &PExpr| Box::new(self.expr(x));
        match &e.kind {
            PExprKind::Const(v) => CExpr::Const(v.clone()),
            PExprKind::Var { var, path, site } => CExpr::Var {
                var: (self.names.var)(&var.name()),
                path: path.clone(),
                site: match site {
                    VarSite::Placeholder(k) => self.site_of_placeholder(*k),
                    VarSite::Fixed(n) => Site::Fixed((self.names.node)(n)),
                    VarSite::AggregateNode => Site::Local,
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
            PExprKind::Link { kind, group, expr } => match kind {
                LinkKind::SameNode => self.expr(expr),
                LinkKind::EachNode => CExpr::EachNode(*group, b(expr)),
            },
        }
    }
}

/// Everything an evaluation may read.
pub struct Env<'a> {
    pub cut: &'a CutState,
    /// One node per outer unit; empty when P(t) is empty (every placeholder NULL).
    pub units: &'a [NodeIdx],
    pub local: Option<NodeIdx>,
    pub aggs: &'a [Val],
    /// Cached EACH_NODE group values (index = group); `None` = evaluate by iterating P(t).
    pub groups: &'a [Option<bool>],
}

impl Env<'_> {
    #[inline]
    fn node(&self, site: &Site) -> Option<NodeIdx> {
        match site {
            Site::Unit(i) => self.units.get(*i).copied(),
            Site::Local => self.local,
            Site::Fixed(n) => n.filter(|&n| self.cut.in_cut(n)),
        }
    }
}

/// Is `e` TRUE (not FALSE, not NULL)?
#[inline]
pub fn holds(e: &CExpr, env: &Env<'_>, w: &mut Warnings) -> bool {
    ops::truth(&eval(e, env, w), w) == Some(true)
}

pub fn eval(e: &CExpr, env: &Env<'_>, w: &mut Warnings) -> Val {
    match e {
        CExpr::Const(v) => v.clone(),
        CExpr::Var { var, path, site } => {
            let n = env.node(site)?;
            let v = env.cut.value(n, (*var)?)?;
            if path.is_empty() {
                Some(v.clone())
            } else {
                field(v, path)
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
        CExpr::EachNode(g, x) => {
            if let Some(Some(cached)) = env.groups.get(*g) {
                return Some(Value::Bool(*cached));
            }
            Some(Value::Bool(for_all(x, env, w)))
        }
    }
}

/// SPEC §3.2: TRUE iff P(t) is non-empty and the body holds with its placeholders on every
/// node of P(t).
pub fn for_all(body: &CExpr, env: &Env<'_>, w: &mut Warnings) -> bool {
    let p = env.cut.participants();
    !p.is_empty()
        && p.iter().all(|&n| {
            let inner = Env {
                cut: env.cut,
                units: env.units,
                local: Some(n),
                aggs: env.aggs,
                groups: env.groups,
            };
            holds(body, &inner, w)
        })
}

/// `v.f.g...`: NULL unless every step is a struct field.
fn field(v: &Value, path: &[String]) -> Val {
    let mut cur = v;
    for f in path {
        match cur {
            Value::Struct(fields) => cur = fields.get(f)?,
            _ => return None,
        }
    }
    Some(cur.clone())
}

/// The placeholders (as unit indices) in whose NULL `e` can never be TRUE, so enumeration can
/// skip nodes where such a unit's variable is NULL: a NULL operand of an AND makes it NULL or
/// FALSE, and a NULL that propagates to the top (or under a NOT) makes it NULL.
pub fn strict_units(e: &CExpr, out: &mut Vec<(usize, Option<VarIdx>, Vec<String>)>) {
    match e {
        CExpr::And(l, r) => {
            strict_units(l, out);
            strict_units(r, out);
        }
        CExpr::Not(x) => null_propagating(x, out),
        _ => null_propagating(e, out),
    }
}

/// Units whose NULL makes `e` NULL: comparisons, arithmetic, IN's left side, set membership,
/// NOT and every function but COALESCE pass a NULL operand through.
fn null_propagating(e: &CExpr, out: &mut Vec<(usize, Option<VarIdx>, Vec<String>)>) {
    match e {
        CExpr::Var {
            var,
            path,
            site: Site::Unit(u),
        } => out.push((*u, *var, path.clone())),
        CExpr::Neg(x) | CExpr::Not(x) | CExpr::InList(x, _, _) => null_propagating(x, out),
        CExpr::Arith(_, l, r) | CExpr::Cmp(_, l, r) | CExpr::InSet(l, r, _) => {
            null_propagating(l, out);
            null_propagating(r, out);
        }
        CExpr::Scalar(f, args) if *f != ScalarFn::Coalesce => {
            for a in args {
                null_propagating(a, out);
            }
        }
        _ => {}
    }
}

/// Aggregate inputs: the argument on each node of P(t), in node order.
pub fn aggregate_over_p(func: AggFn, arg: Option<&CExpr>, cut: &CutState, w: &mut Warnings) -> Val {
    let p = cut.participants();
    let Some(arg) = arg else {
        return Some(Value::Int(p.len() as i64));
    };
    let inputs: Vec<Val> = p
        .iter()
        .map(|&n| {
            let env = Env {
                cut,
                units: &[],
                local: Some(n),
                aggs: &[],
                groups: &[],
            };
            eval(arg, &env, w)
        })
        .collect();
    ops::aggregate(func, &inputs, w)
}
