//! The cut state: every node's variables at the current HLC, who is in the cut, and P(t), the
//! participating nodes (SPEC §1.4, §3.1).
//!
//! Node ids are interned to dense indices on first sight, so the evaluator works with `u32`s;
//! P(t) is kept as a list of indices sorted by node id (byte order), which is both the order
//! of every node map in the output and the witness order.

use std::collections::{BTreeSet, HashMap};

use log_server::{ApplyError, NodeState, Record, Value, VarName};

/// Index of an interned node id.
pub type NodeIdx = u32;

#[derive(Clone, Debug, Default)]
struct NodeSlot {
    state: NodeState,
    /// In C(t): has a record at or before t, and its last one is not a `leave`.
    in_cut: bool,
    /// In P(t): in the cut, allowed by AT NODES, and holding a variable of a FROM log.
    in_p: bool,
}

#[derive(Clone, Debug)]
pub struct CutState {
    ids: Vec<String>,
    index: HashMap<String, NodeIdx>,
    slots: Vec<NodeSlot>,
    /// P(t), sorted by node id.
    p: Vec<NodeIdx>,
    from_logs: BTreeSet<String>,
    at_nodes: Option<BTreeSet<String>>,
}

/// What applying one record did, for candidacy (SPEC §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    pub node: NodeIdx,
    /// The node is one of AT NODES (or there is no AT NODES).
    pub node_selected: bool,
}

impl CutState {
    pub fn new(from_logs: &[String], at_nodes: Option<&BTreeSet<String>>) -> CutState {
        CutState {
            ids: Vec::new(),
            index: HashMap::new(),
            slots: Vec::new(),
            p: Vec::new(),
            from_logs: from_logs.iter().cloned().collect(),
            at_nodes: at_nodes.cloned(),
        }
    }

    fn intern(&mut self, id: &str) -> NodeIdx {
        if let Some(&i) = self.index.get(id) {
            return i;
        }
        let i = self.ids.len() as NodeIdx;
        self.ids.push(id.to_string());
        self.index.insert(id.to_string(), i);
        self.slots.push(NodeSlot::default());
        i
    }

    pub fn node_id(&self, n: NodeIdx) -> &str {
        &self.ids[n as usize]
    }

    pub fn lookup(&self, id: &str) -> Option<NodeIdx> {
        self.index.get(id).copied()
    }

    pub fn selected(&self, id: &str) -> bool {
        self.at_nodes.as_ref().is_none_or(|s| s.contains(id))
    }

    /// Apply one record (heartbeats included). P(t) is not updated until [`finish_step`];
    /// call it once all records of one HLC are applied.
    pub fn apply(&mut self, rec: &Record) -> Result<Applied, ApplyError> {
        let node = self.intern(&rec.node);
        let slot = &mut self.slots[node as usize];
        slot.state.apply(rec)?;
        slot.in_cut = !rec.leave;
        Ok(Applied {
            node,
            node_selected: self.selected(&rec.node),
        })
    }

    /// Recompute P(t) membership of the nodes touched by a step; true if P(t) changed.
    pub fn finish_step(&mut self, touched: &[NodeIdx]) -> bool {
        let mut changed = false;
        for &n in touched {
            let now = self.participates(n);
            let slot = &mut self.slots[n as usize];
            if slot.in_p == now {
                continue;
            }
            slot.in_p = now;
            changed = true;
            let ids = &self.ids;
            let pos = self
                .p
                .binary_search_by(|&m| ids[m as usize].cmp(&ids[n as usize]));
            match (now, pos) {
                (true, Err(at)) => self.p.insert(at, n),
                (false, Ok(at)) => {
                    self.p.remove(at);
                }
                _ => {}
            }
        }
        changed
    }

    fn participates(&self, n: NodeIdx) -> bool {
        let slot = &self.slots[n as usize];
        slot.in_cut
            && self.selected(&self.ids[n as usize])
            && slot
                .state
                .vars
                .keys()
                .any(|v| self.from_logs.contains(v.log()))
    }

    /// P(t), sorted by node id.
    pub fn participants(&self) -> &[NodeIdx] {
        &self.p
    }

    pub fn in_cut(&self, n: NodeIdx) -> bool {
        self.slots[n as usize].in_cut
    }

    /// The node's value of `var`, if present.
    pub fn value(&self, n: NodeIdx, var: &VarName) -> Option<&Value> {
        self.slots[n as usize].state.get(var)
    }

    /// Every variable of `log` on node n, in name order.
    pub fn vars_of_log<'a>(
        &'a self,
        n: NodeIdx,
        log: &'a str,
    ) -> impl Iterator<Item = (&'a VarName, &'a Value)> + 'a {
        self.slots[n as usize]
            .state
            .vars
            .iter()
            .filter(move |(v, _)| v.log() == log)
    }
}
