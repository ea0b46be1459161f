//! `rql`: the command-line front end. Each subcommand lives in its own module; this file only
//! parses arguments and dispatches.

mod check;
mod gen;
mod query;
mod replay;
mod serve;
mod stream;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rql",
    version,
    about = "Query the consistent cuts of a distributed system's trace",
    long_about = "rql answers: was there a consistent global state in which this predicate held?\n\
                  Start with `rql check -e 'QUERY'` to see how a query parses, then\n\
                  `rql replay TRACE -e 'QUERY'` to run it over a saved trace."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse RQL and print each statement in normalized form, or the errors with carets.
    ///
    /// Exit status: 0 if every statement parses, 2 if any has an error, 1 if the input could
    /// not be read.
    Check(query::QuerySource),
    /// Run queries over saved traces and print every cut where WHEN holds.
    ///
    /// Exit status: 0 on success, 2 for an error in the query, 1 for a bad trace or a run
    /// that could not finish (e.g. the enumeration bound).
    Replay(replay::ReplayArgs),
    /// Print the resolved plan of queries: placeholders, LINK groups, strategies and costs.
    Explain(replay::ExplainArgs),
    /// Write a deterministic synthetic trace (NDJSON, rql-trace/1) for tests and benchmarks.
    ///
    /// One record per node sets its variables, then each of --steps records changes one node;
    /// the same arguments (and --seed) always give the same bytes.
    Gen(gen::GenArgs),
    /// Run the log server: durable HLC-ordered ingest over HTTP, subscriptions, status, metrics.
    ///
    /// Prints `listening on http://ADDR (data: DIR)` once ready; stops on SIGINT/SIGTERM after
    /// finishing requests in flight. Exit status: 0 after a clean stop, 1 if it cannot start.
    Serve(Box<serve::ServeArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(src) => check::run(&src),
        Command::Replay(args) => replay::run_replay(&args),
        Command::Explain(args) => replay::run_explain(&args),
        Command::Gen(args) => gen::run(&args),
        Command::Serve(args) => serve::run(&args),
    }
}
