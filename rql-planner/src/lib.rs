//! RQL planner: from a parsed statement to a [`Plan`] the executor runs.
//!
//! Resolves names against the FROM logs (and notes keys the source never had), numbers the
//! placeholders of WHEN as SPEC §3.2 says, validates LINK groups, `NODE($k)`, functions and
//! aggregates, resolves times to HLC bounds, folds constants, and chooses an evaluation
//! strategy per part of WHEN ([`strategy`]). The semantics of values, operators, functions
//! and aggregates live here too ([`ops`]), since constant folding needs them; the executor
//! uses the same functions at run time, so a folded and an evaluated expression never differ.
//!
//! Errors are [`rql_parser::Diagnostic`]s with spans into the query text, rendered exactly like
//! syntax errors.

pub mod exact_sum;
pub mod explain;
pub mod ops;
pub mod plan;
pub mod resolve;
pub mod strategy;

pub use explain::explain;
pub use plan::*;
pub use resolve::{plan_statement, Catalog};
