//! Tokens → AST: recursive descent over the token stream, one function per grammar rule of
//! SPEC §2.
//!
//! Why not combinators here too: at this level what matters is *which* rule failed and what it
//! expected, and a hard limit on nesting. An explicit descent gives both directly; nom does the
//! character-level work in `lexer`. The parser is linear in the input: every token is looked
//! at a bounded number of times, and recursion and tree height are capped by [`MAX_NESTING`]
//! so no input can overflow the stack here or in any later pass that walks the tree.

use crate::ast::*;
use crate::diagnostic::{Diagnostic, ErrorKind};
use crate::lexer::{tokenize, Tok, Token};

/// The deepest expression tree (and parser recursion) accepted. Deeper input is an error, not
/// a stack overflow, in the parser and in every recursive pass over the AST after it.
pub const MAX_NESTING: u32 = 128;

type PResult<T> = Result<T, Diagnostic>;

/// Below this much free stack a recursive step moves to a fresh segment of `STACK_GROW_BY`.
const STACK_RED_ZONE: usize = 64 * 1024;
const STACK_GROW_BY: usize = 1024 * 1024;

/// Parse a file or REPL buffer: statements separated by `;`. Each statement is parsed on its
/// own, so one bad statement does not hide errors in the others; the result is either every
/// statement or every error found. Empty statements (`;;`, a trailing `;`) are skipped.
pub fn parse_statements(src: &str) -> Result<Vec<Statement>, Vec<Diagnostic>> {
    let tokens = tokenize(src).map_err(|d| vec![d])?;
    let mut statements = Vec::new();
    let mut errors = Vec::new();
    for chunk in split_statements(&tokens) {
        match Parser::new(src, chunk).statement() {
            Ok(s) => statements.push(s),
            Err(d) => errors.push(d),
        }
    }
    if errors.is_empty() {
        Ok(statements)
    } else {
        Err(errors)
    }
}

/// Parse exactly one statement, as given on a command line: a trailing `;` is allowed,
/// anything after it is an error.
pub fn parse_single(src: &str) -> PResult<Statement> {
    let tokens = tokenize(src)?;
    let chunks = split_statements(&tokens);
    let Some(first) = chunks.first() else {
        let end = tokens.last().map_or(Span::default(), |t| t.span);
        return Err(
            Diagnostic::new(ErrorKind::EmptyInput, end, "no query given")
                .with_hint("write a query, e.g. SELECT inv.a FROM inv WHEN inv.a > 0"),
        );
    };
    if let Some(second) = chunks.get(1) {
        let span = second[0].span.to(second[second.len() - 2].span);
        return Err(Diagnostic::new(
            ErrorKind::MultipleStatements,
            span,
            "only one statement is allowed here",
        )
        .with_hint("put several statements in a file and use -f, or run them one at a time"));
    }
    Parser::new(src, first).statement()
}

/// Parse a standalone expression (tests, tools). The whole input must be one expression.
pub fn parse_expr(src: &str) -> PResult<Expr> {
    let tokens = tokenize(src)?;
    let mut p = Parser::new(src, &tokens);
    let e = p.expr()?.expr;
    p.expect_end("an operator")?;
    Ok(e)
}

/// Token slices of the non-empty statements, each ending with its terminator (`;` or `Eof`),
/// which the parser treats as the end of input.
fn split_statements(tokens: &[Token]) -> Vec<&[Token]> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, t) in tokens.iter().enumerate() {
        if matches!(t.tok, Tok::Semicolon | Tok::Eof) {
            if i > start {
                out.push(&tokens[start..=i]);
            }
            start = i + 1;
        }
    }
    out
}

/// An expression with the height of its tree, so chains like `a + b + c + ...` (which do not
/// recurse in the parser) are still bounded.
struct Node {
    expr: Expr,
    height: u32,
}

struct Parser<'a> {
    src: &'a str,
    /// Ends with a terminator token (`;` or `Eof`).
    tokens: &'a [Token],
    pos: usize,
    depth: u32,
    /// Spans of the LINK groups built so far, to detect nesting in O(1).
    link_groups: Vec<Span>,
}

const CLAUSE_ORDER_HINT: &str =
    "clauses go in the order WHEN, AT NODES, ON TIME/SINCE, EMIT, LIMIT; one statement per query";

impl<'a> Parser<'a> {
    fn new(src: &'a str, tokens: &'a [Token]) -> Parser<'a> {
        Parser {
            src,
            tokens,
            pos: 0,
            depth: 0,
            link_groups: Vec::new(),
        }
    }

    // ----- token access -----

    fn peek(&self) -> &'a Token {
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn peek_at(&self, n: usize) -> &'a Token {
        &self.tokens[(self.pos + n).min(self.tokens.len() - 1)]
    }

    fn at_end(&self) -> bool {
        self.pos >= self.tokens.len() - 1
    }

    fn bump(&mut self) -> &'a Token {
        let t = self.peek();
        if !self.at_end() {
            self.pos += 1;
        }
        t
    }

    fn prev_span(&self) -> Span {
        self.tokens[self.pos.saturating_sub(1)].span
    }

    fn is_keyword(&self, kw: &str) -> bool {
        self.is_keyword_at(0, kw)
    }

    fn is_keyword_at(&self, n: usize, kw: &str) -> bool {
        matches!(&self.peek_at(n).tok, Tok::Ident(w) if w.eq_ignore_ascii_case(kw))
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        let hit = self.is_keyword(kw);
        if hit {
            self.bump();
        }
        hit
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        let hit = !self.at_end() && &self.peek().tok == tok;
        if hit {
            self.bump();
        }
        hit
    }

    /// "expected X, found Y" at the current token.
    fn unexpected(&self, expected: &str) -> Diagnostic {
        let t = self.peek();
        if self.at_end() {
            let found = if t.tok == Tok::Semicolon {
                "';' (end of statement)".to_string()
            } else {
                "end of input".to_string()
            };
            Diagnostic::new(
                ErrorKind::UnexpectedEnd,
                Span::new(t.span.start, t.span.start),
                format!("expected {expected}, found {found}"),
            )
        } else {
            Diagnostic::new(
                ErrorKind::UnexpectedToken,
                t.span,
                format!("expected {expected}, found {}", t.tok.describe()),
            )
        }
    }

    fn expect(&mut self, tok: &Tok, expected: &str) -> PResult<Span> {
        if self.eat(tok) {
            Ok(self.prev_span())
        } else {
            Err(self.unexpected(expected))
        }
    }

    fn expect_keyword(&mut self, kw: &str) -> PResult<Span> {
        if self.eat_keyword(kw) {
            Ok(self.prev_span())
        } else {
            Err(self.unexpected(kw))
        }
    }

    fn expect_end(&self, expected_before: &str) -> PResult<()> {
        if self.at_end() {
            Ok(())
        } else {
            Err(self.unexpected(&format!("{expected_before} or the end of the statement")))
        }
    }

    /// A name that is not a reserved word (log, unqualified key, alias, bare node id).
    fn name(&mut self, what: &str) -> PResult<Ident> {
        match &self.peek().tok {
            Tok::Ident(w) if crate::is_reserved(w) => Err(Diagnostic::new(
                ErrorKind::ReservedWord,
                self.peek().span,
                format!(
                    "expected {what}, found the reserved word {}",
                    w.to_uppercase()
                ),
            )
            .with_hint("reserved words cannot be names; see the list in the RQL reference")),
            Tok::Ident(w) => {
                let span = self.bump().span;
                Ok(Ident {
                    name: w.clone(),
                    span,
                })
            }
            _ => Err(self.unexpected(what)),
        }
    }

    /// Any identifier, reserved or not: what may follow a dot.
    fn any_ident(&mut self, what: &str) -> PResult<Ident> {
        match &self.peek().tok {
            Tok::Ident(w) => {
                let span = self.bump().span;
                Ok(Ident {
                    name: w.clone(),
                    span,
                })
            }
            _ => Err(self.unexpected(what)),
        }
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.too_deep(self.peek().span));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn too_deep(&self, span: Span) -> Diagnostic {
        Diagnostic::new(
            ErrorKind::NestingTooDeep,
            span,
            format!("expression nests deeper than the limit of {MAX_NESTING} levels"),
        )
        .with_hint("split the condition, or remove redundant parentheses")
    }

    fn node(&self, kind: ExprKind, span: Span, child_height: u32) -> PResult<Node> {
        let height = child_height + 1;
        if height > MAX_NESTING {
            return Err(self.too_deep(span));
        }
        Ok(Node {
            expr: Expr { kind, span },
            height,
        })
    }

    // ----- statements -----

    fn statement(&mut self) -> PResult<Statement> {
        let start = self.peek().span;
        let explain = self.eat_keyword("EXPLAIN");
        let query = self.query()?;
        if !self.at_end() {
            return Err(self.trailing());
        }
        Ok(Statement {
            explain,
            span: start.to(query.span),
            query,
        })
    }

    fn trailing(&self) -> Diagnostic {
        let t = self.peek();
        let clause = [
            "SELECT", "FROM", "WHEN", "AT", "ON", "SINCE", "EMIT", "LIMIT", "EXPLAIN",
        ]
        .into_iter()
        .find(|kw| self.is_keyword(kw));
        let d = Diagnostic::new(
            ErrorKind::TrailingInput,
            t.span,
            format!(
                "unexpected {} after the end of the statement",
                t.tok.describe()
            ),
        );
        match clause {
            Some(_) => d.with_hint(CLAUSE_ORDER_HINT),
            None if matches!(t.tok, Tok::RParen) => d.with_hint("this ')' has no matching '('"),
            None => d.with_hint(
                "expected WHEN, AT NODES, ON TIME, SINCE, EMIT, LIMIT or the end of the statement",
            ),
        }
    }

    fn query(&mut self) -> PResult<Query> {
        let start = self.expect_keyword("SELECT")?;
        let select = self.select_list()?;
        if !self.is_keyword("FROM") {
            return Err(self.missing_from());
        }
        self.bump();
        let mut from = vec![self.name("a log name after FROM")?];
        while self.eat(&Tok::Comma) {
            from.push(self.name("a log name")?);
        }
        let when = if self.eat_keyword("WHEN") {
            Some(self.expr()?.expr)
        } else {
            None
        };
        let at_nodes = if self.eat_keyword("AT") {
            self.expect_keyword("NODES")?;
            let mut nodes = vec![self.node_id()?];
            while self.eat(&Tok::Comma) {
                nodes.push(self.node_id()?);
            }
            Some(nodes)
        } else {
            None
        };
        let time = if self.eat_keyword("ON") {
            self.expect_keyword("TIME")?;
            let from = self.time_expr()?;
            let to = if self.eat_keyword("TO") {
                Some(self.time_expr()?)
            } else {
                None
            };
            Some(TimeRange::OnTime { from, to })
        } else if self.eat_keyword("SINCE") {
            Some(TimeRange::Since(self.time_expr()?))
        } else {
            None
        };
        let emit = if self.eat_keyword("EMIT") {
            if self.eat_keyword("CUTS") {
                Some(Emit::Cuts)
            } else if self.eat_keyword("CHANGES") {
                Some(Emit::Changes)
            } else {
                return Err(self.unexpected("CUTS or CHANGES after EMIT"));
            }
        } else {
            None
        };
        let limit = if self.eat_keyword("LIMIT") {
            let t = self.peek();
            match &t.tok {
                Tok::Int(digits) => {
                    self.bump();
                    let count = digits
                        .parse::<i64>()
                        .map_err(|_| int_out_of_range(t.span))?;
                    Some(Limit {
                        count: count as u64,
                        span: t.span,
                    })
                }
                _ => return Err(self.unexpected("a non-negative integer after LIMIT")),
            }
        } else {
            None
        };
        Ok(Query {
            select,
            from,
            when,
            at_nodes,
            time,
            emit,
            limit,
            span: start.to(self.prev_span()),
        })
    }

    fn missing_from(&self) -> Diagnostic {
        let clause = ["WHEN", "AT", "ON", "SINCE", "EMIT", "LIMIT"]
            .into_iter()
            .any(|kw| self.is_keyword(kw));
        if self.at_end() || clause {
            let t = self.peek();
            let span = if self.at_end() {
                Span::new(t.span.start, t.span.start)
            } else {
                t.span
            };
            Diagnostic::new(
                ErrorKind::MissingFrom,
                span,
                "missing FROM: a query must name the logs it reads",
            )
            .with_hint("add FROM after the SELECT list, e.g. SELECT inv.a FROM inv")
        } else {
            self.unexpected("',' or FROM after a SELECT item")
                .with_hint("SELECT lists variables, log.* and aggregates; put conditions in WHEN")
        }
    }

    fn select_list(&mut self) -> PResult<SelectList> {
        if self.eat(&Tok::Star) {
            return Ok(SelectList::Star(self.prev_span()));
        }
        let mut items = vec![self.select_item()?];
        while self.eat(&Tok::Comma) {
            items.push(self.select_item()?);
        }
        Ok(SelectList::Items(items))
    }

    fn select_item(&mut self) -> PResult<SelectItem> {
        let item = match (&self.peek().tok, &self.peek_at(1).tok, &self.peek_at(2).tok) {
            (Tok::Ident(_), Tok::LParen, _) => {
                let call = self.primary()?.expr;
                let alias = if self.eat_keyword("AS") {
                    Some(self.name("an alias after AS")?)
                } else {
                    None
                };
                let span = call.span.to(alias.as_ref().map_or(call.span, |a| a.span));
                SelectItem::Aggregate { call, alias, span }
            }
            (Tok::Ident(_), Tok::Dot, Tok::Star) => {
                let log = self.name("a log name")?;
                self.bump();
                let star = self.bump().span;
                SelectItem::LogStar {
                    span: log.span.to(star),
                    log,
                }
            }
            (Tok::Ident(_), _, _) => SelectItem::Variable(self.variable()?),
            (Tok::Star, _, _) => {
                return Err(Diagnostic::new(
                    ErrorKind::UnexpectedToken,
                    self.peek().span,
                    "'*' must be the whole SELECT list",
                )
                .with_hint("write SELECT * alone, or log.* next to other items"))
            }
            _ => return Err(self.unexpected("a variable, log.* or an aggregate call")),
        };
        if self.is_keyword("AS") && !matches!(item, SelectItem::Aggregate { .. }) {
            return Err(Diagnostic::new(
                ErrorKind::UnexpectedToken,
                self.peek().span,
                "AS is only allowed after an aggregate call",
            )
            .with_hint("a variable's output name is the variable itself"));
        }
        Ok(item)
    }

    fn node_id(&mut self) -> PResult<NodeId> {
        let t = self.peek();
        match &t.tok {
            Tok::Str(s) => {
                self.bump();
                Ok(NodeId {
                    name: s.clone(),
                    span: t.span,
                })
            }
            Tok::Ident(w) if crate::is_reserved(w) => Err(Diagnostic::new(
                ErrorKind::ReservedWord,
                t.span,
                format!("{} is a reserved word, not a node id", w.to_uppercase()),
            )
            .with_hint(format!("quote the node id: '{w}'"))),
            Tok::Ident(w) => {
                self.bump();
                Ok(NodeId {
                    name: w.clone(),
                    span: t.span,
                })
            }
            _ => Err(self.unexpected("a node id (a name or a quoted string)")),
        }
    }

    fn time_expr(&mut self) -> PResult<TimeExpr> {
        let t = self.peek();
        let kind = match &t.tok {
            Tok::Int(digits) => {
                self.bump();
                TimeExprKind::Millis(physical_ms(digits, t.span)?)
            }
            Tok::Str(text) => {
                self.bump();
                let millis = parse_rfc3339(text).ok_or_else(|| {
                    Diagnostic::new(
                        ErrorKind::InvalidTime,
                        t.span,
                        format!("invalid time '{text}'"),
                    )
                    .with_hint(
                        "write RFC 3339 within 1970..10889, e.g. '2023-11-14T22:13:20.123Z', \
                         or milliseconds since the epoch",
                    )
                })?;
                TimeExprKind::Timestamp {
                    text: text.clone(),
                    millis,
                }
            }
            Tok::Ident(w) if w.eq_ignore_ascii_case("HLC") => {
                self.bump();
                self.expect(&Tok::LParen, "'(' after HLC")?;
                let (l_digits, l_span) = self.int_token("the physical time (ms)")?;
                self.expect(&Tok::Comma, "',' between the parts of HLC(l, c)")?;
                let (c_digits, c_span) = self.int_token("the logical counter")?;
                self.expect(&Tok::RParen, "')'")?;
                let physical = physical_ms(l_digits, l_span)?;
                let logical = c_digits
                    .parse::<u64>()
                    .ok()
                    .filter(|c| *c <= MAX_LOGICAL)
                    .ok_or_else(|| {
                        Diagnostic::new(
                            ErrorKind::InvalidTime,
                            c_span,
                            format!("HLC counter {c_digits} out of range 0..{MAX_LOGICAL}"),
                        )
                    })?;
                TimeExprKind::Hlc { physical, logical }
            }
            Tok::Ident(w) if w.eq_ignore_ascii_case("NOW") => {
                self.bump();
                let minus = if self.eat(&Tok::Minus) {
                    let (digits, span) = self.int_token("milliseconds after NOW -")?;
                    Some(physical_ms(digits, span)?)
                } else {
                    None
                };
                TimeExprKind::Now { minus }
            }
            _ => {
                return Err(
                    self.unexpected("a time: milliseconds, an RFC 3339 string, HLC(l, c) or NOW")
                )
            }
        };
        Ok(TimeExpr {
            kind,
            span: t.span.to(self.prev_span()),
        })
    }

    fn int_token(&mut self, what: &str) -> PResult<(&'a str, Span)> {
        let t = self.peek();
        match &t.tok {
            Tok::Int(d) => {
                self.bump();
                Ok((d.as_str(), t.span))
            }
            _ => Err(self.unexpected(what)),
        }
    }

    // ----- expressions -----

    fn expr(&mut self) -> PResult<Node> {
        self.enter()?;
        // Debug builds use large frames; growing the stack on demand keeps the nesting limit,
        // not the thread's stack size, the only bound on what parses.
        let r = stacker::maybe_grow(STACK_RED_ZONE, STACK_GROW_BY, || self.or_expr());
        self.leave();
        r
    }

    fn or_expr(&mut self) -> PResult<Node> {
        let mut left = self.and_expr()?;
        while self.is_keyword("OR") || self.peek().tok == Tok::OrOr {
            self.bump();
            let right = self.and_expr()?;
            left = self.binary(BinaryOp::Or, left, right)?;
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> PResult<Node> {
        let mut left = self.not_expr()?;
        while self.is_keyword("AND") || self.peek().tok == Tok::AndAnd {
            self.bump();
            let right = self.not_expr()?;
            left = self.binary(BinaryOp::And, left, right)?;
        }
        Ok(left)
    }

    fn binary(&self, op: BinaryOp, left: Node, right: Node) -> PResult<Node> {
        let span = left.expr.span.to(right.expr.span);
        self.node(
            ExprKind::Binary {
                op,
                left: Box::new(left.expr),
                right: Box::new(right.expr),
            },
            span,
            left.height.max(right.height),
        )
    }

    fn not_expr(&mut self) -> PResult<Node> {
        if self.is_keyword("NOT") || self.peek().tok == Tok::Bang {
            let start = self.bump().span;
            self.enter()?;
            let inner = stacker::maybe_grow(STACK_RED_ZONE, STACK_GROW_BY, || self.not_expr());
            self.leave();
            let inner = inner?;
            let span = start.to(inner.expr.span);
            return self.node(
                ExprKind::Unary {
                    op: UnaryOp::Not,
                    expr: Box::new(inner.expr),
                },
                span,
                inner.height,
            );
        }
        let e = self.cmp_expr()?;
        if self.is_keyword("LINK") {
            let link = self.peek().span;
            let kind = if self.is_keyword_at(1, "EACH_NODE") {
                "EACH_NODE"
            } else {
                "SAME_NODE"
            };
            return Err(Diagnostic::new(
                ErrorKind::LinkNeedsParens,
                link,
                "LINK applies only to a parenthesized expression",
            )
            .with_hint(format!(
                "write ({}) LINK {kind}",
                e.expr.span.text(self.src)
            )));
        }
        Ok(e)
    }

    fn comparison_op(&self) -> Option<BinaryOp> {
        Some(match self.peek().tok {
            Tok::Eq | Tok::EqEq => BinaryOp::Eq,
            Tok::NotEq | Tok::LtGt => BinaryOp::NotEq,
            Tok::Lt => BinaryOp::Lt,
            Tok::LtEq => BinaryOp::LtEq,
            Tok::Gt => BinaryOp::Gt,
            Tok::GtEq => BinaryOp::GtEq,
            _ => return None,
        })
    }

    /// True if the next tokens start another comparison, `IS`, `IN` or `NOT IN`.
    fn at_comparison(&self) -> bool {
        self.comparison_op().is_some()
            || self.is_keyword("IS")
            || self.is_keyword("IN")
            || (self.is_keyword("NOT") && self.is_keyword_at(1, "IN"))
    }

    fn cmp_expr(&mut self) -> PResult<Node> {
        let left = self.add_expr()?;
        let result = if let Some(op) = self.comparison_op() {
            self.bump();
            let right = self.add_expr()?;
            self.binary(op, left, right)?
        } else if self.eat_keyword("IS") {
            let negated = self.eat_keyword("NOT");
            self.expect_keyword("NULL")?;
            let span = left.expr.span.to(self.prev_span());
            self.node(
                ExprKind::IsNull {
                    expr: Box::new(left.expr),
                    negated,
                },
                span,
                left.height,
            )?
        } else if self.is_keyword("IN") || (self.is_keyword("NOT") && self.is_keyword_at(1, "IN")) {
            let negated = self.eat_keyword("NOT");
            self.bump();
            self.in_rhs(left, negated)?
        } else {
            return Ok(left);
        };
        if self.at_comparison() {
            return Err(Diagnostic::new(
                ErrorKind::ChainedComparison,
                self.peek().span,
                "comparisons cannot be chained",
            )
            .with_hint(format!(
                "combine comparisons with AND, e.g. {} AND ...",
                result.expr.span.text(self.src)
            )));
        }
        Ok(result)
    }

    fn in_rhs(&mut self, left: Node, negated: bool) -> PResult<Node> {
        if self.peek().tok == Tok::LParen {
            self.bump();
            let mut list = Vec::new();
            let mut height = left.height;
            loop {
                let item = self.expr()?;
                height = height.max(item.height);
                list.push(item.expr);
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
            let close = self.expect(&Tok::RParen, "',' or ')' in the IN list")?;
            if self.is_keyword("LINK") {
                return Err(Diagnostic::new(
                    ErrorKind::LinkNeedsParens,
                    self.peek().span,
                    "LINK cannot follow an IN list",
                )
                .with_hint(format!(
                    "x IN (...) is a list; put the membership test inside the group: ({}) LINK ...",
                    left.expr.span.to(close).text(self.src)
                )));
            }
            let span = left.expr.span.to(close);
            self.node(
                ExprKind::InList {
                    expr: Box::new(left.expr),
                    list,
                    negated,
                },
                span,
                height,
            )
        } else {
            let set = self.add_expr()?;
            let span = left.expr.span.to(set.expr.span);
            self.node(
                ExprKind::InSet {
                    expr: Box::new(left.expr),
                    set: Box::new(set.expr),
                    negated,
                },
                span,
                left.height.max(set.height),
            )
        }
    }

    fn add_expr(&mut self) -> PResult<Node> {
        let mut left = self.mul_expr()?;
        loop {
            let op = match self.peek().tok {
                Tok::Plus => BinaryOp::Add,
                Tok::Minus => BinaryOp::Sub,
                _ => return Ok(left),
            };
            self.bump();
            let right = self.mul_expr()?;
            left = self.binary(op, left, right)?;
        }
    }

    fn mul_expr(&mut self) -> PResult<Node> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek().tok {
                Tok::Star => BinaryOp::Mul,
                Tok::Slash => BinaryOp::Div,
                Tok::Percent => BinaryOp::Mod,
                _ => return Ok(left),
            };
            self.bump();
            let right = self.unary()?;
            left = self.binary(op, left, right)?;
        }
    }

    fn unary(&mut self) -> PResult<Node> {
        if self.peek().tok != Tok::Minus {
            return self.primary();
        }
        let minus = self.bump().span;
        // `-` directly before a number is part of the literal, so that i64::MIN is writable.
        let t = self.peek();
        match &t.tok {
            Tok::Int(digits) => {
                self.bump();
                let span = minus.to(t.span);
                let v = format!("-{digits}")
                    .parse::<i64>()
                    .map_err(|_| int_out_of_range(span))?;
                return self.node(ExprKind::Literal(Literal::Int(v)), span, 0);
            }
            Tok::Float(text) => {
                self.bump();
                let span = minus.to(t.span);
                let v = float_literal(text, span)?;
                return self.node(ExprKind::Literal(Literal::Float(-v)), span, 0);
            }
            _ => {}
        }
        self.enter()?;
        let inner = stacker::maybe_grow(STACK_RED_ZONE, STACK_GROW_BY, || self.unary());
        self.leave();
        let inner = inner?;
        let span = minus.to(inner.expr.span);
        self.node(
            ExprKind::Unary {
                op: UnaryOp::Neg,
                expr: Box::new(inner.expr),
            },
            span,
            inner.height,
        )
    }

    fn primary(&mut self) -> PResult<Node> {
        let t = self.peek();
        match &t.tok {
            Tok::Int(digits) => {
                self.bump();
                let v = digits
                    .parse::<i64>()
                    .map_err(|_| int_out_of_range(t.span))?;
                self.node(ExprKind::Literal(Literal::Int(v)), t.span, 0)
            }
            Tok::Float(text) => {
                self.bump();
                let v = float_literal(text, t.span)?;
                self.node(ExprKind::Literal(Literal::Float(v)), t.span, 0)
            }
            Tok::Str(s) => {
                self.bump();
                self.node(ExprKind::Literal(Literal::Str(s.clone())), t.span, 0)
            }
            Tok::LParen => self.parenthesized(),
            Tok::Placeholder(d) => Err(Diagnostic::new(
                ErrorKind::PlaceholderOutsideNode,
                t.span,
                format!("placeholder ${d} is only valid as the argument of NODE"),
            )
            .with_hint(format!("write NODE(${d})"))),
            Tok::Ident(w) => {
                let literal = if w.eq_ignore_ascii_case("TRUE") {
                    Some(Literal::Bool(true))
                } else if w.eq_ignore_ascii_case("FALSE") {
                    Some(Literal::Bool(false))
                } else if w.eq_ignore_ascii_case("NULL") {
                    Some(Literal::Null)
                } else {
                    None
                };
                if let Some(lit) = literal {
                    self.bump();
                    return self.node(ExprKind::Literal(lit), t.span, 0);
                }
                if crate::is_reserved(w) {
                    return Err(self.unexpected("an expression"));
                }
                if self.peek_at(1).tok == Tok::LParen {
                    return self.call();
                }
                let v = self.variable()?;
                let span = v.span;
                self.node(ExprKind::Variable(Box::new(v)), span, 0)
            }
            Tok::Dot if matches!(self.peek_at(1).tok, Tok::Int(_)) => Err(self
                .unexpected("an expression")
                .with_hint("floats need a digit before the point, e.g. 0.5")),
            _ => Err(self.unexpected("an expression")),
        }
    }

    /// `( expr )`, optionally followed by `LINK SAME_NODE | EACH_NODE`. Plain parentheses leave
    /// no node in the AST; the inner expression's span grows to cover them.
    fn parenthesized(&mut self) -> PResult<Node> {
        let open = self.bump().span;
        let groups_before = self.link_groups.len();
        let mut inner = self.expr()?;
        let close = self.expect(&Tok::RParen, "')'")?;
        if !self.eat_keyword("LINK") {
            inner.expr.span = open.to(close);
            return Ok(inner);
        }
        let link = if self.eat_keyword("SAME_NODE") {
            LinkKind::SameNode
        } else if self.eat_keyword("EACH_NODE") {
            LinkKind::EachNode
        } else {
            return Err(self.unexpected("SAME_NODE or EACH_NODE after LINK"));
        };
        let span = open.to(self.prev_span());
        if let Some(inner_group) = self.link_groups.get(groups_before) {
            return Err(Diagnostic::new(
                ErrorKind::NestedLink,
                *inner_group,
                "LINK groups may not be nested",
            )
            .with_hint(format!(
                "remove the inner LINK, or split the condition: {} is already one group",
                inner_group.text(self.src)
            )));
        }
        self.link_groups.push(span);
        self.node(
            ExprKind::Link {
                expr: Box::new(inner.expr),
                link,
            },
            span,
            inner.height,
        )
    }

    fn call(&mut self) -> PResult<Node> {
        let name = self.any_ident("a function name")?;
        self.bump(); // '('
        let is_node = name.name.eq_ignore_ascii_case("NODE");
        let mut height = 0;
        let args = if self.peek().tok == Tok::Star {
            self.bump();
            CallArgs::Star
        } else if self.peek().tok == Tok::RParen {
            CallArgs::List(Vec::new())
        } else {
            let mut args = Vec::new();
            loop {
                let t = self.peek();
                match &t.tok {
                    Tok::Placeholder(d) if is_node => {
                        self.bump();
                        let k = d.parse::<u32>().map_err(|_| {
                            Diagnostic::new(
                                ErrorKind::IntegerOutOfRange,
                                t.span,
                                format!("placeholder ${d} is out of range"),
                            )
                        })?;
                        args.push(Expr {
                            kind: ExprKind::Placeholder(k),
                            span: t.span,
                        });
                    }
                    _ => {
                        let arg = self.expr()?;
                        height = height.max(arg.height);
                        args.push(arg.expr);
                    }
                }
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
            CallArgs::List(args)
        };
        let close = self.expect(&Tok::RParen, "',' or ')' after a function argument")?;
        let span = name.span.to(close);
        self.node(ExprKind::Call { name, args }, span, height)
    }

    fn variable(&mut self) -> PResult<Variable> {
        let first = self.name("a variable")?;
        let mut parts = Vec::new();
        while self.peek().tok == Tok::Dot {
            self.bump();
            if self.peek().tok == Tok::Star {
                return Err(Diagnostic::new(
                    ErrorKind::UnexpectedToken,
                    first.span.to(self.peek().span),
                    format!("{}.* is only allowed as a SELECT item", first.name),
                )
                .with_hint("name the variable, e.g. inv.a"));
            }
            parts.push(self.any_ident("a name after '.'")?);
        }
        let node = if self.eat(&Tok::LBracket) {
            let id = self.node_id()?;
            self.expect(&Tok::RBracket, "']' after the node id")?;
            Some(id)
        } else {
            None
        };
        let end = self.prev_span();
        let mut parts = parts.into_iter();
        let (log, key) = match parts.next() {
            Some(key) => (Some(first), key),
            None => (None, first),
        };
        let span = log.as_ref().map_or(key.span, |l| l.span).to(end);
        Ok(Variable {
            log,
            key,
            fields: parts.collect(),
            node,
            span,
        })
    }
}

fn int_out_of_range(span: Span) -> Diagnostic {
    Diagnostic::new(
        ErrorKind::IntegerOutOfRange,
        span,
        "integer out of range for a 64-bit signed integer",
    )
    .with_hint("integers are -9223372036854775808..9223372036854775807; write a float (e.g. 1e19) for larger values")
}

fn float_literal(text: &str, span: Span) -> PResult<f64> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(Diagnostic::new(
            ErrorKind::FloatOutOfRange,
            span,
            "float literal out of range",
        )
        .with_hint("floats are 64-bit: magnitudes up to about 1.8e308")),
    }
}

fn physical_ms(digits: &str, span: Span) -> PResult<u64> {
    digits
        .parse::<u64>()
        .ok()
        .filter(|ms| *ms <= MAX_PHYSICAL_MS)
        .ok_or_else(|| {
            Diagnostic::new(
                ErrorKind::InvalidTime,
                span,
                format!("time {digits} ms is out of range 0..{MAX_PHYSICAL_MS}"),
            )
        })
}

/// `YYYY-MM-DD(T| )HH:MM:SS[.frac](Z|±HH:MM)` → ms since the epoch, fractions truncated.
fn parse_rfc3339(text: &str) -> Option<u64> {
    let t = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    let ms = t.timestamp_millis();
    u64::try_from(ms).ok().filter(|ms| *ms <= MAX_PHYSICAL_MS)
}
