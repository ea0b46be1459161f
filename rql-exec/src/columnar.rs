//! The in-memory form of a trace for replay: node ids and variable names interned once, records
//! flattened into one array of operations, grouped by HLC. Replaying it does no string hashing
//! and no allocation per step.
//!
//! Node ids are interned in byte order, so comparing node indices compares node ids: the
//! order of every node map in the output, of P(t) and of witnesses.

use std::collections::{HashMap, HashSet};

use log_server::{Hlc, Record, SetValue, Value, VarName};

pub type NodeIdx = u32;
pub type VarIdx = u32;

/// One change to one variable, applied in record order: unsets, sets, removes, adds.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Unset(VarIdx),
    Set(VarIdx, Value),
    Remove(VarIdx, SetValue),
    Add(VarIdx, SetValue),
}

impl Op {
    pub fn var(&self) -> VarIdx {
        match self {
            Op::Unset(v) | Op::Set(v, _) | Op::Remove(v, _) | Op::Add(v, _) => *v,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CRecord {
    pub node: NodeIdx,
    /// `ops[first_op..end_op]` belong to this record.
    pub first_op: u32,
    pub end_op: u32,
    pub leave: bool,
    /// No changes at all (SPEC §1.3): it makes no step.
    pub heartbeat: bool,
}

/// Records sharing one HLC: `records[start..end]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HlcGroup {
    pub hlc: Hlc,
    pub start: u32,
    pub end: u32,
}

/// Interned variable names.
#[derive(Clone, Debug, Default)]
pub struct VarTable {
    names: Vec<VarName>,
    index: HashMap<String, VarIdx>,
}

impl VarTable {
    pub fn intern(&mut self, name: &VarName) -> VarIdx {
        if let Some(&i) = self.index.get(name.as_str()) {
            return i;
        }
        let i = self.names.len() as VarIdx;
        self.names.push(name.clone());
        self.index.insert(name.as_str().to_string(), i);
        i
    }

    pub fn get(&self, name: &str) -> Option<VarIdx> {
        self.index.get(name).copied()
    }

    pub fn name(&self, v: VarIdx) -> &VarName {
        &self.names[v as usize]
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[derive(Clone, Debug, Default)]
pub struct Columnar {
    /// Node ids, sorted by bytes: index order is id order.
    pub nodes: Vec<String>,
    pub vars: VarTable,
    pub groups: Vec<HlcGroup>,
    pub records: Vec<CRecord>,
    pub ops: Vec<Op>,
}

impl Columnar {
    /// Build from records sorted by HLC (equal HLCs in arrival order).
    pub fn from_records(records: &[&Record]) -> Columnar {
        // Distinct ids by hashing (cheap per record), then sorted once.
        let distinct: HashSet<&str> = records.iter().map(|r| r.node.as_str()).collect();
        let mut nodes: Vec<String> = distinct.into_iter().map(str::to_string).collect();
        nodes.sort_unstable();
        let node_index: HashMap<&str, NodeIdx> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i as NodeIdx))
            .collect();
        let mut c = Columnar {
            vars: VarTable::default(),
            groups: Vec::new(),
            records: Vec::with_capacity(records.len()),
            ops: Vec::with_capacity(records.len()),
            nodes: Vec::new(),
        };
        let mut last: Option<(&str, NodeIdx)> = None;
        for rec in records {
            let first_op = c.ops.len() as u32;
            for v in &rec.unset {
                let v = c.vars.intern(v);
                c.ops.push(Op::Unset(v));
            }
            for (v, value) in &rec.set {
                let v = c.vars.intern(v);
                c.ops.push(match value {
                    Some(value) => Op::Set(v, value.clone()),
                    None => Op::Unset(v),
                });
            }
            for (v, s) in &rec.remove {
                let v = c.vars.intern(v);
                c.ops.push(Op::Remove(v, s.clone()));
            }
            for (v, s) in &rec.add {
                let v = c.vars.intern(v);
                c.ops.push(Op::Add(v, s.clone()));
            }
            let index = c.records.len() as u32;
            // Consecutive records often come from one node; skip the hash then.
            let node = match last {
                Some((id, i)) if id == rec.node => i,
                _ => node_index.get(rec.node.as_str()).copied().unwrap_or(0),
            };
            last = Some((rec.node.as_str(), node));
            c.records.push(CRecord {
                node,
                first_op,
                end_op: c.ops.len() as u32,
                leave: rec.leave,
                heartbeat: rec.is_heartbeat(),
            });
            match c.groups.last_mut() {
                Some(g) if g.hlc == rec.hlc => g.end = index + 1,
                _ => c.groups.push(HlcGroup {
                    hlc: rec.hlc,
                    start: index,
                    end: index + 1,
                }),
            }
        }
        c.nodes = nodes;
        c
    }
}
