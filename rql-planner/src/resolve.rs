//! AST → [`Plan`]: name resolution, placeholder numbering, static checks and constant folding.
//!
//! One pass over the statement builds the resolved expressions and records, as it goes, the
//! placeholders, LINK groups and aggregates; checks that need the whole picture (a `NODE($k)`
//! whose `$k` comes later in the text) run once the pass is over.

use std::collections::{BTreeMap, BTreeSet};

use log_server::{Hlc, Value};
use rql_parser::ast::{self, CallArgs, ExprKind, Literal, SelectItem, SelectList, TimeExprKind};
use rql_parser::{Diagnostic, Emit, ErrorKind, LinkKind, Span, Statement};

use crate::ops::{self, AggFn, ArithOp, Arity, CmpOp, ScalarFn, Warnings};
use crate::plan::*;

/// What the planner knows about the source it plans for.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// Variables seen in the source: log → keys. Used for did-you-mean notes only: a key
    /// that never appears is not an error (it reads as NULL, and a live source may send it
    /// later).
    pub vars: BTreeMap<String, BTreeSet<String>>,
    /// Physical ms that `NOW` means: a trace's greatest HLC, or a live source's clock.
    pub now_ms: u64,
    /// Live sources accept `SINCE`; trace files do not.
    pub live: bool,
}

/// Plan one parsed statement. `source` is the text the statement's spans point into.
pub fn plan_statement(
    stmt: &Statement,
    source: &str,
    catalog: &Catalog,
) -> Result<Plan, Diagnostic> {
    let q = &stmt.query;
    let mut logs: Vec<String> = Vec::new();
    for l in &q.from {
        if !logs.contains(&l.name) {
            logs.push(l.name.clone());
        }
    }
    let mut r = Resolver {
        src: source,
        catalog,
        logs,
        placeholders: Vec::new(),
        groups: Vec::new(),
        aggregates: Vec::new(),
        referenced: Referenced::default(),
        notes: Vec::new(),
        noted: BTreeSet::new(),
        in_when: false,
        aggregate: None,
        group: None,
        node_refs: Vec::new(),
    };
    // SELECT first: errors are reported in the order they appear in the text.
    let outputs = r.select(&q.select)?;
    let when = match &q.when {
        Some(e) => {
            r.in_when = true;
            let resolved = r.expr(e)?;
            r.in_when = false;
            r.check_node_refs()?;
            Some(fold(resolved))
        }
        None => None,
    };
    for agg in &mut r.aggregates {
        if let Some(arg) = agg.arg.take() {
            agg.arg = Some(fold(arg));
        }
    }
    let time = match &q.time {
        None => TimeSpec::All,
        Some(ast::TimeRange::OnTime { from, to: None }) => TimeSpec::Snapshot {
            at: r.time(from, Bound::Upper)?,
        },
        Some(ast::TimeRange::OnTime { from, to: Some(to) }) => TimeSpec::Range {
            from: r.time(from, Bound::Lower)?,
            to: r.time(to, Bound::Upper)?,
        },
        Some(ast::TimeRange::Since(t)) => {
            if !catalog.live {
                return Err(Diagnostic::new(
                    ErrorKind::SinceOnTraceFile,
                    t.span,
                    "SINCE needs a live source (a log server); a trace file has no live tail",
                )
                .with_hint("use ON TIME t TO ... to replay part of a trace file"));
            }
            TimeSpec::Since {
                from: r.time(t, Bound::Lower)?,
            }
        }
    };
    let units = outer_units(&r.placeholders, &r.groups);
    Ok(Plan {
        source: source.to_string(),
        span: stmt.span,
        explain: stmt.explain,
        logs: r.logs,
        outputs,
        when,
        placeholders: r.placeholders,
        groups: r.groups,
        units,
        aggregates: r.aggregates,
        referenced: r.referenced,
        at_nodes: q
            .at_nodes
            .as_ref()
            .map(|ns| ns.iter().map(|n| n.name.clone()).collect()),
        time,
        emit: q.emit.unwrap_or(Emit::Cuts),
        limit: q.limit.as_ref().map(|l| l.count),
        notes: r.notes,
    })
}

fn outer_units(placeholders: &[Placeholder], groups: &[Group]) -> Vec<BindingUnit> {
    let mut units = Vec::new();
    for p in placeholders {
        match p.group {
            None => units.push(BindingUnit::Free(p.number)),
            Some(g) if groups[g].kind == LinkKind::SameNode => {
                if !units.contains(&BindingUnit::SameNode(g)) {
                    units.push(BindingUnit::SameNode(g));
                }
            }
            Some(_) => {}
        }
    }
    units
}

#[derive(Clone, Copy)]
enum Bound {
    Lower,
    Upper,
}

struct NodeRef {
    number: u32,
    group: Option<usize>,
    span: Span,
}

struct Resolver<'a> {
    src: &'a str,
    catalog: &'a Catalog,
    logs: Vec<String>,
    placeholders: Vec<Placeholder>,
    groups: Vec<Group>,
    aggregates: Vec<AggCall>,
    referenced: Referenced,
    notes: Vec<Diagnostic>,
    noted: BTreeSet<VarRef>,
    in_when: bool,
    /// The span of the aggregate call being resolved, if inside one.
    aggregate: Option<Span>,
    /// The LINK group being resolved, if inside one.
    group: Option<usize>,
    node_refs: Vec<NodeRef>,
}

impl<'a> Resolver<'a> {
    fn text(&self, span: Span) -> &'a str {
        span.text(self.src).trim()
    }

    fn log(&self, ident: &ast::Ident) -> Result<String, Diagnostic> {
        if self.logs.contains(&ident.name) {
            return Ok(ident.name.clone());
        }
        let d = Diagnostic::new(
            ErrorKind::UnknownLog,
            ident.span,
            format!("unknown log {} (not in FROM)", ident.name),
        );
        Err(
            match closest(&ident.name, self.logs.iter().map(String::as_str)) {
                Some(s) => d.with_hint(format!("did you mean {s}?")),
                None => d.with_hint(format!(
                    "add it to FROM: FROM {}, {}",
                    self.logs.join(", "),
                    ident.name
                )),
            },
        )
    }

    /// Resolve the log and key of a variable and remember it as referenced.
    fn var_ref(&mut self, v: &ast::Variable) -> Result<VarRef, Diagnostic> {
        let log = match &v.log {
            Some(l) => self.log(l)?,
            None if self.logs.len() == 1 => self.logs[0].clone(),
            None => {
                return Err(Diagnostic::new(
                    ErrorKind::AmbiguousName,
                    v.key.span,
                    format!(
                        "ambiguous name {}: FROM lists several logs ({})",
                        v.key.name,
                        self.logs.join(", ")
                    ),
                )
                .with_hint(format!("qualify it, e.g. {}.{}", self.logs[0], v.key.name)))
            }
        };
        let var = VarRef {
            log,
            key: v.key.name.clone(),
        };
        self.note_unknown_key(&var, v.key.span);
        self.referenced.vars.insert(var.clone());
        Ok(var)
    }

    fn note_unknown_key(&mut self, var: &VarRef, span: Span) {
        if self.catalog.vars.is_empty() || !self.noted.insert(var.clone()) {
            return;
        }
        let known = self.catalog.vars.get(&var.log);
        if known.is_some_and(|keys| keys.contains(&var.key)) {
            return;
        }
        let mut d = Diagnostic::new(
            ErrorKind::UnknownVariable,
            span,
            format!(
                "{} never appears in the source; it reads as NULL",
                var.name()
            ),
        );
        if let Some(s) = known.and_then(|keys| closest(&var.key, keys.iter().map(String::as_str))) {
            d = d.with_hint(format!("did you mean {}.{s}?", var.log));
        }
        self.notes.push(d);
    }

    fn select(&mut self, select: &SelectList) -> Result<Vec<OutputItem>, Diagnostic> {
        let items = match select {
            SelectList::Star(_) => {
                self.referenced.whole_logs.extend(self.logs.iter().cloned());
                return Ok(vec![OutputItem::AllOf {
                    logs: self.logs.clone(),
                }]);
            }
            SelectList::Items(items) => items,
        };
        let mut out: Vec<(OutputItem, Option<Span>)> = Vec::new();
        let mut texts: Vec<&str> = Vec::new();
        for item in items {
            let text = self.text(item.span());
            if texts.contains(&text) {
                continue; // identical items print once, at the first position
            }
            texts.push(text);
            let (resolved, alias) = match item {
                SelectItem::LogStar { log, .. } => {
                    let log = self.log(log)?;
                    self.referenced.whole_logs.insert(log.clone());
                    (OutputItem::AllOf { logs: vec![log] }, None)
                }
                SelectItem::Variable(v) => {
                    let var = self.var_ref(v)?;
                    (
                        OutputItem::Variable {
                            name: text.to_string(),
                            var,
                            path: v.fields.iter().map(|f| f.name.clone()).collect(),
                            node: v.node.as_ref().map(|n| n.name.clone()),
                        },
                        None,
                    )
                }
                SelectItem::Aggregate { call, alias, .. } => {
                    let index = match self.call(call)?.kind {
                        PExprKind::Aggregate(i) => i,
                        _ => return Err(not_an_aggregate(call, self.src)),
                    };
                    let name = alias
                        .as_ref()
                        .map_or_else(|| self.text(call.span).to_string(), |a| a.name.clone());
                    (
                        OutputItem::Aggregate { name, index },
                        alias.as_ref().map(|a| a.span),
                    )
                }
            };
            out.push((resolved, alias));
        }
        // An alias may not take another item's output name.
        for (i, (item, alias)) in out.iter().enumerate() {
            let Some(alias_span) = alias else { continue };
            let name = output_name(item);
            if out
                .iter()
                .enumerate()
                .any(|(j, (other, _))| j != i && output_name(other) == name)
            {
                return Err(Diagnostic::new(
                    ErrorKind::DuplicateOutputName,
                    *alias_span,
                    format!("alias {name} collides with another SELECT item's output name"),
                )
                .with_hint("choose a different alias"));
            }
        }
        Ok(out.into_iter().map(|(item, _)| item).collect())
    }

    fn expr(&mut self, e: &ast::Expr) -> Result<PExpr, Diagnostic> {
        let b = Box::new;
        let kind = match &e.kind {
            ExprKind::Literal(l) => PExprKind::Const(literal(l)),
            ExprKind::Variable(v) => {
                let var = self.var_ref(v)?;
                let path = v.fields.iter().map(|f| f.name.clone()).collect();
                let site = if let Some(n) = &v.node {
                    VarSite::Fixed(n.name.clone())
                } else if self.aggregate.is_some() {
                    VarSite::AggregateNode
                } else {
                    let number = self.placeholders.len() as u32 + 1;
                    self.placeholders.push(Placeholder {
                        number,
                        var: var.clone(),
                        path: v.fields.iter().map(|f| f.name.clone()).collect(),
                        group: self.group,
                        span: v.span,
                    });
                    if let Some(g) = self.group {
                        self.groups[g].placeholders.push(number);
                    }
                    VarSite::Placeholder(number)
                };
                PExprKind::Var { var, path, site }
            }
            ExprKind::Placeholder(k) => {
                // The parser only allows this inside NODE(...), which `call` handles.
                return Err(Diagnostic::new(
                    ErrorKind::PlaceholderOutsideNode,
                    e.span,
                    format!("placeholder ${k} is only valid as the argument of NODE"),
                )
                .with_hint(format!("write NODE(${k})")));
            }
            ExprKind::Unary { op, expr } => {
                let x = b(self.expr(expr)?);
                match op {
                    ast::UnaryOp::Neg => PExprKind::Neg(x),
                    ast::UnaryOp::Not => PExprKind::Not(x),
                }
            }
            ExprKind::Binary { op, left, right } => {
                let l = b(self.expr(left)?);
                let r = b(self.expr(right)?);
                use ast::BinaryOp as B;
                match op {
                    B::Or => PExprKind::Or(l, r),
                    B::And => PExprKind::And(l, r),
                    B::Eq => PExprKind::Cmp(CmpOp::Eq, l, r),
                    B::NotEq => PExprKind::Cmp(CmpOp::NotEq, l, r),
                    B::Lt => PExprKind::Cmp(CmpOp::Lt, l, r),
                    B::LtEq => PExprKind::Cmp(CmpOp::LtEq, l, r),
                    B::Gt => PExprKind::Cmp(CmpOp::Gt, l, r),
                    B::GtEq => PExprKind::Cmp(CmpOp::GtEq, l, r),
                    B::Add => PExprKind::Arith(ArithOp::Add, l, r),
                    B::Sub => PExprKind::Arith(ArithOp::Sub, l, r),
                    B::Mul => PExprKind::Arith(ArithOp::Mul, l, r),
                    B::Div => PExprKind::Arith(ArithOp::Div, l, r),
                    B::Mod => PExprKind::Arith(ArithOp::Mod, l, r),
                }
            }
            ExprKind::IsNull { expr, negated } => PExprKind::IsNull {
                expr: b(self.expr(expr)?),
                negated: *negated,
            },
            ExprKind::InList {
                expr,
                list,
                negated,
            } => {
                let x = b(self.expr(expr)?);
                let list = list
                    .iter()
                    .map(|i| self.expr(i))
                    .collect::<Result<_, _>>()?;
                PExprKind::InList {
                    expr: x,
                    list,
                    negated: *negated,
                }
            }
            ExprKind::InSet { expr, set, negated } => PExprKind::InSet {
                expr: b(self.expr(expr)?),
                set: b(self.expr(set)?),
                negated: *negated,
            },
            ExprKind::Call { .. } => return self.call(e),
            ExprKind::Link { expr, link } => return self.link(e.span, expr, *link),
        };
        Ok(PExpr { kind, span: e.span })
    }

    fn link(&mut self, span: Span, inner: &ast::Expr, kind: LinkKind) -> Result<PExpr, Diagnostic> {
        if let Some(agg) = self.aggregate {
            return Err(Diagnostic::new(
                ErrorKind::LinkInAggregate,
                span,
                "LINK cannot be used inside an aggregate's argument",
            )
            .with_hint(format!(
                "the argument of {} is already evaluated once per node",
                self.text(agg)
            )));
        }
        let group = self.groups.len();
        self.groups.push(Group {
            kind,
            placeholders: Vec::new(),
            span,
        });
        let outer = self.group.replace(group);
        let resolved = self.expr(inner);
        self.group = outer;
        let resolved = resolved?;
        if kind == LinkKind::EachNode {
            if let Some(what) = certainly_not_boolean(&resolved, &self.aggregates) {
                return Err(Diagnostic::new(
                    ErrorKind::NotBoolean,
                    span,
                    format!("LINK EACH_NODE needs a boolean expression, this one is {what}"),
                )
                .with_hint("compare it with something, e.g. (inv.a > 0) LINK EACH_NODE"));
            }
        }
        Ok(PExpr {
            kind: PExprKind::Link {
                kind,
                group,
                expr: Box::new(resolved),
            },
            span,
        })
    }

    fn call(&mut self, e: &ast::Expr) -> Result<PExpr, Diagnostic> {
        let ExprKind::Call { name, args } = &e.kind else {
            return self.expr(e);
        };
        let upper = name.name.to_ascii_uppercase();
        if let Some(func) = AggFn::from_name(&upper) {
            return self.aggregate_call(e, func, args);
        }
        if upper == "NODE" {
            return self.node_call(e, args);
        }
        let Some(func) = ScalarFn::from_name(&upper) else {
            let d = Diagnostic::new(
                ErrorKind::UnknownFunction,
                name.span,
                format!("unknown function {}", name.name),
            );
            let names = ScalarFn::ALL
                .iter()
                .map(|f| f.name())
                .chain(AggFn::ALL.iter().map(|f| f.name()))
                .chain(["NODE"]);
            return Err(match closest(&upper, names) {
                Some(s) => d.with_hint(format!("did you mean {s}?")),
                None => d.with_hint("see the function list in the RQL reference"),
            });
        };
        let CallArgs::List(list) = args else {
            return Err(star_not_count(e, &name.name));
        };
        let ok = match func.arity() {
            Arity::Exact(n) => list.len() == n,
            Arity::AtLeast(n) => list.len() >= n,
        };
        if !ok {
            return Err(wrong_arity(e, func.name(), func.arity(), list.len()));
        }
        let args = list
            .iter()
            .map(|a| self.expr(a))
            .collect::<Result<_, _>>()?;
        Ok(PExpr {
            kind: PExprKind::Scalar(func, args),
            span: e.span,
        })
    }

    fn aggregate_call(
        &mut self,
        e: &ast::Expr,
        func: AggFn,
        args: &CallArgs,
    ) -> Result<PExpr, Diagnostic> {
        if self.aggregate.is_some() {
            return Err(Diagnostic::new(
                ErrorKind::NestedAggregate,
                e.span,
                "aggregate calls cannot be nested",
            )
            .with_hint(
                "an aggregate's argument is evaluated per node; aggregate the result once",
            ));
        }
        let arg = match args {
            CallArgs::Star if func == AggFn::Count => None,
            CallArgs::Star => return Err(star_not_count(e, func.name())),
            CallArgs::List(list) if list.len() == 1 => {
                self.aggregate = Some(e.span);
                let arg = self.expr(&list[0]);
                self.aggregate = None;
                Some(arg?)
            }
            CallArgs::List(list) => {
                return Err(wrong_arity(e, func.name(), Arity::Exact(1), list.len()))
            }
        };
        self.aggregates.push(AggCall {
            func,
            arg,
            span: e.span,
        });
        Ok(PExpr {
            kind: PExprKind::Aggregate(self.aggregates.len() - 1),
            span: e.span,
        })
    }

    fn node_call(&mut self, e: &ast::Expr, args: &CallArgs) -> Result<PExpr, Diagnostic> {
        if let Some(agg) = self.aggregate {
            return Err(Diagnostic::new(
                ErrorKind::NodeOutsideWhen,
                e.span,
                "NODE($k) cannot be used inside an aggregate's argument",
            )
            .with_hint(format!(
                "the argument of {} is evaluated once per node of the cut; it has no placeholder binding",
                self.text(agg)
            )));
        }
        if !self.in_when {
            return Err(Diagnostic::new(
                ErrorKind::NodeOutsideWhen,
                e.span,
                "NODE($k) is only valid in WHEN",
            )
            .with_hint(
                "the witness of each emitted cut already names the node of every placeholder",
            ));
        }
        let number = match args {
            CallArgs::List(list) if list.len() == 1 => match list[0].kind {
                ExprKind::Placeholder(k) => k,
                _ => return Err(node_needs_placeholder(e)),
            },
            CallArgs::List(list) => {
                return Err(wrong_arity(e, "NODE", Arity::Exact(1), list.len()))
            }
            CallArgs::Star => return Err(node_needs_placeholder(e)),
        };
        let span = match args {
            CallArgs::List(list) => list[0].span,
            CallArgs::Star => e.span,
        };
        self.node_refs.push(NodeRef {
            number,
            group: self.group,
            span,
        });
        Ok(PExpr {
            kind: PExprKind::NodeOf(number),
            span: e.span,
        })
    }

    /// `NODE($k)` checks that need every placeholder numbered.
    fn check_node_refs(&self) -> Result<(), Diagnostic> {
        let count = self.placeholders.len();
        for r in &self.node_refs {
            let k = r.number;
            if k == 0 || k as usize > count {
                let has = match count {
                    1 => "1 placeholder".to_string(),
                    n => format!("{n} placeholders"),
                };
                return Err(Diagnostic::new(
                    ErrorKind::PlaceholderOutOfRange,
                    r.span,
                    format!("NODE(${k}): there is no placeholder ${k} (WHEN has {has})"),
                )
                .with_hint(
                    "placeholders number WHEN's variables left to right, from $1; \
                     rql explain shows the numbering",
                ));
            }
            let p = &self.placeholders[k as usize - 1];
            if let Some(g) = p.group {
                if self.groups[g].kind == LinkKind::EachNode && r.group != Some(g) {
                    return Err(Diagnostic::new(
                        ErrorKind::PlaceholderInEachNode,
                        r.span,
                        format!(
                            "NODE(${k}): ${k} lies inside a LINK EACH_NODE group; \
                             NODE(${k}) must be inside the same group"
                        ),
                    )
                    .with_hint(
                        "an EACH_NODE group ranges over every node, so its placeholders \
                         have no single node outside it",
                    ));
                }
            }
        }
        Ok(())
    }

    fn time(&self, t: &ast::TimeExpr, bound: Bound) -> Result<Hlc, Diagnostic> {
        let ms = match &t.kind {
            TimeExprKind::Hlc { physical, logical } => {
                return Hlc::new(*physical, *logical)
                    .map_err(|e| Diagnostic::new(ErrorKind::InvalidTime, t.span, e.to_string()));
            }
            TimeExprKind::Millis(ms) => *ms,
            TimeExprKind::Timestamp { millis, .. } => *millis,
            TimeExprKind::Now { minus } => {
                let minus = minus.unwrap_or(0);
                self.catalog.now_ms.checked_sub(minus).ok_or_else(|| {
                    Diagnostic::new(
                        ErrorKind::InvalidTime,
                        t.span,
                        format!(
                            "NOW - {minus} is before the Unix epoch (NOW is {} ms)",
                            self.catalog.now_ms
                        ),
                    )
                })?
            }
        };
        let logical = match bound {
            Bound::Lower => 0,
            Bound::Upper => Hlc::MAX_LOGICAL,
        };
        Hlc::new(ms, logical)
            .map_err(|e| Diagnostic::new(ErrorKind::InvalidTime, t.span, e.to_string()))
    }
}

fn output_name(item: &OutputItem) -> &str {
    match item {
        OutputItem::Variable { name, .. } | OutputItem::Aggregate { name, .. } => name,
        OutputItem::AllOf { .. } => "",
    }
}

fn literal(l: &Literal) -> Option<Value> {
    match l {
        Literal::Int(i) => Some(Value::Int(*i)),
        Literal::Float(f) => Value::float(*f),
        Literal::Str(s) => Some(Value::Str(s.clone())),
        Literal::Bool(b) => Some(Value::Bool(*b)),
        Literal::Null => None,
    }
}

/// What an EACH_NODE body certainly is when it is certainly not boolean (SPEC §6).
fn certainly_not_boolean(e: &PExpr, aggregates: &[AggCall]) -> Option<&'static str> {
    match &e.kind {
        PExprKind::Neg(_) | PExprKind::Arith(..) => Some("numeric"),
        PExprKind::Const(Some(Value::Int(_) | Value::Float(_))) => Some("numeric"),
        PExprKind::Const(Some(Value::Str(_))) => Some("a string"),
        PExprKind::Scalar(f, _) if f.is_numeric() => Some("numeric"),
        PExprKind::Scalar(f, _) if f.is_string() => Some("a string"),
        PExprKind::NodeOf(_) => Some("a string (a node id)"),
        PExprKind::Aggregate(i) => match aggregates.get(*i).map(|a| a.func) {
            Some(AggFn::Count | AggFn::Sum | AggFn::Avg | AggFn::CountDistinct) => Some("numeric"),
            _ => None,
        },
        _ => None,
    }
}

fn not_an_aggregate(call: &ast::Expr, src: &str) -> Diagnostic {
    let name = match &call.kind {
        ExprKind::Call { name, .. } => name.name.clone(),
        _ => call.span.text(src).to_string(),
    };
    Diagnostic::new(
        ErrorKind::NotAnAggregate,
        call.span,
        format!("{name} is not an aggregate; SELECT lists variables, log.* and aggregates"),
    )
    .with_hint(
        "use COUNT, SUM, MIN, MAX, AVG or COUNT_DISTINCT here, or move the expression to WHEN",
    )
}

fn star_not_count(e: &ast::Expr, name: &str) -> Diagnostic {
    Diagnostic::new(
        ErrorKind::AggregateStar,
        e.span,
        format!("{name}(*) is not valid; only COUNT takes *"),
    )
    .with_hint("COUNT(*) counts the participating nodes; other functions need an argument")
}

fn wrong_arity(e: &ast::Expr, name: &str, arity: Arity, got: usize) -> Diagnostic {
    let expects = match arity {
        Arity::Exact(n) => n.to_string(),
        Arity::AtLeast(n) => format!("at least {n}"),
    };
    Diagnostic::new(
        ErrorKind::WrongArity,
        e.span,
        format!("wrong number of arguments for {name} (expects {expects}, got {got})"),
    )
}

fn node_needs_placeholder(e: &ast::Expr) -> Diagnostic {
    Diagnostic::new(ErrorKind::WrongArity, e.span, "NODE takes one placeholder")
        .with_hint("write NODE($1) for the node bound to WHEN's first variable")
}

/// The closest candidate by edit distance, if it is close enough to be a plausible typo.
fn closest<'c>(word: &str, candidates: impl Iterator<Item = &'c str>) -> Option<&'c str> {
    let limit = (word.chars().count() / 2).max(2);
    candidates
        .map(|c| {
            (
                strsim::levenshtein(&word.to_lowercase(), &c.to_lowercase()),
                c,
            )
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Constant folding: a sub-expression with no variable, placeholder, aggregate or EACH_NODE
/// group is evaluated once here instead of once per binding. `FALSE AND x` and `TRUE OR x`
/// fold too: their value does not depend on x.
pub fn fold(e: PExpr) -> PExpr {
    let span = e.span;
    let b = Box::new;
    let c = |v: Option<Value>| PExpr {
        kind: PExprKind::Const(v),
        span,
    };
    let konst = |x: &PExpr| match &x.kind {
        PExprKind::Const(v) => Some(v.clone()),
        _ => None,
    };
    let mut w = Warnings::default();
    match e.kind {
        PExprKind::Neg(x) => {
            let x = fold(*x);
            match konst(&x) {
                Some(v) => c(ops::neg(&v, &mut w)),
                None => PExpr {
                    kind: PExprKind::Neg(b(x)),
                    span,
                },
            }
        }
        PExprKind::Not(x) => {
            let x = fold(*x);
            match konst(&x) {
                Some(v) => c(ops::not3(ops::truth(&v, &mut w)).map(Value::Bool)),
                None => PExpr {
                    kind: PExprKind::Not(b(x)),
                    span,
                },
            }
        }
        PExprKind::Arith(op, l, r) => {
            let (l, r) = (fold(*l), fold(*r));
            match (konst(&l), konst(&r)) {
                (Some(a), Some(bv)) => c(ops::arith(op, &a, &bv, &mut w)),
                _ => PExpr {
                    kind: PExprKind::Arith(op, b(l), b(r)),
                    span,
                },
            }
        }
        PExprKind::Cmp(op, l, r) => {
            let (l, r) = (fold(*l), fold(*r));
            match (konst(&l), konst(&r)) {
                (Some(a), Some(bv)) => c(ops::compare(op, &a, &bv, &mut w)),
                _ => PExpr {
                    kind: PExprKind::Cmp(op, b(l), b(r)),
                    span,
                },
            }
        }
        PExprKind::And(l, r) => {
            let (l, r) = (fold(*l), fold(*r));
            let is_false = |x: &PExpr| matches!(x.kind, PExprKind::Const(Some(Value::Bool(false))));
            match (konst(&l), konst(&r)) {
                _ if is_false(&l) || is_false(&r) => c(Some(Value::Bool(false))),
                (Some(a), Some(bv)) => {
                    let t = ops::and3(ops::truth(&a, &mut w), ops::truth(&bv, &mut w));
                    c(t.map(Value::Bool))
                }
                _ => PExpr {
                    kind: PExprKind::And(b(l), b(r)),
                    span,
                },
            }
        }
        PExprKind::Or(l, r) => {
            let (l, r) = (fold(*l), fold(*r));
            let is_true = |x: &PExpr| matches!(x.kind, PExprKind::Const(Some(Value::Bool(true))));
            match (konst(&l), konst(&r)) {
                _ if is_true(&l) || is_true(&r) => c(Some(Value::Bool(true))),
                (Some(a), Some(bv)) => {
                    let t = ops::or3(ops::truth(&a, &mut w), ops::truth(&bv, &mut w));
                    c(t.map(Value::Bool))
                }
                _ => PExpr {
                    kind: PExprKind::Or(b(l), b(r)),
                    span,
                },
            }
        }
        PExprKind::IsNull { expr, negated } => {
            let x = fold(*expr);
            match konst(&x) {
                Some(v) => c(Some(Value::Bool(v.is_none() != negated))),
                None => PExpr {
                    kind: PExprKind::IsNull {
                        expr: b(x),
                        negated,
                    },
                    span,
                },
            }
        }
        PExprKind::InList {
            expr,
            list,
            negated,
        } => {
            let x = fold(*expr);
            let list: Vec<PExpr> = list.into_iter().map(fold).collect();
            let consts: Option<Vec<Option<Value>>> = list.iter().map(konst).collect();
            match (konst(&x), consts) {
                (Some(v), Some(items)) => {
                    let r = ops::in_list(&v, &items, &mut w);
                    c(if negated { negate(r, &mut w) } else { r })
                }
                _ => PExpr {
                    kind: PExprKind::InList {
                        expr: b(x),
                        list,
                        negated,
                    },
                    span,
                },
            }
        }
        PExprKind::InSet { expr, set, negated } => {
            let (x, s) = (fold(*expr), fold(*set));
            match (konst(&x), konst(&s)) {
                (Some(v), Some(sv)) => {
                    let r = ops::in_set(&v, &sv, &mut w);
                    c(if negated { negate(r, &mut w) } else { r })
                }
                _ => PExpr {
                    kind: PExprKind::InSet {
                        expr: b(x),
                        set: b(s),
                        negated,
                    },
                    span,
                },
            }
        }
        PExprKind::Scalar(f, args) => {
            let args: Vec<PExpr> = args.into_iter().map(fold).collect();
            let consts: Option<Vec<Option<Value>>> = args.iter().map(konst).collect();
            match consts {
                Some(vals) => c(ops::call_scalar(f, &vals, &mut w)),
                None => PExpr {
                    kind: PExprKind::Scalar(f, args),
                    span,
                },
            }
        }
        PExprKind::Link { kind, group, expr } => {
            let x = fold(*expr);
            // A SAME_NODE group of a constant is that constant; EACH_NODE still depends on
            // whether P(t) is empty.
            if kind == LinkKind::SameNode && konst(&x).is_some() {
                return x;
            }
            PExpr {
                kind: PExprKind::Link {
                    kind,
                    group,
                    expr: b(x),
                },
                span,
            }
        }
        other => PExpr { kind: other, span },
    }
}

/// `NOT` of an IN result (three-valued).
pub fn negate(v: Option<Value>, w: &mut Warnings) -> Option<Value> {
    ops::not3(ops::truth(&v, w)).map(Value::Bool)
}
