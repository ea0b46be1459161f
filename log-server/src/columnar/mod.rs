//! The in-memory form of a trace for replay: node ids and variable names interned once, records
//! flattened into one array of operations, grouped by HLC. Replaying it does no string hashing
//! and no allocation per step.
//!
//! Node ids are interned in byte order, so comparing node indices compares node ids: the
//! order of every node map in the output, of P(t) and of witnesses.
//!
//! Two ways in: [`Columnar::from_records`] (records already parsed, e.g. from a log server or a
//! streaming merge) and [`read_columnar`], which parses NDJSON lines straight into this form
//! on several threads without building a [`Record`] per line (the in-memory replay's loader).

mod read;

#[cfg(feature = "parquet")]
pub(crate) use read::{assemble, SetKinds};
pub use read::{read_columnar, LoadedTrace};

use rustc_hash::{FxHashMap, FxHashSet};

use crate::hlc::Hlc;
use crate::record::{Record, VarName};
use crate::value::{SetValue, Value};

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

    /// Renumbers the variable through `map` (old number -> new), when parts read separately
    /// are joined.
    pub(crate) fn renumber(&mut self, map: &[VarIdx]) {
        let (Op::Unset(v) | Op::Set(v, _) | Op::Remove(v, _) | Op::Add(v, _)) = self;
        *v = map[*v as usize];
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

/// Interned node ids, in the order first seen (a [`Names`] sorts them).
#[derive(Clone, Debug, Default)]
pub struct NodeTable {
    names: Vec<String>,
    index: FxHashMap<String, NodeIdx>,
    /// The last id looked up: consecutive records often share their node.
    last: Option<NodeIdx>,
}

impl NodeTable {
    pub fn intern(&mut self, id: &str) -> NodeIdx {
        if let Some(i) = self.last {
            if self.names.get(i as usize).is_some_and(|n| n == id) {
                return i;
            }
        }
        let i = match self.index.get(id) {
            Some(&i) => i,
            None => {
                let i = self.names.len() as NodeIdx;
                self.names.push(id.to_string());
                self.index.insert(id.to_string(), i);
                i
            }
        };
        self.last = Some(i);
        i
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn name(&self, i: NodeIdx) -> &str {
        &self.names[i as usize]
    }

    /// Forgets the ids interned after the first `len` (those of a line that turned out bad).
    pub(crate) fn truncate(&mut self, len: usize) {
        for id in self.names.drain(len.min(self.names.len())..) {
            self.index.remove(&id);
        }
        self.last = None;
    }

    pub(crate) fn into_names(self) -> Vec<String> {
        self.names
    }

    /// Interns every id of `other`: the new number of each of `other`'s.
    pub(crate) fn intern_all(&mut self, other: &NodeTable) -> Vec<NodeIdx> {
        other.names.iter().map(|n| self.intern(n)).collect()
    }
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
        self.push_new(name.clone())
    }

    /// Interns a name known to be missing.
    fn push_new(&mut self, name: VarName) -> VarIdx {
        let i = self.names.len() as VarIdx;
        self.index.insert(name.as_str().to_string(), i);
        self.names.push(name);
        i
    }

    /// The index of `name` as written in a trace, interning it if it is a valid name.
    /// Interns every name of `other`: the new number of each of `other`'s.
    pub(crate) fn intern_all(&mut self, other: &VarTable) -> Vec<VarIdx> {
        other.names.iter().map(|v| self.intern(v)).collect()
    }

    pub(crate) fn intern_str(&mut self, name: &str) -> Option<VarIdx> {
        match self.index.get(name) {
            Some(&i) => Some(i),
            None => VarName::parse(name).ok().map(|v| self.push_new(v)),
        }
    }

    /// Forgets the names interned after the first `len` (those of a line that turned out bad).
    pub(crate) fn truncate(&mut self, len: usize) {
        for name in self.names.drain(len.min(self.names.len())..) {
            self.index.remove(name.as_str());
        }
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
    /// Node id -> number, for readers that build steps against these names.
    pub fn node_index(&self) -> FxHashMap<&str, NodeIdx> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i as NodeIdx))
            .collect()
    }

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
    /// Appends a record whose operations were just pushed, at `hlc` (not before the last
    /// record's), to its HLC group.
    pub fn push_record(&mut self, record: CRecord, hlc: Hlc) {
        let index = self.records.len() as u32;
        self.records.push(record);
        match self.groups.last_mut() {
            Some(g) if g.hlc == hlc => g.end = index + 1,
            _ => self.groups.push(HlcGroup {
                hlc,
                start: index,
                end: index + 1,
            }),
        }
    }

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
        let node_index = names.node_index();
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
        let record = CRecord {
            node,
            first_op,
            end_op: steps.ops.len() as u32,
            leave: rec.leave,
            heartbeat: rec.is_heartbeat(),
        };
        steps.push_record(record, rec.hlc);
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

/// A columnar trace as comparable text (tests): every record with its HLC, node id, flags and
/// operations by variable name, since variable numbering may differ between readers.
#[cfg(test)]
pub(crate) fn describe(cols: &Columnar) -> Vec<String> {
    let mut out = vec![format!("nodes {:?}", cols.names.nodes)];
    let mut vars: Vec<&str> = (0..cols.names.vars.len())
        .map(|v| cols.names.vars.name(v as VarIdx).as_str())
        .collect();
    vars.sort_unstable();
    out.push(format!("vars {vars:?}"));
    for g in &cols.steps.groups {
        for r in &cols.steps.records[g.start as usize..g.end as usize] {
            let ops: Vec<String> = cols.steps.ops[r.first_op as usize..r.end_op as usize]
                .iter()
                .map(|op| {
                    let name = cols.names.vars.name(op.var());
                    match op {
                        Op::Unset(_) => format!("unset {name}"),
                        Op::Set(_, v) => format!("set {name} {v:?}"),
                        Op::Remove(_, s) => format!("remove {name} {s:?}"),
                        Op::Add(_, s) => format!("add {name} {s:?}"),
                    }
                })
                .collect();
            out.push(format!(
                "{} {} leave={} heartbeat={} {ops:?}",
                g.hlc, cols.names.nodes[r.node as usize], r.leave, r.heartbeat
            ));
        }
    }
    out
}
