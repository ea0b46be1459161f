//! `rql`: the command-line front end. Each subcommand lives in its own module; this file only
//! parses arguments and dispatches.

mod check;
mod convert;
mod demo;
mod export;
mod gen;
mod parquet_replay;
mod query;
mod replay;
mod serve;
mod shell;
mod sql;
mod stream;
mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rql",
    version,
    about = "Query the consistent cuts of a distributed system's trace",
    long_about = "rql answers: was there a consistent global state in which this predicate held?\n\
                  `rql demo` shows it at work on a simulated cluster. Start with\n\
                  `rql check -e 'QUERY'` to see how a query parses, then\n\
                  `rql replay TRACE -e 'QUERY'` to run it over a saved trace."
)]
struct Cli {
    /// Without a subcommand, `rql` starts the interactive shell (as `rql repl`).
    #[command(subcommand)]
    command: Option<Command>,
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
    /// Run a query live over log servers: print every satisfying cut as its step becomes final.
    ///
    /// Starts at the servers' current frontier (or at SINCE / ON TIME), follows the per-node
    /// frontier of SPEC §5 (idle nodes reported as stale, late records flagged), reconnects to
    /// a lost server, and stops on SIGINT/SIGTERM after flushing. Exit status: 0 after a clean
    /// stop, 2 for an error in the query, 1 if it cannot go on.
    Watch(Box<watch::WatchArgs>),
    /// See rql at work: a simulated cluster, live alerts, and consistent cuts against naive
    /// physical-time ordering.
    ///
    /// Starts a log server on a loopback port, runs nodes with skewed clocks that pay each
    /// other (money is conserved), a replicated register whose followers lag, and now and then
    /// an injected bug; prints the alerts of live queries as they fire, then a summary: the
    /// consistent-cut query catches exactly the injected bugs, ordering the same records by
    /// physical time raises false alarms. Ctrl-C ends it early, with the summary. Exit status:
    /// 0 after the summary, 1 if the demo could not run.
    Demo(demo::DemoArgs),
    /// The interactive shell (also `rql` alone): statements end with ';', `\help` lists
    /// the meta-commands.
    ///
    /// On a terminal: line editing, history, Tab completion, and Ctrl-C cancels a running
    /// query. With piped input: the statements run in order, results on stdout, errors on
    /// stderr. Exit status (piped input): 0 if every statement succeeded, 2 if some had an
    /// error in the query or command (and none failed otherwise), 1 if a run, trace or server
    /// failed.
    Repl(Box<shell::ReplArgs>),
    /// Convert a trace between NDJSON and Parquet (by extension: .ndjson/.jsonl, .parquet).
    ///
    /// Parquet traces hold one row per change: rec (u64), idx (u32), node, hlc (u64, packed
    /// l<<16|c), op (set, unset, add, remove, leave, heartbeat), key (log.key), v_int, v_float,
    /// v_str, v_bool, v_json (sets, structs, add/remove elements), pt. Every record survives
    /// exactly. Exit status: 0 on success, 1 for a bad trace or an I/O error.
    Convert(convert::ConvertArgs),
    /// Run DataFusion SQL over a trace (table `trace`: one row per change, the Parquet trace
    /// schema) and, with -q, over an RQL query's output (table `results`: seq, hlc, node, variable,
    /// value; one row per value).
    ///
    /// Exit status: 0 on success, 2 for an error in the RQL query, 1 otherwise (bad SQL, bad
    /// trace).
    Sql(Box<sql::SqlArgs>),
    /// Export a log server's retained records (from --since to --until) as a trace file,
    /// Parquet or NDJSON by OUT's extension, sorted by HLC.
    ///
    /// Exit status: 0 on success, 1 if the server cannot be read or the file written.
    Export(Box<export::ExportArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(command) = cli.command else {
        return shell::run(&shell::ReplArgs::defaults());
    };
    match command {
        Command::Check(src) => check::run(&src),
        Command::Replay(args) => replay::run_replay(&args),
        Command::Explain(args) => replay::run_explain(&args),
        Command::Gen(args) => gen::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Watch(args) => watch::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Repl(args) => shell::run(&args),
        Command::Convert(args) => convert::run(&args),
        Command::Sql(args) => sql::run(&args),
        Command::Export(args) => export::run(&args),
    }
}
