//! Writing records as a Parquet trace: one row per change, in the order given (callers pass
//! records sorted by HLC, so files are sorted by (hlc, rec, idx) and readers take the fast,
//! sort-free path).

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, UInt32Builder,
    UInt64Builder,
};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::metadata::KeyValue;
use datafusion::parquet::file::properties::WriterProperties;

use super::{trace_schema, FORMAT_NAME};
use crate::columnar::{CRecord, Names, Op, Steps};
use crate::record::Record;
use crate::value::{SetValue, Value};

/// Rows buffered before they are handed to the Parquet writer as one batch.
const BATCH_ROWS: usize = 64 * 1024;

/// Rows per row group: small enough that a reader under a memory limit holds little at once,
/// large enough for good compression and statistics.
const ROW_GROUP_ROWS: usize = 512 * 1024;

/// What every row of one record repeats: its number, node, packed HLC and physical time.
struct Head<'a> {
    rec: u64,
    node: &'a str,
    hlc: u64,
    pt: Option<u64>,
}

/// Column builders for one batch.
struct Columns {
    rec: UInt64Builder,
    idx: UInt32Builder,
    node: StringBuilder,
    hlc: UInt64Builder,
    op: StringBuilder,
    key: StringBuilder,
    v_int: Int64Builder,
    v_float: Float64Builder,
    v_str: StringBuilder,
    v_bool: BooleanBuilder,
    v_json: StringBuilder,
    pt: UInt64Builder,
    rows: usize,
}

impl Columns {
    fn new() -> Columns {
        Columns {
            rec: UInt64Builder::with_capacity(BATCH_ROWS),
            idx: UInt32Builder::with_capacity(BATCH_ROWS),
            node: StringBuilder::new(),
            hlc: UInt64Builder::with_capacity(BATCH_ROWS),
            op: StringBuilder::new(),
            key: StringBuilder::new(),
            v_int: Int64Builder::with_capacity(BATCH_ROWS),
            v_float: Float64Builder::with_capacity(BATCH_ROWS),
            v_str: StringBuilder::new(),
            v_bool: BooleanBuilder::with_capacity(BATCH_ROWS),
            v_json: StringBuilder::new(),
            pt: UInt64Builder::with_capacity(BATCH_ROWS),
            rows: 0,
        }
    }

    /// One row of the record `head`; `value` fills the typed value columns (all null when
    /// `None`), `elements` the JSON column of an `add`/`remove` element list.
    fn row(
        &mut self,
        head: &Head<'_>,
        idx: u32,
        op: &str,
        key: Option<&str>,
        value: Option<&Value>,
        elements: Option<&SetValue>,
    ) {
        self.rec.append_value(head.rec);
        self.idx.append_value(idx);
        self.node.append_value(head.node);
        self.hlc.append_value(head.hlc);
        self.op.append_value(op);
        self.key.append_option(key);
        let (mut int, mut float, mut string, mut boolean, mut json) =
            (None, None, None, None, None);
        match value {
            None => {}
            Some(Value::Int(i)) => int = Some(*i),
            Some(Value::Float(f)) => float = Some(*f),
            Some(Value::Str(s)) => string = Some(s.as_str()),
            Some(Value::Bool(b)) => boolean = Some(*b),
            Some(v @ (Value::Set(_) | Value::Struct(_))) => json = Some(v.to_json()),
        }
        if let Some(s) = elements {
            let mut text = String::new();
            s.write_json(&mut text);
            json = Some(text);
        }
        self.v_int.append_option(int);
        self.v_float.append_option(float);
        self.v_str.append_option(string);
        self.v_bool.append_option(boolean);
        self.v_json.append_option(json);
        self.pt.append_option(head.pt);
        self.rows += 1;
    }

    fn finish(&mut self) -> Result<RecordBatch, String> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.rec.finish()),
            Arc::new(self.idx.finish()),
            Arc::new(self.node.finish()),
            Arc::new(self.hlc.finish()),
            Arc::new(self.op.finish()),
            Arc::new(self.key.finish()),
            Arc::new(self.v_int.finish()),
            Arc::new(self.v_float.finish()),
            Arc::new(self.v_str.finish()),
            Arc::new(self.v_bool.finish()),
            Arc::new(self.v_json.finish()),
            Arc::new(self.pt.finish()),
        ];
        self.rows = 0;
        RecordBatch::try_new(trace_schema(), columns).map_err(|e| e.to_string())
    }
}

/// Writes records one at a time as a Parquet trace.
pub struct ParquetWriter<W: Write + Send> {
    writer: ArrowWriter<W>,
    columns: Columns,
    next_rec: u64,
    /// Every variable named, and the largest HLC: stored in the footer (`rql.keys`,
    /// `rql.max_hlc`) so a replay can plan (names, NOW) without scanning the rows.
    keys: BTreeSet<String>,
    max_hlc: u64,
}

impl<W: Write + Send> ParquetWriter<W> {
    pub fn new(out: W) -> Result<ParquetWriter<W>, String> {
        let props = WriterProperties::builder()
            // Snappy: cheap to decode (replay speed), and every Parquet reader has it.
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_key_value_metadata(Some(vec![KeyValue::new(
                "rql.format".to_string(),
                FORMAT_NAME.to_string(),
            )]))
            .build();
        let writer = ArrowWriter::try_new(out, trace_schema(), Some(props))
            .map_err(|e| format!("cannot start the Parquet file: {e}"))?;
        Ok(ParquetWriter {
            writer,
            columns: Columns::new(),
            next_rec: 0,
            keys: BTreeSet::new(),
            max_hlc: 0,
        })
    }

    /// Appends one record (its rows in apply order: unset, set, remove, add, leave).
    pub fn push(&mut self, r: &Record) -> Result<(), String> {
        let rec = self.next_rec;
        self.next_rec += 1;
        self.max_hlc = self.max_hlc.max(r.hlc.packed());
        for v in r.touched_vars() {
            if !self.keys.contains(v.as_str()) {
                self.keys.insert(v.as_str().to_string());
            }
        }
        push_rows(&mut self.columns, rec, r);
        if self.columns.rows >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), String> {
        if self.columns.rows == 0 {
            return Ok(());
        }
        let batch = self.columns.finish()?;
        self.writer
            .write(&batch)
            .map_err(|e| format!("cannot write Parquet rows: {e}"))
    }

    /// Writes what is buffered and the file footer; returns the output.
    pub fn finish(mut self) -> Result<W, String> {
        self.flush()?;
        let keys: Vec<&String> = self.keys.iter().collect();
        let keys = serde_json::to_string(&keys).unwrap_or_default();
        self.writer
            .append_key_value_metadata(KeyValue::new(super::META_KEYS.to_string(), keys));
        self.writer.append_key_value_metadata(KeyValue::new(
            super::META_MAX_HLC.to_string(),
            self.max_hlc.to_string(),
        ));
        self.writer.append_key_value_metadata(KeyValue::new(
            super::META_RECORDS.to_string(),
            self.next_rec.to_string(),
        ));
        self.writer
            .into_inner()
            .map_err(|e| format!("cannot finish the Parquet file: {e}"))
    }
}

/// The next `idx` of a record's rows: 0, 1, 2, ...
fn counter() -> impl FnMut() -> u32 {
    let mut idx = 0u32;
    move || {
        idx += 1;
        idx - 1
    }
}

/// Appends the rows of record number `rec`: unset, set, remove, add, then leave (or one
/// heartbeat row for a record without changes).
fn push_rows(c: &mut Columns, rec: u64, r: &Record) {
    let head = Head {
        rec,
        node: &r.node,
        hlc: r.hlc.packed(),
        pt: r.pt,
    };
    let mut next = counter();
    for v in &r.unset {
        c.row(&head, next(), "unset", Some(v.as_str()), None, None);
    }
    for (v, value) in &r.set {
        c.row(&head, next(), "set", Some(v.as_str()), value.as_ref(), None);
    }
    for (v, s) in &r.remove {
        c.row(&head, next(), "remove", Some(v.as_str()), None, Some(s));
    }
    for (v, s) in &r.add {
        c.row(&head, next(), "add", Some(v.as_str()), None, Some(s));
    }
    push_end(c, &head, &mut next, r.leave, r.is_heartbeat());
}

/// The `leave` row, or the one `heartbeat` row of a record without changes.
fn push_end(
    c: &mut Columns,
    head: &Head<'_>,
    next: &mut impl FnMut() -> u32,
    leave: bool,
    heartbeat: bool,
) {
    if leave {
        c.row(head, next(), "leave", None, None, None);
    } else if heartbeat {
        c.row(head, next(), "heartbeat", None, None, None);
    }
}

/// Appends the rows of a columnar record (its `head`, its `ops` and flags `r`), as [`push_rows`]
/// does for a [`Record`], except for what the columnar form does not keep: `pt` is null, and
/// `"set": {"k": null}` is an `unset` row (the same change).
fn push_columnar_rows(c: &mut Columns, names: &Names, head: &Head<'_>, r: &CRecord, ops: &[Op]) {
    let mut next = counter();
    for op in ops {
        let key = Some(names.vars.name(op.var()).as_str());
        match op {
            Op::Unset(_) => c.row(head, next(), "unset", key, None, None),
            Op::Set(_, value) => c.row(head, next(), "set", key, Some(value), None),
            Op::Remove(_, s) => c.row(head, next(), "remove", key, None, Some(s)),
            Op::Add(_, s) => c.row(head, next(), "add", key, None, Some(s)),
        }
    }
    push_end(c, head, &mut next, r.leave, r.heartbeat);
}

/// `records` as Arrow batches of the trace schema (for SQL over an NDJSON trace).
pub(crate) fn record_batches(records: &[Record]) -> Result<Vec<RecordBatch>, String> {
    let mut out = Vec::new();
    let mut columns = Columns::new();
    for (rec, r) in records.iter().enumerate() {
        push_rows(&mut columns, rec as u64, r);
        if columns.rows >= BATCH_ROWS {
            out.push(columns.finish()?);
        }
    }
    last_batch(out, columns)
}

/// A trace in the engine's columnar form as Arrow batches of the trace schema (for SQL over
/// the trace a shell holds in memory): the rows [`record_batches`] gives for the same records,
/// with `rec` the record's position in HLC order, except that `pt` is null and a `set` to
/// null is an `unset` row (see [`push_columnar_rows`]).
pub(crate) fn columnar_batches(names: &Names, steps: &Steps) -> Result<Vec<RecordBatch>, String> {
    let mut out = Vec::new();
    let mut columns = Columns::new();
    for g in &steps.groups {
        for rec in g.start..g.end {
            let broken = || format!("the in-memory trace is inconsistent at record {rec}");
            let r = steps.records.get(rec as usize).ok_or_else(broken)?;
            let ops = steps
                .ops
                .get(r.first_op as usize..r.end_op as usize)
                .ok_or_else(broken)?;
            let node = names.nodes.get(r.node as usize).ok_or_else(broken)?;
            if ops.iter().any(|op| op.var() as usize >= names.vars.len()) {
                return Err(broken());
            }
            let head = Head {
                rec: u64::from(rec),
                node,
                hlc: g.hlc.packed(),
                pt: None,
            };
            push_columnar_rows(&mut columns, names, &head, r, ops);
            if columns.rows >= BATCH_ROWS {
                out.push(columns.finish()?);
            }
        }
    }
    last_batch(out, columns)
}

/// `out` with the rows still in `columns`: an empty trace is still a table, with no rows.
fn last_batch(mut out: Vec<RecordBatch>, mut columns: Columns) -> Result<Vec<RecordBatch>, String> {
    if columns.rows > 0 || out.is_empty() {
        out.push(columns.finish()?);
    }
    Ok(out)
}

/// Writes `records` (sorted by HLC) to `out` as one Parquet trace.
pub fn write_parquet<'r, W: Write + Send>(
    records: impl IntoIterator<Item = &'r Record>,
    out: W,
) -> Result<W, String> {
    let mut w = ParquetWriter::new(out)?;
    for r in records {
        w.push(r)?;
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::util::display::array_value_to_string;

    use super::*;
    use crate::columnar::{read_columnar, Columnar};
    use crate::ndjson::{read_trace, ReadOptions, TraceInput};

    use crate::parquet::tests::TRACE;

    /// The rows of `batches` as text (`NULL` for a null), with their batch sizes.
    fn rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for b in batches {
            assert_eq!(b.schema(), trace_schema());
            for row in 0..b.num_rows() {
                out.push(
                    b.columns()
                        .iter()
                        .map(|c| {
                            if c.is_null(row) {
                                "NULL".to_string()
                            } else {
                                array_value_to_string(c, row).expect("a printable value")
                            }
                        })
                        .collect(),
                );
            }
        }
        out
    }

    /// What the columnar form keeps of the record path's rows: no `pt`, and a `set` without a
    /// value (a `set` to null) is an `unset`.
    fn without_pt(mut rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
        const OP: usize = 4;
        const VALUES: std::ops::Range<usize> = 6..11;
        const PT: usize = 11;
        for r in &mut rows {
            if r[OP] == "set" && r[VALUES].iter().all(|v| v == "NULL") {
                r[OP] = "unset".to_string();
            }
            r[PT] = "NULL".to_string();
        }
        rows
    }

    /// The columnar rows of `text`, checked against the record path and the NDJSON reader.
    fn check(text: &str) -> Vec<Vec<String>> {
        let mut records: Vec<Record> =
            read_trace(std::io::Cursor::new(text), &ReadOptions::default())
                .expect("a valid trace")
                .records
                .into_iter()
                .map(|(_, r)| r)
                .collect();
        records.sort_by_key(|r| r.hlc);
        let expected = rows(&record_batches(&records).expect("record batches"));
        let refs: Vec<&Record> = records.iter().collect();
        let cols = Columnar::from_records(&refs);
        let got = rows(&columnar_batches(&cols.names, &cols.steps).expect("columnar batches"));
        assert_eq!(got, without_pt(expected.clone()));
        // The shell's `\open` reads NDJSON straight into the columnar form: the same rows.
        let input = TraceInput {
            name: "trace".into(),
            reader: Box::new(std::io::Cursor::new(text.as_bytes())),
        };
        let loaded = read_columnar(vec![input], &ReadOptions::default()).expect("read");
        let read =
            rows(&columnar_batches(&loaded.cols.names, &loaded.cols.steps).expect("batches"));
        assert_eq!(read, got);
        got
    }

    #[test]
    fn columnar_batches_are_the_record_rows_without_pt() {
        let got = check(TRACE);
        assert_eq!(got.len(), 17);
        // rec is the position in HLC order: the first row is n3's heartbeat at [2,0].
        assert_eq!(
            got[0],
            [
                "0",
                "0",
                "n3",
                "131072",
                "heartbeat",
                "NULL",
                "NULL",
                "NULL",
                "NULL",
                "NULL",
                "NULL",
                "NULL"
            ]
        );
        // More rows than one batch holds.
        let mut big = String::new();
        for i in 0..BATCH_ROWS + 10 {
            big.push_str(&format!(
                "{{\"node\":\"n{}\",\"hlc\":[{},0],\"set\":{{\"a.x\":{i}}},\"pt\":{i}}}\n",
                i % 7,
                i / 3 + 1
            ));
        }
        assert_eq!(check(&big).len(), BATCH_ROWS + 10);
        // An empty trace is a table without rows.
        let empty = columnar_batches(&Names::default(), &Steps::default()).expect("empty");
        assert_eq!(empty.len(), 1);
        assert_eq!(empty[0].num_rows(), 0);
    }
}
