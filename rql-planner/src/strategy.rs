//! Choice of evaluation strategy for each part of WHEN, with its per-step cost. The executor
//! runs exactly what is chosen here; EXPLAIN prints it.
//!
//! Parts and their methods:
//! - aggregates: maintained incrementally from the nodes a step touches (COUNT/SUM/AVG/
//!   COUNT_DISTINCT O(1), MIN/MAX O(log N) with an ordered multiset), unless the argument reads
//!   a fixed node (`x['n1']`), which makes every node's input depend on one node: then
//!   recomputed over P(t) per evaluated cut;
//! - EACH_NODE groups whose body only reads the group's node: a per-node cached truth value
//!   and a count, O(1) per touched node; otherwise a for-all over P(t) per outer binding;
//! - the outer binding (free placeholders and SAME_NODE groups):
//!   none → evaluated once per cut; one unit whose whole condition reads only that unit's node
//!   → per-node cached truth and an ordered set of the nodes where it holds (∃ in O(1), the
//!   witness in O(log N)); an order comparison of sums of distinct free placeholders and
//!   constants (`a + b <= c`) → extremes of each variable over P(t) (∃i,j: a_i > b_j ⇔
//!   max a > min b), the witness found only for emitted cuts; anything else → enumeration in
//!   witness order with early exit, nodes where a strict placeholder is NULL pruned, under the
//!   bound.

use rql_parser::LinkKind;

use crate::ops::{AggFn, ArithOp, CmpOp};
use crate::plan::{BindingUnit, PExpr, PExprKind, Plan, VarSite};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggMethod {
    Incremental,
    ScanPerCut,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupMethod {
    /// Per-node cached truth of the body and a count of nodes where it holds.
    NodeCache,
    /// Iterate P(t) for every outer binding.
    ForAllPerBinding,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OuterMethod {
    /// No WHEN: every candidate satisfies.
    Always,
    /// No outer placeholders: evaluate once per candidate.
    Direct,
    /// One unit; WHEN reads only that unit's node: cached per-node truth.
    NodeCache,
    /// An order comparison linear in distinct free placeholders: extremes over P(t).
    Extremes,
    /// Enumerate bindings in witness order.
    Enumerate,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Strategy {
    /// Indexed like `Plan::aggregates`.
    pub aggregates: Vec<AggMethod>,
    /// Indexed like `Plan::groups` (SAME_NODE groups are part of the outer binding: `None`).
    pub groups: Vec<Option<GroupMethod>>,
    pub outer: OuterMethod,
}

/// One line of EXPLAIN's strategy section.
pub struct Part {
    pub name: String,
    pub method: String,
    pub cost: String,
}

pub fn choose(plan: &Plan) -> Strategy {
    let aggregates = plan
        .aggregates
        .iter()
        .map(|a| match &a.arg {
            Some(arg) if reads_fixed_node(arg) => AggMethod::ScanPerCut,
            _ => AggMethod::Incremental,
        })
        .collect();
    let mut groups = vec![None; plan.groups.len()];
    if let Some(w) = &plan.when {
        w.walk(&mut |e| {
            if let PExprKind::Link {
                kind: LinkKind::EachNode,
                group,
                expr,
            } = &e.kind
            {
                let members = &plan.groups[*group].placeholders;
                groups[*group] = Some(if node_local(expr, &|k| members.contains(&k)) {
                    GroupMethod::NodeCache
                } else {
                    GroupMethod::ForAllPerBinding
                });
            }
        });
    }
    let outer = match &plan.when {
        None => OuterMethod::Always,
        Some(_) if plan.units.is_empty() => OuterMethod::Direct,
        Some(w) if plan.units.len() == 1 && node_local(w, &|_| true) => OuterMethod::NodeCache,
        Some(w) if extremes_shape(w, plan) => OuterMethod::Extremes,
        Some(_) => OuterMethod::Enumerate,
    };
    Strategy {
        aggregates,
        groups,
        outer,
    }
}

/// The parts of a plan with their methods and costs, for EXPLAIN.
pub fn describe(plan: &Plan, s: &Strategy) -> Vec<Part> {
    let mut parts = Vec::new();
    for (i, (a, m)) in plan.aggregates.iter().zip(&s.aggregates).enumerate() {
        let (method, cost) = match (m, a.func) {
            (AggMethod::ScanPerCut, _) => (
                "recomputed over P(t) per evaluated cut (its argument reads a fixed node)",
                "O(N) per cut",
            ),
            (AggMethod::Incremental, AggFn::Min | AggFn::Max) => (
                "maintained incrementally: ordered multiset of the nodes' values",
                "O(log N) per touched node",
            ),
            (AggMethod::Incremental, _) => (
                "maintained incrementally from the touched nodes",
                "O(1) per touched node",
            ),
        };
        parts.push(Part {
            name: format!("A{} {}", i + 1, a.span.text(&plan.source)),
            method: method.into(),
            cost: cost.into(),
        });
    }
    let units = plan.units.len();
    for (g, m) in s.groups.iter().enumerate() {
        let Some(m) = m else { continue };
        let (method, cost) = match m {
            GroupMethod::NodeCache => (
                "per-node cached truth and a count of nodes where it holds".to_string(),
                "O(1) per touched node".to_string(),
            ),
            GroupMethod::ForAllPerBinding => (
                "for-all over P(t) per outer binding".to_string(),
                format!("O(N^{}) per cut", units + 1),
            ),
        };
        parts.push(Part {
            name: format!("G{} {}", g + 1, plan.groups[g].span.text(&plan.source)),
            method,
            cost,
        });
    }
    let (method, cost) = match s.outer {
        OuterMethod::Always => ("no WHEN: every candidate", "O(1)".to_string()),
        OuterMethod::Direct => ("evaluated once per candidate", "O(1) per cut".to_string()),
        OuterMethod::NodeCache => (
            "per-node cached truth, ordered set of satisfying nodes (witness = its first)",
            "O(1) per touched node, O(log N) per emitted witness".to_string(),
        ),
        OuterMethod::Extremes => (
            "extremes of each placeholder's variable over P(t); witness searched only for emitted cuts",
            format!(
                "O({units} log N) per touched node, O({units}^2 N) per emitted witness"
            ),
        ),
        OuterMethod::Enumerate => (
            "enumeration of outer bindings in witness order, early exit, NULL pruning",
            match units {
                1 => "O(N) per cut".to_string(),
                u => format!("O(N^{u}) per cut"),
            },
        ),
    };
    parts.push(Part {
        name: "WHEN".into(),
        method: method.into(),
        cost,
    });
    parts
}

fn reads_fixed_node(e: &PExpr) -> bool {
    let mut found = false;
    e.walk(&mut |x| {
        if let PExprKind::Var {
            site: VarSite::Fixed(_),
            ..
        } = &x.kind
        {
            found = true;
        }
    });
    found
}

/// True if `e` can be evaluated from one node's variables alone: no fixed-node reads, no
/// aggregates, no EACH_NODE group, and `NODE($k)` only of placeholders `allowed` says are
/// bound to that node. (Every placeholder inside `e` is then bound to the same node: the
/// group's, or the single outer unit's.)
fn node_local(e: &PExpr, allowed: &dyn Fn(u32) -> bool) -> bool {
    let mut ok = true;
    e.walk(&mut |x| match &x.kind {
        PExprKind::Var {
            site: VarSite::Fixed(_),
            ..
        }
        | PExprKind::Aggregate(_)
        | PExprKind::Link {
            kind: LinkKind::EachNode,
            ..
        } => ok = false,
        // NODE($k) of a placeholder bound elsewhere would need the outer binding.
        PExprKind::NodeOf(k) if !allowed(*k) => ok = false,
        _ => {}
    });
    ok
}

/// `L op R` with op an order comparison, where L and R are sums/differences of free
/// placeholders (each its own outer unit, each occurring once), numeric constants and
/// aggregates, possibly negated or scaled by a non-zero numeric constant.
fn extremes_shape(w: &PExpr, plan: &Plan) -> bool {
    let PExprKind::Cmp(op, l, r) = &w.kind else {
        return false;
    };
    if matches!(op, CmpOp::Eq | CmpOp::NotEq) {
        return false;
    }
    let mut leaves = Vec::new();
    if !linear(l, &mut leaves) || !linear(r, &mut leaves) {
        return false;
    }
    let mut sorted = leaves.clone();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.len() == leaves.len()
        && leaves.len() == plan.units.len()
        && leaves
            .iter()
            .all(|k| plan.units.contains(&BindingUnit::Free(*k)))
}

fn linear(e: &PExpr, leaves: &mut Vec<u32>) -> bool {
    match &e.kind {
        PExprKind::Var {
            site: VarSite::Placeholder(k),
            ..
        } => {
            leaves.push(*k);
            true
        }
        PExprKind::Const(Some(v)) => v.is_number(),
        PExprKind::Aggregate(_) => true,
        PExprKind::Neg(x) => linear(x, leaves),
        PExprKind::Arith(ArithOp::Add | ArithOp::Sub, a, b) => {
            linear(a, leaves) && linear(b, leaves)
        }
        PExprKind::Arith(ArithOp::Mul, a, b) => match (&a.kind, &b.kind) {
            (PExprKind::Const(Some(c)), _) if nonzero_number(c) => linear(b, leaves),
            (_, PExprKind::Const(Some(c))) if nonzero_number(c) => linear(a, leaves),
            _ => false,
        },
        PExprKind::Arith(ArithOp::Div, a, b) => match &b.kind {
            PExprKind::Const(Some(c)) if nonzero_number(c) => linear(a, leaves),
            _ => false,
        },
        _ => false,
    }
}

fn nonzero_number(v: &log_server::Value) -> bool {
    match v {
        log_server::Value::Int(i) => *i != 0,
        log_server::Value::Float(f) => *f != 0.0,
        _ => false,
    }
}
