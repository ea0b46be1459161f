//! `rql check`: parse statements and print them normalized, or print their diagnostics.

use std::io::Write;
use std::process::ExitCode;

use rql_parser::print_statement;

use crate::query::{LoadedQuery, QuerySource, EXIT_FAILURE, EXIT_QUERY_ERROR};

pub fn run(src: &QuerySource) -> ExitCode {
    let q = match LoadedQuery::load(src) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match q.parse() {
        Ok(statements) => {
            let mut out = std::io::stdout().lock();
            for s in &statements {
                let _ = writeln!(out, "{};", print_statement(s));
            }
            ExitCode::SUCCESS
        }
        Err(diags) => {
            q.print_diagnostics(&diags);
            ExitCode::from(EXIT_QUERY_ERROR)
        }
    }
}
