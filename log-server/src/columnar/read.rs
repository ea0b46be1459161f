//! Reading NDJSON traces straight into [`Columnar`] form, for the in-memory replay.
//!
//! It gives exactly what [`read_traces`](crate::read_traces) followed by
//! [`Columnar::from_records`] gives (same records, errors, skipped counts; the differential test
//! below holds it to that), at a fraction of the cost: parsing threads intern node ids and
//! variable names per chunk and emit flat operations, so no [`Record`] (with its strings and
//! vectors) is built and freed per line, and the reading thread only renumbers and appends.
//! Sorting, the `add`/`remove` check (SPEC §6) and grouping by HLC then run on the dense form.

use rustc_hash::FxHashMap;

use super::{CRecord, Columnar, HlcGroup, Names, NodeIdx, NodeTable, Op, Steps, VarIdx, VarTable};
use crate::chunked::{self, ChunkCollect, ChunkParse, CHUNK_BYTES};
use crate::fast::{self, LineParts};
use crate::hlc::Hlc;
use crate::ndjson::{
    merge_errors, parse_record_reference, utf8_line, Origin, ReadOptions, TraceError, TraceInput,
};
use crate::record::Record;
use crate::state::ApplyError;
use crate::value::Value;

/// A trace read into memory for replay.
#[derive(Clone, Debug, Default)]
pub struct LoadedTrace {
    pub cols: Columnar,
    /// The inputs' names (for messages).
    pub sources: Vec<String>,
    /// Records kept (heartbeats included).
    pub records: usize,
    /// Bad records skipped (only with `skip_bad`).
    pub skipped: usize,
    /// Up to `MAX_REPORTED_ERRORS` of the skipped records' errors, in input and line order.
    pub errors: Vec<TraceError>,
}

/// Reads whole traces into columnar form: the records of all inputs sorted stably by HLC, bad
/// records reported (or skipped and counted with `skip_bad`) exactly as
/// [`read_traces`](crate::read_traces) does.
pub fn read_columnar(
    inputs: Vec<TraceInput<'_>>,
    opts: &ReadOptions,
) -> Result<LoadedTrace, TraceError> {
    read_columnar_with(inputs, opts, chunked::parse_threads(), CHUNK_BYTES)
}

fn read_columnar_with(
    inputs: Vec<TraceInput<'_>>,
    opts: &ReadOptions,
    threads: usize,
    chunk_bytes: usize,
) -> Result<LoadedTrace, TraceError> {
    let (mut all, summary) =
        chunked::read_lines(inputs, opts, threads, chunk_bytes, Gathered::default())?;
    if let Some(message) = all.overflow.take() {
        return Err(TraceError::io(0, message));
    }
    if !all.sorted {
        all.sort_by_hlc();
    }
    let mut loaded = LoadedTrace {
        sources: summary.sources,
        skipped: summary.skipped,
        errors: summary.errors,
        ..LoadedTrace::default()
    };
    if all.set_changes {
        let bad = all.check_set_changes(&loaded.sources, opts.skip_bad)?;
        if !bad.is_empty() {
            loaded.skipped += bad.len();
            merge_errors(&mut loaded.errors, &loaded.sources, bad);
            all.compact();
        }
    }
    loaded.records = all.recs.len();
    loaded.cols = all.finish();
    Ok(loaded)
}

/// Where a record came from, packed: input index in the top 24 bits, line in the low 40.
type PackedOrigin = u64;

const LINE_BITS: u32 = 40;

fn pack_origin(source: usize, line: usize) -> Option<PackedOrigin> {
    let (source, line) = (u64::try_from(source).ok()?, u64::try_from(line).ok()?);
    (source < 1 << (64 - LINE_BITS) && line < 1 << LINE_BITS).then_some(source << LINE_BITS | line)
}

fn unpack_origin(packed: PackedOrigin) -> Origin {
    Origin {
        source: (packed >> LINE_BITS) as usize,
        line: (packed & ((1 << LINE_BITS) - 1)) as usize,
    }
}

/// One chunk's lines in columnar form, with chunk-local node and variable numbers.
pub(crate) struct ColumnChunk {
    source: usize,
    nodes: NodeTable,
    vars: VarTable,
    hlcs: Vec<Hlc>,
    recs: Vec<CRecord>,
    lines: Vec<usize>,
    ops: Vec<Op>,
    parts: LineParts,
    sorted: bool,
    set_changes: bool,
}

impl ChunkParse for ColumnChunk {
    fn new(source: usize, lines: usize) -> Self {
        ColumnChunk {
            source,
            nodes: NodeTable::default(),
            vars: VarTable::default(),
            hlcs: Vec::with_capacity(lines),
            recs: Vec::with_capacity(lines),
            lines: Vec::with_capacity(lines),
            ops: Vec::with_capacity(lines),
            parts: LineParts::default(),
            sorted: true,
            set_changes: false,
        }
    }

    fn line(&mut self, text: &[u8], line: usize) -> Result<(), String> {
        let text = utf8_line(text)?;
        let (nodes, vars) = (self.nodes.len(), self.vars.len());
        let (node, hlc, leave) =
            if fast::fill_columnar(text, &mut self.nodes, &mut self.vars, &mut self.parts) {
                self.push_parts()
            } else {
                // Names this line interned before the fast path gave up must not outlive it
                // (a bad line's names are not the trace's).
                self.nodes.truncate(nodes);
                self.vars.truncate(vars);
                let rec = parse_record_reference(text)?;
                self.push_record(rec)
            };
        let first_op = self.recs.last().map_or(0, |r| r.end_op);
        let end_op = self.ops.len() as u32;
        if let Some(&before) = self.hlcs.last() {
            self.sorted &= before <= hlc;
        }
        self.hlcs.push(hlc);
        self.lines.push(line);
        self.recs.push(CRecord {
            node,
            first_op,
            end_op,
            leave,
            heartbeat: first_op == end_op && !leave,
        });
        Ok(())
    }
}

impl ColumnChunk {
    /// Appends the operations of the line in `parts` (unsets, sets, removes, adds: the order
    /// of application).
    fn push_parts(&mut self) -> (NodeIdx, Hlc, bool) {
        let parts = &mut self.parts;
        self.set_changes |= !parts.remove.is_empty() || !parts.add.is_empty();
        self.ops.extend(parts.unset.drain(..).map(Op::Unset));
        self.ops
            .extend(parts.set.drain(..).map(|(v, value)| match value {
                Some(value) => Op::Set(v, value),
                None => Op::Unset(v),
            }));
        self.ops
            .extend(parts.remove.drain(..).map(|(v, s)| Op::Remove(v, s)));
        self.ops
            .extend(parts.add.drain(..).map(|(v, s)| Op::Add(v, s)));
        (parts.node, parts.hlc, parts.leave)
    }

    /// Appends the operations of a record the reference reader read.
    fn push_record(&mut self, rec: Record) -> (NodeIdx, Hlc, bool) {
        let vars = &mut self.vars;
        self.set_changes |= !rec.remove.is_empty() || !rec.add.is_empty();
        for v in &rec.unset {
            self.ops.push(Op::Unset(vars.intern(v)));
        }
        for (v, value) in rec.set {
            let v = vars.intern(&v);
            self.ops.push(match value {
                Some(value) => Op::Set(v, value),
                None => Op::Unset(v),
            });
        }
        for (v, s) in rec.remove {
            self.ops.push(Op::Remove(vars.intern(&v), s));
        }
        for (v, s) in rec.add {
            self.ops.push(Op::Add(vars.intern(&v), s));
        }
        (self.nodes.intern(&rec.node), rec.hlc, rec.leave)
    }
}

/// Every chunk's records, renumbered to trace-wide node and variable numbers, in input and
/// line order until [`Gathered::sort_by_hlc`].
struct Gathered {
    nodes: NodeTable,
    vars: VarTable,
    hlcs: Vec<Hlc>,
    recs: Vec<CRecord>,
    origins: Vec<PackedOrigin>,
    ops: Vec<Op>,
    sorted: bool,
    set_changes: bool,
    /// Set when the trace outgrows the 32-bit indices of [`Steps`] or the packed origins.
    overflow: Option<String>,
}

impl Default for Gathered {
    fn default() -> Self {
        Gathered {
            nodes: NodeTable::default(),
            vars: VarTable::default(),
            hlcs: Vec::new(),
            recs: Vec::new(),
            origins: Vec::new(),
            ops: Vec::new(),
            sorted: true,
            set_changes: false,
            overflow: None,
        }
    }
}

impl ChunkCollect for Gathered {
    type Chunk = ColumnChunk;

    fn add(&mut self, chunk: ColumnChunk) {
        if self.overflow.is_some() {
            return;
        }
        let too_many = |n: usize| u32::try_from(n).is_err();
        if too_many(self.ops.len() + chunk.ops.len())
            || too_many(self.recs.len() + chunk.recs.len())
        {
            self.overflow = Some(format!(
                "the trace has more than {} records or changes, too many to replay in memory \
                 (hint: sort it by HLC and replay it with --stream)",
                u32::MAX
            ));
            return;
        }
        let node_map = self.nodes.intern_all(&chunk.nodes);
        let var_map = self.vars.intern_all(&chunk.vars);
        if let (Some(last), Some(first)) = (self.hlcs.last(), chunk.hlcs.first()) {
            self.sorted &= last <= first;
        }
        self.sorted &= chunk.sorted;
        self.set_changes |= chunk.set_changes;
        let base = self.ops.len() as u32;
        self.ops.extend(chunk.ops.into_iter().map(|mut op| {
            op.renumber(&var_map);
            op
        }));
        self.recs.extend(chunk.recs.into_iter().map(|r| CRecord {
            node: node_map[r.node as usize],
            first_op: r.first_op + base,
            end_op: r.end_op + base,
            ..r
        }));
        self.hlcs.extend(chunk.hlcs);
        for line in chunk.lines {
            match pack_origin(chunk.source, line) {
                Some(origin) => self.origins.push(origin),
                None => {
                    self.overflow = Some(format!(
                        "line {line} of input {}: too many lines or inputs to replay in memory",
                        chunk.source + 1
                    ));
                    return;
                }
            }
        }
    }
}

impl Gathered {
    /// Sorts the records stably by HLC (equal HLCs keep input and line order). Operations stay
    /// where they are: records point at them.
    fn sort_by_hlc(&mut self) {
        let mut order: Vec<(Hlc, u32)> = self
            .hlcs
            .iter()
            .enumerate()
            .map(|(i, &h)| (h, i as u32))
            .collect();
        // (HLC, position) pairs are distinct, so an unstable sort is a stable sort by HLC.
        order.sort_unstable();
        self.recs = order.iter().map(|&(_, i)| self.recs[i as usize]).collect();
        self.origins = order
            .iter()
            .map(|&(_, i)| self.origins[i as usize])
            .collect();
        self.hlcs = order.into_iter().map(|(h, _)| h).collect();
        self.sorted = true;
    }

    /// Replays, per node in HLC order, what decides `add`/`remove` errors: the kind of every
    /// variable that is ever an `add`/`remove` target, when it holds a non-set value. Same
    /// results as `NonSetKinds` over records (see `state.rs`). Returns the bad records'
    /// errors with their origins (and marks them dropped); without `skip_bad` the first is an
    /// error.
    fn check_set_changes(
        &mut self,
        sources: &[String],
        skip_bad: bool,
    ) -> Result<Vec<(Origin, TraceError)>, TraceError> {
        let mut bad = Vec::new();
        let Some(mut kinds) = SetKinds::new(&self.ops, self.vars.len(), self.nodes.len()) else {
            return Ok(bad);
        };
        for (i, rec) in self.recs.iter_mut().enumerate() {
            if let Err(e) = kinds.apply(rec, &self.ops, &self.vars) {
                let origin = unpack_origin(self.origins[i]);
                let name = sources.get(origin.source).cloned().unwrap_or_default();
                let err = TraceError::new(origin.line, e.to_string()).with_source(name);
                if !skip_bad {
                    return Err(err);
                }
                // Marked for `compact`: a record can never point past the operations.
                rec.first_op = u32::MAX;
                bad.push((origin, err));
            }
        }
        Ok(bad)
    }

    /// Drops the records `check_set_changes` marked, and the node ids and variable names only
    /// they used (they are not the trace's, as with records never read).
    fn compact(&mut self) {
        let mut keep = self.recs.iter().map(|r| r.first_op != u32::MAX);
        self.hlcs.retain(|_| keep.next().unwrap_or(false));
        let mut keep = self.recs.iter().map(|r| r.first_op != u32::MAX);
        self.origins.retain(|_| keep.next().unwrap_or(false));
        self.recs.retain(|r| r.first_op != u32::MAX);

        let (old_nodes, old_vars) = (
            std::mem::take(&mut self.nodes),
            std::mem::take(&mut self.vars),
        );
        let mut node_map: Vec<Option<NodeIdx>> = vec![None; old_nodes.len()];
        let mut var_map: Vec<Option<VarIdx>> = vec![None; old_vars.len()];
        let mut ops = Vec::with_capacity(self.ops.len());
        for rec in &mut self.recs {
            let node = &mut node_map[rec.node as usize];
            rec.node = *node.get_or_insert_with(|| self.nodes.intern(old_nodes.name(rec.node)));
            let first_op = ops.len() as u32;
            for op in &self.ops[rec.first_op as usize..rec.end_op as usize] {
                let mut op = op.clone();
                let v = match &mut op {
                    Op::Unset(v) | Op::Set(v, _) | Op::Remove(v, _) | Op::Add(v, _) => v,
                };
                *v = *var_map[*v as usize]
                    .get_or_insert_with(|| self.vars.intern(old_vars.name(*v)));
                ops.push(op);
            }
            rec.first_op = first_op;
            rec.end_op = ops.len() as u32;
        }
        self.ops = ops;
    }

    /// Node ids renumbered in byte order, records grouped by HLC.
    fn finish(self) -> Columnar {
        assemble(self.nodes, self.vars, self.recs, &self.hlcs, self.ops)
    }
}

/// The [`Columnar`] of records in HLC order (`hlcs[i]` is the HLC of `recs[i]`) whose node
/// numbers index `nodes` in first-seen order: node ids renumbered in byte order, records
/// grouped by HLC. Every reader that builds the columnar form directly ends here.
pub(crate) fn assemble(
    nodes: NodeTable,
    vars: VarTable,
    mut records: Vec<CRecord>,
    hlcs: &[Hlc],
    ops: Vec<Op>,
) -> Columnar {
    let mut ids = nodes.into_names();
    let mut by_id: Vec<NodeIdx> = (0..ids.len() as NodeIdx).collect();
    by_id.sort_unstable_by(|&a, &b| ids[a as usize].cmp(&ids[b as usize]));
    let mut rank = vec![0; ids.len()];
    for (new, &old) in by_id.iter().enumerate() {
        rank[old as usize] = new as NodeIdx;
    }
    ids.sort_unstable();
    let mut groups: Vec<HlcGroup> = Vec::new();
    for (i, (rec, &hlc)) in records.iter_mut().zip(hlcs).enumerate() {
        rec.node = rank[rec.node as usize];
        let i = i as u32;
        match groups.last_mut() {
            Some(g) if g.hlc == hlc => g.end = i + 1,
            _ => groups.push(HlcGroup {
                hlc,
                start: i,
                end: i + 1,
            }),
        }
    }
    Columnar {
        names: Names { nodes: ids, vars },
        steps: Steps {
            groups,
            records,
            ops,
        },
    }
}

/// Replays, per node in HLC order, what decides `add`/`remove` errors (SPEC §6): the kind of
/// every variable that is ever an `add`/`remove` target while it holds a non-set value. Same
/// results as `NonSetKinds` over records (see `state.rs`), on the dense form.
pub(crate) struct SetKinds {
    /// Variables ever an `add`/`remove` target (the only ones whose kind matters); `None`:
    /// every variable (a streaming reader does not know the targets in advance).
    tracked: Option<Vec<bool>>,
    kinds: Vec<FxHashMap<VarIdx, &'static str>>,
    journal: Vec<(VarIdx, Option<&'static str>)>,
}

impl SetKinds {
    /// `None` when no operation adds or removes: nothing can fail.
    pub(crate) fn new(ops: &[Op], vars: usize, nodes: usize) -> Option<SetKinds> {
        let mut tracked = vec![false; vars];
        let mut any = false;
        for op in ops {
            if let Op::Add(v, _) | Op::Remove(v, _) = op {
                tracked[*v as usize] = true;
                any = true;
            }
        }
        any.then(|| SetKinds {
            tracked: Some(tracked),
            kinds: vec![FxHashMap::default(); nodes],
            journal: Vec::new(),
        })
    }

    /// Tracks every variable of every node, for records arriving one at a time (node numbers
    /// may grow as they come).
    pub(crate) fn all() -> SetKinds {
        SetKinds {
            tracked: None,
            kinds: Vec::new(),
            journal: Vec::new(),
        }
    }

    /// Applies the next record (in HLC order); on error nothing changes.
    pub(crate) fn apply(
        &mut self,
        rec: &CRecord,
        ops: &[Op],
        vars: &VarTable,
    ) -> Result<(), ApplyError> {
        if rec.node as usize >= self.kinds.len() {
            self.kinds
                .resize_with(rec.node as usize + 1, FxHashMap::default);
        }
        let node_kinds = &mut self.kinds[rec.node as usize];
        self.journal.clear();
        for op in &ops[rec.first_op as usize..rec.end_op as usize] {
            let (v, kind) = match op {
                Op::Unset(v) => (*v, None),
                Op::Set(v, Value::Set(_)) => (*v, None),
                Op::Set(v, value) => (*v, Some(value.kind_name())),
                Op::Remove(v, _) | Op::Add(v, _) => {
                    if let Some(&found) = node_kinds.get(v) {
                        for &(v, before) in self.journal.iter().rev() {
                            match before {
                                Some(kind) => node_kinds.insert(v, kind),
                                None => node_kinds.remove(&v),
                            };
                        }
                        let op = if matches!(op, Op::Add(..)) {
                            "add"
                        } else {
                            "remove"
                        };
                        return Err(ApplyError {
                            op,
                            var: vars.name(*v).clone(),
                            found,
                        });
                    }
                    // A set is left behind.
                    (*v, None)
                }
            };
            if self.tracked.as_ref().is_some_and(|t| !t[v as usize]) {
                continue;
            }
            let before = match kind {
                Some(kind) => node_kinds.insert(v, kind),
                None => node_kinds.remove(&v),
            };
            self.journal.push((v, before));
        }
        if rec.leave {
            node_kinds.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columnar::describe;
    use crate::ndjson::read_traces;
    use proptest::prelude::*;

    fn inputs(texts: &[String]) -> Vec<TraceInput<'_>> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| TraceInput {
                name: format!("in{i}"),
                reader: Box::new(t.as_bytes()),
            })
            .collect()
    }

    /// `read_columnar` against `read_traces` + `Columnar::from_records`.
    fn check(texts: &[String], skip_bad: bool, threads: usize, chunk_bytes: usize) {
        let opts = ReadOptions { skip_bad };
        let want = read_traces(inputs(texts), &opts).map(|t| {
            let recs: Vec<&Record> = t.records.iter().map(|(_, r)| r).collect();
            let cols = Columnar::from_records(&recs);
            (describe(&cols), t.records.len(), t.skipped, t.errors)
        });
        let got = read_columnar_with(inputs(texts), &opts, threads, chunk_bytes)
            .map(|t| (describe(&t.cols), t.records, t.skipped, t.errors));
        assert_eq!(got, want, "{texts:?}");
    }

    fn line() -> impl Strategy<Value = String> {
        let node = prop_oneof![Just("n1"), Just("n2"), Just("b"), Just("n\\u0031")];
        let var = prop_oneof![
            Just("a.x"),
            Just("a.y"),
            Just("b.z"),
            Just("a.\\u0078"),
            Just("bad")
        ];
        let value = prop_oneof![
            Just("1"),
            Just("2.5"),
            Just("\"s\""),
            Just("[1,2]"),
            Just("[]"),
            Just("null"),
            Just("true"),
            Just("{\"f\":1}"),
            Just("99999999999999999999"),
        ];
        let hlc = (0u64..4, 0u64..3).prop_map(|(l, c)| format!("[{l},{c}]"));
        let field = prop_oneof![
            (var.clone(), value).prop_map(|(k, v)| format!("\"set\":{{\"{k}\":{v}}}")),
            var.clone().prop_map(|k| format!("\"unset\":[\"{k}\"]")),
            var.clone().prop_map(|k| format!("\"add\":{{\"{k}\":[3]}}")),
            var.prop_map(|k| format!("\"remove\":{{\"{k}\":[1]}}")),
            Just("\"leave\":true".to_string()),
            Just("\"pt\":5".to_string()),
        ];
        prop_oneof![
            8 => (node, hlc, prop::collection::vec(field, 0..3)).prop_map(|(n, h, fields)| {
                let mut text = format!("{{\"node\":\"{n}\",\"hlc\":{h}");
                for f in fields {
                    text.push(',');
                    text.push_str(&f);
                }
                text.push('}');
                text
            }),
            1 => Just(String::new()),
            1 => Just("garbage".to_string()),
        ]
    }

    fn trace() -> impl Strategy<Value = String> {
        prop::collection::vec(line(), 0..25).prop_map(|lines| lines.join("\n"))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        #[test]
        fn columnar_reading_is_reading_records(
            texts in prop::collection::vec(trace(), 1..4),
            skip_bad in any::<bool>(),
            threads in 1usize..4,
            chunk_bytes in 1usize..300,
        ) {
            check(&texts, skip_bad, threads, chunk_bytes);
        }
    }

    #[test]
    fn set_changes_on_non_sets_are_found_after_sorting() {
        let text = [
            r#"{"node":"n","hlc":[3,0],"add":{"a.b":[1]}}"#,
            r#"{"node":"n","hlc":[1,0],"set":{"a.b":5}}"#,
            r#"{"node":"n","hlc":[2,0],"unset":["a.b"]}"#,
            r#"{"node":"m","hlc":[2,0],"set":{"a.b":"x"}}"#,
            r#"{"node":"m","hlc":[4,0],"remove":{"a.b":[1]},"set":{"c.d":1}}"#,
        ]
        .join("\n");
        let texts = [text];
        check(&texts, false, 1, 1 << 20);
        check(&texts, true, 2, 10);
        let err = read_columnar(inputs(&texts), &ReadOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "in0:5: \"remove\" on a non-set value of a.b (string)"
        );
        let loaded = read_columnar(inputs(&texts), &ReadOptions { skip_bad: true }).unwrap();
        assert_eq!(loaded.skipped, 1);
        // `c.d` appeared only in the dropped record.
        assert!(loaded.cols.names.vars.get("c.d").is_none());
    }

    #[test]
    fn origins_pack_and_unpack() {
        for (source, line) in [(0, 1), (3, 123_456_789), ((1 << 24) - 1, (1 << 40) - 1)] {
            let packed = pack_origin(source, line).unwrap();
            assert_eq!(unpack_origin(packed), Origin { source, line });
        }
        assert_eq!(pack_origin(1 << 24, 1), None);
        assert_eq!(pack_origin(0, 1 << 40), None);
    }
}
