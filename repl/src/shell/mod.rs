//! `rql repl` (and `rql` alone): the interactive shell. Statements end with `;` and may span
//! lines; meta-commands start with `\` (`meta.rs`). On a terminal it edits lines with rustyline
//! (history, completion, highlighting: `editor.rs`) and a Ctrl-C cancels the running query,
//! not the shell. With piped input it runs the statements in order, prints only results on
//! stdout, errors on stderr, and exits non-zero if any statement failed.
//!
//! A query runs over a trace held in memory (`source.rs`): trace files read once by `\open`,
//! or, after `\connect`, the log servers' retained history read afresh for every query;
//! `\watch` runs a query live with `rql watch`'s loop (`crate::watch::follow`). `\sql` runs
//! DataFusion SQL over that trace (table `trace`) and the last query's output (table
//! `results`, kept by `exec.rs`).

mod editor;
mod exec;
mod input;
mod meta;
mod source;

use std::future::Future;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser};
use log_server::parquet::{run_sql, ParquetOptions, SqlFormat, SqlTrace};
use rql_exec::{ExecOptions, Format};
use rql_parser::{parse_single, Diagnostic, Statement as Ast};
use rql_planner::{explain, plan_statement, Catalog, Plan};
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{ColorMode, CompletionType, Config, Editor};

use crate::query::{EXIT_FAILURE, EXIT_QUERY_ERROR};
use crate::replay::{output_format, FormatArg};
use crate::watch::{follow, live_catalog, LiveConfig, Sink};
use editor::ShellHelper;
use exec::{Ended, Results, RunError, MAX_RESULT_ROWS};
use input::{Item, Splitter, Statement};
use source::{fetch_history, load_files, TraceData};

#[derive(Args, Clone, Debug)]
pub struct ReplArgs {
    /// Trace files to open at the start (NDJSON, merged into one trace), as `\open` does.
    #[arg(long = "trace", value_name = "FILE", num_args = 1.., conflicts_with = "servers")]
    pub traces: Vec<String>,
    /// A log server to query (repeat for several), as `\connect` does: queries read its
    /// retained history, `\watch` follows it live.
    #[arg(long = "server", value_name = "URL")]
    pub servers: Vec<String>,
    /// Output format [default: table on a terminal, json otherwise]; `\format` changes it.
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// The history file [default: <user data dir>/rql/history].
    #[arg(long, value_name = "FILE", env = "RQL_HISTORY")]
    pub history: Option<PathBuf>,
    /// Keep no history (nothing is read or written).
    #[arg(long)]
    pub no_history: bool,
    /// Skip bad trace records (counted and reported) instead of refusing the trace.
    #[arg(long)]
    pub skip_bad: bool,
    /// Most outer bindings enumerated for one cut before a query stops with an error.
    #[arg(long, value_name = "N", default_value_t = rql_exec::DEFAULT_MAX_BINDINGS)]
    pub max_bindings: u64,
    /// Bearer token of the log servers. Prefer the environment variable, which other users
    /// cannot see in the process list.
    #[arg(long, value_name = "TOKEN", env = "RQL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// `\watch`: a node that sent nothing for this long is idle (left out of the frontier).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
}

impl ReplArgs {
    /// The arguments of a bare `rql` (the defaults, and the environment).
    pub fn defaults() -> ReplArgs {
        #[derive(Parser)]
        struct Bare {
            #[command(flatten)]
            args: ReplArgs,
        }
        Bare::parse_from(["rql"]).args
    }
}

/// How a statement failed, for the exit status of piped input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Failure {
    /// An error in a query or meta-command: exit status 2.
    Query,
    /// A run, a trace or a server that failed: exit status 1 (it wins over 2).
    Run,
}

/// What to do after a statement.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Quit,
}

enum Source {
    None,
    Trace {
        data: TraceData,
    },
    Live {
        servers: Vec<String>,
        data: TraceData,
    },
}

struct Session {
    source: Source,
    format: Format,
    timing: bool,
    args: ReplArgs,
    /// The last query run (what `\watch` without a query watches).
    last_query: Option<String>,
    /// The output of the last query run, as `\sql`'s table `results`.
    results: Results,
    interactive: bool,
    /// Diagnostics on stderr in colour.
    color: bool,
    /// Set by Ctrl-C (interactive only); checked between batches of a running query.
    cancel: Arc<AtomicBool>,
    runtime: Option<tokio::runtime::Runtime>,
    failure: Option<Failure>,
    /// Standard output is gone (`| head`): stop reading input.
    closed: bool,
    /// The names of the source changed: completion must learn them.
    names_changed: bool,
}

pub fn run(args: &ReplArgs) -> ExitCode {
    let interactive = std::io::stdin().is_terminal();
    let no_color =
        std::env::var_os("NO_COLOR").is_some() || std::env::var("TERM").is_ok_and(|t| t == "dumb");
    let mut session = Session {
        source: Source::None,
        format: output_format(args.format),
        timing: false,
        args: args.clone(),
        last_query: None,
        results: Results::new(),
        interactive,
        color: interactive && std::io::stderr().is_terminal() && !no_color,
        cancel: Arc::new(AtomicBool::new(false)),
        runtime: None,
        failure: None,
        closed: false,
        names_changed: false,
    };
    if interactive {
        // Only while a query runs: at the prompt the terminal is raw and Ctrl-C is a key.
        if let Err(e) =
            signal_hook::flag::register(signal_hook::consts::SIGINT, session.cancel.clone())
        {
            eprintln!("warning: cannot catch Ctrl-C ({e}); it will end the shell");
        }
        let color = std::io::stdout().is_terminal() && !no_color;
        interactive_loop(&mut session, color)
    } else {
        session.open_initial();
        piped_loop(&mut session)
    }
}

/// Standard input is not a terminal: statements in order, no prompt, no colour.
fn piped_loop(session: &mut Session) -> ExitCode {
    let mut splitter = Splitter::default();
    for line in std::io::stdin().lock().lines() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                session.fail(Failure::Run, &format!("cannot read standard input: {e}"));
                break;
            }
        };
        for item in splitter.push_line(&line) {
            if session.handle(item, "<stdin>") == Flow::Quit {
                return session.exit_code();
            }
        }
    }
    if let Some(last) = splitter.finish() {
        session.handle(last, "<stdin>");
    }
    session.exit_code()
}

fn interactive_loop(session: &mut Session, color: bool) -> ExitCode {
    let config = Config::builder()
        .max_history_size(5000)
        .and_then(|b| b.history_ignore_dups(true))
        .map(|b| {
            b.history_ignore_space(true)
                .completion_type(CompletionType::List)
                .auto_add_history(false)
                .color_mode(if color {
                    ColorMode::Enabled
                } else {
                    ColorMode::Disabled
                })
                .build()
        });
    let editor = config.and_then(Editor::<ShellHelper, DefaultHistory>::with_config);
    let mut editor = match editor {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot set up the terminal: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    editor.set_helper(Some(ShellHelper::new(color)));
    let history = history_path(&session.args);
    if let Some(path) = &history {
        if path.exists() {
            if let Err(e) = editor.load_history(path) {
                eprintln!("warning: cannot read the history {}: {e}", path.display());
            }
        }
    }
    println!(
        "rql {}: queries over the consistent cuts of a trace. End statements with ';'.\n\
         \\help lists the commands, Tab completes, \\q or Ctrl-D quits.",
        env!("CARGO_PKG_VERSION")
    );
    session.open_initial();
    if matches!(session.source, Source::None) {
        println!(
            "No source is open: \\open FILE... reads trace files, \\connect URL a log server."
        );
    }
    let mut splitter = Splitter::default();
    // The lines of the statement being typed: one history entry once it is complete.
    let mut entry: Vec<String> = Vec::new();
    let mut history_error = false;
    loop {
        if std::mem::take(&mut session.names_changed) {
            if let Some(h) = editor.helper_mut() {
                h.names = session.names();
            }
        }
        splitter.restart_lines();
        let prompt = if splitter.is_pending() {
            "...> "
        } else {
            "rql> "
        };
        match editor.readline(prompt) {
            Ok(text) => {
                entry.push(text.clone());
                let mut quit = false;
                for line in text.split('\n') {
                    for item in splitter.push_line(line) {
                        if session.handle(item, "<input>") == Flow::Quit {
                            quit = true;
                        }
                    }
                    if quit {
                        break;
                    }
                }
                if !splitter.is_pending() {
                    let joined = entry.join("\n");
                    entry.clear();
                    if !joined.trim().is_empty() {
                        let _ = editor.add_history_entry(joined);
                        if let Some(path) = &history {
                            if let Err(e) = save_history(&mut editor, path) {
                                if !std::mem::replace(&mut history_error, true) {
                                    eprintln!(
                                        "warning: cannot write the history {}: {e}",
                                        path.display()
                                    );
                                }
                            }
                        }
                    }
                }
                if quit || session.closed {
                    break;
                }
            }
            // Ctrl-C at the prompt drops what was typed, as in a shell.
            Err(ReadlineError::Interrupted) => {
                splitter.clear();
                entry.clear();
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("error: cannot read the terminal: {e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        }
    }
    ExitCode::SUCCESS
}

/// Where the history goes: `--history`/`RQL_HISTORY`, or the user data directory; none with
/// `--no-history`.
fn history_path(args: &ReplArgs) -> Option<PathBuf> {
    if args.no_history {
        return None;
    }
    args.history
        .clone()
        .or_else(|| dirs::data_dir().map(|d| d.join("rql").join("history")))
}

fn save_history(
    editor: &mut Editor<ShellHelper, DefaultHistory>,
    path: &std::path::Path,
) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    // Appending (not rewriting) lets two shells share one history file.
    editor.append_history(path).map_err(|e| e.to_string())
}

/// Waits until `flag` is set (polling: the signal handler can only set an atomic).
async fn flag_set(flag: &AtomicBool) {
    while !flag.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Session {
    fn exit_code(&self) -> ExitCode {
        match self.failure {
            None => ExitCode::SUCCESS,
            Some(Failure::Query) => ExitCode::from(EXIT_QUERY_ERROR),
            Some(Failure::Run) => ExitCode::from(EXIT_FAILURE),
        }
    }

    /// Reports an error (never ending the session) and remembers the worst failure.
    fn fail(&mut self, kind: Failure, message: &str) {
        eprintln!("error: {message}");
        self.failure = self.failure.max(Some(kind));
    }

    /// A status line for a person at a terminal; piped input gets only results on stdout.
    fn status(&self, message: &str) {
        if self.interactive {
            println!("{message}");
        }
    }

    fn diagnostic(&mut self, d: &Diagnostic, stmt: &Statement, origin: &str) {
        // Pad the text so that the line and column shown are those of the whole input.
        let pad = "\n".repeat(stmt.line.saturating_sub(1)) + &" ".repeat(stmt.column - 1);
        let mut shifted = d.clone();
        shifted.span.start += pad.len();
        shifted.span.end += pad.len();
        let text = pad + &stmt.text;
        eprintln!("{}\n", shifted.render(&text, origin, self.color));
        self.failure = self.failure.max(Some(Failure::Query));
    }

    fn names(&self) -> editor::Names {
        let data = match &self.source {
            Source::None => return editor::Names::default(),
            Source::Trace { data } | Source::Live { data, .. } => data,
        };
        let logs = data.logs();
        editor::Names {
            logs: logs.keys().map(|l| l.to_string()).collect(),
            vars: logs
                .iter()
                .flat_map(|(log, keys)| keys.iter().map(move |(k, _)| format!("{log}.{k}")))
                .collect(),
            nodes: data.names.nodes.clone(),
        }
    }

    fn runtime(&mut self) -> Result<&tokio::runtime::Runtime, String> {
        if self.runtime.is_none() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the async runtime: {e}"))?;
            self.runtime = Some(rt);
        }
        self.runtime
            .as_ref()
            .ok_or_else(|| "no async runtime".to_string())
    }

    /// Runs `work` until it ends or Ctrl-C (`None`).
    fn cancellable<F: Future>(&mut self, work: F) -> Result<Option<F::Output>, String> {
        let cancel = Arc::clone(&self.cancel);
        cancel.store(false, Ordering::Relaxed);
        let rt = self.runtime()?;
        Ok(rt.block_on(async {
            tokio::select! {
                out = work => Some(out),
                _ = flag_set(&cancel) => None,
            }
        }))
    }

    /// The source named on the command line.
    fn open_initial(&mut self) {
        if !self.args.traces.is_empty() {
            let paths = self.args.traces.clone();
            self.open(&paths);
        } else if !self.args.servers.is_empty() {
            let servers = self.args.servers.clone();
            self.connect(&servers);
        }
    }

    fn handle(&mut self, item: Item, origin: &str) -> Flow {
        if self.closed {
            return Flow::Quit;
        }
        let flow = match item {
            Item::Statement(stmt) => {
                self.statement(&stmt, origin);
                Flow::Continue
            }
            Item::Meta {
                text,
                line,
                discarded,
            } => {
                if discarded {
                    eprintln!(
                        "note: the unfinished statement before {text} was dropped (statements \
                         end with ';')"
                    );
                }
                self.meta(&text, line, origin)
            }
        };
        if self.closed {
            Flow::Quit
        } else {
            flow
        }
    }

    fn meta(&mut self, text: &str, line: usize, origin: &str) -> Flow {
        let (name, rest) = meta::split_command(text);
        let query_at = || Statement {
            text: rest.to_string(),
            line,
            column: meta::rest_offset(text, rest) + 1,
        };
        match name {
            "\\q" => return Flow::Quit,
            "\\help" => print!("{}", meta::help()),
            "\\open" => match meta::split_args(rest) {
                Ok(paths) if !paths.is_empty() => self.open(&paths),
                Ok(_) => self.fail(Failure::Query, "\\open needs trace files: \\open FILE..."),
                Err(e) => self.fail(Failure::Query, &e),
            },
            "\\connect" => match meta::split_args(rest) {
                Ok(urls) if !urls.is_empty() => self.connect(&urls),
                Ok(_) => self.fail(
                    Failure::Query,
                    "\\connect needs a log server: \\connect http://127.0.0.1:7400",
                ),
                Err(e) => self.fail(Failure::Query, &e),
            },
            "\\logs" => self.show_logs(),
            "\\sql" => self.sql(rest),
            "\\nodes" => self.show_nodes(),
            "\\explain" if rest.is_empty() => self.fail(
                Failure::Query,
                "\\explain needs a query: \\explain SELECT ...",
            ),
            "\\explain" => self.explain(&query_at(), origin),
            "\\watch" => {
                let stmt = if rest.is_empty() {
                    match &self.last_query {
                        Some(q) => Statement {
                            text: q.clone(),
                            line: 1,
                            column: 1,
                        },
                        None => {
                            self.fail(
                                Failure::Query,
                                "\\watch needs a query: \\watch SELECT ... (or run one first)",
                            );
                            return Flow::Continue;
                        }
                    }
                } else {
                    query_at()
                };
                self.watch(&stmt, origin);
            }
            "\\timing" => match rest {
                "" => self.timing = !self.timing,
                "on" => self.timing = true,
                "off" => self.timing = false,
                other => {
                    self.fail(
                        Failure::Query,
                        &format!("\\timing takes on or off, not {other:?}"),
                    );
                    return Flow::Continue;
                }
            },
            "\\format" => match rest {
                "" => println!("{}", format_name(self.format)),
                "table" => self.format = Format::Table,
                "json" => self.format = Format::Json,
                "csv" => self.format = Format::Csv,
                other => self.fail(
                    Failure::Query,
                    &format!("\\format takes table, json or csv, not {other:?}"),
                ),
            },
            other => {
                let hint = match meta::closest(other) {
                    Some(c) => format!("did you mean {c}? (\\help lists the commands)"),
                    None => "\\help lists the commands".to_string(),
                };
                self.fail(
                    Failure::Query,
                    &format!("unknown command {other}\nhint: {hint}"),
                );
            }
        }
        if name == "\\timing" {
            self.status(&format!(
                "Timing is {}.",
                if self.timing { "on" } else { "off" }
            ));
        }
        Flow::Continue
    }

    fn open(&mut self, paths: &[String]) {
        let started = Instant::now();
        let (tx, rx) = std::sync::mpsc::channel();
        let owned = paths.to_vec();
        let skip_bad = self.args.skip_bad;
        // Read on another thread, so that Ctrl-C can give up on a large trace at once (the
        // thread finishes on its own and its result is dropped).
        std::thread::spawn(move || {
            let _ = tx.send(load_files(&owned, skip_bad));
        });
        self.cancel.store(false, Ordering::Relaxed);
        let loaded = loop {
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(result) => break result,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if self.cancel.load(Ordering::Relaxed) {
                        eprintln!("cancelled: the trace was not opened");
                        return;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    break Err("reading the trace failed".to_string())
                }
            }
        };
        match loaded {
            Ok((data, warnings)) => {
                for w in warnings {
                    eprintln!("warning: {w}");
                }
                self.status(&format!(
                    "Opened {}: {} ({:.1} s).",
                    paths.join(", "),
                    data.describe(),
                    started.elapsed().as_secs_f64()
                ));
                self.source = Source::Trace { data };
                self.names_changed = true;
            }
            Err(e) => {
                let kept = match self.source {
                    Source::None => "",
                    _ => "\nnote: the source that was open stays open",
                };
                self.fail(Failure::Run, &format!("{e}{kept}"));
            }
        }
    }

    /// A live source: reads the history retained now (what a query sees). False if that failed
    /// (reported) or was cancelled.
    fn refresh(&mut self) -> bool {
        if let Source::Live { servers, .. } = &self.source {
            let servers = servers.clone();
            let Some(history) = self.fetch(&servers) else {
                return false;
            };
            self.source = Source::Live {
                servers,
                data: history.data,
            };
            self.names_changed = true;
        }
        true
    }

    /// Reads the retained history of `servers` (Ctrl-C gives up): `None` on failure (reported).
    fn fetch(&mut self, servers: &[String]) -> Option<source::History> {
        let token = self.args.token.clone();
        match self.cancellable(fetch_history(servers, token.as_deref())) {
            Ok(Some(Ok(history))) => Some(history),
            Ok(Some(Err(e))) | Err(e) => {
                self.fail(Failure::Run, &e);
                None
            }
            Ok(None) => {
                eprintln!("cancelled: the log server's history was not read");
                None
            }
        }
    }

    fn connect(&mut self, servers: &[String]) {
        let Some(history) = self.fetch(servers) else {
            return;
        };
        // Said once here rather than before every query, which reads the history again.
        for n in &history.notes {
            eprintln!("note: {n}");
        }
        self.status(&format!(
            "Connected to {}: {} retained. Queries read this history; \\watch QUERY follows it \
             live.",
            servers.join(", "),
            history.data.describe()
        ));
        self.source = Source::Live {
            servers: servers.to_vec(),
            data: history.data,
        };
        self.names_changed = true;
    }

    /// The catalog to plan against: the source's, or an empty one (EXPLAIN needs no source).
    fn catalog(&self) -> Catalog {
        match &self.source {
            Source::None => Catalog {
                now_ms: log_server::hlc::system_time_ms(),
                ..Catalog::default()
            },
            Source::Trace { data } => data.catalog(false),
            Source::Live { data, .. } => data.catalog(true),
        }
    }

    fn parse(&mut self, stmt: &Statement, origin: &str) -> Option<Ast> {
        match parse_single(&stmt.text) {
            Ok(ast) => Some(ast),
            Err(d) => {
                self.diagnostic(&d, stmt, origin);
                None
            }
        }
    }

    fn plan(
        &mut self,
        ast: &Ast,
        stmt: &Statement,
        catalog: &Catalog,
        origin: &str,
    ) -> Option<Plan> {
        match plan_statement(ast, &stmt.text, catalog) {
            Ok(plan) => {
                for n in &plan.notes {
                    eprintln!("note: {}", n.one_line(&stmt.text));
                }
                Some(plan)
            }
            Err(d) => {
                self.diagnostic(&d, stmt, origin);
                None
            }
        }
    }

    fn explain(&mut self, stmt: &Statement, origin: &str) {
        let Some(ast) = self.parse(stmt, origin) else {
            return;
        };
        let catalog = self.catalog();
        if let Some(plan) = self.plan(&ast, stmt, &catalog, origin) {
            print!("{}", explain(&plan, self.args.max_bindings));
        }
    }

    fn statement(&mut self, stmt: &Statement, origin: &str) {
        let Some(ast) = self.parse(stmt, origin) else {
            return;
        };
        self.last_query = Some(stmt.text.clone());
        if ast.explain {
            let catalog = self.catalog();
            if let Some(plan) = self.plan(&ast, stmt, &catalog, origin) {
                print!("{}", explain(&plan, self.args.max_bindings));
            }
            return;
        }
        // A live source: the query reads the history retained now.
        if !self.refresh() {
            return;
        }
        if matches!(self.source, Source::None) {
            self.fail(
                Failure::Query,
                "no source is open\nhint: \\open FILE... reads trace files (NDJSON); \\connect \
                 URL reads a log server",
            );
            return;
        }
        let catalog = self.catalog();
        let Some(plan) = self.plan(&ast, stmt, &catalog, origin) else {
            return;
        };
        let data = match &self.source {
            Source::Trace { data } | Source::Live { data, .. } => data,
            Source::None => return,
        };
        let opts = ExecOptions {
            max_bindings: self.args.max_bindings,
        };
        self.cancel.store(false, Ordering::Relaxed);
        // `results` becomes this query's output, whatever it was before.
        self.results = Results::new();
        let result = exec::run_query(
            &plan,
            data,
            opts,
            self.format,
            &self.cancel,
            &mut self.results,
        );
        let changes = plan.emit == rql_parser::Emit::Changes;
        match result {
            Ok(run) => match run.ended {
                Ended::Finished(stats) => {
                    if self.timing {
                        let line = exec::timing_line(run.elapsed, stats.candidates);
                        // The table's footer is part of the table; JSON Lines and CSV are data
                        // for other programs, so the time goes to stderr.
                        if self.format == Format::Table {
                            println!("{line}");
                        } else {
                            eprintln!("{line}");
                        }
                    }
                    if !stats.warnings.is_empty() {
                        let list: Vec<String> = stats
                            .warnings
                            .iter()
                            .map(|(k, n)| format!("{}={n}", k.name()))
                            .collect();
                        eprintln!("warning: evaluation warnings: {}", list.join(", "));
                    }
                    if let Err(e) = exec::flush_stdout() {
                        self.output_failed(e);
                    }
                }
                Ended::Cancelled { fraction } => {
                    let noun = if changes { "record" } else { "cut" };
                    let unprinted = if self.format != Format::Json && run.emitted > 0 {
                        "; a partial table or CSV is not printed"
                    } else {
                        ""
                    };
                    eprintln!(
                        "cancelled after {} {noun}{} ({:.0}% of the steps evaluated{unprinted})",
                        run.emitted,
                        if run.emitted == 1 { "" } else { "s" },
                        fraction * 100.0
                    );
                }
            },
            Err(RunError::Exec(e)) => self.fail(Failure::Run, &e),
            Err(RunError::Write(e)) => self.output_failed(e),
        }
    }

    /// `\sql SQL`: DataFusion SQL over the source (table `trace`, the Parquet trace schema)
    /// and the last query's output (table `results`), printed in the shell's format.
    fn sql(&mut self, text: &str) {
        let text = text.trim();
        // The `;` that ended it is not SQL DataFusion wants.
        let sql = text.strip_suffix(';').unwrap_or(text).trim_end();
        if sql.is_empty() {
            self.fail(
                Failure::Query,
                "\\sql needs an SQL statement, e.g. \\sql SELECT node, count(*) FROM results \
                 GROUP BY node;",
            );
            return;
        }
        if matches!(self.source, Source::None) {
            self.fail(
                Failure::Query,
                "\\sql needs a source for its table trace, and no source is open\nhint: \
                 \\open FILE... reads trace files (NDJSON); \\connect URL reads a log server",
            );
            return;
        }
        if !self.refresh() {
            return;
        }
        let data = match &self.source {
            Source::Trace { data } | Source::Live { data, .. } => data,
            Source::None => return,
        };
        let format = match self.format {
            Format::Table => SqlFormat::Table,
            Format::Json => SqlFormat::Json,
            Format::Csv => SqlFormat::Csv,
        };
        let trace = SqlTrace::Columnar {
            names: &data.names,
            steps: &data.trace,
        };
        self.cancel.store(false, Ordering::Relaxed);
        let started = Instant::now();
        // The whole result is in memory anyway (DataFusion collects it): written at once.
        let mut out = Vec::new();
        let result = run_sql(
            sql,
            trace,
            Some(&self.results.rows),
            &ParquetOptions::default(),
            format,
            Some(&self.cancel),
            &mut out,
        );
        let elapsed = started.elapsed();
        let run = match result {
            Ok(run) => run,
            Err(e) => {
                let hint = if e.contains("table '") && e.contains("not found") {
                    "\nhint: the tables are trace (the source, one row per change) and results \
                     (the output of the last query)"
                } else {
                    ""
                };
                self.fail(Failure::Query, &format!("{e}{hint}"));
                return;
            }
        };
        if run.cancelled {
            eprintln!("cancelled: the SQL statement was stopped; nothing was printed");
            return;
        }
        {
            use std::io::Write;
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            if let Err(e) = lock.write_all(&out).and_then(|()| lock.flush()) {
                self.output_failed(e);
                return;
            }
        }
        if run.read_results && self.results.truncated {
            eprintln!(
                "warning: table results holds only the first {MAX_RESULT_ROWS} rows of the \
                 last query's output (the shell keeps no more)\nhint: rql sql \"SQL\" TRACE... \
                 -q \"QUERY\" runs SQL over all of it"
            );
        }
        if self.timing {
            let line = format!("Time: {:.3} ms", elapsed.as_secs_f64() * 1000.0);
            if self.format == Format::Table {
                println!("{line}");
            } else {
                eprintln!("{line}");
            }
        }
    }

    /// Standard output failed: a closed pipe means the reader has enough (stop quietly).
    fn output_failed(&mut self, e: std::io::Error) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            self.fail(Failure::Run, &format!("cannot write output: {e}"));
        }
        self.closed = true;
    }

    fn watch(&mut self, stmt: &Statement, origin: &str) {
        let servers = match &self.source {
            Source::Live { servers, .. } => servers.clone(),
            _ => {
                self.fail(
                    Failure::Query,
                    "\\watch follows log servers, and none is connected\nhint: \\connect URL \
                     first (a trace file has no live tail)",
                );
                return;
            }
        };
        let Some(ast) = self.parse(stmt, origin) else {
            return;
        };
        self.last_query = Some(stmt.text.clone());
        let mut catalog = live_catalog();
        if let Source::Live { data, .. } = &self.source {
            catalog.vars = data.catalog(true).vars;
        }
        let Some(plan) = self.plan(&ast, stmt, &catalog, origin) else {
            return;
        };
        if plan.explain {
            print!("{}", explain(&plan, self.args.max_bindings));
            return;
        }
        let config = LiveConfig {
            servers: servers.clone(),
            token: self.args.token.clone(),
            idle_timeout: self.args.idle_timeout,
            max_bindings: self.args.max_bindings,
            max_buffered: 1_000_000,
            catch_up_timeout: Duration::from_secs(30),
        };
        if self.interactive {
            eprintln!("watching {}; Ctrl-C stops", servers.join(", "));
        }
        let mut sink = Sink::new(self.format, plan.emit == rql_parser::Emit::Changes);
        let cancel = Arc::clone(&self.cancel);
        cancel.store(false, Ordering::Relaxed);
        let result = self
            .runtime()
            .map(|rt| rt.block_on(follow(&plan, &config, &mut sink, flag_set(&cancel))));
        match result.and_then(|r| r) {
            Ok(watched) => {
                let n = sink.records();
                eprintln!(
                    "watch stopped after {n} record{}",
                    if n == 1 { "" } else { "s" }
                );
                if !watched.stats.warnings.is_empty() {
                    let list: Vec<String> = watched
                        .stats
                        .warnings
                        .iter()
                        .map(|(k, n)| format!("{}={n}", k.name()))
                        .collect();
                    eprintln!("warning: evaluation warnings: {}", list.join(", "));
                }
            }
            Err(e) => self.fail(Failure::Run, &e),
        }
    }

    fn show_logs(&mut self) {
        if !self.refresh() {
            return;
        }
        match &self.source {
            Source::Trace { data } | Source::Live { data, .. } => {
                print!("{}", meta::logs_table(data))
            }
            Source::None => self.no_source(),
        }
    }

    fn show_nodes(&mut self) {
        match &self.source {
            Source::Trace { data } => print!("{}", meta::nodes_table(data)),
            Source::Live { servers, .. } => {
                let servers = servers.clone();
                let token = self.args.token.clone();
                let work = async {
                    let mut all = Vec::new();
                    for url in &servers {
                        let status = crate::watch::fetch_status(url, token.as_deref())
                            .await
                            .map_err(|e| format!("{url}: {e}"))?;
                        all.push(status);
                    }
                    Ok::<_, String>(all)
                };
                match self.cancellable(work) {
                    Ok(Some(Ok(status))) => print!(
                        "{}",
                        meta::live_nodes_table(
                            &servers,
                            &status,
                            log_server::hlc::system_time_ms()
                        )
                    ),
                    Ok(Some(Err(e))) | Err(e) => self.fail(Failure::Run, &e),
                    Ok(None) => eprintln!("cancelled"),
                }
            }
            Source::None => self.no_source(),
        }
    }

    fn no_source(&mut self) {
        self.fail(
            Failure::Query,
            "no source is open\nhint: \\open FILE... reads trace files (NDJSON); \\connect URL \
             reads a log server",
        );
    }
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Table => "table",
        Format::Json => "json",
        Format::Csv => "csv",
    }
}
