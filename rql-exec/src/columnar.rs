//! The in-memory form of a trace for replay: node ids and variable names interned once, records
//! flattened into one array of operations, grouped by HLC. Replaying it does no string hashing
//! and no allocation per step.
//!
//! Node ids are interned in byte order, so comparing node indices compares node ids: the
//! order of every node map in the output, of P(t) and of witnesses.

use rustc_hash::{FxHashMap, FxHashSet};

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
    index: FxHashMap<String, VarIdx>,
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

/// The names a trace uses, fixed before replay: what the engine's dense state is indexed by.
#[derive(Clone, Debug, Default)]
pub struct Names {
    /// Node ids, sorted by bytes: index order is id order.
    pub nodes: Vec<String>,
    pub vars: VarTable,
}

impl Names {
    /// The names of `records`, in any order.
    pub fn of<'r>(records: impl IntoIterator<Item = &'r Record>) -> Names {
        let mut names = NameCollector::default();
        for rec in records {
            names.add(rec);
        }
        names.finish()
    }
}

/// Collects [`Names`] from records seen one at a time (a streaming first pass keeps only this).
#[derive(Default)]
pub struct NameCollector {
    nodes: FxHashSet<String>,
    vars: VarTable,
}

impl NameCollector {
    pub fn add(&mut self, rec: &Record) {
        if !self.nodes.contains(rec.node.as_str()) {
            self.nodes.insert(rec.node.clone());
        }
        for v in rec.touched_vars() {
            self.vars.intern(v);
        }
    }

    pub fn finish(self) -> Names {
        let mut nodes: Vec<String> = self.nodes.into_iter().collect();
        nodes.sort_unstable();
        Names {
            nodes,
            vars: self.vars,
        }
    }
}

/// Records flattened into operations and grouped by HLC.
#[derive(Clone, Debug, Default)]
pub struct Steps {
    pub groups: Vec<HlcGroup>,
    pub records: Vec<CRecord>,
    pub ops: Vec<Op>,
}

impl Steps {
    pub fn clear(&mut self) {
        self.groups.clear();
        self.records.clear();
        self.ops.clear();
    }
}

/// Turns records (in HLC order) into [`Steps`] against fixed [`Names`].
pub struct StepBuilder<'n> {
    names: &'n Names,
    node_index: FxHashMap<&'n str, NodeIdx>,
    /// The previous record's node: consecutive records often share it (no hashing then).
    last: Option<NodeIdx>,
}

impl<'n> StepBuilder<'n> {
    pub fn new(names: &'n Names) -> StepBuilder<'n> {
        let node_index = names
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i as NodeIdx))
            .collect();
        StepBuilder {
            names,
            node_index,
            last: None,
        }
    }

    /// Appends `rec` to `steps`; `None` if the record names a node or variable that `names`
    /// lacks (the names were collected from other records).
    pub fn push(&mut self, steps: &mut Steps, rec: &Record) -> Option<()> {
        let vars = &self.names.vars;
        let first_op = steps.ops.len() as u32;
        for v in &rec.unset {
            steps.ops.push(Op::Unset(vars.get(v.as_str())?));
        }
        for (v, value) in &rec.set {
            let v = vars.get(v.as_str())?;
            steps.ops.push(match value {
                Some(value) => Op::Set(v, value.clone()),
                None => Op::Unset(v),
            });
        }
        for (v, s) in &rec.remove {
            steps.ops.push(Op::Remove(vars.get(v.as_str())?, s.clone()));
        }
        for (v, s) in &rec.add {
            steps.ops.push(Op::Add(vars.get(v.as_str())?, s.clone()));
        }
        let names = self.names;
        let node = match self.last {
            Some(i) if names.nodes[i as usize] == rec.node => i,
            _ => {
                let i = *self.node_index.get(rec.node.as_str())?;
                self.last = Some(i);
                i
            }
        };
        let index = steps.records.len() as u32;
        steps.records.push(CRecord {
            node,
            first_op,
            end_op: steps.ops.len() as u32,
            leave: rec.leave,
            heartbeat: rec.is_heartbeat(),
        });
        match steps.groups.last_mut() {
            Some(g) if g.hlc == rec.hlc => g.end = index + 1,
            _ => steps.groups.push(HlcGroup {
                hlc: rec.hlc,
                start: index,
                end: index + 1,
            }),
        }
        Some(())
    }
}

/// A whole trace in memory: its names and its steps.
#[derive(Clone, Debug, Default)]
pub struct Columnar {
    pub names: Names,
    pub steps: Steps,
}

impl Columnar {
    /// Build from records sorted by HLC (equal HLCs in arrival order).
    pub fn from_records(records: &[&Record]) -> Columnar {
        let names = Names::of(records.iter().copied());
        let mut steps = Steps {
            groups: Vec::new(),
            records: Vec::with_capacity(records.len()),
            ops: Vec::with_capacity(records.len()),
        };
        let mut builder = StepBuilder::new(&names);
        for rec in records {
            // The names come from these very records, so every lookup succeeds.
            let _ = builder.push(&mut steps, rec);
        }
        Columnar { names, steps }
    }
}
