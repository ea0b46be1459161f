//! EXPLAIN: the resolved plan as text — variables, numbered placeholders, LINK groups, the
//! evaluation strategy of each part of WHEN with its per-step cost, and the enumeration bound.

use std::fmt::Write;

use log_server::Value;
use rql_parser::{Emit, LinkKind};

use crate::plan::*;
use crate::strategy::{choose, describe};

/// Render `plan` for a person. `max_bindings` is the executor's enumeration bound.
pub fn explain(plan: &Plan, max_bindings: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "query: {}", plan.span.text(&plan.source).trim());
    let _ = writeln!(out, "from: {}", plan.logs.join(", "));
    out.push_str("select:\n");
    for item in &plan.outputs {
        let _ = match item {
            OutputItem::Variable {
                name,
                var,
                path,
                node,
            } => {
                let mut target = var.name();
                for f in path {
                    target.push('.');
                    target.push_str(f);
                }
                match node {
                    Some(n) => writeln!(out, "  {name}: {target} on node {n:?}"),
                    None => writeln!(out, "  {name}: {target} per node of P(t)"),
                }
            }
            OutputItem::AllOf { logs } => writeln!(
                out,
                "  {}: every variable of {} present in P(t)",
                if logs.len() == 1 {
                    format!("{}.*", logs[0])
                } else {
                    "*".into()
                },
                logs.join(", ")
            ),
            OutputItem::Aggregate { name, index } => {
                writeln!(out, "  {name}: aggregate A{}", index + 1)
            }
        };
    }
    match &plan.when {
        None => out.push_str("when: (none: every candidate cut satisfies)\n"),
        Some(w) => {
            let _ = writeln!(out, "when: {}", expr_text(w));
        }
    }
    if !plan.placeholders.is_empty() {
        out.push_str("placeholders:\n");
        for p in &plan.placeholders {
            let mut target = p.var.name();
            for f in &p.path {
                target.push('.');
                target.push_str(f);
            }
            let site = match p.group {
                None => "free".to_string(),
                Some(g) => format!("in group G{} ({})", g + 1, plan.groups[g].kind.as_str()),
            };
            let _ = writeln!(out, "  ${} = {target}  {site}", p.number);
        }
    }
    if !plan.groups.is_empty() {
        out.push_str("link groups:\n");
        for (i, g) in plan.groups.iter().enumerate() {
            let members: Vec<String> = g.placeholders.iter().map(|k| format!("${k}")).collect();
            let _ = writeln!(
                out,
                "  G{} {}: {{{}}}  {}",
                i + 1,
                g.kind.as_str(),
                members.join(", "),
                g.span.text(&plan.source)
            );
        }
    }
    if !plan.aggregates.is_empty() {
        out.push_str("aggregates:\n");
        for (i, a) in plan.aggregates.iter().enumerate() {
            let _ = writeln!(out, "  A{} = {}", i + 1, a.span.text(&plan.source));
        }
    }
    let units: Vec<String> = plan
        .units
        .iter()
        .map(|u| match u {
            BindingUnit::Free(k) => format!("${k}"),
            BindingUnit::SameNode(g) => format!("G{}", g + 1),
        })
        .collect();
    let _ = writeln!(
        out,
        "outer binding: {}",
        if units.is_empty() {
            "(none)".to_string()
        } else {
            format!("{}  ({} node choices each)", units.join(" × "), "|P|")
        }
    );
    out.push_str("strategy:\n");
    for part in describe(plan, &choose(plan)) {
        let _ = writeln!(out, "  {}: {}; cost {}", part.name, part.method, part.cost);
    }
    let _ = writeln!(
        out,
        "  enumeration bound: {max_bindings} bindings per cut (--max-bindings)"
    );
    let mut refs: Vec<String> = plan.referenced.vars.iter().map(VarRef::name).collect();
    refs.extend(plan.referenced.whole_logs.iter().map(|l| format!("{l}.*")));
    let _ = writeln!(
        out,
        "candidates: steps that change {} or change P(t){}",
        if refs.is_empty() {
            "nothing referenced".to_string()
        } else {
            refs.join(", ")
        },
        match &plan.at_nodes {
            Some(ns) => format!(
                "; only records of AT NODES {}",
                ns.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
            None => String::new(),
        }
    );
    let _ = match plan.time {
        TimeSpec::All => writeln!(out, "time: every candidate"),
        TimeSpec::Range { from, to } => {
            writeln!(out, "time: candidates with {from} <= hlc <= {to}")
        }
        TimeSpec::Snapshot { at } => writeln!(out, "time: snapshot of the cut at {at}"),
        TimeSpec::Since { from } => writeln!(out, "time: retained history from {from}, then live"),
    };
    let _ = writeln!(
        out,
        "emit: {}{}",
        match plan.emit {
            Emit::Cuts => "CUTS",
            Emit::Changes => "CHANGES (begin/end of runs)",
        },
        plan.limit
            .map(|n| format!(", LIMIT {n}"))
            .unwrap_or_default()
    );
    for n in &plan.notes {
        let _ = writeln!(out, "note: {}", n.one_line(&plan.source));
    }
    out
}

/// A resolved expression with placeholders shown: `$1:inv.a + $2:inv.b`.
pub fn expr_text(e: &PExpr) -> String {
    let mut s = String::new();
    write_expr(&mut s, e);
    s
}

fn write_expr(out: &mut String, e: &PExpr) {
    let bin = |out: &mut String, l: &PExpr, op: &str, r: &PExpr| {
        out.push('(');
        write_expr(out, l);
        let _ = write!(out, " {op} ");
        write_expr(out, r);
        out.push(')');
    };
    match &e.kind {
        PExprKind::Const(None) => out.push_str("NULL"),
        PExprKind::Const(Some(Value::Str(s))) => {
            let _ = write!(out, "'{}'", s.replace('\'', "''"));
        }
        PExprKind::Const(Some(v)) => out.push_str(&v.to_json()),
        PExprKind::Var { var, path, site } => {
            if let VarSite::Placeholder(k) = site {
                let _ = write!(out, "${k}:");
            }
            out.push_str(&var.name());
            for f in path {
                out.push('.');
                out.push_str(f);
            }
            if let VarSite::Fixed(n) = site {
                let _ = write!(out, "[{n:?}]");
            }
        }
        PExprKind::NodeOf(k) => {
            let _ = write!(out, "NODE(${k})");
        }
        PExprKind::Neg(x) => {
            out.push('-');
            write_expr(out, x);
        }
        PExprKind::Not(x) => {
            out.push_str("NOT ");
            write_expr(out, x);
        }
        PExprKind::Arith(op, l, r) => bin(out, l, op.symbol(), r),
        PExprKind::Cmp(op, l, r) => bin(out, l, op.symbol(), r),
        PExprKind::And(l, r) => bin(out, l, "AND", r),
        PExprKind::Or(l, r) => bin(out, l, "OR", r),
        PExprKind::IsNull { expr, negated } => {
            write_expr(out, expr);
            out.push_str(if *negated { " IS NOT NULL" } else { " IS NULL" });
        }
        PExprKind::InList {
            expr,
            list,
            negated,
        } => {
            write_expr(out, expr);
            out.push_str(if *negated { " NOT IN (" } else { " IN (" });
            for (i, x) in list.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_expr(out, x);
            }
            out.push(')');
        }
        PExprKind::InSet { expr, set, negated } => {
            write_expr(out, expr);
            out.push_str(if *negated { " NOT IN " } else { " IN " });
            write_expr(out, set);
        }
        PExprKind::Scalar(f, args) => {
            out.push_str(f.name());
            out.push('(');
            for (i, x) in args.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_expr(out, x);
            }
            out.push(')');
        }
        PExprKind::Aggregate(i) => {
            let _ = write!(out, "A{}", i + 1);
        }
        PExprKind::Link { kind, group, expr } => {
            let _ = write!(out, "G{}[", group + 1);
            write_expr(out, expr);
            let _ = write!(
                out,
                "] LINK {}",
                match kind {
                    LinkKind::SameNode => "SAME_NODE",
                    LinkKind::EachNode => "EACH_NODE",
                }
            );
        }
    }
}
