//! `rql watch`: a live query over one or more log servers (SPEC §5). Records from every
//! server's stream go into one [`LiveQuery`] (per-node frontier, idle/late/leave rules, the
//! replay engine), and its records go to stdout as soon as their step is final — and, with
//! `--webhook`, to an HTTP endpoint.
//!
//! Without ON TIME or SINCE the query starts at the frontier of the moment it starts: it first
//! reads each server's history up to the last record each node had then (from `/v1/nodes`),
//! evaluates that cut (seq 1), and goes on live.

mod source;
pub(crate) use source::{fetch_status, ServerStatus};
mod webhook;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use log_server::Hlc;
use rql_exec::live::{LiveOptions, LiveQuery};
use rql_exec::{ExecOptions, Flow, Format, OutputRecord, RecordWriter, Stats};
use rql_planner::{Catalog, Plan};
use tokio::sync::mpsc;

use crate::query::{LoadedQuery, QuerySource, EXIT_FAILURE, EXIT_QUERY_ERROR};
use crate::replay::{output_format, plan_all, report, FormatArg};
use source::{Event, SourceConfig};
use webhook::{Webhook, WebhookConfig};

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// A log server to read (e.g. http://127.0.0.1:7400); repeat for several. A node must
    /// send to one server only.
    #[arg(long = "server", value_name = "URL", required = true)]
    pub servers: Vec<String>,
    #[command(flatten)]
    pub query: QuerySource,
    /// Output format [default: table on a terminal, json otherwise].
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// A node that sent nothing for this long is idle: left out of the frontier and listed
    /// as `stale` (e.g. 2s, 500ms).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// POST every emitted record (for EMIT CHANGES: every begin and end) as JSON to this URL,
    /// with retries; a slow or failing endpoint never holds up the query.
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
    /// Bearer token of the log servers. Prefer the environment variable, which other users
    /// cannot see in the process list.
    #[arg(long, value_name = "TOKEN", env = "RQL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print statistics to stderr when the watch ends.
    #[arg(long)]
    pub stats: bool,
    /// Most outer bindings enumerated for one cut before the query stops with an error.
    #[arg(long, value_name = "N", default_value_t = rql_exec::DEFAULT_MAX_BINDINGS)]
    pub max_bindings: u64,
    /// Records held waiting for their step to become final; beyond this the frontier is
    /// forced forward (records of the nodes left behind then arrive late, flagged, never lost).
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub max_buffered: usize,
    /// How long to wait for the servers' history at the start before going live anyway.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub catch_up_timeout: Duration,
}

pub fn run(args: &WatchArgs) -> ExitCode {
    let q = match LoadedQuery::load(&args.query) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let catalog = live_catalog();
    let plans = match plan_all(&q, &catalog) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let [plan] = plans.as_slice() else {
        eprintln!(
            "error: rql watch runs one query, and {} were given\nhint: start one watch per \
             query",
            plans.len()
        );
        return ExitCode::from(EXIT_QUERY_ERROR);
    };
    if plan.explain {
        print!("{}", rql_planner::explain(plan, args.max_bindings));
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(watch(plan, args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// What the planner knows of a live source: no variables yet, NOW is the clock, SINCE allowed.
pub(crate) fn live_catalog() -> Catalog {
    Catalog {
        vars: BTreeMap::new(),
        now_ms: log_server::hlc::system_time_ms(),
        live: true,
    }
}

/// `rql watch` itself: [`follow`] until SIGINT/SIGTERM, into stdout and the webhook, then the
/// statistics.
async fn watch(plan: &Plan, args: &WatchArgs) -> Result<(), String> {
    let mut terminate = terminate_signal()?;
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    let webhook = match &args.webhook {
        Some(url) => Some(Webhook::start(WebhookConfig::new(url.clone()))?),
        None => None,
    };
    let mut sink = Sink::new(
        output_format(args.format),
        plan.emit == rql_parser::Emit::Changes,
    );
    sink.webhook = webhook;
    let config = LiveConfig {
        servers: args.servers.clone(),
        token: args.token.clone(),
        idle_timeout: args.idle_timeout,
        max_bindings: args.max_bindings,
        max_buffered: args.max_buffered,
        catch_up_timeout: args.catch_up_timeout,
    };
    let result = follow(plan, &config, &mut sink, stop).await;
    let counters = sink
        .webhook
        .as_ref()
        .map(|h| std::sync::Arc::clone(&h.counters));
    if let Some(hook) = sink.webhook.take() {
        hook.finish(Duration::from_secs(2)).await;
    }
    let watched = result?;
    report(&watched.stats, args.stats, watched.received);
    if let Some(c) = counters {
        use std::sync::atomic::Ordering::Relaxed;
        let (failed, dropped) = (c.failed.load(Relaxed), c.dropped.load(Relaxed));
        if args.stats || failed > 0 || dropped > 0 {
            eprintln!(
                "stats: webhook: {} delivered, {failed} failed, {dropped} dropped (queue full), \
                 {} retries",
                c.delivered.load(Relaxed),
                c.retries.load(Relaxed)
            );
        }
    }
    Ok(())
}

/// Milliseconds of a monotonic clock, offset so that "this long ago" never underflows.
struct Clock(Instant);

impl Clock {
    const BASE_MS: u64 = 1 << 40;

    fn now_ms(&self) -> u64 {
        Self::BASE_MS + self.0.elapsed().as_millis() as u64
    }
}

/// Where a live query's records go.
pub(crate) trait Output {
    fn emit(&mut self, rec: OutputRecord);
    /// Called after every batch of records, since a live query has no end to wait for: make
    /// them visible now. An error stops the query.
    fn flush(&mut self) -> Result<(), String>;
}

/// Records to stdout in one of the formats (and, for `rql watch --webhook`, to the webhook).
pub(crate) struct Sink {
    format: Format,
    changes: bool,
    out: std::io::BufWriter<std::io::Stdout>,
    webhook: Option<Webhook>,
    error: Option<std::io::Error>,
    records: u64,
}

impl Sink {
    /// `changes`: the query is `EMIT CHANGES` (the table gets an `event` column).
    pub(crate) fn new(format: Format, changes: bool) -> Sink {
        Sink {
            format,
            changes,
            out: std::io::BufWriter::new(std::io::stdout()),
            webhook: None,
            error: None,
            records: 0,
        }
    }

    /// Records emitted so far.
    pub(crate) fn records(&self) -> u64 {
        self.records
    }
}

impl Output for Sink {
    fn emit(&mut self, rec: OutputRecord) {
        self.records += 1;
        if let Some(hook) = &self.webhook {
            if let Ok(json) = serde_json::to_string(&rec) {
                hook.send(json);
            }
        }
        if self.error.is_some() {
            return;
        }
        // Table and CSV lay out each record as it comes: a live query has no end to wait for.
        let mut writer = RecordWriter::new(self.format, &mut self.out, self.changes);
        let result = writer
            .write(&rec)
            .and_then(|()| writer.finish().map(|_| ()));
        if let Err(e) = result {
            self.error = Some(e);
        }
    }

    fn flush(&mut self) -> Result<(), String> {
        if self.error.is_none() {
            if let Err(e) = self.out.flush() {
                self.error = Some(e);
            }
        }
        match &self.error {
            // A closed pipe (`| head`) is the reader saying it has enough.
            Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Some(e) => Err(format!("cannot write output: {e}")),
            None => Ok(()),
        }
    }
}

/// How a live query follows its log servers (`rql watch`'s flags; the shell's `\watch`).
#[derive(Clone, Debug)]
pub(crate) struct LiveConfig {
    pub servers: Vec<String>,
    pub token: Option<String>,
    pub idle_timeout: Duration,
    pub max_bindings: u64,
    pub max_buffered: usize,
    pub catch_up_timeout: Duration,
}

/// How a live query ended (it stopped when told to, or its time range was over).
pub(crate) struct Watched {
    pub stats: Stats,
    /// Records received from the servers.
    pub received: usize,
}

/// The start: which servers have told their node list, and how far each node's history has
/// been read against it.
struct CatchUp {
    /// Per server: node → last HLC when the watch started (`None` until known).
    targets: Vec<Option<BTreeMap<String, Hlc>>>,
    /// Per node: ms since its last record when the watch started (server's clock).
    age_ms: BTreeMap<String, u64>,
    reached: BTreeMap<String, Hlc>,
    deadline: Instant,
}

impl CatchUp {
    fn done(&self) -> bool {
        self.targets.iter().all(|t| {
            t.as_ref().is_some_and(|nodes| {
                nodes
                    .iter()
                    .all(|(n, target)| self.reached.get(n).is_some_and(|r| r >= target))
            })
        })
    }
}

/// Runs `plan` live over `config.servers`, handing records to `out` as their steps become
/// final, until `stop` completes, the query's time range is over, or an error. `Err` is an
/// error the query cannot go on after (a node on two servers, a bad token, output failing).
pub(crate) async fn follow(
    plan: &Plan,
    config: &LiveConfig,
    out: &mut dyn Output,
    stop: impl Future<Output = ()>,
) -> Result<Watched, String> {
    let (tx, mut rx) = mpsc::channel::<Event>(4096);
    let mut tasks = Vec::new();
    for (server, url) in config.servers.iter().enumerate() {
        let source = SourceConfig {
            server,
            url: url.clone(),
            token: config.token.clone(),
            max_backoff: Duration::from_secs(5),
            read_timeout: Duration::from_secs(10),
        };
        tasks.push(tokio::spawn(source::run(source, tx.clone())));
    }
    drop(tx);
    let options = LiveOptions {
        idle_timeout_ms: config.idle_timeout.as_millis() as u64,
        exec: ExecOptions {
            max_bindings: config.max_bindings,
        },
    };
    let mut live = LiveQuery::new(plan, options);
    let clock = Clock(Instant::now());
    let mut catch_up = CatchUp {
        targets: vec![None; config.servers.len()],
        age_ms: BTreeMap::new(),
        reached: BTreeMap::new(),
        deadline: Instant::now() + config.catch_up_timeout,
    };
    let mut started = false;
    let mut received = 0usize;
    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    let mut lost: BTreeSet<usize> = BTreeSet::new();
    let tick_every =
        (config.idle_timeout / 4).clamp(Duration::from_millis(5), Duration::from_millis(50));
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    let result: Result<(), String> = async {
        loop {
            let mut events = Vec::new();
            tokio::select! {
                biased;
                _ = &mut stop => break,
                ev = rx.recv() => match ev {
                    Some(ev) => events.push(ev),
                    None => return Err("every log server connection ended".to_string()),
                },
                _ = tick.tick() => {}
            }
            // Take what else is waiting, so a burst is evaluated once.
            while events.len() < 4096 {
                match rx.try_recv() {
                    Ok(ev) => events.push(ev),
                    Err(_) => break,
                }
            }
            let now = clock.now_ms();
            for ev in events {
                match ev {
                    Event::Nodes { server, nodes } => {
                        let mut targets = BTreeMap::new();
                        for (node, (hlc, age)) in nodes {
                            claim(&mut owner, &node, server, &config.servers)?;
                            catch_up.age_ms.insert(node.clone(), age);
                            targets.insert(node, hlc);
                        }
                        catch_up.targets[server] = Some(targets);
                    }
                    Event::Record { server, record } => {
                        claim(&mut owner, &record.node, server, &config.servers)?;
                        let heard = match catch_up.age_ms.get(record.node.as_str()) {
                            // History read at the start: the node was last heard of then.
                            Some(age) if !started => now.saturating_sub(*age),
                            _ => now,
                        };
                        let reached = catch_up.reached.entry(record.node.clone()).or_default();
                        *reached = (*reached).max(record.hlc);
                        received += 1;
                        live.push(record, heard);
                    }
                    Event::Progress { latest, .. } => {
                        for (node, hlc) in latest {
                            let reached = catch_up.reached.entry(node).or_default();
                            *reached = (*reached).max(hlc);
                        }
                    }
                    Event::Lost { server, error } => {
                        if lost.insert(server) {
                            eprintln!(
                                "warning: lost log server {error}; reconnecting (its nodes \
                                 turn stale after the idle timeout)"
                            );
                        }
                    }
                    Event::Note { message } => eprintln!("warning: {message}"),
                    Event::Resumed { server } => {
                        lost.remove(&server);
                        eprintln!("note: log server {} is back", config.servers[server]);
                    }
                    Event::Fatal { error, .. } => return Err(error),
                }
            }
            let mut emit = |rec: OutputRecord| out.emit(rec);
            let flow = if started {
                if live.buffered() > config.max_buffered {
                    live.relieve();
                }
                live.advance(now, &mut emit)
            } else if catch_up.done() || Instant::now() >= catch_up.deadline {
                if !catch_up.done() {
                    eprintln!(
                        "warning: the log servers' history was not read completely within \
                         {}; starting anyway",
                        humantime::format_duration(config.catch_up_timeout)
                    );
                }
                started = true;
                live.start(now, &mut emit)
            } else {
                Ok(Flow::Continue)
            };
            let flow = flow.map_err(|e| e.to_string())?;
            out.flush()?;
            if flow == Flow::Done {
                break;
            }
        }
        Ok(())
    }
    .await;
    for task in tasks {
        task.abort();
    }
    let flushed = out.flush();
    result?;
    flushed?;
    Ok(Watched {
        stats: live.stats(),
        received,
    })
}

/// Records `node` as served by `server`; a node on two servers is an error (its records
/// would be merged from two logs with no order between them).
fn claim(
    owner: &mut BTreeMap<String, usize>,
    node: &str,
    server: usize,
    servers: &[String],
) -> Result<(), String> {
    match owner.get(node) {
        Some(&s) if s != server => Err(format!(
            "node {node:?} appears on two log servers, {} and {}; each node must send to one \
             server (hint: watch them separately)",
            servers[s], servers[server]
        )),
        Some(_) => Ok(()),
        None => {
            owner.insert(node.to_string(), server);
            Ok(())
        }
    }
}

#[cfg(unix)]
fn terminate_signal() -> Result<tokio::signal::unix::Signal, String> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot listen for SIGTERM: {e}"))
}
