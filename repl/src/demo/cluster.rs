//! The simulated cluster of `rql demo`: nodes as tokio tasks, each with its own physical clock
//! (the system clock plus a fixed skew of tens of milliseconds) and its own `Recorder`,
//! exchanging messages over channels with random delays. The messages carry the sender's HLC
//! (`on_send` / `on_receive`), as a real instrumented program's would.
//!
//! What runs on it:
//! - a bank: every node pays random amounts to random peers; a payment is a debit record on
//!   the sender (`bank.balance`, cumulative `bank.sent`) and, on arrival, a credit record on the
//!   receiver (`bank.balance`, cumulative `bank.recv`);
//! - a replicated register: the first node, the leader, bumps `zk.version` every 100 ms and
//!   sends it to the followers, which store it on arrival; now and then one follower's link
//!   turns slow for a while, so it falls two or more versions behind (real staleness);
//! - injected bugs: now and then (the controller decides, one at a time) a node credits itself
//!   money no one sent, and an "audit" takes it back a few hundred milliseconds later.
//!
//! Everything random comes from the seed, so a seed gives the same schedule; the records
//! themselves depend on real time too.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use log_server::client::{HlcClock, Recorder, RecorderConfig, RecorderError};
use log_server::hlc::system_time_ms;
use log_server::Hlc;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, sleep_until, Instant};

use super::console::Console;

/// Every account opens with this much.
pub const OPENING_BALANCE: i64 = 1000;
/// Clock skews are spread over ±this many ms (plus a little jitter): far below the HLC's
/// 500 ms maximum drift, far above the message delays, so that ordering by physical time puts
/// many credits before their debits.
pub const MAX_SKEW_MS: i64 = 40;
/// Delay of a payment message.
pub const PAYMENT_DELAY_MS: (u64, u64) = (2, 25);
/// Pause between two payments of one node.
const PAYMENT_PAUSE_MS: (u64, u64) = (10, 40);
/// The leader bumps the register this often.
const TICK: Duration = Duration::from_millis(100);
/// Delay of a register update: usually well under a tick...
const VERSION_DELAY_MS: (u64, u64) = (2, 30);
/// ...but over a slow link, several ticks: the follower falls 2 to 4 versions behind.
const SLOW_DELAY_MS: (u64, u64) = (250, 450);
/// How long a link stays slow, when the first slow spell comes, and the gap after each.
const SLOW_SPELL_MS: (u64, u64) = (600, 1000);
const FIRST_SPELL_MS: (u64, u64) = (1200, 2000);
const SPELL_GAP_MS: (u64, u64) = (1500, 4000);
/// When the first bug comes, how long each lasts until its audit, and the quiet gap after it.
const FIRST_BUG_MS: (u64, u64) = (600, 1000);
const BUG_SPAN_MS: (u64, u64) = (200, 500);
const BUG_GAP_MS: (u64, u64) = (600, 1500);
/// How much money a bug creates.
const BUG_AMOUNT: (i64, i64) = (20, 90);

pub struct ClusterConfig {
    pub nodes: usize,
    pub seed: u64,
    /// The embedded log server.
    pub url: String,
    /// When the run is due to end: no bug starts whose audit could not come before it.
    pub deadline: Instant,
}

#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub name: String,
    pub skew_ms: i64,
}

/// One injected bug: the HLCs of its credit (`begin`) and of its audit (`end`).
#[derive(Clone, Debug)]
pub struct Bug {
    pub id: usize,
    pub node: String,
    pub begin: Option<Hlc>,
    pub end: Option<Hlc>,
}

pub struct ClusterReport {
    pub nodes: Vec<NodeInfo>,
    pub bugs: Vec<Bug>,
    pub transfers: u64,
    /// The register's last version.
    pub version: i64,
    /// The greatest HLC of any change record: live queries are complete once their frontier
    /// is past it.
    pub last_change: Hlc,
    /// Sum of the final balances (the opening total, if nothing is in flight).
    pub balance: i64,
    /// Still running (heartbeats); the caller shuts them down when it no longer needs them.
    pub recorders: Vec<Arc<Recorder>>,
}

/// What the nodes do: start payments and register updates, or only take in what arrives, or
/// stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Run,
    Drain,
    Done,
}

enum Msg {
    Payment {
        amount: i64,
        stamp: Hlc,
    },
    Version {
        version: i64,
        stamp: Hlc,
    },
    /// From the controller: create `amount` out of thin air, audited after `audit_in`.
    Inject {
        bug: usize,
        amount: i64,
        audit_in: Duration,
    },
    /// To itself: take the bug's money back.
    Audit {
        bug: usize,
        amount: i64,
    },
}

/// The network: one inbox per node; messages are delivered after a delay by a task each.
/// `in_flight` counts messages sent and not yet handled, so the end of a run can wait for
/// every payment to arrive (and every audit to happen).
#[derive(Clone)]
struct Net {
    inboxes: Arc<Vec<mpsc::UnboundedSender<Msg>>>,
    in_flight: Arc<AtomicUsize>,
}

impl Net {
    fn send(&self, to: usize, msg: Msg, delay: Duration) {
        let Some(inbox) = self.inboxes.get(to).cloned() else {
            return;
        };
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let in_flight = Arc::clone(&self.in_flight);
        tokio::spawn(async move {
            if !delay.is_zero() {
                sleep(delay).await;
            }
            if inbox.send(msg).is_err() {
                // The node is gone (it failed): nobody will handle it.
                in_flight.fetch_sub(1, Ordering::SeqCst);
            }
        });
    }

    fn quiet(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0
    }
}

/// What the node tasks and the controller share.
struct Shared {
    bugs: Mutex<Vec<Bug>>,
    console: Arc<Console>,
}

impl Shared {
    fn bugs(&self) -> std::sync::MutexGuard<'_, Vec<Bug>> {
        self.bugs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Runs the cluster until `stop` turns true, then lets every message in flight arrive, flushes
/// the recorders and reports.
pub async fn run(
    config: ClusterConfig,
    mut stop: watch::Receiver<bool>,
    console: Arc<Console>,
) -> Result<ClusterReport, String> {
    let mut rng = fastrand::Rng::with_seed(config.seed);
    let skews = skews(config.nodes, &mut rng);
    let nodes: Vec<NodeInfo> = skews
        .iter()
        .enumerate()
        .map(|(i, &skew_ms)| NodeInfo {
            name: node_name(i),
            skew_ms,
        })
        .collect();
    let mut recorders = Vec::new();
    for info in &nodes {
        let mut rc = RecorderConfig::new(info.name.as_str(), config.url.as_str());
        let skew = info.skew_ms;
        rc.clock = HlcClock::new(move || skewed(system_time_ms(), skew));
        rc.record_pt = true;
        // Alerts should follow the events closely; the log server is local.
        rc.flush_interval = Duration::from_millis(20);
        // At the end, every node's heartbeat moves the live queries' frontier past the last
        // change soon.
        rc.heartbeat_interval = Some(Duration::from_millis(100));
        let recorder = Recorder::start(rc).map_err(|e| format!("node {}: {e}", info.name))?;
        recorders.push(Arc::new(recorder));
    }
    let clocks: Vec<String> = nodes
        .iter()
        .map(|n| format!("{} {:+} ms", n.name, n.skew_ms))
        .collect();
    console.line(&format!("clock skews: {}", clocks.join(", ")));

    let shared = Arc::new(Shared {
        bugs: Mutex::new(Vec::new()),
        console: Arc::clone(&console),
    });
    let (inboxes, receivers): (Vec<_>, Vec<_>) =
        (0..config.nodes).map(|_| mpsc::unbounded_channel()).unzip();
    let net = Net {
        inboxes: Arc::new(inboxes),
        in_flight: Arc::new(AtomicUsize::new(0)),
    };
    let (phase_tx, phase_rx) = watch::channel(Phase::Run);
    let (fail_tx, mut fail_rx) = mpsc::unbounded_channel::<String>();
    let mut tasks = Vec::new();
    // Every node opens its account (and its copy of the register) before anyone pays.
    let mut node_states = Vec::new();
    for (index, info) in nodes.iter().enumerate() {
        let node = Node::open(
            index,
            info.name.clone(),
            Arc::clone(&recorders[index]),
            config.nodes,
            config.seed,
        )
        .map_err(|e| format!("node {}: {e}", info.name))?;
        node_states.push(node);
    }
    for (node, inbox) in node_states.into_iter().zip(receivers) {
        let (net, phase, shared, fail) = (
            net.clone(),
            phase_rx.clone(),
            Arc::clone(&shared),
            fail_tx.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let name = node.name.clone();
            let result = node.run(inbox, phase, net, shared).await;
            if let Err(e) = &result {
                let _ = fail.send(format!("node {name}: {e}"));
            }
            result
        }));
    }
    drop(fail_tx);

    // The controller: one bug at a time, until told to stop.
    let mut failure = None;
    let mut next_bug = Instant::now() + ms(rng.u64(FIRST_BUG_MS.0..=FIRST_BUG_MS.1));
    loop {
        tokio::select! {
            changed = stop.wait_for(|s| *s) => {
                let _ = changed;
                break;
            }
            Some(e) = fail_rx.recv() => {
                failure = Some(e);
                break;
            }
            _ = sleep_until(next_bug) => {
                let span = ms(rng.u64(BUG_SPAN_MS.0..=BUG_SPAN_MS.1));
                // Leave room for the audit and for its record to reach the live queries.
                if Instant::now() + span + ms(300) < config.deadline {
                    let node = rng.usize(0..config.nodes);
                    let amount = rng.i64(BUG_AMOUNT.0..=BUG_AMOUNT.1);
                    let bug = {
                        let mut bugs = shared.bugs();
                        let id = bugs.len() + 1;
                        bugs.push(Bug {
                            id,
                            node: nodes[node].name.clone(),
                            begin: None,
                            end: None,
                        });
                        bugs.len() - 1
                    };
                    net.send(node, Msg::Inject { bug, amount, audit_in: span }, Duration::ZERO);
                }
                next_bug = Instant::now() + span + ms(rng.u64(BUG_GAP_MS.0..=BUG_GAP_MS.1));
            }
        }
    }

    // No new payments, versions or bugs; what is in flight still arrives (audits included).
    let _ = phase_tx.send(Phase::Drain);
    let drain_until = Instant::now() + Duration::from_secs(3);
    while !net.quiet() && Instant::now() < drain_until {
        sleep(ms(10)).await;
    }
    let _ = phase_tx.send(Phase::Done);
    let mut transfers = 0;
    let mut last_change = Hlc::MIN;
    let mut balance = 0;
    let mut version = 0;
    for task in tasks {
        match task.await {
            Ok(Ok(end)) => {
                transfers += end.transfers;
                last_change = last_change.max(end.last_change);
                balance += end.balance;
                version = version.max(end.version);
            }
            Ok(Err(e)) => {
                failure.get_or_insert(e);
            }
            Err(e) => {
                failure.get_or_insert(format!("a node task failed: {e}"));
            }
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    // Every change committed is acknowledged by the log server before the run counts as over.
    let flushing = recorders.clone();
    tokio::task::spawn_blocking(move || {
        for r in &flushing {
            r.flush(Duration::from_secs(10))
                .map_err(|e| format!("node {}: {e}", r.node()))?;
        }
        Ok::<(), String>(())
    })
    .await
    .map_err(|e| format!("flushing the recorders failed: {e}"))??;
    let bugs = shared.bugs().clone();
    Ok(ClusterReport {
        nodes,
        bugs,
        transfers,
        version,
        last_change,
        balance,
        recorders,
    })
}

/// The id of the node at `index`: n1, n2, ...
pub fn node_name(index: usize) -> String {
    format!("n{}", index + 1)
}

/// Per node: skews spread evenly over ±[`MAX_SKEW_MS`] (so that whatever the seed some clocks
/// are far apart), jittered by a few ms and dealt out in random order.
fn skews(n: usize, rng: &mut fastrand::Rng) -> Vec<i64> {
    let span = 2 * MAX_SKEW_MS;
    let last = n.saturating_sub(1).max(1) as i64;
    let mut skews: Vec<i64> = (0..n as i64)
        .map(|i| -MAX_SKEW_MS + span * i / last + rng.i64(-5..=5))
        .collect();
    rng.shuffle(&mut skews);
    skews
}

/// `now` moved by `skew` ms, never below 0.
fn skewed(now: u64, skew: i64) -> u64 {
    now.saturating_add_signed(skew)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What a node task ends with.
struct NodeEnd {
    transfers: u64,
    balance: i64,
    version: i64,
    last_change: Hlc,
}

/// One node's state: its account, its copy of the register and, for the leader, which
/// followers' links are slow until when.
struct Node {
    index: usize,
    name: String,
    nodes: usize,
    recorder: Arc<Recorder>,
    rng: fastrand::Rng,
    balance: i64,
    sent: i64,
    recv: i64,
    version: i64,
    transfers: u64,
    last_change: Hlc,
    /// Leader: the follower whose link is slow, until when; and when the next spell starts.
    slow: Option<(usize, Instant)>,
    next_spell: Instant,
}

impl Node {
    /// The node's first record: its opening balance and the register at version 0.
    fn open(
        index: usize,
        name: String,
        recorder: Arc<Recorder>,
        nodes: usize,
        seed: u64,
    ) -> Result<Node, RecorderError> {
        let mut node = Node {
            index,
            name,
            nodes,
            recorder,
            rng: fastrand::Rng::with_seed(seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9)),
            balance: OPENING_BALANCE,
            sent: 0,
            recv: 0,
            version: 0,
            transfers: 0,
            last_change: Hlc::MIN,
            slow: None,
            next_spell: Instant::now(),
        };
        node.next_spell = Instant::now() + node.between(FIRST_SPELL_MS);
        let r = &node.recorder;
        r.set("bank.opening", OPENING_BALANCE)?;
        r.set("bank.balance", node.balance)?;
        r.set("bank.sent", 0)?;
        r.set("bank.recv", 0)?;
        r.set("zk.version", 0)?;
        node.commit()?;
        Ok(node)
    }

    async fn run(
        mut self,
        mut inbox: mpsc::UnboundedReceiver<Msg>,
        mut phase: watch::Receiver<Phase>,
        net: Net,
        shared: Arc<Shared>,
    ) -> Result<NodeEnd, String> {
        let mut next_payment = Instant::now() + self.pause();
        let mut next_tick = Instant::now() + TICK;
        let leader = self.index == 0;
        loop {
            let running = *phase.borrow() == Phase::Run;
            tokio::select! {
                changed = phase.changed() => {
                    if changed.is_err() || *phase.borrow() == Phase::Done {
                        break;
                    }
                }
                msg = inbox.recv() => {
                    let Some(msg) = msg else { break };
                    let handled = self.handle(msg, &net, &shared);
                    net.in_flight.fetch_sub(1, Ordering::SeqCst);
                    handled.map_err(|e| e.to_string())?;
                }
                _ = sleep_until(next_payment), if running => {
                    self.pay(&net).map_err(|e| e.to_string())?;
                    next_payment = Instant::now() + self.pause();
                }
                _ = sleep_until(next_tick), if running && leader => {
                    self.bump_version(&net).map_err(|e| e.to_string())?;
                    next_tick = Instant::now() + TICK;
                }
            }
        }
        Ok(NodeEnd {
            transfers: self.transfers,
            balance: self.balance,
            version: self.version,
            last_change: self.last_change,
        })
    }

    fn pause(&mut self) -> Duration {
        self.between(PAYMENT_PAUSE_MS)
    }

    /// A random duration in `[lo, hi]` ms.
    fn between(&mut self, (lo, hi): (u64, u64)) -> Duration {
        ms(self.rng.u64(lo..=hi))
    }

    fn commit(&mut self) -> Result<Hlc, RecorderError> {
        // `None` only if nothing was pending, which the callers never do.
        let hlc = self.recorder.commit()?.unwrap_or(self.last_change);
        self.last_change = self.last_change.max(hlc);
        Ok(hlc)
    }

    /// A payment to a random peer: the debit is committed and its stamp goes with the money.
    fn pay(&mut self, net: &Net) -> Result<(), RecorderError> {
        if self.balance < 1 || self.nodes < 2 {
            return Ok(());
        }
        let to = (self.index + self.rng.usize(1..self.nodes)) % self.nodes;
        let amount = self.rng.i64(1..=self.balance.min(50));
        self.balance -= amount;
        self.sent += amount;
        self.recorder.set("bank.balance", self.balance)?;
        self.recorder.set("bank.sent", self.sent)?;
        let stamp = self.recorder.on_send()?;
        self.last_change = self.last_change.max(stamp);
        self.transfers += 1;
        let delay = ms(self.rng.u64(PAYMENT_DELAY_MS.0..=PAYMENT_DELAY_MS.1));
        net.send(to, Msg::Payment { amount, stamp }, delay);
        Ok(())
    }

    /// The leader's tick: the next version, sent to every follower (slowly over a slow link).
    fn bump_version(&mut self, net: &Net) -> Result<(), RecorderError> {
        self.version += 1;
        self.recorder.set("zk.version", self.version)?;
        let stamp = self.recorder.on_send()?;
        self.last_change = self.last_change.max(stamp);
        let now = Instant::now();
        // (One node alone has no follower: clap asks for at least two.)
        if now >= self.next_spell && self.nodes > 1 {
            let follower = self.rng.usize(1..self.nodes);
            let until = now + self.between(SLOW_SPELL_MS);
            self.slow = Some((follower, until));
            self.next_spell = until + self.between(SPELL_GAP_MS);
        }
        for follower in 1..self.nodes {
            let slow = self
                .slow
                .is_some_and(|(f, until)| f == follower && now < until);
            let delay = self.between(if slow {
                SLOW_DELAY_MS
            } else {
                VERSION_DELAY_MS
            });
            net.send(
                follower,
                Msg::Version {
                    version: self.version,
                    stamp,
                },
                delay,
            );
        }
        Ok(())
    }

    fn handle(&mut self, msg: Msg, net: &Net, shared: &Shared) -> Result<(), RecorderError> {
        match msg {
            Msg::Payment { amount, stamp } => {
                // Orders the credit after the debit that caused it.
                self.recorder.on_receive(stamp)?;
                self.balance += amount;
                self.recv += amount;
                self.recorder.set("bank.balance", self.balance)?;
                self.recorder.set("bank.recv", self.recv)?;
                self.commit()?;
            }
            Msg::Version { version, stamp } => {
                self.recorder.on_receive(stamp)?;
                // Updates may overtake each other on the way; a replica never goes back.
                if version > self.version {
                    self.version = version;
                    self.recorder.set("zk.version", version)?;
                    self.commit()?;
                }
            }
            Msg::Inject {
                bug,
                amount,
                audit_in,
            } => {
                self.balance += amount;
                self.recorder.set("bank.balance", self.balance)?;
                let hlc = self.commit()?;
                let id = {
                    let mut bugs = shared.bugs();
                    bugs.get_mut(bug).map(|b| {
                        b.begin = Some(hlc);
                        b.id
                    })
                };
                shared.console.line(&format!(
                    "bug #{} injected, record at {}: {} credits itself {amount} that nobody \
                     sent (an audit takes it back in {} ms)",
                    id.unwrap_or(bug + 1),
                    shared.console.at(hlc),
                    self.name,
                    audit_in.as_millis()
                ));
                net.send(self.index, Msg::Audit { bug, amount }, audit_in);
            }
            Msg::Audit { bug, amount } => {
                self.balance -= amount;
                self.recorder.set("bank.balance", self.balance)?;
                let hlc = self.commit()?;
                let id = {
                    let mut bugs = shared.bugs();
                    bugs.get_mut(bug).map(|b| {
                        b.end = Some(hlc);
                        b.id
                    })
                };
                shared.console.line(&format!(
                    "bug #{} audited,  record at {}: {} gives the {amount} back",
                    id.unwrap_or(bug + 1),
                    shared.console.at(hlc),
                    self.name
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skews_are_spread_within_the_bound() {
        for n in [2, 3, 5, 64] {
            for seed in 0..20 {
                let s = skews(n, &mut fastrand::Rng::with_seed(seed));
                assert_eq!(s.len(), n);
                let (lo, hi) = (s.iter().min().unwrap(), s.iter().max().unwrap());
                assert!(*lo >= -MAX_SKEW_MS - 5 && *hi <= MAX_SKEW_MS + 5, "{s:?}");
                assert!(hi - lo >= 2 * MAX_SKEW_MS - 10, "{s:?}");
            }
        }
        assert_eq!(skewed(100, -40), 60);
        assert_eq!(skewed(10, -40), 0);
    }
}
