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
use crate::record::Record;
use crate::value::{SetValue, Value};

/// Rows buffered before they are handed to the Parquet writer as one batch.
const BATCH_ROWS: usize = 64 * 1024;

/// Rows per row group: small enough that a reader under a memory limit holds little at once,
/// large enough for good compression and statistics.
const ROW_GROUP_ROWS: usize = 512 * 1024;

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

    /// One row; `value` fills the typed value columns (all null when `None`), `json` the JSON
    /// column of an `add`/`remove` element list.
    fn row(
        &mut self,
        (rec, idx): (u64, u32),
        r: &Record,
        op: &str,
        key: Option<&str>,
        value: Option<&Value>,
        elements: Option<&SetValue>,
    ) {
        self.rec.append_value(rec);
        self.idx.append_value(idx);
        self.node.append_value(&r.node);
        self.hlc.append_value(r.hlc.packed());
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
        self.pt.append_option(r.pt);
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

/// Appends the rows of record number `rec`: unset, set, remove, add, then leave (or one
/// heartbeat row for a record without changes).
fn push_rows(c: &mut Columns, rec: u64, r: &Record) {
    let mut idx = 0u32;
    let mut next = || {
        idx += 1;
        idx - 1
    };
    for v in &r.unset {
        c.row((rec, next()), r, "unset", Some(v.as_str()), None, None);
    }
    for (v, value) in &r.set {
        c.row(
            (rec, next()),
            r,
            "set",
            Some(v.as_str()),
            value.as_ref(),
            None,
        );
    }
    for (v, s) in &r.remove {
        c.row((rec, next()), r, "remove", Some(v.as_str()), None, Some(s));
    }
    for (v, s) in &r.add {
        c.row((rec, next()), r, "add", Some(v.as_str()), None, Some(s));
    }
    if r.leave {
        c.row((rec, next()), r, "leave", None, None, None);
    } else if r.is_heartbeat() {
        c.row((rec, next()), r, "heartbeat", None, None, None);
    }
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
    // An empty trace is still a table, with no rows.
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
