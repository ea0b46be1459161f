//! AST → normalized RQL text: upper-case keywords, canonical operator spellings, and only the
//! parentheses the precedence needs. Contract: parsing the output gives back an equal AST.

use std::fmt::Write;

use crate::ast::*;

pub fn print_statement(s: &Statement) -> String {
    let q = print_query(&s.query);
    if s.explain {
        format!("EXPLAIN {q}")
    } else {
        q
    }
}

pub fn print_query(q: &Query) -> String {
    let mut out = String::from("SELECT ");
    match &q.select {
        SelectList::Star(_) => out.push('*'),
        SelectList::Items(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                match item {
                    SelectItem::Variable(v) => print_variable(&mut out, v),
                    SelectItem::LogStar { log, .. } => {
                        let _ = write!(out, "{}.*", log.name);
                    }
                    SelectItem::Aggregate { call, alias, .. } => {
                        print(&mut out, call, 0);
                        if let Some(a) = alias {
                            let _ = write!(out, " AS {}", a.name);
                        }
                    }
                }
            }
        }
    }
    out.push_str(" FROM ");
    let logs: Vec<&str> = q.from.iter().map(|l| l.name.as_str()).collect();
    out.push_str(&logs.join(", "));
    if let Some(w) = &q.when {
        out.push_str(" WHEN ");
        print(&mut out, w, 0);
    }
    if let Some(nodes) = &q.at_nodes {
        out.push_str(" AT NODES ");
        for (i, n) in nodes.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            print_node_id(&mut out, &n.name);
        }
    }
    match &q.time {
        Some(TimeRange::OnTime { from, to }) => {
            out.push_str(" ON TIME ");
            print_time(&mut out, from);
            if let Some(to) = to {
                out.push_str(" TO ");
                print_time(&mut out, to);
            }
        }
        Some(TimeRange::Since(t)) => {
            out.push_str(" SINCE ");
            print_time(&mut out, t);
        }
        None => {}
    }
    match q.emit {
        Some(Emit::Cuts) => out.push_str(" EMIT CUTS"),
        Some(Emit::Changes) => out.push_str(" EMIT CHANGES"),
        None => {}
    }
    if let Some(l) = &q.limit {
        let _ = write!(out, " LIMIT {}", l.count);
    }
    out
}

pub fn print_expr(e: &Expr) -> String {
    let mut out = String::new();
    print(&mut out, e, 0);
    out
}

/// Precedence levels, loosest first; a child printed where a tighter level is required gets
/// parentheses.
const OR: u8 = 1;
const AND: u8 = 2;
const NOT: u8 = 3;
const CMP: u8 = 4;
const ADD: u8 = 5;
const MUL: u8 = 6;
const NEG: u8 = 7;
const PRIMARY: u8 = 8;

fn level(e: &Expr) -> u8 {
    match &e.kind {
        ExprKind::Binary { op, .. } => match op {
            BinaryOp::Or => OR,
            BinaryOp::And => AND,
            BinaryOp::Add | BinaryOp::Sub => ADD,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => MUL,
            _ => CMP,
        },
        ExprKind::Unary {
            op: UnaryOp::Not, ..
        } => NOT,
        ExprKind::Unary {
            op: UnaryOp::Neg, ..
        } => NEG,
        ExprKind::IsNull { .. } | ExprKind::InList { .. } | ExprKind::InSet { .. } => CMP,
        // A negative literal reads as `-5`; give it unary level so `(-5).x`-like contexts
        // (none today) would still be safe.
        ExprKind::Literal(Literal::Int(i)) if *i < 0 => NEG,
        ExprKind::Literal(Literal::Float(f)) if f.is_sign_negative() => NEG,
        _ => PRIMARY,
    }
}

fn print(out: &mut String, e: &Expr, min_level: u8) {
    let own = level(e);
    let parens = own < min_level;
    if parens {
        out.push('(');
    }
    match &e.kind {
        ExprKind::Literal(l) => print_literal(out, l),
        ExprKind::Variable(v) => print_variable(out, v),
        ExprKind::Placeholder(k) => {
            let _ = write!(out, "${k}");
        }
        ExprKind::Unary {
            op: UnaryOp::Not,
            expr,
        } => {
            out.push_str("NOT ");
            print(out, expr, NOT);
        }
        ExprKind::Unary {
            op: UnaryOp::Neg,
            expr,
        } => {
            out.push('-');
            let mut inner = String::new();
            let is_number = matches!(
                expr.kind,
                ExprKind::Literal(Literal::Int(_) | Literal::Float(_))
            );
            // `-5` would parse back as the literal -5, and `--x` as a comment.
            print(&mut inner, expr, if is_number { PRIMARY + 1 } else { NEG });
            if inner.starts_with('-') {
                out.push(' ');
            }
            out.push_str(&inner);
        }
        ExprKind::Binary { op, left, right } => {
            let (l, r) = if op.is_comparison() {
                (ADD, ADD)
            } else {
                (own, own + 1)
            };
            print(out, left, l);
            let _ = write!(out, " {} ", op.as_str());
            print(out, right, r);
        }
        ExprKind::IsNull { expr, negated } => {
            print(out, expr, ADD);
            out.push_str(if *negated { " IS NOT NULL" } else { " IS NULL" });
        }
        ExprKind::InList {
            expr,
            list,
            negated,
        } => {
            print(out, expr, ADD);
            out.push_str(if *negated { " NOT IN (" } else { " IN (" });
            for (i, item) in list.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                print(out, item, 0);
            }
            out.push(')');
        }
        ExprKind::InSet { expr, set, negated } => {
            print(out, expr, ADD);
            out.push_str(if *negated { " NOT IN " } else { " IN " });
            // The parser never builds a set operand that prints with a leading '(' (that
            // would read back as an IN list), so ADD level is enough here.
            print(out, set, ADD);
        }
        ExprKind::Call { name, args } => {
            out.push_str(&name.name);
            out.push('(');
            match args {
                CallArgs::Star => out.push('*'),
                CallArgs::List(args) => {
                    for (i, a) in args.iter().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        print(out, a, 0);
                    }
                }
            }
            out.push(')');
        }
        ExprKind::Link { expr, link } => {
            out.push('(');
            print(out, expr, 0);
            let _ = write!(out, ") LINK {}", link.as_str());
        }
    }
    if parens {
        out.push(')');
    }
}

fn print_literal(out: &mut String, l: &Literal) {
    match l {
        Literal::Int(i) => {
            let _ = write!(out, "{i}");
        }
        // `{:?}` is the shortest text that reads back as the same f64 and always has a `.` or
        // an exponent, which is exactly the RQL float syntax.
        Literal::Float(f) => {
            let _ = write!(out, "{f:?}");
        }
        Literal::Str(s) => print_string(out, s),
        Literal::Bool(true) => out.push_str("TRUE"),
        Literal::Bool(false) => out.push_str("FALSE"),
        Literal::Null => out.push_str("NULL"),
    }
}

fn print_string(out: &mut String, s: &str) {
    out.push('\'');
    out.push_str(&s.replace('\'', "''"));
    out.push('\'');
}

fn print_node_id(out: &mut String, id: &str) {
    if crate::is_plain_identifier(id) {
        out.push_str(id);
    } else {
        print_string(out, id);
    }
}

fn print_variable(out: &mut String, v: &Variable) {
    if let Some(log) = &v.log {
        out.push_str(&log.name);
        out.push('.');
    }
    out.push_str(&v.key.name);
    for f in &v.fields {
        out.push('.');
        out.push_str(&f.name);
    }
    if let Some(n) = &v.node {
        out.push('[');
        print_node_id(out, &n.name);
        out.push(']');
    }
}

fn print_time(out: &mut String, t: &TimeExpr) {
    match &t.kind {
        TimeExprKind::Millis(ms) => {
            let _ = write!(out, "{ms}");
        }
        TimeExprKind::Timestamp { text, .. } => print_string(out, text),
        TimeExprKind::Hlc { physical, logical } => {
            let _ = write!(out, "HLC({physical}, {logical})");
        }
        TimeExprKind::Now { minus: None } => out.push_str("NOW"),
        TimeExprKind::Now { minus: Some(ms) } => {
            let _ = write!(out, "NOW - {ms}");
        }
    }
}
