//! Output records (SPEC §4.3) and their three forms: JSON Lines (the machine form, canonical
//! key order), an aligned table (one row per cut and node) and CSV (the same rows).

use std::io::{self, Write};

use log_server::{Hlc, Value};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

/// One emitted record.
#[derive(Clone, Debug, PartialEq)]
pub enum OutputRecord {
    /// A satisfying cut (`EMIT CUTS`) or the `begin` of a run (`EMIT CHANGES`).
    Cut(CutRecord),
    /// The `end` of a run (`EMIT CHANGES`).
    End(EndRecord),
}

#[derive(Clone, Debug, PartialEq)]
pub struct CutRecord {
    /// `EMIT CHANGES`: this cut begins a run.
    pub begin: bool,
    pub seq: u64,
    pub hlc: Hlc,
    /// SELECT items in order, under their output names.
    pub values: Vec<(String, OutValue)>,
    /// `$k` → node id (`None` prints `null`: P(t) was empty); `None` when WHEN has no outer
    /// placeholders.
    pub witness: Option<Vec<(u32, Option<String>)>>,
    /// Live sources: idle nodes excluded from the frontier.
    pub stale: Vec<String>,
    /// Live sources: a late record was applied since the previous emitted record.
    pub late: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EndRecord {
    pub seq: u64,
    pub hlc: Hlc,
    pub duration_ms: u64,
    pub cuts: u64,
    pub stale: Vec<String>,
    pub late: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum OutValue {
    /// A variable: node id → value, sorted by node id, NULLs omitted.
    Nodes(Vec<(String, Value)>),
    /// An aggregate.
    One(Option<Value>),
}

/// A [`CutRecord`] borrowing its node ids and values (from the engine's cut state, or from a
/// `CutRecord`): the one form cut records are serialized from, so a replay can write JSON
/// without copying anything.
#[derive(Clone, Debug, PartialEq)]
pub struct CutView<'a> {
    pub begin: bool,
    pub seq: u64,
    pub hlc: Hlc,
    pub values: Vec<(&'a str, OutValueView<'a>)>,
    pub witness: Option<Vec<(u32, Option<&'a str>)>>,
    pub stale: &'a [String],
    pub late: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum OutValueView<'a> {
    Nodes(Vec<(&'a str, &'a Value)>),
    One(Option<&'a Value>),
}

impl CutRecord {
    pub fn view(&self) -> CutView<'_> {
        CutView {
            begin: self.begin,
            seq: self.seq,
            hlc: self.hlc,
            values: self
                .values
                .iter()
                .map(|(name, v)| {
                    let v = match v {
                        OutValue::Nodes(nodes) => OutValueView::Nodes(
                            nodes.iter().map(|(n, x)| (n.as_str(), x)).collect(),
                        ),
                        OutValue::One(x) => OutValueView::One(x.as_ref()),
                    };
                    (name.as_str(), v)
                })
                .collect(),
            witness: self
                .witness
                .as_ref()
                .map(|w| w.iter().map(|(k, node)| (*k, node.as_deref())).collect()),
            stale: &self.stale,
            late: self.late,
        }
    }
}

impl CutView<'_> {
    pub fn to_owned(&self) -> CutRecord {
        CutRecord {
            begin: self.begin,
            seq: self.seq,
            hlc: self.hlc,
            values: self
                .values
                .iter()
                .map(|(name, v)| {
                    let v = match v {
                        OutValueView::Nodes(nodes) => OutValue::Nodes(
                            nodes
                                .iter()
                                .map(|(n, x)| (n.to_string(), (*x).clone()))
                                .collect(),
                        ),
                        OutValueView::One(x) => OutValue::One(x.cloned()),
                    };
                    (name.to_string(), v)
                })
                .collect(),
            witness: self.witness.as_ref().map(|w| {
                w.iter()
                    .map(|(k, node)| (*k, node.map(str::to_string)))
                    .collect()
            }),
            stale: self.stale.to_vec(),
            late: self.late,
        }
    }
}

struct Values<'v, 'a>(&'v [(&'a str, OutValueView<'a>)]);
struct NodeMap<'v, 'a>(&'v [(&'a str, &'a Value)]);
struct Witness<'v, 'a>(&'v [(u32, Option<&'a str>)]);

impl Serialize for OutValueView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            OutValueView::Nodes(nodes) => NodeMap(nodes).serialize(s),
            OutValueView::One(v) => v.serialize(s),
        }
    }
}

impl Serialize for NodeMap<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (node, v) in self.0 {
            m.serialize_entry(node, v)?;
        }
        m.end()
    }
}

impl Serialize for Values<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (name, v) in self.0 {
            m.serialize_entry(name, v)?;
        }
        m.end()
    }
}

impl Serialize for Witness<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, node) in self.0 {
            m.serialize_entry(&format!("${k}"), node)?;
        }
        m.end()
    }
}

/// Canonical key order: `event`, `seq`, `hlc`, `values`, `witness`, `stale`, `late`.
impl Serialize for CutView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if self.begin {
            m.serialize_entry("event", "begin")?;
        }
        m.serialize_entry("seq", &self.seq)?;
        m.serialize_entry("hlc", &self.hlc)?;
        m.serialize_entry("values", &Values(&self.values))?;
        if let Some(w) = &self.witness {
            m.serialize_entry("witness", &Witness(w))?;
        }
        if !self.stale.is_empty() {
            m.serialize_entry("stale", self.stale)?;
        }
        if self.late {
            m.serialize_entry("late", &true)?;
        }
        m.end()
    }
}

/// Canonical key order: `event`, `seq`, `hlc`, then `values`/`witness` (see [`CutView`]) or
/// `duration_ms`/`cuts`, then `stale`, `late`.
impl Serialize for OutputRecord {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            OutputRecord::Cut(c) => c.view().serialize(s),
            OutputRecord::End(e) => {
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("event", "end")?;
                m.serialize_entry("seq", &e.seq)?;
                m.serialize_entry("hlc", &e.hlc)?;
                m.serialize_entry("duration_ms", &e.duration_ms)?;
                m.serialize_entry("cuts", &e.cuts)?;
                if !e.stale.is_empty() {
                    m.serialize_entry("stale", &e.stale)?;
                }
                if e.late {
                    m.serialize_entry("late", &true)?;
                }
                m.end()
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Table,
    Csv,
}

/// Writes records in one of the formats. JSON Lines and CSV stream; the table needs every
/// row to align its columns, so it is printed by [`RecordWriter::finish`].
pub struct RecordWriter<W: Write> {
    format: Format,
    out: W,
    columns: Vec<String>,
    changes: bool,
    /// Buffered rows as (column, cell) pairs, laid out against the final header at the end
    /// (`log.*` columns are only known once every record is seen).
    rows: Vec<Vec<(String, String)>>,
    records: u64,
    /// Some record carried a witness (WHEN has outer placeholders).
    witness: bool,
}

impl<W: Write> RecordWriter<W> {
    /// `columns`: the output names known from the plan (variables and aggregates; `log.*`
    /// columns are added as they appear). `changes`: the query is `EMIT CHANGES`.
    pub fn new(format: Format, out: W, changes: bool) -> RecordWriter<W> {
        RecordWriter {
            format,
            out,
            columns: Vec::new(),
            changes,
            rows: Vec::new(),
            records: 0,
            witness: false,
        }
    }

    /// Writes a cut record given as a view: JSON Lines directly, table and CSV rows from its
    /// owned form.
    pub fn write_cut(&mut self, cut: &CutView<'_>) -> io::Result<()> {
        match self.format {
            Format::Json => {
                self.records += 1;
                serde_json::to_writer(&mut self.out, cut)?;
                self.out.write_all(b"\n")
            }
            Format::Table | Format::Csv => self.write(&OutputRecord::Cut(cut.to_owned())),
        }
    }

    pub fn write(&mut self, rec: &OutputRecord) -> io::Result<()> {
        self.records += 1;
        match self.format {
            Format::Json => {
                serde_json::to_writer(&mut self.out, rec)?;
                self.out.write_all(b"\n")
            }
            Format::Table | Format::Csv => {
                self.add_rows(rec);
                Ok(())
            }
        }
    }

    /// Lay out a record as rows: one per node that appears in any per-node value (or one
    /// row if none does); aggregates repeat on every row of their cut.
    fn add_rows(&mut self, rec: &OutputRecord) {
        match rec {
            OutputRecord::Cut(c) => {
                for (name, _) in &c.values {
                    if !self.columns.contains(name) {
                        self.columns.push(name.clone());
                    }
                }
                let mut nodes: Vec<&str> = c
                    .values
                    .iter()
                    .filter_map(|(_, v)| match v {
                        OutValue::Nodes(ns) => Some(ns.iter().map(|(n, _)| n.as_str())),
                        OutValue::One(_) => None,
                    })
                    .flatten()
                    .collect();
                nodes.sort_unstable();
                nodes.dedup();
                self.witness |= c.witness.is_some();
                let witness = c.witness.as_ref().map(|w| {
                    w.iter()
                        .map(|(k, n)| format!("${k}={}", n.as_deref().unwrap_or("NULL")))
                        .collect::<Vec<_>>()
                        .join(" ")
                });
                let row_nodes: Vec<Option<&str>> = if nodes.is_empty() {
                    vec![None]
                } else {
                    nodes.into_iter().map(Some).collect()
                };
                for node in row_nodes {
                    let mut cells: Vec<(String, String)> = vec![
                        (
                            "event".into(),
                            if c.begin {
                                "begin".into()
                            } else {
                                String::new()
                            },
                        ),
                        ("seq".into(), c.seq.to_string()),
                        ("node".into(), node.unwrap_or("").to_string()),
                    ];
                    cells.extend(hlc_cells(c.hlc));
                    for (name, v) in &c.values {
                        let cell = match v {
                            OutValue::One(v) => v.as_ref().map(cell_text).unwrap_or_default(),
                            OutValue::Nodes(ns) => ns
                                .iter()
                                .find(|(n, _)| Some(n.as_str()) == node)
                                .map(|(_, v)| cell_text(v))
                                .unwrap_or_default(),
                        };
                        cells.push((name.clone(), cell));
                    }
                    cells.push(("witness".into(), witness.clone().unwrap_or_default()));
                    self.rows.push(cells);
                }
            }
            OutputRecord::End(e) => {
                let mut cells = vec![
                    ("event".into(), "end".into()),
                    ("seq".into(), e.seq.to_string()),
                    ("duration_ms".into(), e.duration_ms.to_string()),
                    ("cuts".into(), e.cuts.to_string()),
                ];
                cells.extend(hlc_cells(e.hlc));
                self.rows.push(cells);
            }
        }
    }

    fn header(&self) -> Vec<String> {
        let mut h = Vec::new();
        if self.changes {
            h.push("event".to_string());
        }
        h.push("seq".into());
        // CSV is for data tools: the HLC as two numbers rather than "[l,c]".
        if self.format == Format::Csv {
            h.extend(["hlc_physical", "hlc_logical"].map(String::from));
        } else {
            h.push("hlc".into());
        }
        h.push("node".into());
        h.extend(self.columns.iter().cloned());
        if self.changes {
            h.extend(["duration_ms", "cuts"].map(String::from));
        }
        if self.witness {
            h.push("witness".into());
        }
        h
    }

    fn row_for(header: &[String], cells: &[(String, String)]) -> Vec<String> {
        header
            .iter()
            .map(|col| {
                cells
                    .iter()
                    .find(|(k, _)| k == col)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Flush what is buffered (the table, the CSV rows) and return the writer.
    pub fn finish(mut self) -> io::Result<W> {
        let header = self.header();
        match self.format {
            Format::Json => {}
            Format::Csv => {
                let mut csv = csv::Writer::from_writer(&mut self.out);
                csv.write_record(&header)?;
                for r in &self.rows {
                    csv.write_record(Self::row_for(&header, r))?;
                }
                csv.flush()?;
            }
            Format::Table => {
                let mut table = comfy_table::Table::new();
                table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
                table.set_header(header.clone());
                for r in &self.rows {
                    table.add_row(Self::row_for(&header, r));
                }
                writeln!(self.out, "{table}")?;
                let n = self.records;
                let noun = if self.changes { "record" } else { "cut" };
                writeln!(self.out, "({n} {noun}{})", if n == 1 { "" } else { "s" })?;
            }
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The HLC as the table shows it (`hlc`) and as CSV gives it (two numeric columns).
fn hlc_cells(hlc: Hlc) -> [(String, String); 3] {
    [
        ("hlc".into(), hlc.to_string()),
        ("hlc_physical".into(), hlc.physical().to_string()),
        ("hlc_logical".into(), hlc.logical().to_string()),
    ]
}

/// A value in a table or CSV cell: strings as they are, everything else as canonical JSON.
fn cell_text(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        other => other.to_json(),
    }
}
