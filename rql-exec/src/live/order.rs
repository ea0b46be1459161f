//! The ordering half of a live query (SPEC §5.1–§5.2): per-node `latest(n)`, idle and left
//! nodes, the frontier F, and which received records are final.
//!
//! It knows nothing of queries: records go in as they arrive (from any number of log servers,
//! in any interleaving across nodes), and out come the *final* HLC groups, ascending, each
//! exactly once — the same groups an offline replay of those records would step through, as
//! long as no record is late. Time is passed in by the caller (milliseconds of a monotonic
//! clock) so that idleness is testable without sleeping.

use std::collections::{BTreeMap, BTreeSet};

use log_server::{Hlc, Record};

/// What the sequencer knows of one node.
#[derive(Clone, Debug)]
struct NodeClock {
    /// `latest(n)`: the greatest HLC received from the node (changes and heartbeats alike).
    latest: Hlc,
    /// When the node's last record arrived (caller's clock, ms).
    heard_ms: u64,
    /// Its last record was a `leave`.
    left: bool,
}

/// A group of records sharing one HLC, final and ready to be evaluated.
#[derive(Clone, Debug, PartialEq)]
pub struct FinalGroup {
    pub hlc: Hlc,
    /// Late records held for this step first (SPEC §5.2), then the group's own records in
    /// arrival order.
    pub records: Vec<Record>,
    /// How many of `records` are late change records.
    pub late: usize,
}

/// Per-node clocks, the frontier and the records not final yet.
#[derive(Debug)]
pub struct Sequencer {
    idle_timeout_ms: u64,
    nodes: BTreeMap<String, NodeClock>,
    frontier: Hlc,
    /// Greatest HLC received from anyone (the frontier when no node is active).
    max_received: Option<Hlc>,
    /// Records with `hlc >= F` when they arrived, by HLC, each group in arrival order.
    pending: BTreeMap<Hlc, Vec<Record>>,
    /// Records that arrived with `hlc < F`: applied at the start of the next final step.
    held: Vec<Record>,
    held_late: usize,
    /// Late change records received so far.
    pub late_total: u64,
    /// Records buffered (pending + held): what the caller bounds.
    buffered: usize,
    /// The starting snapshot's HLC, once taken.
    started: Option<Hlc>,
}

impl Sequencer {
    pub fn new(idle_timeout_ms: u64) -> Sequencer {
        Sequencer {
            idle_timeout_ms,
            nodes: BTreeMap::new(),
            frontier: Hlc::MIN,
            max_received: None,
            pending: BTreeMap::new(),
            held: Vec::new(),
            held_late: 0,
            late_total: 0,
            buffered: 0,
            started: None,
        }
    }

    /// The frontier F (never moves back).
    pub fn frontier(&self) -> Hlc {
        self.frontier
    }

    /// Whether any record has been received.
    pub fn received_any(&self) -> bool {
        self.max_received.is_some()
    }

    /// Records received but not handed out yet.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Takes one received record. Returns whether it was late (a change record with
    /// `hlc < F`); late records are held, never dropped.
    pub fn push(&mut self, rec: Record, now_ms: u64) -> bool {
        self.max_received = Some(self.max_received.map_or(rec.hlc, |m| m.max(rec.hlc)));
        let clock = match self.nodes.get_mut(rec.node.as_str()) {
            Some(c) => c,
            None => self.nodes.entry(rec.node.clone()).or_insert(NodeClock {
                latest: rec.hlc,
                heard_ms: now_ms,
                left: false,
            }),
        };
        clock.latest = clock.latest.max(rec.hlc);
        clock.heard_ms = now_ms;
        clock.left = rec.leave;
        self.buffered += 1;
        let evaluated = self.started.is_some_and(|f| rec.hlc <= f);
        if rec.hlc < self.frontier || evaluated {
            // A heartbeat is never late (SPEC §5.1), but what it does (bring a node that left
            // back into the cut) still happens at the next step.
            let late = !rec.is_heartbeat();
            if late {
                self.late_total += 1;
                self.held_late += 1;
            }
            self.held.push(rec);
            return late;
        }
        self.pending.entry(rec.hlc).or_default().push(rec);
        false
    }

    /// Declares a node known to exist before it has sent anything (e.g. from a log server's
    /// node list, or a cluster the caller runs itself): it holds the frontier at `Hlc::MIN`
    /// until its first record, so records of the others cannot become final — and its first
    /// records late — just because it has not been heard of yet. If it stays silent it turns
    /// idle after the timeout, like any node. A node already known is left as it is.
    pub fn expect(&mut self, node: &str, now_ms: u64) {
        if !self.nodes.contains_key(node) {
            self.nodes.insert(
                node.to_string(),
                NodeClock {
                    latest: Hlc::MIN,
                    heard_ms: now_ms,
                    left: false,
                },
            );
        }
    }

    /// Whether `node` is idle at `now_ms`: it has not left and sent nothing for the timeout.
    fn is_idle(&self, clock: &NodeClock, now_ms: u64) -> bool {
        !clock.left && now_ms.saturating_sub(clock.heard_ms) >= self.idle_timeout_ms
    }

    /// Idle nodes, by id: listed as `stale` on records emitted now.
    pub fn stale(&self, now_ms: u64) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, c)| self.is_idle(c, now_ms))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Nodes that are neither idle nor left.
    pub fn active(&self, now_ms: u64) -> BTreeSet<&str> {
        self.nodes
            .iter()
            .filter(|(_, c)| !c.left && !self.is_idle(c, now_ms))
            .map(|(id, _)| id.as_str())
            .collect()
    }

    /// Moves the frontier as far as the clocks allow at `now_ms` and returns it.
    pub fn advance(&mut self, now_ms: u64) -> Hlc {
        let min_active = self
            .nodes
            .values()
            .filter(|c| !c.left && !self.is_idle(c, now_ms))
            .map(|c| c.latest)
            .min();
        if let Some(f) = min_active.or(self.max_received) {
            self.frontier = self.frontier.max(f);
        }
        self.frontier
    }

    /// Raises the frontier to at least `f` and treats everything at or before it as evaluated
    /// (a live query's starting snapshot `C(F0)`): a record at or before it arriving later is
    /// held like a late one.
    pub fn start_at(&mut self, f: Hlc) {
        self.frontier = self.frontier.max(f);
        self.started = Some(f);
    }

    /// Too many records wait for a node that lags (or for one the sender never stops
    /// waiting for): moves the frontier past half of them, so memory stays bounded. Records
    /// of the lagging nodes then arrive late — held, counted and flagged, never dropped.
    pub fn relieve(&mut self) {
        if let Some(&hlc) = self.pending.keys().nth(self.pending.len() / 2) {
            if let Some(next) = hlc.packed().checked_add(1) {
                self.frontier = self.frontier.max(Hlc::from_packed(next));
            }
        }
    }

    /// The HLC of the next final group, if any.
    pub fn peek_final(&self) -> Option<Hlc> {
        self.pending
            .first_key_value()
            .map(|(&hlc, _)| hlc)
            .filter(|&hlc| hlc < self.frontier)
    }

    /// The next final group (`hlc < F`), if any. Held records go in front of it.
    pub fn next_final(&mut self) -> Option<FinalGroup> {
        let (&hlc, _) = self.pending.first_key_value()?;
        if hlc >= self.frontier {
            return None;
        }
        let (hlc, mut records) = self.pending.pop_first()?;
        let late = std::mem::take(&mut self.held_late);
        if !self.held.is_empty() {
            let mut all = std::mem::take(&mut self.held);
            all.append(&mut records);
            records = all;
        }
        self.buffered -= records.len();
        Some(FinalGroup { hlc, records, late })
    }

    /// Records at or before `upto` not handed out yet, in HLC order (equal HLCs in arrival
    /// order), held ones included: the history a starting query applies without evaluating.
    pub fn drain_through(&mut self, upto: Hlc) -> Vec<Record> {
        let rest = match upto.packed().checked_add(1) {
            Some(next) => self.pending.split_off(&Hlc::from_packed(next)),
            None => BTreeMap::new(),
        };
        let done = std::mem::replace(&mut self.pending, rest);
        let mut out: Vec<Record> = std::mem::take(&mut self.held);
        self.held_late = 0;
        out.sort_by_key(|r| r.hlc);
        let mut merged: Vec<Record> = done.into_values().flatten().collect();
        if !out.is_empty() {
            merged.append(&mut out);
            merged.sort_by_key(|r| r.hlc);
        }
        self.buffered -= merged.len();
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(node: &str, l: u64, change: bool) -> Record {
        let mut r = Record::heartbeat(node.to_string(), Hlc::new(l, 0).unwrap());
        if change {
            r.set.push((
                log_server::VarName::parse("a.b").unwrap(),
                Some(log_server::Value::Int(l as i64)),
            ));
        }
        r
    }

    fn hlcs(s: &mut Sequencer) -> Vec<u64> {
        std::iter::from_fn(|| s.next_final())
            .map(|g| g.hlc.physical())
            .collect()
    }

    #[test]
    fn frontier_is_the_slowest_active_node() {
        let mut s = Sequencer::new(1000);
        s.push(rec("a", 5, true), 0);
        s.push(rec("b", 3, true), 0);
        assert_eq!(s.advance(0).physical(), 3);
        // The step at F is not final: b may still send more at 3.
        assert_eq!(hlcs(&mut s), Vec::<u64>::new());
        s.push(rec("b", 7, false), 1);
        assert_eq!(s.advance(1).physical(), 5);
        assert_eq!(hlcs(&mut s), vec![3]);
        s.push(rec("a", 9, false), 2);
        assert_eq!(s.advance(2).physical(), 7);
        assert_eq!(hlcs(&mut s), vec![5]);
    }

    #[test]
    fn an_idle_node_leaves_the_frontier_and_its_late_record_is_held() {
        let mut s = Sequencer::new(100);
        s.push(rec("a", 5, true), 0);
        s.push(rec("b", 2, true), 0);
        assert_eq!(s.advance(50).physical(), 2);
        // b says nothing for the timeout: it is idle, F follows a alone.
        s.push(rec("a", 8, true), 120);
        assert_eq!(s.advance(120).physical(), 8);
        assert_eq!(s.stale(120), vec!["b".to_string()]);
        assert_eq!(hlcs(&mut s), vec![2, 5]);
        // b comes back with an old record: late, held for the next final step.
        assert!(s.push(rec("b", 3, true), 130));
        assert_eq!(s.late_total, 1);
        assert!(s.stale(130).is_empty());
        s.push(rec("b", 10, false), 131);
        s.push(rec("a", 12, false), 131);
        s.advance(131);
        let g = s.next_final().unwrap();
        assert_eq!((g.hlc.physical(), g.late, g.records.len()), (8, 1, 2));
        assert_eq!(g.records[0].hlc.physical(), 3);
    }

    #[test]
    fn leave_takes_a_node_out_of_the_frontier_and_a_heartbeat_brings_it_back() {
        let mut s = Sequencer::new(1000);
        s.push(rec("a", 5, true), 0);
        let mut leave = rec("b", 2, false);
        leave.leave = true;
        s.push(leave, 0);
        assert_eq!(s.advance(0).physical(), 5);
        s.push(rec("b", 6, false), 1);
        s.push(rec("a", 9, false), 1);
        assert_eq!(s.advance(1).physical(), 6);
        // Heartbeats are never late.
        assert!(!s.push(rec("b", 1, false), 2));
        assert_eq!(s.late_total, 0);
    }

    #[test]
    fn an_expected_node_holds_the_frontier_until_it_sends_or_turns_idle() {
        let mut s = Sequencer::new(100);
        s.expect("b", 0);
        s.push(rec("a", 5, true), 0);
        s.push(rec("a", 9, true), 0);
        assert_eq!(s.advance(10), Hlc::MIN);
        assert_eq!(hlcs(&mut s), Vec::<u64>::new());
        // b's first record is older than a's: not late, a's records were not final yet.
        assert!(!s.push(rec("b", 3, true), 20));
        s.push(rec("b", 12, false), 20);
        assert_eq!(s.advance(20).physical(), 9);
        assert_eq!(hlcs(&mut s), vec![3, 5]);
        // A node that never sends stops holding the frontier after the idle timeout.
        s.expect("c", 30);
        s.expect("a", 30);
        s.push(rec("a", 15, false), 50);
        s.push(rec("b", 16, false), 50);
        assert_eq!(s.advance(50).physical(), 9);
        assert_eq!(s.stale(130), vec!["c".to_string()]);
        assert_eq!(s.advance(131).physical(), 15);
    }

    #[test]
    fn with_no_active_node_the_frontier_is_the_greatest_hlc() {
        let mut s = Sequencer::new(10);
        s.push(rec("a", 5, true), 0);
        s.push(rec("b", 9, true), 0);
        assert_eq!(s.advance(100).physical(), 9);
        assert_eq!(hlcs(&mut s), vec![5]);
    }

    #[test]
    fn relieving_a_full_buffer_moves_the_frontier_and_makes_laggards_late() {
        let mut s = Sequencer::new(1000);
        s.push(rec("slow", 1, true), 0);
        for l in 2..12 {
            s.push(rec("fast", l, true), 0);
        }
        assert_eq!(s.advance(0).physical(), 1);
        assert_eq!(s.buffered(), 11);
        s.relieve();
        let done = hlcs(&mut s);
        assert_eq!(done, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(s.buffered(), 5);
        // The slow node's next record is behind the forced frontier: late, not lost.
        assert!(s.push(rec("slow", 3, true), 0));
        assert_eq!(s.buffered(), 6);
    }

    #[test]
    fn drain_through_gives_the_history_in_hlc_order() {
        let mut s = Sequencer::new(1000);
        for (n, l) in [("a", 3), ("b", 1), ("a", 4), ("b", 6)] {
            s.push(rec(n, l, true), 0);
        }
        let got: Vec<u64> = s
            .drain_through(Hlc::new(4, 0).unwrap())
            .iter()
            .map(|r| r.hlc.physical())
            .collect();
        assert_eq!(got, vec![1, 3, 4]);
        assert_eq!(s.buffered(), 1);
    }
}
