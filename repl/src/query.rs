//! Getting query text from the command line (`-e`, `-f FILE`, `-f -`), parsing it, and
//! printing diagnostics — shared by every subcommand that takes a query.

use std::io::{IsTerminal, Read, Write};

use clap::Args;
use rql_parser::{parse_single, parse_statements, Diagnostic, Statement};

/// Exit status when a query has a syntax or semantic error.
pub const EXIT_QUERY_ERROR: u8 = 2;
/// Exit status when input could not be read or the run failed.
pub const EXIT_FAILURE: u8 = 1;

/// Where the query text comes from: exactly one of -e and -f.
#[derive(Args, Clone, Debug)]
#[group(required = true, multiple = false)]
pub struct QuerySource {
    /// The query text (one statement; a trailing ';' is allowed).
    #[arg(short = 'e', long = "execute", value_name = "QUERY")]
    pub query: Option<String>,
    /// A file of statements separated by ';' ("-" reads standard input).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<String>,
}

/// Query text together with the name diagnostics should show for it.
pub struct LoadedQuery {
    pub text: String,
    pub origin: String,
    /// `-e` holds exactly one statement; files and stdin may hold several.
    pub single: bool,
}

impl LoadedQuery {
    pub fn load(src: &QuerySource) -> Result<LoadedQuery, String> {
        if let Some(q) = &src.query {
            return Ok(LoadedQuery {
                text: q.clone(),
                origin: "<query>".into(),
                single: true,
            });
        }
        let path = src.file.as_deref().unwrap_or("-");
        let text = if path == "-" {
            let mut buf = String::new();
            std::io::stdin()
                .read_to_string(&mut buf)
                .map_err(|e| format!("cannot read the query from standard input: {e}"))?;
            buf
        } else {
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read query file {path}: {e}"))?
        };
        Ok(LoadedQuery {
            text,
            origin: if path == "-" {
                "<stdin>".into()
            } else {
                path.into()
            },
            single: false,
        })
    }

    /// Parse as one statement (`-e`) or a `;`-separated list.
    pub fn parse(&self) -> Result<Vec<Statement>, Vec<Diagnostic>> {
        if self.single {
            parse_single(&self.text)
                .map(|s| vec![s])
                .map_err(|d| vec![d])
        } else {
            parse_statements(&self.text)
        }
    }

    /// Render diagnostics to stderr, rustc-style (coloured on a terminal unless NO_COLOR).
    pub fn print_diagnostics(&self, diags: &[Diagnostic]) {
        let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let mut err = std::io::stderr().lock();
        for d in diags {
            let _ = writeln!(err, "{}\n", d.render(&self.text, &self.origin, color));
        }
    }
}
