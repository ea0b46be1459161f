//! `rql demo`: rql end to end in one command. It starts a log server on an ephemeral loopback
//! port (data in a temporary directory, or `--keep DIR`), runs a simulated cluster against it
//! (`cluster.rs`: nodes with skewed clocks paying each other, a lagging replicated register,
//! injected bugs), and watches it with two live alert queries (`analysis.rs`), printing alerts
//! as they fire. At the end it reads the whole trace back and compares the consistent-cut
//! answer with what ordering the same records by the nodes' physical clocks would have
//! raised: the consistent cuts catch exactly the injected bugs, the naive order adds false
//! alarms (credits seen before their debits).
//!
//! The last line of the summary (`summary: key=value ...`) is stable, for scripts and tests.

mod analysis;
mod cluster;
mod console;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use log_server::client::{subscribe, StreamItem, SubscribeOptions};
use log_server::server::{self, ServerConfig};
use log_server::store::{Store, StoreConfig};
use log_server::{Hlc, Record};
use rql_exec::live::{LiveOptions, LiveQuery};
use rql_exec::output::OutValue;
use rql_exec::{ExecOptions, OutputRecord};
use rql_planner::{plan_statement, Catalog, Plan};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::query::EXIT_FAILURE;
use analysis::{false_alarms, int_value, note_run, physical_order, score, Run, Score};
use cluster::{ClusterConfig, ClusterReport};
use console::Console;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Simulated nodes (2 to 64); the first is also the register's leader.
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u16).range(2..=64))]
    pub nodes: u16,
    /// How long the cluster runs (e.g. 30s, 2m; at most 1h); Ctrl-C ends it sooner, with the
    /// summary.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    pub duration: Duration,
    /// Seed of everything random (clock skews, payments, delays, bugs) [default: random; the
    /// run prints it so that it can be repeated].
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Keep the run in DIR (new or empty): trace.ndjson (the trace in HLC order),
    /// naive.ndjson (the same records ordered by physical time), the two queries as .rql files,
    /// and the log server's data (log/). Without it everything is deleted at exit.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
}

fn duration(text: &str) -> Result<Duration, String> {
    let d =
        humantime::parse_duration(text).map_err(|e| format!("{e} (write e.g. 30s, 500ms, 2m)"))?;
    if d.is_zero() {
        return Err("must be more than 0".into());
    }
    // The summary replays the whole trace from memory: a demo is seconds to minutes.
    if d > Duration::from_secs(3600) {
        return Err("at most 1h".into());
    }
    Ok(d)
}

pub fn run(args: &DemoArgs) -> ExitCode {
    init_logging();
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    // Where the log server keeps its data: removed at exit unless kept.
    let (data, _temp) = match &args.keep {
        Some(dir) => match prepare_keep(dir) {
            Ok(()) => (dir.join("log"), None),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        },
        None => match tempfile::Builder::new().prefix("rql-demo-").tempdir() {
            Ok(temp) => (temp.path().to_path_buf(), Some(temp)),
            Err(e) => {
                eprintln!("error: cannot create a temporary directory: {e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let result = runtime.block_on(demo(args, seed, &data));
    // Recorders and the server are stopped; do not wait for stray delivery tasks.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Warnings of the log server and the recorders on stderr (`RUST_LOG` for more); the demo's
/// own output is on stdout.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// `--keep DIR` must be new or empty: the demo never mixes its run with older files (the log
/// server would even replay an older log into this one).
fn prepare_keep(dir: &Path) -> Result<(), String> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(format!(
                    "--keep {}: the directory is not empty; give a new or empty directory \
                     (the demo writes trace.ndjson, naive.ndjson, the queries and log/ there)",
                    dir.display()
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create --keep {}: {e}", dir.display())),
        Err(e) => Err(format!("--keep {}: {e}", dir.display())),
    }
}

/// Plans one of the demo's own queries.
fn plan(text: &str, catalog: &Catalog) -> Result<Plan, String> {
    let stmt = rql_parser::parse_single(text)
        .map_err(|d| format!("the demo's query: {}", d.render(text, "<demo>", false)))?;
    plan_statement(&stmt, text, catalog)
        .map_err(|d| format!("the demo's query: {}", d.render(text, "<demo>", false)))
}

async fn demo(args: &DemoArgs, seed: u64, data: &Path) -> Result<(), String> {
    let console = Arc::new(Console::new());
    let metrics = server::install_metrics()?;
    let (store, _) = Store::open(StoreConfig::new(data))
        .map_err(|e| format!("cannot open the log in {}: {e}", data.display()))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen on a loopback port: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    let url = format!("http://{addr}");
    let (stop_server, server_stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server::serve(
        listener,
        store.clone(),
        metrics,
        ServerConfig::default(),
        async move {
            let _ = server_stopped.await;
        },
    ));
    console.raw(&format!(
        "rql demo: {} nodes for {} (seed {seed}; rerun with --seed {seed}), log server on {url}",
        args.nodes,
        humantime::format_duration(args.duration)
    ));
    let indent = |q: &str| q.replace('\n', "\n    ");
    console.raw(&format!(
        "live alert queries:\n  conservation: money is neither created nor received before it \
         is sent\n    {}\n  staleness: a replica 2 or more versions behind the leader\n    {}",
        indent(analysis::CONSERVATION),
        indent(analysis::STALENESS)
    ));
    let outcome = run_cluster(args, seed, &url, &console).await;
    let _ = stop_server.send(());
    let served = serving
        .await
        .map_err(|e| format!("the log server failed: {e}"))
        .and_then(|r| r.map_err(|e| format!("the log server failed: {e}")));
    let closed = tokio::task::spawn_blocking(move || store.close())
        .await
        .map_err(|e| format!("closing the log failed: {e}"))
        .and_then(|r| r.map_err(|e| format!("closing the log failed: {e}")));
    let outcome = outcome?;
    served?;
    closed?;
    let keep = match &args.keep {
        Some(dir) => Some(write_keep(dir, &outcome)?),
        None => None,
    };
    print_summary(&console, args, seed, &outcome, keep.as_deref());
    Ok(())
}

/// One live alert query and the runs it raised.
struct Alerting<'p> {
    kind: Kind,
    live: LiveQuery<'p>,
    runs: Vec<Run>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Conservation,
    Staleness,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Conservation => "conservation",
            Kind::Staleness => "staleness",
        }
    }
}

impl Alerting<'_> {
    /// Evaluates what became final and prints the alerts.
    fn advance(&mut self, now_ms: u64, console: &Console) -> Result<(), String> {
        let mut emitted = Vec::new();
        self.live
            .advance(now_ms, &mut |rec| emitted.push(rec))
            .map_err(|e| format!("the {} query failed: {e}", self.kind.name()))?;
        for rec in emitted {
            note_run(&mut self.runs, &rec);
            console.line(&describe(self.kind, &rec, console));
        }
        Ok(())
    }
}

/// One alert as a line, e.g. `ALERT conservation begin, cut at +1.234s: balances 5057 + in
/// flight 12 = 5069, opened with 5000`.
fn describe(kind: Kind, rec: &OutputRecord, console: &Console) -> String {
    let num = |n: Option<i64>| n.map_or_else(|| "?".to_string(), |n| n.to_string());
    let (mut line, stale, late) = match rec {
        OutputRecord::Cut(cut) => {
            let v = |name| int_value(&cut.values, name);
            let detail = match kind {
                Kind::Conservation => {
                    let in_flight = v("sent").zip(v("received")).map(|(s, r)| s - r);
                    let total = v("balance").zip(in_flight).map(|(b, f)| b + f);
                    format!(
                        "balances {} + in flight {} = {}, opened with {}",
                        num(v("balance")),
                        num(in_flight),
                        num(total),
                        num(v("opening"))
                    )
                }
                Kind::Staleness => format!(
                    "leader at version {}, a replica at {}",
                    num(v("leader")),
                    num(v("follower"))
                ),
            };
            (
                format!(
                    "ALERT {} begin, cut at {}: {detail}",
                    kind.name(),
                    console.at(cut.hlc)
                ),
                &cut.stale,
                cut.late,
            )
        }
        OutputRecord::End(end) => (
            format!(
                "ALERT {} end,   cut at {}: held {} ms over {} cuts",
                kind.name(),
                console.at(end.hlc),
                end.duration_ms,
                end.cuts
            ),
            &end.stale,
            end.late,
        ),
    };
    if !stale.is_empty() {
        let _ = write!(line, " (idle nodes: {})", stale.join(", "));
    }
    if late {
        line.push_str(" (after late records)");
    }
    line
}

/// What the run produced, for the summary.
struct Outcome {
    report: ClusterReport,
    ran: Duration,
    interrupted: bool,
    /// The live queries' frontier did not get past the end of the run in time.
    incomplete: bool,
    /// Every record the log server stored, in HLC order.
    trace: Vec<Record>,
    /// The change records in physical-time order, re-stamped.
    naive: Vec<Record>,
    consistent: Score,
    naive_score: Score,
    /// The first naive false alarm: its cut, and money sent and received there.
    naive_example: Option<(Hlc, Option<i64>, Option<i64>)>,
    staleness: usize,
    /// An offline replay of the trace raises the same conservation alerts as the live query.
    replay_agrees: bool,
}

/// SIGINT and SIGTERM, each listened to once for the whole run (a signal between two polls is
/// not lost).
struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn new() -> Result<Signals, String> {
        use tokio::signal::unix::{signal, SignalKind};
        let listen =
            |kind| signal(kind).map_err(|e| format!("cannot listen for Ctrl-C / SIGTERM: {e}"));
        Ok(Signals {
            int: listen(SignalKind::interrupt())?,
            term: listen(SignalKind::terminate())?,
        })
    }

    #[cfg(not(unix))]
    fn new() -> Result<Signals, String> {
        Ok(Signals {})
    }

    #[cfg(unix)]
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }

    #[cfg(not(unix))]
    async fn recv(&mut self) {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Milliseconds of a monotonic clock, offset so that "this long ago" never underflows (the
/// live queries' idle-node bookkeeping).
fn now_ms(start: Instant) -> u64 {
    (1 << 40) + start.elapsed().as_millis() as u64
}

/// The cluster and the live alerts, until the run is over and every alert it causes is out.
async fn run_cluster(
    args: &DemoArgs,
    seed: u64,
    url: &str,
    console: &Arc<Console>,
) -> Result<Outcome, String> {
    let catalog = Catalog {
        vars: BTreeMap::new(),
        now_ms: log_server::hlc::system_time_ms(),
        live: true,
    };
    let conservation_plan = plan(analysis::CONSERVATION, &catalog)?;
    let staleness_plan = plan(analysis::STALENESS, &catalog)?;
    let options = LiveOptions {
        // Generous: a node counted idle would let the frontier pass records still on their
        // way, which would then arrive late; here every node sends all the time.
        idle_timeout_ms: 5_000,
        exec: ExecOptions::default(),
    };
    let start = Instant::now();
    let mut queries = [
        Alerting {
            kind: Kind::Conservation,
            live: LiveQuery::new(&conservation_plan, options),
            runs: Vec::new(),
        },
        Alerting {
            kind: Kind::Staleness,
            live: LiveQuery::new(&staleness_plan, options),
            runs: Vec::new(),
        },
    ];
    for q in &mut queries {
        // The nodes are known in advance: no step is final before each has sent its opening
        // record, so none of those arrives late.
        for i in 0..usize::from(args.nodes) {
            q.live.expect_node(&cluster::node_name(i), now_ms(start));
        }
        // Nothing received yet: every step of the run will be evaluated, as in a replay.
        q.live
            .start(now_ms(start), &mut |_| {})
            .map_err(|e| e.to_string())?;
    }

    // The stream of everything the server stores, from the beginning.
    let (records_tx, mut records_rx) = mpsc::channel::<Result<Record, String>>(8192);
    let reader = tokio::spawn(follow(url.to_string(), records_tx));

    let mut signals = Signals::new()?;
    let deadline = start + args.duration;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut cluster = tokio::spawn(cluster::run(
        ClusterConfig {
            nodes: usize::from(args.nodes),
            seed,
            url: url.to_string(),
            deadline,
        },
        stop_rx,
        Arc::clone(console),
    ));
    let mut stopped_at: Option<Instant> = None;
    let mut interrupted = false;
    let mut report: Option<ClusterReport> = None;
    let mut give_up_at = None;
    let mut failure: Option<String> = None;
    let mut incomplete = false;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut batch = Vec::new();
        let mut stop_now = None;
        tokio::select! {
            () = signals.recv() => {
                if stopped_at.is_some() {
                    eprintln!("interrupted again: exiting without a summary");
                    std::process::exit(130);
                }
                interrupted = true;
                stop_now = Some("interrupted");
            }
            () = tokio::time::sleep_until(deadline), if stopped_at.is_none() => {
                stop_now = Some("time is up");
            }
            joined = &mut cluster, if report.is_none() => {
                match joined {
                    Ok(Ok(r)) => report = Some(r),
                    Ok(Err(e)) => return Err(failure.unwrap_or(e)),
                    Err(e) => return Err(format!("the cluster failed: {e}")),
                }
                if failure.is_some() {
                    break;
                }
                // The last nodes' heartbeats take the frontier past the last change soon.
                give_up_at = Some(Instant::now() + Duration::from_secs(5));
            }
            item = records_rx.recv(), if failure.is_none() => match item {
                Some(Ok(rec)) => batch.push(rec),
                Some(Err(e)) => failure = Some(e),
                None => failure = Some("the log server's stream ended".into()),
            },
            _ = tick.tick() => {}
        }
        // Take what else is waiting, so that a burst is evaluated at once.
        while batch.len() < 4096 && failure.is_none() {
            match records_rx.try_recv() {
                Ok(Ok(rec)) => batch.push(rec),
                Ok(Err(e)) => failure = Some(e),
                Err(_) => break,
            }
        }
        if failure.is_some() {
            // No more alerts can come: stop the cluster, then report the error.
            stop_now = stop_now.or(Some("the alert stream broke"));
        }
        if let (Some(why), None) = (stop_now, stopped_at) {
            stopped_at = Some(Instant::now());
            let _ = stop_tx.send(true);
            console.line(&format!("{why}: stopping the cluster"));
        }
        let now = now_ms(start);
        for rec in batch {
            let [a, b] = &mut queries;
            a.live.push(rec.clone(), now);
            b.live.push(rec, now);
        }
        for q in &mut queries {
            q.advance(now, console)?;
        }
        if let Some(r) = &report {
            if queries.iter().all(|q| q.live.frontier() > r.last_change) {
                break;
            }
            if give_up_at.is_some_and(|at| Instant::now() >= at) {
                incomplete = true;
                break;
            }
        }
    }
    reader.abort();
    let Some(report) = report else {
        return Err(failure.unwrap_or_else(|| "the cluster did not report".into()));
    };
    let ran = stopped_at.unwrap_or_else(Instant::now) - start;
    // The recorders' last heartbeats are shipped; then nothing more comes in. (Shutting down
    // blocks: not on the runtime's threads.)
    let recorders = report.recorders.clone();
    tokio::task::spawn_blocking(move || {
        for r in &recorders {
            r.shutdown();
        }
    })
    .await
    .map_err(|e| format!("stopping the recorders failed: {e}"))?;
    if let Some(e) = failure {
        return Err(e);
    }

    let trace = read_back(url).await?;
    let [conservation, staleness] = queries;
    let consistent_windows: Vec<(Hlc, Option<Hlc>)> = report
        .bugs
        .iter()
        .filter_map(|b| b.begin.map(|begin| (begin, b.end)))
        .collect();
    let consistent = score(&conservation.runs, &consistent_windows);
    let replayed = replay_runs(analysis::CONSERVATION, &trace)?;
    let replay_agrees = replayed.runs == conservation.runs;

    let naive = physical_order(&trace)?;
    let naive_windows: Vec<(Hlc, Option<Hlc>)> = report
        .bugs
        .iter()
        .filter_map(|b| {
            let at = |hlc: Hlc| naive.restamped.get(&(b.node.clone(), hlc)).copied();
            Some((at(b.begin?)?, b.end.and_then(at)))
        })
        .collect();
    let naive_runs = replay_runs(analysis::CONSERVATION, &naive.records)?;
    let naive_score = score(&naive_runs.runs, &naive_windows);
    let naive_example = false_alarms(&naive_runs.runs, &naive_windows)
        .next()
        .and_then(|i| Some((naive_runs.runs.get(i)?, naive_runs.begins.get(i)?)))
        .map(|(run, values)| {
            (
                run.begin,
                int_value(values, "sent"),
                int_value(values, "received"),
            )
        });
    Ok(Outcome {
        report,
        ran,
        interrupted,
        incomplete,
        trace,
        naive: naive.records,
        consistent,
        naive_score,
        naive_example,
        staleness: staleness.runs.len(),
        replay_agrees,
    })
}

/// Forwards the server's records (from the beginning, then live) to the alert loop.
async fn follow(url: String, out: mpsc::Sender<Result<Record, String>>) {
    let options = SubscribeOptions {
        follow: true,
        ..SubscribeOptions::default()
    };
    let mut sub = match subscribe(&url, &options).await {
        Ok(sub) => sub,
        Err(e) => {
            let _ = out.send(Err(e.to_string())).await;
            return;
        }
    };
    while let Some(item) = sub.next().await {
        let sent = match item {
            Ok(StreamItem::Record(rec)) => out.send(Ok(rec)).await,
            Ok(StreamItem::Progress(_)) => Ok(()),
            Err(e) => out.send(Err(e.to_string())).await,
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Everything the server stored, sorted by HLC (stably: a node's records at one HLC keep
/// their order).
async fn read_back(url: &str) -> Result<Vec<Record>, String> {
    let options = SubscribeOptions {
        follow: false,
        ..SubscribeOptions::default()
    };
    let mut sub = subscribe(url, &options)
        .await
        .map_err(|e| format!("reading the trace back: {e}"))?;
    let mut records = Vec::new();
    while let Some(item) = sub.next().await {
        match item.map_err(|e| format!("reading the trace back: {e}"))? {
            StreamItem::Record(rec) => records.push(rec),
            StreamItem::Progress(_) => {}
        }
    }
    records.sort_by_key(|r| r.hlc);
    Ok(records)
}

/// What an offline replay of an `EMIT CHANGES` query raised: its runs, and the values of
/// each run's begin cut.
struct Replayed {
    runs: Vec<Run>,
    begins: Vec<Vec<(String, OutValue)>>,
}

/// Replays `query` over `records` (sorted by HLC).
fn replay_runs(query: &str, records: &[Record]) -> Result<Replayed, String> {
    let refs: Vec<&Record> = records.iter().collect();
    let catalog = rql_exec::catalog_of(refs.iter().copied());
    let plan = plan(query, &catalog)?;
    let mut runs = Vec::new();
    let mut begins = Vec::new();
    rql_exec::replay(&plan, &refs, ExecOptions::default(), &mut |rec| {
        note_run(&mut runs, &rec);
        if let OutputRecord::Cut(cut) = rec {
            if cut.begin {
                begins.push(cut.values);
            }
        }
    })
    .map_err(|e| format!("replaying the trace: {e}"))?;
    Ok(Replayed { runs, begins })
}

/// Writes the kept files; returns the directory as the summary should show it.
fn write_keep(dir: &Path, outcome: &Outcome) -> Result<String, String> {
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    let ndjson = |records: &[Record]| {
        let mut text = String::new();
        for rec in records {
            text.push_str(&rec.to_json_line());
            text.push('\n');
        }
        text
    };
    write("trace.ndjson", ndjson(&outcome.trace))?;
    write("naive.ndjson", ndjson(&outcome.naive))?;
    write(
        "conservation.rql",
        format!(
            "-- rql demo: money is conserved on every consistent cut (balances plus money in\n\
             -- flight equal the opening total, and nothing is received before it is sent).\n{};\n",
            analysis::CONSERVATION
        ),
    )?;
    write(
        "staleness.rql",
        format!(
            "-- rql demo: a replica 2 or more versions behind the leader.\n{};\n",
            analysis::STALENESS
        ),
    )?;
    Ok(dir.display().to_string())
}

fn print_summary(console: &Console, args: &DemoArgs, seed: u64, o: &Outcome, keep: Option<&str>) {
    let r = &o.report;
    let skews: Vec<i64> = r.nodes.iter().map(|n| n.skew_ms).collect();
    let (lo, hi) = (
        skews.iter().min().copied().unwrap_or(0),
        skews.iter().max().copied().unwrap_or(0),
    );
    let changes = o.trace.iter().filter(|rec| !rec.is_heartbeat()).count();
    let injected = r.bugs.len();
    let (c, n) = (&o.consistent, &o.naive_score);
    let mut s = String::new();
    let rule = "─".repeat(78);
    let _ = writeln!(s, "{rule}");
    let _ = writeln!(
        s,
        "summary of the run (seed {seed}{})",
        if o.interrupted { ", interrupted" } else { "" }
    );
    let _ = writeln!(
        s,
        "  cluster       {} nodes for {:.1} s; clocks skewed {lo:+} to {hi:+} ms, payments \
         delayed {}-{} ms",
        r.nodes.len(),
        o.ran.as_secs_f64(),
        cluster::PAYMENT_DELAY_MS.0,
        cluster::PAYMENT_DELAY_MS.1
    );
    let _ = writeln!(
        s,
        "  trace         {changes} change records ({} payments, register at version {}), \
         {} heartbeats",
        r.transfers,
        r.version,
        o.trace.len() - changes
    );
    let _ = writeln!(
        s,
        "  money         {} at the end, {} opened with; {} injected",
        r.balance,
        cluster::OPENING_BALANCE * r.nodes.len() as i64,
        plural(injected, "bug")
    );
    let _ = writeln!(s, "  conservation alerts");
    for (how, score) in [
        ("consistent cuts (HLC order)", c),
        ("naive (physical-time order)", n),
    ] {
        let _ = writeln!(
            s,
            "    {how}  {:>10}: {}/{injected} bugs caught, {}",
            plural(score.alerts, "alert"),
            score.detected,
            plural(score.false_alarms, "false alarm")
        );
    }
    if let Some((at, Some(sent), Some(received))) = o.naive_example {
        if received > sent {
            let _ = writeln!(
                s,
                "    e.g. naive cut at {}: {received} received but only {sent} sent (a credit \
                 ordered before its debit)",
                console.at(at)
            );
        }
    }
    let _ = writeln!(
        s,
        "  staleness     {} (a replica 2+ versions behind: real lag, not false alarms)",
        plural(o.staleness, "alert")
    );
    if !o.replay_agrees {
        let _ = writeln!(
            s,
            "  note          the replay of the trace raises other conservation alerts than the \
             live query did"
        );
    }
    if o.incomplete {
        let _ = writeln!(
            s,
            "  note          the live queries had not seen the end of the run when the demo \
             stopped waiting"
        );
    }
    match keep {
        Some(dir) => {
            let _ = writeln!(s, "  kept in {dir}; replay it:");
            let _ = writeln!(
                s,
                "    rql replay {dir}/trace.ndjson -f {dir}/conservation.rql   # the bugs"
            );
            let _ = writeln!(
                s,
                "    rql replay {dir}/naive.ndjson -f {dir}/conservation.rql   # plus false alarms"
            );
        }
        None => {
            let _ = writeln!(
                s,
                "  rerun with --seed {seed} --keep DIR to keep the trace for rql replay"
            );
        }
    }
    let _ = writeln!(s, "{rule}");
    let _ = write!(
        s,
        "summary: nodes={} seed={seed} records={} transfers={} injected={injected} \
         consistent_alerts={} consistent_detected={} consistent_false={} naive_alerts={} \
         naive_detected={} naive_false={} staleness_alerts={} replay_agrees={} interrupted={}",
        args.nodes,
        o.trace.len(),
        r.transfers,
        c.alerts,
        c.detected,
        c.false_alarms,
        n.alerts,
        n.detected,
        n.false_alarms,
        o.staleness,
        o.replay_agrees,
        o.interrupted
    );
    console.raw(&s);
}

/// `1 alert`, `2 alerts`.
fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
