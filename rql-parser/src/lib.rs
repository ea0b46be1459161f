//! RQL front end: source text → tokens → AST, and back to text.
//!
//! The crate knows only syntax. It never resolves names or looks at a trace; that is the
//! planner's job. Every AST node carries the byte span of its source so later layers can
//! point at it with the same [`Diagnostic`] type.
//!
//! Entry points: [`parse_statements`] for files and the REPL (`;`-separated),
//! [`parse_single`] for a query given on the command line, and [`print_statement`].

pub mod ast;
pub mod diagnostic;
mod lexer;
mod parser;
mod printer;

pub use ast::*;
pub use diagnostic::{Diagnostic, ErrorKind};
pub use parser::{parse_expr, parse_single, parse_statements, MAX_NESTING};
pub use printer::{print_expr, print_query, print_statement};

/// Words that cannot be used as identifiers (log names, unqualified keys, aliases, unquoted node
/// ids). Any identifier may follow a dot, so `zk.time` is still a variable. SPEC §6.
pub const RESERVED_WORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHEN",
    "AT",
    "NODES",
    "ON",
    "TIME",
    "TO",
    "SINCE",
    "EMIT",
    "CUTS",
    "CHANGES",
    "LIMIT",
    "AS",
    "AND",
    "OR",
    "NOT",
    "IS",
    "NULL",
    "IN",
    "LINK",
    "SAME_NODE",
    "EACH_NODE",
    "TRUE",
    "FALSE",
    "HLC",
    "NOW",
    "EXPLAIN",
];

/// True if `word` is a reserved word (case-insensitive).
pub fn is_reserved(word: &str) -> bool {
    RESERVED_WORDS.iter().any(|r| r.eq_ignore_ascii_case(word))
}

/// True if `s` can be written as a bare identifier: `[A-Za-z_][A-Za-z0-9_]*` and not reserved.
pub fn is_plain_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !is_reserved(s)
}
