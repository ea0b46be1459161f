//! Plan expressions compiled against a trace's interned names, and their evaluation.
//!
//! Every variable occurrence knows its variable index and where its node comes from: an outer
//! binding unit, the "local" node (the node an EACH_NODE group, an aggregate or a per-node
//! cache is evaluating for), or a fixed node. Evaluation reads the dense cut state directly.

use log_server::value::cmp_int_float;
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
    match eval_plain(e, env).and_then(Plain::truth) {
        Some(t) => t == Some(true),
        None => ops::truth(&eval(e, env, w), w) == Some(true),
    }
}

/// NULL, a number or a boolean: what conditions over numeric variables and aggregates compute,
/// held without building (and dropping) a [`Value`] per operand.
///
/// A kind and 64 bits (the i64, the f64's bits, or 0/1) rather than an enum with an i64, an f64
/// and a bool: this way it is returned in two registers. The enum was returned through memory,
/// and reading it back whole after the recursive call stalled on store forwarding, which cost
/// more than the `Value` clones this path saves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plain {
    kind: PlainKind,
    bits: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlainKind {
    Null,
    Int,
    Float,
    Bool,
}

impl Plain {
    pub const NULL: Plain = Plain {
        kind: PlainKind::Null,
        bits: 0,
    };

    #[inline]
    pub fn int(i: i64) -> Plain {
        Plain {
            kind: PlainKind::Int,
            bits: i as u64,
        }
    }

    #[inline]
    pub fn float(f: f64) -> Plain {
        Plain {
            kind: PlainKind::Float,
            bits: f.to_bits(),
        }
    }

    #[inline]
    pub fn boolean(b: bool) -> Plain {
        Plain {
            kind: PlainKind::Bool,
            bits: b as u64,
        }
    }

    pub fn kind(self) -> PlainKind {
        self.kind
    }

    /// The payload read as an int, a float or a boolean (meaningful for that kind only).
    #[inline]
    pub fn as_int(self) -> i64 {
        self.bits as i64
    }

    #[inline]
    pub fn as_float(self) -> f64 {
        f64::from_bits(self.bits)
    }

    #[inline]
    pub fn as_bool(self) -> bool {
        self.bits != 0
    }

    /// `None` for a value that is not plain.
    #[inline]
    fn of(v: Option<&Value>) -> Option<Plain> {
        Some(match v {
            None => Plain::NULL,
            Some(Value::Int(i)) => Plain::int(*i),
            Some(Value::Float(f)) => Plain::float(*f),
            Some(Value::Bool(b)) => Plain::boolean(*b),
            Some(_) => return None,
        })
    }

    /// The value as a condition (see [`ops::truth`]); `None` for a number, which would warn.
    #[inline]
    pub fn truth(self) -> Option<Option<bool>> {
        match self.kind {
            PlainKind::Null => Some(None),
            PlainKind::Bool => Some(Some(self.as_bool())),
            PlainKind::Int | PlainKind::Float => None,
        }
    }

    #[inline]
    fn as_f64(self) -> Option<f64> {
        match self.kind {
            PlainKind::Int => Some(self.as_int() as f64),
            PlainKind::Float => Some(self.as_float()),
            PlainKind::Null | PlainKind::Bool => None,
        }
    }

    #[inline]
    fn from_truth(t: Option<bool>) -> Plain {
        t.map_or(Plain::NULL, Plain::boolean)
    }
}

/// [`eval`] for the common case where every value met is NULL, a number or a boolean and no
/// operation warns: the same result, with no `Value` built. `None` when the case is not that
/// one (a string, a set, a function, an overflow, a division by zero, a kind mismatch...): the
/// caller then runs [`eval`], which gives the result and the warnings. Whatever is evaluated
/// here raises no warning, so giving up half-way loses nothing.
pub fn eval_plain(e: &CExpr, env: &Env<'_>) -> Option<Plain> {
    Some(match e {
        CExpr::Const(v) => return Plain::of(v.as_ref()),
        CExpr::Var { var, path, site } => {
            let (Some(n), Some(var)) = (env.node(site), var) else {
                return Some(Plain::NULL);
            };
            let mut v = env.cut.value(n, *var);
            for f in path {
                v = match v {
                    Some(Value::Struct(fields)) => fields.get(f),
                    _ => None,
                };
            }
            return Plain::of(v);
        }
        CExpr::Aggregate(i) => return Plain::of(env.aggs.get(*i).and_then(|v| v.as_ref())),
        CExpr::Neg(x) => {
            let a = eval_plain(x, env)?;
            match a.kind {
                PlainKind::Null => a,
                PlainKind::Int => Plain::int(a.as_int().checked_neg()?),
                PlainKind::Float => Plain::float(-a.as_float()),
                PlainKind::Bool => return None,
            }
        }
        CExpr::Not(x) => Plain::from_truth(ops::not3(eval_plain(x, env)?.truth()?)),
        CExpr::Arith(op, l, r) => arith_plain(*op, eval_plain(l, env)?, eval_plain(r, env)?)?,
        CExpr::Cmp(op, l, r) => compare_plain(*op, eval_plain(l, env)?, eval_plain(r, env)?)?,
        CExpr::And(l, r) => {
            let a = eval_plain(l, env)?.truth()?;
            if a == Some(false) {
                return Some(Plain::boolean(false));
            }
            let b = eval_plain(r, env)?.truth()?;
            Plain::from_truth(ops::and3(a, b))
        }
        CExpr::Or(l, r) => {
            let a = eval_plain(l, env)?.truth()?;
            if a == Some(true) {
                return Some(Plain::boolean(true));
            }
            let b = eval_plain(r, env)?.truth()?;
            Plain::from_truth(ops::or3(a, b))
        }
        CExpr::IsNull(x, negated) => {
            Plain::boolean((eval_plain(x, env)?.kind == PlainKind::Null) != *negated)
        }
        CExpr::EachNode(g, _) => match env.groups.get(*g) {
            Some(Some(cached)) => Plain::boolean(*cached),
            _ => return None,
        },
        CExpr::NodeOf(_) | CExpr::InList(..) | CExpr::InSet(..) | CExpr::Scalar(..) => return None,
    })
}

/// [`ops::arith`] on plain values; `None` where it would warn.
#[inline]
fn arith_plain(op: ArithOp, a: Plain, b: Plain) -> Option<Plain> {
    use PlainKind::{Int, Null};
    match (a.kind, b.kind) {
        (Null, _) | (_, Null) => Some(Plain::NULL),
        (Int, Int) => {
            let (x, y) = (a.as_int(), b.as_int());
            match op {
                ArithOp::Add => x.checked_add(y).map(Plain::int),
                ArithOp::Sub => x.checked_sub(y).map(Plain::int),
                ArithOp::Mul => x.checked_mul(y).map(Plain::int),
                ArithOp::Div => float_arith_plain(op, x as f64, y as f64),
                // As `ops`: wrapping_rem is exact except for i64::MIN % -1, which is 0.
                ArithOp::Mod => (y != 0).then(|| Plain::int(x.wrapping_rem(y))),
            }
        }
        _ => float_arith_plain(op, a.as_f64()?, b.as_f64()?),
    }
}

#[inline]
fn float_arith_plain(op: ArithOp, x: f64, y: f64) -> Option<Plain> {
    let r = match op {
        ArithOp::Add => x + y,
        ArithOp::Sub => x - y,
        ArithOp::Mul => x * y,
        ArithOp::Div | ArithOp::Mod if y == 0.0 => return None,
        ArithOp::Div => x / y,
        ArithOp::Mod => x % y,
    };
    r.is_finite().then(|| Plain::float(r))
}

/// [`ops::compare`] on plain values; `None` where it would warn.
#[inline]
fn compare_plain(op: CmpOp, a: Plain, b: Plain) -> Option<Plain> {
    use std::cmp::Ordering;
    use PlainKind::{Bool, Float, Int, Null};
    let o: Ordering = match (a.kind, b.kind) {
        (Null, _) | (_, Null) => return Some(Plain::NULL),
        (Bool, Bool) => {
            return match op {
                CmpOp::Eq => Some(Plain::boolean(a.bits == b.bits)),
                CmpOp::NotEq => Some(Plain::boolean(a.bits != b.bits)),
                // Booleans do not order.
                _ => None,
            };
        }
        (Int, Int) => a.as_int().cmp(&b.as_int()),
        (Int, Float) => cmp_int_float(a.as_int(), b.as_float()),
        (Float, Int) => cmp_int_float(b.as_int(), a.as_float()).reverse(),
        (Float, Float) => a.as_float().partial_cmp(&b.as_float())?,
        // A boolean and a number: incomparable kinds.
        (Bool, _) | (_, Bool) => return None,
    };
    Some(Plain::boolean(match op {
        CmpOp::Eq => o.is_eq(),
        CmpOp::NotEq => o.is_ne(),
        CmpOp::Lt => o.is_lt(),
        CmpOp::LtEq => o.is_le(),
        CmpOp::Gt => o.is_gt(),
        CmpOp::GtEq => o.is_ge(),
    }))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columnar::{CRecord, Op, VarTable};
    use proptest::prelude::*;

    /// Values of every kind the fast path handles or gives up on, with ints at the edges of
    /// overflow and floats that overflow, divide by zero or compare exactly with ints.
    fn val() -> impl Strategy<Value = Val> {
        prop_oneof![
            Just(None),
            (-4i64..4).prop_map(|i| Some(Value::Int(i))),
            prop_oneof![
                Just(i64::MAX),
                Just(i64::MIN),
                Just(-1i64),
                Just(1 << 53),
                Just((1 << 53) + 1)
            ]
            .prop_map(|i| Some(Value::Int(i))),
            prop_oneof![
                Just(0.0f64),
                Just(-0.0),
                Just(0.5),
                Just(-2.0),
                Just(f64::MAX),
                Just(9_007_199_254_740_992.0),
                Just(9.223372036854776e18),
            ]
            .prop_map(|f| Some(Value::Float(f))),
            any::<bool>().prop_map(|b| Some(Value::Bool(b))),
            Just(Some(Value::Str("s".into()))),
        ]
    }

    const AGGS: usize = 3;
    const VARS: u32 = 3;

    fn expr() -> impl Strategy<Value = CExpr> {
        let leaf = prop_oneof![
            val().prop_map(CExpr::Const),
            (0..AGGS + 1).prop_map(CExpr::Aggregate),
            (0..VARS + 1).prop_map(|v| CExpr::Var {
                // VARS itself: a variable the trace never has.
                var: (v < VARS).then_some(v),
                path: Vec::new(),
                site: Site::Local,
            }),
            (0..VARS).prop_map(|v| CExpr::Var {
                var: Some(v),
                path: vec!["f".into()],
                site: Site::Local,
            }),
            Just(CExpr::NodeOf(Site::Local)),
        ];
        let arith = prop_oneof![
            Just(ArithOp::Add),
            Just(ArithOp::Sub),
            Just(ArithOp::Mul),
            Just(ArithOp::Div),
            Just(ArithOp::Mod)
        ];
        let cmp = prop_oneof![
            Just(CmpOp::Eq),
            Just(CmpOp::NotEq),
            Just(CmpOp::Lt),
            Just(CmpOp::LtEq),
            Just(CmpOp::Gt),
            Just(CmpOp::GtEq)
        ];
        leaf.prop_recursive(4, 32, 2, move |inner| {
            let b = |x: CExpr| Box::new(x);
            prop_oneof![
                inner.clone().prop_map(move |x| CExpr::Neg(b(x))),
                inner.clone().prop_map(move |x| CExpr::Not(b(x))),
                (inner.clone(), any::<bool>()).prop_map(move |(x, n)| CExpr::IsNull(b(x), n)),
                (arith.clone(), inner.clone(), inner.clone())
                    .prop_map(move |(op, l, r)| CExpr::Arith(op, b(l), b(r))),
                (cmp.clone(), inner.clone(), inner.clone()).prop_map(move |(op, l, r)| CExpr::Cmp(
                    op,
                    b(l),
                    b(r)
                )),
                (inner.clone(), inner.clone()).prop_map(move |(l, r)| CExpr::And(b(l), b(r))),
                (inner.clone(), inner.clone()).prop_map(move |(l, r)| CExpr::Or(b(l), b(r))),
                (any::<bool>(), inner.clone())
                    .prop_map(move |(c, x)| CExpr::EachNode(usize::from(c), b(x))),
            ]
        })
    }

    /// One node whose variables hold `vars` (a struct with field `f` where `structs` says so).
    fn cut_with(vars: &[Val], structs: &[bool]) -> CutState {
        let mut cut = CutState::new(vec!["n1".into()], vec![true], vec![true; vars.len()]);
        let mut ops = Vec::new();
        for (v, (x, s)) in vars.iter().zip(structs).enumerate() {
            let v = v as VarIdx;
            ops.push(match (x, s) {
                (Some(x), true) => Op::Set(
                    v,
                    Value::Struct([("f".to_string(), x.clone())].into_iter().collect()),
                ),
                (Some(x), false) => Op::Set(v, x.clone()),
                (None, _) => Op::Unset(v),
            });
        }
        let rec = CRecord {
            node: 0,
            first_op: 0,
            end_op: ops.len() as u32,
            leave: false,
            heartbeat: false,
        };
        let applied = cut.apply(&rec, &ops, &VarTable::default());
        assert!(applied.is_ok());
        cut.finish_node(0);
        cut
    }

    /// Both evaluations of `e` agree as [`plain_evaluation_agrees_with_eval`] requires.
    fn check_agreement(e: &CExpr, env: &Env<'_>) {
        let mut w = Warnings::default();
        let general = eval(e, env, &mut w);
        if let Some(p) = eval_plain(e, env) {
            assert!(w.is_empty(), "{e:?} warned {w:?}");
            let same = match (p.kind(), &general) {
                (PlainKind::Null, None) => true,
                (PlainKind::Int, Some(Value::Int(b))) => p.as_int() == *b,
                (PlainKind::Float, Some(Value::Float(b))) => p.as_float().to_bits() == b.to_bits(),
                (PlainKind::Bool, Some(Value::Bool(b))) => p.as_bool() == *b,
                _ => false,
            };
            assert!(same, "{e:?}: plain {p:?}, eval {general:?}");
        }
        let mut literal = Warnings::default();
        let want = ops::truth(&eval(e, env, &mut literal), &mut literal) == Some(true);
        let mut fast = Warnings::default();
        assert_eq!(holds(e, env, &mut fast), want, "{e:?}");
        assert_eq!(fast, literal, "{e:?}");
    }

    /// Every operator on every pair of edge values: exact int/float comparison, overflow,
    /// division by zero, non-finite results, kind mismatches, NULL.
    #[test]
    fn plain_operators_agree_on_edge_values() {
        let values: Vec<Val> = vec![
            None,
            Some(Value::Int(0)),
            Some(Value::Int(1)),
            Some(Value::Int(-1)),
            Some(Value::Int(7)),
            Some(Value::Int(i64::MAX)),
            Some(Value::Int(i64::MIN)),
            Some(Value::Int(1 << 53)),
            Some(Value::Int((1 << 53) + 1)),
            Some(Value::Float(0.0)),
            Some(Value::Float(-0.0)),
            Some(Value::Float(1.0)),
            Some(Value::Float(0.5)),
            Some(Value::Float(f64::MAX)),
            Some(Value::Float(-f64::MAX)),
            Some(Value::Float(9_007_199_254_740_992.0)),
            Some(Value::Float(9.223372036854776e18)),
            Some(Value::Float(-9.223372036854776e18)),
            Some(Value::Bool(false)),
            Some(Value::Bool(true)),
            Some(Value::Str("s".into())),
        ];
        let cut = CutState::new(Vec::new(), Vec::new(), Vec::new());
        let env = Env {
            cut: &cut,
            units: &[],
            local: None,
            aggs: &[],
            groups: &[],
        };
        let c = |v: &Val| Box::new(CExpr::Const(v.clone()));
        let ariths = [
            ArithOp::Add,
            ArithOp::Sub,
            ArithOp::Mul,
            ArithOp::Div,
            ArithOp::Mod,
        ];
        let cmps = [
            CmpOp::Eq,
            CmpOp::NotEq,
            CmpOp::Lt,
            CmpOp::LtEq,
            CmpOp::Gt,
            CmpOp::GtEq,
        ];
        for a in &values {
            check_agreement(&CExpr::Neg(c(a)), &env);
            check_agreement(&CExpr::Not(c(a)), &env);
            check_agreement(&CExpr::IsNull(c(a), false), &env);
            check_agreement(&CExpr::Const(a.clone()), &env);
            for b in &values {
                for op in ariths {
                    check_agreement(&CExpr::Arith(op, c(a), c(b)), &env);
                }
                for op in cmps {
                    check_agreement(&CExpr::Cmp(op, c(a), c(b)), &env);
                }
                check_agreement(&CExpr::And(c(a), c(b)), &env);
                check_agreement(&CExpr::Or(c(a), c(b)), &env);
            }
        }
    }

    proptest! {
        /// Whenever the fast path gives a value, the general evaluation gives the same value
        /// and no warning; and `holds` (which tries the fast path first) answers and warns
        /// exactly as the general evaluation does.
        #[test]
        fn plain_evaluation_agrees_with_eval(
            e in expr(),
            aggs in proptest::collection::vec(val(), AGGS),
            vars in proptest::collection::vec(val(), VARS as usize),
            structs in proptest::collection::vec(any::<bool>(), VARS as usize),
            group in proptest::option::of(any::<bool>()),
        ) {
            let cut = cut_with(&vars, &structs);
            // Group 0 cached, group 1 evaluated over P(t).
            let groups = [group, None];
            let env = Env { cut: &cut, units: &[], local: Some(0), aggs: &aggs, groups: &groups };
            check_agreement(&e, &env);
        }
    }
}
