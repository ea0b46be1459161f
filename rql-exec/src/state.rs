//! The cut state: every node's variables at the current HLC, who is in the cut, and P(t), the
//! participating nodes (SPEC §1.4, §3.1).
//!
//! Values live in a dense table indexed by (node, variable), so applying a change or reading a
//! variable is an array access. P(t) is kept sorted by node index, which is node-id order
//! (see [`crate::columnar`]).

use log_server::{SetValue, Value};

use crate::columnar::{CRecord, NodeIdx, Op, VarIdx, VarTable};

/// `add`/`remove` met a value that is not a set (readers reject such traces earlier).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyError {
    pub node: String,
    pub var: String,
    pub op: &'static str,
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "\"{}\" on a non-set value of {} on node {}",
            self.op, self.var, self.node
        )
    }
}

impl std::error::Error for ApplyError {}

#[derive(Clone, Debug)]
pub struct CutState {
    nodes: Vec<String>,
    /// `vals[node][var]`; rows grow on demand as variables appear.
    vals: Vec<Vec<Option<Value>>>,
    in_cut: Vec<bool>,
    /// Present variables of FROM logs, per node.
    from_count: Vec<u32>,
    /// AT NODES allows the node (or there is no AT NODES).
    selected: Vec<bool>,
    in_p: Vec<bool>,
    /// P(t), ascending node index (= node-id order).
    p: Vec<NodeIdx>,
    /// Per variable: it belongs to a FROM log.
    from_var: Vec<bool>,
}

impl CutState {
    /// `nodes` sorted by id; `from_var[v]` tells whether variable v belongs to a FROM log.
    pub fn new(nodes: Vec<String>, selected: Vec<bool>, from_var: Vec<bool>) -> CutState {
        let n = nodes.len();
        CutState {
            nodes,
            vals: vec![Vec::new(); n],
            in_cut: vec![false; n],
            from_count: vec![0; n],
            selected,
            in_p: vec![false; n],
            p: Vec::new(),
            from_var,
        }
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn node_id(&self, n: NodeIdx) -> &str {
        &self.nodes[n as usize]
    }

    /// The node with this id, by binary search over the sorted ids.
    pub fn lookup(&self, id: &str) -> Option<NodeIdx> {
        self.nodes
            .binary_search_by(|n| n.as_str().cmp(id))
            .ok()
            .map(|i| i as NodeIdx)
    }

    pub fn in_cut(&self, n: NodeIdx) -> bool {
        self.in_cut[n as usize]
    }

    pub fn in_p(&self, n: NodeIdx) -> bool {
        self.in_p[n as usize]
    }

    pub fn selected(&self, n: NodeIdx) -> bool {
        self.selected[n as usize]
    }

    /// P(t), ascending node index.
    pub fn participants(&self) -> &[NodeIdx] {
        &self.p
    }

    #[inline]
    pub fn value(&self, n: NodeIdx, v: VarIdx) -> Option<&Value> {
        self.vals[n as usize].get(v as usize)?.as_ref()
    }

    /// Every present variable of node n, ascending variable index.
    pub fn present(&self, n: NodeIdx) -> impl Iterator<Item = (VarIdx, &Value)> {
        self.vals[n as usize]
            .iter()
            .enumerate()
            .filter_map(|(v, x)| x.as_ref().map(|x| (v as VarIdx, x)))
    }

    fn slot(&mut self, n: NodeIdx, v: VarIdx) -> &mut Option<Value> {
        let row = &mut self.vals[n as usize];
        if row.len() <= v as usize {
            row.resize(v as usize + 1, None);
        }
        &mut row[v as usize]
    }

    fn store(&mut self, n: NodeIdx, v: VarIdx, value: Option<Value>) {
        let from = self.from_var.get(v as usize).copied().unwrap_or(false);
        let slot = self.slot(n, v);
        let was = slot.is_some();
        let now = value.is_some();
        let old = std::mem::replace(slot, value);
        // The usual old value, a number or a boolean, owns nothing: skip the generic drop (a
        // call and a match on the kind, on every step).
        if is_plain(&old) {
            std::mem::forget(old);
        }
        if from {
            let c = &mut self.from_count[n as usize];
            match (was, now) {
                (false, true) => *c += 1,
                (true, false) => *c = c.saturating_sub(1),
                _ => {}
            }
        }
    }

    /// Apply one record: unsets, sets, removes, adds, then `leave` (SPEC §1.3). P(t) is not
    /// touched until [`finish_node`](Self::finish_node).
    pub fn apply(&mut self, rec: &CRecord, ops: &[Op], vars: &VarTable) -> Result<(), ApplyError> {
        let n = rec.node;
        self.in_cut[n as usize] = true;
        for op in &ops[rec.first_op as usize..rec.end_op as usize] {
            match op {
                Op::Unset(v) => self.store(n, *v, None),
                Op::Set(v, value) => self.store(n, *v, Some(plain_clone(value))),
                Op::Remove(v, elems) | Op::Add(v, elems) => {
                    let adding = matches!(op, Op::Add(..));
                    let mut set = match self.value(n, *v) {
                        None => SetValue::new(),
                        Some(Value::Set(s)) => s.clone(),
                        Some(_) => {
                            return Err(ApplyError {
                                node: self.nodes[n as usize].clone(),
                                var: vars.name(*v).to_string(),
                                op: if adding { "add" } else { "remove" },
                            })
                        }
                    };
                    if adding {
                        set.union_with(elems);
                    } else {
                        set.difference_with(elems);
                    }
                    self.store(n, *v, Some(Value::Set(set)));
                }
            }
        }
        if rec.leave {
            self.in_cut[n as usize] = false;
            for slot in &mut self.vals[n as usize] {
                *slot = None;
            }
            self.from_count[n as usize] = 0;
        }
        Ok(())
    }

    /// Bring node n's P(t) membership up to date; returns whether it changed.
    pub fn finish_node(&mut self, n: NodeIdx) -> bool {
        let i = n as usize;
        let now = self.in_cut[i] && self.selected[i] && self.from_count[i] > 0;
        if self.in_p[i] == now {
            return false;
        }
        self.in_p[i] = now;
        match (now, self.p.binary_search(&n)) {
            (true, Err(at)) => self.p.insert(at, n),
            (false, Ok(at)) => {
                self.p.remove(at);
            }
            _ => {}
        }
        true
    }
}

/// NULL, a number or a boolean: a value that owns no memory.
#[inline(always)]
fn is_plain(v: &Option<Value>) -> bool {
    matches!(
        v,
        None | Some(Value::Int(_) | Value::Float(_) | Value::Bool(_))
    )
}

/// A clone that copies numbers and booleans in place, without the generic clone's call.
#[inline(always)]
fn plain_clone(v: &Value) -> Value {
    match v {
        Value::Int(i) => Value::Int(*i),
        Value::Float(f) => Value::Float(*f),
        Value::Bool(b) => Value::Bool(*b),
        _ => v.clone(),
    }
}
