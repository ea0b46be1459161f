//! The RQL abstract syntax tree (SPEC §2).
//!
//! Plain data: every node carries the byte [`Span`] of the source it came from. Equality
//! (`PartialEq`) deliberately ignores spans, so a statement and its printed-and-reparsed form
//! compare equal; that is the printer's round-trip contract. Alternative spellings (`==`/`=`,
//! `<>`/`!=`, `&&`/`AND`, `!`/`NOT`, quoted or bare node ids) are folded into one form here,
//! and plain parentheses leave no node: the tree's shape is the grouping. A `-` written
//! directly before a number is part of the literal (`-5` is `Literal::Int(-5)`).

use std::fmt;

/// Half-open byte range `start..end` into the source text.
#[derive(Clone, Copy, Default, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }

    /// The text this span covers, or "" if it does not lie within `src` on char boundaries.
    pub fn text(self, src: &str) -> &str {
        src.get(self.start..self.end).unwrap_or("")
    }
}

/// Spans never take part in AST equality (see the module docs).
impl PartialEq for Span {
    fn eq(&self, _: &Span) -> bool {
        true
    }
}

impl fmt::Debug for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

/// An identifier as written (case preserved; identifiers are case-sensitive).
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// A node id in `AT NODES` or a `['n1']` selector: written bare (`n1`) or quoted (`'10.0.0.7:2181'`).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeId {
    pub name: String,
    pub span: Span,
}

/// One statement: a query, possibly under `EXPLAIN`.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    pub explain: bool,
    pub query: Query,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub select: SelectList,
    pub from: Vec<Ident>,
    pub when: Option<Expr>,
    pub at_nodes: Option<Vec<NodeId>>,
    pub time: Option<TimeRange>,
    /// `None` when the query does not say; the default is `EMIT CUTS`.
    pub emit: Option<Emit>,
    pub limit: Option<Limit>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SelectList {
    /// `SELECT *`
    Star(Span),
    Items(Vec<SelectItem>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum SelectItem {
    /// `inv.a`, `a`, `inv.st.f`, `inv.a['n1']`
    Variable(Variable),
    /// `inv.*`
    LogStar { log: Ident, span: Span },
    /// `COUNT(*)`, `SUM(inv.a) AS total`. `call` is always an [`ExprKind::Call`]; whether its
    /// name is an aggregate is checked by the planner.
    Aggregate {
        call: Expr,
        alias: Option<Ident>,
        span: Span,
    },
}

impl SelectItem {
    pub fn span(&self) -> Span {
        match self {
            SelectItem::Variable(v) => v.span,
            SelectItem::LogStar { span, .. } | SelectItem::Aggregate { span, .. } => *span,
        }
    }
}

/// `[log '.'] key {'.' field} ['[' node ']']`. With one identifier, `log` is `None` (an
/// unqualified key); with more, the first is always the log (SPEC §6).
#[derive(Clone, Debug, PartialEq)]
pub struct Variable {
    pub log: Option<Ident>,
    pub key: Ident,
    pub fields: Vec<Ident>,
    pub node: Option<NodeId>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Literal(Literal),
    /// Boxed: a variable is the largest leaf and would make every node pay for it.
    Variable(Box<Variable>),
    /// `$k`; the grammar allows it only as the argument of `NODE`.
    Placeholder(u32),
    Unary {
        op: UnaryOp,
        expr: Box<Expr>,
    },
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    /// `x [NOT] IN (e1, e2, ...)`: SQL IN over a list (a one-element list too).
    InList {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    /// `x [NOT] IN s`: membership in a set value.
    InSet {
        expr: Box<Expr>,
        set: Box<Expr>,
        negated: bool,
    },
    Call {
        name: Ident,
        args: CallArgs,
    },
    /// `( e ) LINK SAME_NODE | EACH_NODE`; `expr` is the expression inside the parentheses.
    Link {
        expr: Box<Expr>,
        link: LinkKind,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum CallArgs {
    /// `f(*)`, meaningful only for `COUNT`.
    Star,
    List(Vec<Expr>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Null,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Neg,
    Not,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Or,
    And,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

impl BinaryOp {
    /// The canonical spelling the printer uses.
    pub fn as_str(self) -> &'static str {
        match self {
            BinaryOp::Or => "OR",
            BinaryOp::And => "AND",
            BinaryOp::Eq => "=",
            BinaryOp::NotEq => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::LtEq => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::GtEq => ">=",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
        }
    }

    /// Binding strength; higher binds tighter. Comparisons share one level and do not chain.
    pub fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => 1,
            BinaryOp::And => 2,
            BinaryOp::Eq
            | BinaryOp::NotEq
            | BinaryOp::Lt
            | BinaryOp::LtEq
            | BinaryOp::Gt
            | BinaryOp::GtEq => 4,
            BinaryOp::Add | BinaryOp::Sub => 5,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => 6,
        }
    }

    pub fn is_comparison(self) -> bool {
        self.precedence() == 4
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkKind {
    SameNode,
    EachNode,
}

impl LinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::SameNode => "SAME_NODE",
            LinkKind::EachNode => "EACH_NODE",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum TimeRange {
    /// `ON TIME t` (a snapshot) or `ON TIME t TO u`.
    OnTime {
        from: TimeExpr,
        to: Option<TimeExpr>,
    },
    /// `SINCE t` (live sources only).
    Since(TimeExpr),
}

#[derive(Clone, Debug, PartialEq)]
pub struct TimeExpr {
    pub kind: TimeExprKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TimeExprKind {
    /// Physical milliseconds since the Unix epoch, already range-checked (0..2^48-1).
    Millis(u64),
    /// An RFC 3339 string as written, with its value in ms (fractions beyond ms truncated).
    Timestamp { text: String, millis: u64 },
    /// `HLC(l, c)`, range-checked.
    Hlc { physical: u64, logical: u64 },
    /// `NOW` or `NOW - ms`.
    Now { minus: Option<u64> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    Cuts,
    Changes,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Limit {
    pub count: u64,
    pub span: Span,
}

/// Largest physical time an HLC can carry (SPEC §1.2).
pub const MAX_PHYSICAL_MS: u64 = (1 << 48) - 1;
/// Largest HLC logical counter.
pub const MAX_LOGICAL: u64 = 65535;

impl Expr {
    /// Visit this expression and every sub-expression, parents first.
    pub fn walk<'a>(&'a self, f: &mut dyn FnMut(&'a Expr)) {
        let mut stack = vec![self];
        while let Some(e) = stack.pop() {
            f(e);
            match &e.kind {
                ExprKind::Literal(_) | ExprKind::Variable(_) | ExprKind::Placeholder(_) => {}
                ExprKind::Unary { expr, .. }
                | ExprKind::IsNull { expr, .. }
                | ExprKind::Link { expr, .. } => stack.push(expr),
                ExprKind::Binary { left, right, .. } => {
                    stack.push(right);
                    stack.push(left);
                }
                ExprKind::InList { expr, list, .. } => {
                    stack.extend(list.iter().rev());
                    stack.push(expr);
                }
                ExprKind::InSet { expr, set, .. } => {
                    stack.push(set);
                    stack.push(expr);
                }
                ExprKind::Call { args, .. } => {
                    if let CallArgs::List(args) = args {
                        stack.extend(args.iter().rev());
                    }
                }
            }
        }
    }
}
