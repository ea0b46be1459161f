//! Deterministic synthetic traces for tests, benchmarks and demos (`rql gen` writes them as
//! NDJSON).
//!
//! Every scenario first writes one record per node that sets all of its variables, all at the
//! first HLC (one step: every node starts together, so invariants over the whole system hold
//! from the first cut on), then exactly `--steps` records, each changing one node at its own
//! HLC. A trace has `nodes + steps` records and `1 + steps` steps (SPEC §1.4). HLCs start at
//! physical time 1700000000000 ms and advance by 0, 1 or 2 ms per record (1 ms on average);
//! when the physical part stays, the logical counter goes up.
//!
//! The output depends only on the arguments (the seed drives a `fastrand` generator; the crate
//! version is pinned by `Cargo.lock`).
//!
//! Scenarios (nodes are `n1..nN`):
//!
//! - `invariant`: `inv.a`, `inv.b` in [10, 100] and `inv.c` in [0, 19], so normally
//!   `inv.a + inv.b > inv.c` on every node. Each step sets one variable of a random node to a
//!   random value in its range. In every window of [`INV_WINDOW`] steps one violation is
//!   injected at a random offset: a random node's `c` jumps to `a + b + 1..=a + b + 20`, and
//!   40..=60 steps later (50 on average) it is repaired (`c` back in [0, 19]). While it lasts,
//!   steps on that node keep it violating (`a`, `b` only go down, `c` stays above `a + b`).
//!   So about 1% of the cuts satisfy `(inv.a + inv.b <= inv.c) LINK SAME_NODE` whatever the
//!   number of nodes.
//! - `staleness`: `n1` is the leader (`zk.role` = 'leader', the others 'follower'), every
//!   `zk.version` starts at 0. Each step either the leader bumps its version, or a random
//!   follower that lags (and is not stalled) catches up by 1..=3 versions (never past the
//!   leader). The leader bumps when no follower can catch up, and otherwise with probability
//!   1/(16N), so a version usually reaches every follower before the next one. Now and then
//!   (probability 1/(200N) per step, one at a time) a follower stalls for 4N..=12N steps,
//!   missing several versions. `MAX(zk.version) - MIN(zk.version) >= 2` holds on roughly 7-10%
//!   of the cuts (a second bump before the followers caught up, or a stall).
//! - `bank`: every branch starts with `bank.balance` = 1000 and `bank.sent` = `bank.recv` = 0.
//!   A transfer takes 1..=100 (at most the balance) from a random branch with money: one record
//!   of the sender (`balance -= x`, `sent += x`); 1..=20 steps later the receiver (another
//!   random branch; the same one if there is only one) records `balance += x`, `recv += x`.
//!   Due deliveries go first. `SUM(bank.balance) + SUM(bank.sent) - SUM(bank.recv)` is
//!   `1000 * N` on every cut.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;

use crate::{Hlc, Record, Value, VarName};

/// Physical time of the first record, in ms.
pub const START_MS: u64 = 1_700_000_000_000;
/// The invariant scenario injects one violation per window of this many steps.
pub const INV_WINDOW: u64 = 5_000;
/// Starting balance of every bank branch.
pub const BANK_START_BALANCE: i64 = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// inv.a, inv.b, inv.c per node; ~1% of cuts have a node with a + b <= c.
    Invariant,
    /// A leader n1 and followers replicating zk.version with lag and stalls.
    Staleness,
    /// Transfers between branches; SUM(balance) + SUM(sent) - SUM(recv) is constant.
    Bank,
}

/// Generates the trace of `scenario` with `nodes` nodes (n1..nN) and `steps` records after
/// the initial one per node, handing each record to `sink` in order.
pub fn generate(
    scenario: Scenario,
    nodes: usize,
    steps: u64,
    seed: u64,
    sink: &mut dyn FnMut(Record) -> io::Result<()>,
) -> io::Result<()> {
    let mut w = TraceWriter::new(sink, nodes, seed);
    match scenario {
        Scenario::Invariant => invariant(&mut w, steps),
        Scenario::Staleness => staleness(&mut w, steps),
        Scenario::Bank => bank(&mut w, steps),
    }
}

/// A variable name known to be valid.
fn var(name: &str) -> VarName {
    VarName::parse(name).expect("generator variable names are valid")
}

/// The random generator, the HLC and the output, shared by the scenarios.
struct TraceWriter<'s> {
    rng: fastrand::Rng,
    sink: &'s mut dyn FnMut(Record) -> io::Result<()>,
    nodes: Vec<String>,
    /// Physical ms and logical counter of the last record; `None` before the first.
    clock: Option<(u64, u64)>,
}

impl<'s> TraceWriter<'s> {
    fn new(sink: &'s mut dyn FnMut(Record) -> io::Result<()>, nodes: usize, seed: u64) -> Self {
        TraceWriter {
            rng: fastrand::Rng::with_seed(seed),
            sink,
            nodes: (1..=nodes).map(|i| format!("n{i}")).collect(),
            clock: None,
        }
    }

    /// The HLC of the next record: 0, 1, 1 or 2 ms later (1 ms on average); when the
    /// millisecond stays, the logical counter goes up (and the millisecond moves on if the
    /// counter is full).
    fn tick(&mut self) -> io::Result<Hlc> {
        let (l, c) = match self.clock {
            None => (START_MS, 0),
            Some((l, c)) => match [0, 1, 1, 2][self.rng.usize(0..4)] {
                0 if c < Hlc::MAX_LOGICAL => (l, c + 1),
                0 => (l + 1, 0),
                d => (l + d, 0),
            },
        };
        self.clock = Some((l, c));
        Hlc::new(l, c).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
    }

    /// Emits one record of node `node` (an index) that sets `set`, at the next HLC.
    fn emit(&mut self, node: usize, set: Vec<(VarName, Option<Value>)>) -> io::Result<()> {
        let hlc = self.tick()?;
        self.emit_at(hlc, node, set)
    }

    /// Emits one record of node `node` that sets `set`, at `hlc`.
    fn emit_at(
        &mut self,
        hlc: Hlc,
        node: usize,
        set: Vec<(VarName, Option<Value>)>,
    ) -> io::Result<()> {
        let mut record = Record::heartbeat(self.nodes[node].clone(), hlc);
        record.set = set;
        (self.sink)(record)
    }
}

fn int(v: i64) -> Option<Value> {
    Some(Value::Int(v))
}

fn invariant(w: &mut TraceWriter<'_>, steps: u64) -> io::Result<()> {
    let n = w.nodes.len();
    let names = [var("inv.a"), var("inv.b"), var("inv.c")];
    let (mut a, mut b, mut c) = (vec![0i64; n], vec![0i64; n], vec![0i64; n]);
    let start = w.tick()?;
    for i in 0..n {
        a[i] = w.rng.i64(10..=100);
        b[i] = w.rng.i64(10..=100);
        c[i] = w.rng.i64(0..=19);
        let set = vec![
            (names[0].clone(), int(a[i])),
            (names[1].clone(), int(b[i])),
            (names[2].clone(), int(c[i])),
        ];
        w.emit_at(start, i, set)?;
    }
    // The violation of the current window: (node, injected at, repaired at).
    let mut planned: Option<(usize, u64, u64)> = None;
    // The node whose c is above its a + b right now.
    let mut violating: Option<usize> = None;
    for s in 0..steps {
        if s % INV_WINDOW == 0 {
            // One violation of 40..=60 steps per full window (proportionally shorter in a
            // last, partial window), injected and repaired inside the window.
            let len = INV_WINDOW.min(steps - s);
            let d = w.rng.u64(40..=60) * len / INV_WINDOW;
            planned = (d >= 1 && len > d).then(|| {
                let at = s + w.rng.u64(0..len - d);
                (w.rng.usize(0..n), at, at + d)
            });
        }
        let (i, key, value) = match planned {
            Some((v, at, _)) if at == s => {
                c[v] = a[v] + b[v] + w.rng.i64(1..=20);
                violating = Some(v);
                (v, 2, c[v])
            }
            Some((v, _, until)) if until == s => {
                c[v] = w.rng.i64(0..=19);
                violating = None;
                (v, 2, c[v])
            }
            _ => {
                let i = w.rng.usize(0..n);
                let key = w.rng.usize(0..3);
                let keeps_violating = violating == Some(i);
                let value = match key {
                    // While node i violates, a and b may only go down.
                    0 if keeps_violating => w.rng.i64(10..=a[i]),
                    1 if keeps_violating => w.rng.i64(10..=b[i]),
                    2 if keeps_violating => a[i] + b[i] + w.rng.i64(1..=20),
                    0 | 1 => w.rng.i64(10..=100),
                    _ => w.rng.i64(0..=19),
                };
                [&mut a, &mut b, &mut c][key][i] = value;
                (i, key, value)
            }
        };
        w.emit(i, vec![(names[key].clone(), int(value))])?;
    }
    Ok(())
}

fn staleness(w: &mut TraceWriter<'_>, steps: u64) -> io::Result<()> {
    let n = w.nodes.len();
    let (version_var, role_var) = (var("zk.version"), var("zk.role"));
    let mut version = vec![0i64; n];
    let start = w.tick()?;
    for i in 0..n {
        let role = if i == 0 { "leader" } else { "follower" };
        let set = vec![
            (version_var.clone(), int(0)),
            (role_var.clone(), Some(Value::Str(role.into()))),
        ];
        w.emit_at(start, i, set)?;
    }
    // Followers behind the leader, in no particular order; `lagging[i]` says whether i is in.
    let mut behind: Vec<usize> = Vec::new();
    let mut lagging = vec![false; n];
    // The stalled follower and the step its stall ends.
    let mut stalled: Option<(usize, u64)> = None;
    let nn = n as u64;
    for s in 0..steps {
        if stalled.is_some_and(|(_, until)| until <= s) {
            stalled = None;
        }
        if stalled.is_none() && n > 1 && w.rng.u64(0..200 * nn) == 0 {
            stalled = Some((w.rng.usize(1..n), s + w.rng.u64(4 * nn..=12 * nn)));
        }
        // A follower that can catch up: a random one of those behind, not the stalled one.
        let mut pick = None;
        if !behind.is_empty() {
            let len = behind.len();
            let mut k = w.rng.usize(0..len);
            if stalled.is_some_and(|(f, _)| f == behind[k]) {
                k = if len == 1 {
                    usize::MAX
                } else {
                    (k + 1 + w.rng.usize(0..len - 1)) % len
                };
            }
            pick = (k != usize::MAX).then_some(k);
        }
        let bump = pick.is_none() || w.rng.u64(0..16 * nn) == 0;
        let i = if bump {
            version[0] += 1;
            for (f, lags) in lagging.iter_mut().enumerate().skip(1) {
                if !*lags {
                    *lags = true;
                    behind.push(f);
                }
            }
            0
        } else {
            let k = pick.expect("a follower was picked");
            let f = behind[k];
            let lag = version[0] - version[f];
            version[f] += lag.min(w.rng.i64(1..=3));
            if version[f] == version[0] {
                lagging[f] = false;
                behind.swap_remove(k);
            }
            f
        };
        w.emit(i, vec![(version_var.clone(), int(version[i]))])?;
    }
    Ok(())
}

fn bank(w: &mut TraceWriter<'_>, steps: u64) -> io::Result<()> {
    let n = w.nodes.len();
    let (balance_var, sent_var, recv_var) =
        (var("bank.balance"), var("bank.sent"), var("bank.recv"));
    let mut balance = vec![BANK_START_BALANCE; n];
    let mut sent = vec![0i64; n];
    let mut recv = vec![0i64; n];
    let start = w.tick()?;
    for i in 0..n {
        let set = vec![
            (balance_var.clone(), int(BANK_START_BALANCE)),
            (sent_var.clone(), int(0)),
            (recv_var.clone(), int(0)),
        ];
        w.emit_at(start, i, set)?;
    }
    // Transfers in flight: (due step, sequence number, receiver, amount), earliest first.
    let mut in_flight: BinaryHeap<Reverse<(u64, u64, usize, i64)>> = BinaryHeap::new();
    for s in 0..steps {
        let due = in_flight.peek().is_some_and(|Reverse(t)| t.0 <= s);
        // A sender with money: a random branch, or the next one that has some.
        let first = w.rng.usize(0..n);
        let sender = (0..n).map(|k| (first + k) % n).find(|&i| balance[i] > 0);
        match sender {
            Some(from) if !due => {
                let x = w.rng.i64(1..=balance[from].min(100));
                let to = if n == 1 {
                    0
                } else {
                    (from + 1 + w.rng.usize(0..n - 1)) % n
                };
                balance[from] -= x;
                sent[from] += x;
                in_flight.push(Reverse((s + w.rng.u64(1..=20), s, to, x)));
                let set = vec![
                    (balance_var.clone(), int(balance[from])),
                    (sent_var.clone(), int(sent[from])),
                ];
                w.emit(from, set)?;
            }
            _ => {
                // Due, or no branch has money (then it is all in flight).
                let Reverse((_, _, to, x)) = in_flight
                    .pop()
                    .expect("money is either at a branch or in flight");
                balance[to] += x;
                recv[to] += x;
                let set = vec![
                    (balance_var.clone(), int(balance[to])),
                    (recv_var.clone(), int(recv[to])),
                ];
                w.emit(to, set)?;
            }
        }
    }
    Ok(())
}
