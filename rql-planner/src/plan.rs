//! The resolved plan: what the executor runs and EXPLAIN prints.
//!
//! Everything here is plain data with names already resolved: variables are `log.key` with a
//! known binding site, functions are enums, placeholders are numbered, LINK groups and the
//! outer binding units are listed, times are HLC bounds. No AST types leak past this point
//! except spans, kept so runtime errors can still point at the query.

use std::collections::BTreeSet;

use log_server::{Hlc, Value};
use rql_parser::{Diagnostic, Emit, LinkKind, Span};

use crate::ops::{AggFn, ArithOp, CmpOp, ScalarFn};

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The text the spans refer to (a whole file when the statement came from one).
    pub source: String,
    /// This statement within `source`.
    pub span: Span,
    pub explain: bool,
    /// FROM logs, duplicates collapsed, in FROM order.
    pub logs: Vec<String>,
    pub outputs: Vec<OutputItem>,
    pub when: Option<PExpr>,
    /// `$1..$n`: index `k - 1` describes placeholder `$k`.
    pub placeholders: Vec<Placeholder>,
    pub groups: Vec<Group>,
    /// The outer binding: free placeholders and SAME_NODE groups, ordered by their smallest
    /// placeholder number (so enumerating units lexicographically is enumerating placeholder
    /// vectors lexicographically: the witness order of SPEC §4.3).
    pub units: Vec<BindingUnit>,
    /// Aggregate calls of WHEN and SELECT, each computed once per evaluated cut.
    pub aggregates: Vec<AggCall>,
    /// What makes a step a candidate (SPEC §4.1).
    pub referenced: Referenced,
    pub at_nodes: Option<BTreeSet<String>>,
    pub time: TimeSpec,
    pub emit: Emit,
    pub limit: Option<u64>,
    /// Non-fatal findings, e.g. a key never seen in the source (with a did-you-mean).
    pub notes: Vec<Diagnostic>,
}

/// A variable name `log.key`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VarRef {
    pub log: String,
    pub key: String,
}

impl VarRef {
    pub fn name(&self) -> String {
        format!("{}.{}", self.log, self.key)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum OutputItem {
    /// `log.key[.f...]['n']`: node → value over P(t) (or just node n with a selector).
    Variable {
        name: String,
        var: VarRef,
        path: Vec<String>,
        node: Option<String>,
    },
    /// `log.*` (`logs` has one entry) or `*` (every FROM log): every variable of those logs
    /// present on some node of P(t), sorted by name.
    AllOf { logs: Vec<String> },
    /// An aggregate (index into `Plan::aggregates`) under its output name.
    Aggregate { name: String, index: usize },
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Referenced {
    /// Variables named anywhere in the query (selectors and struct fields count as the
    /// variable itself).
    pub vars: BTreeSet<VarRef>,
    /// Logs referenced as a whole by `log.*` or `*`.
    pub whole_logs: BTreeSet<String>,
}

impl Referenced {
    pub fn contains(&self, log: &str, key: &str) -> bool {
        self.whole_logs.contains(log)
            || self.vars.contains(&VarRef {
                log: log.to_string(),
                key: key.to_string(),
            })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Placeholder {
    /// 1-based number.
    pub number: u32,
    pub var: VarRef,
    pub path: Vec<String>,
    /// The LINK group the occurrence lies in, if any.
    pub group: Option<usize>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub kind: LinkKind,
    /// Placeholder numbers inside the group, ascending.
    pub placeholders: Vec<u32>,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindingUnit {
    /// A placeholder outside any LINK group.
    Free(u32),
    /// A SAME_NODE group (index into `Plan::groups`).
    SameNode(usize),
}

#[derive(Clone, Debug, PartialEq)]
pub struct AggCall {
    pub func: AggFn,
    /// `None` for `COUNT(*)`.
    pub arg: Option<PExpr>,
    pub span: Span,
}

/// Which cuts a query evaluates, with times resolved to HLC bounds (SPEC §4.2, §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSpec {
    /// Every candidate.
    All,
    /// Candidates with `from <= hlc <= to` (an empty range if `from > to`).
    Range { from: Hlc, to: Hlc },
    /// Exactly one cut, C(at), evaluated whether or not a step happened at `at`.
    Snapshot { at: Hlc },
    /// Live sources: retained history from `from`, then live.
    Since { from: Hlc },
}

/// A resolved expression.
#[derive(Clone, Debug, PartialEq)]
pub struct PExpr {
    pub kind: PExprKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum PExprKind {
    /// A constant; `None` is NULL.
    Const(Option<Value>),
    Var {
        var: VarRef,
        path: Vec<String>,
        site: VarSite,
    },
    /// `NODE($k)`.
    NodeOf(u32),
    Neg(Box<PExpr>),
    Not(Box<PExpr>),
    Arith(ArithOp, Box<PExpr>, Box<PExpr>),
    Cmp(CmpOp, Box<PExpr>, Box<PExpr>),
    And(Box<PExpr>, Box<PExpr>),
    Or(Box<PExpr>, Box<PExpr>),
    IsNull {
        expr: Box<PExpr>,
        negated: bool,
    },
    InList {
        expr: Box<PExpr>,
        list: Vec<PExpr>,
        negated: bool,
    },
    InSet {
        expr: Box<PExpr>,
        set: Box<PExpr>,
        negated: bool,
    },
    Scalar(ScalarFn, Vec<PExpr>),
    /// Index into `Plan::aggregates`.
    Aggregate(usize),
    Link {
        kind: LinkKind,
        group: usize,
        expr: Box<PExpr>,
    },
}

/// Where an occurrence of a variable takes its node from.
#[derive(Clone, Debug, PartialEq)]
pub enum VarSite {
    /// A placeholder `$k` (bound by the outer binding, its SAME_NODE group, or the node an
    /// EACH_NODE group is iterating over).
    Placeholder(u32),
    /// `log.key['n']`: always node n.
    Fixed(String),
    /// Inside an aggregate's argument: the node the aggregate is iterating over.
    AggregateNode,
}

impl PExpr {
    /// Visit this expression and its sub-expressions, parents first.
    pub fn walk<'a>(&'a self, f: &mut dyn FnMut(&'a PExpr)) {
        let mut stack = vec![self];
        while let Some(e) = stack.pop() {
            f(e);
            match &e.kind {
                PExprKind::Const(_)
                | PExprKind::Var { .. }
                | PExprKind::NodeOf(_)
                | PExprKind::Aggregate(_) => {}
                PExprKind::Neg(x)
                | PExprKind::Not(x)
                | PExprKind::IsNull { expr: x, .. }
                | PExprKind::Link { expr: x, .. } => stack.push(x),
                PExprKind::Arith(_, l, r)
                | PExprKind::Cmp(_, l, r)
                | PExprKind::And(l, r)
                | PExprKind::Or(l, r) => {
                    stack.push(r);
                    stack.push(l);
                }
                PExprKind::InList { expr, list, .. } => {
                    stack.extend(list.iter().rev());
                    stack.push(expr);
                }
                PExprKind::InSet { expr, set, .. } => {
                    stack.push(set);
                    stack.push(expr);
                }
                PExprKind::Scalar(_, args) => stack.extend(args.iter().rev()),
            }
        }
    }
}

impl Plan {
    /// The placeholder numbers listed in a witness: those of the outer binding, ascending.
    pub fn witness_placeholders(&self) -> Vec<u32> {
        self.placeholders
            .iter()
            .filter(|p| match p.group {
                None => true,
                Some(g) => self.groups[g].kind == LinkKind::SameNode,
            })
            .map(|p| p.number)
            .collect()
    }
}
